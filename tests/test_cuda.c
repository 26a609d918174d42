/*
 * test_cuda.c: the CUDA backend against the CPU's, through the public API only. Skipped,
 * and counted as skipped, where there is no GPU (or the build has no CUDA).
 *
 * - Every layer, forward and backward: the same weights and batches on both (two passes,
 *   gradients summed, batches smaller than the models'), then the losses, lengths, capsules,
 *   predictions, reconstructions and the perturbation figure (relative 1e-4) and the gradient
 *   of every parameter tensor (relative 1e-3 of the tensor's largest), at a tiny
 *   configuration and the MNIST shapes, 1 and 3 routing iterations, decoder on and off; and
 *   with --tf32 at TF32's precision.
 * - 200 training steps from the same weights and batches: the losses agree within 1e-3
 *   (relative) at every step; the GPU builds its batches from its copy of the data.
 * - Two GPU runs of the same seed give the same loss at every step, bit for bit.
 * - A model trained on the GPU, saved, tests on the CPU to the same predictions; resumed
 *   on the CPU it continues the run.
 * - A batch too large for the GPU is refused at create with the largest that fits.
 * - CAPS_CUDA_DEVICE picks the GPU; one that is not there is refused.
 * - Data-parallel sums through host memory (an MPI that is not CUDA-aware) reach the GPU's
 *   gradients, bucket by bucket or all at once.
 */
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "test.h"
#include "test_files.h"
#include "test_model.h"

static const caps_options cpu_opt = {.backend = "cpu"};
static const caps_options gpu_opt = {.backend = "cuda"};

/* 10x10 image, Conv1 4 @ 3x3, PrimaryCaps 3 types x 4D, 4 classes x 5D, decoder 8 -> 12. */
static caps_config tiny_config(int routing_iters) {
    caps_config c = {10, 1, 4, 3, 1, 3, 4, 3, 2, 4, 5, routing_iters, 8, 12, CAPS_ROUTING_DYNAMIC};
    return c;
}

/* |a - b| <= rtol * scale for every element; scale = the largest |b| (or floor). */
static int count_far(const float *a, const float *b, size_t n, double rtol, double *worst) {
    double scale = 0.0;
    for (size_t k = 0; k < n; k++) scale = fmax(scale, fabs(b[k]));
    scale = fmax(scale, 1e-12);
    int bad = 0;
    *worst = 0.0;
    for (size_t k = 0; k < n; k++) {
        double e = fabs((double)a[k] - b[k]) / scale;
        if (!(e <= rtol)) bad++;
        if (e > *worst || e != e) *worst = e;
    }
    return bad;
}

static capsnet *make(const caps_config *c, int B, const caps_options *o) {
    capsnet *m = NULL;
    caps_error err;
    EXPECT(capsnet_create(&m, c, B, o, &err) == CAPS_OK, "create on %s: %s", o->backend, err.msg);
    return m;
}

/* The CPU model's parameters (and zero moments) written into the GPU model. */
static void copy_weights(capsnet *to, const capsnet *from) {
    float *p = test_arena(from, CAPS_PARAMS);
    EXPECT(capsnet_write(to, CAPS_PARAMS, 0, capsnet_num_params(from), p, NULL) == CAPS_OK,
           "write the weights");
    free(p);
}

/* W_ij times factor in m: at the default scale the capsules are short, the couplings stay
 * near 1/J, and the gradients through the routing's earlier rounds fall below any
 * tolerance; longer capsules make every path of the routing count. */
static void scale_caps_w(capsnet *m, float factor) {
    size_t n = capsnet_param_size(m, capsnet_param_find("caps_w"));
    float *w = malloc(n * sizeof(float));
    EXPECT(w && capsnet_read_tensor(m, CAPS_PARAMS, "caps_w", w, n, NULL) == CAPS_OK, "read W");
    for (size_t k = 0; w && k < n; k++) w[k] *= factor;
    EXPECT(w && capsnet_write_tensor(m, CAPS_PARAMS, "caps_w", w, n, NULL) == CAPS_OK, "write W");
    free(w);
}

/* Images b whose predictions differ, not counting near-ties (the two longest capsules of
 * the CPU's within 1e-5): another summation order may break those either way. */
