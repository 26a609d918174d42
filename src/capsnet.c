/*
 * capsnet.c: the network of Sabour, Frosst & Hinton (2017), section 4, assembled from the
 * layers: configuration, arenas, initialisation, forward, backward, Adam step.
 *
 *   x [C][H][W] -> Conv1 (C1 @ K1xK1, stride S, ReLU)                      [C1][S1][S1]
 *     -> PrimaryCaps conv (T*D @ K2xK2, stride 2) read as I capsules      [I][D], squash
 *     -> prediction vectors u_hat_{j|i} = W_ij u_i                        [I][J][E]
 *     -> dynamic routing, R rounds                                        v [J][E]
 *     -> lengths |v_j| = class scores -> margin loss (eq. 4)
 *     -> mask (true class in training, predicted at test) -> decoder
 *        FC H1 ReLU -> FC H2 ReLU -> FC P sigmoid -> reconstruction loss x 0.0005
 *   Loss = mean over the batch of (margin + 0.0005 * sum of squared pixel errors).
 *
 * Memory follows llm.c: a size table per kind (parameters, activations, activation
 * gradients) and one aligned allocation each, carved up by a pointer walk. capsnet_create
 * allocates everything; forward and backward allocate nothing.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#include "gemm.h"
#include "layers.h"
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


/* ------------------------------------------------------------------------ config */

void caps_config_mnist(caps_config *cfg) {
    cfg->image_size = 28;
    cfg->in_channels = 1;
    cfg->conv1_channels = 256;
    cfg->conv1_kernel = 9;
    cfg->conv1_stride = 1;
    cfg->primary_types = 32;
    cfg->primary_dim = 8;
    cfg->primary_kernel = 9;
    cfg->primary_stride = 2;
    cfg->num_classes = 10;
    cfg->digit_dim = 16;
    cfg->routing_iters = 3;
    cfg->decoder_hidden1 = 512;
    cfg->decoder_hidden2 = 1024;
}

int caps_conv1_out(const caps_config *c) {
    return (c->image_size - c->conv1_kernel) / c->conv1_stride + 1;
}

int caps_primary_grid(const caps_config *c) {
    return (caps_conv1_out(c) - c->primary_kernel) / c->primary_stride + 1;
}

int caps_num_primary(const caps_config *c) {
    int g = caps_primary_grid(c);
    return c->primary_types * g * g;
}

int caps_image_pixels(const caps_config *c) {
    return c->in_channels * c->image_size * c->image_size;
}

/* The fields in declaration order: the order in model files, the names in messages. */
static const struct {
    const char *name;
    size_t offset;
} config_fields[CAPS_CONFIG_FIELDS] = {
    {"image_size", offsetof(caps_config, image_size)},
    {"in_channels", offsetof(caps_config, in_channels)},
    {"conv1_channels", offsetof(caps_config, conv1_channels)},
    {"conv1_kernel", offsetof(caps_config, conv1_kernel)},
    {"conv1_stride", offsetof(caps_config, conv1_stride)},
    {"primary_types", offsetof(caps_config, primary_types)},
    {"primary_dim", offsetof(caps_config, primary_dim)},
    {"primary_kernel", offsetof(caps_config, primary_kernel)},
    {"primary_stride", offsetof(caps_config, primary_stride)},
    {"num_classes", offsetof(caps_config, num_classes)},
    {"digit_dim", offsetof(caps_config, digit_dim)},
    {"routing_iters", offsetof(caps_config, routing_iters)},
    {"decoder_hidden1", offsetof(caps_config, decoder_hidden1)},
    {"decoder_hidden2", offsetof(caps_config, decoder_hidden2)},
};

const char *caps_config_field_name(int k) {
    CAPS_ASSERT(k >= 0 && k < CAPS_CONFIG_FIELDS);
    return config_fields[k].name;
}

int caps_config_get(const caps_config *c, int k) {
    CAPS_ASSERT(k >= 0 && k < CAPS_CONFIG_FIELDS);
    int v;
    memcpy(&v, (const char *)c + config_fields[k].offset, sizeof v);
    return v;
}

void caps_config_set(caps_config *c, int k, int v) {
    CAPS_ASSERT(k >= 0 && k < CAPS_CONFIG_FIELDS);
    memcpy((char *)c + config_fields[k].offset, &v, sizeof v);
}

/* Limits keep every size computation far from overflow and reject nonsense early: each
 * field at most CAPS_MAX_DIM, and the products (in double, so they cannot overflow while
 * being checked) at most CAPS_MAX_ELEMS: the parameter count, the activations of one
 * image, and the int-valued derived sizes. */
#define CAPS_MAX_DIM 4096
#define CAPS_MAX_ELEMS ((double)(1u << 31) - 1.0)

