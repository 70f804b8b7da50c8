/* fuzz_strategic_patch.c: patch.c's strategic merge patch, server-side
 * apply and managedFields bookkeeping. Input: live object JSON, a NUL byte,
 * the patch (or applied configuration) JSON. kl_patch_strategic and
 * kl_patch_apply (with and without force) must return 0 with a NEW tree or
 * an error with a known code and a message, never modify their inputs; a
 * successful apply re-applied by the same manager must succeed, and
 * kl_patch_record_update must cope with any pair of objects. */
#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "patch.h"

static cJSON *parse(const char *p, size_t n) {
  char *z = kl_strndup(p, n);
  cJSON *j = cJSON_ParseWithLength(z, n);
  free(z);
  return j;
}

static void check_err(int rc, const cJSON *out, const kl_patch_err *e) {
  FZ_ASSERT(out == NULL);
  FZ_ASSERT(rc == KL_EINVAL || rc == KL_EEXIST || rc == KL_ENOENT);
  FZ_ASSERT(e->code == 400 || e->code == 409 || e->code == 422);
  FZ_ASSERT(e->reason && e->message && *e->message);
  if (rc == KL_EEXIST) FZ_ASSERT(e->nconflicts > 0);
}

static const char *NOW = "2026-01-02T03:04:05Z";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_quiet();
  const char *a, *b;
  size_t an, bn;
  fz_split(data, size, &a, &an, &b, &bn);
  cJSON *live = parse(a, an);
  cJSON *patch = parse(b, bn);
  if (!live || !patch) {
    cJSON_Delete(live);
    cJSON_Delete(patch);
    return 0;
  }
  cJSON *l0 = cJSON_Duplicate(live, 1), *p0 = cJSON_Duplicate(patch, 1);
  int cmp = fz_comparable(live) && fz_comparable(patch);

  cJSON *out = NULL;
  kl_patch_err e = KL_PATCH_ERR_INIT;
  int rc = kl_patch_strategic(live, patch, &out, &e);
  if (rc == 0) FZ_ASSERT(out);
  else check_err(rc, out, &e);
  kl_patch_err_free(&e);
  cJSON_Delete(out);

  for (int force = 0; force < 2; force++) {
    out = NULL;
    kl_patch_err ae = KL_PATCH_ERR_INIT;
    rc = kl_patch_apply(force ? live : NULL, patch, "fuzz", force, NOW, "v1",
                        &out, &ae);
    if (rc == 0) {
      FZ_ASSERT(out);
      cJSON *again = NULL;
      kl_patch_err ae2 = KL_PATCH_ERR_INIT;
      int rc2 = kl_patch_apply(out, patch, "fuzz", false, NOW, "v1", &again,
                               &ae2);
      FZ_ASSERT(rc2 == 0 || !cJSON_IsObject(patch));
      if (rc2 != 0) check_err(rc2, again, &ae2);
      kl_patch_err_free(&ae2);
      cJSON_Delete(again);
    } else {
      check_err(rc, out, &ae);
      for (size_t i = 0; i < ae.nconflicts; i++)
        FZ_ASSERT(ae.conflicts[i].manager && ae.conflicts[i].field);
    }
    kl_patch_err_free(&ae);
    cJSON_Delete(out);
  }
  out = NULL;
  kl_patch_err ae = KL_PATCH_ERR_INIT;
  rc = kl_patch_apply(live, patch, "other", false, NOW, NULL, &out, &ae);
  if (rc != 0) check_err(rc, out, &ae);
  kl_patch_err_free(&ae);
  cJSON_Delete(out);

  cJSON *obj = cJSON_Duplicate(patch, 1);
  kl_patch_record_update(live, obj, "fuzz", NOW, "v1");
  kl_patch_record_update(NULL, obj, "kubectl", NOW, "v1");
  cJSON_Delete(obj);

  if (cmp) {
    FZ_ASSERT(cJSON_Compare(l0, live, 1));
    FZ_ASSERT(cJSON_Compare(p0, patch, 1));
  }
  char *m = kl_patch_manager_from_user_agent(a);
  FZ_ASSERT(m);
  free(m);
  cJSON_Delete(l0);
  cJSON_Delete(p0);
  cJSON_Delete(live);
  cJSON_Delete(patch);
  return 0;
}
