/* delta_fifo.h: client-go's DeltaFIFO: a queue of keys, each holding the
 * changes (deltas) seen for that key since it was last popped, oldest first.
 * Producer: the reflector (add/update/delete/replace/resync); consumer: the
 * informer (pop, with a process function that applies the deltas to the
 * store). Also defines kl_delta/kl_deltas, shared with real_fifo.h.
 * Thread-safety: every function may be called from any thread (one mutex +
 * condvar); pop's process function runs with the queue's lock held,
 * pop_batch's without it (see docs/fifo.md, "Batches"). */
#ifndef KL_DELTA_FIFO_H
#define KL_DELTA_FIFO_H

#include <stdbool.h>
#include <stddef.h>

#include "object.h"
#include "store.h"

typedef enum kl_delta_type {
  KL_DELTA_ADDED = 1,
  KL_DELTA_UPDATED,
  KL_DELTA_DELETED,
  KL_DELTA_REPLACED, /* from a relist (Replace) */
  KL_DELTA_SYNC,     /* from a resync, or Replace when emit_replaced=false */
} kl_delta_type;

/* One change. Exposed because the informer reads it directly.
 * obj is a NEW reference owned by the delta: the object's state after the
 * change (for Deleted: the last state before deletion). A tombstone is
 * client-go's DeletedFinalStateUnknown: a Deleted delta synthesised by
 * Replace for a key the new list lacks; its key is key (owned) and obj is the
 * last known state, which may be NULL when unknown. For non-tombstones key is
 * NULL (the key is kl_obj_key(obj)); use kl_delta_key() for either. */
typedef struct kl_delta {
  kl_delta_type type;
  bool tombstone;
  kl_obj *obj;
  char *key;
} kl_delta;

/* A list of deltas, oldest first. Owns its deltas. RealFIFO sets
 * replace_batch (and resource_version, owned, may be NULL) on the single
 * entry a Replace produces; DeltaFIFO never sets them. */
typedef struct kl_deltas {
  kl_delta *v;
  size_t n, cap;
  bool replace_batch;
  char *resource_version;
} kl_deltas;

#define KL_DELTAS_INIT {NULL, 0, 0, false, NULL}

/* "Added", "Updated", "Deleted", "Replaced", "Sync" (static string). */
const char *kl_delta_type_name(kl_delta_type t);
/* Parses a name as above; returns 0 when unknown. */
kl_delta_type kl_delta_type_parse(const char *name);
/* The delta's key: the tombstone key or kl_obj_key(obj). Borrowed. */
const char *kl_delta_key(const kl_delta *d);
/* Appends a delta taking over obj's reference; key is copied (tombstones). */
void kl_deltas_push(kl_deltas *d, kl_delta_type type, kl_obj *obj,
                    bool tombstone, const char *key);
/* The newest delta, or NULL when empty. Borrowed. */
kl_delta *kl_deltas_newest(const kl_deltas *d);
/* Copies src into a zeroed dst (new references). */
void kl_deltas_copy(kl_deltas *dst, const kl_deltas *src);
/* Releases every delta and the array; leaves d empty (reusable). */
void kl_deltas_free(kl_deltas *d);

typedef struct kl_delta_fifo kl_delta_fifo;

typedef struct kl_delta_fifo_opts {
  /* The "known objects" (usually the informer's store): consulted by
   * delete, replace and resync. May be NULL (then replace cannot detect
   * deletions of keys not queued, and resync does nothing). */
  kl_store *known;
  /* Replace emits Replaced deltas when true, Sync deltas when false
   * (client-go's EmitDeltaTypeReplaced; false is the legacy behaviour). */
  bool emit_replaced;
} kl_delta_fifo_opts;

/* Process function for pop: gets the popped deltas (borrowed for the call)
 * and whether the item belongs to the initial list (not yet synced). It runs
 * with the queue locked: it must not call into the same queue (such calls
 * return KL_EINVAL instead of deadlocking). Return 0 on success; KL_EAGAIN
 * asks for the item to be re-queued (client-go's ErrRequeue, with
 * add_if_not_present semantics); any other code is handed back by pop. */
typedef int (*kl_fifo_process_fn)(kl_deltas *deltas, bool initial, void *ud);

/* Process function for pop_batch: gets the n popped items in pop order
 * (items[i] and initial[i], borrowed for the call; read-only: producers may
 * read them concurrently) and sets rcs[i] (zeroed before the call) for each:
 * 0 done; KL_EAGAIN re-queues item i (DeltaFIFO only: ahead of any deltas
 * its key got meanwhile, never behind them; RealFIFO drops it, as pop
 * does); any other code is an error the function has already handled. It
 * runs WITHOUT the queue's lock: it may call the queue's producers. */
typedef void (*kl_fifo_batch_fn)(const kl_deltas *items, const bool *initial,
                                 int *rcs, size_t n, void *ud);

/* One watch event for push_batch: type is KL_DELTA_ADDED, _UPDATED or
 * _DELETED; obj is borrowed (the queue takes its own reference). */
