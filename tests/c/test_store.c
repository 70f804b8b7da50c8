/* test_store.c: the indexed store's semantics from C (upserts, deletes,
 * replace, every built-in index, custom index functions, references that
 * outlive the store's copy) and its memory ratio on realistic ConfigMaps. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>

#include "ctest.h"
#include "kl.h"
#include "store.h"

static kl_obj *mk(const char *json) {
  kl_obj *obj = NULL;
  char *err = NULL;
  int rc = kl_obj_new(json, strlen(json), NULL, &obj, &err);
  if (rc != 0) printf("  kl_obj_new: %s: %s\n", err ? err : "?", json);
  free(err);
  return obj;
}

/* A pod-like object: ns may be NULL (cluster-scoped); extra is spliced into
 * metadata after the name (e.g. labels); spec is the spec object. */
static kl_obj *mkp(const char *ns, const char *name, const char *extra,
                   const char *spec) {
  char *j = kl_sprintf(
      "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{%s%s%s\"name\":"
      "\"%s\"%s%s},\"spec\":%s}",
      ns ? "\"namespace\":\"" : "", ns ? ns : "", ns ? "\"," : "", name,
      extra ? "," : "", extra ? extra : "", spec ? spec : "{}");
  kl_obj *o = mk(j);
  free(j);
  return o;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Joins a string vector, sorted, with commas (NEW string). */
static char *joined(kl_strv *sv) {
  if (sv->n) qsort(sv->v, sv->n, sizeof *sv->v, cmp_str);
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "");
  for (size_t i = 0; i < sv->n; i++) {
    if (i) kl_buf_addc(&b, ',');
    kl_buf_adds(&b, sv->v[i]);
  }
  kl_strv_free(sv);
  return kl_buf_detach(&b, NULL);
}

/* Sorted keys of the objects in ov (frees ov). */
static char *objkeys(kl_objv *ov) {
  kl_strv sv = {0};
  for (size_t i = 0; i < ov->n; i++) kl_strv_push(&sv, kl_obj_key(ov->v[i]));
  kl_objv_free(ov);
  return joined(&sv);
}

#define CHECK_SV(call, want)                                                  \
  do {                                                                        \
    kl_strv sv_ = {0};                                                        \
    int rc_ = (call);                                                         \
    CHECK_EQ_INT(rc_, 0);                                                     \
    char *got_ = joined(&sv_);                                                \
    CHECK_EQ_STR(got_, want);                                                 \
    free(got_);                                                               \
  } while (0)

#define CHECK_OV(call, want)                                                  \
  do {                                                                        \
    kl_objv ov_ = {0};                                                        \
    int rc_ = (call);                                                         \
    CHECK_EQ_INT(rc_, 0);                                                     \
    char *got_ = objkeys(&ov_);                                               \
    CHECK_EQ_STR(got_, want);                                                 \
    free(got_);                                                               \
  } while (0)

static char *keys_of(kl_store *s) {
  kl_strv sv = {0};
  kl_store_list_keys(s, &sv);
  return joined(&sv);
}

static void add(kl_store *s, kl_obj *o) {
  CHECK_EQ_INT(kl_store_add(s, o), 0);
  kl_obj_unref(o);
}

TEST(add_get_update_delete) {
  kl_store *s = kl_store_new();
  CHECK_EQ_INT(kl_store_add_indexer(s, "ns", KL_INDEX_NAMESPACE, NULL), 0);
  kl_obj *a = mkp("ns1", "a", NULL, NULL);
  CHECK_EQ_INT(kl_store_add(s, a), 0);
  CHECK_EQ_INT(kl_store_add(s, a), 0); /* the same version again */
  CHECK_EQ_INT(kl_store_len(s), 1);
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  kl_obj *g = kl_store_get_by_key(s, "ns1/a");
  CHECK(g == a); /* same version, a NEW reference */
  kl_obj_unref(g);
  g = kl_store_get(s, a);
  CHECK(g == a);
  kl_obj_unref(g);
  CHECK(kl_store_get_by_key(s, "a") == NULL);
  CHECK(kl_store_get_by_key(s, "ns2/a") == NULL);

  kl_obj *a2 = mkp("ns1", "a", "\"resourceVersion\":\"2\"", NULL);
  CHECK_EQ_INT(kl_store_update(s, a2), 0);
  CHECK_EQ_INT(kl_store_len(s), 1);
  g = kl_store_get_by_key(s, "ns1/a");
  CHECK_EQ_STR(kl_obj_resource_version(g), "2");
  kl_obj_unref(g);

  /* update of an absent key inserts (upsert, as in client-go) */
  kl_obj *b = mkp("ns1", "b", NULL, NULL);
  CHECK_EQ_INT(kl_store_update(s, b), 0);
  CHECK_EQ_INT(kl_store_len(s), 2);

  /* delete of an unknown key is a no-op */
  CHECK_EQ_INT(kl_store_delete_key(s, "ns1/zzz"), 0);
  CHECK_EQ_INT(kl_store_len(s), 2);
  CHECK_EQ_INT(kl_store_delete(s, a), 0); /* by an older version: same key */
  CHECK(kl_store_get_by_key(s, "ns1/a") == NULL);
  CHECK_EQ_INT(kl_store_len(s), 1);
  CHECK_EQ_INT(kl_store_delete(s, a), 0);
  CHECK_EQ_INT(kl_store_resync(s), 0);
  CHECK_EQ_INT(kl_store_len(s), 1);
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  kl_obj_unref(a);
  kl_obj_unref(a2);
  kl_obj_unref(b);
  kl_store_unref(s);
}

