/* apiserver_http.c: the libmicrohttpd glue of the local API server: routing,
 * query parsing, authentication, TLS, content negotiation, responses and
 * watch streaming. One thread per connection (MHD_USE_THREAD_PER_CONNECTION),
 * so a watch's content callback may block on the engine's condvar. */
#include <microhttpd.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "apiserver.h"
#include "json.h"
#include "manifest.h"
#include "protobuf.h"

int kl__as_http_start(kl_apiserver *s, void **http, int *port, char **err);
void kl__as_http_stop(void *http);

typedef struct conn_ctx {
  kl_buf body;
  bool too_big;
  const char *url; /* borrowed from libmicrohttpd for the request */
} conn_ctx;

static const char *hdr(struct MHD_Connection *c, const char *k) {
  const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, k);
  return v ? v : "";
}

static const char *qp(struct MHD_Connection *c, const char *k) {
  return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, k);
}

const char *kl_as_req_query(const kl_as_http_req *req, const char *key) {
  return req && req->conn ? qp(req->conn, key) : NULL;
}

static bool qbool(struct MHD_Connection *c, const char *k) {
  const char *v = qp(c, k);
  return v && (!strcmp(v, "1") || !strcasecmp(v, "true"));
}

static enum MHD_Result send_bytes(struct MHD_Connection *c, int code,
                                  const char *ctype, const char *body,
                                  size_t n, int retry_after) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(resp, "Content-Type", ctype);
  MHD_add_response_header(resp, "Cache-Control", "no-cache, private");
  if (retry_after > 0) {
    char b[16];
    snprintf(b, sizeof b, "%d", retry_after);
    MHD_add_response_header(resp, "Retry-After", b);
  }
  enum MHD_Result rc = MHD_queue_response(c, (unsigned)code, resp);
  MHD_destroy_response(resp);
  return rc;
}

/* Sends b's bytes without copying them: the response takes the buffer
 * (b is left empty) and frees it once sent. */
static enum MHD_Result send_json(struct MHD_Connection *c, int code,
                                 kl_buf *b, int retry_after) {
  if (!b->len || b->data[b->len - 1] != '\n') kl_buf_addc(b, '\n');
  size_t n;
  char *data = kl_buf_detach(b, &n);
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(n, data, MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header(resp, "Content-Type", "application/json");
  MHD_add_response_header(resp, "Cache-Control", "no-cache, private");
  if (retry_after > 0) {
    char rb[16];
    snprintf(rb, sizeof rb, "%d", retry_after);
    MHD_add_response_header(resp, "Retry-After", rb);
  }
  enum MHD_Result rc = MHD_queue_response(c, (unsigned)code, resp);
  MHD_destroy_response(resp);
  return rc;
}

static enum MHD_Result send_result(struct MHD_Connection *c,
                                   kl_as_result *r) {
  return send_json(c, r->code, &r->body, r->retry_after);
}

static enum MHD_Result send_text404(struct MHD_Connection *c) {
  static const char m[] = "404 page not found\n";
  return send_bytes(c, 404, "text/plain; charset=utf-8", m, sizeof m - 1, 0);
}

static enum MHD_Result send_status(struct MHD_Connection *c, int code,
                                   const char *reason, const char *msg,
                                   const char *details) {
  kl_as_result r = KL_AS_RESULT_INIT;
  kl_as_status(&r, code, reason, msg, details);
  enum MHD_Result rc = send_result(c, &r);
  kl_as_result_free(&r);
  return rc;
}

/* ---- content negotiation ----------------------------------------------- */

/* Returns KL_AS_OUT_* for Accept, or -1 when nothing acceptable. */
static int negotiate(const char *accept, bool discovery) {
  if (!accept || !*accept) return KL_AS_OUT_FULL;
  int best = -1;
  const char *p = accept;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    char *m = kl_strndup(p, n);
    char *t = m;
    while (*t == ' ') t++;
    bool json = !strncmp(t, "application/json", 16) ||
                !strncmp(t, "*/*", 3) || !strncmp(t, "application/*", 13) ||
                !strncmp(t, "application/yaml", 16) ||
                !strncmp(t, "application/vnd.kubernetes.protobuf", 35);
    int kind = -1;
    if (json) {
      if (strstr(t, "as=Table"))
        kind = discovery ? -1 : KL_AS_OUT_TABLE;
      else if (strstr(t, "as=PartialObjectMetadata"))
        kind = discovery ? -1 : KL_AS_OUT_METADATA;
      else if (strstr(t, "as="))
        kind = -1; /* e.g. APIGroupDiscoveryList */
      else
        kind = KL_AS_OUT_FULL;
    }
    free(m);
    if (kind >= 0 && best < 0) best = kind;
    if (!e) break;
    p = e + 1;
  }
  return best;
}

