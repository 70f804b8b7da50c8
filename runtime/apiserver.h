/* apiserver.h: klua's local Kubernetes API server (`klua serve`; embedded by
 * `klua dev` and tests). Two layers: the engine (apiserver.c: resources,
 * storage, resourceVersions, history, watch fan-out, write semantics; no
 * HTTP) and the HTTP glue (apiserver_http.c, libmicrohttpd). The hook files
 * apiserver_faults.c, apiserver_openapi.c and apiserver_table.c plug in
 * through the functions declared at the end.
 * Thread-safety: every function may be called from any thread; storage reads
 * run concurrently, writes are serialised by one lock (one global RV). */
#ifndef KL_APISERVER_H
#define KL_APISERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kl.h"
#include "object.h"

typedef struct kl_apiserver kl_apiserver;

/* Server options; zero values pick the defaults shown. Strings are copied. */
typedef struct kl_apiserver_opts {
  const char *listen;       /* "host:port"; NULL: "127.0.0.1:8001"; port 0
                               picks a free one (see kl_apiserver_port) */
  const char *token;        /* NULL: no authentication; else every request
                               needs "Authorization: Bearer <token>" */
  const char *tls_cert;     /* PEM files; both set: HTTPS */
  const char *tls_key;
  size_t history;           /* changes kept for watch/continue: 10000 */
  double bookmark_interval; /* seconds between BOOKMARKs: 60 */
  size_t max_body_bytes;    /* larger request bodies get 413: 3 MiB */
  unsigned idle_timeout;    /* seconds an idle connection (no request in
                               flight; watch streams excepted) is kept: 60 */
  unsigned max_connections; /* connections served at once (one thread
                               each); more are refused: 1024 */
  const char *faults;       /* --faults argument, handed to the faults hook */
} kl_apiserver_opts;

/* Creates a server with the built-in resources and the namespaces default,
 * kube-system, kube-public and kube-node-lease (not listening yet).
 * Returns 0 and a NEW server in *out, or KL_EINVAL with a NEW message. */
int kl_apiserver_new(const kl_apiserver_opts *opts, kl_apiserver **out,
                     char **err);
/* Loads manifests (file or directory, YAML or JSON; see manifest.h) and
 * creates every object, CRDs first come first. Missing namespaces are
 * created. Returns 0, or KL_EINVAL/KL_EIO with a NEW message naming the file
 * and the document. */
int kl_apiserver_seed(kl_apiserver *s, const char *path, char **err);
/* State files (`klua serve --state-file`): every stored object of every
 * resource (CRDs, namespaces, custom resources) plus the global
 * resourceVersion, as JSON lines (format in apiserver.c).
 * save writes path atomically (path.tmp, fsync, rename) from a consistent
 * snapshot; any thread, any time. Returns 0 or KL_EIO + NEW message.
 * load replaces the whole state with the file's: call it after
 * kl_apiserver_new and before seeding and kl_apiserver_start. New writes get
 * resourceVersions above the saved one; the history starts empty, so watches
 * and continue tokens from older RVs get 410 Expired. Objects a later
 * kl_apiserver_seed finds existing are left as loaded. Returns 0,
 * KL_ENOENT when the file does not exist (state untouched), or KL_EIO /
 * KL_EINVAL with a NEW message naming the file (and line or object); after
 * KL_EINVAL the state may be partly loaded: free the server. */
int kl_apiserver_save_state(kl_apiserver *s, const char *path, char **err);
int kl_apiserver_load_state(kl_apiserver *s, const char *path, char **err);
/* Starts listening (threads of its own). Returns 0 or KL_EIO + message. */
int kl_apiserver_start(kl_apiserver *s, char **err);
/* The bound port (after start), and the base URL (borrowed, valid until
 * free): "http://127.0.0.1:PORT" or "https://...". */
int kl_apiserver_port(const kl_apiserver *s);
const char *kl_apiserver_url(const kl_apiserver *s);
/* Stops listening and ends every watch; idempotent. */
void kl_apiserver_stop(kl_apiserver *s);
/* Stops (if needed) and frees everything (NULL-safe). */
void kl_apiserver_free(kl_apiserver *s);

