/* kl.c: shared helpers (errors, allocation, buffers, clock, logging). */
#include "kl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *kl_strerror(int err) {
  switch (err) {
  case KL_OK: return "ok";
  case KL_EINVAL: return "invalid argument";
  case KL_EJSON: return "malformed JSON";
  case KL_ENOMEM: return "out of memory";
  case KL_ECLOSED: return "closed";
  case KL_EEXIST: return "already exists";
  case KL_ENOENT: return "not found";
  case KL_EIO: return "I/O error";
  case KL_EPROTO: return "protocol error";
  case KL_ETIMEDOUT: return "timed out";
  case KL_EGONE: return "gone (resource version too old)";
  case KL_EHTTP: return "HTTP error";
  case KL_ELUA: return "Lua error";
  case KL_EAGAIN: return "try again";
  default: return "unknown error";
  }
}

static void oom(size_t n) {
  fprintf(stderr, "klua: out of memory allocating %zu bytes\n", n);
  abort();
}

void *kl_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) oom(n);
  return p;
}

void *kl_calloc(size_t count, size_t n) {
  void *p = calloc(count ? count : 1, n ? n : 1);
  if (!p) oom(count * n);
  return p;
}

void *kl_realloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) oom(n);
  return q;
}

char *kl_strdup(const char *s) { return kl_strndup(s, strlen(s)); }

char *kl_strndup(const char *s, size_t n) {
  char *p = kl_malloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *kl_sprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) oom(0);
  va_end(ap);
  return s;
}

void kl_buf_reserve(kl_buf *b, size_t extra) {
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  b->data = kl_realloc(b->data, cap);
  b->cap = cap;
  b->data[b->len] = '\0'; /* the buffer is a C string from its first byte */
}

void kl_buf_add(kl_buf *b, const void *p, size_t n) {
  kl_buf_reserve(b, n);
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void kl_buf_addc(kl_buf *b, char c) {
  kl_buf_reserve(b, 1);
  b->data[b->len++] = c;
  b->data[b->len] = '\0';
}

void kl_buf_adds(kl_buf *b, const char *s) { kl_buf_add(b, s, strlen(s)); }

void kl_buf_addf(kl_buf *b, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n > 0) {
    kl_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    b->len += (size_t)n;
  }
  va_end(ap2);
}

char *kl_buf_detach(kl_buf *b, size_t *len) {
  if (!b->data) kl_buf_reserve(b, 0);
  char *p = b->data;
  if (len) *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

void kl_buf_free(kl_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

uint64_t kl_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double kl_now(void) { return (double)kl_now_ns() / 1e9; }

static atomic_int log_level = KL_LOG_INFO;
static kl_log_sink log_sink;
static void *log_sink_ud;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

void kl_log_set_level(int level) { atomic_store(&log_level, level); }
int kl_log_get_level(void) { return atomic_load(&log_level); }

void kl_log_set_sink(kl_log_sink sink, void *ud) {
  pthread_mutex_lock(&log_mu);
  log_sink = sink;
  log_sink_ud = ud;
  pthread_mutex_unlock(&log_mu);
}

static const char *level_names[] = {"error", "warn", "info", "debug", "trace"};

void kl_log(int level, const char *module, const char *fmt, ...) {
  if (level > atomic_load(&log_level)) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&log_mu);
  if (log_sink) {
    log_sink(level, module, msg, log_sink_ud);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: %s\n",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
            tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            level_names[level < 0 ? 0 : level > 4 ? 4 : level], module, msg);
  }
  pthread_mutex_unlock(&log_mu);
}
