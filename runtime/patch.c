/* patch.c: JSON merge patch, JSON patch, strategic merge patch and
 * server-side apply on cJSON trees; see patch.h. Field sets for managed
 * fields are kept as cJSON trees in FieldsV1 form ({"f:data":{"f:k":{}}}),
 * so they are stored into managedFields without conversion. */
#include "patch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"

#define GENERIC_422 \
  "the server rejected our request due to an error in our request"

void kl_patch_err_free(kl_patch_err *err) {
  if (!err) return;
  free(err->message);
  free(err->detail);
  for (size_t i = 0; i < err->nconflicts; i++) {
    free(err->conflicts[i].manager);
    free(err->conflicts[i].field);
  }
  free(err->conflicts);
  memset(err, 0, sizeof *err);
}

static int set_err(kl_patch_err *err, int rc, int code, const char *message,
                   char *detail /* NEW, taken */) {
  if (!err) {
    free(detail);
    return rc;
  }
  kl_patch_err_free(err);
  err->code = code;
  err->reason = code == 400 ? "BadRequest" : code == 409 ? "Conflict"
                                                         : "Invalid";
  err->message = kl_strdup(message ? message : (detail ? detail : ""));
  err->detail = detail;
  return rc;
}

static cJSON *dup(const cJSON *v) {
  cJSON *c = cJSON_Duplicate(v, 1);
  if (!c) {
    fprintf(stderr, "klua: out of memory (cJSON)\n");
    abort();
  }
  return c;
}

/* ---- RFC 7386 -------------------------------------------------------- */

cJSON *kl_patch_merge(const cJSON *target, const cJSON *patch) {
  if (!cJSON_IsObject(patch)) return dup(patch);
  cJSON *res = cJSON_IsObject(target) ? dup(target) : cJSON_CreateObject();
  const cJSON *m;
  cJSON_ArrayForEach(m, patch) {
    if (cJSON_IsNull(m)) {
      cJSON_DeleteItemFromObjectCaseSensitive(res, m->string);
      continue;
    }
    cJSON *old = cJSON_GetObjectItemCaseSensitive(res, m->string);
    cJSON *nv = kl_patch_merge(old, m);
    if (old)
      cJSON_ReplaceItemInObjectCaseSensitive(res, m->string, nv);
    else
      cJSON_AddItemToObject(res, m->string, nv);
  }
  return res;
}

/* ---- RFC 6901 / 6902 ------------------------------------------------- */

/* Splits a pointer into unescaped tokens. Returns the count or -1. */
static int ptr_split(const char *ptr, char ***toks) {
  *toks = NULL;
  if (!ptr) return -1;
  if (!*ptr) return 0;
  if (*ptr != '/') return -1;
  int n = 0, cap = 0;
  const char *p = ptr;
  while (*p == '/') {
    p++;
    kl_buf b = KL_BUF_INIT;
    kl_buf_adds(&b, "");
    while (*p && *p != '/') {
      if (*p == '~') {
        if (p[1] == '0')
          kl_buf_addc(&b, '~');
        else if (p[1] == '1')
          kl_buf_addc(&b, '/');
        else {
          kl_buf_free(&b);
          for (int i = 0; i < n; i++) free((*toks)[i]);
          free(*toks);
          *toks = NULL;
          return -1;
        }
        p += 2;
      } else {
        kl_buf_addc(&b, *p++);
      }
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 8;
      *toks = kl_realloc(*toks, (size_t)cap * sizeof **toks);
    }
    (*toks)[n++] = kl_buf_detach(&b, NULL);
  }
  return n;
}

static void toks_free(char **t, int n) {
  for (int i = 0; i < n; i++) free(t[i]);
  free(t);
}

/* Array index token: digits only, no leading zero; -1 otherwise. */
static long arr_index(const char *t) {
  if (!*t || (t[0] == '0' && t[1])) return -1;
  long v = 0;
  for (const char *p = t; *p; p++) {
    if (*p < '0' || *p > '9' || v > 100000000) return -1;
    v = v * 10 + (*p - '0');
  }
  return v;
}

static cJSON *step(const cJSON *cur, const char *tok) {
  if (cJSON_IsObject(cur)) return cJSON_GetObjectItemCaseSensitive(cur, tok);
  if (cJSON_IsArray(cur)) {
    long i = arr_index(tok);
    if (i < 0 || i >= cJSON_GetArraySize(cur)) return NULL;
    return cJSON_GetArrayItem(cur, (int)i);
  }
  return NULL;
}

cJSON *kl_json_pointer_get(const cJSON *doc, const char *ptr) {
  char **t;
  int n = ptr_split(ptr, &t);
  if (n < 0) return NULL;
  const cJSON *cur = doc;
  for (int i = 0; i < n && cur; i++) cur = step(cur, t[i]);
  toks_free(t, n);
  return (cJSON *)cur;
}

/* Detaches the value at ptr from *doc. Returns it, or NULL if absent. A
 * pointer "" detaches the whole document (*doc becomes NULL). */
static cJSON *ptr_detach(cJSON **doc, char **t, int n) {
  if (n == 0) {
    cJSON *d = *doc;
    *doc = NULL;
    return d;
  }
  cJSON *parent = *doc;
  for (int i = 0; i < n - 1 && parent; i++) parent = step(parent, t[i]);
  if (!parent) return NULL;
  const char *last = t[n - 1];
  if (cJSON_IsObject(parent))
    return cJSON_DetachItemFromObjectCaseSensitive(parent, last);
  if (cJSON_IsArray(parent)) {
    long i = arr_index(last);
    if (i < 0 || i >= cJSON_GetArraySize(parent)) return NULL;
    return cJSON_DetachItemFromArray(parent, (int)i);
  }
  return NULL;
}

/* Inserts v before index i (cJSON_InsertItemInArray of Debian's 1.7.15
 * refuses valid inserts, so detach the tail and re-append it). */
static void arr_insert(cJSON *arr, int i, cJSON *v) {
  cJSON *tail = cJSON_CreateArray();
  while (cJSON_GetArraySize(arr) > i)
    cJSON_AddItemToArray(tail, cJSON_DetachItemFromArray(arr, i));
  cJSON_AddItemToArray(arr, v);
  while (cJSON_GetArraySize(tail) > 0)
    cJSON_AddItemToArray(arr, cJSON_DetachItemFromArray(tail, 0));
  cJSON_Delete(tail);
}

