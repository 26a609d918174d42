/*
 * test_squash.c: eq. 1 of the paper. |v| = |s|^2 / (1 + |s|^2) with v parallel to s,
 * finite and exact at s = 0, and backward against finite differences.
 */
#include <stdlib.h>

#include "gradcheck.h"
#include "layers.h"
#include "test.h"

enum { NCAPS = 12, DIM = 8 };

typedef struct {
    gc_layer base;
    float *s, *norm2;
} squash_ctx;

static void squash_fwd(gc_layer *l) {
    squash_ctx *c = (squash_ctx *)l;
    squash_forward(l->out, c->norm2, c->s, NCAPS, DIM);
}

TEST(length_and_direction_follow_eq1) {
    caps_rng r;
    caps_rng_seed(&r, 20, 0);
    float s[NCAPS * DIM], v[NCAPS * DIM], n2[NCAPS];
    gc_fill(s, NCAPS * DIM, -1.5f, 1.5f, &r);
    for (int k = 0; k < DIM; k++) s[k] *= 1e-3f; /* a short capsule */
    squash_forward(v, n2, s, NCAPS, DIM);
    for (int i = 0; i < NCAPS; i++) {
        double ss = 0, vv = 0, sv = 0;
        for (int k = 0; k < DIM; k++) {
            ss += (double)s[i * DIM + k] * s[i * DIM + k];
            vv += (double)v[i * DIM + k] * v[i * DIM + k];
            sv += (double)s[i * DIM + k] * v[i * DIM + k];
        }
        double want = ss / (1.0 + ss);
        EXPECT(test_close(sqrt(vv), want, 1e-5, 1e-12), "capsule %d: |v| = %.9g, eq. 1 gives %.9g",
               i, sqrt(vv), want);
        EXPECT(test_close(sv, sqrt(ss) * sqrt(vv), 1e-5, 1e-12), "capsule %d: v not parallel to s", i);
        EXPECT(test_close(n2[i], ss, 1e-5, 1e-12), "capsule %d: cached |s|^2 wrong", i);
    }
}

/* The bug many implementations have: 1/|s| at s = 0 gives NaN. */
TEST(zero_vector_is_finite) {
    float s[DIM] = {0}, v[DIM], n2, dv[DIM], ds[DIM] = {0};
    for (int k = 0; k < DIM; k++) dv[k] = 1.0f;
    squash_forward(v, &n2, s, 1, DIM);
    squash_backward(ds, dv, s, &n2, 1, DIM);
    for (int k = 0; k < DIM; k++) {
        EXPECT(v[k] == 0.0f, "v[%d] = %g at s = 0", k, v[k]);
        /* The Jacobian of s |s| / (1 + |s|^2) is 0 at s = 0. */
        EXPECT(ds[k] == 0.0f, "ds[%d] = %g at s = 0", k, ds[k]);
    }
    /* Tiny but non-zero: still finite, and still tiny. */
    float t[DIM] = {1e-30f}, tv[DIM], tn2, tds[DIM] = {0};
    squash_forward(tv, &tn2, t, 1, DIM);
    squash_backward(tds, dv, t, &tn2, 1, DIM);
    for (int k = 0; k < DIM; k++)
        EXPECT(isfinite(tv[k]) && isfinite(tds[k]) && fabsf(tds[k]) < 1e-6f,
               "s = 1e-30: v %g, ds %g", tv[k], tds[k]);
}

TEST(backward_matches_finite_differences) {
    caps_rng r;
    caps_rng_seed(&r, 21, 0);
    enum { N = NCAPS * DIM };
    squash_ctx c = {{squash_fwd, NULL, gc_vec(N), gc_vec(N), N}, gc_vec(N), gc_vec(NCAPS)};
    gc_fill(c.s, N, -1.0f, 1.0f, &r);
    for (int k = 0; k < DIM; k++) c.s[DIM + k] *= 0.05f; /* short, near the steep part */
    for (int k = 0; k < DIM; k++) c.s[2 * DIM + k] *= 4.0f; /* long, near saturation */
    gc_fill((float *)c.base.r, N, -1, 1, &r);
    squash_fwd(&c.base);
    float *ds = gc_vec(N);
    squash_backward(ds, c.base.r, c.s, c.norm2, NCAPS, DIM);
    GRADCHECK("squash", c.s, N, ds, &c, 1e-3, 1e-2, 1e-3);
    free(c.base.out), free((float *)c.base.r), free(c.s), free(c.norm2), free(ds);
}

int main(void) {
    RUN(length_and_direction_follow_eq1);
    RUN(zero_vector_is_finite);
    RUN(backward_matches_finite_differences);
    return TEST_SUMMARY();
}
