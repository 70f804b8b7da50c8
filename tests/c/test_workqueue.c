/* test_workqueue.c: the work queue's guarantees, one by one. */
#include <pthread.h>
#include <unistd.h>

#include "ctest.h"
#include "kl.h"
#include "workqueue.h"

static char *get_now(kl_wq *q) {
  char *it = NULL;
  int rc = kl_wq_get(q, 0, &it);
  return rc == 0 ? it : NULL;
}

TEST(fifo_and_dedupe) {
  kl_wq *q = kl_wq_new(NULL);
  kl_wq_add(q, "a");
  kl_wq_add(q, "b");
  kl_wq_add(q, "a"); /* already queued: no-op */
  kl_wq_add(q, "c");
  CHECK_EQ_INT(kl_wq_len(q), 3);
  const char *want[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    char *it = get_now(q);
    CHECK_EQ_STR(it, want[i]);
    kl_wq_done(q, it);
    free(it);
  }
  CHECK(get_now(q) == NULL);
  kl_wq_stats st;
  kl_wq_get_stats(q, &st);
  CHECK_EQ_INT(st.adds_total, 3);
  CHECK_EQ_INT(st.work_count, 3);
  kl_wq_free(q);
}

TEST(processing_item_is_deferred_until_done) {
  kl_wq *q = kl_wq_new(NULL);
  kl_wq_add(q, "k");
  char *it = get_now(q);
  CHECK_EQ_STR(it, "k");
  kl_wq_add(q, "k"); /* while processing: must not be handed out */
  kl_wq_add(q, "k"); /* and re-adding twice still means once */
  CHECK_EQ_INT(kl_wq_len(q), 0);
  CHECK(get_now(q) == NULL);
  kl_wq_done(q, it);
  free(it);
  CHECK_EQ_INT(kl_wq_len(q), 1);
  it = get_now(q);
  CHECK_EQ_STR(it, "k");
  kl_wq_done(q, it);
  free(it);
  CHECK(get_now(q) == NULL); /* exactly once */
  kl_wq_free(q);
}

TEST(delayed_adds) {
  kl_wq *q = kl_wq_new(NULL);
  kl_wq_add_after(q, "later", 0.2);
  kl_wq_add_after(q, "soon", 0.05);
  kl_wq_add_after(q, "now", 0);
  CHECK_EQ_INT(kl_wq_len(q), 1);
  char *it = get_now(q);
  CHECK_EQ_STR(it, "now");
  kl_wq_done(q, it);
  free(it);
  /* blocking get wakes when the delayed item is due, in due order */
  CHECK_EQ_INT(kl_wq_get(q, 5, &it), 0);
  CHECK_EQ_STR(it, "soon");
  kl_wq_done(q, it);
  free(it);
  CHECK_EQ_INT(kl_wq_get(q, 5, &it), 0);
  CHECK_EQ_STR(it, "later");
  kl_wq_done(q, it);
  free(it);
  /* an earlier add_after for a waiting item wins; a later one does not */
  kl_wq_add_after(q, "x", 60);
  kl_wq_add_after(q, "x", 0.01);
  kl_wq_add_after(q, "x", 30);
  CHECK_EQ_INT(kl_wq_get(q, 5, &it), 0);
  CHECK_EQ_STR(it, "x");
  kl_wq_done(q, it);
  free(it);
  kl_wq_stats st;
  kl_wq_get_stats(q, &st);
  CHECK_EQ_INT(st.waiting, 0);
  /* a delayed item that is already queued is not duplicated */
  kl_wq_add(q, "y");
  kl_wq_add_after(q, "y", 0.01);
  usleep(30000);
  CHECK_EQ_INT(kl_wq_len(q), 1);
  kl_wq_free(q);
}

TEST(backoff_grows_caps_and_forgets) {
  kl_wq_opts o = {.base_delay = 0.005, .max_delay = 1000, .qps = 1e6,
                  .burst = 1000000};
  kl_wq *q = kl_wq_new(&o);
  double expect = 0.005;
  for (int i = 0; i < 10; i++) {
    double d = kl_wq_when(q, "item");
    CHECK(d >= expect * 0.999 && d <= expect * 1.001);
    expect *= 2;
  }
  CHECK_EQ_INT(kl_wq_num_requeues(q, "item"), 10);
  CHECK(kl_wq_when(q, "other") < 0.0051); /* per item */
  for (int i = 0; i < 40; i++) kl_wq_when(q, "item");
  CHECK(kl_wq_when(q, "item") == 1000); /* capped at max_delay */
  kl_wq_forget(q, "item");
  CHECK_EQ_INT(kl_wq_num_requeues(q, "item"), 0);
  CHECK(kl_wq_when(q, "item") < 0.0051);
  kl_wq_free(q);
}

