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

static void roundtrip(const cJSON *doc) {
  if (!fz_comparable(doc)) return; /* inf/nan never compare equal */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
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
