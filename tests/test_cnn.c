/*
 * test_cnn.c: the baseline CNN (cnn.h). Its parameter count for the paper's MNIST network;
 * its three new layers ('same' convolution, dropout, softmax cross-entropy) against plain
 * loops and finite differences; and the whole network at a tiny shape: every parameter
 * tensor's gradient against finite differences (dropout on), the forward pass against a
 * plain reference, dropout off at test time, Adam lowering the loss, and the same seed
 * giving the same bits. Its model files (cnn_file.c): a round trip to the bit, damage and
 * truncation refused naming the file, and each network's loader refusing the other's file
 * with a message that says what the file is. Its training epoch: stopped and resumed, the
 * same bits as straight through.
 */
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "gradcheck.h"
#include "layers.h"
#include "test.h"
#include "test_files.h"

static int verbose(void) { return getenv("CAPS_TEST_VERBOSE") != NULL; }

/* ------------------------------------------------------------------------ parameter count */

/* Section 5's baseline on 28x28x1 MNIST, layer by layer (weights + biases):
 * conv 1*256*25 + 256, 256*256*25 + 256, 256*128*25 + 128; fc (128*28*28)*328 + 328,
 * 328*192 + 192, 192*10 + 10. */
TEST(paper_mnist_parameter_count) {
    caps_cnn_config c;
    caps_cnn_config_paper(&c, 28, 1, 10);
    caps_error err;
    EXPECT(caps_cnn_config_check(&c, &err) == CAPS_OK, "%s", err.msg);
    size_t s[CNN_NUM_PARAM_TENSORS];
    caps_cnn_param_sizes(s, &c);
    const size_t layers[6] = {6656, 1638656, 819328, 32915784, 63168, 1930};
    const size_t biases[6] = {256, 256, 128, 328, 192, 10};
    for (int l = 0; l < 6; l++) {
        EXPECT(s[2 * l] + s[2 * l + 1] == layers[l], "layer %d: %zu parameters, expected %zu", l,
               s[2 * l] + s[2 * l + 1], layers[l]);
        EXPECT(s[2 * l + 1] == biases[l], "layer %d: %zu biases, expected %zu", l, s[2 * l + 1],
               biases[l]);
    }
    size_t n = caps_cnn_num_params(&c);
    EXPECT(n == 35445522, "%zu parameters, expected 35,445,522", n);
    if (verbose())
        fprintf(stderr, "    paper CNN, MNIST: %zu parameters, %.4g GFLOP forward per image\n", n,
                caps_cnn_flops_forward(&c) * 1e-9);
}

/* CAPS_ERR_ARG, with the field's name in the message. */
static int rejected(const caps_cnn_config *c, const char *field) {
    caps_error err = {0, "", ""};
    return caps_cnn_config_check(c, &err) == CAPS_ERR_ARG && strstr(err.msg, field) != NULL;
}

TEST(config_check_names_the_bad_field) {
    caps_cnn_config good, c;
    caps_cnn_config_paper(&good, 28, 1, 10);
    c = good, c.kernel = 4;
    EXPECT(rejected(&c, "kernel"), "an even kernel accepted");
    c = good, c.kernel = 29;
    EXPECT(rejected(&c, "kernel"), "a 29x29 kernel on 28x28 images accepted");
    c = good, c.dropout = 1.0f;
    EXPECT(rejected(&c, "dropout"), "dropout 1 accepted");
    c = good, c.dropout = -0.25f;
    EXPECT(rejected(&c, "dropout"), "dropout -0.25 accepted");
    c = good, c.dropout = NAN;
    EXPECT(rejected(&c, "dropout"), "dropout NaN accepted");
    c = good, c.conv2_channels = 0;
    EXPECT(rejected(&c, "conv2_channels"), "0 channels accepted");
    c = good, c.num_classes = 1;
    EXPECT(rejected(&c, "num_classes"), "1 class accepted");
}

/* ------------------------------------------------------------------------ 'same' convolution */

typedef struct {
    int B, Ci, H, W, Co, K;
} conv_shape;

static const conv_shape conv_shapes[] = {
    {2, 3, 5, 4, 4, 3}, /* H != W: rows and columns not swapped */
    {2, 2, 6, 6, 3, 5}, /* the paper's kernel */
    {1, 1, 3, 7, 2, 5}, /* kernel taller than the image: rows of only padding above and below */
};
enum { NCONV = sizeof conv_shapes / sizeof conv_shapes[0] };

