/* test_patch.c: JSON merge patch (RFC 7386 appendix A), JSON patch (RFC
 * 6902 appendix A and kube-apiserver's error mapping), strategic merge
 * patch (merge keys, directives) and server-side apply (ownership,
 * conflicts as in writes/ssa_*.http, force, no-op re-apply). */
#include "ctest.h"
#include "patch.h"
#include "testutil.h"

static cJSON *J(const char *s) {
  cJSON *v = cJSON_Parse(s);
  if (!v) printf("  bad test JSON: %s\n", s);
  return v;
}

static bool merge_is(const char *target, const char *patch, const char *want) {
  cJSON *t = J(target), *p = J(patch);
  cJSON *r = kl_patch_merge(t, p);
  bool ok = tu_json_same(r, want);
  cJSON_Delete(t);
  cJSON_Delete(p);
  cJSON_Delete(r);
  return ok;
}

TEST(merge_patch_rfc7386_examples) {
  CHECK(merge_is("{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"));
  CHECK(merge_is("{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"));
  CHECK(merge_is("{\"a\":\"b\"}", "{\"a\":null}", "{}"));
  CHECK(merge_is("{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"));
  CHECK(merge_is("{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"));
  CHECK(merge_is("{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"));
  CHECK(merge_is("{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}",
                 "{\"a\":{\"b\":\"d\"}}"));
  CHECK(merge_is("{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"));
  CHECK(merge_is("[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"));
  CHECK(merge_is("{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"));
  CHECK(merge_is("{\"a\":\"foo\"}", "null", "null"));
  CHECK(merge_is("{\"a\":\"foo\"}", "\"bar\"", "\"bar\""));
  CHECK(merge_is("{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"));
  CHECK(merge_is("[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"));
  CHECK(merge_is("{}", "{\"a\":{\"bb\":{\"ccc\":null}}}",
                 "{\"a\":{\"bb\":{}}}"));
  /* the capture cm_merge_patch: null deletes b, adds c and a label */
  CHECK(merge_is("{\"metadata\":{\"name\":\"cfg\"},\"data\":{\"a\":\"1\","
                 "\"b\":\"2\"}}",
                 "{\"metadata\":{\"labels\":{\"x\":\"y\"}},\"data\":{\"b\":"
                 "null,\"c\":\"3\"}}",
                 "{\"metadata\":{\"name\":\"cfg\",\"labels\":{\"x\":\"y\"}},"
                 "\"data\":{\"a\":\"1\",\"c\":\"3\"}}"));
}

/* Applies a JSON patch; returns the rc and fills *res (NEW) / err. */
static int jp(const char *target, const char *ops, cJSON **res,
              kl_patch_err *err) {
  cJSON *t = J(target), *o = J(ops);
  int rc = kl_patch_json(t, o, res, err);
  cJSON_Delete(t);
  cJSON_Delete(o);
  return rc;
}

static bool jp_is(const char *target, const char *ops, const char *want) {
  cJSON *r = NULL;
  kl_patch_err err = KL_PATCH_ERR_INIT;
  int rc = jp(target, ops, &r, &err);
  if (rc) printf("  json patch failed: %s\n", err.detail ? err.detail : "");
  bool ok = rc == 0 && tu_json_same(r, want);
  cJSON_Delete(r);
  kl_patch_err_free(&err);
  return ok;
}

