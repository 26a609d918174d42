/*
 * fuzz_idx.c: libFuzzer target for the IDX reader (src/idx.c, caps_idx_load).
 *
 * Input layout:
 *   bytes 0..1  big-endian u16 split S (clamped to the rest's length)
 *   bytes 2..   the rest: [0, S) is the image file, [S, end) the label file
 * Both files are fuzzed together, so the count-mismatch, label-range and trailing-data
 * paths are reached as well as each header. gzread reads gzip and raw files alike, so
 * the seeds (fuzz/corpus/idx) hold both and the mutator mixes them.
 *
 * The reader takes paths: each input is written to two per-process files in /dev/shm
 * (or /tmp), created once, rewritten every run, removed at exit.
 *
 * Invariants checked (abort() on violation, which libFuzzer reports as a crash):
 *   success: count, channels, rows, cols > 0; images and labels non-NULL and as long as
 *            the shape says (every byte is read, so ASan checks the length); labels < 10.
 *   failure: a known error code equal to err.code, a message, and ds left zeroed.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capsnet.h"
#include "fuzz_file.h"

#define FUZZ_NUM_CLASSES 10
#define FUZZ_SPLIT_BYTES 2

/* ------------------------------------------------------------------------ input files */

static fuzz_file fuzz_files[2]; /* images, labels */
static int fuzz_ready;

/* ------------------------------------------------------------------------ target */

static void check_failure(int rc, const caps_error *err, const caps_dataset *ds) {
    if (rc < CAPS_ERR_IO || rc > CAPS_ERR_NUMERIC || err->code != rc || err->msg[0] == '\0') {
        fprintf(stderr, "fuzz_idx: bad error report (rc %d, code %d, msg \"%s\")\n", rc,
                err->code, err->msg);
        abort();
    }
    if (ds->images || ds->labels || ds->count || ds->channels || ds->rows || ds->cols) {
        fprintf(stderr, "fuzz_idx: dataset not zeroed after error: %s\n", err->msg);
        abort();
    }
}

static void check_success(const caps_dataset *ds) {
    if (ds->count <= 0 || ds->channels <= 0 || ds->rows <= 0 || ds->cols <= 0 || !ds->images ||
        !ds->labels) {
        fprintf(stderr, "fuzz_idx: bad dataset (count %d, %d x %d x %d, images %p, labels %p)\n",
                ds->count, ds->channels, ds->rows, ds->cols, (void *)ds->images,
                (void *)ds->labels);
        abort();
    }
    size_t pixels = (size_t)ds->count * (size_t)ds->channels * (size_t)ds->rows * (size_t)ds->cols;
    /* Touch every byte: a buffer shorter than the shape is an ASan report here. */
    unsigned sum = 0;
    for (size_t i = 0; i < pixels; i++) sum += ds->images[i];
    for (int i = 0; i < ds->count; i++) {
        if (ds->labels[i] >= FUZZ_NUM_CLASSES) {
            fprintf(stderr, "fuzz_idx: label %d at %d out of range\n", ds->labels[i], i);
            abort();
        }
    }
    volatile unsigned sink = sum; /* keeps the loop */
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fuzz_ready) {
        fuzz_file_open(&fuzz_files[0], "images");
        fuzz_file_open(&fuzz_files[1], "labels");
        fuzz_ready = 1;
    }
    if (size < FUZZ_SPLIT_BYTES) return 0;
    size_t split = (size_t)data[0] << 8 | data[1];
    const uint8_t *rest = data + FUZZ_SPLIT_BYTES;
    size_t n = size - FUZZ_SPLIT_BYTES;
    if (split > n) split = n;
    fuzz_file_write(&fuzz_files[0], rest, split);
    fuzz_file_write(&fuzz_files[1], rest + split, n - split);

    caps_dataset ds;
    caps_error err;
    memset(&err, 0, sizeof err);
    int rc = caps_idx_load(&ds, fuzz_files[0].path, fuzz_files[1].path, FUZZ_NUM_CLASSES, &err);
    if (rc == CAPS_OK)
        check_success(&ds);
    else
        check_failure(rc, &err, &ds);
    caps_dataset_free(&ds);
    return 0;
}
