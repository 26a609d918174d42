/*
 * config.c: the network's configuration: the paper's MNIST shapes, the fields by name and
 * number (model files and --config use them), the routing names, the checks that keep
 * every size far from overflow, and the shapes derived from a configuration (dims.h).
 *
 *   image S x S x C -> Conv1: S1 = (S - K1) / ST1 + 1, no padding
 *                   -> PrimaryCaps: G = (S1 - K2) / ST2 + 1, I = T * G * G capsules of D
 *                   -> DigitCaps: J capsules of E, routing R rounds -> decoder H1, H2, P
 */
#include <stddef.h>
#include <string.h>

#include "dims.h"
#include "util.h"

void caps_config_mnist(caps_config *cfg) {
    cfg->image_size = 28;
    cfg->in_channels = 1;
    cfg->conv1_channels = 256;
    cfg->conv1_kernel = 9;
    cfg->conv1_stride = 1;
    cfg->primary_types = 32;
    cfg->primary_dim = 8;
    cfg->primary_kernel = 9;
    cfg->primary_stride = 2;
    cfg->num_classes = 10;
    cfg->digit_dim = 16;
    cfg->routing_iters = 3;
    cfg->decoder_hidden1 = 512;
    cfg->decoder_hidden2 = 1024;
    cfg->routing = CAPS_ROUTING_DYNAMIC;
}

/* ------------------------------------------------------------------------ fields */

/* The numeric fields in declaration order: the order in model files, the names in messages. */
static const struct {
    const char *name;
    size_t offset;
} config_fields[CAPS_CONFIG_FIELDS] = {
    {"image_size", offsetof(caps_config, image_size)},
    {"in_channels", offsetof(caps_config, in_channels)},
    {"conv1_channels", offsetof(caps_config, conv1_channels)},
    {"conv1_kernel", offsetof(caps_config, conv1_kernel)},
    {"conv1_stride", offsetof(caps_config, conv1_stride)},
    {"primary_types", offsetof(caps_config, primary_types)},
    {"primary_dim", offsetof(caps_config, primary_dim)},
    {"primary_kernel", offsetof(caps_config, primary_kernel)},
    {"primary_stride", offsetof(caps_config, primary_stride)},
    {"num_classes", offsetof(caps_config, num_classes)},
    {"digit_dim", offsetof(caps_config, digit_dim)},
    {"routing_iters", offsetof(caps_config, routing_iters)},
    {"decoder_hidden1", offsetof(caps_config, decoder_hidden1)},
    {"decoder_hidden2", offsetof(caps_config, decoder_hidden2)},
};

const char *caps_config_field_name(int k) {
    CAPS_ASSERT(k >= 0 && k < CAPS_CONFIG_FIELDS);
    return config_fields[k].name;
}

int caps_config_get(const caps_config *c, int k) {
    CAPS_ASSERT(k >= 0 && k < CAPS_CONFIG_FIELDS);
    int v;
    memcpy(&v, (const char *)c + config_fields[k].offset, sizeof v);
    return v;
}

void caps_config_set(caps_config *c, int k, int v) {
    CAPS_ASSERT(k >= 0 && k < CAPS_CONFIG_FIELDS);
    memcpy((char *)c + config_fields[k].offset, &v, sizeof v);
}

/* Indexed by CAPS_ROUTING_*. */
static const char *const routing_names[CAPS_NUM_ROUTINGS] = {"dynamic"};

const char *caps_routing_name(int routing) {
    return routing >= 0 && routing < CAPS_NUM_ROUTINGS ? routing_names[routing] : NULL;
}

int caps_routing_find(const char *name) {
    for (int k = 0; k < CAPS_NUM_ROUTINGS; k++)
        if (strcmp(routing_names[k], name) == 0) return k;
    return -1;
}

/* ------------------------------------------------------------------------ derived shapes */

int caps_conv1_out(const caps_config *c) {
    return (c->image_size - c->conv1_kernel) / c->conv1_stride + 1;
}

int caps_primary_grid(const caps_config *c) {
    return (caps_conv1_out(c) - c->primary_kernel) / c->primary_stride + 1;
}

int caps_num_primary(const caps_config *c) {
    int g = caps_primary_grid(c);
    return c->primary_types * g * g;
}

int caps_image_pixels(const caps_config *c) {
    return c->in_channels * c->image_size * c->image_size;
}

void caps_dims_of(caps_dims *d, const caps_config *c) {
    d->C = c->in_channels;
    d->S = c->image_size;
    d->P = caps_image_pixels(c);
    d->C1 = c->conv1_channels;
    d->K1 = c->conv1_kernel;
    d->ST1 = c->conv1_stride;
    d->S1 = caps_conv1_out(c);
    d->T = c->primary_types;
    d->D = c->primary_dim;
    d->TD = c->primary_types * c->primary_dim;
    d->K2 = c->primary_kernel;
    d->ST2 = c->primary_stride;
    d->G = caps_primary_grid(c);
    d->I = caps_num_primary(c);
    d->J = c->num_classes;
    d->E = c->digit_dim;
    d->R = c->routing_iters;
    d->H1 = c->decoder_hidden1;
    d->H2 = c->decoder_hidden2;
    d->routing = c->routing;
}

