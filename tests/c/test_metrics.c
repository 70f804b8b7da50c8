/* test_metrics.c: the Prometheus registry: exact exposition text (HELP/TYPE,
 * label escaping, histogram buckets), value formatting, registration rules,
 * collectors and the workqueue bridge. */
#include <math.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "apiserver.h"
#include "ctest.h"
#include "informer.h"
#include "kubeconfig.h"
#include "metrics.h"
#include "workqueue.h"

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static char *expose(kl_metrics *r) {
  kl_buf b = KL_BUF_INIT;
  kl_metrics_expose(r, &b);
  kl_buf_addc(&b, 0);
  return kl_buf_detach(&b, NULL);
}

static char *fmt(double v) {
  kl_buf b = KL_BUF_INIT;
  kl_metrics_format_value(&b, v);
  kl_buf_addc(&b, 0);
  return kl_buf_detach(&b, NULL);
}

#define CHECK_FMT(v, s)                                                      \
  do {                                                                       \
    char *f_ = fmt(v);                                                       \
    CHECK_EQ_STR(f_, s);                                                     \
    free(f_);                                                                \
  } while (0)

TEST(format_values_like_prometheus) {
  CHECK_FMT(0, "0");
  CHECK_FMT(1, "1");
  CHECK_FMT(-1, "-1");
  CHECK_FMT(0.25, "0.25");
  CHECK_FMT(0.005, "0.005");
  CHECK_FMT(1e-08, "1e-08");
  CHECK_FMT(0.0001, "0.0001");
  CHECK_FMT(123456, "123456");
  CHECK_FMT(1000000, "1e+06");
  CHECK_FMT(1234567, "1.234567e+06");
  CHECK_FMT(0.1 + 0.2, "0.30000000000000004");
  CHECK_FMT(INFINITY, "+Inf");
  CHECK_FMT(-INFINITY, "-Inf");
  CHECK_FMT(NAN, "NaN");
}

TEST(counter_and_gauge_exact_text) {
  kl_metrics *r = kl_metrics_new();
  kl_metric *c = NULL, *g = NULL, *plain = NULL;
  CHECK_EQ_INT(kl_metrics_counter(r, "app_requests_total",
                                  "Requests.\nSecond line with \\ slash",
                                  L("code", "path"), &c, NULL),
               0);
  CHECK_EQ_INT(kl_metrics_gauge(r, "app_temperature", "Temp", NULL, &g, NULL),
               0);
  CHECK_EQ_INT(kl_metrics_gauge(r, "app_empty", "No series yet", L("x"),
                                &plain, NULL),
               0);
  kl_counter_add(kl_metric_withv(c, "200", "/b"), 2);
  kl_counter_inc(kl_metric_withv(c, "200", "/a"));
  kl_counter_inc(kl_metric_withv(c, "200", "/a"));
  kl_counter_add(kl_metric_withv(c, "500", "q\"uote\\back\nnl"), 1);
  kl_counter_add(kl_metric_withv(c, "200", "/a"), -5); /* ignored */
  kl_gauge_set(kl_metric_with(g, NULL, 0), 21.5);
  kl_gauge_add(kl_metric_with(g, NULL, 0), -1);
  char *t = expose(r);
  CHECK_EQ_STR(t,
               "# HELP app_empty No series yet\n"
               "# TYPE app_empty gauge\n"
               "# HELP app_requests_total Requests.\\nSecond line with \\\\ "
               "slash\n"
               "# TYPE app_requests_total counter\n"
               "app_requests_total{code=\"200\",path=\"/a\"} 2\n"
               "app_requests_total{code=\"200\",path=\"/b\"} 2\n"
               "app_requests_total{code=\"500\",path=\"q\\\"uote\\\\back\\nnl\"} "
               "1\n"
               "# HELP app_temperature Temp\n"
               "# TYPE app_temperature gauge\n"
               "app_temperature 20.5\n");
  free(t);
  kl_metrics_free(r);
}

