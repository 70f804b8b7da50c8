/* undelta_store.h: client-go's UndeltaStore: a kl_store wrapper that, after
 * every change (add, update, delete, replace), pushes the complete state to
 * a callback. For consumers that want "the whole set now", not deltas.
 * Thread-safety: any thread may call; writes and their pushes are
 * serialised by one mutex, so pushes arrive in write order. The push runs on
 * the writer's thread with that mutex held: it must not write to the same
 * undelta store (such writes return KL_EINVAL). */
#ifndef KL_UNDELTA_STORE_H
#define KL_UNDELTA_STORE_H

#include "object.h"
#include "store.h"

typedef struct kl_undelta_store kl_undelta_store;

/* Receives the full state after a change: state->v[0..n) in the store's
 * list order (unordered). The vector and its references are borrowed for
 * the call (kl_obj_ref an object to keep it). The same state may be pushed
 * more than once in a row (e.g. deleting an absent key, or updating an
 * object to an identical version). */
typedef void (*kl_undelta_push_fn)(const kl_objv *state, void *ud);

/* Wraps store (takes its own reference), or a new empty store when store
 * is NULL. push is required. */
kl_undelta_store *kl_undelta_store_new(kl_store *store,
                                       kl_undelta_push_fn push, void *ud);
void kl_undelta_store_free(kl_undelta_store *u);
/* The wrapped store, borrowed for u's lifetime: read from it freely; writes
 * made directly to it are not pushed. */
kl_store *kl_undelta_store_store(kl_undelta_store *u);

/* Each applies the write to the store and, if it succeeded, pushes the
 * state. Return 0, the store's error (no push), or KL_EINVAL (from inside
 * the push callback). */
int kl_undelta_store_add(kl_undelta_store *u, kl_obj *obj);
int kl_undelta_store_update(kl_undelta_store *u, kl_obj *obj);
int kl_undelta_store_delete(kl_undelta_store *u, const kl_obj *obj);
int kl_undelta_store_replace(kl_undelta_store *u, kl_obj *const *objs,
                             size_t n, const char *resource_version);

#endif
