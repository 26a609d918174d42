/*
 * cmd_train_cnn.c: capsnet train --arch cnn|cnn-small: the baseline CNN of the paper
 * (section 5; src/cnn.h) trained the way cmd_train.c trains the capsule network: the same
 * data, image order, shifts, Adam and learning-rate decay (caps_cnn_train_epoch), a model
 * file saved atomically after every epoch and on Ctrl-C (its own format, cnn_file.c), the
 * same CSV log beside it, --resume bit-identical to a run never stopped. One process, on
 * the CPU.
 *
 * The configurations: cnn is the paper's (conv 256, 256, 128, 5x5, fc 328, 192: 35.4M
 * parameters and 3.93 GFLOP a forward pass on MNIST, ten times the capsule network's 0.41);
 * cnn-small has convolutions of 80, 80 and 40 channels (10.6M parameters, 0.40 GFLOP), a
 * CNN of about the capsule network's cost; --cnn-config changes fields of either.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

/* ------------------------------------------------------------------------ configurations */

#define CNN_SMALL_CONV1 80
#define CNN_SMALL_CONV2 80
#define CNN_SMALL_CONV3 40

void cnn_config_small(caps_cnn_config *cfg, int image_size, int in_channels, int num_classes) {
    caps_cnn_config_paper(cfg, image_size, in_channels, num_classes);
    cfg->conv1_channels = CNN_SMALL_CONV1;
    cfg->conv2_channels = CNN_SMALL_CONV2;
    cfg->conv3_channels = CNN_SMALL_CONV3;
}

static int same_config(const caps_cnn_config *a, const caps_cnn_config *b) {
    return a->conv1_channels == b->conv1_channels && a->conv2_channels == b->conv2_channels &&
           a->conv3_channels == b->conv3_channels && a->kernel == b->kernel &&
           a->fc1 == b->fc1 && a->fc2 == b->fc2 && a->dropout == b->dropout;
}

const char *cnn_arch_name(const caps_cnn_config *cfg) {
    caps_cnn_config ref;
    caps_cnn_config_paper(&ref, cfg->image_size, cfg->in_channels, cfg->num_classes);
    if (same_config(cfg, &ref)) return "cnn";
    cnn_config_small(&ref, cfg->image_size, cfg->in_channels, cfg->num_classes);
    if (same_config(cfg, &ref)) return "cnn-small";
    return "cnn-custom";
}

int apply_cnn_config(caps_cnn_config *cfg, const char *spec) {
    struct {
        const char *name;
        int *value;
    } fields[] = {{"conv1_channels", &cfg->conv1_channels},
                  {"conv2_channels", &cfg->conv2_channels},
                  {"conv3_channels", &cfg->conv3_channels},
                  {"kernel", &cfg->kernel},
                  {"fc1", &cfg->fc1},
                  {"fc2", &cfg->fc2}};
    int nfields = (int)(sizeof fields / sizeof fields[0]);
    char buf[1024];
    if (strlen(spec) >= sizeof buf) return fail_usage("train", "--cnn-config value too long");
    strcpy(buf, spec);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) return fail_usage("train", "bad --cnn-config item '%s' (expected KEY=VALUE)", item);
        *eq = '\0';
        if (strcmp(item, "dropout") == 0) {
            if (parse_number(eq + 1, OPT_FLOAT, 0, 0.99, &cfg->dropout) != 0)
                return fail_usage("train", "bad --cnn-config value '%s' for dropout (expected "
                                  "0..0.99)", eq + 1);
            continue;
        }
        int k = 0;
        while (k < nfields && strcmp(fields[k].name, item) != 0) k++;
        if (k == nfields) {
            fprintf(stderr, "capsnet: error: unknown --cnn-config key '%s'; keys:", item);
            for (k = 0; k < nfields; k++) fprintf(stderr, " %s", fields[k].name);
            fputs(" dropout\n", stderr);
            return EXIT_USAGE;
        }
        if (parse_number(eq + 1, OPT_INT, 1, 4096, fields[k].value) != 0)
            return fail_usage("train", "bad --cnn-config value '%s' for %s (expected 1..4096)",
                              eq + 1, item);
    }
    return 0;
}

/* ------------------------------------------------------------------------ train */

typedef struct {
    progress_ctx pc;
    FILE *step_log; /* or NULL */
} cnn_progress_ctx;

static int on_cnn_progress(const caps_progress *p, void *ctx) {
    cnn_progress_ctx *tp = ctx;
    if (tp->step_log)
        fprintf(tp->step_log, "%d,%d,%.9g\n", p->epoch + 1, p->batch, p->step_loss);
    return on_progress(p, &tp->pc);
}

