/*
 * cmd_serve.c: capsnet serve, the capsule explorer: a local web page where a person draws
 * a digit and watches the capsules, and a small JSON API the page uses.
 *
 * The HTTP server is GNU libmicrohttpd (Debian libmicrohttpd-dev), JSON is cJSON (Debian
 * libcjson-dev). The page's HTML, CSS and JavaScript are compiled into the binary
 * (web_assets.c, made from tools/web by scripts/embed.sh): no request path ever touches
 * the disk, and the page needs no network.
 *
 *   GET  /                   the page (also /index.html, /style.css, /app.js)
 *   GET  /api/info           model name, classes, image size, channels, capsule size, test
 *                            images, class_names ([classes] strings, or null)
 *   POST /api/classify       {"pixels": [P]} -> class, name, lengths, capsules, reconstruction
 *   POST /api/decode         {"class": c, "capsule": [E]} -> reconstruction
 *   GET  /api/test/<i>       (with --data) test image i: index, label, name, pixels
 *   POST /api/perturb        {"pixels": [P], "range": r, "steps": s} -> the paper's Figure 4
 *                            as base64 bytes, [E][steps][P]
 *
 * P = C*S*S: images are [C][S][S] planes (C = 3: red, green, blue), as the model takes them.
 * "name" is there when the model has class names (caps_class_name).
 *
 * Safe by default: binds 127.0.0.1; request bodies capped (413 beyond); malformed JSON,
 * arrays of the wrong length or values out of range answered 400 with a message; unknown
 * paths 404; other methods 405 (with Allow). One model serves every connection, so its
 * use is serialised by a mutex; the server keeps serving after any bad request.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "figures.h"
#include "util.h"
#include "web_assets.h"

#define SERVE_MAX_BODY ((size_t)1 << 20) /* 1 MiB: a 784-pixel request is under 10 KB */
#define SERVE_MAX_STEPS 21
#define SERVE_DEFAULT_RANGE 0.25
#define SERVE_BATCH 32 /* images per decoder pass of the perturbation figure */

typedef struct {
    capsnet *m;
    caps_dataset test; /* count 0 without --data */
    const char *model_name;
    pthread_mutex_t lock; /* the model's activations are shared: one request at a time */
    float *x, *out;       /* scratch: one image; E*SERVE_MAX_STEPS images */
} server;

/* What a connection has sent so far. */
typedef struct {
    char *body;
    size_t len;
    int too_large;
} request;

/* ------------------------------------------------------------------------ responses */

static enum MHD_Result send_bytes(struct MHD_Connection *c, unsigned status, const char *type,
                                  const void *data, size_t size, int copy) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        size, (void *)data, copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* Sends json (and frees it). */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *json) {
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!text) return send_bytes(c, 500, "application/json", "{\"error\":\"out of memory\"}", 25, 0);
    enum MHD_Result ok = send_bytes(c, status, "application/json", text, strlen(text), 1);
    free(text);
    return ok;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "error", msg);
    return send_json(c, status, json);
}

static enum MHD_Result send_not_allowed(struct MHD_Connection *c, const char *allow) {
    char msg[] = "{\"error\":\"method not allowed\"}";
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(msg), msg, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Allow", allow);
    enum MHD_Result ok = MHD_queue_response(c, 405, r);
    MHD_destroy_response(r);
    return ok;
}

/* Numbers rounded to 4 decimals: the page draws 8-bit pixels, and the JSON stays small. */
static cJSON *number_array(const float *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < n; k++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(round((double)v[k] * 1e4) / 1e4));
    return a;
}

static void base64(char *out, const unsigned char *in, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t k = 0; k < n; k += 3) {
        unsigned v = (unsigned)in[k] << 16 | (k + 1 < n ? (unsigned)in[k + 1] << 8 : 0) |
                     (k + 2 < n ? in[k + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = k + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = k + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

/* ------------------------------------------------------------------------ requests */

/* The numbers of array `name` of obj into v[n], each in [lo, hi]; else a message in why. */
static int read_numbers(float *v, int n, const cJSON *obj, const char *name, double lo, double hi,
                        char *why, size_t why_n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsArray(a)) {
        snprintf(why, why_n, "\"%s\" must be an array of %d numbers", name, n);
        return -1;
    }
    int got = cJSON_GetArraySize(a);
    if (got != n) {
        snprintf(why, why_n, "\"%s\" has %d values (expected %d)", name, got, n);
        return -1;
    }
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble < lo ||
            e->valuedouble > hi) {
            snprintf(why, why_n, "\"%s\"[%d] must be a number in [%g, %g]", name, k, lo, hi);
            return -1;
        }
        v[k++] = (float)e->valuedouble;
    }
    return 0;
}

