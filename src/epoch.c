/*
 * epoch.c: the image order and the shift generator of a training epoch (epoch.h), shared by
 * the capsule network (train.c) and the baseline CNN (cnn_train.c).
 */
#include "epoch.h"
#include "util.h"

/* Streams of the generator, so shuffles and shifts never share a sequence. */
#define RNG_STREAM_SHUFFLE 0x5u
#define RNG_STREAM_SHIFT 0x6u

void caps_epoch_order(int *order, int n, uint64_t seed, int epoch) {
    caps_rng r;
    caps_rng_seed(&r, seed + (uint64_t)epoch * 0x9e3779b97f4a7c15ULL, RNG_STREAM_SHUFFLE);
    for (int k = 0; k < n; k++) order[k] = k;
    for (int k = n - 1; k > 0; k--) {
        int j = (int)caps_rng_below(&r, (uint32_t)k + 1);
        int t = order[k];
        order[k] = order[j];
        order[j] = t;
    }
}

void caps_epoch_shift_rng(caps_rng *r, uint64_t seed, int epoch, int bi) {
    caps_rng_seed(r, seed + ((uint64_t)epoch << 32) + (uint64_t)bi, RNG_STREAM_SHIFT);
}

int caps_epoch_check_data(const caps_dataset *ds, int S, int C, int J, caps_error *err) {
    if (ds->rows != S || ds->cols != S || ds->channels != C)
        return caps_fail(err, CAPS_ERR_ARG,
                         "data: image shape differs from the model's (expected %dx%dx%d, got "
                         "%dx%dx%d)", S, S, C, ds->rows, ds->cols, ds->channels);
    for (int k = 0; k < ds->count; k++)
        if (ds->labels[k] >= J)
            return caps_fail(err, CAPS_ERR_ARG,
                             "data: label %d of image %d out of range (expected 0..%d)",
                             ds->labels[k], k, J - 1);
    return CAPS_OK;
}

void caps_epoch_close(caps_train_state *st, caps_epoch_stats *out, int finished) {
    int64_t images = st->epoch_images;
    out->images = images;
    out->seconds = st->epoch_seconds;
    if (images > 0) {
        out->loss = st->epoch_loss_sum / images;
        out->margin = st->epoch_margin_sum / images;
        out->recon = st->epoch_recon_sum / images;
    }
    if (!finished) return;
    st->epoch++;
    st->batch_in_epoch = 0;
    st->epoch_loss_sum = st->epoch_margin_sum = st->epoch_recon_sum = 0.0;
    st->epoch_seconds = 0.0;
    st->epoch_images = 0;
}
