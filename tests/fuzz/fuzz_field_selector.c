/* fuzz_field_selector.c: selector.c's field selectors. Input: a selector
 * string, optionally a NUL byte and a JSON object to match against.
 * Checks: kl_fieldsel_parse returns a selector or KL_EINVAL with a message;
 * the canonical string parses back to the same canonical string and the
 * same terms; matching a span, a kl_obj and a cJSON tree agree (when the
 * object has no numbers, escapes or duplicate keys: number text and the
 * first-of-duplicates rule may legitimately differ between the views); and
 * every matcher runs on the raw object, numbers included, without UB. */
#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "selector.h"

static const char *const fixed[] = {
    ("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\"},\"spec\":"
     "{\"nodeName\":\"\"},\"status\":{\"phase\":\"Running\"}}"),
    ("{\"metadata\":{\"name\":\"a,b=c\\\\\"},\"spec\":{\"replicas\":3,"
     "\"x\":true,\"y\":null,\"big\":1e300,\"neg\":-1.5e-7}}"),
    "{}",
};

static int plain(const cJSON *o) {
  for (const cJSON *a = o->child; a; a = a->next) {
    if (cJSON_IsNumber(a)) return 0;
    if (cJSON_IsObject(o))
      for (const cJSON *b = a->next; b; b = b->next)
        if (a->string && b->string && !strcmp(a->string, b->string)) return 0;
    if (!plain(a)) return 0;
  }
  return 1;
}

static void match_all(const kl_fieldsel *f1, const kl_fieldsel *f2,
                      const char *doc, size_t n) {
  kl_span sp = {doc, n};
  bool a = kl_fieldsel_matches_json(f1, sp);
  FZ_ASSERT(a == kl_fieldsel_matches_json(f2, sp));
  char *z = kl_strndup(doc, n);
  cJSON *j = cJSON_Parse(z);
  if (j) {
    bool c = kl_fieldsel_matches_cjson(f1, j);
    if (!memchr(doc, '\\', n) && plain(j)) FZ_ASSERT(a == c);
  }
  kl_obj *obj = NULL;
  if (kl_obj_new(doc, n, &(kl_obj_opts){.allow_unnamed = true}, &obj, NULL) == 0) {
    FZ_ASSERT(a == kl_fieldsel_matches_obj(f1, obj));
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
  kl_fieldsel *fs = NULL;
  char *err = NULL;
  int rc = kl_fieldsel_parse(s, &fs, &err);
  if (rc == 0) {
    size_t n = kl_fieldsel_count(fs);
    for (size_t i = 0; i < n; i++) {
      FZ_ASSERT(kl_fieldsel_field(fs, i) && kl_fieldsel_value(fs, i));
      (void)kl_fieldsel_negated(fs, i);
    }
    char *c1 = kl_fieldsel_string(fs);
    kl_fieldsel *fs2 = NULL;
    char *err2 = NULL;
    if (kl_fieldsel_parse(c1, &fs2, &err2) != 0) {
      fprintf(stderr, "canonical \"%s\" does not parse: %s\n", c1, err2);
      FZ_ASSERT(!"canonical string does not parse back");
    }
    char *c2 = kl_fieldsel_string(fs2);
    FZ_ASSERT(!strcmp(c1, c2));
    FZ_ASSERT(kl_fieldsel_count(fs2) == n);
    FZ_ASSERT(kl_fieldsel_empty(fs) == (n == 0));
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
      match_all(fs, fs2, fixed[i], strlen(fixed[i]));
    if (bn && kl_json_validate(b, bn) == 0) match_all(fs, fs2, b, bn);
    free(c1);
    free(c2);
    free(err2);
    kl_fieldsel_free(fs2);
  } else {
    FZ_ASSERT(rc == KL_EINVAL && fs == NULL && err && *err);
  }
  free(err);
  kl_fieldsel_free(fs);
  free(s);
  return 0;
}
