/* kl.h: what every klua module shares: error codes, allocation that aborts
 * on out-of-memory, a growable byte buffer, and the log sink.
 * Thread-safety: all functions here may be called from any thread; a kl_buf
 * belongs to whoever holds it. */
#ifndef KL_H
#define KL_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#define KL_VERSION "0.1.0"

/* Error codes: functions return 0 or one of these (negative). "Not found"
 * is an ordinary result (a NULL or a flag), never an error code. */
enum {
  KL_OK = 0,
  KL_EINVAL = -1,     /* bad argument or bad object (e.g. no metadata.name) */
  KL_EJSON = -2,      /* malformed JSON */
  KL_ENOMEM = -3,     /* kept for API completeness; allocation aborts */
  KL_ECLOSED = -4,    /* queue or store closed */
  KL_EEXIST = -5,     /* already exists */
  KL_ENOENT = -6,     /* no such thing where one was required */
  KL_EIO = -7,        /* I/O or transport failure */
  KL_EPROTO = -8,     /* the peer broke the protocol */
  KL_ETIMEDOUT = -9,
  KL_EGONE = -10,     /* 410: resourceVersion too old / continue expired */
  KL_EHTTP = -11,     /* an HTTP error status; details in the caller's Status */
  KL_ELUA = -12,      /* a Lua error */
  KL_EAGAIN = -13,    /* try again (retryable) */
};

/* Returns a static string for an error code. */
const char *kl_strerror(int err);

/* Allocation: never returns NULL; on out-of-memory prints and aborts. */
void *kl_malloc(size_t n);
void *kl_calloc(size_t count, size_t n);
void *kl_realloc(void *p, size_t n);
char *kl_strdup(const char *s);
char *kl_strndup(const char *s, size_t n);
/* printf into a NEW string; free() it. */
char *kl_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer, always NUL-terminated after its len bytes. */
typedef struct kl_buf {
  char *data;
  size_t len;
  size_t cap;
} kl_buf;

#define KL_BUF_INIT {NULL, 0, 0}
void kl_buf_reserve(kl_buf *b, size_t extra);
void kl_buf_add(kl_buf *b, const void *p, size_t n);
void kl_buf_addc(kl_buf *b, char c);
void kl_buf_adds(kl_buf *b, const char *s);
void kl_buf_addf(kl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the bytes to the caller (free() them) and resets the buffer. */
char *kl_buf_detach(kl_buf *b, size_t *len);
void kl_buf_free(kl_buf *b);

/* Monotonic clock in seconds and in nanoseconds. */
double kl_now(void);
uint64_t kl_now_ns(void);

/* Logging. Levels: 0 error, 1 warn, 2 info, 3 debug, 4 trace.
 * The default sink writes text lines to stderr; kl_log_set_sink replaces it
 * (the CLI installs a JSON sink for --log-format json). Thread-safe. Callers
 * must never pass secrets (tokens, keys, certificates) in msg. */
enum { KL_LOG_ERROR = 0, KL_LOG_WARN, KL_LOG_INFO, KL_LOG_DEBUG, KL_LOG_TRACE };
typedef void (*kl_log_sink)(int level, const char *module, const char *msg,
                            void *ud);
void kl_log_set_level(int level);
int kl_log_get_level(void);
void kl_log_set_sink(kl_log_sink sink, void *ud);
void kl_log(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define kl_log_enabled(level) ((level) <= kl_log_get_level())

#endif
