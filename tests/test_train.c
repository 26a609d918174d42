/*
 * test_train.c: the training loop's promises, on a tiny network and synthetic data.
 * - A run stopped after any batch and resumed from its model file ends bit-identical to a
 *   run straight through (weights, Adam moments, step count, epoch sums).
 * - A loss that becomes NaN stops training with the step named, before the step changes
 *   any weight; the last model file saved stays loadable; the program says so and exits 1.
 * - Data-parallel training (caps_train_epoch_comm), with threads standing in for processes:
 *   2, 3 and 9 processes (9 > the batch of 8: some shares empty) follow one process step by
 *   step (loss within 1e-5 relative) and end with its weights (within float summation
 *   order), the gradient sums overlapped with backward or not; every process holds the same
 *   weights; a stop asked by one process stops all after the same step, and the run
 *   resumes to the same end.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gradcheck.h"
#include "test.h"
#include "test_files.h"
#include "test_model.h"

static caps_config tiny_config(void) {
    caps_config c = {10, 1, 4, 3, 1, 3, 4, 3, 2, 4, 5, 3, 8, 12, CAPS_ROUTING_DYNAMIC};
    return c;
}

/* 37 random 10x10 images with labels 0..3: an odd count, so batches of 8 leave a remainder. */
static caps_dataset synthetic(int n) {
    caps_dataset ds = {.count = n, .channels = 1, .rows = 10, .cols = 10,
                       .images = malloc((size_t)n * 100), .labels = malloc((size_t)n)};
    caps_rng r;
    caps_rng_seed(&r, 77, 0);
    for (int k = 0; k < n * 100; k++) ds.images[k] = (uint8_t)caps_rng_below(&r, 256);
    for (int k = 0; k < n; k++) ds.labels[k] = (uint8_t)(k % 4);
    return ds;
}

static caps_train_state tiny_state(void) {
    caps_train_state st;
    caps_train_state_default(&st);
    st.batch = 8;
    st.seed = 5;
    st.max_shift = 1;
    return st;
}

/* Stops after `after` batches of the epoch. */
static int stop_after(const caps_progress *p, void *ctx) { return p->batch >= *(int *)ctx; }

TEST(stop_anywhere_and_resume_is_bit_identical) {
    caps_config c = tiny_config();
    caps_dataset ds = synthetic(37);
    caps_error err;
    /* Straight through: 2 epochs. */
    capsnet *ref = NULL;
    capsnet_create(&ref, &c, 8, NULL, &err);
    capsnet_init_weights(ref, 5);
    caps_train_state sr = tiny_state();
    caps_epoch_stats es;
    for (int e = 0; e < 2; e++) caps_train_epoch(ref, &sr, &ds, &es, NULL, NULL, &err);
    /* Stopped after every possible batch of epoch 2 (and of epoch 1), saved, loaded into a
     * fresh model, resumed. */
    char path[TEST_PATH_MAX];
    test_path(path, "resume.caps");
    int mismatches = 0, stops = 0;
    for (int stop_epoch = 0; stop_epoch < 2; stop_epoch++)
        for (int after = 1; after < 5; after++) {
            capsnet *m = NULL;
            capsnet_create(&m, &c, 8, NULL, &err);
            capsnet_init_weights(m, 5);
            caps_train_state st = tiny_state();
            while (st.epoch < 2) {
                int stop = st.epoch == stop_epoch && st.batch_in_epoch == 0;
                caps_train_epoch(m, &st, &ds, &es, stop ? stop_after : NULL, &after, &err);
                if (es.stopped) {
                    stops++;
                    EXPECT(caps_model_save(m, &st, "log", path, &err) == CAPS_OK, "save: %s", err.msg);
                    capsnet_free(m);
                    m = NULL;
                    EXPECT(caps_model_load(&m, &st, NULL, path, 8, NULL, &err) == CAPS_OK, "load: %s",
                           err.msg);
                    if (!m) break;
                    EXPECT(st.batch_in_epoch == after, "resumed at batch %lld, stopped after %d",
                           (long long)st.batch_in_epoch, after);
                }
            }
            if (m) {
                mismatches += !test_same_model(m, ref);
                /* The epoch's loss sums survive the stop too. */
                mismatches += st.epoch_images != 0 || sr.epoch_images != 0;
            }
            capsnet_free(m);
        }
    EXPECT(stops == 8, "%d of 8 runs stopped", stops);
    EXPECT(mismatches == 0, "%d resumed runs differ from the straight run", mismatches);
    capsnet_free(ref);
    caps_dataset_free(&ds);
}

