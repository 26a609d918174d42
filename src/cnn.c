/*
 * cnn.c: the baseline CNN of Sabour et al. (2017), section 5: the arenas, the
 * initialisation, and the order of the layers forward and backward (cnn.h draws the
 * network and names the dimension letters).
 *
 *   images [B][C][S][S] -> channels last x0 [S][B][S][C]
 *     -> conv1 'same' + ReLU a1 [S][B][S][C1] -> conv2 + ReLU a2 -> conv3 + ReLU a3
 *     -> NCHW, flattened h3 [B][C3*S*S] (torch.flatten(x, 1): fc1.weight as PyTorch's)
 *     -> fc1 + ReLU h4 [B][F1] -> fc2 + ReLU h5 [B][F2] -> dropout h5d
 *     -> fc3 logits [B][J] -> softmax, cross-entropy; loss = mean over the batch
 *
 * The convolutions keep their activations channels last ([S][B][S][C], conv2d_same.c), the
 * layout their matrix products read in place; one transpose before fc1 gives PyTorch's
 * flattening order, so every parameter tensor has PyTorch's layout and name.
 *
 * Memory (STYLE.md): one aligned allocation per kind, parameters, gradients, the two Adam
 * moments, activations and caches, activation gradients; a size table and a pointer walk
 * fill each. Nothing is allocated after caps_cnn_create.
 */
#include <math.h>
#include <string.h>

#include "cnn.h"
#include "layers.h"
#include "util.h"

/* ------------------------------------------------------------------------ configuration */

/* The paper gives the layers of its baseline (section 5: three 5x5 convolutions of 256,
 * 256 and 128 channels, stride 1, two fully connected layers of 328 and 192, dropout, a
 * softmax over the classes) but not the dropout probability: 0.5 is the value of
 * Srivastava et al. (2014) for hidden fully connected layers and PyTorch's default. */
#define CNN_PAPER_CONV1 256
#define CNN_PAPER_CONV2 256
#define CNN_PAPER_CONV3 128
#define CNN_PAPER_KERNEL 5
#define CNN_PAPER_FC1 328
#define CNN_PAPER_FC2 192
#define CNN_PAPER_DROPOUT 0.5f

void caps_cnn_config_paper(caps_cnn_config *cfg, int image_size, int in_channels,
                           int num_classes) {
    cfg->image_size = image_size;
    cfg->in_channels = in_channels;
    cfg->conv1_channels = CNN_PAPER_CONV1;
    cfg->conv2_channels = CNN_PAPER_CONV2;
    cfg->conv3_channels = CNN_PAPER_CONV3;
    cfg->kernel = CNN_PAPER_KERNEL;
    cfg->fc1 = CNN_PAPER_FC1;
    cfg->fc2 = CNN_PAPER_FC2;
    cfg->num_classes = num_classes;
    cfg->dropout = CNN_PAPER_DROPOUT;
}

/* The same limits as caps_config_check (config.c): every size far from overflowing an int
 * or a size_t product. */
#define CNN_MAX_DIM 4096
#define CNN_MAX_ELEMS ((double)(1u << 31) - 1.0)
#define CNN_MAX_BATCH 65536 /* capsnet_create's limit */

/* Elements of each parameter tensor in double: the one formula, for the check (where a
 * product must not overflow while it is computed) and for the arena of a checked one. */
static void param_counts(double s[CNN_NUM_PARAM_TENSORS], const caps_cnn_config *c) {
    double KK = (double)c->kernel * c->kernel;
    double N3 = (double)c->conv3_channels * c->image_size * c->image_size;
    s[CNN_CONV1_W] = (double)c->conv1_channels * c->in_channels * KK;
    s[CNN_CONV1_B] = c->conv1_channels;
    s[CNN_CONV2_W] = (double)c->conv2_channels * c->conv1_channels * KK;
    s[CNN_CONV2_B] = c->conv2_channels;
    s[CNN_CONV3_W] = (double)c->conv3_channels * c->conv2_channels * KK;
    s[CNN_CONV3_B] = c->conv3_channels;
    s[CNN_FC1_W] = (double)c->fc1 * N3;
    s[CNN_FC1_B] = c->fc1;
    s[CNN_FC2_W] = (double)c->fc2 * c->fc1;
    s[CNN_FC2_B] = c->fc2;
    s[CNN_FC3_W] = (double)c->num_classes * c->fc2;
    s[CNN_FC3_B] = c->num_classes;
}

