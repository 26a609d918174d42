/*
 * figure.c: figures drawn with cairo: a grid of images (PNG), a line chart (SVG) and a
 * confusion matrix heat map (PNG). Every file is drawn in memory first, then written
 * atomically (caps_atomic_open / commit): a failed figure leaves the old file untouched.
 *
 *   caps_grid_write_png      rows x cols gray or RGB images, each image pixel a scale x scale
 *                            square, white on black as the data, with a title, row and column
 *                            labels, a caption above each tile and a red frame on marked tiles
 *   caps_chart_write_svg     series y[k][i] against shared x[i], nice 1-2-5 ticks, a legend
 *   caps_heatmap_write_png   counts[i][j] (true i, predicted j) shaded by counts[i][j] / row sum
 *
 * Grid layout (all in screen pixels, named constants below), top to bottom:
 *
 *   margin | title band (if title) | column label band (if col_labels) |
 *   row 0: caption band (if captions) + tile | gap | row 1 ... | margin
 *
 * and left to right: margin | row label column (if row_labels) | tile | gap | tile ... |
 * margin. The row label column is as wide as the widest label as cairo measures it (capped);
 * the page is widened to fit the title (capped). grid_layout computes all of it once, and
 * caps_grid_size, caps_grid_tile_origin and the drawing all read it, so they cannot disagree.
 * Tiles are painted last, by integer translation of a surface that holds the scaled image,
 * so every image pixel is exact: gray = round(clamp(v, 0, 1) * 255), NaN as 0 (each of red,
 * green and blue so for a colour grid, from the image's three planes). Text is
 * clipped to its band and never reaches a tile; the 2-pixel mark frame lies in the gap and
 * caption band around the tile.
 *
 * Text goes through cairo's toy API ("sans-serif"). Strings are copied through text_clean
 * first: invalid UTF-8 (which would put cairo into an error state and fail the whole figure)
 * becomes '?', and text longer than TEXT_MAX bytes is cut.
 *
 * Legend: R x C tiles (rows, cols), h x w image pixels per tile (tile_h, tile_w), s = scale;
 * n points and S series in a chart; K classes (n) in a heat map.
 */
#include <cairo-svg.h>
#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "figures.h"
#include "util.h"

#define FONT_FAMILY "sans-serif"
#define TEXT_MAX 256          /* bytes of one label, caption or title after cleaning */
#define FIGURE_PI 3.14159265358979323846
#define FALLBACK_CHAR_EM 0.6  /* width of a character in ems when cairo cannot measure */

/* ------------------------------------------------------------------------ shared helpers */

/* Cairo rejects these code points (its UNICODE_VALID): surrogates, beyond U+10FFFF and the
 * noncharacters U+FDD0..U+FDEF and U+xxFFFE/F. */
static int unicode_valid(uint32_t c) {
    return c < 0x110000 && (c & 0xFFFFF800u) != 0xD800 && (c < 0xFDD0 || c > 0xFDEF) &&
           (c & 0xFFFE) != 0xFFFE;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one (overlong forms,
 * stray continuation bytes, cut sequences and the code points above included). */
static int utf8_seq_len(const unsigned char *s) {
    unsigned char b = s[0];
    int len;
    uint32_t c, min;
    if (b < 0x80) return 1;
    if ((b & 0xE0) == 0xC0) len = 2, c = b & 0x1F, min = 0x80;
    else if ((b & 0xF0) == 0xE0) len = 3, c = b & 0x0F, min = 0x800;
    else if ((b & 0xF8) == 0xF0) len = 4, c = b & 0x07, min = 0x10000;
    else return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0; /* also stops at the terminating NUL */
        c = c << 6 | (s[i] & 0x3F);
    }
    return c >= min && unicode_valid(c) ? len : 0;
}

/* in (NULL as "") into out [TEXT_MAX]: invalid bytes as '?', cut at a character boundary. */
static const char *text_clean(char *out, const char *in) {
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)(in ? in : "");
    while (*s) {
        int len = utf8_seq_len(s);
        if (len == 0) {
            if (o + 1 >= TEXT_MAX) break;
            out[o++] = '?';
            s++;
            continue;
        }
        if (o + (size_t)len >= TEXT_MAX) break;
        memcpy(out + o, s, (size_t)len);
        o += (size_t)len;
        s += len;
    }
    out[o] = '\0';
    return out;
}