TEST(json_patch_rfc6902_examples) {
  /* A.1 - A.16 */
  CHECK(jp_is("{\"foo\":\"bar\"}",
              "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\"}]",
              "{\"baz\":\"qux\",\"foo\":\"bar\"}"));
  CHECK(jp_is("{\"foo\":[\"bar\",\"baz\"]}",
              "[{\"op\":\"add\",\"path\":\"/foo/1\",\"value\":\"qux\"}]",
              "{\"foo\":[\"bar\",\"qux\",\"baz\"]}"));
  CHECK(jp_is("{\"baz\":\"qux\",\"foo\":\"bar\"}",
              "[{\"op\":\"remove\",\"path\":\"/baz\"}]", "{\"foo\":\"bar\"}"));
  CHECK(jp_is("{\"foo\":[\"bar\",\"qux\",\"baz\"]}",
              "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]",
              "{\"foo\":[\"bar\",\"baz\"]}"));
  CHECK(jp_is("{\"baz\":\"qux\",\"foo\":\"bar\"}",
              "[{\"op\":\"replace\",\"path\":\"/baz\",\"value\":\"boo\"}]",
              "{\"baz\":\"boo\",\"foo\":\"bar\"}"));
  CHECK(jp_is("{\"foo\":{\"bar\":\"baz\",\"waldo\":\"fred\"},\"qux\":{"
              "\"corge\":\"grault\"}}",
              "[{\"op\":\"move\",\"from\":\"/foo/waldo\",\"path\":\"/qux/"
              "thud\"}]",
              "{\"foo\":{\"bar\":\"baz\"},\"qux\":{\"corge\":\"grault\","
              "\"thud\":\"fred\"}}"));
  CHECK(jp_is("{\"foo\":[\"all\",\"grass\",\"cows\",\"eat\"]}",
              "[{\"op\":\"move\",\"from\":\"/foo/1\",\"path\":\"/foo/3\"}]",
              "{\"foo\":[\"all\",\"cows\",\"eat\",\"grass\"]}"));
  CHECK(jp_is("{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}",
              "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"qux\"},"
              "{\"op\":\"test\",\"path\":\"/foo/1\",\"value\":2}]",
              "{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}"));
  CHECK(jp_is("{\"foo\":\"bar\"}",
              "[{\"op\":\"add\",\"path\":\"/child\",\"value\":{\"grandchild\""
              ":{}}}]",
              "{\"foo\":\"bar\",\"child\":{\"grandchild\":{}}}"));
  CHECK(jp_is("{\"foo\":\"bar\"}",
              "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\",\"xyz\":"
              "123}]",
              "{\"foo\":\"bar\",\"baz\":\"qux\"}"));
  CHECK(jp_is("{\"/\":9,\"~1\":10}",
              "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":10}]",
              "{\"/\":9,\"~1\":10}"));
  CHECK(jp_is("{\"foo\":[\"bar\"]}",
              "[{\"op\":\"add\",\"path\":\"/foo/-\",\"value\":[\"abc\","
              "\"def\"]}]",
              "{\"foo\":[\"bar\",[\"abc\",\"def\"]]}"));
  CHECK(jp_is("{\"a/b\":1}",
              "[{\"op\":\"copy\",\"from\":\"/a~1b\",\"path\":\"/c\"}]",
              "{\"a/b\":1,\"c\":1}"));
  /* the finalizer_remove capture: remove the only finalizer */
  CHECK(jp_is("{\"metadata\":{\"finalizers\":[\"example.com/x\"]}}",
              "[{\"op\":\"remove\",\"path\":\"/metadata/finalizers/0\"}]",
              "{\"metadata\":{\"finalizers\":[]}}"));
  /* replace of a missing map key succeeds (200 in v1.20) */
  CHECK(jp_is("{\"data\":{\"k\":\"v2\"}}",
              "[{\"op\":\"replace\",\"path\":\"/data/nokey\",\"value\":\"x\"}]",
              "{\"data\":{\"k\":\"v2\",\"nokey\":\"x\"}}"));
  CHECK(jp_is("{}", "null", "{}"));
}

