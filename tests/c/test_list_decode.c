/* test_list_decode.c: the list body decoder, whole and incremental, on the
 * lists captured from a real kube-apiserver (k8s-wire/list) and on
 * malformed bodies. Expected values were read from the captures by hand. */
#include <stdint.h>

#include "ctest.h"
#include "kl.h"
#include "list_decode.h"
#include "testutil.h"

struct list_case {
  const char *file, *kind, *api_version, *rv, *cont;
  int64_t remaining;
  const char *keys; /* comma-separated "ns/name" in body order */
};

static const struct list_case cases[] = {
    {"list/configmaps_all_namespaces_labelsel.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-6"},
    {"list/configmaps_fieldsel_and_labelsel.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-2,wire-list/cm-3"},
    {"list/configmaps_fieldsel_name.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-3"},
    {"list/configmaps_full.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-1,wire-list/cm-2,wire-list/cm-3,wire-list/cm-4,wire-list/cm-5,wire-list/cm-6,wire-list/cm-7"},
    {"list/configmaps_labelsel_eq.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-1,wire-list/cm-2,wire-list/cm-3"},
    {"list/configmaps_labelsel_exists.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-5"},
    {"list/configmaps_labelsel_neq.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-4,wire-list/cm-5,wire-list/cm-6,wire-list/cm-7"},
    {"list/configmaps_labelsel_set.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-3,wire-list/cm-4"},
    {"list/configmaps_limit3_page1.http", "ConfigMapList", "v1", "211",
     "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MjExLCJzdGFydCI6ImNtLTNcdTAwMDAifQ",
     4, "wire-list/cm-1,wire-list/cm-2,wire-list/cm-3"},
    {"list/configmaps_limit3_page2.http", "ConfigMapList", "v1", "211",
     "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MjExLCJzdGFydCI6ImNtLTZcdTAwMDAifQ",
     1, "wire-list/cm-4,wire-list/cm-5,wire-list/cm-6"},
    {"list/configmaps_limit3_page3.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-7"},
    {"list/configmaps_partialobjectmetadatalist.http", "PartialObjectMetadataList", "meta.k8s.io/v1", "211",
     "",
     -1, "wire-list/cm-1,wire-list/cm-2,wire-list/cm-3,wire-list/cm-4,wire-list/cm-5,wire-list/cm-6,wire-list/cm-7"},
    {"list/configmaps_rv0.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-3,wire-list/cm-6,wire-list/cm-7,wire-list/cm-1,wire-list/cm-2,wire-list/cm-4,wire-list/cm-5"},
    {"list/configmaps_rv0_limit3.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-3,wire-list/cm-6,wire-list/cm-7,wire-list/cm-1,wire-list/cm-2,wire-list/cm-4,wire-list/cm-5"},
    {"list/configmaps_rv_exact.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-1,wire-list/cm-2,wire-list/cm-3,wire-list/cm-4,wire-list/cm-5,wire-list/cm-6,wire-list/cm-7"},
    {"list/configmaps_rv_notolderthan.http", "ConfigMapList", "v1", "211",
     "",
     -1, "wire-list/cm-2,wire-list/cm-4,wire-list/cm-5,wire-list/cm-1,wire-list/cm-7,wire-list/cm-3,wire-list/cm-6"},
    {"errors/list_rv_notolderthan_compacted.http", "ConfigMapList", "v1", "308",
     "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MzA4LCJzdGFydCI6ImNtLTJcdTAwMDAifQ",
     5, "wire-list/cm-1,wire-list/cm-2"},
};

static const kl_obj_opts OPTS = {.drop = kl_obj_default_drop};

/* Checks one decoded item against the case: key, injected kind/apiVersion,
 * managedFields dropped. */
static void check_item(const struct list_case *c, kl_obj *o, kl_buf *keys) {
  if (keys->len) kl_buf_addc(keys, ',');
  kl_buf_adds(keys, kl_obj_key(o));
  bool pom = strcmp(c->kind, "PartialObjectMetadataList") == 0;
  kl_span v;
  CHECK(kl_obj_get(o, "kind", &v) &&
        kl_json_streq(v, pom ? "PartialObjectMetadata" : "ConfigMap"));
  CHECK(kl_obj_get(o, "apiVersion", &v) &&
        kl_json_streq(v, pom ? "meta.k8s.io/v1" : "v1"));
  CHECK(!kl_obj_get(o, "metadata.managedFields", &v));
  CHECK(kl_obj_resource_version(o)[0] != '\0');
  CHECK(kl_obj_uid(o)[0] != '\0');
}

