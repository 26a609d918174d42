/*
 * model.h: the inside of a capsnet model, as capsnet.c keeps it: the configuration and
 * its shapes, the backend that holds the memory (backend.h), and what every backend shares
 * in the program's memory: labels, classes, predictions, per-image losses, the clock, the
 * classes' names.
 * The library and its tests include this; programs use only capsnet.h.
 */
#ifndef CAPS_MODEL_H
#define CAPS_MODEL_H

#include "backend.h"

struct capsnet {
    caps_config cfg;
    caps_dims dims; /* derived once from cfg */
    int max_batch;

    size_t param_sizes[CAPS_NUM_PARAM_TENSORS], param_offsets[CAPS_NUM_PARAM_TENSORS];
    size_t num_params;
    int64_t adam_t;

    const caps_backend *be;
    caps_backend_state *bs;

    /* The classes' names (caps_set_class_names): class_names[k] for class k, each and the
     * array malloc'ed; NULL when the model has none. */
    char **class_names; /* [cfg.num_classes] or NULL */

    /* [max_batch] each, for the last forward pass */
    int *labels;      /* true classes (or -1) */
    int *labels2;     /* the second digit's classes (capsnet_forward_pair) */
    int *cls;         /* the capsule the decoder saw (the first digit's, with two) */
    int *pred;        /* predicted classes */
    float *margin;    /* margin loss per image */
    float *sse;       /* sum of squared reconstruction errors per image */
    float *sse2;      /* the second digit's part of it */
    float *target;    /* [max_batch][P] the first digit's reconstruction target */
    float *vbatch;    /* [max_batch][J][E] capsules for capsnet_perturb to decode */

    /* Seconds per layer since capsnet_profile_reset (caps_layer order); with profile_sync
     * the clock waits for the backend at each layer boundary. */
    double prof_fwd[CAPS_NUM_LAYERS], prof_bwd[CAPS_NUM_LAYERS];
    int profile_sync;

    /* What the last forward pass did, for backward. */
    const float *lengths; /* [B][J] its class scores, in host memory (the backend's copy) */
    int backward_done;    /* capsnet_backward ran after it */
    int batch;
    int decoder_ran;
    int pair;             /* two digits: capsnet_forward_pair */
    float recon_weight;
    float loss, margin_loss, recon_loss;
};

/* Where the backend can keep a data set itself (a GPU), batches are built there:
 * capsnet_keep_data sets *kept when ds now lives there (no room there is not an error: the
 * batches are then built on the host; a failed device is), and capsnet_forward_kept is capsnet_forward of the batch that
 * caps_make_batch_shifted(ds, idx, dx, dy) would make. train.c uses them. */
int capsnet_keep_data(capsnet *m, const caps_dataset *ds, int *kept, caps_error *err);
float capsnet_forward_kept(capsnet *m, const int *idx, const int *dx, const int *dy,
                           const int *labels, int B, int mask, float recon_weight);

/* Data-parallel training (train.c) sums each layer's gradients as soon as the backward pass
 * has finished them. capsnet_backward_ready is capsnet_backward with the loss scaled by
 * scale (capsnet_backward: 1 / batch) that calls ready(ctx, first, last) each time the
 * gradients of the parameter tensors first..last are final: the buckets of
 * capsnet_grad_bucket, always all of them, in bucket order (the decoder's are zero when it
 * did not run). */
#define CAPS_GRAD_BUCKETS 4
typedef void (*caps_grads_ready_fn)(void *ctx, int first, int last);
void capsnet_backward_ready(capsnet *m, float scale, caps_grads_ready_fn ready, void *ctx);
/* Bucket k (0 .. CAPS_GRAD_BUCKETS - 1) in the order the backward pass finishes them:
 * tensors *first .. *last. */
void capsnet_grad_bucket(int k, int *first, int *last);
/* The start of an arena where the backend keeps it, *on_device set when that is a GPU's
 * memory (then valid for the device only, once the steps before have run); NULL when the
 * backend cannot say. */
float *capsnet_arena_data(capsnet *m, caps_arena which, int *on_device);

#endif /* CAPS_MODEL_H */
