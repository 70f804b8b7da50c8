/* lua_store.c: the store binding of klua_core: klua_core.store_new([opts])
 * returns a "klua.store" userdata over a kl_store (see store.h and
 * docs/store.md). Writes take tables (converted with kl_lua_to_obj, dropping
 * metadata.managedFields unless {strip_managed_fields = false}); reads return
 * tables through kl_lua_push_obj (one table per object version per state).
 *
 * Lua index functions: the function lives in the store userdata's
 * environment table, keyed by a C token (the kl_index_fn ud). A write or
 * index() from this binding records, in thread-local state, the calling
 * lua_State and the stack slot of that environment; the C index function
 * runs the Lua function there under lua_pcall. A write that reaches the
 * store any other way (another thread, another state) finds no Lua state
 * and is rejected with KL_ELUA, so such an index may only be written from
 * the state that added it. */
#include <lauxlib.h>
#include <lua.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl.h"
#include "lua_json.h"
#include "store.h"

#define STORE_MT "klua.store"

typedef struct lstore {
  kl_store *s;
  bool strip; /* drop metadata.managedFields on ingest */
} lstore;

/* A Lua index function's C side: a unique address and its name. */
typedef struct lfn {
  char name[1];
} lfn;

/* The Lua state currently calling into a store from this thread. */
static __thread struct {
  lua_State *L;
  int env;      /* absolute stack slot of the store userdata's environment */
  int in_fn;    /* > 0 while a Lua index function runs */
  char err[256]; /* the last Lua index function error */
} cur;

static lstore *check_store(lua_State *L) {
  lstore *ls = luaL_checkudata(L, 1, STORE_MT);
  if (!ls->s) luaL_error(L, "store is closed");
  if (cur.in_fn)
    luaL_error(L, "a store may not be used from inside an index function");
  return ls;
}

/* Makes Lua index functions of the store at stack slot 1 callable during the
 * next store call: pushes its environment (pop it with leave()). */
static void enter(lua_State *L) {
  lua_getfenv(L, 1);
  cur.L = L;
  cur.env = lua_gettop(L);
  cur.err[0] = '\0';
}

static void leave(lua_State *L) {
  cur.L = NULL;
  cur.env = 0;
  lua_pop(L, 1);
}

/* ---- Lua index functions ---- */

typedef struct lcall {
  const kl_obj *obj;
  kl_strv *out;
  lfn *fn;
} lcall;

static void add_value(lua_State *L, int idx, kl_strv *out, const lfn *fn) {
  size_t n;
  const char *s;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
  case LUA_TNUMBER:
    s = lua_tolstring(L, idx, &n);
    kl_strv_pushn(out, s, n);
    break;
  case LUA_TBOOLEAN:
    kl_strv_push(out, lua_toboolean(L, idx) ? "true" : "false");
    break;
  default:
    luaL_error(L, "index function %s returned a %s (want a string, number, "
                  "boolean, list of them, or nil)",
               fn->name, luaL_typename(L, idx));
  }
}

/* Protected part: [env lcall] -> runs fn(obj), appends its values. */
static int lcall_run(lua_State *L) {
  lcall *c = lua_touserdata(L, 2);
  lua_pushlightuserdata(L, c->fn);
  lua_rawget(L, 1); /* env lcall fn */
  if (!lua_isfunction(L, -1))
    return luaL_error(L, "index function %s belongs to another Lua state",
                      c->fn->name);
  kl_lua_push_obj(L, c->obj); /* env lcall fn t */
  lua_call(L, 1, 1);          /* env lcall r */
  if (lua_isnil(L, 3) || kl_lua_isnull(L, 3)) return 0;
  if (!lua_istable(L, 3)) {
    add_value(L, 3, c->out, c->fn);
    return 0;
  }
  for (int i = 1;; i++) {
    lua_rawgeti(L, 3, i);
    if (lua_isnil(L, -1)) break;
    add_value(L, lua_gettop(L), c->out, c->fn);
    lua_pop(L, 1);
  }
  return 0;
}