TEST(captured_lists_whole) {
  size_t ncases = sizeof cases / sizeof cases[0];
  CHECK_EQ_INT(ncases, 17);
  for (size_t i = 0; i < ncases; i++) {
    const struct list_case *c = &cases[i];
    size_t n;
    char *body = tu_wire_body(c->file, &n);
    CHECK(body != NULL);
    if (!body) continue;
    kl_list l;
    char *err = NULL;
    int rc = kl_list_decode(body, n, &OPTS, &l, &err);
    if (rc) printf("  %s: %s\n", c->file, err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(l.kind, c->kind);
    CHECK_EQ_STR(l.api_version, c->api_version);
    CHECK_EQ_STR(l.resource_version, c->rv);
    CHECK_EQ_STR(l.continue_token, c->cont);
    CHECK_EQ_INT(l.remaining_item_count, c->remaining);
    kl_buf keys = KL_BUF_INIT;
    kl_buf_adds(&keys, "");
    for (size_t k = 0; k < l.nitems; k++) check_item(c, l.items[k], &keys);
    CHECK_EQ_STR(keys.data, c->keys);
    kl_buf_free(&keys);
    kl_list_free(&l);
    free(err);
    free(body);
  }
}

/* Feeds body in pieces of `step` bytes (or split once at `cut` when step is
 * 0) and returns the keys, checking metadata at the end. */
static void run_stream(const struct list_case *c, const char *body, size_t n,
                       size_t step, size_t cut) {
  kl_list_decoder *d = kl_list_decoder_new(&OPTS, 0);
  kl_buf keys = KL_BUF_INIT;
  kl_buf_adds(&keys, "");
  size_t pos = 0;
  int rc = 0;
  kl_obj *o;
  while (pos < n && rc == 0) {
    size_t k = step ? step : (pos == 0 ? cut : n - pos);
    if (k > n - pos) k = n - pos;
    kl_list_decoder_feed(d, body + pos, k);
    pos += k;
    while ((rc = kl_list_decoder_next(d, &o)) == 1) {
      check_item(c, o, &keys);
      kl_obj_unref(o);
    }
  }
  if (rc == 0) rc = kl_list_decoder_finish(d);
  while (rc == 0 && kl_list_decoder_next(d, &o) == 1) {
    check_item(c, o, &keys);
    kl_obj_unref(o);
  }
  if (rc != 0 || strcmp(keys.data, c->keys) != 0)
    printf("  %s step %zu cut %zu: rc %d %s keys %s\n", c->file, step, cut, rc,
           kl_list_decoder_error(d), keys.data);
  CHECK_EQ_INT(rc, 0);
  CHECK_EQ_STR(keys.data, c->keys);
  kl_list_meta m = kl_list_decoder_meta(d);
  CHECK_EQ_STR(m.resource_version, c->rv);
  CHECK_EQ_STR(m.continue_token, c->cont);
  CHECK_EQ_INT(m.remaining_item_count, c->remaining);
  CHECK_EQ_STR(m.kind, c->kind);
  kl_buf_free(&keys);
  kl_list_decoder_free(d);
}

TEST(captured_lists_streamed) {
  size_t ncases = sizeof cases / sizeof cases[0];
  const size_t steps[] = {1, 7, 100, 2048, 1 << 20};
  for (size_t i = 0; i < ncases; i++) {
    size_t n;
    char *body = tu_wire_body(cases[i].file, &n);
    if (!body) continue;
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++)
      run_stream(&cases[i], body, n, steps[s], 0);
    free(body);
  }
  /* one page (with continue and remainingItemCount) split at every byte */
  size_t n;
  char *body = tu_wire_body(cases[8].file, &n);
  CHECK(body != NULL && strstr(cases[8].file, "limit3_page1") != NULL);
  if (!body) return;
  for (size_t cut = 1; cut < n; cut++) run_stream(&cases[8], body, n, 0, cut);
  free(body);
}

static int decode_str(const char *s, const kl_obj_opts *o, kl_list *l,
                      char **err) {
  *err = NULL;
  return kl_list_decode(s, strlen(s), o ? o : &OPTS, l, err);
}

