/* fifo_internal.h: the machinery DeltaFIFO (delta_fifo.c) and RealFIFO
 * (real_fifo.c) share: refcount, one mutex + condvar, a growable ring of
 * fixed-size entries, the closed/populated/initial-count state behind
 * has_synced, the blocking wait for an entry (or a batch of entries), and
 * the guard that refuses calls from inside the queue's own process
 * function. Internal: included by those two files only.
 * Thread-safety: callers hold mu as each helper says. A batch taken by
 * kl__fifo_take_batch is processed outside mu; while it is (busy), no other
 * pop takes anything, so one key is never processed by two pops at once. */
#ifndef KL_FIFO_INTERNAL_H
#define KL_FIFO_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "delta_fifo.h"
#include "kl.h"
#include "store.h"

/* A ring of entries of esz bytes each, in pop order. */
typedef struct kl__ring {
  char *v;
  size_t esz, head, len, cap;
} kl__ring;

static inline void *kl__ring_at(const kl__ring *r, size_t i) {
  return r->v + ((r->head + i) % r->cap) * r->esz;
}

/* Appends a copy of the entry at e. */
static inline void kl__ring_push(kl__ring *r, const void *e) {
  if (r->len == r->cap) {
    size_t ncap = r->cap ? r->cap * 2 : 16;
    char *nv = kl_malloc(ncap * r->esz);
    for (size_t i = 0; i < r->len; i++)
      memcpy(nv + i * r->esz, kl__ring_at(r, i), r->esz);
    free(r->v);
    r->v = nv;
    r->cap = ncap;
    r->head = 0;
  }
  r->len++;
  memcpy(kl__ring_at(r, r->len - 1), e, r->esz);
}

/* Moves the oldest entry into out; the ring must not be empty. */
static inline void kl__ring_pop(kl__ring *r, void *out) {
  memcpy(out, kl__ring_at(r, 0), r->esz);
  r->head = (r->head + 1) % r->cap;
  r->len--;
}

/* What both queues hold besides their entries. The owner embeds it first. */
typedef struct kl__fifo {
  atomic_int refs;
  pthread_mutex_t mu;
  pthread_cond_t cond; /* an entry was queued, or the queue closed */
  kl__ring ring;
  bool populated;       /* something was queued or replaced */
  size_t initial_count; /* entries of the first Replace not yet popped */
  bool closed;
  /* A batch is being processed outside mu. Pops wait until it is done;
   * producers see its entries through the owner's in-flight view. */
  bool busy;
  size_t inflight_initial; /* entries of the busy batch counted initial */
  /* The busy batch: n entries of esz bytes, their initial flags and result
   * codes. Reused from batch to batch; the popper owns them while busy. */
  char *bv;
  bool *binit;
  int *brc;
  size_t bn, bcap;
  kl_store *known; /* the queue's reference, or NULL */
  const char *module; /* for log lines */
} kl__fifo;

/* The queue whose process function runs on this thread (reentry guard).
 * Each including file gets its own copy. */
static _Thread_local const kl__fifo *kl__fifo_processing;

static inline void kl__fifo_init(kl__fifo *f, size_t esz, kl_store *known,
                                 const char *module) {
  atomic_init(&f->refs, 1);
  pthread_mutex_init(&f->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&f->cond, &ca);
  pthread_condattr_destroy(&ca);
  f->ring.esz = esz;
  f->known = known ? kl_store_ref(known) : NULL;
  f->module = module;
}

/* Drops a reference; true when it was the last (the caller then frees its
 * entries and calls kl__fifo_destroy). */
static inline bool kl__fifo_unref(kl__fifo *f) {
  return f && atomic_fetch_sub(&f->refs, 1) == 1;
}

static inline void kl__fifo_destroy(kl__fifo *f) {
  free(f->ring.v);
  free(f->bv);
  free(f->binit);
  free(f->brc);
  if (f->known) kl_store_unref(f->known);
  pthread_cond_destroy(&f->cond);
  pthread_mutex_destroy(&f->mu);
}

/* Locks f unless the caller is f's own process function: then it logs and
 * returns KL_EINVAL (locking would deadlock). */
static inline int kl__fifo_enter(kl__fifo *f) {
  if (kl__fifo_processing == f) {
    kl_log(KL_LOG_ERROR, f->module,
           "a queue method was called from inside that queue's pop process "
           "function; refused (it would deadlock)");
    return KL_EINVAL;
  }
  pthread_mutex_lock(&f->mu);
  return 0;
}

/* Runs process (may be NULL: 0) on a taken entry with mu held, marking this
 * thread as inside f's process function. */
