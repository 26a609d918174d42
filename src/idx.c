/*
 * idx.c: reads labelled image sets stored in IDX files, the format of MNIST and Fashion-MNIST
 * (LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/), gzip-compressed or raw.
 *
 * An IDX file is a header and a payload; every header integer is big-endian:
 *   magic    4 bytes: 0x00 0x00 <type> <rank>; type 0x08 = unsigned byte, the only one we read
 *   dims     rank x uint32, the slowest-varying dimension first
 *   payload  the product of dims elements in row-major (C) order, then end of file
 * The files we accept:
 *   images   0x00000803  N, rows, cols        MNIST; channels = 1
 *            0x00000804  N, C, rows, cols     stored [N][C][rows][cols], our NCHW layout
 *   labels   0x00000801  N                    one byte per image, 0 .. num_classes-1
 * Legend: N = image count, C = channels, rows x cols = image height x width.
 *
 * zlib's gzread reads gzip and raw files alike, so one path serves the .gz downloads and
 * files a user unpacked. Data files come from the network, so the header is a claim to check,
 * not a size to trust: sizes are computed in size_t with overflow checks, and the payload is
 * read in chunks into a buffer that grows only as bytes actually arrive. A header claiming
 * 2^31 images over a 1000-byte payload ends in "truncated", not in a terabyte malloc.
 */
#include "data.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_TYPE_UBYTE 0x08
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_IMAGES_NCHW 0x00000804u
#define IDX_MAX_RANK 4
/* rows, cols and channels: an image side above 65535 is no image set we can train on,
 * and the bound keeps every product of two of them inside 32 bits. */
#define IDX_MAX_SIDE 65535u
/* Bytes per gzread and the first payload buffer: also the most a lying header can make
 * us allocate beyond twice the bytes the file really holds. */
#define IDX_READ_CHUNK ((size_t)1 << 20)
/* zlib's input buffer (default 8 KiB): fewer read() calls on the 47 MB training images. */
#define IDX_GZ_BUFFER (128u << 10)
/* Longest dir + file name caps_idx_dir_load builds. */
#define IDX_PATH_MAX 4096

/* One open IDX file: the zlib stream and its path, for messages. */
typedef struct {
    gzFile gz;
    const char *path;
} idx_stream;

/* The magic number and dimensions of an IDX header. */
typedef struct {
    uint32_t magic;
    int rank;
    uint32_t dims[IDX_MAX_RANK];
} idx_header;

static uint32_t idx_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* *out = a * b; 0 when the product does not fit in size_t. */
static int idx_mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

/* The hint for a missing or damaged data file: fetch it again into the folder it is in. */
static void idx_hint_fetch(caps_error *err, const char *path) {
    const char *slash = strrchr(path, '/');
    if (slash)
        caps_hint(err, "run scripts/get-data.sh mnist %.*s (or fashion)",
                  (int)(slash - path), path);
    else
        caps_hint(err, "run scripts/get-data.sh mnist . (or fashion)");
}

static int idx_open(idx_stream *s, const char *path, const char *kind, caps_error *err) {
    s->path = path;
    errno = 0;
    s->gz = gzopen(path, "rb");
    if (!s->gz) {
        int e = errno;
        if (e == ENOENT) {
            caps_fail(err, CAPS_ERR_IO, "%s: no such file (expected an IDX %s file)", path, kind);
            idx_hint_fetch(err, path);
            return CAPS_ERR_IO;
        }
        /* gzopen fails without errno only when its own malloc fails. */
        if (e == 0 || e == ENOMEM)
            return caps_fail(err, CAPS_ERR_MEMORY, "%s: cannot open (out of memory)", path);
        return caps_fail(err, CAPS_ERR_IO, "%s: cannot open (%s)", path, strerror(e));
    }
    /* Only fails when called after the first read, which cannot be the case here. */
    (void)gzbuffer(s->gz, IDX_GZ_BUFFER);
    return CAPS_OK;
}

static void idx_close(idx_stream *s) {
    /* Closing a stream opened for reading can only fail in close(), after every byte has
     * been read and checked, so its status changes nothing. */
    if (s->gz) (void)gzclose(s->gz);
    s->gz = NULL;
}

/* gzread failed: a read error (CAPS_ERR_IO) or compressed bytes that are not valid
 * gzip (CAPS_ERR_FORMAT), told apart by zlib's error number. */
