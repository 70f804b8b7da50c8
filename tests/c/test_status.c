/* test_status.c: Status decoding and classification, against the error
 * responses captured from a real kube-apiserver (k8s-wire/errors). The
 * expected values in the table were read from the files by hand. */
#include <stdint.h>

#include "ctest.h"
#include "kl.h"
#include "status.h"
#include "testutil.h"

/* Splits a captured .http exchange: the response status code, the value of
 * its Retry-After header (NEW or NULL) and a pointer to its body. */
static int parse_http(const char *text, size_t len, int *code,
                      char **retry_after, const char **body,
                      size_t *body_len) {
  const char *r = strstr(text, "=== response\n");
  if (!r) return -1;
  r += strlen("=== response\n");
  if (strncmp(r, "HTTP/", 5) != 0) return -1;
  const char *sp = strchr(r, ' ');
  if (!sp) return -1;
  *code = atoi(sp + 1);
  *retry_after = NULL;
  const char *line = strchr(r, '\n');
  while (line && line[1] != '\n') {
    line++;
    if (strncasecmp(line, "Retry-After:", 12) == 0) {
      const char *e = strchr(line, '\n');
      *retry_after = kl_strndup(line + 12, (size_t)(e - line - 12));
    }
    line = strchr(line, '\n');
  }
  if (!line) return -1;
  *body = line + 2;
  *body_len = len - (size_t)(*body - text);
  return 0;
}

struct err_case {
  const char *file;
  int http;         /* status line */
  int code;         /* expected kl_status.code */
  const char *reason;
  const char *status;
  size_t ncauses;
  int retry_after;
  bool from_body;
};

static const struct err_case cases[] = {
    {"200_json_patch_replace_missing_key.http", 200, 200, "", "Success", 0, 0, false},
    {"400_continue_malformed.http", 400, 400, "BadRequest", "Failure", 0, 0, true},
    {"400_invalid_label_selector.http", 400, 400, "BadRequest", "Failure", 0, 0, true},
    {"400_json_patch_not_array.http", 400, 400, "BadRequest", "Failure", 0, 0, true},
    {"400_kind_mismatch.http", 400, 400, "BadRequest", "Failure", 0, 0, true},
    {"400_malformed_json.http", 400, 400, "BadRequest", "Failure", 0, 0, true},
    {"400_name_mismatch_put.http", 400, 400, "BadRequest", "Failure", 0, 0, true},
    {"400_unsupported_field_selector.http", 400, 400, "BadRequest", "Failure", 0, 0, true},
    {"401_wrong_token.http", 401, 401, "Unauthorized", "Failure", 0, 0, true},
    {"403_anonymous.http", 403, 403, "Forbidden", "Failure", 0, 0, true},
    {"403_forbidden_create_cluster.http", 403, 403, "Forbidden", "Failure", 0, 0, true},
    {"403_forbidden_list.http", 403, 403, "Forbidden", "Failure", 0, 0, true},
    {"403_forbidden_watch.http", 403, 403, "Forbidden", "Failure", 0, 0, true},
    {"404_delete_missing.http", 404, 404, "NotFound", "Failure", 0, 0, true},
    {"404_get_missing.http", 404, 404, "NotFound", "Failure", 0, 0, true},
    {"404_namespace_missing_create.http", 404, 404, "NotFound", "Failure", 0, 0, true},
    /* text/plain "404 page not found": synthesized like client-go */
    {"404_unknown_crd_resource.http", 404, 404, "NotFound", "Failure", 1, 0, false},
    {"404_unknown_group.http", 404, 404, "NotFound", "Failure", 1, 0, false},
    {"404_watch_unknown_resource.http", 404, 404, "NotFound", "Failure", 0, 0, true},
    {"405_method_not_allowed.http", 405, 405, "MethodNotAllowed", "Failure", 0, 0, true},
    {"406_not_acceptable.http", 406, 406, "NotAcceptable", "Failure", 0, 0, true},
    {"409_already_exists.http", 409, 409, "AlreadyExists", "Failure", 0, 0, true},
    {"409_conflict_stale_rv.http", 409, 409, "Conflict", "Failure", 0, 0, true},
    {"409_conflict_stale_rv_patch.http", 409, 409, "Conflict", "Failure", 0, 0, true},
    {"409_delete_precondition_uid.http", 409, 409, "Conflict", "Failure", 0, 0, true},
    {"410_continue_expired.http", 410, 410, "Expired", "Failure", 0, 0, true},
    {"410_list_limit_rv_compacted.http", 410, 410, "Expired", "Failure", 0, 0, true},
    {"410_list_rv_exact_compacted.http", 410, 410, "Expired", "Failure", 0, 0, true},
    {"415_post_text_plain.http", 415, 415, "UnsupportedMediaType", "Failure", 0, 0, true},
    {"415_unsupported_patch_type.http", 415, 415, "UnsupportedMediaType", "Failure", 0, 0, true},
    {"422_invalid_multiple_causes.http", 422, 422, "Invalid", "Failure", 2, 0, true},
    {"422_invalid_name.http", 422, 422, "Invalid", "Failure", 1, 0, true},
    {"422_json_patch_test_failed.http", 422, 422, "Invalid", "Failure", 0, 0, true},
    {"422_rvmatch_without_rv.http", 422, 422, "Invalid", "Failure", 1, 0, true},
    {"422_watch_rvmatch.http", 422, 422, "Invalid", "Failure", 1, 0, true},
    /* a Status with no reason at all */
    {"500_invalid_rv.http", 500, 500, "", "Failure", 0, 0, true},
    {"504_list_rv_too_large.http", 504, 504, "Timeout", "Failure", 1, 1, true},
    {"list_rv_notolderthan_compacted.http", 200, 200, "", "Success", 0, 0, false},
};

