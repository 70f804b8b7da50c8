/* real_fifo.c: client-go's RealFIFO, in-order, with atomic replace batches
 * (see real_fifo.h). A ring of entries, each a kl_deltas. */
#include "real_fifo.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmap.h"
#include "kl.h"

struct kl_real_fifo {
  atomic_int refs;
  pthread_mutex_t mu;
  pthread_cond_t cond;
  kl_deltas *ring;
  size_t head, len, cap;
  bool populated;
  size_t initial_count;
  bool closed;
  kl_store *known;
};

static _Thread_local const kl_real_fifo *tl_processing;

kl_real_fifo *kl_real_fifo_new(kl_store *known) {
  kl_real_fifo *f = kl_calloc(1, sizeof *f);
  atomic_init(&f->refs, 1);
  pthread_mutex_init(&f->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&f->cond, &ca);
  pthread_condattr_destroy(&ca);
  f->known = known ? kl_store_ref(known) : NULL;
  return f;
}

kl_real_fifo *kl_real_fifo_ref(kl_real_fifo *f) {
  if (f) atomic_fetch_add(&f->refs, 1);
  return f;
}

#define AT(f, i) (&(f)->ring[((f)->head + (i)) % (f)->cap])

void kl_real_fifo_unref(kl_real_fifo *f) {
  if (!f || atomic_fetch_sub(&f->refs, 1) != 1) return;
  for (size_t i = 0; i < f->len; i++) kl_deltas_free(AT(f, i));
  free(f->ring);
  if (f->known) kl_store_unref(f->known);
  pthread_cond_destroy(&f->cond);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

/* Appends an entry, taking over d (left empty). */
static void push_entry(kl_real_fifo *f, kl_deltas *d) {
  if (f->len == f->cap) {
    size_t ncap = f->cap ? f->cap * 2 : 16;
    kl_deltas *nr = kl_malloc(ncap * sizeof *nr);
    for (size_t i = 0; i < f->len; i++) nr[i] = *AT(f, i);
    free(f->ring);
    f->ring = nr;
    f->cap = ncap;
    f->head = 0;
  }
  *AT(f, f->len) = *d;
  f->len++;
  memset(d, 0, sizeof *d);
  pthread_cond_broadcast(&f->cond);
}

static void push_one(kl_real_fifo *f, kl_delta_type type, kl_obj *obj) {
  kl_deltas d = KL_DELTAS_INIT;
  kl_deltas_push(&d, type, obj, false, NULL);
  push_entry(f, &d);
}

static int enter(kl_real_fifo *f) {
  if (tl_processing == f) {
    kl_log(KL_LOG_ERROR, "real_fifo",
           "a queue method was called from inside that queue's pop process "
           "function; refused (it would deadlock)");
    return KL_EINVAL;
  }
  pthread_mutex_lock(&f->mu);
  return 0;
}

static int add_delta(kl_real_fifo *f, kl_delta_type type, kl_obj *obj) {
  if (!obj) return KL_EINVAL;
  int rc = enter(f);
  if (rc) return rc;
  f->populated = true;
  push_one(f, type, kl_obj_ref(obj));
  pthread_mutex_unlock(&f->mu);
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

/* Maps every queued key to its newest queued delta (borrowed) and appends
 * the keys to order (if not NULL) in order of first appearance. */
static void scan_queue(kl_real_fifo *f, kl_hmap *last, kl_strv *order) {
  for (size_t i = 0; i < f->len; i++) {
    kl_deltas *e = AT(f, i);
    for (size_t j = 0; j < e->n; j++) {
      const char *k = kl_delta_key(&e->v[j]);
      if (kl_hmap_put(last, k, &e->v[j]) == NULL && order) {
        kl_strv_push(order, k);
      }
    }
  }
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
  if (f->known) {
    kl_strv known = {0};
    kl_store_list_keys(f->known, &known);
    for (size_t i = 0; i < known.n; i++) {
      const char *k = known.v[i];
      if (kl_hmap_has(&keys, k) || kl_hmap_has(&last, k)) continue;
      kl_obj *obj = kl_store_get_by_key(f->known, k);
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
  if (!f->populated) {
    f->populated = true;
    f->initial_count = f->len;
  }
  pthread_mutex_unlock(&f->mu);
  return 0;
}

int kl_real_fifo_resync(kl_real_fifo *f) {
  int rc = enter(f);
  if (rc) return rc;
  if (f->known) {
    kl_hmap last;
    kl_hmap_init(&last, KL_HMAP_BORROW_KEYS);
    scan_queue(f, &last, NULL);
    kl_strv keys = {0};
    kl_store_list_keys(f->known, &keys);
    for (size_t i = 0; i < keys.n; i++) {
      if (kl_hmap_has(&last, keys.v[i])) continue;
      kl_obj *obj = kl_store_get_by_key(f->known, keys.v[i]);
      if (obj) push_one(f, KL_DELTA_SYNC, obj);
    }
    kl_strv_free(&keys);
    kl_hmap_free(&last);
  }
  pthread_mutex_unlock(&f->mu);
  return 0;
}

static void deadline_after(struct timespec *ts, double timeout) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  double whole = (double)(time_t)timeout;
  ts->tv_sec += (time_t)timeout;
  ts->tv_nsec += (long)((timeout - whole) * 1e9);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static int wait_and_take(kl_real_fifo *f, double timeout, kl_deltas *out,
                         bool *initial) {
  struct timespec ts;
  if (timeout >= 0) deadline_after(&ts, timeout);
  while (f->len == 0) {
    if (f->closed) return KL_ECLOSED;
    if (timeout < 0) {
      pthread_cond_wait(&f->cond, &f->mu);
    } else if (pthread_cond_timedwait(&f->cond, &f->mu, &ts) == ETIMEDOUT) {
      if (f->len == 0) return f->closed ? KL_ECLOSED : KL_ETIMEDOUT;
    }
  }
  *initial = !(f->populated && f->initial_count == 0);
  *out = *AT(f, 0);
  f->head = (f->head + 1) % f->cap;
  f->len--;
  if (f->initial_count > 0) f->initial_count--;
  return 0;
}

int kl_real_fifo_pop(kl_real_fifo *f, double timeout,
                     kl_fifo_process_fn process, void *ud) {
  int rc = enter(f);
  if (rc) return rc;
  kl_deltas d = KL_DELTAS_INIT;
  bool initial;
  rc = wait_and_take(f, timeout, &d, &initial);
  if (rc == 0 && process) {
    const kl_real_fifo *saved = tl_processing;
    tl_processing = f;
    rc = process(&d, initial, ud);
    tl_processing = saved;
  }
  pthread_mutex_unlock(&f->mu);
  kl_deltas_free(&d); /* empty when nothing was taken */
  return rc;
}

int kl_real_fifo_pop_deltas(kl_real_fifo *f, double timeout, kl_deltas *out,
                            bool *initial) {
  int rc = enter(f);
  if (rc) return rc;
  bool init = false;
  rc = wait_and_take(f, timeout, out, &init);
  pthread_mutex_unlock(&f->mu);
  if (initial) *initial = init;
  return rc;
}

bool kl_real_fifo_has_synced(kl_real_fifo *f) {
  if (enter(f)) return false;
  bool r = f->populated && f->initial_count == 0;
  pthread_mutex_unlock(&f->mu);
  return r;
}

void kl_real_fifo_close(kl_real_fifo *f) {
  if (enter(f)) return;
  f->closed = true;
  pthread_cond_broadcast(&f->cond);
  pthread_mutex_unlock(&f->mu);
}

bool kl_real_fifo_is_closed(kl_real_fifo *f) {
  if (enter(f)) return false;
  bool r = f->closed;
  pthread_mutex_unlock(&f->mu);
  return r;
}

size_t kl_real_fifo_len(kl_real_fifo *f) {
  if (enter(f)) return 0;
  size_t n = f->len;
  pthread_mutex_unlock(&f->mu);
  return n;
}

void kl_real_fifo_list_keys(kl_real_fifo *f, kl_strv *out) {
  if (enter(f)) return;
  kl_hmap last;
  kl_hmap_init(&last, KL_HMAP_BORROW_KEYS);
  scan_queue(f, &last, out);
  kl_hmap_free(&last);
  pthread_mutex_unlock(&f->mu);
}
