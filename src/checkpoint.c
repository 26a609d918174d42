/*
 * checkpoint.c: model files. caps_model_save writes the configuration, the training state,
 * the parameters, the Adam moments, the training log and the class names, with a CRC-32 of
 * all of it;
 * caps_model_load, caps_model_load_into and caps_model_peek read them back, checking every
 * header field before they allocate or trust anything.
 *
 * The layout, little-endian throughout (docs/model-format.md has the table and the reasons):
 *
 *   offset        size  field
 *        0           8  magic "CAPSNET\0"
 *        8           4  u32 version (CAPS_MODEL_VERSION = 3)
 *       12           4  u32 header_bytes = 200, the bytes from offset 16 to the payload
 *       16          56  config: the 14 fields of caps_config in declaration order, i32 each
 *       72          24  lr, lr_decay, beta1, beta2, adam_eps, recon_weight: f32 each
 *       96          12  batch, max_shift, limit: i32 each
 *      108           8  seed: u64
 *      116           4  epoch: i32
 *      120           8  batch_in_epoch: i64
 *      128           8  adam_t: i64, Adam steps taken
 *      136          32  epoch_loss_sum, epoch_margin_sum, epoch_recon_sum, epoch_seconds: f64
 *      168           8  epoch_images: i64 (these five: the current epoch so far)
 *      176           8  num_params N: u64
 *      184           8  log_bytes L: u64
 *      192          16  routing: its name, ASCII, NUL-padded ("dynamic")
 *      208           8  names_bytes M: u64
 *      216          4N  parameters, f32, tensor order of capsnet.h
 *   216+4N          4N  Adam first moments m
 *   216+8N          4N  Adam second moments v
 *  216+12N           L  training log (CSV text, no terminator)
 *  216+12N+L         M  class names: num_classes names, each followed by '\n'; M = 0 when
 *                       the model has none
 *  216+12N+L+M       4  u32 CRC-32 (zlib's crc32) of bytes [0, 216+12N+L+M)
 *
 * Legend: N = caps_num_params(config) (8,215,568 for MNIST, a 98.6 MB file), L = log bytes,
 * M = names bytes (at most num_classes * CAPS_CLASS_NAME_MAX: 127 bytes and a '\n' a name).
 * Older versions load, without class names:
 *   version 2, written before models had class names: no names_bytes field (header_bytes
 *     192, payload at 208) and no names block;
 *   version 1, written before routings had names: no routing field either (header_bytes
 *     176, payload at 192); it loads as routing "dynamic", the only one there was.
 *
 * Header integers and floats are encoded byte by byte, so they are right on any host. The
 * three float arrays are copied out of and into the model (capsnet_read / capsnet_write)
 * in blocks of CKPT_CHUNK_BYTES and go to and from the file as they lie in memory (the CRC
 * runs over each block while it is in cache); that needs a
 * little-endian host with IEEE-754 binary32 floats, which the checks below enforce at
 * compile time (and at run time where the compiler cannot tell the byte order).
 *
 * Reading: open, fstat, read the header (216 bytes), check magic, version, header_bytes, the
 * configuration, the parameter count, the log and names lengths, the training state and the
 * exact file size, and only then allocate and read the payload, CRC and all. The names are
 * checked once the CRC has matched (a damaged block is reported as damage; what the name
 * rules catch is a file a faulty writer made): num_classes of them, each a name as
 * caps_set_class_names takes it. load_into reads the payload into a staging copy and touches
 * the model only once the CRC and the names have passed.
 */
#include "bytes.h"
#include "class_names.h"
#include "model.h"
#include "util.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c writes float arrays as they lie in memory: it needs a little-endian host"
#endif
_Static_assert(sizeof(float) == 4 && FLT_RADIX == 2 && FLT_MANT_DIG == 24 && FLT_MAX_EXP == 128,
               "model files hold IEEE-754 binary32 floats");

#define CKPT_MAGIC_BYTES 8
/* magic, version, header_bytes: what every version of the format starts with. */
#define CKPT_PREAMBLE_BYTES 16
/* The header of the version written, of version 2 (no names_bytes field) and of version 1
 * (no routing field either). */
#define CKPT_HEADER_BYTES 216
#define CKPT_V2_HEADER_BYTES 208
#define CKPT_V1_HEADER_BYTES 192
#define CKPT_ROUTING_BYTES 16
#define CKPT_CRC_BYTES 4
/* The log is a CSV line per epoch; 16 MiB is far beyond any run and bounds the malloc a
 * damaged length field can ask for. */
#define CKPT_MAX_LOG_BYTES ((uint64_t)16 << 20)
/* Bytes per fread / fwrite and CRC update: large enough for full disk speed, small enough
 * that the CRC reads each block while it is still in cache. */
#define CKPT_CHUNK_BYTES ((size_t)4 << 20)
#define CKPT_CHUNK_FLOATS (CKPT_CHUNK_BYTES / sizeof(float))

/* The model's arenas in the order of the file. */
static const caps_arena file_arenas[3] = {CAPS_PARAMS, CAPS_ADAM_M, CAPS_ADAM_V};

