/* lua_metrics.c: script-defined Prometheus metrics on the process-wide
 * registry (klua_core.metrics_counter/gauge/histogram). Every worker state
 * may define the same metric (registration is idempotent) and update it
 * concurrently; values live in C (metrics.c), so all states share them.
 *
 *   local m = klua_core.metrics_counter("app_things_total", "Things.", {"kind"})
 *   m:inc({kind = "a"})          m:inc({kind = "a"}, 2)
 *   local g = klua_core.metrics_gauge("app_queue", "Queue.")   g:set(3) g:add(-1)
 *   local h = klua_core.metrics_histogram("app_seconds", "T.", {"op"}, {0.1, 1})
 *   h:observe({op = "x"}, 0.3)
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "lua_bind.h"
#include "metrics.h"

#define METRIC_MT "klua.metric"

static kl_metric *check_metric(lua_State *L) {
  kl_metric **p = luaL_checkudata(L, 1, METRIC_MT);
  return *p;
}

/* Reads the label values table at idx (nil: none) in the family's label
 * order; unknown label names are a programmer error. */
static kl_metric_series *series_at(lua_State *L, kl_metric *m, int idx) {
  size_t n = kl_metric_nlabels(m);
  const char *vals[KL_METRICS_MAX_LABELS] = {0};
  if (lua_istable(L, idx)) {
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* ... key value */
      if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "%s: label names must be strings", kl_metric_name(m));
      const char *k = lua_tostring(L, -2);
      size_t i;
      for (i = 0; i < n && strcmp(kl_metric_label(m, i), k) != 0; i++) {
      }
      if (i == n)
        luaL_error(L, "%s: unknown label \"%s\"", kl_metric_name(m), k);
      int t = lua_type(L, -1);
      if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
        luaL_error(L, "%s: label %s must be a string, number or boolean",
                   kl_metric_name(m), k);
      if (t == LUA_TBOOLEAN)
        vals[i] = lua_toboolean(L, -1) ? "true" : "false";
      else
        vals[i] = lua_tostring(L, -1); /* converts numbers in place */
      lua_pop(L, 1); /* the table keeps the string alive */
    }
  } else if (!lua_isnoneornil(L, idx)) {
    luaL_error(L, "%s: labels must be a table", kl_metric_name(m));
  }
  return kl_metric_with(m, vals, n);
}

static kl_metric_series *no_labels(kl_metric *m) {
  const char *vals[KL_METRICS_MAX_LABELS] = {0};
  return kl_metric_with(m, vals, kl_metric_nlabels(m));
}

/* The series for the labels table at idx (nil: every label ""). Number
 * values are turned into strings in a copy of the table that stays on the
 * stack during the lookup, so the value pointers remain valid. */
static kl_metric_series *series(lua_State *L, kl_metric *m, int idx) {
  if (!lua_istable(L, idx)) return series_at(L, m, idx);
  /* copy the table with every value turned into a string, kept on the
   * stack until the lookup is done */
  lua_newtable(L); /* ... copy */
  int copy = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) { /* ... copy key value */
    lua_pushvalue(L, -2);    /* ... copy key value key */
    if (lua_type(L, -2) == LUA_TNUMBER) {
      lua_pushstring(L, lua_tostring(L, -2)); /* ... key value key str */
    } else {
      lua_pushvalue(L, -2);
    }
    lua_rawset(L, copy); /* ... copy key value */
    lua_pop(L, 1);
  }
  kl_metric_series *s = series_at(L, m, copy);
  lua_settop(L, copy - 1);
  return s;
}

/* m:inc([labels], [n]) / m:dec([labels], [n]) */
static int l_inc_sign(lua_State *L, double sign) {
  kl_metric *m = check_metric(L);
  int li = 2, ni = 3;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    li = 0;
    ni = 2;
  }
  double n = luaL_optnumber(L, ni, 1);
  kl_metric_series *s = li ? series(L, m, li) : no_labels(m);
  int t = kl_metric_type(m);
  if (t == KL_METRIC_COUNTER) {
    if (sign < 0 || n < 0)
      return luaL_error(L, "%s: a counter only goes up", kl_metric_name(m));
    kl_counter_add(s, n);
  } else if (t == KL_METRIC_GAUGE) {
    kl_gauge_add(s, sign * n);
  } else {
    return luaL_error(L, "%s is a histogram: use observe",
                      kl_metric_name(m));
  }
  return 0;
}
static int l_inc(lua_State *L) { return l_inc_sign(L, 1); }
static int l_dec(lua_State *L) { return l_inc_sign(L, -1); }

/* gauge: m:set([labels], v) and m:add([labels], v) */
static int l_gauge_op(lua_State *L, bool set) {
  kl_metric *m = check_metric(L);
  if (kl_metric_type(m) != KL_METRIC_GAUGE)
    return luaL_error(L, "%s is not a gauge", kl_metric_name(m));
  bool labels = lua_gettop(L) >= 3 || lua_istable(L, 2);
  double v = luaL_checknumber(L, labels ? 3 : 2);
  kl_metric_series *s = labels ? series(L, m, 2) : no_labels(m);
  if (set)
    kl_gauge_set(s, v);
  else
    kl_gauge_add(s, v);
  return 0;
}
static int l_set(lua_State *L) { return l_gauge_op(L, true); }
static int l_add(lua_State *L) { return l_gauge_op(L, false); }

