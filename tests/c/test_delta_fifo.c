/* test_delta_fifo.c: DeltaFIFO semantics (client-go's delta_fifo_test.go
 * cases in spirit): coalescing, dedup of deletions, replace tombstones,
 * resync, requeue order, HasSynced, close. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "delta_fifo.h"
#include "kl.h"
#include "store.h"
#include "testutil.h"

static kl_deltas pop(kl_delta_fifo *f, bool *initial) {
  kl_deltas d = KL_DELTAS_INIT;
  bool init = false;
  int rc = kl_delta_fifo_pop_deltas(f, 1.0, &d, &init);
  if (rc != 0) printf("  pop: %s\n", kl_strerror(rc));
  if (initial) *initial = init;
  return d;
}

TEST(add_update_coalesce_per_key_in_order) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");
  TU_ADD(f, kl_delta_fifo_add, "ns", "b", "2");
  TU_ADD(f, kl_delta_fifo_update, "ns", "a", "3");
  CHECK_EQ_INT(kl_delta_fifo_len(f), 2);
  kl_strv keys = {0};
  kl_delta_fifo_list_keys(f, &keys);
  CHECK_EQ_INT(keys.n, 2);
  if (keys.n == 2) {
    CHECK_EQ_STR(keys.v[0], "ns/a");
    CHECK_EQ_STR(keys.v[1], "ns/b");
  }
  kl_strv_free(&keys);
  kl_deltas d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 2);
  if (d.n == 2) {
    CHECK_EQ_INT(d.v[0].type, KL_DELTA_ADDED);
    CHECK_EQ_STR(tu_rv_of(&d.v[0]), "1");
    CHECK_EQ_INT(d.v[1].type, KL_DELTA_UPDATED);
    CHECK_EQ_STR(tu_rv_of(&d.v[1]), "3");
    CHECK_EQ_STR(kl_delta_key(&d.v[1]), "ns/a");
  }
  kl_deltas_free(&d);
  d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 1);
  if (d.n == 1) CHECK_EQ_STR(kl_delta_key(&d.v[0]), "ns/b");
  kl_deltas_free(&d);
  CHECK_EQ_INT(kl_delta_fifo_len(f), 0);
  kl_delta_fifo_unref(f);
}

TEST(delete_of_unknown_key_is_ignored) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  TU_ADD(f, kl_delta_fifo_delete, "ns", "ghost", "1");
  CHECK_EQ_INT(kl_delta_fifo_len(f), 0);
  /* with a known store: known keys are deletable */
  kl_store *s = kl_store_new();
  kl_obj *o = tu_configmap("ns", "k", "1");
  kl_store_add(s, o);
  kl_delta_fifo_opts opts = {.known = s};
  kl_delta_fifo *g = kl_delta_fifo_new(&opts);
  CHECK_EQ_INT(kl_delta_fifo_delete(g, o), 0);
  TU_ADD(g, kl_delta_fifo_delete, "ns", "ghost", "1");
  CHECK_EQ_INT(kl_delta_fifo_len(g), 1);
  kl_deltas d = pop(g, NULL);
  CHECK_EQ_INT(d.n, 1);
  if (d.n) {
    CHECK_EQ_INT(d.v[0].type, KL_DELTA_DELETED);
    CHECK(!d.v[0].tombstone);
  }
  kl_deltas_free(&d);
  kl_obj_unref(o);
  kl_delta_fifo_unref(g);
  kl_store_unref(s);
  kl_delta_fifo_unref(f);
}

TEST(consecutive_deletes_dedup_keeping_real_object) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");
  TU_ADD(f, kl_delta_fifo_delete, "ns", "a", "2");
  /* a Replace without "a": its tombstone collapses into the real delete */
  CHECK_EQ_INT(kl_delta_fifo_replace(f, NULL, 0, "9"), 0);
  TU_ADD(f, kl_delta_fifo_delete, "ns", "a", "3");
  kl_deltas d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 2);
  if (d.n == 2) {
    CHECK_EQ_INT(d.v[1].type, KL_DELTA_DELETED);
    CHECK(!d.v[1].tombstone);
    CHECK_EQ_STR(tu_rv_of(&d.v[1]), "2"); /* the older real one is kept */
  }
  kl_deltas_free(&d);

  /* tombstone first, then a real delete: the real one replaces it */
  TU_ADD(f, kl_delta_fifo_add, "ns", "b", "1");
  CHECK_EQ_INT(kl_delta_fifo_replace(f, NULL, 0, "9"), 0);
  TU_ADD(f, kl_delta_fifo_delete, "ns", "b", "5");
  d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 2);
  if (d.n == 2) {
    CHECK_EQ_INT(d.v[1].type, KL_DELTA_DELETED);
    CHECK(!d.v[1].tombstone);
    CHECK_EQ_STR(tu_rv_of(&d.v[1]), "5");
    CHECK(d.v[1].key == NULL);
  }
  kl_deltas_free(&d);
  kl_delta_fifo_unref(f);
}

