/*
 * test_digit_caps.c: prediction vectors (eq. 2), dynamic routing (Procedure 1) with
 * R = 1, 2, 3, and capsule lengths: values and finite-difference gradients.
 */
#include <stdlib.h>

#include "digit_caps.h"
#include "gradcheck.h"
#include "layers.h"
#include "test.h"

enum { B = 2, I = 6, J = 3, E = 4, D = 5, RMAX = 3 };
enum { N_U = B * I * D, N_W = I * J * E * D, N_UHAT = B * I * J * E, N_V = B * J * E };

/* ---- prediction vectors */

typedef struct {
    gc_layer base;
    float *u, *W;
} predict_ctx;

static void predict_fwd(gc_layer *l) {
    predict_ctx *c = (predict_ctx *)l;
    predict_forward(l->out, c->u, c->W, B, I, J, E, D);
}

TEST(prediction_vectors_are_W_times_u) {
    caps_rng r;
    caps_rng_seed(&r, 40, 0);
    float *u = gc_vec(N_U), *W = gc_vec(N_W), *uh = gc_vec(N_UHAT);
    gc_fill(u, N_U, -1, 1, &r);
    gc_fill(W, N_W, -1, 1, &r);
    predict_forward(uh, u, W, B, I, J, E, D);
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < I; i++)
            for (int j = 0; j < J; j++)
                for (int e = 0; e < E; e++) {
                    double acc = 0;
                    for (int d = 0; d < D; d++)
                        acc += (double)W[((i * J + j) * E + e) * D + d] * u[(b * I + i) * D + d];
                    bad += !test_close(uh[((b * I + i) * J + j) * E + e], acc, 1e-5, 1e-6);
                }
    EXPECT(bad == 0, "%d prediction vectors wrong", bad);
    free(u), free(W), free(uh);
}

TEST(prediction_backward_matches_finite_differences) {
    caps_rng r;
    caps_rng_seed(&r, 41, 0);
    predict_ctx c = {{predict_fwd, NULL, gc_vec(N_UHAT), gc_vec(N_UHAT), N_UHAT}, gc_vec(N_U),
                     gc_vec(N_W)};
    gc_fill(c.u, N_U, -1, 1, &r);
    gc_fill(c.W, N_W, -1, 1, &r);
    gc_fill((float *)c.base.r, N_UHAT, -1, 1, &r);
    float *du = gc_vec(N_U), *dW = gc_vec(N_W);
    predict_backward(du, dW, c.base.r, c.u, c.W, B, I, J, E, D);
    GRADCHECK("predict du", c.u, N_U, du, &c, 1e-2, 1e-3, 1e-4);
    GRADCHECK("predict dW", c.W, N_W, dW, &c, 1e-2, 1e-3, 1e-4);
    free(c.base.out), free((float *)c.base.r), free(c.u), free(c.W), free(du), free(dW);
}

/* ---- routing */

typedef struct {
    gc_layer base;
    int R;
    float *u_hat, *v, *c, *s, *n2, *logits;
} routing_ctx;

static void routing_fwd(gc_layer *l) {
    routing_ctx *x = (routing_ctx *)l;
    routing_forward(x->v, x->c, x->s, x->n2, x->logits, x->u_hat, B, I, J, E, x->R);
}

static routing_ctx routing_new(int R, caps_rng *r) {
    routing_ctx x = {{routing_fwd, NULL, NULL, gc_vec(N_V), N_V}, R, gc_vec(N_UHAT),
                     gc_vec((size_t)R * N_V), gc_vec((size_t)R * B * I * J),
                     gc_vec((size_t)R * N_V), gc_vec((size_t)R * B * J), gc_vec(B * I * J)};
    x.base.out = x.v + (size_t)(R - 1) * N_V; /* the layer's output: v of the last round */
    gc_fill(x.u_hat, N_UHAT, -0.8f, 0.8f, r);
    gc_fill((float *)x.base.r, N_V, -1, 1, r);
    return x;
}

static void routing_free(routing_ctx *x) {
    free((float *)x->base.r), free(x->u_hat), free(x->v), free(x->c), free(x->s), free(x->n2);
    free(x->logits);
}

/* Procedure 1, line 4: the softmax runs over the parents j (eq. 3). Softmax over the
 * children i instead is a known bug of public implementations. */
TEST(couplings_are_a_softmax_over_parents) {
    caps_rng r;
    caps_rng_seed(&r, 42, 0);
    routing_ctx x = routing_new(RMAX, &r);
    routing_fwd(&x.base);
    int bad = 0;
    for (int rr = 0; rr < RMAX; rr++)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < I; i++) {
                double sum = 0;
                for (int j = 0; j < J; j++) sum += x.c[(((size_t)rr * B + b) * I + i) * J + j];
                bad += !test_close(sum, 1.0, 1e-5, 0);
            }
    EXPECT(bad == 0, "%d children whose couplings do not sum to 1 over the parents", bad);
    /* Round 0 starts from b = 0: uniform couplings 1/J. Later rounds are not uniform. */
    EXPECT(test_close(x.c[0], 1.0 / J, 1e-6, 0), "first-round coupling %g, expected 1/J", x.c[0]);
    EXPECT(!test_close(x.c[(size_t)1 * B * I * J], 1.0 / J, 1e-4, 0),
           "second-round coupling did not move from 1/J");
    routing_free(&x);
}

