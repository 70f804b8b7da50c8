/* test_reflector.c: the reflector against an in-process libmicrohttpd fake
 * API server whose every answer the test controls: paging (5,000 objects,
 * pages of 500), continue-token expiry, 410 as an ERROR event and as an
 * HTTP status, bookmarks, streaming lists (supported, refused, ignored),
 * truncated and malformed watch lines, silent connections, prompt stop,
 * captured kube-apiserver streams replayed with their exact chunking, and
 * convergence under a writer while watches are cut. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctest.h"
#include "testutil.h"
#include "json.h"
#include "reflector.h"

static void nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- the fake server's model -------------------------------------------- */

#define MAXN 6000

typedef struct hev {
  uint64_t rv;
  int type; /* 1 added, 2 modified, 3 deleted */
  int idx;
  int gen;
} hev;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  bool alive[MAXN];
  uint64_t rv[MAXN];
  int gen[MAXN];
  uint64_t cur, hist_min;
  hev *h;
  size_t nh, caph;
} M;

/* knobs (atomics read by connection threads) */
static atomic_int k_watch_410;       /* next N watches: ERROR 410 event */
static atomic_int k_watch_http410;   /* next N watches: HTTP 410 */
static atomic_int k_watch_500;       /* next N watches: HTTP 500 */
static atomic_int k_truncate;        /* next N watches: half an event, end */
static atomic_int k_malformed;       /* next N watches: a malformed line */
static atomic_int k_tail_malformed;  /* next N watches: 3+ events, then a
                                        malformed line, in one write */
static atomic_int k_silent;          /* watches send nothing while set */
static atomic_int k_expire_continue; /* next N continue requests: 410 */
static atomic_int k_slow_list;       /* lists trickle out while set */
static atomic_int k_wl_mode;         /* 0 refuse (422), 1 support, 2 ignore */
static atomic_int k_bm_ms;           /* bookmark interval in ms (0: none) */
static atomic_int cut_gen;           /* bump: every watch ends */
static atomic_int cut_abrupt;        /* cuts break the connection */
static atomic_int release_all;

/* request log */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char reqlog[4096][160];
static int nreq;
static atomic_int n_list, n_watch;
static char last_accept[256];

static void reset_model(void) {
  pthread_mutex_lock(&mu);
  free(M.h);
  memset(&M, 0, sizeof M);
  M.cur = 100;
  pthread_mutex_unlock(&mu);
  atomic_store(&k_watch_410, 0);
  atomic_store(&k_watch_http410, 0);
  atomic_store(&k_watch_500, 0);
  atomic_store(&k_truncate, 0);
  atomic_store(&k_malformed, 0);
  atomic_store(&k_tail_malformed, 0);
  atomic_store(&k_silent, 0);
  atomic_store(&k_expire_continue, 0);
  atomic_store(&k_slow_list, 0);
  atomic_store(&k_wl_mode, 0);
  atomic_store(&k_bm_ms, 0);
  pthread_mutex_lock(&log_mu);
  nreq = 0;
  pthread_mutex_unlock(&log_mu);
  atomic_store(&n_list, 0);
  atomic_store(&n_watch, 0);
}

/* writes (the "writer" of the model); each takes a new RV */
static void mwrite(int idx, int type) {
  pthread_mutex_lock(&mu);
  uint64_t rv = ++M.cur;
  if (type == 3) {
    M.alive[idx] = false;
  } else {
    M.alive[idx] = true;
    M.gen[idx]++;
  }
  M.rv[idx] = rv;
  if (M.nh == M.caph) {
    M.caph = M.caph ? M.caph * 2 : 1024;
    M.h = kl_realloc(M.h, M.caph * sizeof *M.h);
  }
  M.h[M.nh++] = (hev){rv, type, idx, M.gen[idx]};
  pthread_mutex_unlock(&mu);
}
static void mcreate(int idx) { mwrite(idx, 1); }
static void mupdate(int idx) { mwrite(idx, 2); }
static void mdelete(int idx) { mwrite(idx, 3); }
/* a write to something else (another namespace): only the RV moves */
static void mbump(void) {
  pthread_mutex_lock(&mu);
  M.cur++;
  pthread_mutex_unlock(&mu);
}
static void mcompact(void) {
  pthread_mutex_lock(&mu);
  M.hist_min = M.cur;
  pthread_mutex_unlock(&mu);
}

static void obj_json(kl_buf *b, int idx, uint64_t rv, int gen, bool typed) {
  kl_buf_adds(b, "{");
  if (typed) kl_buf_adds(b, "\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",");
  kl_buf_addf(b,
              "\"metadata\":{\"name\":\"cm-%05d\",\"namespace\":\"t\","
              "\"uid\":\"u-%d\",\"resourceVersion\":\"%llu\","
              "\"managedFields\":[{\"manager\":\"m\"}]},"
              "\"data\":{\"g\":\"%d\"}}",
              idx, idx, (unsigned long long)rv, gen);
}

/* the state at rv (state at the newest when rv == 0), from the history */
static void state_at(uint64_t rv, bool *alive, uint64_t *rvs, int *gens) {
  memset(alive, 0, MAXN * sizeof *alive);
  for (size_t i = 0; i < M.nh && (!rv || M.h[i].rv <= rv); i++) {
    hev *e = &M.h[i];
    alive[e->idx] = e->type != 3;
    rvs[e->idx] = e->rv;
    gens[e->idx] = e->gen;
  }
}

/* ---- HTTP ----------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, int code,
                             const char *body) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(r, "Content-Type", "application/json");
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, r);
  MHD_destroy_response(r);
  return ret;
}

static const char st410_watch[] =
    "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":"
    "\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old "
    "resource version: 1 (308)\",\"reason\":\"Expired\",\"code\":410}}\n";
static const char st410_continue[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":"
    "\"Failure\",\"message\":\"The provided continue parameter is too old "
    "to display a consistent list result.\",\"reason\":\"Expired\","
    "\"code\":410}";
static const char st410_list[] =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":"
    "\"Failure\",\"message\":\"The resourceVersion for the provided list is "
    "too old.\",\"reason\":\"Expired\",\"code\":410}";

/* a list body produced whole, optionally trickled out */
typedef struct slow_body {
  char *p;
  size_t n, off;
} slow_body;

static ssize_t slow_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  slow_body *b = cls;
  if (b->off >= b->n) return MHD_CONTENT_READER_END_OF_STREAM;
  if (atomic_load(&release_all)) return MHD_CONTENT_READER_END_WITH_ERROR;
  if (atomic_load(&k_slow_list)) {
    nap_ms(20);
    if (max > 64) max = 64;
  }
  size_t n = b->n - b->off;
  if (n > max) n = max;
  memcpy(buf, b->p + b->off, n);
  b->off += n;
  return (ssize_t)n;
}
static void slow_free(void *cls) {
  slow_body *b = cls;
  free(b->p);
  free(b);
}

