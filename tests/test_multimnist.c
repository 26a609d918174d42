/*
 * test_multimnist.c: the MultiMNIST pairs of the paper's section 6 (src/multimnist.c).
 * Pair k is a function of (seed, k) alone; its two digits are of different classes, each
 * the source image pasted whole at an offset in [0, 8] x [0, 8] of the 36 x 36 canvas (a
 * shift in [-4, 4]); the input is their pixel-wise maximum; batches scale by 1/255. On the
 * real MNIST test split (data/mnist, skipped when absent), pairs come from that split and
 * their bounding boxes overlap as multimnist.c measured.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "multimnist.h"
#include "test.h"

enum { H = 28, W = 28, R = 36, C = 36, P = R * C, SPAN = 2 * CAPS_MULTIMNIST_SHIFT + 1 };

/* count images of random bytes (so a shifted copy is found at one offset only), label k of
 * image k = k mod classes. */
static caps_dataset noise_set(int count, int classes) {
    caps_dataset ds = {.count = count, .channels = 1, .rows = H, .cols = W,
                       .images = malloc((size_t)count * H * W), .labels = malloc((size_t)count)};
    caps_rng r;
    caps_rng_seed(&r, 5, 5);
    for (size_t i = 0; i < (size_t)count * H * W; i++)
        ds.images[i] = (uint8_t)caps_rng_below(&r, 256);
    for (int k = 0; k < count; k++) ds.labels[k] = (uint8_t)(k % classes);
    return ds;
}

/* canvas [R][C] is image [H][W] pasted at column ox, row oy, zero elsewhere. */
static int is_pasted(const uint8_t *canvas, const uint8_t *image, int ox, int oy) {
    for (int y = 0; y < R; y++)
        for (int x = 0; x < C; x++) {
            int sx = x - ox, sy = y - oy;
            uint8_t want = sx < 0 || sx >= W || sy < 0 || sy >= H ? 0 : image[sy * W + sx];
            if (canvas[y * C + x] != want) return 0;
        }
    return 1;
}

/* The offset in [0, 8] x [0, 8] at which canvas holds image, or 0 if none does. */
static int find_offset(const uint8_t *canvas, const uint8_t *image, int *ox, int *oy) {
    for (*oy = 0; *oy < SPAN; (*oy)++)
        for (*ox = 0; *ox < SPAN; (*ox)++)
            if (is_pasted(canvas, image, *ox, *oy)) return 1;
    return 0;
}

TEST(canvas_is_36x36) {
    caps_dataset ds = noise_set(10, 3);
    EXPECT(caps_multimnist_rows(&ds) == 36 && caps_multimnist_cols(&ds) == 36, "%dx%d",
           caps_multimnist_cols(&ds), caps_multimnist_rows(&ds));
    caps_multimnist_set set;
    caps_error err = {0};
    int rc = caps_multimnist_make(&set, &ds, 7, 3, &err);
    EXPECT(rc == CAPS_OK, "code %d: %s", rc, err.msg);
    EXPECT(set.count == 7 && set.rows == 36 && set.cols == 36 && set.seed == 3,
           "count %d, %dx%d, seed %llu", set.count, set.cols, set.rows,
           (unsigned long long)set.seed);
    caps_multimnist_set_free(&set);
    free(ds.images), free(ds.labels);
}

