/*
 * backend_cpu.c: the CPU backend: every step of the layer sequence of capsnet.c (backend.h
 * lists them) on the kernels of layers.h and digit_caps.h, OpenMP across the cores and a
 * BLAS (gemm.c) for the convolutions and the decoder.
 *
 * Memory follows llm.c: a size table per kind (parameters, activations, activation
 * gradients) and one aligned allocation each, carved up by a pointer walk. create
 * allocates everything; the steps allocate nothing.
 */
#include <string.h>

#include "backend_cpu.h"
#include "layers.h"
#include "util.h"

/* ------------------------------------------------------------------------ arenas */

static void point_tensors(cpu_tensors *t, float *mem, const size_t *sizes) {
    float **ptrs[CAPS_NUM_PARAM_TENSORS] = {&t->conv1_w, &t->conv1_b, &t->prim_w, &t->prim_b,
                                            &t->caps_w,  &t->dec1_w,  &t->dec1_b, &t->dec2_w,
                                            &t->dec2_b,  &t->dec3_w,  &t->dec3_b};
    for (int k = 0; k < CAPS_NUM_PARAM_TENSORS; k++) {
        *ptrs[k] = mem;
        mem += sizes[k];
    }
}

/* Floats per activation buffer for B images, in cpu_acts order. */
static void fill_act_sizes(size_t *s, const caps_dims *d, size_t B) {
    size_t I = d->I, D = d->D;
    s[0] = B * d->P;                                           /* x */
    s[1] = conv_act_size((int)B, d->C1, d->S1, d->S1, d->ST2); /* a1 */
    s[2] = B * d->TD * d->G * d->G;                            /* prim */
    s[3] = B * I * D;                                          /* u_pre */
    s[4] = B * I * D;                                          /* u */
    s[5] = B * I;                                              /* u_norm2 */
    s[6] = B * d->J;                                           /* lengths */
    s[7] = B * d->J * d->E;                                    /* masked */
    s[8] = B * d->H1;                                          /* h1 */
    s[9] = B * d->H2;                                          /* h2 */
    s[10] = B * d->P;                                          /* recon */
    s[11] = B * d->P;                                          /* target */
}

/* Floats per activation-gradient buffer, in cpu_grad_acts order. */
static void fill_grad_act_sizes(size_t *s, const caps_dims *d, size_t B) {
    size_t I = d->I, D = d->D, JE = (size_t)d->J * d->E;
    s[0] = conv_act_size((int)B, d->C1, d->S1, d->S1, d->ST2); /* a1 */
    s[1] = B * d->TD * d->G * d->G;                            /* prim */
    s[2] = B * I * D;                                          /* u_pre */
    s[3] = B * I * D;                                          /* u */
    s[4] = B * JE;                                             /* v */
    s[5] = B * d->J;                                           /* lengths */
    s[6] = B * JE;                                             /* masked */
    s[7] = B * d->H1;
    s[8] = B * d->H1;
    s[9] = B * d->H2;
    s[10] = B * d->H2;
    s[11] = B * d->P;
    s[12] = B * d->P;
}

/* Allocates one arena of sum(sizes) floats and points each buffer into it; *total gets
 * the sum. */
static float *alloc_arena(float ***ptrs, const size_t *sizes, int n, size_t *total) {
    *total = 0;
    for (int k = 0; k < n; k++) *total += sizes[k];
    float *mem = caps_alloc(*total, sizeof(float));
    if (!mem) return NULL;
    float *p = mem;
    for (int k = 0; k < n; k++) {
        *ptrs[k] = p;
        p += sizes[k];
    }
    return mem;
}

static void cpu_destroy(caps_backend_state *s) {
    if (!s) return;
    for (int k = 0; k < 4; k++) free(s->arena[k]);
    free(s->acts_mem);
    free(s->grad_acts_mem);
    free(s->col);
    free(s->prim_wt);
    free(s->prim_dwt);
    digit_caps_free(s->digit);
    free(s);
}