/* Adds v (taken) at the pointer; replace_mode: the member/index must be
 * replaced (arrays: the index must exist; objects: set). Returns 0, or
 * KL_ENOENT / KL_EINVAL with *why set (static). */
static int ptr_add(cJSON **doc, char **t, int n, cJSON *v, bool replace_mode,
                   const char **why) {
  if (n == 0) {
    cJSON_Delete(*doc);
    *doc = v;
    return 0;
  }
  cJSON *parent = *doc;
  for (int i = 0; i < n - 1 && parent; i++) parent = step(parent, t[i]);
  const char *last = t[n - 1];
  if (cJSON_IsObject(parent)) {
    if (cJSON_GetObjectItemCaseSensitive(parent, last))
      cJSON_ReplaceItemInObjectCaseSensitive(parent, last, v);
    else
      cJSON_AddItemToObject(parent, last, v);
    return 0;
  }
  if (cJSON_IsArray(parent)) {
    int size = cJSON_GetArraySize(parent);
    if (!replace_mode && strcmp(last, "-") == 0) {
      cJSON_AddItemToArray(parent, v);
      return 0;
    }
    long i = arr_index(last);
    if (i < 0 || i > size || (replace_mode && i == size)) {
      cJSON_Delete(v);
      *why = "array index out of range";
      return KL_ENOENT;
    }
    if (replace_mode)
      cJSON_ReplaceItemInArray(parent, (int)i, v);
    else if (i == size)
      cJSON_AddItemToArray(parent, v);
    else
      arr_insert(parent, (int)i, v);
    return 0;
  }
  cJSON_Delete(v);
  *why = parent ? "the parent is not an object or array"
                : "the parent does not exist";
  return parent ? KL_EINVAL : KL_ENOENT;
}

static const char *json_type_name(const cJSON *v) {
  if (cJSON_IsObject(v)) return "object";
  if (cJSON_IsString(v)) return "string";
  if (cJSON_IsNumber(v)) return "number";
  if (cJSON_IsBool(v)) return "bool";
  return "value";
}

int kl_patch_json(const cJSON *target, const cJSON *ops, cJSON **out,
                  kl_patch_err *err) {
  *out = NULL;
  if (cJSON_IsNull(ops)) {
    *out = target ? dup(target) : cJSON_CreateNull();
    return 0;
  }
  if (!cJSON_IsArray(ops)) {
    char *m = kl_sprintf("json: cannot unmarshal %s into Go value of type "
                         "jsonpatch.Patch",
                         json_type_name(ops));
    int rc = set_err(err, KL_EINVAL, 400, m, NULL);
    free(m);
    return rc;
  }
  const cJSON *op;
  cJSON_ArrayForEach(op, ops) {
    if (!cJSON_IsObject(op)) {
      char *m = kl_sprintf("json: cannot unmarshal %s into Go value of type "
                           "jsonpatch.Operation",
                           cJSON_IsArray(op) ? "array" : json_type_name(op));
      int rc = set_err(err, KL_EINVAL, 400, m, NULL);
      free(m);
      return rc;
    }
  }
  cJSON *doc = target ? dup(target) : cJSON_CreateNull();
  int idx = 0, rc = 0;
  char *detail = NULL;
  cJSON_ArrayForEach(op, ops) {
    const cJSON *jop = cJSON_GetObjectItemCaseSensitive(op, "op");
    const cJSON *jpath = cJSON_GetObjectItemCaseSensitive(op, "path");
    const cJSON *jval = cJSON_GetObjectItemCaseSensitive(op, "value");
    const cJSON *jfrom = cJSON_GetObjectItemCaseSensitive(op, "from");
    const char *name = cJSON_IsString(jop) ? jop->valuestring : "";
    const char *why = NULL;
    char **t = NULL, **ft = NULL;
    int n = -1, fn = -1;
    if (!cJSON_IsString(jpath)) {
      detail = kl_sprintf("operation %d (%s): missing path", idx, name);
      rc = KL_EINVAL;
      break;
    }
    const char *path = jpath->valuestring;
    n = ptr_split(path, &t);
    if (n < 0) {
      detail = kl_sprintf("operation %d (%s): malformed pointer \"%s\"", idx,
                          name, path);
      rc = KL_EINVAL;
      break;
    }
    bool needs_value = !strcmp(name, "add") || !strcmp(name, "replace") ||
                       !strcmp(name, "test");
    bool needs_from = !strcmp(name, "move") || !strcmp(name, "copy");
    if (needs_value && !jval) {
      detail = kl_sprintf("operation %d (%s %s): missing value", idx, name,
                          path);
      rc = KL_EINVAL;
    } else if (needs_from &&
               (!cJSON_IsString(jfrom) ||
                (fn = ptr_split(jfrom->valuestring, &ft)) < 0)) {
      detail = kl_sprintf("operation %d (%s %s): missing or malformed from",
                          idx, name, path);
      rc = KL_EINVAL;
    } else if (!strcmp(name, "add")) {
      rc = ptr_add(&doc, t, n, dup(jval), false, &why);
    } else if (!strcmp(name, "replace")) {
      if (n > 0 && !kl_json_pointer_get(doc, path)) {
        /* evanphx/json-patch: a missing member of an existing object is
         * set (kube-apiserver v1.20 answers 200); anything else fails */
        cJSON *parent = doc;
        for (int i = 0; i < n - 1 && parent; i++) parent = step(parent, t[i]);
        if (!cJSON_IsObject(parent)) {
          rc = KL_ENOENT;
          why = "missing path";
        }
      }
      if (!rc) rc = ptr_add(&doc, t, n, dup(jval), true, &why);
    } else if (!strcmp(name, "remove")) {
      cJSON *d = ptr_detach(&doc, t, n);
      if (!d) {
        rc = KL_ENOENT;
        why = "missing path";
      } else {
        cJSON_Delete(d);
        if (!doc) doc = cJSON_CreateNull();
      }
    } else if (!strcmp(name, "test")) {
      const cJSON *cur = kl_json_pointer_get(doc, path);
      bool ok = cur ? cJSON_Compare(cur, jval, 1) : cJSON_IsNull(jval);
      if (!ok) {
        char *have = cur ? cJSON_PrintUnformatted(cur) : NULL;
        char *want = cJSON_PrintUnformatted(jval);
        detail = kl_sprintf("operation %d: test failed: %s is %s, expected %s",
                            idx, path, have ? have : "missing",
                            want ? want : "?");
        free(have);
        free(want);
        rc = KL_EINVAL;
      }
    } else if (!strcmp(name, "move") || !strcmp(name, "copy")) {
      bool move = name[0] == 'm';
      const char *from = jfrom->valuestring;
      size_t fl = strlen(from);
      if (move && strncmp(path, from, fl) == 0 && path[fl] == '/') {
        detail = kl_sprintf("operation %d: cannot move %s into its own child "
                            "%s", idx, from, path);
        rc = KL_EINVAL;
      } else {
        cJSON *v;
        if (move) {
          v = ptr_detach(&doc, ft, fn);
          if (!doc) doc = cJSON_CreateNull();
        } else {
          const cJSON *src = kl_json_pointer_get(doc, from);
          v = src ? dup(src) : NULL;
        }
        if (!v) {
          rc = KL_ENOENT;
          why = "missing from location";
        } else {
          rc = ptr_add(&doc, t, n, v, false, &why);
        }
      }
    } else {
      detail = kl_sprintf("operation %d: unexpected kind \"%s\"", idx, name);
      rc = KL_EINVAL;
    }
    if (rc && !detail)
      detail = kl_sprintf("operation %d (%s %s): %s", idx, name, path,
                          why ? why : "failed");
    toks_free(t, n > 0 ? n : 0);
    toks_free(ft, fn > 0 ? fn : 0);
    if (rc) break;
    idx++;
  }
  if (rc) {
    cJSON_Delete(doc);
    return set_err(err, rc, 422, GENERIC_422, detail);
  }
  *out = doc;
  return 0;
}

