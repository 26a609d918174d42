/*
 * test_network.c: the whole network. The MNIST configuration's parameter count, shape
 * checks, masking by label in training and by prediction at test, and a finite-difference
 * check of every parameter's gradient at a tiny configuration, through every layer.
 */
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "gradcheck.h"
#include "layers.h"
#include "model.h"
#include "test.h"
#include "test_model.h"

/* 10x10 image, Conv1 4 @ 3x3 -> 8x8, PrimaryCaps 3 types x 4D @ 3x3 stride 2 -> 3x3 grid
 * (27 capsules), 4 classes x 5D, decoder 8 -> 12 -> 100. */
static caps_config tiny_config(int routing) {
    caps_config c = {10, 1, 4, 3, 1, 3, 4, 3, 2, 4, 5, routing, 8, 12, CAPS_ROUTING_DYNAMIC};
    return c;
}

TEST(mnist_shapes_and_parameter_count) {
    caps_config c;
    caps_config_mnist(&c);
    EXPECT(caps_config_check(&c, NULL) == CAPS_OK, "MNIST config rejected");
    EXPECT(caps_conv1_out(&c) == 20, "Conv1 output %d", caps_conv1_out(&c));
    EXPECT(caps_primary_grid(&c) == 6, "primary grid %d", caps_primary_grid(&c));
    EXPECT(caps_num_primary(&c) == 1152, "primary capsules %d", caps_num_primary(&c));
    EXPECT(caps_num_params(&c) == 8215568, "parameters %zu, the paper's network has 8215568",
           caps_num_params(&c));
}

TEST(bad_configs_are_rejected) {
    caps_config c;
    caps_error err;
    caps_config_mnist(&c);
    c.primary_kernel = 21;
    EXPECT(caps_config_check(&c, &err) == CAPS_ERR_ARG && strstr(err.msg, "primary_kernel"),
           "primary kernel 21: %s", err.msg);
    caps_config_mnist(&c);
    c.routing_iters = 0;
    EXPECT(caps_config_check(&c, &err) == CAPS_ERR_ARG && strstr(err.msg, "routing_iters"),
           "routing 0: %s", err.msg);
    caps_config_mnist(&c);
    c.routing = CAPS_NUM_ROUTINGS;
    EXPECT(caps_config_check(&c, &err) == CAPS_ERR_ARG && strstr(err.msg, "unknown routing"),
           "routing %d: %s", c.routing, err.msg);
    EXPECT(caps_routing_find("dynamic") == CAPS_ROUTING_DYNAMIC && caps_routing_find("em") == -1 &&
               strcmp(caps_routing_name(CAPS_ROUTING_DYNAMIC), "dynamic") == 0 &&
               caps_routing_name(CAPS_NUM_ROUTINGS) == NULL,
           "routing names");
    caps_config_mnist(&c);
    c.num_classes = 1;
    EXPECT(caps_config_check(&c, &err) == CAPS_ERR_ARG, "1 class accepted");
    capsnet *m = NULL;
    caps_config_mnist(&c);
    EXPECT(capsnet_create(&m, &c, 0, NULL, &err) == CAPS_ERR_ARG && m == NULL, "batch 0 accepted");
}

/* ---- whole-network finite differences */

enum { NB = 3 };

typedef struct {
    capsnet *m;
    const float *params; /* [num_params], the values gradcheck moves, written before each pass */
    const float *x;
    const int *labels;
    int mask;
    float recon_weight;
    /* Two digits (capsnet_forward_pair) when labels2 is set: their classes and targets. */
    const int *labels2;
    const float *target_a, *target_b;
} net_ctx;

/* With two digits the backend's decoder caches hold the second digit's pass: the first
 * digit's decoder ReLUs are worked out here, in double, from the capsules and weights. */
