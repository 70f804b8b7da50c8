/* lua_informer.c: the informer binding of klua_core:
 * klua_core.informer_new{...} returns a "klua.informer" userdata over a
 * kl_informer with its own REST client (see docs/informers.md). Handlers
 * are PULLED: notifications wait in a handler's C buffer until Lua calls
 * inf:next_event(timeout) (the default handler) or h:next_event(timeout) on
 * one from inf:add_handler{...}; no C thread ever calls into Lua.
 * Thread-safety: the userdata belong to the lua_State that made them. */
#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "informer.h"
#include "kl.h"
#include "kubeconfig.h"
#include "lua_json.h"

#define INF_MT "klua.informer"
#define HANDLER_MT "klua.informer.handler"

typedef struct linf {
  kl_informer *inf;
  kl_rest *rest;
  kl_handler *def; /* the default pull handler, or NULL */
} linf;

typedef struct lhandler {
  kl_handler *h;
  kl_informer *inf; /* a reference, so the handler outlives nothing */
} lhandler;

static linf *check_inf(lua_State *L) {
  linf *li = luaL_checkudata(L, 1, INF_MT);
  if (!li->inf) luaL_error(L, "informer is closed");
  return li;
}

/* ---- options ------------------------------------------------------------------- */

static const char *opt_str(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *s = NULL;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "informer_new: %s must be a string", k);
    s = lua_tostring(L, -1);
  }
  lua_pop(L, 1); /* the string stays reachable through the options table */
  return s;
}

static double opt_num(lua_State *L, int t, const char *k, double def) {
  lua_getfield(L, t, k);
  double v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "informer_new: %s must be a number", k);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static bool opt_bool(lua_State *L, int t, const char *k, bool def) {
  lua_getfield(L, t, k);
  bool v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TBOOLEAN)
      luaL_error(L, "informer_new: %s must be a boolean", k);
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static const char *const keep_all_drop[] = {NULL};

/* informer_new{server=|kubeconfig=, path=, ...} -> informer | nil, err */
static int l_informer_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *server = opt_str(L, 1, "server");
  const char *kcpath = opt_str(L, 1, "kubeconfig");
  const char *context = opt_str(L, 1, "context");
  const char *path = opt_str(L, 1, "path");
  if (!path || path[0] != '/')
    return luaL_error(L, "informer_new: path (a collection path starting "
                         "with '/') is required");
  kl_informer_opts o = {0};
  kl_reflector_opts *r = &o.reflector;
  r->path = path;
  r->name = opt_str(L, 1, "name");
  r->api_version = opt_str(L, 1, "api_version");
  r->kind = opt_str(L, 1, "kind");
  r->label_selector = opt_str(L, 1, "label_selector");
  r->field_selector = opt_str(L, 1, "field_selector");
  r->metadata_only = opt_bool(L, 1, "metadata_only", false);
  r->watch_list = opt_bool(L, 1, "watch_list", false);
  if (opt_bool(L, 1, "keep_managed_fields", false)) r->drop = keep_all_drop;
  r->page_size = (int)opt_num(L, 1, "page_size", 0);
  double wt = opt_num(L, 1, "watch_timeout", 0);
  r->watch_timeout_min_s = wt;
  r->watch_timeout_max_s = wt > 0 ? 2 * wt : 0;
  r->idle_timeout_s = (int)opt_num(L, 1, "idle_timeout", 0);
  r->backoff_initial_s = opt_num(L, 1, "backoff_initial", 0);
  r->backoff_max_s = opt_num(L, 1, "backoff_max", 0);
  o.in_order = opt_bool(L, 1, "in_order", false);
  double resync = opt_num(L, 1, "resync", 0);
  bool handler = opt_bool(L, 1, "handler", true);

  kl_kubeconfig *kc = NULL;
  kl_kubeconfig tmp = {0};
  char *err = NULL;
  if (server) {
    tmp.server = (char *)server;
    tmp.namespace = "default";
    tmp.source = "informer_new";
    tmp.context = "";
  } else {
    kl_kubeconfig_opts ko = {.path = kcpath, .context = context};
    if (kl_kubeconfig_load(&ko, &kc, &err)) {
      lua_pushnil(L);
      lua_pushstring(L, err);
      free(err);
      return 2;
    }
  }
  kl_rest *rest = NULL;
  kl_rest_opts ro = {.qps = -1};
  int rc = kl_rest_new(kc ? kc : &tmp, &ro, &rest, &err);
  kl_kubeconfig_free(kc);
  if (rc) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    free(err);
    return 2;
  }
  r->rest = rest;
  kl_informer *inf = NULL;
  if (kl_informer_new(&o, &inf, &err)) {
    kl_rest_free(rest);
    lua_pushnil(L);
    lua_pushstring(L, err);
    free(err);
    return 2;
  }
  linf *li = lua_newuserdata(L, sizeof *li); /* ud */
  li->inf = inf;
  li->rest = rest;
  li->def = NULL;
  luaL_getmetatable(L, INF_MT);
  lua_setmetatable(L, -2);
  if (handler) kl_informer_add_handler(inf, NULL, NULL, resync, &li->def);
  return 1;
}

