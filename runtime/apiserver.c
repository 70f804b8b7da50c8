/* apiserver.c: the engine of the local Kubernetes API server: resources,
 * storage, resourceVersions, history, watch fan-out and write semantics.
 * No HTTP here (apiserver_http.c).
 *
 * Design:
 * - Storage: per resource a hash map key ("ns/name" or "name") -> kl_obj,
 *   the object's compact JSON WITH kind/apiVersion in canonical order
 *   (Go-struct order for built-ins, keys sorted for custom resources). Single
 *   objects and watch events are therefore byte copies; list items are the
 *   same bytes minus the known `{"kind":..,"apiVersion":..,` prefix. cJSON
 *   is used only to mutate on writes.
 * - One global resourceVersion (like etcd's revision) under one rwlock `mu`:
 *   writes take it exclusively, reads (get/list) share it.
 * - History: a ring of the last N changes; every RV bump is exactly one
 *   change, so change RV r lives in slot r % N. Each entry keeps the new
 *   object and the previous one, which gives (a) watch fan-out: every
 *   watcher reads the ring at its own position under a separate mutex +
 *   condvar, copying out references, so a slow watcher never blocks writers
 *   or other watchers; one that falls behind the ring gets ERROR 410
 *   Expired; (b) consistent paging: a list at RV n is the current state with
 *   the changes after n undone (first change per key after n gives the key's
 *   state at n). hist_min is the oldest RV still servable (ring size or a
 *   forced compaction).
 * - Ordered lists and pages come from snapshots: a resource's objects sorted
 *   by key (refcounted, immutable, valid for an RV range). The current one
 *   is built lazily after a change; a change retires it to a small cache
 *   (the state up to the change's RV - 1) for the continue tokens of lists
 *   in progress. A page is two binary searches and byte copies, built
 *   without the storage lock (docs/serve.md, "Speed").
 * - State files (`--state-file`): every stored object plus the RV as JSON
 *   lines; a load restores them byte for byte with an empty history (older
 *   watches get 410) and queues the GC work they imply.
 * - The garbage collector (ownerReferences, foreground/background/orphan,
 *   namespace termination) runs on its own thread, as kube-controller-
 *   manager would, so clients see the same event order as on a real
 *   cluster.
 * Differences from kube-apiserver (documented in docs/serve.md): no schema
 * (unknown fields are kept), no defaulting of built-in types, one storage per
 * resource (core and events.k8s.io Events are separate). */
#include "apiserver.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "hmap.h"
#include "json.h"
#include "manifest.h"
#include "patch.h"
#include "selector.h"
#include "store.h"

enum { EV_ADDED = 1, EV_MODIFIED, EV_DELETED };

/* A resource's objects sorted by key as they were at every RV in [lo, hi]
 * (hi UINT64_MAX: still current). Immutable once built; holds a reference
 * on each object, so a list pages from it without the storage lock. */
typedef struct snap {
  kl_obj **v;
  size_t n;
  uint64_t lo, hi;
  int refs; /* under the store's smu */
} snap;

enum { NOLD = 2 }; /* retired snapshots kept for continue tokens */

typedef struct store {
  kl_hmap objs;       /* key -> kl_obj (the map's reference), borrowed keys */
  pthread_mutex_t smu;  /* guards cur, old and snapshot refcounts */
  snap *cur;          /* the current state sorted; NULL: rebuilt lazily */
  snap *old[NOLD];    /* snapshots retired by later changes, newest first */
  uint64_t mod_rv;    /* RV of the last change of this resource */
  char *prefix;       /* `{"kind":"K","apiVersion":"V",` */
  size_t prefix_len;
} store;

typedef struct hist_ev {
  uint64_t rv;
  int type;
  kl_as_resource *res;
  kl_obj *obj;  /* as sent to watchers (DELETED: last state, new RV) */
  kl_obj *prev; /* stored before the change; NULL for ADDED */
} hist_ev;

enum { GC_BACKGROUND = 1, GC_FOREGROUND, GC_ORPHAN, GC_NAMESPACE };
typedef struct gc_item {
  int kind;
  kl_as_resource *res;
  char *key, *uid;
} gc_item;

struct kl_apiserver {
  kl_apiserver_opts o;
  pthread_rwlock_t mu;
  uint64_t rv;
  kl_as_resource **res;
  size_t nres, capres;
  size_t n_owned; /* stored objects that have ownerReferences */

  pthread_mutex_t hmu;
  pthread_cond_t hcv;
  hist_ev *ring;
  size_t cap;
  uint64_t hrv;      /* newest published RV (under hmu) */
  uint64_t hist_min; /* oldest RV a watch/continue may start from */
  uint64_t close_gen; /* bumped by kl_as_close_watches (under hmu) */
  bool stopping;

  pthread_t gct;
  pthread_mutex_t gmu;
  pthread_cond_t gcv;
  gc_item *gq;
  size_t ngq, capgq;
  bool gstop;

  pthread_mutex_t savemu; /* one state-file writer at a time */
  bool restored;          /* a state file was loaded (seed skips existing) */

  void *http;
  int port;
  char *url;
  void *hooks[KL_AS_HOOK_MAX];
};

/* Between this file and apiserver_http.c. */
int kl__as_http_start(kl_apiserver *s, void **http, int *port, char **err);
void kl__as_http_stop(void *http);

/* ---- small helpers ---------------------------------------------------- */

static void now_rfc3339(char out[32]) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void fill_random(void *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = getrandom((char *)p + got, n - got, 0);
    if (k <= 0) {
      if (k < 0 && errno == EINTR) continue;
      for (; got < n; got++) ((unsigned char *)p)[got] = (unsigned char)rand();
      return;
    }
    got += (size_t)k;
  }
}

static void new_uid(char out[37]) {
  unsigned char b[16];
  fill_random(b, sizeof b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  snprintf(out, 37,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
           b[11], b[12], b[13], b[14], b[15]);
}

void kl_as_result_free(kl_as_result *r) {
  if (!r) return;
  kl_buf_free(&r->body);
}

static void add_q(kl_buf *b, const char *s) { kl_json_quote(b, s, strlen(s)); }

void kl_as_status(kl_as_result *r, int code, const char *reason,
                  const char *message, const char *details) {
  r->code = code;
  r->body.len = 0;
  kl_buf_adds(&r->body, "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                        "\"metadata\":{},\"status\":\"Failure\",\"message\":");
  add_q(&r->body, message);
  if (reason) {
    kl_buf_adds(&r->body, ",\"reason\":");
    add_q(&r->body, reason);
  }
  if (details) {
    kl_buf_adds(&r->body, ",\"details\":");
    kl_buf_adds(&r->body, details);
  }
  kl_buf_addf(&r->body, ",\"code\":%d}", code);
  if (!r->body.data) kl_buf_adds(&r->body, "");
}

/* details {"name":N,"kind":K} */
static char *details_nk(const char *name, const char *kind) {
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "{\"name\":");
  add_q(&b, name);
  kl_buf_adds(&b, ",\"kind\":");
  add_q(&b, kind);
  kl_buf_addc(&b, '}');
  return kl_buf_detach(&b, NULL);
}

/* kube-apiserver names a resource by its qualified name in messages
 * ("deployments.apps", "widgets.test.example.com"; core: "configmaps") and
 * puts the group into details: {"name":N,"group":G,"kind":plural}. */
static char *qualified(const kl_as_resource *res) {
  return res->group[0] ? kl_sprintf("%s.%s", res->plural, res->group)
                       : kl_strdup(res->plural);
}

static char *details_res(const char *name, const kl_as_resource *res) {
  if (!res->group[0]) return details_nk(name, res->plural);
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, "{\"name\":");
  add_q(&b, name);
  kl_buf_adds(&b, ",\"group\":");
  add_q(&b, res->group);
  kl_buf_adds(&b, ",\"kind\":");
  add_q(&b, res->plural);
  kl_buf_addc(&b, '}');
  return kl_buf_detach(&b, NULL);
}

/* A Status about object name of res: code, reason, and the message fmt
 * filled with the qualified resource name and name (two %s). */
static void st_res(kl_as_result *r, const kl_as_resource *res,
                   const char *name, int code, const char *reason,
                   const char *fmt) {
  char *q = qualified(res);
  char *msg = kl_sprintf(fmt, q, name);
  char *d = details_res(name, res);
  kl_as_status(r, code, reason, msg, d);
  free(q);
  free(msg);
  free(d);
}

static void st_notfound(kl_as_result *r, const kl_as_resource *res,
                        const char *name) {
  st_res(r, res, name, 404, "NotFound", "%s \"%s\" not found");
}

static void st_conflict(kl_as_result *r, const kl_as_resource *res,
                        const char *name) {
  st_res(r, res, name, 409, "Conflict",
         "Operation cannot be fulfilled on %s \"%s\": the object has been "
         "modified; please apply your changes to the latest version and try "
         "again");
}

/* 409 for a delete whose precondition (what: "UID" or "ResourceVersion")
 * does not hold: want is the precondition's value, have the object's; why
 * ends kube-apiserver's message ("modified", ...). */
static void st_precondition(kl_as_result *r, const kl_as_resource *res,
                            const char *name, const char *what,
                            const char *want, const char *have,
                            const char *why) {
  char *msg = kl_sprintf("Operation cannot be fulfilled on %s \"%s\": the "
                         "%s in the precondition (%s) does not match the %s "
                         "in record (%s). The object might have been %s",
                         res->kind, name, what, want, what, have, why);
  char *d = details_nk(name, res->kind);
  kl_as_status(r, 409, "Conflict", msg, d);
  free(msg);
  free(d);
}

static void st_bad(kl_as_result *r, const char *msg) {
  kl_as_status(r, 400, "BadRequest", msg, NULL);
}

static void st_invalid_field(kl_as_result *r, const char *kind,
                             const char *name, const char *field,
                             const char *value, const char *why) {
  char *cause = value ? kl_sprintf("Invalid value: \"%s\": %s", value, why)
                      : kl_strdup(why);
  char *msg = kl_sprintf("%s \"%s\" is invalid: %s: %s", kind, name, field,
                         cause);
  kl_buf d = KL_BUF_INIT;
  kl_buf_adds(&d, "{\"name\":");
  add_q(&d, name);
  kl_buf_adds(&d, ",\"kind\":");
  add_q(&d, kind);
  kl_buf_addf(&d, ",\"causes\":[{\"reason\":\"%s\",\"message\":",
              value ? "FieldValueInvalid" : "FieldValueRequired");
  add_q(&d, cause);
  kl_buf_adds(&d, ",\"field\":");
  add_q(&d, field);
  kl_buf_adds(&d, "}]}");
  kl_as_status(r, 422, "Invalid", msg, d.data);
  kl_buf_free(&d);
  free(msg);
  free(cause);
}

static void st_options_invalid(kl_as_result *r, const char *group,
                               const char *kind, const char *field,
                               const char *reason, const char *cmsg) {
  char *msg = kl_sprintf("%s.%s \"\" is invalid: %s: %s", kind, group, field,
                         cmsg);
  kl_buf d = KL_BUF_INIT;
  kl_buf_addf(&d, "{\"group\":\"%s\",\"kind\":\"%s\",\"causes\":[{\"reason\":"
                  "\"%s\",\"message\":", group, kind, reason);
  add_q(&d, cmsg);
  kl_buf_adds(&d, ",\"field\":");
  add_q(&d, field);
  kl_buf_adds(&d, "}]}");
  kl_as_status(r, 422, "Invalid", msg, d.data);
  kl_buf_free(&d);
  free(msg);
}

static void st_patch_err(kl_as_result *r, kl_patch_err *pe) {
  if (pe->nconflicts) {
    kl_buf d = KL_BUF_INIT;
    kl_buf_adds(&d, "{\"causes\":[");
    for (size_t i = 0; i < pe->nconflicts; i++) {
      char *m = kl_sprintf("conflict with %s", pe->conflicts[i].manager);
      kl_buf_adds(&d, i ? ",{" : "{");
      kl_buf_adds(&d, "\"reason\":\"FieldManagerConflict\",\"message\":");
      add_q(&d, m);
      kl_buf_adds(&d, ",\"field\":");
      add_q(&d, pe->conflicts[i].field);
      kl_buf_addc(&d, '}');
      free(m);
    }
    kl_buf_adds(&d, "]}");
    kl_as_status(r, pe->code ? pe->code : 409, pe->reason, pe->message,
                 d.data);
    kl_buf_free(&d);
    return;
  }
  kl_as_status(r, pe->code ? pe->code : 400,
               pe->reason ? pe->reason : "BadRequest",
               pe->message ? pe->message : "bad patch",
               pe->code == 422 || pe->code == 415 ? "{}" : NULL);
}

/* ---- names ------------------------------------------------------------ */

static const char msg_subdomain[] =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
static const char msg_label[] =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric "
    "characters or '-', and must start and end with an alphanumeric "
    "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

static bool alnum_lower(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_dns_label(const char *s, size_t n) {
  if (n == 0 || n > 63 || !alnum_lower(s[0]) || !alnum_lower(s[n - 1]))
    return false;
  for (size_t i = 0; i < n; i++)
    if (!alnum_lower(s[i]) && s[i] != '-') return false;
  return true;
}

static bool is_dns_subdomain(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 253) return false;
  const char *p = s;
  for (;;) {
    const char *dot = strchr(p, '.');
    size_t len = dot ? (size_t)(dot - p) : strlen(p);
    if (len == 0 || !alnum_lower(p[0]) || !alnum_lower(p[len - 1]))
      return false;
    for (size_t i = 0; i < len; i++)
      if (!alnum_lower(p[i]) && p[i] != '-') return false;
    if (!dot) return true;
    p = dot + 1;
  }
}

/* NULL when valid, else the static reason. */
static const char *name_problem(const kl_as_resource *res, const char *name) {
  if (!strcmp(res->plural, "namespaces"))
    return is_dns_label(name, strlen(name))
               ? NULL
               : strlen(name) > 63 ? "must be no more than 63 characters"
                                   : msg_label;
  if (strlen(name) > 253) return "must be no more than 253 characters";
  return is_dns_subdomain(name) ? NULL : msg_subdomain;
}

/* ---- rendering -------------------------------------------------------- */

static const char *const md_order[] = {
    "name", "generateName", "namespace", "selfLink", "uid",
    "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "clusterName",
    "managedFields", NULL};
static const char *const top_order[] = {"kind", "apiVersion", "metadata",
                                        NULL};

static int rank_of(const char *k, const char *const *order) {
  for (int i = 0; order[i]; i++)
    if (k && !strcmp(k, order[i])) return i;
  return 1000;
}

static void relink(cJSON *o, cJSON **a, size_t n) {
  for (size_t i = 0; i < n; i++) {
    a[i]->next = i + 1 < n ? a[i + 1] : NULL;
    a[i]->prev = i ? a[i - 1] : a[n - 1];
  }
  o->child = n ? a[0] : NULL;
}

static size_t children(cJSON *o, cJSON ***out) {
  size_t n = 0;
  for (cJSON *c = o->child; c; c = c->next) n++;
  cJSON **a = kl_malloc((n + 1) * sizeof *a);
  n = 0;
  for (cJSON *c = o->child; c; c = c->next) a[n++] = c;
  *out = a;
  return n;
}

static void order_keys(cJSON *o, const char *const *order) {
  if (!cJSON_IsObject(o)) return;
  cJSON **a;
  size_t n = children(o, &a);
  /* stable insertion sort by rank (few keys) */
  for (size_t i = 1; i < n; i++) {
    cJSON *x = a[i];
    int rx = rank_of(x->string, order);
    size_t j = i;
    while (j > 0 && rank_of(a[j - 1]->string, order) > rx) {
      a[j] = a[j - 1];
      j--;
    }
    a[j] = x;
  }
  relink(o, a, n);
  free(a);
}

static int cmp_key(const void *x, const void *y) {
  const cJSON *a = *(cJSON *const *)x, *b = *(cJSON *const *)y;
  return strcmp(a->string ? a->string : "", b->string ? b->string : "");
}

static void sort_keys_deep(cJSON *o) {
  if (cJSON_IsObject(o)) {
    cJSON **a;
    size_t n = children(o, &a);
    qsort(a, n, sizeof *a, cmp_key);
    relink(o, a, n);
    free(a);
  }
  if (cJSON_IsObject(o) || cJSON_IsArray(o))
    for (cJSON *c = o->child; c; c = c->next) sort_keys_deep(c);
}

