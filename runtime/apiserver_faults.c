/* apiserver_faults.c: fault injection for the local API server (`klua serve
 * --faults on`). An admin endpoint, /_klua/faults, loopback peers only,
 * arms faults that the request path and the watch streams then meet:
 * injected error Statuses (500/503/429...), delays, watches closed at once,
 * watch streams cut in the middle of an event, malformed watch lines, and
 * history compaction (410 for older RVs). Interface: docs/serve.md, "Fault
 * injection". Thread-safety: one mutex guards the armed faults; any
 * connection thread may call every hook. */
#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "apiserver.h"

#define ADMIN_PATH "/_klua/faults"

enum { F_FAIL = 1, F_DELAY, F_CUT, F_MALFORMED };
static const char *const kind_names[] = {NULL, "fail", "delay", "cut_watch",
                                         "malformed_watch"};

typedef struct fault {
  int id, kind;
  char *path, *method; /* path prefix ("" = all); method NULL = any */
  int watch;           /* -1 any, 0 only non-watch, 1 only watch requests */
  int code, retry_after;
  double seconds;
  long left;           /* remaining triggers; < 0: until cleared */
  long hits;
  char *message;
} fault;

typedef struct faults {
  pthread_mutex_t mu;
  fault *v;
  size_t n, cap;
  int next_id;
  unsigned long close_gen; /* bumped by close_watches */
  long open_watches;
} faults;

typedef struct fwatch {
  char *path;
  unsigned long gen;
} fwatch;

static faults *state(kl_apiserver *s) {
  return *kl_as_hook_slot(s, KL_AS_HOOK_FAULTS);
}

static void fault_free(fault *f) {
  free(f->path);
  free(f->method);
  free(f->message);
}

static const char *reason_for(int code) {
  switch (code) {
  case 400: return "BadRequest";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "NotFound";
  case 409: return "Conflict";
  case 410: return "Expired";
  case 429: return "TooManyRequests";
  case 500: return "InternalError";
  case 503: return "ServiceUnavailable";
  case 504: return "Timeout";
  default: return "";
  }
}

static const char *message_for(int code) {
  switch (code) {
  case 429: return "Too many requests, please try again later.";
  case 503: return "the server is currently unable to handle the request";
  case 504: return "the server was unable to return a response in the time "
                   "allotted, but may still be processing the request";
  default: return "an error on the server (\"injected fault\") has prevented "
                  "the request from succeeding";
  }
}

/* ---- replies ------------------------------------------------------------ */

static void reply_status(kl_as_reply *rep, int code, const char *reason,
                         const char *msg, int retry_after) {
  kl_as_result r = KL_AS_RESULT_INIT;
  char details[64];
  if (retry_after > 0)
    snprintf(details, sizeof details, "{\"retryAfterSeconds\":%d}",
             retry_after);
  kl_as_status(&r, code, reason && *reason ? reason : NULL, msg,
               retry_after > 0 ? details : NULL);
  rep->code = code;
  rep->content_type = NULL;
  rep->retry_after = retry_after;
  kl_buf_free(&rep->body);
  rep->body = r.body; /* moved */
}

static void reply_json(kl_as_reply *rep, int code, char *json) {
  rep->code = code;
  rep->content_type = NULL;
  kl_buf_free(&rep->body);
  kl_buf_adds(&rep->body, json);
  free(json);
}

static cJSON *fault_json(const fault *f) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "id", f->id);
  cJSON_AddStringToObject(o, "action", kind_names[f->kind]);
  cJSON_AddStringToObject(o, "path", f->path);
  if (f->method) cJSON_AddStringToObject(o, "method", f->method);
  if (f->watch >= 0) cJSON_AddBoolToObject(o, "watch", f->watch);
  if (f->kind == F_FAIL) {
    cJSON_AddNumberToObject(o, "code", f->code);
    if (f->retry_after)
      cJSON_AddNumberToObject(o, "retryAfterSeconds", f->retry_after);
    if (f->message) cJSON_AddStringToObject(o, "message", f->message);
  }
  if (f->kind == F_DELAY) cJSON_AddNumberToObject(o, "seconds", f->seconds);
  cJSON_AddNumberToObject(o, "count", f->left < 0 ? 0 : (double)f->left);
  cJSON_AddNumberToObject(o, "hits", (double)f->hits);
  return o;
}

/* ---- arming ------------------------------------------------------------- */

/* Applies one action object. Returns 0 and a NEW JSON answer in *ans, or
 * KL_EINVAL and a NEW message in *err. */
