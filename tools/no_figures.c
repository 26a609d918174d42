/*
 * no_figures.c: the program of `make lib` (FIGURES=0), built where cairo, libmicrohttpd and
 * cJSON are not installed. The commands that draw or serve are not in it; each says so and
 * how to get them, instead of "unknown command".
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "figures.h"
#include "util.h"

static int not_built(const char *cmd) {
    fprintf(stderr, "capsnet: error: %s: not in this build (built with make lib, without "
                    "cairo, libmicrohttpd and cJSON)\n"
                    "hint: install them (scripts/install-deps.sh) and build with make\n",
            cmd);
    return EXIT_FAILURE;
}

int cmd_reconstruct(int argc, char **argv) { return (void)argc, not_built(argv[0]); }
int cmd_perturb(int argc, char **argv) { return (void)argc, not_built(argv[0]); }
int cmd_show(int argc, char **argv) { return (void)argc, not_built(argv[0]); }
int cmd_report(int argc, char **argv) { return (void)argc, not_built(argv[0]); }
int cmd_serve(int argc, char **argv) { return (void)argc, not_built(argv[0]); }
int cmd_plot(int argc, char **argv) { return (void)argc, not_built(argv[0]); }
int figures_built(const char *cmd) { return not_built(cmd), 0; }

/* What figures_built keeps from being called. */
int caps_grid_write_png(const char *path, const caps_grid *g, const float *pixels,
                        caps_error *err) {
    (void)g, (void)pixels;
    return caps_fail(err, CAPS_ERR_ARG, "%s: figures are not in this build", path);
}

/* Nothing was drawn: no caches to free. */
void caps_figures_release(void) {}
