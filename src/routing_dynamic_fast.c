/*
 * routing_dynamic_fast.c: dynamic routing (Procedure 1) as routing_dynamic.c computes it,
 * fused so that the prediction vectors never reach memory, with AVX-512 kernels where the
 * build has them and versions specialised to the paper's shapes. What it computes, and the
 * derivation of every gradient, are in routing_dynamic.c; here is only how it is fast.
 *
 * Dimension letters: B images, I = N_in child capsules (1152), J = N_out parents (10),
 * D = D_in (8), E = D_out (16), R routing iterations (3).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "digit_caps.h"
#include "layers.h"
#include "util.h"

/* The per-image kernels below are written for any shape; for the paper's (J = 10 parents
 * of E = 16 dimensions, children of D = 8) they are compiled once more with those numbers
 * as constants, so the short inner loops become whole vector registers, unrolled. */
#define PAPER_J 10
#define PAPER_E 16
#define PAPER_D 8
#if defined(__GNUC__)
#define ALWAYS_INLINE __attribute__((always_inline))
#else
#define ALWAYS_INLINE
#endif

/* exp(x) for x <= 0, in plain float arithmetic the compiler vectorises (expf is a library
 * call it cannot): x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for exactness), exp(r)
 * by its Taylor series to r^7 (relative error below 2e-7, about one float ulp), 2^n put
 * into the exponent bits. Arguments below -87 give exp(-87) = 1.6e-38 (the exponent bits
 * must stay normal), which is 0 to every sum it enters. No branch, so it vectorises. */
static inline float exp_nonpositive(float x) {
    x = x > -87.0f ? x : -87.0f;
    /* n = round(x / ln 2): adding 1.5 * 2^23 pushes the fraction out of the mantissa
     * (round to nearest); subtracting it back leaves the integer, with no call to rintf. */
    const float shifter = 12582912.0f;
    float n = (x * 1.44269504f + shifter) - shifter;
    float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
              r * (1.0f / 720 + r * (1.0f / 5040)))))));
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* ------------------------------------------------------------------------ the fused layer */

/* The plain layers of routing_dynamic.c keep every prediction vector u_hat, [B][I][J][E]: 74 MB for a
 * batch of 100, and as much again for its gradient, and stream them from memory several
 * times per routing round. The fused layer does the same arithmetic without either array:
 *
 * - Each thread takes its share of the batch in tiles of DIGIT_TILE images, makes the
 *   tile's prediction vectors child by child (each W_i, 2.5 KB, read once per tile rather
 *   than once per image) and routes each image while its 0.7 MB of u_hat sits in cache.
 * - A child's prediction vectors are laid out [E][J], dimension-major: the J parents of
 *   one dimension side by side. Then the J agreements u_hat_{j|i} . v_j, the J couplings
 *   and every update of routing are elementwise over j (one vector register for J = 10)
 *   instead of J horizontal sums of length E.
 * - Routing reads u_hat once per round: for each child i, the agreement with the last
 *   round's v_j, the new logits b_ij, the softmax over j and the child's share of s_j all
 *   happen while u_hat_i is in registers.
 * - Backward never forms du_hat in memory. By Procedure 1, the gradient reaching u_hat_{j|i}
 *     du_hat_{j|i} = sum_r c^r_ij ds^r_j + sum_{r<R-1} G^{r+1}_ij v^r_j
 *   (ds^r the gradient of s_j in round r, G^{r+1} that of the logits b^{r+1}): scalars per
 *   (i, j) times vectors per j. Routing backward keeps the scalars G (c is cached anyway)
 *   and the vectors ds, and the prediction-vector backward rebuilds du_hat_i from them
 *   child by child, straight into du and a per-thread dW. The threads' dW are summed in
 *   thread order at the end, so a thread count gives one result, run after run.
 *
 * tests/test_digit_caps.c holds the fused layer equal to predict_* + routing_*, with and
 * without its AVX-512 kernels. */
#define DIGIT_TILE 4