TEST(json_patch_errors) {
  cJSON *r = NULL;
  kl_patch_err err = KL_PATCH_ERR_INIT;
  /* errors/400_json_patch_not_array.http */
  CHECK_EQ_INT(jp("{}", "{\"op\":\"replace\",\"path\":\"/data/k\",\"value\":"
                        "\"x\"}",
                  &r, &err),
               KL_EINVAL);
  CHECK_EQ_INT(err.code, 400);
  CHECK_EQ_STR(err.reason, "BadRequest");
  CHECK_EQ_STR(err.message, "json: cannot unmarshal object into Go value of "
                            "type jsonpatch.Patch");
  CHECK(r == NULL);
  /* errors/422_json_patch_test_failed.http: generic message, all or none */
  CHECK_EQ_INT(jp("{\"data\":{\"k\":\"v\"}}",
                  "[{\"op\":\"test\",\"path\":\"/data/k\",\"value\":\"not-the-"
                  "value\"},{\"op\":\"replace\",\"path\":\"/data/k\",\"value\""
                  ":\"new\"}]",
                  &r, &err),
               KL_EINVAL);
  CHECK_EQ_INT(err.code, 422);
  CHECK_EQ_STR(err.reason, "Invalid");
  CHECK_EQ_STR(err.message, "the server rejected our request due to an error "
                            "in our request");
  CHECK(err.detail && strstr(err.detail, "test failed"));
  /* missing paths */
  CHECK_EQ_INT(jp("{\"a\":1}", "[{\"op\":\"remove\",\"path\":\"/b\"}]", &r,
                  &err),
               KL_ENOENT);
  CHECK_EQ_INT(err.code, 422);
  CHECK_EQ_INT(jp("{\"a\":1}",
                  "[{\"op\":\"add\",\"path\":\"/x/y\",\"value\":1}]", &r, &err),
               KL_ENOENT);
  CHECK_EQ_INT(jp("{\"a\":[1]}",
                  "[{\"op\":\"add\",\"path\":\"/a/5\",\"value\":1}]", &r, &err),
               KL_ENOENT);
  CHECK_EQ_INT(jp("{\"a\":[1]}",
                  "[{\"op\":\"replace\",\"path\":\"/a/1\",\"value\":1}]", &r,
                  &err),
               KL_ENOENT);
  CHECK_EQ_INT(jp("{\"a\":1}",
                  "[{\"op\":\"move\",\"from\":\"/b\",\"path\":\"/c\"}]", &r,
                  &err),
               KL_ENOENT);
  CHECK_EQ_INT(jp("{\"a\":{}}",
                  "[{\"op\":\"move\",\"from\":\"/a\",\"path\":\"/a/b\"}]", &r,
                  &err),
               KL_EINVAL);
  /* malformed operations are found while applying: 422 */
  CHECK_EQ_INT(jp("{}", "[{\"op\":\"frob\",\"path\":\"/a\"}]", &r, &err),
               KL_EINVAL);
  CHECK_EQ_INT(err.code, 422);
  CHECK_EQ_INT(jp("{}", "[{\"op\":\"add\",\"path\":\"/a\"}]", &r, &err),
               KL_EINVAL);
  CHECK_EQ_INT(jp("{}", "[{\"op\":\"add\",\"value\":1}]", &r, &err),
               KL_EINVAL);
  CHECK_EQ_INT(jp("{}", "[{\"op\":\"add\",\"path\":\"a\",\"value\":1}]", &r,
                  &err),
               KL_EINVAL);
  CHECK_EQ_INT(jp("{}", "[{\"op\":\"add\",\"path\":\"/~2\",\"value\":1}]", &r,
                  &err),
               KL_EINVAL);
  CHECK_EQ_INT(jp("{}", "[\"add\"]", &r, &err), KL_EINVAL);
  CHECK_EQ_INT(err.code, 400);
  CHECK(r == NULL);
  kl_patch_err_free(&err);
}

TEST(json_pointer) {
  cJSON *d = J("{\"a\":{\"b/c\":[1,{\"~\":2}]}}");
  CHECK(kl_json_pointer_get(d, "") == d);
  cJSON *v = kl_json_pointer_get(d, "/a/b~1c/1/~0");
  CHECK(cJSON_IsNumber(v) && v->valueint == 2);
  CHECK(kl_json_pointer_get(d, "/a/b~1c/01") == NULL);
  CHECK(kl_json_pointer_get(d, "/a/b~1c/-") == NULL);
  CHECK(kl_json_pointer_get(d, "a") == NULL);
  CHECK(kl_json_pointer_get(d, "/x") == NULL);
  cJSON_Delete(d);
}