int caps_config_check(const caps_config *c, caps_error *err) {
    for (int k = 0; k < CAPS_CONFIG_FIELDS; k++) {
        int v = caps_config_get(c, k);
        if (v < 1 || v > CAPS_MAX_DIM)
            return caps_fail(err, CAPS_ERR_ARG, "config: %s out of range (expected 1..%d, got %d)",
                             config_fields[k].name, CAPS_MAX_DIM, v);
    }
    if (c->conv1_kernel > c->image_size)
        return caps_fail(err, CAPS_ERR_ARG,
                         "config: conv1_kernel larger than the image (expected <= %d, got %d)",
                         c->image_size, c->conv1_kernel);
    if (c->primary_kernel > caps_conv1_out(c))
        return caps_fail(err, CAPS_ERR_ARG,
                         "config: primary_kernel larger than the Conv1 output (expected <= %d, "
                         "got %d)", caps_conv1_out(c), c->primary_kernel);
    if (c->num_classes < 2)
        return caps_fail(err, CAPS_ERR_ARG, "config: num_classes too small (expected >= 2, got %d)",
                         c->num_classes);
    double C = c->in_channels, S = c->image_size, C1 = c->conv1_channels, K1 = c->conv1_kernel;
    double S1 = caps_conv1_out(c), G = caps_primary_grid(c), K2 = c->primary_kernel;
    double D = c->primary_dim, TD = (double)c->primary_types * D, I = c->primary_types * G * G;
    double J = c->num_classes, E = c->digit_dim, R = c->routing_iters;
    double H1 = c->decoder_hidden1, H2 = c->decoder_hidden2, P = C * S * S;
    double params = C1 * C * K1 * K1 + C1 + TD * C1 * K2 * K2 + TD + I * J * E * D + H1 * J * E +
                    H1 + H2 * H1 + H2 + P * H2 + P;
    /* Conv1 output, both im2col matrices, prediction vectors, routing couplings. */
    double acts = C1 * S1 * S1 + C * K1 * K1 * S1 * S1 + C1 * K2 * K2 * G * G + I * J * E +
                  R * I * J;
    if (params > CAPS_MAX_ELEMS || acts > CAPS_MAX_ELEMS || I > CAPS_MAX_ELEMS ||
        P > CAPS_MAX_ELEMS)
        return caps_fail(err, CAPS_ERR_ARG,
                         "config: network too large (expected at most %.0f parameters and "
                         "activations per image, got %.3g and %.3g)", CAPS_MAX_ELEMS, params, acts);
    return CAPS_OK;
}

/* ------------------------------------------------------------------------ size tables */

static const char *const param_names[CAPS_NUM_PARAM_TENSORS] = {
    "conv1_w", "conv1_b", "prim_w", "prim_b", "caps_w", "dec1_w",
    "dec1_b",  "dec2_w",  "dec2_b", "dec3_w", "dec3_b"};

const char *capsnet_param_name(int tensor) {
    CAPS_ASSERT(tensor >= 0 && tensor < CAPS_NUM_PARAM_TENSORS);
    return param_names[tensor];
}

static void fill_param_sizes(size_t *s, const caps_config *c) {
    size_t C = c->in_channels, C1 = c->conv1_channels, K1 = c->conv1_kernel;
    size_t TD = (size_t)c->primary_types * c->primary_dim, K2 = c->primary_kernel;
    size_t I = caps_num_primary(c), J = c->num_classes, E = c->digit_dim, D = c->primary_dim;
    size_t H1 = c->decoder_hidden1, H2 = c->decoder_hidden2, P = caps_image_pixels(c);
    s[0] = C1 * C * K1 * K1;
    s[1] = C1;
    s[2] = TD * C1 * K2 * K2;
    s[3] = TD;
    s[4] = I * J * E * D;
    s[5] = H1 * J * E;
    s[6] = H1;
    s[7] = H2 * H1;
    s[8] = H2;
    s[9] = P * H2;
    s[10] = P;
}

size_t caps_num_params(const caps_config *cfg) {
    size_t s[CAPS_NUM_PARAM_TENSORS], n = 0;
    fill_param_sizes(s, cfg);
    for (int k = 0; k < CAPS_NUM_PARAM_TENSORS; k++) n += s[k];
    return n;
}

static void point_params(caps_params *p, float *mem, const size_t *sizes) {
    float **ptrs[CAPS_NUM_PARAM_TENSORS] = {&p->conv1_w, &p->conv1_b, &p->prim_w, &p->prim_b,
                                            &p->caps_w,  &p->dec1_w,  &p->dec1_b, &p->dec2_w,
                                            &p->dec2_b,  &p->dec3_w,  &p->dec3_b};
    for (int k = 0; k < CAPS_NUM_PARAM_TENSORS; k++) {
        *ptrs[k] = mem;
        mem += sizes[k];
    }
}