/* Activations and caches of one image, in double (the check). */
static double acts_per_image(const caps_cnn_config *c) {
    double SS = (double)c->image_size * c->image_size;
    double Sp = (double)c->image_size + c->kernel - 1, SpSp = Sp * Sp;
    return SS * (c->in_channels + c->conv1_channels + c->conv2_channels + 2.0 * c->conv3_channels) +
           SpSp * (c->in_channels + c->conv1_channels + c->conv2_channels) +
           3.0 * c->fc1 + 3.0 * c->fc2 + 2.0 * c->num_classes + 1.0;
}

int caps_cnn_config_check(const caps_cnn_config *c, caps_error *err) {
    const struct {
        const char *name;
        int value;
    } fields[] = {
        {"image_size", c->image_size}, {"in_channels", c->in_channels},
        {"conv1_channels", c->conv1_channels}, {"conv2_channels", c->conv2_channels},
        {"conv3_channels", c->conv3_channels}, {"kernel", c->kernel}, {"fc1", c->fc1},
        {"fc2", c->fc2}, {"num_classes", c->num_classes},
    };
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++)
        if (fields[k].value < 1 || fields[k].value > CNN_MAX_DIM)
            return caps_fail(err, CAPS_ERR_ARG,
                             "cnn config: %s out of range (expected 1..%d, got %d)", fields[k].name,
                             CNN_MAX_DIM, fields[k].value);
    if (c->kernel % 2 == 0)
        return caps_fail(err, CAPS_ERR_ARG,
                         "cnn config: kernel even (expected odd, for 'same' padding; got %d)",
                         c->kernel);
    if (c->kernel > c->image_size)
        return caps_fail(err, CAPS_ERR_ARG,
                         "cnn config: kernel larger than the image (expected <= %d, got %d)",
                         c->image_size, c->kernel);
    if (c->num_classes < 2)
        return caps_fail(err, CAPS_ERR_ARG,
                         "cnn config: num_classes too small (expected >= 2, got %d)",
                         c->num_classes);
    /* Written so that NaN fails too. */
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return caps_fail(err, CAPS_ERR_ARG,
                         "cnn config: dropout out of range (expected 0 <= p < 1, got %g)",
                         (double)c->dropout);
    double s[CNN_NUM_PARAM_TENSORS], params = 0.0;
    param_counts(s, c);
    for (int k = 0; k < CNN_NUM_PARAM_TENSORS; k++) params += s[k];
    double acts = acts_per_image(c);
    if (params > CNN_MAX_ELEMS || acts > CNN_MAX_ELEMS)
        return caps_fail(err, CAPS_ERR_ARG,
                         "cnn config: network too large (expected at most %.0f parameters and "
                         "activations per image, got %.3g and %.3g)", CNN_MAX_ELEMS, params, acts);
    return CAPS_OK;
}

static const char *const param_names[CNN_NUM_PARAM_TENSORS] = {
    "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight", "conv3.bias",
    "fc1.weight",   "fc1.bias",   "fc2.weight",   "fc2.bias",   "fc3.weight",   "fc3.bias"};

const char *caps_cnn_param_name(int k) {
    CAPS_ASSERT(k >= 0 && k < CNN_NUM_PARAM_TENSORS);
    return param_names[k];
}

