/* protobuf.c: Kubernetes protobuf bodies into JSON trees; see protobuf.h.
 * A small table-driven decoder: each supported message is a table of
 * (field number, JSON name, type); field numbers follow k8s.io/api
 * core/v1 and apimachinery meta/v1 generated.proto. Every read checks its
 * bounds; unknown fields are skipped by wire type. */
#include "protobuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum ftype {
  F_STR,     /* string, omitted when empty */
  F_BYTES,   /* bytes -> base64 string */
  F_INT,     /* int32/int64, omitted when 0 */
  F_INTPTR,  /* *int64: emitted when present */
  F_BOOLPTR, /* *bool: emitted when present */
  F_TIME,    /* metav1.Time, omitted when absent */
  F_TIMENUL, /* metav1.Time, null when absent (creationTimestamp) */
  F_MSG,     /* embedded struct, always emitted ({} when absent) */
  F_MSGOPT,  /* embedded struct, omitted when absent */
  F_MAPSS,   /* map<string,string> */
  F_MAPSB,   /* map<string,bytes> -> base64 values */
  F_RAWJSON, /* FieldsV1: a message whose field 1 holds JSON bytes */
} ftype;

typedef struct pfield {
  int num;
  const char *name;
  ftype type;
  bool repeated;
  const struct pmsg *msg;
} pfield;

typedef struct pmsg {
  const char *name;
  const pfield *fields;
} pmsg;

#define END {0, NULL, F_STR, false, NULL}

static const pfield owner_ref_f[] = {
    {1, "kind", F_STR, false, NULL},
    {3, "name", F_STR, false, NULL},
    {4, "uid", F_STR, false, NULL},
    {5, "apiVersion", F_STR, false, NULL},
    {6, "controller", F_BOOLPTR, false, NULL},
    {7, "blockOwnerDeletion", F_BOOLPTR, false, NULL},
    END};
static const pmsg owner_ref = {"OwnerReference", owner_ref_f};

static const pfield mfe_f[] = {
    {1, "manager", F_STR, false, NULL},
    {2, "operation", F_STR, false, NULL},
    {3, "apiVersion", F_STR, false, NULL},
    {4, "time", F_TIME, false, NULL},
    {6, "fieldsType", F_STR, false, NULL},
    {7, "fieldsV1", F_RAWJSON, false, NULL},
    {8, "subresource", F_STR, false, NULL},
    END};
static const pmsg mfe = {"ManagedFieldsEntry", mfe_f};

static const pfield meta_f[] = {
    {1, "name", F_STR, false, NULL},
    {2, "generateName", F_STR, false, NULL},
    {3, "namespace", F_STR, false, NULL},
    {4, "selfLink", F_STR, false, NULL},
    {5, "uid", F_STR, false, NULL},
    {6, "resourceVersion", F_STR, false, NULL},
    {7, "generation", F_INT, false, NULL},
    {8, "creationTimestamp", F_TIMENUL, false, NULL},
    {9, "deletionTimestamp", F_TIME, false, NULL},
    {10, "deletionGracePeriodSeconds", F_INTPTR, false, NULL},
    {11, "labels", F_MAPSS, false, NULL},
    {12, "annotations", F_MAPSS, false, NULL},
    {13, "ownerReferences", F_MSGOPT, true, &owner_ref},
    {14, "finalizers", F_STR, true, NULL},
    {15, "clusterName", F_STR, false, NULL},
    {17, "managedFields", F_MSGOPT, true, &mfe},
    END};
static const pmsg object_meta = {"metadata", meta_f};

static const pfield ns_spec_f[] = {{1, "finalizers", F_STR, true, NULL}, END};
static const pmsg ns_spec = {"spec", ns_spec_f};
static const pfield ns_cond_f[] = {
    {1, "type", F_STR, false, NULL},
    {2, "status", F_STR, false, NULL},
    {4, "lastTransitionTime", F_TIMENUL, false, NULL},
    {5, "reason", F_STR, false, NULL},
    {6, "message", F_STR, false, NULL},
    END};
