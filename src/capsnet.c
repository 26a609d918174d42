/*
 * capsnet.c: the network of Sabour, Frosst & Hinton (2017), section 4, as a sequence of
 * layers run by a backend (backend.h): create, initialisation, parameter copies, forward,
 * backward, Adam step, the per-layer clock.
 *
 *   x [C][H][W] -> Conv1 (C1 @ K1xK1, stride S, ReLU)                      [C1][S1][S1]
 *     -> PrimaryCaps conv (T*D @ K2xK2, stride 2) read as I capsules      [I][D], squash
 *     -> DigitCaps: prediction vectors u_hat_{j|i} = W_ij u_i, routing    v [J][E]
 *     -> lengths |v_j| = class scores -> margin loss (eq. 4)
 *     -> mask (true class in training, predicted at test) -> decoder
 *        FC H1 ReLU -> FC H2 ReLU -> FC P sigmoid -> reconstruction loss x 0.0005
 *   Loss = mean over the batch of (margin + 0.0005 * sum of squared pixel errors).
 *
 * This file knows the order of the layers and what is the same on every machine (the
 * predictions, the batch means, the step count); the backend holds the memory and runs
 * each layer. Dimension letters as in dims.h.
 */
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#include "digit_caps.h"
#include "gemm.h"
#include "model.h"
#include "util.h"

/* Initial W_ij ~ N(0, CAPS_W_INIT_STD^2). With c_ij = 1/J in the first round, s_j sums
 * I = 1152 predictions. N(0, 1) weights (a common choice) make every |v_j| start near 1,
 * in the flat part of the squash where its gradient vanishes, with all ten absent-class
 * margin terms active: on MNIST the loss stays at 3.6 and accuracy at chance (measured:
 * 30 steps of batch 100 give 11% test accuracy with std 1.0 or 0.3, 65% with 0.1, 71%
 * with 0.05, 76% with 0.03, 68% with 0.02, 62% with 0.01). With 0.03 every class starts
 * short (|v_j| ~ 0.002), only the true class's margin term pulls, and it pulls each
 * capsule towards its own class from the first step. */
#define CAPS_W_INIT_STD 0.03f

/* The backends of this build, the default first. */
static const caps_backend *const backends[] = {
    &caps_backend_cpu,
#ifdef CAPS_WITH_CUDA
    &caps_backend_cuda,
#endif
};
#define NUM_BACKENDS ((int)(sizeof backends / sizeof backends[0]))

const char *caps_backends(void) {
#ifdef CAPS_WITH_CUDA
    return "cpu cuda";
#else
    return "cpu";
#endif
}

const char *capsnet_version(void) { return CAPSNET_VERSION_STRING; }

/* ------------------------------------------------------------------------ create / free */

static const caps_backend *find_backend(const char *name) {
    if (!name) return backends[0];
    for (int k = 0; k < NUM_BACKENDS; k++)
        if (strcmp(backends[k]->name, name) == 0) return backends[k];
    return NULL;
}

