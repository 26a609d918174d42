/*
 * layers.cu: the GPU twins of layers.h (and of the lengths of digit_caps.c): the
 * convolutions' im2col and its gather-form inverse, biases, activations, the primary
 * capsules, squash (eq. 1), lengths, the margin loss (eq. 4), the decoder's mask and
 * reconstruction loss, Adam, and the batch built from images kept on the GPU.
 *
 * Each kernel computes what its CPU twin does, element by element; comments name the twin
 * and only say where the GPU does something differently. Where a buffer has one producer
 * in a pass, its kernel writes (=) rather than adds; the backend zeroes the few that
 * several producers add into. Launch shapes: one thread per output element, in a
 * grid-stride loop.
 *
 * Letters as in dims.h and kernels.h.
 */
#include "kernels.h"

#define MARGIN_M_PLUS 0.9f  /* margin_loss.c */
#define MARGIN_M_MINUS 0.1f
#define MARGIN_LAMBDA 0.5f

/* ------------------------------------------------------------------------ convolutions */

/* col[(b, oy, ox)][(c, ky, kx)] = x[b][c][oy*ST + ky][ox*ST + kx] (conv2d_naive_forward's
 * sum, unrolled into a matrix); channels_last: the same from an input x[b][y][x][c]. The flag
 * is the same for every thread, so the branch costs nothing. */
__global__ static void k_im2col(float *col, const float *x, int B, int C, int S, int K, int ST,
                                int So, int channels_last) {
    size_t ckk = (size_t)C * K * K, n = (size_t)B * So * So * ckk;
    GRID_STRIDE(k, n) {
        size_t row = k / ckk;
        int q = (int)(k % ckk), c = q / (K * K), ky = q / K % K, kx = q % K;
        int b = (int)(row / ((size_t)So * So)), oy = (int)(row / So % So), ox = (int)(row % So);
        int y = oy * ST + ky, xx = ox * ST + kx;
        col[k] = channels_last ? x[(((size_t)b * S + y) * S + xx) * C + c]
                               : x[(((size_t)b * C + c) * S + y) * S + xx];
    }
}

cudaError_t cu_im2col_nchw(float *col, const float *x, int B, int C, int S, int K, int ST,
                           int So, cudaStream_t st) {
    LAUNCH(k_im2col, (size_t)B * So * So * C * K * K, st, col, x, B, C, S, K, ST, So, 0);
}

cudaError_t cu_im2col_nhwc(float *col, const float *a, int B, int C, int S, int K, int ST,
                           int So, cudaStream_t st) {
    LAUNCH(k_im2col, (size_t)B * So * So * C * K * K, st, col, a, B, C, S, K, ST, So, 1);
}

/* forward: col[(b, oy, ox)][(c, ky, kx)] = a[b][oy*ST + ky][ox*ST + kx][c], so
 *   da[b][y][x][c] = sum over (ky, kx) with y = oy*ST + ky, x = ox*ST + kx of that column.
 * Each thread owns one element of da and adds its terms in (ky, kx) order. */
__global__ static void k_col2im_nhwc(float *da, const float *dcol, int B, int C, int S, int K,
                                     int ST, int So) {
    size_t n = (size_t)B * S * S * C;
    GRID_STRIDE(k, n) {
        int c = (int)(k % C), x = (int)(k / C % S), y = (int)(k / ((size_t)C * S) % S);
        int b = (int)(k / ((size_t)C * S * S));
        float acc = 0.0f;
        for (int ky = 0; ky < K; ky++) {
            int ty = y - ky;
            if (ty < 0 || ty % ST || ty / ST >= So) continue;
            for (int kx = 0; kx < K; kx++) {
                int tx = x - kx;
                if (tx < 0 || tx % ST || tx / ST >= So) continue;
                size_t row = ((size_t)b * So + ty / ST) * So + tx / ST;
                acc += dcol[row * C * K * K + ((size_t)c * K + ky) * K + kx];
            }
        }
        da[k] = acc;
    }
}

cudaError_t cu_col2im_nhwc(float *da, const float *dcol, int B, int C, int S, int K, int ST,
                           int So, cudaStream_t st) {
    LAUNCH(k_col2im_nhwc, (size_t)B * S * S * C, st, da, dcol, B, C, S, K, ST, So);
}

__global__ static void k_add_bias(float *out, const float *bias, size_t rows, int n, int relu) {
    GRID_STRIDE(k, rows * n) {
        float y = out[k] + bias[k % n];
        out[k] = relu && !(y > 0.0f) ? 0.0f : y;
    }
}

