/*
 * test_visualize.c: the figures show what the network computes. Every pixel of a
 * reconstruction tile is the decoder's output for that image; the middle column of the
 * perturbation figure is the unperturbed reconstruction and the other columns differ from
 * it. A colour model (3 input channels) is drawn in colour, each plane exactly. PNGs are read
 * back with cairo.
 */
#include <cairo.h>
#include <stdlib.h>
#include <string.h>

#include "figures.h"
#include "gradcheck.h"
#include "test.h"
#include "test_files.h"
#include "test_model.h"

enum { S = 10, NIMG = 5 };

static capsnet *tiny_model_channels(int C) {
    caps_config c = {S, C, 4, 3, 1, 3, 4, 3, 2, 10, 5, 3, 8, 12, CAPS_ROUTING_DYNAMIC};
    capsnet *m = NULL;
    caps_error err;
    if (capsnet_create(&m, &c, 8, NULL, &err)) return NULL;
    capsnet_init_weights(m, 21);
    /* Larger W_ij than for 1152 children, so capsules and their shifts show in the images. */
    size_t n = capsnet_param_size(m, capsnet_param_find("caps_w"));
    float *w = malloc(n * sizeof(float));
    if (!w || capsnet_read_tensor(m, CAPS_PARAMS, "caps_w", w, n, NULL)) abort();
    for (size_t k = 0; k < n; k++) w[k] *= 30.0f;
    if (capsnet_write_tensor(m, CAPS_PARAMS, "caps_w", w, n, NULL)) abort();
    free(w);
    return m;
}

static capsnet *tiny_model(void) { return tiny_model_channels(1); }

static caps_dataset images_channels(int C) {
    caps_dataset ds = {.count = NIMG, .channels = C, .rows = S, .cols = S,
                       .images = malloc((size_t)NIMG * C * S * S), .labels = malloc(NIMG)};
    caps_rng r;
    caps_rng_seed(&r, 4, 4);
    for (int k = 0; k < NIMG * C * S * S; k++) ds.images[k] = (uint8_t)caps_rng_below(&r, 256);
    for (int k = 0; k < NIMG; k++) ds.labels[k] = (uint8_t)(k * 3 % 10);
    return ds;
}

static caps_dataset images(void) { return images_channels(1); }

/* The gray level the figure gives an image value. */
static int level(float v) {
    v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    return (int)lrintf(v * 255.0f);
}

/* Largest |drawn - expected| over every screen pixel of a tile: img [C][S][S], C = 3 red,
 * green and blue; C = 1 gray (all three the same). */
static int tile_error_channels(cairo_surface_t *png, int ox, int oy, const float *img, int C) {
    size_t plane = C == 3 ? (size_t)S * S : 0;
    unsigned char *data = cairo_image_surface_get_data(png);
    int stride = cairo_image_surface_get_stride(png), worst = 0, scale = 4;
    for (int y = 0; y < S * scale; y++)
        for (int x = 0; x < S * scale; x++) {
            uint32_t px;
            memcpy(&px, data + (size_t)(oy + y) * stride + (size_t)(ox + x) * 4, 4);
            int r = (px >> 16) & 255, g = (px >> 8) & 255, b = px & 255;
            size_t i = (size_t)(y / scale) * S + x / scale;
            int e = abs(r - level(img[i]));
            if (abs(g - level(img[plane + i])) > e) e = abs(g - level(img[plane + i]));
            if (abs(b - level(img[2 * plane + i])) > e) e = abs(b - level(img[2 * plane + i]));
            if (e > worst) worst = e;
        }
    return worst;
}

static int tile_error(cairo_surface_t *png, int ox, int oy, const float *img) {
    return tile_error_channels(png, ox, oy, img, 1);
}

TEST(reconstruction_tiles_are_the_decoder_output) {
    capsnet *m = tiny_model();
    caps_dataset ds = images();
    EXPECT(m != NULL, "model");
    if (!m) return;
    char path[TEST_PATH_MAX];
    test_path(path, "rec.png");
    int which[3] = {4, 0, 2}, xy[2 * 6], wrong = -1;
    caps_error err;
    EXPECT(caps_draw_reconstructions(m, &ds, which, 3, NULL, path, "t", &wrong, xy, &err) ==
               CAPS_OK, "draw: %s", err.msg);
    /* What the network computes for the same batch. */
    float x[3 * S * S];
    int labels[3];
    caps_make_batch(x, labels, &ds, which, 3, 0, NULL);
    capsnet_forward(m, x, labels, 3, CAPS_MASK_PREDICTED, 0.0005f);
    int want_wrong = 0;
    for (int b = 0; b < 3; b++) want_wrong += capsnet_predictions(m)[b] != labels[b];
    cairo_surface_t *png = cairo_image_surface_create_from_png(path);
    EXPECT(cairo_surface_status(png) == CAIRO_STATUS_SUCCESS, "PNG does not decode");
    if (cairo_surface_status(png) == CAIRO_STATUS_SUCCESS) {
        /* 3 images: one row of inputs (tiles 0..2), one of reconstructions (3..5). */
        for (int b = 0; b < 3; b++) {
            int ein = tile_error(png, xy[2 * b], xy[2 * b + 1], x + b * S * S);
            int eout = tile_error(png, xy[2 * (3 + b)], xy[2 * (3 + b) + 1],
                                  capsnet_reconstruction(m) + b * S * S);
            EXPECT(ein == 0, "input tile %d off by %d gray levels", b, ein);
            EXPECT(eout == 0, "reconstruction tile %d off by %d gray levels", b, eout);
        }
    }
    EXPECT(wrong == want_wrong, "%d wrong reported, %d wrong predictions", wrong, want_wrong);
    cairo_surface_destroy(png);
    caps_dataset_free(&ds);
    capsnet_free(m);
}

