/*
 * cmd_data.c: capsnet data --check DIR: can capsnet train and test read this data set?
 * It loads both splits exactly as training does (caps_dataset_load: every image decoded, every
 * label checked) and reports the layout found, per split the images of each class with the
 * class names, the image size and channels, and the problems that would stop a training run:
 * a file that does not load, splits of different image shapes, images that are not square.
 * Exit status 0 when the data set is usable, 1 with the message naming the file otherwise.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

#define DATA_MAX_CLASSES CAPS_DATA_MAX_CLASSES
#define DATA_TRAIN_CLASSES 10 /* capsnet train's classes when the data names none */

static const char data_usage[] =
    "Usage: capsnet data --check DIR [--json] [--classes N]\n"
    "\n"
    "Checks that DIR holds a data set capsnet train and test can read, in any of the three\n"
    "layouts capsnet reads:\n"
    "  image folders  DIR/train/<class>/<image> and DIR/test/<class>/<image>: PNG, PGM or PPM\n"
    "                 files, all of one size, all gray or all colour; classes are the folder\n"
    "                 names sorted\n"
    "  CIFAR-10       DIR/data_batch_1.bin .. data_batch_5.bin and test_batch.bin (the binary\n"
    "                 version), class names from batches.meta.txt\n"
    "  IDX            DIR/train-images-idx3-ubyte[.gz] and the rest of MNIST's files, class\n"
    "                 names from DIR/class-names.txt (one a line) when it is there\n"
    "Every image is decoded, as training will. Prints the layout, per split the images of each\n"
    "class, the image size and channels, and the problems found; exit status 1 if any.\n"
    "\n"
    "Options:\n";

typedef struct {
    const char *name; /* "train" or "test" */
    caps_dataset ds;
    int loaded;
    int per_class[DATA_MAX_CLASSES];
} data_split;

#define DATA_MAX_PROBLEMS 4

typedef struct {
    caps_error list[DATA_MAX_PROBLEMS];
    int count;
} data_problems;

static void data_problem(data_problems *p, const caps_error *err) {
    if (p->count < DATA_MAX_PROBLEMS) p->list[p->count++] = *err;
}

static const char *data_layout_text(int layout) {
    switch (layout) {
    case CAPS_LAYOUT_FOLDER: return "image folders (DIR/train/<class>/*, DIR/test/<class>/*)";
    case CAPS_LAYOUT_CIFAR10: return "CIFAR-10 binary (data_batch_1..5.bin, test_batch.bin)";
    default: return "IDX files (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz], ...)";
    }
}

/* The name of class j: the data set's own, else its number. buf [16]. */
static const char *data_class_name(const data_split *s, const data_split *other, int j,
                                   char *buf) {
    const caps_dataset *named = s->ds.num_names ? &s->ds : &other->ds;
    if (j < named->num_names) return named->class_names[j];
    snprintf(buf, 16, "%d", j);
    return buf;
}

static void data_print_text(const char *dir, int layout, const data_split *sp, int classes,
                            const data_problems *p) {
    printf("%s: %s\n", dir, data_layout_text(layout));
    for (int k = 0; k < 2; k++) {
        const data_split *s = &sp[k];
        if (!s->loaded) {
            printf("%s: not loadable\n", s->name);
            continue;
        }
        printf("%s: %d images, %dx%d pixels (w x h), %d channel%s (%s)\n", s->name, s->ds.count,
               s->ds.cols, s->ds.rows, s->ds.channels, s->ds.channels == 1 ? "" : "s",
               s->ds.channels == 1 ? "gray" : s->ds.channels == 3 ? "colour" : "other");
        printf("  class  images  name\n");
        for (int j = 0; j < classes; j++) {
            char buf[16];
            printf("  %5d  %6d  %s\n", j, s->per_class[j], data_class_name(s, &sp[1 - k], j, buf));
        }
    }
    /* capsnet train takes as many classes as the data names, else 10. */
    int named = sp[0].ds.num_names > 0 || sp[1].ds.num_names > 0;
    if (p->count == 0) {
        if (named || classes <= DATA_TRAIN_CLASSES)
            printf("ok: %d classes%s\n", classes, named ? ", named" : "");
        else
            printf("ok: %d classes; train with --classes %d\n", classes, classes);
    }
}

