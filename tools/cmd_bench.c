/*
 * cmd_bench.c: capsnet bench: how fast this build trains and infers on this machine.
 *
 * Random images of the configured shape (speed does not depend on the pixels), a warm-up,
 * then as many training steps (forward, backward, Adam) and inference batches (forward
 * with the decoder masked by the prediction) as fit in --seconds each; the median step
 * gives images/s. FLOPs are counted from the shapes (caps_flops_*), and the same matrix
 * product library is timed on a large square product in the same run, so the report says
 * what fraction of the machine's matrix-product peak the whole training step reaches.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"

static const char bench_usage[] =
    "Usage: capsnet bench [--batch B] [--threads T] [--seconds S] [--json]\n"
    "\n"
    "Measures training steps and inference batches of the paper's MNIST network (or\n"
    "--config shapes) on random data: images/s (median step), achieved GFLOP/s, the fraction\n"
    "of the matrix-product peak measured in the same run, time per layer (forward and\n"
    "backward) and peak memory. --arch cnn or cnn-small: the baseline CNN's training and\n"
    "inference images/s and GFLOP/s instead (no per-layer table).\n"
    "\n"
    "Options:\n";

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* kilobytes on Linux */
}

#define MAX_STEPS 10000

/* Runs fn until min_seconds have passed (and at least min_steps), after warm-up steps;
 * times[] gets each step's seconds. Returns the count. */
typedef void (*step_fn)(capsnet *m, const float *x, const int *labels, int B, void *ctx);

static int time_steps(step_fn fn, capsnet *m, const float *x, const int *labels, int B,
                      void *ctx, double min_seconds, double *times) {
    for (int w = 0; w < 2; w++) fn(m, x, labels, B, ctx);
    capsnet_profile_reset(m);
    double start = caps_seconds();
    int n = 0;
    while (n < MAX_STEPS && (n < 5 || caps_seconds() - start < min_seconds)) {
        double t0 = caps_seconds();
        fn(m, x, labels, B, ctx);
        times[n++] = caps_seconds() - t0;
    }
    return n;
}

/* On a GPU the timed steps run with the device ahead of the clock; the time per layer comes
 * from n more steps with the clock waiting at each layer (capsnet_profile_sync). */
static int profile_steps(step_fn fn, capsnet *m, const float *x, const int *labels, int B,
                         void *ctx, int n) {
    capsnet_profile_reset(m);
    capsnet_profile_sync(m, 1);
    for (int k = 0; k < n; k++) fn(m, x, labels, B, ctx);
    capsnet_profile_sync(m, 0);
    return n;
}

static void train_step(capsnet *m, const float *x, const int *labels, int B, void *ctx) {
    const caps_adam *hp = ctx;
    capsnet_zero_grad(m);
    capsnet_forward(m, x, labels, B, CAPS_MASK_LABEL, 0.0005f);
    capsnet_backward(m);
    capsnet_adam_step(m, hp, hp->lr);
}

static void infer_step(capsnet *m, const float *x, const int *labels, int B, void *ctx) {
    (void)labels, (void)ctx;
    capsnet_forward(m, x, NULL, B, CAPS_MASK_PREDICTED, 0.0005f);
}

/* ------------------------------------------------------------------------ the CNN */

/* Medians of training steps and inference batches of the baseline CNN (--arch cnn,
 * cnn-small), as for the capsule network: images/s and GFLOP/s, no per-layer table. */
typedef struct {
    caps_cnn *m;
    const float *x;
    const int *labels;
    int B;
    caps_adam hp;
    uint64_t step;
} cnn_bench;

static void cnn_train_step(cnn_bench *b) {
    caps_cnn_zero_grad(b->m);
    caps_cnn_forward(b->m, b->x, b->labels, b->B, 1, b->step++);
    caps_cnn_backward(b->m);
    caps_cnn_adam_step(b->m, &b->hp, b->hp.lr);
}

static void cnn_infer_step(cnn_bench *b) { caps_cnn_forward(b->m, b->x, NULL, b->B, 0, 0); }

static double cnn_time(void (*fn)(cnn_bench *), cnn_bench *b, double min_seconds,
                       double *times, int *n) {
    for (int w = 0; w < 2; w++) fn(b);
    double start = caps_seconds();
    *n = 0;
    while (*n < MAX_STEPS && (*n < 5 || caps_seconds() - start < min_seconds)) {
        double t0 = caps_seconds();
        fn(b);
        times[(*n)++] = caps_seconds() - t0;
    }
    return median(times, *n);
}

