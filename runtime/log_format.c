/* log_format.c: text and JSON log sinks, structured fields, redaction (see
 * log_format.h). */
#include "log_format.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "json.h"

static _Thread_local const kl_log_field *tls_fields;
static _Thread_local size_t tls_nfields;
static atomic_int klua_sink_installed;

static const char *level_name(int level) {
  static const char *names[] = {"error", "warn", "info", "debug", "trace"};
  return names[level < 0 ? 0 : level > 4 ? 4 : level];
}

int kl_log_format_parse(const char *s, int *format) {
  if (s && strcmp(s, "text") == 0) {
    *format = KL_LOG_FORMAT_TEXT;
    return 0;
  }
  if (s && strcmp(s, "json") == 0) {
    *format = KL_LOG_FORMAT_JSON;
    return 0;
  }
  return KL_EINVAL;
}

void kl_log_use_format(int format, FILE *out) {
  kl_log_set_sink(format == KL_LOG_FORMAT_JSON ? kl_log_sink_json
                                               : kl_log_sink_text,
                  out);
  atomic_store(&klua_sink_installed, 1);
}

bool kl_log_is_secret_key(const char *key) {
  static const char *words[] = {"token", "password", "secret",
                                "authorization"};
  if (!key) return false;
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strcasestr(key, words[i])) return true;
  return false;
}

void kl_log_redact_append(kl_buf *out, const char *s) {
  const char *p = s;
  for (;;) {
    const char *b = strcasestr(p, "bearer ");
    if (!b) break;
    kl_buf_add(out, p, (size_t)(b - p) + 7);
    p = b + 7;
    while (*p == ' ') kl_buf_addc(out, *p++);
    if (*p && *p != '"' && *p != '\n') {
      kl_buf_adds(out, "[REDACTED]");
      while (*p && *p != ' ' && *p != '"' && *p != '\n' && *p != ',')
        p++;
    }
  }
  kl_buf_adds(out, p);
}

static void timestamp(char *buf, size_t n) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + k, n - k, ".%03dZ", (int)(ts.tv_nsec / 1000000 % 1000));
}

/* Redacted copy of a field's value (NEW in tmp; returns tmp->data). */
static const char *field_value(const kl_log_field *f, kl_buf *tmp) {
  tmp->len = 0;
  if (kl_log_is_secret_key(f->key))
    kl_buf_adds(tmp, "[REDACTED]");
  else
    kl_log_redact_append(tmp, f->value ? f->value : "");
  kl_buf_addc(tmp, 0);
  return tmp->data;
}

/* Text: control characters as \n, \t, \xNN. */
static void add_escaped(kl_buf *out, const char *s, bool quote) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '\n')
      kl_buf_adds(out, "\\n");
    else if (*p == '\t')
      kl_buf_adds(out, "\\t");
    else if (*p == '\r')
      kl_buf_adds(out, "\\r");
    else if (*p < 0x20 || *p == 0x7f)
      kl_buf_addf(out, "\\x%02x", *p);
    else if (quote && (*p == '"' || *p == '\\')) {
      kl_buf_addc(out, '\\');
      kl_buf_addc(out, (char)*p);
    } else
      kl_buf_addc(out, (char)*p);
  }
}

static bool needs_quotes(const char *v) {
  if (!*v) return true;
  for (const unsigned char *p = (const unsigned char *)v; *p; p++)
    if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
      return true;
  return false;
}

static void write_line(FILE *f, kl_buf *line) {
  kl_buf_addc(line, '\n');
  fwrite(line->data, 1, line->len, f);
  fflush(f);
}

static void append_text_fields(kl_buf *line, const kl_log_field *fields,
                               size_t n) {
  kl_buf tmp = KL_BUF_INIT;
  for (size_t i = 0; i < n; i++) {
    if (!fields[i].key) continue;
    const char *v = field_value(&fields[i], &tmp);
    kl_buf_addc(line, ' ');
    add_escaped(line, fields[i].key, false);
    kl_buf_addc(line, '=');
    if (needs_quotes(v)) {
      kl_buf_addc(line, '"');
      add_escaped(line, v, true);
      kl_buf_addc(line, '"');
    } else {
      kl_buf_adds(line, v);
    }
  }
  kl_buf_free(&tmp);
}

void kl_log_sink_text(int level, const char *module, const char *msg,
                      void *ud) {
  FILE *f = ud ? ud : stderr;
  char ts[40];
  timestamp(ts, sizeof ts);
  kl_buf line = KL_BUF_INIT, red = KL_BUF_INIT;
  kl_buf_addf(&line, "%s %-5s %s: ", ts, level_name(level),
              module ? module : "");
  kl_log_redact_append(&red, msg ? msg : "");
  add_escaped(&line, red.data ? red.data : "", false);
  append_text_fields(&line, tls_fields, tls_nfields);
  write_line(f, &line);
  kl_buf_free(&line);
  kl_buf_free(&red);
}

void kl_log_sink_json(int level, const char *module, const char *msg,
                      void *ud) {
  FILE *f = ud ? ud : stderr;
  char ts[40];
  timestamp(ts, sizeof ts);
  kl_buf line = KL_BUF_INIT, tmp = KL_BUF_INIT;
  kl_buf_addf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"logger\":", ts,
              level_name(level));
  module = module ? module : "";
  kl_json_quote(&line, module, strlen(module));
  kl_buf_adds(&line, ",\"msg\":");
  kl_log_redact_append(&tmp, msg ? msg : "");
  kl_json_quote(&line, tmp.data ? tmp.data : "", tmp.len);
  for (size_t i = 0; i < tls_nfields; i++) {
    const kl_log_field *fl = &tls_fields[i];
    if (!fl->key) continue;
    /* the fixed keys win: a field cannot forge ts/level/logger/msg */
    if (!strcmp(fl->key, "ts") || !strcmp(fl->key, "level") ||
        !strcmp(fl->key, "logger") || !strcmp(fl->key, "msg"))
      continue;
    const char *v = field_value(fl, &tmp);
    kl_buf_addc(&line, ',');
    kl_json_quote(&line, fl->key, strlen(fl->key));
    kl_buf_addc(&line, ':');
    kl_json_quote(&line, v, strlen(v));
  }
  kl_buf_addc(&line, '}');
  write_line(f, &line);
  kl_buf_free(&line);
  kl_buf_free(&tmp);
}

static void emit(int level, const char *module, const char *msg,
                 const kl_log_field *fields, size_t n) {
  if (atomic_load(&klua_sink_installed)) {
    tls_fields = fields;
    tls_nfields = n;
    kl_log(level, module, "%s", msg);
    tls_fields = NULL;
    tls_nfields = 0;
    return;
  }
  kl_buf line = KL_BUF_INIT;
  kl_buf_adds(&line, msg);
  append_text_fields(&line, fields, n);
  kl_log(level, module, "%s", line.data);
  kl_buf_free(&line);
}

void kl_logf(int level, const char *module, const kl_log_field *fields,
             size_t nfields, const char *fmt, ...) {
  if (!kl_log_enabled(level)) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  emit(level, module, msg, fields, nfields);
}

void kl_logkv_(int level, const char *module, const char *msg,
               const char *const *kv, size_t n) {
  if (!kl_log_enabled(level)) return;
  kl_log_field fs[32];
  size_t nf = 0;
  for (size_t i = 0; i + 1 < n && nf < 32; i += 2)
    fs[nf++] = (kl_log_field){kv[i], kv[i + 1]};
  emit(level, module, msg ? msg : "", fs, nf);
}
