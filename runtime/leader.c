/* leader.c: Lease-based leader election (see leader.h), after client-go's
 * tools/leaderelection (tryAcquireOrRenew, renew loop, ReleaseOnCancel). */
#include "leader.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "log_format.h"
#include "metrics.h"

#define JITTER 1.2

struct kl_leader {
  kl_leader_opts o;
  char *ns, *name, *identity, *path, *coll_path;
  pthread_t th;
  bool started, joined;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int stop;
  atomic_bool leading, lost;
  /* observed record (elector thread only) */
  char *observed_raw;    /* the spec as last seen, to notice changes */
  char *observed_holder; /* "" when free */
  double observed_at;    /* monotonic time the record last changed */
  cJSON *last;           /* the lease as we last wrote it (for release) */
  double renew_by;       /* while leading: monotonic time by which a
                            renewal must succeed; requests end by then */
  kl_metric_series *gauge;
};

/* ---- time ----------------------------------------------------------- */

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void kl_microtime_format(double t, char *buf, size_t n) {
  double fl = floor(t);
  time_t sec = (time_t)fl;
  long us = lround((t - fl) * 1e6);
  if (us >= 1000000) {
    sec++;
    us -= 1000000;
  }
  struct tm tm;
  gmtime_r(&sec, &tm);
  snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us);
}

int kl_time_parse(const char *s, double *t) {
  int Y, M, D, h, m, sec, n = 0;
  if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec,
                   &n) != 6 ||
      n != 19)
    return KL_EINVAL;
  const char *p = s + 19;
  double frac = 0, scale = 0.1;
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9') return KL_EINVAL;
    for (; *p >= '0' && *p <= '9'; p++, scale /= 10) frac += (*p - '0') * scale;
  }
  double off = 0;
  if (*p == 'Z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int oh, om, k = 0;
    if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5)
      return KL_EINVAL;
    off = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
    p += 6;
  } else {
    return KL_EINVAL;
  }
  if (*p || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 ||
      sec > 60)
    return KL_EINVAL;
  struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D,
                  .tm_hour = h, .tm_min = m, .tm_sec = sec};
  *t = (double)timegm(&tm) + frac - off;
  return 0;
}

/* ---- options -------------------------------------------------------- */

int kl_leader_validate(kl_leader_opts *o, char **err) {
  if (err) *err = NULL;
  if (o->lease_duration == 0) o->lease_duration = 15;
  if (o->renew_deadline == 0) o->renew_deadline = 10;
  if (o->retry_period == 0) o->retry_period = 2;
  const char *msg = NULL;
  if (!o->rest)
    msg = "a REST client is required";
  else if (!o->name || !*o->name)
    msg = "the lease name (--leader-election-id) is required";
  else if (o->lease_duration < 1 || o->lease_duration != floor(o->lease_duration))
    msg = "lease duration must be a whole number of seconds >= 1";
  else if (o->renew_deadline <= 0 || o->retry_period <= 0)
    msg = "renew deadline and retry period must be positive";
  else if (o->lease_duration <= o->renew_deadline)
    msg = "lease duration must be greater than the renew deadline";
  else if (o->renew_deadline <= JITTER * o->retry_period)
    msg = "renew deadline must be greater than retry period * 1.2";
  if (msg) {
    if (err)
      *err = kl_sprintf("leader election (lease %s, %gs/%gs/%gs): %s",
                        o->name ? o->name : "", o->lease_duration,
                        o->renew_deadline, o->retry_period, msg);
    return KL_EINVAL;
  }
  return 0;
}

char *kl_leader_default_identity(void) {
  char host[256];
  if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "klua");
  host[sizeof host - 1] = 0;
  unsigned char b[16];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
    uint64_t x = kl_now_ns() ^ ((uint64_t)getpid() << 32);
    for (int i = 0; i < 16; i++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      b[i] = (unsigned char)(x >> 56);
    }
  }
  b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
  b[8] = (b[8] & 0x3f) | 0x80;
  return kl_sprintf("%s_%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                    "%02x%02x%02x%02x%02x%02x",
                    host, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8],
                    b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* ---- one attempt ---------------------------------------------------- */

enum { TRY_OK = 0, TRY_HELD = 1, TRY_ERR = 2 };

