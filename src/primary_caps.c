/*
 * primary_caps.c: reads the PrimaryCaps convolution's T*D channels as I = T*G*G capsules
 * of D dimensions (section 4 of the paper: "32 channels of convolutional 8D capsules").
 *
 *   u[b][t*G*G + y*G + x][d] = conv[y][b][x][t*D + d]
 *
 * the same order as PyTorch's conv.view(B, T, D, G, G).permute(0, 1, 3, 4, 2)
 * .reshape(B, T*G*G, D), so capsule i of a PyTorch model is capsule i here and the
 * weights W_ij map one to one. The convolution output is laid out [G][B][G][T*D]
 * (conv2d.c), PyTorch's conv.permute(2, 0, 3, 1): the D dimensions of a capsule are
 * contiguous there and here. The squash (eq. 1) follows in squash.c.
 *
 * Dimension letters: B images, T capsule types (32), D capsule dimensions (8),
 * G grid side (6).
 */
#include <string.h>

#include "layers.h"

/* u: [B][T*G*G][D]; conv: [G][B][G][T*D]. */
void primary_caps_forward(float *u, const float *conv, int B, int T, int D, int G) {
    int GG = G * G;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int y = 0; y < G; y++)
            for (int x = 0; x < G; x++) {
                const float *src = conv + (((size_t)y * B + b) * G + x) * T * D;
                for (int t = 0; t < T; t++)
                    memcpy(u + ((size_t)b * T * GG + (size_t)t * GG + y * G + x) * D,
                           src + (size_t)t * D, (size_t)D * sizeof(float));
            }
}

/* A permutation: its gradient is the inverse permutation, accumulated. */
void primary_caps_backward(float *dconv, const float *du, int B, int T, int D, int G) {
    int GG = G * G;
#pragma omp parallel for schedule(static)
    for (int y = 0; y < G; y++)
        for (int b = 0; b < B; b++)
            for (int x = 0; x < G; x++) {
                float *dst = dconv + (((size_t)y * B + b) * G + x) * T * D;
                for (int t = 0; t < T; t++) {
                    const float *src = du + ((size_t)b * T * GG + (size_t)t * GG + y * G + x) * D;
                    for (int d = 0; d < D; d++) dst[t * D + d] += src[d];
                }
            }
}
