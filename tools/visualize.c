/*
 * visualize.c: the pictures of what the network learned, drawn with figure.c:
 *
 *   caps_draw_reconstructions  test images over their reconstructions (the decoder masked
 *                              by the predicted capsule, as at test time), "true -> predicted"
 *                              above each, wrong predictions framed in red
 *   caps_draw_perturbation     the paper's Figure 4 (section 5.1): one row per dimension of
 *                              the predicted digit's capsule, that dimension shifted by
 *                              -range ... +range across the columns, the unshifted
 *                              reconstruction in the middle
 *
 * A model of 3 input channels is drawn in colour (its images and the decoder's output are
 * [3][H][W] planes of red, green and blue); any other in gray, from channel 0. Classes are
 * written by name when the model has names (caps_class_name), else by number.
 *
 * Each image pixel becomes VIS_SCALE x VIS_SCALE screen pixels. tile_xy, when not NULL,
 * receives where each tile's image starts in the PNG (x, y per tile, row by row), so a test
 * can compare the drawn pixels with the decoder's output.
 */
#include <stdlib.h>
#include <string.h>

#include "capsnet.h"
#include "figures.h"
#include "util.h"

#define VIS_SCALE 4    /* 28 x 28 becomes 112 x 112 */
#define VIS_COLUMNS 10 /* tiles per row of a reconstruction grid */

/* The channels a figure draws of a model of C input channels: 3 (RGB) or 1 (gray). */
static int figure_channels(int C) { return C == 3 ? 3 : 1; }

/* The grid image of tile k is image k of src [n][C][HW]: all of it in colour (C = 3), else
 * channel 0. dst [n][figure_channels(C)][HW]. */
static void tile_images(float *dst, const float *src, int n, int C, int HW) {
    size_t G = (size_t)figure_channels(C) * HW;
    for (int k = 0; k < n; k++)
        memcpy(dst + (size_t)k * G, src + (size_t)k * C * HW, G * sizeof(float));
}

/* Class j as figures write it: its name, or its number. */
static const char *class_label(char *buf, size_t cap, const capsnet *m, int j) {
    const char *name = caps_class_name(m, j);
    if (name) return name;
    snprintf(buf, cap, "%d", j);
    return buf;
}

static void tile_positions(int *tile_xy, const caps_grid *g) {
    if (!tile_xy) return;
    for (int r = 0; r < g->rows; r++)
        for (int c = 0; c < g->cols; c++) {
            int k = r * g->cols + c;
            caps_grid_tile_origin(g, r, c, &tile_xy[2 * k], &tile_xy[2 * k + 1]);
        }
}

int caps_draw_reconstructions(capsnet *m, const caps_dataset *ds, const int *images, int count,
                              const caps_affine *affine, const char *path, const char *title,
                              int *wrong_out, int *tile_xy, caps_error *err) {
    const caps_config *c = capsnet_config(m);
    int S = c->image_size, HW = S * S, C = c->in_channels, P = caps_image_pixels(c);
    int G = figure_channels(C);
    CAPS_ASSERT(count >= 1 && ds->rows == S && ds->cols == S && ds->channels == C);
    int B = capsnet_max_batch(m), cols = count < VIS_COLUMNS ? count : VIS_COLUMNS;
    int pair_rows = (count + cols - 1) / cols, rows = 2 * pair_rows;
    float *x = malloc((size_t)B * P * sizeof(float));
    float *tiles = calloc((size_t)rows * cols * G * HW, sizeof(float));
    int *idx = malloc((size_t)B * sizeof(int)), *labels = malloc((size_t)B * sizeof(int));
    char (*caption)[2 * CAPS_CLASS_NAME_MAX + 8] = calloc((size_t)rows * cols, sizeof *caption);
    const char **captions = calloc((size_t)rows * cols, sizeof *captions);
    const char **row_labels = calloc((size_t)rows, sizeof *row_labels);
    int *marked = calloc((size_t)rows * cols, sizeof(int));
    int rc = CAPS_OK, wrong = 0;
    if (!x || !tiles || !idx || !labels || !caption || !captions || !row_labels || !marked) {
        rc = caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for the figure", path);
        goto done;
    }
    for (int k0 = 0; k0 < count; k0 += B) {
        int nb = count - k0 < B ? count - k0 : B;
        for (int b = 0; b < nb; b++) {
            CAPS_ASSERT(images[k0 + b] >= 0 && images[k0 + b] < ds->count);
            idx[b] = images[k0 + b];
        }
        caps_make_batch_affine(x, labels, ds, idx, nb, affine);
        capsnet_forward(m, x, labels, nb, CAPS_MASK_PREDICTED, 0.0005f);
        const int *pred = capsnet_predictions(m);
        const float *recon = capsnet_reconstruction(m);
        for (int b = 0; b < nb; b++) {
            int k = k0 + b, r = 2 * (k / cols), col = k % cols;
            size_t in_tile = (size_t)r * cols + col, out_tile = in_tile + cols;
            tile_images(tiles + in_tile * G * HW, x + (size_t)b * P, 1, C, HW);
            tile_images(tiles + out_tile * G * HW, recon + (size_t)b * P, 1, C, HW);
            /* "true -> predicted", the arrow in UTF-8 */
            char t[16], q[16];
            snprintf(caption[in_tile], sizeof caption[0], "%s \xe2\x86\x92 %s",
                     class_label(t, sizeof t, m, labels[b]), class_label(q, sizeof q, m, pred[b]));
            captions[in_tile] = caption[in_tile];
            if (pred[b] != labels[b]) {
                marked[in_tile] = marked[out_tile] = 1;
                wrong++;
            }
        }
    }
    for (int r = 0; r < rows; r++) row_labels[r] = r % 2 ? "recon" : "input";
    caps_grid g = {rows, cols, S, S, VIS_SCALE, title, row_labels, NULL, captions, marked, G};
    rc = caps_grid_write_png(path, &g, tiles, err);
    tile_positions(tile_xy, &g);
    if (wrong_out) *wrong_out = wrong;
done:
    free(x), free(tiles), free(idx), free(labels), free(caption), free(captions);
    free(row_labels), free(marked);
    return rc;
}

