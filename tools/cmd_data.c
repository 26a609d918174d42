/*
 * cmd_data.c: capsnet data, two jobs on data sets:
 *
 * --check DIR: can capsnet train and test read this data set? It loads both splits exactly as
 * training does (caps_dataset_load: every image decoded, every label checked) and reports the
 * layout found, per split the images of each class with the class names, the image size and
 * channels, and the problems that would stop a training run: a file that does not load,
 * splits of different image shapes, images that are not square. Exit status 0 when the data
 * set is usable, 1 with the message naming the file otherwise.
 *
 * --make-affnist OUT: the test set of the paper's affNIST experiment (section 5.2), made from
 * the test split of --data by src/affnist.c's recipe (caps_dataset_affnist), written as MNIST's
 * test files, so that `capsnet test --data OUT` scores a model trained with --canvas 40.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cli.h"
#include "util.h"

#define DATA_MAX_CLASSES CAPS_DATA_MAX_CLASSES
#define DATA_TRAIN_CLASSES 10 /* capsnet train's classes when the data names none */

static const char data_usage[] =
    "Usage: capsnet data --check DIR [--json] [--classes N]\n"
    "       capsnet data --make-affnist OUT [--data DIR] [--size 40] [--seed S] [--limit N]\n"
    "       capsnet data --make-subset OUT --per-class N [--data DIR]\n"
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
    "--make-affnist OUT writes an affNIST-like test set (the paper's section 5.2) to\n"
    "OUT/t10k-images-idx3-ubyte.gz and OUT/t10k-labels-idx1-ubyte.gz: each test image of DIR\n"
    "(data/mnist) rotated by up to 20 degrees, sheared by up to 45, scaled by 0.8 to 1.2 in\n"
    "x and y, and placed at random, whole, on a SIZE x SIZE canvas; the same set for the same\n"
    "--seed. Score a model trained with --canvas 40 --shift 6 on it:\n"
    "capsnet test --model M --data OUT.\n"
    "\n"
    "--make-subset OUT --per-class N writes a small training set (the paper's claim that\n"
    "capsules need fewer examples): the first N training images of every class of DIR, in\n"
    "order, and DIR's whole test split, as MNIST's files in OUT; train on it with --data OUT.\n"
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

/* ------------------------------------------------------------------------ --make-affnist */

#define AFFNIST_DEFAULT_SIZE 40 /* affNIST's canvas */
#define AFFNIST_MAX_SIZE 1024   /* 10,000 images of 1024x1024 is already 10 GB */
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAGIC_IMAGES 0x00000803u      /* [N][rows][cols], one channel */
#define IDX_MAGIC_IMAGES_NCHW 0x00000804u /* [N][C][rows][cols], as idx.c reads colour */
#define GZ_CHUNK ((size_t)1 << 20)        /* bytes per gzwrite (it takes an unsigned count) */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes path as a gzip-compressed IDX file: magic, rank big-endian dimensions, then bytes of
 * payload; atomically, as every file capsnet writes (a temporary file beside it, renamed at
 * the end). zlib writes through a duplicate of the temporary file's descriptor, closed by
 * gzclose before caps_atomic_commit syncs and renames. */
static int write_idx_gz(const char *path, uint32_t magic, const uint32_t *dims, int rank,
                        const uint8_t *payload, size_t bytes, caps_error *err) {
    caps_atomic_file af;
    int rc = caps_atomic_open(&af, path, err);
    if (rc) return rc;
    int fd = dup(fileno(af.f));
    gzFile gz = fd >= 0 ? gzdopen(fd, "wb") : NULL;
    if (!gz) {
        int e = errno;
        if (fd >= 0) close(fd);
        caps_atomic_abort(&af);
        return caps_fail(err, CAPS_ERR_IO, "%s: cannot start the gzip stream (%s)", path,
                         strerror(e));
    }
    uint8_t head[4 + 4 * 4];
    CAPS_ASSERT(rank >= 1 && rank <= 4);
    put_be32(head, magic);
    for (int i = 0; i < rank; i++) put_be32(head + 4 + 4 * i, dims[i]);
    int head_bytes = 4 + 4 * rank, ok = gzwrite(gz, head, (unsigned)head_bytes) == head_bytes;
    for (size_t off = 0; ok && off < bytes; off += GZ_CHUNK) {
        unsigned n = (unsigned)(bytes - off < GZ_CHUNK ? bytes - off : GZ_CHUNK);
        ok = gzwrite(gz, payload + off, n) == (int)n;
    }
    int e = errno, closed = gzclose(gz) == Z_OK;
    if (!ok || !closed) {
        caps_atomic_abort(&af);
        return caps_fail(err, CAPS_ERR_IO, "%s: write failed (%s)", path,
                         e ? strerror(e) : "gzip error");
    }
    return caps_atomic_commit(&af, err);
}

