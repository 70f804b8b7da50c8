/* object.h: kl_obj, one immutable version of a Kubernetes object.
 *
 * Representation (chosen for memory): the object's compact JSON bytes plus
 * its key, namespace, name, resourceVersion and uid, in ONE allocation. A
 * cJSON tree costs ~5x the JSON; this costs the JSON plus ~100 bytes.
 * Fields are read with the scanner in json.h; Lua converts each version to a
 * table once per Lua state (keyed by kl_obj_serial).
 *
 * Thread-safety: a kl_obj never changes after creation; ref/unref are atomic,
 * so any thread may read and share it. */
#ifndef KL_OBJECT_H
#define KL_OBJECT_H

#include <stdbool.h>
#include <stdint.h>

#include "json.h"

typedef struct kl_obj kl_obj;

/* How raw JSON becomes an object. All fields optional (zero = off). */
typedef struct kl_obj_opts {
  /* dotted member paths to strip, NULL-terminated; see kl_obj_default_drop */
  const char *const *drop;
  /* set when the JSON lacks them (items of typed lists carry neither) */
  const char *api_version;
  const char *kind;
  /* accept an object without metadata.name (e.g. a BOOKMARK's object) */
  bool allow_unnamed;
  /* the JSON is already the output of kl_json_compact / kl_json_compact_
   * value with these drop paths (so valid and compact): it is copied as is,
   * not scanned again. Set it ONLY on bytes that such a call produced (the
   * watch decoder does); on anything else the object's contents are
   * undefined (memory stays safe). */
  bool compacted;
} kl_obj_opts;

/* The default ingest transform: drop metadata.managedFields. */
extern const char *const kl_obj_default_drop[];

/* Parses, validates and compacts json into a NEW object (refcount 1).
 * Returns 0, KL_EJSON (malformed), or KL_EINVAL (not an object, or no
 * metadata.name). On error, when err is not NULL, *err is a NEW message
 * (free it) naming what is wrong. */
int kl_obj_new(const char *json, size_t n, const kl_obj_opts *opts,
               kl_obj **out, char **err);

/* Like kl_obj_new for the object value starting at json (leading
 * whitespace allowed) and ending anywhere before json + n: sets *after
 * just past it. For a stream decoder that has not framed the value yet:
 * KL_EJSON may also mean the value is not complete before json + n.
 * opts->compacted is ignored (the bytes are always validated). scratch:
 * NULL, or a buffer the caller keeps for the next call (the compacted
 * bytes are built there; it is sized to n, so keep n bounded). */
int kl_obj_new_prefix(const char *json, size_t n, const kl_obj_opts *opts,
                      kl_obj **out, char **err, const char **after,
                      kl_buf *scratch);

/* Returns obj with one more reference (NULL-safe). */
kl_obj *kl_obj_ref(kl_obj *obj);
/* Drops a reference; frees on the last one (NULL-safe). */
void kl_obj_unref(kl_obj *obj);

/* Borrowed accessors, valid while the caller holds a reference. Absent
 * fields read as "" (namespace of a cluster-scoped object, a missing uid). */
const char *kl_obj_json(const kl_obj *obj, size_t *len);
kl_span kl_obj_span(const kl_obj *obj);
const char *kl_obj_key(const kl_obj *obj);       /* "ns/name" or "name" */
const char *kl_obj_namespace(const kl_obj *obj);
const char *kl_obj_name(const kl_obj *obj);
const char *kl_obj_resource_version(const kl_obj *obj);
const char *kl_obj_uid(const kl_obj *obj);
/* A process-unique serial number of this version (never reused). */
uint64_t kl_obj_serial(const kl_obj *obj);
/* Bytes this object holds on the heap (for memory accounting). */
size_t kl_obj_footprint(const kl_obj *obj);

/* Reads a member by dotted path; false when absent. */
bool kl_obj_get(const kl_obj *obj, const char *path, kl_span *out);

/* MetaNamespaceKeyFunc on raw parts: returns a NEW "ns/name" or "name". */
char *kl_meta_key(const char *ns, const char *name);

#endif