TEST(replace_tombstones_for_store_only_queue_only_and_both) {
  kl_store *s = kl_store_new();
  kl_obj *ks = tu_configmap("ns", "store-only", "1");
  kl_obj *kb = tu_configmap("ns", "both", "1");
  kl_obj *kept = tu_configmap("ns", "kept", "1");
  kl_store_add(s, ks);
  kl_store_add(s, kb);
  kl_store_add(s, kept);
  kl_delta_fifo_opts opts = {.known = s, .emit_replaced = true};
  kl_delta_fifo *f = kl_delta_fifo_new(&opts);
  TU_ADD(f, kl_delta_fifo_update, "ns", "both", "2");
  TU_ADD(f, kl_delta_fifo_add, "ns", "queue-only", "3");
  kl_obj *kept2 = tu_configmap("ns", "kept", "4");
  CHECK_EQ_INT(kl_delta_fifo_replace(f, &kept2, 1, "10"), 0);
  kl_obj_unref(kept2);

  /* both: queued first; its tombstone holds the newest queued object */
  kl_deltas d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 2);
  if (d.n == 2) {
    CHECK_EQ_INT(d.v[1].type, KL_DELTA_DELETED);
    CHECK(d.v[1].tombstone);
    CHECK_EQ_STR(d.v[1].key, "ns/both");
    CHECK_EQ_STR(tu_rv_of(&d.v[1]), "2");
  }
  kl_deltas_free(&d);
  d = pop(f, NULL); /* queue-only */
  CHECK_EQ_INT(d.n, 2);
  if (d.n == 2) {
    CHECK_EQ_STR(kl_delta_key(&d.v[1]), "ns/queue-only");
    CHECK(d.v[1].tombstone);
    CHECK_EQ_STR(tu_rv_of(&d.v[1]), "3");
  }
  kl_deltas_free(&d);
  d = pop(f, NULL); /* kept: listed, so Replaced */
  CHECK_EQ_INT(d.n, 1);
  if (d.n) {
    CHECK_EQ_STR(kl_delta_key(&d.v[0]), "ns/kept");
    CHECK_EQ_INT(d.v[0].type, KL_DELTA_REPLACED);
    CHECK_EQ_STR(tu_rv_of(&d.v[0]), "4");
  }
  kl_deltas_free(&d);
  d = pop(f, NULL); /* store-only: tombstone with the store's object */
  CHECK_EQ_INT(d.n, 1);
  if (d.n) {
    CHECK_EQ_STR(kl_delta_key(&d.v[0]), "ns/store-only");
    CHECK_EQ_INT(d.v[0].type, KL_DELTA_DELETED);
    CHECK(d.v[0].tombstone);
    CHECK(d.v[0].obj == ks);
  }
  kl_deltas_free(&d);
  CHECK_EQ_INT(kl_delta_fifo_len(f), 0);
  kl_delta_fifo_unref(f);
  kl_obj_unref(ks);
  kl_obj_unref(kb);
  kl_obj_unref(kept);
  kl_store_unref(s);
}

TEST(replace_emits_sync_when_not_emit_replaced) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  kl_obj *o = tu_configmap("ns", "a", "1");
  kl_delta_fifo_replace(f, &o, 1, "1");
  kl_obj_unref(o);
  kl_deltas d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 1);
  if (d.n) CHECK_EQ_INT(d.v[0].type, KL_DELTA_SYNC);
  kl_deltas_free(&d);
  kl_delta_fifo_unref(f);
}

