/* test_real_fifo.c: RealFIFO (in-order) semantics: every event in order, the
 * replace batch, tombstones, resync, HasSynced, close; and UndeltaStore. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "kl.h"
#include "real_fifo.h"
#include "store.h"
#include "undelta_store.h"
#include "testutil.h"

static kl_deltas pop(kl_real_fifo *f, bool *initial) {
  kl_deltas d = KL_DELTAS_INIT;
  bool init = false;
  int rc = kl_real_fifo_pop_deltas(f, 1.0, &d, &init);
  if (rc != 0) printf("  pop: %s\n", kl_strerror(rc));
  if (initial) *initial = init;
  return d;
}

TEST(every_event_in_order_without_coalescing) {
  kl_store *s = kl_store_new();
  kl_real_fifo *f = kl_real_fifo_new(s);
  TU_ADD(f, kl_real_fifo_add, "ns", "a", "1");
  TU_ADD(f, kl_real_fifo_add, "ns", "b", "2");
  TU_ADD(f, kl_real_fifo_update, "ns", "a", "3");
  TU_ADD(f, kl_real_fifo_delete, "ns", "a", "4");
  TU_ADD(f, kl_real_fifo_delete, "ns", "a", "4"); /* no dedup either */
  CHECK_EQ_INT(kl_real_fifo_len(f), 5);
  kl_strv keys = {0};
  kl_real_fifo_list_keys(f, &keys);
  CHECK_EQ_INT(keys.n, 2);
  kl_strv_free(&keys);
  const char *want_key[] = {"ns/a", "ns/b", "ns/a", "ns/a", "ns/a"};
  const char *want_rv[] = {"1", "2", "3", "4", "4"};
  kl_delta_type want_type[] = {KL_DELTA_ADDED, KL_DELTA_ADDED,
                               KL_DELTA_UPDATED, KL_DELTA_DELETED,
                               KL_DELTA_DELETED};
  for (int i = 0; i < 5; i++) {
    kl_deltas d = pop(f, NULL);
    CHECK_EQ_INT(d.n, 1);
    CHECK(!d.replace_batch);
    if (d.n == 1) {
      CHECK_EQ_STR(kl_delta_key(&d.v[0]), want_key[i]);
      CHECK_EQ_STR(tu_rv_of(&d.v[0]), want_rv[i]);
      CHECK_EQ_INT(d.v[0].type, want_type[i]);
    }
    kl_deltas_free(&d);
  }
  kl_real_fifo_unref(f);
  kl_store_unref(s);
}

TEST(replace_is_one_batch_with_tombstones) {
  kl_store *s = kl_store_new();
  kl_obj *so = tu_configmap("ns", "store-only", "1"), *b = tu_configmap("ns", "both", "1");
  kl_store_add(s, so);
  kl_store_add(s, b);
  kl_real_fifo *f = kl_real_fifo_new(s);
  TU_ADD(f, kl_real_fifo_update, "ns", "both", "2");
  TU_ADD(f, kl_real_fifo_add, "ns", "queue-only", "3");
  TU_ADD(f, kl_real_fifo_add, "ns", "deleted", "4");
  TU_ADD(f, kl_real_fifo_delete, "ns", "deleted", "5");
  kl_obj *l[2] = {tu_configmap("ns", "x", "7"), tu_configmap("ns", "y", "8")};
  CHECK_EQ_INT(kl_real_fifo_replace(f, l, 2, "10"), 0);
  CHECK_EQ_INT(kl_real_fifo_len(f), 5);
  for (int i = 0; i < 4; i++) {
    kl_deltas d = pop(f, NULL);
    kl_deltas_free(&d);
  }
  kl_deltas d = pop(f, NULL);
  CHECK(d.replace_batch);
  CHECK_EQ_STR(d.resource_version, "10");
  CHECK_EQ_INT(d.n, 5);
  if (d.n == 5) {
    CHECK_EQ_INT(d.v[0].type, KL_DELTA_REPLACED);
    CHECK_EQ_STR(kl_delta_key(&d.v[0]), "ns/x");
    CHECK_EQ_INT(d.v[1].type, KL_DELTA_REPLACED);
    CHECK_EQ_STR(kl_delta_key(&d.v[1]), "ns/y");
    /* queued keys in queue order (newest queued object), "deleted" skipped
     * because its last queued delta already is a Deleted */
    CHECK_EQ_INT(d.v[2].type, KL_DELTA_DELETED);
    CHECK(d.v[2].tombstone);
    CHECK_EQ_STR(d.v[2].key, "ns/both");
    CHECK_EQ_STR(tu_rv_of(&d.v[2]), "2");
    CHECK_EQ_STR(d.v[3].key, "ns/queue-only");
    CHECK_EQ_STR(tu_rv_of(&d.v[3]), "3");
    /* then known-only keys with the store's object */
    CHECK(d.v[4].tombstone);
    CHECK_EQ_STR(d.v[4].key, "ns/store-only");
    CHECK(d.v[4].obj == so);
  }
  kl_deltas_free(&d);
  /* an empty replace still queues its (empty) batch */
  CHECK_EQ_INT(kl_real_fifo_replace(f, NULL, 0, NULL), 0);
  d = pop(f, NULL);
  CHECK(d.replace_batch);
  CHECK(d.resource_version == NULL);
  CHECK_EQ_INT(d.n, 2); /* store-only and both are still in the store */
  kl_deltas_free(&d);
  kl_obj_unref(l[0]);
  kl_obj_unref(l[1]);
  kl_obj_unref(so);
  kl_obj_unref(b);
  kl_real_fifo_unref(f);
  kl_store_unref(s);
}

