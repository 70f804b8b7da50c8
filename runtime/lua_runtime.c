/* lua_runtime.c: the C-backed klua backend installed in every worker and
 * hook state of `klua run` (see the backend interface at the top of
 * lua/klua.lua). Cache reads go to the informers' stores, never the server;
 * writes go through discovery + the REST client; logs carry the thread's
 * controller/key/reconcile id. Each function takes the kl_rt_env as its
 * upvalue and runs on the thread that owns the state. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "controller.h"
#include "events.h"
#include "json.h"
#include "kl.h"
#include "log_format.h"
#include "lua_json.h"
#include "selector.h"
#include "status.h"

static _Thread_local kl_rt_logctx logctx;

kl_rt_logctx *kl_rt_logctx_get(void) { return &logctx; }

static const kl_rt_env *env_of(lua_State *L) {
  return (const kl_rt_env *)lua_touserdata(L, lua_upvalueindex(1));
}

static kl_store *store_of(lua_State *L, const char *id) {
  const kl_rt_env *env = env_of(L);
  kl_store *s = env->caches ? kl_hmap_get(env->caches, id) : NULL;
  if (!s) luaL_error(L, "klua: cache %s is not running", id);
  return s;
}

static int cmp_obj_key(const void *a, const void *b) {
  return strcmp(kl_obj_key(*(kl_obj *const *)a),
                kl_obj_key(*(kl_obj *const *)b));
}

/* Objects to push from a protected call: converting one can raise
 * (read-only debug mode finds a table the script changed), and the
 * references must be released before the error goes on. */
typedef struct pushing {
  kl_obj *const *v;
  size_t n;
  bool one; /* push v[0] itself, not an array */
} pushing;

static int push_tramp(lua_State *L) {
  const pushing *p = lua_touserdata(L, 1);
  if (p->one) kl_lua_push_obj(L, p->v[0]);
  else kl_lua_push_objs(L, p->v, p->n);
  return 1;
}

/* Pushes the objects (an array, or v[0] with one), then releases them;
 * errors are re-raised after the release. */
static void push_then_release(lua_State *L, kl_objv *ov, bool one) {
  pushing p = {ov->v, ov->n, one};
  lua_pushcfunction(L, push_tramp);
  lua_pushlightuserdata(L, &p);
  int rc = lua_pcall(L, 1, 1, 0);
  kl_objv_free(ov);
  if (rc != 0) lua_error(L);
}

/* Pushes an array of the objects (sorted by key) and frees ov. */
static void push_objv(lua_State *L, kl_objv *ov) {
  if (ov->n > 1) qsort(ov->v, ov->n, sizeof ov->v[0], cmp_obj_key);
  push_then_release(L, ov, false);
}

static int b_cache_get(lua_State *L) {
  kl_store *s = store_of(L, luaL_checkstring(L, 1));
  const char *ns = luaL_optstring(L, 2, NULL);
  const char *name = luaL_checkstring(L, 3);
  char *key = kl_meta_key(ns, name);
  kl_obj *o = kl_store_get_by_key(s, key);
  free(key);
  if (!o) {
    lua_pushnil(L);
    return 1;
  }
  kl_objv one = {0};
  kl_objv_push(&one, o); /* takes the reference */
  push_then_release(L, &one, true);
  return 1;
}

static int b_cache_list(lua_State *L) {
  kl_store *s = store_of(L, luaL_checkstring(L, 1));
  const char *ns = NULL, *ls = NULL;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "namespace");
    lua_getfield(L, 2, "label_selector"); /* q ns ls */
    ns = lua_tostring(L, -2);
    ls = lua_tostring(L, -1);
  }
  kl_selector *sel = NULL;
  if (ls && *ls) {
    char *err = NULL;
    if (kl_selector_parse(ls, &sel, &err) != 0) {
      lua_pushfstring(L, "klua: cache:list: %s", err ? err : "bad selector");
      free(err);
      return lua_error(L);
    }
  }
  kl_objv all = {0}, out = {0};
  kl_store_list(s, &all);
  for (size_t i = 0; i < all.n; i++) {
    kl_obj *o = all.v[i];
    if ((ns && strcmp(kl_obj_namespace(o), ns) != 0) ||
        (sel && !kl_selector_matches_obj(sel, o))) {
      kl_obj_unref(o);
      continue;
    }
    kl_objv_push(&out, o);
  }
  free(all.v);
  kl_selector_free(sel);
  push_objv(L, &out);
  return 1;
}