static int request(kl_leader *l, const char *method, const char *path,
                   const char *body, kl_rest_resp *resp, bool stoppable) {
  /* A renewal as a whole must finish within the renew deadline (client-go
   * bounds it with one context): a request that hangs must not keep a
   * leader believing in a lease that has expired meanwhile. */
  double timeout = l->o.renew_deadline;
  if (stoppable && l->renew_by > 0) {
    double left = l->renew_by - kl_now();
    if (left <= 0) return KL_ETIMEDOUT;
    if (left < timeout) timeout = left;
  }
  kl_rest_req req = {.method = method, .path = path, .body = body,
                     .body_len = body ? strlen(body) : 0,
                     .timeout_s = timeout,
                     .stop = stoppable ? &l->stop : NULL};
  kl_rest_error err = {0};
  int rc = kl_rest_do(l->o.rest, &req, resp, &err);
  if (rc != 0 && resp->status != 404 && resp->status != 409 &&
      !atomic_load(&l->stop))
    kl_logkv(KL_LOG_WARN, "leader", "lease request failed", "lease",
             l->name, "namespace", l->ns, "error",
             err.message ? err.message : kl_strerror(rc));
  kl_rest_error_free(&err);
  return rc;
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void set_str(cJSON *o, const char *k, const char *v) {
  cJSON_DeleteItemFromObjectCaseSensitive(o, k);
  cJSON_AddStringToObject(o, k, v);
}

static void set_num(cJSON *o, const char *k, double v) {
  cJSON_DeleteItemFromObjectCaseSensitive(o, k);
  cJSON_AddNumberToObject(o, k, v);
}

static void keep_last(kl_leader *l, kl_rest_resp *resp) {
  cJSON *o = cJSON_ParseWithLength(resp->body.data, resp->body.len);
  if (!o) return;
  cJSON_Delete(l->last);
  l->last = o;
}

/* Notes the record as seen now; reports holder changes. */
static void observe(kl_leader *l, const cJSON *spec, const char *holder) {
  char *raw = spec ? cJSON_PrintUnformatted(spec) : kl_strdup("");
  if (!l->observed_raw || strcmp(raw, l->observed_raw) != 0) {
    free(l->observed_raw);
    l->observed_raw = raw;
    l->observed_at = kl_now();
  } else {
    free(raw);
  }
  if (!l->observed_holder || strcmp(l->observed_holder, holder) != 0) {
    free(l->observed_holder);
    l->observed_holder = kl_strdup(holder);
    if (l->o.on_new_leader) l->o.on_new_leader(holder, l->o.ud);
  }
}

static int try_acquire_or_renew(kl_leader *l) {
  double now = wall_now();
  char ts[40];
  kl_microtime_format(now, ts, sizeof ts);
  kl_rest_resp resp = {0};
  int rc = request(l, "GET", l->path, NULL, &resp, true);
  if (rc != 0 && resp.status == 404) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "apiVersion", "coordination.k8s.io/v1");
    cJSON_AddStringToObject(o, "kind", "Lease");
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(md, "name", l->name);
    cJSON_AddStringToObject(md, "namespace", l->ns);
    cJSON *spec = cJSON_AddObjectToObject(o, "spec");
    cJSON_AddStringToObject(spec, "holderIdentity", l->identity);
    cJSON_AddNumberToObject(spec, "leaseDurationSeconds", l->o.lease_duration);
    cJSON_AddStringToObject(spec, "acquireTime", ts);
    cJSON_AddStringToObject(spec, "renewTime", ts);
    cJSON_AddNumberToObject(spec, "leaseTransitions", 0);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    kl_rest_resp_free(&resp);
    rc = request(l, "POST", l->coll_path, body, &resp, true);
    free(body);
    if (rc == 0) keep_last(l, &resp);
    kl_rest_resp_free(&resp);
    return rc == 0 ? TRY_OK : TRY_ERR; /* 409 AlreadyExists: lost the race */
  }
  if (rc != 0) {
    kl_rest_resp_free(&resp);
    return TRY_ERR;
  }
  cJSON *o = cJSON_ParseWithLength(resp.body.data, resp.body.len);
  kl_rest_resp_free(&resp);
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return TRY_ERR;
  }
  cJSON *spec = cJSON_GetObjectItemCaseSensitive(o, "spec");
  if (!cJSON_IsObject(spec)) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, "spec");
    spec = cJSON_AddObjectToObject(o, "spec");
  }
  const char *h = jstr(spec, "holderIdentity");
  char *holder = kl_strdup(h ? h : "");
  observe(l, spec, holder);
  bool mine = strcmp(holder, l->identity) == 0;
  if (!mine && holder[0]) {
    double dur = jnum(spec, "leaseDurationSeconds"), renew;
    const char *rt = jstr(spec, "renewTime");
    if (!rt) rt = jstr(spec, "acquireTime");
    bool expired_wall = rt && kl_time_parse(rt, &renew) == 0 &&
                        renew + dur < now;
    /* client-go's rule, immune to clock skew: unchanged for the holder's
     * lease duration (the record's, not ours) by our own clock */
    bool expired_seen =
        l->observed_at + (dur > 0 ? dur : l->o.lease_duration) <= kl_now();
    if (!expired_wall && !expired_seen) {
      free(holder);
      cJSON_Delete(o);
      return TRY_HELD;
    }
  }
  double transitions = jnum(spec, "leaseTransitions");
  if (!mine) {
    set_num(spec, "leaseTransitions", transitions + 1);
    set_str(spec, "acquireTime", ts);
  } else if (!jstr(spec, "acquireTime")) {
    set_str(spec, "acquireTime", ts);
  }
  set_str(spec, "holderIdentity", l->identity);
  set_num(spec, "leaseDurationSeconds", l->o.lease_duration);
  set_str(spec, "renewTime", ts);
  char *body = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  rc = request(l, "PUT", l->path, body, &resp, true);
  free(body);
  if (rc == 0) keep_last(l, &resp);
  if (rc != 0 && resp.status == 409)
    kl_logkv(KL_LOG_DEBUG, "leader", "lost the race for the lease", "lease",
             l->name, "holder", holder);
  kl_rest_resp_free(&resp);
  free(holder);
  return rc == 0 ? TRY_OK : TRY_ERR;
}

