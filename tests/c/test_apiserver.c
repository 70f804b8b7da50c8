/* test_apiserver.c: engine-level tests of the local API server (no HTTP
 * except one start/stop round trip): CRUD results, resourceVersions,
 * history-backed paging, watch events and expiry, closing watches, the
 * scale subresource, under ASan/LSan. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "apiserver.h"
#include "ctest.h"
#include "json.h"

static kl_apiserver *mk(size_t history) {
  kl_apiserver_opts o = {.listen = "127.0.0.1:0", .history = history,
                         .bookmark_interval = 0.2};
  kl_apiserver *s = NULL;
  char *err = NULL;
  CHECK(kl_apiserver_new(&o, &s, &err) == 0);
  free(err);
  return s;
}

static cJSON *cm(const char *name) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "apiVersion", "v1");
  cJSON_AddStringToObject(o, "kind", "ConfigMap");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "metadata"), "name",
                          name);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "data"), "k", "v");
  return o;
}

static int create(kl_apiserver *s, kl_as_resource *r, const char *name) {
  cJSON *b = cm(name);
  kl_as_result res = KL_AS_RESULT_INIT;
  kl_as_opts o = {0};
  kl_as_create(s, r, "default", b, &o, &res);
  int code = res.code;
  kl_as_result_free(&res);
  cJSON_Delete(b);
  return code;
}

static bool body_has(const kl_as_result *r, const char *s) {
  return r->body.data && strstr(r->body.data, s) != NULL;
}

TEST(create_get_delete_and_rv) {
  kl_apiserver *s = mk(100);
  kl_as_resource *r = kl_as_find(s, "", "v1", "configmaps");
  CHECK(r != NULL);
  CHECK(kl_as_find(s, "nope", "v1", "x") == NULL);
  uint64_t rv0 = kl_as_current_rv(s);
  CHECK_EQ_INT(create(s, r, "a"), 201);
  CHECK_EQ_INT(kl_as_current_rv(s), rv0 + 1);
  CHECK_EQ_INT(create(s, r, "a"), 409);
  CHECK_EQ_INT(create(s, r, "Bad_Name"), 422);
  CHECK_EQ_INT(kl_as_current_rv(s), rv0 + 1);
  kl_as_opts o = {0};
  kl_as_result g = KL_AS_RESULT_INIT;
  kl_as_get(s, r, "default", "a", NULL, &o, &g);
  CHECK_EQ_INT(g.code, 200);
  CHECK(!strncmp(g.body.data, "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\","
                              "\"metadata\":{\"name\":\"a\"", 60));
  kl_as_result_free(&g);
  kl_as_result d = KL_AS_RESULT_INIT;
  kl_as_delete(s, r, "default", "a", NULL, &o, &d);
  CHECK_EQ_INT(d.code, 200);
  CHECK(body_has(&d, "\"status\":\"Success\""));
  kl_as_result_free(&d);
  kl_as_result g2 = KL_AS_RESULT_INIT;
  kl_as_get(s, r, "default", "a", NULL, &o, &g2);
  CHECK_EQ_INT(g2.code, 404);
  kl_as_result_free(&g2);
  kl_apiserver_free(s);
}

TEST(watch_replays_history_then_expires) {
  kl_apiserver *s = mk(5);
  kl_as_resource *r = kl_as_find(s, "", "v1", "configmaps");
  uint64_t from = kl_as_current_rv(s);
  create(s, r, "w1");
  create(s, r, "w2");
  char rvs[32];
  snprintf(rvs, sizeof rvs, "%llu", (unsigned long long)from);
  kl_as_opts o = {.resource_version = rvs, .timeout_seconds = 1};
  kl_as_watch *w = NULL;
  kl_as_result res = KL_AS_RESULT_INIT;
  CHECK(kl_as_watch_open(s, r, "default", &o, &w, &res) == 0);
  kl_buf out = KL_BUF_INIT;
  CHECK_EQ_INT(kl_as_watch_next(w, &out, NULL, NULL), 1);
  CHECK(out.data && strstr(out.data, "\"type\":\"ADDED\"") &&
        strstr(out.data, "\"name\":\"w2\""));
  out.len = 0;
  CHECK_EQ_INT(kl_as_watch_next(w, &out, NULL, NULL), 0); /* timeout */
  kl_as_watch_close(w);
  /* 10 more changes overflow a history of 5: the old RV has expired */
  char nm[16];
  for (int i = 0; i < 10; i++) {
    snprintf(nm, sizeof nm, "x%d", i);
    create(s, r, nm);
  }
  CHECK(kl_as_oldest_rv(s) > from);
  CHECK(kl_as_watch_open(s, r, "default", &o, &w, &res) == 0);
  out.len = 0;
  CHECK_EQ_INT(kl_as_watch_next(w, &out, NULL, NULL), 1);
  CHECK(out.data && strstr(out.data, "\"type\":\"ERROR\"") &&
        strstr(out.data, "\"code\":410"));
  CHECK_EQ_INT(kl_as_watch_next(w, &out, NULL, NULL), 0);
  kl_as_watch_close(w);
  kl_buf_free(&out);
  kl_as_result_free(&res);
  kl_apiserver_free(s);
}

