/*
 * test_image.c: caps_image_load, caps_image_load_channels and caps_image_write_png
 * (src/image.c).
 *
 * Every input is built here, in a temporary folder under /tmp that is removed at the end:
 * PNGs written with libpng directly in each colour type (gray 2/8/16-bit, RGB, palette with
 * and without tRNS, gray + alpha, interlaced), PGMs in both encodings, and broken files
 * (27x28, one byte short, sample > maxval, a header claiming 100000x100000, JPEG bytes, an
 * empty file, a PNG cut inside IDAT). Errors are checked by code, key phrase and path.
 *
 * Legend: H = image rows, W = image columns; files are W x H, buffers [H][W].
 */
#include <errno.h>
#include <png.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capsnet.h"
#include "test.h"
#include "test_files.h"

#define MAX_ROWS 64       /* largest test image side */
#define GRAY_TOL (1.0 / 255.0 + 1e-6) /* one 8-bit step: libpng rounds after rgb_to_gray */

/* BT.709 luma, libpng's default rgb_to_gray weights (out of 32768: 6968, 23434, 2366). */
#define LUMA_R 0.2126
#define LUMA_G 0.7152
#define LUMA_B 0.0722

/* xorshift32: deterministic noise, which deflate cannot shrink, so IDAT is long. */
static uint32_t noise_next(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void fill_noise(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(noise_next(&seed) >> 24);
}

/* A PNG written by libpng itself, in any layout: data holds height rows of rowbytes bytes
 * in PNG's own packing (big-endian 16-bit samples, low depths packed high bits first). */
typedef struct {
    int width, height, bit_depth, color_type, interlace;
    const uint8_t *data; /* [height][rowbytes] */
    size_t rowbytes;
    const png_color *palette; /* [num_palette] or NULL */
    int num_palette;
    const png_byte *trans; /* [num_trans] palette alphas, or NULL */
    int num_trans;
} raw_png;

static int raw_png_write(const char *path, const raw_png *p) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep rows[MAX_ROWS];
    if (!info || p->height > MAX_ROWS || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return 0;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)p->width, (png_uint_32)p->height, p->bit_depth,
                 p->color_type, p->interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (p->palette) png_set_PLTE(png, info, p->palette, p->num_palette);
    if (p->trans) png_set_tRNS(png, info, p->trans, p->num_trans, NULL);
    png_write_info(png, info);
    for (int y = 0; y < p->height; y++) rows[y] = (png_bytep)(p->data + (size_t)y * p->rowbytes);
    png_write_image(png, rows); /* handles the Adam7 passes of an interlaced file */
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f) == 0;
}

/* A PNG chunk length: 4 bytes, big-endian. */
static size_t be32(const unsigned char *b) {
    return (size_t)b[0] << 24 | (size_t)b[1] << 16 | (size_t)b[2] << 8 | b[3];
}

/* Offset of the first chunk of type "IDAT" etc. (its length field) in a PNG, or 0. */
static size_t png_find_chunk(const unsigned char *b, size_t n, const char *type) {
    size_t at = 8; /* after the signature */
    while (at + 12 <= n) {
        size_t len = be32(b + at);
        if (memcmp(b + at + 4, type, 4) == 0) return at;
        at += 12 + len;
    }
    return 0;
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

/* ------------------------------------------------------------------------ PNG */

TEST(png_round_trip) {
    char p[512];
    enum { H = 16, W = 16 };
    uint8_t px[H * W];
    float out[H * W];
    for (int i = 0; i < H * W; i++) px[i] = (uint8_t)i; /* every byte value once */
    caps_error err = {0};
    int rc = caps_image_write_png(test_path(p, "all.png"), px, H, W, &err);
    EXPECT(rc == CAPS_OK, "write: %s", err.msg);
    rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int i = 0; rc == CAPS_OK && i < H * W; i++)
        EXPECT(out[i] == (float)px[i] / 255.0f, "pixel %d: %g, want %d/255", i, out[i], px[i]);

    /* The data-set path (IDX files -> caps_make_batch_shifted) turns the same bytes into the
     * same floats, bit for bit, so predict on a PNG and test on the data set see one input. */
    caps_dataset ds = {.count = 1, .channels = 1, .rows = H, .cols = W, .images = px,
                       .labels = (uint8_t[]){0}};
    float batch[H * W];
    int idx = 0, label = -1;
    caps_make_batch_shifted(batch, &label, &ds, &idx, NULL, NULL, 1);
    EXPECT(rc == CAPS_OK && memcmp(batch, out, sizeof out) == 0,
           "data-set pixels differ from the PNG's (byte 2: %a vs %a)", batch[2], out[2]);

    /* IHDR: 8-bit (byte 24) grayscale (byte 25, colour type 0). */
    size_t n = 0;
    unsigned char *b = test_read_file(p, &n);
    EXPECT(b && n > 26 && b[24] == 8 && b[25] == PNG_COLOR_TYPE_GRAY, "IHDR not 8-bit gray");
    free(b);
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");

    /* Not square: a swapped h and w would scramble the pixels. */
    enum { H2 = 5, W2 = 7 };
    uint8_t px2[H2 * W2];
    float out2[H2 * W2];
    fill_noise(px2, sizeof px2, 7);
    rc = caps_image_write_png(test_path(p, "5x7.png"), px2, H2, W2, &err);
    EXPECT(rc == CAPS_OK, "write: %s", err.msg);
    rc = caps_image_load(p, out2, H2, W2, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int i = 0; rc == CAPS_OK && i < H2 * W2; i++)
        EXPECT(out2[i] == (float)px2[i] / 255.0f, "pixel %d: %g, want %d/255", i, out2[i], px2[i]);
}

