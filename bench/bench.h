/* bench.h: shared helpers of klua's benchmark programs (the bench/ C files, driven by
 * scripts/bench): clocks, resident memory, deterministic generators of
 * realistic ConfigMaps and Pods, a REST client from a kubeconfig file, the
 * watch-event capture and cJSON floor shared by the watch rows, and
 * result rows printed as one JSON object per line on stdout.
 * Benchmarks are not tests: nothing here asserts speed.
 * Thread-safety: the generators and clocks are reentrant; emit() is not. */
#ifndef KL_BENCH_H
#define KL_BENCH_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "kl.h"
#include "kubeconfig.h"
#include "rest.h"

#define NNS 50 /* namespaces the objects are spread over */

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of the calling thread, seconds. */
static inline double bench_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of the whole process, seconds. */
static inline double bench_pcpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A field of /proc/self/status in bytes (VmRSS, VmHWM), 0 if absent. */
static inline size_t bench_status_bytes(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  size_t kb = 0, fl = strlen(field);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, field, fl) && line[fl] == ':') {
      kb = strtoull(line + fl + 1, NULL, 10);
      break;
    }
  fclose(f);
  return kb * 1024;
}
static inline size_t bench_rss(void) { return bench_status_bytes("VmRSS"); }

/* ---- result rows: {"row": "...", key: value, ...} one per line ---- */

typedef struct bench_row {
  kl_buf b;
} bench_row;

static inline void row_begin(bench_row *r, const char *name) {
  r->b = (kl_buf)KL_BUF_INIT;
  kl_buf_addf(&r->b, "{\"row\":\"%s\"", name);
}
/* A number, or null when it is not finite (JSON has no inf/nan). */
static inline void row_num(bench_row *r, const char *k, double v) {
  if (isfinite(v))
    kl_buf_addf(&r->b, ",\"%s\":%.6g", k, v);
  else
    kl_buf_addf(&r->b, ",\"%s\":null", k);
}
static inline void row_str(bench_row *r, const char *k, const char *v) {
  kl_buf_addf(&r->b, ",\"%s\":\"", k);
  for (const char *p = v; *p; p++) {
    if (*p == '"' || *p == '\\') kl_buf_addc(&r->b, '\\');
    if ((unsigned char)*p < 0x20) { kl_buf_addc(&r->b, ' '); continue; }
    kl_buf_addc(&r->b, *p);
  }
  kl_buf_addc(&r->b, '"');
}
static inline void row_end(bench_row *r) {
  kl_buf_addc(&r->b, '}');
  printf("%s\n", r->b.data);
  fflush(stdout);
  kl_buf_free(&r->b);
}

static inline void bench_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

/* ---- generators ---- */