/* ReleaseOnCancel: holderIdentity "", leaseDurationSeconds 1. A renewal
 * that the stop cut short may still have landed in the server, leaving
 * l->last a version behind: on a conflict the lease is read again and
 * released if it is still ours. */
static void release(kl_leader *l) {
  for (int attempt = 0; attempt < 2 && l->last; attempt++) {
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(l->last, "spec");
    const char *h = spec ? jstr(spec, "holderIdentity") : NULL;
    if (!h || strcmp(h, l->identity) != 0) return;
    char ts[40];
    kl_microtime_format(wall_now(), ts, sizeof ts);
    set_str(spec, "holderIdentity", "");
    set_num(spec, "leaseDurationSeconds", 1);
    set_str(spec, "renewTime", ts);
    set_str(spec, "acquireTime", ts);
    char *body = cJSON_PrintUnformatted(l->last);
    kl_rest_resp resp = {0};
    int rc = request(l, "PUT", l->path, body, &resp, false);
    free(body);
    int status = resp.status;
    kl_rest_resp_free(&resp);
    if (rc == 0) {
      kl_logkv(KL_LOG_INFO, "leader", "released the lease", "lease", l->name,
               "namespace", l->ns, "identity", l->identity);
      return;
    }
    if (status != 409) break;
    rc = request(l, "GET", l->path, NULL, &resp, false);
    if (rc == 0) keep_last(l, &resp);
    kl_rest_resp_free(&resp);
    if (rc != 0) break;
  }
  kl_logkv(KL_LOG_WARN, "leader", "could not release the lease", "lease",
           l->name, "namespace", l->ns, "identity", l->identity);
}

/* ---- the elector thread -------------------------------------------- */

/* Sleeps up to secs; returns true when stop was requested. */
static bool nap(kl_leader *l, double secs) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double end = ts.tv_sec + ts.tv_nsec / 1e9 + secs;
  ts.tv_sec = (time_t)end;
  ts.tv_nsec = (long)((end - floor(end)) * 1e9);
  pthread_mutex_lock(&l->mu);
  while (!atomic_load(&l->stop))
    if (pthread_cond_timedwait(&l->cv, &l->mu, &ts) != 0) break;
  pthread_mutex_unlock(&l->mu);
  return atomic_load(&l->stop) != 0;
}

static double jittered(double d) {
  unsigned r;
  if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
    r = (unsigned)kl_now_ns();
  return d + (r / 4294967296.0) * JITTER * d;
}