static bool smp_is(const char *target, const char *patch, const char *want) {
  cJSON *t = J(target), *p = J(patch), *r = NULL;
  kl_patch_err err = KL_PATCH_ERR_INIT;
  int rc = kl_patch_strategic(t, p, &r, &err);
  if (rc) printf("  smp failed: %s\n", err.message);
  bool ok = rc == 0 && tu_json_same(r, want);
  cJSON_Delete(t);
  cJSON_Delete(p);
  cJSON_Delete(r);
  kl_patch_err_free(&err);
  return ok;
}

#define DEPLOY_CONTAINERS(c) \
  "{\"spec\":{\"template\":{\"spec\":{\"containers\":" c "}}}}"

TEST(strategic_merge_by_key) {
  /* writes/deployment_strategic_merge_patch.http: sidecar image changed,
   * app kept, extra added */
  CHECK(smp_is(
      DEPLOY_CONTAINERS("[{\"name\":\"app\",\"image\":\"nginx\"},{\"name\":"
                        "\"sidecar\",\"image\":\"busybox\",\"args\":[\"a\"]}]"),
      DEPLOY_CONTAINERS("[{\"name\":\"sidecar\",\"image\":\"busybox:1.36\"},"
                        "{\"name\":\"extra\",\"image\":\"redis\"}]"),
      DEPLOY_CONTAINERS("[{\"name\":\"app\",\"image\":\"nginx\"},{\"name\":"
                        "\"sidecar\",\"image\":\"busybox:1.36\",\"args\":[\"a\""
                        "]},{\"name\":\"extra\",\"image\":\"redis\"}]")));
  /* writes/deployment_smp_delete_directive.http */
  CHECK(smp_is(
      DEPLOY_CONTAINERS("[{\"name\":\"app\",\"image\":\"nginx\"},{\"name\":"
                        "\"sidecar\",\"image\":\"busybox\"}]"),
      DEPLOY_CONTAINERS("[{\"name\":\"sidecar\",\"$patch\":\"delete\"}]"),
      DEPLOY_CONTAINERS("[{\"name\":\"app\",\"image\":\"nginx\"}]")));
  /* nested lists: env by name, ports by containerPort */
  CHECK(smp_is(
      DEPLOY_CONTAINERS("[{\"name\":\"app\",\"env\":[{\"name\":\"A\",\"value\""
                        ":\"1\"}],\"ports\":[{\"containerPort\":80}]}]"),
      DEPLOY_CONTAINERS("[{\"name\":\"app\",\"env\":[{\"name\":\"B\",\"value\""
                        ":\"2\"},{\"name\":\"A\",\"value\":\"3\"}],\"ports\":[{"
                        "\"containerPort\":443}]}]"),
      DEPLOY_CONTAINERS("[{\"name\":\"app\",\"env\":[{\"name\":\"A\",\"value\""
                        ":\"3\"},{\"name\":\"B\",\"value\":\"2\"}],\"ports\":[{"
                        "\"containerPort\":80},{\"containerPort\":443}]}]")));
  /* service ports merge by port */
  CHECK(smp_is("{\"spec\":{\"ports\":[{\"port\":80,\"name\":\"http\"}]}}",
               "{\"spec\":{\"ports\":[{\"port\":80,\"targetPort\":8080}]}}",
               "{\"spec\":{\"ports\":[{\"port\":80,\"name\":\"http\","
               "\"targetPort\":8080}]}}"));
  /* lists without a merge key are replaced (tolerations, args) */
  CHECK(smp_is("{\"spec\":{\"tolerations\":[{\"key\":\"a\"}]}}",
               "{\"spec\":{\"tolerations\":[{\"key\":\"b\"}]}}",
               "{\"spec\":{\"tolerations\":[{\"key\":\"b\"}]}}"));
  /* conditions by type */
  CHECK(smp_is("{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":"
               "\"False\"},{\"type\":\"X\",\"status\":\"True\"}]}}",
               "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":"
               "\"True\"}]}}",
               "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":"
               "\"True\"},{\"type\":\"X\",\"status\":\"True\"}]}}"));
}

