/*
 * cmd_export.c: capsnet export, a model's weights for the tools people use outside capsnet.
 *
 *   --format safetensors  the 11 parameter tensors in Hugging Face's safetensors layout,
 *                         written here: 8 bytes (u64, little-endian) of header length n,
 *                         n bytes of JSON {name: {"dtype": "F32", "shape": [...],
 *                         "data_offsets": [begin, end]}, "__metadata__": {...}} padded
 *                         with spaces to a multiple of 8, then the tensors' bytes. The
 *                         names and shapes are those of the PyTorch module in
 *                         python/capsnet_torch.py, so torch's load_state_dict takes it as is.
 *                         __metadata__ (string values only, by the format) says the routing,
 *                         the configuration and, when the model has them, the class names:
 *                         "class_names" holds a JSON array of strings, itself as a string.
 *   --format onnx         the inference network (routing unrolled, lengths and the
 *                         reconstruction as outputs) through that module and PyTorch's own
 *                         exporter, torch.onnx.export: capsnet runs the Python bridge with
 *                         Debian's python3-torch. The ONNX graph format is PyTorch's to get
 *                         right; writing its protobuf here would be a second copy of the
 *                         network to keep equal to the first. The bridge puts the class names
 *                         into the ONNX model's metadata_props ("class_names", the same JSON).
 *
 * Both write atomically: a temporary file beside --out, renamed only when complete.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

static const char export_usage[] =
    "Usage: capsnet export --model MODEL --format safetensors|onnx --out FILE\n"
    "\n"
    "Writes MODEL's network for other tools. safetensors: the parameters, named as the\n"
    "PyTorch module of python/capsnet_torch.py names them (torch.nn.Module.load_state_dict\n"
    "reads them). onnx: the inference network, input 'image' [batch][C][H][W] in [0, 1],\n"
    "outputs 'lengths' [batch][classes] and 'reconstruction' [batch][pixels], made by\n"
    "PyTorch's exporter through python/capsnet_torch.py (needs python3-torch; the\n"
    "interpreter is $CAPSNET_PYTHON, default /usr/bin/python3, where Debian's is).\n"
    "\n"
    "Options:\n";

/* ------------------------------------------------------------------------ safetensors */

/* The module's names for the 11 tensors, in arena order (capsnet.h). */
static const char *const torch_names[CAPS_NUM_PARAM_TENSORS] = {
    "conv1.weight",      "conv1.bias",     "primary_caps.weight", "primary_caps.bias",
    "digit_caps.weight", "decoder.0.weight", "decoder.0.bias",    "decoder.2.weight",
    "decoder.2.bias",    "decoder.4.weight", "decoder.4.bias"};

/* Each tensor's shape (PyTorch layout, capsnet.h); returns the number of dimensions. */
static int tensor_shape(const caps_config *c, int t, int shape[4]) {
    int C1 = c->conv1_channels, K1 = c->conv1_kernel, K2 = c->primary_kernel;
    int TD = c->primary_types * c->primary_dim, JE = c->num_classes * c->digit_dim;
    int H1 = c->decoder_hidden1, H2 = c->decoder_hidden2, P = caps_image_pixels(c);
    const int shapes[CAPS_NUM_PARAM_TENSORS][5] = {
        {4, C1, c->in_channels, K1, K1},                                      /* conv1.weight */
        {1, C1},                                                              /* conv1.bias */
        {4, TD, C1, K2, K2},                                                  /* primary_caps */
        {1, TD},
        {4, caps_num_primary(c), c->num_classes, c->digit_dim, c->primary_dim}, /* W_ij */
        {2, H1, JE}, {1, H1}, {2, H2, H1}, {1, H2}, {2, P, H2}, {1, P},       /* decoder */
    };
    memcpy(shape, shapes[t] + 1, 4 * sizeof(int));
    return shapes[t][0];
}

/* Appends printf output to buf[*n], growing it; 0 when out of memory. */
static int append(char **buf, size_t *n, size_t *cap, const char *fmt, ...) CAPS_PRINTF(4, 5);
static int append(char **buf, size_t *n, size_t *cap, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(*buf + *n, *cap - *n, fmt, ap);
        va_end(ap);
        if (k < 0) return 0;
        if ((size_t)k < *cap - *n) {
            *n += (size_t)k;
            return 1;
        }
        size_t cap2 = *cap * 2 + (size_t)k;
        char *b = realloc(*buf, cap2);
        if (!b) return 0;
        *buf = b, *cap = cap2;
    }
}