static void set_font(cairo_t *cr, double size, int bold) {
    cairo_select_font_face(cr, FONT_FAMILY, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

/* Advance width of raw text at the current font of cr (cleaned first). */
static double text_width(cairo_t *cr, const char *raw) {
    char buf[TEXT_MAX];
    cairo_text_extents_t e;
    cairo_text_extents(cr, text_clean(buf, raw), &e);
    return e.x_advance;
}

/* Horizontal anchor of draw_text: the given x is the text's left end, centre or right end. */
enum { ALIGN_LEFT, ALIGN_CENTER, ALIGN_RIGHT };

/* Draws raw text (cleaned) with its baseline at y, anchored at x by align. */
static void draw_text(cairo_t *cr, const char *raw, double x, double y, int align) {
    char buf[TEXT_MAX];
    const char *t = text_clean(buf, raw);
    if (!t[0]) return;
    cairo_text_extents_t e;
    cairo_text_extents(cr, t, &e);
    if (align == ALIGN_CENTER) x -= e.x_advance / 2;
    else if (align == ALIGN_RIGHT) x -= e.x_advance;
    cairo_move_to(cr, x, y);
    cairo_show_text(cr, t);
}

/* A cairo context on a 1 x 1 image surface: measures text with the metrics of the image
 * surfaces the PNGs are drawn on. NULL-safe to free; a failed one measures by estimate. */
typedef struct {
    cairo_surface_t *s;
    cairo_t *cr;
} text_meter;

static void meter_open(text_meter *m) {
    m->s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    m->cr = cairo_create(m->s);
}

static void meter_close(text_meter *m) {
    cairo_destroy(m->cr);
    cairo_surface_destroy(m->s);
}

/* Width in whole pixels of raw text at size points; an estimate if cairo is in error. */
static int meter_width(text_meter *m, const char *raw, double size, int bold) {
    if (cairo_status(m->cr) == CAIRO_STATUS_SUCCESS) {
        set_font(m->cr, size, bold);
        double w = text_width(m->cr, raw);
        if (cairo_status(m->cr) == CAIRO_STATUS_SUCCESS && isfinite(w)) return (int)ceil(w);
    }
    char buf[TEXT_MAX];
    return (int)ceil((double)strlen(text_clean(buf, raw)) * size * FALLBACK_CHAR_EM);
}

/* Output stream for cairo's PNG and SVG writers: the FILE* of a caps_atomic_file, and the
 * errno of the first failed write for the message. */
typedef struct {
    FILE *f;
    int errnum;
} stream_sink;

static cairo_status_t sink_write(void *closure, const unsigned char *data, unsigned int length) {
    stream_sink *s = closure;
    if (fwrite(data, 1, length, s->f) != length) {
        if (!s->errnum) s->errnum = errno ? errno : EIO;
        return CAIRO_STATUS_WRITE_ERROR;
    }
    return CAIRO_STATUS_SUCCESS;
}

/* "<path>: <what> (cairo: <status>[; <errno text>])", CAPS_ERR_MEMORY when cairo ran out of
 * memory, CAPS_ERR_IO otherwise. */
static int cairo_fail(caps_error *err, const char *path, const char *what, cairo_status_t st,
                      int errnum) {
    int code = st == CAIRO_STATUS_NO_MEMORY ? CAPS_ERR_MEMORY : CAPS_ERR_IO;
    if (errnum)
        return caps_fail(err, code, "%s: %s (cairo: %s; %s)", path, what,
                         cairo_status_to_string(st), strerror(errnum));
    return caps_fail(err, code, "%s: %s (cairo: %s)", path, what, cairo_status_to_string(st));
}

/* Writes a drawn image surface to path as PNG, atomically. */
static int write_png_atomic(cairo_surface_t *s, const char *path, caps_error *err) {
    caps_atomic_file af;
    int rc = caps_atomic_open(&af, path, err);
    if (rc) return rc;
    stream_sink sink = {af.f, 0};
    cairo_status_t st = cairo_surface_write_to_png_stream(s, sink_write, &sink);
    if (st != CAIRO_STATUS_SUCCESS) {
        caps_atomic_abort(&af); /* removes the temporary file: path keeps its old contents */
        return cairo_fail(err, path, "cannot write PNG", st, sink.errnum);
    }
    return caps_atomic_commit(&af, err);
}

/* The status of a finished drawing: the context's, else the surface's. */
static cairo_status_t draw_status(cairo_t *cr, cairo_surface_t *s) {
    cairo_status_t st = cairo_status(cr);
    return st != CAIRO_STATUS_SUCCESS ? st : cairo_surface_status(s);
}

/* ------------------------------------------------------------------------ image grid */

#define GRID_MAX_SIDE 16384      /* largest page side (cairo's limit is 32767) */
#define GRID_MARGIN 10           /* around everything */
#define GRID_GAP 8               /* between tiles, both ways: room for two mark frames */
#define GRID_MARK_W 2            /* the red frame of a marked tile, outside its pixels */
#define GRID_TITLE_H 26          /* title band */
#define GRID_TITLE_FONT 15.0
#define GRID_TITLE_BASELINE 18   /* from the top of the title band */
#define GRID_TITLE_MAX_W 1600    /* the page widens to fit the title up to this width */
#define GRID_LABEL_FONT 12.0     /* row and column labels */
#define GRID_COL_LABEL_H 18      /* column label band */
#define GRID_COL_LABEL_BASELINE 13
#define GRID_ROW_LABEL_PAD 8     /* between a row label and its first tile */
#define GRID_ROW_LABEL_MAX_W 240 /* longer row labels are clipped */
#define GRID_CAPTION_FONT 10.0
#define GRID_CAPTION_H 15        /* caption band above each tile; its last 2 px hold the frame */
#define GRID_CAPTION_BASELINE 5  /* above the tile top: clears the frame */

static const double GRID_PAGE_RGB[3] = {1.0, 1.0, 1.0};
static const double GRID_TEXT_RGB[3] = {0.1, 0.1, 0.1};
static const double GRID_MARK_RGB[3] = {0.86, 0.08, 0.08};

typedef struct {
    int width, height;          /* the page */
    int x0, y0;                 /* top-left image pixel of tile (0, 0) */
    int pitch_x, pitch_y;       /* from one tile's origin to the next */
    int tw, th;                 /* a tile on screen: tile_w*s x tile_h*s */
    int label_w, title_h, col_h, cap_h;
} grid_layout;

/* Fills L for g. Returns NULL, or what is wrong with g (for CAPS_ERR_ARG) in why [256]. */
static const char *grid_layout_make(const caps_grid *g, grid_layout *L, char *why) {
    memset(L, 0, sizeof *L);
    const struct {
        const char *name;
        int v;
    } dims[] = {{"rows", g->rows}, {"cols", g->cols}, {"tile_h", g->tile_h},
                {"tile_w", g->tile_w}, {"scale", g->scale}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v < 1 || dims[i].v > GRID_MAX_SIDE) {
            snprintf(why, 256, "grid %s out of range (expected 1..%d, got %d)", dims[i].name,
                     GRID_MAX_SIDE, dims[i].v);
            return why;
        }
    if (g->channels != 0 && g->channels != 1 && g->channels != 3) {
        snprintf(why, 256, "grid channels out of range (expected 1 or 3, got %d)", g->channels);
        return why;
    }
    L->label_w = 0;
    L->title_h = g->title ? GRID_TITLE_H : 0;
    L->col_h = g->col_labels ? GRID_COL_LABEL_H : 0;
    L->cap_h = g->captions ? GRID_CAPTION_H : 0;
    int title_w = 0;
    if (g->row_labels || g->title) {
        text_meter m;
        meter_open(&m);
        if (g->row_labels) {
            int widest = 0;
            for (int r = 0; r < g->rows; r++) {
                if (!g->row_labels[r]) continue;
                int w = meter_width(&m, g->row_labels[r], GRID_LABEL_FONT, 0);
                if (w > widest) widest = w;
            }
            L->label_w = (widest < GRID_ROW_LABEL_MAX_W ? widest : GRID_ROW_LABEL_MAX_W) +
                         GRID_ROW_LABEL_PAD;
        }
        if (g->title) {
            title_w = meter_width(&m, g->title, GRID_TITLE_FONT, 1);
            if (title_w > GRID_TITLE_MAX_W) title_w = GRID_TITLE_MAX_W;
        }
        meter_close(&m);
    }
    /* Each factor is at most GRID_MAX_SIDE: the products fit in int64 with room to spare. */
    int64_t tw = (int64_t)g->tile_w * g->scale, th = (int64_t)g->tile_h * g->scale;
    int64_t width = 2 * GRID_MARGIN + L->label_w + g->cols * tw + (g->cols - 1) * GRID_GAP;
    int64_t height = 2 * GRID_MARGIN + L->title_h + L->col_h + g->rows * (L->cap_h + th) +
                     (int64_t)(g->rows - 1) * GRID_GAP;
    if (width < title_w + 2 * GRID_MARGIN) width = title_w + 2 * GRID_MARGIN;
    if (width > GRID_MAX_SIDE || height > GRID_MAX_SIDE) {
        snprintf(why, 256,
                 "grid too large (expected at most %d x %d pixels, got %lld x %lld: "
                 "%d x %d tiles of %d x %d pixels at scale %d)",
                 GRID_MAX_SIDE, GRID_MAX_SIDE, (long long)width, (long long)height, g->cols,
                 g->rows, g->tile_w, g->tile_h, g->scale);
        return why;
    }
    L->tw = (int)tw;
    L->th = (int)th;
    L->width = (int)width;
    L->height = (int)height;
    L->x0 = GRID_MARGIN + L->label_w;
    L->y0 = GRID_MARGIN + L->title_h + L->col_h + L->cap_h;
    L->pitch_x = L->tw + GRID_GAP;
    L->pitch_y = L->cap_h + L->th + GRID_GAP;
    return NULL;
}

void caps_grid_size(const caps_grid *g, int *width, int *height) {
    grid_layout L;
    char why[256];
    grid_layout_make(g, &L, why); /* an invalid grid leaves 0 x 0 */
    *width = L.width;
    *height = L.height;
}

void caps_grid_tile_origin(const caps_grid *g, int r, int c, int *ox, int *oy) {
    grid_layout L;
    char why[256];
    CAPS_ASSERT(grid_layout_make(g, &L, why) == NULL);
    CAPS_ASSERT(r >= 0 && r < g->rows && c >= 0 && c < g->cols);
    *ox = L.x0 + c * L.pitch_x;
    *oy = L.y0 + r * L.pitch_y;
}

static void set_rgb(cairo_t *cr, const double rgb[3]) {
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
}

/* Title, column labels, row labels, captions and frames: everything but the images. */
static void grid_draw_text(cairo_t *cr, const caps_grid *g, const grid_layout *L) {
    set_rgb(cr, GRID_TEXT_RGB);
    if (g->title) {
        set_font(cr, GRID_TITLE_FONT, 1);
        cairo_save(cr);
        cairo_rectangle(cr, 0, GRID_MARGIN, L->width, L->title_h);
        cairo_clip(cr);
        draw_text(cr, g->title, L->width / 2.0, GRID_MARGIN + GRID_TITLE_BASELINE, ALIGN_CENTER);
        cairo_restore(cr);
    }
    set_font(cr, GRID_LABEL_FONT, 0);
    for (int c = 0; g->col_labels && c < g->cols; c++) {
        if (!g->col_labels[c]) continue;
        double ox = L->x0 + (double)c * L->pitch_x, top = GRID_MARGIN + L->title_h;
        cairo_save(cr);
        cairo_rectangle(cr, ox - GRID_GAP / 2.0, top, L->pitch_x, L->col_h);
        cairo_clip(cr);
        draw_text(cr, g->col_labels[c], ox + L->tw / 2.0, top + GRID_COL_LABEL_BASELINE,
                  ALIGN_CENTER);
        cairo_restore(cr);
    }
    for (int r = 0; g->row_labels && r < g->rows; r++) {
        if (!g->row_labels[r]) continue;
        double oy = L->y0 + (double)r * L->pitch_y;
        /* Vertically centred on the tile: the middle of a digit's height (0.36 em). */
        double baseline = oy + L->th / 2.0 + 0.36 * GRID_LABEL_FONT;
        cairo_save(cr);
        cairo_rectangle(cr, GRID_MARGIN, oy - L->cap_h, L->label_w - GRID_ROW_LABEL_PAD / 2.0,
                        L->cap_h + L->th);
        cairo_clip(cr);
        draw_text(cr, g->row_labels[r], L->x0 - GRID_ROW_LABEL_PAD, baseline, ALIGN_RIGHT);
        cairo_restore(cr);
    }
    set_font(cr, GRID_CAPTION_FONT, 0);
    for (int r = 0; g->captions && r < g->rows; r++)
        for (int c = 0; c < g->cols; c++) {
            const char *cap = g->captions[(size_t)r * g->cols + c];
            if (!cap) continue;
            double ox = L->x0 + (double)c * L->pitch_x, oy = L->y0 + (double)r * L->pitch_y;
            cairo_save(cr);
            cairo_rectangle(cr, ox - GRID_GAP / 2.0, oy - L->cap_h, L->pitch_x,
                            L->cap_h - GRID_MARK_W);
            cairo_clip(cr);
            draw_text(cr, cap, ox + L->tw / 2.0, oy - GRID_CAPTION_BASELINE, ALIGN_CENTER);
            cairo_restore(cr);
        }
    set_rgb(cr, GRID_MARK_RGB);
    for (int r = 0; g->marked && r < g->rows; r++)
        for (int c = 0; c < g->cols; c++) {
            if (!g->marked[(size_t)r * g->cols + c]) continue;
            /* The whole frame box; the tile painted later covers its inside. */
            cairo_rectangle(cr, L->x0 + c * L->pitch_x - GRID_MARK_W,
                            L->y0 + r * L->pitch_y - GRID_MARK_W, L->tw + 2 * GRID_MARK_W,
                            L->th + 2 * GRID_MARK_W);
            cairo_fill(cr);
        }
}

/* 8-bit gray of a pixel value: clamped to [0, 1], NaN as 0 (black, the data's background). */
static uint32_t gray_byte(float v) {
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v >= 1.0f) return 255;
    return (uint32_t)round((double)v * 255.0);
}

/* Fills the tile surface [h*s][w*s] (RGB24) with image [C][h][w], each pixel an s x s square:
 * C = 1 gray, C = 3 the red, green and blue planes. */
static void grid_fill_tile(cairo_surface_t *tile, const float *image, int C, int h, int w,
                           int s) {
    size_t plane = C == 3 ? (size_t)h * w : 0; /* 0: the one gray plane for all three */
    cairo_surface_flush(tile);
    unsigned char *data = cairo_image_surface_get_data(tile);
    int stride = cairo_image_surface_get_stride(tile);
    for (int y = 0; y < h; y++) {
        uint32_t *row = (uint32_t *)(void *)(data + (size_t)y * s * stride);
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            uint32_t r = gray_byte(image[i]), g = gray_byte(image[plane + i]);
            uint32_t b = gray_byte(image[2 * plane + i]);
            uint32_t px = 0xFF000000u | r << 16 | g << 8 | b; /* RGB24: x R G B, native order */
            for (int k = 0; k < s; k++) row[x * s + k] = px;
        }
        for (int k = 1; k < s; k++) /* the other screen rows of this image row */
            memcpy(data + ((size_t)y * s + k) * stride, row, (size_t)w * s * sizeof(uint32_t));
    }
    cairo_surface_mark_dirty(tile);
}

