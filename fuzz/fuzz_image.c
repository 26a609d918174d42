/*
 * fuzz_image.c: libFuzzer target for the image reader (src/image.c, caps_image_load: PNG
 * through libpng, PGM P5 and P2 by hand).
 *
 * Input layout:
 *   byte 0   a second size to ask for: h = 1 + (byte >> 4), w = 1 + (byte & 15), 1..16 each
 *   bytes 1.. the image file
 * Each run loads the file as 28 x 28 (the MNIST network's input) and as h x w, so the
 * size checks of both formats see matching and mismatching sizes, and small valid images
 * reach the pixel conversion too.
 *
 * The reader takes a path: the file goes to a per-process file in /dev/shm (or /tmp),
 * created once, rewritten every run, removed at exit.
 *
 * Invariants checked (abort() on violation, which libFuzzer reports as a crash):
 *   success: every one of the h*w outputs written (the buffer is filled with NaN first),
 *            finite and in [0, 1]; nothing written past h*w (ASan: the buffer is exact).
 *   failure: a known error code equal to err.code, and a message.
 * libpng's errors unwind with longjmp through src/image.c: ASan and LeakSanitizer check
 * that this path frees everything.
 */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capsnet.h"
#include "fuzz_file.h"

#define FUZZ_MNIST_SIDE 28

/* ------------------------------------------------------------------------ input file */

static fuzz_file fuzz_image_file;
static int fuzz_ready;

/* ------------------------------------------------------------------------ target */

/* Loads the file as h x w into an exactly sized buffer and checks the result. */
static void load_as(int h, int w) {
    size_t n = (size_t)h * (size_t)w;
    float *out = malloc(n * sizeof *out);
    if (!out) abort();
    for (size_t i = 0; i < n; i++) out[i] = NAN;
    caps_error err;
    memset(&err, 0, sizeof err);
    int rc = caps_image_load(fuzz_image_file.path, out, h, w, &err);
    if (rc != CAPS_OK) {
        if (rc < CAPS_ERR_IO || rc > CAPS_ERR_NUMERIC || err.code != rc || err.msg[0] == '\0') {
            fprintf(stderr, "fuzz_image: bad error report (rc %d, code %d, msg \"%s\")\n", rc,
                    err.code, err.msg);
            abort();
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            /* NaN fails both comparisons: an output never written is caught here too. */
            if (!(out[i] >= 0.0f && out[i] <= 1.0f)) {
                fprintf(stderr, "fuzz_image: %dx%d (h x w): pixel %zu = %g, not in [0, 1]\n", h,
                        w, i, (double)out[i]);
                abort();
            }
        }
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fuzz_ready) {
        fuzz_file_open(&fuzz_image_file, "image");
        fuzz_ready = 1;
    }
    if (size < 1) return 0;
    int h = 1 + (data[0] >> 4), w = 1 + (data[0] & 15);
    fuzz_file_write(&fuzz_image_file, data + 1, size - 1);
    load_as(FUZZ_MNIST_SIDE, FUZZ_MNIST_SIDE);
    load_as(h, w);
    return 0;
}