/* ---- strategic merge patch ------------------------------------------- */

/* Merge keys of core/apps lists, by field name (an approximation: the
 * real table is per type, from the Go struct tags). */
static const struct {
  const char *field;
  const char *key;
} merge_keys[] = {
    {"containers", "name"},
    {"initContainers", "name"},
    {"ephemeralContainers", "name"},
    {"volumes", "name"},
    {"env", "name"},
    {"imagePullSecrets", "name"},
    {"secrets", "name"},
    {"resourceClaims", "name"},
    {"ports", "containerPort"}, /* or "port": see list_merge_key */
    {"volumeMounts", "mountPath"},
    {"volumeDevices", "devicePath"},
    {"conditions", "type"},
    {"addresses", "type"},
    {"ownerReferences", "uid"},
    {"hostAliases", "ip"},
    {"podIPs", "ip"},
    {"hostIPs", "ip"},
    {"topologySpreadConstraints", "topologyKey"},
};

static bool is_directive(const char *k) {
  return k[0] == '$' &&
         (!strcmp(k, "$patch") || !strcmp(k, "$retainKeys") ||
          !strncmp(k, "$setElementOrder/", 17) ||
          !strncmp(k, "$deleteFromPrimitiveList/", 25));
}

/* The merge key of list field (given a sample element), or NULL: atomic. */
static const char *list_merge_key(const char *field, const cJSON *sample) {
  if (!field) return NULL;
  for (size_t i = 0; i < sizeof merge_keys / sizeof *merge_keys; i++) {
    if (strcmp(merge_keys[i].field, field) != 0) continue;
    if (!strcmp(field, "ports") && sample &&
        !cJSON_GetObjectItemCaseSensitive(sample, "containerPort") &&
        cJSON_GetObjectItemCaseSensitive(sample, "port"))
      return "port";
    return merge_keys[i].key;
  }
  return NULL;
}

/* Lists of strings merged as sets (metadata.finalizers). */
static bool is_set_list(const char *parent, const char *field) {
  return parent && field && !strcmp(parent, "metadata") &&
         !strcmp(field, "finalizers");
}

static const char *patch_directive(const cJSON *m) {
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(m, "$patch");
  return cJSON_IsString(d) ? d->valuestring : NULL;
}

static int smp_value(const cJSON *target, const cJSON *patch,
                     const char *parent, const char *field, cJSON **out,
                     kl_patch_err *err);

static bool key_eq(const cJSON *a, const cJSON *b, const char *key) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, key);
  const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, key);
  return x && y && cJSON_Compare(x, y, 1);
}

/* Merges list patch into target by key. */
static int smp_list(const cJSON *target, const cJSON *patch, const char *field,
                    const char *key, cJSON **out, kl_patch_err *err) {
  /* {"$patch":"replace"} item: the list becomes the other items */
  bool replace = false;
  const cJSON *it;
  cJSON_ArrayForEach(it, patch) {
    const char *d = patch_directive(it);
    if (d && !strcmp(d, "replace")) replace = true;
  }
  cJSON *res = (!replace && cJSON_IsArray(target)) ? dup(target)
                                                   : cJSON_CreateArray();
  cJSON_ArrayForEach(it, patch) {
    const char *d = patch_directive(it);
    if (d && !strcmp(d, "replace") && cJSON_GetArraySize(it) == 1) continue;
    if (!cJSON_IsObject(it) ||
        !cJSON_GetObjectItemCaseSensitive(it, key)) {
      cJSON_Delete(res);
      char *m = kl_sprintf("map: %s does not contain declared merge key: %s",
                           field, key);
      int rc = set_err(err, KL_EINVAL, 422, m, NULL);
      free(m);
      return rc;
    }
    int i = 0, found = -1;
    const cJSON *t;
    cJSON_ArrayForEach(t, res) {
      if (found < 0 && key_eq(t, it, key)) found = i;
      i++;
    }
    if (d && !strcmp(d, "delete")) {
      if (found >= 0) cJSON_DeleteItemFromArray(res, found);
      continue;
    }
    if (d && strcmp(d, "merge") != 0 && strcmp(d, "replace") != 0) {
      cJSON_Delete(res);
      char *m = kl_sprintf("Unknown patch type: %s", d);
      int rc = set_err(err, KL_EINVAL, 400, m, NULL);
      free(m);
      return rc;
    }
    cJSON *nv = NULL;
    const cJSON *base = found >= 0 && !(d && !strcmp(d, "replace"))
                            ? cJSON_GetArrayItem(res, found)
                            : NULL;
    int rc = smp_value(base, it, field, NULL, &nv, err);
    if (rc) {
      cJSON_Delete(res);
      return rc;
    }
    if (!nv) {
      if (found >= 0) cJSON_DeleteItemFromArray(res, found);
    } else if (found >= 0) {
      cJSON_ReplaceItemInArray(res, found, nv);
    } else {
      cJSON_AddItemToArray(res, nv);
    }
  }
  *out = res;
  return 0;
}

