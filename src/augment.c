/*
 * augment.c: turns stored images into a batch of network inputs, with the paper's only
 * augmentation (section 5): "shifted by up to 2 pixels in each direction with zero padding".
 *
 *   x[b][c][y][x] = image[idx[b]][c][y - dy][x - dx] / 255   (0 outside the image)
 *
 * (the division correctly rounded, as caps_unit_sample in util.h: bit for bit what a PNG of
 * the same digit gives)
 *
 * with dx, dy uniform in [-max_shift, max_shift] per image. Pixels are scaled to [0, 1],
 * the range of the decoder's sigmoid, so the reconstruction target is the shifted image.
 *
 * For the robustness test (capsnet test --affine), images are also rotated and translated
 * with bilinear interpolation (caps_affine_*).
 *
 * Dimension letters: B images, C channels, H x W pixels.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "capsnet.h"
#include "util.h"

/* out [C][H][W] = in shifted right by dx and down by dy, zero fill, scaled to [0, 1]. */
static void shift_image(float *out, const uint8_t *in, int C, int H, int W, int dx, int dy) {
    memset(out, 0, (size_t)C * H * W * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++) {
            int sy = y - dy;
            if (sy < 0 || sy >= H) continue;
            for (int x = 0; x < W; x++) {
                int sx = x - dx;
                if (sx < 0 || sx >= W) continue;
                out[((size_t)c * H + y) * W + x] =
                    caps_unit_sample(in[((size_t)c * H + sy) * W + sx]);
            }
        }
}

void caps_draw_shifts(int *dx, int *dy, int B, int max_shift, caps_rng *rng) {
    CAPS_ASSERT(max_shift >= 0);
    for (int b = 0; b < B; b++) {
        dx[b] = dy[b] = 0;
        if (max_shift > 0) {
            uint32_t span = (uint32_t)(2 * max_shift + 1);
            dx[b] = (int)caps_rng_below(rng, span) - max_shift;
            dy[b] = (int)caps_rng_below(rng, span) - max_shift;
        }
    }
}

void caps_make_batch_shifted(float *x, int *labels, const caps_dataset *ds, const int *idx,
                             const int *dx, const int *dy, int B) {
    int C = ds->channels, H = ds->rows, W = ds->cols;
    size_t P = (size_t)C * H * W;
    for (int b = 0; b < B; b++) {
        CAPS_ASSERT(idx[b] >= 0 && idx[b] < ds->count);
        int sx = dx ? dx[b] : 0, sy = dy ? dy[b] : 0;
        CAPS_ASSERT(sx > -W && sx < W && sy > -H && sy < H);
        shift_image(x + (size_t)b * P, ds->images + (size_t)idx[b] * P, C, H, W, sx, sy);
        labels[b] = ds->labels[idx[b]];
    }
}

/* The shifts of all images are drawn first, dx then dy per image: the same sequence as a
 * backend that builds the batch from them elsewhere (a GPU's copy of the data). */
void caps_make_batch(float *x, int *labels, const caps_dataset *ds, const int *idx, int B,
                     int max_shift, caps_rng *rng) {
    CAPS_ASSERT(max_shift >= 0 && max_shift < ds->rows && max_shift < ds->cols);
    int *d = malloc(2 * (size_t)(B > 0 ? B : 1) * sizeof(int));
    CAPS_ASSERT(d); /* two ints an image */
    caps_draw_shifts(d, d + B, B, max_shift, rng);
    caps_make_batch_shifted(x, labels, ds, idx, d, d + B, B);
    free(d);
}

/* ------------------------------------------------------------------------ affine */

/* The generator's stream for affine draws, apart from training's shuffles and shifts. */
#define RNG_STREAM_AFFINE 0x7u

int caps_affine_parse(caps_affine *a, const char *spec, uint64_t seed, caps_error *err) {
    char *end;
    double deg = strtod(spec, &end);
    if (end == spec || *end != ',')
        return caps_fail(err, CAPS_ERR_ARG, "affine: bad value '%s' (expected DEG,FRAC, e.g. 30,0.1)",
                         spec);
    const char *second = end + 1;
    double frac = strtod(second, &end);
    if (end == second || *end || !isfinite(deg) || !isfinite(frac) || deg < 0 || deg > 180 ||
        frac < 0 || frac > 1)
        return caps_fail(err, CAPS_ERR_ARG,
                         "affine: bad value '%s' (expected DEG in 0..180 and FRAC in 0..1, e.g. "
                         "30,0.1)", spec);
    a->max_degrees = (float)deg;
    a->max_shift_frac = (float)frac;
    a->seed = seed;
    return CAPS_OK;
}

void caps_affine_draw(const caps_affine *a, int k, int H, int W, float *degrees, float *tx,
                      float *ty) {
    caps_rng r;
    caps_rng_seed(&r, a->seed + (uint64_t)k * 0x9e3779b97f4a7c15ULL, RNG_STREAM_AFFINE);
    *degrees = (2.0f * caps_rng_uniform(&r) - 1.0f) * a->max_degrees;
    *tx = (2.0f * caps_rng_uniform(&r) - 1.0f) * a->max_shift_frac * W;
    *ty = (2.0f * caps_rng_uniform(&r) - 1.0f) * a->max_shift_frac * H;
}

/* Each output pixel (x, y) samples the input at the inverse transform of its position:
 *   p = centre + R(-angle) ((x, y) - centre - t)
 * bilinearly from the four pixels around p, pixels outside the image counting as 0. */
void caps_affine_image(float *out, const float *in, int C, int H, int W, float degrees,
                       float tx, float ty) {
    double a = degrees * 3.14159265358979323846 / 180.0, ca = cos(a), sa = sin(a);
    double cx = (W - 1) * 0.5, cy = (H - 1) * 0.5;
    for (int c = 0; c < C; c++) {
        const float *src = in + (size_t)c * H * W;
        float *dst = out + (size_t)c * H * W;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double dx = x - cx - tx, dy = y - cy - ty;
                double px = cx + ca * dx + sa * dy, py = cy - sa * dx + ca * dy;
                double fx = floor(px), fy = floor(py);
                int x0 = (int)fx, y0 = (int)fy;
                double wx = px - fx, wy = py - fy, acc = 0.0;
                for (int k = 0; k < 4; k++) {
                    int xi = x0 + (k & 1), yi = y0 + (k >> 1);
                    if (xi < 0 || xi >= W || yi < 0 || yi >= H) continue;
                    double w = ((k & 1) ? wx : 1.0 - wx) * ((k >> 1) ? wy : 1.0 - wy);
                    acc += w * src[(size_t)yi * W + xi];
                }
                dst[(size_t)y * W + x] = (float)acc;
            }
    }
}

void caps_make_batch_affine(float *x, int *labels, const caps_dataset *ds, const int *idx,
                            int B, const caps_affine *affine) {
    caps_make_batch_shifted(x, labels, ds, idx, NULL, NULL, B);
    if (!affine) return;
    int C = ds->channels, H = ds->rows, W = ds->cols;
    size_t P = (size_t)C * H * W;
#pragma omp parallel
    {
        float *tmp = malloc(P * sizeof(float));
        CAPS_ASSERT(tmp); /* one image */
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            float deg, tx, ty;
            caps_affine_draw(affine, idx[b], H, W, &deg, &tx, &ty);
            memcpy(tmp, x + (size_t)b * P, P * sizeof(float));
            caps_affine_image(x + (size_t)b * P, tmp, C, H, W, deg, tx, ty);
        }
        free(tmp);
    }
}