static enum MHD_Result serve_list(struct MHD_Connection *c) {
  atomic_fetch_add(&n_list, 1);
  const char *ls = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                               "limit");
  const char *cont = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                                 "continue");
  const char *rvs = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                                "resourceVersion");
  long limit = ls ? atol(ls) : 0;
  uint64_t snap = 0;
  int start = 0;
  if (cont) {
    unsigned long long crv;
    if (sscanf(cont, "%llu:%d", &crv, &start) != 2)
      return reply(c, 400, "{\"kind\":\"Status\",\"code\":400}");
    snap = crv;
    if (atomic_load(&k_expire_continue) > 0) {
      atomic_fetch_sub(&k_expire_continue, 1);
      return reply(c, 410, st410_continue);
    }
  } else if (rvs && *rvs && strcmp(rvs, "0")) {
    snap = strtoull(rvs, NULL, 10);
  }
  static bool alive[MAXN];
  static uint64_t rv[MAXN];
  static int gen[MAXN];
  static pthread_mutex_t lmu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&lmu);
  pthread_mutex_lock(&mu);
  if (snap && (snap < M.hist_min || snap > M.cur)) {
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&lmu);
    return reply(c, 410, cont ? st410_continue : st410_list);
  }
  uint64_t list_rv = snap ? snap : M.cur;
  state_at(snap, alive, rv, gen);
  pthread_mutex_unlock(&mu);
  kl_buf b = KL_BUF_INIT;
  kl_buf_addf(&b, "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\","
                  "\"metadata\":{\"resourceVersion\":\"%llu\"",
              (unsigned long long)list_rv);
  kl_buf items = KL_BUF_INIT;
  long n = 0;
  int i = start;
  for (; i < MAXN; i++) {
    if (!alive[i]) continue;
    if (limit && n == limit) break;
    if (n) kl_buf_addc(&items, ',');
    obj_json(&items, i, rv[i], gen[i], false);
    n++;
  }
  pthread_mutex_unlock(&lmu);
  bool more = false;
  for (int j = i; j < MAXN && limit; j++) more = more || alive[j];
  if (more)
    kl_buf_addf(&b, ",\"continue\":\"%llu:%d\"",
                (unsigned long long)list_rv, i);
  kl_buf_adds(&b, "},\"items\":[");
  if (items.len) kl_buf_add(&b, items.data, items.len);
  kl_buf_adds(&b, "]}\n");
  kl_buf_free(&items);
  slow_body *sb = kl_calloc(1, sizeof *sb);
  sb->n = b.len;
  sb->p = kl_buf_detach(&b, NULL);
  struct MHD_Response *r = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, 4096, slow_reader, sb, slow_free);
  MHD_add_response_header(r, "Content-Type", "application/json");
  enum MHD_Result ret = MHD_queue_response(c, 200, r);
  MHD_destroy_response(r);
  return ret;
}

typedef struct wstate {
  uint64_t pos;
  double deadline, next_bm;
  int gen;
  kl_buf out;   /* pending bytes */
  size_t off;
  int mode;     /* 0 normal, 1 410 event, 2 truncate, 3 malformed */
  bool initial; /* streaming list: initial events pending */
  bool ignore_bm; /* wl_mode 2: a plain bookmark first */
  bool ended;
} wstate;

static void ws_free(void *cls) {
  wstate *w = cls;
  kl_buf_free(&w->out);
  free(w);
}

static ssize_t watch_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  wstate *w = cls;
  for (;;) {
    if (w->off < w->out.len) {
      size_t n = w->out.len - w->off;
      if (n > max) n = max;
      memcpy(buf, w->out.data + w->off, n);
      w->off += n;
      return (ssize_t)n;
    }
    w->out.len = 0;
    w->off = 0;
    if (w->ended) return MHD_CONTENT_READER_END_OF_STREAM;
    if (atomic_load(&release_all)) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (atomic_load(&cut_gen) != w->gen)
      return atomic_load(&cut_abrupt) ? MHD_CONTENT_READER_END_WITH_ERROR
                                      : MHD_CONTENT_READER_END_OF_STREAM;
    if (w->mode == 1) {
      kl_buf_adds(&w->out, st410_watch);
      w->ended = true;
      continue;
    }
    if (w->mode == 2) {
      kl_buf_adds(&w->out, "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Con");
      w->ended = true;
      continue;
    }
    if (w->mode == 3) {
      kl_buf_adds(&w->out, "{\"type\":\"ADDED\",\"object\":{\"kind\" 12}}\n");
      w->ended = true;
      continue;
    }
    if (atomic_load(&k_silent)) {
      nap_ms(5);
      continue;
    }
    if (w->ignore_bm) {
      pthread_mutex_lock(&mu);
      kl_buf_addf(&w->out, "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":"
                  "\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{"
                  "\"resourceVersion\":\"%llu\"}}}\n",
                  (unsigned long long)M.cur);
      pthread_mutex_unlock(&mu);
      w->ignore_bm = false;
      continue;
    }
    if (w->initial) {
      static bool alive[MAXN];
      static uint64_t rv[MAXN];
      static int gen[MAXN];
      static pthread_mutex_t imu = PTHREAD_MUTEX_INITIALIZER;
      pthread_mutex_lock(&imu);
      pthread_mutex_lock(&mu);
      state_at(0, alive, rv, gen);
      w->pos = M.cur;
      pthread_mutex_unlock(&mu);
      for (int i = 0; i < MAXN; i++) {
        if (!alive[i]) continue;
        kl_buf_adds(&w->out, "{\"type\":\"ADDED\",\"object\":");
        obj_json(&w->out, i, rv[i], gen[i], true);
        kl_buf_adds(&w->out, "}\n");
      }
      pthread_mutex_unlock(&imu);
      kl_buf_addf(&w->out, "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":"
                  "\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{"
                  "\"resourceVersion\":\"%llu\",\"annotations\":{"
                  "\"k8s.io/initial-events-end\":\"true\"}}}}\n",
                  (unsigned long long)w->pos);
      w->initial = false;
      continue;
    }
    /* next change after pos */
    pthread_mutex_lock(&mu);
    size_t lo = 0, hi = M.nh;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (M.h[mid].rv <= w->pos) lo = mid + 1;
      else hi = mid;
    }
    if (w->mode == 4 && M.nh - lo < 3) { /* wait for three to batch */
      pthread_mutex_unlock(&mu);
      nap_ms(3);
      continue;
    }
    int nev = 0;
    for (size_t i = lo; i < M.nh && nev < 20; i++, nev++) {
      hev *e = &M.h[i];
      kl_buf_addf(&w->out, "{\"type\":\"%s\",\"object\":",
                  e->type == 1 ? "ADDED" : e->type == 2 ? "MODIFIED"
                                                        : "DELETED");
      obj_json(&w->out, e->idx, e->rv, e->gen, true);
      kl_buf_adds(&w->out, "}\n");
      w->pos = e->rv;
    }
    uint64_t cur = M.cur;
    pthread_mutex_unlock(&mu);
    if (nev && w->mode == 4) {
      kl_buf_adds(&w->out, "{\"type\":\"MODIFIED\",\"object\":{\"kind\" 1}}\n");
      w->ended = true;
    }
    if (nev) continue;
    double now = kl_now();
    int bm = atomic_load(&k_bm_ms);
    if (bm && now >= w->next_bm) {
      w->next_bm = now + bm / 1000.0;
      w->pos = cur;
      kl_buf_addf(&w->out, "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":"
                  "\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{"
                  "\"resourceVersion\":\"%llu\",\"creationTimestamp\":null}}}"
                  "\n", (unsigned long long)cur);
      continue;
    }
    if (now >= w->deadline) return MHD_CONTENT_READER_END_OF_STREAM;
    nap_ms(3);
  }
}

