/*
 * image.c: single images in and out, for classifying a file, for image-folder data sets and
 * for saving reconstructions.
 *
 *   caps_image_load       grayscale PNG (via libpng) or PGM (P5 binary, P2 ASCII) -> [H][W] floats
 *   caps_image_read_u8    PNG, PGM or PPM (P6 binary, P3 ASCII) of any size -> [C][H][W] bytes,
 *                         C = 1 (gray) or 3 (RGB), for data_folder.c
 *   caps_image_load_channels  PNG, PGM or PPM -> [C][H][W] floats for a model of C = 1 or 3
 *                         input channels (capsnet predict): gray as caps_image_load, colour
 *                         from caps_image_read_u8's planes
 *   caps_image_write_png  [H][W] bytes -> 8-bit grayscale PNG, written atomically
 *
 * The format comes from the first bytes of the file, never from its name. The size must be
 * exactly what the network takes: nothing is scaled or cropped, so a wrong file fails
 * loudly instead of being classified as something plausible.
 *
 * PNG: every colour type and bit depth is accepted and reduced to 8-bit gray by libpng:
 * palettes and 1/2/4-bit gray are expanded, 16-bit samples scaled to 8 bits, colour converted
 * with libpng's standard luminance weights (ITU-R BT.709: 0.2126 R + 0.7152 G + 0.0722 B,
 * or those from the file's cHRM chunk). Where the file declares its gamma (gAMA or sRGB
 * chunk), libpng weighs linear light and re-encodes, so pure red reads 0.49 rather than
 * 0.21; gray pixels come out unchanged either way. Alpha is composited on black, gray *
 * alpha: the network expects MNIST's white digit on a black background, so a transparent
 * background must read as black, not as whatever colour the transparent pixels hold.
 *
 * PGM (Netpbm): "P5" or "P2", width, height, maxval (1..65535), separated by whitespace,
 * '#' comments to the end of a line allowed between them; then, after exactly one
 * whitespace byte, the raster: P5 has 1 byte per sample (2, big-endian, when maxval > 255),
 * P2 has decimal numbers. Every sample must be <= maxval.
 *
 * caps_image_read_u8 keeps colour: RGB and RGBA PNGs and PPMs give 3 channels (alpha
 * composited on black, channel * alpha / 255 rounded), gray and gray + alpha PNGs and PGMs give
 * 1; a palette PNG is gray when every palette entry is. Samples of more than 8 bits are
 * rounded to 8 as libpng's png_set_scale_16 does: (v * 255 + maxval / 2) / maxval. Both
 * readers share the libpng and Netpbm parsing below; only the last conversion differs.
 *
 * Legend: H = h = image rows (height), W = w = image columns (width). Sizes in messages are
 * written W x H, the order of PNG, PGM and image viewers, and say so.
 * Output: out [H][W] row-major, value / maxval in [0, 1].
 */
#include <errno.h>
#include <limits.h>
#include <png.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

/* ------------------------------------------------------------------------ format detection */

#define PNG_SIG_BYTES 8  /* 89 50 4E 47 0D 0A 1A 0A */
#define PGM_MAXVAL_MAX 65535
#define SNIFF_BYTES 8    /* enough for every signature we name */
/* The most bytes of pixels caps_image_read_u8 takes from a file of any size: callers index
 * pixels with int, as for IDX files. Checked from the header, before any allocation. */
#define IMAGE_MAX_BYTES INT_MAX
#define IMAGE_MAX_CHANNELS 3

static const unsigned char png_signature[PNG_SIG_BYTES] = {0x89, 'P', 'N', 'G',
                                                           0x0D, 0x0A, 0x1A, 0x0A};

/* What the first n bytes of an unsupported file look like, for the error message. Returns 1
 * when the file holds data of some other kind (worth a hint to convert it), 0 when it is
 * empty or a cut PNG. */