static enum MHD_Result send_406(struct MHD_Connection *c) {
  return send_status(c, 406, "NotAcceptable",
                     "only the following media types are accepted: "
                     "application/json, application/yaml, "
                     "application/vnd.kubernetes.protobuf",
                     NULL);
}

/* ---- watch streaming ----------------------------------------------------- */

typedef struct watch_ctx {
  kl_as_watch *w;
  struct MHD_Connection *c;
  kl_buf out;
  size_t off;
  kl_apiserver *s;
  void *fw;  /* fault-injection state of this stream */
  int after; /* KL_AS_FW_* once out is sent */
} watch_ctx;

static bool conn_alive(void *ud) {
  watch_ctx *wc = ud;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(wc->c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!ci) return false;
  char b;
  ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return false;
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
    return false;
  return kl_as_faults_watch_alive(wc->s, wc->fw);
}

static ssize_t watch_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  watch_ctx *wc = cls;
  while (wc->off >= wc->out.len) {
    if (wc->after == KL_AS_FW_END) return MHD_CONTENT_READER_END_OF_STREAM;
    if (wc->after == KL_AS_FW_ABORT) return MHD_CONTENT_READER_END_WITH_ERROR;
    wc->out.len = 0;
    wc->off = 0;
    if (!kl_as_faults_watch_alive(wc->s, wc->fw) ||
        !kl_as_watch_next(wc->w, &wc->out, conn_alive, wc))
      return MHD_CONTENT_READER_END_OF_STREAM;
    wc->after = kl_as_faults_watch_bytes(wc->s, wc->fw, &wc->out);
  }
  size_t n = wc->out.len - wc->off;
  if (n > max) n = max;
  memcpy(buf, wc->out.data + wc->off, n);
  wc->off += n;
  return (ssize_t)n;
}

static void watch_free(void *cls) {
  watch_ctx *wc = cls;
  kl_as_watch_close(wc->w);
  kl_as_faults_watch_close(wc->s, wc->fw);
  kl_buf_free(&wc->out);
  free(wc);
}

static enum MHD_Result start_watch(kl_apiserver *s, struct MHD_Connection *c,
                                   kl_as_watch *w, const conn_ctx *cc) {
  watch_ctx *wc = kl_calloc(1, sizeof *wc);
  wc->w = w;
  wc->c = c;
  wc->s = s;
  kl_as_http_req req = {"GET", cc->url ? cc->url : "", hdr(c, "Accept"),
                        "", hdr(c, "User-Agent"), NULL, 0, c};
  wc->fw = kl_as_faults_watch_open(s, &req);
  /* a watch may be quiet for longer than the idle timeout: it ends by its
   * own timeoutSeconds instead */
  MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
  struct MHD_Response *resp = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, 32 * 1024, watch_reader, wc, watch_free);
  MHD_add_response_header(resp, "Content-Type", "application/json");
  MHD_add_response_header(resp, "Cache-Control", "no-cache, private");
  enum MHD_Result rc = MHD_queue_response(c, 200, resp);
  MHD_destroy_response(resp);
  return rc;
}

/* ---- request handling ---------------------------------------------------- */

typedef struct route {
  char *segs[12];
  int n;
} route;

static void split_path(const char *url, route *rt) {
  rt->n = 0;
  const char *p = url;
  while (*p && rt->n < 12) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    rt->segs[rt->n++] = kl_strndup(p, n);
    p += n;
  }
}

static void route_free(route *rt) {
  for (int i = 0; i < rt->n; i++) free(rt->segs[i]);
}

/* Parses a create/update body into a NEW tree; or answers and returns
 * NULL (with *answered = rc). */
