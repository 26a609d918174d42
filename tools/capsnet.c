/*
 * capsnet.c: the command-line program, the only main of the project.
 *
 *   capsnet train    train on an IDX data set (MNIST layout), checkpoint every epoch
 *   capsnet test     accuracy, per-class accuracy, loss and confusion matrix of a model
 *   capsnet predict  classify 28x28 PNG or PGM images
 *   capsnet info     what a model file holds
 *
 * Exit status: 0 success, 1 runtime error (a file, the data, a numeric failure), 2 usage
 * error (unknown flag, bad value), 130 interrupted (training saved a checkpoint first).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "capsnet.h"

#define CAPSNET_VERSION "0.1.0"
#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130

/* ------------------------------------------------------------------------ messages */

static void print_error(const caps_error *err) {
    fprintf(stderr, "capsnet: error: %s\n", err->msg);
    if (err->hint[0]) fprintf(stderr, "hint: %s\n", err->hint);
}

static int fail_runtime(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "capsnet: error: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_FAILURE;
}

static int fail_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "capsnet: error: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fprintf(stderr, "Try 'capsnet %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
    return EXIT_USAGE;
}

/* Writes s as a JSON string (quotes included). */
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* "1:02:03" or "4:05". */
static void format_duration(char *buf, size_t n, double seconds) {
    long s = seconds > 0 && seconds < 1e9 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
}

/* ------------------------------------------------------------------------ options */

typedef enum { OPT_FLAG, OPT_INT, OPT_FLOAT, OPT_STRING, OPT_U64 } opt_kind;

typedef struct {
    const char *name;    /* without the leading "--" */
    opt_kind kind;
    void *dest;          /* int*, float*, const char**, uint64_t* */
    double min, max;     /* inclusive range for numbers */
    const char *metavar; /* NULL for flags */
    const char *help;
    int given;           /* set by the parser */
} option;

static int parse_number(const char *s, opt_kind kind, double min, double max, void *dest) {
    char *end;
    errno = 0;
    if (kind == OPT_FLOAT) {
        double v = strtod(s, &end);
        if (end == s || *end || errno || !isfinite(v) || v < min || v > max) return -1;
        *(float *)dest = (float)v;
    } else if (kind == OPT_U64) {
        if (*s == '-') return -1;
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s || *end || errno) return -1;
        *(uint64_t *)dest = (uint64_t)v;
    } else {
        long v = strtol(s, &end, 10);
        if (end == s || *end || errno || v < min || v > max) return -1;
        *(int *)dest = (int)v;
    }
    return 0;
}

static void print_options(FILE *f, const option *opts, int n) {
    for (int k = 0; k < n; k++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", opts[k].name, opts[k].metavar ? " " : "",
                 opts[k].metavar ? opts[k].metavar : "");
        fprintf(f, "  %-22s %s\n", left, opts[k].help);
    }
}

/* Parses argv[1..] (argv[0] is the command) into opts; the rest are positional arguments,
 * collected into pos (at most max_pos). Returns 0, 1 for --help, or EXIT_USAGE. */