/* Floats per activation buffer for B images, in caps_acts order. */
static void fill_act_sizes(size_t *s, const caps_config *c, size_t B) {
    size_t S1 = caps_conv1_out(c), G = caps_primary_grid(c), R = c->routing_iters;
    size_t C1 = c->conv1_channels, TD = (size_t)c->primary_types * c->primary_dim;
    size_t I = caps_num_primary(c), J = c->num_classes, E = c->digit_dim, D = c->primary_dim;
    size_t P = caps_image_pixels(c);
    s[0] = B * P;               /* x */
    s[1] = conv_act_size((int)B, (int)C1, (int)S1, (int)S1, c->primary_stride); /* a1 */
    s[2] = B * TD * G * G;      /* prim */
    s[3] = B * I * D;           /* u_pre */
    s[4] = B * I * D;           /* u */
    s[5] = B * I;               /* u_norm2 */
    s[6] = R * B * I * J;       /* route_c */
    s[7] = R * B * J * E;       /* route_s */
    s[8] = R * B * J * E;      /* route_v */
    s[9] = R * B * J;          /* route_n2 */
    s[10] = B * J;              /* lengths */
    s[11] = B;                  /* margin */
    s[12] = B * J * E;          /* masked */
    s[13] = B * c->decoder_hidden1;
    s[14] = B * c->decoder_hidden2;
    s[15] = B * P;              /* recon */
    s[16] = B;                  /* recon_err */
}

static void fill_grad_act_sizes(size_t *s, const caps_config *c, size_t B) {
    size_t S1 = caps_conv1_out(c), G = caps_primary_grid(c);
    size_t C1 = c->conv1_channels, TD = (size_t)c->primary_types * c->primary_dim;
    size_t I = caps_num_primary(c), J = c->num_classes, E = c->digit_dim, D = c->primary_dim;
    size_t H1 = c->decoder_hidden1, H2 = c->decoder_hidden2, P = caps_image_pixels(c);
    s[0] = conv_act_size((int)B, (int)C1, (int)S1, (int)S1, c->primary_stride); /* a1 */
    s[1] = B * TD * G * G;      /* prim */
    s[2] = B * I * D;           /* u_pre */
    s[3] = B * I * D;           /* u */
    s[4] = B * J * E;           /* v */
    s[5] = B * J;               /* lengths */
    s[6] = B * J * E;           /* masked */
    s[7] = B * H1;
    s[8] = B * H1;
    s[9] = B * H2;
    s[10] = B * H2;
    s[11] = B * P;
    s[12] = B * P;
}

/* Allocates one arena of sum(sizes) floats and points each buffer into it. */
static float *alloc_arena(float ***ptrs, const size_t *sizes, int n) {
    size_t total = 0;
    for (int k = 0; k < n; k++) total += sizes[k];
    float *mem = caps_alloc(total, sizeof(float));
    if (!mem) return NULL;
    float *p = mem;
    for (int k = 0; k < n; k++) {
        *ptrs[k] = p;
        p += sizes[k];
    }
    return mem;
}

/* ------------------------------------------------------------------------ create / free */