TEST(png_rgb) {
    char p[512];
    enum { H = 5, W = 7 };
    uint8_t rgb[H * W * 3];
    float out[H * W];
    fill_noise(rgb, sizeof rgb, 11);
    /* Pure primaries and a gray, whose expected values are easy to read. */
    const uint8_t fixed[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {77, 77, 77}};
    memcpy(rgb, fixed, sizeof fixed);
    raw_png spec = {W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, rgb, W * 3, NULL, 0, NULL, 0};
    EXPECT(raw_png_write(test_path(p, "rgb.png"), &spec), "cannot write test file");
    caps_error err = {0};
    int rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int i = 0; rc == CAPS_OK && i < H * W; i++) {
        const uint8_t *c = rgb + 3 * i;
        double want = (LUMA_R * c[0] + LUMA_G * c[1] + LUMA_B * c[2]) / 255.0;
        EXPECT(test_close(out[i], want, 0, GRAY_TOL), "pixel %d (%d,%d,%d): %g, want %g", i,
               c[0], c[1], c[2], out[i], want);
    }
    EXPECT(out[3] == 77.0f / 255.0f, "gray pixel: %g, want 77/255", out[3]);
}

/* 4-bit palette: 8 gray entries (which must stay exact) and 8 colours. */
static void palette_fill(png_color pal[16], uint8_t *rows, size_t rowbytes, int h, int w) {
    for (int i = 0; i < 16; i++) {
        if (i < 8) {
            pal[i].red = pal[i].green = pal[i].blue = (png_byte)(i * 36);
        } else {
            pal[i].red = (png_byte)(i * 53);
            pal[i].green = (png_byte)(i * 97);
            pal[i].blue = (png_byte)(i * 29);
        }
    }
    memset(rows, 0, rowbytes * (size_t)h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int idx = (x + 3 * y) % 16;
            rows[(size_t)y * rowbytes + (size_t)x / 2] |= (uint8_t)(x % 2 ? idx : idx << 4);
        }
}

TEST(png_palette) {
    char p[512];
    enum { H = 5, W = 7, ROWBYTES = (W + 1) / 2 };
    png_color pal[16];
    uint8_t rows[H * ROWBYTES];
    float out[H * W];
    palette_fill(pal, rows, ROWBYTES, H, W);
    raw_png spec = {W, H, 4, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, rows, ROWBYTES, pal, 16,
                    NULL, 0};
    EXPECT(raw_png_write(test_path(p, "palette.png"), &spec), "cannot write test file");
    caps_error err = {0};
    int rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int y = 0; rc == CAPS_OK && y < H; y++)
        for (int x = 0; x < W; x++) {
            const png_color *c = &pal[(x + 3 * y) % 16];
            double want = (LUMA_R * c->red + LUMA_G * c->green + LUMA_B * c->blue) / 255.0;
            if (c->red == c->green && c->green == c->blue) /* gray entries stay exact */
                EXPECT(out[y * W + x] == (float)c->red / 255.0f, "(%d,%d): %g, want %d/255", x,
                       y, out[y * W + x], c->red);
            else
                EXPECT(test_close(out[y * W + x], want, 0, GRAY_TOL), "(%d,%d): %g, want %g", x,
                       y, out[y * W + x], want);
        }
}

