/* events.c: the event recorder and client-go's EventCorrelator (spam
 * filter, aggregation, dedupe) on a sender thread (see events.h). The
 * correlator caches are bounded like client-go's LRUs (4096 keys): when one
 * grows past that it is emptied, which only costs a new Event instead of a
 * count increment. */
#include "events.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hmap.h"
#include "log_format.h"
#include "metrics.h"

#define CACHE_MAX 4096
#define MESSAGE_MAX 1024
#define COMBINED "(combined from similar events): "

typedef struct ev {
  char *api_version, *kind, *ns, *name, *uid, *rv;
  char *type, *reason, *message;
  double wall; /* seconds since the epoch */
} ev;

typedef struct bucket {
  double tokens, last;
} bucket;

typedef struct agg {
  char **msgs; /* distinct messages seen in the window, oldest first */
  size_t n;
  double last;
} agg;

typedef struct seen {
  char *name, *first;
  long count;
} seen;

struct kl_events {
  kl_events_opts o;
  char *component, *instance;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv, idle;
  ev *ring;
  size_t cap, head, len;
  size_t busy; /* 1 while the thread handles a popped event */
  bool stop;
  atomic_int abort; /* set at free: a pending request returns at once */
  kl_events_stats st;
  /* sender thread only */
  kl_hmap spam, aggs, dedupe;
  uint64_t last_name_ns;
};

/* ---- refs ----------------------------------------------------------- */

static char *get_str(kl_span obj, const char *path) {
  kl_span v;
  if (!kl_json_get(obj, path, &v)) return NULL;
  return kl_json_strdup(v);
}

int kl_event_ref_from_json(kl_span obj, const char *api_version,
                           const char *kind, kl_event_ref *ref) {
  memset(ref, 0, sizeof *ref);
  char *name = get_str(obj, "metadata.name");
  if (!name || !*name) {
    free(name);
    return KL_EINVAL;
  }
  char *av = get_str(obj, "apiVersion"), *k = get_str(obj, "kind");
  ref->api_version = av ? av : kl_strdup(api_version ? api_version : "");
  ref->kind = k ? k : kl_strdup(kind ? kind : "");
  ref->name = name;
  ref->namespace = get_str(obj, "metadata.namespace");
  ref->uid = get_str(obj, "metadata.uid");
  ref->resource_version = get_str(obj, "metadata.resourceVersion");
  return 0;
}

void kl_event_ref_free(kl_event_ref *ref) {
  free((void *)ref->api_version);
  free((void *)ref->kind);
  free((void *)ref->namespace);
  free((void *)ref->name);
  free((void *)ref->uid);
  free((void *)ref->resource_version);
  memset(ref, 0, sizeof *ref);
}

/* ---- helpers -------------------------------------------------------- */

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void rfc3339(double t, char *buf, size_t n) {
  time_t s = (time_t)t;
  struct tm tm;
  gmtime_r(&s, &tm);
  strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void ev_free(ev *e) {
  free(e->api_version);
  free(e->kind);
  free(e->ns);
  free(e->name);
  free(e->uid);
  free(e->rv);
  free(e->type);
  free(e->reason);
  free(e->message);
}

static char *dup0(const char *s) { return kl_strdup(s ? s : ""); }

/* Cuts s to at most max bytes at a UTF-8 character boundary (NEW). */
static char *cut_utf8(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n <= max) return kl_strdup(s);
  while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80) max--;
  return kl_strndup(s, max);
}

static void count_drop(const char *reason) {
  kl_counter_inc(
      kl_metric_withv(kl_std_metrics_get()->events_dropped_total, reason));
}

/* ---- public entry points -------------------------------------------- */

static void *run(void *arg);

int kl_events_new(const kl_events_opts *opts, kl_events **out, char **err) {
  *out = NULL;
  if (err) *err = NULL;
  if (!opts || !opts->rest) {
    if (err) *err = kl_strdup("event recorder: a REST client is required");
    return KL_EINVAL;
  }
  kl_events *e = kl_calloc(1, sizeof *e);
  e->o = *opts;
  if (!e->o.queue_size) e->o.queue_size = 1000;
  if (!e->o.spam_burst) e->o.spam_burst = 25;
  if (!e->o.spam_qps) e->o.spam_qps = 1.0 / 300;
  if (!e->o.max_similar) e->o.max_similar = 10;
  if (!e->o.aggregate_window) e->o.aggregate_window = 600;
  e->component = dup0(opts->component ? opts->component : "klua");
  if (opts->instance) {
    e->instance = kl_strdup(opts->instance);
  } else {
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    e->instance = kl_strdup(host);
  }
  e->cap = e->o.queue_size;
  e->ring = kl_calloc(e->cap, sizeof *e->ring);
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv, NULL);
  pthread_cond_init(&e->idle, NULL);
  kl_hmap_init(&e->spam, KL_HMAP_OWN_KEYS);
  kl_hmap_init(&e->aggs, KL_HMAP_OWN_KEYS);
  kl_hmap_init(&e->dedupe, KL_HMAP_OWN_KEYS);
  kl_std_metrics_get();
  if (pthread_create(&e->th, NULL, run, e) != 0) {
    if (err) *err = kl_strdup("event recorder: cannot start a thread");
    free(e->ring);
    free(e->component);
    free(e->instance);
    free(e);
    return KL_EIO;
  }
  *out = e;
  return 0;
}

