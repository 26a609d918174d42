/*
 * test_idx.c: the IDX reader (src/idx.c). Every broken file is built here, in a temporary
 * folder under /tmp, and each test asserts the exact error: the code, the key phrase and
 * the path at the head of the message, and a dataset left zeroed. The good files hold
 * N = 5 images of 3 x 4 pixels whose values follow pixel_value(), so a load is checked
 * byte for byte. If the real MNIST test set is in data/mnist, it is loaded too.
 * CAPS_TEST_VERBOSE=1 prints every error message the tests provoke.
 */
#include "capsnet.h"
#include "test.h"
#include "test_files.h"
#include "util.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define GOOD_N 5
#define GOOD_ROWS 3
#define GOOD_COLS 4
#define GOOD_PIXELS (GOOD_ROWS * GOOD_COLS)
#define NUM_CLASSES 10
/* Labels include 0 and 9, the two ends of the valid range. */
static const uint8_t good_labels[GOOD_N] = {0, 9, 4, 1, 5};

static uint8_t pixel_value(size_t k) { return (uint8_t)(k * 7 + 3); }

/* test_dir/name, in one of a ring of buffers so a call can use several at once. */
static const char *tmp_path(const char *name) {
    static char ring[8][TEST_PATH_MAX];
    static int next;
    return test_path(ring[next++ % 8], name);
}

static void write_file(const char *path, const uint8_t *data, size_t size) {
    CAPS_ASSERT(test_write_file(path, data, size));
}