/* Elements of each parameter tensor, in double: the one formula, used both to check a
 * configuration (where the counts must not overflow while being computed) and to size the
 * arenas of a checked one. */
static void param_counts(double s[CAPS_NUM_PARAM_TENSORS], const caps_dims *d) {
    s[0] = (double)d->C1 * d->C * d->K1 * d->K1; /* conv1_w */
    s[1] = d->C1;                                 /* conv1_b */
    s[2] = (double)d->TD * d->C1 * d->K2 * d->K2; /* prim_w */
    s[3] = d->TD;                                 /* prim_b */
    s[4] = (double)d->I * d->J * d->E * d->D;     /* caps_w */
    s[5] = (double)d->H1 * d->J * d->E;           /* dec1_w */
    s[6] = d->H1;                                 /* dec1_b */
    s[7] = (double)d->H2 * d->H1;                 /* dec2_w */
    s[8] = d->H2;                                 /* dec2_b */
    s[9] = (double)d->P * d->H2;                  /* dec3_w */
    s[10] = d->P;                                 /* dec3_b */
}

void caps_param_sizes(size_t sizes[CAPS_NUM_PARAM_TENSORS], const caps_dims *d) {
    double s[CAPS_NUM_PARAM_TENSORS];
    param_counts(s, d);
    for (int k = 0; k < CAPS_NUM_PARAM_TENSORS; k++) sizes[k] = (size_t)s[k];
}

size_t caps_num_params(const caps_config *cfg) {
    caps_dims d;
    caps_dims_of(&d, cfg);
    size_t s[CAPS_NUM_PARAM_TENSORS], n = 0;
    caps_param_sizes(s, &d);
    for (int k = 0; k < CAPS_NUM_PARAM_TENSORS; k++) n += s[k];
    return n;
}

/* ------------------------------------------------------------------------ checks */

/* Limits keep every size computation far from overflow and reject nonsense early: each
 * field at most CAPS_MAX_DIM, and the products (in double, so they cannot overflow while
 * being checked) at most CAPS_MAX_ELEMS: the parameter count, the activations of one
 * image, and the int-valued derived sizes. */
#define CAPS_MAX_DIM 4096
#define CAPS_MAX_ELEMS ((double)(1u << 31) - 1.0)

int caps_config_check(const caps_config *c, caps_error *err) {
    for (int k = 0; k < CAPS_CONFIG_FIELDS; k++) {
        int v = caps_config_get(c, k);
        if (v < 1 || v > CAPS_MAX_DIM)
            return caps_fail(err, CAPS_ERR_ARG, "config: %s out of range (expected 1..%d, got %d)",
                             config_fields[k].name, CAPS_MAX_DIM, v);
    }
    if (!caps_routing_name(c->routing))
        return caps_fail(err, CAPS_ERR_ARG, "config: unknown routing (expected 0..%d, got %d)",
                         CAPS_NUM_ROUTINGS - 1, c->routing);
    if (c->conv1_kernel > c->image_size)
        return caps_fail(err, CAPS_ERR_ARG,
                         "config: conv1_kernel larger than the image (expected <= %d, got %d)",
                         c->image_size, c->conv1_kernel);
    if (c->primary_kernel > caps_conv1_out(c))
        return caps_fail(err, CAPS_ERR_ARG,
                         "config: primary_kernel larger than the Conv1 output (expected <= %d, "
                         "got %d)", caps_conv1_out(c), c->primary_kernel);
    if (c->num_classes < 2)
        return caps_fail(err, CAPS_ERR_ARG, "config: num_classes too small (expected >= 2, got %d)",
                         c->num_classes);
    /* Every field is at most 4096 now, so each derived size but I = T*G*G fits an int. */
    double G = caps_primary_grid(c), I = (double)c->primary_types * G * G;
    double P = (double)c->in_channels * c->image_size * c->image_size;
    if (I > CAPS_MAX_ELEMS || P > CAPS_MAX_ELEMS)
        return caps_fail(err, CAPS_ERR_ARG,
                         "config: network too large (expected at most %.0f capsules and pixels, "
                         "got %.3g and %.3g)", CAPS_MAX_ELEMS, I, P);
    caps_dims d;
    caps_dims_of(&d, c);
    double s[CAPS_NUM_PARAM_TENSORS], params = 0.0;
    param_counts(s, &d);
    for (int k = 0; k < CAPS_NUM_PARAM_TENSORS; k++) params += s[k];
    /* Conv1 output, both im2col matrices, prediction vectors, routing couplings. */
    double acts = (double)d.C1 * d.S1 * d.S1 + (double)d.C * d.K1 * d.K1 * d.S1 * d.S1 +
                  (double)d.C1 * d.K2 * d.K2 * d.G * d.G + (double)d.I * d.J * d.E +
                  (double)d.R * d.I * d.J;
    if (params > CAPS_MAX_ELEMS || acts > CAPS_MAX_ELEMS)
        return caps_fail(err, CAPS_ERR_ARG,
                         "config: network too large (expected at most %.0f parameters and "
                         "activations per image, got %.3g and %.3g)", CAPS_MAX_ELEMS, params, acts);
    return CAPS_OK;
}
