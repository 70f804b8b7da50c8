/* informer.c: the shared index informer (see informer.h and
 * docs/informers.md).
 *
 * Threads: the reflector's own; the controller thread (pop loop + resync
 * timer); one dispatcher per handler with a function. The pop loop takes
 * whatever is queued as one batch (pop_batch) and applies it WITHOUT the
 * queue's lock, so the reflector keeps queueing meanwhile; the queue keeps
 * the batch visible to its delete/replace/resync until it is settled (see
 * delta_fifo.c). Lock order: inf->mu -> store locks, and inf->mu -> handler
 * mu; the queue lock is never held while inf->mu is taken by this file.
 * inf->mu is client-go's blockDeltas: held while deltas are applied and
 * distributed, and while a late handler gets its replay, so the replay and
 * the live notifications never overlap. */
#include "informer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmap.h"
#include "selector.h"

#define MOD "informer"

/* ---- notifications --------------------------------------------------------- */

void kl_notification_clear(kl_notification *n) {
  if (!n) return;
  kl_obj_unref(n->obj);
  kl_obj_unref(n->old);
  free(n->key);
  memset(n, 0, sizeof *n);
}

const char *kl_notify_type_name(kl_notify_type t) {
  switch (t) {
  case KL_NOTIFY_ADD: return "add";
  case KL_NOTIFY_UPDATE: return "update";
  case KL_NOTIFY_DELETE: return "delete";
  }
  return "?";
}

static void notif_copy(kl_notification *dst, const kl_notification *src) {
  *dst = *src;
  kl_obj_ref(dst->obj);
  kl_obj_ref(dst->old);
  dst->key = kl_strdup(src->key);
}

/* ---- handlers (client-go's processorListener) ------------------------------ */

struct kl_handler {
  kl_informer *inf;
  kl_handler_fn fn;
  void *ud;
  double resync_s, next_resync;
  bool syncing; /* due for the current resync round (under inf->mu) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  kl_notification *q; /* ring buffer, grows without bound */
  size_t head, len, cap;
  bool closed;
  uint64_t delivered;
  pthread_t th;
  bool has_thread;
};

static void h_push(kl_handler *h, const kl_notification *n) {
  pthread_mutex_lock(&h->mu);
  if (!h->closed) {
    if (h->len == h->cap) {
      size_t nc = h->cap ? h->cap * 2 : 64;
      kl_notification *q = kl_malloc(nc * sizeof *q);
      for (size_t i = 0; i < h->len; i++) q[i] = h->q[(h->head + i) % h->cap];
      free(h->q);
      h->q = q;
      h->cap = nc;
      h->head = 0;
    }
    notif_copy(&h->q[(h->head + h->len) % h->cap], n);
    h->len++;
    pthread_cond_signal(&h->cv);
  }
  pthread_mutex_unlock(&h->mu);
}

/* Takes the oldest notification with h->mu held. */
static void h_take(kl_handler *h, kl_notification *out) {
  *out = h->q[h->head];
  h->head = (h->head + 1) % h->cap;
  h->len--;
}

static void abs_deadline(struct timespec *ts, double s) {
  clock_gettime(CLOCK_REALTIME, ts);
  double end = (double)ts->tv_sec + ts->tv_nsec / 1e9 + s;
  ts->tv_sec = (time_t)end;
  ts->tv_nsec = (long)((end - (double)ts->tv_sec) * 1e9);
  if (ts->tv_nsec >= 1000000000L) ts->tv_sec++, ts->tv_nsec -= 1000000000L;
  if (ts->tv_nsec < 0) ts->tv_nsec = 0;
}

