/* test_informer.c: the shared informer against klua's own API server
 * (in-process, over real HTTP on loopback, fault injection on): HandleDeltas
 * semantics (add/update/delete, initial adds, tombstones after a missed
 * delete), a late handler's replay, resync only to the handlers due,
 * handler isolation (a slow handler never delays a fast one), the factory's
 * sharing, prompt stop, and convergence of the store AND of every handler's
 * view with the server while a writer runs and watches are closed, cut,
 * corrupted and compacted away (DeltaFIFO and in-order RealFIFO modes). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apiserver.h"
#include "ctest.h"
#include "hmap.h"
#include "informer.h"
#include "list_decode.h"

static void nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* waits up to 60 s of time for cond (TSan on a loaded machine is slow) */
#define WAIT_FOR(cond)                                                        \
  do {                                                                        \
    for (double w_ = kl_now() + 60; !(cond) && kl_now() < w_;) nap_ms(5);     \
  } while (0)

static kl_apiserver *srv;
static kl_rest *rest;
static const char *CM = "/api/v1/namespaces/default/configmaps";

/* ---- writes through the server ----------------------------------------------- */

static int call(const char *method, const char *path, const char *body) {
  kl_rest_req req = {.method = method, .path = path, .body = body,
                     .body_len = body ? strlen(body) : 0};
  kl_rest_resp resp;
  int rc = kl_rest_do(rest, &req, &resp, NULL);
  kl_rest_resp_free(&resp);
  return rc;
}

static int cm_put(const char *name, int val, bool create) {
  char *b = kl_sprintf("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
                       "\"metadata\":{\"name\":\"%s\",\"labels\":{\"app\":"
                       "\"t\"}},\"data\":{\"v\":\"%d\"}}", name, val);
  char *p = create ? kl_strdup(CM) : kl_sprintf("%s/%s", CM, name);
  int rc = call(create ? "POST" : "PUT", p, b);
  free(b);
  free(p);
  return rc;
}
static int cm_delete(const char *name) {
  char *p = kl_sprintf("%s/%s", CM, name);
  int rc = call("DELETE", p, NULL);
  free(p);
  return rc;
}
static void delete_all(void) { call("DELETE", CM, NULL); }

static int fault(const char *json) {
  return call("POST", "/_klua/faults", json);
}
static void faults_clear(void) { call("DELETE", "/_klua/faults", NULL); }

/* the server's state: key -> resourceVersion (NEW strings) */
static void server_state(kl_hmap *out) {
  kl_hmap_init(out, true);
  kl_rest_req req = {.path = CM};
  kl_rest_resp resp;
  if (kl_rest_do(rest, &req, &resp, NULL) == 0) {
    kl_list l;
    if (kl_list_decode(resp.body.data, resp.body.len, NULL, &l, NULL) == 0) {
      for (size_t i = 0; i < l.nitems; i++)
        kl_hmap_put(out, kl_obj_key(l.items[i]),
                    kl_strdup(kl_obj_resource_version(l.items[i])));
      kl_list_free(&l);
    }
  }
  kl_rest_resp_free(&resp);
}
static void state_free(kl_hmap *m) {
  size_t i = 0;
  const char *k;
  void *v;
  while (kl_hmap_next(m, &i, &k, &v)) free(v);
  kl_hmap_free(m);
}

static bool store_equals(kl_store *s, kl_hmap *want) {
  if (kl_store_len(s) != kl_hmap_len(want)) return false;
  size_t i = 0;
  const char *k;
  void *v;
  while (kl_hmap_next(want, &i, &k, &v)) {
    kl_obj *o = kl_store_get_by_key(s, k);
    bool ok = o && !strcmp(kl_obj_resource_version(o), v);
    kl_obj_unref(o);
    if (!ok) return false;
  }
  return true;
}

/* ---- a recording handler: its own view of the collection ----------------------- */

typedef struct rec {
  pthread_mutex_t mu;
  kl_hmap view; /* key -> rv (NEW strings), from notifications only */
  int adds, initial_adds, updates, resyncs, deletes, tombstones;
  int anomalies; /* add of a known key, update/delete of an unknown one */
  int order_errors; /* an update older than the version already seen */
  int null_objs;
  atomic_int *gate; /* when set, each call waits until *gate is non-zero */
  int resync_r1, resync_r2; /* resyncs of default/r-1 and default/r-2 */
} rec;

