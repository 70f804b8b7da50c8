/* test_ingest.c: the fast ingest path (json.c compaction by runs, the
 * 8-byte string scan, kl_obj_opts.compacted, the watch decoder's one-pass
 * event decoding): same results as the plain definitions, and malformed
 * input is still rejected. */
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "json.h"
#include "object.h"
#include "watch_decode.h"

static char *compact(const char *in, const char *const *drop) {
  kl_buf b = KL_BUF_INIT;
  if (kl_json_compact(in, strlen(in), drop, &b) != 0) {
    kl_buf_free(&b);
    return NULL;
  }
  return kl_buf_detach(&b, NULL);
}

TEST(compact_drops_with_whitespace_and_duplicates) {
  static const struct {
    const char *in, *want;
  } cases[] = {
      {"{ \"metadata\" : { \"managedFields\" : [ 1 ] , \"name\" : \"n\" } }",
       "{\"metadata\":{\"name\":\"n\"}}"},
      {"{\"metadata\":{\"name\":\"n\" , \"managedFields\" : {}\n}}",
       "{\"metadata\":{\"name\":\"n\"}}"},
      {"{\"metadata\":{\"managedFields\":1}}", "{\"metadata\":{}}"},
      {"{\"metadata\":{ \"managedFields\":1 , \"managedFields\":2 }}",
       "{\"metadata\":{}}"},
      {"{\"metadata\":{\"a\":1, \"managedFields\":1,\"managedFields\":2 ,"
       "\"b\":[ 1 , 2 ]}}",
       "{\"metadata\":{\"a\":1,\"b\":[1,2]}}"},
      {"{\"metadata\":{\"managedFields\":1,\t\"managedFields\":2,\"b\":\"x y\"}}",
       "{\"metadata\":{\"b\":\"x y\"}}"},
      /* already compact: copied as is around the dropped member */
      {"{\"kind\":\"K\",\"metadata\":{\"name\":\"a\",\"managedFields\":[{\"m\":"
       "\"x\"}],\"uid\":\"u\"},\"data\":{\"k\":\"v \\\" \\\\ q\"}}",
       "{\"kind\":\"K\",\"metadata\":{\"name\":\"a\",\"uid\":\"u\"},\"data\":"
       "{\"k\":\"v \\\" \\\\ q\"}}"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *out = compact(cases[i].in, kl_obj_default_drop);
    CHECK(out != NULL);
    if (out) CHECK_EQ_STR(out, cases[i].want);
    free(out);
  }
}

TEST(compact_still_validates) {
  static const char *const bad[] = {
      "{\"metadata\":{\"managedFields\":[1,],\"name\":\"n\"}}", /* in a drop */
      "{\"metadata\":{\"name\":\"n\",}}",
      "{\"a\":\"tab\there\"}",
      "{\"a\":tru}",
      "{\"a\":1}}",
      "{\"a\":\"\\x\"}",
      "{\"a\" 1}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *out = compact(bad[i], kl_obj_default_drop);
    CHECK(out == NULL);
    free(out);
  }
}

TEST(compact_value_reports_its_end) {
  const char *s = "  {\"a\": [1, 2]}  ,\"rest\"";
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "x");
  const char *after = NULL;
  CHECK_EQ_INT(kl_json_compact_value(s, s + strlen(s), NULL, &b, &after), 0);
  CHECK_EQ_STR(b.data, "x{\"a\":[1,2]}");
  CHECK(after == strchr(s, '}') + 1);
  kl_buf_free(&b);
}

/* The span a capture slot names, as a NEW string ("" when absent). */
static char *slot(const kl_buf *b, const kl_json_capture *c, int i) {
  return kl_strndup(b->data + c->off[i], c->len[i]);
}