/* "CAPSNET" and its terminating NUL. */
static const char ckpt_magic[CKPT_MAGIC_BYTES] = CAPS_MODEL_MAGIC;

/* Everything before the payload, decoded. */
typedef struct {
    uint32_t version;
    uint32_t header_bytes;
    caps_config cfg; /* cfg.routing from the routing field (version 1: dynamic) */
    caps_train_state st;
    int64_t adam_t;
    uint64_t num_params;
    uint64_t log_bytes;
    uint64_t names_bytes; /* 0 before version 3 */
} ckpt_header;

/* The whole header of a version (preamble included); 0 for a version this code cannot read. */
static uint32_t header_size(uint32_t version) {
    return version == CAPS_MODEL_VERSION ? CKPT_HEADER_BYTES
           : version == 2               ? CKPT_V2_HEADER_BYTES
           : version == 1               ? CKPT_V1_HEADER_BYTES
                                        : 0;
}

/* Where __BYTE_ORDER__ is unknown the #error above cannot fire; this catches it at the first
 * save or load instead. */
static void ckpt_check_host(void) {
    const uint32_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    CAPS_ASSERT(first == 1); /* little-endian host */
}

/* ------------------------------------------------------------------------ encoding */

static void encode_header(uint8_t *buf, const ckpt_header *h) {
    uint8_t *p = buf;
    memcpy(p, ckpt_magic, CKPT_MAGIC_BYTES);
    p += CKPT_MAGIC_BYTES;
    put_u32(&p, h->version);
    put_u32(&p, h->header_bytes);
    for (int k = 0; k < CAPS_CONFIG_FIELDS; k++) put_i32(&p, caps_config_get(&h->cfg, k));
    const caps_train_state *st = &h->st;
    put_train_state(&p, st, h->adam_t);
    put_u64(&p, h->num_params);
    put_u64(&p, h->log_bytes);
    const char *routing = caps_routing_name(h->cfg.routing);
    CAPS_ASSERT(routing && strlen(routing) < CKPT_ROUTING_BYTES);
    memset(p, 0, CKPT_ROUTING_BYTES);
    memcpy(p, routing, strlen(routing));
    p += CKPT_ROUTING_BYTES;
    put_u64(&p, h->names_bytes);
    CAPS_ASSERT(p - buf == CKPT_HEADER_BYTES);
}

/* The magic is checked by the caller, on the raw bytes, and the version is one this code
 * reads; *routing gets the routing field as it stands (empty for version 1); names_bytes is
 * 0 before version 3. */
static void decode_header(ckpt_header *h, uint8_t routing[CKPT_ROUTING_BYTES],
                          const uint8_t *buf) {
    const uint8_t *p = buf + CKPT_MAGIC_BYTES;
    memset(h, 0, sizeof *h);
    h->version = get_u32(&p);
    h->header_bytes = get_u32(&p);
    for (int k = 0; k < CAPS_CONFIG_FIELDS; k++) caps_config_set(&h->cfg, k, get_i32(&p));
    caps_train_state *st = &h->st;
    get_train_state(&p, st, &h->adam_t);
    h->num_params = get_u64(&p);
    h->log_bytes = get_u64(&p);
    h->cfg.routing = CAPS_ROUTING_DYNAMIC;
    memset(routing, 0, CKPT_ROUTING_BYTES);
    if (h->version >= 2) {
        memcpy(routing, p, CKPT_ROUTING_BYTES);
        p += CKPT_ROUTING_BYTES;
    }
    if (h->version >= 3) h->names_bytes = get_u64(&p);
    CAPS_ASSERT((uint32_t)(p - buf) == header_size(h->version));
}

/* Header, three arrays of N floats, the log, the names and the CRC. */
static uint64_t ckpt_file_bytes(uint32_t header, uint64_t num_params, uint64_t log_bytes,
                                uint64_t names_bytes) {
    return header + 3 * num_params * sizeof(float) + log_bytes + names_bytes + CKPT_CRC_BYTES;
}

/* The most a names block can hold: num_classes names of 127 bytes, each and its '\n'. */
static uint64_t names_bytes_max(const caps_config *cfg) {
    return (uint64_t)cfg->num_classes * CAPS_CLASS_NAME_MAX;
}

/* The names block of m: each name and its '\n'. */
static uint64_t names_block_bytes(const capsnet *m) {
    uint64_t n = 0;
    for (int k = 0; m->class_names && k < m->cfg.num_classes; k++)
        n += strlen(m->class_names[k]) + 1;
    return n;
}

uint64_t caps_model_file_size(const capsnet *m, size_t log_bytes) {
    return ckpt_file_bytes(CKPT_HEADER_BYTES, capsnet_num_params(m), log_bytes,
                           names_block_bytes(m));
}

/* ------------------------------------------------------------------------ checks */

/* The training state a file may hold; the same rules on save, so that we never write a
 * file we would refuse to read. code: CAPS_ERR_ARG on save, CAPS_ERR_FORMAT on load. */
