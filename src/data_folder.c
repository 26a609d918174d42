/*
 * data_folder.c: data sets stored as image files in one folder per class, the convention of
 * torchvision's ImageFolder, so that people can train on their own pictures:
 *
 *   DIR/train/<class>/<image>    DIR/test/<class>/<image>
 *
 * Images are PNG, PGM (P2/P5) or PPM (P3/P6) files, chosen by their name's ending (.png,
 * .pgm, .ppm, any case) and decoded by caps_image_read_u8 (image.c), which reads the format
 * from the bytes. Other files (a README, .DS_Store, hidden files) are skipped. Classes are the
 * sub-folders of the split sorted by strcmp, and label k is the k-th of them, as ImageFolder
 * numbers them; the test split must have exactly the training split's class folders, so a
 * label means the same class in both. Files are taken in strcmp order of their names within
 * each class, so the order, and with it every shuffle drawn from a seed, is the same on every
 * machine (readdir's order is not).
 *
 * Every image must have the size and the channel count (1 gray, 3 colour) of the first image
 * of the split. Nothing is resized, cropped or converted: resizing silently would change what
 * the network sees (and what a model trained here is later shown), so an image of another size
 * or kind is an error naming the file, and the user decides how to convert. Alpha is composited
 * on black, as for a single image (image.c).
 *
 * The whole split is decoded once per process, into the caps_dataset's bytes ([count][C][H][W],
 * as IDX files give them); that is the cache: every epoch, shift and batch reads memory, never
 * the files again. Decoding is one pass over the files; the only cost is the first load.
 *
 * Legend: C = channels (1 or 3), H = rows, W = columns of every image; J = classes (<= 256,
 * labels are bytes).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "class_names.h"
#include "data.h"
#include "util.h"


/* A growing array of malloc'ed strings. */
typedef struct {
    char **items;
    int count, cap;
} name_list;

static int list_push(name_list *l, const char *s, caps_error *err) {
    if (l->count == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        if (l->cap > INT_MAX / 2)
            return caps_fail(err, CAPS_ERR_FORMAT, "%s: too many files (expected at most %d)", s,
                             INT_MAX / 2);
        char **grown = realloc(l->items, (size_t)cap * sizeof *grown);
        if (!grown) return caps_fail(err, CAPS_ERR_MEMORY, "out of memory listing %s", s);
        l->items = grown;
        l->cap = cap;
    }
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (!copy) return caps_fail(err, CAPS_ERR_MEMORY, "out of memory listing %s", s);
    memcpy(copy, s, n);
    l->items[l->count++] = copy;
    return CAPS_OK;
}