TEST(png_palette_transparency) {
    char p[512];
    enum { H = 5, W = 7, ROWBYTES = (W + 1) / 2 };
    png_color pal[16];
    uint8_t rows[H * ROWBYTES];
    float out[H * W];
    palette_fill(pal, rows, ROWBYTES, H, W);
    /* tRNS: entry 0 fully transparent, 7 (gray 252) half, the rest opaque. */
    png_byte trans[8] = {0, 255, 255, 255, 255, 255, 255, 128};
    raw_png spec = {W, H, 4, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, rows, ROWBYTES, pal, 16,
                    trans, 8};
    EXPECT(raw_png_write(test_path(p, "trns.png"), &spec), "cannot write test file");
    caps_error err = {0};
    int rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int y = 0; rc == CAPS_OK && y < H; y++)
        for (int x = 0; x < W; x++) {
            int idx = (x + 3 * y) % 16;
            const png_color *c = &pal[idx];
            double alpha = idx < 8 ? trans[idx] / 255.0 : 1.0;
            double want = (LUMA_R * c->red + LUMA_G * c->green + LUMA_B * c->blue) / 255.0 * alpha;
            EXPECT(test_close(out[y * W + x], want, 0, GRAY_TOL), "(%d,%d) index %d: %g, want %g",
                   x, y, idx, out[y * W + x], want);
        }
}

TEST(png_gray16) {
    char p[512];
    enum { H = 5, W = 7 };
    uint8_t rows[H * W * 2];
    uint8_t v8[H * W];
    float out[H * W];
    fill_noise(v8, sizeof v8, 3);
    for (int i = 0; i < H * W; i++) {
        /* v * 257 is the 16-bit sample that means exactly v / 255. */
        unsigned v = v8[i] * 257u;
        rows[2 * i] = (uint8_t)(v >> 8); /* PNG is big-endian */
        rows[2 * i + 1] = (uint8_t)v;
    }
    raw_png spec = {W, H, 16, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, rows, W * 2, NULL, 0,
                    NULL, 0};
    EXPECT(raw_png_write(test_path(p, "gray16.png"), &spec), "cannot write test file");
    caps_error err = {0};
    int rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int i = 0; rc == CAPS_OK && i < H * W; i++)
        EXPECT(out[i] == (float)v8[i] / 255.0f, "pixel %d: %g, want %d/255", i, out[i], v8[i]);
}

TEST(png_gray2) {
    char p[512];
    enum { H = 5, W = 7, ROWBYTES = (W * 2 + 7) / 8 };
    uint8_t rows[H * ROWBYTES] = {0};
    float out[H * W];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) /* 2 bits a pixel, leftmost in the high bits */
            rows[y * ROWBYTES + x / 4] |= (uint8_t)(((x + y) % 4) << (6 - 2 * (x % 4)));
    raw_png spec = {W, H, 2, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, rows, ROWBYTES, NULL, 0,
                    NULL, 0};
    EXPECT(raw_png_write(test_path(p, "gray2.png"), &spec), "cannot write test file");
    caps_error err = {0};
    int rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int y = 0; rc == CAPS_OK && y < H; y++)
        for (int x = 0; x < W; x++) {
            float want = (float)((x + y) % 4 * 85) / 255.0f; /* 0, 1, 2, 3 -> 0, 85, 170, 255 */
            EXPECT(out[y * W + x] == want, "(%d,%d): %g, want %g", x, y, out[y * W + x], want);
        }
}

TEST(png_gray_alpha) {
    char p[512];
    enum { H = 5, W = 7 };
    uint8_t ga[H * W * 2];
    float out[H * W];
    fill_noise(ga, sizeof ga, 5);
    ga[0] = 200, ga[1] = 255; /* opaque: exactly 200/255 */
    ga[2] = 200, ga[3] = 0;   /* transparent: black */
    raw_png spec = {W, H, 8, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_INTERLACE_NONE, ga, W * 2, NULL, 0,
                    NULL, 0};
    EXPECT(raw_png_write(test_path(p, "ga.png"), &spec), "cannot write test file");
    caps_error err = {0};
    int rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int i = 0; rc == CAPS_OK && i < H * W; i++) {
        double want = ga[2 * i] / 255.0 * (ga[2 * i + 1] / 255.0); /* composited on black */
        EXPECT(test_close(out[i], want, 0, 1e-6), "pixel %d (g %d, a %d): %g, want %g", i,
               ga[2 * i], ga[2 * i + 1], out[i], want);
    }
    EXPECT(out[0] == 200.0f / 255.0f, "opaque pixel: %g", out[0]);
    EXPECT(out[1] == 0.0f, "transparent pixel: %g", out[1]);
}