TEST(nan_loss_stops_before_the_step_and_names_it) {
    caps_config c = tiny_config();
    caps_dataset ds = synthetic(37);
    caps_error err;
    capsnet *m = NULL;
    capsnet_create(&m, &c, 8, NULL, &err);
    capsnet_init_weights(m, 5);
    caps_train_state st = tiny_state();
    caps_epoch_stats es;
    EXPECT(caps_train_epoch(m, &st, &ds, &es, NULL, NULL, &err) == CAPS_OK, "epoch: %s", err.msg);
    char path[TEST_PATH_MAX];
    test_path(path, "good.caps");
    EXPECT(caps_model_save(m, &st, "log", path, &err) == CAPS_OK, "save: %s", err.msg);
    /* A poisoned decoder weight: the reconstruction, then the loss, become NaN. */
    test_set_param(m, "dec3_b", 0, NAN);
    float *before = test_arena(m, CAPS_PARAMS);
    int64_t t0 = capsnet_adam_t(m);
    int rc = caps_train_epoch(m, &st, &ds, &es, NULL, NULL, &err);
    EXPECT(rc == CAPS_ERR_NUMERIC, "returned %d (%s)", rc, err.msg);
    EXPECT(strstr(err.msg, "loss became NaN at epoch 2, batch 1 (Adam step 6)") != NULL,
           "message: %s", err.msg);
    EXPECT(capsnet_adam_t(m) == t0 && st.batch_in_epoch == 0 && st.epoch == 1,
           "the failed step moved the state (step %lld, batch %lld, epoch %d)",
           (long long)capsnet_adam_t(m), (long long)st.batch_in_epoch, st.epoch);
    float *after = test_arena(m, CAPS_PARAMS);
    EXPECT(memcmp(before, after, capsnet_num_params(m) * sizeof(float)) == 0,
           "the failed step changed the weights");
    free(after);
    capsnet *back = NULL;
    EXPECT(caps_model_load(&back, NULL, NULL, path, 8, NULL, &err) == CAPS_OK, "reload: %s", err.msg);
    EXPECT(back && isfinite(test_get_param(back, "dec3_b", 0)), "the saved model is not the good one");

    /* The program: resuming a model whose weights hold a NaN stops at its first step with
     * exit status 1 and says the last good file stays; the file is untouched. (The program
     * reads MNIST, so the model here is the tiny network on 28 x 28 images, 10 classes.) */
    const char *prog = getenv("CAPS_PROGRAM");
    if (prog) {
        caps_config mc = c;
        mc.image_size = 28;
        mc.num_classes = 10;
        capsnet *big = NULL;
        capsnet_create(&big, &mc, 8, NULL, &err);
        capsnet_init_weights(big, 5);
        test_set_param(big, "dec3_b", 0, NAN);
        caps_train_state bs = tiny_state();
        bs.epoch = 1;
        char bad[TEST_PATH_MAX], out[TEST_PATH_MAX], cmd[2048], *text = NULL;
        test_path(bad, "bad.caps");
        test_path(out, "out.txt");
        EXPECT(caps_model_save(big, &bs, "", bad, &err) == CAPS_OK, "save: %s", err.msg);
        snprintf(cmd, sizeof cmd,
                 "%s train --resume --out %s --data data/mnist --epochs 3 --test-limit 10 "
                 "--quiet > %s 2>&1", prog, bad, out);
        int status = system(cmd);
        size_t n;
        if (!(text = test_read_file(out, &n))) text = strdup("(no output)");
        EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 1, "exit status %d:\n%s", status, text);
        EXPECT(strstr(text, "loss became NaN at epoch 2, batch 1") &&
                   strstr(text, "keeps the last good checkpoint"),
               "program output:\n%s", text);
        capsnet *again = NULL;
        caps_train_state as;
        EXPECT(caps_model_load(&again, &as, NULL, bad, 8, NULL, &err) == CAPS_OK && as.epoch == 1,
               "the file changed: %s", err.msg);
        capsnet_free(again);
        capsnet_free(big);
        free(text);
    } else {
        printf("note: CAPS_PROGRAM not set, the program's part of this test was not run\n");
    }
    free(before);
    capsnet_free(back);
    capsnet_free(m);
    caps_dataset_free(&ds);
}

/* ------------------------------------------------------------------------ data-parallel */

/* Threads standing in for processes: sums over a barrier, rank 0 adding the buffers in rank
 * order into a scratch array that every thread then copies, so all get identical sums. */
#define GROUP_MAX 9
typedef struct {
    pthread_barrier_t barrier;
    int size;
    const void *bufs[GROUP_MAX];
    double *sum; /* [the model's parameter count] */
} thread_group;

typedef struct {
    caps_comm comm;
    thread_group *g;
    struct {
        float *buf;
        size_t count;
    } started[16]; /* the buckets of one step */
    int nstarted;
} thread_comm;

