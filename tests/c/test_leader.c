/* test_leader.c: Lease leader election against the in-process API server
 * over real HTTP: exactly one of two electors leads; a leader that dies
 * without releasing is replaced once the lease expires; release on stop
 * hands over at once; a lease taken by another holder stops the leader; a
 * resourceVersion conflict (409) is a lost race, not leadership. Also
 * MicroTime formatting/parsing and option validation. Waits poll with
 * generous limits (30 s); the only upper bounds checked are ones the
 * protocol implies (a released lease is taken long before it would
 * expire). Whether something happened too early is judged by timestamps
 * the electors and the lease record carry, not by sampling state after a
 * sleep, and leases that must not expire are long: TSan on a loaded CI
 * machine stretches every sleep and request by seconds. */
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "apiserver_fixture.h"
#include "ctest.h"
#include "leader.h"

static kl_apiserver *srv;
static kl_rest *rest;
static kl_as_resource *leases;

static void setup(void) {
  tu_apiserver_up(&srv, &rest);
  leases = kl_as_find(srv, "coordination.k8s.io", "v1", "leases");
}

/* The lease's spec field as a NEW string ("" when absent; numbers as
 * integers), read through the engine. */
static char *lease_field(const char *name, const char *field) {
  kl_as_result r = KL_AS_RESULT_INIT;
  kl_as_opts o = {0};
  kl_as_get(srv, leases, "default", name, NULL, &o, &r);
  char *out = kl_strdup("");
  cJSON *j = r.code == 200 ? cJSON_Parse(r.body.data) : NULL;
  cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "spec"), field);
  if (cJSON_IsString(v)) {
    free(out);
    out = kl_strdup(v->valuestring);
  } else if (cJSON_IsNumber(v)) {
    free(out);
    out = kl_sprintf("%d", v->valueint);
  }
  cJSON_Delete(j);
  kl_as_result_free(&r);
  return out;
}

/* Writes the lease unconditionally (no resourceVersion) with this holder. */
static int put_lease(const char *name, const char *holder, int dur) {
  char ts[40];
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  kl_microtime_format(now.tv_sec + now.tv_nsec / 1e9, ts, sizeof ts);
  char *txt = kl_sprintf(
      "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
      "\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\"},"
      "\"spec\":{\"holderIdentity\":\"%s\",\"leaseDurationSeconds\":%d,"
      "\"acquireTime\":\"%s\",\"renewTime\":\"%s\",\"leaseTransitions\":7}}",
      name, holder, dur, ts, ts);
  cJSON *body = cJSON_Parse(txt);
  free(txt);
  kl_as_result r = KL_AS_RESULT_INIT;
  kl_as_opts o = {0};
  kl_as_update(srv, leases, "default", name, NULL, body, &o, &r);
  if (r.code == 404) {
    kl_as_result_free(&r);
    kl_as_result r2 = KL_AS_RESULT_INIT;
    kl_as_create(srv, leases, "default", body, &o, &r2);
    r = r2;
  }
  int code = r.code;
  if (code >= 300) printf("  put_lease: %d %s\n", code, r.body.data);
  kl_as_result_free(&r);
  cJSON_Delete(body);
  return code;
}

typedef struct cb {
  atomic_int started, stopped;
  atomic_llong started_wall_ns; /* CLOCK_REALTIME when started leading */
  atomic_llong stopped_wall_ns; /* CLOCK_REALTIME when stopped leading */
  atomic_int saw_winner; /* observed the holder "winner" */
} cb;
static long long wall_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}
static void on_start(void *ud) {
  atomic_store(&((cb *)ud)->started_wall_ns, wall_ns());
  atomic_fetch_add(&((cb *)ud)->started, 1);
}
static void on_stop(void *ud) {
  atomic_store(&((cb *)ud)->stopped_wall_ns, wall_ns());
  atomic_fetch_add(&((cb *)ud)->stopped, 1);
}
static void on_new_leader(const char *identity, void *ud) {
  if (strcmp(identity, "winner") == 0)
    atomic_store(&((cb *)ud)->saw_winner, 1);
}

