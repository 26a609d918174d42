/*
 * test_reconstruction.c: the decoder's mask (true class in training, predicted at test)
 * and the sum-of-squared-errors reconstruction loss.
 */
#include <stdlib.h>

#include "gradcheck.h"
#include "layers.h"
#include "test.h"

enum { B = 3, J = 4, E = 5, P = 7 };

TEST(mask_keeps_only_the_chosen_capsule) {
    float v[B * J * E], out[B * J * E];
    for (int k = 0; k < B * J * E; k++) v[k] = (float)(k + 1);
    int cls[B] = {2, 0, 3};
    mask_forward(out, v, cls, B, J, E);
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < J; j++)
            for (int e = 0; e < E; e++) {
                int k = (b * J + j) * E + e;
                bad += out[k] != (j == cls[b] ? v[k] : 0.0f);
            }
    EXPECT(bad == 0, "%d masked values wrong", bad);
}

typedef struct {
    gc_layer base;
    float *v;
    int *cls;
} mask_ctx;

static void mask_fwd(gc_layer *l) {
    mask_ctx *c = (mask_ctx *)l;
    mask_forward(l->out, c->v, c->cls, B, J, E);
}

TEST(mask_backward_matches_finite_differences) {
    caps_rng r;
    caps_rng_seed(&r, 60, 0);
    int cls[B] = {1, 3, 0};
    enum { N = B * J * E };
    mask_ctx c = {{mask_fwd, NULL, gc_vec(N), gc_vec(N), N}, gc_vec(N), cls};
    gc_fill(c.v, N, -1, 1, &r);
    gc_fill((float *)c.base.r, N, -1, 1, &r);
    float *dv = gc_vec(N);
    mask_backward(dv, c.base.r, cls, B, J, E);
    GRADCHECK("mask", c.v, N, dv, &c, 1e-2, 1e-3, 1e-4);
    free(c.base.out), free((float *)c.base.r), free(c.v), free(dv);
}

typedef struct {
    gc_layer base;
    float *recon, *target;
} recon_ctx;

static void recon_fwd(gc_layer *l) {
    recon_ctx *c = (recon_ctx *)l;
    recon_loss_forward(l->out, c->recon, c->target, B, P);
}

TEST(recon_loss_value_and_gradient) {
    caps_rng r;
    caps_rng_seed(&r, 61, 0);
    recon_ctx c = {{recon_fwd, NULL, gc_vec(B), gc_vec(B), B}, gc_vec(B * P), gc_vec(B * P)};
    gc_fill(c.recon, B * P, 0, 1, &r);
    gc_fill(c.target, B * P, 0, 1, &r);
    recon_fwd(&c.base);
    double want = 0;
    for (int p = 0; p < P; p++) want += pow((double)c.recon[p] - c.target[p], 2);
    EXPECT(test_close(c.base.out[0], want, 1e-6, 0), "SSE %.9g, expected %.9g", c.base.out[0],
           want);
    /* One weight for all images, as the network uses it (0.0005 / B). */
    float w = 0.7f;
    for (int b = 0; b < B; b++) ((float *)c.base.r)[b] = w;
    float *drecon = gc_vec(B * P);
    recon_loss_backward(drecon, c.recon, c.target, w, B, P);
    GRADCHECK("recon loss", c.recon, B * P, drecon, &c, 1e-3, 1e-2, 1e-3);
    free(c.base.out), free((float *)c.base.r), free(c.recon), free(c.target), free(drecon);
}

int main(void) {
    RUN(mask_keeps_only_the_chosen_capsule);
    RUN(mask_backward_matches_finite_differences);
    RUN(recon_loss_value_and_gradient);
    return TEST_SUMMARY();
}
