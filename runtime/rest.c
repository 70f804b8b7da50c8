/* rest.c: the libcurl-based REST client. Each request borrows an (easy,
 * multi) pair from a pool: the multi keeps that pair's connections alive
 * for reuse, and driving it with curl_multi_poll in 50 ms slices lets a
 * stop flag take effect promptly. DNS and TLS sessions are shared through a
 * curl share handle with locks. */
#include "rest.h"
#include "metrics.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_MS 50

#if defined(__x86_64__)
#define KL_ARCH "amd64"
#elif defined(__aarch64__)
#define KL_ARCH "arm64"
#elif defined(__i386__)
#define KL_ARCH "386"
#else
#define KL_ARCH "unknown"
#endif

/* ---- rate limiter ------------------------------------------------------ */

void kl_ratelimit_init(kl_ratelimit *rl, double qps, int burst, double now) {
  pthread_mutex_init(&rl->mu, NULL);
  rl->qps = qps;
  rl->burst = burst > 0 ? burst : 1;
  rl->tokens = rl->burst;
  rl->last = now;
}

void kl_ratelimit_destroy(kl_ratelimit *rl) { pthread_mutex_destroy(&rl->mu); }

static void rl_refill(kl_ratelimit *rl, double now) {
  if (now > rl->last) {
    rl->tokens += (now - rl->last) * rl->qps;
    if (rl->tokens > rl->burst) rl->tokens = rl->burst;
    rl->last = now;
  }
}

double kl_ratelimit_reserve(kl_ratelimit *rl, double now) {
  if (rl->qps <= 0) return 0;
  pthread_mutex_lock(&rl->mu);
  rl_refill(rl, now);
  rl->tokens -= 1;
  double wait = rl->tokens >= 0 ? 0 : -rl->tokens / rl->qps;
  pthread_mutex_unlock(&rl->mu);
  return wait;
}

double kl_ratelimit_tokens(kl_ratelimit *rl, double now) {
  pthread_mutex_lock(&rl->mu);
  if (rl->qps > 0) rl_refill(rl, now);
  double t = rl->tokens;
  pthread_mutex_unlock(&rl->mu);
  return t;
}

/* ---- client ------------------------------------------------------------ */

typedef struct rconn {
  CURL *easy;
  CURLM *multi;
  struct rconn *next;
} rconn;