static const pmsg ns_cond = {"NamespaceCondition", ns_cond_f};
static const pfield ns_status_f[] = {
    {1, "phase", F_STR, false, NULL},
    {2, "conditions", F_MSGOPT, true, &ns_cond},
    END};
static const pmsg ns_status = {"status", ns_status_f};
static const pfield namespace_f[] = {
    {1, "metadata", F_MSG, false, &object_meta},
    {2, "spec", F_MSG, false, &ns_spec},
    {3, "status", F_MSG, false, &ns_status},
    END};

static const pfield configmap_f[] = {
    {1, "metadata", F_MSG, false, &object_meta},
    {4, "immutable", F_BOOLPTR, false, NULL},
    {2, "data", F_MAPSS, false, NULL},
    {3, "binaryData", F_MAPSB, false, NULL},
    END};

static const pfield secret_f[] = {
    {1, "metadata", F_MSG, false, &object_meta},
    {5, "immutable", F_BOOLPTR, false, NULL},
    {2, "data", F_MAPSB, false, NULL},
    {4, "stringData", F_MAPSS, false, NULL},
    {3, "type", F_STR, false, NULL},
    END};

static const pfield objref_f[] = {
    {1, "kind", F_STR, false, NULL},
    {2, "namespace", F_STR, false, NULL},
    {3, "name", F_STR, false, NULL},
    {4, "uid", F_STR, false, NULL},
    {5, "apiVersion", F_STR, false, NULL},
    {6, "resourceVersion", F_STR, false, NULL},
    {7, "fieldPath", F_STR, false, NULL},
    END};
static const pmsg objref = {"ObjectReference", objref_f};
static const pfield localref_f[] = {{1, "name", F_STR, false, NULL}, END};
static const pmsg localref = {"LocalObjectReference", localref_f};
static const pfield sa_f[] = {
    {1, "metadata", F_MSG, false, &object_meta},
    {2, "secrets", F_MSGOPT, true, &objref},
    {3, "imagePullSecrets", F_MSGOPT, true, &localref},
    {4, "automountServiceAccountToken", F_BOOLPTR, false, NULL},
    END};

static const struct {
  const char *api_version, *kind;
  const pfield *fields;
} kinds[] = {
    {"v1", "Namespace", namespace_f},
    {"v1", "ConfigMap", configmap_f},
    {"v1", "Secret", secret_f},
    {"v1", "ServiceAccount", sa_f},
};

/* ---- wire reading ---- */

typedef struct rd {
  const unsigned char *p, *end;
} rd;

static bool rd_varint(rd *r, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) return false;
    unsigned char b = *r->p++;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return true;
    }
  }
  return false;
}

/* One field occurrence. */
typedef struct occ {
  int num, wt;
  uint64_t v;                 /* varint / fixed */
  const unsigned char *p;     /* length-delimited payload */
  size_t n;
} occ;

/* Reads the next field; returns 1, 0 at the end, -1 on malformed input. */
static int rd_field(rd *r, occ *o) {
  if (r->p >= r->end) return 0;
  uint64_t key;
  if (!rd_varint(r, &key)) return -1;
  o->num = (int)(key >> 3);
  o->wt = (int)(key & 7);
  if (key >> 3 == 0 || key >> 3 > 536870911) return -1;
  switch (o->wt) {
  case 0: return rd_varint(r, &o->v) ? 1 : -1;
  case 1:
    if (r->end - r->p < 8) return -1;
    o->v = 0;
    for (int i = 7; i >= 0; i--) o->v = (o->v << 8) | r->p[i];
    r->p += 8;
    return 1;
  case 5:
    if (r->end - r->p < 4) return -1;
    o->v = (uint64_t)r->p[0] | (uint64_t)r->p[1] << 8 |
           (uint64_t)r->p[2] << 16 | (uint64_t)r->p[3] << 24;
    r->p += 4;
    return 1;
  case 2: {
    uint64_t len;
    if (!rd_varint(r, &len) || len > (uint64_t)(r->end - r->p)) return -1;
    o->p = r->p;
    o->n = (size_t)len;
    r->p += len;
    return 1;
  }
  default: return -1;
  }
}

