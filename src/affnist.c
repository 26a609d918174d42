/*
 * affnist.c: the data side of the paper's robustness experiment (section 5.2): "we trained a
 * CapsNet and a traditional convolutional network ... on a padded and translated MNIST
 * training set, in which each example is an MNIST digit placed randomly on a black background
 * of 40 x 40 pixels ... then tested on the affNIST data set, in which each example is an MNIST
 * digit with a random small affine transformation."
 *
 *   caps_dataset_pad      every image at the centre of a size x size black canvas. Training's
 *                         random shifts (--shift 6 on 28 -> 40) then place the digit anywhere
 *                         the canvas holds it whole: the padded and translated training set.
 *   caps_dataset_affnist  an affNIST-like test set made from the MNIST test split.
 *
 * The recipe. affNIST's page (Tieleman, www.cs.toronto.edu/~tijmen/affNIST/) says the digits
 * "become 40x40 pixels large, with significant translations involved", that its test set
 * transforms MNIST's 10,000 test digits, and that its "just centred" version adds an edge of 6
 * background pixels around the 28x28 original (caps_dataset_pad at 40). The copy of the page we
 * could read stops before the ranges of the transformations; we follow those of issue 13,
 * each drawn uniformly and independently per image:
 *   rotation  theta in [-20, 20] degrees (positive: clockwise on screen, as caps_affine_image)
 *   shear     phi in [-45, 45] degrees, an angle: x' = x + tan(phi) y, so phi is the angle a
 *             vertical stroke leans by (positive: rows below the centre move right)
 *   scale     s_x, s_y in [0.8, 1.2], independently per axis
 * composed about the source image's centre c_s = ((W-1)/2, (H-1)/2), scale first:
 *
 *   q = t + A (p - c_s),   A = R(theta) Sh(phi) diag(s_x, s_y)
 *   R = [cos -sin; sin cos]   Sh = [1 tan(phi); 0 1]      (x right, y down, pixel units)
 *
 * p a source position, q its position on the canvas, t where the source centre lands. Then
 * the placement: t uniform over every position where the transformed digit stays whole on the
 * canvas. "The digit" is the box of its ink (pixels above 0) grown by one pixel on each side,
 * the reach of bilinear interpolation: where its four transformed corners lie within [-1, size]
 * in x and y, every pixel of the output with ink is on the canvas, none cut off. A transform
 * whose digit is wider or taller than the canvas allows no placement: it is drawn again (a
 * 45-degree shear of a wide digit scaled 1.2 is ~50 pixels wide), up to AFFNIST_MAX_TRIES
 * times, then the digit is placed untransformed (which always fits on a canvas at least as
 * large as the image). So the ranges above are those of the transforms tried; the ones kept
 * lean slightly towards the smaller: on MNIST's 10,000 test digits at 40x40, 2.7% of the
 * images needed a second draw, and the mean |shear| kept is 22.0 degrees (22.5 uniform).
 *
 * The output samples the source by the inverse map, p = c_s + A^-1 (q - t), bilinearly from
 * the four pixels around p (0 outside the image), rounded to a byte.
 *
 * Every draw of image k comes from its own generator, seeded by (seed, k): the same set
 * whatever the order, the threads or the number of images made.
 *
 * Dimension letters: C channels, H x W the source image, S the canvas side (size).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "capsnet.h"
#include "util.h"

#define AFFNIST_PI 3.14159265358979323846
/* Transforms drawn for one image before it is placed untransformed; with the ranges above an
 * MNIST digit (at most 20x20 pixels of ink) fits at the first or second draw almost always. */
#define AFFNIST_MAX_TRIES 100
/* The generator's stream for affNIST draws, apart from training's and caps_affine's. */
#define RNG_STREAM_AFFNIST 0xaf
/* The largest canvas: the IDX format's side limit, and far from size_t overflow. */
#define AFFNIST_MAX_SIZE 65535

/* ------------------------------------------------------------------------ pad */

