/*
 * test_conv2d.c: the convolutions. The plain loop (conv2d_naive_*) against finite
 * differences; the fast versions (conv2d_rows_* for Conv1, conv2d_shift_* for
 * PrimaryCaps, on row-phased channels-last layouts) against the plain loop, at strides 1,
 * 2 and 3 and heights the stride does not divide.
 */
#include <stdlib.h>

#include "gradcheck.h"
#include "layers.h"
#include "test.h"

typedef struct {
    int B, Ci, H, W, Co, K, S;
} shape;

static const shape shapes[] = {
    {3, 3, 9, 8, 4, 3, 2},  /* H = 9: the last phase has one row fewer */
    {2, 5, 10, 10, 6, 3, 1},
    {2, 4, 11, 9, 3, 4, 3},
    {2, 1, 12, 12, 5, 5, 1}, /* one input channel, as Conv1 */
};
enum { NSHAPES = sizeof shapes / sizeof shapes[0] };

static int out_side(int n, int K, int S) { return (n - K) / S + 1; }

typedef struct {
    gc_layer base;
    const shape *s;
    float *in, *w, *bias;
} naive_ctx;

static void naive_fwd(gc_layer *l) {
    naive_ctx *c = (naive_ctx *)l;
    const shape *s = c->s;
    conv2d_naive_forward(l->out, c->in, c->w, c->bias, s->B, s->Ci, s->H, s->W, s->Co, s->K, s->S);
}

/* The plain loop's backward against central differences. */
TEST(naive_backward_matches_finite_differences) {
    const shape *s = &shapes[0];
    int Ho = out_side(s->H, s->K, s->S), Wo = out_side(s->W, s->K, s->S);
    size_t n_in = (size_t)s->B * s->Ci * s->H * s->W, n_w = (size_t)s->Co * s->Ci * s->K * s->K;
    size_t n_out = (size_t)s->B * s->Co * Ho * Wo;
    caps_rng r;
    caps_rng_seed(&r, 3, 0);
    naive_ctx c = {{naive_fwd, NULL, gc_vec(n_out), gc_vec(n_out), n_out}, s, gc_vec(n_in),
                   gc_vec(n_w), gc_vec(s->Co)};
    gc_fill(c.in, n_in, -1, 1, &r);
    gc_fill(c.w, n_w, -0.5f, 0.5f, &r);
    gc_fill(c.bias, s->Co, -0.5f, 0.5f, &r);
    gc_fill((float *)c.base.r, n_out, -1, 1, &r);
    float *din = gc_vec(n_in), *dw = gc_vec(n_w), *db = gc_vec(s->Co);
    conv2d_naive_backward(din, dw, db, c.base.r, c.in, c.w, s->B, s->Ci, s->H, s->W, s->Co, s->K,
                          s->S);
    GRADCHECK("conv din", c.in, n_in, din, &c, 1e-2, 1e-3, 1e-4);
    GRADCHECK("conv dw", c.w, n_w, dw, &c, 1e-2, 1e-3, 1e-4);
    GRADCHECK("conv dbias", c.bias, s->Co, db, &c, 1e-2, 1e-3, 1e-4);
    free(c.base.out), free((float *)c.base.r), free(c.in), free(c.w), free(c.bias);
    free(din), free(dw), free(db);
}

static int count_far(const float *a, const float *b, size_t n) {
    int bad = 0;
    for (size_t k = 0; k < n; k++) bad += !test_close(a[k], b[k], 1e-4, 1e-5);
    return bad;
}

/* Everything both fast versions need for one shape: random tensors, the plain results. */
typedef struct {
    int Ho, Wo;
    size_t n_in, n_w, n_out;
    float *in, *w, *bias, *dout, *out, *din, *dw, *db; /* NCHW, plain loop's results */
} case_data;

static case_data make_case(const shape *s, uint64_t seed) {
    case_data d;
    d.Ho = out_side(s->H, s->K, s->S), d.Wo = out_side(s->W, s->K, s->S);
    d.n_in = (size_t)s->B * s->Ci * s->H * s->W, d.n_w = (size_t)s->Co * s->Ci * s->K * s->K;
    d.n_out = (size_t)s->B * s->Co * d.Ho * d.Wo;
    caps_rng r;
    caps_rng_seed(&r, seed, 0);
    d.in = gc_vec(d.n_in), d.w = gc_vec(d.n_w), d.bias = gc_vec(s->Co), d.dout = gc_vec(d.n_out);
    d.out = gc_vec(d.n_out), d.din = gc_vec(d.n_in), d.dw = gc_vec(d.n_w), d.db = gc_vec(s->Co);
    gc_fill(d.in, d.n_in, -1, 1, &r);
    gc_fill(d.w, d.n_w, -1, 1, &r);
    gc_fill(d.bias, s->Co, -1, 1, &r);
    gc_fill(d.dout, d.n_out, -1, 1, &r);
    conv2d_naive_forward(d.out, d.in, d.w, d.bias, s->B, s->Ci, s->H, s->W, s->Co, s->K, s->S);
    conv2d_naive_backward(d.din, d.dw, d.db, d.dout, d.in, d.w, s->B, s->Ci, s->H, s->W, s->Co,
                          s->K, s->S);
    return d;
}

static void free_case(case_data *d) {
    free(d->in), free(d->w), free(d->bias), free(d->dout), free(d->out), free(d->din);
    free(d->dw), free(d->db);
}