static int parse_options(const char *cmd, option *opts, int n, int argc, char **argv,
                         char **pos, int max_pos, int *npos) {
    *npos = 0;
    int only_positional = 0;
    for (int a = 1; a < argc; a++) {
        char *arg = argv[a];
        if (!only_positional && strcmp(arg, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (only_positional || strncmp(arg, "--", 2) != 0) {
            if (strcmp(arg, "-h") == 0) return 1;
            if (*npos == max_pos) return fail_usage(cmd, "unexpected argument '%s'", arg);
            pos[(*npos)++] = arg;
            continue;
        }
        if (strcmp(arg, "--help") == 0) return 1;
        char *name = arg + 2, *value = strchr(name, '=');
        size_t len = value ? (size_t)(value - name) : strlen(name);
        option *o = NULL;
        for (int k = 0; k < n; k++)
            if (strlen(opts[k].name) == len && strncmp(opts[k].name, name, len) == 0) o = &opts[k];
        if (!o) return fail_usage(cmd, "unknown option '--%.*s'", (int)len, name);
        if (o->kind == OPT_FLAG) {
            if (value) return fail_usage(cmd, "option '--%s' takes no value", o->name);
            *(int *)o->dest = 1;
            o->given = 1;
            continue;
        }
        if (value) {
            value++;
        } else {
            if (a + 1 >= argc) return fail_usage(cmd, "option '--%s' needs a value", o->name);
            value = argv[++a];
        }
        if (o->kind == OPT_STRING) {
            if (!*value) return fail_usage(cmd, "option '--%s' needs a non-empty value", o->name);
            *(const char **)o->dest = value;
        } else if (parse_number(value, o->kind, o->min, o->max, o->dest) != 0) {
            if (o->kind == OPT_U64)
                return fail_usage(cmd, "bad value '%s' for --%s (expected a non-negative integer)",
                                  value, o->name);
            return fail_usage(cmd, "bad value '%s' for --%s (expected %s %g..%g)", value, o->name,
                              o->kind == OPT_INT ? "an integer in" : "a number in", o->min,
                              o->max);
        }
        o->given = 1;
    }
    return 0;
}

/* parse_options for a command, printing usage and the option table for --help.
 * Returns 0 to go on, or the exit status to return now (0 after --help). */
static int parse_command(const char *cmd, const char *usage, option *opts, int n, int argc,
                         char **argv, char **pos, int max_pos, int *npos, int *done) {
    int rc = parse_options(cmd, opts, n, argc, argv, pos, max_pos, npos);
    *done = rc != 0;
    if (rc == 1) {
        fputs(usage, stdout);
        print_options(stdout, opts, n);
        return 0;
    }
    return rc;
}

static const option *find_option(const option *opts, int n, const char *name) {
    for (int k = 0; k < n; k++)
        if (strcmp(opts[k].name, name) == 0) return &opts[k];
    return NULL;
}

/* --config KEY=VALUE[,KEY=VALUE...] overrides configuration fields by name. */
static int apply_config_overrides(caps_config *cfg, const char *spec) {
    char buf[1024];
    if (strlen(spec) >= sizeof buf) return fail_usage("train", "--config value too long");
    strcpy(buf, spec);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) return fail_usage("train", "bad --config item '%s' (expected KEY=VALUE)", item);
        *eq = '\0';
        int field = -1, value;
        for (int k = 0; k < CAPS_CONFIG_FIELDS; k++)
            if (strcmp(caps_config_field_name(k), item) == 0) field = k;
        if (field < 0) {
            fprintf(stderr, "capsnet: error: unknown --config key '%s'; keys:", item);
            for (int k = 0; k < CAPS_CONFIG_FIELDS; k++)
                fprintf(stderr, " %s", caps_config_field_name(k));
            fputc('\n', stderr);
            return EXIT_USAGE;
        }
        if (parse_number(eq + 1, OPT_INT, 1, 4096, &value) != 0)
            return fail_usage("train", "bad --config value '%s' for %s (expected 1..4096)", eq + 1,
                              item);
        caps_config_set(cfg, field, value);
    }
    return 0;
}

/* ------------------------------------------------------------------------ progress */

/* SIGINT / SIGTERM during training: the first finishes the step and saves; the second
 * kills the program at once (the last checkpoint on disk stays as it was). */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    if (stop_requested) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_requested = 1;
}

typedef struct {
    const char *what;  /* "epoch 2/3" or "testing" */
    int quiet;         /* print nothing, only watch for signals */
    int is_tty;
    int start_batch;   /* batches already done when this run of the loop began */
    double last_print; /* for throttling the live line */
    int printed;       /* a live line is on the terminal */
} progress_ctx;

static void clear_live_line(progress_ctx *pc) {
    if (pc->printed) fprintf(stderr, "\r\033[K");
    pc->printed = 0;
}