static void canonicalize(const kl_as_resource *res, cJSON *o) {
  if (res->custom) {
    sort_keys_deep(o);
  } else {
    order_keys(o, top_order);
    order_keys(cJSON_GetObjectItemCaseSensitive(o, "metadata"), md_order);
  }
}

/* Renders a tree into a NEW kl_obj (canonical key order). */
static kl_obj *render(const kl_as_resource *res, cJSON *o) {
  canonicalize(res, o);
  char *txt = cJSON_PrintUnformatted(o);
  if (!txt) abort();
  kl_obj *obj = NULL;
  kl_obj_opts oo = {.drop = NULL};
  if (kl_obj_new(txt, strlen(txt), &oo, &obj, NULL) != 0) abort();
  cJSON_free(txt);
  return obj;
}

static cJSON *parse_obj(const kl_obj *obj) {
  size_t n;
  const char *j = kl_obj_json(obj, &n);
  cJSON *t = cJSON_ParseWithLength(j, n);
  if (!t) abort();
  return t;
}

/* A copy of obj whose metadata.resourceVersion is rv (NEW reference). */
static kl_obj *obj_with_rv(const kl_obj *obj, uint64_t rv) {
  size_t n;
  const char *j = kl_obj_json(obj, &n);
  kl_span v;
  kl_buf b = KL_BUF_INIT;
  if (kl_obj_get(obj, "metadata.resourceVersion", &v)) {
    kl_buf_add(&b, j, (size_t)(v.p - j));
    kl_buf_addf(&b, "\"%llu\"", (unsigned long long)rv);
    kl_buf_add(&b, v.p + v.n, n - (size_t)(v.p + v.n - j));
  } else {
    kl_buf_add(&b, j, n);
  }
  kl_obj *out = NULL;
  kl_obj_opts oo = {.drop = NULL};
  if (kl_obj_new(b.data, b.len, &oo, &out, NULL) != 0) abort();
  kl_buf_free(&b);
  return out;
}

static void set_str(cJSON *o, const char *k, const char *v) {
  cJSON_DeleteItemFromObjectCaseSensitive(o, k);
  cJSON_AddStringToObject(o, k, v);
}

static void set_num(cJSON *o, const char *k, double v) {
  cJSON_DeleteItemFromObjectCaseSensitive(o, k);
  cJSON_AddNumberToObject(o, k, v);
}

static void set_rv(cJSON *o, uint64_t rv) {
  char b[32];
  snprintf(b, sizeof b, "%llu", (unsigned long long)rv);
  set_str(cJSON_GetObjectItemCaseSensitive(o, "metadata"), "resourceVersion",
          b);
}

static cJSON *md_of(cJSON *o) {
  cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "metadata");
  if (!cJSON_IsObject(md)) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, "metadata");
    md = cJSON_AddObjectToObject(o, "metadata");
  }
  return md;
}

static const char *md_str(cJSON *o, const char *k) {
  cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "metadata");
  cJSON *v = cJSON_GetObjectItemCaseSensitive(md, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The bytes of obj in a list item (without kind/apiVersion), or the
 * PartialObjectMetadata form. */
static void emit_item(kl_buf *out, const kl_as_resource *res,
                      const kl_obj *obj, int output) {
  size_t n;
  const char *j = kl_obj_json(obj, &n);
  if (output == KL_AS_OUT_METADATA) {
    kl_span md;
    kl_buf_adds(out, "{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":"
                     "\"meta.k8s.io/v1\",\"metadata\":");
    if (kl_obj_get(obj, "metadata", &md))
      kl_buf_add(out, md.p, md.n);
    else
      kl_buf_adds(out, "{}");
    kl_buf_addc(out, '}');
    return;
  }
  store *st = res->store;
  if (n > st->prefix_len && !memcmp(j, st->prefix, st->prefix_len)) {
    kl_buf_addc(out, '{');
    kl_buf_add(out, j + st->prefix_len, n - st->prefix_len);
    return;
  }
  static const char *const drop[] = {"kind", "apiVersion", NULL};
  kl_json_compact(j, n, drop, out);
}

static void emit_object(kl_buf *out, const kl_obj *obj, int output) {
  if (output == KL_AS_OUT_METADATA) {
    emit_item(out, NULL, obj, output);
    return;
  }
  size_t n;
  const char *j = kl_obj_json(obj, &n);
  kl_buf_add(out, j, n);
}

/* ---- storage ---------------------------------------------------------- */

static store *store_new(const kl_as_resource *res) {
  store *st = kl_calloc(1, sizeof *st);
  kl_hmap_init(&st->objs, KL_HMAP_BORROW_KEYS);
  pthread_mutex_init(&st->smu, NULL);
  kl_buf b = KL_BUF_INIT;
  if (res->custom)
    kl_buf_addf(&b, "{\"apiVersion\":\"%s\",\"kind\":\"%s\",", res->api_version,
                res->kind);
  else
    kl_buf_addf(&b, "{\"kind\":\"%s\",\"apiVersion\":\"%s\",", res->kind,
                res->api_version);
  st->prefix = kl_buf_detach(&b, &st->prefix_len);
  return st;
}

static void snap_free(snap *sn) {
  if (!sn) return;
  for (size_t i = 0; i < sn->n; i++) kl_obj_unref(sn->v[i]);
  free(sn->v);
  free(sn);
}

/* Drops one reference (the last frees it, outside the lock). */
static void snap_unref(store *st, snap *sn) {
  if (!sn) return;
  pthread_mutex_lock(&st->smu);
  bool last = --sn->refs == 0;
  pthread_mutex_unlock(&st->smu);
  if (last) snap_free(sn);
}

/* Forgets every snapshot (state replaced wholesale). Under the write lock. */
static void store_drop_snaps(store *st) {
  snap *drop[NOLD + 1];
  pthread_mutex_lock(&st->smu);
  drop[0] = st->cur;
  st->cur = NULL;
  for (int i = 0; i < NOLD; i++) {
    drop[i + 1] = st->old[i];
    st->old[i] = NULL;
  }
  st->mod_rv = 0;
  pthread_mutex_unlock(&st->smu);
  for (int i = 0; i <= NOLD; i++) snap_unref(st, drop[i]);
}

/* Records a change of the resource at rv (under the write lock): the
 * current snapshot, if any, becomes the state for RVs up to rv - 1 and is
 * kept for continue tokens; the oldest retired one goes. */
static void store_changed(store *st, uint64_t rv) {
  snap *drop = NULL;
  pthread_mutex_lock(&st->smu);
  if (st->cur) {
    st->cur->hi = rv - 1;
    drop = st->old[NOLD - 1];
    memmove(st->old + 1, st->old, (NOLD - 1) * sizeof *st->old);
    st->old[0] = st->cur;
    st->cur = NULL;
  }
  st->mod_rv = rv;
  pthread_mutex_unlock(&st->smu);
  snap_unref(st, drop);
}

static void store_free(store *st) {
  const char *k;
  void *v;
  for (size_t i = 0; kl_hmap_next(&st->objs, &i, &k, &v);)
    kl_obj_unref(v);
  kl_hmap_free(&st->objs);
  store_drop_snaps(st);
  free(st->prefix);
  pthread_mutex_destroy(&st->smu);
  free(st);
}

static void res_free(kl_as_resource *r) {
  if (!r) return;
  free(r->group);
  free(r->version);
  free(r->api_version);
  free(r->plural);
  free(r->singular);
  free(r->kind);
  free(r->list_kind);
  for (char **p = r->short_names; p && *p; p++) free(*p);
  free(r->short_names);
  for (char **p = r->categories; p && *p; p++) free(*p);
  free(r->categories);
  for (char **p = r->fields; p && *p; p++) free(*p);
  free(r->fields);
  free(r->crd_name);
  free(r->scale_spec);
  free(r->scale_status);
  free(r->scale_selector);
  if (r->store) store_free(r->store);
  free(r);
}

static kl_obj *sget(kl_as_resource *res, const char *key) {
  return kl_hmap_get(&((store *)res->store)->objs, key);
}

static bool has_owners(const kl_obj *o) {
  kl_span v;
  return kl_obj_get(o, "metadata.ownerReferences", &v) &&
         kl_json_type(v) == 'a' && v.n > 2;
}

static void publish(kl_apiserver *s, kl_as_resource *res, int type,
                    kl_obj *obj, kl_obj *prev) {
  uint64_t rv = s->rv;
  pthread_mutex_lock(&s->hmu);
  hist_ev *e = &s->ring[rv % s->cap];
  if (e->rv) {
    if (e->rv > s->hist_min) s->hist_min = e->rv;
    kl_obj_unref(e->obj);
    kl_obj_unref(e->prev);
  }
  e->rv = rv;
  e->type = type;
  e->res = res;
  e->obj = obj;
  e->prev = prev;
  s->hrv = rv;
  pthread_cond_broadcast(&s->hcv);
  pthread_mutex_unlock(&s->hmu);
}

/* Stores obj (a NEW reference, whose RV must be s->rv + 1) and publishes
 * ADDED or MODIFIED. */
static void commit_put(kl_apiserver *s, kl_as_resource *res, kl_obj *obj) {
  store *st = res->store;
  s->rv++;
  kl_obj *old = kl_hmap_put(&st->objs, kl_obj_key(obj), obj);
  if (old && has_owners(old)) s->n_owned--;
  if (has_owners(obj)) s->n_owned++;
  store_changed(st, s->rv);
  publish(s, res, old ? EV_MODIFIED : EV_ADDED, kl_obj_ref(obj), old);
}

/* Removes the stored object at key; last: NULL (use the stored state) or
 * the final state to report. Publishes DELETED with a new RV. */
static void commit_delete(kl_apiserver *s, kl_as_resource *res,
                          const char *key, const kl_obj *last) {
  store *st = res->store;
  bool found;
  kl_obj *cur = kl_hmap_del(&st->objs, key, &found);
  if (!found) return;
  s->rv++;
  if (has_owners(cur)) s->n_owned--;
  store_changed(st, s->rv);
  publish(s, res, EV_DELETED, obj_with_rv(last ? last : cur, s->rv), cur);
}

static int cmp_obj_key(const void *x, const void *y) {
  return strcmp(kl_obj_key(*(kl_obj *const *)x),
                kl_obj_key(*(kl_obj *const *)y));
}

/* The current snapshot, built when missing. Call with mu held (read or
 * write) and smu held. Borrowed (the store's reference). */
static snap *cur_locked(store *st) {
  if (!st->cur) {
    snap *sn = kl_calloc(1, sizeof *sn);
    size_t cnt = kl_hmap_len(&st->objs);
    sn->v = kl_malloc((cnt + 1) * sizeof *sn->v);
    const char *k;
    void *v;
    for (size_t i = 0; kl_hmap_next(&st->objs, &i, &k, &v);)
      sn->v[sn->n++] = kl_obj_ref(v);
    qsort(sn->v, sn->n, sizeof *sn->v, cmp_obj_key);
    sn->lo = st->mod_rv;
    sn->hi = UINT64_MAX;
    sn->refs = 1;
    st->cur = sn;
  }
  return st->cur;
}

/* The sorted array of res's current objects; call with mu held (read or
 * write). Borrowed: valid while mu is held and nothing is written. */
static kl_obj **sorted_of(kl_as_resource *res, size_t *n) {
  store *st = res->store;
  pthread_mutex_lock(&st->smu);
  snap *sn = cur_locked(st);
  pthread_mutex_unlock(&st->smu);
  *n = sn->n;
  return sn->v;
}

/* ---- resources -------------------------------------------------------- */

static void add_resource(kl_apiserver *s, kl_as_resource *r) {
  if (s->nres == s->capres) {
    s->capres = s->capres ? 2 * s->capres : 32;
    s->res = kl_realloc(s->res, s->capres * sizeof *s->res);
  }
  r->store = store_new(r);
  s->res[s->nres++] = r;
}

static kl_as_resource *find_locked(kl_apiserver *s, const char *group,
                                   const char *version, const char *plural) {
  for (size_t i = 0; i < s->nres; i++) {
    kl_as_resource *r = s->res[i];
    if (!strcmp(r->plural, plural) && !strcmp(r->group, group) &&
        !strcmp(r->version, version))
      return r;
  }
  return NULL;
}

kl_as_resource *kl_as_find(kl_apiserver *s, const char *group,
                           const char *version, const char *plural) {
  pthread_rwlock_rdlock(&s->mu);
  kl_as_resource *r = find_locked(s, group, version, plural);
  pthread_rwlock_unlock(&s->mu);
  return r && !r->gone ? r : NULL;
}

kl_as_resource *kl_as_find_kind(kl_apiserver *s, const char *api_version,
                                const char *kind) {
  kl_as_resource *found = NULL;
  pthread_rwlock_rdlock(&s->mu);
  for (size_t i = 0; i < s->nres && !found; i++) {
    kl_as_resource *r = s->res[i];
    if (!r->gone && !strcmp(r->kind, kind) &&
        !strcmp(r->api_version, api_version))
      found = r;
  }
  pthread_rwlock_unlock(&s->mu);
  return found;
}

kl_as_resource **kl_as_resources(kl_apiserver *s, size_t *n) {
  pthread_rwlock_rdlock(&s->mu);
  kl_as_resource **a = kl_malloc((s->nres + 1) * sizeof *a);
  size_t j = 0;
  for (size_t i = 0; i < s->nres; i++)
    if (!s->res[i]->gone) a[j++] = s->res[i];
  pthread_rwlock_unlock(&s->mu);
  *n = j;
  return a;
}

static kl_as_resource *ns_res(kl_apiserver *s) { return s->res[3]; }

static char **json_strv(const cJSON *arr) {
  size_t n = (size_t)cJSON_GetArraySize(arr);
  char **v = kl_calloc(n + 1, sizeof *v);
  size_t j = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, arr) if (cJSON_IsString(e)) v[j++] =
      kl_strdup(e->valuestring);
  return v;
}

/* Serves the resources a CRD defines (under the write lock). */
static void crd_register(kl_apiserver *s, const cJSON *crd) {
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(crd, "spec");
  const cJSON *names = cJSON_GetObjectItemCaseSensitive(spec, "names");
  const char *group =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "group"));
  const char *plural =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(names, "plural"));
  const char *kind =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(names, "kind"));
  if (!group || !plural || !kind) return;
  const char *singular =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(names, "singular"));
  const char *list_kind = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(names, "listKind"));
  const char *scope =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "scope"));
  const cJSON *v;
  cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(spec, "versions")) {
    const char *ver =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "name"));
    if (!ver || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(v, "served")))
      continue;
    kl_as_resource *r = find_locked(s, group, ver, plural);
    if (r) {
      r->gone = false;
      continue;
    }
    r = kl_calloc(1, sizeof *r);
    r->group = kl_strdup(group);
    r->version = kl_strdup(ver);
    r->api_version = kl_sprintf("%s/%s", group, ver);
    r->plural = kl_strdup(plural);
    r->singular = kl_strdup(singular ? singular : "");
    r->kind = kl_strdup(kind);
    r->list_kind = list_kind ? kl_strdup(list_kind) : kl_sprintf("%sList", kind);
    r->short_names =
        json_strv(cJSON_GetObjectItemCaseSensitive(names, "shortNames"));
    r->categories =
        json_strv(cJSON_GetObjectItemCaseSensitive(names, "categories"));
    r->fields = kl_calloc(1, sizeof *r->fields);
    r->namespaced = !scope || strcmp(scope, "Cluster") != 0;
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(v, "subresources");
    if (!sub) sub = cJSON_GetObjectItemCaseSensitive(spec, "subresources");
    r->has_status = cJSON_GetObjectItemCaseSensitive(sub, "status") != NULL;
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(sub, "scale");
    const char *sp = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(sc, "specReplicasPath"));
    const char *stp = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(sc, "statusReplicasPath"));
    const char *lp = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(sc, "labelSelectorPath"));
    if (sp && stp) {
      r->has_scale = true;
      r->scale_spec = kl_strdup(sp);
      r->scale_status = kl_strdup(stp);
      r->scale_selector = lp ? kl_strdup(lp) : NULL;
    }
    r->has_generation = true;
    r->custom = true;
    r->crd_name = kl_strdup(md_str((cJSON *)crd, "name"));
    add_resource(s, r);
  }
}

