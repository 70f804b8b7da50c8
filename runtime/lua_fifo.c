/* lua_fifo.c: Lua binding of the DeltaFIFO, RealFIFO and UndeltaStore:
 * klua_core.delta_fifo_new{...}, real_fifo_new{...}, undelta_store_new(fn).
 * Metatables: "klua.delta_fifo", "klua.real_fifo", "klua.undelta_store".
 * A delta is the table {type=, object=, key=, tombstone=true|nil}; see
 * docs/fifo.md. Lua callbacks run inside lua_cpcall so that no Lua error can
 * escape while a queue or store mutex is held. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "delta_fifo.h"
#include "kl.h"
#include "lua_json.h"
#include "real_fifo.h"
#include "undelta_store.h"

#define MT_DELTA "klua.delta_fifo"
#define MT_REAL "klua.real_fifo"
#define MT_UNDELTA "klua.undelta_store"
#define MT_STORE "klua.store"

typedef struct lfifo {
  kl_delta_fifo *df; /* exactly one of df, rf is set */
  kl_real_fifo *rf;
  bool retry_on_error;
} lfifo;

/* ---- conversions -------------------------------------------------------- */

/* Builds a NEW kl_obj from a table or a JSON string at idx; on failure
 * returns NULL with *err a NEW message. Raises for other types. */
static kl_obj *to_obj(lua_State *L, int idx, char **err) {
  kl_obj *obj = NULL;
  *err = NULL;
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (kl_obj_new(s, n, NULL, &obj, err) != 0) return NULL;
    return obj;
  }
  if (lua_type(L, idx) != LUA_TTABLE) {
    luaL_argerror(L, idx, "object (table or JSON string) expected");
    return NULL;
  }
  if (kl_lua_to_obj(L, idx, NULL, &obj, err) != 0) return NULL;
  return obj;
}

static int push_fail(lua_State *L, char *err) {
  lua_pushnil(L);
  lua_pushstring(L, err ? err : "invalid object");
  free(err);
  return 2;
}

static void push_delta(lua_State *L, const kl_delta *d) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kl_delta_type_name(d->type));
  lua_setfield(L, -2, "type");
  if (d->obj) {
    kl_lua_push_obj(L, d->obj);
    lua_setfield(L, -2, "object");
  }
  lua_pushstring(L, kl_delta_key(d));
  lua_setfield(L, -2, "key");
  if (d->tombstone) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "tombstone");
  }
}

/* Pushes the array of deltas (plus replace_batch/resource_version). */
static void push_deltas(lua_State *L, const kl_deltas *ds) {
  lua_createtable(L, (int)ds->n, 2);
  for (size_t i = 0; i < ds->n; i++) {
    push_delta(L, &ds->v[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  if (ds->replace_batch) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "replace_batch");
    if (ds->resource_version) {
      lua_pushstring(L, ds->resource_version);
      lua_setfield(L, -2, "resource_version");
    }
  }
}

/* Converts the array of objects at idx; returns 0 or a NEW message. */
static char *to_objv(lua_State *L, int idx, kl_objv *out) {
  luaL_checktype(L, idx, LUA_TTABLE);
  size_t n = lua_objlen(L, idx);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    char *err = NULL;
    kl_obj *o = to_obj(L, lua_gettop(L), &err);
    lua_pop(L, 1);
    if (!o) {
      char *msg = kl_sprintf("item %zu: %s", i, err ? err : "invalid");
      free(err);
      return msg;
    }
    kl_objv_push(out, o);
  }
  return NULL;
}

static kl_store *opt_store(lua_State *L, int opts) {
  kl_store *s = NULL;
  if (opts == 0) return NULL;
  lua_getfield(L, opts, "known");
  if (!lua_isnil(L, -1)) {
    /* ASSUMPTION shared with runtime/lua_store.c: a "klua.store" userdata
     * starts with its kl_store pointer. */
    kl_store **ud = luaL_testudata(L, -1, MT_STORE);
    if (!ud || !*ud) luaL_error(L, "known: a klua.store expected");
    s = *ud;
  }
  lua_pop(L, 1);
  return s;
}