int capsnet_create(capsnet **out, const caps_config *cfg, int max_batch, caps_error *err) {
    *out = NULL;
    int rc = caps_config_check(cfg, err);
    if (rc) return rc;
    if (max_batch < 1 || max_batch > 65536)
        return caps_fail(err, CAPS_ERR_ARG, "batch size out of range (expected 1..65536, got %d)",
                         max_batch);
    capsnet *m = caps_alloc(1, sizeof *m);
    if (!m) return caps_fail(err, CAPS_ERR_MEMORY, "out of memory allocating the model");
    m->cfg = *cfg;
    m->max_batch = max_batch;

    fill_param_sizes(m->param_sizes, cfg);
    m->num_params = caps_num_params(cfg);
    m->params_mem = caps_alloc(m->num_params, sizeof(float));
    m->grads_mem = caps_alloc(m->num_params, sizeof(float));
    m->m_mem = caps_alloc(m->num_params, sizeof(float));
    m->v_mem = caps_alloc(m->num_params, sizeof(float));

    size_t asz[CAPS_NUM_ACTS], gsz[CAPS_NUM_GRAD_ACTS];
    fill_act_sizes(asz, cfg, max_batch);
    fill_grad_act_sizes(gsz, cfg, max_batch);
    caps_acts *a = &m->acts;
    float **aptr[CAPS_NUM_ACTS] = {&a->x,       &a->a1,       &a->prim,    &a->u_pre,
                                   &a->u,       &a->u_norm2,  &a->route_c, &a->route_s,
                                   &a->route_v, &a->route_n2, &a->lengths, &a->margin,
                                   &a->masked,  &a->h1,       &a->h2,      &a->recon,
                                   &a->recon_err};
    caps_grad_acts *g = &m->dacts;
    float **gptr[CAPS_NUM_GRAD_ACTS] = {&g->a1,     &g->prim,   &g->u_pre,  &g->u,
                                        &g->v,      &g->lengths, &g->masked, &g->h1,
                                        &g->z1_dec, &g->h2,     &g->z2_dec, &g->recon,
                                        &g->z3_dec};
    m->acts_mem = alloc_arena(aptr, asz, CAPS_NUM_ACTS);
    m->grad_acts_mem = alloc_arena(gptr, gsz, CAPS_NUM_GRAD_ACTS);

    /* Convolution scratch (conv2d.c): Conv1's im2col of one output row, and the PrimaryCaps
     * weights and their gradient in the order of the shifted products. */
    m->col = caps_alloc(conv2d_rows_col_size(max_batch, cfg->in_channels, cfg->image_size,
                                             cfg->conv1_kernel, cfg->conv1_stride),
                        sizeof(float));
    m->prim_wt = caps_alloc(m->param_sizes[2], sizeof(float));
    m->prim_dwt = caps_alloc(m->param_sizes[2] / cfg->primary_kernel, sizeof(float));
    m->prim_wt_version = -1;
    int I = caps_num_primary(cfg);
    m->digit_threads = 1;
#ifdef _OPENMP
    m->digit_threads = omp_get_max_threads();
#endif
    m->digit_scratch = caps_alloc((size_t)m->digit_threads *
                                      digit_caps_scratch_size(I, cfg->num_classes, cfg->digit_dim,
                                                              cfg->primary_dim, cfg->routing_iters),
                                  sizeof(float));
    m->caps_wt = caps_alloc(m->param_sizes[4], sizeof(float));
    m->caps_wt_version = -1;

    m->labels = caps_alloc(max_batch, sizeof(int));
    m->cls = caps_alloc(max_batch, sizeof(int));
    m->pred = caps_alloc(max_batch, sizeof(int));

    if (!m->params_mem || !m->grads_mem || !m->m_mem || !m->v_mem || !m->acts_mem ||
        !m->grad_acts_mem || !m->col || !m->prim_wt || !m->prim_dwt || !m->digit_scratch ||
        !m->caps_wt || !m->labels || !m->cls || !m->pred) {
        capsnet_free(m);
        return caps_fail(err, CAPS_ERR_MEMORY,
                         "out of memory allocating the model for batch %d", max_batch);
    }
    point_params(&m->params, m->params_mem, m->param_sizes);
    point_params(&m->grads, m->grads_mem, m->param_sizes);
    point_params(&m->adam_m, m->m_mem, m->param_sizes);
    point_params(&m->adam_v, m->v_mem, m->param_sizes);
    *out = m;
    return CAPS_OK;
}

void capsnet_free(capsnet *m) {
    if (!m) return;
    free(m->params_mem);
    free(m->grads_mem);
    free(m->m_mem);
    free(m->v_mem);
    free(m->acts_mem);
    free(m->grad_acts_mem);
    free(m->col);
    free(m->prim_wt);
    free(m->prim_dwt);
    free(m->digit_scratch);
    free(m->caps_wt);
    free(m->labels);
    free(m->cls);
    free(m->pred);
    free(m);
}

/* ------------------------------------------------------------------------ initialisation */

/* PyTorch's default for nn.Conv2d and nn.Linear: kaiming_uniform(a = sqrt(5)) on the
 * weights and the same bound on the biases, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static void init_uniform(float *p, size_t n, size_t fan_in, caps_rng *r) {
    float bound = 1.0f / sqrtf((float)fan_in);
    for (size_t k = 0; k < n; k++) p[k] = (2.0f * caps_rng_uniform(r) - 1.0f) * bound;
}

void capsnet_init_weights(capsnet *m, uint64_t seed) {
    const caps_config *c = &m->cfg;
    caps_params *p = &m->params;
    const size_t *s = m->param_sizes;
    caps_rng r;
    caps_rng_seed(&r, seed, 0x5eed);
    size_t fan1 = (size_t)c->in_channels * c->conv1_kernel * c->conv1_kernel;
    size_t fan2 = (size_t)c->conv1_channels * c->primary_kernel * c->primary_kernel;
    size_t JE = (size_t)c->num_classes * c->digit_dim;
    init_uniform(p->conv1_w, s[0], fan1, &r);
    init_uniform(p->conv1_b, s[1], fan1, &r);
    init_uniform(p->prim_w, s[2], fan2, &r);
    init_uniform(p->prim_b, s[3], fan2, &r);
    for (size_t k = 0; k < s[4]; k++) p->caps_w[k] = CAPS_W_INIT_STD * caps_rng_normal(&r);
    init_uniform(p->dec1_w, s[5], JE, &r);
    init_uniform(p->dec1_b, s[6], JE, &r);
    init_uniform(p->dec2_w, s[7], c->decoder_hidden1, &r);
    init_uniform(p->dec2_b, s[8], c->decoder_hidden1, &r);
    init_uniform(p->dec3_w, s[9], c->decoder_hidden2, &r);
    init_uniform(p->dec3_b, s[10], c->decoder_hidden2, &r);
    memset(m->m_mem, 0, m->num_params * sizeof(float));
    memset(m->v_mem, 0, m->num_params * sizeof(float));
    m->adam_t = 0;
    m->params_version++;
}

/* ------------------------------------------------------------------------ accessors */