/* Scratch per thread, in floats: the tile's u_hat; per tile image the logits (forward) or
 * the scalars G of every round but the last (backward); per tile image and round ds and v
 * laid out [E][J]; a few work vectors; the thread's dW (as WT is laid out). */
static size_t tile_uhat(int I, int J, int E) { return (size_t)DIGIT_TILE * I * J * E; }
static size_t tile_scalars(int I, int J, int R) {
    return (size_t)DIGIT_TILE * (R > 1 ? R - 1 : 1) * I * J;
}
static size_t tile_vectors(int J, int E, int R) { return 2 * (size_t)DIGIT_TILE * R * J * E; }
static size_t work_size(int J, int E) { return 4 * (size_t)J * E + 2 * (size_t)J; }

size_t routing_fused_scratch_size(int I, int J, int E, int D, int R) {
    return tile_uhat(I, J, E) + tile_scalars(I, J, R) + tile_vectors(J, E, R) +
           work_size(J, E) + (size_t)I * J * E * D;
}

/* WT[i][d][e][j] = W[i][j][e][d]: each W_i transposed so that a child's prediction vectors
 * come out dimension-major, [E][J], as D sums of contiguous rows of J*E. */
void routing_fused_transpose_weights(float *WT, const float *W, int I, int J, int E, int D) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < I; i++)
        for (int j = 0; j < J; j++)
            for (int e = 0; e < E; e++)
                for (int d = 0; d < D; d++)
                    WT[(((size_t)i * D + d) * E + e) * J + j] =
                        W[(((size_t)i * J + j) * E + e) * D + d];
}

/* x [J][E] -> xt [E][J] and back. */
static void to_dim_major(float *xt, const float *x, int J, int E) {
    for (int j = 0; j < J; j++)
        for (int e = 0; e < E; e++) xt[e * J + j] = x[j * E + e];
}

static void from_dim_major(float *x, const float *xt, int J, int E) {
    for (int j = 0; j < J; j++)
        for (int e = 0; e < E; e++) x[j * E + e] = xt[e * J + j];
}

/* sum_k a[k] b[k] in DOT_LANES independent partial sums, added at the end. Without
 * -ffast-math (which this project does not use: it breaks NaN checks) a plain running sum
 * must be added in order, one scalar at a time; this order is ours to choose, so it
 * vectorises. */
#define DOT_LANES 16

static inline ALWAYS_INLINE float dot_lanes(const float *restrict a, const float *restrict b,
                                            size_t n) {
    float part[DOT_LANES] = {0};
    size_t k = 0;
    for (; k + DOT_LANES <= n; k += DOT_LANES)
        for (int l = 0; l < DOT_LANES; l++) part[l] += a[k + l] * b[k + l];
    for (; k < n; k++) part[k % DOT_LANES] += a[k] * b[k];
    float sum = 0.0f;
    for (int l = 0; l < DOT_LANES; l++) sum += part[l];
    return sum;
}

/* uh[t][i][e][j] = (W_i u[t][i])_{j,e} for the T images of a tile; u: [T][I][D]. */
static inline ALWAYS_INLINE void predict_tile_k(float *restrict uh, const float *restrict u,
                                                const float *restrict WT, int T, int I, int JE,
                                                int D) {
    for (int i = 0; i < I; i++) {
        const float *wt = WT + (size_t)i * D * JE;
        for (int t = 0; t < T; t++) {
            const float *ui = u + ((size_t)t * I + i) * D;
            float *out = uh + ((size_t)t * I + i) * JE;
            for (int k = 0; k < JE; k++) out[k] = 0.0f;
            for (int d = 0; d < D; d++) {
                float ud = ui[d];
                const float *row = wt + (size_t)d * JE;
                for (int k = 0; k < JE; k++) out[k] += row[k] * ud;
            }
        }
    }
}

static void predict_tile(float *uh, const float *u, const float *WT, int T, int I, int JE, int D) {
    if (JE == PAPER_J * PAPER_E && D == PAPER_D)
        predict_tile_k(uh, u, WT, T, I, PAPER_J * PAPER_E, PAPER_D);
    else
        predict_tile_k(uh, u, WT, T, I, JE, D);
}