TEST(resync_skips_pending_keys_and_does_not_grow) {
  kl_store *s = kl_store_new();
  kl_obj *a = tu_configmap("ns", "a", "1"), *b = tu_configmap("ns", "b", "1");
  kl_store_add(s, a);
  kl_store_add(s, b);
  kl_delta_fifo_opts opts = {.known = s};
  kl_delta_fifo *f = kl_delta_fifo_new(&opts);
  TU_ADD(f, kl_delta_fifo_update, "ns", "a", "2");
  for (int i = 0; i < 5; i++) CHECK_EQ_INT(kl_delta_fifo_resync(f), 0);
  CHECK_EQ_INT(kl_delta_fifo_len(f), 2);
  kl_deltas d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 1); /* no Sync behind the pending Updated */
  if (d.n) CHECK_EQ_INT(d.v[0].type, KL_DELTA_UPDATED);
  kl_deltas_free(&d);
  d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 1); /* one Sync, however many resyncs */
  if (d.n) {
    CHECK_EQ_INT(d.v[0].type, KL_DELTA_SYNC);
    CHECK(d.v[0].obj == b);
  }
  kl_deltas_free(&d);
  kl_delta_fifo_unref(f);
  kl_obj_unref(a);
  kl_obj_unref(b);
  kl_store_unref(s);
}

static int fail_once(kl_deltas *d, bool initial, void *ud) {
  (void)d;
  (void)initial;
  int *calls = ud;
  return (*calls)++ == 0 ? KL_EAGAIN : 0;
}

static int reenter(kl_deltas *d, bool initial, void *ud) {
  (void)initial;
  kl_delta_fifo *f = ud;
  return kl_delta_fifo_add(f, d->v[0].obj);
}

TEST(requeue_on_error_goes_behind_newer_keys) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");
  TU_ADD(f, kl_delta_fifo_add, "ns", "b", "1");
  int calls = 0;
  CHECK_EQ_INT(kl_delta_fifo_pop(f, 1, fail_once, &calls), KL_EAGAIN);
  CHECK_EQ_INT(kl_delta_fifo_len(f), 2);
  kl_strv keys = {0};
  kl_delta_fifo_list_keys(f, &keys);
  if (keys.n == 2) {
    CHECK_EQ_STR(keys.v[0], "ns/b");
    CHECK_EQ_STR(keys.v[1], "ns/a");
  }
  kl_strv_free(&keys);
  /* calling the queue from its own process function is refused */
  CHECK_EQ_INT(kl_delta_fifo_pop(f, 1, reenter, f), KL_EINVAL);
  kl_deltas d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 1); /* the re-queued deltas are intact */
  if (d.n) CHECK_EQ_STR(kl_delta_key(&d.v[0]), "ns/a");
  kl_deltas_free(&d);
  kl_delta_fifo_unref(f);
}

TEST(add_if_not_present_drops_stale_deltas) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");
  kl_deltas old = pop(f, NULL);
  TU_ADD(f, kl_delta_fifo_update, "ns", "a", "2");
  CHECK_EQ_INT(kl_delta_fifo_add_if_not_present(f, &old), 0);
  CHECK_EQ_INT(old.n, 0);
  kl_deltas d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 1); /* the newer delta wins, the old is not re-added */
  if (d.n) CHECK_EQ_STR(tu_rv_of(&d.v[0]), "2");
  /* and when the key is absent, the deltas come back */
  CHECK_EQ_INT(kl_delta_fifo_add_if_not_present(f, &d), 0);
  kl_deltas e = pop(f, NULL);
  CHECK_EQ_INT(e.n, 1);
  if (e.n) CHECK_EQ_STR(tu_rv_of(&e.v[0]), "2");
  kl_deltas_free(&e);
  kl_deltas empty = KL_DELTAS_INIT;
  CHECK_EQ_INT(kl_delta_fifo_add_if_not_present(f, &empty), KL_EINVAL);
  kl_delta_fifo_unref(f);
}