/* A size x size canvas must hold the H x W images whole. */
static int check_canvas(const char *what, int size, int H, int W, caps_error *err) {
    int need = H > W ? H : W;
    if (size < need)
        return caps_fail(err, CAPS_ERR_ARG,
                         "%s: a %dx%d canvas is smaller than the %dx%d images (expected a side "
                         "of at least %d)", what, size, size, W, H, need);
    if (size > AFFNIST_MAX_SIZE)
        return caps_fail(err, CAPS_ERR_ARG, "%s: a %dx%d canvas (expected a side of at most %d)",
                         what, size, size, AFFNIST_MAX_SIZE);
    return CAPS_OK;
}

int caps_dataset_pad(caps_dataset *ds, int size, caps_error *err) {
    CAPS_ASSERT(ds != NULL);
    int C = ds->channels, H = ds->rows, W = ds->cols;
    int rc = check_canvas("canvas", size, H, W, err);
    if (rc) return rc;
    if (size == H && size == W) return CAPS_OK;
    size_t plane = (size_t)size * size, per = (size_t)C * plane;
    if (ds->count > 0 && per > SIZE_MAX / (size_t)ds->count)
        return caps_fail(err, CAPS_ERR_MEMORY, "canvas: %d images of %dx%d do not fit in memory",
                         ds->count, size, size);
    uint8_t *canvas = calloc(ds->count > 0 ? (size_t)ds->count * per : 1, 1);
    if (!canvas)
        return caps_fail(err, CAPS_ERR_MEMORY, "canvas: out of memory for %d images of %dx%d",
                         ds->count, size, size);
    /* The image's top-left pixel goes to (ox, oy): equal margins, the extra pixel of an odd
     * difference on the right and bottom. */
    int ox = (size - W) / 2, oy = (size - H) / 2;
    for (int n = 0; n < ds->count; n++)
        for (int c = 0; c < C; c++) {
            const uint8_t *src = ds->images + ((size_t)n * C + c) * H * W;
            uint8_t *dst = canvas + (size_t)n * per + (size_t)c * plane;
            for (int y = 0; y < H; y++)
                memcpy(dst + (size_t)(y + oy) * size + ox, src + (size_t)y * W, (size_t)W);
        }
    free(ds->images);
    ds->images = canvas;
    ds->rows = ds->cols = size;
    return CAPS_OK;
}

/* ------------------------------------------------------------------------ one image */

/* A = R(theta) Sh(phi) diag(s_x, s_y), row-major [2][2]. */
static void affnist_matrix(double A[4], const caps_affnist_transform *t) {
    double th = t->rotation * AFFNIST_PI / 180.0, ph = t->shear * AFFNIST_PI / 180.0;
    double c = cos(th), s = sin(th), k = tan(ph);
    /* Sh diag(s_x, s_y) = [s_x, k s_y; 0, s_y], then R on the left. */
    A[0] = c * t->scale_x;
    A[1] = c * k * t->scale_y - s * t->scale_y;
    A[2] = s * t->scale_x;
    A[3] = s * k * t->scale_y + c * t->scale_y;
}

/* The box of the ink of image [C][H][W] (pixels above 0 in any channel), inclusive pixel
 * bounds; the centre pixel for an image without ink. */
static void ink_box(const uint8_t *image, int C, int H, int W, int box[4]) {
    int x0 = W, y0 = H, x1 = -1, y1 = -1;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                if (image[((size_t)c * H + y) * W + x]) {
                    if (x < x0) x0 = x;
                    if (x > x1) x1 = x;
                    if (y < y0) y0 = y;
                    if (y > y1) y1 = y;
                }
    if (x1 < 0) x0 = x1 = W / 2, y0 = y1 = H / 2;
    box[0] = x0, box[1] = y0, box[2] = x1, box[3] = y1;
}

