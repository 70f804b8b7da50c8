/* discovery.h: maps apiVersion + kind (or resource name) to the REST
 * resource (plural, scope, subresources) through the API server's discovery
 * endpoints (/api, /api/v1, /apis, /apis/GROUP/VERSION), cached per
 * group-version and refreshed on a miss at most every min_refresh seconds
 * (so CRDs created later are found). Used by the reflector and Lua writes.
 * Thread-safety: a kl_discovery may be used from any thread. */
#ifndef KL_DISCOVERY_H
#define KL_DISCOVERY_H

#include <stdbool.h>

#include "rest.h"

/* One resolved resource; every string is owned (kl_resource_free). */
typedef struct kl_resource {
  char *group;       /* "" for the core group */
  char *version;     /* "v1" */
  char *api_version; /* "v1" or "apps/v1" */
  char *resource;    /* plural: "configmaps" */
  char *kind;        /* "ConfigMap" */
  bool namespaced;
  bool has_status;   /* a status subresource exists */
  bool has_scale;
} kl_resource;

void kl_resource_free(kl_resource *r);

/* Returns a NEW path (free it) for the resource, e.g.
 * /api/v1/namespaces/NS/configmaps/NAME/status. ns NULL or "" means
 * cluster-wide (all namespaces for a namespaced resource; ignored for
 * cluster-scoped ones); name and subresource may be NULL. Segments are
 * percent-encoded. */
char *kl_resource_path(const kl_resource *r, const char *ns, const char *name,
                       const char *subresource);

typedef struct kl_discovery kl_discovery;

/* Returns a NEW cache on rest (borrowed: it must outlive the cache).
 * min_refresh_s: the least time between two fetches of one group-version
 * after a miss (0: 10 s; negative: refetch on every miss). */
kl_discovery *kl_discovery_new(kl_rest *rest, double min_refresh_s);
void kl_discovery_free(kl_discovery *d);

/* Looks up apiVersion ("v1", "apps/v1") + kind ("Deployment"). On a miss
 * the group-version is fetched again unless it was fetched less than
 * min_refresh_s ago. Returns 0 and sets *found (when true, *out is filled:
 * kl_resource_free it); or a negative KL_E* code for a failed request
 * (details in *err when not NULL; free with kl_rest_error_free). A 404 for
 * the group-version is "not found", not an error. */
int kl_discovery_resolve(kl_discovery *d, const char *api_version,
                         const char *kind, kl_resource *out, bool *found,
                         kl_rest_error *err);

/* The same by plural resource name ("deployments"); also accepts the
 * singular name and short names as the server lists them. */
int kl_discovery_resolve_resource(kl_discovery *d, const char *api_version,
                                  const char *resource, kl_resource *out,
                                  bool *found, kl_rest_error *err);

/* The server's preferred version of group ("" for core: "v1") as a NEW
 * apiVersion string in *out ("apps/v1"), from /api and /apis (cached like
 * the rest). Returns 0 and *out NULL when the group does not exist. */
int kl_discovery_preferred_version(kl_discovery *d, const char *group,
                                   char **out, kl_rest_error *err);

/* Forgets everything cached (e.g. after a CRD was deleted). */
void kl_discovery_invalidate(kl_discovery *d);

#endif