static enum MHD_Result serve_watch(struct MHD_Connection *c) {
  atomic_fetch_add(&n_watch, 1);
  const char *rvs = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                                "resourceVersion");
  const char *ts = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                               "timeoutSeconds");
  const char *sie = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                                "sendInitialEvents");
  bool initial = sie && !strcmp(sie, "true");
  if (initial && atomic_load(&k_wl_mode) == 0)
    return reply(c, 422, "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                         "\"status\":\"Failure\",\"message\":\"resourceVersion"
                         "Match is forbidden for watch\",\"reason\":\"Invalid"
                         "\",\"code\":422}");
  if (atomic_load(&k_watch_http410) > 0) {
    atomic_fetch_sub(&k_watch_http410, 1);
    return reply(c, 410, st410_list);
  }
  if (atomic_load(&k_watch_500) > 0) {
    atomic_fetch_sub(&k_watch_500, 1);
    return reply(c, 500, "{\"kind\":\"Status\",\"code\":500,\"reason\":"
                         "\"InternalError\",\"message\":\"boom\"}");
  }
  wstate *w = kl_calloc(1, sizeof *w);
  w->gen = atomic_load(&cut_gen);
  double t = ts ? atof(ts) : 60;
  w->deadline = kl_now() + t;
  w->next_bm = kl_now() + atomic_load(&k_bm_ms) / 1000.0;
  pthread_mutex_lock(&mu);
  w->pos = rvs && *rvs ? strtoull(rvs, NULL, 10) : M.cur;
  bool old = rvs && *rvs && w->pos < M.hist_min;
  pthread_mutex_unlock(&mu);
  if (initial && atomic_load(&k_wl_mode) == 1) w->initial = true;
  if (initial && atomic_load(&k_wl_mode) == 2) w->ignore_bm = true;
  if (old) w->mode = 1;
  if (atomic_load(&k_watch_410) > 0) {
    atomic_fetch_sub(&k_watch_410, 1);
    w->mode = 1;
  } else if (atomic_load(&k_truncate) > 0) {
    atomic_fetch_sub(&k_truncate, 1);
    w->mode = 2;
  } else if (atomic_load(&k_malformed) > 0) {
    atomic_fetch_sub(&k_malformed, 1);
    w->mode = 3;
  } else if (atomic_load(&k_tail_malformed) > 0) {
    atomic_fetch_sub(&k_tail_malformed, 1);
    w->mode = 4;
  }
  struct MHD_Response *r = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, 8192, watch_reader, w, ws_free);
  MHD_add_response_header(r, "Content-Type", "application/json");
  enum MHD_Result ret = MHD_queue_response(c, 200, r);
  MHD_destroy_response(r);
  return ret;
}

/* ---- captured streams, replayed chunk by chunk -------------------------- */

typedef struct raw_stream {
  char *data; /* the .raw file */
  size_t n, off; /* off: at the next chunk-size line */
  bool hang;  /* after the capture: stay open until released */
} raw_stream;

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  kl_buf b = KL_BUF_INIT;
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) kl_buf_add(&b, chunk, n);
  fclose(f);
  if (!b.data) kl_buf_adds(&b, "");
  if (len) *len = b.len;
  return kl_buf_detach(&b, NULL);
}

/* Returns one captured chunk's data per call, as the server framed it. */
static ssize_t raw_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  raw_stream *s = cls;
  for (;;) {
    if (s->off >= s->n) {
      if (!s->hang) return MHD_CONTENT_READER_END_OF_STREAM;
      if (atomic_load(&release_all))
        return MHD_CONTENT_READER_END_WITH_ERROR;
      nap_ms(5);
      continue;
    }
    unsigned long sz = strtoul(s->data + s->off, NULL, 16);
    char *eol = strstr(s->data + s->off, "\r\n");
    if (!eol) return MHD_CONTENT_READER_END_OF_STREAM;
    size_t dat = (size_t)(eol + 2 - s->data);
    if (sz == 0) {
      s->off = s->n;
      continue;
    }
    if (sz > max) sz = max; /* captured chunks are far smaller than max */
    memcpy(buf, s->data + dat, sz);
    s->off = dat + sz + 2;
    return (ssize_t)sz;
  }
}
static void raw_free(void *cls) {
  raw_stream *s = cls;
  free(s->data);
  free(s);
}

static atomic_int raw_watches;
static char raw_name[128];