static int b_cache_by_index(lua_State *L) {
  kl_store *s = store_of(L, luaL_checkstring(L, 1));
  const char *index = luaL_checkstring(L, 2);
  const char *value = luaL_checkstring(L, 3);
  kl_objv out = {0};
  if (kl_store_by_index(s, index, value, &out) == KL_ENOENT)
    return luaL_error(L, "klua: no index '%s' on cache %s", index,
                      lua_tostring(L, 1));
  push_objv(L, &out);
  return 1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int b_cache_index_values(lua_State *L) {
  kl_store *s = store_of(L, luaL_checkstring(L, 1));
  const char *index = luaL_checkstring(L, 2);
  kl_strv sv = {0};
  if (kl_store_list_index_values(s, index, &sv) == KL_ENOENT)
    return luaL_error(L, "klua: no index '%s' on cache %s", index,
                      lua_tostring(L, 1));
  if (sv.n > 1) qsort(sv.v, sv.n, sizeof sv.v[0], cmp_str);
  kl_lua_push_strs(L, sv.v, sv.n);
  kl_strv_free(&sv);
  return 1;
}

/* ---- requests -------------------------------------------------------- */

static void push_status_err(lua_State *L, const kl_status *st) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, st->code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, st->reason ? st->reason : "");
  lua_setfield(L, -2, "reason");
  lua_pushstring(L, st->message ? st->message : "");
  lua_setfield(L, -2, "message");
  lua_createtable(L, 0, 6); /* err details */
  if (st->details.name) {
    lua_pushstring(L, st->details.name);
    lua_setfield(L, -2, "name");
  }
  if (st->details.group) {
    lua_pushstring(L, st->details.group);
    lua_setfield(L, -2, "group");
  }
  if (st->details.kind) {
    lua_pushstring(L, st->details.kind);
    lua_setfield(L, -2, "kind");
  }
  if (st->details.uid) {
    lua_pushstring(L, st->details.uid);
    lua_setfield(L, -2, "uid");
  }
  if (st->details.retry_after_seconds) {
    lua_pushinteger(L, st->details.retry_after_seconds);
    lua_setfield(L, -2, "retry_after_seconds");
  }
  lua_createtable(L, (int)st->details.ncauses, 0);
  for (size_t i = 0; i < st->details.ncauses; i++) {
    const kl_status_cause *c = &st->details.causes[i];
    lua_createtable(L, 0, 3);
    lua_pushstring(L, c->reason ? c->reason : "");
    lua_setfield(L, -2, "reason");
    lua_pushstring(L, c->message ? c->message : "");
    lua_setfield(L, -2, "message");
    lua_pushstring(L, c->field ? c->field : "");
    lua_setfield(L, -2, "field");
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "causes");
  lua_setfield(L, -2, "details"); /* err */
}

static int fail_msg(lua_State *L, int code, const char *reason,
                    const char *msg) {
  lua_pushnil(L);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, reason);
  lua_setfield(L, -2, "reason");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  return 2;
}

/* Reads string field k of the table at idx (NULL when absent). */
static const char *opt_field(lua_State *L, int idx, const char *k) {
  lua_getfield(L, idx, k);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the string stays alive: it is anchored in the table */
  return s;
}