TEST(not_a_list) {
  const char *files[] = {"list/configmap_get_table.http",
                         "list/configmaps_table.http",
                         "list/configmap_get_partialobjectmetadata.http"};
  const char *kinds[] = {"Table", "Table", "PartialObjectMetadata"};
  for (int i = 0; i < 3; i++) {
    size_t n;
    char *body = tu_wire_body(files[i], &n);
    CHECK(body != NULL);
    if (!body) continue;
    kl_list l;
    char *err = NULL;
    CHECK_EQ_INT(kl_list_decode(body, n, &OPTS, &l, &err), KL_EPROTO);
    CHECK(err && strstr(err, "no \"items\"") && strstr(err, kinds[i]));
    CHECK(l.items == NULL && l.kind == NULL);
    free(err);
    free(body);
  }
  size_t n;
  char *body = tu_wire_body("list/configmaps_yaml.http", &n);
  CHECK(body != NULL);
  if (body) {
    kl_list l;
    char *err = NULL;
    CHECK_EQ_INT(kl_list_decode(body, n, &OPTS, &l, &err), KL_EJSON);
    CHECK(err && strstr(err, "not a JSON object"));
    free(err);
    free(body);
  }
}

/* A custom resource list: keys sorted, so "kind" comes after "items". */
static const char *CR_LIST =
    "{\"apiVersion\":\"test.example.com/v1\",\"items\":["
    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\",\"managedFields\":[]}},"
    "{\"apiVersion\":\"test.example.com/v1\",\"kind\":\"Widget\","
    "\"metadata\":{\"name\":\"b\",\"namespace\":\"n\"}}"
    "],\"kind\":\"WidgetList\",\"metadata\":{\"continue\":\"\","
    "\"resourceVersion\":\"243\"}}";

TEST(kind_after_items) {
  kl_list l;
  char *err;
  CHECK_EQ_INT(decode_str(CR_LIST, NULL, &l, &err), 0);
  CHECK_EQ_INT(l.nitems, 2);
  CHECK_EQ_STR(l.resource_version, "243");
  CHECK_EQ_STR(l.continue_token, ""); /* an empty string member */
  CHECK_EQ_INT(l.remaining_item_count, -1);
  for (size_t i = 0; i < l.nitems; i++) {
    kl_span v;
    CHECK(kl_obj_get(l.items[i], "kind", &v) && kl_json_streq(v, "Widget"));
    CHECK(kl_obj_get(l.items[i], "apiVersion", &v) &&
          kl_json_streq(v, "test.example.com/v1"));
    CHECK(!kl_obj_get(l.items[i], "metadata.managedFields", &v));
  }
  if (l.nitems == 2) {
    CHECK_EQ_STR(kl_obj_key(l.items[0]), "n/a");
    CHECK_EQ_STR(kl_obj_key(l.items[1]), "n/b");
  }
  kl_list_free(&l);

  /* streamed: item a (no kind) is held until the list's kind arrives */
  kl_list_decoder *d = kl_list_decoder_new(&OPTS, 0);
  const char *split = strstr(CR_LIST, "],\"kind\"");
  kl_list_decoder_feed(d, CR_LIST, (size_t)(split - CR_LIST));
  kl_obj *o;
  CHECK_EQ_INT(kl_list_decoder_next(d, &o), 0);
  CHECK_EQ_INT(kl_list_decoder_meta(d).nitems, 0);
  kl_list_decoder_feed(d, split, strlen(split));
  CHECK_EQ_INT(kl_list_decoder_next(d, &o), 1);
  CHECK_EQ_STR(kl_obj_name(o), "a");
  kl_obj_unref(o);
  CHECK_EQ_INT(kl_list_decoder_next(d, &o), 1);
  CHECK_EQ_STR(kl_obj_name(o), "b");
  kl_obj_unref(o);
  CHECK_EQ_INT(kl_list_decoder_next(d, &o), 0);
  CHECK_EQ_INT(kl_list_decoder_finish(d), 0);
  CHECK_EQ_INT(kl_list_decoder_next(d, &o), 0);
  CHECK_EQ_STR(kl_list_decoder_meta(d).resource_version, "243");
  kl_list_decoder_free(d);

  /* with the kind given by the caller, items stream out at once */
  kl_obj_opts oo = {.drop = kl_obj_default_drop, .kind = "Widget",
                    .api_version = "test.example.com/v1"};
  d = kl_list_decoder_new(&oo, 0);
  kl_list_decoder_feed(d, CR_LIST, (size_t)(split - CR_LIST));
  CHECK_EQ_INT(kl_list_decoder_next(d, &o), 1);
  kl_span v;
  CHECK(kl_obj_get(o, "kind", &v) && kl_json_streq(v, "Widget"));
  kl_obj_unref(o);
  kl_list_decoder_free(d);

  /* a list without kind/apiVersion: the caller's fallback is used; held
   * items come out after finish */
  const char *bare = "{\"items\":[{\"metadata\":{\"name\":\"x\"}}]}";
  d = kl_list_decoder_new(&OPTS, 0);
  kl_list_decoder_feed(d, bare, strlen(bare));
  CHECK_EQ_INT(kl_list_decoder_next(d, &o), 0);
  CHECK_EQ_INT(kl_list_decoder_finish(d), 0);
  CHECK_EQ_INT(kl_list_decoder_next(d, &o), 1);
  CHECK(!kl_obj_get(o, "kind", &v));
  kl_obj_unref(o);
  kl_list_decoder_free(d);
  oo.kind = "Thing", oo.api_version = "x/v1";
  CHECK_EQ_INT(decode_str(bare, &oo, &l, &err), 0);
  CHECK(l.nitems == 1 && kl_obj_get(l.items[0], "kind", &v) &&
        kl_json_streq(v, "Thing"));
  CHECK_EQ_STR(l.kind, "");
  kl_list_free(&l);
}

