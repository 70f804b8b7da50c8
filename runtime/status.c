/* status.c: Kubernetes Status decoding and classification; see status.h. */
#include "status.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* A NEW copy of the string member key of obj; "" when absent or not a
 * string. */
static char *str_member(kl_span obj, const char *key) {
  kl_span v;
  char *s = kl_json_getv(obj, &key, 1, &v) ? kl_json_strdup(v) : NULL;
  return s ? s : kl_strdup("");
}

/* An integer member; 0 when absent, not a number or out of int range. */
static int int_member(kl_span obj, const char *key) {
  kl_span v;
  if (!kl_json_getv(obj, &key, 1, &v) || kl_json_type(v) != 'n') return 0;
  char tmp[32];
  if (v.n >= sizeof tmp) return 0;
  memcpy(tmp, v.p, v.n);
  tmp[v.n] = '\0';
  char *end;
  long x = strtol(tmp, &end, 10);
  if (*end != '\0' || x < -2147483647L || x > 2147483647L) return 0;
  return (int)x;
}

static void fill_empty(kl_status *st) {
  if (!st->status) st->status = kl_strdup("");
  if (!st->reason) st->reason = kl_strdup("");
  if (!st->message) st->message = kl_strdup("");
  if (!st->details.name) st->details.name = kl_strdup("");
  if (!st->details.group) st->details.group = kl_strdup("");
  if (!st->details.kind) st->details.kind = kl_strdup("");
  if (!st->details.uid) st->details.uid = kl_strdup("");
}

static int fail(kl_status *out, char **err, int code, const char *msg) {
  memset(out, 0, sizeof *out);
  if (err) *err = kl_strdup(msg);
  return code;
}

int kl_status_decode(const char *json, size_t n, kl_status *out, char **err) {
  if (err) *err = NULL;
  if (kl_json_validate(json, n) != 0)
    return fail(out, err, KL_EJSON, "Status: malformed JSON");
  const char *p = json, *end = json + n;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  kl_span top = {p, (size_t)(end - p)};
  if (kl_json_type(top) != 'o')
    return fail(out, err, KL_EINVAL, "Status: not a JSON object");
  kl_span v;
  if (kl_json_get(top, "kind", &v) && !kl_json_streq(v, "Status"))
    return fail(out, err, KL_EINVAL, "Status: kind is not \"Status\"");

  memset(out, 0, sizeof *out);
  out->from_body = true;
  out->code = int_member(top, "code");
  out->status = str_member(top, "status");
  out->reason = str_member(top, "reason");
  out->message = str_member(top, "message");
  kl_span d;
  if (kl_json_get(top, "details", &d) && kl_json_type(d) == 'o') {
    out->details.name = str_member(d, "name");
    out->details.group = str_member(d, "group");
    out->details.kind = str_member(d, "kind");
    out->details.uid = str_member(d, "uid");
    out->details.retry_after_seconds = int_member(d, "retryAfterSeconds");
    kl_span causes;
    if (kl_json_get(d, "causes", &causes) && kl_json_type(causes) == 'a') {
      size_t cap = 0;
      kl_json_iter it;
      kl_span key, c;
      kl_json_iter_init(&it, causes);
      while (kl_json_next(&it, &key, &c)) {
        if (kl_json_type(c) != 'o') continue;
        if (out->details.ncauses == cap) {
          cap = cap ? cap * 2 : 4;
          out->details.causes =
              kl_realloc(out->details.causes, cap * sizeof(kl_status_cause));
        }
        kl_status_cause *sc = &out->details.causes[out->details.ncauses++];
        sc->reason = str_member(c, "reason");
        sc->message = str_member(c, "message");
        sc->field = str_member(c, "field");
      }
    }
  }
  fill_empty(out);
  return 0;
}

/* client-go's errors.NewGenericServerResponse: reason and message for a
 * response whose body is not a Status. */
static void generic_reason(int code, const char *method, const char *body_msg,
                           const char **reason, char **message) {
  const char *r = "Unknown", *m = NULL;
  switch (code) {
  case 409:
    r = (method && strcmp(method, "POST") == 0) ? "AlreadyExists" : "Conflict";
    m = "the server reported a conflict";
    break;
  case 404:
    r = "NotFound";
    m = "the server could not find the requested resource";
    break;
  case 400:
    r = "BadRequest";
    m = "the server rejected our request for an unknown reason";
    break;
  case 401:
    r = "Unauthorized";
    m = "the server has asked for the client to provide credentials";
    break;
  case 403:
    r = "Forbidden";
    m = body_msg;
    break;
  case 405:
    r = "MethodNotAllowed";
    m = "the server does not allow this method on the requested resource";
    break;
  case 406:
    r = "NotAcceptable";
    m = (body_msg[0] && strcmp(body_msg, "unknown") != 0)
            ? body_msg
            : "the server was unable to respond with a content type that the "
              "client supports";
    break;
  case 410:
    r = "Gone";
    m = "the server reported that the resource is gone";
    break;
  case 413:
    r = "RequestEntityTooLarge";
    m = "the server has rejected the request because it is too large";
    break;
  case 415:
    r = "UnsupportedMediaType";
    m = body_msg;
    break;
  case 422:
    r = "Invalid";
    m = "the server rejected our request due to an error in our request";
    break;
  case 429:
    r = "TooManyRequests";
    m = "the server has received too many requests and has asked us to try "
        "again later";
    break;
  case 503:
    r = "ServiceUnavailable";
    m = "the server is currently unable to handle the request";
    break;
  case 504:
    r = "Timeout";
    m = "the server was unable to return a response in the time allotted, "
        "but may still be processing the request";
    break;
  default:
    if (code >= 500) {
      r = "InternalError";
      *reason = r;
      *message = kl_sprintf("an error on the server (\"%s\") has prevented "
                            "the request from succeeding", body_msg);
      return;
    }
  }
  *reason = r;
  *message = m ? kl_strdup(m)
               : kl_sprintf("the server responded with the status code %d but "
                            "did not return more information", code);
}