static void delete_options(lua_State *L, int opts, kl_buf *b) {
  kl_buf_adds(b, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\"");
  const char *pp = opt_field(L, opts, "propagation_policy");
  if (pp) {
    kl_buf_adds(b, ",\"propagationPolicy\":");
    kl_json_quote(b, pp, strlen(pp));
  }
  lua_getfield(L, opts, "grace_period_seconds");
  if (lua_type(L, -1) == LUA_TNUMBER)
    kl_buf_addf(b, ",\"gracePeriodSeconds\":%lld",
                (long long)lua_tonumber(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, opts, "preconditions");
  if (lua_istable(L, -1)) {
    int pc = lua_gettop(L);
    const char *uid = opt_field(L, pc, "uid");
    const char *rv = opt_field(L, pc, "resource_version");
    kl_buf_adds(b, ",\"preconditions\":{");
    if (uid) {
      kl_buf_adds(b, "\"uid\":");
      kl_json_quote(b, uid, strlen(uid));
    }
    if (rv) {
      if (uid) kl_buf_addc(b, ',');
      kl_buf_adds(b, "\"resourceVersion\":");
      kl_json_quote(b, rv, strlen(rv));
    }
    kl_buf_addc(b, '}');
  }
  lua_pop(L, 1);
  kl_buf_addc(b, '}');
}

/* request(verb, api_version, kind, namespace, name, body, opts) */
static int b_request(lua_State *L) {
  const kl_rt_env *env = env_of(L);
  const char *verb = luaL_checkstring(L, 1);
  const char *av = luaL_checkstring(L, 2);
  const char *kind = luaL_checkstring(L, 3);
  const char *ns = luaL_optstring(L, 4, NULL);
  const char *name = luaL_optstring(L, 5, NULL);
  int opts = 7;
  lua_settop(L, opts); /* lua_replace below needs a real slot */
  if (!lua_istable(L, opts)) {
    lua_newtable(L);
    lua_replace(L, opts);
  }
  if (!env->rest || !env->disc)
    return fail_msg(L, 0, "", "klua: no API server connection");

  const char *method = NULL, *sub = NULL, *ctype = NULL;
  bool body_obj = false, with_name = true, is_delete = false;
  if (!strcmp(verb, "get")) {
    method = "GET";
  } else if (!strcmp(verb, "create")) {
    method = "POST", body_obj = true, with_name = false;
  } else if (!strcmp(verb, "update")) {
    method = "PUT", body_obj = true;
  } else if (!strcmp(verb, "update_status")) {
    method = "PUT", body_obj = true, sub = "status";
  } else if (!strcmp(verb, "patch")) {
    method = "PATCH";
    const char *t = opt_field(L, opts, "type");
    ctype = !t || !strcmp(t, "merge") ? "application/merge-patch+json"
            : !strcmp(t, "json")      ? "application/json-patch+json"
            : !strcmp(t, "strategic")
                ? "application/strategic-merge-patch+json"
                : NULL;
    if (!ctype) return luaL_error(L, "klua: unknown patch type '%s'", t);
    sub = opt_field(L, opts, "subresource");
  } else if (!strcmp(verb, "apply")) {
    method = "PATCH", body_obj = true,
    ctype = "application/apply-patch+yaml";
    sub = opt_field(L, opts, "subresource");
  } else if (!strcmp(verb, "delete")) {
    method = "DELETE", is_delete = true;
  } else {
    return luaL_error(L, "klua: unknown request verb '%s'", verb);
  }
  if (with_name && !name)
    return luaL_error(L, "klua: %s %s/%s needs a name", verb, av, kind);

  kl_resource res;
  bool found = false;
  kl_rest_error rerr = {0};
  int rc = kl_discovery_resolve(env->disc, av, kind, &res, &found, &rerr);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "discovery of %s %s failed: %s", av, kind,
                    rerr.message ? rerr.message : kl_strerror(rc));
    kl_rest_error_free(&rerr);
    return 2;
  }
  if (!found) {
    char *m = kl_sprintf("the server has no resource for apiVersion %s "
                         "kind %s",
                         av, kind);
    fail_msg(L, 404, "NotFound", m);
    free(m);
    return 2;
  }
  if (res.namespaced && !ns) ns = kl_rest_namespace(env->rest);
  char *path = kl_resource_path(&res, res.namespaced ? ns : NULL,
                                with_name ? name : NULL, sub);

  kl_buf body = KL_BUF_INIT, query = KL_BUF_INIT;
  if (body_obj) {
    char *jerr = NULL;
    if (kl_lua_to_json(L, 6, &body, &jerr) != 0) {
      lua_pushfstring(L, "klua.%s: cannot encode %s %s/%s: %s", verb, kind,
                      ns ? ns : "", name ? name : "", jerr ? jerr : "");
      free(jerr);
      free(path);
      kl_buf_free(&body);
      kl_resource_free(&res);
      return lua_error(L);
    }
  } else if (!strcmp(verb, "patch")) {
    if (lua_type(L, 6) == LUA_TSTRING) {
      size_t n;
      const char *p = lua_tolstring(L, 6, &n);
      kl_buf_add(&body, p, n);
    } else {
      char *jerr = NULL;
      if (kl_lua_to_json(L, 6, &body, &jerr) != 0) {
        lua_pushfstring(L, "klua.patch: cannot encode the patch: %s",
                        jerr ? jerr : "");
        free(jerr);
        free(path);
        kl_buf_free(&body);
        kl_resource_free(&res);
        return lua_error(L);
      }
    }
  } else if (is_delete) {
    delete_options(L, opts, &body);
  }
  const char *fm = opt_field(L, opts, "field_manager");
  if (fm) kl_rest_query_add(&query, "fieldManager", fm);
  if (!strcmp(verb, "apply")) {
    lua_getfield(L, opts, "force");
    if (lua_toboolean(L, -1)) kl_rest_query_add(&query, "force", "true");
    lua_pop(L, 1);
  }

  kl_rest_req req = {0};
  req.method = method;
  req.path = path;
  req.query = query.len ? query.data : NULL;
  req.body = body.len ? body.data : NULL;
  req.body_len = body.len;
  req.content_type = ctype;
  kl_rest_resp resp = {0};
  rc = kl_rest_do(env->rest, &req, &resp, &rerr);
  int nret;
  if (rc == 0) {
    if (is_delete) {
      lua_pushboolean(L, 1);
      nret = 1;
    } else if (resp.body.len &&
               kl_lua_push_json(L, (kl_span){resp.body.data, resp.body.len}) ==
                   0) {
      nret = 1;
    } else {
      lua_pushnil(L);
      lua_pushfstring(L, "%s %s: the server's answer is not JSON", method,
                      path);
      nret = 2;
    }
  } else if (rerr.http_status) {
    lua_pushnil(L);
    push_status_err(L, &rerr.status);
    nret = 2;
  } else {
    lua_pushnil(L);
    lua_pushstring(L, rerr.message ? rerr.message : kl_strerror(rc));
    nret = 2;
  }
  kl_rest_error_free(&rerr);
  kl_rest_resp_free(&resp);
  kl_buf_free(&body);
  kl_buf_free(&query);
  free(path);
  kl_resource_free(&res);
  return nret;
}

