/*
 * cmd_report.c: capsnet report: one self-contained HTML page about a trained model, with
 * its figures beside it in the same folder (no network access, no scripts):
 *
 *   training curves from the model's log      loss.svg, accuracy.svg, speed.svg
 *   accuracy, clean and affine side by side   in the page, per class with bars
 *   the confusion matrix                      confusion.png
 *   the ten most confidently wrong images     wrong.png (with their reconstructions)
 *   a reconstruction grid                     reconstructions.png
 *   the perturbation figure, one per class    perturb_<class>.png
 *
 * Every file is written atomically; index.html last, so a page that exists refers only to
 * files that exist. Classes are named where the model has names (caps_class_name): a name
 * column in the per-class table, a legend under the confusion matrix, the figure captions.
 * A colour model's figures are in colour (visualize.c).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "figures.h"
#include "util.h"

#define REPORT_RECONSTRUCTIONS 20
#define REPORT_WRONG 10
#define REPORT_MAX_CLASS_FIGURES 20

/* A growing string for the page. */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if (t->s && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? 2 * t->cap : 16384;
        while (cap < t->len + (size_t)n + 1) cap *= 2;
        char *grown = realloc(t->s, cap);
        if (!grown) {
            t->failed = 1;
            return;
        }
        t->s = grown;
        t->cap = cap;
    }
}

/* Text into HTML: the five characters that mean markup, escaped. */
static void put_escaped(text *t, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': put(t, "&lt;"); break;
        case '>': put(t, "&gt;"); break;
        case '&': put(t, "&amp;"); break;
        case '"': put(t, "&quot;"); break;
        case '\'': put(t, "&#39;"); break;
        default: put(t, "%c", *s);
        }
    }
}

/* The training log (CSV from the model file): epoch, train loss, test loss, test accuracy
 * and images/s per epoch. Columns by name, so older or newer logs still read. */
typedef struct {
    int n;
    double *epoch, *train_loss, *test_loss, *test_acc, *speed;
} curves;

static int column_of(const char *header, const char *name) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", header);
    int k = 0;
    for (char *save = NULL, *c = strtok_r(buf, ",\n", &save); c; c = strtok_r(NULL, ",\n", &save), k++)
        if (strcmp(c, name) == 0) return k;
    return -1;
}

static void parse_log(curves *cv, const char *log) {
    memset(cv, 0, sizeof *cv);
    if (!log) return;
    const char *nl = strchr(log, '\n');
    if (!nl) return;
    char header[1024];
    snprintf(header, sizeof header, "%.*s", (int)(nl - log), log);
    int ce = column_of(header, "epoch"), ctl = column_of(header, "train_loss");
    int cte = column_of(header, "test_loss"), ca = column_of(header, "test_accuracy");
    int cs = column_of(header, "train_images_per_s");
    int rows = 0;
    for (const char *p = nl + 1; *p; p++) rows += *p == '\n';
    double **cols[5] = {&cv->epoch, &cv->train_loss, &cv->test_loss, &cv->test_acc, &cv->speed};
    for (int k = 0; k < 5; k++) *cols[k] = calloc((size_t)rows + 1, sizeof(double));
    for (const char *line = nl + 1; *line && cv->n < rows; line = strchr(line, '\n') + 1) {
        double v[64];
        int nv = 0;
        const char *p = line;
        while (nv < 64 && *p && *p != '\n') {
            char *end;
            v[nv++] = strtod(p, &end);
            p = end;
            while (*p && *p != ',' && *p != '\n') p++;
            if (*p == ',') p++;
        }
        int want[5] = {ce, ctl, cte, ca, cs};
        for (int k = 0; k < 5; k++)
            (*cols[k])[cv->n] = want[k] >= 0 && want[k] < nv ? v[want[k]] : NAN;
        cv->test_acc[cv->n] *= 100.0;
        cv->n++;
        if (!strchr(line, '\n')) break;
    }
}

static void free_curves(curves *cv) {
    free(cv->epoch), free(cv->train_loss), free(cv->test_loss), free(cv->test_acc), free(cv->speed);
}

static void join(char *out, size_t n, const char *dir, const char *name) {
    snprintf(out, n, "%s/%s", dir, name);
}

