/* apiserver_resources.c: the built-in resources of the local API server and
 * the discovery documents (/api, /api/v1, /apis, /apis/G, /apis/G/V,
 * /version), shaped like kube-apiserver v1.20's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiserver.h"
#include "json.h"

typedef struct builtin {
  const char *group, *version, *plural, *kind;
  bool namespaced, has_status, has_generation;
  const char *short_names[3];
  const char *categories[2];
  const char *fields[4];
} builtin;

static const builtin builtins[] = {
    {"", "v1", "configmaps", "ConfigMap", true, false, false, {"cm"}, {0}, {0}},
    {"", "v1", "endpoints", "Endpoints", true, false, false, {"ep"}, {0}, {0}},
    {"", "v1", "events", "Event", true, false, false, {"ev"}, {0},
     {"involvedObject.kind", "involvedObject.name", "reason", "type"}},
    {"", "v1", "namespaces", "Namespace", false, true, false, {"ns"}, {0},
     {"status.phase"}},
    {"", "v1", "nodes", "Node", false, true, false, {"no"}, {0},
     {"spec.unschedulable"}},
    {"", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true, true,
     false, {"pvc"}, {0}, {0}},
    {"", "v1", "persistentvolumes", "PersistentVolume", false, true, false,
     {"pv"}, {0}, {0}},
    {"", "v1", "pods", "Pod", true, true, false, {"po"}, {"all"},
     {"spec.nodeName", "status.phase", "spec.serviceAccountName"}},
    {"", "v1", "secrets", "Secret", true, false, false, {0}, {0}, {"type"}},
    {"", "v1", "serviceaccounts", "ServiceAccount", true, false, false, {"sa"},
     {0}, {0}},
    {"", "v1", "services", "Service", true, true, false, {"svc"}, {"all"},
     {0}},
    {"apps", "v1", "controllerrevisions", "ControllerRevision", true, false,
     false, {0}, {0}, {0}},
    {"apps", "v1", "daemonsets", "DaemonSet", true, true, true, {"ds"},
     {"all"}, {0}},
    {"apps", "v1", "deployments", "Deployment", true, true, true, {"deploy"},
     {"all"}, {0}},
    {"apps", "v1", "replicasets", "ReplicaSet", true, true, true, {"rs"},
     {"all"}, {"status.replicas"}},
    {"apps", "v1", "statefulsets", "StatefulSet", true, true, true, {"sts"},
     {"all"}, {0}},
    {"events.k8s.io", "v1", "events", "Event", true, false, false, {"ev"},
     {0}, {0}},
    {"batch", "v1", "jobs", "Job", true, true, true, {0}, {"all"},
     {"status.successful"}},
    {"coordination.k8s.io", "v1", "leases", "Lease", true, false, false, {0},
     {0}, {0}},
    {"apiextensions.k8s.io", "v1", "customresourcedefinitions",
     "CustomResourceDefinition", false, true, true, {"crd", "crds"}, {0},
     {0}},
    /* stored and served only (no authorization): manifests with RBAC apply */
    {"rbac.authorization.k8s.io", "v1", "clusterrolebindings",
     "ClusterRoleBinding", false, false, false, {0}, {0}, {0}},
    {"rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false,
     false, false, {0}, {0}, {0}},
    {"rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true,
     false, false, {0}, {0}, {0}},
    {"rbac.authorization.k8s.io", "v1", "roles", "Role", true, false, false,
     {0}, {0}, {0}},
};

static char **strv_dup(const char *const *v, size_t max) {
  size_t n = 0;
  while (n < max && v[n]) n++;
  char **out = kl_calloc(n + 1, sizeof *out);
  for (size_t i = 0; i < n; i++) out[i] = kl_strdup(v[i]);
  return out;
}

