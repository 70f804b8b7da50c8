/* delta_fifo.c: client-go's DeltaFIFO (see delta_fifo.h). One mutex guards
 * a key -> item map and a ring of items in pop order; a key is queued at most
 * once and has at least one delta while queued. The locking, ring and
 * has_synced state are shared with real_fifo.c (fifo_internal.h).
 *
 * pop_batch processes outside the lock. client-go processes under it so
 * that delete/replace/resync, which consult the known-objects store, never
 * see a popped key whose deltas are not in the store yet. Here the popped
 * items stay visible in `inflight` until the batch is settled, and those
 * three treat an in-flight key as client-go treats a queued one (its newest
 * in-flight delta stands for its state). A key outside both maps has no
 * store write pending, so the store is a consistent view of it. */
#include "delta_fifo.h"

#include <stdlib.h>
#include <string.h>

#include "fifo_internal.h"
#include "hmap.h"
#include "kl.h"

/* ---- kl_delta / kl_deltas --------------------------------------------- */

static const char *const type_names[] = {
    NULL, "Added", "Updated", "Deleted", "Replaced", "Sync",
};

const char *kl_delta_type_name(kl_delta_type t) {
  if (t < KL_DELTA_ADDED || t > KL_DELTA_SYNC) return "Unknown";
  return type_names[t];
}

kl_delta_type kl_delta_type_parse(const char *name) {
  for (int t = KL_DELTA_ADDED; t <= KL_DELTA_SYNC; t++) {
    if (name && strcmp(name, type_names[t]) == 0) return (kl_delta_type)t;
  }
  return (kl_delta_type)0;
}

const char *kl_delta_key(const kl_delta *d) {
  if (d->key) return d->key;
  return d->obj ? kl_obj_key(d->obj) : "";
}

void kl_deltas_push(kl_deltas *d, kl_delta_type type, kl_obj *obj,
                    bool tombstone, const char *key) {
  if (d->n == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 2;
    d->v = kl_realloc(d->v, d->cap * sizeof *d->v);
  }
  kl_delta *x = &d->v[d->n++];
  x->type = type;
  x->tombstone = tombstone;
  x->obj = obj;
  x->key = (tombstone || !obj) && key ? kl_strdup(key) : NULL;
}

kl_delta *kl_deltas_newest(const kl_deltas *d) {
  return d->n ? &d->v[d->n - 1] : NULL;
}

void kl_deltas_copy(kl_deltas *dst, const kl_deltas *src) {
  memset(dst, 0, sizeof *dst);
  for (size_t i = 0; i < src->n; i++) {
    const kl_delta *x = &src->v[i];
    kl_deltas_push(dst, x->type, kl_obj_ref(x->obj), x->tombstone, x->key);
  }
  dst->replace_batch = src->replace_batch;
  dst->resource_version =
      src->resource_version ? kl_strdup(src->resource_version) : NULL;
}

static void delta_clear(kl_delta *x) {
  kl_obj_unref(x->obj);
  free(x->key);
  x->obj = NULL;
  x->key = NULL;
}

void kl_deltas_free(kl_deltas *d) {
  for (size_t i = 0; i < d->n; i++) delta_clear(&d->v[i]);
  free(d->v);
  free(d->resource_version);
  memset(d, 0, sizeof *d);
}

/* ---- the queue ---------------------------------------------------------- */

typedef struct item {
  char *key; /* owned; the map borrows it */
  kl_deltas deltas;
} item;

struct kl_delta_fifo {
  kl__fifo b;    /* ring of item * in pop order; lock; has_synced state */
  kl_hmap items; /* key -> item* */
  kl_hmap inflight; /* key -> item* of the busy batch (b.bv) */
  kl_deltas *dv;    /* the busy batch's deltas as handed to fn (shallow) */
  size_t dcap;
  bool emit_replaced;
};

kl_delta_fifo *kl_delta_fifo_new(const kl_delta_fifo_opts *opts) {
  kl_delta_fifo *f = kl_calloc(1, sizeof *f);
  kl__fifo_init(&f->b, sizeof(item *), opts ? opts->known : NULL,
                "delta_fifo");
  kl_hmap_init(&f->items, KL_HMAP_BORROW_KEYS);
  kl_hmap_init(&f->inflight, KL_HMAP_BORROW_KEYS);
  if (opts) f->emit_replaced = opts->emit_replaced;
  return f;
}

