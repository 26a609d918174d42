/*
 * cnn_train.c: the training epoch and the evaluation of the baseline CNN (cnn.h), the
 * capsule network's (train.c) for the CNN: Adam on the batch-mean cross-entropy, the
 * learning rate decayed per epoch (caps_train_lr), the images reshuffled every epoch and
 * shifted at random by up to max_shift pixels, all drawn as train.c draws them (epoch.h),
 * so the same seed gives both networks the same batches.
 *
 * Every random choice derives from the run's seed, the epoch and the batch number (dropout's
 * mask too), never from state carried between batches: a run stopped after any batch
 * resumes exactly where it stopped, bit for bit.
 *
 * Dimension letters: B images a batch, P = C*S*S pixels an image, J classes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "epoch.h"
#include "util.h"

/* The data must have the shape the network was built for. */
static int check_shape(const caps_cnn *m, const caps_dataset *ds, caps_error *err) {
    const caps_cnn_config *c = &m->cfg;
    return caps_epoch_check_data(ds, c->image_size, c->in_channels, c->num_classes, err);
}

/* Dropout's seed for batch bi of epoch: its own function of (seed, epoch, batch); the
 * forward pass draws it on a stream of its own (cnn.c), apart from the shifts'. */
static uint64_t dropout_seed(uint64_t seed, int epoch, int bi) {
    return seed + ((uint64_t)epoch << 32) + (uint64_t)bi;
}

int caps_cnn_train_epoch(caps_cnn *m, caps_train_state *st, const caps_dataset *train,
                         caps_epoch_stats *out, caps_progress_fn cb, void *ctx, caps_error *err) {
    memset(out, 0, sizeof *out);
    int rc = check_shape(m, train, err);
    if (rc) return rc;
    int B = st->batch;
    if (B < 1 || B > m->max_batch)
        return caps_fail(err, CAPS_ERR_ARG, "batch size %d exceeds the model's (expected 1..%d)",
                         B, m->max_batch);
    int n = st->limit > 0 && st->limit < train->count ? st->limit : train->count;
    int batches = (n + B - 1) / B;
    if (st->batch_in_epoch < 0 || st->batch_in_epoch > batches)
        return caps_fail(err, CAPS_ERR_ARG, "batch position out of range (expected 0..%d, got %lld)",
                         batches, (long long)st->batch_in_epoch);
    size_t P = (size_t)m->cfg.in_channels * m->cfg.image_size * m->cfg.image_size;
    int *order = malloc((size_t)n * sizeof(int));
    int *labels = malloc((size_t)B * sizeof(int)), *shift = malloc(2 * (size_t)B * sizeof(int));
    float *x = caps_alloc((size_t)B * P, sizeof(float)); /* [B][P] */
    if (!order || !labels || !shift || !x) {
        free(order), free(labels), free(shift), free(x);
        return caps_fail(err, CAPS_ERR_MEMORY, "out of memory for a batch of %d images", B);
    }
    caps_epoch_order(order, n, st->seed, st->epoch);
    float lr = caps_train_lr(st, st->epoch);
    caps_adam hp = {lr, st->beta1, st->beta2, st->adam_eps};

    double start = caps_seconds() - st->epoch_seconds;
    for (int bi = (int)st->batch_in_epoch; bi < batches; bi++) {
        int nb = n - bi * B < B ? n - bi * B : B;
        caps_rng r;
        caps_epoch_shift_rng(&r, st->seed, st->epoch, bi);
        caps_draw_shifts(shift, shift + B, nb, st->max_shift, &r);
        caps_make_batch_shifted(x, labels, train, order + (size_t)bi * B, shift, shift + B, nb);
        caps_cnn_zero_grad(m);
        float loss = caps_cnn_forward(m, x, labels, nb, 1, dropout_seed(st->seed, st->epoch, bi));
        if (!isfinite(loss)) {
            rc = caps_fail(err, CAPS_ERR_NUMERIC,
                           "training: loss became %s at epoch %d, batch %d (Adam step %lld)",
                           isnan(loss) ? "NaN" : "infinite", st->epoch + 1, bi + 1,
                           (long long)m->adam_t + 1);
            caps_hint(err, "lower the learning rate (--lr); the weights before this step are kept");
            break;
        }
        caps_cnn_backward(m);
        caps_cnn_adam_step(m, &hp, lr);
        double sum = (double)loss * nb;
        st->epoch_loss_sum += sum;
        st->epoch_margin_sum += sum; /* the log's margin column: the same cross-entropy */
        st->epoch_images += nb;
        st->epoch_seconds = caps_seconds() - start;
        st->batch_in_epoch = bi + 1;
        if (cb) {
            caps_progress p = {st->epoch, bi + 1, batches, st->epoch_loss_sum / st->epoch_images,
                               st->epoch_seconds, st->epoch_images, loss};
            if (cb(&p, ctx) && bi + 1 < batches) {
                out->stopped = 1;
                break;
            }
        }
    }
    caps_epoch_close(st, out, rc == CAPS_OK && !out->stopped); /* recon: no sum, 0 */
    free(order), free(labels), free(shift), free(x);
    return rc;
}