int kl_events_record(kl_events *e, const kl_event_ref *ref, const char *type,
                     const char *reason, const char *message) {
  if (!type || (strcmp(type, "Normal") != 0 && strcmp(type, "Warning") != 0) ||
      !reason || !*reason || !ref || !ref->name || !*ref->name)
    return KL_EINVAL;
  pthread_mutex_lock(&e->mu);
  if (e->stop) {
    pthread_mutex_unlock(&e->mu);
    return KL_ECLOSED;
  }
  if (e->len == e->cap) {
    e->st.dropped_full++;
    pthread_mutex_unlock(&e->mu);
    count_drop("queue_full");
    return KL_EAGAIN;
  }
  ev *v = &e->ring[(e->head + e->len) % e->cap];
  v->api_version = dup0(ref->api_version);
  v->kind = dup0(ref->kind);
  v->ns = dup0(ref->namespace);
  v->name = dup0(ref->name);
  v->uid = dup0(ref->uid);
  v->rv = dup0(ref->resource_version);
  v->type = kl_strdup(type);
  v->reason = kl_strdup(reason);
  v->message = cut_utf8(message ? message : "", MESSAGE_MAX);
  v->wall = wall_now();
  e->len++;
  e->st.recorded++;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  return 0;
}

void kl_events_get_stats(kl_events *e, kl_events_stats *out) {
  pthread_mutex_lock(&e->mu);
  *out = e->st;
  pthread_mutex_unlock(&e->mu);
}

int kl_events_flush(kl_events *e, double timeout) {
  double end = kl_now() + timeout;
  int rc = 0;
  pthread_mutex_lock(&e->mu);
  while (e->len || e->busy) {
    if (timeout >= 0 && kl_now() >= end) {
      rc = KL_ETIMEDOUT;
      break;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&e->idle, &e->mu, &ts);
  }
  pthread_mutex_unlock(&e->mu);
  return rc;
}

static void clear_caches(kl_events *e);

void kl_events_free(kl_events *e) {
  if (!e) return;
  kl_events_flush(e, 5);
  atomic_store(&e->abort, 1);
  pthread_mutex_lock(&e->mu);
  e->stop = true;
  pthread_cond_broadcast(&e->cv);
  pthread_mutex_unlock(&e->mu);
  pthread_join(e->th, NULL);
  for (size_t i = 0; i < e->len; i++) ev_free(&e->ring[(e->head + i) % e->cap]);
  clear_caches(e);
  kl_hmap_free(&e->spam);
  kl_hmap_free(&e->aggs);
  kl_hmap_free(&e->dedupe);
  pthread_mutex_destroy(&e->mu);
  pthread_cond_destroy(&e->cv);
  pthread_cond_destroy(&e->idle);
  free(e->ring);
  free(e->component);
  free(e->instance);
  free(e);
}

/* ---- correlator (sender thread) ------------------------------------- */

static void agg_free(agg *a) {
  for (size_t i = 0; i < a->n; i++) free(a->msgs[i]);
  free(a->msgs);
  free(a);
}

static void seen_free(seen *s) {
  free(s->name);
  free(s->first);
  free(s);
}

static void clear_map(kl_hmap *m, void (*fr)(void *)) {
  size_t i = 0;
  const char *k;
  void *v;
  while (kl_hmap_next(m, &i, &k, &v)) fr(v);
  kl_hmap_free(m);
  kl_hmap_init(m, KL_HMAP_OWN_KEYS);
}

static void free_agg_v(void *v) { agg_free(v); }
static void free_seen_v(void *v) { seen_free(v); }

static void clear_caches(kl_events *e) {
  clear_map(&e->spam, free);
  clear_map(&e->aggs, free_agg_v);
  clear_map(&e->dedupe, free_seen_v);
}