static kl_leader *elector(const char *lease, const char *id, cb *c,
                          double dur, double renew, double retry,
                          bool no_release) {
  kl_leader_opts o = {.rest = rest, .name = lease, .identity = id,
                      .lease_duration = dur, .renew_deadline = renew,
                      .retry_period = retry, .no_release = no_release,
                      .on_started_leading = on_start,
                      .on_stopped_leading = on_stop,
                      .on_new_leader = on_new_leader, .ud = c};
  kl_leader *l = NULL;
  char *err = NULL;
  if (kl_leader_start(&o, &l, &err) != 0) printf("  start: %s\n", err);
  free(err);
  return l;
}

/* Polls until cond holds or limit seconds pass; returns cond. */
#define WAIT_FOR(cond, limit)                                                \
  ({                                                                         \
    double t0_ = kl_now();                                                   \
    while (!(cond) && kl_now() - t0_ < (limit)) usleep(20000);               \
    (cond);                                                                  \
  })

TEST(microtime) {
  char b[40];
  kl_microtime_format(0, b, sizeof b);
  CHECK_EQ_STR(b, "1970-01-01T00:00:00.000000Z");
  double t = 0;
  CHECK_EQ_INT(kl_time_parse("2026-11-24T02:40:50.323835Z", &t), 0);
  kl_microtime_format(t, b, sizeof b);
  CHECK_EQ_STR(b, "2026-11-24T02:40:50.323835Z");
  double t2 = 0;
  CHECK_EQ_INT(kl_time_parse("2026-11-24T03:40:50Z", &t2), 0);
  double t3 = 0;
  CHECK_EQ_INT(kl_time_parse("2026-11-24T04:40:50+01:00", &t3), 0);
  CHECK(t3 == t2);
  CHECK(t2 - t > 3599 && t2 - t < 3600);
  CHECK_EQ_INT(kl_time_parse("2026-11-24 03:40:50Z", &t), KL_EINVAL);
  CHECK_EQ_INT(kl_time_parse("2026-11-24T03:40:50", &t), KL_EINVAL);
  CHECK_EQ_INT(kl_time_parse("2026-11-24T03:40:50.Z", &t), KL_EINVAL);
  CHECK_EQ_INT(kl_time_parse("", &t), KL_EINVAL);
  kl_microtime_format(1.9999999, b, sizeof b);
  CHECK_EQ_STR(b, "1970-01-01T00:00:02.000000Z");
}

TEST(validation_and_identity) {
  kl_leader_opts o = {.rest = rest, .name = "x"};
  char *err = NULL;
  CHECK_EQ_INT(kl_leader_validate(&o, &err), 0);
  CHECK(o.lease_duration == 15 && o.renew_deadline == 10 &&
        o.retry_period == 2);
  kl_leader_opts bad1 = {.rest = rest, .name = "x", .lease_duration = 10,
                         .renew_deadline = 10};
  CHECK_EQ_INT(kl_leader_validate(&bad1, &err), KL_EINVAL);
  CHECK(err && strstr(err, "renew deadline"));
  free(err);
  kl_leader_opts bad2 = {.rest = rest, .name = "x", .renew_deadline = 2.4,
                         .retry_period = 2};
  CHECK_EQ_INT(kl_leader_validate(&bad2, &err), KL_EINVAL);
  CHECK(err && strstr(err, "1.2"));
  free(err);
  kl_leader_opts ok2 = {.rest = rest, .name = "x", .renew_deadline = 2.5,
                        .retry_period = 2};
  CHECK_EQ_INT(kl_leader_validate(&ok2, &err), 0);
  kl_leader_opts bad3 = {.rest = rest, .name = "x", .lease_duration = 15.5};
  CHECK_EQ_INT(kl_leader_validate(&bad3, &err), KL_EINVAL);
  free(err);
  kl_leader_opts bad4 = {.rest = rest};
  CHECK_EQ_INT(kl_leader_validate(&bad4, &err), KL_EINVAL);
  free(err);
  char *a = kl_leader_default_identity(), *b = kl_leader_default_identity();
  char host[256];
  gethostname(host, sizeof host);
  CHECK(strncmp(a, host, strlen(host)) == 0 && a[strlen(host)] == '_');
  CHECK(strlen(a) == strlen(host) + 37);
  CHECK(strcmp(a, b) != 0);
  free(a);
  free(b);
}