static int predictions_differ(const capsnet *gpu, const capsnet *cpu, int B, int J) {
    const int *pg = capsnet_predictions(gpu), *pc = capsnet_predictions(cpu);
    const float *len = capsnet_lengths(cpu);
    int bad = 0;
    for (int b = 0; b < B; b++) {
        if (pg[b] == pc[b]) continue;
        bad += fabs((double)len[b * J + pg[b]] - len[b * J + pc[b]]) > 1e-5;
    }
    return bad;
}

typedef struct {
    const char *name;
    int B;              /* the batch; the models are made for B + 3 */
    float recon_weight; /* 0: no decoder */
    int mask;
    float w_scale;      /* scale_caps_w */
    int tf32;
    double fwd_tol, grad_tol; /* relative to each tensor's largest value */
    int pair;                 /* two digits a image (capsnet_forward_pair) */
} layer_case;

/* Two forward and backward passes of different batches on both, the gradients of the
 * second added to the first's (no zero_grad between); every output of the last pass, the
 * sum of the gradients of every parameter tensor, and the perturbation figure compared. */
static void check_layers(caps_config c, const layer_case *lc) {
    const char *name = lc->name;
    int B = lc->B;
    caps_options go = gpu_opt;
    go.tf32 = lc->tf32;
    capsnet *cpu = make(&c, B + 3, &cpu_opt), *gpu = make(&c, B + 3, &go);
    if (!cpu || !gpu) {
        capsnet_free(cpu), capsnet_free(gpu);
        return;
    }
    capsnet_init_weights(cpu, 3);
    scale_caps_w(cpu, lc->w_scale);
    copy_weights(gpu, cpu);
    caps_rng r;
    caps_rng_seed(&r, 5, 5);
    int P = caps_image_pixels(&c), J = c.num_classes, E = c.digit_dim;
    float *x = gc_vec(2 * (size_t)B * P);
    gc_fill(x, 2 * (size_t)B * P, 0, 1, &r);
    int *labels = malloc(2 * (size_t)B * sizeof(int)), *labels2 = malloc(2 * (size_t)B * sizeof(int));
    for (int b = 0; b < 2 * B; b++) {
        labels[b] = (int)caps_rng_below(&r, (uint32_t)J);
        labels2[b] = (labels[b] + 1 + (int)caps_rng_below(&r, (uint32_t)J - 1)) % J;
    }
    /* Two digits: each one's target, [pass][digit][B][P]. */
    float *targets = gc_vec(4 * (size_t)B * P);
    gc_fill(targets, 4 * (size_t)B * P, 0, 1, &r);
    float loss[2] = {0, 0};
    capsnet *m[2] = {cpu, gpu};
    for (int k = 0; k < 2; k++) {
        capsnet_zero_grad(m[k]);
        for (int pass = 0; pass < 2; pass++) {
            const float *xp = x + (size_t)pass * B * P, *tp = targets + (size_t)pass * 2 * B * P;
            if (lc->pair)
                loss[k] = capsnet_forward_pair(m[k], xp, labels + pass * B, labels2 + pass * B,
                                               tp, tp + (size_t)B * P, B, lc->recon_weight);
            else
                loss[k] = capsnet_forward(m[k], xp, labels + pass * B, B, lc->mask,
                                          lc->recon_weight);
            capsnet_backward(m[k]);
        }
    }
    caps_error err;
    EXPECT(capsnet_status(gpu, &err) == CAPS_OK, "%s: the GPU failed: %s", name, err.msg);
    EXPECT(test_close(loss[1], loss[0], lc->fwd_tol, 0.0), "%s: loss GPU %.9g, CPU %.9g", name,
           loss[1], loss[0]);
    double worst;
    int bad = count_far(capsnet_lengths(gpu), capsnet_lengths(cpu), (size_t)B * J, lc->fwd_tol,
                        &worst);
    EXPECT(bad == 0, "%s: %d lengths differ (worst %.3g)", name, bad, worst);
    bad = count_far(capsnet_digit_caps(gpu), capsnet_digit_caps(cpu), (size_t)B * J * E,
                    lc->fwd_tol, &worst);
    EXPECT(bad == 0, "%s: %d capsule values differ (worst %.3g)", name, bad, worst);
    bad = predictions_differ(gpu, cpu, B, J);
    EXPECT(bad == 0, "%s: %d predictions differ", name, bad);
    if (lc->recon_weight > 0) {
        bad = count_far(capsnet_reconstruction(gpu), capsnet_reconstruction(cpu), (size_t)B * P,
                        lc->fwd_tol, &worst);
        EXPECT(bad == 0, "%s: %d reconstruction pixels differ (worst %.3g)", name, bad, worst);
    }
    float *g0 = test_arena(cpu, CAPS_GRADS), *g1 = test_arena(gpu, CAPS_GRADS);
    for (int t = 0; t < CAPS_NUM_PARAM_TENSORS; t++) {
        size_t off = capsnet_param_offset(cpu, t), n = capsnet_param_size(cpu, t);
        bad = count_far(g1 + off, g0 + off, n, lc->grad_tol, &worst);
        EXPECT(bad == 0, "%s: gradient of %s: %d of %zu differ (worst %.3g of the largest)", name,
               capsnet_param_name(t), bad, n, worst);
    }
    free(g0), free(g1);
    /* The decoder on capsules the program gives (capsnet_perturb decodes shifted copies of
     * the image's capsule through capsnet_decode), more rows than one batch holds. */
    if (lc->recon_weight > 0) {
        const float deltas[3] = {-0.25f, 0.0f, 0.25f};
        size_t n = (size_t)E * 3 * P;
        float *f0 = gc_vec(n), *f1 = gc_vec(n);
        int c0 = capsnet_perturb(cpu, f0, x, -1, deltas, 3);
        int c1 = capsnet_perturb(gpu, f1, x, c0, deltas, 3);
        bad = count_far(f1, f0, n, lc->fwd_tol, &worst);
        EXPECT(c1 == c0 && bad == 0, "%s: perturbation figure: %d pixels differ (worst %.3g)",
               name, bad, worst);
        free(f0), free(f1);
    }
    free(x), free(labels), free(labels2), free(targets);
    capsnet_free(cpu), capsnet_free(gpu);
}