static bool opt_bool(lua_State *L, int opts, const char *name, bool def) {
  if (opts == 0) return def;
  lua_getfield(L, opts, name);
  bool r = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

/* ---- fifo methods (shared by both queue kinds) ------------------------- */

static lfifo *check_fifo(lua_State *L) {
  lfifo *f = luaL_testudata(L, 1, MT_DELTA);
  if (!f) f = luaL_testudata(L, 1, MT_REAL);
  if (!f) luaL_typerror(L, 1, "fifo");
  if (!f->df && !f->rf) luaL_error(L, "fifo already freed");
  return f;
}

/* Maps a queue error to the Lua convention. */
static int ret(lua_State *L, int rc) {
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (rc == KL_EINVAL) {
    return luaL_error(L, "fifo: this call is not allowed from inside the "
                         "same queue's pop function");
  }
  lua_pushnil(L);
  lua_pushstring(L, rc == KL_ECLOSED     ? "closed"
                    : rc == KL_ETIMEDOUT ? "timeout"
                                         : kl_strerror(rc));
  return 2;
}

enum { OP_ADD, OP_UPDATE, OP_DELETE };

static int write_op(lua_State *L, int op) {
  lfifo *f = check_fifo(L);
  char *err;
  kl_obj *o = to_obj(L, 2, &err);
  if (!o) return push_fail(L, err);
  int rc;
  if (f->df) {
    rc = op == OP_ADD      ? kl_delta_fifo_add(f->df, o)
         : op == OP_UPDATE ? kl_delta_fifo_update(f->df, o)
                           : kl_delta_fifo_delete(f->df, o);
  } else {
    rc = op == OP_ADD      ? kl_real_fifo_add(f->rf, o)
         : op == OP_UPDATE ? kl_real_fifo_update(f->rf, o)
                           : kl_real_fifo_delete(f->rf, o);
  }
  kl_obj_unref(o);
  return ret(L, rc);
}

static int l_add(lua_State *L) { return write_op(L, OP_ADD); }
static int l_update(lua_State *L) { return write_op(L, OP_UPDATE); }
static int l_delete(lua_State *L) { return write_op(L, OP_DELETE); }

static int l_replace(lua_State *L) {
  lfifo *f = check_fifo(L);
  const char *rv = luaL_optstring(L, 3, NULL);
  kl_objv list = {0};
  char *err = to_objv(L, 2, &list);
  if (err) {
    kl_objv_free(&list);
    return push_fail(L, err);
  }
  int rc = f->df ? kl_delta_fifo_replace(f->df, list.v, list.n, rv)
                 : kl_real_fifo_replace(f->rf, list.v, list.n, rv);
  kl_objv_free(&list);
  return ret(L, rc);
}

static int l_resync(lua_State *L) {
  lfifo *f = check_fifo(L);
  return ret(L, f->df ? kl_delta_fifo_resync(f->df)
                      : kl_real_fifo_resync(f->rf));
}

/* pop's process function: calls the Lua function inside lua_cpcall. */
typedef struct popctx {
  lua_State *L; /* the function is parked at registry[lightuserdata(ctx)] */
  kl_deltas *deltas;
  bool initial;
  bool failed;
  bool retry;
  char *err; /* NEW message when failed */
} popctx;

static int pop_call(lua_State *L) {
  popctx *c = lua_touserdata(L, 1);
  lua_pushlightuserdata(L, c);
  lua_rawget(L, LUA_REGISTRYINDEX);
  push_deltas(L, c->deltas);
  lua_pushboolean(L, c->initial);
  lua_call(L, 2, 2); /* ctx r1 r2 */
  bool r1_false = lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2);
  if (r1_false || (lua_isnil(L, -2) && !lua_isnil(L, -1))) {
    c->failed = true;
    const char *m = lua_tostring(L, -1);
    c->err = kl_strdup(m ? m : "pop function failed");
  }
  return 0;
}