struct kl_rest {
  char *server, *namespace;
  char *url_base;    /* scheme://host[:port] used in URLs (tls-server-name) */
  char *connect_to;  /* CURLOPT_CONNECT_TO entry, or NULL */
  char *host_header; /* "Host: ..." when connect_to is used */
  bool https;
  bool insecure;
  char *ca_data;
  size_t ca_len;
  char *proxy_url;
  char *user_agent;
  double timeout_s, max_retry_wait_s;
  int max_retries;
  kl_creds *creds;
  kl_ratelimit rl;
  CURLSH *share;
  pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
  pthread_mutex_t pool_mu;
  rconn *pool;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a,
                       void *ud) {
  (void)h, (void)a;
  kl_rest *c = ud;
  pthread_mutex_lock(&c->share_mu[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *ud) {
  (void)h;
  kl_rest *c = ud;
  pthread_mutex_unlock(&c->share_mu[d]);
}

/* Splits "https://host:port/prefix" into its parts. */
static int split_server(const char *server, char **scheme, char **host,
                        int *port, char **rest) {
  const char *p = strstr(server, "://");
  if (!p) return KL_EINVAL;
  *scheme = kl_strndup(server, (size_t)(p - server));
  p += 3;
  const char *hs = p, *he;
  if (*p == '[') {
    he = strchr(p, ']');
    if (!he) return KL_EINVAL;
    he++;
    p = he;
  } else {
    while (*p && *p != ':' && *p != '/') p++;
    he = p;
  }
  *host = kl_strndup(hs, (size_t)(he - hs));
  *port = strcmp(*scheme, "https") ? 80 : 443;
  if (*p == ':') {
    *port = atoi(p + 1);
    p++;
    while (*p >= '0' && *p <= '9') p++;
  }
  *rest = kl_strdup(p);
  return 0;
}

int kl_rest_new(const kl_kubeconfig *kc, const kl_rest_opts *opts,
                kl_rest **out, char **err) {
  kl_rest_opts none = {0};
  if (!opts) opts = &none;
  *out = NULL;
  *err = NULL;
  pthread_once(&curl_once, curl_init_once);
  char *scheme = NULL, *host = NULL, *rest = NULL;
  int port = 0;
  if (split_server(kc->server, &scheme, &host, &port, &rest) != 0) {
    free(scheme);
    *err = kl_sprintf("%s: context \"%s\": server \"%s\" is not a URL",
                      kc->source, kc->context, kc->server);
    return KL_EINVAL;
  }
  kl_rest *c = kl_calloc(1, sizeof *c);
  c->server = kl_strdup(kc->server);
  c->namespace = kl_strdup(kc->namespace ? kc->namespace : "default");
  c->https = !strcmp(scheme, "https");
  if (kc->tls_server_name && c->https) {
    /* libcurl has no SNI override: put the TLS name in the URL (SNI and
     * certificate check use it), connect to the real host with CONNECT_TO,
     * and send the real Host header. */
    const char *tn = kc->tls_server_name;
    bool v6 = strchr(tn, ':') != NULL;
    c->url_base = kl_sprintf("https://%s%s%s:%d%s", v6 ? "[" : "", tn,
                             v6 ? "]" : "", port, rest);
    char *h = host;
    size_t hl = strlen(h);
    char *bare = (h[0] == '[' && hl > 2) ? kl_strndup(h + 1, hl - 2)
                                         : kl_strdup(h);
    c->connect_to = kl_sprintf("%s:%d:%s%s%s:%d", tn, port,
                               strchr(bare, ':') ? "[" : "", bare,
                               strchr(bare, ':') ? "]" : "", port);
    free(bare);
    c->host_header = kl_sprintf("Host: %s:%d", host, port);
  } else {
    c->url_base = kl_strdup(kc->server);
  }
  free(scheme);
  free(host);
  free(rest);
  c->insecure = kc->insecure;
  if (kc->ca_data) {
    c->ca_data = kl_malloc(kc->ca_len + 1);
    memcpy(c->ca_data, kc->ca_data, kc->ca_len);
    c->ca_data[kc->ca_len] = '\0';
    c->ca_len = kc->ca_len;
  }
  c->proxy_url = kc->proxy_url ? kl_strdup(kc->proxy_url) : NULL;
  c->user_agent = opts->user_agent
                      ? kl_strdup(opts->user_agent)
                      : kl_strdup("klua/" KL_VERSION " (linux/" KL_ARCH ")");
  c->timeout_s = opts->timeout_s > 0 ? opts->timeout_s : 60;
  c->max_retries = opts->max_retries == 0 ? 5
                   : opts->max_retries < 0 ? 0 : opts->max_retries;
  c->max_retry_wait_s = opts->max_retry_wait_s > 0 ? opts->max_retry_wait_s
                                                   : 30;
  c->creds = kl_creds_new(kc);
  kl_ratelimit_init(&c->rl, opts->qps == 0 ? 50 : opts->qps,
                    opts->burst > 0 ? opts->burst : 100, kl_now());
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_init(&c->share_mu[i], NULL);
  pthread_mutex_init(&c->pool_mu, NULL);
  c->share = curl_share_init();
  curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
  curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  if (!c->https && (kc->token || kc->token_file || kc->exec || kc->username))
    kl_log(KL_LOG_WARN, "rest", "server %s is plain http: credentials of "
           "user \"%s\" (%s) will not be sent, as kubectl does", c->server,
           kc->user_name ? kc->user_name : "", kc->source);
  *out = c;
  return 0;
}

void kl_rest_free(kl_rest *c) {
  if (!c) return;
  while (c->pool) {
    rconn *r = c->pool;
    c->pool = r->next;
    curl_multi_cleanup(r->multi);
    curl_easy_cleanup(r->easy);
    free(r);
  }
  curl_share_cleanup(c->share);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_destroy(&c->share_mu[i]);
  pthread_mutex_destroy(&c->pool_mu);
  kl_ratelimit_destroy(&c->rl);
  kl_creds_free(c->creds);
  free(c->server);
  free(c->namespace);
  free(c->url_base);
  free(c->connect_to);
  free(c->host_header);
  free(c->ca_data);
  free(c->proxy_url);
  free(c->user_agent);
  free(c);
}

const char *kl_rest_server(const kl_rest *c) { return c->server; }
const char *kl_rest_namespace(const kl_rest *c) { return c->namespace; }
kl_ratelimit *kl_rest_ratelimit(kl_rest *c) { return &c->rl; }

void kl_rest_resp_free(kl_rest_resp *r) {
  if (!r) return;
  kl_buf_free(&r->body);
  memset(r, 0, sizeof *r);
  r->retry_after_s = -1;
}

void kl_rest_error_free(kl_rest_error *e) {
  if (!e) return;
  kl_status_free(&e->status);
  free(e->message);
  memset(e, 0, sizeof *e);
  e->retry_after_s = -1;
}

static rconn *pool_get(kl_rest *c) {
  pthread_mutex_lock(&c->pool_mu);
  rconn *r = c->pool;
  if (r) c->pool = r->next;
  pthread_mutex_unlock(&c->pool_mu);
  if (!r) {
    r = kl_calloc(1, sizeof *r);
    r->easy = curl_easy_init();
    r->multi = curl_multi_init();
    if (!r->easy || !r->multi) {
      fprintf(stderr, "klua: libcurl initialisation failed\n");
      abort();
    }
  }
  return r;
}

static void pool_put(kl_rest *c, rconn *r) {
  pthread_mutex_lock(&c->pool_mu);
  r->next = c->pool;
  c->pool = r;
  pthread_mutex_unlock(&c->pool_mu);
}

static void rconn_discard(rconn *r) {
  curl_multi_cleanup(r->multi);
  curl_easy_cleanup(r->easy);
  free(r);
}

/* Sleeps up to s seconds in slices, returning early (false) on stop. */
static bool nap(double s, const atomic_int *stop) {
  double until = kl_now() + s;
  for (;;) {
    if (stop && atomic_load(stop)) return false;
    double left = until - kl_now();
    if (left <= 0) return true;
    double d = left < POLL_MS / 1000.0 ? left : POLL_MS / 1000.0;
    struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
    nanosleep(&ts, NULL);
  }
}

/* Per-transfer state seen by the curl callbacks. */
typedef struct xfer {
  CURL *easy;
  const kl_rest_req *req;
  kl_rest_resp *resp;
  int cb_rc;        /* on_data's or on_flush's abort code */
  long code;        /* status of the final response */
  bool unflushed;   /* on_data got bytes since the last on_flush */
} xfer;

#define MAX_ERROR_BODY (1u << 20)

static size_t on_write(char *p, size_t sz, size_t nm, void *ud) {
  xfer *x = ud;
  size_t n = sz * nm;
  if (!x->code) curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->code);
  if (x->req->on_data && x->code >= 200 && x->code < 300) {
    x->unflushed = true;
    int rc = x->req->on_data(p, n, x->req->ud);
    if (rc) {
      x->cb_rc = rc;
      return 0;
    }
    return n;
  }
  if (x->req->on_data && x->resp->body.len + n > MAX_ERROR_BODY) return n;
  kl_buf_add(&x->resp->body, p, n);
  return n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud) {
  xfer *x = ud;
  size_t n = sz * nm;
  if (n >= 5 && !strncmp(p, "HTTP/", 5)) { /* a new response starts */
    x->resp->content_type[0] = '\0';
    x->resp->retry_after_s = -1;
    x->code = 0;
    return n;
  }
  const char *colon = memchr(p, ':', n);
  if (!colon) return n;
  size_t kl = (size_t)(colon - p);
  const char *v = colon + 1, *end = p + n;
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
    end--;
  size_t vl = (size_t)(end - v);
  if (kl == 12 && !strncasecmp(p, "Content-Type", 12)) {
    if (vl >= sizeof x->resp->content_type)
      vl = sizeof x->resp->content_type - 1;
    memcpy(x->resp->content_type, v, vl);
    x->resp->content_type[vl] = '\0';
  } else if (kl == 11 && !strncasecmp(p, "Retry-After", 11)) {
    char tmp[32];
    if (vl > 0 && vl < sizeof tmp) {
      memcpy(tmp, v, vl);
      tmp[vl] = '\0';
      char *e = NULL;
      long s = strtol(tmp, &e, 10);
      if (e && !*e && s >= 0) x->resp->retry_after_s = s > 86400 ? 86400 : (int)s;
    }
  }
  return n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                       curl_off_t un) {
  (void)dt, (void)dn, (void)ut, (void)un;
  xfer *x = ud;
  return x->req->stop && atomic_load(x->req->stop) ? 1 : 0;
}

/* Runs one HTTP exchange. Returns 0 (any HTTP status) or a negative code
 * with a NEW transport message in *msg. */
static int perform(kl_rest *c, rconn *r, const kl_rest_req *req,
                   const char *url, const kl_cred *cred, kl_rest_resp *resp,
                   char **msg, bool *broken) {
  CURL *e = r->easy;
  curl_easy_reset(e);
  xfer x = {e, req, resp, 0, 0, false};
  char errbuf[CURL_ERROR_SIZE];
  errbuf[0] = '\0';
  const char *method = req->method ? req->method : "GET";
  struct curl_slist *hdrs = NULL, *ct = NULL;
  char *h;

  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_SHARE, c->share);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  double to = req->timeout_s == 0 ? c->timeout_s : req->timeout_s;
  if (to > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(to * 1000));
  if (req->idle_timeout_s > 0) {
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)req->idle_timeout_s);
  }
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &x);
  curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(e, CURLOPT_XFERINFODATA, &x);

  if (req->body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)req->body_len);
    h = kl_sprintf("Content-Type: %s", req->content_type
                                           ? req->content_type
                                           : "application/json");
    hdrs = curl_slist_append(hdrs, h);
    free(h);
    hdrs = curl_slist_append(hdrs, "Expect:");
  }
  if (strcmp(method, "GET") || req->body)
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  h = kl_sprintf("Accept: %s", req->accept ? req->accept : "application/json");
  hdrs = curl_slist_append(hdrs, h);
  free(h);

  if (c->https) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
    if (c->ca_data && !c->insecure) {
      struct curl_blob b = {c->ca_data, c->ca_len, CURL_BLOB_COPY};
      curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
      curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
      curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
    }
    if (cred->cert_data && cred->key_data) {
      struct curl_blob cb = {cred->cert_data, cred->cert_len, CURL_BLOB_COPY};
      struct curl_blob kb = {cred->key_data, cred->key_len, CURL_BLOB_COPY};
      curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cb);
      curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
      curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &kb);
      curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (cred->token) {
      h = kl_sprintf("Authorization: Bearer %s", cred->token);
      hdrs = curl_slist_append(hdrs, h);
      size_t hl = strlen(h);
      memset(h, 0, hl);
      free(h);
    } else if (cred->username && cred->password) {
      curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
      curl_easy_setopt(e, CURLOPT_USERNAME, cred->username);
      curl_easy_setopt(e, CURLOPT_PASSWORD, cred->password);
    }
    if (c->connect_to) {
      ct = curl_slist_append(NULL, c->connect_to);
      curl_easy_setopt(e, CURLOPT_CONNECT_TO, ct);
      hdrs = curl_slist_append(hdrs, c->host_header);
    }
  }
  if (c->proxy_url) curl_easy_setopt(e, CURLOPT_PROXY, c->proxy_url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);

  int rc = 0;
  CURLcode res = CURLE_OK;
  bool done = false, stopped = false;
  curl_multi_add_handle(r->multi, e);
  while (!done) {
    int running = 0;
    CURLMcode mc = curl_multi_perform(r->multi, &running);
    if (mc != CURLM_OK) {
      *msg = kl_sprintf("%s %s: %s", method, url, curl_multi_strerror(mc));
      rc = KL_EIO;
      *broken = true;
      break;
    }
    if (x.unflushed && !x.cb_rc) { /* what this round read, handed on */
      x.unflushed = false;
      int frc = req->on_flush ? req->on_flush(req->ud) : 0;
      if (frc) {
        x.cb_rc = frc;
        res = CURLE_WRITE_ERROR;
        break;
      }
    }
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(r->multi, &left)))
      if (m->msg == CURLMSG_DONE && m->easy_handle == e) {
        res = m->data.result;
        done = true;
      }
    if (done) break;
    if (req->stop && atomic_load(req->stop)) {
      stopped = true;
      break;
    }
    curl_multi_poll(r->multi, NULL, 0, POLL_MS, NULL);
  }
  curl_multi_remove_handle(r->multi, e);
  curl_slist_free_all(hdrs);
  curl_easy_setopt(e, CURLOPT_CONNECT_TO, NULL);
  curl_slist_free_all(ct);
  /* drop the copies libcurl made of key material */
  curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, NULL);
  curl_easy_setopt(e, CURLOPT_PASSWORD, NULL);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
  if (rc) return rc;
  if (stopped || res == CURLE_ABORTED_BY_CALLBACK) {
    *broken = true;
    *msg = kl_sprintf("%s %s: stopped", method, url);
    return KL_ECLOSED;
  }
  long code = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  resp->status = (int)code;
  if (res == CURLE_WRITE_ERROR && x.cb_rc) {
    *broken = true;
    *msg = kl_sprintf("%s %s: aborted by the stream consumer: %s", method,
                      url, kl_strerror(x.cb_rc));
    return x.cb_rc;
  }
  if (res != CURLE_OK) {
    *broken = true;
    const char *hint = "";
    if (res == CURLE_PEER_FAILED_VERIFICATION)
      hint = c->ca_data ? " (TLS verification failed: the server certificate "
                          "is not signed by the configured "
                          "certificate-authority, or does not match the "
                          "server name)"
                        : " (TLS verification failed: no "
                          "certificate-authority is configured for this "
                          "cluster and the system trust store does not "
                          "accept the server certificate)";
    *msg = kl_sprintf("%s %s: %s%s%s%s", method, url, curl_easy_strerror(res),
                      errbuf[0] ? ": " : "", errbuf, hint);
    if (res == CURLE_OPERATION_TIMEDOUT) return KL_ETIMEDOUT;
    return KL_EIO;
  }
  return 0;
}