TEST(compact_capture_notes_top_level_members_in_the_output) {
  static const char *const drop[] = {"metadata.managedFields", "status",
                                     NULL};
  const char *in =
      " { \"status\" : {\"kind\":\"no\"} , \"kind\" : \"X\" , \"metadata\":"
      " {\"name\": \"a\", \"managedFields\" : [1] } ,\n \"apiVersion\" :"
      "\"v1\", \"data\": {\"kind\": \"inner\"}, \"kind\": \"second\" } ";
  kl_json_capture c = {.keys = {"metadata", "apiVersion", "kind"}};
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "prefix:"); /* offsets count from the value's start */
  size_t at = b.len;
  CHECK_EQ_INT(kl_json_compact_capture(in, strlen(in), drop, &b, &c), 0);
  CHECK_EQ_STR(b.data + at,
               "{\"kind\":\"X\",\"metadata\":{\"name\":\"a\"},"
               "\"apiVersion\":\"v1\",\"data\":{\"kind\":\"inner\"},"
               "\"kind\":\"second\"}");
  kl_buf v = KL_BUF_INIT;
  kl_buf_add(&v, b.data + at, b.len - at);
  char *m = slot(&v, &c, 0), *a = slot(&v, &c, 1), *k = slot(&v, &c, 2);
  CHECK_EQ_STR(m, "{\"name\":\"a\"}");
  CHECK_EQ_STR(a, "\"v1\"");
  CHECK_EQ_STR(k, "\"X\""); /* the first, top-level one */
  CHECK(!c.escaped);
  free(m), free(a), free(k);
  kl_buf_free(&v);
  kl_buf_free(&b);

  /* absent members, an escaped top-level key, a non-object */
  kl_json_capture d = {.keys = {"metadata", "kind"}};
  kl_buf e = KL_BUF_INIT;
  const char *esc = "{\"\\u006bind\":\"K\",\"x\":1}";
  CHECK_EQ_INT(kl_json_compact_capture(esc, strlen(esc), NULL, &e, &d), 0);
  CHECK(d.len[0] == 0 && d.len[1] == 0);
  CHECK(d.escaped);
  kl_buf_free(&e);
  e = (kl_buf)KL_BUF_INIT;
  CHECK_EQ_INT(kl_json_compact_capture("[1]", 3, NULL, &e, &d), 0);
  CHECK(d.len[0] == 0 && !d.escaped);
  kl_buf_free(&e);
  e = (kl_buf)KL_BUF_INIT;
  CHECK_EQ_INT(kl_json_compact_capture("{\"kind\":", 8, NULL, &e, &d),
               KL_EJSON);
  kl_buf_free(&e);
}

TEST(obj_new_reads_metadata_under_an_escaped_top_level_key) {
  /* the compaction's capture cannot match "meta\u0064ata": the object
   * must still get its name from it, and the injected kind must not
   * duplicate an escaped "kind" */
  const char *j = "{\"meta\\u0064ata\":{\"name\":\"n\",\"namespace\":\"ns\"},"
                  "\"\\u006bind\":\"Real\"}";
  kl_obj_opts o = {.api_version = "v1", .kind = "Injected"};
  kl_obj *obj = NULL;
  CHECK_EQ_INT(kl_obj_new(j, strlen(j), &o, &obj, NULL), 0);
  if (obj) {
    CHECK_EQ_STR(kl_obj_key(obj), "ns/n");
    size_t n;
    const char *js = kl_obj_json(obj, &n);
    CHECK(strstr(js, "Injected") == NULL);
    CHECK(strstr(js, "\"apiVersion\":\"v1\"") != NULL);
    kl_obj_unref(obj);
  }
  /* and the plain form captured in the same pass gives the same key */
  const char *p = "{\"metadata\":{\"name\":\"n\",\"namespace\":\"ns\"},"
                  "\"kind\":\"Real\"}";
  CHECK_EQ_INT(kl_obj_new(p, strlen(p), &o, &obj, NULL), 0);
  if (obj) {
    CHECK_EQ_STR(kl_obj_key(obj), "ns/n");
    CHECK_EQ_STR(kl_obj_json(obj, NULL),
                 "{\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"n\","
                 "\"namespace\":\"ns\"},\"kind\":\"Real\"}");
    kl_obj_unref(obj);
  }
}

