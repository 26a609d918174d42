/*
 * fuzz_file.h: the input files of the fuzz targets. The readers take paths, so each run's
 * bytes go to a per-process file in /dev/shm (a RAM disk, else /tmp), created once,
 * rewritten every run and removed at exit. Included by each fuzz_*.c (one translation unit
 * per target, so the definitions are static).
 */
#ifndef FUZZ_FILE_H
#define FUZZ_FILE_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    int fd;
    char path[128];
} fuzz_file;

#define FUZZ_MAX_FILES 4
static fuzz_file *fuzz_opened[FUZZ_MAX_FILES];
static int fuzz_num_opened;

static void fuzz_remove_files(void) {
    for (int k = 0; k < fuzz_num_opened; k++) {
        close(fuzz_opened[k]->fd);
        unlink(fuzz_opened[k]->path);
    }
}

/* Creates the file once and removes it at exit. */
static void fuzz_file_open(fuzz_file *f, const char *name) {
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(f->path, sizeof f->path, "%s/capsnet-fuzz-%ld-%s", dir, (long)getpid(), name);
    f->fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (f->fd < 0 || fuzz_num_opened == FUZZ_MAX_FILES) {
        perror(f->path);
        abort();
    }
    if (fuzz_num_opened == 0) atexit(fuzz_remove_files);
    fuzz_opened[fuzz_num_opened++] = f;
}

/* Replaces the file's contents with data[0, n). A failure here is the harness's, not the
 * reader's: abort loudly rather than fuzz a stale file. */
static void fuzz_file_write(fuzz_file *f, const uint8_t *data, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(f->fd, data + done, n - done, (off_t)done);
        if (w <= 0) {
            perror(f->path);
            abort();
        }
        done += (size_t)w;
    }
    if (ftruncate(f->fd, (off_t)n) != 0) {
        perror(f->path);
        abort();
    }
}

#endif
