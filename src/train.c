/*
 * train.c: the training epoch and the evaluation loop (section 4 and 5 of the paper):
 * Adam on the batch-mean loss, the learning rate decayed exponentially per epoch, images
 * reshuffled every epoch and shifted at random by up to 2 pixels; evaluation masks the
 * decoder by the predicted class.
 *
 * Every random choice derives from the run's seed, the epoch and the batch number, never
 * from state carried between batches: the same seed and thread count give the same run,
 * and a run stopped after any batch resumes exactly where it stopped.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "epoch.h"
#include "model.h"
#include "util.h"

void caps_train_state_default(caps_train_state *st) {
    memset(st, 0, sizeof *st);
    st->lr = 1e-3f;
    st->lr_decay = 0.9f;
    st->beta1 = 0.9f;
    st->beta2 = 0.999f;
    st->adam_eps = 1e-8f;
    st->recon_weight = 0.0005f;
    st->batch = 100;
    st->max_shift = 2;
    st->limit = 0;
    st->seed = 1;
}

/* lr_epoch = lr * decay^epoch: an exponential decay stepped per epoch. The paper names
 * none (its authors' code decays about 0.99 per epoch); 0.9 is this project's default. */
float caps_train_lr(const caps_train_state *st, int epoch) {
    return st->lr * powf(st->lr_decay, (float)epoch);
}

/* The data must have the shape the network was built for. */
static int check_shape(const capsnet *m, const caps_dataset *ds, caps_error *err) {
    const caps_config *c = capsnet_config(m);
    return caps_epoch_check_data(ds, c->image_size, c->in_channels, c->num_classes, err);
}

void caps_batch_share(int n, int rank, int size, int *first, int *count) {
    int base = n / size, extra = n % size;
    *count = base + (rank < extra);
    *first = rank * base + (rank < extra ? rank : extra);
}

/* ------------------------------------------------------------------------ gradient sums */

/* One step's gradient sums over the processes: a bucket's sum starts as soon as the backward
 * pass has finished it (on_grads_ready), so that it runs while the layers below compute. */
typedef struct {
    capsnet *m;
    caps_comm *comm;
    float *grads; /* what the sums read and write: the arena itself, or a host copy of it */
    int staged;   /* grads is that host copy (the arena is on a GPU the sums cannot read) */
    int rc;       /* the first failure */
    caps_error *err;
} grad_sums;

/* The range of the arena that tensors first .. last hold. */
static void tensor_range(const capsnet *m, int first, int last, size_t *off, size_t *count) {
    *off = capsnet_param_offset(m, first);
    *count = capsnet_param_offset(m, last) + capsnet_param_size(m, last) - *off;
}

static void on_grads_ready(void *ctx, int first, int last) {
    grad_sums *g = ctx;
    if (g->rc || !g->comm->start_sum_floats) return; /* no overlap: all at once at the end */
    size_t off, count;
    tensor_range(g->m, first, last, &off, &count);
    if (g->staged) g->rc = capsnet_read(g->m, CAPS_GRADS, off, count, g->grads + off, g->err);
    if (!g->rc) g->rc = g->comm->start_sum_floats(g->comm, g->grads + off, count, g->err);
    if (g->comm->progress) g->comm->progress(g->comm);
}

/* After the backward pass (or, for a process whose share is empty, instead of it): every
 * process's gradients summed into every process's arena. */
static int finish_grad_sums(grad_sums *g) {
    size_t n = capsnet_num_params(g->m);
    if (g->rc) return g->rc;
    if (g->comm->start_sum_floats)
        g->rc = g->comm->wait_all(g->comm, g->err);
    else if (!g->staged || !(g->rc = capsnet_read(g->m, CAPS_GRADS, 0, n, g->grads, g->err)))
        g->rc = g->comm->sum_floats(g->comm, g->grads, n, g->err);
    if (!g->rc && g->staged) g->rc = capsnet_write(g->m, CAPS_GRADS, 0, n, g->grads, g->err);
    return g->rc;
}