void caps_cnn_param_sizes(size_t sizes[CNN_NUM_PARAM_TENSORS], const caps_cnn_config *cfg) {
    double s[CNN_NUM_PARAM_TENSORS];
    param_counts(s, cfg);
    for (int k = 0; k < CNN_NUM_PARAM_TENSORS; k++) sizes[k] = (size_t)s[k];
}

size_t caps_cnn_num_params(const caps_cnn_config *cfg) {
    size_t s[CNN_NUM_PARAM_TENSORS], n = 0;
    caps_cnn_param_sizes(s, cfg);
    for (int k = 0; k < CNN_NUM_PARAM_TENSORS; k++) n += s[k];
    return n;
}

/* 2 FLOPs per multiply-add. A 'same' convolution makes S*S*Co outputs of Ci*K*K terms
 * each (the padded zeros are computed, as by every im2col or cuDNN kernel). */
static void layer_flops(const caps_cnn_config *c, double *conv1, double *conv23, double *fc) {
    double SSKK = (double)c->image_size * c->image_size * c->kernel * c->kernel;
    double N3 = (double)c->conv3_channels * c->image_size * c->image_size;
    *conv1 = 2.0 * SSKK * c->in_channels * c->conv1_channels;
    *conv23 = 2.0 * SSKK * ((double)c->conv1_channels * c->conv2_channels +
                            (double)c->conv2_channels * c->conv3_channels);
    *fc = 2.0 * (N3 * c->fc1 + (double)c->fc1 * c->fc2 + (double)c->fc2 * c->num_classes);
}

double caps_cnn_flops_forward(const caps_cnn_config *cfg) {
    double conv1, conv23, fc;
    layer_flops(cfg, &conv1, &conv23, &fc);
    return conv1 + conv23 + fc;
}

/* Backward: a weight gradient and an input gradient per layer, each as many FLOPs as the
 * forward product, but conv1's input gradient (the image needs none). */
double caps_cnn_flops_backward(const caps_cnn_config *cfg) {
    double conv1, conv23, fc;
    layer_flops(cfg, &conv1, &conv23, &fc);
    return conv1 + 2.0 * (conv23 + fc);
}

/* ------------------------------------------------------------------------ arenas */

/* Sizes of the activations and caches for B images, in caps_cnn_acts order. */
static void act_sizes(size_t s[CNN_NUM_ACTS], const caps_cnn_config *c, int B) {
    int S = c->image_size, K = c->kernel, C = c->in_channels;
    int C1 = c->conv1_channels, C2 = c->conv2_channels, C3 = c->conv3_channels;
    size_t SSB = (size_t)S * S * B, KK = (size_t)K * K;
    size_t i = 0;
    s[i++] = SSB * C;                         /* x0 */
    s[i++] = conv_pad_size(B, C, S, S, K);    /* xpad0 */
    s[i++] = KK * C * C1;                     /* wt1 */
    s[i++] = SSB * C1;                        /* a1 */
    s[i++] = conv_pad_size(B, C1, S, S, K);   /* xpad1 */
    s[i++] = KK * C1 * C2;                    /* wt2 */
    s[i++] = SSB * C2;                        /* a2 */
    s[i++] = conv_pad_size(B, C2, S, S, K);   /* xpad2 */
    s[i++] = KK * C2 * C3;                    /* wt3 */
    s[i++] = SSB * C3;                        /* a3 */
    s[i++] = SSB * C3;                        /* h3 */
    s[i++] = (size_t)B * c->fc1;              /* h4 */
    s[i++] = (size_t)B * c->fc2;              /* h5 */
    s[i++] = (size_t)B * c->fc2;              /* mask */
    s[i++] = (size_t)B * c->fc2;              /* h5d */
    s[i++] = (size_t)B * c->num_classes;      /* logits */
    s[i++] = (size_t)B * c->num_classes;      /* prob */
    s[i++] = (size_t)B;                       /* loss */
    CAPS_ASSERT(i == CNN_NUM_ACTS);
}

static int max_int(int a, int b) { return a > b ? a : b; }