/* in [B][Ci][H][W] -> [B][Ci][H+2Q][W+2Q] with a zero border: PyTorch's F.pad. */
static float *pad_nchw(const float *in, int B, int C, int H, int W, int Q) {
    int Hp = H + 2 * Q, Wp = W + 2 * Q;
    float *p = gc_vec((size_t)B * C * Hp * Wp);
    for (int bc = 0; bc < B * C; bc++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                p[((size_t)bc * Hp + y + Q) * Wp + x + Q] = in[((size_t)bc * H + y) * W + x];
    return p;
}

static int count_far(const float *a, const float *b, size_t n, double rtol, double atol) {
    int bad = 0;
    for (size_t k = 0; k < n; k++) bad += !test_close(a[k], b[k], rtol, atol);
    return bad;
}

/* conv2d_same_* against the plain loop (conv2d.c) run on the zero-padded input: outputs,
 * weight and bias gradients, and the input gradient (the padded one cropped), added onto
 * what din held before. */
TEST(conv_same_equals_plain_loop_on_padded_input) {
    for (int t = 0; t < NCONV; t++) {
        const conv_shape *s = &conv_shapes[t];
        int Q = (s->K - 1) / 2, Hp = s->H + 2 * Q, Wp = s->W + 2 * Q;
        size_t n_in = (size_t)s->B * s->Ci * s->H * s->W, n_w = (size_t)s->Co * s->Ci * s->K * s->K;
        size_t n_out = (size_t)s->B * s->Co * s->H * s->W;
        size_t n_pad = conv_pad_size(s->B, s->Ci, s->H, s->W, s->K);
        caps_rng r;
        caps_rng_seed(&r, 40 + (uint64_t)t, 0);
        float *in = gc_vec(n_in), *w = gc_vec(n_w), *bias = gc_vec(s->Co), *dout = gc_vec(n_out);
        gc_fill(in, n_in, -1, 1, &r), gc_fill(w, n_w, -1, 1, &r), gc_fill(bias, s->Co, -1, 1, &r);
        gc_fill(dout, n_out, -1, 1, &r);
        /* the plain loop on the padded input */
        float *inpad = pad_nchw(in, s->B, s->Ci, s->H, s->W, Q);
        float *want = gc_vec(n_out), *dinpad = gc_vec((size_t)s->B * s->Ci * Hp * Wp);
        float *want_dw = gc_vec(n_w), *want_db = gc_vec(s->Co), *want_din = gc_vec(n_in);
        conv2d_naive_forward(want, inpad, w, bias, s->B, s->Ci, Hp, Wp, s->Co, s->K, 1);
        conv2d_naive_backward(dinpad, want_dw, want_db, dout, inpad, w, s->B, s->Ci, Hp, Wp, s->Co,
                              s->K, 1);
        for (int bc = 0; bc < s->B * s->Ci; bc++)
            for (int y = 0; y < s->H; y++)
                for (int x = 0; x < s->W; x++)
                    want_din[((size_t)bc * s->H + y) * s->W + x] =
                        0.5f + dinpad[((size_t)bc * Hp + y + Q) * Wp + x + Q];
        /* conv2d_same on channels-last copies */
        float *x = gc_vec(n_in), *xpad = gc_vec(n_pad), *wt = gc_vec(n_w), *out = gc_vec(n_out);
        float *got = gc_vec(n_out), *dact = gc_vec(n_out), *din = gc_vec(n_in);
        float *dw = gc_vec(n_w), *db = gc_vec(s->Co), *dxpad = gc_vec(n_pad), *dwt = gc_vec(n_w);
        float *got_din = gc_vec(n_in);
        conv_act_from_nchw(x, in, s->B, s->Ci, s->H, s->W, 1);
        conv2d_same_forward(out, xpad, wt, x, w, bias, s->B, s->Ci, s->H, s->W, s->Co, s->K);
        conv_act_to_nchw(got, out, s->B, s->Co, s->H, s->W, 1);
        EXPECT(count_far(got, want, n_out, 1e-4, 1e-5) == 0, "shape %d: forward differs", t);
        conv_act_from_nchw(dact, dout, s->B, s->Co, s->H, s->W, 1);
        for (size_t k = 0; k < n_in; k++) din[k] = 0.5f; /* backward adds */
        conv2d_same_backward(din, dw, db, dxpad, dwt, dact, xpad, wt, s->B, s->Ci, s->H, s->W,
                             s->Co, s->K);
        conv_act_to_nchw(got_din, din, s->B, s->Ci, s->H, s->W, 1);
        EXPECT(count_far(got_din, want_din, n_in, 1e-4, 1e-5) == 0, "shape %d: din differs", t);
        EXPECT(count_far(dw, want_dw, n_w, 1e-4, 1e-5) == 0, "shape %d: dw differs", t);
        EXPECT(count_far(db, want_db, s->Co, 1e-4, 1e-5) == 0, "shape %d: dbias differs", t);
        free(in), free(w), free(bias), free(dout), free(inpad), free(want), free(dinpad);
        free(want_dw), free(want_db), free(want_din), free(x), free(xpad), free(wt), free(out);
        free(got), free(dact), free(din), free(dw), free(db), free(dxpad), free(dwt), free(got_din);
    }
}

/* 'same': the output has the input's H x W. The forward writes exactly B*Co*H*W floats: a
 * buffer of NaNs with a guard behind it ends all finite, the guard untouched. */
#define GUARD 64

TEST(conv_same_output_is_input_size) {
    for (int t = 0; t < NCONV; t++) {
        const conv_shape *s = &conv_shapes[t];
        size_t n_in = (size_t)s->B * s->Ci * s->H * s->W, n_w = (size_t)s->Co * s->Ci * s->K * s->K;
        size_t n_out = (size_t)s->B * s->Co * s->H * s->W;
        caps_rng r;
        caps_rng_seed(&r, 50 + (uint64_t)t, 0);
        float *x = gc_vec(n_in), *w = gc_vec(n_w), *bias = gc_vec(s->Co), *wt = gc_vec(n_w);
        float *xpad = gc_vec(conv_pad_size(s->B, s->Ci, s->H, s->W, s->K));
        float *out = gc_vec(n_out + GUARD);
        gc_fill(x, n_in, -1, 1, &r), gc_fill(w, n_w, -1, 1, &r), gc_fill(bias, s->Co, -1, 1, &r);
        for (size_t k = 0; k < n_out + GUARD; k++) out[k] = NAN;
        conv2d_same_forward(out, xpad, wt, x, w, bias, s->B, s->Ci, s->H, s->W, s->Co, s->K);
        int unwritten = 0, overrun = 0;
        for (size_t k = 0; k < n_out; k++) unwritten += !isfinite(out[k]);
        for (size_t k = n_out; k < n_out + GUARD; k++) overrun += !isnan(out[k]);
        EXPECT(unwritten == 0 && overrun == 0,
               "shape %d: %d of %zu outputs unwritten, %d past the end", t, unwritten, n_out,
               overrun);
        free(x), free(w), free(bias), free(wt), free(xpad), free(out);
    }
}

typedef struct {
    gc_layer base;
    const conv_shape *s;
    float *in, *w, *bias, *xpad, *wt;
} conv_ctx;

static void conv_fwd(gc_layer *l) {
    conv_ctx *c = (conv_ctx *)l;
    const conv_shape *s = c->s;
    conv2d_same_forward(l->out, c->xpad, c->wt, c->in, c->w, c->bias, s->B, s->Ci, s->H, s->W,
                        s->Co, s->K);
}

TEST(conv_same_backward_matches_finite_differences) {
    for (int t = 0; t < 2; t++) {
        const conv_shape *s = &conv_shapes[t];
        size_t n_in = (size_t)s->B * s->Ci * s->H * s->W, n_w = (size_t)s->Co * s->Ci * s->K * s->K;
        size_t n_out = (size_t)s->B * s->Co * s->H * s->W;
        size_t n_pad = conv_pad_size(s->B, s->Ci, s->H, s->W, s->K);
        caps_rng r;
        caps_rng_seed(&r, 60 + (uint64_t)t, 0);
        conv_ctx c = {{conv_fwd, NULL, gc_vec(n_out), gc_vec(n_out), n_out}, s, gc_vec(n_in),
                      gc_vec(n_w), gc_vec(s->Co), gc_vec(n_pad), gc_vec(n_w)};
        gc_fill(c.in, n_in, -1, 1, &r), gc_fill(c.w, n_w, -0.5f, 0.5f, &r);
        gc_fill(c.bias, s->Co, -0.5f, 0.5f, &r), gc_fill((float *)c.base.r, n_out, -1, 1, &r);
        float *din = gc_vec(n_in), *dw = gc_vec(n_w), *db = gc_vec(s->Co);
        float *dxpad = gc_vec(n_pad), *dwt = gc_vec(n_w);
        conv_fwd(&c.base);
        conv2d_same_backward(din, dw, db, dxpad, dwt, c.base.r, c.xpad, c.wt, s->B, s->Ci, s->H,
                             s->W, s->Co, s->K);
        GRADCHECK("conv_same din", c.in, n_in, din, &c, 1e-2, 1e-3, 1e-4);
        GRADCHECK("conv_same dw", c.w, n_w, dw, &c, 1e-2, 1e-3, 1e-4);
        GRADCHECK("conv_same dbias", c.bias, s->Co, db, &c, 1e-2, 1e-3, 1e-4);
        free(c.base.out), free((float *)c.base.r), free(c.in), free(c.w), free(c.bias);
        free(c.xpad), free(c.wt), free(din), free(dw), free(db), free(dxpad), free(dwt);
    }
}

/* ------------------------------------------------------------------------ linear */

/* The fully connected layers' input gradient at the tiny network's fc1 shape (linear.c
 * has its own test; this one is the CNN's use of it). */
enum { LB = 2, LI = 72, LO = 5 };

typedef struct {
    gc_layer base;
    float *in, *w, *bias;
} linear_ctx;

static void linear_fwd(gc_layer *l) {
    linear_ctx *c = (linear_ctx *)l;
    linear_forward(l->out, c->in, c->w, c->bias, LB, LI, LO);
}

TEST(linear_input_gradient_matches_finite_differences) {
    caps_rng r;
    caps_rng_seed(&r, 70, 0);
    linear_ctx c = {{linear_fwd, NULL, gc_vec(LB * LO), gc_vec(LB * LO), LB * LO}, gc_vec(LB * LI),
                    gc_vec(LO * LI), gc_vec(LO)};
    gc_fill(c.in, LB * LI, -1, 1, &r), gc_fill(c.w, LO * LI, -1, 1, &r);
    gc_fill(c.bias, LO, -1, 1, &r), gc_fill((float *)c.base.r, LB * LO, -1, 1, &r);
    float *din = gc_vec(LB * LI), *dw = gc_vec(LO * LI), *db = gc_vec(LO);
    linear_backward(din, dw, db, c.base.r, c.in, c.w, LB, LI, LO);
    GRADCHECK("linear din", c.in, LB * LI, din, &c, 1e-2, 1e-3, 1e-4);
    free(c.base.out), free((float *)c.base.r), free(c.in), free(c.w), free(c.bias);
    free(din), free(dw), free(db);
}

/* ------------------------------------------------------------------------ softmax cross-entropy */

enum { SB = 4, SJ = 5 };

TEST(softmax_xent_values) {
    caps_rng r;
    caps_rng_seed(&r, 80, 0);
    float z[SB * SJ], prob[SB * SJ], loss[SB];
    const int labels[SB] = {0, 3, 4, 1};
    gc_fill(z, SB * SJ, -4, 4, &r);
    softmax_xent_forward(loss, prob, z, labels, SB, SJ);
    for (int b = 0; b < SB; b++) {
        double sum = 0.0, psum = 0.0;
        for (int k = 0; k < SJ; k++) sum += exp((double)z[b * SJ + k]);
        int bad = 0;
        for (int k = 0; k < SJ; k++) {
            bad += !test_close(prob[b * SJ + k], exp((double)z[b * SJ + k]) / sum, 1e-5, 1e-7);
            psum += prob[b * SJ + k];
        }
        double want = log(sum) - z[b * SJ + labels[b]];
        EXPECT(bad == 0 && test_close(psum, 1.0, 1e-6, 0),
               "image %d: %d probabilities wrong, sum %.9g", b, bad, psum);
        EXPECT(test_close(loss[b], want, 1e-5, 1e-7), "image %d: loss %.9g, expected %.9g", b,
               loss[b], want);
    }
}

/* Logits far beyond exp's range (exp(89) overflows a float): the maximum taken out first
 * keeps every value finite and exact. */
TEST(softmax_xent_large_logits_stay_finite) {
    const float z[2 * 3] = {1000.0f, 0.0f, -1000.0f, -1000.0f, -1000.0f, -1000.0f};
    const int labels[2] = {1, 2};
    float prob[2 * 3], loss[2];
    softmax_xent_forward(loss, prob, z, labels, 2, 3);
    EXPECT(prob[0] == 1.0f && prob[1] == 0.0f && prob[2] == 0.0f, "prob %g %g %g", prob[0], prob[1],
           prob[2]);
    EXPECT(test_close(loss[0], 1000.0, 1e-7, 0), "loss %g, expected 1000", loss[0]);
    EXPECT(test_close(prob[3], 1.0 / 3, 1e-6, 0) && test_close(loss[1], log(3.0), 1e-6, 0),
           "uniform: prob %g, loss %g", prob[3], loss[1]);
}

typedef struct {
    gc_layer base;
    float *z, *prob;
    const int *labels;
} xent_ctx;

static void xent_fwd(gc_layer *l) {
    xent_ctx *c = (xent_ctx *)l;
    softmax_xent_forward(l->out, c->prob, c->z, c->labels, SB, SJ);
}

/* The loss weighs every image by the same factor, as the batch mean does (1/B). */
#define XENT_WEIGHT 0.25f

TEST(softmax_xent_backward_matches_finite_differences) {
    caps_rng r;
    caps_rng_seed(&r, 81, 0);
    const int labels[SB] = {2, 0, 4, 4};
    float weights[SB];
    for (int b = 0; b < SB; b++) weights[b] = XENT_WEIGHT;
    xent_ctx c = {{xent_fwd, NULL, gc_vec(SB), weights, SB}, gc_vec(SB * SJ), gc_vec(SB * SJ),
                  labels};
    gc_fill(c.z, SB * SJ, -3, 3, &r);
    float *dz = gc_vec(SB * SJ);
    xent_fwd(&c.base);
    softmax_xent_backward(dz, c.prob, labels, XENT_WEIGHT, SB, SJ);
    GRADCHECK("softmax_xent dlogits", c.z, SB * SJ, dz, &c, 1e-2, 1e-3, 1e-4);
    free(c.base.out), free(c.z), free(c.prob), free(dz);
}

/* ------------------------------------------------------------------------ dropout */

/* Over many units: about 1 - p kept, each kept one scaled by exactly 1/(1-p), the mean
 * preserved; p = 0 keeps everything unscaled. */
TEST(dropout_keeps_one_minus_p_scaled) {
    enum { N = 100000 };
    const float p = 0.3f;
    float *in = gc_vec(N), *out = gc_vec(N), *mask = gc_vec(N);
    for (int k = 0; k < N; k++) in[k] = 1.0f;
    caps_rng r;
    caps_rng_seed(&r, 90, 0);
    dropout_forward(out, mask, in, N, p, &r);
    int kept = 0, odd = 0;
    double sum = 0.0;
    for (int k = 0; k < N; k++) {
        kept += out[k] != 0.0f;
        odd += out[k] != 0.0f && out[k] != 1.0f / (1.0f - p);
        sum += out[k];
    }
    /* the kept fraction's standard deviation is sqrt(0.21 / N) = 0.0014 */
    EXPECT(fabs(kept / (double)N - 0.7) < 0.01, "kept %d of %d", kept, N);
    EXPECT(odd == 0 && fabs(sum / N - 1.0) < 0.02, "%d odd values, mean %g", odd, sum / N);
    dropout_forward(out, mask, in, N, 0.0f, &r);
    int changed = 0;
    for (int k = 0; k < N; k++) changed += out[k] != in[k];
    EXPECT(changed == 0, "p = 0 changed %d units", changed);
    free(in), free(out), free(mask);
}

TEST(dropout_is_identity_at_test_time) {
    enum { N = 1000 };
    float in[N], out[N], mask[N];
    caps_rng r;
    caps_rng_seed(&r, 91, 0);
    gc_fill(in, N, -1, 1, &r);
    dropout_forward(out, mask, in, N, 0.5f, NULL);
    int changed = 0;
    for (int k = 0; k < N; k++) changed += out[k] != in[k] || mask[k] != 1.0f;
    EXPECT(changed == 0, "%d units changed at test time", changed);
}

typedef struct {
    gc_layer base;
    float *in, *mask;
    uint64_t seed;
} dropout_ctx;

enum { DN = 40 };
#define DROP_P 0.5f

/* The same seed every evaluation: the same mask, as within one training step. */
static void dropout_fwd(gc_layer *l) {
    dropout_ctx *c = (dropout_ctx *)l;
    caps_rng r;
    caps_rng_seed(&r, c->seed, 0);
    dropout_forward(l->out, c->mask, c->in, DN, DROP_P, &r);
}

TEST(dropout_backward_matches_finite_differences) {
    caps_rng r;
    caps_rng_seed(&r, 92, 0);
    dropout_ctx c = {{dropout_fwd, NULL, gc_vec(DN), gc_vec(DN), DN}, gc_vec(DN), gc_vec(DN), 93};
    gc_fill(c.in, DN, -1, 1, &r), gc_fill((float *)c.base.r, DN, -1, 1, &r);
    dropout_fwd(&c.base);
    int dropped = 0;
    for (int k = 0; k < DN; k++) dropped += c.mask[k] == 0.0f;
    EXPECT(dropped > 0 && dropped < DN, "%d of %d dropped: the check would see one case only",
           dropped, DN);
    float *din = gc_vec(DN);
    dropout_backward(din, c.base.r, c.mask, DN);
    GRADCHECK("dropout din", c.in, DN, din, &c, 1e-2, 1e-3, 1e-4);
    free(c.base.out), free((float *)c.base.r), free(c.in), free(c.mask), free(din);
}

/* ------------------------------------------------------------------------ the network */

/* Tiny: 6x6 images, the paper's 5x5 kernel, conv 3/4/2 channels, fc 5/5, 3 classes. */
static caps_cnn_config tiny_config(void) {
    caps_cnn_config c = {6, 1, 3, 4, 2, 5, 5, 5, 3, 0.5f};
    return c;
}

static caps_cnn *make_model(const caps_cnn_config *cfg, int max_batch, uint64_t seed) {
    caps_cnn *m;
    caps_error err;
    if (caps_cnn_create(&m, cfg, max_batch, &err) != CAPS_OK) {
        fprintf(stderr, "caps_cnn_create: %s\n", err.msg);
        abort();
    }
    caps_cnn_init_weights(m, seed);
    return m;
}

/* Images in [0, 1) and labels b mod J. */
static void make_batch(float *images, int *labels, const caps_cnn_config *cfg, int B,
                       uint64_t seed) {
    caps_rng r;
    caps_rng_seed(&r, seed, 0);
    size_t P = (size_t)cfg->in_channels * cfg->image_size * cfg->image_size;
    gc_fill(images, (size_t)B * P, 0, 1, &r);
    for (int b = 0; b < B; b++) labels[b] = b % cfg->num_classes;
}

typedef struct {
    caps_cnn *m;
    const float *images;
    const int *labels;
    int B;
    uint64_t dropout_seed;
} model_ctx;

static uint64_t relu_signature(uint64_t sig, const float *x, size_t n) {
    for (size_t k = 0; k < n; k++) sig = gc_mix(sig, x[k] > 0.0f);
    return sig;
}

/* The network's own loss, the batch mean, in training mode with a fixed dropout mask; the
 * kinks are the five ReLU layers' on/off pattern. */
static double model_loss(void *ctx, uint64_t *signature) {
    model_ctx *c = ctx;
    caps_cnn *m = c->m;
    const caps_cnn_config *cfg = &m->cfg;
    double loss = caps_cnn_forward(m, c->images, c->labels, c->B, 1, c->dropout_seed);
    size_t SSB = (size_t)cfg->image_size * cfg->image_size * c->B;
    uint64_t sig = 0;
    sig = relu_signature(sig, m->a.a1, SSB * cfg->conv1_channels);
    sig = relu_signature(sig, m->a.a2, SSB * cfg->conv2_channels);
    sig = relu_signature(sig, m->a.a3, SSB * cfg->conv3_channels);
    sig = relu_signature(sig, m->a.h4, (size_t)c->B * cfg->fc1);
    sig = relu_signature(sig, m->a.h5, (size_t)c->B * cfg->fc2);
    *signature = sig;
    return loss;
}

/* Every parameter tensor of the network against central differences of its loss, dropout
 * on (the mask fixed by its seed, so the check runs through dropout's backward). */
TEST(network_gradients_match_finite_differences) {
    caps_cnn_config cfg = tiny_config();
    enum { B = 3 };
    /* A network this small has many dead ReLUs; with this seed every fc2 unit is alive,
     * and the mask of dropout_seed 3 keeps 8 of its 15 outputs. */
    caps_cnn *m = make_model(&cfg, B, 5);
    float images[B * 36];
    int labels[B];
    make_batch(images, labels, &cfg, B, 2);
    model_ctx c = {m, images, labels, B, 3};
    uint64_t sig;
    double loss = model_loss(&c, &sig);
    int dropped = 0;
    for (int k = 0; k < B * cfg.fc2; k++) dropped += m->a.mask[k] == 0.0f;
    EXPECT(dropped > 0 && dropped < B * cfg.fc2, "%d of %d units dropped", dropped, B * cfg.fc2);
    caps_cnn_zero_grad(m);
    caps_cnn_backward(m);
    if (verbose())
        fprintf(stderr, "    tiny network: loss %.6f, %d of %d dropped\n", loss, dropped,
                B * cfg.fc2);
    for (int t = 0; t < CNN_NUM_PARAM_TENSORS; t++) {
        size_t n = m->param_sizes[t];
        float *analytic = gc_vec(n);
        memcpy(analytic, m->dw[t], n * sizeof(float));
        gc_result g = gradcheck(caps_cnn_param_name(t), m->w[t], n, analytic, model_loss, &c, 1e-2,
                                1e-3, 1e-4);
        EXPECT(g.failed == 0 && g.checked * 10 >= n * 9 && g.resolved * 10 >= n,
               "%s: %zu of %zu failed, %zu skipped, %zu resolved (max rel err %.3g)",
               caps_cnn_param_name(t), g.failed, n, g.skipped, g.resolved, g.max_rel_err);
        /* The whole tensor at once, along its gradient: one number free of the elements
         * too small to rise above float32 rounding. Where it cannot be had (conv1's
         * gradient is small, and a step big enough to resolve it moves one of the 324
         * ReLUs across its kink: along < 0), the elementwise check above stands alone. */
        double along = gradcheck_along(m->w[t], n, analytic, model_loss, &c, 3e-3);
        EXPECT(along < 5e-3, "%s: directional derivative off by %.3g", caps_cnn_param_name(t),
               along);
        if (verbose())
            fprintf(stderr,
                    "    %-12s %4zu checked, %zu skipped, %4zu resolved, max rel err %.2e, "
                    "along the gradient %.2e\n",
                    caps_cnn_param_name(t), g.checked, g.skipped, g.resolved, g.max_rel_err, along);
        free(analytic);
    }
    caps_cnn_free(m);
}

/* The network at test time against plain loops over PyTorch's layouts: the plain
 * convolution on F.pad-ed NCHW inputs, ReLU, x.flatten(1), fc layers in double, softmax.
 * Two input channels and a 3x3 kernel: other shapes than the gradient check's. */
TEST(network_forward_equals_plain_reference) {
    caps_cnn_config cfg = {5, 2, 3, 2, 4, 3, 6, 5, 4, 0.5f};
    enum { B = 3 };
    int S = cfg.image_size, K = cfg.kernel, Q = (K - 1) / 2, J = cfg.num_classes;
    int Cs[4] = {cfg.in_channels, cfg.conv1_channels, cfg.conv2_channels, cfg.conv3_channels};
    caps_cnn *m = make_model(&cfg, B, 11);
    float images[B * 2 * 25];
    int labels[B];
    make_batch(images, labels, &cfg, B, 12);
    float loss = caps_cnn_forward(m, images, labels, B, 0, 0);

    /* x: [B][C][S][S], three 'same' convolutions with ReLU */
    float *x = gc_vec((size_t)B * 4 * S * S);
    memcpy(x, images, sizeof images);
    for (int l = 0; l < 3; l++) {
        float *xp = pad_nchw(x, B, Cs[l], S, S, Q), *y = gc_vec((size_t)B * Cs[l + 1] * S * S);
        conv2d_naive_forward(y, xp, m->w[2 * l], m->w[2 * l + 1], B, Cs[l], S + 2 * Q, S + 2 * Q,
                             Cs[l + 1], K, 1);
        for (size_t k = 0; k < (size_t)B * Cs[l + 1] * S * S; k++) x[k] = y[k] > 0.0f ? y[k] : 0.0f;
        free(xp), free(y);
    }
    /* x is now [B][C3][S][S] = [B][N3]; three fc layers */
    int dims[4] = {cfg.conv3_channels * S * S, cfg.fc1, cfg.fc2, J};
    double h[B][128], z[B][128];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < dims[0]; i++) h[b][i] = x[(size_t)b * dims[0] + i];
    for (int l = 0; l < 3; l++) {
        const float *wl = m->w[CNN_FC1_W + 2 * l], *bl = m->w[CNN_FC1_B + 2 * l];
        for (int b = 0; b < B; b++)
            for (int o = 0; o < dims[l + 1]; o++) {
                double acc = bl[o];
                for (int i = 0; i < dims[l]; i++)
                    acc += (double)wl[(size_t)o * dims[l] + i] * h[b][i];
                z[b][o] = l < 2 && acc < 0.0 ? 0.0 : acc;
            }
        memcpy(h, z, sizeof h);
    }
    double want_loss = 0.0;
    int bad = 0;
    for (int b = 0; b < B; b++) {
        double mx = h[b][0], sum = 0.0;
        for (int k = 1; k < J; k++) mx = h[b][k] > mx ? h[b][k] : mx;
        for (int k = 0; k < J; k++) sum += exp(h[b][k] - mx);
        for (int k = 0; k < J; k++)
            bad += !test_close(m->a.prob[b * J + k], exp(h[b][k] - mx) / sum, 1e-4, 1e-6);
        want_loss += (log(sum) - (h[b][labels[b]] - mx)) / B;
    }
    EXPECT(bad == 0, "%d probabilities differ from the plain network", bad);
    EXPECT(test_close(loss, want_loss, 1e-5, 1e-6), "loss %.9g, plain network %.9g", loss,
           want_loss);
    free(x);
    caps_cnn_free(m);
}