TEST(every_captured_error_decodes) {
  size_t ncases = sizeof cases / sizeof cases[0];
  for (size_t i = 0; i < ncases; i++) {
    const struct err_case *c = &cases[i];
    char path[1024];
    snprintf(path, sizeof path, "%s/errors/%s", tu_wire_dir(), c->file);
    size_t len;
    char *text = tu_slurp(path, &len);
    CHECK(text != NULL);
    if (!text) {
      printf("  cannot read %s\n", path);
      continue;
    }
    int code;
    char *ra;
    const char *body;
    size_t blen;
    CHECK_EQ_INT(parse_http(text, len, &code, &ra, &body, &blen), 0);
    CHECK_EQ_INT(code, c->http);
    kl_status st;
    kl_status_from_http(code, NULL, body, blen, ra, &st);
    if (st.code != c->code || strcmp(st.reason, c->reason) != 0)
      printf("  %s: got %d %s\n", c->file, st.code, st.reason);
    CHECK_EQ_INT(st.code, c->code);
    CHECK_EQ_STR(st.reason, c->reason);
    CHECK_EQ_STR(st.status, c->status);
    CHECK_EQ_INT(st.details.ncauses, c->ncauses);
    CHECK_EQ_INT(st.details.retry_after_seconds, c->retry_after);
    CHECK_EQ_INT(st.from_body, c->from_body);
    kl_status_free(&st);
    free(ra);
    free(text);
  }
}

static void decode_file(const char *file, kl_status *st) {
  char path[1024];
  snprintf(path, sizeof path, "%s/errors/%s", tu_wire_dir(), file);
  size_t len;
  char *text = tu_slurp(path, &len);
  memset(st, 0, sizeof *st);
  if (!text) {
    CHECK(text != NULL);
    return;
  }
  int code;
  char *ra = NULL;
  const char *body = NULL;
  size_t blen = 0;
  CHECK_EQ_INT(parse_http(text, len, &code, &ra, &body, &blen), 0);
  kl_status_from_http(code, NULL, body, blen, ra, st);
  free(ra);
  free(text);
}

