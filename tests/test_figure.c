/*
 * test_figure.c: the figures of src/figure.c: caps_grid_write_png, caps_chart_write_svg,
 * caps_heatmap_write_png.
 *
 * Everything is written into a temporary folder under /tmp, removed at the end. PNGs are
 * read back with cairo_image_surface_create_from_png; the grid's image pixels are checked
 * one by one against round(clamp(v, 0, 1) * 255) at every screen pixel of their s x s
 * squares, placed by caps_grid_tile_origin. SVGs are checked for a well-formed tag
 * structure (a small checker below) and for glyphs enough for their text: cairo writes text
 * as glyph outlines, not as <text>.
 *
 * Set CAPS_FIGURE_KEEP=<folder> to also write the sample figures (a 2 x 10 grid of
 * seven-segment digits, a two-series chart, a 10-class heat map) there for a look.
 *
 * Legend: R x C tiles, h x w image pixels per tile, s = scale; K classes.
 */
#include <cairo.h>
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "figures.h"
#include "test.h"
#include "test_files.h"

/* xorshift32 in [0, 1). */
static double rng_uniform(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return (*s >> 8) * (1.0 / 16777216.0);
}

/* The error returned and stored, and the path in the message. */
#define EXPECT_ERROR(rc, err, want, path)                                                  \
    do {                                                                                   \
        EXPECT((rc) == (want), "code %d, want %d (%s)", (rc), (want), (err).msg);          \
        EXPECT((err).code == (want), "stored code %d, want %d", (err).code, (want));       \
        EXPECT(strstr((err).msg, (path)) != NULL, "path missing from \"%s\"", (err).msg);  \
    } while (0)
#define EXPECT_MSG(err, phrase) \
    EXPECT(strstr((err).msg, (phrase)) != NULL, "\"%s\" missing from \"%s\"", (phrase), (err).msg)

/* ------------------------------------------------------------------------ PNG reading */

typedef struct {
    cairo_surface_t *s;
    int width, height, stride;
    const unsigned char *data;
} decoded_png;

/* Decodes path with cairo; 0 (and a failed EXPECT) if it cannot. */
static int png_open(decoded_png *p, const char *path) {
    p->s = cairo_image_surface_create_from_png(path);
    if (cairo_surface_status(p->s) != CAIRO_STATUS_SUCCESS) {
        EXPECT(0, "%s: cannot decode (%s)", path,
               cairo_status_to_string(cairo_surface_status(p->s)));
        cairo_surface_destroy(p->s);
        p->s = NULL;
        return 0;
    }
    cairo_format_t fmt = cairo_image_surface_get_format(p->s);
    EXPECT(fmt == CAIRO_FORMAT_RGB24 || fmt == CAIRO_FORMAT_ARGB32, "%s: format %d", path, fmt);
    p->width = cairo_image_surface_get_width(p->s);
    p->height = cairo_image_surface_get_height(p->s);
    p->stride = cairo_image_surface_get_stride(p->s);
    p->data = cairo_image_surface_get_data(p->s);
    return 1;
}

static void png_close(decoded_png *p) {
    cairo_surface_destroy(p->s);
    p->s = NULL;
}

/* Pixel (x, y) as r, g, b bytes (the files are opaque, so no premultiplication to undo). */
static void png_rgb(const decoded_png *p, int x, int y, int rgb[3]) {
    uint32_t v = *(const uint32_t *)(const void *)(p->data + (size_t)y * p->stride +
                                                   (size_t)x * 4);
    rgb[0] = (int)(v >> 16 & 0xFF);
    rgb[1] = (int)(v >> 8 & 0xFF);
    rgb[2] = (int)(v & 0xFF);
}

static int red_dominant(const int rgb[3]) { return rgb[0] > 150 && rgb[1] < 90 && rgb[2] < 90; }

/* ------------------------------------------------------------------------ grid */

/* What a pixel value must become: round(clamp(v, 0, 1) * 255), NaN as 0. */
static int expected_gray(float v) {
    if (isnan(v) || v <= 0) return 0;
    if (v >= 1) return 255;
    return (int)round((double)v * 255.0);
}

/* Random values over [-0.25, 1.25) (so some clamp), every 17th NaN, a few exact halves. */
static float *random_pixels(size_t n, uint32_t seed) {
    float *px = malloc(n * sizeof *px);
    for (size_t i = 0; px && i < n; i++) {
        double u = rng_uniform(&seed);
        px[i] = i % 17 == 3 ? NAN : i % 13 == 5 ? (float)((int)(u * 255) + 0.5) / 255.0f
                                                : (float)(u * 1.5 - 0.25);
    }
    return px;
}

/* Checks every screen pixel of every tile of the PNG at path; returns the mismatches. */
static int check_grid_pixels(const char *path, const caps_grid *g, const float *pixels) {
    decoded_png p;
    if (!png_open(&p, path)) return -1;
    int w, h, bad = 0;
    caps_grid_size(g, &w, &h);
    EXPECT(p.width == w && p.height == h, "%s: %d x %d, caps_grid_size says %d x %d", path,
           p.width, p.height, w, h);
    for (int r = 0; r < g->rows && p.width == w && p.height == h; r++)
        for (int c = 0; c < g->cols; c++) {
            int ox, oy;
            caps_grid_tile_origin(g, r, c, &ox, &oy);
            const float *img = pixels + ((size_t)r * g->cols + c) * g->tile_h * g->tile_w;
            for (int y = 0; y < g->tile_h; y++)
                for (int x = 0; x < g->tile_w; x++) {
                    float v = img[y * g->tile_w + x];
                    int want = expected_gray(v);
                    for (int sy = 0; sy < g->scale; sy++)
                        for (int sx = 0; sx < g->scale; sx++) {
                            int rgb[3], X = ox + x * g->scale + sx, Y = oy + y * g->scale + sy;
                            png_rgb(&p, X, Y, rgb);
                            if (rgb[0] == want && rgb[1] == want && rgb[2] == want) continue;
                            if (bad++ < 5)
                                EXPECT(0, "tile (%d,%d) pixel (%d,%d) v=%g at screen (%d,%d): "
                                       "(%d,%d,%d), want %d", r, c, y, x, v, X, Y, rgb[0],
                                       rgb[1], rgb[2], want);
                        }
                }
        }
    png_close(&p);
    return bad;
}

