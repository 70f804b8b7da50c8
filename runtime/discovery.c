/* discovery.c: the discovery cache (APIResourceList per group-version,
 * APIGroupList for preferred versions), parsed with the json.h scanner. */
#include "discovery.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "json.h"

/* One resource as listed, with the names it may be looked up by. */
typedef struct dres {
  kl_resource r;
  char *singular;
  char **short_names;
  int nshort;
} dres;

typedef struct gventry {
  double fetched;
  dres *v;
  int n;
} gventry;

struct kl_discovery {
  kl_rest *rest;
  double min_refresh;
  pthread_mutex_t mu;       /* guards the maps */
  pthread_mutex_t fetch_mu; /* one fetch at a time */
  kl_hmap gvs;              /* apiVersion -> gventry* */
  kl_hmap groups;           /* group -> preferred apiVersion (char*) */
  double groups_fetched;    /* 0: never */
};

void kl_resource_free(kl_resource *r) {
  if (!r) return;
  free(r->group);
  free(r->version);
  free(r->api_version);
  free(r->resource);
  free(r->kind);
  memset(r, 0, sizeof *r);
}

static void resource_copy(kl_resource *dst, const kl_resource *s) {
  dst->group = kl_strdup(s->group);
  dst->version = kl_strdup(s->version);
  dst->api_version = kl_strdup(s->api_version);
  dst->resource = kl_strdup(s->resource);
  dst->kind = kl_strdup(s->kind);
  dst->namespaced = s->namespaced;
  dst->has_status = s->has_status;
  dst->has_scale = s->has_scale;
}

char *kl_resource_path(const kl_resource *r, const char *ns, const char *name,
                       const char *subresource) {
  kl_buf b = KL_BUF_INIT;
  if (!r->group || !*r->group) {
    kl_buf_adds(&b, "/api");
  } else {
    kl_buf_adds(&b, "/apis");
    kl_rest_path_add(&b, r->group);
  }
  kl_rest_path_add(&b, r->version);
  if (r->namespaced && ns && *ns) {
    kl_buf_adds(&b, "/namespaces");
    kl_rest_path_add(&b, ns);
  }
  kl_rest_path_add(&b, r->resource);
  if (name && *name) {
    kl_rest_path_add(&b, name);
    if (subresource && *subresource) kl_rest_path_add(&b, subresource);
  }
  return kl_buf_detach(&b, NULL);
}

static void gventry_free(gventry *e) {
  if (!e) return;
  for (int i = 0; i < e->n; i++) {
    kl_resource_free(&e->v[i].r);
    free(e->v[i].singular);
    for (int j = 0; j < e->v[i].nshort; j++) free(e->v[i].short_names[j]);
    free(e->v[i].short_names);
  }
  free(e->v);
  free(e);
}

kl_discovery *kl_discovery_new(kl_rest *rest, double min_refresh_s) {
  kl_discovery *d = kl_calloc(1, sizeof *d);
  d->rest = rest;
  d->min_refresh = min_refresh_s == 0 ? 10 : min_refresh_s;
  pthread_mutex_init(&d->mu, NULL);
  pthread_mutex_init(&d->fetch_mu, NULL);
  kl_hmap_init(&d->gvs, KL_HMAP_OWN_KEYS);
  kl_hmap_init(&d->groups, KL_HMAP_OWN_KEYS);
  return d;
}

static void clear_maps(kl_discovery *d) {
  const char *k;
  void *v;
  for (size_t i = 0; kl_hmap_next(&d->gvs, &i, &k, &v);) gventry_free(v);
  for (size_t i = 0; kl_hmap_next(&d->groups, &i, &k, &v);) free(v);
  kl_hmap_free(&d->gvs);
  kl_hmap_free(&d->groups);
  kl_hmap_init(&d->gvs, KL_HMAP_OWN_KEYS);
  kl_hmap_init(&d->groups, KL_HMAP_OWN_KEYS);
  d->groups_fetched = 0;
}

void kl_discovery_free(kl_discovery *d) {
  if (!d) return;
  clear_maps(d);
  kl_hmap_free(&d->gvs);
  kl_hmap_free(&d->groups);
  pthread_mutex_destroy(&d->mu);
  pthread_mutex_destroy(&d->fetch_mu);
  free(d);
}

void kl_discovery_invalidate(kl_discovery *d) {
  pthread_mutex_lock(&d->mu);
  clear_maps(d);
  pthread_mutex_unlock(&d->mu);
}