TEST(resync_skips_keys_with_queued_entries) {
  kl_store *s = kl_store_new();
  kl_obj *a = tu_configmap("ns", "a", "1"), *b = tu_configmap("ns", "b", "1"),
         *c = tu_configmap("ns", "c", "1");
  kl_store_add(s, a);
  kl_store_add(s, b);
  kl_store_add(s, c);
  kl_real_fifo *f = kl_real_fifo_new(s);
  TU_ADD(f, kl_real_fifo_update, "ns", "a", "2");
  kl_real_fifo_replace(f, &b, 1, "3"); /* b inside a batch counts as queued */
  CHECK_EQ_INT(kl_real_fifo_len(f), 2);
  kl_deltas d = pop(f, NULL);
  kl_deltas_free(&d);
  d = pop(f, NULL); /* the batch */
  kl_deltas_free(&d);
  TU_ADD(f, kl_real_fifo_update, "ns", "b", "4");
  for (int i = 0; i < 3; i++) kl_real_fifo_resync(f);
  CHECK_EQ_INT(kl_real_fifo_len(f), 3); /* b's update, a and c synced once */
  d = pop(f, NULL);
  kl_deltas_free(&d);
  for (int i = 0; i < 2; i++) {
    d = pop(f, NULL);
    CHECK_EQ_INT(d.n, 1);
    if (d.n) {
      CHECK_EQ_INT(d.v[0].type, KL_DELTA_SYNC);
      CHECK(strcmp(kl_delta_key(&d.v[0]), "ns/b") != 0);
    }
    kl_deltas_free(&d);
  }
  kl_real_fifo_unref(f);
  kl_obj_unref(a);
  kl_obj_unref(b);
  kl_obj_unref(c);
  kl_store_unref(s);
}

TEST(has_synced_counts_entries_up_to_first_replace) {
  kl_store *s = kl_store_new();
  kl_real_fifo *f = kl_real_fifo_new(s);
  CHECK(!kl_real_fifo_has_synced(f));
  kl_obj *o = tu_configmap("ns", "a", "1");
  kl_real_fifo_replace(f, &o, 1, "1");
  TU_ADD(f, kl_real_fifo_add, "ns", "b", "2");
  CHECK(!kl_real_fifo_has_synced(f));
  bool initial = false;
  kl_deltas d = pop(f, &initial);
  CHECK(initial);
  CHECK(d.replace_batch);
  kl_deltas_free(&d);
  CHECK(kl_real_fifo_has_synced(f));
  d = pop(f, &initial);
  CHECK(!initial);
  kl_deltas_free(&d);
  kl_obj_unref(o);
  kl_real_fifo_unref(f);
  /* an empty first replace still has to be popped */
  f = kl_real_fifo_new(NULL);
  kl_real_fifo_replace(f, NULL, 0, "1");
  CHECK(!kl_real_fifo_has_synced(f));
  CHECK_EQ_INT(kl_real_fifo_pop(f, 1, NULL, NULL), 0);
  CHECK(kl_real_fifo_has_synced(f));
  kl_real_fifo_unref(f);
  f = kl_real_fifo_new(NULL);
  TU_ADD(f, kl_real_fifo_delete, "ns", "a", "1");
  CHECK(kl_real_fifo_has_synced(f));
  kl_real_fifo_unref(f);
  kl_store_unref(s);
}

