/* log_format.h: klua's log sinks (text lines and JSON lines, for
 * kl_log_set_sink and --log-format) and structured log fields: the runtime
 * attaches controller, object ("kind ns/name") and reconcile id to a line
 * with kl_logkv. Values of fields whose name contains token, password,
 * secret or authorization are written as "[REDACTED]", and "Bearer <x>" in
 * any message or value is cut to "Bearer [REDACTED]".
 * Thread-safety: everything may be called from any thread; fields travel
 * from kl_logkv to the sink through a thread-local slot. */
#ifndef KL_LOG_FORMAT_H
#define KL_LOG_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "kl.h"

enum { KL_LOG_FORMAT_TEXT = 0, KL_LOG_FORMAT_JSON = 1 };

/* Parses a --log-format value ("text" or "json"). Returns 0 or KL_EINVAL. */
int kl_log_format_parse(const char *s, int *format);

/* Installs the sink for format, writing one line per record to out
 * (NULL: stderr) and flushing it. Text lines look like
 *   2026-11-24T02:40:50.323Z info  controller: synced controller=web object="ConfigMap default/a"
 * and JSON lines like
 *   {"ts":"2026-11-24T02:40:50.323Z","level":"info","logger":"controller","msg":"synced","controller":"web","object":"ConfigMap default/a"}
 * Field values are JSON strings; in text, values with spaces, quotes, '='
 * or control characters are quoted. Control characters in messages are
 * escaped, so one record is always one line. */
void kl_log_use_format(int format, FILE *out);

/* The sinks themselves (ud: the FILE *, NULL for stderr), for callers that
 * wrap them. */
void kl_log_sink_text(int level, const char *module, const char *msg,
                      void *ud);
void kl_log_sink_json(int level, const char *module, const char *msg,
                      void *ud);

/* One field; key and value are borrowed for the call. */
typedef struct kl_log_field {
  const char *key;
  const char *value;
} kl_log_field;

/* Logs msg (printf-formatted) with fields at level for module. With a
 * klua sink installed the fields reach it as fields; with any other sink
 * they are appended to the message as key=value. Nothing is formatted when
 * level is disabled. */
void kl_logf(int level, const char *module, const kl_log_field *fields,
             size_t nfields, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Convenience: key/value string pairs, e.g.
 *   kl_logkv(KL_LOG_INFO, "controller", "reconciled",
 *            "controller", name, "object", "ConfigMap default/a");
 * (msg is a plain string here, not a format). */
void kl_logkv_(int level, const char *module, const char *msg,
               const char *const *kv, size_t n);
#define kl_logkv(level, module, msg, ...)                                     \
  kl_logkv_((level), (module), (msg), (const char *const[]){__VA_ARGS__},     \
            sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

/* True when a field with this name is redacted (exposed for tests and for
 * other formatters, e.g. the Lua log backend). */
bool kl_log_is_secret_key(const char *key);

/* Appends s to out with "Bearer <token>" occurrences redacted. */
void kl_log_redact_append(kl_buf *out, const char *s);

#endif
