/* test_fuzz_regressions.c: every input the libFuzzer targets (tests/fuzz/)
 * found crashing, leaking or breaking an invariant, replayed through the
 * same code path under ASan/UBSan with the result the fixed code must give.
 * The inputs live in tests/fuzz/regressions/<target>-<what>; they are also
 * seeds of their target in `make fuzz`. See docs/fuzzing.md. */
#include <cjson/cJSON.h>
#include <stdbool.h>

#include "ctest.h"
#include "json.h"
#include "kl.h"
#include "list_decode.h"
#include "manifest.h"
#include "object.h"
#include "patch.h"
#include "selector.h"

/* Reads tests/fuzz/regressions/<name> (run from the repository root, as
 * run-tests.sh does). Returns a NEW buffer (NUL-terminated) or NULL. */
static char *load(const char *name, size_t *len) {
  char *path = kl_sprintf("tests/fuzz/regressions/%s", name);
  FILE *f = fopen(path, "rb");
  free(path);
  if (!f) return NULL;
  kl_buf b = KL_BUF_INIT;
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) kl_buf_add(&b, tmp, n);
  fclose(f);
  kl_buf_add(&b, "", 0);
  return kl_buf_detach(&b, len);
}

/* Splits at the first NUL as the two-document targets do: NEW trees. */
static void load_pair(const char *name, cJSON **a, cJSON **b) {
  size_t n = 0;
  char *d = load(name, &n);
  *a = *b = NULL;
  if (!d) {
    printf("  cannot read tests/fuzz/regressions/%s\n", name);
    return;
  }
  size_t an = strlen(d);
  *a = cJSON_ParseWithLength(d, an);
  if (an < n) *b = cJSON_ParseWithLength(d + an + 1, n - an - 1);
  free(d);
}

static const char *entry_field(const cJSON *obj, const char *manager,
                               const char *field) {
  const cJSON *mf = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "managedFields");
  const cJSON *e;
  cJSON_ArrayForEach(e, mf) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "manager");
    if (cJSON_IsString(m) && !strcmp(m->valuestring, manager)) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, field);
      return cJSON_IsString(v) ? v->valuestring : NULL;
    }
  }
  return NULL;
}

/* fuzz_strategic_patch: server-side apply by a manager whose existing Apply
 * entry has no "time" leaked the new time string (cJSON's Replace does not
 * add a missing member) and left the entry without a time. */
TEST(apply_entry_without_time) {
  cJSON *live, *applied;
  load_pair("fuzz_strategic_patch-apply-entry-without-time", &live, &applied);
  CHECK(live && applied);
  if (!live || !applied) goto out;
  cJSON *out = NULL;
  kl_patch_err err = KL_PATCH_ERR_INIT;
  int rc = kl_patch_apply(live, applied, "other", false,
                          "2026-01-02T03:04:05Z", NULL, &out, &err);
  CHECK_EQ_INT(rc, 0);
  if (out) {
    CHECK_EQ_STR(entry_field(out, "other", "time"), "2026-01-02T03:04:05Z");
    CHECK_EQ_STR(entry_field(out, "other", "apiVersion"), "v1");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(out, "data");
    CHECK_EQ_STR(cJSON_GetStringValue(
                     cJSON_GetObjectItemCaseSensitive(data, "k")), "w");
    CHECK_EQ_STR(cJSON_GetStringValue(
                     cJSON_GetObjectItemCaseSensitive(data, "j")), "x");
  }
  cJSON_Delete(out);
  kl_patch_err_free(&err);
  /* the same gap on the Update path (kl_patch_record_update) */
  cJSON *obj = cJSON_Duplicate(live, 1);
  cJSON_ReplaceItemInObjectCaseSensitive(
      obj, "data", cJSON_Parse("{\"k\":\"changed\"}"));
  cJSON *mf = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(live, "metadata"), "managedFields");
  cJSON *upd = cJSON_Parse("{\"manager\":\"kubectl\",\"operation\":\"Update\","
                           "\"apiVersion\":\"v1\"}");
  cJSON_AddItemToArray(mf, upd);
  kl_patch_record_update(live, obj, "kubectl", "2026-01-02T03:04:05Z", "v1");
  CHECK_EQ_STR(entry_field(obj, "kubectl", "time"), "2026-01-02T03:04:05Z");
  cJSON_Delete(obj);