static enum MHD_Result serve_raw(struct MHD_Connection *c, bool watch) {
  if (!watch) {
    atomic_fetch_add(&n_list, 1);
    return reply(c, 200, "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\","
                         "\"metadata\":{\"resourceVersion\":\"231\"},"
                         "\"items\":[]}");
  }
  atomic_fetch_add(&n_watch, 1);
  raw_stream *s = kl_calloc(1, sizeof *s);
  if (atomic_fetch_add(&raw_watches, 1) == 0) {
    char *p = kl_sprintf("%s/watch/%s.raw", tu_wire_dir(), raw_name);
    size_t n = 0;
    char *text = slurp(p, &n);
    free(p);
    char *body = text ? strstr(text, "\r\n\r\n") : NULL;
    if (body) {
      s->data = kl_strdup(body + 4);
      s->n = strlen(s->data);
    }
    free(text);
  } else {
    s->hang = true;
  }
  struct MHD_Response *r = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, 8192, raw_reader, s, raw_free);
  MHD_add_response_header(r, "Content-Type", "application/json");
  enum MHD_Result ret = MHD_queue_response(c, 200, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c,
                               const char *url, const char *method,
                               const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
  (void)cls, (void)version, (void)upload, (void)method;
  if (*con_cls == NULL) {
    *con_cls = (void *)1;
    return MHD_YES;
  }
  *upload_size = 0;
  const char *w = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                              "watch");
  bool watch = w && (!strcmp(w, "true") || !strcmp(w, "1"));
  {
    const char *names[] = {"limit", "continue", "resourceVersion",
                           "sendInitialEvents", "resourceVersionMatch",
                           "allowWatchBookmarks", "labelSelector",
                           "fieldSelector"};
    kl_buf b = KL_BUF_INIT;
    kl_buf_adds(&b, watch ? "WATCH" : "LIST");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
      const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                                  names[i]);
      if (v) kl_buf_addf(&b, " %s=%s", names[i], v);
    }
    const char *acc = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                  "Accept");
    pthread_mutex_lock(&log_mu);
    if (nreq < 4096) snprintf(reqlog[nreq++], 160, "%s", b.data);
    snprintf(last_accept, sizeof last_accept, "%s", acc ? acc : "");
    pthread_mutex_unlock(&log_mu);
    kl_buf_free(&b);
  }
  if (!strcmp(url, "/api/v1/namespaces/t/configmaps"))
    return watch ? serve_watch(c) : serve_list(c);
  if (!strcmp(url, "/wire/configmaps")) return serve_raw(c, watch);
  return reply(c, 404, "{\"kind\":\"Status\",\"code\":404}");
}

static struct MHD_Daemon *daemon_;
static char url_base[64];
static kl_rest *rest;

static bool start_server(void) {
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
                                 MHD_USE_THREAD_PER_CONNECTION,
                             0, NULL, NULL, handler, NULL,
                             MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
  if (!daemon_) return false;
  const union MHD_DaemonInfo *info =
      MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
  snprintf(url_base, sizeof url_base, "http://127.0.0.1:%d",
           info ? info->port : 0);
  kl_kubeconfig kc = {0};
  kc.server = url_base;
  kc.namespace = "t";
  kc.source = "test";
  kc.context = "test";
  char *err = NULL;
  kl_rest_opts ro = {.qps = -1};
  if (kl_rest_new(&kc, &ro, &rest, &err)) {
    printf("# rest: %s\n", err);
    free(err);
    return false;
  }
  return true;
}

/* ---- a recording sink ------------------------------------------------------ */

typedef struct rec {
  kl_store *store;
  pthread_mutex_t mu;
  int adds, updates, dels, replaces;
  size_t last_replace_n;
  char last_replace_rv[32];
  bool saw_managed_fields, saw_missing_kind;
  int batch_calls, batch_events; /* through push_batch (batch sinks) */
} rec;

static void rec_check(rec *r, kl_obj *o) {
  kl_span v;
  if (kl_obj_get(o, "metadata.managedFields", &v)) r->saw_managed_fields = true;
  if (!kl_obj_get(o, "kind", &v) || !kl_obj_get(o, "apiVersion", &v))
    r->saw_missing_kind = true;
}
static int rec_add(void *ud, kl_obj *o) {
  rec *r = ud;
  pthread_mutex_lock(&r->mu);
  r->adds++;
  rec_check(r, o);
  pthread_mutex_unlock(&r->mu);
  return kl_store_add(r->store, o);
}
static int rec_update(void *ud, kl_obj *o) {
  rec *r = ud;
  pthread_mutex_lock(&r->mu);
  r->updates++;
  rec_check(r, o);
  pthread_mutex_unlock(&r->mu);
  return kl_store_update(r->store, o);
}
static int rec_del(void *ud, kl_obj *o) {
  rec *r = ud;
  pthread_mutex_lock(&r->mu);
  r->dels++;
  pthread_mutex_unlock(&r->mu);
  return kl_store_delete(r->store, o);
}
static int rec_replace(void *ud, kl_obj *const *v, size_t n, const char *rv) {
  rec *r = ud;
  pthread_mutex_lock(&r->mu);
  r->replaces++;
  r->last_replace_n = n;
  snprintf(r->last_replace_rv, sizeof r->last_replace_rv, "%s", rv);
  for (size_t i = 0; i < n; i++) rec_check(r, v[i]);
  pthread_mutex_unlock(&r->mu);
  return kl_store_replace(r->store, v, n, rv);
}

static void rec_init(rec *r) {
  memset(r, 0, sizeof *r);
  r->store = kl_store_new();
  pthread_mutex_init(&r->mu, NULL);
}
static void rec_free(rec *r) {
  kl_store_unref(r->store);
  pthread_mutex_destroy(&r->mu);
}
/* reads a counter of r from the test thread (the sink writes them) */
static long rec_tmp;
static void rec_lock(rec *r) { pthread_mutex_lock(&r->mu); }
static void rec_unlock(rec *r) { pthread_mutex_unlock(&r->mu); }
#define RGET(r, f) (rec_lock(&(r)), rec_tmp = (long)(r).f, rec_unlock(&(r)), rec_tmp)

/* The sink's push_batch: the events of one network read, applied in
 * order and counted like the per-event functions. */
static int rec_batch(void *ud, const kl_fifo_op *ops, size_t n) {
  rec *r = ud;
  pthread_mutex_lock(&r->mu);
  r->batch_calls++;
  r->batch_events += (int)n;
  pthread_mutex_unlock(&r->mu);
  for (size_t i = 0; i < n; i++) {
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    if (ops[i].type == KL_DELTA_ADDED) r->adds++;
    else if (ops[i].type == KL_DELTA_UPDATED) r->updates++;
    else r->dels++;
    rec_check(r, ops[i].obj);
    pthread_mutex_unlock(&r->mu);
    if (ops[i].type == KL_DELTA_DELETED) rc = kl_store_delete(r->store, ops[i].obj);
    else rc = kl_store_update(r->store, ops[i].obj);
    if (rc) return rc;
  }
  return 0;
}

/* sinks made by rec_sink have push_batch while this is set */
static bool batch_sink;

static kl_reflector_sink rec_sink(rec *r) {
  return (kl_reflector_sink){rec_add, rec_update, rec_del, rec_replace, r,
                             batch_sink ? rec_batch : NULL};
}

static kl_reflector_opts base_opts(void) {
  kl_reflector_opts o = {0};
  o.rest = rest;
  o.path = "/api/v1/namespaces/t/configmaps";
  o.name = "configmaps t";
  o.watch_timeout_min_s = 30;
  o.watch_timeout_max_s = 60;
  o.backoff_initial_s = 0.005;
  o.backoff_max_s = 0.05;
  o.seed = 7;
  return o;
}

static kl_reflector *start(const kl_reflector_opts *o, rec *r) {
  kl_reflector *rf = NULL;
  char *err = NULL;
  if (kl_reflector_new(o, rec_sink(r), &rf, &err)) {
    printf("  reflector: %s\n", err);
    free(err);
    return NULL;
  }
  kl_reflector_start(rf);
  return rf;
}

