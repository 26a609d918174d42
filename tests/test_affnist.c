/*
 * test_affnist.c: the data of the paper's affNIST experiment (src/affnist.c). Padding puts
 * each image at the centre of a black canvas; an affNIST-like set transforms each image by
 * its own draw from (seed, index), keeps all of its ink on the canvas, scales its ink by
 * about the transform's area, and is a plain translation when the transform is one. The
 * drawn parameters stay within their ranges and reach both ends of them.
 *
 * The digits are made here: thick strokes between random points of the central 20x20 box of
 * a 28x28 image, where MNIST's digits lie.
 */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "util.h"

enum { SIDE = 28, CANVAS = 40, DIGITS = 64 };

/* A stroke of width ~3 from (ax, ay) to (bx, by), drawn with a soft edge into img [SIDE^2]. */
static void stroke(uint8_t *img, double ax, double ay, double bx, double by) {
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            double vx = bx - ax, vy = by - ay, len2 = vx * vx + vy * vy;
            double s = len2 > 0 ? ((x - ax) * vx + (y - ay) * vy) / len2 : 0.0;
            s = s < 0 ? 0 : s > 1 ? 1 : s;
            double dx = x - (ax + s * vx), dy = y - (ay + s * vy), d = sqrt(dx * dx + dy * dy);
            double v = d < 1.0 ? 255.0 : d < 2.0 ? 255.0 * (2.0 - d) : 0.0;
            if (v > img[y * SIDE + x]) img[y * SIDE + x] = (uint8_t)v;
        }
}

/* n digit-like 28x28 images, labels k % 10; the last one a full 20x20 square outline, the
 * widest and tallest MNIST digit there is. */
static caps_dataset digit_set(int n) {
    caps_dataset ds = {.count = n, .channels = 1, .rows = SIDE, .cols = SIDE,
                       .images = calloc((size_t)n, SIDE * SIDE), .labels = malloc((size_t)n)};
    CAPS_ASSERT(ds.images && ds.labels);
    caps_rng r;
    caps_rng_seed(&r, 17, 1);
    for (int k = 0; k < n; k++) {
        uint8_t *img = ds.images + (size_t)k * SIDE * SIDE;
        ds.labels[k] = (uint8_t)(k % 10);
        if (k == n - 1) {
            stroke(img, 5, 5, 22, 5), stroke(img, 22, 5, 22, 22);
            stroke(img, 22, 22, 5, 22), stroke(img, 5, 22, 5, 5);
            continue;
        }
        double px = 5 + 17 * caps_rng_uniform(&r), py = 5 + 17 * caps_rng_uniform(&r);
        for (int s = 0; s < 3; s++) {
            double qx = 5 + 17 * caps_rng_uniform(&r), qy = 5 + 17 * caps_rng_uniform(&r);
            stroke(img, px, py, qx, qy);
            px = qx, py = qy;
        }
    }
    return ds;
}

static double ink(const uint8_t *img, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += img[i];
    return s;
}

/* |det A| of a transform: the factor by which it scales areas. */
static double area_factor(const caps_affnist_transform *t) {
    return (double)t->scale_x * t->scale_y; /* rotation and shear keep areas */
}

