/*
 * reconstruction.c: the decoder's input and its loss (section 4.1 of the paper).
 *
 * Mask: the decoder sees only one digit capsule, the others zeroed: the TRUE class's
 * capsule during training and the PREDICTED (longest) one at test time. Masking by the
 * prediction in training would let the decoder learn from wrong capsules.
 *
 * Loss: the sum of squared differences between the decoder's sigmoid output and the input
 * pixels, per image; the network weights it by 0.0005 "so that it does not dominate the
 * margin loss".
 *
 * Dimension letters: B images, J classes, E capsule dimensions (16), P pixels (784).
 */
#include <string.h>

#include "layers.h"

/* out: [B][J*E] the masked capsules; v: [B][J][E]; cls: [B] the capsule to keep. */
void mask_forward(float *out, const float *v, const int *cls, int B, int J, int E) {
    size_t JE = (size_t)J * E;
    memset(out, 0, (size_t)B * JE * sizeof(float));
    for (int b = 0; b < B; b++) {
        size_t off = (size_t)b * JE + (size_t)cls[b] * E;
        memcpy(out + off, v + off, (size_t)E * sizeof(float));
    }
}

/* forward copies capsule cls[b]; only it receives gradient. */
void mask_backward(float *dv, const float *dout, const int *cls, int B, int J, int E) {
    size_t JE = (size_t)J * E;
    for (int b = 0; b < B; b++) {
        size_t off = (size_t)b * JE + (size_t)cls[b] * E;
        for (int e = 0; e < E; e++) dv[off + e] += dout[off + e];
    }
}

/* loss: [B] = sum_p (recon - target)^2; recon, target: [B][P]. */
void recon_loss_forward(float *loss, const float *recon, const float *target, int B, int P) {
    for (int b = 0; b < B; b++) {
        double acc = 0.0;
        for (int p = 0; p < P; p++) {
            double d = (double)recon[(size_t)b * P + p] - target[(size_t)b * P + p];
            acc += d * d;
        }
        loss[b] = (float)acc;
    }
}

/* forward: loss_b = sum_p (recon - target)^2; drecon += scale * 2 (recon - target), with
 * scale the weight of one image's loss (0.0005 / B). The target gets no gradient. */
void recon_loss_backward(float *drecon, const float *recon, const float *target, float scale,
                         int B, int P) {
    for (size_t n = (size_t)B * P, k = 0; k < n; k++)
        drecon[k] += scale * 2.0f * (recon[k] - target[k]);
}