/* A deterministic pseudo-random word stream. */
static inline uint64_t bench_rand(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static inline void add_hexish(kl_buf *b, uint64_t *s, int n) {
  static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  for (int i = 0; i < n; i++) kl_buf_addc(b, al[bench_rand(s) % 36]);
}

/* A ConfigMap of ~1 KB (before the server adds uid, resourceVersion,
 * creationTimestamp and managedFields), as a POST body. */
static inline void gen_configmap(kl_buf *b, long i) {
  uint64_t s = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(i + 1) * 0x100000001b3ULL;
  kl_buf_addf(b,
      "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
      "\"name\":\"app-config-%06ld\",\"namespace\":\"ns-%02ld\","
      "\"labels\":{\"app\":\"svc-%04ld\",\"app.kubernetes.io/part-of\":"
      "\"shop\",\"team\":\"team-%02ld\",\"tier\":\"backend\"},"
      "\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
      "\"{\\\"apiVersion\\\":\\\"v1\\\",\\\"kind\\\":\\\"ConfigMap\\\"}\","
      "\"config.example.com/checksum\":\"",
      i, i % NNS, i % 3000, i % 40);
  add_hexish(b, &s, 40);
  kl_buf_adds(b, "\"}},\"data\":{\"application.properties\":\""
                 "server.port=8080\\nlogging.level.root=INFO\\n"
                 "spring.datasource.url=jdbc:postgresql://db-");
  add_hexish(b, &s, 8);
  kl_buf_adds(b, ".internal:5432/orders\\nspring.datasource.username=orders\\n"
                 "cache.ttl.seconds=300\\nfeature.flags=checkout,search,"
                 "recommendations\\n\",\"LOG_FORMAT\":\"json\","
                 "\"MAX_CONNECTIONS\":\"100\",\"REGION\":\"eu-west-1\","
                 "\"ENDPOINT\":\"https://api-");
  add_hexish(b, &s, 12);
  kl_buf_adds(b, ".example.com/v2\",\"token-hint\":\"");
  add_hexish(b, &s, 120);
  kl_buf_adds(b, "\",\"nginx.conf\":\"worker_processes auto;\\nevents { "
                 "worker_connections 1024; }\\nhttp {\\n  server {\\n    "
                 "listen 80;\\n    location / { proxy_pass http://backend; "
                 "}\\n  }\\n}\\n\"}}");
}

/* A Pod of ~3 KB as created (the server adds metadata and ~1 KB of
 * managedFields: ~4 KB as listed), with owner references, two containers
 * and a filled status. */
static inline void gen_pod(kl_buf *b, long i) {
  uint64_t s = 0x51afd7ed558ccdULL ^ (uint64_t)(i + 7) * 0x100000001b3ULL;
  char rs[16], ip[32];
  snprintf(rs, sizeof rs, "%05lx", (unsigned long)(i / 3) & 0xfffff);
  snprintf(ip, sizeof ip, "10.%ld.%ld.%ld", 32 + (i >> 16) % 200,
           (i >> 8) & 255, i & 255);
  long app = i % 700;
  kl_buf_addf(b,
      "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{"
      "\"name\":\"web-%04ld-%s-%05ld\",\"namespace\":\"ns-%02ld\","
      "\"labels\":{\"app\":\"web-%04ld\",\"pod-template-hash\":\"%s\","
      "\"app.kubernetes.io/version\":\"1.4.%ld\",\"team\":\"team-%02ld\"},"
      "\"annotations\":{\"prometheus.io/scrape\":\"true\","
      "\"prometheus.io/port\":\"9090\"},"
      "\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":"
      "\"ReplicaSet\",\"name\":\"web-%04ld-%s\",\"uid\":\"",
      app, rs, i, i % NNS, app, rs, i % 9, i % 40, app, rs);
  add_hexish(b, &s, 8);
  kl_buf_adds(b, "-1c2d-4e5f-8a9b-");
  add_hexish(b, &s, 12);
  kl_buf_addf(b,
      "\",\"controller\":true,\"blockOwnerDeletion\":true}]},"
      "\"spec\":{\"nodeName\":\"node-%03ld\",\"serviceAccountName\":"
      "\"web\",\"restartPolicy\":\"Always\","
      "\"terminationGracePeriodSeconds\":30,\"dnsPolicy\":\"ClusterFirst\","
      "\"schedulerName\":\"default-scheduler\",\"priority\":0,"
      "\"enableServiceLinks\":true,\"preemptionPolicy\":"
      "\"PreemptLowerPriority\",\"securityContext\":{\"runAsNonRoot\":true,"
      "\"fsGroup\":2000},\"containers\":[{\"name\":\"web\",\"image\":"
      "\"registry.example.com/shop/web:1.4.%ld\",\"imagePullPolicy\":"
      "\"IfNotPresent\",\"ports\":[{\"name\":\"http\",\"containerPort\":"
      "8080,\"protocol\":\"TCP\"},{\"name\":\"metrics\",\"containerPort\":"
      "9090,\"protocol\":\"TCP\"}],\"env\":[{\"name\":\"POD_NAME\","
      "\"valueFrom\":{\"fieldRef\":{\"apiVersion\":\"v1\",\"fieldPath\":"
      "\"metadata.name\"}}},{\"name\":\"LOG_LEVEL\",\"value\":\"info\"},"
      "{\"name\":\"DB_HOST\",\"value\":\"db.ns-%02ld.svc.cluster.local\"}],"
      "\"resources\":{\"limits\":{\"cpu\":\"500m\",\"memory\":\"256Mi\"},"
      "\"requests\":{\"cpu\":\"100m\",\"memory\":\"128Mi\"}},"
      "\"readinessProbe\":{\"httpGet\":{\"path\":\"/healthz\",\"port\":"
      "8080,\"scheme\":\"HTTP\"},\"initialDelaySeconds\":5,"
      "\"periodSeconds\":10,\"timeoutSeconds\":1,\"successThreshold\":1,"
      "\"failureThreshold\":3},\"volumeMounts\":[{\"name\":\"config\","
      "\"mountPath\":\"/etc/web\",\"readOnly\":true},{\"name\":"
      "\"kube-api-access\",\"mountPath\":"
      "\"/var/run/secrets/kubernetes.io/serviceaccount\",\"readOnly\":true}],"
      "\"terminationMessagePath\":\"/dev/termination-log\","
      "\"terminationMessagePolicy\":\"File\"},{\"name\":\"proxy\",\"image\":"
      "\"registry.example.com/mesh/proxy:2.1.0\",\"args\":[\"--port\","
      "\"15001\",\"--admin\",\"15000\"],\"resources\":{\"requests\":{\"cpu\":"
      "\"50m\",\"memory\":\"64Mi\"}}}],\"volumes\":[{\"name\":\"config\","
      "\"configMap\":{\"name\":\"web-%04ld\",\"defaultMode\":420}},{\"name\":"
      "\"kube-api-access\",\"projected\":{\"defaultMode\":420,\"sources\":["
      "{\"serviceAccountToken\":{\"expirationSeconds\":3607,\"path\":"
      "\"token\"}},{\"configMap\":{\"name\":\"kube-root-ca.crt\",\"items\":"
      "[{\"key\":\"ca.crt\",\"path\":\"ca.crt\"}]}}]}}],\"tolerations\":["
      "{\"key\":\"node.kubernetes.io/not-ready\",\"operator\":\"Exists\","
      "\"effect\":\"NoExecute\",\"tolerationSeconds\":300}]},",
      i % 200, i % 9, i % NNS, app);
  kl_buf_addf(b,
      "\"status\":{\"phase\":\"Running\",\"conditions\":[{\"type\":"
      "\"Initialized\",\"status\":\"True\",\"lastTransitionTime\":"
      "\"2021-03-01T10:00:00Z\"},{\"type\":\"Ready\",\"status\":\"True\","
      "\"lastTransitionTime\":\"2021-03-01T10:00:09Z\"},{\"type\":"
      "\"ContainersReady\",\"status\":\"True\",\"lastTransitionTime\":"
      "\"2021-03-01T10:00:09Z\"},{\"type\":\"PodScheduled\",\"status\":"
      "\"True\",\"lastTransitionTime\":\"2021-03-01T10:00:00Z\"}],"
      "\"hostIP\":\"192.168.%ld.%ld\",\"podIP\":\"%s\",\"podIPs\":[{\"ip\":"
      "\"%s\"}],\"startTime\":\"2021-03-01T10:00:00Z\",\"qosClass\":"
      "\"Burstable\",\"containerStatuses\":[{\"name\":\"web\",\"state\":{"
      "\"running\":{\"startedAt\":\"2021-03-01T10:00:04Z\"}},\"ready\":true,"
      "\"restartCount\":0,\"image\":\"registry.example.com/shop/web:1.4.%ld\","
      "\"imageID\":\"registry.example.com/shop/web@sha256:",
      (i % 200) / 256, i % 200, ip, ip, i % 9);
  add_hexish(b, &s, 64);
  kl_buf_adds(b, "\",\"containerID\":\"containerd://");
  add_hexish(b, &s, 64);
  kl_buf_adds(b, "\",\"started\":true},{\"name\":\"proxy\",\"state\":{"
                 "\"running\":{\"startedAt\":\"2021-03-01T10:00:05Z\"}},"
                 "\"ready\":true,\"restartCount\":0,\"image\":"
                 "\"registry.example.com/mesh/proxy:2.1.0\",\"imageID\":"
                 "\"registry.example.com/mesh/proxy@sha256:");
  add_hexish(b, &s, 64);
  kl_buf_adds(b, "\",\"containerID\":\"containerd://");
  add_hexish(b, &s, 64);
  kl_buf_adds(b, "\",\"started\":true}]}}");
}

/* ---- REST client from a kubeconfig file ---- */

static inline kl_rest *bench_rest(const char *kubeconfig) {
  kl_kubeconfig_opts ko = {.path = kubeconfig};
  kl_kubeconfig *kc = NULL;
  char *err = NULL;
  if (kl_kubeconfig_load(&ko, &kc, &err)) bench_die("kubeconfig: %s", err);
  kl_rest_opts ro = {.qps = -1, .timeout_s = 600, .max_retries = -1};
  kl_rest *c = NULL;
  if (kl_rest_new(kc, &ro, &c, &err)) bench_die("rest: %s", err);
  kl_kubeconfig_free(kc);
  return c;
}

/* GET path?query into resp (caller frees); dies on failure. */
static inline void bench_get(kl_rest *c, const char *path, const char *query,
                             kl_rest_resp *resp) {
  kl_rest_req rq = {.path = path, .query = query, .no_retry = true};
  kl_rest_error e = {0};
  int rc = kl_rest_do(c, &rq, resp, &e);
  if (rc) bench_die("GET %s?%s: %s", path, query ? query : "",
                    e.message ? e.message : kl_strerror(rc));
  kl_rest_error_free(&e);
}

/* Options shared by the programs: --name value pairs. */
static inline const char *bench_arg(int argc, char **argv, const char *name,
                                    const char *def) {
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], name)) return argv[i + 1];
  return def;
}
static inline long bench_argl(int argc, char **argv, const char *name,
                              long def) {
  const char *v = bench_arg(argc, argv, name, NULL);
  return v ? strtol(v, NULL, 10) : def;
}


