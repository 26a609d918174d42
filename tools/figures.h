/*
 * figures.h: the pictures of the capsnet program, drawn with cairo (figure.c) from what the
 * library computes (visualize.c): grids of images, line charts, confusion heat maps, the
 * reconstruction and perturbation figures. Not part of libcapsnet: only the program, its
 * report and explorer, and their tests link cairo.
 */
#ifndef CAPS_FIGURES_H
#define CAPS_FIGURES_H

#include "capsnet.h"

/* A grid of gray or colour images with text, drawn with cairo (figure.c) and written as PNG:
 * each image pixel becomes a scale x scale square (nearest neighbour), white on black as
 * the data. Used for inputs and reconstructions, the perturbation figure, data previews. */
typedef struct {
    int rows, cols;                 /* tiles */
    int tile_h, tile_w;             /* pixels of each image (28 x 28) */
    int scale;                      /* screen pixels per image pixel (4) */
    const char *title;              /* one line above the grid, or NULL */
    const char *const *row_labels;  /* [rows] text left of each row, or NULL */
    const char *const *col_labels;  /* [cols] text above each column, or NULL */
    const char *const *captions;    /* [rows*cols] text above each tile, or NULL (or a NULL entry) */
    const int *marked;              /* [rows*cols] non-zero: a red frame (a wrong prediction), or NULL */
    int channels;                   /* 1 (or 0, as a zeroed struct has it): gray; 3: RGB planes */
} caps_grid;

/* Size of the whole PNG, and where the image of tile (r, c) starts in it: its pixel
 * (y, x) covers [oy + y*scale, oy + (y+1)*scale) x [ox + x*scale, ox + (x+1)*scale). */
void caps_grid_size(const caps_grid *g, int *width, int *height);
void caps_grid_tile_origin(const caps_grid *g, int r, int c, int *ox, int *oy);
/* pixels: [rows*cols][C][tile_h*tile_w] in [0, 1], C = 3 for a colour grid, else 1; tile
 * (r, c) at index r*cols + c. Written atomically. */
int caps_grid_write_png(const char *path, const caps_grid *g, const float *pixels,
                        caps_error *err);

/* A line chart as SVG: x values shared by every series, axes with ticks and labels, a
 * legend. Series values may be NaN (not drawn). Written atomically. */
typedef struct {
    const char *name;
    const double *y; /* [n] */
} caps_series;

int caps_chart_write_svg(const char *path, const char *title, const char *xlabel,
                         const char *ylabel, const double *x, int n, const caps_series *series,
                         int nseries, caps_error *err);
/* The same chart as a PNG on white. */
int caps_chart_write_png(const char *path, const char *title, const char *xlabel,
                         const char *ylabel, const double *x, int n, const caps_series *series,
                         int nseries, caps_error *err);

/* A confusion matrix as a heat map PNG: counts [n][n] (row: true class, column: predicted),
 * each cell shaded by its share of its row, with the count written in it. Written
 * atomically. */
int caps_heatmap_write_png(const char *path, const char *title, const int *counts, int n,
                           caps_error *err);
/* Size of that PNG for n classes (1..200; 0 x 0 outside), and where cell (i, j) lies:
 * [x, x + side) x [y, y + side). Cells are 40 px, smaller from 21 classes on. */
void caps_heatmap_size(int n, int *width, int *height);
void caps_heatmap_cell_origin(int n, int i, int j, int *x, int *y, int *side);

/* Frees cairo's and fontconfig's process-wide caches; call once, after the last figure,
 * before the program ends (leak checkers then see only real leaks). */
void caps_figures_release(void);

/* Test images images[0..count-1] of ds (each transformed by affine when not NULL) over
 * their reconstructions, the decoder masked by the predicted capsule; "true -> predicted"
 * above each (class names where the model has them), wrong predictions framed in red. A
 * model of 3 input channels is drawn in colour, any other in gray (channel 0). *wrong (may
 * be NULL) gets their count; tile_xy (may be NULL), [2 * tiles]: where each tile's image starts in the PNG. */
int caps_draw_reconstructions(capsnet *m, const caps_dataset *ds, const int *images, int count,
                              const caps_affine *affine, const char *path, const char *title,
                              int *wrong, int *tile_xy, caps_error *err);
/* The paper's Figure 4 for image index of ds: D_out rows x steps columns, each dimension
 * of the predicted capsule shifted by -range ... +range (capsnet_perturb). *cls (may be
 * NULL) gets the class; tile_xy as above. */
int caps_draw_perturbation(capsnet *m, const caps_dataset *ds, int index, float range, int steps,
                           const char *path, int *cls, int *tile_xy, caps_error *err);

#endif /* CAPS_FIGURES_H */