TEST(png_interlaced) {
    char p[512];
    enum { H = 28, W = 28 };
    uint8_t px[H * W];
    float out[H * W];
    fill_noise(px, sizeof px, 9);
    raw_png spec = {W, H, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_ADAM7, px, W, NULL, 0, NULL, 0};
    EXPECT(raw_png_write(test_path(p, "adam7.png"), &spec), "cannot write test file");
    size_t n = 0;
    unsigned char *b = test_read_file(p, &n);
    EXPECT(b && n > 28 && b[28] == PNG_INTERLACE_ADAM7, "test file is not interlaced");
    free(b);
    caps_error err = {0};
    int rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int i = 0; rc == CAPS_OK && i < H * W; i++)
        EXPECT(out[i] == (float)px[i] / 255.0f, "pixel %d: %g, want %d/255", i, out[i], px[i]);
}

TEST(png_wrong_size) {
    char p[512];
    uint8_t px[28 * 28] = {0};
    float out[28 * 28];
    caps_error err = {0};
    EXPECT(caps_image_write_png(test_path(p, "27x28.png"), px, 28, 27, &err) == CAPS_OK, "%s", err.msg);
    int rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "wrong image size (expected 28x28 pixels (w x h), got 27x28)");

    /* h and w swapped: a 7 wide, 5 high file asked for as 7 high, 5 wide. */
    EXPECT(caps_image_write_png(test_path(p, "7x5.png"), px, 5, 7, &err) == CAPS_OK, "%s", err.msg);
    rc = caps_image_load(p, out, 7, 5, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "expected 5x7 pixels (w x h), got 7x5");
}

/* A 28x28 noise PNG from caps_image_write_png, as bytes; *idat the offset of its IDAT. */
static unsigned char *noise_png(const char *path, size_t *n, size_t *idat) {
    uint8_t px[28 * 28];
    fill_noise(px, sizeof px, 13);
    caps_error err = {0};
    if (caps_image_write_png(path, px, 28, 28, &err) != CAPS_OK) return NULL;
    unsigned char *b = test_read_file(path, n);
    *idat = b ? png_find_chunk(b, *n, "IDAT") : 0;
    return b;
}

TEST(png_truncated) {
    char p[512], q[512];
    size_t n = 0, idat = 0;
    float out[28 * 28];
    unsigned char *b = noise_png(test_path(p, "noise.png"), &n, &idat);
    EXPECT(b && idat > 0, "no IDAT in the test file");
    if (!b || !idat) {
        free(b);
        return;
    }
    size_t idat_len = be32(b + idat);
    EXPECT(idat_len > 100, "IDAT only %zu bytes", idat_len);

    /* Cut in the middle of the compressed data. */
    caps_error err = {0};
    EXPECT(test_write_file(test_path(q, "cut_idat.png"), b, idat + 8 + idat_len / 2), "write");
    int rc = caps_image_load(q, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, q);
    EXPECT_MSG(err, "truncated PNG data");

    /* Cut after the whole IDAT: every pixel is there, but IEND is missing. */
    EXPECT(test_write_file(test_path(q, "no_iend.png"), b, idat + 12 + idat_len), "write");
    rc = caps_image_load(q, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, q);
    EXPECT_MSG(err, "truncated PNG data");

    /* Only the signature. */
    EXPECT(test_write_file(test_path(q, "sig_only.png"), b, 8), "write");
    rc = caps_image_load(q, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, q);
    EXPECT_MSG(err, "truncated PNG data");

    /* Part of the signature. */
    EXPECT(test_write_file(test_path(q, "sig_half.png"), b, 4), "write");
    rc = caps_image_load(q, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, q);
    EXPECT_MSG(err, "truncated PNG signature");

    /* A flipped bit in IDAT's CRC. */
    b[idat + 8 + idat_len + 3] ^= 0x01;
    EXPECT(test_write_file(test_path(q, "bad_crc.png"), b, n), "write");
    rc = caps_image_load(q, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, q);
    EXPECT_MSG(err, "invalid PNG (IDAT: CRC error)");
    b[idat + 8 + idat_len + 3] ^= 0x01;

    /* A flipped byte in the compressed data: zlib's own check catches it first. */
    b[idat + 8 + idat_len / 2] ^= 0x5A;
    EXPECT(test_write_file(test_path(q, "bad_data.png"), b, n), "write");
    rc = caps_image_load(q, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, q);
    EXPECT_MSG(err, "invalid PNG");
    free(b);
}

