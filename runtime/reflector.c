/* reflector.c: list + watch for one collection (see reflector.h and
 * docs/informers.md for the protocol rules followed here).
 *
 * One thread runs the loop below. Everything the loop owns (current
 * resourceVersion, backoff state, flags) is touched only by that thread;
 * the counters live under mu so other threads can snapshot them. */
#include "reflector.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmap.h"
#include "json.h"
#include "list_decode.h"
#include "watch_decode.h"

#define MOD "reflector"

static const char *const no_drop[] = {NULL};

static const char *accept_list_meta =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
    "application/json";
static const char *accept_watch_meta =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,"
    "application/json";

struct kl_reflector {
  kl_reflector_opts o;
  char *path, *name, *api_version, *kind, *lsel, *fsel;
  kl_obj_opts oo;
  kl_reflector_sink sink;

  pthread_t th;
  bool started, joined;
  atomic_int stop;
  pthread_mutex_t mu; /* guards st; with cv, the interruptible sleeps */
  pthread_cond_t cv;
  kl_reflector_stats st;

  /* loop-thread state */
  char *rv;            /* last resourceVersion seen ("" before any) */
  bool rv_unavailable; /* the last RV is gone (410): list with RV="" */
  bool watch_list_off; /* the server refused or ignored WatchList */
  bool listed_once;
  double backoff_cur, backoff_last;
  unsigned rng;
};

/* ---- sinks ------------------------------------------------------------ */

static int dq_add(void *ud, kl_obj *o) { return kl_delta_fifo_add(ud, o); }
static int dq_update(void *ud, kl_obj *o) {
  return kl_delta_fifo_update(ud, o);
}
static int dq_del(void *ud, kl_obj *o) { return kl_delta_fifo_delete(ud, o); }
static int dq_replace(void *ud, kl_obj *const *v, size_t n, const char *rv) {
  return kl_delta_fifo_replace(ud, v, n, rv);
}
static int dq_batch(void *ud, const kl_fifo_op *ops, size_t n) {
  return kl_delta_fifo_push_batch(ud, ops, n);
}
kl_reflector_sink kl_reflector_sink_delta_fifo(kl_delta_fifo *f) {
  return (kl_reflector_sink){dq_add, dq_update, dq_del, dq_replace, f,
                             dq_batch};
}

static int rq_add(void *ud, kl_obj *o) { return kl_real_fifo_add(ud, o); }
static int rq_update(void *ud, kl_obj *o) {
  return kl_real_fifo_update(ud, o);
}
static int rq_del(void *ud, kl_obj *o) { return kl_real_fifo_delete(ud, o); }
static int rq_replace(void *ud, kl_obj *const *v, size_t n, const char *rv) {
  return kl_real_fifo_replace(ud, v, n, rv);
}
static int rq_batch(void *ud, const kl_fifo_op *ops, size_t n) {
  return kl_real_fifo_push_batch(ud, ops, n);
}
kl_reflector_sink kl_reflector_sink_real_fifo(kl_real_fifo *f) {
  return (kl_reflector_sink){rq_add, rq_update, rq_del, rq_replace, f,
                             rq_batch};
}

static int st_add(void *ud, kl_obj *o) { return kl_store_add(ud, o); }
static int st_update(void *ud, kl_obj *o) { return kl_store_update(ud, o); }
static int st_del(void *ud, kl_obj *o) { return kl_store_delete(ud, o); }
static int st_replace(void *ud, kl_obj *const *v, size_t n, const char *rv) {
  return kl_store_replace(ud, v, n, rv);
}
kl_reflector_sink kl_reflector_sink_store(kl_store *s) {
  return (kl_reflector_sink){st_add, st_update, st_del, st_replace, s, NULL};
}

/* ---- helpers ---------------------------------------------------------- */

#define STAT(r, expr)                                                         \
  do {                                                                        \
    pthread_mutex_lock(&(r)->mu);                                             \
    (r)->st.expr;                                                             \
    pthread_mutex_unlock(&(r)->mu);                                           \
  } while (0)

static bool stopping(kl_reflector *r) { return atomic_load(&r->stop) != 0; }