/* The range of A (p - c_s) over the ink box grown by one pixel: lo[2], hi[2] in x and y. */
static void transformed_bounds(const double A[4], const int box[4], double cx, double cy,
                               double lo[2], double hi[2]) {
    lo[0] = lo[1] = INFINITY;
    hi[0] = hi[1] = -INFINITY;
    for (int k = 0; k < 4; k++) {
        double px = ((k & 1) ? box[2] + 1.0 : box[0] - 1.0) - cx;
        double py = ((k >> 1) ? box[3] + 1.0 : box[1] - 1.0) - cy;
        double qx = A[0] * px + A[1] * py, qy = A[2] * px + A[3] * py;
        lo[0] = fmin(lo[0], qx), hi[0] = fmax(hi[0], qx);
        lo[1] = fmin(lo[1], qy), hi[1] = fmax(hi[1], qy);
    }
}

/* (2u - 1) m: uniform in [-m, m). */
static float affnist_symmetric(caps_rng *r, double m) {
    return (float)((2.0 * caps_rng_uniform(r) - 1.0) * m);
}

int caps_affnist_draw(caps_affnist_transform *t, uint64_t seed, int k, const uint8_t *image,
                      int C, int H, int W, int size) {
    CAPS_ASSERT(t && image && C > 0 && H > 0 && W > 0 && size >= H && size >= W);
    caps_rng r;
    caps_rng_seed(&r, seed + (uint64_t)k * 0x9e3779b97f4a7c15ULL, RNG_STREAM_AFFNIST);
    int box[4];
    ink_box(image, C, H, W, box);
    double cx = (W - 1) * 0.5, cy = (H - 1) * 0.5, A[4], lo[2], hi[2];
    int tries = 0;
    for (;;) {
        if (++tries > AFFNIST_MAX_TRIES) {
            /* Untransformed: the grown box spans at most W + 1 <= size + 1 pixels, so fits. */
            *t = (caps_affnist_transform){0.0f, 0.0f, 1.0f, 1.0f, 0.0f, 0.0f};
            tries = 0;
        } else {
            t->rotation = affnist_symmetric(&r, CAPS_AFFNIST_MAX_ROTATION);
            t->shear = affnist_symmetric(&r, CAPS_AFFNIST_MAX_SHEAR);
            t->scale_x = (float)(CAPS_AFFNIST_SCALE_MIN +
                                 (CAPS_AFFNIST_SCALE_MAX - CAPS_AFFNIST_SCALE_MIN) *
                                     caps_rng_uniform(&r));
            t->scale_y = (float)(CAPS_AFFNIST_SCALE_MIN +
                                 (CAPS_AFFNIST_SCALE_MAX - CAPS_AFFNIST_SCALE_MIN) *
                                     caps_rng_uniform(&r));
        }
        affnist_matrix(A, t);
        transformed_bounds(A, box, cx, cy, lo, hi);
        /* t_x in [-1 - lo_x, S - hi_x] keeps the grown box within [-1, S]: the placements. */
        if (hi[0] - lo[0] <= size + 1.0 && hi[1] - lo[1] <= size + 1.0) break;
        CAPS_ASSERT(tries != 0); /* the untransformed digit always fits */
    }
    float u = caps_rng_uniform(&r), v = caps_rng_uniform(&r);
    double tx0 = -1.0 - lo[0], tx1 = size - hi[0], ty0 = -1.0 - lo[1], ty1 = size - hi[1];
    /* Rounded to float: pulled back inside the range should rounding have left it. */
    t->tx = (float)(tx0 + (tx1 - tx0) * u);
    t->ty = (float)(ty0 + (ty1 - ty0) * v);
    if (t->tx < tx0 || t->tx > tx1) t->tx = (float)(0.5 * (tx0 + tx1));
    if (t->ty < ty0 || t->ty > ty1) t->ty = (float)(0.5 * (ty0 + ty1));
    return tries;
}