static int lua_process(kl_deltas *deltas, bool initial, void *ud) {
  popctx *c = ud;
  c->deltas = deltas;
  c->initial = initial;
  if (lua_cpcall(c->L, pop_call, c) != 0) {
    const char *m = lua_tostring(c->L, -1);
    c->failed = true;
    free(c->err);
    c->err = kl_strdup(m ? m : "error in pop function");
    lua_pop(c->L, 1);
  }
  if (!c->failed) return 0;
  return c->retry ? KL_EAGAIN : KL_ELUA;
}

/* pop([fn], [timeout]): with fn, calls fn(deltas, initial) under the queue's
 * lock and returns true, or nil, err (fn failed; the item is re-queued when
 * the queue has retry_on_error), or nil, "closed"/"timeout". Without fn,
 * returns deltas, initial. timeout in seconds; nil waits forever. */
static int l_pop(lua_State *L) {
  lfifo *f = check_fifo(L);
  int fn = 0, targ = 2;
  if (lua_isfunction(L, 2)) {
    fn = 2;
    targ = 3;
  } else if (lua_isnil(L, 2) && lua_gettop(L) >= 3) {
    targ = 3;
  }
  double timeout = lua_isnoneornil(L, targ) ? -1 : luaL_checknumber(L, targ);
  if (timeout < 0) timeout = -1;
  if (fn) {
    popctx c = {.L = L, .retry = f->df && f->retry_on_error};
    lua_pushlightuserdata(L, &c);
    lua_pushvalue(L, fn);
    lua_rawset(L, LUA_REGISTRYINDEX);
    int rc = f->df ? kl_delta_fifo_pop(f->df, timeout, lua_process, &c)
                   : kl_real_fifo_pop(f->rf, timeout, lua_process, &c);
    lua_pushlightuserdata(L, &c);
    lua_pushnil(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
    if (rc == KL_EAGAIN || rc == KL_ELUA) {
      lua_pushnil(L);
      lua_pushstring(L, c.err ? c.err : "pop function failed");
      free(c.err);
      return 2;
    }
    free(c.err);
    return ret(L, rc);
  }
  kl_deltas d = KL_DELTAS_INIT;
  bool initial = false;
  int rc = f->df ? kl_delta_fifo_pop_deltas(f->df, timeout, &d, &initial)
                 : kl_real_fifo_pop_deltas(f->rf, timeout, &d, &initial);
  if (rc) return ret(L, rc);
  push_deltas(L, &d); /* may raise on OOM: d would leak, nothing worse */
  kl_deltas_free(&d);
  lua_pushboolean(L, initial);
  return 2;
}

/* add_if_not_present(deltas): DeltaFIFO only; deltas as pop returned them. */
static int l_add_if_not_present(lua_State *L) {
  lfifo *f = check_fifo(L);
  if (!f->df) return luaL_error(L, "add_if_not_present: DeltaFIFO only");
  luaL_checktype(L, 2, LUA_TTABLE);
  kl_deltas d = KL_DELTAS_INIT;
  size_t n = lua_objlen(L, 2);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, (int)i); /* delta */
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_getfield(L, -1, "type");
    kl_delta_type t = kl_delta_type_parse(lua_tostring(L, -1));
    lua_getfield(L, -2, "tombstone");
    bool tomb = lua_toboolean(L, -1);
    lua_getfield(L, -3, "key");
    const char *key = lua_tostring(L, -1);
    lua_getfield(L, -4, "object"); /* delta type tomb key obj */
    kl_obj *o = NULL;
    char *err = NULL;
    int ot = lua_type(L, -1);
    if (ot != LUA_TNIL && ot != LUA_TTABLE && ot != LUA_TSTRING) {
      kl_deltas_free(&d);
      return luaL_error(L, "add_if_not_present: delta %d: bad object",
                        (int)i);
    }
    if (ot != LUA_TNIL && !(o = to_obj(L, lua_gettop(L), &err))) {
      kl_deltas_free(&d);
      return push_fail(L, err);
    }
    if (t == 0 || (!o && !(tomb && key))) {
      kl_obj_unref(o);
      kl_deltas_free(&d);
      return luaL_error(L, "add_if_not_present: delta %d is not a delta",
                        (int)i);
    }
    kl_deltas_push(&d, t, o, tomb, key);
    lua_pop(L, 5);
  }
  if (d.n == 0) return luaL_argerror(L, 2, "empty deltas");
  return ret(L, kl_delta_fifo_add_if_not_present(f->df, &d));
}