/* ---- GC queue ---------------------------------------------------------- */

static void gc_enqueue(kl_apiserver *s, int kind, kl_as_resource *res,
                       const char *key, const char *uid) {
  pthread_mutex_lock(&s->gmu);
  if (s->ngq == s->capgq) {
    s->capgq = s->capgq ? 2 * s->capgq : 16;
    s->gq = kl_realloc(s->gq, s->capgq * sizeof *s->gq);
  }
  s->gq[s->ngq++] = (gc_item){kind, res, kl_strdup(key ? key : ""),
                              kl_strdup(uid ? uid : "")};
  pthread_cond_signal(&s->gcv);
  pthread_mutex_unlock(&s->gmu);
}

/* ---- namespaces -------------------------------------------------------- */

/* 0 ok, or fills r (404 missing, 403 terminating). Under mu. */
static int check_namespace(kl_apiserver *s, kl_as_resource *res,
                           const char *ns, const char *name,
                           kl_as_result *r) {
  kl_obj *nso = sget(ns_res(s), ns);
  if (!nso) {
    st_notfound(r, ns_res(s), ns);
    return -1;
  }
  kl_span v;
  if (kl_obj_get(nso, "metadata.deletionTimestamp", &v) &&
      kl_json_type(v) == 's') {
    char *msg = kl_sprintf("%s \"%s\" is forbidden: unable to create new "
                           "content in namespace %s because it is being "
                           "terminated", res->plural, name, ns);
    kl_buf d = KL_BUF_INIT;
    kl_buf_adds(&d, "{\"name\":");
    add_q(&d, name);
    kl_buf_adds(&d, ",\"kind\":");
    add_q(&d, res->plural);
    kl_buf_adds(&d, ",\"causes\":[{\"reason\":\"NamespaceTerminating\","
                    "\"message\":");
    char *cm = kl_sprintf("namespace %s is being terminated", ns);
    add_q(&d, cm);
    kl_buf_adds(&d, ",\"field\":\"metadata.namespace\"}]}");
    kl_as_status(r, 403, "Forbidden", msg, d.data);
    free(cm);
    free(msg);
    kl_buf_free(&d);
    return -1;
  }
  return 0;
}

/* ---- create ------------------------------------------------------------ */

static char *manager_of(const kl_as_opts *o) {
  if (o && o->field_manager && o->field_manager[0])
    return kl_strdup(o->field_manager);
  return kl_patch_manager_from_user_agent(o ? o->user_agent : NULL);
}

/* Checks kind/apiVersion of a body against res: 0 or fills r (400). */
static int check_kind(const kl_as_resource *res, const cJSON *body,
                      kl_as_result *r) {
  const char *kind =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body, "kind"));
  const char *av = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(body, "apiVersion"));
  if ((kind && kind[0] && strcmp(kind, res->kind)) ||
      (av && av[0] && strcmp(av, res->api_version) &&
       strcmp(kind ? kind : "", res->kind))) {
    char *msg = kl_sprintf("%s in version \"%s\" cannot be handled as a %s: "
                           "converting (%s.%s) to (%s.%s): unknown conversion",
                           kind ? kind : "", res->version, res->kind,
                           res->version, kind ? kind : "",
                           res->group[0] ? res->group : "core", res->kind);
    st_bad(r, msg);
    free(msg);
    return -1;
  }
  if (av && av[0] && strcmp(av, res->api_version)) {
    char *msg = kl_sprintf("the API version in the data (%s) does not match "
                           "the expected API version (%s)", av,
                           res->api_version);
    st_bad(r, msg);
    free(msg);
    return -1;
  }
  return 0;
}

static void crd_status_fill(cJSON *crd, bool established, const char *now);

/* The create path (under the write lock). obj: NEW tree, consumed.
 * mf_done: managedFields already computed (apply). */
static void create_locked(kl_apiserver *s, kl_as_resource *res,
                          const char *ns, cJSON *obj, bool mf_done,
                          const kl_as_opts *o, kl_as_result *r) {
  char now[32], uid[37];
  now_rfc3339(now);
  if (!cJSON_IsObject(obj)) {
    st_bad(r, "the object provided is not a JSON object");
    goto out;
  }
  if (check_kind(res, obj, r)) goto out;
  cJSON *md = md_of(obj);
  const char *name = md_str(obj, "name");
  const char *gen = md_str(obj, "generateName");
  char *genname = NULL;
  if ((!name || !name[0]) && gen && gen[0]) {
    static const char alpha[] = "bcdfghjklmnpqrstvwxz2456789";
    for (int tries = 0; tries < 16; tries++) {
      unsigned char rb[5];
      fill_random(rb, sizeof rb);
      char suf[6];
      for (int i = 0; i < 5; i++) suf[i] = alpha[rb[i] % 27];
      suf[5] = 0;
      free(genname);
      genname = kl_sprintf("%.58s%s", gen, suf);
      char *k = res->namespaced ? kl_meta_key(ns, genname) : kl_strdup(genname);
      bool taken = sget(res, k) != NULL;
      free(k);
      if (!taken) break;
    }
    set_str(md, "name", genname);
    free(genname);
    name = md_str(obj, "name");
  }
  if (!name || !name[0]) {
    st_invalid_field(r, res->kind, "", "metadata.name", NULL,
                     "Required value: name or generateName is required");
    goto out;
  }
  if (res->namespaced) {
    const char *bns = md_str(obj, "namespace");
    if (bns && bns[0] && strcmp(bns, ns)) {
      st_bad(r, "the namespace of the provided object does not match the "
                "namespace sent on the request");
      goto out;
    }
    set_str(md, "namespace", ns);
  } else {
    cJSON_DeleteItemFromObjectCaseSensitive(md, "namespace");
  }
  const char *why = name_problem(res, name);
  if (why) {
    st_invalid_field(r, res->kind, name, "metadata.name", name, why);
    goto out;
  }
  if (res->namespaced && check_namespace(s, res, ns, name, r)) goto out;
  char *key = res->namespaced ? kl_meta_key(ns, name) : kl_strdup(name);
  if (sget(res, key)) {
    st_res(r, res, name, 409, "AlreadyExists", "%s \"%s\" already exists");
    free(key);
    goto out;
  }
  free(key);
  set_str(obj, "kind", res->kind);
  set_str(obj, "apiVersion", res->api_version);
  new_uid(uid);
  set_str(md, "uid", uid);
  set_str(md, "creationTimestamp", now);
  cJSON_DeleteItemFromObjectCaseSensitive(md, "selfLink");
  cJSON_DeleteItemFromObjectCaseSensitive(md, "deletionTimestamp");
  cJSON_DeleteItemFromObjectCaseSensitive(md, "deletionGracePeriodSeconds");
  cJSON_DeleteItemFromObjectCaseSensitive(md, "resourceVersion");
  if (res->has_generation) set_num(md, "generation", 1);
  else cJSON_DeleteItemFromObjectCaseSensitive(md, "generation");
  bool is_ns = !strcmp(res->plural, "namespaces") && !res->group[0];
  bool is_crd = !strcmp(res->plural, "customresourcedefinitions");
  if (res->has_status && !is_ns && !is_crd)
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
  if (is_ns) {
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "spec");
    cJSON *spec = cJSON_AddObjectToObject(obj, "spec");
    cJSON *fin = cJSON_AddArrayToObject(spec, "finalizers");
    cJSON_AddItemToArray(fin, cJSON_CreateString("kubernetes"));
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    cJSON *st = cJSON_AddObjectToObject(obj, "status");
    cJSON_AddStringToObject(st, "phase", "Active");
  }
  if (is_crd) crd_status_fill(obj, false, now);
  if (!mf_done) {
    char *mgr = manager_of(o);
    kl_patch_record_update(NULL, obj, mgr, now, res->api_version);
    free(mgr);
  }
  if (o && o->dry_run) {
    kl_obj *ro = render(res, obj);
    r->code = 201;
    emit_object(&r->body, ro, o->output);
    kl_obj_unref(ro);
    goto out;
  }
  set_rv(obj, s->rv + 1);
  kl_obj *ro = render(res, obj);
  commit_put(s, res, ro);
  r->code = 201;
  emit_object(&r->body, ro, o ? o->output : 0);
  if (is_crd) {
    crd_register(s, obj);
    crd_status_fill(obj, true, now);
    set_rv(obj, s->rv + 1);
    commit_put(s, res, render(res, obj));
  }
out:
  cJSON_Delete(obj);
}

static void crd_status_fill(cJSON *crd, bool established, const char *now) {
  cJSON *spec = cJSON_GetObjectItemCaseSensitive(crd, "spec");
  cJSON_DeleteItemFromObjectCaseSensitive(crd, "status");
  cJSON *st = cJSON_AddObjectToObject(crd, "status");
  if (!established) {
    cJSON_AddNullToObject(st, "conditions");
    cJSON *an = cJSON_AddObjectToObject(st, "acceptedNames");
    cJSON_AddStringToObject(an, "plural", "");
    cJSON_AddStringToObject(an, "kind", "");
  } else {
    cJSON *conds = cJSON_AddArrayToObject(st, "conditions");
    static const char *const c[2][3] = {
        {"NamesAccepted", "NoConflicts", "no conflicts found"},
        {"Established", "InitialNamesAccepted",
         "the initial names have been accepted"}};
    for (int i = 0; i < 2; i++) {
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "type", c[i][0]);
      cJSON_AddStringToObject(e, "status", "True");
      cJSON_AddStringToObject(e, "lastTransitionTime", now);
      cJSON_AddStringToObject(e, "reason", c[i][1]);
      cJSON_AddStringToObject(e, "message", c[i][2]);
      cJSON_AddItemToArray(conds, e);
    }
    cJSON_AddItemToObject(
        st, "acceptedNames",
        cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(spec, "names"), 1));
  }
  cJSON *sv = cJSON_AddArrayToObject(st, "storedVersions");
  cJSON *v;
  cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(spec, "versions")) {
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "storage")))
      cJSON_AddItemToArray(
          sv, cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(v, "name"), 1));
  }
}

void kl_as_create(kl_apiserver *s, kl_as_resource *res, const char *ns,
                  const cJSON *body, const kl_as_opts *o, kl_as_result *r) {
  cJSON *obj = cJSON_Duplicate(body, 1);
  pthread_rwlock_wrlock(&s->mu);
  create_locked(s, res, res->namespaced ? ns : "", obj, false, o, r);
  pthread_rwlock_unlock(&s->mu);
}

/* ---- delete ------------------------------------------------------------ */

static bool has_finalizer(cJSON *o, const char *f) {
  cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(md_of(o),
                                                         "finalizers")) {
    if (cJSON_IsString(e) && !strcmp(e->valuestring, f)) return true;
  }
  return false;
}

static int nfinalizers(cJSON *o) {
  return cJSON_GetArraySize(
      cJSON_GetObjectItemCaseSensitive(md_of(o), "finalizers"));
}

static void remove_crd_resources(kl_apiserver *s, const char *crd_name);

/* Deletes cur (stored) with policy; under the write lock. Returns 0 when
 * the object is gone, or 1 and a NEW reference in *still (the object, now
 * marked for deletion). */
static int delete_locked(kl_apiserver *s, kl_as_resource *res, kl_obj *cur,
                         const char *policy, bool dry, kl_obj **still) {
  *still = NULL;
  kl_span v;
  bool deleting = kl_obj_get(cur, "metadata.deletionTimestamp", &v) &&
                  kl_json_type(v) == 's';
  bool is_ns = !strcmp(res->plural, "namespaces") && !res->group[0];
  cJSON *t = parse_obj(cur);
  int fg = policy && !strcmp(policy, "Foreground");
  int orphan = policy && !strcmp(policy, "Orphan");
  char now[32];
  now_rfc3339(now);
  if (deleting && !(fg && !has_finalizer(t, "foregroundDeletion"))) {
    cJSON_Delete(t);
    *still = kl_obj_ref(cur);
    return 1;
  }
  cJSON *md = md_of(t);
  if (fg || orphan) {
    const char *f = fg ? "foregroundDeletion" : "orphan";
    if (!has_finalizer(t, f)) {
      cJSON *fin = cJSON_GetObjectItemCaseSensitive(md, "finalizers");
      if (!cJSON_IsArray(fin)) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, "finalizers");
        fin = cJSON_AddArrayToObject(md, "finalizers");
      }
      cJSON_AddItemToArray(fin, cJSON_CreateString(f));
    }
  }
  if (is_ns || nfinalizers(t) > 0) {
    if (!deleting) {
      set_str(md, "deletionTimestamp", now);
      if (!is_ns) set_num(md, "deletionGracePeriodSeconds", 0);
    }
    if (is_ns) {
      cJSON *st = cJSON_GetObjectItemCaseSensitive(t, "status");
      if (!cJSON_IsObject(st)) st = cJSON_AddObjectToObject(t, "status");
      set_str(st, "phase", "Terminating");
    }
    if (dry) {
      *still = render(res, t);
      cJSON_Delete(t);
      return 1;
    }
    set_rv(t, s->rv + 1);
    kl_obj *no = render(res, t);
    cJSON_Delete(t);
    commit_put(s, res, no);
    *still = kl_obj_ref(no);
    const char *uid = kl_obj_uid(no);
    if (is_ns)
      gc_enqueue(s, GC_NAMESPACE, res, kl_obj_key(no), uid);
    else if (fg)
      gc_enqueue(s, GC_FOREGROUND, res, kl_obj_key(no), uid);
    else if (orphan)
      gc_enqueue(s, GC_ORPHAN, res, kl_obj_key(no), uid);
    return 1;
  }
  cJSON_Delete(t);
  if (dry) return 0;
  char *uid = kl_strdup(kl_obj_uid(cur));
  char *key = kl_strdup(kl_obj_key(cur));
  char *crd = !strcmp(res->plural, "customresourcedefinitions")
                  ? kl_strdup(kl_obj_name(cur))
                  : NULL;
  commit_delete(s, res, key, NULL);
  if (crd) remove_crd_resources(s, crd);
  if (s->n_owned) gc_enqueue(s, GC_BACKGROUND, res, key, uid);
  free(crd);
  free(uid);
  free(key);
  return 0;
}

static void remove_crd_resources(kl_apiserver *s, const char *crd_name) {
  for (size_t i = 0; i < s->nres; i++) {
    kl_as_resource *r = s->res[i];
    if (!r->custom || r->gone || !r->crd_name || strcmp(r->crd_name, crd_name))
      continue;
    size_t n;
    kl_obj **a = sorted_of(r, &n);
    char **keys = kl_malloc((n + 1) * sizeof *keys);
    for (size_t j = 0; j < n; j++) keys[j] = kl_strdup(kl_obj_key(a[j]));
    for (size_t j = 0; j < n; j++) {
      commit_delete(s, r, keys[j], NULL);
      free(keys[j]);
    }
    free(keys);
    r->gone = true;
  }
}

static const char *policy_of(const cJSON *delopts, const kl_as_opts *o) {
  const char *p = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(delopts, "propagationPolicy"));
  if (p) return p;
  if (o && o->propagation && o->propagation[0]) return o->propagation;
  return NULL;
}

static bool dry_of(const cJSON *delopts, const kl_as_opts *o) {
  if (o && o->dry_run) return true;
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(delopts, "dryRun");
  return cJSON_GetArraySize(d) > 0;
}

static void success_status(kl_as_result *r, const kl_as_resource *res,
                           const kl_obj *obj) {
  r->code = 200;
  r->body.len = 0;
  kl_buf_adds(&r->body, "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                        "\"metadata\":{},\"status\":\"Success\",\"details\":"
                        "{\"name\":");
  add_q(&r->body, kl_obj_name(obj));
  if (res->group[0]) {
    kl_buf_adds(&r->body, ",\"group\":");
    add_q(&r->body, res->group);
  }
  kl_buf_adds(&r->body, ",\"kind\":");
  add_q(&r->body, res->plural);
  kl_buf_adds(&r->body, ",\"uid\":");
  add_q(&r->body, kl_obj_uid(obj));
  kl_buf_adds(&r->body, "}}");
}