static inline int kl__fifo_process(kl__fifo *f, kl_fifo_process_fn process,
                                   kl_deltas *d, bool initial, void *ud) {
  if (!process) return 0;
  const kl__fifo *saved = kl__fifo_processing;
  kl__fifo_processing = f;
  int rc = process(d, initial, ud);
  kl__fifo_processing = saved;
  return rc;
}

static inline void kl__deadline_after(struct timespec *ts, double timeout) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  double whole = (double)(time_t)timeout;
  ts->tv_sec += (time_t)timeout;
  ts->tv_nsec += (long)((timeout - whole) * 1e9);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* With mu held, waits up to timeout seconds (< 0: forever) until an entry
 * is queued and no batch is busy. Returns 0, KL_ECLOSED (closed and empty)
 * or KL_ETIMEDOUT. */
static inline int kl__fifo_wait(kl__fifo *f, double timeout) {
  struct timespec ts;
  if (timeout >= 0) kl__deadline_after(&ts, timeout);
  while (f->ring.len == 0 || f->busy) {
    if (f->closed && f->ring.len == 0) return KL_ECLOSED;
    if (timeout < 0) {
      pthread_cond_wait(&f->cond, &f->mu);
    } else if (pthread_cond_timedwait(&f->cond, &f->mu, &ts) == ETIMEDOUT) {
      if (f->ring.len == 0 || f->busy)
        return f->closed && f->ring.len == 0 ? KL_ECLOSED : KL_ETIMEDOUT;
    }
  }
  return 0;
}

/* With mu held, waits up to timeout seconds (< 0: forever) for an entry and
 * takes the oldest into out, setting *initial (part of the first Replace,
 * or nothing popped since). Returns 0, KL_ECLOSED (closed and empty) or
 * KL_ETIMEDOUT. */
static inline int kl__fifo_wait_take(kl__fifo *f, double timeout, void *out,
                                     bool *initial) {
  int rc = kl__fifo_wait(f, timeout);
  if (rc) return rc;
  *initial = !(f->populated && f->initial_count == 0);
  kl__ring_pop(&f->ring, out);
  if (f->initial_count > 0) f->initial_count--;
  return 0;
}

/* With mu held, waits like kl__fifo_wait_take, then takes up to max (0: no
 * limit) of the oldest entries into f->bv[0..f->bn), their initial flags
 * into f->binit and zeroes f->brc, and marks f busy. The entries still
 * counted by has_synced stay counted (inflight_initial) until
 * kl__fifo_batch_done. Returns 0, KL_ECLOSED or KL_ETIMEDOUT. */
static inline int kl__fifo_take_batch(kl__fifo *f, double timeout,
                                      size_t max) {
  int rc = kl__fifo_wait(f, timeout);
  if (rc) return rc;
  size_t n = f->ring.len;
  if (max && n > max) n = max;
  if (n > f->bcap) {
    size_t cap = f->bcap ? f->bcap : 16;
    while (cap < n) cap *= 2;
    free(f->bv);
    free(f->binit);
    free(f->brc);
    f->bv = kl_malloc(cap * f->ring.esz);
    f->binit = kl_malloc(cap * sizeof *f->binit);
    f->brc = kl_malloc(cap * sizeof *f->brc);
    f->bcap = cap;
  }
  for (size_t i = 0; i < n; i++) {
    f->binit[i] = !(f->populated && f->initial_count == 0);
    kl__ring_pop(&f->ring, f->bv + i * f->ring.esz);
    f->brc[i] = 0;
    if (f->initial_count > 0) {
      f->initial_count--;
      f->inflight_initial++;
    }
  }
  f->bn = n;
  f->busy = true;
  return 0;
}

/* With mu held: the busy batch is finished (its entries were applied or
 * re-queued); has_synced may now count them, and waiting pops go on. */
static inline void kl__fifo_batch_done(kl__fifo *f) {
  f->busy = false;
  f->bn = 0;
  f->inflight_initial = 0;
  pthread_cond_broadcast(&f->cond);
}

static inline bool kl__fifo_has_synced(kl__fifo *f) {
  if (kl__fifo_enter(f)) return false;
  bool r = f->populated && f->initial_count == 0 && f->inflight_initial == 0;
  pthread_mutex_unlock(&f->mu);
  return r;
}

static inline void kl__fifo_close(kl__fifo *f) {
  if (kl__fifo_enter(f)) return;
  f->closed = true;
  pthread_cond_broadcast(&f->cond);
  pthread_mutex_unlock(&f->mu);
}

static inline bool kl__fifo_is_closed(kl__fifo *f) {
  if (kl__fifo_enter(f)) return false;
  bool r = f->closed;
  pthread_mutex_unlock(&f->mu);
  return r;
}

static inline size_t kl__fifo_len(kl__fifo *f) {
  if (kl__fifo_enter(f)) return 0;
  size_t n = f->ring.len;
  pthread_mutex_unlock(&f->mu);
  return n;
}

#endif
