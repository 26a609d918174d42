/*
 * primary_caps.c: reads the PrimaryCaps convolution's T*D channels as I = T*G*G capsules
 * of D dimensions (section 4 of the paper: "32 channels of convolutional 8D capsules").
 *
 *   u[b][t*G*G + y*G + x][d] = conv[b][t*D + d][y][x]
 *
 * the same order as PyTorch's conv.view(B, T, D, G, G).permute(0, 1, 3, 4, 2)
 * .reshape(B, T*G*G, D), so capsule i of a PyTorch model is capsule i here and the
 * weights W_ij map one to one. The squash (eq. 1) follows in squash.c.
 *
 * Dimension letters: B images, T capsule types (32), D capsule dimensions (8),
 * G grid side (6).
 */
#include "layers.h"

/* u: [B][T*G*G][D]; conv: [B][T*D][G][G]. */
void primary_caps_forward(float *u, const float *conv, int B, int T, int D, int G) {
    int GG = G * G;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                const float *src = conv + ((size_t)b * T * D + (size_t)t * D + d) * GG;
                float *dst = u + ((size_t)b * T * GG + (size_t)t * GG) * D + d;
                for (int p = 0; p < GG; p++) dst[(size_t)p * D] = src[p];
            }
}

/* A permutation: its gradient is the inverse permutation, accumulated. */
void primary_caps_backward(float *dconv, const float *du, int B, int T, int D, int G) {
    int GG = G * G;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                float *dst = dconv + ((size_t)b * T * D + (size_t)t * D + d) * GG;
                const float *src = du + ((size_t)b * T * GG + (size_t)t * GG) * D + d;
                for (int p = 0; p < GG; p++) dst[p] += src[(size_t)p * D];
            }
}
