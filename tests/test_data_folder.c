/*
 * test_data_folder.c: data sets beyond IDX files: image folders (src/data_folder.c), the
 * channel-keeping image reader behind them (caps_image_read_u8, src/image.c), CIFAR-10's
 * binary batches (src/cifar.c) and the choice among the layouts (src/dataset.c).
 *
 * Every file is built here, in a temporary folder under /tmp removed at the end: PNGs written
 * with libpng directly (gray, gray + alpha, RGB, RGBA, palette, 16-bit), PGMs and PPMs by
 * hand in both encodings, CIFAR batches of 3 records each. Pixel values follow pattern(), so
 * a load is checked byte for byte and plane by plane; errors are checked by code, key phrase
 * and path, and the data set must be left zeroed.
 *
 * Legend: C = channels, H = image rows, W = image columns; files are W x H, buffers
 * [C][H][W]. The test images are 5 wide and 4 high, so a swapped H and W shows.
 */
#include <dirent.h>
#include <png.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capsnet.h"
#include "test.h"
#include "test_files.h"
#include "util.h"

#define H 4
#define W 5
#define PLANE (H * W)

/* Sample c of pixel i of test image `id`: distinct per image, channel and pixel. */
static uint8_t pattern(int id, int c, int i) { return (uint8_t)(id * 37 + c * 101 + i * 3 + 1); }

/* ------------------------------------------------------------------------ files */

/* test_dir/a/b/... into a ring of buffers, so a call can use several at once. */
static const char *at(const char *rel) {
    static char ring[8][TEST_PATH_MAX];
    static int next;
    return test_path(ring[next++ % 8], rel);
}

static void make_dir(const char *rel) {
    if (mkdir(at(rel), 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "mkdir %s: %s\n", at(rel), strerror(errno));
        abort();
    }
}

/* Removes path and everything under it. */
static void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            for (struct dirent *e; (e = readdir(d));) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char sub[TEST_PATH_MAX];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                remove_tree(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void put(const char *rel, const void *data, size_t n) {
    if (!test_write_file(at(rel), data, n)) {
        fprintf(stderr, "cannot write %s\n", at(rel));
        abort();
    }
}

/* A PGM (P5 binary or P2 ASCII) of image id: pixel i = pattern(id, 0, i). */
static void put_pgm(const char *rel, int id, int binary) {
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%s\n%d %d\n255\n", binary ? "P5" : "P2", W, H);
    for (int i = 0; i < PLANE; i++) {
        if (binary) buf[n++] = (char)pattern(id, 0, i);
        else n += snprintf(buf + n, sizeof buf - (size_t)n, "%d ", pattern(id, 0, i));
    }
    put(rel, buf, (size_t)n);
}

/* A PPM (P6 or P3) of image id: pixel i = (pattern(id, 0, i), pattern(id, 1, i), ...). */
static void put_ppm(const char *rel, int id, int binary) {
    char buf[8192];
    int n = snprintf(buf, sizeof buf, "%s\n# a comment\n%d %d\n255\n", binary ? "P6" : "P3", W,
                     H);
    for (int i = 0; i < PLANE; i++)
        for (int c = 0; c < 3; c++) {
            if (binary) buf[n++] = (char)pattern(id, c, i);
            else n += snprintf(buf + n, sizeof buf - (size_t)n, "%d\n", pattern(id, c, i));
        }
    put(rel, buf, (size_t)n);
}

/* A PNG as libpng writes it: rows of rowbytes bytes in PNG's packing. */
static void put_png_raw(const char *rel, int w, int h, int depth, int type, const uint8_t *data,
                        size_t rowbytes, const png_color *pal, int npal) {
    FILE *f = fopen(at(rel), "wb");
    CAPS_ASSERT(f != NULL);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    CAPS_ASSERT(info != NULL);
    if (setjmp(png_jmpbuf(png))) abort();
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_bytep)(data + (size_t)y * rowbytes));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    CAPS_ASSERT(fclose(f) == 0);
}

/* An 8-bit PNG of image id with `channels` samples per pixel (1 gray, 2 gray + alpha, 3 RGB,
 * 4 RGBA), alpha 255 (opaque) unless alpha >= 0; side sizes w x h. */