TEST(token_bucket_limits_overall_rate) {
  /* 0.1 qps: the bucket refills by 0.1 token a second, so the delays
   * below stay within 1 s of the exact ones unless this thread is held up
   * for seconds (at 1 qps, 0.1 s of scheduling delay failed them) */
  kl_wq_opts o = {.base_delay = 0.001, .max_delay = 1, .qps = 0.1,
                  .burst = 2};
  kl_wq *q = kl_wq_new(&o);
  CHECK(kl_wq_when(q, "a") < 0.01);
  CHECK(kl_wq_when(q, "b") < 0.01);
  double d = kl_wq_when(q, "c"); /* burst used up: ~10 s at 0.1 qps */
  CHECK(d > 9 && d <= 10.0);
  d = kl_wq_when(q, "d");
  CHECK(d > 19 && d <= 20.0);
  kl_wq_free(q);
}

TEST(add_rate_limited_counts_retries) {
  kl_wq *q = kl_wq_new(NULL);
  kl_wq_add_rate_limited(q, "r");
  kl_wq_add_rate_limited(q, "r");
  char *it;
  CHECK_EQ_INT(kl_wq_get(q, 5, &it), 0);
  CHECK_EQ_STR(it, "r");
  kl_wq_done(q, it);
  free(it);
  kl_wq_stats st;
  kl_wq_get_stats(q, &st);
  CHECK_EQ_INT(st.retries_total, 2);
  CHECK_EQ_INT(kl_wq_num_requeues(q, "r"), 2);
  kl_wq_free(q);
}

static void *blocked_getter(void *arg) {
  kl_wq *q = arg;
  char *it = NULL;
  int rc = kl_wq_get(q, -1, &it);
  free(it);
  return (void *)(intptr_t)rc;
}

TEST(shutdown_wakes_getters_and_ignores_adds) {
  kl_wq *q = kl_wq_new(NULL);
  pthread_t t;
  pthread_create(&t, NULL, blocked_getter, q);
  usleep(20000);
  kl_wq_shutdown(q);
  void *rc;
  pthread_join(t, &rc);
  CHECK_EQ_INT((intptr_t)rc, KL_ECLOSED);
  CHECK(kl_wq_shutting_down(q));
  kl_wq_add(q, "ignored");
  CHECK_EQ_INT(kl_wq_len(q), 0);
  char *it;
  CHECK_EQ_INT(kl_wq_get(q, 0, &it), KL_ECLOSED);
  kl_wq_free(q);
}

TEST(shutdown_hands_out_what_is_queued) {
  /* as client-go: Get keeps returning queued items after ShutDown */
  kl_wq *q = kl_wq_new(NULL);
  kl_wq_add(q, "a");
  kl_wq_shutdown(q);
  char *it;
  CHECK_EQ_INT(kl_wq_get(q, 0, &it), 0);
  CHECK_EQ_STR(it, "a");
  kl_wq_done(q, it);
  free(it);
  CHECK_EQ_INT(kl_wq_get(q, 0, &it), KL_ECLOSED);
  kl_wq_free(q);
}

typedef struct {
  kl_wq *q;
  char *item;
} done_later_arg;

static void *done_later(void *arg) {
  done_later_arg *a = arg;
  usleep(50000);
  kl_wq_done(a->q, a->item);
  return NULL;
}

TEST(shutdown_drain_waits_for_processing) {
  kl_wq *q = kl_wq_new(NULL);
  kl_wq_add(q, "busy");
  char *it;
  CHECK_EQ_INT(kl_wq_get(q, 0, &it), 0);
  CHECK_EQ_INT(kl_wq_shutdown_drain(q, 0.01), KL_ETIMEDOUT);
  done_later_arg a = {q, it};
  pthread_t t;
  pthread_create(&t, NULL, done_later, &a);
  CHECK_EQ_INT(kl_wq_shutdown_drain(q, 10), 0);
  pthread_join(t, NULL);
  kl_wq_stats st;
  kl_wq_get_stats(q, &st);
  CHECK_EQ_INT(st.processing, 0);
  free(it);
  kl_wq_free(q);
}

TEST(stats_track_processing_age) {
  kl_wq *q = kl_wq_new(NULL);
  kl_wq_add(q, "a");
  kl_wq_add(q, "b");
  char *a, *b;
  kl_wq_get(q, 0, &a);
  usleep(20000);
  kl_wq_get(q, 0, &b);
  kl_wq_stats st;
  kl_wq_get_stats(q, &st);
  CHECK_EQ_INT(st.processing, 2);
  CHECK(st.longest_running_seconds >= 0.02);
  CHECK(st.unfinished_seconds >= st.longest_running_seconds);
  kl_wq_done(q, a);
  kl_wq_done(q, b);
  free(a);
  free(b);
  kl_wq_free(q);
}

int main(void) {
  RUN(fifo_and_dedupe);
  RUN(processing_item_is_deferred_until_done);
  RUN(delayed_adds);
  RUN(backoff_grows_caps_and_forgets);
  RUN(token_bucket_limits_overall_rate);
  RUN(add_rate_limited_counts_retries);
  RUN(shutdown_wakes_getters_and_ignores_adds);
  RUN(shutdown_hands_out_what_is_queued);
  RUN(shutdown_drain_waits_for_processing);
  RUN(stats_track_processing_age);
  return ctest_summary();
}