int caps_cnn_evaluate(caps_cnn *m, const caps_dataset *ds, int limit, const caps_affine *affine,
                      caps_eval *ev, caps_progress_fn cb, void *ctx, caps_error *err) {
    memset(ev, 0, sizeof *ev);
    int rc = check_shape(m, ds, err);
    if (rc) return rc;
    int J = m->cfg.num_classes, B = m->max_batch;
    int n = limit > 0 && limit < ds->count ? limit : ds->count;
    size_t P = (size_t)m->cfg.in_channels * m->cfg.image_size * m->cfg.image_size;
    ev->num_classes = J;
    ev->class_total = calloc((size_t)J, sizeof(int));
    ev->class_correct = calloc((size_t)J, sizeof(int));
    ev->confusion = calloc((size_t)J * J, sizeof(int));
    /* (+1: never a calloc of 0 for an empty data set) */
    ev->pred = calloc((size_t)n + 1, sizeof(int));
    ev->score = calloc((size_t)n + 1, sizeof(float));
    ev->lengths = calloc(((size_t)n + 1) * J, sizeof(float));
    int *idx = malloc((size_t)B * sizeof(int)), *labels = malloc((size_t)B * sizeof(int));
    float *x = caps_alloc((size_t)B * P, sizeof(float)); /* [B][P] */
    if (!ev->class_total || !ev->class_correct || !ev->confusion || !ev->pred || !ev->score ||
        !ev->lengths || !idx || !labels || !x) {
        free(idx), free(labels), free(x);
        caps_eval_free(ev);
        return caps_fail(err, CAPS_ERR_MEMORY, "out of memory for evaluation");
    }
    double start = caps_seconds(), loss = 0.0;
    int batches = (n + B - 1) / B;
    for (int bi = 0; bi < batches; bi++) {
        int nb = n - bi * B < B ? n - bi * B : B;
        for (int b = 0; b < nb; b++) idx[b] = bi * B + b;
        caps_make_batch_affine(x, labels, ds, idx, nb, affine);
        float batch_loss = caps_cnn_forward(m, x, labels, nb, 0, 0);
        const float *prob = m->a.prob; /* [B][J] */
        for (int b = 0; b < nb; b++) {
            int pred = m->pred[b];
            ev->pred[idx[b]] = pred;
            ev->score[idx[b]] = prob[(size_t)b * J + pred];
            memcpy(ev->lengths + (size_t)idx[b] * J, prob + (size_t)b * J,
                   (size_t)J * sizeof(float));
            ev->class_total[labels[b]]++;
            ev->confusion[labels[b] * J + pred]++;
            if (pred == labels[b]) {
                ev->class_correct[labels[b]]++;
                ev->correct++;
            }
        }
        loss += (double)batch_loss * nb;
        ev->total += nb;
        if (cb) {
            caps_progress p = {0, bi + 1, batches, loss / ev->total, caps_seconds() - start,
                               ev->total, 0.0};
            if (cb(&p, ctx)) break;
        }
    }
    if (ev->total > 0) ev->loss = ev->margin = loss / ev->total;
    ev->seconds = caps_seconds() - start;
    free(idx), free(labels), free(x);
    return CAPS_OK;
}
