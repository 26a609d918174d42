/*
 * test_conv2d.c: the convolution (im2col + gemm) against a direct loop, im2col against
 * its adjoint col2im, and finite-difference checks of conv2d_backward.
 */
#include <stdlib.h>

#include "gradcheck.h"
#include "layers.h"
#include "test.h"

enum { B = 3, CI = 3, H = 9, W = 8, CO = 4, K = 3, STRIDE = 2 };
enum { HO = (H - K) / STRIDE + 1, WO = (W - K) / STRIDE + 1 };
enum { N_IN = B * CI * H * W, N_W = CO * CI * K * K, N_OUT = B * CO * HO * WO };

/* out[b][o][y][x] = bias[o] + sum w[o][c][ky][kx] in[b][c][y*S+ky][x*S+kx], written out. */
static void conv_direct(float *out, const float *in, const float *w, const float *bias) {
    for (int b = 0; b < B; b++)
        for (int o = 0; o < CO; o++)
            for (int y = 0; y < HO; y++)
                for (int x = 0; x < WO; x++) {
                    double acc = bias[o];
                    for (int c = 0; c < CI; c++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++)
                                acc += (double)w[((o * CI + c) * K + ky) * K + kx] *
                                       in[((b * CI + c) * H + y * STRIDE + ky) * W + x * STRIDE + kx];
                    out[((b * CO + o) * HO + y) * WO + x] = (float)acc;
                }
}

typedef struct {
    gc_layer base;
    float *in, *w, *bias, *col, *tmp;
    int chunk;
} conv_ctx;

static void conv_fwd(gc_layer *l) {
    conv_ctx *c = (conv_ctx *)l;
    conv2d_forward(l->out, c->col, c->tmp, c->in, c->w, c->bias, B, CI, H, W, CO, K, STRIDE,
                   c->chunk);
}

TEST(forward_matches_direct_loop) {
    caps_rng r;
    caps_rng_seed(&r, 1, 1);
    float *in = gc_vec(N_IN), *w = gc_vec(N_W), *bias = gc_vec(CO), *out = gc_vec(N_OUT), *ref = gc_vec(N_OUT);
    float *col = gc_vec(conv2d_col_size(CI, K, HO, WO) * B), *tmp = gc_vec((size_t)CO * HO * WO * B);
    gc_fill(in, N_IN, -1, 1, &r);
    gc_fill(w, N_W, -1, 1, &r);
    gc_fill(bias, CO, -1, 1, &r);
    conv_direct(ref, in, w, bias);
    for (int chunk = 1; chunk <= B; chunk++) {
        conv2d_forward(out, col, tmp, in, w, bias, B, CI, H, W, CO, K, STRIDE, chunk);
        int bad = 0;
        for (int k = 0; k < N_OUT; k++) bad += !test_close(out[k], ref[k], 1e-5, 1e-5);
        EXPECT(bad == 0, "chunk %d: %d outputs differ from the direct loop", chunk, bad);
    }
    free(in), free(w), free(bias), free(out), free(ref), free(col), free(tmp);
}

/* col2im must be the adjoint (transpose) of im2col: <im2col(x), y> = <x, col2im(y)>. */
TEST(col2im_is_adjoint_of_im2col) {
    caps_rng r;
    caps_rng_seed(&r, 2, 1);
    size_t ncol = conv2d_col_size(CI, K, HO, WO) * B;
    float *x = gc_vec(N_IN), *y = gc_vec(ncol), *col = gc_vec(ncol), *back = gc_vec(N_IN);
    gc_fill(x, N_IN, -1, 1, &r);
    gc_fill(y, ncol, -1, 1, &r);
    im2col(col, x, B, CI, H, W, K, STRIDE);
    col2im(back, y, B, CI, H, W, K, STRIDE);
    double lhs = gc_dot(col, y, ncol), rhs = gc_dot(x, back, N_IN);
    EXPECT(test_close(lhs, rhs, 1e-6, 1e-9), "<im2col x, y> = %.9g but <x, col2im y> = %.9g", lhs,
           rhs);
    free(x), free(y), free(col), free(back);
}

static void check_conv_backward(int chunk) {
    caps_rng r;
    caps_rng_seed(&r, 3, (uint64_t)chunk);
    conv_ctx c = {{conv_fwd, NULL, gc_vec(N_OUT), gc_vec(N_OUT), N_OUT}, gc_vec(N_IN), gc_vec(N_W),
                  gc_vec(CO), gc_vec(conv2d_col_size(CI, K, HO, WO) * chunk),
                  gc_vec((size_t)CO * HO * WO * chunk), chunk};
    gc_fill(c.in, N_IN, -1, 1, &r);
    gc_fill(c.w, N_W, -0.5f, 0.5f, &r);
    gc_fill(c.bias, CO, -0.5f, 0.5f, &r);
    gc_fill((float *)c.base.r, N_OUT, -1, 1, &r);
    float *din = gc_vec(N_IN), *dw = gc_vec(N_W), *db = gc_vec(CO);
    conv2d_backward(din, dw, db, c.col, c.tmp, c.base.r, c.in, c.w, B, CI, H, W, CO, K, STRIDE,
                    chunk);
    GRADCHECK("conv din", c.in, N_IN, din, &c, 1e-2, 1e-3, 1e-4);
    GRADCHECK("conv dw", c.w, N_W, dw, &c, 1e-2, 1e-3, 1e-4);
    GRADCHECK("conv dbias", c.bias, CO, db, &c, 1e-2, 1e-3, 1e-4);
    /* Backward accumulates: a second call doubles every gradient. */
    float *dw2 = gc_vec(N_W), *db2 = gc_vec(CO);
    for (int k = 0; k < N_W; k++) dw2[k] = dw[k];
    for (int k = 0; k < CO; k++) db2[k] = db[k];
    conv2d_backward(NULL, dw2, db2, c.col, c.tmp, c.base.r, c.in, c.w, B, CI, H, W, CO, K, STRIDE,
                    chunk);
    int bad = 0;
    for (int k = 0; k < N_W; k++) bad += !test_close(dw2[k], 2 * dw[k], 1e-5, 1e-6);
    for (int k = 0; k < CO; k++) bad += !test_close(db2[k], 2 * db[k], 1e-5, 1e-6);
    EXPECT(bad == 0, "%d gradients did not accumulate (+=)", bad);
    free(c.base.out), free((float *)c.base.r), free(c.in), free(c.w), free(c.bias), free(c.col);
    free(c.tmp), free(din), free(dw), free(db), free(dw2), free(db2);
}

TEST(backward_matches_finite_differences_chunk_1) { check_conv_backward(1); }
TEST(backward_matches_finite_differences_whole_batch) { check_conv_backward(B); }

int main(void) {
    RUN(forward_matches_direct_loop);
    RUN(col2im_is_adjoint_of_im2col);
    RUN(backward_matches_finite_differences_chunk_1);
    RUN(backward_matches_finite_differences_whole_batch);
    return TEST_SUMMARY();
}
