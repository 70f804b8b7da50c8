/* workqueue.c: see workqueue.h.
 *
 * State, under one mutex:
 *   ready     FIFO ring of items to hand out; every one is in `dirty`
 *   dirty     item -> wq_item: every item that needs processing
 *   processing item -> start time: items handed out, not done
 *   waiting   a min-heap of (ready_at, item) for delayed adds, with an index
 *             item -> heap slot for dedupe (earliest time wins)
 *   failures  item -> count, for the per-item backoff
 * Delayed items are promoted by whichever getter wakes first (a getter
 * sleeps until the earliest ready_at), so no timer thread is needed. */
#include "workqueue.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmap.h"
#include "kl.h"

typedef struct wait_ent {
  double at;
  char *item;
} wait_ent;

struct kl_wq {
  pthread_mutex_t mu;
  pthread_cond_t cond;      /* getters: something ready, or shutdown */
  pthread_cond_t idle_cond; /* shutdown_drain: processing emptied */
  kl_wq_opts o;

  char **ring; /* FIFO of ready items (owned strings) */
  size_t head, count, cap;

  kl_hmap dirty;      /* item -> (void *)(uintptr_t) enqueue time in us */
  kl_hmap processing; /* item -> start time (double boxed) */
  kl_hmap waiting_ix; /* item -> heap index + 1 */
  wait_ent *heap;
  size_t nheap, capheap;
  kl_hmap failures; /* item -> count */

  double tokens, last_refill;
  bool shutting_down;
  kl_wq_stats st;
};

static double now(void) { return kl_now(); }

/* Times are stored in map values as microseconds since an epoch of our own
 * (kl_now), boxed in the pointer itself. */
static void *box_time(double t) { return (void *)(uintptr_t)(t * 1e6 + 1); }
static double unbox_time(void *p) { return ((double)(uintptr_t)p - 1) / 1e6; }

kl_wq *kl_wq_new(const kl_wq_opts *opts) {
  kl_wq *q = kl_calloc(1, sizeof *q);
  pthread_mutex_init(&q->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&q->cond, &ca);
  pthread_cond_init(&q->idle_cond, &ca);
  pthread_condattr_destroy(&ca);
  q->o.base_delay = 0.005;
  q->o.max_delay = 1000;
  q->o.qps = 10;
  q->o.burst = 100;
  if (opts) {
    if (opts->base_delay > 0) q->o.base_delay = opts->base_delay;
    if (opts->max_delay > 0) q->o.max_delay = opts->max_delay;
    if (opts->qps > 0) q->o.qps = opts->qps;
    if (opts->burst > 0) q->o.burst = opts->burst;
    q->o.on_get = opts->on_get;
    q->o.on_get_ud = opts->on_get_ud;
  }
  q->tokens = q->o.burst;
  q->last_refill = now();
  kl_hmap_init(&q->dirty, KL_HMAP_OWN_KEYS);
  kl_hmap_init(&q->processing, KL_HMAP_OWN_KEYS);
  kl_hmap_init(&q->waiting_ix, KL_HMAP_BORROW_KEYS); /* keys: heap items */
  kl_hmap_init(&q->failures, KL_HMAP_OWN_KEYS);
  return q;
}

void kl_wq_free(kl_wq *q) {
  if (!q) return;
  for (size_t i = 0; i < q->count; i++) free(q->ring[(q->head + i) % q->cap]);
  free(q->ring);
  for (size_t i = 0; i < q->nheap; i++) free(q->heap[i].item);
  free(q->heap);
  kl_hmap_free(&q->dirty);
  kl_hmap_free(&q->processing);
  kl_hmap_free(&q->waiting_ix);
  kl_hmap_free(&q->failures);
  pthread_cond_destroy(&q->cond);
  pthread_cond_destroy(&q->idle_cond);
  pthread_mutex_destroy(&q->mu);
  free(q);
}

static void ring_push(kl_wq *q, char *item) {
  if (q->count == q->cap) {
    size_t ncap = q->cap ? q->cap * 2 : 16;
    char **nr = kl_malloc(ncap * sizeof *nr);
    for (size_t i = 0; i < q->count; i++) nr[i] = q->ring[(q->head + i) % q->cap];
    free(q->ring);
    q->ring = nr;
    q->head = 0;
    q->cap = ncap;
  }
  q->ring[(q->head + q->count) % q->cap] = item;
  q->count++;
}

static char *ring_pop(kl_wq *q) {
  char *item = q->ring[q->head];
  q->head = (q->head + 1) % q->cap;
  q->count--;
  return item;
}