const caps_config *capsnet_config(const capsnet *m) { return &m->cfg; }
int capsnet_max_batch(const capsnet *m) { return m->max_batch; }
caps_params *capsnet_params(capsnet *m) {
    m->params_version++;
    return &m->params;
}
caps_params *capsnet_grads(capsnet *m) { return &m->grads; }
/* Whoever asks for writable parameters may change them: derived copies are stale. */
float *capsnet_param_memory(capsnet *m) {
    m->params_version++;
    return m->params_mem;
}
float *capsnet_grad_memory(capsnet *m) { return m->grads_mem; }
float *capsnet_adam_m(capsnet *m) { return m->m_mem; }
float *capsnet_adam_v(capsnet *m) { return m->v_mem; }
int64_t capsnet_adam_t(const capsnet *m) { return m->adam_t; }
void capsnet_set_adam_t(capsnet *m, int64_t t) { m->adam_t = t; }

size_t capsnet_param_size(const capsnet *m, int tensor) {
    CAPS_ASSERT(tensor >= 0 && tensor < CAPS_NUM_PARAM_TENSORS);
    return m->param_sizes[tensor];
}

static const float *digit_output(const capsnet *m) {
    return m->acts.route_v +
           (size_t)(m->cfg.routing_iters - 1) * m->batch * m->cfg.num_classes * m->cfg.digit_dim;
}

const float *capsnet_lengths(const capsnet *m) { return m->acts.lengths; }
const float *capsnet_digit_caps(const capsnet *m) { return digit_output(m); }
const float *capsnet_reconstruction(const capsnet *m) { return m->acts.recon; }
const int *capsnet_predictions(const capsnet *m) { return m->pred; }
float capsnet_margin_loss(const capsnet *m) { return m->margin_loss; }
float capsnet_recon_loss(const capsnet *m) { return m->recon_loss; }

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

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Adds the seconds since *t to acc and restarts *t: one call between two layers. */
static void lap(double *acc, double *t) {
    double now = seconds_now();
    *acc += now - *t;
    *t = now;
}

static const char *const layer_names[CAPS_NUM_LAYERS] = {
    "conv1", "primary_conv", "primary_squash", "digit_caps", "decoder", "loss", "other", "adam"};

/* FLOPs per image and layer, forward (fwd) and backward (bwd); letters as in layers.h. */
static void layer_flops(const caps_config *c, double *fwd, double *bwd) {
    double C = c->in_channels, C1 = c->conv1_channels, K1 = c->conv1_kernel;
    double S1 = caps_conv1_out(c), G = caps_primary_grid(c), K2 = c->primary_kernel;
    double TD = (double)c->primary_types * c->primary_dim, D = c->primary_dim;
    double I = caps_num_primary(c), J = c->num_classes, E = c->digit_dim, R = c->routing_iters;
    double H1 = c->decoder_hidden1, H2 = c->decoder_hidden2, P = caps_image_pixels(c);
    for (int k = 0; k < CAPS_NUM_LAYERS; k++) fwd[k] = bwd[k] = 0.0;
    fwd[CAPS_LAYER_CONV1] = 2 * C1 * S1 * S1 * C * K1 * K1;
    bwd[CAPS_LAYER_CONV1] = fwd[CAPS_LAYER_CONV1]; /* dW only: the image needs no gradient */
    fwd[CAPS_LAYER_PRIMARY] = 2 * TD * G * G * C1 * K2 * K2;
    bwd[CAPS_LAYER_PRIMARY] = 2 * fwd[CAPS_LAYER_PRIMARY]; /* dW and dX */
    /* u_hat (2IJED), then s_j in every round and the agreements of all rounds but the
     * last (2IJE each); backward twice that (the recomputed u_hat is not counted). */
    fwd[CAPS_LAYER_DIGIT] = 2 * I * J * E * D + 2 * I * J * E * (2 * R - 1);
    bwd[CAPS_LAYER_DIGIT] = 2 * fwd[CAPS_LAYER_DIGIT];
    fwd[CAPS_LAYER_DECODER] = 2 * (J * E * H1 + H1 * H2 + H2 * P);
    bwd[CAPS_LAYER_DECODER] = 2 * fwd[CAPS_LAYER_DECODER];
}