#if defined(__AVX512F__)
#include <immintrin.h>

/* exp_nonpositive on 16 lanes, the same arithmetic. */
static inline __m512 exp16(__m512 x) {
    const __m512 shifter = _mm512_set1_ps(12582912.0f);
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504f), shifter), shifter);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

/* fused_route_k with the J parents of a child in the lanes of one register (J <= 16):
 * the agreement, softmax and s_j update of a child are E vector FMAs each, no horizontal
 * sums but one max and one sum for the softmax. */
static void fused_route_avx512(float *v, float *c, float *s, float *norm2, float *lg,
                               float *work, const float *uh, int b, int B, int I, int J, int E,
                               int R) {
    size_t IJ = (size_t)I * J, JE = (size_t)J * E;
    __mmask16 m = (__mmask16)((1u << J) - 1);
    float *st = work, *vt = work + JE;
    for (int r = 0; r < R; r++) {
        size_t rb = (size_t)r * B + b;
        float *cr = c + rb * IJ;
        __m512 acc[64]; /* s_j rows, E <= 64 (checked by the caller) */
        for (int e = 0; e < E; e++) acc[e] = _mm512_setzero_ps();
        __m512 uniform = _mm512_set1_ps(1.0f / J);
        for (int i = 0; i < I; i++) {
            const float *u = uh + (size_t)i * JE;
            __m512 ci;
            if (r == 0) {
                ci = uniform;
            } else {
                __m512 a = r == 1 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, lg + (size_t)i * J);
                for (int e = 0; e < E; e++)
                    a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, u + e * J),
                                        _mm512_maskz_loadu_ps(m, vt + e * J), a);
                _mm512_mask_storeu_ps(lg + (size_t)i * J, m, a);
                float mx = _mm512_mask_reduce_max_ps(m, a);
                __m512 ex = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(a, _mm512_set1_ps(mx))));
                ci = _mm512_mul_ps(ex, _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(ex)));
            }
            _mm512_mask_storeu_ps(cr + (size_t)i * J, m, ci);
            for (int e = 0; e < E; e++)
                acc[e] = _mm512_fmadd_ps(ci, _mm512_maskz_loadu_ps(m, u + e * J), acc[e]);
        }
        for (int e = 0; e < E; e++) _mm512_mask_storeu_ps(st + e * J, m, acc[e]);
        float *sr = s + rb * JE, *vr = v + rb * JE;
        from_dim_major(sr, st, J, E);
        for (int j = 0; j < J; j++) norm2[rb * J + j] = squash_vec(vr + j * E, sr + j * E, E);
        to_dim_major(vt, vr, J, E);
    }
}
/* The per-child loop of fused_route_backward_k with the J parents in one register. */
static void route_backward_children_avx512(float *g, float *dvt, const float *gnext,
                                           const float *cr, const float *dsrt, const float *uh,
                                           int I, int J, int E) {
    __mmask16 m = (__mmask16)((1u << J) - 1);
    size_t JE = (size_t)J * E;
    __m512 acc[64];
    for (int e = 0; e < E; e++) acc[e] = _mm512_setzero_ps();
    for (int i = 0; i < I; i++) {
        const float *u = uh + (size_t)i * JE;
        __m512 dc = _mm512_setzero_ps();
        for (int e = 0; e < E; e++)
            dc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, dsrt + e * J),
                                 _mm512_maskz_loadu_ps(m, u + e * J), dc);
        __m512 ci = _mm512_maskz_loadu_ps(m, cr + (size_t)i * J);
        float dot = _mm512_reduce_add_ps(_mm512_mul_ps(ci, dc));
        __m512 gi = _mm512_mul_ps(ci, _mm512_sub_ps(dc, _mm512_set1_ps(dot)));
        if (gnext) gi = _mm512_add_ps(gi, _mm512_maskz_loadu_ps(m, gnext + (size_t)i * J));
        _mm512_mask_storeu_ps(g + (size_t)i * J, m, gi);
        for (int e = 0; e < E; e++)
            acc[e] = _mm512_fmadd_ps(gi, _mm512_maskz_loadu_ps(m, u + e * J), acc[e]);
    }
    for (int e = 0; e < E; e++) _mm512_mask_storeu_ps(dvt + e * J, m, acc[e]);
}
#endif

