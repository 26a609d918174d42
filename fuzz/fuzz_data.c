/*
 * fuzz_data.c: libFuzzer target for the readers of users' own data sets (issue 16): the
 * CIFAR-10 batch reader (src/cifar.c, through caps_dataset_load), the class-names reader
 * (caps_class_names_read) and the colour-keeping image reader (caps_image_read_u8, PNG through
 * libpng, PGM and PPM by hand), which every file of an image folder goes through.
 *
 * Input layout:
 *   byte 0    which reader: b % 3 = 0 CIFAR-10 test batch, 1 names file, 2 image
 *   bytes 1.. the file
 * The CIFAR-10 file is written as DIR/test_batch.bin of a per-process folder, so the layout
 * detection of caps_dataset_load picks the CIFAR-10 reader, as for a user's folder.
 *
 * Invariants checked (abort() on violation, which libFuzzer reports as a crash):
 *   success: CIFAR-10: count = file length / 3073, 3 x 32 x 32, every label < 10, no names;
 *            names: 1 to 65536 names, each 1..CAPS_CLASS_NAME_MAX-1 bytes without control
 *            bytes; image: h, w >= 1, channels 1 or 3, every byte of the c*h*w readable.
 *   failure: a known error code equal to err.code, and a message; the data set zeroed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capsnet.h"
#include "fuzz_file.h"

#define FUZZ_CIFAR_RECORD 3073

static fuzz_file fuzz_cifar, fuzz_names, fuzz_image;
static char fuzz_dir[128];
static int fuzz_ready;

static void fuzz_remove_dir(void) { rmdir(fuzz_dir); }

static void fuzz_setup(void) {
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/capsnet-fuzz-%ld-cifar", base, (long)getpid());
    if (mkdir(fuzz_dir, 0700) != 0) {
        perror(fuzz_dir);
        abort();
    }
    /* Registered first, so it runs after fuzz_file.h's removal of the files in it. */
    atexit(fuzz_remove_dir);
    fuzz_file_open(&fuzz_cifar, "cifar/test_batch.bin");
    fuzz_file_open(&fuzz_names, "names.txt");
    fuzz_file_open(&fuzz_image, "image");
    fuzz_ready = 1;
}

static void check_error(const char *what, int rc, const caps_error *err) {
    if (rc < CAPS_ERR_IO || rc > CAPS_ERR_DEVICE || err->code != rc || err->msg[0] == '\0') {
        fprintf(stderr, "fuzz_data: %s: bad error report (rc %d, code %d, msg \"%s\")\n", what,
                rc, err->code, err->msg);
        abort();
    }
}

static void fuzz_cifar_file(const uint8_t *data, size_t n) {
    fuzz_file_write(&fuzz_cifar, data, n);
    caps_dataset ds;
    caps_error err;
    memset(&ds, 0xa5, sizeof ds); /* the reader must zero it, whatever it held */
    memset(&err, 0, sizeof err);
    int rc = caps_dataset_load(&ds, fuzz_dir, 0, 10, &err);
    if (rc != CAPS_OK) {
        check_error("cifar", rc, &err);
        if (ds.images || ds.labels || ds.count || ds.class_names || ds.num_names) {
            fprintf(stderr, "fuzz_data: cifar: data set not zeroed on failure\n");
            abort();
        }
        return;
    }
    if (ds.count < 1 || (size_t)ds.count * FUZZ_CIFAR_RECORD != n || ds.channels != 3 ||
        ds.rows != 32 || ds.cols != 32 || ds.num_names != 0) {
        fprintf(stderr, "fuzz_data: cifar: bad shape (count %d for %zu bytes, %dx%dx%d)\n",
                ds.count, n, ds.channels, ds.rows, ds.cols);
        abort();
    }
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)ds.count * 3072; i++) sum += ds.images[i];
    for (int i = 0; i < ds.count; i++)
        if (ds.labels[i] >= 10) {
            fprintf(stderr, "fuzz_data: cifar: label %d of image %d\n", ds.labels[i], i);
            abort();
        }
    if (sum == 0xffffffffu) fprintf(stderr, "(unlikely sum)\n"); /* keeps the reads */
    caps_dataset_free(&ds);
}

static void fuzz_names_file(const uint8_t *data, size_t n) {
    fuzz_file_write(&fuzz_names, data, n);
    int count = -1;
    char **names = NULL;
    caps_error err;
    memset(&err, 0, sizeof err);
    int rc = caps_class_names_read(fuzz_names.path, &count, &names, &err);
    if (rc != CAPS_OK) {
        check_error("names", rc, &err);
        return;
    }
    if (count < 1 || count > 65536 || !names) {
        fprintf(stderr, "fuzz_data: names: %d names\n", count);
        abort();
    }
    for (int k = 0; k < count; k++) {
        size_t len = strlen(names[k]);
        if (len < 1 || len >= CAPS_CLASS_NAME_MAX) {
            fprintf(stderr, "fuzz_data: names: name %d of %zu bytes\n", k, len);
            abort();
        }
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)names[k][i];
            if (c < 0x20 || c == 0x7f) {
                fprintf(stderr, "fuzz_data: names: control byte %u in name %d\n", c, k);
                abort();
            }
        }
    }
    caps_class_names_free(count, names);
}

static void fuzz_image_file_read(const uint8_t *data, size_t n) {
    fuzz_file_write(&fuzz_image, data, n);
    int h = -1, w = -1, c = -1;
    uint8_t *bytes = NULL;
    caps_error err;
    memset(&err, 0, sizeof err);
    int rc = caps_image_read_u8(fuzz_image.path, 0, 0, &h, &w, &c, &bytes, &err);
    if (rc != CAPS_OK) {
        check_error("image", rc, &err);
        return;
    }
    if (h < 1 || w < 1 || (c != 1 && c != 3) || !bytes) {
        fprintf(stderr, "fuzz_data: image: %dx%d, %d channels\n", w, h, c);
        abort();
    }
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)c * (size_t)h * (size_t)w; i++) sum += bytes[i];
    if (sum == 0xffffffffu) fprintf(stderr, "(unlikely sum)\n");
    free(bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fuzz_ready) fuzz_setup();
    if (size < 1) return 0;
    switch (data[0] % 3) {
    case 0: fuzz_cifar_file(data + 1, size - 1); break;
    case 1: fuzz_names_file(data + 1, size - 1); break;
    default: fuzz_image_file_read(data + 1, size - 1); break;
    }
    return 0;
}