TEST(cluster_scoped_keys_and_list) {
  kl_store *s = kl_store_new();
  CHECK_EQ_INT(kl_store_add_indexer(s, "namespace", KL_INDEX_NAMESPACE, NULL), 0);
  add(s, mkp(NULL, "node-1", NULL, NULL));
  add(s, mkp("default", "node-1", NULL, NULL));
  add(s, mkp("kube-system", "dns", NULL, NULL));
  char *k = keys_of(s);
  CHECK_EQ_STR(k, "default/node-1,kube-system/dns,node-1");
  free(k);
  CHECK_OV((kl_store_list(s, &ov_), 0), "default/node-1,kube-system/dns,node-1");
  /* cluster-scoped objects index under "" (MetaNamespaceIndexFunc) */
  CHECK_OV(kl_store_by_index(s, "namespace", "", &ov_), "node-1");
  CHECK_SV(kl_store_list_index_values(s, "namespace", &sv_),
           ",default,kube-system");
  kl_obj *n = kl_store_get_by_key(s, "node-1");
  CHECK(n && strcmp(kl_obj_namespace(n), "") == 0);
  kl_obj_unref(n);
  kl_store_unref(s);
}

TEST(update_moves_object_between_index_values) {
  kl_store *s = kl_store_new();
  CHECK_EQ_INT(kl_store_add_indexer(s, "app", KL_INDEX_LABEL, "app"), 0);
  CHECK_EQ_INT(kl_store_add_indexer(s, "node", KL_INDEX_FIELD, "spec.nodeName"), 0);
  add(s, mkp("ns", "p1", "\"labels\":{\"app\":\"web\"}", "{\"nodeName\":\"n1\"}"));
  add(s, mkp("ns", "p2", "\"labels\":{\"app\":\"web\"}", "{\"nodeName\":\"n1\"}"));
  add(s, mkp("ns", "p3", "\"labels\":{\"app\":\"db\"}", NULL));
  CHECK_SV(kl_store_index_keys(s, "app", "web", &sv_), "ns/p1,ns/p2");
  CHECK_SV(kl_store_list_index_values(s, "node", &sv_), "n1");

  /* p3 moves db -> web; the db set empties and disappears */
  add(s, mkp("ns", "p3", "\"labels\":{\"app\":\"web\"}", "{\"nodeName\":\"n2\"}"));
  CHECK_SV(kl_store_list_index_values(s, "app", &sv_), "web");
  CHECK_SV(kl_store_index_keys(s, "app", "db", &sv_), "");
  CHECK_SV(kl_store_index_keys(s, "app", "web", &sv_), "ns/p1,ns/p2,ns/p3");
  CHECK_SV(kl_store_list_index_values(s, "node", &sv_), "n1,n2");
  /* the label goes away: p1 leaves the index entirely */
  add(s, mkp("ns", "p1", NULL, "{\"nodeName\":\"n2\"}"));
  CHECK_SV(kl_store_index_keys(s, "app", "web", &sv_), "ns/p2,ns/p3");
  CHECK_OV(kl_store_by_index(s, "node", "n2", &ov_), "ns/p1,ns/p3");
  /* the sets hold the latest versions */
  kl_objv ov = {0};
  CHECK_EQ_INT(kl_store_by_index(s, "node", "n2", &ov), 0);
  for (size_t i = 0; i < ov.n; i++) {
    kl_obj *cur = kl_store_get(s, ov.v[i]);
    CHECK(cur == ov.v[i]);
    kl_obj_unref(cur);
  }
  kl_objv_free(&ov);
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  /* deletes empty the sets */
  CHECK_EQ_INT(kl_store_delete_key(s, "ns/p2"), 0);
  CHECK_EQ_INT(kl_store_delete_key(s, "ns/p3"), 0);
  CHECK_SV(kl_store_list_index_values(s, "app", &sv_), "");
  CHECK_SV(kl_store_list_index_values(s, "node", &sv_), "n2");
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  kl_store_unref(s);
}

