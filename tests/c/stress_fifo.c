/* stress_fifo.c: several producer threads, a relister, a resyncer and one
 * consumer hammer a DeltaFIFO, then a RealFIFO, for KLUA_STRESS_SECONDS
 * (default 10, split between the runs). The consumer applies what it pops to
 * a store, as the informer does. At the end every key's final state must be
 * in the store, and no key may ever have gone back to an older version.
 * The relister simulates missed watch events (deletes and updates it does
 * not tell the queue about) so that Replace has real deletions to find.
 * Each queue runs twice: one event per push and pop (process under the
 * queue's lock), then in batches as the informer uses them (push_batch;
 * pop_batch applying to the store outside the lock while the relister's
 * Replace and the resyncer read that store). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "delta_fifo.h"
#include "kl.h"
#include "real_fifo.h"
#include "store.h"

enum { PRODUCERS = 4, KEYS_PER = 40, NKEYS = PRODUCERS * KEYS_PER };

typedef struct truth {
  bool exists;
  long rv;
} truth;

static struct {
  bool real;  /* RealFIFO or DeltaFIFO */
  bool batch; /* push_batch + pop_batch */
  kl_delta_fifo *df;
  kl_real_fifo *rf;
  kl_store *store;
  pthread_rwlock_t relist; /* producers: read; relister: write */
  truth keys[NKEYS];
  atomic_long rv;
  atomic_bool stop;
  /* consumer-side accounting (touched only under the queue's lock) */
  long applied_rv[NKEYS];
  long regressions, applied, requeues, batches, tombstones, pops;
  long pop_batches, max_batch;
} S;

static kl_obj *mk(int id, long rv) {
  char json[200];
  snprintf(json, sizeof json,
           "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
           "{\"namespace\":\"s\",\"name\":\"k%d\",\"resourceVersion\":"
           "\"%ld\"}}",
           id, rv);
  kl_obj *o = NULL;
  if (kl_obj_new(json, strlen(json), NULL, &o, NULL) != 0) abort();
  return o;
}

static int key_id(const char *key) {
  int id = -1;
  if (sscanf(key, "s/k%d", &id) != 1 || id < 0 || id >= NKEYS) abort();
  return id;
}

static int q_add(kl_obj *o) {
  return S.real ? kl_real_fifo_add(S.rf, o) : kl_delta_fifo_add(S.df, o);
}
static int q_update(kl_obj *o) {
  return S.real ? kl_real_fifo_update(S.rf, o) : kl_delta_fifo_update(S.df, o);
}
static int q_delete(kl_obj *o) {
  return S.real ? kl_real_fifo_delete(S.rf, o) : kl_delta_fifo_delete(S.df, o);
}

/* Batch mode: 1-8 random changes, queued with one push_batch. */
static void produce_batch(unsigned *seed, int p) {
  kl_fifo_op ops[8];
  int n = 1 + (int)(rand_r(seed) % 8);
  pthread_rwlock_rdlock(&S.relist);
  for (int j = 0; j < n; j++) {
    int id = p * KEYS_PER + (int)(rand_r(seed) % KEYS_PER);
    truth *t = &S.keys[id];
    long rv = atomic_fetch_add(&S.rv, 1) + 1;
    if (!t->exists) {
      ops[j] = (kl_fifo_op){KL_DELTA_ADDED, mk(id, rv)};
      t->exists = true;
      t->rv = rv;
    } else if (rand_r(seed) % 10 < 7) {
      ops[j] = (kl_fifo_op){KL_DELTA_UPDATED, mk(id, rv)};
      t->rv = rv;
    } else {
      ops[j] = (kl_fifo_op){KL_DELTA_DELETED, mk(id, t->rv)};
      t->exists = false;
    }
  }
  int rc = S.real ? kl_real_fifo_push_batch(S.rf, ops, (size_t)n)
                  : kl_delta_fifo_push_batch(S.df, ops, (size_t)n);
  if (rc != 0) abort();
  pthread_rwlock_unlock(&S.relist);
  for (int j = 0; j < n; j++) kl_obj_unref(ops[j].obj);
}

static void *producer(void *arg) {
  int p = (int)(intptr_t)arg;
  unsigned seed = 7u + (unsigned)p;
  long ops = 0;
  while (!atomic_load(&S.stop)) {
    if (S.batch) {
      produce_batch(&seed, p);
      if (++ops % 16 == 0) sched_yield();
      continue;
    }
    int id = p * KEYS_PER + (int)(rand_r(&seed) % KEYS_PER);
    pthread_rwlock_rdlock(&S.relist);
    truth *t = &S.keys[id];
    long rv = atomic_fetch_add(&S.rv, 1) + 1;
    if (!t->exists) {
      kl_obj *o = mk(id, rv);
      if (q_add(o) != 0) abort();
      kl_obj_unref(o);
      t->exists = true;
      t->rv = rv;
    } else if (rand_r(&seed) % 10 < 7) {
      kl_obj *o = mk(id, rv);
      if (q_update(o) != 0) abort();
      kl_obj_unref(o);
      t->rv = rv;
    } else {
      kl_obj *o = mk(id, t->rv); /* the final state of the deleted object */
      if (q_delete(o) != 0) abort();
      kl_obj_unref(o);
      t->exists = false;
    }
    pthread_rwlock_unlock(&S.relist);
    if (++ops % 64 == 0) sched_yield();
  }
  return NULL;
}