bool kl_as_builtin_resource(size_t i, kl_as_resource *r) {
  if (i >= sizeof builtins / sizeof builtins[0]) return false;
  const builtin *b = &builtins[i];
  r->group = kl_strdup(b->group);
  r->version = kl_strdup(b->version);
  r->api_version = b->group[0] ? kl_sprintf("%s/%s", b->group, b->version)
                               : kl_strdup(b->version);
  r->plural = kl_strdup(b->plural);
  r->singular = kl_strdup("");
  r->kind = kl_strdup(b->kind);
  r->list_kind = kl_sprintf("%sList", b->kind);
  r->short_names = strv_dup(b->short_names, 3);
  r->categories = strv_dup(b->categories, 2);
  r->fields = strv_dup(b->fields, 4);
  r->namespaced = b->namespaced;
  r->has_status = b->has_status;
  r->has_generation = b->has_generation;
  if (!strcmp(b->group, "apps") && (!strcmp(b->plural, "deployments") ||
                                    !strcmp(b->plural, "replicasets") ||
                                    !strcmp(b->plural, "statefulsets"))) {
    r->has_scale = true;
    r->scale_spec = kl_strdup(".spec.replicas");
    r->scale_status = kl_strdup(".status.replicas");
  }
  return true;
}

static const char version_json[] =
    "{\n"
    "  \"major\": \"1\",\n"
    "  \"minor\": \"20\",\n"
    "  \"gitVersion\": \"v1.20.2\",\n"
    "  \"gitCommit\": \"faecb196815e248d3ecfb03c680a4507229c2a56\",\n"
    "  \"gitTreeState\": \"clean\",\n"
    "  \"buildDate\": \"2026-11-24T02:20:03Z\",\n"
    "  \"goVersion\": \"go1.19.8\",\n"
    "  \"compiler\": \"gc\",\n"
    "  \"platform\": \"linux/amd64\"\n"
    "}";

const char *kl_as_version_json(void) { return version_json; }

static void not_found(kl_as_result *r) {
  r->code = 404;
  r->body.len = 0;
  kl_buf_adds(&r->body, "404 page not found");
}

static void add_str(kl_buf *b, const char *s) {
  kl_json_quote(b, s, strlen(s));
}

static void add_strv(kl_buf *b, char **v) {
  kl_buf_addc(b, '[');
  for (size_t i = 0; v && v[i]; i++) {
    if (i) kl_buf_addc(b, ',');
    add_str(b, v[i]);
  }
  kl_buf_addc(b, ']');
}

void kl_as_discovery_api(kl_apiserver *s, const char *host,
                         kl_as_result *r) {
  (void)s;
  r->code = 200;
  kl_buf_adds(&r->body, "{\"kind\":\"APIVersions\",\"versions\":[\"v1\"],"
                        "\"serverAddressByClientCIDRs\":[{\"clientCIDR\":"
                        "\"0.0.0.0/0\",\"serverAddress\":");
  add_str(&r->body, host && *host ? host : "127.0.0.1");
  kl_buf_adds(&r->body, "}]}");
}

/* Groups in discovery order (first appearance), "" excluded. */
static size_t groups_of(kl_as_resource **rs, size_t n, const char **out) {
  size_t ng = 0;
  for (size_t i = 0; i < n; i++) {
    if (!rs[i]->group[0]) continue;
    size_t j = 0;
    while (j < ng && strcmp(out[j], rs[i]->group)) j++;
    if (j == ng) out[ng++] = rs[i]->group;
  }
  return ng;
}

static void group_json(kl_buf *b, const char *g, kl_as_resource **rs,
                       size_t n) {
  /* versions of g in order; the first is preferred */
  const char *vers[16];
  size_t nv = 0;
  for (size_t i = 0; i < n && nv < 16; i++) {
    if (strcmp(rs[i]->group, g)) continue;
    size_t j = 0;
    while (j < nv && strcmp(vers[j], rs[i]->version)) j++;
    if (j == nv) vers[nv++] = rs[i]->version;
  }
  kl_buf_adds(b, "\"name\":");
  add_str(b, g);
  kl_buf_adds(b, ",\"versions\":[");
  for (size_t j = 0; j < nv; j++) {
    kl_buf_addf(b, "%s{\"groupVersion\":\"%s/%s\",\"version\":\"%s\"}",
                j ? "," : "", g, vers[j], vers[j]);
  }
  kl_buf_addf(b, "],\"preferredVersion\":{\"groupVersion\":\"%s/%s\","
                 "\"version\":\"%s\"}", g, vers[0], vers[0]);
}

void kl_as_discovery_groups(kl_apiserver *s, kl_as_result *r) {
  size_t n;
  kl_as_resource **rs = kl_as_resources(s, &n);
  const char **gs = kl_calloc(n + 1, sizeof *gs);
  size_t ng = groups_of(rs, n, gs);
  r->code = 200;
  kl_buf_adds(&r->body,
              "{\"kind\":\"APIGroupList\",\"apiVersion\":\"v1\",\"groups\":[");
  for (size_t i = 0; i < ng; i++) {
    kl_buf_adds(&r->body, i ? ",{" : "{");
    group_json(&r->body, gs[i], rs, n);
    kl_buf_addc(&r->body, '}');
  }
  kl_buf_adds(&r->body, "]}");
  free(gs);
  free(rs);
}

