/* store.h: the indexed, thread-safe object cache (client-go's
 * ThreadSafeStore + Indexer + Store). Keys are MetaNamespaceKeyFunc keys
 * ("ns/name" or "name"), values are kl_obj versions (immutable, refcounted).
 *
 * Users: the informer (the one writer), Lua workers and hooks (readers), the
 * DeltaFIFO (known-objects lookups), the local API server.
 * Thread-safety: every function may be called from any thread. Readers never
 * block each other (rwlock); writes are serialised; replace is atomic:
 * readers see the old set or the new one, never a mix. Every object handed
 * out is a NEW reference that stays valid after the store drops the key. */
#ifndef KL_STORE_H
#define KL_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "object.h"

typedef struct kl_store kl_store;

/* A vector of NEW strings (kl_strv_free frees them and the array). */
typedef struct kl_strv {
  char **v;
  size_t n, cap;
} kl_strv;
void kl_strv_push(kl_strv *sv, const char *s);
void kl_strv_pushn(kl_strv *sv, const char *s, size_t n);
void kl_strv_free(kl_strv *sv);

/* A vector of NEW object references (kl_objv_free unrefs them). */
typedef struct kl_objv {
  kl_obj **v;
  size_t n, cap;
} kl_objv;
void kl_objv_push(kl_objv *ov, kl_obj *obj); /* takes over the reference */
void kl_objv_free(kl_objv *ov);

/* An index function appends zero or more index values for obj to out.
 * Writers call it with writes serialised (under the store's writer mutex,
 * outside the readers' lock); kl_store_index also calls it, from the calling
 * thread. So it must be fast, must not call back into the store, and must be
 * safe on every thread that writes or calls kl_store_index. A non-zero
 * return is an error that rejects the write (the store is left as it was).
 * Values it returns more than once for one object count once. */
typedef int (*kl_index_fn)(const kl_obj *obj, kl_strv *out, void *ud);

/* Built-in index kinds; arg is the label key or field path where needed.
 * Cluster-scoped objects have namespace "". An absent label, or a field that
 * is absent, null, an object or an array, gives no value; a string field
 * gives its text, a number or boolean its JSON text (e.g. "3", "true"). */
typedef enum kl_index_kind {
  KL_INDEX_NAMESPACE,      /* metadata.namespace (MetaNamespaceIndexFunc) */
  KL_INDEX_LABEL,          /* value of label arg ("" values included) */
  KL_INDEX_FIELD,          /* scalar at dotted path arg, e.g. spec.nodeName */
  KL_INDEX_OWNER_UID,      /* metadata.ownerReferences[].uid */
  KL_INDEX_OWNER_KINDNAME, /* "Kind/name" of each owner reference */
} kl_index_kind;

/* Creates an empty store with refcount 1. */
kl_store *kl_store_new(void);
kl_store *kl_store_ref(kl_store *s);
void kl_store_unref(kl_store *s);

/* Adds a named indexer: a built-in kind, or a custom fn (ud_free, if set,
 * is called on ud when the store is freed, from the thread that drops the
 * last reference; on failure ud stays the caller's).
 * Works on a filled store: existing objects are indexed at once. Returns 0,
 * KL_EEXIST for a duplicate name, KL_EINVAL for a bad name/kind/arg, or the
 * index function's error (the indexer is then not added). */
int kl_store_add_indexer(kl_store *s, const char *name, kl_index_kind kind,
                         const char *arg);
int kl_store_add_index_fn(kl_store *s, const char *name, kl_index_fn fn,
                          void *ud, void (*ud_free)(void *));

/* Writes. The store takes its own reference to obj; the caller keeps its.
 * add and update are both upserts (as in client-go). delete of an unknown
 * key is a no-op returning 0. */
int kl_store_add(kl_store *s, kl_obj *obj);
int kl_store_update(kl_store *s, kl_obj *obj);
int kl_store_delete(kl_store *s, const kl_obj *obj);
int kl_store_delete_key(kl_store *s, const char *key);
/* One write of a batch (kl_store_apply): an upsert of obj (borrowed; the
 * store takes its own reference), or, with obj NULL, a delete of key
 * (borrowed). apply fills old (a NEW reference to the object the key held
 * before this op, or NULL: release it) and rc (0, or the index function's
 * error: that op changed nothing). */
typedef struct kl_store_op {
  kl_obj *obj;
  const char *key;
  kl_obj *old;
  int rc;
} kl_store_op;
/* Applies ops[0..n) in order under ONE hold of the write lock: readers see
 * the store before the batch or after it, never in between; a key may
 * appear more than once. Returns 0 (per-op results in rc/old), or KL_EINVAL
 * when an op has neither obj nor key (then nothing is applied). */
int kl_store_apply(kl_store *s, kl_store_op *ops, size_t n);
/* Replaces the whole content atomically with objs[0..n) (indices rebuilt)
 * and records resource_version (may be NULL). */
int kl_store_replace(kl_store *s, kl_obj *const *objs, size_t n,
                     const char *resource_version);
/* A no-op for this store (client-go's ThreadSafeStore does nothing). */
int kl_store_resync(kl_store *s);

/* Reads. get/get_by_key return a NEW reference or NULL. */
kl_obj *kl_store_get(kl_store *s, const kl_obj *obj);
kl_obj *kl_store_get_by_key(kl_store *s, const char *key);
void kl_store_list(kl_store *s, kl_objv *out);
void kl_store_list_keys(kl_store *s, kl_strv *out);
size_t kl_store_len(kl_store *s);
/* The resourceVersion given to the last replace (NEW string, or NULL). */
char *kl_store_last_replace_rv(kl_store *s);

/* Index reads. Return 0, or KL_ENOENT when the index name is unknown.
 * Results are appended to out (NEW references / NEW strings), in no
 * particular order. kl_store_index returns the objects that share any of
 * obj's values (each once); obj need not be in the store. */
int kl_store_index(kl_store *s, const char *index, const kl_obj *obj,
                   kl_objv *out);
int kl_store_index_keys(kl_store *s, const char *index, const char *value,
                        kl_strv *out);
int kl_store_by_index(kl_store *s, const char *index, const char *value,
                      kl_objv *out);
int kl_store_list_index_values(kl_store *s, const char *index, kl_strv *out);
void kl_store_get_indexers(kl_store *s, kl_strv *names);

/* Memory: heap bytes held by the store (objects, maps, index sets, plus an
 * estimated 16 bytes of allocator overhead per block). Objects are counted
 * in full even when others also hold references to them. */
size_t kl_store_footprint(kl_store *s);

/* Test support: recomputes every index from the items and compares; returns
 * 0 when they agree exactly, else KL_EINVAL (and logs the first mismatch).
 * Custom index functions run on the calling thread (a Lua one only works
 * when called through its own Lua state, so check stores that have none). */
int kl_store_check_indices(kl_store *s);

/* The Lua binding (lua_store.c): adds store_new to the klua_core table at
 * stack index core (see docs/store.md). */
struct lua_State;
void kl_lua_open_store(struct lua_State *L, int core);

#endif
