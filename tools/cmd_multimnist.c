/*
 * cmd_multimnist.c: capsnet multimnist, the two-digit data of the paper's section 6
 * (src/multimnist.c makes the pairs).
 *
 *   capsnet multimnist preview --out FILE.png   a grid of test pairs as the network will see
 *                                               them, their labels and bounding-box overlap
 *   capsnet multimnist train --out MODEL        the capsule network on pairs made on the fly
 *   capsnet multimnist test --model MODEL       the paper's score on the fixed test pairs
 *   capsnet multimnist figure --model MODEL     the paper's Figure 5 (cmd_figures.c)
 *
 * Training follows section 6: the network of the MNIST experiments on 36 x 36 inputs (its
 * PrimaryCaps grid grows to 10 x 10), both digits' classes present in the margin loss, each
 * digit reconstructed from its own capsule against that digit alone
 * (capsnet_forward_pair). Pairs are functions of (seed, k): epoch e trains on pairs
 * k = e * N + order[i] of the run's seed, order a shuffle of 0 .. N-1 per epoch, so every
 * training image is the first digit of one pair an epoch (N = the training set) and the
 * second digits differ from epoch to epoch; the run's file keeps N in its training state's
 * `limit`. A model file and its CSV log (as capsnet train's, test_accuracy the share of test
 * pairs right) are written after every epoch (atomically); Ctrl-C stops within the epoch and
 * keeps the last one, --resume goes on from it.
 *
 * The grid is a plain grayscale PNG (caps_image_write_png): no cairo, so it is in every
 * build. Each pair is a 36 x 36 tile, with --digits followed by its two digits alone (the
 * reconstruction targets); tiles are drawn PREVIEW_SCALE times larger, one gray line apart.
 * The labels go to stdout, one line a pair, in the grid's reading order.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "epoch.h"
#include "figures.h"
#include "multimnist.h"
#include "util.h"

#define PREVIEW_SCALE 2       /* screen pixels per image pixel: 36 x 36 becomes 72 x 72 */
#define PREVIEW_GAP 2         /* screen pixels between tiles */
#define PREVIEW_GAP_GRAY 96   /* the lines between tiles: neither ink nor background */
#define PREVIEW_PAIRS_ROW 10  /* pairs a row, one tile each */
#define PREVIEW_DIGITS_ROW 4  /* pairs a row with --digits, three tiles each */
#define PREVIEW_MAX_PAIRS 10000
#define MNIST_CLASSES 10

static const char multimnist_usage[] =
    "Usage: capsnet multimnist preview|train|test|figure [options]\n"
    "\n"
    "MultiMNIST, the data of the paper's section 6: a digit overlaid on a digit of another\n"
    "class from the same split, each shifted by up to 4 pixels in each direction, on a 36x36\n"
    "canvas. Pair k of a seed is always the same pair.\n"
    "\n"
    "Subcommands:\n"
    "  preview   a grid PNG of test pairs; prints each pair's two labels and the mean\n"
    "            overlap of the digits' bounding boxes\n"
    "  train     trains the capsule network on pairs made on the fly: both classes present\n"
    "            in the margin loss, each digit reconstructed from its own capsule\n"
    "  test      the paper's score on the 10,000 fixed test pairs: a pair is right when its\n"
    "            two labels are the two longest capsules (paper: 5.2% error)\n"
    "  figure    the paper's Figure 5: inputs, and the two reconstructions in red and green\n"
    "\n"
    "'capsnet multimnist SUBCOMMAND --help' lists its options.\n";

static const char preview_usage[] =
    "Usage: capsnet multimnist preview [--data DIR] [--seed S] [--count N] --out FILE.png\n"
    "\n"
    "Writes a grid of the first N MultiMNIST pairs of seed S made from the test split of DIR,\n"
    "as the network sees them (with --digits, each followed by its two digits alone, the\n"
    "reconstruction targets), and prints each pair's labels and bounding-box overlap: the\n"
    "intersection of the two digits' boxes over the smaller box (src/multimnist.c says why).\n"
    "\n"
    "Options:\n";

/* Copies tile [R][C] into grid [GH][GW] at tile column tx, row ty, PREVIEW_SCALE times
 * larger. */
static void put_tile(uint8_t *grid, int GW, const uint8_t *tile, int R, int C, int tx, int ty) {
    int x0 = PREVIEW_GAP + tx * (C * PREVIEW_SCALE + PREVIEW_GAP);
    int y0 = PREVIEW_GAP + ty * (R * PREVIEW_SCALE + PREVIEW_GAP);
    for (int y = 0; y < R * PREVIEW_SCALE; y++)
        for (int x = 0; x < C * PREVIEW_SCALE; x++)
            grid[(size_t)(y0 + y) * GW + x0 + x] = tile[(y / PREVIEW_SCALE) * C + x / PREVIEW_SCALE];
}

