/* http_endpoints.c: /metrics, /healthz, /readyz over libmicrohttpd (see
 * http_endpoints.h). Answers follow controller-runtime's pkg/healthz:
 * "ok" when every check passes; otherwise 500 with one "[+]name ok" /
 * "[-]name failed: reason withheld" line per check and "<which> check
 * failed"; /<which>/<name> runs one check and shows its reason. */
#include "http_endpoints.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct check {
  char *name;
  kl_health_check_fn fn;
  void *ud;
} check;

typedef struct checklist {
  check *v;
  size_t n, cap;
} checklist;

enum { SERVE_METRICS = 1, SERVE_PROBES = 2 };

typedef struct server {
  struct MHD_Daemon *d;
  int port;
  int serves;
  kl_http_endpoints *e;
} server;

struct kl_http_endpoints {
  kl_metrics *reg;
  pthread_mutex_t mu; /* guards the check lists */
  checklist healthz, readyz;
  server srv[2];
  int nsrv;
  int metrics_port, probe_port;
};

bool kl_http_addr_off(const char *addr) {
  return !addr || !*addr || strcmp(addr, "0") == 0;
}

/* Splits "host:port" (host may be empty or [v6]). Returns 0 with NEW
 * *host ("" for every interface) and the port, or KL_EINVAL. */
static int split_addr(const char *addr, char **host, int *port, char **err) {
  const char *colon = strrchr(addr, ':');
  char *end = NULL;
  long p = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || colon[1] == 0 || *end || p < 0 || p > 65535) {
    if (err)
      *err = kl_sprintf("bind address \"%s\": expected [HOST]:PORT "
                        "(\":8080\", \"127.0.0.1:8080\") or \"0\" to turn "
                        "it off", addr);
    return KL_EINVAL;
  }
  size_t hl = (size_t)(colon - addr);
  if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']')
    *host = kl_strndup(addr + 1, hl - 2);
  else if (memchr(addr, ':', hl)) {
    if (err)
      *err = kl_sprintf("bind address \"%s\": write IPv6 hosts in brackets "
                        "([::1]:8080)", addr);
    return KL_EINVAL;
  } else
    *host = kl_strndup(addr, hl);
  *port = (int)p;
  return 0;
}

int kl_http_addr_validate(const char *addr, char **err) {
  if (kl_http_addr_off(addr)) return 0;
  char *host = NULL;
  int port;
  int rc = split_addr(addr, &host, &port, err);
  free(host);
  return rc;
}

/* ---- checks --------------------------------------------------------- */

static int ping(void *ud, char **reason) {
  (void)ud;
  (void)reason;
  return 0;
}

static bool valid_check_name(const char *s) {
  if (!s || !*s) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
      return false;
  return true;
}

static int add_check(kl_http_endpoints *e, checklist *l, const char *name,
                     kl_health_check_fn fn, void *ud) {
  if (!valid_check_name(name) || !fn) return KL_EINVAL;
  pthread_mutex_lock(&e->mu);
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i].name, name) == 0) {
      pthread_mutex_unlock(&e->mu);
      return KL_EEXIST;
    }
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 4;
    l->v = kl_realloc(l->v, l->cap * sizeof *l->v);
  }
  l->v[l->n++] = (check){kl_strdup(name), fn, ud};
  pthread_mutex_unlock(&e->mu);
  return 0;
}

int kl_http_endpoints_add_healthz(kl_http_endpoints *e, const char *name,
                                  kl_health_check_fn fn, void *ud) {
  return add_check(e, &e->healthz, name, fn, ud);
}

int kl_http_endpoints_add_readyz(kl_http_endpoints *e, const char *name,
                                 kl_health_check_fn fn, void *ud) {
  return add_check(e, &e->readyz, name, fn, ud);
}

