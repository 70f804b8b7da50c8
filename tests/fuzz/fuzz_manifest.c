/* fuzz_manifest.c: manifest.c's YAML/JSON manifest parser and YAML emitter.
 * The input is parsed as one apply body (kl_manifest_parse_one) and as a
 * multi-document stream (kl_manifest_parse, with and without list
 * expansion). Each must return a NEW tree or KL_EINVAL with a message.
 * Every parsed document is emitted with kl_yaml_emit and parsed back: the
 * round trip must give an equal document (the emitter must quote whatever
 * would be read back as another type). */
#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "manifest.h"

static int check_roundtrip;

/* JSON bodies (parsed by cJSON) may repeat a key; YAML rejects that. */
static int has_dups(const cJSON *o) {
  for (const cJSON *a = o->child; a; a = a->next) {
    if (cJSON_IsObject(o))
      for (const cJSON *b = a->next; b; b = b->next)
        if (a->string && b->string && !strcmp(a->string, b->string)) return 1;
    if (has_dups(a)) return 1;
  }
  return 0;
}

static void roundtrip(const cJSON *doc) {
  if (!check_roundtrip || !fz_comparable(doc) || has_dups(doc)) return; /* inf/nan never compare equal */
  char *y = kl_yaml_emit(doc);
  FZ_ASSERT(y);
  cJSON *back = NULL;
  char *err = NULL;
  int rc = kl_manifest_parse_one(y, strlen(y), &back, &err);
  if (rc != 0 || !cJSON_Compare(doc, back, 1)) {
    char *j = cJSON_PrintUnformatted(doc);
    char *k = back ? cJSON_PrintUnformatted(back) : NULL;
    fprintf(stderr, "doc:  %s\nyaml:\n%s\nback: %s\nerr: %s\n", j, y,
            k ? k : "(none)", err ? err : "");
    free(j);
    free(k);
    FZ_ASSERT(!"kl_yaml_emit output does not parse back to the same object");
  }
  cJSON_Delete(back);
  free(err);
  free(y);
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
 * JSON bodies go through cJSON, which keeps invalid UTF-8 in strings that
 * YAML (libyaml) cannot read back, so only valid input is round-tripped. */
static int utf8_ok(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t k;
    uint32_t cp;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xC2 && c <= 0xDF) k = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) k = 2, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) k = 3, cp = c & 0x07;
    else return 0;
    if (i + k >= n) return 0;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (s[i + j] & 0x3F);
    }
    if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += k + 1;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  /* \u escapes in JSON can also produce what YAML cannot hold */
  check_roundtrip = utf8_ok(data, size) && !memmem(data, size, "\\u", 2);
  const char *text = (const char *)data;
  cJSON *one = NULL;
  char *err = NULL;
  int rc = kl_manifest_parse_one(text, size, &one, &err);
  if (rc == 0) {
    FZ_ASSERT(cJSON_IsObject(one));
    roundtrip(one);
  } else {
    FZ_ASSERT(rc == KL_EINVAL && one == NULL && err && *err);
  }
  cJSON_Delete(one);
  free(err);

  for (int flags = 0; flags <= KL_MANIFEST_EXPAND_LISTS; flags++) {
    cJSON *docs = NULL;
    err = NULL;
    rc = kl_manifest_parse(text, size, "fuzz.yaml", flags, &docs, &err);
    if (rc == 0) {
      FZ_ASSERT(cJSON_IsArray(docs));
      const cJSON *d;
      if (flags == 0) cJSON_ArrayForEach(d, docs) roundtrip(d);
    } else {
      FZ_ASSERT(rc == KL_EINVAL && docs == NULL && err && *err);
      FZ_ASSERT(!strncmp(err, "fuzz.yaml", 9));
    }
    cJSON_Delete(docs);
    free(err);
  }
  return 0;
}
