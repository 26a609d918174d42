/*
 * conv2d.c: 2-D convolution (cross-correlation, as PyTorch's nn.Conv2d), no padding,
 * computed as im2col + one matrix product per chunk of images (darknet, Caffe).
 *
 *   out[b][o][y][x] = bias[o] + sum_{c,ky,kx} w[o][c][ky][kx] * in[b][c][y*S+ky][x*S+kx]
 *
 * im2col lays the receptive fields of nb images side by side,
 *   col[(c*K + ky)*K + kx][(b*Ho + y)*Wo + x] = in[b][c][y*S+ky][x*S+kx],
 * so the whole chunk is one product out[o][(b, y, x)] = w[o][(c, ky, kx)] . col. Chunks
 * (not the whole batch) bound the size of col: for PrimaryCaps one image's col is 3 MB.
 *
 * Dimension letters: B images, Ci/Co input/output channels, H x W input, K kernel side,
 * S stride, Ho x Wo output = (H - K)/S + 1; nb images in a chunk.
 */
#include <string.h>

#include "gemm.h"
#include "layers.h"
#include "util.h"

size_t conv2d_col_size(int Ci, int K, int Ho, int Wo) {
    return (size_t)Ci * K * K * (size_t)Ho * Wo;
}

/* col: [Ci*K*K][nb*Ho*Wo]; in: [nb][Ci][H][W]. Each thread fills whole rows of col. */
void im2col(float *col, const float *in, int nb, int Ci, int H, int W, int K, int stride) {
    int Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
    size_t ncol = (size_t)nb * Ho * Wo;
#pragma omp parallel for schedule(static)
    for (int row = 0; row < Ci * K * K; row++) {
        int c = row / (K * K), ky = row / K % K, kx = row % K;
        float *dst = col + (size_t)row * ncol;
        for (int b = 0; b < nb; b++) {
            const float *src = in + ((size_t)b * Ci + c) * H * W;
            for (int y = 0; y < Ho; y++) {
                const float *line = src + (size_t)(y * stride + ky) * W + kx;
                for (int x = 0; x < Wo; x++) *dst++ = line[x * stride];
            }
        }
    }
}

/* The adjoint of im2col: din[b][c][..] += every col entry that was copied from it.
 * Rows of one channel c write the same pixels, so threads split the channels. */
void col2im(float *din, const float *col, int nb, int Ci, int H, int W, int K, int stride) {
    int Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;
    size_t ncol = (size_t)nb * Ho * Wo;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < Ci; c++) {
        for (int ky = 0; ky < K; ky++) {
            for (int kx = 0; kx < K; kx++) {
                const float *src = col + ((size_t)(c * K + ky) * K + kx) * ncol;
                for (int b = 0; b < nb; b++) {
                    float *dst = din + ((size_t)b * Ci + c) * H * W;
                    for (int y = 0; y < Ho; y++) {
                        float *line = dst + (size_t)(y * stride + ky) * W + kx;
                        for (int x = 0; x < Wo; x++) line[x * stride] += *src++;
                    }
                }
            }
        }
    }
}

/* out: [B][Co][Ho][Wo]; col: [Ci*K*K][chunk*Ho*Wo] and tmp: [Co][chunk*Ho*Wo] scratch;
 * in: [B][Ci][H][W]; w: [Co][Ci][K][K]; bias: [Co]. */
void conv2d_forward(float *out, float *col, float *tmp, const float *in, const float *w,
                    const float *bias, int B, int Ci, int H, int W, int Co, int K, int stride,
                    int chunk) {
    CAPS_ASSERT(chunk > 0 && K <= H && K <= W);
    int Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1, HW = Ho * Wo;
    int CKK = Ci * K * K;
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        int n = nb * HW;
        im2col(col, in + (size_t)b0 * Ci * H * W, nb, Ci, H, W, K, stride);
        /* tmp[o][(b, y, x)] = sum_r w[o][r] col[r][(b, y, x)] */
        gemm(0, 0, Co, n, CKK, 1.0f, w, CKK, col, n, 0.0f, tmp, n);
        /* out[b0 + b][o][p] = tmp[o][b*HW + p] + bias[o]: back to NCHW. */
#pragma omp parallel for schedule(static)
        for (int o = 0; o < Co; o++) {
            for (int b = 0; b < nb; b++) {
                float *dst = out + ((size_t)(b0 + b) * Co + o) * HW;
                const float *src = tmp + (size_t)o * n + (size_t)b * HW;
                for (int p = 0; p < HW; p++) dst[p] = src[p] + bias[o];
            }
        }
    }
}

/* Differentiates out = w . im2col(in) + bias:
 *   dw[o][r]   += sum_(b,p) dout[b][o][p] col[r][(b,p)]     (dout . col^T)
 *   dcol[r][.] =  sum_o w[o][r] dout[o][.]                  (w^T . dout), then col2im -> din
 *   dbias[o]   += sum_(b,p) dout[b][o][p]
 * din may be NULL (the first layer needs no gradient for the image). col and tmp as in
 * forward; col is reused for dcol once dw no longer needs it. */
void conv2d_backward(float *din, float *dw, float *dbias, float *col, float *tmp,
                     const float *dout, const float *in, const float *w, int B, int Ci, int H,
                     int W, int Co, int K, int stride, int chunk) {
    CAPS_ASSERT(chunk > 0 && K <= H && K <= W);
    int Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1, HW = Ho * Wo;
    int CKK = Ci * K * K;
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        int n = nb * HW;
        /* tmp[o][(b, p)] = dout[b0 + b][o][p]; dbias accumulates per output channel. */
#pragma omp parallel for schedule(static)
        for (int o = 0; o < Co; o++) {
            double acc = 0.0;
            for (int b = 0; b < nb; b++) {
                const float *src = dout + ((size_t)(b0 + b) * Co + o) * HW;
                float *dst = tmp + (size_t)o * n + (size_t)b * HW;
                for (int p = 0; p < HW; p++) {
                    dst[p] = src[p];
                    acc += src[p];
                }
            }
            dbias[o] += (float)acc;
        }
        im2col(col, in + (size_t)b0 * Ci * H * W, nb, Ci, H, W, K, stride);
        gemm(0, 1, Co, CKK, n, 1.0f, tmp, n, col, n, 1.0f, dw, CKK);
        if (din) {
            gemm(1, 0, CKK, n, Co, 1.0f, w, CKK, tmp, n, 0.0f, col, n);
            col2im(din + (size_t)b0 * Ci * H * W, col, nb, Ci, H, W, K, stride);
        }
    }
}