static const char *const ROW_LABELS[] = {"input", "reconstruction", "noise", "x"};
static const char *const COL_LABELS[] = {"0", "1", "two", "three", "a long column label"};
static const char *const CAPTIONS[] = {"7 (0.98)", NULL, "1", "wrong: 3", "9",
                                       "0",        "1",  "2", "3",        "4",
                                       "5",        "6",  "7", "8",        "a caption far too long"};
static const int MARKS[] = {0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1};

/* Grid configurations: shapes and which texts and marks they carry. */
typedef struct {
    int rows, cols, tile_h, tile_w, scale;
    int title, row_labels, col_labels, captions, marked;
} grid_case;

static const grid_case GRID_CASES[] = {
    {1, 1, 1, 1, 1, 0, 0, 0, 0, 0},   /* the smallest grid */
    {1, 1, 28, 28, 1, 0, 0, 0, 0, 0},
    {1, 1, 28, 28, 4, 1, 0, 0, 0, 1}, /* a title wider than the tile widens the page */
    {3, 5, 28, 28, 1, 1, 1, 1, 1, 1},
    {3, 5, 28, 28, 4, 1, 1, 1, 1, 1},
    {3, 5, 7, 5, 4, 0, 1, 0, 1, 0},   /* non-square tiles */
    {2, 3, 5, 9, 3, 0, 0, 1, 0, 1},
    {3, 5, 9, 4, 1, 1, 0, 0, 1, 1},
};

static caps_grid grid_from_case(const grid_case *k) {
    caps_grid g = {k->rows,
                   k->cols,
                   k->tile_h,
                   k->tile_w,
                   k->scale,
                   k->title ? "Reconstructions after epoch 3 of 50" : NULL,
                   k->row_labels ? ROW_LABELS : NULL,
                   k->col_labels ? COL_LABELS : NULL,
                   k->captions ? CAPTIONS : NULL,
                   k->marked ? MARKS : NULL,
                   1};
    return g;
}

TEST(grid_sizes_and_pixels) {
    char p[512];
    for (size_t ci = 0; ci < sizeof GRID_CASES / sizeof GRID_CASES[0]; ci++) {
        caps_grid g = grid_from_case(&GRID_CASES[ci]);
        size_t n = (size_t)g.rows * g.cols * g.tile_h * g.tile_w;
        float *px = random_pixels(n, 1000 + (uint32_t)ci);
        char name[64];
        snprintf(name, sizeof name, "grid%zu.png", ci);
        caps_error err = {0};
        int rc = caps_grid_write_png(test_path(p, name), &g, px, &err);
        EXPECT(rc == CAPS_OK, "case %zu: %s", ci, err.msg);
        int w, h;
        caps_grid_size(&g, &w, &h);
        EXPECT(w > 0 && h > 0, "case %zu: size %d x %d", ci, w, h);
        /* Tiles lie inside the page, in order, without overlapping. */
        for (int r = 0; r < g.rows; r++)
            for (int c = 0; c < g.cols; c++) {
                int ox, oy;
                caps_grid_tile_origin(&g, r, c, &ox, &oy);
                EXPECT(ox >= 2 && oy >= 2 && ox + g.tile_w * g.scale + 2 <= w &&
                           oy + g.tile_h * g.scale + 2 <= h,
                       "case %zu: tile (%d,%d) at (%d,%d) leaves the %d x %d page (frame "
                       "included)", ci, r, c, ox, oy, w, h);
                if (c > 0) {
                    int px0, py0;
                    caps_grid_tile_origin(&g, r, c - 1, &px0, &py0);
                    EXPECT(py0 == oy && ox >= px0 + g.tile_w * g.scale + 4,
                           "case %zu: tiles (%d,%d) and (%d,%d) too close", ci, r, c - 1, r, c);
                }
                if (r > 0) {
                    int px0, py0;
                    caps_grid_tile_origin(&g, r - 1, c, &px0, &py0);
                    EXPECT(px0 == ox && oy >= py0 + g.tile_h * g.scale + 4,
                           "case %zu: tiles (%d,%d) and (%d,%d) too close", ci, r - 1, c, r, c);
                }
            }
        if (rc == CAPS_OK)
            EXPECT(check_grid_pixels(p, &g, px) == 0, "case %zu: image pixels differ", ci);
        free(px);
    }
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
}

/* The size does not depend on the pixels, and a title makes the page taller. */
TEST(grid_size_consistent) {
    caps_grid g = grid_from_case(&GRID_CASES[4]);
    int w1, h1, w2, h2;
    caps_grid_size(&g, &w1, &h1);
    caps_grid_size(&g, &w2, &h2);
    EXPECT(w1 == w2 && h1 == h2, "two calls: %d x %d and %d x %d", w1, h1, w2, h2);
    g.title = NULL;
    caps_grid_size(&g, &w2, &h2);
    EXPECT(w2 == w1 && h2 < h1, "without title %d x %d, with %d x %d", w2, h2, w1, h1);
    g.row_labels = NULL;
    caps_grid_size(&g, &w2, &h2);
    EXPECT(w2 < w1, "without row labels %d wide, with %d", w2, w1);
}