int capsnet_create(capsnet **out, const caps_config *cfg, int max_batch, const caps_options *opt,
                   caps_error *err) {
    *out = NULL;
    caps_options defaults = {NULL, CAPS_KERNELS_FAST, 0};
    if (!opt) opt = &defaults;
    int rc = caps_config_check(cfg, err);
    if (rc) return rc;
    if (max_batch < 1 || max_batch > 65536)
        return caps_fail(err, CAPS_ERR_ARG, "batch size out of range (expected 1..65536, got %d)",
                         max_batch);
    const caps_backend *be = find_backend(opt->backend);
    if (!be) {
        caps_fail(err, CAPS_ERR_ARG, "unknown backend '%s' (expected one of: %s)", opt->backend,
                  caps_backends());
        if (strcmp(opt->backend, "cuda") == 0)
            caps_hint(err, "this capsnet was built without CUDA; build it with make CUDA=1");
        return CAPS_ERR_ARG;
    }
    if (opt->kernels < CAPS_KERNELS_FAST || opt->kernels > CAPS_KERNELS_REFERENCE)
        return caps_fail(err, CAPS_ERR_ARG, "kernels out of range (expected %d..%d, got %d)",
                         CAPS_KERNELS_FAST, CAPS_KERNELS_REFERENCE, opt->kernels);
    capsnet *m = caps_alloc(1, sizeof *m);
    if (!m) return caps_fail(err, CAPS_ERR_MEMORY, "out of memory allocating the model");
    m->cfg = *cfg;
    caps_dims_of(&m->dims, cfg);
    m->max_batch = max_batch;
    m->be = be;
    caps_param_sizes(m->param_sizes, &m->dims);
    for (int k = 0; k < CAPS_NUM_PARAM_TENSORS; k++) {
        m->param_offsets[k] = m->num_params;
        m->num_params += m->param_sizes[k];
    }
    size_t JE = (size_t)m->dims.J * m->dims.E;
    m->labels = caps_alloc(max_batch, sizeof(int));
    m->labels2 = caps_alloc(max_batch, sizeof(int));
    m->cls = caps_alloc(max_batch, sizeof(int));
    m->pred = caps_alloc(max_batch, sizeof(int));
    m->margin = caps_alloc(max_batch, sizeof(float));
    m->sse = caps_alloc(max_batch, sizeof(float));
    m->sse2 = caps_alloc(max_batch, sizeof(float));
    m->target = caps_alloc((size_t)max_batch * m->dims.P, sizeof(float));
    m->vbatch = caps_alloc(((size_t)max_batch + 1) * JE, sizeof(float));
    if (!m->labels || !m->labels2 || !m->cls || !m->pred || !m->margin || !m->sse || !m->sse2 ||
        !m->target || !m->vbatch) {
        capsnet_free(m);
        return caps_fail(err, CAPS_ERR_MEMORY,
                         "out of memory allocating the model for batch %d", max_batch);
    }
    rc = be->create(&m->bs, &m->dims, m->param_sizes, max_batch, opt, err);
    if (rc) {
        capsnet_free(m);
        return rc;
    }
    *out = m;
    return CAPS_OK;
}

void capsnet_free(capsnet *m) {
    if (!m) return;
    if (m->bs) m->be->destroy(m->bs);
    free(m->labels);
    free(m->labels2);
    free(m->cls);
    free(m->pred);
    free(m->margin);
    free(m->sse);
    free(m->sse2);
    free(m->target);
    free(m->vbatch);
    caps_class_names_free(m->cfg.num_classes, m->class_names);
    free(m);
}

/* ------------------------------------------------------------------------ initialisation */

/* How one tensor starts: PyTorch's default for nn.Conv2d and nn.Linear, kaiming_uniform
 * (a = sqrt(5)) on the weights and the same bound on the biases, which is
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)); or, for W_ij, N(0, CAPS_W_INIT_STD^2). */
typedef struct {
    size_t fan_in; /* 0: the normal distribution */
} init_rule;

/* Values are drawn in tensor order, element by element, a chunk at a time, and written
 * through the backend: the same seed gives the same weights on every backend. */
#define INIT_CHUNK 65536