double caps_flops_forward(const caps_config *cfg, int decoder) {
    double fwd[CAPS_NUM_LAYERS], bwd[CAPS_NUM_LAYERS], sum = 0.0;
    layer_flops(cfg, fwd, bwd);
    for (int k = 0; k < CAPS_NUM_LAYERS; k++)
        if (decoder || k != CAPS_LAYER_DECODER) sum += fwd[k];
    return sum;
}

double caps_flops_backward(const caps_config *cfg, int decoder) {
    double fwd[CAPS_NUM_LAYERS], bwd[CAPS_NUM_LAYERS], sum = 0.0;
    layer_flops(cfg, fwd, bwd);
    for (int k = 0; k < CAPS_NUM_LAYERS; k++)
        if (decoder || k != CAPS_LAYER_DECODER) sum += bwd[k];
    return sum;
}

void capsnet_profile(const capsnet *m, caps_layer_profile out[CAPS_NUM_LAYERS]) {
    double fwd[CAPS_NUM_LAYERS], bwd[CAPS_NUM_LAYERS];
    layer_flops(&m->cfg, fwd, bwd);
    for (int k = 0; k < CAPS_NUM_LAYERS; k++) {
        out[k].name = layer_names[k];
        out[k].forward_s = m->prof_fwd[k];
        out[k].backward_s = m->prof_bwd[k];
        out[k].forward_flops = fwd[k];
        out[k].backward_flops = bwd[k];
    }
}

void capsnet_profile_reset(capsnet *m) {
    for (int k = 0; k < CAPS_NUM_LAYERS; k++) m->prof_fwd[k] = m->prof_bwd[k] = 0.0;
}

/* ------------------------------------------------------------------------ forward */

/* Threads for the fused DigitCaps layer: as many as run now, at most as many as its
 * scratch was made for. */
static int digit_threads(const capsnet *m) {
#ifdef _OPENMP
    int n = omp_get_max_threads();
    return n < m->digit_threads ? n : m->digit_threads;
#else
    (void)m;
    return 1;
#endif
}

/* The decoder on the masked capsules: acts.masked -> h1 -> h2 -> recon. */
static void decoder_forward(capsnet *m, int B) {
    const caps_config *c = &m->cfg;
    caps_acts *a = &m->acts;
    caps_params *p = &m->params;
    int JE = c->num_classes * c->digit_dim, H1 = c->decoder_hidden1, H2 = c->decoder_hidden2;
    int P = caps_image_pixels(c);
    linear_forward(a->h1, a->masked, p->dec1_w, p->dec1_b, B, JE, H1);
    relu_forward(a->h1, a->h1, (size_t)B * H1);
    linear_forward(a->h2, a->h1, p->dec2_w, p->dec2_b, B, H1, H2);
    relu_forward(a->h2, a->h2, (size_t)B * H2);
    linear_forward(a->recon, a->h2, p->dec3_w, p->dec3_b, B, H2, P);
    sigmoid_forward(a->recon, a->recon, (size_t)B * P);
}

