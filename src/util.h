/*
 * util.h: what every file of the library shares: the always-on assert for programmer
 * errors, the error-message helper for input errors, aligned allocation, and atomic files.
 * Not part of the public API; the capsnet program (tools/) uses the atomic files too, for
 * its logs and figures, through the static library.
 */
#ifndef CAPS_UTIL_H
#define CAPS_UTIL_H

#include <stdio.h>
#include <stdlib.h>

#include "capsnet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Programmer errors (a wrong shape, a broken invariant) abort with file:line, in every
 * build: a silent wrong answer costs more than the branch. */
#define CAPS_ASSERT(cond)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

#if defined(__GNUC__)
#define CAPS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CAPS_PRINTF(a, b)
#endif

/* Inside an OpenMP parallel region: this thread's number and the team's size (0 and 1
 * without OpenMP), for loops that split work by hand. */
void caps_thread(int *id, int *n);

/* Fills err (when not NULL) with a formatted message and returns code. */
int caps_fail(caps_error *err, int code, const char *fmt, ...) CAPS_PRINTF(3, 4);
/* Sets the hint line of err (when not NULL). */
void caps_hint(caps_error *err, const char *fmt, ...) CAPS_PRINTF(2, 3);

/* A stored 8-bit sample as a network input in [0, 1]: b / 255 as a correctly rounded float
 * division, on every input path (IDX data sets, PNG, PGM) and on the GPU, and the same as
 * PyTorch's x.float() / 255. (Multiplying by 1.0f / 255 instead differs by one ulp for 126 of
 * the 256 values, enough to make predict and test see different inputs for one digit.) */
static inline float caps_unit_sample(unsigned b) { return (float)b / 255.0f; }

/* 64-byte aligned, zeroed allocation of bytes (NULL on failure or overflow); free with free(). */
void *caps_alloc(size_t count, size_t size);

/* Atomic file writes: open a temporary file beside path, write, then caps_atomic_commit
 * flushes, fsyncs and renames it over path (or caps_atomic_abort removes it). A reader of
 * path sees the old file or the new one, never a half-written one. */
typedef struct {
    FILE *f;
    char path[4096];
    char tmp[4096 + 32];
} caps_atomic_file;

int caps_atomic_open(caps_atomic_file *af, const char *path, caps_error *err);
int caps_atomic_commit(caps_atomic_file *af, caps_error *err);
void caps_atomic_abort(caps_atomic_file *af);

/* Writes text to path atomically, as every output file of capsnet is written: a reader sees
 * the old file or the new one, never half of one. */
int caps_write_text_atomic(const char *path, const char *text, caps_error *err);
/* For a signal handler about to end the program: removes the temporary file of a write in
 * progress, if any (async-signal-safe). The file being replaced stays as it was. */
void caps_atomic_unlink_in_signal(void);

#ifdef __cplusplus
}
#endif

#endif /* CAPS_UTIL_H */