/* Conv1's way: output row by row into a row-phased layout with P phases, ReLU or not. */
TEST(rows_version_equals_plain_loop) {
    for (int k = 0; k < NSHAPES; k++) {
        const shape *s = &shapes[k];
        case_data d = make_case(s, 10 + (uint64_t)k);
        for (int P = 1; P <= 2; P++)
            for (int relu = 0; relu < 2; relu++) {
                size_t n_act = conv_act_size(s->B, s->Co, d.Ho, d.Wo, P);
                float *act = gc_vec(n_act), *nchw = gc_vec(d.n_out), *want = gc_vec(d.n_out);
                float *col = gc_vec(conv2d_rows_col_size(s->B, s->Ci, s->W, s->K, s->S));
                conv2d_rows_forward(act, col, d.in, d.w, d.bias, s->B, s->Ci, s->H, s->W, s->Co,
                                    s->K, s->S, P, relu);
                conv_act_to_nchw(nchw, act, s->B, s->Co, d.Ho, d.Wo, P);
                for (size_t i = 0; i < d.n_out; i++)
                    want[i] = relu && d.out[i] < 0.0f ? 0.0f : d.out[i];
                EXPECT(count_far(nchw, want, d.n_out) == 0, "shape %d P %d relu %d: forward differs",
                       k, P, relu);
                /* backward (no ReLU: the caller applies its gradient) */
                float *dact = gc_vec(n_act), *dw = gc_vec(d.n_w), *db = gc_vec(s->Co);
                conv_act_from_nchw(dact, d.dout, s->B, s->Co, d.Ho, d.Wo, P);
                conv2d_rows_backward(dw, db, col, dact, d.in, s->B, s->Ci, s->H, s->W, s->Co, s->K,
                                     s->S, P);
                EXPECT(count_far(dw, d.dw, d.n_w) == 0 && count_far(db, d.db, s->Co) == 0,
                       "shape %d P %d: dw or dbias differs", k, P);
                free(act), free(nchw), free(want), free(col), free(dact), free(dw), free(db);
            }
        free_case(&d);
    }
}

/* PrimaryCaps' way: shifted products over an input row-phased by the stride. */
TEST(shift_version_equals_plain_loop) {
    for (int k = 0; k < NSHAPES; k++) {
        const shape *s = &shapes[k];
        case_data d = make_case(s, 20 + (uint64_t)k);
        size_t n_act = conv_act_size(s->B, s->Ci, s->H, s->W, s->S);
        float *act = gc_vec(n_act), *wt = gc_vec(d.n_w), *out = gc_vec(d.n_out);
        float *nchw = gc_vec(d.n_out);
        conv_act_from_nchw(act, d.in, s->B, s->Ci, s->H, s->W, s->S);
        conv2d_shift_weights(wt, d.w, s->Co, s->Ci, s->K);
        conv2d_shift_forward(out, act, wt, d.bias, s->B, s->Ci, s->H, s->W, s->Co, s->K, s->S);
        /* out is [Ho][B][Wo][Co]: a row-phased layout with one phase */
        conv_act_to_nchw(nchw, out, s->B, s->Co, d.Ho, d.Wo, 1);
        EXPECT(count_far(nchw, d.out, d.n_out) == 0, "shape %d: forward differs", k);

        float *dout = gc_vec(d.n_out), *dact = gc_vec(n_act), *dwt = gc_vec(d.n_w / s->K);
        float *dw = gc_vec(d.n_w), *db = gc_vec(s->Co), *din = gc_vec(d.n_in);
        conv_act_from_nchw(dout, d.dout, s->B, s->Co, d.Ho, d.Wo, 1);
        conv2d_shift_backward(dact, dw, db, dwt, dout, act, wt, s->B, s->Ci, s->H, s->W, s->Co,
                              s->K, s->S);
        conv_act_to_nchw(din, dact, s->B, s->Ci, s->H, s->W, s->S);
        EXPECT(count_far(din, d.din, d.n_in) == 0, "shape %d: din differs", k);
        EXPECT(count_far(dw, d.dw, d.n_w) == 0, "shape %d: dw differs", k);
        EXPECT(count_far(db, d.db, s->Co) == 0, "shape %d: dbias differs", k);
        free(act), free(wt), free(out), free(nchw), free(dout), free(dact), free(dwt), free(dw);
        free(db), free(din);
        free_case(&d);
    }
}

/* The layout helpers are inverse permutations; rows the stride leaves over stay zero. */
TEST(row_phased_layout_round_trip) {
    int B = 2, C = 3, H = 7, W = 5, P = 2;
    size_t n = (size_t)B * C * H * W, na = conv_act_size(B, C, H, W, P);
    float *x = gc_vec(n), *act = gc_vec(na), *back = gc_vec(n);
    for (size_t k = 0; k < n; k++) x[k] = (float)(k + 1);
    conv_act_from_nchw(act, x, B, C, H, W, P);
    conv_act_to_nchw(back, act, B, C, H, W, P);
    int bad = 0, nonzero = 0;
    for (size_t k = 0; k < n; k++) bad += back[k] != x[k];
    for (size_t k = 0; k < na; k++) nonzero += act[k] != 0.0f;
    EXPECT(bad == 0, "%d values lost", bad);
    EXPECT(na == (size_t)2 * 4 * B * W * C && nonzero == (int)n, "layout of %zu floats, %d set", na,
           nonzero);
    free(x), free(act), free(back);
}

int main(void) {
    RUN(naive_backward_matches_finite_differences);
    RUN(rows_version_equals_plain_loop);
    RUN(shift_version_equals_plain_loop);
    RUN(row_phased_layout_round_trip);
    return TEST_SUMMARY();
}