/* dir/name into out [n]; 0, or a runtime error for a path too long. */
static int data_join(char *out, size_t n, const char *dir, const char *name) {
    size_t len = strlen(dir);
    int k = snprintf(out, n, "%s%s%s", dir, len && dir[len - 1] == '/' ? "" : "/", name);
    return k < 0 || (size_t)k >= n ? fail_runtime("%s: path too long", dir) : 0;
}

/* Writes ds into the folder out (created if needed) as MNIST's files of a split: prefix
 * "train" or "t10k", -images-idx3-ubyte.gz and -labels-idx1-ubyte.gz, and class-names.txt
 * when ds names its classes. */
static int write_split(const char *out, const char *prefix, const caps_dataset *ds) {
    char images_path[4200], labels_path[4200], names_path[4200], name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", prefix);
    if (data_join(images_path, sizeof images_path, out, name)) return EXIT_FAILURE;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", prefix);
    if (data_join(labels_path, sizeof labels_path, out, name) ||
        data_join(names_path, sizeof names_path, out, "class-names.txt"))
        return EXIT_FAILURE;
    struct stat st;
    if (mkdir(out, 0755) != 0 &&
        !(errno == EEXIST && stat(out, &st) == 0 && S_ISDIR(st.st_mode)))
        return fail_runtime("%s: cannot create the folder (%s)", out,
                            errno == EEXIST ? "a file has that name" : strerror(errno));
    caps_error err;
    uint32_t n = (uint32_t)ds->count, h = (uint32_t)ds->rows, w = (uint32_t)ds->cols;
    uint32_t C = (uint32_t)ds->channels, dims1[3] = {n, h, w}, dims3[4] = {n, C, h, w};
    size_t bytes = (size_t)ds->count * ds->channels * ds->rows * ds->cols;
    if (write_idx_gz(images_path, C == 1 ? IDX_MAGIC_IMAGES : IDX_MAGIC_IMAGES_NCHW,
                     C == 1 ? dims1 : dims3, C == 1 ? 3 : 4, ds->images, bytes, &err) ||
        write_idx_gz(labels_path, IDX_MAGIC_LABELS, &n, 1, ds->labels, (size_t)ds->count,
                     &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    if (ds->num_names > 0) { /* CIFAR-10's or an image folder's names go with the set */
        size_t len = 1;
        for (int j = 0; j < ds->num_names; j++) len += strlen(ds->class_names[j]) + 1;
        char *text = malloc(len), *p = text;
        if (!text) return fail_runtime("out of memory");
        for (int j = 0; j < ds->num_names; j++) p += sprintf(p, "%s\n", ds->class_names[j]);
        int rc = caps_write_text_atomic(names_path, text, &err);
        free(text);
        if (rc) {
            print_error(&err);
            return EXIT_FAILURE;
        }
    }
    return EXIT_SUCCESS;
}

/* The affNIST-like test set of data's test split, written into the folder out as MNIST's
 * test files (and class-names.txt when the data names its classes). */
static int data_make_affnist(const char *out, const char *data, int size, uint64_t seed,
                             int limit) {
    caps_error err;
    caps_dataset src = {0}, aff = {0};
    if (caps_dataset_load(&src, data, 0, CAPS_DATA_MAX_CLASSES, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    int status = EXIT_FAILURE;
    if (size < src.rows || size < src.cols) {
        status = fail_usage("data", "--size %d: the canvas must hold %s's %dx%d test images "
                            "(expected --size %d or more)", size, data, src.cols, src.rows,
                            src.rows > src.cols ? src.rows : src.cols);
        goto done;
    }
    int total = src.count;
    if (limit > 0 && limit < src.count) src.count = limit; /* the first images; freed whole */
    double t0 = caps_seconds();
    if (caps_dataset_affnist(&aff, &src, size, seed, &err)) {
        print_error(&err);
        goto done;
    }
    if (write_split(out, "t10k", &aff)) goto done;
    printf("wrote %s: %d affNIST-like test images (%d of %s's %d), %dx%d, %d channel%s, "
           "seed %llu, in %.1f s\n", out, aff.count, aff.count, data, total, size, size,
           aff.channels, aff.channels == 1 ? "" : "s", (unsigned long long)seed,
           caps_seconds() - t0);
    status = EXIT_SUCCESS;
done:
    caps_dataset_free(&aff);
    caps_dataset_free(&src);
    return status;
}

/* A small training set, as the paper's claim about learning from fewer examples is tested:
 * the first per_class images of every class of data's training split, in their order (10 a
 * class: MNIST's first 100 such digits), and the whole test split, into the folder out. */
static int data_make_subset(const char *out, const char *data, int per_class) {
    caps_error err;
    caps_dataset train = {0}, test = {0};
    int status = EXIT_FAILURE;
    if (caps_dataset_load(&train, data, 1, CAPS_DATA_MAX_CLASSES, &err) ||
        caps_dataset_load(&test, data, 0, CAPS_DATA_MAX_CLASSES, &err)) {
        print_error(&err);
        goto done;
    }
    int have[CAPS_DATA_MAX_CLASSES] = {0}, taken[CAPS_DATA_MAX_CLASSES] = {0}, kept = 0;
    for (int i = 0; i < train.count; i++) have[train.labels[i]]++;
    for (int k = 0; k < CAPS_DATA_MAX_CLASSES; k++)
        if (have[k] > 0 && have[k] < per_class) {
            fail_runtime("%s: class %d has %d training images, fewer than --per-class %d", data,
                         k, have[k], per_class);
            goto done;
        }
    size_t bytes = (size_t)train.channels * train.rows * train.cols;
    for (int i = 0; i < train.count; i++) { /* compacted in place, in order */
        int k = train.labels[i];
        if (taken[k] == per_class) continue;
        taken[k]++;
        memmove(train.images + (size_t)kept * bytes, train.images + (size_t)i * bytes, bytes);
        train.labels[kept++] = (uint8_t)k;
    }
    int total = train.count;
    train.count = kept;
    if (write_split(out, "train", &train) || write_split(out, "t10k", &test)) goto done;
    printf("wrote %s: %d training images (the first %d of each class of %s's %d), %d test "
           "images\n", out, kept, per_class, data, total, test.count);
    status = EXIT_SUCCESS;
done:
    caps_dataset_free(&train);
    caps_dataset_free(&test);
    return status;
}

/* ------------------------------------------------------------------------ main */

int cmd_data(int argc, char **argv) {
    const char *check = NULL, *make_affnist = NULL, *make_subset = NULL, *data = "data/mnist";
    int json = 0, classes = DATA_MAX_CLASSES, size = AFFNIST_DEFAULT_SIZE, limit = 0;
    int per_class = 0;
    uint64_t seed = 1;
    option opts[] = {
        {"check", OPT_STRING, &check, 0, 0, "DIR", "the data folder to check", 0},
        {"classes", OPT_INT, &classes, 1, DATA_MAX_CLASSES, "N",
         "the network's classes: labels must be below N (default: any)", 0},
        {"json", OPT_FLAG, &json, 0, 0, NULL, "one JSON object on stdout", 0},
        {"make-affnist", OPT_STRING, &make_affnist, 0, 0, "OUT",
         "write an affNIST-like test set into the folder OUT", 0},
        {"data", OPT_STRING, &data, 0, 0, "DIR",
         "--make-affnist: the data whose test split it transforms (data/mnist)", 0},
        {"size", OPT_INT, &size, 1, AFFNIST_MAX_SIZE, "S", "--make-affnist: canvas side (40)", 0},
        {"seed", OPT_U64, &seed, 0, 0, "S", "--make-affnist: seed of the transforms (1)", 0},
        {"limit", OPT_INT, &limit, 0, INT_MAX, "N", "--make-affnist: the first N test images", 0},
        {"make-subset", OPT_STRING, &make_subset, 0, 0, "OUT",
         "write a small training set (--per-class) and the test set into OUT", 0},
        {"per-class", OPT_INT, &per_class, 1, INT_MAX, "N",
         "--make-subset: the first N training images of each class", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("data", data_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!!check + !!make_affnist + !!make_subset > 1)
        return fail_usage("data", "--check, --make-affnist and --make-subset exclude each other");
    if (make_subset) {
        if (!per_class) return fail_usage("data", "--make-subset needs --per-class N");
        const char *not_here[] = {"json", "classes", "size", "seed", "limit"};
        for (int k = 0; k < 5; k++)
            if (find_option(opts, nopts, not_here[k])->given)
                return fail_usage("data", "--%s does not go with --make-subset", not_here[k]);
        return data_make_subset(make_subset, data, per_class);
    }
    if (per_class) return fail_usage("data", "--per-class goes with --make-subset");
    if (make_affnist) {
        if (json || find_option(opts, nopts, "classes")->given)
            return fail_usage("data", "--json and --classes go with --check");
        return data_make_affnist(make_affnist, data, size, seed, limit);
    }
    if (!check)
        return fail_usage("data", "--check DIR is required (or --make-affnist OUT, --make-subset OUT)");
    const char *affnist_only[] = {"data", "size", "seed", "limit"};
    for (int k = 0; k < 4; k++)
        if (find_option(opts, nopts, affnist_only[k])->given)
            return fail_usage("data", "--%s goes with --make-affnist", affnist_only[k]);

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