static bool array_has(const cJSON *arr, const cJSON *v) {
  const cJSON *x;
  cJSON_ArrayForEach(x, arr) if (cJSON_Compare(x, v, 1)) return true;
  return false;
}

/* Merges map patch into target (either may be absent). *out NULL means
 * "delete this map" ($patch: delete). */
static int smp_map(const cJSON *target, const cJSON *patch, const char *self,
                   cJSON **out, kl_patch_err *err) {
  const char *d = patch_directive(patch);
  if (d) {
    if (!strcmp(d, "delete")) {
      *out = NULL;
      return 0;
    }
    if (!strcmp(d, "replace"))
      target = NULL;
    else if (strcmp(d, "merge") != 0) {
      char *m = kl_sprintf("Unknown patch type: %s", d);
      int rc = set_err(err, KL_EINVAL, 400, m, NULL);
      free(m);
      return rc;
    }
  }
  cJSON *res = cJSON_IsObject(target) ? dup(target) : cJSON_CreateObject();
  const cJSON *m;
  cJSON_ArrayForEach(m, patch) {
    const char *k = m->string;
    if (!strncmp(k, "$deleteFromPrimitiveList/", 25)) {
      const char *f = k + 25;
      cJSON *lst = cJSON_GetObjectItemCaseSensitive(res, f);
      if (!cJSON_IsArray(m)) {
        cJSON_Delete(res);
        return set_err(err, KL_EINVAL, 400, NULL,
                       kl_sprintf("%s must be a list", k));
      }
      if (cJSON_IsArray(lst)) {
        for (int i = cJSON_GetArraySize(lst) - 1; i >= 0; i--)
          if (array_has(m, cJSON_GetArrayItem(lst, i)))
            cJSON_DeleteItemFromArray(lst, i);
      }
      continue;
    }
    if (is_directive(k)) continue;
    if (cJSON_IsNull(m)) {
      cJSON_DeleteItemFromObjectCaseSensitive(res, k);
      continue;
    }
    cJSON *old = cJSON_GetObjectItemCaseSensitive(res, k);
    cJSON *nv = NULL;
    int rc = smp_value(old, m, self, k, &nv, err);
    if (rc) {
      cJSON_Delete(res);
      return rc;
    }
    if (!nv)
      cJSON_DeleteItemFromObjectCaseSensitive(res, k);
    else if (old)
      cJSON_ReplaceItemInObjectCaseSensitive(res, k, nv);
    else
      cJSON_AddItemToObject(res, k, nv);
  }
  *out = res;
  return 0;
}

/* parent: the field name holding the map this value is in; field: this
 * value's member name (NULL for list items). */
static int smp_value(const cJSON *target, const cJSON *patch,
                     const char *parent, const char *field, cJSON **out,
                     kl_patch_err *err) {
  if (cJSON_IsObject(patch))
    return smp_map(target, patch, field ? field : parent, out, err);
  if (cJSON_IsArray(patch)) {
    if (is_set_list(parent, field)) {
      cJSON *res = cJSON_IsArray(target) ? dup(target) : cJSON_CreateArray();
      const cJSON *x;
      cJSON_ArrayForEach(x, patch) if (!array_has(res, x))
          cJSON_AddItemToArray(res, dup(x));
      *out = res;
      return 0;
    }
    const cJSON *sample = NULL, *x;
    cJSON_ArrayForEach(x, patch) {
      const char *d = patch_directive(x);
      if (cJSON_IsObject(x) && !(d && cJSON_GetArraySize(x) == 1)) {
        sample = x;
        break;
      }
    }
    const char *key = list_merge_key(field, sample);
    if (key) return smp_list(target, patch, field, key, out, err);
    /* atomic list: replaced; directive-only items are dropped */
    cJSON *res = cJSON_CreateArray();
    cJSON_ArrayForEach(x, patch) {
      const char *d = patch_directive(x);
      if (d && cJSON_GetArraySize(x) == 1) continue;
      cJSON *nv = NULL;
      int rc = smp_value(NULL, x, field, NULL, &nv, err);
      if (rc) {
        cJSON_Delete(res);
        return rc;
      }
      if (nv) cJSON_AddItemToArray(res, nv);
    }
    *out = res;
    return 0;
  }
  *out = dup(patch);
  return 0;
}

int kl_patch_strategic(const cJSON *target, const cJSON *patch, cJSON **out,
                       kl_patch_err *err) {
  *out = NULL;
  if (!cJSON_IsObject(patch))
    return set_err(err, KL_EINVAL, 400, NULL,
                   kl_strdup("a strategic merge patch must be a JSON object"));
  cJSON *res = NULL;
  int rc = smp_map(target, patch, NULL, &res, err);
  if (rc) return rc;
  *out = res ? res : cJSON_CreateObject();
  return 0;
}

/* ---- managed fields (FieldsV1 sets) ---------------------------------- */

/* Builds the FieldsV1 key of a list element: k:{"name":"app"} */
static char *elem_key(const cJSON *item, const char *key) {
  const cJSON *kv = cJSON_GetObjectItemCaseSensitive(item, key);
  char *v = cJSON_PrintUnformatted(kv);
  char *q = NULL;
  kl_buf b = KL_BUF_INIT;
  kl_json_quote(&b, key, strlen(key));
  q = kl_buf_detach(&b, NULL);
  char *r = kl_sprintf("k:{%s:%s}", q, v ? v : "null");
  free(q);
  free(v);
  return r;
}

