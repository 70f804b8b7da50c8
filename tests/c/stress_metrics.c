/* stress_metrics.c: many threads updating the same and new series while
 * another thread scrapes (run under TSan and ASan). The totals must be
 * exact: no increment is lost. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "ctest.h"
#include "metrics.h"

#define THREADS 4
#define ITERS 20000

static kl_metrics *reg;
static kl_metric *cnt, *gau, *his;
static atomic_int stop_scrape;

static void *worker(void *arg) {
  long id = (long)arg;
  char own[32];
  snprintf(own, sizeof own, "w%ld", id);
  kl_metric_series *shared = kl_metric_withv(cnt, "shared");
  for (int i = 0; i < ITERS; i++) {
    kl_counter_inc(shared);
    kl_counter_add(kl_metric_withv(cnt, own), 0.5);
    kl_gauge_add(kl_metric_withv(gau, "g"), 1);
    kl_gauge_add(kl_metric_withv(gau, "g"), -1);
    kl_histogram_observe(kl_metric_withv(his, "h"), (i % 3) * 0.5);
    if (i % 1000 == 0) {
      char dyn[32];
      snprintf(dyn, sizeof dyn, "d%ld-%d", id, i);
      kl_counter_inc(kl_metric_withv(cnt, dyn));
    }
  }
  return NULL;
}

static void *scraper(void *arg) {
  (void)arg;
  while (!atomic_load(&stop_scrape)) {
    kl_buf b = KL_BUF_INIT;
    kl_metrics_expose(reg, &b);
    kl_buf_free(&b);
  }
  return NULL;
}

TEST(concurrent_updates_are_exact) {
  reg = kl_metrics_new();
  const char *l[] = {"k", NULL};
  const double b[] = {0.25, 0.75};
  CHECK_EQ_INT(kl_metrics_counter(reg, "c_total", "", l, &cnt, NULL), 0);
  CHECK_EQ_INT(kl_metrics_gauge(reg, "g", "", l, &gau, NULL), 0);
  CHECK_EQ_INT(kl_metrics_histogram(reg, "h", "", l, b, 2, &his, NULL), 0);
  pthread_t th[THREADS], sc;
  pthread_create(&sc, NULL, scraper, NULL);
  for (long i = 0; i < THREADS; i++)
    pthread_create(&th[i], NULL, worker, (void *)i);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  atomic_store(&stop_scrape, 1);
  pthread_join(sc, NULL);
  CHECK(kl_metric_series_value(kl_metric_withv(cnt, "shared")) ==
        THREADS * ITERS);
  CHECK(kl_metric_series_value(kl_metric_withv(cnt, "w0")) == ITERS * 0.5);
  CHECK(kl_metric_series_value(kl_metric_withv(gau, "g")) == 0);
  CHECK_EQ_INT(kl_metric_series_count(kl_metric_withv(his, "h")),
               THREADS * ITERS);
  kl_buf out = KL_BUF_INIT;
  kl_metrics_expose(reg, &out);
  char want[128];
  /* per thread: i%3==0 -> 0 (le 0.25), 1 -> 0.5, 2 -> 1 (+Inf only) */
  int per0 = 0, per1 = 0;
  for (int i = 0; i < ITERS; i++) {
    if (i % 3 == 0) per0++;
    if (i % 3 <= 1) per1++;
  }
  snprintf(want, sizeof want, "h_bucket{k=\"h\",le=\"0.25\"} %d\n",
           per0 * THREADS);
  CHECK(strstr(out.data, want) != NULL);
  snprintf(want, sizeof want, "h_bucket{k=\"h\",le=\"0.75\"} %d\n",
           per1 * THREADS);
  CHECK(strstr(out.data, want) != NULL);
  CHECK(strstr(out.data, "c_total{k=\"d3-19000\"} 1\n") != NULL);
  kl_buf_free(&out);
  kl_metrics_free(reg);
}

int main(void) {
  RUN(concurrent_updates_are_exact);
  return ctest_summary();
}