out:
  cJSON_Delete(live);
  cJSON_Delete(applied);
}

/* fuzz_list_decode: a member value that is empty (":,") and starts exactly
 * where the buffer was compacted to (a feed ending after the ':') was taken
 * for "value not complete yet" (end index 0 doubled as "not found"), so the
 * streaming decoder buffered the rest of the body and reported "ended
 * early" (KL_EPROTO) instead of failing at once with KL_EJSON as
 * kl_list_decode does. */
TEST(list_empty_value_at_chunk_start) {
  size_t n = 0;
  char *body = load("fuzz_list_decode-empty-value-at-chunk-start", &n);
  CHECK(body != NULL);
  if (!body) return;
  kl_list l;
  char *err = NULL;
  CHECK_EQ_INT(kl_list_decode(body, n, NULL, &l, &err), KL_EJSON);
  CHECK(err && strstr(err, "bad value of 0 bytes at byte 14"));
  free(err);
  for (size_t step = 1; step <= 16; step++) {
    kl_list_decoder *d = kl_list_decoder_new(NULL, 0);
    kl_obj *item = NULL;
    int rc = 0;
    size_t off = 0;
    for (; off < n && rc == 0; off += step) {
      kl_list_decoder_feed(d, body + off, n - off < step ? n - off : step);
      rc = kl_list_decoder_next(d, &item);
    }
    CHECK_EQ_INT(rc, KL_EJSON);
    CHECK(off <= 14 + step); /* failed as soon as the ',' arrived */
    CHECK(strstr(kl_list_decoder_error(d), "bad value of 0 bytes at byte 14"));
    kl_list_decoder_free(d);
  }
  free(body);
}

/* fuzz_json_to_lua, fuzz_list_decode: kl_obj_new built the key "ns/name"
 * by appending from its own buffer (b.data + ns) with kl_buf_adds, which
 * may realloc that buffer first: a use-after-free, and without ASan a
 * garbage cache key, whenever the append crossed the buffer's capacity. */
TEST(obj_key_copied_from_moved_buffer) {
  size_t n = 0;
  char *json = load("fuzz_json_to_lua-obj-key-copied-from-moved-buffer", &n);
  CHECK(json != NULL);
  if (!json) return;
  kl_obj *o = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_obj_new(json, n, NULL, &o, &err), 0);
  if (o) {
    char *want = kl_sprintf("%s/%s", kl_obj_namespace(o), kl_obj_name(o));
    CHECK_EQ_STR(kl_obj_key(o), want);
    free(want);
  }
  kl_obj_unref(o);
  free(err);
  free(json);
  /* every length around the buffer's growth points */
  for (size_t nl = 1; nl < 300; nl += 7) {
    for (size_t ml = 1; ml < 300; ml += 3) {
      kl_buf b = KL_BUF_INIT;
      kl_buf_adds(&b, "{\"metadata\":{\"namespace\":\"");
      for (size_t i = 0; i < nl; i++) kl_buf_addc(&b, 'a' + (char)(i % 26));
      kl_buf_adds(&b, "\",\"name\":\"");
      for (size_t i = 0; i < ml; i++) kl_buf_addc(&b, 'A' + (char)(i % 26));
      kl_buf_adds(&b, "\"}}");
      o = NULL;
      CHECK_EQ_INT(kl_obj_new(b.data, b.len, NULL, &o, NULL), 0);
      if (o) {
        char *want = kl_sprintf("%s/%s", kl_obj_namespace(o), kl_obj_name(o));
        CHECK(strlen(kl_obj_namespace(o)) == nl && strlen(kl_obj_name(o)) == ml);
        CHECK_EQ_STR(kl_obj_key(o), want);
        free(want);
      }
      kl_obj_unref(o);
      kl_buf_free(&b);
    }
  }
}