int caps_grid_write_png(const char *path, const caps_grid *g, const float *pixels,
                        caps_error *err) {
    grid_layout L;
    char why[256];
    if (grid_layout_make(g, &L, why)) return caps_fail(err, CAPS_ERR_ARG, "%s: %s", path, why);
    CAPS_ASSERT(pixels != NULL);

    cairo_surface_t *page = cairo_image_surface_create(CAIRO_FORMAT_RGB24, L.width, L.height);
    cairo_surface_t *tile = cairo_image_surface_create(CAIRO_FORMAT_RGB24, L.tw, L.th);
    cairo_t *cr = cairo_create(page);
    cairo_status_t st = draw_status(cr, page);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(tile);
    if (st == CAIRO_STATUS_SUCCESS) {
        set_rgb(cr, GRID_PAGE_RGB);
        cairo_paint(cr);
        grid_draw_text(cr, g, &L);
        /* Tiles last, by integer translation with SOURCE: pixel copies, no filtering. */
        cairo_set_operator(cr, CAIRO_OPERATOR_SOURCE);
        int C = g->channels == 3 ? 3 : 1;
        size_t tile_pixels = (size_t)C * g->tile_h * g->tile_w;
        for (int r = 0; r < g->rows; r++)
            for (int c = 0; c < g->cols; c++) {
                size_t k = (size_t)r * g->cols + c;
                grid_fill_tile(tile, pixels + k * tile_pixels, C, g->tile_h, g->tile_w, g->scale);
                int ox = L.x0 + c * L.pitch_x, oy = L.y0 + r * L.pitch_y;
                cairo_set_source_surface(cr, tile, ox, oy);
                cairo_rectangle(cr, ox, oy, L.tw, L.th);
                cairo_fill(cr);
                cairo_set_source_rgb(cr, 0, 0, 0); /* drop the reference before the refill */
            }
        cairo_surface_flush(page);
        st = draw_status(cr, page);
    }
    cairo_destroy(cr);
    cairo_surface_destroy(tile);
    int rc;
    if (st != CAIRO_STATUS_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "cannot draw a %d x %d image", L.width, L.height);
        rc = cairo_fail(err, path, what, st, 0);
    } else {
        rc = write_png_atomic(page, path, err);
    }
    cairo_surface_destroy(page);
    return rc;
}

