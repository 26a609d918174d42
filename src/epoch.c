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