/* ------------------------------------------------------------------------ an epoch */

int caps_train_epoch(capsnet *m, caps_train_state *st, const caps_dataset *train,
                     caps_epoch_stats *out, caps_progress_fn cb, void *ctx, caps_error *err) {
    return caps_train_epoch_comm(m, st, train, NULL, out, cb, ctx, err);
}

int caps_train_epoch_comm(capsnet *m, caps_train_state *st, const caps_dataset *train,
                          caps_comm *comm, caps_epoch_stats *out, caps_progress_fn cb,
                          void *ctx, caps_error *err) {
    memset(out, 0, sizeof *out);
    int rc = check_shape(m, train, err);
    if (rc) return rc;
    int rank = comm ? comm->rank : 0, size = comm ? comm->size : 1;
    if (size < 1 || rank < 0 || rank >= size)
        return caps_fail(err, CAPS_ERR_ARG, "process %d of %d (expected 0..%d)", rank, size,
                         size - 1);
    int B = st->batch, share = (B + size - 1) / size; /* the largest share of a batch */
    if (B < 1 || share > capsnet_max_batch(m))
        return caps_fail(err, CAPS_ERR_ARG, "batch size %d exceeds the model's (expected 1..%d)",
                         B, capsnet_max_batch(m) * size);
    int n = st->limit > 0 && st->limit < train->count ? st->limit : train->count;
    int batches = (n + B - 1) / B;
    if (st->batch_in_epoch < 0 || st->batch_in_epoch > batches)
        return caps_fail(err, CAPS_ERR_ARG, "batch position out of range (expected 0..%d, got %lld)",
                         batches, (long long)st->batch_in_epoch);
    /* A backend that keeps the data (a GPU) builds each batch itself from the indices and
     * shifts drawn here; otherwise the batch is built here. The same draws either way. */
    int kept;
    rc = capsnet_keep_data(m, train, &kept, err);
    if (rc) return rc;
    size_t P = (size_t)caps_image_pixels(capsnet_config(m)), NP = capsnet_num_params(m);
    /* Where the sums read the gradients: in place, or through a host copy when they are in
     * a GPU's memory and the sums cannot take device memory. */
    grad_sums gs = {m, comm, NULL, 0, CAPS_OK, err};
    if (comm) {
        int on_device;
        gs.grads = capsnet_arena_data(m, CAPS_GRADS, &on_device);
        gs.staged = !gs.grads || (on_device && !comm->device_buffers);
        if (gs.staged) gs.grads = caps_alloc(NP, sizeof(float));
    }
    int *order = malloc((size_t)n * sizeof(int));
    int *labels = malloc((size_t)B * sizeof(int)), *shift = malloc(2 * (size_t)B * sizeof(int));
    float *x = kept ? NULL : caps_alloc((size_t)share * P, sizeof(float));
    if (!order || !labels || !shift || (!kept && !x) || (comm && !gs.grads)) {
        free(order), free(labels), free(shift), free(x);
        if (gs.staged) free(gs.grads);
        return caps_fail(err, CAPS_ERR_MEMORY, "out of memory for a batch of %d images", B);
    }
    caps_epoch_order(order, n, st->seed, st->epoch);
    float lr = caps_train_lr(st, st->epoch);
    caps_adam hp = {lr, st->beta1, st->beta2, st->adam_eps};

    double start = caps_seconds() - st->epoch_seconds;
    rc = CAPS_OK;
    for (int bi = (int)st->batch_in_epoch; bi < batches; bi++) {
        /* The global batch and its shifts are one process's; this process takes its share. */
        int nb = n - bi * B < B ? n - bi * B : B, first, count;
        caps_batch_share(nb, rank, size, &first, &count);
        caps_rng r;
        caps_epoch_shift_rng(&r, st->seed, st->epoch, bi);
        caps_draw_shifts(shift, shift + B, nb, st->max_shift, &r);
        const int *idx = order + (size_t)bi * B + first, *dx = shift + first,
                  *dy = shift + B + first;
        capsnet_zero_grad(m);
        /* Loss, margin and reconstruction loss, each times the images: summed over the
         * processes, the global batch's. */
        double sums[3] = {0.0, 0.0, 0.0};
        if (count > 0) {
            float loss;
            if (kept) {
                for (int b = 0; b < count; b++) labels[b] = train->labels[idx[b]];
                loss = capsnet_forward_kept(m, idx, dx, dy, labels, count, CAPS_MASK_LABEL,
                                            st->recon_weight);
            } else {
                caps_make_batch_shifted(x, labels, train, idx, dx, dy, count);
                loss = capsnet_forward(m, x, labels, count, CAPS_MASK_LABEL, st->recon_weight);
            }
            /* A failed GPU step (it shows by the time the loss is back) before a NaN. */
            if ((rc = capsnet_status(m, err)) != CAPS_OK) break;
            sums[0] = (double)loss * count;
            sums[1] = (double)capsnet_margin_loss(m) * count;
            sums[2] = (double)capsnet_recon_loss(m) * count;
            /* The loss scaled by 1 / nb, not 1 / count: the processes' gradients then sum
             * to the gradient of the global batch's mean loss. */
            capsnet_backward_ready(m, 1.0f / nb, comm ? on_grads_ready : NULL, &gs);
        } else {
            for (int k = 0; k < CAPS_GRAD_BUCKETS; k++) { /* zeros, in the same order */
                int t0, t1;
                capsnet_grad_bucket(k, &t0, &t1);
                on_grads_ready(&gs, t0, t1);
            }
        }
        if (comm) {
            double t0 = caps_seconds();
            rc = finish_grad_sums(&gs);
            if (!rc) rc = comm->sum_doubles(comm, sums, 3, err);
            out->comm_seconds += caps_seconds() - t0;
            if (rc) break;
        }
        if (!isfinite(sums[0])) {
            rc = caps_fail(err, CAPS_ERR_NUMERIC,
                           "training: loss became %s at epoch %d, batch %d (Adam step %lld)",
                           isnan(sums[0]) ? "NaN" : "infinite", st->epoch + 1, bi + 1,
                           (long long)capsnet_adam_t(m) + 1);
            caps_hint(err, "lower the learning rate (--lr); the weights before this step are kept");
            break;
        }
        capsnet_adam_step(m, &hp, lr);
        st->epoch_loss_sum += sums[0];
        st->epoch_margin_sum += sums[1];
        st->epoch_recon_sum += sums[2];
        st->epoch_images += nb;
        st->epoch_seconds = caps_seconds() - start;
        st->batch_in_epoch = bi + 1;
        /* Stop when any process's callback asks: all stop after the same step. */
        double stop = 0.0;
        if (cb) {
            caps_progress p = {st->epoch, bi + 1, batches, st->epoch_loss_sum / st->epoch_images,
                               st->epoch_seconds, st->epoch_images, sums[0] / nb};
            stop = cb(&p, ctx) != 0;
        }
        if (comm) {
            double t0 = caps_seconds();
            rc = comm->sum_doubles(comm, &stop, 1, err);
            out->comm_seconds += caps_seconds() - t0;
            if (rc) break;
        }
        if (stop > 0.0 && bi + 1 < batches) {
            out->stopped = 1;
            break;
        }
    }
    /* The last step's backward and Adam step have been checked by no loss yet. */
    if (rc == CAPS_OK) rc = capsnet_status(m, err);
    caps_epoch_close(st, out, rc == CAPS_OK && !out->stopped);
    free(order), free(labels), free(shift), free(x);
    if (gs.staged) free(gs.grads);
    return rc;
}

