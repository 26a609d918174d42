/*
 * test_class_names.c: the names of a model's classes (src/class_names.c): the rule a name
 * follows (1 to 127 bytes, no control characters, other bytes as they are), setting and
 * clearing them on a model, a refused set leaving the names as they were, and names files:
 * "\n" and "\r\n" lines, a byte order mark, blank lines at the end, and every kind of bad
 * file refused with the exact "path:line: problem" message. Model files with names are
 * tests/test_checkpoint.c's.
 */
#include <stdint.h>
#include <sys/stat.h>

#include "capsnet.h"
#include "test.h"
#include "test_files.h"

/* 10x10 image, Conv1 4 @ 3x3, PrimaryCaps 3 types x 4D, 4 classes x 5D, decoder 8 -> 12. */
static capsnet *tiny_model(void) {
    caps_config c = {10, 1, 4, 3, 1, 3, 4, 3, 2, 4, 5, 3, 8, 12, CAPS_ROUTING_DYNAMIC};
    capsnet *m = NULL;
    caps_error err;
    if (capsnet_create(&m, &c, 1, NULL, &err) != CAPS_OK) {
        fprintf(stderr, "capsnet_create: %s\n", err.msg);
        return NULL;
    }
    return m;
}

/* The model's names are exactly want[0..3] (want NULL: it has none). */
static int has_names(const capsnet *m, const char *const *want) {
    for (int k = 0; k < 4; k++) {
        const char *got = caps_class_name(m, k);
        if (want ? !got || strcmp(got, want[k]) != 0 : got != NULL) return 0;
    }
    return 1;
}