/* Adds under the lock. */
static void add_locked(kl_wq *q, const char *item) {
  if (q->shutting_down) return;
  if (kl_hmap_has(&q->dirty, item)) return;
  kl_hmap_put(&q->dirty, item, box_time(now()));
  q->st.adds_total++;
  if (kl_hmap_has(&q->processing, item)) return; /* re-queued on done */
  ring_push(q, kl_strdup(item));
  pthread_cond_signal(&q->cond);
}

void kl_wq_add(kl_wq *q, const char *item) {
  pthread_mutex_lock(&q->mu);
  add_locked(q, item);
  pthread_mutex_unlock(&q->mu);
}

/* --- the delay heap --- */

static void heap_set(kl_wq *q, size_t i, wait_ent e) {
  q->heap[i] = e;
  kl_hmap_put(&q->waiting_ix, e.item, (void *)(uintptr_t)(i + 1));
}

static void heap_up(kl_wq *q, size_t i) {
  wait_ent e = q->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (q->heap[p].at <= e.at) break;
    heap_set(q, i, q->heap[p]);
    i = p;
  }
  heap_set(q, i, e);
}

static void heap_down(kl_wq *q, size_t i) {
  wait_ent e = q->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    double mat = e.at;
    if (l < q->nheap && q->heap[l].at < mat) m = l, mat = q->heap[l].at;
    if (r < q->nheap && q->heap[r].at < mat) m = r;
    if (m == i) break;
    heap_set(q, i, q->heap[m]);
    i = m;
  }
  heap_set(q, i, e);
}

static wait_ent heap_pop(kl_wq *q) {
  wait_ent top = q->heap[0];
  kl_hmap_del(&q->waiting_ix, top.item, NULL);
  q->nheap--;
  if (q->nheap) {
    q->heap[0] = q->heap[q->nheap];
    heap_down(q, 0);
  }
  return top;
}

/* Moves due delayed items into the ready queue. */
static void promote(kl_wq *q) {
  double t = now();
  while (q->nheap && q->heap[0].at <= t) {
    wait_ent e = heap_pop(q);
    add_locked(q, e.item);
    free(e.item);
  }
}

void kl_wq_add_after(kl_wq *q, const char *item, double delay) {
  pthread_mutex_lock(&q->mu);
  if (q->shutting_down) goto out;
  if (delay <= 0) {
    add_locked(q, item);
    goto out;
  }
  double at = now() + delay;
  uintptr_t ix = (uintptr_t)kl_hmap_get(&q->waiting_ix, item);
  if (ix) {
    if (at < q->heap[ix - 1].at) {
      q->heap[ix - 1].at = at;
      heap_up(q, ix - 1);
    }
  } else {
    if (q->nheap == q->capheap) {
      q->capheap = q->capheap ? q->capheap * 2 : 16;
      q->heap = kl_realloc(q->heap, q->capheap * sizeof *q->heap);
    }
    wait_ent e = {at, kl_strdup(item)};
    q->heap[q->nheap++] = e;
    heap_up(q, q->nheap - 1);
  }
  /* a sleeping getter may need to wake earlier */
  pthread_cond_broadcast(&q->cond);
out:
  pthread_mutex_unlock(&q->mu);
}

/* --- rate limiting: max(per-item exponential, token bucket) --- */

static double when_locked(kl_wq *q, const char *item) {
  uintptr_t n = (uintptr_t)kl_hmap_get(&q->failures, item);
  kl_hmap_put(&q->failures, item, (void *)(n + 1));
  double backoff = q->o.base_delay * pow(2.0, (double)n);
  if (backoff > q->o.max_delay || isinf(backoff)) backoff = q->o.max_delay;
  /* token bucket: a reservation, as golang.org/x/time/rate's Reserve */
  double t = now();
  q->tokens += (t - q->last_refill) * q->o.qps;
  if (q->tokens > q->o.burst) q->tokens = q->o.burst;
  q->last_refill = t;
  q->tokens -= 1;
  double bucket = q->tokens >= 0 ? 0 : -q->tokens / q->o.qps;
  return backoff > bucket ? backoff : bucket;
}

double kl_wq_when(kl_wq *q, const char *item) {
  pthread_mutex_lock(&q->mu);
  double d = when_locked(q, item);
  pthread_mutex_unlock(&q->mu);
  return d;
}

void kl_wq_add_rate_limited(kl_wq *q, const char *item) {
  pthread_mutex_lock(&q->mu);
  double d = when_locked(q, item);
  q->st.retries_total++;
  pthread_mutex_unlock(&q->mu);
  kl_wq_add_after(q, item, d);
}

void kl_wq_forget(kl_wq *q, const char *item) {
  pthread_mutex_lock(&q->mu);
  kl_hmap_del(&q->failures, item, NULL);
  pthread_mutex_unlock(&q->mu);
}