TEST(grid_clamps_and_nan) {
    char p[512];
    enum { W = 8 };
    float px[W] = {-1.0f, 2.0f, NAN, 0.5f, INFINITY, -INFINITY, 1.0f, 0.0f};
    const int want[W] = {0, 255, 0, 128, 255, 0, 255, 0}; /* round(127.5) = 128 */
    caps_grid g = {1, 1, 1, W, 3, NULL, NULL, NULL, NULL, NULL, 1};
    caps_error err = {0};
    int rc = caps_grid_write_png(test_path(p, "clamp.png"), &g, px, &err);
    EXPECT(rc == CAPS_OK, "write: %s", err.msg);
    decoded_png d;
    if (rc != CAPS_OK || !png_open(&d, p)) return;
    int ox, oy;
    caps_grid_tile_origin(&g, 0, 0, &ox, &oy);
    for (int x = 0; x < W; x++) {
        int rgb[3];
        png_rgb(&d, ox + x * g.scale + 1, oy + 1, rgb);
        EXPECT(rgb[0] == want[x] && rgb[1] == want[x] && rgb[2] == want[x],
               "value %g: (%d,%d,%d), want %d", px[x], rgb[0], rgb[1], rgb[2], want[x]);
    }
    png_close(&d);
}

/* A colour grid: tile k's three planes are its red, green and blue, every screen pixel of
 * every image pixel exact, tiles in order (a plane mixed up with the next tile's shows). */
TEST(grid_colour) {
    char p[512];
    enum { H = 3, W = 5, HW = H * W, TILES = 2 };
    float *px = random_pixels((size_t)TILES * 3 * HW, 53);
    caps_grid g = {1, TILES, H, W, 2, "colour", NULL, NULL, NULL, NULL, 3};
    caps_error err = {0};
    int rc = caps_grid_write_png(test_path(p, "colour.png"), &g, px, &err);
    EXPECT(rc == CAPS_OK, "write: %s", err.msg);
    decoded_png d;
    if (rc != CAPS_OK || !png_open(&d, p)) {
        free(px);
        return;
    }
    int colourful = 0;
    for (int k = 0; k < TILES; k++) {
        int ox, oy;
        caps_grid_tile_origin(&g, 0, k, &ox, &oy);
        for (int i = 0; i < HW; i++)
            for (int dy = 0; dy < g.scale; dy++)
                for (int dx = 0; dx < g.scale; dx++) {
                    int rgb[3];
                    png_rgb(&d, ox + (i % W) * g.scale + dx, oy + (i / W) * g.scale + dy, rgb);
                    for (int c = 0; c < 3; c++)
                        EXPECT(rgb[c] == expected_gray(px[(size_t)(k * 3 + c) * HW + i]),
                               "tile %d pixel %d channel %d: %d, want %d", k, i, c, rgb[c],
                               expected_gray(px[(size_t)(k * 3 + c) * HW + i]));
                    colourful += rgb[0] != rgb[1] || rgb[1] != rgb[2];
                }
    }
    EXPECT(colourful > 0, "no pixel of the colour grid is coloured");
    png_close(&d);
    free(px);
}

TEST(grid_mark_frame) {
    char p[512];
    const int marked[4] = {0, 1, 0, 0};
    const char *const caps[4] = {"a", "b", "c", "d"};
    caps_grid g = {2, 2, 10, 6, 4, "marks", NULL, NULL, caps, marked, 1};
    float px[4 * 10 * 6];
    for (size_t i = 0; i < sizeof px / sizeof px[0]; i++) px[i] = (float)(i % 7) / 6.0f;
    caps_error err = {0};
    int rc = caps_grid_write_png(test_path(p, "marks.png"), &g, px, &err);
    EXPECT(rc == CAPS_OK, "write: %s", err.msg);
    decoded_png d;
    if (rc != CAPS_OK || !png_open(&d, p)) return;
    int tw = g.tile_w * g.scale, th = g.tile_h * g.scale;
    for (int k = 0; k < 4; k++) {
        int ox, oy;
        caps_grid_tile_origin(&g, k / 2, k % 2, &ox, &oy);
        /* Just outside each side: left, right, above, below, and the outer corner. */
        const int at[5][2] = {{ox - 1, oy + th / 2}, {ox + tw, oy + th / 2},
                              {ox + tw / 2, oy - 1}, {ox + tw / 2, oy + th},
                              {ox - 2, oy - 2}};
        for (int s = 0; s < 5; s++) {
            int rgb[3];
            png_rgb(&d, at[s][0], at[s][1], rgb);
            if (marked[k])
                EXPECT(red_dominant(rgb), "tile %d side %d at (%d,%d): (%d,%d,%d), not red", k,
                       s, at[s][0], at[s][1], rgb[0], rgb[1], rgb[2]);
            else
                EXPECT(!red_dominant(rgb) && rgb[0] == 255 && rgb[1] == 255 && rgb[2] == 255,
                       "tile %d side %d at (%d,%d): (%d,%d,%d), want the white page", k, s,
                       at[s][0], at[s][1], rgb[0], rgb[1], rgb[2]);
        }
        /* Three pixels out is the page again, marked or not (the frame is 2 wide). */
        int rgb[3];
        png_rgb(&d, ox - 3, oy + th / 2, rgb);
        EXPECT(rgb[0] == 255 && rgb[1] == 255 && rgb[2] == 255, "tile %d: frame wider than 2", k);
    }
    png_close(&d);
    EXPECT(check_grid_pixels(p, &g, px) == 0, "marked grid pixels differ");
}