float capsnet_forward(capsnet *m, const float *x, const int *labels, int B, int mask,
                      float recon_weight) {
    const caps_config *c = &m->cfg;
    caps_acts *a = &m->acts;
    caps_params *p = &m->params;
    CAPS_ASSERT(B >= 1 && B <= m->max_batch);
    CAPS_ASSERT(labels || mask == CAPS_MASK_PREDICTED);
    CAPS_ASSERT(recon_weight >= 0.0f);
    int C = c->in_channels, S = c->image_size, C1 = c->conv1_channels, S1 = caps_conv1_out(c);
    int TD = c->primary_types * c->primary_dim, G = caps_primary_grid(c);
    int I = caps_num_primary(c), J = c->num_classes, E = c->digit_dim, D = c->primary_dim;
    int R = c->routing_iters, P = caps_image_pixels(c);
    m->batch = B;
    m->recon_weight = recon_weight;

    double *pf = m->prof_fwd, t = seconds_now();
    memcpy(a->x, x, (size_t)B * P * sizeof(float));
    for (int b = 0; b < B; b++) {
        if (labels) CAPS_ASSERT(labels[b] >= 0 && labels[b] < J);
        m->labels[b] = labels ? labels[b] : -1;
    }
    lap(&pf[CAPS_LAYER_OTHER], &t);
    /* Conv1 + ReLU, then the PrimaryCaps convolution. */
    conv2d_rows_forward(a->a1, m->col, a->x, p->conv1_w, p->conv1_b, B, C, S, S, C1,
                        c->conv1_kernel, c->conv1_stride, c->primary_stride, 1);
    lap(&pf[CAPS_LAYER_CONV1], &t);
    if (m->prim_wt_version != m->params_version) {
        conv2d_shift_weights(m->prim_wt, p->prim_w, TD, C1, c->primary_kernel);
        m->prim_wt_version = m->params_version;
    }
    conv2d_shift_forward(a->prim, a->a1, m->prim_wt, p->prim_b, B, C1, S1, S1, TD,
                         c->primary_kernel, c->primary_stride);
    lap(&pf[CAPS_LAYER_PRIMARY], &t);
    /* Primary capsules (eq. 1), predictions (eq. 2), routing (Procedure 1). */
    primary_caps_forward(a->u_pre, a->prim, B, c->primary_types, D, G);
    squash_forward(a->u, a->u_norm2, a->u_pre, B * I, D);
    lap(&pf[CAPS_LAYER_SQUASH], &t);
    if (m->caps_wt_version != m->params_version) {
        digit_caps_transpose_weights(m->caps_wt, p->caps_w, I, J, E, D);
        m->caps_wt_version = m->params_version;
    }
    digit_caps_forward(a->route_v, a->route_c, a->route_s, a->route_n2, m->digit_scratch, a->u,
                       m->caps_wt, B, I, J, E, D, R, digit_threads(m));
    const float *v = digit_output(m);
    caps_length_forward(a->lengths, v, B * J, E);
    caps_argmax(m->pred, a->lengths, B, J);
    lap(&pf[CAPS_LAYER_DIGIT], &t);

    /* Decoder on one capsule per image. */
    m->decoder_ran = recon_weight > 0.0f;
    if (m->decoder_ran) {
        for (int b = 0; b < B; b++) m->cls[b] = mask == CAPS_MASK_LABEL ? labels[b] : m->pred[b];
        mask_forward(a->masked, v, m->cls, B, J, E);
        decoder_forward(m, B);
        lap(&pf[CAPS_LAYER_DECODER], &t);
    }

    m->loss = m->margin_loss = m->recon_loss = 0.0f;
    if (!labels) return 0.0f;
    margin_loss_forward(a->margin, a->lengths, m->labels, B, J);
    if (m->decoder_ran) recon_loss_forward(a->recon_err, a->recon, a->x, B, P);
    double margin = 0.0, recon = 0.0;
    for (int b = 0; b < B; b++) {
        margin += a->margin[b];
        if (m->decoder_ran) recon += (double)recon_weight * a->recon_err[b];
    }
    m->margin_loss = (float)(margin / B);
    m->recon_loss = (float)(recon / B);
    m->loss = (float)((margin + recon) / B);
    lap(&pf[CAPS_LAYER_LOSS], &t);
    return m->loss;
}

void capsnet_decode(capsnet *m, float *out, const float *v, const int *cls, int B) {
    const caps_config *c = &m->cfg;
    CAPS_ASSERT(B >= 1 && B <= m->max_batch);
    for (int b = 0; b < B; b++) CAPS_ASSERT(cls[b] >= 0 && cls[b] < c->num_classes);
    mask_forward(m->acts.masked, v, cls, B, c->num_classes, c->digit_dim);
    decoder_forward(m, B);
    memcpy(out, m->acts.recon, (size_t)B * caps_image_pixels(c) * sizeof(float));
    m->batch = 0; /* the activations no longer belong to a forward pass */
}

int capsnet_perturb(capsnet *m, float *out, const float *x, int cls, const float *deltas,
                    int steps) {
    const caps_config *c = &m->cfg;
    int J = c->num_classes, E = c->digit_dim, P = caps_image_pixels(c), B = m->max_batch;
    CAPS_ASSERT(steps >= 1 && cls < J);
    capsnet_forward(m, x, NULL, 1, CAPS_MASK_PREDICTED, 0.0f);
    if (cls < 0) cls = m->pred[0];
    /* The image's capsules stay in acts.route_v, which decoding does not touch. The rows
     * (dimension d, step k) of the figure are decoded max_batch at a time; their capsule
     * sets go in acts.route_s, free after the forward pass and at least B*J*E floats. */
    const float *v = digit_output(m);
    float *batch = m->acts.route_s;
    int total = E * steps;
    for (int r0 = 0; r0 < total; r0 += B) {
        int n = total - r0 < B ? total - r0 : B;
        for (int k = 0; k < n; k++) {
            int d = (r0 + k) / steps, s = (r0 + k) % steps;
            float *vk = batch + (size_t)k * J * E;
            memcpy(vk, v, (size_t)J * E * sizeof(float));
            vk[cls * E + d] += deltas[s];
            m->cls[k] = cls;
        }
        capsnet_decode(m, out + (size_t)r0 * P, batch, m->cls, n);
    }
    return cls;
}

/* ------------------------------------------------------------------------ backward */

void capsnet_zero_grad(capsnet *m) {
    double t = seconds_now();
    memset(m->grads_mem, 0, m->num_params * sizeof(float));
    lap(&m->prof_bwd[CAPS_LAYER_OTHER], &t);
}

