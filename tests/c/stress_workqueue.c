/* stress_workqueue.c: producers add, re-add and rate-limit keys while
 * workers process them; no key is ever processed by two workers at once,
 * and every key added after its last processing started gets processed
 * again (nothing lost). Runs KLUA_STRESS_SECONDS (default 10). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "ctest.h"
#include "kl.h"
#include "workqueue.h"

#define NKEYS 64
#define NPRODUCERS 3
#define NWORKERS 4

static kl_wq *q;
static atomic_int in_flight[NKEYS];
static atomic_long add_gen[NKEYS];   /* bumped before every add */
static atomic_long seen_gen[NKEYS];  /* gen observed at processing start */
static atomic_int overlap;
static atomic_long processed;
static atomic_bool stop_producers;

static unsigned rnd(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return *s >> 8;
}

static void *producer(void *arg) {
  unsigned s = (unsigned)(uintptr_t)arg;
  char key[16];
  while (!atomic_load(&stop_producers)) {
    int k = (int)(rnd(&s) % NKEYS);
    snprintf(key, sizeof key, "ns/k%d", k);
    atomic_fetch_add(&add_gen[k], 1);
    switch (rnd(&s) % 3) {
    case 0: kl_wq_add(q, key); break;
    case 1: kl_wq_add_after(q, key, (rnd(&s) % 5) / 1000.0); break;
    default: kl_wq_add_rate_limited(q, key); break;
    }
    if (rnd(&s) % 16 == 0) usleep(100);
  }
  return NULL;
}

static void *worker(void *arg) {
  (void)arg;
  char *key;
  while (kl_wq_get(q, -1, &key) == 0) {
    int k = atoi(key + 4);
    if (atomic_fetch_add(&in_flight[k], 1) != 0) atomic_fetch_add(&overlap, 1);
    atomic_store(&seen_gen[k], atomic_load(&add_gen[k]));
    if (k % 7 == 0) usleep(50);
    atomic_fetch_sub(&in_flight[k], 1);
    atomic_fetch_add(&processed, 1);
    kl_wq_forget(q, key);
    kl_wq_done(q, key);
    free(key);
  }
  return NULL;
}

TEST(no_overlap_and_nothing_lost) {
  const char *env = getenv("KLUA_STRESS_SECONDS");
  double secs = env ? atof(env) : 10;
  kl_wq_opts o = {.base_delay = 0.0001, .max_delay = 0.01, .qps = 1e6,
                  .burst = 1000000};
  q = kl_wq_new(&o);
  pthread_t p[NPRODUCERS], w[NWORKERS];
  for (int i = 0; i < NWORKERS; i++) pthread_create(&w[i], NULL, worker, NULL);
  for (int i = 0; i < NPRODUCERS; i++)
    pthread_create(&p[i], NULL, producer, (void *)(uintptr_t)(i + 1));
  usleep((useconds_t)(secs * 1e6));
  atomic_store(&stop_producers, true);
  for (int i = 0; i < NPRODUCERS; i++) pthread_join(p[i], NULL);
  /* let the queue settle: everything delayed is due within max_delay
   * (bounded by time, generously: TSan on a loaded machine is slow) */
  for (double end = kl_now() + 60; kl_now() < end;) {
    kl_wq_stats st;
    kl_wq_get_stats(q, &st);
    if (!st.depth && !st.waiting && !st.processing) break;
    usleep(10000);
  }
  kl_wq_shutdown_drain(q, 10);
  for (int i = 0; i < NWORKERS; i++) pthread_join(w[i], NULL);
  CHECK_EQ_INT(atomic_load(&overlap), 0);
  for (int k = 0; k < NKEYS; k++) {
    /* the last processing of k began after its last add */
    if (atomic_load(&add_gen[k]) != atomic_load(&seen_gen[k]))
      printf("  key %d: added gen %ld, last processed at gen %ld\n", k,
             atomic_load(&add_gen[k]), atomic_load(&seen_gen[k]));
    CHECK(atomic_load(&add_gen[k]) == atomic_load(&seen_gen[k]));
  }
  CHECK(atomic_load(&processed) > 0);
  printf("# processed %ld items\n", atomic_load(&processed));
  kl_wq_free(q);
}

int main(void) {
  RUN(no_overlap_and_nothing_lost);
  return ctest_summary();
}
