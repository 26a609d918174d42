/*
 * bytes.h: little-endian fields of the model files (checkpoint.c for capsule networks,
 * cnn_file.c for the baseline CNN): put_* writes a value at *p and advances it, get_* reads
 * one. Byte by byte, so the files are the same on any host and any alignment.
 */
#ifndef CAPS_BYTES_H
#define CAPS_BYTES_H

#include <stdint.h>
#include <string.h>

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

#endif /* CAPS_BYTES_H */
