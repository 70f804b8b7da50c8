/* fuzz_label_selector.c: selector.c's label selectors. Input: a selector
 * string, optionally a NUL byte and a JSON object to match against.
 * Checks: kl_selector_parse returns a selector or KL_EINVAL with a message;
 * the canonical string of a parsed selector parses again to the same
 * canonical string and matches the same objects; matching a span and the
 * same object as a cJSON tree agree (when the object has no duplicate keys
 * or escapes, where the two views may legitimately differ); the input as a
 * metav1.LabelSelector JSON goes through kl_selector_from_json and
 * kl_selector_from_cjson with the same outcome. */
#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "selector.h"

static const char *const fixed[] = {
    ("{\"metadata\":{\"labels\":{\"app\":\"web\",\"tier\":\"front\","
     "\"n\":\"5\",\"example.com/x\":\"\"}}}"),
    "{\"metadata\":{\"labels\":{}}}",
    "{\"metadata\":{}}",
    "{\"metadata\":{\"labels\":{\"app\":7,\"n\":\"-12\",\"env\":\"prod\"}}}",
};

static int has_dups(const cJSON *o) {
  if (!o) return 0;
  for (const cJSON *a = o->child; a; a = a->next) {
    if (cJSON_IsObject(o))
      for (const cJSON *b = a->next; b; b = b->next)
        if (a->string && b->string && !strcmp(a->string, b->string)) return 1;
    if (has_dups(a)) return 1;
  }
  return 0;
}

static void match_all(const kl_selector *s1, const kl_selector *s2,
                      const char *doc, size_t n) {
  kl_span sp = {doc, n};
  bool a = kl_selector_matches_json(s1, sp);
  if (s2) FZ_ASSERT(a == kl_selector_matches_json(s2, sp));
  char *z = kl_strndup(doc, n);
  cJSON *j = cJSON_Parse(z);
  if (j && !memchr(doc, '\\', n) && !has_dups(j))
    FZ_ASSERT(a == kl_selector_matches_cjson(s1, j));
  kl_span labels;
  if (kl_json_get(sp, "metadata.labels", &labels))
    FZ_ASSERT(a == kl_selector_matches_labels(s1, labels));
  kl_obj *obj = NULL;
  if (kl_obj_new(doc, n, &(kl_obj_opts){.allow_unnamed = true}, &obj, NULL) == 0) {
    FZ_ASSERT(a == kl_selector_matches_obj(s1, obj));
    kl_obj_unref(obj);
  }
  cJSON_Delete(j);
  free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  const char *a, *b;
  size_t an, bn;
  fz_split(data, size, &a, &an, &b, &bn);
  char *s = kl_strndup(a, an);
  kl_selector *sel = NULL;
  char *err = NULL;
  int rc = kl_selector_parse(s, &sel, &err);
  if (rc == 0) {
    FZ_ASSERT(sel && !kl_selector_matches_nothing(sel));
    for (size_t i = 0; i < kl_selector_count(sel); i++) {
      const char *key;
      kl_sel_op op;
      const char *const *vals;
      size_t nv;
      kl_selector_requirement(sel, i, &key, &op, &vals, &nv);
      FZ_ASSERT(key && *key);
      for (size_t k = 0; k < nv; k++) FZ_ASSERT(vals[k]);
    }
    char *c1 = kl_selector_string(sel);
    kl_selector *sel2 = NULL;
    char *err2 = NULL;
    if (kl_selector_parse(c1, &sel2, &err2) != 0) {
      fprintf(stderr, "canonical \"%s\" does not parse: %s\n", c1, err2);
      FZ_ASSERT(!"canonical string does not parse back");
    }
    char *c2 = kl_selector_string(sel2);
    FZ_ASSERT(!strcmp(c1, c2));
    FZ_ASSERT(kl_selector_empty(sel) == (c1[0] == '\0'));
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
      match_all(sel, sel2, fixed[i], strlen(fixed[i]));
    if (bn && kl_json_validate(b, bn) == 0) match_all(sel, sel2, b, bn);
    free(c1);
    free(c2);
    free(err2);
    kl_selector_free(sel2);
  } else {
    FZ_ASSERT(rc == KL_EINVAL && sel == NULL && err && *err);
  }
  free(err);
  kl_selector_free(sel);
  free(s);

  /* the first part as a LabelSelector object */
  if (kl_json_validate(a, an) == 0) {
    kl_span sp = {a, an};
    kl_selector *js = NULL, *cs = NULL;
    char *e1 = NULL, *e2 = NULL;
    int r1 = kl_selector_from_json(sp, &js, &e1);
    char *z = kl_strndup(a, an);
    cJSON *tree = cJSON_Parse(z);
    if (tree) {
      int r2 = kl_selector_from_cjson(tree, &cs, &e2);
      if (!memchr(a, '\\', an) && !has_dups(tree)) {
        FZ_ASSERT((r1 == 0) == (r2 == 0));
        if (r1 == 0) {
          char *x = kl_selector_string(js), *y = kl_selector_string(cs);
          FZ_ASSERT(!strcmp(x, y));
          free(x);
          free(y);
        }
      }
    }
    if (r1 == 0) {
      for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        match_all(js, NULL, fixed[i], strlen(fixed[i]));
    } else {
      FZ_ASSERT(e1 && *e1);
    }
    cJSON_Delete(tree);
    free(z);
    free(e1);
    free(e2);
    kl_selector_free(js);
    kl_selector_free(cs);
  }
  return 0;
}
