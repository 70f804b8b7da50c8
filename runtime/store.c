/* store.c: the indexed, thread-safe store; see store.h.
 *
 * Layout. items maps key -> entry {obj, the index sets holding the key}.
 * Each index maps value -> vset {value, keys: key -> obj}. Every key in
 * every map is borrowed from the kl_obj the store holds (kl_obj_key), so a
 * key costs no bytes beyond the object; when a new version replaces an
 * object, each map that keeps the key is re-put with the new version's
 * pointer (kl_hmap_put swaps borrowed keys) before the old one is released.
 * The entry remembers the sets it was put in, so an update or delete removes
 * exactly the old values even if an index function is not deterministic. A
 * set that empties is removed at once (no creep under churn).
 *
 * Locking. wmu serialises writers; rw guards what readers see. Writers
 * compute index values (and, for replace/add_indexer, whole new maps) while
 * holding only wmu, then take rw for writing to publish. Lock order: wmu,
 * then rw. entry->v is only touched by writers (under wmu).
 */
#include "store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "json.h"
#include "kl.h"

/* Bytes the allocator adds to each block; counted by kl_store_footprint. */
#define KL__MALLOC_OVERHEAD 16

typedef struct vset {
  kl_hmap keys; /* key (borrowed from obj) -> kl_obj * (borrowed) */
  uint32_t ix;  /* position of the index this set belongs to */
  char value[];
} vset;

typedef struct ixdef {
  char *name;
  kl_index_kind kind;
  char *arg;
  kl_index_fn fn;
  void *ud;
  void (*ud_free)(void *);
  kl_hmap values; /* value (borrowed from vset->value) -> vset * */
} ixdef;

typedef struct entry {
  kl_obj *obj;   /* the store's reference */
  uint32_t n;    /* sets in v (each at most once) */
  vset *v[];
} entry;

struct kl_store {
  atomic_uint refs;
  pthread_mutex_t wmu;
  pthread_rwlock_t rw;
  kl_hmap items; /* key -> entry * */
  ixdef **ix;    /* indexes in the order they were added */
  kl_hmap **vals; /* vals[i] == &ix[i]->values */
  size_t nix;
  char *rv; /* resourceVersion of the last replace, or NULL */
};

/* ---- vectors ---- */

void kl_strv_pushn(kl_strv *sv, const char *s, size_t n) {
  if (sv->n == sv->cap) {
    sv->cap = sv->cap ? sv->cap * 2 : 4;
    sv->v = kl_realloc(sv->v, sv->cap * sizeof *sv->v);
  }
  char *c = kl_malloc(n + 1);
  memcpy(c, s, n);
  c[n] = '\0';
  sv->v[sv->n++] = c;
}

void kl_strv_push(kl_strv *sv, const char *s) { kl_strv_pushn(sv, s, strlen(s)); }

static void strv_clear(kl_strv *sv) {
  for (size_t i = 0; i < sv->n; i++) free(sv->v[i]);
  sv->n = 0;
}

void kl_strv_free(kl_strv *sv) {
  strv_clear(sv);
  free(sv->v);
  sv->v = NULL;
  sv->cap = 0;
}

static void objv_reserve(kl_objv *ov, size_t extra) {
  if (ov->n + extra <= ov->cap) return;
  size_t cap = ov->cap ? ov->cap : 8;
  while (cap < ov->n + extra) cap *= 2;
  ov->v = kl_realloc(ov->v, cap * sizeof *ov->v);
  ov->cap = cap;
}

void kl_objv_push(kl_objv *ov, kl_obj *obj) {
  objv_reserve(ov, 1);
  ov->v[ov->n++] = obj;
}

void kl_objv_free(kl_objv *ov) {
  for (size_t i = 0; i < ov->n; i++) kl_obj_unref(ov->v[i]);
  free(ov->v);
  ov->v = NULL;
  ov->n = ov->cap = 0;
}

/* ---- built-in index functions ---- */

/* Appends the text of a scalar: a string unescaped, a number or boolean as
 * its JSON text. null, objects and arrays give no value. */
