/*
 * cnn_file.c: model files of the baseline CNN (cnn.h). The same design as a capsule
 * network's (checkpoint.c): a little-endian header with the configuration and the training
 * state, the parameters, Adam's moments, the training log and the class names, a CRC-32 of
 * all of it, written atomically; a magic of its own, so that neither network's loader takes
 * the other's file (each says what the file is instead). docs/model-format.md, "Baseline
 * CNN model files", has the table:
 *
 *   offset  size  field
 *        0     8  magic "CAPSCNN\0"
 *        8     4  u32 version (CAPS_CNN_FILE_VERSION = 1)
 *       12     4  u32 header_bytes = 168, the bytes from offset 16 to the payload
 *       16    36  config: image_size, in_channels, conv1..3_channels, kernel, fc1, fc2,
 *                 num_classes: i32 each
 *       52     4  dropout: f32
 *       56    24  lr, lr_decay, beta1, beta2, adam_eps, recon_weight (0): f32 each
 *       80    12  batch, max_shift, limit: i32 each
 *       92     8  seed: u64
 *      100     4  epoch: i32
 *      104     8  batch_in_epoch: i64
 *      112     8  adam_t: i64
 *      120    32  epoch_loss_sum, epoch_margin_sum, epoch_recon_sum, epoch_seconds: f64
 *      152     8  epoch_images: i64
 *      160     8  num_params N: u64
 *      168     8  log_bytes L: u64
 *      176     8  names_bytes M: u64
 *      184    4N  parameters, f32, tensor order of cnn.h (PyTorch's state_dict order)
 *   184+4N    4N  Adam first moments; then 4N second moments
 *  184+12N     L  training log (CSV text); then M bytes of class names, each and a '\n'
 *  ...         4  u32 CRC-32 (zlib) of every byte before it
 *
 * Header fields are encoded byte by byte; the float arrays go to and from the file as they
 * lie in memory, which needs a little-endian IEEE-754 host (checkpoint.c enforces it at
 * compile time for the whole library).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "bytes.h"
#include "class_names.h"
#include "cnn.h"
#include "util.h"

#define CNN_MAGIC_BYTES 8
#define CNN_PREAMBLE_BYTES 16
#define CNN_HEADER_BYTES 184
#define CNN_CONFIG_INTS 9
#define CNN_CRC_BYTES 4
#define CNN_MAX_LOG_BYTES ((uint64_t)16 << 20) /* as checkpoint.c: far beyond any run */
#define CNN_CHUNK_BYTES ((size_t)4 << 20)

static const char cnn_magic[CNN_MAGIC_BYTES] = CAPS_CNN_MAGIC;

typedef struct {
    uint32_t version, header_bytes;
    caps_cnn_config cfg;
    caps_train_state st;
    int64_t adam_t;
    uint64_t num_params, log_bytes, names_bytes;
} cnn_header;

/* ------------------------------------------------------------------------ encoding */

/* The configuration's integers in file order. */
static int *config_int(caps_cnn_config *c, int k) {
    int *const at[CNN_CONFIG_INTS] = {&c->image_size, &c->in_channels, &c->conv1_channels,
                                      &c->conv2_channels, &c->conv3_channels, &c->kernel,
                                      &c->fc1, &c->fc2, &c->num_classes};
    return at[k];
}

static void encode_header(uint8_t *buf, const cnn_header *h) {
    uint8_t *p = buf;
    caps_cnn_config cfg = h->cfg;
    const caps_train_state *st = &h->st;
    memcpy(p, cnn_magic, CNN_MAGIC_BYTES);
    p += CNN_MAGIC_BYTES;
    put_u32(&p, h->version);
    put_u32(&p, h->header_bytes);
    for (int k = 0; k < CNN_CONFIG_INTS; k++) put_u32(&p, (uint32_t)*config_int(&cfg, k));
    put_f32(&p, cfg.dropout);
    put_train_state(&p, st, h->adam_t);
    put_u64(&p, h->num_params);
    put_u64(&p, h->log_bytes);
    put_u64(&p, h->names_bytes);
    CAPS_ASSERT(p - buf == CNN_HEADER_BYTES);
}

