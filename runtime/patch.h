/* patch.h: the PATCH flavours of the Kubernetes API on cJSON trees: JSON
 * merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch (an
 * approximation with a built-in table of merge keys) and server-side apply
 * with field ownership in metadata.managedFields (also an approximation).
 * Used by the local API server's write path. Thread-safety: pure functions;
 * inputs are only read, results are NEW trees owned by the caller.
 * See docs/selectors-and-patches.md for what is and is not modelled. */
#ifndef KL_PATCH_H
#define KL_PATCH_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "kl.h"

/* One field-ownership conflict of a server-side apply. */
typedef struct kl_patch_conflict {
  char *manager; /* printed as Kubernetes does: "\"x\"" or
                    "\"kubectl\" using v1 at 2026-...Z" (for Update owners) */
  char *field;   /* ".data.color", ".spec.containers[name=\"app\"].image" */
} kl_patch_conflict;

/* Why a patch failed, shaped for a Kubernetes Status: the server answers
 * with code/reason/message as they are. Fill with KL_PATCH_ERR_INIT and
 * release with kl_patch_err_free. */
typedef struct kl_patch_err {
  int code;            /* HTTP status: 400, 409 or 422 */
  const char *reason;  /* static: "BadRequest", "Invalid", "Conflict" */
  char *message;       /* Status.message (what kube-apiserver would say) */
  char *detail;        /* our precise cause (for logs and tests); for 422
                          JSON-patch errors the real server hides it behind
                          a generic message */
  kl_patch_conflict *conflicts; /* SSA conflicts (code 409), sorted */
  size_t nconflicts;
} kl_patch_err;
#define KL_PATCH_ERR_INIT {0, NULL, NULL, NULL, NULL, 0}
void kl_patch_err_free(kl_patch_err *err);

/* RFC 7386 JSON merge patch: returns a NEW tree = target patched (target
 * NULL counts as null). Object members with null values delete; any
 * non-object patch replaces the target. Never fails. */
cJSON *kl_patch_merge(const cJSON *target, const cJSON *patch);

/* RFC 6902 JSON patch: applies the operation array ops to a copy of
 * target, all or nothing. Returns 0 and a NEW tree in *out, or:
 *  KL_EINVAL, code 400 BadRequest: ops is not an array of objects (message
 *    as kube-apiserver: "json: cannot unmarshal object into Go value of
 *    type jsonpatch.Patch");
 *  KL_ENOENT, code 422 Invalid: a path that does not exist (remove, move
 *    or copy from a missing location, add into a missing parent, an array
 *    index out of range);
 *  KL_EINVAL, code 422 Invalid: a "test" whose value differs, an unknown
 *    op, a missing "path"/"value"/"from", a malformed pointer (as
 *    evanphx/json-patch, these are found while applying).
 * For every 422 the message is the generic "the server rejected our request
 * due to an error in our request" (what v1.20 sends, with empty details)
 * and err->detail says what went wrong ("test failed: /data/k is \"v\",
 * expected \"x\""). As evanphx/json-patch (used by kube-apiserver) does,
 * "replace" of a missing object member adds it. Pointers use RFC 6901
 * escapes (~0 is '~', ~1 is '/'); "-" appends to an array in "add". */
int kl_patch_json(const cJSON *target, const cJSON *ops, cJSON **out,
                  kl_patch_err *err);

/* Strategic merge patch (approximation, see the docs): merge-patch
 * semantics, except that lists whose field name has a known merge key
 * (containers/initContainers/ephemeralContainers/volumes/env/
 * imagePullSecrets/secrets by "name", ports by "containerPort" or "port",
 * volumeMounts by "mountPath", volumeDevices by "devicePath", conditions
 * and addresses by "type", ownerReferences by "uid", hostAliases by "ip",
 * podIPs/hostIPs by "ip", topologySpreadConstraints by "topologyKey") are
 * merged element by element, and finalizers are merged as a set of strings.
 * Other lists are replaced. Directives: "$patch": "delete" | "replace" |
 * "merge" on maps and merge-keyed list items, a {"$patch":"replace"} item
 * in a list, "$deleteFromPrimitiveList/<field>", "$setElementOrder/<field>"
 * (accepted, order not applied), "$retainKeys" (ignored). Returns 0 and a
 * NEW tree, or KL_EINVAL with code 400 (malformed directive) or 422. */
int kl_patch_strategic(const cJSON *target, const cJSON *patch, cJSON **out,
                       kl_patch_err *err);

/* Server-side apply (approximation). live: the stored object, or NULL when
 * it does not exist yet; its metadata.managedFields says who owns what.
 * applied: the applied configuration (from YAML or JSON; its
 * metadata.managedFields must be absent, else 400). manager: the
 * fieldManager (required: NULL or "" gives KL_EINVAL, code 422; the
 * server checks first and words its own message). force: take over fields
 * other managers own. now: the RFC 3339 time stamped on the entry (NULL:
 * the current time). api_version: written into the entry (NULL: applied's
 * apiVersion).
 * Semantics: every leaf the applied config sets is written into live and
 * owned by manager (operation Apply); a field this manager applied before
 * and omits now is removed from the object when no other manager owns it;
 * a field owned by another manager (Apply or Update) whose value would
 * change is a conflict, unless force (ownership then moves). Lists with a
 * known merge key (as for kl_patch_strategic) are merged by key and owned
 * per element (FieldsV1 "k:{...}"), finalizers per value ("v:..."), all
 * other lists atomically. name, namespace, apiVersion and kind are not
 * tracked, as in Kubernetes.
 * Returns 0 and a NEW object in *out (with updated managedFields; when
 * nothing changes the result equals live, so a re-apply is a no-op: check
 * with cJSON_Compare), or KL_EEXIST with err code 409 Conflict, message
 * "Apply failed with 1 conflict: conflict with \"x\": .data.color" and
 * err->conflicts, or KL_EINVAL with code 400/422. */
int kl_patch_apply(const cJSON *live, const cJSON *applied,
                   const char *manager, bool force, const char *now,
                   const char *api_version, cJSON **out, kl_patch_err *err);

/* Records a non-apply write in obj's metadata.managedFields (in place), as
 * kube-apiserver does for create/update/patch: the fields that differ
 * between old (NULL on create) and obj become owned by manager with
 * operation Update (one entry per manager+operation+apiVersion, time
 * updated), other managers lose them, fields no longer present are dropped
 * from every entry, and empty entries disappear. A newly created map is
 * owned with its "." element as Kubernetes shows ("f:data":{".":{},...}).
 * now/api_version: as for kl_patch_apply. Any managedFields the client
 * sent in obj are ignored when old carries some (the old ones are kept). */
void kl_patch_record_update(const cJSON *old, cJSON *obj,
                            const char *manager, const char *now,
                            const char *api_version);

/* The manager name kube-apiserver derives from a User-Agent: everything up
 * to the first '/' ("kubectl/v1.32.4 (linux/amd64) ..." -> "kubectl");
 * NULL or "" gives "unknown". Returns a NEW string. */
char *kl_patch_manager_from_user_agent(const char *user_agent);

/* RFC 6901 JSON pointer lookup: returns the BORROWED node at ptr inside
 * doc (valid while doc is unchanged), or NULL when absent or malformed.
 * "" is doc itself. */
cJSON *kl_json_pointer_get(const cJSON *doc, const char *ptr);

#endif
