/*
 * test_activation.c: ReLU and sigmoid, values and finite-difference gradients.
 */
#include <stdlib.h>

#include "gradcheck.h"
#include "layers.h"
#include "test.h"

enum { N = 64 };

typedef struct {
    gc_layer base;
    float *in;
    int sigmoid;
} act_ctx;

static void act_fwd(gc_layer *l) {
    act_ctx *c = (act_ctx *)l;
    if (c->sigmoid)
        sigmoid_forward(l->out, c->in, N);
    else
        relu_forward(l->out, c->in, N);
}

/* Which inputs are on: the kinks of ReLU. */
static uint64_t relu_kinks(gc_layer *l) {
    act_ctx *c = (act_ctx *)l;
    uint64_t sig = 0;
    for (int k = 0; k < N; k++) sig = gc_mix(sig, c->in[k] > 0.0f);
    return sig;
}

static void check(int sigmoid) {
    caps_rng r;
    caps_rng_seed(&r, 10, (uint64_t)sigmoid);
    act_ctx c = {{act_fwd, sigmoid ? NULL : relu_kinks, gc_vec(N), gc_vec(N), N}, gc_vec(N), sigmoid};
    gc_fill(c.in, N, -3, 3, &r);
    gc_fill((float *)c.base.r, N, -1, 1, &r);
    act_fwd(&c.base);
    float *din = gc_vec(N);
    if (sigmoid)
        sigmoid_backward(din, c.base.r, c.base.out, N);
    else
        relu_backward(din, c.base.r, c.base.out, N);
    GRADCHECK(sigmoid ? "sigmoid" : "relu", c.in, N, din, &c, 1e-3, 1e-2, 1e-3);
    free(c.base.out), free((float *)c.base.r), free(c.in), free(din);
}

TEST(relu_backward_matches_finite_differences) { check(0); }
TEST(sigmoid_backward_matches_finite_differences) { check(1); }

TEST(values) {
    float in[4] = {-2.0f, 0.0f, 3.0f, -100.0f}, out[4];
    relu_forward(out, in, 4);
    EXPECT(out[0] == 0.0f && out[1] == 0.0f && out[2] == 3.0f, "relu gave %g %g %g", out[0],
           out[1], out[2]);
    relu_forward(in, in, 4); /* in place */
    EXPECT(in[0] == 0.0f && in[2] == 3.0f, "relu in place gave %g %g", in[0], in[2]);
    float s_in[3] = {0.0f, 100.0f, -100.0f}, s[3];
    sigmoid_forward(s, s_in, 3);
    EXPECT(s[0] == 0.5f && s[1] <= 1.0f && s[1] > 0.999f && s[2] >= 0.0f && s[2] < 1e-3f,
           "sigmoid gave %g %g %g", s[0], s[1], s[2]);
}

int main(void) {
    RUN(relu_backward_matches_finite_differences);
    RUN(sigmoid_backward_matches_finite_differences);
    RUN(values);
    return TEST_SUMMARY();
}