kl_delta_fifo *kl_delta_fifo_ref(kl_delta_fifo *f) {
  if (f) atomic_fetch_add(&f->b.refs, 1);
  return f;
}

static item *item_at(const kl_delta_fifo *f, size_t i) {
  return *(item **)kl__ring_at(&f->b.ring, i);
}

static void item_free(item *it) {
  kl_deltas_free(&it->deltas);
  free(it->key);
  free(it);
}

void kl_delta_fifo_unref(kl_delta_fifo *f) {
  if (!kl__fifo_unref(f ? &f->b : NULL)) return;
  for (size_t i = 0; i < f->b.ring.len; i++) item_free(item_at(f, i));
  kl_hmap_free(&f->items);
  kl_hmap_free(&f->inflight);
  free(f->dv);
  kl__fifo_destroy(&f->b);
  free(f);
}

/* Queues a new item for key holding d (taken over, left empty; may be
 * NULL: no deltas yet). Returns the item. */
static item *queue_item(kl_delta_fifo *f, const char *key, kl_deltas *d) {
  item *it = kl_calloc(1, sizeof *it);
  it->key = kl_strdup(key);
  if (d) {
    it->deltas = *d;
    memset(d, 0, sizeof *d);
  }
  kl_hmap_put(&f->items, it->key, it);
  kl__ring_push(&f->b.ring, &it);
  return it;
}

/* client-go's queueActionLocked + dedupDeltas: appends a delta (taking over
 * obj's reference) and queues the key if it was not queued. Two Deleted in a
 * row collapse: the older is kept unless it is a tombstone (isDeletionDup).
 * The caller wakes the consumers (once per call of the public function). */
static void queue_action(kl_delta_fifo *f, kl_delta_type type, kl_obj *obj,
                         bool tombstone, const char *key) {
  item *it = kl_hmap_get(&f->items, key);
  if (!it) it = queue_item(f, key, NULL);
  kl_delta *last = kl_deltas_newest(&it->deltas);
  if (last && last->type == KL_DELTA_DELETED && type == KL_DELTA_DELETED) {
    if (last->tombstone) {
      delta_clear(&it->deltas.v[--it->deltas.n]);
      kl_deltas_push(&it->deltas, type, obj, tombstone, key);
    } else {
      kl_obj_unref(obj);
    }
  } else {
    kl_deltas_push(&it->deltas, type, obj, tombstone, key);
  }
}

static void wake(kl_delta_fifo *f) { pthread_cond_broadcast(&f->b.cond); }

/* The busy batch's item for key, or NULL. */
static item *inflight(const kl_delta_fifo *f, const char *key) {
  return f->b.busy ? kl_hmap_get(&f->inflight, key) : NULL;
}

/* Whether a Deleted delta for key has something to delete: the key is
 * queued, or in flight with a newest delta other than Deleted, or (neither)
 * in the known objects. */
static bool present(kl_delta_fifo *f, const char *key) {
  if (kl_hmap_has(&f->items, key)) return true;
  item *fl = inflight(f, key);
  if (fl) return kl_deltas_newest(&fl->deltas)->type != KL_DELTA_DELETED;
  if (!f->b.known) return false;
  kl_obj *k = kl_store_get_by_key(f->b.known, key);
  kl_obj_unref(k);
  return k != NULL;
}

static int enter(kl_delta_fifo *f) { return kl__fifo_enter(&f->b); }

static int add_delta(kl_delta_fifo *f, kl_delta_type type, kl_obj *obj) {
  if (!obj) return KL_EINVAL;
  int rc = enter(f);
  if (rc) return rc;
  f->b.populated = true;
  queue_action(f, type, kl_obj_ref(obj), false, kl_obj_key(obj));
  wake(f);
  pthread_mutex_unlock(&f->b.mu);
  return 0;
}

int kl_delta_fifo_add(kl_delta_fifo *f, kl_obj *obj) {
  return add_delta(f, KL_DELTA_ADDED, obj);
}

int kl_delta_fifo_update(kl_delta_fifo *f, kl_obj *obj) {
  return add_delta(f, KL_DELTA_UPDATED, obj);
}