static void push_scalar(kl_strv *out, kl_span v) {
  switch (kl_json_type(v)) {
  case 's': {
    kl_buf b = KL_BUF_INIT;
    if (kl_json_unescape(v, &b) == 0) kl_strv_pushn(out, b.data ? b.data : "", b.len);
    kl_buf_free(&b);
    break;
  }
  case 'n':
  case 't':
  case 'f':
    kl_strv_pushn(out, v.p, v.n);
    break;
  default:
    break;
  }
}

static void owner_values(const kl_obj *obj, bool kindname, kl_strv *out) {
  kl_span refs, ref, k, name, uid;
  if (!kl_obj_get(obj, "metadata.ownerReferences", &refs) ||
      kl_json_type(refs) != 'a')
    return;
  kl_json_iter it;
  kl_json_iter_init(&it, refs);
  while (kl_json_next(&it, &k, &ref)) {
    if (kl_json_type(ref) != 'o') continue;
    if (!kindname) {
      if (kl_json_get(ref, "uid", &uid) && kl_json_type(uid) == 's')
        push_scalar(out, uid);
      continue;
    }
    kl_span kind;
    if (!kl_json_get(ref, "kind", &kind) || kl_json_type(kind) != 's' ||
        !kl_json_get(ref, "name", &name) || kl_json_type(name) != 's')
      continue;
    kl_buf b = KL_BUF_INIT;
    if (kl_json_unescape(kind, &b) == 0) {
      kl_buf_addc(&b, '/');
      if (kl_json_unescape(name, &b) == 0) kl_strv_pushn(out, b.data, b.len);
    }
    kl_buf_free(&b);
  }
}

static int ix_values(const ixdef *d, const kl_obj *obj, kl_strv *out) {
  if (d->fn) return d->fn(obj, out, d->ud);
  kl_span v;
  switch (d->kind) {
  case KL_INDEX_NAMESPACE:
    kl_strv_push(out, kl_obj_namespace(obj));
    break;
  case KL_INDEX_LABEL: {
    const char *keys[] = {"metadata", "labels", d->arg};
    if (kl_json_getv(kl_obj_span(obj), keys, 3, &v)) push_scalar(out, v);
    break;
  }
  case KL_INDEX_FIELD:
    if (kl_obj_get(obj, d->arg, &v)) push_scalar(out, v);
    break;
  case KL_INDEX_OWNER_UID:
    owner_values(obj, false, out);
    break;
  case KL_INDEX_OWNER_KINDNAME:
    owner_values(obj, true, out);
    break;
  }
  return 0;
}

/* Computes the values of obj for every index into vv[0..nix) (cleared
 * first). Returns 0 or the first index function's error. */
static int all_values(ixdef *const *ix, size_t nix, const kl_obj *obj,
                      kl_strv *vv) {
  for (size_t i = 0; i < nix; i++) {
    strv_clear(&vv[i]);
    int rc = ix_values(ix[i], obj, &vv[i]);
    if (rc != 0) {
      kl_log(KL_LOG_DEBUG, "store", "index %s failed on %s: %s", ix[i]->name,
             kl_obj_key(obj), kl_strerror(rc));
      return rc < 0 ? rc : KL_EINVAL;
    }
  }
  return 0;
}

/* ---- sets and entries (callers hold whatever lock guards the maps) ---- */

static vset *vset_get(kl_hmap *values, uint32_t ix, const char *value) {
  vset *vs = kl_hmap_get(values, value);
  if (!vs) {
    size_t n = strlen(value);
    vs = kl_malloc(sizeof *vs + n + 1);
    kl_hmap_init(&vs->keys, KL_HMAP_BORROW_KEYS);
    vs->ix = ix;
    memcpy(vs->value, value, n + 1);
    kl_hmap_put(values, vs->value, vs);
  }
  return vs;
}

static void vset_free(vset *vs) {
  kl_hmap_free(&vs->keys);
  free(vs);
}

static bool entry_has(const entry *e, const vset *vs) {
  for (uint32_t i = 0; i < e->n; i++)
    if (e->v[i] == vs) return true;
  return false;
}

/* Adds vs to e (once) and puts e's key in it, pointing at e's object. */
static void entry_add_set(entry *e, vset *vs) {
  if (entry_has(e, vs)) return;
  e->v[e->n++] = vs;
}