TEST(histogram_exact_text) {
  kl_metrics *r = kl_metrics_new();
  kl_metric *h = NULL;
  const double b[] = {0.1, 1, 2.5};
  CHECK_EQ_INT(kl_metrics_histogram(r, "op_seconds", "Op time.",
                                    L("controller"), b, 3, &h, NULL),
               0);
  kl_metric_series *s = kl_metric_withv(h, "web");
  kl_histogram_observe(s, 0.05);
  kl_histogram_observe(s, 0.1); /* le is inclusive */
  kl_histogram_observe(s, 0.7);
  kl_histogram_observe(s, 3);
  CHECK_EQ_INT(kl_metric_series_count(s), 4);
  char *t = expose(r);
  CHECK_EQ_STR(t,
               "# HELP op_seconds Op time.\n"
               "# TYPE op_seconds histogram\n"
               "op_seconds_bucket{controller=\"web\",le=\"0.1\"} 2\n"
               "op_seconds_bucket{controller=\"web\",le=\"1\"} 3\n"
               "op_seconds_bucket{controller=\"web\",le=\"2.5\"} 3\n"
               "op_seconds_bucket{controller=\"web\",le=\"+Inf\"} 4\n"
               "op_seconds_sum{controller=\"web\"} 3.85\n"
               "op_seconds_count{controller=\"web\"} 4\n");
  free(t);
  kl_metrics_free(r);
}

TEST(histogram_default_buckets_no_labels) {
  kl_metrics *r = kl_metrics_new();
  kl_metric *h = NULL;
  CHECK_EQ_INT(kl_metrics_histogram(r, "h", "", NULL, NULL, 0, &h, NULL), 0);
  kl_histogram_observe(kl_metric_with(h, NULL, 0), 20);
  char *t = expose(r);
  CHECK(strstr(t, "h_bucket{le=\"0.005\"} 0\n") != NULL);
  CHECK(strstr(t, "h_bucket{le=\"10\"} 0\n") != NULL);
  CHECK(strstr(t, "h_bucket{le=\"+Inf\"} 1\nh_sum 20\nh_count 1\n") != NULL);
  CHECK(strstr(t, "# HELP h \n# TYPE h histogram\n") == t);
  free(t);
  kl_metrics_free(r);
}

TEST(registration_is_idempotent_and_checked) {
  kl_metrics *r = kl_metrics_new();
  kl_metric *a = NULL, *b = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_metrics_counter(r, "x_total", "h", L("a"), &a, NULL), 0);
  CHECK_EQ_INT(kl_metrics_counter(r, "x_total", "h2", L("a"), &b, NULL), 0);
  CHECK(a == b);
  CHECK_EQ_INT(kl_metrics_gauge(r, "x_total", "h", L("a"), &b, &err),
               KL_EEXIST);
  CHECK(b == NULL);
  CHECK(err && strstr(err, "x_total"));
  free(err);
  err = NULL;
  CHECK_EQ_INT(kl_metrics_counter(r, "x_total", "h", L("b"), &b, &err),
               KL_EEXIST);
  free(err);
  CHECK_EQ_INT(kl_metrics_counter(r, "1bad", "h", NULL, &b, NULL), KL_EINVAL);
  CHECK_EQ_INT(kl_metrics_counter(r, "has-dash", "h", NULL, &b, NULL),
               KL_EINVAL);
  CHECK_EQ_INT(kl_metrics_counter(r, "ok:name_1", "h", L("__res"), &b, NULL),
               KL_EINVAL);
  CHECK_EQ_INT(kl_metrics_counter(r, "ok:name_1", "h", L("a", "a"), &b, NULL),
               KL_EINVAL);
  CHECK_EQ_INT(kl_metrics_histogram(r, "hh", "h", L("le"), NULL, 0, &b, NULL),
               KL_EINVAL);
  const double bad[] = {1, 0.5};
  CHECK_EQ_INT(kl_metrics_histogram(r, "hh", "h", NULL, bad, 2, &b, NULL),
               KL_EINVAL);
  const double b1[] = {1, 2}, b2[] = {1, 3};
  CHECK_EQ_INT(kl_metrics_histogram(r, "hh", "h", NULL, b1, 2, &b, NULL), 0);
  CHECK_EQ_INT(kl_metrics_histogram(r, "hh", "h", NULL, b2, 2, &b, NULL),
               KL_EEXIST);
  /* wrong number of label values: NULL series, updates are no-ops */
  CHECK(kl_metric_withv(a, "1", "2") == NULL);
  kl_counter_inc(NULL);
  kl_metric_series *s = kl_metric_withv(a, "v");
  CHECK(s != NULL && s == kl_metric_withv(a, "v"));
  kl_gauge_set(s, 7); /* wrong type: ignored */
  CHECK(kl_metric_series_value(s) == 0);
  kl_counter_set_total(s, 10);
  kl_counter_set_total(s, 4); /* never goes down */
  CHECK(kl_metric_series_value(s) == 10);
  kl_metrics_free(r);
}