static void set_rv(kl_reflector *r, const char *rv) {
  if (!rv || !*rv || !strcmp(rv, r->rv)) return;
  free(r->rv);
  r->rv = kl_strdup(rv);
  pthread_mutex_lock(&r->mu);
  snprintf(r->st.last_rv, sizeof r->st.last_rv, "%s", rv);
  pthread_mutex_unlock(&r->mu);
}

static double rand01(kl_reflector *r) {
  return (double)rand_r(&r->rng) / ((double)RAND_MAX + 1.0);
}

/* Sleeps up to s seconds; false when stopped meanwhile. */
static bool sleep_for(kl_reflector *r, double s) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double end = (double)ts.tv_sec + ts.tv_nsec / 1e9 + s;
  ts.tv_sec = (time_t)end;
  ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&r->mu);
  while (!stopping(r)) {
    if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) != 0) break;
  }
  pthread_mutex_unlock(&r->mu);
  return !stopping(r);
}

/* client-go's exponential backoff manager: initial, doubling up to max,
 * jitter up to +100%, reset when the last backoff began more than reset_s
 * ago. Returns false when stopped during the wait. */
static bool backoff(kl_reflector *r) {
  double now = kl_now();
  if (r->backoff_cur <= 0 || now - r->backoff_last > r->o.backoff_reset_s)
    r->backoff_cur = r->o.backoff_initial_s;
  double d = r->backoff_cur * (1.0 + rand01(r));
  r->backoff_cur *= 2;
  if (r->backoff_cur > r->o.backoff_max_s) r->backoff_cur = r->o.backoff_max_s;
  r->backoff_last = now;
  STAT(r, backoffs++);
  kl_log(KL_LOG_DEBUG, MOD, "%s: retrying in %.2f s", r->name, d);
  return sleep_for(r, d);
}

static void add_selectors(kl_reflector *r, kl_buf *q) {
  if (r->lsel && *r->lsel) kl_rest_query_add(q, "labelSelector", r->lsel);
  if (r->fsel && *r->fsel) kl_rest_query_add(q, "fieldSelector", r->fsel);
}

/* The resourceVersion a (re)list asks for. See docs/informers.md:
 * "" (a consistent read, served at the newest revision) for the first list
 * and after a 410; else the last RV seen, which a paged list serves
 * exactly (never older than what we already delivered). Never "0": a list
 * at "0" may come from a lagging watch cache, i.e. back in time. */
static const char *relist_rv(kl_reflector *r) {
  if (r->rv_unavailable || !r->listed_once) return "";
  return r->rv;
}

static bool status_rv_too_large(const kl_status *st) {
  for (size_t i = 0; i < st->details.ncauses; i++)
    if (st->details.causes[i].reason &&
        !strcmp(st->details.causes[i].reason, "ResourceVersionTooLarge"))
      return true;
  return false;
}

/* ---- list --------------------------------------------------------------- */

typedef struct lctx {
  kl_list_decoder *dec;
  kl_objv *items;
  int rc;
} lctx;

static int list_on_data(const char *p, size_t n, void *ud) {
  lctx *c = ud;
  kl_list_decoder_feed(c->dec, p, n);
  for (;;) {
    kl_obj *it = NULL;
    int rc = kl_list_decoder_next(c->dec, &it);
    if (rc == 0) return 0;
    if (rc < 0) {
      c->rc = rc;
      return rc;
    }
    kl_objv_push(c->items, it);
  }
}

enum { L_OK, L_STOP, L_FAIL };

