/*
 * fixture.c: see fixture.h.
 */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void skip_comments(FILE *f) {
    int ch;
    while ((ch = fgetc(f)) != EOF) {
        if (ch == '#') {
            while ((ch = fgetc(f)) != EOF && ch != '\n') {}
        } else if (ch != '\n' && ch != ' ' && ch != '\r' && ch != '\t') {
            ungetc(ch, f);
            return;
        }
    }
}

int fixture_load(fixture *fx, const char *path) {
    fx->tensors = NULL;
    fx->count = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot open fixture\n", path);
        return -1;
    }
    int cap = 0;
    for (;;) {
        skip_comments(f);
        char kw[16];
        if (fscanf(f, "%15s", kw) != 1) break;
        if (strcmp(kw, "tensor") != 0) {
            fprintf(stderr, "%s: expected 'tensor', got '%s'\n", path, kw);
            goto fail;
        }
        if (fx->count == cap) {
            cap = cap ? 2 * cap : 32;
            fx_tensor *grown = realloc(fx->tensors, (size_t)cap * sizeof *grown);
            if (!grown) goto fail;
            fx->tensors = grown;
        }
        fx_tensor *t = &fx->tensors[fx->count];
        memset(t, 0, sizeof *t);
        if (fscanf(f, "%63s %d", t->name, &t->ndim) != 2 || t->ndim < 0 || t->ndim > FX_MAX_DIMS) {
            fprintf(stderr, "%s: bad tensor header\n", path);
            goto fail;
        }
        t->n = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (fscanf(f, "%d", &t->dims[d]) != 1 || t->dims[d] < 0) {
                fprintf(stderr, "%s: %s: bad dimension\n", path, t->name);
                goto fail;
            }
            t->n *= (size_t)t->dims[d];
        }
        t->data = malloc((t->n ? t->n : 1) * sizeof(float));
        if (!t->data) goto fail;
        fx->count++;
        for (size_t k = 0; k < t->n; k++)
            if (fscanf(f, "%f", &t->data[k]) != 1) {
                fprintf(stderr, "%s: %s: expected %zu values, got %zu\n", path, t->name, t->n, k);
                goto fail;
            }
    }
    fclose(f);
    return 0;
fail:
    fclose(f);
    fixture_free(fx);
    return -1;
}

const fx_tensor *fixture_get(const fixture *fx, const char *name) {
    for (int k = 0; k < fx->count; k++)
        if (strcmp(fx->tensors[k].name, name) == 0) return &fx->tensors[k];
    return NULL;
}

void fixture_free(fixture *fx) {
    for (int k = 0; k < fx->count; k++) free(fx->tensors[k].data);
    free(fx->tensors);
    fx->tensors = NULL;
    fx->count = 0;
}