/* GETs path; body compacted into out. Returns 0, 1 for a 404, or < 0. */
static int get_json(kl_discovery *d, const char *path, kl_buf *out,
                    kl_rest_error *err) {
  kl_rest_req req = {.method = "GET", .path = path,
                     .accept = "application/json, */*"};
  kl_rest_resp resp;
  kl_rest_error e;
  int rc = kl_rest_do(d->rest, &req, &resp, &e);
  if (rc == KL_EHTTP && resp.status == 404) {
    kl_rest_resp_free(&resp);
    kl_rest_error_free(&e);
    return 1;
  }
  if (!rc && kl_json_compact(resp.body.data ? resp.body.data : "",
                             resp.body.len, NULL, out) != 0) {
    rc = KL_EPROTO;
    kl_rest_error_free(&e);
    e.message = kl_sprintf("GET %s%s: discovery answer is not JSON",
                           kl_rest_server(d->rest), path);
  }
  kl_rest_resp_free(&resp);
  if (rc && err) *err = e;
  else kl_rest_error_free(&e);
  return rc;
}

static char *span_str(kl_span obj, const char *path) {
  kl_span v;
  if (!kl_json_get(obj, path, &v) || kl_json_type(v) != 's') return NULL;
  return kl_json_strdup(v);
}

static gventry *parse_resource_list(const char *gv, kl_span body) {
  gventry *e = kl_calloc(1, sizeof *e);
  kl_span list, item, key;
  if (!kl_json_get(body, "resources", &list) || kl_json_type(list) != 'a')
    return e;
  const char *slash = strchr(gv, '/');
  char *group = slash ? kl_strndup(gv, (size_t)(slash - gv)) : kl_strdup("");
  const char *version = slash ? slash + 1 : gv;
  kl_json_iter it;
  /* first pass: main resources */
  kl_json_iter_init(&it, list);
  while (kl_json_next(&it, &key, &item)) {
    char *name = span_str(item, "name");
    char *kind = span_str(item, "kind");
    if (!name || !kind || strchr(name, '/')) {
      free(name);
      free(kind);
      continue;
    }
    e->v = kl_realloc(e->v, sizeof(dres) * (size_t)(e->n + 1));
    dres *r = &e->v[e->n++];
    memset(r, 0, sizeof *r);
    r->r.group = kl_strdup(group);
    r->r.version = kl_strdup(version);
    r->r.api_version = kl_strdup(gv);
    r->r.resource = name;
    r->r.kind = kind;
    kl_span ns;
    r->r.namespaced = kl_json_get(item, "namespaced", &ns) &&
                      kl_json_type(ns) == 't';
    r->singular = span_str(item, "singularName");
    if (!r->singular || !*r->singular) {
      free(r->singular);
      r->singular = kl_strdup(kind);
      for (char *p = r->singular; *p; p++) *p = (char)tolower((unsigned char)*p);
    }
    kl_span sn, s, k2;
    if (kl_json_get(item, "shortNames", &sn) && kl_json_type(sn) == 'a') {
      kl_json_iter si;
      kl_json_iter_init(&si, sn);
      while (kl_json_next(&si, &k2, &s)) {
        char *str = kl_json_strdup(s);
        if (!str) continue;
        r->short_names = kl_realloc(r->short_names,
                                    sizeof(char *) * (size_t)(r->nshort + 1));
        r->short_names[r->nshort++] = str;
      }
    }
  }
  /* second pass: subresources ("pods/status") */
  kl_json_iter_init(&it, list);
  while (kl_json_next(&it, &key, &item)) {
    char *name = span_str(item, "name");
    char *sl = name ? strchr(name, '/') : NULL;
    if (sl) {
      *sl = '\0';
      for (int i = 0; i < e->n; i++)
        if (!strcmp(e->v[i].r.resource, name)) {
          if (!strcmp(sl + 1, "status")) e->v[i].r.has_status = true;
          if (!strcmp(sl + 1, "scale")) e->v[i].r.has_scale = true;
        }
    }
    free(name);
  }
  free(group);
  return e;
}

static const dres *find_in(const gventry *e, const char *kind,
                           const char *resource) {
  if (!e) return NULL;
  for (int i = 0; i < e->n; i++) {
    const dres *r = &e->v[i];
    if (kind && !strcmp(r->r.kind, kind)) return r;
    if (resource && (!strcmp(r->r.resource, resource) ||
                     !strcmp(r->singular, resource)))
      return r;
  }
  if (resource)
    for (int i = 0; i < e->n; i++)
      for (int j = 0; j < e->v[i].nshort; j++)
        if (!strcmp(e->v[i].short_names[j], resource)) return &e->v[i];
  return NULL;
}

static bool lookup(kl_discovery *d, const char *gv, const char *kind,
                   const char *resource, kl_resource *out, bool *stale) {
  pthread_mutex_lock(&d->mu);
  gventry *e = kl_hmap_get(&d->gvs, gv);
  const dres *r = find_in(e, kind, resource);
  if (r) resource_copy(out, &r->r);
  *stale = !e || d->min_refresh < 0 || kl_now() - e->fetched >= d->min_refresh;
  pthread_mutex_unlock(&d->mu);
  return r != NULL;
}