TEST(pad_centres_and_zero_fills) {
    caps_dataset ds = digit_set(5), orig = ds;
    orig.images = malloc(5 * SIDE * SIDE);
    memcpy(orig.images, ds.images, 5 * SIDE * SIDE);
    caps_error err;
    EXPECT(caps_dataset_pad(&ds, 27, &err) == CAPS_ERR_ARG &&
               strstr(err.msg, "a 27x27 canvas is smaller than the 28x28 images (expected a "
                               "side of at least 28)"),
           "27 < 28 accepted or unclear: %s", err.msg);
    EXPECT(ds.rows == SIDE && ds.cols == SIDE &&
               memcmp(ds.images, orig.images, 5 * SIDE * SIDE) == 0,
           "a refused pad changed the data set");
    EXPECT(caps_dataset_pad(&ds, SIDE, &err) == CAPS_OK && ds.rows == SIDE &&
               memcmp(ds.images, orig.images, 5 * SIDE * SIDE) == 0,
           "padding to the same size changed the images");
    EXPECT(caps_dataset_pad(&ds, CANVAS, &err) == CAPS_OK, "pad 40: %s", err.msg);
    EXPECT(ds.rows == CANVAS && ds.cols == CANVAS && ds.channels == 1 && ds.count == 5,
           "shape %dx%dx%d, %d images", ds.channels, ds.rows, ds.cols, ds.count);
    int bad = 0;
    for (int k = 0; k < 5; k++)
        for (int y = 0; y < CANVAS; y++)
            for (int x = 0; x < CANVAS; x++) {
                int sy = y - 6, sx = x - 6; /* affNIST's "just centred": 6 pixels each side */
                int want = sx < 0 || sx >= SIDE || sy < 0 || sy >= SIDE
                               ? 0 : orig.images[((size_t)k * SIDE + sy) * SIDE + sx];
                bad += ds.images[((size_t)k * CANVAS + y) * CANVAS + x] != want;
            }
    EXPECT(bad == 0, "%d pixels off the centred copy with black around", bad);
    EXPECT(ds.labels[3] == 3, "labels changed");
    caps_dataset_free(&ds);
    free(orig.images); /* its labels were ds's */

    /* Colour, not square, an odd margin: every channel moved alike, the extra pixel right
     * and below. */
    enum { C = 3, H = 3, W = 4, S = 6 };
    uint8_t px[C * H * W];
    for (int i = 0; i < C * H * W; i++) px[i] = (uint8_t)(i + 1);
    caps_dataset col = {.count = 1, .channels = C, .rows = H, .cols = W,
                        .images = malloc(sizeof px), .labels = calloc(1, 1)};
    memcpy(col.images, px, sizeof px);
    EXPECT(caps_dataset_pad(&col, S, &err) == CAPS_OK && col.rows == S && col.cols == S &&
               col.channels == C, "colour pad: %s", err.msg);
    bad = 0;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int sy = y - 1, sx = x - 1; /* (6 - 3) / 2 = 1 above, (6 - 4) / 2 = 1 left */
                int want = sx < 0 || sx >= W || sy < 0 || sy >= H ? 0 : px[(c * H + sy) * W + sx];
                bad += col.images[(c * S + y) * S + x] != want;
            }
    EXPECT(bad == 0, "%d colour pixels misplaced", bad);
    caps_dataset_free(&col);
}

TEST(affnist_is_deterministic_per_seed_and_index) {
    caps_dataset src = digit_set(DIGITS);
    src.num_names = 10;
    src.class_names = calloc(10, sizeof(char *));
    for (int j = 0; j < 10; j++) {
        src.class_names[j] = malloc(16); /* room for any int, as -Wformat-truncation asks */
        snprintf(src.class_names[j], 16, "d%d", j);
    }
    caps_dataset a, b, half, other;
    caps_error err;
    EXPECT(caps_dataset_affnist(&a, &src, CANVAS, 5, &err) == CAPS_OK, "%s", err.msg);
    EXPECT(caps_dataset_affnist(&b, &src, CANVAS, 5, &err) == CAPS_OK, "%s", err.msg);
    caps_dataset first = src;
    first.count = DIGITS / 2; /* fewer images: the same draws for those made */
    EXPECT(caps_dataset_affnist(&half, &first, CANVAS, 5, &err) == CAPS_OK, "%s", err.msg);
    EXPECT(caps_dataset_affnist(&other, &src, CANVAS, 6, &err) == CAPS_OK, "%s", err.msg);
    size_t P = CANVAS * CANVAS;
    EXPECT(a.count == DIGITS && a.rows == CANVAS && a.cols == CANVAS && a.channels == 1,
           "shape %d x %dx%dx%d", a.count, a.channels, a.rows, a.cols);
    EXPECT(memcmp(a.images, b.images, DIGITS * P) == 0, "two runs of seed 5 differ");
    EXPECT(memcmp(a.images, half.images, DIGITS / 2 * P) == 0,
           "an image's transform depends on how many images are made");
    int same = 0;
    for (int k = 0; k < DIGITS; k++)
        same += memcmp(a.images + k * P, other.images + k * P, P) == 0;
    EXPECT(same == 0, "%d images the same under seeds 5 and 6", same);
    EXPECT(memcmp(a.labels, src.labels, DIGITS) == 0, "labels not copied");
    EXPECT(a.num_names == 10 && strcmp(a.class_names[7], "d7") == 0 &&
               a.class_names[7] != src.class_names[7], "class names not copied");
    /* The set is the draw and the image of each index. */
    int bad = 0;
    uint8_t *one = malloc(P);
    for (int k = 0; k < DIGITS; k++) {
        caps_affnist_transform t;
        caps_affnist_draw(&t, 5, k, src.images + (size_t)k * SIDE * SIDE, 1, SIDE, SIDE, CANVAS);
        caps_affnist_image(one, CANVAS, src.images + (size_t)k * SIDE * SIDE, 1, SIDE, SIDE, &t);
        bad += memcmp(one, a.images + k * P, P) != 0;
    }
    EXPECT(bad == 0, "%d images differ from their draw", bad);
    free(one);
    caps_dataset c20;
    EXPECT(caps_dataset_affnist(&c20, &src, 20, 5, &err) == CAPS_ERR_ARG &&
               strstr(err.msg, "at least 28") && c20.images == NULL && c20.count == 0,
           "a 20x20 canvas for 28x28 images: %s", err.msg);
    caps_dataset_free(&a), caps_dataset_free(&b), caps_dataset_free(&half);
    caps_dataset_free(&other), caps_dataset_free(&src);
}

