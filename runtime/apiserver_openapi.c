/* apiserver_openapi.c: /openapi/v3 for the local API server: an index of
 * the served group-versions and, per group-version, a small OpenAPI 3.0
 * document: one schema per kind (x-kubernetes-group-version-kind; a CRD's
 * openAPIV3Schema, a permissive object for built-ins) and the REST paths
 * with their parameters. This is what kubectl 1.32 reads before `apply`: it
 * learns that the server does field validation (the fieldValidation query
 * parameter of PATCH), so it needs no client-side schema. /openapi/v2 (a
 * protobuf document) is not served: 404. See docs/serve.md, "OpenAPI".
 * Thread-safety: stateless; documents are built per request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiserver.h"

/* "apps" -> "io.k8s.api.apps.v1.Deployment"; custom groups are reversed as
 * kube-apiserver names them ("test.example.com" -> "com.example.test"). */
static char *schema_name(const kl_as_resource *res) {
  if (!res->custom) {
    const char *g = res->group[0] ? res->group : "core";
    char *dot = strchr(g, '.');
    size_t n = dot ? (size_t)(dot - g) : strlen(g);
    if (!strcmp(res->group, "apiextensions.k8s.io"))
      return kl_sprintf("io.k8s.apiextensions-apiserver.pkg.apis."
                        "apiextensions.%s.%s", res->version, res->kind);
    return kl_sprintf("io.k8s.api.%.*s.%s.%s", (int)n, g, res->version,
                      res->kind);
  }
  kl_buf b = KL_BUF_INIT;
  const char *g = res->group;
  const char *end = g + strlen(g);
  while (end > g) {
    const char *p = end;
    while (p > g && p[-1] != '.') p--;
    if (b.len) kl_buf_addc(&b, '.');
    kl_buf_add(&b, p, (size_t)(end - p));
    end = p > g ? p - 1 : g;
  }
  kl_buf_addf(&b, ".%s.%s", res->version, res->kind);
  return kl_buf_detach(&b, NULL);
}

static cJSON *gvk(const kl_as_resource *res) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "group", res->group);
  cJSON_AddStringToObject(o, "kind", res->kind);
  cJSON_AddStringToObject(o, "version", res->version);
  return o;
}

static cJSON *param(const char *name, const char *in, const char *type,
                    bool required) {
  cJSON *p = cJSON_CreateObject();
  cJSON_AddStringToObject(p, "name", name);
  cJSON_AddStringToObject(p, "in", in);
  if (required) cJSON_AddBoolToObject(p, "required", true);
  cJSON *sc = cJSON_AddObjectToObject(p, "schema");
  cJSON_AddStringToObject(sc, "type", type);
  cJSON_AddBoolToObject(sc, "uniqueItems", true);
  return p;
}

static cJSON *ref(const char *name) {
  cJSON *o = cJSON_CreateObject();
  char *r = kl_sprintf("#/components/schemas/%s", name);
  cJSON_AddStringToObject(o, "$ref", r);
  free(r);
  return o;
}

static cJSON *content(const char *schema, const char *const *types) {
  cJSON *c = cJSON_CreateObject();
  for (int i = 0; types[i]; i++) {
    cJSON *m = cJSON_AddObjectToObject(c, types[i]);
    if (schema) cJSON_AddItemToObject(m, "schema", ref(schema));
    else cJSON_AddObjectToObject(m, "schema");
  }
  return c;
}

static const char *const out_types[] = {"application/json", "application/yaml",
                                        "application/vnd.kubernetes.protobuf",
                                        NULL};

