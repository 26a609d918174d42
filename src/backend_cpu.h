/*
 * backend_cpu.h: the inside of the CPU backend (backend_cpu.c): its arenas, activations and
 * their gradients. Only backend_cpu.c and the tests that look at a layer's activations
 * (to steer a finite-difference check clear of a ReLU's kink, say) include it; they read,
 * and the parameters are written through capsnet_write only.
 *
 * Letters as in layers.h; C1 x S1 x S1 the Conv1 output, H1/H2 the decoder. Convolution
 * outputs are channels last (conv2d.c explains the layouts); everything from the capsules
 * on is per image. B below is max_batch.
 */
#ifndef CAPS_BACKEND_CPU_H
#define CAPS_BACKEND_CPU_H

#include "backend.h"
#include "digit_caps.h"

/* The parameter tensors of one arena, in PyTorch layouts (capsnet.h lists the shapes). */
typedef struct {
    float *conv1_w, *conv1_b, *prim_w, *prim_b, *caps_w;
    float *dec1_w, *dec1_b, *dec2_w, *dec2_b, *dec3_w, *dec3_b;
} cpu_tensors;

/* Activations of one forward pass, with the caches backward needs. The DigitCaps layer
 * keeps its own (digit_caps.h). */
typedef struct {
    float *x;        /* [B][C][H][W] the input, kept as the reconstruction target */
    float *a1;       /* Conv1 output after ReLU, row-phased for PrimaryCaps' stride S2:
                        [S2][S1/S2][B][S1][C1] (conv2d.c) */
    float *prim;     /* [G][B][G][T*D] PrimaryCaps convolution output */
    float *u_pre;    /* [B][I][D] the same values read as capsules, before squash */
    float *u;        /* [B][I][D] primary capsules u_i */
    float *u_norm2;  /* [B][I] |u_pre|^2, squash cache */
    float *lengths;  /* [B][J] class scores */
    float *masked;   /* [B][J*E] decoder input */
    float *h1;       /* [B][H1] */
    float *h2;       /* [B][H2] */
    float *recon;    /* [B][P] */
    float *target;   /* [B][P] the reconstruction target when not x (recon_target) */
} cpu_acts;

#define CPU_NUM_ACTS 12

/* Gradients of the activations that backward passes between layers. */
typedef struct {
    float *a1;      /* d(Conv1 output), layout of acts.a1, after and then before the ReLU */
    float *prim;    /* [G][B][G][T*D] */
    float *u_pre;   /* [B][I][D] */
    float *u;       /* [B][I][D] */
    float *v;       /* [B][J][E] */
    float *lengths; /* [B][J] */
    float *masked;  /* [B][J*E] */
    float *h1;      /* [B][H1] after ReLU */
    float *z1_dec;  /* [B][H1] before ReLU */
    float *h2;      /* [B][H2] after ReLU */
    float *z2_dec;  /* [B][H2] before ReLU */
    float *recon;   /* [B][P] after sigmoid */
    float *z3_dec;  /* [B][P] before sigmoid */
} cpu_grad_acts;

#define CPU_NUM_GRAD_ACTS 13

struct caps_backend_state {
    caps_dims d;
    int max_batch;
    const float *target; /* what the reconstruction is compared with: acts.x or acts.target */
    size_t num_params;
    float *arena[4];           /* indexed by caps_arena: parameters, gradients, Adam m, v */
    cpu_tensors params, grads; /* pointers into arena[CAPS_PARAMS], arena[CAPS_GRADS] */
    int64_t params_version;    /* counts every change of the parameters (writes, Adam) */

    float *acts_mem, *grad_acts_mem;
    size_t grad_acts_floats;
    cpu_acts acts;
    cpu_grad_acts dacts;

    /* Convolution scratch: Conv1's im2col of one output row; the PrimaryCaps weights
     * reordered for conv2d_shift (made from the parameters of version prim_wt_version, -1:
     * never) and the gradient of one kernel row in that order. */
    float *col, *prim_wt, *prim_dwt;
    int64_t prim_wt_version;

    digit_caps *digit; /* the DigitCaps layer of the configured routing */
};

#endif /* CAPS_BACKEND_CPU_H */