TEST(layers_tiny) {
    const layer_case cases[] = {
        {"tiny R=3", 5, 0.5f, CAPS_MASK_LABEL, 30.0f, 0, 1e-4, 1e-3, 0},
        {"tiny R=1", 5, 0.5f, CAPS_MASK_LABEL, 30.0f, 0, 1e-4, 1e-3, 0},
        {"tiny R=3 no decoder", 5, 0.0f, CAPS_MASK_LABEL, 30.0f, 0, 1e-4, 1e-3, 0},
        {"tiny R=3 predicted mask", 5, 0.5f, CAPS_MASK_PREDICTED, 30.0f, 0, 1e-4, 1e-3, 0},
        {"tiny R=3 two digits", 5, 0.5f, CAPS_MASK_LABEL, 30.0f, 0, 1e-4, 1e-3, 1},
        {"tiny R=3 two digits no decoder", 5, 0.0f, CAPS_MASK_LABEL, 30.0f, 0, 1e-4, 1e-3, 1},
    };
    for (int k = 0; k < 6; k++) check_layers(tiny_config(k == 1 ? 1 : 3), &cases[k]);
}

TEST(layers_mnist_shapes) {
    caps_config c;
    caps_config_mnist(&c);
    const layer_case r3 = {"MNIST R=3", 4, 0.0005f, CAPS_MASK_LABEL, 10.0f, 0, 1e-4, 1e-3, 0};
    const layer_case r1 = {"MNIST R=1", 4, 0.0005f, CAPS_MASK_LABEL, 10.0f, 0, 1e-4, 1e-3, 0};
    const layer_case nd = {"MNIST no decoder", 4, 0.0f, CAPS_MASK_LABEL, 10.0f, 0, 1e-4, 1e-3, 0};
    check_layers(c, &r3);
    c.routing_iters = 1;
    check_layers(c, &r1);
    c.routing_iters = 3;
    check_layers(c, &nd);
}

/* --tf32: the same network through TF32 products, at TF32's precision (10-bit mantissas:
 * about 1e-3 per product, more after the long sums of the convolutions). */
TEST(layers_mnist_tf32) {
    caps_config c;
    caps_config_mnist(&c);
    const layer_case tf = {"MNIST tf32", 4, 0.0005f, CAPS_MASK_LABEL, 10.0f, 1, 2e-2, 5e-2, 0};
    check_layers(c, &tf);
}