TEST(has_synced_after_first_replace_is_popped) {
  kl_store *s = kl_store_new();
  kl_obj *gone = tu_configmap("ns", "gone", "1");
  kl_store_add(s, gone);
  kl_delta_fifo_opts opts = {.known = s, .emit_replaced = true};
  kl_delta_fifo *f = kl_delta_fifo_new(&opts);
  CHECK(!kl_delta_fifo_has_synced(f));
  kl_obj *l[2] = {tu_configmap("ns", "a", "1"), tu_configmap("ns", "b", "1")};
  kl_delta_fifo_replace(f, l, 2, "5");
  CHECK(!kl_delta_fifo_has_synced(f));
  TU_ADD(f, kl_delta_fifo_add, "ns", "late", "1"); /* not part of the list */
  bool initial = false;
  for (int i = 0; i < 3; i++) {
    CHECK(!kl_delta_fifo_has_synced(f));
    kl_deltas d = pop(f, &initial);
    CHECK(initial);
    kl_deltas_free(&d);
  }
  CHECK(kl_delta_fifo_has_synced(f));
  kl_deltas d = pop(f, &initial);
  CHECK(!initial);
  kl_deltas_free(&d);
  /* a second replace does not reset it */
  kl_delta_fifo_replace(f, l, 2, "6");
  CHECK(kl_delta_fifo_has_synced(f));
  kl_obj_unref(l[0]);
  kl_obj_unref(l[1]);
  kl_obj_unref(gone);
  kl_delta_fifo_unref(f);
  kl_store_unref(s);

  /* add before any replace: synced at once */
  f = kl_delta_fifo_new(NULL);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");
  CHECK(kl_delta_fifo_has_synced(f));
  kl_delta_fifo_unref(f);
  /* an empty first replace: synced at once too */
  f = kl_delta_fifo_new(NULL);
  kl_delta_fifo_replace(f, NULL, 0, "1");
  CHECK(kl_delta_fifo_has_synced(f));
  kl_delta_fifo_unref(f);
}

static void *blocked_pop(void *arg) {
  kl_delta_fifo *f = arg;
  kl_deltas d = KL_DELTAS_INIT;
  return (void *)(intptr_t)kl_delta_fifo_pop_deltas(f, -1, &d, NULL);
}

TEST(close_unblocks_a_blocked_pop) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  pthread_t t;
  pthread_create(&t, NULL, blocked_pop, f);
  usleep(20000); /* let it block (the result does not depend on it) */
  kl_delta_fifo_close(f);
  void *res;
  pthread_join(t, &res);
  CHECK_EQ_INT((intptr_t)res, KL_ECLOSED);
  CHECK(kl_delta_fifo_is_closed(f));
  kl_delta_fifo_unref(f);
  /* several consumers blocked at once: close wakes them all */
  f = kl_delta_fifo_new(NULL);
  pthread_t ts[3];
  for (int i = 0; i < 3; i++) pthread_create(&ts[i], NULL, blocked_pop, f);
  usleep(20000);
  kl_delta_fifo_close(f);
  for (int i = 0; i < 3; i++) {
    pthread_join(ts[i], &res);
    CHECK_EQ_INT((intptr_t)res, KL_ECLOSED);
  }
  /* items queued before close are still handed out, then KL_ECLOSED */
  kl_delta_fifo_unref(f);
  f = kl_delta_fifo_new(NULL);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");
  kl_delta_fifo_close(f);
  kl_deltas d = KL_DELTAS_INIT;
  CHECK_EQ_INT(kl_delta_fifo_pop_deltas(f, -1, &d, NULL), 0);
  kl_deltas_free(&d);
  CHECK_EQ_INT(kl_delta_fifo_pop(f, -1, NULL, NULL), KL_ECLOSED);
  kl_delta_fifo_unref(f);
}

TEST(pop_times_out_on_empty_queue) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  kl_deltas d = KL_DELTAS_INIT;
  CHECK_EQ_INT(kl_delta_fifo_pop_deltas(f, 0.01, &d, NULL), KL_ETIMEDOUT);
  CHECK_EQ_INT(kl_delta_fifo_pop(f, 0, NULL, NULL), KL_ETIMEDOUT);
  kl_delta_fifo_unref(f);
}

