/*
 * cmd_multimnist.c: capsnet multimnist, the two-digit data of the paper's section 6
 * (src/multimnist.c makes the pairs).
 *
 *   capsnet multimnist preview --out FILE.png   a grid of test pairs as the network will see
 *                                               them, their labels and bounding-box overlap
 *
 * The grid is a plain grayscale PNG (caps_image_write_png): no cairo, so it is in every
 * build. Each pair is a 36 x 36 tile, with --digits followed by its two digits alone (the
 * reconstruction targets); tiles are drawn PREVIEW_SCALE times larger, one gray line apart.
 * The labels go to stdout, one line a pair, in the grid's reading order.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "multimnist.h"
#include "util.h"

#define PREVIEW_SCALE 2       /* screen pixels per image pixel: 36 x 36 becomes 72 x 72 */
#define PREVIEW_GAP 2         /* screen pixels between tiles */
#define PREVIEW_GAP_GRAY 96   /* the lines between tiles: neither ink nor background */
#define PREVIEW_PAIRS_ROW 10  /* pairs a row, one tile each */
#define PREVIEW_DIGITS_ROW 4  /* pairs a row with --digits, three tiles each */
#define PREVIEW_MAX_PAIRS 10000
#define MNIST_CLASSES 10

static const char multimnist_usage[] =
    "Usage: capsnet multimnist preview [--data DIR] [--seed S] [--count N] --out FILE.png\n"
    "\n"
    "MultiMNIST, the data of the paper's section 6: a digit overlaid on a digit of another\n"
    "class from the same split, each shifted by up to 4 pixels in each direction, on a 36x36\n"
    "canvas. Pair k of a seed is always the same pair.\n"
    "\n"
    "Subcommands:\n"
    "  preview   a grid PNG of test pairs; prints each pair's two labels and the mean\n"
    "            overlap of the digits' bounding boxes\n"
    "\n"
    "'capsnet multimnist preview --help' lists its options.\n";

static const char preview_usage[] =
    "Usage: capsnet multimnist preview [--data DIR] [--seed S] [--count N] --out FILE.png\n"
    "\n"
    "Writes a grid of the first N MultiMNIST pairs of seed S made from the test split of DIR,\n"
    "as the network sees them (with --digits, each followed by its two digits alone, the\n"
    "reconstruction targets), and prints each pair's labels and bounding-box overlap: the\n"
    "intersection of the two digits' boxes over the smaller box (src/multimnist.c says why).\n"
    "\n"
    "Options:\n";

/* Copies tile [R][C] into grid [GH][GW] at tile column tx, row ty, PREVIEW_SCALE times
 * larger. */
static void put_tile(uint8_t *grid, int GW, const uint8_t *tile, int R, int C, int tx, int ty) {
    int x0 = PREVIEW_GAP + tx * (C * PREVIEW_SCALE + PREVIEW_GAP);
    int y0 = PREVIEW_GAP + ty * (R * PREVIEW_SCALE + PREVIEW_GAP);
    for (int y = 0; y < R * PREVIEW_SCALE; y++)
        for (int x = 0; x < C * PREVIEW_SCALE; x++)
            grid[(size_t)(y0 + y) * GW + x0 + x] = tile[(y / PREVIEW_SCALE) * C + x / PREVIEW_SCALE];
}

static int multimnist_preview(int argc, char **argv) {
    const char *data = "data/mnist", *out = NULL;
    int count = 40, digits = 0;
    uint64_t seed = CAPS_MULTIMNIST_TEST_SEED;
    option opts[] = {
        {"data", OPT_STRING, &data, 0, 0, "DIR", "data folder, its test split (data/mnist)", 0},
        {"seed", OPT_U64, &seed, 0, 0, "S", "seed of the pairs (2017: the test set's)", 0},
        {"count", OPT_INT, &count, 1, PREVIEW_MAX_PAIRS, "N", "pairs 0 .. N-1 (40)", 0},
        {"digits", OPT_FLAG, &digits, 0, 0, NULL, "each pair followed by its two digits alone", 0},
        {"out", OPT_STRING, &out, 0, 0, "FILE", "PNG to write (required)", 0},
    };
    const char *cmd = "multimnist preview";
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command(cmd, preview_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!out) return fail_usage(cmd, "--out FILE.png is required");

    caps_error err = {0};
    caps_dataset ds = {0};
    if (caps_dataset_load(&ds, data, 0, MNIST_CLASSES, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    caps_multimnist_set set;
    if (caps_multimnist_make(&set, &ds, count, seed, &err)) {
        fprintf(stderr, "capsnet: error: %s: %s\n", data, err.msg);
        caps_dataset_free(&ds);
        return EXIT_FAILURE;
    }
    int R = set.rows, C = set.cols, tiles = digits ? 3 : 1;
    int per_row = digits ? PREVIEW_DIGITS_ROW : PREVIEW_PAIRS_ROW;
    if (count < per_row) per_row = count;
    int rows = (count + per_row - 1) / per_row;
    int GW = PREVIEW_GAP + per_row * tiles * (C * PREVIEW_SCALE + PREVIEW_GAP);
    int GH = PREVIEW_GAP + rows * (R * PREVIEW_SCALE + PREVIEW_GAP);
    uint8_t *grid = malloc((size_t)GW * GH);
    double *overlap = malloc((size_t)count * sizeof(double));
    if (!grid || !overlap) {
        rc = fail_runtime("out of memory for a %dx%d preview", GW, GH);
        goto done;
    }
    memset(grid, PREVIEW_GAP_GRAY, (size_t)GW * GH);
    size_t P = (size_t)R * C;
    double mean = 0, iou = 0;
    for (int k = 0; k < count; k++) {
        const uint8_t *da = set.digits + (size_t)k * 2 * P, *db = da + P;
        int tx = (k % per_row) * tiles, ty = k / per_row;
        put_tile(grid, GW, set.images + (size_t)k * P, R, C, tx, ty);
        if (digits) {
            put_tile(grid, GW, da, R, C, tx + 1, ty);
            put_tile(grid, GW, db, R, C, tx + 2, ty);
        }
        overlap[k] = caps_multimnist_overlap(da, db, R, C);
        mean += overlap[k] / count;
        iou += caps_multimnist_iou(da, db, R, C) / count;
    }
    if (caps_image_write_png(out, grid, GH, GW, &err)) {
        print_error(&err);
        rc = EXIT_FAILURE;
        goto done;
    }
    printf("pair  row col  label_a label_b  overlap\n");
    for (int k = 0; k < count; k++)
        printf("%4d  %3d %3d  %7d %7d  %7.3f\n", k, k / per_row, k % per_row,
               set.pairs[k].label[0], set.pairs[k].label[1], overlap[k]);
    printf("mean overlap of %d pairs: %.4f (bounding boxes: intersection over the smaller; "
           "IoU %.4f)\n", count, mean, iou);
    printf("wrote %s: %d pairs of seed %llu from the test split of %s, %dx%d pixels\n", out,
           count, (unsigned long long)seed, data, GW, GH);
    rc = 0;
done:
    free(grid), free(overlap);
    caps_multimnist_set_free(&set);
    caps_dataset_free(&ds);
    return rc;
}

int cmd_multimnist(int argc, char **argv) {
    if (argc < 2) {
        fputs(multimnist_usage, stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        fputs(multimnist_usage, stdout);
        return 0;
    }
    if (strcmp(sub, "preview") == 0) return multimnist_preview(argc - 1, argv + 1);
    return fail_usage("multimnist", "unknown subcommand '%s' (expected preview)", sub);
}