static cJSON *decode_body(struct MHD_Connection *c, const kl_as_resource *res,
                          const conn_ctx *cc, enum MHD_Result *answered) {
  const char *ct = hdr(c, "Content-Type");
  const char *body = cc->body.data ? cc->body.data : "";
  size_t n = cc->body.len;
  cJSON *t = NULL;
  char *err = NULL;
  if (!strncmp(ct, KL_PROTOBUF_CONTENT_TYPE,
               strlen(KL_PROTOBUF_CONTENT_TYPE))) {
    int rc = kl_protobuf_decode(body, n, &t, &err);
    if (rc == KL_EINVAL) {
      *answered = send_status(c, 415, "UnsupportedMediaType",
                              "the body of the request was in an unknown "
                              "format - accepted media types include: "
                              "application/json, application/yaml",
                              NULL);
      free(err);
      return NULL;
    }
    if (rc) {
      *answered = send_status(c, 400, "BadRequest",
                              err ? err : "malformed protobuf body", NULL);
      free(err);
      return NULL;
    }
    return t;
  }
  if (!strncmp(ct, "application/yaml", 16)) {
    if (kl_manifest_parse_one(body, n, &t, &err)) {
      *answered = send_status(c, 400, "BadRequest", err ? err : "bad YAML",
                              NULL);
      free(err);
      return NULL;
    }
    return t;
  }
  if (ct[0] && strncmp(ct, "application/json", 16) && strncmp(ct, "*/*", 3)) {
    *answered = send_status(c, 415, "UnsupportedMediaType",
                            "the body of the request was in an unknown format "
                            "- accepted media types include: "
                            "application/json, application/yaml, "
                            "application/vnd.kubernetes.protobuf",
                            NULL);
    return NULL;
  }
  t = cJSON_ParseWithLength(body, n);
  if (!t || !cJSON_IsObject(t)) {
    cJSON_Delete(t);
    char *m = kl_sprintf("the object provided is unrecognized (must be of "
                         "type %s): couldn't get version/kind; json parse "
                         "error: unexpected end of JSON input (%.30s ...)",
                         res->kind, body);
    *answered = send_status(c, 400, "BadRequest", m, NULL);
    free(m);
    return NULL;
  }
  return t;
}

static void fill_opts(struct MHD_Connection *c, kl_as_opts *o) {
  memset(o, 0, sizeof *o);
  o->label_selector = qp(c, "labelSelector");
  o->field_selector = qp(c, "fieldSelector");
  o->resource_version = qp(c, "resourceVersion");
  o->rv_match = qp(c, "resourceVersionMatch");
  o->cont = qp(c, "continue");
  const char *l = qp(c, "limit");
  o->limit = l ? strtol(l, NULL, 10) : 0;
  o->allow_bookmarks = qbool(c, "allowWatchBookmarks");
  o->send_initial_events = qbool(c, "sendInitialEvents");
  const char *to = qp(c, "timeoutSeconds");
  o->timeout_seconds = to ? strtol(to, NULL, 10) : 0;
  const char *dr = qp(c, "dryRun");
  o->dry_run = dr && !strcmp(dr, "All");
  o->force = qbool(c, "force");
  o->field_manager = qp(c, "fieldManager");
  o->user_agent = hdr(c, "User-Agent");
  o->propagation = qp(c, "propagationPolicy");
  o->accept = hdr(c, "Accept");
  o->include_object = qp(c, "includeObject");
}

static int patch_type(const char *ct) {
  if (!strncmp(ct, "application/merge-patch+json", 28)) return KL_AS_PATCH_MERGE;
  if (!strncmp(ct, "application/json-patch+json", 27)) return KL_AS_PATCH_JSON;
  if (!strncmp(ct, "application/strategic-merge-patch+json", 38))
    return KL_AS_PATCH_STRATEGIC;
  if (!strncmp(ct, "application/apply-patch+yaml", 28)) return KL_AS_PATCH_APPLY;
  return 0;
}

static enum MHD_Result not_allowed(struct MHD_Connection *c) {
  return send_status(c, 405, "MethodNotAllowed",
                     "the server does not allow this method on the "
                     "requested resource",
                     "{}");
}