static void rec_init(rec *r) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  kl_hmap_init(&r->view, true);
}
static void rec_free(rec *r) {
  state_free(&r->view);
  pthread_mutex_destroy(&r->mu);
}

static void rec_apply(rec *r, const kl_notification *n) {
  pthread_mutex_lock(&r->mu);
  bool known = kl_hmap_has(&r->view, n->key);
  switch (n->type) {
  case KL_NOTIFY_ADD:
    r->adds++;
    if (n->initial) r->initial_adds++;
    if (known) r->anomalies++;
    free(kl_hmap_put(&r->view, n->key,
                     kl_strdup(kl_obj_resource_version(n->obj))));
    break;
  case KL_NOTIFY_UPDATE:
    r->updates++;
    if (n->resync) {
      r->resyncs++;
      if (!strcmp(n->key, "default/r-1")) r->resync_r1++;
      if (!strcmp(n->key, "default/r-2")) r->resync_r2++;
    }
    if (!known || !n->old) r->anomalies++;
    if (known && atoll(kl_obj_resource_version(n->obj)) <
                     atoll(kl_hmap_get(&r->view, n->key)))
      r->order_errors++;
    free(kl_hmap_put(&r->view, n->key,
                     kl_strdup(kl_obj_resource_version(n->obj))));
    break;
  case KL_NOTIFY_DELETE:
    r->deletes++;
    if (n->tombstone) r->tombstones++;
    if (!n->obj) r->null_objs++;
    if (!known) r->anomalies++;
    free(kl_hmap_del(&r->view, n->key, NULL));
    break;
  }
  pthread_mutex_unlock(&r->mu);
}

static void rec_fn(const kl_notification *n, void *ud) {
  rec *r = ud;
  if (r->gate)
    while (!atomic_load(r->gate)) nap_ms(5);
  rec_apply(r, n);
}

static int rec_get(rec *r, int *field) {
  pthread_mutex_lock(&r->mu);
  int v = *field;
  pthread_mutex_unlock(&r->mu);
  return v;
}
static bool rec_equals(rec *r, kl_hmap *want) {
  pthread_mutex_lock(&r->mu);
  bool ok = kl_hmap_len(&r->view) == kl_hmap_len(want);
  size_t i = 0;
  const char *k;
  void *v;
  while (ok && kl_hmap_next(want, &i, &k, &v)) {
    const char *have = kl_hmap_get(&r->view, k);
    ok = have && !strcmp(have, v);
  }
  pthread_mutex_unlock(&r->mu);
  return ok;
}

static kl_informer_opts opts(void) {
  kl_informer_opts o = {0};
  o.reflector.rest = rest;
  o.reflector.path = CM;
  o.reflector.name = "configmaps default";
  o.reflector.watch_timeout_min_s = 20;
  o.reflector.watch_timeout_max_s = 40;
  o.reflector.backoff_initial_s = 0.01;
  o.reflector.backoff_max_s = 0.1;
  return o;
}

static kl_informer *make(const kl_informer_opts *o) {
  kl_informer *inf = NULL;
  char *err = NULL;
  if (kl_informer_new(o, &inf, &err)) {
    printf("  informer: %s\n", err);
    free(err);
  }
  return inf;
}

/* ---- tests --------------------------------------------------------------------- */