/* A live line on a terminal (10 times a second at most); on a pipe or file, a plain line
 * every tenth of the work, so logs show progress without flooding. */
static int on_progress(const caps_progress *p, void *ctx) {
    progress_ctx *pc = ctx;
    if (pc->quiet) return stop_requested != 0;
    double t = now_seconds();
    int done = p->batch - pc->start_batch, last = p->batch == p->batches;
    double per_batch = done > 0 ? p->seconds / done : 0.0;
    char eta[32];
    format_duration(eta, sizeof eta, per_batch * (p->batches - p->batch));
    char line[256];
    snprintf(line, sizeof line, "%s  batch %d/%d  loss %.4f  %.1f img/s  ETA %s", pc->what,
             p->batch, p->batches, p->loss, p->seconds > 0 ? p->images / p->seconds : 0.0, eta);
    if (pc->is_tty) {
        if (t - pc->last_print >= 0.1 || last) {
            fprintf(stderr, "\r\033[K%s", line);
            pc->last_print = t;
            pc->printed = 1;
        }
    } else {
        int tenth = (int)((long long)p->batch * 10 / p->batches);
        int before = (int)((long long)(p->batch - 1) * 10 / p->batches);
        if (tenth != before && !last) fprintf(stderr, "%s\n", line);
    }
    return stop_requested != 0;
}

/* ------------------------------------------------------------------------ shared helpers */