TEST(field_index_scalars) {
  kl_store *s = kl_store_new();
  CHECK_EQ_INT(kl_store_add_indexer(s, "f", KL_INDEX_FIELD, "spec.x"), 0);
  add(s, mkp("ns", "str", NULL, "{\"x\":\"a\\\"b\"}"));
  add(s, mkp("ns", "num", NULL, "{\"x\":3}"));
  add(s, mkp("ns", "flt", NULL, "{\"x\":-1.5e3}"));
  add(s, mkp("ns", "bool", NULL, "{\"x\":true}"));
  add(s, mkp("ns", "null", NULL, "{\"x\":null}"));
  add(s, mkp("ns", "obj", NULL, "{\"x\":{\"y\":1}}"));
  add(s, mkp("ns", "arr", NULL, "{\"x\":[1]}"));
  add(s, mkp("ns", "absent", NULL, "{}"));
  add(s, mkp("ns", "empty", NULL, "{\"x\":\"\"}"));
  CHECK_SV(kl_store_list_index_values(s, "f", &sv_), ",-1.5e3,3,a\"b,true");
  CHECK_SV(kl_store_index_keys(s, "f", "3", &sv_), "ns/num");
  CHECK_SV(kl_store_index_keys(s, "f", "", &sv_), "ns/empty");
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  kl_store_unref(s);
}

TEST(label_keys_with_dots_and_slashes) {
  kl_store *s = kl_store_new();
  CHECK_EQ_INT(
      kl_store_add_indexer(s, "name", KL_INDEX_LABEL, "app.kubernetes.io/name"), 0);
  add(s, mkp("ns", "a", "\"labels\":{\"app.kubernetes.io/name\":\"x\"}", NULL));
  add(s, mkp("ns", "b", "\"labels\":{\"app\":\"x\"}", NULL));
  add(s, mkp("ns", "c", "\"labels\":{\"app.kubernetes.io/name\":\"\"}", NULL));
  CHECK_SV(kl_store_list_index_values(s, "name", &sv_), ",x");
  CHECK_SV(kl_store_index_keys(s, "name", "x", &sv_), "ns/a");
  kl_store_unref(s);
}

TEST(owner_indexes_and_index_union) {
  kl_store *s = kl_store_new();
  CHECK_EQ_INT(kl_store_add_indexer(s, "uid", KL_INDEX_OWNER_UID, NULL), 0);
  CHECK_EQ_INT(kl_store_add_indexer(s, "owner", KL_INDEX_OWNER_KINDNAME, NULL), 0);
  add(s, mkp("ns", "p1",
             "\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":"
             "\"ReplicaSet\",\"name\":\"rs1\",\"uid\":\"u1\"},{\"kind\":\"Job\","
             "\"name\":\"j\",\"uid\":\"u2\"}]",
             NULL));
  add(s, mkp("ns", "p2",
             "\"ownerReferences\":[{\"kind\":\"ReplicaSet\",\"name\":\"rs1\","
             "\"uid\":\"u1\"}]",
             NULL));
  add(s, mkp("ns", "p3", "\"ownerReferences\":[{\"kind\":\"Job\",\"name\":\"j\","
                         "\"uid\":\"u2\"},{\"kind\":\"Job\",\"name\":\"j\","
                         "\"uid\":\"u2\"}]", NULL));
  add(s, mkp("ns", "p4", "\"ownerReferences\":[]", NULL));
  add(s, mkp("ns", "p5", NULL, NULL));
  CHECK_SV(kl_store_list_index_values(s, "uid", &sv_), "u1,u2");
  CHECK_SV(kl_store_list_index_values(s, "owner", &sv_), "Job/j,ReplicaSet/rs1");
  CHECK_SV(kl_store_index_keys(s, "owner", "ReplicaSet/rs1", &sv_), "ns/p1,ns/p2");
  /* a duplicate owner reference counts once */
  CHECK_SV(kl_store_index_keys(s, "uid", "u2", &sv_), "ns/p1,ns/p3");
  /* index(): every object sharing any of p1's values, each once */
  kl_obj *p1 = kl_store_get_by_key(s, "ns/p1");
  CHECK_OV(kl_store_index(s, "uid", p1, &ov_), "ns/p1,ns/p2,ns/p3");
  kl_obj_unref(p1);
  kl_obj *p5 = kl_store_get_by_key(s, "ns/p5");
  CHECK_OV(kl_store_index(s, "uid", p5, &ov_), "");
  kl_obj_unref(p5);
  /* an object not in the store can be used as the probe */
  kl_obj *probe = mkp("other", "x", "\"ownerReferences\":[{\"kind\":\"Job\","
                                    "\"name\":\"j\",\"uid\":\"u2\"}]", NULL);
  CHECK_OV(kl_store_index(s, "owner", probe, &ov_), "ns/p1,ns/p3");
  kl_obj_unref(probe);
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  kl_store_unref(s);
}