static void write_gz(const char *path, const uint8_t *data, size_t size) {
    gzFile gz = gzopen(path, "wb");
    CAPS_ASSERT(gz != NULL);
    CAPS_ASSERT(gzwrite(gz, data, (unsigned)size) == (int)size);
    CAPS_ASSERT(gzclose(gz) == Z_OK);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes an IDX file: magic, rank dims, then payload_size bytes: payload, or pixel_value()
 * when payload is NULL. gz: gzip-compressed. */
static void write_idx(const char *path, int gz, uint32_t magic, int rank, const uint32_t *dims,
                      const uint8_t *payload, size_t payload_size) {
    size_t header = 4 + 4 * (size_t)rank;
    uint8_t *data = malloc(header + payload_size + 1);
    CAPS_ASSERT(data != NULL);
    put_be32(data, magic);
    for (int i = 0; i < rank; i++) put_be32(data + 4 + 4 * i, dims[i]);
    for (size_t k = 0; k < payload_size; k++)
        data[header + k] = payload ? payload[k] : pixel_value(k);
    if (gz)
        write_gz(path, data, header + payload_size);
    else
        write_file(path, data, header + payload_size);
    free(data);
}

/* Images: GOOD_N x rows x cols with payload_size bytes (GOOD_N * GOOD_PIXELS when good). */
static void write_images(const char *path, int gz, uint32_t count, uint32_t rows, uint32_t cols,
                         size_t payload_size) {
    uint32_t dims[3] = {count, rows, cols};
    write_idx(path, gz, 0x00000803, 3, dims, NULL, payload_size);
}

static void write_labels(const char *path, int gz, const uint8_t *labels, uint32_t count) {
    write_idx(path, gz, 0x00000801, 1, &count, labels, count);
}

/* The good pair: images.idx / labels.idx (raw) or images.gz / labels.gz. */
static void write_good(const char *images, const char *labels, int gz) {
    write_images(images, gz, GOOD_N, GOOD_ROWS, GOOD_COLS, GOOD_N * GOOD_PIXELS);
    write_labels(labels, gz, good_labels, GOOD_N);
}

static int dataset_is_zero(const caps_dataset *ds) {
    return ds->count == 0 && ds->channels == 0 && ds->rows == 0 && ds->cols == 0 &&
           ds->images == NULL && ds->labels == NULL;
}

/* The good set's values, shape and labels. */
static void check_good(const caps_dataset *ds, int line) {
    EXPECT(ds->count == GOOD_N && ds->channels == 1 && ds->rows == GOOD_ROWS &&
               ds->cols == GOOD_COLS,
           "line %d: shape %d x %d x %d x %d", line, ds->count, ds->channels, ds->rows, ds->cols);
    if (!ds->images || !ds->labels) {
        EXPECT(ds->images && ds->labels, "line %d: no data", line);
        return;
    }
    int bad = 0;
    for (size_t k = 0; k < (size_t)GOOD_N * GOOD_PIXELS; k++) bad += ds->images[k] != pixel_value(k);
    EXPECT(bad == 0, "line %d: %d pixels differ", line, bad);
    EXPECT(memcmp(ds->labels, good_labels, GOOD_N) == 0, "line %d: labels differ", line);
}

/* A failed load: the code (returned and in err), the phrase in the message, the message
 * starting with the path, and ds left zeroed. */
static void check_error(int line, int rc, const caps_error *err, const caps_dataset *ds, int code,
                        const char *phrase, const char *path) {
    if (getenv("CAPS_TEST_VERBOSE"))
        fprintf(stderr, "    [%d] %s%s%s\n", rc, err->msg, err->hint[0] ? "\n         " : "",
                err->hint);
    EXPECT(rc == code, "line %d: code %d, got %d (%s)", line, code, rc, err->msg);
    EXPECT(err->code == code, "line %d: err.code %d, got %d", line, code, err->code);
    EXPECT(strstr(err->msg, phrase) != NULL, "line %d: message \"%s\" lacks \"%s\"", line,
           err->msg, phrase);
    EXPECT(strncmp(err->msg, path, strlen(path)) == 0 && err->msg[strlen(path)] == ':',
           "line %d: message \"%s\" does not start with \"%s:\"", line, err->msg, path);
    EXPECT(dataset_is_zero(ds), "line %d: dataset not zeroed after failure", line);
}

#define CHECK_ERROR(rc, err, ds, code, phrase, path) \
    check_error(__LINE__, rc, err, ds, code, phrase, path)

/* Loads images/labels expecting failure; ds starts non-zero to see it cleared. */
static int load_bad(caps_dataset *ds, caps_error *err, const char *images, const char *labels,
                    int num_classes) {
    memset(ds, 0x5a, sizeof *ds);
    memset(err, 0, sizeof *err);
    return caps_idx_load(ds, images, labels, num_classes, err);
}

TEST(good_raw_loads) {
    const char *img = tmp_path("good-images.idx"), *lab = tmp_path("good-labels.idx");
    write_good(img, lab, 0);
    caps_dataset ds;
    caps_error err = {0};
    int rc = caps_idx_load(&ds, img, lab, NUM_CLASSES, &err);
    EXPECT(rc == CAPS_OK, "code %d: %s", rc, err.msg);
    if (rc == CAPS_OK) check_good(&ds, __LINE__);
    caps_dataset_free(&ds);
    EXPECT(dataset_is_zero(&ds), "free leaves the dataset zeroed");
    caps_dataset_free(&ds); /* twice is harmless */
    caps_dataset_free(NULL);
}

TEST(good_gzip_loads) {
    const char *img = tmp_path("good-images.gz"), *lab = tmp_path("good-labels.gz");
    write_good(img, lab, 1);
    caps_dataset ds;
    caps_error err = {0};
    int rc = caps_idx_load(&ds, img, lab, NUM_CLASSES, &err);
    EXPECT(rc == CAPS_OK, "code %d: %s", rc, err.msg);
    if (rc == CAPS_OK) check_good(&ds, __LINE__);
    caps_dataset_free(&ds);
}

TEST(wrong_magic) {
    const char *img = tmp_path("magic-images.idx"), *lab = tmp_path("magic-labels.idx");
    write_good(img, lab, 0);
    caps_dataset ds;
    caps_error err;
    /* Images given as labels: the label file starts with 0x00000803. */
    int rc = load_bad(&ds, &err, img, img, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT,
                "bad magic number (expected 0x00000801 for an IDX label file, got 0x00000803)",
                img);
    EXPECT(strstr(err.hint, "swapped") != NULL, "hint \"%s\" lacks \"swapped\"", err.hint);
    /* Labels given as images. */
    rc = load_bad(&ds, &err, lab, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "bad magic number (expected 0x00000803", lab);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "got 0x00000801)", lab);
    /* Not an IDX file at all. */
    const char *text = tmp_path("text.idx");
    write_file(text, (const uint8_t *)"<!DOCTYPE html>", 15);
    rc = load_bad(&ds, &err, text, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "bad magic number", text);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "got 0x3c21444f)", text);
    /* Right rank, but 32-bit floats (type 0x0D) instead of unsigned bytes. */
    const char *floats = tmp_path("float-images.idx");
    uint32_t dims[3] = {GOOD_N, GOOD_ROWS, GOOD_COLS};
    write_idx(floats, 0, 0x00000D03, 3, dims, NULL, GOOD_N * GOOD_PIXELS);
    rc = load_bad(&ds, &err, floats, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "got 0x00000d03)", floats);
    EXPECT(strstr(err.hint, "type 0x08") != NULL, "hint \"%s\" lacks \"type 0x08\"", err.hint);
}