/* ---- engine ----------------------------------------------------------- */

/* A served resource. Owned by the server and valid until kl_apiserver_free
 * (a deleted CRD's resource stays allocated, with gone set). Read-only. */
typedef struct kl_as_resource {
  char *group;       /* "" for the core group */
  char *version;
  char *api_version; /* "v1", "apps/v1" */
  char *plural, *singular, *kind, *list_kind;
  char **short_names; /* NULL-terminated (maybe empty) */
  char **categories;  /* NULL-terminated */
  char **fields;      /* extra field selectors besides metadata.name and
                         metadata.namespace, NULL-terminated */
  bool namespaced;
  bool has_status;     /* has a /status subresource */
  bool has_scale;      /* has a /scale subresource (autoscaling/v1 Scale) */
  bool has_generation; /* metadata.generation tracks spec changes */
  bool custom;         /* a custom resource (keys sorted, as Kubernetes) */
  bool gone;           /* its CRD was deleted: no longer served */
  char *crd_name;      /* custom: the CRD's metadata.name */
  /* /scale: paths of the replica counts (".spec.replicas") and of the
   * selector string (custom resources: labelSelectorPath, may be NULL);
   * built-ins have scale_selector NULL and use spec.selector */
  char *scale_spec, *scale_status, *scale_selector;
  void *store;         /* engine-private */
} kl_as_resource;

/* The answer of an engine operation: an HTTP status and a JSON body (an
 * object, a list or a Status; no trailing newline). */
typedef struct kl_as_result {
  int code;
  kl_buf body;
  int retry_after; /* seconds for a Retry-After header, 0: none */
} kl_as_result;
#define KL_AS_RESULT_INIT {0, KL_BUF_INIT, 0}
void kl_as_result_free(kl_as_result *r);
/* Fills r with a Status failure. details: NULL or the JSON text of the
 * "details" object; message is copied. */
void kl_as_status(kl_as_result *r, int code, const char *reason,
                  const char *message, const char *details);

/* How objects are rendered. */
enum { KL_AS_OUT_FULL = 0, KL_AS_OUT_METADATA = 1, KL_AS_OUT_TABLE = 2 };

/* Request options (query parameters and headers, parsed by the HTTP layer).
 * Borrowed strings; NULL means absent. */
typedef struct kl_as_opts {
  const char *label_selector, *field_selector;
  const char *resource_version, *rv_match, *cont;
  long limit;               /* 0: no limit */
  bool allow_bookmarks, send_initial_events;
  long timeout_seconds;     /* <= 0: no timeout */
  bool dry_run, force;
  const char *field_manager;
  const char *user_agent;   /* managedFields manager for non-apply writes */
  const char *propagation;  /* propagationPolicy query parameter */
  int output;               /* KL_AS_OUT_* */
  const char *accept;       /* the Accept header (for the table hook) */
  const char *include_object; /* includeObject query parameter (tables) */
} kl_as_opts;

/* Patch types (by Content-Type). */
enum {
  KL_AS_PATCH_MERGE = 1, /* application/merge-patch+json */
  KL_AS_PATCH_JSON,      /* application/json-patch+json */
  KL_AS_PATCH_STRATEGIC, /* application/strategic-merge-patch+json */
  KL_AS_PATCH_APPLY,     /* application/apply-patch+yaml */
};

/* Looks up a served resource by group/version/plural; NULL when not served.
 * Borrowed (see kl_as_resource). */
kl_as_resource *kl_as_find(kl_apiserver *s, const char *group,
                           const char *version, const char *plural);
/* Finds by apiVersion and kind (for manifests); NULL when not served. */
kl_as_resource *kl_as_find_kind(kl_apiserver *s, const char *api_version,
                                const char *kind);
/* A NEW array (free() it) of the served resources in discovery order;
 * the pointers are borrowed. */
kl_as_resource **kl_as_resources(kl_apiserver *s, size_t *n);