TEST(strategic_directives) {
  /* $patch: replace on a list */
  CHECK(smp_is(DEPLOY_CONTAINERS("[{\"name\":\"a\"},{\"name\":\"b\"}]"),
               DEPLOY_CONTAINERS("[{\"$patch\":\"replace\"},{\"name\":\"c\"}]"),
               DEPLOY_CONTAINERS("[{\"name\":\"c\"}]")));
  /* $patch: replace and delete on maps */
  CHECK(smp_is("{\"data\":{\"a\":\"1\",\"b\":\"2\"}}",
               "{\"data\":{\"$patch\":\"replace\",\"c\":\"3\"}}",
               "{\"data\":{\"c\":\"3\"}}"));
  CHECK(smp_is("{\"data\":{\"a\":\"1\"},\"x\":1}",
               "{\"data\":{\"$patch\":\"delete\"}}", "{\"x\":1}"));
  /* finalizers merge as a set; $deleteFromPrimitiveList removes */
  CHECK(smp_is("{\"metadata\":{\"finalizers\":[\"a\",\"b\"]}}",
               "{\"metadata\":{\"finalizers\":[\"b\",\"c\"]}}",
               "{\"metadata\":{\"finalizers\":[\"a\",\"b\",\"c\"]}}"));
  CHECK(smp_is("{\"metadata\":{\"finalizers\":[\"a\",\"b\"]}}",
               "{\"metadata\":{\"$deleteFromPrimitiveList/finalizers\":[\"a\""
               "]}}",
               "{\"metadata\":{\"finalizers\":[\"b\"]}}"));
  /* $setElementOrder and $retainKeys are accepted and not stored */
  CHECK(smp_is(DEPLOY_CONTAINERS("[{\"name\":\"a\"}]"),
               "{\"spec\":{\"template\":{\"spec\":{\"$setElementOrder/"
               "containers\":[{\"name\":\"a\"}],\"$retainKeys\":[\"x\"]}}}}",
               DEPLOY_CONTAINERS("[{\"name\":\"a\"}]")));
  /* null deletes; maps merge like a merge patch (cm_strategic_merge_patch) */
  CHECK(smp_is("{\"data\":{\"a\":\"1\",\"b\":\"2\"}}",
               "{\"data\":{\"a\":null,\"c\":\"3\"}}",
               "{\"data\":{\"b\":\"2\",\"c\":\"3\"}}"));
  /* a merge-keyed element without its key is an error */
  cJSON *t = J("{}"), *p = J(DEPLOY_CONTAINERS("[{\"image\":\"x\"}]")), *r;
  kl_patch_err err = KL_PATCH_ERR_INIT;
  CHECK_EQ_INT(kl_patch_strategic(t, p, &r, &err), KL_EINVAL);
  CHECK_EQ_INT(err.code, 422);
  CHECK(err.message && strstr(err.message, "merge key: name"));
  cJSON_Delete(p);
  p = J("{\"data\":{\"$patch\":\"frob\"}}");
  CHECK_EQ_INT(kl_patch_strategic(t, p, &r, &err), KL_EINVAL);
  CHECK_EQ_INT(err.code, 400);
  cJSON_Delete(p);
  p = J("[1]");
  CHECK_EQ_INT(kl_patch_strategic(t, p, &r, &err), KL_EINVAL);
  CHECK_EQ_INT(err.code, 400);
  cJSON_Delete(p);
  cJSON_Delete(t);
  kl_patch_err_free(&err);
}

/* ---- server-side apply: the writes/ssa_* sequence ---- */

#define NOW "2026-11-24T02:40:50Z"

static cJSON *apply_ok(cJSON *live, const char *applied, const char *mgr,
                       bool force) {
  cJSON *a = J(applied), *r = NULL;
  kl_patch_err err = KL_PATCH_ERR_INIT;
  int rc = kl_patch_apply(live, a, mgr, force, NOW, NULL, &r, &err);
  if (rc) printf("  apply failed: %s\n", err.message);
  cJSON_Delete(a);
  kl_patch_err_free(&err);
  return r;
}