void capsnet_init_weights(capsnet *m, uint64_t seed) {
    const caps_dims *d = &m->dims;
    size_t fan1 = (size_t)d->C * d->K1 * d->K1, fan2 = (size_t)d->C1 * d->K2 * d->K2;
    size_t JE = (size_t)d->J * d->E;
    const init_rule rules[CAPS_NUM_PARAM_TENSORS] = {
        {fan1}, {fan1}, {fan2}, {fan2}, {0}, {JE}, {JE},
        {(size_t)d->H1}, {(size_t)d->H1}, {(size_t)d->H2}, {(size_t)d->H2}};
    float *buf = caps_alloc(INIT_CHUNK, sizeof(float));
    CAPS_ASSERT(buf); /* 256 KB: a model of any size needed far more */
    caps_rng r;
    caps_rng_seed(&r, seed, 0x5eed);
    for (int t = 0; t < CAPS_NUM_PARAM_TENSORS; t++) {
        float bound = rules[t].fan_in ? 1.0f / sqrtf((float)rules[t].fan_in) : 0.0f;
        for (size_t k0 = 0; k0 < m->param_sizes[t]; k0 += INIT_CHUNK) {
            size_t n = m->param_sizes[t] - k0 < INIT_CHUNK ? m->param_sizes[t] - k0 : INIT_CHUNK;
            for (size_t k = 0; k < n; k++)
                buf[k] = rules[t].fan_in ? (2.0f * caps_rng_uniform(&r) - 1.0f) * bound
                                         : CAPS_W_INIT_STD * caps_rng_normal(&r);
            /* A GPU that fails here stays failed: capsnet_status reports it. */
            (void)m->be->write(m->bs, CAPS_PARAMS, m->param_offsets[t] + k0, n, buf, NULL);
        }
    }
    free(buf);
    m->be->zero(m->bs, CAPS_ADAM_M);
    m->be->zero(m->bs, CAPS_ADAM_V);
    m->adam_t = 0;
}

/* ------------------------------------------------------------------------ parameters */

const caps_config *capsnet_config(const capsnet *m) { return &m->cfg; }
int capsnet_max_batch(const capsnet *m) { return m->max_batch; }
const char *capsnet_backend(const capsnet *m) { return m->be->name; }

int capsnet_status(const capsnet *m, caps_error *err) {
    return m->be->status ? m->be->status(m->bs, err) : CAPS_OK;
}
size_t capsnet_num_params(const capsnet *m) { return m->num_params; }
int64_t capsnet_adam_t(const capsnet *m) { return m->adam_t; }
void capsnet_set_adam_t(capsnet *m, int64_t t) { m->adam_t = t; }

static const char *const param_names[CAPS_NUM_PARAM_TENSORS] = {
    "conv1_w", "conv1_b", "prim_w", "prim_b", "caps_w", "dec1_w",
    "dec1_b",  "dec2_w",  "dec2_b", "dec3_w", "dec3_b"};

const char *capsnet_param_name(int tensor) {
    CAPS_ASSERT(tensor >= 0 && tensor < CAPS_NUM_PARAM_TENSORS);
    return param_names[tensor];
}

int capsnet_param_find(const char *name) {
    for (int k = 0; k < CAPS_NUM_PARAM_TENSORS; k++)
        if (strcmp(param_names[k], name) == 0) return k;
    return -1;
}

size_t capsnet_param_size(const capsnet *m, int tensor) {
    CAPS_ASSERT(tensor >= 0 && tensor < CAPS_NUM_PARAM_TENSORS);
    return m->param_sizes[tensor];
}

size_t capsnet_param_offset(const capsnet *m, int tensor) {
    CAPS_ASSERT(tensor >= 0 && tensor < CAPS_NUM_PARAM_TENSORS);
    return m->param_offsets[tensor];
}

static const char *const arena_names[4] = {"parameters", "gradients", "Adam m", "Adam v"};

static int check_range(const capsnet *m, caps_arena which, size_t offset, size_t count,
                       caps_error *err) {
    if ((int)which < 0 || (int)which > CAPS_ADAM_V)
        return caps_fail(err, CAPS_ERR_ARG, "no such arena (expected 0..3, got %d)", (int)which);
    if (offset > m->num_params || count > m->num_params - offset)
        return caps_fail(err, CAPS_ERR_ARG,
                         "%s: range [%zu, %zu + %zu) outside the %zu values of the model",
                         arena_names[which], offset, offset, count, m->num_params);
    return CAPS_OK;
}