/* Appends s as a JSON string literal: '"' and '\\' escaped, control characters as \u00XX
 * (a class name has none), UTF-8 as it is, and each byte that is not part of a well-formed
 * UTF-8 sequence as U+FFFD, so that the header stays valid UTF-8 (safetensors requires it)
 * whatever bytes a name holds. */
static int append_json_string(char **buf, size_t *n, size_t *cap, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    int ok = append(buf, n, cap, "\"");
    while (ok && *p) {
        /* The length of the UTF-8 sequence at p, 0 when it is not well formed (RFC 3629:
         * no overlong forms, no surrogates, nothing above U+10FFFF). */
        size_t len = 0;
        if (*p < 0x80) len = 1;
        else if (*p >= 0xc2 && *p <= 0xdf) len = 2;
        else if (*p >= 0xe0 && *p <= 0xef) len = 3;
        else if (*p >= 0xf0 && *p <= 0xf4) len = 4;
        for (size_t k = 1; k < len; k++)
            if ((p[k] & 0xc0) != 0x80) len = 0;
        if ((len == 3 && ((*p == 0xe0 && p[1] < 0xa0) || (*p == 0xed && p[1] > 0x9f))) ||
            (len == 4 && ((*p == 0xf0 && p[1] < 0x90) || (*p == 0xf4 && p[1] > 0x8f))))
            len = 0;
        if (len == 0) {
            ok = append(buf, n, cap, "\\ufffd");
            p++;
        } else if (*p == '"' || *p == '\\') {
            ok = append(buf, n, cap, "\\%c", *p);
            p++;
        } else if (*p < 0x20) {
            ok = append(buf, n, cap, "\\u%04x", *p);
            p++;
        } else {
            ok = append(buf, n, cap, "%.*s", (int)len, (const char *)p);
            p += len;
        }
    }
    return ok && append(buf, n, cap, "\"");
}

static int write_safetensors(capsnet *m, const char *model, const char *path) {
    const caps_config *c = capsnet_config(m);
    size_t cap = 4096, n = 0, offset = 0;
    char *json = malloc(cap);
    int ok = json != NULL && append(&json, &n, &cap, "{");
    for (int t = 0; ok && t < CAPS_NUM_PARAM_TENSORS; t++) {
        int shape[4], nd = tensor_shape(c, t, shape);
        size_t bytes = capsnet_param_size(m, t) * sizeof(float), elems = 1;
        ok = append(&json, &n, &cap, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", t ? "," : "",
                    torch_names[t]);
        for (int d = 0; ok && d < nd; d++) {
            ok = append(&json, &n, &cap, "%s%d", d ? "," : "", shape[d]);
            elems *= (size_t)shape[d];
        }
        CAPS_ASSERT(elems == capsnet_param_size(m, t)); /* the shapes above are the arena's */
        ok = ok && append(&json, &n, &cap, "],\"data_offsets\":[%zu,%zu]}", offset, offset + bytes);
        offset += bytes;
    }
    ok = ok && append(&json, &n, &cap,
                      ",\"__metadata__\":{\"format\":\"pt\",\"source\":\"capsnet\","
                      "\"routing\":\"%s\",\"config\":\"", caps_routing_name(c->routing));
    for (int k = 0; ok && k < CAPS_CONFIG_FIELDS; k++)
        ok = append(&json, &n, &cap, "%s%s=%d", k ? "," : "", caps_config_field_name(k),
                    caps_config_get(c, k));
    ok = ok && append(&json, &n, &cap, "\"");
    if (ok && caps_class_name(m, 0)) {
        /* The names as a JSON array, then that text as the string value of "class_names". */
        size_t an = 0, acap = 256;
        char *array = malloc(acap);
        ok = array != NULL && append(&array, &an, &acap, "[");
        for (int k = 0; ok && k < c->num_classes; k++)
            ok = (k == 0 || append(&array, &an, &acap, ",")) &&
                 append_json_string(&array, &an, &acap, caps_class_name(m, k));
        ok = ok && append(&array, &an, &acap, "]") &&
             append(&json, &n, &cap, ",\"class_names\":") &&
             append_json_string(&json, &n, &cap, array);
        free(array);
    }
    ok = ok && append(&json, &n, &cap, "}}");
    while (ok && n % 8) ok = append(&json, &n, &cap, " "); /* the tensors start 8-aligned */
    size_t P = capsnet_num_params(m);
    float *w = ok ? malloc(P * sizeof(float)) : NULL;
    caps_error err;
    if (!w) {
        free(json);
        return fail_runtime("out of memory");
    }
    int rc = capsnet_read(m, CAPS_PARAMS, 0, P, w, &err);
    caps_atomic_file af;
    if (rc == CAPS_OK) rc = caps_atomic_open(&af, path, &err);
    if (rc == CAPS_OK) {
        unsigned char len[8];
        for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)n >> (8 * i));
        fwrite(len, 1, 8, af.f);
        fwrite(json, 1, n, af.f);
        fwrite(w, sizeof(float), P, af.f); /* little-endian IEEE floats, as model files */
        rc = caps_atomic_commit(&af, &err);
    }
    free(w);
    free(json);
    if (rc) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    printf("wrote %s: %d tensors, %zu parameters of %s (safetensors, F32)\n", path,
           CAPS_NUM_PARAM_TENSORS, P, model);
    return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------------ onnx */