/* Procedure 1 for image b, one pass over its u_hat [I][E][J] per round. lg: [I][J] the
 * logits; work: [2 J*E] for s and the last v, dimension-major; caches c, s, v, norm2 at
 * [r][b] as routing_forward writes them. */
static inline ALWAYS_INLINE void fused_route_k(float *restrict v, float *restrict c,
                                               float *restrict s, float *restrict norm2,
                                               float *restrict lg, float *restrict work,
                                               const float *restrict uh, int b, int B, int I,
                                               int J, int E, int R) {
    size_t IJ = (size_t)I * J, JE = (size_t)J * E;
    float *st = work, *vt = work + JE; /* s_j and v_j of the last round, [E][J] */
    for (int r = 0; r < R; r++) {
        size_t rb = (size_t)r * B + b;
        float *cr = c + rb * IJ;
        for (size_t k = 0; k < JE; k++) st[k] = 0.0f;
        for (int i = 0; i < I; i++) {
            const float *u = uh + (size_t)i * JE;
            float *ci = cr + (size_t)i * J, *li = lg + (size_t)i * J;
            if (r == 0) {
                for (int j = 0; j < J; j++) ci[j] = 1.0f / J; /* b_ij = 0 */
            } else {
                /* b_ij += u_hat_{j|i} . v_j of the last round, then softmax over j */
                for (int j = 0; j < J; j++) ci[j] = r == 1 ? 0.0f : li[j];
                for (int e = 0; e < E; e++)
                    for (int j = 0; j < J; j++) ci[j] += u[e * J + j] * vt[e * J + j];
                float mx = ci[0], sum = 0.0f;
                for (int j = 0; j < J; j++) {
                    li[j] = ci[j];
                    mx = ci[j] > mx ? ci[j] : mx;
                }
                for (int j = 0; j < J; j++) {
                    ci[j] = exp_nonpositive(ci[j] - mx);
                    sum += ci[j];
                }
                float inv = 1.0f / sum;
                for (int j = 0; j < J; j++) ci[j] *= inv;
            }
            /* s_j += c_ij u_hat_{j|i} */
            for (int e = 0; e < E; e++)
                for (int j = 0; j < J; j++) st[e * J + j] += ci[j] * u[e * J + j];
        }
        float *sr = s + rb * JE, *vr = v + rb * JE;
        from_dim_major(sr, st, J, E);
        for (int j = 0; j < J; j++) norm2[rb * J + j] = squash_vec(vr + j * E, sr + j * E, E);
        to_dim_major(vt, vr, J, E);
    }
}


static void fused_route(float *v, float *c, float *s, float *norm2, float *lg, float *work,
                        const float *uh, int b, int B, int I, int J, int E, int R, int vector) {
    (void)vector; /* without AVX-512 in the build, the plain kernels run either way */
#if defined(__AVX512F__)
    if (J <= 16 && E <= 64 && vector) {
        if (E == PAPER_E)
            fused_route_avx512(v, c, s, norm2, lg, work, uh, b, B, I, J, PAPER_E, R);
        else
            fused_route_avx512(v, c, s, norm2, lg, work, uh, b, B, I, J, E, R);
        return;
    }
#endif
    if (J == PAPER_J && E == PAPER_E)
        fused_route_k(v, c, s, norm2, lg, work, uh, b, B, I, PAPER_J, PAPER_E, R);
    else
        fused_route_k(v, c, s, norm2, lg, work, uh, b, B, I, J, E, R);
}