void kl_as_delete(kl_apiserver *s, kl_as_resource *res, const char *ns,
                  const char *name, const cJSON *delopts, const kl_as_opts *o,
                  kl_as_result *r) {
  char *key = res->namespaced ? kl_meta_key(ns, name) : kl_strdup(name);
  pthread_rwlock_wrlock(&s->mu);
  kl_obj *cur = sget(res, key);
  if (!cur) {
    st_notfound(r, res, name);
    goto out;
  }
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(delopts, "preconditions");
  const char *puid =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(pre, "uid"));
  const char *prv = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(pre, "resourceVersion"));
  if (puid && strcmp(puid, kl_obj_uid(cur))) {
    st_precondition(r, res, name, "UID", puid, kl_obj_uid(cur),
                    "deleted and then recreated");
    goto out;
  }
  if (prv && strcmp(prv, kl_obj_resource_version(cur))) {
    st_precondition(r, res, name, "ResourceVersion", prv,
                    kl_obj_resource_version(cur), "modified");
    goto out;
  }
  kl_obj *keep = kl_obj_ref(cur), *still = NULL;
  int rc = delete_locked(s, res, cur, policy_of(delopts, o),
                         dry_of(delopts, o), &still);
  if (rc == 1) {
    r->code = 200;
    emit_object(&r->body, still, o ? o->output : 0);
  } else {
    success_status(r, res, keep);
  }
  kl_obj_unref(still);
  kl_obj_unref(keep);
out:
  pthread_rwlock_unlock(&s->mu);
  free(key);
}

/* ---- selectors --------------------------------------------------------- */

typedef struct filter {
  kl_selector *ls;
  kl_fieldsel *fs;
} filter;

static void filter_free(filter *f) {
  kl_selector_free(f->ls);
  kl_fieldsel_free(f->fs);
}

static int filter_parse(const kl_as_resource *res, const kl_as_opts *o,
                        filter *f, kl_as_result *r) {
  memset(f, 0, sizeof *f);
  char *err = NULL;
  if (o && o->label_selector && o->label_selector[0] &&
      kl_selector_parse(o->label_selector, &f->ls, &err)) {
    st_bad(r, err ? err : "invalid label selector");
    free(err);
    return -1;
  }
  if (o && o->field_selector && o->field_selector[0]) {
    if (kl_fieldsel_parse(o->field_selector, &f->fs, &err)) {
      st_bad(r, err ? err : "invalid field selector");
      free(err);
      filter_free(f);
      return -1;
    }
    for (size_t i = 0; i < kl_fieldsel_count(f->fs); i++) {
      const char *fld = kl_fieldsel_field(f->fs, i);
      bool ok = !strcmp(fld, "metadata.name") ||
                !strcmp(fld, "metadata.namespace");
      for (char **p = res->fields; !ok && p && *p; p++) ok = !strcmp(*p, fld);
      if (!ok) {
        kl_buf m = KL_BUF_INIT;
        kl_buf_addf(&m, "\"%s\" is not a known field selector: only "
                        "\"metadata.name\", \"metadata.namespace\"", fld);
        for (char **p = res->fields; p && *p; p++)
          kl_buf_addf(&m, ", \"%s\"", *p);
        st_bad(r, m.data);
        kl_buf_free(&m);
        filter_free(f);
        return -1;
      }
    }
  }
  return 0;
}

static bool filter_match(const filter *f, const kl_obj *obj) {
  if (f->ls && !kl_selector_matches_obj(f->ls, obj)) return false;
  if (f->fs && !kl_fieldsel_matches_obj(f->fs, obj)) return false;
  return true;
}

/* ---- list -------------------------------------------------------------- */

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url_encode(kl_buf *out, const unsigned char *p, size_t n) {
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
    kl_buf_addc(out, b64url[v >> 18]);
    kl_buf_addc(out, b64url[(v >> 12) & 63]);
    kl_buf_addc(out, b64url[(v >> 6) & 63]);
    kl_buf_addc(out, b64url[v & 63]);
  }
  if (n - i == 1) {
    unsigned v = (unsigned)p[i] << 16;
    kl_buf_addc(out, b64url[v >> 18]);
    kl_buf_addc(out, b64url[(v >> 12) & 63]);
  } else if (n - i == 2) {
    unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
    kl_buf_addc(out, b64url[v >> 18]);
    kl_buf_addc(out, b64url[(v >> 12) & 63]);
    kl_buf_addc(out, b64url[(v >> 6) & 63]);
  }
}

/* Returns the index of the first invalid byte, or -1 when decoded. */
static long b64url_decode(const char *s, kl_buf *out) {
  unsigned v = 0;
  int bits = 0;
  size_t i;
  for (i = 0; s[i] && s[i] != '='; i++) {
    const char *c = strchr(b64url, s[i]);
    if (!c || !s[i]) return (long)i;
    v = v << 6 | (unsigned)(c - b64url);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      kl_buf_addc(out, (char)((v >> bits) & 0xff));
    }
  }
  for (; s[i] == '='; i++) {
  }
  if (s[i]) return (long)i;
  return -1;
}

static void continue_token(kl_buf *out, long long rv, const char *start) {
  kl_buf j = KL_BUF_INIT;
  kl_buf_addf(&j, "{\"v\":\"meta.k8s.io/v1\",\"rv\":%lld,\"start\":", rv);
  kl_json_quote(&j, start, strlen(start));
  j.len--; /* before the closing quote: the NUL */
  kl_buf_adds(&j, "\\u0000\"}");
  b64url_encode(out, (const unsigned char *)j.data, j.len);
  kl_buf_free(&j);
}

/* 0 ok, -1 r filled. */
static int continue_parse(const char *tok, uint64_t *rv, char **start,
                          kl_as_result *r) {
  kl_buf dec = KL_BUF_INIT;
  long bad = b64url_decode(tok, &dec);
  if (bad >= 0) {
    char *m = kl_sprintf("invalid continue token: continue key is not valid: "
                         "illegal base64 data at input byte %ld", bad);
    st_bad(r, m);
    free(m);
    kl_buf_free(&dec);
    return -1;
  }
  kl_span top = {dec.data ? dec.data : "", dec.len}, v, st;
  char *sv = NULL;
  if (kl_json_validate(top.p, top.n) || !kl_json_get(top, "rv", &v) ||
      kl_json_type(v) != 'n' || !kl_json_get(top, "start", &st) ||
      !(sv = kl_json_strdup(st))) {
    st_bad(r, "invalid continue token: continue key is not valid");
    kl_buf_free(&dec);
    return -1;
  }
  long long x = strtoll(v.p, NULL, 10);
  size_t sl = strlen(sv);
  /* kl_json_strdup stops at the NUL from \u0000: sv is the key */
  (void)sl;
  *rv = x < 0 ? 0 : (uint64_t)x;
  *start = sv;
  kl_buf_free(&dec);
  if (x <= 0) {
    st_bad(r, "invalid continue token: continue key is not valid");
    free(sv);
    *start = NULL;
    return -1;
  }
  return 0;
}

/* Waits (up to secs) until the published RV reaches rv. */
static bool wait_rv(kl_apiserver *s, uint64_t rv, double secs) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)secs;
  pthread_mutex_lock(&s->hmu);
  while (s->hrv < rv && !s->stopping)
    if (pthread_cond_timedwait(&s->hcv, &s->hmu, &ts) == ETIMEDOUT) break;
  bool ok = s->hrv >= rv;
  pthread_mutex_unlock(&s->hmu);
  return ok;
}

static int parse_rv(const char *s, uint64_t *out) {
  if (!s || !*s) return 1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end || errno || s[0] == '-' || s[0] == '+' || s[0] == ' ') return -1;
  *out = v;
  return 0;
}

static void st_rv_invalid(kl_as_result *r, const char *rv) {
  char *m = kl_sprintf("resourceVersion: Invalid value: \"%s\": "
                       "strconv.ParseUint: parsing \"%s\": invalid syntax",
                       rv, rv);
  kl_as_status(r, 500, NULL, m, NULL);
  free(m);
}

static void st_too_large(kl_as_result *r, uint64_t want, uint64_t cur) {
  char *m = kl_sprintf("Timeout: Too large resource version: %llu, current: "
                       "%llu", (unsigned long long)want,
                       (unsigned long long)cur);
  kl_as_status(r, 504, "Timeout", m,
               "{\"causes\":[{\"reason\":\"ResourceVersionTooLarge\","
               "\"message\":\"Too large resource version\"}],"
               "\"retryAfterSeconds\":1}");
  r->retry_after = 1;
  free(m);
}

/* An override: the state of key at the snapshot RV (obj NULL: absent). */
typedef struct ovr {
  const char *key;
  kl_obj *obj;
} ovr;

static int cmp_ovr(const void *x, const void *y) {
  return strcmp(((const ovr *)x)->key, ((const ovr *)y)->key);
}

/* The first index in a (sorted by key) with key > k (or >= when incl). */
static size_t lower_bound(kl_obj **a, size_t n, const char *k, bool incl) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(kl_obj_key(a[mid]), k);
    if (c < 0 || (!incl && c == 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static bool in_scope(const kl_as_resource *res, const char *ns,
                     const char *key) {
  if (!res->namespaced || !ns[0]) return true;
  size_t l = strlen(ns);
  return !strncmp(key, ns, l) && key[l] == '/';
}

/* The state of res at rv (sorted by key), as a NEW reference on a snapshot
 * (release with snap_unref). Call with mu held for reading and
 * hist_min <= rv <= s->rv. The current snapshot serves every rv since the
 * resource last changed; retired ones serve the continue tokens of lists
 * that began before a change; any other rv is rebuilt from the current
 * state by undoing the later changes (the first change per key after rv
 * carries the key's state at rv) and cached in place of the oldest. */
static snap *snap_at(kl_apiserver *s, kl_as_resource *res, uint64_t rv) {
  store *st = res->store;
  pthread_mutex_lock(&st->smu);
  snap *sn = NULL;
  if (rv >= st->mod_rv) sn = cur_locked(st);
  for (int i = 0; !sn && i < NOLD; i++)
    if (st->old[i] && st->old[i]->lo <= rv && rv <= st->old[i]->hi)
      sn = st->old[i];
  if (sn) {
    sn->refs++;
    pthread_mutex_unlock(&st->smu);
    return sn;
  }
  snap *c = cur_locked(st);
  /* overrides: the state at rv of the keys changed after it */
  ovr *ov = NULL;
  size_t nov = 0, cap = 0;
  kl_hmap seen;
  kl_hmap_init(&seen, KL_HMAP_BORROW_KEYS);
  for (uint64_t x = rv + 1; x <= s->rv; x++) {
    hist_ev *e = &s->ring[x % s->cap];
    if (e->rv != x || e->res != res) continue;
    const char *k = kl_obj_key(e->obj);
    if (kl_hmap_has(&seen, k)) continue;
    kl_hmap_put(&seen, k, e);
    if (nov == cap) {
      cap = cap ? 2 * cap : 16;
      ov = kl_realloc(ov, cap * sizeof *ov);
    }
    ov[nov++] = (ovr){k, e->prev};
  }
  if (nov) qsort(ov, nov, sizeof *ov, cmp_ovr);
  sn = kl_calloc(1, sizeof *sn);
  sn->v = kl_malloc((c->n + nov + 1) * sizeof *sn->v);
  size_t i = 0, oi = 0;
  for (;;) {
    while (i < c->n && kl_hmap_has(&seen, kl_obj_key(c->v[i]))) i++;
    if (i == c->n && oi == nov) break;
    if (oi == nov ||
        (i < c->n && strcmp(kl_obj_key(c->v[i]), ov[oi].key) < 0)) {
      sn->v[sn->n++] = kl_obj_ref(c->v[i++]);
    } else {
      if (ov[oi].obj) sn->v[sn->n++] = kl_obj_ref(ov[oi].obj);
      oi++;
    }
  }
  kl_hmap_free(&seen);
  free(ov);
  sn->lo = sn->hi = rv;
  sn->refs = 2; /* the cache's and the caller's */
  snap *drop = st->old[NOLD - 1];
  memmove(st->old + 1, st->old, (NOLD - 1) * sizeof *st->old);
  st->old[0] = sn;
  pthread_mutex_unlock(&st->smu);
  snap_unref(st, drop);
  return sn;
}

void kl_as_list(kl_apiserver *s, kl_as_resource *res, const char *ns,
                const kl_as_opts *o, kl_as_result *r) {
  filter f;
  if (!res->namespaced) ns = "";
  if (filter_parse(res, o, &f, r)) return;
  const char *rvs = o->resource_version;
  const char *match = o->rv_match && o->rv_match[0] ? o->rv_match : NULL;
  uint64_t want = 0, at = 0;
  char *start = NULL;
  bool unsorted = false;
  int prv = parse_rv(rvs, &want);
  if (match && prv == 1) {
    st_options_invalid(r, "meta.k8s.io", "ListOptions", "resourceVersionMatch",
                       "FieldValueForbidden",
                       "Forbidden: resourceVersionMatch is forbidden unless "
                       "resourceVersion is provided");
    goto out;
  }
  if (prv < 0) {
    st_rv_invalid(r, rvs);
    goto out;
  }
  if (match && strcmp(match, "Exact") && strcmp(match, "NotOlderThan")) {
    char *m = kl_sprintf("ListOptions.meta.k8s.io \"\" is invalid: "
                         "resourceVersionMatch: Unsupported value: \"%s\": "
                         "supported values: \"Exact\", \"NotOlderThan\"",
                         match);
    kl_as_status(r, 422, "Invalid", m, NULL);
    free(m);
    goto out;
  }
  if (o->cont && o->cont[0]) {
    if (continue_parse(o->cont, &at, &start, r)) goto out;
  } else if (prv == 0 && want == 0 && (!match || strcmp(match, "Exact"))) {
    unsorted = true;
  } else if (prv == 0 && want > 0) {
    bool exact = (match && !strcmp(match, "Exact")) || (!match && o->limit > 0);
    if (kl_as_current_rv(s) < want && !wait_rv(s, want, 3)) {
      st_too_large(r, want, kl_as_current_rv(s));
      goto out;
    }
    if (exact) at = want;
  }

  kl_objv items = {0};
  kl_buf cont = KL_BUF_INIT;
  long long remaining = -1;
  uint64_t list_rv;
  snap *sn = NULL;
  pthread_rwlock_rdlock(&s->mu);
  list_rv = s->rv;
  if (at && at < s->hist_min) {
    pthread_rwlock_unlock(&s->mu);
    if (start) {
      kl_buf t = KL_BUF_INIT, d = KL_BUF_INIT;
      continue_token(&t, -1, start);
      kl_as_status(r, 410, "Expired",
                   "The provided continue parameter is too old to display a "
                   "consistent list result. You can start a new list without "
                   "the continue parameter, or use the continue token in "
                   "this response to retrieve the remainder of the results. "
                   "Continuing with the provided token results in an "
                   "inconsistent list - objects that were created, modified, "
                   "or deleted between the time the first chunk was returned "
                   "and now may show up in the list.", NULL);
      /* the Status carries the fresh token in metadata.continue */
      kl_buf_adds(&d, "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                      "\"metadata\":{\"continue\":\"");
      kl_buf_add(&d, t.data, t.len);
      kl_buf_adds(&d, "\"}");
      size_t skip = strlen("{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                           "\"metadata\":{}");
      kl_buf_add(&d, r->body.data + skip, r->body.len - skip);
      kl_buf_free(&r->body);
      r->body = d;
      kl_buf_free(&t);
    } else {
      kl_as_status(r, 410, "Expired",
                   "The resourceVersion for the provided list is too old.",
                   NULL);
    }
    goto out;
  }
  if (at) list_rv = at;
  if (unsorted) {
    const char *k;
    void *v;
    store *st = res->store;
    for (size_t i = 0; kl_hmap_next(&st->objs, &i, &k, &v);)
      if (in_scope(res, ns, k) && filter_match(&f, v))
        kl_objv_push(&items, kl_obj_ref(v));
  } else {
    sn = snap_at(s, res, list_rv);
  }
  pthread_rwlock_unlock(&s->mu);
  if (sn) {
    /* a page: binary search for the namespace and the continue key, then
     * byte copies of the snapshot's objects (no lock held) */
    kl_obj **a = sn->v;
    size_t n = sn->n, i = 0, iend = n;
    char *nsprefix = ns[0] ? kl_sprintf("%s/", ns) : kl_strdup("");
    if (ns[0]) {
      i = lower_bound(a, n, nsprefix, true);
      char *hi = kl_sprintf("%s0", ns); /* '0' follows '/' */
      iend = lower_bound(a, n, hi, true);
      free(hi);
    }
    if (start) {
      char *full = kl_sprintf("%s%s", nsprefix, start);
      size_t j = lower_bound(a, iend, full, false);
      if (j > i) i = j;
      free(full);
    }
    long limit = o->limit > 0 ? o->limit : 0;
    bool selectors = f.ls || f.fs;
    const kl_obj *last = NULL;
    bool more = false;
    for (; i < iend; i++) {
      kl_obj *cand = a[i];
      if (limit && (long)items.n >= limit) {
        if (!selectors) {
          more = true;
          remaining = (long long)(iend - i);
          break;
        }
        if (filter_match(&f, cand)) {
          more = true;
          break;
        }
        continue;
      }
      if (!filter_match(&f, cand)) continue;
      kl_objv_push(&items, kl_obj_ref(cand));
      last = cand;
    }
    if (more && last)
      continue_token(&cont, (long long)list_rv,
                     kl_obj_key(last) + strlen(nsprefix));
    else
      remaining = -1;
    free(nsprefix);
    snap_unref(res->store, sn);
  }

  char rvb[32];
  snprintf(rvb, sizeof rvb, "%llu", (unsigned long long)list_rv);
  r->code = 200;
  if (o->output == KL_AS_OUT_TABLE &&
      kl_as_table_list(s, res, items.v, items.n, rvb, cont.len ? cont.data : NULL,
                       remaining, o, &r->body) == 0) {
    kl_objv_free(&items);
    kl_buf_free(&cont);
    goto out;
  }
  r->body.len = 0;
  kl_buf *b = &r->body;
  size_t size = 256 + cont.len;
  for (size_t i = 0; i < items.n; i++) size += kl_obj_span(items.v[i]).n + 1;
  kl_buf_reserve(b, size);
  if (o->output == KL_AS_OUT_METADATA)
    kl_buf_adds(b, "{\"kind\":\"PartialObjectMetadataList\",\"apiVersion\":"
                   "\"meta.k8s.io/v1\"");
  else
    kl_buf_addf(b, "{\"kind\":\"%s\",\"apiVersion\":\"%s\"", res->list_kind,
                res->api_version);
  kl_buf_addf(b, ",\"metadata\":{\"resourceVersion\":\"%s\"", rvb);
  if (cont.len) {
    kl_buf_adds(b, ",\"continue\":\"");
    kl_buf_add(b, cont.data, cont.len);
    kl_buf_addc(b, '"');
    if (remaining >= 0) kl_buf_addf(b, ",\"remainingItemCount\":%lld", remaining);
  }
  kl_buf_adds(b, "},\"items\":[");
  for (size_t i = 0; i < items.n; i++) {
    if (i) kl_buf_addc(b, ',');
    emit_item(b, res, items.v[i], o->output);
  }
  kl_buf_adds(b, "]}");
  kl_objv_free(&items);
  kl_buf_free(&cont);
out:
  free(start);
  filter_free(&f);
}

/* ---- the scale subresource --------------------------------------------- */

static bool is_scale(const char *sub) { return sub && !strcmp(sub, "scale"); }

/* The node at a ".a.b" path in o (borrowed), or NULL. */
static cJSON *path_get(const cJSON *o, const char *path) {
  char *p = kl_strdup(path ? path : "");
  cJSON *cur = (cJSON *)o;
  for (char *save = NULL, *t = strtok_r(p, ".", &save); t && cur;
       t = strtok_r(NULL, ".", &save))
    cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, t)
                              : NULL;
  free(p);
  return cur;
}

/* Sets the number at a ".a.b" path in o, creating (or replacing non-object)
 * intermediate objects. */
static void path_set_num(cJSON *o, const char *path, double v) {
  char *p = kl_strdup(path);
  cJSON *cur = o;
  char *save = NULL, *t = strtok_r(p, ".", &save);
  while (t) {
    char *next = strtok_r(NULL, ".", &save);
    if (!next) {
      set_num(cur, t, v);
      break;
    }
    cJSON *c = cJSON_GetObjectItemCaseSensitive(cur, t);
    if (!cJSON_IsObject(c)) {
      cJSON_DeleteItemFromObjectCaseSensitive(cur, t);
      c = cJSON_AddObjectToObject(cur, t);
    }
    cur = c;
    t = next;
  }
  free(p);
}

static int cmp_str(const void *x, const void *y) {
  return strcmp(*(char *const *)x, *(char *const *)y);
}

/* A metav1.LabelSelector in its string form, as labels.Selector.String()
 * prints it: requirements sorted by key, values sorted ("app=web",
 * "tier in (a,b)", "x", "!y"). */
static void selector_string(const cJSON *sel, kl_buf *out) {
  char **req = NULL;
  size_t n = 0, cap = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(sel, "matchLabels")) {
    if (!cJSON_IsString(e)) continue;
    if (n == cap) req = kl_realloc(req, (cap = cap ? 2 * cap : 8) * sizeof *req);
    req[n++] = kl_sprintf("%s=%s", e->string, e->valuestring);
  }
  cJSON_ArrayForEach(e,
                     cJSON_GetObjectItemCaseSensitive(sel, "matchExpressions")) {
    const char *k =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "key"));
    const char *op =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "operator"));
    if (!k || !op) continue;
    char *r;
    if (!strcmp(op, "Exists")) {
      r = kl_strdup(k);
    } else if (!strcmp(op, "DoesNotExist")) {
      r = kl_sprintf("!%s", k);
    } else if (!strcmp(op, "In") || !strcmp(op, "NotIn")) {
      const cJSON *vs = cJSON_GetObjectItemCaseSensitive(e, "values");
      size_t nv = 0;
      char **v = kl_calloc((size_t)cJSON_GetArraySize(vs) + 1, sizeof *v);
      const cJSON *x;
      cJSON_ArrayForEach(x, vs) if (cJSON_IsString(x)) v[nv++] = x->valuestring;
      qsort(v, nv, sizeof *v, cmp_str);
      kl_buf b = KL_BUF_INIT;
      kl_buf_addf(&b, "%s %s (", k, strcmp(op, "In") ? "notin" : "in");
      for (size_t i = 0; i < nv; i++)
        if (!i || strcmp(v[i], v[i - 1]))
          kl_buf_addf(&b, "%s%s", i ? "," : "", v[i]);
      kl_buf_addc(&b, ')');
      free(v);
      r = kl_buf_detach(&b, NULL);
    } else {
      continue;
    }
    if (n == cap) req = kl_realloc(req, (cap = cap ? 2 * cap : 8) * sizeof *req);
    req[n++] = r;
  }
  qsort(req, n, sizeof *req, cmp_str);
  for (size_t i = 0; i < n; i++) {
    if (i) kl_buf_addc(out, ',');
    kl_buf_adds(out, req[i]);
    free(req[i]);
  }
  free(req);
}