/* Sizes of the activation gradients and scratch for B images, in caps_cnn_dacts order. */
static void dact_sizes(size_t s[CNN_NUM_DACTS], const caps_cnn_config *c, int B) {
    int S = c->image_size, K = c->kernel, C = c->in_channels;
    int C1 = c->conv1_channels, C2 = c->conv2_channels, C3 = c->conv3_channels;
    size_t SSB = (size_t)S * S * B;
    /* conv2d_shift_backward's dwt holds one kernel row, [K][Ci][Co], of the largest layer */
    size_t CiCo = (size_t)C * C1;
    if ((size_t)C1 * C2 > CiCo) CiCo = (size_t)C1 * C2;
    if ((size_t)C2 * C3 > CiCo) CiCo = (size_t)C2 * C3;
    size_t i = 0;
    s[i++] = (size_t)B * c->num_classes;                  /* dlogits */
    s[i++] = (size_t)B * c->fc2;                          /* dh5d */
    s[i++] = (size_t)B * c->fc2;                          /* dh5 */
    s[i++] = (size_t)B * c->fc1;                          /* dh4 */
    s[i++] = SSB * C3;                                    /* dh3 */
    s[i++] = SSB * C3;                                    /* da3 */
    s[i++] = SSB * C2;                                    /* da2 */
    s[i++] = SSB * C1;                                    /* da1 */
    s[i++] = conv_pad_size(B, max_int(C1, C2), S, S, K);  /* dxpad: conv3's or conv2's input */
    s[i++] = (size_t)K * CiCo;                            /* dwt */
    CAPS_ASSERT(i == CNN_NUM_DACTS);
}

/* One allocation of the summed sizes (*total floats); *ptrs[k] points at piece k. NULL when
 * out of memory. */
static float *alloc_arena(float **const *ptrs, const size_t *sizes, int n, size_t *total) {
    size_t sum = 0;
    for (int k = 0; k < n; k++) sum += sizes[k];
    *total = sum;
    float *arena = caps_alloc(sum, sizeof(float));
    if (!arena) return NULL;
    float *p = arena;
    for (int k = 0; k < n; k++) {
        *ptrs[k] = p;
        p += sizes[k];
    }
    return arena;
}