static void data_print_json(const char *dir, int layout, const data_split *sp, int classes,
                            const data_problems *p) {
    printf("{\"data\": ");
    json_string(stdout, dir);
    printf(", \"layout\": \"%s\", \"ok\": %s, \"classes\": %d", caps_layout_name(layout),
           p->count ? "false" : "true", classes);
    for (int k = 0; k < 2; k++) {
        const data_split *s = &sp[k];
        printf(", \"%s\": ", s->name);
        if (!s->loaded) {
            printf("null");
            continue;
        }
        printf("{\"images\": %d, \"rows\": %d, \"cols\": %d, \"channels\": %d, \"per_class\": [",
               s->ds.count, s->ds.rows, s->ds.cols, s->ds.channels);
        for (int j = 0; j < classes; j++) {
            char buf[16];
            printf("%s{\"class\": %d, \"name\": ", j ? ", " : "", j);
            json_string(stdout, data_class_name(s, &sp[1 - k], j, buf));
            printf(", \"images\": %d}", s->per_class[j]);
        }
        printf("]}");
    }
    printf(", \"problems\": [");
    for (int i = 0; i < p->count; i++) {
        if (i) printf(", ");
        json_string(stdout, p->list[i].msg);
    }
    printf("]}\n");
}

int cmd_data(int argc, char **argv) {
    const char *check = NULL;
    int json = 0, classes = DATA_MAX_CLASSES;
    option opts[] = {
        {"check", OPT_STRING, &check, 0, 0, "DIR", "the data folder to check", 0},
        {"classes", OPT_INT, &classes, 1, DATA_MAX_CLASSES, "N",
         "the network's classes: labels must be below N (default: any)", 0},
        {"json", OPT_FLAG, &json, 0, 0, NULL, "one JSON object on stdout", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("data", data_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!check) return fail_usage("data", "--check DIR is required");

    int layout = caps_dataset_layout(check);
    data_split sp[2] = {{.name = "train"}, {.name = "test"}};
    data_problems p = {.count = 0};
    for (int k = 0; k < 2; k++) {
        caps_error err = {0};
        if (caps_dataset_load(&sp[k].ds, check, k == 0, classes, &err)) {
            data_problem(&p, &err);
            continue;
        }
        sp[k].loaded = 1;
        for (int i = 0; i < sp[k].ds.count; i++) sp[k].per_class[sp[k].ds.labels[i]]++;
    }
    /* The classes: the names given, or one past the largest label seen. */
    int J = 0;
    for (int k = 0; k < 2; k++) {
        if (!sp[k].loaded) continue;
        if (sp[k].ds.num_names > J) J = sp[k].ds.num_names;
        for (int j = 0; j < DATA_MAX_CLASSES; j++)
            if (sp[k].per_class[j] && j + 1 > J) J = j + 1;
    }
    const caps_dataset *tr = &sp[0].ds, *te = &sp[1].ds;
    caps_error err = {0};
    if (sp[0].loaded && sp[1].loaded &&
        (tr->channels != te->channels || tr->rows != te->rows || tr->cols != te->cols)) {
        snprintf(err.msg, sizeof err.msg,
                 "%s: test images differ from training images (expected %dx%d pixels, %d "
                 "channels, got %dx%d, %d)",
                 check, tr->cols, tr->rows, tr->channels, te->cols, te->rows, te->channels);
        data_problem(&p, &err);
    }
    if (sp[0].loaded && tr->rows != tr->cols) {
        snprintf(err.msg, sizeof err.msg,
                 "%s: images are not square (expected W = H, got %dx%d); the network takes "
                 "square images",
                 check, tr->cols, tr->rows);
        data_problem(&p, &err);
    }

    if (json)
        data_print_json(check, layout, sp, J, &p);
    else
        data_print_text(check, layout, sp, J, &p);
    for (int i = 0; i < p.count; i++) print_error(&p.list[i]);
    for (int k = 0; k < 2; k++) caps_dataset_free(&sp[k].ds);
    return p.count ? EXIT_FAILURE : EXIT_SUCCESS;
}
