/*
 * image.c: single images in and out, for classifying a file and for saving reconstructions.
 *
 *   caps_image_load       grayscale PNG (via libpng) or PGM (P5 binary, P2 ASCII) -> [H][W] floats
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
 * Legend: H = h = image rows (height), W = w = image columns (width). Sizes in messages are
 * written W x H, the order of PNG, PGM and image viewers, and say so.
 * Output: out [H][W] row-major, value / maxval in [0, 1].
 */
#include <errno.h>
#include <png.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

/* ------------------------------------------------------------------------ format detection */

#define PNG_SIG_BYTES 8  /* 89 50 4E 47 0D 0A 1A 0A */
#define PGM_MAXVAL_MAX 65535
#define SNIFF_BYTES 8    /* enough for every signature we name */

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

/* Reads the rest of a PNG whose 8 signature bytes have been consumed from ctx->f.
 * out: [h][w]. */
static int image_png_load(image_png_ctx *ctx, float *out, int h, int w, caps_error *err) {
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
    if (fw != (png_uint_32)w || fh != (png_uint_32)h)
        image_png_fail(png, ctx, CAPS_ERR_FORMAT,
                       "wrong image size (expected %dx%d pixels (w x h), got %lux%lu)", w, h,
                       (unsigned long)fw, (unsigned long)fh);

    int color_type = png_get_color_type(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    /* A tRNS chunk is transparency too: make it an alpha channel and composite it below. */
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    /* Rounds (v * 255 + 32767) / 65535 where png_set_strip_16 would truncate to the high byte. */
    if (bit_depth == 16) png_set_scale_16(png);
    if (color_type & PNG_COLOR_MASK_COLOR) /* RGB, RGBA, and palettes once expanded */
        png_set_rgb_to_gray_fixed(png, PNG_ERROR_ACTION_NONE, PNG_RGB_TO_GRAY_DEFAULT,
                                  PNG_RGB_TO_GRAY_DEFAULT);
    png_set_interlace_handling(png); /* Adam7 files: libpng assembles the passes for us */
    png_read_update_info(png, info);

    /* After the transforms above: 8-bit gray, with or without alpha. */
    int channels = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_bit_depth(png, info) != 8 || (channels != 1 && channels != 2) ||
        rowbytes != (size_t)w * (size_t)channels)
        image_png_fail(png, ctx, CAPS_ERR_FORMAT,
                       "unsupported PNG layout after conversion (expected 8-bit gray, got "
                       "%d-bit, %d channels)",
                       png_get_bit_depth(png, info), channels);

    pixels = caps_alloc((size_t)h, rowbytes);
    rows = caps_alloc((size_t)h, sizeof *rows);
    if (!pixels || !rows)
        image_png_fail(png, ctx, CAPS_ERR_MEMORY, "out of memory (%zu bytes of pixels)",
                       (size_t)h * rowbytes);
    for (int y = 0; y < h; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    /* Reads up to IEND, so a file cut after the image data is still reported as truncated. */
    png_read_end(png, NULL);

    for (int y = 0; y < h; y++) {
        const png_byte *row = rows[y];
        float *o = out + (size_t)y * (size_t)w;
        if (channels == 1) {
            for (int x = 0; x < w; x++) o[x] = caps_unit_sample(row[x]);
        } else {
            /* Composite on black. alpha 255 gives exactly gray / 255, as an opaque file would. */
            for (int x = 0; x < w; x++)
                o[x] = caps_unit_sample(row[2 * x]) * caps_unit_sample(row[2 * x + 1]);
        }
    }
    free(rows);
    free(pixels);
    png_destroy_read_struct(&png, &info, NULL);
    return CAPS_OK;
}

/* ------------------------------------------------------------------------ PGM */

#define PGM_TOKEN_CHARS 24 /* kept for messages; longer tokens are cut with "..." */
#define PGM_CHUNK 4096     /* P5 raster read size, a multiple of both sample sizes */

typedef struct {
    FILE *f;
    const char *path;
} pgm_reader;

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
                         "%s: truncated PGM header (expected %s, got end of file)", r->path, what);
    if (!pgm_number(tok, value))
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: bad PGM %s (expected a decimal number, got '%s')", r->path, what,
                         tok);
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

static int pgm_sample_range(pgm_reader *r, size_t i, int w, long long v, int maxval,
                            caps_error *err) {
    return caps_fail(err, CAPS_ERR_FORMAT,
                     "%s: PGM sample exceeds maxval at row %zu, column %zu (expected at most %d, "
                     "got %lld)",
                     r->path, i / (size_t)w, i % (size_t)w, maxval, v);
}

