/*
 * cifar.c: CIFAR-10 in its binary version (Krizhevsky 2009, "Learning Multiple Layers of
 * Features from Tiny Images"; cifar-10-binary.tar.gz unpacks to cifar-10-batches-bin/):
 *
 *   data_batch_1.bin .. data_batch_5.bin   training set, 10000 images each
 *   test_batch.bin                         test set, 10000 images
 *   batches.meta.txt                       the 10 class names, one a line (optional here)
 *
 * Each .bin file is records of CIFAR_RECORD = 3073 bytes and nothing else:
 *   label   1 byte, 0..9
 *   pixels  3072 bytes: the 32x32 red plane, then green, then blue, each row-major
 * which is exactly caps_dataset's [C][H][W] per image, so the pixels are copied as they are.
 * A file whose length is not a whole number of records is cut or something else, and refused;
 * all five training batches must be there (a missing one is an interrupted download, not a
 * smaller data set).
 *
 * Legend: C = 3 channels (red, green, blue), H = W = 32.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "util.h"

#define CIFAR_CHANNELS 3
#define CIFAR_SIDE 32
#define CIFAR_PIXELS (CIFAR_CHANNELS * CIFAR_SIDE * CIFAR_SIDE) /* 3072 */
#define CIFAR_RECORD (1 + CIFAR_PIXELS)                         /* 3073 */
#define CIFAR_CLASSES 10
#define CIFAR_TRAIN_BATCHES 5

static void cifar_hint_fetch(caps_error *err) {
    caps_hint(err, "CIFAR-10's binary version is cifar-10-binary.tar.gz from "
                   "https://www.cs.toronto.edu/~kriz/cifar.html; pass its "
                   "cifar-10-batches-bin folder");
}

/* Appends the records of path to ds (grown to hold them). */
static int cifar_read_file(caps_dataset *ds, const char *path, int num_classes,
                           caps_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        caps_fail(err, CAPS_ERR_IO, "%s: %s (expected a CIFAR-10 batch file)", path,
                  e == ENOENT ? "no such file" : strerror(e));
        if (e == ENOENT) cifar_hint_fetch(err);
        return CAPS_ERR_IO;
    }
    int rc = CAPS_OK;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        rc = caps_fail(err, CAPS_ERR_IO, "%s: cannot stat (%s)", path, strerror(errno));
        goto done;
    }
    size_t bytes = (size_t)st.st_size;
    if (bytes == 0 || bytes % CIFAR_RECORD != 0) {
        rc = caps_fail(err, CAPS_ERR_FORMAT,
                       "%s: length not a whole number of records (expected a multiple of %d "
                       "bytes, a label byte and %d pixel bytes each, got %zu bytes)",
                       path, CIFAR_RECORD, CIFAR_PIXELS, bytes);
        cifar_hint_fetch(err);
        goto done;
    }
    size_t n = bytes / CIFAR_RECORD;
    if (n > (size_t)(INT_MAX - ds->count)) {
        rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: too many images (expected at most %d in all)",
                       path, INT_MAX);
        goto done;
    }
    size_t total = (size_t)ds->count + n;
    uint8_t *images = realloc(ds->images, total * CIFAR_PIXELS);
    if (images) ds->images = images;
    uint8_t *labels = images ? realloc(ds->labels, total) : NULL;
    if (labels) ds->labels = labels;
    if (!images || !labels) {
        rc = caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for %zu images", path, total);
        goto done;
    }
    uint8_t record[CIFAR_RECORD];
    for (size_t r = 0; r < n; r++) {
        if (fread(record, 1, CIFAR_RECORD, f) != CIFAR_RECORD) {
            /* The size was checked: a short read is a read error or a file changing under us. */
            rc = ferror(f) ? caps_fail(err, CAPS_ERR_IO, "%s: read failed (%s)", path,
                                       strerror(errno))
                           : caps_fail(err, CAPS_ERR_FORMAT,
                                       "%s: truncated at record %zu (expected %zu records)",
                                       path, r, n);
            goto done;
        }
        int label = record[0];
        if (label >= CIFAR_CLASSES || label >= num_classes) {
            int most = num_classes < CIFAR_CLASSES ? num_classes : CIFAR_CLASSES;
            rc = caps_fail(err, CAPS_ERR_FORMAT,
                           "%s: label %d of record %zu out of range (expected 0..%d)", path,
                           label, r, most - 1);
            if (label < CIFAR_CLASSES)
                caps_hint(err, "CIFAR-10 has %d classes; the network has %d (--classes %d)",
                          CIFAR_CLASSES, num_classes, CIFAR_CLASSES);
            else
                caps_hint(err, "is this CIFAR-10's binary version (CIFAR-100's records have "
                               "two label bytes)?");
            goto done;
        }
        size_t i = (size_t)ds->count + r;
        ds->labels[i] = (uint8_t)label;
        memcpy(ds->images + i * CIFAR_PIXELS, record + 1, CIFAR_PIXELS);
    }
    ds->count = (int)total;
done:
    fclose(f); /* read only: a close error cannot lose data */
    return rc;
}

int caps_cifar_load(caps_dataset *ds, const char *dir, int train, int num_classes,
                    caps_error *err) {
    CAPS_ASSERT(ds != NULL && dir != NULL);
    memset(ds, 0, sizeof *ds);
    if (num_classes < 1)
        return caps_fail(err, CAPS_ERR_ARG,
                         "%s: bad number of classes (expected at least 1, got %d)", dir,
                         num_classes);
    caps_dataset d = {0};
    int rc = CAPS_OK;
    for (int b = 1; b <= (train ? CIFAR_TRAIN_BATCHES : 1) && !rc; b++) {
        char name[32], path[CAPS_DATA_PATH_MAX];
        if (train)
            snprintf(name, sizeof name, "data_batch_%d.bin", b);
        else
            snprintf(name, sizeof name, "test_batch.bin");
        rc = caps_data_join(path, dir, name, err);
        if (!rc) rc = cifar_read_file(&d, path, num_classes, err);
    }
    /* batches.meta.txt: the ten names, one a line (it ends with blank lines); optional. */
    if (!rc) rc = caps_data_read_names(&d, dir, "batches.meta.txt", CIFAR_CLASSES, err);
    if (rc) {
        caps_dataset_free(&d);
        return rc;
    }
    d.channels = CIFAR_CHANNELS;
    d.rows = d.cols = CIFAR_SIDE;
    *ds = d;
    return CAPS_OK;
}