static int check_state(const caps_train_state *st, int64_t adam_t, const char *path, int code,
                       caps_error *err) {
#define CKPT_BAD_STATE(field, expected, fmt, value)                                            \
    return caps_fail(err, code,                                                                \
                     "%s: training state: " field " out of range (expected " expected          \
                     ", got " fmt ")",                                                         \
                     path, value)
    if (!(isfinite(st->lr) && st->lr > 0.0f)) CKPT_BAD_STATE("lr", "> 0", "%g", (double)st->lr);
    if (!(isfinite(st->lr_decay) && st->lr_decay > 0.0f))
        CKPT_BAD_STATE("lr_decay", "> 0", "%g", (double)st->lr_decay);
    if (!(st->beta1 >= 0.0f && st->beta1 < 1.0f))
        CKPT_BAD_STATE("beta1", "0 <= beta1 < 1", "%g", (double)st->beta1);
    if (!(st->beta2 >= 0.0f && st->beta2 < 1.0f))
        CKPT_BAD_STATE("beta2", "0 <= beta2 < 1", "%g", (double)st->beta2);
    if (!(isfinite(st->adam_eps) && st->adam_eps >= 0.0f))
        CKPT_BAD_STATE("adam_eps", ">= 0", "%g", (double)st->adam_eps);
    if (!(isfinite(st->recon_weight) && st->recon_weight >= 0.0f))
        CKPT_BAD_STATE("recon_weight", ">= 0", "%g", (double)st->recon_weight);
    if (st->batch < 1) CKPT_BAD_STATE("batch", ">= 1", "%d", st->batch);
    if (st->max_shift < 0) CKPT_BAD_STATE("max_shift", ">= 0", "%d", st->max_shift);
    if (st->limit < 0) CKPT_BAD_STATE("limit", ">= 0", "%d", st->limit);
    if (st->epoch < 0) CKPT_BAD_STATE("epoch", ">= 0", "%d", st->epoch);
    if (st->batch_in_epoch < 0)
        CKPT_BAD_STATE("batch_in_epoch", ">= 0", "%lld", (long long)st->batch_in_epoch);
    if (adam_t < 0) CKPT_BAD_STATE("adam_t", ">= 0", "%lld", (long long)adam_t);
    if (!(isfinite(st->epoch_loss_sum) && st->epoch_loss_sum >= 0.0))
        CKPT_BAD_STATE("epoch_loss_sum", ">= 0", "%g", st->epoch_loss_sum);
    if (!(isfinite(st->epoch_margin_sum) && st->epoch_margin_sum >= 0.0))
        CKPT_BAD_STATE("epoch_margin_sum", ">= 0", "%g", st->epoch_margin_sum);
    if (!(isfinite(st->epoch_recon_sum) && st->epoch_recon_sum >= 0.0))
        CKPT_BAD_STATE("epoch_recon_sum", ">= 0", "%g", st->epoch_recon_sum);
    if (!(isfinite(st->epoch_seconds) && st->epoch_seconds >= 0.0))
        CKPT_BAD_STATE("epoch_seconds", ">= 0", "%g", st->epoch_seconds);
    if (st->epoch_images < 0)
        CKPT_BAD_STATE("epoch_images", ">= 0", "%lld", (long long)st->epoch_images);
#undef CKPT_BAD_STATE
    return CAPS_OK;
}

/* n bytes of a file as text for a message: printable ASCII as it is, every other byte
 * (and the quote and backslash) as \xNN, so binary junk cannot garble the terminal.
 * cap >= 4n + 1. */
static void escape_bytes(char *out, size_t cap, const uint8_t *b, size_t n) {
    size_t o = 0;
    out[0] = '\0';
    for (size_t k = 0; k < n && o + 5 <= cap; k++) {
        if (b[k] >= 0x20 && b[k] < 0x7f && b[k] != '"' && b[k] != '\\') {
            out[o++] = (char)b[k];
            out[o] = '\0';
        } else {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", b[k]);
        }
    }
}

/* The version and the header length the preamble gives. */
static int check_preamble(uint32_t version, uint32_t header_bytes, const char *path,
                          caps_error *err) {
    if (!header_size(version)) {
        caps_fail(err, CAPS_ERR_FORMAT,
                  "%s: unsupported model file version (expected 1 to %d, got %lu)", path,
                  CAPS_MODEL_VERSION, (unsigned long)version);
        if (version > CAPS_MODEL_VERSION)
            caps_hint(err, "a newer capsnet wrote it; read it with that version, or retrain "
                           "with this one (it reads versions 1 to %d)", CAPS_MODEL_VERSION);
        else
            caps_hint(err, "the file is damaged or was not written by capsnet");
        return CAPS_ERR_FORMAT;
    }
    uint32_t want = header_size(version) - CKPT_PREAMBLE_BYTES;
    if (header_bytes != want)
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: wrong header size for version %lu (expected %lu, got %lu)", path,
                         (unsigned long)version, (unsigned long)want,
                         (unsigned long)header_bytes);
    return CAPS_OK;
}

