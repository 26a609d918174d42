/*
 * test_linear.c: the decoder's fully connected layer, out = in . w^T + bias.
 */
#include <stdlib.h>

#include "gradcheck.h"
#include "layers.h"
#include "test.h"

enum { B = 3, I = 7, O = 5 };

typedef struct {
    gc_layer base;
    float *in, *w, *bias;
} linear_ctx;

static void linear_fwd(gc_layer *l) {
    linear_ctx *c = (linear_ctx *)l;
    linear_forward(l->out, c->in, c->w, c->bias, B, I, O);
}

TEST(forward_values) {
    caps_rng r;
    caps_rng_seed(&r, 70, 0);
    float in[B * I], w[O * I], bias[O], out[B * O];
    gc_fill(in, B * I, -1, 1, &r);
    gc_fill(w, O * I, -1, 1, &r);
    gc_fill(bias, O, -1, 1, &r);
    linear_forward(out, in, w, bias, B, I, O);
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int o = 0; o < O; o++) {
            double acc = bias[o];
            for (int i = 0; i < I; i++) acc += (double)in[b * I + i] * w[o * I + i];
            bad += !test_close(out[b * O + o], acc, 1e-5, 1e-6);
        }
    EXPECT(bad == 0, "%d outputs wrong", bad);
}

TEST(backward_matches_finite_differences) {
    caps_rng r;
    caps_rng_seed(&r, 71, 0);
    linear_ctx c = {{linear_fwd, NULL, gc_vec(B * O), gc_vec(B * O), B * O}, gc_vec(B * I),
                    gc_vec(O * I), gc_vec(O)};
    gc_fill(c.in, B * I, -1, 1, &r);
    gc_fill(c.w, O * I, -1, 1, &r);
    gc_fill(c.bias, O, -1, 1, &r);
    gc_fill((float *)c.base.r, B * O, -1, 1, &r);
    float *din = gc_vec(B * I), *dw = gc_vec(O * I), *db = gc_vec(O);
    linear_backward(din, dw, db, c.base.r, c.in, c.w, B, I, O);
    GRADCHECK("linear din", c.in, B * I, din, &c, 1e-2, 1e-3, 1e-4);
    GRADCHECK("linear dw", c.w, O * I, dw, &c, 1e-2, 1e-3, 1e-4);
    GRADCHECK("linear dbias", c.bias, O, db, &c, 1e-2, 1e-3, 1e-4);
    free(c.base.out), free((float *)c.base.r), free(c.in), free(c.w), free(c.bias);
    free(din), free(dw), free(db);
}

int main(void) {
    RUN(forward_values);
    RUN(backward_matches_finite_differences);
    return TEST_SUMMARY();
}