/* waits up to 60 s of time for cond: TSan on a loaded machine took more
 * than 10 s for the 5000-object list */
#define WAIT_FOR(cond)                                                        \
  do {                                                                        \
    for (double w_ = kl_now() + 60; !(cond) && kl_now() < w_;) nap_ms(5);     \
  } while (0)

static bool store_matches_model(kl_store *s) {
  pthread_mutex_lock(&mu);
  size_t n = 0;
  bool ok = true;
  for (int i = 0; i < MAXN && ok; i++) {
    if (!M.alive[i]) continue;
    n++;
    char key[32];
    snprintf(key, sizeof key, "t/cm-%05d", i);
    kl_obj *o = kl_store_get_by_key(s, key);
    char want[24];
    snprintf(want, sizeof want, "%llu", (unsigned long long)M.rv[i]);
    if (!o || strcmp(kl_obj_resource_version(o), want)) ok = false;
    kl_obj_unref(o);
  }
  pthread_mutex_unlock(&mu);
  return ok && kl_store_len(s) == n;
}

static uint64_t model_rv(void) {
  pthread_mutex_lock(&mu);
  uint64_t v = M.cur;
  pthread_mutex_unlock(&mu);
  return v;
}

static bool rv_is(kl_reflector *rf, uint64_t want) {
  char *s = kl_reflector_last_rv(rf);
  bool ok = strtoull(s, NULL, 10) == want;
  free(s);
  return ok;
}

/* copies the request log lines matching prefix into out; returns count */
static int log_grep(const char *prefix, char out[][160], int max) {
  int k = 0;
  pthread_mutex_lock(&log_mu);
  for (int i = 0; i < nreq; i++)
    if (!strncmp(reqlog[i], prefix, strlen(prefix))) {
      if (k < max) memcpy(out[k], reqlog[i], 160);
      k++;
    }
  pthread_mutex_unlock(&log_mu);
  return k;
}

static bool has_param(const char *line, const char *kv) {
  char pat[96];
  snprintf(pat, sizeof pat, " %s", kv);
  const char *p = strstr(line, pat);
  if (!p) return false;
  char end = p[strlen(pat)];
  return end == ' ' || end == '\0';
}

/* ---- tests ------------------------------------------------------------------ */

static char lines[64][160];

TEST(pagination_5000_in_pages_of_500) {
  reset_model();
  for (int i = 0; i < 5000; i++) mcreate(i);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(kl_store_len(r.store) == 5000 && atomic_load(&n_watch) > 0);
  CHECK_EQ_INT(kl_store_len(r.store), 5000);
  int nl = log_grep("LIST", lines, 64);
  CHECK_EQ_INT(nl, 10);
  CHECK(has_param(lines[0], "limit=500"));
  CHECK(!strstr(lines[0], "resourceVersion=")); /* first list: RV "" */
  for (int i = 1; i < nl && i < 64; i++) {
    CHECK(has_param(lines[i], "limit=500"));
    CHECK(strstr(lines[i], "continue=") != NULL);
    CHECK(!strstr(lines[i], "resourceVersion="));
  }
  CHECK_EQ_INT(RGET(r, replaces), 1);
  CHECK(!RGET(r, saw_managed_fields)); /* stripped by default */
  CHECK(!RGET(r, saw_missing_kind));   /* injected into list items */
  CHECK(store_matches_model(r.store));
  /* the watch starts at the list's RV, with bookmarks */
  CHECK_EQ_INT(log_grep("WATCH", lines, 64), 1);
  char want[64];
  snprintf(want, sizeof want, "resourceVersion=%llu",
           (unsigned long long)model_rv());
  CHECK(has_param(lines[0], want));
  CHECK(has_param(lines[0], "allowWatchBookmarks=true"));
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK_EQ_INT(st.list_requests, 10);
  CHECK_EQ_INT(st.lists, 1);
  CHECK_EQ_INT(st.relists, 0);
  CHECK_EQ_INT(st.objects_listed, 5000);
  CHECK(st.synced);
  kl_reflector_free(rf);
  rec_free(&r);
}

static void watch_events_and_bookmarks(void) {
  reset_model();
  for (int i = 0; i < 3; i++) mcreate(i);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(atomic_load(&n_watch) == 1);
  mupdate(0);
  mdelete(1);
  mcreate(7);
  WAIT_FOR(rv_is(rf, model_rv()));
  CHECK(store_matches_model(r.store));
  CHECK_EQ_INT(RGET(r, adds), 1);
  CHECK_EQ_INT(RGET(r, updates), 1);
  CHECK_EQ_INT(RGET(r, dels), 1);
  /* writes elsewhere move the RV only through bookmarks */
  mbump();
  mbump();
  uint64_t want = model_rv();
  atomic_store(&k_bm_ms, 20);
  WAIT_FOR(rv_is(rf, want));
  CHECK(rv_is(rf, want));
  atomic_store(&k_bm_ms, 0);
  /* a watch that ends resumes from the bookmark's RV without a list */
  atomic_fetch_add(&cut_gen, 1);
  WAIT_FOR(atomic_load(&n_watch) == 2);
  nap_ms(50);
  int nw = log_grep("WATCH", lines, 64);
  CHECK_EQ_INT(nw, 2);
  char p[64];
  snprintf(p, sizeof p, "resourceVersion=%llu", (unsigned long long)want);
  CHECK(has_param(lines[1], p));
  CHECK_EQ_INT(log_grep("LIST", lines, 64), 1);
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK(st.ev_bookmark >= 1);
  CHECK_EQ_INT(st.ev_added, 1);
  CHECK_EQ_INT(st.ev_modified, 1);
  CHECK_EQ_INT(st.ev_deleted, 1);
  CHECK_EQ_INT(st.relists, 0);
  CHECK(st.watch_restarts >= 1);
  /* with a batch sink every watch event went through push_batch */
  CHECK_EQ_INT(RGET(r, batch_events), batch_sink ? 3 : 0);
  kl_reflector_free(rf);
  rec_free(&r);
}

TEST(watch_events_and_bookmarks_advance_rv) { watch_events_and_bookmarks(); }

TEST(watch_events_through_push_batch) {
  batch_sink = true;
  watch_events_and_bookmarks();
  batch_sink = false;
}

