/*
 * squash.c: the capsule nonlinearity, eq. 1 of Sabour et al. (2017):
 *
 *   v = |s|^2 / (1 + |s|^2) * s / |s|  =  s * |s| / (1 + |s|^2)
 *
 * Short vectors shrink to almost zero length, long ones to just below 1; the direction is
 * kept. We compute the right-hand form, which has no division by |s|: the forward pass is
 * exact and finite at s = 0 (v = 0) without the epsilon most implementations add (an
 * epsilon inside the norm changes v for small s, and 1/|s| is NaN at s = 0).
 *
 * Dimension letters: n capsules of d dimensions.
 */
#include <math.h>

#include "layers.h"

/* One capsule: v, s: [d]. Returns n2 = |s|^2, the cache for backward. */
float squash_vec(float *v, const float *s, int d) {
    float n2 = 0.0f;
    for (int k = 0; k < d; k++) n2 += s[k] * s[k];
    float f = sqrtf(n2) / (1.0f + n2);
    for (int k = 0; k < d; k++) v[k] = f * s[k];
    return n2;
}

/* forward: v = f(n2) s with n2 = |s|^2, f(n2) = sqrt(n2) / (1 + n2). Then
 *   dv_k/ds_m = f delta_km + 2 f'(n2) s_k s_m,  f'(n2) = (1 - n2) / (2 sqrt(n2) (1 + n2)^2)
 *   ds = f dv + (s . dv) (1 - n2) / (sqrt(n2) (1 + n2)^2) s.
 * The second term has size |s| |dv| (s . dv / sqrt(n2) is at most |dv|), so it vanishes
 * as s -> 0; at exactly s = 0 (n2 = 0) we take that limit, 0, instead of 0/0. */
void squash_vec_backward(float *ds, const float *dv, const float *s, float n2, int d) {
    float norm = sqrtf(n2), q = 1.0f + n2;
    float f = norm / q;
    float sdv = 0.0f;
    for (int k = 0; k < d; k++) sdv += s[k] * dv[k];
    float g = n2 > 0.0f ? sdv * (1.0f - n2) / (norm * q * q) : 0.0f;
    for (int k = 0; k < d; k++) ds[k] += f * dv[k] + g * s[k];
}

/* v, s: [n][d]; norm2: [n] cache of |s|^2 for backward. */
void squash_forward(float *v, float *norm2, const float *s, int n, int d) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        norm2[i] = squash_vec(v + (size_t)i * d, s + (size_t)i * d, d);
}

/* ds, dv, s: [n][d]; norm2: [n] from forward. */
void squash_backward(float *ds, const float *dv, const float *s, const float *norm2, int n,
                     int d) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        squash_vec_backward(ds + (size_t)i * d, dv + (size_t)i * d, s + (size_t)i * d,
                            norm2[i], d);
}