/* One operation: verb with its parameters, body and GVK. */
static cJSON *operation(const kl_as_resource *res, const char *sname,
                        const char *action, const char *opid, bool write,
                        bool patch) {
  cJSON *op = cJSON_CreateObject();
  cJSON_AddStringToObject(op, "operationId", opid);
  cJSON *params = cJSON_AddArrayToObject(op, "parameters");
  if (write) {
    cJSON_AddItemToArray(params, param("dryRun", "query", "string", false));
    cJSON_AddItemToArray(params,
                         param("fieldManager", "query", "string", patch));
    cJSON_AddItemToArray(params,
                         param("fieldValidation", "query", "string", false));
  }
  if (patch) cJSON_AddItemToArray(params, param("force", "query", "boolean",
                                                false));
  if (!strcmp(action, "list")) {
    static const char *const lp[] = {"labelSelector", "fieldSelector",
                                     "continue", "resourceVersion",
                                     "resourceVersionMatch", NULL};
    for (int i = 0; lp[i]; i++)
      cJSON_AddItemToArray(params, param(lp[i], "query", "string", false));
    cJSON_AddItemToArray(params, param("limit", "query", "integer", false));
    cJSON_AddItemToArray(params, param("watch", "query", "boolean", false));
  }
  if (patch) {
    /* No application/strategic-merge-patch+json here on purpose: with it,
     * kubectl would compute client-side apply patches from these (partial)
     * schemas; without it, it uses its compiled-in types (built-ins) or a
     * JSON merge patch (custom resources), as against kube-apiserver. */
    static const char *const pt[] = {"application/apply-patch+yaml",
                                     "application/json-patch+json",
                                     "application/merge-patch+json", NULL};
    cJSON *rb = cJSON_AddObjectToObject(op, "requestBody");
    cJSON_AddItemToObject(rb, "content", content(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch", pt));
    cJSON_AddBoolToObject(rb, "required", true);
  } else if (write) {
    static const char *const jt[] = {"*/*", NULL};
    cJSON *rb = cJSON_AddObjectToObject(op, "requestBody");
    cJSON_AddItemToObject(rb, "content", content(sname, jt));
    cJSON_AddBoolToObject(rb, "required", true);
  }
  cJSON *resp = cJSON_AddObjectToObject(op, "responses");
  cJSON *ok = cJSON_AddObjectToObject(resp, "200");
  cJSON_AddStringToObject(ok, "description", "OK");
  cJSON_AddItemToObject(ok, "content", content(sname, out_types));
  cJSON_AddStringToObject(op, "x-kubernetes-action", action);
  cJSON_AddItemToObject(op, "x-kubernetes-group-version-kind", gvk(res));
  return op;
}

static void add_paths(cJSON *paths, const kl_as_resource *res,
                      const char *sname) {
  char *base = res->group[0]
                   ? kl_sprintf("/apis/%s/%s", res->group, res->version)
                   : kl_strdup("/api/v1");
  char *coll = res->namespaced
                   ? kl_sprintf("%s/namespaces/{namespace}/%s", base,
                                res->plural)
                   : kl_sprintf("%s/%s", base, res->plural);
  char *item = kl_sprintf("%s/{name}", coll);
  char opid[256];
  cJSON *c = cJSON_AddObjectToObject(paths, coll);
  snprintf(opid, sizeof opid, "list%s", res->kind);
  cJSON_AddItemToObject(c, "get", operation(res, sname, "list", opid, false,
                                            false));
  snprintf(opid, sizeof opid, "create%s", res->kind);
  cJSON_AddItemToObject(c, "post", operation(res, sname, "post", opid, true,
                                             false));
  cJSON *it = cJSON_AddObjectToObject(paths, item);
  snprintf(opid, sizeof opid, "read%s", res->kind);
  cJSON_AddItemToObject(it, "get", operation(res, sname, "get", opid, false,
                                             false));
  snprintf(opid, sizeof opid, "replace%s", res->kind);
  cJSON_AddItemToObject(it, "put", operation(res, sname, "put", opid, true,
                                             false));
  snprintf(opid, sizeof opid, "patch%s", res->kind);
  cJSON_AddItemToObject(it, "patch", operation(res, sname, "patch", opid,
                                               true, true));
  snprintf(opid, sizeof opid, "delete%s", res->kind);
  cJSON_AddItemToObject(it, "delete", operation(res, sname, "delete", opid,
                                                false, false));
  cJSON *params = cJSON_AddArrayToObject(it, "parameters");
  cJSON_AddItemToArray(params, param("name", "path", "string", true));
  if (res->namespaced) {
    cJSON_AddItemToArray(params, param("namespace", "path", "string", true));
    cJSON *cp = cJSON_AddArrayToObject(c, "parameters");
    cJSON_AddItemToArray(cp, param("namespace", "path", "string", true));
  }
  free(base);
  free(coll);
  free(item);
}

/* The CRD's openAPIV3Schema for res's version (NEW tree) or NULL. */
static cJSON *crd_schema(kl_apiserver *s, const kl_as_resource *res) {
  kl_as_resource *crdres =
      kl_as_find(s, "apiextensions.k8s.io", "v1", "customresourcedefinitions");
  if (!crdres || !res->crd_name) return NULL;
  kl_as_result r = KL_AS_RESULT_INIT;
  kl_as_opts o;
  memset(&o, 0, sizeof o);
  kl_as_get(s, crdres, "", res->crd_name, NULL, &o, &r);
  cJSON *crd = r.code == 200 ? cJSON_ParseWithLength(r.body.data, r.body.len)
                             : NULL;
  kl_as_result_free(&r);
  cJSON *out = NULL;
  const cJSON *v;
  cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetObjectItemCaseSensitive(crd, "spec"),
                            "versions")) {
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(v, "name");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(v, "schema"), "openAPIV3Schema");
    if (cJSON_IsString(nm) && !strcmp(nm->valuestring, res->version) &&
        cJSON_IsObject(sc))
      out = cJSON_Duplicate(sc, 1);
  }
  cJSON_Delete(crd);
  return out;
}

