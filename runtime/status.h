/* status.h: Kubernetes Status objects (metav1.Status), the API server's way
 * of reporting failures: in error responses, in watch ERROR events, and as
 * the answer to some DELETEs. Used by the REST client, the watch decoder and
 * the reflector to classify errors as client-go's apimachinery/errors does.
 * Thread-safety: pure functions; a kl_status belongs to whoever filled it. */
#ifndef KL_STATUS_H
#define KL_STATUS_H

#include <stdbool.h>
#include <stddef.h>

#include "kl.h"

/* One entry of details.causes (e.g. a field validation failure). */
typedef struct kl_status_cause {
  char *reason;  /* e.g. "FieldValueInvalid", "ResourceVersionTooLarge" */
  char *message;
  char *field;   /* e.g. "metadata.name"; "" when absent */
} kl_status_cause;

/* Exposed (not opaque) so callers can read fields directly and keep one on
 * the stack. Every string is non-NULL after a decode ("" when absent). */
typedef struct kl_status {
  int code;        /* HTTP-like code (404, 410, ...); 0 when absent */
  char *status;    /* "Success" | "Failure" | "" */
  char *reason;    /* "NotFound", "Expired", ...; "" when absent */
  char *message;
  struct {
    char *name, *group;
    char *kind;    /* the RESOURCE name as the server sends it ("configmaps") */
    char *uid;
    kl_status_cause *causes;
    size_t ncauses;
    int retry_after_seconds; /* 0 when absent */
  } details;
  /* true when the fields came from a Status body; false when
   * kl_status_from_http synthesized them from the HTTP code */
  bool from_body;
} kl_status;

/* Decodes the Status object in [json, json+n) into *out (fully overwritten;
 * release with kl_status_free). Accepts any JSON object whose "kind" is
 * "Status" or absent; unknown members and members of the wrong type are
 * ignored. Returns 0, KL_EJSON (malformed JSON), or KL_EINVAL (not an
 * object, or kind is something else). On error *out is zeroed and, when err
 * is not NULL, *err is a NEW message (free it). */
int kl_status_decode(const char *json, size_t n, kl_status *out, char **err);

/* Builds the Status of an HTTP response, as client-go's REST client does:
 * when the body is a Status object it is used (code filled from http_code if
 * the body has none); otherwise (e.g. text/plain "404 page not found") code
 * and reason are synthesized from http_code (404 -> NotFound, 409 ->
 * Conflict, or AlreadyExists when method is "POST", 429 -> TooManyRequests,
 * 504 -> Timeout, other 5xx -> InternalError, ...), the message is client-go's
 * generic one and the body text (trimmed, at most 2048 bytes; omitted if it
 * contains NUL bytes, e.g. protobuf) becomes a cause of reason
 * "UnexpectedServerResponse". retry_after is the Retry-After header value or
 * NULL; integer seconds fill details.retry_after_seconds when the body did
 * not. method may be NULL. Never fails; release *out with kl_status_free. */
void kl_status_from_http(int http_code, const char *method, const char *body,
                         size_t n, const char *retry_after, kl_status *out);

/* Frees the strings and causes of st and zeroes it (NULL-safe, idempotent). */
void kl_status_free(kl_status *st);

/* Returns a NEW one-line description (free it), e.g.
 * "410 Expired: too old resource version: 1 (308)". */
char *kl_status_format(const kl_status *st);

/* Classification, after k8s.io/apimachinery/pkg/api/errors. A "reason
 * unknown" status ("" or "Unknown") falls back to the code. */
bool kl_status_is_gone(const kl_status *st);            /* 410, Expired, Gone */
bool kl_status_is_resource_expired(const kl_status *st); /* Expired or
                                          message "too old resource version" */
bool kl_status_is_conflict(const kl_status *st);        /* reason Conflict */
bool kl_status_is_not_found(const kl_status *st);       /* reason NotFound */
bool kl_status_is_already_exists(const kl_status *st);  /* AlreadyExists */
bool kl_status_is_too_many_requests(const kl_status *st); /* 429 */
/* Worth retrying unchanged: 429 and 5xx except 501 Not Implemented. */
bool kl_status_is_retryable(const kl_status *st);

#endif