/* A new entry for obj (the caller's reference moves in) in the sets named by
 * vv; the sets are created in vals as needed and obj's key is put in each. */
static entry *entry_build(kl_hmap *const *vals, const kl_strv *vv, size_t nix,
                          kl_obj *obj) {
  size_t total = 0;
  for (size_t i = 0; i < nix; i++) total += vv[i].n;
  entry *e = kl_malloc(sizeof *e + total * sizeof e->v[0]);
  e->obj = obj;
  e->n = 0;
  for (size_t i = 0; i < nix; i++)
    for (size_t j = 0; j < vv[i].n; j++)
      entry_add_set(e, vset_get(vals[i], (uint32_t)i, vv[i].v[j]));
  if (e->n < total) e = kl_realloc(e, sizeof *e + e->n * sizeof e->v[0]);
  const char *key = kl_obj_key(obj);
  for (uint32_t i = 0; i < e->n; i++) kl_hmap_put(&e->v[i]->keys, key, obj);
  return e;
}

/* Removes old's key from each of its sets that keep is not in (keep may be
 * NULL); sets that empty are dropped from their index. */
static void entry_unlink(kl_hmap *const *vals, entry *old, const entry *keep) {
  const char *key = kl_obj_key(old->obj);
  for (uint32_t i = 0; i < old->n; i++) {
    vset *vs = old->v[i];
    if (keep && entry_has(keep, vs)) continue;
    kl_hmap_del(&vs->keys, key, NULL);
    if (kl_hmap_len(&vs->keys) == 0) {
      kl_hmap_del(vals[vs->ix], vs->value, NULL);
      vset_free(vs);
    }
  }
}

static void entry_free(entry *e) {
  kl_obj_unref(e->obj);
  free(e);
}

static void values_free(kl_hmap *values) {
  const char *k;
  void *v;
  for (size_t i = 0; kl_hmap_next(values, &i, &k, &v);) vset_free(v);
  kl_hmap_free(values);
}

static void items_free(kl_hmap *items) {
  const char *k;
  void *v;
  for (size_t i = 0; kl_hmap_next(items, &i, &k, &v);) entry_free(v);
  kl_hmap_free(items);
}

/* ---- lifecycle ---- */

kl_store *kl_store_new(void) {
  kl_store *s = kl_calloc(1, sizeof *s);
  atomic_init(&s->refs, 1);
  pthread_mutex_init(&s->wmu, NULL);
  pthread_rwlockattr_t a;
  pthread_rwlockattr_init(&a);
  /* a steady stream of readers must not starve the informer */
  pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&s->rw, &a);
  pthread_rwlockattr_destroy(&a);
  kl_hmap_init(&s->items, KL_HMAP_BORROW_KEYS);
  return s;
}

kl_store *kl_store_ref(kl_store *s) {
  if (s) atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  return s;
}

void kl_store_unref(kl_store *s) {
  if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (size_t i = 0; i < s->nix; i++) {
    ixdef *d = s->ix[i];
    values_free(&d->values);
    if (d->ud_free) d->ud_free(d->ud);
    free(d->name);
    free(d->arg);
    free(d);
  }
  free(s->ix);
  free(s->vals);
  items_free(&s->items);
  free(s->rv);
  pthread_rwlock_destroy(&s->rw);
  pthread_mutex_destroy(&s->wmu);
  free(s);
}

static void wlock(kl_store *s) { pthread_mutex_lock(&s->wmu); }
static void wunlock(kl_store *s) { pthread_mutex_unlock(&s->wmu); }

static ixdef *find_ix(kl_store *s, const char *name) {
  for (size_t i = 0; i < s->nix; i++)
    if (strcmp(s->ix[i]->name, name) == 0) return s->ix[i];
  return NULL;
}

/* ---- indexers ---- */

