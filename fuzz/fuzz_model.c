/*
 * fuzz_model.c: libFuzzer target for the model-file reader (src/checkpoint.c,
 * caps_model_peek and caps_model_load; format in docs/model-format.md).
 *
 * The input is the model file. Each run reads it twice:
 *   1. as it is: caps_model_peek, then caps_model_load with max_batch 1;
 *   2. when it is long enough to hold a header and a CRC and its stored CRC is wrong, once
 *      more with the last 4 bytes replaced by the right CRC-32. A mutator cannot fix a
 *      checksum, so without this step every mutated file stops at "checksum mismatch"
 *      and the success path only ever sees the seeds' headers.
 * Inputs over FUZZ_MAX_INPUT bytes are skipped: valid files of the seed configurations are
 * a few KB, and a larger cap only makes each run slower. Allocations over 64 MB fail, see
 * __asan_default_options below.
 *
 * The reader takes a path: the input goes to a per-process file in /dev/shm (or /tmp),
 * created once, rewritten every run, removed at exit.
 *
 * Invariants checked (abort() on violation, which libFuzzer reports as a crash):
 *   peek ok:  the configuration passes caps_config_check.
 *   load ok:  peek succeeded too and gave the same configuration; the model's configuration
 *             passes caps_config_check; adam_t >= 0; the log is a string no longer than
 *             the file.
 *   failure:  a known error code equal to err.code, a message, *m and *log left NULL.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "capsnet.h"
#include "fuzz_file.h"

#define FUZZ_MAX_INPUT ((size_t)1 << 20)
#define FUZZ_HEADER_BYTES 192 /* docs/model-format.md */
#define FUZZ_CRC_BYTES 4

/* A model's memory follows its configuration, not the file's size: a 10 kB file may
 * describe a network whose activations and routing scratch take gigabytes, legitimately.
 * So for this target an allocation over 64 MB fails (returns NULL) as on a small machine,
 * rather than ending the run as libFuzzer's malloc limit would: the reader's out-of-memory
 * paths get fuzzed, and must end in CAPS_ERR_MEMORY, not a crash. (libFuzzer itself needs
 * about 20 MB in one block at start-up.) The same options set in ASAN_OPTIONS take precedence. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1:max_allocation_size_mb=64";
}

/* ------------------------------------------------------------------------ input file */

static fuzz_file fuzz_model_file;
static int fuzz_ready;
/* What *m and *log hold before a load: a failed load must have replaced it with NULL. */
static char fuzz_sentinel;

/* ------------------------------------------------------------------------ target */

static void fuzz_fail(const char *what, const caps_error *err) {
    fprintf(stderr, "fuzz_model: %s (code %d, msg \"%s\")\n", what, err->code, err->msg);
    abort();
}

static void check_error(int rc, const caps_error *err) {
    if (rc < CAPS_ERR_IO || rc > CAPS_ERR_NUMERIC || err->code != rc || err->msg[0] == '\0')
        fuzz_fail("bad error report", err);
}

static void read_model(const uint8_t *data, size_t size) {
    fuzz_file_write(&fuzz_model_file, data, size);
    const char *path = fuzz_model_file.path;
    caps_error err;
    caps_error cerr;

    caps_config peek_cfg;
    caps_train_state peek_st;
    memset(&err, 0, sizeof err);
    int peek_rc = caps_model_peek(&peek_cfg, &peek_st, path, &err);
    if (peek_rc != CAPS_OK)
        check_error(peek_rc, &err);
    else if (caps_config_check(&peek_cfg, &cerr) != CAPS_OK)
        fuzz_fail("peek accepted a configuration caps_config_check refuses", &cerr);

    capsnet *m = (capsnet *)(void *)&fuzz_sentinel;
    caps_train_state st;
    char *log = &fuzz_sentinel;
    memset(&err, 0, sizeof err);
    int rc = caps_model_load(&m, &st, &log, path, 1, NULL, &err);
    if (rc != CAPS_OK) {
        check_error(rc, &err);
        if (m != NULL || log != NULL) fuzz_fail("load failed but left *m or *log set", &err);
        return;
    }
    if (!m || !log) fuzz_fail("load succeeded without a model or a log", &err);
    if (peek_rc != CAPS_OK) fuzz_fail("load succeeded where peek failed", &err);
    if (memcmp(capsnet_config(m), &peek_cfg, sizeof peek_cfg) != 0)
        fuzz_fail("load and peek disagree on the configuration", &err);
    if (caps_config_check(capsnet_config(m), &cerr) != CAPS_OK)
        fuzz_fail("load accepted a configuration caps_config_check refuses", &cerr);
    if (capsnet_adam_t(m) < 0) fuzz_fail("negative adam_t", &err);
    if (strlen(log) > size) fuzz_fail("log longer than the file", &err);
    /* Class names: none, or one per class, each as caps_set_class_names would take it. */
    int J = capsnet_config(m)->num_classes, named = caps_class_name(m, 0) != NULL;
    for (int k = 0; k < J; k++) {
        const char *name = caps_class_name(m, k);
        if ((name != NULL) != named) fuzz_fail("some classes named, some not", &err);
        size_t len = name ? strlen(name) : 1;
        if (len < 1 || len >= CAPS_CLASS_NAME_MAX) fuzz_fail("class name of a bad length", &err);
        for (size_t i = 0; name && i < len; i++)
            if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
                fuzz_fail("control character in a class name", &err);
    }
    if (caps_class_name(m, J) != NULL) fuzz_fail("a name beyond the classes", &err);
    free(log);
    capsnet_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fuzz_ready) {
        fuzz_file_open(&fuzz_model_file, "model");
        fuzz_ready = 1;
    }
    if (size > FUZZ_MAX_INPUT) return 0;
    read_model(data, size);

    if (size < FUZZ_HEADER_BYTES + FUZZ_CRC_BYTES) return 0;
    size_t body = size - FUZZ_CRC_BYTES;
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), data, (uInt)body);
    uint8_t want[FUZZ_CRC_BYTES];
    for (int k = 0; k < FUZZ_CRC_BYTES; k++) want[k] = (uint8_t)(crc >> (8 * k)); /* LE */
    if (memcmp(data + body, want, FUZZ_CRC_BYTES) == 0) return 0; /* already read as valid */
    uint8_t *fixed = malloc(size);
    if (!fixed) abort();
    memcpy(fixed, data, body);
    memcpy(fixed + body, want, FUZZ_CRC_BYTES);
    read_model(fixed, size);
    free(fixed);
    return 0;
}