static void decode_header(cnn_header *h, const uint8_t *buf) {
    const uint8_t *p = buf + CNN_MAGIC_BYTES;
    caps_train_state *st = &h->st;
    memset(h, 0, sizeof *h);
    h->version = get_u32(&p);
    h->header_bytes = get_u32(&p);
    for (int k = 0; k < CNN_CONFIG_INTS; k++) *config_int(&h->cfg, k) = get_i32(&p);
    h->cfg.dropout = get_f32(&p);
    get_train_state(&p, st, &h->adam_t);
    h->num_params = get_u64(&p);
    h->log_bytes = get_u64(&p);
    h->names_bytes = get_u64(&p);
    CAPS_ASSERT(p - buf == CNN_HEADER_BYTES);
}

static uint64_t file_bytes(uint64_t num_params, uint64_t log_bytes, uint64_t names_bytes) {
    return CNN_HEADER_BYTES + 3 * num_params * sizeof(float) + log_bytes + names_bytes +
           CNN_CRC_BYTES;
}

static uint64_t names_block_bytes(const caps_cnn *m) {
    uint64_t n = 0;
    for (int k = 0; m->class_names && k < m->cfg.num_classes; k++)
        n += strlen(m->class_names[k]) + 1;
    return n;
}

uint64_t caps_cnn_file_size(const caps_cnn *m, size_t log_bytes) {
    return file_bytes(m->num_params, log_bytes, names_block_bytes(m));
}

/* ------------------------------------------------------------------------ checks */

/* The training state a file may hold, the same rules as a capsule model's (checkpoint.c),
 * on save (CAPS_ERR_ARG) and load (CAPS_ERR_FORMAT): we never write what we would refuse. */
static int check_state(const caps_train_state *st, int64_t adam_t, const char *path, int code,
                       caps_error *err) {
    const char *bad = NULL;
    if (!(isfinite(st->lr) && st->lr > 0.0f)) bad = "lr";
    else if (!(isfinite(st->lr_decay) && st->lr_decay > 0.0f)) bad = "lr_decay";
    else if (!(st->beta1 >= 0.0f && st->beta1 < 1.0f)) bad = "beta1";
    else if (!(st->beta2 >= 0.0f && st->beta2 < 1.0f)) bad = "beta2";
    else if (!(isfinite(st->adam_eps) && st->adam_eps >= 0.0f)) bad = "adam_eps";
    else if (!(isfinite(st->recon_weight) && st->recon_weight >= 0.0f)) bad = "recon_weight";
    else if (st->batch < 1) bad = "batch";
    else if (st->max_shift < 0) bad = "max_shift";
    else if (st->limit < 0) bad = "limit";
    else if (st->epoch < 0) bad = "epoch";
    else if (st->batch_in_epoch < 0) bad = "batch_in_epoch";
    else if (adam_t < 0) bad = "adam_t";
    else if (!(isfinite(st->epoch_loss_sum) && st->epoch_loss_sum >= 0.0)) bad = "epoch_loss_sum";
    else if (!(isfinite(st->epoch_margin_sum) && st->epoch_margin_sum >= 0.0))
        bad = "epoch_margin_sum";
    else if (!(isfinite(st->epoch_recon_sum) && st->epoch_recon_sum >= 0.0))
        bad = "epoch_recon_sum";
    else if (!(isfinite(st->epoch_seconds) && st->epoch_seconds >= 0.0)) bad = "epoch_seconds";
    else if (st->epoch_images < 0) bad = "epoch_images";
    if (!bad) return CAPS_OK;
    return caps_fail(err, code, "%s: training state: %s out of range", path, bad);
}

/* ------------------------------------------------------------------------ reading */

typedef struct {
    FILE *f;
    const char *path;
    uLong crc;
    cnn_header h;
} cnn_reader;

static int damaged(caps_error *err, int rc) {
    caps_hint(err, "the file is damaged or was not written by capsnet");
    return rc;
}