int caps_cnn_create(caps_cnn **out, const caps_cnn_config *cfg, int max_batch, caps_error *err) {
    *out = NULL;
    int rc = caps_cnn_config_check(cfg, err);
    if (rc != CAPS_OK) return rc;
    if (max_batch < 1 || max_batch > CNN_MAX_BATCH)
        return caps_fail(err, CAPS_ERR_ARG, "cnn: batch size out of range (expected 1..%d, got %d)",
                         CNN_MAX_BATCH, max_batch);
    caps_cnn *m = caps_alloc(1, sizeof *m);
    if (!m) return caps_fail(err, CAPS_ERR_MEMORY, "cnn: out of memory");
    m->cfg = *cfg;
    m->max_batch = max_batch;
    caps_cnn_param_sizes(m->param_sizes, cfg);
    for (int k = 0; k < CNN_NUM_PARAM_TENSORS; k++) {
        m->param_offsets[k] = m->num_params;
        m->num_params += m->param_sizes[k];
    }
    m->params = caps_alloc(m->num_params, sizeof(float));
    m->grads = caps_alloc(m->num_params, sizeof(float));
    m->adam_m = caps_alloc(m->num_params, sizeof(float));
    m->adam_v = caps_alloc(m->num_params, sizeof(float));

    caps_cnn_acts *a = &m->a;
    float **const act_ptrs[CNN_NUM_ACTS] = {
        &a->x0, &a->xpad0, &a->wt1, &a->a1, &a->xpad1, &a->wt2, &a->a2, &a->xpad2, &a->wt3,
        &a->a3, &a->h3, &a->h4, &a->h5, &a->mask, &a->h5d, &a->logits, &a->prob, &a->loss};
    caps_cnn_dacts *d = &m->d;
    float **const dact_ptrs[CNN_NUM_DACTS] = {&d->dlogits, &d->dh5d, &d->dh5, &d->dh4, &d->dh3,
                                              &d->da3, &d->da2, &d->da1, &d->dxpad, &d->dwt};
    size_t asz[CNN_NUM_ACTS], dsz[CNN_NUM_DACTS], n_act = 0, n_dact = 0;
    act_sizes(asz, cfg, max_batch);
    dact_sizes(dsz, cfg, max_batch);
    m->act_arena = alloc_arena(act_ptrs, asz, CNN_NUM_ACTS, &n_act);
    m->dact_arena = alloc_arena(dact_ptrs, dsz, CNN_NUM_DACTS, &n_dact);
    m->labels = caps_alloc((size_t)max_batch, sizeof(int));
    m->pred = caps_alloc((size_t)max_batch, sizeof(int));
    if (!m->params || !m->grads || !m->adam_m || !m->adam_v || !m->act_arena || !m->dact_arena ||
        !m->labels || !m->pred) {
        double mb = (4.0 * m->num_params + (double)n_act + n_dact) * sizeof(float) / 1048576.0;
        caps_cnn_free(m);
        rc = caps_fail(err, CAPS_ERR_MEMORY,
                       "cnn: out of memory (%zu parameters, batch %d: about %.0f MB or more)",
                       caps_cnn_num_params(cfg), max_batch, mb);
        caps_hint(err, "a smaller batch needs less memory for the activations");
        return rc;
    }
    for (int k = 0; k < CNN_NUM_PARAM_TENSORS; k++) {
        m->w[k] = m->params + m->param_offsets[k];
        m->dw[k] = m->grads + m->param_offsets[k];
    }
    for (int b = 0; b < max_batch; b++) m->labels[b] = -1;
    *out = m;
    return CAPS_OK;
}

void caps_cnn_free(caps_cnn *m) {
    if (!m) return;
    free(m->params);
    free(m->grads);
    free(m->adam_m);
    free(m->adam_v);
    free(m->act_arena);
    free(m->dact_arena);
    free(m->labels);
    free(m->pred);
    if (m->class_names) caps_class_names_free(m->cfg.num_classes, m->class_names);
    free(m);
}

/* ------------------------------------------------------------------------ initialisation */

/* PyTorch's default for nn.Conv2d and nn.Linear: kaiming_uniform(a = sqrt(5)) on the
 * weights, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound on the biases.
 * Values are drawn in tensor order, element by element, from one stream. */
#define CNN_INIT_STREAM 0xc22
#define CNN_DROPOUT_STREAM 0xd20

void caps_cnn_init_weights(caps_cnn *m, uint64_t seed) {
    const caps_cnn_config *c = &m->cfg;
    size_t KK = (size_t)c->kernel * c->kernel;
    size_t N3 = (size_t)c->conv3_channels * c->image_size * c->image_size;
    const size_t fan_in[CNN_NUM_PARAM_TENSORS] = {
        c->in_channels * KK, c->in_channels * KK, c->conv1_channels * KK, c->conv1_channels * KK,
        c->conv2_channels * KK, c->conv2_channels * KK, N3, N3, (size_t)c->fc1, (size_t)c->fc1,
        (size_t)c->fc2, (size_t)c->fc2};
    caps_rng r;
    caps_rng_seed(&r, seed, CNN_INIT_STREAM);
    for (int t = 0; t < CNN_NUM_PARAM_TENSORS; t++) {
        float bound = 1.0f / sqrtf((float)fan_in[t]);
        for (size_t k = 0; k < m->param_sizes[t]; k++)
            m->w[t][k] = (2.0f * caps_rng_uniform(&r) - 1.0f) * bound;
    }
    memset(m->adam_m, 0, m->num_params * sizeof(float));
    memset(m->adam_v, 0, m->num_params * sizeof(float));
    m->adam_t = 0;
}

