/*
 * rng.c: PCG32 (M. O'Neill, "PCG: A Family of Simple Fast Space-Efficient Statistically
 * Good Algorithms for Random Number Generation", 2014), the XSH-RR output on a 64-bit LCG.
 * Every random choice of capsnet (weights, shuffles, shifts) comes from here, so a seed
 * gives the same run on every machine; rand() would not.
 */
#include <math.h>

#include "capsnet.h"

#define PCG_MULT 6364136223846793005ULL

uint32_t caps_rng_u32(caps_rng *r) {
    uint64_t old = r->state;
    r->state = old * PCG_MULT + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31u));
}

/* stream selects one of 2^63 independent sequences (the increment must be odd). */
void caps_rng_seed(caps_rng *r, uint64_t seed, uint64_t stream) {
    r->state = 0u;
    r->inc = (stream << 1u) | 1u;
    caps_rng_u32(r);
    r->state += seed;
    caps_rng_u32(r);
}

/* Lemire's rejection keeps every value of [0, n) equally likely (plain % would not). */
uint32_t caps_rng_below(caps_rng *r, uint32_t n) {
    if (n == 0) return 0;
    uint32_t threshold = (uint32_t)(-n) % n;
    for (;;) {
        uint32_t x = caps_rng_u32(r);
        if (x >= threshold) return x % n;
    }
}

/* 24 random bits: every float in [0, 1) of the form k / 2^24, never 1.0. */
float caps_rng_uniform(caps_rng *r) {
    return (float)(caps_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

/* Box-Muller; one value per call keeps the generator state a single struct. */
float caps_rng_normal(caps_rng *r) {
    double u1 = ((double)(caps_rng_u32(r) >> 8) + 1.0) / 16777217.0; /* (0, 1]: log is finite */
    double u2 = (double)caps_rng_u32(r) / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