static enum MHD_Result serve_resource(kl_apiserver *s,
                                      struct MHD_Connection *c,
                                      const char *method, const char *group,
                                      const char *version, char **rest,
                                      int nrest, conn_ctx *cc) {
  const char *ns = "", *plural, *name = NULL, *sub = NULL;
  if (nrest >= 3 && !strcmp(rest[0], "namespaces") &&
      strcmp(rest[2], "status") && strcmp(rest[2], "finalize")) {
    ns = rest[1];
    rest += 2;
    nrest -= 2;
  }
  plural = rest[0];
  if (nrest >= 2) name = rest[1];
  if (nrest >= 3) sub = rest[2];
  kl_as_resource *res = kl_as_find(s, group, version, plural);
  if (!res || nrest > 3 || (ns[0] && !res->namespaced) ||
      (sub && !(!strcmp(sub, "status") && res->has_status) &&
       !(!strcmp(sub, "scale") && res->has_scale))) {
    if (group[0] && !res) return send_text404(c);
    return send_status(c, 404, "NotFound",
                       "the server could not find the requested resource",
                       "{}");
  }
  if (name && res->namespaced && !ns[0])
    return send_status(c, 404, "NotFound",
                       "the server could not find the requested resource",
                       "{}");
  kl_as_opts o;
  fill_opts(c, &o);
  int out = negotiate(o.accept, false);
  if (out < 0) {
    return send_status(c, 406, "NotAcceptable", "406: Not Acceptable", "{}");
  }
  o.output = out;
  kl_as_result r = KL_AS_RESULT_INIT;
  enum MHD_Result rc = MHD_YES;
  bool answered = false;
  cJSON *body = NULL;
  if (!name) {
    if (!strcmp(method, "GET")) {
      if (qbool(c, "watch")) {
        kl_as_watch *w = NULL;
        if (kl_as_watch_open(s, res, ns, &o, &w, &r) == 0) {
          rc = start_watch(s, c, w, cc);
          answered = true;
        }
      } else {
        kl_as_list(s, res, ns, &o, &r);
      }
    } else if (!strcmp(method, "POST")) {
      body = decode_body(c, res, cc, &rc);
      if (!body) answered = true;
      else kl_as_create(s, res, ns, body, &o, &r);
    } else if (!strcmp(method, "DELETE")) {
      if (cc->body.len) body = cJSON_ParseWithLength(cc->body.data, cc->body.len);
      kl_as_delete_collection(s, res, ns, body, &o, &r);
    } else {
      rc = not_allowed(c);
      answered = true;
    }
  } else if (!strcmp(method, "GET")) {
    kl_as_get(s, res, ns, name, sub, &o, &r);
  } else if (!strcmp(method, "PUT")) {
    body = decode_body(c, res, cc, &rc);
    if (!body) answered = true;
    else kl_as_update(s, res, ns, name, sub, body, &o, &r);
  } else if (!strcmp(method, "PATCH")) {
    int pt = patch_type(hdr(c, "Content-Type"));
    if (!pt) {
      rc = send_status(c, 415, "UnsupportedMediaType",
                       "415: Unsupported Media Type", "{}");
      answered = true;
    } else {
      kl_as_patch(s, res, ns, name, sub, pt,
                  cc->body.data ? cc->body.data : "", cc->body.len, &o, &r);
    }
  } else if (!strcmp(method, "DELETE") && !sub) {
    if (cc->body.len) body = cJSON_ParseWithLength(cc->body.data, cc->body.len);
    kl_as_delete(s, res, ns, name, body, &o, &r);
  } else {
    rc = not_allowed(c);
    answered = true;
  }
  if (!answered) rc = send_result(c, &r);
  kl_as_result_free(&r);
  cJSON_Delete(body);
  return rc;
}

static bool authorized(kl_apiserver *s, struct MHD_Connection *c) {
  const char *tok = kl_as_server_opts(s)->token;
  if (!tok || !*tok) return true;
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                              "Authorization");
  if (!h || strlen(h) < 7 || strncasecmp(h, "Bearer ", 7)) return false;
  const char *a = strchr(h, ' ') + 1;
  /* constant-time compare */
  size_t la = strlen(a), lt = strlen(tok);
  unsigned char diff = (unsigned char)(la != lt);
  for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ tok[i % lt]);
  return diff == 0;
}

