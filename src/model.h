/*
 * model.h: the inside of a capsnet model: arenas, activations and their gradients.
 * The library and its tests include this; programs use only capsnet.h.
 */
#ifndef CAPS_MODEL_H
#define CAPS_MODEL_H

#include "capsnet.h"

/* Activations of one forward pass, for up to max_batch images (B below), with the caches
 * backward needs. Letters as in layers.h; C1 x S1 x S1 the Conv1 output, H1/H2 the decoder.
 * Convolution outputs are channels last (conv2d.c explains the layouts); everything from
 * the capsules on is per image. */
typedef struct {
    float *x;        /* [B][C][H][W] the input, kept as the reconstruction target */
    float *a1;       /* Conv1 output after ReLU, row-phased for PrimaryCaps' stride S2:
                        [S2][S1/S2][B][S1][C1] (conv2d.c) */
    float *prim;     /* [G][B][G][T*D] PrimaryCaps convolution output */
    float *u_pre;    /* [B][I][D] the same values read as capsules, before squash */
    float *u;        /* [B][I][D] primary capsules u_i */
    float *u_norm2;  /* [B][I] |u_pre|^2, squash cache */
    float *route_c;  /* [R][B][I][J] couplings of every round */
    float *route_s;  /* [R][B][J][E] */
    float *route_v;  /* [R][B][J][E]; route_v[R-1] is the DigitCaps output v */
    float *route_n2; /* [R][B][J] */
    float *lengths;  /* [B][J] class scores */
    float *margin;   /* [B] margin loss per image */
    float *masked;   /* [B][J*E] decoder input */
    float *h1;       /* [B][H1] */
    float *h2;       /* [B][H2] */
    float *recon;    /* [B][P] */
    float *recon_err;/* [B] sum of squared errors per image */
} caps_acts;

#define CAPS_NUM_ACTS 17

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
} caps_grad_acts;

#define CAPS_NUM_GRAD_ACTS 13

struct capsnet {
    caps_config cfg;
    int max_batch;

    size_t param_sizes[CAPS_NUM_PARAM_TENSORS];
    size_t num_params;
    float *params_mem, *grads_mem, *m_mem, *v_mem; /* one arena each, tensor order */
    caps_params params, grads, adam_m, adam_v;
    int64_t adam_t;

    float *acts_mem, *grad_acts_mem;
    caps_acts acts;
    caps_grad_acts dacts;

    /* Convolution scratch: Conv1's im2col of one output row; the PrimaryCaps weights
     * reordered for conv2d_shift (refreshed when the parameters change) and the gradient
     * of one kernel row in that order. */
    float *col;
    float *prim_wt, *prim_dwt;
    int64_t prim_wt_version; /* params_version when prim_wt was made (-1: never) */

    /* DigitCaps (digit_caps.c): per-thread scratch for digit_threads threads, and W_ij
     * transposed for the prediction vectors. */
    float *digit_scratch, *caps_wt;
    int digit_threads;
    int64_t caps_wt_version;
    int64_t params_version;  /* bumped whenever the parameters change: Adam, init, loads,
                                capsnet_params(); code writing params_mem directly bumps it */

    int *labels; /* [B] copy of the labels of the last forward pass (or -1) */
    int *cls;    /* [B] the capsule the decoder saw */
    int *pred;   /* [B] predicted classes */

    /* Seconds per layer since capsnet_profile_reset (caps_layer order). */
    double prof_fwd[CAPS_NUM_LAYERS], prof_bwd[CAPS_NUM_LAYERS];

    /* What the last forward pass did, for backward. */
    int batch;
    int decoder_ran;
    float recon_weight;
    float loss, margin_loss, recon_loss;
};

#endif /* CAPS_MODEL_H */
