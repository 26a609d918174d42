/*
 * class_names.c: the names of a model's classes ("Sandal" for Fashion-MNIST's class 5):
 * setting and getting them on a model, and reading a names file.
 *
 * A name is 1 to CAPS_CLASS_NAME_MAX-1 (127) bytes with no control characters (bytes below
 * 0x20, and 0x7f): it fits one line of a names file or of a model file's names block, and one
 * cell of a report, and cannot move a terminal's cursor. Other bytes pass through untouched
 * (UTF-8 names stay UTF-8; nothing here decodes them). caps_class_name_problem is that rule,
 * used by caps_set_class_names, by the names-file reader and by the model-file loader, so
 * that all three accept the same names.
 *
 * A names file: one name per line, lines ending in '\n' or "\r\n" (the last may end without
 * one), blank lines at the end ignored (editors add them), a blank line anywhere else an
 * error (a missing name would shift every class after it). A UTF-8 byte order mark at the
 * start (Windows editors write one) is skipped. At most NAMES_FILE_MAX_BYTES bytes and
 * NAMES_FILE_MAX_NAMES names, which bounds what a wrong file (an image given by mistake)
 * can make us allocate.
 */
#include "class_names.h"

#include <errno.h>
#include <string.h>

#include "model.h"
#include "util.h"

/* 65536 names of up to 127 bytes fit in 8 MiB, but no real label set comes near: 1 MiB holds
 * ImageNet's 21k classes' names several times over. */
#define NAMES_FILE_MAX_BYTES ((size_t)1 << 20)
#define NAMES_FILE_MAX_NAMES 65536

static const unsigned char utf8_bom[3] = {0xef, 0xbb, 0xbf};

/* ------------------------------------------------------------------------ the rule */