/* Indexes every current object with d and publishes d. Called with wmu. */
static int add_ixdef(kl_store *s, ixdef *d) {
  if (find_ix(s, d->name)) return KL_EEXIST;
  kl_hmap_init(&d->values, KL_HMAP_BORROW_KEYS);
  uint32_t pos = (uint32_t)s->nix;
  size_t n = kl_hmap_len(&s->items), k = 0;
  entry **olds = kl_malloc((n ? n : 1) * sizeof *olds);
  entry **news = kl_malloc((n ? n : 1) * sizeof *news);
  kl_strv sv = {0};
  kl_hmap *dv = &d->values;
  const char *key;
  void *val;
  int rc = 0;
  /* Only writers change items, and we are the writer: read it unlocked. */
  for (size_t i = 0; kl_hmap_next(&s->items, &i, &key, &val);) {
    entry *e = val;
    strv_clear(&sv);
    rc = ix_values(d, e->obj, &sv);
    if (rc != 0) {
      kl_log(KL_LOG_DEBUG, "store", "index %s failed on %s: %s", d->name,
             key, kl_strerror(rc));
      if (rc > 0) rc = KL_EINVAL;
      break;
    }
    entry *ne = kl_malloc(sizeof *ne + (e->n + sv.n) * sizeof ne->v[0]);
    ne->obj = e->obj;
    ne->n = e->n;
    memcpy(ne->v, e->v, e->n * sizeof e->v[0]);
    for (size_t j = 0; j < sv.n; j++) {
      vset *vs = vset_get(dv, pos, sv.v[j]);
      entry_add_set(ne, vs);
      kl_hmap_put(&vs->keys, key, e->obj);
    }
    olds[k] = e;
    news[k++] = ne;
  }
  kl_strv_free(&sv);
  if (rc != 0) {
    for (size_t i = 0; i < k; i++) free(news[i]);
    values_free(dv);
    free(olds);
    free(news);
    return rc;
  }
  pthread_rwlock_wrlock(&s->rw);
  s->ix = kl_realloc(s->ix, (s->nix + 1) * sizeof *s->ix);
  s->vals = kl_realloc(s->vals, (s->nix + 1) * sizeof *s->vals);
  s->ix[s->nix] = d;
  s->vals[s->nix] = &d->values;
  s->nix++;
  for (size_t i = 0; i < k; i++)
    kl_hmap_put(&s->items, kl_obj_key(news[i]->obj), news[i]);
  pthread_rwlock_unlock(&s->rw);
  for (size_t i = 0; i < k; i++) free(olds[i]); /* objects moved to news */
  free(olds);
  free(news);
  return 0;
}

static void ixdef_free(ixdef *d) {
  free(d->name);
  free(d->arg);
  free(d);
}

int kl_store_add_indexer(kl_store *s, const char *name, kl_index_kind kind,
                         const char *arg) {
  if (!name || !*name) return KL_EINVAL;
  switch (kind) {
  case KL_INDEX_LABEL:
  case KL_INDEX_FIELD:
    if (!arg || !*arg) return KL_EINVAL;
    break;
  case KL_INDEX_NAMESPACE:
  case KL_INDEX_OWNER_UID:
  case KL_INDEX_OWNER_KINDNAME:
    arg = NULL;
    break;
  default:
    return KL_EINVAL;
  }
  ixdef *d = kl_calloc(1, sizeof *d);
  d->name = kl_strdup(name);
  d->kind = kind;
  d->arg = arg ? kl_strdup(arg) : NULL;
  wlock(s);
  int rc = add_ixdef(s, d);
  wunlock(s);
  if (rc != 0) ixdef_free(d);
  return rc;
}

int kl_store_add_index_fn(kl_store *s, const char *name, kl_index_fn fn,
                          void *ud, void (*ud_free)(void *)) {
  if (!name || !*name || !fn) return KL_EINVAL;
  ixdef *d = kl_calloc(1, sizeof *d);
  d->name = kl_strdup(name);
  d->fn = fn;
  d->ud = ud;
  d->ud_free = ud_free;
  wlock(s);
  int rc = add_ixdef(s, d);
  wunlock(s);
  if (rc != 0) ixdef_free(d); /* ud stays the caller's on failure */
  return rc;
}

/* ---- writes ---- */