TEST(handle_deltas_add_update_delete) {
  delete_all();
  char name[32];
  for (int i = 0; i < 20; i++) {
    snprintf(name, sizeof name, "a-%02d", i);
    CHECK_EQ_INT(cm_put(name, i, true), 0);
  }
  kl_informer_opts o = opts();
  kl_informer *inf = make(&o);
  rec r;
  rec_init(&r);
  kl_handler *h = NULL;
  CHECK_EQ_INT(kl_informer_add_handler(inf, rec_fn, &r, 0, &h), 0);
  CHECK_EQ_INT(kl_informer_start(inf), 0);
  CHECK(kl_informer_wait_for_sync(inf, 10));
  CHECK_EQ_INT(kl_store_len(kl_informer_store(inf)), 20);
  WAIT_FOR(rec_get(&r, &r.adds) == 20);
  CHECK_EQ_INT(rec_get(&r, &r.initial_adds), 20);
  CHECK_EQ_INT(cm_put("a-03", 99, false), 0);
  CHECK_EQ_INT(cm_delete("a-04"), 0);
  CHECK_EQ_INT(cm_put("b-new", 1, true), 0);
  WAIT_FOR(rec_get(&r, &r.deletes) == 1 && rec_get(&r, &r.adds) == 21 &&
           rec_get(&r, &r.updates) == 1);
  CHECK_EQ_INT(rec_get(&r, &r.updates), 1);
  CHECK_EQ_INT(rec_get(&r, &r.deletes), 1);
  CHECK_EQ_INT(rec_get(&r, &r.tombstones), 0);
  CHECK_EQ_INT(rec_get(&r, &r.adds), 21);
  CHECK_EQ_INT(rec_get(&r, &r.initial_adds), 20); /* b-new is live */
  CHECK_EQ_INT(rec_get(&r, &r.anomalies), 0);
  CHECK_EQ_INT(rec_get(&r, &r.null_objs), 0);
  kl_hmap want;
  server_state(&want);
  CHECK(store_equals(kl_informer_store(inf), &want));
  CHECK(rec_equals(&r, &want));
  state_free(&want);
  kl_informer_stats st;
  kl_informer_stats_get(inf, &st);
  CHECK_EQ_INT(st.objects, 20);
  CHECK_EQ_INT(st.adds, 21);
  CHECK_EQ_INT(st.deletes, 1);
  CHECK_EQ_INT(st.handlers, 1);
  CHECK(st.synced);
  CHECK_EQ_INT(st.reflector.lists, 1);
  kl_informer_unref(inf);
  rec_free(&r);
}

TEST(late_handler_gets_replay_then_live_events) {
  delete_all();
  for (int i = 0; i < 5; i++) {
    char name[16];
    snprintf(name, sizeof name, "l-%d", i);
    cm_put(name, i, true);
  }
  kl_informer_opts o = opts();
  kl_informer *inf = make(&o);
  kl_informer_start(inf);
  CHECK(kl_informer_wait_for_sync(inf, 10));
  kl_handler *h = NULL;
  CHECK_EQ_INT(kl_informer_add_handler(inf, NULL, NULL, 0, &h), 0);
  kl_notification n;
  int initial = 0;
  for (int i = 0; i < 5; i++) {
    CHECK_EQ_INT(kl_handler_next(h, 5, &n), 1);
    if (n.type == KL_NOTIFY_ADD && n.initial && n.obj) initial++;
    kl_notification_clear(&n);
  }
  CHECK_EQ_INT(initial, 5);
  CHECK_EQ_INT(kl_handler_next(h, 0.05, &n), 0); /* nothing more */
  cm_delete("l-2");
  CHECK_EQ_INT(kl_handler_next(h, 5, &n), 1);
  CHECK_EQ_INT(n.type, KL_NOTIFY_DELETE);
  CHECK_EQ_STR(n.key, "default/l-2");
  CHECK(n.obj != NULL);
  CHECK(!n.tombstone);
  kl_notification_clear(&n);
  CHECK_EQ_INT(kl_handler_delivered(h), 6);
  kl_informer_stop(inf);
  CHECK_EQ_INT(kl_handler_next(h, 1, &n), KL_ECLOSED);
  kl_informer_unref(inf);
}