static long replicas_at(const cJSON *o, const char *path) {
  const cJSON *v = path_get(o, path);
  return cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
}

/* Fills r (200) with the autoscaling/v1 Scale of the parent obj, in the
 * field order and omitempty rules of kube-apiserver (spec.replicas is
 * omitted when 0, status.replicas never; status.selector when empty). */
static void emit_scale(kl_as_result *r, const kl_as_resource *res,
                       const cJSON *obj) {
  kl_buf *b = &r->body;
  r->code = 200;
  r->body.len = 0;
  kl_buf_adds(b, "{\"kind\":\"Scale\",\"apiVersion\":\"autoscaling/v1\","
                 "\"metadata\":{");
  static const char *const mk[] = {"name", "namespace", "uid",
                                   "resourceVersion", "creationTimestamp",
                                   NULL};
  bool first = true;
  for (int i = 0; mk[i]; i++) {
    const char *v = md_str((cJSON *)obj, mk[i]);
    if (!v || !v[0]) continue;
    kl_buf_addf(b, "%s\"%s\":", first ? "" : ",", mk[i]);
    add_q(b, v);
    first = false;
  }
  kl_buf_adds(b, "},\"spec\":{");
  long spec = replicas_at(obj, res->scale_spec);
  if (spec) kl_buf_addf(b, "\"replicas\":%ld", spec);
  kl_buf_addf(b, "},\"status\":{\"replicas\":%ld",
              replicas_at(obj, res->scale_status));
  kl_buf sel = KL_BUF_INIT;
  if (res->scale_selector) {
    const char *v = cJSON_GetStringValue(path_get(obj, res->scale_selector));
    if (v) kl_buf_adds(&sel, v);
  } else {
    selector_string(
        cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(obj, "spec"), "selector"),
        &sel);
  }
  if (sel.len) {
    kl_buf_adds(b, ",\"selector\":");
    kl_json_quote(b, sel.data, sel.len);
  }
  kl_buf_free(&sel);
  kl_buf_adds(b, "}}");
}

static void update_locked(kl_apiserver *s, kl_as_resource *res,
                          const char *name, const char *sub, kl_obj *cur,
                          cJSON *nobj, bool is_put, bool mf_done,
                          const kl_as_opts *o, kl_as_result *r);

/* Writes the replicas of a Scale (NEW tree, consumed) to the parent cur and
 * answers the resulting Scale (under the write lock). */
static void scale_write_locked(kl_apiserver *s, kl_as_resource *res,
                               const char *name, kl_obj *cur, cJSON *scale,
                               const kl_as_opts *o, kl_as_result *r) {
  cJSON *parent = NULL;
  if (!cJSON_IsObject(scale)) {
    st_bad(r, "the object provided is not a JSON object");
    goto out;
  }
  const char *kind =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(scale, "kind"));
  if (kind && kind[0] && strcmp(kind, "Scale")) {
    char *m = kl_sprintf("%s in version \"v1\" cannot be handled as a Scale: "
                         "converting (%s) to (Scale): unknown conversion",
                         kind, kind);
    st_bad(r, m);
    free(m);
    goto out;
  }
  const char *bname = md_str(scale, "name");
  if (bname && bname[0] && strcmp(bname, name)) {
    char *m = kl_sprintf("the name of the object (%s) does not match the name "
                         "on the URL (%s)", bname, name);
    st_bad(r, m);
    free(m);
    goto out;
  }
  const char *brv = md_str(scale, "resourceVersion");
  if (brv && brv[0] && strcmp(brv, kl_obj_resource_version(cur))) {
    st_conflict(r, res, name);
    goto out;
  }
  const cJSON *rep = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(scale, "spec"), "replicas");
  double want = cJSON_IsNumber(rep) ? rep->valuedouble : 0;
  if ((rep && !cJSON_IsNumber(rep) && !cJSON_IsNull(rep)) ||
      want != (double)(long)want || want > 2147483647.0) {
    st_bad(r, "Scale in version \"v1\" cannot be handled as a Scale: "
              "spec.replicas: expected an int32");
    goto out;
  }
  if (want < 0) {
    char *v = kl_sprintf("%ld", (long)want);
    char *m = kl_sprintf("Scale.autoscaling \"%s\" is invalid: spec.replicas: "
                         "Invalid value: %s: must be greater than or equal "
                         "to 0", name, v);
    kl_buf d = KL_BUF_INIT;
    kl_buf_adds(&d, "{\"name\":");
    add_q(&d, name);
    kl_buf_adds(&d, ",\"group\":\"autoscaling\",\"kind\":\"Scale\","
                    "\"causes\":[{\"reason\":\"FieldValueInvalid\","
                    "\"message\":");
    char *cm = kl_sprintf("Invalid value: %s: must be greater than or equal "
                          "to 0", v);
    add_q(&d, cm);
    kl_buf_adds(&d, ",\"field\":\"spec.replicas\"}]}");
    kl_as_status(r, 422, "Invalid", m, d.data);
    kl_buf_free(&d);
    free(cm);
    free(m);
    free(v);
    goto out;
  }
  parent = parse_obj(cur);
  path_set_num(parent, res->scale_spec, want);
  kl_as_opts oo;
  if (o) oo = *o;
  else memset(&oo, 0, sizeof oo);
  oo.output = KL_AS_OUT_FULL;
  kl_as_result pr = KL_AS_RESULT_INIT;
  update_locked(s, res, name, NULL, cur, parent, false, false, &oo, &pr);
  parent = NULL; /* consumed */
  if (pr.code != 200) {
    kl_as_result_free(r);
    *r = pr;
    goto out;
  }
  cJSON *now = cJSON_ParseWithLength(pr.body.data, pr.body.len);
  if (!now) abort();
  emit_scale(r, res, now);
  cJSON_Delete(now);
  kl_as_result_free(&pr);
out:
  cJSON_Delete(parent);
  cJSON_Delete(scale);
}

/* ---- get --------------------------------------------------------------- */

void kl_as_get(kl_apiserver *s, kl_as_resource *res, const char *ns,
               const char *name, const char *sub, const kl_as_opts *o,
               kl_as_result *r) {
  char *key = res->namespaced ? kl_meta_key(ns, name) : kl_strdup(name);
  pthread_rwlock_rdlock(&s->mu);
  kl_obj *obj = kl_obj_ref(sget(res, key));
  pthread_rwlock_unlock(&s->mu);
  free(key);
  if (!obj) {
    st_notfound(r, res, name);
    return;
  }
  if (is_scale(sub)) {
    cJSON *t = parse_obj(obj);
    emit_scale(r, res, t);
    cJSON_Delete(t);
    kl_obj_unref(obj);
    return;
  }
  r->code = 200;
  if (o && o->output == KL_AS_OUT_TABLE &&
      kl_as_table_object(s, res, obj, true, o, &r->body) == 0) {
    kl_obj_unref(obj);
    return;
  }
  emit_object(&r->body, obj, o ? o->output : 0);
  kl_obj_unref(obj);
}

/* ---- update / patch ---------------------------------------------------- */

/* Compares everything but metadata and status. */
static bool spec_changed(const cJSON *a, const cJSON *b) {
  cJSON *x = cJSON_Duplicate(a, 1), *y = cJSON_Duplicate(b, 1);
  static const char *const skip[] = {"metadata", "status", "kind",
                                     "apiVersion", NULL};
  for (int i = 0; skip[i]; i++) {
    cJSON_DeleteItemFromObjectCaseSensitive(x, skip[i]);
    cJSON_DeleteItemFromObjectCaseSensitive(y, skip[i]);
  }
  bool changed = !cJSON_Compare(x, y, 1);
  cJSON_Delete(x);
  cJSON_Delete(y);
  return changed;
}

static void copy_item(cJSON *dst, const cJSON *src, const char *k) {
  cJSON_DeleteItemFromObjectCaseSensitive(dst, k);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, k);
  if (v) cJSON_AddItemToObject(dst, k, cJSON_Duplicate(v, 1));
}

/* The update path (under the write lock). nobj: NEW tree, consumed.
 * check_rv_required: a PUT of a custom resource must carry an RV.
 * mf_done: managedFields already computed (apply). */
