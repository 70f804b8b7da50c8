/* test_core.c: the JSON scanner, kl_obj and the hash map. */
#include <stdint.h>

#include "ctest.h"
#include "hmap.h"
#include "json.h"
#include "object.h"

static kl_obj *mk(const char *json, const kl_obj_opts *o) {
  kl_obj *obj = NULL;
  char *err = NULL;
  int rc = kl_obj_new(json, strlen(json), o, &obj, &err);
  if (rc != 0) printf("  kl_obj_new: %s\n", err ? err : "?");
  free(err);
  return obj;
}

TEST(compact_drops_managed_fields) {
  const char *in =
      "{ \"kind\" : \"ConfigMap\",\n \"metadata\": {\"name\": \"a b\", "
      "\"managedFields\": [{\"manager\":\"x\"}], \"namespace\":\"ns\"},"
      " \"data\": {\"k\": \"v \\\" q\"} }";
  kl_buf b = KL_BUF_INIT;
  CHECK_EQ_INT(kl_json_compact(in, strlen(in), kl_obj_default_drop, &b), 0);
  CHECK_EQ_STR(b.data, "{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a b\","
                       "\"namespace\":\"ns\"},\"data\":{\"k\":\"v \\\" q\"}}");
  kl_buf_free(&b);
  /* managedFields first and last in metadata */
  const char *in2 = "{\"metadata\":{\"managedFields\":[],\"name\":\"n\"}}";
  CHECK_EQ_INT(kl_json_compact(in2, strlen(in2), kl_obj_default_drop, &b), 0);
  CHECK_EQ_STR(b.data, "{\"metadata\":{\"name\":\"n\"}}");
  kl_buf_free(&b);
  const char *in3 = "{\"metadata\":{\"name\":\"n\",\"managedFields\":[]}}";
  CHECK_EQ_INT(kl_json_compact(in3, strlen(in3), kl_obj_default_drop, &b), 0);
  CHECK_EQ_STR(b.data, "{\"metadata\":{\"name\":\"n\"}}");
  kl_buf_free(&b);
  /* a nested "managedFields" elsewhere is kept */
  const char *in4 = "{\"spec\":{\"metadata\":{\"managedFields\":1}}}";
  CHECK_EQ_INT(kl_json_compact(in4, strlen(in4), kl_obj_default_drop, &b), 0);
  CHECK_EQ_STR(b.data, in4);
  kl_buf_free(&b);
}