static void *h_run(void *arg) {
  kl_handler *h = arg;
  for (;;) {
    kl_notification n;
    pthread_mutex_lock(&h->mu);
    while (!h->len && !h->closed) pthread_cond_wait(&h->cv, &h->mu);
    if (h->closed) {
      pthread_mutex_unlock(&h->mu);
      break;
    }
    h_take(h, &n);
    pthread_mutex_unlock(&h->mu);
    h->fn(&n, h->ud);
    kl_notification_clear(&n);
    pthread_mutex_lock(&h->mu);
    h->delivered++;
    pthread_mutex_unlock(&h->mu);
  }
  return NULL;
}

int kl_handler_next(kl_handler *h, double timeout, kl_notification *out) {
  memset(out, 0, sizeof *out);
  if (h->fn) return KL_EINVAL;
  struct timespec ts;
  if (timeout >= 0) abs_deadline(&ts, timeout);
  pthread_mutex_lock(&h->mu);
  while (!h->len && !h->closed) {
    if (timeout < 0) {
      pthread_cond_wait(&h->cv, &h->mu);
    } else if (pthread_cond_timedwait(&h->cv, &h->mu, &ts) != 0) {
      break;
    }
  }
  int rc = 0;
  if (h->len) {
    h_take(h, out);
    h->delivered++;
    rc = 1;
  } else if (h->closed) {
    rc = KL_ECLOSED;
  }
  pthread_mutex_unlock(&h->mu);
  return rc;
}

size_t kl_handler_pending(kl_handler *h) {
  pthread_mutex_lock(&h->mu);
  size_t n = h->len;
  pthread_mutex_unlock(&h->mu);
  return n;
}

uint64_t kl_handler_delivered(kl_handler *h) {
  pthread_mutex_lock(&h->mu);
  uint64_t n = h->delivered;
  pthread_mutex_unlock(&h->mu);
  return n;
}

static void h_close(kl_handler *h) {
  pthread_mutex_lock(&h->mu);
  h->closed = true;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
  if (h->has_thread) {
    pthread_join(h->th, NULL);
    h->has_thread = false;
  }
}

static void h_free(kl_handler *h) {
  h_close(h);
  while (h->len) {
    kl_notification n;
    h_take(h, &n);
    kl_notification_clear(&n);
  }
  free(h->q);
  pthread_mutex_destroy(&h->mu);
  pthread_cond_destroy(&h->cv);
  free(h);
}

/* ---- informer -------------------------------------------------------------- */

struct kl_informer {
  atomic_int refs;
  kl_store *store;
  kl_delta_fifo *dq; /* exactly one of dq, rq */
  kl_real_fifo *rq;
  kl_reflector *refl;
  char *name;

  pthread_mutex_t mu; /* blockDeltas; handlers; stats */
  /* wait_for_sync sleeps here; signalled after every pop batch (once the
   * queue has settled it, so has_synced counts it). A lock of its own:
   * has_synced takes the queue lock, never taken while holding mu */
  pthread_mutex_t smu;
  pthread_cond_t scv;
  kl_handler **hs;
  size_t nh, caph;
  pthread_t ctl;
  bool started, stopped;
  atomic_int stop;
  uint64_t adds, updates, deletes, resyncs, tombstones;
};

static void distribute(kl_informer *inf, const kl_notification *n) {
  for (size_t i = 0; i < inf->nh; i++) {
    kl_handler *h = inf->hs[i];
    if (n->resync && !h->syncing) continue;
    h_push(h, n);
  }
  switch (n->type) {
  case KL_NOTIFY_ADD: inf->adds++; break;
  case KL_NOTIFY_UPDATE:
    inf->updates++;
    if (n->resync) inf->resyncs++;
    break;
  case KL_NOTIFY_DELETE:
    inf->deletes++;
    if (n->tombstone) inf->tombstones++;
    break;
  }
}