/* One complete list (all pages) delivered through sink.replace. */
static int list_once(kl_reflector *r) {
  const char *want = relist_rv(r);
  char *rvreq = kl_strdup(want);
  int limit = r->o.page_size;
  bool restarted = false; /* continue expired: one unpaged list at "" */
  bool retried_rv = false;
  kl_objv items = {0};
  kl_list_decoder *dec = kl_list_decoder_new(&r->oo, 0);
  char *cont = NULL, *list_rv = NULL;
  int result = L_FAIL;

  for (;;) {
    if (stopping(r)) {
      result = L_STOP;
      break;
    }
    kl_buf q = KL_BUF_INIT;
    if (limit > 0) {
      char lim[24];
      snprintf(lim, sizeof lim, "%d", limit);
      kl_rest_query_add(&q, "limit", lim);
    }
    if (cont)
      kl_rest_query_add(&q, "continue", cont);
    else if (*rvreq)
      kl_rest_query_add(&q, "resourceVersion", rvreq);
    add_selectors(r, &q);
    kl_list_decoder_reset(dec);
    lctx c = {dec, &items, 0};
    kl_rest_req req = {
        .path = r->path,
        .query = q.data,
        .accept = r->o.metadata_only ? accept_list_meta : NULL,
        .timeout_s = -1,
        .on_data = list_on_data,
        .ud = &c,
        .stop = &r->stop,
        .idle_timeout_s = r->o.idle_timeout_s,
    };
    kl_rest_resp resp;
    kl_rest_error err;
    STAT(r, list_requests++);
    int rc = kl_rest_do(r->o.rest, &req, &resp, &err);
    kl_buf_free(&q);
    kl_rest_resp_free(&resp);
    if (rc == 0) {
      rc = kl_list_decoder_finish(dec);
      if (rc == 0) {
        kl_obj *it;
        int nrc;
        while ((nrc = kl_list_decoder_next(dec, &it)) == 1)
          kl_objv_push(&items, it);
        if (nrc < 0) rc = nrc;
      }
      if (rc) {
        kl_log(KL_LOG_WARN, MOD, "%s: list: bad response body: %s", r->name,
               kl_list_decoder_error(dec));
        kl_rest_error_free(&err);
        break;
      }
      kl_list_meta m = kl_list_decoder_meta(dec);
      free(list_rv);
      list_rv = kl_strdup(m.resource_version);
      free(cont);
      cont = NULL;
      kl_rest_error_free(&err);
      if (limit > 0 && *m.continue_token) {
        cont = kl_strdup(m.continue_token);
        continue;
      }
      result = L_OK;
      break;
    }
    if (rc == KL_ECLOSED && stopping(r)) {
      kl_rest_error_free(&err);
      result = L_STOP;
      break;
    }
    if (c.rc) {
      kl_log(KL_LOG_WARN, MOD, "%s: list: bad response body: %s", r->name,
             kl_list_decoder_error(dec));
      kl_rest_error_free(&err);
      break;
    }
    bool gone = rc == KL_EGONE || (rc == KL_EHTTP &&
                                   (kl_status_is_resource_expired(&err.status) ||
                                    status_rv_too_large(&err.status)));
    if (gone && cont && !restarted) {
      /* the continue token expired (compaction): the pages so far are of
       * an old snapshot; start over as ONE unpaged list at the newest
       * state, which cannot expire halfway (client-go's pager fallback) */
      kl_log(KL_LOG_INFO, MOD,
             "%s: list continue token expired; listing again in full",
             r->name);
      STAT(r, continue_expired++);
      kl_objv_free(&items);
      free(cont);
      cont = NULL;
      free(rvreq);
      rvreq = kl_strdup("");
      limit = 0;
      restarted = true;
      kl_rest_error_free(&err);
      continue;
    }
    if (gone && !cont && *rvreq && !retried_rv) {
      /* the RV we asked for is compacted (or not there yet): ask for the
       * newest state instead, at once (client-go does the same) */
      kl_log(KL_LOG_INFO, MOD,
             "%s: list at resourceVersion %s unavailable (%s); listing at "
             "the newest", r->name, rvreq, err.message ? err.message : "");
      r->rv_unavailable = true;
      free(rvreq);
      rvreq = kl_strdup("");
      retried_rv = true;
      kl_objv_free(&items);
      kl_rest_error_free(&err);
      continue;
    }
    kl_log(KL_LOG_WARN, MOD, "%s: list failed: %s", r->name,
           err.message ? err.message : kl_strerror(rc));
    kl_rest_error_free(&err);
    break;
  }

  if (result == L_OK) {
    /* state and counters first: whoever sees the queue synced sees them */
    set_rv(r, list_rv);
    r->rv_unavailable = false;
    pthread_mutex_lock(&r->mu);
    r->st.lists++;
    if (r->listed_once) r->st.relists++;
    r->st.objects_listed = items.n;
    r->st.synced = true;
    pthread_mutex_unlock(&r->mu);
    r->listed_once = true;
    int src = r->sink.replace(r->sink.ud, items.v, items.n, list_rv);
    if (src)
      kl_log(KL_LOG_WARN, MOD, "%s: replace failed: %s", r->name,
             kl_strerror(src));
    kl_log(KL_LOG_DEBUG, MOD, "%s: listed %zu objects at resourceVersion %s",
           r->name, items.n, list_rv);
  } else if (result == L_FAIL) {
    STAT(r, list_errors++);
  }
  kl_objv_free(&items);
  kl_list_decoder_free(dec);
  free(cont);
  free(list_rv);
  free(rvreq);
  return result;
}

