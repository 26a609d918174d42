/*
 * backend.h: the seam between the network (capsnet.c) and the machine that runs it.
 *
 * capsnet.c owns what every backend shares: the configuration and its shapes, the order of
 * the layers (forward, then backward in reverse), the step count, the predictions and the
 * batch-mean losses, the per-layer clock. A backend owns the memory (parameters, gradients,
 * Adam moments, activations, scratch) and runs each step of that sequence on it: the CPU
 * backend (backend_cpu.c) with the kernels of layers.h and digit_caps.h; a GPU backend
 * would do the same steps in its own memory, as one more table of this type.
 *
 * Every buffer a step takes or returns through this table is in the program's (host)
 * memory: images, labels, classes, per-image losses, and the results the API hands out.
 * Within a pass, activations stay where the backend keeps them.
 *
 * A step's B is the batch of the pass (1 .. max_batch). Steps run in this order:
 *   forward:  input, conv1, primary, squash, digit, [recon_target, decoder, loss]
 *   backward: backward_begin, loss, [decoder], digit, squash, primary, conv1
 * and backward steps read the caches of the forward pass just before them, once: a backward
 * pass may overwrite a cache it no longer needs (capsnet_backward allows one per forward).
 * With two digits in an image (MultiMNIST), each has its own reconstruction: forward runs
 * [recon_target, decoder, loss] once per digit, and backward, after the second digit's
 * decoder backward, runs the first digit's recon_target and decoder forward again and its
 * decoder backward (the decoder keeps the caches of one pass at a time).
 */
#ifndef CAPS_BACKEND_H
#define CAPS_BACKEND_H

#include <stdint.h>

#include "capsnet.h"
#include "dims.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct caps_backend_state caps_backend_state; /* each backend defines its own */

typedef struct {
    const char *name; /* what caps_options.backend says to pick it */

    /* Allocates everything for batches up to max_batch: four arenas of num_params floats
     * in the tensor order of sizes[CAPS_NUM_PARAM_TENSORS], all zero; activations; scratch. */
    int (*create)(caps_backend_state **out, const caps_dims *d, const size_t *sizes,
                  int max_batch, const caps_options *opt, caps_error *err);
    void (*destroy)(caps_backend_state *s);

    /* The arenas, through copies: host out[count] = arena[offset ..], and back. The range
     * has been checked by the caller. Writing the parameters invalidates whatever the
     * backend derived from them. */
    int (*read)(const caps_backend_state *s, caps_arena which, size_t offset, size_t count,
                float *out, caps_error *err);
    int (*write)(caps_backend_state *s, caps_arena which, size_t offset, size_t count,
                 const float *in, caps_error *err);
    void (*zero)(caps_backend_state *s, caps_arena which);
    /* params -= Adam's step from grads, updating the moments; t counts steps from 1. */
    void (*adam_step)(caps_backend_state *s, const caps_adam *hp, float lr, int64_t t);

    /* ---- forward */
    void (*input)(caps_backend_state *s, const float *x, int B); /* x [B][C][S][S] */
    void (*conv1_forward)(caps_backend_state *s, int B);
    void (*primary_forward)(caps_backend_state *s, int B);  /* the PrimaryCaps convolution */
    void (*squash_forward)(caps_backend_state *s, int B);   /* channels -> capsules u */
    void (*digit_forward)(caps_backend_state *s, int B);    /* u -> v (routing), lengths */
    /* The decoder on capsule cls[b] of each image: of v_host [B][J][E] when given, else of
     * this pass's v. */
    void (*decoder_forward)(caps_backend_state *s, const float *v_host, const int *cls, int B);
    /* What the reconstruction is compared with from now on: target [B][P] (host memory; a
     * copy is kept), or NULL for the input of the pass (x). */
    void (*recon_target)(caps_backend_state *s, const float *target, int B);
    /* Per image: margin[b] (eq. 4; the classes labels[b] and, when labels2, labels2[b]
     * present) and, when decoder, sse[b] = |recon - target|^2. */
    void (*loss_forward)(caps_backend_state *s, float *margin, float *sse, const int *labels,
                         const int *labels2, int decoder, int B);
    /* Results in host memory, valid until the next step: lengths [B][J], v [B][J][E],
     * reconstructions [B][P]. */
    const float *(*lengths)(caps_backend_state *s, int B);
    const float *(*capsules)(caps_backend_state *s, int B);
    const float *(*reconstruction)(caps_backend_state *s, int B);

    /* ---- backward: gradients of loss = sum_b (margin_scale margin[b] + recon_scale sse[b]),
     * added into the parameters' gradients */
    void (*backward_begin)(caps_backend_state *s, int B); /* activation gradients to 0 */
    /* The margin loss's gradient into v's. */
    void (*loss_backward)(caps_backend_state *s, const int *labels, const int *labels2,
                          float margin_scale, int B);
    /* The reconstruction loss of the last decoder forward (against the target then set)
     * through the decoder, added into v's gradient: may run twice in a pass. */
    void (*decoder_backward)(caps_backend_state *s, const int *cls, float recon_scale, int B);
    void (*digit_backward)(caps_backend_state *s, int B);
    void (*squash_backward)(caps_backend_state *s, int B);
    void (*primary_backward)(caps_backend_state *s, int B);
    void (*conv1_backward)(caps_backend_state *s, int B);

    /* ---- optional (NULL where the backend has no use for them: status, data_upload,
     * input_batch and sync on the CPU) */
    /* CAPS_OK, or the first failure of a step since create, which stays: a step cannot
     * return one (a GPU reports it only later), so capsnet_status asks after a pass. */
    int (*status)(const caps_backend_state *s, caps_error *err);
    /* Keeps the images of ds where the backend computes (a GPU's memory), so that a batch
     * is built there: input_batch is input of the images idx[] of ds shifted by (dx, dy),
     * as caps_make_batch_shifted builds them. */
    int (*data_upload)(caps_backend_state *s, const caps_dataset *ds, caps_error *err);
    void (*input_batch)(caps_backend_state *s, const int *idx, const int *dx, const int *dy,
                        int B);
    /* Waits until every step asked for has run (a GPU runs ahead of the program). */
    void (*sync)(caps_backend_state *s);
    /* The start of an arena, *on_device set when it is in a GPU's memory; the steps asked
     * for so far have run when it returns. NULL: only read and write reach the arenas. */
    float *(*arena_data)(caps_backend_state *s, caps_arena which, int *on_device);
} caps_backend;

extern const caps_backend caps_backend_cpu;
#ifdef CAPS_WITH_CUDA
extern const caps_backend caps_backend_cuda; /* cuda/backend_cuda.cu */
#endif

#ifdef __cplusplus
}
#endif

#endif /* CAPS_BACKEND_H */