static void notify_upsert(kl_informer *inf, kl_obj *old, kl_obj *obj,
                          bool initial) {
  kl_notification n = {0};
  n.obj = obj;
  n.key = (char *)kl_obj_key(obj);
  if (old) {
    n.type = KL_NOTIFY_UPDATE;
    n.old = old;
    n.resync = !strcmp(kl_obj_resource_version(old),
                       kl_obj_resource_version(obj));
  } else {
    n.type = KL_NOTIFY_ADD;
    n.initial = initial;
  }
  distribute(inf, &n); /* h_push copies */
}

static void notify_delete(kl_informer *inf, kl_obj *last, const char *key,
                          bool tombstone) {
  kl_notification n = {0};
  n.type = KL_NOTIFY_DELETE;
  n.obj = last;
  n.key = (char *)key;
  n.tombstone = tombstone;
  distribute(inf, &n);
}

/* RealFIFO's replace batch: one store transaction; notifications computed
 * against the store's contents before it. */
static int apply_batch(kl_informer *inf, const kl_deltas *d, bool initial) {
  kl_objv old = {0};
  kl_store_list(inf->store, &old);
  kl_hmap prev;
  kl_hmap_init(&prev, false);
  for (size_t i = 0; i < old.n; i++)
    kl_hmap_put(&prev, kl_obj_key(old.v[i]), old.v[i]);
  kl_obj **objs = kl_malloc((d->n ? d->n : 1) * sizeof *objs);
  size_t n = 0;
  for (size_t i = 0; i < d->n; i++)
    if (d->v[i].type != KL_DELTA_DELETED && d->v[i].obj)
      objs[n++] = d->v[i].obj;
  int rc = kl_store_replace(inf->store, objs, n, d->resource_version);
  if (rc == 0) {
    for (size_t i = 0; i < n; i++) {
      kl_obj *was = kl_hmap_del(&prev, kl_obj_key(objs[i]), NULL);
      notify_upsert(inf, was, objs[i], initial);
    }
    size_t it = 0;
    const char *k;
    void *v;
    while (kl_hmap_next(&prev, &it, &k, &v)) notify_delete(inf, v, k, true);
  } else {
    kl_log(KL_LOG_WARN, MOD, "%s: replacing the store failed: %s", inf->name,
           kl_strerror(rc));
  }
  free(objs);
  kl_hmap_free(&prev);
  kl_objv_free(&old);
  return rc;
}

/* Store writes of one batch, applied under one store write-lock hold per
 * KL__CHUNK deltas and notified in order right after. */
#define KL__CHUNK 256

typedef struct pending {
  kl_store_op op[KL__CHUNK];
  const kl_delta *d[KL__CHUNK];
  bool initial[KL__CHUNK];
  size_t n;
} pending;

/* client-go's processDeltas for the deltas gathered in p: Deleted removes
 * the key and notifies with the delta's object (or the cached one when a
 * tombstone carries none); anything else is an upsert notified as an add
 * or an update of the cached state. */
static void flush(kl_informer *inf, pending *p) {
  if (!p->n) return;
  kl_store_apply(inf->store, p->op, p->n);
  for (size_t i = 0; i < p->n; i++) {
    kl_store_op *op = &p->op[i];
    const kl_delta *x = p->d[i];
    if (x->type == KL_DELTA_DELETED) {
      notify_delete(inf, x->obj ? x->obj : op->old, op->key, x->tombstone);
    } else if (op->rc) {
      kl_log(KL_LOG_WARN, MOD, "%s: %s: store rejected it: %s", inf->name,
             kl_obj_key(x->obj), kl_strerror(op->rc));
    } else {
      notify_upsert(inf, op->old, x->obj, p->initial[i]);
    }
    kl_obj_unref(op->old);
  }
  p->n = 0;
}

/* The pop loop's batch function: every popped item in pop order, each
 * item's deltas oldest first, under one hold of blockDeltas. */