/* A string of n copies of c (n < 200). */
static const char *repeat(char c, size_t n) {
    static char buf[200];
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

/* ---- on a model */

TEST(set_get_and_clear) {
    capsnet *m = tiny_model();
    if (!m) {
        EXPECT(0, "cannot create the model");
        return;
    }
    EXPECT(caps_class_name(m, 0) == NULL, "a new model has names");
    /* UTF-8 and every printable ASCII byte pass through; 127 bytes is the longest. */
    char longest[128];
    memcpy(longest, repeat('x', 127), 128);
    const char *names[4] = {"T-shirt/top", "Sandal \xc3\xa9t\xc3\xa9",
                            " ~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}", longest};
    caps_error err;
    int rc = caps_set_class_names(m, 4, names, &err);
    EXPECT(rc == CAPS_OK, "set: %s", err.msg);
    EXPECT(has_names(m, names), "the names read back differ");
    EXPECT(caps_class_name(m, 0) != names[0], "the model keeps the caller's strings, not copies");
    EXPECT(caps_class_name(m, -1) == NULL && caps_class_name(m, 4) == NULL,
           "a class out of range has a name");
    const char *other[4] = {"a", "b", "c", "d"};
    EXPECT(caps_set_class_names(m, 4, other, &err) == CAPS_OK && has_names(m, other),
           "names set again: %s", err.msg);
    EXPECT(caps_set_class_names(m, 0, NULL, &err) == CAPS_OK && has_names(m, NULL),
           "n = 0 removes the names: %s", err.msg);
    EXPECT(caps_set_class_names(m, 0, NULL, &err) == CAPS_OK, "removing none: %s", err.msg);
    capsnet_free(m); /* with names: ASan's leak check sees them freed */
    m = tiny_model();
    if (m) EXPECT(caps_set_class_names(m, 4, names, &err) == CAPS_OK, "%s", err.msg);
    capsnet_free(m);
}

/* set refuses names[] with code CAPS_ERR_ARG and phrase, leaving the names "a".."d". */
static void expect_set_refused(int n, const char *const *names, const char *phrase) {
    capsnet *m = tiny_model();
    if (!m) {
        EXPECT(0, "cannot create the model");
        return;
    }
    const char *before[4] = {"a", "b", "c", "d"};
    caps_error err;
    EXPECT(caps_set_class_names(m, 4, before, &err) == CAPS_OK, "%s", err.msg);
    err.msg[0] = '\0';
    int rc = caps_set_class_names(m, n, names, &err);
    EXPECT(rc == CAPS_ERR_ARG && strstr(err.msg, phrase), "code %d (expected %d), \"%s\" "
           "(expected \"%s\")", rc, CAPS_ERR_ARG, err.msg, phrase);
    EXPECT(has_names(m, before), "a refused set changed the names");
    capsnet_free(m);
}

TEST(set_refuses_bad_names) {
    const char *three[3] = {"a", "b", "c"};
    expect_set_refused(3, three, "class names: wrong count (expected 4, one per class, or 0 "
                                 "for none, got 3)");
    const char *five[5] = {"a", "b", "c", "d", "e"};
    expect_set_refused(5, five, "got 5)");
    expect_set_refused(-1, NULL, "got -1)");
    char too_long[141];
    memcpy(too_long, repeat('y', 140), 141);
    const char *lng[4] = {"a", "b", "c", too_long};
    expect_set_refused(4, lng, "class 3: name too long (expected at most 127 bytes, got 140)");
    char just_over[129];
    memcpy(just_over, repeat('y', 128), 129);
    const char *over[4] = {just_over, "b", "c", "d"};
    expect_set_refused(4, over, "class 0: name too long (expected at most 127 bytes, got 128)");
    const char *empty[4] = {"a", "", "c", "d"};
    expect_set_refused(4, empty, "class 1: empty name (expected 1 to 127 bytes)");
    const char *tab[4] = {"a", "b", "c\td", "d"};
    expect_set_refused(4, tab, "class 2: control character 0x09 at byte 2 (expected none: no "
                               "byte below 0x20, no 0x7f)");
    const char *newline[4] = {"a\n", "b", "c", "d"};
    expect_set_refused(4, newline, "class 0: control character 0x0a at byte 2");
    const char *del[4] = {"a", "b", "c", "\x7f"};
    expect_set_refused(4, del, "class 3: control character 0x7f at byte 1");
    const char *esc[4] = {"a", "\x1b[31mred", "c", "d"};
    expect_set_refused(4, esc, "class 1: control character 0x1b at byte 1");
}

/* ---- names files */

/* Writes text (len bytes) to name and reads it as a names file; returns the code. */
static int read_names(const char *name, const char *text, size_t len, int *n, char ***names,
                      caps_error *err) {
    char p[TEST_PATH_MAX];
    test_path(p, name);
    if (!test_write_file(p, text, len)) {
        fprintf(stderr, "cannot write %s\n", p);
        return -1;
    }
    return caps_class_names_read(p, n, names, err);
}

/* The file reads as exactly the names want[0..count). */
static void expect_names(const char *name, const char *text, size_t len, int count,
                         const char *const *want) {
    int n = -1;
    char **names = NULL;
    caps_error err = {0};
    int rc = read_names(name, text, len, &n, &names, &err);
    EXPECT(rc == CAPS_OK, "%s: %s", name, err.msg);
    EXPECT(rc != CAPS_OK || n == count, "%s: %d names (expected %d)", name, n, count);
    for (int k = 0; rc == CAPS_OK && k < n && k < count; k++)
        EXPECT(strcmp(names[k], want[k]) == 0, "%s: name %d \"%s\" (expected \"%s\")", name, k,
               names[k], want[k]);
    caps_class_names_free(n, names);
}

/* The file is refused with code and "<path>:<phrase>" (phrase starting with the line number,
 * or ": " for a message about the whole file); *n and *names stay 0 and NULL. */
static void expect_file_refused(const char *name, const char *text, size_t len, int code,
                                const char *phrase) {
    int n = -1;
    char **names = (char **)(void *)&n;
    caps_error err = {0};
    char p[TEST_PATH_MAX], want[TEST_PATH_MAX + 256];
    int rc = read_names(name, text, len, &n, &names, &err);
    snprintf(want, sizeof want, "%s%s", test_path(p, name), phrase);
    EXPECT(rc == code && strstr(err.msg, want), "%s: code %d (expected %d), \"%s\" (expected "
           "\"%s\")", name, rc, code, err.msg, want);
    EXPECT(n == 0 && names == NULL, "%s: a refused file left %d names behind", name, n);
}

TEST(names_files_read) {
    const char *fashion[4] = {"T-shirt/top", "Trouser", "Pullover", "Dress"};
    expect_names("unix.txt", "T-shirt/top\nTrouser\nPullover\nDress\n", 35, 4, fashion);
    expect_names("no-last-newline.txt", "T-shirt/top\nTrouser\nPullover\nDress", 34, 4, fashion);
    const char dos[] = "T-shirt/top\r\nTrouser\r\nPullover\r\nDress\r\n";
    expect_names("dos.txt", dos, sizeof dos - 1, 4, fashion);
    /* CIFAR-10's batches.meta.txt ends with blank lines. */
    const char cifar[] = "airplane\nautomobile\n\n\n";
    const char *two[2] = {"airplane", "automobile"};
    expect_names("trailing-blank.txt", cifar, sizeof cifar - 1, 2, two);
    const char crlf_blank[] = "airplane\r\nautomobile\r\n\r\n";
    expect_names("trailing-blank-dos.txt", crlf_blank, sizeof crlf_blank - 1, 2, two);
    const char bom[] = "\xef\xbb\xbf" "airplane\nautomobile\n";
    expect_names("bom.txt", bom, sizeof bom - 1, 2, two);
    const char *utf8[2] = {"caf\xc3\xa9", " spaced  out "};
    expect_names("utf8.txt", "caf\xc3\xa9\n spaced  out \n", 20, 2, utf8);
    const char *one[1] = {"x"};
    expect_names("one.txt", "x", 1, 1, one);
    /* 127 bytes is a name; the line after it is read as the next name. */
    char buf[300];
    snprintf(buf, sizeof buf, "%s\nz\n", repeat('q', 127));
    const char *longest[2] = {repeat('q', 127), "z"};
    char first[128];
    memcpy(first, longest[0], 128);
    longest[0] = first;
    expect_names("longest.txt", buf, strlen(buf), 2, longest);
}

TEST(names_files_refused) {
    expect_file_refused("blank.txt", "a\nb\n\nc\n", 7, CAPS_ERR_FORMAT,
                        ":3: blank line (expected a name on every line up to the last name)");
    expect_file_refused("blank-dos.txt", "a\r\n\r\nc\r\n", 9, CAPS_ERR_FORMAT, ":2: blank line");
    char buf[400];
    snprintf(buf, sizeof buf, "a\n%s\nc\n", repeat('w', 140));
    expect_file_refused("long.txt", buf, strlen(buf), CAPS_ERR_FORMAT,
                        ":2: name too long (expected at most 127 bytes, got 140)");
    snprintf(buf, sizeof buf, "%s", repeat('w', 128));
    expect_file_refused("long-last.txt", buf, 128, CAPS_ERR_FORMAT,
                        ":1: name too long (expected at most 127 bytes, got 128)");
    expect_file_refused("tab.txt", "a\nb\nc\nd\te\n", 10, CAPS_ERR_FORMAT,
                        ":4: control character 0x09 at byte 2 (expected none: no byte below "
                        "0x20, no 0x7f)");
    expect_file_refused("nul.txt", "a\nb\0c\n", 6, CAPS_ERR_FORMAT,
                        ":2: control character 0x00 at byte 2");
    /* A lone '\r' is not a line end: a file of old Mac line ends is one line. */
    expect_file_refused("cr.txt", "a\rb\rc\r", 6, CAPS_ERR_FORMAT,
                        ":1: control character 0x0d at byte 2");
    expect_file_refused("empty.txt", "", 0, CAPS_ERR_FORMAT,
                        ":1: no class names (expected one name per line, got an empty file)");
    expect_file_refused("blanks.txt", "\n\r\n\n", 4, CAPS_ERR_FORMAT,
                        ":1: no class names (expected one name per line, got only blank lines)");
    expect_file_refused("bom-only.txt", "\xef\xbb\xbf", 3, CAPS_ERR_FORMAT,
                        ":1: no class names (expected one name per line, got an empty file)");
    char p[TEST_PATH_MAX];
    test_path(p, "no-such-file.txt");
    int n = -1;
    char **names = NULL;
    caps_error err = {0};
    int rc = caps_class_names_read(p, &n, &names, &err);
    EXPECT(rc == CAPS_ERR_IO && strstr(err.msg, p) &&
               strstr(err.msg, "cannot open (No such file or directory)"),
           "code %d: %s", rc, err.msg);
    EXPECT(n == 0 && names == NULL, "a missing file left names behind");
    test_path(p, "folder");
    EXPECT(mkdir(p, 0700) == 0, "mkdir %s: %s", p, strerror(errno));
    rc = caps_class_names_read(p, &n, &names, &err);
    EXPECT(rc == CAPS_ERR_IO && strstr(err.msg, p) && strstr(err.msg, "Is a directory"),
           "code %d: %s", rc, err.msg);
}

/* The bounds: 65536 names, 1 MiB. */
TEST(names_files_bounds) {
    size_t max_names = 65536, len = 2 * (max_names + 1);
    char *buf = malloc(((size_t)1 << 20) + 2);
    if (!buf) {
        EXPECT(0, "out of memory");
        return;
    }
    for (size_t k = 0; k < max_names + 1; k++) buf[2 * k] = 'a', buf[2 * k + 1] = '\n';
    int n = 0;
    char **names = NULL;
    caps_error err = {0};
    int rc = read_names("max.txt", buf, 2 * max_names, &n, &names, &err);
    EXPECT(rc == CAPS_OK && n == 65536 && names && strcmp(names[65535], "a") == 0,
           "65536 names: code %d, %d names: %s", rc, n, err.msg);
    caps_class_names_free(n, names);
    /* One more name, and blank lines after the last do not count. */
    expect_file_refused("too-many.txt", buf, len, CAPS_ERR_FORMAT,
                        ":65537: too many class names (expected at most 65536)");
    memset(buf + len, '\n', 10);
    expect_file_refused("too-many-blank.txt", buf, len + 10, CAPS_ERR_FORMAT,
                        ":65537: too many class names");
    buf[2 * max_names] = '\n';
    rc = read_names("max-blank.txt", buf, 2 * max_names + 1, &n, &names, &err);
    EXPECT(rc == CAPS_OK && n == 65536, "65536 names and a blank line: code %d: %s", rc, err.msg);
    caps_class_names_free(n, names);
    /* 1 MiB is the most; the byte after it is refused whatever it is. */
    memset(buf, 'b', ((size_t)1 << 20) + 1);
    for (size_t k = 100; k < ((size_t)1 << 20); k += 101) buf[k] = '\n';
    rc = read_names("1mib.txt", buf, (size_t)1 << 20, &n, &names, &err);
    EXPECT(rc == CAPS_OK && n > 10000, "a 1 MiB file: code %d: %s", rc, err.msg);
    caps_class_names_free(n, names);
    expect_file_refused("big.txt", buf, ((size_t)1 << 20) + 1, CAPS_ERR_FORMAT,
                        ": too large for a names file (expected at most 1048576 bytes)");
    free(buf);
}

/* What caps_class_names_read returns, caps_set_class_names takes. */
TEST(names_file_onto_a_model) {
    capsnet *m = tiny_model();
    if (!m) {
        EXPECT(0, "cannot create the model");
        return;
    }
    int n = 0;
    char **names = NULL;
    caps_error err = {0};
    int rc = read_names("four.txt", "zero\r\none\r\ntwo\r\nthree\r\n", 23, &n, &names, &err);
    EXPECT(rc == CAPS_OK && n == 4, "read: %s", err.msg);
    if (rc == CAPS_OK) {
        rc = caps_set_class_names(m, n, (const char *const *)names, &err);
        const char *want[4] = {"zero", "one", "two", "three"};
        EXPECT(rc == CAPS_OK && has_names(m, want), "set: %s", err.msg);
    }
    caps_class_names_free(n, names);
    rc = read_names("three.txt", "zero\none\ntwo\n", 13, &n, &names, &err);
    EXPECT(rc == CAPS_OK && n == 3, "read: %s", err.msg);
    if (rc == CAPS_OK)
        EXPECT(caps_set_class_names(m, n, (const char *const *)names, &err) == CAPS_ERR_ARG &&
                   strstr(err.msg, "wrong count (expected 4"),
               "three names for four classes: %s", err.msg);
    caps_class_names_free(n, names);
    capsnet_free(m);
}

int main(void) {
    if (!test_dir_create("class-names")) return 1;
    RUN(set_get_and_clear);
    RUN(set_refuses_bad_names);
    RUN(names_files_read);
    RUN(names_files_refused);
    RUN(names_files_bounds);
    RUN(names_file_onto_a_model);
    test_dir_remove();
    return TEST_SUMMARY();
}
