/*
 * dims.h: the shapes of a network, derived once from its caps_config (config.c) and
 * handed to everything that needs a shape: sizes, FLOPs, initialisation, the backends.
 * The letters are those of layers.h and the paper.
 */
#ifndef CAPS_DIMS_H
#define CAPS_DIMS_H

#include "capsnet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int C, S, P;        /* input channels, side (H = W), pixels C*S*S (also the decoder's output) */
    int C1, K1, ST1;    /* Conv1 channels, kernel, stride */
    int S1;             /* Conv1 output side */
    int T, D, TD;       /* PrimaryCaps types, dimensions of a capsule D = D_in, channels T*D */
    int K2, ST2;        /* PrimaryCaps kernel, stride */
    int G;              /* PrimaryCaps grid side */
    int I;              /* N_in primary capsules T*G*G */
    int J, E;           /* N_out classes, D_out dimensions of a digit capsule */
    int R;              /* routing iterations */
    int H1, H2;         /* decoder hidden layers */
    int routing;        /* CAPS_ROUTING_* */
} caps_dims;

/* The shapes of a configuration that caps_config_check accepted. */
void caps_dims_of(caps_dims *d, const caps_config *cfg);

/* Elements of each parameter tensor, in the order of capsnet.h. */
void caps_param_sizes(size_t sizes[CAPS_NUM_PARAM_TENSORS], const caps_dims *d);

#ifdef __cplusplus
}
#endif

#endif /* CAPS_DIMS_H */