static cJSON *kind_schema(kl_apiserver *s, const kl_as_resource *res) {
  cJSON *sc = res->custom ? crd_schema(s, res) : NULL;
  if (!sc) {
    sc = cJSON_CreateObject();
    cJSON_AddStringToObject(sc, "type", "object");
    cJSON_AddBoolToObject(sc, "x-kubernetes-preserve-unknown-fields", true);
  }
  cJSON *props = cJSON_GetObjectItemCaseSensitive(sc, "properties");
  if (cJSON_IsObject(props)) {
    static const char *const std[] = {"apiVersion", "kind", NULL};
    for (int i = 0; std[i]; i++)
      if (!cJSON_GetObjectItemCaseSensitive(props, std[i])) {
        cJSON *p = cJSON_AddObjectToObject(props, std[i]);
        cJSON_AddStringToObject(p, "type", "string");
      }
    if (!cJSON_GetObjectItemCaseSensitive(props, "metadata"))
      cJSON_AddItemToObject(props, "metadata", ref(
          "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
  }
  cJSON_DeleteItemFromObjectCaseSensitive(sc,
                                          "x-kubernetes-group-version-kind");
  cJSON *l = cJSON_AddArrayToObject(sc, "x-kubernetes-group-version-kind");
  cJSON_AddItemToArray(l, gvk(res));
  return sc;
}

static bool gv_is(const kl_as_resource *r, const char *group,
                  const char *version) {
  return !r->gone && !strcmp(r->group, group) && !strcmp(r->version, version);
}

/* The document of one group-version (NEW string) or NULL when not served. */
static char *gv_document(kl_apiserver *s, const char *group,
                         const char *version) {
  size_t n = 0;
  kl_as_resource **rs = kl_as_resources(s, &n);
  cJSON *doc = NULL, *paths = NULL, *schemas = NULL;
  for (size_t i = 0; i < n; i++) {
    const kl_as_resource *r = rs[i];
    if (!gv_is(r, group, version)) continue;
    if (!doc) {
      doc = cJSON_CreateObject();
      cJSON_AddStringToObject(doc, "openapi", "3.0.0");
      cJSON *info = cJSON_AddObjectToObject(doc, "info");
      cJSON_AddStringToObject(info, "title", "Kubernetes");
      cJSON_AddStringToObject(info, "version", "v1.32.0");
      paths = cJSON_AddObjectToObject(doc, "paths");
      cJSON *comp = cJSON_AddObjectToObject(doc, "components");
      schemas = cJSON_AddObjectToObject(comp, "schemas");
      cJSON *om = cJSON_AddObjectToObject(
          schemas, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
      cJSON_AddStringToObject(om, "type", "object");
      cJSON_AddBoolToObject(om, "x-kubernetes-preserve-unknown-fields", true);
      cJSON *pt = cJSON_AddObjectToObject(
          schemas, "io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
      cJSON_AddStringToObject(pt, "type", "object");
    }
    char *sname = schema_name(r);
    if (!cJSON_GetObjectItemCaseSensitive(schemas, sname))
      cJSON_AddItemToObject(schemas, sname, kind_schema(s, r));
    add_paths(paths, r, sname);
    free(sname);
  }
  free(rs);
  if (!doc) return NULL;
  char *txt = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  return txt;
}

static unsigned long long fnv64(const char *p) {
  unsigned long long h = 1469598103934665603ULL;
  for (; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  return h;
}

static void index_document(kl_apiserver *s, kl_buf *out) {
  size_t n = 0;
  kl_as_resource **rs = kl_as_resources(s, &n);
  cJSON *doc = cJSON_CreateObject();
  cJSON *paths = cJSON_AddObjectToObject(doc, "paths");
  for (size_t i = 0; i < n; i++) {
    const kl_as_resource *r = rs[i];
    if (r->gone) continue;
    char *key = r->group[0] ? kl_sprintf("apis/%s/%s", r->group, r->version)
                            : kl_sprintf("api/%s", r->version);
    if (!cJSON_GetObjectItemCaseSensitive(paths, key)) {
      char *d = gv_document(s, r->group, r->version);
      char *url = kl_sprintf("/openapi/v3/%s?hash=%016llX", key,
                             d ? fnv64(d) : 0ULL);
      cJSON *e = cJSON_AddObjectToObject(paths, key);
      cJSON_AddStringToObject(e, "serverRelativeURL", url);
      free(url);
      free(d);
    }
    free(key);
  }
  free(rs);
  char *txt = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  kl_buf_adds(out, txt);
  free(txt);
}

bool kl_as_openapi_handle(kl_apiserver *s, const kl_as_http_req *req,
                          kl_as_reply *rep) {
  const char *p = req->path;
  if (strncmp(p, "/openapi/v3", 11) || (p[11] && p[11] != '/')) return false;
  if (strcmp(req->method, "GET")) return false;
  p += 11;
  while (*p == '/') p++;
  if (!*p) {
    rep->code = 200;
    index_document(s, &rep->body);
    return true;
  }
  /* "api/v1" or "apis/<group>/<version>" */
  char *doc = NULL;
  if (!strncmp(p, "api/", 4) && !strchr(p + 4, '/')) {
    doc = gv_document(s, "", p + 4);
  } else if (!strncmp(p, "apis/", 5)) {
    const char *g = p + 5;
    const char *sl = strchr(g, '/');
    if (sl && sl[1] && !strchr(sl + 1, '/')) {
      char *group = kl_strndup(g, (size_t)(sl - g));
      doc = gv_document(s, group, sl + 1);
      free(group);
    }
  }
  if (!doc) return false;
  rep->code = 200;
  kl_buf_adds(&rep->body, doc);
  free(doc);
  return true;
}