static void update_locked(kl_apiserver *s, kl_as_resource *res,
                          const char *name, const char *sub, kl_obj *cur,
                          cJSON *nobj, bool is_put, bool mf_done,
                          const kl_as_opts *o, kl_as_result *r) {
  char now[32];
  now_rfc3339(now);
  cJSON *old = parse_obj(cur);
  if (!cJSON_IsObject(nobj)) {
    st_bad(r, "the object provided is not a JSON object");
    goto out;
  }
  if (check_kind(res, nobj, r)) goto out;
  cJSON *md = md_of(nobj);
  const char *bname = md_str(nobj, "name");
  if (bname && strcmp(bname, name)) {
    char *m = kl_sprintf("the name of the object (%s) does not match the name "
                         "on the URL (%s)", bname, name);
    st_bad(r, m);
    free(m);
    goto out;
  }
  if (res->namespaced) {
    const char *bns = md_str(nobj, "namespace");
    if (bns && bns[0] && strcmp(bns, kl_obj_namespace(cur))) {
      st_bad(r, "the namespace of the provided object does not match the "
                "namespace sent on the request");
      goto out;
    }
  }
  const char *brv = md_str(nobj, "resourceVersion");
  if (brv && brv[0] && strcmp(brv, kl_obj_resource_version(cur))) {
    st_conflict(r, res, name);
    goto out;
  }
  if (is_put && res->custom && (!brv || !brv[0])) {
    st_invalid_field(r, res->kind, name, "metadata.resourceVersion", "0x0",
                     "must be specified for an update");
    /* the real message says: Invalid value: 0x0: must be specified ... */
    goto out;
  }
  cJSON *omd = md_of(old);
  static const char *const keep[] = {
      "name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
      "deletionGracePeriodSeconds", "generation", "selfLink", NULL};
  for (int i = 0; keep[i]; i++) copy_item(md, omd, keep[i]);
  set_str(nobj, "kind", res->kind);
  set_str(nobj, "apiVersion", res->api_version);
  bool is_ns = !strcmp(res->plural, "namespaces") && !res->group[0];
  if (sub && !strcmp(sub, "status")) {
    /* only status changes */
    cJSON *t = cJSON_Duplicate(old, 1);
    copy_item(t, nobj, "status");
    cJSON_Delete(nobj);
    nobj = t;
    md = md_of(nobj);
  } else if (res->has_status) {
    copy_item(nobj, old, "status");
  }
  if (is_ns) copy_item(nobj, old, "spec");
  if (res->has_generation && spec_changed(old, nobj)) {
    cJSON *g = cJSON_GetObjectItemCaseSensitive(omd, "generation");
    set_num(md, "generation", (cJSON_IsNumber(g) ? g->valuedouble : 0) + 1);
  }
  if (!mf_done) {
    char *mgr = manager_of(o);
    kl_patch_record_update(old, nobj, mgr, now, res->api_version);
    free(mgr);
  }
  set_str(md, "resourceVersion", kl_obj_resource_version(cur));
  kl_obj *same = render(res, nobj);
  size_t n1, n2;
  const char *j1 = kl_obj_json(same, &n1), *j2 = kl_obj_json(cur, &n2);
  bool nochange = n1 == n2 && !memcmp(j1, j2, n1);
  bool deleting = md_str(nobj, "deletionTimestamp") != NULL;
  r->code = 200;
  if (nochange || (o && o->dry_run)) {
    emit_object(&r->body, same, o ? o->output : 0);
    kl_obj_unref(same);
    goto out;
  }
  if (deleting && nfinalizers(nobj) == 0) {
    /* the last finalizer went: the object goes (response: previous RV) */
    emit_object(&r->body, same, o ? o->output : 0);
    char *key = kl_strdup(kl_obj_key(cur));
    char *uid = kl_strdup(kl_obj_uid(cur));
    commit_delete(s, res, key, same);
    if (s->n_owned) gc_enqueue(s, GC_BACKGROUND, res, key, uid);
    free(key);
    free(uid);
    kl_obj_unref(same);
    goto out;
  }
  kl_obj_unref(same);
  set_rv(nobj, s->rv + 1);
  kl_obj *no = render(res, nobj);
  commit_put(s, res, no);
  emit_object(&r->body, no, o ? o->output : 0);
out:
  cJSON_Delete(old);
  cJSON_Delete(nobj);
}

void kl_as_update(kl_apiserver *s, kl_as_resource *res, const char *ns,
                  const char *name, const char *sub, const cJSON *body,
                  const kl_as_opts *o, kl_as_result *r) {
  char *key = res->namespaced ? kl_meta_key(ns, name) : kl_strdup(name);
  pthread_rwlock_wrlock(&s->mu);
  kl_obj *cur = sget(res, key);
  if (!cur) {
    st_notfound(r, res, name);
  } else if (is_scale(sub)) {
    kl_obj_ref(cur);
    scale_write_locked(s, res, name, cur, cJSON_Duplicate(body, 1), o, r);
    kl_obj_unref(cur);
  } else {
    kl_obj_ref(cur);
    update_locked(s, res, name, sub, cur, cJSON_Duplicate(body, 1), true,
                  false, o, r);
    kl_obj_unref(cur);
  }
  pthread_rwlock_unlock(&s->mu);
  free(key);
}

void kl_as_patch(kl_apiserver *s, kl_as_resource *res, const char *ns,
                 const char *name, const char *sub, int ptype,
                 const char *body, size_t n, const kl_as_opts *o,
                 kl_as_result *r) {
  cJSON *p = NULL;
  char *err = NULL;
  if (ptype == KL_AS_PATCH_APPLY) {
    if (!o->field_manager || !o->field_manager[0]) {
      st_options_invalid(r, "meta.k8s.io", "PatchOptions", "fieldManager",
                         "FieldValueRequired",
                         "Required value: is required for apply patch");
      return;
    }
    if (kl_manifest_parse_one(body, n, &p, &err)) {
      char *m = kl_sprintf("error decoding YAML: %s", err ? err : "invalid");
      st_bad(r, m);
      free(m);
      free(err);
      return;
    }
  } else {
    p = cJSON_ParseWithLength(body, n);
    if (!p) {
      st_bad(r, "error decoding patch: invalid character in JSON");
      return;
    }
  }
  char *key = res->namespaced ? kl_meta_key(ns, name) : kl_strdup(name);
  char now[32];
  now_rfc3339(now);
  kl_patch_err pe = KL_PATCH_ERR_INIT;
  pthread_rwlock_wrlock(&s->mu);
  kl_obj *cur = kl_obj_ref(sget(res, key));
  if (!cur) {
    if (ptype == KL_AS_PATCH_APPLY && !sub) {
      cJSON *out = NULL;
      if (kl_patch_apply(NULL, p, o->field_manager, o->force, now,
                         res->api_version, &out, &pe)) {
        st_patch_err(r, &pe);
      } else {
        cJSON *md = md_of(out);
        if (!md_str(out, "name")) set_str(md, "name", name);
        create_locked(s, res, res->namespaced ? ns : "", out, true, o, r);
      }
    } else {
      st_notfound(r, res, name);
    }
    goto out;
  }
  cJSON *live = parse_obj(cur), *out = NULL;
  int rc = 0;
  if (is_scale(sub)) {
    if (ptype == KL_AS_PATCH_APPLY) {
      cJSON_Delete(live);
      kl_as_status(r, 415, "UnsupportedMediaType",
                   "apply patches are not supported on the scale "
                   "subresource by klua serve", NULL);
      goto out;
    }
    kl_as_result sr = KL_AS_RESULT_INIT;
    emit_scale(&sr, res, live);
    cJSON_Delete(live);
    live = cJSON_ParseWithLength(sr.body.data, sr.body.len);
    kl_as_result_free(&sr);
    if (!live) abort();
  }
  switch (ptype) {
  case KL_AS_PATCH_MERGE:
    out = kl_patch_merge(live, p);
    break;
  case KL_AS_PATCH_JSON:
    rc = kl_patch_json(live, p, &out, &pe);
    break;
  case KL_AS_PATCH_STRATEGIC:
    rc = kl_patch_strategic(live, p, &out, &pe);
    break;
  default:
    rc = kl_patch_apply(live, p, o->field_manager, o->force, now,
                        res->api_version, &out, &pe);
    break;
  }
  cJSON_Delete(live);
  if (rc) {
    st_patch_err(r, &pe);
    goto out;
  }
  if (is_scale(sub)) {
    scale_write_locked(s, res, name, cur, out, o, r);
    goto out;
  }
  update_locked(s, res, name, sub, cur, out, false,
                ptype == KL_AS_PATCH_APPLY, o, r);
out:
  pthread_rwlock_unlock(&s->mu);
  kl_obj_unref(cur);
  kl_patch_err_free(&pe);
  cJSON_Delete(p);
  free(key);
}

void kl_as_delete_collection(kl_apiserver *s, kl_as_resource *res,
                             const char *ns, const cJSON *delopts,
                             const kl_as_opts *o, kl_as_result *r) {
  filter f;
  if (!res->namespaced) ns = "";
  if (filter_parse(res, o, &f, r)) return;
  kl_objv gone = {0};
  pthread_rwlock_wrlock(&s->mu);
  size_t n;
  kl_obj **a = sorted_of(res, &n);
  kl_objv todo = {0};
  for (size_t i = 0; i < n; i++)
    if (in_scope(res, ns, kl_obj_key(a[i])) && filter_match(&f, a[i]))
      kl_objv_push(&todo, kl_obj_ref(a[i]));
  const char *pol = policy_of(delopts, o);
  bool dry = dry_of(delopts, o);
  for (size_t i = 0; i < todo.n; i++) {
    kl_obj *still = NULL;
    delete_locked(s, res, todo.v[i], pol, dry, &still);
    kl_objv_push(&gone, still ? still : kl_obj_ref(todo.v[i]));
  }
  kl_objv_free(&todo);
  uint64_t rv = s->rv;
  pthread_rwlock_unlock(&s->mu);
  r->code = 200;
  kl_buf *b = &r->body;
  kl_buf_addf(b, "{\"kind\":\"%s\",\"apiVersion\":\"%s\",\"metadata\":{"
                 "\"resourceVersion\":\"%llu\"},\"items\":[", res->list_kind,
              res->api_version, (unsigned long long)rv);
  for (size_t i = 0; i < gone.n; i++) {
    if (i) kl_buf_addc(b, ',');
    emit_item(b, res, gone.v[i], KL_AS_OUT_FULL);
  }
  kl_buf_adds(b, "]}");
  kl_objv_free(&gone);
  filter_free(&f);
}

/* ---- garbage collector ------------------------------------------------- */

static bool owned_by(const kl_obj *o, const char *uid) {
  size_t n;
  const char *j = kl_obj_json(o, &n);
  if (!memmem(j, n, uid, strlen(uid))) return false;
  kl_span refs, k, v, u;
  if (!kl_obj_get(o, "metadata.ownerReferences", &refs)) return false;
  kl_json_iter it;
  kl_json_iter_init(&it, refs);
  while (kl_json_next(&it, &k, &v))
    if (kl_json_get(v, "uid", &u) && kl_json_streq(u, uid)) return true;
  return false;
}

/* NEW references of every stored object owned by uid (any resource). */
static void dependents(kl_apiserver *s, const char *uid, kl_objv *out,
                       kl_as_resource ***ress) {
  size_t cap = 0;
  *ress = NULL;
  if (!s->n_owned) return;
  for (size_t i = 0; i < s->nres; i++) {
    store *st = s->res[i]->store;
    const char *k;
    void *v;
    for (size_t it = 0; kl_hmap_next(&st->objs, &it, &k, &v);) {
      if (!owned_by(v, uid)) continue;
      kl_objv_push(out, kl_obj_ref(v));
      if (out->n > cap) {
        cap = out->cap;
        *ress = kl_realloc(*ress, cap * sizeof **ress);
      }
      (*ress)[out->n - 1] = s->res[i];
    }
  }
}

/* Removes finalizer f from the stored object (deleting it when it was the
 * last one of a deleting object). */
static void drop_finalizer(kl_apiserver *s, kl_as_resource *res, kl_obj *cur,
                           const char *f) {
  cJSON *t = parse_obj(cur);
  cJSON *fin = cJSON_GetObjectItemCaseSensitive(md_of(t), "finalizers");
  for (int i = cJSON_GetArraySize(fin) - 1; i >= 0; i--) {
    cJSON *e = cJSON_GetArrayItem(fin, i);
    if (cJSON_IsString(e) && !strcmp(e->valuestring, f))
      cJSON_DeleteItemFromArray(fin, i);
  }
  bool last = cJSON_GetArraySize(fin) == 0;
  if (last) cJSON_DeleteItemFromObjectCaseSensitive(md_of(t), "finalizers");
  if (last && md_str(t, "deletionTimestamp")) {
    char *key = kl_strdup(kl_obj_key(cur));
    char *uid = kl_strdup(kl_obj_uid(cur));
    commit_delete(s, res, key, NULL);
    if (s->n_owned) gc_enqueue(s, GC_BACKGROUND, res, key, uid);
    free(key);
    free(uid);
  } else {
    set_rv(t, s->rv + 1);
    commit_put(s, res, render(res, t));
  }
  cJSON_Delete(t);
}

/* One GC step under the write lock; returns true when the item is done. */
static bool gc_step(kl_apiserver *s, gc_item *it) {
  kl_obj *cur = sget(it->res, it->key);
  bool same = cur && !strcmp(kl_obj_uid(cur), it->uid);
  kl_objv deps = {0};
  kl_as_resource **dres = NULL;
  bool done = true;
  switch (it->kind) {
  case GC_BACKGROUND:
    dependents(s, it->uid, &deps, &dres);
    for (size_t i = 0; i < deps.n; i++) {
      kl_obj *still = NULL;
      delete_locked(s, dres[i], deps.v[i], "Background", false, &still);
      kl_obj_unref(still);
    }
    break;
  case GC_FOREGROUND:
    if (!same) break;
    dependents(s, it->uid, &deps, &dres);
    for (size_t i = 0; i < deps.n; i++) {
      kl_obj *still = NULL;
      if (delete_locked(s, dres[i], deps.v[i], "Background", false, &still))
        done = false;
      kl_obj_unref(still);
    }
    if (done) drop_finalizer(s, it->res, cur, "foregroundDeletion");
    break;
  case GC_ORPHAN:
    if (!same) break;
    dependents(s, it->uid, &deps, &dres);
    for (size_t i = 0; i < deps.n; i++) {
      cJSON *t = parse_obj(deps.v[i]);
      cJSON *md = md_of(t);
      cJSON *refs = cJSON_GetObjectItemCaseSensitive(md, "ownerReferences");
      for (int j = cJSON_GetArraySize(refs) - 1; j >= 0; j--) {
        const char *u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(refs, j), "uid"));
        if (u && !strcmp(u, it->uid)) cJSON_DeleteItemFromArray(refs, j);
      }
      if (!cJSON_GetArraySize(refs))
        cJSON_DeleteItemFromObjectCaseSensitive(md, "ownerReferences");
      set_rv(t, s->rv + 1);
      commit_put(s, dres[i], render(dres[i], t));
      cJSON_Delete(t);
    }
    drop_finalizer(s, it->res, cur, "orphan");
    break;
  case GC_NAMESPACE: {
    if (!same) break;
    const char *ns = it->key;
    for (size_t i = 0; i < s->nres; i++) {
      kl_as_resource *res = s->res[i];
      if (!res->namespaced) continue;
      size_t n;
      kl_obj **a = sorted_of(res, &n);
      kl_objv todo = {0};
      for (size_t j = 0; j < n; j++)
        if (in_scope(res, ns, kl_obj_key(a[j])))
          kl_objv_push(&todo, kl_obj_ref(a[j]));
      for (size_t j = 0; j < todo.n; j++) {
        kl_obj *still = NULL;
        if (delete_locked(s, res, todo.v[j], NULL, false, &still))
          done = false;
        kl_obj_unref(still);
      }
      kl_objv_free(&todo);
    }
    if (done) commit_delete(s, it->res, it->key, NULL);
    break;
  }
  }
  kl_objv_free(&deps);
  free(dres);
  return done;
}

static void *gc_main(void *arg) {
  kl_apiserver *s = arg;
  pthread_mutex_lock(&s->gmu);
  while (!s->gstop) {
    if (!s->ngq) {
      pthread_cond_wait(&s->gcv, &s->gmu);
      continue;
    }
    gc_item *items = s->gq;
    size_t n = s->ngq;
    s->gq = NULL;
    s->ngq = s->capgq = 0;
    pthread_mutex_unlock(&s->gmu);
    /* like kube-controller-manager: act shortly after, not inside the
     * request that caused it */
    struct timespec d = {0, 50 * 1000 * 1000};
    nanosleep(&d, NULL);
    size_t keep = 0;
    pthread_rwlock_wrlock(&s->mu);
    for (size_t i = 0; i < n; i++) {
      if (gc_step(s, &items[i])) {
        free(items[i].key);
        free(items[i].uid);
      } else {
        items[keep++] = items[i];
      }
    }
    pthread_rwlock_unlock(&s->mu);
    pthread_mutex_lock(&s->gmu);
    for (size_t i = 0; i < keep; i++) {
      /* retry later: blocked by finalizers of dependents */
      if (s->ngq == s->capgq) {
        s->capgq = s->capgq ? 2 * s->capgq : 16;
        s->gq = kl_realloc(s->gq, s->capgq * sizeof *s->gq);
      }
      s->gq[s->ngq++] = items[i];
    }
    free(items);
    if (keep && !s->gstop) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 200 * 1000 * 1000;
      if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
      }
      pthread_cond_timedwait(&s->gcv, &s->gmu, &ts);
    }
  }
  pthread_mutex_unlock(&s->gmu);
  return NULL;
}