TEST(label_values_with_separators_stay_distinct) {
  kl_metrics *r = kl_metrics_new();
  kl_metric *c = NULL;
  CHECK_EQ_INT(kl_metrics_counter(r, "c", "", L("a", "b"), &c, NULL), 0);
  kl_metric_series *s1 = kl_metric_withv(c, "1:x", "");
  kl_metric_series *s2 = kl_metric_withv(c, "1", ":x");
  kl_metric_series *s3 = kl_metric_withv(c, NULL, "");
  CHECK(s1 && s2 && s1 != s2);
  CHECK(s3 == kl_metric_withv(c, "", ""));
  kl_metrics_free(r);
}

static int collected;
static void collect(kl_metrics *r, void *ud) {
  (void)r;
  collected++;
  kl_gauge_set(ud, 42);
}

TEST(collectors_run_at_scrape_and_can_be_removed) {
  kl_metrics *r = kl_metrics_new();
  kl_metric *g = NULL;
  CHECK_EQ_INT(kl_metrics_gauge(r, "g", "", NULL, &g, NULL), 0);
  kl_metric_series *s = kl_metric_with(g, NULL, 0);
  int id = kl_metrics_add_collector(r, collect, s);
  char *t = expose(r);
  CHECK(strstr(t, "\ng 42\n") != NULL);
  CHECK_EQ_INT(collected, 1);
  free(t);
  kl_metrics_remove_collector(r, id);
  kl_gauge_set(s, 1);
  t = expose(r);
  CHECK(strstr(t, "\ng 1\n") != NULL);
  CHECK_EQ_INT(collected, 1);
  free(t);
  kl_metrics_free(r);
}

TEST(standard_metrics_and_workqueue_bridge) {
  const kl_std_metrics *m = kl_std_metrics_get();
  CHECK(m->reconcile_total && m->wq_depth && m->rest_requests_total &&
        m->informer_events_total && m->reloads_total && m->lua_errors_total &&
        m->leader_master_status && m->events_dropped_total);
  CHECK(kl_std_metrics_get() == m);
  kl_wq *q = kl_wq_new(NULL);
  kl_wq_add(q, "ns/a");
  kl_wq_add(q, "ns/b");
  kl_wq_add(q, "ns/a"); /* deduped: not an add */
  kl_wq_add_rate_limited(q, "ns/c");
  kl_metrics *r = kl_metrics_default();
  int id = kl_metrics_watch_workqueue(r, "widgets", q);
  char *t = expose(r);
  CHECK(strstr(t, "workqueue_depth{name=\"widgets\"} 2\n") != NULL);
  CHECK(strstr(t, "workqueue_adds_total{name=\"widgets\"} 2\n") != NULL);
  CHECK(strstr(t, "workqueue_retries_total{name=\"widgets\"} 1\n") != NULL);
  CHECK(strstr(t, "# TYPE controller_runtime_reconcile_time_seconds "
                  "histogram\n") != NULL);
  CHECK(strstr(t, "# TYPE workqueue_queue_duration_seconds histogram\n") !=
        NULL);
  free(t);
  kl_metrics_remove_collector(r, id);
  kl_wq_shutdown(q);
  kl_wq_free(q);
  /* the series stay (last values) after the queue is gone */
  t = expose(r);
  CHECK(strstr(t, "workqueue_depth{name=\"widgets\"} 2\n") != NULL);
  free(t);
}

