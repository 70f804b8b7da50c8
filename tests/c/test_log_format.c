/* test_log_format.c: text and JSON log lines, structured fields, quoting,
 * redaction of secrets, and fields falling back to key=value text under a
 * foreign sink. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "json.h"
#include "log_format.h"

static FILE *out;

/* Everything written to `out` since the last call (NEW string). */
static char *take(void) {
  fflush(out);
  long n = ftell(out);
  char *s = kl_calloc(1, (size_t)n + 1);
  rewind(out);
  if (n > 0 && fread(s, 1, (size_t)n, out) != (size_t)n) s[0] = 0;
  rewind(out);
  if (ftruncate(fileno(out), 0) != 0) s[0] = 0;
  return s;
}

TEST(parse_format) {
  int f = -1;
  CHECK_EQ_INT(kl_log_format_parse("json", &f), 0);
  CHECK_EQ_INT(f, KL_LOG_FORMAT_JSON);
  CHECK_EQ_INT(kl_log_format_parse("text", &f), 0);
  CHECK_EQ_INT(f, KL_LOG_FORMAT_TEXT);
  CHECK_EQ_INT(kl_log_format_parse("JSON", &f), KL_EINVAL);
  CHECK_EQ_INT(kl_log_format_parse(NULL, &f), KL_EINVAL);
}

TEST(text_lines_with_fields) {
  kl_log_use_format(KL_LOG_FORMAT_TEXT, out);
  kl_logkv(KL_LOG_INFO, "controller", "reconciled", "controller", "web",
           "object", "ConfigMap default/a", "reconcileID", "7f3a");
  char *s = take();
  /* 2026-11-24T02:40:50.323Z info  controller: reconciled ... */
  CHECK(strlen(s) > 25 && s[4] == '-' && s[10] == 'T' && s[23] == 'Z');
  CHECK_EQ_STR(s + 25, "info  controller: reconciled controller=web "
                       "object=\"ConfigMap default/a\" reconcileID=7f3a\n");
  free(s);
  kl_log(KL_LOG_WARN, "rest", "two\nlines");
  s = take();
  CHECK_EQ_STR(s + 25, "warn  rest: two\\nlines\n");
  free(s);
  const kl_log_field f[] = {{"empty", ""}, {"q", "a\"b=c"}};
  kl_logf(KL_LOG_ERROR, "x", f, 2, "n=%d", 3);
  s = take();
  CHECK_EQ_STR(s + 25, "error x: n=3 empty=\"\" q=\"a\\\"b=c\"\n");
  free(s);
}

TEST(json_lines_with_fields) {
  kl_log_use_format(KL_LOG_FORMAT_JSON, out);
  kl_logkv(KL_LOG_INFO, "controller", "said \"hi\"\n", "controller", "web",
           "msg", "forged", "n", "3");
  char *s = take();
  size_t n = strlen(s);
  CHECK(n > 0 && s[n - 1] == '\n');
  CHECK_EQ_INT(kl_json_validate(s, n - 1), 0);
  kl_span o = {s, n - 1}, v;
  CHECK(kl_json_get(o, "level", &v) && kl_json_streq(v, "info"));
  CHECK(kl_json_get(o, "logger", &v) && kl_json_streq(v, "controller"));
  CHECK(kl_json_get(o, "msg", &v) && kl_json_streq(v, "said \"hi\"\n"));
  CHECK(kl_json_get(o, "controller", &v) && kl_json_streq(v, "web"));
  CHECK(kl_json_get(o, "n", &v) && kl_json_streq(v, "3"));
  CHECK(kl_json_get(o, "ts", &v) && v.n == 26);
  CHECK(strstr(s, "forged") == NULL);
  CHECK(strncmp(s, "{\"ts\":\"", 7) == 0);
  free(s);
}

TEST(secrets_are_redacted) {
  CHECK(kl_log_is_secret_key("token"));
  CHECK(kl_log_is_secret_key("bearerToken"));
  CHECK(kl_log_is_secret_key("Authorization"));
  CHECK(kl_log_is_secret_key("client_secret"));
  CHECK(kl_log_is_secret_key("PASSWORD"));
  CHECK(!kl_log_is_secret_key("controller"));
  for (int fmt = 0; fmt < 2; fmt++) {
    kl_log_use_format(fmt, out);
    kl_logkv(KL_LOG_INFO, "rest", "sent Authorization: Bearer abc.def-123",
             "token", "s3cr3t-tok", "Password", "hunter2", "header",
             "Bearer xyz789", "user", "alice");
    char *s = take();
    CHECK(strstr(s, "abc.def") == NULL);
    CHECK(strstr(s, "s3cr3t") == NULL);
    CHECK(strstr(s, "hunter2") == NULL);
    CHECK(strstr(s, "xyz789") == NULL);
    CHECK(strstr(s, "Bearer [REDACTED]") != NULL);
    CHECK(strstr(s, "alice") != NULL);
    free(s);
  }
  kl_buf b = KL_BUF_INIT;
  kl_log_redact_append(&b, "a bearer  t1, Bearer \"x\" end Bearer");
  CHECK_EQ_STR(b.data, "a bearer  [REDACTED], Bearer \"x\" end Bearer");
  kl_buf_free(&b);
}

TEST(disabled_levels_print_nothing) {
  kl_log_use_format(KL_LOG_FORMAT_TEXT, out);
  kl_log_set_level(KL_LOG_INFO);
  kl_logkv(KL_LOG_DEBUG, "x", "hidden", "k", "v");
  char *s = take();
  CHECK_EQ_STR(s, "");
  free(s);
}

static char seen[512];
static void foreign(int level, const char *module, const char *msg,
                    void *ud) {
  (void)level;
  (void)ud;
  snprintf(seen, sizeof seen, "%s: %s", module, msg);
}

TEST(foreign_sink_gets_fields_as_text) {
  /* runs first: before any klua sink is installed */
  kl_log_set_sink(foreign, NULL);
  kl_logkv(KL_LOG_INFO, "m", "hello", "k", "v w", "token", "t0k");
  CHECK_EQ_STR(seen, "m: hello k=\"v w\" token=[REDACTED]");
  kl_log_set_sink(NULL, NULL);
}

int main(void) {
  out = tmpfile();
  RUN(foreign_sink_gets_fields_as_text);
  RUN(parse_format);
  RUN(text_lines_with_fields);
  RUN(json_lines_with_fields);
  RUN(secrets_are_redacted);
  RUN(disabled_levels_print_nothing);
  kl_log_set_sink(NULL, NULL);
  fclose(out);
  return ctest_summary();
}