/* ------------------------------------------------------------------------ PGM */

TEST(pgm_p5_comments) {
    char p[512];
    enum { H = 5, W = 7 };
    const char *header = "P5\n# written by a test\n7 # width\n# height next\n5\n255\n";
    unsigned char file[128 + H * W];
    size_t len = strlen(header);
    memcpy(file, header, len);
    fill_noise(file + len, H * W, 17);
    file[len] = '\n'; /* a raster byte that looks like whitespace must still be a pixel */
    file[len + 1] = '#';
    EXPECT(test_write_file(test_path(p, "p5.pgm"), file, len + H * W), "write");
    float out[H * W];
    caps_error err = {0};
    int rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int i = 0; rc == CAPS_OK && i < H * W; i++)
        EXPECT(out[i] == (float)file[len + i] / 255.0f, "pixel %d: %g, want %d/255", i, out[i],
               file[len + i]);

    /* A comment straight after maxval ends at its newline; the raster follows. */
    const char *header2 = "P5 7 5 255# end of header\n";
    size_t len2 = strlen(header2);
    memcpy(file, header2, len2);
    fill_noise(file + len2, H * W, 19);
    EXPECT(test_write_file(test_path(p, "p5b.pgm"), file, len2 + H * W), "write");
    rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int i = 0; rc == CAPS_OK && i < H * W; i++)
        EXPECT(out[i] == (float)file[len2 + i] / 255.0f, "pixel %d: %g", i, out[i]);
}

TEST(pgm_p2_comments) {
    char p[512];
    enum { H = 3, W = 4 };
    const char *text = "P2\n# ascii\n4 3\n# maxval\n15\n"
                       "0 1 2 3\n"
                       "4 5 6 7 # comment in the raster, as Netpbm allows\n"
                       "8\t9 10\r\n15\n";
    EXPECT(test_write_file(test_path(p, "p2.pgm"), text, strlen(text)), "write");
    const int want[H * W] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15};
    float out[H * W];
    caps_error err = {0};
    int rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int i = 0; rc == CAPS_OK && i < H * W; i++)
        EXPECT(out[i] == (float)want[i] / 15.0f, "pixel %d: %g, want %d/15", i, out[i], want[i]);
}

TEST(pgm_p5_16bit) {
    char p[512];
    enum { H = 2, W = 3 };
    const char *header = "P5 3 2 65535\n";
    const unsigned v[H * W] = {0, 1, 0x1234, 0x8000, 0xFFFE, 0xFFFF};
    unsigned char file[64];
    size_t len = strlen(header);
    memcpy(file, header, len);
    for (int i = 0; i < H * W; i++) {
        file[len + 2 * i] = (unsigned char)(v[i] >> 8); /* big-endian */
        file[len + 2 * i + 1] = (unsigned char)v[i];
    }
    EXPECT(test_write_file(test_path(p, "p5_16.pgm"), file, len + 2 * H * W), "write");
    float out[H * W];
    caps_error err = {0};
    int rc = caps_image_load(p, out, H, W, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    for (int i = 0; rc == CAPS_OK && i < H * W; i++)
        EXPECT(out[i] == (float)v[i] / 65535.0f, "pixel %d: %g, want %u/65535", i, out[i], v[i]);

    /* maxval 1000 also takes 2 bytes a sample; 1001 is out of range. */
    const char *header2 = "P5 3 2 1000\n";
    len = strlen(header2);
    memcpy(file, header2, len);
    memset(file + len, 0, 2 * H * W);
    file[len + 2 * 4] = 1001 >> 8;
    file[len + 2 * 4 + 1] = 1001 & 0xFF;
    EXPECT(test_write_file(test_path(p, "p5_1000.pgm"), file, len + 2 * H * W), "write");
    rc = caps_image_load(p, out, H, W, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "exceeds maxval at row 1, column 1 (expected at most 1000, got 1001)");
}

TEST(pgm_truncated) {
    char p[512];
    const char *header = "P5\n28 28\n255\n";
    unsigned char file[32 + 28 * 28] = {0};
    size_t len = strlen(header);
    memcpy(file, header, len);
    float out[28 * 28];
    caps_error err = {0};

    EXPECT(test_write_file(test_path(p, "short.pgm"), file, len + 28 * 28 - 1), "write");
    int rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "truncated pixel data (expected 784 bytes, got 783)");

    /* Header without its closing whitespace, then nothing. */
    EXPECT(test_write_file(test_path(p, "no_raster.pgm"), file, len - 1), "write");
    rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "truncated pixel data (expected 784 bytes, got 0)");

    EXPECT(test_write_file(test_path(p, "header_cut.pgm"), "P5\n28 ", 6), "write");
    rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "truncated PGM header (expected height, got end of file)");

    const char *text = "P2 3 2 9\n1 2 3\n4 5\n";
    EXPECT(test_write_file(test_path(p, "short.pgm"), text, strlen(text)), "write");
    rc = caps_image_load(p, out, 2, 3, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "truncated pixel data (expected 6 samples, got 5)");
}