/* n random 10x10 images, labels 0..3. */
static caps_dataset synthetic(int n, uint64_t seed) {
    caps_dataset ds = {.count = n, .channels = 1, .rows = 10, .cols = 10,
                       .images = malloc((size_t)n * 100), .labels = malloc((size_t)n)};
    caps_rng r;
    caps_rng_seed(&r, seed, 0);
    for (int k = 0; k < n * 100; k++) ds.images[k] = (uint8_t)caps_rng_below(&r, 256);
    for (int k = 0; k < n; k++) ds.labels[k] = (uint8_t)(k % 4);
    return ds;
}

/* Records the loss of every step from the running mean the progress callback gets. */
typedef struct {
    double loss[256];
    int steps;
    double prev_sum;
    int64_t prev_images;
} step_log;

static int record(const caps_progress *p, void *ctx) {
    step_log *l = ctx;
    double sum = p->loss * (double)p->images;
    if (l->steps < 256) l->loss[l->steps] = (sum - l->prev_sum) / (double)(p->images - l->prev_images);
    l->steps++;
    l->prev_sum = sum;
    l->prev_images = p->images;
    return 0;
}

/* Trains `epochs` epochs of ds (batch 8: 25 steps an epoch for 197 to 200 images), logging. */
static void train(capsnet *m, caps_train_state *st, const caps_dataset *ds, int epochs,
                  step_log *log) {
    caps_epoch_stats es;
    caps_error err;
    for (int e = 0; e < epochs; e++) {
        log->prev_sum = 0.0;
        log->prev_images = 0;
        int rc = caps_train_epoch(m, st, ds, &es, record, log, &err);
        EXPECT(rc == CAPS_OK, "epoch %d on %s: %s", e, capsnet_backend(m), err.msg);
        if (rc) return;
    }
}

static caps_train_state tiny_state(void) {
    caps_train_state st;
    caps_train_state_default(&st);
    st.batch = 8;
    st.seed = 11;
    st.max_shift = 1;
    st.recon_weight = 0.05f;
    return st;
}

TEST(two_hundred_steps_follow_the_cpu) {
    caps_config c = tiny_config(3);
    caps_dataset ds = synthetic(197, 21); /* 25 steps an epoch, the last of 5 images */
    capsnet *cpu = make(&c, 8, &cpu_opt), *gpu = make(&c, 8, &gpu_opt);
    if (cpu && gpu) {
        capsnet_init_weights(cpu, 4);
        capsnet_init_weights(gpu, 4);
        caps_train_state s0 = tiny_state(), s1 = tiny_state();
        step_log l0 = {{0}, 0, 0, 0}, l1 = {{0}, 0, 0, 0};
        train(cpu, &s0, &ds, 8, &l0);
        train(gpu, &s1, &ds, 8, &l1);
        EXPECT(l0.steps == 200 && l1.steps == 200, "steps: CPU %d, GPU %d", l0.steps, l1.steps);
        int bad = 0, first = -1;
        for (int k = 0; k < l0.steps && k < l1.steps && k < 200; k++)
            if (!test_close(l1.loss[k], l0.loss[k], 1e-3, 0.0)) bad++, first = first < 0 ? k : first;
        EXPECT(bad == 0, "%d of 200 steps' losses differ by more than 1e-3 (first: step %d, GPU "
               "%.9g, CPU %.9g)", bad, first + 1, first >= 0 ? l1.loss[first] : 0.0,
               first >= 0 ? l0.loss[first] : 0.0);
    }
    capsnet_free(cpu), capsnet_free(gpu);
    caps_dataset_free(&ds);
}

TEST(same_seed_same_gpu_run) {
    caps_config c = tiny_config(3);
    caps_dataset ds = synthetic(200, 22);
    capsnet *a = make(&c, 8, &gpu_opt), *b = make(&c, 8, &gpu_opt);
    if (a && b) {
        capsnet_init_weights(a, 6);
        capsnet_init_weights(b, 6);
        caps_train_state sa = tiny_state(), sb = tiny_state();
        step_log la = {{0}, 0, 0, 0}, lb = {{0}, 0, 0, 0};
        train(a, &sa, &ds, 2, &la);
        train(b, &sb, &ds, 2, &lb);
        EXPECT(la.steps == lb.steps && memcmp(la.loss, lb.loss, sizeof la.loss) == 0,
               "two GPU runs of one seed differ");
        EXPECT(test_same_model(a, b), "two GPU runs of one seed end with different weights");
    }
    capsnet_free(a), capsnet_free(b);
    caps_dataset_free(&ds);
}

