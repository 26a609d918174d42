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
static int name_width(const capsnet *m, int J) {
    int w = 0;
    for (int j = 0; j < J; j++) {
        const char *name = caps_class_name(m, j);
        if (name && (int)strlen(name) > w) w = (int)strlen(name);
    }
    return w;
}

/* The tables name the classes when the model has names (a column after the class number);
 * without names the text is as it always was. */
static void print_eval_text(const capsnet *m, const caps_eval *ev, const char *model,
                            const char *data, const caps_affine *affine) {
    int J = ev->num_classes, nw = name_width(m, J);
    printf("model %s on %s: %d test images\n", model, data, ev->total);
    if (affine)
        printf("each rotated by up to %g degrees and shifted by up to %g of its size (seed %llu)\n",
               (double)affine->max_degrees, (double)affine->max_shift_frac,
               (unsigned long long)affine->seed);
    printf("accuracy %.2f%% (%d / %d), test loss %.4f (margin %.4f, reconstruction %.4f)\n\n",
           ev->total ? 100.0 * ev->correct / ev->total : 0.0, ev->correct, ev->total, ev->loss,
           ev->margin, ev->recon);
    if (nw)
        printf("class  %-*s  accuracy   correct / total\n", nw, "name");
    else
        printf("class  accuracy   correct / total\n");
    for (int j = 0; j < J; j++) {
        printf("%5d  ", j);
        if (nw) printf("%-*s  ", nw, caps_class_name(m, j));
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
        if (nw) printf("  %-*s", nw, caps_class_name(m, i));
        for (int j = 0; j < J; j++) printf("%6d", ev->confusion[i * J + j]);
        printf("\n");
    }
}

static void print_eval_json(const capsnet *m, const caps_eval *ev, const char *model,
                            const char *data, const caps_affine *affine) {
    int J = ev->num_classes;
    printf("{\"model\": ");
    json_string(stdout, model);
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
        if (caps_class_name(m, j)) {
            printf("\"name\": ");
            json_string(stdout, caps_class_name(m, j));
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
static void write_per_image(FILE *f, const caps_eval *ev, const caps_dataset *ds, int jsonl) {
    int J = ev->num_classes;
    if (!jsonl) {
        fprintf(f, "index,label,prediction");
        for (int j = 0; j < J; j++) fprintf(f, ",length_%d", j);
        fprintf(f, "\n");
    }
    for (int i = 0; i < ev->total; i++) {
        const float *len = ev->lengths + (size_t)i * J;
        if (jsonl)
            fprintf(f, "{\"index\": %d, \"label\": %d, \"prediction\": %d, \"lengths\": [", i,
                    ds->labels[i], ev->pred[i]);
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
static int rotation_sweep(capsnet *m, const caps_dataset *test, int limit, float recon_weight,
                          const double *deg, int n, uint64_t seed, int json, const char *model,
                          const char *data) {
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
            caps_evaluate(m, test, limit, recon_weight, &affine, &ev, on_progress, &pc, &err)) {
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
    capsnet *m = NULL;
    caps_train_state st;
    if (caps_model_load(&m, &st, NULL, model, batch, &opt, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    caps_dataset test = {0};
    caps_atomic_file out = {0};
    int status = EXIT_FAILURE;
    if (caps_dataset_load(&test, data, 0, capsnet_config(m)->num_classes, &err)) {
        print_error(&err);
        goto done;
    }
    int side = capsnet_config(m)->image_size;
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
        status = rotation_sweep(m, &test, limit, st.recon_weight > 0 ? st.recon_weight : 0.0f,
                                sweep, nsweep, seed, json, model, data);
        goto done;
    }
    /* Opened before the evaluation, so that an unwritable path fails at once. */
    if (per_image && caps_atomic_open(&out, per_image, &err)) {
        print_error(&err);
        goto done;
    }
    progress_ctx pc = {"testing", !isatty(STDERR_FILENO), 1, 0, 0.0, 0};
    caps_eval ev;
    if (caps_evaluate(m, &test, limit, st.recon_weight > 0 ? st.recon_weight : 0.0f,
                      aff ? &affine : NULL, &ev,
                      on_progress, &pc, &err)) {
        print_error(&err);
        goto done;
    }
    clear_live_line(&pc);
    if (per_image) {
        write_per_image(out.f, &ev, &test, ends_with(per_image, ".jsonl"));
        if (caps_atomic_commit(&out, &err)) { /* closes out.f, written or not */
            print_error(&err);
            caps_eval_free(&ev);
            goto done;
        }
    }
    if (json)
        print_eval_json(m, &ev, model, data, aff ? &affine : NULL);
    else
        print_eval_text(m, &ev, model, data, aff ? &affine : NULL);
    caps_eval_free(&ev);
    status = EXIT_SUCCESS;
done:
    if (out.f) caps_atomic_abort(&out);
    caps_dataset_free(&test);
    capsnet_free(m);
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
    capsnet *m = NULL;
    if (caps_model_load(&m, NULL, NULL, model, 1, &opt, &err)) {
        print_error(&err);
        free(files);
        return EXIT_FAILURE;
    }
    const caps_config *cfg = capsnet_config(m);
    int S = cfg->image_size, C = cfg->in_channels, J = cfg->num_classes, failures = 0;
    if (C != 1 && C != 3) {
        capsnet_free(m);
        free(files);
        return fail_runtime("%s: predict reads gray (1 channel) or colour (3 channel) images; "
                            "this model takes %d channels",
                            model, C);
    }
    float *x = malloc((size_t)C * S * S * sizeof(float));
    if (!x) {
        capsnet_free(m);
        free(files);
        return fail_runtime("out of memory");
    }
    for (int f = 0; f < npos; f++) {
        if (caps_image_load_channels(files[f], x, C, S, S, &err)) {
            print_error(&err);
            failures++;
            continue;
        }
        capsnet_forward(m, x, NULL, 1, CAPS_MASK_PREDICTED, 0.0f);
        int cls = capsnet_predictions(m)[0];
        const float *len = capsnet_lengths(m);
        const char *name = caps_class_name(m, cls);
        if (json) {
            printf("{\"file\": ");
            json_string(stdout, files[f]);
            printf(", \"class\": %d, ", cls);
            if (name) {
                printf("\"name\": ");
                json_string(stdout, name);
                printf(", ");
            }
            printf("\"lengths\": [");
            for (int j = 0; j < J; j++) printf("%s%.9g", j ? ", " : "", (double)len[j]);
            printf("]}\n");
        } else {
            printf("%s: class %d", files[f], cls);
            if (name) printf(" (%s)", name);
            printf(" (length %.3f); lengths", (double)len[cls]);
            for (int j = 0; j < J; j++) printf(" %d:%.3f", j, (double)len[j]);
            printf("\n");
        }
    }
    free(x);
    free(files);
    capsnet_free(m);
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
