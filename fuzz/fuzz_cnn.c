/*
 * fuzz_cnn.c: libFuzzer target for the baseline CNN's model-file reader (src/cnn_file.c,
 * caps_cnn_peek and caps_cnn_load; docs/model-format.md, "Baseline CNN model files").
 *
 * As fuzz_model.c does for capsule files: each input is read as it is, then, when it is long
 * enough and its stored CRC-32 is wrong, once more with the right CRC in its last 4 bytes (a
 * mutator cannot fix a checksum). Allocations over 64 MB fail rather than end the run, so the
 * reader's out-of-memory paths are fuzzed too.
 *
 * Invariants checked (abort() on violation, which libFuzzer reports as a crash):
 *   peek ok:  the configuration passes caps_cnn_config_check.
 *   load ok:  peek succeeded too, with the same configuration; adam_t >= 0; the log is a
 *             string no longer than the file; class names none or one a class, each 1 to
 *             127 bytes with no control character.
 *   failure:  a known error code equal to err.code, a message, *m and *log left NULL.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "capsnet.h"
#include "cnn.h"
#include "fuzz_file.h"

#define FUZZ_MAX_INPUT ((size_t)1 << 20)
#define FUZZ_CRC_BYTES 4
#define FUZZ_MIN_FIXED 64 /* shorter inputs are not worth a second read */

const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1:max_allocation_size_mb=64";
}

static fuzz_file fuzz_cnn_file;
static int fuzz_ready;
static char fuzz_sentinel;

static void fuzz_fail(const char *what, const caps_error *err) {
    fprintf(stderr, "fuzz_cnn: %s (code %d, msg \"%s\")\n", what, err->code, err->msg);
    abort();
}

static void check_error(int rc, const caps_error *err) {
    if (rc < CAPS_ERR_IO || rc > CAPS_ERR_NUMERIC || err->code != rc || err->msg[0] == '\0')
        fuzz_fail("bad error report", err);
}

static void read_cnn(const uint8_t *data, size_t size) {
    fuzz_file_write(&fuzz_cnn_file, data, size);
    const char *path = fuzz_cnn_file.path;
    caps_error err, cerr;
    caps_cnn_config peek_cfg;
    caps_train_state peek_st;
    memset(&err, 0, sizeof err);
    int peek_rc = caps_cnn_peek(&peek_cfg, &peek_st, path, &err);
    if (peek_rc != CAPS_OK)
        check_error(peek_rc, &err);
    else if (caps_cnn_config_check(&peek_cfg, &cerr) != CAPS_OK)
        fuzz_fail("peek accepted a configuration caps_cnn_config_check refuses", &cerr);

    caps_cnn *m = (caps_cnn *)(void *)&fuzz_sentinel;
    caps_train_state st;
    char *log = &fuzz_sentinel;
    memset(&err, 0, sizeof err);
    int rc = caps_cnn_load(&m, &st, &log, path, 1, &err);
    if (rc != CAPS_OK) {
        check_error(rc, &err);
        if (m != NULL || log != NULL) fuzz_fail("load failed but left *m or *log set", &err);
        return;
    }
    if (!m || !log) fuzz_fail("load succeeded without a model or a log", &err);
    if (peek_rc != CAPS_OK) fuzz_fail("load succeeded where peek failed", &err);
    if (memcmp(&m->cfg, &peek_cfg, sizeof peek_cfg) != 0)
        fuzz_fail("load and peek disagree on the configuration", &err);
    if (m->adam_t < 0) fuzz_fail("negative adam_t", &err);
    if (strlen(log) > size) fuzz_fail("log longer than the file", &err);
    for (int k = 0; m->class_names && k < m->cfg.num_classes; k++) {
        const char *name = m->class_names[k];
        size_t len = name ? strlen(name) : 0;
        if (len < 1 || len >= CAPS_CLASS_NAME_MAX) fuzz_fail("class name of a bad length", &err);
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
                fuzz_fail("control character in a class name", &err);
    }
    free(log);
    caps_cnn_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fuzz_ready) {
        fuzz_file_open(&fuzz_cnn_file, "cnn");
        fuzz_ready = 1;
    }
    if (size > FUZZ_MAX_INPUT) return 0;
    read_cnn(data, size);
    if (size < FUZZ_MIN_FIXED + FUZZ_CRC_BYTES) return 0;
    size_t body = size - FUZZ_CRC_BYTES;
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), data, (uInt)body);
    uint8_t want[FUZZ_CRC_BYTES];
    for (int k = 0; k < FUZZ_CRC_BYTES; k++) want[k] = (uint8_t)(crc >> (8 * k)); /* LE */
    if (memcmp(data + body, want, FUZZ_CRC_BYTES) == 0) return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed) abort();
    memcpy(fixed, data, body);
    memcpy(fixed + body, want, FUZZ_CRC_BYTES);
    read_cnn(fixed, size);
    free(fixed);
    return 0;
}