void capsnet_backward(capsnet *m) {
    const caps_config *c = &m->cfg;
    caps_acts *a = &m->acts;
    caps_grad_acts *d = &m->dacts;
    caps_params *p = &m->params, *g = &m->grads;
    int B = m->batch;
    CAPS_ASSERT(B >= 1 && m->labels[0] >= 0); /* a forward pass with labels came first */
    int C = c->in_channels, S = c->image_size, C1 = c->conv1_channels, S1 = caps_conv1_out(c);
    int TD = c->primary_types * c->primary_dim, G = caps_primary_grid(c);
    int I = caps_num_primary(c), J = c->num_classes, E = c->digit_dim, D = c->primary_dim;
    int R = c->routing_iters, P = caps_image_pixels(c);
    int JE = J * E, H1 = c->decoder_hidden1, H2 = c->decoder_hidden2;
    float scale = 1.0f / B; /* the loss is the batch mean */

    /* Activation gradients accumulate, so they start at zero every pass. */
    double *pb = m->prof_bwd, t = seconds_now();
    size_t gsz[CAPS_NUM_GRAD_ACTS], total = 0;
    fill_grad_act_sizes(gsz, c, m->max_batch);
    for (int k = 0; k < CAPS_NUM_GRAD_ACTS; k++) total += gsz[k];
    memset(m->grad_acts_mem, 0, total * sizeof(float));
    lap(&pb[CAPS_LAYER_OTHER], &t);

    /* Margin loss -> lengths -> v. */
    margin_loss_backward(d->lengths, a->lengths, m->labels, scale, B, J);
    const float *v = digit_output(m);
    caps_length_backward(d->v, d->lengths, v, a->lengths, B * J, E);
    if (m->decoder_ran) recon_loss_backward(d->recon, a->recon, a->x, m->recon_weight * scale, B, P);
    lap(&pb[CAPS_LAYER_LOSS], &t);

    /* Reconstruction loss -> decoder -> the masked capsule of v. */
    if (m->decoder_ran) {
        sigmoid_backward(d->z3_dec, d->recon, a->recon, (size_t)B * P);
        linear_backward(d->h2, g->dec3_w, g->dec3_b, d->z3_dec, a->h2, p->dec3_w, B, H2, P);
        relu_backward(d->z2_dec, d->h2, a->h2, (size_t)B * H2);
        linear_backward(d->h1, g->dec2_w, g->dec2_b, d->z2_dec, a->h1, p->dec2_w, B, H1, H2);
        relu_backward(d->z1_dec, d->h1, a->h1, (size_t)B * H1);
        linear_backward(d->masked, g->dec1_w, g->dec1_b, d->z1_dec, a->masked, p->dec1_w, B, JE,
                        H1);
        mask_backward(d->v, d->masked, m->cls, B, J, E);
        lap(&pb[CAPS_LAYER_DECODER], &t);
    }

    /* Routing -> predictions -> primary capsules -> convolutions. */
    digit_caps_backward(d->u, g->caps_w, m->digit_scratch, d->v, a->route_v, a->route_c,
                        a->route_s, a->route_n2, a->u, m->caps_wt, B, I, J, E, D, R,
                        digit_threads(m));
    lap(&pb[CAPS_LAYER_DIGIT], &t);
    squash_backward(d->u_pre, d->u, a->u_pre, a->u_norm2, B * I, D);
    primary_caps_backward(d->prim, d->u_pre, B, c->primary_types, D, G);
    lap(&pb[CAPS_LAYER_SQUASH], &t);
    conv2d_shift_backward(d->a1, g->prim_w, g->prim_b, m->prim_dwt, d->prim, a->a1, m->prim_wt, B,
                          C1, S1, S1, TD, c->primary_kernel, c->primary_stride);
    lap(&pb[CAPS_LAYER_PRIMARY], &t);
    relu_backward_inplace(d->a1, a->a1, conv_act_size(B, C1, S1, S1, c->primary_stride));
    conv2d_rows_backward(g->conv1_w, g->conv1_b, m->col, d->a1, a->x, B, C, S, S, C1,
                         c->conv1_kernel, c->conv1_stride, c->primary_stride);
    lap(&pb[CAPS_LAYER_CONV1], &t);
}

/* ------------------------------------------------------------------------ Adam */

void caps_adam_default(caps_adam *hp) {
    hp->lr = 1e-3f;
    hp->beta1 = 0.9f;
    hp->beta2 = 0.999f;
    hp->eps = 1e-8f;
}

void capsnet_adam_step(capsnet *m, const caps_adam *hp, float lr) {
    double t = seconds_now();
    m->adam_t++;
    m->params_version++;
    adam_update(m->params_mem, m->m_mem, m->v_mem, m->grads_mem, m->num_params, lr, hp->beta1,
                hp->beta2, hp->eps, (long long)m->adam_t);
    lap(&m->prof_bwd[CAPS_LAYER_ADAM], &t);
}