static void put_png(const char *rel, int id, int channels, int alpha, int w, int h) {
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                 PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    uint8_t data[64 * 64 * 4];
    int colour = channels >= 3 ? 3 : 1, has_alpha = channels == 2 || channels == 4;
    for (int i = 0; i < w * h; i++) {
        for (int c = 0; c < colour; c++) data[i * channels + c] = pattern(id, c, i);
        if (has_alpha) data[i * channels + colour] = (uint8_t)(alpha >= 0 ? alpha : 255);
    }
    put_png_raw(rel, w, h, 8, types[channels], data, (size_t)w * (size_t)channels, NULL, 0);
}

/* ------------------------------------------------------------------------ checks */

#define EXPECT_ERROR(rc, err, want, path)                                                  \
    do {                                                                                   \
        EXPECT((rc) == (want), "code %d, want %d (%s)", (rc), (want), (err).msg);          \
        EXPECT((err).code == (want), "stored code %d, want %d", (err).code, (want));       \
        EXPECT(strstr((err).msg, (path)) != NULL, "path %s missing from \"%s\"", (path),   \
               (err).msg);                                                                 \
        if (getenv("CAPS_TEST_VERBOSE"))                                                   \
            fprintf(stderr, "    %s%s%s\n", (err).msg, (err).hint[0] ? "\n    hint: " : "", \
                    (err).hint);                                                           \
    } while (0)
#define EXPECT_MSG(err, phrase) \
    EXPECT(strstr((err).msg, (phrase)) != NULL, "\"%s\" missing from \"%s\"", (phrase), (err).msg)

static int dataset_is_zero(const caps_dataset *ds) {
    return ds->count == 0 && ds->channels == 0 && ds->rows == 0 && ds->cols == 0 &&
           !ds->images && !ds->labels && ds->num_names == 0 && !ds->class_names;
}

/* Image k of ds is test image id in C channels. */
static int image_is(const caps_dataset *ds, int k, int id, int C) {
    const uint8_t *img = ds->images + (size_t)k * (size_t)(C * PLANE);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < PLANE; i++)
            if (img[c * PLANE + i] != pattern(id, c, i)) return 0;
    return 1;
}

/* A fresh data folder "name" under test_dir (removed first if there). */
static const char *fresh(const char *name) {
    remove_tree(at(name));
    make_dir(name);
    return at(name);
}

/* ------------------------------------------------------------------------ image reader */

TEST(read_u8_kinds) {
    fresh("img");
    struct {
        const char *file;
        int channels;
    } cases[] = {{"img/p5.pgm", 1}, {"img/p2.pgm", 1}, {"img/p6.ppm", 3},
                 {"img/p3.ppm", 3}, {"img/g.png", 1},  {"img/rgb.png", 3}};
    put_pgm("img/p5.pgm", 1, 1);
    put_pgm("img/p2.pgm", 1, 0);
    put_ppm("img/p6.ppm", 1, 1);
    put_ppm("img/p3.ppm", 1, 0);
    put_png("img/g.png", 1, 1, -1, W, H);
    put_png("img/rgb.png", 1, 3, -1, W, H);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        caps_error err = {0};
        int h, w, c;
        uint8_t *px = NULL;
        int rc = caps_image_read_u8(at(cases[k].file), 0, 0, &h, &w, &c, &px, &err);
        EXPECT(rc == CAPS_OK, "%s: %s", cases[k].file, err.msg);
        if (rc) continue;
        EXPECT(h == H && w == W && c == cases[k].channels, "%s: %dx%dx%d", cases[k].file, c, h,
               w);
        caps_dataset one = {.count = 1, .channels = c, .rows = h, .cols = w, .images = px};
        EXPECT(image_is(&one, 0, 1, c), "%s: pixels differ (first %d, want %d)", cases[k].file,
               px[0], pattern(1, 0, 0));
        free(px);
    }
}

