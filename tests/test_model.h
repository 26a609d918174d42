/*
 * test_model.h: what tests read and change of a model, through the API only (copies in and
 * out, as a program would): an arena as a fresh array, one value of a tensor, and whether
 * two models hold the same numbers.
 */
#ifndef CAPS_TEST_MODEL_H
#define CAPS_TEST_MODEL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capsnet.h"

/* A malloc'ed copy of an arena (free it); aborts if it cannot be made (tests only). */
static inline float *test_arena(const capsnet *m, caps_arena which) {
    size_t n = capsnet_num_params(m);
    float *p = malloc(n * sizeof(float));
    caps_error err;
    if (!p || capsnet_read(m, which, 0, n, p, &err) != CAPS_OK) {
        fprintf(stderr, "test_arena: %s\n", p ? err.msg : "out of memory");
        abort();
    }
    return p;
}

/* Arena values [0, n) set to f(k) (f returns the value of element k). */
static inline void test_fill_arena(capsnet *m, caps_arena which, float (*f)(size_t k, void *ctx),
                                   void *ctx) {
    size_t n = capsnet_num_params(m);
    float *p = malloc(n * sizeof(float));
    if (!p) abort();
    for (size_t k = 0; k < n; k++) p[k] = f(k, ctx);
    if (capsnet_write(m, which, 0, n, p, NULL) != CAPS_OK) abort();
    free(p);
}

/* Element k of tensor `name` of the parameters. */
static inline float test_get_param(const capsnet *m, const char *name, size_t k) {
    float v;
    size_t off = capsnet_param_offset(m, capsnet_param_find(name)) + k;
    if (capsnet_read(m, CAPS_PARAMS, off, 1, &v, NULL) != CAPS_OK) abort();
    return v;
}

static inline void test_set_param(capsnet *m, const char *name, size_t k, float v) {
    size_t off = capsnet_param_offset(m, capsnet_param_find(name)) + k;
    if (capsnet_write(m, CAPS_PARAMS, off, 1, &v, NULL) != CAPS_OK) abort();
}

/* The same configuration, parameters, Adam moments and step count, bit for bit. */
static inline int test_same_model(const capsnet *a, const capsnet *b) {
    if (memcmp(capsnet_config(a), capsnet_config(b), sizeof(caps_config)) != 0 ||
        capsnet_num_params(a) != capsnet_num_params(b) || capsnet_adam_t(a) != capsnet_adam_t(b))
        return 0;
    size_t bytes = capsnet_num_params(a) * sizeof(float);
    int same = 1;
    const caps_arena kept[3] = {CAPS_PARAMS, CAPS_ADAM_M, CAPS_ADAM_V};
    for (int k = 0; k < 3 && same; k++) {
        float *pa = test_arena(a, kept[k]), *pb = test_arena(b, kept[k]);
        same = memcmp(pa, pb, bytes) == 0;
        free(pa), free(pb);
    }
    return same;
}

#endif /* CAPS_TEST_MODEL_H */
