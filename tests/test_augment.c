/*
 * test_augment.c: the images the network sees. Batches scale pixels to [0, 1] and shift
 * each image by up to max_shift pixels with zero fill (the paper's augmentation); the
 * affine transforms of the robustness test rotate about the centre and translate with
 * bilinear interpolation, the same draw for an image whatever the batch.
 */
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "test.h"

enum { N = 6, S = 9 };

static caps_dataset pattern_set(void) {
    caps_dataset ds = {.count = N, .channels = 1, .rows = S, .cols = S,
                       .images = malloc(N * S * S), .labels = malloc(N)};
    caps_rng r;
    caps_rng_seed(&r, 3, 3);
    for (int k = 0; k < N * S * S; k++) ds.images[k] = (uint8_t)caps_rng_below(&r, 256);
    for (int k = 0; k < N; k++) ds.labels[k] = (uint8_t)k;
    return ds;
}

/* out equals in shifted by (dx, dy) with zero fill, pixels / 255. */
static int is_shift(const float *out, const uint8_t *in, int dx, int dy) {
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int sx = x - dx, sy = y - dy;
            float want = sx < 0 || sx >= S || sy < 0 || sy >= S ? 0.0f : in[sy * S + sx] / 255.0f;
            if (!test_close(out[y * S + x], want, 1e-6, 0)) return 0;
        }
    return 1;
}

TEST(batches_scale_and_shift) {
    caps_dataset ds = pattern_set();
    int idx[N] = {5, 0, 3, 1, 4, 2}, labels[N];
    float x[N * S * S];
    caps_make_batch(x, labels, &ds, idx, N, 0, NULL);
    for (int b = 0; b < N; b++) {
        EXPECT(labels[b] == idx[b], "label %d for image %d", labels[b], idx[b]);
        EXPECT(is_shift(x + b * S * S, ds.images + idx[b] * S * S, 0, 0), "image %d not copied",
               idx[b]);
    }
    caps_rng r;
    caps_rng_seed(&r, 11, 0);
    int seen[5][5] = {{0}}, bad = 0;
    for (int rep = 0; rep < 60; rep++) {
        caps_make_batch(x, labels, &ds, idx, N, 2, &r);
        for (int b = 0; b < N; b++) {
            int found = 0;
            for (int dy = -2; dy <= 2 && !found; dy++)
                for (int dx = -2; dx <= 2 && !found; dx++)
                    if (is_shift(x + b * S * S, ds.images + idx[b] * S * S, dx, dy)) {
                        found = 1;
                        seen[dy + 2][dx + 2]++;
                    }
            bad += !found;
        }
    }
    EXPECT(bad == 0, "%d images were not a shift of at most 2 pixels", bad);
    int used = 0;
    for (int k = 0; k < 25; k++) used += seen[k / 5][k % 5] > 0;
    EXPECT(used == 25, "only %d of the 25 shifts occurred in 360 draws", used);
    caps_dataset_free(&ds);
}