TEST(pgm_bad_values) {
    char p[512];
    float out[6];
    caps_error err = {0};

    const char *over = "P2 3 2 15\n1 2 3\n4 16 5\n";
    EXPECT(test_write_file(test_path(p, "over.pgm"), over, strlen(over)), "write");
    int rc = caps_image_load(p, out, 2, 3, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "PGM sample exceeds maxval at row 1, column 1 (expected at most 15, got 16)");

    const char *word = "P2 3 2 15\n1 2 3\n4 five 5\n";
    EXPECT(test_write_file(test_path(p, "word.pgm"), word, strlen(word)), "write");
    rc = caps_image_load(p, out, 2, 3, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "bad PGM sample at row 1, column 1 (expected a decimal number, got 'five')");

    const char *sign = "P2 3 2 15\n1 2 3\n4 -1 5\n";
    EXPECT(test_write_file(test_path(p, "sign.pgm"), sign, strlen(sign)), "write");
    rc = caps_image_load(p, out, 2, 3, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "got '-1'");

    const char *width = "P5 3x 2 255\n";
    EXPECT(test_write_file(test_path(p, "width.pgm"), width, strlen(width)), "write");
    rc = caps_image_load(p, out, 2, 3, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "bad PGM width (expected a decimal number, got '3x')");

    const char *zero = "P5 3 2 0\n";
    EXPECT(test_write_file(test_path(p, "maxval0.pgm"), zero, strlen(zero)), "write");
    rc = caps_image_load(p, out, 2, 3, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "bad PGM maxval (expected 1 to 65535, got 0)");

    const char *big = "P5 3 2 65536\n";
    EXPECT(test_write_file(test_path(p, "maxval_big.pgm"), big, strlen(big)), "write");
    rc = caps_image_load(p, out, 2, 3, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "bad PGM maxval (expected 1 to 65535, got 65536)");

    /* A long token is cut in the message, and binary junk is not printed raw. */
    const char *junk = "P5 3 2 12345678901234567890123456789012345\x01\n";
    EXPECT(test_write_file(test_path(p, "junk.pgm"), junk, strlen(junk)), "write");
    rc = caps_image_load(p, out, 2, 3, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "got '123456789012345678901234...')");
}

TEST(pgm_huge_header) {
    char p[512];
    float out[28 * 28];
    caps_error err = {0};
    const char *huge = "P5\n100000 100000\n255\n"; /* 10 GB of pixels it does not have */
    EXPECT(test_write_file(test_path(p, "huge.pgm"), huge, strlen(huge)), "write");
    int rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "wrong image size (expected 28x28 pixels (w x h), got 100000x100000)");

    /* Past any integer type: saturates, still a size error, never an overflow. */
    const char *huger = "P2 99999999999999999999999 28 255\n";
    EXPECT(test_write_file(test_path(p, "huger.pgm"), huger, strlen(huger)), "write");
    rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "got 99999999999999999999999x28)");

    const char *small = "P5 27 28 255\n";
    EXPECT(test_write_file(test_path(p, "27x28.pgm"), small, strlen(small)), "write");
    rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "wrong image size (expected 28x28 pixels (w x h), got 27x28)");
}

/* ------------------------------------------------------------------------ other files */

TEST(unsupported_formats) {
    char p[512];
    float out[28 * 28];
    caps_error err = {0};

    const unsigned char jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0};
    EXPECT(test_write_file(test_path(p, "digit.png"), jpeg, sizeof jpeg), "write"); /* name lies */
    int rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "unsupported image format (expected PNG or PGM, got JPEG)");
    EXPECT(err.hint[0] != '\0', "no hint");

    EXPECT(test_write_file(test_path(p, "empty.pgm"), "", 0), "write");
    rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "unsupported image format (expected PNG or PGM, got an empty file)");
    EXPECT(err.hint[0] == '\0', "hint for an empty file: %s", err.hint);

    EXPECT(test_write_file(test_path(p, "text.txt"), "hello\n", 6), "write");
    rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "got unknown, first bytes 68 65 6C 6C)");

    EXPECT(test_write_file(test_path(p, "colour.ppm"), "P6 28 28 255\n", 13), "write");
    rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "got PPM");

    EXPECT(test_write_file(test_path(p, "one.bin"), "P", 1), "write");
    rc = caps_image_load(p, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
    EXPECT_MSG(err, "got unknown, first bytes 50)");
}