static int l_has_synced(lua_State *L) {
  lfifo *f = check_fifo(L);
  lua_pushboolean(L, f->df ? kl_delta_fifo_has_synced(f->df)
                           : kl_real_fifo_has_synced(f->rf));
  return 1;
}

static int l_close(lua_State *L) {
  lfifo *f = check_fifo(L);
  if (f->df) kl_delta_fifo_close(f->df);
  else kl_real_fifo_close(f->rf);
  return 0;
}

static int l_is_closed(lua_State *L) {
  lfifo *f = check_fifo(L);
  lua_pushboolean(L, f->df ? kl_delta_fifo_is_closed(f->df)
                           : kl_real_fifo_is_closed(f->rf));
  return 1;
}

static int l_len(lua_State *L) {
  lfifo *f = check_fifo(L);
  lua_pushinteger(L, (lua_Integer)(f->df ? kl_delta_fifo_len(f->df)
                                         : kl_real_fifo_len(f->rf)));
  return 1;
}

static int l_list_keys(lua_State *L) {
  lfifo *f = check_fifo(L);
  kl_strv keys = {0};
  if (f->df) kl_delta_fifo_list_keys(f->df, &keys);
  else kl_real_fifo_list_keys(f->rf, &keys);
  kl_lua_push_strs(L, keys.v, keys.n);
  kl_strv_free(&keys);
  return 1;
}

/* get(key): DeltaFIFO only; the pending deltas of key, or nil. */
static int l_get(lua_State *L) {
  lfifo *f = check_fifo(L);
  const char *key = luaL_checkstring(L, 2);
  if (!f->df) return luaL_error(L, "get: DeltaFIFO only");
  kl_deltas d;
  if (!kl_delta_fifo_get_by_key(f->df, key, &d)) {
    lua_pushnil(L);
    return 1;
  }
  push_deltas(L, &d);
  kl_deltas_free(&d);
  return 1;
}

static int l_fifo_gc(lua_State *L) {
  lfifo *f = lua_touserdata(L, 1);
  if (f->df) kl_delta_fifo_unref(f->df);
  if (f->rf) kl_real_fifo_unref(f->rf);
  f->df = NULL;
  f->rf = NULL;
  return 0;
}

static int l_fifo_tostring(lua_State *L) {
  lfifo *f = check_fifo(L);
  lua_pushfstring(L, "%s (%d queued)", f->df ? MT_DELTA : MT_REAL,
                  (int)(f->df ? kl_delta_fifo_len(f->df)
                              : kl_real_fifo_len(f->rf)));
  return 1;
}

static const luaL_Reg fifo_methods[] = {
    {"add", l_add},
    {"update", l_update},
    {"delete", l_delete},
    {"replace", l_replace},
    {"resync", l_resync},
    {"pop", l_pop},
    {"add_if_not_present", l_add_if_not_present},
    {"get", l_get},
    {"has_synced", l_has_synced},
    {"close", l_close},
    {"is_closed", l_is_closed},
    {"len", l_len},
    {"list_keys", l_list_keys},
    {NULL, NULL},
};