/* Routing backward for image b, one pass over u_hat per round, keeping what rebuilds
 * du_hat: dst [R][E][J] (ds^r), vt [R][E][J] (v^r) and Gs [R-1][I][J] (Gs[r] = G^{r+1},
 * the logit gradient of round r + 1, which weighs v^r). Rounds from last to first (the
 * comment of routing_backward derives each line); round r's pass also adds G^r's share to
 * dv^{r-1}. work: [4 J*E + 2 J]. */
static inline ALWAYS_INLINE void fused_route_backward_k(
    float *restrict dst, float *restrict vt, float *restrict Gs, float *restrict work,
    const float *restrict dv, const float *restrict v, const float *restrict c,
    const float *restrict s, const float *restrict norm2, const float *restrict uh, int b, int B,
    int I, int J, int E, int R, int vector) {
    (void)vector; /* without AVX-512 in the build, the plain kernels run either way */
    size_t IJ = (size_t)I * J, JE = (size_t)J * E;
    float *dvr = work, *dsr = work + JE, *dvt = work + 2 * JE, *dc = work + 3 * JE;
    for (size_t k = 0; k < JE; k++) dvr[k] = dv[(size_t)b * JE + k];
    for (int r = R - 1; r >= 0; r--) {
        size_t rb = (size_t)r * B + b;
        const float *cr = c + rb * IJ, *sr = s + rb * JE;
        to_dim_major(vt + (size_t)r * JE, v + rb * JE, J, E);
        /* ds^r = squash'(s^r) dv^r */
        for (size_t k = 0; k < JE; k++) dsr[k] = 0.0f;
        for (int j = 0; j < J; j++)
            squash_vec_backward(dsr + j * E, dvr + j * E, sr + j * E, norm2[rb * J + j], E);
        float *dsrt = dst + (size_t)r * JE;
        to_dim_major(dsrt, dsr, J, E);
        if (r == 0) break; /* b^0 = 0: nothing flows further */
        /* G^r = softmax'(c^r) dc^r + G^{r+1}, dc^r_ij = ds^r_j . u_hat_{j|i};
         * dv^{r-1}_j = sum_i G^r_ij u_hat_{j|i} */
        const float *gnext = r + 1 < R ? Gs + (size_t)r * IJ : NULL; /* G^{r+1} */
        float *g = Gs + (size_t)(r - 1) * IJ;                       /* G^r */
#if defined(__AVX512F__)
        if (J <= 16 && E <= 64 && vector) {
            route_backward_children_avx512(g, dvt, gnext, cr, dsrt, uh, I, J, E);
            from_dim_major(dvr, dvt, J, E);
            continue;
        }
#endif
        for (size_t k = 0; k < JE; k++) dvt[k] = 0.0f;
        for (int i = 0; i < I; i++) {
            const float *u = uh + (size_t)i * JE, *ci = cr + (size_t)i * J;
            float *gi = g + (size_t)i * J, dot = 0.0f;
            for (int j = 0; j < J; j++) dc[j] = 0.0f;
            for (int e = 0; e < E; e++)
                for (int j = 0; j < J; j++) dc[j] += dsrt[e * J + j] * u[e * J + j];
            for (int j = 0; j < J; j++) dot += ci[j] * dc[j];
            for (int j = 0; j < J; j++)
                gi[j] = ci[j] * (dc[j] - dot) + (gnext ? gnext[(size_t)i * J + j] : 0.0f);
            for (int e = 0; e < E; e++)
                for (int j = 0; j < J; j++) dvt[e * J + j] += gi[j] * u[e * J + j];
        }
        from_dim_major(dvr, dvt, J, E);
    }
}


static void fused_route_backward(float *dst, float *vt, float *Gs, float *work, const float *dv,
                                 const float *v, const float *c, const float *s,
                                 const float *norm2, const float *uh, int b, int B, int I, int J,
                                 int E, int R, int vector) {
    if (J == PAPER_J && E == PAPER_E)
        fused_route_backward_k(dst, vt, Gs, work, dv, v, c, s, norm2, uh, b, B, I, PAPER_J,
                               PAPER_E, R, vector);
    else
        fused_route_backward_k(dst, vt, Gs, work, dv, v, c, s, norm2, uh, b, B, I, J, E, R,
                               vector);
}