static int sniff_describe(char *desc, size_t cap, const unsigned char *b, size_t n) {
    if (n == 0) {
        snprintf(desc, cap, "an empty file");
        return 0;
    }
    if (n < PNG_SIG_BYTES && memcmp(b, png_signature, n) == 0) {
        snprintf(desc, cap, "a truncated PNG signature");
        return 0;
    }
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) {
        snprintf(desc, cap, "JPEG");
    } else if (n >= 4 && memcmp(b, "GIF8", 4) == 0) {
        snprintf(desc, cap, "GIF");
    } else if (n >= 2 && b[0] == 'B' && b[1] == 'M') {
        snprintf(desc, cap, "BMP");
    } else if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0)) {
        snprintf(desc, cap, "TIFF");
    } else if (n >= 2 && b[0] == 0x1F && b[1] == 0x8B) {
        snprintf(desc, cap, "gzip data");
    } else if (n >= 2 && b[0] == 'P' && (b[1] == '1' || b[1] == '4')) {
        snprintf(desc, cap, "PBM (P%c, bitmap)", b[1]);
    } else if (n >= 2 && b[0] == 'P' && (b[1] == '3' || b[1] == '6')) {
        snprintf(desc, cap, "PPM (P%c, colour)", b[1]);
    } else if (n >= 2 && b[0] == 'P' && b[1] == '7') {
        snprintf(desc, cap, "PAM (P7)");
    } else {
        size_t len = (size_t)snprintf(desc, cap, "unknown, first bytes");
        for (size_t i = 0; i < n && i < 4 && len < cap; i++)
            len += (size_t)snprintf(desc + len, cap - len, " %02X", b[i]);
    }
    return 1;
}

/* The rest of the signature, once its first two bytes ruled out PGM and PPM (*n of them read
 * into sig): *png says whether the file is a PNG. CAPS_ERR_IO on a read error. */
static int sniff_png(FILE *f, unsigned char *sig, size_t *n, int *png, const char *path,
                     caps_error *err) {
    if (*n == 2) *n += fread(sig + 2, 1, SNIFF_BYTES - 2, f);
    if (ferror(f))
        return caps_fail(err, CAPS_ERR_IO, "%s: read failed (%s)", path, strerror(errno));
    *png = *n == PNG_SIG_BYTES && memcmp(sig, png_signature, PNG_SIG_BYTES) == 0;
    return CAPS_OK;
}

/* "unsupported image format (expected <expected>, got <what the bytes look like>)";
 * *other: the bytes look like a known format of another kind (the caller's hint says how to
 * convert it). */
static int unsupported_format(const char *path, const char *expected, const unsigned char *sig,
                              size_t n, int *other, caps_error *err) {
    char desc[64];
    *other = sniff_describe(desc, sizeof desc, sig, n);
    return caps_fail(err, CAPS_ERR_FORMAT, "%s: unsupported image format (expected %s, got %s)",
                     path, expected, desc);
}

/* ------------------------------------------------------------------------ PNG */

/* Shared with the libpng callbacks through png_get_error_ptr / png_get_io_ptr. The caller
 * of the function that runs setjmp owns it, so its contents are well defined after the
 * longjmp (C11 7.13.2.1 only spares non-volatile locals of the setjmp function itself). */
typedef struct {
    FILE *f;
    const char *path;
    const char *what; /* how libpng's own messages are introduced: "invalid PNG" when reading */
    int code;         /* CAPS_OK until the first error; then the code to return */
    char msg[384];    /* what went wrong, without the path */
} image_png_ctx;

/* Records our own error and unwinds through libpng's longjmp; libpng then frees its state
 * in the setjmp branch of the caller. */
static _Noreturn void image_png_fail(png_structp png, image_png_ctx *ctx, int code,
                                     const char *fmt, ...) CAPS_PRINTF(4, 5);
static _Noreturn void image_png_fail(png_structp png, image_png_ctx *ctx, int code,
                                     const char *fmt, ...) {
    if (ctx->code == CAPS_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
        va_end(ap);
        ctx->code = code;
    }
    png_error(png, ctx->msg);
}

/* libpng's error callback must not return (libpng would then print and abort), so it
 * keeps the first message and jumps back to our setjmp. */
static void image_png_on_error(png_structp png, png_const_charp message) {
    image_png_ctx *ctx = png_get_error_ptr(png);
    if (ctx->code == CAPS_OK) {
        ctx->code = CAPS_ERR_FORMAT;
        snprintf(ctx->msg, sizeof ctx->msg, "%s (%s)", ctx->what, message);
    }
    png_longjmp(png, 1);
}

/* Warnings (a bad ancillary chunk, an unknown sRGB profile) do not change the pixels we
 * read; a library must not print them to the caller's stderr. */
static void image_png_on_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

/* Our own read callback instead of png_init_io, so a short file (truncated, CAPS_ERR_FORMAT)
 * is told apart from a failing read (CAPS_ERR_IO); libpng's reports both as "Read Error". */
static void image_png_read(png_structp png, png_bytep data, size_t length) {
    image_png_ctx *ctx = png_get_io_ptr(png);
    size_t got = fread(data, 1, length, ctx->f);
    if (got == length) return;
    if (ferror(ctx->f))
        image_png_fail(png, ctx, CAPS_ERR_IO, "read failed (%s)", strerror(errno));
    image_png_fail(png, ctx, CAPS_ERR_FORMAT, "truncated PNG data (unexpected end of file)");
}