/* ---- watch ---------------------------------------------------------------- */

typedef struct wctx {
  kl_reflector *r;
  kl_watch_decoder *dec;
  bool initial;      /* WatchList: collecting the initial events */
  bool ignored;      /* WatchList: a plain BOOKMARK came first */
  kl_hmap init;      /* key -> kl_obj (NEW refs) while initial */
  uint64_t events;
  bool got_error;
  kl_status status;  /* of the ERROR event */
  bool decode_error;
  bool sink_synced;  /* the WatchList delivered its initial state */
  /* batchable events decoded but not yet handed to the sink: gathered
   * across on_data calls, delivered at the end of each read round
   * (watch_on_flush) or before the next event that is not batchable */
  kl_watch_event *pend;
  size_t npend, cappend;
} wctx;

static bool initial_events_end(const kl_obj *bm) {
  static const char *const keys[] = {"metadata", "annotations",
                                     "k8s.io/initial-events-end"};
  kl_span v;
  return kl_json_getv(kl_obj_span(bm), keys, 3, &v) &&
         kl_json_streq(v, "true");
}

static void deliver_initial(wctx *c, const char *rv) {
  kl_reflector *r = c->r;
  kl_objv v = {0};
  size_t i = 0;
  const char *k;
  void *val;
  while (kl_hmap_next(&c->init, &i, &k, &val)) kl_objv_push(&v, val);
  kl_hmap_free(&c->init);
  kl_hmap_init(&c->init, true);
  set_rv(r, rv);
  pthread_mutex_lock(&r->mu);
  r->st.lists++;
  if (r->listed_once) r->st.relists++;
  r->st.watch_list_used++;
  r->st.objects_listed = v.n;
  r->st.synced = true;
  pthread_mutex_unlock(&r->mu);
  r->listed_once = true;
  r->rv_unavailable = false;
  int src = r->sink.replace(r->sink.ud, v.v, v.n, rv);
  if (src)
    kl_log(KL_LOG_WARN, MOD, "%s: replace failed: %s", r->name,
           kl_strerror(src));
  kl_log(KL_LOG_DEBUG, MOD, "%s: streaming list: %zu objects at "
         "resourceVersion %s", r->name, v.n, rv);
  kl_objv_free(&v);
  c->initial = false;
  c->sink_synced = true;
}

/* Applies one event; returns 0 or a negative code that ends the watch. */
static int on_event(wctx *c, kl_watch_event *ev) {
  kl_reflector *r = c->r;
  c->events++;
  const char *rv = ev->obj ? kl_obj_resource_version(ev->obj) : NULL;
  int src = 0;
  switch (ev->type) {
  case KL_WATCH_ADDED:
  case KL_WATCH_MODIFIED:
  case KL_WATCH_DELETED:
    pthread_mutex_lock(&r->mu);
    if (ev->type == KL_WATCH_ADDED) r->st.ev_added++;
    else if (ev->type == KL_WATCH_MODIFIED) r->st.ev_modified++;
    else r->st.ev_deleted++;
    pthread_mutex_unlock(&r->mu);
    if (c->initial) {
      const char *key = kl_obj_key(ev->obj);
      if (ev->type == KL_WATCH_DELETED) {
        kl_obj_unref(kl_hmap_del(&c->init, key, NULL));
      } else {
        kl_obj_unref(kl_hmap_put(&c->init, key, kl_obj_ref(ev->obj)));
      }
      /* the RV is adopted only with the initial-events-end bookmark */
      return 0;
    }
    if (ev->type == KL_WATCH_ADDED) src = r->sink.add(r->sink.ud, ev->obj);
    else if (ev->type == KL_WATCH_MODIFIED)
      src = r->sink.update(r->sink.ud, ev->obj);
    else src = r->sink.del(r->sink.ud, ev->obj);
    if (src)
      kl_log(KL_LOG_WARN, MOD, "%s: %s %s: queue refused it: %s", r->name,
             kl_watch_type_name(ev->type), kl_obj_key(ev->obj),
             kl_strerror(src));
    set_rv(r, rv);
    return 0;
  case KL_WATCH_BOOKMARK:
    STAT(r, ev_bookmark++);
    if (c->initial) {
      if (initial_events_end(ev->obj)) {
        deliver_initial(c, rv ? rv : "");
        set_rv(r, rv);
        return 0;
      }
      /* a server that knows WatchList ends the initial events with the
       * annotated bookmark before any other; this one ignored it */
      c->ignored = true;
      return KL_EPROTO;
    }
    set_rv(r, rv);
    return 0;
  case KL_WATCH_ERROR:
    STAT(r, ev_error++);
    c->got_error = true;
    c->status = ev->status;
    memset(&ev->status, 0, sizeof ev->status);
    return KL_EPROTO;
  }
  return 0;
}