static int idx_stream_error(idx_stream *s, caps_error *err) {
    int errnum = Z_OK;
    const char *msg = gzerror(s->gz, &errnum);
    /* zlib writes "<path>: <what>"; our message names the path already. */
    size_t n = strlen(s->path);
    if (strncmp(msg, s->path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    if (errnum == Z_ERRNO) return caps_fail(err, CAPS_ERR_IO, "%s: read error (%s)", s->path, msg);
    if (errnum == Z_MEM_ERROR)
        return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory while decompressing", s->path);
    caps_fail(err, CAPS_ERR_FORMAT,
              "%s: corrupt gzip data (expected a valid gzip stream, got zlib error: %s)", s->path,
              msg);
    idx_hint_fetch(err, s->path);
    return CAPS_ERR_FORMAT;
}

/* Reads up to n bytes into buf; *got < n only at the end of the input (or of a gzip stream
 * cut short, which idx_cut_short tells). Returns an error only for a failed read or corrupt
 * compressed data. */
static int idx_read(idx_stream *s, void *buf, size_t n, size_t *got, caps_error *err) {
    uint8_t *p = buf;
    *got = 0;
    while (*got < n) {
        size_t want = n - *got;
        if (want > IDX_READ_CHUNK) want = IDX_READ_CHUNK;
        int r = gzread(s->gz, p + *got, (unsigned)want);
        if (r < 0) return idx_stream_error(s, err);
        if (r == 0) break;
        *got += (size_t)r;
    }
    return CAPS_OK;
}

/* After a short read: did a gzip stream end without its last block and trailer? zlib
 * returns 0 bytes as at a clean end of file and keeps Z_BUF_ERROR for gzerror. */
static int idx_cut_short(idx_stream *s) {
    int errnum = Z_OK;
    (void)gzerror(s->gz, &errnum);
    return errnum == Z_BUF_ERROR;
}

static int idx_truncated(idx_stream *s, const char *what, size_t expected, size_t got,
                         caps_error *err) {
    int cut = idx_cut_short(s);
    caps_fail(err, CAPS_ERR_FORMAT, "%s: truncated %s (expected %zu bytes, got %zu)", s->path,
              what, expected, got);
    if (cut)
        caps_hint(err, "the gzip stream ends early, as after an interrupted download; "
                       "run scripts/get-data.sh again");
    else
        idx_hint_fetch(err, s->path);
    return CAPS_ERR_FORMAT;
}

/* Reads and checks the magic number and the dimensions. labels: expect a label file
 * (rank 1), else an image file (rank 3 or 4). */
static int idx_read_header(idx_stream *s, int labels, idx_header *h, caps_error *err) {
    uint8_t bytes[4 + 4 * IDX_MAX_RANK];
    size_t got;
    int rc = idx_read(s, bytes, 4, &got, err);
    if (rc) return rc;
    if (got < 4) return idx_truncated(s, "header", 4, got, err);

    h->magic = idx_be32(bytes);
    int type = bytes[2], rank = bytes[3];
    int rank_ok = labels ? rank == 1 : (rank == 3 || rank == 4);
    if (bytes[0] != 0 || bytes[1] != 0 || type != IDX_TYPE_UBYTE || !rank_ok) {
        caps_fail(err, CAPS_ERR_FORMAT, "%s: bad magic number (expected %s, got 0x%08x)", s->path,
                  labels ? "0x00000801 for an IDX label file"
                         : "0x00000803 or 0x00000804 for an IDX image file",
                  (unsigned)h->magic);
        int swapped = labels ? (h->magic == IDX_MAGIC_IMAGES || h->magic == IDX_MAGIC_IMAGES_NCHW)
                             : h->magic == IDX_MAGIC_LABELS;
        if (swapped)
            caps_hint(err, "this is an IDX %s file; are the image and label files swapped?",
                      labels ? "image" : "label");
        else if (bytes[0] == 0 && bytes[1] == 0 && type != IDX_TYPE_UBYTE)
            caps_hint(err, "only unsigned-byte IDX files (type 0x08) are supported");
        else
            idx_hint_fetch(err, s->path);
        return CAPS_ERR_FORMAT;
    }

    h->rank = rank;
    size_t dims_bytes = 4 * (size_t)rank;
    rc = idx_read(s, bytes + 4, dims_bytes, &got, err);
    if (rc) return rc;
    if (got < dims_bytes) return idx_truncated(s, "header", 4 + dims_bytes, 4 + got, err);
    for (int i = 0; i < rank; i++) h->dims[i] = idx_be32(bytes + 4 + 4 * i);
    return CAPS_OK;
}

/* Reads exactly n payload bytes into a new buffer (*out, free with free()). The buffer
 * starts at one chunk and doubles only when full, so memory follows the bytes that really
 * arrive, never the count the header claims. */
static int idx_read_payload(idx_stream *s, const char *what, size_t n, uint8_t **out,
                            caps_error *err) {
    *out = NULL;
    size_t cap = n < IDX_READ_CHUNK ? n : IDX_READ_CHUNK;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for the %s (%zu bytes)",
                         s->path, what, cap);
    size_t have = 0;
    while (have < n) {
        if (have == cap) {
            size_t next = cap <= n / 2 ? cap * 2 : n;
            uint8_t *grown = realloc(buf, next);
            if (!grown) {
                free(buf);
                return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for the %s (%zu bytes)",
                                 s->path, what, next);
            }
            buf = grown;
            cap = next;
        }
        size_t got;
        int rc = idx_read(s, buf + have, cap - have, &got, err);
        if (rc) {
            free(buf);
            return rc;
        }
        have += got;
        if (have < cap) break; /* a short read: the input has ended */
    }
    if (have < n) {
        free(buf);
        return idx_truncated(s, what, n, have, err);
    }
    *out = buf;
    return CAPS_OK;
}