/* ------------------------------------------------------------------------ line chart */

#define CHART_W 640
#define CHART_H 400
#define CHART_MARGIN 12
#define CHART_TITLE_H 32       /* title band */
#define CHART_TITLE_FONT 16.0
#define CHART_TITLE_BASELINE 22
#define CHART_AXIS_FONT 13.0   /* axis titles */
#define CHART_AXIS_TITLE_H 22  /* band for the x axis title (and width of the y one) */
#define CHART_TICK_FONT 11.0
#define CHART_TICK_LEN 4
#define CHART_TICK_LABEL_H 18  /* band for the x tick labels */
#define CHART_TICK_GAP 6       /* between a tick label and the axis */
#define CHART_TICK_LABEL_MAX_W 90
#define CHART_TICKS 5          /* about this many intervals on an axis */
#define CHART_MAX_TICKS 64     /* a safety bound for pathological ranges */
#define CHART_LEGEND_FONT 12.0
#define CHART_LEGEND_SWATCH 22 /* the line sample before a name */
#define CHART_LEGEND_ROW 18
#define CHART_LEGEND_PAD 10
#define CHART_LEGEND_NAME_MAX_W 150
#define CHART_LINE_W 1.8
#define CHART_MARKER_R 2.6
#define CHART_MARKERS_MAX 120  /* more points than this: markers only on isolated points */
#define CHART_MAX_SERIES 64
#define CHART_FLAT_PAD 0.05    /* a flat axis spans value * (1 +- this), or +-1 around 0 */

/* Tableau 10's first eight: distinct, and readable on white. After eight, lines dash. */
#define CHART_PALETTE 8
static const double CHART_RGB[CHART_PALETTE][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498}};
static const double CHART_GRID_RGB[3] = {0.88, 0.88, 0.88};
static const double CHART_AXIS_RGB[3] = {0.25, 0.25, 0.25};

/* An axis: its span [lo, hi] on whole steps, the ticks lo + i*step, i = 0..nticks-1. */
typedef struct {
    double lo, hi, step;
    int nticks;
} chart_axis;