static cJSON *fs_child(cJSON *set, const char *k) {
  cJSON *c = cJSON_GetObjectItemCaseSensitive(set, k);
  if (!c) {
    c = cJSON_CreateObject();
    cJSON_AddItemToObject(set, k, c);
  }
  return c;
}

/* Top-level and metadata members that are not tracked. */
static bool untracked(int depth, const char *parent, const char *k) {
  if (depth == 0)
    return !strcmp(k, "apiVersion") || !strcmp(k, "kind");
  if (depth == 1 && parent && !strcmp(parent, "metadata"))
    return !strcmp(k, "name") || !strcmp(k, "namespace") ||
           !strcmp(k, "uid") || !strcmp(k, "resourceVersion") ||
           !strcmp(k, "managedFields") || !strcmp(k, "creationTimestamp") ||
           !strcmp(k, "generation") || !strcmp(k, "selfLink") ||
           !strcmp(k, "deletionTimestamp") ||
           !strcmp(k, "deletionGracePeriodSeconds");
  return false;
}

static bool all_string_members(const cJSON *o) {
  const cJSON *m;
  cJSON_ArrayForEach(m, o) if (!cJSON_IsString(m)) return false;
  return true;
}

/* Adds the fields of value v (a map) into set. dots: mark free-form maps
 * (all members strings) and list elements with "." as Update does. */
static void fs_of_map(const cJSON *v, cJSON *set, int depth,
                      const char *self, bool dots);

static void fs_of_member(const cJSON *m, const char *self, const char *k,
                         cJSON *set, int depth, bool dots) {
  char *fk = kl_sprintf("f:%s", k);
  if (cJSON_IsObject(m) && cJSON_GetArraySize(m) > 0) {
    /* a map of only untracked members (metadata: name) adds nothing */
    cJSON *c = cJSON_CreateObject();
    fs_of_map(m, c, depth + 1, k, dots);
    if (cJSON_GetArraySize(c) == 0) {
      cJSON_Delete(c);
    } else {
      if (dots && all_string_members(m))
        cJSON_AddItemToObject(c, ".", cJSON_CreateObject());
      cJSON_AddItemToObject(set, fk, c);
    }
  } else if (cJSON_IsArray(m) && is_set_list(self, k)) {
    cJSON *c = fs_child(set, fk);
    const cJSON *x;
    cJSON_ArrayForEach(x, m) {
      char *vs = cJSON_PrintUnformatted(x);
      char *vk = kl_sprintf("v:%s", vs ? vs : "null");
      fs_child(c, vk);
      free(vk);
      free(vs);
    }
  } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) > 0 &&
             list_merge_key(k, cJSON_GetArrayItem(m, 0))) {
    const char *key = list_merge_key(k, cJSON_GetArrayItem(m, 0));
    bool keyed = true;
    const cJSON *x;
    cJSON_ArrayForEach(x, m) if (!cJSON_IsObject(x) ||
                                 !cJSON_GetObjectItemCaseSensitive(x, key))
        keyed = false;
    if (!keyed) {
      fs_child(set, fk);
    } else {
      cJSON *c = fs_child(set, fk);
      cJSON_ArrayForEach(x, m) {
        char *ek = elem_key(x, key);
        cJSON *e = fs_child(c, ek);
        fs_child(e, ".");
        fs_of_map(x, e, depth + 2, k, dots);
        free(ek);
      }
    }
  } else {
    fs_child(set, fk);
  }
  free(fk);
}

static void fs_of_map(const cJSON *v, cJSON *set, int depth,
                      const char *self, bool dots) {
  const cJSON *m;
  cJSON_ArrayForEach(m, v) {
    if (untracked(depth, self, m->string)) continue;
    fs_of_member(m, self, m->string, set, depth, dots);
  }
}

/* Walks to the value at a FieldsV1 path (array of keys) in obj. */
static cJSON *fs_resolve_step(cJSON *cur, const char *k) {
  if (!cur) return NULL;
  if (!strcmp(k, ".")) return cur;
  if (k[0] == 'f' && k[1] == ':')
    return cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, k + 2)
                               : NULL;
  if (!cJSON_IsArray(cur)) return NULL;
  if (k[0] == 'k' && k[1] == ':') {
    cJSON *kv = cJSON_Parse(k + 2);
    cJSON *found = NULL, *x;
    if (cJSON_IsObject(kv)) {
      cJSON_ArrayForEach(x, cur) {
        bool ok = cJSON_IsObject(x);
        const cJSON *f;
        cJSON_ArrayForEach(f, kv) if (ok && !key_eq(x, kv, f->string)) ok =
            false;
        if (ok) {
          found = x;
          break;
        }
      }
    }
    cJSON_Delete(kv);
    return found;
  }
  if (k[0] == 'v' && k[1] == ':') {
    cJSON *vv = cJSON_Parse(k + 2);
    cJSON *found = NULL, *x;
    if (vv) cJSON_ArrayForEach(x, cur) if (!found && cJSON_Compare(x, vv, 1))
        found = x;
    cJSON_Delete(vv);
    return found;
  }
  if (k[0] == 'i' && k[1] == ':') {
    long i = arr_index(k + 2);
    return i >= 0 ? cJSON_GetArrayItem(cur, (int)i) : NULL;
  }
  return NULL;
}

static cJSON *fs_resolve(const cJSON *obj, char **path, int n) {
  cJSON *cur = (cJSON *)obj;
  for (int i = 0; i < n && cur; i++) cur = fs_resolve_step(cur, path[i]);
  return cur;
}

/* Removes the value at path from obj (if present). */
static void fs_remove(cJSON *obj, char **path, int n) {
  if (n > 0 && !strcmp(path[n - 1], ".")) n--;
  if (n == 0) return;
  cJSON *parent = fs_resolve(obj, path, n - 1);
  cJSON *target = fs_resolve_step(parent, path[n - 1]);
  if (!parent || !target) return;
  if (cJSON_IsObject(parent))
    cJSON_Delete(cJSON_DetachItemViaPointer(parent, target));
  else if (cJSON_IsArray(parent))
    cJSON_Delete(cJSON_DetachItemViaPointer(parent, target));
}

