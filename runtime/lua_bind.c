/* lua_bind.c: the list of Lua bindings registered into klua_core. Add one
 * line per binding module. */
#include "lua_bind.h"
#include "store.h"
#include "lua_json.h"
#include "delta_fifo.h"
#include "informer.h"
#include "metrics.h"

const kl_lua_binding kl_lua_bindings[] = {
    {"json", kl_lua_open_json},
    {"fifo", kl_lua_open_fifo},
    {"store", kl_lua_open_store},
    {"informer", kl_lua_open_informer},
    {"metrics", kl_lua_open_metrics},
    {NULL, NULL},
};
