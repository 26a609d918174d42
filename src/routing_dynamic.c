/*
 * routing_dynamic.c: the DigitCaps layer with dynamic routing, Procedure 1 of Sabour et al.
 * (2017), written as the paper states it: prediction vectors (eq. 2) for every child and
 * parent in memory, then R rounds of routing by agreement (eqs. 1-3). This is the
 * reference; routing_dynamic_fast.c computes the same without storing u_hat, and
 * tests/test_digit_caps.c holds the two equal. The layer object at the end runs one or
 * the other, as the model's kernels option says.
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
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#include "digit_caps.h"
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

/* softmax over the J parents of each child i: c[i][j] = exp(b[i][j] - max_j) / sum_j.
 * Subtracting the max keeps exp from overflowing once agreements grow; it does not change
 * the result. Round 0 starts from b = 0: c = 1/J without any exp. */
static void softmax_rows(float *c, const float *logits, int I, int J) {
    for (int i = 0; i < I; i++) {
        const float *lg = logits + (size_t)i * J;
        float *ci = c + (size_t)i * J;
        float mx = lg[0], sum = 0.0f;
        for (int j = 1; j < J; j++) mx = lg[j] > mx ? lg[j] : mx;
        for (int j = 0; j < J; j++) {
            ci[j] = expf(lg[j] - mx);
            sum += ci[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < J; j++) ci[j] *= inv;
    }
}

/* Procedure 1 for image b: uh [I][J][E] its prediction vectors; lg [I][J] scratch for the
 * logits; caches of every round r written at [r][b] of v, c, s, norm2 (layouts below). */
static void route_image(float *v, float *c, float *s, float *norm2, float *lg, const float *uh,
                        int b, int B, int I, int J, int E, int R) {
    size_t IJ = (size_t)I * J, JE = (size_t)J * E;
    for (int r = 0; r < R; r++) {
        size_t rb = (size_t)r * B + b;
        float *cr = c + rb * IJ, *sr = s + rb * JE, *vr = v + rb * JE;
        if (r == 0) {
            for (size_t k = 0; k < IJ; k++) cr[k] = 1.0f / J; /* b_ij <- 0 */
        } else {
            softmax_rows(cr, lg, I, J);
        }
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
        /* b_ij += u_hat_{j|i} . v_j  (round 0 starts the logits at 0) */
        for (int i = 0; i < I; i++)
            for (int j = 0; j < J; j++) {
                const float *u = uh + ((size_t)i * J + j) * E;
                float agree = 0.0f;
                for (int e = 0; e < E; e++) agree += u[e] * vr[j * E + e];
                lg[(size_t)i * J + j] = (r == 0 ? 0.0f : lg[(size_t)i * J + j]) + agree;
            }
    }
}

/* v: [R][B][J][E] the parents of every round, v[R-1] is the layer's output;
 * caches c: [R][B][I][J] couplings, s: [R][B][J][E], norm2: [R][B][J];
 * logits: [B][I][J] scratch for b_ij; u_hat: [B][I][J][E]. */
void routing_forward(float *v, float *c, float *s, float *norm2, float *logits,
                     const float *u_hat, int B, int I, int J, int E, int R) {
    CAPS_ASSERT(R >= 1);
    size_t IJ = (size_t)I * J;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        route_image(v, c, s, norm2, logits + (size_t)b * IJ, u_hat + (size_t)b * IJ * E, b, B, I,
                    J, E, R);
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
/* routing_backward for image b: duh [I][J][E] (+=) its prediction-vector gradient, uh its
 * prediction vectors, G [routing_scratch_size] scratch. */
static void route_image_backward(float *duh, float *G, const float *dv, const float *v,
                                 const float *c, const float *s, const float *norm2,
                                 const float *uh, int b, int B, int I, int J, int E, int R) {
    size_t IJ = (size_t)I * J, JE = (size_t)J * E;
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

void routing_backward(float *du_hat, float *scratch, const float *dv, const float *v,
                      const float *c, const float *s, const float *norm2, const float *u_hat,
                      int B, int I, int J, int E, int R) {
    size_t IJE = (size_t)I * J * E;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        route_image_backward(du_hat + (size_t)b * IJE,
                             scratch + (size_t)b * routing_scratch_size(I, J, E), dv, v, c, s,
                             norm2, u_hat + (size_t)b * IJE, b, B, I, J, E, R);
}

/* ------------------------------------------------------------------------ the layer */

/* The layer "dynamic": the caches of every round for backward, and the scratch of the
 * kernels the model runs (CAPS_KERNELS_REFERENCE: the functions above; otherwise the fused
 * ones of routing_dynamic_fast.c, with or without their AVX-512 versions). */
typedef struct {
    digit_caps base;
    caps_dims d;
    int kernels;
    int batch; /* of the last forward pass */
    float *c;  /* [R][B][I][J] couplings of every round */
    float *s;  /* [R][B][J][E] */
    float *v;  /* [R][B][J][E]; v[R-1] is the layer's output */
    float *n2; /* [R][B][J] |s|^2, squash cache */
    /* fused kernels: per-thread scratch for `threads` threads, W transposed (WT) as of
     * W_version wt_version (-1: never) */
    float *scratch, *WT;
    int threads;
    int64_t wt_version;
    /* reference kernels: u_hat [B][I][J][E], its gradient, the logits [B][I][J] and the
     * backward scratch [B][routing_scratch_size] */
    float *u_hat, *du_hat, *logits, *rscratch;
} dynamic_layer;

static void dynamic_destroy(digit_caps *dc) {
    dynamic_layer *L = (dynamic_layer *)dc;
    if (!L) return;
    free(L->c), free(L->s), free(L->v), free(L->n2);
    free(L->scratch), free(L->WT);
    free(L->u_hat), free(L->du_hat), free(L->logits), free(L->rscratch);
    free(L);
}

static int dynamic_create(digit_caps **out, const caps_dims *d, int max_batch, int kernels,
                          caps_error *err) {
    *out = NULL;
    dynamic_layer *L = caps_alloc(1, sizeof *L);
    if (!L) return caps_fail(err, CAPS_ERR_MEMORY, "out of memory for the DigitCaps layer");
    L->base.ops = &digit_caps_dynamic;
    L->d = *d;
    L->kernels = kernels;
    L->wt_version = -1;
    size_t B = (size_t)max_batch, I = d->I, J = d->J, E = d->E, R = d->R;
    L->c = caps_alloc(R * B * I * J, sizeof(float));
    L->s = caps_alloc(R * B * J * E, sizeof(float));
    L->v = caps_alloc(R * B * J * E, sizeof(float));
    L->n2 = caps_alloc(R * B * J, sizeof(float));
    int ok = L->c && L->s && L->v && L->n2;
    if (kernels == CAPS_KERNELS_REFERENCE) {
        L->u_hat = caps_alloc(B * I * J * E, sizeof(float));
        L->du_hat = caps_alloc(B * I * J * E, sizeof(float));
        L->logits = caps_alloc(B * I * J, sizeof(float));
        L->rscratch = caps_alloc(B * routing_scratch_size(d->I, d->J, d->E), sizeof(float));
        ok = ok && L->u_hat && L->du_hat && L->logits && L->rscratch;
    } else {
        L->threads = 1;
#ifdef _OPENMP
        L->threads = omp_get_max_threads();
#endif
        L->scratch = caps_alloc((size_t)L->threads * routing_fused_scratch_size(d->I, d->J, d->E,
                                                                                d->D, d->R),
                                sizeof(float));
        L->WT = caps_alloc(I * J * E * (size_t)d->D, sizeof(float));
        ok = ok && L->scratch && L->WT;
    }
    if (!ok) {
        dynamic_destroy(&L->base);
        return caps_fail(err, CAPS_ERR_MEMORY,
                         "out of memory for the DigitCaps layer at batch %d", max_batch);
    }
    *out = &L->base;
    return CAPS_OK;
}

/* Threads for the fused kernels: as many as run now, at most as many as the scratch was
 * made for. */
static int fused_threads(const dynamic_layer *L) {
#ifdef _OPENMP
    int n = omp_get_max_threads();
    return n < L->threads ? n : L->threads;
#else
    (void)L;
    return 1;
#endif
}

static void dynamic_forward(digit_caps *dc, const float *u, const float *W, int64_t W_version,
                            int B) {
    dynamic_layer *L = (dynamic_layer *)dc;
    const caps_dims *d = &L->d;
    L->batch = B;
    if (L->kernels == CAPS_KERNELS_REFERENCE) {
        predict_forward(L->u_hat, u, W, B, d->I, d->J, d->E, d->D);
        routing_forward(L->v, L->c, L->s, L->n2, L->logits, L->u_hat, B, d->I, d->J, d->E, d->R);
        return;
    }
    if (L->wt_version != W_version) {
        routing_fused_transpose_weights(L->WT, W, d->I, d->J, d->E, d->D);
        L->wt_version = W_version;
    }
    routing_fused_forward(L->v, L->c, L->s, L->n2, L->scratch, u, L->WT, B, d->I, d->J, d->E,
                          d->D, d->R, fused_threads(L), L->kernels == CAPS_KERNELS_FAST);
}

static void dynamic_backward(digit_caps *dc, float *du, float *dW, const float *dv,
                             const float *u, const float *W, int B) {
    dynamic_layer *L = (dynamic_layer *)dc;
    const caps_dims *d = &L->d;
    CAPS_ASSERT(B == L->batch);
    if (L->kernels == CAPS_KERNELS_REFERENCE) {
        memset(L->du_hat, 0, (size_t)B * d->I * d->J * d->E * sizeof(float));
        routing_backward(L->du_hat, L->rscratch, dv, L->v, L->c, L->s, L->n2, L->u_hat, B, d->I,
                         d->J, d->E, d->R);
        predict_backward(du, dW, L->du_hat, u, W, B, d->I, d->J, d->E, d->D);
        return;
    }
    routing_fused_backward(du, dW, L->scratch, dv, L->v, L->c, L->s, L->n2, u, L->WT, B, d->I,
                           d->J, d->E, d->D, d->R, fused_threads(L),
                           L->kernels == CAPS_KERNELS_FAST);
}

static const float *dynamic_output(const digit_caps *dc) {
    const dynamic_layer *L = (const dynamic_layer *)dc;
    return L->v + (size_t)(L->d.R - 1) * L->batch * L->d.J * L->d.E;
}

const digit_caps_ops digit_caps_dynamic = {"dynamic", dynamic_create, dynamic_destroy,
                                           dynamic_forward, dynamic_backward, dynamic_output};