/* ------------------------------------------------------------------------ forward */

float caps_cnn_forward(caps_cnn *m, const float *images, const int *labels, int B, int training,
                       uint64_t dropout_seed) {
    const caps_cnn_config *c = &m->cfg;
    CAPS_ASSERT(B >= 1 && B <= m->max_batch);
    int S = c->image_size, K = c->kernel, C = c->in_channels, J = c->num_classes;
    int C1 = c->conv1_channels, C2 = c->conv2_channels, C3 = c->conv3_channels;
    int F1 = c->fc1, F2 = c->fc2, N3 = C3 * S * S;
    size_t SSB = (size_t)S * S * B;
    caps_cnn_acts *a = &m->a;
    float *const *w = m->w;

    /* The convolutions, channels last; each keeps its padded input and reordered weights. */
    conv_act_from_nchw(a->x0, images, B, C, S, S, 1);
    conv2d_same_forward(a->a1, a->xpad0, a->wt1, a->x0, w[CNN_CONV1_W], w[CNN_CONV1_B], B, C, S,
                        S, C1, K);
    relu_forward(a->a1, a->a1, SSB * C1);
    conv2d_same_forward(a->a2, a->xpad1, a->wt2, a->a1, w[CNN_CONV2_W], w[CNN_CONV2_B], B, C1, S,
                        S, C2, K);
    relu_forward(a->a2, a->a2, SSB * C2);
    conv2d_same_forward(a->a3, a->xpad2, a->wt3, a->a2, w[CNN_CONV3_W], w[CNN_CONV3_B], B, C2, S,
                        S, C3, K);
    relu_forward(a->a3, a->a3, SSB * C3);
    /* x.flatten(1) of PyTorch's [B][C3][S][S]: feature (o, y, x) at o*S*S + y*S + x. */
    conv_act_to_nchw(a->h3, a->a3, B, C3, S, S, 1);

    linear_forward(a->h4, a->h3, w[CNN_FC1_W], w[CNN_FC1_B], B, N3, F1);
    relu_forward(a->h4, a->h4, (size_t)B * F1);
    linear_forward(a->h5, a->h4, w[CNN_FC2_W], w[CNN_FC2_B], B, F1, F2);
    relu_forward(a->h5, a->h5, (size_t)B * F2);
    /* The mask comes from the seed alone: the same seed, the same units dropped. */
    caps_rng r;
    caps_rng_seed(&r, dropout_seed, CNN_DROPOUT_STREAM);
    dropout_forward(a->h5d, a->mask, a->h5, (size_t)B * F2, c->dropout, training ? &r : NULL);
    linear_forward(a->logits, a->h5d, w[CNN_FC3_W], w[CNN_FC3_B], B, F2, J);
    softmax_xent_forward(a->loss, a->prob, a->logits, labels, B, J);

    double sum = 0.0;
    for (int b = 0; b < B; b++) {
        const float *p = a->prob + (size_t)b * J;
        int best = 0;
        for (int k = 1; k < J; k++)
            if (p[k] > p[best]) best = k;
        m->pred[b] = best;
        m->labels[b] = labels ? labels[b] : -1;
        if (labels) sum += a->loss[b];
    }
    m->batch = B;
    m->loss = labels ? (float)(sum / B) : 0.0f;
    return m->loss;
}

/* ------------------------------------------------------------------------ backward */

void caps_cnn_zero_grad(caps_cnn *m) { memset(m->grads, 0, m->num_params * sizeof(float)); }

