/*
 * cmd_plot.c: capsnet plot, a line chart (PNG or SVG, by the file's name) of series given on
 * the command line, for scripts that measure something and want it drawn beside their
 * tables (scripts/experiments.sh draws the rotation sweep with it):
 *
 *   capsnet plot --out sweep.png --xlabel degrees --ylabel "accuracy %" \
 *       capsnet=0:99.1,15:98.7,30:95.0 cnn=0:99.0,15:98.1,30:93.2
 *
 * Every series has the same x values, in the same order (the chart shares one x axis); a
 * missing point is "nan".
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "figures.h"

#define PLOT_MAX_SERIES 8
#define PLOT_MAX_POINTS 1000

static const char plot_usage[] =
    "Usage: capsnet plot --out FILE.png|FILE.svg [--title T] [--xlabel X] [--ylabel Y]\n"
    "                    NAME=X:Y,X:Y,... [NAME=X:Y,...]...\n"
    "\n"
    "Draws a line chart of up to 8 series, each NAME=X:Y,X:Y,... with the same x values in\n"
    "the same order (a missing point: nan). PNG or SVG by the name of FILE.\n"
    "\n"
    "Options:\n";

/* Parses "NAME=X:Y,X:Y,..." into name (cut in place) and x, y [*n]; 0, or a message. */
static const char *parse_series(char *spec, const char **name, double *x, double *y, int *n) {
    char *eq = strchr(spec, '=');
    if (!eq || eq == spec) return "expected NAME=X:Y,X:Y,...";
    *eq = '\0';
    *name = spec;
    *n = 0;
    for (char *p = eq + 1; *p;) {
        if (*n == PLOT_MAX_POINTS) return "more than 1000 points";
        char *end;
        x[*n] = strtod(p, &end);
        if (end == p || *end != ':') return "a point is not X:Y";
        p = end + 1;
        y[*n] = strtod(p, &end);
        if (end == p || (*end && *end != ',')) return "a point is not X:Y";
        if (!isfinite(x[*n])) return "an x value is not a number";
        (*n)++;
        p = *end ? end + 1 : end;
    }
    return *n ? NULL : "no points";
}

int cmd_plot(int argc, char **argv) {
    const char *out = NULL, *title = "", *xlabel = "x", *ylabel = "y";
    option opts[] = {
        {"out", OPT_STRING, &out, 0, 0, "FILE", "PNG or SVG to write (required)", 0},
        {"title", OPT_STRING, &title, 0, 0, "T", "title above the chart", 0},
        {"xlabel", OPT_STRING, &xlabel, 0, 0, "X", "label of the x axis (x)", 0},
        {"ylabel", OPT_STRING, &ylabel, 0, 0, "Y", "label of the y axis (y)", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[PLOT_MAX_SERIES];
    int rc = parse_command("plot", plot_usage, opts, nopts, argc, argv, pos, PLOT_MAX_SERIES,
                           &npos, &done);
    if (done) return rc;
    if (!out) return fail_usage("plot", "--out FILE.png or FILE.svg is required");
    if (npos == 0) return fail_usage("plot", "no series (expected NAME=X:Y,X:Y,...)");
    size_t len = strlen(out);
    int png = len > 4 && strcmp(out + len - 4, ".png") == 0;
    if (!png && !(len > 4 && strcmp(out + len - 4, ".svg") == 0))
        return fail_usage("plot", "--out %s: expected a name ending in .png or .svg", out);
    static double x[PLOT_MAX_SERIES][PLOT_MAX_POINTS], y[PLOT_MAX_SERIES][PLOT_MAX_POINTS];
    caps_series series[PLOT_MAX_SERIES];
    int n = 0;
    for (int k = 0; k < npos; k++) {
        int nk;
        const char *why = parse_series(pos[k], &series[k].name, x[k], y[k], &nk);
        if (why) return fail_usage("plot", "series %d: %s", k + 1, why);
        series[k].y = y[k];
        if (k == 0) n = nk;
        if (nk != n || memcmp(x[k], x[0], (size_t)n * sizeof(double)) != 0)
            return fail_usage("plot", "series '%s' has other x values than '%s' (every series "
                              "shares the x axis)", series[k].name, series[0].name);
    }
    caps_error err;
    rc = png ? caps_chart_write_png(out, title, xlabel, ylabel, x[0], n, series, npos, &err)
             : caps_chart_write_svg(out, title, xlabel, ylabel, x[0], n, series, npos, &err);
    caps_figures_release();
    if (rc) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    printf("wrote %s: %d series of %d points\n", out, npos, n);
    return 0;
}