/* Opens path, reads and checks the header and the file's size. Nothing left open on failure. */
static int reader_open(cnn_reader *r, const char *path, caps_error *err) {
    r->path = path;
    r->crc = crc32(0L, Z_NULL, 0);
    r->f = fopen(path, "rb");
    if (!r->f) return caps_fail(err, CAPS_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    uint8_t buf[CNN_HEADER_BYTES];
    struct stat sb;
    int rc = CAPS_OK;
    size_t got = 0;
    if (fstat(fileno(r->f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = caps_fail(err, CAPS_ERR_IO, "%s: not a regular file (expected a model file)", path);
    } else {
        errno = 0;
        got = fread(buf, 1, sizeof buf, r->f);
        if (got < sizeof buf && ferror(r->f))
            rc = caps_fail(err, CAPS_ERR_IO, "%s: read error (%s)", path,
                           strerror(errno ? errno : EIO));
    }
    size_t n = got < CNN_MAGIC_BYTES ? got : CNN_MAGIC_BYTES;
    if (!rc && memcmp(buf, cnn_magic, n) != 0) {
        if (n == CNN_MAGIC_BYTES && memcmp(buf, CAPS_MODEL_MAGIC, CNN_MAGIC_BYTES) == 0) {
            rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: a capsule network model, not a baseline "
                           "CNN (expected magic \"CAPSCNN\\x00\", got \"CAPSNET\\x00\")", path);
            caps_hint(err, "train a CNN with capsnet train --arch cnn; or give this file to a "
                           "command without --arch cnn");
        } else {
            rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: not a capsnet CNN model file (expected "
                           "magic \"CAPSCNN\\x00\")", path);
            caps_hint(err, "give a model file that capsnet saved");
        }
    } else if (!rc && got < CNN_HEADER_BYTES) {
        rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: truncated header (expected %d bytes, got %zu)",
                       path, CNN_HEADER_BYTES, got);
        caps_hint(err, "the file is incomplete; use an earlier checkpoint or retrain");
    }
    if (!rc) {
        decode_header(&r->h, buf);
        const cnn_header *h = &r->h;
        caps_error cerr;
        if (h->version != CAPS_CNN_FILE_VERSION) {
            rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: unsupported CNN model file version "
                           "(expected %d, got %lu)", path, CAPS_CNN_FILE_VERSION,
                           (unsigned long)h->version);
            damaged(err, rc);
        } else if (h->header_bytes != CNN_HEADER_BYTES - CNN_PREAMBLE_BYTES) {
            rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: wrong header size (expected %d, got %lu)",
                           path, CNN_HEADER_BYTES - CNN_PREAMBLE_BYTES,
                           (unsigned long)h->header_bytes);
        } else if (caps_cnn_config_check(&h->cfg, &cerr) != CAPS_OK) {
            rc = damaged(err, caps_fail(err, CAPS_ERR_FORMAT, "%s: %s", path, cerr.msg));
        } else if (h->num_params != caps_cnn_num_params(&h->cfg)) {
            rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: parameter count does not match the "
                           "configuration (expected %zu, got %llu)", path,
                           caps_cnn_num_params(&h->cfg), (unsigned long long)h->num_params);
        } else if (h->log_bytes > CNN_MAX_LOG_BYTES ||
                   h->names_bytes > (uint64_t)h->cfg.num_classes * CAPS_CLASS_NAME_MAX) {
            rc = damaged(err, caps_fail(err, CAPS_ERR_FORMAT, "%s: training log or class names "
                                        "too long (%llu and %llu bytes)", path,
                                        (unsigned long long)h->log_bytes,
                                        (unsigned long long)h->names_bytes));
        } else if ((rc = check_state(&h->st, h->adam_t, path, CAPS_ERR_FORMAT, err))) {
            damaged(err, rc);
        } else {
            uint64_t want = file_bytes(h->num_params, h->log_bytes, h->names_bytes);
            if ((uint64_t)sb.st_size != want) {
                rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: %s (expected %llu bytes, got %llu)",
                               path, (uint64_t)sb.st_size < want ? "truncated" : "trailing data",
                               (unsigned long long)want, (unsigned long long)sb.st_size);
                caps_hint(err, "the file is damaged or incomplete; use an earlier checkpoint or "
                               "retrain");
            }
        }
    }
    if (rc) {
        fclose(r->f);
        r->f = NULL;
        return rc;
    }
    r->crc = crc32(r->crc, buf, CNN_HEADER_BYTES);
    return CAPS_OK;
}

/* Exactly n bytes into buf, block by block, added to the CRC. */
static int reader_read(cnn_reader *r, void *buf, size_t n, caps_error *err) {
    uint8_t *p = buf;
    while (n > 0) {
        size_t want = n < CNN_CHUNK_BYTES ? n : CNN_CHUNK_BYTES;
        errno = 0;
        size_t got = fread(p, 1, want, r->f);
        if (got < want)
            return ferror(r->f) ? caps_fail(err, CAPS_ERR_IO, "%s: read error (%s)", r->path,
                                            strerror(errno ? errno : EIO))
                                : caps_fail(err, CAPS_ERR_FORMAT,
                                            "%s: truncated while being read", r->path);
        r->crc = crc32(r->crc, p, (uInt)want);
        p += want;
        n -= want;
    }
    return CAPS_OK;
}