static void process_batch(const kl_deltas *items, const bool *initial,
                          int *rcs, size_t n, void *ud) {
  kl_informer *inf = ud;
  (void)rcs; /* every item is applied: nothing is retried */
  pending *p = kl_malloc(sizeof *p);
  p->n = 0;
  pthread_mutex_lock(&inf->mu);
  for (size_t i = 0; i < n; i++) {
    const kl_deltas *d = &items[i];
    if (d->replace_batch) {
      flush(inf, p);
      apply_batch(inf, d, initial[i]);
      continue;
    }
    for (size_t j = 0; j < d->n; j++) {
      const kl_delta *x = &d->v[j];
      if (x->type != KL_DELTA_DELETED && !x->obj) continue;
      if (p->n == KL__CHUNK) flush(inf, p);
      kl_store_op *op = &p->op[p->n];
      op->obj = x->type == KL_DELTA_DELETED ? NULL : x->obj;
      op->key = kl_delta_key(x);
      p->d[p->n] = x;
      p->initial[p->n++] = initial[i];
    }
  }
  flush(inf, p);
  pthread_mutex_unlock(&inf->mu);
  free(p);
}

/* client-go's processor.shouldResync, run at every resync check: marks the
 * handlers due now (they stay marked until the next check, so the whole
 * round of Sync deltas reaches them) and returns whether any is. *period
 * gets the smallest handler period (client-go's resyncCheckPeriod). */
static bool should_resync(kl_informer *inf, double *period) {
  double now = kl_now();
  bool any = false;
  *period = 0;
  pthread_mutex_lock(&inf->mu);
  for (size_t i = 0; i < inf->nh; i++) {
    kl_handler *h = inf->hs[i];
    h->syncing = false;
    if (h->resync_s > 0 && (*period == 0 || h->resync_s < *period))
      *period = h->resync_s;
    if (h->resync_s > 0 && now >= h->next_resync) {
      h->syncing = true;
      h->next_resync = now + h->resync_s;
      any = true;
    }
  }
  pthread_mutex_unlock(&inf->mu);
  return any;
}

/* Items per pop batch: bounds how long a batch's keys stay in flight and
 * how late has_synced's waiters hear of the last initial item. */
#define KL__BATCH 1024

static void *ctl_run(void *arg) {
  kl_informer *inf = arg;
  double next_check = 0;
  while (!atomic_load(&inf->stop)) {
    int rc = inf->dq ? kl_delta_fifo_pop_batch(inf->dq, 0.05, KL__BATCH,
                                               process_batch, inf)
                     : kl_real_fifo_pop_batch(inf->rq, 0.05, KL__BATCH,
                                              process_batch, inf);
    if (rc == KL_ECLOSED) break;
    if (rc > 0) { /* has_synced may have turned true: once per batch */
      pthread_mutex_lock(&inf->smu);
      pthread_cond_broadcast(&inf->scv);
      pthread_mutex_unlock(&inf->smu);
    }
    double now = kl_now();
    if (now < next_check) continue;
    double period;
    bool due = should_resync(inf, &period);
    /* handlers added later are looked at within 50 ms */
    next_check = now + (period > 0 && period < 0.05 ? period : 0.05);
    if (due) {
      next_check = now + period;
      if (inf->dq) kl_delta_fifo_resync(inf->dq);
      else kl_real_fifo_resync(inf->rq);
    }
  }
  return NULL;
}

int kl_informer_new(const kl_informer_opts *opts, kl_informer **out,
                    char **err) {
  *out = NULL;
  kl_informer *inf = kl_calloc(1, sizeof *inf);
  atomic_store(&inf->refs, 1);
  inf->store = kl_store_new();
  kl_reflector_sink sink;
  if (opts->in_order) {
    inf->rq = kl_real_fifo_new(inf->store);
    sink = kl_reflector_sink_real_fifo(inf->rq);
  } else {
    kl_delta_fifo_opts fo = {.known = inf->store, .emit_replaced = true};
    inf->dq = kl_delta_fifo_new(&fo);
    sink = kl_reflector_sink_delta_fifo(inf->dq);
  }
  int rc = kl_reflector_new(&opts->reflector, sink, &inf->refl, err);
  if (rc) {
    kl_delta_fifo_unref(inf->dq);
    kl_real_fifo_unref(inf->rq);
    kl_store_unref(inf->store);
    free(inf);
    return rc;
  }
  const char *nm = opts->reflector.name ? opts->reflector.name
                                        : opts->reflector.path;
  inf->name = kl_strdup(nm);
  pthread_mutex_init(&inf->mu, NULL);
  pthread_mutex_init(&inf->smu, NULL);
  pthread_cond_init(&inf->scv, NULL);
  *out = inf;
  return 0;
}