/* The log sits beside the model: mnist.caps -> mnist.csv, other names get ".csv" added. */
static void log_path_for(char *out, size_t n, const char *model) {
    size_t len = strlen(model);
    if (len > 5 && strcmp(model + len - 5, ".caps") == 0)
        snprintf(out, n, "%.*s.csv", (int)(len - 5), model);
    else
        snprintf(out, n, "%s.csv", model);
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ------------------------------------------------------------------------ train */

#define CSV_HEADER                                                                      \
    "epoch,train_loss,train_margin_loss,train_recon_loss,test_loss,test_accuracy,"      \
    "train_seconds,train_images_per_s,learning_rate,test_seconds\n"

static const char train_usage[] =
    "Usage: capsnet train [--data DIR] [--out MODEL] [options]\n"
    "\n"
    "Trains the capsule network of Sabour et al. (2017) on an IDX data set in DIR\n"
    "(train-images-idx3-ubyte[.gz] etc., as scripts/get-data.sh writes them). After every\n"
    "epoch it evaluates the test set, saves MODEL atomically (weights, Adam state, log) and\n"
    "appends a line to the CSV log beside it (MODEL with .csv for .caps).\n"
    "Ctrl-C finishes the current step, saves, and tells how to resume.\n"
    "\n"
    "Options:\n";

static int cmd_train(int argc, char **argv) {
    const char *data = "data/mnist", *out = "mnist.caps", *config_spec = NULL;
    int epochs = 3, routing = 3, no_recon = 0, test_limit = 0, threads = 0, resume = 0;
    int overwrite = 0, classes = 10, quiet = 0;
    caps_train_state st;
    caps_train_state_default(&st);
    float lr = st.lr, lr_decay = st.lr_decay;
    int batch = st.batch, limit = 0, shift = st.max_shift;
    uint64_t seed = st.seed;
    option opts[] = {
        {"data", OPT_STRING, &data, 0, 0, "DIR", "data folder (default data/mnist)", 0},
        {"out", OPT_STRING, &out, 0, 0, "MODEL", "model file to write (default mnist.caps)", 0},
        {"epochs", OPT_INT, &epochs, 1, 100000, "N", "epochs in all, counting resumed ones (3)", 0},
        {"batch", OPT_INT, &batch, 1, 4096, "B", "images per step (100)", 0},
        {"lr", OPT_FLOAT, &lr, 1e-9, 10, "X", "Adam learning rate (0.001)", 0},
        {"lr-decay", OPT_FLOAT, &lr_decay, 1e-6, 1, "X", "learning rate factor per epoch (0.9)", 0},
        {"routing", OPT_INT, &routing, 1, 100, "R", "routing iterations (3)", 0},
        {"no-recon", OPT_FLAG, &no_recon, 0, 0, NULL, "train without the decoder", 0},
        {"shift", OPT_INT, &shift, 0, 8, "N", "random shift in pixels, 0 = none (2)", 0},
        {"limit", OPT_INT, &limit, 0, INT_MAX, "N", "train on the first N images only", 0},
        {"test-limit", OPT_INT, &test_limit, 0, INT_MAX, "N", "evaluate the first N test images", 0},
        {"classes", OPT_INT, &classes, 2, 4096, "N", "number of classes (10)", 0},
        {"config", OPT_STRING, &config_spec, 0, 0, "K=V,..",
         "other shapes, e.g. conv1_channels=64,primary_types=8", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
        {"seed", OPT_U64, &seed, 0, 0, "S", "seed of weights, shuffles and shifts (1)", 0},
        {"resume", OPT_FLAG, &resume, 0, 0, NULL, "continue the run saved in MODEL", 0},
        {"overwrite", OPT_FLAG, &overwrite, 0, 0, NULL, "replace an existing MODEL", 0},
        {"quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress lines", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("train", train_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (resume && overwrite) return fail_usage("train", "--resume and --overwrite exclude each other");

    int nthreads = caps_set_threads(threads);
    caps_error err;
    caps_dataset train = {0}, test = {0};
    capsnet *m = NULL;
    char *log = NULL;
    int status = EXIT_FAILURE;
    char log_path[4200];
    log_path_for(log_path, sizeof log_path, out);

    if (resume) {
        caps_config fcfg;
        if (caps_model_peek(&fcfg, &st, out, &err)) {
            print_error(&err);
            if (!file_exists(out)) fprintf(stderr, "hint: --resume continues an earlier run; without it, training starts anew\n");
            return EXIT_FAILURE;
        }
        /* Flags given now must agree with the run being resumed. */
        const struct {
            const char *flag;
            double now, saved;
        } same[] = {{"batch", batch, st.batch},       {"lr", lr, st.lr},
                    {"lr-decay", lr_decay, st.lr_decay}, {"routing", routing, fcfg.routing_iters},
                    {"shift", shift, st.max_shift},    {"limit", limit, st.limit},
                    {"seed", (double)seed, (double)st.seed}, {"classes", classes, fcfg.num_classes}};
        for (size_t k = 0; k < sizeof same / sizeof same[0]; k++)
            if (find_option(opts, nopts, same[k].flag)->given && same[k].now != same[k].saved)
                return fail_usage("train", "--%s %g differs from the run saved in %s (%g)",
                                  same[k].flag, same[k].now, out, same[k].saved);
        if (find_option(opts, nopts, "no-recon")->given && st.recon_weight != 0.0f)
            return fail_usage("train", "--no-recon differs from the run saved in %s", out);
        if (config_spec) {
            caps_config want = fcfg;
            if ((rc = apply_config_overrides(&want, config_spec))) return rc;
            for (int k = 0; k < CAPS_CONFIG_FIELDS; k++)
                if (caps_config_get(&want, k) != caps_config_get(&fcfg, k))
                    return fail_usage("train", "--config %s=%d differs from the model saved in %s "
                                      "(%d)", caps_config_field_name(k), caps_config_get(&want, k),
                                      out, caps_config_get(&fcfg, k));
        }
        if (caps_model_load(&m, &st, &log, out, st.batch, &err)) {
            print_error(&err);
            return EXIT_FAILURE;
        }
        classes = fcfg.num_classes;
    } else if (file_exists(out) && !overwrite) {
        fprintf(stderr, "capsnet: error: %s: file exists\n", out);
        fprintf(stderr, "hint: --resume continues that run; --overwrite starts a new one over it\n");
        return EXIT_FAILURE;
    }

    if (caps_dataset_load(&train, data, 1, classes, &err) ||
        caps_dataset_load(&test, data, 0, classes, &err)) {
        print_error(&err);
        goto done;
    }
    if (!m) {
        caps_config cfg;
        caps_config_mnist(&cfg);
        cfg.image_size = train.rows;
        cfg.in_channels = train.channels;
        cfg.num_classes = classes;
        cfg.routing_iters = routing;
        if (train.rows != train.cols) {
            fail_runtime("%s: images are %dx%d; the network takes square images", data,
                         train.cols, train.rows);
            goto done;
        }
        if (config_spec && (rc = apply_config_overrides(&cfg, config_spec))) {
            status = rc;
            goto done;
        }
        st.lr = lr;
        st.lr_decay = lr_decay;
        st.batch = batch;
        st.max_shift = shift;
        st.limit = limit;
        st.seed = seed;
        st.recon_weight = no_recon ? 0.0f : st.recon_weight;
        if (capsnet_create(&m, &cfg, batch, &err)) {
            print_error(&err);
            goto done;
        }
        capsnet_init_weights(m, seed);
        log = malloc(sizeof CSV_HEADER);
        if (!log) {
            fail_runtime("out of memory");
            goto done;
        }
        memcpy(log, CSV_HEADER, sizeof CSV_HEADER);
        /* Fail now, not after the first epoch, if the model cannot be written. */
        if (caps_model_save(m, &st, log, out, &err)) {
            print_error(&err);
            goto done;
        }
    }
    const caps_config *cfg = capsnet_config(m);
    int n_train = st.limit > 0 && st.limit < train.count ? st.limit : train.count;
    int n_test = test_limit > 0 && test_limit < test.count ? test_limit : test.count;
    fprintf(stderr,
            "capsnet: training on %s: %d images (%d test), %dx%d, %d classes\n"
            "capsnet: %zu parameters, routing %d, batch %d, lr %g (x%g per epoch), %s, "
            "%d threads, %s\n",
            data, n_train, n_test, cfg->image_size, cfg->image_size, cfg->num_classes,
            caps_num_params(cfg), cfg->routing_iters, st.batch, (double)st.lr,
            (double)st.lr_decay, st.recon_weight > 0 ? "with decoder" : "no decoder", nthreads,
            resume ? "resumed" : "new run");
    if (resume)
        fprintf(stderr, "capsnet: resuming %s at epoch %d, batch %lld\n", out, st.epoch + 1,
                (long long)st.batch_in_epoch);
    if (st.epoch >= epochs) {
        fprintf(stderr, "capsnet: %s has %d epochs already (--epochs %d); nothing to do\n", out,
                st.epoch, epochs);
        status = EXIT_SUCCESS;
        goto done;
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int is_tty = isatty(STDERR_FILENO);
    double last_accuracy = -1.0;
    while (st.epoch < epochs) {
        char what[64];
        snprintf(what, sizeof what, "epoch %d/%d", st.epoch + 1, epochs);
        progress_ctx pc = {what, quiet, is_tty, (int)st.batch_in_epoch, 0.0, 0};
        float lr_now = st.lr * powf(st.lr_decay, (float)st.epoch);
        caps_epoch_stats es;
        rc = caps_train_epoch(m, &st, &train, &es, on_progress, &pc, &err);
        clear_live_line(&pc);
        if (rc) {
            print_error(&err);
            fprintf(stderr, "capsnet: %s keeps the last good checkpoint\n", out);
            goto done;
        }
        if (es.stopped) {
            if (caps_model_save(m, &st, log, out, &err)) {
                print_error(&err);
                goto done;
            }
            fprintf(stderr,
                    "capsnet: interrupted in epoch %d at batch %lld; saved %s\n"
                    "capsnet: resume with: capsnet train --resume --out %s --data %s --epochs %d\n",
                    st.epoch + 1, (long long)st.batch_in_epoch, out, out, data, epochs);
            status = EXIT_INTERRUPTED;
            goto done;
        }
        /* Evaluation is short: a live line on a terminal, nothing in a log file. */
        progress_ctx tc = {"testing", quiet || !is_tty, is_tty, 0, 0.0, 0};
        caps_eval ev;
        if (caps_evaluate(m, &test, test_limit, st.recon_weight, &ev, on_progress, &tc, &err)) {
            print_error(&err);
            goto done;
        }
        clear_live_line(&tc);
        double acc = ev.total ? (double)ev.correct / ev.total : 0.0, test_loss = ev.loss;
        last_accuracy = acc;
        double ips = es.seconds > 0 ? es.images / es.seconds : 0.0;
        char row[512];
        snprintf(row, sizeof row, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.2f,%.2f,%.8g,%.2f\n", st.epoch,
                 es.loss, es.margin, es.recon, ev.loss, acc, es.seconds, ips, (double)lr_now,
                 ev.seconds);
        char *grown = realloc(log, strlen(log) + strlen(row) + 1);
        if (!grown) {
            caps_eval_free(&ev);
            fail_runtime("out of memory");
            goto done;
        }
        log = grown;
        strcat(log, row);
        caps_eval_free(&ev);
        if (caps_model_save(m, &st, log, out, &err)) {
            print_error(&err);
            goto done;
        }
        if (caps_write_text_atomic(log_path, log, &err)) {
            print_error(&err);
            goto done;
        }
        printf("epoch %d/%d: train loss %.4f, test accuracy %.2f%% (loss %.4f), %.1f s, "
               "%.1f img/s\n",
               st.epoch, epochs, es.loss, 100.0 * acc, test_loss, es.seconds, ips);
        fflush(stdout);
        if (stop_requested) {
            fprintf(stderr, "capsnet: interrupted after epoch %d; saved %s\n"
                            "capsnet: resume with: capsnet train --resume --out %s --data %s "
                            "--epochs %d\n", st.epoch, out, out, data, epochs);
            status = EXIT_INTERRUPTED;
            goto done;
        }
    }
    printf("test accuracy %.2f%% after %d epoch%s; model %s, log %s\n", 100.0 * last_accuracy,
           st.epoch, st.epoch == 1 ? "" : "s", out, log_path);
    status = EXIT_SUCCESS;
done:
    free(log);
    capsnet_free(m);
    caps_dataset_free(&train);
    caps_dataset_free(&test);
    return status;
}

/* ------------------------------------------------------------------------ test */

static const char test_usage[] =
    "Usage: capsnet test --model MODEL [--data DIR] [options]\n"
    "\n"
    "Evaluates MODEL on the test set in DIR (t10k-images-idx3-ubyte[.gz] etc.): accuracy,\n"
    "per-class accuracy, loss (the decoder masked by the predicted class, as at test time)\n"
    "and the confusion matrix.\n"
    "\n"
    "Options:\n";

static void print_eval_text(const caps_eval *ev, const char *model, const char *data) {
    int J = ev->num_classes;
    printf("model %s on %s: %d test images\n", model, data, ev->total);
    printf("accuracy %.2f%% (%d / %d), test loss %.4f (margin %.4f, reconstruction %.4f)\n\n",
           ev->total ? 100.0 * ev->correct / ev->total : 0.0, ev->correct, ev->total, ev->loss,
           ev->margin, ev->recon);
    printf("class  accuracy   correct / total\n");
    for (int j = 0; j < J; j++)
        printf("%5d  %7.2f%%   %7d / %d\n", j,
               ev->class_total[j] ? 100.0 * ev->class_correct[j] / ev->class_total[j] : 0.0,
               ev->class_correct[j], ev->class_total[j]);
    printf("\nconfusion matrix (rows: true class, columns: predicted class)\n      ");
    for (int j = 0; j < J; j++) printf("%6d", j);
    printf("\n");
    for (int i = 0; i < J; i++) {
        printf("%6d", i);
        for (int j = 0; j < J; j++) printf("%6d", ev->confusion[i * J + j]);
        printf("\n");
    }
}

static void print_eval_json(const caps_eval *ev, const char *model, const char *data) {
    int J = ev->num_classes;
    printf("{\"model\": ");
    json_string(stdout, model);
    printf(", \"data\": ");
    json_string(stdout, data);
    printf(", \"accuracy\": %.6f, \"correct\": %d, \"total\": %d, \"loss\": %.6f, "
           "\"margin_loss\": %.6f, \"recon_loss\": %.6f, \"per_class\": [",
           ev->total ? (double)ev->correct / ev->total : 0.0, ev->correct, ev->total, ev->loss,
           ev->margin, ev->recon);
    for (int j = 0; j < J; j++)
        printf("%s{\"class\": %d, \"accuracy\": %.6f, \"correct\": %d, \"total\": %d}",
               j ? ", " : "", j,
               ev->class_total[j] ? (double)ev->class_correct[j] / ev->class_total[j] : 0.0,
               ev->class_correct[j], ev->class_total[j]);
    printf("], \"confusion\": [");
    for (int i = 0; i < J; i++) {
        printf("%s[", i ? ", " : "");
        for (int j = 0; j < J; j++) printf("%s%d", j ? ", " : "", ev->confusion[i * J + j]);
        printf("]");
    }
    printf("]}\n");
}

static int cmd_test(int argc, char **argv) {
    const char *model = NULL, *data = "data/mnist";
    int json = 0, limit = 0, batch = 100, threads = 0;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"data", OPT_STRING, &data, 0, 0, "DIR", "data folder (default data/mnist)", 0},
        {"json", OPT_FLAG, &json, 0, 0, NULL, "print one JSON object", 0},
        {"limit", OPT_INT, &limit, 0, INT_MAX, "N", "the first N test images only", 0},
        {"batch", OPT_INT, &batch, 1, 4096, "B", "images per forward pass (100)", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("test", test_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!model) return fail_usage("test", "--model is required");
    caps_set_threads(threads);
    caps_error err;
    capsnet *m = NULL;
    caps_train_state st;
    if (caps_model_load(&m, &st, NULL, model, batch, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    caps_dataset test = {0};
    int status = EXIT_FAILURE;
    if (caps_dataset_load(&test, data, 0, capsnet_config(m)->num_classes, &err)) {
        print_error(&err);
        goto done;
    }
    progress_ctx pc = {"testing", !isatty(STDERR_FILENO), 1, 0, 0.0, 0};
    caps_eval ev;
    if (caps_evaluate(m, &test, limit, st.recon_weight > 0 ? st.recon_weight : 0.0f, &ev,
                      on_progress, &pc, &err)) {
        print_error(&err);
        goto done;
    }
    clear_live_line(&pc);
    if (json)
        print_eval_json(&ev, model, data);
    else
        print_eval_text(&ev, model, data);
    caps_eval_free(&ev);
    status = EXIT_SUCCESS;
done:
    caps_dataset_free(&test);
    capsnet_free(m);
    return status;
}

/* ------------------------------------------------------------------------ predict */

static const char predict_usage[] =
    "Usage: capsnet predict --model MODEL [--json] FILE...\n"
    "\n"
    "Classifies each FILE, a grayscale PNG or PGM of the model's image size (28x28 for\n"
    "MNIST), white digit on black as in MNIST, and prints the predicted class and the\n"
    "length of every class capsule. --json prints one JSON object per file per line.\n"
    "\n"
    "Options:\n";

#define MAX_FILES 100000

static int cmd_predict(int argc, char **argv) {
    const char *model = NULL;
    int json = 0, threads = 0;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"json", OPT_FLAG, &json, 0, 0, NULL, "one JSON object per file per line", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
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
    caps_set_threads(threads);
    caps_error err;
    capsnet *m = NULL;
    if (caps_model_load(&m, NULL, NULL, model, 1, &err)) {
        print_error(&err);
        free(files);
        return EXIT_FAILURE;
    }
    const caps_config *cfg = capsnet_config(m);
    int S = cfg->image_size, J = cfg->num_classes, failures = 0;
    if (cfg->in_channels != 1) {
        capsnet_free(m);
        free(files);
        return fail_runtime("%s: predict reads grayscale images; this model takes %d channels",
                            model, cfg->in_channels);
    }
    float *x = malloc((size_t)S * S * sizeof(float));
    if (!x) {
        capsnet_free(m);
        free(files);
        return fail_runtime("out of memory");
    }
    for (int f = 0; f < npos; f++) {
        if (caps_image_load(files[f], x, S, S, &err)) {
            print_error(&err);
            failures++;
            continue;
        }
        capsnet_forward(m, x, NULL, 1, CAPS_MASK_PREDICTED, 0.0f);
        int cls = capsnet_predictions(m)[0];
        const float *len = capsnet_lengths(m);
        if (json) {
            printf("{\"file\": ");
            json_string(stdout, files[f]);
            printf(", \"class\": %d, \"lengths\": [", cls);
            for (int j = 0; j < J; j++) printf("%s%.6f", j ? ", " : "", (double)len[j]);
            printf("]}\n");
        } else {
            printf("%s: class %d (length %.3f); lengths", files[f], cls, (double)len[cls]);
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
    "Usage: capsnet info --model MODEL\n"
    "\n"
    "Prints the configuration, the training state and the log of a model file.\n"
    "\n"
    "Options:\n";

static int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
    };
    int npos, done;
    char *pos[1];
    int rc = parse_command("info", info_usage, opts, 1, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!model) return fail_usage("info", "--model is required");
    caps_error err;
    capsnet *m = NULL;
    caps_train_state st;
    char *log = NULL;
    if (caps_model_load(&m, &st, &log, model, 1, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    const caps_config *cfg = capsnet_config(m);
    printf("%s: capsnet model file version %d, checksum ok\n", model, CAPS_MODEL_VERSION);
    printf("parameters %zu, Adam steps %lld\n", caps_num_params(cfg),
           (long long)capsnet_adam_t(m));
    printf("config:");
    for (int k = 0; k < CAPS_CONFIG_FIELDS; k++)
        printf(" %s=%d", caps_config_field_name(k), caps_config_get(cfg, k));
    printf("\ntraining: epochs done %d, batch %lld of the next, batch size %d, lr %g, decay %g, "
           "recon weight %g, shift %d, limit %d, seed %llu\n",
           st.epoch, (long long)st.batch_in_epoch, st.batch, (double)st.lr,
           (double)st.lr_decay, (double)st.recon_weight, st.max_shift, st.limit,
           (unsigned long long)st.seed);
    if (log && *log) printf("log:\n%s", log);
    free(log);
    capsnet_free(m);
    return 0;
}

/* ------------------------------------------------------------------------ main */

static const char main_usage[] =
    "Usage: capsnet COMMAND [options]\n"
    "\n"
    "Capsule networks with dynamic routing (Sabour, Frosst & Hinton, NIPS 2017).\n"
    "\n"
    "Commands:\n"
    "  train     train on MNIST or another IDX data set, checkpointing every epoch\n"
    "  test      accuracy, per-class accuracy and confusion matrix of a model\n"
    "  predict   classify PNG or PGM images\n"
    "  info      show what a model file holds\n"
    "\n"
    "'capsnet COMMAND --help' describes the options of a command.\n"
    "Get MNIST with: scripts/get-data.sh mnist data/mnist\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(main_usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(main_usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("capsnet %s\n", CAPSNET_VERSION);
        return 0;
    }
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "test") == 0) return cmd_test(argc - 1, argv + 1);
    if (strcmp(cmd, "predict") == 0) return cmd_predict(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    return fail_usage(NULL, "unknown command '%s'", cmd);
}