int caps_cnn_is_model_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char buf[CNN_MAGIC_BYTES];
    int is = fread(buf, 1, sizeof buf, f) == sizeof buf && memcmp(buf, cnn_magic, sizeof buf) == 0;
    fclose(f);
    return is;
}

int caps_cnn_peek(caps_cnn_config *cfg, caps_train_state *st, const char *path,
                  caps_error *err) {
    cnn_reader r;
    int rc = reader_open(&r, path, err);
    if (rc) return rc;
    fclose(r.f);
    if (cfg) *cfg = r.h.cfg;
    if (st) *st = r.h.st;
    return CAPS_OK;
}

/* The names block (names_bytes, CRC checked): exactly J names, each and a '\n', each a
 * class name; *out their copies, NULL for an empty block. */
static int parse_names(const cnn_reader *r, char *block, char ***out, caps_error *err) {
    *out = NULL;
    size_t len = (size_t)r->h.names_bytes, count = 0;
    int J = r->h.cfg.num_classes;
    if (len == 0) return CAPS_OK;
    for (size_t k = 0; k < len; k++) count += block[k] == '\n';
    if (block[len - 1] != '\n' || count != (size_t)J)
        return damaged(err, caps_fail(err, CAPS_ERR_FORMAT, "%s: class names: wrong count "
                                      "(expected %d, each followed by a newline)", r->path, J));
    const char **at = malloc((size_t)J * sizeof *at);
    if (!at) return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory", r->path);
    char why[128];
    for (size_t pos = 0, k = 0; k < (size_t)J; k++) {
        char *end = memchr(block + pos, '\n', len - pos);
        size_t n = (size_t)(end - (block + pos));
        if (caps_class_name_problem(block + pos, n, why, sizeof why)) {
            free(at);
            return damaged(err, caps_fail(err, CAPS_ERR_FORMAT, "%s: class names: class %zu: %s",
                                          r->path, k, why));
        }
        *end = '\0';
        at[k] = block + pos;
        pos += n + 1;
    }
    *out = caps_class_names_copy(J, at);
    free(at);
    return *out ? CAPS_OK : caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory", r->path);
}

int caps_cnn_load(caps_cnn **out, caps_train_state *st, char **log, const char *path,
                  int max_batch, caps_error *err) {
    *out = NULL;
    if (log) *log = NULL;
    cnn_reader r;
    int rc = reader_open(&r, path, err);
    if (rc) return rc;
    caps_cnn *m = NULL;
    char *text = NULL, *block = NULL, **names = NULL;
    rc = caps_cnn_create(&m, &r.h.cfg, max_batch, err);
    if (rc && err) { /* name the file: its configuration is what did not fit */
        char why[sizeof err->msg];
        memcpy(why, err->msg, sizeof why);
        caps_fail(err, rc, "%s: %s", path, why);
    }
    if (!rc) {
        text = malloc((size_t)r.h.log_bytes + 1);
        block = malloc((size_t)r.h.names_bytes + 1);
        if (!text || !block) rc = caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory", path);
    }
    size_t n = m ? m->num_params : 0;
    if (!rc) rc = reader_read(&r, m->params, n * sizeof(float), err);
    if (!rc) rc = reader_read(&r, m->adam_m, n * sizeof(float), err);
    if (!rc) rc = reader_read(&r, m->adam_v, n * sizeof(float), err);
    if (!rc) rc = reader_read(&r, text, (size_t)r.h.log_bytes, err);
    if (!rc) rc = reader_read(&r, block, (size_t)r.h.names_bytes, err);
    if (!rc) {
        uint32_t computed = (uint32_t)r.crc;
        uint8_t tail[CNN_CRC_BYTES];
        rc = reader_read(&r, tail, sizeof tail, err);
        const uint8_t *p = tail;
        uint32_t stored = rc ? 0 : get_u32(&p);
        if (!rc && stored != computed) {
            rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: checksum mismatch (expected 0x%08lx, "
                           "got 0x%08lx)", path, (unsigned long)stored, (unsigned long)computed);
            caps_hint(err, "the file is damaged; use an earlier checkpoint or retrain");
        }
    }
    fclose(r.f);
    if (!rc) {
        text[r.h.log_bytes] = '\0';
        block[r.h.names_bytes] = '\0';
        rc = parse_names(&r, block, &names, err);
    }
    free(block);
    if (rc) {
        free(text);
        caps_cnn_free(m);
        return rc;
    }
    m->class_names = names;
    m->adam_t = r.h.adam_t;
    if (st) *st = r.h.st;
    if (log)
        *log = text;
    else
        free(text);
    *out = m;
    return CAPS_OK;
}