/* A 1-2-5 step near range / CHART_TICKS. */
static double nice_step(double range) {
    double raw = range / CHART_TICKS;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

/* Axis over the data span [lo, hi] (lo <= hi, both finite). 0 if the span is too wide for a
 * double (e.g. -1e308 .. 1e308). */
static int axis_make(chart_axis *a, double lo, double hi) {
    if (lo == hi) { /* a flat series: a small span around it, no division by zero */
        double pad = lo != 0 ? fabs(lo) * CHART_FLAT_PAD : 1.0;
        lo -= pad;
        hi += pad;
    }
    double range = hi - lo;
    if (!isfinite(range) || range <= 0) return 0;
    double step = nice_step(range);
    if (!(step > 0) || !isfinite(step)) return 0;
    a->lo = floor(lo / step) * step;
    a->hi = ceil(hi / step) * step;
    a->step = step;
    double n = (a->hi - a->lo) / step;
    if (!isfinite(a->hi - a->lo) || !(n >= 1) || n > CHART_MAX_TICKS) return 0;
    a->nticks = (int)lrint(n) + 1;
    return 1;
}

/* Tick value i, with a -0 or 1e-17 from rounding shown as 0. */
static double axis_tick(const chart_axis *a, int i) {
    double v = a->lo + i * a->step;
    return fabs(v) < a->step * 1e-9 ? 0.0 : v;
}

/* A tick label: as many decimals as the step needs, %g for very large or small values. */
static void tick_label(char *buf, size_t cap, double v, const chart_axis *a) {
    double big = fmax(fabs(a->lo), fabs(a->hi));
    int decimals = a->step >= 1 ? 0 : (int)ceil(-log10(a->step) - 1e-9);
    if (big >= 1e7 || decimals > 6) {
        int digits = (int)floor(log10(big)) - (int)floor(log10(a->step)) + 1;
        snprintf(buf, cap, "%.*g", digits < 1 ? 1 : digits > 17 ? 17 : digits, v);
    } else {
        snprintf(buf, cap, "%.*f", decimals, v);
    }
}

static int chart_validate(const char *path, const double *x, int n, const caps_series *series,
                          int nseries, caps_error *err) {
    if (n < 1)
        return caps_fail(err, CAPS_ERR_ARG, "%s: chart needs points (expected n >= 1, got %d)",
                         path, n);
    if (nseries < 1 || nseries > CHART_MAX_SERIES)
        return caps_fail(err, CAPS_ERR_ARG,
                         "%s: chart series out of range (expected 1..%d, got %d)", path,
                         CHART_MAX_SERIES, nseries);
    if (!x || !series) return caps_fail(err, CAPS_ERR_ARG, "%s: chart x or series is NULL", path);
    for (int k = 0; k < nseries; k++)
        if (!series[k].y)
            return caps_fail(err, CAPS_ERR_ARG, "%s: chart series %d (%s) has no values", path, k,
                             series[k].name ? series[k].name : "unnamed");
    return CAPS_OK;
}

/* The plot area on the page and the axes it shows; plot_x, plot_y map data onto it. */
typedef struct {
    double left, top, w, h; /* the plot area */
    chart_axis ax, ay;
} chart_plot;

static double plot_x(const chart_plot *p, double x) {
    return p->left + (x - p->ax.lo) / (p->ax.hi - p->ax.lo) * p->w;
}
static double plot_y(const chart_plot *p, double y) {
    return p->top + p->h - (y - p->ay.lo) / (p->ay.hi - p->ay.lo) * p->h;
}

static void chart_series_style(cairo_t *cr, int k) {
    static const double dash[] = {6.0, 3.0};
    const double *rgb = CHART_RGB[k % CHART_PALETTE];
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_set_line_width(cr, CHART_LINE_W);
    cairo_set_dash(cr, dash, k >= CHART_PALETTE ? 2 : 0, 0);
}

/* Series k: a line broken at non-finite points, and markers (on isolated points only when
 * there are many). */
static void chart_draw_series(cairo_t *cr, const chart_plot *p, const double *x,
                              const double *y, int n, int k) {
    chart_series_style(cr, k);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    int pen = 0; /* a NaN lifts the pen: the line breaks there */
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) {
            pen = 0;
            continue;
        }
        if (pen) cairo_line_to(cr, plot_x(p, x[i]), plot_y(p, y[i]));
        else cairo_move_to(cr, plot_x(p, x[i]), plot_y(p, y[i]));
        pen = 1;
    }
    cairo_stroke(cr);
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        int isolated = (i == 0 || !isfinite(x[i - 1]) || !isfinite(y[i - 1])) &&
                       (i == n - 1 || !isfinite(x[i + 1]) || !isfinite(y[i + 1]));
        if (n > CHART_MARKERS_MAX && !isolated) continue;
        cairo_new_sub_path(cr);
        cairo_arc(cr, plot_x(p, x[i]), plot_y(p, y[i]), CHART_MARKER_R, 0, 2 * FIGURE_PI);
    }
    cairo_fill(cr);
}