TEST(empty_and_null_items) {
  kl_list l;
  char *err;
  CHECK_EQ_INT(decode_str("{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\","
                          "\"metadata\":{\"resourceVersion\":\"7\"},"
                          "\"items\":[]}\n", NULL, &l, &err), 0);
  CHECK_EQ_INT(l.nitems, 0);
  CHECK_EQ_STR(l.resource_version, "7");
  kl_list_free(&l);
  CHECK_EQ_INT(decode_str("{\"kind\":\"ConfigMapList\",\"items\":null}", NULL,
                          &l, &err), 0);
  CHECK_EQ_INT(l.nitems, 0);
  kl_list_free(&l);
  /* whitespace everywhere (pretty-printed) */
  CHECK_EQ_INT(decode_str(" {\n \"kind\" : \"PodList\" ,\n \"items\" : [\n  "
                          "{ \"metadata\" : { \"name\" : \"p\" } } ,\n  "
                          "{\"metadata\":{\"name\":\"q\"}}\n ] ,\n "
                          "\"metadata\" : { \"remainingItemCount\" : 12 }\n}\n",
                          NULL, &l, &err), 0);
  CHECK_EQ_INT(l.nitems, 2);
  CHECK_EQ_INT(l.remaining_item_count, 12);
  kl_span v;
  CHECK(l.nitems == 2 && kl_obj_get(l.items[1], "kind", &v) &&
        kl_json_streq(v, "Pod"));
  kl_list_free(&l);
}

TEST(malformed_bodies) {
  struct {
    const char *body;
    int rc;
    const char *msg;
  } t[] = {
      {"", KL_EPROTO, "ended early"},
      {"{\"kind\":\"ConfigMapList\",\"items\":[{\"metadata\":{\"name\":\"a\"}}",
       KL_EPROTO, "ended early (58 bytes, 1 items so far)"},
      {"{\"items\":[{\"metadata\":{\"name\":\"a\"}}]} x", KL_EJSON,
       "after the list"},
      {"{\"items\":[{\"metadata\":{\"name\":\"a\"}} {}]}", KL_EJSON,
       "expected ',' or ']' after item 0"},
      {"{\"items\":[1]}", KL_EINVAL, "list item 0"},
      {"{\"items\":[{\"metadata\":{\"name\":\"a\"}},{\"metadata\":{}}]}",
       KL_EINVAL, "list item 1 (15 bytes): object has no metadata.name"},
      {"{\"items\":[{\"metadata\":{\"name\":\"a\",}}]}", KL_EJSON,
       "malformed JSON"},
      {"{\"items\":{}}", KL_EPROTO, "\"items\" is not an array"},
      {"{\"items\":nul}", KL_EJSON, "\"items\" is not an array"},
      {"{\"kind\":\"ConfigMapList\" \"items\":[]}", KL_EJSON,
       "expected ',' or '}' at byte 24"},
      {"{\"kind\":tru,\"items\":[]}", KL_EJSON, "bad value"},
      {"{kind:1}", KL_EJSON, "expected a member name at byte 1"},
      {"{\"kind\" 1}", KL_EJSON, "expected ':'"},
      {"{\"kind\":\"a\nb\",\"items\":[]}", KL_EJSON, "control byte 0x0a"},
      {"[]", KL_EJSON, "not a JSON object"},
      {"{\"kind\":\"ConfigMapList\"}", KL_EPROTO, "no \"items\""},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    kl_list l;
    char *err = NULL;
    int rc = decode_str(t[i].body, NULL, &l, &err);
    if (rc != t[i].rc || !err || !strstr(err, t[i].msg))
      printf("  case %zu: rc %d err %s\n", i, rc, err ? err : "(null)");
    CHECK_EQ_INT(rc, t[i].rc);
    CHECK(err && strstr(err, t[i].msg));
    CHECK(l.items == NULL && l.nitems == 0);
    free(err);
  }
  /* every proper prefix of a real list is an error, never a short list */
  size_t n;
  char *body = tu_wire_body("list/configmaps_limit3_page1.http", &n);
  CHECK(body != NULL);
  if (!body) return;
  while (n > 0 && (body[n - 1] == '\n')) n--;
  int bad = 0;
  for (size_t k = 0; k < n; k++) {
    kl_list l;
    char *err = NULL;
    if (kl_list_decode(body, k, &OPTS, &l, &err) == 0) bad++, kl_list_free(&l);
    free(err);
  }
  CHECK_EQ_INT(bad, 0);
  free(body);
}

