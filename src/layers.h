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

/* ---- conv2d.c: convolution as im2col + one matrix product per chunk of images */

/* Rows of the im2col matrix (Ci*K*K) times columns per image (Ho*Wo). */
size_t conv2d_col_size(int Ci, int K, int Ho, int Wo);
void im2col(float *col, const float *in, int nb, int Ci, int H, int W, int K, int stride);
void col2im(float *din, const float *col, int nb, int Ci, int H, int W, int K, int stride);
void conv2d_forward(float *out, float *col, float *tmp, const float *in, const float *w,
                    const float *bias, int B, int Ci, int H, int W, int Co, int K, int stride,
                    int chunk);
void conv2d_backward(float *din, float *dw, float *dbias, float *col, float *tmp,
                     const float *dout, const float *in, const float *w, int B, int Ci, int H,
                     int W, int Co, int K, int stride, int chunk);

/* ---- activation.c: elementwise nonlinearities */

void relu_forward(float *out, const float *in, size_t n);
void relu_backward(float *din, const float *dout, const float *out, size_t n);
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

/* ---- digit_caps.c: prediction vectors (eq. 2), dynamic routing (Procedure 1), lengths */

void predict_forward(float *u_hat, const float *u, const float *W, int B, int I, int J, int E,
                     int D);
void predict_backward(float *du, float *dW, const float *du_hat, const float *u,
                      const float *W, int B, int I, int J, int E, int D);
void routing_forward(float *v, float *c, float *s, float *norm2, float *logits,
                     const float *u_hat, int B, int I, int J, int E, int R);
size_t routing_scratch_size(int I, int J, int E); /* floats per image for backward */
void routing_backward(float *du_hat, float *scratch, const float *dv, const float *v,
                      const float *c, const float *s, const float *norm2, const float *u_hat,
                      int B, int I, int J, int E, int R);
void caps_length_forward(float *len, const float *v, int n, int d);
void caps_length_backward(float *dv, const float *dlen, const float *v, const float *len,
                          int n, int d);
void caps_argmax(int *pred, const float *len, int B, int J);

/* ---- margin_loss.c: eq. 4 */

#define MARGIN_M_PLUS 0.9f
#define MARGIN_M_MINUS 0.1f
#define MARGIN_LAMBDA 0.5f

void margin_loss_forward(float *loss, const float *len, const int *labels, int B, int J);
void margin_loss_backward(float *dlen, const float *len, const int *labels, float scale, int B,
                          int J);

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