/* The routing field of a version 2 header: a known name, NUL-padded. Sets cfg.routing. */
static int check_routing(ckpt_header *h, const uint8_t field[CKPT_ROUTING_BYTES],
                         const char *path, caps_error *err) {
    if (h->version < 2) return CAPS_OK; /* version 1: "dynamic", set by decode_header */
    size_t len = 0;
    while (len < CKPT_ROUTING_BYTES && field[len]) len++;
    int padded = len < CKPT_ROUTING_BYTES;
    for (size_t k = len; k < CKPT_ROUTING_BYTES; k++) padded = padded && field[k] == 0;
    char shown[4 * CKPT_ROUTING_BYTES + 1];
    if (!padded) {
        escape_bytes(shown, sizeof shown, field, CKPT_ROUTING_BYTES);
        caps_fail(err, CAPS_ERR_FORMAT, "%s: routing field malformed (expected a name NUL-padded "
                  "to %d bytes, got \"%s\")", path, CKPT_ROUTING_BYTES, shown);
        caps_hint(err, "the file is damaged or was not written by capsnet");
        return CAPS_ERR_FORMAT;
    }
    int routing = caps_routing_find((const char *)field);
    if (routing < 0) {
        escape_bytes(shown, sizeof shown, field, len);
        caps_fail(err, CAPS_ERR_FORMAT, "%s: unknown routing \"%s\" (expected %s)", path, shown,
                  caps_routing_name(CAPS_ROUTING_DYNAMIC));
        caps_hint(err, "a newer capsnet with more routings wrote it; read it with that version");
        return CAPS_ERR_FORMAT;
    }
    h->cfg.routing = routing;
    return CAPS_OK;
}

/* Checks a decoded header (past its preamble and routing) and the size of the file that
 * holds it. */
static int check_header(const ckpt_header *h, uint64_t file_bytes, const char *path,
                        caps_error *err) {
    caps_error cerr;
    if (caps_config_check(&h->cfg, &cerr) != CAPS_OK) {
        caps_fail(err, CAPS_ERR_FORMAT, "%s: %s", path, cerr.msg);
        caps_hint(err, "the file is damaged or was not written by capsnet");
        return CAPS_ERR_FORMAT;
    }
    size_t want = caps_num_params(&h->cfg);
    if (h->num_params != want)
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: parameter count does not match the configuration (expected %zu, "
                         "got %llu)", path, want, (unsigned long long)h->num_params);
    if (h->log_bytes > CKPT_MAX_LOG_BYTES)
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: training log too long (expected at most %llu bytes, got %llu)",
                         path, (unsigned long long)CKPT_MAX_LOG_BYTES,
                         (unsigned long long)h->log_bytes);
    if (h->names_bytes > names_bytes_max(&h->cfg)) {
        caps_fail(err, CAPS_ERR_FORMAT, "%s: class names too long (expected at most %llu bytes "
                  "for %d classes, got %llu)", path,
                  (unsigned long long)names_bytes_max(&h->cfg), h->cfg.num_classes,
                  (unsigned long long)h->names_bytes);
        caps_hint(err, "the file is damaged or was not written by capsnet");
        return CAPS_ERR_FORMAT;
    }
    int rc = check_state(&h->st, h->adam_t, path, CAPS_ERR_FORMAT, err);
    if (rc) {
        caps_hint(err, "the file is damaged or was not written by capsnet");
        return rc;
    }
    uint64_t expect = ckpt_file_bytes(header_size(h->version), h->num_params, h->log_bytes,
                                      h->names_bytes);
    if (file_bytes != expect) {
        caps_fail(err, CAPS_ERR_FORMAT, "%s: %s (expected %llu bytes, got %llu)", path,
                  file_bytes < expect ? "truncated" : "trailing data",
                  (unsigned long long)expect, (unsigned long long)file_bytes);
        caps_hint(err, "the file is %s; use an earlier checkpoint or retrain",
                  file_bytes < expect ? "incomplete (an interrupted copy?)" : "damaged");
        return CAPS_ERR_FORMAT;
    }
    return CAPS_OK;
}

/* ------------------------------------------------------------------------ reading */

/* An open model file whose header has been checked; crc covers every byte read so far. */
typedef struct {
    FILE *f;
    const char *path;
    uLong crc;
    ckpt_header h;
    uint32_t header; /* header_size(h.version): where the payload starts */
} ckpt_reader;

/* Opens path, reads the header and checks it and the file size. On failure nothing is
 * left open. */