TEST(unknown_index_and_bad_arguments) {
  kl_store *s = kl_store_new();
  kl_objv ov = {0};
  kl_strv sv = {0};
  kl_obj *a = mkp("ns", "a", NULL, NULL);
  add(s, kl_obj_ref(a));
  CHECK_EQ_INT(kl_store_by_index(s, "nope", "x", &ov), KL_ENOENT);
  CHECK_EQ_INT(kl_store_index(s, "nope", a, &ov), KL_ENOENT);
  CHECK_EQ_INT(kl_store_index_keys(s, "nope", "x", &sv), KL_ENOENT);
  CHECK_EQ_INT(kl_store_list_index_values(s, "nope", &sv), KL_ENOENT);
  CHECK_EQ_INT(ov.n, 0);
  CHECK_EQ_INT(sv.n, 0);
  CHECK_EQ_INT(kl_store_add_indexer(s, "l", KL_INDEX_LABEL, NULL), KL_EINVAL);
  CHECK_EQ_INT(kl_store_add_indexer(s, "f", KL_INDEX_FIELD, ""), KL_EINVAL);
  CHECK_EQ_INT(kl_store_add_indexer(s, "", KL_INDEX_NAMESPACE, NULL), KL_EINVAL);
  CHECK_EQ_INT(kl_store_add_indexer(s, "k", (kl_index_kind)99, NULL), KL_EINVAL);
  CHECK_EQ_INT(kl_store_add_indexer(s, "ns", KL_INDEX_NAMESPACE, NULL), 0);
  CHECK_EQ_INT(kl_store_add_indexer(s, "ns", KL_INDEX_LABEL, "x"), KL_EEXIST);
  CHECK_SV((kl_store_get_indexers(s, &sv_), 0), "ns");
  CHECK_EQ_INT(kl_store_add(s, NULL), KL_EINVAL);
  CHECK_EQ_INT(kl_store_len(s), 1);
  kl_obj_unref(a);
  kl_store_unref(s);
}

TEST(add_indexer_on_a_filled_store) {
  kl_store *s = kl_store_new();
  CHECK_EQ_INT(kl_store_add_indexer(s, "ns", KL_INDEX_NAMESPACE, NULL), 0);
  char name[32];
  for (int i = 0; i < 50; i++) {
    snprintf(name, sizeof name, "p%02d", i);
    char *lab = kl_sprintf("\"labels\":{\"tier\":\"t%d\"}", i % 3);
    add(s, mkp(i % 2 ? "odd" : "even", name, i % 5 ? lab : NULL, NULL));
    free(lab);
  }
  CHECK_EQ_INT(kl_store_add_indexer(s, "tier", KL_INDEX_LABEL, "tier"), 0);
  CHECK_SV(kl_store_list_index_values(s, "tier", &sv_), "t0,t1,t2");
  kl_strv sv = {0};
  size_t total = 0;
  for (int t = 0; t < 3; t++) {
    char v[16];
    snprintf(v, sizeof v, "t%d", t);
    CHECK_EQ_INT(kl_store_index_keys(s, "tier", v, &sv), 0);
    total += sv.n;
    kl_strv_free(&sv);
  }
  CHECK_EQ_INT(total, 40); /* every fifth object has no tier label */
  CHECK_SV(kl_store_index_keys(s, "tier", "t0", &sv_),
           "even/p06,even/p12,even/p18,even/p24,even/p36,even/p42,even/p48,"
           "odd/p03,odd/p09,odd/p21,odd/p27,odd/p33,odd/p39");
  CHECK_SV((kl_store_get_indexers(s, &sv_), 0), "ns,tier");
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  /* the new index follows later writes and the old one still works */
  add(s, mkp("odd", "p03", "\"labels\":{\"tier\":\"t9\"}", NULL));
  CHECK_SV(kl_store_index_keys(s, "tier", "t9", &sv_), "odd/p03");
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  kl_store_unref(s);
}

