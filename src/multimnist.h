/*
 * multimnist.h: MultiMNIST, the two-digit images of the paper's section 6 (multimnist.c):
 * two digits of different classes from one split, each shifted by up to 4 pixels in each
 * direction on a 36 x 36 canvas, overlaid. Internal to the library and the program (not in
 * capsnet.h): the training and testing on MultiMNIST that use it are the program's.
 *
 * Every pair is a function of (seed, k) alone: pair k is the same however many pairs are
 * asked for and in whatever order, so training can make pairs on the fly, shuffle them, and
 * resume at any step; the test set is the fixed pairs 0 .. 9,999 of one seed.
 *
 * Dimension letters: B pairs in a batch, H x W a source image (28 x 28), R x C the canvas
 * (R = H + 2 * CAPS_MULTIMNIST_SHIFT = 36, C = W + 2 * CAPS_MULTIMNIST_SHIFT = 36).
 */
#ifndef CAPS_MULTIMNIST_H
#define CAPS_MULTIMNIST_H

#include <stdint.h>

#include "capsnet.h"

/* "Each digit is shifted up to 4 pixels in each direction resulting in a 36x36 image": the
 * canvas is the source image padded by the largest shift on every side. */
#define CAPS_MULTIMNIST_SHIFT 4

/* The paper's test set is 10M pairs (1K per test digit); ours is 10,000 fixed pairs of
 * this seed, each test digit the first digit of exactly one of them. */
#define CAPS_MULTIMNIST_TEST_PAIRS 10000
#define CAPS_MULTIMNIST_TEST_SEED 2017

/* What pair k is made of. Digit i (0: a, 1: b) is source image index[i] pasted with its
 * top-left corner at column SHIFT + dx[i], row SHIFT + dy[i] of the canvas. */
typedef struct {
    int index[2];     /* source images */
    int label[2];     /* their classes, never equal */
    int dx[2], dy[2]; /* shifts in [-SHIFT, SHIFT]; positive: right, down */
} caps_multimnist_draw;

/* Canvas rows and columns for images of src: 36 x 36 for MNIST. */
static inline int caps_multimnist_rows(const caps_dataset *src) {
    return src->rows + 2 * CAPS_MULTIMNIST_SHIFT;
}
static inline int caps_multimnist_cols(const caps_dataset *src) {
    return src->cols + 2 * CAPS_MULTIMNIST_SHIFT;
}

/* CAPS_OK when pairs can be made from src: gray images (1 channel), at least two images of
 * different classes. Else CAPS_ERR_ARG saying why. The functions below assume it. */
int caps_multimnist_check(const caps_dataset *src, caps_error *err);

/* Draws pair k >= 0 of seed: digit a is image k mod count (so every image is the first
 * digit once in each run of count pairs, as the authors' generator takes every digit in
 * turn), digit b a random image of another class, each shifted uniformly and
 * independently. */
void caps_multimnist_draw_pair(caps_multimnist_draw *d, const caps_dataset *src,
                               uint64_t seed, int64_t k);

/* Renders a drawn pair.
 *   image   [R][C] both digits overlaid: the pixel-wise maximum of the two canvases below
 *   digit_a [R][C] digit a alone on the canvas (the reconstruction target for its capsule),
 *                  or NULL
 *   digit_b [R][C] the same for digit b, or NULL */
void caps_multimnist_render(uint8_t *image, uint8_t *digit_a, uint8_t *digit_b,
                            const caps_dataset *src, const caps_multimnist_draw *d);

/* Draw and render pair k of seed in one call; labels [2] gets the classes of a and b. */
void caps_multimnist_pair(uint8_t *image, int labels[2], uint8_t *digit_a, uint8_t *digit_b,
                          const caps_dataset *src, uint64_t seed, int64_t k);

/* A fixed set of pairs 0 .. count-1 of one seed, rendered once (the test set). */
typedef struct {
    int count;
    int rows, cols; /* R, C */
    uint64_t seed;
    caps_multimnist_draw *pairs; /* [count] sources, labels, shifts */
    uint8_t *images;             /* [count][R][C] the overlaid pairs */
    uint8_t *digits;             /* [count][2][R][C] digit a, then digit b, each alone */
} caps_multimnist_set;

/* Fills a zeroed set (left zeroed on failure): CAPS_ERR_ARG from caps_multimnist_check or
 * for count < 1, CAPS_ERR_MEMORY. Free with caps_multimnist_set_free. */
int caps_multimnist_make(caps_multimnist_set *set, const caps_dataset *src, int count,
                         uint64_t seed, caps_error *err);
void caps_multimnist_set_free(caps_multimnist_set *set);

/* A batch of network inputs, pixels b / 255 as every other input path:
 *   x        [B][1][R][C] the overlaid pairs in [0, 1]
 *   target_a [B][R * C]   digit a alone, in [0, 1] (or NULL)
 *   target_b [B][R * C]   digit b alone (or NULL)
 *   labels_a [B], labels_b [B] the two classes
 * caps_multimnist_batch makes pairs k[0 .. B-1] of seed on the fly from src;
 * caps_multimnist_set_batch takes pairs idx[0 .. B-1] of a made set. */
void caps_multimnist_batch(float *x, float *target_a, float *target_b, int *labels_a,
                           int *labels_b, const caps_dataset *src, uint64_t seed,
                           const int64_t *k, int B);
void caps_multimnist_set_batch(float *x, float *target_a, float *target_b, int *labels_a,
                               int *labels_b, const caps_multimnist_set *set, const int *idx,
                               int B);

/* Scoring as the paper's section 6: "we consider the two most active digit capsules as the
 * classification produced by the capsules network"; a pair is classified right when those
 * two are its two labels, in either order. top2 gets the two longest of lengths [J] (J >= 2),
 * the longer first (the lower class on a tie). */
void caps_multimnist_top2(int top[2], const float *lengths, int J);
/* 1 when the two longest capsules are the classes a and b. */
int caps_multimnist_right(const float *lengths, int J, int a, int b);

/* The bounding box of an image's nonzero pixels, half-open: columns [x0, x1), rows
 * [y0, y1). Returns 0 (and an empty box) for an image with no ink. */
typedef struct {
    int x0, y0, x1, y1;
} caps_multimnist_box;
int caps_multimnist_bbox(caps_multimnist_box *box, const uint8_t *img, int rows, int cols);

/* How much the two digits' bounding boxes overlap: the intersection's area over the smaller
 * box's area, in [0, 1] (0 when either digit has no ink). multimnist.c says why this
 * definition and what it measures. digit_a, digit_b [R][C] as rendered. */
double caps_multimnist_overlap(const uint8_t *digit_a, const uint8_t *digit_b, int rows,
                               int cols);
/* Intersection over union of the same boxes, the stricter measure, for comparison. */
double caps_multimnist_iou(const uint8_t *digit_a, const uint8_t *digit_b, int rows, int cols);

#endif /* CAPS_MULTIMNIST_H */