static int apply_action(kl_apiserver *s, faults *fs, const cJSON *a,
                        char **ans, char **err) {
  const cJSON *act = cJSON_GetObjectItemCaseSensitive(a, "action");
  if (!cJSON_IsString(act)) {
    *err = kl_strdup("fault: \"action\" (a string) is required");
    return KL_EINVAL;
  }
  const char *name = act->valuestring;
  if (!strcmp(name, "close_watches")) {
    pthread_mutex_lock(&fs->mu);
    fs->close_gen++;
    long n = fs->open_watches;
    pthread_mutex_unlock(&fs->mu);
    /* the engine ends the streams now, even those blocked waiting for an
     * event (the generation above only covers bytes already produced) */
    kl_as_close_watches(s);
    *ans = kl_sprintf("{\"action\":\"close_watches\",\"watches\":%ld}", n);
    return 0;
  }
  if (!strcmp(name, "compact")) {
    uint64_t rv = kl_as_current_rv(s);
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(a, "resourceVersion");
    if (cJSON_IsString(want)) rv = strtoull(want->valuestring, NULL, 10);
    else if (cJSON_IsNumber(want)) rv = (uint64_t)want->valuedouble;
    kl_as_compact(s, rv);
    *ans = kl_sprintf("{\"action\":\"compact\",\"oldestResourceVersion\":"
                      "\"%llu\"}",
                      (unsigned long long)kl_as_oldest_rv(s));
    return 0;
  }
  int kind = 0;
  for (int k = F_FAIL; k <= F_MALFORMED; k++)
    if (!strcmp(name, kind_names[k])) kind = k;
  if (!kind) {
    *err = kl_sprintf("fault: unknown action \"%s\" (close_watches, compact, "
                      "fail, delay, cut_watch, malformed_watch)", name);
    return KL_EINVAL;
  }
  fault f = {0};
  f.kind = kind;
  f.watch = -1;
  f.left = 1;
  const cJSON *path = cJSON_GetObjectItemCaseSensitive(a, "path");
  const cJSON *method = cJSON_GetObjectItemCaseSensitive(a, "method");
  const cJSON *watch = cJSON_GetObjectItemCaseSensitive(a, "watch");
  const cJSON *count = cJSON_GetObjectItemCaseSensitive(a, "count");
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(a, "code");
  const cJSON *ra = cJSON_GetObjectItemCaseSensitive(a, "retryAfterSeconds");
  const cJSON *secs = cJSON_GetObjectItemCaseSensitive(a, "seconds");
  const cJSON *msg = cJSON_GetObjectItemCaseSensitive(a, "message");
  if ((path && !cJSON_IsString(path)) || (method && !cJSON_IsString(method)) ||
      (watch && !cJSON_IsBool(watch)) || (count && !cJSON_IsNumber(count)) ||
      (code && !cJSON_IsNumber(code)) || (ra && !cJSON_IsNumber(ra)) ||
      (secs && !cJSON_IsNumber(secs)) || (msg && !cJSON_IsString(msg))) {
    *err = kl_sprintf("fault %s: path, method and message are strings, watch "
                      "a boolean, count, code, retryAfterSeconds and seconds "
                      "numbers", name);
    return KL_EINVAL;
  }
  if (count) f.left = count->valuedouble <= 0 ? -1 : (long)count->valuedouble;
  if (kind == F_FAIL) {
    f.code = code ? code->valueint : 500;
    if (f.code < 400 || f.code > 599) {
      *err = kl_sprintf("fault fail: code %d is not an HTTP error status",
                        f.code);
      return KL_EINVAL;
    }
    f.retry_after = ra ? ra->valueint : (f.code == 429 ? 1 : 0);
    if (f.retry_after < 0) f.retry_after = 0;
  }
  if (kind == F_DELAY) {
    f.seconds = secs ? secs->valuedouble : 1;
    if (f.seconds < 0 || f.seconds > 3600) {
      *err = kl_strdup("fault delay: seconds must be between 0 and 3600");
      return KL_EINVAL;
    }
  }
  f.path = kl_strdup(path ? path->valuestring : "");
  f.method = method && method->valuestring[0] ? kl_strdup(method->valuestring)
                                              : NULL;
  f.message = msg ? kl_strdup(msg->valuestring) : NULL;
  if (watch) f.watch = cJSON_IsTrue(watch);
  pthread_mutex_lock(&fs->mu);
  f.id = ++fs->next_id;
  if (fs->n == fs->cap) {
    fs->cap = fs->cap ? fs->cap * 2 : 8;
    fs->v = kl_realloc(fs->v, fs->cap * sizeof *fs->v);
  }
  fs->v[fs->n++] = f;
  cJSON *j = fault_json(&f);
  pthread_mutex_unlock(&fs->mu);
  *ans = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return 0;
}

