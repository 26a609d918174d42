/*
 * digit_caps.c: the DigitCaps layer of Sabour et al. (2017): prediction vectors (eq. 2),
 * dynamic routing (Procedure 1, with eqs. 1-3), and the capsule lengths that are the
 * class scores.
 *
 *   u_hat_{j|i} = W_ij u_i                              prediction of parent j by child i
 *   Procedure 1, for every image:
 *     b_ij <- 0
 *     for r = 1..R:
 *       c_i  <- softmax(b_i)          over the J PARENTS j (eq. 3), not over the children i
 *       s_j  <- sum_i c_ij u_hat_{j|i}
 *       v_j  <- squash(s_j)           (eq. 1)
 *       b_ij <- b_ij + u_hat_{j|i} . v_j     (agreement; not needed after the last round)
 *
 * Gradients flow through every routing iteration: v of the last round depends on the
 * couplings c, which depend on the agreements of earlier rounds, which depend on u_hat and
 * the earlier v. routing_backward differentiates all of it (as PyTorch autograd does for
 * the same loop); nothing is detached.
 *
 * Dimension letters: B images, I = N_in child capsules (1152), J = N_out parents (10),
 * D = D_in (8), E = D_out (16), R routing iterations (3).
 */
#include <math.h>
#include <string.h>

#include "layers.h"
#include "util.h"

/* u_hat: [B][I][J][E]; u: [B][I][D]; W: [I][J][E][D]. */
void predict_forward(float *u_hat, const float *u, const float *W, int B, int I, int J, int E,
                     int D) {
    int JE = J * E;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < I; i++) {
            const float *ui = u + ((size_t)b * I + i) * D;
            const float *Wi = W + (size_t)i * JE * D;
            float *out = u_hat + ((size_t)b * I + i) * JE;
            for (int je = 0; je < JE; je++) {
                float acc = 0.0f;
                for (int d = 0; d < D; d++) acc += Wi[(size_t)je * D + d] * ui[d];
                out[je] = acc;
            }
        }
    }
}

/* forward: u_hat[b][i][j][e] = sum_d W[i][j][e][d] u[b][i][d]
 *   dW[i][j][e][d] += sum_b du_hat[b][i][j][e] u[b][i][d]
 *   du[b][i][d]    += sum_(j,e) W[i][j][e][d] du_hat[b][i][j][e]
 * Threads split the children i: each owns W_i's gradient and the du of capsule i. */
void predict_backward(float *du, float *dW, const float *du_hat, const float *u,
                      const float *W, int B, int I, int J, int E, int D) {
    int JE = J * E;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < I; i++) {
        const float *Wi = W + (size_t)i * JE * D;
        float *dWi = dW + (size_t)i * JE * D;
        for (int b = 0; b < B; b++) {
            const float *ui = u + ((size_t)b * I + i) * D;
            float *dui = du + ((size_t)b * I + i) * D;
            const float *g = du_hat + ((size_t)b * I + i) * JE;
            for (int je = 0; je < JE; je++) {
                for (int d = 0; d < D; d++) {
                    dWi[(size_t)je * D + d] += g[je] * ui[d];
                    dui[d] += Wi[(size_t)je * D + d] * g[je];
                }
            }
        }
    }
}

/* softmax over the J parents of one child: c[j] = exp(b[j] - max) / sum. Subtracting the
 * max keeps exp from overflowing once agreements grow; it does not change the result. */
static void softmax_row(float *c, const float *logits, int J) {
    float mx = logits[0];
    for (int j = 1; j < J; j++) mx = logits[j] > mx ? logits[j] : mx;
    float sum = 0.0f;
    for (int j = 0; j < J; j++) {
        c[j] = expf(logits[j] - mx);
        sum += c[j];
    }
    for (int j = 0; j < J; j++) c[j] /= sum;
}

/* v: [R][B][J][E] the parents of every round, v[R-1] is the layer's output;
 * caches c: [R][B][I][J] couplings, s: [R][B][J][E], norm2: [R][B][J];
 * logits: [B][I][J] scratch for b_ij; u_hat: [B][I][J][E]. */