TEST(replace_is_a_whole_new_content) {
  kl_store *s = kl_store_new();
  CHECK_EQ_INT(kl_store_add_indexer(s, "app", KL_INDEX_LABEL, "app"), 0);
  char *rv = kl_store_last_replace_rv(s);
  CHECK(rv == NULL);
  add(s, mkp("ns", "keep", "\"labels\":{\"app\":\"old\"}", NULL));
  add(s, mkp("ns", "drop", "\"labels\":{\"app\":\"gone\"}", NULL));
  kl_obj *held = kl_store_get_by_key(s, "ns/drop");
  kl_obj *objs[] = {
      mkp("ns", "keep", "\"labels\":{\"app\":\"new\"}", NULL),
      mkp("ns", "added", "\"labels\":{\"app\":\"new\"}", NULL),
      mkp("ns", "dup", "\"labels\":{\"app\":\"first\"}", NULL),
      mkp("ns", "dup", "\"labels\":{\"app\":\"second\"}", NULL),
  };
  CHECK_EQ_INT(kl_store_replace(s, objs, 4, "123"), 0);
  char *k = keys_of(s);
  CHECK_EQ_STR(k, "ns/added,ns/dup,ns/keep");
  free(k);
  CHECK_SV(kl_store_list_index_values(s, "app", &sv_), "new,second");
  CHECK_SV(kl_store_index_keys(s, "app", "new", &sv_), "ns/added,ns/keep");
  rv = kl_store_last_replace_rv(s);
  CHECK_EQ_STR(rv, "123");
  free(rv);
  /* a reference taken before the replace still reads the dropped object */
  size_t n;
  const char *json = kl_obj_json(held, &n);
  CHECK(n > 0 && strstr(json, "\"gone\"") != NULL);
  kl_obj_unref(held);
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  /* replace with nothing empties the store and every index */
  CHECK_EQ_INT(kl_store_replace(s, NULL, 0, NULL), 0);
  CHECK_EQ_INT(kl_store_len(s), 0);
  CHECK_SV(kl_store_list_index_values(s, "app", &sv_), "");
  CHECK(kl_store_last_replace_rv(s) == NULL);
  for (int i = 0; i < 4; i++) kl_obj_unref(objs[i]);
  kl_store_unref(s);
}

TEST(references_outlive_the_store) {
  kl_store *s = kl_store_new();
  kl_obj *o = mkp("ns", "a", NULL, "{\"v\":1}");
  add(s, o); /* the store now holds the only reference */
  kl_obj *g = kl_store_get_by_key(s, "ns/a");
  CHECK_EQ_INT(kl_store_delete_key(s, "ns/a"), 0);
  add(s, mkp("ns", "a", NULL, "{\"v\":2}"));
  kl_store_unref(s);
  kl_span v;
  CHECK(kl_obj_get(g, "spec.v", &v) && v.n == 1 && v.p[0] == '1');
  CHECK_EQ_STR(kl_obj_key(g), "ns/a");
  kl_obj_unref(g);
}

/* custom index functions */

static int fn_first_letter(const kl_obj *obj, kl_strv *out, void *ud) {
  (void)ud;
  const char *n = kl_obj_name(obj);
  if (strcmp(n, "bad") == 0) return KL_EINVAL;
  kl_strv_pushn(out, n, 1);
  kl_strv_pushn(out, n, 1); /* duplicates count once */
  return 0;
}

static int ud_freed;
static void ud_free(void *ud) { ud_freed += *(int *)ud; }