/* Does set contain path as a member (leaf or with ".")? */
static bool fs_has(const cJSON *set, char **path, int n) {
  const cJSON *cur = set;
  for (int i = 0; i < n && cur; i++)
    cur = cJSON_GetObjectItemCaseSensitive(cur, path[i]);
  if (!cur) return false;
  return cJSON_GetArraySize(cur) == 0 ||
         cJSON_GetObjectItemCaseSensitive(cur, ".") != NULL;
}

/* Removes path from set, pruning empty parents. Returns true if set is
 * now empty. */
static bool fs_del(cJSON *set, char **path, int n) {
  if (n == 0) return cJSON_GetArraySize(set) == 0;
  cJSON *c = cJSON_GetObjectItemCaseSensitive(set, path[0]);
  if (!c) return cJSON_GetArraySize(set) == 0;
  if (n == 1) {
    if (cJSON_GetArraySize(c) == 0 || !strcmp(path[0], "."))
      cJSON_DeleteItemFromObjectCaseSensitive(set, path[0]);
    else
      cJSON_DeleteItemFromObjectCaseSensitive(c, ".");
    if (cJSON_GetObjectItemCaseSensitive(set, path[0]) &&
        cJSON_GetArraySize(c) == 0)
      cJSON_DeleteItemFromObjectCaseSensitive(set, path[0]);
  } else if (fs_del(c, path + 1, n - 1)) {
    cJSON_DeleteItemFromObjectCaseSensitive(set, path[0]);
  }
  return cJSON_GetArraySize(set) == 0;
}

static void fs_add(cJSON *set, char **path, int n) {
  cJSON *cur = set;
  for (int i = 0; i < n; i++) cur = fs_child(cur, path[i]);
}

/* Calls fn for every member path of set (leaves and "." entries). */
typedef void (*fs_fn)(char **path, int n, void *ud);
static void fs_walk_rec(const cJSON *set, char **path, int n, fs_fn fn,
                        void *ud) {
  if (n >= 64) return;
  const cJSON *c;
  cJSON_ArrayForEach(c, set) {
    path[n] = c->string;
    if (cJSON_GetArraySize(c) == 0)
      fn(path, n + 1, ud);
    else
      fs_walk_rec(c, path, n + 1, fn, ud);
  }
}
static void fs_walk(const cJSON *set, fs_fn fn, void *ud) {
  char *path[64];
  if (set) fs_walk_rec(set, path, 0, fn, ud);
}

/* ".data.color", ".spec.containers[name=\"app\"].image" */
static char *fs_path_string(char **path, int n) {
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "");
  for (int i = 0; i < n; i++) {
    const char *k = path[i];
    if (!strcmp(k, ".")) continue;
    if (k[0] == 'f') {
      kl_buf_addf(&b, ".%s", k + 2);
    } else if (k[0] == 'k') {
      cJSON *kv = cJSON_Parse(k + 2);
      kl_buf_addc(&b, '[');
      const cJSON *f;
      int j = 0;
      cJSON_ArrayForEach(f, kv) {
        char *s = cJSON_PrintUnformatted(f);
        kl_buf_addf(&b, "%s%s=%s", j++ ? "," : "", f->string, s ? s : "");
        free(s);
      }
      kl_buf_addc(&b, ']');
      cJSON_Delete(kv);
    } else if (k[0] == 'v') {
      kl_buf_addf(&b, "[=%s]", k + 2);
    } else if (k[0] == 'i') {
      kl_buf_addf(&b, "[%s]", k + 2);
    }
  }
  return kl_buf_detach(&b, NULL);
}

static char *now_rfc3339(const char *now) {
  if (now) return kl_strdup(now);
  char buf[32];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return kl_strdup(buf);
}

static cJSON *managed_fields(const cJSON *obj) {
  const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
  cJSON *mf = cJSON_GetObjectItemCaseSensitive(md, "managedFields");
  return cJSON_IsArray(mf) ? mf : NULL;
}

static const char *entry_str(const cJSON *e, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static cJSON *entry_set(cJSON *e) {
  cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "fieldsV1");
  if (!cJSON_IsObject(s)) {
    cJSON_DeleteItemFromObjectCaseSensitive(e, "fieldsV1");
    s = cJSON_AddObjectToObject(e, "fieldsV1");
  }
  return s;
}

/* Sets member k of object o to v (taken): replaces it, or adds it when the
 * entry lacks it (a managedFields entry from a client may miss any member;
 * cJSON_ReplaceItemInObject would then neither add v nor free it). */
static void set_member(cJSON *o, const char *k, cJSON *v) {
  if (cJSON_GetObjectItemCaseSensitive(o, k))
    cJSON_ReplaceItemInObjectCaseSensitive(o, k, v);
  else if (cJSON_IsObject(o))
    cJSON_AddItemToObject(o, k, v);
  else
    cJSON_Delete(v);
}

static cJSON *new_entry(const char *manager, const char *operation,
                        const char *api_version, const char *time) {
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "manager", manager);
  cJSON_AddStringToObject(e, "operation", operation);
  cJSON_AddStringToObject(e, "apiVersion", api_version);
  cJSON_AddStringToObject(e, "time", time);
  cJSON_AddStringToObject(e, "fieldsType", "FieldsV1");
  cJSON_AddObjectToObject(e, "fieldsV1");
  return e;
}

/* Sets obj.metadata.managedFields to mf (taken), or removes it if empty. */
static void put_managed_fields(cJSON *obj, cJSON *mf) {
  cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
  if (!cJSON_IsObject(md)) {
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "metadata");
    md = cJSON_AddObjectToObject(obj, "metadata");
  }
  /* drop entries with empty sets */
  for (int i = cJSON_GetArraySize(mf) - 1; i >= 0; i--) {
    cJSON *e = cJSON_GetArrayItem(mf, i);
    cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "fieldsV1");
    if (!cJSON_IsObject(s) || cJSON_GetArraySize(s) == 0)
      cJSON_DeleteItemFromArray(mf, i);
  }
  cJSON_DeleteItemFromObjectCaseSensitive(md, "managedFields");
  if (cJSON_GetArraySize(mf) > 0)
    cJSON_AddItemToObject(md, "managedFields", mf);
  else
    cJSON_Delete(mf);
}