kl_informer *kl_informer_ref(kl_informer *inf) {
  if (inf) atomic_fetch_add(&inf->refs, 1);
  return inf;
}

int kl_informer_start(kl_informer *inf) {
  pthread_mutex_lock(&inf->mu);
  if (inf->stopped) {
    pthread_mutex_unlock(&inf->mu);
    return KL_ECLOSED;
  }
  if (inf->started) {
    pthread_mutex_unlock(&inf->mu);
    return 0;
  }
  inf->started = true;
  pthread_mutex_unlock(&inf->mu);
  if (pthread_create(&inf->ctl, NULL, ctl_run, inf) != 0) {
    kl_log(KL_LOG_ERROR, MOD, "%s: cannot start a thread", inf->name);
    abort();
  }
  kl_reflector_start(inf->refl);
  return 0;
}

void kl_informer_stop(kl_informer *inf) {
  pthread_mutex_lock(&inf->mu);
  bool was = inf->stopped, started = inf->started;
  inf->stopped = true;
  pthread_mutex_unlock(&inf->mu);
  pthread_mutex_lock(&inf->smu);
  pthread_cond_broadcast(&inf->scv);
  pthread_mutex_unlock(&inf->smu);
  if (was) return;
  kl_reflector_stop(inf->refl);
  atomic_store(&inf->stop, 1);
  if (inf->dq) kl_delta_fifo_close(inf->dq);
  else kl_real_fifo_close(inf->rq);
  if (started) pthread_join(inf->ctl, NULL);
  pthread_mutex_lock(&inf->mu);
  size_t nh = inf->nh;
  kl_handler **hs = inf->hs;
  pthread_mutex_unlock(&inf->mu);
  for (size_t i = 0; i < nh; i++) h_close(hs[i]);
}

void kl_informer_unref(kl_informer *inf) {
  if (!inf || atomic_fetch_sub(&inf->refs, 1) != 1) return;
  kl_informer_stop(inf);
  for (size_t i = 0; i < inf->nh; i++) h_free(inf->hs[i]);
  free(inf->hs);
  kl_reflector_free(inf->refl);
  kl_delta_fifo_unref(inf->dq);
  kl_real_fifo_unref(inf->rq);
  kl_store_unref(inf->store);
  pthread_mutex_destroy(&inf->mu);
  pthread_mutex_destroy(&inf->smu);
  pthread_cond_destroy(&inf->scv);
  free(inf->name);
  free(inf);
}

kl_store *kl_informer_store(kl_informer *inf) { return inf->store; }

bool kl_informer_has_synced(kl_informer *inf) {
  return inf->dq ? kl_delta_fifo_has_synced(inf->dq)
                 : kl_real_fifo_has_synced(inf->rq);
}

bool kl_informer_wait_for_sync(kl_informer *inf, double timeout) {
  double end = kl_now() + timeout;
  for (;;) {
    if (kl_informer_has_synced(inf)) return true;
    pthread_mutex_lock(&inf->mu);
    bool stopped = inf->stopped;
    pthread_mutex_unlock(&inf->mu);
    double left = timeout < 0 ? 0.05 : end - kl_now();
    if (stopped || left <= 0) return kl_informer_has_synced(inf);
    struct timespec ts;
    abs_deadline(&ts, left < 0.05 ? left : 0.05);
    pthread_mutex_lock(&inf->smu);
    pthread_cond_timedwait(&inf->scv, &inf->smu, &ts);
    pthread_mutex_unlock(&inf->smu);
  }
}