/* ---- watch ------------------------------------------------------------- */

struct kl_as_watch {
  kl_apiserver *s;
  kl_as_resource *res;
  char *ns;
  filter f;
  int output;
  bool bookmarks, init_end_bookmark, expired, done, table_first;
  uint64_t pos;
  uint64_t expired_min;
  uint64_t gen; /* s->close_gen when opened: a later value ends the watch */
  kl_objv init;
  size_t iinit;
  double deadline, next_bm, final_bm;
  kl_as_opts o; /* for the table hook: accept and include_object copied */
  char *accept, *include_object;
};

static double now_s(void) { return kl_now(); }

int kl_as_watch_open(kl_apiserver *s, kl_as_resource *res, const char *ns,
                     const kl_as_opts *o, kl_as_watch **out,
                     kl_as_result *r) {
  *out = NULL;
  filter f;
  if (!res->namespaced) ns = "";
  if (filter_parse(res, o, &f, r)) return KL_EINVAL;
  uint64_t want = 0;
  int prv = parse_rv(o->resource_version, &want);
  if (prv < 0) {
    st_rv_invalid(r, o->resource_version);
    filter_free(&f);
    return KL_EINVAL;
  }
  bool sie = o->send_initial_events;
  if (o->rv_match && o->rv_match[0] &&
      !(sie && !strcmp(o->rv_match, "NotOlderThan"))) {
    st_options_invalid(r, "meta.k8s.io", "ListOptions", "resourceVersionMatch",
                       "FieldValueForbidden",
                       "Forbidden: resourceVersionMatch is forbidden for "
                       "watch");
    filter_free(&f);
    return KL_EINVAL;
  }
  if (sie && (!o->rv_match || strcmp(o->rv_match, "NotOlderThan"))) {
    st_options_invalid(r, "meta.k8s.io", "ListOptions", "resourceVersionMatch",
                       "FieldValueInvalid",
                       "Invalid value: \"\": sendInitialEvents requires "
                       "setting resourceVersionMatch to NotOlderThan");
    filter_free(&f);
    return KL_EINVAL;
  }
  kl_as_watch *w = kl_calloc(1, sizeof *w);
  w->s = s;
  w->res = res;
  w->ns = kl_strdup(ns);
  w->f = f;
  w->output = o->output;
  w->bookmarks = o->allow_bookmarks;
  w->table_first = true;
  w->accept = o->accept ? kl_strdup(o->accept) : NULL;
  w->include_object = o->include_object ? kl_strdup(o->include_object) : NULL;
  w->o.accept = w->accept;
  w->o.include_object = w->include_object;
  w->o.output = o->output;
  double t0 = now_s();
  double iv = s->o.bookmark_interval;
  w->next_bm = t0 + iv;
  if (o->timeout_seconds > 0) {
    w->deadline = t0 + (double)o->timeout_seconds;
    if (o->timeout_seconds > 2) w->final_bm = w->deadline - 2;
    else if (o->timeout_seconds >= 1) w->final_bm = w->deadline - 0.5;
  }
  pthread_mutex_lock(&s->hmu);
  w->gen = s->close_gen;
  pthread_mutex_unlock(&s->hmu);
  pthread_rwlock_rdlock(&s->mu);
  if (sie || prv == 1 || want == 0) {
    /* synthetic ADDED for the current state, then the changes */
    size_t n;
    kl_obj **a = sorted_of(res, &n);
    for (size_t i = 0; i < n; i++)
      if (in_scope(res, ns, kl_obj_key(a[i])) && filter_match(&f, a[i]))
        kl_objv_push(&w->init, kl_obj_ref(a[i]));
    w->pos = s->rv;
    w->init_end_bookmark = sie && o->allow_bookmarks;
  } else if (want < s->hist_min) {
    w->expired = true;
    w->pos = want;
    w->expired_min = s->hist_min;
  } else {
    w->pos = want;
  }
  pthread_rwlock_unlock(&s->mu);
  *out = w;
  return 0;
}

void kl_as_watch_close(kl_as_watch *w) {
  if (!w) return;
  filter_free(&w->f);
  kl_objv_free(&w->init);
  free(w->ns);
  free(w->accept);
  free(w->include_object);
  free(w);
}

static void emit_event(kl_as_watch *w, kl_buf *out, const char *type,
                       const kl_obj *obj) {
  kl_buf_adds(out, "{\"type\":\"");
  kl_buf_adds(out, type);
  kl_buf_adds(out, "\",\"object\":");
  if (w->output == KL_AS_OUT_TABLE) {
    size_t before = out->len;
    if (kl_as_table_object(w->s, w->res, obj, w->table_first, &w->o, out) ==
        0) {
      w->table_first = false;
      kl_buf_adds(out, "}\n");
      return;
    }
    out->len = before;
    emit_object(out, obj, KL_AS_OUT_FULL);
  } else {
    emit_object(out, obj, w->output);
  }
  kl_buf_adds(out, "}\n");
}

static void emit_bookmark(kl_as_watch *w, kl_buf *out, uint64_t rv,
                          bool init_end) {
  const kl_as_resource *res = w->res;
  if (res->custom)
    kl_buf_addf(out, "{\"type\":\"BOOKMARK\",\"object\":{\"apiVersion\":\"%s\","
                     "\"kind\":\"%s\",\"metadata\":{",
                res->api_version, res->kind);
  else
    kl_buf_addf(out, "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"%s\","
                     "\"apiVersion\":\"%s\",\"metadata\":{",
                res->kind, res->api_version);
  if (res->custom && init_end)
    kl_buf_adds(out, "\"annotations\":{\"k8s.io/initial-events-end\":"
                     "\"true\"},");
  kl_buf_addf(out, "\"resourceVersion\":\"%llu\"", (unsigned long long)rv);
  if (!res->custom) {
    kl_buf_adds(out, ",\"creationTimestamp\":null");
    if (init_end)
      kl_buf_adds(out, ",\"annotations\":{\"k8s.io/initial-events-end\":"
                       "\"true\"}");
  }
  kl_buf_adds(out, "}}}\n");
}

/* Filters one change for this watch and appends its event. */
static void watch_apply(kl_as_watch *w, const hist_ev *e, kl_buf *out) {
  if (e->res != w->res) return;
  if (!in_scope(w->res, w->ns, kl_obj_key(e->obj))) return;
  bool mnew = filter_match(&w->f, e->obj);
  if (e->type == EV_ADDED) {
    if (mnew) emit_event(w, out, "ADDED", e->obj);
  } else if (e->type == EV_DELETED) {
    if (mnew) emit_event(w, out, "DELETED", e->obj);
  } else {
    bool mold = e->prev && filter_match(&w->f, e->prev);
    if (mnew && mold) emit_event(w, out, "MODIFIED", e->obj);
    else if (mnew) emit_event(w, out, "ADDED", e->obj);
    else if (mold) emit_event(w, out, "DELETED", e->obj);
  }
}

int kl_as_watch_next(kl_as_watch *w, kl_buf *out, bool (*alive)(void *),
                     void *ud) {
  kl_apiserver *s = w->s;
  size_t start_len = out->len;
  while (!w->done) {
    pthread_mutex_lock(&s->hmu);
    if (w->gen != s->close_gen) w->done = true;
    pthread_mutex_unlock(&s->hmu);
    if (w->done) break;
    if (w->expired) {
      kl_buf_addf(out, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\","
                       "\"apiVersion\":\"v1\",\"metadata\":{},\"status\":"
                       "\"Failure\",\"message\":\"too old resource version: "
                       "%llu (%llu)\",\"reason\":\"Expired\",\"code\":410}}\n",
                  (unsigned long long)w->pos,
                  (unsigned long long)w->expired_min);
      w->done = true;
      return 1;
    }
    if (w->iinit < w->init.n) {
      for (int k = 0; k < 256 && w->iinit < w->init.n; k++, w->iinit++)
        emit_event(w, out, "ADDED", w->init.v[w->iinit]);
      if (w->iinit == w->init.n) {
        kl_objv_free(&w->init);
        w->iinit = 0;
        if (w->init_end_bookmark) {
          emit_bookmark(w, out, w->pos, true);
          w->init_end_bookmark = false;
        }
      }
      return 1;
    }
    if (w->init_end_bookmark) {
      emit_bookmark(w, out, w->pos, true);
      w->init_end_bookmark = false;
      return 1;
    }
    enum { BATCH = 512 };
    hist_ev evs[BATCH];
    size_t nev = 0;
    bool bm = false;
    pthread_mutex_lock(&s->hmu);
    for (;;) {
      if (s->stopping || w->gen != s->close_gen) {
        w->done = true;
        break;
      }
      if (w->pos < s->hist_min && s->hrv > w->pos) {
        w->expired = true;
        w->expired_min = s->hist_min;
        break;
      }
      if (s->hrv > w->pos) break;
      double t = now_s();
      if (w->deadline && t >= w->deadline) {
        w->done = true;
        break;
      }
      if (w->bookmarks && (t >= w->next_bm || (w->final_bm && t >= w->final_bm))) {
        bm = true;
        if (w->final_bm && t >= w->final_bm) w->final_bm = 0;
        while (w->next_bm <= t) w->next_bm += s->o.bookmark_interval;
        break;
      }
      double wake = t + 1.0;
      if (w->deadline && w->deadline < wake) wake = w->deadline;
      if (w->bookmarks && w->next_bm < wake) wake = w->next_bm;
      if (w->bookmarks && w->final_bm && w->final_bm < wake) wake = w->final_bm;
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      double dl = (double)ts.tv_sec + ts.tv_nsec / 1e9 + (wake - t);
      ts.tv_sec = (time_t)dl;
      ts.tv_nsec = (long)((dl - (double)ts.tv_sec) * 1e9);
      int rc = pthread_cond_timedwait(&s->hcv, &s->hmu, &ts);
      if (rc == ETIMEDOUT && alive && s->hrv <= w->pos) {
        pthread_mutex_unlock(&s->hmu);
        bool ok = alive(ud);
        pthread_mutex_lock(&s->hmu);
        if (!ok) {
          w->done = true;
          break;
        }
      }
    }
    if (!w->done && !w->expired && !bm) {
      for (uint64_t rv = w->pos + 1; rv <= s->hrv && nev < BATCH; rv++) {
        hist_ev *e = &s->ring[rv % s->cap];
        if (e->rv != rv) break;
        evs[nev] = *e;
        kl_obj_ref(evs[nev].obj);
        kl_obj_ref(evs[nev].prev);
        nev++;
      }
    }
    pthread_mutex_unlock(&s->hmu);
    if (w->done) break;
    if (bm) {
      emit_bookmark(w, out, w->pos, false);
      return 1;
    }
    for (size_t i = 0; i < nev; i++) {
      watch_apply(w, &evs[i], out);
      w->pos = evs[i].rv;
      kl_obj_unref(evs[i].obj);
      kl_obj_unref(evs[i].prev);
    }
    if (out->len > start_len) return 1;
  }
  return out->len > start_len ? 1 : 0;
}

/* ---- misc API ---------------------------------------------------------- */

uint64_t kl_as_current_rv(kl_apiserver *s) {
  pthread_mutex_lock(&s->hmu);
  uint64_t v = s->hrv;
  pthread_mutex_unlock(&s->hmu);
  return v;
}

uint64_t kl_as_oldest_rv(kl_apiserver *s) {
  pthread_mutex_lock(&s->hmu);
  uint64_t v = s->hist_min;
  pthread_mutex_unlock(&s->hmu);
  return v;
}

void kl_as_compact(kl_apiserver *s, uint64_t rv) {
  pthread_rwlock_wrlock(&s->mu);
  pthread_mutex_lock(&s->hmu);
  if (rv > s->hrv) rv = s->hrv;
  if (rv > s->hist_min) s->hist_min = rv;
  pthread_cond_broadcast(&s->hcv);
  pthread_mutex_unlock(&s->hmu);
  pthread_rwlock_unlock(&s->mu);
}

void kl_as_close_watches(kl_apiserver *s) {
  pthread_mutex_lock(&s->hmu);
  s->close_gen++;
  pthread_cond_broadcast(&s->hcv);
  pthread_mutex_unlock(&s->hmu);
}

const kl_apiserver_opts *kl_as_server_opts(const kl_apiserver *s) {
  return &s->o;
}

void **kl_as_hook_slot(kl_apiserver *s, int which) {
  return which >= 0 && which < KL_AS_HOOK_MAX ? &s->hooks[which] : NULL;
}

/* ---- state file (klua serve --state-file) ------------------------------- */

/* Format: JSON lines. Line 1 is the header
 *   {"kind":"KluaServeState","version":1,"resourceVersion":"N","objects":M}
 * then M lines, each one stored object exactly as stored (kind/apiVersion
 * first, managedFields kept), resources in registration order, so every CRD
 * comes before its custom resources. The count detects truncation. History
 * is not saved: after a load, watches and continue tokens older than N get
 * 410 Expired, as after a kube-apiserver restart with a fresh watch cache. */

int kl_apiserver_save_state(kl_apiserver *s, const char *path, char **err) {
  kl_objv objs = {0};
  pthread_mutex_lock(&s->savemu);
  pthread_rwlock_rdlock(&s->mu);
  uint64_t rv = s->rv;
  for (size_t i = 0; i < s->nres; i++) {
    if (s->res[i]->gone) continue;
    size_t n;
    kl_obj **a = sorted_of(s->res[i], &n);
    for (size_t j = 0; j < n; j++) kl_objv_push(&objs, kl_obj_ref(a[j]));
  }
  pthread_rwlock_unlock(&s->mu);
  char *tmp = kl_sprintf("%s.tmp", path);
  int rc = 0;
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    if (err) *err = kl_sprintf("%s: %s", tmp, strerror(errno));
    rc = KL_EIO;
    goto out;
  }
  fprintf(f, "{\"kind\":\"KluaServeState\",\"version\":1,"
             "\"resourceVersion\":\"%llu\",\"objects\":%zu}\n",
          (unsigned long long)rv, objs.n);
  for (size_t i = 0; i < objs.n; i++) {
    size_t n;
    const char *j = kl_obj_json(objs.v[i], &n);
    fwrite(j, 1, n, f);
    fputc('\n', f);
  }
  bool bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
  int e = errno;
  if (fclose(f) != 0 && !bad) {
    bad = true;
    e = errno;
  }
  if (bad || rename(tmp, path) != 0) {
    if (!bad) e = errno;
    if (err) *err = kl_sprintf("%s: %s", bad ? tmp : path, strerror(e));
    unlink(tmp);
    rc = KL_EIO;
    goto out;
  }
  /* make the rename itself durable */
  const char *slash = strrchr(path, '/');
  char *dir = slash ? kl_strndup(path, slash == path ? 1 : (size_t)(slash - path))
                    : kl_strdup(".");
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  free(dir);
out:
  pthread_mutex_unlock(&s->savemu);
  free(tmp);
  kl_objv_free(&objs);
  return rc;
}

static kl_as_resource *find_kind_locked(kl_apiserver *s, const char *av,
                                        const char *kind) {
  for (size_t i = 0; i < s->nres; i++) {
    kl_as_resource *r = s->res[i];
    if (!r->gone && !strcmp(r->kind, kind) && !strcmp(r->api_version, av))
      return r;
  }
  return NULL;
}

static bool obj_has_finalizer(const kl_obj *o, const char *f) {
  kl_span fin, k, v;
  if (!kl_obj_get(o, "metadata.finalizers", &fin) || kl_json_type(fin) != 'a')
    return false;
  kl_json_iter it;
  kl_json_iter_init(&it, fin);
  while (kl_json_next(&it, &k, &v))
    if (kl_json_streq(v, f)) return true;
  return false;
}

/* After a load: queue the garbage collector's pending work again, as
 * kube-controller-manager's GC does after its own restart (terminating
 * namespaces, foreground/orphan deletions, dependents whose owners are
 * gone). Under the write lock. */