TEST(missing_file) {
    char p[512];
    float out[28 * 28];
    caps_error err = {0};
    int rc = caps_image_load(test_path(p, "no_such.png"), out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_IO, p);
    EXPECT_MSG(err, "cannot open (No such file or directory)");

    /* A folder opens but cannot be read. */
    rc = caps_image_load(test_dir, out, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_IO, test_dir);
}

/* ------------------------------------------------------------------------ channels */

/* A binary PPM (P6, maxval 255) of rgb [H*W][3] interleaved. */
static int write_ppm(const char *path, const uint8_t *rgb, int h, int w) {
    unsigned char file[64 + MAX_ROWS * MAX_ROWS * 3];
    int len = snprintf((char *)file, 64, "P6\n%d %d\n255\n", w, h);
    memcpy(file + len, rgb, (size_t)h * w * 3);
    return test_write_file(path, file, (size_t)len + (size_t)h * w * 3);
}

/* 3 channels of a colour PPM and PNG: the red, green and blue planes, each byte / 255 exactly. */
TEST(channels_colour) {
    char p[512], q[512];
    enum { H = 5, W = 7, HW = H * W };
    uint8_t rgb[HW * 3];
    float out[3 * HW], gray[HW], want_gray[HW];
    fill_noise(rgb, sizeof rgb, 31);
    EXPECT(write_ppm(test_path(p, "c.ppm"), rgb, H, W), "write");
    raw_png spec = {W, H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, rgb, W * 3, NULL, 0, NULL, 0};
    EXPECT(raw_png_write(test_path(q, "c.png"), &spec), "cannot write test file");
    const char *files[2] = {p, q};
    for (int f = 0; f < 2; f++) {
        caps_error err = {0};
        int rc = caps_image_load_channels(files[f], out, 3, H, W, &err);
        EXPECT(rc == CAPS_OK, "%s: %s", files[f], err.msg);
        for (int c = 0; rc == CAPS_OK && c < 3; c++)
            for (int i = 0; i < HW; i++)
                EXPECT(out[c * HW + i] == (float)rgb[3 * i + c] / 255.0f,
                       "%s channel %d pixel %d: %g, want %d/255", files[f], c, i,
                       out[c * HW + i], rgb[3 * i + c]);
    }

    /* 1 channel of the colour PNG is caps_image_load's gray, bit for bit; of the PPM (same
     * pixels, no gamma chunk either) the same gray again. */
    caps_error err = {0};
    EXPECT(caps_image_load(q, want_gray, H, W, &err) == CAPS_OK, "load: %s", err.msg);
    for (int f = 0; f < 2; f++) {
        int rc = caps_image_load_channels(files[f], gray, 1, H, W, &err);
        EXPECT(rc == CAPS_OK, "%s: %s", files[f], err.msg);
        EXPECT(rc == CAPS_OK && memcmp(gray, want_gray, sizeof gray) == 0,
               "%s: gray differs from caps_image_load's (pixel 0: %a vs %a)", files[f], gray[0],
               want_gray[0]);
    }
}

/* A gray image for a colour model: its plane three times. */
TEST(channels_gray) {
    char p[512], q[512];
    enum { H = 6, W = 4, HW = H * W };
    uint8_t px[HW];
    float out[3 * HW], one[HW];
    fill_noise(px, sizeof px, 37);
    caps_error err = {0};
    EXPECT(caps_image_write_png(test_path(p, "g.png"), px, H, W, &err) == CAPS_OK, "%s", err.msg);
    unsigned char file[64 + HW];
    int len = snprintf((char *)file, 64, "P5\n%d %d\n255\n", W, H);
    memcpy(file + len, px, HW);
    EXPECT(test_write_file(test_path(q, "g.pgm"), file, (size_t)len + HW), "write");
    const char *files[2] = {p, q};
    for (int f = 0; f < 2; f++) {
        int rc = caps_image_load_channels(files[f], out, 3, H, W, &err);
        EXPECT(rc == CAPS_OK, "%s: %s", files[f], err.msg);
        for (int c = 0; rc == CAPS_OK && c < 3; c++)
            for (int i = 0; i < HW; i++)
                EXPECT(out[c * HW + i] == (float)px[i] / 255.0f, "%s channel %d pixel %d: %g",
                       files[f], c, i, out[c * HW + i]);
        rc = caps_image_load_channels(files[f], one, 1, H, W, &err);
        EXPECT(rc == CAPS_OK && memcmp(one, out, sizeof one) == 0, "%s: 1 channel: %s", files[f],
               err.msg);
    }
}