void caps_cnn_backward(caps_cnn *m) {
    const caps_cnn_config *c = &m->cfg;
    int B = m->batch;
    CAPS_ASSERT(B >= 1 && m->labels[0] >= 0); /* a forward pass with labels came first */
    int S = c->image_size, K = c->kernel, C = c->in_channels, J = c->num_classes;
    int C1 = c->conv1_channels, C2 = c->conv2_channels, C3 = c->conv3_channels;
    int F1 = c->fc1, F2 = c->fc2, N3 = C3 * S * S;
    size_t SSB = (size_t)S * S * B;
    const caps_cnn_acts *a = &m->a;
    caps_cnn_dacts *d = &m->d;
    float *const *w = m->w, *const *dw = m->dw;

    /* The layers add into their input gradients: zero those this batch uses (da3 is
     * written whole, dxpad and dwt by the convolutions). */
    memset(d->dlogits, 0, (size_t)B * J * sizeof(float));
    memset(d->dh5d, 0, (size_t)B * F2 * sizeof(float));
    memset(d->dh5, 0, (size_t)B * F2 * sizeof(float));
    memset(d->dh4, 0, (size_t)B * F1 * sizeof(float));
    memset(d->dh3, 0, (size_t)B * N3 * sizeof(float));
    memset(d->da2, 0, SSB * C2 * sizeof(float));
    memset(d->da1, 0, SSB * C1 * sizeof(float));

    /* loss = (1/B) sum_b xent_b: each image weighs 1/B. */
    softmax_xent_backward(d->dlogits, a->prob, m->labels, 1.0f / B, B, J);
    /* logits = fc3(h5d); h5d = dropout(h5); h5 = relu(fc2(h4)) */
    linear_backward(d->dh5d, dw[CNN_FC3_W], dw[CNN_FC3_B], d->dlogits, a->h5d, w[CNN_FC3_W], B,
                    F2, J);
    dropout_backward(d->dh5, d->dh5d, a->mask, (size_t)B * F2);
    relu_backward_inplace(d->dh5, a->h5, (size_t)B * F2);
    /* h5 = relu(fc2(h4)); h4 = relu(fc1(h3)) */
    linear_backward(d->dh4, dw[CNN_FC2_W], dw[CNN_FC2_B], d->dh5, a->h4, w[CNN_FC2_W], B, F1, F2);
    relu_backward_inplace(d->dh4, a->h4, (size_t)B * F1);
    /* h4 = relu(fc1(h3)); h3 = flatten(relu(conv3(a2))), relu's gradient taken on h3 */
    linear_backward(d->dh3, dw[CNN_FC1_W], dw[CNN_FC1_B], d->dh4, a->h3, w[CNN_FC1_W], B, N3, F1);
    relu_backward_inplace(d->dh3, a->h3, (size_t)B * N3);
    /* h3 = to_nchw(a3): a permutation, undone */
    conv_act_from_nchw(d->da3, d->dh3, B, C3, S, S, 1);
    /* a3 = relu(conv3(a2)); a2 = relu(conv2(a1)); a1 = relu(conv1(x0)) */
    conv2d_same_backward(d->da2, dw[CNN_CONV3_W], dw[CNN_CONV3_B], d->dxpad, d->dwt, d->da3,
                         a->xpad2, a->wt3, B, C2, S, S, C3, K);
    relu_backward_inplace(d->da2, a->a2, SSB * C2);
    conv2d_same_backward(d->da1, dw[CNN_CONV2_W], dw[CNN_CONV2_B], d->dxpad, d->dwt, d->da2,
                         a->xpad1, a->wt2, B, C1, S, S, C2, K);
    relu_backward_inplace(d->da1, a->a1, SSB * C1);
    conv2d_same_backward(NULL, dw[CNN_CONV1_W], dw[CNN_CONV1_B], d->dxpad, d->dwt, d->da1,
                         a->xpad0, a->wt1, B, C, S, S, C1, K);
}

/* ------------------------------------------------------------------------ Adam */

/* The arena is one flat vector, so one call covers every tensor. */
void caps_cnn_adam_step(caps_cnn *m, const caps_adam *hp, float lr) {
    m->adam_t++;
    adam_update(m->params, m->adam_m, m->adam_v, m->grads, m->num_params, lr, hp->beta1,
                hp->beta2, hp->eps, m->adam_t);
}