/* histogram: m:observe([labels], v) */
static int l_observe(lua_State *L) {
  kl_metric *m = check_metric(L);
  if (kl_metric_type(m) != KL_METRIC_HISTOGRAM)
    return luaL_error(L, "%s is not a histogram", kl_metric_name(m));
  bool labels = lua_gettop(L) >= 3 || lua_istable(L, 2);
  double v = luaL_checknumber(L, labels ? 3 : 2);
  kl_histogram_observe(labels ? series(L, m, 2) : no_labels(m), v);
  return 0;
}

/* m:value([labels]) -> number (histogram: the sum), m:count([labels]) */
static int l_value(lua_State *L) {
  kl_metric *m = check_metric(L);
  lua_pushnumber(L, kl_metric_series_value(series(L, m, 2)));
  return 1;
}
static int l_count(lua_State *L) {
  kl_metric *m = check_metric(L);
  lua_pushnumber(L, (lua_Number)kl_metric_series_count(series(L, m, 2)));
  return 1;
}

static int l_tostring(lua_State *L) {
  kl_metric *m = check_metric(L);
  static const char *types[] = {"counter", "gauge", "histogram"};
  lua_pushfstring(L, "klua.metric(%s %s)", types[kl_metric_type(m)],
                  kl_metric_name(m));
  return 1;
}

/* Reads an array of strings at idx into a NEW NULL-terminated array. */
static const char **string_array(lua_State *L, int idx, const char *what) {
  if (lua_isnoneornil(L, idx)) return NULL;
  luaL_checktype(L, idx, LUA_TTABLE);
  size_t n = lua_objlen(L, idx);
  if (n > KL_METRICS_MAX_LABELS)
    luaL_error(L, "%s: at most %d labels", what, KL_METRICS_MAX_LABELS);
  const char **v = lua_newuserdata(L, (n + 1) * sizeof *v); /* keeps it */
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: label names must be strings", what);
    v[i] = lua_tostring(L, -1);
    lua_pop(L, 1); /* the table still references the string */
  }
  v[n] = NULL;
  return v;
}

static int define(lua_State *L, int type) {
  const char *name = luaL_checkstring(L, 1);
  const char *help = luaL_optstring(L, 2, "");
  const char **labels = string_array(L, 3, name);
  double buckets[64];
  size_t nb = 0;
  if (type == KL_METRIC_HISTOGRAM && !lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    nb = lua_objlen(L, 4);
    if (nb > 64) return luaL_error(L, "%s: at most 64 buckets", name);
    for (size_t i = 0; i < nb; i++) {
      lua_rawgeti(L, 4, (int)i + 1);
      if (lua_type(L, -1) != LUA_TNUMBER)
        return luaL_error(L, "%s: buckets must be numbers", name);
      buckets[i] = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
  }
  kl_metric *m = NULL;
  char *err = NULL;
  kl_metrics *r = kl_metrics_default();
  int rc = type == KL_METRIC_COUNTER
               ? kl_metrics_counter(r, name, help, labels, &m, &err)
           : type == KL_METRIC_GAUGE
               ? kl_metrics_gauge(r, name, help, labels, &m, &err)
               : kl_metrics_histogram(r, name, help, labels, buckets, nb, &m,
                                      &err);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err ? err : kl_strerror(rc));
    free(err);
    return 2;
  }
  kl_metric **p = lua_newuserdata(L, sizeof *p);
  *p = m;
  luaL_getmetatable(L, METRIC_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int l_counter(lua_State *L) { return define(L, KL_METRIC_COUNTER); }
static int l_gauge(lua_State *L) { return define(L, KL_METRIC_GAUGE); }
static int l_histogram(lua_State *L) {
  return define(L, KL_METRIC_HISTOGRAM);
}

/* klua_core.metrics_expose() -> the /metrics text */
static int l_expose(lua_State *L) {
  kl_buf b = KL_BUF_INIT;
  kl_metrics_expose(kl_metrics_default(), &b);
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  kl_buf_free(&b);
  return 1;
}

static const luaL_Reg methods[] = {
    {"inc", l_inc},         {"dec", l_dec},     {"set", l_set},
    {"add", l_add},         {"observe", l_observe}, {"value", l_value},
    {"count", l_count},     {NULL, NULL},
};

void kl_lua_open_metrics(lua_State *L, int core) {
  kl_std_metrics_get(); /* scripts see (and cannot redefine) the runtime's */
  luaL_newmetatable(L, METRIC_MT); /* mt */
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_counter);
  lua_setfield(L, core, "metrics_counter");
  lua_pushcfunction(L, l_gauge);
  lua_setfield(L, core, "metrics_gauge");
  lua_pushcfunction(L, l_histogram);
  lua_setfield(L, core, "metrics_histogram");
  lua_pushcfunction(L, l_expose);
  lua_setfield(L, core, "metrics_expose");
}