static const char *X_APPLY =
    "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
    "\"ssa\",\"labels\":{\"owner\":\"x\"}},\"data\":{\"color\":\"red\","
    "\"size\":\"3\"}}";
static const char *Y_APPLY =
    "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
    "\"ssa\"},\"data\":{\"color\":\"blue\",\"shape\":\"round\"}}";

TEST(ssa_create_conflict_force) {
  cJSON *o1 = apply_ok(NULL, X_APPLY, "x", true);
  CHECK(tu_json_same(o1,
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
             "\"name\":\"ssa\",\"labels\":{\"owner\":\"x\"},\"managedFields\":"
             "[{\"manager\":\"x\",\"operation\":\"Apply\",\"apiVersion\":"
             "\"v1\",\"time\":\"" NOW "\",\"fieldsType\":\"FieldsV1\","
             "\"fieldsV1\":{\"f:metadata\":{\"f:labels\":{\"f:owner\":{}}},"
             "\"f:data\":{\"f:color\":{},\"f:size\":{}}}}]},\"data\":{"
             "\"color\":\"red\",\"size\":\"3\"}}"));

  /* the same apply again is a no-op */
  cJSON *again = apply_ok(o1, X_APPLY, "x", true);
  CHECK(again && cJSON_Compare(again, o1, 1));
  cJSON_Delete(again);

  /* y changes data.color owned by x: 409 with the exact message */
  cJSON *a = J(Y_APPLY), *r = NULL;
  kl_patch_err err = KL_PATCH_ERR_INIT;
  CHECK_EQ_INT(kl_patch_apply(o1, a, "y", false, NOW, NULL, &r, &err),
               KL_EEXIST);
  CHECK(r == NULL);
  CHECK_EQ_INT(err.code, 409);
  CHECK_EQ_STR(err.reason, "Conflict");
  CHECK_EQ_STR(err.message,
               "Apply failed with 1 conflict: conflict with \"x\": .data.color");
  CHECK_EQ_INT(err.nconflicts, 1);
  if (err.nconflicts == 1) {
    CHECK_EQ_STR(err.conflicts[0].manager, "\"x\"");
    CHECK_EQ_STR(err.conflicts[0].field, ".data.color");
  }
  kl_patch_err_free(&err);

  /* force: y takes color, x keeps size and the label */
  CHECK_EQ_INT(kl_patch_apply(o1, a, "y", true, NOW, NULL, &r, &err), 0);
  CHECK(tu_json_same(r,
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
             "\"name\":\"ssa\",\"labels\":{\"owner\":\"x\"},\"managedFields\":"
             "[{\"manager\":\"x\",\"operation\":\"Apply\",\"apiVersion\":"
             "\"v1\",\"time\":\"" NOW "\",\"fieldsType\":\"FieldsV1\","
             "\"fieldsV1\":{\"f:metadata\":{\"f:labels\":{\"f:owner\":{}}},"
             "\"f:data\":{\"f:size\":{}}}},{\"manager\":\"y\",\"operation\":"
             "\"Apply\",\"apiVersion\":\"v1\",\"time\":\"" NOW "\","
             "\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:data\":{"
             "\"f:color\":{},\"f:shape\":{}}}}]},\"data\":{\"color\":\"blue\","
             "\"size\":\"3\",\"shape\":\"round\"}}"));
  cJSON_Delete(a);

  /* setting a field to the value another manager applied is shared
   * ownership, not a conflict */
  cJSON *z = apply_ok(r, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
                         "\"metadata\":{\"name\":\"ssa\"},\"data\":{\"size\":"
                         "\"3\",\"extra\":\"1\"}}",
                      "z", false);
  CHECK(z != NULL);
  cJSON_Delete(z);
  cJSON_Delete(r);
  cJSON_Delete(o1);
  kl_patch_err_free(&err);
}