static int cpu_create(caps_backend_state **out, const caps_dims *d, const size_t *sizes,
                      int max_batch, const caps_options *opt, caps_error *err) {
    *out = NULL;
    caps_backend_state *s = caps_alloc(1, sizeof *s);
    if (!s) return caps_fail(err, CAPS_ERR_MEMORY, "out of memory allocating the model");
    s->d = *d;
    s->max_batch = max_batch;
    for (int k = 0; k < CAPS_NUM_PARAM_TENSORS; k++) s->num_params += sizes[k];
    for (int k = 0; k < 4; k++) s->arena[k] = caps_alloc(s->num_params, sizeof(float));

    size_t asz[CPU_NUM_ACTS], gsz[CPU_NUM_GRAD_ACTS], acts_floats;
    fill_act_sizes(asz, d, max_batch);
    fill_grad_act_sizes(gsz, d, max_batch);
    cpu_acts *a = &s->acts;
    float **aptr[CPU_NUM_ACTS] = {&a->x,       &a->a1,     &a->prim, &a->u_pre,
                                  &a->u,       &a->u_norm2, &a->lengths, &a->masked,
                                  &a->h1,      &a->h2,     &a->recon, &a->target};
    cpu_grad_acts *g = &s->dacts;
    float **gptr[CPU_NUM_GRAD_ACTS] = {&g->a1,     &g->prim,    &g->u_pre,  &g->u,
                                       &g->v,      &g->lengths, &g->masked, &g->h1,
                                       &g->z1_dec, &g->h2,      &g->z2_dec, &g->recon,
                                       &g->z3_dec};
    s->acts_mem = alloc_arena(aptr, asz, CPU_NUM_ACTS, &acts_floats);
    s->grad_acts_mem = alloc_arena(gptr, gsz, CPU_NUM_GRAD_ACTS, &s->grad_acts_floats);

    /* Convolution scratch (conv2d.c): Conv1's im2col of one output row, and the PrimaryCaps
     * weights and their gradient in the order of the shifted products. */
    s->col = caps_alloc(conv2d_rows_col_size(max_batch, d->C, d->S, d->K1, d->ST1),
                        sizeof(float));
    s->prim_wt = caps_alloc(sizes[2], sizeof(float));
    s->prim_dwt = caps_alloc(sizes[2] / d->K2, sizeof(float));
    s->prim_wt_version = -1;

    int ok = s->acts_mem && s->grad_acts_mem && s->col && s->prim_wt && s->prim_dwt;
    for (int k = 0; k < 4; k++) ok = ok && s->arena[k];
    if (!ok) {
        cpu_destroy(s);
        return caps_fail(err, CAPS_ERR_MEMORY,
                         "out of memory allocating the model for batch %d", max_batch);
    }
    int rc = digit_caps_create(&s->digit, d, max_batch, opt->kernels, err);
    if (rc) {
        cpu_destroy(s);
        return rc;
    }
    point_tensors(&s->params, s->arena[CAPS_PARAMS], sizes);
    point_tensors(&s->grads, s->arena[CAPS_GRADS], sizes);
    s->target = s->acts.x;
    *out = s;
    return CAPS_OK;
}

static int cpu_read(const caps_backend_state *s, caps_arena which, size_t offset, size_t count,
                    float *out, caps_error *err) {
    (void)err; /* host memory: a copy cannot fail */
    memcpy(out, s->arena[which] + offset, count * sizeof(float));
    return CAPS_OK;
}

static int cpu_write(caps_backend_state *s, caps_arena which, size_t offset, size_t count,
                     const float *in, caps_error *err) {
    (void)err;
    memcpy(s->arena[which] + offset, in, count * sizeof(float));
    if (which == CAPS_PARAMS) s->params_version++; /* derived weights are stale now */
    return CAPS_OK;
}

static void cpu_zero(caps_backend_state *s, caps_arena which) {
    memset(s->arena[which], 0, s->num_params * sizeof(float));
    if (which == CAPS_PARAMS) s->params_version++;
}

static float *cpu_arena_data(caps_backend_state *s, caps_arena which, int *on_device) {
    *on_device = 0;
    return s->arena[which];
}

static void cpu_adam_step(caps_backend_state *s, const caps_adam *hp, float lr, int64_t t) {
    s->params_version++;
    adam_update(s->arena[CAPS_PARAMS], s->arena[CAPS_ADAM_M], s->arena[CAPS_ADAM_V],
                s->arena[CAPS_GRADS], s->num_params, lr, hp->beta1, hp->beta2, hp->eps,
                (long long)t);
}

/* ------------------------------------------------------------------------ forward */

static void cpu_input(caps_backend_state *s, const float *x, int B) {
    memcpy(s->acts.x, x, (size_t)B * s->d.P * sizeof(float));
}