TEST(same_seed_same_pair_in_any_order) {
    caps_dataset ds = noise_set(50, 10);
    enum { K = 40 };
    static uint8_t fwd[K][3][P], bwd[K][3][P];
    int lf[K][2], lb[K][2];
    for (int k = 0; k < K; k++)
        caps_multimnist_pair(fwd[k][0], lf[k], fwd[k][1], fwd[k][2], &ds, 42, k);
    for (int k = K - 1; k >= 0; k--) /* backwards, each asked twice */
        for (int rep = 0; rep < 2; rep++)
            caps_multimnist_pair(bwd[k][0], lb[k], bwd[k][1], bwd[k][2], &ds, 42, k);
    int differ = 0, other_seed_differs = 0;
    for (int k = 0; k < K; k++) {
        differ += memcmp(fwd[k], bwd[k], sizeof fwd[k]) != 0 || lf[k][0] != lb[k][0] ||
                  lf[k][1] != lb[k][1];
        uint8_t img[P];
        int l[2];
        caps_multimnist_pair(img, l, NULL, NULL, &ds, 43, k);
        other_seed_differs += memcmp(img, fwd[k][0], P) != 0;
    }
    EXPECT(differ == 0, "%d of %d pairs changed with the order asked", differ, K);
    EXPECT(other_seed_differs >= K - 2, "only %d of %d pairs change with the seed",
           other_seed_differs, K);
    /* A far pair index (a resumed run late in training) is as reproducible. */
    uint8_t x1[P], x2[P];
    int l1[2], l2[2];
    caps_multimnist_pair(x1, l1, NULL, NULL, &ds, 42, 123456789012LL);
    caps_multimnist_pair(x2, l2, NULL, NULL, &ds, 42, 123456789012LL);
    EXPECT(memcmp(x1, x2, P) == 0 && l1[0] == l2[0] && l1[1] == l2[1], "pair 123456789012");
    /* A set is pairs 0 .. count-1: a longer one starts with the shorter. */
    caps_multimnist_set s10, s30;
    caps_error err;
    EXPECT(caps_multimnist_make(&s10, &ds, 10, 42, &err) == CAPS_OK, "%s", err.msg);
    EXPECT(caps_multimnist_make(&s30, &ds, 30, 42, &err) == CAPS_OK, "%s", err.msg);
    EXPECT(memcmp(s10.images, s30.images, 10 * P) == 0 &&
               memcmp(s10.digits, s30.digits, 10 * 2 * P) == 0,
           "the first 10 pairs differ between sets of 10 and 30");
    for (int k = 0; k < 10; k++)
        EXPECT(memcmp(s10.images + k * P, fwd[k][0], P) == 0, "set pair %d is not pair %d", k, k);
    caps_multimnist_set_free(&s10);
    caps_multimnist_set_free(&s30);
    free(ds.images), free(ds.labels);
}

/* Labels right and never equal; digit a is image k mod count; each digit its image pasted
 * at (4 + dx, 4 + dy), dx, dy in [-4, 4], all 81 offsets seen about equally; the input the
 * pixel-wise max. */
TEST(pairs_are_two_shifted_digits_of_different_classes) {
    enum { N = 30, K = 3000 };
    caps_dataset ds = noise_set(N, 3);
    int seen[2][SPAN][SPAN] = {{{0}}}, bad_label = 0, bad_base = 0, bad_shift = 0, bad_max = 0;
    uint8_t img[P], da[P], db[P], img_alone[P], img_pair[P];
    for (int k = 0; k < K; k++) {
        caps_multimnist_draw d;
        caps_multimnist_draw_pair(&d, &ds, 9, k);
        caps_multimnist_render(img, da, db, &ds, &d);
        caps_multimnist_render(img_alone, NULL, NULL, &ds, &d);
        int labels[2];
        caps_multimnist_pair(img_pair, labels, NULL, NULL, &ds, 9, k);
        bad_label += d.label[0] == d.label[1] || d.label[0] != ds.labels[d.index[0]] ||
                     d.label[1] != ds.labels[d.index[1]] || labels[0] != d.label[0] ||
                     labels[1] != d.label[1];
        bad_base += d.index[0] != k % N;
        const uint8_t *digit[2] = {da, db};
        for (int i = 0; i < 2; i++) {
            int ox, oy;
            int found = find_offset(digit[i], ds.images + (size_t)d.index[i] * H * W, &ox, &oy);
            if (!found || ox != 4 + d.dx[i] || oy != 4 + d.dy[i]) {
                bad_shift++;
                continue;
            }
            seen[i][oy][ox]++;
        }
        for (int p = 0; p < P; p++)
            bad_max += img[p] != (da[p] > db[p] ? da[p] : db[p]) || img_alone[p] != img[p] ||
                       img_pair[p] != img[p];
    }
    EXPECT(bad_label == 0, "%d pairs with equal or wrong labels", bad_label);
    EXPECT(bad_base == 0, "%d pairs whose digit a is not image k mod %d", bad_base, N);
    EXPECT(bad_shift == 0, "%d digits not their image shifted by [-4, 4]", bad_shift);
    EXPECT(bad_max == 0, "%d pixels not the max of the two digits", bad_max);
    /* 3000 draws over 81 offsets: about 37 each; 12 and 70 are far outside chance. */
    for (int i = 0; i < 2; i++)
        for (int y = 0; y < SPAN; y++)
            for (int x = 0; x < SPAN; x++)
                EXPECT(seen[i][y][x] >= 12 && seen[i][y][x] <= 70,
                       "digit %d at offset (%d, %d) %d times of %d", i, x, y, seen[i][y][x], K);
    free(ds.images), free(ds.labels);
}