static cJSON *parse_body(const request *rq, char *why, size_t why_n) {
    cJSON *json = rq->len ? cJSON_ParseWithLength(rq->body, rq->len) : NULL;
    if (!json || !cJSON_IsObject(json)) {
        snprintf(why, why_n, rq->len ? "the body is not a JSON object" : "the body is empty");
        cJSON_Delete(json);
        return NULL;
    }
    return json;
}

static enum MHD_Result api_info(struct MHD_Connection *c, server *s) {
    const caps_config *cfg = capsnet_config(s->m);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", s->model_name);
    cJSON_AddNumberToObject(j, "classes", cfg->num_classes);
    cJSON_AddNumberToObject(j, "image_size", cfg->image_size);
    cJSON_AddNumberToObject(j, "digit_dim", cfg->digit_dim);
    cJSON_AddNumberToObject(j, "test_images", s->test.count);
    cJSON_AddNumberToObject(j, "slider_range", SERVE_DEFAULT_RANGE);
    /* New fields after the old ones: clients that read the answer as text keep working. */
    cJSON_AddNumberToObject(j, "channels", cfg->in_channels);
    if (caps_class_name(s->m, 0)) {
        cJSON *names = cJSON_AddArrayToObject(j, "class_names");
        for (int k = 0; names && k < cfg->num_classes; k++)
            cJSON_AddItemToArray(names, cJSON_CreateString(caps_class_name(s->m, k)));
    } else {
        cJSON_AddNullToObject(j, "class_names");
    }
    return send_json(c, 200, j);
}

static enum MHD_Result api_classify(struct MHD_Connection *c, server *s, const request *rq) {
    const caps_config *cfg = capsnet_config(s->m);
    int P = caps_image_pixels(cfg), J = cfg->num_classes, E = cfg->digit_dim;
    char why[160];
    cJSON *in = parse_body(rq, why, sizeof why);
    if (!in) return send_error(c, 400, "%s", why);
    pthread_mutex_lock(&s->lock);
    int bad = read_numbers(s->x, P, in, "pixels", 0.0, 1.0, why, sizeof why);
    cJSON *out = NULL;
    if (!bad) {
        capsnet_forward(s->m, s->x, NULL, 1, CAPS_MASK_PREDICTED, 0.0005f);
        int cls = capsnet_predictions(s->m)[0];
        const float *v = capsnet_digit_caps(s->m);
        out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "class", cls);
        if (caps_class_name(s->m, cls))
            cJSON_AddStringToObject(out, "name", caps_class_name(s->m, cls));
        cJSON_AddItemToObject(out, "lengths", number_array(capsnet_lengths(s->m), J));
        cJSON *caps = cJSON_AddArrayToObject(out, "capsules");
        for (int j = 0; caps && j < J; j++) cJSON_AddItemToArray(caps, number_array(v + j * E, E));
        cJSON_AddItemToObject(out, "reconstruction", number_array(capsnet_reconstruction(s->m), P));
    }
    pthread_mutex_unlock(&s->lock);
    cJSON_Delete(in);
    return bad ? send_error(c, 400, "%s", why) : send_json(c, 200, out);
}