/* For the images bt.. of a tile: du_hat_i rebuilt from the routing scalars and vectors
 * (see above), then dW_i += du_hat_i u_i^T into dWTp (this thread's dW, laid out as WT)
 * and du_i += W_i^T du_hat_i. Gs, dst, vt: per tile image, as fused_route_backward left
 * them; g: [J*E] scratch. */
static inline ALWAYS_INLINE void predict_tile_backward_k(
    float *restrict du, float *restrict dWTp, float *restrict g, const float *restrict Gs,
    const float *restrict dst, const float *restrict vt, const float *restrict c,
    const float *restrict u, const float *restrict WT, int bt, int T, int B, int I, int J, int E,
    int D, int R) {
    size_t IJ = (size_t)I * J, JE = (size_t)J * E;
    int RG = R > 1 ? R - 1 : 1;
    for (int i = 0; i < I; i++) {
        const float *wt = WT + (size_t)i * D * JE;
        float *dwt = dWTp + (size_t)i * D * JE;
        for (int t = 0; t < T; t++) {
            int b = bt + t;
            for (size_t k = 0; k < JE; k++) g[k] = 0.0f;
            for (int r = 0; r < R; r++) {
                const float *cri = c + ((size_t)r * B + b) * IJ + (size_t)i * J;
                const float *ds = dst + ((size_t)t * R + r) * JE;
                const float *vr = vt + ((size_t)t * R + r) * JE;
                const float *gi = Gs + ((size_t)t * RG + r) * IJ + (size_t)i * J;
                for (int e = 0; e < E; e++)
                    for (int j = 0; j < J; j++) g[e * J + j] += cri[j] * ds[e * J + j];
                if (r + 1 < R)
                    for (int e = 0; e < E; e++)
                        for (int j = 0; j < J; j++) g[e * J + j] += gi[j] * vr[e * J + j];
            }
            const float *ui = u + ((size_t)b * I + i) * D;
            float *dui = du + ((size_t)b * I + i) * D;
            for (int d = 0; d < D; d++) {
                const float *row = wt + (size_t)d * JE;
                float *drow = dwt + (size_t)d * JE;
                float ud = ui[d];
                for (size_t k = 0; k < JE; k++) drow[k] += ud * g[k];
                dui[d] += dot_lanes(row, g, JE);
            }
        }
    }
}

static void predict_tile_backward(float *du, float *dWTp, float *g, const float *Gs,
                                  const float *dst, const float *vt, const float *c,
                                  const float *u, const float *WT, int bt, int T, int B, int I,
                                  int J, int E, int D, int R) {
    if (J == PAPER_J && E == PAPER_E && D == PAPER_D)
        predict_tile_backward_k(du, dWTp, g, Gs, dst, vt, c, u, WT, bt, T, B, I, PAPER_J, PAPER_E,
                                PAPER_D, R);
    else
        predict_tile_backward_k(du, dWTp, g, Gs, dst, vt, c, u, WT, bt, T, B, I, J, E, D, R);
}

/* This thread's images [b0, b1). */
static void thread_share(int *b0, int *b1, int B, int id, int n) {
    *b0 = (int)((long long)B * id / n);
    *b1 = (int)((long long)B * (id + 1) / n);
}

/* Prediction vectors and routing for the batch, as predict_forward + routing_forward.
 * v, c, s, norm2: as routing_forward; scratch: nthreads x routing_fused_scratch_size;
 * u: [B][I][D]; WT from routing_fused_transpose_weights. */