TEST(custom_index_fn_and_errors) {
  kl_store *s = kl_store_new();
  static int tag = 7;
  add(s, mkp("ns", "apple", NULL, NULL));
  add(s, mkp("ns", "avocado", NULL, NULL));
  add(s, mkp("ns", "bad", NULL, NULL));
  /* an error on an existing object rejects the indexer */
  CHECK_EQ_INT(kl_store_add_index_fn(s, "first", fn_first_letter, &tag, NULL),
               KL_EINVAL);
  CHECK_SV((kl_store_get_indexers(s, &sv_), 0), "");
  CHECK_EQ_INT(kl_store_delete_key(s, "ns/bad"), 0);
  ud_freed = 0;
  CHECK_EQ_INT(kl_store_add_index_fn(s, "first", fn_first_letter, &tag, ud_free), 0);
  CHECK_EQ_INT(kl_store_add_index_fn(s, "first", fn_first_letter, &tag, NULL),
               KL_EEXIST);
  CHECK_SV(kl_store_index_keys(s, "first", "a", &sv_), "ns/apple,ns/avocado");
  /* an error on a write rejects it and leaves the store as it was */
  kl_obj *bad = mkp("ns", "bad", NULL, NULL);
  CHECK_EQ_INT(kl_store_add(s, bad), KL_EINVAL);
  CHECK(kl_store_get_by_key(s, "ns/bad") == NULL);
  kl_obj *objs[] = {mkp("ns", "cherry", NULL, NULL), bad};
  CHECK_EQ_INT(kl_store_replace(s, objs, 2, "9"), KL_EINVAL);
  char *k = keys_of(s);
  CHECK_EQ_STR(k, "ns/apple,ns/avocado");
  free(k);
  CHECK(kl_store_last_replace_rv(s) == NULL);
  kl_obj_unref(objs[0]);
  kl_obj_unref(bad);
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  kl_store_unref(s);
  CHECK_EQ_INT(ud_freed, 7);
}

/* kl_store_apply: a batch of upserts and deletes in order, under one write
 * lock hold, reporting each key's previous object and each op's result. */
TEST(apply_batch_in_order_with_previous_objects) {
  kl_store *s = kl_store_new();
  CHECK_EQ_INT(kl_store_add_indexer(s, "ns", KL_INDEX_NAMESPACE, NULL), 0);
  CHECK_EQ_INT(kl_store_add_index_fn(s, "first", fn_first_letter, NULL, NULL),
               0);
  kl_obj *a1 = mkp("ns1", "a", NULL, NULL);
  kl_obj *a2 = mkp("ns2", "a", "\"resourceVersion\":\"2\"", NULL);
  kl_obj *a3 = mkp("ns1", "a", "\"resourceVersion\":\"3\"", NULL);
  kl_obj *b1 = mkp("ns1", "b", NULL, NULL);
  kl_obj *bad = mkp("ns1", "bad", NULL, NULL);
  CHECK_EQ_INT(kl_store_add(s, a1), 0);
  kl_store_op ops[] = {
      {.obj = a3},              /* replaces a1 */
      {.obj = b1},              /* new */
      {.obj = bad},             /* the index function refuses it */
      {.key = "ns1/a"},         /* deletes a3 */
      {.key = "ns1/zzz"},       /* unknown: nothing */
      {.obj = a2},              /* another key (ns2/a) */
      {.obj = b1},              /* the same version again */
  };
  CHECK_EQ_INT(kl_store_apply(s, ops, 7), 0);
  CHECK(ops[0].old == a1 && ops[0].rc == 0);
  CHECK(ops[1].old == NULL && ops[1].rc == 0);
  CHECK_EQ_INT(ops[2].rc, KL_EINVAL);
  CHECK(ops[2].old == NULL);
  CHECK(ops[3].old == a3);
  CHECK(ops[4].old == NULL && ops[4].rc == 0);
  CHECK(ops[5].old == NULL);
  CHECK(ops[6].old == b1);
  for (int i = 0; i < 7; i++) kl_obj_unref(ops[i].old);
  char *k = keys_of(s);
  CHECK_EQ_STR(k, "ns1/b,ns2/a");
  free(k);
  CHECK_SV(kl_store_index_keys(s, "ns", "ns1", &sv_), "ns1/b");
  CHECK_SV(kl_store_index_keys(s, "ns", "ns2", &sv_), "ns2/a");
  CHECK_SV(kl_store_index_keys(s, "first", "a", &sv_), "ns2/a");
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  /* an op with neither object nor key: nothing applied */
  kl_store_op bad_ops[] = {{.key = "ns1/b"}, {.obj = NULL, .key = NULL}};
  CHECK_EQ_INT(kl_store_apply(s, bad_ops, 2), KL_EINVAL);
  CHECK_EQ_INT(kl_store_len(s), 2);
  CHECK_EQ_INT(kl_store_apply(s, NULL, 0), 0);
  kl_obj_unref(a1), kl_obj_unref(a2), kl_obj_unref(a3), kl_obj_unref(b1);
  kl_obj_unref(bad);
  kl_store_unref(s);
}

/* A non-deterministic index function: the value changes on every call, so
 * an update must remove the values stored for the old version, not the
 * values recomputed from it. */
static int counter_fn(const kl_obj *obj, kl_strv *out, void *ud) {
  (void)obj;
  int *n = ud;
  char b[16];
  snprintf(b, sizeof b, "v%d", (*n)++);
  kl_strv_push(out, b);
  return 0;
}