static int upsert(kl_store *s, kl_obj *obj) {
  if (!obj) return KL_EINVAL;
  wlock(s);
  size_t nix = s->nix;
  kl_strv *vv = kl_calloc(nix ? nix : 1, sizeof *vv);
  int rc = all_values(s->ix, nix, obj, vv);
  if (rc == 0) {
    pthread_rwlock_wrlock(&s->rw);
    entry *ne = entry_build(s->vals, vv, nix, kl_obj_ref(obj));
    entry *old = kl_hmap_put(&s->items, kl_obj_key(obj), ne);
    if (old) entry_unlink(s->vals, old, ne);
    pthread_rwlock_unlock(&s->rw);
    if (old) entry_free(old);
  }
  wunlock(s);
  for (size_t i = 0; i < nix; i++) kl_strv_free(&vv[i]);
  free(vv);
  return rc;
}

int kl_store_add(kl_store *s, kl_obj *obj) { return upsert(s, obj); }
int kl_store_update(kl_store *s, kl_obj *obj) { return upsert(s, obj); }

/* One write-lock hold for the whole batch: index values are computed first
 * (under wmu only), then every op is published under rw at once. */
int kl_store_apply(kl_store *s, kl_store_op *ops, size_t n) {
  for (size_t i = 0; i < n; i++) {
    ops[i].old = NULL;
    ops[i].rc = 0;
    if (!ops[i].obj && !ops[i].key) return KL_EINVAL;
  }
  if (n == 0) return 0;
  wlock(s);
  size_t nix = s->nix, w = nix ? nix : 1;
  kl_strv *vv = kl_calloc(n * w, sizeof *vv);
  for (size_t i = 0; i < n; i++)
    if (ops[i].obj) ops[i].rc = all_values(s->ix, nix, ops[i].obj, &vv[i * w]);
  entry **dead = kl_malloc(n * sizeof *dead);
  size_t nd = 0;
  pthread_rwlock_wrlock(&s->rw);
  for (size_t i = 0; i < n; i++) {
    kl_store_op *op = &ops[i];
    entry *old;
    if (op->obj) {
      if (op->rc) continue;
      entry *ne = entry_build(s->vals, &vv[i * w], nix, kl_obj_ref(op->obj));
      old = kl_hmap_put(&s->items, kl_obj_key(op->obj), ne);
      if (old) entry_unlink(s->vals, old, ne);
    } else {
      old = kl_hmap_del(&s->items, op->key, NULL);
      if (old) entry_unlink(s->vals, old, NULL);
    }
    if (old) {
      op->old = kl_obj_ref(old->obj);
      dead[nd++] = old;
    }
  }
  pthread_rwlock_unlock(&s->rw);
  wunlock(s);
  for (size_t i = 0; i < nd; i++) entry_free(dead[i]);
  free(dead);
  for (size_t i = 0; i < n * w; i++) kl_strv_free(&vv[i]);
  free(vv);
  return 0;
}

int kl_store_delete_key(kl_store *s, const char *key) {
  if (!key) return KL_EINVAL;
  wlock(s);
  pthread_rwlock_wrlock(&s->rw);
  entry *e = kl_hmap_del(&s->items, key, NULL);
  if (e) entry_unlink(s->vals, e, NULL);
  pthread_rwlock_unlock(&s->rw);
  wunlock(s);
  if (e) entry_free(e);
  return 0;
}

int kl_store_delete(kl_store *s, const kl_obj *obj) {
  if (!obj) return KL_EINVAL;
  return kl_store_delete_key(s, kl_obj_key(obj));
}

