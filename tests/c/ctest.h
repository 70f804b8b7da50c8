/* ctest.h: the tiny harness of klua's C test programs. Each program defines
 * tests with TEST(name), runs them from main with RUN(name), and ends with
 * return ctest_summary(); which prints "# N passed, N failed" (read by
 * scripts/run-tests.sh) and returns non-zero on failure. */
#ifndef KL_CTEST_H
#define KL_CTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ctest_passed, ctest_failed, ctest_cur_failed;
static const char *ctest_cur;

#define TEST(name) static void test_##name(void)

#define RUN(name)                                                             \
  do {                                                                        \
    ctest_cur = #name;                                                        \
    ctest_cur_failed = 0;                                                     \
    test_##name();                                                            \
    if (ctest_cur_failed) {                                                   \
      ctest_failed++;                                                         \
      printf("not ok - %s\n", #name);                                         \
    } else {                                                                  \
      ctest_passed++;                                                         \
      printf("ok - %s\n", #name);                                             \
    }                                                                         \
    fflush(stdout);                                                           \
  } while (0)

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      printf("  %s:%d: %s: check failed: %s\n", __FILE__, __LINE__,          \
             ctest_cur, #cond);                                               \
      ctest_cur_failed = 1;                                                   \
    }                                                                         \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                    \
  do {                                                                        \
    long long ca_ = (long long)(a), cb_ = (long long)(b);                     \
    if (ca_ != cb_) {                                                         \
      printf("  %s:%d: %s: %s == %lld, expected %s == %lld\n", __FILE__,      \
             __LINE__, ctest_cur, #a, ca_, #b, cb_);                          \
      ctest_cur_failed = 1;                                                   \
    }                                                                         \
  } while (0)

#define CHECK_EQ_STR(a, b)                                                    \
  do {                                                                        \
    const char *ca_ = (a), *cb_ = (b);                                        \
    if (!ca_ || !cb_ || strcmp(ca_, cb_) != 0) {                              \
      printf("  %s:%d: %s: %s == \"%s\", expected \"%s\"\n", __FILE__,        \
             __LINE__, ctest_cur, #a, ca_ ? ca_ : "(null)",                   \
             cb_ ? cb_ : "(null)");                                           \
      ctest_cur_failed = 1;                                                   \
    }                                                                         \
  } while (0)

static inline int ctest_summary(void) {
  printf("# %d passed, %d failed\n", ctest_passed, ctest_failed);
  return ctest_failed ? 1 : 0;
}

#endif