/* Invalid UTF-8 and over-long text are drawn as '?' and cut, not an error. */
TEST(grid_odd_text) {
    char p[512], longtext[2000];
    memset(longtext, 'W', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    const char *const rows[2] = {"\xff\xfe bad", longtext};
    const char *const cols[2] = {"\xe2\x82", "\xed\xa0\x80 surrogate"};
    const char *const caps[4] = {"", "\xc0\xaf overlong", "caf\xc3\xa9", longtext};
    caps_grid g = {2, 2, 4, 4, 2, longtext, rows, cols, caps, NULL, 1};
    float px[2 * 2 * 16] = {0};
    caps_error err = {0};
    int rc = caps_grid_write_png(test_path(p, "odd.png"), &g, px, &err);
    EXPECT(rc == CAPS_OK, "write: %s", err.msg);
    int w, h;
    caps_grid_size(&g, &w, &h);
    EXPECT(w <= 1700 && h < 200, "long texts blew the page up to %d x %d", w, h);
    if (rc == CAPS_OK) EXPECT(check_grid_pixels(p, &g, px) == 0, "pixels differ");
}

TEST(grid_bad_args) {
    char p[512];
    float px[64] = {0};
    const struct {
        caps_grid g;
        const char *phrase;
    } bad[] = {
        {{0, 1, 4, 4, 1, NULL, NULL, NULL, NULL, NULL, 1}, "grid rows out of range"},
        {{1, -3, 4, 4, 1, NULL, NULL, NULL, NULL, NULL, 1}, "grid cols out of range"},
        {{1, 1, 0, 4, 1, NULL, NULL, NULL, NULL, NULL, 1}, "grid tile_h out of range"},
        {{1, 1, 4, 0, 1, NULL, NULL, NULL, NULL, NULL, 1}, "grid tile_w out of range"},
        {{1, 1, 4, 4, 0, NULL, NULL, NULL, NULL, NULL, 1},
         "grid scale out of range (expected 1..16384, got 0)"},
        {{1, 1, 4, 4, 100000, NULL, NULL, NULL, NULL, NULL, 1}, "grid scale out of range"},
        {{1, 150, 28, 28, 4, NULL, NULL, NULL, NULL, NULL, 1}, "grid too large"},
        {{16384, 16384, 16384, 16384, 16384, NULL, NULL, NULL, NULL, NULL, 1}, "grid too large"},
        {{1, 1, 4, 4, 1, NULL, NULL, NULL, NULL, NULL, 2},
         "grid channels out of range (expected 1 or 3, got 2)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        caps_error err = {0};
        int rc = caps_grid_write_png(test_path(p, "bad.png"), &bad[i].g, px, &err);
        EXPECT_ERROR(rc, err, CAPS_ERR_ARG, p);
        EXPECT_MSG(err, bad[i].phrase);
        int w = -1, h = -1;
        caps_grid_size(&bad[i].g, &w, &h);
        EXPECT(w == 0 && h == 0, "case %zu: size %d x %d for an invalid grid", i, w, h);
    }
    EXPECT(!test_file_exists(p), "file written for an invalid grid");
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
}

TEST(grid_write_errors) {
    char p[512], d[512];
    float px[28 * 28] = {0};
    caps_grid g = {1, 1, 28, 28, 2, "t", NULL, NULL, NULL, NULL, 1};
    caps_error err = {0};
    int rc = caps_grid_write_png(test_path(p, "no_dir/grid.png"), &g, px, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_IO, p);
    EXPECT_MSG(err, "No such file or directory");
    EXPECT(!test_file_exists(test_path(d, "no_dir")), "folder created");
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");

    /* The temporary file is written, then cannot be renamed over a folder. */
    EXPECT(mkdir(test_path(p, "a_folder.png"), 0755) == 0, "mkdir: %s", strerror(errno));
    rc = caps_grid_write_png(p, &g, px, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_IO, p);
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
    rmdir(p);
}

/* A write that fails halfway through cairo's PNG output (the file size limit stands in for
 * a full disk) leaves the old file as it was and no temporary file. */
TEST(grid_write_fails_midway) {
    char p[512];
    enum { S = 64 };
    caps_grid g = {2, 2, S, S, 2, NULL, NULL, NULL, NULL, NULL, 1};
    float *px = random_pixels((size_t)4 * S * S, 77); /* noise: tens of KiB of PNG */
    const char *old = "old contents";
    EXPECT(test_write_file(test_path(p, "keep.png"), old, strlen(old)), "write");

    test_disk_full full;
    EXPECT(test_disk_full_begin(&full, 1000), "setrlimit: %s", strerror(errno));
    caps_error err = {0};
    int rc = caps_grid_write_png(p, &g, px, &err);
    test_disk_full_end(&full);
    free(px);

    EXPECT_ERROR(rc, err, CAPS_ERR_IO, p);
    EXPECT_MSG(err, "cannot write PNG (cairo: error while writing to output stream; File too "
                    "large)");
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
    size_t n = 0;
    char *b = test_read_file(p, &n);
    EXPECT(b && n == strlen(old) && memcmp(b, old, n) == 0, "old file changed");
    free(b);
}

/* ------------------------------------------------------------------------ chart */

#define XML_MAX_DEPTH 64
#define XML_MAX_NAME 64

/* 1 when s is one XML document whose tags nest and close (declaration, comments and
 * self-closing tags allowed, attribute values quoted); else 0 with the reason in why [128].
 * Enough to catch a truncated or unfinished SVG, not a validating parser. */
static int xml_well_formed(const char *s, char *why) {
    char stack[XML_MAX_DEPTH][XML_MAX_NAME];
    int depth = 0, roots = 0;
    for (const char *c = strchr(s, '<'); c; c = strchr(c, '<')) {
        if (strncmp(c, "<?", 2) == 0 || strncmp(c, "<!--", 4) == 0) {
            const char *end = strstr(c, c[1] == '?' ? "?>" : "-->");
            if (!end) return snprintf(why, 128, "unterminated %.4s", c), 0;
            c = end + 1;
            continue;
        }
        int closing = c[1] == '/';
        const char *name = c + 1 + closing;
        size_t len = strcspn(name, " \t\r\n/>");
        if (len == 0 || len >= XML_MAX_NAME) return snprintf(why, 128, "bad tag name"), 0;
        const char *q = name + len;
        char quote = 0;
        for (; *q && (quote || *q != '>'); q++)
            if (quote ? *q == quote : (*q == '"' || *q == '\'')) quote = quote ? 0 : *q;
        if (!*q) return snprintf(why, 128, "unterminated tag <%.*s", (int)len, name), 0;
        if (closing) {
            if (depth == 0 || strlen(stack[depth - 1]) != len ||
                strncmp(stack[depth - 1], name, len) != 0)
                return snprintf(why, 128, "</%.*s> closes %s", (int)len, name,
                                depth ? stack[depth - 1] : "nothing"), 0;
            depth--;
        } else if (q[-1] != '/') {
            if (depth == 0) roots++;
            if (depth == XML_MAX_DEPTH) return snprintf(why, 128, "nested too deep"), 0;
            memcpy(stack[depth], name, len);
            stack[depth++][len] = '\0';
        }
        c = q;
    }
    if (depth) return snprintf(why, 128, "<%s> never closed", stack[depth - 1]), 0;
    if (roots != 1) return snprintf(why, 128, "%d root elements", roots), 0;
    return 1;
}

static size_t count_substr(const char *s, const char *needle) {
    size_t n = 0;
    for (const char *c = strstr(s, needle); c; c = strstr(c + 1, needle)) n++;
    return n;
}

static size_t count_ink_chars(const char *t) {
    size_t n = 0;
    for (; t && *t; t++) n += *t != ' ';
    return n;
}

/* Checks an SVG written by caps_chart_write_svg; min_glyphs: glyphs its text needs at least. */
static void check_svg(const char *path, size_t min_glyphs) {
    size_t n = 0;
    char *s = test_read_file(path, &n);
    EXPECT(s != NULL, "%s: cannot read", path);
    if (!s) return;
    char why[128] = "";
    EXPECT(strncmp(s, "<?xml", 5) == 0 || strncmp(s, "<svg", 4) == 0, "%s: starts \"%.10s\"",
           path, s);
    EXPECT(strstr(s, "</svg>") != NULL, "%s: no </svg>", path);
    EXPECT(n > 2000, "%s: only %zu bytes", path, n);
    EXPECT(xml_well_formed(s, why), "%s: not well formed: %s", path, why);
    EXPECT(strstr(s, "width=\"640") && strstr(s, "height=\"400"), "%s: not 640 x 400", path);
    size_t glyphs = count_substr(s, "href=\"#glyph");
    EXPECT(glyphs >= min_glyphs, "%s: %zu glyphs drawn, its text needs %zu", path, glyphs,
           min_glyphs);
    free(s);
}

TEST(xml_checker) {
    char why[128];
    EXPECT(xml_well_formed("<?xml v?><svg a=\"x>y\"><g><p/></g><!-- <x> --></svg>", why), "%s",
           why);
    EXPECT(!xml_well_formed("<svg><g></svg>", why), "mismatched tags accepted");
    EXPECT(!xml_well_formed("<svg><g></g>", why), "unclosed root accepted");
    EXPECT(!xml_well_formed("<svg><g a=\"1\"", why), "cut tag accepted");
    EXPECT(!xml_well_formed("<a></a><b></b>", why), "two roots accepted");
}

TEST(chart_two_series) {
    char p[512];
    enum { N = 30 };
    double x[N], loss[N], acc[N];
    for (int i = 0; i < N; i++) {
        x[i] = i + 1;
        loss[i] = 0.5 * exp(-0.15 * i) + 0.02;
        acc[i] = 0.9 + 0.09 * (1 - exp(-0.2 * i));
    }
    caps_series s[2] = {{"train loss", loss}, {"test accuracy", acc}};
    caps_error err = {0};
    int rc = caps_chart_write_svg(test_path(p, "chart.svg"), "Training", "epoch", "value", x, N, s,
                                  2, &err);
    EXPECT(rc == CAPS_OK, "write: %s", err.msg);
    size_t text = count_ink_chars("Training") + count_ink_chars("epoch") +
                  count_ink_chars("value") + count_ink_chars(s[0].name) +
                  count_ink_chars(s[1].name);
    if (rc == CAPS_OK) check_svg(p, text);
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
}

TEST(chart_edge_cases) {
    char p[512];
    enum { N = 12 };
    double x[N], gaps[N], flat[N], nan_all[N], one_point[N], zero[N], x_nan[N];
    for (int i = 0; i < N; i++) {
        x[i] = i;
        gaps[i] = i % 4 == 2 ? NAN : sin(i); /* a line broken in three places */
        flat[i] = 0.75;
        nan_all[i] = NAN;
        one_point[i] = i == 5 ? 1.5 : NAN;
        zero[i] = 0;
        x_nan[i] = i == 3 ? NAN : i;
    }
    gaps[7] = INFINITY;
    caps_error err = {0};
    int rc;

    caps_series mixed[3] = {{"gaps", gaps}, {"flat", flat}, {"all missing", nan_all}};
    rc = caps_chart_write_svg(test_path(p, "mixed.svg"), "t", "x", "y", x, N, mixed, 3, &err);
    EXPECT(rc == CAPS_OK, "NaN and flat series: %s", err.msg);
    if (rc == CAPS_OK) check_svg(p, 3);

    caps_series flat1[1] = {{"flat", flat}};
    rc = caps_chart_write_svg(test_path(p, "flat.svg"), NULL, NULL, NULL, x, N, flat1, 1, &err);
    EXPECT(rc == CAPS_OK, "flat series without labels: %s", err.msg);
    if (rc == CAPS_OK) check_svg(p, 4);

    caps_series zeros[1] = {{"zero", zero}};
    rc = caps_chart_write_svg(test_path(p, "zero.svg"), "zeros", "x", "y", x, N, zeros, 1, &err);
    EXPECT(rc == CAPS_OK, "all-zero series: %s", err.msg);

    /* A lone finite value gets a marker: one more use of the series colour (12.2% red in
     * the SVG) than in the same chart with no finite value at all (legend only). */
    caps_series lone[1] = {{"a series", one_point}}, none[1] = {{"a series", nan_all}};
    size_t uses[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        rc = caps_chart_write_svg(test_path(p, k ? "none.svg" : "lone.svg"), "t", "x", "y", x, N,
                                  k ? none : lone, 1, &err);
        EXPECT(rc == CAPS_OK, "%s: %s", k ? "no finite value" : "one finite value", err.msg);
        size_t n = 0;
        char *s = test_read_file(p, &n);
        uses[k] = s ? count_substr(s, "12.2%") : 0;
        free(s);
    }
    EXPECT(uses[0] == uses[1] + 1 && uses[1] > 0, "colour used %zu times with the lone point, "
           "%zu without", uses[0], uses[1]);

    rc = caps_chart_write_svg(test_path(p, "n1.svg"), "n = 1", "epoch", "loss", x, 1, mixed, 2,
                              &err);
    EXPECT(rc == CAPS_OK, "n = 1: %s", err.msg);
    if (rc == CAPS_OK) check_svg(p, 4);

    caps_series xs[1] = {{"x has NaN", gaps}};
    rc = caps_chart_write_svg(test_path(p, "xnan.svg"), "t", "x", "y", x_nan, N, xs, 1, &err);
    EXPECT(rc == CAPS_OK, "NaN x value: %s", err.msg);

    /* More series than colours: the palette repeats with dashes; unnamed series. */
    caps_series many[10];
    double ys[10][N];
    for (int k = 0; k < 10; k++) {
        for (int i = 0; i < N; i++) ys[k][i] = k + 0.1 * i;
        many[k].name = k % 3 ? "a series" : NULL;
        many[k].y = ys[k];
    }
    rc = caps_chart_write_svg(test_path(p, "many.svg"), "many", "x", "y", x, N, many, 10, &err);
    EXPECT(rc == CAPS_OK, "10 series: %s", err.msg);
    if (rc == CAPS_OK) check_svg(p, 10);

    double big[2] = {-1e308, 1e308};
    caps_series wide[1] = {{"wide", big}};
    rc = caps_chart_write_svg(test_path(p, "wide.svg"), "t", "x", "y", x, 2, wide, 1, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_ARG, p);
    EXPECT_MSG(err, "too wide a range");
    EXPECT(!test_file_exists(p), "file written for an unplottable range");
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
}

TEST(chart_bad_args) {
    char p[512], d[512];
    double x[3] = {1, 2, 3}, y[3] = {1, 2, 3};
    caps_series s[2] = {{"a", y}, {"b", NULL}};
    caps_error err = {0};
    int rc = caps_chart_write_svg(test_path(p, "bad.svg"), "t", "x", "y", x, 0, s, 1, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_ARG, p);
    EXPECT_MSG(err, "chart needs points (expected n >= 1, got 0)");
    rc = caps_chart_write_svg(p, "t", "x", "y", x, 3, s, 0, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_ARG, p);
    EXPECT_MSG(err, "chart series out of range");
    rc = caps_chart_write_svg(p, "t", "x", "y", x, 3, s, 2, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_ARG, p);
    EXPECT_MSG(err, "chart series 1 (b) has no values");
    rc = caps_chart_write_svg(p, "t", "x", "y", NULL, 3, s, 1, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_ARG, p);
    EXPECT(!test_file_exists(p), "file written for bad arguments");

    rc = caps_chart_write_svg(test_path(p, "no_dir/chart.svg"), "t", "x", "y", x, 3, s, 1, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_IO, p);
    EXPECT_MSG(err, "No such file or directory");
    EXPECT(!test_file_exists(test_path(d, "no_dir")), "folder created");
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
}

/* As grid_write_fails_midway, for cairo's SVG writer. */
TEST(chart_write_fails_midway) {
    char p[512];
    enum { N = 200 };
    double x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = i, y[i] = sin(0.1 * i);
    caps_series s[1] = {{"sine", y}};
    const char *old = "old contents";
    EXPECT(test_write_file(test_path(p, "keep.svg"), old, strlen(old)), "write");

    test_disk_full full;
    EXPECT(test_disk_full_begin(&full, 1000), "setrlimit: %s", strerror(errno));
    caps_error err = {0};
    int rc = caps_chart_write_svg(p, "t", "x", "y", x, N, s, 1, &err);
    test_disk_full_end(&full);

    EXPECT_ERROR(rc, err, CAPS_ERR_IO, p);
    EXPECT_MSG(err, "File too large");
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
    size_t n = 0;
    char *b = test_read_file(p, &n);
    EXPECT(b && n == strlen(old) && memcmp(b, old, n) == 0, "old file changed");
    free(b);
}

/* ------------------------------------------------------------------------ heat map */

/* Rec. 709 luma of a pixel, 0..255. */
static double luma(const int rgb[3]) { return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]; }

/* The colour of cell (i, j): a pixel in its corner, clear of borders and the count. */
static void heat_cell_rgb(const decoded_png *d, int n, int i, int j, int rgb[3]) {
    int x, y, side;
    caps_heatmap_cell_origin(n, i, j, &x, &y, &side);
    png_rgb(d, x + 2, y + 2, rgb);
}

TEST(heatmap_sizes_and_shading) {
    char p[512];
    enum { K = 10 };
    int counts[K * K];
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) counts[i * K + j] = i == j ? 900 + 10 * i : (i + j) % 7;
    counts[3 * K + 5] = 400;                 /* a common confusion */
    for (int j = 0; j < K; j++) counts[7 * K + j] = 0; /* a class with no images */
    for (int j = 0; j < K; j++) counts[9 * K + j] = 0;
    counts[9 * K + 9] = 50;                  /* 100% of its row */
    counts[8 * K + 8] = 30, counts[8 * K + 2] = 30; /* 50% / 50% */
    for (int j = 0; j < K; j++)
        if (j != 8 && j != 2) counts[8 * K + j] = 0;
    caps_error err = {0};
    int rc = caps_heatmap_write_png(test_path(p, "heat10.png"), "Confusion matrix", counts, K, &err);
    EXPECT(rc == CAPS_OK, "write: %s", err.msg);
    decoded_png d;
    if (rc != CAPS_OK || !png_open(&d, p)) return;
    int w, h;
    caps_heatmap_size(K, &w, &h);
    EXPECT(d.width == w && d.height == h, "%d x %d, caps_heatmap_size says %d x %d", d.width,
           d.height, w, h);
    int full[3], half[3], none[3], empty_row[3], other[3];
    heat_cell_rgb(&d, K, 9, 9, full);
    heat_cell_rgb(&d, K, 8, 8, half);
    heat_cell_rgb(&d, K, 9, 0, none);
    heat_cell_rgb(&d, K, 7, 7, empty_row);
    heat_cell_rgb(&d, K, 3, 5, other);
    EXPECT(luma(full) < luma(half) && luma(half) < luma(none), "luma 100%% %g, 50%% %g, 0%% %g",
           luma(full), luma(half), luma(none));
    EXPECT(full[2] > full[0] && full[2] > full[1] && luma(full) < 80,
           "100%% cell (%d,%d,%d) is not dark blue", full[0], full[1], full[2]);
    EXPECT(none[0] == 255 && none[1] == 255 && none[2] == 255, "0%% cell (%d,%d,%d) not white",
           none[0], none[1], none[2]);
    EXPECT(empty_row[0] == 255 && empty_row[1] == 255 && empty_row[2] == 255,
           "cell of an empty row (%d,%d,%d) not white", empty_row[0], empty_row[1],
           empty_row[2]);
    EXPECT(luma(other) < luma(none) && luma(other) > luma(full), "30%% cell luma %g", luma(other));

    /* The count on a dark cell is white: its cell holds white pixels, a pale one none. */
    int x, y, side, white = 0;
    caps_heatmap_cell_origin(K, 9, 9, &x, &y, &side);
    for (int yy = y + 1; yy < y + side - 1; yy++)
        for (int xx = x + 1; xx < x + side - 1; xx++) {
            int rgb[3];
            png_rgb(&d, xx, yy, rgb);
            white += rgb[0] > 200 && rgb[1] > 200 && rgb[2] > 200;
        }
    EXPECT(white > 5, "no white count text on the dark cell");
    png_close(&d);
}