/* The pixels of a PNG after libpng's transforms: 8-bit samples, interleaved as in the file. */
typedef struct {
    int h, w;
    int channels;     /* 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA */
    png_bytep pixels; /* [h][w * channels], malloc'd */
} image_png_pixels;

/* 1 when every palette entry is a gray (r = g = b): such a file is a gray image stored with
 * a palette (as some optimisers write them), not a colour one. */
static int image_png_gray_palette(png_structp png, png_infop info) {
    png_colorp pal = NULL;
    int num = 0;
    if (!png_get_PLTE(png, info, &pal, &num)) return 0;
    for (int i = 0; i < num; i++)
        if (pal[i].red != pal[i].green || pal[i].green != pal[i].blue) return 0;
    return 1;
}

/* Reads the rest of a PNG whose 8 signature bytes have been consumed from ctx->f, into 8-bit
 * samples. keep_colour 0: colour reduced to gray (caps_image_load); 1: RGB kept, gray stays
 * gray (caps_image_read_u8). want_h, want_w: the size required, or 0 for any size up to
 * IMAGE_MAX_BYTES. Both callers share every libpng step; only the last conversion differs. */
static int image_png_decode(image_png_ctx *ctx, int keep_colour, int want_h, int want_w,
                            image_png_pixels *out, caps_error *err) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, image_png_on_error,
                                             image_png_on_warning);
    if (!png) return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory (libpng)", ctx->path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory (libpng)", ctx->path);
    }
    /* Allocated after setjmp, so volatile: the error branch must see their current values. */
    png_bytep volatile pixels = NULL; /* [h][rowbytes] */
    png_bytep *volatile rows = NULL;  /* [h] pointers into pixels */
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        free(pixels);
        png_destroy_read_struct(&png, &info, NULL);
        return caps_fail(err, ctx->code, "%s: %s", ctx->path, ctx->msg);
    }
    png_set_read_fn(png, ctx, image_png_read);
    png_set_sig_bytes(png, PNG_SIG_BYTES);
    png_read_info(png, info);

    /* Before any allocation: a header claiming a huge image costs nothing. */
    png_uint_32 fw = png_get_image_width(png, info);
    png_uint_32 fh = png_get_image_height(png, info);
    if (want_w > 0 && (fw != (png_uint_32)want_w || fh != (png_uint_32)want_h))
        image_png_fail(png, ctx, CAPS_ERR_FORMAT,
                       "wrong image size (expected %dx%d pixels (w x h), got %lux%lu)", want_w,
                       want_h, (unsigned long)fw, (unsigned long)fh);
    if (want_w <= 0 && (size_t)fw * fh > IMAGE_MAX_BYTES / IMAGE_MAX_CHANNELS)
        image_png_fail(png, ctx, CAPS_ERR_FORMAT,
                       "image too large (expected at most %d bytes of pixels, got %lux%lu)",
                       IMAGE_MAX_BYTES, (unsigned long)fw, (unsigned long)fh);
    int h = (int)fh, w = (int)fw;

    int color_type = png_get_color_type(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    int to_gray = (color_type & PNG_COLOR_MASK_COLOR) && /* RGB, RGBA, palettes */
                  (!keep_colour || (color_type == PNG_COLOR_TYPE_PALETTE &&
                                    image_png_gray_palette(png, info)));
    int colour = (color_type & PNG_COLOR_MASK_COLOR) && !to_gray;
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    /* A tRNS chunk is transparency too: make it an alpha channel and composite it below. */
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    /* Rounds (v * 255 + 32767) / 65535 where png_set_strip_16 would truncate to the high byte. */
    if (bit_depth == 16) png_set_scale_16(png);
    if (to_gray)
        png_set_rgb_to_gray_fixed(png, PNG_ERROR_ACTION_NONE, PNG_RGB_TO_GRAY_DEFAULT,
                                  PNG_RGB_TO_GRAY_DEFAULT);
    png_set_interlace_handling(png); /* Adam7 files: libpng assembles the passes for us */
    png_read_update_info(png, info);

    /* After the transforms above: 8-bit gray or RGB, with or without alpha. */
    int channels = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    int want_channels = colour ? 3 : 1;
    if (png_get_bit_depth(png, info) != 8 ||
        (channels != want_channels && channels != want_channels + 1) ||
        rowbytes != (size_t)w * (size_t)channels)
        image_png_fail(png, ctx, CAPS_ERR_FORMAT,
                       "unsupported PNG layout after conversion (expected 8-bit %s, got "
                       "%d-bit, %d channels)",
                       colour ? "RGB" : "gray", png_get_bit_depth(png, info), channels);

    pixels = caps_alloc((size_t)h, rowbytes);
    rows = caps_alloc((size_t)h, sizeof *rows);
    if (!pixels || !rows)
        image_png_fail(png, ctx, CAPS_ERR_MEMORY, "out of memory (%zu bytes of pixels)",
                       (size_t)h * rowbytes);
    for (int y = 0; y < h; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    /* Reads up to IEND, so a file cut after the image data is still reported as truncated. */
    png_read_end(png, NULL);

    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->h = h;
    out->w = w;
    out->channels = channels;
    out->pixels = pixels;
    return CAPS_OK;
}

/* A PNG as gray floats: out [h][w]. */
static int image_png_load(image_png_ctx *ctx, float *out, int h, int w, caps_error *err) {
    image_png_pixels px;
    int rc = image_png_decode(ctx, 0, h, w, &px, err);
    if (rc) return rc;
    for (int y = 0; y < h; y++) {
        const png_byte *row = px.pixels + (size_t)y * (size_t)w * (size_t)px.channels;
        float *o = out + (size_t)y * (size_t)w;
        if (px.channels == 1) {
            for (int x = 0; x < w; x++) o[x] = caps_unit_sample(row[x]);
        } else {
            /* Composite on black. alpha 255 gives exactly gray / 255, as an opaque file would. */
            for (int x = 0; x < w; x++)
                o[x] = caps_unit_sample(row[2 * x]) * caps_unit_sample(row[2 * x + 1]);
        }
    }
    free(px.pixels);
    return CAPS_OK;
}

/* v * alpha / 255 rounded to nearest: an 8-bit sample composited on black. */
static uint8_t image_composite_u8(unsigned v, unsigned alpha) {
    return (uint8_t)((v * alpha + 127) / 255);
}

/* A PNG as 8-bit planes: *bytes [C][h][w], C = 1 (gray) or 3 (RGB); alpha composited on black. */
static int image_png_load_u8(image_png_ctx *ctx, int want_h, int want_w, int *h, int *w,
                             int *channels, uint8_t **bytes, caps_error *err) {
    image_png_pixels px;
    int rc = image_png_decode(ctx, 1, want_h, want_w, &px, err);
    if (rc) return rc;
    int alpha = px.channels == 2 || px.channels == 4;
    int c_out = alpha ? px.channels - 1 : px.channels;
    size_t plane = (size_t)px.h * (size_t)px.w;
    uint8_t *o = malloc(plane * (size_t)c_out);
    if (!o) {
        free(px.pixels);
        return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory (%zu bytes of pixels)",
                         ctx->path, plane * (size_t)c_out);
    }
    /* Interleaved [h][w][channels] -> planes [c][h][w], the layout of caps_dataset. */
    for (size_t i = 0; i < plane; i++) {
        const png_byte *p = px.pixels + i * (size_t)px.channels;
        for (int c = 0; c < c_out; c++)
            o[(size_t)c * plane + i] = alpha ? image_composite_u8(p[c], p[c_out]) : p[c];
    }
    free(px.pixels);
    *h = px.h;
    *w = px.w;
    *channels = c_out;
    *bytes = o;
    return CAPS_OK;
}