int kl_store_replace(kl_store *s, kl_obj *const *objs, size_t n,
                     const char *resource_version) {
  for (size_t i = 0; i < n; i++)
    if (!objs[i]) return KL_EINVAL;
  wlock(s);
  size_t nix = s->nix;
  /* Build the new content privately; readers keep using the old. */
  kl_hmap items;
  kl_hmap_init(&items, KL_HMAP_BORROW_KEYS);
  kl_hmap *nv = kl_calloc(nix ? nix : 1, sizeof *nv);
  kl_hmap **nvp = kl_calloc(nix ? nix : 1, sizeof *nvp);
  kl_strv *vv = kl_calloc(nix ? nix : 1, sizeof *vv);
  for (size_t i = 0; i < nix; i++) {
    kl_hmap_init(&nv[i], KL_HMAP_BORROW_KEYS);
    nvp[i] = &nv[i];
  }
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    rc = all_values(s->ix, nix, objs[i], vv);
    if (rc != 0) break;
    entry *e = entry_build(nvp, vv, nix, kl_obj_ref(objs[i]));
    entry *old = kl_hmap_put(&items, kl_obj_key(objs[i]), e);
    if (old) { /* a duplicate key in objs: the later one wins */
      entry_unlink(nvp, old, e);
      entry_free(old);
    }
  }
  char *rv = resource_version ? kl_strdup(resource_version) : NULL;
  if (rc == 0) {
    pthread_rwlock_wrlock(&s->rw);
    kl_hmap tmp = s->items;
    s->items = items;
    items = tmp;
    for (size_t i = 0; i < nix; i++) {
      tmp = s->ix[i]->values;
      s->ix[i]->values = nv[i];
      nv[i] = tmp;
    }
    char *t = s->rv;
    s->rv = rv;
    rv = t;
    pthread_rwlock_unlock(&s->rw);
  }
  wunlock(s);
  /* Free what is no longer published: the old content, or the new on error. */
  for (size_t i = 0; i < nix; i++) {
    values_free(&nv[i]);
    kl_strv_free(&vv[i]);
  }
  items_free(&items);
  free(rv);
  free(nv);
  free(nvp);
  free(vv);
  return rc;
}

int kl_store_resync(kl_store *s) {
  (void)s;
  return 0;
}

/* ---- reads ---- */

kl_obj *kl_store_get_by_key(kl_store *s, const char *key) {
  if (!key) return NULL;
  pthread_rwlock_rdlock(&s->rw);
  entry *e = kl_hmap_get(&s->items, key);
  kl_obj *obj = e ? kl_obj_ref(e->obj) : NULL;
  pthread_rwlock_unlock(&s->rw);
  return obj;
}

kl_obj *kl_store_get(kl_store *s, const kl_obj *obj) {
  return obj ? kl_store_get_by_key(s, kl_obj_key(obj)) : NULL;
}

void kl_store_list(kl_store *s, kl_objv *out) {
  pthread_rwlock_rdlock(&s->rw);
  objv_reserve(out, kl_hmap_len(&s->items));
  const char *k;
  void *v;
  for (size_t i = 0; kl_hmap_next(&s->items, &i, &k, &v);)
    out->v[out->n++] = kl_obj_ref(((entry *)v)->obj);
  pthread_rwlock_unlock(&s->rw);
}

void kl_store_list_keys(kl_store *s, kl_strv *out) {
  pthread_rwlock_rdlock(&s->rw);
  const char *k;
  for (size_t i = 0; kl_hmap_next(&s->items, &i, &k, NULL);) kl_strv_push(out, k);
  pthread_rwlock_unlock(&s->rw);
}

size_t kl_store_len(kl_store *s) {
  pthread_rwlock_rdlock(&s->rw);
  size_t n = kl_hmap_len(&s->items);
  pthread_rwlock_unlock(&s->rw);
  return n;
}

char *kl_store_last_replace_rv(kl_store *s) {
  pthread_rwlock_rdlock(&s->rw);
  char *rv = s->rv ? kl_strdup(s->rv) : NULL;
  pthread_rwlock_unlock(&s->rw);
  return rv;
}

/* Finds an index by name. An ixdef never moves or goes away while the store
 * lives, so the pointer may be used after the lock is released. */
static ixdef *lookup_ix(kl_store *s, const char *name) {
  if (!name) return NULL;
  pthread_rwlock_rdlock(&s->rw);
  ixdef *d = find_ix(s, name);
  pthread_rwlock_unlock(&s->rw);
  return d;
}

static void push_set_objs(const vset *vs, kl_objv *out, kl_hmap *seen) {
  if (!vs) return;
  objv_reserve(out, kl_hmap_len(&vs->keys));
  const char *k;
  void *v;
  for (size_t i = 0; kl_hmap_next(&vs->keys, &i, &k, &v);) {
    if (seen) {
      if (kl_hmap_has(seen, k)) continue;
      kl_hmap_put(seen, k, NULL);
    }
    out->v[out->n++] = kl_obj_ref(v);
  }
}