/* delta_fifo_new{known=store, emit_replaced=false, retry_on_error=false} */
static int l_delta_fifo_new(lua_State *L) {
  int opts = lua_isnoneornil(L, 1) ? 0 : 1;
  if (opts) luaL_checktype(L, 1, LUA_TTABLE);
  kl_delta_fifo_opts o = {
      .known = opt_store(L, opts),
      .emit_replaced = opt_bool(L, opts, "emit_replaced", false),
  };
  bool retry = opt_bool(L, opts, "retry_on_error", false);
  lfifo *f = lua_newuserdata(L, sizeof *f);
  memset(f, 0, sizeof *f);
  f->retry_on_error = retry;
  f->df = kl_delta_fifo_new(&o);
  luaL_setmetatable(L, MT_DELTA);
  return 1;
}

/* real_fifo_new{known=store} */
static int l_real_fifo_new(lua_State *L) {
  int opts = lua_isnoneornil(L, 1) ? 0 : 1;
  if (opts) luaL_checktype(L, 1, LUA_TTABLE);
  kl_store *known = opt_store(L, opts);
  lfifo *f = lua_newuserdata(L, sizeof *f);
  memset(f, 0, sizeof *f);
  f->rf = kl_real_fifo_new(known);
  luaL_setmetatable(L, MT_REAL);
  return 1;
}

/* ---- UndeltaStore --------------------------------------------------------
 * The push function lives in the userdata's environment table (so a closure
 * that refers to the store does not keep it alive forever); during a write
 * it is parked in the registry under the struct's address. */

typedef struct lundelta {
  kl_undelta_store *u;
  lua_State *L; /* the state of the write in progress */
  char *err;    /* NEW message when the push function failed */
} lundelta;

static lundelta *check_undelta(lua_State *L) {
  lundelta *u = luaL_checkudata(L, 1, MT_UNDELTA);
  if (!u->u) luaL_error(L, "undelta store already freed");
  return u;
}

typedef struct pushctx {
  lundelta *u;
  const kl_objv *state;
} pushctx;

static int push_call(lua_State *L) {
  pushctx *c = lua_touserdata(L, 1);
  lua_pushlightuserdata(L, c->u);
  lua_rawget(L, LUA_REGISTRYINDEX); /* fn */
  kl_lua_push_objs(L, c->state->v, c->state->n);
  lua_call(L, 1, 0);
  return 0;
}

static void on_push(const kl_objv *state, void *ud) {
  lundelta *u = ud;
  pushctx c = {u, state};
  if (lua_cpcall(u->L, push_call, &c) != 0) {
    const char *m = lua_tostring(u->L, -1);
    free(u->err);
    u->err = kl_strdup(m ? m : "error in push function");
    lua_pop(u->L, 1);
  }
}