static int failing(kl_deltas *d, bool initial, void *ud) {
  (void)d;
  (void)initial;
  (void)ud;
  return KL_EAGAIN;
}

TEST(failed_entry_is_not_requeued) {
  kl_real_fifo *f = kl_real_fifo_new(NULL);
  TU_ADD(f, kl_real_fifo_add, "ns", "a", "1");
  CHECK_EQ_INT(kl_real_fifo_pop(f, 1, failing, NULL), KL_EAGAIN);
  CHECK_EQ_INT(kl_real_fifo_len(f), 0);
  kl_real_fifo_unref(f);
}

static int times_out(kl_deltas *d, bool initial, void *ud) {
  (void)d, (void)initial, (void)ud;
  return KL_ETIMEDOUT;
}

/* A process function may fail with the codes pop itself uses for "nothing
 * taken" (KL_ETIMEDOUT, KL_ECLOSED); the taken entry must still be freed
 * (LeakSanitizer reports it at exit otherwise). */
TEST(entry_is_freed_when_process_returns_a_pop_code) {
  kl_real_fifo *f = kl_real_fifo_new(NULL);
  TU_ADD(f, kl_real_fifo_add, "ns", "a", "1");
  TU_ADD(f, kl_real_fifo_add, "ns", "b", "1");
  CHECK_EQ_INT(kl_real_fifo_pop(f, 1, times_out, NULL), KL_ETIMEDOUT);
  CHECK_EQ_INT(kl_real_fifo_pop(f, 1, times_out, NULL), KL_ETIMEDOUT);
  CHECK_EQ_INT(kl_real_fifo_len(f), 0);
  kl_real_fifo_unref(f);
}

static void *blocked_pop(void *arg) {
  return (void *)(intptr_t)kl_real_fifo_pop(arg, -1, NULL, NULL);
}

TEST(close_unblocks_a_blocked_pop) {
  kl_real_fifo *f = kl_real_fifo_new(NULL);
  pthread_t t;
  pthread_create(&t, NULL, blocked_pop, f);
  usleep(20000);
  kl_real_fifo_close(f);
  void *res;
  pthread_join(t, &res);
  CHECK_EQ_INT((intptr_t)res, KL_ECLOSED);
  CHECK(kl_real_fifo_is_closed(f));
  CHECK_EQ_INT(kl_real_fifo_pop(f, 0.01, NULL, NULL), KL_ECLOSED);
  kl_real_fifo_unref(f);
  f = kl_real_fifo_new(NULL);
  CHECK_EQ_INT(kl_real_fifo_pop(f, 0.01, NULL, NULL), KL_ETIMEDOUT);
  kl_real_fifo_unref(f);
}

/* ---- batches ---- */

typedef struct seen {
  int calls;
  size_t n;
  char keys[8][32];
  bool initial[8];
  bool synced_inside;
  kl_real_fifo *f;
  void (*during)(struct seen *);
} seen;

static void record(const kl_deltas *items, const bool *initial, int *rcs,
                   size_t n, void *ud) {
  seen *w = ud;
  w->calls++;
  w->n = n;
  for (size_t i = 0; i < n && i < 8; i++) {
    snprintf(w->keys[i], sizeof w->keys[i], "%s",
             items[i].n ? kl_delta_key(&items[i].v[0]) : "");
    w->initial[i] = initial[i];
    rcs[i] = KL_EAGAIN; /* not re-queued in a RealFIFO */
  }
  if (w->f) w->synced_inside = kl_real_fifo_has_synced(w->f);
  if (w->during) w->during(w);
}

