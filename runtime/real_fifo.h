/* real_fifo.h: client-go's RealFIFO in in-order mode: every event is
 * delivered, in arrival order, with no per-key coalescing; a Replace becomes
 * ONE queue entry (a replace batch) so the consumer can apply the relist as
 * a single store transaction. The informer picks it or the DeltaFIFO.
 * Thread-safety: every function may be called from any thread (one mutex +
 * condvar); pop's process function runs with the queue's lock held,
 * pop_batch's without it. */
#ifndef KL_REAL_FIFO_H
#define KL_REAL_FIFO_H

#include <stdbool.h>
#include <stddef.h>

#include "delta_fifo.h"
#include "store.h"

typedef struct kl_real_fifo kl_real_fifo;

/* Creates a queue with refcount 1. known (may be NULL) are the known
 * objects used by replace (deletion detection) and resync; the queue takes
 * its own reference. */
kl_real_fifo *kl_real_fifo_new(kl_store *known);
kl_real_fifo *kl_real_fifo_ref(kl_real_fifo *f);
void kl_real_fifo_unref(kl_real_fifo *f);

/* Producers: each appends one entry holding one delta. The queue takes its
 * own reference to obj. Return 0 or KL_EINVAL (NULL object, or called from
 * inside this queue's process function). delete always queues (no
 * known-objects check, as client-go's RealFIFO). */
int kl_real_fifo_add(kl_real_fifo *f, kl_obj *obj);
int kl_real_fifo_update(kl_real_fifo *f, kl_obj *obj);
int kl_real_fifo_delete(kl_real_fifo *f, kl_obj *obj);
/* One entry per op, in order, under one lock hold, waking the consumer
 * once. Returns 0, or KL_EINVAL (a NULL object or a type other than
 * Added/Updated/Deleted: nothing is queued; or called from inside this
 * queue's process function). */
int kl_real_fifo_push_batch(kl_real_fifo *f, const kl_fifo_op *ops,
                            size_t n);
/* Appends ONE entry: a kl_deltas with replace_batch set and
 * resource_version copied, holding first a Replaced delta per list object
 * (list order), then a tombstone Deleted delta per key that is queued
 * (whose newest queued delta is not a Deleted; the tombstone holds that
 * newest object) or known, but absent from the list (queue order, then
 * known-store order). The batch is queued even when empty. */
int kl_real_fifo_replace(kl_real_fifo *f, kl_obj *const *list, size_t n,
                         const char *resource_version);
/* One Sync entry per known object whose key has no entry queued (keys
 * inside a queued replace batch count as queued). */
int kl_real_fifo_resync(kl_real_fifo *f);

/* Consumers, as for the DeltaFIFO: pop takes the oldest entry (one delta, or
 * a whole replace batch) and calls process under the lock; the result is
 * process's return code (a failed entry is NOT re-queued, KL_EAGAIN
 * included: re-queueing would break the order), KL_ECLOSED or
 * KL_ETIMEDOUT. */
int kl_real_fifo_pop(kl_real_fifo *f, double timeout,
                     kl_fifo_process_fn process, void *ud);
/* Batch pop: takes up to max (0: no limit) of the oldest entries in one
 * lock hold and calls fn on them without the lock (see kl_fifo_batch_fn;
 * KL_EAGAIN does not re-queue). Until the batch is settled its entries
 * count as queued for replace and resync, has_synced stays false if they
 * belong to the initial list, and other pops wait. Returns the number of
 * entries handed to fn (> 0), KL_ECLOSED, KL_ETIMEDOUT or KL_EINVAL. */
int kl_real_fifo_pop_batch(kl_real_fifo *f, double timeout, size_t max,
                           kl_fifo_batch_fn fn, void *ud);
/* Like pop without a process function: moves the entry into *out (a zeroed
 * or freed kl_deltas; the caller frees it with kl_deltas_free) and sets
 * *initial (may be NULL). */
int kl_real_fifo_pop_deltas(kl_real_fifo *f, double timeout, kl_deltas *out,
                            bool *initial);

/* True once every entry queued up to and including the first Replace (or
 * nothing, when add/update/delete came first) has been popped. */
bool kl_real_fifo_has_synced(kl_real_fifo *f);
/* Wakes every pop; later pops on an empty queue return KL_ECLOSED (entries
 * queued before close are still handed out). */
void kl_real_fifo_close(kl_real_fifo *f);
bool kl_real_fifo_is_closed(kl_real_fifo *f);
/* Number of queued entries (a replace batch counts once). */
size_t kl_real_fifo_len(kl_real_fifo *f);
/* Appends the distinct keys with something queued (NEW strings), in order
 * of first appearance. */
void kl_real_fifo_list_keys(kl_real_fifo *f, kl_strv *out);

#endif
