/*
 * capsnet.c: the command-line program, the only main of the project. Each command lives
 * in a file of its own (cmd_*.c); cli.c holds what they share.
 *
 *   capsnet train    train on IDX files, image folders or CIFAR-10, checkpoint every epoch
 *   capsnet test     accuracy, per-class accuracy, loss and confusion matrix of a model
 *   capsnet predict  classify PNG, PGM or PPM images
 *   capsnet info     what a model file holds
 *   capsnet export   the weights as safetensors, the network as ONNX
 *   capsnet bench    training and inference speed, per layer
 *   capsnet data     check a data set: layout, images per class, size, problems; or
 *                    write the affNIST-like test set of the paper's section 5.2
 *   capsnet multimnist  the two-digit pairs of the paper's section 6: preview, train, test,
 *                    figure (Figure 5)
 *   capsnet reconstruct, perturb, show, report, plot: figures (PNG) and an HTML report
 *   capsnet serve    the capsule explorer, a local web page
 *
 * Exit status: 0 success, 1 runtime error (a file, the data, a numeric failure), 2 usage
 * error (unknown flag, bad value), 130 interrupted (training saved a checkpoint first).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "figures.h"
#include "parallel.h"

static const char main_usage[] =
    "Usage: capsnet COMMAND [options]\n"
    "\n"
    "Capsule networks with dynamic routing (Sabour, Frosst & Hinton, NIPS 2017).\n"
    "\n"
    "Commands:\n"
    "  train     train on MNIST, image folders or CIFAR-10, checkpointing every epoch\n"
    "  test      accuracy, per-class accuracy and confusion matrix of a model\n"
    "  predict   classify PNG, PGM or PPM images (gray or colour)\n"
    "  info      show what a model file holds\n"
    "  export    a model for PyTorch and ONNX users (safetensors, ONNX)\n"
    "  bench     measure training and inference speed on this machine\n"
    "  data      check a data set (IDX, image folders, CIFAR-10): classes, sizes, problems;\n"
    "            --make-affnist: write an affNIST-like test set (paper, section 5.2)\n"
    "  multimnist  the overlapping digits of the paper's section 6: preview, train, test,\n"
    "            figure (its Figure 5)\n"
    "\n"
    "Pictures (PNG files, and an HTML report):\n"
    "  reconstruct  test images and the decoder's reconstructions\n"
    "  perturb      the paper's Figure 4: each dimension of a digit capsule shifted\n"
    "  show         a labelled grid of input images, with --shift or --affine previews\n"
    "  report       an HTML report: curves, accuracy, confusion, reconstructions, figures\n"
    "  plot         a line chart of numbers given on the command line (PNG or SVG)\n"
    "\n"
    "  serve     the capsule explorer: draw a digit in the browser, turn its capsule\n"
    "\n"
    "'capsnet COMMAND --help' describes the options of a command.\n"
    "Get MNIST with: scripts/get-data.sh mnist data/mnist\n";

static int run_command(const char *cmd, int argc, char **argv) {
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "test") == 0) return cmd_test(argc - 1, argv + 1);
    if (strcmp(cmd, "predict") == 0) return cmd_predict(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0) return cmd_export(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "data") == 0) return cmd_data(argc - 1, argv + 1);
    if (strcmp(cmd, "multimnist") == 0) return cmd_multimnist(argc - 1, argv + 1);
    if (strcmp(cmd, "reconstruct") == 0) return cmd_reconstruct(argc - 1, argv + 1);
    if (strcmp(cmd, "perturb") == 0) return cmd_perturb(argc - 1, argv + 1);
    if (strcmp(cmd, "show") == 0) return cmd_show(argc - 1, argv + 1);
    if (strcmp(cmd, "report") == 0) return cmd_report(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "plot") == 0) return cmd_plot(argc - 1, argv + 1);
    return fail_usage(NULL, "unknown command '%s'", cmd);
}

int main(int argc, char **argv) {
    /* A file larger than the process may write (ulimit -f) is a write error to report,
     * like a full disk, not a reason to die with no message. */
    signal(SIGXFSZ, SIG_IGN);
    /* Figures leave cairo's and fontconfig's caches behind; free them at the end. */
    atexit(caps_figures_release);
    if (argc < 2) {
        fputs(main_usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(main_usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("capsnet %s\n", CAPSNET_VERSION);
        return 0;
    }
    /* Under mpirun (a build with MPI=1), train is the command that runs as many processes. */
    int rc = par_init(&argc, &argv);
    if (rc) return rc;
    if (par_size() > 1 && strcmp(cmd, "train") != 0) {
        if (par_rank() == 0)
            fprintf(stderr, "capsnet: error: only `capsnet train` runs as several processes "
                            "(%d were started)\n", par_size());
        return par_finish(EXIT_USAGE);
    }
    return par_finish(run_command(cmd, argc, argv));
}