TEST(missed_delete_becomes_tombstone_after_relist) {
  for (int mode = 0; mode < 2; mode++) {
    delete_all();
    cm_put("t-keep", 1, true);
    cm_put("t-gone", 1, true);
    kl_informer_opts o = opts();
    o.in_order = mode == 1;
    kl_informer *inf = make(&o);
    rec r;
    rec_init(&r);
    kl_handler *h;
    kl_informer_add_handler(inf, rec_fn, &r, 0, &h);
    kl_informer_start(inf);
    CHECK(kl_informer_wait_for_sync(inf, 10));
    WAIT_FOR(rec_get(&r, &r.adds) == 2);
    /* the informer cannot watch while the delete happens, and the history
     * it would resume from is compacted away: only a relist tells */
    CHECK_EQ_INT(fault("{\"action\":\"fail\",\"watch\":true,\"code\":503,"
                       "\"count\":0}"), 0);
    fault("{\"action\":\"close_watches\"}");
    kl_informer_stats st;
    WAIT_FOR((kl_informer_stats_get(inf, &st), st.reflector.err_http >= 1));
    CHECK(st.reflector.err_http >= 1); /* the watch is down */
    cm_delete("t-gone");
    cm_put("t-keep", 2, false);
    fault("{\"action\":\"compact\"}");
    faults_clear();
    WAIT_FOR(rec_get(&r, &r.deletes) == 1 && rec_get(&r, &r.updates) == 1);
    CHECK_EQ_INT(rec_get(&r, &r.deletes), 1);
    CHECK_EQ_INT(rec_get(&r, &r.tombstones), 1);
    CHECK_EQ_INT(rec_get(&r, &r.null_objs), 0); /* last state known */
    CHECK_EQ_INT(rec_get(&r, &r.anomalies), 0);
    kl_hmap want;
    server_state(&want);
    CHECK(store_equals(kl_informer_store(inf), &want));
    CHECK(rec_equals(&r, &want));
    state_free(&want);
    kl_informer_stats_get(inf, &st);
    CHECK(st.reflector.relists >= 1);
    CHECK_EQ_INT(st.tombstones, 1);
    kl_informer_unref(inf);
    rec_free(&r);
  }
}

TEST(resync_reaches_only_handlers_due) {
  delete_all();
  cm_put("r-1", 1, true);
  cm_put("r-2", 1, true);
  kl_informer_opts o = opts();
  kl_informer *inf = make(&o);
  rec a, b;
  rec_init(&a);
  rec_init(&b);
  kl_handler *ha, *hb;
  kl_informer_add_handler(inf, rec_fn, &a, 0.1, &ha);
  kl_informer_add_handler(inf, rec_fn, &b, 0, &hb);
  kl_informer_start(inf);
  CHECK(kl_informer_wait_for_sync(inf, 10));
  WAIT_FOR(rec_get(&a, &a.resyncs) >= 6);
  CHECK(rec_get(&a, &a.resyncs) >= 6);
  /* every round reaches every cached object: both counts read at once
   * (rounds go on meanwhile; two reads may be rounds apart) */
  pthread_mutex_lock(&a.mu);
  int r1 = a.resync_r1, r2 = a.resync_r2;
  pthread_mutex_unlock(&a.mu);
  CHECK(r1 - r2 >= -1 && r1 - r2 <= 1);
  CHECK(r2 >= 2);
  CHECK_EQ_INT(rec_get(&b, &b.resyncs), 0);
  CHECK_EQ_INT(rec_get(&b, &b.updates), 0);
  CHECK_EQ_INT(rec_get(&a, &a.anomalies), 0);
  kl_informer_unref(inf);
  rec_free(&a);
  rec_free(&b);
}

TEST(slow_handler_does_not_delay_fast_one) {
  delete_all();
  kl_informer_opts o = opts();
  kl_informer *inf = make(&o);
  rec slow, fast;
  rec_init(&slow);
  rec_init(&fast);
  /* the slow handler's first call blocks until the fast one saw all: a
   * fixed sleep in it raced with the 30 writes on a loaded machine */
  atomic_int gate = 0;
  slow.gate = &gate;
  kl_handler *hs, *hf;
  kl_informer_add_handler(inf, rec_fn, &slow, 0, &hs);
  kl_informer_add_handler(inf, rec_fn, &fast, 0, &hf);
  kl_informer_start(inf);
  CHECK(kl_informer_wait_for_sync(inf, 10));
  for (int i = 0; i < 30; i++) {
    char name[16];
    snprintf(name, sizeof name, "s-%d", i);
    cm_put(name, i, true);
  }
  WAIT_FOR(rec_get(&fast, &fast.adds) == 30);
  CHECK_EQ_INT(rec_get(&fast, &fast.adds), 30);
  CHECK_EQ_INT(rec_get(&slow, &slow.adds), 0);
  CHECK(kl_handler_pending(hs) >= 29); /* all but the one it is in */
  atomic_store(&gate, 1);
  WAIT_FOR(rec_get(&slow, &slow.adds) == 30);
  CHECK_EQ_INT(rec_get(&slow, &slow.adds), 30);
  kl_informer_unref(inf);
  rec_free(&slow);
  rec_free(&fast);
}

