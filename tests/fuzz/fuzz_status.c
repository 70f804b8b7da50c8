/* fuzz_status.c: status.c on arbitrary error bodies. kl_status_decode must
 * return 0, KL_EJSON or KL_EINVAL with a message, fill every string on
 * success, and leave *out zeroed on failure; formatting and the classifiers
 * must work on any result. kl_status_from_http (the REST client's path for
 * any non-2xx body, JSON or not) runs with an HTTP code and method taken
 * from the first bytes, and must never fail. */
#include "fuzz_common.h"
#include "status.h"

static void use(const kl_status *st) {
  FZ_ASSERT(st->status && st->reason && st->message);
  FZ_ASSERT(st->details.name && st->details.group && st->details.kind &&
            st->details.uid);
  for (size_t i = 0; i < st->details.ncauses; i++) {
    FZ_ASSERT(st->details.causes[i].reason && st->details.causes[i].message &&
              st->details.causes[i].field);
  }
  char *s = kl_status_format(st);
  FZ_ASSERT(s);
  free(s);
  (void)kl_status_is_gone(st);
  (void)kl_status_is_resource_expired(st);
  (void)kl_status_is_conflict(st);
  (void)kl_status_is_not_found(st);
  (void)kl_status_is_already_exists(st);
  (void)kl_status_is_too_many_requests(st);
  (void)kl_status_is_retryable(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  kl_status st;
  char *err = NULL;
  int rc = kl_status_decode((const char *)data, size, &st, &err);
  if (rc == 0) {
    FZ_ASSERT(st.from_body);
    use(&st);
  } else {
    FZ_ASSERT(rc == KL_EJSON || rc == KL_EINVAL);
    FZ_ASSERT(err && *err);
    FZ_ASSERT(st.status == NULL && st.details.causes == NULL);
  }
  free(err);
  kl_status_free(&st);
  kl_status_free(&st); /* idempotent */

  /* [code hi][code lo][method][retry-after up to NUL] body */
  if (size >= 3) {
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH",
                                          "DELETE", NULL};
    int code = (data[0] << 8 | data[1]) % 1000;
    const char *method = methods[data[2] % 6];
    const char *ra = NULL, *body = (const char *)data + 3;
    size_t bn = size - 3;
    char *retry = NULL;
    const uint8_t *z = memchr(body, 0, bn);
    if (z && z - (const uint8_t *)body < 24) {
      retry = fz_cstr((const uint8_t *)body, (size_t)(z - (const uint8_t *)body));
      ra = retry;
      bn -= (size_t)(z - (const uint8_t *)body) + 1;
      body = (const char *)z + 1;
    }
    kl_status_from_http(code, method, body, bn, ra, &st);
    use(&st);
    FZ_ASSERT(st.code != 0 || code == 0);
    kl_status_free(&st);
    free(retry);
  }
  return 0;
}
