/*
 * cli.c: the helpers the commands share (see cli.h).
 */
#define _XOPEN_SOURCE 700 /* sigaltstack, SA_ONSTACK */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util.h"

/* ------------------------------------------------------------------------ messages */

void print_error(const caps_error *err) {
    fprintf(stderr, "capsnet: error: %s\n", err->msg);
    if (err->hint[0]) fprintf(stderr, "hint: %s\n", err->hint);
}

/* "capsnet: error: <message>" on stderr, one line. */
static void print_error_v(const char *fmt, va_list ap) {
    fprintf(stderr, "capsnet: error: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int fail_runtime(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_error_v(fmt, ap);
    va_end(ap);
    return EXIT_FAILURE;
}

int fail_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_error_v(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'capsnet %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
    return EXIT_USAGE;
}

/* Writes s as a JSON string (quotes included). */
void json_string(FILE *f, const char *s) {
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

/* "1:02:03" or "4:05". */
void format_duration(char *buf, size_t n, double seconds) {
    long s = seconds > 0 && seconds < 1e9 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
}

int check_room(const char *path, uint64_t bytes, caps_error *err) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        if (n >= sizeof dir) return caps_fail(err, CAPS_ERR_ARG, "%s: path too long", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0)
        return caps_fail(err, CAPS_ERR_IO, "%s: cannot use folder %s (%s)", path, dir,
                         strerror(errno));
    if (access(dir, W_OK) != 0)
        return caps_fail(err, CAPS_ERR_IO, "%s: folder %s is not writable (%s)", path, dir,
                         strerror(errno));
    uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (avail < bytes) {
        caps_fail(err, CAPS_ERR_IO,
                  "%s: not enough free space for the model file (expected %llu bytes, got %llu "
                  "free in %s)", path, (unsigned long long)bytes, (unsigned long long)avail, dir);
        caps_hint(err, "free some space or write the model elsewhere (--out)");
        return CAPS_ERR_IO;
    }
    return CAPS_OK;
}

/* ------------------------------------------------------------------------ options */

int parse_number(const char *s, opt_kind kind, double min, double max, void *dest) {
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
int parse_command(const char *cmd, const char *usage, option *opts, int n, int argc,
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

const option *find_option(const option *opts, int n, const char *name) {
    for (int k = 0; k < n; k++)
        if (strcmp(opts[k].name, name) == 0) return &opts[k];
    return NULL;
}

int device_options(caps_options *opt, const char *cmd, const char *device, int tf32) {
    if (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0)
        return fail_usage(cmd, "bad value '%s' for --device (expected cpu or cuda)", device);
    opt->backend = device;
    opt->kernels = CAPS_KERNELS_FAST;
    opt->tf32 = tf32;
    return 0;
}

/* --config KEY=VALUE[,KEY=VALUE...] overrides configuration fields by name. */
int apply_config_overrides(caps_config *cfg, const char *spec) {
    char buf[1024];
    if (strlen(spec) >= sizeof buf) return fail_usage(NULL, "--config value too long");
    strcpy(buf, spec);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) return fail_usage(NULL, "bad --config item '%s' (expected KEY=VALUE)", item);
        *eq = '\0';
        if (strcmp(item, "routing") == 0) { /* the one field given by name */
            cfg->routing = caps_routing_find(eq + 1);
            if (cfg->routing < 0)
                return fail_usage(NULL, "bad --config value '%s' for routing (expected %s)",
                                  eq + 1, caps_routing_name(CAPS_ROUTING_DYNAMIC));
            continue;
        }
        int field = -1, value;
        for (int k = 0; k < CAPS_CONFIG_FIELDS; k++)
            if (strcmp(caps_config_field_name(k), item) == 0) field = k;
        if (field < 0) {
            fprintf(stderr, "capsnet: error: unknown --config key '%s'; keys:", item);
            for (int k = 0; k < CAPS_CONFIG_FIELDS; k++)
                fprintf(stderr, " %s", caps_config_field_name(k));
            fputs(" routing\n", stderr);
            return EXIT_USAGE;
        }
        if (parse_number(eq + 1, OPT_INT, 1, 4096, &value) != 0)
            return fail_usage(NULL, "bad --config value '%s' for %s (expected 1..4096)", eq + 1,
                              item);
        caps_config_set(cfg, field, value);
    }
    return 0;
}

/* ------------------------------------------------------------------------ progress */

/* SIGINT / SIGTERM during training: the first finishes the step and saves; the second
 * kills the program at once (the last checkpoint on disk stays as it was). */
volatile sig_atomic_t stop_requested;

static volatile sig_atomic_t second_signal_kills = 1;

static void on_signal(int sig) {
    if (stop_requested && second_signal_kills) {
        /* Second signal: stop now. A model file being saved keeps its old content (saves
         * are atomic); only the temporary file of the save is removed. */
        caps_atomic_unlink_in_signal();
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_requested = 1;
}

void clear_live_line(progress_ctx *pc) {
    if (pc->printed) fprintf(stderr, "\r\033[K");
    pc->printed = 0;
}

/* A live line on a terminal (10 times a second at most); on a pipe or file, a plain line
 * every tenth of the work, so logs show progress without flooding. */
int on_progress(const caps_progress *p, void *ctx) {
    progress_ctx *pc = ctx;
    if (pc->quiet) return stop_requested != 0;
    double t = caps_seconds();
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

/* The handler runs on a stack of its own. Delivered on the main stack while oneDNN's
 * JIT-compiled sgemm ran, SIGINT corrupted the heap ("corrupted size vs. prev_size" in the
 * next free inside dnnl_sgemm: 6 of 8 stops of tests/cli/cnn.sh's tiny CNN, none with an
 * alternate stack): the JIT code evidently keeps data below its stack pointer, where a
 * signal frame on the same stack lands. */
static void handle_on_own_stack(int sig) {
    static char stack[1 << 16];
    static int have_stack;
    if (!have_stack) {
        stack_t ss;
        memset(&ss, 0, sizeof ss);
        ss.ss_sp = stack;
        ss.ss_size = sizeof stack;
        have_stack = sigaltstack(&ss, NULL) == 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | (have_stack ? SA_ONSTACK : 0);
    sigaction(sig, &sa, NULL);
}

void install_stop_handlers(void) {
    second_signal_kills = 1;
    handle_on_own_stack(SIGINT);
    handle_on_own_stack(SIGTERM);
}

void install_patient_stop_handlers(void) {
    install_stop_handlers();
    second_signal_kills = 0;
    handle_on_own_stack(SIGUSR1); /* mpirun passes SIGUSR1 on to every process, and kills none */
}
