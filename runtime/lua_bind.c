/* lua_bind.c: the list of Lua bindings registered into klua_core. Add one
 * line per binding module. */
#include "lua_bind.h"

const kl_lua_binding kl_lua_bindings[] = {
    {NULL, NULL},
};