/* P5: n = h*w samples of bps bytes each. No buffer beyond one chunk on the stack.
 * out: [n]. */
static int pgm_read_binary(pgm_reader *r, float *out, size_t n, int w, int maxval,
                           caps_error *err) {
    const size_t bps = maxval > 255 ? 2 : 1;
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
            if (v > maxval) return pgm_sample_range(r, i, w, v, maxval, err);
            out[i] = (float)v / (float)maxval;
        }
        done += want;
    }
    return CAPS_OK;
}

/* P2: n = h*w decimal samples separated by whitespace (comments allowed, as Netpbm does).
 * out: [n]. */
static int pgm_read_ascii(pgm_reader *r, float *out, size_t n, int w, int maxval,
                          caps_error *err) {
    char tok[PGM_TOKEN_CHARS + 4];
    int after = EOF;
    for (size_t i = 0; i < n; i++) {
        int got = pgm_token(r->f, tok, &after);
        if (got <= 0) return pgm_truncated(r, n, i, "samples", err);
        long long v;
        if (!pgm_number(tok, &v))
            return caps_fail(err, CAPS_ERR_FORMAT,
                             "%s: bad PGM sample at row %zu, column %zu (expected a decimal "
                             "number, got '%s')",
                             r->path, i / (size_t)w, i % (size_t)w, tok);
        if (v > maxval) return pgm_sample_range(r, i, w, v, maxval, err);
        out[i] = (float)v / (float)maxval;
    }
    return CAPS_OK;
}

/* Reads a PGM whose two magic bytes ("P5" or "P2") have been consumed. out: [h][w]. */
static int pgm_load(pgm_reader *r, int binary, float *out, int h, int w, caps_error *err) {
    char wtok[PGM_TOKEN_CHARS + 4], htok[PGM_TOKEN_CHARS + 4], mtok[PGM_TOKEN_CHARS + 4];
    long long fw, fh, maxval;
    int after = EOF, rc;
    if ((rc = pgm_header_number(r, "width", wtok, &fw, &after, err))) return rc;
    if ((rc = pgm_header_number(r, "height", htok, &fh, &after, err))) return rc;
    /* Before reading on: a header claiming a huge image is rejected here, and the raster is
     * only ever written into the caller's h*w floats. */
    if (fw != w || fh != h)
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: wrong image size (expected %dx%d pixels (w x h), got %sx%s)",
                         r->path, w, h, wtok, htok);
    if ((rc = pgm_header_number(r, "maxval", mtok, &maxval, &after, err))) return rc;
    if (maxval < 1 || maxval > PGM_MAXVAL_MAX)
        return caps_fail(err, CAPS_ERR_FORMAT, "%s: bad PGM maxval (expected 1 to %d, got %s)",
                         r->path, PGM_MAXVAL_MAX, mtok);
    size_t n = (size_t)h * (size_t)w;
    if (!binary) return pgm_read_ascii(r, out, n, w, (int)maxval, err);
    /* P5: exactly one whitespace byte ends the header. A comment there ends at its newline. */
    if (after == '#') {
        int c;
        do c = getc(r->f);
        while (c != '\n' && c != '\r' && c != EOF);
        if (c == EOF) return pgm_truncated(r, n * (maxval > 255 ? 2 : 1), 0, "bytes", err);
    } else if (after == EOF) {
        return pgm_truncated(r, n * (maxval > 255 ? 2 : 1), 0, "bytes", err);
    }
    return pgm_read_binary(r, out, n, w, (int)maxval, err);
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
        pgm_reader r = {f, path};
        rc = pgm_load(&r, sig[1] == '5', out, h, w, err);
    } else {
        if (n == 2) n += fread(sig + 2, 1, SNIFF_BYTES - 2, f);
        if (ferror(f)) {
            rc = caps_fail(err, CAPS_ERR_IO, "%s: read failed (%s)", path, strerror(errno));
        } else if (n == PNG_SIG_BYTES && memcmp(sig, png_signature, PNG_SIG_BYTES) == 0) {
            image_png_ctx ctx = {f, path, "invalid PNG", CAPS_OK, ""};
            rc = image_png_load(&ctx, out, h, w, err);
        } else {
            char desc[64];
            int other = sniff_describe(desc, sizeof desc, sig, n);
            rc = caps_fail(err, CAPS_ERR_FORMAT,
                           "%s: unsupported image format (expected PNG or PGM, got %s)", path,
                           desc);
            if (other)
                caps_hint(err, "convert it to a grayscale PNG, e.g. `convert in.jpg -colorspace "
                               "Gray -resize %dx%d! out.png`", w, h);
        }
    }
    fclose(f); /* read only: a close error cannot lose data */
    return rc;
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