TEST(heatmap_sizes) {
    char p[512];
    const int ns[] = {1, 2, 10, 20, 21, 50, 200};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int n = ns[k];
        int *counts = calloc((size_t)n * n, sizeof *counts);
        for (int i = 0; counts && i < n; i++) counts[(size_t)i * n + i] = 100000 * (i + 1);
        char name[64];
        snprintf(name, sizeof name, "heat%d.png", n);
        caps_error err = {0};
        int rc = caps_heatmap_write_png(test_path(p, name), n == 2 ? NULL : "t", counts, n, &err);
        EXPECT(rc == CAPS_OK, "n = %d: %s", n, err.msg);
        int w, h, x, y, side;
        caps_heatmap_size(n, &w, &h);
        caps_heatmap_cell_origin(n, n - 1, n - 1, &x, &y, &side);
        EXPECT(x + side < w && y + side < h && side >= 8 && side <= 40,
               "n = %d: last cell at (%d,%d) side %d in %d x %d", n, x, y, side, w, h);
        EXPECT(w <= 2000 && h <= 2000, "n = %d: %d x %d", n, w, h);
        decoded_png d;
        if (rc == CAPS_OK && png_open(&d, p)) {
            EXPECT(d.width == w && d.height == h, "n = %d: %d x %d, want %d x %d", n, d.width,
                   d.height, w, h);
            int rgb[3];
            heat_cell_rgb(&d, n, n - 1, n - 1, rgb);
            EXPECT(luma(rgb) < 80, "n = %d: the 100%% cell has luma %g", n, luma(rgb));
            png_close(&d);
        }
        free(counts);
    }
    int zero[1] = {0};
    caps_error err = {0};
    EXPECT(caps_heatmap_write_png(test_path(p, "zero.png"), "t", zero, 1, &err) == CAPS_OK,
           "a 1 x 1 matrix of 0: %s", err.msg);
}

