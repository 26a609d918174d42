/*
 * conv2d.c: 2-D convolution (cross-correlation, as PyTorch's nn.Conv2d), no padding:
 *
 *   out[b][o][y][x] = bias[o] + sum_{c,ky,kx} w[o][c][ky][kx] * in[b][c][y*S+ky][x*S+kx]
 *
 * computed as matrix products in two ways, each for the convolution it suits, and as the
 * plain loop both must equal (conv2d_naive_*, used by the tests).
 *
 * Activations between the convolutions are kept "row-phased, channels last":
 *
 *   act[ph][hs][b][w][c]  for pixel (h, w) of image b, h = hs*P + ph,  Hs = ceil(H / P)
 *
 * with P the stride of the convolution that reads them. For P = 1 that is [H][B][W][C].
 * Channels last makes a patch row (K pixels x C channels) one contiguous run; splitting
 * the rows by phase makes the rows a stride-P convolution reads, for all output rows y and
 * images b, equally spaced in memory. So:
 *
 * conv2d_shift_* (PrimaryCaps: many input channels): for each kernel row ky and output
 * column x, the patches of all (y, b) form a matrix with a constant row stride, read in
 * place:  out[(y, b)][x][:] += in[ky % S][y + ky / S][b][x*S .. x*S + K-1][:] . wt[ky].
 * K * Wo products of (Ho * B) x (K * Ci) x Co (for MNIST, 54 products of 600 x 2304 x 256)
 * and no im2col at all: the patch matrix of PrimaryCaps would be 3 MB per image. The
 * weights are reordered once per step to wt[ky][kx][c][o], the matching row order.
 *
 * conv2d_rows_* (Conv1: one input channel, so K * Ci = 81 is too short for the above):
 * im2col for one output row at a time, col[(b, x)][(c, ky, kx)], then one product per row
 * that writes the output row's slab [B][Wo][Co] of a row-phased layout.
 *
 * Dimension letters: B images, Ci/Co input/output channels, H x W input, K kernel side,
 * S stride, Ho x Wo output = (H - K)/S + 1, P the phase count of a layout.
 */
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "layers.h"
#include "util.h"

/* ------------------------------------------------------------------------ layout */

size_t conv_act_size(int B, int C, int H, int W, int P) {
    int Hs = (H + P - 1) / P;
    return (size_t)P * Hs * B * W * C;
}

/* Where row h of image b starts: a [W][C] run. */
static size_t conv_row_offset(int B, int C, int H, int W, int P, int h, int b) {
    int Hs = (H + P - 1) / P;
    return (((size_t)(h % P) * Hs + h / P) * B + b) * W * C;
}

void conv_act_from_nchw(float *act, const float *nchw, int B, int C, int H, int W, int P) {
#pragma omp parallel for schedule(static)
    for (int h = 0; h < H; h++)
        for (int b = 0; b < B; b++) {
            float *row = act + conv_row_offset(B, C, H, W, P, h, b);
            for (int w = 0; w < W; w++)
                for (int c = 0; c < C; c++)
                    row[(size_t)w * C + c] = nchw[(((size_t)b * C + c) * H + h) * W + w];
        }
}

void conv_act_to_nchw(float *nchw, const float *act, int B, int C, int H, int W, int P) {
#pragma omp parallel for schedule(static)
    for (int h = 0; h < H; h++)
        for (int b = 0; b < B; b++) {
            const float *row = act + conv_row_offset(B, C, H, W, P, h, b);
            for (int w = 0; w < W; w++)
                for (int c = 0; c < C; c++)
                    nchw[(((size_t)b * C + c) * H + h) * W + w] = row[(size_t)w * C + c];
        }
}

/* ------------------------------------------------------------------------ plain twins */

/* out: [B][Co][Ho][Wo]; in: [B][Ci][H][W]; w: [Co][Ci][K][K]; bias: [Co]. */
void conv2d_naive_forward(float *out, const float *in, const float *w, const float *bias, int B,
                          int Ci, int H, int W, int Co, int K, int S) {
    int Ho = (H - K) / S + 1, Wo = (W - K) / S + 1;
    for (int b = 0; b < B; b++)
        for (int o = 0; o < Co; o++)
            for (int y = 0; y < Ho; y++)
                for (int x = 0; x < Wo; x++) {
                    double acc = bias[o];
                    for (int c = 0; c < Ci; c++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++)
                                acc += (double)w[(((size_t)o * Ci + c) * K + ky) * K + kx] *
                                       in[(((size_t)b * Ci + c) * H + y * S + ky) * W + x * S + kx];
                    out[(((size_t)b * Co + o) * Ho + y) * Wo + x] = (float)acc;
                }
}