/* fuzz_field_selector: kl_fieldsel_matches_cjson cast a number field to
 * long long before checking its range: UB (UBSan: "1e+300 is outside the
 * range of representable values") for 1e300 or an infinite 1e400. */
TEST(fieldsel_number_outside_long_long) {
  cJSON *obj;
  size_t n = 0;
  char *d = load("fuzz_field_selector-number-outside-long-long", &n);
  CHECK(d != NULL);
  if (!d) return;
  obj = cJSON_Parse(d + strlen(d) + 1);
  CHECK(obj != NULL);
  kl_fieldsel *fs = NULL;
  CHECK_EQ_INT(kl_fieldsel_parse(d, &fs, NULL), 0); /* "spec.big=1" */
  CHECK(!kl_fieldsel_matches_cjson(fs, obj));
  kl_fieldsel_free(fs);
  const char *const sels[] = {"spec.inf=1", "spec.big!=1", "spec.n=3"};
  const bool want[] = {false, true, true};
  cJSON_AddNumberToObject(cJSON_GetObjectItem(obj, "spec"), "n", 3);
  for (int i = 0; i < 3; i++) {
    fs = NULL;
    CHECK_EQ_INT(kl_fieldsel_parse(sels[i], &fs, NULL), 0);
    CHECK(kl_fieldsel_matches_cjson(fs, obj) == want[i]);
    kl_fieldsel_free(fs);
  }
  cJSON_Delete(obj);
  free(d);
}

/* fuzz_manifest: kl_yaml_emit wrote strings holding U+2028/U+2029 (or NEL,
 * BOM, DEL, C1 controls, U+FFFF) plain or JSON-quoted, but YAML reads those as line breaks even in
 * quotes: the key "k\u2029" came back as a broken document. */
TEST(yaml_emit_line_separator) {
  size_t n = 0;
  char *text = load("fuzz_manifest-yaml-line-separator-in-key", &n);
  CHECK(text != NULL);
  if (!text) return;
  cJSON *doc = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_manifest_parse_one(text, n, &doc, &err), 0); /* {"k\P"} */
  if (doc) {
    cJSON_AddStringToObject(doc, "v", "a\xE2\x80\xA8" "b\nc\xC2\x85");
    cJSON_AddStringToObject(doc, "w", "\xEF\xBB\xBF" "x");
    /* fuzz_manifest-yaml-del-in-string: DEL and C1 controls, raw even in
     * quotes, are not allowed in YAML */
    size_t dn = 0;
    char *del = load("fuzz_manifest-yaml-del-in-string", &dn);
    cJSON *d2 = NULL;
    CHECK(del && kl_manifest_parse_one(del, dn, &d2, NULL) == 0);
    if (d2) cJSON_AddItemToObject(doc, "d2", d2);
    free(del);
    cJSON_AddStringToObject(doc, "x", "a\x7f" "b\xC2\x80" "c\xEF\xBF\xBF");
    char *y = kl_yaml_emit(doc);
    cJSON *back = NULL;
    char *err2 = NULL;
    CHECK_EQ_INT(kl_manifest_parse_one(y, strlen(y), &back, &err2), 0);
    CHECK(back && cJSON_Compare(doc, back, 1));
    CHECK(cJSON_GetObjectItemCaseSensitive(back, "k\xE2\x80\xA9") != NULL);
    CHECK(strstr(y, "\\u2029") != NULL);
    cJSON_Delete(back);
    free(err2);
    free(y);
  }
  cJSON_Delete(doc);
  free(err);
  free(text);
}

/* fuzz_manifest: a string ending in two or more newlines was emitted as
 * '|"...\n\n"' (the block indicator, then a JSON-quoted string): invalid
 * YAML. */