/* Applies a JSON action or array of actions; for --faults and POST. */
static int apply_text(kl_apiserver *s, faults *fs, const char *text, size_t n,
                      char **ans, char **err) {
  cJSON *t = cJSON_ParseWithLength(text, n);
  if (!t || (!cJSON_IsObject(t) && !cJSON_IsArray(t))) {
    cJSON_Delete(t);
    *err = kl_strdup("fault: the body must be a JSON object (or an array of "
                     "them) with an \"action\"");
    return KL_EINVAL;
  }
  int rc = 0;
  if (cJSON_IsObject(t)) {
    rc = apply_action(s, fs, t, ans, err);
  } else {
    kl_buf b = KL_BUF_INIT;
    kl_buf_addc(&b, '[');
    const cJSON *a;
    cJSON_ArrayForEach(a, t) {
      char *one = NULL;
      if ((rc = apply_action(s, fs, a, &one, err))) break;
      if (b.len > 1) kl_buf_addc(&b, ',');
      kl_buf_adds(&b, one);
      free(one);
    }
    kl_buf_addc(&b, ']');
    if (rc) kl_buf_free(&b);
    else *ans = kl_buf_detach(&b, NULL);
  }
  cJSON_Delete(t);
  return rc;
}

/* ---- hooks -------------------------------------------------------------- */

int kl_as_faults_init(kl_apiserver *s, const char *spec, char **err) {
  if (!spec || !strcmp(spec, "off") || !strcmp(spec, "false") ||
      !strcmp(spec, "0"))
    return 0;
  faults *fs = kl_calloc(1, sizeof *fs);
  pthread_mutex_init(&fs->mu, NULL);
  *kl_as_hook_slot(s, KL_AS_HOOK_FAULTS) = fs;
  if (spec[0] == '{' || spec[0] == '[') {
    char *ans = NULL, *e = NULL;
    if (apply_text(s, fs, spec, strlen(spec), &ans, &e)) {
      if (err) *err = kl_sprintf("--faults: %s", e);
      free(e);
      kl_as_faults_free(s);
      return KL_EINVAL;
    }
    free(ans);
  } else if (strcmp(spec, "on") && strcmp(spec, "true") && strcmp(spec, "1")) {
    if (err)
      *err = kl_sprintf("--faults: expected on, off or a JSON action, got "
                        "'%s'", spec);
    kl_as_faults_free(s);
    return KL_EINVAL;
  }
  return 0;
}

void kl_as_faults_free(kl_apiserver *s) {
  faults *fs = state(s);
  if (!fs) return;
  for (size_t i = 0; i < fs->n; i++) fault_free(&fs->v[i]);
  free(fs->v);
  pthread_mutex_destroy(&fs->mu);
  free(fs);
  *kl_as_hook_slot(s, KL_AS_HOOK_FAULTS) = NULL;
}

static bool peer_is_loopback(const kl_as_http_req *req) {
  if (!req->conn) return false;
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
      req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (!ci || !ci->client_addr) return false;
  const struct sockaddr *sa = ci->client_addr;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a)) return true;
    return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
  }
  return false;
}

static void admin(kl_apiserver *s, faults *fs, const kl_as_http_req *req,
                  kl_as_reply *rep) {
  if (!peer_is_loopback(req)) {
    reply_status(rep, 403, "Forbidden",
                 "the fault-injection endpoint only answers loopback clients",
                 0);
    return;
  }
  if (!strcmp(req->method, "GET")) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "faults");
    pthread_mutex_lock(&fs->mu);
    for (size_t i = 0; i < fs->n; i++)
      cJSON_AddItemToArray(arr, fault_json(&fs->v[i]));
    cJSON_AddNumberToObject(o, "openWatches", (double)fs->open_watches);
    pthread_mutex_unlock(&fs->mu);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    reply_json(rep, 200, txt);
    return;
  }
  if (!strcmp(req->method, "DELETE")) {
    const char *id = kl_as_req_query(req, "id");
    long want = id ? strtol(id, NULL, 10) : 0;
    long removed = 0;
    pthread_mutex_lock(&fs->mu);
    size_t k = 0;
    for (size_t i = 0; i < fs->n; i++) {
      if (!id || fs->v[i].id == want) {
        fault_free(&fs->v[i]);
        removed++;
      } else {
        fs->v[k++] = fs->v[i];
      }
    }
    fs->n = k;
    pthread_mutex_unlock(&fs->mu);
    if (id && !removed) {
      reply_status(rep, 404, "NotFound", "no armed fault has this id", 0);
      return;
    }
    reply_json(rep, 200, kl_sprintf("{\"removed\":%ld}", removed));
    return;
  }
  if (!strcmp(req->method, "POST")) {
    char *ans = NULL, *err = NULL;
    if (apply_text(s, fs, req->body ? req->body : "", req->body_len, &ans,
                   &err)) {
      reply_status(rep, 400, "BadRequest", err, 0);
      free(err);
      return;
    }
    reply_json(rep, 200, ans);
    return;
  }
  reply_status(rep, 405, "MethodNotAllowed",
               "the fault-injection endpoint takes GET, POST and DELETE", 0);
}