TEST(paging_is_a_snapshot) {
  kl_apiserver *s = mk(100);
  kl_as_resource *r = kl_as_find(s, "", "v1", "configmaps");
  create(s, r, "p1");
  create(s, r, "p2");
  create(s, r, "p3");
  kl_as_opts o = {.limit = 2};
  kl_as_result p = KL_AS_RESULT_INIT;
  kl_as_list(s, r, "default", &o, &p);
  CHECK_EQ_INT(p.code, 200);
  CHECK(body_has(&p, "\"remainingItemCount\":1"));
  kl_span c;
  CHECK(kl_json_get((kl_span){p.body.data, p.body.len}, "metadata.continue",
                    &c));
  char *tok = kl_json_strdup(c);
  create(s, r, "p4"); /* after the snapshot: not on page 2 */
  kl_as_opts o2 = {.limit = 2, .cont = tok};
  kl_as_result p2 = KL_AS_RESULT_INIT;
  kl_as_list(s, r, "default", &o2, &p2);
  CHECK_EQ_INT(p2.code, 200);
  CHECK(body_has(&p2, "\"name\":\"p3\"") && !body_has(&p2, "\"p4\""));
  CHECK(!body_has(&p2, "\"continue\""));
  free(tok);
  kl_as_result_free(&p);
  kl_as_result_free(&p2);
  kl_apiserver_free(s);
}

typedef struct waiter {
  kl_as_watch *w;
  kl_buf out;
  int rc;
} waiter;

static void *wait_next(void *arg) {
  waiter *wt = arg;
  wt->rc = kl_as_watch_next(wt->w, &wt->out, NULL, NULL);
  return NULL;
}

TEST(close_watches_ends_a_waiting_watch_at_once) {
  kl_apiserver *s = mk(100);
  kl_as_resource *r = kl_as_find(s, "", "v1", "configmaps");
  char rvs[32];
  snprintf(rvs, sizeof rvs, "%llu", (unsigned long long)kl_as_current_rv(s));
  kl_as_opts o = {.resource_version = rvs, .timeout_seconds = 30};
  kl_as_result res = KL_AS_RESULT_INIT;
  waiter wt = {.out = KL_BUF_INIT};
  CHECK(kl_as_watch_open(s, r, "default", &o, &wt.w, &res) == 0);
  pthread_t t;
  pthread_create(&t, NULL, wait_next, &wt);
  struct timespec ts = {0, 100 * 1000 * 1000};
  nanosleep(&ts, NULL); /* the watcher is waiting for an event */
  kl_as_close_watches(s);
  create(s, r, "late"); /* written after the close: never delivered */
  pthread_join(t, NULL);
  CHECK_EQ_INT(wt.rc, 0);
  CHECK_EQ_INT((long)wt.out.len, 0);
  kl_as_watch_close(wt.w);
  /* a watch opened after the close is not affected */
  CHECK(kl_as_watch_open(s, r, "default", &o, &wt.w, &res) == 0);
  create(s, r, "later");
  CHECK_EQ_INT(kl_as_watch_next(wt.w, &wt.out, NULL, NULL), 1);
  CHECK(strstr(wt.out.data, "\"name\":\"later\"") != NULL);
  kl_as_watch_close(wt.w);
  kl_buf_free(&wt.out);
  kl_as_result_free(&res);
  kl_apiserver_free(s);
}

TEST(scale_subresource_reads_and_writes_replicas) {
  kl_apiserver *s = mk(100);
  kl_as_resource *r = kl_as_find(s, "apps", "v1", "deployments");
  CHECK(r != NULL && r->has_scale);
  cJSON *d = cJSON_Parse(
      "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":"
      "{\"name\":\"web\"},\"spec\":{\"replicas\":2,\"selector\":"
      "{\"matchLabels\":{\"b\":\"2\",\"a\":\"1\"}}}}");
  kl_as_opts o = {0};
  kl_as_result res = KL_AS_RESULT_INIT;
  kl_as_create(s, r, "default", d, &o, &res);
  CHECK_EQ_INT(res.code, 201);
  kl_as_result_free(&res);
  kl_as_get(s, r, "default", "web", "scale", &o, &res);
  CHECK_EQ_INT(res.code, 200);
  CHECK(body_has(&res, "\"spec\":{\"replicas\":2},\"status\":{"
                       "\"replicas\":0,\"selector\":\"a=1,b=2\"}}"));
  kl_as_result_free(&res);
  static const char p[] = "{\"spec\":{\"replicas\":4}}";
  kl_as_patch(s, r, "default", "web", "scale", KL_AS_PATCH_MERGE, p,
              sizeof p - 1, &o, &res);
  CHECK_EQ_INT(res.code, 200);
  CHECK(body_has(&res, "\"kind\":\"Scale\"") &&
        body_has(&res, "\"replicas\":4"));
  kl_as_result_free(&res);
  kl_as_get(s, r, "default", "web", NULL, &o, &res);
  CHECK(body_has(&res, "\"replicas\":4"));
  kl_as_result_free(&res);
  cJSON_Delete(d);
  kl_apiserver_free(s);
}

TEST(start_and_stop) {
  kl_apiserver *s = mk(10);
  char *err = NULL;
  CHECK(kl_apiserver_start(s, &err) == 0);
  CHECK(kl_apiserver_port(s) > 0);
  CHECK(!strncmp(kl_apiserver_url(s), "http://127.0.0.1:", 17));
  free(err);
  kl_apiserver_free(s);
}

int main(void) {
  RUN(create_get_delete_and_rv);
  RUN(watch_replays_history_then_expires);
  RUN(paging_is_a_snapshot);
  RUN(close_watches_ends_a_waiting_watch_at_once);
  RUN(scale_subresource_reads_and_writes_replicas);
  RUN(start_and_stop);
  return ctest_summary();
}