typedef struct dctx {
  char *err;
  const char *path; /* for messages */
} dctx;

static int fail(dctx *c, const char *what, int num) {
  if (!c->err)
    c->err = num ? kl_sprintf("protobuf: %s: field %d: %s", c->path, num, what)
                 : kl_sprintf("protobuf: %s: %s", c->path, what);
  return KL_EPROTO;
}

static char *b64(const unsigned char *p, size_t n) {
  static const char tbl[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *out = kl_malloc((n + 2) / 3 * 4 + 1), *o = out;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    *o++ = tbl[p[i] >> 2];
    *o++ = tbl[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
    *o++ = tbl[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
    *o++ = tbl[p[i + 2] & 63];
  }
  if (i < n) {
    *o++ = tbl[p[i] >> 2];
    if (i + 1 < n) {
      *o++ = tbl[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
      *o++ = tbl[(p[i + 1] & 15) << 2];
    } else {
      *o++ = tbl[(p[i] & 3) << 4];
      *o++ = '=';
    }
    *o++ = '=';
  }
  *o = '\0';
  return out;
}

/* A protobuf string as a C string; NULL when it holds a NUL byte. */
static char *pstr(const occ *o) {
  if (memchr(o->p, 0, o->n)) return NULL;
  return kl_strndup((const char *)o->p, o->n);
}

static int decode_msg(dctx *c, const unsigned char *p, size_t n,
                      const pfield *fields, cJSON *out);

/* metav1.Time: an empty message is the zero time (JSON null), as
 * Time.Unmarshal does; nanoseconds are dropped, as JSON has seconds. */
static int decode_time(dctx *c, const occ *o, cJSON **out) {
  if (o->n == 0) {
    *out = cJSON_CreateNull();
    return 0;
  }
  rd r = {o->p, o->p + o->n};
  occ f;
  int64_t secs = 0;
  int rc;
  while ((rc = rd_field(&r, &f)) == 1)
    if (f.num == 1 && f.wt == 0) secs = (int64_t)f.v;
  if (rc < 0) return fail(c, "malformed Time", o->num);
  /* years 0001-9999, as Go's RFC 3339 formatting allows */
  if (secs < -62135596800LL || secs > 253402300799LL)
    return fail(c, "Time out of range", o->num);
  time_t t = (time_t)secs;
  struct tm tm;
  if (!gmtime_r(&t, &tm)) return fail(c, "Time out of range", o->num);
  char buf[40];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  *out = cJSON_CreateString(buf);
  return 0;
}

static int decode_map(dctx *c, const occ *o, bool bytes_values, cJSON *map) {
  rd r = {o->p, o->p + o->n};
  occ f;
  int rc;
  char *key = kl_strdup(""), *val = kl_strdup("");
  while ((rc = rd_field(&r, &f)) == 1) {
    if (f.wt != 2) continue;
    if (f.num == 1) {
      free(key);
      key = pstr(&f);
    } else if (f.num == 2) {
      free(val);
      val = bytes_values ? b64(f.p, f.n) : pstr(&f);
    }
    if (!key || !val) break;
  }
  if (rc < 0 || !key || !val) {
    free(key);
    free(val);
    return fail(c, rc < 0 ? "malformed map entry" : "NUL byte in a string",
                o->num);
  }
  cJSON_DeleteItemFromObjectCaseSensitive(map, key);
  cJSON_AddItemToObject(map, key, cJSON_CreateString(val));
  free(key);
  free(val);
  return 0;
}

/* Decodes one occurrence of field fd into a NEW value (*v NULL: skip). */
static int decode_value(dctx *c, const pfield *fd, const occ *o, cJSON **v) {
  *v = NULL;
  bool ld = o->wt == 2;
  switch (fd->type) {
  case F_STR:
  case F_BYTES: {
    if (!ld) return fail(c, "expected a length-delimited value", o->num);
    char *s = fd->type == F_BYTES ? b64(o->p, o->n) : pstr(o);
    if (!s) return fail(c, "NUL byte in a string", o->num);
    if (*s || fd->repeated) *v = cJSON_CreateString(s);
    free(s);
    return 0;
  }
  case F_INT:
  case F_INTPTR:
    if (o->wt != 0) return fail(c, "expected a varint", o->num);
    if (o->v || fd->type == F_INTPTR)
      *v = cJSON_CreateNumber((double)(int64_t)o->v);
    return 0;
  case F_BOOLPTR:
    if (o->wt != 0) return fail(c, "expected a varint", o->num);
    *v = cJSON_CreateBool(o->v != 0);
    return 0;
  case F_TIME:
  case F_TIMENUL:
    if (!ld) return fail(c, "expected a Time message", o->num);
    if (o->n == 0 && fd->type == F_TIME) return 0;
    return decode_time(c, o, v);
  case F_MSG:
  case F_MSGOPT: {
    if (!ld) return fail(c, "expected a message", o->num);
    cJSON *m = cJSON_CreateObject();
    const char *saved = c->path;
    c->path = fd->msg->name;
    int rc = decode_msg(c, o->p, o->n, fd->msg->fields, m);
    c->path = saved;
    if (rc) {
      cJSON_Delete(m);
      return rc;
    }
    *v = m;
    return 0;
  }
  case F_RAWJSON: {
    if (!ld) return fail(c, "expected a FieldsV1 message", o->num);
    rd r = {o->p, o->p + o->n};
    occ f;
    int rc;
    while ((rc = rd_field(&r, &f)) == 1) {
      if (f.num != 1 || f.wt != 2) continue;
      cJSON_Delete(*v);
      *v = cJSON_ParseWithLength((const char *)f.p, f.n);
      if (!*v) return fail(c, "FieldsV1 is not JSON", o->num);
    }
    if (rc < 0) {
      cJSON_Delete(*v);
      *v = NULL;
      return fail(c, "malformed FieldsV1", o->num);
    }
    return 0;
  }
  case F_MAPSS:
  case F_MAPSB: break; /* handled by the caller */
  }
  return 0;
}

static int decode_msg(dctx *c, const unsigned char *p, size_t n,
                      const pfield *fields, cJSON *out) {
  /* validate the whole message once */
  rd r = {p, p + n};
  occ o;
  int rc;
  while ((rc = rd_field(&r, &o)) == 1) {
  }
  if (rc < 0) return fail(c, "truncated or malformed message", 0);
  for (const pfield *fd = fields; fd->name; fd++) {
    cJSON *acc = NULL; /* array or map being filled, or the last value */
    bool seen = false;
    r.p = p;
    while (rd_field(&r, &o) == 1) {
      if (o.num != fd->num) continue;
      seen = true;
      if (fd->type == F_MAPSS || fd->type == F_MAPSB) {
        if (o.wt != 2) {
          cJSON_Delete(acc);
          return fail(c, "expected a map entry", o.num);
        }
        if (!acc) acc = cJSON_CreateObject();
        if ((rc = decode_map(c, &o, fd->type == F_MAPSB, acc))) {
          cJSON_Delete(acc);
          return rc;
        }
        continue;
      }
      cJSON *v = NULL;
      if ((rc = decode_value(c, fd, &o, &v))) {
        cJSON_Delete(acc);
        return rc;
      }
      if (fd->repeated) {
        if (!acc) acc = cJSON_CreateArray();
        if (v) cJSON_AddItemToArray(acc, v);
      } else if (v && acc && cJSON_IsObject(acc) && cJSON_IsObject(v) &&
                 fd->msg) {
        /* a repeated occurrence of an embedded message merges */
        cJSON *m = v;
        v = NULL;
        cJSON *x;
        while ((x = m->child)) {
          x = cJSON_DetachItemViaPointer(m, x);
          cJSON_DeleteItemFromObjectCaseSensitive(acc, x->string);
          cJSON_AddItemToObject(acc, x->string, x);
        }
        cJSON_Delete(m);
      } else {
        cJSON_Delete(acc);
        acc = v;
      }
    }
    if (!acc && fd->type == F_MSG) acc = cJSON_CreateObject();
    if (!acc && fd->type == F_TIMENUL) acc = cJSON_CreateNull();
    (void)seen;
    if (acc) cJSON_AddItemToObject(out, fd->name, acc);
  }
  return 0;
}

bool kl_protobuf_supported(const char *api_version, const char *kind) {
  if (!api_version || !kind) return false;
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
    if (!strcmp(kinds[i].api_version, api_version) &&
        !strcmp(kinds[i].kind, kind))
      return true;
  return false;
}

int kl_protobuf_decode(const void *body, size_t n, cJSON **out, char **err) {
  if (err) *err = NULL;
  *out = NULL;
  const unsigned char *p = body;
  dctx c = {NULL, "Unknown"};
  int rc = 0;
  char *api_version = NULL, *kind = NULL, *encoding = NULL;
  const unsigned char *raw = NULL;
  size_t rawn = 0;
  if (!p || n < 4 || memcmp(p, "k8s\0", 4) != 0) {
    rc = fail(&c, "missing the \"k8s\\0\" magic prefix", 0);
    goto done;
  }
  rd r = {p + 4, p + n};
  occ o;
  int st;
  while ((st = rd_field(&r, &o)) == 1) {
    if (o.wt != 2) continue;
    if (o.num == 1) { /* typeMeta */
      rd t = {o.p, o.p + o.n};
      occ f;
      int ts;
      while ((ts = rd_field(&t, &f)) == 1) {
        if (f.wt != 2 || (f.num != 1 && f.num != 2)) continue;
        char *s = pstr(&f);
        if (!s) {
          ts = -1;
          break;
        }
        char **dst = f.num == 1 ? &api_version : &kind;
        free(*dst);
        *dst = s;
      }
      if (ts < 0) {
        rc = fail(&c, "malformed typeMeta", 1);
        goto done;
      }
    } else if (o.num == 2) {
      raw = o.p;
      rawn = o.n;
    } else if (o.num == 3) {
      free(encoding);
      encoding = pstr(&o);
    }
  }
  if (st < 0) {
    rc = fail(&c, "truncated or malformed envelope", 0);
    goto done;
  }
  if (encoding && *encoding) {
    c.err = kl_sprintf("protobuf: contentEncoding \"%s\" is not supported",
                       encoding);
    rc = KL_EINVAL;
    goto done;
  }
  if (!kind || !*kind) {
    rc = fail(&c, "no kind in typeMeta", 0);
    goto done;
  }
  const pfield *fields = NULL;
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
    if (api_version && !strcmp(kinds[i].api_version, api_version) &&
        !strcmp(kinds[i].kind, kind))
      fields = kinds[i].fields;
  if (!fields) {
    c.err = kl_sprintf("protobuf: %s %s is not supported; send JSON",
                       api_version && *api_version ? api_version : "(none)",
                       kind);
    rc = KL_EINVAL;
    goto done;
  }
  cJSON *obj = cJSON_CreateObject();
  cJSON_AddStringToObject(obj, "kind", kind);
  cJSON_AddStringToObject(obj, "apiVersion", api_version);
  c.path = kind;
  rc = decode_msg(&c, raw ? raw : p, raw ? rawn : 0, fields, obj);
  if (rc) {
    cJSON_Delete(obj);
    goto done;
  }
  *out = obj;
done:
  free(api_version);
  free(kind);
  free(encoding);
  if (c.err) {
    if (err)
      *err = c.err;
    else
      free(c.err);
  }
  return rc;
}