/* Parks the push function, runs the write, reports a failed push. */
static int undelta_write(lua_State *L, lundelta *u, int op, kl_obj *obj,
                         kl_objv *list, const char *rv) {
  lua_pushlightuserdata(L, u);
  lua_getfenv(L, 1);
  lua_rawgeti(L, -1, 1);
  lua_remove(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  u->L = L;
  int rc = op == OP_ADD      ? kl_undelta_store_add(u->u, obj)
           : op == OP_UPDATE ? kl_undelta_store_update(u->u, obj)
           : op == OP_DELETE ? kl_undelta_store_delete(u->u, obj)
                             : kl_undelta_store_replace(u->u, list->v,
                                                        list->n, rv);
  lua_pushlightuserdata(L, u);
  lua_pushnil(L);
  lua_rawset(L, LUA_REGISTRYINDEX);
  if (rc == KL_EINVAL) {
    return luaL_error(L, "undelta store: writes are not allowed from inside "
                         "its own push function");
  }
  if (rc) {
    lua_pushnil(L);
    lua_pushstring(L, kl_strerror(rc));
    return 2;
  }
  if (u->err) {
    char *e = u->err;
    u->err = NULL;
    lua_pushnil(L);
    lua_pushfstring(L, "push function failed: %s", e);
    free(e);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int undelta_obj_op(lua_State *L, int op) {
  lundelta *u = check_undelta(L);
  char *err;
  kl_obj *o = to_obj(L, 2, &err);
  if (!o) return push_fail(L, err);
  int n = undelta_write(L, u, op, o, NULL, NULL);
  kl_obj_unref(o);
  return n;
}

static int l_u_add(lua_State *L) { return undelta_obj_op(L, OP_ADD); }
static int l_u_update(lua_State *L) { return undelta_obj_op(L, OP_UPDATE); }
static int l_u_delete(lua_State *L) { return undelta_obj_op(L, OP_DELETE); }

static int l_u_replace(lua_State *L) {
  lundelta *u = check_undelta(L);
  const char *rv = luaL_optstring(L, 3, NULL);
  kl_objv list = {0};
  char *err = to_objv(L, 2, &list);
  if (err) {
    kl_objv_free(&list);
    return push_fail(L, err);
  }
  int n = undelta_write(L, u, -1, NULL, &list, rv);
  kl_objv_free(&list);
  return n;
}

static int l_u_list(lua_State *L) {
  lundelta *u = check_undelta(L);
  kl_objv all = {0};
  kl_store_list(kl_undelta_store_store(u->u), &all);
  kl_lua_push_objs(L, all.v, all.n);
  kl_objv_free(&all);
  return 1;
}

static int l_u_list_keys(lua_State *L) {
  lundelta *u = check_undelta(L);
  kl_strv keys = {0};
  kl_store_list_keys(kl_undelta_store_store(u->u), &keys);
  kl_lua_push_strs(L, keys.v, keys.n);
  kl_strv_free(&keys);
  return 1;
}

static int l_u_get(lua_State *L) {
  lundelta *u = check_undelta(L);
  return kl_lua_push_found(L, kl_store_get_by_key(kl_undelta_store_store(u->u),
                                                  luaL_checkstring(L, 2)));
}

static int l_u_len(lua_State *L) {
  lundelta *u = check_undelta(L);
  lua_pushinteger(L, (lua_Integer)kl_store_len(kl_undelta_store_store(u->u)));
  return 1;
}

static int l_u_gc(lua_State *L) {
  lundelta *u = lua_touserdata(L, 1);
  kl_undelta_store_free(u->u);
  u->u = NULL;
  free(u->err);
  u->err = NULL;
  return 0;
}

static const luaL_Reg undelta_methods[] = {
    {"add", l_u_add},       {"update", l_u_update},
    {"delete", l_u_delete}, {"replace", l_u_replace},
    {"list", l_u_list},     {"list_keys", l_u_list_keys},
    {"get", l_u_get},       {"len", l_u_len},
    {NULL, NULL},
};

/* undelta_store_new(push_fn): push_fn(objects) after every write. */
static int l_undelta_store_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lundelta *u = lua_newuserdata(L, sizeof *u); /* fn ud */
  memset(u, 0, sizeof *u);
  u->u = kl_undelta_store_new(NULL, on_push, u);
  luaL_setmetatable(L, MT_UNDELTA);
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_setfenv(L, -2); /* fn ud */
  return 1;
}

static void new_mt(lua_State *L, const char *name, const luaL_Reg *methods,
                   lua_CFunction gc, lua_CFunction len) {
  luaL_newmetatable(L, name); /* mt */
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, len);
  lua_setfield(L, -2, "__len");
  lua_pop(L, 1);
}

void kl_lua_open_fifo(lua_State *L, int core) {
  new_mt(L, MT_DELTA, fifo_methods, l_fifo_gc, l_len);
  new_mt(L, MT_REAL, fifo_methods, l_fifo_gc, l_len);
  new_mt(L, MT_UNDELTA, undelta_methods, l_u_gc, l_u_len);
  luaL_getmetatable(L, MT_DELTA);
  lua_pushcfunction(L, l_fifo_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_getmetatable(L, MT_REAL);
  lua_pushcfunction(L, l_fifo_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_delta_fifo_new);
  lua_setfield(L, core, "delta_fifo_new");
  lua_pushcfunction(L, l_real_fifo_new);
  lua_setfield(L, core, "real_fifo_new");
  lua_pushcfunction(L, l_undelta_store_new);
  lua_setfield(L, core, "undelta_store_new");
}