cudaError_t cu_add_bias(float *out, const float *bias, size_t rows, int n, int relu,
                        cudaStream_t st) {
    LAUNCH(k_add_bias, rows * n, st, out, bias, rows, n, relu);
}

/* ------------------------------------------------------------------------ activations */

/* relu_backward_inplace: d = [out > 0] d. */
__global__ static void k_relu_backward_inplace(float *d, const float *out, size_t n) {
    GRID_STRIDE(k, n) d[k] = out[k] > 0.0f ? d[k] : 0.0f;
}

cudaError_t cu_relu_backward_inplace(float *d, const float *out, size_t n, cudaStream_t st) {
    LAUNCH(k_relu_backward_inplace, n, st, d, out, n);
}

__global__ static void k_sigmoid_forward(float *y, size_t n) {
    GRID_STRIDE(k, n) y[k] = 1.0f / (1.0f + expf(-y[k]));
}

cudaError_t cu_sigmoid_forward(float *y, size_t n, cudaStream_t st) {
    LAUNCH(k_sigmoid_forward, n, st, y, n);
}

/* forward: y = 1 / (1 + exp(-x)); din = dout y (1 - y), written. din may be dout. */
__global__ static void k_sigmoid_backward(float *din, const float *dout, const float *out,
                                          size_t n) {
    GRID_STRIDE(k, n) din[k] = dout[k] * out[k] * (1.0f - out[k]);
}

cudaError_t cu_sigmoid_backward(float *din, const float *dout, const float *out, size_t n,
                                cudaStream_t st) {
    LAUNCH(k_sigmoid_backward, n, st, din, dout, out, n);
}

/* ------------------------------------------------------------------------ capsules */

/* primary_caps_forward: u[b][t*G*G + y*G + x][d] = prim[b][y][x][t*D + d]. */
__global__ static void k_primary_caps(float *out, const float *in, int B, int T, int D, int G,
                                      int backward) {
    size_t I = (size_t)T * G * G, n = (size_t)B * I * D;
    GRID_STRIDE(k, n) {
        int d = (int)(k % D);
        size_t i = k / D % I, b = k / ((size_t)D * I);
        size_t t = i / ((size_t)G * G), y = i / G % G, x = i % G;
        size_t p = ((b * G + y) * G + x) * (size_t)T * D + t * D + d;
        if (backward)
            out[p] = in[k]; /* dprim = du read back: every element has one source */
        else
            out[k] = in[p];
    }
}

cudaError_t cu_primary_caps_forward(float *u, const float *prim, int B, int T, int D, int G,
                                    cudaStream_t st) {
    LAUNCH(k_primary_caps, (size_t)B * T * G * G * D, st, u, prim, B, T, D, G, 0);
}

cudaError_t cu_primary_caps_backward(float *dprim, const float *du, int B, int T, int D, int G,
                                     cudaStream_t st) {
    LAUNCH(k_primary_caps, (size_t)B * T * G * G * D, st, dprim, du, B, T, D, G, 1);
}

/* squash_vec: v = s |s| / (1 + |s|^2), one thread per capsule. */
__device__ static float squash_one(float *v, const float *s, int d) {
    float n2 = 0.0f;
    for (int k = 0; k < d; k++) n2 += s[k] * s[k];
    float f = sqrtf(n2) / (1.0f + n2);
    for (int k = 0; k < d; k++) v[k] = f * s[k];
    return n2;
}

__global__ static void k_squash_forward(float *v, float *norm2, const float *s, int n, int d) {
    GRID_STRIDE(i, (size_t)n) norm2[i] = squash_one(v + i * d, s + i * d, d);
}

cudaError_t cu_squash_forward(float *v, float *norm2, const float *s, int n, int d,
                              cudaStream_t st) {
    LAUNCH(k_squash_forward, (size_t)n, st, v, norm2, s, n, d);
}

/* squash_vec_backward: ds = f dv + (s . dv) (1 - n2) / (|s| (1 + n2)^2) s, the second term
 * 0 at s = 0; written. */
__global__ static void k_squash_backward(float *ds, const float *dv, const float *s,
                                         const float *norm2, int n, int d) {
    GRID_STRIDE(i, (size_t)n) {
        const float *si = s + i * d, *dvi = dv + i * d;
        float n2 = norm2[i], norm = sqrtf(n2), q = 1.0f + n2, f = norm / q, sdv = 0.0f;
        for (int k = 0; k < d; k++) sdv += si[k] * dvi[k];
        float g = n2 > 0.0f ? sdv * (1.0f - n2) / (norm * q * q) : 0.0f;
        for (int k = 0; k < d; k++) ds[i * d + k] = f * dvi[k] + g * si[k];
    }
}

