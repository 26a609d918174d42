/*
 * test_reference.c: the whole network against an independent PyTorch implementation.
 *
 * tools/torch_reference.py builds the Capsule Network of Sabour et al. (2017) in PyTorch,
 * float64, at a small configuration whose dimensions all differ (14x14 image, Conv1 6 @ 5x5,
 * PrimaryCaps 4 x 3D @ 3x3 stride 2 -> 64 capsules, 5 classes x 6D, 3 routing rounds,
 * decoder 12 -> 20 -> 196, batch 4), and writes tests/fixtures/reference.txt: the inputs,
 * the weights (float32 values), the activations, the losses, every parameter's gradient at
 * reconstruction weights 0.0005 and 0.5, a test-mode pass, and 5 Adam steps. This test
 * loads the same weights into the C model and compares everything.
 *
 * The fixture is read from tests/fixtures/ (tests run from the repository root), or from
 * $CAPS_FIXTURE_DIR. Regenerate it with
 *   /usr/bin/python3 tools/torch_reference.py tests/fixtures/reference.txt
 *
 * Tolerances. The reference is float64 and the C model float32 (unit roundoff 6e-8), so
 * an O(1) value that is a sum of a few hundred rounded terms is good to ~1e-6 relative:
 * - forward values: |a - b| <= 1e-5 max(|a|, |b|) + 1e-6 max_k |ref_k| over the tensor.
 *   The floor is for values near 0: such a value is a sum that cancels (up to 486 terms in
 *   the PrimaryCaps convolution), so its absolute error is that of the terms, of the
 *   tensor's scale, not of the result. The measured worst is ~1.3e-7 of the scale (float32
 *   unit roundoff 6e-8 times a few), so 1e-6 leaves a factor ~8 and is still 10 times below
 *   the relative tolerance of the tensor's large elements.
 * - gradients: |a - b| <= 1e-4 max(|a|, |b|) + 1e-5 max_k |g_k| over the tensor. A
 *   gradient element is a long sum of terms of either sign (over images, pixels, routing
 *   rounds) that cancels; its absolute error scales with the tensor's largest terms, not
 *   with itself, so small elements get a floor relative to the tensor's largest gradient.
 * - losses: 1e-5 relative (forward) and 1e-4 relative over the Adam steps.
 * - parameters after 5 Adam steps: see adam_five_steps.
 */
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "fixture.h"
#include "layers.h"
#include "model.h"
#include "test.h"
#include "test_model.h"

#define FWD_RTOL 1e-5
#define FWD_FLOOR 1e-6 /* times the tensor's largest reference value */
#define GRAD_RTOL 1e-4
#define GRAD_FLOOR 1e-5 /* times the tensor's largest reference gradient */
#define LOSS_RTOL 1e-5
#define ADAM_LOSS_RTOL 1e-4
/* Parameters after 5 Adam steps: |a - b| <= ADAM_PARAM_RTOL max(|a|, |b|) + ADAM_PARAM_ATOL.
 * The relative part is float32 rounding of the parameter (a few ulps). The absolute part
 * bounds the difference of the accumulated updates: Adam moves an element by about lr per
 * step whatever the gradient's size, lr * m / sqrt(v) being scale-free, so a gradient with
 * relative error d moves it by at most about lr * d differently. Over 5 steps, with d up to
 * 1e-3 for the smallest gradients that are not exactly 0, that is 5 * 1e-3 * 1e-3 = 5e-6
 * (measured: 2.4e-7). It is 200 times below lr, the size of one step, so a missing, extra
 * or mis-scaled step fails. */
#define ADAM_PARAM_RTOL 1e-6
#define ADAM_PARAM_ATOL 5e-6
#define ADAM_STEPS 5

static fixture fx;
static int fx_loaded;
static char fx_path[4096];
static caps_config cfg;
static int nb; /* images in the fixture's batch */

/* 1 when the fixture is loaded; otherwise the current test fails saying why. */
static int have_fixture(void) {
    EXPECT(fx_loaded, "the PyTorch fixture %s could not be loaded (run the tests from the "
                      "repository root or set CAPS_FIXTURE_DIR; regenerate it with "
                      "/usr/bin/python3 tools/torch_reference.py %s)", fx_path, fx_path);
    return fx_loaded;
}