TEST(exactly_one_of_two_leads) {
  cb ca = {0}, cbb = {0};
  /* a lease far longer than the competition: a renewal slowed by load
   * must not hand the lease over while the test looks (a 2 s lease did) */
  kl_leader *a = elector("one", "cand-a", &ca, 20, 15, 0.25, false);
  kl_leader *b = elector("one", "cand-b", &cbb, 20, 15, 0.25, false);
  CHECK(WAIT_FOR(kl_leader_is_leader(a) || kl_leader_is_leader(b), 30));
  usleep(1500000); /* several retry periods of competition */
  CHECK(kl_leader_is_leader(a) != kl_leader_is_leader(b));
  CHECK_EQ_INT(atomic_load(&ca.started) + atomic_load(&cbb.started), 1);
  kl_leader *lead = kl_leader_is_leader(a) ? a : b;
  char *h = lease_field("one", "holderIdentity");
  CHECK_EQ_STR(h, kl_leader_identity(lead));
  free(h);
  char *d = lease_field("one", "leaseDurationSeconds");
  CHECK_EQ_STR(d, "20");
  free(d);
  char *rt = lease_field("one", "renewTime");
  /* MicroTime: 6 fractional digits */
  CHECK(strlen(rt) == 27 && rt[19] == '.' && rt[26] == 'Z');
  free(rt);
  kl_leader_free(a);
  kl_leader_free(b);
  CHECK_EQ_INT(atomic_load(&ca.stopped), atomic_load(&ca.started));
  CHECK_EQ_INT(atomic_load(&cbb.stopped), atomic_load(&cbb.started));
}

TEST(dead_leader_is_replaced_after_the_lease_expires) {
  cb ca = {0}, cbb = {0};
  kl_leader *a = elector("crash", "cand-a", &ca, 3, 2, 0.25, true);
  CHECK(WAIT_FOR(kl_leader_is_leader(a), 30));
  kl_leader *b = elector("crash", "cand-b", &cbb, 3, 2, 0.25, true);
  usleep(500000);
  CHECK(!kl_leader_is_leader(b));
  kl_leader_stop(a); /* no_release: like a crash, the lease stays held */
  char *h = lease_field("crash", "holderIdentity");
  CHECK_EQ_STR(h, "cand-a");
  free(h);
  double renewed = 0;
  char *rt = lease_field("crash", "renewTime");
  CHECK_EQ_INT(kl_time_parse(rt, &renewed), 0);
  free(rt);
  CHECK(WAIT_FOR(kl_leader_is_leader(b), 30));
  /* not before the lease (3 s from a's last renewal) expired: judged by
   * when b started leading, not by sampling is_leader after a sleep */
  double took = atomic_load(&cbb.started_wall_ns) / 1e9;
  CHECK(took >= renewed + 3 - 1e-3);
  if (took < renewed + 3 - 1e-3)
    printf("  b led %.3f s after a's last renewal\n", took - renewed);
  h = lease_field("crash", "holderIdentity");
  CHECK_EQ_STR(h, "cand-b");
  free(h);
  char *tr = lease_field("crash", "leaseTransitions");
  CHECK_EQ_STR(tr, "1");
  free(tr);
  kl_leader_free(a);
  kl_leader_free(b);
}