int capsnet_read(const capsnet *m, caps_arena which, size_t offset, size_t count, float *out,
                 caps_error *err) {
    int rc = check_range(m, which, offset, count, err);
    return rc ? rc : m->be->read(m->bs, which, offset, count, out, err);
}

int capsnet_write(capsnet *m, caps_arena which, size_t offset, size_t count, const float *in,
                  caps_error *err) {
    int rc = check_range(m, which, offset, count, err);
    return rc ? rc : m->be->write(m->bs, which, offset, count, in, err);
}

/* The tensor called name, checked to hold count values; -1 after filling err. */
static int tensor_of(const capsnet *m, const char *name, size_t count, caps_error *err) {
    int t = capsnet_param_find(name);
    if (t < 0) {
        caps_fail(err, CAPS_ERR_ARG, "no parameter tensor called '%s'", name);
        caps_hint(err, "the tensors are conv1_w, conv1_b, prim_w, prim_b, caps_w, dec1_w, "
                       "dec1_b, dec2_w, dec2_b, dec3_w, dec3_b");
        return -1;
    }
    if (count != m->param_sizes[t]) {
        caps_fail(err, CAPS_ERR_ARG, "%s: wrong element count (expected %zu, got %zu)", name,
                  m->param_sizes[t], count);
        return -1;
    }
    return t;
}

int capsnet_read_tensor(const capsnet *m, caps_arena which, const char *name, float *out,
                        size_t count, caps_error *err) {
    int t = tensor_of(m, name, count, err);
    return t < 0 ? CAPS_ERR_ARG : capsnet_read(m, which, m->param_offsets[t], count, out, err);
}

int capsnet_write_tensor(capsnet *m, caps_arena which, const char *name, const float *in,
                         size_t count, caps_error *err) {
    int t = tensor_of(m, name, count, err);
    return t < 0 ? CAPS_ERR_ARG : capsnet_write(m, which, m->param_offsets[t], count, in, err);
}

int caps_set_threads(int threads) {
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_num_procs();
    omp_set_num_threads(threads);
#else
    threads = 1;
#endif
    gemm_set_threads(threads);
    return threads;
}

/* ------------------------------------------------------------------------ profile */

/* Adds the seconds since *t to acc and restarts *t: one call between two layers. */
static void lap(const capsnet *m, double *acc, double *t) {
    if (m->profile_sync && m->be->sync) m->be->sync(m->bs);
    double now = caps_seconds();
    *acc += now - *t;
    *t = now;
}

static const char *const layer_names[CAPS_NUM_LAYERS] = {
    "conv1", "primary_conv", "primary_squash", "digit_caps", "decoder", "loss", "other", "adam"};

/* FLOPs per image and layer, forward (fwd) and backward (bwd). */
static void layer_flops(const caps_dims *d, double *fwd, double *bwd) {
    double S1 = d->S1, G = d->G, I = d->I, J = d->J, E = d->E, R = d->R;
    for (int k = 0; k < CAPS_NUM_LAYERS; k++) fwd[k] = bwd[k] = 0.0;
    fwd[CAPS_LAYER_CONV1] = 2.0 * d->C1 * S1 * S1 * d->C * d->K1 * d->K1;
    bwd[CAPS_LAYER_CONV1] = fwd[CAPS_LAYER_CONV1]; /* dW only: the image needs no gradient */
    fwd[CAPS_LAYER_PRIMARY] = 2.0 * d->TD * G * G * d->C1 * d->K2 * d->K2;
    bwd[CAPS_LAYER_PRIMARY] = 2 * fwd[CAPS_LAYER_PRIMARY]; /* dW and dX */
    /* u_hat (2IJED), then s_j in every round and the agreements of all rounds but the
     * last (2IJE each); backward twice that (the recomputed u_hat is not counted). */
    fwd[CAPS_LAYER_DIGIT] = 2 * I * J * E * d->D + 2 * I * J * E * (2 * R - 1);
    bwd[CAPS_LAYER_DIGIT] = 2 * fwd[CAPS_LAYER_DIGIT];
    fwd[CAPS_LAYER_DECODER] = 2.0 * (J * E * d->H1 + (double)d->H1 * d->H2 + (double)d->H2 * d->P);
    bwd[CAPS_LAYER_DECODER] = 2 * fwd[CAPS_LAYER_DECODER];
}