/* The payload must be the last thing in the file. Reading on to the end also makes zlib
 * check the gzip trailer (CRC-32 and length), which catches corruption the inflater missed.
 * file_bytes: the (uncompressed) header + payload size, for the message. */
static int idx_expect_end(idx_stream *s, size_t file_bytes, caps_error *err) {
    uint8_t scratch[4096];
    size_t extra = 0, got;
    do {
        int rc = idx_read(s, scratch, sizeof scratch, &got, err);
        if (rc) return rc;
        extra += got;
    } while (got == sizeof scratch);
    if (extra > 0)
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: trailing data (expected end of file after %zu bytes, got %zu more)",
                         s->path, file_bytes, extra);
    if (idx_cut_short(s)) {
        caps_fail(err, CAPS_ERR_FORMAT,
                  "%s: truncated gzip stream (expected the gzip trailer after %zu bytes of data, "
                  "got end of file)",
                  s->path, file_bytes);
        idx_hint_fetch(err, s->path);
        return CAPS_ERR_FORMAT;
    }
    return CAPS_OK;
}

/* 1 when v is in 1..hi, else a CAPS_ERR_FORMAT message naming the dimension. */
static int idx_check_dim(idx_stream *s, const char *name, uint32_t v, uint32_t hi,
                         caps_error *err) {
    if (v >= 1 && v <= hi) return 1;
    caps_fail(err, CAPS_ERR_FORMAT, "%s: bad %s in header (expected 1..%u, got %u)", s->path, name,
              (unsigned)hi, (unsigned)v);
    return 0;
}

/* Reads an image file into ds (count, channels, rows, cols, images). */
static int idx_load_images(caps_dataset *ds, const char *path, caps_error *err) {
    idx_stream s;
    int rc = idx_open(&s, path, "image", err);
    if (rc) return rc;
    idx_header h;
    rc = idx_read_header(&s, 0, &h, err);
    if (rc) goto done;

    uint32_t count = h.dims[0];
    uint32_t channels = h.rank == 4 ? h.dims[1] : 1;
    uint32_t rows = h.dims[h.rank - 2], cols = h.dims[h.rank - 1];
    rc = CAPS_ERR_FORMAT; /* what every check below fails with */
    /* The counts live in ints in caps_dataset, so INT_MAX bounds them. */
    if (!idx_check_dim(&s, "image count", count, INT_MAX, err)) goto done;
    if (!idx_check_dim(&s, "number of channels", channels, IDX_MAX_SIDE, err)) goto done;
    if (!idx_check_dim(&s, "number of rows", rows, IDX_MAX_SIDE, err)) goto done;
    if (!idx_check_dim(&s, "number of columns", cols, IDX_MAX_SIDE, err)) goto done;

    /* Callers index pixels with int (caps_image_pixels), so one image must fit in an int. */
    size_t pixels, payload;
    if (!idx_mul((size_t)rows * cols, channels, &pixels) || pixels > INT_MAX) {
        caps_fail(err, CAPS_ERR_FORMAT,
                  "%s: image too large (expected at most %d bytes per image, got %u x %u x %u)",
                  path, INT_MAX, (unsigned)channels, (unsigned)rows, (unsigned)cols);
        goto done;
    }
    if (!idx_mul(pixels, count, &payload) || payload > SIZE_MAX - 4 * IDX_MAX_RANK - 4) {
        caps_fail(err, CAPS_ERR_FORMAT,
                  "%s: image data too large (expected at most %zu bytes, got %u images of %zu)",
                  path, (size_t)SIZE_MAX, (unsigned)count, pixels);
        goto done;
    }

    rc = idx_read_payload(&s, "pixel data", payload, &ds->images, err);
    if (rc) goto done;
    rc = idx_expect_end(&s, 4 + 4 * (size_t)h.rank + payload, err);
    if (rc) goto done;
    ds->count = (int)count;
    ds->channels = (int)channels;
    ds->rows = (int)rows;
    ds->cols = (int)cols;
done:
    idx_close(&s);
    return rc;
}