TEST(release_on_stop_hands_over_at_once) {
  cb ca = {0}, cbb = {0};
  /* a 120 s lease: taking over within 30 s proves the release */
  kl_leader *a = elector("rel", "cand-a", &ca, 120, 20, 0.25, false);
  CHECK(WAIT_FOR(kl_leader_is_leader(a), 30));
  kl_leader *b = elector("rel", "cand-b", &cbb, 120, 20, 0.25, false);
  usleep(300000);
  CHECK(!kl_leader_is_leader(b));
  kl_leader_stop(a);
  CHECK_EQ_INT(atomic_load(&ca.stopped), 1);
  CHECK(!kl_leader_is_leader(a));
  CHECK(!kl_leader_lost(a));
  /* released before stop returned (b may have taken it already) */
  char *h0 = lease_field("rel", "holderIdentity");
  CHECK(strcmp(h0, "cand-a") != 0);
  free(h0);
  CHECK(WAIT_FOR(kl_leader_is_leader(b), 30));
  CHECK_EQ_INT(atomic_load(&cbb.started), 1);
  char *h = lease_field("rel", "holderIdentity");
  CHECK_EQ_STR(h, "cand-b");
  free(h);
  kl_leader_free(b);
  /* b released too: free, duration 1 */
  h = lease_field("rel", "holderIdentity");
  CHECK_EQ_STR(h, "");
  free(h);
  char *d = lease_field("rel", "leaseDurationSeconds");
  CHECK_EQ_STR(d, "1");
  free(d);
  kl_leader_free(a);
}

/* A renewal that the stop cut short can still land in the server: the
 * elector's copy of the lease is then a version behind and its release
 * PUT gets a 409. It must read the lease again and release it, not leave
 * the standby to wait out the whole lease. Here the landed renewal is a
 * write with our holder made behind the elector's back, between two
 * renewals 10 s apart. */
TEST(release_after_a_conflict_reads_the_lease_again) {
  cb ca = {0};
  kl_leader *a = elector("relc", "cand-a", &ca, 120, 60, 10, false);
  CHECK(WAIT_FOR(kl_leader_is_leader(a), 30));
  CHECK_EQ_INT(put_lease("relc", "cand-a", 120), 200); /* a newer version */
  kl_leader_stop(a);
  CHECK_EQ_INT(atomic_load(&ca.stopped), 1);
  char *h = lease_field("relc", "holderIdentity");
  CHECK_EQ_STR(h, "");
  free(h);
  char *d = lease_field("relc", "leaseDurationSeconds");
  CHECK_EQ_STR(d, "1");
  free(d);
  kl_leader_free(a);
}

TEST(lease_taken_by_another_holder_stops_the_leader) {
  cb ca = {0};
  kl_leader *a = elector("steal", "cand-a", &ca, 2, 1.5, 0.25, false);
  CHECK(WAIT_FOR(kl_leader_is_leader(a), 30));
  CHECK_EQ_INT(put_lease("steal", "intruder", 30), 200);
  CHECK(WAIT_FOR(atomic_load(&ca.stopped) == 1, 30));
  CHECK(!kl_leader_is_leader(a));
  CHECK(kl_leader_lost(a));
  kl_leader_free(a);
  /* lost: no release, the intruder keeps the lease */
  char *h = lease_field("steal", "holderIdentity");
  CHECK_EQ_STR(h, "intruder");
  free(h);
  CHECK_EQ_INT(atomic_load(&ca.stopped), 1);
}

static int admin(const char *method, const char *body) {
  kl_rest_req req = {.method = method, .path = "/_klua/faults", .body = body,
                     .body_len = body ? strlen(body) : 0, .no_retry = true};
  kl_rest_resp resp = {0};
  int rc = kl_rest_do(rest, &req, &resp, NULL);
  kl_rest_resp_free(&resp);
  return rc;
}

/* Hits of the armed faults, summed (GET /_klua/faults). */
static long fault_hits(void) {
  kl_rest_req req = {.method = "GET", .path = "/_klua/faults",
                     .no_retry = true};
  kl_rest_resp resp = {0};
  long hits = -1;
  if (kl_rest_do(rest, &req, &resp, NULL) == 0) {
    cJSON *j = cJSON_ParseWithLength(resp.body.data, resp.body.len);
    const cJSON *f;
    hits = 0;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(j, "faults"))
      hits += (long)cJSON_GetNumberValue(cJSON_GetObjectItem(f, "hits"));
    cJSON_Delete(j);
  }
  kl_rest_resp_free(&resp);
  return hits;
}