static void chart_draw(cairo_t *cr, const char *title, const char *xlabel, const char *ylabel,
                       const double *x, int n, const caps_series *series, int nseries,
                       const chart_axis *ax, const chart_axis *ay) {
    char buf[64], name[32];
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);

    /* Widths that decide the plot area: y tick labels on the left, the legend on the right. */
    set_font(cr, CHART_TICK_FONT, 0);
    double tick_w = 0;
    for (int i = 0; i < ay->nticks; i++) {
        tick_label(buf, sizeof buf, axis_tick(ay, i), ay);
        tick_w = fmax(tick_w, text_width(cr, buf));
    }
    tick_w = fmin(tick_w, CHART_TICK_LABEL_MAX_W);
    set_font(cr, CHART_LEGEND_FONT, 0);
    double name_w = 0;
    for (int k = 0; k < nseries; k++) {
        snprintf(name, sizeof name, "series %d", k + 1);
        name_w = fmax(name_w, text_width(cr, series[k].name ? series[k].name : name));
    }
    name_w = fmin(name_w, CHART_LEGEND_NAME_MAX_W);

    chart_plot p = {0};
    p.ax = *ax;
    p.ay = *ay;
    p.left = CHART_MARGIN + (ylabel ? CHART_AXIS_TITLE_H : 0) + tick_w + CHART_TICK_GAP;
    p.top = title ? CHART_TITLE_H : CHART_MARGIN + CHART_TICK_FONT / 2;
    double right = CHART_W - CHART_MARGIN - name_w - CHART_LEGEND_SWATCH - 2 * CHART_LEGEND_PAD;
    double bottom = CHART_H - CHART_MARGIN - (xlabel ? CHART_AXIS_TITLE_H : 0) - CHART_TICK_LABEL_H;
    p.w = right - p.left;
    p.h = bottom - p.top;

    if (title) {
        cairo_set_source_rgb(cr, 0, 0, 0);
        set_font(cr, CHART_TITLE_FONT, 1);
        draw_text(cr, title, CHART_W / 2.0, CHART_TITLE_BASELINE, ALIGN_CENTER);
    }

    /* Grid lines and ticks: pixel-centred 1-pixel lines stay crisp. */
    cairo_set_line_width(cr, 1);
    set_font(cr, CHART_TICK_FONT, 0);
    for (int i = 0; i < ax->nticks; i++) {
        double v = axis_tick(ax, i), px = floor(plot_x(&p, v)) + 0.5;
        cairo_set_source_rgb(cr, CHART_GRID_RGB[0], CHART_GRID_RGB[1], CHART_GRID_RGB[2]);
        cairo_move_to(cr, px, p.top);
        cairo_line_to(cr, px, bottom);
        cairo_stroke(cr);
        set_rgb(cr, CHART_AXIS_RGB);
        cairo_move_to(cr, px, bottom);
        cairo_line_to(cr, px, bottom + CHART_TICK_LEN);
        cairo_stroke(cr);
        tick_label(buf, sizeof buf, v, ax);
        draw_text(cr, buf, px, bottom + CHART_TICK_LEN + CHART_TICK_FONT + 1, ALIGN_CENTER);
    }
    for (int i = 0; i < ay->nticks; i++) {
        double v = axis_tick(ay, i), py = floor(plot_y(&p, v)) + 0.5;
        cairo_set_source_rgb(cr, CHART_GRID_RGB[0], CHART_GRID_RGB[1], CHART_GRID_RGB[2]);
        cairo_move_to(cr, p.left, py);
        cairo_line_to(cr, right, py);
        cairo_stroke(cr);
        set_rgb(cr, CHART_AXIS_RGB);
        cairo_move_to(cr, p.left - CHART_TICK_LEN, py);
        cairo_line_to(cr, p.left, py);
        cairo_stroke(cr);
        tick_label(buf, sizeof buf, v, ay);
        draw_text(cr, buf, p.left - CHART_TICK_GAP, py + 0.36 * CHART_TICK_FONT, ALIGN_RIGHT);
    }
    set_rgb(cr, CHART_AXIS_RGB);
    cairo_rectangle(cr, floor(p.left) + 0.5, floor(p.top) + 0.5, floor(p.w), floor(p.h));
    cairo_stroke(cr);

    set_font(cr, CHART_AXIS_FONT, 0);
    if (xlabel)
        draw_text(cr, xlabel, p.left + p.w / 2, CHART_H - CHART_MARGIN - 4, ALIGN_CENTER);
    if (ylabel) {
        cairo_save(cr);
        cairo_translate(cr, CHART_MARGIN + CHART_AXIS_FONT, p.top + p.h / 2);
        cairo_rotate(cr, -FIGURE_PI / 2);
        draw_text(cr, ylabel, 0, 0, ALIGN_CENTER);
        cairo_restore(cr);
    }

    /* The series, clipped to the plot area (plus a marker's radius at the edges). */
    cairo_save(cr);
    cairo_rectangle(cr, p.left - CHART_MARKER_R, p.top - CHART_MARKER_R,
                    p.w + 2 * CHART_MARKER_R, p.h + 2 * CHART_MARKER_R);
    cairo_clip(cr);
    for (int k = 0; k < nseries; k++) chart_draw_series(cr, &p, x, series[k].y, n, k);
    cairo_restore(cr);

    /* Legend, right of the plot, as many entries as fit its height. */
    set_font(cr, CHART_LEGEND_FONT, 0);
    double lx = right + CHART_LEGEND_PAD;
    int fit = (int)(p.h / CHART_LEGEND_ROW);
    for (int k = 0; k < nseries && k < fit; k++) {
        double ly = p.top + CHART_LEGEND_ROW * (k + 0.5);
        chart_series_style(cr, k);
        cairo_move_to(cr, lx, ly);
        cairo_line_to(cr, lx + CHART_LEGEND_SWATCH, ly);
        cairo_stroke(cr);
        cairo_arc(cr, lx + CHART_LEGEND_SWATCH / 2.0, ly, CHART_MARKER_R, 0, 2 * FIGURE_PI);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_save(cr);
        cairo_rectangle(cr, lx, ly - CHART_LEGEND_ROW / 2.0,
                        CHART_LEGEND_SWATCH + CHART_LEGEND_PAD / 2.0 + name_w + 1,
                        CHART_LEGEND_ROW);
        cairo_clip(cr);
        snprintf(name, sizeof name, "series %d", k + 1);
        draw_text(cr, series[k].name ? series[k].name : name,
                  lx + CHART_LEGEND_SWATCH + CHART_LEGEND_PAD / 2.0, ly + 0.36 * CHART_LEGEND_FONT,
                  ALIGN_LEFT);
        cairo_restore(cr);
    }
}

/* The axes of a chart: its data spans over the finite points; none at all gives the unit
 * square. */
static int chart_axes(chart_axis *ax, chart_axis *ay, const char *path, const double *x, int n,
                      const caps_series *series, int nseries, caps_error *err) {
    int rc = chart_validate(path, x, n, series, nseries, err);
    if (rc) return rc;

    /* Data spans over the finite points; none at all gives the unit square. */
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i])) continue;
        xlo = fmin(xlo, x[i]);
        xhi = fmax(xhi, x[i]);
        for (int k = 0; k < nseries; k++) {
            double v = series[k].y[i];
            if (!isfinite(v)) continue;
            ylo = fmin(ylo, v);
            yhi = fmax(yhi, v);
        }
    }
    if (xlo > xhi) xlo = 0, xhi = 1;
    if (ylo > yhi) ylo = 0, yhi = 1;
    if (!axis_make(ax, xlo, xhi) || !axis_make(ay, ylo, yhi))
        return caps_fail(err, CAPS_ERR_ARG,
                         "%s: chart values span too wide a range to plot (x %g .. %g, y %g .. %g)",
                         path, xlo, xhi, ylo, yhi);
    return CAPS_OK;
}