/* Every image's ink stays on the canvas: drawn again on a canvas M pixels larger on every
 * side, with the same transform moved by M, nothing lies outside the original canvas's
 * window. And the ink is the source's times about the transform's area (0.64 to 1.44). */
TEST(affnist_keeps_ink_on_canvas_and_scales_it_by_area) {
    enum { M = 12, BIG = CANVAS + 2 * M, REPS = 8 };
    caps_dataset src = digit_set(DIGITS);
    uint8_t *out = malloc(CANVAS * CANVAS), *big = malloc(BIG * BIG);
    int outside = 0, off_ratio = 0, off_range = 0, images = 0;
    double worst = 1.0;
    for (int rep = 0; rep < REPS; rep++)
        for (int k = 0; k < DIGITS; k++) {
            const uint8_t *img = src.images + (size_t)k * SIDE * SIDE;
            caps_affnist_transform t;
            caps_affnist_draw(&t, 100 + rep, k, img, 1, SIDE, SIDE, CANVAS);
            caps_affnist_image(out, CANVAS, img, 1, SIDE, SIDE, &t);
            caps_affnist_transform moved = t;
            moved.tx += M, moved.ty += M;
            caps_affnist_image(big, BIG, img, 1, SIDE, SIDE, &moved);
            for (int y = 0; y < BIG; y++)
                for (int x = 0; x < BIG; x++)
                    if (x < M || x >= M + CANVAS || y < M || y >= M + CANVAS)
                        outside += big[y * BIG + x] != 0;
            double s = ink(img, SIDE * SIDE), o = ink(out, CANVAS * CANVAS);
            double ratio = o / (s * area_factor(&t));
            if (fabs(ratio - 1.0) > fabs(worst - 1.0)) worst = ratio;
            off_ratio += fabs(ratio - 1.0) > 0.05;
            off_range += o < 0.64 * 0.95 * s || o > 1.44 * 1.05 * s;
            images++;
        }
    EXPECT(outside == 0, "%d ink pixels fell off the canvas", outside);
    EXPECT(off_range == 0, "%d of %d images outside 0.64-1.44 times the source's ink", off_range,
           images);
    EXPECT(off_ratio == 0, "%d of %d images' ink off their area factor by more than 5%% "
           "(worst ratio %.4f)", off_ratio, images, worst);
    if (getenv("CAPS_TEST_VERBOSE"))
        fprintf(stderr, "  ink / (source ink x area): worst %.4f over %d images\n", worst, images);
    free(out), free(big);
    caps_dataset_free(&src);
}