/* The operations. ns is "" for cluster-scoped resources or cluster-wide
 * lists; sub is NULL, "status" or "scale" (get/update/patch of the
 * autoscaling/v1 Scale, which reads and writes the parent's replicas; the
 * answer is the Scale). body trees are only read. Each fills r
 * (code + body) and never fails otherwise. */
void kl_as_get(kl_apiserver *s, kl_as_resource *res, const char *ns,
               const char *name, const char *sub, const kl_as_opts *o,
               kl_as_result *r);
void kl_as_list(kl_apiserver *s, kl_as_resource *res, const char *ns,
                const kl_as_opts *o, kl_as_result *r);
void kl_as_create(kl_apiserver *s, kl_as_resource *res, const char *ns,
                  const cJSON *body, const kl_as_opts *o, kl_as_result *r);
void kl_as_update(kl_apiserver *s, kl_as_resource *res, const char *ns,
                  const char *name, const char *sub, const cJSON *body,
                  const kl_as_opts *o, kl_as_result *r);
/* body: the raw patch bytes (JSON, or YAML for apply). */
void kl_as_patch(kl_apiserver *s, kl_as_resource *res, const char *ns,
                 const char *name, const char *sub, int patch_type,
                 const char *body, size_t n, const kl_as_opts *o,
                 kl_as_result *r);
/* delopts: NULL or a DeleteOptions tree (propagationPolicy, preconditions,
 * dryRun). */
void kl_as_delete(kl_apiserver *s, kl_as_resource *res, const char *ns,
                  const char *name, const cJSON *delopts,
                  const kl_as_opts *o, kl_as_result *r);
void kl_as_delete_collection(kl_apiserver *s, kl_as_resource *res,
                             const char *ns, const cJSON *delopts,
                             const kl_as_opts *o, kl_as_result *r);

/* Watches. open validates the options: on success returns 0 and a NEW
 * watch; else fills r with the error Status and returns KL_EINVAL. */
typedef struct kl_as_watch kl_as_watch;
int kl_as_watch_open(kl_apiserver *s, kl_as_resource *res, const char *ns,
                     const kl_as_opts *o, kl_as_watch **out,
                     kl_as_result *r);
/* Appends the next event lines ("{...}\n" each) to out, blocking until
 * there is one. alive (may be NULL) is polled about once a second while
 * idle; when it returns false the stream ends. Returns 1 when bytes were
 * appended, 0 when the stream is over (timeout, expired history, server
 * stopping, client gone). Call from one thread at a time per watch. */
int kl_as_watch_next(kl_as_watch *w, kl_buf *out, bool (*alive)(void *),
                     void *ud);
void kl_as_watch_close(kl_as_watch *w);

/* The current resourceVersion, and the oldest one a watch may start from. */
uint64_t kl_as_current_rv(kl_apiserver *s);
uint64_t kl_as_oldest_rv(kl_apiserver *s);
/* Forgets history up to rv (like an etcd compaction): older watch starts,
 * continue tokens and exact lists then get 410. */
void kl_as_compact(kl_apiserver *s, uint64_t rv);
/* Ends every watch open now, at once: a watch blocked waiting returns 0
 * from kl_as_watch_next, and none collects an event written after this
 * call. Watches opened later are not affected. */
void kl_as_close_watches(kl_apiserver *s);
/* The options the server was created with (borrowed). */
const kl_apiserver_opts *kl_as_server_opts(const kl_apiserver *s);

/* Discovery documents (apiserver_resources.c). Each fills r: 200 with the
 * document, or 404 with "404 page not found" text (content_type then
 * text/plain: see kl_as_result code and kl_as_discovery_is_text). */
void kl_as_discovery_api(kl_apiserver *s, const char *host, kl_as_result *r);
void kl_as_discovery_groups(kl_apiserver *s, kl_as_result *r);
void kl_as_discovery_group(kl_apiserver *s, const char *group,
                           kl_as_result *r);
void kl_as_discovery_resources(kl_apiserver *s, const char *group,
                               const char *version, kl_as_result *r);