/* One image of class 1 among 199 of class 0: the draws of digit b mostly fail and the scan
 * finds it; still two classes, still deterministic. */
TEST(rare_second_class) {
    caps_dataset ds = noise_set(200, 1);
    ds.labels[137] = 1;
    int bad = 0;
    for (int k = 0; k < 400; k++) {
        caps_multimnist_draw d, again;
        caps_multimnist_draw_pair(&d, &ds, 1, k);
        caps_multimnist_draw_pair(&again, &ds, 1, k);
        bad += d.label[0] == d.label[1] || memcmp(&d, &again, sizeof d) != 0 ||
               (d.index[0] != 137 && d.index[1] != 137);
    }
    EXPECT(bad == 0, "%d of 400 pairs wrong", bad);
    free(ds.images), free(ds.labels);
}

TEST(unusable_sources_refused) {
    caps_dataset ds = noise_set(20, 1);
    caps_multimnist_set set;
    caps_error err = {0};
    int rc = caps_multimnist_make(&set, &ds, 5, 1, &err);
    EXPECT(rc == CAPS_ERR_ARG && strstr(err.msg, "two classes"), "code %d: %s", rc, err.msg);
    EXPECT(set.count == 0 && !set.images && !set.digits && !set.pairs, "set not left zeroed");
    ds.labels[3] = 2;
    rc = caps_multimnist_make(&set, &ds, 0, 1, &err);
    EXPECT(rc == CAPS_ERR_ARG && strstr(err.msg, "expected >= 1, got 0"), "code %d: %s", rc,
           err.msg);
    ds.channels = 3;
    rc = caps_multimnist_check(&ds, &err);
    EXPECT(rc == CAPS_ERR_ARG && strstr(err.msg, "expected 1 channel, got 3"), "code %d: %s", rc,
           err.msg);
    ds.channels = 1;
    EXPECT(caps_multimnist_check(&ds, NULL) == CAPS_OK, "two classes refused");
    free(ds.images), free(ds.labels);
}

/* Batches: pixels / 255 in [B][1][36][36], targets each digit alone, labels; the set's
 * batch and the on-the-fly batch agree; targets may be left out. */