static enum MHD_Result dispatch(kl_apiserver *s, struct MHD_Connection *c,
                                const char *url, const char *method,
                                conn_ctx *cc) {
  cc->url = url;
  bool health = !strcmp(url, "/version") || !strncmp(url, "/healthz", 8) ||
                !strncmp(url, "/livez", 6) || !strncmp(url, "/readyz", 7);
  if (!authorized(s, c) && !(health && !hdr(c, "Authorization")[0]))
    return send_status(c, 401, "Unauthorized", "Unauthorized", NULL);
  kl_as_http_req req = {method, url, hdr(c, "Accept"),
                        hdr(c, "Content-Type"), hdr(c, "User-Agent"),
                        cc->body.data, cc->body.len, c};
  kl_as_reply rep = {0, NULL, KL_BUF_INIT, 0};
  if (kl_as_faults_handle(s, &req, &rep) ||
      (!strncmp(url, "/openapi/", 9) && kl_as_openapi_handle(s, &req, &rep))) {
    enum MHD_Result rc;
    const char *ct = rep.content_type ? rep.content_type : "application/json";
    if (!strcmp(ct, "application/json"))
      rc = send_json(c, rep.code ? rep.code : 200, &rep.body, rep.retry_after);
    else
      rc = send_bytes(c, rep.code ? rep.code : 200, ct,
                      rep.body.data ? rep.body.data : "", rep.body.len,
                      rep.retry_after);
    kl_buf_free(&rep.body);
    return rc;
  }
  kl_buf_free(&rep.body);
  if (cc->too_big) {
    char *m = kl_sprintf("Request entity too large: limit is %zu",
                         kl_as_server_opts(s)->max_body_bytes);
    enum MHD_Result rc =
        send_status(c, 413, "RequestEntityTooLarge", m, NULL);
    free(m);
    return rc;
  }
  if (!strcmp(url, "/version")) {
    const char *v = kl_as_version_json();
    return send_bytes(c, 200, "application/json", v, strlen(v), 0);
  }
  if (health) return send_bytes(c, 200, "text/plain; charset=utf-8", "ok", 2, 0);
  route rt;
  split_path(url, &rt);
  enum MHD_Result rc;
  kl_as_result r = KL_AS_RESULT_INIT;
  bool disc = rt.n >= 1 && rt.n <= 3 &&
              (!strcmp(rt.segs[0], "apis") ||
               (!strcmp(rt.segs[0], "api") && rt.n <= 2));
  if (disc && negotiate(hdr(c, "Accept"), true) < 0) {
    rc = send_406(c);
  } else if (rt.n == 1 && !strcmp(rt.segs[0], "api")) {
    kl_as_discovery_api(s, hdr(c, "Host"), &r);
    rc = send_result(c, &r);
  } else if (rt.n == 2 && !strcmp(rt.segs[0], "api")) {
    kl_as_discovery_resources(s, "", rt.segs[1], &r);
    rc = r.code == 404 ? send_text404(c) : send_result(c, &r);
  } else if (rt.n == 1 && !strcmp(rt.segs[0], "apis")) {
    kl_as_discovery_groups(s, &r);
    rc = send_result(c, &r);
  } else if (rt.n == 2 && !strcmp(rt.segs[0], "apis")) {
    kl_as_discovery_group(s, rt.segs[1], &r);
    rc = r.code == 404 ? send_text404(c) : send_result(c, &r);
  } else if (rt.n == 3 && !strcmp(rt.segs[0], "apis")) {
    kl_as_discovery_resources(s, rt.segs[1], rt.segs[2], &r);
    rc = r.code == 404 ? send_text404(c) : send_result(c, &r);
  } else if (rt.n >= 3 && !strcmp(rt.segs[0], "api") &&
             !strcmp(rt.segs[1], "v1")) {
    rc = serve_resource(s, c, method, "", "v1", rt.segs + 2, rt.n - 2, cc);
  } else if (rt.n >= 4 && !strcmp(rt.segs[0], "apis")) {
    rc = serve_resource(s, c, method, rt.segs[1], rt.segs[2], rt.segs + 3,
                        rt.n - 3, cc);
  } else {
    rc = send_text404(c);
  }
  kl_as_result_free(&r);
  route_free(&rt);
  return rc;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c,
                               const char *url, const char *method,
                               const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
  (void)version;
  kl_apiserver *s = cls;
  conn_ctx *cc = *con_cls;
  if (!cc) {
    cc = kl_calloc(1, sizeof *cc);
    *con_cls = cc;
    return MHD_YES;
  }
  if (*upload_size) {
    size_t max = kl_as_server_opts(s)->max_body_bytes;
    if (cc->too_big || cc->body.len + *upload_size > max) {
      cc->too_big = true;
      kl_buf_free(&cc->body);
    } else {
      kl_buf_add(&cc->body, upload, *upload_size);
    }
    *upload_size = 0;
    return MHD_YES;
  }
  return dispatch(s, c, url, method, cc);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)c, (void)toe;
  conn_ctx *cc = *con_cls;
  if (!cc) return;
  kl_buf_free(&cc->body);
  free(cc);
  *con_cls = NULL;
}