TEST(ssa_omitted_fields_are_removed) {
  cJSON *o1 = apply_ok(NULL, X_APPLY, "x", false);
  /* x applies again without data.size and the label: both go */
  cJSON *o2 = apply_ok(o1, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
                           "\"metadata\":{\"name\":\"ssa\"},\"data\":{"
                           "\"color\":\"red\"}}",
                       "x", false);
  cJSON *data = cJSON_GetObjectItem(o2, "data");
  CHECK(cJSON_GetObjectItem(data, "size") == NULL);
  CHECK(cJSON_GetObjectItem(data, "color") != NULL);
  cJSON *labels =
      cJSON_GetObjectItem(cJSON_GetObjectItem(o2, "metadata"), "labels");
  CHECK(cJSON_GetObjectItem(labels, "owner") == NULL);
  /* a field also owned by another manager stays */
  cJSON *o3 = apply_ok(o2, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
                           "\"metadata\":{\"name\":\"ssa\"},\"data\":{"
                           "\"color\":\"red\"}}",
                       "w", false);
  cJSON *o4 = apply_ok(o3, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
                           "\"metadata\":{\"name\":\"ssa\"}}",
                       "x", false);
  CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(o4, "data"), "color"));
  cJSON_Delete(o1);
  cJSON_Delete(o2);
  cJSON_Delete(o3);
  cJSON_Delete(o4);
}

TEST(ssa_lists_by_key) {
  const char *d1 =
      "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{"
      "\"name\":\"web\"},\"spec\":{\"template\":{\"spec\":{\"containers\":[{"
      "\"name\":\"app\",\"image\":\"nginx\"}]}}}}";
  const char *d2 =
      "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{"
      "\"name\":\"web\"},\"spec\":{\"template\":{\"spec\":{\"containers\":[{"
      "\"name\":\"app\",\"image\":\"nginx:2\"}]}}}}";
  cJSON *o1 = apply_ok(NULL, d1, "a", false);
  cJSON *mf = cJSON_GetObjectItem(cJSON_GetObjectItem(o1, "metadata"),
                                  "managedFields");
  cJSON *fs = cJSON_GetObjectItem(cJSON_GetArrayItem(mf, 0), "fieldsV1");
  CHECK(tu_json_same(fs, "{\"f:spec\":{\"f:template\":{\"f:spec\":{\"f:containers\":"
                 "{\"k:{\\\"name\\\":\\\"app\\\"}\":{\".\":{},\"f:name\":{},"
                 "\"f:image\":{}}}}}}}"));
  cJSON *a = J(d2), *r = NULL;
  kl_patch_err err = KL_PATCH_ERR_INIT;
  CHECK_EQ_INT(kl_patch_apply(o1, a, "b", false, NOW, NULL, &r, &err),
               KL_EEXIST);
  CHECK_EQ_STR(err.message, "Apply failed with 1 conflict: conflict with "
                            "\"a\": .spec.template.spec.containers[name="
                            "\"app\"].image");
  kl_patch_err_free(&err);
  cJSON_Delete(a);
  cJSON_Delete(o1);
}

TEST(ssa_errors) {
  cJSON *a = J(X_APPLY), *r = NULL;
  kl_patch_err err = KL_PATCH_ERR_INIT;
  CHECK_EQ_INT(kl_patch_apply(NULL, a, "", false, NOW, NULL, &r, &err),
               KL_EINVAL);
  CHECK_EQ_INT(err.code, 422);
  cJSON_Delete(a);
  a = J("{\"metadata\":{\"name\":\"x\",\"managedFields\":[]}}");
  CHECK_EQ_INT(kl_patch_apply(NULL, a, "m", false, NOW, NULL, &r, &err),
               KL_EINVAL);
  CHECK_EQ_INT(err.code, 400);
  cJSON_Delete(a);
  kl_patch_err_free(&err);
}

