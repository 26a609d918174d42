/*
 * cmd_train.c: capsnet train: the training loop of the program around caps_train_epoch:
 * data, a new or resumed model, progress lines, evaluation, checkpoint and log per epoch,
 * Ctrl-C handling.
 *
 * Under mpirun (a build with MPI=1, parallel.h) it is one of several processes training one
 * model: each trains its share of every batch (caps_train_epoch_comm) and evaluates its share
 * of the test set; process 0 alone prints and writes files. The processes check at the start
 * that they run the same command on the same model, and before every save that their
 * weights are still the same.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cnn.h"
#include "parallel.h"
#include "util.h"

/* The log sits beside the model: mnist.caps or mnist.cnn -> mnist.csv, other names get
 * ".csv" added. */
void train_log_path(char *out, size_t n, const char *model) {
    size_t len = strlen(model);
    if (len > 5 && strcmp(model + len - 5, ".caps") == 0)
        snprintf(out, n, "%.*s.csv", (int)(len - 5), model);
    else if (len > 4 && strcmp(model + len - 4, ".cnn") == 0) /* the baseline CNN's */
        snprintf(out, n, "%.*s.csv", (int)(len - 4), model);
    else
        snprintf(out, n, "%s.csv", model);
}

int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ------------------------------------------------------------------------ many processes */