TEST(factory_shares_by_canonical_key) {
  kl_informer_factory *f = kl_informer_factory_new(rest);
  kl_informer_opts o = {0};
  o.reflector.path = CM;
  o.reflector.label_selector = "b=2,a=1";
  kl_informer *i1, *i2, *i3, *i4;
  char *err = NULL;
  CHECK_EQ_INT(kl_informer_factory_get(f, &o, &i1, &err), 0);
  o.reflector.label_selector = "a = 1, b == 2";
  CHECK_EQ_INT(kl_informer_factory_get(f, &o, &i2, &err), 0);
  CHECK(i1 == i2);
  o.reflector.metadata_only = true;
  CHECK_EQ_INT(kl_informer_factory_get(f, &o, &i3, &err), 0);
  CHECK(i3 != i1);
  o.reflector.label_selector = "a in (";
  CHECK_EQ_INT(kl_informer_factory_get(f, &o, &i4, &err), KL_EINVAL);
  CHECK(err && strstr(err, "labelSelector"));
  free(err);
  CHECK_EQ_INT(kl_informer_factory_len(f), 2);
  CHECK_EQ_INT(kl_informer_factory_start(f), 2);
  CHECK(kl_informer_wait_for_sync(i1, 10));
  CHECK(kl_informer_wait_for_sync(i3, 10));
  kl_informer_unref(i1);
  kl_informer_unref(i2);
  kl_informer_unref(i3);
  kl_informer_factory_free(f);
}

TEST(metadata_only_informer_caches_partial_objects) {
  delete_all();
  cm_put("m-1", 1, true);
  kl_informer_opts o = opts();
  o.reflector.metadata_only = true;
  kl_informer *inf = make(&o);
  kl_informer_start(inf);
  CHECK(kl_informer_wait_for_sync(inf, 10));
  kl_obj *obj = kl_store_get_by_key(kl_informer_store(inf), "default/m-1");
  CHECK(obj != NULL);
  if (obj) {
    kl_span v;
    CHECK(!kl_obj_get(obj, "data", &v));
    CHECK(kl_obj_get(obj, "metadata.labels", &v));
  }
  kl_obj_unref(obj);
  kl_informer_unref(inf);
}

TEST(stop_is_prompt_when_idle) {
  kl_informer_opts o = opts();
  kl_informer *inf = make(&o);
  rec r;
  rec_init(&r);
  kl_handler *h;
  kl_informer_add_handler(inf, rec_fn, &r, 0, &h);
  kl_informer_start(inf);
  CHECK(kl_informer_wait_for_sync(inf, 10));
  nap_ms(100);
  double t0 = kl_now();
  kl_informer_stop(inf);
  printf("# informer stop took %.3f s\n", kl_now() - t0);
  CHECK(!kl_informer_wait_for_sync(inf, 0) || kl_informer_has_synced(inf));
  kl_handler *h2;
  CHECK_EQ_INT(kl_informer_add_handler(inf, rec_fn, &r, 0, &h2), KL_ECLOSED);
  kl_informer_unref(inf);
  rec_free(&r);
}

/* A burst: the watch is held by the server while many changes are made,
 * then released, so the events arrive back to back and the pop loop takes
 * them in batches (applied outside the queue's lock). Every event reaches
 * the handler, each key's in order, and store and handler converge. */