/* Rotation, shear and scale off: the image is the source translated, exactly. */
TEST(affnist_without_deformation_is_a_translation) {
    caps_dataset src = digit_set(4);
    const uint8_t *img = src.images + SIDE * SIDE;
    uint8_t out[CANVAS * CANVAS];
    double c = (SIDE - 1) * 0.5;
    int shifts[][2] = {{6, 6}, {0, 0}, {12, 3}, {-4, 9}, {7, 12}};
    for (size_t n = 0; n < sizeof shifts / sizeof shifts[0]; n++) {
        int dx = shifts[n][0], dy = shifts[n][1], bad = 0;
        /* The source's top-left pixel lands at (dx, dy): its centre at c + (dx, dy). */
        caps_affnist_transform t = {0.0f, 0.0f, 1.0f, 1.0f, (float)(c + dx), (float)(c + dy)};
        caps_affnist_image(out, CANVAS, img, 1, SIDE, SIDE, &t);
        for (int y = 0; y < CANVAS; y++)
            for (int x = 0; x < CANVAS; x++) {
                int sx = x - dx, sy = y - dy;
                int want = sx < 0 || sx >= SIDE || sy < 0 || sy >= SIDE ? 0 : img[sy * SIDE + sx];
                bad += out[y * CANVAS + x] != want;
            }
        EXPECT(bad == 0, "shift (%d, %d): %d pixels differ", dx, dy, bad);
    }
    /* Centred, it is caps_dataset_pad's image. */
    caps_affnist_transform centre = {0.0f, 0.0f, 1.0f, 1.0f, (CANVAS - 1) * 0.5f,
                                     (CANVAS - 1) * 0.5f};
    caps_affnist_image(out, CANVAS, img, 1, SIDE, SIDE, &centre);
    caps_error err;
    EXPECT(caps_dataset_pad(&src, CANVAS, &err) == CAPS_OK, "%s", err.msg);
    EXPECT(memcmp(out, src.images + CANVAS * CANVAS, sizeof out) == 0,
           "the centred transform differs from the padded image");
    caps_dataset_free(&src);
}

/* The conventions of caps_affine_image: a positive angle turns clockwise on screen; a
 * positive shear moves rows below the centre to the right; scale_x widens. */
TEST(affnist_directions_match_caps_affine) {
    enum { S = 9, Q = 17 };
    uint8_t dot[S * S] = {0}, out[Q * Q];
    float fin[S * S], fout[S * S];
    caps_dataset src = digit_set(2);
    /* Any angle: the same picture as caps_affine_image (up to rounding to bytes), on a
     * canvas of the image's size with the centre kept. */
    const uint8_t *img = src.images;
    float big_in[SIDE * SIDE], big_out[SIDE * SIDE];
    uint8_t mine[SIDE * SIDE];
    for (int i = 0; i < SIDE * SIDE; i++) big_in[i] = img[i];
    caps_affine_image(big_out, big_in, 1, SIDE, SIDE, 17.0f, 0.0f, 0.0f);
    caps_affnist_transform r17 = {17.0f, 0.0f, 1.0f, 1.0f, 13.5f, 13.5f};
    caps_affnist_image(mine, SIDE, img, 1, SIDE, SIDE, &r17);
    int bad = 0;
    for (int i = 0; i < SIDE * SIDE; i++) bad += fabs(mine[i] - big_out[i]) > 0.5 + 1e-3;
    EXPECT(bad == 0, "%d pixels differ from caps_affine_image's 17-degree rotation", bad);
    /* A dot right of the centre turns to below it at +90 degrees, as in caps_affine_image. */
    dot[4 * S + 6] = 255;
    for (int i = 0; i < S * S; i++) fin[i] = dot[i];
    caps_affine_image(fout, fin, 1, S, S, 90.0f, 0.0f, 0.0f);
    caps_affnist_transform r90 = {90.0f, 0.0f, 1.0f, 1.0f, 8.0f, 8.0f};
    caps_affnist_image(out, Q, dot, 1, S, S, &r90);
    EXPECT(out[10 * Q + 8] == 255 && fout[6 * S + 4] > 254.0f, "rotated dot: %d at (8, 10)",
           out[10 * Q + 8]);
    /* Shear 45: the dot 4 below the centre moves 4 right. */
    memset(dot, 0, sizeof dot);
    dot[8 * S + 4] = 255;
    caps_affnist_transform sh = {0.0f, 45.0f, 1.0f, 1.0f, 8.0f, 8.0f};
    caps_affnist_image(out, Q, dot, 1, S, S, &sh);
    EXPECT(out[12 * Q + 12] == 255 && ink(out, Q * Q) == 255, "sheared dot: %d at (12, 12)",
           out[12 * Q + 12]);
    /* Scale 2 in x: the dot 2 right of the centre goes 4 right. */
    memset(dot, 0, sizeof dot);
    dot[4 * S + 6] = 255;
    caps_affnist_transform sc = {0.0f, 0.0f, 2.0f, 1.0f, 8.0f, 8.0f};
    caps_affnist_image(out, Q, dot, 1, S, S, &sc);
    EXPECT(out[8 * Q + 12] == 255 && out[8 * Q + 10] == 0, "scaled dot: %d at (12, 8)",
           out[8 * Q + 12]);
    caps_dataset_free(&src);
}