TEST(get_by_key_copies_pending_deltas) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");
  kl_deltas d;
  CHECK(kl_delta_fifo_get_by_key(f, "ns/a", &d));
  CHECK_EQ_INT(d.n, 1);
  kl_deltas_free(&d);
  CHECK(!kl_delta_fifo_get_by_key(f, "ns/zz", &d));
  CHECK_EQ_INT(kl_delta_fifo_len(f), 1);
  CHECK_EQ_STR(kl_delta_type_name(KL_DELTA_REPLACED), "Replaced");
  CHECK_EQ_INT(kl_delta_type_parse("Sync"), KL_DELTA_SYNC);
  CHECK_EQ_INT(kl_delta_type_parse("nope"), 0);
  kl_delta_fifo_unref(f);
}


/* ---- batches: push_batch, pop_batch ---- */

static kl_fifo_op op_of(kl_delta_type t, kl_obj *o) {
  kl_fifo_op x = {t, o};
  return x;
}

TEST(push_batch_queues_in_order_like_single_pushes) {
  kl_store *s = kl_store_new();
  kl_obj *known = tu_configmap("ns", "k", "1");
  kl_store_add(s, known);
  kl_delta_fifo_opts opts = {.known = s};
  kl_delta_fifo *f = kl_delta_fifo_new(&opts);
  kl_obj *a1 = tu_configmap("ns", "a", "1"), *a2 = tu_configmap("ns", "a", "2");
  kl_obj *b1 = tu_configmap("ns", "b", "1");
  kl_obj *ghost = tu_configmap("ns", "ghost", "1");
  kl_obj *k2 = tu_configmap("ns", "k", "2");
  kl_fifo_op ops[] = {
      op_of(KL_DELTA_ADDED, a1),   op_of(KL_DELTA_ADDED, b1),
      op_of(KL_DELTA_UPDATED, a2), op_of(KL_DELTA_DELETED, ghost),
      op_of(KL_DELTA_DELETED, k2), op_of(KL_DELTA_DELETED, b1),
  };
  CHECK_EQ_INT(kl_delta_fifo_push_batch(f, ops, 6), 0);
  kl_strv keys = {0};
  kl_delta_fifo_list_keys(f, &keys); /* ghost: neither queued nor known */
  CHECK_EQ_INT(keys.n, 3);
  if (keys.n == 3) {
    CHECK_EQ_STR(keys.v[0], "ns/a");
    CHECK_EQ_STR(keys.v[1], "ns/b");
    CHECK_EQ_STR(keys.v[2], "ns/k");
  }
  kl_strv_free(&keys);
  kl_deltas d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 2);
  if (d.n == 2) {
    CHECK_EQ_INT(d.v[0].type, KL_DELTA_ADDED);
    CHECK_EQ_INT(d.v[1].type, KL_DELTA_UPDATED);
    CHECK_EQ_STR(tu_rv_of(&d.v[1]), "2");
  }
  kl_deltas_free(&d);
  d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 2);
  if (d.n == 2) CHECK_EQ_INT(d.v[1].type, KL_DELTA_DELETED);
  kl_deltas_free(&d);
  d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 1);
  if (d.n == 1) CHECK(d.v[0].obj == k2);
  kl_deltas_free(&d);
  /* a bad op refuses the whole batch */
  kl_fifo_op bad[] = {op_of(KL_DELTA_ADDED, a1), op_of(KL_DELTA_ADDED, NULL)};
  CHECK_EQ_INT(kl_delta_fifo_push_batch(f, bad, 2), KL_EINVAL);
  bad[1] = op_of(KL_DELTA_SYNC, b1);
  CHECK_EQ_INT(kl_delta_fifo_push_batch(f, bad, 2), KL_EINVAL);
  CHECK_EQ_INT(kl_delta_fifo_len(f), 0);
  CHECK_EQ_INT(kl_delta_fifo_push_batch(f, NULL, 0), 0);
  kl_obj_unref(a1), kl_obj_unref(a2), kl_obj_unref(b1), kl_obj_unref(ghost);
  kl_obj_unref(k2), kl_obj_unref(known);
  kl_delta_fifo_unref(f);
  kl_store_unref(s);
}

/* What a batch function saw, and what it does while the batch is in
 * flight (the queue's lock is not held then). */
typedef struct seen {
  int calls;
  size_t n;
  char keys[8][32];
  size_t ndeltas[8];
  bool initial[8];
  bool synced_inside;
  kl_delta_fifo *f;
  int fail_first;   /* rcs[0] = KL_EAGAIN on the first call */
  void (*during)(struct seen *);
  int pop_rc;       /* a second pop tried during the batch */
} seen;