void kl_as_discovery_group(kl_apiserver *s, const char *group,
                           kl_as_result *r) {
  size_t n;
  kl_as_resource **rs = kl_as_resources(s, &n);
  bool found = false;
  for (size_t i = 0; i < n && !found; i++)
    found = group[0] && !strcmp(rs[i]->group, group);
  if (!found) {
    not_found(r);
  } else {
    r->code = 200;
    kl_buf_adds(&r->body, "{\"kind\":\"APIGroup\",\"apiVersion\":\"v1\",");
    group_json(&r->body, group, rs, n);
    kl_buf_addc(&r->body, '}');
  }
  free(rs);
}

static void resource_json(kl_buf *b, const kl_as_resource *res,
                          const char *sub) {
  static const char *verbs_all =
      "[\"create\",\"delete\",\"deletecollection\",\"get\",\"list\","
      "\"patch\",\"update\",\"watch\"]";
  static const char *verbs_ns =
      "[\"create\",\"delete\",\"get\",\"list\",\"patch\",\"update\","
      "\"watch\"]";
  kl_buf_adds(b, "{\"name\":");
  if (sub) {
    char *nm = kl_sprintf("%s/%s", res->plural, sub);
    add_str(b, nm);
    free(nm);
  } else {
    add_str(b, res->plural);
  }
  kl_buf_adds(b, ",\"singularName\":");
  add_str(b, sub ? "" : res->singular);
  kl_buf_addf(b, ",\"namespaced\":%s,", res->namespaced ? "true" : "false");
  if (sub && !strcmp(sub, "scale")) {
    kl_buf_adds(b, "\"group\":\"autoscaling\",\"version\":\"v1\","
                   "\"kind\":\"Scale\"");
  } else {
    kl_buf_adds(b, "\"kind\":");
    add_str(b, res->kind);
  }
  kl_buf_adds(b, ",\"verbs\":");
  if (sub)
    kl_buf_adds(b, "[\"get\",\"patch\",\"update\"]");
  else
    kl_buf_adds(b, strcmp(res->plural, "namespaces") ? verbs_all : verbs_ns);
  if (!sub && res->short_names && res->short_names[0]) {
    kl_buf_adds(b, ",\"shortNames\":");
    add_strv(b, res->short_names);
  }
  if (!sub && res->categories && res->categories[0]) {
    kl_buf_adds(b, ",\"categories\":");
    add_strv(b, res->categories);
  }
  kl_buf_addc(b, '}');
}

void kl_as_discovery_resources(kl_apiserver *s, const char *group,
                               const char *version, kl_as_result *r) {
  size_t n;
  kl_as_resource **rs = kl_as_resources(s, &n);
  kl_buf b = KL_BUF_INIT;
  size_t nfound = 0;
  for (size_t i = 0; i < n; i++) {
    kl_as_resource *res = rs[i];
    if (strcmp(res->group, group) || strcmp(res->version, version)) continue;
    if (nfound++) kl_buf_addc(&b, ',');
    resource_json(&b, res, NULL);
    if (res->has_scale) { /* kube-apiserver lists subresources by name */
      kl_buf_addc(&b, ',');
      resource_json(&b, res, "scale");
    }
    if (res->has_status) {
      kl_buf_addc(&b, ',');
      resource_json(&b, res, "status");
    }
  }
  free(rs);
  if (!nfound) {
    kl_buf_free(&b);
    not_found(r);
    return;
  }
  r->code = 200;
  if (group[0])
    kl_buf_addf(&r->body, "{\"kind\":\"APIResourceList\",\"apiVersion\":"
                          "\"v1\",\"groupVersion\":\"%s/%s\",", group,
                version);
  else
    kl_buf_addf(&r->body, "{\"kind\":\"APIResourceList\",\"groupVersion\":"
                          "\"%s\",", version);
  kl_buf_adds(&r->body, "\"resources\":[");
  kl_buf_add(&r->body, b.data, b.len);
  kl_buf_adds(&r->body, "]}");
  kl_buf_free(&b);
}