/* Over many draws the parameters stay in their ranges and reach near both ends; the digit's
 * place spreads over the canvas. The redraws (a transform too large for the canvas) are
 * few, and the kept shears lean only a little towards the small. */
TEST(affnist_draws_cover_their_ranges) {
    enum { DRAWS = 4000 };
    caps_dataset src = digit_set(DIGITS);
    double lo[6], hi[6], sum_abs_shear = 0.0;
    for (int i = 0; i < 6; i++) lo[i] = INFINITY, hi[i] = -INFINITY;
    int out_of_range = 0, redrawn = 0, fallback = 0;
    for (int k = 0; k < DRAWS; k++) {
        const uint8_t *img = src.images + (size_t)(k % DIGITS) * SIDE * SIDE;
        caps_affnist_transform t;
        int tries = caps_affnist_draw(&t, 9, k, img, 1, SIDE, SIDE, CANVAS);
        redrawn += tries != 1;
        fallback += tries == 0;
        double v[6] = {t.rotation, t.shear, t.scale_x, t.scale_y, t.tx, t.ty};
        for (int i = 0; i < 6; i++) lo[i] = fmin(lo[i], v[i]), hi[i] = fmax(hi[i], v[i]);
        out_of_range += fabs(t.rotation) > CAPS_AFFNIST_MAX_ROTATION ||
                        fabs(t.shear) > CAPS_AFFNIST_MAX_SHEAR ||
                        t.scale_x < CAPS_AFFNIST_SCALE_MIN || t.scale_x > CAPS_AFFNIST_SCALE_MAX ||
                        t.scale_y < CAPS_AFFNIST_SCALE_MIN || t.scale_y > CAPS_AFFNIST_SCALE_MAX;
        sum_abs_shear += fabs(t.shear);
    }
    EXPECT(out_of_range == 0, "%d draws out of range", out_of_range);
    EXPECT(lo[0] < -19.5 && hi[0] > 19.5, "rotation only reached [%g, %g]", lo[0], hi[0]);
    EXPECT(lo[1] < -44.0 && hi[1] > 44.0, "shear only reached [%g, %g]", lo[1], hi[1]);
    for (int i = 2; i < 4; i++)
        EXPECT(lo[i] < 0.805 && hi[i] > 1.195, "scale %c only reached [%g, %g]", "xy"[i - 2],
               lo[i], hi[i]);
    /* Placement: a digit on 40x40 moves by about +-6 pixels or more each way (the source's
     * centre, (tx, ty), may leave the canvas when the ink lies to one side of it). */
    for (int i = 4; i < 6; i++)
        EXPECT(lo[i] < 14.0 && hi[i] > 25.0, "centre %c only in [%g, %g]", "xy"[i - 4], lo[i],
               hi[i]);
    EXPECT(fallback == 0, "%d images placed untransformed", fallback);
    EXPECT(redrawn < DRAWS / 10, "%d of %d draws redrawn", redrawn, DRAWS);
    /* Uniform in [-45, 45] has mean |shear| 22.5. */
    double mean_shear = sum_abs_shear / DRAWS;
    EXPECT(mean_shear > 20.0 && mean_shear < 23.5, "mean |shear| %.2f", mean_shear);
    if (getenv("CAPS_TEST_VERBOSE"))
        fprintf(stderr, "  %d of %d draws redrawn to fit; mean |shear| %.2f degrees\n", redrawn,
                DRAWS, mean_shear);
    caps_dataset_free(&src);
}

int main(void) {
    RUN(pad_centres_and_zero_fills);
    RUN(affnist_is_deterministic_per_seed_and_index);
    RUN(affnist_keeps_ink_on_canvas_and_scales_it_by_area);
    RUN(affnist_without_deformation_is_a_translation);
    RUN(affnist_directions_match_caps_affine);
    RUN(affnist_draws_cover_their_ranges);
    return TEST_SUMMARY();
}