void routing_fused_forward(float *v, float *c, float *s, float *norm2, float *scratch,
                           const float *u, const float *WT, int B, int I, int J, int E, int D,
                           int R, int nthreads, int vector) {
    size_t IJE = (size_t)I * J * E, per = routing_fused_scratch_size(I, J, E, D, R);
    (void)nthreads; /* without OpenMP */
#pragma omp parallel num_threads(nthreads)
    {
        int id, n, b0, b1;
        caps_thread(&id, &n);
        thread_share(&b0, &b1, B, id, n);
        float *uh = scratch + (size_t)id * per, *lg = uh + tile_uhat(I, J, E);
        float *work = lg + tile_scalars(I, J, R) + tile_vectors(J, E, R);
        for (int bt = b0; bt < b1; bt += DIGIT_TILE) {
            int T = b1 - bt < DIGIT_TILE ? b1 - bt : DIGIT_TILE;
            predict_tile(uh, u + (size_t)bt * I * D, WT, T, I, J * E, D);
            for (int k = 0; k < T; k++)
                fused_route(v, c, s, norm2, lg, work, uh + (size_t)k * IJE, bt + k, B, I, J, E,
                            R, vector);
        }
    }
}

/* The gradients of routing_fused_forward: du [B][I][D] (+=) and dW [I][J][E][D] (+=), from
 * dv [B][J][E] and the routing caches; WT the weights as routing_fused_transpose_weights
 * lays them out. */
void routing_fused_backward(float *du, float *dW, float *scratch, const float *dv,
                            const float *v, const float *c, const float *s, const float *norm2,
                            const float *u, const float *WT, int B, int I, int J, int E, int D,
                            int R, int nthreads, int vector) {
    size_t IJE = (size_t)I * J * E, per = routing_fused_scratch_size(I, J, E, D, R);
    size_t IJ = (size_t)I * J, JE = (size_t)J * E;
    size_t vec_offset = tile_uhat(I, J, E) + tile_scalars(I, J, R);
    size_t work_offset = vec_offset + tile_vectors(J, E, R);
    size_t dw_offset = work_offset + work_size(J, E);
    int RG = R > 1 ? R - 1 : 1;
    (void)nthreads; /* without OpenMP */
#pragma omp parallel num_threads(nthreads)
    {
        int id, n, b0, b1;
        caps_thread(&id, &n);
        thread_share(&b0, &b1, B, id, n);
        float *uh = scratch + (size_t)id * per, *Gs = uh + tile_uhat(I, J, E);
        float *dst = uh + vec_offset, *vt = dst + (size_t)DIGIT_TILE * R * JE;
        float *work = uh + work_offset, *dWTp = uh + dw_offset;
        memset(dWTp, 0, IJE * D * sizeof(float));
        for (int bt = b0; bt < b1; bt += DIGIT_TILE) {
            int T = b1 - bt < DIGIT_TILE ? b1 - bt : DIGIT_TILE;
            predict_tile(uh, u + (size_t)bt * I * D, WT, T, I, J * E, D);
            for (int k = 0; k < T; k++)
                fused_route_backward(dst + (size_t)k * R * JE, vt + (size_t)k * R * JE,
                                     Gs + (size_t)k * RG * IJ, work, dv, v, c, s, norm2,
                                     uh + (size_t)k * IJE, bt + k, B, I, J, E, R, vector);
            predict_tile_backward(du, dWTp, work, Gs, dst, vt, c, u, WT, bt, T, B, I, J, E, D,
                                  R);
        }
#pragma omp barrier
        /* dW[i][j][e][d] += the threads' dWT[i][d][e][j], in thread order; each thread
         * takes a share of the children. */
        int i0 = (int)((long long)I * id / n), i1 = (int)((long long)I * (id + 1) / n);
        for (int p = 0; p < n; p++) {
            const float *part = scratch + (size_t)p * per + dw_offset;
            for (int i = i0; i < i1; i++)
                for (int j = 0; j < J; j++)
                    for (int e = 0; e < E; e++)
                        for (int d = 0; d < D; d++)
                            dW[(((size_t)i * J + j) * E + e) * D + d] +=
                                part[(((size_t)i * D + d) * E + e) * J + j];
        }
    }
}