int kl_http_endpoints_run_checks(kl_http_endpoints *e, const char *which,
                                 const char *name, bool verbose,
                                 kl_buf *out) {
  checklist *l = strcmp(which, "readyz") == 0 ? &e->readyz : &e->healthz;
  /* copy the list: checks run without the lock (they may be slow) */
  pthread_mutex_lock(&e->mu);
  size_t n = l->n;
  check *cs = kl_malloc((n ? n : 1) * sizeof *cs);
  for (size_t i = 0; i < n; i++) {
    cs[i] = l->v[i];
    cs[i].name = kl_strdup(l->v[i].name);
  }
  pthread_mutex_unlock(&e->mu);

  int code = 200;
  if (name) {
    size_t i;
    for (i = 0; i < n && strcmp(cs[i].name, name) != 0; i++) {
    }
    if (i == n) {
      kl_buf_adds(out, "404 page not found\n");
      code = 404;
    } else {
      char *reason = NULL;
      int rc = cs[i].fn(cs[i].ud, &reason);
      if (rc == 0) {
        kl_buf_adds(out, "ok");
      } else {
        kl_buf_addf(out, "internal server error: %s\n",
                    reason ? reason : kl_strerror(rc));
        code = 500;
      }
      free(reason);
    }
  } else {
    kl_buf lines = KL_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
      char *reason = NULL;
      int rc = cs[i].fn(cs[i].ud, &reason);
      if (rc == 0) {
        kl_buf_addf(&lines, "[+]%s ok\n", cs[i].name);
      } else {
        kl_buf_addf(&lines, "[-]%s failed: reason withheld\n", cs[i].name);
        kl_log(KL_LOG_INFO, "health", "%s check %s failed: %s", which,
               cs[i].name, reason ? reason : kl_strerror(rc));
        code = 500;
      }
      free(reason);
    }
    if (code != 200 || verbose) {
      if (lines.len) kl_buf_add(out, lines.data, lines.len);
      kl_buf_addf(out, "%s check %s\n", which,
                  code == 200 ? "passed" : "failed");
    } else {
      kl_buf_adds(out, "ok");
    }
    kl_buf_free(&lines);
  }
  for (size_t i = 0; i < n; i++) free(cs[i].name);
  free(cs);
  return code;
}

/* ---- HTTP ----------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, int code,
                             const char *ctype, kl_buf *body) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      body->len, body->data ? body->data : (void *)"", MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(r, "Content-Type", ctype);
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, r);
  MHD_destroy_response(r);
  return ret;
}

/* "?verbose" has no value, so look for the key itself. */
static enum MHD_Result find_verbose(void *cls, enum MHD_ValueKind kind,
                                    const char *key, const char *value) {
  (void)kind;
  (void)value;
  if (key && strcmp(key, "verbose") == 0) *(bool *)cls = true;
  return MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c,
                               const char *url, const char *method,
                               const char *version, const char *upload,
                               size_t *upload_len, void **con_cls) {
  (void)version;
  (void)upload;
  server *s = cls;
  if (*con_cls == NULL) { /* first call: headers only */
    *con_cls = s;
    return MHD_YES;
  }
  if (*upload_len) { /* ignore request bodies */
    *upload_len = 0;
    return MHD_YES;
  }
  kl_buf body = KL_BUF_INIT;
  const char *text = "text/plain; charset=utf-8";
  enum MHD_Result ret;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    kl_buf_adds(&body, "405 method not allowed\n");
    ret = reply(c, 405, text, &body);
  } else if ((s->serves & SERVE_METRICS) && strcmp(url, "/metrics") == 0) {
    kl_metrics_expose(s->e->reg, &body);
    ret = reply(c, 200, KL_METRICS_CONTENT_TYPE, &body);
  } else if ((s->serves & SERVE_PROBES) &&
             (strncmp(url, "/healthz", 8) == 0 ||
              strncmp(url, "/readyz", 7) == 0)) {
    const char *which = url[1] == 'h' ? "healthz" : "readyz";
    const char *rest = url + 1 + strlen(which);
    const char *name = NULL;
    int code;
    if (*rest == '/' && rest[1]) {
      name = rest + 1;
    } else if (*rest && strcmp(rest, "/") != 0) {
      which = NULL;
    }
    if (!which) {
      kl_buf_adds(&body, "404 page not found\n");
      code = 404;
    } else {
      bool verbose = false;
      MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, find_verbose,
                                &verbose);
      code = kl_http_endpoints_run_checks(s->e, which, name, verbose, &body);
    }
    ret = reply(c, code, text, &body);
  } else {
    kl_buf_adds(&body, "404 page not found\n");
    ret = reply(c, 404, text, &body);
  }
  kl_buf_free(&body);
  return ret;
}

