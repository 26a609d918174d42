/*
 * cmd_eval.c: the commands that use a trained model: capsnet test (accuracy, per-class
 * accuracy, confusion matrix), capsnet predict (images -> classes) and capsnet info.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

/* ------------------------------------------------------------------------ either network */

/* A loaded model file, a capsule network or the baseline CNN (capsnet train --arch cnn),
 * whichever its magic says: test, predict and info read both. */
typedef struct {
    capsnet *caps;  /* a capsule network, or NULL */
    caps_cnn *cnn;  /* or a baseline CNN */
    caps_train_state st;
    char *log;      /* with_log only */
} any_model;

/* Loads path for batches of batch; a CNN runs on the CPU only. 0, or the exit status with
 * the message printed. */
static int any_load(any_model *am, const char *cmd, const char *path, int batch,
                    const caps_options *opt, const char *device, int with_log) {
    memset(am, 0, sizeof *am);
    caps_error err;
    int rc;
    if (caps_cnn_is_model_file(path)) {
        if (device && strcmp(device, "cpu") != 0)
            return fail_usage(cmd, "--device %s: %s is a baseline CNN, which runs on the CPU "
                              "only", device, path);
        rc = caps_cnn_load(&am->cnn, &am->st, with_log ? &am->log : NULL, path, batch, &err);
    } else {
        rc = caps_model_load(&am->caps, &am->st, with_log ? &am->log : NULL, path, batch, opt,
                             &err);
    }
    if (rc) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    return 0;
}

static void any_free(any_model *am) {
    capsnet_free(am->caps);
    caps_cnn_free(am->cnn);
    free(am->log);
    memset(am, 0, sizeof *am);
}

static int any_classes(const any_model *am) {
    return am->caps ? capsnet_config(am->caps)->num_classes : am->cnn->cfg.num_classes;
}

/* Class j's name, or NULL when the model has none. */
static const char *any_class_name(const any_model *am, int j) {
    if (am->caps) return caps_class_name(am->caps, j);
    return am->cnn->class_names && j >= 0 && j < am->cnn->cfg.num_classes
               ? am->cnn->class_names[j] : NULL;
}

/* caps_evaluate or caps_cnn_evaluate; for the CNN the "lengths" are its probabilities. */
static int any_evaluate(any_model *am, const caps_dataset *ds, int limit,
                        const caps_affine *affine, caps_eval *ev, caps_progress_fn cb, void *ctx,
                        caps_error *err) {
    if (am->cnn) return caps_cnn_evaluate(am->cnn, ds, limit, affine, ev, cb, ctx, err);
    return caps_evaluate(am->caps, ds, limit, am->st.recon_weight > 0 ? am->st.recon_weight : 0.0f,
                         affine, ev, cb, ctx, err);
}

/* ------------------------------------------------------------------------ test */

static const char test_usage[] =
    "Usage: capsnet test --model MODEL [--data DIR] [options]\n"
    "\n"
    "Evaluates MODEL on the test set in DIR (t10k-images-idx3-ubyte[.gz] etc.): accuracy,\n"
    "per-class accuracy, loss (the decoder masked by the predicted class, as at test time)\n"
    "and the confusion matrix. --affine DEG,FRAC first rotates every test image by a random\n"
    "angle in [-DEG, DEG] and shifts it by up to FRAC of its size (the notebook's robustness\n"
    "test is 30,0.1), the same draws for the same --seed. --rotations 0,15,30,45,60 sweeps:\n"
    "the accuracy with every image rotated by up to each angle in turn (paper, section 5.2).\n"
    "--canvas N places the test images at the centre of an N x N canvas first, for a model\n"
    "trained with --canvas N (the affNIST experiment: plain MNIST on 40x40; its affNIST-like\n"
    "test set, from capsnet data --make-affnist OUT, is 40x40 already: --data OUT).\n"
    "\n"
    "--per-image FILE writes every image's result at full precision: CSV with the header\n"
    "index,label,prediction,length_0,...; JSON lines (one object per image) when FILE ends\n"
    "in .jsonl. Lengths are printed with %.9g, which reads back as the same float.\n"
    "\n"
    "Options:\n";

