/*
 * softmax_xent.c: the softmax over J classes and the cross-entropy of the true class, the
 * loss of the baseline CNN (cnn.c), as PyTorch's F.cross_entropy(z, y) per image:
 *
 *   prob_k = exp(z_k) / sum_j exp(z_j)
 *   L      = -log prob_y = log sum_j exp(z_j) - z_y
 *
 * Numerically: exp(z) overflows a float for z > 88, so the maximum m = max_j z_j is taken
 * out first: prob_k = exp(z_k - m) / sum_j exp(z_j - m), every exponent <= 0 and the sum
 * >= 1 (the largest term is exp(0)). The loss comes from the log-sum-exp,
 * L = log(sum_j exp(z_j - m)) - (z_y - m), not from log(prob_y): a prob_y that underflows
 * to 0 would give log(0) = -inf where the loss is only large.
 *
 * Dimension letters: B images, J classes.
 */
#include <math.h>

#include "cnn.h"
#include "util.h"

/* loss: [B] (skipped when labels is NULL); prob: [B][J]; logits: [B][J]; labels: [B]. */
void softmax_xent_forward(float *loss, float *prob, const float *logits, const int *labels,
                          int B, int J) {
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * J;
        float *pr = prob + (size_t)b * J;
        float m = z[0];
        for (int k = 1; k < J; k++) m = z[k] > m ? z[k] : m;
        double sum = 0.0;
        for (int k = 0; k < J; k++) {
            pr[k] = expf(z[k] - m);
            sum += pr[k];
        }
        for (int k = 0; k < J; k++) pr[k] = (float)(pr[k] / sum);
        if (labels) {
            CAPS_ASSERT(labels[b] >= 0 && labels[b] < J);
            loss[b] = (float)(log(sum) - ((double)z[labels[b]] - m));
        }
    }
}

/* forward: L = log sum_j exp(z_j) - z_y, so dL/dz_k = prob_k - [k == y].
 *   dlogits[b][k] += scale * (prob[b][k] - [k == labels[b]])
 * scale is the weight of one image's loss in the total (1/B for the batch mean). */
void softmax_xent_backward(float *dlogits, const float *prob, const int *labels, float scale,
                           int B, int J) {
    for (int b = 0; b < B; b++)
        for (int k = 0; k < J; k++) {
            float onehot = k == labels[b] ? 1.0f : 0.0f;
            dlogits[(size_t)b * J + k] += scale * (prob[(size_t)b * J + k] - onehot);
        }
}