TEST(obj_new_prefix_finds_the_end_or_reports_incomplete) {
  const char *s = " {\"metadata\":{\"name\":\"a\",\"managedFields\":[1]},"
                  "\"data\":{\"k\":\"v\"}} , {\"metadata\":";
  kl_obj_opts o = {.drop = kl_obj_default_drop, .kind = "ConfigMap",
                   .api_version = "v1", .compacted = true /* ignored */};
  kl_obj *obj = NULL;
  const char *after = NULL;
  CHECK_EQ_INT(kl_obj_new_prefix(s, strlen(s), &o, &obj, NULL, &after, NULL),
               0);
  CHECK(after == strstr(s, "} ,") + 1);
  if (obj) {
    CHECK_EQ_STR(kl_obj_json(obj, NULL),
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
                 "{\"name\":\"a\"},\"data\":{\"k\":\"v\"}}");
    kl_obj_unref(obj);
  }
  /* every cut before the closing brace is not an object (yet) */
  size_t end = (size_t)(after - s);
  int ok = 0;
  for (size_t n = 0; n < end; n++) {
    obj = NULL;
    if (kl_obj_new_prefix(s, n, &o, &obj, NULL, &after, NULL) == 0) ok++;
    kl_obj_unref(obj);
  }
  CHECK_EQ_INT(ok, 0);
  /* what follows the value is not looked at; a bad value still fails */
  const char *t = "{\"metadata\":{\"name\":\"b\"}}garbage";
  kl_buf scratch = KL_BUF_INIT; /* a reused scratch buffer gives the same */
  CHECK_EQ_INT(kl_obj_new_prefix(t, strlen(t), &o, &obj, NULL, &after,
                                 &scratch),
               0);
  CHECK_EQ_STR(after, "garbage");
  kl_obj_unref(obj);
  char *err = NULL;
  const char *u = "{\"metadata\":{\"name\":\"b\",}}";
  CHECK_EQ_INT(kl_obj_new_prefix(u, strlen(u), &o, &obj, &err, &after,
                                 &scratch),
               KL_EJSON);
  CHECK(err != NULL);
  free(err);
  CHECK_EQ_INT(kl_obj_new_prefix(s, strlen(s), &o, &obj, NULL, &after,
                                 &scratch),
               0);
  if (obj) CHECK_EQ_STR(kl_obj_name(obj), "a");
  kl_obj_unref(obj);
  kl_buf_free(&scratch);
}

TEST(plain_run_finds_every_special_byte_at_every_offset) {
  /* offsets span the 16-byte vector blocks, the 8-byte words and the
   * byte tail; the first special byte wins, a special past end is unseen */
  static const char specials[] = {'"', '\\', '\n', '\0', 0x01, 0x1f};
  char buf[70];
  for (size_t s = 0; s < sizeof specials; s++) {
    for (size_t at = 0; at < sizeof buf; at++) {
      memset(buf, 'a', sizeof buf);
      buf[at] = specials[s];
      CHECK(kl_json_plain_run(buf, buf + sizeof buf) == buf + at);
      if (at + 1 < sizeof buf) {
        buf[at + 1] = '"';
        CHECK(kl_json_plain_run(buf, buf + sizeof buf) == buf + at);
      }
      CHECK(kl_json_plain_run(buf, buf + at) == buf + at);
    }
  }
  /* space, DEL and bytes >= 0x80 (UTF-8) are plain */
  static const unsigned char plain[] = {' ', 0x7f, 0x80, 0xc3, 0xff};
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (char)plain[i % sizeof plain];
  CHECK(kl_json_plain_run(buf, buf + sizeof buf) == buf + sizeof buf);
  CHECK(kl_json_plain_run(buf, buf + 5) == buf + 5);
  CHECK(kl_json_plain_run(buf, buf) == buf);
}

TEST(skip_valid_skips_values_and_stays_in_bounds) {
  const char *v = "{\"a\":\"}\\\"]\",\"b\":[1,{\"c\":null}]} tail";
  CHECK(kl_json_skip_valid(v, v + strlen(v)) == strstr(v, " tail"));
  const char *n = "-12.5e3,";
  CHECK(kl_json_skip_valid(n, n + strlen(n)) == n + 7);
  /* invalid or truncated input: never past the end, always forward */
  static const char *const junk[] = {"{\"a\":[1,", "\"abc\\", "}", ",", "\"",
                                     ""};
  for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
    const char *p = junk[i], *end = p + strlen(p);
    const char *q = kl_json_skip_valid(p, end);
    CHECK(q <= end);
    if (p < end) CHECK(q > p);
  }
}

static kl_obj *obj_new(const char *json, const kl_obj_opts *o) {
  kl_obj *obj = NULL;
  if (kl_obj_new(json, strlen(json), o, &obj, NULL) != 0) return NULL;
  return obj;
}

