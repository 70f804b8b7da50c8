/* bench_load.c: the server side of `make bench` (scripts/bench runs it):
 *   gen     --configmaps N --pods M --out FILE   a --seed manifest file
 *   post    --kubeconfig F --configmaps N --pods M --threads T
 *           creates the namespaces and objects by POST in parallel
 *   update  --kubeconfig F --events N --configmaps N --threads T
 *           N merge patches on existing ConfigMaps (round robin)
 *   rv      --kubeconfig F        prints the server's current list RV
 *   list    --kubeconfig F --resource R   one unpaged list: objects/s, MB/s
 *   watch   --kubeconfig F --resource R --from RV --events N
 *           streams N events from RV (history replay) and discards them
 * Each prints result rows (bench.h). Single process; not a test. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "bench.h"
#include "json.h"

/* ---- gen ---- */

static int cmd_gen(int argc, char **argv) {
  long ncm = bench_argl(argc, argv, "--configmaps", 1000);
  long npod = bench_argl(argc, argv, "--pods", 0);
  const char *out = bench_arg(argc, argv, "--out", NULL);
  if (!out) bench_die("gen: --out FILE needed");
  FILE *f = fopen(out, "w");
  if (!f) bench_die("gen: cannot write %s", out);
  double t0 = bench_now();
  kl_buf b = KL_BUF_INIT;
  /* one JSON List per kind; the server expands lists in seed files */
  for (int k = 0; k < 2; k++) {
    long n = k ? npod : ncm;
    if (!n) continue;
    fputs("---\n{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n", f);
    for (long i = 0; i < n; i++) {
      b.len = 0;
      if (k) gen_pod(&b, i); else gen_configmap(&b, i);
      fwrite(b.data, 1, b.len, f);
      fputs(i + 1 < n ? ",\n" : "\n", f);
    }
    fputs("]}\n", f);
  }
  kl_buf_free(&b);
  long size = ftell(f);
  fclose(f);
  bench_row r;
  row_begin(&r, "gen");
  row_num(&r, "seconds", bench_now() - t0);
  row_num(&r, "bytes", (double)size);
  row_end(&r);
  return 0;
}

/* ---- post ---- */

typedef struct post_ctx {
  kl_rest *c;
  long ncm, npod;
  int threads;
  atomic_long next;
  atomic_long failed;
  atomic_long bytes;
} post_ctx;

static int post_one(kl_rest *c, const char *path, const char *body,
                    size_t n) {
  kl_rest_req rq = {.method = "POST", .path = path, .body = body,
                    .body_len = n, .no_retry = true};
  kl_rest_resp resp = {0};
  kl_rest_error e = {0};
  int rc = kl_rest_do(c, &rq, &resp, &e);
  if (rc && !(e.http_status == 409)) /* 409: exists from an earlier run */
    fprintf(stderr, "bench: POST %s: %s\n", path,
            e.message ? e.message : kl_strerror(rc));
  else rc = 0;
  kl_rest_resp_free(&resp);
  kl_rest_error_free(&e);
  return rc;
}

static void *post_thread(void *ud) {
  post_ctx *p = ud;
  kl_buf b = KL_BUF_INIT;
  char path[128];
  long total = p->ncm + p->npod;
  for (;;) {
    long i = atomic_fetch_add(&p->next, 1);
    if (i >= total) break;
    b.len = 0;
    bool pod = i >= p->ncm;
    long j = pod ? i - p->ncm : i;
    if (pod) gen_pod(&b, j); else gen_configmap(&b, j);
    snprintf(path, sizeof path, "/api/v1/namespaces/ns-%02ld/%s", j % NNS,
             pod ? "pods" : "configmaps");
    if (post_one(p->c, path, b.data, b.len)) atomic_fetch_add(&p->failed, 1);
    atomic_fetch_add(&p->bytes, (long)b.len);
  }
  kl_buf_free(&b);
  return NULL;
}