/* Hands the watch events evs[0..n) (ADDED/MODIFIED/DELETED, after the
 * initial state) to the sink's push_batch in one call, then adopts the
 * last one's resourceVersion, as on_event does per event. */
static void deliver_batch(wctx *c, kl_watch_event *evs, size_t n) {
  kl_reflector *r = c->r;
  kl_fifo_op stack[64], *ops = n <= 64 ? stack : kl_malloc(n * sizeof *ops);
  uint64_t a = 0, m = 0, d = 0;
  for (size_t i = 0; i < n; i++) {
    kl_watch_event *ev = &evs[i];
    ops[i].obj = ev->obj;
    if (ev->type == KL_WATCH_ADDED) ops[i].type = KL_DELTA_ADDED, a++;
    else if (ev->type == KL_WATCH_MODIFIED) ops[i].type = KL_DELTA_UPDATED, m++;
    else ops[i].type = KL_DELTA_DELETED, d++;
  }
  c->events += n;
  pthread_mutex_lock(&r->mu);
  r->st.ev_added += a;
  r->st.ev_modified += m;
  r->st.ev_deleted += d;
  pthread_mutex_unlock(&r->mu);
  int src = r->sink.push_batch(r->sink.ud, ops, n);
  if (src)
    kl_log(KL_LOG_WARN, MOD, "%s: %zu watch events (%s ... %s): queue refused "
           "them: %s", r->name, n, kl_obj_key(evs[0].obj),
           kl_obj_key(evs[n - 1].obj), kl_strerror(src));
  set_rv(r, kl_obj_resource_version(evs[n - 1].obj));
  if (ops != stack) free(ops);
}

static bool batchable(const wctx *c, const kl_watch_event *ev) {
  return c->r->sink.push_batch && !c->initial && ev->obj &&
         (ev->type == KL_WATCH_ADDED || ev->type == KL_WATCH_MODIFIED ||
          ev->type == KL_WATCH_DELETED);
}

/* Hands the gathered batchable events to the sink, in order, in one
 * push_batch call (the queue's consumer wakes once, the lock is taken
 * once). */
static void flush_pending(wctx *c) {
  if (c->npend && !stopping(c->r)) deliver_batch(c, c->pend, c->npend);
  for (size_t i = 0; i < c->npend; i++) kl_watch_event_clear(&c->pend[i]);
  c->npend = 0;
}

/* Plain ADDED/MODIFIED/DELETED events are gathered and pushed once per
 * read round (watch_on_flush) instead of once per HTTP chunk: a real API
 * server sends each watch event as its own chunk, and waking the
 * informer's processor once per event costs more than the event. Anything
 * else goes through on_event after what came before it. Events before a
 * decoding error are still applied, then the error ends the watch. */
static int watch_on_data(const char *p, size_t n, void *ud) {
  wctx *c = ud;
  kl_watch_decoder_feed(c->dec, p, n);
  for (;;) {
    kl_watch_event ev;
    int drc = kl_watch_decoder_next(c->dec, &ev);
    if (drc == 0) return 0;
    if (drc < 0) {
      flush_pending(c); /* the events before the bad one are good */
      c->decode_error = true;
      return drc;
    }
    if (batchable(c, &ev)) {
      if (c->npend == c->cappend) {
        c->cappend = c->cappend ? c->cappend * 2 : 64;
        c->pend = kl_realloc(c->pend, c->cappend * sizeof *c->pend);
      }
      c->pend[c->npend++] = ev;
      continue;
    }
    flush_pending(c); /* what came before goes first */
    int rc = on_event(c, &ev);
    kl_watch_event_clear(&ev);
    if (rc) return rc;
  }
}

