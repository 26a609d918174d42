/*
 * classify.c: the smallest program on libcapsnet. Loads a model file, reads a grayscale
 * PNG or PGM of the model's image size, runs the network and prints the class with the
 * length of every class capsule, as `capsnet predict` prints it.
 *
 *   cc classify.c $(pkg-config --cflags --libs capsnet) -o classify
 *   ./classify mnist.caps digit.png
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <capsnet.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL IMAGE\n", argv[0]);
        return 2;
    }
    if (strcmp(capsnet_version(), CAPSNET_VERSION_STRING) != 0)
        fprintf(stderr, "classify: built with capsnet %s, running with %s\n",
                CAPSNET_VERSION_STRING, capsnet_version());
    caps_error err;
    capsnet *m = NULL;
    /* A model of the file's configuration, for batches of one image, default options. */
    if (caps_model_load(&m, NULL, NULL, argv[1], 1, NULL, &err) != CAPS_OK) {
        fprintf(stderr, "classify: %s\n", err.msg);
        return 1;
    }
    const caps_config *cfg = capsnet_config(m);
    float *x = malloc((size_t)caps_image_pixels(cfg) * sizeof *x);
    int status = 1;
    if (!x) {
        fprintf(stderr, "classify: out of memory\n");
    } else if (caps_image_load(argv[2], x, cfg->image_size, cfg->image_size, &err) != CAPS_OK) {
        fprintf(stderr, "classify: %s\n", err.msg);
    } else {
        /* No labels: no loss; no decoder (reconstruction weight 0). */
        capsnet_forward(m, x, NULL, 1, CAPS_MASK_PREDICTED, 0.0f);
        int cls = capsnet_predictions(m)[0];
        const float *len = capsnet_lengths(m);
        printf("%s: class %d (length %.3f); lengths", argv[2], cls, (double)len[cls]);
        for (int j = 0; j < cfg->num_classes; j++) printf(" %d:%.3f", j, (double)len[j]);
        printf("\n");
        status = 0;
    }
    free(x);
    capsnet_free(m);
    return status;
}