static enum MHD_Result api_decode(struct MHD_Connection *c, server *s, const request *rq) {
    const caps_config *cfg = capsnet_config(s->m);
    int P = caps_image_pixels(cfg), J = cfg->num_classes, E = cfg->digit_dim;
    char why[160];
    cJSON *in = parse_body(rq, why, sizeof why);
    if (!in) return send_error(c, 400, "%s", why);
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(in, "class");
    if (!cJSON_IsNumber(cls) || cls->valuedouble != (int)cls->valuedouble ||
        cls->valuedouble < 0 || cls->valuedouble >= J) {
        cJSON_Delete(in);
        return send_error(c, 400, "\"class\" must be an integer in [0, %d]", J - 1);
    }
    int k = (int)cls->valuedouble;
    pthread_mutex_lock(&s->lock);
    /* A capsule is a vector of length below 1; allow some room for the page's offsets. */
    float *v = s->out; /* [J][E], zero but for capsule k */
    memset(v, 0, (size_t)J * E * sizeof(float));
    int bad = read_numbers(v + k * E, E, in, "capsule", -10.0, 10.0, why, sizeof why);
    cJSON *out = NULL;
    if (!bad) {
        capsnet_decode(s->m, s->x, v, &k, 1);
        out = cJSON_CreateObject();
        cJSON_AddItemToObject(out, "reconstruction", number_array(s->x, P));
    }
    pthread_mutex_unlock(&s->lock);
    cJSON_Delete(in);
    return bad ? send_error(c, 400, "%s", why) : send_json(c, 200, out);
}

static enum MHD_Result api_test_image(struct MHD_Connection *c, server *s, const char *arg) {
    if (s->test.count == 0)
        return send_error(c, 404, "no test images: start the server with --data DIR");
    char *end;
    errno = 0;
    long i = strtol(arg, &end, 10);
    if (end == arg || *end || errno || i < 0 || i >= s->test.count)
        return send_error(c, 404, "no test image '%s' (expected 0..%d)", arg, s->test.count - 1);
    int P = s->test.channels * s->test.rows * s->test.cols, idx = (int)i, label;
    float *x = malloc((size_t)P * sizeof(float));
    if (!x) return send_error(c, 500, "out of memory");
    caps_make_batch(x, &label, &s->test, &idx, 1, 0, NULL);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "index", idx);
    cJSON_AddNumberToObject(out, "label", label);
    if (caps_class_name(s->m, label))
        cJSON_AddStringToObject(out, "name", caps_class_name(s->m, label));
    cJSON_AddItemToObject(out, "pixels", number_array(x, P));
    free(x);
    return send_json(c, 200, out);
}

static enum MHD_Result api_perturb(struct MHD_Connection *c, server *s, const request *rq) {
    const caps_config *cfg = capsnet_config(s->m);
    int P = caps_image_pixels(cfg), E = cfg->digit_dim;
    char why[160];
    cJSON *in = parse_body(rq, why, sizeof why);
    if (!in) return send_error(c, 400, "%s", why);
    double range = SERVE_DEFAULT_RANGE;
    int steps = 11;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(in, "range");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(in, "steps");
    if (r && (!cJSON_IsNumber(r) || !(r->valuedouble >= 0 && r->valuedouble <= 10))) {
        cJSON_Delete(in);
        return send_error(c, 400, "\"range\" must be a number in [0, 10]");
    }
    if (st && (!cJSON_IsNumber(st) || st->valuedouble != (int)st->valuedouble ||
               st->valuedouble < 1 || st->valuedouble > SERVE_MAX_STEPS)) {
        cJSON_Delete(in);
        return send_error(c, 400, "\"steps\" must be an integer in [1, %d]", SERVE_MAX_STEPS);
    }
    if (r) range = r->valuedouble;
    if (st) steps = (int)st->valuedouble;
    float deltas[SERVE_MAX_STEPS];
    for (int k = 0; k < steps; k++)
        deltas[k] = steps == 1 ? 0.0f : (float)(-range + 2.0 * range * k / (steps - 1));
    if (steps % 2) deltas[steps / 2] = 0.0f;
    size_t n = (size_t)E * steps * P;
    unsigned char *bytes = malloc(n);
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    if (!bytes || !b64) {
        free(bytes), free(b64), cJSON_Delete(in);
        return send_error(c, 500, "out of memory");
    }
    pthread_mutex_lock(&s->lock);
    int bad = read_numbers(s->x, P, in, "pixels", 0.0, 1.0, why, sizeof why), cls = 0;
    if (!bad) {
        cls = capsnet_perturb(s->m, s->out, s->x, -1, deltas, steps);
        for (size_t k = 0; k < n; k++) {
            float v = s->out[k] < 0.0f ? 0.0f : s->out[k] > 1.0f ? 1.0f : s->out[k];
            bytes[k] = (unsigned char)lrintf(v * 255.0f);
        }
    }
    pthread_mutex_unlock(&s->lock);
    cJSON_Delete(in);
    if (bad) {
        free(bytes), free(b64);
        return send_error(c, 400, "%s", why);
    }
    base64(b64, bytes, n);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "class", cls);
    cJSON_AddItemToObject(out, "deltas", number_array(deltas, steps));
    cJSON_AddNumberToObject(out, "rows", E);
    cJSON_AddNumberToObject(out, "cols", steps);
    cJSON_AddNumberToObject(out, "size", cfg->image_size);
    cJSON_AddStringToObject(out, "images", b64);
    cJSON_AddNumberToObject(out, "channels", cfg->in_channels);
    free(bytes), free(b64);
    return send_json(c, 200, out);
}