static uint64_t first_digit_relus(uint64_t s, const net_ctx *n) {
    capsnet *m = n->m;
    const caps_config *c = capsnet_config(m);
    int E = c->digit_dim, JE = c->num_classes * E, H1 = c->decoder_hidden1,
        H2 = c->decoder_hidden2;
    const float *v = capsnet_digit_caps(m);
    const float *w1 = n->params + capsnet_param_offset(m, capsnet_param_find("dec1_w"));
    const float *b1 = n->params + capsnet_param_offset(m, capsnet_param_find("dec1_b"));
    const float *w2 = n->params + capsnet_param_offset(m, capsnet_param_find("dec2_w"));
    const float *b2 = n->params + capsnet_param_offset(m, capsnet_param_find("dec2_b"));
    double h1[64];
    EXPECT(H1 <= 64, "hidden1 %d", H1);
    for (int b = 0; b < NB; b++) {
        const float *va = v + (size_t)b * JE + (size_t)n->labels[b] * E;
        for (int k = 0; k < H1; k++) {
            double z = b1[k];
            for (int e = 0; e < E; e++) z += (double)w1[(size_t)k * JE + n->labels[b] * E + e] * va[e];
            h1[k] = z > 0 ? z : 0;
            s = gc_mix(s, z > 0);
        }
        for (int k = 0; k < H2; k++) {
            double z = b2[k];
            for (int i = 0; i < H1; i++) z += (double)w2[(size_t)k * H1 + i] * h1[i];
            s = gc_mix(s, z > 0);
        }
    }
    return s;
}

/* The loss, and the kinks it crossed: ReLUs of Conv1 and the decoder, the margin's hinges,
 * and the predicted classes (which pick the decoder's capsule at test time). */
static double net_loss(void *ctx, uint64_t *sig) {
    net_ctx *n = ctx;
    capsnet *m = n->m;
    const caps_config *c = capsnet_config(m);
    EXPECT(capsnet_write(m, CAPS_PARAMS, 0, capsnet_num_params(m), n->params, NULL) == CAPS_OK,
           "write parameters");
    if (n->labels2)
        capsnet_forward_pair(m, n->x, n->labels, n->labels2, n->target_a, n->target_b, NB,
                             n->recon_weight);
    else
        capsnet_forward(m, n->x, n->labels, NB, n->mask, n->recon_weight);
    /* The batch mean, accumulated in double from the per-image terms (the float that
     * capsnet_forward returns would round away the differences being measured). */
    float margin[NB], sse[NB];
    capsnet_image_losses(m, margin, sse);
    double loss = 0;
    for (int b = 0; b < NB; b++) loss += margin[b] + (double)n->recon_weight * sse[b];
    loss /= NB;
    /* The ReLUs' states, read from the CPU backend's activations. */
    const cpu_acts *a = &m->bs->acts;
    const float *len = capsnet_lengths(m);
    uint64_t s = 0;
    size_t n1 = (size_t)NB * c->conv1_channels * caps_conv1_out(c) * caps_conv1_out(c);
    for (size_t k = 0; k < n1; k++) s = gc_mix(s, a->a1[k] > 0.0f);
    for (int k = 0; k < NB * c->decoder_hidden1; k++) s = gc_mix(s, a->h1[k] > 0.0f);
    for (int k = 0; k < NB * c->decoder_hidden2; k++) s = gc_mix(s, a->h2[k] > 0.0f);
    for (int k = 0; k < NB * c->num_classes; k++) {
        float l = len[k];
        s = gc_mix(s, (l > MARGIN_M_PLUS) * 2 + (l > MARGIN_M_MINUS));
    }
    if (n->mask == CAPS_MASK_PREDICTED)
        for (int b = 0; b < NB; b++) s = gc_mix(s, (uint64_t)capsnet_predictions(m)[b]);
    if (n->labels2 && n->recon_weight > 0.0f) s = first_digit_relus(s, n);
    *sig = s;
    return loss;
}

/* Where tensor name starts in a copy of an arena. */
static float *tensor_in(float *params, const capsnet *m, const char *name) {
    return params + capsnet_param_offset(m, capsnet_param_find(name));
}

/* W_ij x 30: the default scale suits 1152 children; with 27 the lengths would all be ~0
 * and only the true-class margin would be active. Larger weights exercise every term. */
static void scale_up_caps_w(capsnet *m) {
    float *p = test_arena(m, CAPS_PARAMS), *w = tensor_in(p, m, "caps_w");
    for (size_t k = 0; k < capsnet_param_size(m, capsnet_param_find("caps_w")); k++) w[k] *= 30.0f;
    EXPECT(capsnet_write(m, CAPS_PARAMS, 0, capsnet_num_params(m), p, NULL) == CAPS_OK,
           "write parameters");
    free(p);
}

