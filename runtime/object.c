/* object.c: immutable refcounted object versions; see object.h. */
#include "object.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct kl_obj {
  atomic_uint refs;
  uint32_t json_len;
  uint64_t serial;
  /* offsets into data[] of NUL-terminated strings */
  uint32_t key, ns, name, rv, uid;
  size_t size;
  char data[]; /* json NUL key NUL ns NUL name NUL rv NUL uid NUL */
};

const char *const kl_obj_default_drop[] = {"metadata.managedFields", NULL};

static atomic_uint_fast64_t next_serial = 1;

static int fail(char **err, int code, const char *msg) {
  if (err) *err = kl_strdup(msg);
  return code;
}

/* The members of metadata that kl_obj keeps, as raw spans (first
 * occurrence, as kl_json_get finds them). */
enum { M_NS, M_NAME, M_RV, M_UID, M_N };
static const char *const meta_keys[M_N] = {"namespace", "name",
                                           "resourceVersion", "uid"};

/* True when the key span (quoted) is the C string s of length n. */
static bool key_is(kl_span k, const char *s, size_t n) {
  if (k.n == n + 2 && memcmp(k.p + 1, s, n) == 0) return true;
  return k.n > n + 2 && memchr(k.p, '\\', k.n) && kl_json_streq(k, s);
}

/* Iterates the members of a VALID JSON object without checking it again.
 * Returns false at the end. */
static bool next_member(const char **pp, const char *end, kl_span *k,
                        kl_span *v) {
  const char *p = *pp;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t' ||
                     *p == ','))
    p++;
  if (p >= end || *p != '"') return false;
  const char *q = kl_json_skip_valid(p, end);
  *k = (kl_span){p, (size_t)(q - p)};
  while (q < end && *q != ':') q++;
  if (q >= end) return false;
  q++;
  while (q < end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')) q++;
  p = kl_json_skip_valid(q, end);
  *v = (kl_span){q, (size_t)(p - q)};
  *pp = p;
  return true;
}

/* Collects the metadata spans of the valid object top in one pass over its
 * members and one over metadata's. Returns 0 or KL_EINVAL (*why set). */
static int scan_meta(kl_span top, bool need_av, bool need_kind,
                     const kl_json_capture *cap, kl_span *apiv,
                     kl_span *kind, kl_span m[M_N], const char **why) {
  const char *p = top.p + 1, *end = top.p + top.n;
  kl_span k, v, meta = {0};
  if (cap) { /* the compaction pass already found the top-level members */
    if (cap->len[0]) meta = (kl_span){top.p + cap->off[0], cap->len[0]};
    if (cap->len[1]) *apiv = (kl_span){top.p + cap->off[1], cap->len[1]};
    if (cap->len[2]) *kind = (kl_span){top.p + cap->off[2], cap->len[2]};
  } else {
    /* stop as soon as everything wanted is found (the API server writes
     * apiVersion, kind, metadata first) */
    while ((!meta.p || (need_av && !apiv->p) || (need_kind && !kind->p)) &&
           next_member(&p, end, &k, &v)) {
      if (!meta.p && key_is(k, "metadata", 8)) meta = v;
      else if (!apiv->p && key_is(k, "apiVersion", 10)) *apiv = v;
      else if (!kind->p && key_is(k, "kind", 4)) *kind = v;
    }
  }
  if (!meta.p) return 0;
  if (kl_json_type(meta) != 'o') {
    *why = "metadata is not an object";
    return KL_EINVAL;
  }
  p = meta.p + 1, end = meta.p + meta.n;
  int found = 0;
  while (found < M_N && next_member(&p, end, &k, &v)) {
    for (int i = 0; i < M_N; i++) {
      if (!m[i].p && key_is(k, meta_keys[i], strlen(meta_keys[i]))) {
        m[i] = v;
        found++;
        break;
      }
    }
  }
  for (int i = 0; i < M_N; i++) {
    char t = kl_json_type(m[i]);
    if (t == 'z') m[i] = (kl_span){0}; /* null reads as absent */
    else if (m[i].p && t != 's') {
      *why = "metadata.name, namespace, resourceVersion or uid is not a "
             "string";
      return KL_EINVAL;
    }
  }
  return 0;
}