static char *print_manager(const cJSON *e) {
  const char *op = entry_str(e, "operation");
  if (!strcmp(op, "Update")) {
    const char *t = entry_str(e, "time");
    if (*t)
      return kl_sprintf("\"%s\" using %s at %s", entry_str(e, "manager"),
                        entry_str(e, "apiVersion"), t);
    return kl_sprintf("\"%s\" using %s", entry_str(e, "manager"),
                      entry_str(e, "apiVersion"));
  }
  return kl_sprintf("\"%s\"", entry_str(e, "manager"));
}

/* ---- server-side apply ----------------------------------------------- */

typedef struct apply_ctx {
  const cJSON *live;    /* may be NULL */
  const cJSON *applied;
  cJSON *mf;            /* working copy of managedFields */
  int self;             /* index of the manager's Apply entry, or -1 */
  bool force;
  kl_patch_conflict *conf;
  size_t nconf, capconf;
  cJSON *result;        /* object being built */
} apply_ctx;

static void add_conflict(apply_ctx *c, const cJSON *e, char **path, int n) {
  if (c->nconf == c->capconf) {
    c->capconf = c->capconf ? c->capconf * 2 : 4;
    c->conf = kl_realloc(c->conf, c->capconf * sizeof *c->conf);
  }
  c->conf[c->nconf].manager = print_manager(e);
  c->conf[c->nconf].field = fs_path_string(path, n);
  c->nconf++;
}

static void check_path(char **path, int n, void *ud) {
  apply_ctx *c = ud;
  if (!strcmp(path[n - 1], ".")) return;
  const cJSON *lv = fs_resolve(c->live, path, n);
  const cJSON *av = fs_resolve(c->applied, path, n);
  if (!lv || (av && cJSON_Compare(lv, av, 1))) return; /* no change */
  int i = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, c->mf) {
    if (i++ == c->self) continue;
    cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "fieldsV1");
    if (!fs_has(s, path, n)) continue;
    if (c->force)
      fs_del(entry_set(e), path, n);
    else
      add_conflict(c, e, path, n);
  }
}

/* Removes, from the result, a field this manager no longer applies
 * unless another manager still owns it. */
typedef struct prune_ctx {
  apply_ctx *a;
  const cJSON *newset;
} prune_ctx;

static void prune_path(char **path, int n, void *ud) {
  prune_ctx *p = ud;
  if (fs_has(p->newset, path, n)) return;
  int i = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, p->a->mf) {
    if (i++ == p->a->self) continue;
    if (fs_has(cJSON_GetObjectItemCaseSensitive(e, "fieldsV1"), path, n))
      return;
  }
  fs_remove(p->a->result, path, n);
}

static int cmp_conflict(const void *a, const void *b) {
  const kl_patch_conflict *x = a, *y = b;
  int c = strcmp(x->manager, y->manager);
  return c ? c : strcmp(x->field, y->field);
}

/* Merge of applied into the result: SMP without directives. */
static int apply_merge(const cJSON *live, const cJSON *applied, cJSON **out,
                       kl_patch_err *err) {
  return kl_patch_strategic(live, applied, out, err);
}

int kl_patch_apply(const cJSON *live, const cJSON *applied,
                   const char *manager, bool force, const char *now,
                   const char *api_version, cJSON **out,
                   kl_patch_err *err) {
  *out = NULL;
  if (!manager || !*manager)
    return set_err(err, KL_EINVAL, 422, NULL,
                   kl_strdup("PATCH, application/apply-patch+yaml: "
                             "fieldManager is required"));
  if (!cJSON_IsObject(applied))
    return set_err(err, KL_EINVAL, 400, NULL,
                   kl_strdup("the applied configuration must be an object"));
  if (managed_fields(applied))
    return set_err(err, KL_EINVAL, 400, NULL,
                   kl_strdup("metadata.managedFields must be nil"));
  const char *av = api_version;
  if (!av) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(applied, "apiVersion");
    av = cJSON_IsString(a) ? a->valuestring : "v1";
  }
  apply_ctx c;
  memset(&c, 0, sizeof c);
  c.live = live;
  c.applied = applied;
  c.force = force;
  c.self = -1;
  cJSON *lmf = live ? managed_fields(live) : NULL;
  c.mf = lmf ? dup(lmf) : cJSON_CreateArray();
  int i = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, c.mf) {
    if (!strcmp(entry_str(e, "manager"), manager) &&
        !strcmp(entry_str(e, "operation"), "Apply"))
      c.self = i;
    i++;
  }
  cJSON *newset = cJSON_CreateObject();
  fs_of_map(applied, newset, 0, NULL, false);

  /* conflicts (or, with force, take-overs) */
  if (live) fs_walk(newset, check_path, &c);
  if (c.nconf) {
    qsort(c.conf, c.nconf, sizeof *c.conf, cmp_conflict);
    kl_buf b = KL_BUF_INIT;
    kl_buf_addf(&b, "Apply failed with %zu conflict%s: ", c.nconf,
                c.nconf == 1 ? "" : "s");
    if (c.nconf == 1) {
      kl_buf_addf(&b, "conflict with %s: %s", c.conf[0].manager,
                  c.conf[0].field);
    } else {
      for (size_t k = 0; k < c.nconf; k++) {
        if (k == 0 || strcmp(c.conf[k].manager, c.conf[k - 1].manager))
          kl_buf_addf(&b, "%sconflicts with %s:", k ? "\n" : "",
                      c.conf[k].manager);
        kl_buf_addf(&b, "\n- %s", c.conf[k].field);
      }
    }
    char *msg = kl_buf_detach(&b, NULL);
    set_err(err, KL_EEXIST, 409, msg, NULL);
    free(msg);
    if (err) {
      err->conflicts = c.conf;
      err->nconflicts = c.nconf;
    } else {
      for (size_t k = 0; k < c.nconf; k++) {
        free(c.conf[k].manager);
        free(c.conf[k].field);
      }
      free(c.conf);
    }
    cJSON_Delete(newset);
    cJSON_Delete(c.mf);
    return KL_EEXIST;
  }

  /* the object: live minus dropped fields, then the applied values */
  cJSON *base = live ? dup(live) : cJSON_CreateObject();
  c.result = base;
  if (c.self >= 0) {
    prune_ctx p = {&c, newset};
    fs_walk(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(c.mf, c.self),
                                             "fieldsV1"),
            prune_path, &p);
  }
  cJSON *merged = NULL;
  int rc = apply_merge(c.result, applied, &merged, err);
  cJSON_Delete(c.result);
  if (rc) {
    cJSON_Delete(newset);
    cJSON_Delete(c.mf);
    return rc;
  }

  /* a no-op apply leaves the object (and its managedFields) as it was */
  if (live && c.self >= 0) {
    cJSON *oldset = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(c.mf, c.self), "fieldsV1");
    cJSON *mcopy = dup(merged);
    put_managed_fields(mcopy, dup(lmf));
    bool same = cJSON_Compare(mcopy, live, 1) &&
                cJSON_Compare(oldset, newset, 1);
    cJSON_Delete(mcopy);
    if (same) {
      cJSON_Delete(merged);
      cJSON_Delete(newset);
      cJSON_Delete(c.mf);
      *out = dup(live);
      return 0;
    }
  }
  char *t = now_rfc3339(now);
  if (c.self >= 0) {
    e = cJSON_GetArrayItem(c.mf, c.self);
    set_member(e, "fieldsV1", newset);
    set_member(e, "time", cJSON_CreateString(t));
    set_member(e, "apiVersion", cJSON_CreateString(av));
  } else {
    e = new_entry(manager, "Apply", av, t);
    cJSON_ReplaceItemInObjectCaseSensitive(e, "fieldsV1", newset);
    cJSON_AddItemToArray(c.mf, e);
  }
  free(t);
  put_managed_fields(merged, c.mf);
  *out = merged;
  return 0;
}