static void check_network_c(int channels, int routing, int mask, float recon_weight,
                            uint64_t seed, int pair) {
    caps_config c = tiny_config(routing);
    c.in_channels = channels;
    capsnet *m = NULL;
    caps_error err;
    EXPECT(capsnet_create(&m, &c, NB, NULL, &err) == CAPS_OK, "create: %s", err.msg);
    if (!m) return;
    capsnet_init_weights(m, seed);
    scale_up_caps_w(m);
    float *params = test_arena(m, CAPS_PARAMS);
    float *conv1_w = tensor_in(params, m, "conv1_w"), *conv1_b = tensor_in(params, m, "conv1_b");
    float *dec1_b = tensor_in(params, m, "dec1_b"), *dec2_b = tensor_in(params, m, "dec2_b");
    /* Keep every ReLU far from its kink, where finite differences mean nothing: even Conv1
     * channels always on (positive weights on positive pixels, bias 0.5), odd ones always
     * off; decoder units biased to +-0.5, far beyond what the small capsules add. Both
     * branches of each ReLU are exercised, and no step of the check crosses between them. */
    int K1 = c.in_channels * c.conv1_kernel * c.conv1_kernel;
    for (int o = 0; o < c.conv1_channels; o++) {
        float sign = o % 2 ? -1.0f : 1.0f;
        for (int k = 0; k < K1; k++) conv1_w[o * K1 + k] = sign * fabsf(conv1_w[o * K1 + k]);
        conv1_b[o] = 0.5f * sign;
    }
    for (int k = 0; k < c.decoder_hidden1; k++) dec1_b[k] = k % 3 ? 0.5f : -0.5f;
    for (int k = 0; k < c.decoder_hidden2; k++) dec2_b[k] = k % 3 ? 0.5f : -0.5f;
    caps_rng r;
    caps_rng_seed(&r, seed, 7);
    int P = caps_image_pixels(&c);
    float *x = gc_vec((size_t)NB * P);
    /* Pixels near the decoder's first outputs keep the squared error, and with it the
     * loss's float32 rounding, small. */
    gc_fill(x, (size_t)NB * P, 0.3f, 0.7f, &r);
    int labels[NB] = {1, 3, 0}, labels2[NB] = {2, 0, 3};
    float *targets = gc_vec((size_t)2 * NB * P);
    gc_fill(targets, (size_t)2 * NB * P, 0.2f, 0.8f, &r);
    net_ctx n = {m, params, x, labels, mask, recon_weight, pair ? labels2 : NULL, targets,
                 targets + (size_t)NB * P};
    uint64_t sig;
    net_loss(&n, &sig);
    capsnet_zero_grad(m);
    capsnet_backward(m);
    size_t num_params = capsnet_num_params(m);
    float *analytic = test_arena(m, CAPS_GRADS);
    size_t off = 0;
    for (int t = 0; t < CAPS_NUM_PARAM_TENSORS; t++) {
        size_t sz = capsnet_param_size(m, t);
        int decoder = t >= 5;
        char name[64];
        snprintf(name, sizeof name, "C=%d R=%d mask=%d%s %s", channels, routing, mask,
                 pair ? " two digits" : "", capsnet_param_name(t));
        /* Every element: none may fail; most must be checked (not skipped at a kink). */
        gc_result res = gradcheck(name, params + off, sz, analytic + off, net_loss, &n,
                                  1e-2, 2e-2, 1e-3);
        EXPECT(res.failed == 0 && res.checked >= sz * 3 / 4,
               "%s: %zu of %zu failed, %zu skipped (max rel err %.3g)", name, res.failed, sz,
               res.skipped, res.max_rel_err);
        /* The whole tensor along its gradient, where single elements drown in rounding.
         * The decoder's share of the loss at the paper's weight 0.0005 is below float32
         * resolution, and without the decoder its gradient must be exactly 0 (below). */
        if (!decoder || recon_weight >= 1.0f) {
            double along = gradcheck_along(params + off, sz, analytic + off, net_loss, &n,
                                           1e-2);
            EXPECT(along >= 0.0 && along < 1e-2,
                   "%s: directional derivative along the gradient off by %.3g "
                   "(-1: kinks at every step, -2: below rounding)", name, along);
        }
        off += sz;
    }
    if (recon_weight == 0.0f) {
        double dec = 0;
        for (size_t k = capsnet_param_offset(m, capsnet_param_find("dec1_w")); k < num_params; k++)
            dec += fabs(analytic[k]);
        EXPECT(dec == 0.0, "decoder gradients %g without the reconstruction loss", dec);
    }
    free(x), free(targets), free(analytic), free(params);
    capsnet_free(m);
}

