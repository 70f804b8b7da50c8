/* lua_jsonmod.c: the JSON binding of klua_core: json_encode, json_decode,
 * null, object_mt, array_mt, set_readonly_debug (see lua_json.h and
 * docs/json.md), plus json_testobj / json_cache_stats, small hooks that let
 * specs exercise kl_lua_push_obj without a store. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>

#include "lua_json.h"

#define TESTOBJ_MT "klua.json.testobj"

static int l_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  kl_buf b = KL_BUF_INIT;
  char *err = NULL;
  if (kl_lua_to_json(L, 1, &b, &err) != 0) {
    kl_buf_free(&b);
    lua_pushnil(L);
    lua_pushstring(L, err);
    free(err);
    return 2;
  }
  lua_pushlstring(L, b.data, b.len);
  kl_buf_free(&b);
  return 1;
}

static int l_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char msg[200];
  kl_span sp = {s, n};
  if (kl_lua_push_json_err(L, sp, msg, sizeof msg) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
  }
  return 1;
}

static int l_set_readonly_debug(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  kl_lua_json_set_readonly(L, lua_toboolean(L, 1));
  return 0;
}

static int l_cache_stats(lua_State *L) {
  uint64_t hits, misses;
  kl_lua_json_cache_stats(L, &hits, &misses);
  lua_pushnumber(L, (lua_Number)hits);
  lua_pushnumber(L, (lua_Number)misses);
  return 2;
}

static int testobj_gc(lua_State *L) {
  kl_obj **p = luaL_checkudata(L, 1, TESTOBJ_MT);
  kl_obj_unref(*p);
  *p = NULL;
  return 0;
}

static int testobj_push(lua_State *L) {
  kl_obj **p = lua_touserdata(L, lua_upvalueindex(1));
  kl_lua_push_obj(L, *p);
  lua_pushnumber(L, (lua_Number)kl_obj_serial(*p));
  return 2; /* t serial */
}

/* json_testobj(json) -> push function (each call returns the table for the
 * same kl_obj version, and its serial), or nil, err. */
static int l_testobj(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  kl_obj_opts opts = {.allow_unnamed = lua_toboolean(L, 2)};
  kl_obj **p = lua_newuserdata(L, sizeof *p);
  *p = NULL;
  luaL_getmetatable(L, TESTOBJ_MT);
  lua_setmetatable(L, -2); /* ud */
  char *err = NULL;
  if (kl_obj_new(s, n, &opts, p, &err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err ? err : "invalid object");
    free(err);
    return 2;
  }
  lua_pushcclosure(L, testobj_push, 1);
  return 1;
}

void kl_lua_open_json(lua_State *L, int core) {
  static const luaL_Reg fns[] = {
      {"json_encode", l_encode},
      {"json_decode", l_decode},
      {"set_readonly_debug", l_set_readonly_debug},
      {"json_cache_stats", l_cache_stats},
      {"json_testobj", l_testobj},
      {NULL, NULL},
  };
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, core, r->name);
  }
  kl_lua_push_null(L);
  lua_setfield(L, core, "null");
  kl_lua_push_object_mt(L);
  lua_setfield(L, core, "object_mt");
  kl_lua_push_array_mt(L);
  lua_setfield(L, core, "array_mt");
  if (luaL_newmetatable(L, TESTOBJ_MT)) {
    lua_pushcfunction(L, testobj_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}