/* The sum over the layers of fwd (backward = 0) or bwd, the decoder included or not. */
static double flops_sum(const caps_config *cfg, int decoder, int backward) {
    caps_dims d;
    double fwd[CAPS_NUM_LAYERS], bwd[CAPS_NUM_LAYERS], sum = 0.0;
    caps_dims_of(&d, cfg);
    layer_flops(&d, fwd, bwd);
    for (int k = 0; k < CAPS_NUM_LAYERS; k++)
        if (decoder || k != CAPS_LAYER_DECODER) sum += backward ? bwd[k] : fwd[k];
    return sum;
}

double caps_flops_forward(const caps_config *cfg, int decoder) {
    return flops_sum(cfg, decoder, 0);
}

double caps_flops_backward(const caps_config *cfg, int decoder) {
    return flops_sum(cfg, decoder, 1);
}

void capsnet_profile(const capsnet *m, caps_layer_profile out[CAPS_NUM_LAYERS]) {
    double fwd[CAPS_NUM_LAYERS], bwd[CAPS_NUM_LAYERS];
    layer_flops(&m->dims, fwd, bwd);
    for (int k = 0; k < CAPS_NUM_LAYERS; k++) {
        out[k].name = layer_names[k];
        out[k].forward_s = m->prof_fwd[k];
        out[k].backward_s = m->prof_bwd[k];
        out[k].forward_flops = fwd[k];
        out[k].backward_flops = bwd[k];
    }
}

void capsnet_profile_sync(capsnet *m, int on) { m->profile_sync = on; }

void capsnet_profile_reset(capsnet *m) {
    for (int k = 0; k < CAPS_NUM_LAYERS; k++) m->prof_fwd[k] = m->prof_bwd[k] = 0.0;
}

/* ------------------------------------------------------------------------ forward */

/* The second digit of capsnet_forward_pair: its classes and both digits' targets. */
typedef struct {
    const int *labels_b;
    const float *target_a, *target_b;
} second_digit;
/* The forward pass after its input step, which t timed from its start; two: NULL, or the
 * second digit of each image. */
static float forward_layers(capsnet *m, const int *labels, const second_digit *two, int B,
                            int mask, float recon_weight, double t);

float capsnet_forward(capsnet *m, const float *x, const int *labels, int B, int mask,
                      float recon_weight) {
    CAPS_ASSERT(B >= 1 && B <= m->max_batch);
    double t = caps_seconds();
    m->be->input(m->bs, x, B);
    return forward_layers(m, labels, NULL, B, mask, recon_weight, t);
}

int capsnet_keep_data(capsnet *m, const caps_dataset *ds, int *kept, caps_error *err) {
    *kept = 0;
    if (!m->be->data_upload) return CAPS_OK;
    int rc = m->be->data_upload(m->bs, ds, err);
    *kept = rc == CAPS_OK;
    /* No room for the data beside the model: batches are built here and sent instead. */
    return rc == CAPS_ERR_MEMORY ? CAPS_OK : rc;
}

float capsnet_forward_kept(capsnet *m, const int *idx, const int *dx, const int *dy,
                           const int *labels, int B, int mask, float recon_weight) {
    CAPS_ASSERT(B >= 1 && B <= m->max_batch && m->be->input_batch);
    double t = caps_seconds();
    m->be->input_batch(m->bs, idx, dx, dy, B);
    return forward_layers(m, labels, NULL, B, mask, recon_weight, t);
}