/* ------------------------------------------------------------------------ PGM and PPM */

#define PGM_TOKEN_CHARS 24 /* kept for messages; longer tokens are cut with "..." */
#define PGM_CHUNK 4096     /* P5/P6 raster read size, a multiple of both sample sizes */

/* PGM and PPM differ only in the samples per pixel, so one reader does both. */
typedef struct {
    FILE *f;
    const char *path;
    const char *kind; /* "PGM" or "PPM", for messages */
    int samples;      /* per pixel: 1 (PGM) or 3 (PPM: red, green, blue) */
} pgm_reader;

/* Where the samples go, one call per sample in file order. */
typedef struct {
    float *unit;    /* [h*w] v / maxval (caps_image_load, PGM only), or NULL */
    uint8_t *bytes; /* [samples][h*w] planes of 8-bit samples, or NULL */
    size_t plane;   /* h*w */
    int samples;
    int maxval;
} pgm_sink;

static void pgm_put(const pgm_sink *s, size_t i, int v) {
    if (s->unit) {
        s->unit[i] = (float)v / (float)s->maxval;
    } else {
        /* To 8 bits rounded to nearest, as png_set_scale_16 does: exact when maxval is 255. */
        uint8_t b = (uint8_t)(((unsigned)v * 255u + (unsigned)s->maxval / 2) / (unsigned)s->maxval);
        size_t px = i / (size_t)s->samples, c = i % (size_t)s->samples;
        s->bytes[c * s->plane + px] = b;
    }
}