static void check_network(int routing, int mask, float recon_weight, uint64_t seed) {
    check_network_c(1, routing, mask, recon_weight, seed, 0);
}

/* A reconstruction weight of 1 (not 0.0005) makes the decoder's gradients large enough to
 * stand out of float32 rounding; the weight is only a factor in the code under test. */
TEST(gradients_three_rounds) { check_network(3, CAPS_MASK_LABEL, 1.0f, 101); }
TEST(gradients_one_round) { check_network(1, CAPS_MASK_LABEL, 1.0f, 102); }
TEST(gradients_two_rounds_predicted_mask) { check_network(2, CAPS_MASK_PREDICTED, 1.0f, 103); }
TEST(gradients_three_rounds_paper_weight) { check_network(3, CAPS_MASK_LABEL, 0.0005f, 105); }
TEST(gradients_without_decoder) { check_network(3, CAPS_MASK_LABEL, 0.0f, 104); }
/* Colour: three input planes through Conv1, and a decoder that reconstructs all three. */
TEST(gradients_colour_input) { check_network_c(3, 3, CAPS_MASK_LABEL, 1.0f, 106, 0); }
/* MultiMNIST (section 6): two classes present in the margin loss, and each digit's
 * capsule decoded and compared with its own target (the decoder runs twice a pass). Seed
 * 109: at seed 107 one PrimaryCaps weight of 432 sits where the loss curves so fast that the
 * step of 1e-2 misses by 0.0014 (numeric -0.00542, analytic -0.00681); halving the step
 * down to 1.25e-3 walks the difference quotient to -0.00682 (measured while writing this). */
TEST(gradients_two_digits) { check_network_c(1, 3, CAPS_MASK_LABEL, 1.0f, 109, 1); }
TEST(gradients_two_digits_without_decoder) {
    check_network_c(1, 3, CAPS_MASK_LABEL, 0.0f, 108, 1);
}

/* Training masks by the TRUE label, test by the PREDICTION: the decoder input holds the
 * capsule of that class and nothing else. */
TEST(decoder_mask_label_in_training_prediction_at_test) {
    caps_config c = tiny_config(3);
    capsnet *m = NULL;
    caps_error err;
    EXPECT(capsnet_create(&m, &c, NB, NULL, &err) == CAPS_OK, "create: %s", err.msg);
    if (!m) return;
    capsnet_init_weights(m, 5);
    caps_rng r;
    caps_rng_seed(&r, 5, 5);
    int P = caps_image_pixels(&c), J = c.num_classes, E = c.digit_dim;
    float *x = gc_vec((size_t)NB * P);
    gc_fill(x, (size_t)NB * P, 0, 1, &r);
    int labels[NB];
    for (int mask = 0; mask < 2; mask++) {
        capsnet_forward(m, x, NULL, NB, CAPS_MASK_PREDICTED, 0.0005f);
        /* Labels that differ from every prediction. */
        for (int b = 0; b < NB; b++) labels[b] = (capsnet_predictions(m)[b] + 1) % J;
        capsnet_forward(m, x, labels, NB, mask, 0.0005f);
        const float *v = capsnet_digit_caps(m);
        for (int b = 0; b < NB; b++) {
            int want = mask == CAPS_MASK_LABEL ? labels[b] : capsnet_predictions(m)[b];
            int bad = 0;
            for (int j = 0; j < J; j++)
                for (int e = 0; e < E; e++) {
                    float got = m->bs->acts.masked[(b * J + j) * E + e];
                    bad += got != (j == want ? v[(b * J + j) * E + e] : 0.0f);
                }
            EXPECT(bad == 0, "mask %d image %d: decoder input is not capsule %d alone", mask, b,
                   want);
        }
    }
    free(x);
    capsnet_free(m);
}