static void close_inf(linf *li) {
  if (!li->inf) return;
  kl_informer_stop(li->inf);
  kl_informer_unref(li->inf); /* handlers made by Lua keep theirs */
  li->inf = NULL;
  li->def = NULL;
}

static int l_gc(lua_State *L) {
  linf *li = luaL_checkudata(L, 1, INF_MT);
  close_inf(li);
  /* the REST client may only go once no informer uses it: handler
   * userdata may still hold the informer, stopped, which no longer uses
   * it (its reflector thread has ended) */
  kl_rest_free(li->rest);
  li->rest = NULL;
  return 0;
}

static int l_start(lua_State *L) {
  linf *li = check_inf(L);
  if (kl_informer_start(li->inf)) {
    lua_pushnil(L);
    lua_pushstring(L, "informer was stopped");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_stop(lua_State *L) {
  linf *li = luaL_checkudata(L, 1, INF_MT);
  if (li->inf) kl_informer_stop(li->inf);
  return 0;
}

static int l_has_synced(lua_State *L) {
  lua_pushboolean(L, kl_informer_has_synced(check_inf(L)->inf));
  return 1;
}

static int l_wait_for_sync(lua_State *L) {
  linf *li = check_inf(L);
  double t = luaL_optnumber(L, 2, -1);
  lua_pushboolean(L, kl_informer_wait_for_sync(li->inf, t));
  return 1;
}

static void push_notification(lua_State *L, const kl_notification *n) {
  lua_createtable(L, 0, 7); /* ev */
  lua_pushstring(L, kl_notify_type_name(n->type));
  lua_setfield(L, -2, "type");
  lua_pushstring(L, n->key);
  lua_setfield(L, -2, "key");
  if (n->obj) {
    kl_lua_push_obj(L, n->obj);
    lua_setfield(L, -2, "obj");
  }
  if (n->old) {
    kl_lua_push_obj(L, n->old);
    lua_setfield(L, -2, "old");
  }
  if (n->type == KL_NOTIFY_DELETE) {
    lua_pushboolean(L, n->tombstone);
    lua_setfield(L, -2, "tombstone");
  }
  if (n->type == KL_NOTIFY_ADD) {
    lua_pushboolean(L, n->initial);
    lua_setfield(L, -2, "initial");
  }
  if (n->type == KL_NOTIFY_UPDATE) {
    lua_pushboolean(L, n->resync);
    lua_setfield(L, -2, "resync");
  }
}

/* Pulls from h: the event table, or nil (timeout) / nil, "closed". */
static int pull(lua_State *L, kl_handler *h, double timeout) {
  kl_notification n;
  int rc = kl_handler_next(h, timeout, &n);
  if (rc == 1) {
    push_notification(L, &n);
    kl_notification_clear(&n);
    return 1;
  }
  lua_pushnil(L);
  if (rc == KL_ECLOSED) {
    lua_pushstring(L, "closed");
    return 2;
  }
  return 1;
}

static int l_next_event(lua_State *L) {
  linf *li = check_inf(L);
  double t = luaL_optnumber(L, 2, 0);
  if (!li->def)
    return luaL_error(L, "next_event: this informer was made with "
                         "handler = false; use add_handler");
  return pull(L, li->def, t);
}

static int l_get(lua_State *L) {
  linf *li = check_inf(L);
  const char *key = luaL_checkstring(L, 2);
  return kl_lua_push_found(L,
                           kl_store_get_by_key(kl_informer_store(li->inf), key));
}

static int l_list(lua_State *L) {
  linf *li = check_inf(L);
  kl_objv v = {0};
  kl_store_list(kl_informer_store(li->inf), &v);
  kl_lua_push_objs(L, v.v, v.n);
  kl_objv_free(&v);
  return 1;
}

static int l_keys(lua_State *L) {
  linf *li = check_inf(L);
  kl_strv v = {0};
  kl_store_list_keys(kl_informer_store(li->inf), &v);
  kl_lua_push_strs(L, v.v, v.n);
  kl_strv_free(&v);
  return 1;
}

static int l_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)kl_store_len(
                         kl_informer_store(check_inf(L)->inf)));
  return 1;
}

#define SETN(name, val)                                                       \
  do {                                                                        \
    lua_pushnumber(L, (lua_Number)(val));                                     \
    lua_setfield(L, -2, name);                                                \
  } while (0)

