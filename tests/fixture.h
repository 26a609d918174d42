/*
 * fixture.h: reads the text fixtures that tools/torch_reference.py writes.
 *
 * Format, one record per line pair:
 *   tensor <name> <ndim> <dim0> ... <dimN-1>
 *   <values, whitespace separated, row-major, as %.9g>
 * A 0-dimensional tensor is a scalar with one value. Lines starting with # are comments.
 */
#ifndef CAPS_FIXTURE_H
#define CAPS_FIXTURE_H

#include <stddef.h>

#define FX_MAX_DIMS 8

typedef struct {
    char name[64];
    int ndim;
    int dims[FX_MAX_DIMS];
    size_t n;
    float *data;
} fx_tensor;

typedef struct {
    fx_tensor *tensors;
    int count;
} fixture;

/* 0 on success; else prints why to stderr and returns -1. */
int fixture_load(fixture *fx, const char *path);
/* The tensor called name, or NULL. */
const fx_tensor *fixture_get(const fixture *fx, const char *name);
void fixture_free(fixture *fx);

#endif /* CAPS_FIXTURE_H */