static int watch_on_flush(void *ud) {
  flush_pending(ud);
  return 0;
}

/* Watch outcomes. */
enum {
  W_END,      /* ended normally: watch again from the last RV */
  W_FAIL,     /* back off, then watch again from the last RV */
  W_RELIST,   /* back off, then list again (RV = last seen) */
  W_GONE,     /* back off, then list again at RV "" */
  W_FALLBACK, /* WatchList refused or ignored: list + watch from now on */
  W_STOP,
};

static int watch_once(kl_reflector *r, bool watch_list) {
  kl_buf q = KL_BUF_INIT;
  char ts[24];
  double lo = r->o.watch_timeout_min_s, hi = r->o.watch_timeout_max_s;
  long tsec = (long)(lo + (hi - lo) * rand01(r));
  if (tsec < 1) tsec = 1;
  snprintf(ts, sizeof ts, "%ld", tsec);
  kl_rest_query_add(&q, "watch", "true");
  kl_rest_query_add(&q, "allowWatchBookmarks", "true");
  /* copied: r->rv changes while the watch runs */
  char *rvq = kl_strdup(watch_list ? relist_rv(r) : r->rv);
  const char *rv = rvq;
  if (*rv) kl_rest_query_add(&q, "resourceVersion", rv);
  if (watch_list) {
    kl_rest_query_add(&q, "sendInitialEvents", "true");
    kl_rest_query_add(&q, "resourceVersionMatch", "NotOlderThan");
  }
  kl_rest_query_add(&q, "timeoutSeconds", ts);
  add_selectors(r, &q);

  wctx c = {.r = r, .initial = watch_list};
  kl_hmap_init(&c.init, true);
  c.dec = kl_watch_decoder_new(&r->oo, 0);
  kl_rest_req req = {
      .path = r->path,
      .query = q.data,
      .accept = r->o.metadata_only ? accept_watch_meta : NULL,
      .timeout_s = -1,
      .on_data = watch_on_data,
      .on_flush = watch_on_flush,
      .ud = &c,
      .stop = &r->stop,
      .idle_timeout_s = r->o.idle_timeout_s,
      .no_retry = true,
  };
  pthread_mutex_lock(&r->mu);
  r->st.watches++;
  if (r->st.watches > 1) r->st.watch_restarts++;
  pthread_mutex_unlock(&r->mu);
  double t0 = kl_now();
  kl_rest_resp resp;
  kl_rest_error err;
  int rc = kl_rest_do(r->o.rest, &req, &resp, &err);
  flush_pending(&c); /* a round cut short by an error or the end */
  free(c.pend);
  double took = kl_now() - t0;
  int out = W_END;

  if (rc == KL_ECLOSED && stopping(r)) {
    out = W_STOP;
  } else if (c.got_error) {
    char *desc = kl_status_format(&c.status);
    if (kl_status_is_gone(&c.status) ||
        kl_status_is_resource_expired(&c.status)) {
      kl_log(KL_LOG_INFO, MOD, "%s: watch from resourceVersion %s ended: %s;"
             " relisting", r->name, rv, desc);
      STAT(r, err_gone++);
      out = W_GONE;
    } else if (watch_list && c.initial && c.status.code >= 400 &&
               c.status.code < 500 && c.status.code != 429) {
      kl_log(KL_LOG_INFO, MOD, "%s: streaming list refused (%s); using "
             "list + watch", r->name, desc);
      STAT(r, err_http++);
      out = W_FALLBACK;
    } else {
      kl_log(KL_LOG_WARN, MOD, "%s: watch ended with an error: %s", r->name,
             desc);
      STAT(r, err_http++);
      out = W_RELIST;
    }
    free(desc);
  } else if (c.ignored) {
    kl_log(KL_LOG_INFO, MOD, "%s: the server ignored sendInitialEvents "
           "(a bookmark without k8s.io/initial-events-end); using list + "
           "watch", r->name);
    out = W_FALLBACK;
  } else if (c.decode_error) {
    kl_log(KL_LOG_WARN, MOD, "%s: bad watch event, watching again from "
           "resourceVersion %s: %s", r->name, r->rv,
           kl_watch_decoder_error(c.dec));
    STAT(r, err_decode++);
    out = W_FAIL;
  } else if (rc == KL_EGONE) {
    kl_log(KL_LOG_INFO, MOD, "%s: watch: %s; relisting", r->name,
           err.message ? err.message : "410 Gone");
    STAT(r, err_gone++);
    out = W_GONE;
  } else if (rc == KL_EHTTP) {
    int code = err.http_status;
    STAT(r, err_http++);
    if (kl_status_is_resource_expired(&err.status)) {
      STAT(r, err_gone++);
      out = W_GONE;
    } else if (watch_list && code >= 400 && code < 500 && code != 429 &&
               code != 401 && code != 403) {
      kl_log(KL_LOG_INFO, MOD, "%s: streaming list refused (%s); using "
             "list + watch", r->name, err.message ? err.message : "");
      out = W_FALLBACK;
    } else if (code == 429) {
      out = W_FAIL;
    } else {
      kl_log(KL_LOG_WARN, MOD, "%s: watch failed: %s", r->name,
             err.message ? err.message : "");
      out = W_RELIST;
    }
  } else if (rc == KL_ETIMEDOUT) {
    kl_log(KL_LOG_INFO, MOD, "%s: watch silent for %d s; reconnecting",
           r->name, r->o.idle_timeout_s);
    STAT(r, err_idle++);
    out = W_FAIL;
  } else if (rc != 0) {
    STAT(r, err_transport++);
    kl_log(c.events ? KL_LOG_INFO : KL_LOG_WARN, MOD, "%s: watch: %s",
           r->name, err.message ? err.message : kl_strerror(rc));
    /* a stream cut after a while resumes at once; a failed connection
     * backs off */
    out = (c.events > 0 || took >= 1.0) ? W_END : W_FAIL;
  } else {
    int frc = kl_watch_decoder_finish(c.dec);
    if (frc) {
      kl_log(KL_LOG_WARN, MOD, "%s: watch stream ended inside an event, "
             "watching again from resourceVersion %s: %s", r->name, r->rv,
             kl_watch_decoder_error(c.dec));
      STAT(r, err_decode++);
      out = W_FAIL;
    } else if (c.initial) {
      kl_log(KL_LOG_INFO, MOD, "%s: the server ignored sendInitialEvents "
             "(the stream ended without k8s.io/initial-events-end); using "
             "list + watch", r->name);
      out = W_FALLBACK;
    } else if (c.events == 0 && took < 1.0) {
      kl_log(KL_LOG_DEBUG, MOD, "%s: very short watch (%.3f s, no events)",
             r->name, took);
      STAT(r, err_short++);
      out = W_FAIL;
    }
  }
  if (watch_list && out == W_FALLBACK) STAT(r, watch_list_fallbacks++);
  kl_rest_resp_free(&resp);
  kl_rest_error_free(&err);
  kl_status_free(&c.status);
  size_t i = 0;
  const char *k;
  void *val;
  while (kl_hmap_next(&c.init, &i, &k, &val)) kl_obj_unref(val);
  kl_hmap_free(&c.init);
  kl_watch_decoder_free(c.dec);
  kl_buf_free(&q);
  free(rvq);
  return out | (c.sink_synced ? 0x100 : 0);
}