/* Token bucket per source+object; true when the event may pass. */
static bool spam_allow(kl_events *e, const char *key) {
  double now = kl_now();
  bucket *b = kl_hmap_get(&e->spam, key);
  if (!b) {
    if (kl_hmap_len(&e->spam) >= CACHE_MAX) clear_map(&e->spam, free);
    b = kl_malloc(sizeof *b);
    b->tokens = e->o.spam_burst;
    b->last = now;
    kl_hmap_put(&e->spam, key, b);
  }
  b->tokens += (now - b->last) * e->o.spam_qps;
  if (b->tokens > e->o.spam_burst) b->tokens = e->o.spam_burst;
  b->last = now;
  if (b->tokens < 1) return false;
  b->tokens -= 1;
  return true;
}

static void add_field(kl_buf *b, const char *k, const char *v, bool comma) {
  if (comma) kl_buf_addc(b, ',');
  kl_buf_addc(b, '"');
  kl_buf_adds(b, k);
  kl_buf_adds(b, "\":");
  kl_json_quote(b, v, strlen(v));
}

static const char *event_ns(const ev *v) { return *v->ns ? v->ns : "default"; }

static char *event_body(kl_events *e, const ev *v, const char *name,
                        const char *msg, long count, const char *first,
                        const char *last) {
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"metadata\":{");
  add_field(&b, "name", name, false);
  add_field(&b, "namespace", event_ns(v), true);
  kl_buf_adds(&b, "},\"involvedObject\":{");
  add_field(&b, "apiVersion", v->api_version, false);
  add_field(&b, "kind", v->kind, true);
  if (*v->ns) add_field(&b, "namespace", v->ns, true);
  add_field(&b, "name", v->name, true);
  if (*v->uid) add_field(&b, "uid", v->uid, true);
  if (*v->rv) add_field(&b, "resourceVersion", v->rv, true);
  kl_buf_addc(&b, '}');
  add_field(&b, "type", v->type, true);
  add_field(&b, "reason", v->reason, true);
  add_field(&b, "message", msg, true);
  kl_buf_adds(&b, ",\"source\":{");
  add_field(&b, "component", e->component, false);
  kl_buf_addc(&b, '}');
  add_field(&b, "firstTimestamp", first, true);
  add_field(&b, "lastTimestamp", last, true);
  kl_buf_addf(&b, ",\"count\":%ld", count);
  add_field(&b, "reportingComponent", e->component, true);
  add_field(&b, "reportingInstance", e->instance, true);
  kl_buf_addc(&b, '}');
  return kl_buf_detach(&b, NULL);
}

/* One request with a few retries for transient failures. Returns the HTTP
 * status (0: no answer). */
static int send_req(kl_events *e, const char *method, const char *path,
                const char *ctype, const char *body, const ev *v) {
  int status = 0;
  for (int attempt = 0; attempt < 3; attempt++) {
    kl_rest_req req = {.method = method, .path = path, .body = body,
                       .body_len = strlen(body), .content_type = ctype,
                       .timeout_s = 10, .stop = &e->abort};
    kl_rest_resp resp = {0};
    kl_rest_error err = {0};
    int rc = kl_rest_do(e->o.rest, &req, &resp, &err);
    status = resp.status;
    kl_rest_resp_free(&resp);
    if (rc == 0 || (status >= 400 && status < 500 && status != 429)) {
      if (rc != 0 && status != 404) {
        char obj[512];
        snprintf(obj, sizeof obj, "%s %s/%s", v->kind, event_ns(v), v->name);
        kl_logkv(KL_LOG_WARN, "events", "event refused", "object", obj,
                 "reason", v->reason, "error",
                 err.message ? err.message : kl_strerror(rc));
      }
      kl_rest_error_free(&err);
      return status;
    }
    if (attempt == 2) {
      char obj[512];
      snprintf(obj, sizeof obj, "%s %s/%s", v->kind, event_ns(v), v->name);
      kl_logkv(KL_LOG_WARN, "events", "cannot send event", "object", obj,
               "reason", v->reason, "error",
               err.message ? err.message : kl_strerror(rc));
    }
    kl_rest_error_free(&err);
    if (atomic_load(&e->abort)) break;
    usleep(200000u << attempt);
  }
  return status;
}