TEST(watch_410_event_relists_with_empty_rv) {
  reset_model();
  for (int i = 0; i < 4; i++) mcreate(i);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(atomic_load(&n_watch) == 1);
  /* changes the reflector will miss, then its RV expires */
  atomic_store(&k_silent, 1);
  mdelete(0);
  mupdate(1);
  mcreate(9);
  atomic_store(&k_watch_410, 1);
  atomic_fetch_add(&cut_gen, 1);
  atomic_store(&k_silent, 0);
  WAIT_FOR(atomic_load(&n_list) >= 2 && rv_is(rf, model_rv()) &&
           store_matches_model(r.store));
  CHECK(store_matches_model(r.store));
  int nl = log_grep("LIST", lines, 64);
  CHECK_EQ_INT(nl, 2);
  /* after a 410 the relist is a consistent read: no resourceVersion */
  CHECK(!strstr(lines[1], "resourceVersion="));
  CHECK(has_param(lines[1], "limit=500"));
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK(st.err_gone >= 1);
  CHECK_EQ_INT(st.relists, 1);
  CHECK(st.ev_error >= 1);
  CHECK(st.backoffs >= 1);
  kl_reflector_free(rf);
  rec_free(&r);
}

TEST(watch_http_410_and_compaction_relist) {
  reset_model();
  for (int i = 0; i < 4; i++) mcreate(i);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(atomic_load(&n_watch) == 1);
  atomic_store(&k_silent, 1);
  mupdate(2);
  mcompact(); /* the reflector's RV is now older than the history */
  mupdate(3);
  atomic_store(&k_watch_http410, 1);
  atomic_fetch_add(&cut_gen, 1);
  atomic_store(&k_silent, 0);
  WAIT_FOR(atomic_load(&n_list) >= 2 && store_matches_model(r.store) &&
           rv_is(rf, model_rv()));
  CHECK(store_matches_model(r.store));
  CHECK(log_grep("LIST", lines, 64) >= 2);
  CHECK(!strstr(lines[1], "resourceVersion="));
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK(st.err_gone >= 1);
  kl_reflector_free(rf);
  rec_free(&r);
}

TEST(watch_500_relists_at_last_rv_exactly) {
  reset_model();
  for (int i = 0; i < 4; i++) mcreate(i);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(atomic_load(&n_watch) == 1);
  mupdate(1);
  WAIT_FOR(rv_is(rf, model_rv()));
  uint64_t seen = model_rv();
  atomic_store(&k_watch_500, 1);
  atomic_fetch_add(&cut_gen, 1);
  WAIT_FOR(atomic_load(&n_list) >= 2 && atomic_load(&n_watch) >= 3);
  CHECK_EQ_INT(log_grep("LIST", lines, 64), 2);
  char p[64];
  snprintf(p, sizeof p, "resourceVersion=%llu", (unsigned long long)seen);
  /* never back in time: the relist asks for what was already seen */
  CHECK(has_param(lines[1], p));
  CHECK(has_param(lines[1], "limit=500"));
  CHECK(store_matches_model(r.store));
  kl_reflector_free(rf);
  rec_free(&r);
}

TEST(expired_continue_restarts_full_list) {
  reset_model();
  for (int i = 0; i < 1200; i++) mcreate(i);
  atomic_store(&k_expire_continue, 1);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(kl_store_len(r.store) == 1200 && atomic_load(&n_watch) > 0);
  int nl = log_grep("LIST", lines, 64);
  CHECK_EQ_INT(nl, 3);
  CHECK(has_param(lines[0], "limit=500"));
  CHECK(strstr(lines[1], "continue=") != NULL);
  /* the restart: one unpaged list at the newest state */
  CHECK(!strstr(lines[2], "limit="));
  CHECK(!strstr(lines[2], "continue="));
  CHECK(!strstr(lines[2], "resourceVersion="));
  CHECK_EQ_INT(RGET(r, replaces), 1);
  CHECK_EQ_INT(RGET(r, last_replace_n), 1200);
  CHECK(store_matches_model(r.store));
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK_EQ_INT(st.continue_expired, 1);
  kl_reflector_free(rf);
  rec_free(&r);
}

TEST(streaming_list_used_when_supported) {
  reset_model();
  for (int i = 0; i < 30; i++) mcreate(i);
  atomic_store(&k_wl_mode, 1);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  o.watch_list = true;
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(RGET(r, replaces) == 1);
  mupdate(3);
  mcreate(40);
  WAIT_FOR(rv_is(rf, model_rv()));
  CHECK(store_matches_model(r.store));
  CHECK_EQ_INT(atomic_load(&n_list), 0);
  CHECK_EQ_INT(RGET(r, replaces), 1);
  CHECK_EQ_INT(RGET(r, last_replace_n), 30);
  CHECK_EQ_INT(log_grep("WATCH", lines, 64), 1);
  CHECK(has_param(lines[0], "sendInitialEvents=true"));
  CHECK(has_param(lines[0], "resourceVersionMatch=NotOlderThan"));
  CHECK(has_param(lines[0], "allowWatchBookmarks=true"));
  /* a reconnect resumes from the RV, without initial events */
  uint64_t at = model_rv();
  atomic_fetch_add(&cut_gen, 1);
  WAIT_FOR(atomic_load(&n_watch) == 2);
  nap_ms(30);
  CHECK_EQ_INT(log_grep("WATCH", lines, 64), 2);
  CHECK(!strstr(lines[1], "sendInitialEvents"));
  char p[64];
  snprintf(p, sizeof p, "resourceVersion=%llu", (unsigned long long)at);
  CHECK(has_param(lines[1], p));
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK_EQ_INT(st.watch_list_used, 1);
  CHECK_EQ_INT(st.lists, 1);
  CHECK(st.synced);
  kl_reflector_free(rf);
  rec_free(&r);
}

TEST(streaming_list_refused_falls_back) {
  reset_model();
  for (int i = 0; i < 12; i++) mcreate(i);
  atomic_store(&k_wl_mode, 0);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  o.watch_list = true;
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(kl_store_len(r.store) == 12 && atomic_load(&n_watch) >= 2);
  CHECK(store_matches_model(r.store));
  CHECK_EQ_INT(atomic_load(&n_list), 1);
  int nw = log_grep("WATCH", lines, 64);
  CHECK(nw >= 2);
  CHECK(has_param(lines[0], "sendInitialEvents=true"));
  CHECK(!strstr(lines[1], "sendInitialEvents"));
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK_EQ_INT(st.watch_list_fallbacks, 1);
  CHECK_EQ_INT(st.watch_list_used, 0);
  kl_reflector_free(rf);
  rec_free(&r);
}

TEST(streaming_list_ignored_falls_back) {
  reset_model();
  for (int i = 0; i < 12; i++) mcreate(i);
  atomic_store(&k_wl_mode, 2);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  o.watch_list = true;
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(kl_store_len(r.store) == 12 && atomic_load(&n_watch) >= 2);
  CHECK(store_matches_model(r.store));
  CHECK_EQ_INT(atomic_load(&n_list), 1);
  CHECK_EQ_INT(RGET(r, replaces), 1);
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK_EQ_INT(st.watch_list_fallbacks, 1);
  kl_reflector_free(rf);
  rec_free(&r);
}