/* ------------------------------------------------------------------------ dispatch */

static enum MHD_Result route(struct MHD_Connection *c, server *s, const char *url,
                             const char *method, const request *rq) {
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int post = strcmp(method, "POST") == 0;
    for (int k = 0; k < web_asset_count; k++)
        if (strcmp(url, web_assets[k].path) == 0 ||
            (strcmp(url, "/") == 0 && strcmp(web_assets[k].path, "/index.html") == 0)) {
            if (!get) return send_not_allowed(c, "GET, HEAD");
            return send_bytes(c, 200, web_assets[k].type, web_assets[k].data, web_assets[k].size, 0);
        }
    if (strcmp(url, "/api/info") == 0)
        return get ? api_info(c, s) : send_not_allowed(c, "GET, HEAD");
    if (strncmp(url, "/api/test/", 10) == 0)
        return get ? api_test_image(c, s, url + 10) : send_not_allowed(c, "GET, HEAD");
    if (strcmp(url, "/api/classify") == 0)
        return post ? api_classify(c, s, rq) : send_not_allowed(c, "POST");
    if (strcmp(url, "/api/decode") == 0)
        return post ? api_decode(c, s, rq) : send_not_allowed(c, "POST");
    if (strcmp(url, "/api/perturb") == 0)
        return post ? api_perturb(c, s, rq) : send_not_allowed(c, "POST");
    return send_error(c, 404, "not found: %s", url);
}

/* libmicrohttpd calls this first with no body, then once per piece of the body, then once
 * more with *upload_size 0: the request is answered on that last call. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **state) {
    (void)version;
    server *s = cls;
    request *rq = *state;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        *state = rq;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!rq->too_large && rq->len + *upload_size <= SERVE_MAX_BODY) {
            char *grown = realloc(rq->body, rq->len + *upload_size + 1);
            if (!grown) return MHD_NO;
            rq->body = grown;
            memcpy(rq->body + rq->len, upload_data, *upload_size);
            rq->len += *upload_size;
        } else {
            rq->too_large = 1; /* read and drop the rest, then answer 413 */
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->too_large)
        return send_error(c, 413, "request body too large (at most %zu bytes)", SERVE_MAX_BODY);
    return route(c, s, url, method, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    request *rq = *state;
    if (rq) free(rq->body);
    free(rq);
    *state = NULL;
}

/* ------------------------------------------------------------------------ the command */

static const char serve_usage[] =
    "Usage: capsnet serve --model MODEL [--data DIR] [--host 127.0.0.1] [--port 8080]\n"
    "\n"
    "Serves the capsule explorer: open the printed URL, draw a digit, watch the ten capsule\n"
    "lengths and the reconstruction, turn the 16 dimensions of the predicted capsule. With\n"
    "--data, a \"random test digit\" button shows MNIST test images. Binds to 127.0.0.1 (this\n"
    "machine only) unless --host says otherwise; port 0 picks a free port. Ctrl-C stops it.\n"
    "\n"
    "Options:\n";