/* python/capsnet_torch.py: beside the program (a source tree), or in ../share/capsnet
 * (an installed one); $CAPSNET_TORCH names it directly. */
static int find_bridge(char *out, size_t n) {
    const char *env = getenv("CAPSNET_TORCH");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return access(out, R_OK) == 0;
    }
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return 0;
    exe[k] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    static const char *const rel[] = {"/python/capsnet_torch.py", "/../python/capsnet_torch.py",
                                      "/../share/capsnet/capsnet_torch.py"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(out, n, "%s%s", exe, rel[i]);
        if (access(out, R_OK) == 0) return 1;
    }
    return 0;
}

static int write_onnx(const char *model, const char *path) {
    char bridge[PATH_MAX + 64];
    if (!find_bridge(bridge, sizeof bridge))
        return fail_runtime("export --format onnx needs python/capsnet_torch.py (beside the "
                            "program, in ../share/capsnet, or named by $CAPSNET_TORCH); not found");
    /* Debian's python3-torch is in the system interpreter, which a pyenv or venv python3
     * earlier on PATH would hide; CAPSNET_PYTHON chooses another. */
    const char *python = getenv("CAPSNET_PYTHON");
    if (!python || !*python)
        python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    /* The bridge writes a temporary file beside path; it becomes path only on success. */
    char tmp[PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return fail_runtime("cannot start %s (%s)", python, strerror(errno));
    if (pid == 0) {
        /* The bridge's "wrote <temporary file>" is not for the user; its errors are. */
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0 && dup2(null, STDOUT_FILENO) >= 0 && null != STDOUT_FILENO) close(null);
        execlp(python, python, bridge, "onnx", model, tmp, (char *)NULL);
        fprintf(stderr, "capsnet: error: cannot run %s (%s); install python3 and python3-torch "
                        "(or set CAPSNET_PYTHON)\n", python, strerror(errno));
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return fail_runtime("waiting for %s: %s", python, strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        unlink(tmp);
        return fail_runtime("%s: ONNX export failed (%s %s onnx exited with %s %d)", path, python,
                            bridge, WIFEXITED(status) ? "status" : "signal",
                            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return fail_runtime("%s: cannot rename the finished export into place (%s)", path,
                            strerror(e));
    }
    printf("wrote %s: the inference network of %s (ONNX, by torch.onnx.export)\n", path, model);
    return EXIT_SUCCESS;
}

int cmd_export(int argc, char **argv) {
    const char *model = NULL, *format = NULL, *out = NULL;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"format", OPT_STRING, &format, 0, 0, "safetensors|onnx", "what to write (required)", 0},
        {"out", OPT_STRING, &out, 0, 0, "FILE", "output file (required)", 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("export", export_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!model || !format || !out)
        return fail_usage("export", "--%s is required",
                          !model ? "model" : !format ? "format" : "out");
    int onnx = strcmp(format, "onnx") == 0;
    if (!onnx && strcmp(format, "safetensors") != 0)
        return fail_usage("export", "unknown --format '%s' (expected safetensors or onnx)", format);
    /* Load first on both paths: a bad model file gets capsnet's own message. */
    caps_error err;
    capsnet *m = NULL;
    if (caps_model_load(&m, NULL, NULL, model, 1, NULL, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    rc = onnx ? write_onnx(model, out) : write_safetensors(m, model, out);
    capsnet_free(m);
    return rc;
}