TEST(batches_scale_and_agree) {
    enum { B = 6 };
    caps_dataset ds = noise_set(25, 4);
    caps_multimnist_set set;
    caps_error err;
    EXPECT(caps_multimnist_make(&set, &ds, 40, 77, &err) == CAPS_OK, "%s", err.msg);
    int idx[B] = {39, 0, 7, 7, 21, 3};
    int64_t k[B];
    for (int b = 0; b < B; b++) k[b] = idx[b];
    static float x[B * P], ta[B * P], tb[B * P], x2[B * P], ta2[B * P], tb2[B * P];
    int la[B], lb[B], la2[B], lb2[B];
    caps_multimnist_batch(x, ta, tb, la, lb, &ds, 77, k, B);
    caps_multimnist_set_batch(x2, ta2, tb2, la2, lb2, &set, idx, B);
    int bad = 0;
    for (int b = 0; b < B; b++) {
        const uint8_t *img = set.images + (size_t)idx[b] * P;
        const uint8_t *da = set.digits + (size_t)idx[b] * 2 * P, *db = da + P;
        for (int p = 0; p < P; p++)
            bad += x[b * P + p] != img[p] / 255.0f || ta[b * P + p] != da[p] / 255.0f ||
                   tb[b * P + p] != db[p] / 255.0f;
        EXPECT(la[b] == set.pairs[idx[b]].label[0] && lb[b] == set.pairs[idx[b]].label[1],
               "labels %d %d of pair %d", la[b], lb[b], idx[b]);
    }
    EXPECT(bad == 0, "%d values not the bytes / 255", bad);
    EXPECT(memcmp(x, x2, sizeof x) == 0 && memcmp(ta, ta2, sizeof ta) == 0 &&
               memcmp(tb, tb2, sizeof tb) == 0 && memcmp(la, la2, sizeof la) == 0 &&
               memcmp(lb, lb2, sizeof lb) == 0,
           "set batch differs from the on-the-fly batch");
    caps_multimnist_batch(x2, NULL, NULL, la2, lb2, &ds, 77, k, B);
    EXPECT(memcmp(x, x2, sizeof x) == 0, "inputs change without targets");
    caps_multimnist_set_free(&set);
    free(ds.images), free(ds.labels);
}

/* Boxes of the nonzero pixels; overlap = intersection / smaller box, IoU alongside. */
TEST(bounding_box_overlap) {
    static uint8_t a[P], b[P];
    caps_multimnist_box box;
    EXPECT(caps_multimnist_bbox(&box, a, R, C) == 0, "empty canvas has a box");
    EXPECT(caps_multimnist_overlap(a, b, R, C) == 0.0, "empty digits overlap");
    /* a: columns 2..11, rows 3..12 (10 x 10); b: columns 7..11, rows 8..17 (5 x 10). */
    a[3 * C + 2] = a[12 * C + 11] = 1;
    b[8 * C + 7] = 200, b[17 * C + 11] = 255, b[10 * C + 9] = 3;
    EXPECT(caps_multimnist_bbox(&box, a, R, C) == 1 && box.x0 == 2 && box.y0 == 3 &&
               box.x1 == 12 && box.y1 == 13,
           "box a [%d, %d) x [%d, %d)", box.x0, box.x1, box.y0, box.y1);
    /* Intersection: columns 7..11, rows 8..12: 5 x 5 = 25; smaller box 50; union 100+50-25. */
    double o = caps_multimnist_overlap(a, b, R, C), iou = caps_multimnist_iou(a, b, R, C);
    EXPECT(o == 0.5, "overlap %g", o);
    EXPECT(test_close(iou, 25.0 / 125.0, 1e-12, 0), "IoU %g", iou);
    EXPECT(caps_multimnist_overlap(b, a, R, C) == o, "overlap not symmetric");
    /* Boxes apart: 0; a box inside the other: 1. */
    memset(b, 0, P);
    b[30 * C + 30] = 9;
    EXPECT(caps_multimnist_overlap(a, b, R, C) == 0.0, "apart: %g",
           caps_multimnist_overlap(a, b, R, C));
    memset(b, 0, P);
    b[5 * C + 5] = 9;
    EXPECT(caps_multimnist_overlap(a, b, R, C) == 1.0, "inside: %g",
           caps_multimnist_overlap(a, b, R, C));
}

/* ------------------------------------------------------------------------ real MNIST */

#define MNIST_TEST_IMAGES "data/mnist/t10k-images-idx3-ubyte.gz"
/* multimnist.c: mean overlap of the 10,000 test pairs of CAPS_MULTIMNIST_TEST_SEED. */
#define MEASURED_MEAN_OVERLAP 0.724
#define OVERLAP_BAND 0.02 /* five standard errors of a mean of 2,000 pairs (sd 0.166) */