TEST(push_batch_and_pop_batch_keep_arrival_order) {
  kl_real_fifo *f = kl_real_fifo_new(NULL);
  kl_obj *a1 = tu_configmap("ns", "a", "1"), *a2 = tu_configmap("ns", "a", "2");
  kl_obj *b1 = tu_configmap("ns", "b", "1");
  kl_fifo_op ops[] = {{KL_DELTA_ADDED, a1}, {KL_DELTA_ADDED, b1},
                      {KL_DELTA_UPDATED, a2}, {KL_DELTA_DELETED, b1}};
  CHECK_EQ_INT(kl_real_fifo_push_batch(f, ops, 4), 0);
  CHECK_EQ_INT(kl_real_fifo_len(f), 4); /* no coalescing */
  kl_fifo_op bad[] = {{KL_DELTA_ADDED, a1}, {KL_DELTA_REPLACED, a2}};
  CHECK_EQ_INT(kl_real_fifo_push_batch(f, bad, 2), KL_EINVAL);
  CHECK_EQ_INT(kl_real_fifo_len(f), 4);
  seen w = {0};
  CHECK_EQ_INT(kl_real_fifo_pop_batch(f, 1, 3, record, &w), 3);
  CHECK_EQ_STR(w.keys[0], "ns/a");
  CHECK_EQ_STR(w.keys[1], "ns/b");
  CHECK_EQ_STR(w.keys[2], "ns/a");
  CHECK_EQ_INT(kl_real_fifo_pop_batch(f, 1, 0, record, &w), 1);
  CHECK_EQ_STR(w.keys[0], "ns/b");
  CHECK_EQ_INT(kl_real_fifo_len(f), 0); /* KL_EAGAIN re-queued nothing */
  CHECK_EQ_INT(kl_real_fifo_pop_batch(f, 0.01, 0, record, &w), KL_ETIMEDOUT);
  CHECK_EQ_INT(kl_real_fifo_pop_batch(f, 0.01, 0, NULL, NULL), KL_EINVAL);
  kl_real_fifo_close(f);
  CHECK_EQ_INT(kl_real_fifo_pop_batch(f, 0.01, 0, record, &w), KL_ECLOSED);
  kl_obj_unref(a1), kl_obj_unref(a2), kl_obj_unref(b1);
  kl_real_fifo_unref(f);
}

static void relist_and_resync(seen *w) {
  kl_obj *b2 = tu_configmap("ns", "b", "2");
  CHECK_EQ_INT(kl_real_fifo_replace(w->f, &b2, 1, "9"), 0);
  kl_obj_unref(b2);
  CHECK_EQ_INT(kl_real_fifo_resync(w->f), 0);
}

/* A relist during a batch: a popped Added key (not in the store yet) gets a
 * tombstone; a popped Deleted key gets none, nor does the store's stale
 * copy of it; the resync that follows skips the in-flight keys. */
TEST(replace_and_resync_during_batch_see_in_flight_entries) {
  kl_store *s = kl_store_new();
  kl_obj *k1 = tu_configmap("ns", "k", "1");
  kl_store_add(s, k1);
  kl_real_fifo *f = kl_real_fifo_new(s);
  TU_ADD(f, kl_real_fifo_add, "ns", "a", "1");
  TU_ADD(f, kl_real_fifo_delete, "ns", "k", "2");
  seen w = {.f = f, .during = relist_and_resync};
  CHECK_EQ_INT(kl_real_fifo_pop_batch(f, 1, 0, record, &w), 2);
  CHECK_EQ_INT(kl_real_fifo_len(f), 1); /* the replace batch, no Sync */
  kl_deltas d = pop(f, NULL);
  CHECK(d.replace_batch);
  CHECK_EQ_INT(d.n, 2);
  if (d.n == 2) {
    CHECK_EQ_STR(kl_delta_key(&d.v[0]), "ns/b");
    CHECK_EQ_STR(kl_delta_key(&d.v[1]), "ns/a");
    CHECK(d.v[1].tombstone);
    CHECK_EQ_STR(tu_rv_of(&d.v[1]), "1");
  }
  kl_deltas_free(&d);
  kl_obj_unref(k1);
  kl_real_fifo_unref(f);
  kl_store_unref(s);
}