/* The first `want` event lines of a watch, captured as the floor's input. */
typedef struct bench_capture {
  kl_buf b;
  long want, got;
} bench_capture;

static inline int bench_capture_data(const char *p, size_t n, void *ud) {
  bench_capture *c = ud;
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\n' && ++c->got >= c->want) {
      kl_buf_add(&c->b, p, i + 1);
      return KL_ECLOSED;
    }
  kl_buf_add(&c->b, p, n);
  return 0;
}

/* Captures `events` event lines of a watch on path from resourceVersion
 * `from` (history replay) into cap; returns the seconds it took. */
static inline double bench_capture_watch(kl_rest *c, const char *path,
                                         const char *from, long events,
                                         bench_capture *cap) {
  cap->want = events;
  kl_buf q = KL_BUF_INIT;
  kl_rest_query_add(&q, "watch", "1");
  kl_rest_query_add(&q, "resourceVersion", from);
  kl_rest_query_add(&q, "timeoutSeconds", "600");
  kl_rest_req rq = {.path = path, .query = q.data,
                    .on_data = bench_capture_data, .ud = cap,
                    .no_retry = true, .timeout_s = -1, .idle_timeout_s = 30};
  kl_rest_resp resp = {0};
  kl_rest_error e = {0};
  double t0 = bench_now();
  int rc = kl_rest_do(c, &rq, &resp, &e);
  double secs = bench_now() - t0;
  if (rc != KL_ECLOSED || cap->got < events)
    bench_die("watch capture: got %ld of %ld events (%s)", cap->got, events,
              e.message ? e.message : kl_strerror(rc));
  kl_rest_resp_free(&resp);
  kl_rest_error_free(&e);
  kl_buf_free(&q);
  return secs;
}

/* The watch floor, once: cJSON parse (+ delete) of every event line in b;
 * wall and thread CPU seconds into *wall and *cpu. */
static inline void bench_floor_watch(const kl_buf *b, double *wall,
                                     double *cpu) {
  double w0 = bench_now(), c0 = bench_cpu();
  const char *p = b->data, *end = b->data + b->len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) nl = end;
    cJSON *ev = cJSON_ParseWithLength(p, (size_t)(nl - p));
    if (!ev) bench_die("cJSON could not parse a watch event");
    cJSON_Delete(ev);
    p = nl + 1;
  }
  *wall = bench_now() - w0;
  *cpu = bench_cpu() - c0;
}

#endif