TEST(updates_remove_the_stored_values) {
  kl_store *s = kl_store_new();
  int n = 0;
  CHECK_EQ_INT(kl_store_add_index_fn(s, "c", counter_fn, &n, NULL), 0);
  add(s, mkp("ns", "a", NULL, NULL));
  add(s, mkp("ns", "a", NULL, NULL));
  CHECK_SV(kl_store_list_index_values(s, "c", &sv_), "v1");
  CHECK_EQ_INT(kl_store_delete_key(s, "ns/a"), 0);
  CHECK_SV(kl_store_list_index_values(s, "c", &sv_), "");
  kl_store_unref(s);
}

TEST(index_sets_do_not_creep_under_churn) {
  kl_store *s = kl_store_new();
  CHECK_EQ_INT(kl_store_add_indexer(s, "node", KL_INDEX_FIELD, "spec.nodeName"), 0);
  add(s, mkp("ns", "base", NULL, "{\"nodeName\":\"n\"}"));
  size_t before = kl_store_footprint(s);
  char name[32], spec[64];
  for (int i = 0; i < 2000; i++) {
    snprintf(name, sizeof name, "p%d", i);
    snprintf(spec, sizeof spec, "{\"nodeName\":\"node-%d\"}", i);
    add(s, mkp("ns", name, NULL, spec));
    CHECK_EQ_INT(kl_store_delete_key(s, "ns/p0"), 0);
    char *k = kl_sprintf("ns/%s", name);
    CHECK_EQ_INT(kl_store_delete_key(s, k), 0);
    free(k);
  }
  CHECK_SV(kl_store_list_index_values(s, "node", &sv_), "n");
  CHECK_EQ_INT(kl_store_len(s), 1);
  /* the maps may keep their grown slot arrays, but no per-value sets */
  CHECK(kl_store_footprint(s) < before + 4096);
  kl_store_unref(s);
}

/* Memory: 10,000 realistic ConfigMaps (~1 KB each) with a namespace and a
 * label index. The store's heap must stay under 1.5x the compact JSON. */
TEST(memory_ratio_10k_configmaps) {
  kl_store *s = kl_store_new();
  CHECK_EQ_INT(kl_store_add_indexer(s, "namespace", KL_INDEX_NAMESPACE, NULL), 0);
  CHECK_EQ_INT(kl_store_add_indexer(s, "app", KL_INDEX_LABEL, "app"), 0);
  size_t json_bytes = 0, nobj = 10000;
  kl_buf b = KL_BUF_INIT;
  for (size_t i = 0; i < nobj; i++) {
    b.len = 0;
    kl_buf_addf(&b,
                "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
                "\"name\":\"settings-%05zu\",\"namespace\":\"team-%02zu\","
                "\"uid\":\"6f1e2c3a-%04zx-4b7e-9c1d-%012zx\","
                "\"resourceVersion\":\"%zu\",\"creationTimestamp\":"
                "\"2024-03-01T12:00:00Z\",\"labels\":{\"app\":\"svc-%03zu\","
                "\"app.kubernetes.io/managed-by\":\"helm\",\"tier\":\"%s\"},"
                "\"annotations\":{\"meta.helm.sh/release-name\":\"rel-%zu\"},"
                "\"managedFields\":[{\"manager\":\"helm\",\"operation\":"
                "\"Update\",\"apiVersion\":\"v1\",\"time\":"
                "\"2024-03-01T12:00:00Z\",\"fieldsType\":\"FieldsV1\","
                "\"fieldsV1\":{\"f:data\":{\".\":{},\"f:config.yaml\":{}}}}]},"
                "\"data\":{\"config.yaml\":\"",
                i, i % 40, i & 0xffff, i * 7919, 1000 + i, i % 300,
                i % 3 ? "backend" : "frontend", i % 300);
    for (int l = 0; l < 11; l++)
      kl_buf_addf(&b, "key%d: value-%zu-%d-lorem-ipsum-dolor-sit-amet-%d\\n",
                  l, i, l, l * 31);
    kl_buf_adds(&b, "\",\"log.level\":\"info\",\"feature.flags\":\"a,b,c\"}}");
    kl_obj_opts o = {.drop = kl_obj_default_drop};
    kl_obj *obj = NULL;
    CHECK_EQ_INT(kl_obj_new(b.data, b.len, &o, &obj, NULL), 0);
    if (!obj) break;
    size_t n;
    kl_obj_json(obj, &n);
    json_bytes += n;
    add(s, obj);
  }
  kl_buf_free(&b);
  CHECK_EQ_INT(kl_store_len(s), nobj);
  size_t fp = kl_store_footprint(s);
  double ratio = (double)fp / (double)json_bytes;
  printf("# %zu objects, %.0f bytes of JSON each; footprint %zu bytes; "
         "ratio %.3f\n",
         nobj, (double)json_bytes / nobj, fp, ratio);
  CHECK(json_bytes / nobj > 900 && json_bytes / nobj < 1300);
  CHECK(ratio < 1.5);
  CHECK(fp > json_bytes); /* the figure counts the objects themselves */
  /* the label index holds exactly the objects with i % 300 == 7 */
  kl_strv want = {0};
  for (size_t i = 7; i < nobj; i += 300) {
    char *k = kl_sprintf("team-%02zu/settings-%05zu", i % 40, i);
    kl_strv_push(&want, k);
    free(k);
  }
  CHECK_EQ_INT(want.n, 34);
  char *w = joined(&want);
  CHECK_SV(kl_store_index_keys(s, "app", "svc-007", &sv_), w);
  free(w);
  CHECK_EQ_INT(kl_store_check_indices(s), 0);
  kl_store_unref(s);
}