TEST(heatmap_bad_args) {
    char p[512], d[512];
    int counts[4] = {1, 2, 3, 4};
    caps_error err = {0};
    int w = -1, h = -1;
    int rc = caps_heatmap_write_png(test_path(p, "bad.png"), "t", counts, 201, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_ARG, p);
    EXPECT_MSG(err, "heat map classes out of range (expected 1..200, got 201)");
    EXPECT(err.hint[0] != '\0', "no hint");
    rc = caps_heatmap_write_png(p, "t", counts, 4096, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_ARG, p);
    rc = caps_heatmap_write_png(p, "t", counts, 0, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_ARG, p);
    caps_heatmap_size(0, &w, &h);
    EXPECT(w == 0 && h == 0, "size of n = 0: %d x %d", w, h);
    caps_heatmap_size(4096, &w, &h);
    EXPECT(w == 0 && h == 0, "size of n = 4096: %d x %d", w, h);
    counts[2] = -1;
    rc = caps_heatmap_write_png(p, "t", counts, 2, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_ARG, p);
    EXPECT_MSG(err, "negative count (expected >= 0, got -1 at true 1, predicted 0)");
    EXPECT(!test_file_exists(p), "file written for bad arguments");

    counts[2] = 3;
    rc = caps_heatmap_write_png(test_path(p, "no_dir/heat.png"), "t", counts, 2, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_IO, p);
    EXPECT_MSG(err, "No such file or directory");
    EXPECT(!test_file_exists(test_path(d, "no_dir")), "folder created");
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
}