static int reader_open(ckpt_reader *r, const char *path, caps_error *err) {
    ckpt_check_host();
    r->path = path;
    r->crc = crc32(0L, Z_NULL, 0);
    r->f = fopen(path, "rb");
    if (!r->f) return caps_fail(err, CAPS_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    int rc = CAPS_OK;
    struct stat sb;
    uint8_t buf[CKPT_HEADER_BYTES];
    size_t got = 0;
    if (fstat(fileno(r->f), &sb) != 0) {
        rc = caps_fail(err, CAPS_ERR_IO, "%s: cannot stat (%s)", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        rc = caps_fail(err, CAPS_ERR_IO, "%s: not a regular file (expected a model file)", path);
    } else {
        errno = 0;
        got = fread(buf, 1, sizeof buf, r->f);
        if (got < sizeof buf && ferror(r->f))
            rc = caps_fail(err, CAPS_ERR_IO, "%s: read error (%s)", path,
                           strerror(errno ? errno : EIO));
    }
    if (rc == CAPS_OK) {
        /* The magic first, on as many of its bytes as there are: a short file of another
         * kind is "not a model file", an empty or cut-off model file "truncated". */
        size_t n = got < CKPT_MAGIC_BYTES ? got : CKPT_MAGIC_BYTES;
        if (n == CKPT_MAGIC_BYTES && memcmp(buf, "CAPSCNN", CKPT_MAGIC_BYTES) == 0) {
            /* The baseline CNN's file (cnn_file.c): say what it is, not just "not ours". */
            caps_fail(err, CAPS_ERR_FORMAT, "%s: a baseline CNN model (capsnet train --arch "
                      "cnn), not a capsule network", path);
            caps_hint(err, "this needs a capsule network; test, predict and info read CNN models");
            rc = CAPS_ERR_FORMAT;
        } else if (memcmp(buf, ckpt_magic, n) != 0) {
            char want[4 * CKPT_MAGIC_BYTES + 1], shown[4 * CKPT_MAGIC_BYTES + 1];
            escape_bytes(want, sizeof want, (const uint8_t *)ckpt_magic, CKPT_MAGIC_BYTES);
            escape_bytes(shown, sizeof shown, buf, n);
            caps_fail(err, CAPS_ERR_FORMAT,
                      "%s: not a capsnet model file (expected magic \"%s\", got \"%s\")", path,
                      want, shown);
            caps_hint(err, "give a model file that capsnet saved");
            rc = CAPS_ERR_FORMAT;
        } else {
            /* The preamble says the version, the version how long the header is. */
            const uint8_t *p = buf + CKPT_MAGIC_BYTES;
            uint32_t version = got >= CKPT_PREAMBLE_BYTES ? get_u32(&p) : CAPS_MODEL_VERSION;
            uint32_t header_bytes = got >= CKPT_PREAMBLE_BYTES ? get_u32(&p) : 0;
            r->header = header_size(version) ? header_size(version) : CKPT_HEADER_BYTES;
            if (got >= CKPT_PREAMBLE_BYTES)
                rc = check_preamble(version, header_bytes, path, err);
            if (!rc && got < r->header) {
                caps_fail(err, CAPS_ERR_FORMAT,
                          "%s: truncated header (expected %lu bytes, got %zu)", path,
                          (unsigned long)r->header, got);
                caps_hint(err, "the file is incomplete; use an earlier checkpoint or retrain");
                rc = CAPS_ERR_FORMAT;
            }
            if (!rc) {
                uint8_t routing[CKPT_ROUTING_BYTES];
                decode_header(&r->h, routing, buf);
                rc = check_routing(&r->h, routing, path, err);
                if (!rc) rc = check_header(&r->h, (uint64_t)sb.st_size, path, err);
            }
        }
    }
    /* A version 1 header is shorter than the bytes read: the payload starts after it. */
    if (!rc && fseeko(r->f, r->header, SEEK_SET) != 0)
        rc = caps_fail(err, CAPS_ERR_IO, "%s: cannot seek (%s)", path, strerror(errno));
    if (rc) {
        fclose(r->f);
        r->f = NULL;
        return rc;
    }
    r->crc = crc32(r->crc, buf, r->header);
    return CAPS_OK;
}

static void reader_close(ckpt_reader *r) {
    /* Read-only: closing cannot lose data, and every byte has been checked already. */
    if (r->f) (void)fclose(r->f);
    r->f = NULL;
}

/* Reads exactly n bytes into buf, block by block, adding them to the CRC. */
static int reader_read(ckpt_reader *r, void *buf, size_t n, caps_error *err) {
    uint8_t *p = buf;
    while (n > 0) {
        size_t want = n < CKPT_CHUNK_BYTES ? n : CKPT_CHUNK_BYTES;
        errno = 0;
        size_t got = fread(p, 1, want, r->f);
        if (got < want) {
            if (ferror(r->f))
                return caps_fail(err, CAPS_ERR_IO, "%s: read error (%s)", r->path,
                                 strerror(errno ? errno : EIO));
            /* The size matched at open: someone shortened the file while we read it. */
            return caps_fail(err, CAPS_ERR_FORMAT,
                             "%s: truncated while being read (expected %llu bytes, got fewer)",
                             r->path,
                             (unsigned long long)ckpt_file_bytes(r->header, r->h.num_params,
                                                                 r->h.log_bytes,
                                                                 r->h.names_bytes));
        }
        r->crc = crc32(r->crc, p, (uInt)want);
        p += want;
        n -= want;
    }
    return CAPS_OK;
}

/* Compares the CRC the file stores (its last 4 bytes, read next) with the running one. */
static int reader_check_crc(ckpt_reader *r, uint32_t computed, caps_error *err) {
    uint8_t tail[CKPT_CRC_BYTES];
    int rc = reader_read(r, tail, sizeof tail, err);
    if (rc) return rc;
    const uint8_t *p = tail;
    uint32_t stored = get_u32(&p);
    if (stored != computed) {
        caps_fail(err, CAPS_ERR_FORMAT, "%s: checksum mismatch (expected 0x%08lx, got 0x%08lx)",
                  r->path, (unsigned long)stored, (unsigned long)computed);
        caps_hint(err, "the file is damaged; use an earlier checkpoint or retrain");
        return CAPS_ERR_FORMAT;
    }
    return CAPS_OK;
}

/* Checks the CRC of the whole file in one streaming pass, then rewinds to the payload.
 * Used before a model is created from the header's configuration: one damaged byte in a
 * field that sizes the activations but not the file (routing_iters, max_batch's products)
 * must be reported as damage, not as a request for gigabytes. Costs one more read of a
 * file that is in the page cache after the first. */
static int reader_verify(ckpt_reader *r, caps_error *err) {
    uint8_t *buf = malloc(CKPT_CHUNK_BYTES);
    if (!buf) return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for a read buffer", r->path);
    uLong start = r->crc;
    uint64_t left = 3 * r->h.num_params * sizeof(float) + r->h.log_bytes + r->h.names_bytes;
    int rc = CAPS_OK;
    while (!rc && left > 0) {
        size_t n = left < CKPT_CHUNK_BYTES ? (size_t)left : CKPT_CHUNK_BYTES;
        rc = reader_read(r, buf, n, err);
        left -= n;
    }
    free(buf);
    if (!rc) rc = reader_check_crc(r, (uint32_t)r->crc, err);
    r->crc = start;
    if (!rc && fseeko(r->f, r->header, SEEK_SET) != 0)
        rc = caps_fail(err, CAPS_ERR_IO, "%s: cannot seek (%s)", r->path, strerror(errno));
    return rc;
}

/* Reads the payload, then the stored CRC, and compares: the three arrays of num_params
 * floats into stage [3 N] when it is given, else block by block into the arenas of m; the
 * log into log (log_bytes + 1 bytes, terminated here); the names block into names
 * (names_bytes + 1 bytes, terminated here). */
static int reader_payload(ckpt_reader *r, capsnet *m, float *stage, char *log, char *names,
                          caps_error *err) {
    size_t n = (size_t)r->h.num_params;
    int rc = CAPS_OK;
    if (stage) {
        rc = reader_read(r, stage, 3 * n * sizeof(float), err);
    } else {
        float *buf = malloc(CKPT_CHUNK_BYTES);
        if (!buf) return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for a read buffer", r->path);
        for (int a = 0; a < 3 && !rc; a++)
            for (size_t off = 0; off < n && !rc; off += CKPT_CHUNK_FLOATS) {
                size_t k = n - off < CKPT_CHUNK_FLOATS ? n - off : CKPT_CHUNK_FLOATS;
                rc = reader_read(r, buf, k * sizeof(float), err);
                if (!rc) rc = capsnet_write(m, file_arenas[a], off, k, buf, err);
            }
        free(buf);
    }
    if (!rc) rc = reader_read(r, log, (size_t)r->h.log_bytes, err);
    if (!rc) rc = reader_read(r, names, (size_t)r->h.names_bytes, err);
    if (rc) return rc;
    log[r->h.log_bytes] = '\0';
    names[r->h.names_bytes] = '\0';
    return reader_check_crc(r, (uint32_t)r->crc, err);
}

/* The names block of a file whose CRC has matched (block: names_bytes bytes, writable):
 * exactly num_classes names, each followed by '\n' and each a class name as
 * caps_set_class_names takes it. *out: their copies, or NULL for an empty block (a model
 * without names). */
static int reader_names(const ckpt_reader *r, char *block, char ***out, caps_error *err) {
    *out = NULL;
    size_t len = (size_t)r->h.names_bytes;
    int J = r->h.cfg.num_classes;
    if (len == 0) return CAPS_OK;
    char why[128];
    int rc = CAPS_OK;
    size_t count = 0;
    for (size_t k = 0; k < len; k++) count += block[k] == '\n';
    if (block[len - 1] != '\n')
        rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: class names: last name not terminated "
                       "(expected each name followed by a newline)", r->path);
    else if (count != (size_t)J)
        rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: class names: wrong count (expected %d, one "
                       "per class, got %zu)", r->path, J, count);
    const char **at = rc ? NULL : malloc((size_t)J * sizeof *at);
    if (!rc && !at)
        return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for the class names", r->path);
    for (size_t pos = 0, k = 0; !rc && k < (size_t)J; k++) {
        char *end = memchr(block + pos, '\n', len - pos); /* there are J of them */
        size_t n = (size_t)(end - (block + pos));
        if (caps_class_name_problem(block + pos, n, why, sizeof why))
            rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: class names: class %zu: %s", r->path, k,
                           why);
        *end = '\0';
        at[k] = block + pos;
        pos += n + 1;
    }
    if (rc) {
        caps_hint(err, "the file is damaged or was not written by capsnet");
        free(at);
        return rc;
    }
    *out = caps_class_names_copy(J, at);
    free(at);
    if (!*out)
        return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for the class names", r->path);
    return CAPS_OK;
}