/* ---- events ---------------------------------------------------------- */

/* event(obj, type, reason, message): queues a core/v1 Event about obj in
 * the recorder (events.h: spam filter, aggregation, dedupe; sent by its
 * own thread, so this never waits for the server). */
static int b_event(lua_State *L) {
  const kl_rt_env *env = env_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *type = luaL_checkstring(L, 2);
  const char *reason = luaL_checkstring(L, 3);
  const char *message = luaL_optstring(L, 4, "");
  kl_event_ref ref = {0};
  ref.api_version = opt_field(L, 1, "apiVersion");
  ref.kind = opt_field(L, 1, "kind");
  lua_getfield(L, 1, "metadata"); /* obj type reason msg md */
  int md = lua_gettop(L);
  if (lua_istable(L, md)) {
    ref.name = opt_field(L, md, "name");
    ref.namespace = opt_field(L, md, "namespace");
    ref.uid = opt_field(L, md, "uid");
    ref.resource_version = opt_field(L, md, "resourceVersion");
  }
  if (!ref.name || !ref.kind || !ref.api_version) {
    kl_log(KL_LOG_WARN, "event",
           "klua.event: the object has no apiVersion, kind or metadata.name; "
           "event %s not recorded",
           reason);
    return 0;
  }
  if (!env->events) {
    kl_log(KL_LOG_DEBUG, "event", "no event recorder: event %s about %s "
           "%s/%s dropped", reason, ref.kind,
           ref.namespace ? ref.namespace : "", ref.name);
    return 0;
  }
  int rc = kl_events_record(env->events, &ref, type, reason, message);
  if (rc == KL_EINVAL)
    kl_log(KL_LOG_WARN, "event", "klua.event: bad event %s about %s %s/%s "
           "(type must be Normal or Warning, reason not empty)",
           reason, ref.kind, ref.namespace ? ref.namespace : "", ref.name);
  return 0;
}