TEST(obj_new_compacted_input_gives_the_same_object) {
  const char *raw = "{ \"metadata\": {\"managedFields\": [], \"namespace\": "
                    "\"ns\", \"na\\u006de\": \"a\\/b\", \"uid\": null, "
                    "\"resourceVersion\": \"7\"}, \"data\": {}}";
  kl_obj_opts o = {.drop = kl_obj_default_drop, .api_version = "v1",
                   .kind = "ConfigMap"};
  kl_obj *a = obj_new(raw, &o);
  CHECK(a != NULL);
  char *c = compact(raw, kl_obj_default_drop);
  kl_obj_opts oc = o;
  oc.compacted = true;
  kl_obj *b = c ? obj_new(c, &oc) : NULL;
  CHECK(b != NULL);
  if (a && b) {
    CHECK_EQ_STR(kl_obj_json(a, NULL), kl_obj_json(b, NULL));
    CHECK_EQ_STR(kl_obj_json(a, NULL),
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
                 "{\"namespace\":\"ns\",\"na\\u006de\":\"a\\/b\",\"uid\":null,"
                 "\"resourceVersion\":\"7\"},\"data\":{}}");
    CHECK_EQ_STR(kl_obj_key(b), "ns/a/b");
    CHECK_EQ_STR(kl_obj_name(b), "a/b");
    CHECK_EQ_STR(kl_obj_uid(b), "");
    CHECK_EQ_STR(kl_obj_resource_version(b), "7");
  }
  free(c);
  kl_obj_unref(a);
  kl_obj_unref(b);
}

TEST(obj_new_rejects_what_it_did_before) {
  /* an empty name is no name; a non-string name is an error */
  CHECK(obj_new("{\"metadata\":{\"name\":\"\"}}", NULL) == NULL);
  CHECK(obj_new("{\"metadata\":{\"name\":null}}", NULL) == NULL);
  CHECK(obj_new("{\"metadata\":{\"name\":\"a\",\"uid\":5}}", NULL) == NULL);
  CHECK(obj_new("{\"metadata\":[]}", NULL) == NULL);
  CHECK(obj_new("[]", NULL) == NULL);
  /* the first of duplicate members wins, as kl_json_get finds it */
  kl_obj *o = obj_new("{\"metadata\":{\"name\":\"a\",\"name\":\"b\"}}", NULL);
  CHECK(o && strcmp(kl_obj_name(o), "a") == 0);
  kl_obj_unref(o);
}

TEST(watch_event_object_is_validated_and_compacted_once) {
  kl_obj_opts o = {.drop = kl_obj_default_drop, .api_version = "v1",
                   .kind = "ConfigMap"};
  kl_watch_decoder *d = kl_watch_decoder_new(&o, 0);
  const char *s =
      "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\","
      "\"managedFields\":[{\"x\":1}],\"resourceVersion\":\"5\"}}}\n"
      "{ \"object\" : { \"kind\" : \"ConfigMap\", \"metadata\" : { \"name\" :"
      " \"b\" } } , \"type\" : \"MODIFIED\" }\n";
  kl_watch_decoder_feed(d, s, strlen(s));
  kl_watch_event ev;
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), 1);
  CHECK_EQ_INT(ev.type, KL_WATCH_ADDED);
  CHECK_EQ_STR(kl_obj_json(ev.obj, NULL),
               "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
               "\"name\":\"a\",\"resourceVersion\":\"5\"}}");
  kl_watch_event_clear(&ev);
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), 1);
  CHECK_EQ_INT(ev.type, KL_WATCH_MODIFIED);
  CHECK_EQ_STR(kl_obj_json(ev.obj, NULL),
               "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
               "\"name\":\"b\"}}");
  kl_watch_event_clear(&ev);
  CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), 0);
  kl_watch_decoder_free(d);

  /* malformed JSON inside the object (balanced, so the framing accepts
   * it) never reaches kl_obj_new unvalidated */
  static const char *const bad[] = {
      "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",}}}\n",
      "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\","
      "\"managedFields\":[1 2]}}}\n",
      "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":tru}}}\n",
      "{\"type\":\"ADDED\" \"object\":{\"metadata\":{\"name\":\"a\"}}}\n",
      "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}},}\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    d = kl_watch_decoder_new(&o, 0);
    kl_watch_decoder_feed(d, bad[i], strlen(bad[i]));
    CHECK_EQ_INT(kl_watch_decoder_next(d, &ev), KL_EJSON);
    CHECK(ev.obj == NULL);
    kl_watch_decoder_free(d);
  }
}

int main(void) {
  RUN(compact_drops_with_whitespace_and_duplicates);
  RUN(compact_still_validates);
  RUN(compact_value_reports_its_end);
  RUN(compact_capture_notes_top_level_members_in_the_output);
  RUN(obj_new_reads_metadata_under_an_escaped_top_level_key);
  RUN(obj_new_prefix_finds_the_end_or_reports_incomplete);
  RUN(plain_run_finds_every_special_byte_at_every_offset);
  RUN(skip_valid_skips_values_and_stays_in_bounds);
  RUN(obj_new_compacted_input_gives_the_same_object);
  RUN(obj_new_rejects_what_it_did_before);
  RUN(watch_event_object_is_validated_and_compacted_once);
  return ctest_summary();
}