static int chart(const char *dir, const char *name, const char *title, const char *ylabel,
                 const curves *cv, const caps_series *s, int ns) {
    char path[4200];
    caps_error err;
    join(path, sizeof path, dir, name);
    if (caps_chart_write_svg(path, title, "epoch", ylabel, cv->epoch, cv->n, s, ns, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    return 0;
}

/* Test images predicted wrong, most confident first (the length of the wrong capsule). */
static int most_confidently_wrong(int *out, int max, const caps_eval *ev, const caps_dataset *ds) {
    int n = 0;
    for (int k = 0; k < ev->total; k++) {
        if (ev->pred[k] == ds->labels[k]) continue;
        int at;
        if (n < max)
            at = n++;
        else if (ev->score[k] > ev->score[out[max - 1]])
            at = max - 1; /* drops the least confident of the list */
        else
            continue;
        while (at > 0 && ev->score[out[at - 1]] < ev->score[k]) {
            out[at] = out[at - 1];
            at--;
        }
        out[at] = k;
    }
    return n;
}

static const char report_usage[] =
    "Usage: capsnet report --model MODEL [--data DIR] [--out DIR] [options]\n"
    "\n"
    "Writes DIR/index.html, a page about the model that opens in any browser without a\n"
    "network: training curves from its log, accuracy and per-class accuracy on clean and\n"
    "on rotated and shifted test images side by side, the confusion matrix, the ten most\n"
    "confidently wrong test images with their reconstructions, a reconstruction grid and\n"
    "the perturbation figure for one image of each class; the figures beside it.\n"
    "\n"
    "Options:\n";

int cmd_report(int argc, char **argv) {
    const char *model = NULL, *data = "data/mnist", *out = "report", *aff = "30,0.1";
    int limit = 0, threads = 0;
    uint64_t seed = 1;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"data", OPT_STRING, &data, 0, 0, "DIR", "data folder (default data/mnist)", 0},
        {"out", OPT_STRING, &out, 0, 0, "DIR", "folder for the page and figures (report)", 0},
        {"affine", OPT_STRING, &aff, 0, 0, "DEG,FRAC", "transforms of the robustness test (30,0.1)", 0},
        {"seed", OPT_U64, &seed, 0, 0, "S", "seed of the affine draws (1)", 0},
        {"limit", OPT_INT, &limit, 0, INT_MAX, "N", "evaluate the first N test images only", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads, 0 = all cores (0)", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("report", report_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!model) return fail_usage("report", "--model is required");
    caps_affine affine;
    caps_error err;
    if (caps_affine_parse(&affine, aff, seed, &err)) {
        print_error(&err);
        return EXIT_USAGE;
    }
    caps_set_threads(threads);
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return fail_runtime("%s: cannot create folder (%s)", out, strerror(errno));

    capsnet *m = NULL;
    caps_train_state st;
    char *log = NULL;
    caps_dataset test = {0};
    caps_eval clean = {0}, moved = {0};
    curves cv = {0};
    text page = {0};
    int status = EXIT_FAILURE;
    if (caps_model_load(&m, &st, &log, model, 100, NULL, &err) ||
        caps_dataset_load(&test, data, 0, capsnet_config(m)->num_classes, &err)) {
        print_error(&err);
        goto done;
    }
    const caps_config *c = capsnet_config(m);
    int J = c->num_classes;
    float rw = st.recon_weight > 0 ? st.recon_weight : 0.0005f;
    fprintf(stderr, "capsnet report: evaluating %s on %s, clean and rotated/shifted\n", model,
            data);
    if (caps_evaluate(m, &test, limit, rw, NULL, &clean, NULL, NULL, &err) ||
        caps_evaluate(m, &test, limit, rw, &affine, &moved, NULL, NULL, &err)) {
        print_error(&err);
        goto done;
    }

    /* Figures. */
    char path[4200];
    parse_log(&cv, log);
    if (cv.n > 0) {
        caps_series loss[2] = {{"train loss", cv.train_loss}, {"test loss", cv.test_loss}};
        caps_series acc[1] = {{"test accuracy %", cv.test_acc}};
        caps_series speed[1] = {{"training images/s", cv.speed}};
        if (chart(out, "loss.svg", "loss per epoch", "loss", &cv, loss, 2) ||
            chart(out, "accuracy.svg", "test accuracy per epoch", "accuracy %", &cv, acc, 1) ||
            chart(out, "speed.svg", "training speed per epoch", "images/s", &cv, speed, 1))
            goto done;
    }
    join(path, sizeof path, out, "confusion.png");
    if (caps_heatmap_write_png(path, "confusion matrix (rows: true class, columns: predicted)",
                               clean.confusion, J, &err)) {
        print_error(&err);
        goto done;
    }
    int images[REPORT_RECONSTRUCTIONS], nrec = clean.total < REPORT_RECONSTRUCTIONS ? clean.total
                                                                                    : REPORT_RECONSTRUCTIONS;
    for (int k = 0; k < nrec; k++) images[k] = k;
    join(path, sizeof path, out, "reconstructions.png");
    if (caps_draw_reconstructions(m, &test, images, nrec, NULL, path,
                                  "the first test images and their reconstructions", NULL, NULL,
                                  &err)) {
        print_error(&err);
        goto done;
    }
    int wrong[REPORT_WRONG], nwrong = most_confidently_wrong(wrong, REPORT_WRONG, &clean, &test);
    if (nwrong > 0) {
        join(path, sizeof path, out, "wrong.png");
        if (caps_draw_reconstructions(m, &test, wrong, nwrong, NULL, path,
                                      "the most confidently wrong test images", NULL, NULL, &err)) {
            print_error(&err);
            goto done;
        }
    }
    int per_class[REPORT_MAX_CLASS_FIGURES], nclass = J < REPORT_MAX_CLASS_FIGURES ? J : REPORT_MAX_CLASS_FIGURES;
    for (int j = 0; j < nclass; j++) {
        /* The first test image of the class that the model gets right (else the first). */
        per_class[j] = -1;
        for (int k = 0; k < clean.total; k++)
            if (test.labels[k] == j && (per_class[j] < 0 || clean.pred[per_class[j]] != j)) {
                per_class[j] = k;
                if (clean.pred[k] == j) break;
            }
        if (per_class[j] < 0) continue;
        char name[64];
        snprintf(name, sizeof name, "perturb_%d.png", j);
        join(path, sizeof path, out, name);
        if (caps_draw_perturbation(m, &test, per_class[j], 0.25f, 11, path, NULL, NULL, &err)) {
            print_error(&err);
            goto done;
        }
    }

    /* The page. */
    put(&page, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
               "<title>capsnet report: ");
    put_escaped(&page, model);
    put(&page, "</title>\n<style>\n"
               "body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;"
               " color: #222; }\n"
               "h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }\n"
               "table { border-collapse: collapse; } td, th { padding: 0.2em 0.7em; "
               "text-align: right; border-bottom: 1px solid #ddd; }\n"
               ".bar { display: inline-block; height: 0.8em; background: #3366aa; }\n"
               ".bar.moved { background: #cc7733; }\n"
               "img { max-width: 100%%; height: auto; border: 1px solid #ddd; }\n"
               "figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }\n"
               "code { background: #f4f4f4; padding: 0 0.2em; }\n"
               "</style>\n</head>\n<body>\n<h1>capsnet report</h1>\n<p>Model <code>");
    put_escaped(&page, model);
    put(&page, "</code> on <code>");
    put_escaped(&page, data);
    put(&page, "</code>: %zu parameters, routing %d, %d epochs trained (%lld Adam steps), "
               "batch %d, learning rate %g decayed %g per epoch, seed %llu.</p>\n",
        caps_num_params(c), c->routing_iters, st.epoch, (long long)capsnet_adam_t(m), st.batch,
        (double)st.lr, (double)st.lr_decay, (unsigned long long)st.seed);

    put(&page, "<h2>Accuracy</h2>\n<table>\n<tr><th></th><th>clean</th><th>rotated up to %g&deg;, "
               "shifted up to %g</th></tr>\n",
        (double)affine.max_degrees, (double)affine.max_shift_frac);
    put(&page, "<tr><td>accuracy</td><td>%.2f%% (%d / %d)</td><td>%.2f%% (%d / %d)</td></tr>\n",
        100.0 * clean.correct / clean.total, clean.correct, clean.total,
        100.0 * moved.correct / moved.total, moved.correct, moved.total);
    put(&page, "<tr><td>test loss</td><td>%.4f</td><td>%.4f</td></tr>\n</table>\n", clean.loss,
        moved.loss);
    int named = caps_class_name(m, 0) != NULL;
    put(&page, "<h2>Per class</h2>\n<table>\n<tr><th>class</th>%s<th>images</th><th>clean</th>"
               "<th></th><th>rotated and shifted</th><th></th></tr>\n",
        named ? "<th style=\"text-align:left\">name</th>" : "");
    for (int j = 0; j < J; j++) {
        double a = clean.class_total[j] ? 100.0 * clean.class_correct[j] / clean.class_total[j] : 0;
        double b = moved.class_total[j] ? 100.0 * moved.class_correct[j] / moved.class_total[j] : 0;
        put(&page, "<tr><td>%d</td>", j);
        if (named) {
            put(&page, "<td style=\"text-align:left\">");
            put_escaped(&page, caps_class_name(m, j));
            put(&page, "</td>");
        }
        put(&page, "<td>%d</td><td>%.2f%%</td><td style=\"text-align:left\">"
                   "<span class=\"bar\" style=\"width:%.0fpx\"></span></td><td>%.2f%%</td>"
                   "<td style=\"text-align:left\"><span class=\"bar moved\" style=\"width:%.0fpx\">"
                   "</span></td></tr>\n",
            clean.class_total[j], a, 1.5 * a, b, 1.5 * b);
    }
    put(&page, "</table>\n");

    put(&page, "<h2>Training</h2>\n");
    if (cv.n > 0)
        put(&page, "<figure><img src=\"loss.svg\" alt=\"loss per epoch\"></figure>\n"
                   "<figure><img src=\"accuracy.svg\" alt=\"test accuracy per epoch\"></figure>\n"
                   "<figure><img src=\"speed.svg\" alt=\"training images per second per epoch\">"
                   "</figure>\n");
    else
        put(&page, "<p>The model's log holds no finished epoch.</p>\n");

    put(&page, "<h2>Confusion matrix</h2>\n<figure><img src=\"confusion.png\" alt=\"confusion "
               "matrix\"><figcaption>Rows: true class; columns: predicted class; shade: share of "
               "the row.");
    if (named) {
        put(&page, " Classes:");
        for (int j = 0; j < J; j++) {
            put(&page, "%s %d ", j ? "," : "", j);
            put_escaped(&page, caps_class_name(m, j));
        }
        put(&page, ".");
    }
    put(&page, "</figcaption></figure>\n");
    put(&page, "<h2>Most confidently wrong</h2>\n");
    if (nwrong > 0)
        put(&page, "<figure><img src=\"wrong.png\" alt=\"the most confidently wrong test images\">"
                   "<figcaption>The %d test images predicted wrong with the longest wrong capsule: "
                   "input above, reconstruction from the predicted capsule below, \"true &rarr; "
                   "predicted\".</figcaption></figure>\n",
            nwrong);
    else
        put(&page, "<p>Every evaluated test image is predicted right.</p>\n");
    put(&page, "<h2>Reconstructions</h2>\n<figure><img src=\"reconstructions.png\" alt=\"test "
               "images and their reconstructions\"><figcaption>The decoder sees only the "
               "predicted capsule, as at test time.</figcaption></figure>\n");
    put(&page, "<h2>What the dimensions encode</h2>\n<p>As the paper's Figure 4: one row per "
               "dimension of the digit capsule, that dimension shifted from -0.25 to +0.25 in "
               "steps of 0.05, the unshifted reconstruction in the middle column.</p>\n");
    for (int j = 0; j < nclass; j++) {
        if (per_class[j] < 0) continue;
        const char *name = caps_class_name(m, j);
        put(&page, "<figure><img src=\"perturb_%d.png\" alt=\"perturbation figure for class "
                   "%d\" loading=\"lazy\"><figcaption>Class %d",
            j, j, j);
        if (name) {
            put(&page, " (");
            put_escaped(&page, name);
            put(&page, ")");
        }
        put(&page, ": test image %d.</figcaption></figure>\n", per_class[j]);
    }
    put(&page, "</body>\n</html>\n");
    if (page.failed) {
        fail_runtime("out of memory");
        goto done;
    }
    join(path, sizeof path, out, "index.html");
    if (caps_write_text_atomic(path, page.s, &err)) {
        print_error(&err);
        goto done;
    }
    printf("wrote %s: accuracy %.2f%% clean, %.2f%% rotated and shifted\n", path,
           100.0 * clean.correct / clean.total, 100.0 * moved.correct / moved.total);
    status = EXIT_SUCCESS;
done:
    free(page.s);
    free_curves(&cv);
    caps_eval_free(&clean);
    caps_eval_free(&moved);
    caps_dataset_free(&test);
    free(log);
    capsnet_free(m);
    return status;
}
