/*
 * conv2d_same.c: stride-1 convolution with 'same' zero padding, PyTorch's
 * nn.Conv2d(Ci, Co, K, padding=Q), Q = (K - 1) / 2, the convolution of the baseline CNN:
 *
 *   out[b][o][y][x] = bias[o] + sum_{c,ky,kx} w[o][c][ky][kx] * in[b][c][y+ky-Q][x+kx-Q]
 *
 * with in = 0 outside the image. For odd K the output is H x W, like the input.
 *
 * How: the input is copied into a buffer with a zero border of Q rows and columns,
 * xpad[y+Q][x+Q] = in[y][x], and the valid convolution of conv2d.c (conv2d_shift_*) runs on
 * it: (H + 2Q) - K + 1 = H output rows. Why not the padding inside an im2col: the shift
 * products read the patches in place, with no patch matrix (it would hold K*K = 25 times
 * the activations), and they are the kernels already held equal to the plain loop
 * (tests/test_conv2d.c). The price is a copy of each layer's input, kept for backward
 * (which reads the patches again), and a crop of the input gradient.
 *
 * Layout: channels last with rows outermost, [H][B][W][C] (conv2d.c's row-phased layout
 * with one phase, the stride), for the input, the padded input and the output alike: one
 * layer's output is the next one's input without a transpose.
 *
 * Dimension letters: B images, Ci/Co input/output channels, H x W the image, K kernel
 * side, Q = (K - 1) / 2, Hp x Wp = (H + 2Q) x (W + 2Q) padded.
 */
#include <string.h>

#include "cnn.h"
#include "layers.h"
#include "util.h"

size_t conv_pad_size(int B, int C, int H, int W, int K) {
    return (size_t)(H + K - 1) * B * (W + K - 1) * C;
}

/* xpad: [Hp][B][Wp][C]; x: [H][B][W][C]. Every float of xpad is written: the border
 * rows and columns with zeros, the interior with x. */
void conv_pad_forward(float *xpad, const float *x, int B, int C, int H, int W, int K) {
    CAPS_ASSERT(K % 2 == 1); /* an even kernel has no centre: 'same' would be lopsided */
    int Q = (K - 1) / 2, Hp = H + 2 * Q, Wp = W + 2 * Q;
    size_t row = (size_t)W * C, prow = (size_t)Wp * C, edge = (size_t)Q * C;
#pragma omp parallel for schedule(static)
    for (int yp = 0; yp < Hp; yp++)
        for (int b = 0; b < B; b++) {
            float *dst = xpad + ((size_t)yp * B + b) * prow;
            int y = yp - Q;
            if (y < 0 || y >= H) {
                memset(dst, 0, prow * sizeof(float));
                continue;
            }
            memset(dst, 0, edge * sizeof(float));
            memcpy(dst + edge, x + ((size_t)y * B + b) * row, row * sizeof(float));
            memset(dst + edge + row, 0, edge * sizeof(float));
        }
}

/* forward: xpad[y+Q][b][x+Q][c] = x[y][b][x][c]; the border holds zeros, whose gradient
 * goes nowhere. So dx[y][b][x][c] += dxpad[y+Q][b][x+Q][c]. */
void conv_pad_backward(float *dx, const float *dxpad, int B, int C, int H, int W, int K) {
    int Q = (K - 1) / 2, Wp = W + 2 * Q;
    size_t row = (size_t)W * C, prow = (size_t)Wp * C, edge = (size_t)Q * C;
#pragma omp parallel for schedule(static)
    for (int y = 0; y < H; y++)
        for (int b = 0; b < B; b++) {
            float *dst = dx + ((size_t)y * B + b) * row;
            const float *src = dxpad + ((size_t)(y + Q) * B + b) * prow + edge;
            for (size_t k = 0; k < row; k++) dst[k] += src[k];
        }
}

/* out: [H][B][W][Co]; xpad: [Hp][B][Wp][Ci] and wt: [K][K][Ci][Co], both written here and
 * read again by backward; in: [H][B][W][Ci]; w: [Co][Ci][K][K]; bias: [Co]. */
void conv2d_same_forward(float *out, float *xpad, float *wt, const float *in, const float *w,
                         const float *bias, int B, int Ci, int H, int W, int Co, int K) {
    int Q = (K - 1) / 2;
    conv_pad_forward(xpad, in, B, Ci, H, W, K);
    conv2d_shift_weights(wt, w, Co, Ci, K);
    /* The valid convolution of the padded input, stride 1: output (H+2Q-K+1) = H rows. */
    conv2d_shift_forward(out, xpad, wt, bias, B, Ci, H + 2 * Q, W + 2 * Q, Co, K, 1);
}

/* forward: xpad = pad(in); out = valid_conv(xpad, w) + bias
 *   dw, dbias += conv2d_shift_backward's (the patches of xpad times dout)
 *   dxpad      = the same backward's input gradient, on the padded buffer
 *   din       += the interior of dxpad (conv_pad_backward)
 * din NULL skips the input gradient (the first layer: the image needs none), and with it
 * half of the products. dxpad: [Hp][B][Wp][Ci] scratch; dwt: [K][Ci][Co] scratch. */
void conv2d_same_backward(float *din, float *dw, float *dbias, float *dxpad, float *dwt,
                          const float *dout, const float *xpad, const float *wt, int B, int Ci,
                          int H, int W, int Co, int K) {
    int Q = (K - 1) / 2;
    /* conv2d_shift_backward adds into its input gradient: start from zero. */
    if (din) memset(dxpad, 0, conv_pad_size(B, Ci, H, W, K) * sizeof(float));
    conv2d_shift_backward(din ? dxpad : NULL, dw, dbias, dwt, dout, xpad, wt, B, Ci, H + 2 * Q,
                          W + 2 * Q, Co, K, 1);
    if (din) conv_pad_backward(din, dxpad, B, Ci, H, W, K);
}