TEST(captured_details_and_causes) {
  kl_status st;
  decode_file("422_invalid_multiple_causes.http", &st);
  CHECK_EQ_STR(st.details.name, "ok-name");
  CHECK_EQ_STR(st.details.kind, "ConfigMap");
  if (st.details.ncauses == 2) {
    CHECK_EQ_STR(st.details.causes[0].reason, "FieldValueInvalid");
    CHECK_EQ_STR(st.details.causes[0].field, "metadata.labels");
    CHECK_EQ_STR(st.details.causes[1].field, "data[bad key!]");
    CHECK(strncmp(st.details.causes[1].message,
                  "Invalid value: \"bad key!\"", 25) == 0);
  }
  kl_status_free(&st);

  decode_file("504_list_rv_too_large.http", &st);
  CHECK_EQ_STR(st.message,
               "Timeout: Too large resource version: 99999999, current: 246");
  CHECK(st.details.ncauses == 1 &&
        strcmp(st.details.causes[0].reason, "ResourceVersionTooLarge") == 0);
  CHECK(kl_status_is_retryable(&st));
  CHECK(!kl_status_is_gone(&st));
  kl_status_free(&st);

  decode_file("404_unknown_group.http", &st);
  CHECK_EQ_STR(st.message, "the server could not find the requested resource");
  CHECK(st.details.ncauses == 1 &&
        strcmp(st.details.causes[0].reason, "UnexpectedServerResponse") == 0 &&
        strcmp(st.details.causes[0].message, "404 page not found") == 0);
  CHECK(kl_status_is_not_found(&st));
  CHECK(!kl_status_is_retryable(&st));
  kl_status_free(&st);

  decode_file("410_continue_expired.http", &st);
  CHECK(kl_status_is_gone(&st));
  CHECK(kl_status_is_resource_expired(&st));
  CHECK(!kl_status_is_retryable(&st));
  kl_status_free(&st);

  decode_file("409_already_exists.http", &st);
  CHECK(kl_status_is_already_exists(&st));
  CHECK(!kl_status_is_conflict(&st));
  CHECK_EQ_STR(st.details.kind, "configmaps"); /* resource, not Kind */
  kl_status_free(&st);

  decode_file("409_conflict_stale_rv.http", &st);
  CHECK(kl_status_is_conflict(&st));
  CHECK(!kl_status_is_already_exists(&st));
  kl_status_free(&st);

  decode_file("500_invalid_rv.http", &st);
  CHECK(kl_status_is_retryable(&st));
  CHECK(!kl_status_is_not_found(&st));
  kl_status_free(&st);
}

TEST(watch_error_object) {
  const char *j = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                  "\"status\":\"Failure\",\"message\":\"too old resource "
                  "version: 1 (308)\",\"reason\":\"Expired\",\"code\":410}";
  kl_status st;
  char *err = NULL;
  CHECK_EQ_INT(kl_status_decode(j, strlen(j), &st, &err), 0);
  CHECK_EQ_INT(st.code, 410);
  CHECK_EQ_STR(st.reason, "Expired");
  CHECK(kl_status_is_gone(&st) && kl_status_is_resource_expired(&st));
  char *s = kl_status_format(&st);
  CHECK_EQ_STR(s, "410 Expired: too old resource version: 1 (308)");
  free(s);
  kl_status_free(&st);
  kl_status_free(&st); /* idempotent */

  /* only the message says so (older servers) */
  const char *j2 = "{\"status\":\"Failure\",\"message\":\"too old resource "
                   "version: 5 (9)\",\"code\":500}";
  CHECK_EQ_INT(kl_status_decode(j2, strlen(j2), &st, NULL), 0);
  CHECK(kl_status_is_resource_expired(&st));
  CHECK(!kl_status_is_gone(&st));
  CHECK_EQ_STR(st.details.name, ""); /* absent strings read as "" */
  kl_status_free(&st);
}