/* At test time the dropout seed makes no difference; in training it does. */
TEST(network_dropout_off_at_test_time) {
    caps_cnn_config cfg = tiny_config();
    cfg.fc2 = 16;
    enum { B = 4 };
    int J = cfg.num_classes;
    caps_cnn *m = make_model(&cfg, B, 21);
    float images[B * 36], p1[B * 3], p2[B * 3];
    int labels[B];
    make_batch(images, labels, &cfg, B, 22);
    caps_cnn_forward(m, images, labels, B, 0, 1);
    memcpy(p1, m->a.prob, sizeof p1);
    int scaled = 0;
    for (int k = 0; k < B * cfg.fc2; k++)
        scaled += m->a.mask[k] != 1.0f || m->a.h5d[k] != m->a.h5[k];
    caps_cnn_forward(m, images, labels, B, 0, 2);
    memcpy(p2, m->a.prob, sizeof p2);
    EXPECT(scaled == 0 && memcmp(p1, p2, sizeof p1) == 0,
           "test time: %d units changed, probabilities %s by the seed", scaled,
           memcmp(p1, p2, sizeof p1) ? "changed" : "unchanged");
    caps_cnn_forward(m, images, labels, B, 1, 1);
    memcpy(p1, m->a.prob, sizeof p1);
    caps_cnn_forward(m, images, labels, B, 1, 2);
    EXPECT(memcmp(p1, m->a.prob, (size_t)B * J * sizeof(float)) != 0,
           "training: two dropout seeds gave the same probabilities");
    caps_cnn_free(m);
}