/* The fixture tensor called name with n elements, or NULL after a failed EXPECT. */
static const float *need(const char *name, size_t n) {
    const fx_tensor *t = fixture_get(&fx, name);
    EXPECT(t != NULL, "fixture has no tensor '%s'", name);
    if (!t) return NULL;
    EXPECT(t->n == n, "fixture tensor '%s' has %zu values (expected %zu)", name, t->n, n);
    return t->n == n ? t->data : NULL;
}

static float need_scalar(const char *name) {
    const float *p = need(name, 1);
    return p ? *p : NAN;
}

/* Compares got[n] with the fixture tensor name: |a - b| <= rtol max(|a|, |b|) + atol, with
 * atol = abs_floor + rel_floor * max_k |want_k|. One EXPECT naming the tensor, the worst
 * element (largest error over tolerance) and both values. Returns the largest |a - b|. */
static double compare(const char *name, const float *got, size_t n, double rtol,
                      double abs_floor, double rel_floor) {
    const float *want = need(name, n);
    if (!want) return INFINITY;
    double wmax = 0.0;
    for (size_t k = 0; k < n; k++) wmax = fabs(want[k]) > wmax ? fabs(want[k]) : wmax;
    double atol = abs_floor + rel_floor * wmax;
    size_t worst = 0, bad = 0;
    double worst_ratio = -1.0, max_err = 0.0, max_rel = 0.0;
    for (size_t k = 0; k < n; k++) {
        double a = got[k], b = want[k];
        double err = fabs(a - b), mag = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
        double ratio = isfinite(a) ? err / (atol + rtol * mag) : INFINITY;
        if (!(ratio <= 1.0)) bad++;
        if (!(ratio <= worst_ratio)) worst_ratio = ratio, worst = k;
        if (err > max_err) max_err = err;
        if (mag > 0 && err / mag > max_rel) max_rel = err / mag;
    }
    EXPECT(bad == 0,
           "%s: %zu of %zu elements differ; worst [%zu]: C %.9g, PyTorch %.9g "
           "(|diff| %.3g, allowed %.3g)", name, bad, n, worst, got[worst], want[worst],
           fabs((double)got[worst] - want[worst]),
           atol + rtol * fmax(fabs(got[worst]), fabs(want[worst])));
    if (getenv("CAPS_TEST_VERBOSE"))
        fprintf(stderr, "    %-26s n %6zu  max|ref| %9.3g  max|diff| %9.3g  max rel %9.3g  "
                        "worst/tol %.3f\n", name, n, wmax, max_err, max_rel, worst_ratio);
    return max_err;
}

static void compare_forward(const char *name, const float *got, size_t n) {
    compare(name, got, n, FWD_RTOL, 0.0, FWD_FLOOR);
}

static void compare_scalar(const char *name, double got, double rtol) {
    float want = need_scalar(name);
    EXPECT(test_close(got, want, rtol, 0.0), "%s: C %.9g, PyTorch %.9g (rel diff %.3g)", name,
           got, want, fabs(got - want) / fabs(want));
}

/* A model of the fixture's configuration holding the fixture's initial weights. */
static capsnet *make_model(void) {
    capsnet *m = NULL;
    caps_error err;
    EXPECT(capsnet_create(&m, &cfg, nb, NULL, &err) == CAPS_OK, "capsnet_create: %s", err.msg);
    if (!m) return NULL;
    for (int t = 0; t < CAPS_NUM_PARAM_TENSORS; t++) {
        size_t n = capsnet_param_size(m, t);
        const float *w = need(capsnet_param_name(t), n);
        if (!w || capsnet_write_tensor(m, CAPS_PARAMS, capsnet_param_name(t), w, n, &err)) {
            EXPECT(!w, "write %s: %s", capsnet_param_name(t), err.msg);
            capsnet_free(m);
            return NULL;
        }
    }
    return m;
}

static const float *images(void) {
    return need("x", (size_t)nb * caps_image_pixels(&cfg));
}