static void list_free(name_list *l) {
    for (int i = 0; i < l->count; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_sort(name_list *l) {
    if (l->count > 1) qsort(l->items, (size_t)l->count, sizeof *l->items, compare_names);
}

/* .png, .pgm or .ppm at the end of name, in any case. */
static int folder_is_image_name(const char *name) {
    size_t n = strlen(name);
    if (n < 5) return 0; /* at least one character before the extension */
    const char *ext = name + n - 4;
    return strcasecmp(ext, ".png") == 0 || strcasecmp(ext, ".pgm") == 0 ||
           strcasecmp(ext, ".ppm") == 0;
}

static int folder_open(DIR **d, const char *path, caps_error *err) {
    *d = opendir(path);
    if (*d) return CAPS_OK;
    if (errno == ENOENT)
        return caps_fail(err, CAPS_ERR_IO, "%s: no such folder (expected one folder per class)",
                         path);
    return caps_fail(err, CAPS_ERR_IO, "%s: cannot open folder (%s)", path, strerror(errno));
}

/* The entries of folder path, not hidden ('.' first), that are folders (dirs = 1) or regular
 * files named as images (dirs = 0), sorted; *others counts the rest (hidden ones excepted). */
static int folder_list(name_list *out, int *others, const char *path, int dirs,
                       caps_error *err) {
    DIR *d;
    int rc = folder_open(&d, path, err);
    if (rc) return rc;
    *others = 0;
    errno = 0;
    for (struct dirent *e; (e = readdir(d)); errno = 0) {
        if (e->d_name[0] == '.') continue;
        char full[CAPS_DATA_PATH_MAX];
        struct stat st;
        if ((rc = caps_data_join(full, path, e->d_name, err))) break;
        /* stat, not d_type: symbolic links to folders and files count, as ImageFolder's. */
        int keep = stat(full, &st) == 0 &&
                   (dirs ? S_ISDIR(st.st_mode)
                         : S_ISREG(st.st_mode) && folder_is_image_name(e->d_name));
        if (!keep) {
            (*others)++;
            continue;
        }
        if ((rc = list_push(out, e->d_name, err))) break;
    }
    if (!rc && errno != 0)
        rc = caps_fail(err, CAPS_ERR_IO, "%s: cannot read folder (%s)", path, strerror(errno));
    closedir(d);
    if (rc) {
        list_free(out);
        return rc;
    }
    list_sort(out);
    return CAPS_OK;
}

/* The class folders of split (a folder path), sorted: at least one. */
static int folder_classes(name_list *classes, const char *split, caps_error *err) {
    int others;
    int rc = folder_list(classes, &others, split, 1, err);
    if (rc) return rc;
    if (classes->count == 0) {
        caps_fail(err, CAPS_ERR_FORMAT,
                  "%s: no class folders (expected one folder per class, e.g. %s/cat/1.png)",
                  split, split);
        caps_hint(err, "an image-folder data set is DIR/train/<class>/<images> and "
                       "DIR/test/<class>/<images>");
        return CAPS_ERR_FORMAT;
    }
    /* The folder names become the model's class names: they must pass the names' rule. */
    for (int k = 0; k < classes->count; k++) {
        char why[160];
        const char *name = classes->items[k];
        if (caps_class_name_problem(name, strlen(name), why, sizeof why)) {
            caps_fail(err, CAPS_ERR_FORMAT, "%s/%s: class folder name unusable as a class name: %s",
                      split, name, why);
            list_free(classes);
            return CAPS_ERR_FORMAT;
        }
    }
    return CAPS_OK;
}

/* The test split's class folders must be the training split's, name for name: the labels are
 * positions in the sorted list, so one folder more or less would shift every label after it. */
static int folder_same_classes(const name_list *test, const char *test_dir,
                               const name_list *train, const char *train_dir, caps_error *err) {
    int i = 0, j = 0;
    while (i < test->count || j < train->count) {
        int c = i == test->count    ? 1
                : j == train->count ? -1
                                    : strcmp(test->items[i], train->items[j]);
        if (c == 0) {
            i++, j++;
            continue;
        }
        if (c < 0)
            caps_fail(err, CAPS_ERR_FORMAT,
                      "%s: class folder '%s' is not in %s (expected the same class folders in "
                      "both splits: %d in train, %d in test)",
                      test_dir, test->items[i], train_dir, train->count, test->count);
        else
            caps_fail(err, CAPS_ERR_FORMAT,
                      "%s: class folder '%s' of %s is missing (expected the same class folders "
                      "in both splits: %d in train, %d in test)",
                      test_dir, train->items[j], train_dir, train->count, test->count);
        caps_hint(err, "labels number the sorted class folders, so both splits need the same "
                       "ones (a folder may hold few images, not none)");
        return CAPS_ERR_FORMAT;
    }
    return CAPS_OK;
}

/* Lists the image files of every class: paths (full, in label then name order) and
 * start [J + 1], where class k's files are paths[start[k] .. start[k+1]-1]. */
static int folder_files(name_list *paths, int *start, const name_list *classes,
                        const char *split, caps_error *err) {
    for (int k = 0; k < classes->count; k++) {
        char class_dir[CAPS_DATA_PATH_MAX];
        name_list files = {0};
        int others, rc = caps_data_join(class_dir, split, classes->items[k], err);
        if (!rc) rc = folder_list(&files, &others, class_dir, 0, err);
        if (rc) return rc;
        if (files.count == 0) {
            caps_fail(err, CAPS_ERR_FORMAT,
                      "%s: no images in class folder (expected .png, .pgm or .ppm files, got %d "
                      "other entries)",
                      class_dir, others);
            caps_hint(err, "every class needs at least one image; remove the folder if the "
                           "class is not wanted");
            return CAPS_ERR_FORMAT;
        }
        start[k] = paths->count;
        for (int i = 0; i < files.count && !rc; i++) {
            char full[CAPS_DATA_PATH_MAX];
            rc = caps_data_join(full, class_dir, files.items[i], err);
            if (!rc) rc = list_push(paths, full, err);
        }
        list_free(&files);
        if (rc) return rc;
    }
    start[classes->count] = paths->count;
    return CAPS_OK;
}

/* Decodes every file of paths into ds (count, channels, rows, cols, images, labels). */
static int folder_decode(caps_dataset *ds, const name_list *paths, const int *start, int J,
                         caps_error *err) {
    int h, w, c;
    uint8_t *first;
    int rc = caps_image_read_u8(paths->items[0], 0, 0, &h, &w, &c, &first, err);
    if (rc) return rc;
    size_t per = (size_t)c * (size_t)h * (size_t)w; /* <= INT_MAX, image.c checks */
    ds->images = caps_alloc((size_t)paths->count, per);
    ds->labels = malloc((size_t)paths->count);
    if (!ds->images || !ds->labels) {
        free(first);
        return caps_fail(err, CAPS_ERR_MEMORY,
                         "out of memory for %d images of %dx%dx%d (%zu bytes)", paths->count, c,
                         h, w, (size_t)paths->count * per);
    }
    memcpy(ds->images, first, per);
    free(first);
    for (int k = 0; k < J; k++)
        for (int i = start[k]; i < start[k + 1]; i++) ds->labels[i] = (uint8_t)k;

    for (int i = 1; i < paths->count; i++) {
        int hi, wi, ci;
        uint8_t *img;
        rc = caps_image_read_u8(paths->items[i], h, w, &hi, &wi, &ci, &img, err);
        if (rc == CAPS_ERR_FORMAT && strstr(err->msg, "wrong image size")) {
            caps_hint(err, "every image must have the size of the first, %s (%dx%d); capsnet "
                           "never resizes (that would change what the network sees): resize the "
                           "files beforehand",
                      paths->items[0], w, h);
            return rc;
        }
        if (rc) return rc;
        if (ci != c) {
            free(img);
            caps_fail(err, CAPS_ERR_FORMAT,
                      "%s: mixed gray and colour images (expected %d channel%s as the first "
                      "image, %s, got %d)",
                      paths->items[i], c, c == 1 ? "" : "s", paths->items[0], ci);
            caps_hint(err, "convert the images to all gray or all colour; capsnet does not "
                           "guess which one you meant");
            return CAPS_ERR_FORMAT;
        }
        memcpy(ds->images + (size_t)i * per, img, per);
        free(img);
    }
    ds->count = paths->count;
    ds->channels = c;
    ds->rows = h;
    ds->cols = w;
    return CAPS_OK;
}

int caps_folder_load(caps_dataset *ds, const char *dir, int train, int num_classes,
                     caps_error *err) {
    CAPS_ASSERT(ds != NULL && dir != NULL);
    memset(ds, 0, sizeof *ds);
    caps_error scratch;
    if (!err) err = &scratch; /* folder_decode reads the message back */
    if (num_classes < 1)
        return caps_fail(err, CAPS_ERR_ARG,
                         "%s: bad number of classes (expected at least 1, got %d)", dir,
                         num_classes);
    char train_dir[CAPS_DATA_PATH_MAX], test_dir[CAPS_DATA_PATH_MAX];
    int rc = caps_data_join(train_dir, dir, "train", err);
    if (!rc) rc = caps_data_join(test_dir, dir, "test", err);
    if (rc) return rc;
    const char *split = train ? train_dir : test_dir;

    name_list classes = {0}, train_classes = {0}, paths = {0};
    int *start = NULL;
    caps_dataset d = {0};
    rc = folder_classes(&classes, split, err);
    if (rc) goto done;
    struct stat st;
    if (!train && stat(train_dir, &st) == 0) {
        rc = folder_classes(&train_classes, train_dir, err);
        if (!rc) rc = folder_same_classes(&classes, test_dir, &train_classes, train_dir, err);
        if (rc) goto done;
    }
    int J = classes.count;
    if (J > CAPS_DATA_MAX_CLASSES || J > num_classes) {
        int most = num_classes < CAPS_DATA_MAX_CLASSES ? num_classes : CAPS_DATA_MAX_CLASSES;
        rc = caps_fail(err, CAPS_ERR_FORMAT,
                       "%s: too many class folders (expected at most %d, got %d)", split, most,
                       J);
        if (J <= CAPS_DATA_MAX_CLASSES)
            caps_hint(err, "the network has %d classes; train with --classes %d for these %d "
                           "folders (capsnet train takes 10 unless told)",
                      num_classes, J, J);
        else
            caps_hint(err, "labels are bytes: at most %d classes", CAPS_DATA_MAX_CLASSES);
        goto done;
    }
    start = malloc(((size_t)J + 1) * sizeof *start);
    if (!start) {
        rc = caps_fail(err, CAPS_ERR_MEMORY, "out of memory listing %s", split);
        goto done;
    }
    rc = folder_files(&paths, start, &classes, split, err);
    if (!rc) rc = folder_decode(&d, &paths, start, J, err);
    if (rc) goto done;
    d.num_names = J;
    d.class_names = classes.items; /* the sorted folder names, now the dataset's */
    classes.items = NULL;
    classes.count = 0;
    *ds = d;
    d = (caps_dataset){0};
done:
    caps_dataset_free(&d);
    free(start);
    list_free(&paths);
    list_free(&classes);
    list_free(&train_classes);
    return rc;
}