static void requeue_gc(kl_apiserver *s) {
  kl_hmap uids;
  kl_hmap_init(&uids, KL_HMAP_BORROW_KEYS);
  for (size_t i = 0; i < s->nres; i++) {
    store *st = s->res[i]->store;
    const char *k;
    void *v;
    for (size_t it = 0; kl_hmap_next(&st->objs, &it, &k, &v);)
      if (kl_obj_uid(v)[0]) kl_hmap_put(&uids, kl_obj_uid(v), v);
  }
  for (size_t i = 0; i < s->nres; i++) {
    kl_as_resource *res = s->res[i];
    store *st = res->store;
    const char *k;
    void *v;
    for (size_t it = 0; kl_hmap_next(&st->objs, &it, &k, &v);) {
      kl_obj *o = v;
      kl_span dt, refs, rk, ref, u;
      if (kl_obj_get(o, "metadata.deletionTimestamp", &dt) &&
          kl_json_type(dt) == 's') {
        if (res == ns_res(s))
          gc_enqueue(s, GC_NAMESPACE, res, kl_obj_key(o), kl_obj_uid(o));
        else if (obj_has_finalizer(o, "foregroundDeletion"))
          gc_enqueue(s, GC_FOREGROUND, res, kl_obj_key(o), kl_obj_uid(o));
        else if (obj_has_finalizer(o, "orphan"))
          gc_enqueue(s, GC_ORPHAN, res, kl_obj_key(o), kl_obj_uid(o));
      }
      if (!has_owners(o) ||
          !kl_obj_get(o, "metadata.ownerReferences", &refs))
        continue;
      kl_json_iter ji;
      kl_json_iter_init(&ji, refs);
      while (kl_json_next(&ji, &rk, &ref)) {
        if (!kl_json_get(ref, "uid", &u) || kl_json_type(u) != 's') continue;
        char *uid = kl_json_strdup(u);
        if (!kl_hmap_has(&uids, uid))
          gc_enqueue(s, GC_BACKGROUND, res, kl_obj_key(o), uid);
        free(uid);
      }
    }
  }
  kl_hmap_free(&uids);
}

static int state_err(char **err, int rc, char *msg) {
  if (err) *err = msg;
  else free(msg);
  return rc;
}

int kl_apiserver_load_state(kl_apiserver *s, const char *path, char **err) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return state_err(err, errno == ENOENT ? KL_ENOENT : KL_EIO,
                     kl_sprintf("%s: %s", path, strerror(errno)));
  kl_buf b = KL_BUF_INIT;
  char chunk[65536];
  size_t got;
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) kl_buf_add(&b, chunk, got);
  bool rerr = ferror(f);
  fclose(f);
  if (rerr) {
    kl_buf_free(&b);
    return state_err(err, KL_EIO, kl_sprintf("%s: read error", path));
  }
  kl_objv objs = {0};
  char *msg = NULL;
  uint64_t rv = 0;
  long long want = -1;
  size_t line = 0;
  const char *p = b.data ? b.data : "", *end = p + b.len;
  while (p < end && !msg) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    const char *l = p;
    p = nl ? nl + 1 : end;
    line++;
    if (line == 1) {
      cJSON *h = cJSON_ParseWithLength(l, n);
      const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(h, "kind"));
      const char *r =
          cJSON_GetStringValue(cJSON_GetObjectItem(h, "resourceVersion"));
      cJSON *ver = cJSON_GetObjectItem(h, "version");
      cJSON *cnt = cJSON_GetObjectItem(h, "objects");
      if (!h || !k || strcmp(k, "KluaServeState"))
        msg = kl_sprintf("%s: not a klua serve state file (line 1 is not a "
                         "KluaServeState header)", path);
      else if (!cJSON_IsNumber(ver) || ver->valuedouble != 1)
        msg = kl_sprintf("%s: unsupported state file version", path);
      else if (!r || parse_rv(r, &rv) || rv < 1 || !cJSON_IsNumber(cnt) ||
               cnt->valuedouble < 0)
        msg = kl_sprintf("%s: line 1: bad resourceVersion or objects count",
                         path);
      else
        want = (long long)cnt->valuedouble;
      cJSON_Delete(h);
      continue;
    }
    if (n == 0 && !nl) break;
    kl_obj *o = NULL;
    char *e = NULL;
    kl_obj_opts oo = {.drop = NULL};
    if (kl_obj_new(l, n, &oo, &o, &e) != 0) {
      msg = kl_sprintf("%s: line %zu: %s", path, line, e ? e : "bad object");
      free(e);
      break;
    }
    kl_objv_push(&objs, o);
    uint64_t orv = 0;
    if (parse_rv(kl_obj_resource_version(o), &orv) || orv > rv)
      msg = kl_sprintf("%s: line %zu: %s has resourceVersion \"%s\" (the "
                       "file's is %llu)", path, line, kl_obj_key(o),
                       kl_obj_resource_version(o), (unsigned long long)rv);
  }
  if (!msg && line == 0)
    msg = kl_sprintf("%s: empty file (not a klua serve state file)", path);
  if (!msg && want != (long long)objs.n)
    msg = kl_sprintf("%s: truncated: the header announces %lld objects, the "
                     "file has %zu", path, want, objs.n);
  kl_buf_free(&b);
  if (msg) {
    kl_objv_free(&objs);
    return state_err(err, KL_EINVAL, msg);
  }

  pthread_rwlock_wrlock(&s->mu);
  for (size_t i = 0; i < s->nres; i++) {
    store *st = s->res[i]->store;
    const char *k;
    void *v;
    for (size_t it = 0; kl_hmap_next(&st->objs, &it, &k, &v);)
      kl_obj_unref(v);
    kl_hmap_free(&st->objs);
    kl_hmap_init(&st->objs, KL_HMAP_BORROW_KEYS);
    store_drop_snaps(st);
  }
  s->n_owned = 0;
  kl_as_resource *crds =
      find_kind_locked(s, "apiextensions.k8s.io/v1", "CustomResourceDefinition");
  for (size_t i = 0; i < objs.n; i++) {
    kl_span av, kind;
    if (!crds || !kl_obj_get(objs.v[i], "kind", &kind) ||
        !kl_json_streq(kind, "CustomResourceDefinition") ||
        !kl_obj_get(objs.v[i], "apiVersion", &av) ||
        !kl_json_streq(av, crds->api_version))
      continue;
    cJSON *t = parse_obj(objs.v[i]);
    crd_register(s, t);
    cJSON_Delete(t);
  }
  for (size_t i = 0; i < objs.n && !msg; i++) {
    kl_obj *o = objs.v[i];
    kl_span av, kind;
    char *avs = kl_obj_get(o, "apiVersion", &av) ? kl_json_strdup(av) : NULL;
    char *ks = kl_obj_get(o, "kind", &kind) ? kl_json_strdup(kind) : NULL;
    kl_as_resource *res = avs && ks ? find_kind_locked(s, avs, ks) : NULL;
    if (!res)
      msg = kl_sprintf("%s: object %zu (%s): unknown kind %s (apiVersion %s)",
                       path, i + 1, kl_obj_key(o), ks ? ks : "(none)",
                       avs ? avs : "(none)");
    else if (res->namespaced != (kl_obj_namespace(o)[0] != 0))
      msg = kl_sprintf("%s: object %zu (%s %s): namespace does not fit the "
                       "resource's scope", path, i + 1, ks, kl_obj_key(o));
    else if (sget(res, kl_obj_key(o)))
      msg = kl_sprintf("%s: object %zu (%s %s): stored twice", path, i + 1,
                       ks, kl_obj_key(o));
    free(avs);
    free(ks);
    if (msg) break;
    kl_hmap_put(&((store *)res->store)->objs, kl_obj_key(o), kl_obj_ref(o));
    if (has_owners(o)) s->n_owned++;
  }
  s->rv = rv;
  pthread_mutex_lock(&s->hmu);
  for (size_t i = 0; i < s->cap; i++) {
    kl_obj_unref(s->ring[i].obj);
    kl_obj_unref(s->ring[i].prev);
    memset(&s->ring[i], 0, sizeof s->ring[i]);
  }
  s->hrv = s->hist_min = rv;
  pthread_cond_broadcast(&s->hcv);
  pthread_mutex_unlock(&s->hmu);
  if (!msg) {
    requeue_gc(s);
    s->restored = true;
  }
  pthread_rwlock_unlock(&s->mu);
  kl_objv_free(&objs);
  return msg ? state_err(err, KL_EINVAL, msg) : 0;
}

/* ---- lifecycle --------------------------------------------------------- */

static char *dupnull(const char *s) { return s ? kl_strdup(s) : NULL; }

int kl_apiserver_new(const kl_apiserver_opts *opts, kl_apiserver **out,
                     char **err) {
  kl_apiserver_opts d = {0};
  if (!opts) opts = &d;
  kl_apiserver *s = kl_calloc(1, sizeof *s);
  s->o.listen = dupnull(opts->listen ? opts->listen : "127.0.0.1:8001");
  s->o.token = dupnull(opts->token);
  s->o.tls_cert = dupnull(opts->tls_cert);
  s->o.tls_key = dupnull(opts->tls_key);
  s->o.faults = dupnull(opts->faults);
  s->o.history = opts->history ? opts->history : 10000;
  s->o.bookmark_interval =
      opts->bookmark_interval > 0 ? opts->bookmark_interval : 60;
  s->o.max_body_bytes =
      opts->max_body_bytes ? opts->max_body_bytes : 3 * 1024 * 1024;
  s->o.idle_timeout = opts->idle_timeout ? opts->idle_timeout : 60;
  s->o.max_connections = opts->max_connections ? opts->max_connections : 1024;
  pthread_rwlock_init(&s->mu, NULL);
  pthread_mutex_init(&s->hmu, NULL);
  pthread_mutex_init(&s->gmu, NULL);
  pthread_mutex_init(&s->savemu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_cond_init(&s->hcv, &ca);
  pthread_cond_init(&s->gcv, &ca);
  pthread_condattr_destroy(&ca);
  s->cap = s->o.history + 1;
  s->ring = kl_calloc(s->cap, sizeof *s->ring);
  s->rv = s->hrv = s->hist_min = 1;
  for (size_t i = 0;; i++) {
    kl_as_resource *r = kl_calloc(1, sizeof *r);
    if (!kl_as_builtin_resource(i, r)) {
      free(r);
      break;
    }
    add_resource(s, r);
  }
  static const char *const nss[] = {"default", "kube-system", "kube-public",
                                    "kube-node-lease"};
  for (size_t i = 0; i < 4; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "metadata"), "name",
                            nss[i]);
    kl_as_result r = KL_AS_RESULT_INIT;
    kl_as_opts ko = {.user_agent = "kube-apiserver"};
    create_locked(s, ns_res(s), "", o, false, &ko, &r);
    kl_as_result_free(&r);
  }
  if (pthread_create(&s->gct, NULL, gc_main, s)) abort();
  if (kl_as_faults_init(s, s->o.faults, err)) {
    kl_apiserver_free(s);
    return KL_EINVAL;
  }
  *out = s;
  return 0;
}

int kl_apiserver_seed(kl_apiserver *s, const char *path, char **err) {
  cJSON *docs = NULL;
  char *e = NULL;
  int rc = kl_manifest_load(path, KL_MANIFEST_EXPAND_LISTS, &docs, &e);
  if (rc) {
    if (err) *err = e ? e : kl_sprintf("%s: cannot load", path);
    else free(e);
    return rc;
  }
  int idx = 0;
  cJSON *doc;
  rc = 0;
  cJSON_ArrayForEach(doc, docs) {
    idx++;
    const char *av = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(doc, "apiVersion"));
    const char *kind =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "kind"));
    kl_as_resource *res = av && kind ? kl_as_find_kind(s, av, kind) : NULL;
    if (!res) {
      if (err)
        *err = kl_sprintf("%s: document %d: unknown kind %s (apiVersion %s)",
                          path, idx, kind ? kind : "(none)", av ? av : "(none)");
      rc = KL_EINVAL;
      break;
    }
    const char *ns = md_str(doc, "namespace");
    if (!ns || !ns[0]) ns = "default";
    kl_as_opts ko = {.user_agent = "klua-seed"};
    kl_as_result r = KL_AS_RESULT_INIT;
    if (res->namespaced) {
      pthread_rwlock_rdlock(&s->mu);
      bool have = sget(ns_res(s), ns) != NULL;
      pthread_rwlock_unlock(&s->mu);
      if (!have) {
        cJSON *n = cJSON_CreateObject();
        cJSON_AddStringToObject(cJSON_AddObjectToObject(n, "metadata"), "name",
                                ns);
        kl_as_create(s, ns_res(s), "", n, &ko, &r);
        cJSON_Delete(n);
        kl_as_result_free(&r);
        r = (kl_as_result)KL_AS_RESULT_INIT;
      }
    }
    kl_as_create(s, res, ns, doc, &ko, &r);
    if (r.code == 409 && s->restored) {
      /* after a state-file load the saved objects win: a seed is the
       * starting point of a fresh server, not an update */
      kl_as_result_free(&r);
      continue;
    }
    if (r.code >= 300) {
      kl_span msg;
      char *m = NULL;
      if (kl_json_get((kl_span){r.body.data, r.body.len}, "message", &msg))
        m = kl_json_strdup(msg);
      if (err)
        *err = kl_sprintf("%s: document %d (%s %s): %s", path, idx, kind,
                          md_str(doc, "name") ? md_str(doc, "name") : "",
                          m ? m : "rejected");
      free(m);
      kl_as_result_free(&r);
      rc = KL_EINVAL;
      break;
    }
    kl_as_result_free(&r);
  }
  cJSON_Delete(docs);
  return rc;
}

int kl_apiserver_start(kl_apiserver *s, char **err) {
  if (s->http) return 0;
  int rc = kl__as_http_start(s, &s->http, &s->port, err);
  if (rc) return rc;
  free(s->url);
  const char *host = s->o.listen;
  const char *colon = strrchr(host, ':');
  int hl = colon ? (int)(colon - host) : (int)strlen(host);
  if (hl == 0 || (hl == 7 && !strncmp(host, "0.0.0.0", 7))) {
    host = "127.0.0.1";
    hl = 9;
  }
  s->url = kl_sprintf("%s://%.*s:%d", s->o.tls_cert ? "https" : "http", hl,
                      host, s->port);
  return 0;
}

int kl_apiserver_port(const kl_apiserver *s) { return s->port; }
const char *kl_apiserver_url(const kl_apiserver *s) {
  return s->url ? s->url : "";
}

void kl_apiserver_stop(kl_apiserver *s) {
  if (!s) return;
  pthread_mutex_lock(&s->hmu);
  s->stopping = true;
  pthread_cond_broadcast(&s->hcv);
  pthread_mutex_unlock(&s->hmu);
  if (s->http) {
    kl__as_http_stop(s->http);
    s->http = NULL;
  }
}

void kl_apiserver_free(kl_apiserver *s) {
  if (!s) return;
  kl_apiserver_stop(s);
  pthread_mutex_lock(&s->gmu);
  s->gstop = true;
  pthread_cond_signal(&s->gcv);
  pthread_mutex_unlock(&s->gmu);
  pthread_join(s->gct, NULL);
  kl_as_faults_free(s);
  for (size_t i = 0; i < s->ngq; i++) {
    free(s->gq[i].key);
    free(s->gq[i].uid);
  }
  free(s->gq);
  for (size_t i = 0; i < s->cap; i++) {
    kl_obj_unref(s->ring[i].obj);
    kl_obj_unref(s->ring[i].prev);
  }
  free(s->ring);
  for (size_t i = 0; i < s->nres; i++) res_free(s->res[i]);
  free(s->res);
  free((char *)s->o.listen);
  free((char *)s->o.token);
  free((char *)s->o.tls_cert);
  free((char *)s->o.tls_key);
  free((char *)s->o.faults);
  free(s->url);
  pthread_rwlock_destroy(&s->mu);
  pthread_mutex_destroy(&s->hmu);
  pthread_mutex_destroy(&s->gmu);
  pthread_mutex_destroy(&s->savemu);
  pthread_cond_destroy(&s->hcv);
  pthread_cond_destroy(&s->gcv);
  free(s);
}