/* Labels [nb], or NULL after a failed EXPECT. */
static int *labels_of_fixture(int *labels) {
    const float *l = need("labels", (size_t)nb);
    if (!l) return NULL;
    for (int b = 0; b < nb; b++) {
        labels[b] = (int)l[b];
        EXPECT(labels[b] >= 0 && labels[b] < cfg.num_classes, "label %d out of range", labels[b]);
        if (labels[b] < 0 || labels[b] >= cfg.num_classes) return NULL;
    }
    return labels;
}

/* ---- tests */

/* The fixture is there, its configuration is valid, every tensor has the model's size. */
TEST(fixture_matches_the_model) {
    if (!have_fixture()) return;
    capsnet *m = make_model();
    EXPECT(m != NULL, "cannot build the model from the fixture");
    if (!m) return;
    EXPECT(images() != NULL, "no images");
    int labels[64];
    EXPECT(labels_of_fixture(labels) != NULL, "no labels");
    capsnet_free(m);
}

/* Training-mode forward (decoder masked by the true label): every activation and loss. */
TEST(forward_training_mode) {
    if (!have_fixture()) return;
    capsnet *m = make_model();
    const float *x = images();
    int labels[64];
    if (!m || !x || !labels_of_fixture(labels)) {
        capsnet_free(m);
        return;
    }
    int I = caps_num_primary(&cfg), J = cfg.num_classes, E = cfg.digit_dim;
    int D = cfg.primary_dim, G = caps_primary_grid(&cfg), R = cfg.routing_iters;
    int TD = cfg.primary_types * D, P = caps_image_pixels(&cfg);
    size_t B = nb;
    float rw = need_scalar("train_lo.recon_weight");
    float loss = capsnet_forward(m, x, labels, nb, CAPS_MASK_LABEL, rw);
    /* The library keeps the convolution output [G][B][G][T*D] (conv2d.c); the fixture has
     * PyTorch's [B][T*D][G][G]. */
    float *prim_nchw = malloc(B * TD * G * G * sizeof(float));
    if (prim_nchw) {
        conv_act_to_nchw(prim_nchw, m->bs->acts.prim, nb, TD, G, G, 1);
        compare_forward("fwd.prim", prim_nchw, B * TD * G * G);
        free(prim_nchw);
    }
    const float *u = m->bs->acts.u;
    compare_forward("fwd.u", u, B * I * D);
    /* The fused DigitCaps layer keeps neither the prediction vectors nor the parents of the
     * earlier rounds: make them with the plain Procedure 1 from the model's u and W
     * (test_digit_caps.c holds the fused layer equal to it, round by round). */
    size_t nW = capsnet_param_size(m, capsnet_param_find("caps_w"));
    float *u_hat = malloc(B * I * J * E * sizeof(float)), *W = malloc(nW * sizeof(float));
    float *v = malloc((size_t)R * B * J * E * sizeof(float));
    float *c = malloc((size_t)R * B * I * J * sizeof(float)), *s = malloc((size_t)R * B * J * E * sizeof(float));
    float *n2 = malloc((size_t)R * B * J * sizeof(float)), *lg = malloc(B * I * J * sizeof(float));
    if (u_hat && W && v && c && s && n2 && lg &&
        capsnet_read_tensor(m, CAPS_PARAMS, "caps_w", W, nW, NULL) == CAPS_OK) {
        predict_forward(u_hat, u, W, nb, I, J, E, D);
        compare_forward("fwd.u_hat", u_hat, B * I * J * E);
        routing_forward(v, c, s, n2, lg, u_hat, nb, I, J, E, R);
        compare_forward("fwd.route_v", v, (size_t)R * B * J * E);
    } else {
        EXPECT(0, "out of memory for the prediction vectors");
    }
    free(u_hat), free(W), free(v), free(c), free(s), free(n2), free(lg);
    compare_forward("fwd.v", capsnet_digit_caps(m), B * J * E);
    compare_forward("fwd.lengths", capsnet_lengths(m), B * J);
    compare_forward("fwd.recon", capsnet_reconstruction(m), B * P);
    const float *pred = need("fwd.pred", B);
    for (int b = 0; pred && b < nb; b++)
        EXPECT(capsnet_predictions(m)[b] == (int)pred[b], "fwd.pred[%d]: C %d, PyTorch %d", b,
               capsnet_predictions(m)[b], (int)pred[b]);
    compare_scalar("train_lo.margin_loss", capsnet_margin_loss(m), LOSS_RTOL);
    compare_scalar("train_lo.recon_loss", capsnet_recon_loss(m), LOSS_RTOL);
    compare_scalar("train_lo.loss", loss, LOSS_RTOL);
    capsnet_free(m);
}