TEST(rank_mismatch_magic) {
    const char *img = tmp_path("rank2-images.idx"), *lab = tmp_path("rank2-labels.idx");
    uint32_t dims[2] = {GOOD_N, GOOD_PIXELS};
    write_idx(img, 0, 0x00000802, 2, dims, NULL, GOOD_N * GOOD_PIXELS);
    write_labels(lab, 0, good_labels, GOOD_N);
    caps_dataset ds;
    caps_error err;
    int rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT,
                "bad magic number (expected 0x00000803 or 0x00000804 for an IDX image file, "
                "got 0x00000802)",
                img);
}

TEST(one_byte_short) {
    const char *img = tmp_path("short-images.idx"), *lab = tmp_path("short-labels.idx");
    write_good(img, lab, 0);
    write_images(img, 0, GOOD_N, GOOD_ROWS, GOOD_COLS, GOOD_N * GOOD_PIXELS - 1);
    caps_dataset ds;
    caps_error err;
    int rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "truncated pixel data (expected 60 bytes, got 59)",
                img);
    /* The labels one short. */
    write_good(img, lab, 0);
    uint32_t count = GOOD_N;
    write_idx(lab, 0, 0x00000801, 1, &count, good_labels, GOOD_N - 1);
    rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "truncated labels (expected 5 bytes, got 4)", lab);
    /* Cut inside the header: the magic and half a dimension. */
    const char *stub = tmp_path("stub-images.idx");
    const uint8_t header[6] = {0, 0, 8, 3, 0, 0};
    write_file(stub, header, sizeof header);
    rc = load_bad(&ds, &err, stub, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "truncated header (expected 16 bytes, got 6)",
                stub);
    /* An empty file. */
    write_file(stub, header, 0);
    rc = load_bad(&ds, &err, stub, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "truncated header (expected 4 bytes, got 0)",
                stub);
}

TEST(trailing_byte) {
    const char *img = tmp_path("trail-images.idx"), *lab = tmp_path("trail-labels.idx");
    write_good(img, lab, 0);
    write_images(img, 0, GOOD_N, GOOD_ROWS, GOOD_COLS, GOOD_N * GOOD_PIXELS + 1);
    caps_dataset ds;
    caps_error err;
    int rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT,
                "trailing data (expected end of file after 76 bytes, got 1 more)", img);
    /* The labels one long, in a gzip file. */
    const char *img_gz = tmp_path("trail-images.gz"), *lab_gz = tmp_path("trail-labels.gz");
    write_good(img_gz, lab_gz, 1);
    uint8_t longer[GOOD_N + 1];
    memcpy(longer, good_labels, GOOD_N);
    longer[GOOD_N] = 1;
    uint32_t count = GOOD_N;
    write_idx(lab_gz, 1, 0x00000801, 1, &count, longer, GOOD_N + 1);
    rc = load_bad(&ds, &err, img_gz, lab_gz, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT,
                "trailing data (expected end of file after 13 bytes, got 1 more)", lab_gz);
}

