/*
 * kernels.h: the CUDA kernels of the capsule network, each launched by a host function
 * that returns the launch's cudaError_t (backend_cuda.cu turns a failure into the model's
 * error, naming the kernel). Every kernel is the GPU twin of a CPU function of layers.h or
 * digit_caps.h, and computes the same formula; tests/test_cuda.c holds the whole network on
 * the GPU equal to the CPU's, layer by layer through each parameter's gradient.
 *
 * All pointers are device memory. Layouts (letters as in dims.h; rows of a matrix product
 * are (b, y, x) in that order):
 *   x     [B][C][S][S]             the input, PyTorch's NCHW
 *   col1  [B*S1*S1][C*K1*K1]       Conv1's im2col, columns (c, ky, kx): W1 as PyTorch keeps it
 *   a1    [B][S1][S1][C1]          Conv1's output, channels last (the rows of its product)
 *   col2  [B*G*G][C1*K2*K2]        PrimaryCaps' im2col, columns (c, ky, kx)
 *   prim  [B][G][G][T*D]           PrimaryCaps' output
 *   u     [B][I][D]                capsules, i = t*G*G + y*G + x (primary_caps.c)
 *   u_hat [B][I][J][E], v [B][J][E], c [B][I][J]
 * Reductions run in a fixed order (one thread or one block per sum): the same inputs give
 * the same bits, run after run.
 */
#ifndef CAPS_CUDA_KERNELS_H
#define CAPS_CUDA_KERNELS_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

/* ---- launching: one thread per output element, in a grid-stride loop */

#define CAPS_CUDA_THREADS 256

