/*
 * model.h: the inside of a capsnet model, as capsnet.c keeps it: the configuration and
 * its shapes, the backend that holds the memory (backend.h), and what every backend shares
 * in the program's memory: labels, classes, predictions, per-image losses, the clock.
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

    /* [max_batch] each, for the last forward pass */
    int *labels;      /* true classes (or -1) */
    int *cls;         /* the capsule the decoder saw */
    int *pred;        /* predicted classes */
    float *margin;    /* margin loss per image */
    float *sse;       /* sum of squared reconstruction errors per image */
    float *vbatch;    /* [max_batch][J][E] capsules for capsnet_perturb to decode */

    /* Seconds per layer since capsnet_profile_reset (caps_layer order). */
    double prof_fwd[CAPS_NUM_LAYERS], prof_bwd[CAPS_NUM_LAYERS];

    /* What the last forward pass did, for backward. */
    int batch;
    int decoder_ran;
    float recon_weight;
    float loss, margin_loss, recon_loss;
};

#endif /* CAPS_MODEL_H */