int kl_delta_fifo_delete(kl_delta_fifo *f, kl_obj *obj) {
  if (!obj) return KL_EINVAL;
  int rc = enter(f);
  if (rc) return rc;
  const char *key = kl_obj_key(obj);
  f->b.populated = true;
  if (present(f, key)) {
    queue_action(f, KL_DELTA_DELETED, kl_obj_ref(obj), false, key);
    wake(f);
  }
  pthread_mutex_unlock(&f->b.mu);
  return 0;
}

int kl_delta_fifo_push_batch(kl_delta_fifo *f, const kl_fifo_op *ops,
                             size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!ops[i].obj || ops[i].type < KL_DELTA_ADDED ||
        ops[i].type > KL_DELTA_DELETED)
      return KL_EINVAL;
  }
  int rc = enter(f);
  if (rc) return rc;
  f->b.populated = true;
  for (size_t i = 0; i < n; i++) {
    const char *key = kl_obj_key(ops[i].obj);
    if (ops[i].type == KL_DELTA_DELETED && !present(f, key)) continue;
    queue_action(f, ops[i].type, kl_obj_ref(ops[i].obj), false, key);
  }
  if (f->b.ring.len) wake(f);
  pthread_mutex_unlock(&f->b.mu);
  return 0;
}

int kl_delta_fifo_replace(kl_delta_fifo *f, kl_obj *const *list, size_t n,
                          const char *resource_version) {
  (void)resource_version;
  for (size_t i = 0; i < n; i++) {
    if (!list[i]) return KL_EINVAL;
  }
  int rc = enter(f);
  if (rc) return rc;
  kl_delta_type action = f->emit_replaced ? KL_DELTA_REPLACED : KL_DELTA_SYNC;
  kl_hmap keys;
  kl_hmap_init(&keys, KL_HMAP_BORROW_KEYS); /* keys borrowed from list */
  for (size_t i = 0; i < n; i++) {
    const char *key = kl_obj_key(list[i]);
    kl_hmap_put(&keys, key, list[i]);
    queue_action(f, action, kl_obj_ref(list[i]), false, key);
  }

  /* Queued keys the list lacks: a tombstone holding the newest object. Go
   * through the ring (pop order) so the result is deterministic; collect
   * first since queue_action may grow the ring. */
  size_t queued_deletions = 0;
  kl_strv gone = {0};
  for (size_t i = 0; i < f->b.ring.len; i++) {
    item *it = item_at(f, i);
    if (!kl_hmap_has(&keys, it->key)) kl_strv_push(&gone, it->key);
  }
  for (size_t i = 0; i < gone.n; i++) {
    item *it = kl_hmap_get(&f->items, gone.v[i]);
    kl_delta *newest = kl_deltas_newest(&it->deltas);
    kl_obj *last = newest ? kl_obj_ref(newest->obj) : NULL;
    queued_deletions++;
    queue_action(f, KL_DELTA_DELETED, last, true, gone.v[i]);
  }
  kl_strv_free(&gone);

  /* Keys of the busy batch the list lacks and nothing queued: their store
   * writes may not have happened yet, so tombstone them with their newest
   * in-flight state, as if still queued; one whose newest delta is Deleted
   * is already going away (client-go would find it in neither place). */
  for (size_t i = 0; f->b.busy && i < f->b.bn; i++) {
    item *it = ((item **)f->b.bv)[i];
    if (kl_hmap_has(&keys, it->key) || kl_hmap_has(&f->items, it->key))
      continue;
    kl_delta *newest = kl_deltas_newest(&it->deltas);
    if (newest->type == KL_DELTA_DELETED) continue;
    queued_deletions++;
    queue_action(f, KL_DELTA_DELETED, kl_obj_ref(newest->obj), true,
                 it->key);
  }

  /* Known keys the list lacks and nothing queued or in flight: tombstone
   * with the known object (NULL if it vanished from the store meanwhile). */
  if (f->b.known) {
    kl_strv known = {0};
    kl_store_list_keys(f->b.known, &known);
    for (size_t i = 0; i < known.n; i++) {
      const char *k = known.v[i];
      if (kl_hmap_has(&keys, k) || kl_hmap_has(&f->items, k) ||
          inflight(f, k))
        continue;
      kl_obj *last = kl_store_get_by_key(f->b.known, k);
      if (!last) {
        kl_log(KL_LOG_INFO, "delta_fifo",
               "key %s does not exist in known objects store, placing "
               "DeletedFinalStateUnknown marker without object", k);
      }
      queued_deletions++;
      queue_action(f, KL_DELTA_DELETED, last, true, k);
    }
    kl_strv_free(&known);
  }
  if (!f->b.populated) {
    f->b.populated = true;
    f->b.initial_count = kl_hmap_len(&keys) + queued_deletions;
  }
  kl_hmap_free(&keys);
  wake(f);
  pthread_mutex_unlock(&f->b.mu);
  return 0;
}