/* The unescaped length of the string span s (0 when absent), or -1 when
 * it holds a bad escape. */
static long str_len(kl_span s) {
  if (!s.p) return 0;
  if (!memchr(s.p + 1, '\\', s.n - 2)) return (long)s.n - 2;
  kl_buf b = KL_BUF_INIT;
  long n = kl_json_unescape(s, &b) == 0 ? (long)b.len : -1;
  kl_buf_free(&b);
  return n;
}

/* Writes the unescaped string span s (checked by str_len; "" when absent)
 * and a NUL at dst. */
static void put_str(char *dst, kl_span s, size_t len) {
  if (!s.p) {
    *dst = '\0';
  } else if (len == s.n - 2) {
    memcpy(dst, s.p + 1, len);
    dst[len] = '\0';
  } else {
    kl_buf b = KL_BUF_INIT;
    kl_json_unescape(s, &b);
    memcpy(dst, b.data, len + 1);
    kl_buf_free(&b);
  }
}

static int obj_new(const char *json, size_t n, const kl_obj_opts *opts,
                   kl_obj **out, char **err, const char **after,
                   kl_buf *scratch);

int kl_obj_new(const char *json, size_t n, const kl_obj_opts *opts,
               kl_obj **out, char **err) {
  return obj_new(json, n, opts, out, err, NULL, NULL);
}

int kl_obj_new_prefix(const char *json, size_t n, const kl_obj_opts *opts,
                      kl_obj **out, char **err, const char **after,
                      kl_buf *scratch) {
  kl_obj_opts o = opts ? *opts : (kl_obj_opts){0};
  o.compacted = false;
  return obj_new(json, n, &o, out, err, after, scratch);
}

/* after: NULL, the value fills [json, json+n) (whitespace around it
 * aside); else it may end earlier and *after is set past it. scratch:
 * where the compacted bytes are built (reused by the caller), or NULL. */
