/*
 * bytes.h: little-endian fields of the model files (checkpoint.c for capsule networks,
 * cnn_file.c for the baseline CNN): put_* writes a value at *p and advances it, get_* reads
 * one. Byte by byte, so the files are the same on any host and any alignment.
 */
#ifndef CAPS_BYTES_H
#define CAPS_BYTES_H

#include <stdint.h>
#include <string.h>

#include "capsnet.h"

static inline void put_u32(uint8_t **p, uint32_t v) {
    for (int k = 0; k < 4; k++) (*p)[k] = (uint8_t)(v >> (8 * k));
    *p += 4;
}

static inline void put_u64(uint8_t **p, uint64_t v) {
    for (int k = 0; k < 8; k++) (*p)[k] = (uint8_t)(v >> (8 * k));
    *p += 8;
}

static inline void put_i32(uint8_t **p, int32_t v) { put_u32(p, (uint32_t)v); }
static inline void put_i64(uint8_t **p, int64_t v) { put_u64(p, (uint64_t)v); }

static inline void put_f32(uint8_t **p, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    put_u32(p, u);
}

static inline void put_f64(uint8_t **p, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    put_u64(p, u);
}

static inline uint32_t get_u32(const uint8_t **p) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) v |= (uint32_t)(*p)[k] << (8 * k);
    *p += 4;
    return v;
}

static inline uint64_t get_u64(const uint8_t **p) {
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) v |= (uint64_t)(*p)[k] << (8 * k);
    *p += 8;
    return v;
}

/* Two's complement back to signed without the implementation-defined conversion of an
 * out-of-range unsigned value. */
static inline int32_t get_i32(const uint8_t **p) {
    uint32_t u = get_u32(p);
    return u <= INT32_MAX ? (int32_t)u : (int32_t)(u - 0x80000000u) - INT32_MAX - 1;
}

static inline int64_t get_i64(const uint8_t **p) {
    uint64_t u = get_u64(p);
    return u <= INT64_MAX ? (int64_t)u : (int64_t)(u - 0x8000000000000000u) - INT64_MAX - 1;
}

static inline float get_f32(const uint8_t **p) {
    uint32_t u = get_u32(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline double get_f64(const uint8_t **p) {
    uint64_t u = get_u64(p);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* The training state as both kinds of model file keep it (docs/model-format.md, offsets 72
 * to 175 of a capsule file): the recipe, then where the run stands, Adam's step count among
 * them, then the epoch's sums. */
static inline void put_train_state(uint8_t **p, const caps_train_state *st, int64_t adam_t) {
    put_f32(p, st->lr);
    put_f32(p, st->lr_decay);
    put_f32(p, st->beta1);
    put_f32(p, st->beta2);
    put_f32(p, st->adam_eps);
    put_f32(p, st->recon_weight);
    put_i32(p, st->batch);
    put_i32(p, st->max_shift);
    put_i32(p, st->limit);
    put_u64(p, st->seed);
    put_i32(p, st->epoch);
    put_i64(p, st->batch_in_epoch);
    put_i64(p, adam_t);
    put_f64(p, st->epoch_loss_sum);
    put_f64(p, st->epoch_margin_sum);
    put_f64(p, st->epoch_recon_sum);
    put_f64(p, st->epoch_seconds);
    put_i64(p, st->epoch_images);
}

static inline void get_train_state(const uint8_t **p, caps_train_state *st, int64_t *adam_t) {
    st->lr = get_f32(p);
    st->lr_decay = get_f32(p);
    st->beta1 = get_f32(p);
    st->beta2 = get_f32(p);
    st->adam_eps = get_f32(p);
    st->recon_weight = get_f32(p);
    st->batch = get_i32(p);
    st->max_shift = get_i32(p);
    st->limit = get_i32(p);
    st->seed = get_u64(p);
    st->epoch = get_i32(p);
    st->batch_in_epoch = get_i64(p);
    *adam_t = get_i64(p);
    st->epoch_loss_sum = get_f64(p);
    st->epoch_margin_sum = get_f64(p);
    st->epoch_recon_sum = get_f64(p);
    st->epoch_seconds = get_f64(p);
    st->epoch_images = get_i64(p);
}

#endif /* CAPS_BYTES_H */
