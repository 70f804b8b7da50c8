/* real_fifo.c: client-go's RealFIFO, in-order, with atomic replace batches
 * (see real_fifo.h). A ring of entries, each a kl_deltas; the locking, ring
 * and has_synced state are shared with delta_fifo.c (fifo_internal.h).
 * The entries of a batch being processed outside the lock (b.bv while
 * b.busy) stay visible to replace and resync, ahead of the queued ones: a
 * key there may not be in the known store yet, or only in an older state. */
#include "real_fifo.h"

#include <stdlib.h>
#include <string.h>

#include "fifo_internal.h"
#include "hmap.h"
#include "kl.h"

struct kl_real_fifo {
  kl__fifo b; /* ring of kl_deltas in arrival order; lock; has_synced */
};

kl_real_fifo *kl_real_fifo_new(kl_store *known) {
  kl_real_fifo *f = kl_calloc(1, sizeof *f);
  kl__fifo_init(&f->b, sizeof(kl_deltas), known, "real_fifo");
  return f;
}

kl_real_fifo *kl_real_fifo_ref(kl_real_fifo *f) {
  if (f) atomic_fetch_add(&f->b.refs, 1);
  return f;
}

#define AT(f, i) ((kl_deltas *)kl__ring_at(&(f)->b.ring, (i)))

void kl_real_fifo_unref(kl_real_fifo *f) {
  if (!kl__fifo_unref(f ? &f->b : NULL)) return;
  for (size_t i = 0; i < f->b.ring.len; i++) kl_deltas_free(AT(f, i));
  kl__fifo_destroy(&f->b);
  free(f);
}

/* Appends an entry, taking over d (left empty). The caller wakes. */
static void push_entry(kl_real_fifo *f, kl_deltas *d) {
  kl__ring_push(&f->b.ring, d);
  memset(d, 0, sizeof *d);
}

static void wake(kl_real_fifo *f) { pthread_cond_broadcast(&f->b.cond); }

static void push_one(kl_real_fifo *f, kl_delta_type type, kl_obj *obj) {
  kl_deltas d = KL_DELTAS_INIT;
  kl_deltas_push(&d, type, obj, false, NULL);
  push_entry(f, &d);
}

static int enter(kl_real_fifo *f) { return kl__fifo_enter(&f->b); }

static int add_delta(kl_real_fifo *f, kl_delta_type type, kl_obj *obj) {
  if (!obj) return KL_EINVAL;
  int rc = enter(f);
  if (rc) return rc;
  f->b.populated = true;
  push_one(f, type, kl_obj_ref(obj));
  wake(f);
  pthread_mutex_unlock(&f->b.mu);
  return 0;
}

int kl_real_fifo_add(kl_real_fifo *f, kl_obj *obj) {
  return add_delta(f, KL_DELTA_ADDED, obj);
}
int kl_real_fifo_update(kl_real_fifo *f, kl_obj *obj) {
  return add_delta(f, KL_DELTA_UPDATED, obj);
}
int kl_real_fifo_delete(kl_real_fifo *f, kl_obj *obj) {
  return add_delta(f, KL_DELTA_DELETED, obj);
}

int kl_real_fifo_push_batch(kl_real_fifo *f, const kl_fifo_op *ops,
                            size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!ops[i].obj || ops[i].type < KL_DELTA_ADDED ||
        ops[i].type > KL_DELTA_DELETED)
      return KL_EINVAL;
  }
  int rc = enter(f);
  if (rc) return rc;
  f->b.populated = true;
  for (size_t i = 0; i < n; i++)
    push_one(f, ops[i].type, kl_obj_ref(ops[i].obj));
  if (n) wake(f);
  pthread_mutex_unlock(&f->b.mu);
  return 0;
}

static void scan_entry(kl_deltas *e, kl_hmap *last, kl_strv *order) {
  for (size_t j = 0; j < e->n; j++) {
    const char *k = kl_delta_key(&e->v[j]);
    if (kl_hmap_put(last, k, &e->v[j]) == NULL && order) kl_strv_push(order, k);
  }
}

/* Maps every key in flight (the busy batch) or queued to its newest delta
 * (borrowed) and appends the keys to order (if not NULL) in order of first
 * appearance. */
static void scan_queue(kl_real_fifo *f, kl_hmap *last, kl_strv *order) {
  for (size_t i = 0; f->b.busy && i < f->b.bn; i++)
    scan_entry((kl_deltas *)f->b.bv + i, last, order);
  for (size_t i = 0; i < f->b.ring.len; i++) scan_entry(AT(f, i), last, order);
}