/* Conv1 + ReLU. */
static void cpu_conv1_forward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    conv2d_rows_forward(s->acts.a1, s->col, s->acts.x, s->params.conv1_w, s->params.conv1_b, B,
                        d->C, d->S, d->S, d->C1, d->K1, d->ST1, d->ST2, 1);
}

/* The PrimaryCaps convolution, its weights reordered once per change of the parameters. */
static void cpu_primary_forward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    if (s->prim_wt_version != s->params_version) {
        conv2d_shift_weights(s->prim_wt, s->params.prim_w, d->TD, d->C1, d->K2);
        s->prim_wt_version = s->params_version;
    }
    conv2d_shift_forward(s->acts.prim, s->acts.a1, s->prim_wt, s->params.prim_b, B, d->C1, d->S1,
                         d->S1, d->TD, d->K2, d->ST2);
}

/* Primary capsules, squashed (eq. 1). */
static void cpu_squash_forward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    primary_caps_forward(s->acts.u_pre, s->acts.prim, B, d->T, d->D, d->G);
    squash_forward(s->acts.u, s->acts.u_norm2, s->acts.u_pre, B * d->I, d->D);
}

/* Predictions (eq. 2) and routing, then the lengths. */
static void cpu_digit_forward(caps_backend_state *s, int B) {
    digit_caps *dc = s->digit;
    dc->ops->forward(dc, s->acts.u, s->params.caps_w, s->params_version, B);
    caps_length_forward(s->acts.lengths, dc->ops->output(dc), B * s->d.J, s->d.E);
}

static void cpu_decoder_forward(caps_backend_state *s, const float *v_host, const int *cls,
                                int B) {
    const caps_dims *d = &s->d;
    cpu_acts *a = &s->acts;
    const cpu_tensors *p = &s->params;
    int JE = d->J * d->E;
    mask_forward(a->masked, v_host ? v_host : s->digit->ops->output(s->digit), cls, B, d->J,
                 d->E);
    linear_forward(a->h1, a->masked, p->dec1_w, p->dec1_b, B, JE, d->H1);
    relu_forward(a->h1, a->h1, (size_t)B * d->H1);
    linear_forward(a->h2, a->h1, p->dec2_w, p->dec2_b, B, d->H1, d->H2);
    relu_forward(a->h2, a->h2, (size_t)B * d->H2);
    linear_forward(a->recon, a->h2, p->dec3_w, p->dec3_b, B, d->H2, d->P);
    sigmoid_forward(a->recon, a->recon, (size_t)B * d->P);
}

static void cpu_recon_target(caps_backend_state *s, const float *target, int B) {
    s->target = s->acts.x;
    if (!target) return;
    memcpy(s->acts.target, target, (size_t)B * s->d.P * sizeof(float));
    s->target = s->acts.target;
}

static void cpu_loss_forward(caps_backend_state *s, float *margin, float *sse,
                             const int *labels, const int *labels2, int decoder, int B) {
    margin_loss_forward(margin, s->acts.lengths, labels, labels2, B, s->d.J);
    if (decoder) recon_loss_forward(sse, s->acts.recon, s->target, B, s->d.P);
}

static const float *cpu_lengths(caps_backend_state *s, int B) {
    (void)B;
    return s->acts.lengths;
}

static const float *cpu_capsules(caps_backend_state *s, int B) {
    (void)B;
    return s->digit->ops->output(s->digit);
}

static const float *cpu_reconstruction(caps_backend_state *s, int B) {
    (void)B;
    return s->acts.recon;
}

/* ------------------------------------------------------------------------ backward */

/* Activation gradients accumulate, so they start at zero every pass. */
static void cpu_backward_begin(caps_backend_state *s, int B) {
    (void)B;
    memset(s->grad_acts_mem, 0, s->grad_acts_floats * sizeof(float));
}

/* Margin loss -> lengths -> v. */
static void cpu_loss_backward(caps_backend_state *s, const int *labels, const int *labels2,
                              float margin_scale, int B) {
    const caps_dims *d = &s->d;
    cpu_acts *a = &s->acts;
    cpu_grad_acts *g = &s->dacts;
    margin_loss_backward(g->lengths, a->lengths, labels, labels2, margin_scale, B, d->J);
    caps_length_backward(g->v, g->lengths, s->digit->ops->output(s->digit), a->lengths, B * d->J,
                         d->E);
}