static int lua_index_fn(const kl_obj *obj, kl_strv *out, void *ud) {
  lfn *fn = ud;
  lua_State *L = cur.L;
  if (!L || cur.in_fn) {
    snprintf(cur.err, sizeof cur.err,
             "index function %s called outside the Lua state that added it",
             fn->name);
    return KL_ELUA;
  }
  lcall c = {obj, out, fn};
  if (!lua_checkstack(L, 8)) return KL_ELUA;
  lua_pushcfunction(L, lcall_run);
  lua_pushvalue(L, cur.env);
  lua_pushlightuserdata(L, &c);
  cur.in_fn++;
  int rc = lua_pcall(L, 2, 0, 0);
  cur.in_fn--;
  if (rc != 0) {
    const char *m = lua_tostring(L, -1);
    snprintf(cur.err, sizeof cur.err, "%s", m ? m : "error in index function");
    lua_pop(L, 1);
    return KL_ELUA;
  }
  return 0;
}

/* ---- helpers ---- */

/* Returns nil, msg (formatted) for an expected failure. */
static int fail(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushnil(L);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return 2;
}

/* nil, err for a store error; names the object when known. */
static int store_fail(lua_State *L, const char *op, const kl_obj *obj, int rc) {
  const char *why = rc == KL_ELUA && cur.err[0] ? cur.err : kl_strerror(rc);
  if (obj) return fail(L, "store %s %s: %s", op, kl_obj_key(obj), why);
  return fail(L, "store %s: %s", op, why);
}

/* Converts the table at idx into a NEW kl_obj; on failure pushes nil, err
 * (2 values) and returns NULL. */
static kl_obj *to_obj(lua_State *L, lstore *ls, int idx, const char *op,
                      long item) {
  luaL_checktype(L, idx, LUA_TTABLE);
  kl_obj_opts o = {.drop = ls->strip ? kl_obj_default_drop : NULL,
                   .allow_unnamed = strcmp(op, "index") == 0};
  kl_obj *obj = NULL;
  char *err = NULL;
  if (kl_lua_to_obj(L, idx, &o, &obj, &err) != 0) {
    if (item) fail(L, "store %s: item %d: %s", op, (int)item, err ? err : "bad object");
    else fail(L, "store %s: %s", op, err ? err : "bad object");
    free(err);
    return NULL;
  }
  return obj;
}

/* The key of a table's metadata (NEW string), or NULL when it has no
 * metadata.name. Leaves values on the stack: the caller restores the top. */
static char *table_key(lua_State *L, int idx) {
  lua_getfield(L, idx, "metadata");
  if (!lua_istable(L, -1)) return NULL;
  lua_getfield(L, -1, "name");
  lua_getfield(L, -2, "namespace"); /* meta name ns */
  if (lua_type(L, -2) != LUA_TSTRING || !*lua_tostring(L, -2)) return NULL;
  return kl_meta_key(lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL,
                     lua_tostring(L, -2));
}

/* Key of argument 2 (a key string or an object table), or NULL with nil,
 * err pushed. */
static char *arg_key(lua_State *L, const char *op) {
  if (lua_type(L, 2) == LUA_TSTRING) return kl_strdup(lua_tostring(L, 2));
  luaL_argcheck(L, lua_istable(L, 2), 2, "object table or key string expected");
  int top = lua_gettop(L);
  char *key = table_key(L, 2);
  lua_settop(L, top);
  if (!key) fail(L, "store %s: object has no metadata.name", op);
  return key;
}

/* Collected objects live in a userdata while they are pushed, so that a
 * Lua error during conversion cannot leak their references. */
static int objv_gc(lua_State *L) {
  kl_objv_free(lua_touserdata(L, 1));
  return 0;
}

static kl_objv *new_objv(lua_State *L) {
  kl_objv *ov = lua_newuserdata(L, sizeof *ov);
  memset(ov, 0, sizeof *ov);
  if (luaL_newmetatable(L, "klua.store.objv")) {
    lua_pushcfunction(L, objv_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return ov; /* ... ov */
}

/* Replaces the objv userdata on top with an array of tables. */
static void push_objs(lua_State *L, kl_objv *ov) {
  kl_lua_push_objs(L, ov->v, ov->n); /* ov t */
  kl_objv_free(ov);
  lua_replace(L, -2); /* t */
}

static void push_strs(lua_State *L, kl_strv *sv) {
  kl_lua_push_strs(L, sv->v, sv->n);
  kl_strv_free(sv);
}

/* An index value argument: a string, or a number/boolean as its text. */
static const char *check_value(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TBOOLEAN)
    return lua_toboolean(L, idx) ? "true" : "false";
  return luaL_checkstring(L, idx);
}

/* ---- methods ---- */

static int l_store_new(lua_State *L) {
  bool strip = true;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "strip_managed_fields");
    if (!lua_isnil(L, -1)) strip = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lstore *ls = lua_newuserdata(L, sizeof *ls);
  ls->s = NULL;
  ls->strip = strip;
  luaL_getmetatable(L, STORE_MT);
  lua_setmetatable(L, -2);
  lua_newtable(L);
  lua_setfenv(L, -2); /* ud, with env = {} for Lua index functions */
  ls->s = kl_store_new();
  return 1;
}