void caps_affnist_image(uint8_t *out, int size, const uint8_t *image, int C, int H, int W,
                        const caps_affnist_transform *t) {
    double A[4];
    affnist_matrix(A, t);
    double det = A[0] * A[3] - A[1] * A[2];
    CAPS_ASSERT(det != 0.0);
    /* A^-1 = [d -b; -c a] / det. */
    double i00 = A[3] / det, i01 = -A[1] / det, i10 = -A[2] / det, i11 = A[0] / det;
    double cx = (W - 1) * 0.5, cy = (H - 1) * 0.5;
    for (int c = 0; c < C; c++) {
        const uint8_t *src = image + (size_t)c * H * W;
        uint8_t *dst = out + (size_t)c * size * size;
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++) {
                double dx = x - (double)t->tx, dy = y - (double)t->ty;
                double px = cx + i00 * dx + i01 * dy, py = cy + i10 * dx + i11 * dy;
                double fx = floor(px), fy = floor(py), acc = 0.0;
                double wx = px - fx, wy = py - fy;
                int x0 = fx < -2.0 ? -2 : fx > W ? W : (int)fx; /* clamped: no int overflow */
                int y0 = fy < -2.0 ? -2 : fy > H ? H : (int)fy;
                for (int n = 0; n < 4; n++) {
                    int xi = x0 + (n & 1), yi = y0 + (n >> 1);
                    if (xi < 0 || xi >= W || yi < 0 || yi >= H) continue;
                    double w = ((n & 1) ? wx : 1.0 - wx) * ((n >> 1) ? wy : 1.0 - wy);
                    acc += w * src[(size_t)yi * W + xi];
                }
                dst[(size_t)y * size + x] = (uint8_t)(acc >= 255.0 ? 255 : lround(acc));
            }
    }
}

/* ------------------------------------------------------------------------ a data set */

int caps_dataset_affnist(caps_dataset *out, const caps_dataset *src, int size, uint64_t seed,
                         caps_error *err) {
    CAPS_ASSERT(out != NULL && src != NULL && out != src);
    memset(out, 0, sizeof *out);
    int C = src->channels, H = src->rows, W = src->cols;
    int rc = check_canvas("affnist", size, H, W, err);
    if (rc) return rc;
    size_t per = (size_t)C * size * size, n = src->count > 0 ? (size_t)src->count : 1;
    if (per > SIZE_MAX / n)
        return caps_fail(err, CAPS_ERR_MEMORY, "affnist: %d images of %dx%d do not fit in memory",
                         src->count, size, size);
    out->images = malloc(n * per);
    out->labels = malloc(n);
    out->class_names = src->num_names ? calloc((size_t)src->num_names, sizeof(char *)) : NULL;
    int ok = out->images && out->labels && (src->num_names == 0 || out->class_names);
    if (out->class_names) out->num_names = src->num_names; /* freed whole on failure */
    for (int j = 0; ok && j < src->num_names; j++) {
        size_t len = strlen(src->class_names[j]) + 1;
        out->class_names[j] = malloc(len);
        if (out->class_names[j]) memcpy(out->class_names[j], src->class_names[j], len);
        ok = out->class_names[j] != NULL;
    }
    if (!ok) {
        caps_dataset_free(out);
        return caps_fail(err, CAPS_ERR_MEMORY, "affnist: out of memory for %d images of %dx%d",
                         src->count, size, size);
    }
    out->count = src->count;
    out->channels = C;
    out->rows = out->cols = size;
    if (src->count > 0) memcpy(out->labels, src->labels, (size_t)src->count);
    /* Each image from its own (seed, k): the threads' split changes nothing. */
#pragma omp parallel for schedule(dynamic, 64)
    for (int k = 0; k < src->count; k++) {
        caps_affnist_transform t;
        const uint8_t *image = src->images + (size_t)k * C * H * W;
        caps_affnist_draw(&t, seed, k, image, C, H, W, size);
        caps_affnist_image(out->images + (size_t)k * per, size, image, C, H, W, &t);
    }
    return CAPS_OK;
}
