/* lua_json.h: converting between JSON (and kl_obj) and Lua values.
 * Decoded JSON null is klua_core.null (a lightuserdata); decoded objects and
 * arrays carry metatables (klua_core.object_mt / array_mt) so that an empty
 * object and an empty array stay distinct and round-trip. kl_lua_push_obj
 * converts each object version once per lua_State and reuses the table.
 * Thread-safety: functions act on one lua_State from its owning thread. */
#ifndef KL_LUA_JSON_H
#define KL_LUA_JSON_H

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "json.h"
#include "object.h"

/* Pushes the Lua value for JSON text json (must be valid JSON). Returns 0,
 * or KL_EJSON (pushes nothing) when it is not. */
int kl_lua_push_json(lua_State *L, kl_span json);
/* Pushes obj as a table, converted once per object version per state and
 * then reused (weak cache by kl_obj_serial plus the 64 most recently used
 * versions held strongly). The table is shared: read-only by contract. Does
 * not keep a reference to obj. Raises a Lua error only in read-only debug
 * mode, when the cached table for obj was modified (see docs/json.md). */
void kl_lua_push_obj(lua_State *L, const kl_obj *obj);
/* Pushes an array of the kl_lua_push_obj tables of objs[0..n-1]. */
void kl_lua_push_objs(lua_State *L, kl_obj *const *objs, size_t n);
/* Pushes an array of the strings strs[0..n-1]. */
void kl_lua_push_strs(lua_State *L, char *const *strs, size_t n);
/* The end of a lookup: pushes obj's table and drops the caller's reference,
 * or pushes nil when obj is NULL (not found). Returns 1, the values pushed. */
int kl_lua_push_found(lua_State *L, kl_obj *obj);
/* Encodes the value at idx as compact JSON appended to out. Returns 0, or
 * KL_EINVAL with *err a NEW message (cycles, functions, NaN, bad keys). */
int kl_lua_to_json(lua_State *L, int idx, kl_buf *out, char **err);
/* Builds a NEW kl_obj from the table at idx (encode + kl_obj_new with
 * opts). Returns 0 or an error code with *err a NEW message. */
int kl_lua_to_obj(lua_State *L, int idx, const kl_obj_opts *opts,
                  kl_obj **out, char **err);
/* Pushes the null sentinel. */
void kl_lua_push_null(lua_State *L);

/* Like kl_lua_push_json; on KL_EJSON also writes "malformed JSON: <cause>
 * at offset N ..." into errbuf (when errbuf is not NULL). */
int kl_lua_push_json_err(lua_State *L, kl_span json, char *errbuf,
                         size_t errlen);
/* True when the value at idx is the null sentinel. */
bool kl_lua_isnull(lua_State *L, int idx);
/* Push this state's object / array metatable (klua_core.object_mt/array_mt). */
void kl_lua_push_object_mt(lua_State *L);
void kl_lua_push_array_mt(lua_State *L);
/* Read-only debug mode for tables from kl_lua_push_obj (see docs/json.md):
 * new keys raise at once; changed or removed keys are detected when the same
 * version is pushed again. Switching drops the per-state object cache. */
void kl_lua_json_set_readonly(lua_State *L, bool on);
bool kl_lua_json_readonly(lua_State *L);
/* Counts of kl_lua_push_obj cache hits and conversions in this state. */
void kl_lua_json_cache_stats(lua_State *L, uint64_t *hits, uint64_t *misses);

/* The binding (lua_jsonmod.c): adds json_encode, json_decode, null,
 * object_mt, array_mt, set_readonly_debug to the klua_core table at core. */
void kl_lua_open_json(lua_State *L, int core);

#endif