TEST(read_u8_alpha_depth_palette) {
    fresh("img2");
    caps_error err = {0};
    int h, w, c, rc;
    uint8_t *px = NULL;

    /* Gray + alpha 128 and RGBA alpha 128: v * 128 / 255 rounded, composited on black. */
    put_png("img2/ga.png", 2, 2, 128, W, H);
    rc = caps_image_read_u8(at("img2/ga.png"), 0, 0, &h, &w, &c, &px, &err);
    EXPECT(rc == CAPS_OK && c == 1, "ga: %s (c %d)", err.msg, c);
    for (int i = 0; rc == CAPS_OK && i < PLANE; i++)
        EXPECT(px[i] == (pattern(2, 0, i) * 128 + 127) / 255, "ga pixel %d: %d", i, px[i]);
    free(px);
    put_png("img2/rgba.png", 2, 4, 128, W, H);
    rc = caps_image_read_u8(at("img2/rgba.png"), 0, 0, &h, &w, &c, &px, &err);
    EXPECT(rc == CAPS_OK && c == 3, "rgba: %s (c %d)", err.msg, c);
    for (int k = 0; rc == CAPS_OK && k < 3 * PLANE; k++)
        EXPECT(px[k] == (pattern(2, k / PLANE, k % PLANE) * 128 + 127) / 255,
               "rgba sample %d: %d", k, px[k]);
    free(px);

    /* 16-bit PGM: (v * 255 + 32767) / 65535; 0x8080 -> 128, 0x807F -> 128, 0x007F -> 0. */
    const uint8_t p16[] = "P5 2 1 65535\n\x80\x80\x00\x7f";
    put("img2/16.pgm", p16, sizeof p16 - 1);
    rc = caps_image_read_u8(at("img2/16.pgm"), 0, 0, &h, &w, &c, &px, &err);
    EXPECT(rc == CAPS_OK && h == 1 && w == 2 && c == 1, "16-bit: %s", err.msg);
    if (rc == CAPS_OK) EXPECT(px[0] == 128 && px[1] == 0, "16-bit: %d %d", px[0], px[1]);
    free(px);
    /* maxval 15: v * 255 / 15 exactly. */
    const uint8_t p15[] = "P2 3 1 15\n0 7 15\n";
    put("img2/15.pgm", p15, sizeof p15 - 1);
    rc = caps_image_read_u8(at("img2/15.pgm"), 0, 0, &h, &w, &c, &px, &err);
    EXPECT(rc == CAPS_OK, "maxval 15: %s", err.msg);
    if (rc == CAPS_OK) EXPECT(px[0] == 0 && px[1] == 119 && px[2] == 255, "%d %d %d", px[0], px[1], px[2]);
    free(px);
    /* 16-bit PNG gray: libpng's png_set_scale_16 rounding. */
    const uint8_t g16[4] = {0x80, 0x80, 0xff, 0xff};
    put_png_raw("img2/g16.png", 2, 1, 16, PNG_COLOR_TYPE_GRAY, g16, 4, NULL, 0);
    rc = caps_image_read_u8(at("img2/g16.png"), 0, 0, &h, &w, &c, &px, &err);
    EXPECT(rc == CAPS_OK && c == 1, "16-bit png: %s", err.msg);
    if (rc == CAPS_OK) EXPECT(px[0] == 128 && px[1] == 255, "16-bit png: %d %d", px[0], px[1]);
    free(px);

    /* A palette of grays is a gray image; one colour entry makes it colour. */
    png_color pal[2] = {{10, 10, 10}, {200, 200, 200}};
    const uint8_t idx[3] = {0, 1, 1};
    put_png_raw("img2/palgray.png", 3, 1, 8, PNG_COLOR_TYPE_PALETTE, idx, 3, pal, 2);
    rc = caps_image_read_u8(at("img2/palgray.png"), 0, 0, &h, &w, &c, &px, &err);
    EXPECT(rc == CAPS_OK && c == 1, "gray palette: %s (c %d)", err.msg, c);
    if (rc == CAPS_OK) EXPECT(px[0] == 10 && px[1] == 200 && px[2] == 200, "gray palette px");
    free(px);
    pal[1].green = 50;
    put_png_raw("img2/palrgb.png", 3, 1, 8, PNG_COLOR_TYPE_PALETTE, idx, 3, pal, 2);
    rc = caps_image_read_u8(at("img2/palrgb.png"), 0, 0, &h, &w, &c, &px, &err);
    EXPECT(rc == CAPS_OK && c == 3, "colour palette: %s (c %d)", err.msg, c);
    if (rc == CAPS_OK)
        EXPECT(px[1] == 200 && px[3 + 1] == 50 && px[6 + 1] == 200 && px[6 + 0] == 10,
               "colour palette planes");
    free(px);

    /* A size asked for is checked from the header. */
    rc = caps_image_read_u8(at("img2/rgba.png"), H, W + 1, &h, &w, &c, &px, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, "img2/rgba.png");
    EXPECT_MSG(err, "wrong image size (expected 6x4 pixels (w x h), got 5x4)");
    EXPECT(px == NULL, "pixels left on failure");
    rc = caps_image_read_u8(at("img2/p3.ppm"), H, W, &h, &w, &c, &px, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_IO, "img2/p3.ppm");
    const uint8_t bad[] = "P6 2 1 255\n\x01\x02\x03\x04\x05";
    put("img2/short.ppm", bad, sizeof bad - 1);
    rc = caps_image_read_u8(at("img2/short.ppm"), 0, 0, &h, &w, &c, &px, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, "img2/short.ppm");
    EXPECT_MSG(err, "truncated pixel data (expected 6 bytes, got 5)");
    const uint8_t over[] = "P3 1 1 100\n1 2 101\n";
    put("img2/over.ppm", over, sizeof over - 1);
    rc = caps_image_read_u8(at("img2/over.ppm"), 0, 0, &h, &w, &c, &px, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, "img2/over.ppm");
    EXPECT_MSG(err, "PPM sample exceeds maxval at row 0, column 0 (expected at most 100, got 101)");
    const uint8_t huge[] = "P6 100000 100000 255\n";
    put("img2/huge.ppm", huge, sizeof huge - 1);
    rc = caps_image_read_u8(at("img2/huge.ppm"), 0, 0, &h, &w, &c, &px, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_FORMAT, "img2/huge.ppm");
    EXPECT_MSG(err, "image too large");
}