static int resolve(kl_discovery *d, const char *gv, const char *kind,
                   const char *resource, kl_resource *out, bool *found,
                   kl_rest_error *err) {
  memset(out, 0, sizeof *out);
  *found = false;
  if (err) {
    memset(err, 0, sizeof *err);
    err->retry_after_s = -1;
  }
  if (!gv || !*gv) return KL_EINVAL;
  bool stale;
  if (lookup(d, gv, kind, resource, out, &stale)) {
    *found = true;
    return 0;
  }
  if (!stale) return 0;
  pthread_mutex_lock(&d->fetch_mu);
  /* another thread may have fetched while we waited */
  if (lookup(d, gv, kind, resource, out, &stale) || !stale) {
    pthread_mutex_unlock(&d->fetch_mu);
    *found = out->kind != NULL;
    return 0;
  }
  kl_buf path = KL_BUF_INIT;
  if (strchr(gv, '/')) {
    const char *slash = strchr(gv, '/');
    kl_buf_adds(&path, "/apis");
    char *g = kl_strndup(gv, (size_t)(slash - gv));
    kl_rest_path_add(&path, g);
    kl_rest_path_add(&path, slash + 1);
    free(g);
  } else {
    kl_buf_adds(&path, "/api");
    kl_rest_path_add(&path, gv);
  }
  kl_buf body = KL_BUF_INIT;
  int rc = get_json(d, path.data, &body, err);
  if (rc >= 0) {
    gventry *e = rc == 1 ? kl_calloc(1, sizeof(gventry))
                         : parse_resource_list(gv, (kl_span){body.data,
                                                             body.len});
    e->fetched = kl_now();
    pthread_mutex_lock(&d->mu);
    gventry *old = kl_hmap_put(&d->gvs, gv, e);
    gventry_free(old);
    const dres *r = find_in(e, kind, resource);
    if (r) {
      resource_copy(out, &r->r);
      *found = true;
    }
    pthread_mutex_unlock(&d->mu);
    rc = 0;
  }
  kl_buf_free(&body);
  kl_buf_free(&path);
  pthread_mutex_unlock(&d->fetch_mu);
  return rc;
}

int kl_discovery_resolve(kl_discovery *d, const char *api_version,
                         const char *kind, kl_resource *out, bool *found,
                         kl_rest_error *err) {
  return resolve(d, api_version, kind, NULL, out, found, err);
}

int kl_discovery_resolve_resource(kl_discovery *d, const char *api_version,
                                  const char *resource, kl_resource *out,
                                  bool *found, kl_rest_error *err) {
  return resolve(d, api_version, NULL, resource, out, found, err);
}

int kl_discovery_preferred_version(kl_discovery *d, const char *group,
                                   char **out, kl_rest_error *err) {
  *out = NULL;
  if (err) {
    memset(err, 0, sizeof *err);
    err->retry_after_s = -1;
  }
  pthread_mutex_lock(&d->mu);
  char *v = kl_hmap_get(&d->groups, group);
  if (v) *out = kl_strdup(v);
  bool stale = d->groups_fetched == 0 || d->min_refresh < 0 ||
               kl_now() - d->groups_fetched >= d->min_refresh;
  pthread_mutex_unlock(&d->mu);
  if (*out || !stale) return 0;
  pthread_mutex_lock(&d->fetch_mu);
  kl_buf api = KL_BUF_INIT, apis = KL_BUF_INIT;
  int rc = get_json(d, "/api", &api, err);
  if (rc >= 0) rc = get_json(d, "/apis", &apis, err);
  if (rc >= 0) {
    pthread_mutex_lock(&d->mu);
    kl_span vs, it_v, k;
    if (api.len && kl_json_get((kl_span){api.data, api.len}, "versions",
                               &vs) && kl_json_type(vs) == 'a') {
      kl_json_iter it;
      kl_json_iter_init(&it, vs);
      if (kl_json_next(&it, &k, &it_v) && kl_json_type(it_v) == 's')
        free(kl_hmap_put(&d->groups, "", kl_json_strdup(it_v)));
    }
    kl_span groups, g;
    if (apis.len && kl_json_get((kl_span){apis.data, apis.len}, "groups",
                                &groups) && kl_json_type(groups) == 'a') {
      kl_json_iter it;
      kl_json_iter_init(&it, groups);
      while (kl_json_next(&it, &k, &g)) {
        char *name = span_str(g, "name");
        char *pv = span_str(g, "preferredVersion.groupVersion");
        if (name && pv) free(kl_hmap_put(&d->groups, name, pv));
        else free(pv);
        free(name);
      }
    }
    d->groups_fetched = kl_now();
    v = kl_hmap_get(&d->groups, group);
    if (v) *out = kl_strdup(v);
    pthread_mutex_unlock(&d->mu);
    rc = 0;
  }
  kl_buf_free(&api);
  kl_buf_free(&apis);
  pthread_mutex_unlock(&d->fetch_mu);
  return rc;
}