int kl_wq_num_requeues(kl_wq *q, const char *item) {
  pthread_mutex_lock(&q->mu);
  int n = (int)(uintptr_t)kl_hmap_get(&q->failures, item);
  pthread_mutex_unlock(&q->mu);
  return n;
}

/* --- get / done --- */

static void abs_deadline(struct timespec *ts, double secs) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  double whole = floor(secs);
  ts->tv_sec += (time_t)whole;
  ts->tv_nsec += (long)((secs - whole) * 1e9);
  if (ts->tv_nsec >= 1000000000L) ts->tv_sec++, ts->tv_nsec -= 1000000000L;
}

int kl_wq_get(kl_wq *q, double timeout, char **item) {
  *item = NULL;
  double deadline = timeout >= 0 ? now() + timeout : INFINITY;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    promote(q);
    if (q->count > 0) break;
    if (q->shutting_down) {
      pthread_mutex_unlock(&q->mu);
      return KL_ECLOSED;
    }
    double t = now();
    if (t >= deadline) {
      pthread_mutex_unlock(&q->mu);
      return KL_ETIMEDOUT;
    }
    double wake = deadline;
    if (q->nheap && q->heap[0].at < wake) wake = q->heap[0].at;
    if (isinf(wake)) {
      pthread_cond_wait(&q->cond, &q->mu);
    } else {
      struct timespec ts;
      abs_deadline(&ts, wake - t > 0 ? wake - t : 0);
      pthread_cond_timedwait(&q->cond, &q->mu, &ts);
    }
  }
  char *it = ring_pop(q);
  double t = now();
  bool found;
  void *added = kl_hmap_del(&q->dirty, it, &found);
  double waited = found ? t - unbox_time(added) : 0;
  if (found) {
    q->st.queue_seconds_sum += waited;
    q->st.queue_count++;
  }
  kl_hmap_put(&q->processing, it, box_time(t));
  pthread_mutex_unlock(&q->mu);
  if (found && q->o.on_get) q->o.on_get(q->o.on_get_ud, waited);
  *item = it;
  return 0;
}

void kl_wq_done(kl_wq *q, const char *item) {
  pthread_mutex_lock(&q->mu);
  bool found;
  void *started = kl_hmap_del(&q->processing, item, &found);
  if (found) {
    q->st.work_seconds_sum += now() - unbox_time(started);
    q->st.work_count++;
    if (kl_hmap_has(&q->dirty, item)) {
      ring_push(q, kl_strdup(item));
      pthread_cond_signal(&q->cond);
    }
    if (kl_hmap_len(&q->processing) == 0)
      pthread_cond_broadcast(&q->idle_cond);
  }
  pthread_mutex_unlock(&q->mu);
}

void kl_wq_shutdown(kl_wq *q) {
  pthread_mutex_lock(&q->mu);
  q->shutting_down = true;
  pthread_cond_broadcast(&q->cond);
  pthread_mutex_unlock(&q->mu);
}

int kl_wq_shutdown_drain(kl_wq *q, double timeout) {
  kl_wq_shutdown(q);
  int rc = 0;
  pthread_mutex_lock(&q->mu);
  struct timespec ts;
  if (timeout >= 0) abs_deadline(&ts, timeout);
  while (kl_hmap_len(&q->processing) > 0) {
    if (timeout < 0) {
      pthread_cond_wait(&q->idle_cond, &q->mu);
    } else if (pthread_cond_timedwait(&q->idle_cond, &q->mu, &ts) != 0) {
      rc = kl_hmap_len(&q->processing) ? KL_ETIMEDOUT : 0;
      break;
    }
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}

bool kl_wq_shutting_down(kl_wq *q) {
  pthread_mutex_lock(&q->mu);
  bool s = q->shutting_down;
  pthread_mutex_unlock(&q->mu);
  return s;
}

size_t kl_wq_len(kl_wq *q) {
  pthread_mutex_lock(&q->mu);
  promote(q);
  size_t n = q->count;
  pthread_mutex_unlock(&q->mu);
  return n;
}

void kl_wq_get_stats(kl_wq *q, kl_wq_stats *out) {
  pthread_mutex_lock(&q->mu);
  promote(q);
  *out = q->st;
  out->depth = q->count;
  out->waiting = q->nheap;
  out->processing = kl_hmap_len(&q->processing);
  double t = now(), sum = 0, longest = 0;
  const char *k;
  void *v;
  for (size_t i = 0; kl_hmap_next(&q->processing, &i, &k, &v);) {
    double age = t - unbox_time(v);
    sum += age;
    if (age > longest) longest = age;
  }
  out->unfinished_seconds = sum;
  out->longest_running_seconds = longest;
  pthread_mutex_unlock(&q->mu);
}
