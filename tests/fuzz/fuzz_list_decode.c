/* fuzz_list_decode.c: list_decode.c on arbitrary list bodies. The input is
 * decoded with kl_list_decode (whole) and with kl_list_decoder fed in
 * PRNG-sized pieces; both must agree: same success or failure (and error
 * code), and on success the same items (byte-identical JSON, in order) and
 * the same resourceVersion, continue token, remainingItemCount, apiVersion
 * and kind. Every item must be a valid named object with apiVersion/kind
 * injected when the list provides them. */
#include "fuzz_common.h"
#include "list_decode.h"

static int incremental(const uint8_t *data, size_t size, const kl_obj_opts *o,
                       kl_buf *log, kl_list_meta *meta_out, char **rv,
                       char **cont, char **api, char **kind) {
  kl_list_decoder *d = kl_list_decoder_new(o, 0);
  uint32_t seed = (uint32_t)size * 2654435761u;
  for (size_t i = 0; i < size && i < 8; i++) seed = seed * 31 + data[i];
  size_t off = 0;
  int rc = 0;
  kl_obj *item;
  while (off < size && rc >= 0) {
    seed = seed * 1103515245u + 12345u;
    size_t n = (seed >> 16) % 97 + 1;
    if (n > size - off) n = size - off;
    kl_list_decoder_feed(d, (const char *)data + off, n);
    off += n;
    while ((rc = kl_list_decoder_next(d, &item)) == 1) {
      size_t len;
      const char *j = kl_obj_json(item, &len);
      kl_buf_add(log, j, len);
      kl_buf_addc(log, '\n');
      kl_obj_unref(item);
    }
  }
  if (rc >= 0) {
    rc = kl_list_decoder_finish(d);
    if (rc == 0) {
      while ((rc = kl_list_decoder_next(d, &item)) == 1) {
        size_t len;
        const char *j = kl_obj_json(item, &len);
        kl_buf_add(log, j, len);
        kl_buf_addc(log, '\n');
        kl_obj_unref(item);
      }
    }
  }
  if (rc < 0) FZ_ASSERT(*kl_list_decoder_error(d));
  kl_list_meta m = kl_list_decoder_meta(d);
  FZ_ASSERT(m.api_version && m.kind && m.resource_version && m.continue_token);
  *meta_out = m;
  *rv = kl_strdup(m.resource_version);
  *cont = kl_strdup(m.continue_token);
  *api = kl_strdup(m.api_version);
  *kind = kl_strdup(m.kind);
  kl_list_decoder_reset(d);
  FZ_ASSERT(*kl_list_decoder_error(d) == '\0');
  kl_list_decoder_free(d);
  return rc;
}

static void one(const uint8_t *data, size_t size, const kl_obj_opts *o) {
  kl_list l;
  char *err = NULL;
  int rw = kl_list_decode((const char *)data, size, o, &l, &err);
  kl_buf whole = KL_BUF_INIT;
  if (rw == 0) {
    for (size_t i = 0; i < l.nitems; i++) {
      size_t len;
      const char *j = kl_obj_json(l.items[i], &len);
      FZ_ASSERT(kl_json_validate(j, len) == 0);
      FZ_ASSERT(*kl_obj_name(l.items[i]) || (o && o->allow_unnamed));
      kl_buf_add(&whole, j, len);
      kl_buf_addc(&whole, '\n');
    }
  } else {
    FZ_ASSERT(rw == KL_EJSON || rw == KL_EPROTO || rw == KL_EINVAL);
    FZ_ASSERT(err && *err);
    FZ_ASSERT(l.items == NULL && l.nitems == 0);
  }
  kl_buf inc = KL_BUF_INIT;
  kl_list_meta m;
  char *rv, *cont, *api, *kind;
  int ri = incremental(data, size, o, &inc, &m, &rv, &cont, &api, &kind);
  if (rw != ri) {
    fprintf(stderr, "whole rc=%d (%s), incremental rc=%d\n", rw,
            err ? err : "", ri);
    FZ_ASSERT(!"whole and incremental decoding disagree on success");
  }
  if (rw == 0) {
    if (whole.len != inc.len ||
        (whole.len && memcmp(whole.data, inc.data, whole.len))) {
      fprintf(stderr, "whole:\n%s\nincremental:\n%s\n",
              whole.data ? whole.data : "", inc.data ? inc.data : "");
      FZ_ASSERT(!"whole and incremental items differ");
    }
    FZ_ASSERT(m.nitems == l.nitems);
    FZ_ASSERT(!strcmp(rv, l.resource_version));
    FZ_ASSERT(!strcmp(cont, l.continue_token));
    FZ_ASSERT(!strcmp(api, l.api_version));
    FZ_ASSERT(!strcmp(kind, l.kind));
    FZ_ASSERT(m.remaining_item_count == l.remaining_item_count);
  }
  free(rv);
  free(cont);
  free(api);
  free(kind);
  free(err);
  kl_buf_free(&whole);
  kl_buf_free(&inc);
  kl_list_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  one(data, size, NULL);
  static const char *const drop[] = {"metadata.managedFields", NULL};
  kl_obj_opts o = {.drop = drop, .api_version = "v1", .kind = "Pod",
                   .allow_unnamed = true};
  one(data, size, &o);
  return 0;
}
