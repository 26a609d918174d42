/*
 * linear.c: fully connected layer, PyTorch's nn.Linear: out = in . w^T + bias.
 * The decoder is three of them (160 -> 512 -> 1024 -> 784), each one matrix product over
 * the batch.
 *
 * Dimension letters: B rows (images), I inputs, O outputs.
 */
#include "gemm.h"
#include "layers.h"

/* out: [B][O]; in: [B][I]; w: [O][I]; bias: [O]. */
void linear_forward(float *out, const float *in, const float *w, const float *bias, int B,
                    int I, int O) {
    gemm(0, 1, B, O, I, 1.0f, in, I, w, I, 0.0f, out, O);
    for (int b = 0; b < B; b++)
        for (int o = 0; o < O; o++) out[(size_t)b * O + o] += bias[o];
}

/* forward: out = in . w^T + bias
 *   dw    += dout^T . in      [O][I]
 *   dbias += sum_b dout       [O]
 *   din   += dout . w         [B][I], skipped when din is NULL */
void linear_backward(float *din, float *dw, float *dbias, const float *dout, const float *in,
                     const float *w, int B, int I, int O) {
    gemm(1, 0, O, I, B, 1.0f, dout, O, in, I, 1.0f, dw, I);
    for (int b = 0; b < B; b++)
        for (int o = 0; o < O; o++) dbias[o] += dout[(size_t)b * O + o];
    if (din) gemm(0, 0, B, I, O, 1.0f, dout, O, w, I, 1.0f, din, I);
}