void routing_forward(float *v, float *c, float *s, float *norm2, float *logits,
                     const float *u_hat, int B, int I, int J, int E, int R) {
    CAPS_ASSERT(R >= 1);
    size_t IJ = (size_t)I * J, JE = (size_t)J * E;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *uh = u_hat + (size_t)b * IJ * E;
        float *lg = logits + (size_t)b * IJ;
        memset(lg, 0, IJ * sizeof(float)); /* b_ij <- 0 for every image */
        for (int r = 0; r < R; r++) {
            size_t rb = (size_t)r * B + b;
            float *cr = c + rb * IJ, *sr = s + rb * JE, *vr = v + rb * JE;
            for (int i = 0; i < I; i++) softmax_row(cr + (size_t)i * J, lg + (size_t)i * J, J);
            /* s_j = sum_i c_ij u_hat_{j|i} */
            memset(sr, 0, JE * sizeof(float));
            for (int i = 0; i < I; i++)
                for (int j = 0; j < J; j++) {
                    float cij = cr[(size_t)i * J + j];
                    const float *u = uh + ((size_t)i * J + j) * E;
                    for (int e = 0; e < E; e++) sr[j * E + e] += cij * u[e];
                }
            for (int j = 0; j < J; j++) norm2[rb * J + j] = squash_vec(vr + j * E, sr + j * E, E);
            if (r == R - 1) break;
            /* b_ij += u_hat_{j|i} . v_j */
            for (int i = 0; i < I; i++)
                for (int j = 0; j < J; j++) {
                    const float *u = uh + ((size_t)i * J + j) * E;
                    float agree = 0.0f;
                    for (int e = 0; e < E; e++) agree += u[e] * vr[j * E + e];
                    lg[(size_t)i * J + j] += agree;
                }
        }
    }
}

/* Per image: G [I][J] (gradient of the logits b), dv_r [J][E], ds_r [J][E], dc [J]. */
size_t routing_scratch_size(int I, int J, int E) {
    return (size_t)I * J + 2 * (size_t)J * E + (size_t)J;
}

/* Backward through all R rounds, last to first. With G_r = dL/db_r (b of round r) and
 * a_r the agreements of round r, b_{r+1} = b_r + a_r gives dL/da_r = G_{r+1} and
 * G_r = softmax'(c_r) . dc_r + G_{r+1}; G_R = 0 because the last round updates no b.
 * Round r, backwards:
 *   dv_r  = dv (the output, r = R-1)  or  sum_i G_{r+1}[i][j] u_hat_{j|i} (r < R-1)
 *   du_hat_{j|i} += G_{r+1}[i][j] v_r[j]                       (from a_r = u_hat . v_r)
 *   ds_r  = squash'(s_r) dv_r
 *   du_hat_{j|i} += c_r[i][j] ds_r[j];  dc_r[i][j] = ds_r[j] . u_hat_{j|i}   (from s_r)
 *   G_r[i][j] = c_r[i][j] (dc_r[i][j] - sum_k c_r[i][k] dc_r[i][k]) + G_{r+1}[i][j]
 * b_0 = 0 is a constant, so round 0 stops at dc_0.
 * du_hat: [B][I][J][E] (+=); scratch: [B][routing_scratch_size]; dv: [B][J][E];
 * v, c, s, norm2 as cached by routing_forward; u_hat: [B][I][J][E]. */
void routing_backward(float *du_hat, float *scratch, const float *dv, const float *v,
                      const float *c, const float *s, const float *norm2, const float *u_hat,
                      int B, int I, int J, int E, int R) {
    size_t IJ = (size_t)I * J, JE = (size_t)J * E;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *uh = u_hat + (size_t)b * IJ * E;
        float *duh = du_hat + (size_t)b * IJ * E;
        float *G = scratch + (size_t)b * routing_scratch_size(I, J, E);
        float *dvr = G + IJ, *dsr = dvr + JE, *dc = dsr + JE;
        memset(G, 0, IJ * sizeof(float)); /* G_R = 0 */
        for (int r = R - 1; r >= 0; r--) {
            size_t rb = (size_t)r * B + b;
            const float *cr = c + rb * IJ, *sr = s + rb * JE, *vr = v + rb * JE;
            if (r == R - 1) {
                memcpy(dvr, dv + (size_t)b * JE, JE * sizeof(float));
            } else {
                memset(dvr, 0, JE * sizeof(float));
                for (int i = 0; i < I; i++)
                    for (int j = 0; j < J; j++) {
                        float g = G[(size_t)i * J + j];
                        const float *u = uh + ((size_t)i * J + j) * E;
                        float *du = duh + ((size_t)i * J + j) * E;
                        for (int e = 0; e < E; e++) {
                            dvr[j * E + e] += g * u[e];
                            du[e] += g * vr[j * E + e];
                        }
                    }
            }
            memset(dsr, 0, JE * sizeof(float));
            for (int j = 0; j < J; j++)
                squash_vec_backward(dsr + j * E, dvr + j * E, sr + j * E, norm2[rb * J + j], E);
            for (int i = 0; i < I; i++) {
                const float *ci = cr + (size_t)i * J;
                float dot = 0.0f;
                for (int j = 0; j < J; j++) {
                    const float *u = uh + ((size_t)i * J + j) * E;
                    float *du = duh + ((size_t)i * J + j) * E;
                    float acc = 0.0f;
                    for (int e = 0; e < E; e++) {
                        acc += dsr[j * E + e] * u[e];
                        du[e] += ci[j] * dsr[j * E + e];
                    }
                    dc[j] = acc;
                    dot += ci[j] * acc;
                }
                if (r > 0)
                    for (int j = 0; j < J; j++) G[(size_t)i * J + j] += ci[j] * (dc[j] - dot);
            }
        }
    }
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