int kl_real_fifo_replace(kl_real_fifo *f, kl_obj *const *list, size_t n,
                         const char *resource_version) {
  for (size_t i = 0; i < n; i++) {
    if (!list[i]) return KL_EINVAL;
  }
  int rc = enter(f);
  if (rc) return rc;
  kl_deltas batch = KL_DELTAS_INIT;
  batch.replace_batch = true;
  batch.resource_version = resource_version ? kl_strdup(resource_version)
                                            : NULL;
  kl_hmap keys;
  kl_hmap_init(&keys, KL_HMAP_BORROW_KEYS);
  for (size_t i = 0; i < n; i++) {
    kl_hmap_put(&keys, kl_obj_key(list[i]), list[i]);
    kl_deltas_push(&batch, KL_DELTA_REPLACED, kl_obj_ref(list[i]), false,
                   NULL);
  }

  kl_hmap last;
  kl_hmap_init(&last, KL_HMAP_BORROW_KEYS);
  kl_strv order = {0};
  scan_queue(f, &last, &order);
  for (size_t i = 0; i < order.n; i++) {
    const char *k = order.v[i];
    if (kl_hmap_has(&keys, k)) continue;
    const kl_delta *d = kl_hmap_get(&last, k);
    if (d->type == KL_DELTA_DELETED) continue; /* already going away */
    kl_deltas_push(&batch, KL_DELTA_DELETED, kl_obj_ref(d->obj), true, k);
  }
  if (f->b.known) {
    kl_strv known = {0};
    kl_store_list_keys(f->b.known, &known);
    for (size_t i = 0; i < known.n; i++) {
      const char *k = known.v[i];
      if (kl_hmap_has(&keys, k) || kl_hmap_has(&last, k)) continue;
      kl_obj *obj = kl_store_get_by_key(f->b.known, k);
      if (!obj) {
        kl_log(KL_LOG_INFO, "real_fifo",
               "key %s does not exist in known objects store, placing "
               "DeletedFinalStateUnknown marker without object", k);
      }
      kl_deltas_push(&batch, KL_DELTA_DELETED, obj, true, k);
    }
    kl_strv_free(&known);
  }
  kl_strv_free(&order);
  kl_hmap_free(&last);
  kl_hmap_free(&keys);
  push_entry(f, &batch);
  if (!f->b.populated) {
    f->b.populated = true;
    f->b.initial_count = f->b.ring.len;
  }
  wake(f);
  pthread_mutex_unlock(&f->b.mu);
  return 0;
}

int kl_real_fifo_resync(kl_real_fifo *f) {
  int rc = enter(f);
  if (rc) return rc;
  if (f->b.known) {
    kl_hmap last;
    kl_hmap_init(&last, KL_HMAP_BORROW_KEYS);
    scan_queue(f, &last, NULL);
    kl_strv keys = {0};
    kl_store_list_keys(f->b.known, &keys);
    for (size_t i = 0; i < keys.n; i++) {
      if (kl_hmap_has(&last, keys.v[i])) continue;
      kl_obj *obj = kl_store_get_by_key(f->b.known, keys.v[i]);
      if (obj) push_one(f, KL_DELTA_SYNC, obj);
    }
    kl_strv_free(&keys);
    kl_hmap_free(&last);
    if (f->b.ring.len) wake(f);
  }
  pthread_mutex_unlock(&f->b.mu);
  return 0;
}

int kl_real_fifo_pop(kl_real_fifo *f, double timeout,
                     kl_fifo_process_fn process, void *ud) {
  int rc = enter(f);
  if (rc) return rc;
  kl_deltas d = KL_DELTAS_INIT;
  bool initial;
  rc = kl__fifo_wait_take(&f->b, timeout, &d, &initial);
  if (rc == 0) rc = kl__fifo_process(&f->b, process, &d, initial, ud);
  pthread_mutex_unlock(&f->b.mu);
  kl_deltas_free(&d); /* empty when nothing was taken */
  return rc;
}

int kl_real_fifo_pop_batch(kl_real_fifo *f, double timeout, size_t max,
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
  kl_deltas *v = (kl_deltas *)f->b.bv;
  pthread_mutex_unlock(&f->b.mu);

  fn(v, f->b.binit, f->b.brc, n, ud);

  /* settle; the entries are freed outside the lock, from a copy (another
   * batch may reuse bv as soon as the lock is released) */
  kl_deltas stack[16], *done = n <= 16 ? stack : kl_malloc(n * sizeof *done);
  memcpy(done, v, n * sizeof *done);
  pthread_mutex_lock(&f->b.mu);
  kl__fifo_batch_done(&f->b);
  pthread_mutex_unlock(&f->b.mu);
  for (size_t i = 0; i < n; i++) kl_deltas_free(&done[i]);
  if (done != stack) free(done);
  return (int)n;
}

int kl_real_fifo_pop_deltas(kl_real_fifo *f, double timeout, kl_deltas *out,
                            bool *initial) {
  int rc = enter(f);
  if (rc) return rc;
  bool init = false;
  rc = kl__fifo_wait_take(&f->b, timeout, out, &init);
  pthread_mutex_unlock(&f->b.mu);
  if (initial) *initial = init;
  return rc;
}

bool kl_real_fifo_has_synced(kl_real_fifo *f) {
  return kl__fifo_has_synced(&f->b);
}

void kl_real_fifo_close(kl_real_fifo *f) { kl__fifo_close(&f->b); }

bool kl_real_fifo_is_closed(kl_real_fifo *f) {
  return kl__fifo_is_closed(&f->b);
}

size_t kl_real_fifo_len(kl_real_fifo *f) { return kl__fifo_len(&f->b); }

void kl_real_fifo_list_keys(kl_real_fifo *f, kl_strv *out) {
  if (enter(f)) return;
  kl_hmap last;
  kl_hmap_init(&last, KL_HMAP_BORROW_KEYS);
  scan_queue(f, &last, out);
  kl_hmap_free(&last);
  pthread_mutex_unlock(&f->b.mu);
}