TEST(gpu_model_file_runs_on_the_cpu) {
    caps_config c = tiny_config(3);
    caps_dataset ds = synthetic(200, 23);
    capsnet *gpu = make(&c, 8, &gpu_opt);
    if (!gpu) {
        caps_dataset_free(&ds);
        return;
    }
    capsnet_init_weights(gpu, 7);
    caps_train_state st = tiny_state();
    step_log l = {{0}, 0, 0, 0};
    train(gpu, &st, &ds, 2, &l);
    char path[TEST_PATH_MAX];
    caps_error err;
    test_path(path, "gpu.caps");
    EXPECT(caps_model_save(gpu, &st, "log", path, &err) == CAPS_OK, "save: %s", err.msg);
    capsnet *cpu = NULL;
    caps_train_state cst;
    EXPECT(caps_model_load(&cpu, &cst, NULL, path, 8, &cpu_opt, &err) == CAPS_OK, "load: %s",
           err.msg);
    if (cpu) {
        EXPECT(test_same_model(cpu, gpu), "the file's model differs from the GPU's");
        caps_eval e0, e1;
        EXPECT(caps_evaluate(gpu, &ds, 0, 0.05f, NULL, &e1, NULL, NULL, &err) == CAPS_OK, "%s", err.msg);
        EXPECT(caps_evaluate(cpu, &ds, 0, 0.05f, NULL, &e0, NULL, NULL, &err) == CAPS_OK, "%s", err.msg);
        EXPECT(e0.correct == e1.correct && memcmp(e0.pred, e1.pred, (size_t)ds.count * sizeof(int)) == 0,
               "predictions differ: CPU %d correct, GPU %d", e0.correct, e1.correct);
        caps_eval_free(&e0), caps_eval_free(&e1);
        /* Resumed on the CPU, the run goes on from its epoch. */
        step_log lc = {{0}, 0, 0, 0};
        train(cpu, &cst, &ds, 1, &lc);
        EXPECT(cst.epoch == 3 && lc.steps == 25, "resumed on the CPU: epoch %d, %d steps",
               cst.epoch, lc.steps);
    }
    capsnet_free(cpu), capsnet_free(gpu);
    caps_dataset_free(&ds);
}

TEST(too_large_a_batch_is_refused_with_one_that_fits) {
    caps_config c;
    caps_config_mnist(&c);
    capsnet *m = NULL;
    caps_error err;
    int rc = capsnet_create(&m, &c, 65536, &gpu_opt, &err);
    EXPECT(rc == CAPS_ERR_MEMORY && !m && strstr(err.msg, "out of GPU memory for batch 65536") &&
               strstr(err.hint, "largest batch that fits"),
           "batch 65536: code %d, %s / %s", rc, err.msg, err.hint);
    capsnet_free(m);
}

/* Data-parallel training on a GPU with sums that take host memory only (an MPI that is not
 * CUDA-aware): train.c copies each bucket of gradients out, sums it, and writes it back. A
 * one-process "sum" that negates the gradients makes the copies visible: the first Adam step
 * must then go exactly the other way from a plain step, with and without buckets. */
static int negate_floats(caps_comm *c, float *buf, size_t count, caps_error *err) {
    (void)c, (void)err;
    for (size_t i = 0; i < count; i++) buf[i] = -buf[i];
    return CAPS_OK;
}
static int keep_doubles(caps_comm *c, double *buf, size_t count, caps_error *err) {
    return (void)c, (void)buf, (void)count, (void)err, CAPS_OK;
}
static struct {
    float *buf[16];
    size_t count[16];
    int n;
} started;
static int negate_later(caps_comm *c, float *buf, size_t count, caps_error *err) {
    (void)c, (void)err;
    started.buf[started.n] = buf;
    started.count[started.n++] = count;
    return CAPS_OK;
}
static int negate_started(caps_comm *c, caps_error *err) {
    for (int k = 0; k < started.n; k++) negate_floats(c, started.buf[k], started.count[k], err);
    started.n = 0;
    return CAPS_OK;
}
static int stop_after_one(const caps_progress *p, void *ctx) { return (void)ctx, p->batch >= 1; }

