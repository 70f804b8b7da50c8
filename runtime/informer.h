/* informer.h: client-go's SharedIndexInformer: a reflector feeding a
 * DeltaFIFO (or a RealFIFO in in-order mode), a pop loop applying the deltas
 * to an indexed store as HandleDeltas does, and any number of event
 * handlers, each with its own unbounded buffer and dispatcher thread (or
 * pulled by the caller: how Lua consumes them). A factory shares one
 * informer per resource + namespace + selectors + mode across a process.
 * Thread-safety: every function may be called from any thread; handler
 * functions run on their handler's own thread, one notification at a time. */
#ifndef KL_INFORMER_H
#define KL_INFORMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reflector.h"
#include "store.h"

/* ---- notifications ------------------------------------------------------ */

typedef enum kl_notify_type {
  KL_NOTIFY_ADD = 1,
  KL_NOTIFY_UPDATE,
  KL_NOTIFY_DELETE,
} kl_notify_type;

/* One notification, the ONE shape every handler gets. Owns its references.
 *   ADD:    obj = the new object; initial = it came from the initial list
 *           (or from the replay a handler added late receives).
 *   UPDATE: old = the cached state before, obj = the new one. resync = the
 *           resourceVersion did not change (a periodic resync or a relist
 *           that found the object unchanged); only handlers due for a
 *           resync receive those (client-go's rule).
 *   DELETE: obj = the last known state; tombstone = the deletion was not
 *           seen as a watch event but inferred from a relist (client-go's
 *           DeletedFinalStateUnknown): obj is then the last state this
 *           informer cached, which may be NULL only if it never had one.
 * key is always set ("ns/name" or "name"). */
typedef struct kl_notification {
  kl_notify_type type;
  kl_obj *obj;
  kl_obj *old;
  char *key;
  bool tombstone;
  bool initial;
  bool resync;
} kl_notification;

/* Releases the references and key of n and zeroes it (NULL-safe). */
void kl_notification_clear(kl_notification *n);
/* "add", "update", "delete" (static). */
const char *kl_notify_type_name(kl_notify_type t);

/* ---- informer ------------------------------------------------------------ */

typedef struct kl_informer_opts {
  /* what to list and watch, and how (see reflector.h); strings copied,
   * rest borrowed: it must outlive the informer */
  kl_reflector_opts reflector;
  /* in-order mode: a RealFIFO (every event delivered in arrival order, a
   * relist applied as one store transaction) instead of a DeltaFIFO */
  bool in_order;
} kl_informer_opts;

typedef struct kl_informer kl_informer;

/* Creates an informer (not running) with refcount 1. Returns 0 and a NEW
 * *out, or KL_EINVAL with a NEW message in *err (free it). */
int kl_informer_new(const kl_informer_opts *opts, kl_informer **out,
                    char **err);
kl_informer *kl_informer_ref(kl_informer *inf);
/* Drops a reference; the last one stops the informer and frees it. */
void kl_informer_unref(kl_informer *inf);

/* Starts the reflector and the pop loop (a second call is a no-op).
 * Returns 0, or KL_ECLOSED after kl_informer_stop. */
int kl_informer_start(kl_informer *inf);
/* Stops the reflector, the pop loop and every handler thread and waits for
 * them (prompt: a fraction of a second; a handler function that is running
 * is waited for). Pending notifications are dropped. Idempotent. */
void kl_informer_stop(kl_informer *inf);

/* The informer's store (borrowed, valid while the informer lives; take a
 * reference with kl_store_ref to keep it longer). Add indexers at any time.
 * Only the informer writes to it. */
kl_store *kl_informer_store(kl_informer *inf);

/* True once the first list has been applied to the store (and handed to
 * the handlers' buffers). */
bool kl_informer_has_synced(kl_informer *inf);
/* Waits up to timeout seconds (< 0: forever) for has_synced; false on
 * timeout or when the informer is stopped. */
bool kl_informer_wait_for_sync(kl_informer *inf, double timeout);