/* A few Adam steps on one fixed batch lower its loss (measured at test time, so dropout
 * does not blur the comparison). */
TEST(adam_steps_lower_the_loss) {
    caps_cnn_config cfg = tiny_config();
    cfg.fc2 = 8;
    enum { B = 6, STEPS = 50 };
    caps_cnn *m = make_model(&cfg, B, 31);
    float images[B * 36];
    int labels[B];
    make_batch(images, labels, &cfg, B, 32);
    caps_adam hp;
    caps_adam_default(&hp);
    float before = caps_cnn_forward(m, images, labels, B, 0, 0);
    for (int t = 0; t < STEPS; t++) {
        caps_cnn_forward(m, images, labels, B, 1, 100 + (uint64_t)t);
        caps_cnn_zero_grad(m);
        caps_cnn_backward(m);
        caps_cnn_adam_step(m, &hp, 1e-2f);
    }
    float after = caps_cnn_forward(m, images, labels, B, 0, 0);
    EXPECT(after < 0.5f * before, "loss %.4f -> %.4f after %d steps", before, after, STEPS);
    if (verbose()) fprintf(stderr, "    %d Adam steps: loss %.4f -> %.4f\n", STEPS, before, after);
    caps_cnn_free(m);
}

/* Two models from the same seed, trained the same way, hold the same bits; another seed
 * gives other weights. */