static bool matches(const fault *f, const char *method, const char *path,
                    bool is_watch) {
  if (f->left == 0) return false;
  if (strncmp(path, f->path, strlen(f->path))) return false;
  if (f->method && strcasecmp(f->method, method)) return false;
  if (f->watch >= 0 && f->watch != (int)is_watch) return false;
  return true;
}

static bool is_watch_req(const kl_as_http_req *req) {
  const char *w = kl_as_req_query(req, "watch");
  return w && (!strcmp(w, "1") || !strcasecmp(w, "true"));
}

/* Takes one trigger of the first armed fault of this kind matching; copies
 * it to *out (strings borrowed only under the lock, so copied). */
static bool take(faults *fs, int kind, const char *method, const char *path,
                 bool is_watch, fault *out) {
  bool hit = false;
  pthread_mutex_lock(&fs->mu);
  for (size_t i = 0; i < fs->n; i++) {
    fault *f = &fs->v[i];
    if (f->kind != kind || !matches(f, method, path, is_watch)) continue;
    if (f->left > 0) f->left--;
    f->hits++;
    *out = *f;
    out->path = NULL;
    out->method = NULL;
    out->message = f->message ? kl_strdup(f->message) : NULL;
    hit = true;
    break;
  }
  pthread_mutex_unlock(&fs->mu);
  return hit;
}

bool kl_as_faults_handle(kl_apiserver *s, const kl_as_http_req *req,
                         kl_as_reply *rep) {
  faults *fs = state(s);
  if (!fs) return false;
  if (!strcmp(req->path, ADMIN_PATH)) {
    admin(s, fs, req, rep);
    return true;
  }
  bool w = is_watch_req(req);
  fault f;
  if (take(fs, F_DELAY, req->method, req->path, w, &f)) {
    struct timespec ts = {(time_t)f.seconds,
                          (long)((f.seconds - (double)(time_t)f.seconds) *
                                 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
    free(f.message);
  }
  if (take(fs, F_FAIL, req->method, req->path, w, &f)) {
    reply_status(rep, f.code, reason_for(f.code),
                 f.message ? f.message : message_for(f.code), f.retry_after);
    free(f.message);
    return true;
  }
  return false;
}

/* ---- watch streams -------------------------------------------------------- */

void *kl_as_faults_watch_open(kl_apiserver *s, const kl_as_http_req *req) {
  faults *fs = state(s);
  if (!fs) return NULL;
  fwatch *w = kl_calloc(1, sizeof *w);
  w->path = kl_strdup(req->path ? req->path : "");
  pthread_mutex_lock(&fs->mu);
  w->gen = fs->close_gen;
  fs->open_watches++;
  pthread_mutex_unlock(&fs->mu);
  return w;
}

bool kl_as_faults_watch_alive(kl_apiserver *s, void *fw) {
  faults *fs = state(s);
  fwatch *w = fw;
  if (!fs || !w) return true;
  pthread_mutex_lock(&fs->mu);
  bool ok = w->gen == fs->close_gen;
  pthread_mutex_unlock(&fs->mu);
  return ok;
}

int kl_as_faults_watch_bytes(kl_apiserver *s, void *fw, kl_buf *out) {
  faults *fs = state(s);
  fwatch *w = fw;
  if (!fs || !w || !out->len) return KL_AS_FW_SEND;
  fault f;
  if (take(fs, F_CUT, "GET", w->path, true, &f)) {
    free(f.message);
    /* keep half of the first event line, then drop the connection */
    const char *nl = memchr(out->data, '\n', out->len);
    size_t ev = nl ? (size_t)(nl - out->data) : out->len;
    out->len = ev > 1 ? ev / 2 : 1;
    out->data[out->len] = 0;
    return KL_AS_FW_ABORT;
  }
  if (take(fs, F_MALFORMED, "GET", w->path, true, &f)) {
    free(f.message);
    static const char bad[] = "{\"type\":\"MODIFIED\",\"object\":{\"kind\":"
                              "\"Injected\",malformed}\n";
    kl_buf b = KL_BUF_INIT;
    kl_buf_add(&b, bad, sizeof bad - 1);
    kl_buf_add(&b, out->data, out->len);
    kl_buf_free(out);
    *out = b;
  }
  return KL_AS_FW_SEND;
}

void kl_as_faults_watch_close(kl_apiserver *s, void *fw) {
  fwatch *w = fw;
  if (!w) return;
  faults *fs = state(s);
  if (fs) {
    pthread_mutex_lock(&fs->mu);
    fs->open_watches--;
    pthread_mutex_unlock(&fs->mu);
  }
  free(w->path);
  free(w);
}