int cmd_serve(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *host = "127.0.0.1", *device = "cpu";
    /* One worker by default: the network answers one request at a time anyway, and every
     * extra thread that enters the network brings its own OpenMP team, whose spinning
     * threads fight the running one for the cores (8 wrk connections on 2 cores: 4 workers
     * gave 179 requests/s and 121 ms at p99, 1 worker 379-402 requests/s and 25-38 ms). */
    int port = 8080, threads = 0, workers = 1, tf32 = 0;
    option opts[] = {
        {"model", OPT_STRING, &model, 0, 0, "MODEL", "model file (required)", 0},
        {"data", OPT_STRING, &data, 0, 0, "DIR", "test images for the random-digit button", 0},
        {"host", OPT_STRING, &host, 0, 0, "ADDR", "IPv4 address to bind (127.0.0.1)", 0},
        {"port", OPT_INT, &port, 0, 65535, "N", "TCP port, 0 = any free one (8080)", 0},
        {"workers", OPT_INT, &workers, 1, 64, "N", "threads answering connections (1)", 0},
        {"threads", OPT_INT, &threads, 0, 1024, "T", "threads of the network, 0 = all cores", 0},
        DEVICE_OPTIONS(device, tf32),
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]), npos, done;
    char *pos[1];
    int rc = parse_command("serve", serve_usage, opts, nopts, argc, argv, pos, 0, &npos, &done);
    if (done) return rc;
    if (!model) return fail_usage("serve", "--model is required");
    caps_options opt;
    if ((rc = device_options(&opt, "serve", device, tf32))) return rc;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, &addr.sin_addr) != 1)
        return fail_usage("serve", "bad --host '%s' (expected an IPv4 address such as 127.0.0.1)",
                          host);
    caps_set_threads(threads);

    server s;
    memset(&s, 0, sizeof s);
    caps_error err;
    if (caps_model_load(&s.m, NULL, NULL, model, SERVE_BATCH, &opt, &err)) {
        print_error(&err);
        return EXIT_FAILURE;
    }
    const caps_config *cfg = capsnet_config(s.m);
    if (data && caps_dataset_load(&s.test, data, 0, cfg->num_classes, &err)) {
        print_error(&err);
        capsnet_free(s.m);
        return EXIT_FAILURE;
    }
    if (data && (s.test.rows != cfg->image_size || s.test.channels != cfg->in_channels)) {
        fail_runtime("%s: images are %dx%dx%d, the model takes %dx%dx%d", data, s.test.cols,
                     s.test.rows, s.test.channels, cfg->image_size, cfg->image_size,
                     cfg->in_channels);
        caps_dataset_free(&s.test);
        capsnet_free(s.m);
        return EXIT_FAILURE;
    }
    const char *slash = strrchr(model, '/');
    s.model_name = slash ? slash + 1 : model;
    s.x = malloc((size_t)caps_image_pixels(cfg) * sizeof(float));
    size_t out_n = (size_t)cfg->digit_dim * SERVE_MAX_STEPS * caps_image_pixels(cfg);
    size_t caps_n = (size_t)cfg->num_classes * cfg->digit_dim;
    s.out = malloc((out_n > caps_n ? out_n : caps_n) * sizeof(float));
    pthread_mutex_init(&s.lock, NULL);
    struct MHD_Daemon *d = NULL;
    /* A thread pool only for more than one worker: one worker is the polling thread itself,
     * and libmicrohttpd warns on stderr about a pool size of 1 or 0, so then the option list
     * ends before the pool size. */
    enum MHD_OPTION pool_option = workers > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END;
    if (s.x && s.out)
        d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                             on_request, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                             MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                             MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                             MHD_OPTION_CONNECTION_LIMIT, 256u,
                             pool_option, (unsigned)workers, MHD_OPTION_END);
    if (!d) {
        rc = fail_runtime("cannot listen on %s:%d (%s)", host, port,
                          errno ? strerror(errno) : "libmicrohttpd failed to start");
    } else {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        printf("capsnet serve: %s on http://%s:%u/ (Ctrl-C stops)\n", model,
               strcmp(host, "0.0.0.0") == 0 ? "localhost" : host,
               info ? (unsigned)info->port : (unsigned)port);
        fflush(stdout);
        /* Wait for Ctrl-C: the signals stay blocked except inside sigsuspend, so one that
         * arrives between the test and the wait is not lost. */
        install_stop_handlers();
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        while (!stop_requested) sigsuspend(&old);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        MHD_stop_daemon(d);
        fprintf(stderr, "capsnet serve: stopped\n");
        rc = 0;
    }
    pthread_mutex_destroy(&s.lock);
    free(s.x);
    free(s.out);
    caps_dataset_free(&s.test);
    capsnet_free(s.m);
    return rc;
}