/* ------------------------------------------------------------------------ API */

/* A full disk, a full quota, or the file size limit (RLIMIT_FSIZE). */
static int out_of_space(int e) {
#ifdef EDQUOT
    if (e == EDQUOT) return 1;
#endif
    return e == ENOSPC || e == EFBIG;
}

/* Writes n bytes block by block, adding them to *crc. Returns 0 or the errno of the
 * failed write (ENOSPC on a full disk, EFBIG over the file size limit). */
static int write_block(FILE *f, uLong *crc, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n > 0) {
        size_t chunk = n < CKPT_CHUNK_BYTES ? n : CKPT_CHUNK_BYTES;
        *crc = crc32(*crc, p, (uInt)chunk);
        errno = 0;
        if (fwrite(p, 1, chunk, f) != chunk) return errno ? errno : EIO;
        p += chunk;
        n -= chunk;
    }
    return 0;
}

int caps_model_save(capsnet *m, const caps_train_state *st, const char *log, const char *path,
                    caps_error *err) {
    CAPS_ASSERT(m && st && path);
    ckpt_check_host();
    size_t log_len = log ? strlen(log) : 0;
    if (log_len > CKPT_MAX_LOG_BYTES)
        return caps_fail(err, CAPS_ERR_ARG,
                         "%s: training log too long to save (expected at most %llu bytes, got "
                         "%zu)", path, (unsigned long long)CKPT_MAX_LOG_BYTES, log_len);
    int rc = check_state(st, capsnet_adam_t(m), path, CAPS_ERR_ARG, err);
    if (rc) return rc;

    ckpt_header h;
    memset(&h, 0, sizeof h);
    h.version = CAPS_MODEL_VERSION;
    h.header_bytes = CKPT_HEADER_BYTES - CKPT_PREAMBLE_BYTES;
    h.cfg = *capsnet_config(m);
    h.st = *st;
    h.adam_t = capsnet_adam_t(m);
    h.num_params = capsnet_num_params(m);
    h.log_bytes = log_len;
    h.names_bytes = names_block_bytes(m);
    CAPS_ASSERT(h.names_bytes <= names_bytes_max(&h.cfg)); /* caps_set_class_names checked */
    uint8_t head[CKPT_HEADER_BYTES];
    encode_header(head, &h);
    float *buf = malloc(CKPT_CHUNK_BYTES);
    /* The names block: each name and its '\n' (+1: never a malloc of 0). */
    char *names = malloc((size_t)h.names_bytes + 1);
    if (!buf || !names) {
        free(buf), free(names);
        return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for a write buffer", path);
    }
    for (size_t k = 0, at = 0; m->class_names && k < (size_t)h.cfg.num_classes; k++) {
        size_t n = strlen(m->class_names[k]);
        memcpy(names + at, m->class_names[k], n);
        names[at + n] = '\n';
        at += n + 1;
    }

    caps_atomic_file af;
    rc = caps_atomic_open(&af, path, err);
    if (rc) {
        free(buf), free(names);
        return rc;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    int e = write_block(af.f, &crc, head, sizeof head);
    /* The arrays, copied out of the model a block at a time. */
    size_t n = h.num_params;
    for (int a = 0; a < 3 && !e && !rc; a++)
        for (size_t off = 0; off < n && !e && !rc; off += CKPT_CHUNK_FLOATS) {
            size_t k = n - off < CKPT_CHUNK_FLOATS ? n - off : CKPT_CHUNK_FLOATS;
            rc = capsnet_read(m, file_arenas[a], off, k, buf, err);
            if (!rc) e = write_block(af.f, &crc, buf, k * sizeof(float));
        }
    free(buf);
    if (rc) {
        free(names);
        caps_atomic_abort(&af);
        return rc;
    }
    if (!e) e = write_block(af.f, &crc, log, log_len);
    if (!e) e = write_block(af.f, &crc, names, (size_t)h.names_bytes);
    free(names);
    if (!e) {
        uint8_t tail[CKPT_CRC_BYTES], *p = tail;
        put_u32(&p, (uint32_t)crc);
        e = write_block(af.f, &crc, tail, sizeof tail); /* (its own CRC goes unused) */
    }
    /* The last buffered bytes fail here, not in caps_atomic_commit, on a full disk. */
    if (!e) {
        errno = 0;
        if (fflush(af.f) != 0) e = errno ? errno : EIO;
    }
    if (e) {
        caps_atomic_abort(&af);
        caps_fail(err, CAPS_ERR_IO, "%s: write failed (%s)", path, strerror(e));
        if (out_of_space(e))
            caps_hint(err, "the file needs %.1f MB: free space on its filesystem (or raise the "
                           "file size limit); the old file, if any, is unchanged",
                      (double)ckpt_file_bytes(CKPT_HEADER_BYTES, h.num_params, h.log_bytes,
                                              h.names_bytes) / 1e6);
        else
            caps_hint(err, "the old file, if any, is unchanged");
        return CAPS_ERR_IO;
    }
    /* Flush, fsync, rename; on failure it removes the temporary file and says why. */
    rc = caps_atomic_commit(&af, err);
    if (rc) caps_hint(err, "the old file, if any, is unchanged");
    return rc;
}

int caps_model_peek(caps_config *cfg, caps_train_state *st, const char *path, caps_error *err) {
    ckpt_reader r;
    int rc = reader_open(&r, path, err);
    if (rc) return rc;
    reader_close(&r);
    if (cfg) *cfg = r.h.cfg;
    if (st) *st = r.h.st;
    return CAPS_OK;
}

int caps_model_load(capsnet **out, caps_train_state *st, char **log, const char *path,
                    int max_batch, const caps_options *opt, caps_error *err) {
    *out = NULL;
    if (log) *log = NULL;
    ckpt_reader r;
    int rc = reader_open(&r, path, err);
    if (rc) return rc;
    capsnet *m = NULL;
    char *text = NULL, *block = NULL, **names = NULL;
    rc = reader_verify(&r, err);
    if (!rc) {
        rc = capsnet_create(&m, &r.h.cfg, max_batch, opt, err);
        if (rc && err) { /* name the file: its configuration is what did not fit */
            char why[sizeof err->msg];
            memcpy(why, err->msg, sizeof why);
            caps_fail(err, rc, "%s: %s", path, why);
        }
    }
    if (!rc) {
        text = malloc((size_t)r.h.log_bytes + 1);
        block = malloc((size_t)r.h.names_bytes + 1);
        if (!text || !block)
            rc = caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for the training log and "
                          "class names", path);
    }
    /* A new model: reading straight into its arenas is safe, it is freed on failure.
     * m is NULL when capsnet_create failed (out of memory for the file's configuration,
     * or max_batch out of range), so it is touched only inside this branch. */
    if (!rc) rc = reader_payload(&r, m, NULL, text, block, err);
    reader_close(&r);
    if (!rc) rc = reader_names(&r, block, &names, err);
    free(block);
    if (rc) {
        free(text);
        capsnet_free(m);
        return rc;
    }
    caps_class_names_replace(m, names);
    capsnet_set_adam_t(m, r.h.adam_t);
    if (st) *st = r.h.st;
    if (log)
        *log = text;
    else
        free(text);
    *out = m;
    return CAPS_OK;
}