TEST(same_seed_same_bits) {
    caps_cnn_config cfg = tiny_config();
    enum { B = 4 };
    caps_cnn *m1 = make_model(&cfg, B, 41), *m2 = make_model(&cfg, B, 41);
    caps_cnn *m3 = make_model(&cfg, B, 42);
    EXPECT(memcmp(m1->params, m3->params, m1->num_params * sizeof(float)) != 0,
           "seeds 41 and 42 gave the same weights");
    float images[B * 36];
    int labels[B];
    make_batch(images, labels, &cfg, B, 43);
    caps_adam hp;
    caps_adam_default(&hp);
    caps_cnn *ms[2] = {m1, m2};
    float losses[2][3];
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < 3; t++) {
            losses[k][t] = caps_cnn_forward(ms[k], images, labels, B, 1, 200 + (uint64_t)t);
            caps_cnn_zero_grad(ms[k]);
            caps_cnn_backward(ms[k]);
            caps_cnn_adam_step(ms[k], &hp, 1e-2f);
        }
    EXPECT(memcmp(losses[0], losses[1], sizeof losses[0]) == 0, "losses differ");
    EXPECT(memcmp(m1->params, m2->params, m1->num_params * sizeof(float)) == 0 &&
               memcmp(m1->adam_v, m2->adam_v, m1->num_params * sizeof(float)) == 0,
           "weights or Adam moments differ after 3 steps");
    caps_cnn_free(m1), caps_cnn_free(m2), caps_cnn_free(m3);
}