int kl_store_index(kl_store *s, const char *index, const kl_obj *obj,
                   kl_objv *out) {
  ixdef *d = lookup_ix(s, index);
  if (!d) return KL_ENOENT;
  if (!obj) return KL_EINVAL;
  kl_strv sv = {0};
  int rc = ix_values(d, obj, &sv);
  if (rc != 0) {
    kl_strv_free(&sv);
    return rc < 0 ? rc : KL_EINVAL;
  }
  kl_hmap seen;
  kl_hmap_init(&seen, KL_HMAP_BORROW_KEYS);
  pthread_rwlock_rdlock(&s->rw);
  for (size_t i = 0; i < sv.n; i++)
    push_set_objs(kl_hmap_get(&d->values, sv.v[i]), out,
                  sv.n > 1 ? &seen : NULL);
  pthread_rwlock_unlock(&s->rw);
  kl_hmap_free(&seen);
  kl_strv_free(&sv);
  return 0;
}

int kl_store_index_keys(kl_store *s, const char *index, const char *value,
                        kl_strv *out) {
  ixdef *d = lookup_ix(s, index);
  if (!d) return KL_ENOENT;
  if (!value) return KL_EINVAL;
  pthread_rwlock_rdlock(&s->rw);
  vset *vs = kl_hmap_get(&d->values, value);
  const char *k;
  if (vs)
    for (size_t i = 0; kl_hmap_next(&vs->keys, &i, &k, NULL);) kl_strv_push(out, k);
  pthread_rwlock_unlock(&s->rw);
  return 0;
}

int kl_store_by_index(kl_store *s, const char *index, const char *value,
                      kl_objv *out) {
  ixdef *d = lookup_ix(s, index);
  if (!d) return KL_ENOENT;
  if (!value) return KL_EINVAL;
  pthread_rwlock_rdlock(&s->rw);
  push_set_objs(kl_hmap_get(&d->values, value), out, NULL);
  pthread_rwlock_unlock(&s->rw);
  return 0;
}

int kl_store_list_index_values(kl_store *s, const char *index, kl_strv *out) {
  ixdef *d = lookup_ix(s, index);
  if (!d) return KL_ENOENT;
  pthread_rwlock_rdlock(&s->rw);
  const char *k;
  for (size_t i = 0; kl_hmap_next(&d->values, &i, &k, NULL);) kl_strv_push(out, k);
  pthread_rwlock_unlock(&s->rw);
  return 0;
}

void kl_store_get_indexers(kl_store *s, kl_strv *names) {
  pthread_rwlock_rdlock(&s->rw);
  for (size_t i = 0; i < s->nix; i++) kl_strv_push(names, s->ix[i]->name);
  pthread_rwlock_unlock(&s->rw);
}

/* ---- accounting and checks ---- */

size_t kl_store_footprint(kl_store *s) {
  const size_t oh = KL__MALLOC_OVERHEAD;
  pthread_rwlock_rdlock(&s->rw);
  size_t n = sizeof *s + oh;
  n += kl_hmap_footprint(&s->items) + oh;
  const char *k;
  void *v;
  for (size_t i = 0; kl_hmap_next(&s->items, &i, &k, &v);) {
    entry *e = v;
    n += sizeof *e + e->n * sizeof e->v[0] + oh;
    n += kl_obj_footprint(e->obj) + oh;
  }
  if (s->nix) n += s->nix * (sizeof *s->ix + sizeof *s->vals) + 2 * oh;
  for (size_t x = 0; x < s->nix; x++) {
    ixdef *d = s->ix[x];
    n += sizeof *d + oh + strlen(d->name) + 1 + oh;
    if (d->arg) n += strlen(d->arg) + 1 + oh;
    n += kl_hmap_footprint(&d->values) + oh;
    for (size_t i = 0; kl_hmap_next(&d->values, &i, &k, &v);) {
      vset *vs = v;
      n += sizeof *vs + strlen(vs->value) + 1 + oh;
      n += kl_hmap_footprint(&vs->keys) + (vs->keys.cap ? oh : 0);
    }
  }
  if (s->rv) n += strlen(s->rv) + 1 + oh;
  pthread_rwlock_unlock(&s->rw);
  return n;
}