static int bench_cnn(const char *arch, const char *spec, int batch, int infer_batch,
                     int nthreads, double seconds, int json) {
    caps_cnn_config cfg;
    if (strcmp(arch, "cnn-small") == 0)
        cnn_config_small(&cfg, 28, 1, 10);
    else
        caps_cnn_config_paper(&cfg, 28, 1, 10);
    int rc;
    if (spec && (rc = apply_cnn_config(&cfg, spec))) return rc;
    int max_batch = batch > infer_batch ? batch : infer_batch;
    caps_error err;
    cnn_bench b;
    memset(&b, 0, sizeof b);
    b.B = batch;
    b.step = 1;
    if (caps_cnn_create(&b.m, &cfg, max_batch, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    caps_cnn_init_weights(b.m, 1);
    caps_adam_default(&b.hp);
    size_t P = (size_t)cfg.in_channels * cfg.image_size * cfg.image_size;
    float *x = malloc((size_t)max_batch * P * sizeof(float));
    int *labels = malloc((size_t)max_batch * sizeof(int));
    double *times = malloc(MAX_STEPS * sizeof(double));
    if (!x || !labels || !times) {
        free(x), free(labels), free(times);
        caps_cnn_free(b.m);
        return fail_runtime("out of memory");
    }
    caps_rng r;
    caps_rng_seed(&r, 1, 1);
    for (size_t k = 0; k < (size_t)max_batch * P; k++) x[k] = caps_rng_uniform(&r);
    for (int k = 0; k < max_batch; k++) labels[k] = (int)caps_rng_below(&r, 10);
    b.x = x;
    b.labels = labels;
    const char *name = cnn_arch_name(&cfg);
    double fwd = caps_cnn_flops_forward(&cfg), bwd = caps_cnn_flops_backward(&cfg);
    if (!json)
        fprintf(stderr, "capsnet bench: baseline CNN %s (%zu parameters, %.3g GFLOP forward an "
                "image), %s, %d threads, batch %d, %g s per measurement\n", name,
                b.m->num_params, fwd / 1e9, caps_gemm_backend(), nthreads, batch, seconds);
    int n_train, n_infer;
    double train_s = cnn_time(cnn_train_step, &b, seconds, times, &n_train);
    double rss = peak_rss_mb();
    b.B = infer_batch;
    double infer_s = cnn_time(cnn_infer_step, &b, seconds, times, &n_infer);
    double train_ips = batch / train_s, infer_ips = infer_batch / infer_s;
    double gflops = (fwd + bwd) * batch / train_s / 1e9, igflops = fwd * infer_batch / infer_s / 1e9;
    if (json) {
        printf("{\"arch\": \"%s\", \"parameters\": %zu, \"backend\": ", name,
               b.m->num_params);
        json_string(stdout, caps_gemm_backend());
        printf(", \"device\": \"cpu\", \"threads\": %d, \"batch\": %d, \"infer_batch\": %d, "
               "\"train_images_per_s\": %.2f, \"infer_images_per_s\": %.2f, "
               "\"train_step_ms\": %.3f, \"infer_batch_ms\": %.3f, \"gflops_per_s\": %.2f, "
               "\"infer_gflops_per_s\": %.2f, \"peak_rss_mb\": %.1f, \"train_steps\": %d, "
               "\"infer_batches\": %d}\n", nthreads, batch, infer_batch, train_ips, infer_ips,
               1e3 * train_s, 1e3 * infer_s, gflops, igflops, rss, n_train, n_infer);
    } else {
        printf("baseline CNN %s, %zu parameters\n", name, b.m->num_params);
        printf("training:  %8.1f images/s  (%.1f ms per step of %d, median of %d)\n", train_ips,
               1e3 * train_s, batch, n_train);
        printf("inference: %8.1f images/s  (%.1f ms per batch of %d, median of %d)\n", infer_ips,
               1e3 * infer_s, infer_batch, n_infer);
        printf("training:  %8.1f GFLOP/s\ninference: %8.1f GFLOP/s\n", gflops, igflops);
        printf("peak memory while training: %.0f MB\n", rss);
    }
    free(x), free(labels), free(times);
    caps_cnn_free(b.m);
    return EXIT_SUCCESS;
}

int cmd_bench(int argc, char **argv) {
    int batch = 100, threads = 0, json = 0, infer_batch = 0, tf32 = 0;
    float seconds = 10.0f;
    const char *config_spec = NULL, *device = "cpu", *arch = NULL, *cnn_spec = NULL;
    option opts[] = {
        {"arch", OPT_STRING, &arch, 0, 0, "A", "capsnet (default), cnn or cnn-small", 0},
        {"cnn-config", OPT_STRING, &cnn_spec, 0, 0, "K=V,..", "CNN shapes, as for train", 0},
        {"batch", OPT_INT, &batch, 1, 4096, "B", "images per training step (100)", 0},
        {"infer-batch", OPT_INT, &infer_batch, 1, 4096, "B",
         "images per inference batch (as --batch)", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
        {"seconds", OPT_FLOAT, &seconds, 0.1, 3600, "S", "time per measurement (10)", 0},
        {"config", OPT_STRING, &config_spec, 0, 0, "K=V,..", "other shapes, as for train", 0},
        {"json", OPT_FLAG, &json, 0, 0, NULL, "print one JSON object", 0},
        DEVICE_OPTIONS(device, tf32),
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("bench", bench_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!infer_batch) infer_batch = batch;
    if (arch && strcmp(arch, "capsnet") && strcmp(arch, "cnn") && strcmp(arch, "cnn-small"))
        return fail_usage("bench", "--arch %s: expected capsnet, cnn or cnn-small", arch);
    int cnn = arch && strncmp(arch, "cnn", 3) == 0;
    if (cnn_spec && !cnn) return fail_usage("bench", "--cnn-config is for --arch cnn or cnn-small");
    if (cnn) {
        if (config_spec) return fail_usage("bench", "--config is for the capsule network");
        if (strcmp(device, "cpu") != 0 || tf32)
            return fail_usage("bench", "the CNN runs on the CPU only");
        return bench_cnn(arch, cnn_spec, batch, infer_batch, caps_set_threads(threads), seconds,
                         json);
    }
    caps_options opt;
    if ((rc = device_options(&opt, "bench", device, tf32))) return rc;
    int gpu = strcmp(device, "cpu") != 0;
    int nthreads = caps_set_threads(threads);
    caps_config cfg;
    caps_config_mnist(&cfg);
    if (config_spec && (rc = apply_config_overrides(&cfg, config_spec))) return rc;

    caps_error err;
    capsnet *m = NULL;
    int max_batch = batch > infer_batch ? batch : infer_batch;
    if (capsnet_create(&m, &cfg, max_batch, &opt, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    capsnet_init_weights(m, 1);
    size_t P = (size_t)caps_image_pixels(&cfg);
    float *x = malloc((size_t)max_batch * P * sizeof(float));
    int *labels = malloc((size_t)max_batch * sizeof(int));
    double *times = malloc(MAX_STEPS * sizeof(double));
    if (!x || !labels || !times) {
        free(x), free(labels), free(times);
        capsnet_free(m);
        return fail_runtime("out of memory");
    }
    caps_rng r;
    caps_rng_seed(&r, 1, 1);
    for (size_t k = 0; k < (size_t)max_batch * P; k++) x[k] = caps_rng_uniform(&r);
    for (int b = 0; b < max_batch; b++) labels[b] = (int)caps_rng_below(&r, (uint32_t)cfg.num_classes);

    /* What runs the matrix products, and (on the CPU) the peak that library reaches on this
     * machine, now. On a GPU the peak is not measured here: 0. */
    char products[160];
    if (gpu)
        snprintf(products, sizeof products, "%s, cuBLAS %s", device, tf32 ? "tf32" : "fp32");
    else
        snprintf(products, sizeof products, "%s", caps_gemm_backend());
    if (!json)
        fprintf(stderr, "capsnet bench: %s, %d threads, batch %d, %.0f s per measurement\n",
                products, nthreads, batch, (double)seconds);
    double peak = gpu ? 0.0 : caps_gemm_gflops(2048, seconds / 4);

    caps_adam hp;
    caps_adam_default(&hp);
    int n_train = time_steps(train_step, m, x, labels, batch, &hp, seconds, times), p_train = n_train;
    double train_step_s = median(times, n_train);
    if (gpu) p_train = profile_steps(train_step, m, x, labels, batch, &hp, n_train < 50 ? n_train : 50);
    caps_layer_profile prof[CAPS_NUM_LAYERS];
    capsnet_profile(m, prof);
    double rss_train = peak_rss_mb();
    int n_infer = time_steps(infer_step, m, x, labels, infer_batch, NULL, seconds, times), p_infer = n_infer;
    double infer_step_s = median(times, n_infer);
    if (gpu) p_infer = profile_steps(infer_step, m, x, labels, infer_batch, NULL, n_infer < 50 ? n_infer : 50);
    caps_layer_profile iprof[CAPS_NUM_LAYERS];
    capsnet_profile(m, iprof);
    caps_error serr;
    if (capsnet_status(m, &serr)) {
        print_error(&serr);
        free(x), free(labels), free(times);
        capsnet_free(m);
        return EXIT_FAILURE;
    }

    double flops_train = (caps_flops_forward(&cfg, 1) + caps_flops_backward(&cfg, 1)) * batch;
    double flops_infer = caps_flops_forward(&cfg, 1) * infer_batch;
    double train_ips = batch / train_step_s, infer_ips = infer_batch / infer_step_s;
    double gflops = flops_train / train_step_s / 1e9, igflops = flops_infer / infer_step_s / 1e9;

    if (json) {
        printf("{\"backend\": ");
        json_string(stdout, products);
        printf(", \"device\": \"%s\", \"precision\": \"%s\", \"threads\": %d, \"batch\": %d, \"infer_batch\": %d, "
               "\"train_images_per_s\": %.2f, \"infer_images_per_s\": %.2f, "
               "\"train_step_ms\": %.3f, \"infer_batch_ms\": %.3f, \"gflops_per_s\": %.2f, "
               "\"infer_gflops_per_s\": %.2f, \"matmul_peak_gflops_per_s\": %.2f, "
               "\"peak_fraction\": %.4f, \"infer_peak_fraction\": %.4f, \"peak_rss_mb\": %.1f, "
               "\"train_steps\": %d, \"infer_batches\": %d, \"layers\": [",
               device, tf32 && gpu ? "tf32" : "fp32", nthreads, batch, infer_batch, train_ips,
               infer_ips, 1e3 * train_step_s, 1e3 * infer_step_s, gflops, igflops, peak,
               peak > 0 ? gflops / peak : 0.0, peak > 0 ? igflops / peak : 0.0, rss_train,
               n_train, n_infer);
        for (int k = 0; k < CAPS_NUM_LAYERS; k++)
            printf("%s{\"name\": \"%s\", \"train_forward_ms\": %.3f, \"train_backward_ms\": %.3f, "
                   "\"infer_forward_ms\": %.3f}",
                   k ? ", " : "", prof[k].name, 1e3 * prof[k].forward_s / p_train,
                   1e3 * prof[k].backward_s / p_train, 1e3 * iprof[k].forward_s / p_infer);
        printf("]}\n");
    } else {
        printf("training:  %8.1f images/s  (%.1f ms per step of %d, median of %d)\n", train_ips,
               1e3 * train_step_s, batch, n_train);
        printf("inference: %8.1f images/s  (%.1f ms per batch of %d, median of %d)\n", infer_ips,
               1e3 * infer_step_s, infer_batch, n_infer);
        if (peak > 0) {
            printf("training:  %8.1f GFLOP/s = %.1f%% of the %.1f GFLOP/s matrix-product peak\n",
                   gflops, 100.0 * gflops / peak, peak);
            printf("inference: %8.1f GFLOP/s = %.1f%% of that peak\n", igflops,
                   100.0 * igflops / peak);
        } else {
            printf("training:  %8.1f GFLOP/s\ninference: %8.1f GFLOP/s\n", gflops, igflops);
        }
        printf("peak memory while training: %.0f MB\n\n", rss_train);
        printf("%-16s %12s %12s %12s %10s\n", "layer (ms/step)", "train fwd", "train bwd",
               "infer fwd", "GFLOP/s");
        double sum_f = 0, sum_b = 0, sum_i = 0;
        for (int k = 0; k < CAPS_NUM_LAYERS; k++) {
            double f = 1e3 * prof[k].forward_s / p_train, b = 1e3 * prof[k].backward_s / p_train;
            double i = 1e3 * iprof[k].forward_s / p_infer;
            double fl = (prof[k].forward_flops + prof[k].backward_flops) * batch;
            sum_f += f, sum_b += b, sum_i += i;
            if (fl > 0 && f + b > 0)
                printf("%-16s %12.2f %12.2f %12.2f %10.1f\n", prof[k].name, f, b, i,
                       fl / ((f + b) * 1e-3) / 1e9);
            else
                printf("%-16s %12.2f %12.2f %12.2f %10s\n", prof[k].name, f, b, i, "-");
        }
        printf("%-16s %12.2f %12.2f %12.2f\n", "total", sum_f, sum_b, sum_i);
    }
    free(x), free(labels), free(times);
    capsnet_free(m);
    return 0;
}