static int parse_retry_after(const char *s) {
  if (!s) return 0;
  while (*s == ' ' || *s == '\t') s++;
  if (!isdigit((unsigned char)*s)) return 0; /* HTTP-date form: ignored */
  char *end;
  long x = strtol(s, &end, 10);
  while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
  if (*end != '\0' || x < 0 || x > 2147483647L) return 0;
  return (int)x;
}

void kl_status_from_http(int http_code, const char *method, const char *body,
                         size_t n, const char *retry_after, kl_status *out) {
  int ra = parse_retry_after(retry_after);
  if (body && n > 0 && kl_status_decode(body, n, out, NULL) == 0) {
    kl_span top = {body, n}, v;
    /* A bare object with no kind is accepted by kl_status_decode (watch
     * ERROR objects); for HTTP bodies insist on kind Status so that e.g. the
     * {"paths":[...]} index of a 404 is not mistaken for one. */
    const char *p = body;
    while (p < body + n && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
      p++;
    top.p = p, top.n = (size_t)(body + n - p);
    if (kl_json_get(top, "kind", &v)) {
      if (out->code == 0) out->code = http_code;
      if (out->details.retry_after_seconds == 0)
        out->details.retry_after_seconds = ra;
      return;
    }
    kl_status_free(out);
  }
  memset(out, 0, sizeof *out);
  out->code = http_code;
  out->details.retry_after_seconds = ra;
  if (http_code >= 200 && http_code < 300) {
    out->status = kl_strdup("Success");
    fill_empty(out);
    return;
  }
  /* The body text, trimmed and capped, unless it looks binary. */
  size_t len = n > 2048 ? 2048 : n;
  const char *b = body ? body : "";
  if (!body || memchr(b, '\0', n)) len = 0;
  while (len > 0 && isspace((unsigned char)b[0])) b++, len--;
  while (len > 0 && isspace((unsigned char)b[len - 1])) len--;
  char *text = kl_strndup(b, len);
  const char *reason;
  generic_reason(http_code, method, text[0] ? text : "unknown", &reason,
                 &out->message);
  out->status = kl_strdup("Failure");
  out->reason = kl_strdup(reason);
  if (text[0]) {
    out->details.causes = kl_calloc(1, sizeof(kl_status_cause));
    out->details.ncauses = 1;
    out->details.causes[0].reason = kl_strdup("UnexpectedServerResponse");
    out->details.causes[0].message = text;
    out->details.causes[0].field = kl_strdup("");
  } else {
    free(text);
  }
  fill_empty(out);
}

void kl_status_free(kl_status *st) {
  if (!st) return;
  free(st->status);
  free(st->reason);
  free(st->message);
  free(st->details.name);
  free(st->details.group);
  free(st->details.kind);
  free(st->details.uid);
  for (size_t i = 0; i < st->details.ncauses; i++) {
    free(st->details.causes[i].reason);
    free(st->details.causes[i].message);
    free(st->details.causes[i].field);
  }
  free(st->details.causes);
  memset(st, 0, sizeof *st);
}

char *kl_status_format(const kl_status *st) {
  const char *reason = st->reason && st->reason[0] ? st->reason : "Unknown";
  const char *msg = st->message ? st->message : "";
  return kl_sprintf("%d %s%s%s", st->code, reason, msg[0] ? ": " : "", msg);
}

static bool reason_is(const kl_status *st, const char *r) {
  return st->reason && strcmp(st->reason, r) == 0;
}

static bool reason_unknown(const kl_status *st) {
  return !st->reason || !st->reason[0] || strcmp(st->reason, "Unknown") == 0;
}

bool kl_status_is_gone(const kl_status *st) {
  return st->code == 410 || reason_is(st, "Expired") || reason_is(st, "Gone");
}

bool kl_status_is_resource_expired(const kl_status *st) {
  return reason_is(st, "Expired") ||
         (st->message && strstr(st->message, "too old resource version"));
}

bool kl_status_is_conflict(const kl_status *st) {
  return reason_is(st, "Conflict") || (reason_unknown(st) && st->code == 409);
}

bool kl_status_is_not_found(const kl_status *st) {
  return reason_is(st, "NotFound") || (reason_unknown(st) && st->code == 404);
}

bool kl_status_is_already_exists(const kl_status *st) {
  return reason_is(st, "AlreadyExists");
}

bool kl_status_is_too_many_requests(const kl_status *st) {
  return reason_is(st, "TooManyRequests") || st->code == 429;
}

bool kl_status_is_retryable(const kl_status *st) {
  return st->code == 429 || (st->code >= 500 && st->code <= 599 &&
                             st->code != 501);
}
