/*
 * test_files.h: the files of a test binary. Each binary that writes files makes one temporary
 * folder under /tmp at the start of main (test_dir_create), builds paths in it (test_path),
 * and removes it with everything in it at the end (test_dir_remove). Whole files are read and
 * written with test_read_file and test_write_file; test_count_temp_files counts the leftovers
 * of caps_atomic_open (names holding ".tmp."); test_disk_full_begin and _end make writes fail
 * as on a full disk.
 */
#ifndef CAPS_TEST_FILES_H
#define CAPS_TEST_FILES_H

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEST_PATH_MAX 512 /* test_dir + a d_name of up to 255 bytes */

static char test_dir[256];

/* Makes /tmp/capsnet-test-<tag>-XXXXXX as test_dir; 0 (with a message) if it cannot. */
static inline int test_dir_create(const char *tag) {
    snprintf(test_dir, sizeof test_dir, "/tmp/capsnet-test-%s-XXXXXX", tag);
    if (mkdtemp(test_dir)) return 1;
    fprintf(stderr, "mkdtemp %s: %s\n", test_dir, strerror(errno));
    return 0;
}

/* test_dir/name into buf [TEST_PATH_MAX]; returns buf. */
static inline char *test_path(char *buf, const char *name) {
    snprintf(buf, TEST_PATH_MAX, "%s/%s", test_dir, name);
    return buf;
}

/* Removes every entry of test_dir (files, and folders the tests left empty), then test_dir. */
static inline void test_dir_remove(void) {
    DIR *d = opendir(test_dir);
    if (!d) return;
    char p[TEST_PATH_MAX];
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && unlink(test_path(p, e->d_name)))
            rmdir(p);
    closedir(d);
    if (rmdir(test_dir) != 0) fprintf(stderr, "cannot remove %s: %s\n", test_dir, strerror(errno));
}

/* The whole file, malloc'd and NUL-terminated (so text can be read as a string); *n its
 * length without the NUL. NULL if it cannot be read. */
static inline void *test_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        char *bigger = realloc(buf, cap * 2 + 1);
        if (!bigger) free(buf);
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (buf && failed) free(buf), buf = NULL;
    if (buf) buf[len] = '\0';
    *n = len;
    return buf;
}

/* Writes n bytes to path (replacing it); 1 on success. */
static inline int test_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static inline int test_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Entries of dir whose name holds ".tmp.", i.e. leftovers of caps_atomic_open; -1 if dir
 * cannot be read. */
static inline int test_count_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int count = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) count++;
    closedir(d);
    return count;
}

/* A full disk, played by the file-size limit: from test_disk_full_begin until
 * test_disk_full_end, a write past `bytes` of a file fails with EFBIG ("File too large"),
 * SIGXFSZ being ignored so that it does not kill the process. begin returns 0 (errno set)
 * if the limit could not be set. */
typedef struct {
    struct rlimit saved;
    struct sigaction prev;
    int set;
} test_disk_full;

static inline int test_disk_full_begin(test_disk_full *d, rlim_t bytes) {
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGXFSZ, &ign, &d->prev);
    d->set = 0;
    if (getrlimit(RLIMIT_FSIZE, &d->saved) != 0) return 0;
    struct rlimit lim = d->saved;
    lim.rlim_cur = bytes;
    d->set = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    return d->set;
}

static inline void test_disk_full_end(test_disk_full *d) {
    if (d->set) setrlimit(RLIMIT_FSIZE, &d->saved);
    sigaction(SIGXFSZ, &d->prev, NULL);
}

#endif /* CAPS_TEST_FILES_H */