float capsnet_forward_pair(capsnet *m, const float *x, const int *labels_a, const int *labels_b,
                           const float *target_a, const float *target_b, int B,
                           float recon_weight) {
    CAPS_ASSERT(B >= 1 && B <= m->max_batch && labels_a && labels_b);
    CAPS_ASSERT(recon_weight == 0.0f || (target_a && target_b));
    double t = caps_seconds();
    m->be->input(m->bs, x, B);
    second_digit two = {labels_b, target_a, target_b};
    return forward_layers(m, labels_a, &two, B, CAPS_MASK_LABEL, recon_weight, t);
}

static float forward_layers(capsnet *m, const int *labels, const second_digit *two, int B,
                            int mask, float recon_weight, double t) {
    const caps_dims *d = &m->dims;
    const caps_backend *be = m->be;
    caps_backend_state *s = m->bs;
    CAPS_ASSERT(labels || mask == CAPS_MASK_PREDICTED);
    CAPS_ASSERT(recon_weight >= 0.0f);
    m->batch = B;
    m->recon_weight = recon_weight;
    m->backward_done = 0;
    m->pair = two != NULL;

    double *pf = m->prof_fwd;
    for (int b = 0; b < B; b++) {
        if (labels) CAPS_ASSERT(labels[b] >= 0 && labels[b] < d->J);
        m->labels[b] = labels ? labels[b] : -1;
        if (two) {
            CAPS_ASSERT(two->labels_b[b] >= 0 && two->labels_b[b] < d->J &&
                        two->labels_b[b] != labels[b]);
            m->labels2[b] = two->labels_b[b];
        }
    }
    lap(m, &pf[CAPS_LAYER_OTHER], &t);
    /* Conv1 + ReLU, then the PrimaryCaps convolution. */
    be->conv1_forward(s, B);
    lap(m, &pf[CAPS_LAYER_CONV1], &t);
    be->primary_forward(s, B);
    lap(m, &pf[CAPS_LAYER_PRIMARY], &t);
    /* Primary capsules (eq. 1), predictions (eq. 2), routing, the lengths. */
    be->squash_forward(s, B);
    lap(m, &pf[CAPS_LAYER_SQUASH], &t);
    be->digit_forward(s, B);
    m->lengths = be->lengths(s, B);
    caps_argmax(m->pred, m->lengths, B, d->J);
    lap(m, &pf[CAPS_LAYER_DIGIT], &t);

    /* Decoder on one capsule per image, compared with the input (with two digits: the
     * first digit's capsule, compared with that digit alone). */
    m->decoder_ran = recon_weight > 0.0f;
    if (m->decoder_ran) {
        for (int b = 0; b < B; b++) m->cls[b] = mask == CAPS_MASK_LABEL ? labels[b] : m->pred[b];
        be->recon_target(s, two ? two->target_a : NULL, B);
        be->decoder_forward(s, NULL, m->cls, B);
        lap(m, &pf[CAPS_LAYER_DECODER], &t);
    }

    m->loss = m->margin_loss = m->recon_loss = 0.0f;
    if (!labels) return 0.0f;
    if (!m->decoder_ran) memset(m->sse, 0, (size_t)B * sizeof(float));
    const int *labels2 = two ? m->labels2 : NULL;
    be->loss_forward(s, m->margin, m->sse, m->labels, labels2, m->decoder_ran, B);
    if (two && m->decoder_ran) {
        /* "We reconstruct each digit from its own capsule" (section 6): the second digit's
         * reconstruction, against its own image; backward decodes the first one again. */
        memcpy(m->target, two->target_a, (size_t)B * d->P * sizeof(float));
        be->recon_target(s, two->target_b, B);
        be->decoder_forward(s, NULL, m->labels2, B);
        be->loss_forward(s, m->margin, m->sse2, m->labels, labels2, 1, B);
        for (int b = 0; b < B; b++) m->sse[b] += m->sse2[b];
    }
    double margin = 0.0, recon = 0.0;
    for (int b = 0; b < B; b++) {
        margin += m->margin[b];
        if (m->decoder_ran) recon += (double)recon_weight * m->sse[b];
    }
    m->margin_loss = (float)(margin / B);
    m->recon_loss = (float)(recon / B);
    m->loss = (float)((margin + recon) / B);
    lap(m, &pf[CAPS_LAYER_LOSS], &t);
    return m->loss;
}