typedef struct kl_informer_stats {
  kl_reflector_stats reflector; /* lists, relists, watch restarts, ... */
  uint64_t adds, updates, deletes; /* notifications distributed, by type */
  uint64_t resyncs;    /* updates with an unchanged resourceVersion */
  uint64_t tombstones; /* deletes inferred from a relist */
  size_t objects;      /* objects cached */
  size_t handlers;
  bool synced;
} kl_informer_stats;
void kl_informer_stats_get(kl_informer *inf, kl_informer_stats *out);

/* ---- handlers -------------------------------------------------------------- */

typedef struct kl_handler kl_handler;

/* Called on the handler's own thread, one notification at a time; n and
 * its objects are borrowed for the call (take references to keep them). */
typedef void (*kl_handler_fn)(const kl_notification *n, void *ud);

/* Adds a handler. With fn set, a dispatcher thread of its own calls it;
 * with fn NULL the caller pulls notifications with kl_handler_next. Each
 * handler has its own unbounded buffer, so a slow one never delays the
 * informer or the others. resync_s > 0 asks for an UPDATE (resync=true) of
 * every cached object about every resync_s seconds; 0: never. A handler
 * added after the informer synced first gets an ADD (initial=true) for
 * every cached object. Returns 0 and *out (borrowed: valid until
 * kl_informer_remove_handler or the informer's end), or KL_ECLOSED when the
 * informer was stopped. */
int kl_informer_add_handler(kl_informer *inf, kl_handler_fn fn, void *ud,
                            double resync_s, kl_handler **out);
/* Removes and frees a handler (waits for a running fn; drops what is
 * pending). Must not be called from that handler's own fn. */
void kl_informer_remove_handler(kl_informer *inf, kl_handler *h);

/* Pull mode: waits up to timeout seconds (< 0: forever) for the next
 * notification. Returns 1 and fills *out (kl_notification_clear it), 0 on
 * timeout, KL_ECLOSED when the informer was stopped, KL_EINVAL for a
 * handler with a function. */
int kl_handler_next(kl_handler *h, double timeout, kl_notification *out);
/* Notifications buffered and not yet delivered. */
size_t kl_handler_pending(kl_handler *h);
/* Notifications delivered so far (fn returned, or handed out by next). */
uint64_t kl_handler_delivered(kl_handler *h);

/* ---- factory ---------------------------------------------------------------- */

/* Shares informers: one per (path, label selector, field selector,
 * metadata-only, in-order); selectors compare by their canonical form. */
typedef struct kl_informer_factory kl_informer_factory;

/* rest is borrowed and must outlive the factory and its informers. */
kl_informer_factory *kl_informer_factory_new(kl_rest *rest);
/* Stops and releases the factory's references (informers still referenced
 * elsewhere live on, stopped). NULL-safe. */
void kl_informer_factory_free(kl_informer_factory *f);
/* Returns 0 and a NEW reference in *out to the informer for opts (created
 * on first use; opts->reflector.rest may be NULL: the factory's is used;
 * the other options of the first caller win), or KL_EINVAL with a NEW
 * message for a bad selector or path. The informer is not started. */
int kl_informer_factory_get(kl_informer_factory *f,
                            const kl_informer_opts *opts, kl_informer **out,
                            char **err);
/* Starts every informer of the factory; returns how many there are. */
size_t kl_informer_factory_start(kl_informer_factory *f);
size_t kl_informer_factory_len(kl_informer_factory *f);
/* Drops the caller's reference to inf (one kl_informer_factory_get gave).
 * When nobody else holds one, the factory forgets inf (a later get creates
 * a new informer), stops and frees it, and this returns true. NULL-safe. */
bool kl_informer_factory_release(kl_informer_factory *f, kl_informer *inf);

/* The Lua binding (lua_informer.c): adds informer_new to the klua_core
 * table at index core (see docs/informers.md). */
struct lua_State;
void kl_lua_open_informer(struct lua_State *L, int core);

#endif