TEST(truncated_and_malformed_lines_rewatch_from_last_good_rv) {
  reset_model();
  for (int i = 0; i < 3; i++) mcreate(i);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(atomic_load(&n_watch) == 1);
  mupdate(0);
  WAIT_FOR(rv_is(rf, model_rv()));
  uint64_t good = model_rv();
  atomic_store(&k_truncate, 1);
  atomic_store(&k_malformed, 1);
  atomic_fetch_add(&cut_gen, 1);
  WAIT_FOR(atomic_load(&n_watch) >= 4);
  mupdate(2);
  WAIT_FOR(rv_is(rf, model_rv()));
  CHECK(store_matches_model(r.store));
  int nw = log_grep("WATCH", lines, 64);
  CHECK(nw >= 4);
  char p[64];
  snprintf(p, sizeof p, "resourceVersion=%llu", (unsigned long long)good);
  for (int i = 1; i < 4 && i < nw; i++) CHECK(has_param(lines[i], p));
  CHECK_EQ_INT(log_grep("LIST", lines, 64), 1); /* no relist needed */
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK_EQ_INT(st.err_decode, 2);
  kl_reflector_free(rf);
  rec_free(&r);
}

/* Events sent in one write with a malformed line after them (usually one
 * read round, where the reflector gathers events before handing them on)
 * are good: they reach the store, and the next watch starts after the
 * last of them. */
TEST(events_before_a_malformed_line_in_one_read_are_applied) {
  reset_model();
  for (int i = 0; i < 3; i++) mcreate(i);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(atomic_load(&n_watch) == 1);
  atomic_store(&k_tail_malformed, 1);
  atomic_fetch_add(&cut_gen, 1); /* the next watch batches, then breaks */
  WAIT_FOR(atomic_load(&n_watch) >= 2);
  for (int i = 0; i < 3; i++) mupdate(i);
  uint64_t good = model_rv();
  WAIT_FOR(atomic_load(&n_watch) >= 3);
  WAIT_FOR(rv_is(rf, good));
  CHECK(rv_is(rf, good));
  CHECK(store_matches_model(r.store));
  int nw = log_grep("WATCH", lines, 64);
  CHECK(nw >= 3);
  char p[64];
  snprintf(p, sizeof p, "resourceVersion=%llu", (unsigned long long)good);
  if (nw >= 3) CHECK(has_param(lines[2], p));
  CHECK_EQ_INT(log_grep("LIST", lines, 64), 1);
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK_EQ_INT(st.err_decode, 1);
  CHECK_EQ_INT(st.ev_modified, 3);
  kl_reflector_free(rf);
  rec_free(&r);
}

TEST(silent_connection_is_noticed) {
  reset_model();
  mcreate(1);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  o.idle_timeout_s = 1;
  atomic_store(&k_silent, 1);
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(atomic_load(&n_watch) >= 2);
  atomic_store(&k_silent, 0);
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK(st.err_idle >= 1);
  CHECK(atomic_load(&n_watch) >= 2);
  mupdate(1);
  WAIT_FOR(rv_is(rf, model_rv()));
  CHECK(store_matches_model(r.store));
  kl_reflector_free(rf);
  rec_free(&r);
}

TEST(metadata_only_and_selectors_on_the_wire) {
  reset_model();
  mcreate(1);
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  o.metadata_only = true;
  o.label_selector = "app=web,tier!=db";
  o.field_selector = "metadata.name=cm-00001";
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(atomic_load(&n_watch) >= 1);
  nap_ms(20);
  CHECK_EQ_INT(log_grep("LIST", lines, 64), 1);
  CHECK(has_param(lines[0], "labelSelector=app=web,tier!=db"));
  CHECK(has_param(lines[0], "fieldSelector=metadata.name=cm-00001"));
  log_grep("WATCH", lines, 64);
  CHECK(has_param(lines[0], "labelSelector=app=web,tier!=db"));
  pthread_mutex_lock(&log_mu);
  CHECK(strstr(last_accept, "as=PartialObjectMetadata;g=meta.k8s.io;v=v1") !=
        NULL);
  pthread_mutex_unlock(&log_mu);
  kl_reflector_free(rf);
  rec_free(&r);
}

TEST(stop_is_prompt_during_list_and_idle_watch) {
  reset_model();
  for (int i = 0; i < 2000; i++) mcreate(i);
  atomic_store(&k_slow_list, 1); /* the list would take minutes */
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  o.page_size = -1;
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(atomic_load(&n_list) == 1);
  nap_ms(100);
  double t0 = kl_now();
  kl_reflector_stop(rf);
  printf("# stop during a list took %.3f s\n", kl_now() - t0);
  CHECK_EQ_INT(RGET(r, replaces), 0);
  kl_reflector_free(rf);
  atomic_store(&k_slow_list, 0);

  rec_free(&r);
  rec_init(&r);
  rf = start(&o, &r);
  WAIT_FOR(atomic_load(&n_watch) >= 1);
  nap_ms(100);
  t0 = kl_now();
  kl_reflector_stop(rf);
  printf("# stop during an idle watch took %.3f s\n", kl_now() - t0);
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK(!st.running);
  kl_reflector_free(rf);
  rec_free(&r);
}

/* A captured kube-apiserver v1.20 watch, served with its exact chunking. */
TEST(captured_watch_stream_replayed) {
  reset_model();
  atomic_store(&raw_watches, 0);
  snprintf(raw_name, sizeof raw_name, "cm_from_list_rv");
  rec r;
  rec_init(&r);
  kl_reflector_opts o = base_opts();
  o.path = "/wire/configmaps";
  kl_reflector *rf = start(&o, &r);
  WAIT_FOR(atomic_load(&raw_watches) >= 2);
  char *rv = kl_reflector_last_rv(rf);
  CHECK_EQ_STR(rv, "238");
  free(rv);
  CHECK_EQ_INT(RGET(r, adds), 2);
  CHECK_EQ_INT(RGET(r, updates), 3);
  CHECK_EQ_INT(RGET(r, dels), 2);
  CHECK_EQ_INT(kl_store_len(r.store), 0);
  CHECK(!RGET(r, saw_managed_fields));
  int nw = log_grep("WATCH", lines, 64);
  CHECK(nw >= 2);
  CHECK(has_param(lines[0], "resourceVersion=231"));
  CHECK(has_param(lines[1], "resourceVersion=238"));
  kl_reflector_free(rf);
  rec_free(&r);

  /* the too-old-RV capture: ERROR 410 in a 200 stream, then a relist */
  reset_model();
  atomic_store(&raw_watches, 0);
  snprintf(raw_name, sizeof raw_name, "cm_rv1_too_old_reflector_style");
  rec_init(&r);
  rf = start(&o, &r);
  WAIT_FOR(atomic_load(&n_list) >= 2 && atomic_load(&raw_watches) >= 2);
  kl_reflector_stats st;
  kl_reflector_stats_get(rf, &st);
  CHECK_EQ_INT(st.err_gone, 1);
  CHECK(st.relists >= 1);
  CHECK(log_grep("LIST", lines, 64) >= 2);
  CHECK(!strstr(lines[1], "resourceVersion="));
  kl_reflector_free(rf);
  rec_free(&r);
}