/* Backward after a training-mode forward at reconstruction weight `tag`.recon_weight. */
static void check_gradients(const char *tag) {
    if (!have_fixture()) return;
    capsnet *m = make_model();
    const float *x = images();
    int labels[64];
    if (!m || !x || !labels_of_fixture(labels)) {
        capsnet_free(m);
        return;
    }
    char name[96];
    snprintf(name, sizeof name, "%s.recon_weight", tag);
    float rw = need_scalar(name);
    float loss = capsnet_forward(m, x, labels, nb, CAPS_MASK_LABEL, rw);
    snprintf(name, sizeof name, "%s.loss", tag);
    compare_scalar(name, loss, LOSS_RTOL);
    snprintf(name, sizeof name, "%s.recon_loss", tag);
    compare_scalar(name, capsnet_recon_loss(m), LOSS_RTOL);
    capsnet_zero_grad(m);
    capsnet_backward(m);
    float *g = test_arena(m, CAPS_GRADS);
    for (int t = 0; t < CAPS_NUM_PARAM_TENSORS; t++) {
        size_t n = capsnet_param_size(m, t);
        snprintf(name, sizeof name, "%s.grad_%s", tag, capsnet_param_name(t));
        compare(name, g + capsnet_param_offset(m, t), n, GRAD_RTOL, 0.0, GRAD_FLOOR);
    }
    free(g);
    capsnet_free(m);
}

TEST(gradients_paper_recon_weight) { check_gradients("train_lo"); }
/* Weight 0.5: the decoder's gradients, and its share of the encoder's, well above rounding. */
TEST(gradients_large_recon_weight) { check_gradients("train_hi"); }

/* Test mode: the decoder sees the longest capsule, with and without labels. The fixture's
 * predictions all differ from the labels, so this reconstruction differs from training's. */
TEST(forward_test_mode) {
    if (!have_fixture()) return;
    capsnet *m = make_model();
    const float *x = images();
    int labels[64];
    if (!m || !x || !labels_of_fixture(labels)) {
        capsnet_free(m);
        return;
    }
    size_t P = caps_image_pixels(&cfg);
    float rw = need_scalar("test.recon_weight");
    float loss = capsnet_forward(m, x, labels, nb, CAPS_MASK_PREDICTED, rw);
    compare_forward("test.recon", capsnet_reconstruction(m), (size_t)nb * P);
    compare_scalar("test.margin_loss", capsnet_margin_loss(m), LOSS_RTOL);
    compare_scalar("test.recon_loss", capsnet_recon_loss(m), LOSS_RTOL);
    compare_scalar("test.loss", loss, LOSS_RTOL);
    /* Without labels, as at inference: the same predictions and reconstruction. */
    capsnet_forward(m, x, NULL, nb, CAPS_MASK_PREDICTED, rw);
    const float *pred = need("fwd.pred", (size_t)nb);
    int differs = 0;
    for (int b = 0; pred && b < nb; b++) {
        EXPECT(capsnet_predictions(m)[b] == (int)pred[b], "test pred[%d]: C %d, PyTorch %d", b,
               capsnet_predictions(m)[b], (int)pred[b]);
        differs += (int)pred[b] != labels[b];
    }
    EXPECT(differs > 0, "every prediction equals its label: the fixture does not test the mask");
    compare_forward("test.recon", capsnet_reconstruction(m), (size_t)nb * P);
    capsnet_free(m);
}

/* Five Adam steps on the same batch, as torch.optim.Adam takes them: the loss before each
 * step, the loss after the last, and every parameter at the end. */