void kl_informer_stats_get(kl_informer *inf, kl_informer_stats *out) {
  memset(out, 0, sizeof *out);
  kl_reflector_stats_get(inf->refl, &out->reflector);
  pthread_mutex_lock(&inf->mu);
  out->adds = inf->adds;
  out->updates = inf->updates;
  out->deletes = inf->deletes;
  out->resyncs = inf->resyncs;
  out->tombstones = inf->tombstones;
  out->handlers = inf->nh;
  pthread_mutex_unlock(&inf->mu);
  out->objects = kl_store_len(inf->store);
  out->synced = kl_informer_has_synced(inf);
}

int kl_informer_add_handler(kl_informer *inf, kl_handler_fn fn, void *ud,
                            double resync_s, kl_handler **out) {
  *out = NULL;
  kl_handler *h = kl_calloc(1, sizeof *h);
  h->inf = inf;
  h->fn = fn;
  h->ud = ud;
  h->resync_s = resync_s > 0 ? resync_s : 0;
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  pthread_mutex_lock(&inf->mu);
  if (inf->stopped) {
    pthread_mutex_unlock(&inf->mu);
    h_free(h);
    return KL_ECLOSED;
  }
  h->next_resync = kl_now() + h->resync_s;
  /* the replay: an add for everything cached, before any live event */
  kl_objv all = {0};
  kl_store_list(inf->store, &all);
  for (size_t i = 0; i < all.n; i++) {
    kl_notification n = {.type = KL_NOTIFY_ADD, .obj = all.v[i],
                         .key = (char *)kl_obj_key(all.v[i]),
                         .initial = true};
    h_push(h, &n);
  }
  kl_objv_free(&all);
  if (inf->nh == inf->caph) {
    inf->caph = inf->caph ? inf->caph * 2 : 4;
    inf->hs = kl_realloc(inf->hs, inf->caph * sizeof *inf->hs);
  }
  inf->hs[inf->nh++] = h;
  if (fn) {
    if (pthread_create(&h->th, NULL, h_run, h) != 0) {
      kl_log(KL_LOG_ERROR, MOD, "%s: cannot start a handler thread",
             inf->name);
      abort();
    }
    h->has_thread = true;
  }
  pthread_mutex_unlock(&inf->mu);
  *out = h;
  return 0;
}

void kl_informer_remove_handler(kl_informer *inf, kl_handler *h) {
  if (!h) return;
  pthread_mutex_lock(&inf->mu);
  bool found = false;
  for (size_t i = 0; i < inf->nh; i++)
    if (inf->hs[i] == h) {
      inf->hs[i] = inf->hs[--inf->nh];
      found = true;
      break;
    }
  pthread_mutex_unlock(&inf->mu);
  if (found) h_free(h);
}

/* ---- factory ------------------------------------------------------------------- */

struct kl_informer_factory {
  kl_rest *rest;
  pthread_mutex_t mu;
  kl_hmap m; /* key -> kl_informer (one reference each) */
};

kl_informer_factory *kl_informer_factory_new(kl_rest *rest) {
  kl_informer_factory *f = kl_calloc(1, sizeof *f);
  f->rest = rest;
  pthread_mutex_init(&f->mu, NULL);
  kl_hmap_init(&f->m, true);
  return f;
}