static void record(const kl_deltas *items, const bool *initial, int *rcs,
                   size_t n, void *ud) {
  seen *w = ud;
  w->calls++;
  w->n = n;
  for (size_t i = 0; i < n && i < 8; i++) {
    snprintf(w->keys[i], sizeof w->keys[i], "%s",
             kl_delta_key(kl_deltas_newest(&items[i])));
    w->ndeltas[i] = items[i].n;
    w->initial[i] = initial[i];
    CHECK_EQ_INT(rcs[i], 0);
  }
  if (w->f) w->synced_inside = kl_delta_fifo_has_synced(w->f);
  if (w->fail_first && w->calls == 1) rcs[0] = KL_EAGAIN;
  if (w->during) w->during(w);
}

TEST(pop_batch_takes_queued_keys_in_order_up_to_max) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");
  TU_ADD(f, kl_delta_fifo_add, "ns", "b", "1");
  TU_ADD(f, kl_delta_fifo_update, "ns", "a", "2");
  TU_ADD(f, kl_delta_fifo_add, "ns", "c", "1");
  seen w = {0};
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 1, 2, record, &w), 2);
  CHECK_EQ_INT(w.n, 2);
  CHECK_EQ_STR(w.keys[0], "ns/a");
  CHECK_EQ_INT(w.ndeltas[0], 2);
  CHECK_EQ_STR(w.keys[1], "ns/b");
  CHECK_EQ_INT(kl_delta_fifo_len(f), 1);
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 1, 0, record, &w), 1);
  CHECK_EQ_STR(w.keys[0], "ns/c");
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 0.01, 0, record, &w),
               KL_ETIMEDOUT);
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 0.01, 0, NULL, NULL), KL_EINVAL);
  kl_delta_fifo_close(f);
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 1, 0, record, &w), KL_ECLOSED);
  CHECK_EQ_INT(w.calls, 2);
  kl_delta_fifo_unref(f);
}

static void update_a(seen *w) {
  TU_ADD(w->f, kl_delta_fifo_update, "ns", "a", "2");
  TU_ADD(w->f, kl_delta_fifo_add, "ns", "c", "1");
}

/* A retried item goes back AHEAD of the deltas its key got while it was in
 * flight (never overtaking them); other keys keep their order. */
TEST(pop_batch_retry_keeps_per_key_order) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");
  TU_ADD(f, kl_delta_fifo_add, "ns", "b", "1");
  seen w = {.f = f, .fail_first = 1, .during = update_a};
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 1, 0, record, &w), 2);
  kl_strv keys = {0};
  kl_delta_fifo_list_keys(f, &keys);
  CHECK_EQ_INT(keys.n, 2);
  if (keys.n == 2) {
    CHECK_EQ_STR(keys.v[0], "ns/a"); /* queued again during the batch */
    CHECK_EQ_STR(keys.v[1], "ns/c");
  }
  kl_strv_free(&keys);
  kl_deltas d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 2);
  if (d.n == 2) {
    CHECK_EQ_INT(d.v[0].type, KL_DELTA_ADDED);
    CHECK_EQ_STR(tu_rv_of(&d.v[0]), "1");
    CHECK_EQ_INT(d.v[1].type, KL_DELTA_UPDATED);
    CHECK_EQ_STR(tu_rv_of(&d.v[1]), "2");
  }
  kl_deltas_free(&d);
  kl_delta_fifo_unref(f);

  /* nothing new for the key: it goes to the back */
  f = kl_delta_fifo_new(NULL);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");
  TU_ADD(f, kl_delta_fifo_add, "ns", "b", "1");
  seen w2 = {.f = f, .fail_first = 1};
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 1, 1, record, &w2), 1);
  d = pop(f, NULL);
  CHECK_EQ_STR(kl_delta_key(&d.v[0]), "ns/b");
  kl_deltas_free(&d);
  d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 1);
  if (d.n == 1) CHECK_EQ_STR(kl_delta_key(&d.v[0]), "ns/a");
  kl_deltas_free(&d);
  kl_delta_fifo_unref(f);
}