int caps_model_load_into(capsnet *m, caps_train_state *st, char **log, const char *path,
                         caps_error *err) {
    if (log) *log = NULL;
    ckpt_reader r;
    int rc = reader_open(&r, path, err);
    if (rc) return rc;
    const caps_config *cfg = capsnet_config(m);
    if (cfg->routing != r.h.cfg.routing) {
        reader_close(&r);
        caps_fail(err, CAPS_ERR_FORMAT, "%s: model configuration differs (routing: expected %s, "
                  "got %s)", path, caps_routing_name(cfg->routing),
                  caps_routing_name(r.h.cfg.routing));
        caps_hint(err, "load the file into a model of its own configuration (caps_model_load)");
        return CAPS_ERR_FORMAT;
    }
    for (int k = 0; k < CAPS_CONFIG_FIELDS; k++) {
        int want = caps_config_get(cfg, k), got = caps_config_get(&r.h.cfg, k);
        if (want != got) {
            reader_close(&r);
            caps_fail(err, CAPS_ERR_FORMAT,
                      "%s: model configuration differs (field %s: expected %d, got %d)", path,
                      caps_config_field_name(k), want, got);
            caps_hint(err, "load the file into a model of its own configuration "
                           "(caps_model_load)");
            return CAPS_ERR_FORMAT;
        }
    }
    /* A staging copy: the model changes only once the whole file has passed its CRC. */
    size_t n = capsnet_num_params(m);
    float *stage = caps_alloc(3 * n, sizeof(float));
    char *text = malloc((size_t)r.h.log_bytes + 1), *block = malloc((size_t)r.h.names_bytes + 1);
    char **names = NULL;
    if (!stage || !text || !block)
        rc = caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for a staging copy (%.1f MB)",
                       path, (double)(3 * n * sizeof(float)) / 1e6);
    if (!rc) rc = reader_payload(&r, NULL, stage, text, block, err);
    reader_close(&r);
    /* The names too are ready (checked and copied) before the model changes. */
    if (!rc) rc = reader_names(&r, block, &names, err);
    free(block);
    if (rc) {
        free(stage);
        free(text);
        return rc;
    }
    for (int a = 0; a < 3 && !rc; a++)
        rc = capsnet_write(m, file_arenas[a], 0, n, stage + (size_t)a * n, err);
    free(stage);
    if (rc) {
        caps_class_names_free(r.h.cfg.num_classes, names);
        free(text);
        return rc;
    }
    /* A file without names (an older version, or a model that had none) leaves none. */
    caps_class_names_replace(m, names);
    capsnet_set_adam_t(m, r.h.adam_t);
    if (st) *st = r.h.st;
    if (log)
        *log = text;
    else
        free(text);
    return CAPS_OK;
}
