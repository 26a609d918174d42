/*
 * capsnet.h: the public API of libcapsnet, a Capsule Network with dynamic routing
 * (Sabour, Frosst & Hinton, "Dynamic Routing Between Capsules", NIPS 2017).
 *
 *   image [C][H][W] -> Conv1 (ReLU) -> PrimaryCaps (conv, squash) -> DigitCaps (routing)
 *         -> class scores = capsule lengths; decoder reconstructs the image from one capsule.
 *
 * The core library: the configuration (every shape), the model (create, init, forward,
 * backward, Adam step) on a backend (today "cpu"), its parameters behind copy-in / copy-out
 * calls, data sets (IDX files, image folders, CIFAR-10), images (PNG/PGM/PPM), model files,
 * the training and evaluation loops. Figures, the HTML report and the explorer belong to the
 * capsnet program, not here. Library functions never exit: they return CAPS_OK or an error
 * code with a message in a caps_error. docs/architecture.md draws the pieces;
 * `pkg-config --cflags --libs capsnet` builds against an installed copy.
 */
#ifndef CAPSNET_H
#define CAPSNET_H

#include <stddef.h>
#include <stdint.h>

/* The version of this header; capsnet_version() says which library is linked. The major
 * number changes when a call or a struct changes incompatibly (it is the soname's). */