/* Relists every so often: first "misses" a few events (changes the truth
 * without telling the queue), then replaces with the whole truth. */
static void *relister(void *arg) {
  (void)arg;
  unsigned seed = 99;
  while (!atomic_load(&S.stop)) {
    usleep(2000);
    pthread_rwlock_wrlock(&S.relist);
    for (int i = 0; i < 5; i++) {
      truth *t = &S.keys[rand_r(&seed) % NKEYS];
      if (!t->exists) continue;
      if (rand_r(&seed) % 2) t->exists = false;      /* missed delete */
      else t->rv = atomic_fetch_add(&S.rv, 1) + 1;   /* missed update */
    }
    kl_obj *list[NKEYS];
    size_t n = 0;
    for (int id = 0; id < NKEYS; id++) {
      if (S.keys[id].exists) list[n++] = mk(id, S.keys[id].rv);
    }
    char rv[32];
    snprintf(rv, sizeof rv, "%ld", atomic_load(&S.rv));
    int rc = S.real ? kl_real_fifo_replace(S.rf, list, n, rv)
                    : kl_delta_fifo_replace(S.df, list, n, rv);
    if (rc != 0) abort();
    for (size_t i = 0; i < n; i++) kl_obj_unref(list[i]);
    pthread_rwlock_unlock(&S.relist);
  }
  return NULL;
}

static void *resyncer(void *arg) {
  (void)arg;
  while (!atomic_load(&S.stop)) {
    usleep(1000);
    int rc = S.real ? kl_real_fifo_resync(S.rf) : kl_delta_fifo_resync(S.df);
    if (rc != 0) abort();
  }
  return NULL;
}

static void check_order(const kl_delta *d) {
  if (d->type == KL_DELTA_DELETED || !d->obj) return;
  int id = key_id(kl_delta_key(d));
  long rv = atol(kl_obj_resource_version(d->obj));
  if (rv < S.applied_rv[id]) S.regressions++;
  S.applied_rv[id] = rv;
}

static void apply_one(const kl_delta *d) {
  check_order(d);
  if (d->tombstone) S.tombstones++;
  if (d->type == KL_DELTA_DELETED) {
    kl_store_delete_key(S.store, kl_delta_key(d));
  } else {
    kl_store_update(S.store, d->obj);
  }
  S.applied++;
}

/* Runs under the queue's lock, like HandleDeltas in client-go (or, through
 * process_batch, on the consumer thread outside it). */
static int process(kl_deltas *ds, bool initial, void *ud) {
  (void)initial;
  unsigned *seed = ud;
  S.pops++;
  if (!S.real && rand_r(seed) % 50 == 0) {
    S.requeues++;
    return KL_EAGAIN; /* retried later, behind newer keys */
  }
  if (ds->replace_batch) {
    S.batches++;
    kl_objv objs = {0};
    for (size_t i = 0; i < ds->n; i++) {
      const kl_delta *d = &ds->v[i];
      check_order(d);
      if (d->tombstone) S.tombstones++;
      if (d->type == KL_DELTA_REPLACED) kl_objv_push(&objs, kl_obj_ref(d->obj));
    }
    if (kl_store_replace(S.store, objs.v, objs.n, ds->resource_version) != 0)
      abort();
    kl_objv_free(&objs);
    S.applied += (long)ds->n;
    return 0;
  }
  for (size_t i = 0; i < ds->n; i++) apply_one(&ds->v[i]);
  return 0;
}

/* The batch function: every item through process, outside the lock. */
static void process_batch(const kl_deltas *items, const bool *initial,
                          int *rcs, size_t n, void *ud) {
  S.pop_batches++;
  if ((long)n > S.max_batch) S.max_batch = (long)n;
  for (size_t i = 0; i < n; i++)
    rcs[i] = process((kl_deltas *)&items[i], initial[i], ud);
}

static void *consumer(void *arg) {
  (void)arg;
  unsigned seed = 12345;
  for (;;) {
    int rc;
    if (S.batch) {
      size_t max = 1 + rand_r(&seed) % 64;
      rc = S.real ? kl_real_fifo_pop_batch(S.rf, 0.5, max, process_batch,
                                           &seed)
                  : kl_delta_fifo_pop_batch(S.df, 0.5, max, process_batch,
                                            &seed);
      if (rc > 0) rc = 0;
    } else {
      rc = S.real ? kl_real_fifo_pop(S.rf, 0.5, process, &seed)
                  : kl_delta_fifo_pop(S.df, 0.5, process, &seed);
    }
    if (rc == KL_ECLOSED) break;
    if (rc != 0 && rc != KL_ETIMEDOUT && rc != KL_EAGAIN) abort();
  }
  return NULL;
}