/* Sums buf[count] (floats or doubles) over the group, rank 0 adding in rank order. */
static void group_sum(caps_comm *c, void *buf, size_t count, int doubles) {
    thread_group *g = ((thread_comm *)c->ctx)->g;
    g->bufs[c->rank] = buf;
    pthread_barrier_wait(&g->barrier);
    if (c->rank == 0)
        for (size_t i = 0; i < count; i++) {
            double t = 0.0;
            for (int r = 0; r < g->size; r++)
                t += doubles ? ((const double *)g->bufs[r])[i] : ((const float *)g->bufs[r])[i];
            g->sum[i] = t;
        }
    pthread_barrier_wait(&g->barrier);
    for (size_t i = 0; i < count; i++)
        if (doubles)
            ((double *)buf)[i] = g->sum[i];
        else
            ((float *)buf)[i] = (float)g->sum[i];
    pthread_barrier_wait(&g->barrier);
}

static int group_sum_floats(caps_comm *c, float *buf, size_t count, caps_error *err) {
    (void)err;
    group_sum(c, buf, count, 0);
    return CAPS_OK;
}

static int group_sum_doubles(caps_comm *c, double *buf, size_t count, caps_error *err) {
    (void)err;
    group_sum(c, buf, count, 1);
    return CAPS_OK;
}

/* The overlapped form: started sums are done, in the order started, by wait_all. */
static int group_start(caps_comm *c, float *buf, size_t count, caps_error *err) {
    (void)err;
    thread_comm *tc = c->ctx;
    tc->started[tc->nstarted].buf = buf;
    tc->started[tc->nstarted].count = count;
    tc->nstarted++;
    return CAPS_OK;
}

static int group_wait_all(caps_comm *c, caps_error *err) {
    thread_comm *tc = c->ctx;
    for (int k = 0; k < tc->nstarted; k++)
        group_sum_floats(c, tc->started[k].buf, tc->started[k].count, err);
    tc->nstarted = 0;
    return CAPS_OK;
}

/* One process of a data-parallel run: epochs on its own model, every step's loss kept. */
typedef struct {
    thread_comm tc;
    caps_train_state st;
    const caps_dataset *ds;
    capsnet *m;
    int epochs;
    int stop_at;     /* this process asks to stop after this batch of its first epoch (0: no) */
    int stopped;     /* the run was stopped (all then resume) */
    int no_callback; /* train without a progress callback */
    double loss[16];
    int steps;
} rank_run;

static int record_step(const caps_progress *p, void *ctx) {
    rank_run *rr = ctx;
    if (rr->steps < 16) rr->loss[rr->steps] = p->step_loss;
    rr->steps++;
    return rr->stop_at > 0 && p->epoch == 0 && p->batch >= rr->stop_at;
}

static void *rank_main(void *arg) {
    rank_run *rr = arg;
    caps_error err;
    caps_epoch_stats es;
    while (rr->st.epoch < rr->epochs) {
        int rc = caps_train_epoch_comm(rr->m, &rr->st, rr->ds, &rr->tc.comm, &es,
                                       rr->no_callback ? NULL : record_step, rr, &err);
        if (rc) {
            fprintf(stderr, "rank %d: %s\n", rr->tc.comm.rank, err.msg);
            break;
        }
        if (es.stopped) {
            rr->stopped = 1;
            rr->stop_at = 0;
        }
    }
    return NULL;
}

/* Trains `size` threads for two epochs; ranks[0] holds the run of process 0. */
static void run_group(rank_run *ranks, int size, const caps_dataset *ds, int overlap, int stop_rank,
                      int no_callback) {
    caps_config c = tiny_config();
    caps_error err;
    thread_group g = {.size = size};
    pthread_barrier_init(&g.barrier, NULL, (unsigned)size);
    pthread_t th[GROUP_MAX];
    for (int r = 0; r < size; r++) {
        rank_run *rr = &ranks[r];
        memset(rr, 0, sizeof *rr);
        rr->tc.g = &g;
        rr->tc.comm = (caps_comm){.rank = r, .size = size, .sum_floats = group_sum_floats,
                                  .sum_doubles = group_sum_doubles, .ctx = &rr->tc};
        if (overlap) {
            rr->tc.comm.start_sum_floats = group_start;
            rr->tc.comm.wait_all = group_wait_all;
        }
        rr->st = tiny_state();
        rr->ds = ds;
        rr->epochs = 2;
        rr->stop_at = r == stop_rank ? 2 : 0;
        rr->no_callback = no_callback;
        /* The largest share only: a process never holds the global batch. */
        capsnet_create(&rr->m, &c, (8 + size - 1) / size, NULL, &err);
        capsnet_init_weights(rr->m, 5);
    }
    g.sum = malloc(capsnet_num_params(ranks[0].m) * sizeof(double));
    for (int r = 0; r < size; r++) pthread_create(&th[r], NULL, rank_main, &ranks[r]);
    for (int r = 0; r < size; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&g.barrier);
    free(g.sum);
}