static int l_gc(lua_State *L) {
  lstore *ls = luaL_checkudata(L, 1, STORE_MT);
  if (ls->s) kl_store_unref(ls->s);
  ls->s = NULL;
  return 0;
}

static int write_obj(lua_State *L, bool update) {
  const char *op = update ? "update" : "add";
  lstore *ls = check_store(L);
  kl_obj *obj = to_obj(L, ls, 2, op, 0);
  if (!obj) return 2;
  enter(L);
  int rc = update ? kl_store_update(ls->s, obj) : kl_store_add(ls->s, obj);
  leave(L);
  if (rc != 0) {
    int n = store_fail(L, op, obj, rc);
    kl_obj_unref(obj);
    return n;
  }
  kl_obj_unref(obj);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_add(lua_State *L) { return write_obj(L, false); }
static int l_update(lua_State *L) { return write_obj(L, true); }

static int l_delete(lua_State *L) {
  lstore *ls = check_store(L);
  char *key = arg_key(L, "delete");
  if (!key) return 2;
  kl_store_delete_key(ls->s, key);
  free(key);
  lua_pushboolean(L, 1);
  return 1;
}

static int push_or_nil(lua_State *L, kl_obj *obj) {
  if (!obj) {
    lua_pushnil(L);
    return 1;
  }
  /* keep the reference safe while converting */
  kl_objv *ov = new_objv(L);
  kl_objv_push(ov, obj);
  kl_lua_push_obj(L, obj); /* ov t */
  kl_objv_free(ov);
  return 1;
}

static int l_get(lua_State *L) {
  lstore *ls = check_store(L);
  char *key = arg_key(L, "get");
  if (!key) return 2;
  kl_obj *obj = kl_store_get_by_key(ls->s, key);
  free(key);
  return push_or_nil(L, obj);
}

static int l_get_by_key(lua_State *L) {
  lstore *ls = check_store(L);
  const char *key = luaL_checkstring(L, 2);
  return push_or_nil(L, kl_store_get_by_key(ls->s, key));
}

static int l_list(lua_State *L) {
  lstore *ls = check_store(L);
  kl_objv *ov = new_objv(L);
  kl_store_list(ls->s, ov);
  push_objs(L, ov);
  return 1;
}

static int l_list_keys(lua_State *L) {
  lstore *ls = check_store(L);
  kl_strv sv = {0};
  kl_store_list_keys(ls->s, &sv);
  push_strs(L, &sv);
  return 1;
}

static int l_replace(lua_State *L) {
  lstore *ls = check_store(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *rv = luaL_optstring(L, 3, NULL);
  size_t n = lua_objlen(L, 2);
  kl_objv *ov = new_objv(L); /* owns the converted objects until done */
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, (int)i);
    if (!lua_istable(L, -1))
      return luaL_error(L, "store replace: item %d is a %s, not an object",
                        (int)i, luaL_typename(L, -1));
    kl_obj *obj = to_obj(L, ls, lua_gettop(L), "replace", (long)i);
    if (!obj) return 2;
    kl_objv_push(ov, obj);
    lua_pop(L, 1);
  }
  enter(L);
  int rc = kl_store_replace(ls->s, ov->v, ov->n, rv);
  leave(L);
  kl_objv_free(ov);
  if (rc != 0) return store_fail(L, "replace", NULL, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_resync(lua_State *L) {
  lstore *ls = check_store(L);
  kl_store_resync(ls->s);
  lua_pushboolean(L, 1);
  return 1;
}

static void lfn_free(void *ud) { free(ud); }

/* Reads the spec table at idx into *kind and *arg (arg borrowed from the
 * stack, which keeps 4 more values); raises for a malformed spec. */
static void parse_spec(lua_State *L, int idx, const char *name,
                       kl_index_kind *kind, const char **arg) {
  *arg = NULL;
  lua_getfield(L, idx, "namespace");
  lua_getfield(L, idx, "label");
  lua_getfield(L, idx, "field");
  lua_getfield(L, idx, "owner"); /* ... ns label field owner */
  const char *owner = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  if (lua_toboolean(L, -4)) {
    *kind = KL_INDEX_NAMESPACE;
  } else if (lua_type(L, -3) == LUA_TSTRING) {
    *kind = KL_INDEX_LABEL;
    *arg = lua_tostring(L, -3);
  } else if (lua_type(L, -2) == LUA_TSTRING) {
    *kind = KL_INDEX_FIELD;
    *arg = lua_tostring(L, -2);
  } else if (strcmp(owner, "uid") == 0) {
    *kind = KL_INDEX_OWNER_UID;
  } else if (strcmp(owner, "kindname") == 0) {
    *kind = KL_INDEX_OWNER_KINDNAME;
  } else {
    luaL_error(L, "add_indexers: index %s: unknown spec (want namespace=true, "
                  "label=, field=, owner=\"uid\" or owner=\"kindname\")",
               name);
  }
  if (*arg && !**arg)
    luaL_error(L, "add_indexers: index %s: empty label or field", name);
}

/* add_indexers({name = spec, ...}): spec is {namespace = true},
 * {label = "key"}, {field = "a.b"}, {owner = "uid" | "kindname"} or a Lua
 * function(obj) -> value | {values} | nil. */
static int l_add_indexers(lua_State *L) {
  lstore *ls = check_store(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  /* check every name and spec (may raise) ... */
  lua_pushnil(L);
  while (lua_next(L, 2)) { /* t name spec */
    if (lua_type(L, -2) != LUA_TSTRING || !*lua_tostring(L, -2))
      return luaL_error(L, "add_indexers: index names must be non-empty strings");
    const char *name = lua_tostring(L, -2);
    if (lua_istable(L, -1)) {
      kl_index_kind kind;
      const char *arg;
      parse_spec(L, lua_gettop(L), name, &kind, &arg);
      lua_pop(L, 4);
    } else if (!lua_isfunction(L, -1)) {
      return luaL_error(L, "add_indexers: index %s: want a function or a spec "
                           "table like {namespace=true}, {label=\"app\"}, "
                           "{field=\"spec.nodeName\"}, {owner=\"uid\"}",
                        name);
    }
    lua_pop(L, 1);
  }
  /* ... and every name against the existing ones, before adding any */
  kl_strv have = {0};
  kl_store_get_indexers(ls->s, &have);
  lua_pushnil(L);
  while (lua_next(L, 2)) { /* t name spec */
    for (size_t i = 0; i < have.n; i++) {
      if (strcmp(have.v[i], lua_tostring(L, -2)) == 0) {
        int n = fail(L, "add_indexers: an index named %s already exists",
                     have.v[i]);
        kl_strv_free(&have);
        return n;
      }
    }
    lua_pop(L, 1);
  }
  kl_strv_free(&have);

  lua_pushnil(L);
  while (lua_next(L, 2)) { /* t name spec */
    const char *name = lua_tostring(L, -2);
    int rc;
    if (lua_isfunction(L, -1)) {
      size_t nl = strlen(name);
      lfn *fn = kl_malloc(sizeof *fn + nl);
      memcpy(fn->name, name, nl + 1);
      lua_getfenv(L, 1);
      lua_pushlightuserdata(L, fn);
      lua_pushvalue(L, -3);
      lua_rawset(L, -3); /* env[fn] = function */
      lua_pop(L, 1);
      enter(L);
      rc = kl_store_add_index_fn(ls->s, name, lua_index_fn, fn, lfn_free);
      leave(L);
      if (rc != 0) {
        lua_getfenv(L, 1);
        lua_pushlightuserdata(L, fn);
        lua_pushnil(L);
        lua_rawset(L, -3);
        lua_pop(L, 1);
        int n = store_fail(L, "add_indexers", NULL, rc);
        free(fn);
        return n;
      }
    } else {
      kl_index_kind kind;
      const char *arg = NULL;
      parse_spec(L, lua_gettop(L), name, &kind, &arg);
      enter(L);
      rc = kl_store_add_indexer(ls->s, name, kind, arg);
      leave(L);
      lua_pop(L, 4); /* t name spec */
      if (rc != 0) return store_fail(L, "add_indexers", NULL, rc);
    }
    lua_pop(L, 1); /* t name */
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int no_index(lua_State *L, const char *name) {
  return fail(L, "store: no index named %s", name);
}

static int l_index(lua_State *L) {
  lstore *ls = check_store(L);
  const char *name = luaL_checkstring(L, 2);
  kl_obj *obj = to_obj(L, ls, 3, "index", 0);
  if (!obj) return 2;
  kl_objv *ov = new_objv(L);
  kl_objv_push(ov, obj); /* the probe; dropped below */
  kl_objv res = {0};
  enter(L);
  int rc = kl_store_index(ls->s, name, obj, &res);
  leave(L);
  kl_objv_free(ov);
  if (rc == KL_ENOENT) return no_index(L, name);
  if (rc != 0) {
    kl_objv_free(&res);
    return store_fail(L, "index", NULL, rc);
  }
  ov = new_objv(L);
  *ov = res;
  push_objs(L, ov);
  return 1;
}

static int l_index_keys(lua_State *L) {
  lstore *ls = check_store(L);
  const char *name = luaL_checkstring(L, 2);
  const char *value = check_value(L, 3);
  kl_strv sv = {0};
  if (kl_store_index_keys(ls->s, name, value, &sv) != 0) return no_index(L, name);
  push_strs(L, &sv);
  return 1;
}

static int l_by_index(lua_State *L) {
  lstore *ls = check_store(L);
  const char *name = luaL_checkstring(L, 2);
  const char *value = check_value(L, 3);
  kl_objv *ov = new_objv(L);
  if (kl_store_by_index(ls->s, name, value, ov) != 0) return no_index(L, name);
  push_objs(L, ov);
  return 1;
}

static int l_list_index_values(lua_State *L) {
  lstore *ls = check_store(L);
  const char *name = luaL_checkstring(L, 2);
  kl_strv sv = {0};
  if (kl_store_list_index_values(ls->s, name, &sv) != 0) return no_index(L, name);
  push_strs(L, &sv);
  return 1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int l_get_indexers(lua_State *L) {
  lstore *ls = check_store(L);
  kl_strv sv = {0};
  kl_store_get_indexers(ls->s, &sv);
  if (sv.n) qsort(sv.v, sv.n, sizeof *sv.v, cmp_str);
  push_strs(L, &sv);
  return 1;
}

static int l_len(lua_State *L) {
  lstore *ls = check_store(L);
  lua_pushnumber(L, (lua_Number)kl_store_len(ls->s));
  return 1;
}

static int l_footprint(lua_State *L) {
  lstore *ls = check_store(L);
  lua_pushnumber(L, (lua_Number)kl_store_footprint(ls->s));
  return 1;
}

static int l_last_replace_rv(lua_State *L) {
  lstore *ls = check_store(L);
  char *rv = kl_store_last_replace_rv(ls->s);
  if (rv) lua_pushstring(L, rv);
  else lua_pushnil(L);
  free(rv);
  return 1;
}

static int l_tostring(lua_State *L) {
  lstore *ls = luaL_checkudata(L, 1, STORE_MT);
  lua_pushfstring(L, "klua.store (%d objects)",
                  ls->s ? (int)kl_store_len(ls->s) : 0);
  return 1;
}

static const luaL_Reg methods[] = {
    {"add", l_add},
    {"update", l_update},
    {"delete", l_delete},
    {"get", l_get},
    {"get_by_key", l_get_by_key},
    {"list", l_list},
    {"list_keys", l_list_keys},
    {"replace", l_replace},
    {"resync", l_resync},
    {"add_indexers", l_add_indexers},
    {"index", l_index},
    {"index_keys", l_index_keys},
    {"by_index", l_by_index},
    {"list_index_values", l_list_index_values},
    {"get_indexers", l_get_indexers},
    {"len", l_len},
    {"footprint", l_footprint},
    {"last_replace_rv", l_last_replace_rv},
    {NULL, NULL},
};

void kl_lua_open_store(lua_State *L, int core) {
  luaL_newmetatable(L, STORE_MT); /* mt */
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_len);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_store_new);
  lua_setfield(L, core, "store_new");
}