void caps_eval_free(caps_eval *ev) {
    free(ev->class_total);
    free(ev->class_correct);
    free(ev->confusion);
    free(ev->pred);
    free(ev->score);
    free(ev->lengths);
    memset(ev, 0, sizeof *ev);
}

int caps_evaluate(capsnet *m, const caps_dataset *ds, int limit, float recon_weight,
                  const caps_affine *affine, caps_eval *ev, caps_progress_fn cb, void *ctx,
                  caps_error *err) {
    memset(ev, 0, sizeof *ev);
    int rc = check_shape(m, ds, err);
    if (rc) return rc;
    int J = capsnet_config(m)->num_classes, B = capsnet_max_batch(m);
    int n = limit > 0 && limit < ds->count ? limit : ds->count;
    size_t P = (size_t)caps_image_pixels(capsnet_config(m));
    ev->num_classes = J;
    ev->class_total = calloc((size_t)J, sizeof(int));
    ev->class_correct = calloc((size_t)J, sizeof(int));
    ev->confusion = calloc((size_t)J * J, sizeof(int));
    ev->pred = calloc((size_t)n, sizeof(int));
    ev->score = calloc((size_t)n, sizeof(float));
    ev->lengths = calloc((size_t)n * J, sizeof(float));
    /* Plain images can be built where the backend keeps the data (unshifted: zeros). */
    int kept = 0;
    if (!affine && (rc = capsnet_keep_data(m, ds, &kept, err)) != CAPS_OK) {
        caps_eval_free(ev);
        return rc;
    }
    int *idx = malloc((size_t)B * sizeof(int)), *labels = malloc((size_t)B * sizeof(int));
    int *zero = calloc((size_t)B, sizeof(int));
    float *x = kept ? NULL : caps_alloc((size_t)B * P, sizeof(float));
    if (!ev->class_total || !ev->class_correct || !ev->confusion || !ev->pred || !ev->score ||
        !ev->lengths ||
        !idx || !labels || !zero || (!kept && !x)) {
        free(idx), free(labels), free(zero), free(x);
        caps_eval_free(ev);
        return caps_fail(err, CAPS_ERR_MEMORY, "out of memory for evaluation");
    }
    double start = caps_seconds(), loss = 0.0, margin = 0.0, recon = 0.0;
    int batches = (n + B - 1) / B;
    for (int bi = 0; bi < batches; bi++) {
        int nb = n - bi * B < B ? n - bi * B : B;
        for (int b = 0; b < nb; b++) idx[b] = bi * B + b;
        if (kept) {
            for (int b = 0; b < nb; b++) labels[b] = ds->labels[idx[b]];
            capsnet_forward_kept(m, idx, zero, zero, labels, nb, CAPS_MASK_PREDICTED,
                                 recon_weight);
        } else {
            caps_make_batch_affine(x, labels, ds, idx, nb, affine);
            capsnet_forward(m, x, labels, nb, CAPS_MASK_PREDICTED, recon_weight);
        }
        if ((rc = capsnet_status(m, err)) != CAPS_OK) break;
        const int *pred = capsnet_predictions(m);
        const float *len = capsnet_lengths(m);
        for (int b = 0; b < nb; b++) {
            ev->pred[idx[b]] = pred[b];
            ev->score[idx[b]] = len[(size_t)b * J + pred[b]];
            memcpy(ev->lengths + (size_t)idx[b] * J, len + (size_t)b * J, (size_t)J * sizeof(float));
            ev->class_total[labels[b]]++;
            ev->confusion[labels[b] * J + pred[b]]++;
            if (pred[b] == labels[b]) {
                ev->class_correct[labels[b]]++;
                ev->correct++;
            }
        }
        loss += (double)(capsnet_margin_loss(m) + capsnet_recon_loss(m)) * nb;
        margin += (double)capsnet_margin_loss(m) * nb;
        recon += (double)capsnet_recon_loss(m) * nb;
        ev->total += nb;
        if (cb) {
            caps_progress p = {0, bi + 1, batches, loss / ev->total, caps_seconds() - start,
                               ev->total, 0.0};
            if (cb(&p, ctx)) break;
        }
    }
    if (ev->total > 0) {
        ev->loss = loss / ev->total;
        ev->margin = margin / ev->total;
        ev->recon = recon / ev->total;
    }
    ev->seconds = caps_seconds() - start;
    free(idx), free(labels), free(zero), free(x);
    if (rc) caps_eval_free(ev);
    return rc;
}