/* Reads the label file for the ds->count images already in ds, checking each label. */
static int idx_load_labels(caps_dataset *ds, const char *path, int num_classes, caps_error *err) {
    idx_stream s;
    int rc = idx_open(&s, path, "label", err);
    if (rc) return rc;
    idx_header h;
    rc = idx_read_header(&s, 1, &h, err);
    if (rc) goto done;
    /* Before the payload, so a mismatched pair fails without reading it. */
    if (h.dims[0] != (uint32_t)ds->count) {
        rc = caps_fail(err, CAPS_ERR_FORMAT,
                       "%s: image count differs from label count (expected %d labels, got %u)",
                       path, ds->count, (unsigned)h.dims[0]);
        caps_hint(err, "the image and label files must come from the same set "
                       "(train-* with train-*, t10k-* with t10k-*)");
        goto done;
    }
    size_t n = (size_t)ds->count;
    rc = idx_read_payload(&s, "labels", n, &ds->labels, err);
    if (rc) goto done;
    rc = idx_expect_end(&s, 8 + n, err);
    if (rc) goto done;
    for (size_t i = 0; i < n; i++) {
        if ((int)ds->labels[i] >= num_classes) {
            rc = caps_fail(err, CAPS_ERR_FORMAT,
                           "%s: label %d at index %zu out of range (expected 0..%d)", path,
                           (int)ds->labels[i], i, num_classes - 1);
            caps_hint(err, "the network has %d classes; is this the data set it was "
                           "built for?",
                      num_classes);
            goto done;
        }
    }
done:
    idx_close(&s);
    return rc;
}

int caps_idx_load(caps_dataset *ds, const char *images_path, const char *labels_path,
                  int num_classes, caps_error *err) {
    CAPS_ASSERT(ds != NULL && images_path != NULL && labels_path != NULL);
    memset(ds, 0, sizeof *ds);
    if (num_classes < 1)
        return caps_fail(err, CAPS_ERR_ARG,
                         "%s: bad number of classes (expected at least 1, got %d)", labels_path,
                         num_classes);
    caps_dataset d = {0};
    int rc = idx_load_images(&d, images_path, err);
    if (!rc) rc = idx_load_labels(&d, labels_path, num_classes, err);
    if (rc) {
        caps_dataset_free(&d);
        return rc;
    }
    *ds = d;
    return CAPS_OK;
}

/* Puts dir/name.gz in path when that exists, else dir/name; when neither exists, returns
 * CAPS_ERR_IO naming the .gz path. A name that exists but cannot be read is chosen anyway,
 * so the open reports why (permission denied, ...). */
static int idx_find(char *path, const char *dir, const char *name, const char *what,
                    caps_error *err) {
    size_t len = strlen(dir);
    const char *sep = len > 0 && dir[len - 1] == '/' ? "" : "/";
    char raw[IDX_PATH_MAX];
    int n = snprintf(path, IDX_PATH_MAX, "%s%s%s.gz", dir, sep, name);
    if (n < 0 || n >= IDX_PATH_MAX)
        return caps_fail(err, CAPS_ERR_ARG, "%s: path too long (expected under %d bytes with the file name)",
                         dir, IDX_PATH_MAX);
    snprintf(raw, sizeof raw, "%s%s%s", dir, sep, name); /* shorter than path: fits */
    struct stat st;
    if (stat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) return CAPS_OK;
    if (stat(raw, &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) {
        memcpy(path, raw, strlen(raw) + 1);
        return CAPS_OK;
    }
    caps_fail(err, CAPS_ERR_IO, "%s: no such file (expected the %s here or at %s)", path,
              what, raw);
    caps_hint(err, "run scripts/get-data.sh mnist %s (or fashion)", dir);
    return CAPS_ERR_IO;
}

int caps_idx_dir_load(caps_dataset *ds, const char *dir, int train, int num_classes,
                      caps_error *err) {
    CAPS_ASSERT(ds != NULL && dir != NULL);
    memset(ds, 0, sizeof *ds);
    char images[IDX_PATH_MAX], labels[IDX_PATH_MAX];
    int rc = idx_find(images, dir, train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte",
                      train ? "training images" : "test images", err);
    if (!rc)
        rc = idx_find(labels, dir, train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte",
                      train ? "training labels" : "test labels", err);
    if (rc) return rc;
    return caps_idx_load(ds, images, labels, num_classes, err);
}
