/*
 * adam.c: Adam (Kingma & Ba, 2015), the optimiser of the paper, written as PyTorch's
 * torch.optim.Adam computes it so that a step here equals a step there:
 *
 *   m <- beta1 m + (1 - beta1) g          v <- beta2 v + (1 - beta2) g^2
 *   param <- param - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *
 * t counts steps from 1. The learning rate passed in is already decayed for the epoch.
 */
#include <math.h>

#include "layers.h"

/* param, m, v, grad: [n]. */
void adam_update(float *param, float *m, float *v, const float *grad, size_t n, float lr,
                 float beta1, float beta2, float eps, long long t) {
    /* The bias corrections in double, as PyTorch computes them in Python floats. */
    double bc1 = 1.0 - pow((double)beta1, (double)t);
    float bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, (double)t));
    float step = (float)(lr / bc1);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < n; k++) {
        float g = grad[k];
        m[k] = beta1 * m[k] + (1.0f - beta1) * g;
        v[k] = beta2 * v[k] + (1.0f - beta2) * g * g;
        param[k] -= step * m[k] / (sqrtf(v[k]) / bc2_sqrt + eps);
    }
}