static void handle(kl_events *e, ev *v) {
  kl_buf key = KL_BUF_INIT;
  /* client-go getSpamKey: source + involvedObject */
  kl_buf_addf(&key, "%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s", e->component, v->kind,
              v->ns, v->name, v->uid, v->api_version);
  if (!spam_allow(e, key.data)) {
    pthread_mutex_lock(&e->mu);
    e->st.dropped_spam++;
    pthread_mutex_unlock(&e->mu);
    count_drop("spam");
    kl_buf_free(&key);
    return;
  }
  /* aggregation: same source, object, type and reason */
  kl_buf_addf(&key, "\x1f%s\x1f%s", v->type, v->reason);
  agg *a = kl_hmap_get(&e->aggs, key.data);
  if (a && v->wall - a->last > e->o.aggregate_window) {
    bool f;
    kl_hmap_del(&e->aggs, key.data, &f);
    agg_free(a);
    a = NULL;
  }
  if (!a) {
    if (kl_hmap_len(&e->aggs) >= CACHE_MAX) clear_map(&e->aggs, free_agg_v);
    a = kl_calloc(1, sizeof *a);
    a->msgs = kl_calloc((size_t)e->o.max_similar + 1, sizeof *a->msgs);
    kl_hmap_put(&e->aggs, key.data, a);
  }
  a->last = v->wall;
  bool known = false;
  for (size_t i = 0; i < a->n && !known; i++)
    known = strcmp(a->msgs[i], v->message) == 0;
  if (!known) a->msgs[a->n++] = kl_strdup(v->message);
  char *msg;
  bool combined = a->n >= (size_t)e->o.max_similar;
  if (combined) {
    free(a->msgs[0]); /* keep the set from growing */
    memmove(a->msgs, a->msgs + 1, (a->n - 1) * sizeof *a->msgs);
    a->n--;
    msg = kl_sprintf(COMBINED "%s", v->message);
  } else {
    msg = kl_strdup(v->message);
    kl_buf_addc(&key, 0x1f);
    kl_buf_adds(&key, v->message);
  }

  /* dedupe: the key names one Event */
  char ts[40];
  rfc3339(v->wall, ts, sizeof ts);
  seen *s = kl_hmap_get(&e->dedupe, key.data);
  kl_buf path = KL_BUF_INIT;
  kl_buf_adds(&path, "/api/v1/namespaces");
  kl_rest_path_add(&path, event_ns(v));
  kl_buf_adds(&path, "/events");
  int status = 0;
  bool patched = false;
  char *name = NULL, *first = NULL;
  long count = 1;
  if (s) {
    count = s->count + 1;
    name = kl_strdup(s->name);
    first = kl_strdup(s->first);
    kl_buf p = KL_BUF_INIT, b = KL_BUF_INIT;
    kl_buf_add(&p, path.data, path.len);
    kl_rest_path_add(&p, name);
    kl_buf_addf(&b, "{\"count\":%ld", count);
    add_field(&b, "lastTimestamp", ts, true);
    add_field(&b, "message", msg, true);
    kl_buf_addc(&b, '}');
    status = send_req(e, "PATCH", p.data,
                  "application/strategic-merge-patch+json", b.data, v);
    patched = status >= 200 && status < 300;
    kl_buf_free(&p);
    kl_buf_free(&b);
  } else {
    uint64_t ns = (uint64_t)(v->wall * 1e9);
    if (ns <= e->last_name_ns) ns = e->last_name_ns + 1;
    e->last_name_ns = ns;
    name = kl_sprintf("%s.%llx", v->name, (unsigned long long)ns);
    first = kl_strdup(ts);
  }
  if (!s || status == 404) { /* new, or the Event expired meanwhile */
    char *body = event_body(e, v, name, msg, count, first, ts);
    status = send_req(e, "POST", path.data, NULL, body, v);
    free(body);
  }
  bool ok = status >= 200 && status < 300;
  if (ok) {
    if (!s) {
      if (kl_hmap_len(&e->dedupe) >= CACHE_MAX)
        clear_map(&e->dedupe, free_seen_v);
      s = kl_calloc(1, sizeof *s);
      s->name = kl_strdup(name);
      s->first = kl_strdup(first);
      kl_hmap_put(&e->dedupe, key.data, s);
    }
    s->count = count;
  }
  pthread_mutex_lock(&e->mu);
  if (!ok)
    e->st.errors++;
  else if (patched)
    e->st.patched++;
  else
    e->st.created++;
  if (ok && combined) e->st.aggregated++;
  pthread_mutex_unlock(&e->mu);
  if (!ok) count_drop("error");
  free(name);
  free(first);
  free(msg);
  kl_buf_free(&path);
  kl_buf_free(&key);
}

static void *run(void *arg) {
  kl_events *e = arg;
  pthread_mutex_lock(&e->mu);
  for (;;) {
    while (!e->len && !e->stop) pthread_cond_wait(&e->cv, &e->mu);
    if (e->stop) break;
    ev v = e->ring[e->head];
    memset(&e->ring[e->head], 0, sizeof v);
    e->head = (e->head + 1) % e->cap;
    e->len--;
    e->busy = 1;
    pthread_mutex_unlock(&e->mu);
    handle(e, &v);
    ev_free(&v);
    pthread_mutex_lock(&e->mu);
    e->busy = 0;
    if (!e->len) pthread_cond_broadcast(&e->idle);
  }
  pthread_mutex_unlock(&e->mu);
  return NULL;
}