TEST(bad_dimensions) {
    const char *img = tmp_path("dims-images.idx"), *lab = tmp_path("dims-labels.idx");
    write_good(img, lab, 0);
    caps_dataset ds;
    caps_error err;
    write_images(img, 0, GOOD_N, 0, GOOD_COLS, 0);
    int rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT,
                "bad number of rows in header (expected 1..65535, got 0)", img);
    write_images(img, 0, GOOD_N, GOOD_ROWS, 65536, 0);
    rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT,
                "bad number of columns in header (expected 1..65535, got 65536)", img);
    write_images(img, 0, 0, GOOD_ROWS, GOOD_COLS, 0);
    rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT,
                "bad image count in header (expected 1..2147483647, got 0)", img);
    write_images(img, 0, 0x80000000u, GOOD_ROWS, GOOD_COLS, 0);
    rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "got 2147483648)", img);
    /* Every dimension at its maximum: the product overflows 32 bits, and one image is
     * larger than an int can index. */
    uint32_t huge[4] = {0x7fffffffu, 65535, 65535, 65535};
    write_idx(img, 0, 0x00000804, 4, huge, NULL, 16);
    rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "image too large", img);
}

TEST(lying_count_fails_fast) {
    /* 2^31 - 1 images of 28 x 28 would be 1.7 TB; the file holds 1000 bytes. A reader
     * that trusted the header would fail to allocate (CAPS_ERR_MEMORY, or an abort under
     * AddressSanitizer) instead of reporting the truncation. */
    const char *img = tmp_path("lying-images.idx"), *lab = tmp_path("lying-labels.idx");
    write_images(img, 0, 0x7fffffffu, 28, 28, 1000);
    write_labels(lab, 0, good_labels, GOOD_N);
    caps_dataset ds;
    caps_error err;
    clock_t start = clock();
    int rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    double seconds = (double)(clock() - start) / CLOCKS_PER_SEC;
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT,
                "truncated pixel data (expected 1683627179248 bytes, got 1000)", img);
    EXPECT(seconds < 1.0, "took %.2f s of CPU time", seconds);
    /* The same lie, compressed. */
    const char *img_gz = tmp_path("lying-images.gz");
    write_images(img_gz, 1, 0x7fffffffu, 28, 28, 1000);
    rc = load_bad(&ds, &err, img_gz, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "truncated pixel data", img_gz);
}

TEST(count_mismatch) {
    const char *img = tmp_path("count-images.idx"), *lab = tmp_path("count-labels.idx");
    write_images(img, 0, GOOD_N, GOOD_ROWS, GOOD_COLS, GOOD_N * GOOD_PIXELS);
    write_labels(lab, 0, good_labels, GOOD_N - 1);
    caps_dataset ds;
    caps_error err;
    int rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT,
                "image count differs from label count (expected 5 labels, got 4)", lab);
}

TEST(label_out_of_range) {
    const char *img = tmp_path("range-images.idx"), *lab = tmp_path("range-labels.idx");
    write_good(img, lab, 0);
    uint8_t labels[GOOD_N] = {0, 9, 4, 10, 5};
    write_labels(lab, 0, labels, GOOD_N);
    caps_dataset ds;
    caps_error err;
    int rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "label 10 at index 3 out of range (expected 0..9)",
                lab);
    /* The same file is fine for 11 classes. */
    caps_error ok = {0};
    rc = caps_idx_load(&ds, img, lab, 11, &ok);
    EXPECT(rc == CAPS_OK && ds.count == GOOD_N && ds.labels[3] == 10, "code %d: %s", rc, ok.msg);
    caps_dataset_free(&ds);
    /* A class count below 1 is the caller's error. */
    rc = load_bad(&ds, &err, img, lab, 0);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_ARG, "bad number of classes", lab);
}