cudaError_t cu_squash_backward(float *ds, const float *dv, const float *s, const float *norm2,
                               int n, int d, cudaStream_t st) {
    LAUNCH(k_squash_backward, (size_t)n, st, ds, dv, s, norm2, n, d);
}

/* caps_length_forward: len = |v|. */
__global__ static void k_length_forward(float *len, const float *v, int n, int d) {
    GRID_STRIDE(i, (size_t)n) {
        float n2 = 0.0f;
        for (int k = 0; k < d; k++) n2 += v[i * d + k] * v[i * d + k];
        len[i] = sqrtf(n2);
    }
}

cudaError_t cu_length_forward(float *len, const float *v, int n, int d, cudaStream_t st) {
    LAUNCH(k_length_forward, (size_t)n, st, len, v, n, d);
}

/* caps_length_backward: dv += dlen v / |v|, nothing at v = 0. */
__global__ static void k_length_backward(float *dv, const float *dlen, const float *v,
                                         const float *len, int n, int d) {
    GRID_STRIDE(i, (size_t)n) {
        if (len[i] <= 0.0f) continue;
        float g = dlen[i] / len[i];
        for (int k = 0; k < d; k++) dv[i * d + k] += g * v[i * d + k];
    }
}

cudaError_t cu_length_backward(float *dv, const float *dlen, const float *v, const float *len,
                               int n, int d, cudaStream_t st) {
    LAUNCH(k_length_backward, (size_t)n, st, dv, dlen, v, len, n, d);
}

/* ------------------------------------------------------------------------ losses */

/* T_k of image b: labels[b] present, and labels2[b] when there are two digits. */
__device__ static int present(const int *labels, const int *labels2, size_t b, int k) {
    return k == labels[b] || (labels2 && k == labels2[b]);
}

/* margin_loss_forward: per image, sum over classes of the squared hinges (eq. 4). */
__global__ static void k_margin_forward(float *loss, const float *len, const int *labels,
                                        const int *labels2, int B, int J) {
    GRID_STRIDE(b, (size_t)B) {
        float acc = 0.0f;
        for (int k = 0; k < J; k++) {
            float l = len[b * J + k];
            if (present(labels, labels2, b, k)) {
                float h = MARGIN_M_PLUS - l;
                if (h > 0.0f) acc += h * h;
            } else {
                float h = l - MARGIN_M_MINUS;
                if (h > 0.0f) acc += MARGIN_LAMBDA * h * h;
            }
        }
        loss[b] = acc;
    }
}

cudaError_t cu_margin_loss_forward(float *loss, const float *len, const int *labels,
                                   const int *labels2, int B, int J, cudaStream_t st) {
    LAUNCH(k_margin_forward, (size_t)B, st, loss, len, labels, labels2, B, J);
}

/* margin_loss_backward, dlen written (its only producer). */
__global__ static void k_margin_backward(float *dlen, const float *len, const int *labels,
                                         const int *labels2, float scale, int B, int J) {
    GRID_STRIDE(q, (size_t)B * J) {
        int b = (int)(q / J), k = (int)(q % J);
        float l = len[q], g = 0.0f;
        if (present(labels, labels2, b, k)) {
            if (MARGIN_M_PLUS - l > 0.0f) g = -2.0f * (MARGIN_M_PLUS - l);
        } else {
            if (l - MARGIN_M_MINUS > 0.0f) g = 2.0f * MARGIN_LAMBDA * (l - MARGIN_M_MINUS);
        }
        dlen[q] = scale * g;
    }
}

cudaError_t cu_margin_loss_backward(float *dlen, const float *len, const int *labels,
                                    const int *labels2, float scale, int B, int J,
                                    cudaStream_t st) {
    LAUNCH(k_margin_backward, (size_t)B * J, st, dlen, len, labels, labels2, scale, B, J);
}

/* mask_forward: only capsule cls[b] of image b reaches the decoder. */
__global__ static void k_mask_forward(float *out, const float *v, const int *cls, int B, int J,
                                      int E) {
    size_t JE = (size_t)J * E;
    GRID_STRIDE(k, (size_t)B * JE) {
        size_t b = k / JE;
        out[k] = (int)(k % JE / E) == cls[b] ? v[k] : 0.0f;
    }
}