static void make_cm(kl_apiserver *s, const char *name) {
  kl_as_resource *res = kl_as_find(s, "", "v1", "configmaps");
  char *t = kl_sprintf("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
                       "\"metadata\":{\"name\":\"%s\"}}", name);
  cJSON *b = cJSON_Parse(t);
  free(t);
  kl_as_result r = KL_AS_RESULT_INIT;
  kl_as_opts o = {0};
  kl_as_create(s, res, "default", b, &o, &r);
  kl_as_result_free(&r);
  cJSON_Delete(b);
}

TEST(informer_bridge) {
  kl_apiserver_opts so = {.listen = "127.0.0.1:0"};
  kl_apiserver *s = NULL;
  char *err = NULL;
  CHECK_EQ_INT(kl_apiserver_new(&so, &s, &err), 0);
  CHECK_EQ_INT(kl_apiserver_start(s, &err), 0);
  make_cm(s, "a");
  make_cm(s, "b");
  char path[96];
  snprintf(path, sizeof path, "/tmp/klua-test-metrics-%d.kubeconfig",
           (int)getpid());
  FILE *f = fopen(path, "w");
  fprintf(f, "current-context: t\nclusters:\n- name: c\n  cluster:\n"
             "    server: %s\nusers:\n- name: u\n  user: {}\n"
             "contexts:\n- name: t\n  context: {cluster: c, user: u}\n",
          kl_apiserver_url(s));
  fclose(f);
  kl_kubeconfig_opts ko = {.path = path};
  kl_kubeconfig *kc = NULL;
  kl_rest *rest = NULL;
  CHECK_EQ_INT(kl_kubeconfig_load(&ko, &kc, &err), 0);
  CHECK_EQ_INT(kl_rest_new(kc, NULL, &rest, &err), 0);
  unlink(path);
  kl_informer_opts io = {.reflector = {.rest = rest,
                                       .path = "/api/v1/namespaces/default/"
                                               "configmaps"}};
  kl_informer *inf = NULL;
  CHECK_EQ_INT(kl_informer_new(&io, &inf, &err), 0);
  CHECK_EQ_INT(kl_informer_start(inf), 0);
  CHECK(kl_informer_wait_for_sync(inf, 10));
  make_cm(s, "c");
  /* bounded by time, generously: sanitizers on a loaded machine are slow */
  for (double end = kl_now() + 60;
       kl_now() < end && kl_store_len(kl_informer_store(inf)) < 3;)
    usleep(10000);
  kl_metrics *r = kl_metrics_default();
  int id = kl_metrics_watch_informer(r, "v1/configmaps", inf);
  char *t = expose(r);
  CHECK(strstr(t, "klua_informer_objects{resource=\"v1/configmaps\"} 3\n"));
  CHECK(strstr(t, "klua_informer_events_total{resource=\"v1/configmaps\","
                  "type=\"ADDED\"} 1\n"));
  CHECK(strstr(t, "klua_informer_relists_total{resource=\"v1/configmaps\"} "
                  "0\n"));
  free(t);
  kl_metrics_remove_collector(r, id);
  kl_informer_stop(inf);
  kl_informer_unref(inf);
  kl_rest_free(rest);
  kl_kubeconfig_free(kc);
  kl_apiserver_free(s);
}

int main(void) {
  RUN(format_values_like_prometheus);
  RUN(counter_and_gauge_exact_text);
  RUN(histogram_exact_text);
  RUN(histogram_default_buckets_no_labels);
  RUN(registration_is_idempotent_and_checked);
  RUN(label_values_with_separators_stay_distinct);
  RUN(collectors_run_at_scrape_and_can_be_removed);
  RUN(standard_metrics_and_workqueue_bridge);
  RUN(informer_bridge);
  return ctest_summary();
}