/* ------------------------------------------------------------------------ model files */

static const char cnn_test_log[] = "epoch,train_loss\n1,2.3\n";

/* A state with every field set to something other than its default. */
static void fill_cnn_state(caps_train_state *st) {
    caps_train_state_default(st);
    st->lr = 0.0025f;
    st->lr_decay = 0.95f;
    st->recon_weight = 0.0f;
    st->batch = 7;
    st->max_shift = 1;
    st->limit = 123;
    st->seed = 0x1234567890ULL;
    st->epoch = 3;
    st->batch_in_epoch = 5;
    st->epoch_loss_sum = 1.25;
    st->epoch_margin_sum = 1.25;
    st->epoch_seconds = 2.5;
    st->epoch_images = 35;
}

/* The tiny model with Adam moments that are not zero, names, saved at path. */
static caps_cnn *save_tiny_cnn(const char *path) {
    caps_cnn_config cfg = tiny_config();
    caps_cnn *m = make_model(&cfg, 2, 3);
    for (size_t k = 0; k < m->num_params; k++) {
        m->adam_m[k] = 0.001f * (float)k;
        m->adam_v[k] = 1e-6f * (float)(k % 17);
    }
    m->adam_t = 42;
    const char *names[3] = {"zero", "one", "two"};
    caps_error err;
    caps_train_state st;
    fill_cnn_state(&st);
    if (caps_cnn_set_class_names(m, 3, names, &err) != CAPS_OK ||
        caps_cnn_save(m, &st, cnn_test_log, path, &err) != CAPS_OK) {
        fprintf(stderr, "save %s: %s\n", path, err.msg);
        abort();
    }
    return m;
}