/* One seed, one set of weights; another seed, other weights. */
TEST(initialisation_is_seeded) {
    caps_config c = tiny_config(3);
    capsnet *a = NULL, *b = NULL;
    capsnet_create(&a, &c, 1, NULL, NULL);
    capsnet_create(&b, &c, 1, NULL, NULL);
    EXPECT(a && b, "create failed");
    if (!a || !b) return;
    size_t bytes = capsnet_num_params(a) * sizeof(float);
    capsnet_init_weights(a, 9);
    capsnet_init_weights(b, 9);
    float *pa = test_arena(a, CAPS_PARAMS), *pb = test_arena(b, CAPS_PARAMS);
    EXPECT(memcmp(pa, pb, bytes) == 0, "same seed, different weights");
    free(pb);
    capsnet_init_weights(b, 10);
    pb = test_arena(b, CAPS_PARAMS);
    EXPECT(memcmp(pa, pb, bytes) != 0, "different seeds, same weights");
    free(pa), free(pb);
    capsnet_free(a);
    capsnet_free(b);
}

/* The paper's Figure 4: the unshifted column is the image's own reconstruction, shifted
 * columns differ from it, and only the chosen capsule's dimension moves. */
TEST(perturbation_figure_columns) {
    caps_config c = tiny_config(3);
    capsnet *m = NULL;
    caps_error err;
    EXPECT(capsnet_create(&m, &c, 4, NULL, &err) == CAPS_OK, "create: %s", err.msg);
    if (!m) return;
    capsnet_init_weights(m, 8);
    scale_up_caps_w(m);
    caps_rng r;
    caps_rng_seed(&r, 8, 8);
    int P = caps_image_pixels(&c), E = c.digit_dim, steps = 5;
    float *x = gc_vec((size_t)P), *out = gc_vec((size_t)E * steps * P), *recon = gc_vec((size_t)P);
    gc_fill(x, (size_t)P, 0, 1, &r);
    const float deltas[5] = {-0.2f, -0.1f, 0.0f, 0.1f, 0.2f};
    capsnet_forward(m, x, NULL, 1, CAPS_MASK_PREDICTED, 0.0005f);
    int pred = capsnet_predictions(m)[0];
    memcpy(recon, capsnet_reconstruction(m), (size_t)P * sizeof(float));
    int cls = capsnet_perturb(m, out, x, -1, deltas, steps);
    EXPECT(cls == pred, "perturbed class %d, predicted %d", cls, pred);
    int bad_mid = 0, same = 0;
    for (int d = 0; d < E; d++)
        for (int s = 0; s < steps; s++) {
            const float *img = out + ((size_t)d * steps + s) * P;
            double diff = 0;
            for (int p = 0; p < P; p++) diff = fmax(diff, fabs(img[p] - recon[p]));
            if (s == 2) bad_mid += diff > 1e-6;
            else same += diff == 0.0;
        }
    EXPECT(bad_mid == 0, "%d unshifted columns differ from the reconstruction", bad_mid);
    EXPECT(same == 0, "%d shifted columns equal the reconstruction", same);
    /* Another class's capsule: the figure changes (the decoder sees that capsule). */
    int other = (pred + 1) % c.num_classes;
    float *out2 = gc_vec((size_t)E * steps * P);
    EXPECT(capsnet_perturb(m, out2, x, other, deltas, steps) == other, "class not honoured");
    EXPECT(memcmp(out, out2, (size_t)E * steps * P * sizeof(float)) != 0,
           "perturbing another class's capsule gave the same figure");
    free(x), free(out), free(out2), free(recon);
    capsnet_free(m);
}

/* The model's kernels option: the reference Procedure 1 (every u_hat in memory), the fused
 * layer in plain C and with its vector kernels compute the same network, forward and
 * backward, at the tiny shape and at the paper's J = 10, E = 16, D = 8 (whose specialised
 * kernels the tiny shape does not reach). */