TEST(missing_file) {
    const char *img = tmp_path("missing-images.idx"), *lab = tmp_path("missing-labels.idx");
    const char *none = tmp_path("no-such-file.gz");
    write_good(img, lab, 0);
    caps_dataset ds;
    caps_error err;
    int rc = load_bad(&ds, &err, none, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_IO, "no such file", none);
    EXPECT(strstr(err.hint, "scripts/get-data.sh mnist") && strstr(err.hint, test_dir),
           "hint \"%s\" lacks the get-data.sh command for %s", err.hint, test_dir);
    rc = load_bad(&ds, &err, img, none, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_IO, "no such file", none);
    /* A folder opens but cannot be read: an I/O error, not a format error. */
    rc = load_bad(&ds, &err, test_dir, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_IO, "read error", test_dir);
}

TEST(corrupt_gzip) {
    const char *img = tmp_path("corrupt-images.gz"), *lab = tmp_path("corrupt-labels.idx");
    write_good(img, lab, 0);
    /* A valid gzip header (magic, deflate, no flags, mtime 0, unix), then garbage: 0xff
     * opens a deflate block of the reserved type 3. */
    uint8_t bad[64] = {0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03};
    memset(bad + 10, 0xff, sizeof bad - 10);
    write_file(img, bad, sizeof bad);
    caps_dataset ds;
    caps_error err;
    int rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT,
                "corrupt gzip data (expected a valid gzip stream, got zlib error: invalid block "
                "type)",
                img);
    EXPECT(strstr(err.msg + strlen(img), img) == NULL, "path repeated in \"%s\"", err.msg);

    /* A good stream with a flipped CRC-32 in the trailer: only reading to the end finds it. */
    write_good(img, lab, 1);
    size_t size;
    uint8_t *data = test_read_file(img, &size);
    CAPS_ASSERT(data != NULL);
    data[size - 8] ^= 0x01;
    write_file(img, data, size);
    rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "corrupt gzip data", img);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "incorrect data check", img);

    /* The trailer cut in half: every pixel arrived, but the stream is incomplete. */
    data[size - 8] ^= 0x01;
    write_file(img, data, size - 4);
    rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT,
                "truncated gzip stream (expected the gzip trailer after 76 bytes of data, got end "
                "of file)",
                img);

    /* Cut after the 10-byte gzip header: no pixels at all. */
    write_file(img, data, 10);
    rc = load_bad(&ds, &err, img, lab, NUM_CLASSES);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_FORMAT, "truncated header (expected 4 bytes, got 0)", img);
    EXPECT(strstr(err.hint, "gzip stream ends early") != NULL, "hint \"%s\"", err.hint);
    free(data);
}

TEST(rank4_channels_load) {
    const char *img = tmp_path("rgb-images.idx"), *lab = tmp_path("rgb-labels.idx");
    enum { N = 2, C = 3, R = 2, W = 5 };
    uint32_t dims[4] = {N, C, R, W};
    write_idx(img, 0, 0x00000804, 4, dims, NULL, N * C * R * W);
    uint8_t labels[N] = {7, 2};
    write_labels(lab, 0, labels, N);
    caps_dataset ds;
    caps_error err = {0};
    int rc = caps_idx_load(&ds, img, lab, NUM_CLASSES, &err);
    EXPECT(rc == CAPS_OK, "code %d: %s", rc, err.msg);
    EXPECT(ds.count == N && ds.channels == C && ds.rows == R && ds.cols == W,
           "shape %d x %d x %d x %d", ds.count, ds.channels, ds.rows, ds.cols);
    if (rc == CAPS_OK) {
        /* [N][C][rows][cols]: image 1, channel 2, row 1, col 3 is element ((1*C+2)*R+1)*W+3. */
        size_t k = ((size_t)(1 * C + 2) * R + 1) * W + 3;
        EXPECT(ds.images[k] == pixel_value(k), "pixel %zu is %d", k, ds.images[k]);
        EXPECT(ds.labels[0] == 7 && ds.labels[1] == 2, "labels %d %d", ds.labels[0],
               ds.labels[1]);
    }
    caps_dataset_free(&ds);
}

