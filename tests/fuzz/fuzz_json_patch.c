/* fuzz_json_patch.c: patch.c's RFC 6902 JSON patch and RFC 6901 pointers.
 * Input: target JSON, a NUL byte, the operations JSON (no NUL: the input
 * is the target, with ops []). kl_patch_json must return 0 with a NEW tree
 * or an error with code 400/422 and a message, never touch the target, and
 * be all-or-nothing; every "path"/"from" of the ops also goes through
 * kl_json_pointer_get on the target and the result. */
#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "patch.h"

static cJSON *parse(const char *p, size_t n) {
  char *z = kl_strndup(p, n);
  cJSON *j = cJSON_ParseWithLength(z, n);
  free(z);
  return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  const char *a, *b;
  size_t an, bn;
  fz_split(data, size, &a, &an, &b, &bn);
  cJSON *target = parse(a, an);
  if (!target) return 0;
  cJSON *ops = bn ? parse(b, bn) : cJSON_CreateArray();
  if (!ops) {
    cJSON_Delete(target);
    return 0;
  }
  cJSON *before = cJSON_Duplicate(target, 1);
  cJSON *out = NULL;
  kl_patch_err err = KL_PATCH_ERR_INIT;
  int rc = kl_patch_json(target, ops, &out, &err);
  if (rc == 0) {
    FZ_ASSERT(out != NULL);
    char *s = cJSON_PrintUnformatted(out);
    FZ_ASSERT(s);
    free(s);
    if (cJSON_IsArray(ops) && cJSON_GetArraySize(ops) == 0 &&
        fz_comparable(target))
      FZ_ASSERT(cJSON_Compare(out, target, 1));
  } else {
    FZ_ASSERT(out == NULL);
    FZ_ASSERT(rc == KL_EINVAL || rc == KL_ENOENT);
    FZ_ASSERT(err.code == 400 || err.code == 422);
    FZ_ASSERT(err.reason && err.message && *err.message);
  }
  /* the target is only read */
  if (fz_comparable(before))
    FZ_ASSERT(cJSON_Compare(before, target, 1));
  if (cJSON_IsArray(ops)) {
    const cJSON *op;
    cJSON_ArrayForEach(op, ops) {
      const cJSON *p = cJSON_GetObjectItemCaseSensitive(op, "path");
      const cJSON *f = cJSON_GetObjectItemCaseSensitive(op, "from");
      if (cJSON_IsString(p)) {
        (void)kl_json_pointer_get(target, p->valuestring);
        if (out) (void)kl_json_pointer_get(out, p->valuestring);
      }
      if (cJSON_IsString(f)) (void)kl_json_pointer_get(target, f->valuestring);
    }
  }
  kl_patch_err_free(&err);
  cJSON_Delete(out);
  cJSON_Delete(before);
  cJSON_Delete(target);
  cJSON_Delete(ops);
  return 0;
}