/* ------------------------------------------------------------------------ image folders */

/* dir/train: classes "cat" (3 images), "ant" (2), "dog" (1), as gray PGM and PNG files in
 * an unsorted mix with files to skip; dir/test: the same classes, one image each. Image ids:
 * train ant a.pgm 10, b.PNG 11; cat 1.pgm 20, 10.pgm 21, 2.png 22; dog x.pgm 30;
 * test ant 40, cat 41, dog 42. */
static void make_gray_set(const char *name) {
    char rel[256];
    fresh(name);
#define R(s) (snprintf(rel, sizeof rel, "%s/%s", name, s), rel)
    make_dir(R("train"));
    make_dir(R("test"));
    const char *classes[] = {"cat", "ant", "dog"};
    for (int k = 0; k < 3; k++) {
        char sub[64];
        snprintf(sub, sizeof sub, "train/%s", classes[k]);
        make_dir(R(sub));
        snprintf(sub, sizeof sub, "test/%s", classes[k]);
        make_dir(R(sub));
    }
    put_pgm(R("train/ant/a.pgm"), 10, 1);
    put_png(R("train/ant/b.PNG"), 11, 1, -1, W, H);
    put_pgm(R("train/cat/1.pgm"), 20, 0);
    put_pgm(R("train/cat/10.pgm"), 21, 1);
    put_png(R("train/cat/2.png"), 22, 2, 255, W, H); /* opaque gray + alpha: still gray */
    put_pgm(R("train/dog/x.pgm"), 30, 1);
    put(R("train/dog/notes.txt"), "skip me", 7);
    put(R("train/dog/.hidden.png"), "not an image", 12);
    put(R("train/README"), "not a class", 11);
    make_dir(R("train/dog/sub.png")); /* a folder, whatever its name */
    put_pgm(R("test/ant/t.pgm"), 40, 1);
    put_pgm(R("test/cat/t.pgm"), 41, 1);
    put_pgm(R("test/dog/t.pgm"), 42, 1);
#undef R
}