/* The widest class name of m, 0 when it has none: the name column of the tables. */
static int name_width(const any_model *m, int J) {
    int w = 0;
    for (int j = 0; j < J; j++) {
        const char *name = any_class_name(m, j);
        if (name && (int)strlen(name) > w) w = (int)strlen(name);
    }
    return w;
}

/* The tables name the classes when the model has names (a column after the class number);
 * without names the text is as it always was. */
static void print_eval_text(const any_model *m, const caps_eval *ev, const char *model,
                            const char *data, const caps_affine *affine) {
    int J = ev->num_classes, nw = name_width(m, J);
    printf("model %s on %s: %d test images\n", model, data, ev->total);
    if (m->cnn)
        printf("baseline CNN %s, %zu parameters\n", cnn_arch_name(&m->cnn->cfg),
               m->cnn->num_params);
    if (affine)
        printf("each rotated by up to %g degrees and shifted by up to %g of its size (seed %llu)\n",
               (double)affine->max_degrees, (double)affine->max_shift_frac,
               (unsigned long long)affine->seed);
    if (m->cnn)
        printf("accuracy %.2f%% (%d / %d), test loss %.4f (cross-entropy)\n\n",
               ev->total ? 100.0 * ev->correct / ev->total : 0.0, ev->correct, ev->total,
               ev->loss);
    else
        printf("accuracy %.2f%% (%d / %d), test loss %.4f (margin %.4f, reconstruction %.4f)\n\n",
               ev->total ? 100.0 * ev->correct / ev->total : 0.0, ev->correct, ev->total,
               ev->loss, ev->margin, ev->recon);
    if (nw)
        printf("class  %-*s  accuracy   correct / total\n", nw, "name");
    else
        printf("class  accuracy   correct / total\n");
    for (int j = 0; j < J; j++) {
        printf("%5d  ", j);
        if (nw) printf("%-*s  ", nw, any_class_name(m, j));
        printf("%7.2f%%   %7d / %d\n",
               ev->class_total[j] ? 100.0 * ev->class_correct[j] / ev->class_total[j] : 0.0,
               ev->class_correct[j], ev->class_total[j]);
    }
    printf("\nconfusion matrix (rows: true class, columns: predicted class)\n      ");
    if (nw) printf("%-*s  ", nw, "");
    for (int j = 0; j < J; j++) printf("%6d", j);
    printf("\n");
    for (int i = 0; i < J; i++) {
        printf("%6d", i);
        if (nw) printf("  %-*s", nw, any_class_name(m, i));
        for (int j = 0; j < J; j++) printf("%6d", ev->confusion[i * J + j]);
        printf("\n");
    }
}

