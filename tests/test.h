/*
 * test.h: the tiny test harness. A test file defines TEST(name) functions and a main that
 * calls RUN(name) for each, then returns TEST_SUMMARY(). A test fails when any EXPECT in it
 * fails; the summary prints "<file>: N passed, N failed" and the exit status is non-zero on
 * any failure. tests/run.sh adds up the lines of all test binaries.
 */
#ifndef CAPS_TEST_H
#define CAPS_TEST_H

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static int test_passed_count, test_failed_count, test_current_failed;
static const char *test_current_name = "";

#define TEST(name) static void name(void)

#define RUN(name)                                                           \
    do {                                                                    \
        test_current_name = #name;                                          \
        test_current_failed = 0;                                            \
        name();                                                             \
        if (test_current_failed) {                                          \
            test_failed_count++;                                            \
            fprintf(stderr, "  FAIL %s\n", #name);                          \
        } else {                                                            \
            test_passed_count++;                                            \
            if (getenv("CAPS_TEST_VERBOSE")) fprintf(stderr, "  ok   %s\n", #name); \
        }                                                                   \
    } while (0)

/* Records a failure with the location and a printf-style explanation. */
#define EXPECT(cond, ...)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            test_current_failed = 1;                                                   \
            fprintf(stderr, "%s:%d: %s: expected %s: ", __FILE__, __LINE__,            \
                    test_current_name, #cond);                                         \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
        }                                                                              \
    } while (0)

/* |a - b| <= atol + rtol * max(|a|, |b|), and both finite. */
static inline int test_close(double a, double b, double rtol, double atol) {
    if (!isfinite(a) || !isfinite(b)) return 0;
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return fabs(a - b) <= atol + rtol * m;
}

/* For a test binary whose subject is not here (a GPU, say): returns 0 from main after
 * "<file>: 0 passed, 0 failed, n skipped (why)"; tests/run.sh counts them as skipped. */
#define TEST_SKIP_ALL(n, why) \
    (printf("%s: 0 passed, 0 failed, %d skipped (%s)\n", __FILE__, (int)(n), (why)), 0)

#define TEST_SUMMARY()                                                                     \
    (printf("%s: %d passed, %d failed\n", __FILE__, test_passed_count, test_failed_count), \
     test_failed_count ? 1 : 0)

#endif /* CAPS_TEST_H */