/* Blocks for n threads, capped: the grid-stride loops cover the rest. */
static inline unsigned caps_cuda_blocks(size_t n) {
    size_t b = (n + CAPS_CUDA_THREADS - 1) / CAPS_CUDA_THREADS;
    return (unsigned)(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

#define GRID_STRIDE(k, n) \
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < (n); \
         k += (size_t)gridDim.x * blockDim.x)

/* Launches kernel over n threads on stream st and returns the launch's status: the last
 * statement of a function that runs one kernel. */
#define LAUNCH(kernel, n, st, ...)                                                   \
    do {                                                                             \
        kernel<<<caps_cuda_blocks(n), CAPS_CUDA_THREADS, 0, (st)>>>(__VA_ARGS__);    \
        return cudaGetLastError();                                                   \
    } while (0)

/* The same within a function that runs several: returns only when the launch failed. */
#define LAUNCH_CHECKED(kernel, n, st, ...)                                           \
    do {                                                                             \
        kernel<<<caps_cuda_blocks(n), CAPS_CUDA_THREADS, 0, (st)>>>(__VA_ARGS__);    \
        cudaError_t e_ = cudaGetLastError();                                         \
        if (e_ != cudaSuccess) return e_;                                            \
    } while (0)

/* ---- layers.cu: convolutions around the matrix products */

cudaError_t cu_im2col_nchw(float *col, const float *x, int B, int C, int S, int K, int ST,
                           int So, cudaStream_t st);
cudaError_t cu_im2col_nhwc(float *col, const float *a, int B, int C, int S, int K, int ST,
                           int So, cudaStream_t st);
/* da [B][S][S][C] = the sum over the patches that read each element of dcol (the gather
 * form of col2im: each output element sums its own terms, no atomics). */
cudaError_t cu_col2im_nhwc(float *da, const float *dcol, int B, int C, int S, int K, int ST,
                           int So, cudaStream_t st);
/* out [rows][n] += bias [n] per row, then max(0, .) when relu. (A bias's gradient, the
 * column sums of the output's, is a matrix product with a row of ones: backend_cuda.cu.) */
cudaError_t cu_add_bias(float *out, const float *bias, size_t rows, int n, int relu,
                        cudaStream_t st);

/* ---- layers.cu: elementwise and per-capsule layers (activation.c, squash.c,
 * primary_caps.c, reconstruction.c, margin_loss.c, digit_caps.c's lengths, adam.c) */

cudaError_t cu_relu_backward_inplace(float *d, const float *out, size_t n, cudaStream_t st);
cudaError_t cu_sigmoid_forward(float *y, size_t n, cudaStream_t st);
cudaError_t cu_sigmoid_backward(float *din, const float *dout, const float *out, size_t n,
                                cudaStream_t st);
cudaError_t cu_primary_caps_forward(float *u, const float *prim, int B, int T, int D, int G,
                                    cudaStream_t st);
cudaError_t cu_primary_caps_backward(float *dprim, const float *du, int B, int T, int D, int G,
                                     cudaStream_t st);
cudaError_t cu_squash_forward(float *v, float *norm2, const float *s, int n, int d,
                              cudaStream_t st);
cudaError_t cu_squash_backward(float *ds, const float *dv, const float *s, const float *norm2,
                               int n, int d, cudaStream_t st);
cudaError_t cu_length_forward(float *len, const float *v, int n, int d, cudaStream_t st);
cudaError_t cu_length_backward(float *dv, const float *dlen, const float *v, const float *len,
                               int n, int d, cudaStream_t st);
/* labels2: the second digit's classes (MultiMNIST), or NULL. */
cudaError_t cu_margin_loss_forward(float *loss, const float *len, const int *labels,
                                   const int *labels2, int B, int J, cudaStream_t st);
cudaError_t cu_margin_loss_backward(float *dlen, const float *len, const int *labels,
                                    const int *labels2, float scale, int B, int J,
                                    cudaStream_t st);
cudaError_t cu_mask_forward(float *out, const float *v, const int *cls, int B, int J, int E,
                            cudaStream_t st);
cudaError_t cu_mask_backward(float *dv, const float *dout, const int *cls, int B, int J, int E,
                             cudaStream_t st);
cudaError_t cu_recon_loss_forward(float *loss, const float *recon, const float *target, int B,
                                  int P, cudaStream_t st);
cudaError_t cu_recon_loss_backward(float *drecon, const float *recon, const float *target,
                                   float scale, size_t n, cudaStream_t st);
/* Adam over n parameters; step = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t), computed
 * by the caller in double as adam.c does. */
cudaError_t cu_adam_update(float *param, float *m, float *v, const float *grad, size_t n,
                           float step, float bc2_sqrt, float beta1, float beta2, float eps,
                           cudaStream_t st);
/* x [B][C][H][W] = images[idx[b]] shifted by (dx[b], dy[b]), zero fill, / 255 (augment.c). */
cudaError_t cu_make_batch(float *x, const uint8_t *images, const int *idx, const int *dx,
                          const int *dy, int B, int C, int H, int W, cudaStream_t st);

/* ---- routing_dynamic.cu: prediction vectors and Procedure 1, forward and backward */

cudaError_t cu_predict_forward(float *u_hat, const float *u, const float *W, int B, int I, int J,
                               int E, int D, cudaStream_t st);
cudaError_t cu_predict_backward(float *du, float *dW, const float *du_hat, const float *u,
                                const float *W, int B, int I, int J, int E, int D,
                                cudaStream_t st);
/* v, c, s, norm2: [R][B][...] caches of every round (routing_forward's layouts); logits:
 * [B][I][J] scratch. */
cudaError_t cu_routing_forward(float *v, float *c, float *s, float *norm2, float *logits,
                               const float *u_hat, int B, int I, int J, int E, int R,
                               cudaStream_t st);
/* du_hat [B][I][J][E] += the gradient of routing_forward's v[R-1] from dv [B][J][E].
 * Scratch: G, dc [B][I][J]; dvr, dsr [B][J][E]. */
cudaError_t cu_routing_backward(float *du_hat, float *G, float *dc, float *dvr, float *dsr,
                                const float *dv, const float *v, const float *c, const float *s,
                                const float *norm2, const float *u_hat, int B, int I, int J,
                                int E, int R, cudaStream_t st);

#endif /* CAPS_CUDA_KERNELS_H */