/* The largest difference between the weights of a and b, relative to each tensor's largest
 * weight. */
static double weights_gap(const capsnet *a, const capsnet *b) {
    float *pa = test_arena(a, CAPS_PARAMS), *pb = test_arena(b, CAPS_PARAMS);
    double worst = 0.0;
    for (int t = 0; t < CAPS_NUM_PARAM_TENSORS; t++) {
        size_t off = capsnet_param_offset(a, t), n = capsnet_param_size(a, t);
        double top = 0.0, gap = 0.0;
        for (size_t i = off; i < off + n; i++) {
            top = fmax(top, fabs(pa[i]));
            gap = fmax(gap, fabs((double)pa[i] - pb[i]));
        }
        if (top > 0 && gap / top > worst) worst = gap / top;
    }
    free(pa), free(pb);
    return worst;
}

TEST(data_parallel_follows_one_process) {
    caps_config c = tiny_config();
    caps_dataset ds = synthetic(37);
    caps_error err;
    /* One process: 2 epochs of 5 steps (the last of 5 images). */
    rank_run one = {0};
    one.st = tiny_state();
    capsnet_create(&one.m, &c, 8, NULL, &err);
    capsnet_init_weights(one.m, 5);
    caps_epoch_stats es;
    while (one.st.epoch < 2)
        caps_train_epoch(one.m, &one.st, &ds, &es, record_step, &one, &err);
    EXPECT(one.steps == 10, "%d steps", one.steps);

    /* size, overlapped sums, the process asking to stop (-1: none), no callback */
    const int cases[][4] = {{2, 0, -1, 0}, {2, 1, -1, 0}, {3, 1, 1, 0}, {9, 1, 8, 0},
                            {2, 0, -1, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int size = cases[k][0], stop_rank = cases[k][2];
        rank_run ranks[GROUP_MAX];
        run_group(ranks, size, &ds, cases[k][1], stop_rank, cases[k][3]);
        for (int r = 0; r < size; r++) {
            EXPECT(ranks[r].st.epoch == 2 && ranks[r].st.batch_in_epoch == 0,
                   "%d processes: process %d ended at epoch %d batch %lld", size, r,
                   ranks[r].st.epoch, (long long)ranks[r].st.batch_in_epoch);
            EXPECT(ranks[r].stopped == (stop_rank >= 0), "%d processes: process %d %s", size,
                   r, ranks[r].stopped ? "stopped" : "never stopped");
            /* Every process took the same steps from the same sums: the same weights. */
            EXPECT(test_same_model(ranks[r].m, ranks[0].m),
                   "%d processes: process %d's weights differ from process 0's", size, r);
        }
        if (!cases[k][3]) {
            EXPECT(ranks[0].steps == 10, "%d processes: %d steps", size, ranks[0].steps);
            for (int s = 0; s < 10 && s < ranks[0].steps; s++)
                EXPECT(test_close(ranks[0].loss[s], one.loss[s], 1e-5, 0.0),
                       "%d processes (overlap %d): step %d loss %.9g, one process %.9g", size,
                       cases[k][1], s + 1, ranks[0].loss[s], one.loss[s]);
        }
        double gap = weights_gap(ranks[0].m, one.m);
        EXPECT(gap < 1e-5, "%d processes: weights %.3g (relative) from one process's", size, gap);
        EXPECT(capsnet_adam_t(ranks[0].m) == 10, "%d processes: %lld Adam steps", size,
               (long long)capsnet_adam_t(ranks[0].m));
        for (int r = 0; r < size; r++) capsnet_free(ranks[r].m);
    }
    capsnet_free(one.m);
    caps_dataset_free(&ds);
}

TEST(batch_shares_cover_the_batch) {
    for (int size = 1; size <= 5; size++)
        for (int n = 0; n <= 12; n++) {
            int next = 0, lo = n, hi = 0;
            for (int r = 0; r < size; r++) {
                int first, count;
                caps_batch_share(n, r, size, &first, &count);
                EXPECT(first == next, "n %d size %d rank %d starts at %d, not %d", n, size, r,
                       first, next);
                next = first + count;
                lo = count < lo ? count : lo;
                hi = count > hi ? count : hi;
            }
            EXPECT(next == n && hi - lo <= 1, "n %d size %d: covers %d, shares %d..%d", n,
                   size, next, lo, hi);
        }
}

int main(void) {
    if (!test_dir_create("train")) return 1;
    RUN(stop_anywhere_and_resume_is_bit_identical);
    RUN(nan_loss_stops_before_the_step_and_names_it);
    RUN(data_parallel_follows_one_process);
    RUN(batch_shares_cover_the_batch);
    test_dir_remove();
    return TEST_SUMMARY();
}