static int start_server(server *s, const char *addr, char **err) {
  char *host = NULL;
  int port;
  int rc = split_addr(addr, &host, &port, err);
  if (rc) return rc;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION |
                   MHD_USE_INTERNAL_POLLING_THREAD;
  if (!*host) {
    /* every interface: IPv6 dual stack, IPv4 only as a fallback */
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    a6->sin6_family = AF_INET6;
    a6->sin6_addr = in6addr_any;
    a6->sin6_port = htons((uint16_t)port);
    s->d = MHD_start_daemon(flags | MHD_USE_DUAL_STACK, (uint16_t)port, NULL,
                            NULL, handler, s, MHD_OPTION_SOCK_ADDR, &ss,
                            MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                            MHD_OPTION_END);
    if (!s->d) {
      struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
      memset(&ss, 0, sizeof ss);
      a4->sin_family = AF_INET;
      a4->sin_addr.s_addr = htonl(INADDR_ANY);
      a4->sin_port = htons((uint16_t)port);
      s->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handler, s,
                              MHD_OPTION_SOCK_ADDR, &ss,
                              MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                              MHD_OPTION_END);
    }
  } else {
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int gai = getaddrinfo(host, ps, &hints, &ai);
    if (gai) {
      if (err)
        *err = kl_sprintf("bind address \"%s\": %s", addr, gai_strerror(gai));
      free(host);
      return KL_EINVAL;
    }
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handler, s,
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
  }
  free(host);
  if (!s->d) {
    if (err)
      *err = kl_sprintf("cannot listen on \"%s\" (address in use or not "
                        "local?)", addr);
    return KL_EIO;
  }
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di ? di->port : 0;
  return 0;
}

int kl_http_endpoints_start(const kl_http_endpoints_opts *opts,
                            kl_http_endpoints **out, char **err) {
  *out = NULL;
  if (err) *err = NULL;
  const char *maddr = opts ? opts->metrics_addr : NULL;
  const char *paddr = opts ? opts->probe_addr : NULL;
  int rc = kl_http_addr_validate(maddr, err);
  if (rc == 0) rc = kl_http_addr_validate(paddr, err);
  if (rc) return rc;
  kl_http_endpoints *e = kl_calloc(1, sizeof *e);
  e->reg = opts && opts->registry ? opts->registry : kl_metrics_default();
  pthread_mutex_init(&e->mu, NULL);
  add_check(e, &e->healthz, "ping", ping, NULL);
  add_check(e, &e->readyz, "ping", ping, NULL);
  bool m_on = !kl_http_addr_off(maddr), p_on = !kl_http_addr_off(paddr);
  /* the same address (and not a free-port request) shares one server */
  bool same = m_on && p_on && strcmp(maddr, paddr) == 0 &&
              strcmp(strrchr(maddr, ':'), ":0") != 0;
  const char *addrs[2];
  int serves[2];
  if (same) {
    addrs[e->nsrv] = maddr;
    serves[e->nsrv++] = SERVE_METRICS | SERVE_PROBES;
  } else {
    if (m_on) {
      addrs[e->nsrv] = maddr;
      serves[e->nsrv++] = SERVE_METRICS;
    }
    if (p_on) {
      addrs[e->nsrv] = paddr;
      serves[e->nsrv++] = SERVE_PROBES;
    }
  }
  for (int i = 0; i < e->nsrv; i++) {
    e->srv[i].e = e;
    e->srv[i].serves = serves[i];
    rc = start_server(&e->srv[i], addrs[i], err);
    if (rc) {
      e->nsrv = i;
      kl_http_endpoints_free(e);
      return rc;
    }
    if (serves[i] & SERVE_METRICS) e->metrics_port = e->srv[i].port;
    if (serves[i] & SERVE_PROBES) e->probe_port = e->srv[i].port;
  }
  *out = e;
  return 0;
}

int kl_http_endpoints_metrics_port(const kl_http_endpoints *e) {
  return e ? e->metrics_port : 0;
}

int kl_http_endpoints_probe_port(const kl_http_endpoints *e) {
  return e ? e->probe_port : 0;
}

static void free_list(checklist *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i].name);
  free(l->v);
}

void kl_http_endpoints_free(kl_http_endpoints *e) {
  if (!e) return;
  for (int i = 0; i < e->nsrv; i++)
    if (e->srv[i].d) MHD_stop_daemon(e->srv[i].d);
  free_list(&e->healthz);
  free_list(&e->readyz);
  pthread_mutex_destroy(&e->mu);
  free(e);
}