/* ------------------------------------------------------------------------ writing */

/* Writes n bytes, added to *crc; 0 or the failed write's errno. */
static int write_block(FILE *f, uLong *crc, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n > 0) {
        size_t chunk = n < CNN_CHUNK_BYTES ? n : CNN_CHUNK_BYTES;
        *crc = crc32(*crc, p, (uInt)chunk);
        errno = 0;
        if (fwrite(p, 1, chunk, f) != chunk) return errno ? errno : EIO;
        p += chunk;
        n -= chunk;
    }
    return 0;
}

int caps_cnn_save(const caps_cnn *m, const caps_train_state *st, const char *log,
                  const char *path, caps_error *err) {
    CAPS_ASSERT(m && st && path);
    size_t log_len = log ? strlen(log) : 0;
    if (log_len > CNN_MAX_LOG_BYTES)
        return caps_fail(err, CAPS_ERR_ARG, "%s: training log too long to save (%zu bytes)",
                         path, log_len);
    int rc = check_state(st, m->adam_t, path, CAPS_ERR_ARG, err);
    if (rc) return rc;
    cnn_header h;
    memset(&h, 0, sizeof h);
    h.version = CAPS_CNN_FILE_VERSION;
    h.header_bytes = CNN_HEADER_BYTES - CNN_PREAMBLE_BYTES;
    h.cfg = m->cfg;
    h.st = *st;
    h.adam_t = m->adam_t;
    h.num_params = m->num_params;
    h.log_bytes = log_len;
    h.names_bytes = names_block_bytes(m);
    uint8_t head[CNN_HEADER_BYTES];
    encode_header(head, &h);
    char *names = malloc((size_t)h.names_bytes + 1);
    if (!names) return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory", path);
    for (size_t k = 0, at = 0; m->class_names && k < (size_t)m->cfg.num_classes; k++) {
        size_t n = strlen(m->class_names[k]);
        memcpy(names + at, m->class_names[k], n);
        names[at + n] = '\n';
        at += n + 1;
    }
    caps_atomic_file af;
    if ((rc = caps_atomic_open(&af, path, err))) {
        free(names);
        return rc;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    size_t bytes = m->num_params * sizeof(float);
    int e = write_block(af.f, &crc, head, sizeof head);
    if (!e) e = write_block(af.f, &crc, m->params, bytes);
    if (!e) e = write_block(af.f, &crc, m->adam_m, bytes);
    if (!e) e = write_block(af.f, &crc, m->adam_v, bytes);
    if (!e) e = write_block(af.f, &crc, log, log_len);
    if (!e) e = write_block(af.f, &crc, names, (size_t)h.names_bytes);
    free(names);
    if (!e) {
        uint8_t tail[CNN_CRC_BYTES], *p = tail;
        put_u32(&p, (uint32_t)crc);
        e = write_block(af.f, &crc, tail, sizeof tail);
    }
    if (!e) {
        errno = 0;
        if (fflush(af.f) != 0) e = errno ? errno : EIO;
    }
    if (e) {
        caps_atomic_abort(&af);
        caps_fail(err, CAPS_ERR_IO, "%s: write failed (%s)", path, strerror(e));
        caps_hint(err, "the old file, if any, is unchanged");
        return CAPS_ERR_IO;
    }
    rc = caps_atomic_commit(&af, err);
    if (rc) caps_hint(err, "the old file, if any, is unchanged");
    return rc;
}

/* ------------------------------------------------------------------------ class names */

int caps_cnn_set_class_names(caps_cnn *m, int n, const char *const *names, caps_error *err) {
    int J = m->cfg.num_classes;
    if (n != J)
        return caps_fail(err, CAPS_ERR_ARG, "class names: wrong count (expected %d, one per "
                         "class, got %d)", J, n);
    char why[128];
    for (int k = 0; k < n; k++)
        if (caps_class_name_problem(names[k], strlen(names[k]), why, sizeof why))
            return caps_fail(err, CAPS_ERR_ARG, "class %d: %s", k, why);
    char **copy = caps_class_names_copy(n, names);
    if (!copy) return caps_fail(err, CAPS_ERR_MEMORY, "out of memory for %d class names", n);
    if (m->class_names) caps_class_names_free(J, m->class_names);
    m->class_names = copy;
    return CAPS_OK;
}