TEST(adam_five_steps) {
    if (!have_fixture()) return;
    capsnet *m = make_model();
    const float *x = images();
    int labels[64];
    const float *want = need("adam.losses", ADAM_STEPS);
    if (!m || !x || !want || !labels_of_fixture(labels)) {
        capsnet_free(m);
        return;
    }
    caps_adam hp;
    caps_adam_default(&hp);
    EXPECT(hp.lr == need_scalar("adam.lr") && hp.beta1 == need_scalar("adam.beta1") &&
               hp.beta2 == need_scalar("adam.beta2") && hp.eps == need_scalar("adam.eps"),
           "caps_adam_default (%g %g %g %g) differs from the fixture's torch.optim.Adam", hp.lr,
           hp.beta1, hp.beta2, hp.eps);
    float rw = need_scalar("adam.recon_weight");
    EXPECT(capsnet_adam_t(m) == 0, "a new model has taken %lld Adam steps",
           (long long)capsnet_adam_t(m));
    for (int s = 0; s < ADAM_STEPS; s++) {
        capsnet_zero_grad(m);
        float loss = capsnet_forward(m, x, labels, nb, CAPS_MASK_LABEL, rw);
        EXPECT(test_close(loss, want[s], ADAM_LOSS_RTOL, 0.0),
               "adam.losses[%d] (before step %d): C %.9g, PyTorch %.9g (rel diff %.3g)", s, s + 1,
               loss, want[s], fabs(loss - want[s]) / fabs(want[s]));
        capsnet_backward(m);
        capsnet_adam_step(m, &hp, hp.lr);
    }
    float final = capsnet_forward(m, x, labels, nb, CAPS_MASK_LABEL, rw);
    compare_scalar("adam.final_loss", final, ADAM_LOSS_RTOL);
    float *p = test_arena(m, CAPS_PARAMS);
    char name[96];
    for (int t = 0; t < CAPS_NUM_PARAM_TENSORS; t++) {
        size_t n = capsnet_param_size(m, t);
        snprintf(name, sizeof name, "adam.%s", capsnet_param_name(t));
        compare(name, p + capsnet_param_offset(m, t), n, ADAM_PARAM_RTOL, ADAM_PARAM_ATOL, 0.0);
    }
    free(p);
    capsnet_free(m);
}

/* Loads the fixture and reads its configuration; failures surface in every test. */
static void load_fixture(void) {
    const char *dir = getenv("CAPS_FIXTURE_DIR");
    snprintf(fx_path, sizeof fx_path, "%s/reference.txt", dir && *dir ? dir : "tests/fixtures");
    if (fixture_load(&fx, fx_path) != 0) return;
    const fx_tensor *ct = fixture_get(&fx, "config"), *l = fixture_get(&fx, "labels");
    if (!ct || ct->n != CAPS_CONFIG_FIELDS || !l || l->n < 1 || l->n > 64) {
        fprintf(stderr, "%s: no 'config' of %d values or no 'labels' of 1..64 values\n",
                fx_path, CAPS_CONFIG_FIELDS);
        return;
    }
    const float *c = ct->data;
    int *f[CAPS_CONFIG_FIELDS] = {
        &cfg.image_size,     &cfg.in_channels,    &cfg.conv1_channels, &cfg.conv1_kernel,
        &cfg.conv1_stride,   &cfg.primary_types,  &cfg.primary_dim,    &cfg.primary_kernel,
        &cfg.primary_stride, &cfg.num_classes,    &cfg.digit_dim,      &cfg.routing_iters,
        &cfg.decoder_hidden1, &cfg.decoder_hidden2};
    for (int k = 0; k < CAPS_CONFIG_FIELDS; k++) *f[k] = (int)c[k];
    nb = (int)l->n;
    caps_error err;
    if (caps_config_check(&cfg, &err) != CAPS_OK) {
        fprintf(stderr, "%s: bad config: %s\n", fx_path, err.msg);
        return;
    }
    fx_loaded = 1;
}

int main(void) {
    load_fixture();
    RUN(fixture_matches_the_model);
    RUN(forward_training_mode);
    RUN(gradients_paper_recon_weight);
    RUN(gradients_large_recon_weight);
    RUN(forward_test_mode);
    RUN(adam_five_steps);
    fixture_free(&fx);
    return TEST_SUMMARY();
}