static bool is_idempotent(const char *m) {
  return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "OPTIONS");
}

/* rest_client_requests_total{code,method,host}: every attempt, as client-go
 * counts them ("<error>" when no HTTP answer came). */
static void count_request(const kl_rest *c, const char *method, int status) {
  char code[16], host[256];
  if (status > 0)
    snprintf(code, sizeof code, "%d", status);
  else
    snprintf(code, sizeof code, "<error>");
  const char *h = strstr(c->server, "://");
  h = h ? h + 3 : c->server;
  snprintf(host, sizeof host, "%.*s", (int)strcspn(h, "/"), h);
  kl_counter_inc(kl_metric_withv(kl_std_metrics_get()->rest_requests_total,
                                 code, method, host));
}

int kl_rest_do(kl_rest *c, const kl_rest_req *req, kl_rest_resp *resp,
               kl_rest_error *err) {
  memset(resp, 0, sizeof *resp);
  resp->retry_after_s = -1;
  if (err) {
    memset(err, 0, sizeof *err);
    err->retry_after_s = -1;
  }
  const char *method = req->method ? req->method : "GET";
  kl_buf url = KL_BUF_INIT;
  kl_buf_adds(&url, c->url_base);
  kl_buf_adds(&url, req->path ? req->path : "/");
  if (req->query && *req->query) {
    kl_buf_addc(&url, '?');
    kl_buf_adds(&url, req->query);
  }
  /* the URL shown in messages is the configured server's */
  char *shown = kl_sprintf("%s%s%s%s", c->server, req->path ? req->path : "/",
                           req->query && *req->query ? "?" : "",
                           req->query && *req->query ? req->query : "");
  int rc = 0, retries = 0;
  bool refreshed = false;
  char *msg = NULL;
  for (;;) {
    kl_rest_resp_free(resp);
    double wait = kl_ratelimit_reserve(&c->rl, kl_now());
    if (wait > 0 && !nap(wait, req->stop)) {
      msg = kl_sprintf("%s %s: stopped", method, shown);
      rc = KL_ECLOSED;
      break;
    }
    kl_cred cred;
    char *cerr = NULL;
    rc = kl_creds_get(c->creds, &cred, &cerr);
    if (rc) {
      msg = kl_sprintf("%s %s: getting credentials: %s", method, shown, cerr);
      free(cerr);
      break;
    }
    rconn *r = pool_get(c);
    bool broken = false;
    char *tmsg = NULL;
    rc = perform(c, r, req, url.data, &cred, resp, &tmsg, &broken);
    count_request(c, method, rc ? 0 : resp->status);
    uint64_t gen = cred.generation;
    kl_cred_clear(&cred);
    if (broken) {
      rconn_discard(r); /* its connection state is unknown */
    } else {
      pool_put(c, r);
    }
    if (rc) {
      /* rewrite the internal URL (tls-server-name) into the shown one */
      msg = tmsg ? kl_sprintf("%s", tmsg) : NULL;
      if (msg && strcmp(url.data, shown)) {
        char *p = strstr(msg, url.data);
        if (p) {
          char *m2 = kl_sprintf("%.*s%s%s", (int)(p - msg), msg, shown,
                                p + url.len);
          free(msg);
          msg = m2;
        }
      }
      free(tmsg);
      break;
    }
    free(tmsg);
    int st = resp->status;
    if (st == 401 && !refreshed && kl_creds_invalidate(c->creds, gen)) {
      refreshed = true;
      kl_log(KL_LOG_INFO, "rest", "%s %s: 401 Unauthorized; refreshing "
             "credentials and retrying once", method, shown);
      continue;
    }
    bool retryable = st == 429 || st >= 500;
    double delay = -1;
    if (retryable && resp->retry_after_s >= 0) delay = resp->retry_after_s;
    else if ((st == 429 || st == 503) && is_idempotent(method)) delay = 1;
    if (delay >= 0 && !req->no_retry && retries < c->max_retries ) {
      retries++;
      if (delay > c->max_retry_wait_s) delay = c->max_retry_wait_s;
      kl_log(KL_LOG_DEBUG, "rest", "%s %s: %d, retrying in %.0f s (%d/%d)",
             method, shown, st, delay, retries, c->max_retries);
      if (!nap(delay, req->stop)) {
        msg = kl_sprintf("%s %s: stopped", method, shown);
        rc = KL_ECLOSED;
        break;
      }
      continue;
    }
    break;
  }
  if (!rc && (resp->status < 200 || resp->status >= 300)) {
    rc = resp->status == 410 ? KL_EGONE : KL_EHTTP;
    if (err) {
      char ra[16];
      snprintf(ra, sizeof ra, "%d", resp->retry_after_s);
      kl_status_from_http(resp->status, method, resp->body.data,
                          resp->body.len,
                          resp->retry_after_s >= 0 ? ra : NULL, &err->status);
      char *desc = kl_status_format(&err->status);
      msg = kl_sprintf("%s %s: %s", method, shown, desc);
      free(desc);
    }
  }
  if (err) {
    err->http_status = rc ? resp->status : 0;
    err->retry_after_s = resp->retry_after_s;
    if (rc && err->http_status == 0) kl_status_free(&err->status);
    err->message = rc ? (msg ? msg : kl_sprintf("%s %s: %s", method, shown,
                                                kl_strerror(rc)))
                      : NULL;
    if (!rc) free(msg);
  } else {
    free(msg);
  }
  kl_buf_free(&url);
  free(shown);
  return rc;
}

/* ---- URL building ------------------------------------------------------ */

static void pct_encode(kl_buf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char ch = *p;
    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
        (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
        ch == '~') {
      kl_buf_addc(b, (char)ch);
    } else {
      kl_buf_addc(b, '%');
      kl_buf_addc(b, hex[ch >> 4]);
      kl_buf_addc(b, hex[ch & 15]);
    }
  }
}

void kl_rest_query_add(kl_buf *q, const char *key, const char *value) {
  if (q->len) kl_buf_addc(q, '&');
  pct_encode(q, key);
  kl_buf_addc(q, '=');
  pct_encode(q, value ? value : "");
}

void kl_rest_path_add(kl_buf *path, const char *segment) {
  kl_buf_addc(path, '/');
  pct_encode(path, segment);
}