static int pgm_is_space(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Skips whitespace and '#' comments; returns the first other byte (consumed), or EOF. */
static int pgm_skip(FILE *f) {
    for (;;) {
        int c = getc(f);
        if (c == '#') {
            while (c != '\n' && c != '\r' && c != EOF) c = getc(f);
        }
        if (c == EOF || !pgm_is_space(c)) return c;
    }
}

/* Reads the next token into tok (printable, at most PGM_TOKEN_CHARS characters plus "...").
 * The byte that ends it is consumed if it is whitespace and left in the stream if it is a
 * '#', so *after says whether exactly one whitespace byte followed (P5's raster starts right
 * after it). Returns 1 for a token, 0 at end of file, -1 on a read error. */
static int pgm_token(FILE *f, char *tok, int *after) {
    int c = pgm_skip(f);
    size_t n = 0;
    if (c == EOF) return ferror(f) ? -1 : 0;
    while (c != EOF && !pgm_is_space(c) && c != '#') {
        if (n < PGM_TOKEN_CHARS) tok[n++] = (c >= 0x20 && c < 0x7F && c != '\'') ? (char)c : '?';
        else if (n == PGM_TOKEN_CHARS) memcpy(tok + n, "...", 3), n += 3;
        c = getc(f);
    }
    tok[n] = '\0';
    if (c == '#') ungetc(c, f);
    if (c == EOF && ferror(f)) return -1;
    *after = c;
    return 1;
}

/* A token of decimal digits only (no sign, no exponent). Saturates instead of overflowing:
 * every caller compares against a far smaller limit. */
#define PGM_NUMBER_CAP 1000000000000LL
static int pgm_number(const char *tok, long long *value) {
    long long v = 0;
    if (!*tok) return 0;
    for (const char *p = tok; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        v = v > PGM_NUMBER_CAP ? v : v * 10 + (*p - '0');
    }
    *value = v;
    return 1;
}

/* One header number: what names it in messages ("width", "height", "maxval"). tok
 * [PGM_TOKEN_CHARS + 4] keeps its text, which messages quote rather than a saturated value. */
static int pgm_header_number(pgm_reader *r, const char *what, char *tok, long long *value,
                             int *after, caps_error *err) {
    int got = pgm_token(r->f, tok, after);
    if (got < 0)
        return caps_fail(err, CAPS_ERR_IO, "%s: read failed (%s)", r->path, strerror(errno));
    if (got == 0)
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: truncated %s header (expected %s, got end of file)", r->path,
                         r->kind, what);
    if (!pgm_number(tok, value))
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: bad %s %s (expected a decimal number, got '%s')", r->path, r->kind,
                         what, tok);
    return CAPS_OK;
}

/* The byte count expected vs read so far, for the truncation message. */
static int pgm_truncated(pgm_reader *r, size_t expected, size_t got, const char *unit,
                         caps_error *err) {
    if (ferror(r->f))
        return caps_fail(err, CAPS_ERR_IO, "%s: read failed (%s)", r->path, strerror(errno));
    return caps_fail(err, CAPS_ERR_FORMAT, "%s: truncated pixel data (expected %zu %s, got %zu)",
                     r->path, expected, unit, got);
}

/* Sample i (file order) exceeds maxval: the message names its pixel's row and column. */
static int pgm_sample_range(pgm_reader *r, size_t i, int w, long long v, int maxval,
                            caps_error *err) {
    size_t px = i / (size_t)r->samples;
    return caps_fail(err, CAPS_ERR_FORMAT,
                     "%s: %s sample exceeds maxval at row %zu, column %zu (expected at most %d, "
                     "got %lld)",
                     r->path, r->kind, px / (size_t)w, px % (size_t)w, maxval, v);
}