static char *read_file(const char *path, char **err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (err) *err = kl_sprintf("%s: %s", path, strerror(errno));
    return NULL;
  }
  kl_buf b = KL_BUF_INIT;
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) kl_buf_add(&b, tmp, n);
  fclose(f);
  if (!b.data) kl_buf_adds(&b, "");
  return kl_buf_detach(&b, NULL);
}

typedef struct http_state {
  struct MHD_Daemon *d;
  char *cert, *key;
} http_state;

int kl__as_http_start(kl_apiserver *s, void **http, int *port, char **err) {
  const kl_apiserver_opts *o = kl_as_server_opts(s);
  const char *listen = o->listen;
  const char *colon = strrchr(listen, ':');
  if (!colon) {
    if (err) *err = kl_sprintf("--listen %s: expected HOST:PORT", listen);
    return KL_EINVAL;
  }
  char *host = kl_strndup(listen, (size_t)(colon - listen));
  if (host[0] == '[') {
    size_t l = strlen(host);
    memmove(host, host + 1, l);
    if (l >= 2 && host[l - 2] == ']') host[l - 2] = 0;
  }
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int gai = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
  free(host);
  if (gai) {
    if (err) *err = kl_sprintf("--listen %s: %s", listen, gai_strerror(gai));
    return KL_EINVAL;
  }
  http_state *h = kl_calloc(1, sizeof *h);
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION |
                   MHD_USE_INTERNAL_POLLING_THREAD;
  if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  if (o->tls_cert && o->tls_key) {
    h->cert = read_file(o->tls_cert, err);
    if (!h->cert) goto fail;
    h->key = read_file(o->tls_key, err);
    if (!h->key) goto fail;
    flags |= MHD_USE_TLS;
  }
  struct MHD_OptionItem opts[10];
  int k = 0;
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr};
  /* Idle connections (a client that connects and sends nothing, or keeps a
   * keep-alive connection open) are closed after idle_timeout, so they
   * cannot pile up and starve new clients of threads; watch streams turn
   * the timeout off for their connection (start_watch). */
  const kl_apiserver_opts *so = kl_as_server_opts(s);
  unsigned idle = so->idle_timeout ? so->idle_timeout : 60;
  unsigned maxc = so->max_connections ? so->max_connections : 1024;
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, idle, NULL};
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, maxc, NULL};
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED,
                                      (intptr_t)completed, NULL};
  if (h->cert) {
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->key};
  }
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
  h->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, s,
                          MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
  freeaddrinfo(ai);
  ai = NULL;
  if (!h->d) {
    if (err)
      *err = kl_sprintf("cannot listen on %s%s", listen,
                        h->cert ? " (check the TLS certificate and key)" : "");
    goto fail;
  }
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  *port = di ? di->port : 0;
  *http = h;
  return 0;
fail:
  if (ai) freeaddrinfo(ai);
  free(h->cert);
  free(h->key);
  free(h);
  return KL_EIO;
}

void kl__as_http_stop(void *http) {
  http_state *h = http;
  if (!h) return;
  MHD_stop_daemon(h->d);
  free(h->cert);
  free(h->key);
  free(h);
}