TEST(file_round_trip_is_bit_identical) {
    char p[TEST_PATH_MAX];
    test_path(p, "round.cnn");
    caps_cnn *m = save_tiny_cnn(p);
    caps_cnn *got = NULL;
    caps_train_state st, want;
    fill_cnn_state(&want);
    char *log = NULL;
    caps_error err;
    EXPECT(caps_cnn_is_model_file(p) == 1, "the magic is recognised");
    int rc = caps_cnn_load(&got, &st, &log, p, 4, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    if (rc == CAPS_OK) {
        size_t bytes = m->num_params * sizeof(float);
        EXPECT(memcmp(&got->cfg, &m->cfg, sizeof m->cfg) == 0, "the same configuration");
        EXPECT(got->max_batch == 4, "the batch asked for (got %d)", got->max_batch);
        EXPECT(memcmp(got->params, m->params, bytes) == 0, "the same parameters");
        EXPECT(memcmp(got->adam_m, m->adam_m, bytes) == 0, "the same first moments");
        EXPECT(memcmp(got->adam_v, m->adam_v, bytes) == 0, "the same second moments");
        EXPECT(got->adam_t == 42, "Adam's step (got %lld)", (long long)got->adam_t);
        EXPECT(st.lr == want.lr && st.lr_decay == want.lr_decay && st.batch == want.batch &&
               st.max_shift == want.max_shift && st.limit == want.limit &&
               st.seed == want.seed && st.epoch == want.epoch &&
               st.batch_in_epoch == want.batch_in_epoch &&
               st.epoch_loss_sum == want.epoch_loss_sum &&
               st.epoch_margin_sum == want.epoch_margin_sum &&
               st.epoch_seconds == want.epoch_seconds && st.epoch_images == want.epoch_images,
               "the same training state");
        EXPECT(log && strcmp(log, cnn_test_log) == 0, "the same log (got '%s')", log ? log : "");
        EXPECT(got->class_names && strcmp(got->class_names[0], "zero") == 0 &&
               strcmp(got->class_names[2], "two") == 0, "the same class names");
        caps_cnn_config cfg;
        EXPECT(caps_cnn_peek(&cfg, &st, p, &err) == CAPS_OK && cfg.fc1 == m->cfg.fc1 &&
               st.epoch == 3, "peek reads the header");
    }
    free(log);
    caps_cnn_free(got);
    caps_cnn_free(m);
}

/* Loading path fails with CAPS_ERR_FORMAT and a message holding what. */
static void expect_refused(const char *path, const char *what) {
    caps_cnn *got = NULL;
    caps_error err;
    int rc = caps_cnn_load(&got, NULL, NULL, path, 1, &err);
    EXPECT(rc == CAPS_ERR_FORMAT && got == NULL, "refused (rc %d)", rc);
    if (rc == CAPS_ERR_FORMAT) {
        EXPECT(strstr(err.msg, what) != NULL, "'%s' in '%s'", what, err.msg);
        EXPECT(strstr(err.msg, path) != NULL, "the file named in '%s'", err.msg);
    }
    caps_cnn_free(got);
}

TEST(damaged_and_truncated_files_are_refused) {
    char p[TEST_PATH_MAX], q[TEST_PATH_MAX];
    test_path(p, "good.cnn");
    test_path(q, "bad.cnn");
    caps_cnn_free(save_tiny_cnn(p));
    size_t n;
    unsigned char *buf = test_read_file(p, &n);
    EXPECT(buf != NULL, "read %s", p);
    if (!buf) return;
    buf[200] ^= 0x10; /* a parameter bit */
    test_write_file(q, buf, n);
    expect_refused(q, "checksum mismatch");
    buf[200] ^= 0x10;
    test_write_file(q, buf, n - 1);
    expect_refused(q, "truncated");
    test_write_file(q, buf, 100);
    expect_refused(q, "truncated header");
    buf[8] = 9; /* the version */
    test_write_file(q, buf, n);
    expect_refused(q, "version");
    free(buf);
}

TEST(each_loader_refuses_the_other_network) {
    char cnn_path[TEST_PATH_MAX], caps_path[TEST_PATH_MAX];
    test_path(cnn_path, "net.cnn");
    test_path(caps_path, "net.caps");
    caps_cnn_free(save_tiny_cnn(cnn_path));
    caps_config cfg;
    caps_config_mnist(&cfg);
    cfg.conv1_channels = 4;
    cfg.primary_types = 2;
    cfg.decoder_hidden1 = 8;
    cfg.decoder_hidden2 = 8;
    capsnet *caps = NULL;
    caps_error err;
    caps_train_state st;
    caps_train_state_default(&st);
    int rc = capsnet_create(&caps, &cfg, 1, NULL, &err);
    EXPECT(rc == CAPS_OK, "capsnet_create: %s", err.msg);
    if (rc) return;
    capsnet_init_weights(caps, 1);
    rc = caps_model_save(caps, &st, NULL, caps_path, &err);
    capsnet_free(caps);
    EXPECT(rc == CAPS_OK, "save: %s", err.msg);
    EXPECT(caps_cnn_is_model_file(caps_path) == 0, "a capsule file is no CNN file");
    expect_refused(caps_path, "a capsule network model, not a baseline CNN");
    caps = NULL;
    rc = caps_model_load(&caps, NULL, NULL, cnn_path, 1, NULL, &err);
    EXPECT(rc == CAPS_ERR_FORMAT && caps == NULL, "capsule loader refuses (rc %d)", rc);
    if (rc == CAPS_ERR_FORMAT)
        EXPECT(strstr(err.msg, "a baseline CNN model (capsnet train --arch cnn), not a capsule "
                               "network") != NULL && strstr(err.msg, cnn_path) != NULL,
               "says what the file is: '%s'", err.msg);
    capsnet_free(caps);
}

/* ------------------------------------------------------------------------ training */

/* 40 images of the tiny shape, labels k mod J. */
static void make_dataset(caps_dataset *ds, const caps_cnn_config *cfg, int count) {
    memset(ds, 0, sizeof *ds);
    int S = cfg->image_size;
    ds->count = count;
    ds->rows = ds->cols = S;
    ds->channels = cfg->in_channels;
    ds->images = malloc((size_t)count * S * S * cfg->in_channels);
    ds->labels = malloc((size_t)count);
    caps_rng r;
    caps_rng_seed(&r, 77, 0);
    for (size_t k = 0; k < (size_t)count * S * S * cfg->in_channels; k++)
        ds->images[k] = (unsigned char)caps_rng_below(&r, 256);
    for (int k = 0; k < count; k++) ds->labels[k] = (unsigned char)(k % cfg->num_classes);
}

static int stop_after_three(const caps_progress *p, void *ctx) {
    (void)ctx;
    return p->batch == 3;
}

TEST(stopped_and_resumed_epoch_is_bit_identical) {
    caps_cnn_config cfg = tiny_config();
    caps_dataset ds;
    make_dataset(&ds, &cfg, 40);
    caps_train_state a, b;
    caps_train_state_default(&a);
    a.batch = 4;
    a.max_shift = 1;
    a.seed = 5;
    b = a;
    caps_cnn *ma = make_model(&cfg, 4, 5), *mb = make_model(&cfg, 4, 5);
    caps_epoch_stats es;
    caps_error err;
    for (int e = 0; e < 2; e++)
        EXPECT(caps_cnn_train_epoch(ma, &a, &ds, &es, NULL, NULL, &err) == CAPS_OK, "%s",
               err.msg);
    /* b: stopped after 3 batches of each epoch, then continued from its state */
    for (int e = 0; e < 2; e++) {
        EXPECT(caps_cnn_train_epoch(mb, &b, &ds, &es, stop_after_three, NULL, &err) == CAPS_OK,
               "%s", err.msg);
        EXPECT(es.stopped && b.batch_in_epoch == 3, "stopped at batch 3 (got %lld)",
               (long long)b.batch_in_epoch);
        EXPECT(caps_cnn_train_epoch(mb, &b, &ds, &es, NULL, NULL, &err) == CAPS_OK, "%s",
               err.msg);
    }
    EXPECT(a.epoch == 2 && b.epoch == 2, "two epochs (%d, %d)", a.epoch, b.epoch);
    EXPECT(ma->adam_t == 20 && mb->adam_t == 20, "ten steps an epoch");
    EXPECT(memcmp(ma->params, mb->params, ma->num_params * sizeof(float)) == 0,
           "the same parameters, bit for bit");
    caps_eval ev;
    EXPECT(caps_cnn_evaluate(ma, &ds, 10, NULL, &ev, NULL, NULL, &err) == CAPS_OK, "%s",
           err.msg);
    EXPECT(ev.total == 10 && ev.num_classes == 3, "ten images evaluated (got %d)", ev.total);
    double sum = 0.0;
    for (int j = 0; j < 3; j++) sum += ev.lengths[j];
    EXPECT(fabs(sum - 1.0) < 1e-5, "the probabilities of an image sum to 1 (got %g)", sum);
    EXPECT(ev.score[0] == ev.lengths[ev.pred[0]], "score is the predicted class's probability");
    caps_eval_free(&ev);
    caps_cnn_free(ma);
    caps_cnn_free(mb);
    caps_dataset_free(&ds);
}

int main(void) {
    RUN(paper_mnist_parameter_count);
    RUN(config_check_names_the_bad_field);
    RUN(conv_same_equals_plain_loop_on_padded_input);
    RUN(conv_same_output_is_input_size);
    RUN(conv_same_backward_matches_finite_differences);
    RUN(linear_input_gradient_matches_finite_differences);
    RUN(softmax_xent_values);
    RUN(softmax_xent_large_logits_stay_finite);
    RUN(softmax_xent_backward_matches_finite_differences);
    RUN(dropout_keeps_one_minus_p_scaled);
    RUN(dropout_is_identity_at_test_time);
    RUN(dropout_backward_matches_finite_differences);
    RUN(network_gradients_match_finite_differences);
    RUN(network_forward_equals_plain_reference);
    RUN(network_dropout_off_at_test_time);
    RUN(adam_steps_lower_the_loss);
    RUN(same_seed_same_bits);
    if (!test_dir_create("cnn")) return 1;
    RUN(file_round_trip_is_bit_identical);
    RUN(damaged_and_truncated_files_are_refused);
    RUN(each_loader_refuses_the_other_network);
    RUN(stopped_and_resumed_epoch_is_bit_identical);
    test_dir_remove();
    return TEST_SUMMARY();
}
