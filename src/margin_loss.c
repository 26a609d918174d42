/*
 * margin_loss.c: the margin loss, eq. 4 of Sabour et al. (2017), per image:
 *
 *   L = sum_k  T_k max(0, m+ - |v_k|)^2  +  lambda (1 - T_k) max(0, |v_k| - m-)^2
 *
 * with T_k = 1 for the true class, m+ = 0.9, m- = 0.1, lambda = 0.5. "We use a separate margin
 * loss for each digit capsule": with two digits in the image (MultiMNIST, section 6) both
 * classes are present, T_k = 1 for each. Both hinge terms are
 * SQUARED, as in the paper (some implementations forget). lambda down-weights the absent
 * classes so that early training does not shrink every capsule.
 *
 * Dimension letters: B images, J classes.
 */
#include "layers.h"

/* T_k of image b: labels [B] the class present, labels2 [B] a second one or NULL. */
static int present(const int *labels, const int *labels2, int b, int k) {
    return k == labels[b] || (labels2 && k == labels2[b]);
}

/* loss: [B] per image; len: [B][J] capsule lengths; labels, labels2: as present() takes. */
void margin_loss_forward(float *loss, const float *len, const int *labels, const int *labels2,
                         int B, int J) {
    for (int b = 0; b < B; b++) {
        float acc = 0.0f;
        for (int k = 0; k < J; k++) {
            float l = len[(size_t)b * J + k];
            if (present(labels, labels2, b, k)) {
                float h = MARGIN_M_PLUS - l;
                if (h > 0.0f) acc += h * h;
            } else {
                float h = l - MARGIN_M_MINUS;
                if (h > 0.0f) acc += MARGIN_LAMBDA * h * h;
            }
        }
        loss[b] = acc;
    }
}

/* d/d|v_k| of the forward terms, times scale (the weight of one image's loss, 1/B):
 *   present: -2 max(0, m+ - |v_k|);  absent: 2 lambda max(0, |v_k| - m-).
 * At the hinge (exactly m+ or m-) the gradient is 0, as PyTorch's relu gives. */
void margin_loss_backward(float *dlen, const float *len, const int *labels, const int *labels2,
                          float scale, int B, int J) {
    for (int b = 0; b < B; b++) {
        for (int k = 0; k < J; k++) {
            float l = len[(size_t)b * J + k];
            float g = 0.0f;
            if (present(labels, labels2, b, k)) {
                if (MARGIN_M_PLUS - l > 0.0f) g = -2.0f * (MARGIN_M_PLUS - l);
            } else {
                if (l - MARGIN_M_MINUS > 0.0f) g = 2.0f * MARGIN_LAMBDA * (l - MARGIN_M_MINUS);
            }
            dlen[(size_t)b * J + k] += scale * g;
        }
    }
}
