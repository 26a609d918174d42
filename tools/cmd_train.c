/*
 * cmd_train.c: capsnet train: the training loop of the program around caps_train_epoch:
 * data, a new or resumed model, progress lines, evaluation, checkpoint and log per epoch,
 * Ctrl-C handling.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

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
    "Trains the capsule network of Sabour et al. (2017) on the data set in DIR: IDX files\n"
    "(train-images-idx3-ubyte[.gz] etc., as scripts/get-data.sh writes them), image folders\n"
    "(DIR/train/<class>/*.png|pgm|ppm, DIR/test/<class>/...; pass --classes N for N folders)\n"
    "or CIFAR-10's binary batches; `capsnet data --check DIR` tells which. After every\n"
    "epoch it evaluates the test set, saves MODEL atomically (weights, Adam state, log) and\n"
    "appends a line to the CSV log beside it (MODEL with .csv for .caps).\n"
    "Ctrl-C finishes the current step, saves, and tells how to resume.\n"
    "\n"
    "Options:\n";

int cmd_train(int argc, char **argv) {
    const char *data = "data/mnist", *out = "mnist.caps", *config_spec = NULL, *device = "cpu";
    int epochs = 3, routing = 3, no_recon = 0, test_limit = 0, threads = 0, resume = 0;
    int overwrite = 0, classes = 10, quiet = 0, tf32 = 0;
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
        DEVICE_OPTIONS(device, tf32),
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("train", train_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (resume && overwrite) return fail_usage("train", "--resume and --overwrite exclude each other");
    caps_options opt;
    if ((rc = device_options(&opt, "train", device, tf32))) return rc;

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
            if (want.routing != fcfg.routing)
                return fail_usage("train", "--config routing=%s differs from the model saved in "
                                  "%s (%s)", caps_routing_name(want.routing), out,
                                  caps_routing_name(fcfg.routing));
            for (int k = 0; k < CAPS_CONFIG_FIELDS; k++)
                if (caps_config_get(&want, k) != caps_config_get(&fcfg, k))
                    return fail_usage("train", "--config %s=%d differs from the model saved in %s "
                                      "(%d)", caps_config_field_name(k), caps_config_get(&want, k),
                                      out, caps_config_get(&fcfg, k));
        }
        if (caps_model_load(&m, &st, &log, out, st.batch, &opt, &err)) {
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
    /* Image folders name their classes: fewer than the network's loads (the extra capsules
     * just never win), but is rarely what was meant. */
    if (train.num_names > 0 && train.num_names < classes)
        fprintf(stderr, "capsnet: warning: %s has %d classes, the network %d (--classes %d)\n",
                data, train.num_names, classes, train.num_names);
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
        if (capsnet_create(&m, &cfg, batch, &opt, &err)) {
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
    }
    /* Fail now, not after an hour's epoch, if the model cannot be written: the folder must
     * be writable with room for the file (and its log lines to come); a new run saves its
     * starting point at once, which also proves the write works. */
    uint64_t need = caps_model_file_size(m, strlen(log) + 256 * (size_t)(epochs + 1));
    if (check_room(out, need, &err) || (!resume && caps_model_save(m, &st, log, out, &err))) {
        print_error(&err);
        goto done;
    }
    const caps_config *cfg = capsnet_config(m);
    char where[64];
    if (strcmp(capsnet_backend(m), "cpu") == 0)
        snprintf(where, sizeof where, "%d threads", nthreads);
    else
        snprintf(where, sizeof where, "on %s (%s)", capsnet_backend(m), tf32 ? "tf32" : "fp32");
    int n_train = st.limit > 0 && st.limit < train.count ? st.limit : train.count;
    int n_test = test_limit > 0 && test_limit < test.count ? test_limit : test.count;
    fprintf(stderr,
            "capsnet: training on %s: %d images (%d test), %dx%d, %d classes\n"
            "capsnet: %zu parameters, routing %d, batch %d, lr %g (x%g per epoch), %s, "
            "%s, %s\n",
            data, n_train, n_test, cfg->image_size, cfg->image_size, cfg->num_classes,
            caps_num_params(cfg), cfg->routing_iters, st.batch, (double)st.lr,
            (double)st.lr_decay, st.recon_weight > 0 ? "with decoder" : "no decoder", where,
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

    install_stop_handlers();
    int is_tty = isatty(STDERR_FILENO);
    double last_accuracy = -1.0;
    while (st.epoch < epochs) {
        char what[64];
        snprintf(what, sizeof what, "epoch %d/%d", st.epoch + 1, epochs);
        progress_ctx pc = {what, quiet, is_tty, (int)st.batch_in_epoch, 0.0, 0};
        float lr_now = caps_train_lr(&st, st.epoch);
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
        if (caps_evaluate(m, &test, test_limit, st.recon_weight, NULL, &ev, on_progress, &tc,
                          &err)) {
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