/* P5/P6: n samples of bps bytes each. No buffer beyond one chunk on the stack. */
static int pgm_read_binary(pgm_reader *r, const pgm_sink *s, size_t n, int w, caps_error *err) {
    const size_t bps = s->maxval > 255 ? 2 : 1;
    const size_t total = n * bps;
    unsigned char buf[PGM_CHUNK];
    size_t done = 0; /* bytes read */
    while (done < total) {
        size_t want = total - done < PGM_CHUNK ? total - done : PGM_CHUNK;
        size_t got = fread(buf, 1, want, r->f);
        if (got != want) return pgm_truncated(r, total, done + got, "bytes", err);
        for (size_t k = 0; k < want; k += bps) {
            int v = bps == 2 ? (buf[k] << 8) | buf[k + 1] : buf[k]; /* 2 bytes: big-endian */
            size_t i = (done + k) / bps;
            if (v > s->maxval) return pgm_sample_range(r, i, w, v, s->maxval, err);
            pgm_put(s, i, v);
        }
        done += want;
    }
    return CAPS_OK;
}

/* P2/P3: n decimal samples separated by whitespace (comments allowed, as Netpbm does). */
static int pgm_read_ascii(pgm_reader *r, const pgm_sink *s, size_t n, int w, caps_error *err) {
    char tok[PGM_TOKEN_CHARS + 4];
    int after = EOF;
    for (size_t i = 0; i < n; i++) {
        int got = pgm_token(r->f, tok, &after);
        if (got <= 0) return pgm_truncated(r, n, i, "samples", err);
        long long v;
        size_t px = i / (size_t)r->samples;
        if (!pgm_number(tok, &v))
            return caps_fail(err, CAPS_ERR_FORMAT,
                             "%s: bad %s sample at row %zu, column %zu (expected a decimal "
                             "number, got '%s')",
                             r->path, r->kind, px / (size_t)w, px % (size_t)w, tok);
        if (v > s->maxval) return pgm_sample_range(r, i, w, v, s->maxval, err);
        pgm_put(s, i, (int)v);
    }
    return CAPS_OK;
}

/* Reads the header of a PGM or PPM whose two magic bytes have been consumed: width, height,
 * maxval. want_h, want_w: the size required, or 0 for any size up to IMAGE_MAX_BYTES; either
 * way a header claiming a huge image is refused before anything is allocated. *after: the
 * byte after maxval, for pgm_raster. */
static int pgm_header(pgm_reader *r, int want_h, int want_w, int *h, int *w, int *maxval,
                      int *after, caps_error *err) {
    char wtok[PGM_TOKEN_CHARS + 4], htok[PGM_TOKEN_CHARS + 4], mtok[PGM_TOKEN_CHARS + 4];
    long long fw = 0, fh = 0, fmax = 0;
    int rc;
    if ((rc = pgm_header_number(r, "width", wtok, &fw, after, err))) return rc;
    if ((rc = pgm_header_number(r, "height", htok, &fh, after, err))) return rc;
    if (want_w > 0 && (fw != want_w || fh != want_h))
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: wrong image size (expected %dx%d pixels (w x h), got %sx%s)",
                         r->path, want_w, want_h, wtok, htok);
    if (fw < 1 || fh < 1)
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: bad %s size (expected at least 1x1 pixels, got %sx%s)", r->path,
                         r->kind, wtok, htok);
    if (fw > IMAGE_MAX_BYTES || fh > IMAGE_MAX_BYTES / fw / r->samples)
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: image too large (expected at most %d bytes of pixels, got %sx%s)",
                         r->path, IMAGE_MAX_BYTES, wtok, htok);
    if ((rc = pgm_header_number(r, "maxval", mtok, &fmax, after, err))) return rc;
    if (fmax < 1 || fmax > PGM_MAXVAL_MAX)
        return caps_fail(err, CAPS_ERR_FORMAT, "%s: bad %s maxval (expected 1 to %d, got %s)",
                         r->path, r->kind, PGM_MAXVAL_MAX, mtok);
    *w = (int)fw;
    *h = (int)fh;
    *maxval = (int)fmax;
    return CAPS_OK;
}

/* The raster after pgm_header, every sample into s. binary: P5/P6, else P2/P3. */
static int pgm_raster(pgm_reader *r, int binary, int after, const pgm_sink *s, int w,
                      caps_error *err) {
    size_t n = s->plane * (size_t)s->samples;
    if (!binary) return pgm_read_ascii(r, s, n, w, err);
    /* P5/P6: exactly one whitespace byte ends the header. A comment there ends at its newline. */
    if (after == '#') {
        int c;
        do c = getc(r->f);
        while (c != '\n' && c != '\r' && c != EOF);
        if (c == EOF) return pgm_truncated(r, n * (s->maxval > 255 ? 2 : 1), 0, "bytes", err);
    } else if (after == EOF) {
        return pgm_truncated(r, n * (s->maxval > 255 ? 2 : 1), 0, "bytes", err);
    }
    return pgm_read_binary(r, s, n, w, err);
}