/* ------------------------------------------------------------------------ samples */

/* Seven-segment digit d as a soft stroke in img [h][w]: something digit-like to look at. */
static void draw_digit(float *img, int h, int w, int d, uint32_t *seed) {
    /* segments a..g as (x0, y0, x1, y1) in a unit box; bit k of SEGS[d] lights segment k. */
    static const double seg[7][4] = {{0, 0, 1, 0}, {1, 0, 1, .5}, {1, .5, 1, 1}, {0, 1, 1, 1},
                                      {0, .5, 0, 1}, {0, 0, 0, .5}, {0, .5, 1, .5}};
    static const int SEGS[10] = {0x3F, 0x06, 0x5B, 0x4F, 0x66, 0x6D, 0x7D, 0x07, 0x7F, 0x6F};
    double shear = 0.3 * (rng_uniform(seed) - 0.5), thick = 1.2 + rng_uniform(seed);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double best = 1e9;
            for (int k = 0; k < 7; k++) {
                if (!(SEGS[d] >> k & 1)) continue;
                /* the unit box onto columns 0.3w..0.7w, rows 0.2h..0.8h, sheared */
                double ay = h * (0.2 + 0.6 * seg[k][1]), by = h * (0.2 + 0.6 * seg[k][3]);
                double ax = w * (0.3 + 0.4 * seg[k][0]) + shear * (h / 2.0 - ay);
                double bx = w * (0.3 + 0.4 * seg[k][2]) + shear * (h / 2.0 - by);
                double vx = bx - ax, vy = by - ay;
                double t = ((x - ax) * vx + (y - ay) * vy) / (vx * vx + vy * vy);
                t = t < 0 ? 0 : t > 1 ? 1 : t;
                double dx = x - ax - t * vx, dy = y - ay - t * vy;
                best = fmin(best, sqrt(dx * dx + dy * dy));
            }
            double v = 1.0 - (best - thick) / 1.5;
            img[y * w + x] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
        }
}