static int cmd_post(int argc, char **argv) {
  post_ctx p = {0};
  p.c = bench_rest(bench_arg(argc, argv, "--kubeconfig", NULL));
  p.ncm = bench_argl(argc, argv, "--configmaps", 1000);
  p.npod = bench_argl(argc, argv, "--pods", 0);
  p.threads = (int)bench_argl(argc, argv, "--threads", 4);
  double t0 = bench_now();
  for (int i = 0; i < NNS; i++) {
    char body[128];
    int n = snprintf(body, sizeof body,
                     "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\","
                     "\"metadata\":{\"name\":\"ns-%02d\"}}", i);
    post_one(p.c, "/api/v1/namespaces", body, (size_t)n);
  }
  pthread_t th[64];
  if (p.threads < 1) p.threads = 1;
  if (p.threads > 64) p.threads = 64;
  for (int i = 0; i < p.threads; i++)
    pthread_create(&th[i], NULL, post_thread, &p);
  for (int i = 0; i < p.threads; i++) pthread_join(th[i], NULL);
  double dt = bench_now() - t0;
  bench_row r;
  row_begin(&r, "post");
  row_num(&r, "seconds", dt);
  row_num(&r, "objects", (double)(p.ncm + p.npod));
  row_num(&r, "failed", (double)p.failed);
  row_num(&r, "per_second", (double)(p.ncm + p.npod) / dt);
  row_num(&r, "threads", p.threads);
  row_end(&r);
  kl_rest_free(p.c);
  return p.failed ? 1 : 0;
}

/* ---- update ---- */

typedef struct upd_ctx {
  kl_rest *c;
  long n, ncm, salt;
  atomic_long next, failed;
} upd_ctx;

static void *upd_thread(void *ud) {
  upd_ctx *u = ud;
  char path[128], body[128];
  for (;;) {
    long i = atomic_fetch_add(&u->next, 1);
    if (i >= u->n) break;
    long j = i % u->ncm;
    snprintf(path, sizeof path,
             "/api/v1/namespaces/ns-%02ld/configmaps/app-config-%06ld",
             j % NNS, j);
    int n = snprintf(body, sizeof body,
                     "{\"data\":{\"revision\":\"%ld-%ld\"}}", u->salt,
                     i);
    kl_rest_req rq = {.method = "PATCH", .path = path, .body = body,
                      .body_len = (size_t)n, .no_retry = true,
                      .content_type = "application/merge-patch+json"};
    kl_rest_resp resp = {0};
    kl_rest_error e = {0};
    int rc = kl_rest_do(u->c, &rq, &resp, &e);
    if (rc) {
      if (atomic_fetch_add(&u->failed, 1) < 5)
        fprintf(stderr, "bench: PATCH %s: %s\n", path,
                e.message ? e.message : kl_strerror(rc));
    }
    kl_rest_resp_free(&resp);
    kl_rest_error_free(&e);
  }
  return NULL;
}

static int cmd_update(int argc, char **argv) {
  upd_ctx u = {0};
  u.c = bench_rest(bench_arg(argc, argv, "--kubeconfig", NULL));
  u.n = bench_argl(argc, argv, "--events", 1000);
  u.ncm = bench_argl(argc, argv, "--configmaps", 1000);
  /* a new value on every run: a patch that changes nothing makes no event */
  u.salt = (long)getpid() ^ (long)time(NULL);
  int threads = (int)bench_argl(argc, argv, "--threads", 4);
  if (threads < 1) threads = 1;
  if (threads > 64) threads = 64;
  pthread_t th[64];
  double t0 = bench_now();
  for (int i = 0; i < threads; i++)
    pthread_create(&th[i], NULL, upd_thread, &u);
  for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
  double dt = bench_now() - t0;
  bench_row r;
  row_begin(&r, "update");
  row_num(&r, "seconds", dt);
  row_num(&r, "events", (double)u.n);
  row_num(&r, "failed", (double)u.failed);
  row_num(&r, "per_second", (double)u.n / dt);
  row_end(&r);
  kl_rest_free(u.c);
  return u.failed ? 1 : 0;
}

/* ---- rv, list, watch ---- */

static const char *res_path(const char *res) {
  if (!strcmp(res, "pods")) return "/api/v1/pods";
  return "/api/v1/configmaps";
}

static int cmd_rv(int argc, char **argv) {
  kl_rest *c = bench_rest(bench_arg(argc, argv, "--kubeconfig", NULL));
  kl_rest_resp resp = {0};
  bench_get(c, "/api/v1/namespaces", "limit=1", &resp);
  kl_span rv;
  kl_span body = {resp.body.data, resp.body.len};
  if (!kl_json_get(body, "metadata.resourceVersion", &rv))
    bench_die("rv: no metadata.resourceVersion");
  char *s = kl_json_strdup(rv);
  printf("%s\n", s);
  free(s);
  kl_rest_resp_free(&resp);
  kl_rest_free(c);
  return 0;
}