TEST(perturbation_middle_column_is_the_reconstruction) {
    capsnet *m = tiny_model();
    caps_dataset ds = images();
    EXPECT(m != NULL, "model");
    if (!m) return;
    char path[TEST_PATH_MAX];
    test_path(path, "pert.png");
    enum { STEPS = 5, E = 5 };
    int xy[2 * E * STEPS], cls = -1;
    caps_error err;
    EXPECT(caps_draw_perturbation(m, &ds, 1, 0.25f, STEPS, path, &cls, xy, &err) == CAPS_OK,
           "draw: %s", err.msg);
    float x[S * S], recon[S * S];
    int label, idx = 1;
    caps_make_batch(x, &label, &ds, &idx, 1, 0, NULL);
    capsnet_forward(m, x, &label, 1, CAPS_MASK_PREDICTED, 0.0005f);
    memcpy(recon, capsnet_reconstruction(m), sizeof recon);
    EXPECT(cls == capsnet_predictions(m)[0], "figure of capsule %d, prediction %d", cls,
           capsnet_predictions(m)[0]);
    cairo_surface_t *png = cairo_image_surface_create_from_png(path);
    EXPECT(cairo_surface_status(png) == CAIRO_STATUS_SUCCESS, "PNG does not decode");
    if (cairo_surface_status(png) == CAIRO_STATUS_SUCCESS) {
        int same = 0;
        for (int d = 0; d < E; d++) {
            int mid = d * STEPS + STEPS / 2;
            /* Decoded in another batch than the forward pass: rounding may move a level. */
            int e = tile_error(png, xy[2 * mid], xy[2 * mid + 1], recon);
            EXPECT(e <= 1, "dimension %d: middle column off the reconstruction by %d", d, e);
            for (int k = 0; k < STEPS; k++)
                if (k != STEPS / 2) same += tile_error(png, xy[2 * (d * STEPS + k)],
                                                       xy[2 * (d * STEPS + k) + 1], recon) == 0;
        }
        EXPECT(same == 0, "%d shifted tiles equal the unshifted reconstruction", same);
    }
    cairo_surface_destroy(png);
    caps_dataset_free(&ds);
    capsnet_free(m);
}

/* A colour model: input and reconstruction tiles in colour, plane by plane; the perturbation
 * figure's middle column the colour reconstruction. Gray (all planes equal) would fail. */
TEST(colour_model_figures) {
    enum { C = 3, P = C * S * S };
    capsnet *m = tiny_model_channels(C);
    caps_dataset ds = images_channels(C);
    EXPECT(m != NULL, "model");
    if (!m) return;
    char path[TEST_PATH_MAX];
    test_path(path, "rec_colour.png");
    int which[2] = {3, 1}, xy[2 * 4], wrong = -1;
    caps_error err;
    EXPECT(caps_draw_reconstructions(m, &ds, which, 2, NULL, path, "t", &wrong, xy, &err) ==
               CAPS_OK, "draw: %s", err.msg);
    float x[2 * P];
    int labels[2];
    caps_make_batch(x, labels, &ds, which, 2, 0, NULL);
    capsnet_forward(m, x, labels, 2, CAPS_MASK_PREDICTED, 0.0005f);
    cairo_surface_t *png = cairo_image_surface_create_from_png(path);
    EXPECT(cairo_surface_status(png) == CAIRO_STATUS_SUCCESS, "PNG does not decode");
    if (cairo_surface_status(png) == CAIRO_STATUS_SUCCESS) {
        for (int b = 0; b < 2; b++) {
            int ein = tile_error_channels(png, xy[2 * b], xy[2 * b + 1], x + b * P, C);
            int eout = tile_error_channels(png, xy[2 * (2 + b)], xy[2 * (2 + b) + 1],
                                           capsnet_reconstruction(m) + b * P, C);
            EXPECT(ein == 0, "colour input tile %d off by %d levels", b, ein);
            EXPECT(eout == 0, "colour reconstruction tile %d off by %d levels", b, eout);
        }
    }
    cairo_surface_destroy(png);

    enum { STEPS = 3, E = 5 };
    int pxy[2 * E * STEPS], cls = -1, idx = 2, label;
    test_path(path, "pert_colour.png");
    EXPECT(caps_draw_perturbation(m, &ds, idx, 0.25f, STEPS, path, &cls, pxy, &err) == CAPS_OK,
           "draw: %s", err.msg);
    float recon[P];
    caps_make_batch(x, &label, &ds, &idx, 1, 0, NULL);
    capsnet_forward(m, x, &label, 1, CAPS_MASK_PREDICTED, 0.0005f);
    memcpy(recon, capsnet_reconstruction(m), sizeof recon);
    png = cairo_image_surface_create_from_png(path);
    EXPECT(cairo_surface_status(png) == CAIRO_STATUS_SUCCESS, "PNG does not decode");
    if (cairo_surface_status(png) == CAIRO_STATUS_SUCCESS)
        for (int d = 0; d < E; d++) {
            int mid = d * STEPS + STEPS / 2;
            int e = tile_error_channels(png, pxy[2 * mid], pxy[2 * mid + 1], recon, C);
            EXPECT(e <= 1, "dimension %d: middle column off the reconstruction by %d", d, e);
        }
    cairo_surface_destroy(png);
    caps_dataset_free(&ds);
    capsnet_free(m);
}

int main(void) {
    if (!test_dir_create("visualize")) return 1;
    RUN(reconstruction_tiles_are_the_decoder_output);
    RUN(perturbation_middle_column_is_the_reconstruction);
    RUN(colour_model_figures);
    test_dir_remove();
    caps_figures_release();
    return TEST_SUMMARY();
}