static void run(bool real, bool batch, double seconds) {
  memset(&S, 0, sizeof S);
  S.real = real;
  S.batch = batch;
  S.store = kl_store_new();
  pthread_rwlock_init(&S.relist, NULL);
  if (real) {
    S.rf = kl_real_fifo_new(S.store);
  } else {
    kl_delta_fifo_opts o = {.known = S.store, .emit_replaced = true};
    S.df = kl_delta_fifo_new(&o);
  }
  /* the initial list: empty, so the queue starts in its initial-list mode */
  if (real) kl_real_fifo_replace(S.rf, NULL, 0, "0");
  else kl_delta_fifo_replace(S.df, NULL, 0, "0");

  pthread_t prod[PRODUCERS], rl, rs, cons;
  pthread_create(&cons, NULL, consumer, NULL);
  for (int p = 0; p < PRODUCERS; p++) {
    pthread_create(&prod[p], NULL, producer, (void *)(intptr_t)p);
  }
  pthread_create(&rl, NULL, relister, NULL);
  pthread_create(&rs, NULL, resyncer, NULL);
  usleep((useconds_t)(seconds * 1e6));
  atomic_store(&S.stop, true);
  for (int p = 0; p < PRODUCERS; p++) pthread_join(prod[p], NULL);
  pthread_join(rl, NULL);
  pthread_join(rs, NULL);
  if (real) kl_real_fifo_close(S.rf);
  else kl_delta_fifo_close(S.df);
  pthread_join(cons, NULL);

  /* exact accounting: the store holds precisely the final truth */
  int missing = 0, extra = 0, stale = 0;
  for (int id = 0; id < NKEYS; id++) {
    char key[32];
    snprintf(key, sizeof key, "s/k%d", id);
    kl_obj *o = kl_store_get_by_key(S.store, key);
    if (S.keys[id].exists && !o) missing++;
    if (!S.keys[id].exists && o) extra++;
    if (S.keys[id].exists && o &&
        atol(kl_obj_resource_version(o)) != S.keys[id].rv)
      stale++;
    kl_obj_unref(o);
  }
  printf("  %s%s: %ld ops, %ld pops, %ld deltas applied, %ld batches, "
         "%ld tombstones, %ld requeues; %ld pop batches (max %ld items); "
         "missing %d extra %d stale %d regressions %ld\n",
         real ? "RealFIFO" : "DeltaFIFO", batch ? " (batches)" : "",
         atomic_load(&S.rv), S.pops, S.applied, S.batches, S.tombstones,
         S.requeues, S.pop_batches, S.max_batch, missing, extra, stale,
         S.regressions);
  if (batch) CHECK(S.pop_batches > 0 && S.max_batch > 1);
  CHECK_EQ_INT(missing, 0);
  CHECK_EQ_INT(extra, 0);
  CHECK_EQ_INT(stale, 0);
  CHECK_EQ_INT(S.regressions, 0);
  CHECK(S.applied > 0);
  CHECK(S.tombstones > 0);
  if (real) {
    CHECK(kl_real_fifo_has_synced(S.rf));
    CHECK_EQ_INT(kl_real_fifo_len(S.rf), 0);
    kl_real_fifo_unref(S.rf);
  } else {
    CHECK(S.requeues > 0);
    CHECK(kl_delta_fifo_has_synced(S.df));
    CHECK_EQ_INT(kl_delta_fifo_len(S.df), 0);
    kl_delta_fifo_unref(S.df);
  }
  CHECK_EQ_INT(kl_store_check_indices(S.store), 0);
  kl_store_unref(S.store);
  pthread_rwlock_destroy(&S.relist);
}

static double seconds;

TEST(delta_fifo_concurrent_producers_consumer) {
  run(false, false, seconds / 4);
}
TEST(real_fifo_concurrent_producers_consumer) { run(true, false, seconds / 4); }
TEST(delta_fifo_batches_concurrent_producers_consumer) {
  run(false, true, seconds / 4);
}
TEST(real_fifo_batches_concurrent_producers_consumer) {
  run(true, true, seconds / 4);
}

int main(void) {
  kl_log_set_level(KL_LOG_ERROR);
  const char *env = getenv("KLUA_STRESS_SECONDS");
  seconds = env ? atof(env) : 10;
  if (seconds <= 0) seconds = 10;
  RUN(delta_fifo_concurrent_producers_consumer);
  RUN(real_fifo_concurrent_producers_consumer);
  RUN(delta_fifo_batches_concurrent_producers_consumer);
  RUN(real_fifo_batches_concurrent_producers_consumer);
  return ctest_summary();
}
