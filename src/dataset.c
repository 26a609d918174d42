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
 *                                                 as before the other layouts existed;
 *                                                 names from dir/class-names.txt.
 * Whichever layout named the classes, every label must have a name.
 */
#include <errno.h>
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

int caps_data_read_names(caps_dataset *ds, const char *dir, const char *name, int want,
                         caps_error *err) {
    char path[CAPS_DATA_PATH_MAX];
    struct stat st;
    int rc = caps_data_join(path, dir, name, err);
    if (rc) return rc;
    if (stat(path, &st) != 0 && errno == ENOENT) return CAPS_OK;
    int n = 0;
    char **names = NULL;
    if ((rc = caps_class_names_read(path, &n, &names, err))) return rc;
    if (want > 0 && n != want) {
        caps_class_names_free(n, names);
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: wrong number of class names (expected %d, one a line, got %d)",
                         path, want, n);
    }
    if (n > CAPS_DATA_MAX_CLASSES) {
        caps_class_names_free(n, names);
        return caps_fail(err, CAPS_ERR_FORMAT,
                         "%s: too many class names (expected at most %d, got %d)", path,
                         CAPS_DATA_MAX_CLASSES, n);
    }
    ds->num_names = n;
    ds->class_names = names;
    return CAPS_OK;
}

/* Every label of ds has a name, where ds has names. */
static int dataset_check_names(const caps_dataset *ds, const char *dir, caps_error *err) {
    for (int i = 0; ds->num_names > 0 && i < ds->count; i++)
        if (ds->labels[i] >= ds->num_names)
            return caps_fail(err, CAPS_ERR_FORMAT,
                             "%s: label %d of image %d has no class name (expected labels 0 "
                             "to %d, as many as the names)",
                             dir, ds->labels[i], i, ds->num_names - 1);
    return CAPS_OK;
}

int caps_dataset_load(caps_dataset *ds, const char *dir, int train, int num_classes,
                      caps_error *err) {
    CAPS_ASSERT(ds != NULL && dir != NULL);
    memset(ds, 0, sizeof *ds);
    int rc;
    switch (caps_dataset_layout(dir)) {
    case CAPS_LAYOUT_FOLDER: rc = caps_folder_load(ds, dir, train, num_classes, err); break;
    case CAPS_LAYOUT_CIFAR10: rc = caps_cifar_load(ds, dir, train, num_classes, err); break;
    default:
        rc = caps_idx_dir_load(ds, dir, train, num_classes, err);
        if (!rc) rc = caps_data_read_names(ds, dir, "class-names.txt", 0, err);
        break;
    }
    if (!rc) rc = dataset_check_names(ds, dir, err);
    if (rc) caps_dataset_free(ds);
    return rc;
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
