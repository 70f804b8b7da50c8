/* lua_core.c: the klua_core C module for LuaJIT (`require "klua_core"`).
 * It builds one table and lets each binding module register its functions
 * and metatables into it. Each lua_State that requires it gets its own
 * table; the C data behind userdata (stores, queues) may be shared between
 * states through the registry of named shared objects (see lua_bind.h). */
#include <lauxlib.h>
#include <lua.h>

#include "kl.h"
#include "lua_bind.h"

int luaopen_klua_core(lua_State *L) {
  lua_newtable(L); /* core */
  lua_pushstring(L, KL_VERSION);
  lua_setfield(L, -2, "version");
  for (const kl_lua_binding *b = kl_lua_bindings; b->name; b++) {
    b->open(L, lua_gettop(L));
  }
  return 1; /* core */
}