const float *capsnet_lengths(const capsnet *m) { return m->lengths; }
const float *capsnet_digit_caps(const capsnet *m) { return m->be->capsules(m->bs, m->batch); }
const float *capsnet_reconstruction(const capsnet *m) {
    return m->be->reconstruction(m->bs, m->batch);
}
const int *capsnet_predictions(const capsnet *m) { return m->pred; }
float capsnet_margin_loss(const capsnet *m) { return m->margin_loss; }
float capsnet_recon_loss(const capsnet *m) { return m->recon_loss; }

void capsnet_image_losses(const capsnet *m, float *margin, float *sse) {
    if (margin) memcpy(margin, m->margin, (size_t)m->batch * sizeof(float));
    if (sse) memcpy(sse, m->sse, (size_t)m->batch * sizeof(float));
}

void capsnet_decode(capsnet *m, float *out, const float *v, const int *cls, int B) {
    const caps_dims *d = &m->dims;
    CAPS_ASSERT(B >= 1 && B <= m->max_batch);
    for (int b = 0; b < B; b++) CAPS_ASSERT(cls[b] >= 0 && cls[b] < d->J);
    m->be->decoder_forward(m->bs, v, cls, B);
    memcpy(out, m->be->reconstruction(m->bs, B), (size_t)B * d->P * sizeof(float));
    m->batch = 0; /* the activations no longer belong to a forward pass */
}

int capsnet_perturb(capsnet *m, float *out, const float *x, int cls, const float *deltas,
                    int steps) {
    const caps_dims *d = &m->dims;
    int J = d->J, E = d->E, P = d->P, B = m->max_batch;
    size_t JE = (size_t)J * E;
    CAPS_ASSERT(steps >= 1 && cls < J);
    capsnet_forward(m, x, NULL, 1, CAPS_MASK_PREDICTED, 0.0f);
    if (cls < 0) cls = m->pred[0];
    /* The image's capsules go to the first slot of vbatch; the rows (dimension d, step k)
     * of the figure, each a copy with one value shifted, are decoded max_batch at a time
     * from the slots after it. */
    float *v = m->vbatch, *batch = m->vbatch + JE;
    memcpy(v, capsnet_digit_caps(m), JE * sizeof(float));
    int total = E * steps;
    for (int r0 = 0; r0 < total; r0 += B) {
        int n = total - r0 < B ? total - r0 : B;
        for (int k = 0; k < n; k++) {
            int dim = (r0 + k) / steps, s = (r0 + k) % steps;
            float *vk = batch + (size_t)k * JE;
            memcpy(vk, v, JE * sizeof(float));
            vk[cls * E + dim] += deltas[s];
            m->cls[k] = cls;
        }
        capsnet_decode(m, out + (size_t)r0 * P, batch, m->cls, n);
    }
    return cls;
}

/* ------------------------------------------------------------------------ backward */

void capsnet_zero_grad(capsnet *m) {
    double t = caps_seconds();
    m->be->zero(m->bs, CAPS_GRADS);
    lap(m, &m->prof_bwd[CAPS_LAYER_OTHER], &t);
}

/* The buckets of gradients in the order backward finishes them: the decoder's tensors
 * (after the loss and decoder steps), W_ij (after routing), PrimaryCaps, Conv1. */
static const int grad_buckets[CAPS_GRAD_BUCKETS][2] = {{5, 10}, {4, 4}, {2, 3}, {0, 1}};