TEST(folder_gray) {
    make_gray_set("gray");
    caps_error err = {0};
    caps_dataset ds;
    EXPECT(caps_dataset_layout(at("gray")) == CAPS_LAYOUT_FOLDER, "layout %d",
           caps_dataset_layout(at("gray")));
    int rc = caps_dataset_load(&ds, at("gray"), 1, 10, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    if (rc) return;
    EXPECT(ds.count == 6 && ds.channels == 1 && ds.rows == H && ds.cols == W,
           "shape %d x %dx%dx%d", ds.count, ds.channels, ds.rows, ds.cols);
    /* Sorted: classes ant, cat, dog; files by strcmp ("1.pgm" < "10.pgm" < "2.png"). */
    const int ids[6] = {10, 11, 20, 21, 22, 30}, labels[6] = {0, 0, 1, 1, 1, 2};
    for (int k = 0; k < 6 && k < ds.count; k++) {
        EXPECT(image_is(&ds, k, ids[k], 1), "image %d is not test image %d", k, ids[k]);
        EXPECT(ds.labels[k] == labels[k], "label %d: %d, want %d", k, ds.labels[k], labels[k]);
    }
    EXPECT(ds.num_names == 3 && ds.class_names, "%d names", ds.num_names);
    if (ds.num_names == 3)
        EXPECT(!strcmp(ds.class_names[0], "ant") && !strcmp(ds.class_names[1], "cat") &&
                   !strcmp(ds.class_names[2], "dog"),
               "names %s %s %s", ds.class_names[0], ds.class_names[1], ds.class_names[2]);
    caps_dataset_free(&ds);
    EXPECT(dataset_is_zero(&ds), "free leaves fields");

    rc = caps_dataset_load(&ds, at("gray"), 0, 3, &err);
    EXPECT(rc == CAPS_OK, "test split: %s", err.msg);
    if (rc == CAPS_OK) {
        EXPECT(ds.count == 3 && image_is(&ds, 0, 40, 1) && image_is(&ds, 2, 42, 1) &&
                   ds.labels[0] == 0 && ds.labels[2] == 2 && ds.num_names == 3,
               "test split contents");
        caps_dataset_free(&ds);
    }
    /* A batch from the folder: the same [0, 1] floats as any data set. */
    rc = caps_dataset_load(&ds, at("gray"), 1, 10, &err);
    if (rc == CAPS_OK) {
        float x[PLANE];
        int idx = 3, label = -1;
        caps_make_batch_shifted(x, &label, &ds, &idx, NULL, NULL, 1);
        EXPECT(label == 1 && x[5] == pattern(21, 0, 5) / 255.0f, "batch label %d, x %g", label,
               x[5]);
        caps_dataset_free(&ds);
    }
}

TEST(folder_colour) {
    fresh("rgb");
    make_dir("rgb/train");
    make_dir("rgb/train/b");
    make_dir("rgb/train/a");
    put_ppm("rgb/train/a/1.ppm", 1, 1);
    put_ppm("rgb/train/a/2.PPM", 2, 0);
    put_png("rgb/train/b/1.png", 3, 3, -1, W, H);
    put_png("rgb/train/b/2.png", 4, 4, 255, W, H); /* opaque RGBA: the RGB as it is */
    caps_error err = {0};
    caps_dataset ds;
    int rc = caps_dataset_load(&ds, at("rgb"), 1, 2, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    if (rc) return;
    EXPECT(ds.count == 4 && ds.channels == 3 && ds.rows == H && ds.cols == W,
           "shape %d x %dx%dx%d", ds.count, ds.channels, ds.rows, ds.cols);
    for (int k = 0; k < 4 && k < ds.count; k++) {
        EXPECT(image_is(&ds, k, k + 1, 3), "image %d: planes differ", k);
        EXPECT(ds.labels[k] == k / 2, "label %d: %d", k, ds.labels[k]);
    }
    /* Planes: red of pixel 0, green, blue are C = 0, 1, 2 at stride H*W. */
    EXPECT(ds.images[PLANE] == pattern(1, 1, 0) && ds.images[2 * PLANE + 7] == pattern(1, 2, 7),
           "plane order");
    caps_dataset_free(&ds);
    /* The test split is absent: an error naming it, not the IDX files. */
    rc = caps_dataset_load(&ds, at("rgb"), 0, 2, &err);
    EXPECT_ERROR(rc, err, CAPS_ERR_IO, "rgb/test");
    EXPECT_MSG(err, "no such folder");
    EXPECT(dataset_is_zero(&ds), "dataset not zeroed");
}

/* Loads dir's split and expects the error: code, phrase and path. */
static void expect_folder_error(const char *dir, int train, int classes, int code,
                                const char *phrase, const char *path, int line) {
    caps_error err = {0};
    caps_dataset ds;
    int rc = caps_dataset_load(&ds, at(dir), train, classes, &err);
    int before = test_current_failed;
    test_current_failed = 0;
    EXPECT_ERROR(rc, err, code, path);
    EXPECT_MSG(err, phrase);
    EXPECT(dataset_is_zero(&ds), "dataset not zeroed");
    if (test_current_failed) fprintf(stderr, "  (from line %d)\n", line);
    test_current_failed |= before;
    if (rc == CAPS_OK) caps_dataset_free(&ds);
}
#define EXPECT_FOLDER_ERROR(dir, train, classes, code, phrase, path) \
    expect_folder_error(dir, train, classes, code, phrase, path, __LINE__)

TEST(folder_errors) {
    /* No class folders: only a file in train/. */
    fresh("e1");
    make_dir("e1/train");
    put("e1/train/readme.txt", "x", 1);
    EXPECT_FOLDER_ERROR("e1", 1, 10, CAPS_ERR_FORMAT, "no class folders", "e1/train");

    /* An empty class among good ones (it holds only a text file). */
    make_gray_set("e2");
    make_dir("e2/train/emu");
    put("e2/train/emu/about.txt", "x", 1);
    EXPECT_FOLDER_ERROR("e2", 1, 10, CAPS_ERR_FORMAT, "no images in class folder", "e2/train/emu");

    /* An image of another size: named, with its size and the expected one. */
    make_gray_set("e3");
    put_png("e3/train/cat/3.png", 50, 1, -1, W + 1, H);
    EXPECT_FOLDER_ERROR("e3", 1, 10, CAPS_ERR_FORMAT,
                        "wrong image size (expected 5x4 pixels (w x h), got 6x4)",
                        "e3/train/cat/3.png");
    caps_error err = {0};
    caps_dataset ds;
    caps_dataset_load(&ds, at("e3"), 1, 10, &err);
    EXPECT(strstr(err.hint, "never resizes") && strstr(err.hint, "e3/train/ant/a.pgm"),
           "hint: %s", err.hint);

    /* Gray and colour mixed: both files named. */
    make_gray_set("e4");
    put_ppm("e4/train/dog/y.ppm", 51, 1);
    EXPECT_FOLDER_ERROR("e4", 1, 10, CAPS_ERR_FORMAT, "mixed gray and colour images",
                        "e4/train/dog/y.ppm");
    caps_dataset_load(&ds, at("e4"), 1, 10, &err);
    EXPECT_MSG(err, "e4/train/ant/a.pgm");
    EXPECT_MSG(err, "expected 1 channel");

    /* A broken PNG among good ones: cut in half. */
    make_gray_set("e5");
    size_t n = 0;
    unsigned char *png = test_read_file(at("e5/train/cat/2.png"), &n);
    CAPS_ASSERT(png != NULL);
    put("e5/train/cat/2.png", png, n / 2);
    free(png);
    EXPECT_FOLDER_ERROR("e5", 1, 10, CAPS_ERR_FORMAT, "truncated PNG data", "e5/train/cat/2.png");
    put("e5/train/cat/2.png", "", 0);
    EXPECT_FOLDER_ERROR("e5", 1, 10, CAPS_ERR_FORMAT, "an empty file", "e5/train/cat/2.png");
    put("e5/train/cat/2.png", "\xff\xd8\xff\xe0 jpeg", 9);
    EXPECT_FOLDER_ERROR("e5", 1, 10, CAPS_ERR_FORMAT, "got JPEG", "e5/train/cat/2.png");

    /* Test split with a class folder more, and one less, than train. */
    make_gray_set("e6");
    make_dir("e6/test/emu");
    put_pgm("e6/test/emu/e.pgm", 1, 1);
    EXPECT_FOLDER_ERROR("e6", 0, 10, CAPS_ERR_FORMAT, "class folder 'emu' is not in", "e6/test");
    caps_dataset_load(&ds, at("e6"), 0, 10, &err);
    EXPECT_MSG(err, "e6/train");
    make_gray_set("e7");
    remove_tree(at("e7/test/cat"));
    EXPECT_FOLDER_ERROR("e7", 0, 10, CAPS_ERR_FORMAT, "class folder 'cat' of", "e7/test");
    caps_dataset_load(&ds, at("e7"), 0, 10, &err);
    EXPECT_MSG(err, "e7/train is missing");

    /* More class folders than the network's classes: the count and --classes. */
    make_gray_set("e8");
    EXPECT_FOLDER_ERROR("e8", 1, 2, CAPS_ERR_FORMAT,
                        "too many class folders (expected at most 2, got 3)", "e8/train");
    caps_dataset_load(&ds, at("e8"), 1, 2, &err);
    EXPECT(strstr(err.hint, "--classes 3"), "hint: %s", err.hint);
    EXPECT_FOLDER_ERROR("e8", 1, 0, CAPS_ERR_ARG, "bad number of classes", "e8");
}

/* ------------------------------------------------------------------------ CIFAR-10 */

#define REC 3073
/* Record r of batch file b (0 = test): label (b * 3 + r) % 10, pixel bytes from cifar_px. */
static uint8_t cifar_px(int b, int r, int k) { return (uint8_t)(b * 71 + r * 13 + k * 7); }

static void put_cifar(const char *rel, int b, int records, int bad_label_at) {
    uint8_t *buf = malloc((size_t)records * REC);
    CAPS_ASSERT(buf != NULL);
    for (int r = 0; r < records; r++) {
        buf[r * REC] = (uint8_t)(r == bad_label_at ? 10 : (b * 3 + r) % 10);
        for (int k = 0; k < 3072; k++) buf[r * REC + 1 + k] = cifar_px(b, r, k);
    }
    put(rel, buf, (size_t)records * REC);
    free(buf);
}

static void make_cifar(const char *name) {
    char rel[256];
    fresh(name);
    for (int b = 1; b <= 5; b++) {
        snprintf(rel, sizeof rel, "%s/data_batch_%d.bin", name, b);
        put_cifar(rel, b, 3, -1);
    }
    snprintf(rel, sizeof rel, "%s/test_batch.bin", name);
    put_cifar(rel, 0, 3, -1);
}

TEST(cifar_load) {
    make_cifar("cifar");
    EXPECT(caps_dataset_layout(at("cifar")) == CAPS_LAYOUT_CIFAR10, "layout");
    caps_error err = {0};
    caps_dataset ds;
    int rc = caps_dataset_load(&ds, at("cifar"), 1, 10, &err);
    EXPECT(rc == CAPS_OK, "load: %s", err.msg);
    if (rc) return;
    EXPECT(ds.count == 15 && ds.channels == 3 && ds.rows == 32 && ds.cols == 32,
           "shape %d x %dx%dx%d", ds.count, ds.channels, ds.rows, ds.cols);
    EXPECT(ds.num_names == 0 && ds.class_names == NULL, "names without batches.meta.txt");
    /* Image i is batch i/3 + 1, record i%3; its bytes [C][H][W] are the record's as stored:
     * red plane (k < 1024), green, blue, each row-major. */
    for (int i = 0; i < ds.count; i++) {
        int b = i / 3 + 1, r = i % 3;
        EXPECT(ds.labels[i] == (b * 3 + r) % 10, "label %d: %d", i, ds.labels[i]);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) {
                    int k = c * 1024 + y * 32 + x;
                    uint8_t got = ds.images[(size_t)i * 3072 + (size_t)(c * 1024 + y * 32 + x)];
                    if (got != cifar_px(b, r, k)) {
                        EXPECT(0, "image %d c %d y %d x %d: %d, want %d", i, c, y, x, got,
                               cifar_px(b, r, k));
                        c = 3, y = 32, x = 32;
                        i = ds.count;
                    }
                }
    }
    caps_dataset_free(&ds);

    /* batches.meta.txt: names, "\r\n" and the blank lines at its end ignored; the test split
     * gets them too. */
    const char meta[] = "airplane\r\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n\n";
    put("cifar/batches.meta.txt", meta, sizeof meta - 1);
    rc = caps_dataset_load(&ds, at("cifar"), 0, 10, &err);
    EXPECT(rc == CAPS_OK, "test split: %s", err.msg);
    if (rc) return;
    EXPECT(ds.count == 3 && ds.labels[1] == 1 && ds.images[5] == cifar_px(0, 0, 5),
           "test split contents");
    EXPECT(ds.num_names == 10, "%d names", ds.num_names);
    if (ds.num_names == 10)
        EXPECT(!strcmp(ds.class_names[0], "airplane") && !strcmp(ds.class_names[5], "dog") &&
                   !strcmp(ds.class_names[9], "truck"),
               "names %s %s %s", ds.class_names[0], ds.class_names[5], ds.class_names[9]);
    caps_dataset_free(&ds);
}

TEST(cifar_errors) {
    make_cifar("c1");
    put_cifar("c1/data_batch_2.bin", 2, 2, -1);
    FILE *f = fopen(at("c1/data_batch_2.bin"), "ab");
    CAPS_ASSERT(f && fputc(7, f) == 7 && fclose(f) == 0);
    EXPECT_FOLDER_ERROR("c1", 1, 10, CAPS_ERR_FORMAT,
                        "length not a whole number of records (expected a multiple of 3073 "
                        "bytes, a label byte and 3072 pixel bytes each, got 6147 bytes)",
                        "c1/data_batch_2.bin");
    put("c1/data_batch_2.bin", "", 0);
    EXPECT_FOLDER_ERROR("c1", 1, 10, CAPS_ERR_FORMAT, "got 0 bytes", "c1/data_batch_2.bin");

    make_cifar("c2");
    put_cifar("c2/test_batch.bin", 0, 3, 2);
    EXPECT_FOLDER_ERROR("c2", 0, 10, CAPS_ERR_FORMAT,
                        "label 10 of record 2 out of range (expected 0..9)", "c2/test_batch.bin");
    /* A label the network has no class for. */
    put_cifar("c2/test_batch.bin", 0, 3, -1);
    EXPECT_FOLDER_ERROR("c2", 0, 2, CAPS_ERR_FORMAT,
                        "label 2 of record 2 out of range (expected 0..1)", "c2/test_batch.bin");

    make_cifar("c3");
    unlink(at("c3/data_batch_4.bin"));
    EXPECT_FOLDER_ERROR("c3", 1, 10, CAPS_ERR_IO, "no such file", "c3/data_batch_4.bin");
    put("c3/batches.meta.txt", "a\nb\n", 4);
    EXPECT_FOLDER_ERROR("c3", 0, 10, CAPS_ERR_FORMAT,
                        "wrong number of class names (expected 10, one a line, got 2)",
                        "c3/batches.meta.txt");
    put("c3/batches.meta.txt", "a\nb\n\nc\n", 7);
    EXPECT_FOLDER_ERROR("c3", 0, 10, CAPS_ERR_FORMAT, "blank", "c3/batches.meta.txt:3");
}

/* ------------------------------------------------------------------------ layouts */

TEST(layouts) {
    fresh("none");
    EXPECT(caps_dataset_layout(at("none")) == CAPS_LAYOUT_IDX, "empty folder: IDX");
    /* An empty folder is still read as IDX, so the message names the MNIST files. */
    EXPECT_FOLDER_ERROR("none", 1, 10, CAPS_ERR_IO, "no such file",
                        "none/train-images-idx3-ubyte.gz");
    fresh("only_test");
    make_dir("only_test/test");
    EXPECT(caps_dataset_layout(at("only_test")) == CAPS_LAYOUT_FOLDER, "test/ alone: folder");
    EXPECT(!strcmp(caps_layout_name(CAPS_LAYOUT_IDX), "idx") &&
               !strcmp(caps_layout_name(CAPS_LAYOUT_FOLDER), "folder") &&
               !strcmp(caps_layout_name(CAPS_LAYOUT_CIFAR10), "cifar10") &&
               caps_layout_name(3) == NULL,
           "layout names");
}

int main(void) {
    if (!test_dir_create("data_folder")) return 1;
    RUN(read_u8_kinds);
    RUN(read_u8_alpha_depth_palette);
    RUN(folder_gray);
    RUN(folder_colour);
    RUN(folder_errors);
    RUN(cifar_load);
    RUN(cifar_errors);
    RUN(layouts);
    remove_tree(test_dir);
    return TEST_SUMMARY();
}
