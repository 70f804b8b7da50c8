/* fuzz_watch_decode.c: watch_decode.c on arbitrary streams. The input is
 * the de-chunked body of a watch. It is decoded twice: fed whole, and fed in
 * pieces whose sizes come from a PRNG seeded by the input; both runs must
 * give the same events (type + object JSON, or the ERROR Status) and the
 * same final result, since chunk boundaries are not event boundaries. Each
 * event must be well formed (valid compact JSON, a key for non-BOOKMARK
 * events). A third run with a 200-byte event limit only checks that the
 * limit gives a clean KL_EPROTO. */
#include "fuzz_common.h"
#include "watch_decode.h"

/* Drains the decoder into log; returns the error (or 0). */
static int drain(kl_watch_decoder *d, kl_buf *log) {
  kl_watch_event ev;
  int rc;
  while ((rc = kl_watch_decoder_next(d, &ev)) == 1) {
    kl_buf_adds(log, kl_watch_type_name(ev.type));
    kl_buf_addc(log, ' ');
    if (ev.type == KL_WATCH_ERROR) {
      FZ_ASSERT(ev.obj == NULL);
      FZ_ASSERT(ev.status.status && ev.status.reason && ev.status.message);
      char *s = kl_status_format(&ev.status);
      kl_buf_adds(log, s);
      free(s);
    } else {
      FZ_ASSERT(ev.obj != NULL);
      size_t n;
      const char *j = kl_obj_json(ev.obj, &n);
      FZ_ASSERT(kl_json_validate(j, n) == 0);
      FZ_ASSERT(kl_json_type(kl_obj_span(ev.obj)) == 'o');
      if (ev.type != KL_WATCH_BOOKMARK) FZ_ASSERT(*kl_obj_name(ev.obj));
      (void)kl_obj_key(ev.obj);
      (void)kl_obj_resource_version(ev.obj);
      kl_buf_add(log, j, n);
    }
    kl_buf_addc(log, '\n');
    kl_watch_event_clear(&ev);
  }
  if (rc < 0) {
    FZ_ASSERT(ev.obj == NULL);
    FZ_ASSERT(*kl_watch_decoder_error(d));
    /* sticky */
    FZ_ASSERT(kl_watch_decoder_next(d, &ev) == rc);
  }
  return rc;
}

static int run(const uint8_t *data, size_t size, int chunked, size_t max,
               kl_buf *log) {
  static const char *const drop[] = {"metadata.managedFields", NULL};
  kl_obj_opts o = {.drop = drop, .api_version = "v1", .kind = "ConfigMap"};
  kl_watch_decoder *d = kl_watch_decoder_new(&o, max);
  uint32_t seed = (uint32_t)size * 2654435761u;
  for (size_t i = 0; i < size && i < 8; i++) seed = seed * 31 + data[i];
  size_t off = 0;
  int rc = 0;
  while (off < size) {
    size_t n = size - off;
    if (chunked) {
      seed = seed * 1103515245u + 12345u;
      size_t want = (seed >> 16) % 64 + 1;
      if (want < n) n = want;
    }
    kl_watch_decoder_feed(d, (const char *)data + off, n);
    off += n;
    rc = drain(d, log);
    if (rc < 0) break;
  }
  if (rc == 0) rc = kl_watch_decoder_finish(d);
  if (rc < 0) FZ_ASSERT(*kl_watch_decoder_error(d));
  kl_buf_addf(log, "rc=%d\n", rc);
  /* reset makes it usable again */
  kl_watch_decoder_reset(d);
  FZ_ASSERT(*kl_watch_decoder_error(d) == '\0');
  static const char bm[] = "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":"
                           "{\"resourceVersion\":\"7\"}}}\n";
  kl_watch_decoder_feed(d, bm, sizeof bm - 1);
  kl_watch_event ev;
  FZ_ASSERT(kl_watch_decoder_next(d, &ev) == 1);
  kl_watch_event_clear(&ev);
  kl_watch_decoder_free(d);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  kl_buf a = KL_BUF_INIT, b = KL_BUF_INIT, c = KL_BUF_INIT;
  int ra = run(data, size, 0, 0, &a);
  int rb = run(data, size, 1, 0, &b);
  if (ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len))) {
    fprintf(stderr, "whole:\n%s\nchunked:\n%s\n", a.data, b.data);
    FZ_ASSERT(!"whole and chunked decoding differ");
  }
  int rc = run(data, size, 1, 200, &c);
  FZ_ASSERT(rc == 0 || rc == KL_EJSON || rc == KL_EPROTO || rc == KL_EINVAL);
  kl_buf_free(&a);
  kl_buf_free(&b);
  kl_buf_free(&c);
  return 0;
}
