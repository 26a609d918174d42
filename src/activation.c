/*
 * activation.c: the elementwise nonlinearities: ReLU (Conv1 and the decoder's hidden
 * layers) and the logistic sigmoid (the decoder's output pixels).
 * Backward needs only the forward output: relu'(x) = [y > 0], sigmoid'(x) = y (1 - y).
 */
#include <math.h>

#include "layers.h"

/* out, in: [n]; out may be in (in place). */
void relu_forward(float *out, const float *in, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

/* forward: y = max(0, x). The kink at 0 gets gradient 0 (PyTorch's choice). */
void relu_backward(float *din, const float *dout, const float *out, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) din[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

/* The same rule, written over the gradient itself: the backward of Conv1's ReLU keeps
 * one 41 MB buffer (batch 100) instead of two. */
void relu_backward_inplace(float *d, const float *out, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) d[i] = out[i] > 0.0f ? d[i] : 0.0f;
}

void sigmoid_forward(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = 1.0f / (1.0f + expf(-in[i]));
}

/* forward: y = 1 / (1 + exp(-x)); dy/dx = y (1 - y). */
void sigmoid_backward(float *din, const float *dout, const float *out, size_t n) {
    for (size_t i = 0; i < n; i++) din[i] += dout[i] * out[i] * (1.0f - out[i]);
}