void capsnet_grad_bucket(int k, int *first, int *last) {
    CAPS_ASSERT(k >= 0 && k < CAPS_GRAD_BUCKETS);
    *first = grad_buckets[k][0];
    *last = grad_buckets[k][1];
}

float *capsnet_arena_data(capsnet *m, caps_arena which, int *on_device) {
    *on_device = 0;
    return m->be->arena_data ? m->be->arena_data(m->bs, which, on_device) : NULL;
}

/* Tells ready that the next bucket's gradients are final. */
static void bucket_done(caps_grads_ready_fn ready, void *ctx, int *bucket) {
    if (ready) ready(ctx, grad_buckets[*bucket][0], grad_buckets[*bucket][1]);
    (*bucket)++;
}

void capsnet_backward(capsnet *m) {
    capsnet_backward_ready(m, 1.0f / m->batch, NULL, NULL); /* the loss is the batch mean */
}

void capsnet_backward_ready(capsnet *m, float scale, caps_grads_ready_fn ready, void *ctx) {
    const caps_backend *be = m->be;
    caps_backend_state *s = m->bs;
    int B = m->batch;
    CAPS_ASSERT(B >= 1 && m->labels[0] >= 0); /* a forward pass with labels came first */
    /* Once per forward pass: a backend may reuse a forward cache for a gradient (the GPU's
     * PrimaryCaps im2col matrix), so a second backward could not be the same. */
    CAPS_ASSERT(!m->backward_done);
    m->backward_done = 1;
    int bucket = 0;

    double *pb = m->prof_bwd, t = caps_seconds();
    be->backward_begin(s, B);
    lap(m, &pb[CAPS_LAYER_OTHER], &t);
    /* Margin loss -> lengths -> v. */
    be->loss_backward(s, m->labels, m->pair ? m->labels2 : NULL, scale, B);
    lap(m, &pb[CAPS_LAYER_LOSS], &t);
    /* Reconstruction loss -> decoder -> the masked capsule of v. */
    float recon_scale = m->recon_weight * scale;
    if (m->decoder_ran && m->pair) {
        /* The decoder holds the second digit's pass; the first digit's is made again. */
        be->decoder_backward(s, m->labels2, recon_scale, B);
        be->recon_target(s, m->target, B);
        be->decoder_forward(s, NULL, m->cls, B);
        be->decoder_backward(s, m->cls, recon_scale, B);
        lap(m, &pb[CAPS_LAYER_DECODER], &t);
    } else if (m->decoder_ran) {
        be->decoder_backward(s, m->cls, recon_scale, B);
        lap(m, &pb[CAPS_LAYER_DECODER], &t);
    }
    bucket_done(ready, ctx, &bucket);
    /* Routing -> predictions -> primary capsules -> convolutions. */
    be->digit_backward(s, B);
    lap(m, &pb[CAPS_LAYER_DIGIT], &t);
    bucket_done(ready, ctx, &bucket);
    be->squash_backward(s, B);
    lap(m, &pb[CAPS_LAYER_SQUASH], &t);
    be->primary_backward(s, B);
    lap(m, &pb[CAPS_LAYER_PRIMARY], &t);
    bucket_done(ready, ctx, &bucket);
    be->conv1_backward(s, B);
    lap(m, &pb[CAPS_LAYER_CONV1], &t);
    bucket_done(ready, ctx, &bucket);
    CAPS_ASSERT(bucket == CAPS_GRAD_BUCKETS);
}

/* ------------------------------------------------------------------------ Adam */

void caps_adam_default(caps_adam *hp) {
    hp->lr = 1e-3f;
    hp->beta1 = 0.9f;
    hp->beta2 = 0.999f;
    hp->eps = 1e-8f;
}

void capsnet_adam_step(capsnet *m, const caps_adam *hp, float lr) {
    double t = caps_seconds();
    m->adam_t++;
    m->be->adam_step(m->bs, hp, lr, m->adam_t);
    lap(m, &m->prof_bwd[CAPS_LAYER_ADAM], &t);
}