/* ---- Update operations ----------------------------------------------- */

typedef struct upd_ctx {
  const cJSON *old, *obj;
  cJSON *changed;
} upd_ctx;

static void collect_changed(char **path, int n, void *ud) {
  upd_ctx *u = ud;
  const cJSON *nv = fs_resolve(u->obj, path, n);
  const cJSON *ov = u->old ? fs_resolve(u->old, path, n) : NULL;
  if (!strcmp(path[n - 1], ".")) {
    if (!ov) fs_add(u->changed, path, n); /* the map/element is new */
    return;
  }
  if (!ov || !nv || !cJSON_Compare(ov, nv, 1)) fs_add(u->changed, path, n);
}

typedef struct gone_ctx {
  const cJSON *obj;
  cJSON *set;
  char *paths[256][64];
  int lens[256];
  int n;
} gone_ctx;

static void collect_gone(char **path, int n, void *ud) {
  gone_ctx *g = ud;
  if (fs_resolve(g->obj, path, n) || g->n >= 256) return;
  for (int i = 0; i < n; i++) g->paths[g->n][i] = kl_strdup(path[i]);
  g->lens[g->n++] = n;
}

typedef struct strip_ctx {
  cJSON *set;
} strip_ctx;
static void strip_path(char **path, int n, void *ud) {
  strip_ctx *s = ud;
  fs_del(s->set, path, n);
}

void kl_patch_record_update(const cJSON *old, cJSON *obj, const char *manager,
                            const char *now, const char *api_version) {
  if (!cJSON_IsObject(obj)) return;
  const char *av = api_version;
  if (!av) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, "apiVersion");
    av = cJSON_IsString(a) ? a->valuestring : "v1";
  }
  const char *mgr = manager && *manager ? manager : "unknown";
  cJSON *omf = old ? managed_fields(old) : NULL;
  cJSON *mf = omf ? dup(omf)
                  : (!old && managed_fields(obj) ? dup(managed_fields(obj))
                                                 : cJSON_CreateArray());
  if (old && !omf) {
    cJSON_Delete(mf);
    mf = cJSON_CreateArray();
  }
  cJSON *newset = cJSON_CreateObject();
  fs_of_map(obj, newset, 0, NULL, true);
  upd_ctx u = {old, obj, cJSON_CreateObject()};
  fs_walk(newset, collect_changed, &u);
  cJSON_Delete(newset);

  /* other managers lose changed fields; everyone loses vanished ones */
  cJSON *e;
  strip_ctx sc;
  cJSON_ArrayForEach(e, mf) {
    if (!strcmp(entry_str(e, "manager"), mgr) &&
        !strcmp(entry_str(e, "operation"), "Update"))
      continue;
    sc.set = entry_set(e);
    fs_walk(u.changed, strip_path, &sc);
  }
  gone_ctx *g = kl_calloc(1, sizeof *g);
  g->obj = obj;
  cJSON_ArrayForEach(e, mf) {
    g->n = 0;
    cJSON *s = entry_set(e);
    fs_walk(s, collect_gone, g);
    for (int i = 0; i < g->n; i++) {
      fs_del(s, g->paths[i], g->lens[i]);
      for (int j = 0; j < g->lens[i]; j++) free(g->paths[i][j]);
    }
  }
  free(g);
  if (cJSON_GetArraySize(u.changed) > 0) {
    cJSON *mine = NULL;
    cJSON_ArrayForEach(e, mf) {
      if (!strcmp(entry_str(e, "manager"), mgr) &&
          !strcmp(entry_str(e, "operation"), "Update") &&
          !strcmp(entry_str(e, "apiVersion"), av))
        mine = e;
    }
    char *t = now_rfc3339(now);
    if (!mine) {
      mine = new_entry(mgr, "Update", av, t);
      cJSON_AddItemToArray(mf, mine);
    } else {
      set_member(mine, "time", cJSON_CreateString(t));
    }
    free(t);
    cJSON *s = entry_set(mine);
    /* union: add every changed path */
    cJSON *merged = kl_patch_merge(s, u.changed);
    set_member(mine, "fieldsV1", merged);
  }
  cJSON_Delete(u.changed);
  put_managed_fields(obj, mf);
}

char *kl_patch_manager_from_user_agent(const char *ua) {
  if (!ua || !*ua) return kl_strdup("unknown");
  const char *slash = strchr(ua, '/');
  size_t n = slash ? (size_t)(slash - ua) : strlen(ua);
  if (n > 128) n = 128;
  return kl_strndup(ua, n);
}