TEST(item_size_limit_and_reset) {
  const char *big = "{\"items\":[{\"metadata\":{\"name\":\"a\"},\"data\":"
                    "{\"k\":\"0123456789012345678901234567890123456789\"}}]}";
  kl_list_decoder *d = kl_list_decoder_new(&OPTS, 60);
  kl_obj *o;
  int rc = 0;
  /* stopped while the item is still arriving */
  for (size_t i = 0; big[i] && rc == 0; i++) {
    kl_list_decoder_feed(d, big + i, 1);
    rc = kl_list_decoder_next(d, &o);
  }
  CHECK_EQ_INT(rc, KL_EPROTO);
  CHECK(strstr(kl_list_decoder_error(d), "list item 0 exceeds the 60-byte "
                                         "limit") != NULL);
  CHECK(strstr(kl_list_decoder_error(d), "0123") == NULL);
  CHECK_EQ_INT(kl_list_decoder_next(d, &o), KL_EPROTO); /* sticky */
  CHECK_EQ_INT(kl_list_decoder_finish(d), KL_EPROTO);
  kl_list_decoder_reset(d);
  CHECK_EQ_STR(kl_list_decoder_error(d), "");
  const char *small = "{\"items\":[{\"metadata\":{\"name\":\"a\"}}]}";
  kl_list_decoder_feed(d, small, strlen(small));
  CHECK_EQ_INT(kl_list_decoder_next(d, &o), 0); /* held: kind unknown */
  CHECK_EQ_INT(kl_list_decoder_finish(d), 0);
  CHECK_EQ_INT(kl_list_decoder_next(d, &o), 1);
  CHECK_EQ_STR(kl_obj_name(o), "a");
  kl_obj_unref(o);
  kl_list_decoder_free(d);
}

/* Items bigger than the fast path's 1 MiB window still decode (framed),
 * between small ones, whole and streamed in 64 KiB feeds. */
TEST(items_over_the_fast_window) {
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\","
                  "\"items\":[{\"metadata\":{\"name\":\"s1\"}},"
                  "{\"metadata\":{\"name\":\"big\"},\"data\":{\"k\":\"");
  for (int i = 0; i < (3 << 20) / 8; i++) kl_buf_adds(&b, "abc\\ndef");
  kl_buf_adds(&b, "\"}},{\"metadata\":{\"name\":\"s2\"}}]}");
  kl_list l;
  char *err = NULL;
  CHECK_EQ_INT(kl_list_decode(b.data, b.len, &OPTS, &l, &err), 0);
  CHECK_EQ_INT(l.nitems, 3);
  if (l.nitems == 3) {
    CHECK_EQ_STR(kl_obj_name(l.items[1]), "big");
    size_t n;
    kl_obj_json(l.items[1], &n);
    CHECK(n > (size_t)3 << 20);
    CHECK_EQ_STR(kl_obj_name(l.items[2]), "s2");
  }
  kl_list_free(&l);
  free(err);
  kl_list_decoder *d = kl_list_decoder_new(&OPTS, 0);
  int got = 0, rc = 0;
  for (size_t at = 0; at < b.len && rc >= 0; at += 65536) {
    kl_list_decoder_feed(d, b.data + at, b.len - at < 65536 ? b.len - at
                                                            : 65536);
    kl_obj *o;
    while ((rc = kl_list_decoder_next(d, &o)) == 1) got++, kl_obj_unref(o);
  }
  CHECK_EQ_INT(kl_list_decoder_finish(d), 0);
  kl_obj *o;
  while (kl_list_decoder_next(d, &o) == 1) got++, kl_obj_unref(o);
  CHECK_EQ_INT(got, 3);
  kl_list_decoder_free(d);
  kl_buf_free(&b);
}

int main(void) {
  RUN(captured_lists_whole);
  RUN(captured_lists_streamed);
  RUN(not_a_list);
  RUN(kind_after_items);
  RUN(empty_and_null_items);
  RUN(malformed_bodies);
  RUN(item_size_limit_and_reset);
  RUN(items_over_the_fast_window);
  return ctest_summary();
}
