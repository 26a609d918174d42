/*
 * dataset.c: caps_dataset_load, which tells the three layouts of a data folder apart and
 * hands it to the reader of that layout (data.h), and caps_dataset_free.
 *
 * The layout is decided by what is in the folder, never by a flag, so `capsnet train --data
 * DIR` works the same for MNIST, CIFAR-10 and a user's own images:
 *   dir/train/ or dir/test/ a folder          -> image folders (data_folder.c)
 *   dir/data_batch_1.bin or dir/test_batch.bin -> CIFAR-10 binary (cifar.c)
 *   otherwise                                  -> IDX files (idx.c), whose "no such file"
 *                                                 message and hint then name the MNIST files,
 *                                                 as before the other layouts existed.
 */
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "util.h"

int caps_data_join(char *out, const char *dir, const char *name, caps_error *err) {
    size_t len = strlen(dir);
    const char *sep = len > 0 && dir[len - 1] == '/' ? "" : "/";
    int n = snprintf(out, CAPS_DATA_PATH_MAX, "%s%s%s", dir, sep, name);
    if (n < 0 || n >= CAPS_DATA_PATH_MAX)
        return caps_fail(err, CAPS_ERR_ARG,
                         "%s: path too long (expected under %d bytes with the file name %s)", dir,
                         CAPS_DATA_PATH_MAX, name);
    return CAPS_OK;
}

/* 1 when dir/name exists; want_dir: and is a folder (symbolic links followed). */
static int dataset_has(const char *dir, const char *name, int want_dir) {
    char path[CAPS_DATA_PATH_MAX];
    struct stat st;
    if (caps_data_join(path, dir, name, NULL)) return 0;
    if (stat(path, &st) != 0) return 0;
    return want_dir ? S_ISDIR(st.st_mode) : 1;
}

int caps_dataset_layout(const char *dir) {
    CAPS_ASSERT(dir != NULL);
    if (dataset_has(dir, "train", 1) || dataset_has(dir, "test", 1)) return CAPS_LAYOUT_FOLDER;
    if (dataset_has(dir, "data_batch_1.bin", 0) || dataset_has(dir, "test_batch.bin", 0))
        return CAPS_LAYOUT_CIFAR10;
    return CAPS_LAYOUT_IDX;
}

const char *caps_layout_name(int layout) {
    switch (layout) {
    case CAPS_LAYOUT_IDX: return "idx";
    case CAPS_LAYOUT_FOLDER: return "folder";
    case CAPS_LAYOUT_CIFAR10: return "cifar10";
    default: return NULL;
    }
}

int caps_dataset_load(caps_dataset *ds, const char *dir, int train, int num_classes,
                      caps_error *err) {
    CAPS_ASSERT(ds != NULL && dir != NULL);
    memset(ds, 0, sizeof *ds);
    switch (caps_dataset_layout(dir)) {
    case CAPS_LAYOUT_FOLDER: return caps_folder_load(ds, dir, train, num_classes, err);
    case CAPS_LAYOUT_CIFAR10: return caps_cifar_load(ds, dir, train, num_classes, err);
    default: return caps_idx_dir_load(ds, dir, train, num_classes, err);
    }
}

void caps_dataset_free(caps_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    if (ds->class_names)
        for (int k = 0; k < ds->num_names; k++) free(ds->class_names[k]);
    free(ds->class_names);
    memset(ds, 0, sizeof *ds);
}