/* Reconstruction loss -> the decoder -> the masked capsule of v. The decoder's activation
 * gradients start from zero here: a pass may run the decoder twice (two digits), each
 * adding its own share to v's gradient and the decoder's weights' gradients. */
static void cpu_decoder_backward(caps_backend_state *s, const int *cls, float recon_scale,
                                 int B) {
    const caps_dims *d = &s->d;
    cpu_acts *a = &s->acts;
    cpu_grad_acts *g = &s->dacts;
    const cpu_tensors *p = &s->params;
    cpu_tensors *dp = &s->grads;
    int JE = d->J * d->E;
    /* Every kernel below accumulates (+=) into the gradient it writes. */
    float *zero[] = {g->recon, g->z3_dec, g->h2, g->z2_dec, g->h1, g->z1_dec, g->masked};
    int width[] = {d->P, d->P, d->H2, d->H2, d->H1, d->H1, JE};
    for (int k = 0; k < 7; k++) memset(zero[k], 0, (size_t)B * width[k] * sizeof(float));
    recon_loss_backward(g->recon, a->recon, s->target, recon_scale, B, d->P);
    sigmoid_backward(g->z3_dec, g->recon, a->recon, (size_t)B * d->P);
    linear_backward(g->h2, dp->dec3_w, dp->dec3_b, g->z3_dec, a->h2, p->dec3_w, B, d->H2, d->P);
    relu_backward(g->z2_dec, g->h2, a->h2, (size_t)B * d->H2);
    linear_backward(g->h1, dp->dec2_w, dp->dec2_b, g->z2_dec, a->h1, p->dec2_w, B, d->H1, d->H2);
    relu_backward(g->z1_dec, g->h1, a->h1, (size_t)B * d->H1);
    linear_backward(g->masked, dp->dec1_w, dp->dec1_b, g->z1_dec, a->masked, p->dec1_w, B, JE,
                    d->H1);
    mask_backward(g->v, g->masked, cls, B, d->J, d->E);
}

/* Routing -> predictions -> primary capsules. */
static void cpu_digit_backward(caps_backend_state *s, int B) {
    digit_caps *dc = s->digit;
    dc->ops->backward(dc, s->dacts.u, s->grads.caps_w, s->dacts.v, s->acts.u, s->params.caps_w,
                      B);
}

static void cpu_squash_backward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    squash_backward(s->dacts.u_pre, s->dacts.u, s->acts.u_pre, s->acts.u_norm2, B * d->I, d->D);
    primary_caps_backward(s->dacts.prim, s->dacts.u_pre, B, d->T, d->D, d->G);
}

static void cpu_primary_backward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    conv2d_shift_backward(s->dacts.a1, s->grads.prim_w, s->grads.prim_b, s->prim_dwt,
                          s->dacts.prim, s->acts.a1, s->prim_wt, B, d->C1, d->S1, d->S1, d->TD,
                          d->K2, d->ST2);
}

static void cpu_conv1_backward(caps_backend_state *s, int B) {
    const caps_dims *d = &s->d;
    relu_backward_inplace(s->dacts.a1, s->acts.a1, conv_act_size(B, d->C1, d->S1, d->S1, d->ST2));
    conv2d_rows_backward(s->grads.conv1_w, s->grads.conv1_b, s->col, s->dacts.a1, s->acts.x, B,
                         d->C, d->S, d->S, d->C1, d->K1, d->ST1, d->ST2);
}

const caps_backend caps_backend_cpu = {
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .read = cpu_read,
    .write = cpu_write,
    .zero = cpu_zero,
    .adam_step = cpu_adam_step,
    .input = cpu_input,
    .conv1_forward = cpu_conv1_forward,
    .primary_forward = cpu_primary_forward,
    .squash_forward = cpu_squash_forward,
    .digit_forward = cpu_digit_forward,
    .decoder_forward = cpu_decoder_forward,
    .recon_target = cpu_recon_target,
    .loss_forward = cpu_loss_forward,
    .lengths = cpu_lengths,
    .capsules = cpu_capsules,
    .reconstruction = cpu_reconstruction,
    .backward_begin = cpu_backward_begin,
    .loss_backward = cpu_loss_backward,
    .decoder_backward = cpu_decoder_backward,
    .digit_backward = cpu_digit_backward,
    .squash_backward = cpu_squash_backward,
    .primary_backward = cpu_primary_backward,
    .conv1_backward = cpu_conv1_backward,
    .arena_data = cpu_arena_data,
};