static void *run(void *arg) {
  kl_leader *l = arg;
  kl_logkv(KL_LOG_INFO, "leader", "attempting to acquire the lease", "lease",
           l->name, "namespace", l->ns, "identity", l->identity);
  for (;;) {
    if (atomic_load(&l->stop)) return NULL;
    if (try_acquire_or_renew(l) == TRY_OK) break;
    if (nap(l, jittered(l->o.retry_period))) return NULL;
  }
  atomic_store(&l->leading, true);
  kl_gauge_set(l->gauge, 1);
  kl_logkv(KL_LOG_INFO, "leader", "became the leader", "lease", l->name,
           "namespace", l->ns, "identity", l->identity);
  if (l->o.on_started_leading) l->o.on_started_leading(l->o.ud);
  double last_ok = kl_now();
  const char *why = NULL;
  while (!nap(l, l->o.retry_period)) {
    l->renew_by = last_ok + l->o.renew_deadline;
    int r = try_acquire_or_renew(l);
    if (r == TRY_OK) {
      last_ok = kl_now();
    } else if (r == TRY_HELD) {
      why = "another holder took the lease";
      break;
    } else {
      /* Retry after the usual period while one still fits before the
       * deadline; otherwise the deadline decides (client-go's poll ends
       * when its context does), so the loss is declared at renew_by and
       * not a retry period later, when the lease may have expired. */
      double left = l->renew_by - kl_now();
      if (left > l->o.retry_period) continue;
      if (left > 0 && nap(l, left)) break; /* stopped: release as usual */
      why = "could not renew the lease within the renew deadline";
      break;
    }
  }
  atomic_store(&l->leading, false);
  kl_gauge_set(l->gauge, 0);
  l->renew_by = 0;
  if (why) {
    atomic_store(&l->lost, true);
    kl_logkv(KL_LOG_ERROR, "leader", "leader election lost", "lease",
             l->name, "namespace", l->ns, "identity", l->identity, "reason",
             why);
  } else if (!l->o.no_release) {
    release(l);
  }
  if (l->o.on_stopped_leading) l->o.on_stopped_leading(l->o.ud);
  return NULL;
}

int kl_leader_start(const kl_leader_opts *opts, kl_leader **out, char **err) {
  *out = NULL;
  kl_leader_opts o = *opts;
  int rc = kl_leader_validate(&o, err);
  if (rc) return rc;
  kl_leader *l = kl_calloc(1, sizeof *l);
  l->o = o;
  l->ns = kl_strdup(o.namespace ? o.namespace : kl_rest_namespace(o.rest));
  l->name = kl_strdup(o.name);
  l->identity = o.identity ? kl_strdup(o.identity) : kl_leader_default_identity();
  l->o.namespace = l->ns;
  l->o.name = l->name;
  l->o.identity = l->identity;
  kl_buf p = KL_BUF_INIT;
  kl_buf_adds(&p, "/apis/coordination.k8s.io/v1/namespaces");
  kl_rest_path_add(&p, l->ns);
  kl_buf_adds(&p, "/leases");
  l->coll_path = kl_strdup(p.data);
  kl_rest_path_add(&p, l->name);
  l->path = kl_buf_detach(&p, NULL);
  pthread_mutex_init(&l->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&l->cv, &ca);
  pthread_condattr_destroy(&ca);
  l->gauge = kl_metric_withv(kl_std_metrics_get()->leader_master_status,
                             l->name);
  kl_gauge_set(l->gauge, 0);
  if (pthread_create(&l->th, NULL, run, l) != 0) {
    if (err) *err = kl_sprintf("leader election: cannot start a thread");
    l->joined = true;
    kl_leader_free(l);
    return KL_EIO;
  }
  l->started = true;
  *out = l;
  return 0;
}

bool kl_leader_is_leader(kl_leader *l) { return atomic_load(&l->leading); }
bool kl_leader_lost(kl_leader *l) { return atomic_load(&l->lost); }
const char *kl_leader_identity(const kl_leader *l) { return l->identity; }

void kl_leader_stop(kl_leader *l) {
  if (!l || !l->started || l->joined) return;
  pthread_mutex_lock(&l->mu);
  atomic_store(&l->stop, 1);
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->th, NULL);
  l->joined = true;
}

void kl_leader_free(kl_leader *l) {
  if (!l) return;
  kl_leader_stop(l);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
  cJSON_Delete(l->last);
  free(l->observed_raw);
  free(l->observed_holder);
  free(l->ns);
  free(l->name);
  free(l->identity);
  free(l->path);
  free(l->coll_path);
  free(l);
}