/* R = 1 is no routing at all: v_j = squash(sum_i u_hat_{j|i} / J). */
TEST(one_round_is_squashed_mean) {
    caps_rng r;
    caps_rng_seed(&r, 43, 0);
    routing_ctx x = routing_new(1, &r);
    routing_fwd(&x.base);
    float s[N_V] = {0}, v[N_V], n2[B * J];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < I; i++)
            for (int je = 0; je < J * E; je++)
                s[b * J * E + je] += x.u_hat[(b * I + i) * J * E + je] / J;
    squash_forward(v, n2, s, B * J, E);
    int bad = 0;
    for (int k = 0; k < N_V; k++) bad += !test_close(x.v[k], v[k], 1e-5, 1e-7);
    EXPECT(bad == 0, "%d elements differ from squash(mean)", bad);
    routing_free(&x);
}

/* Routing by agreement: children that all predict the same parent vector pull their
 * coupling to that parent up, round after round. */
TEST(agreement_raises_coupling) {
    float u_hat[I * J * E] = {0};
    for (int i = 0; i < I; i++)
        for (int e = 0; e < E; e++) {
            u_hat[(i * J + 0) * E + e] = 0.5f;                        /* all agree on parent 0 */
            u_hat[(i * J + 1) * E + e] = (i % 2 ? 0.5f : -0.5f);      /* disagree on parent 1 */
        }
    float v[RMAX * J * E], c[RMAX * I * J], s[RMAX * J * E], n2[RMAX * J], lg[I * J];
    routing_forward(v, c, s, n2, lg, u_hat, 1, I, J, E, RMAX);
    EXPECT(c[(2 * I + 0) * J + 0] > c[(1 * I + 0) * J + 0] && c[(1 * I) * J + 0] > 1.0f / J,
           "coupling to the agreed parent: round 1 %g, round 2 %g, round 3 %g", c[0],
           c[(I + 0) * J], c[(2 * I + 0) * J]);
    EXPECT(c[(2 * I + 0) * J + 1] < 1.0f / J, "coupling to the disputed parent %g",
           c[(2 * I + 0) * J + 1]);
}

static void check_routing_backward(int R) {
    caps_rng r;
    caps_rng_seed(&r, 44, (uint64_t)R);
    routing_ctx x = routing_new(R, &r);
    routing_fwd(&x.base);
    float *du_hat = gc_vec(N_UHAT), *scratch = gc_vec(B * routing_scratch_size(I, J, E));
    routing_backward(du_hat, scratch, x.base.r, x.v, x.c, x.s, x.n2, x.u_hat, B, I, J, E, R);
    char name[32];
    snprintf(name, sizeof name, "routing R=%d du_hat", R);
    GRADCHECK(name, x.u_hat, N_UHAT, du_hat, &x, 1e-3, 1e-2, 1e-3);
    free(du_hat), free(scratch);
    routing_free(&x);
}

TEST(routing_backward_one_round) { check_routing_backward(1); }
TEST(routing_backward_two_rounds) { check_routing_backward(2); }
TEST(routing_backward_three_rounds) { check_routing_backward(3); }

/* ---- lengths */

typedef struct {
    gc_layer base;
    float *v;
} length_ctx;

static void length_fwd(gc_layer *l) {
    caps_length_forward(l->out, ((length_ctx *)l)->v, B * J, E);
}

TEST(length_backward_matches_finite_differences) {
    caps_rng r;
    caps_rng_seed(&r, 45, 0);
    length_ctx c = {{length_fwd, NULL, gc_vec(B * J), gc_vec(B * J), B * J}, gc_vec(N_V)};
    gc_fill(c.v, N_V, -0.5f, 0.5f, &r);
    gc_fill((float *)c.base.r, B * J, -1, 1, &r);
    length_fwd(&c.base);
    float *dv = gc_vec(N_V);
    caps_length_backward(dv, c.base.r, c.v, c.base.out, B * J, E);
    GRADCHECK("length", c.v, N_V, dv, &c, 1e-3, 1e-2, 1e-3);
    /* A zero vector has no direction: gradient 0, not NaN. */
    float z[E] = {0}, zl, dz[E] = {0}, one = 1.0f;
    caps_length_forward(&zl, z, 1, E);
    caps_length_backward(dz, &one, z, &zl, 1, E);
    EXPECT(zl == 0.0f && dz[0] == 0.0f, "zero vector: length %g, gradient %g", zl, dz[0]);
    free(c.base.out), free((float *)c.base.r), free(c.v), free(dv);
}