static int mismatch(const char *index, const char *what, const char *a,
                    const char *b) {
  kl_log(KL_LOG_ERROR, "store", "index %s: %s %s%s%s", index, what, a,
         b ? " " : "", b ? b : "");
  return KL_EINVAL;
}

/* Compares index x against a fresh computation. Called with wmu and rw. */
static int check_index(kl_store *s, size_t x) {
  ixdef *d = s->ix[x];
  kl_hmap want; /* value (owned) -> kl_hmap * of keys (borrowed) */
  kl_hmap_init(&want, KL_HMAP_OWN_KEYS);
  kl_strv sv = {0};
  const char *key, *k2;
  void *val, *v2;
  int rc = 0;
  for (size_t i = 0; rc == 0 && kl_hmap_next(&s->items, &i, &key, &val);) {
    entry *e = val;
    if (key != kl_obj_key(e->obj))
      rc = mismatch(d->name, "items key not borrowed from its object", key, NULL);
    strv_clear(&sv);
    if (rc == 0 && ix_values(d, e->obj, &sv) != 0)
      rc = mismatch(d->name, "index function failed on", key, NULL);
    for (size_t j = 0; rc == 0 && j < sv.n; j++) {
      kl_hmap *ks = kl_hmap_get(&want, sv.v[j]);
      if (!ks) {
        ks = kl_malloc(sizeof *ks);
        kl_hmap_init(ks, KL_HMAP_BORROW_KEYS);
        kl_hmap_put(&want, sv.v[j], ks);
      }
      kl_hmap_put(ks, key, e);
      vset *vs = kl_hmap_get(&d->values, sv.v[j]);
      if (!vs || !entry_has(e, vs))
        rc = mismatch(d->name, "entry does not record value", sv.v[j], key);
    }
    /* the entry records no set of this index beyond the computed ones */
    for (uint32_t j = 0; rc == 0 && j < e->n; j++) {
      vset *vs = e->v[j];
      if (vs->ix != x) continue;
      bool ok = false;
      for (size_t m = 0; m < sv.n; m++) ok = ok || strcmp(sv.v[m], vs->value) == 0;
      if (!ok) rc = mismatch(d->name, "entry records stale value", vs->value, key);
    }
  }
  if (rc == 0 && kl_hmap_len(&want) != kl_hmap_len(&d->values))
    rc = mismatch(d->name, "number of values differs", "", NULL);
  for (size_t i = 0; rc == 0 && kl_hmap_next(&d->values, &i, &key, &val);) {
    vset *vs = val;
    kl_hmap *ks = kl_hmap_get(&want, key);
    if (key != vs->value || vs->ix != x)
      rc = mismatch(d->name, "set header corrupt for value", key, NULL);
    else if (!ks)
      rc = mismatch(d->name, "unexpected value", key, NULL);
    else if (kl_hmap_len(&vs->keys) != kl_hmap_len(ks))
      rc = mismatch(d->name, "set size differs for value", key, NULL);
    for (size_t j = 0; rc == 0 && kl_hmap_next(&vs->keys, &j, &k2, &v2);) {
      entry *e = kl_hmap_get(&s->items, k2);
      if (!kl_hmap_has(ks, k2) || !e)
        rc = mismatch(d->name, "unexpected key", k2, key);
      else if (v2 != e->obj || k2 != kl_obj_key(e->obj))
        rc = mismatch(d->name, "set holds a stale version of", k2, key);
    }
  }
  for (size_t i = 0; kl_hmap_next(&want, &i, &key, &val);) {
    kl_hmap_free(val);
    free(val);
  }
  kl_hmap_free(&want);
  kl_strv_free(&sv);
  return rc;
}

int kl_store_check_indices(kl_store *s) {
  wlock(s);
  pthread_rwlock_rdlock(&s->rw);
  int rc = 0;
  for (size_t x = 0; rc == 0 && x < s->nix; x++) rc = check_index(s, x);
  pthread_rwlock_unlock(&s->rw);
  wunlock(s);
  return rc;
}