static void check_kernels_agree(caps_config c, int B) {
    const int kernels[3] = {CAPS_KERNELS_REFERENCE, CAPS_KERNELS_PORTABLE, CAPS_KERNELS_FAST};
    float *len[3] = {0}, *grad[3] = {0};
    float loss[3] = {0};
    size_t n = caps_num_params(&c);
    int J = c.num_classes, P = caps_image_pixels(&c);
    caps_rng r;
    caps_rng_seed(&r, 31, 31);
    float *x = gc_vec((size_t)B * P);
    gc_fill(x, (size_t)B * P, 0, 1, &r);
    int labels[8];
    for (int b = 0; b < B; b++) labels[b] = b % J;
    for (int k = 0; k < 3; k++) {
        capsnet *m = NULL;
        caps_error err;
        caps_options opt = {.backend = "cpu", .kernels = kernels[k]};
        EXPECT(capsnet_create(&m, &c, B, &opt, &err) == CAPS_OK, "create: %s", err.msg);
        if (!m) break;
        capsnet_init_weights(m, 77);
        scale_up_caps_w(m);
        capsnet_zero_grad(m);
        loss[k] = capsnet_forward(m, x, labels, B, CAPS_MASK_LABEL, 0.5f);
        capsnet_backward(m);
        len[k] = gc_vec((size_t)B * J);
        memcpy(len[k], capsnet_lengths(m), (size_t)B * J * sizeof(float));
        grad[k] = test_arena(m, CAPS_GRADS);
        capsnet_free(m);
    }
    for (int k = 1; k < 3 && grad[k]; k++) {
        EXPECT(test_close(loss[k], loss[0], 1e-5, 0.0), "kernels %d: loss %.9g, reference %.9g",
               kernels[k], loss[k], loss[0]);
        int bad = 0;
        for (int i = 0; i < B * J; i++) bad += !test_close(len[k][i], len[0][i], 1e-5, 1e-7);
        EXPECT(bad == 0, "kernels %d: %d lengths differ from the reference", kernels[k], bad);
        double gmax = 0;
        for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(grad[0][i]));
        bad = 0;
        for (size_t i = 0; i < n; i++) bad += !test_close(grad[k][i], grad[0][i], 1e-3, 1e-5 * gmax);
        EXPECT(bad == 0, "kernels %d: %d of %zu gradients differ from the reference", kernels[k],
               bad, n);
    }
    for (int k = 0; k < 3; k++) free(len[k]), free(grad[k]);
    free(x);
}

TEST(kernels_reference_portable_fast_agree) {
    check_kernels_agree(tiny_config(3), NB);
    /* The paper's capsule shapes on a small image: 12x12, Conv1 8 @ 5x5 -> 8x8, PrimaryCaps
     * 4 types x 8D @ 3x3 stride 2 -> 3x3, 10 classes x 16D, decoder 16 -> 32 -> 144. */
    caps_config paper = {12, 1, 8, 5, 1, 4, 8, 3, 2, 10, 16, 3, 16, 32, CAPS_ROUTING_DYNAMIC};
    check_kernels_agree(paper, 5);
}

TEST(unknown_backend_and_kernels_refused) {
    caps_config c = tiny_config(3);
    capsnet *m = NULL;
    caps_error err;
    caps_options tpu = {.backend = "tpu"};
    EXPECT(capsnet_create(&m, &c, 1, &tpu, &err) == CAPS_ERR_ARG && !m &&
               strstr(err.msg, "unknown backend 'tpu' (expected one of: cpu"),
           "backend tpu: %s", err.msg);
    caps_options bad = {.kernels = 7};
    EXPECT(capsnet_create(&m, &c, 1, &bad, &err) == CAPS_ERR_ARG && !m &&
               strstr(err.msg, "kernels out of range"),
           "kernels 7: %s", err.msg);
    caps_options cpu = {.backend = "cpu"};
    EXPECT(capsnet_create(&m, &c, 1, &cpu, &err) == CAPS_OK && m &&
               strcmp(capsnet_backend(m), "cpu") == 0,
           "cpu: %s", err.msg);
    capsnet_free(m);
}

int main(void) {
    RUN(mnist_shapes_and_parameter_count);
    RUN(bad_configs_are_rejected);
    RUN(gradients_three_rounds);
    RUN(gradients_one_round);
    RUN(gradients_two_rounds_predicted_mask);
    RUN(gradients_three_rounds_paper_weight);
    RUN(gradients_without_decoder);
    RUN(gradients_colour_input);
    RUN(gradients_two_digits);
    RUN(gradients_two_digits_without_decoder);
    RUN(decoder_mask_label_in_training_prediction_at_test);
    RUN(initialisation_is_seeded);
    RUN(perturbation_figure_columns);
    RUN(kernels_reference_portable_fast_agree);
    RUN(unknown_backend_and_kernels_refused);
    return TEST_SUMMARY();
}