int caps_class_name_problem(const char *s, size_t len, char *why, size_t cap) {
    if (len == 0) {
        snprintf(why, cap, "empty name (expected 1 to %d bytes)", CAPS_CLASS_NAME_MAX - 1);
        return 1;
    }
    if (len > CAPS_CLASS_NAME_MAX - 1) {
        snprintf(why, cap, "name too long (expected at most %d bytes, got %zu)",
                 CAPS_CLASS_NAME_MAX - 1, len);
        return 1;
    }
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c < 0x20 || c == 0x7f) {
            snprintf(why, cap, "control character 0x%02x at byte %zu (expected none: no byte "
                     "below 0x20, no 0x7f)", c, k + 1);
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ on the model */

char **caps_class_names_copy(int n, const char *const *names) {
    CAPS_ASSERT(n >= 1 && names);
    char **out = calloc((size_t)n, sizeof *out);
    if (!out) return NULL;
    for (int k = 0; k < n; k++) {
        size_t len = strlen(names[k]);
        out[k] = malloc(len + 1);
        if (!out[k]) {
            caps_class_names_free(k, out);
            return NULL;
        }
        memcpy(out[k], names[k], len + 1);
    }
    return out;
}

void caps_class_names_replace(capsnet *m, char **names) {
    caps_class_names_free(m->cfg.num_classes, m->class_names);
    m->class_names = names;
}

void caps_class_names_free(int n, char **names) {
    if (!names) return;
    for (int k = 0; k < n; k++) free(names[k]);
    free(names);
}

int caps_set_class_names(capsnet *m, int n, const char *const *names, caps_error *err) {
    CAPS_ASSERT(m);
    int J = m->cfg.num_classes;
    if (n == 0) {
        caps_class_names_replace(m, NULL);
        return CAPS_OK;
    }
    if (n != J)
        return caps_fail(err, CAPS_ERR_ARG, "class names: wrong count (expected %d, one per "
                         "class, or 0 for none, got %d)", J, n);
    CAPS_ASSERT(names);
    char why[128];
    for (int k = 0; k < n; k++) {
        CAPS_ASSERT(names[k]);
        if (caps_class_name_problem(names[k], strlen(names[k]), why, sizeof why))
            return caps_fail(err, CAPS_ERR_ARG, "class %d: %s", k, why);
    }
    char **copy = caps_class_names_copy(n, names);
    if (!copy) return caps_fail(err, CAPS_ERR_MEMORY, "out of memory for %d class names", n);
    caps_class_names_replace(m, copy);
    return CAPS_OK;
}

const char *caps_class_name(const capsnet *m, int k) {
    if (!m->class_names || k < 0 || k >= m->cfg.num_classes) return NULL;
    return m->class_names[k];
}

/* ------------------------------------------------------------------------ names files */

/* The line that starts at buf[*pos] (of len bytes): its length without the terminator, and
 * *pos moved past the terminator ('\n', "\r\n", or a '\r' that ends the file). */
static size_t next_line(const char *buf, size_t len, size_t *pos) {
    size_t start = *pos, end = start;
    while (end < len && buf[end] != '\n') end++;
    *pos = end < len ? end + 1 : end;
    if (end > start && buf[end - 1] == '\r') end--;
    return end - start;
}

/* Reads the whole file into *buf (NAMES_FILE_MAX_BYTES + 1 bytes allocated), *len bytes. */
static int read_all(const char *path, char **buf, size_t *len, caps_error *err) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return caps_fail(err, CAPS_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    char *b = malloc(NAMES_FILE_MAX_BYTES + 1);
    if (!b) {
        fclose(f);
        return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for a read buffer", path);
    }
    /* One byte more than allowed: reading it tells "too large" from "exactly the limit". */
    size_t n = 0, got;
    errno = 0;
    while (n <= NAMES_FILE_MAX_BYTES &&
           (got = fread(b + n, 1, NAMES_FILE_MAX_BYTES + 1 - n, f)) > 0)
        n += got;
    int rc = CAPS_OK;
    if (ferror(f))
        rc = caps_fail(err, CAPS_ERR_IO, "%s: read error (%s)", path,
                       strerror(errno ? errno : EIO));
    else if (n > NAMES_FILE_MAX_BYTES)
        rc = caps_fail(err, CAPS_ERR_FORMAT, "%s: too large for a names file (expected at most "
                       "%zu bytes)", path, NAMES_FILE_MAX_BYTES);
    (void)fclose(f); /* read-only: nothing to lose */
    if (rc) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = n;
    return CAPS_OK;
}

int caps_class_names_read(const char *path, int *n, char ***names, caps_error *err) {
    CAPS_ASSERT(path && n && names);
    *n = 0;
    *names = NULL;
    char *buf;
    size_t len;
    int rc = read_all(path, &buf, &len, err);
    if (rc) return rc;
    size_t first = len >= sizeof utf8_bom && memcmp(buf, utf8_bom, sizeof utf8_bom) == 0
                       ? sizeof utf8_bom
                       : 0;
    /* First pass: the number of lines up to the last that is not blank. */
    size_t pos = first, lines = 0, count = 0;
    while (pos < len) {
        lines++;
        if (next_line(buf, len, &pos) > 0) count = lines;
    }
    if (count == 0) {
        caps_fail(err, CAPS_ERR_FORMAT, "%s:1: no class names (expected one name per line, "
                  "got %s)", path, len > first ? "only blank lines" : "an empty file");
        free(buf);
        return CAPS_ERR_FORMAT;
    }
    if (count > NAMES_FILE_MAX_NAMES) {
        caps_fail(err, CAPS_ERR_FORMAT, "%s:%d: too many class names (expected at most %d)",
                  path, NAMES_FILE_MAX_NAMES + 1, NAMES_FILE_MAX_NAMES);
        free(buf);
        return CAPS_ERR_FORMAT;
    }
    /* Second pass: check each name and terminate it in place. */
    const char **at = malloc(count * sizeof *at);
    if (!at) {
        free(buf);
        return caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for %zu class names", path,
                         count);
    }
    pos = first;
    char why[128];
    for (size_t k = 0; k < count && !rc; k++) {
        size_t start = pos, n_bytes = next_line(buf, len, &pos);
        if (n_bytes == 0)
            rc = caps_fail(err, CAPS_ERR_FORMAT, "%s:%zu: blank line (expected a name on every "
                           "line up to the last name)", path, k + 1);
        else if (caps_class_name_problem(buf + start, n_bytes, why, sizeof why))
            rc = caps_fail(err, CAPS_ERR_FORMAT, "%s:%zu: %s", path, k + 1, why);
        buf[start + n_bytes] = '\0'; /* the '\n' or '\r' after it, or the spare last byte */
        at[k] = buf + start;
    }
    char **copy = NULL;
    if (!rc) {
        copy = caps_class_names_copy((int)count, at);
        if (!copy)
            rc = caps_fail(err, CAPS_ERR_MEMORY, "%s: out of memory for %zu class names", path,
                           count);
    }
    free(at);
    free(buf);
    if (rc) return rc;
    *n = (int)count;
    *names = copy;
    return CAPS_OK;
}
