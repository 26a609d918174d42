/*
 * cnn.h: the baseline CNN of Sabour et al. (2017), section 5, the network the capsule
 * network is compared with, and the three layers it adds to layers.h:
 *
 *   x [C][S][S] -> conv 5x5 C1 'same', ReLU -> conv 5x5 C2 'same', ReLU
 *               -> conv 5x5 C3 'same', ReLU -> flatten [C3*S*S]
 *               -> FC F1, ReLU -> FC F2, ReLU -> dropout p -> FC J -> softmax
 *   loss = mean over the batch of the cross-entropy -log softmax(z)_y
 *
 * The paper's numbers (caps_cnn_config_paper): C1, C2, C3 = 256, 256, 128, K = 5, stride 1,
 * no pooling, F1, F2 = 328, 192, J = 10; 35,445,522 parameters for 28x28x1 MNIST. The
 * shapes come from caps_cnn_config alone, so a cheaper variant is other numbers.
 *
 * Internal (like layers.h and model.h): the library and its tests include it; the public
 * API (include/capsnet.h) does not know this model yet.
 *
 * Dimension letters:
 *   B images; C input channels; S image side (H = W = S, every conv keeps it: stride 1,
 *   'same' padding); K kernel side (odd); Q = (K - 1) / 2 padding; Sp = S + 2Q padded side;
 *   C1, C2, C3 conv channels; N3 = C3*S*S flattened features; F1, F2 hidden units; J classes.
 *   For a single conv layer: Ci, Co input and output channels, H x W its input (and output).
 */
#ifndef CAPS_CNN_H
#define CAPS_CNN_H

#include <stddef.h>

#include "capsnet.h"

/* ------------------------------------------------------------------------ layers */

/* ---- conv2d_same.c: stride-1 convolution with 'same' zero padding (PyTorch's
 * nn.Conv2d(Ci, Co, K, padding=(K-1)/2)) on channels-last activations [H][B][W][C], the
 * row-phased layout of conv2d.c with one phase. */

/* Floats of the padded copy of an [H][B][W][C] activation: [H+K-1][B][W+K-1][C]. */
size_t conv_pad_size(int B, int C, int H, int W, int K);
/* xpad: [H+2Q][B][W+2Q][C], zero border; x: [H][B][W][C]. */
void conv_pad_forward(float *xpad, const float *x, int B, int C, int H, int W, int K);
/* dx += the interior of dxpad (the border held constants). */
void conv_pad_backward(float *dx, const float *dxpad, int B, int C, int H, int W, int K);
/* out: [H][B][W][Co]; caches for backward: xpad [H+2Q][B][W+2Q][Ci] (conv_pad_size) and
 * wt [K][K][Ci][Co] (the weights reordered); in: [H][B][W][Ci]; w: [Co][Ci][K][K]; bias: [Co]. */
void conv2d_same_forward(float *out, float *xpad, float *wt, const float *in, const float *w,
                         const float *bias, int B, int Ci, int H, int W, int Co, int K);
/* din (NULL: no input gradient, as for the image), dw, dbias += the derivatives; scratch:
 * dxpad (conv_pad_size of the input) and dwt [K][Ci][Co]. */
void conv2d_same_backward(float *din, float *dw, float *dbias, float *dxpad, float *dwt,
                          const float *dout, const float *xpad, const float *wt, int B, int Ci,
                          int H, int W, int Co, int K);

/* ---- dropout.c: inverted dropout (PyTorch's nn.Dropout(p)) */

/* out, mask, in: [n]. With rng (training): mask[k] = 1/(1-p) with probability 1-p, else 0,
 * out = mask * in. With rng NULL (test): mask = 1, out = in. out may be in. */
void dropout_forward(float *out, float *mask, const float *in, size_t n, float p, caps_rng *rng);
void dropout_backward(float *din, const float *dout, const float *mask, size_t n);

/* ---- softmax_xent.c: softmax and cross-entropy (PyTorch's F.cross_entropy per image) */

/* loss: [B] -log prob[b][labels[b]] (skipped when labels is NULL); prob: [B][J];
 * logits: [B][J]; labels: [B] in [0, J). */
void softmax_xent_forward(float *loss, float *prob, const float *logits, const int *labels,
                          int B, int J);
/* dlogits += scale * (prob - onehot(labels)); scale is each image's weight (1/B: the mean). */
void softmax_xent_backward(float *dlogits, const float *prob, const int *labels, float scale,
                           int B, int J);

/* ------------------------------------------------------------------------ the model */

typedef struct {
    int image_size;     /* S */
    int in_channels;    /* C */
    int conv1_channels; /* C1 */
    int conv2_channels; /* C2 */
    int conv3_channels; /* C3 */
    int kernel;         /* K, odd ('same' padding (K-1)/2 on each side) */
    int fc1, fc2;       /* F1, F2 */
    int num_classes;    /* J */
    float dropout;      /* p, the probability of dropping a unit, in [0, 1) */
} caps_cnn_config;