static int cmd_list(int argc, char **argv) {
  kl_rest *c = bench_rest(bench_arg(argc, argv, "--kubeconfig", NULL));
  const char *res = bench_arg(argc, argv, "--resource", "configmaps");
  long n = bench_argl(argc, argv, "--objects", 0);
  int reps = (int)bench_argl(argc, argv, "--reps", 2);
  double best = 1e9;
  size_t bytes = 0;
  for (int k = 0; k < reps; k++) {
    kl_rest_resp resp = {0};
    double t0 = bench_now();
    bench_get(c, res_path(res), NULL, &resp);
    double dt = bench_now() - t0;
    if (dt < best) best = dt;
    bytes = resp.body.len;
    kl_rest_resp_free(&resp);
  }
  bench_row r;
  row_begin(&r, "server_list");
  row_str(&r, "resource", res);
  row_num(&r, "seconds", best);
  row_num(&r, "objects", (double)n);
  row_num(&r, "bytes", (double)bytes);
  row_num(&r, "objects_per_second", (double)n / best);
  row_num(&r, "mb_per_second", (double)bytes / 1e6 / best);
  row_end(&r);
  kl_rest_free(c);
  return 0;
}

typedef struct wctx {
  long want, got;
  size_t bytes;
} wctx;

static int watch_data(const char *p, size_t n, void *ud) {
  wctx *w = ud;
  w->bytes += n;
  for (const char *q = p; (q = memchr(q, '\n', (size_t)(p + n - q))); q++)
    if (++w->got >= w->want) return KL_ECLOSED;
  return 0;
}

static int cmd_watch(int argc, char **argv) {
  kl_rest *c = bench_rest(bench_arg(argc, argv, "--kubeconfig", NULL));
  const char *res = bench_arg(argc, argv, "--resource", "configmaps");
  const char *from = bench_arg(argc, argv, "--from", "0");
  wctx w = {.want = bench_argl(argc, argv, "--events", 1000)};
  kl_buf q = KL_BUF_INIT;
  kl_rest_query_add(&q, "watch", "1");
  kl_rest_query_add(&q, "resourceVersion", from);
  kl_rest_query_add(&q, "timeoutSeconds", "600");
  kl_rest_req rq = {.path = res_path(res), .query = q.data,
                    .on_data = watch_data, .ud = &w, .no_retry = true,
                    .timeout_s = -1, .idle_timeout_s = 30};
  kl_rest_resp resp = {0};
  kl_rest_error e = {0};
  double t0 = bench_now();
  int rc = kl_rest_do(c, &rq, &resp, &e);
  double dt = bench_now() - t0;
  if (rc != KL_ECLOSED || w.got < w.want)
    bench_die("watch: got %ld of %ld events (%s)", w.got, w.want,
              e.message ? e.message : kl_strerror(rc));
  bench_row r;
  row_begin(&r, "server_watch");
  row_str(&r, "resource", res);
  row_num(&r, "seconds", dt);
  row_num(&r, "events", (double)w.got);
  row_num(&r, "bytes", (double)w.bytes);
  row_num(&r, "events_per_second", (double)w.got / dt);
  row_num(&r, "mb_per_second", (double)w.bytes / 1e6 / dt);
  row_end(&r);
  kl_rest_resp_free(&resp);
  kl_rest_error_free(&e);
  kl_buf_free(&q);
  kl_rest_free(c);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_load gen|post|update|rv|list|watch ...\n");
    return 2;
  }
  kl_log_set_level(KL_LOG_WARN);
  const char *cmd = argv[1];
  if (!strcmp(cmd, "gen")) return cmd_gen(argc, argv);
  if (!strcmp(cmd, "post")) return cmd_post(argc, argv);
  if (!strcmp(cmd, "update")) return cmd_update(argc, argv);
  if (!strcmp(cmd, "rv")) return cmd_rv(argc, argv);
  if (!strcmp(cmd, "list")) return cmd_list(argc, argv);
  if (!strcmp(cmd, "watch")) return cmd_watch(argc, argv);
  fprintf(stderr, "bench_load: unknown command %s\n", cmd);
  return 2;
}