TEST(has_synced_waits_for_the_batch_holding_the_first_replace) {
  kl_real_fifo *f = kl_real_fifo_new(NULL);
  kl_obj *a = tu_configmap("ns", "a", "1");
  kl_real_fifo_replace(f, &a, 1, "3");
  TU_ADD(f, kl_real_fifo_add, "ns", "late", "1");
  seen w = {.f = f};
  CHECK_EQ_INT(kl_real_fifo_pop_batch(f, 1, 0, record, &w), 2);
  CHECK(!w.synced_inside);
  CHECK(w.initial[0]);
  CHECK(!w.initial[1]);
  CHECK(kl_real_fifo_has_synced(f));
  kl_obj_unref(a);
  kl_real_fifo_unref(f);
}

/* ---- UndeltaStore ---- */

typedef struct pushes {
  int count;
  char last[256]; /* sorted "key@rv," list */
} pushes;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void on_push(const kl_objv *state, void *ud) {
  pushes *p = ud;
  p->count++;
  char *items[16];
  size_t n = state->n < 16 ? state->n : 16;
  for (size_t i = 0; i < n; i++) {
    items[i] = kl_sprintf("%s@%s,", kl_obj_key(state->v[i]),
                          kl_obj_resource_version(state->v[i]));
  }
  qsort(items, n, sizeof *items, cmp_str);
  p->last[0] = 0;
  for (size_t i = 0; i < n; i++) {
    strncat(p->last, items[i], sizeof p->last - strlen(p->last) - 1);
    free(items[i]);
  }
}

TEST(undelta_store_pushes_full_state_after_every_change) {
  pushes p = {0};
  kl_undelta_store *u = kl_undelta_store_new(NULL, on_push, &p);
  kl_obj *a = tu_configmap("ns", "a", "1"), *b = tu_configmap("ns", "b", "1"),
         *a2 = tu_configmap("ns", "a", "2");
  CHECK_EQ_INT(kl_undelta_store_add(u, a), 0);
  CHECK_EQ_INT(p.count, 1);
  CHECK_EQ_STR(p.last, "ns/a@1,");
  kl_undelta_store_add(u, b);
  CHECK_EQ_STR(p.last, "ns/a@1,ns/b@1,");
  kl_undelta_store_update(u, a2);
  CHECK_EQ_INT(p.count, 3);
  CHECK_EQ_STR(p.last, "ns/a@2,ns/b@1,");
  kl_undelta_store_delete(u, b);
  CHECK_EQ_STR(p.last, "ns/a@2,");
  kl_undelta_store_delete(u, b); /* absent: the same state again */
  CHECK_EQ_INT(p.count, 5);
  CHECK_EQ_STR(p.last, "ns/a@2,");
  kl_obj *l[2] = {a, b};
  kl_undelta_store_replace(u, l, 2, "9");
  CHECK_EQ_INT(p.count, 6);
  CHECK_EQ_STR(p.last, "ns/a@1,ns/b@1,");
  CHECK_EQ_INT(kl_store_len(kl_undelta_store_store(u)), 2);
  kl_undelta_store_replace(u, NULL, 0, NULL);
  CHECK_EQ_INT(p.count, 7);
  CHECK_EQ_STR(p.last, "");
  kl_obj_unref(a);
  kl_obj_unref(b);
  kl_obj_unref(a2);
  kl_undelta_store_free(u);
}

int main(void) {
  kl_log_set_level(KL_LOG_ERROR);
  RUN(every_event_in_order_without_coalescing);
  RUN(replace_is_one_batch_with_tombstones);
  RUN(resync_skips_keys_with_queued_entries);
  RUN(has_synced_counts_entries_up_to_first_replace);
  RUN(failed_entry_is_not_requeued);
  RUN(entry_is_freed_when_process_returns_a_pop_code);
  RUN(close_unblocks_a_blocked_pop);
  RUN(push_batch_and_pop_batch_keep_arrival_order);
  RUN(replace_and_resync_during_batch_see_in_flight_entries);
  RUN(has_synced_waits_for_the_batch_holding_the_first_replace);
  RUN(undelta_store_pushes_full_state_after_every_change);
  return ctest_summary();
}
