/* bench_ingest.c: the client side of `make bench` (scripts/bench runs it).
 *
 *   ingest --kubeconfig F --resource configmaps|pods [--page 500] [--reps 3]
 *          [--watch-from RV --watch-events N]
 *
 * Fetches the collection in pages over HTTP once and keeps the bytes, then
 * times, on those same bytes in this process:
 *   floor_list  cJSON_ParseWithLength of every page (trees kept, as a cache)
 *   klua_list   kl_list_decode (managedFields dropped) + kl_store_replace
 *               into a store with a namespace index (what the informer does)
 * and measures memory per object in forked children (VmRSS delta and
 * kl_store_footprint against the compact JSON bytes). With --watch-from it
 * captures N watch events replayed from RV and times
 *   floor_watch cJSON parse (+ delete) of each event line
 *   klua_watch  kl_watch_decoder (64 KB feeds) + kl_store_update of each
 *               event into the store filled by the list.
 * Best of --reps runs; wall and thread CPU time both reported.
 *
 *   sync --kubeconfig F --resource R [--page 500] [--reps 3]
 *        [--watch-events N]
 *
 * In a fresh process: the informer (or, before informer.c existed, the
 * reflector with a store sink) lists R over HTTP until synced: sync time,
 * VmRSS delta and footprint per object. With --watch-events it then prints
 * a "ready" row, waits while the driver makes N updates (live watch), and
 * reports events/s, events per CPU-second and the context switches of this
 * process (getrusage, all threads). Then it
 * fetches the same pages and watch events itself and times the cJSON floor
 * on them, in the same process and run. */
#include <cjson/cJSON.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "list_decode.h"
#include "reflector.h"
#include "store.h"
#include "watch_decode.h"
#ifdef KL_BENCH_HAVE_INFORMER
#include "informer.h"
#endif

typedef struct pages {
  char **body;
  size_t *len;
  size_t n, cap, bytes;
} pages;

static void pages_add(pages *p, char *body, size_t len) {
  if (p->n == p->cap) {
    p->cap = p->cap ? p->cap * 2 : 64;
    p->body = kl_realloc(p->body, p->cap * sizeof *p->body);
    p->len = kl_realloc(p->len, p->cap * sizeof *p->len);
  }
  p->body[p->n] = body;
  p->len[p->n++] = len;
  p->bytes += len;
}

static const char *res_path(const char *res) {
  if (!strcmp(res, "pods")) return "/api/v1/pods";
  return "/api/v1/configmaps";
}

/* The informer's default kind for items of typed lists. */
static kl_obj_opts obj_opts(const char *res) {
  kl_obj_opts o = {.drop = kl_obj_default_drop, .api_version = "v1",
                   .kind = !strcmp(res, "pods") ? "Pod" : "ConfigMap"};
  return o;
}

/* Fetches every page (limit=page, continue) into p; returns seconds. */
static double fetch_pages(kl_rest *c, const char *res, long page, pages *p) {
  char *cont = NULL;
  double t0 = bench_now();
  do {
    kl_buf q = KL_BUF_INIT;
    char lim[32];
    snprintf(lim, sizeof lim, "%ld", page);
    kl_rest_query_add(&q, "limit", lim);
    if (cont) kl_rest_query_add(&q, "continue", cont);
    kl_rest_resp resp = {0};
    bench_get(c, res_path(res), q.data, &resp);
    kl_buf_free(&q);
    free(cont);
    cont = NULL;
    kl_span body = {resp.body.data, resp.body.len}, cs;
    if (kl_json_get(body, "metadata.continue", &cs)) {
      cont = kl_json_strdup(cs);
      if (!cont[0]) { free(cont); cont = NULL; }
    }
    size_t len;
    char *data = kl_buf_detach(&resp.body, &len);
    pages_add(p, data, len);
    kl_rest_resp_free(&resp);
  } while (cont);
  return bench_now() - t0;
}

/* ---- timed bodies ---- */

typedef struct timing {
  double wall, cpu;
} timing;

static void best_of(timing *best, double wall, double cpu) {
  if (best->wall == 0 || wall < best->wall) best->wall = wall;
  if (best->cpu == 0 || cpu < best->cpu) best->cpu = cpu;
}

