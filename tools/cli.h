/*
 * cli.h: what the commands of the capsnet program share: error and usage messages,
 * the option parser, JSON strings, progress lines and the stop-on-signal flag.
 * Exit status: 0 success, 1 runtime error, 2 usage error, 130 interrupted.
 */
#ifndef CAPS_CLI_H
#define CAPS_CLI_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "capsnet.h"
#include "cnn.h"

#define CAPSNET_VERSION "0.1.0"
#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130

/* ---- messages */
void print_error(const caps_error *err);
int fail_runtime(const char *fmt, ...);
int fail_usage(const char *cmd, const char *fmt, ...);
void json_string(FILE *f, const char *s);
void format_duration(char *buf, size_t n, double seconds);
/* CAPS_OK when the folder of path is writable and has bytes free; else CAPS_ERR_IO saying
 * which, with the numbers. */
int check_room(const char *path, uint64_t bytes, caps_error *err);

/* ---- options */
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

int parse_number(const char *s, opt_kind kind, double min, double max, void *dest);
/* Parses a command's argv (argv[0] is the command) into opts, the rest into pos (at most
 * max_pos). Prints usage and the option table for --help. Sets *done when the command
 * should return at once, with the returned status (0 after --help). */
int parse_command(const char *cmd, const char *usage, option *opts, int n, int argc,
                  char **argv, char **pos, int max_pos, int *npos, int *done);
const option *find_option(const option *opts, int n, const char *name);
/* --device cpu|cuda and --tf32, the same on every command that runs the network. */
#define DEVICE_OPTIONS(device, tf32)                                                     \
    {"device", OPT_STRING, &(device), 0, 0, "cpu|cuda",                                  \
     "run on the CPU (default) or an NVIDIA GPU (a build with CUDA=1)", 0},              \
    {"tf32", OPT_FLAG, &(tf32), 0, 0, NULL,                                              \
     "GPU: TF32 tensor cores for matrix products (faster, ~1e-3 relative)", 0}
/* The options of those two flags for caps_model_load / capsnet_create: 0, or EXIT_USAGE
 * with a message for a device other than cpu or cuda. */
int device_options(caps_options *opt, const char *cmd, const char *device, int tf32);

/* --config KEY=VALUE[,KEY=VALUE...]: configuration fields by name. 0, or EXIT_USAGE. */
int apply_config_overrides(caps_config *cfg, const char *spec);

/* ---- progress */
extern volatile sig_atomic_t stop_requested;
/* SIGINT / SIGTERM set stop_requested; a second one kills the program at once. */
void install_stop_handlers(void);
/* The same, and SIGUSR1 too, but later signals change nothing: one of several processes
 * under mpirun, which may get Ctrl-C's SIGINT and mpirun's SIGTERM both (and is killed by
 * mpirun if it takes too long to stop; SIGUSR1, which mpirun passes on, has no such limit). */
void install_patient_stop_handlers(void);

typedef struct {
    const char *what;  /* "epoch 2/3" or "testing" */
    int quiet;         /* print nothing, only watch for signals */
    int is_tty;
    int start_batch;   /* batches already done when this run of the loop began */
    double last_print; /* for throttling the live line */
    int printed;       /* a live line is on the terminal */
} progress_ctx;

int on_progress(const caps_progress *p, void *ctx);
void clear_live_line(progress_ctx *pc);

/* ---- training (cmd_train.c, and the baseline CNN's in cmd_train_cnn.c) */

/* The columns of the CSV log beside a model; the CNN writes its cross-entropy as train_loss
 * and train_margin_loss, 0 as train_recon_loss, so reports and plots read both. */
#define CSV_HEADER                                                                      \
    "epoch,train_loss,train_margin_loss,train_recon_loss,test_loss,test_accuracy,"      \
    "train_seconds,train_images_per_s,learning_rate,test_seconds\n"

int file_exists(const char *path);
/* The log beside a model: mnist.caps -> mnist.csv, other names get ".csv" added. */
void train_log_path(char *out, size_t n, const char *model);
/* The names of a run's J classes, from a names file or the data; *n = 0 when none. */
int train_class_names(const char *names_path, const caps_dataset *ds, int J, const char *data,
                      int *n, char ***names, const char **from);
int train_same_class_names(const char *const *have, char *const *names, int J, const char *from,
                           const char *model);

/* capsnet train --arch cnn|cnn-small: the options cmd_train parsed. */
typedef struct {
    const char *data, *out, *names_path, *step_log_path, *arch, *cnn_spec;
    int epochs, test_limit, threads, resume, overwrite, quiet, classes;
    int canvas; /* --canvas N, or 0 */
    caps_train_state st; /* the recipe from the flags (defaults where not given) */
    const option *opts;  /* for which flags were given */
    int nopts;
} cnn_train_args;
int train_cnn(const cnn_train_args *a);

/* The CNN configurations by name: cnn (caps_cnn_config_paper) and cnn-small (conv 80, 80,
 * 40: about the capsule network's cost); "cnn-custom" for any other. */
const char *cnn_arch_name(const caps_cnn_config *cfg);
void cnn_config_small(caps_cnn_config *cfg, int image_size, int in_channels, int num_classes);
/* --cnn-config KEY=VALUE,..: caps_cnn_config fields by name. 0, or EXIT_USAGE. */
int apply_cnn_config(caps_cnn_config *cfg, const char *spec);

/* ---- commands */
int cmd_train(int argc, char **argv);
int cmd_test(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_perturb(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_multimnist(int argc, char **argv);
/* 1 where this build draws figures (cairo); else 0, having said so for cmd. */
int figures_built(const char *cmd);

#endif /* CAPS_CLI_H */