static void delete_in_flight(seen *w) {
  TU_ADD(w->f, kl_delta_fifo_delete, "ns", "a", "2"); /* Added in flight */
  TU_ADD(w->f, kl_delta_fifo_delete, "ns", "k", "3"); /* Deleted in flight */
  w->pop_rc = kl_delta_fifo_pop(w->f, 0.01, NULL, NULL);
}

/* While the batch's store writes are pending, a delete of a key popped as
 * Added must still be queued (the store does not know it yet), and a second
 * delete of a key popped as Deleted must not be (it is going away). */
TEST(delete_during_batch_sees_in_flight_keys) {
  kl_store *s = kl_store_new();
  kl_obj *k1 = tu_configmap("ns", "k", "1");
  kl_store_add(s, k1);
  kl_delta_fifo_opts opts = {.known = s};
  kl_delta_fifo *f = kl_delta_fifo_new(&opts);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");
  TU_ADD(f, kl_delta_fifo_delete, "ns", "k", "2");
  seen w = {.f = f, .during = delete_in_flight};
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 1, 0, record, &w), 2);
  /* one batch at a time: a pop during the batch found nothing to take */
  CHECK_EQ_INT(w.pop_rc, KL_ETIMEDOUT);
  CHECK_EQ_INT(kl_delta_fifo_len(f), 1);
  kl_deltas d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 1);
  if (d.n == 1) {
    CHECK_EQ_STR(kl_delta_key(&d.v[0]), "ns/a");
    CHECK_EQ_INT(d.v[0].type, KL_DELTA_DELETED);
  }
  kl_deltas_free(&d);
  kl_obj_unref(k1);
  kl_delta_fifo_unref(f);
  kl_store_unref(s);
}

static void relist_in_flight(seen *w) {
  kl_obj *b2 = tu_configmap("ns", "b", "2");
  CHECK_EQ_INT(kl_delta_fifo_replace(w->f, &b2, 1, "9"), 0);
  kl_obj_unref(b2);
  CHECK_EQ_INT(kl_delta_fifo_resync(w->f), 0);
}

/* A relist while a batch is in flight: a popped key the list lacks gets a
 * tombstone with its in-flight state (the store does not have it yet); a
 * popped Deleted key gets none; the known store's stale copy of a popped
 * key is not used. The resync that follows adds nothing: k (popped as
 * Deleted, still in the store) must not come back as a Sync. */
TEST(replace_and_resync_during_batch_see_in_flight_keys) {
  kl_store *s = kl_store_new();
  kl_obj *k1 = tu_configmap("ns", "k", "1"), *m1 = tu_configmap("ns", "m", "1");
  kl_store_add(s, k1);
  kl_store_add(s, m1);
  kl_delta_fifo_opts opts = {.known = s, .emit_replaced = true};
  kl_delta_fifo *f = kl_delta_fifo_new(&opts);
  TU_ADD(f, kl_delta_fifo_add, "ns", "a", "1");    /* not in the store */
  TU_ADD(f, kl_delta_fifo_delete, "ns", "k", "2"); /* in the store */
  TU_ADD(f, kl_delta_fifo_update, "ns", "m", "2"); /* store has m@1 */
  seen w = {.f = f, .during = relist_in_flight};
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 1, 0, record, &w), 3);
  kl_strv keys = {0};
  kl_delta_fifo_list_keys(f, &keys);
  CHECK_EQ_INT(keys.n, 3);
  if (keys.n == 3) {
    CHECK_EQ_STR(keys.v[0], "ns/b");
    CHECK_EQ_STR(keys.v[1], "ns/a");
    CHECK_EQ_STR(keys.v[2], "ns/m");
  }
  kl_strv_free(&keys);
  kl_deltas d = pop(f, NULL); /* b: Replaced */
  CHECK_EQ_INT(d.n, 1);
  if (d.n == 1) CHECK_EQ_INT(d.v[0].type, KL_DELTA_REPLACED);
  kl_deltas_free(&d);
  d = pop(f, NULL); /* a: tombstone holding the in-flight object */
  CHECK_EQ_INT(d.n, 1);
  if (d.n == 1) {
    CHECK(d.v[0].tombstone);
    CHECK_EQ_STR(tu_rv_of(&d.v[0]), "1");
  }
  kl_deltas_free(&d);
  d = pop(f, NULL); /* m: tombstone with m@2, not the store's m@1 */
  CHECK_EQ_INT(d.n, 1);
  if (d.n == 1) {
    CHECK(d.v[0].tombstone);
    CHECK_EQ_STR(tu_rv_of(&d.v[0]), "2");
  }
  kl_deltas_free(&d);
  CHECK_EQ_INT(kl_delta_fifo_len(f), 0);
  kl_delta_fifo_unref(f);
  kl_obj_unref(k1), kl_obj_unref(m1);
  kl_store_unref(s);
}