int kl_delta_fifo_resync(kl_delta_fifo *f) {
  int rc = enter(f);
  if (rc) return rc;
  if (f->b.known) {
    kl_strv keys = {0};
    kl_store_list_keys(f->b.known, &keys);
    for (size_t i = 0; i < keys.n; i++) {
      /* A key with deltas pending (queued or in flight) is skipped: its
       * Sync would carry an older state than the pending one (and this
       * bounds memory under resync). */
      if (kl_hmap_has(&f->items, keys.v[i]) || inflight(f, keys.v[i]))
        continue;
      kl_obj *obj = kl_store_get_by_key(f->b.known, keys.v[i]);
      if (!obj) continue; /* deleted since listed */
      queue_action(f, KL_DELTA_SYNC, obj, false, kl_obj_key(obj));
    }
    kl_strv_free(&keys);
    if (f->b.ring.len) wake(f);
  }
  pthread_mutex_unlock(&f->b.mu);
  return 0;
}

/* client-go's addIfNotPresent; takes over d. */
static void add_if_not_present(kl_delta_fifo *f, const char *key,
                               kl_deltas *d) {
  f->b.populated = true;
  if (kl_hmap_has(&f->items, key)) {
    kl_deltas_free(d);
    return;
  }
  queue_item(f, key, d);
  pthread_cond_broadcast(&f->b.cond);
}

int kl_delta_fifo_add_if_not_present(kl_delta_fifo *f, kl_deltas *d) {
  if (!d || d->n == 0) {
    if (d) kl_deltas_free(d);
    return KL_EINVAL;
  }
  int rc = enter(f);
  if (rc) {
    kl_deltas_free(d);
    return rc;
  }
  char *key = kl_strdup(kl_delta_key(kl_deltas_newest(d)));
  add_if_not_present(f, key, d);
  free(key);
  pthread_mutex_unlock(&f->b.mu);
  return 0;
}

/* Waits (lock held) for an item and takes it off the queue (not yet freed).
 * Returns 0, KL_ECLOSED or KL_ETIMEDOUT. */
static int wait_take(kl_delta_fifo *f, double timeout, item **it,
                     bool *initial) {
  int rc = kl__fifo_wait_take(&f->b, timeout, it, initial);
  if (rc == 0) kl_hmap_del(&f->items, (*it)->key, NULL);
  return rc;
}

int kl_delta_fifo_pop(kl_delta_fifo *f, double timeout,
                      kl_fifo_process_fn process, void *ud) {
  int rc = enter(f);
  if (rc) return rc;
  item *it;
  bool initial;
  rc = wait_take(f, timeout, &it, &initial);
  if (rc) {
    pthread_mutex_unlock(&f->b.mu);
    return rc;
  }
  rc = kl__fifo_process(&f->b, process, &it->deltas, initial, ud);
  if (rc == KL_EAGAIN) add_if_not_present(f, it->key, &it->deltas);
  pthread_mutex_unlock(&f->b.mu);
  item_free(it);
  return rc;
}

/* Appends delta x (moved) to d. */
static void deltas_append(kl_deltas *d, const kl_delta *x) {
  if (d->n == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 2;
    d->v = kl_realloc(d->v, d->cap * sizeof *d->v);
  }
  d->v[d->n++] = *x;
}

/* Puts the deltas of a batch item whose processing asked for a retry back
 * in the queue, AHEAD of any deltas its key got meanwhile (so they are
 * applied in order and never overtake newer ones); a key with nothing
 * queued goes to the back, as add_if_not_present does. it->deltas are
 * moved out. Two Deleted meeting at the seam collapse as in queue_action. */
