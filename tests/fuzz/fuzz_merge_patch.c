/* fuzz_merge_patch.c: patch.c's RFC 7386 JSON merge patch. Input: target
 * JSON, a NUL byte, the patch JSON. kl_patch_merge never fails; checks the
 * RFC's properties: the inputs are not modified, a non-object patch replaces
 * the target, every non-null member of an object patch is in the result,
 * null members are absent, applying the same patch twice changes nothing
 * more (merge patches are idempotent), and {} changes nothing. */
#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "patch.h"

static cJSON *parse(const char *p, size_t n) {
  char *z = kl_strndup(p, n);
  cJSON *j = cJSON_ParseWithLength(z, n);
  free(z);
  return j;
}


static int has_dups(const cJSON *o) {
  for (const cJSON *a = o->child; a; a = a->next) {
    if (cJSON_IsObject(o))
      for (const cJSON *b = a->next; b; b = b->next)
        if (a->string && b->string && !strcmp(a->string, b->string)) return 1;
    if (has_dups(a)) return 1;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  const char *a, *b;
  size_t an, bn;
  fz_split(data, size, &a, &an, &b, &bn);
  cJSON *target = parse(a, an);
  cJSON *patch = parse(b, bn);
  if (!patch) {
    cJSON_Delete(target);
    return 0;
  }
  cJSON *t0 = target ? cJSON_Duplicate(target, 1) : NULL;
  cJSON *p0 = cJSON_Duplicate(patch, 1);
  cJSON *out = kl_patch_merge(target, patch);
  FZ_ASSERT(out != NULL);
  int cmp = fz_comparable(patch) && (!target || fz_comparable(target)) &&
            !has_dups(patch) && (!target || !has_dups(target));
  if (cmp) {
    if (target) FZ_ASSERT(cJSON_Compare(t0, target, 1));
    FZ_ASSERT(cJSON_Compare(p0, patch, 1));
    if (!cJSON_IsObject(patch)) {
      FZ_ASSERT(cJSON_Compare(out, patch, 1));
    } else {
      FZ_ASSERT(cJSON_IsObject(out));
      const cJSON *m;
      cJSON_ArrayForEach(m, patch) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(out, m->string);
        if (cJSON_IsNull(m)) FZ_ASSERT(r == NULL);
        else FZ_ASSERT(r != NULL);
        if (r && !cJSON_IsObject(m)) FZ_ASSERT(cJSON_Compare(r, m, 1));
      }
      cJSON *twice = kl_patch_merge(out, patch);
      FZ_ASSERT(cJSON_Compare(twice, out, 1));
      cJSON_Delete(twice);
      cJSON *empty = cJSON_CreateObject();
      cJSON *same = kl_patch_merge(out, empty);
      FZ_ASSERT(cJSON_Compare(same, out, 1));
      cJSON_Delete(same);
      cJSON_Delete(empty);
    }
  }
  cJSON_Delete(out);
  cJSON_Delete(t0);
  cJSON_Delete(p0);
  cJSON_Delete(target);
  cJSON_Delete(patch);
  return 0;
}