/* A writer changes the collection while watches are cut (cleanly and
 * abruptly), 410s are injected, history is compacted and continue tokens
 * expire; once it stops, the store equals the server's state. */
typedef struct chaos {
  unsigned seed;
  atomic_int done;
} chaos;

static void *writer(void *arg) {
  chaos *c = arg;
  unsigned s = c->seed;
  for (int n = 0; n < 1500 && !atomic_load(&c->done); n++) {
    int idx = rand_r(&s) % 300;
    pthread_mutex_lock(&mu);
    bool alive = M.alive[idx];
    pthread_mutex_unlock(&mu);
    int op = rand_r(&s) % 3;
    if (!alive) mcreate(idx);
    else if (op == 0) mdelete(idx);
    else mupdate(idx);
    if (n % 3 == 0) nap_ms(1);
  }
  return NULL;
}

static void *disrupter(void *arg) {
  chaos *c = arg;
  unsigned s = c->seed * 31 + 1;
  while (!atomic_load(&c->done)) {
    nap_ms(5 + rand_r(&s) % 30);
    switch (rand_r(&s) % 6) {
    case 0:
    case 1:
      atomic_store(&cut_abrupt, rand_r(&s) % 2);
      atomic_fetch_add(&cut_gen, 1);
      break;
    case 2:
      atomic_store(&k_watch_410, 1);
      atomic_fetch_add(&cut_gen, 1);
      break;
    case 3:
      mcompact();
      break;
    case 4:
      atomic_store(&k_expire_continue, 1);
      break;
    case 5:
      atomic_store(&k_truncate, 1);
      atomic_fetch_add(&cut_gen, 1);
      break;
    }
  }
  return NULL;
}

TEST(convergence_under_writes_and_cuts) {
  unsigned seeds[] = {1, 2, 3, 4};
  for (size_t si = 0; si < 4; si++) {
    batch_sink = si == 3; /* the events of each read in one push_batch */
    reset_model();
    for (int i = 0; i < 150; i++) mcreate(i);
    rec r;
    rec_init(&r);
    kl_reflector_opts o = base_opts();
    o.page_size = 40;
    o.seed = seeds[si];
    o.watch_list = si == 2;
    atomic_store(&k_wl_mode, 1);
    kl_reflector *rf = start(&o, &r);
    chaos c = {.seed = seeds[si]};
    pthread_t tw, td;
    pthread_create(&tw, NULL, writer, &c);
    pthread_create(&td, NULL, disrupter, &c);
    pthread_join(tw, NULL);
    /* the cuts go on until the reflector watched a few times: on a loaded
     * machine the writes can be over while it is still listing */
    kl_reflector_stats st;
    WAIT_FOR((kl_reflector_stats_get(rf, &st), st.watches > 3));
    atomic_store(&c.done, 1);
    pthread_join(td, NULL);
    atomic_store(&cut_abrupt, 0);
    atomic_store(&k_watch_410, 0);
    atomic_store(&k_truncate, 0);
    atomic_store(&k_expire_continue, 0);
    WAIT_FOR(store_matches_model(r.store) && rv_is(rf, model_rv()));
    CHECK(store_matches_model(r.store));
    if (batch_sink) {
      /* writes on a quiet watch: the chaos alone may have brought every
       * change through relists, none through the watch (seen under load:
       * 0 push_batch calls) */
      for (int i = 0; i < 5; i++) mupdate(i);
      WAIT_FOR(store_matches_model(r.store) && rv_is(rf, model_rv()));
      CHECK(store_matches_model(r.store));
    }
    kl_reflector_stats_get(rf, &st);
    printf("# seed %u: %llu lists, %llu watches, %llu gone, %llu decode, "
           "rv %s/%llu\n", seeds[si], (unsigned long long)st.lists,
           (unsigned long long)st.watches, (unsigned long long)st.err_gone,
           (unsigned long long)st.err_decode, st.last_rv,
           (unsigned long long)model_rv());
    CHECK(st.watches > 3);
    if (batch_sink) {
      long ev = RGET(r, batch_events), calls = RGET(r, batch_calls);
      printf("# seed %u: %ld events in %ld push_batch calls\n", seeds[si],
             ev, calls);
      CHECK(calls > 0);
    }
    batch_sink = false;
    kl_reflector_free(rf);
    rec_free(&r);
  }
}

TEST(bad_options_are_refused) {
  kl_reflector_opts o = {0};
  kl_reflector *rf = NULL;
  char *err = NULL;
  rec r;
  rec_init(&r);
  CHECK_EQ_INT(kl_reflector_new(&o, rec_sink(&r), &rf, &err), KL_EINVAL);
  CHECK(err != NULL);
  free(err);
  CHECK(rf == NULL);
  rec_free(&r);
}

int main(void) {
  kl_log_set_level(getenv("KLUA_DEBUG") ? KL_LOG_DEBUG : KL_LOG_ERROR);
  if (!start_server()) {
    printf("# cannot start the fake server\n");
    return 1;
  }
  RUN(pagination_5000_in_pages_of_500);
  RUN(watch_events_and_bookmarks_advance_rv);
  RUN(watch_events_through_push_batch);
  RUN(watch_410_event_relists_with_empty_rv);
  RUN(watch_http_410_and_compaction_relist);
  RUN(watch_500_relists_at_last_rv_exactly);
  RUN(expired_continue_restarts_full_list);
  RUN(streaming_list_used_when_supported);
  RUN(streaming_list_refused_falls_back);
  RUN(streaming_list_ignored_falls_back);
  RUN(truncated_and_malformed_lines_rewatch_from_last_good_rv);
  RUN(events_before_a_malformed_line_in_one_read_are_applied);
  RUN(silent_connection_is_noticed);
  RUN(metadata_only_and_selectors_on_the_wire);
  RUN(stop_is_prompt_during_list_and_idle_watch);
  RUN(captured_watch_stream_replayed);
  RUN(convergence_under_writes_and_cuts);
  RUN(bad_options_are_refused);
  atomic_store(&release_all, 1);
  kl_rest_free(rest);
  MHD_stop_daemon(daemon_);
  pthread_mutex_lock(&mu);
  free(M.h);
  M.h = NULL;
  pthread_mutex_unlock(&mu);
  return ctest_summary();
}