/* forward: the loop above; din (may be NULL), dw, dbias += its derivatives. */
void conv2d_naive_backward(float *din, float *dw, float *dbias, const float *dout,
                           const float *in, const float *w, int B, int Ci, int H, int W, int Co,
                           int K, int S) {
    int Ho = (H - K) / S + 1, Wo = (W - K) / S + 1;
    for (int b = 0; b < B; b++)
        for (int o = 0; o < Co; o++)
            for (int y = 0; y < Ho; y++)
                for (int x = 0; x < Wo; x++) {
                    float g = dout[(((size_t)b * Co + o) * Ho + y) * Wo + x];
                    dbias[o] += g;
                    for (int c = 0; c < Ci; c++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++) {
                                size_t wi = (((size_t)o * Ci + c) * K + ky) * K + kx;
                                size_t ii = (((size_t)b * Ci + c) * H + y * S + ky) * W + x * S + kx;
                                dw[wi] += g * in[ii];
                                if (din) din[ii] += g * w[wi];
                            }
                }
}

/* dbias[o] += sum_r dout[r][o] over a [rows][Co] matrix. Each thread owns a range of
 * columns and walks the rows in memory order (summing one column at a time would stride
 * through the whole matrix Co times), keeping its sums in doubles on its stack. */
#define MAX_BIAS_COLUMNS 4096 /* caps_config_check's largest dimension */

static void add_column_sums(float *dbias, const float *dout, size_t rows, int Co) {
    CAPS_ASSERT(Co <= MAX_BIAS_COLUMNS);
#pragma omp parallel
    {
        int id, n;
        caps_thread(&id, &n);
        int o0 = Co * id / n, o1 = Co * (id + 1) / n;
        double acc[MAX_BIAS_COLUMNS];
        for (int o = o0; o < o1; o++) acc[o - o0] = 0.0;
        for (size_t r = 0; r < rows; r++) {
            const float *row = dout + r * Co;
            for (int o = o0; o < o1; o++) acc[o - o0] += row[o];
        }
        for (int o = o0; o < o1; o++) dbias[o] += (float)acc[o - o0];
    }
}

/* ------------------------------------------------------------------------ rows (Conv1) */

size_t conv2d_rows_col_size(int B, int Ci, int W, int K, int S) {
    return (size_t)B * ((W - K) / S + 1) * Ci * K * K;
}

/* col[(b, x)][(c, ky, kx)] = in[b][c][y*S+ky][x*S+kx]: the patches of output row y. */
static void im2col_row(float *col, const float *in, int B, int Ci, int H, int W, int K, int S,
                       int y) {
    int Wo = (W - K) / S + 1, CKK = Ci * K * K;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int x = 0; x < Wo; x++) {
            float *dst = col + ((size_t)b * Wo + x) * CKK;
            for (int c = 0; c < Ci; c++)
                for (int ky = 0; ky < K; ky++) {
                    const float *src = in + (((size_t)b * Ci + c) * H + y * S + ky) * W + x * S;
                    for (int kx = 0; kx < K; kx++) *dst++ = src[kx];
                }
        }
}

/* out: row-phased [P][..][B][Wo][Co] (Ho x Wo output); col: conv2d_rows_col_size scratch;
 * in: [B][Ci][H][W] (the image, as PyTorch lays it out); w: [Co][Ci][K][K]. With relu, the
 * ReLU is applied while each output row is still in cache. */
void conv2d_rows_forward(float *out, float *col, const float *in, const float *w,
                         const float *bias, int B, int Ci, int H, int W, int Co, int K, int S,
                         int P, int relu) {
    int Ho = (H - K) / S + 1, Wo = (W - K) / S + 1, CKK = Ci * K * K;
    for (int y = 0; y < Ho; y++) {
        im2col_row(col, in, B, Ci, H, W, K, S, y);
        float *slab = out + conv_row_offset(B, Co, Ho, Wo, P, y, 0);
        /* slab[(b, x)][o] = col[(b, x)][:] . w[o][:] */
        gemm(0, 1, B * Wo, Co, CKK, 1.0f, col, CKK, w, CKK, 0.0f, slab, Co);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < B * Wo; r++) {
            float *v = slab + (size_t)r * Co;
            for (int o = 0; o < Co; o++) {
                float z = v[o] + bias[o];
                v[o] = relu && z < 0.0f ? 0.0f : z;
            }
        }
    }
}

/* Differentiates the product of each row: dw[o][:] += sum_(b, x) dout[(b, x)][o] col[(b, x)]
 * and dbias[o] += sum of dout; no gradient for the input (it is the image). dout is in
 * the layout of out, the gradient before any ReLU (the caller applies the ReLU's). */
void conv2d_rows_backward(float *dw, float *dbias, float *col, const float *dout,
                          const float *in, int B, int Ci, int H, int W, int Co, int K, int S,
                          int P) {
    int Ho = (H - K) / S + 1, Wo = (W - K) / S + 1, CKK = Ci * K * K;
    for (int y = 0; y < Ho; y++) {
        im2col_row(col, in, B, Ci, H, W, K, S, y);
        const float *slab = dout + conv_row_offset(B, Co, Ho, Wo, P, y, 0);
        gemm(1, 0, Co, CKK, B * Wo, 1.0f, slab, Co, col, CKK, 1.0f, dw, CKK);
    }
    add_column_sums(dbias, dout, conv_act_size(B, Co, Ho, Wo, P) / Co, Co);
}

/* ------------------------------------------------------------------------ shift (PrimaryCaps) */