/* The Lua binding from C: a store with a Lua index function can be written
 * from its Lua state but not from C (no Lua state on this path), outlives
 * the state safely, and frees everything (ASan checks for leaks). */
int luaopen_klua_core(lua_State *L);

static char *lua_run(lua_State *L, const char *code) {
  int top = lua_gettop(L);
  char *res = NULL;
  if (luaL_loadstring(L, code) || lua_pcall(L, 0, 1, 0))
    res = kl_sprintf("ERR: %s", lua_tostring(L, -1));
  else if (!lua_isnil(L, -1))
    res = kl_strdup(lua_tostring(L, -1));
  lua_settop(L, top);
  return res;
}

TEST(lua_index_functions_stay_in_their_state) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_pushcfunction(L, luaopen_klua_core);
  lua_call(L, 0, 1);
  lua_setglobal(L, "core");
  char *r = lua_run(L,
      "st = core.store_new()\n"
      "assert(st:add_indexers({ f = function(o) return o.metadata.name end,"
      "  ns = { namespace = true } }))\n"
      "assert(st:add({ metadata = { namespace = 'x', name = 'a' } }))\n"
      "assert(st:replace({ { metadata = { namespace = 'x', name = 'b' } } }, '1'))\n"
      "local tmp = core.store_new()\n"
      "tmp:add_indexers({ g = function(o) return tmp:len() end })\n"
      "assert(not tmp:add({ metadata = { name = 'z' } }))\n"
      "return table.concat(st:index_keys('f', 'b'), ',')");
  CHECK_EQ_STR(r, "x/b");
  free(r);
  lua_getglobal(L, "st");
  kl_store *ks = kl_store_ref(*(kl_store **)lua_touserdata(L, -1));
  lua_pop(L, 1);
  kl_obj *o = mkp("x", "c", NULL, NULL);
  CHECK_EQ_INT(kl_store_add(ks, o), KL_ELUA); /* not from the Lua state */
  CHECK_EQ_INT(kl_store_len(ks), 1);
  kl_objv ov = {0};
  CHECK_EQ_INT(kl_store_by_index(ks, "f", "b", &ov), 0);
  CHECK_EQ_INT(ov.n, 1);
  kl_objv_free(&ov);
  lua_close(L);
  /* the C store outlives the state; its reads still work */
  CHECK_EQ_INT(kl_store_add(ks, o), KL_ELUA);
  CHECK_EQ_INT(kl_store_delete_key(ks, "x/b"), 0);
  CHECK_EQ_INT(kl_store_len(ks), 0);
  kl_obj_unref(o);
  kl_store_unref(ks);
}

int main(void) {
  RUN(add_get_update_delete);
  RUN(cluster_scoped_keys_and_list);
  RUN(update_moves_object_between_index_values);
  RUN(field_index_scalars);
  RUN(label_keys_with_dots_and_slashes);
  RUN(owner_indexes_and_index_union);
  RUN(unknown_index_and_bad_arguments);
  RUN(add_indexer_on_a_filled_store);
  RUN(replace_is_a_whole_new_content);
  RUN(references_outlive_the_store);
  RUN(custom_index_fn_and_errors);
  RUN(apply_batch_in_order_with_previous_objects);
  RUN(updates_remove_the_stored_values);
  RUN(index_sets_do_not_creep_under_churn);
  RUN(memory_ratio_10k_configmaps);
  RUN(lua_index_functions_stay_in_their_state);
  return ctest_summary();
}