/* ---- logs ------------------------------------------------------------ */

/* The text of the value at idx as a log field value: strings as they are,
 * tables as JSON, the rest through tostring. Pushes it on the stack. */
static const char *field_text(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TTABLE) {
    kl_buf b = KL_BUF_INIT;
    char *err = NULL;
    if (kl_lua_to_json(L, idx, &b, &err) == 0) {
      lua_pushlstring(L, b.data, b.len);
      kl_buf_free(&b);
      return lua_tostring(L, -1);
    }
    free(err);
    kl_buf_free(&b);
  }
  lua_getglobal(L, "tostring");
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  return lua_tostring(L, -1);
}

static int cmp_field(const void *a, const void *b) {
  return strcmp(((const kl_log_field *)a)->key,
                ((const kl_log_field *)b)->key);
}

/* log(level, msg, fields): one line with the thread's controller, key and
 * reconcile id plus the script's fields (sorted by name). */
static int b_log(lua_State *L) {
  const char *lv = luaL_checkstring(L, 1);
  const char *msg = luaL_checkstring(L, 2);
  int level = !strcmp(lv, "error")   ? KL_LOG_ERROR
              : !strcmp(lv, "warn")  ? KL_LOG_WARN
              : !strcmp(lv, "debug") ? KL_LOG_DEBUG
                                     : KL_LOG_INFO;
  if (!kl_log_enabled(level)) return 0;
  enum { MAXF = 64 };
  kl_log_field f[MAXF + 3];
  size_t nf = 0;
  kl_rt_logctx *c = kl_rt_logctx_get();
  char rid[24];
  if (c->controller) f[nf++] = (kl_log_field){"controller", c->controller};
  if (c->key) f[nf++] = (kl_log_field){"key", c->key};
  if (c->reconcile_id) {
    snprintf(rid, sizeof rid, "%llu", (unsigned long long)c->reconcile_id);
    f[nf++] = (kl_log_field){"reconcile_id", rid};
  }
  size_t first = nf;
  lua_settop(L, 3);
  lua_newtable(L); /* level msg fields texts: anchors the value texts */
  if (lua_istable(L, 3)) {
    int nt = 0;
    lua_pushnil(L);
    while (lua_next(L, 3) != 0) { /* ... texts k v */
      if (lua_type(L, -2) == LUA_TSTRING && nf < MAXF + 3) {
        const char *v = field_text(L, lua_gettop(L)); /* ... k v text */
        lua_rawseti(L, 4, ++nt); /* ... k v */
        f[nf++] = (kl_log_field){lua_tostring(L, -2), v};
      }
      lua_pop(L, 1); /* ... texts k */
    }
    qsort(f + first, nf - first, sizeof f[0], cmp_field);
  }
  kl_logf(level, "lua", f, nf, "%s", msg);
  return 0;
}

static int b_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec / 1e9);
  return 1;
}

static int b_getenv(lua_State *L) {
  const char *v = getenv(luaL_checkstring(L, 1));
  if (v) lua_pushstring(L, v);
  else lua_pushnil(L);
  return 1;
}

void kl_rt_push_backend(lua_State *L, const kl_rt_env *env) {
  static const luaL_Reg fns[] = {
      {"cache_get", b_cache_get},
      {"cache_list", b_cache_list},
      {"cache_by_index", b_cache_by_index},
      {"cache_index_values", b_cache_index_values},
      {"request", b_request},
      {"event", b_event},
      {"log", b_log},
      {"now", b_now},
      {"getenv", b_getenv},
      {NULL, NULL},
  };
  lua_createtable(L, 0, 10); /* b */
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushlightuserdata(L, (void *)env);
    lua_pushcclosure(L, r->func, 1);
    lua_setfield(L, -2, r->name);
  }
}