/* The /version document (indented, no trailing newline). */
const char *kl_as_version_json(void);
/* Fills res (zeroed by the caller) with built-in resource i; returns false
 * past the end. The strings are NEW (the engine owns them after). */
bool kl_as_builtin_resource(size_t i, kl_as_resource *res);

/* ---- hooks (apiserver_faults.c, apiserver_openapi.c, apiserver_table.c) */

/* One HTTP request as the hooks see it (borrowed for the call). */
typedef struct kl_as_http_req {
  const char *method, *path;   /* path without the query string */
  const char *accept, *content_type, *user_agent; /* "" when absent */
  const char *body;
  size_t body_len;
  void *conn; /* struct MHD_Connection * */
} kl_as_http_req;
/* A query parameter (decoded) or NULL. */
const char *kl_as_req_query(const kl_as_http_req *req, const char *key);

/* The hook's answer. content_type NULL means application/json; the HTTP
 * layer appends "\n" to JSON bodies that lack it. */
typedef struct kl_as_reply {
  int code;
  const char *content_type;
  kl_buf body;
  int retry_after;
} kl_as_reply;

/* One pointer per hook file for its own state. */
enum { KL_AS_HOOK_FAULTS = 0, KL_AS_HOOK_OPENAPI, KL_AS_HOOK_TABLE,
       KL_AS_HOOK_MAX };
void **kl_as_hook_slot(kl_apiserver *s, int which);

/* apiserver_faults.c. init runs in kl_apiserver_new with the --faults value
 * (NULL when not given); a non-zero return fails kl_apiserver_new with *err.
 * handle runs for every authenticated request before routing (admin
 * endpoints, injected errors or delays): true means rep is the answer.
 * free runs in kl_apiserver_free. */
int kl_as_faults_init(kl_apiserver *s, const char *spec, char **err);
bool kl_as_faults_handle(kl_apiserver *s, const kl_as_http_req *req,
                         kl_as_reply *rep);
void kl_as_faults_free(kl_apiserver *s);
/* Watch streams (apiserver_http.c, on the stream's thread). watch_open runs
 * when a watch response starts and returns a NEW per-stream state (may be
 * NULL); watch_bytes sees each batch of event bytes before it is sent and
 * may shorten or extend out, returning KL_AS_FW_SEND, KL_AS_FW_END (send,
 * then end the stream cleanly) or KL_AS_FW_ABORT (send, then drop the
 * connection without the final chunk); watch_alive is polled while the
 * stream is idle and before each batch (false ends it cleanly);
 * watch_close frees the state (NULL-safe). */
enum { KL_AS_FW_SEND = 0, KL_AS_FW_END, KL_AS_FW_ABORT };
void *kl_as_faults_watch_open(kl_apiserver *s, const kl_as_http_req *req);
int kl_as_faults_watch_bytes(kl_apiserver *s, void *fw, kl_buf *out);
bool kl_as_faults_watch_alive(kl_apiserver *s, void *fw);
void kl_as_faults_watch_close(kl_apiserver *s, void *fw);

/* apiserver_openapi.c: for paths under /openapi/. false: 404 page not
 * found. */
bool kl_as_openapi_handle(kl_apiserver *s, const kl_as_http_req *req,
                          kl_as_reply *rep);

/* apiserver_table.c: Table rendering for "Accept: ...;as=Table". Return 0
 * when out holds the Table JSON, KL_ENOENT to let the engine answer the plain
 * list/object (what the stub does). list: items (borrowed, full objects),
 * and the list metadata the plain list would carry. object: one object;
 * first says whether columnDefinitions go in (watch: only the first event). */
int kl_as_table_list(kl_apiserver *s, const kl_as_resource *res,
                     kl_obj *const *items, size_t n, const char *rv,
                     const char *cont, long remaining, const kl_as_opts *o,
                     kl_buf *out);
int kl_as_table_object(kl_apiserver *s, const kl_as_resource *res,
                       const kl_obj *obj, bool first, const kl_as_opts *o,
                       kl_buf *out);

#endif