/* The paper's network for S x S x C images and J classes (28, 1, 10: MNIST). */
void caps_cnn_config_paper(caps_cnn_config *cfg, int image_size, int in_channels,
                           int num_classes);
/* CAPS_OK, or CAPS_ERR_ARG naming the field: every size in 1..4096, the kernel odd and at
 * most the image side, 0 <= p < 1, at least 2 classes, parameters and activations of one
 * image below 2^31. Every other function may assume a checked configuration. */
int caps_cnn_config_check(const caps_cnn_config *cfg, caps_error *err);

/* The parameter tensors in arena order, PyTorch's layouts and its state_dict names. */
enum {
    CNN_CONV1_W, /* conv1.weight [C1][C][K][K]  */
    CNN_CONV1_B, /* conv1.bias   [C1]           */
    CNN_CONV2_W, /* conv2.weight [C2][C1][K][K] */
    CNN_CONV2_B, /* conv2.bias   [C2]           */
    CNN_CONV3_W, /* conv3.weight [C3][C2][K][K] */
    CNN_CONV3_B, /* conv3.bias   [C3]           */
    CNN_FC1_W,   /* fc1.weight   [F1][N3]       */
    CNN_FC1_B,   /* fc1.bias     [F1]           */
    CNN_FC2_W,   /* fc2.weight   [F2][F1]       */
    CNN_FC2_B,   /* fc2.bias     [F2]           */
    CNN_FC3_W,   /* fc3.weight   [J][F2]        */
    CNN_FC3_B,   /* fc3.bias     [J]            */
    CNN_NUM_PARAM_TENSORS
};

/* "conv1.weight" .. "fc3.bias" for tensor k. */
const char *caps_cnn_param_name(int k);
/* Elements of each tensor, and their sum (35,445,522 for the paper's MNIST network): from
 * the configuration alone, nothing allocated. */
void caps_cnn_param_sizes(size_t sizes[CNN_NUM_PARAM_TENSORS], const caps_cnn_config *cfg);
size_t caps_cnn_num_params(const caps_cnn_config *cfg);
/* Multiply-adds times 2 per image: forward, and backward (gradients of the weights and of
 * every activation but the image). */
double caps_cnn_flops_forward(const caps_cnn_config *cfg);
double caps_cnn_flops_backward(const caps_cnn_config *cfg);

/* The forward pass's activations and the caches backward reads, for max_batch images. */
typedef struct {
    float *x0;     /* [S][B][S][C]    the images, channels last */
    float *xpad0;  /* [Sp][B][Sp][C]  conv1's padded input */
    float *wt1;    /* [K][K][C][C1]   conv1.weight reordered for conv2d_shift */
    float *a1;     /* [S][B][S][C1]   ReLU(conv1) */
    float *xpad1;  /* [Sp][B][Sp][C1] */
    float *wt2;    /* [K][K][C1][C2] */
    float *a2;     /* [S][B][S][C2]   ReLU(conv2) */
    float *xpad2;  /* [Sp][B][Sp][C2] */
    float *wt3;    /* [K][K][C2][C3] */
    float *a3;     /* [S][B][S][C3]   ReLU(conv3) */
    float *h3;     /* [B][N3]         a3 as NCHW, flattened: torch.flatten(x, 1) */
    float *h4;     /* [B][F1]         ReLU(fc1) */
    float *h5;     /* [B][F2]         ReLU(fc2) */
    float *mask;   /* [B][F2]         dropout's factors, 0 or 1/(1-p) (1 at test) */
    float *h5d;    /* [B][F2]         dropout(h5) */
    float *logits; /* [B][J]          fc3 */
    float *prob;   /* [B][J]          softmax */
    float *loss;   /* [B]             cross-entropy per image */
} caps_cnn_acts;
#define CNN_NUM_ACTS 18

/* The gradients of the activations (each the loss's derivative by that activation, the
 * conv ones taken back through their ReLU in place) and backward's scratch. */
typedef struct {
    float *dlogits; /* [B][J] */
    float *dh5d;    /* [B][F2] */
    float *dh5;     /* [B][F2]  then, in place, through ReLU: d fc2's output */
    float *dh4;     /* [B][F1]  likewise for fc1 */
    float *dh3;     /* [B][N3]  likewise for conv3, NCHW */
    float *da3;     /* [S][B][S][C3] dh3 channels last: d conv3's output */
    float *da2;     /* [S][B][S][C2] d conv2's output */
    float *da1;     /* [S][B][S][C1] d conv1's output */
    float *dxpad;   /* [Sp][B][Sp][max(C1, C2)] scratch: a padded input's gradient */
    float *dwt;     /* [K][max Ci][max Co] scratch: one kernel row's weight gradient */
} caps_cnn_dacts;
#define CNN_NUM_DACTS 10

