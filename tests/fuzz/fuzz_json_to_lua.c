/* fuzz_json_to_lua.c: lua_json.c, JSON text -> LuaJIT tables -> JSON.
 * Checks: kl_lua_push_json accepts whatever kl_json_validate accepts, and
 * (away from the nesting limit, where the two count depth slightly
 * differently) rejects what it rejects, leaving the stack as it was; a
 * decoded value encodes with kl_lua_to_json into valid JSON, and decoding +
 * encoding that again gives the same document (cJSON_Compare: key order
 * follows Lua's table order); kl_obj_new/kl_lua_push_obj on object inputs.
 * One lua_State is reused across inputs (collected every 256 inputs). */
#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz_common.h"
#include "lua_json.h"
#include "object.h"

static lua_State *L;

static void close_state(void) { lua_close(L); }

static int max_open(const uint8_t *d, size_t n) {
  int c = 0;
  for (size_t i = 0; i < n; i++) c += d[i] == '[' || d[i] == '{';
  return c;
}

static void check_same(const char *a, size_t an, const char *b, size_t bn) {
  char *za = kl_strndup(a, an), *zb = kl_strndup(b, bn);
  cJSON *ja = cJSON_Parse(za), *jb = cJSON_Parse(zb);
  if (ja && jb && fz_comparable(ja)) FZ_ASSERT(cJSON_Compare(ja, jb, 1));
  cJSON_Delete(ja);
  cJSON_Delete(jb);
  free(za);
  free(zb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned count;
  fz_quiet();
  if (!L) {
    L = luaL_newstate();
    atexit(close_state);
  }
  kl_span in = {(const char *)data, size};
  int valid = kl_json_validate(in.p, in.n) == 0;
  char errbuf[128];
  int rc = kl_lua_push_json_err(L, in, errbuf, sizeof errbuf);
  if (valid) FZ_ASSERT(rc == 0);
  else if (max_open(data, size) < 200) FZ_ASSERT(rc == KL_EJSON);
  if (rc == 0) {
    FZ_ASSERT(lua_gettop(L) == 1);
    kl_buf out1 = KL_BUF_INIT;
    char *err = NULL;
    int erc = kl_lua_to_json(L, 1, &out1, &err);
    if (erc == 0) {
      FZ_ASSERT(kl_json_validate(out1.data, out1.len) == 0);
      kl_span s1 = {out1.data, out1.len};
      FZ_ASSERT(kl_lua_push_json(L, s1) == 0);
      kl_buf out2 = KL_BUF_INIT;
      char *err2 = NULL;
      FZ_ASSERT(kl_lua_to_json(L, -1, &out2, &err2) == 0);
      FZ_ASSERT(out2.len == out1.len); /* same members, maybe reordered */
      check_same(out1.data, out1.len, out2.data, out2.len);
      kl_buf_free(&out2);
      free(err2);
    }
    free(err);
    kl_buf_free(&out1);
    /* objects with a name become kl_obj versions; push_obj must agree */
    if (lua_istable(L, 1)) {
      kl_obj *obj = NULL;
      char *oerr = NULL;
      if (kl_obj_new(in.p, in.n, NULL, &obj, &oerr) == 0) {
        kl_lua_push_obj(L, obj);
        kl_lua_push_obj(L, obj); /* cache hit */
        FZ_ASSERT(lua_rawequal(L, -1, -2));
        kl_obj_unref(obj);
      }
      free(oerr);
    }
  } else {
    FZ_ASSERT(lua_gettop(L) == 0);
  }
  lua_settop(L, 0);
  if (++count % 256 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