typedef struct kl_fifo_op {
  kl_delta_type type;
  kl_obj *obj;
} kl_fifo_op;

/* Creates a queue with refcount 1 (opts may be NULL). Takes its own
 * reference to opts->known. */
kl_delta_fifo *kl_delta_fifo_new(const kl_delta_fifo_opts *opts);
kl_delta_fifo *kl_delta_fifo_ref(kl_delta_fifo *f);
void kl_delta_fifo_unref(kl_delta_fifo *f);

/* Producers. The queue takes its own reference to obj; the caller keeps its.
 * All return 0, KL_EINVAL (NULL object, or called from inside this queue's
 * process function). Writes are accepted after close (as in client-go). */
int kl_delta_fifo_add(kl_delta_fifo *f, kl_obj *obj);
int kl_delta_fifo_update(kl_delta_fifo *f, kl_obj *obj);
/* Queues a Deleted delta unless the key is neither queued nor known (then it
 * was already deleted, e.g. by a relist: a no-op returning 0). */
int kl_delta_fifo_delete(kl_delta_fifo *f, kl_obj *obj);
/* add/update/delete of ops[0..n) in order under one lock hold, waking the
 * consumer once. Returns 0, or KL_EINVAL (a NULL object or another type:
 * nothing is queued; or called from inside this queue's process function). */
int kl_delta_fifo_push_batch(kl_delta_fifo *f, const kl_fifo_op *ops,
                             size_t n);
/* A Replaced (or Sync) delta for every object of list, then a tombstone
 * Deleted delta for every key queued or known but absent from list. The
 * resource version is accepted for symmetry and ignored (as in client-go). */
int kl_delta_fifo_replace(kl_delta_fifo *f, kl_obj *const *list, size_t n,
                          const char *resource_version);
/* A Sync delta for every known object whose key has nothing queued. */
int kl_delta_fifo_resync(kl_delta_fifo *f);
/* Re-queues popped deltas unless their key got new deltas meanwhile (then
 * the given deltas are dropped: the newer ones win). Takes over d in every
 * case (d is left empty). Returns 0 or KL_EINVAL (empty d). */
int kl_delta_fifo_add_if_not_present(kl_delta_fifo *f, kl_deltas *d);

/* Consumers. pop waits up to timeout seconds (< 0: forever) for a key, takes
 * it and all of its deltas off the queue and calls process under the lock.
 * Returns process's result, KL_ECLOSED (closed and empty; items queued
 * before close are still handed out), or KL_ETIMEDOUT. */
int kl_delta_fifo_pop(kl_delta_fifo *f, double timeout, kl_fifo_process_fn
                      process, void *ud);
/* Batch pop: waits like pop, then takes up to max (0: no limit) queued keys
 * with all their deltas in one lock hold and calls fn on them WITHOUT the
 * lock, so producers are never blocked by processing. Until fn returns and
 * the batch is settled, the popped keys count as present for delete,
 * replace and resync (a relist meanwhile tombstones them as if still
 * queued; their older state never comes back through a Sync), has_synced
 * stays false if they belong to the initial list, and other pops wait
 * (one batch at a time keeps per-key order). Returns the number of items
 * handed to fn (> 0), KL_ECLOSED, KL_ETIMEDOUT, or KL_EINVAL (fn NULL, or
 * called from a pop's process function). */
int kl_delta_fifo_pop_batch(kl_delta_fifo *f, double timeout, size_t max,
                            kl_fifo_batch_fn fn, void *ud);
/* Like pop without a process function: moves the deltas into *out (a zeroed
 * or freed kl_deltas; caller frees) and sets *initial (may be NULL). Note
 * that has_synced may turn true before the caller applied them. */
int kl_delta_fifo_pop_deltas(kl_delta_fifo *f, double timeout, kl_deltas *out,
                             bool *initial);

/* True once the first Replace's items (or, when add/update/delete came
 * first, nothing) have all been popped. */
bool kl_delta_fifo_has_synced(kl_delta_fifo *f);
/* Wakes every pop; later pops on an empty queue return KL_ECLOSED. */
void kl_delta_fifo_close(kl_delta_fifo *f);
bool kl_delta_fifo_is_closed(kl_delta_fifo *f);
/* Number of queued keys. */
size_t kl_delta_fifo_len(kl_delta_fifo *f);
/* Appends the queued keys in pop order (NEW strings). */
void kl_delta_fifo_list_keys(kl_delta_fifo *f, kl_strv *out);
/* Copies the pending deltas of key into *out (zeroed); false if none. */
bool kl_delta_fifo_get_by_key(kl_delta_fifo *f, const char *key,
                              kl_deltas *out);

/* The Lua binding of the DeltaFIFO, RealFIFO and UndeltaStore
 * (runtime/lua_fifo.c), listed in lua_bind.c. */
struct lua_State;
void kl_lua_open_fifo(struct lua_State *L, int core);

#endif