int caps_chart_write_png(const char *path, const char *title, const char *xlabel,
                         const char *ylabel, const double *x, int n, const caps_series *series,
                         int nseries, caps_error *err) {
    chart_axis ax, ay;
    int rc = chart_axes(&ax, &ay, path, x, n, series, nseries, err);
    if (rc) return rc;
    cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, CHART_W, CHART_H);
    cairo_t *cr = cairo_create(img);
    cairo_status_t st = draw_status(cr, img);
    if (st == CAIRO_STATUS_SUCCESS) {
        cairo_set_source_rgb(cr, 1, 1, 1); /* an image has no transparent page: white */
        cairo_paint(cr);
        chart_draw(cr, title, xlabel, ylabel, x, n, series, nseries, &ax, &ay);
        st = draw_status(cr, img);
    }
    cairo_destroy(cr);
    cairo_surface_flush(img);
    if (st == CAIRO_STATUS_SUCCESS) rc = write_png_atomic(img, path, err);
    else rc = cairo_fail(err, path, "cannot draw the chart", st, 0);
    cairo_surface_destroy(img);
    return rc;
}

int caps_chart_write_svg(const char *path, const char *title, const char *xlabel,
                         const char *ylabel, const double *x, int n, const caps_series *series,
                         int nseries, caps_error *err) {
    chart_axis ax, ay;
    int rc = chart_axes(&ax, &ay, path, x, n, series, nseries, err);
    if (rc) return rc;

    caps_atomic_file af;
    rc = caps_atomic_open(&af, path, err);
    if (rc) return rc;
    stream_sink sink = {af.f, 0};
    cairo_surface_t *svg =
        cairo_svg_surface_create_for_stream(sink_write, &sink, CHART_W, CHART_H);
    cairo_t *cr = cairo_create(svg);
    cairo_status_t st = draw_status(cr, svg);
    if (st == CAIRO_STATUS_SUCCESS) {
        chart_draw(cr, title, xlabel, ylabel, x, n, series, nseries, &ax, &ay);
        st = cairo_status(cr);
    }
    cairo_destroy(cr);
    cairo_surface_finish(svg); /* writes the document to the stream */
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(svg);
    cairo_surface_destroy(svg);
    if (st != CAIRO_STATUS_SUCCESS) {
        caps_atomic_abort(&af);
        return cairo_fail(err, path, "cannot write SVG", st, sink.errnum);
    }
    return caps_atomic_commit(&af, err);
}

/* ------------------------------------------------------------------------ heat map */

#define HEATMAP_MAX_N 200       /* classes; beyond this a cell would be under HEATMAP_MIN_CELL */
#define HEATMAP_CELL 40         /* cell side for small matrices */
#define HEATMAP_TARGET_SIDE 800 /* larger matrices shrink their cells toward this side ... */
#define HEATMAP_MIN_CELL 8      /* ... but not below this: 200 classes give 1600 px */
#define HEATMAP_MARGIN 12
#define HEATMAP_TITLE_H 32      /* always reserved, so the size depends on n alone */
#define HEATMAP_TITLE_FONT 15.0
#define HEATMAP_TITLE_BASELINE 22
#define HEATMAP_AXIS_H 20       /* band of "predicted class" (top), width of "true class" (left) */
#define HEATMAP_AXIS_FONT 13.0
#define HEATMAP_NUM_BAND 30     /* class numbers: band height on top, width on the left */
#define HEATMAP_NUM_FONT 11.0
#define HEATMAP_NUM_PITCH 24    /* numbers at least this far apart: every 1, 2, 5, 10 ... class */
#define HEATMAP_COUNT_FONT 12.0 /* shrunk to fit a cell, not drawn below HEATMAP_MIN_FONT */
#define HEATMAP_MIN_FONT 6.0
#define HEATMAP_CELL_PAD 4      /* between a count and its cell's sides */
#define HEATMAP_MIN_W 360       /* room for a title over a small matrix */

/* The shading runs from white (share 0) to dark blue (share 1): ColorBrewer Blues' ends. */
static const double HEATMAP_LOW_RGB[3] = {1.0, 1.0, 1.0};
static const double HEATMAP_HIGH_RGB[3] = {0.031, 0.188, 0.420};
static const double HEATMAP_LINE_RGB[3] = {0.80, 0.80, 0.80};

static int heatmap_cell_side(int n) {
    int side = HEATMAP_TARGET_SIDE / n;
    return side > HEATMAP_CELL ? HEATMAP_CELL : side < HEATMAP_MIN_CELL ? HEATMAP_MIN_CELL : side;
}

/* Natural width of the heat map for n classes; the page is at least HEATMAP_MIN_W wide. */
static int heatmap_natural_width(int n) {
    return 2 * HEATMAP_MARGIN + HEATMAP_AXIS_H + HEATMAP_NUM_BAND + n * heatmap_cell_side(n);
}

void caps_heatmap_size(int n, int *width, int *height) {
    if (n < 1 || n > HEATMAP_MAX_N) {
        *width = *height = 0;
        return;
    }
    int w = heatmap_natural_width(n);
    *width = w < HEATMAP_MIN_W ? HEATMAP_MIN_W : w;
    *height = 2 * HEATMAP_MARGIN + HEATMAP_TITLE_H + HEATMAP_AXIS_H + HEATMAP_NUM_BAND +
              n * heatmap_cell_side(n);
}

void caps_heatmap_cell_origin(int n, int i, int j, int *x, int *y, int *side) {
    CAPS_ASSERT(n >= 1 && n <= HEATMAP_MAX_N && i >= 0 && i < n && j >= 0 && j < n);
    int s = heatmap_cell_side(n), natural = heatmap_natural_width(n);
    /* A matrix narrower than the page is centred on it, under the title. */
    int shift = natural < HEATMAP_MIN_W ? (HEATMAP_MIN_W - natural) / 2 : 0;
    *x = shift + HEATMAP_MARGIN + HEATMAP_AXIS_H + HEATMAP_NUM_BAND + j * s;
    *y = HEATMAP_MARGIN + HEATMAP_TITLE_H + HEATMAP_AXIS_H + HEATMAP_NUM_BAND + i * s;
    *side = s;
}

/* The first of 1, 2, 5, 10, 20, 50 ... classes whose numbers sit HEATMAP_NUM_PITCH apart. */
static int heatmap_label_every(int cell) {
    static const int mantissa[3] = {1, 2, 5};
    for (int decade = 1;; decade *= 10)
        for (int k = 0; k < 3; k++)
            if (decade * mantissa[k] * cell >= HEATMAP_NUM_PITCH) return decade * mantissa[k];
}

