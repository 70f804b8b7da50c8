/* test_events.c: the event recorder against the in-process API server over
 * real HTTP, checked through the API: Event shape, dedupe into count
 * increments (PATCH), aggregation after 10 similar events, the spam filter
 * (burst 25 per object), a full queue dropping, refs from object JSON. */
#include <string.h>
#include <unistd.h>

#include "apiserver_fixture.h"
#include "ctest.h"
#include "events.h"
#include "metrics.h"

static kl_apiserver *srv;
static kl_rest *rest;
static kl_as_resource *events_res;

static void setup(void) {
  tu_apiserver_up(&srv, &rest);
  events_res = kl_as_find(srv, "", "v1", "events");
}

/* The Events (a NEW cJSON array) in ns about the object named name. */
static cJSON *events_about(const char *ns, const char *name) {
  kl_as_result r = KL_AS_RESULT_INIT;
  kl_as_opts o = {0};
  kl_as_list(srv, events_res, ns, &o, &r);
  cJSON *list = cJSON_Parse(r.body.data);
  kl_as_result_free(&r);
  cJSON *out = cJSON_CreateArray();
  cJSON *it;
  cJSON_ArrayForEach(it, cJSON_GetObjectItem(list, "items")) {
    cJSON *io = cJSON_GetObjectItem(it, "involvedObject");
    cJSON *n = cJSON_GetObjectItem(io, "name");
    if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
      cJSON_AddItemToArray(out, cJSON_Duplicate(it, 1));
  }
  cJSON_Delete(list);
  return out;
}