static void requeue(kl_delta_fifo *f, item *it) {
  f->b.populated = true;
  item *q = kl_hmap_get(&f->items, it->key);
  if (!q) {
    queue_item(f, it->key, &it->deltas);
    return;
  }
  kl_deltas m = it->deltas;
  memset(&it->deltas, 0, sizeof it->deltas);
  for (size_t i = 0; i < q->deltas.n; i++) {
    kl_delta *x = &q->deltas.v[i], *last = kl_deltas_newest(&m);
    if (i == 0 && last && last->type == KL_DELTA_DELETED &&
        x->type == KL_DELTA_DELETED) {
      if (last->tombstone) {
        delta_clear(last);
        *last = *x;
      } else {
        delta_clear(x);
      }
      continue;
    }
    deltas_append(&m, x);
  }
  free(q->deltas.v);
  q->deltas = m;
}

int kl_delta_fifo_pop_batch(kl_delta_fifo *f, double timeout, size_t max,
                            kl_fifo_batch_fn fn, void *ud) {
  if (!fn) return KL_EINVAL;
  int rc = enter(f);
  if (rc) return rc;
  rc = kl__fifo_take_batch(&f->b, timeout, max);
  if (rc) {
    pthread_mutex_unlock(&f->b.mu);
    return rc;
  }
  size_t n = f->b.bn;
  item **its = (item **)f->b.bv;
  if (n > f->dcap) {
    free(f->dv);
    f->dcap = f->b.bcap;
    f->dv = kl_malloc(f->dcap * sizeof *f->dv);
  }
  for (size_t i = 0; i < n; i++) {
    kl_hmap_del(&f->items, its[i]->key, NULL);
    kl_hmap_put(&f->inflight, its[i]->key, its[i]);
    f->dv[i] = its[i]->deltas;
  }
  pthread_mutex_unlock(&f->b.mu);

  fn(f->dv, f->b.binit, f->b.brc, n, ud);

  /* settle: retries back in the queue, the rest freed outside the lock */
  item *stack[64], **done = n <= 64 ? stack : kl_malloc(n * sizeof *done);
  size_t nd = 0;
  pthread_mutex_lock(&f->b.mu);
  for (size_t i = 0; i < n; i++) {
    kl_hmap_del(&f->inflight, its[i]->key, NULL);
    if (f->b.brc[i] == KL_EAGAIN) requeue(f, its[i]);
    done[nd++] = its[i];
  }
  kl__fifo_batch_done(&f->b);
  pthread_mutex_unlock(&f->b.mu);
  for (size_t i = 0; i < nd; i++) item_free(done[i]);
  if (done != stack) free(done);
  return (int)n;
}

int kl_delta_fifo_pop_deltas(kl_delta_fifo *f, double timeout, kl_deltas *out,
                             bool *initial) {
  int rc = enter(f);
  if (rc) return rc;
  item *it;
  bool init;
  rc = wait_take(f, timeout, &it, &init);
  if (rc) {
    pthread_mutex_unlock(&f->b.mu);
    return rc;
  }
  pthread_mutex_unlock(&f->b.mu);
  if (initial) *initial = init;
  *out = it->deltas;
  memset(&it->deltas, 0, sizeof it->deltas);
  item_free(it);
  return 0;
}

bool kl_delta_fifo_has_synced(kl_delta_fifo *f) {
  return kl__fifo_has_synced(&f->b);
}

void kl_delta_fifo_close(kl_delta_fifo *f) { kl__fifo_close(&f->b); }

bool kl_delta_fifo_is_closed(kl_delta_fifo *f) {
  return kl__fifo_is_closed(&f->b);
}

size_t kl_delta_fifo_len(kl_delta_fifo *f) { return kl__fifo_len(&f->b); }

void kl_delta_fifo_list_keys(kl_delta_fifo *f, kl_strv *out) {
  if (enter(f)) return;
  for (size_t i = 0; i < f->b.ring.len; i++)
    kl_strv_push(out, item_at(f, i)->key);
  pthread_mutex_unlock(&f->b.mu);
}

bool kl_delta_fifo_get_by_key(kl_delta_fifo *f, const char *key,
                              kl_deltas *out) {
  memset(out, 0, sizeof *out);
  if (enter(f)) return false;
  item *it = kl_hmap_get(&f->items, key);
  if (it) kl_deltas_copy(out, &it->deltas);
  pthread_mutex_unlock(&f->b.mu);
  return it != NULL;
}