TEST(conflict_is_a_lost_race) {
  /* a free lease; the elector's PUT is held back while someone else
   * writes the lease, so the PUT carries a stale resourceVersion */
  CHECK_EQ_INT(put_lease("race", "", 1), 201);
  CHECK_EQ_INT(admin("POST", "{\"action\":\"delay\",\"method\":\"PUT\","
                             "\"path\":\"/apis/coordination.k8s.io/v1/"
                             "namespaces/default/leases/race\","
                             "\"seconds\":3.0,\"count\":1}"),
               0);
  cb ca = {0};
  kl_log_set_level(KL_LOG_DEBUG); /* the log shows the 409 */
  kl_leader *a = elector("race", "cand-a", &ca, 30, 20, 0.25, false);
  /* a's GET is done, its PUT waits in the server */
  CHECK(WAIT_FOR(fault_hits() == 1, 30));
  CHECK_EQ_INT(put_lease("race", "winner", 30), 200);
  /* after the 409, a reads the lease again and sees the winner */
  CHECK(WAIT_FOR(atomic_load(&ca.saw_winner) == 1, 30));
  CHECK_EQ_INT(atomic_load(&ca.started), 0);
  CHECK(!kl_leader_is_leader(a));
  char *h = lease_field("race", "holderIdentity");
  CHECK_EQ_STR(h, "winner");
  free(h);
  kl_leader_free(a);
  CHECK_EQ_INT(atomic_load(&ca.stopped), 0);
  kl_log_set_level(KL_LOG_INFO);
  admin("DELETE", NULL);
}

/* Failed renewals inside the renew deadline are retried, not a loss; only
 * failing past it ends leadership. The first half is checked by what the
 * server saw (two failed PUTs, then a renewal that succeeds), not by
 * sleeping: a test that samples is_leader after a fixed sleep fails on a
 * loaded machine where the sleep overshoots the deadline. */
TEST(renewals_failing_past_the_deadline_stop_the_leader) {
  cb ca = {0};
  /* two failed attempts and the one that lands take three GETs, three
   * PUTs and two retry periods: an 8 s deadline leaves room for load (a
   * 3 s one did not: attempts took 1.3 s each with TSan on a busy core) */
  kl_leader *a = elector("flaky", "cand-a", &ca, 10, 8, 0.25, false);
  CHECK(WAIT_FOR(kl_leader_is_leader(a), 30));
  CHECK_EQ_INT(admin("POST", "{\"action\":\"fail\",\"method\":\"PUT\","
                             "\"path\":\"/apis/coordination.k8s.io/v1/"
                             "namespaces/default/leases/flaky\","
                             "\"code\":500,\"count\":2}"),
               0);
  CHECK(WAIT_FOR(fault_hits() == 2, 30));
  char *before = lease_field("flaky", "renewTime");
  char *after = NULL;
  /* the next renewal after the two failures lands */
  CHECK(WAIT_FOR((free(after), after = lease_field("flaky", "renewTime"),
                  strcmp(after, before) != 0),
                 30));
  free(before);
  free(after);
  CHECK(kl_leader_is_leader(a));
  CHECK(!kl_leader_lost(a));
  CHECK_EQ_INT(atomic_load(&ca.stopped), 0);
  /* now every renewal fails: leadership ends once the deadline passes */
  admin("DELETE", NULL);
  CHECK_EQ_INT(admin("POST", "{\"action\":\"fail\",\"method\":\"PUT\","
                             "\"path\":\"/apis/coordination.k8s.io/v1/"
                             "namespaces/default/leases/flaky\","
                             "\"code\":500,\"count\":0}"),
               0);
  CHECK(WAIT_FOR(kl_leader_lost(a), 30));
  CHECK_EQ_INT(atomic_load(&ca.stopped), 1);
  CHECK(!kl_leader_is_leader(a));
  admin("DELETE", NULL);
  kl_leader_free(a);
}

