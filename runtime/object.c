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

/* Unescapes a string member into b (adding a NUL); absent -> "". */
static uint32_t put_str(kl_buf *b, kl_span meta, const char *key, int *bad) {
  uint32_t off = (uint32_t)b->len;
  kl_span v;
  if (kl_json_getv(meta, &key, 1, &v)) {
    if (kl_json_type(v) == 's') {
      if (kl_json_unescape(v, b) != 0) *bad = 1;
    } else if (kl_json_type(v) != 'z') {
      *bad = 1;
    }
  }
  kl_buf_addc(b, '\0');
  return off;
}

int kl_obj_new(const char *json, size_t n, const kl_obj_opts *opts,
               kl_obj **out, char **err) {
  static const kl_obj_opts none = {0};
  if (!opts) opts = &none;
  *out = NULL;
  if (err) *err = NULL;

  /* Build the data area in a scratch buffer: compact JSON first. */
  kl_buf b = KL_BUF_INIT;
  kl_buf_reserve(&b, n + 128);
  if (kl_json_compact(json, n, opts->drop, &b) != 0) {
    kl_buf_free(&b);
    return fail(err, KL_EJSON, "malformed JSON object");
  }
  kl_span top = {b.data, b.len};
  if (kl_json_type(top) != 'o') {
    kl_buf_free(&b);
    return fail(err, KL_EINVAL, "object is not a JSON object");
  }
  /* Items of typed lists lack apiVersion/kind: put them in front. */
  if (opts->api_version || opts->kind) {
    kl_span v;
    kl_buf pre = KL_BUF_INIT;
    if (opts->api_version && !kl_json_get(top, "apiVersion", &v)) {
      kl_buf_adds(&pre, "\"apiVersion\":");
      kl_json_quote(&pre, opts->api_version, strlen(opts->api_version));
      kl_buf_addc(&pre, ',');
    }
    if (opts->kind && !kl_json_get(top, "kind", &v)) {
      kl_buf_adds(&pre, "\"kind\":");
      kl_json_quote(&pre, opts->kind, strlen(opts->kind));
      kl_buf_addc(&pre, ',');
    }
    if (pre.len) {
      if (b.len == 2) pre.len--; /* "{}": no trailing comma */
      kl_buf nb = KL_BUF_INIT;
      kl_buf_reserve(&nb, b.len + pre.len + 128);
      kl_buf_addc(&nb, '{');
      kl_buf_add(&nb, pre.data, pre.len);
      kl_buf_add(&nb, b.data + 1, b.len - 1);
      kl_buf_free(&b);
      b = nb;
      top.p = b.data, top.n = b.len;
    }
    kl_buf_free(&pre);
  }
  size_t json_len = b.len;
  kl_buf_addc(&b, '\0');

  kl_span meta = {0};
  kl_json_get((kl_span){b.data, json_len}, "metadata", &meta);
  if (meta.p && kl_json_type(meta) != 'o') {
    kl_buf_free(&b);
    return fail(err, KL_EINVAL, "metadata is not an object");
  }
  /* The spans point into b, which grows below: copy them out first. */
  kl_buf m = KL_BUF_INIT;
  if (meta.p) kl_buf_add(&m, meta.p, meta.n);
  else kl_buf_adds(&m, "{}");
  meta.p = m.data, meta.n = m.len;

  int bad = 0;
  uint32_t ns = put_str(&b, meta, "namespace", &bad);
  uint32_t name = put_str(&b, meta, "name", &bad);
  uint32_t rv = put_str(&b, meta, "resourceVersion", &bad);
  uint32_t uid = put_str(&b, meta, "uid", &bad);
  kl_buf_free(&m);
  if (bad) {
    kl_buf_free(&b);
    return fail(err, KL_EINVAL,
                "metadata.name, namespace, resourceVersion or uid is not a "
                "string");
  }
  if (b.data[name] == '\0' && !opts->allow_unnamed) {
    kl_buf_free(&b);
    return fail(err, KL_EINVAL, "object has no metadata.name");
  }
  uint32_t key = (uint32_t)b.len;
  /* The key is copied from b itself: reserve first, so that no realloc
   * moves the bytes being copied. */
  size_t nslen = strlen(b.data + ns), namelen = strlen(b.data + name);
  kl_buf_reserve(&b, nslen + namelen + 2);
  if (nslen) {
    kl_buf_add(&b, b.data + ns, nslen);
    kl_buf_addc(&b, '/');
  }
  kl_buf_add(&b, b.data + name, namelen);
  kl_buf_addc(&b, '\0');

  kl_obj *o = kl_malloc(sizeof *o + b.len);
  atomic_init(&o->refs, 1);
  o->json_len = (uint32_t)json_len;
  o->serial = atomic_fetch_add(&next_serial, 1);
  o->key = key, o->ns = ns, o->name = name, o->rv = rv, o->uid = uid;
  o->size = sizeof *o + b.len;
  memcpy(o->data, b.data, b.len);
  kl_buf_free(&b);
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
