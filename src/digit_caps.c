/*
 * digit_caps.c: the table of routings the CPU backend knows (digit_caps.h explains the
 * seam), and the capsule lengths that are the class scores.
 */
#include <math.h>
#include <stdlib.h>

#include "digit_caps.h"
#include "util.h"

/* Indexed by CAPS_ROUTING_*: a second routing is one more file and one more entry. */
static const digit_caps_ops *const routings[CAPS_NUM_ROUTINGS] = {&digit_caps_dynamic};

int digit_caps_create(digit_caps **out, const caps_dims *d, int max_batch, int kernels,
                      caps_error *err) {
    *out = NULL;
    const digit_caps_ops *ops = d->routing >= 0 && d->routing < CAPS_NUM_ROUTINGS
                                    ? routings[d->routing] : NULL;
    if (!ops)
        return caps_fail(err, CAPS_ERR_ARG, "routing %d: not available on the cpu backend",
                         d->routing);
    return ops->create(out, d, max_batch, kernels, err);
}

void digit_caps_free(digit_caps *dc) {
    if (dc) dc->ops->destroy(dc);
}

/* len: [n] = |v| for v: [n][d], the class scores (section 2: "the length of the output
 * vector of a capsule ... represent the probability that the entity ... exists"). */
void caps_length_forward(float *len, const float *v, int n, int d) {
    for (int i = 0; i < n; i++) {
        float n2 = 0.0f;
        for (int k = 0; k < d; k++) n2 += v[(size_t)i * d + k] * v[(size_t)i * d + k];
        len[i] = sqrtf(n2);
    }
}

/* forward: len = |v|; dv += dlen v / |v|. At v = 0 the length has no gradient (a cone's
 * tip); we use 0 there rather than NaN. Composed with squash, |v| = n2 / (1 + n2) is
 * smooth with gradient 0 at s = 0, so the chain stays exact. */
void caps_length_backward(float *dv, const float *dlen, const float *v, const float *len,
                          int n, int d) {
    for (int i = 0; i < n; i++) {
        if (len[i] <= 0.0f) continue;
        float g = dlen[i] / len[i];
        for (int k = 0; k < d; k++) dv[(size_t)i * d + k] += g * v[(size_t)i * d + k];
    }
}

/* pred[b] = argmax_j len[b][j]; ties go to the lowest class. */
void caps_argmax(int *pred, const float *len, int B, int J) {
    for (int b = 0; b < B; b++) {
        int best = 0;
        for (int j = 1; j < J; j++)
            if (len[(size_t)b * J + j] > len[(size_t)b * J + best]) best = j;
        pred[b] = best;
    }
}