/* cJSON parse of every page; trees kept until after the clock stops. */
static size_t run_floor_list(const pages *p, timing *t, bool keep) {
  cJSON **trees = kl_calloc(p->n, sizeof *trees);
  double w0 = bench_now(), c0 = bench_cpu();
  for (size_t i = 0; i < p->n; i++) {
    trees[i] = cJSON_ParseWithLength(p->body[i], p->len[i]);
    if (!trees[i]) bench_die("cJSON could not parse page %zu", i);
  }
  double w = bench_now() - w0, c = bench_cpu() - c0;
  if (t) best_of(t, w, c);
  size_t items = 0;
  for (size_t i = 0; i < p->n; i++)
    items += (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(trees[i], "items"));
  if (!keep) {
    for (size_t i = 0; i < p->n; i++) cJSON_Delete(trees[i]);
    free(trees);
  }
  return items;
}

/* list_decode of every page + one kl_store_replace: a NEW store. */
static kl_store *run_klua_list(const pages *p, const char *res, timing *t) {
  kl_obj_opts o = obj_opts(res);
  double w0 = bench_now(), c0 = bench_cpu();
  kl_store *s = kl_store_new();
  if (kl_store_add_indexer(s, "namespace", KL_INDEX_NAMESPACE, NULL))
    bench_die("add_indexer");
  kl_objv all = {0};
  char *rv = NULL;
  for (size_t i = 0; i < p->n; i++) {
    kl_list l;
    char *err = NULL;
    if (kl_list_decode(p->body[i], p->len[i], &o, &l, &err))
      bench_die("list_decode page %zu: %s", i, err);
    for (size_t j = 0; j < l.nitems; j++) {
      kl_objv_push(&all, l.items[j]);
      l.items[j] = NULL;
    }
    l.nitems = 0;
    free(rv);
    rv = kl_strdup(l.resource_version);
    kl_list_free(&l);
  }
  if (kl_store_replace(s, all.v, all.n, rv)) bench_die("store_replace");
  kl_objv_free(&all);
  free(rv);
  double w = bench_now() - w0, c = bench_cpu() - c0;
  if (t) best_of(t, w, c);
  return s;
}

static size_t store_json_bytes(kl_store *s) {
  kl_objv ov = {0};
  kl_store_list(s, &ov);
  size_t bytes = 0;
  for (size_t i = 0; i < ov.n; i++) {
    size_t len;
    kl_obj_json(ov.v[i], &len);
    bytes += len;
  }
  kl_objv_free(&ov);
  return bytes;
}

/* Runs fn in a forked child (fresh heap growth, nothing freed by earlier
 * runs to reuse), which prints its own row. */
static void in_child(void (*fn)(const pages *, const char *), const pages *p,
                     const char *res) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) bench_die("fork");
  if (pid == 0) {
    fn(p, res);
    fflush(stdout);
    _exit(0);
  }
  int st;
  waitpid(pid, &st, 0);
}

/* The floor on a cold heap: cJSON parses every page in a forked child whose
 * allocator has nothing freed to reuse, as a fresh process (where klua's
 * informer syncs) has not. Best of reps children. */