/* 64-bit FNV-1a of n bytes, continued from h. */
#define FNV_START 0xcbf29ce484222325ULL
static uint64_t fnv(uint64_t h, const void *bytes, size_t n) {
    const unsigned char *p = bytes;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* The processes' models must be the same: weights, Adam's moments and step, and where the
 * run stands. 0 when they are; else process 0 has said which differs. */
static int agree_on_model(capsnet *m, const caps_train_state *st, const char *when) {
    if (par_size() < 2) return 0;
    size_t n = capsnet_num_params(m);
    float *buf = malloc(n * sizeof(float));
    if (!buf) return fail_runtime("out of memory");
    uint64_t h = FNV_START;
    caps_error err;
    for (int a = CAPS_PARAMS; a <= CAPS_ADAM_V; a++) {
        if (capsnet_read(m, (caps_arena)a, 0, n, buf, &err)) {
            print_error(&err);
            free(buf);
            return 1;
        }
        if (a != CAPS_GRADS) h = fnv(h, buf, n * sizeof(float));
    }
    free(buf);
    int64_t t = capsnet_adam_t(m), at[2] = {st->epoch, st->batch_in_epoch};
    h = fnv(fnv(h, &t, sizeof t), at, sizeof at);
    char what[96];
    snprintf(what, sizeof what, "weights or training state (%s)", when);
    return par_agree(what, h);
}

/* Evaluates this process's share of the first n images of test; the counts and loss summed
 * over the processes into correct, total and loss (the mean). */
static int evaluate_share(capsnet *m, const caps_dataset *test, int n, float recon_weight,
                          progress_ctx *pc, double *correct, double *total, double *loss,
                          double *seconds) {
    int first, count;
    caps_batch_share(n, par_rank(), par_size(), &first, &count);
    caps_dataset part = *test;
    size_t pixels = (size_t)test->channels * test->rows * test->cols;
    part.images += (size_t)first * pixels;
    part.labels += first;
    part.count = count;
    double sums[3] = {0.0, 0.0, 0.0};
    *seconds = 0.0;
    if (count > 0) {
        caps_eval ev;
        caps_error err;
        if (caps_evaluate(m, &part, 0, recon_weight, NULL, &ev, on_progress, pc, &err)) {
            print_error(&err);
            return 1;
        }
        sums[0] = ev.correct;
        sums[1] = ev.total;
        sums[2] = ev.loss * ev.total;
        *seconds = ev.seconds;
        caps_eval_free(&ev);
    }
    if (par_sum_doubles(sums, 3)) return 1;
    *correct = sums[0];
    *total = sums[1];
    *loss = sums[1] > 0 ? sums[2] / sums[1] : 0.0;
    return 0;
}

/* Progress of a step: the live line, and --step-log's line. */
typedef struct {
    progress_ctx pc;
    FILE *step_log; /* or NULL */
} train_progress_ctx;

static int on_train_progress(const caps_progress *p, void *ctx) {
    train_progress_ctx *tp = ctx;
    if (tp->step_log)
        fprintf(tp->step_log, "%d,%d,%.9g\n", p->epoch + 1, p->batch, p->step_loss);
    return on_progress(p, &tp->pc);
}

/* ------------------------------------------------------------------------ class names */

static int max_label(const caps_dataset *ds) {
    int top = 0;
    for (int i = 0; i < ds->count; i++)
        if (ds->labels[i] > top) top = ds->labels[i];
    return top;
}

/* The name of class k of a network of J classes whose data names n < J: the extra capsules
 * stand for no label; one extra is the paper's "none-of-the-above" (CIFAR-10, section 7). */
static void extra_class_name(char *out, size_t size, int k, int n, int J) {
    if (J == n + 1)
        snprintf(out, size, "none-of-the-above");
    else
        snprintf(out, size, "extra-%d", k - n + 1);
}

/* The names of a run's J classes: from names_path (--class-names), else from the data,
 * padded for classes beyond the data's; *n = 0 and *names NULL when nothing names them.
 * *from: what named them. 0, or EXIT_FAILURE with a message. */
int train_class_names(const char *names_path, const caps_dataset *ds, int J, const char *data,
                      int *n, char ***names, const char **from) {
    caps_error err;
    *n = 0;
    *names = NULL;
    *from = data;
    if (names_path) {
        if (caps_class_names_read(names_path, n, names, &err)) {
            print_error(&err);
            return EXIT_FAILURE;
        }
        if (*n != J) {
            caps_class_names_free(*n, *names);
            fail_runtime("%s: %d names for %d classes (expected one name a class, a line each)",
                         names_path, *n, J);
            *n = 0;
            *names = NULL;
            return EXIT_FAILURE;
        }
        *from = names_path;
    } else if (ds->num_names > 0) {
        char extra[32];
        char **v = calloc((size_t)J, sizeof *v);
        for (int k = 0; v && k < J; k++) {
            if (k >= ds->num_names) extra_class_name(extra, sizeof extra, k, ds->num_names, J);
            const char *src = k < ds->num_names ? ds->class_names[k] : extra;
            v[k] = malloc(strlen(src) + 1);
            if (!v[k]) break;
            strcpy(v[k], src);
        }
        if (!v || !v[J - 1]) {
            caps_class_names_free(J, v);
            return fail_runtime("out of memory");
        }
        *n = J;
        *names = v;
    }
    return EXIT_SUCCESS;
}

/* A resumed model's names (have[k]) must be those given now: a label has to mean the class
 * it meant before. 0, or EXIT_FAILURE saying which differs. */
int train_same_class_names(const char *const *have, char *const *names, int J, const char *from,
                           const char *model) {
    for (int k = 0; k < J; k++)
        if (strcmp(have[k], names[k]) != 0) {
            fail_runtime("%s names class %d '%s', but %s calls it '%s'", from, k, names[k], model,
                         have[k]);
            fprintf(stderr, "hint: a label must mean the class it meant when the model "
                            "was trained; use the same data or names file\n");
            return EXIT_FAILURE;
        }
    return EXIT_SUCCESS;
}

/* Gives m the names of its classes (train_class_names). A resumed model that has names
 * keeps them, and names given now must be the same. */
static int apply_class_names(capsnet *m, const char *names_path, const caps_dataset *ds,
                             const char *data, const char *model) {
    int J = capsnet_config(m)->num_classes, n, rc;
    char **names;
    const char *from;
    caps_error err;
    if ((rc = train_class_names(names_path, ds, J, data, &n, &names, &from))) return rc;
    if (n == 0) return EXIT_SUCCESS; /* nothing names the classes: the model's stay as they are */
    if (caps_class_name(m, 0)) {
        const char **have = malloc((size_t)J * sizeof *have);
        if (!have) rc = fail_runtime("out of memory");
        for (int k = 0; have && k < J; k++) have[k] = caps_class_name(m, k);
        if (have) rc = train_same_class_names(have, names, J, from, model);
        free(have);
    } else if (caps_set_class_names(m, n, (const char *const *)names, &err)) {
        print_error(&err);
        rc = EXIT_FAILURE;
    }
    caps_class_names_free(n, names);
    return rc;
}

/* ------------------------------------------------------------------------ train */


static const char train_usage[] =
    "Usage: capsnet train [--data DIR] [--out MODEL] [options]\n"
    "\n"
    "Trains the capsule network of Sabour et al. (2017) on the data set in DIR: IDX files\n"
    "(train-images-idx3-ubyte[.gz] etc., as scripts/get-data.sh writes them), image folders\n"
    "(DIR/train/<class>/*.png|pgm|ppm, DIR/test/<class>/...) or CIFAR-10's binary batches;\n"
    "`capsnet data --check DIR` tells which. The network takes the images' size and\n"
    "channels, and one class per class folder or name (10 when the data names none); the\n"
    "model keeps the class names (folders, batches.meta.txt, DIR/class-names.txt or\n"
    "--class-names), and test and predict print them. After every epoch it evaluates the\n"
    "test set, saves MODEL atomically (weights, Adam state, log) and appends a line to the\n"
    "CSV log beside it (MODEL with .csv for .caps).\n"
    "Ctrl-C finishes the current step, saves, and tells how to resume.\n"
    "Built with MPI=1 and started by mpirun -np N, N processes train one model, each on its\n"
    "share of every batch (README: Across processes).\n"
    "--canvas N first places every image at the centre of an N x N black canvas: with --shift\n"
    "the digits then move anywhere on it, the training of the paper's affNIST experiment\n"
    "(--canvas 40 --shift 6; capsnet data --make-affnist writes its test set).\n"
    "--arch cnn trains the paper's baseline CNN instead (section 5: conv 256, 256, 128, fc\n"
    "328, 192, dropout, softmax; 35.4M parameters), cnn-small one of about the capsule\n"
    "network's cost (conv 80, 80, 40; 10.6M); the same data, shifts, Adam, log and resume,\n"
    "on the CPU in one process; test, predict and info read its model file.\n"
    "\n"
    "Options:\n";

int cmd_train(int argc, char **argv) {
    const char *data = "data/mnist", *out = "mnist.caps", *config_spec = NULL, *device = "cpu";
    int epochs = 3, routing = 3, no_recon = 0, test_limit = 0, threads = 0, resume = 0;
    int overwrite = 0, classes = 0, quiet = 0, tf32 = 0, no_overlap = 0, canvas = 0;
    const char *names_path = NULL, *step_log_path = NULL, *arch = NULL, *cnn_spec = NULL;
    caps_train_state st;
    caps_train_state_default(&st);
    float lr = st.lr, lr_decay = st.lr_decay, recon_weight = st.recon_weight;
    int batch = st.batch, limit = 0, shift = st.max_shift;
    uint64_t seed = st.seed;
    option opts[] = {
        {"data", OPT_STRING, &data, 0, 0, "DIR", "data folder (default data/mnist)", 0},
        {"arch", OPT_STRING, &arch, 0, 0, "A",
         "capsnet (default), cnn (the paper's baseline CNN) or cnn-small (its cost)", 0},
        {"cnn-config", OPT_STRING, &cnn_spec, 0, 0, "K=V,..",
         "CNN shapes, e.g. conv1_channels=8,conv2_channels=8,conv3_channels=4,fc1=32,fc2=16", 0},
        {"out", OPT_STRING, &out, 0, 0, "MODEL", "model file to write (default mnist.caps)", 0},
        {"epochs", OPT_INT, &epochs, 1, 100000, "N", "epochs in all, counting resumed ones (3)", 0},
        {"batch", OPT_INT, &batch, 1, 4096, "B", "images per step (100)", 0},
        {"lr", OPT_FLOAT, &lr, 1e-9, 10, "X", "Adam learning rate (0.001)", 0},
        {"lr-decay", OPT_FLOAT, &lr_decay, 1e-6, 1, "X", "learning rate factor per epoch (0.9)", 0},
        {"routing", OPT_INT, &routing, 1, 100, "R", "routing iterations (3)", 0},
        {"no-recon", OPT_FLAG, &no_recon, 0, 0, NULL, "train without the decoder", 0},
        {"recon-weight", OPT_FLOAT, &recon_weight, 0, 1000, "X",
         "weight of the reconstruction loss (0.0005)", 0},
        {"shift", OPT_INT, &shift, 0, 8, "N", "random shift in pixels, 0 = none (2)", 0},
        {"canvas", OPT_INT, &canvas, 1, 1024, "N",
         "images at the centre of an N x N canvas (affNIST experiment: 40)", 0},
        {"limit", OPT_INT, &limit, 0, INT_MAX, "N", "train on the first N images only", 0},
        {"test-limit", OPT_INT, &test_limit, 0, INT_MAX, "N", "evaluate the first N test images", 0},
        {"classes", OPT_INT, &classes, 2, 4096, "N",
         "class capsules (the data's classes, else 10); extra ones: none-of-the-above", 0},
        {"class-names", OPT_STRING, &names_path, 0, 0, "FILE",
         "class names, one a line (default: the data's own)", 0},
        {"config", OPT_STRING, &config_spec, 0, 0, "K=V,..",
         "other shapes, e.g. conv1_channels=64,primary_types=8", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
        {"seed", OPT_U64, &seed, 0, 0, "S", "seed of weights, shuffles and shifts (1)", 0},
        {"resume", OPT_FLAG, &resume, 0, 0, NULL, "continue the run saved in MODEL", 0},
        {"overwrite", OPT_FLAG, &overwrite, 0, 0, NULL, "replace an existing MODEL", 0},
        {"quiet", OPT_FLAG, &quiet, 0, 0, NULL, "no progress lines", 0},
        {"step-log", OPT_STRING, &step_log_path, 0, 0, "FILE",
         "append each step's loss to FILE (epoch,batch,loss)", 0},
        {"no-overlap", OPT_FLAG, &no_overlap, 0, 0, NULL,
         "MPI: sum the gradients after backward, not during it", 0},
        DEVICE_OPTIONS(device, tf32),
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("train", train_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (resume && overwrite) return fail_usage("train", "--resume and --overwrite exclude each other");
    if (no_recon && find_option(opts, nopts, "recon-weight")->given)
        return fail_usage("train", "--no-recon and --recon-weight exclude each other");
    /* The baseline CNN (cmd_train_cnn.c): chosen by --arch, or on --resume by the file. */
    int cnn = arch && strncmp(arch, "cnn", 3) == 0;
    if (arch && strcmp(arch, "capsnet") && strcmp(arch, "cnn") && strcmp(arch, "cnn-small"))
        return fail_usage("train", "--arch %s: expected capsnet, cnn or cnn-small", arch);
    if (resume && file_exists(out)) {
        int file_cnn = caps_cnn_is_model_file(out);
        if (arch && file_cnn != cnn)
            return fail_usage("train", "--arch %s, but %s is a %s model; resume it without "
                              "--arch or with --arch %s", arch, out,
                              file_cnn ? "baseline CNN" : "capsule network",
                              file_cnn ? "cnn" : "capsnet");
        cnn = file_cnn;
    }
    if (cnn_spec && !cnn) return fail_usage("train", "--cnn-config is for --arch cnn or cnn-small");
    if (cnn) {
        static const char *const capsule_only[] = {"routing", "no-recon", "recon-weight",
                                                   "config", "no-overlap", "tf32"};
        for (size_t k = 0; k < sizeof capsule_only / sizeof capsule_only[0]; k++)
            if (find_option(opts, nopts, capsule_only[k])->given)
                return fail_usage("train", "--%s is for the capsule network, not the baseline "
                                  "CNN", capsule_only[k]);
        if (strcmp(device, "cpu") != 0)
            return fail_usage("train", "--device %s: the CNN runs on the CPU only", device);
        if (par_size() > 1) return fail_runtime("the baseline CNN trains in one process only");
        cnn_train_args a = {data, out, names_path, step_log_path, arch, cnn_spec, epochs,
                            test_limit, threads, resume, overwrite, quiet, classes, canvas, st,
                            opts, nopts};
        a.st.lr = lr;
        a.st.lr_decay = lr_decay;
        a.st.batch = batch;
        a.st.max_shift = shift;
        a.st.limit = limit;
        a.st.seed = seed;
        a.st.recon_weight = 0.0f;
        return train_cnn(&a);
    }
    caps_options opt;
    if ((rc = device_options(&opt, "train", device, tf32))) return rc;
    /* Many processes: the same command everywhere; process 0 alone prints and writes. */
    int nproc = par_size(), leader = par_rank() == 0;
    uint64_t args = FNV_START;
    for (int k = 0; k < argc; k++) args = fnv(args, argv[k], strlen(argv[k]) + 1);
    if (par_agree("arguments", args)) return EXIT_USAGE;
    if (!leader) quiet = 1;
    if (nproc > 1 && !find_option(opts, nopts, "threads")->given) {
        /* The cores of this machine shared among its processes. */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > par_local_size() ? (int)(cores / par_local_size()) : 1;
    }

    /* A misspelt --config key is a usage error, found before any data is read. */
    if (config_spec && !resume) {
        caps_config probe;
        caps_config_mnist(&probe);
        if ((rc = apply_config_overrides(&probe, config_spec))) return rc;
    }
    int nthreads = caps_set_threads(threads);
    caps_error err;
    caps_dataset train = {0}, test = {0};
    capsnet *m = NULL;
    FILE *step_log = NULL;
    char *log = NULL;
    int status = EXIT_FAILURE;
    char log_path[4200];
    train_log_path(log_path, sizeof log_path, out);

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
        if (canvas && canvas != fcfg.image_size)
            return fail_usage("train", "--canvas %d differs from the model saved in %s (%dx%d "
                              "images)", canvas, out, fcfg.image_size, fcfg.image_size);
        if (find_option(opts, nopts, "no-recon")->given && st.recon_weight != 0.0f)
            return fail_usage("train", "--no-recon differs from the run saved in %s", out);
        if (find_option(opts, nopts, "recon-weight")->given && recon_weight != st.recon_weight)
            return fail_usage("train", "--recon-weight %g differs from the run saved in %s (%g)",
                              (double)recon_weight, out, (double)st.recon_weight);
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
        if (caps_model_load(&m, &st, &log, out, (st.batch + nproc - 1) / nproc, &opt, &err)) {
            print_error(&err);
            return EXIT_FAILURE;
        }
        classes = fcfg.num_classes;
    } else if (file_exists(out) && !overwrite) {
        fprintf(stderr, "capsnet: error: %s: file exists\n", out);
        fprintf(stderr, "hint: --resume continues that run; --overwrite starts a new one over it\n");
        return EXIT_FAILURE;
    }

    /* Without --classes the data says how many classes there are: as many as it names
     * (class folders, batches.meta.txt, class-names.txt), else 10, MNIST's. */
    if (caps_dataset_load(&train, data, 1, classes ? classes : CAPS_DATA_MAX_CLASSES, &err)) {
        print_error(&err);
        goto done;
    }
    if (!classes) {
        classes = train.num_names > 0 ? train.num_names : 10;
        int top = max_label(&train);
        if (top >= classes) {
            fail_runtime("%s: label %d in the training set, but %d classes (expected labels "
                         "0 to %d)", data, top, classes, classes - 1);
            fprintf(stderr, "hint: --classes %d makes room for it\n", top + 1);
            goto done;
        }
        if (classes < 2) {
            fail_runtime("%s: one class only (expected at least 2)", data);
            goto done;
        }
    }
    if (caps_dataset_load(&test, data, 0, classes, &err)) {
        print_error(&err);
        goto done;
    }
    /* --canvas: both splits padded before anything looks at their size. */
    int data_side = train.rows;
    if (canvas &&
        (caps_dataset_pad(&train, canvas, &err) || caps_dataset_pad(&test, canvas, &err))) {
        print_error(&err);
        fprintf(stderr, "hint: --canvas %d or more\n",
                train.rows > train.cols ? train.rows : train.cols);
        status = EXIT_USAGE;
        goto done;
    }
    if (m && (train.rows != capsnet_config(m)->image_size ||
              train.cols != capsnet_config(m)->image_size)) {
        int want = capsnet_config(m)->image_size;
        fail_runtime("%s: images are %dx%d, but %s takes %dx%d", data, train.cols, train.rows,
                     out, want, want);
        if (!canvas && train.rows < want && train.cols < want)
            fprintf(stderr, "hint: the model was trained on a canvas: --canvas %d places the "
                            "images at the centre of a %dx%d one\n", want, want, want);
        goto done;
    }
    if (train.num_names > 0 && train.num_names < classes)
        fprintf(stderr, "capsnet: %s names %d classes; the network has %d, the %d more "
                        "capsules stand for none of them\n",
                data, train.num_names, classes, classes - train.num_names);
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
        st.recon_weight = no_recon ? 0.0f : recon_weight;
        /* A process holds its share of a batch only. */
        if (capsnet_create(&m, &cfg, (batch + nproc - 1) / nproc, &opt, &err)) {
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
    if ((rc = apply_class_names(m, names_path, &train, data, out))) goto done;
    if (agree_on_model(m, &st, "at the start")) goto done;
    /* Fail now, not after an hour's epoch, if the model cannot be written: the folder must
     * be writable with room for the file (and its log lines to come); a new run saves its
     * starting point at once, which also proves the write works. */
    uint64_t need = caps_model_file_size(m, strlen(log) + 256 * (size_t)(epochs + 1));
    if (leader && (check_room(out, need, &err) ||
                   (!resume && caps_model_save(m, &st, log, out, &err)))) {
        print_error(&err);
        goto done;
    }
    if (leader && step_log_path) {
        int fresh = !file_exists(step_log_path);
        if (!(step_log = fopen(step_log_path, "a"))) {
            fail_runtime("%s: cannot open for appending: %s", step_log_path, strerror(errno));
            goto done;
        }
        setvbuf(step_log, NULL, _IOLBF, 0); /* a line a step, to watch a run by */
        if (fresh) fputs("epoch,batch,loss\n", step_log);
    }
    const caps_config *cfg = capsnet_config(m);
    char canvas_flag[32] = ""; /* for the resume commands printed below */
    if (canvas) snprintf(canvas_flag, sizeof canvas_flag, " --canvas %d", canvas);
    char where[256];
    if (strcmp(capsnet_backend(m), "cpu") == 0)
        snprintf(where, sizeof where, "%d threads", nthreads);
    else
        snprintf(where, sizeof where, "on %s (%s)", capsnet_backend(m), tf32 ? "tf32" : "fp32");
    if (nproc > 1)
        snprintf(where + strlen(where), sizeof where - strlen(where), " each, %s",
                 par_describe());
    int n_train = st.limit > 0 && st.limit < train.count ? st.limit : train.count;
    int n_test = test_limit > 0 && test_limit < test.count ? test_limit : test.count;
    if (leader) fprintf(stderr,
            "capsnet: training on %s: %d images (%d test), %dx%d, %d classes\n"
            "capsnet: %zu parameters, routing %d, batch %d, lr %g (x%g per epoch), %s, "
            "%s, %s\n",
            data, n_train, n_test, cfg->image_size, cfg->image_size, cfg->num_classes,
            caps_num_params(cfg), cfg->routing_iters, st.batch, (double)st.lr,
            (double)st.lr_decay, st.recon_weight > 0 ? "with decoder" : "no decoder", where,
            resume ? "resumed" : "new run");
    if (canvas && leader)
        fprintf(stderr, "capsnet: %dx%d images at the centre of a %dx%d canvas, shifted by up "
                        "to %d pixels\n", data_side, data_side, canvas, canvas, st.max_shift);
    if (resume && leader)
        fprintf(stderr, "capsnet: resuming %s at epoch %d, batch %lld\n", out, st.epoch + 1,
                (long long)st.batch_in_epoch);
    if (st.epoch >= epochs) {
        if (leader) fprintf(stderr, "capsnet: %s has %d epochs already (--epochs %d); nothing to do\n", out,
                st.epoch, epochs);
        status = EXIT_SUCCESS;
        goto done;
    }

    if (nproc > 1)
        install_patient_stop_handlers();
    else
        install_stop_handlers();
    int is_tty = isatty(STDERR_FILENO);
    caps_comm *comm = par_comm();
    if (comm && no_overlap) comm->start_sum_floats = NULL;
    double last_accuracy = -1.0;
    while (st.epoch < epochs) {
        char what[64];
        snprintf(what, sizeof what, "epoch %d/%d", st.epoch + 1, epochs);
        train_progress_ctx tp = {{what, quiet, is_tty, (int)st.batch_in_epoch, 0.0, 0}, step_log};
        float lr_now = caps_train_lr(&st, st.epoch);
        caps_epoch_stats es;
        rc = caps_train_epoch_comm(m, &st, &train, comm, &es, on_train_progress, &tp, &err);
        clear_live_line(&tp.pc);
        if (rc) {
            print_error(&err);
            fprintf(stderr, "capsnet: %s keeps the last good checkpoint\n", out);
            goto done;
        }
        if (es.stopped) {
            if (agree_on_model(m, &st, "at the stop")) goto done;
            if (leader && caps_model_save(m, &st, log, out, &err)) {
                print_error(&err);
                goto done;
            }
            if (leader) fprintf(stderr,
                    "capsnet: interrupted in epoch %d at batch %lld; saved %s\n"
                    "capsnet: resume with: capsnet train --resume --out %s --data %s%s "
                    "--epochs %d\n",
                    st.epoch + 1, (long long)st.batch_in_epoch, out, out, data, canvas_flag,
                    epochs);
            status = EXIT_INTERRUPTED;
            goto done;
        }
        /* Evaluation is short: a live line on a terminal, nothing in a log file. */
        progress_ctx tc = {"testing", quiet || !is_tty, is_tty, 0, 0.0, 0};
        double correct, total, test_loss, test_seconds;
        if (evaluate_share(m, &test, n_test, st.recon_weight, &tc, &correct, &total, &test_loss,
                           &test_seconds))
            goto done;
        clear_live_line(&tc);
        double acc = total > 0 ? correct / total : 0.0;
        last_accuracy = acc;
        double ips = es.seconds > 0 ? es.images / es.seconds : 0.0;
        char row[512];
        snprintf(row, sizeof row, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.2f,%.2f,%.8g,%.2f\n", st.epoch,
                 es.loss, es.margin, es.recon, test_loss, acc, es.seconds, ips, (double)lr_now,
                 test_seconds);
        char *grown = realloc(log, strlen(log) + strlen(row) + 1);
        if (!grown) {
            fail_runtime("out of memory");
            goto done;
        }
        log = grown;
        strcat(log, row);
        if (agree_on_model(m, &st, "after the epoch")) goto done;
        if (leader && caps_model_save(m, &st, log, out, &err)) {
            print_error(&err);
            goto done;
        }
        if (leader && caps_write_text_atomic(log_path, log, &err)) {
            print_error(&err);
            goto done;
        }
        char comm_note[64] = "";
        if (nproc > 1)
            snprintf(comm_note, sizeof comm_note, " (%.1f s waiting for the sums)",
                     es.comm_seconds);
        if (leader) {
            printf("epoch %d/%d: train loss %.4f, test accuracy %.2f%% (loss %.4f), %.1f s, "
                   "%.1f img/s%s\n",
                   st.epoch, epochs, es.loss, 100.0 * acc, test_loss, es.seconds, ips, comm_note);
            fflush(stdout);
        }
        /* A signal that reached some processes only, by the end of the epoch, stops all. */
        double stop = stop_requested != 0;
        if (par_sum_doubles(&stop, 1)) goto done;
        if (stop > 0) {
            if (leader) fprintf(stderr, "capsnet: interrupted after epoch %d; saved %s\n"
                            "capsnet: resume with: capsnet train --resume --out %s --data %s%s "
                            "--epochs %d\n", st.epoch, out, out, data, canvas_flag, epochs);
            status = EXIT_INTERRUPTED;
            goto done;
        }
    }
    if (leader)
        printf("test accuracy %.2f%% after %d epoch%s; model %s, log %s\n",
               100.0 * last_accuracy, st.epoch, st.epoch == 1 ? "" : "s", out, log_path);
    status = EXIT_SUCCESS;
done:
    if (step_log) fclose(step_log);
    free(log);
    capsnet_free(m);
    caps_dataset_free(&train);
    caps_dataset_free(&test);
    return status;
}