TEST(malformed_json_rejected) {
  const char *bad[] = {"",         "{",           "{\"a\":}",   "[1,]",
                       "{\"a\" 1}", "\"\\x\"",     "01",         "1.",
                       "tru",      "{\"a\":1}}",  "\"a\nb\"",   "[1 2]",
                       "{,}",      "\"\\u12g4\"", "-",          "{\"a\":1,}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = kl_json_validate(bad[i], strlen(bad[i]));
    if (rc != KL_EJSON) printf("  accepted: %s\n", bad[i]);
    CHECK_EQ_INT(rc, KL_EJSON);
  }
  const char *good[] = {"0", "-1.5e+3", "\"\\u00e9\\n\"", "[]", "{}", " null ",
                        "[true,false,{\"a\":[1,{}]}]"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    CHECK_EQ_INT(kl_json_validate(good[i], strlen(good[i])), 0);
}

TEST(deep_nesting_is_an_error_not_a_crash) {
  size_t n = 100000;
  char *s = malloc(n * 2 + 1);
  memset(s, '[', n);
  memset(s + n, ']', n);
  s[2 * n] = 0;
  CHECK_EQ_INT(kl_json_validate(s, 2 * n), KL_EJSON);
  free(s);
}

TEST(get_iterate_unescape) {
  const char *j = "{\"metadata\":{\"labels\":{\"app\":\"web\",\"t\\u0069er\":"
                  "\"fr\\u00e9nt\"}},\"arr\":[1,\"two\",{}]}";
  kl_span obj = {j, strlen(j)}, v, k;
  CHECK(kl_json_get(obj, "metadata.labels.app", &v));
  CHECK(kl_json_streq(v, "web"));
  CHECK(kl_json_get(obj, "metadata.labels.tier", &v));
  char *s = kl_json_strdup(v);
  CHECK_EQ_STR(s, "fr\xc3\xa9nt");
  free(s);
  CHECK(!kl_json_get(obj, "metadata.nope", &v));
  CHECK(!kl_json_get(obj, "arr.x", &v));
  kl_json_iter it;
  CHECK(kl_json_get(obj, "arr", &v));
  kl_json_iter_init(&it, v);
  int n = 0;
  while (kl_json_next(&it, &k, &v)) n++;
  CHECK_EQ_INT(n, 3);
  kl_buf q = KL_BUF_INIT;
  kl_json_quote(&q, "a\"b\\c\n\x01", 7);
  CHECK_EQ_STR(q.data, "\"a\\\"b\\\\c\\n\\u0001\"");
  kl_buf_free(&q);
}

TEST(object_metadata_and_key) {
  kl_obj *o = mk("{\"metadata\":{\"name\":\"web\",\"namespace\":\"prod\","
                 "\"resourceVersion\":\"42\",\"uid\":\"u-1\"}}",
                 NULL);
  CHECK(o != NULL);
  if (!o) return;
  CHECK_EQ_STR(kl_obj_key(o), "prod/web");
  CHECK_EQ_STR(kl_obj_name(o), "web");
  CHECK_EQ_STR(kl_obj_namespace(o), "prod");
  CHECK_EQ_STR(kl_obj_resource_version(o), "42");
  CHECK_EQ_STR(kl_obj_uid(o), "u-1");
  kl_obj *o2 = kl_obj_ref(o);
  kl_obj_unref(o);
  CHECK_EQ_STR(kl_obj_key(o2), "prod/web"); /* still valid */
  kl_obj_unref(o2);

  kl_obj *c = mk("{\"metadata\":{\"name\":\"node-1\"}}", NULL);
  CHECK_EQ_STR(kl_obj_key(c), "node-1");
  CHECK_EQ_STR(kl_obj_namespace(c), "");
  kl_obj_unref(c);
}

TEST(object_injects_kind_and_rejects_bad) {
  kl_obj_opts o = {.drop = kl_obj_default_drop, .api_version = "v1",
                   .kind = "ConfigMap"};
  kl_obj *a = mk("{\"metadata\":{\"name\":\"x\"}}", &o);
  size_t n;
  CHECK_EQ_STR(kl_obj_json(a, &n), "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
                                   "\"metadata\":{\"name\":\"x\"}}");
  kl_obj_unref(a);
  kl_obj *b = mk("{\"kind\":\"Other\",\"metadata\":{\"name\":\"x\"}}", &o);
  CHECK_EQ_STR(kl_obj_json(b, &n), "{\"apiVersion\":\"v1\",\"kind\":\"Other\","
                                   "\"metadata\":{\"name\":\"x\"}}");
  kl_obj_unref(b);

  struct { const char *j; int rc; const char *msg; } cases[] = {
      {"{\"metadata\":{}}", KL_EINVAL, "object has no metadata.name"},
      {"{}", KL_EINVAL, "object has no metadata.name"},
      {"[1]", KL_EINVAL, "object is not a JSON object"},
      {"{\"metadata\":{\"name\":", KL_EJSON, "malformed JSON object"},
      {"{\"metadata\":{\"name\":7}}", KL_EINVAL, NULL},
      {"{\"metadata\":[]}", KL_EINVAL, "metadata is not an object"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kl_obj *x = NULL;
    char *err = NULL;
    int rc = kl_obj_new(cases[i].j, strlen(cases[i].j), NULL, &x, &err);
    CHECK_EQ_INT(rc, cases[i].rc);
    CHECK(x == NULL);
    CHECK(err != NULL);
    if (cases[i].msg) CHECK_EQ_STR(err, cases[i].msg);
    free(err);
  }
  kl_obj_opts un = {.allow_unnamed = true};
  kl_obj *bm = mk("{\"metadata\":{\"resourceVersion\":\"9\"}}", &un);
  CHECK(bm != NULL);
  if (bm) CHECK_EQ_STR(kl_obj_resource_version(bm), "9");
  kl_obj_unref(bm);
}

TEST(empty_strings_are_terminated) {
  kl_span e = {"\"\"", 2};
  char *s = kl_json_strdup(e);
  CHECK(s != NULL);
  if (s) CHECK_EQ_INT(strlen(s), 0);
  free(s);
  kl_buf b = KL_BUF_INIT;
  kl_buf_reserve(&b, 10);
  CHECK_EQ_STR(b.data, "");
  kl_buf_free(&b);
}

TEST(hmap_churn) {
  kl_hmap m;
  kl_hmap_init(&m, KL_HMAP_OWN_KEYS);
  char k[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(k, sizeof k, "ns/obj-%d", i);
    CHECK(kl_hmap_put(&m, k, (void *)(intptr_t)(i + 1)) == NULL);
  }
  CHECK_EQ_INT(kl_hmap_len(&m), 5000);
  for (int i = 0; i < 5000; i += 2) {
    snprintf(k, sizeof k, "ns/obj-%d", i);
    bool found;
    CHECK_EQ_INT((intptr_t)kl_hmap_del(&m, k, &found), i + 1);
    CHECK(found);
  }
  for (int i = 0; i < 5000; i++) {
    snprintf(k, sizeof k, "ns/obj-%d", i);
    CHECK_EQ_INT((intptr_t)kl_hmap_get(&m, k), i % 2 ? i + 1 : 0);
  }
  size_t it = 0, n = 0;
  const char *key;
  while (kl_hmap_next(&m, &it, &key, NULL)) n++;
  CHECK_EQ_INT(n, 2500);
  size_t cap = m.cap;
  for (int round = 0; round < 20; round++)
    for (int i = 0; i < 2500; i++) {
      snprintf(k, sizeof k, "churn-%d-%d", round, i);
      kl_hmap_put(&m, k, (void *)1);
      kl_hmap_del(&m, k, NULL);
    }
  CHECK_EQ_INT(m.cap, cap); /* no tombstone creep */
  kl_hmap_free(&m);
}

int main(void) {
  RUN(compact_drops_managed_fields);
  RUN(malformed_json_rejected);
  RUN(deep_nesting_is_an_error_not_a_crash);
  RUN(get_iterate_unescape);
  RUN(object_metadata_and_key);
  RUN(object_injects_kind_and_rejects_bad);
  RUN(empty_strings_are_terminated);
  RUN(hmap_churn);
  return ctest_summary();
}
