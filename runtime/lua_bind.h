/* lua_bind.h: how C modules expose themselves to Lua. Every binding file
 * (lua_*.c) defines one kl_lua_open_X(L, core) that adds its functions and
 * metatables to the klua_core table at stack index core; lua_bind.c lists
 * them. Binding functions run on the thread that owns the lua_State. */
#ifndef KL_LUA_BIND_H
#define KL_LUA_BIND_H

#include <lua.h>

typedef struct kl_lua_binding {
  const char *name;
  void (*open)(lua_State *L, int core);
} kl_lua_binding;

/* NULL-terminated list, defined in lua_bind.c. */
extern const kl_lua_binding kl_lua_bindings[];

#endif