/* Gives m its class names; a resumed model that has names keeps them (the same given now). */
static int cnn_class_names(caps_cnn *m, const cnn_train_args *a, const caps_dataset *ds) {
    int J = m->cfg.num_classes, n, rc;
    char **names;
    const char *from;
    caps_error err;
    if ((rc = train_class_names(a->names_path, ds, J, a->data, &n, &names, &from))) return rc;
    if (n == 0) return EXIT_SUCCESS;
    if (m->class_names) {
        rc = train_same_class_names((const char *const *)m->class_names, names, J, from, a->out);
    } else if (caps_cnn_set_class_names(m, n, (const char *const *)names, &err)) {
        print_error(&err);
        rc = EXIT_FAILURE;
    }
    caps_class_names_free(n, names);
    return rc;
}

/* The data: the training split, its classes (--classes, else as many as it names, else 10),
 * the test split; both at the centre of a canvas x canvas one when canvas > 0. */
static int load_data(caps_dataset *train, caps_dataset *test, const char *data, int *classes,
                     int canvas) {
    caps_error err;
    if (caps_dataset_load(train, data, 1, *classes ? *classes : CAPS_DATA_MAX_CLASSES, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    if (!*classes) {
        *classes = train->num_names > 0 ? train->num_names : 10;
        for (int i = 0; i < train->count; i++)
            if (train->labels[i] >= *classes) {
                fail_runtime("%s: label %d in the training set, but %d classes", data,
                             train->labels[i], *classes);
                fprintf(stderr, "hint: --classes %d makes room for it\n", train->labels[i] + 1);
                return EXIT_FAILURE;
            }
        if (*classes < 2) return fail_runtime("%s: one class only (expected at least 2)", data);
    }
    if (caps_dataset_load(test, data, 0, *classes, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    if (canvas && (caps_dataset_pad(train, canvas, &err) || caps_dataset_pad(test, canvas, &err))) {
        print_error(&err);
        fprintf(stderr, "hint: --canvas %d or more\n",
                train->rows > train->cols ? train->rows : train->cols);
        return EXIT_USAGE;
    }
    if (train->rows != train->cols)
        return fail_runtime("%s: images are %dx%d; the network takes square images", data,
                            train->cols, train->rows);
    return EXIT_SUCCESS;
}

/* A resumed run: its file's recipe must agree with the flags given now. */
static int check_resume(const cnn_train_args *a, const caps_train_state *st,
                        const caps_cnn_config *fcfg) {
    const struct {
        const char *flag;
        double now, saved;
    } same[] = {{"batch", a->st.batch, st->batch},
                {"lr", a->st.lr, st->lr},
                {"lr-decay", a->st.lr_decay, st->lr_decay},
                {"shift", a->st.max_shift, st->max_shift},
                {"limit", a->st.limit, st->limit},
                {"seed", (double)a->st.seed, (double)st->seed},
                {"classes", a->classes, fcfg->num_classes}};
    for (size_t k = 0; k < sizeof same / sizeof same[0]; k++)
        if (find_option(a->opts, a->nopts, same[k].flag)->given && same[k].now != same[k].saved)
            return fail_usage("train", "--%s %g differs from the run saved in %s (%g)",
                              same[k].flag, same[k].now, a->out, same[k].saved);
    if (a->canvas && a->canvas != fcfg->image_size)
        return fail_usage("train", "--canvas %d differs from the model saved in %s (%dx%d "
                          "images)", a->canvas, a->out, fcfg->image_size, fcfg->image_size);
    /* --arch and --cnn-config, when given, must name the file's configuration. */
    if (a->arch || a->cnn_spec) {
        caps_cnn_config want = *fcfg;
        if (a->arch && strcmp(a->arch, "cnn-small") == 0)
            cnn_config_small(&want, fcfg->image_size, fcfg->in_channels, fcfg->num_classes);
        else if (a->arch)
            caps_cnn_config_paper(&want, fcfg->image_size, fcfg->in_channels,
                                  fcfg->num_classes);
        int rc = a->cnn_spec ? apply_cnn_config(&want, a->cnn_spec) : 0;
        if (rc) return rc;
        if (!same_config(&want, fcfg))
            return fail_usage("train", "--arch %s%s%s differs from the model saved in %s (%s)",
                              a->arch ? a->arch : cnn_arch_name(fcfg),
                              a->cnn_spec ? " --cnn-config " : "", a->cnn_spec ? a->cnn_spec : "",
                              a->out, cnn_arch_name(fcfg));
    }
    return 0;
}

static int append_row(char **log, const char *row) {
    char *grown = realloc(*log, strlen(*log) + strlen(row) + 1);
    if (!grown) return fail_runtime("out of memory");
    *log = grown;
    strcat(*log, row);
    return 0;
}

int train_cnn(const cnn_train_args *a) {
    const char *out = a->out, *data = a->data;
    caps_train_state st = a->st;
    int classes = a->classes, nthreads = caps_set_threads(a->threads), rc;
    caps_error err;
    caps_dataset train = {0}, test = {0};
    caps_cnn *m = NULL;
    FILE *step_log = NULL;
    char *log = NULL, log_path[4200];
    int status = EXIT_FAILURE;
    train_log_path(log_path, sizeof log_path, out);

    if (a->resume) {
        caps_cnn_config fcfg;
        if (caps_cnn_peek(&fcfg, &st, out, &err)) {
            print_error(&err);
            if (!file_exists(out))
                fprintf(stderr, "hint: --resume continues an earlier run; without it, training "
                                "starts anew\n");
            return EXIT_FAILURE;
        }
        if ((rc = check_resume(a, &st, &fcfg))) return rc;
        if (caps_cnn_load(&m, &st, &log, out, st.batch, &err)) {
            print_error(&err);
            return EXIT_FAILURE;
        }
        classes = fcfg.num_classes;
    } else if (file_exists(out) && !a->overwrite) {
        fprintf(stderr, "capsnet: error: %s: file exists\n", out);
        fprintf(stderr, "hint: --resume continues that run; --overwrite starts a new one over it\n");
        return EXIT_FAILURE;
    }
    if ((status = load_data(&train, &test, data, &classes, a->canvas)) != EXIT_SUCCESS) goto done;
    status = EXIT_FAILURE;
    if (!m) {
        caps_cnn_config cfg;
        if (a->arch && strcmp(a->arch, "cnn-small") == 0)
            cnn_config_small(&cfg, train.rows, train.channels, classes);
        else
            caps_cnn_config_paper(&cfg, train.rows, train.channels, classes);
        if (a->cnn_spec && (rc = apply_cnn_config(&cfg, a->cnn_spec))) {
            status = rc;
            goto done;
        }
        if (caps_cnn_create(&m, &cfg, st.batch, &err)) {
            print_error(&err);
            goto done;
        }
        caps_cnn_init_weights(m, st.seed);
        if (!(log = malloc(sizeof CSV_HEADER))) {
            fail_runtime("out of memory");
            goto done;
        }
        memcpy(log, CSV_HEADER, sizeof CSV_HEADER);
    }
    if (cnn_class_names(m, a, &train)) goto done;
    /* As for the capsule network: fail now, not after an epoch, if the model cannot be
     * written; a new run saves its starting point at once. */
    uint64_t need = caps_cnn_file_size(m, strlen(log) + 256 * (size_t)(a->epochs + 1));
    if (check_room(out, need, &err) || (!a->resume && caps_cnn_save(m, &st, log, out, &err))) {
        print_error(&err);
        goto done;
    }
    if (a->step_log_path) {
        int fresh = !file_exists(a->step_log_path);
        if (!(step_log = fopen(a->step_log_path, "a"))) {
            fail_runtime("%s: cannot open for appending: %s", a->step_log_path, strerror(errno));
            goto done;
        }
        setvbuf(step_log, NULL, _IOLBF, 0);
        if (fresh) fputs("epoch,batch,loss\n", step_log);
    }
    const caps_cnn_config *c = &m->cfg;
    int n_train = st.limit > 0 && st.limit < train.count ? st.limit : train.count;
    int n_test = a->test_limit > 0 && a->test_limit < test.count ? a->test_limit : test.count;
    fprintf(stderr,
            "capsnet: training on %s: %d images (%d test), %dx%d, %d classes\n"
            "capsnet: baseline CNN %s (conv %d/%d/%d %dx%d, fc %d/%d, dropout %g): %zu "
            "parameters, %.3g GFLOP forward an image, batch %d, lr %g (x%g per epoch), "
            "%d threads, %s\n",
            data, n_train, n_test, c->image_size, c->image_size, c->num_classes,
            cnn_arch_name(c), c->conv1_channels, c->conv2_channels, c->conv3_channels,
            c->kernel, c->kernel, c->fc1, c->fc2, (double)c->dropout, m->num_params,
            caps_cnn_flops_forward(c) / 1e9, st.batch, (double)st.lr, (double)st.lr_decay,
            nthreads, a->resume ? "resumed" : "new run");
    if (a->resume)
        fprintf(stderr, "capsnet: resuming %s at epoch %d, batch %lld\n", out, st.epoch + 1,
                (long long)st.batch_in_epoch);
    if (st.epoch >= a->epochs) {
        fprintf(stderr, "capsnet: %s has %d epochs already (--epochs %d); nothing to do\n", out,
                st.epoch, a->epochs);
        status = EXIT_SUCCESS;
        goto done;
    }

    char canvas_flag[32] = ""; /* for the resume commands printed below */
    if (a->canvas) snprintf(canvas_flag, sizeof canvas_flag, " --canvas %d", a->canvas);
    install_stop_handlers();
    int is_tty = isatty(STDERR_FILENO);
    double last_accuracy = -1.0;
    while (st.epoch < a->epochs) {
        char what[64];
        snprintf(what, sizeof what, "epoch %d/%d", st.epoch + 1, a->epochs);
        cnn_progress_ctx tp = {{what, a->quiet, is_tty, (int)st.batch_in_epoch, 0.0, 0},
                               step_log};
        float lr_now = caps_train_lr(&st, st.epoch);
        caps_epoch_stats es;
        rc = caps_cnn_train_epoch(m, &st, &train, &es, on_cnn_progress, &tp, &err);
        clear_live_line(&tp.pc);
        if (rc) {
            print_error(&err);
            fprintf(stderr, "capsnet: %s keeps the last good checkpoint\n", out);
            goto done;
        }
        if (es.stopped) {
            if (caps_cnn_save(m, &st, log, out, &err)) {
                print_error(&err);
                goto done;
            }
            fprintf(stderr,
                    "capsnet: interrupted in epoch %d at batch %lld; saved %s\n"
                    "capsnet: resume with: capsnet train --resume --out %s --data %s%s "
                    "--epochs %d\n",
                    st.epoch + 1, (long long)st.batch_in_epoch, out, out, data, canvas_flag,
                    a->epochs);
            status = EXIT_INTERRUPTED;
            goto done;
        }
        progress_ctx tc = {"testing", a->quiet || !is_tty, is_tty, 0, 0.0, 0};
        caps_eval ev;
        if (caps_cnn_evaluate(m, &test, n_test, NULL, &ev, on_progress, &tc, &err)) {
            print_error(&err);
            goto done;
        }
        clear_live_line(&tc);
        double acc = ev.total > 0 ? (double)ev.correct / ev.total : 0.0;
        double test_loss = ev.loss, test_seconds = ev.seconds;
        caps_eval_free(&ev);
        last_accuracy = acc;
        double ips = es.seconds > 0 ? es.images / es.seconds : 0.0;
        char row[512];
        snprintf(row, sizeof row, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.2f,%.2f,%.8g,%.2f\n", st.epoch,
                 es.loss, es.margin, es.recon, test_loss, acc, es.seconds, ips, (double)lr_now,
                 test_seconds);
        if (append_row(&log, row)) goto done;
        if (caps_cnn_save(m, &st, log, out, &err) ||
            caps_write_text_atomic(log_path, log, &err)) {
            print_error(&err);
            goto done;
        }
        printf("epoch %d/%d: train loss %.4f, test accuracy %.2f%% (loss %.4f), %.1f s, "
               "%.1f img/s\n",
               st.epoch, a->epochs, es.loss, 100.0 * acc, test_loss, es.seconds, ips);
        fflush(stdout);
        if (stop_requested) {
            fprintf(stderr, "capsnet: interrupted after epoch %d; saved %s\n"
                            "capsnet: resume with: capsnet train --resume --out %s --data %s%s "
                            "--epochs %d\n", st.epoch, out, out, data, canvas_flag, a->epochs);
            status = EXIT_INTERRUPTED;
            goto done;
        }
    }
    printf("test accuracy %.2f%% after %d epoch%s (baseline CNN %s); model %s, log %s\n",
           100.0 * last_accuracy, st.epoch, st.epoch == 1 ? "" : "s", cnn_arch_name(&m->cfg),
           out, log_path);
    status = EXIT_SUCCESS;
done:
    if (step_log) fclose(step_log);
    free(log);
    caps_cnn_free(m);
    caps_dataset_free(&train);
    caps_dataset_free(&test);
    return status;
}