TEST(channels_refused) {
    char p[512];
    enum { H = 5, W = 7 };
    uint8_t rgb[H * W * 3];
    float out[4 * H * W];
    fill_noise(rgb, sizeof rgb, 41);
    EXPECT(write_ppm(test_path(p, "c.ppm"), rgb, H, W), "write");
    caps_error err = {0};
    int counts[3] = {0, 2, 4};
    for (int k = 0; k < 3; k++) {
        int rc = caps_image_load_channels(p, out, counts[k], H, W, &err);
        EXPECT_ERROR(rc, err, CAPS_ERR_ARG, p);
        EXPECT_MSG(err, "expected 1 or 3");
    }
    /* The wrong size, at either channel count, names the file and both sizes. */
    for (int c = 1; c <= 3; c += 2) {
        int rc = caps_image_load_channels(p, out, c, W, H, &err);
        EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, p);
        EXPECT_MSG(err, "wrong image size (expected 5x7 pixels (w x h), got 7x5)");
    }
    int rc = caps_image_load_channels(test_path(p, "none.png"), out, 3, H, W, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_IO, p);
}

/* ------------------------------------------------------------------------ write errors */

TEST(write_missing_dir) {
    char p[512], d[512];
    uint8_t px[28 * 28] = {0};
    caps_error err = {0};
    int rc = caps_image_write_png(test_path(p, "no_dir/out.png"), px, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_IO, p);
    EXPECT_MSG(err, "No such file or directory");
    EXPECT(!test_file_exists(test_path(d, "no_dir")), "folder created");
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
}

TEST(write_over_directory) {
    char p[512];
    uint8_t px[28 * 28] = {0};
    caps_error err = {0};
    EXPECT(mkdir(test_path(p, "a_folder"), 0755) == 0, "mkdir: %s", strerror(errno));
    /* The temporary file is written, then cannot be renamed over the folder. */
    int rc = caps_image_write_png(p, px, 28, 28, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_IO, p);
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
}

/* A write that fails halfway through libpng's output (the file size limit stands in for a
 * full disk) leaves the old file as it was and no temporary file. */
TEST(write_fails_midway) {
    char p[512];
    enum { H = 64, W = 64 };
    uint8_t px[H * W];
    fill_noise(px, sizeof px, 23); /* noise: about 4 KiB of PNG, more than stdio buffers */
    const char *old = "old contents";
    EXPECT(test_write_file(test_path(p, "keep.png"), old, strlen(old)), "write");

    test_disk_full full;
    EXPECT(test_disk_full_begin(&full, 1000), "setrlimit: %s", strerror(errno));
    caps_error err = {0};
    int rc = caps_image_write_png(p, px, H, W, &err);
    test_disk_full_end(&full);

    EXPECT_ERROR(rc, err, CAPS_ERR_IO, p);
    EXPECT_MSG(err, "File too large");
    EXPECT(test_count_temp_files(test_dir) == 0, "temporary file left behind");
    size_t n = 0;
    unsigned char *b = test_read_file(p, &n);
    EXPECT(b && n == strlen(old) && memcmp(b, old, n) == 0, "old file changed");
    free(b);
}

int main(void) {
    if (!test_dir_create("image")) return 1;
    RUN(png_round_trip);
    RUN(png_rgb);
    RUN(png_palette);
    RUN(png_palette_transparency);
    RUN(png_gray16);
    RUN(png_gray2);
    RUN(png_gray_alpha);
    RUN(png_interlaced);
    RUN(png_wrong_size);
    RUN(png_truncated);
    RUN(pgm_p5_comments);
    RUN(pgm_p2_comments);
    RUN(pgm_p5_16bit);
    RUN(pgm_truncated);
    RUN(pgm_bad_values);
    RUN(pgm_huge_header);
    RUN(unsupported_formats);
    RUN(missing_file);
    RUN(channels_colour);
    RUN(channels_gray);
    RUN(channels_refused);
    RUN(write_missing_dir);
    RUN(write_over_directory);
    RUN(write_fails_midway);
    test_dir_remove();
    return TEST_SUMMARY();
}