/* A pair is right when its two labels are the two longest capsules, in either order. */
TEST(scoring_takes_the_two_longest_capsules) {
    float len[10] = {0.1f, 0.8f, 0.05f, 0.3f, 0.2f, 0.9f, 0.0f, 0.25f, 0.1f, 0.29f};
    int top[2];
    caps_multimnist_top2(top, len, 10);
    EXPECT(top[0] == 5 && top[1] == 1, "top two %d %d, expected 5 1", top[0], top[1]);
    EXPECT(caps_multimnist_right(len, 10, 1, 5) && caps_multimnist_right(len, 10, 5, 1),
           "labels 1 and 5 in either order are right");
    EXPECT(!caps_multimnist_right(len, 10, 5, 3), "5 and 3: the third longest is not enough");
    EXPECT(!caps_multimnist_right(len, 10, 1, 3), "1 and 3: one right is not a right pair");
    /* The longest first whatever the order, from any position. */
    float last[4] = {0.1f, 0.2f, 0.3f, 0.4f}, first[4] = {0.4f, 0.3f, 0.2f, 0.1f};
    caps_multimnist_top2(top, last, 4);
    EXPECT(top[0] == 3 && top[1] == 2, "increasing: top %d %d", top[0], top[1]);
    caps_multimnist_top2(top, first, 4);
    EXPECT(top[0] == 0 && top[1] == 1, "decreasing: top %d %d", top[0], top[1]);
}

TEST(mnist_test_pairs) {
    enum { N_PAIRS = 2000 };
    caps_dataset ds;
    caps_error err = {0};
    int rc = caps_dataset_load(&ds, "data/mnist", 0, 10, &err);
    EXPECT(rc == CAPS_OK, "code %d: %s", rc, err.msg);
    if (rc) return;
    EXPECT(ds.count == 10000, "test split of %d images", ds.count);
    caps_multimnist_set set;
    rc = caps_multimnist_make(&set, &ds, N_PAIRS, CAPS_MULTIMNIST_TEST_SEED, &err);
    EXPECT(rc == CAPS_OK, "code %d: %s", rc, err.msg);
    if (rc) {
        caps_dataset_free(&ds);
        return;
    }
    EXPECT(set.rows == 36 && set.cols == 36, "canvas %dx%d", set.cols, set.rows);
    double sum = 0;
    int bad = 0;
    for (int k = 0; k < N_PAIRS; k++) {
        const caps_multimnist_draw *d = &set.pairs[k];
        const uint8_t *da = set.digits + (size_t)k * 2 * P, *db = da + P;
        /* From the test split: both digits are test images, byte for byte, where drawn. */
        for (int i = 0; i < 2; i++)
            bad += d->index[i] < 0 || d->index[i] >= ds.count ||
                   d->label[i] != ds.labels[d->index[i]] ||
                   !is_pasted(i ? db : da, ds.images + (size_t)d->index[i] * H * W,
                              4 + d->dx[i], 4 + d->dy[i]);
        bad += d->label[0] == d->label[1];
        sum += caps_multimnist_overlap(da, db, R, C);
    }
    EXPECT(bad == 0, "%d digits or labels not from the test split as drawn", bad);
    double mean = sum / N_PAIRS;
    EXPECT(fabs(mean - MEASURED_MEAN_OVERLAP) < OVERLAP_BAND,
           "mean bounding-box overlap %.4f of %d test pairs (measured %.3f on 10,000)", mean,
           N_PAIRS, MEASURED_MEAN_OVERLAP);
    caps_multimnist_set_free(&set);
    caps_dataset_free(&ds);
}

int main(void) {
    RUN(canvas_is_36x36);
    RUN(same_seed_same_pair_in_any_order);
    RUN(pairs_are_two_shifted_digits_of_different_classes);
    RUN(rare_second_class);
    RUN(unusable_sources_refused);
    RUN(batches_scale_and_agree);
    RUN(bounding_box_overlap);
    RUN(scoring_takes_the_two_longest_capsules);
    struct stat st;
    if (stat(MNIST_TEST_IMAGES, &st) == 0)
        RUN(mnist_test_pairs);
    else
        printf("note: %s not found, the MultiMNIST test-split check skipped "
               "(scripts/get-data.sh mnist data/mnist fetches it)\n",
               MNIST_TEST_IMAGES);
    return TEST_SUMMARY();
}