TEST(burst_after_held_watch_keeps_every_event_in_order) {
  for (int mode = 0; mode < 2; mode++) {
    delete_all();
    char name[16];
    for (int i = 0; i < 8; i++) {
      snprintf(name, sizeof name, "u-%d", i);
      cm_put(name, 0, true);
    }
    kl_informer_opts o = opts();
    o.in_order = mode == 1;
    o.reflector.idle_timeout_s = 1;
    kl_informer *inf = make(&o);
    rec r;
    rec_init(&r);
    kl_handler *h;
    kl_informer_add_handler(inf, rec_fn, &r, 0, &h);
    kl_informer_start(inf);
    CHECK(kl_informer_wait_for_sync(inf, 10));
    WAIT_FOR(rec_get(&r, &r.adds) == 8);
    /* the server holds each watch request 2 s (the reflector gives up on
     * it after 1 s idle and retries: held again until the fault is gone) */
    fault("{\"action\":\"delay\",\"seconds\":2,\"method\":\"GET\","
          "\"watch\":true,\"count\":0}");
    fault("{\"action\":\"close_watches\"}");
    nap_ms(100);
    for (int n = 1; n <= 200; n++) {
      snprintf(name, sizeof name, "u-%d", n % 8);
      CHECK_EQ_INT(cm_put(name, n, false), 0);
    }
    CHECK_EQ_INT(cm_delete("u-7"), 0);
    CHECK_EQ_INT(cm_put("u-new", 1, true), 0);
    faults_clear();
    kl_hmap want;
    server_state(&want);
    WAIT_FOR(store_equals(kl_informer_store(inf), &want) &&
             rec_equals(&r, &want) && rec_get(&r, &r.updates) >= 200);
    CHECK(store_equals(kl_informer_store(inf), &want));
    CHECK(rec_equals(&r, &want));
    CHECK(kl_informer_has_synced(inf));
    kl_informer_stats st;
    kl_informer_stats_get(inf, &st);
    CHECK_EQ_INT(st.reflector.lists, 1); /* no relist: every event seen */
    CHECK_EQ_INT(rec_get(&r, &r.updates), 200);
    CHECK_EQ_INT(rec_get(&r, &r.deletes), 1);
    CHECK_EQ_INT(rec_get(&r, &r.adds), 9);
    CHECK_EQ_INT(rec_get(&r, &r.order_errors), 0);
    CHECK_EQ_INT(rec_get(&r, &r.anomalies), 0);
    state_free(&want);
    kl_informer_unref(inf);
    rec_free(&r);
  }
}

/* ---- convergence ----------------------------------------------------------------- */

typedef struct chaos {
  unsigned seed;
  int ops;
  atomic_int done;
} chaos;

static void *writer(void *arg) {
  chaos *c = arg;
  unsigned s = c->seed;
  bool alive[60] = {0};
  for (int n = 0; n < c->ops; n++) {
    int i = rand_r(&s) % 60;
    char name[16];
    snprintf(name, sizeof name, "c-%02d", i);
    if (!alive[i]) {
      if (cm_put(name, n, true) == 0) alive[i] = true;
    } else if (rand_r(&s) % 3 == 0) {
      if (cm_delete(name) == 0) alive[i] = false;
    } else {
      cm_put(name, n, false);
    }
    nap_ms(2);
  }
  return NULL;
}

static void *disrupter(void *arg) {
  chaos *c = arg;
  unsigned s = c->seed * 7 + 3;
  while (!atomic_load(&c->done)) {
    nap_ms(10 + rand_r(&s) % 40);
    switch (rand_r(&s) % 6) {
    case 0: fault("{\"action\":\"close_watches\"}"); break;
    case 1: fault("{\"action\":\"compact\"}"); break;
    case 2: fault("{\"action\":\"cut_watch\",\"path\":\"/api/v1\"}"); break;
    case 3:
      fault("{\"action\":\"malformed_watch\",\"path\":\"/api/v1\"}");
      break;
    case 4:
      fault("{\"action\":\"fail\",\"watch\":true,\"code\":500,"
            "\"path\":\"/api/v1/namespaces/default/configmaps\"}");
      fault("{\"action\":\"close_watches\"}");
      break;
    case 5:
      fault("{\"action\":\"compact\"}");
      fault("{\"action\":\"close_watches\"}");
      break;
    }
  }
  return NULL;
}

