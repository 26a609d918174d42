/*
 * cmd_figures.c: the pictures people judge a capsule network by, as PNG files:
 *
 *   capsnet reconstruct  test images and their reconstructions, true and predicted labels
 *   capsnet perturb      the paper's Figure 4: each dimension of a digit capsule shifted
 *   capsnet show         a labelled grid of input images, shifted or affine previews
 *
 * The images come from the test set (show: the training set) of a data folder (IDX files,
 * image folders, CIFAR-10); the figures are visualize.c's and figure.c's (cairo). Colour
 * images (3 channels) are drawn in colour, others in gray; classes by name where the model
 * (show: the data set) names them.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "figures.h"
#include "util.h"

#define FIGURE_SCALE 4 /* screen pixels per image pixel: 28 x 28 becomes 112 x 112 */
#define GRID_COLUMNS 10 /* images per row of a data preview */

/* ------------------------------------------------------------------------ shared */

/* Loads a model for batches of max_batch and the test set it was made for. */
static int load_model_and_test(capsnet **m, caps_train_state *st, caps_dataset *test,
                               const char *model, const char *data, int max_batch) {
    caps_error err;
    if (caps_model_load(m, st, NULL, model, max_batch, NULL, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    if (caps_dataset_load(test, data, 0, capsnet_config(*m)->num_classes, &err)) {
        print_error(&err);
        capsnet_free(*m);
        *m = NULL;
        return EXIT_FAILURE;
    }
    const caps_config *c = capsnet_config(*m);
    if (test->rows != c->image_size || test->cols != c->image_size ||
        test->channels != c->in_channels) {
        fail_runtime("%s: images are %dx%dx%d, the model takes %dx%dx%d", data, test->cols,
                     test->rows, test->channels, c->image_size, c->image_size, c->in_channels);
        capsnet_free(*m);
        *m = NULL;
        caps_dataset_free(test);
        return EXIT_FAILURE;
    }
    return 0;
}

static int write_grid(const char *path, const caps_grid *g, const float *pixels) {
    caps_error err;
    if (caps_grid_write_png(path, g, pixels, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    return 0;
}

/* ------------------------------------------------------------------------ reconstruct */

static const char reconstruct_usage[] =
    "Usage: capsnet reconstruct --model MODEL [--data DIR] [--out FILE.png] [options]\n"
    "\n"
    "Draws test images (top rows) and what the decoder makes of them (the rows below),\n"
    "masked by the predicted capsule as at test time; \"true -> predicted\" above each\n"
    "pair, a red frame around wrong predictions. --affine previews a rotated and shifted\n"
    "test set (as capsnet test --affine evaluates it).\n"
    "\n"
    "Options:\n";

static int parse_affine_flag(caps_affine *a, const char *spec, uint64_t seed) {
    caps_error err;
    if (caps_affine_parse(a, spec, seed, &err)) {
        print_error(&err);
        return EXIT_USAGE;
    }
    return 0;
}

int figures_built(const char *cmd) { return (void)cmd, 1; }

int cmd_reconstruct(int argc, char **argv) {
    const char *model = NULL, *data = "data/mnist", *out = "reconstructions.png", *aff = NULL;
    int count = 10, start = 0, step = 1, threads = 0;
    uint64_t seed = 1;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"data", OPT_STRING, &data, 0, 0, "DIR", "data folder (default data/mnist)", 0},
        {"out", OPT_STRING, &out, 0, 0, "FILE", "PNG to write (reconstructions.png)", 0},
        {"count", OPT_INT, &count, 1, 1000, "N", "test images to draw (10)", 0},
        {"start", OPT_INT, &start, 0, INT_MAX, "I", "first test image (0)", 0},
        {"step", OPT_INT, &step, 1, INT_MAX, "K",
         "every K-th test image (1); image folders hold their classes in turn", 0},
        {"affine", OPT_STRING, &aff, 0, 0, "DEG,FRAC", "rotate and shift the images first", 0},
        {"seed", OPT_U64, &seed, 0, 0, "S", "seed of the affine draws (1)", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("reconstruct", reconstruct_usage, opts, nopts, argc, argv, pos, 0,
                           &npos, &done);
    if (done) return rc;
    if (!model) return fail_usage("reconstruct", "--model is required");
    caps_affine affine;
    if (aff && (rc = parse_affine_flag(&affine, aff, seed))) return rc;
    caps_set_threads(threads);
    capsnet *m = NULL;
    caps_train_state st;
    caps_dataset test = {0};
    if ((rc = load_model_and_test(&m, &st, &test, model, data, count < 100 ? count : 100)))
        return rc;
    int64_t last = start + (int64_t)(count - 1) * step; /* the last image drawn */
    if (last >= test.count) {
        rc = fail_usage("reconstruct", "--start %d --count %d --step %d runs past the %d test "
                        "images", start, count, step, test.count);
    } else {
        char title[256], every[32] = "";
        if (step > 1) snprintf(every, sizeof every, ", every %d", step);
        snprintf(title, sizeof title, "test images %d to %lld%s%s: inputs and reconstructions",
                 start, (long long)last, every, aff ? " (rotated and shifted)" : "");
        int wrong = 0, *images = malloc((size_t)count * sizeof(int));
        if (!images) {
            rc = fail_runtime("out of memory");
        } else {
            for (int k = 0; k < count; k++) images[k] = start + k * step;
            caps_error err;
            rc = caps_draw_reconstructions(m, &test, images, count, aff ? &affine : NULL, out,
                                           title, &wrong, NULL, &err);
            if (rc) {
                print_error(&err);
                rc = EXIT_FAILURE;
            } else {
                printf("wrote %s: %d test images, %d predicted wrong\n", out, count, wrong);
            }
            free(images);
        }
    }
    capsnet_free(m);
    caps_dataset_free(&test);
    return rc;
}

/* ------------------------------------------------------------------------ perturb */

static const char perturb_usage[] =
    "Usage: capsnet perturb --model MODEL [--data DIR] --index I [--out FILE.png] [options]\n"
    "\n"
    "The paper's Figure 4 for test image I: one row per dimension of the predicted digit's\n"
    "capsule, that dimension shifted by -RANGE ... +RANGE across the STEPS columns (the\n"
    "unshifted reconstruction in the middle), only that capsule feeding the decoder.\n"
    "\n"
    "Options:\n";

int cmd_perturb(int argc, char **argv) {
    const char *model = NULL, *data = "data/mnist", *out = "perturb.png";
    int index = 0, steps = 11, threads = 0;
    float range = 0.25f;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"data", OPT_STRING, &data, 0, 0, "DIR", "data folder (default data/mnist)", 0},
        {"index", OPT_INT, &index, 0, INT_MAX, "I", "test image (0)", 0},
        {"out", OPT_STRING, &out, 0, 0, "FILE", "PNG to write (perturb.png)", 0},
        {"range", OPT_FLOAT, &range, 0, 10, "R", "largest shift of a dimension (0.25)", 0},
        {"steps", OPT_INT, &steps, 1, 101, "S", "shifts per dimension (11: steps of 0.05)", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("perturb", perturb_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!model) return fail_usage("perturb", "--model is required");
    caps_set_threads(threads);
    capsnet *m = NULL;
    caps_train_state st;
    caps_dataset test = {0};
    if ((rc = load_model_and_test(&m, &st, &test, model, data, steps < 100 ? steps : 100)))
        return rc;
    if (index >= test.count) {
        rc = fail_usage("perturb", "--index %d is past the %d test images", index, test.count);
    } else {
        int cls = 0;
        caps_error err;
        rc = caps_draw_perturbation(m, &test, index, range, steps, out, &cls, NULL, &err);
        if (rc) {
            print_error(&err);
            rc = EXIT_FAILURE;
        } else {
            const char *name = caps_class_name(m, test.labels[index]);
            printf("wrote %s: test image %d (a %d%s%s), capsule %d, %d dimensions x %d shifts\n",
                   out, index, test.labels[index], name ? ", " : "", name ? name : "", cls,
                   capsnet_config(m)->digit_dim, steps);
        }
    }
    capsnet_free(m);
    caps_dataset_free(&test);
    return rc;
}

/* ------------------------------------------------------------------------ show */

static const char show_usage[] =
    "Usage: capsnet show [--data DIR] [--out FILE.png] [options]\n"
    "\n"
    "A labelled grid of training images (--test: test images), as the network sees them:\n"
    "pixels scaled to [0, 1]; with --shift, each shifted at random by up to 2 pixels as in\n"
    "training; with --affine DEG,FRAC, rotated and shifted as capsnet test --affine does.\n"
    "A folder with a test split only (capsnet data --make-affnist's) shows its test images.\n"
    "\n"
    "Options:\n";

int cmd_show(int argc, char **argv) {
    const char *data = "data/mnist", *out = "data.png", *aff = NULL;
    int count = 40, start = 0, shift = 0, use_test = 0, classes = 10;
    uint64_t seed = 1;
    option opts[] = {
        {"data", OPT_STRING, &data, 0, 0, "DIR", "data folder (default data/mnist)", 0},
        {"out", OPT_STRING, &out, 0, 0, "FILE", "PNG to write (data.png)", 0},
        {"count", OPT_INT, &count, 1, 1000, "N", "images (40)", 0},
        {"start", OPT_INT, &start, 0, INT_MAX, "I", "first image (0)", 0},
        {"test", OPT_FLAG, &use_test, 0, 0, NULL, "the test set instead of the training set", 0},
        {"shift", OPT_FLAG, &shift, 0, 0, NULL, "random shifts of up to 2 pixels", 0},
        {"affine", OPT_STRING, &aff, 0, 0, "DEG,FRAC", "random rotations and shifts", 0},
        {"seed", OPT_U64, &seed, 0, 0, "S", "seed of the random draws (1)", 0},
        {"classes", OPT_INT, &classes, 2, 4096, "N", "number of classes (10)", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("show", show_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    caps_affine affine;
    if (aff && (rc = parse_affine_flag(&affine, aff, seed))) return rc;
    if (aff && shift) return fail_usage("show", "--shift and --affine exclude each other");
    caps_error err;
    caps_dataset ds = {0};
    if (caps_dataset_load(&ds, data, !use_test, classes, &err)) {
        /* No training split, but a test split (an affNIST-like set): show that. */
        caps_error terr;
        if (use_test || caps_dataset_load(&ds, data, 0, classes, &terr)) {
            print_error(&err);
            return EXIT_FAILURE;
        }
        use_test = 1;
        fprintf(stderr, "capsnet: %s has no training split that loads; showing its test images\n",
                data);
    }
    if (start >= ds.count || count > ds.count - start) {
        rc = fail_usage("show", "--start %d --count %d runs past the %d images", start, count,
                        ds.count);
        caps_dataset_free(&ds);
        return rc;
    }
    /* Colour drawn as colour; another channel count as its channel 0. */
    int HW = ds.rows * ds.cols, P = ds.channels * HW, G = ds.channels == 3 ? 3 : 1;
    int cols = count < GRID_COLUMNS ? count : GRID_COLUMNS, rows = (count + cols - 1) / cols;
    float *x = malloc((size_t)count * P * sizeof(float));
    float *tiles = calloc((size_t)rows * cols * G * HW, sizeof(float));
    int *idx = malloc((size_t)count * sizeof(int)), *labels = malloc((size_t)count * sizeof(int));
    char (*caption)[CAPS_CLASS_NAME_MAX] = calloc((size_t)count, sizeof *caption);
    const char **captions = calloc((size_t)rows * cols, sizeof *captions);
    rc = EXIT_FAILURE;
    if (x && tiles && idx && labels && caption && captions) {
        for (int k = 0; k < count; k++) idx[k] = start + k;
        caps_rng r;
        caps_rng_seed(&r, seed, 0x5409);
        if (aff)
            caps_make_batch_affine(x, labels, &ds, idx, count, &affine);
        else
            caps_make_batch(x, labels, &ds, idx, count, shift ? 2 : 0, &r);
        for (int k = 0; k < count; k++)
            memcpy(tiles + (size_t)k * G * HW, x + (size_t)k * P, (size_t)G * HW * sizeof(float));
        for (int k = 0; k < count; k++) {
            if (labels[k] < ds.num_names)
                snprintf(caption[k], sizeof caption[0], "%s", ds.class_names[labels[k]]);
            else
                snprintf(caption[k], sizeof caption[0], "%d", labels[k]);
            captions[k] = caption[k];
        }
        char title[256];
        snprintf(title, sizeof title, "%s images %d to %d%s", use_test ? "test" : "training",
                 start, start + count - 1,
                 aff ? ", rotated and shifted" : shift ? ", shifted by up to 2 pixels" : "");
        caps_grid g = {rows, cols, ds.rows, ds.cols, FIGURE_SCALE, title, NULL, NULL, captions,
                       NULL, G};
        rc = write_grid(out, &g, tiles);
        if (!rc) printf("wrote %s: %d images\n", out, count);
    } else {
        fail_runtime("out of memory");
    }
    free(x), free(tiles), free(idx), free(labels), free(caption), free(captions);
    caps_dataset_free(&ds);
    return rc;
}