static const char *str(cJSON *o, const char *path) {
  char buf[128];
  snprintf(buf, sizeof buf, "%s", path);
  char *dot = strchr(buf, '.');
  if (dot) {
    *dot = 0;
    o = cJSON_GetObjectItem(o, buf);
    path = path + (dot - buf) + 1;
  }
  cJSON *v = cJSON_GetObjectItem(o, path);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static int num(cJSON *o, const char *k) {
  cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsNumber(v) ? v->valueint : -1;
}

static kl_events *recorder(size_t queue) {
  kl_events_opts o = {.rest = rest, .component = "widget-controller",
                      .instance = "host-1", .queue_size = queue};
  kl_events *e = NULL;
  char *err = NULL;
  if (kl_events_new(&o, &e, &err)) printf("  recorder: %s\n", err);
  free(err);
  return e;
}

static kl_event_ref cm(const char *name) {
  return (kl_event_ref){"v1", "ConfigMap", "default", name, "uid-1234", "42"};
}

TEST(event_shape_and_dedupe_into_count) {
  kl_events *e = recorder(0);
  kl_event_ref ref = cm("web");
  for (int i = 0; i < 3; i++)
    CHECK_EQ_INT(kl_events_record(e, &ref, "Normal", "Synced",
                                  "ConfigMap web synced"),
                 0);
  CHECK_EQ_INT(kl_events_flush(e, 30), 0);
  cJSON *evs = events_about("default", "web");
  CHECK_EQ_INT(cJSON_GetArraySize(evs), 1);
  cJSON *ev = cJSON_GetArrayItem(evs, 0);
  CHECK_EQ_INT(num(ev, "count"), 3);
  CHECK_EQ_STR(str(ev, "type"), "Normal");
  CHECK_EQ_STR(str(ev, "reason"), "Synced");
  CHECK_EQ_STR(str(ev, "message"), "ConfigMap web synced");
  CHECK_EQ_STR(str(ev, "involvedObject.kind"), "ConfigMap");
  CHECK_EQ_STR(str(ev, "involvedObject.apiVersion"), "v1");
  CHECK_EQ_STR(str(ev, "involvedObject.namespace"), "default");
  CHECK_EQ_STR(str(ev, "involvedObject.uid"), "uid-1234");
  CHECK_EQ_STR(str(ev, "involvedObject.resourceVersion"), "42");
  CHECK_EQ_STR(str(ev, "source.component"), "widget-controller");
  CHECK_EQ_STR(str(ev, "reportingComponent"), "widget-controller");
  CHECK_EQ_STR(str(ev, "reportingInstance"), "host-1");
  CHECK(strncmp(str(ev, "metadata.name"), "web.", 4) == 0);
  CHECK(strlen(str(ev, "firstTimestamp")) == 20);
  CHECK(strcmp(str(ev, "lastTimestamp"), str(ev, "firstTimestamp")) >= 0);
  cJSON_Delete(evs);
  kl_events_stats st;
  kl_events_get_stats(e, &st);
  CHECK_EQ_INT(st.recorded, 3);
  CHECK_EQ_INT(st.created, 1);
  CHECK_EQ_INT(st.patched, 2);
  /* the REST client counted the requests (rest_client_requests_total) */
  char host[64];
  snprintf(host, sizeof host, "127.0.0.1:%d", kl_apiserver_port(srv));
  const kl_std_metrics *m = kl_std_metrics_get();
  CHECK(kl_metric_series_value(kl_metric_withv(m->rest_requests_total, "201",
                                               "POST", host)) >= 1);
  CHECK(kl_metric_series_value(kl_metric_withv(m->rest_requests_total, "200",
                                               "PATCH", host)) >= 2);
  /* a different message is a different Event */
  CHECK_EQ_INT(kl_events_record(e, &ref, "Normal", "Synced", "other"), 0);
  CHECK_EQ_INT(kl_events_flush(e, 30), 0);
  evs = events_about("default", "web");
  CHECK_EQ_INT(cJSON_GetArraySize(evs), 2);
  cJSON_Delete(evs);
  kl_events_free(e);
}

TEST(similar_events_are_aggregated_after_ten) {
  kl_events *e = recorder(0);
  kl_event_ref ref = cm("agg");
  for (int i = 1; i <= 12; i++) {
    char msg[32];
    snprintf(msg, sizeof msg, "attempt %d failed", i);
    CHECK_EQ_INT(kl_events_record(e, &ref, "Warning", "Failed", msg), 0);
  }
  CHECK_EQ_INT(kl_events_flush(e, 30), 0);
  cJSON *evs = events_about("default", "agg");
  /* 9 single events, then one combined Event counting the last three */
  CHECK_EQ_INT(cJSON_GetArraySize(evs), 10);
  int combined = 0;
  cJSON *it;
  cJSON_ArrayForEach(it, evs) {
    if (strncmp(str(it, "message"), "(combined from similar events): ",
                32) == 0) {
      combined++;
      CHECK_EQ_STR(str(it, "message"),
                   "(combined from similar events): attempt 12 failed");
      CHECK_EQ_INT(num(it, "count"), 3);
      CHECK_EQ_STR(str(it, "type"), "Warning");
    } else {
      CHECK_EQ_INT(num(it, "count"), 1);
    }
  }
  CHECK_EQ_INT(combined, 1);
  cJSON_Delete(evs);
  kl_events_stats st;
  kl_events_get_stats(e, &st);
  CHECK_EQ_INT(st.aggregated, 3);
  kl_events_free(e);
}

TEST(spam_filter_drops_beyond_the_burst) {
  kl_events *e = recorder(0);
  kl_event_ref ref = cm("hot");
  for (int i = 0; i < 30; i++) {
    char reason[32];
    snprintf(reason, sizeof reason, "Reason%d", i);
    CHECK_EQ_INT(kl_events_record(e, &ref, "Normal", reason, "hot loop"), 0);
  }
  /* another object has its own bucket */
  kl_event_ref other = cm("calm");
  CHECK_EQ_INT(kl_events_record(e, &other, "Normal", "Fine", "ok"), 0);
  CHECK_EQ_INT(kl_events_flush(e, 60), 0);
  cJSON *evs = events_about("default", "hot");
  CHECK_EQ_INT(cJSON_GetArraySize(evs), 25);
  cJSON_Delete(evs);
  evs = events_about("default", "calm");
  CHECK_EQ_INT(cJSON_GetArraySize(evs), 1);
  cJSON_Delete(evs);
  kl_events_stats st;
  kl_events_get_stats(e, &st);
  CHECK_EQ_INT(st.dropped_spam, 5);
  CHECK_EQ_INT(st.created, 26);
  kl_events_free(e);
}

static int admin(const char *method, const char *body) {
  kl_rest_req req = {.method = method, .path = "/_klua/faults", .body = body,
                     .body_len = body ? strlen(body) : 0, .no_retry = true};
  kl_rest_resp resp = {0};
  int rc = kl_rest_do(rest, &req, &resp, NULL);
  kl_rest_resp_free(&resp);
  return rc;
}

TEST(full_queue_drops_and_counts) {
  /* the server answers event POSTs slowly, so the queue (2) fills up: 2 s
   * each, so that the ten records below fit in one POST however loaded
   * the machine (0.5 s did not always) */
  CHECK_EQ_INT(admin("POST", "{\"action\":\"delay\",\"method\":\"POST\","
                             "\"path\":\"/api/v1/namespaces/default/events\","
                             "\"seconds\":2,\"count\":0}"),
               0);
  kl_events *e = recorder(2);
  int again = 0;
  for (int i = 0; i < 10; i++) {
    char name[16];
    snprintf(name, sizeof name, "q%d", i);
    kl_event_ref ref = cm(name);
    int rc = kl_events_record(e, &ref, "Normal", "Queued", "m");
    CHECK(rc == 0 || rc == KL_EAGAIN);
    if (rc == KL_EAGAIN) again++;
  }
  CHECK(again >= 7);
  CHECK_EQ_INT(kl_events_flush(e, 30), 0);
  kl_events_stats st;
  kl_events_get_stats(e, &st);
  CHECK_EQ_INT(st.dropped_full, again);
  CHECK_EQ_INT(st.created, 10 - again);
  admin("DELETE", NULL);
  kl_events_free(e);
}

TEST(refs_from_json_bad_input_and_cluster_scoped_objects) {
  const char *j = "{\"metadata\":{\"name\":\"n1\",\"namespace\":\"default\","
                  "\"uid\":\"u-9\",\"resourceVersion\":\"7\"},\"data\":{}}";
  kl_event_ref ref;
  CHECK_EQ_INT(kl_event_ref_from_json((kl_span){j, strlen(j)}, "v1",
                                      "ConfigMap", &ref),
               0);
  CHECK_EQ_STR(ref.kind, "ConfigMap");
  CHECK_EQ_STR(ref.api_version, "v1");
  CHECK_EQ_STR(ref.name, "n1");
  CHECK_EQ_STR(ref.uid, "u-9");
  CHECK_EQ_STR(ref.resource_version, "7");
  kl_events *e = recorder(0);
  CHECK_EQ_INT(kl_events_record(e, &ref, "Info", "X", "m"), KL_EINVAL);
  CHECK_EQ_INT(kl_events_record(e, &ref, "Normal", "", "m"), KL_EINVAL);
  kl_event_ref_free(&ref);
  const char *bad = "{\"metadata\":{}}";
  CHECK_EQ_INT(kl_event_ref_from_json((kl_span){bad, strlen(bad)}, NULL, NULL,
                                      &ref),
               KL_EINVAL);
  /* a Namespace (cluster-scoped): the Event goes to "default" */
  kl_event_ref ns = {"v1", "Namespace", NULL, "team-a", "u-ns", NULL};
  char longmsg[1500];
  memset(longmsg, 'x', sizeof longmsg - 1);
  longmsg[sizeof longmsg - 1] = 0;
  CHECK_EQ_INT(kl_events_record(e, &ns, "Warning", "Quota", longmsg), 0);
  CHECK_EQ_INT(kl_events_flush(e, 30), 0);
  cJSON *evs = events_about("default", "team-a");
  CHECK_EQ_INT(cJSON_GetArraySize(evs), 1);
  cJSON *ev = cJSON_GetArrayItem(evs, 0);
  CHECK_EQ_STR(str(ev, "involvedObject.namespace"), "");
  CHECK_EQ_INT(strlen(str(ev, "message")), 1024);
  cJSON_Delete(evs);
  kl_events_free(e);
}

int main(void) {
  setup();
  RUN(event_shape_and_dedupe_into_count);
  RUN(similar_events_are_aggregated_after_ten);
  RUN(spam_filter_drops_beyond_the_burst);
  RUN(full_queue_drops_and_counts);
  RUN(refs_from_json_bad_input_and_cluster_scoped_objects);
  kl_rest_free(rest);
  kl_apiserver_free(srv);
  return ctest_summary();
}