/* A renewal that hangs is bounded by the renew deadline as a whole (as
 * client-go's context does), not per request: the leader must notice the
 * loss before its lease can expire, or a standby may lead while it still
 * reconciles. Here the GET of each renewal answers just inside the renew
 * deadline (3 s) and the PUT hangs: per-request timeouts would let the
 * leader believe in its lease until about 6 s after its last renewal, well
 * past the lease's expiry (5 s); bounded as a whole, the loss comes after
 * about 3 s, which leaves 2 s for a loaded machine's delays. */
TEST(hung_renewals_end_leadership_before_the_lease_expires) {
  cb ca = {0};
  kl_leader *a = elector("hung", "cand-a", &ca, 5, 3, 0.25, false);
  CHECK(WAIT_FOR(kl_leader_is_leader(a), 30));
  CHECK_EQ_INT(admin("POST", "{\"action\":\"delay\",\"method\":\"GET\","
                             "\"path\":\"/apis/coordination.k8s.io/v1/"
                             "namespaces/default/leases/hung\","
                             "\"seconds\":2.9,\"count\":0}"),
               0);
  CHECK_EQ_INT(admin("POST", "{\"action\":\"delay\",\"method\":\"PUT\","
                             "\"path\":\"/apis/coordination.k8s.io/v1/"
                             "namespaces/default/leases/hung\","
                             "\"seconds\":10,\"count\":0}"),
               0);
  CHECK(WAIT_FOR(kl_leader_lost(a), 30));
  CHECK(WAIT_FOR(atomic_load(&ca.stopped) == 1, 30));
  /* when the elector itself gave up, not when this thread's poll saw it */
  double wall = atomic_load(&ca.stopped_wall_ns) / 1e9, renewed = 0;
  char *rt = lease_field("hung", "renewTime");
  CHECK(kl_time_parse(rt, &renewed) == 0);
  free(rt);
  /* the lease (5 s from its last renewal) had not expired yet */
  CHECK(wall < renewed + 5);
  if (wall >= renewed + 5)
    printf("  loss noticed %.2f s after the lease expired\n",
           wall - renewed - 5);
  admin("DELETE", NULL);
  kl_leader_free(a);
}

/* The holder's lease duration decides when its lease expires, not the
 * candidate's own setting (client-go reads leaseDurationSeconds from the
 * record): a candidate configured with 2 s must not take a 30 s lease its
 * holder renewed a moment ago. */
TEST(the_holders_lease_duration_decides_expiry) {
  CHECK_EQ_INT(put_lease("long", "holder-x", 30), 201);
  cb ca = {0};
  kl_leader *a = elector("long", "cand-a", &ca, 2, 1.5, 0.25, false);
  usleep(4000000); /* twice the candidate's duration, far inside 30 s */
  CHECK(!kl_leader_is_leader(a));
  CHECK_EQ_INT(atomic_load(&ca.started), 0);
  char *h = lease_field("long", "holderIdentity");
  CHECK_EQ_STR(h, "holder-x");
  free(h);
  kl_leader_free(a);
}

int main(void) {
  setup();
  RUN(microtime);
  RUN(validation_and_identity);
  RUN(exactly_one_of_two_leads);
  RUN(dead_leader_is_replaced_after_the_lease_expires);
  RUN(release_on_stop_hands_over_at_once);
  RUN(release_after_a_conflict_reads_the_lease_again);
  RUN(lease_taken_by_another_holder_stops_the_leader);
  RUN(conflict_is_a_lost_race);
  RUN(renewals_failing_past_the_deadline_stop_the_leader);
  RUN(hung_renewals_end_leadership_before_the_lease_expires);
  RUN(the_holders_lease_duration_decides_expiry);
  kl_rest_free(rest);
  kl_apiserver_free(srv);
  return ctest_summary();
}