static int obj_new(const char *json, size_t n, const kl_obj_opts *opts,
                   kl_obj **out, char **err, const char **after,
                   kl_buf *scratch) {
  static const kl_obj_opts none = {0};
  if (!opts) opts = &none;
  *out = NULL;
  if (err) *err = NULL;

  /* The compact JSON: the caller's bytes when it already compacted them,
   * else one validating, compacting pass into a scratch buffer. */
  kl_buf local = KL_BUF_INIT, *bp = scratch ? scratch : &local;
  bp->len = 0;
  kl_span top = {json, n};
  kl_json_capture tops = {.keys = {"metadata", "apiVersion", "kind"}};
  bool captured = false;
  if (!opts->compacted) {
    int crc = after ? kl_json_compact_value_capture(json, json + n,
                                                    opts->drop, bp, after,
                                                    &tops)
                    : kl_json_compact_capture(json, n, opts->drop, bp, &tops);
    if (crc != 0) {
      kl_buf_free(&local);
      return fail(err, KL_EJSON, "malformed JSON object");
    }
    top = (kl_span){bp->data, bp->len};
    captured = !tops.escaped;
  }
  if (kl_json_type(top) != 'o' || top.n < 2) {
    kl_buf_free(&local);
    return fail(err, KL_EINVAL, "object is not a JSON object");
  }
  kl_span apiv = {0}, kind = {0}, m[M_N] = {{0}};
  const char *why = NULL;
  if (scan_meta(top, opts->api_version != NULL, opts->kind != NULL,
                captured ? &tops : NULL, &apiv, &kind, m, &why) != 0) {
    kl_buf_free(&local);
    return fail(err, KL_EINVAL, why);
  }
  /* Items of typed lists lack apiVersion/kind: put them in front. */
  kl_buf pre = KL_BUF_INIT;
  if (opts->api_version && !apiv.p) {
    kl_buf_adds(&pre, "\"apiVersion\":");
    kl_json_quote(&pre, opts->api_version, strlen(opts->api_version));
    kl_buf_addc(&pre, ',');
  }
  if (opts->kind && !kind.p) {
    kl_buf_adds(&pre, "\"kind\":");
    kl_json_quote(&pre, opts->kind, strlen(opts->kind));
    kl_buf_addc(&pre, ',');
  }
  if (pre.len && top.n == 2) pre.len--; /* "{}": no trailing comma */

  /* One allocation: json NUL ns NUL name NUL rv NUL uid NUL key NUL. */
  size_t len[M_N];
  for (int i = 0; i < M_N; i++) {
    long l = str_len(m[i]);
    if (l < 0) {
      kl_buf_free(&local);
      kl_buf_free(&pre);
      return fail(err, KL_EINVAL,
                  "metadata.name, namespace, resourceVersion or uid is not a "
                  "string");
    }
    len[i] = (size_t)l;
  }
  size_t json_len = top.n + pre.len;
  size_t cap = json_len + 1;
  for (int i = 0; i < M_N; i++) cap += len[i] + 1;
  cap += (len[M_NS] ? len[M_NS] + 1 : 0) + len[M_NAME] + 1;
  kl_obj *o = kl_malloc(sizeof *o + cap);
  char *d = o->data;
  if (pre.len) {
    d[0] = '{';
    memcpy(d + 1, pre.data, pre.len);
    memcpy(d + 1 + pre.len, top.p + 1, top.n - 1);
  } else {
    memcpy(d, top.p, top.n);
  }
  d[json_len] = '\0';
  kl_buf_free(&pre);
  size_t off = json_len + 1;
  uint32_t at[M_N];
  for (int i = 0; i < M_N; i++) {
    put_str(d + off, m[i], len[i]);
    at[i] = (uint32_t)off;
    off += len[i] + 1;
  }
  kl_buf_free(&local);
  if (d[at[M_NAME]] == '\0' && !opts->allow_unnamed) {
    free(o);
    return fail(err, KL_EINVAL, "object has no metadata.name");
  }
  /* The key; a name or namespace with an escaped NUL ends at the NUL, as
   * the C strings do. */
  size_t nslen = strlen(d + at[M_NS]), namelen = strlen(d + at[M_NAME]);
  uint32_t key = (uint32_t)off;
  if (nslen) {
    memcpy(d + off, d + at[M_NS], nslen);
    d[off + nslen] = '/';
    off += nslen + 1;
  }
  memcpy(d + off, d + at[M_NAME], namelen + 1);

  atomic_init(&o->refs, 1);
  o->json_len = (uint32_t)json_len;
  o->serial = atomic_fetch_add(&next_serial, 1);
  o->key = key, o->ns = at[M_NS], o->name = at[M_NAME], o->rv = at[M_RV],
  o->uid = at[M_UID];
  o->size = sizeof *o + cap;
  *out = o;
  return 0;
}

kl_obj *kl_obj_ref(kl_obj *obj) {
  if (obj) atomic_fetch_add_explicit(&obj->refs, 1, memory_order_relaxed);
  return obj;
}

void kl_obj_unref(kl_obj *obj) {
  if (obj && atomic_fetch_sub_explicit(&obj->refs, 1, memory_order_acq_rel) == 1)
    free(obj);
}

const char *kl_obj_json(const kl_obj *obj, size_t *len) {
  if (len) *len = obj->json_len;
  return obj->data;
}

kl_span kl_obj_span(const kl_obj *obj) {
  return (kl_span){obj->data, obj->json_len};
}

const char *kl_obj_key(const kl_obj *obj) { return obj->data + obj->key; }
const char *kl_obj_namespace(const kl_obj *obj) { return obj->data + obj->ns; }
const char *kl_obj_name(const kl_obj *obj) { return obj->data + obj->name; }
const char *kl_obj_resource_version(const kl_obj *obj) {
  return obj->data + obj->rv;
}
const char *kl_obj_uid(const kl_obj *obj) { return obj->data + obj->uid; }
uint64_t kl_obj_serial(const kl_obj *obj) { return obj->serial; }
size_t kl_obj_footprint(const kl_obj *obj) { return obj->size; }

bool kl_obj_get(const kl_obj *obj, const char *path, kl_span *out) {
  return kl_json_get(kl_obj_span(obj), path, out);
}

char *kl_meta_key(const char *ns, const char *name) {
  if (ns && *ns) return kl_sprintf("%s/%s", ns, name);
  return kl_strdup(name);
}