TEST(update_managed_fields) {
  /* create by curl: f:data with ".", name not tracked */
  cJSON *o = J("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
               "\"name\":\"exists\",\"namespace\":\"wire-err\"},\"data\":{"
               "\"k\":\"v\"}}");
  kl_patch_record_update(NULL, o, "curl", NOW, NULL);
  cJSON *mf =
      cJSON_GetObjectItem(cJSON_GetObjectItem(o, "metadata"), "managedFields");
  CHECK(tu_json_same(mf, "[{\"manager\":\"curl\",\"operation\":\"Update\","
                 "\"apiVersion\":\"v1\",\"time\":\"" NOW "\",\"fieldsType\":"
                 "\"FieldsV1\",\"fieldsV1\":{\"f:data\":{\".\":{},\"f:k\":{}}}}"
                 "]"));
  /* the JSON-patch capture: another manager adds data.nokey and changes k */
  cJSON *o2 = cJSON_Duplicate(o, 1);
  cJSON *data = cJSON_GetObjectItem(o2, "data");
  cJSON_AddStringToObject(data, "nokey", "x");
  kl_patch_record_update(o, o2, "k8s-wire-capture", NOW, NULL);
  mf = cJSON_GetObjectItem(cJSON_GetObjectItem(o2, "metadata"),
                           "managedFields");
  CHECK(tu_json_same(mf, "[{\"manager\":\"curl\",\"operation\":\"Update\","
                 "\"apiVersion\":\"v1\",\"time\":\"" NOW "\",\"fieldsType\":"
                 "\"FieldsV1\",\"fieldsV1\":{\"f:data\":{\".\":{},\"f:k\":{}}}},"
                 "{\"manager\":\"k8s-wire-capture\",\"operation\":\"Update\","
                 "\"apiVersion\":\"v1\",\"time\":\"" NOW "\",\"fieldsType\":"
                 "\"FieldsV1\",\"fieldsV1\":{\"f:data\":{\"f:nokey\":{}}}}]"));
  /* changing k moves it; removing nokey drops it and the empty entry */
  cJSON *o3 = cJSON_Duplicate(o2, 1);
  data = cJSON_GetObjectItem(o3, "data");
  cJSON_ReplaceItemInObject(data, "k", cJSON_CreateString("v3"));
  cJSON_DeleteItemFromObject(data, "nokey");
  kl_patch_record_update(o2, o3, "kubectl", NOW, NULL);
  mf = cJSON_GetObjectItem(cJSON_GetObjectItem(o3, "metadata"),
                           "managedFields");
  CHECK(tu_json_same(mf, "[{\"manager\":\"curl\",\"operation\":\"Update\","
                 "\"apiVersion\":\"v1\",\"time\":\"" NOW "\",\"fieldsType\":"
                 "\"FieldsV1\",\"fieldsV1\":{\"f:data\":{\".\":{}}}},"
                 "{\"manager\":\"kubectl\",\"operation\":\"Update\","
                 "\"apiVersion\":\"v1\",\"time\":\"" NOW "\",\"fieldsType\":"
                 "\"FieldsV1\",\"fieldsV1\":{\"f:data\":{\"f:k\":{}}}}]"));
  cJSON_Delete(o);
  cJSON_Delete(o2);
  cJSON_Delete(o3);
}

TEST(manager_from_user_agent) {
  char *m = kl_patch_manager_from_user_agent("kubectl/v1.32.4 (linux/amd64)");
  CHECK_EQ_STR(m, "kubectl");
  free(m);
  m = kl_patch_manager_from_user_agent("k8s-wire-capture/1.0");
  CHECK_EQ_STR(m, "k8s-wire-capture");
  free(m);
  m = kl_patch_manager_from_user_agent(NULL);
  CHECK_EQ_STR(m, "unknown");
  free(m);
  m = kl_patch_manager_from_user_agent("plain");
  CHECK_EQ_STR(m, "plain");
  free(m);
}

int main(void) {
  RUN(merge_patch_rfc7386_examples);
  RUN(json_patch_rfc6902_examples);
  RUN(json_patch_errors);
  RUN(json_pointer);
  RUN(strategic_merge_by_key);
  RUN(strategic_directives);
  RUN(ssa_create_conflict_force);
  RUN(ssa_omitted_fields_are_removed);
  RUN(ssa_lists_by_key);
  RUN(ssa_errors);
  RUN(update_managed_fields);
  RUN(manager_from_user_agent);
  return ctest_summary();
}