TEST(dataset_load_prefers_gz) {
    /* The .gz test set holds the good images; the raw one an image set of 2 x 1 x 1, so
     * the shape tells which file was read. */
    const char *img_gz = tmp_path("t10k-images-idx3-ubyte.gz");
    const char *lab_gz = tmp_path("t10k-labels-idx1-ubyte.gz");
    const char *img_raw = tmp_path("t10k-images-idx3-ubyte");
    const char *lab_raw = tmp_path("t10k-labels-idx1-ubyte");
    write_good(img_gz, lab_gz, 1);
    write_images(img_raw, 0, 2, 1, 1, 2);
    write_labels(lab_raw, 0, good_labels, 2);
    caps_dataset ds;
    caps_error err = {0};
    int rc = caps_dataset_load(&ds, test_dir, 0, NUM_CLASSES, &err);
    EXPECT(rc == CAPS_OK, "code %d: %s", rc, err.msg);
    if (rc == CAPS_OK) check_good(&ds, __LINE__);
    caps_dataset_free(&ds);

    /* Without the .gz files it falls back to the raw ones (a trailing slash is fine). */
    CAPS_ASSERT(unlink(img_gz) == 0 && unlink(lab_gz) == 0);
    char dir_slash[sizeof test_dir + 1];
    snprintf(dir_slash, sizeof dir_slash, "%s/", test_dir);
    rc = caps_dataset_load(&ds, dir_slash, 0, NUM_CLASSES, &err);
    EXPECT(rc == CAPS_OK && ds.count == 2 && ds.rows == 1 && ds.cols == 1,
           "code %d (%s), count %d", rc, err.msg, ds.count);
    caps_dataset_free(&ds);

    /* The training set is absent: the error names the .gz path and hints at get-data.sh. */
    memset(&err, 0, sizeof err);
    memset(&ds, 0x5a, sizeof ds);
    rc = caps_dataset_load(&ds, test_dir, 1, NUM_CLASSES, &err);
    const char *train_gz = tmp_path("train-images-idx3-ubyte.gz");
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_IO, "no such file", train_gz);
    EXPECT(strstr(err.hint, "scripts/get-data.sh mnist") != NULL, "hint \"%s\"", err.hint);

    /* Training images present (raw) but no labels: the labels' .gz path is named. */
    write_images(tmp_path("train-images-idx3-ubyte"), 0, 2, 1, 1, 2);
    rc = caps_dataset_load(&ds, test_dir, 1, NUM_CLASSES, &err);
    CHECK_ERROR(rc, &err, &ds, CAPS_ERR_IO, "no such file",
                tmp_path("train-labels-idx1-ubyte.gz"));
}

#define MNIST_TEST_IMAGES "data/mnist/t10k-images-idx3-ubyte.gz"

TEST(real_mnist_test_set) {
    caps_dataset ds;
    caps_error err = {0};
    int rc = caps_dataset_load(&ds, "data/mnist", 0, NUM_CLASSES, &err);
    EXPECT(rc == CAPS_OK, "code %d: %s", rc, err.msg);
    EXPECT(ds.count == 10000 && ds.channels == 1 && ds.rows == 28 && ds.cols == 28,
           "shape %d x %d x %d x %d", ds.count, ds.channels, ds.rows, ds.cols);
    if (rc == CAPS_OK) EXPECT(ds.labels[0] == 7, "first label %d", ds.labels[0]);
    caps_dataset_free(&ds);
}

int main(void) {
    if (!test_dir_create("idx")) return 1;
    RUN(good_raw_loads);
    RUN(good_gzip_loads);
    RUN(wrong_magic);
    RUN(rank_mismatch_magic);
    RUN(one_byte_short);
    RUN(trailing_byte);
    RUN(bad_dimensions);
    RUN(lying_count_fails_fast);
    RUN(count_mismatch);
    RUN(label_out_of_range);
    RUN(missing_file);
    RUN(corrupt_gzip);
    RUN(rank4_channels_load);
    RUN(dataset_load_prefers_gz);
    struct stat st;
    if (stat(MNIST_TEST_IMAGES, &st) == 0)
        RUN(real_mnist_test_set);
    else
        printf("note: %s not found, real MNIST check skipped (scripts/get-data.sh mnist "
               "data/mnist fetches it)\n",
               MNIST_TEST_IMAGES);
    test_dir_remove();
    return TEST_SUMMARY();
}