/* ------------------------------------------------------------------------ public */

int caps_image_load(const char *path, float *out, int h, int w, caps_error *err) {
    CAPS_ASSERT(path && out && h > 0 && w > 0);
    FILE *f = fopen(path, "rb");
    if (!f) return caps_fail(err, CAPS_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));

    /* Two bytes decide PGM; the PNG signature needs eight. Reading no further than needed
     * keeps the stream where each parser expects it, so pipes work as well as files. */
    unsigned char sig[SNIFF_BYTES];
    size_t n = fread(sig, 1, 2, f);
    int rc;
    if (n == 2 && sig[0] == 'P' && (sig[1] == '5' || sig[1] == '2')) {
        pgm_reader r = {f, path, "PGM", 1};
        int fh, fw, maxval, after = EOF;
        rc = pgm_header(&r, h, w, &fh, &fw, &maxval, &after, err);
        if (!rc) {
            pgm_sink s = {out, NULL, (size_t)h * (size_t)w, 1, maxval};
            rc = pgm_raster(&r, sig[1] == '5', after, &s, w, err);
        }
    } else {
        int png = 0, other = 0;
        rc = sniff_png(f, sig, &n, &png, path, err);
        if (!rc && png) {
            image_png_ctx ctx = {f, path, "invalid PNG", CAPS_OK, ""};
            rc = image_png_load(&ctx, out, h, w, err);
        } else if (!rc) {
            rc = unsupported_format(path, "PNG or PGM", sig, n, &other, err);
            if (other)
                caps_hint(err, "convert it to a grayscale PNG, e.g. `convert in.jpg -colorspace "
                               "Gray -resize %dx%d! out.png`", w, h);
        }
    }
    fclose(f); /* read only: a close error cannot lose data */
    return rc;
}

int caps_image_read_u8(const char *path, int want_h, int want_w, int *h, int *w, int *channels,
                       uint8_t **bytes, caps_error *err) {
    CAPS_ASSERT(path && h && w && channels && bytes && (want_h > 0) == (want_w > 0));
    *bytes = NULL;
    *h = *w = *channels = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return caps_fail(err, CAPS_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));

    /* As in caps_image_load: two bytes decide PGM and PPM, eight PNG. */
    unsigned char sig[SNIFF_BYTES];
    size_t n = fread(sig, 1, 2, f);
    int rc;
    if (n == 2 && sig[0] == 'P' && strchr("2356", sig[1])) {
        int ppm = sig[1] == '3' || sig[1] == '6';
        pgm_reader r = {f, path, ppm ? "PPM" : "PGM", ppm ? 3 : 1};
        int fh, fw, maxval, after = EOF;
        rc = pgm_header(&r, want_h, want_w, &fh, &fw, &maxval, &after, err);
        uint8_t *o = NULL;
        if (!rc) {
            size_t plane = (size_t)fh * (size_t)fw;
            o = malloc(plane * (size_t)r.samples);
            if (!o)
                rc = caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory (%zu bytes of pixels)",
                               path, plane * (size_t)r.samples);
        }
        if (!rc) {
            pgm_sink s = {NULL, o, (size_t)fh * (size_t)fw, r.samples, maxval};
            rc = pgm_raster(&r, sig[1] == '5' || sig[1] == '6', after, &s, fw, err);
        }
        if (rc) {
            free(o);
        } else {
            *h = fh;
            *w = fw;
            *channels = r.samples;
            *bytes = o;
        }
    } else {
        int png = 0, other = 0;
        rc = sniff_png(f, sig, &n, &png, path, err);
        if (!rc && png) {
            image_png_ctx ctx = {f, path, "invalid PNG", CAPS_OK, ""};
            rc = image_png_load_u8(&ctx, want_h, want_w, h, w, channels, bytes, err);
        } else if (!rc) {
            rc = unsupported_format(path, "PNG, PGM or PPM", sig, n, &other, err);
            if (other) caps_hint(err, "convert it to PNG, e.g. `convert in.jpg out.png`");
        }
    }
    fclose(f); /* read only: a close error cannot lose data */
    return rc;
}

/* libpng's default rgb_to_gray weights in 1/32768 (BT.709: 0.2126, 0.7152, 0.0722), which it
 * applies to 8-bit samples of a file without gAMA or sRGB chunk: a PPM has neither, so gray
 * from a PPM is what libpng makes of the same pixels in a plain PNG. */
#define LUMA_R_FIXED 6968
#define LUMA_G_FIXED 23434
#define LUMA_B_FIXED 2366
#define LUMA_SHIFT 15