TEST(argmax_picks_longest_first_on_ties) {
    float len[2 * J] = {0.1f, 0.7f, 0.3f, 0.5f, 0.2f, 0.5f};
    int pred[2];
    caps_argmax(pred, len, 2, J);
    EXPECT(pred[0] == 1 && pred[1] == 0, "predictions %d %d", pred[0], pred[1]);
}

/* ---- the fused layer equals predict + routing, forward and backward */

static void check_fused(int Bn, int R, int nthreads, int vector) {
    caps_rng r;
    caps_rng_seed(&r, 46, (uint64_t)(Bn * 10 + R));
    size_t nu = (size_t)Bn * I * D, nuh = (size_t)Bn * I * J * E, nv = (size_t)Bn * J * E;
    float *u = gc_vec(nu), *W = gc_vec(N_W), *WT = gc_vec(N_W), *u_hat = gc_vec(nuh);
    gc_fill(u, nu, -0.6f, 0.6f, &r);
    gc_fill(W, N_W, -0.8f, 0.8f, &r);
    /* reference: the plain layers */
    float *v1 = gc_vec(R * nv), *c1 = gc_vec((size_t)R * Bn * I * J), *s1 = gc_vec(R * nv);
    float *n1 = gc_vec((size_t)R * Bn * J), *lg = gc_vec((size_t)Bn * I * J);
    predict_forward(u_hat, u, W, Bn, I, J, E, D);
    routing_forward(v1, c1, s1, n1, lg, u_hat, Bn, I, J, E, R);
    /* fused */
    float *v2 = gc_vec(R * nv), *c2 = gc_vec((size_t)R * Bn * I * J), *s2 = gc_vec(R * nv);
    float *n2 = gc_vec((size_t)R * Bn * J);
    float *scratch = gc_vec((size_t)nthreads * routing_fused_scratch_size(I, J, E, D, R));
    routing_fused_transpose_weights(WT, W, I, J, E, D);
    routing_fused_forward(v2, c2, s2, n2, scratch, u, WT, Bn, I, J, E, D, R, nthreads, vector);
    int bad = 0;
    for (size_t k = 0; k < R * nv; k++) bad += !test_close(v1[k], v2[k], 1e-5, 1e-7);
    for (size_t k = 0; k < (size_t)R * Bn * I * J; k++) bad += !test_close(c1[k], c2[k], 1e-5, 1e-7);
    EXPECT(bad == 0, "B %d R %d threads %d vector %d: %d forward values differ", Bn, R, nthreads, vector, bad);
    /* backward */
    float *dv = gc_vec(nv), *du_hat = gc_vec(nuh), *rs = gc_vec((size_t)Bn * routing_scratch_size(I, J, E));
    float *du1 = gc_vec(nu), *dW1 = gc_vec(N_W), *du2 = gc_vec(nu), *dW2 = gc_vec(N_W);
    gc_fill(dv, nv, -1, 1, &r);
    routing_backward(du_hat, rs, dv, v1, c1, s1, n1, u_hat, Bn, I, J, E, R);
    predict_backward(du1, dW1, du_hat, u, W, Bn, I, J, E, D);
    routing_fused_backward(du2, dW2, scratch, dv, v2, c2, s2, n2, u, WT, Bn, I, J, E, D, R,
                           nthreads, vector);
    bad = 0;
    for (size_t k = 0; k < nu; k++) bad += !test_close(du1[k], du2[k], 1e-4, 1e-6);
    for (int k = 0; k < N_W; k++) bad += !test_close(dW1[k], dW2[k], 1e-4, 1e-6);
    EXPECT(bad == 0, "B %d R %d threads %d vector %d: %d gradients differ", Bn, R, nthreads, vector, bad);
    free(u), free(W), free(WT), free(u_hat), free(v1), free(c1), free(s1), free(n1), free(lg);
    free(v2), free(c2), free(s2), free(n2), free(scratch), free(dv), free(du_hat), free(rs);
    free(du1), free(dW1), free(du2), free(dW2);
}

/* Batches smaller than, equal to and not a multiple of the tile, on one and two threads,
 * with the vector kernels and with the plain ones. */
TEST(fused_layer_equals_predict_and_routing) {
    const int sizes[] = {1, 3, 4, 9};
    for (int vector = 0; vector < 2; vector++)
        for (int k = 0; k < 4; k++)
            for (int R = 1; R <= 3; R += 2)
                for (int nt = 1; nt <= 2; nt++) check_fused(sizes[k], R, nt, vector);
}

int main(void) {
    RUN(prediction_vectors_are_W_times_u);
    RUN(prediction_backward_matches_finite_differences);
    RUN(couplings_are_a_softmax_over_parents);
    RUN(one_round_is_squashed_mean);
    RUN(agreement_raises_coupling);
    RUN(routing_backward_one_round);
    RUN(routing_backward_two_rounds);
    RUN(routing_backward_three_rounds);
    RUN(length_backward_matches_finite_differences);
    RUN(argmax_picks_longest_first_on_ties);
    RUN(fused_layer_equals_predict_and_routing);
    return TEST_SUMMARY();
}