void kl_informer_factory_free(kl_informer_factory *f) {
  if (!f) return;
  size_t i = 0;
  const char *k;
  void *v;
  while (kl_hmap_next(&f->m, &i, &k, &v)) kl_informer_stop(v);
  i = 0;
  while (kl_hmap_next(&f->m, &i, &k, &v)) kl_informer_unref(v);
  kl_hmap_free(&f->m);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

/* The sharing key: path, canonical selectors, modes. */
static int factory_key(const kl_informer_opts *o, char **key, char **err) {
  const kl_reflector_opts *r = &o->reflector;
  if (!r->path || r->path[0] != '/') {
    if (err) *err = kl_strdup("informer: a collection path is required");
    return KL_EINVAL;
  }
  char *ls = kl_strdup(""), *fs = kl_strdup("");
  if (r->label_selector && *r->label_selector) {
    kl_selector *sel = NULL;
    char *e = NULL;
    if (kl_selector_parse(r->label_selector, &sel, &e)) {
      if (err) *err = kl_sprintf("informer %s: labelSelector: %s", r->path, e);
      free(e), free(ls), free(fs);
      return KL_EINVAL;
    }
    free(ls);
    ls = kl_selector_string(sel);
    kl_selector_free(sel);
  }
  if (r->field_selector && *r->field_selector) {
    kl_fieldsel *sel = NULL;
    char *e = NULL;
    if (kl_fieldsel_parse(r->field_selector, &sel, &e)) {
      if (err) *err = kl_sprintf("informer %s: fieldSelector: %s", r->path, e);
      free(e), free(ls), free(fs);
      return KL_EINVAL;
    }
    free(fs);
    fs = kl_fieldsel_string(sel);
    kl_fieldsel_free(sel);
  }
  *key = kl_sprintf("%s\n%s\n%s\n%d%d", r->path, ls, fs, r->metadata_only,
                    o->in_order);
  free(ls);
  free(fs);
  return 0;
}

int kl_informer_factory_get(kl_informer_factory *f,
                            const kl_informer_opts *opts, kl_informer **out,
                            char **err) {
  *out = NULL;
  char *key = NULL;
  int rc = factory_key(opts, &key, err);
  if (rc) return rc;
  pthread_mutex_lock(&f->mu);
  kl_informer *inf = kl_hmap_get(&f->m, key);
  if (!inf) {
    kl_informer_opts o = *opts;
    if (!o.reflector.rest) o.reflector.rest = f->rest;
    rc = kl_informer_new(&o, &inf, err);
    if (rc == 0) kl_hmap_put(&f->m, key, inf);
  }
  if (inf) *out = kl_informer_ref(inf);
  pthread_mutex_unlock(&f->mu);
  free(key);
  return rc;
}

size_t kl_informer_factory_start(kl_informer_factory *f) {
  pthread_mutex_lock(&f->mu);
  size_t i = 0, n = 0;
  const char *k;
  void *v;
  while (kl_hmap_next(&f->m, &i, &k, &v)) {
    kl_informer_start(v);
    n++;
  }
  pthread_mutex_unlock(&f->mu);
  return n;
}

size_t kl_informer_factory_len(kl_informer_factory *f) {
  pthread_mutex_lock(&f->mu);
  size_t n = kl_hmap_len(&f->m);
  pthread_mutex_unlock(&f->mu);
  return n;
}

bool kl_informer_factory_release(kl_informer_factory *f, kl_informer *inf) {
  if (!inf) return false;
  pthread_mutex_lock(&f->mu);
  char *key = NULL;
  size_t i = 0;
  const char *k;
  void *v;
  while (kl_hmap_next(&f->m, &i, &k, &v))
    if (v == inf) {
      key = kl_strdup(k);
      break;
    }
  /* the caller's reference and the factory's: nobody else uses it */
  bool last = key && atomic_load(&inf->refs) == 2;
  if (last) kl_hmap_del(&f->m, key, NULL);
  else kl_informer_unref(inf); /* not the last: only a decrement */
  pthread_mutex_unlock(&f->mu);
  free(key);
  if (!last) return false;
  kl_informer_stop(inf);
  kl_informer_unref(inf);
  kl_informer_unref(inf);
  return true;
}