int caps_draw_perturbation(capsnet *m, const caps_dataset *ds, int index, float range, int steps,
                           const char *path, int *cls_out, int *tile_xy, caps_error *err) {
    const caps_config *c = capsnet_config(m);
    int S = c->image_size, HW = S * S, C = c->in_channels, P = caps_image_pixels(c);
    int E = c->digit_dim, G = figure_channels(C);
    CAPS_ASSERT(index >= 0 && index < ds->count && steps >= 1);
    float *x = malloc((size_t)P * sizeof(float)), *deltas = malloc((size_t)steps * sizeof(float));
    float *out = malloc((size_t)E * steps * P * sizeof(float));
    float *tiles = malloc((size_t)E * steps * G * HW * sizeof(float));
    char (*labels)[16] = calloc((size_t)E + steps, sizeof *labels);
    const char **row_labels = calloc((size_t)E, sizeof *row_labels);
    const char **col_labels = calloc((size_t)steps, sizeof *col_labels);
    int rc = CAPS_OK, label;
    if (!x || !deltas || !out || !tiles || !labels || !row_labels || !col_labels) {
        rc = caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for the figure", path);
        goto done;
    }
    /* -range ... +range in equal steps; the middle one exactly 0 when steps is odd. */
    for (int k = 0; k < steps; k++)
        deltas[k] = steps == 1 ? 0.0f : -range + 2.0f * range * k / (steps - 1);
    if (steps % 2) deltas[steps / 2] = 0.0f;
    caps_make_batch(x, &label, ds, &index, 1, 0, NULL);
    int cls = capsnet_perturb(m, out, x, -1, deltas, steps);
    tile_images(tiles, out, E * steps, C, HW);
    for (int d = 0; d < E; d++) {
        snprintf(labels[d], sizeof labels[0], "dim %d", d);
        row_labels[d] = labels[d];
    }
    for (int k = 0; k < steps; k++) {
        snprintf(labels[E + k], sizeof labels[0], "%+.2f", (double)deltas[k]);
        col_labels[k] = labels[E + k];
    }
    char title[2 * CAPS_CLASS_NAME_MAX + 256], t[16], q[16];
    snprintf(title, sizeof title,
             "test image %d (a %s, predicted %s): capsule %d, one dimension at a time shifted",
             index, class_label(t, sizeof t, m, label), class_label(q, sizeof q, m, cls), cls);
    caps_grid g = {E, steps, S, S, VIS_SCALE, title, row_labels, col_labels, NULL, NULL, G};
    rc = caps_grid_write_png(path, &g, tiles, err);
    tile_positions(tile_xy, &g);
    if (cls_out) *cls_out = cls;
done:
    free(x), free(deltas), free(out), free(tiles), free(labels), free(row_labels), free(col_labels);
    return rc;
}