/* wt[ky][kx][c][o] = w[o][c][ky][kx]: the row order of a patch in the row-phased layout.
 * A transpose of [Co][K*K] for each c, in tiles of TILE outputs so that both the reads
 * (TILE rows of w, a few cache lines each) and the writes (TILE contiguous floats) stay in
 * cache; the plain loop wrote one cache line per float and took 25 ms for PrimaryCaps. */
#define TILE 16

void conv2d_shift_weights(float *wt, const float *w, int Co, int Ci, int K) {
    int KK = K * K;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < Ci; c++)
        for (int o0 = 0; o0 < Co; o0 += TILE) {
            int on = Co - o0 < TILE ? Co - o0 : TILE;
            for (int k = 0; k < KK; k++) {
                float *dst = wt + ((size_t)k * Ci + c) * Co + o0;
                const float *src = w + ((size_t)o0 * Ci + c) * KK + k;
                for (int o = 0; o < on; o++) dst[o] = src[(size_t)o * Ci * KK];
            }
        }
}

/* dw[o][c][ky][kx] += dwt[kx][c][o] for one kernel row ky: the gradient of that row back
 * in PyTorch's order, by tiles. */
static void shift_weights_grad_row(float *dw, const float *dwt, int Co, int Ci, int K, int ky) {
    int KK = K * K;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < Ci; c++)
        for (int o0 = 0; o0 < Co; o0 += TILE) {
            int on = Co - o0 < TILE ? Co - o0 : TILE;
            for (int kx = 0; kx < K; kx++) {
                const float *src = dwt + ((size_t)kx * Ci + c) * Co + o0;
                float *dst = dw + ((size_t)o0 * Ci + c) * KK + ky * K + kx;
                for (int o = 0; o < on; o++) dst[(size_t)o * Ci * KK] += src[o];
            }
        }
}

/* The patch matrix for kernel row ky and output column x: rows (y, b), K*Ci columns, row
 * stride W*Ci (input rows y*S + ky share the phase ky % S and follow each other). */
static size_t shift_patch_offset(int B, int Ci, int H, int W, int K, int S, int ky, int x) {
    (void)K;
    return conv_row_offset(B, Ci, H, W, S, ky, 0) + (size_t)x * S * Ci;
}

/* out: [Ho][B][Wo][Co]; in: row-phased [S][..][B][W][Ci]; wt: [K][K][Ci][Co] from
 * conv2d_shift_weights; bias: [Co]. */
void conv2d_shift_forward(float *out, const float *in, const float *wt, const float *bias, int B,
                          int Ci, int H, int W, int Co, int K, int S) {
    int Ho = (H - K) / S + 1, Wo = (W - K) / S + 1, KC = K * Ci;
    for (int ky = 0; ky < K; ky++)
        for (int x = 0; x < Wo; x++)
            /* out[(y, b)][x][:] (+)= patches(ky, x) . wt[ky] */
            gemm(0, 0, Ho * B, Co, KC, 1.0f, in + shift_patch_offset(B, Ci, H, W, K, S, ky, x),
                 W * Ci, wt + (size_t)ky * KC * Co, Co, ky == 0 ? 0.0f : 1.0f,
                 out + (size_t)x * Co, Wo * Co);
    size_t rows = (size_t)Ho * B * Wo;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++)
        for (int o = 0; o < Co; o++) out[r * Co + o] += bias[o];
}

/* Differentiates every product of forward:
 *   dw[.][.][ky][.] += patches(ky, x)^T . dout[(y, b)][x][:]  (summed over x in dwt, one
 *                                                              kernel row at a time)
 *   patches(ky, x)  += dout[(y, b)][x][:] . wt[ky]^T          (into din, same places)
 *   dbias[o]        += sum of dout[..][o]
 * din (may be NULL) is row-phased like in; dw: [Co][Ci][K][K], PyTorch's order; dwt:
 * [K][Ci][Co] scratch for one kernel row (2.4 MB for PrimaryCaps, not 21 for all nine).
 * Overlapping patches add up in turn, one product at a time, so no two threads write one
 * pixel. */
void conv2d_shift_backward(float *din, float *dw, float *dbias, float *dwt, const float *dout,
                           const float *in, const float *wt, int B, int Ci, int H, int W, int Co,
                           int K, int S) {
    int Ho = (H - K) / S + 1, Wo = (W - K) / S + 1, KC = K * Ci;
    add_column_sums(dbias, dout, (size_t)Ho * B * Wo, Co);
    for (int ky = 0; ky < K; ky++) {
        for (int x = 0; x < Wo; x++) {
            size_t off = shift_patch_offset(B, Ci, H, W, K, S, ky, x);
            gemm(1, 0, KC, Co, Ho * B, 1.0f, in + off, W * Ci, dout + (size_t)x * Co, Wo * Co,
                 x == 0 ? 0.0f : 1.0f, dwt, Co);
            if (din)
                gemm(0, 1, Ho * B, KC, Co, 1.0f, dout + (size_t)x * Co, Wo * Co,
                     wt + (size_t)ky * KC * Co, Co, 1.0f, din + off, W * Ci);
        }
        shift_weights_grad_row(dw, dwt, Co, Ci, K, ky);
    }
}