/* ---- the loop ---------------------------------------------------------- */

static void *run(void *arg) {
  kl_reflector *r = arg;
  bool need_list = true;
  while (!stopping(r)) {
    if (need_list && !(r->o.watch_list && !r->watch_list_off)) {
      int lr = list_once(r);
      if (lr == L_STOP) break;
      if (lr == L_FAIL) {
        if (!backoff(r)) break;
        continue;
      }
      need_list = false;
    }
    bool wl = need_list; /* only in WatchList mode */
    int res = watch_once(r, wl);
    bool synced = res & 0x100;
    res &= 0xff;
    if (wl && synced) need_list = false;
    switch (res) {
    case W_STOP:
      goto out;
    case W_END:
      break;
    case W_FAIL:
      if (!backoff(r)) goto out;
      break;
    case W_RELIST:
      need_list = true;
      if (!backoff(r)) goto out;
      break;
    case W_GONE:
      need_list = true;
      r->rv_unavailable = true;
      if (!backoff(r)) goto out;
      break;
    case W_FALLBACK:
      r->watch_list_off = true;
      need_list = true;
      break;
    }
  }
out:
  STAT(r, running = false);
  return NULL;
}

/* ---- lifecycle ----------------------------------------------------------- */

static char *dup_or_null(const char *s) { return s ? kl_strdup(s) : NULL; }