/* The figures a person looks at: in test_dir, and in $CAPS_FIGURE_KEEP when set. */
TEST(sample_figures) {
    const char *keep = getenv("CAPS_FIGURE_KEEP");
    for (int pass = 0; pass < (keep ? 2 : 1); pass++) {
        const char *dir = pass ? keep : test_dir;
        char p[1024];
        enum { R = 2, C = 10, S = 28 };
        float *px = malloc(sizeof(float) * R * C * S * S);
        if (!px) return;
        uint32_t seed = 5;
        char capbuf[R * C][32];
        const char *caps[R * C];
        int marked[R * C] = {0};
        for (int k = 0; k < R * C; k++) {
            int d = k % C;
            draw_digit(px + (size_t)k * S * S, S, S, d, &seed);
            if (k >= C) /* the second row: "reconstructions", a little blurred and dimmer */
                for (int i = 0; i < S * S; i++) px[(size_t)k * S * S + i] *= 0.85f;
            int pred = k == C + 3 ? 8 : d;
            snprintf(capbuf[k], sizeof capbuf[k], "%d (%.2f)", pred, 0.9 + 0.009 * d);
            caps[k] = capbuf[k];
            marked[k] = pred != d;
        }
        static const char *const rows[R] = {"input", "reconstruction"};
        static const char *const cols[C] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
        caps_grid g = {R, C, S, S, 3, "Inputs and reconstructions", rows, cols, caps, marked,
                       1};
        caps_error err = {0};
        snprintf(p, sizeof p, "%s/sample_grid.png", dir);
        EXPECT(caps_grid_write_png(p, &g, px, &err) == CAPS_OK, "grid: %s", err.msg);
        free(px);

        enum { N = 15 };
        double x[N], loss[N], acc[N];
        for (int i = 0; i < N; i++) {
            x[i] = i + 1;
            loss[i] = 0.3 * exp(-0.3 * i) + 0.01;
            acc[i] = i == 6 ? NAN : 0.76 + 0.24 * (1 - exp(-0.4 * i)); /* a gap at epoch 7 */
        }
        caps_series s[2] = {{"train loss", loss}, {"test accuracy", acc}};
        snprintf(p, sizeof p, "%s/sample_chart.svg", dir);
        EXPECT(caps_chart_write_svg(p, "Training progress", "epoch", "value", x, N, s, 2, &err) ==
                   CAPS_OK,
               "chart: %s", err.msg);

        int counts[100];
        for (int i = 0; i < 10; i++)
            for (int j = 0; j < 10; j++)
                counts[i * 10 + j] = i == j ? 950 + 3 * i : (i * 7 + j * 3) % 5;
        counts[4 * 10 + 9] = 180, counts[7 * 10 + 1] = 60, counts[5 * 10 + 3] = 420;
        snprintf(p, sizeof p, "%s/sample_heatmap.png", dir);
        EXPECT(caps_heatmap_write_png(p, "Confusion matrix (test set)", counts, 10, &err) ==
                   CAPS_OK,
               "heat map: %s", err.msg);
    }
}

int main(void) {
    if (!test_dir_create("figure")) return 1;
    RUN(grid_sizes_and_pixels);
    RUN(grid_size_consistent);
    RUN(grid_clamps_and_nan);
    RUN(grid_colour);
    RUN(grid_mark_frame);
    RUN(grid_odd_text);
    RUN(grid_bad_args);
    RUN(grid_write_errors);
    RUN(grid_write_fails_midway);
    RUN(xml_checker);
    RUN(chart_two_series);
    RUN(chart_edge_cases);
    RUN(chart_bad_args);
    RUN(chart_write_fails_midway);
    RUN(heatmap_sizes_and_shading);
    RUN(heatmap_sizes);
    RUN(heatmap_bad_args);
    RUN(sample_figures);
    test_dir_remove();
    caps_figures_release();
    return TEST_SUMMARY();
}