TEST(gradient_sums_through_the_host) {
    caps_config c = tiny_config(3);
    caps_dataset ds = synthetic(40, 24);
    caps_error err;
    for (int overlap = 0; overlap < 2; overlap++) {
        capsnet *plain = make(&c, 8, &gpu_opt), *summed = make(&c, 8, &gpu_opt);
        if (!plain || !summed) break;
        capsnet_init_weights(plain, 6);
        capsnet_init_weights(summed, 6);
        float *p0 = test_arena(plain, CAPS_PARAMS);
        caps_train_state s0 = tiny_state(), s1 = tiny_state();
        caps_epoch_stats es;
        caps_comm comm = {.rank = 0, .size = 1, .sum_floats = negate_floats,
                          .sum_doubles = keep_doubles};
        if (overlap) comm.start_sum_floats = negate_later, comm.wait_all = negate_started;
        caps_train_epoch(plain, &s0, &ds, &es, stop_after_one, NULL, &err);
        EXPECT(caps_train_epoch_comm(summed, &s1, &ds, &comm, &es, stop_after_one, NULL, &err) ==
                   CAPS_OK, "%s", err.msg);
        float *pa = test_arena(plain, CAPS_PARAMS), *pb = test_arena(summed, CAPS_PARAMS);
        size_t n = capsnet_num_params(plain), opposite = 0, moved = 0;
        for (size_t i = 0; i < n; i++) {
            float da = pa[i] - p0[i], db = pb[i] - p0[i];
            if (da != 0.0f) moved++;
            if (da != 0.0f && test_close(db, -da, 1e-3, 1e-9)) opposite++;
        }
        EXPECT(moved > n / 2 && opposite == moved,
               "overlap %d: %zu of %zu moved weights stepped the other way (%zu moved)", overlap,
               opposite, moved, moved);
        free(p0), free(pa), free(pb);
        capsnet_free(plain), capsnet_free(summed);
    }
    caps_dataset_free(&ds);
}

/* CAPS_CUDA_DEVICE (set per process under mpirun) picks the GPU; one that is not there is
 * refused, naming it and the devices there are. */
TEST(a_device_that_is_not_there_is_refused) {
    caps_config c = tiny_config(1);
    capsnet *m = NULL;
    caps_error err;
    setenv("CAPS_CUDA_DEVICE", "4096", 1);
    int rc = capsnet_create(&m, &c, 1, &gpu_opt, &err);
    unsetenv("CAPS_CUDA_DEVICE");
    EXPECT(rc == CAPS_ERR_ARG && !m && strstr(err.msg, "CAPS_CUDA_DEVICE=4096") &&
               strstr(err.msg, "expected 0.."),
           "code %d, %s", rc, err.msg);
    capsnet_free(m);
    setenv("CAPS_CUDA_DEVICE", "0", 1);
    EXPECT(capsnet_create(&m, &c, 1, &gpu_opt, &err) == CAPS_OK, "device 0: %s", err.msg);
    unsetenv("CAPS_CUDA_DEVICE");
    capsnet_free(m);
}

int main(void) {
    /* Is there a GPU to test? A tiny model on "cuda" says. */
    caps_config c = tiny_config(1);
    capsnet *probe = NULL;
    caps_error err;
    if (capsnet_create(&probe, &c, 1, &gpu_opt, &err) != CAPS_OK) {
        if (strstr(err.msg, "unknown backend")) return TEST_SKIP_ALL(9, "built without CUDA");
        if (strstr(err.msg, "no CUDA device")) return TEST_SKIP_ALL(9, "no CUDA device");
        fprintf(stderr, "test_cuda: the cuda backend failed to start: %s\n", err.msg);
        return 1;
    }
    capsnet_free(probe);
    if (!test_dir_create("cuda")) return 1;
    RUN(layers_tiny);
    RUN(layers_mnist_shapes);
    RUN(layers_mnist_tf32);
    RUN(two_hundred_steps_follow_the_cpu);
    RUN(same_seed_same_gpu_run);
    RUN(gpu_model_file_runs_on_the_cpu);
    RUN(too_large_a_batch_is_refused_with_one_that_fits);
    RUN(a_device_that_is_not_there_is_refused);
    RUN(gradient_sums_through_the_host);
    test_dir_remove();
    return TEST_SUMMARY();
}