int kl_reflector_new(const kl_reflector_opts *opts, kl_reflector_sink sink,
                     kl_reflector **out, char **err) {
  *out = NULL;
  if (!opts || !opts->rest || !opts->path || opts->path[0] != '/') {
    if (err) *err = kl_strdup("reflector: rest client and collection path "
                              "(starting with '/') are required");
    return KL_EINVAL;
  }
  if (!sink.add || !sink.update || !sink.del || !sink.replace) {
    if (err) *err = kl_strdup("reflector: the sink needs every function");
    return KL_EINVAL;
  }
  kl_reflector *r = kl_calloc(1, sizeof *r);
  r->o = *opts;
  r->path = kl_strdup(opts->path);
  r->name = kl_strdup(opts->name ? opts->name : opts->path);
  r->api_version = dup_or_null(opts->api_version);
  r->kind = dup_or_null(opts->kind);
  r->lsel = dup_or_null(opts->label_selector);
  r->fsel = dup_or_null(opts->field_selector);
  r->o.path = r->path;
  r->o.name = r->name;
  r->o.api_version = r->api_version;
  r->o.kind = r->kind;
  r->o.label_selector = r->lsel;
  r->o.field_selector = r->fsel;
  if (r->o.page_size == 0) r->o.page_size = 500;
  if (r->o.watch_timeout_min_s <= 0) r->o.watch_timeout_min_s = 300;
  if (r->o.watch_timeout_max_s < r->o.watch_timeout_min_s)
    r->o.watch_timeout_max_s = r->o.watch_timeout_min_s == 300
                                   ? 600
                                   : r->o.watch_timeout_min_s;
  if (r->o.idle_timeout_s == 0) r->o.idle_timeout_s = 300;
  if (r->o.backoff_initial_s <= 0) r->o.backoff_initial_s = 0.8;
  if (r->o.backoff_max_s <= 0) r->o.backoff_max_s = 30;
  if (r->o.backoff_reset_s <= 0) r->o.backoff_reset_s = 120;
  r->rng = opts->seed ? opts->seed
                      : (unsigned)(kl_now_ns() ^ (uintptr_t)r);
  r->oo.drop = opts->keep_all ? no_drop
                              : (opts->drop ? opts->drop : kl_obj_default_drop);
  r->oo.api_version = r->api_version;
  r->oo.kind = r->kind;
  r->sink = sink;
  r->rv = kl_strdup("");
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  *out = r;
  return 0;
}

int kl_reflector_start(kl_reflector *r) {
  if (r->started) return KL_EINVAL;
  r->started = true;
  STAT(r, running = true);
  if (pthread_create(&r->th, NULL, run, r) != 0) {
    kl_log(KL_LOG_ERROR, MOD, "%s: cannot start a thread", r->name);
    abort();
  }
  return 0;
}

void kl_reflector_stop(kl_reflector *r) {
  if (!r) return;
  atomic_store(&r->stop, 1);
  pthread_mutex_lock(&r->mu);
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (r->started && !r->joined) {
    pthread_join(r->th, NULL);
    r->joined = true;
  }
}

void kl_reflector_free(kl_reflector *r) {
  if (!r) return;
  kl_reflector_stop(r);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r->path);
  free(r->name);
  free(r->api_version);
  free(r->kind);
  free(r->lsel);
  free(r->fsel);
  free(r->rv);
  free(r);
}

void kl_reflector_stats_get(kl_reflector *r, kl_reflector_stats *out) {
  pthread_mutex_lock(&r->mu);
  *out = r->st;
  pthread_mutex_unlock(&r->mu);
}

char *kl_reflector_last_rv(kl_reflector *r) {
  pthread_mutex_lock(&r->mu);
  char *s = kl_strdup(r->st.last_rv);
  pthread_mutex_unlock(&r->mu);
  return s;
}
