/*
 * util.c: error messages, aligned allocation, atomic file writes, the clock.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

double caps_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void caps_thread(int *id, int *n) {
#ifdef _OPENMP
    *id = omp_get_thread_num();
    *n = omp_get_num_threads();
#else
    *id = 0;
    *n = 1;
#endif
}

int caps_fail(caps_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
        err->hint[0] = '\0';
    }
    return code;
}

void caps_hint(caps_error *err, const char *fmt, ...) {
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->hint, sizeof err->hint, fmt, ap);
    va_end(ap);
}

/* 64 bytes: one cache line, and a whole AVX-512 register, for every arena. */
#define CAPS_ALIGN 64

void *caps_alloc(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    size_t bytes = count * size;
    if (bytes == 0) bytes = CAPS_ALIGN;
    if (bytes > SIZE_MAX - CAPS_ALIGN) return NULL;
    bytes = (bytes + CAPS_ALIGN - 1) / CAPS_ALIGN * CAPS_ALIGN;
    void *p = aligned_alloc(CAPS_ALIGN, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* The temporary file being written now, for caps_atomic_unlink_in_signal: a program killed
 * by a second Ctrl-C mid-save leaves no half-written temporary behind. Set only once the
 * path is complete, so a signal sees a whole path or none. */
static char pending_tmp[4096 + 32];
static volatile sig_atomic_t pending_set;

void caps_atomic_unlink_in_signal(void) {
    if (pending_set) unlink(pending_tmp); /* unlink is async-signal-safe */
}

int caps_atomic_open(caps_atomic_file *af, const char *path, caps_error *err) {
    af->f = NULL;
    if (strlen(path) >= sizeof af->path)
        return caps_fail(err, CAPS_ERR_ARG, "%s: path too long", path);
    strcpy(af->path, path);
    /* The temporary file sits in the same folder, so the rename cannot cross filesystems. */
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(af->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return caps_fail(err, CAPS_ERR_IO, "%s: cannot create temporary file %s (%s)", path, af->tmp,
                         strerror(errno));
    pending_set = 0;
    memcpy(pending_tmp, af->tmp, sizeof pending_tmp);
    pending_set = 1;
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        pending_set = 0;
        int e = errno;
        close(fd);
        unlink(af->tmp);
        return caps_fail(err, CAPS_ERR_IO, "%s: cannot open stream (%s)", af->tmp, strerror(e));
    }
    return CAPS_OK;
}

/* The rename lives in the directory: fsync it too, or a power cut can undo the rename
 * after the data was synced. Best effort: some filesystems refuse fsync on directories. */
static void sync_parent_dir(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    fsync(fd);
    close(fd);
}

int caps_atomic_commit(caps_atomic_file *af, caps_error *err) {
    int bad = ferror(af->f);
    pending_set = 0; /* from here the temporary is renamed or removed below */
    int e = bad ? EIO : 0;
    if (!bad && fflush(af->f) != 0) bad = 1, e = errno;
    if (!bad && fsync(fileno(af->f)) != 0) bad = 1, e = errno;
    if (fclose(af->f) != 0 && !bad) bad = 1, e = errno;
    af->f = NULL;
    if (bad) {
        unlink(af->tmp);
        return caps_fail(err, CAPS_ERR_IO, "%s: write failed (%s)", af->path, strerror(e));
    }
    if (rename(af->tmp, af->path) != 0) {
        e = errno;
        unlink(af->tmp);
        return caps_fail(err, CAPS_ERR_IO, "%s: cannot rename from %s (%s)", af->path, af->tmp,
                         strerror(e));
    }
    sync_parent_dir(af->path);
    return CAPS_OK;
}

void caps_atomic_abort(caps_atomic_file *af) {
    pending_set = 0;
    if (af->f) fclose(af->f);
    af->f = NULL;
    unlink(af->tmp);
}

int caps_write_text_atomic(const char *path, const char *text, caps_error *err) {
    caps_atomic_file af;
    int rc = caps_atomic_open(&af, path, err);
    if (rc) return rc;
    if (fputs(text, af.f) == EOF) {
        int e = errno;
        caps_atomic_abort(&af);
        return caps_fail(err, CAPS_ERR_IO, "%s: write failed (%s)", path, strerror(e));
    }
    return caps_atomic_commit(&af, err);
}