static void run_floor_list_cold(const pages *p, int reps, timing *t) {
  for (int k = 0; k < reps; k++) {
    int fd[2];
    if (pipe(fd)) bench_die("pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) bench_die("fork");
    if (pid == 0) {
      close(fd[0]);
      timing c = {0};
      run_floor_list(p, &c, true); /* trees kept: exit frees them */
      ssize_t w = write(fd[1], &c, sizeof c);
      _exit(w == (ssize_t)sizeof c ? 0 : 1);
    }
    close(fd[1]);
    timing c = {0};
    ssize_t got = read(fd[0], &c, sizeof c);
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (got != (ssize_t)sizeof c || !WIFEXITED(st) || WEXITSTATUS(st))
      bench_die("cold floor child failed");
    best_of(t, c.wall, c.cpu);
  }
}

static void mem_klua(const pages *p, const char *res) {
  malloc_trim(0);
  size_t rss0 = bench_rss();
  kl_store *s = run_klua_list(p, res, NULL);
  size_t rss1 = bench_rss();
  size_t n = kl_store_len(s), json = store_json_bytes(s);
  size_t fp = kl_store_footprint(s);
  bench_row r;
  row_begin(&r, "mem_klua");
  row_str(&r, "resource", res);
  row_num(&r, "objects", (double)n);
  row_num(&r, "json_bytes_per_object", (double)json / (double)n);
  row_num(&r, "rss_bytes_per_object", (double)(rss1 - rss0) / (double)n);
  row_num(&r, "footprint_bytes_per_object", (double)fp / (double)n);
  row_num(&r, "rss_ratio", (double)(rss1 - rss0) / (double)json);
  row_num(&r, "footprint_ratio", (double)fp / (double)json);
  row_end(&r);
}

static void mem_cjson(const pages *p, const char *res) {
  malloc_trim(0);
  size_t rss0 = bench_rss();
  size_t n = run_floor_list(p, NULL, true);
  size_t rss1 = bench_rss();
  bench_row r;
  row_begin(&r, "mem_cjson");
  row_str(&r, "resource", res);
  row_num(&r, "objects", (double)n);
  row_num(&r, "rss_bytes_per_object", (double)(rss1 - rss0) / (double)n);
  row_end(&r);
}

/* ---- watch ---- */

static void run_floor_watch(const kl_buf *b, timing *t) {
  double w, c;
  bench_floor_watch(b, &w, &c);
  best_of(t, w, c);
}

static long run_klua_watch(const kl_buf *b, const char *res, kl_store *s,
                           timing *t) {
  kl_obj_opts o = obj_opts(res);
  long n = 0;
  double w0 = bench_now(), c0 = bench_cpu();
  kl_watch_decoder *d = kl_watch_decoder_new(&o, 0);
  for (size_t off = 0; off < b->len; off += 65536) {
    size_t chunk = b->len - off < 65536 ? b->len - off : 65536;
    kl_watch_decoder_feed(d, b->data + off, chunk);
    kl_watch_event ev;
    int rc;
    while ((rc = kl_watch_decoder_next(d, &ev)) == 1) {
      if (ev.type == KL_WATCH_MODIFIED || ev.type == KL_WATCH_ADDED)
        kl_store_update(s, ev.obj);
      else if (ev.type == KL_WATCH_DELETED)
        kl_store_delete(s, ev.obj);
      kl_watch_event_clear(&ev);
      n++;
    }
    if (rc < 0) bench_die("watch decode: %s", kl_watch_decoder_error(d));
  }
  kl_watch_decoder_free(d);
  best_of(t, bench_now() - w0, bench_cpu() - c0);
  return n;
}

static void row_pair(const char *name, const char *res, const char *unit,
                     double count, double bytes, timing fl, timing kl) {
  bench_row r;
  row_begin(&r, name);
  row_str(&r, "resource", res);
  row_str(&r, "unit", unit);
  row_num(&r, "count", count);
  row_num(&r, "bytes", bytes);
  row_num(&r, "floor_seconds", fl.wall);
  row_num(&r, "floor_cpu_seconds", fl.cpu);
  row_num(&r, "klua_seconds", kl.wall);
  row_num(&r, "klua_cpu_seconds", kl.cpu);
  row_num(&r, "ratio", kl.wall / fl.wall);
  row_num(&r, "cpu_ratio", kl.cpu / fl.cpu);
  row_end(&r);
}

static int cmd_ingest(int argc, char **argv) {
  kl_rest *c = bench_rest(bench_arg(argc, argv, "--kubeconfig", NULL));
  const char *res = bench_arg(argc, argv, "--resource", "configmaps");
  long page = bench_argl(argc, argv, "--page", 500);
  int reps = (int)bench_argl(argc, argv, "--reps", 3);
  const char *from = bench_arg(argc, argv, "--watch-from", NULL);
  long wevents = bench_argl(argc, argv, "--watch-events", 0);

  pages p = {0};
  double fetch = fetch_pages(c, res, page, &p);
  /* memory first, in children, so no run's freed memory is reused */
  in_child(mem_klua, &p, res);
  in_child(mem_cjson, &p, res);
  size_t nitems = run_floor_list(&p, NULL, false);
  bench_row r;
  row_begin(&r, "fetch_pages");
  row_str(&r, "resource", res);
  row_num(&r, "pages", (double)p.n);
  row_num(&r, "objects", (double)nitems);
  row_num(&r, "bytes", (double)p.bytes);
  row_num(&r, "seconds", fetch);
  row_num(&r, "objects_per_second", (double)nitems / fetch);
  row_num(&r, "mb_per_second", (double)p.bytes / 1e6 / fetch);
  row_end(&r);

  timing fl = {0}, kl = {0};
  kl_store *s = NULL;
  for (int k = 0; k < reps; k++) {
    run_floor_list(&p, &fl, false);
    kl_store_unref(s);
    s = run_klua_list(&p, res, &kl);
  }
  row_pair("ingest_list", res, "objects", (double)nitems, (double)p.bytes,
           fl, kl);

  if (from && wevents > 0) {
    bench_capture cap = {.b = KL_BUF_INIT};
    bench_capture_watch(c, res_path(res), from, wevents, &cap);
    timing wf = {0}, wk = {0};
    long n = 0;
    for (int k = 0; k < reps; k++) {
      run_floor_watch(&cap.b, &wf);
      n = run_klua_watch(&cap.b, res, s, &wk);
    }
    if (n != cap.got) bench_die("watch: decoded %ld of %ld events", n, cap.got);
    row_pair("ingest_watch", res, "events", (double)n, (double)cap.b.len, wf,
             wk);
    kl_buf_free(&cap.b);
  }
  kl_store_unref(s);
  for (size_t i = 0; i < p.n; i++) free(p.body[i]);
  free(p.body);
  free(p.len);
  kl_rest_free(c);
  return 0;
}

/* ---- sync through the informer (or reflector) over HTTP ---- */

typedef struct syncer {
#ifdef KL_BENCH_HAVE_INFORMER
  kl_informer *inf;
#else
  kl_reflector *refl;
#endif
  kl_store *store;
} syncer;

static const char *syncer_start(syncer *y, kl_rest *c, const char *res,
                                long page, bool hold) {
  kl_reflector_opts ro = {.rest = c, .path = res_path(res),
                          .page_size = (int)page};
  if (hold) { /* retry a held watch promptly once it is released */
    ro.idle_timeout_s = 1;
    ro.backoff_initial_s = 0.05;
    ro.backoff_max_s = 0.2;
  }
  char *err = NULL;
#ifdef KL_BENCH_HAVE_INFORMER
  kl_informer_opts io = {.reflector = ro};
  if (kl_informer_new(&io, &y->inf, &err)) bench_die("informer: %s", err);
  y->store = kl_store_ref(kl_informer_store(y->inf));
  kl_store_add_indexer(y->store, "namespace", KL_INDEX_NAMESPACE, NULL);
  kl_informer_start(y->inf);
  return "informer";
#else
  y->store = kl_store_new();
  kl_store_add_indexer(y->store, "namespace", KL_INDEX_NAMESPACE, NULL);
  if (kl_reflector_new(&ro, kl_reflector_sink_store(y->store), &y->refl,
                       &err))
    bench_die("reflector: %s", err);
  kl_reflector_start(y->refl);
  return "reflector+store (informer.c not built yet)";
#endif
}

static bool syncer_synced(syncer *y) {
#ifdef KL_BENCH_HAVE_INFORMER
  return kl_informer_has_synced(y->inf);
#else
  kl_reflector_stats st;
  kl_reflector_stats_get(y->refl, &st);
  return st.synced;
#endif
}

static uint64_t syncer_updates(syncer *y) {
#ifdef KL_BENCH_HAVE_INFORMER
  kl_informer_stats st;
  kl_informer_stats_get(y->inf, &st);
  return st.updates;
#else
  kl_reflector_stats st;
  kl_reflector_stats_get(y->refl, &st);
  return st.ev_modified;
#endif
}

/* The last resourceVersion the reflector saw (the list's, right after the
 * sync): a NEW string. */
static char *syncer_rv(syncer *y) {
#ifdef KL_BENCH_HAVE_INFORMER
  kl_informer_stats st;
  kl_informer_stats_get(y->inf, &st);
  return kl_strdup(st.reflector.last_rv);
#else
  kl_reflector_stats st;
  kl_reflector_stats_get(y->refl, &st);
  return kl_strdup(st.last_rv);
#endif
}

static void syncer_stop(syncer *y) {
#ifdef KL_BENCH_HAVE_INFORMER
  kl_informer_stop(y->inf);
  kl_informer_unref(y->inf);
#else
  kl_reflector_free(y->refl);
#endif
  kl_store_unref(y->store);
}

/* The server's fault endpoint (klua serve --faults on): POST an action, or
 * DELETE every armed fault. */
static void faults(kl_rest *c, const char *method, const char *body) {
  kl_rest_req rq = {.method = method, .path = "/_klua/faults", .body = body,
                    .body_len = body ? strlen(body) : 0, .no_retry = true};
  kl_rest_resp resp = {0};
  kl_rest_error e = {0};
  int rc = kl_rest_do(c, &rq, &resp, &e);
  if (rc) bench_die("%s /_klua/faults (is the server run with --faults on?):"
                    " %s", method, e.message ? e.message : kl_strerror(rc));
  kl_rest_resp_free(&resp);
  kl_rest_error_free(&e);
}

static void sleep_ms(double ms) {
  struct timespec ts = {0, (long)(ms * 1e6)};
  nanosleep(&ts, NULL);
}

static int cmd_sync(int argc, char **argv) {
  const char *res = bench_arg(argc, argv, "--resource", "configmaps");
  long page = bench_argl(argc, argv, "--page", 500);
  int reps = (int)bench_argl(argc, argv, "--reps", 3);
  long wevents = bench_argl(argc, argv, "--watch-events", 0);
  kl_rest *c = bench_rest(bench_arg(argc, argv, "--kubeconfig", NULL));
  /* --hold: the informer's watch requests are held by the server (a delay
   * fault) while the driver makes the updates; released, the watch replays
   * them from history at full speed (a burst, not a trickle) */
  bool hold = wevents > 0 && bench_argl(argc, argv, "--hold", 0);
  if (hold)
    faults(c, "POST", "{\"action\":\"delay\",\"seconds\":300,"
                      "\"method\":\"GET\",\"watch\":true,\"count\":0}");

  /* the floor's input, fetched first so the cold floor runs before this
   * process has freed anything its allocator could hand out again */
  pages p = {0};
  fetch_pages(c, res, page, &p);
  timing fc = {0};
  run_floor_list_cold(&p, reps, &fc);

  malloc_trim(0);
  size_t rss0 = bench_rss();
  syncer y = {0};
  double t0 = bench_now(), c0 = bench_pcpu();
  const char *path = syncer_start(&y, c, res, page, hold);
  while (!syncer_synced(&y)) sleep_ms(0.2);
  double sync = bench_now() - t0, sync_cpu = bench_pcpu() - c0;
  size_t rss1 = bench_rss(), hwm = bench_status_bytes("VmHWM");
  size_t n = kl_store_len(y.store), json = store_json_bytes(y.store);
  size_t fp = kl_store_footprint(y.store);
  char *rv = syncer_rv(&y);

  double wsecs = 0, wcpu = 0;
  uint64_t got = 0;
  struct rusage ru0 = {0}, ru1 = {0}; /* context switches during the burst */
  if (wevents > 0) {
    bench_row r;
    row_begin(&r, "ready");
    row_str(&r, "resource_version", rv ? rv : "");
    row_end(&r);
    uint64_t base = syncer_updates(&y);
    /* the driver writes "go RV" once the updates are made, RV being the
     * server's resourceVersion before them */
    char line[128], rvbuf[64];
    if (!fgets(line, sizeof line, stdin) ||
        sscanf(line, "go %63s", rvbuf) != 1)
      bench_die("sync: expected \"go RV\" on stdin");
    free(rv);
    rv = kl_strdup(rvbuf);
    if (hold) faults(c, "DELETE", NULL);
    getrusage(RUSAGE_SELF, &ru0);
    double c1 = bench_pcpu(), t1 = 0, tl = bench_now();
    uint64_t last = 0;
    for (;;) {
      got = syncer_updates(&y) - base;
      if (got && !t1) t1 = bench_now();
      if (got >= (uint64_t)wevents) break;
      if (got != last) { last = got; tl = bench_now(); }
      if (bench_now() - tl > 30) break; /* no progress: the writer died */
      sleep_ms(1);
    }
    wsecs = bench_now() - t1;
    wcpu = bench_pcpu() - c1;
    getrusage(RUSAGE_SELF, &ru1);
  }
  syncer_stop(&y);

  /* warm: klua syncs again in this process, then cJSON parses again, each
   * reusing memory its earlier run freed (best of reps) */
  timing kw = {0};
  for (int k = 0; k < reps; k++) {
    syncer w = {0};
    double w0 = bench_now(), wc0 = bench_pcpu();
    syncer_start(&w, c, res, page, false);
    while (!syncer_synced(&w)) sleep_ms(0.2);
    best_of(&kw, bench_now() - w0, bench_pcpu() - wc0);
    syncer_stop(&w);
  }
  timing fl = {0};
  for (int k = 0; k < reps; k++) run_floor_list(&p, &fl, false);
  bench_row r;
  row_begin(&r, "sync");
  row_str(&r, "resource", res);
  row_str(&r, "path", path);
  row_num(&r, "objects", (double)n);
  row_num(&r, "bytes", (double)p.bytes);
  row_num(&r, "klua_seconds", sync);
  row_num(&r, "klua_cpu_seconds", sync_cpu);
  row_num(&r, "floor_seconds", fc.wall);
  row_num(&r, "floor_cpu_seconds", fc.cpu);
  row_num(&r, "ratio", sync / fc.wall);
  row_num(&r, "cpu_ratio", sync_cpu / fc.cpu);
  row_num(&r, "warm_klua_seconds", kw.wall);
  row_num(&r, "warm_klua_cpu_seconds", kw.cpu);
  row_num(&r, "warm_floor_seconds", fl.wall);
  row_num(&r, "warm_floor_cpu_seconds", fl.cpu);
  row_num(&r, "warm_ratio", kw.wall / fl.wall);
  row_num(&r, "warm_cpu_ratio", kw.cpu / fl.cpu);
  row_end(&r);
  row_begin(&r, "mem_sync");
  row_str(&r, "resource", res);
  row_str(&r, "path", path);
  row_num(&r, "objects", (double)n);
  row_num(&r, "json_bytes_per_object", (double)json / (double)n);
  row_num(&r, "rss_bytes_per_object", (double)(rss1 - rss0) / (double)n);
  row_num(&r, "footprint_bytes_per_object", (double)fp / (double)n);
  row_num(&r, "rss_ratio", (double)(rss1 - rss0) / (double)json);
  row_num(&r, "footprint_ratio", (double)fp / (double)json);
  row_num(&r, "peak_rss_bytes", (double)hwm);
  row_end(&r);

  if (wevents > 0) {
    bench_capture cap = {.b = KL_BUF_INIT};
    bench_capture_watch(c, res_path(res), rv ? rv : "0", (long)got, &cap);
    timing wf = {0};
    for (int k = 0; k < reps; k++) run_floor_watch(&cap.b, &wf);
    row_begin(&r, "sync_watch");
    row_str(&r, "resource", res);
    row_str(&r, "path", path);
    row_num(&r, "events", (double)got);
    row_num(&r, "bytes", (double)cap.b.len);
    row_num(&r, "klua_seconds", wsecs);
    row_num(&r, "klua_cpu_seconds", wcpu);
    row_num(&r, "klua_events_per_second", (double)got / wsecs);
    row_num(&r, "klua_events_per_cpu_second", (double)got / wcpu);
    row_num(&r, "floor_seconds", wf.wall);
    row_num(&r, "floor_cpu_seconds", wf.cpu);
    row_num(&r, "floor_events_per_second", (double)got / wf.wall);
    row_num(&r, "floor_events_per_cpu_second", (double)got / wf.cpu);
    row_num(&r, "rate_ratio", ((double)got / wsecs) / ((double)got / wf.wall));
    row_str(&r, "mode", hold ? "burst (held watch released)" :
                                "live (rate of the writer)");
    row_num(&r, "cpu_rate_ratio", (wf.cpu > 0 && wcpu > 0) ?
            ((double)got / wcpu) / ((double)got / wf.cpu) : 0);
    row_num(&r, "voluntary_switches", (double)(ru1.ru_nvcsw - ru0.ru_nvcsw));
    row_num(&r, "involuntary_switches",
            (double)(ru1.ru_nivcsw - ru0.ru_nivcsw));
    row_end(&r);
    kl_buf_free(&cap.b);
  }
  free(rv);
  for (size_t i = 0; i < p.n; i++) free(p.body[i]);
  free(p.body);
  free(p.len);
  kl_rest_free(c);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_ingest ingest --kubeconfig F ...\n");
    return 2;
  }
  kl_log_set_level(KL_LOG_WARN);
  if (!strcmp(argv[1], "ingest")) return cmd_ingest(argc, argv);
  if (!strcmp(argv[1], "sync")) return cmd_sync(argc, argv);
  fprintf(stderr, "bench_ingest: unknown command %s\n", argv[1]);
  return 2;
}
