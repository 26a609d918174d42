/*
 * layers.h: the forward/backward pair of every layer of the Capsule Network.
 *
 * Conventions (../shared/STYLE.md):
 * - Arguments in a fixed order: outputs, caches for backward, inputs, parameters, dimensions.
 * - Inputs are const. Backward ADDS into gradient buffers (+=); they are zeroed once a step.
 * - Dimensions are plain ints, so a test runs each layer at a tiny shape.
 * - No allocation: scratch buffers are passed in, sized once by capsnet_create.
 *
 * Dimension letters, as in the paper's MNIST network:
 *   B batch; C, H, W input channels and size (1, 28, 28); K kernel side; S stride;
 *   T primary capsule types (32); G primary grid side (6); I = N_in = T*G*G (1152);
 *   D = D_in (8); J = N_out classes (10); E = D_out (16); R routing iterations (3);
 *   P = C*H*W pixels (784).
 */
#ifndef CAPS_LAYERS_H
#define CAPS_LAYERS_H

#include <stddef.h>

/* ---- conv2d.c: convolution as matrix products over "row-phased, channels last"
 * activations act[ph][hs][b][w][c] (pixel row h = hs*P + ph); see conv2d.c */

size_t conv_act_size(int B, int C, int H, int W, int P);
void conv_act_from_nchw(float *act, const float *nchw, int B, int C, int H, int W, int P);
void conv_act_to_nchw(float *nchw, const float *act, int B, int C, int H, int W, int P);
/* The plain loops over PyTorch's NCHW layout that the fast versions must equal. */
void conv2d_naive_forward(float *out, const float *in, const float *w, const float *bias, int B,
                          int Ci, int H, int W, int Co, int K, int S);
void conv2d_naive_backward(float *din, float *dw, float *dbias, const float *dout,
                           const float *in, const float *w, int B, int Ci, int H, int W, int Co,
                           int K, int S);
/* Conv1: im2col one output row at a time; in is NCHW, out row-phased with P phases. */
size_t conv2d_rows_col_size(int B, int Ci, int W, int K, int S);
void conv2d_rows_forward(float *out, float *col, const float *in, const float *w,
                         const float *bias, int B, int Ci, int H, int W, int Co, int K, int S,
                         int P, int relu);
void conv2d_rows_backward(float *dw, float *dbias, float *col, const float *dout,
                          const float *in, int B, int Ci, int H, int W, int Co, int K, int S,
                          int P);
/* PrimaryCaps: products over shifted patch matrices; in row-phased with S phases, out
 * [Ho][B][Wo][Co], weights reordered to wt[K][K][Ci][Co]; backward needs dwt, K*Ci*Co
 * floats of scratch. */
void conv2d_shift_weights(float *wt, const float *w, int Co, int Ci, int K);
void conv2d_shift_forward(float *out, const float *in, const float *wt, const float *bias, int B,
                          int Ci, int H, int W, int Co, int K, int S);
void conv2d_shift_backward(float *din, float *dw, float *dbias, float *dwt, const float *dout,
                           const float *in, const float *wt, int B, int Ci, int H, int W, int Co,
                           int K, int S);

/* ---- activation.c: elementwise nonlinearities */

void relu_forward(float *out, const float *in, size_t n);
void relu_backward(float *din, const float *dout, const float *out, size_t n);
/* The same with din == dout: d = relu'(x) d, for a gradient with a single producer. */
void relu_backward_inplace(float *d, const float *out, size_t n);
void sigmoid_forward(float *out, const float *in, size_t n);
void sigmoid_backward(float *din, const float *dout, const float *out, size_t n);

/* ---- squash.c: the capsule nonlinearity (eq. 1) */

void squash_forward(float *v, float *norm2, const float *s, int n, int d);
float squash_vec(float *v, const float *s, int d); /* one capsule; returns |s|^2 */
void squash_vec_backward(float *ds, const float *dv, const float *s, float norm2, int d);
void squash_backward(float *ds, const float *dv, const float *s, const float *norm2, int n,
                     int d);

/* ---- primary_caps.c: convolution channels -> capsules */

void primary_caps_forward(float *u, const float *conv, int B, int T, int D, int G);
void primary_caps_backward(float *dconv, const float *du, int B, int T, int D, int G);

/* ---- DigitCaps (prediction vectors, routing, lengths): digit_caps.h */

/* ---- margin_loss.c: eq. 4 */

#define MARGIN_M_PLUS 0.9f
#define MARGIN_M_MINUS 0.1f
#define MARGIN_LAMBDA 0.5f

/* labels [B] the class present in each image; labels2 [B] a second present class (two
 * digits: MultiMNIST) or NULL. */
void margin_loss_forward(float *loss, const float *len, const int *labels, const int *labels2,
                         int B, int J);
void margin_loss_backward(float *dlen, const float *len, const int *labels, const int *labels2,
                          float scale, int B, int J);

/* ---- reconstruction.c: the decoder's input mask and the reconstruction loss */

void mask_forward(float *out, const float *v, const int *cls, int B, int J, int E);
void mask_backward(float *dv, const float *dout, const int *cls, int B, int J, int E);
void recon_loss_forward(float *loss, const float *recon, const float *target, int B, int P);
void recon_loss_backward(float *drecon, const float *recon, const float *target, float scale,
                         int B, int P);

/* ---- linear.c: fully connected layers of the decoder */

void linear_forward(float *out, const float *in, const float *w, const float *bias, int B,
                    int I, int O);
void linear_backward(float *din, float *dw, float *dbias, const float *dout, const float *in,
                     const float *w, int B, int I, int O);

/* ---- adam.c */

void adam_update(float *param, float *m, float *v, const float *grad, size_t n, float lr,
                 float beta1, float beta2, float eps, long long t);

#endif /* CAPS_LAYERS_H */