static void converge(unsigned seed, bool in_order, bool watch_list) {
  delete_all();
  for (int i = 0; i < 20; i++) {
    char name[16];
    snprintf(name, sizeof name, "c-%02d", i * 3);
    cm_put(name, 0, true);
  }
  kl_informer_opts o = opts();
  o.in_order = in_order;
  o.reflector.watch_list = watch_list;
  o.reflector.page_size = 7;
  o.reflector.seed = seed;
  kl_informer *inf = make(&o);
  rec r;
  rec_init(&r);
  kl_handler *h;
  kl_informer_add_handler(inf, rec_fn, &r, 0, &h);
  kl_informer_start(inf);
  chaos c = {.seed = seed, .ops = 400};
  pthread_t tw, td;
  pthread_create(&tw, NULL, writer, &c);
  pthread_create(&td, NULL, disrupter, &c);
  pthread_join(tw, NULL);
  atomic_store(&c.done, 1);
  pthread_join(td, NULL);
  faults_clear();
  kl_hmap want;
  server_state(&want);
  WAIT_FOR(store_equals(kl_informer_store(inf), &want) && rec_equals(&r, &want));
  CHECK(store_equals(kl_informer_store(inf), &want));
  CHECK(rec_equals(&r, &want)); /* every delete reached the handler */
  CHECK_EQ_INT(rec_get(&r, &r.anomalies), 0);
  CHECK_EQ_INT(rec_get(&r, &r.order_errors), 0);
  kl_informer_stats st;
  kl_informer_stats_get(inf, &st);
  printf("# seed %u%s%s: %zu objects, %llu lists, %llu watches, gone %llu, "
         "decode %llu, transport %llu, http %llu, tombstones %llu\n", seed,
         in_order ? " in-order" : "", watch_list ? " watch-list" : "",
         kl_hmap_len(&want), (unsigned long long)st.reflector.lists,
         (unsigned long long)st.reflector.watches,
         (unsigned long long)st.reflector.err_gone,
         (unsigned long long)st.reflector.err_decode,
         (unsigned long long)st.reflector.err_transport,
         (unsigned long long)st.reflector.err_http,
         (unsigned long long)st.tombstones);
  CHECK(st.reflector.watches > 2);
  state_free(&want);
  kl_informer_unref(inf);
  rec_free(&r);
}

TEST(convergence_delta_fifo_several_seeds) {
  converge(11, false, false);
  converge(12, false, false);
  converge(13, false, true);
}

TEST(convergence_in_order_mode) {
  converge(21, true, false);
  converge(22, true, true);
}

int main(void) {
  kl_log_set_level(getenv("KLUA_DEBUG") ? KL_LOG_DEBUG : KL_LOG_ERROR);
  kl_apiserver_opts ao = {.listen = "127.0.0.1:0", .faults = "on",
                          .bookmark_interval = 0.5};
  char *err = NULL;
  if (kl_apiserver_new(&ao, &srv, &err) || kl_apiserver_start(srv, &err)) {
    printf("# apiserver: %s\n", err ? err : "?");
    free(err);
    return 1;
  }
  kl_kubeconfig kc = {0};
  kc.server = (char *)kl_apiserver_url(srv);
  kc.namespace = "default";
  kc.source = "test";
  kc.context = "test";
  kl_rest_opts ro = {.qps = -1};
  if (kl_rest_new(&kc, &ro, &rest, &err)) {
    printf("# rest: %s\n", err);
    free(err);
    return 1;
  }
  RUN(handle_deltas_add_update_delete);
  RUN(late_handler_gets_replay_then_live_events);
  RUN(missed_delete_becomes_tombstone_after_relist);
  RUN(resync_reaches_only_handlers_due);
  RUN(slow_handler_does_not_delay_fast_one);
  RUN(factory_shares_by_canonical_key);
  RUN(metadata_only_informer_caches_partial_objects);
  RUN(stop_is_prompt_when_idle);
  RUN(burst_after_held_watch_keeps_every_event_in_order);
  RUN(convergence_delta_fifo_several_seeds);
  RUN(convergence_in_order_mode);
  kl_rest_free(rest);
  kl_apiserver_free(srv);
  return ctest_summary();
}