static int l_stats(lua_State *L) {
  linf *li = check_inf(L);
  kl_informer_stats s;
  kl_informer_stats_get(li->inf, &s);
  const kl_reflector_stats *r = &s.reflector;
  lua_createtable(L, 0, 32);
  SETN("lists", r->lists);
  SETN("relists", r->relists);
  SETN("list_requests", r->list_requests);
  SETN("list_errors", r->list_errors);
  SETN("continue_expired", r->continue_expired);
  SETN("watches", r->watches);
  SETN("watch_restarts", r->watch_restarts);
  SETN("watch_list_used", r->watch_list_used);
  SETN("watch_list_fallbacks", r->watch_list_fallbacks);
  SETN("backoffs", r->backoffs);
  lua_createtable(L, 0, 6); /* stats errors */
  SETN("gone", r->err_gone);
  SETN("http", r->err_http);
  SETN("transport", r->err_transport);
  SETN("idle", r->err_idle);
  SETN("decode", r->err_decode);
  SETN("short", r->err_short);
  lua_setfield(L, -2, "watch_errors");
  lua_createtable(L, 0, 5); /* stats events */
  SETN("added", r->ev_added);
  SETN("modified", r->ev_modified);
  SETN("deleted", r->ev_deleted);
  SETN("bookmark", r->ev_bookmark);
  SETN("error", r->ev_error);
  lua_setfield(L, -2, "events");
  lua_pushstring(L, r->last_rv);
  lua_setfield(L, -2, "last_resource_version");
  SETN("adds", s.adds);
  SETN("updates", s.updates);
  SETN("deletes", s.deletes);
  SETN("resyncs", s.resyncs);
  SETN("tombstones", s.tombstones);
  SETN("objects", s.objects);
  SETN("handlers", s.handlers);
  lua_pushboolean(L, s.synced);
  lua_setfield(L, -2, "synced");
  return 1;
}

/* ---- extra handlers -------------------------------------------------------------- */

static int l_add_handler(lua_State *L) {
  linf *li = check_inf(L);
  double resync = 0;
  if (lua_istable(L, 2)) resync = opt_num(L, 2, "resync", 0);
  kl_handler *h = NULL;
  if (kl_informer_add_handler(li->inf, NULL, NULL, resync, &h)) {
    lua_pushnil(L);
    lua_pushstring(L, "informer was stopped");
    return 2;
  }
  lhandler *lh = lua_newuserdata(L, sizeof *lh); /* ud */
  lh->h = h;
  lh->inf = kl_informer_ref(li->inf);
  luaL_getmetatable(L, HANDLER_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static lhandler *check_handler(lua_State *L) {
  lhandler *lh = luaL_checkudata(L, 1, HANDLER_MT);
  if (!lh->h) luaL_error(L, "handler was removed");
  return lh;
}

static int h_next_event(lua_State *L) {
  lhandler *lh = check_handler(L);
  return pull(L, lh->h, luaL_optnumber(L, 2, 0));
}

static int h_pending(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)kl_handler_pending(check_handler(L)->h));
  return 1;
}

static int h_delivered(lua_State *L) {
  lua_pushnumber(L, (lua_Number)kl_handler_delivered(check_handler(L)->h));
  return 1;
}

static int h_remove(lua_State *L) {
  lhandler *lh = luaL_checkudata(L, 1, HANDLER_MT);
  if (lh->h) kl_informer_remove_handler(lh->inf, lh->h);
  lh->h = NULL;
  kl_informer_unref(lh->inf);
  lh->inf = NULL;
  return 0;
}

static const luaL_Reg inf_methods[] = {
    {"start", l_start},
    {"stop", l_stop},
    {"has_synced", l_has_synced},
    {"wait_for_sync", l_wait_for_sync},
    {"next_event", l_next_event},
    {"add_handler", l_add_handler},
    {"get", l_get},
    {"list", l_list},
    {"keys", l_keys},
    {"len", l_len},
    {"stats", l_stats},
    {"close", l_gc},
    {NULL, NULL},
};

static const luaL_Reg handler_methods[] = {
    {"next_event", h_next_event},
    {"pending", h_pending},
    {"delivered", h_delivered},
    {"remove", h_remove},
    {NULL, NULL},
};

void kl_lua_open_informer(lua_State *L, int core) {
  luaL_newmetatable(L, INF_MT); /* mt */
  lua_newtable(L);              /* mt methods */
  luaL_register(L, NULL, inf_methods);
  lua_setfield(L, -2, "__index"); /* mt */
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, HANDLER_MT); /* mt */
  lua_newtable(L);
  luaL_register(L, NULL, handler_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, h_remove);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_informer_new);
  lua_setfield(L, core, "informer_new");
}