static void heatmap_draw(cairo_t *cr, const char *title, const int *counts, int n, int width) {
    int cell, gx, gy;
    caps_heatmap_cell_origin(n, 0, 0, &gx, &gy, &cell);
    int side = n * cell;
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);

    for (int i = 0; i < n; i++) {
        int64_t sum = 0; /* int64: a row of n int counts cannot overflow it */
        for (int j = 0; j < n; j++) sum += counts[(size_t)i * n + j];
        for (int j = 0; j < n; j++) {
            int count = counts[(size_t)i * n + j];
            double share = sum > 0 ? (double)count / (double)sum : 0.0, rgb[3];
            for (int c = 0; c < 3; c++)
                rgb[c] = HEATMAP_LOW_RGB[c] + share * (HEATMAP_HIGH_RGB[c] - HEATMAP_LOW_RGB[c]);
            double cx = gx + (double)j * cell, cy = gy + (double)i * cell;
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            cairo_rectangle(cr, cx, cy, cell, cell);
            cairo_fill(cr);

            /* The count, shrunk to fit; white on cells darker than middle gray (Rec. 709). */
            char buf[16];
            snprintf(buf, sizeof buf, "%d", count);
            set_font(cr, HEATMAP_COUNT_FONT, 0);
            double w = text_width(cr, buf), size = HEATMAP_COUNT_FONT;
            if (w > cell - 2 * HEATMAP_CELL_PAD) size *= (cell - 2 * HEATMAP_CELL_PAD) / w;
            if (size < HEATMAP_MIN_FONT) continue;
            double luma = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
            double ink = luma < 0.5 ? 1.0 : 0.0;
            cairo_set_source_rgb(cr, ink, ink, ink);
            set_font(cr, size, 0);
            draw_text(cr, buf, cx + cell / 2.0, cy + cell / 2.0 + 0.36 * size, ALIGN_CENTER);
        }
    }

    /* Cell borders where cells are large enough to show them, and a frame. */
    set_rgb(cr, HEATMAP_LINE_RGB);
    cairo_set_line_width(cr, 1);
    for (int k = 1; k < n && cell >= 2 * HEATMAP_MIN_CELL; k++) {
        cairo_move_to(cr, gx + k * cell + 0.5, gy);
        cairo_line_to(cr, gx + k * cell + 0.5, gy + side);
        cairo_move_to(cr, gx, gy + k * cell + 0.5);
        cairo_line_to(cr, gx + side, gy + k * cell + 0.5);
    }
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_rectangle(cr, gx - 0.5, gy - 0.5, side + 1, side + 1);
    cairo_stroke(cr);

    /* Class numbers: predicted along the top, true down the left. */
    cairo_set_source_rgb(cr, 0, 0, 0);
    set_font(cr, HEATMAP_NUM_FONT, 0);
    int every = heatmap_label_every(cell);
    for (int k = 0; k < n; k += every) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", k);
        double mid = (k + 0.5) * cell;
        draw_text(cr, buf, gx + mid, gy - HEATMAP_NUM_BAND / 2.0 + 0.36 * HEATMAP_NUM_FONT,
                  ALIGN_CENTER);
        draw_text(cr, buf, gx - HEATMAP_CELL_PAD - 2, gy + mid + 0.36 * HEATMAP_NUM_FONT,
                  ALIGN_RIGHT);
    }
    set_font(cr, HEATMAP_AXIS_FONT, 0);
    draw_text(cr, "predicted class", gx + side / 2.0, gy - HEATMAP_NUM_BAND - 5, ALIGN_CENTER);
    cairo_save(cr);
    cairo_translate(cr, gx - HEATMAP_NUM_BAND - HEATMAP_AXIS_H + HEATMAP_AXIS_FONT,
                    gy + side / 2.0);
    cairo_rotate(cr, -FIGURE_PI / 2);
    draw_text(cr, "true class", 0, 0, ALIGN_CENTER);
    cairo_restore(cr);
    if (title) {
        set_font(cr, HEATMAP_TITLE_FONT, 1);
        cairo_save(cr);
        cairo_rectangle(cr, 0, 0, width, HEATMAP_MARGIN + HEATMAP_TITLE_H);
        cairo_clip(cr);
        draw_text(cr, title, width / 2.0, HEATMAP_MARGIN + HEATMAP_TITLE_BASELINE, ALIGN_CENTER);
        cairo_restore(cr);
    }
}

int caps_heatmap_write_png(const char *path, const char *title, const int *counts, int n,
                           caps_error *err) {
    if (n < 1 || n > HEATMAP_MAX_N) {
        caps_fail(err, CAPS_ERR_ARG, "%s: heat map classes out of range (expected 1..%d, got %d)",
                  path, HEATMAP_MAX_N, n);
        caps_hint(err, "a confusion matrix over more than %d classes is unreadable as an image",
                  HEATMAP_MAX_N);
        return CAPS_ERR_ARG;
    }
    if (!counts) return caps_fail(err, CAPS_ERR_ARG, "%s: heat map counts is NULL", path);
    for (size_t k = 0; k < (size_t)n * n; k++)
        if (counts[k] < 0)
            return caps_fail(err, CAPS_ERR_ARG,
                             "%s: negative count (expected >= 0, got %d at true %d, predicted %d)",
                             path, counts[k], (int)(k / (size_t)n), (int)(k % (size_t)n));
    int width, height;
    caps_heatmap_size(n, &width, &height);
    cairo_surface_t *page = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    cairo_t *cr = cairo_create(page);
    cairo_status_t st = draw_status(cr, page);
    if (st == CAIRO_STATUS_SUCCESS) {
        heatmap_draw(cr, title, counts, n, width);
        cairo_surface_flush(page);
        st = draw_status(cr, page);
    }
    cairo_destroy(cr);
    int rc;
    if (st != CAIRO_STATUS_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "cannot draw a %d x %d image", width, height);
        rc = cairo_fail(err, path, what, st, 0);
    } else {
        rc = write_png_atomic(page, path, err);
    }
    cairo_surface_destroy(page);
    return rc;
}

/* cairo and fontconfig keep font caches and fontconfig's parsed configuration for the life
 * of the process, and LeakSanitizer counts part of the latter as lost; a program that drew
 * figures calls this once before it ends so that leak checks report only real leaks. */
void caps_figures_release(void) {
    cairo_debug_reset_static_data();
    FcFini();
}