typedef struct {
    caps_cnn_config cfg;
    int max_batch;
    size_t param_sizes[CNN_NUM_PARAM_TENSORS], param_offsets[CNN_NUM_PARAM_TENSORS];
    size_t num_params;
    /* One aligned allocation each, [num_params], tensors in enum order: the parameters,
     * their gradients, Adam's moments. w[k] and dw[k] point at tensor k. */
    float *params, *grads, *adam_m, *adam_v;
    float *w[CNN_NUM_PARAM_TENSORS], *dw[CNN_NUM_PARAM_TENSORS];
    long long adam_t;
    /* Two more allocations: activations and caches, activation gradients and scratch. */
    float *act_arena, *dact_arena;
    caps_cnn_acts a;
    caps_cnn_dacts d;
    /* [max_batch] each, for the last forward pass */
    int *labels; /* its labels, or -1 */
    int *pred;   /* argmax of prob */
    int batch;
    float loss; /* batch mean */
    char **class_names; /* [J] the classes' names (as a capsule model keeps them), or NULL */
} caps_cnn;

/* Allocates everything for batches of up to max_batch images (CAPS_ERR_ARG for a bad
 * configuration or batch, CAPS_ERR_MEMORY); nothing is allocated after. Weights are zero
 * until caps_cnn_init_weights. */
int caps_cnn_create(caps_cnn **out, const caps_cnn_config *cfg, int max_batch, caps_error *err);
void caps_cnn_free(caps_cnn *m);
/* PyTorch's default initialisation of nn.Conv2d and nn.Linear, U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)) for weights and biases, drawn from seed; zeroes Adam's state. */
void caps_cnn_init_weights(caps_cnn *m, uint64_t seed);

/* Forward pass over images [B][C][S][S] (PyTorch's NCHW), 1 <= B <= max_batch.
 *   labels: [B] in [0, J), or NULL (no loss).
 *   training: dropout on, its mask drawn from dropout_seed; 0: dropout is the identity.
 * Fills m->a.prob [B][J] and m->pred [B]; returns the batch-mean cross-entropy (0 without
 * labels). */
float caps_cnn_forward(caps_cnn *m, const float *images, const int *labels, int B, int training,
                       uint64_t dropout_seed);
void caps_cnn_zero_grad(caps_cnn *m);
/* Adds d(batch-mean loss)/d(params) of the last forward pass (which had labels) into
 * m->grads. */
void caps_cnn_backward(caps_cnn *m);
/* One Adam step (adam.c) over all parameters at learning rate lr. */
void caps_cnn_adam_step(caps_cnn *m, const caps_adam *hp, float lr);

/* ------------------------------------------------------------------------ training */

/* cnn_train.c: caps_train_epoch (train.c) for the CNN: the same image order, shifts and
 * learning rate for the same state, the same progress and stop semantics and NaN check;
 * dropout's mask drawn from (seed, epoch, batch), so a resumed run is bit-identical. The
 * sums in st and out: loss and margin both the cross-entropy, recon 0. */
int caps_cnn_train_epoch(caps_cnn *m, caps_train_state *st, const caps_dataset *train,
                         caps_epoch_stats *out, caps_progress_fn cb, void *ctx, caps_error *err);
/* caps_evaluate for the CNN, in batches of max_batch: loss and margin the mean
 * cross-entropy, recon 0; lengths the class probabilities, score the predicted class's. */
int caps_cnn_evaluate(caps_cnn *m, const caps_dataset *ds, int limit, const caps_affine *affine,
                      caps_eval *ev, caps_progress_fn cb, void *ctx, caps_error *err);

/* ------------------------------------------------------------------------ model files */

/* cnn_file.c: CNN model files (docs/model-format.md, "Baseline CNN model files"): magic
 * "CAPSCNN\0", the configuration, the training state of a capsule model file, parameters,
 * Adam moments, log, class names, CRC-32; written atomically. */
#define CAPS_CNN_MAGIC "CAPSCNN"
#define CAPS_CNN_FILE_VERSION 1

/* 1 when path starts with the CNN magic (a CNN model file, damaged or not), else 0. */
int caps_cnn_is_model_file(const char *path);
int caps_cnn_save(const caps_cnn *m, const caps_train_state *st, const char *log,
                  const char *path, caps_error *err);
/* Checks everything (magic, version, configuration, state, size, CRC, names) before it
 * creates the model for batches of max_batch; *log (may be NULL) malloc'ed text. */
int caps_cnn_load(caps_cnn **out, caps_train_state *st, char **log, const char *path,
                  int max_batch, caps_error *err);
/* The header alone (configuration, state, Adam steps), checked, and the file's size. */
int caps_cnn_peek(caps_cnn_config *cfg, caps_train_state *st, const char *path,
                  caps_error *err);
/* The bytes of m's file with a log of log_bytes. */
uint64_t caps_cnn_file_size(const caps_cnn *m, size_t log_bytes);
/* Gives m copies of n == J names (each checked), replacing any; CAPS_ERR_ARG naming a bad
 * one. */
int caps_cnn_set_class_names(caps_cnn *m, int n, const char *const *names, caps_error *err);

#endif /* CAPS_CNN_H */
