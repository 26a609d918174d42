/*
 * digit_caps.h: the DigitCaps layer on the CPU, the seam for routings.
 *
 * The layer takes the primary capsules u [B][I][D] and the weights W_ij [I][J][E][D],
 * forms the prediction vectors u_hat_{j|i} = W_ij u_i (eq. 2) and routes them into the
 * parent capsules v [B][J][E]. How it routes is the model's configuration value `routing`
 * (capsnet.h): each routing is one table of digit_caps_ops, and the layer object it
 * creates owns its activations, caches and scratch, so the model, the model file and the
 * losses know nothing of them. Today there is one routing, "dynamic" (Procedure 1):
 *   routing_dynamic.c       the plain Procedure 1, read beside the paper, and the layer
 *   routing_dynamic_fast.c  the same arithmetic fused per image tile, AVX-512 where built
 * digit_caps.c holds the table of routings and the capsule lengths (the class scores).
 *
 * Dimension letters: B images, I = N_in child capsules (1152), J = N_out parents (10),
 * D = D_in (8), E = D_out (16), R routing iterations (3).
 */
#ifndef CAPS_DIGIT_CAPS_H
#define CAPS_DIGIT_CAPS_H

#include <stddef.h>
#include <stdint.h>

#include "dims.h"

typedef struct digit_caps digit_caps;

typedef struct {
    const char *name; /* caps_routing_name of the routing it implements */
    /* A layer for batches of up to max_batch; kernels is a CAPS_KERNELS_* value. */
    int (*create)(digit_caps **out, const caps_dims *d, int max_batch, int kernels,
                  caps_error *err);
    void (*destroy)(digit_caps *dc);
    /* v of u [B][I][D] and W [I][J][E][D]. W_version changes whenever W does, so a layer
     * may keep a copy derived from W (a transposed one, say) until it changes. */
    void (*forward)(digit_caps *dc, const float *u, const float *W, int64_t W_version, int B);
    /* du [B][I][D] += and dW [I][J][E][D] += the gradients from dv [B][J][E], for the
     * forward pass just before, with the same u and W. */
    void (*backward)(digit_caps *dc, float *du, float *dW, const float *dv, const float *u,
                     const float *W, int B);
    /* v [B][J][E] of the last forward pass. */
    const float *(*output)(const digit_caps *dc);
} digit_caps_ops;

/* Every layer object starts with this. */
struct digit_caps {
    const digit_caps_ops *ops;
};

/* The layer of d->routing; CAPS_ERR_ARG naming it when this backend has none. */
int digit_caps_create(digit_caps **out, const caps_dims *d, int max_batch, int kernels,
                      caps_error *err);
void digit_caps_free(digit_caps *dc);

/* ---- routings (one table each) */

extern const digit_caps_ops digit_caps_dynamic; /* routing_dynamic.c */

/* ---- routing_dynamic.c: Procedure 1 as the paper writes it, every u_hat in memory */

void predict_forward(float *u_hat, const float *u, const float *W, int B, int I, int J, int E,
                     int D);
void predict_backward(float *du, float *dW, const float *du_hat, const float *u,
                      const float *W, int B, int I, int J, int E, int D);
void routing_forward(float *v, float *c, float *s, float *norm2, float *logits,
                     const float *u_hat, int B, int I, int J, int E, int R);
size_t routing_scratch_size(int I, int J, int E); /* floats per image for backward */
void routing_backward(float *du_hat, float *scratch, const float *dv, const float *v,
                      const float *c, const float *s, const float *norm2, const float *u_hat,
                      int B, int I, int J, int E, int R);

/* ---- routing_dynamic_fast.c: predict + routing without storing u_hat. vector = 1 uses
 * the AVX-512 kernels where the build has them, 0 the plain C ones. */

size_t routing_fused_scratch_size(int I, int J, int E, int D, int R); /* floats per thread */
void routing_fused_transpose_weights(float *WT, const float *W, int I, int J, int E, int D);
void routing_fused_forward(float *v, float *c, float *s, float *norm2, float *scratch,
                           const float *u, const float *WT, int B, int I, int J, int E, int D,
                           int R, int nthreads, int vector);
void routing_fused_backward(float *du, float *dW, float *scratch, const float *dv,
                            const float *v, const float *c, const float *s, const float *norm2,
                            const float *u, const float *WT, int B, int I, int J, int E, int D,
                            int R, int nthreads, int vector);

/* ---- digit_caps.c: lengths |v_j| (the class scores) and the prediction */

void caps_length_forward(float *len, const float *v, int n, int d);
void caps_length_backward(float *dv, const float *dlen, const float *v, const float *len,
                          int n, int d);
void caps_argmax(int *pred, const float *len, int B, int J);

#endif /* CAPS_DIGIT_CAPS_H */