static void resync_now(seen *w) { kl_delta_fifo_resync(w->f); }

TEST(resync_during_batch_skips_in_flight_keys) {
  kl_store *s = kl_store_new();
  kl_obj *m1 = tu_configmap("ns", "m", "1"), *n1 = tu_configmap("ns", "n", "1");
  kl_store_add(s, m1);
  kl_store_add(s, n1);
  kl_delta_fifo_opts opts = {.known = s};
  kl_delta_fifo *f = kl_delta_fifo_new(&opts);
  TU_ADD(f, kl_delta_fifo_update, "ns", "m", "2");
  seen w = {.f = f, .during = resync_now};
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 1, 0, record, &w), 1);
  kl_deltas d = pop(f, NULL);
  CHECK_EQ_INT(d.n, 1);
  if (d.n == 1) {
    CHECK_EQ_STR(kl_delta_key(&d.v[0]), "ns/n");
    CHECK_EQ_INT(d.v[0].type, KL_DELTA_SYNC);
  }
  kl_deltas_free(&d);
  CHECK_EQ_INT(kl_delta_fifo_len(f), 0); /* no stale Sync of m@1 */
  kl_obj_unref(m1), kl_obj_unref(n1);
  kl_delta_fifo_unref(f);
  kl_store_unref(s);
}

TEST(has_synced_turns_true_only_after_the_batch_is_settled) {
  kl_delta_fifo *f = kl_delta_fifo_new(NULL);
  kl_obj *l[3] = {tu_configmap("ns", "a", "1"), tu_configmap("ns", "b", "1"),
                  tu_configmap("ns", "c", "1")};
  kl_delta_fifo_replace(f, l, 3, "5");
  TU_ADD(f, kl_delta_fifo_add, "ns", "late", "1");
  seen w = {.f = f};
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 1, 2, record, &w), 2);
  CHECK(!w.synced_inside);
  CHECK(w.initial[0] && w.initial[1]);
  CHECK(!kl_delta_fifo_has_synced(f)); /* c is still queued */
  CHECK_EQ_INT(kl_delta_fifo_pop_batch(f, 1, 0, record, &w), 2);
  CHECK(!w.synced_inside); /* c is in flight */
  CHECK(w.initial[0]);     /* c */
  CHECK(!w.initial[1]);    /* late */
  CHECK(kl_delta_fifo_has_synced(f));
  for (int i = 0; i < 3; i++) kl_obj_unref(l[i]);
  kl_delta_fifo_unref(f);
}

int main(void) {
  kl_log_set_level(KL_LOG_ERROR);
  RUN(add_update_coalesce_per_key_in_order);
  RUN(delete_of_unknown_key_is_ignored);
  RUN(consecutive_deletes_dedup_keeping_real_object);
  RUN(replace_tombstones_for_store_only_queue_only_and_both);
  RUN(replace_emits_sync_when_not_emit_replaced);
  RUN(resync_skips_pending_keys_and_does_not_grow);
  RUN(requeue_on_error_goes_behind_newer_keys);
  RUN(add_if_not_present_drops_stale_deltas);
  RUN(has_synced_after_first_replace_is_popped);
  RUN(close_unblocks_a_blocked_pop);
  RUN(pop_times_out_on_empty_queue);
  RUN(get_by_key_copies_pending_deltas);
  RUN(push_batch_queues_in_order_like_single_pushes);
  RUN(pop_batch_takes_queued_keys_in_order_up_to_max);
  RUN(pop_batch_retry_keeps_per_key_order);
  RUN(delete_during_batch_sees_in_flight_keys);
  RUN(replace_and_resync_during_batch_see_in_flight_keys);
  RUN(resync_during_batch_skips_in_flight_keys);
  RUN(has_synced_turns_true_only_after_the_batch_is_settled);
  return ctest_summary();
}