/* 1 when the file at path starts like a PPM (P3 or P6). A file that cannot be opened or read
 * says 0: caps_image_load then reports the failure in its own words. */
static int image_is_ppm(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char sig[2];
    int ppm = fread(sig, 1, 2, f) == 2 && sig[0] == 'P' && (sig[1] == '3' || sig[1] == '6');
    fclose(f);
    return ppm;
}

int caps_image_load_channels(const char *path, float *out, int channels, int h, int w,
                             caps_error *err) {
    CAPS_ASSERT(path && out && h > 0 && w > 0);
    if (channels != 1 && channels != 3)
        return caps_fail(err, CAPS_ERR_ARG,
                         "%s: cannot read an image for %d input channels (expected 1 or 3)",
                         path, channels);
    /* Gray from PNG and PGM: exactly caps_image_load, so a gray model sees one input however
     * it is asked for. */
    if (channels == 1 && !image_is_ppm(path)) return caps_image_load(path, out, h, w, err);
    int fh, fw, fc;
    uint8_t *b = NULL;
    int rc = caps_image_read_u8(path, h, w, &fh, &fw, &fc, &b, err);
    if (rc) return rc;
    size_t plane = (size_t)h * (size_t)w;
    if (channels == 1) { /* a PPM: fc is 3 */
        for (size_t i = 0; i < plane; i++) {
            unsigned r = b[i], g = b[plane + i], bl = b[2 * plane + i];
            /* libpng truncates (its "historical approach") and keeps r = g = b exact. */
            unsigned y = r == g && g == bl ? r
                                           : (LUMA_R_FIXED * r + LUMA_G_FIXED * g +
                                              LUMA_B_FIXED * bl) >> LUMA_SHIFT;
            out[i] = caps_unit_sample(y);
        }
    } else {
        /* Colour: the planes as they are. Gray: its plane three times, as PIL's convert("RGB"). */
        for (int c = 0; c < 3; c++) {
            const uint8_t *src = b + (fc == 3 ? (size_t)c * plane : 0);
            for (size_t i = 0; i < plane; i++)
                out[(size_t)c * plane + i] = caps_unit_sample(src[i]);
        }
    }
    free(b);
    return CAPS_OK;
}

/* Destination of libpng's output; see image_png_read for why not png_init_io. */
static void image_png_write(png_structp png, png_bytep data, size_t length) {
    image_png_ctx *ctx = png_get_io_ptr(png);
    if (fwrite(data, 1, length, ctx->f) != length)
        image_png_fail(png, ctx, CAPS_ERR_IO, "cannot write (%s)", strerror(errno));
}

static void image_png_flush(png_structp png) {
    image_png_ctx *ctx = png_get_io_ptr(png);
    if (fflush(ctx->f) != 0)
        image_png_fail(png, ctx, CAPS_ERR_IO, "cannot write (%s)", strerror(errno));
}

/* Everything libpng does for one write; the caller owns ctx (see image_png_ctx).
 * pixels: [h][w]. */
static int image_png_write_all(image_png_ctx *ctx, const uint8_t *pixels, int h, int w,
                               caps_error *err) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, image_png_on_error,
                                              image_png_on_warning);
    if (!png) return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory (libpng)", ctx->path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory (libpng)", ctx->path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        /* Whatever libpng itself rejects here (zlib, a limit) still means the file could not
         * be written, so it is an I/O error like a failing fwrite, not a format error. */
        return caps_fail(err, ctx->code == CAPS_ERR_FORMAT ? CAPS_ERR_IO : ctx->code,
                         "%s: %s", ctx->path, ctx->msg);
    }
    png_set_write_fn(png, ctx, image_png_write, image_png_flush);
    /* libpng's default limit is 1,000,000 pixels a side; PNG allows 2^31 - 1, as does int. */
    png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, pixels + (size_t)y * (size_t)w);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return CAPS_OK;
}

int caps_image_write_png(const char *path, const uint8_t *pixels, int h, int w,
                         caps_error *err) {
    CAPS_ASSERT(path && pixels && h > 0 && w > 0);
    caps_atomic_file af;
    int rc = caps_atomic_open(&af, path, err);
    if (rc) return rc;
    image_png_ctx ctx = {af.f, path, "libpng error", CAPS_OK, ""};
    rc = image_png_write_all(&ctx, pixels, h, w, err);
    if (rc) {
        caps_atomic_abort(&af); /* removes the temporary file: path keeps its old contents */
        return rc;
    }
    return caps_atomic_commit(&af, err);
}
