/*
 * dropout.c: inverted dropout (Srivastava et al., 2014), as PyTorch's nn.Dropout(p). The
 * baseline CNN (cnn.c) applies it before its last layer.
 *
 * Training: every unit is kept with probability 1 - p, and a kept unit is scaled by
 * 1 / (1 - p):
 *
 *   out[k] = mask[k] * in[k],   mask[k] = 1/(1-p) with probability 1-p, else 0
 *
 * so E[out] = in, and the network at test time is the same network with out = in: no
 * rescaling of the weights after training (which the original, non-inverted dropout
 * needs). The mask is the one cache backward needs: d in = mask * d out.
 *
 * The mask is drawn from a caps_rng passed in, unit by unit in memory order: the same
 * generator state gives the same mask on every machine.
 */
#include "cnn.h"
#include "util.h"

/* out, mask, in: [n]; out may be in. rng NULL: test time, the identity. */
void dropout_forward(float *out, float *mask, const float *in, size_t n, float p, caps_rng *rng) {
    CAPS_ASSERT(p >= 0.0f && p < 1.0f);
    float keep_scale = rng ? 1.0f / (1.0f - p) : 1.0f;
    for (size_t k = 0; k < n; k++) {
        /* u is in [0, 1) in steps of 2^-24: kept with probability 1 - p (to 2^-24); p = 0
         * keeps every unit. */
        int kept = !rng || caps_rng_uniform(rng) >= p;
        mask[k] = kept ? keep_scale : 0.0f;
        out[k] = mask[k] * in[k];
    }
}

/* forward: out[k] = mask[k] * in[k], mask a constant of the pass.
 *   din[k] += mask[k] * dout[k] */
void dropout_backward(float *din, const float *dout, const float *mask, size_t n) {
    for (size_t k = 0; k < n; k++) din[k] += mask[k] * dout[k];
}