static void print_eval_json(const any_model *m, const caps_eval *ev, const char *model,
                            const char *data, const caps_affine *affine) {
    int J = ev->num_classes;
    printf("{\"model\": ");
    json_string(stdout, model);
    if (m->cnn)
        printf(", \"arch\": \"%s\", \"parameters\": %zu", cnn_arch_name(&m->cnn->cfg),
               m->cnn->num_params);
    printf(", \"data\": ");
    json_string(stdout, data);
    if (affine)
        printf(", \"affine\": {\"max_degrees\": %g, \"max_shift_frac\": %g, \"seed\": %llu}",
               (double)affine->max_degrees, (double)affine->max_shift_frac,
               (unsigned long long)affine->seed);
    printf(", \"accuracy\": %.6f, \"correct\": %d, \"total\": %d, \"loss\": %.6f, "
           "\"margin_loss\": %.6f, \"recon_loss\": %.6f, \"per_class\": [",
           ev->total ? (double)ev->correct / ev->total : 0.0, ev->correct, ev->total, ev->loss,
           ev->margin, ev->recon);
    for (int j = 0; j < J; j++) {
        printf("%s{\"class\": %d, ", j ? ", " : "", j);
        if (any_class_name(m, j)) {
            printf("\"name\": ");
            json_string(stdout, any_class_name(m, j));
            printf(", ");
        }
        printf("\"accuracy\": %.6f, \"correct\": %d, \"total\": %d}",
               ev->class_total[j] ? (double)ev->class_correct[j] / ev->class_total[j] : 0.0,
               ev->class_correct[j], ev->class_total[j]);
    }
    printf("], \"confusion\": [");
    for (int i = 0; i < J; i++) {
        printf("%s[", i ? ", " : "");
        for (int j = 0; j < J; j++) printf("%s%d", j ? ", " : "", ev->confusion[i * J + j]);
        printf("]");
    }
    printf("]}\n");
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The --per-image file: one line per image, every capsule length to the last bit. */
static void write_per_image(FILE *f, const caps_eval *ev, const caps_dataset *ds, int jsonl,
                            int cnn) {
    int J = ev->num_classes;
    /* A CNN's scores are its softmax probabilities, a capsule network's capsule lengths. */
    const char *what = cnn ? "probability" : "length";
    if (!jsonl) {
        fprintf(f, "index,label,prediction");
        for (int j = 0; j < J; j++) fprintf(f, ",%s_%d", what, j);
        fprintf(f, "\n");
    }
    for (int i = 0; i < ev->total; i++) {
        const float *len = ev->lengths + (size_t)i * J;
        if (jsonl)
            fprintf(f, "{\"index\": %d, \"label\": %d, \"prediction\": %d, \"%s\": [", i,
                    ds->labels[i], ev->pred[i], cnn ? "probabilities" : "lengths");
        else
            fprintf(f, "%d,%d,%d", i, ds->labels[i], ev->pred[i]);
        for (int j = 0; j < J; j++)
            fprintf(f, "%s%.9g", jsonl ? (j ? ", " : "") : ",", (double)len[j]);
        fprintf(f, jsonl ? "]}\n" : "\n");
    }
}

/* --rotations D1,D2,...: the maximum angles of a sweep, 0..180 each, at most 64. */
#define MAX_SWEEP 64
static int parse_rotations(const char *spec, double *deg, int *n) {
    *n = 0;
    for (const char *p = spec; *p;) {
        char *end;
        double d = strtod(p, &end);
        if (end == p || (*end && *end != ',') || !(d >= 0 && d <= 180) || *n == MAX_SWEEP)
            return fail_usage("test", "--rotations %s: expected up to %d angles in degrees, "
                              "0 to 180, separated by commas (e.g. 0,15,30,45,60)", spec,
                              MAX_SWEEP);
        deg[(*n)++] = d;
        p = *end ? end + 1 : end;
    }
    return *n ? 0 : fail_usage("test", "--rotations: no angle given");
}

/* The rotation sweep: accuracy on the test images each rotated by a random angle within
 * [-D, D] (no shift), for every D; the same draws for the same --seed. A table, or one JSON
 * object with {"max_degrees", "accuracy", "correct", "total"} per angle. */
static int rotation_sweep(any_model *m, const caps_dataset *test, int limit, const double *deg,
                          int n, uint64_t seed, int json, const char *model, const char *data) {
    if (json) {
        printf("{\"model\": ");
        json_string(stdout, model);
        printf(", \"data\": ");
        json_string(stdout, data);
        printf(", \"seed\": %llu, \"rotations\": [", (unsigned long long)seed);
    } else {
        printf("%s on %s: accuracy on test images rotated by up to +-D degrees (seed %llu)\n"
               "%8s  %9s  %s\n", model, data, (unsigned long long)seed, "D", "accuracy",
               "correct");
    }
    for (int k = 0; k < n; k++) {
        char spec[64];
        snprintf(spec, sizeof spec, "%g,0", deg[k]);
        caps_affine affine;
        caps_error err;
        caps_eval ev;
        char what[48];
        snprintf(what, sizeof what, "rotation %g", deg[k]);
        progress_ctx pc = {what, !isatty(STDERR_FILENO), 1, 0, 0.0, 0};
        if (caps_affine_parse(&affine, spec, seed, &err) ||
            any_evaluate(m, test, limit, &affine, &ev, on_progress, &pc, &err)) {
            print_error(&err);
            return EXIT_FAILURE;
        }
        clear_live_line(&pc);
        double acc = ev.total ? (double)ev.correct / ev.total : 0.0;
        if (json)
            printf("%s{\"max_degrees\": %g, \"accuracy\": %.6f, \"correct\": %d, \"total\": %d}",
                   k ? ", " : "", deg[k], acc, ev.correct, ev.total);
        else
            printf("%8g  %8.2f%%  %d/%d\n", deg[k], 100.0 * acc, ev.correct, ev.total);
        fflush(stdout);
        caps_eval_free(&ev);
    }
    if (json) printf("]}\n");
    return EXIT_SUCCESS;
}

int cmd_test(int argc, char **argv) {
    const char *model = NULL, *data = "data/mnist", *aff = NULL, *device = "cpu";
    const char *per_image = NULL, *rotations = NULL;
    int json = 0, limit = 0, batch = 100, threads = 0, tf32 = 0, canvas = 0;
    uint64_t seed = 1;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"data", OPT_STRING, &data, 0, 0, "DIR", "data folder (default data/mnist)", 0},
        {"json", OPT_FLAG, &json, 0, 0, NULL, "print one JSON object", 0},
        {"per-image", OPT_STRING, &per_image, 0, 0, "FILE",
         "every image's lengths, full precision (CSV, or .jsonl)", 0},
        {"limit", OPT_INT, &limit, 0, INT_MAX, "N", "the first N test images only", 0},
        {"batch", OPT_INT, &batch, 1, 4096, "B", "images per forward pass (100)", 0},
        {"affine", OPT_STRING, &aff, 0, 0, "DEG,FRAC", "rotate and shift every image first", 0},
        {"rotations", OPT_STRING, &rotations, 0, 0, "D,D,..",
         "a sweep: accuracy rotated by up to each D degrees", 0},
        {"seed", OPT_U64, &seed, 0, 0, "S", "seed of the affine draws (1)", 0},
        {"canvas", OPT_INT, &canvas, 1, 1024, "N",
         "test images at the centre of an N x N canvas first", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
        DEVICE_OPTIONS(device, tf32),
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("test", test_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!model) return fail_usage("test", "--model is required");
    double sweep[MAX_SWEEP];
    int nsweep = 0;
    if (rotations && (aff || per_image))
        return fail_usage("test", "--rotations excludes --affine and --per-image");
    if (rotations && (rc = parse_rotations(rotations, sweep, &nsweep))) return rc;
    caps_options opt;
    if ((rc = device_options(&opt, "test", device, tf32))) return rc;
    caps_affine affine;
    caps_error aerr;
    if (aff && caps_affine_parse(&affine, aff, seed, &aerr)) {
        print_error(&aerr);
        return EXIT_USAGE;
    }
    caps_set_threads(threads);
    caps_error err;
    any_model m;
    if ((rc = any_load(&m, "test", model, batch, &opt, device, 0))) return rc;
    caps_dataset test = {0};
    caps_atomic_file out = {0};
    int status = EXIT_FAILURE;
    if (caps_dataset_load(&test, data, 0, any_classes(&m), &err)) {
        print_error(&err);
        goto done;
    }
    int side = m.caps ? capsnet_config(m.caps)->image_size : m.cnn->cfg.image_size;
    if (canvas && caps_dataset_pad(&test, canvas, &err)) {
        print_error(&err);
        fprintf(stderr, "hint: --canvas %d or more\n",
                test.rows > test.cols ? test.rows : test.cols);
        status = EXIT_USAGE;
        goto done;
    }
    if (test.rows != side || test.cols != side) {
        fail_runtime("%s: test images are %dx%d, but %s takes %dx%d", data, test.cols, test.rows,
                     model, side, side);
        if (!canvas && test.rows < side && test.cols < side)
            fprintf(stderr, "hint: --canvas %d places them at the centre of a %dx%d canvas, "
                            "as in training with --canvas %d\n", side, side, side, side);
        goto done;
    }
    if (rotations) {
        status = rotation_sweep(&m, &test, limit, sweep, nsweep, seed, json, model, data);
        goto done;
    }
    /* Opened before the evaluation, so that an unwritable path fails at once. */
    if (per_image && caps_atomic_open(&out, per_image, &err)) {
        print_error(&err);
        goto done;
    }
    progress_ctx pc = {"testing", !isatty(STDERR_FILENO), 1, 0, 0.0, 0};
    caps_eval ev;
    if (any_evaluate(&m, &test, limit, aff ? &affine : NULL, &ev, on_progress, &pc, &err)) {
        print_error(&err);
        goto done;
    }
    clear_live_line(&pc);
    if (per_image) {
        write_per_image(out.f, &ev, &test, ends_with(per_image, ".jsonl"), m.cnn != NULL);
        if (caps_atomic_commit(&out, &err)) { /* closes out.f, written or not */
            print_error(&err);
            caps_eval_free(&ev);
            goto done;
        }
    }
    if (json)
        print_eval_json(&m, &ev, model, data, aff ? &affine : NULL);
    else
        print_eval_text(&m, &ev, model, data, aff ? &affine : NULL);
    caps_eval_free(&ev);
    status = EXIT_SUCCESS;
done:
    if (out.f) caps_atomic_abort(&out);
    caps_dataset_free(&test);
    any_free(&m);
    return status;
}

/* ------------------------------------------------------------------------ predict */

static const char predict_usage[] =
    "Usage: capsnet predict --model MODEL [--json] FILE...\n"
    "\n"
    "Classifies each FILE, a PNG, PGM or PPM of the model's image size (28x28 for MNIST,\n"
    "white digit on black as in MNIST), and prints the predicted class (with its name when\n"
    "the model has class names) and the length of every class capsule. A gray model reads\n"
    "colour files as gray; a colour model (3 input channels) reads gray files as three equal\n"
    "planes. --json prints one JSON object per file per line.\n"
    "\n"
    "Options:\n";

#define MAX_FILES 100000

int cmd_predict(int argc, char **argv) {
    const char *model = NULL, *device = "cpu";
    int json = 0, threads = 0, tf32 = 0;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"json", OPT_FLAG, &json, 0, 0, NULL, "one JSON object per file per line", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
        DEVICE_OPTIONS(device, tf32),
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char **files = malloc(MAX_FILES * sizeof *files);
    if (!files) return fail_runtime("out of memory");
    int rc = parse_command("predict", predict_usage, opts, nopts, argc, argv, files, MAX_FILES,
                           &npos, &done);
    if (done || !model || npos == 0) {
        free(files);
        if (done) return rc;
        return fail_usage("predict", !model ? "--model is required" : "no image files given");
    }
    caps_options opt;
    if ((rc = device_options(&opt, "predict", device, tf32))) {
        free(files);
        return rc;
    }
    caps_set_threads(threads);
    caps_error err;
    any_model m;
    if ((rc = any_load(&m, "predict", model, 1, &opt, device, 0))) {
        free(files);
        return rc;
    }
    int S, C, J = any_classes(&m), failures = 0;
    if (m.caps) {
        S = capsnet_config(m.caps)->image_size;
        C = capsnet_config(m.caps)->in_channels;
    } else {
        S = m.cnn->cfg.image_size;
        C = m.cnn->cfg.in_channels;
    }
    if (C != 1 && C != 3) {
        any_free(&m);
        free(files);
        return fail_runtime("%s: predict reads gray (1 channel) or colour (3 channel) images; "
                            "this model takes %d channels",
                            model, C);
    }
    float *x = malloc((size_t)C * S * S * sizeof(float));
    if (!x) {
        any_free(&m);
        free(files);
        return fail_runtime("out of memory");
    }
    /* A capsule network scores a class by its capsule's length, the CNN by its softmax
     * probability. */
    const char *what = m.caps ? "length" : "probability";
    for (int f = 0; f < npos; f++) {
        if (caps_image_load_channels(files[f], x, C, S, S, &err)) {
            print_error(&err);
            failures++;
            continue;
        }
        int cls;
        const float *len;
        if (m.caps) {
            capsnet_forward(m.caps, x, NULL, 1, CAPS_MASK_PREDICTED, 0.0f);
            cls = capsnet_predictions(m.caps)[0];
            len = capsnet_lengths(m.caps);
        } else {
            caps_cnn_forward(m.cnn, x, NULL, 1, 0, 0);
            cls = m.cnn->pred[0];
            len = m.cnn->a.prob;
        }
        const char *name = any_class_name(&m, cls);
        if (json) {
            printf("{\"file\": ");
            json_string(stdout, files[f]);
            printf(", \"class\": %d, ", cls);
            if (name) {
                printf("\"name\": ");
                json_string(stdout, name);
                printf(", ");
            }
            printf("\"%s\": [", m.caps ? "lengths" : "probabilities");
            for (int j = 0; j < J; j++) printf("%s%.9g", j ? ", " : "", (double)len[j]);
            printf("]}\n");
        } else {
            printf("%s: class %d", files[f], cls);
            if (name) printf(" (%s)", name);
            printf(" (%s %.3f); %s", what, (double)len[cls],
                   m.caps ? "lengths" : "probabilities");
            for (int j = 0; j < J; j++) printf(" %d:%.3f", j, (double)len[j]);
            printf("\n");
        }
    }
    free(x);
    free(files);
    any_free(&m);
    return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ------------------------------------------------------------------------ info */

static const char info_usage[] =
    "Usage: capsnet info --model MODEL [--compare OTHER]\n"
    "\n"
    "Prints the configuration, the training state and the log of a model file; with\n"
    "--compare, how far another model file's weights are from its own, tensor by tensor\n"
    "(two runs that differ only in the order of float sums: about 1e-6).\n"
    "\n"
    "Options:\n";

/* How far the weights of b are from a's, per tensor: the largest difference of a weight
 * relative to the largest weight of a's tensor, and the norm of the difference relative to
 * the norm of a's tensor (|b - a| / |a|). Both are scale-free; the second is the one that
 * Adam's steps on weights with near-zero gradients do not dominate. Two runs that differ
 * only in the order of float sums come out near 1e-6. */
static int compare_models(const capsnet *a, const char *a_path, const char *b_path) {
    caps_error err;
    capsnet *b = NULL;
    if (caps_model_load(&b, NULL, NULL, b_path, 1, NULL, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    if (capsnet_num_params(b) != capsnet_num_params(a) ||
        memcmp(capsnet_config(a), capsnet_config(b), sizeof(caps_config)) != 0) {
        capsnet_free(b);
        return fail_runtime("%s: another configuration than %s's; nothing to compare", b_path,
                            a_path);
    }
    size_t n = capsnet_num_params(a);
    float *wa = malloc(n * sizeof(float)), *wb = malloc(n * sizeof(float));
    int rc = !wa || !wb ? fail_runtime("out of memory") : EXIT_SUCCESS;
    if (!rc && (capsnet_read(a, CAPS_PARAMS, 0, n, wa, &err) ||
                capsnet_read(b, CAPS_PARAMS, 0, n, wb, &err))) {
        print_error(&err);
        rc = EXIT_FAILURE;
    }
    double worst = 0.0, worst_norm = 0.0;
    for (int t = 0; !rc && t < CAPS_NUM_PARAM_TENSORS; t++) {
        size_t off = capsnet_param_offset(a, t), cnt = capsnet_param_size(a, t);
        double top = 0.0, gap = 0.0, norm = 0.0, dnorm = 0.0;
        for (size_t i = off; i < off + cnt; i++) {
            double d = (double)wb[i] - wa[i];
            top = fmax(top, fabs(wa[i]));
            gap = fmax(gap, fabs(d));
            norm += (double)wa[i] * wa[i];
            dnorm += d * d;
        }
        double rel = top > 0 ? gap / top : gap, rel_norm = norm > 0 ? sqrt(dnorm / norm) : 0.0;
        worst = fmax(worst, rel);
        worst_norm = fmax(worst_norm, rel_norm);
        printf("compare %-8s largest difference %.3g (%.3g of its largest weight), "
               "|b - a| / |a| %.3g\n", capsnet_param_name(t), gap, rel, rel_norm);
    }
    if (!rc)
        printf("compare: %s against %s: largest difference %.3g of a tensor's largest weight, "
               "|b - a| / |a| at most %.3g, Adam steps %lld and %lld\n", b_path, a_path, worst,
               worst_norm, (long long)capsnet_adam_t(a), (long long)capsnet_adam_t(b));
    free(wa), free(wb);
    capsnet_free(b);
    return rc;
}

/* capsnet info on a baseline CNN's file: which configuration, its training state, its log;
 * --compare against another CNN file: the largest weight difference per tensor. */
static int info_cnn(const char *model, const char *other) {
    any_model am;
    int rc = any_load(&am, "info", model, 1, NULL, NULL, 1);
    if (rc) return rc;
    const caps_cnn *m = am.cnn;
    const caps_cnn_config *c = &m->cfg;
    const caps_train_state *st = &am.st;
    printf("%s: capsnet baseline CNN model file (arch %s), checksum ok\n", model,
           cnn_arch_name(c));
    printf("parameters %zu, Adam steps %lld, %.3g GFLOP forward an image\n", m->num_params,
           (long long)m->adam_t, caps_cnn_flops_forward(c) / 1e9);
    printf("config: image_size=%d in_channels=%d conv1_channels=%d conv2_channels=%d "
           "conv3_channels=%d kernel=%d fc1=%d fc2=%d num_classes=%d dropout=%g\n",
           c->image_size, c->in_channels, c->conv1_channels, c->conv2_channels,
           c->conv3_channels, c->kernel, c->fc1, c->fc2, c->num_classes, (double)c->dropout);
    printf("training: epochs done %d, batch %lld of the next, batch size %d, lr %g, decay %g, "
           "shift %d, limit %d, seed %llu\n",
           st->epoch, (long long)st->batch_in_epoch, st->batch, (double)st->lr,
           (double)st->lr_decay, st->max_shift, st->limit, (unsigned long long)st->seed);
    if (m->class_names) {
        printf("classes:");
        for (int j = 0; j < c->num_classes; j++) printf(" %d=%s", j, m->class_names[j]);
        printf("\n");
    } else {
        printf("classes: %d, unnamed\n", c->num_classes);
    }
    if (am.log && *am.log) printf("log:\n%s", am.log);
    if (other) {
        any_model bm;
        rc = any_load(&bm, "info", other, 1, NULL, NULL, 0);
        if (!rc && (!bm.cnn || bm.cnn->num_params != m->num_params ||
                    memcmp(&bm.cnn->cfg, c, sizeof *c) != 0))
            rc = fail_runtime("%s: another network or configuration than %s's; nothing to "
                              "compare", other, model);
        for (int t = 0; !rc && t < CNN_NUM_PARAM_TENSORS; t++) {
            double gap = 0.0;
            for (size_t i = 0; i < m->param_sizes[t]; i++)
                gap = fmax(gap, fabs((double)bm.cnn->w[t][i] - m->w[t][i]));
            printf("compare %-12s largest difference %.3g\n", caps_cnn_param_name(t), gap);
        }
        if (!rc)
            printf("compare: %s against %s: Adam steps %lld and %lld\n", other, model,
                   (long long)m->adam_t, (long long)bm.cnn->adam_t);
        any_free(&bm);
    }
    any_free(&am);
    return rc;
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL, *other = NULL;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"compare", OPT_STRING, &other, 0, 0, "OTHER",
         "also: how far OTHER's weights are from MODEL's, per tensor", 0},
    };
    int npos, done;
    char *pos[1];
    int rc = parse_command("info", info_usage, opts, 2, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!model) return fail_usage("info", "--model is required");
    if (caps_cnn_is_model_file(model)) return info_cnn(model, other);
    caps_error err;
    capsnet *m = NULL;
    caps_train_state st;
    char *log = NULL;
    if (caps_model_load(&m, &st, &log, model, 1, NULL, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    const caps_config *cfg = capsnet_config(m);
    printf("%s: capsnet model file, checksum ok\n", model);
    printf("parameters %zu, Adam steps %lld\n", caps_num_params(cfg),
           (long long)capsnet_adam_t(m));
    printf("config:");
    for (int k = 0; k < CAPS_CONFIG_FIELDS; k++)
        printf(" %s=%d", caps_config_field_name(k), caps_config_get(cfg, k));
    printf(" routing=%s", caps_routing_name(cfg->routing));
    printf("\ntraining: epochs done %d, batch %lld of the next, batch size %d, lr %g, decay %g, "
           "recon weight %g, shift %d, limit %d, seed %llu\n",
           st.epoch, (long long)st.batch_in_epoch, st.batch, (double)st.lr,
           (double)st.lr_decay, (double)st.recon_weight, st.max_shift, st.limit,
           (unsigned long long)st.seed);
    if (caps_class_name(m, 0)) {
        printf("classes:");
        for (int j = 0; j < cfg->num_classes; j++) printf(" %d=%s", j, caps_class_name(m, j));
        printf("\n");
    } else {
        printf("classes: %d, unnamed\n", cfg->num_classes);
    }
    if (log && *log) printf("log:\n%s", log);
    free(log);
    rc = other ? compare_models(m, model, other) : EXIT_SUCCESS;
    capsnet_free(m);
    return rc;
}