TEST(yaml_emit_trailing_blank_lines) {
  size_t n = 0;
  char *text = load("fuzz_manifest-yaml-trailing-blank-lines", &n);
  CHECK(text != NULL);
  if (!text) return;
  cJSON *docs = NULL;
  CHECK_EQ_INT(kl_manifest_parse(text, n, NULL, 0, &docs, NULL), 0);
  const cJSON *doc;
  cJSON_ArrayForEach(doc, docs) {
    char *y = kl_yaml_emit(doc);
    cJSON *back = NULL;
    CHECK_EQ_INT(kl_manifest_parse_one(y, strlen(y), &back, NULL), 0);
    CHECK(back && cJSON_Compare(doc, back, 1));
    cJSON_Delete(back);
    free(y);
  }
  cJSON_Delete(docs);
  free(text);
}

/* fuzz_manifest: a multi-line string starting with a tab went into a "|"
 * block, where libyaml reads the leading tab as bad indentation. */
TEST(yaml_emit_block_starting_with_tab) {
  size_t n = 0;
  char *text = load("fuzz_manifest-yaml-block-starting-with-tab", &n);
  CHECK(text != NULL);
  if (!text) return;
  cJSON *doc = NULL, *back = NULL;
  CHECK_EQ_INT(kl_manifest_parse_one(text, n, &doc, NULL), 0);
  char *y = doc ? kl_yaml_emit(doc) : NULL;
  if (y) {
    CHECK_EQ_INT(kl_manifest_parse_one(y, strlen(y), &back, NULL), 0);
    CHECK(back && cJSON_Compare(doc, back, 1));
  }
  free(y);
  cJSON_Delete(doc);
  cJSON_Delete(back);
  free(text);
}

/* fuzz_manifest: a mapping key longer than YAML's 1024-character limit for
 * simple keys was emitted as "key: value", which does not read back; it now
 * takes the explicit form "? key" / ": value". The saved inputs
 * (fuzz_manifest-long-key-*) hold such keys with quotes and backslashes;
 * here, plain long keys at the top level, nested, and in a list item. */
TEST(yaml_emit_long_keys) {
  char key[1501];
  memset(key, 'k', 1500);
  key[1500] = 0;
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, key, "top");
  cJSON *inner = cJSON_AddObjectToObject(doc, "inner");
  cJSON_AddNumberToObject(cJSON_AddObjectToObject(inner, key), "n", 1);
  cJSON *item = cJSON_CreateObject();
  cJSON_AddStringToObject(item, key, "in a list");
  cJSON_AddItemToArray(cJSON_AddArrayToObject(doc, "list"), item);
  char *y = kl_yaml_emit(doc);
  cJSON *back = NULL;
  CHECK_EQ_INT(kl_manifest_parse_one(y, strlen(y), &back, NULL), 0);
  CHECK(back && cJSON_Compare(doc, back, 1));
  for (const char *name = "fuzz_manifest-long-key-3adc3e5bdf2c347ee186693fab3113adea069544";
       name; name = NULL) {
    size_t n = 0;
    char *text = load(name, &n);
    CHECK(text != NULL);
    cJSON *docs = NULL;
    if (text && kl_manifest_parse(text, n, NULL, 0, &docs, NULL) == 0) {
      const cJSON *d;
      cJSON_ArrayForEach(d, docs) {
        char *yy = kl_yaml_emit(d);
        cJSON *bb = NULL;
        CHECK_EQ_INT(kl_manifest_parse_one(yy, strlen(yy), &bb, NULL), 0);
        CHECK(bb && cJSON_Compare(d, bb, 1));
        cJSON_Delete(bb);
        free(yy);
      }
    }
    cJSON_Delete(docs);
    free(text);
  }
  cJSON_Delete(back);
  cJSON_Delete(doc);
  free(y);
}

int main(void) {
  kl_log_set_level(KL_LOG_ERROR);
  RUN(apply_entry_without_time);
  RUN(list_empty_value_at_chunk_start);
  RUN(obj_key_copied_from_moved_buffer);
  RUN(fieldsel_number_outside_long_long);
  RUN(yaml_emit_line_separator);
  RUN(yaml_emit_trailing_blank_lines);
  RUN(yaml_emit_block_starting_with_tab);
  RUN(yaml_emit_long_keys);
  return ctest_summary();
}