TEST(decode_rejects_non_status) {
  kl_status st;
  char *err = NULL;
  CHECK_EQ_INT(kl_status_decode("{\"kind\":\"ConfigMap\"}", 20, &st, &err),
               KL_EINVAL);
  CHECK(err && strstr(err, "kind"));
  free(err);
  err = NULL;
  CHECK_EQ_INT(kl_status_decode("{\"kind\":", 8, &st, &err), KL_EJSON);
  CHECK(err != NULL);
  free(err);
  CHECK_EQ_INT(kl_status_decode("[1]", 3, &st, NULL), KL_EINVAL);
  CHECK(st.reason == NULL); /* zeroed on error: kl_status_free is safe */
  kl_status_free(&st);
  /* wrong member types are ignored, not fatal */
  const char *j = "{\"kind\":\"Status\",\"code\":\"410\",\"reason\":7,"
                  "\"details\":{\"causes\":[1,{\"reason\":\"R\"}]}}";
  CHECK_EQ_INT(kl_status_decode(j, strlen(j), &st, NULL), 0);
  CHECK_EQ_INT(st.code, 0);
  CHECK_EQ_STR(st.reason, "");
  CHECK_EQ_INT(st.details.ncauses, 1);
  kl_status_free(&st);
}

TEST(synthesized_from_http_code) {
  struct {
    int code;
    const char *method, *reason;
    bool retryable;
  } t[] = {
      {409, "PUT", "Conflict", false},
      {409, "POST", "AlreadyExists", false},
      {429, "GET", "TooManyRequests", true},
      {500, "GET", "InternalError", true},
      {501, "GET", "InternalError", false},
      {502, "GET", "InternalError", true},
      {503, "GET", "ServiceUnavailable", true},
      {504, "GET", "Timeout", true},
      {410, "GET", "Gone", false},
      {418, "GET", "Unknown", false},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    kl_status st;
    kl_status_from_http(t[i].code, t[i].method, "oops\n", 5, " 7 ", &st);
    CHECK_EQ_INT(st.code, t[i].code);
    CHECK_EQ_STR(st.reason, t[i].reason);
    CHECK_EQ_INT(kl_status_is_retryable(&st), t[i].retryable);
    CHECK_EQ_INT(st.details.retry_after_seconds, 7);
    CHECK(st.details.ncauses == 1 &&
          strcmp(st.details.causes[0].message, "oops") == 0);
    kl_status_free(&st);
  }
  kl_status st;
  kl_status_from_http(429, NULL, NULL, 0, "Wed, 21 Oct 2015 07:28:00 GMT",
                      &st);
  CHECK(kl_status_is_too_many_requests(&st));
  CHECK_EQ_INT(st.details.retry_after_seconds, 0); /* date form ignored */
  CHECK_EQ_INT(st.details.ncauses, 0);
  kl_status_free(&st);
  /* a binary (protobuf) body is not quoted into the message */
  kl_status_from_http(500, NULL, "k8s\0\x0a\x0c", 6, NULL, &st);
  CHECK_EQ_INT(st.details.ncauses, 0);
  CHECK(strstr(st.message, "unknown") != NULL);
  kl_status_free(&st);
  /* a 404 JSON body that is not a Status ({"paths":[...]}) */
  kl_status_from_http(404, "GET", "{\"paths\":[\"/api\"]}", 18, NULL, &st);
  CHECK_EQ_STR(st.reason, "NotFound");
  CHECK(!st.from_body);
  kl_status_free(&st);
  /* Status body without code: the HTTP code fills it */
  kl_status_from_http(403, "GET", "{\"kind\":\"Status\",\"reason\":\"Forbidden\"}",
                      38, NULL, &st);
  CHECK_EQ_INT(st.code, 403);
  CHECK(st.from_body);
  kl_status_free(&st);
}

int main(void) {
  RUN(every_captured_error_decodes);
  RUN(captured_details_and_causes);
  RUN(watch_error_object);
  RUN(decode_rejects_non_status);
  RUN(synthesized_from_http_code);
  return ctest_summary();
}