static int multimnist_preview(int argc, char **argv) {
    const char *data = "data/mnist", *out = NULL;
    int count = 40, digits = 0;
    uint64_t seed = CAPS_MULTIMNIST_TEST_SEED;
    option opts[] = {
        {"data", OPT_STRING, &data, 0, 0, "DIR", "data folder, its test split (data/mnist)", 0},
        {"seed", OPT_U64, &seed, 0, 0, "S", "seed of the pairs (2017: the test set's)", 0},
        {"count", OPT_INT, &count, 1, PREVIEW_MAX_PAIRS, "N", "pairs 0 .. N-1 (40)", 0},
        {"digits", OPT_FLAG, &digits, 0, 0, NULL, "each pair followed by its two digits alone", 0},
        {"out", OPT_STRING, &out, 0, 0, "FILE", "PNG to write (required)", 0},
    };
    const char *cmd = "multimnist preview";
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command(cmd, preview_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!out) return fail_usage(cmd, "--out FILE.png is required");

    caps_error err = {0};
    caps_dataset ds = {0};
    if (caps_dataset_load(&ds, data, 0, MNIST_CLASSES, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    caps_multimnist_set set;
    if (caps_multimnist_make(&set, &ds, count, seed, &err)) {
        fprintf(stderr, "capsnet: error: %s: %s\n", data, err.msg);
        caps_dataset_free(&ds);
        return EXIT_FAILURE;
    }
    int R = set.rows, C = set.cols, tiles = digits ? 3 : 1;
    int per_row = digits ? PREVIEW_DIGITS_ROW : PREVIEW_PAIRS_ROW;
    if (count < per_row) per_row = count;
    int rows = (count + per_row - 1) / per_row;
    int GW = PREVIEW_GAP + per_row * tiles * (C * PREVIEW_SCALE + PREVIEW_GAP);
    int GH = PREVIEW_GAP + rows * (R * PREVIEW_SCALE + PREVIEW_GAP);
    uint8_t *grid = malloc((size_t)GW * GH);
    double *overlap = malloc((size_t)count * sizeof(double));
    if (!grid || !overlap) {
        rc = fail_runtime("out of memory for a %dx%d preview", GW, GH);
        goto done;
    }
    memset(grid, PREVIEW_GAP_GRAY, (size_t)GW * GH);
    size_t P = (size_t)R * C;
    double mean = 0, iou = 0;
    for (int k = 0; k < count; k++) {
        const uint8_t *da = set.digits + (size_t)k * 2 * P, *db = da + P;
        int tx = (k % per_row) * tiles, ty = k / per_row;
        put_tile(grid, GW, set.images + (size_t)k * P, R, C, tx, ty);
        if (digits) {
            put_tile(grid, GW, da, R, C, tx + 1, ty);
            put_tile(grid, GW, db, R, C, tx + 2, ty);
        }
        overlap[k] = caps_multimnist_overlap(da, db, R, C);
        mean += overlap[k] / count;
        iou += caps_multimnist_iou(da, db, R, C) / count;
    }
    if (caps_image_write_png(out, grid, GH, GW, &err)) {
        print_error(&err);
        rc = EXIT_FAILURE;
        goto done;
    }
    printf("pair  row col  label_a label_b  overlap\n");
    for (int k = 0; k < count; k++)
        printf("%4d  %3d %3d  %7d %7d  %7.3f\n", k, k / per_row, k % per_row,
               set.pairs[k].label[0], set.pairs[k].label[1], overlap[k]);
    printf("mean overlap of %d pairs: %.4f (bounding boxes: intersection over the smaller; "
           "IoU %.4f)\n", count, mean, iou);
    printf("wrote %s: %d pairs of seed %llu from the test split of %s, %dx%d pixels\n", out,
           count, (unsigned long long)seed, data, GW, GH);
    rc = 0;
done:
    free(grid), free(overlap);
    caps_multimnist_set_free(&set);
    caps_dataset_free(&ds);
    return rc;
}

/* ------------------------------------------------------------------------ scoring */

#define MM_BATCH_MAX 4096

/* A model's score on pairs 0 .. n-1 of a made set. */
typedef struct {
    int pairs, right, first_right; /* both labels the two longest; the longest one a label */
    double loss;                   /* mean loss (both classes, both reconstructions) */
    double seconds;
    int stopped;
} mm_score;

/* Buffers of one batch of pairs. */
typedef struct {
    float *x, *target_a, *target_b;
    int *labels_a, *labels_b;
} mm_batch;

static int mm_batch_alloc(mm_batch *b, int B, size_t P) {
    b->x = malloc((size_t)B * P * sizeof(float));
    b->target_a = malloc((size_t)B * P * sizeof(float));
    b->target_b = malloc((size_t)B * P * sizeof(float));
    b->labels_a = malloc((size_t)B * sizeof(int));
    b->labels_b = malloc((size_t)B * sizeof(int));
    return b->x && b->target_a && b->target_b && b->labels_a && b->labels_b;
}

static void mm_batch_free(mm_batch *b) {
    free(b->x), free(b->target_a), free(b->target_b), free(b->labels_a), free(b->labels_b);
}

/* Runs the model over the first n pairs of set with their labels and targets (the loss is the
 * training loss's; the decoder sees the true classes) and scores the two longest capsules. */
static void mm_evaluate(capsnet *m, const caps_multimnist_set *set, int n, float recon_weight,
                        mm_batch *bt, mm_score *sc, progress_ctx *pc) {
    int B = capsnet_max_batch(m), J = capsnet_config(m)->num_classes;
    int *idx = malloc((size_t)B * sizeof(int));
    CAPS_ASSERT(idx);
    memset(sc, 0, sizeof *sc);
    double t0 = caps_seconds(), loss = 0;
    int batches = (n + B - 1) / B;
    for (int bi = 0; bi < batches; bi++) {
        int first = bi * B, count = n - first < B ? n - first : B;
        for (int b = 0; b < count; b++) idx[b] = first + b;
        caps_multimnist_set_batch(bt->x, bt->target_a, bt->target_b, bt->labels_a, bt->labels_b,
                                  set, idx, count);
        loss += (double)count * capsnet_forward_pair(m, bt->x, bt->labels_a, bt->labels_b,
                                                     bt->target_a, bt->target_b, count,
                                                     recon_weight);
        const float *len = capsnet_lengths(m);
        for (int b = 0; b < count; b++) {
            const float *l = len + (size_t)b * J;
            int top[2];
            caps_multimnist_top2(top, l, J);
            sc->right += caps_multimnist_right(l, J, bt->labels_a[b], bt->labels_b[b]);
            sc->first_right += top[0] == bt->labels_a[b] || top[0] == bt->labels_b[b];
        }
        sc->pairs += count;
        caps_progress p = {0, bi + 1, batches, loss / sc->pairs, caps_seconds() - t0, sc->pairs, 0};
        if (pc && on_progress(&p, pc)) {
            sc->stopped = 1;
            break;
        }
    }
    sc->loss = sc->pairs ? loss / sc->pairs : 0;
    sc->seconds = caps_seconds() - t0;
    free(idx);
}

/* The splits of an MNIST-like folder, checked for pairs. */
static int mm_load(caps_dataset *ds, const char *data, int train) {
    caps_error err = {0};
    if (caps_dataset_load(ds, data, train, MNIST_CLASSES, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    if (caps_multimnist_check(ds, &err)) {
        fprintf(stderr, "capsnet: error: %s: %s\n", data, err.msg);
        return EXIT_FAILURE;
    }
    return 0;
}

/* A model for pairs of src: inputs of the canvas' size. */
static int mm_model_fits(const capsnet *m, const caps_dataset *src, const char *model,
                         const char *data) {
    int side = caps_multimnist_rows(src), have = capsnet_config(m)->image_size;
    if (have == side && capsnet_config(m)->in_channels == 1) return 0;
    fail_runtime("%s: takes %dx%d images of %d channel(s), but MultiMNIST pairs of %s are %dx%d "
                 "gray", model, have, have, capsnet_config(m)->in_channels, data, side, side);
    fprintf(stderr, "hint: a MultiMNIST model comes from capsnet multimnist train\n");
    return EXIT_FAILURE;
}

/* ------------------------------------------------------------------------ train */

static const char train_usage[] =
    "Usage: capsnet multimnist train [--data DIR] [--out MODEL] [--epochs N] [options]\n"
    "\n"
    "Trains the capsule network on MultiMNIST pairs made on the fly from the training split\n"
    "of DIR (every training image the first digit of one pair an epoch, the second digit of\n"
    "another class drawn anew each epoch), as the paper's section 6: 36x36 inputs, both\n"
    "classes present in the margin loss, each digit reconstructed from its own capsule.\n"
    "After every epoch it scores the first --test-pairs fixed test pairs and writes MODEL.\n"
    "\n"
    "Options:\n";

static int multimnist_train(int argc, char **argv) {
    const char *data = "data/mnist", *out = "multimnist.caps", *config_spec = NULL;
    const char *device = "cpu";
    int epochs = 3, routing = 3, no_recon = 0, threads = 0, resume = 0, overwrite = 0;
    int quiet = 0, tf32 = 0, pairs = 0, test_pairs = 1000;
    caps_train_state st;
    caps_train_state_default(&st);
    float lr = st.lr, lr_decay = st.lr_decay;
    int batch = st.batch;
    uint64_t seed = st.seed;
    option opts[] = {
        {"data", OPT_STRING, &data, 0, 0, "DIR", "MNIST folder (data/mnist)", 0},
        {"out", OPT_STRING, &out, 0, 0, "MODEL", "model file to write (multimnist.caps)", 0},
        {"epochs", OPT_INT, &epochs, 1, 100000, "N", "epochs in all, counting resumed ones (3)", 0},
        {"pairs", OPT_INT, &pairs, 1, INT_MAX, "N",
         "training pairs an epoch (the training images: 60000)", 0},
        {"batch", OPT_INT, &batch, 1, MM_BATCH_MAX, "B", "pairs per step (100)", 0},
        {"lr", OPT_FLOAT, &lr, 1e-9, 10, "X", "Adam learning rate (0.001)", 0},
        {"lr-decay", OPT_FLOAT, &lr_decay, 1e-6, 1, "X", "learning rate factor per epoch (0.9)", 0},
        {"routing", OPT_INT, &routing, 1, 100, "R", "routing iterations (3)", 0},
        {"no-recon", OPT_FLAG, &no_recon, 0, 0, NULL, "train without the decoder", 0},
        {"test-pairs", OPT_INT, &test_pairs, 1, CAPS_MULTIMNIST_TEST_PAIRS, "N",
         "test pairs scored after each epoch (1000; multimnist test scores all 10000)", 0},
        {"config", OPT_STRING, &config_spec, 0, 0, "K=V,..",
         "other shapes, e.g. conv1_channels=64,primary_types=8", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
        {"seed", OPT_U64, &seed, 0, 0, "S", "seed of weights, pairs and order (1)", 0},
        {"resume", OPT_FLAG, &resume, 0, 0, NULL, "continue the run saved in MODEL", 0},
        {"overwrite", OPT_FLAG, &overwrite, 0, 0, NULL, "replace an existing MODEL", 0},
        {"quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress lines", 0},
        DEVICE_OPTIONS(device, tf32),
    };
    const char *cmd = "multimnist train";
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command(cmd, train_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (resume && overwrite) return fail_usage(cmd, "--resume and --overwrite exclude each other");
    if (resume) {
        static const char *const recipe[] = {"pairs", "batch", "lr", "lr-decay", "routing",
                                             "no-recon", "config", "seed"};
        for (size_t k = 0; k < sizeof recipe / sizeof recipe[0]; k++)
            if (find_option(opts, nopts, recipe[k])->given)
                return fail_usage(cmd, "--%s: a resumed run keeps the recipe saved in %s",
                                  recipe[k], out);
    } else if (file_exists(out) && !overwrite) {
        fprintf(stderr, "capsnet: error: %s: file exists\n", out);
        fprintf(stderr, "hint: --resume continues that run; --overwrite starts a new one over it\n");
        return EXIT_FAILURE;
    }
    caps_options opt = {0};
    if ((rc = device_options(&opt, cmd, device, tf32))) return rc;
    caps_set_threads(threads);

    int status = EXIT_FAILURE;
    caps_error err = {0};
    caps_dataset train = {0}, test = {0};
    caps_multimnist_set set = {0};
    capsnet *m = NULL;
    char *log = NULL;
    int *order = NULL;
    int64_t *ks = NULL;
    mm_batch bt = {0};
    if (mm_load(&train, data, 1) || mm_load(&test, data, 0)) goto done;
    int side = caps_multimnist_rows(&train);
    if (resume) {
        /* The header first: the model is made for the run's batch. */
        if (caps_model_peek(NULL, &st, out, &err) ||
            caps_model_load(&m, &st, &log, out, st.batch, &opt, &err)) {
            print_error(&err);
            goto done;
        }
        if (mm_model_fits(m, &train, out, data)) goto done;
        if (st.max_shift != CAPS_MULTIMNIST_SHIFT || st.limit < 1) {
            fail_runtime("%s: not a MultiMNIST run (its training state says shift %d, %d "
                         "pairs an epoch)", out, st.max_shift, st.limit);
            fprintf(stderr, "hint: capsnet train --resume continues a run of capsnet train\n");
            goto done;
        }
        if (st.epoch >= epochs) {
            fail_usage(cmd, "%s has %d epochs already; --epochs %d asks for no more", out,
                       st.epoch, epochs);
            status = EXIT_USAGE;
            goto done;
        }
    } else {
        caps_config cfg;
        caps_config_mnist(&cfg);
        cfg.image_size = side;
        cfg.routing_iters = routing;
        if (config_spec && (status = apply_config_overrides(&cfg, config_spec))) goto done;
        status = EXIT_FAILURE;
        if (cfg.image_size != side || cfg.in_channels != 1 || cfg.num_classes != MNIST_CLASSES) {
            fail_usage(cmd, "--config: MultiMNIST inputs are %dx%d, 1 channel, %d classes",
                       side, side, MNIST_CLASSES);
            status = EXIT_USAGE;
            goto done;
        }
        if (caps_config_check(&cfg, &err) || capsnet_create(&m, &cfg, batch, &opt, &err)) {
            print_error(&err);
            goto done;
        }
        capsnet_init_weights(m, seed);
        st.lr = lr;
        st.lr_decay = lr_decay;
        st.recon_weight = no_recon ? 0.0f : st.recon_weight;
        st.batch = batch;
        st.max_shift = CAPS_MULTIMNIST_SHIFT; /* the pairs' own shifts; no others */
        st.limit = pairs ? pairs : train.count;
        st.seed = seed;
        if (!(log = malloc(sizeof CSV_HEADER))) {
            fail_runtime("out of memory");
            goto done;
        }
        memcpy(log, CSV_HEADER, sizeof CSV_HEADER);
    }
    pairs = st.limit;
    uint64_t need = caps_model_file_size(m, strlen(log) + 256 * (size_t)(epochs + 1));
    if (check_room(out, need, &err) || (!resume && caps_model_save(m, &st, log, out, &err))) {
        print_error(&err);
        goto done;
    }
    if (caps_multimnist_make(&set, &test, test_pairs, CAPS_MULTIMNIST_TEST_SEED, &err)) {
        print_error(&err);
        goto done;
    }
    size_t P = (size_t)side * side;
    order = malloc((size_t)pairs * sizeof(int));
    ks = malloc((size_t)st.batch * sizeof(int64_t));
    if (!order || !ks || !mm_batch_alloc(&bt, st.batch, P)) {
        fail_runtime("out of memory for %d pairs", pairs);
        goto done;
    }
    install_stop_handlers();
    if (!quiet) {
        printf("capsnet: MultiMNIST from %s: %d training pairs an epoch, %d test pairs, %dx%d\n",
               data, pairs, test_pairs, side, side);
        printf("capsnet: %zu parameters, routing %d, batch %d, lr %g (x%g per epoch), %s, %d "
               "threads, %s\n", capsnet_num_params(m), capsnet_config(m)->routing_iters, st.batch,
               (double)st.lr, (double)st.lr_decay,
               st.recon_weight > 0 ? "both digits reconstructed" : "no decoder",
               caps_set_threads(threads), resume ? "resumed" : "new run");
        fflush(stdout);
    }
    caps_adam hp = {st.lr, st.beta1, st.beta2, st.adam_eps};
    for (int epoch = st.epoch; epoch < epochs; epoch++) {
        char what[64];
        snprintf(what, sizeof what, "epoch %d/%d", epoch + 1, epochs);
        progress_ctx pc = {what, quiet, isatty(STDOUT_FILENO), 0, 0, 0};
        caps_epoch_order(order, pairs, st.seed, epoch);
        float elr = caps_train_lr(&st, epoch);
        int batches = (pairs + st.batch - 1) / st.batch;
        double t0 = caps_seconds(), loss = 0, margin = 0, recon = 0;
        int64_t images = 0;
        for (int bi = 0; bi < batches && !stop_requested; bi++) {
            int first = bi * st.batch, n = pairs - first < st.batch ? pairs - first : st.batch;
            for (int b = 0; b < n; b++) ks[b] = (int64_t)epoch * pairs + order[first + b];
            caps_multimnist_batch(bt.x, bt.target_a, bt.target_b, bt.labels_a, bt.labels_b,
                                  &train, st.seed, ks, n);
            float l = capsnet_forward_pair(m, bt.x, bt.labels_a, bt.labels_b, bt.target_a,
                                           bt.target_b, n, st.recon_weight);
            if (!isfinite(l) || capsnet_status(m, &err)) {
                clear_live_line(&pc);
                if (err.code) print_error(&err);
                else fail_runtime("epoch %d, step %d: the loss is %g; %s keeps epoch %d", epoch + 1,
                                  bi + 1, (double)l, out, st.epoch);
                goto done;
            }
            capsnet_zero_grad(m);
            capsnet_backward(m);
            capsnet_adam_step(m, &hp, elr);
            loss += (double)l * n;
            margin += (double)capsnet_margin_loss(m) * n;
            recon += (double)capsnet_recon_loss(m) * n;
            images += n;
            caps_progress p = {epoch, bi + 1, batches, loss / images, caps_seconds() - t0, images, l};
            on_progress(&p, &pc);
        }
        double train_s = caps_seconds() - t0;
        clear_live_line(&pc);
        if (stop_requested) {
            fprintf(stderr, "capsnet: stopped in epoch %d; %s keeps %d epoch(s): --resume goes on "
                            "from there\n", epoch + 1, out, st.epoch);
            status = EXIT_INTERRUPTED;
            goto done;
        }
        mm_score sc;
        progress_ctx tc = {"testing", quiet, pc.is_tty, 0, 0, 0};
        mm_evaluate(m, &set, test_pairs, st.recon_weight, &bt, &sc, &tc);
        clear_live_line(&tc);
        if (sc.stopped) {
            fprintf(stderr, "capsnet: stopped while testing epoch %d; %s keeps %d epoch(s)\n",
                    epoch + 1, out, st.epoch);
            status = EXIT_INTERRUPTED;
            goto done;
        }
        double acc = (double)sc.right / sc.pairs;
        char row[256];
        snprintf(row, sizeof row, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.2f,%.2f,%.8g,%.2f\n", epoch + 1,
                 loss / images, margin / images, recon / images, sc.loss, acc, train_s,
                 images / train_s, (double)elr, sc.seconds);
        char *grown = realloc(log, strlen(log) + strlen(row) + 1);
        if (!grown) {
            fail_runtime("out of memory");
            goto done;
        }
        log = strcat(grown, row);
        st.epoch = epoch + 1;
        st.batch_in_epoch = 0;
        char log_path[4200];
        train_log_path(log_path, sizeof log_path, out);
        if (caps_model_save(m, &st, log, out, &err) ||
            caps_write_text_atomic(log_path, log, &err)) {
            print_error(&err);
            goto done;
        }
        if (!quiet) {
            printf("epoch %d/%d: train loss %.4f, test pairs right %.2f%% (error %.2f%%, %d "
                   "pairs; loss %.4f), %.1f s, %.1f pairs/s\n", epoch + 1, epochs, loss / images,
                   100 * acc, 100 * (1 - acc), sc.pairs, sc.loss, train_s, images / train_s);
            fflush(stdout);
        }
    }
    if (!quiet) printf("wrote %s\n", out);
    status = 0;
done:
    mm_batch_free(&bt);
    free(order), free(ks), free(log);
    capsnet_free(m);
    caps_multimnist_set_free(&set);
    caps_dataset_free(&train);
    caps_dataset_free(&test);
    return status;
}

/* ------------------------------------------------------------------------ test */

static const char test_usage[] =
    "Usage: capsnet multimnist test --model MODEL [--data DIR] [--pairs N] [--json]\n"
    "\n"
    "Scores a model of capsnet multimnist train on the fixed MultiMNIST test pairs made from\n"
    "the test split of DIR, as the paper's section 6: a pair is right when its two labels are\n"
    "the two longest capsules (paper: 5.2% error on its 10M pairs). Also prints how often the\n"
    "longest capsule alone is one of the two digits.\n"
    "\n"
    "Options:\n";

static int multimnist_test(int argc, char **argv) {
    const char *model = NULL, *data = "data/mnist", *device = "cpu";
    int pairs = CAPS_MULTIMNIST_TEST_PAIRS, json = 0, threads = 0, tf32 = 0, batch = 100;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"data", OPT_STRING, &data, 0, 0, "DIR", "MNIST folder, its test split (data/mnist)", 0},
        {"pairs", OPT_INT, &pairs, 1, CAPS_MULTIMNIST_TEST_PAIRS, "N",
         "the first N test pairs (10000)", 0},
        {"batch", OPT_INT, &batch, 1, MM_BATCH_MAX, "B", "pairs per pass (100)", 0},
        {"json", OPT_FLAG, &json, 0, 0, NULL, "print the result as JSON", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
        DEVICE_OPTIONS(device, tf32),
    };
    const char *cmd = "multimnist test";
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command(cmd, test_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!model) return fail_usage(cmd, "--model is required");
    caps_options opt = {0};
    if ((rc = device_options(&opt, cmd, device, tf32))) return rc;
    caps_set_threads(threads);
    int status = EXIT_FAILURE;
    caps_error err = {0};
    caps_dataset test = {0};
    caps_multimnist_set set = {0};
    caps_train_state st;
    capsnet *m = NULL;
    mm_batch bt = {0};
    if (caps_model_load(&m, &st, NULL, model, batch, &opt, &err)) {
        print_error(&err);
        goto done;
    }
    if (mm_load(&test, data, 0) || mm_model_fits(m, &test, model, data)) goto done;
    if (caps_multimnist_make(&set, &test, pairs, CAPS_MULTIMNIST_TEST_SEED, &err)) {
        print_error(&err);
        goto done;
    }
    if (!mm_batch_alloc(&bt, batch, (size_t)set.rows * set.cols)) {
        fail_runtime("out of memory");
        goto done;
    }
    install_stop_handlers();
    progress_ctx pc = {"testing", json, isatty(STDOUT_FILENO), 0, 0, 0};
    mm_score sc;
    /* The decoder is not needed for the score; the loss is then the margin loss alone. */
    mm_evaluate(m, &set, pairs, 0.0f, &bt, &sc, &pc);
    clear_live_line(&pc);
    if (sc.stopped) {
        status = EXIT_INTERRUPTED;
        goto done;
    }
    double acc = (double)sc.right / sc.pairs, first = (double)sc.first_right / sc.pairs;
    if (json) {
        printf("{\"pairs\": %d, \"right\": %d, \"accuracy\": %.6f, \"error\": %.6f, "
               "\"longest_is_a_label\": %.6f, \"margin_loss\": %.6f, \"seconds\": %.2f}\n",
               sc.pairs, sc.right, acc, 1 - acc, first, sc.loss, sc.seconds);
    } else {
        printf("MultiMNIST test, %d pairs of seed %d from %s:\n", sc.pairs,
               CAPS_MULTIMNIST_TEST_SEED, data);
        printf("  both digits right (the two longest capsules): %.2f%%, error %.2f%% (paper: "
               "5.2%%)\n", 100 * acc, 100 * (1 - acc));
        printf("  longest capsule one of the digits: %.2f%%\n", 100 * first);
        printf("  margin loss %.4f, %.1f s\n", sc.loss, sc.seconds);
    }
    status = 0;
done:
    mm_batch_free(&bt);
    capsnet_free(m);
    caps_multimnist_set_free(&set);
    caps_dataset_free(&test);
    return status;
}

/* ------------------------------------------------------------------------ figure */

#define FIGURE_PER_ROW 8  /* pairs a row of the figure */
#define FIGURE_MAX 96
#define FIGURE_SCALE 3    /* screen pixels per image pixel */

static const char figure_usage[] =
    "Usage: capsnet multimnist figure --model MODEL [--data DIR] [--count N] [--out FILE.png]\n"
    "\n"
    "The paper's Figure 5 for the first N fixed test pairs: each input (labels L:(a,b)) above\n"
    "the reconstructions from the two longest capsules (R:(r1,r2)), the first in red and the\n"
    "second in green, so that where they overlap is yellow. A red frame marks a pair whose\n"
    "two longest capsules are not its two labels.\n"
    "\n"
    "Options:\n";

static int multimnist_figure(int argc, char **argv) {
    const char *model = NULL, *data = "data/mnist", *out = "multimnist-figure.png";
    int count = 16, threads = 0;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"data", OPT_STRING, &data, 0, 0, "DIR", "MNIST folder, its test split (data/mnist)", 0},
        {"count", OPT_INT, &count, 1, FIGURE_MAX, "N", "test pairs 0 .. N-1 (16)", 0},
        {"out", OPT_STRING, &out, 0, 0, "FILE", "PNG to write (multimnist-figure.png)", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
    };
    const char *cmd = "multimnist figure";
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command(cmd, figure_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!model) return fail_usage(cmd, "--model is required");
    if (!figures_built(cmd)) return EXIT_FAILURE;
    caps_set_threads(threads);
    int status = EXIT_FAILURE;
    caps_error err = {0};
    caps_dataset test = {0};
    caps_multimnist_set set = {0};
    capsnet *m = NULL;
    float *x = NULL, *v = NULL, *r1 = NULL, *r2 = NULL, *pixels = NULL;
    int *idx = NULL, *la = NULL, *lb = NULL, *c1 = NULL, *c2 = NULL, *marked = NULL;
    char (*text)[32] = NULL;
    const char **captions = NULL;
    if (caps_model_load(&m, NULL, NULL, model, count, NULL, &err)) {
        print_error(&err);
        goto done;
    }
    if (mm_load(&test, data, 0) || mm_model_fits(m, &test, model, data)) goto done;
    if (caps_multimnist_make(&set, &test, count, CAPS_MULTIMNIST_TEST_SEED, &err)) {
        print_error(&err);
        goto done;
    }
    int J = capsnet_config(m)->num_classes, E = capsnet_config(m)->digit_dim;
    size_t P = (size_t)set.rows * set.cols, JE = (size_t)J * E;
    int cols = count < FIGURE_PER_ROW ? count : FIGURE_PER_ROW;
    int rows = 2 * ((count + cols - 1) / cols), tiles = rows * cols;
    x = malloc((size_t)count * P * sizeof(float));
    v = malloc((size_t)count * JE * sizeof(float));
    r1 = malloc((size_t)count * P * sizeof(float));
    r2 = malloc((size_t)count * P * sizeof(float));
    pixels = calloc((size_t)tiles * 3 * P, sizeof(float));
    idx = malloc((size_t)count * sizeof(int));
    la = malloc((size_t)count * sizeof(int));
    lb = malloc((size_t)count * sizeof(int));
    c1 = malloc((size_t)count * sizeof(int));
    c2 = malloc((size_t)count * sizeof(int));
    marked = calloc((size_t)tiles, sizeof(int));
    text = calloc((size_t)tiles, sizeof *text);
    captions = calloc((size_t)tiles, sizeof *captions);
    if (!x || !v || !r1 || !r2 || !pixels || !idx || !la || !lb || !c1 || !c2 || !marked ||
        !text || !captions) {
        fail_runtime("out of memory");
        goto done;
    }
    for (int k = 0; k < count; k++) idx[k] = k;
    caps_multimnist_set_batch(x, NULL, NULL, la, lb, &set, idx, count);
    /* The capsules of the inputs; then each of the two longest decoded alone, as the paper
     * reconstructs each digit from its own capsule. */
    capsnet_forward(m, x, NULL, count, CAPS_MASK_PREDICTED, 0.0f);
    memcpy(v, capsnet_digit_caps(m), (size_t)count * JE * sizeof(float));
    const float *len = capsnet_lengths(m);
    int right = 0;
    for (int k = 0; k < count; k++) {
        int top[2];
        caps_multimnist_top2(top, len + (size_t)k * J, J);
        c1[k] = top[0];
        c2[k] = top[1];
        marked[(2 * (k / cols) + 1) * cols + k % cols] =
            !caps_multimnist_right(len + (size_t)k * J, J, la[k], lb[k]);
    }
    capsnet_decode(m, r1, v, c1, count);
    capsnet_decode(m, r2, v, c2, count);
    for (int k = 0; k < count; k++) {
        int in = 2 * (k / cols) * cols + k % cols, rec = in + cols;
        float *pin = pixels + (size_t)in * 3 * P, *prec = pixels + (size_t)rec * 3 * P;
        for (int c = 0; c < 3; c++) memcpy(pin + c * P, x + (size_t)k * P, P * sizeof(float));
        memcpy(prec, r1 + (size_t)k * P, P * sizeof(float));         /* red: the longest */
        memcpy(prec + P, r2 + (size_t)k * P, P * sizeof(float));     /* green: the second */
        snprintf(text[in], sizeof text[in], "L:(%d,%d)", la[k], lb[k]);
        snprintf(text[rec], sizeof text[rec], "R:(%d,%d)", c1[k], c2[k]);
        captions[in] = text[in];
        captions[rec] = text[rec];
        right += !marked[rec];
    }
    char title[160];
    snprintf(title, sizeof title, "MultiMNIST test pairs 0 to %d: input above, reconstructions "
             "from the two longest capsules (red, green) below", count - 1);
    caps_grid g = {rows, cols, set.rows, set.cols, FIGURE_SCALE, title, NULL, NULL, captions,
                   marked, 3};
    if (caps_grid_write_png(out, &g, pixels, &err)) {
        print_error(&err);
        goto done;
    }
    printf("wrote %s: %d test pairs, %d with both digits right\n", out, count, right);
    status = 0;
done:
    free(x), free(v), free(r1), free(r2), free(pixels), free(idx), free(la), free(lb);
    free(c1), free(c2), free(marked), free(text), free(captions);
    capsnet_free(m);
    caps_multimnist_set_free(&set);
    caps_dataset_free(&test);
    caps_figures_release();
    return status;
}

int cmd_multimnist(int argc, char **argv) {
    if (argc < 2) {
        fputs(multimnist_usage, stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        fputs(multimnist_usage, stdout);
        return 0;
    }
    if (strcmp(sub, "preview") == 0) return multimnist_preview(argc - 1, argv + 1);
    if (strcmp(sub, "train") == 0) return multimnist_train(argc - 1, argv + 1);
    if (strcmp(sub, "test") == 0) return multimnist_test(argc - 1, argv + 1);
    if (strcmp(sub, "figure") == 0) return multimnist_figure(argc - 1, argv + 1);
    return fail_usage("multimnist", "unknown subcommand '%s' (expected preview, train, test or "
                      "figure)", sub);
}