TEST(affine_identity_rotation_translation) {
    float in[S * S], out[S * S];
    for (int k = 0; k < S * S; k++) in[k] = (float)(k % 7) / 7.0f + (k == 3 ? 0.5f : 0.0f);
    caps_affine_image(out, in, 1, S, S, 0.0f, 0.0f, 0.0f);
    EXPECT(memcmp(in, out, sizeof in) == 0, "the identity changed the image");
    /* 90 degrees clockwise on screen (y down): (x, y) -> (c - (y - c), c + (x - c))... check
     * one pixel: a lone bright pixel at (x=6, y=4) of a 9x9 image (centre 4) moves to
     * (x=4, y=6). */
    float dot[S * S] = {0};
    dot[4 * S + 6] = 1.0f;
    caps_affine_image(out, dot, 1, S, S, 90.0f, 0.0f, 0.0f);
    EXPECT(test_close(out[6 * S + 4], 1.0, 1e-5, 1e-6) && test_close(out[4 * S + 6], 0.0, 0, 1e-6),
           "rotated dot: %g at (4,6), %g at (6,4)", out[6 * S + 4], out[4 * S + 6]);
    /* An integer translation is a shift with zero fill. */
    caps_affine_image(out, in, 1, S, S, 0.0f, 3.0f, -2.0f);
    int bad = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int sx = x - 3, sy = y + 2;
            float want = sx < 0 || sx >= S || sy < 0 || sy >= S ? 0.0f : in[sy * S + sx];
            bad += !test_close(out[y * S + x], want, 1e-6, 1e-7);
        }
    EXPECT(bad == 0, "%d pixels of the (3, -2) translation wrong", bad);
    /* Half a pixel: bilinear, the mean of the two neighbours. */
    caps_affine_image(out, in, 1, S, S, 0.0f, 0.5f, 0.0f);
    EXPECT(test_close(out[2 * S + 4], 0.5 * (in[2 * S + 3] + in[2 * S + 4]), 1e-6, 1e-7),
           "half-pixel shift gave %g", out[2 * S + 4]);
}

TEST(affine_draws_are_seeded_and_bounded) {
    caps_affine a;
    caps_error err;
    EXPECT(caps_affine_parse(&a, "30,0.1", 4, &err) == CAPS_OK && a.max_degrees == 30.0f &&
               test_close(a.max_shift_frac, 0.1, 1e-7, 0),
           "parse 30,0.1: %s", err.msg);
    EXPECT(caps_affine_parse(&a, "30", 4, &err) == CAPS_ERR_ARG && strstr(err.msg, "DEG,FRAC"),
           "parse 30: %s", err.msg);
    EXPECT(caps_affine_parse(&a, "30,2", 4, &err) == CAPS_ERR_ARG, "FRAC 2 accepted");
    EXPECT(caps_affine_parse(&a, "-5,0.1", 4, &err) == CAPS_ERR_ARG, "negative angle accepted");
    caps_affine_parse(&a, "30,0.1", 4, &err);
    float d1, x1, y1, d2, x2, y2;
    int out_of_range = 0, differ = 0;
    for (int k = 0; k < 200; k++) {
        caps_affine_draw(&a, k, 28, 28, &d1, &x1, &y1);
        caps_affine_draw(&a, k, 28, 28, &d2, &x2, &y2);
        EXPECT(d1 == d2 && x1 == x2 && y1 == y2, "image %d drawn twice differently", k);
        out_of_range += fabsf(d1) > 30.0f || fabsf(x1) > 2.8f || fabsf(y1) > 2.8f;
        caps_affine_draw(&a, k + 1, 28, 28, &d2, &x2, &y2);
        differ += d1 != d2;
    }
    EXPECT(out_of_range == 0, "%d draws out of range", out_of_range);
    EXPECT(differ == 200, "consecutive images share draws %d times", 200 - differ);
    /* Batches: the transform of an image depends on its index, not its place in a batch. */
    caps_dataset ds = pattern_set();
    int idx_a[2] = {1, 4}, idx_b[3] = {4, 2, 1}, labels[3];
    float xa[2 * S * S], xb[3 * S * S];
    caps_make_batch_affine(xa, labels, &ds, idx_a, 2, &a);
    caps_make_batch_affine(xb, labels, &ds, idx_b, 3, &a);
    EXPECT(memcmp(xa, xb + 2 * S * S, S * S * sizeof(float)) == 0 &&
               memcmp(xa + S * S, xb, S * S * sizeof(float)) == 0,
           "an image's transform depends on its batch");
    caps_dataset_free(&ds);
}

int main(void) {
    RUN(batches_scale_and_shift);
    RUN(affine_identity_rotation_translation);
    RUN(affine_draws_are_seeded_and_bounded);
    return TEST_SUMMARY();
}