#define CAPSNET_VERSION_MAJOR 1
#define CAPSNET_VERSION_MINOR 2
#define CAPSNET_VERSION_PATCH 0
#define CAPSNET_VERSION_STRING "1.2.0"
#define CAPSNET_VERSION_NUMBER \
    (CAPSNET_VERSION_MAJOR * 10000 + CAPSNET_VERSION_MINOR * 100 + CAPSNET_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden symbols; everything declared here is exported. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* "1.0.0": the version of the library linked (CAPSNET_VERSION_STRING of its build). */
const char *capsnet_version(void);

/* ------------------------------------------------------------------------ errors */

enum {
    CAPS_OK = 0,
    CAPS_ERR_IO = 1,      /* a read, write, open or rename failed */
    CAPS_ERR_FORMAT = 2,  /* a file is malformed, truncated or of another version */
    CAPS_ERR_MEMORY = 3,  /* an allocation failed */
    CAPS_ERR_ARG = 4,     /* an argument or configuration is invalid */
    CAPS_ERR_NUMERIC = 5, /* a loss became NaN or infinite */
    CAPS_ERR_DEVICE = 6   /* a GPU (or its driver) failed; the model's state there is lost */
};

/* msg holds "<path>: <what> (expected <X>, got <Y>)"; hint, when set, one line of advice
 * without a prefix (the program prints it after "hint: "). */
typedef struct {
    int code;
    char msg[512];
    char hint[256];
} caps_error;

/* ------------------------------------------------------------------------ configuration */

/* How DigitCaps turns prediction vectors into parent capsules. Stored in model files by
 * name; caps_routing_name and caps_routing_find map between the two. */
enum {
    CAPS_ROUTING_DYNAMIC = 0, /* "dynamic": Procedure 1 of the paper, routing by agreement */
    CAPS_NUM_ROUTINGS
};

/* Every shape of the network. caps_config_mnist() gives the paper's MNIST network. */
typedef struct {
    int image_size;      /* H = W of the input image (28) */
    int in_channels;     /* C of the input image (1) */
    int conv1_channels;  /* Conv1 filters (256) */
    int conv1_kernel;    /* Conv1 kernel size (9) */
    int conv1_stride;    /* Conv1 stride (1) */
    int primary_types;   /* PrimaryCaps capsule types (32) */
    int primary_dim;     /* D_in, dimensions of a primary capsule (8) */
    int primary_kernel;  /* PrimaryCaps kernel size (9) */
    int primary_stride;  /* PrimaryCaps stride (2) */
    int num_classes;     /* N_out, digit capsules = classes (10) */
    int digit_dim;       /* D_out, dimensions of a digit capsule (16) */
    int routing_iters;   /* R, routing iterations (3) */
    int decoder_hidden1; /* first decoder layer (512) */
    int decoder_hidden2; /* second decoder layer (1024) */
    int routing;         /* CAPS_ROUTING_DYNAMIC (0, so a config zeroed past the shapes has it) */
} caps_config;

/* The numeric fields: image_size .. decoder_hidden2, not routing. */
#define CAPS_CONFIG_FIELDS 14

void caps_config_mnist(caps_config *cfg);
/* The numeric fields by number (0 .. CAPS_CONFIG_FIELDS-1, declaration order) and names. */
const char *caps_config_field_name(int k);
int caps_config_get(const caps_config *cfg, int k);
void caps_config_set(caps_config *cfg, int k, int value);
/* "dynamic" for CAPS_ROUTING_DYNAMIC; NULL for a number that names no routing. */
const char *caps_routing_name(int routing);
/* The routing called name, or -1. */
int caps_routing_find(const char *name);
/* CAPS_OK when every shape is positive and consistent, the routing known, and the
 * network's size far from overflow (parameters and activations per image below 2^31);
 * else CAPS_ERR_ARG naming the field. Every other function may assume a checked
 * configuration. */
int caps_config_check(const caps_config *cfg, caps_error *err);
/* Derived shapes. */
int caps_conv1_out(const caps_config *cfg);      /* Conv1 output side (20) */
int caps_primary_grid(const caps_config *cfg);   /* PrimaryCaps output side (6) */
int caps_num_primary(const caps_config *cfg);    /* N_in = types * grid^2 (1152) */
int caps_image_pixels(const caps_config *cfg);   /* C*H*W, also the decoder output (784) */
size_t caps_num_params(const caps_config *cfg);  /* 8,215,568 for MNIST */

/* ------------------------------------------------------------------------ model */

typedef struct capsnet capsnet;

/* Which capsule feeds the decoder: the true class (training) or the longest one (test). */
enum { CAPS_MASK_LABEL = 0, CAPS_MASK_PREDICTED = 1 };

/* Which kernels a CPU model runs. FAST: the fused DigitCaps layer with this machine's
 * vector instructions (AVX-512 where the build has it). PORTABLE: the same fused layer in
 * plain C. REFERENCE: Procedure 1 written as the paper states it, every prediction vector
 * in memory (slow and large: for tests and for reading). All three compute the same
 * network; tests hold them equal. */
enum { CAPS_KERNELS_FAST = 0, CAPS_KERNELS_PORTABLE = 1, CAPS_KERNELS_REFERENCE = 2 };

/* How to run a model; a NULL pointer, or a zeroed struct, means the defaults. */
typedef struct {
    const char *backend; /* "cpu" (NULL), or "cuda" in a build made with CUDA=1 */
    int kernels;         /* CAPS_KERNELS_FAST; the CPU's choice */
    int tf32;            /* GPU: TF32 tensor cores for the matrix products (faster, about
                            1e-3 relative); 0: strict fp32 */
} caps_options;

/* The backends of this build, e.g. "cpu cuda". */
const char *caps_backends(void);

/* Allocates parameters, gradients, Adam moments and every activation for batches of up
 * to max_batch images, on the backend opt names. Nothing is allocated after this. Weights
 * are zero until capsnet_init_weights or a write. */
int capsnet_create(capsnet **out, const caps_config *cfg, int max_batch, const caps_options *opt,
                   caps_error *err);
void capsnet_free(capsnet *m);
/* Initialises the weights from a seed (see capsnet.c for the choice) and zeroes Adam. */
void capsnet_init_weights(capsnet *m, uint64_t seed);

const caps_config *capsnet_config(const capsnet *m);
int capsnet_max_batch(const capsnet *m);
const char *capsnet_backend(const capsnet *m); /* "cpu" or "cuda" */
/* CAPS_OK, or the error that stopped the model's backend (a GPU's: CAPS_ERR_DEVICE, naming
 * the kernel or call). It stays; the results of the passes since are not to be trusted. The
 * CPU backend never fails. */
int capsnet_status(const capsnet *m, caps_error *err);

/* The names of a model's classes ("Sandal" for Fashion-MNIST's class 5): the class folders it
 * was trained on, CIFAR-10's batches.meta.txt, a names file. Model files keep them (version
 * 3); a model without names (older files, IDX data without a names file) prints numbers. */
#define CAPS_CLASS_NAME_MAX 128 /* bytes of a name, its NUL included */
/* Sets the names: names[k] for class k, n = the model's num_classes; n = 0 (names NULL)
 * removes them. Each name 1 to CAPS_CLASS_NAME_MAX-1 bytes with no control characters (bytes
 * below 0x20, 0x7f); other bytes, UTF-8 say, pass through. CAPS_ERR_ARG naming the class
 * otherwise, and the model's names are left as they were. */
int caps_set_class_names(capsnet *m, int n, const char *const *names, caps_error *err);
/* The name of class k; NULL when the model has no names or k is not a class. */
const char *caps_class_name(const capsnet *m, int k);
/* Reads a names file: one name per line ('\n' or "\r\n"), blank lines at the end ignored,
 * each name as caps_set_class_names takes it. *names (n malloc'ed strings and the array) is
 * freed with caps_class_names_free. CAPS_ERR_IO / CAPS_ERR_FORMAT naming the file and line. */
int caps_class_names_read(const char *path, int *n, char ***names, caps_error *err);
void caps_class_names_free(int n, char **names);

/* ------------------------------------------------------------------------ parameters */

/* The model's four arrays of num_params floats each, in the same tensor order: the
 * parameters, their gradients (summed by capsnet_backward since capsnet_zero_grad), and
 * Adam's first and second moments. They live where the backend keeps them (a GPU's memory,
 * say): a program reads and writes them only through the copies below. Writing the
 * parameters is the only way to change them (besides init, Adam and loading a file). */
typedef enum { CAPS_PARAMS = 0, CAPS_GRADS = 1, CAPS_ADAM_M = 2, CAPS_ADAM_V = 3 } caps_arena;

/* The parameter tensors, in this order in every arena and in model files, each in its
 * PyTorch layout:
 *   0 conv1_w [conv1_channels][in_channels][k1][k1]    1 conv1_b [conv1_channels]
 *   2 prim_w  [types*D_in][conv1_channels][k2][k2]     3 prim_b  [types*D_in]
 *   4 caps_w  W_ij: [N_in][N_out][D_out][D_in]
 *   5 dec1_w  [hidden1][N_out*D_out]   6 dec1_b [hidden1]
 *   7 dec2_w  [hidden2][hidden1]       8 dec2_b [hidden2]
 *   9 dec3_w  [pixels][hidden2]       10 dec3_b [pixels] */
#define CAPS_NUM_PARAM_TENSORS 11

size_t capsnet_num_params(const capsnet *m);
const char *capsnet_param_name(int tensor); /* "conv1_w", ... */
int capsnet_param_find(const char *name);   /* the tensor called name, or -1 */
size_t capsnet_param_size(const capsnet *m, int tensor);   /* elements */
size_t capsnet_param_offset(const capsnet *m, int tensor); /* where it starts in an arena */

/* Copies count floats from offset of an arena out to out[count], or in from in[count].
 * CAPS_ERR_ARG when the range leaves the arena. Copies of the whole block (offset 0,
 * count num_params) or of a tensor (capsnet_param_offset / _size) are the usual ones. */
int capsnet_read(const capsnet *m, caps_arena which, size_t offset, size_t count, float *out,
                 caps_error *err);
int capsnet_write(capsnet *m, caps_arena which, size_t offset, size_t count, const float *in,
                  caps_error *err);
/* The same for one tensor by name; count must be its size. */
int capsnet_read_tensor(const capsnet *m, caps_arena which, const char *name, float *out,
                        size_t count, caps_error *err);
int capsnet_write_tensor(capsnet *m, caps_arena which, const char *name, const float *in,
                         size_t count, caps_error *err);
/* Adam's step count (bias correction uses it). */
int64_t capsnet_adam_t(const capsnet *m);
void capsnet_set_adam_t(capsnet *m, int64_t t);

/* ------------------------------------------------------------------------ forward, backward */

/* Forward pass over B images x [B][C][H][W] with pixels in [0, 1].
 *   labels: [B] true classes, or NULL (then no loss; mask must be CAPS_MASK_PREDICTED).
 *   mask: which capsule feeds the decoder.
 *   recon_weight: weight of the reconstruction loss (0.0005); 0 skips the decoder.
 * Returns the mean loss over the batch (0 when labels is NULL). */
float capsnet_forward(capsnet *m, const float *x, const int *labels, int B, int mask,
                      float recon_weight);
/* MultiMNIST (section 6): images of two digits of different classes, labels_a[b] !=
 * labels_b[b], both present in the margin loss; with recon_weight > 0 each digit is
 * reconstructed from its own capsule and compared with that digit alone, target_a and
 * target_b [B][C*H*W] in [0, 1]. The loss per image is margin + recon_weight (sse_a + sse_b)
 * (capsnet_image_losses' sse is the sum); capsnet_backward follows as after
 * capsnet_forward; capsnet_reconstruction holds the second digit's. Returns the mean loss. */
float capsnet_forward_pair(capsnet *m, const float *x, const int *labels_a, const int *labels_b,
                           const float *target_a, const float *target_b, int B,
                           float recon_weight);
/* Adds d(mean loss)/d(params) of the last forward pass into the gradients; once per forward
 * pass (a second call aborts: a backend may reuse a cache of the pass for a gradient). */
void capsnet_backward(capsnet *m);
void capsnet_zero_grad(capsnet *m);

/* Results of the last forward pass, in the program's memory, valid until the next call
 * on the model. */
const float *capsnet_lengths(const capsnet *m);        /* [B][N_out] class scores |v_j| */
const float *capsnet_digit_caps(const capsnet *m);     /* [B][N_out][D_out] v_j */
const float *capsnet_reconstruction(const capsnet *m); /* [B][C*H*W], valid if decoder ran */
const int *capsnet_predictions(const capsnet *m);      /* [B] argmax_j |v_j| */
float capsnet_margin_loss(const capsnet *m);           /* batch mean */
float capsnet_recon_loss(const capsnet *m);            /* batch mean of the weighted SSE */
/* Per image of the last forward pass with labels: margin [B] the margin loss (eq. 4), sse [B]
 * the unweighted sum of squared pixel errors of the reconstruction (0 without decoder).
 * Either pointer may be NULL. */
void capsnet_image_losses(const capsnet *m, float *margin, float *sse);

/* Decoder alone: capsule vectors v [B][N_out][D_out], class [B] to keep, out [B][C*H*W]. */
void capsnet_decode(capsnet *m, float *out, const float *v, const int *cls, int B);
/* The paper's Figure 4 for one image x [C][H][W]: the capsule of class cls (the predicted
 * one when cls < 0) with each of its D_out dimensions in turn shifted by each of deltas
 * [steps], decoded: out [D_out][steps][C*H*W]. Only that capsule feeds the decoder, as
 * in the paper. Returns the class used. */
int capsnet_perturb(capsnet *m, float *out, const float *x, int cls, const float *deltas,
                    int steps);

/* Adam (Kingma & Ba) hyperparameters; the paper uses Adam with TensorFlow's defaults. */
typedef struct {
    float lr;    /* 1e-3 */
    float beta1; /* 0.9 */
    float beta2; /* 0.999 */
    float eps;   /* 1e-8 */
} caps_adam;

void caps_adam_default(caps_adam *hp);
/* One Adam step over all parameters with learning rate lr (the decayed one). */
void capsnet_adam_step(capsnet *m, const caps_adam *hp, float lr);

/* Where the time goes: seconds per layer since the last reset, forward and backward, and
 * the floating-point operations of each per image (multiply and add count as two). */
typedef enum {
    CAPS_LAYER_CONV1,     /* Conv1 + ReLU */
    CAPS_LAYER_PRIMARY,   /* PrimaryCaps convolution */
    CAPS_LAYER_SQUASH,    /* channels -> capsules, squash */
    CAPS_LAYER_DIGIT,     /* prediction vectors u_hat = W u, dynamic routing, lengths */
    CAPS_LAYER_DECODER,   /* mask, three linear layers, activations */
    CAPS_LAYER_LOSS,      /* margin and reconstruction losses */
    CAPS_LAYER_OTHER,     /* zeroing gradients, copying the input */
    CAPS_LAYER_ADAM,      /* the optimiser step (time per step, no FLOPs per image) */
    CAPS_NUM_LAYERS
} caps_layer;

typedef struct {
    const char *name;
    double forward_s, backward_s;
    double forward_flops, backward_flops; /* per image */
} caps_layer_profile;

void capsnet_profile(const capsnet *m, caps_layer_profile out[CAPS_NUM_LAYERS]);
void capsnet_profile_reset(capsnet *m);
/* On a GPU the program runs ahead of the device: with on, the clock waits for the device at
 * every layer boundary, so that the times per layer are true (and a step a little slower).
 * Off by default; nothing changes on the CPU. */
void capsnet_profile_sync(capsnet *m, int on);
/* FLOPs per image of a forward pass and of a backward pass, decoder included or not. */
double caps_flops_forward(const caps_config *cfg, int decoder);
double caps_flops_backward(const caps_config *cfg, int decoder);

/* The matrix-product library in use and the kernel it picked, e.g. "openblas 0.3.21,
 * Haswell kernel". */
const char *caps_gemm_backend(void);
/* Measures that library's speed: the best GFLOP/s of n x n x n products over at least
 * min_seconds (the machine's matrix-product peak, as the library reaches it). */
double caps_gemm_gflops(int n, double min_seconds);

/* Threads for OpenMP and the BLAS; 0 means all cores. Returns the count in use. */
int caps_set_threads(int threads);
/* Seconds on a monotonic clock, for timing runs. */
double caps_seconds(void);

/* ------------------------------------------------------------------------ random numbers */

/* PCG32 (O'Neill 2014): small, fast, and the same sequence on every platform. */
typedef struct {
    uint64_t state;
    uint64_t inc;
} caps_rng;

void caps_rng_seed(caps_rng *r, uint64_t seed, uint64_t stream);
uint32_t caps_rng_u32(caps_rng *r);
uint32_t caps_rng_below(caps_rng *r, uint32_t n); /* uniform in [0, n), unbiased */
float caps_rng_uniform(caps_rng *r);              /* uniform in [0, 1) */
float caps_rng_normal(caps_rng *r);               /* standard normal (Box-Muller) */

/* ------------------------------------------------------------------------ data */

/* Labels are bytes: a data set has at most this many classes. */
#define CAPS_DATA_MAX_CLASSES 256

/* A labelled image set, all of it decoded into memory once (that is the whole cache: every
 * epoch reads these bytes). The same layout whatever the files were. */
typedef struct {
    int count;
    int channels; /* 1 for rank-3 IDX files (MNIST) and gray images, 3 for colour */
    int rows;
    int cols;
    uint8_t *images; /* [count][channels][rows][cols] */
    uint8_t *labels; /* [count] */
    /* The classes' names, label k named class_names[k], when the files name them: the class
     * folders of an image folder, CIFAR-10's batches.meta.txt. 0 and NULL for IDX files and
     * for CIFAR-10 without that file. Each name and the array are malloc'ed, freed by
     * caps_dataset_free. */
    int num_names;
    char **class_names; /* [num_names] */
} caps_dataset;

/* Reads an IDX image file and its label file, gzip-compressed or raw, and validates them
 * (magic, rank, dimensions, equal counts, labels < num_classes, payload length). */
int caps_idx_load(caps_dataset *ds, const char *images_path, const char *labels_path,
                  int num_classes, caps_error *err);

/* The layouts caps_dataset_load reads; caps_dataset_layout says which dir holds, checking
 * in this order:
 *   FOLDER   dir/train/<class>/<image> and dir/test/<class>/<image>, as torchvision's
 *            ImageFolder: PNG, PGM (P2/P5) or PPM (P3/P6) files (by their .png, .pgm, .ppm
 *            name, any case; other files are skipped). Classes are the sub-folders sorted by
 *            strcmp, label k the k-th; the test split must have the same class folders.
 *            Images of a split are taken in (class, file name) order. Every image must have
 *            the size and the channels (1 gray, 3 colour; alpha composited on black) of the
 *            first: nothing is resized or converted, so an odd file is an error naming it.
 *            At most 256 classes (labels are bytes).
 *   CIFAR10  dir/data_batch_1.bin .. data_batch_5.bin (train), dir/test_batch.bin (test),
 *            CIFAR-10's binary version: records of a label byte (0..9) and 32x32 red, green
 *            and blue planes; class names from dir/batches.meta.txt when it is there.
 *   IDX      dir/train-images-idx3-ubyte[.gz] etc. (MNIST's names; t10k-* for test), the
 *            layout when neither of the others is found (so its "no such file" errors name
 *            the IDX files); class names from dir/class-names.txt when it is there (one a
 *            line, as caps_class_names_read reads them; get-data.sh fashion writes it).
 * Where names are given, every label must have one. */
enum { CAPS_LAYOUT_IDX = 0, CAPS_LAYOUT_FOLDER = 1, CAPS_LAYOUT_CIFAR10 = 2 };
int caps_dataset_layout(const char *dir);
/* "idx", "folder", "cifar10" for the layouts above; NULL for another number. */
const char *caps_layout_name(int layout);
/* Reads the training (train = 1) or test (0) split of the data set in dir, whichever of the
 * layouts above it is. Labels must be < num_classes (an image folder with more class folders
 * is an error saying how many there are). */
int caps_dataset_load(caps_dataset *ds, const char *dir, int train, int num_classes,
                      caps_error *err);
void caps_dataset_free(caps_dataset *ds);

/* Builds a batch: x [B][C][H][W] in [0, 1] and labels [B] from images idx[0..B-1] of ds,
 * each shifted by its own random dx, dy in [-max_shift, max_shift] with zero fill (the
 * paper's only augmentation), drawn from rng; max_shift 0 copies the images as they are. */
void caps_make_batch(float *x, int *labels, const caps_dataset *ds, const int *idx, int B,
                     int max_shift, caps_rng *rng);

/* caps_make_batch in two halves: the random shifts of B images, dx[b] then dy[b] for each b
 * in turn, uniform in [-max_shift, max_shift]; and the batch of images idx[] shifted by
 * them (dx, dy NULL: unshifted). */
void caps_draw_shifts(int *dx, int *dy, int B, int max_shift, caps_rng *rng);
void caps_make_batch_shifted(float *x, int *labels, const caps_dataset *ds, const int *idx,
                             const int *dx, const int *dy, int B);

/* Random affine transforms, as the well-known PyTorch notebook tests robustness: every
 * image rotated about its centre by an angle uniform in [-max_degrees, max_degrees] and
 * translated by up to max_shift_frac of its width and height in x and y, bilinear
 * interpolation, zero outside. The draw for image k of a data set depends only on (seed,
 * k): the same images get the same transforms whatever the batch size. */
typedef struct {
    float max_degrees;    /* 30 in the notebook */
    float max_shift_frac; /* 0.1 */
    uint64_t seed;
} caps_affine;

/* Parses "DEG,FRAC" (e.g. "30,0.1"); CAPS_ERR_ARG with a message if malformed. */
int caps_affine_parse(caps_affine *a, const char *spec, uint64_t seed, caps_error *err);
/* The transform drawn for image k: angle in degrees, shifts in pixels. */
void caps_affine_draw(const caps_affine *a, int k, int H, int W, float *degrees, float *tx,
                      float *ty);
/* out [C][H][W] = in rotated by degrees about the centre, then shifted by (tx, ty) pixels
 * (positive: right, down). */
void caps_affine_image(float *out, const float *in, int C, int H, int W, float degrees,
                       float tx, float ty);
/* caps_make_batch with each image transformed (affine may be NULL: plain images). */
void caps_make_batch_affine(float *x, int *labels, const caps_dataset *ds, const int *idx,
                            int B, const caps_affine *affine);

/* The paper's affNIST experiment (section 5.2, src/affnist.c): train on MNIST placed at random
 * on a 40x40 canvas (caps_dataset_pad, then training's random shifts of up to 6 pixels), test
 * on MNIST test digits each with a random small affine transform (caps_dataset_affnist). */

/* Places every image of ds at the centre of a size x size black canvas (channels kept; an odd
 * margin puts the extra pixel right and below): ds's images are replaced, rows = cols = size.
 * CAPS_ERR_ARG when size is below the images' height or width (ds unchanged). */
int caps_dataset_pad(caps_dataset *ds, int size, caps_error *err);

/* The ranges of an affNIST-like transform, each drawn uniformly. */
#define CAPS_AFFNIST_MAX_ROTATION 20.0 /* degrees either way */
#define CAPS_AFFNIST_MAX_SHEAR 45.0    /* degrees either way: x' = x + tan(shear) y */
#define CAPS_AFFNIST_SCALE_MIN 0.8     /* per axis */
#define CAPS_AFFNIST_SCALE_MAX 1.2

/* One image's transform: q = (tx, ty) + R(rotation) Sh(shear) diag(scale_x, scale_y) (p - c)
 * maps a source pixel p to the canvas, c the source image's centre ((W-1)/2, (H-1)/2),
 * R = [cos -sin; sin cos] (positive: clockwise on screen, as caps_affine_image), Sh = [1
 * tan(shear); 0 1]; x right, y down, in pixels. */
typedef struct {
    float rotation;         /* degrees */
    float shear;            /* degrees */
    float scale_x, scale_y; /* factors */
    float tx, ty;           /* where the source centre lands on the canvas */
} caps_affnist_transform;

/* The transform of image k (image [C][H][W]) on a size x size canvas (size >= H, W), from
 * (seed, k) only: rotation, shear and scales uniform in the ranges above, redrawn while the
 * digit's ink (grown by the pixel bilinear sampling reaches) is wider or taller than the
 * canvas, then (tx, ty) uniform over the placements that keep all of it on the canvas.
 * Returns the draws it took (1 mostly), or 0 when none of 100 fitted and the digit is placed
 * untransformed. */
int caps_affnist_draw(caps_affnist_transform *t, uint64_t seed, int k, const uint8_t *image,
                      int C, int H, int W, int size);
/* out [C][size][size] = image [C][H][W] transformed by t: each canvas pixel samples the image
 * bilinearly at the inverse map of its position (0 outside the image), rounded to a byte. */
void caps_affnist_image(uint8_t *out, int size, const uint8_t *image, int C, int H, int W,
                        const caps_affnist_transform *t);
/* An affNIST-like data set: every image of src transformed and placed by caps_affnist_draw
 * (seed, its index) on a size x size canvas; labels, channels and class names as src's. out
 * is zeroed first; free it with caps_dataset_free. CAPS_ERR_ARG for a size below the images'. */
int caps_dataset_affnist(caps_dataset *out, const caps_dataset *src, int size, uint64_t seed,
                         caps_error *err);

/* ------------------------------------------------------------------------ training */

/* Everything about a training run that a model file keeps, so that --resume continues it. */
typedef struct {
    /* The recipe, fixed for a run. */
    float lr;           /* initial learning rate (1e-3) */
    float lr_decay;     /* the learning rate is lr * lr_decay^epoch (0.9) */
    float beta1, beta2, adam_eps;
    float recon_weight; /* 0.0005; 0 trains without the decoder */
    int batch;          /* images per step (100) */
    int max_shift;      /* random shift in pixels (2) */
    int limit;          /* training images used, 0 = all */
    uint64_t seed;      /* weights, shuffles and shifts all derive from it */
    /* Progress. */
    int epoch;              /* epochs completed */
    int64_t batch_in_epoch; /* batches completed in the current epoch (0 at its start) */
    /* Sums over the batches done in the current epoch, so that an epoch stopped and
     * resumed reports the same means as one run straight through. */
    double epoch_loss_sum, epoch_margin_sum, epoch_recon_sum; /* loss x images */
    double epoch_seconds;
    int64_t epoch_images;
} caps_train_state;

void caps_train_state_default(caps_train_state *st);
/* The learning rate of epoch (0-based) of the run st describes: lr * lr_decay^epoch, an
 * exponential decay stepped once per epoch. */
float caps_train_lr(const caps_train_state *st, int epoch);

/* Where an epoch stands, for progress lines. */
typedef struct {
    int epoch;       /* 0-based */
    int batch;       /* batches done */
    int batches;     /* batches in the epoch */
    double loss;     /* mean loss over the batches done */
    double seconds;  /* since the epoch (or evaluation) started */
    int64_t images;  /* images done */
    double step_loss; /* the loss of the batch just done (training; 0 in evaluation) */
} caps_progress;

/* Called after every batch; return non-zero to stop early (e.g. on SIGINT). */
typedef int (*caps_progress_fn)(const caps_progress *p, void *ctx);

typedef struct {
    double loss, margin, recon; /* means over the epoch's images */
    int64_t images;
    double seconds;
    int stopped; /* the callback asked to stop before the end of the epoch */
    /* With other processes (caps_train_epoch_comm): seconds spent waiting for the sums of
     * the gradients and losses, after this process's own share of the step was done. */
    double comm_seconds;
} caps_epoch_stats;

/* Trains epoch st->epoch from batch st->batch_in_epoch to its end: images in an order
 * shuffled by (seed, epoch), each shifted at random, labels masking the decoder, Adam with
 * learning rate lr * lr_decay^epoch. Updates st (epoch and batch position) as it goes.
 * Returns CAPS_ERR_NUMERIC, naming the step, if the loss becomes NaN or infinite; the
 * weights are then those before that step. */
int caps_train_epoch(capsnet *m, caps_train_state *st, const caps_dataset *train,
                     caps_epoch_stats *out, caps_progress_fn cb, void *ctx, caps_error *err);

/* ------------------------------------------------------------------------ many processes */

/* Data-parallel training: `size` processes, each with the same model, data and training
 * state, train one model together. Every global batch (st->batch images, drawn and shifted
 * as one process would) is split into contiguous shares, one per process (caps_batch_share);
 * each process runs forward and backward on its share with the loss scaled by 1 / (global
 * batch), so that the sum of the processes' gradients is the gradient of the global batch
 * mean; the sum goes to every process and every process takes the same Adam step. The
 * result is one process's run up to the order of the float sums.
 *
 * The library knows no MPI: the program fills a caps_comm with its sums (the capsnet program
 * with MPI_Allreduce, tools/mpi.c; a test with threads). The sums are collective: every
 * process calls them in the same order with the same counts. */
typedef struct caps_comm caps_comm;
struct caps_comm {
    int rank; /* 0 .. size-1 */
    int size;
    /* buf[0..count) summed over the processes, in place; afterwards every process holds
     * the same sums. A failure ends the run (the other processes cannot go on either). */
    int (*sum_floats)(caps_comm *c, float *buf, size_t count, caps_error *err);
    int (*sum_doubles)(caps_comm *c, double *buf, size_t count, caps_error *err);
    /* Optional, to overlap the gradient sums with the backward pass (NULL: one sum_floats
     * of all the gradients after it): start starts the sum of buf and returns at once, the
     * buffer untouched by the caller until wait_all returns; progress is called between
     * layers so that started sums can advance; wait_all waits for all started sums. */
    int (*start_sum_floats)(caps_comm *c, float *buf, size_t count, caps_error *err);
    void (*progress)(caps_comm *c);
    int (*wait_all)(caps_comm *c, caps_error *err);
    /* Non-zero when the sums take device memory (a CUDA-aware MPI); else a backend that
     * keeps its gradients on a GPU has them copied through host memory. */
    int device_buffers;
    void *ctx; /* the program's */
};

/* The share of process rank of n items split among size processes: items first ..
 * first + count - 1, contiguous, in rank order, counts differing by at most one (the first
 * n % size processes have one more; a share may be empty when n < size). */
void caps_batch_share(int n, int rank, int size, int *first, int *count);

/* caps_train_epoch as one of comm->size processes (comm NULL: alone, caps_train_epoch).
 * Every process must call it with the same model, state and data. The losses in out and in
 * the progress are the global batch's; cb is called on every process after every step, and
 * when it asks any one process to stop, all stop after the same step. The model's batch
 * (capsnet_max_batch) need only hold a share. */
int caps_train_epoch_comm(capsnet *m, caps_train_state *st, const caps_dataset *train,
                          caps_comm *comm, caps_epoch_stats *out, caps_progress_fn cb,
                          void *ctx, caps_error *err);

/* Accuracy, per-class accuracy, confusion matrix and mean loss on a data set, with the
 * decoder masked by the PREDICTED class, as at test time. */
typedef struct {
    int num_classes;
    int total, correct;
    double loss, margin, recon; /* means over the images */
    int *class_total;           /* [J] images of each true class */
    int *class_correct;         /* [J] */
    int *confusion;             /* [J][J]: [true][predicted] counts */
    int *pred;                  /* [total] the predicted class of each image */
    float *score;               /* [total] the length of its capsule (the confidence) */
    float *lengths;             /* [total][J] the length of every class capsule */
    double seconds;
} caps_eval;

/* Evaluates the first `limit` images of ds (0 = all) in batches of the model's max_batch,
 * each transformed by affine when it is not NULL. */
int caps_evaluate(capsnet *m, const caps_dataset *ds, int limit, float recon_weight,
                  const caps_affine *affine, caps_eval *ev, caps_progress_fn cb, void *ctx,
                  caps_error *err);
void caps_eval_free(caps_eval *ev);

/* ------------------------------------------------------------------------ model files */

/* A model file holds the configuration, the training state, the parameters, the Adam
 * moments, the training log (CSV text), the class names (when the model has them) and a
 * CRC-32 of all of it; docs/model-format.md describes the layout. Written atomically:
 * temporary file, fsync, rename. */
#define CAPS_MODEL_MAGIC "CAPSNET"
/* The version written; version 2 files (no class names) and version 1 files (no routing,
 * no class names) still load. */
#define CAPS_MODEL_VERSION 3

/* st is required; log may be NULL (no log). The model's class names go with it. A failed save
 * leaves the previous file as it was. */
int caps_model_save(capsnet *m, const caps_train_state *st, const char *log, const char *path,
                    caps_error *err);
/* Reads a model file, creating a model of the file's configuration (and class names, if the
 * file has them) for batches of up to max_batch, run as opt says (NULL: the defaults). st
 * and log may be NULL; *log, when asked for, is malloc'ed (free it). On failure *m and *log
 * are NULL and st is untouched. */
int caps_model_load(capsnet **m, caps_train_state *st, char **log, const char *path,
                    int max_batch, const caps_options *opt, caps_error *err);
/* Loads into an existing model; a file of another configuration is refused. The model is
 * changed only when the whole file has been read and its checksum verified; its class names
 * then become the file's (none, for a file without names). */
int caps_model_load_into(capsnet *m, caps_train_state *st, char **log, const char *path,
                         caps_error *err);
/* The size in bytes of the model file of m (its class names included) with a log of
 * log_bytes. */
uint64_t caps_model_file_size(const capsnet *m, size_t log_bytes);
/* Reads and checks the header only (magic, version, configuration, training state);
 * cfg and st may be NULL. */
int caps_model_peek(caps_config *cfg, caps_train_state *st, const char *path, caps_error *err);

/* ------------------------------------------------------------------------ images */

/* Reads a grayscale PNG or PGM (P2/P5) of exactly h x w pixels into out [h*w] scaled to
 * [0, 1]. Colour PNGs are converted to gray; other sizes and formats are an error. */
int caps_image_load(const char *path, float *out, int h, int w, caps_error *err);
/* Reads a PNG, PGM or PPM of exactly h x w pixels into out [channels][h][w] scaled to [0, 1]
 * (b / 255, as the data sets), for a model of `channels` input channels: 1 converts colour
 * to gray as caps_image_load does; 3 takes a colour image's red, green and blue planes and
 * repeats a gray image's plane three times (as PIL's convert("RGB")). Other channel counts,
 * sizes and formats are CAPS_ERR_FORMAT / CAPS_ERR_ARG naming the file. */
int caps_image_load_channels(const char *path, float *out, int channels, int h, int w,
                             caps_error *err);
/* Reads a PNG, PGM (P2/P5) or PPM (P3/P6) as 8-bit samples with its channels kept: *bytes
 * [*channels][*h][*w] (malloc'ed; free it), *channels 1 for gray (and gray + alpha, composited
 * on black) or 3 for colour (RGB, RGBA composited on black). Samples of more than 8 bits are
 * rounded to 8. want_h, want_w: the size required (else CAPS_ERR_FORMAT "wrong image size"),
 * or both 0 for any size. */
int caps_image_read_u8(const char *path, int want_h, int want_w, int *h, int *w, int *channels,
                       uint8_t **bytes, caps_error *err);
/* Writes an 8-bit grayscale PNG, atomically (temporary file, fsync, rename). */
int caps_image_write_png(const char *path, const uint8_t *pixels, int h, int w,
                         caps_error *err);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CAPSNET_H */