cudaError_t cu_mask_forward(float *out, const float *v, const int *cls, int B, int J, int E,
                            cudaStream_t st) {
    LAUNCH(k_mask_forward, (size_t)B * J * E, st, out, v, cls, B, J, E);
}

/* mask_backward: dv += dout on capsule cls[b] only. */
__global__ static void k_mask_backward(float *dv, const float *dout, const int *cls, int B,
                                       int J, int E) {
    size_t JE = (size_t)J * E;
    GRID_STRIDE(k, (size_t)B * JE) {
        if ((int)(k % JE / E) == cls[k / JE]) dv[k] += dout[k];
    }
}

cudaError_t cu_mask_backward(float *dv, const float *dout, const int *cls, int B, int J, int E,
                             cudaStream_t st) {
    LAUNCH(k_mask_backward, (size_t)B * J * E, st, dv, dout, cls, B, J, E);
}

/* recon_loss_forward: loss[b] = sum_p (recon - target)^2, in double and in pixel order as
 * the CPU sums it: one thread per image. */
__global__ static void k_recon_forward(float *loss, const float *recon, const float *target,
                                       int B, int P) {
    GRID_STRIDE(b, (size_t)B) {
        double acc = 0.0;
        for (int p = 0; p < P; p++) {
            double d = (double)recon[b * P + p] - target[b * P + p];
            acc += d * d;
        }
        loss[b] = (float)acc;
    }
}

cudaError_t cu_recon_loss_forward(float *loss, const float *recon, const float *target, int B,
                                  int P, cudaStream_t st) {
    LAUNCH(k_recon_forward, (size_t)B, st, loss, recon, target, B, P);
}

/* recon_loss_backward: drecon = scale 2 (recon - target), written. */
__global__ static void k_recon_backward(float *drecon, const float *recon, const float *target,
                                        float scale, size_t n) {
    GRID_STRIDE(k, n) drecon[k] = scale * 2.0f * (recon[k] - target[k]);
}

cudaError_t cu_recon_loss_backward(float *drecon, const float *recon, const float *target,
                                   float scale, size_t n, cudaStream_t st) {
    LAUNCH(k_recon_backward, n, st, drecon, recon, target, scale, n);
}

/* ------------------------------------------------------------------------ Adam, data */

/* adam_update, with the step and the bias correction of the second moment from the caller. */
__global__ static void k_adam(float *param, float *m, float *v, const float *grad, size_t n,
                              float step, float bc2_sqrt, float beta1, float beta2, float eps) {
    GRID_STRIDE(k, n) {
        float g = grad[k];
        m[k] = beta1 * m[k] + (1.0f - beta1) * g;
        v[k] = beta2 * v[k] + (1.0f - beta2) * g * g;
        param[k] -= step * m[k] / (sqrtf(v[k]) / bc2_sqrt + eps);
    }
}

cudaError_t cu_adam_update(float *param, float *m, float *v, const float *grad, size_t n,
                           float step, float bc2_sqrt, float beta1, float beta2, float eps,
                           cudaStream_t st) {
    LAUNCH(k_adam, n, st, param, m, v, grad, n, step, bc2_sqrt, beta1, beta2, eps);
}

/* caps_make_batch_shifted: x[b][c][y][x] = image[idx[b]][c][y - dy][x - dx] / 255, a correctly
 * rounded division as caps_unit_sample (nvcc divides exactly unless -use_fast_math). */
__global__ static void k_make_batch(float *out, const uint8_t *images, const int *idx,
                                    const int *dx, const int *dy, int B, int C, int H, int W) {
    size_t P = (size_t)C * H * W;
    GRID_STRIDE(k, (size_t)B * P) {
        size_t b = k / P, q = k % P;
        int x = (int)(q % W), y = (int)(q / W % H), c = (int)(q / ((size_t)W * H));
        int sx = x - dx[b], sy = y - dy[b];
        out[k] = sx >= 0 && sx < W && sy >= 0 && sy < H
                     ? images[(size_t)idx[b] * P + ((size_t)c * H + sy) * W + sx] / 255.0f
                     : 0.0f;
    }
}

cudaError_t cu_make_batch(float *x, const uint8_t *images, const int *idx, const int *dx,
                          const int *dy, int B, int C, int H, int W, cudaStream_t st) {
    LAUNCH(k_make_batch, (size_t)B * C * H * W, st, x, images, idx, dx, dy, B, C, H, W);
}
