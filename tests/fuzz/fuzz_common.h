/* fuzz_common.h: small helpers shared by the libFuzzer targets in
 * tests/fuzz/: silencing klua's log sink, NUL-terminated copies of the
 * input, splitting one input into several documents, and a check macro
 * that aborts (so libFuzzer records the input) when an invariant breaks. */
#ifndef KL_FUZZ_COMMON_H
#define KL_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kl.h"

/* An invariant of the code under test: abort with a message when false. */
#define FZ_ASSERT(cond)                                                        \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond,            \
              __FILE__, __LINE__);                                             \
      abort();                                                                 \
    }                                                                          \
  } while (0)

static void fz_quiet_sink(int level, const char *module, const char *msg,
                          void *ud) {
  (void)level, (void)module, (void)msg, (void)ud;
}

/* Call at the start of every input: drops log output (cheap after the first
 * call). */
static inline void fz_quiet(void) {
  static int done;
  if (!done) {
    kl_log_set_sink(fz_quiet_sink, NULL);
    kl_log_set_level(KL_LOG_ERROR);
    done = 1;
  }
}

/* A NEW NUL-terminated copy of data (free it). */
static inline char *fz_cstr(const uint8_t *data, size_t n) {
  char *s = kl_malloc(n + 1);
  if (n) memcpy(s, data, n);
  s[n] = '\0';
  return s;
}

/* Splits [data, data+n) at the first NUL byte: *a is what precedes it, *b
 * what follows (empty when there is none). Both point into data. */
static inline void fz_split(const uint8_t *data, size_t n, const char **a,
                            size_t *an, const char **b, size_t *bn) {
  const uint8_t *z = memchr(data, 0, n);
  *a = (const char *)data;
  if (!z) {
    *an = n;
    *b = (const char *)data + n;
    *bn = 0;
    return;
  }
  *an = (size_t)(z - data);
  *b = (const char *)z + 1;
  *bn = n - *an - 1;
}

/* True when cJSON_Compare can see j as equal to a copy of itself: it never
 * can when j holds an infinite number (1e400 parses as inf), so semantic
 * comparisons are skipped for such documents. (Comparing j with j itself
 * short-cuts on the pointer, hence the copy.) */
static inline int fz_comparable(const cJSON *j) {
  if (!j) return 0;
  cJSON *c = cJSON_Duplicate(j, 1);
  int ok = cJSON_Compare(j, c, 1);
  cJSON_Delete(c);
  return ok;
}

#endif
