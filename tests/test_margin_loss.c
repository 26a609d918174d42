/*
 * test_margin_loss.c: eq. 4 with squared hinges, m+ = 0.9, m- = 0.1, lambda = 0.5.
 */
#include <stdlib.h>

#include "gradcheck.h"
#include "layers.h"
#include "test.h"

enum { B = 4, J = 5 };

TEST(known_values) {
    /* Image 0: true class 2 at 0.5 -> (0.9 - 0.5)^2 = 0.16; class 0 at 0.3 ->
     * 0.5 (0.3 - 0.1)^2 = 0.02; the rest below 0.1 add nothing. Image 1: all margins met. */
    float len[2 * J] = {0.3f, 0.05f, 0.5f, 0.0f, 0.1f, 0.0f, 0.95f, 0.05f, 0.1f, 0.02f};
    int labels[2] = {2, 1};
    float loss[2];
    margin_loss_forward(loss, len, labels, NULL, 2, J);
    EXPECT(test_close(loss[0], 0.18, 1e-5, 0), "image 0: loss %.7g, expected 0.18 (squared hinges)",
           loss[0]);
    EXPECT(loss[1] == 0.0f, "image 1: loss %g, expected 0", loss[1]);
}

/* Two digits (MultiMNIST): both classes take the m+ hinge, the others the m- one. */
TEST(two_present_classes) {
    float len[J] = {0.3f, 0.05f, 0.5f, 0.95f, 0.1f};
    int a = 2, b = 0;
    float loss, alone;
    margin_loss_forward(&loss, len, &a, &b, 1, J);
    /* class 2: (0.9 - 0.5)^2 = 0.16; class 0 present: (0.9 - 0.3)^2 = 0.36; class 3 absent:
     * 0.5 (0.95 - 0.1)^2 = 0.36125. */
    EXPECT(test_close(loss, 0.16 + 0.36 + 0.36125, 1e-5, 0), "loss %.7g, expected 0.88125", loss);
    margin_loss_forward(&alone, len, &a, NULL, 1, J);
    EXPECT(test_close(alone, 0.16 + 0.02 + 0.36125, 1e-5, 0),
           "one class: loss %.7g, expected 0.54125", alone);
}

typedef struct {
    gc_layer base;
    float *len;
    int *labels, *labels2;
} margin_ctx;

static void margin_fwd(gc_layer *l) {
    margin_ctx *c = (margin_ctx *)l;
    margin_loss_forward(l->out, c->len, c->labels, c->labels2, B, J);
}

/* The hinges: which side of m+ / m- each length is on. */
static uint64_t margin_kinks(gc_layer *l) {
    margin_ctx *c = (margin_ctx *)l;
    uint64_t sig = 0;
    for (int k = 0; k < B * J; k++)
        sig = gc_mix(sig, (c->len[k] > MARGIN_M_PLUS) * 2 + (c->len[k] > MARGIN_M_MINUS));
    return sig;
}

/* With r_b as the weight of image b, backward with scale s gives s * dL_b; each image's
 * weight is checked by running one image at a time. labels2: a second present class, or
 * NULL. */
static void check_backward(uint64_t seed, int *labels, int *labels2, const char *name) {
    caps_rng r;
    caps_rng_seed(&r, seed, 0);
    margin_ctx c = {{margin_fwd, margin_kinks, gc_vec(B), gc_vec(B), B}, gc_vec(B * J), labels,
                    labels2};
    gc_fill(c.len, B * J, 0.0f, 1.0f, &r);
    gc_fill((float *)c.base.r, B, 0.5f, 1.5f, &r);
    float *dlen = gc_vec(B * J);
    for (int b = 0; b < B; b++)
        margin_loss_backward(dlen + b * J, c.len + b * J, labels + b, labels2 ? labels2 + b : NULL,
                             c.base.r[b], 1, J);
    GRADCHECK(name, c.len, B * J, dlen, &c, 1e-3, 1e-2, 1e-3);
    free(c.base.out), free((float *)c.base.r), free(c.len), free(dlen);
}

TEST(backward_matches_finite_differences) {
    int labels[B] = {0, 3, 4, 1};
    check_backward(50, labels, NULL, "margin loss");
}

TEST(backward_two_classes_matches_finite_differences) {
    int labels[B] = {0, 3, 4, 1}, labels2[B] = {2, 0, 1, 3};
    check_backward(51, labels, labels2, "margin loss, two classes");
}

int main(void) {
    RUN(known_values);
    RUN(two_present_classes);
    RUN(backward_two_classes_matches_finite_differences);
    RUN(backward_matches_finite_differences);
    return TEST_SUMMARY();
}
