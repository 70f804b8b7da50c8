/* controller.c: the controller manager behind `klua run`: Lua states with a
 * reconcile budget (kl_vm + kl_watchdog), one cache per cache id on
 * informers shared through a factory (waiting for kinds not served yet),
 * event plumbing into one workqueue per controller, worker and hook
 * threads, hot reload by generations, graceful shutdown, and what
 * production needs: the event recorder behind klua.event, workqueue and
 * informer metrics, the "workers" liveness check. See docs/running.md.
 *
 * Threads: the main thread (kl_ctl_* calls, reloads); per informer a
 * reflector and pop thread (store writes, Lua index functions) and one
 * thread per handler (handlers only enqueue or hand events to the hooks
 * thread); per generation one hooks thread (on_add/on_update/on_delete/
 * on_state hooks and map functions, in its own state) and N workers per
 * controller (each with its own state); one watchdog thread; the event
 * recorder's thread; HTTP threads running kl_ctl_check_workers. */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "controller.h"
#include "events.h"
#include "json.h"
#include "kl.h"
#include "log_format.h"
#include "lua_json.h"
#include "metrics.h"
#include "informer.h"
#include "workqueue.h"

int luaopen_klua_core(lua_State *L); /* lua_core.c */

#define MOD "controller"

/* ===================================================================== */
/* watchdog                                                              */

struct kl_vm {
  lua_State *L;
  kl_watchdog *wd;
  pthread_mutex_t mu; /* armed..stuck_logged */
  bool armed, fired, stuck_logged;
  double deadline, fired_at, budget;
  bool jit;
  int ref_klua, ref_reg;
  int nctl;
  kl_vm *wd_next, *wd_prev;
};

struct kl_watchdog {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t th;
  bool stop;
  kl_vm *head;
  _Atomic(const char *) halted; /* kl_watchdog_halt's reason, or NULL */
};

static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_getfield(L, LUA_REGISTRYINDEX, "klua.vm");
  kl_vm *vm = lua_touserdata(L, -1);
  lua_pop(L, 1);
  const char *why = vm && vm->wd ? atomic_load(&vm->wd->halted) : NULL;
  if (why) luaL_error(L, "klua: aborted: %s", why);
  luaL_error(L, "klua: budget of %g s exceeded: aborted",
             vm ? vm->budget : 0.0);
}

/* Aborts every running call of the watchdog's states at its next Lua
 * instruction, and every later one at its first (reason: borrowed, must
 * outlive the watchdog). Any thread. */
static void wd_halt(kl_watchdog *wd, const char *reason) {
  atomic_store(&wd->halted, reason);
  pthread_mutex_lock(&wd->mu);
  double now = kl_now();
  for (kl_vm *vm = wd->head; vm; vm = vm->wd_next) {
    pthread_mutex_lock(&vm->mu);
    if (vm->armed && !vm->fired) {
      lua_sethook(vm->L, budget_hook, LUA_MASKCOUNT, 100);
      vm->fired = true;
      vm->fired_at = now;
    }
    pthread_mutex_unlock(&vm->mu);
  }
  pthread_mutex_unlock(&wd->mu);
}

static void *watchdog_main(void *ud) {
  kl_watchdog *wd = ud;
  pthread_mutex_lock(&wd->mu);
  while (!wd->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
    double now = kl_now();
    for (kl_vm *vm = wd->head; vm; vm = vm->wd_next) {
      pthread_mutex_lock(&vm->mu);
      if (vm->armed && !vm->fired && now >= vm->deadline) {
        /* async-safe in LuaJIT: takes effect at the next instruction the
         * interpreter dispatches (never inside a compiled trace) */
        lua_sethook(vm->L, budget_hook, LUA_MASKCOUNT, 100);
        vm->fired = true;
        vm->fired_at = now;
      } else if (vm->armed && vm->fired && !vm->stuck_logged &&
                 now - vm->fired_at > 5) {
        vm->stuck_logged = true;
        kl_log(KL_LOG_ERROR, MOD,
               "a Lua call ran past its budget of %g s and cannot be "
               "interrupted (%s); its thread stays blocked",
               vm->budget,
               vm->jit ? "it is looping in JIT-compiled code: run without "
                         "--jit to make budgets reliable"
                       : "it is blocked in C code");
      }
      pthread_mutex_unlock(&vm->mu);
    }
  }
  pthread_mutex_unlock(&wd->mu);
  return NULL;
}

kl_watchdog *kl_watchdog_new(void) {
  kl_watchdog *wd = kl_calloc(1, sizeof *wd);
  pthread_mutex_init(&wd->mu, NULL);
  pthread_cond_init(&wd->cv, NULL);
  if (pthread_create(&wd->th, NULL, watchdog_main, wd) != 0) {
    fprintf(stderr, "klua: cannot start the watchdog thread\n");
    abort();
  }
  return wd;
}

void kl_watchdog_free(kl_watchdog *wd) {
  if (!wd) return;
  pthread_mutex_lock(&wd->mu);
  wd->stop = true;
  pthread_cond_signal(&wd->cv);
  pthread_mutex_unlock(&wd->mu);
  pthread_join(wd->th, NULL);
  pthread_cond_destroy(&wd->cv);
  pthread_mutex_destroy(&wd->mu);
  free(wd);
}

static void wd_add(kl_watchdog *wd, kl_vm *vm) {
  pthread_mutex_lock(&wd->mu);
  vm->wd_next = wd->head;
  if (wd->head) wd->head->wd_prev = vm;
  wd->head = vm;
  pthread_mutex_unlock(&wd->mu);
}

static void wd_del(kl_watchdog *wd, kl_vm *vm) {
  pthread_mutex_lock(&wd->mu);
  if (vm->wd_prev) vm->wd_prev->wd_next = vm->wd_next;
  else wd->head = vm->wd_next;
  if (vm->wd_next) vm->wd_next->wd_prev = vm->wd_prev;
  pthread_mutex_unlock(&wd->mu);
}

/* ===================================================================== */
/* kl_vm                                                                 */

/* Error handler: ends the budget hook (the error reached us), adds a
 * traceback. */
static int vm_msgh(lua_State *L) {
  kl_vm *vm = lua_touserdata(L, lua_upvalueindex(1));
  pthread_mutex_lock(&vm->mu);
  if (vm->fired) lua_sethook(L, NULL, 0, 0);
  pthread_mutex_unlock(&vm->mu);
  const char *m = lua_tostring(L, 1);
  if (!m) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1))
      m = lua_tostring(L, -1);
    else
      m = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, m, 1);
  return 1;
}

int kl_vm_call(kl_vm *vm, int nargs, int nret, double budget, char **err) {
  lua_State *L = vm->L;
  int base = lua_gettop(L) - nargs; /* the function */
  lua_pushlightuserdata(L, vm);
  lua_pushcclosure(L, vm_msgh, 1);
  lua_insert(L, base); /* msgh f args */
  if (budget > 0 && vm->wd) {
    pthread_mutex_lock(&vm->mu);
    vm->armed = true;
    vm->fired = vm->stuck_logged = false;
    vm->budget = budget;
    vm->deadline = kl_now() + budget;
    if (atomic_load(&vm->wd->halted)) { /* raced with wd_halt */
      lua_sethook(L, budget_hook, LUA_MASKCOUNT, 100);
      vm->fired = true;
      vm->fired_at = kl_now();
    }
    pthread_mutex_unlock(&vm->mu);
  }
  int rc = lua_pcall(L, nargs, nret, base);
  bool fired = false;
  if (budget > 0 && vm->wd) {
    pthread_mutex_lock(&vm->mu);
    vm->armed = false;
    fired = vm->fired;
    if (fired) lua_sethook(L, NULL, 0, 0);
    vm->fired = false;
    pthread_mutex_unlock(&vm->mu);
  }
  if (rc == 0) {
    lua_remove(L, base); /* results */
    return 0;
  }
  const char *m = lua_tostring(L, -1);
  if (err) *err = kl_strdup(m ? m : "(no error message)");
  lua_settop(L, base - 1);
  return fired ? KL_ETIMEDOUT : KL_ELUA;
}

/* pcall and xpcall re-raise an error caught while the budget is exceeded,
 * so a script that catches every error cannot outlive its budget. Lua
 * wrappers keep coroutines yieldable across them. */
static const char bootstrap[] =
    "local b, prefix, aborting = ...\n"
    "local raw_pcall, raw_xpcall, error = pcall, xpcall, error\n"
    "local function check(ok, ...)\n"
    "  if not ok and aborting() then error((...), 0) end\n"
    "  return ok, ...\n"
    "end\n"
    "pcall = function(f, ...) return check(raw_pcall(f, ...)) end\n"
    "xpcall = function(f, h, ...) return check(raw_xpcall(f, h, ...)) end\n"
    "package.path = prefix .. package.path\n"
    "local klua = require('klua')\n"
    "klua._set_backend(b)\n"
    "return klua\n";

static int vm_aborting(lua_State *L) {
  kl_vm *vm = lua_touserdata(L, lua_upvalueindex(1));
  pthread_mutex_lock(&vm->mu);
  bool fired = vm->fired;
  pthread_mutex_unlock(&vm->mu);
  lua_pushboolean(L, fired);
  return 1;
}

static int vm_os_exit(lua_State *L) {
  return luaL_error(L, "os.exit is not allowed in a controller script: klua "
                       "keeps running (return, or raise an error, instead)");
}

static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return kl_strdup(".");
  if (slash == path) return kl_strdup("/");
  return kl_strndup(path, (size_t)(slash - path));
}

int kl_vm_new(const kl_vm_opts *o, kl_vm **out, char **err) {
  *out = NULL;
  kl_vm *vm = kl_calloc(1, sizeof *vm);
  pthread_mutex_init(&vm->mu, NULL);
  vm->wd = o->wd;
  vm->jit = o->jit;
  vm->ref_klua = vm->ref_reg = LUA_NOREF;
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "klua: out of memory creating a Lua state\n");
    abort();
  }
  vm->L = L;
  luaL_openlibs(L);
  /* os.exit would end the whole runtime (every controller, the lease, the
   * probes): in a controller script it raises instead. */
  lua_getglobal(L, "os");
  lua_pushcfunction(L, vm_os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  if (!o->jit) luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  lua_pushlightuserdata(L, vm);
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.vm");
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_klua_core);
  lua_setfield(L, -2, "klua_core");
  lua_pop(L, 2);
  if (vm->wd) wd_add(vm->wd, vm);

  double budget = o->load_budget > 0 ? o->load_budget : 30;
  char *dir = dir_of(o->script);
  kl_buf prefix = KL_BUF_INIT;
  kl_buf_addf(&prefix, "%s/?.lua;%s/?/init.lua;", dir, dir);
  if (o->lua_dir)
    kl_buf_addf(&prefix, "%s/?.lua;%s/?/init.lua;", o->lua_dir, o->lua_dir);
  free(dir);
  int rc = luaL_loadbuffer(L, bootstrap, sizeof bootstrap - 1, "=klua");
  if (rc != 0) goto lua_fail;
  static const kl_rt_env no_env = {0};
  kl_rt_push_backend(L, o->env ? o->env : &no_env);
  lua_pushstring(L, prefix.data);
  lua_pushlightuserdata(L, vm);
  lua_pushcclosure(L, vm_aborting, 1);
  rc = kl_vm_call(vm, 3, 1, budget, err);
  if (rc != 0) goto fail;
  vm->ref_klua = luaL_ref(L, LUA_REGISTRYINDEX);

  rc = luaL_loadfile(L, o->script);
  if (rc != 0) goto lua_fail;
  rc = kl_vm_call(vm, 0, 0, budget, err);
  if (rc != 0) goto fail;
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_klua);
  lua_getfield(L, -1, "_seal");
  lua_remove(L, -2);
  rc = kl_vm_call(vm, 0, 1, budget, err);
  if (rc != 0) goto fail;
  vm->ref_reg = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_reg);
  lua_getfield(L, -1, "controllers");
  vm->nctl = (int)lua_objlen(L, -1);
  lua_pop(L, 2);
  kl_buf_free(&prefix);
  *out = vm;
  return 0;

lua_fail:
  if (err) *err = kl_strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  rc = KL_ELUA;
fail:
  kl_buf_free(&prefix);
  kl_vm_free(vm);
  return rc == KL_ETIMEDOUT ? rc : KL_ELUA;
}

void kl_vm_free(kl_vm *vm) {
  if (!vm) return;
  if (vm->wd) wd_del(vm->wd, vm);
  lua_close(vm->L);
  pthread_mutex_destroy(&vm->mu);
  free(vm);
}

lua_State *kl_vm_state(kl_vm *vm) { return vm->L; }
int kl_vm_ncontrollers(kl_vm *vm) { return vm->nctl; }

/* Pushes controllers[ctl][field] (may be nil). */
static void push_ctl_field(kl_vm *vm, int ctl, const char *field) {
  lua_State *L = vm->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_reg);
  lua_getfield(L, -1, "controllers");
  lua_rawgeti(L, -1, ctl);
  if (lua_istable(L, -1)) lua_getfield(L, -1, field);
  else lua_pushnil(L);
  lua_replace(L, -4);
  lua_pop(L, 2); /* value */
}

static void push_req(lua_State *L, const char *key) {
  const char *slash = strchr(key, '/');
  lua_createtable(L, 0, 3);
  if (slash) {
    lua_pushlstring(L, key, (size_t)(slash - key));
    lua_setfield(L, -2, "namespace");
    lua_pushstring(L, slash + 1);
  } else {
    lua_pushstring(L, key);
  }
  lua_setfield(L, -2, "name");
  lua_pushstring(L, key);
  lua_setfield(L, -2, "key"); /* req */
}

/* The arguments of a hook, map or index function, converted to Lua inside
 * the protected call (call_with_objs): a conversion can raise (read-only
 * debug mode finds a table the script changed), and an error outside a
 * pcall would end the process. The objects stay owned by the caller. */
typedef struct objargs {
  const kl_obj *objs[2]; /* the first nobjs are pushed (NULL: nil) */
  int nobjs;
  kl_obj *const *all;  /* with all_set: one array of these */
  size_t nall;
  bool all_set;
  const kl_obj *del;   /* on_delete: obj, then { tombstone =, key = } */
  bool tombstone;
} objargs;

/* fn objargs* -> fn(args...) with every result returned. */
static int call_with_objs(lua_State *L) {
  const objargs *x = lua_touserdata(L, 2);
  lua_settop(L, 1); /* fn */
  int n = 0;
  for (; n < x->nobjs; n++) {
    if (x->objs[n]) kl_lua_push_obj(L, x->objs[n]);
    else lua_pushnil(L);
  }
  if (x->all_set) kl_lua_push_objs(L, x->all, x->nall), n++;
  if (x->del) {
    kl_lua_push_obj(L, x->del);
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, x->tombstone);
    lua_setfield(L, -2, "tombstone");
    lua_pushstring(L, kl_obj_key(x->del));
    lua_setfield(L, -2, "key"); /* fn obj info */
    n += 2;
  }
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* Calls the function at the top of the stack with the arguments x
 * describes, like kl_vm_call (the function is popped). */
static int vm_call_objs(kl_vm *vm, const objargs *x, int nret, double budget,
                        char **err) {
  lua_State *L = vm->L;
  lua_pushcfunction(L, call_with_objs);
  lua_insert(L, -2);
  lua_pushlightuserdata(L, (void *)x); /* tramp fn x */
  return kl_vm_call(vm, 2, nret, budget, err);
}

void kl_vm_reconcile(kl_vm *vm, int ctl, const char *key, double budget,
                     kl_result *res) {
  lua_State *L = vm->L;
  memset(res, 0, sizeof *res);
  lua_settop(L, 0);
  push_ctl_field(vm, ctl, "reconcile");
  if (!lua_isfunction(L, -1)) {
    lua_settop(L, 0);
    res->out = KL_OUT_DONE; /* hooks-only controller */
    return;
  }
  push_req(L, key);
  char *err = NULL;
  int rc = kl_vm_call(vm, 1, 1, budget, &err);
  if (rc != 0) {
    res->out = rc == KL_ETIMEDOUT ? KL_OUT_ABORTED : KL_OUT_ERROR;
    res->message = err;
    lua_settop(L, 0);
    return;
  }
  /* result -> klua._interpret_result(result) */
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_klua);
  lua_getfield(L, -1, "_interpret_result");
  lua_remove(L, -2);
  lua_insert(L, -2); /* fn result */
  if (lua_pcall(L, 1, 2, 0) != 0) {
    res->out = KL_OUT_ERROR;
    res->message = kl_sprintf("cannot interpret the result: %s",
                              lua_tostring(L, -1));
  } else {
    const char *what = lua_tostring(L, -2);
    if (!what) {
      res->out = KL_OUT_ERROR;
      res->message = kl_strdup(lua_tostring(L, -1) ? lua_tostring(L, -1)
                                                   : "bad result");
    } else if (!strcmp(what, "done")) {
      res->out = KL_OUT_DONE;
    } else if (!strcmp(what, "requeue")) {
      res->out = KL_OUT_REQUEUE;
    } else {
      res->out = KL_OUT_AFTER;
      res->after = lua_tonumber(L, -1);
    }
  }
  lua_settop(L, 0);
}

/* ===================================================================== */
/* the script's declarations, read into C                                */

typedef struct idx_spec {
  char *name;
  kl_index_kind kind;
  char *arg;  /* label / field */
  bool lua;   /* a Lua function (kind unused) */
} idx_spec;

typedef struct cache_spec {
  char *id, *api_version, *kind, *resource, *namespace, *label_selector,
      *field_selector;
  idx_spec *idx;
  int nidx;
} cache_spec;

typedef struct ctl_spec {
  char *name, *cache_id, *group, *kind;
  int workers;
  double timeout;
  bool reconcile, on_add, on_update, on_delete, on_state;
  char **owns;    /* cache ids */
  int nowns;
  char **watches; /* cache ids */
  int nwatches;
} ctl_spec;

typedef struct spec {
  ctl_spec *ctls;
  int nctl;
  cache_spec *caches;
  int ncache;
} spec;

static char *field_str(lua_State *L, int idx, const char *k) {
  lua_getfield(L, idx, k);
  char *s = lua_type(L, -1) == LUA_TSTRING ? kl_strdup(lua_tostring(L, -1))
                                          : NULL;
  lua_pop(L, 1);
  return s;
}

static bool field_set(lua_State *L, int idx, const char *k) {
  lua_getfield(L, idx, k);
  bool b = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return b;
}

static char *group_of(const char *api_version) {
  const char *slash = strchr(api_version, '/');
  return slash ? kl_strndup(api_version, (size_t)(slash - api_version))
               : kl_strdup("");
}

static char **cache_ids(lua_State *L, int t, const char *k, int *n) {
  lua_getfield(L, t, k);
  int m = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
  char **v = kl_calloc((size_t)m + 1, sizeof *v);
  for (int i = 0; i < m; i++) {
    lua_rawgeti(L, -1, i + 1);
    v[i] = field_str(L, lua_gettop(L), "cache_id");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  *n = m;
  return v;
}

static void spec_free(spec *s) {
  if (!s) return;
  for (int i = 0; i < s->nctl; i++) {
    ctl_spec *c = &s->ctls[i];
    free(c->name), free(c->cache_id), free(c->group), free(c->kind);
    for (int j = 0; j < c->nowns; j++) free(c->owns[j]);
    for (int j = 0; j < c->nwatches; j++) free(c->watches[j]);
    free(c->owns), free(c->watches);
  }
  for (int i = 0; i < s->ncache; i++) {
    cache_spec *c = &s->caches[i];
    free(c->id), free(c->api_version), free(c->kind), free(c->resource);
    free(c->namespace), free(c->label_selector), free(c->field_selector);
    for (int j = 0; j < c->nidx; j++) free(c->idx[j].name), free(c->idx[j].arg);
    free(c->idx);
  }
  free(s->ctls);
  free(s->caches);
  free(s);
}

/* Reads klua._registry of a loaded state. */
static spec *spec_read(kl_vm *vm) {
  lua_State *L = vm->L;
  spec *s = kl_calloc(1, sizeof *s);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_reg); /* reg */
  lua_getfield(L, 1, "controllers");               /* reg ctls */
  s->nctl = (int)lua_objlen(L, 2);
  s->ctls = kl_calloc((size_t)s->nctl + 1, sizeof *s->ctls);
  for (int i = 0; i < s->nctl; i++) {
    ctl_spec *c = &s->ctls[i];
    lua_rawgeti(L, 2, i + 1); /* reg ctls c */
    c->name = field_str(L, 3, "name");
    c->cache_id = field_str(L, 3, "cache_id");
    c->kind = field_str(L, 3, "kind");
    char *av = field_str(L, 3, "api_version");
    c->group = group_of(av ? av : "");
    free(av);
    lua_getfield(L, 3, "workers");
    c->workers = (int)lua_tointeger(L, -1);
    lua_getfield(L, 3, "reconcile_timeout");
    c->timeout = lua_tonumber(L, -1);
    lua_pop(L, 2);
    c->reconcile = field_set(L, 3, "reconcile");
    lua_getfield(L, 3, "hooks"); /* reg ctls c hooks */
    if (lua_istable(L, 4)) {
      c->on_add = field_set(L, 4, "on_add");
      c->on_update = field_set(L, 4, "on_update");
      c->on_delete = field_set(L, 4, "on_delete");
      c->on_state = field_set(L, 4, "on_state");
    }
    lua_pop(L, 1);
    c->owns = cache_ids(L, 3, "owns", &c->nowns);
    c->watches = cache_ids(L, 3, "watches", &c->nwatches);
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  lua_getfield(L, 1, "caches"); /* reg caches */
  s->ncache = (int)lua_objlen(L, 2);
  s->caches = kl_calloc((size_t)s->ncache + 1, sizeof *s->caches);
  for (int i = 0; i < s->ncache; i++) {
    cache_spec *c = &s->caches[i];
    lua_rawgeti(L, 2, i + 1); /* reg caches c */
    c->id = field_str(L, 3, "id");
    c->api_version = field_str(L, 3, "api_version");
    c->kind = field_str(L, 3, "kind");
    c->resource = field_str(L, 3, "resource");
    c->namespace = field_str(L, 3, "namespace");
    c->label_selector = field_str(L, 3, "label_selector");
    c->field_selector = field_str(L, 3, "field_selector");
    lua_getfield(L, 3, "indexes"); /* reg caches c idx */
    c->nidx = lua_istable(L, 4) ? (int)lua_objlen(L, 4) : 0;
    c->idx = kl_calloc((size_t)c->nidx + 1, sizeof *c->idx);
    for (int j = 0; j < c->nidx; j++) {
      idx_spec *x = &c->idx[j];
      lua_rawgeti(L, 4, j + 1);
      int e = lua_gettop(L);
      x->name = field_str(L, e, "name");
      char *type = field_str(L, e, "type");
      char *owner = field_str(L, e, "owner");
      if (!type) type = kl_strdup("");
      if (!strcmp(type, "field")) {
        x->kind = KL_INDEX_FIELD, x->arg = field_str(L, e, "field");
      } else if (!strcmp(type, "label")) {
        x->kind = KL_INDEX_LABEL, x->arg = field_str(L, e, "label");
      } else if (!strcmp(type, "namespace")) {
        x->kind = KL_INDEX_NAMESPACE;
      } else if (!strcmp(type, "owner")) {
        x->kind = owner && !strcmp(owner, "kindname")
                      ? KL_INDEX_OWNER_KINDNAME
                      : KL_INDEX_OWNER_UID;
      } else {
        x->lua = true;
      }
      free(type);
      free(owner);
      lua_pop(L, 1);
    }
    lua_settop(L, 2);
  }
  lua_settop(L, 0);
  return s;
}

/* ===================================================================== */
/* sources: one per cache id, shared by every generation; informers come */
/* from the factory (one per collection + selectors)                     */

typedef struct gen gen;

enum { EV_ADD = KL_NOTIFY_ADD, EV_UPDATE = KL_NOTIFY_UPDATE,
       EV_DELETE = KL_NOTIFY_DELETE };
enum { ROLE_PRIMARY = 1, ROLE_OWNED, ROLE_WATCH };

/* One informer handler of a generation (runs on the handler's thread). */
typedef struct handler {
  gen *g;
  int ctl;  /* index into g->ctls */
  int role;
  int widx; /* watches index (ROLE_WATCH), from 1 */
  struct src *src;
  kl_handler *h;
} handler;

typedef struct src {
  char *id;
  int refs; /* main thread only */
  kl_ctl *mgr;
  kl_informer *inf; /* a reference from the factory */
  kl_store *store;  /* borrowed from inf */
  bool namespaced;  /* the resource's scope */
  int col;          /* metrics collector */
} src;

/* A controller's queue, kept across reloads by controller name. */
typedef struct mqueue {
  kl_wq *wq;
  int col; /* metrics collector */
} mqueue;

/* What a worker or hooks thread is running, for the "workers" liveness
 * check; guarded by kl_ctl.busy_mu. Strings are borrowed while since > 0
 * (a generation that has an abandoned thread is never freed). */
typedef struct busy {
  const char *ctl, *what, *key;
  double since, budget; /* since 0: idle */
} busy;

/* A Lua index function: runs in the manager's index state, under idx_mu. */
typedef struct lidx {
  kl_ctl *mgr;
  char *resource, *name;
} lidx;

struct kl_ctl {
  kl_ctl_opts o;
  char *script, *lua_dir, *namespace, *component;
  kl_watchdog *wd;
  kl_hmap srcs;   /* id -> src; main thread */
  kl_hmap queues; /* controller name -> mqueue */
  kl_informer_factory *factory;
  bool own_factory;
  kl_events *events;
  pthread_mutex_t busy_mu;
  busy **busy;    /* one per running worker or hooks thread */
  int nbusy, capbusy;
  bool leak;      /* a thread was abandoned: never free the manager */
  spec *spec;     /* current */
  gen *cur;
  pthread_mutex_t idx_mu;
  kl_vm *idx_vm;  /* the probe state of the current version */
  kl_rt_env idx_env;
  kl_hmap idx_caches;
  /* reload */
  struct wfile { char *path; long long mtime_ns, size, ino, dev; } *files;
  int nfiles;
  double last_poll;
  bool started, stopped;
  atomic_uint_fast64_t rid;
  atomic_uint_fast64_t n_rec, n_err, n_abort, n_reload, n_reload_fail;
};

/* ---- generations ---- */

typedef struct hook_ev {
  int type;  /* EV_* or 0 for on_state */
  int ctl;   /* index into g->ctls */
  int widx;  /* map: watches index from 1; 0: primary hooks */
  kl_obj *old, *obj;
  bool tombstone;
  struct hook_ev *next;
} hook_ev;

typedef struct gen_ctl {
  const ctl_spec *cs;
  kl_wq *wq; /* borrowed from mgr->queues */
  src *primary;
  src **owns;
  src **watches;
  int nworkers;
  double budget;
  atomic_bool state_dirty;
} gen_ctl;

typedef struct worker {
  gen *g;
  int ctl;
  pthread_t th;
  bool started, joined;
} worker;

struct gen {
  kl_ctl *mgr;
  spec *spec;          /* owned */
  gen_ctl *ctls;
  int nctl;
  kl_hmap caches;      /* id -> kl_store * (borrowed from srcs) */
  src **srcs;          /* acquired */
  int nsrcs;
  kl_rt_env env;
  /* threads */
  worker *workers;
  int nworkers;
  pthread_t hooks_th;
  bool hooks_started, hooks_joined;
  atomic_bool stop;
  /* load barrier */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int loaded, failed, expected;
  char *load_err;
  /* informer handlers */
  handler **hs;
  int nhs, caphs;
  /* hooks queue */
  hook_ev *hhead, *htail;
  size_t hlen;
  bool abandoned;
};

static void hook_push(gen *g, hook_ev *ev) {
  pthread_mutex_lock(&g->mu);
  if (g->htail) g->htail->next = ev;
  else g->hhead = ev;
  g->htail = ev;
  g->hlen++;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

static void hook_ev_free(hook_ev *ev) {
  kl_obj_unref(ev->old);
  kl_obj_unref(ev->obj);
  free(ev);
}

static void push_event(gen *g, int type, int ctl, int widx, kl_obj *old,
                       kl_obj *obj, bool tombstone) {
  hook_ev *ev = kl_calloc(1, sizeof *ev);
  ev->type = type, ev->ctl = ctl, ev->widx = widx;
  ev->old = kl_obj_ref(old);
  ev->obj = kl_obj_ref(obj);
  ev->tombstone = tombstone;
  hook_push(g, ev);
}

/* The key of obj's controlling owner when it is of group/kind, as a NEW
 * string: "ns/name" (obj's namespace) for a namespaced owner kind, "name"
 * for a cluster-scoped one; NULL when there is none. */
static char *owner_key(const kl_obj *obj, const char *group,
                       const char *kind, bool namespaced) {
  kl_span refs;
  if (!kl_obj_get(obj, "metadata.ownerReferences", &refs) ||
      kl_json_type(refs) != 'a')
    return NULL;
  kl_json_iter it;
  kl_json_iter_init(&it, refs);
  kl_span k, ref;
  while (kl_json_next(&it, &k, &ref)) {
    kl_span ctl, av, kd, name;
    if (!kl_json_get(ref, "controller", &ctl) || kl_json_type(ctl) != 't')
      continue;
    if (!kl_json_get(ref, "kind", &kd) || !kl_json_streq(kd, kind) ||
        !kl_json_get(ref, "apiVersion", &av) ||
        !kl_json_get(ref, "name", &name))
      return NULL; /* the controller is of another kind */
    char *avs = kl_json_strdup(av);
    char *g = group_of(avs ? avs : "");
    bool same = !strcmp(g, group);
    free(g);
    free(avs);
    if (!same) return NULL;
    char *n = kl_json_strdup(name);
    if (!n) return NULL;
    char *key = kl_meta_key(namespaced ? kl_obj_namespace(obj) : NULL, n);
    free(n);
    return key;
  }
  return NULL;
}

/* Runs on the handler's own thread (one notification at a time). */
static void on_notify(const kl_notification *n, void *ud) {
  handler *h = ud;
  gen *g = h->g;
  gen_ctl *gc = &g->ctls[h->ctl];
  const ctl_spec *cs = gc->cs;
  int type = (int)n->type;
  switch (h->role) {
  case ROLE_PRIMARY:
    if (cs->reconcile) kl_wq_add(gc->wq, n->key);
    if (n->obj && ((type == EV_ADD && cs->on_add) ||
                   (type == EV_UPDATE && cs->on_update) ||
                   (type == EV_DELETE && cs->on_delete)))
      push_event(g, type, h->ctl, 0, n->old, n->obj, n->tombstone);
    if (cs->on_state && !atomic_exchange(&gc->state_dirty, true))
      push_event(g, 0, h->ctl, 0, NULL, NULL, false);
    break;
  case ROLE_OWNED:
    for (int i = 0; i < 2; i++) {
      kl_obj *o = i == 0 ? n->obj : n->old;
      if (!o) continue;
      char *key = owner_key(o, cs->group, cs->kind,
                            !gc->primary || gc->primary->namespaced);
      if (key) kl_wq_add(gc->wq, key);
      free(key);
    }
    break;
  case ROLE_WATCH:
    if (n->obj) push_event(g, type, h->ctl, h->widx, n->old, n->obj, false);
    break;
  }
}

static int lua_index_fn(const kl_obj *obj, kl_strv *out, void *ud);
static void lidx_free(void *ud) {
  lidx *x = ud;
  free(x->resource);
  free(x->name);
  free(x);
}

static void src_add_indexes(kl_ctl *m, src *s, const cache_spec *cs) {
  kl_strv have = {0};
  kl_store_get_indexers(s->store, &have);
  for (int j = 0; j < cs->nidx; j++) {
    const idx_spec *x = &cs->idx[j];
    bool dup = false;
    for (size_t k = 0; k < have.n; k++)
      if (!strcmp(have.v[k], x->name)) dup = true;
    if (dup) continue;
    int rc;
    if (x->lua) {
      lidx *l = kl_calloc(1, sizeof *l);
      l->mgr = m;
      l->resource = kl_strdup(cs->resource);
      l->name = kl_strdup(x->name);
      rc = kl_store_add_index_fn(s->store, x->name, lua_index_fn, l, lidx_free);
      if (rc != 0) lidx_free(l);
    } else {
      rc = kl_store_add_indexer(s->store, x->name, x->kind, x->arg);
    }
    if (rc != 0)
      kl_log(KL_LOG_ERROR, MOD, "cache %s: cannot add index '%s': %s", cs->id,
             x->name, kl_strerror(rc));
  }
  kl_strv_free(&have);
}

/* The informer's name in metrics and logs: "v1/configmaps", plus the
 * namespace and selectors when it has them (NEW). */
static char *informer_label(const kl_resource *res, const char *ns,
                            const cache_spec *cs) {
  kl_buf b = KL_BUF_INIT;
  kl_buf_addf(&b, "%s/%s", res->api_version, res->resource);
  if (ns && *ns && res->namespaced) kl_buf_addf(&b, " namespace=%s", ns);
  if (cs->label_selector && *cs->label_selector)
    kl_buf_addf(&b, " labelSelector=%s", cs->label_selector);
  if (cs->field_selector && *cs->field_selector)
    kl_buf_addf(&b, " fieldSelector=%s", cs->field_selector);
  return b.data;
}

/* Sets *out to the source of cache cs (shared by id: an unchanged cache
 * keeps its informer and its content across reloads; informers come from
 * the factory, so caches with the same collection and selectors share
 * one), starting it if new. Returns 0; KL_ENOENT when the server does not
 * serve the kind (yet); another code when discovery failed; *err NEW. */
static int src_acquire(kl_ctl *m, const cache_spec *cs, src **out,
                       char **err) {
  src *s = kl_hmap_get(&m->srcs, cs->id);
  if (s) {
    s->refs++;
    src_add_indexes(m, s, cs);
    *out = s;
    return 0;
  }
  kl_resource res;
  bool found = false;
  kl_rest_error rerr = {0};
  int rc = kl_discovery_resolve(m->o.disc, cs->api_version, cs->kind, &res,
                                &found, &rerr);
  if (rc != 0) {
    *err = kl_sprintf("cannot look up %s %s on the server: %s",
                      cs->api_version, cs->kind,
                      rerr.message ? rerr.message : kl_strerror(rc));
    kl_rest_error_free(&rerr);
    return rc;
  }
  if (!found) {
    *err = kl_sprintf("the server has no resource for apiVersion %s kind %s "
                      "(is its CRD installed?)",
                      cs->api_version, cs->kind);
    return KL_ENOENT;
  }
  const char *ns = cs->namespace ? cs->namespace : m->namespace;
  char *path = kl_resource_path(&res, res.namespaced ? ns : NULL, NULL, NULL);
  char *label = informer_label(&res, ns, cs);
  kl_informer_opts io = {0};
  io.reflector = m->o.reflector; /* tuning */
  io.reflector.rest = m->o.rest;
  io.reflector.path = path;
  io.reflector.name = label;
  io.reflector.api_version = cs->api_version;
  io.reflector.kind = cs->kind;
  io.reflector.label_selector = cs->label_selector;
  io.reflector.field_selector = cs->field_selector;
  io.reflector.metadata_only = false;
  kl_informer *inf = NULL;
  char *ierr = NULL;
  rc = kl_informer_factory_get(m->factory, &io, &inf, &ierr);
  bool namespaced = res.namespaced;
  free(path);
  kl_resource_free(&res);
  if (rc != 0) {
    *err = kl_sprintf("cache %s: %s", cs->id, ierr ? ierr : kl_strerror(rc));
    free(ierr);
    free(label);
    return rc;
  }
  s = kl_calloc(1, sizeof *s);
  s->id = kl_strdup(cs->id);
  s->refs = 1;
  s->mgr = m;
  s->inf = inf;
  s->store = kl_informer_store(inf);
  s->namespaced = namespaced;
  src_add_indexes(m, s, cs);
  kl_informer_start(inf); /* a no-op when another cache shares it */
  s->col = kl_metrics_watch_informer(kl_metrics_default(), label, inf);
  kl_hmap_put(&m->srcs, s->id, s);
  kl_log(KL_LOG_DEBUG, MOD, "started informer %s (%s)", s->id, label);
  free(label);
  *out = s;
  return 0;
}

static bool src_synced(src *s) { return kl_informer_has_synced(s->inf); }

static void src_release(kl_ctl *m, src *s) {
  if (--s->refs > 0) return;
  bool found;
  kl_hmap_del(&m->srcs, s->id, &found);
  kl_metrics_remove_collector(kl_metrics_default(), s->col);
  /* stops the informer unless another cache (or another user of the
   * factory) still uses it */
  bool stopped = kl_informer_factory_release(m->factory, s->inf);
  kl_log(KL_LOG_DEBUG, MOD, "released cache %s%s", s->id,
         stopped ? ": informer stopped" : "");
  free(s->id);
  free(s);
}

/* ---- Lua index functions ---- */

static void add_index_value(lua_State *L, int idx, kl_strv *out) {
  int t = lua_type(L, idx);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    kl_strv_pushn(out, s, n);
  } else if (t == LUA_TBOOLEAN) {
    kl_strv_push(out, lua_toboolean(L, idx) ? "true" : "false");
  }
}

static int lua_index_fn(const kl_obj *obj, kl_strv *out, void *ud) {
  lidx *x = ud;
  kl_ctl *m = x->mgr;
  pthread_mutex_lock(&m->idx_mu);
  kl_vm *vm = m->idx_vm;
  if (!vm) {
    pthread_mutex_unlock(&m->idx_mu);
    return 0;
  }
  lua_State *L = vm->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_reg);
  lua_getfield(L, -1, "indexes");
  int n = (int)lua_objlen(L, -1);
  bool found = false;
  for (int i = 1; i <= n && !found; i++) {
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "resource");
    lua_getfield(L, -2, "name");
    if (lua_isstring(L, -2) && lua_isstring(L, -1) &&
        !strcmp(lua_tostring(L, -2), x->resource) &&
        !strcmp(lua_tostring(L, -1), x->name)) {
      lua_getfield(L, -3, "fn");
      found = lua_isfunction(L, -1);
      if (found) {
        lua_replace(L, top + 1);
        break;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 3);
  }
  if (found) {
    lua_settop(L, top + 1); /* fn */
    objargs args = {.objs = {obj}, .nobjs = 1};
    char *err = NULL;
    if (vm_call_objs(vm, &args, 1, 5, &err) != 0) {
      kl_log(KL_LOG_WARN, MOD, "index '%s' on %s: %s (no value for %s)",
             x->name, x->resource, err, kl_obj_key(obj));
      free(err);
    } else if (lua_istable(L, -1)) {
      int t = lua_gettop(L), k = (int)lua_objlen(L, t);
      for (int i = 1; i <= k; i++) {
        lua_rawgeti(L, t, i);
        add_index_value(L, lua_gettop(L), out);
        lua_pop(L, 1);
      }
    } else {
      add_index_value(L, lua_gettop(L), out);
    }
  }
  lua_settop(L, top);
  pthread_mutex_unlock(&m->idx_mu);
  return 0;
}

/* ---- generation threads ---- */

static busy *busy_new(kl_ctl *m);
static void busy_free(kl_ctl *m, busy *b);
static void busy_set(kl_ctl *m, busy *b, const char *ctl, const char *what,
                     const char *key, double budget);
static void busy_clear(kl_ctl *m, busy *b);

static double ctl_budget(kl_ctl *m, const ctl_spec *cs) {
  return m->o.budget > 0 ? m->o.budget : (cs->timeout > 0 ? cs->timeout : 30);
}

static kl_vm *gen_load_vm(gen *g) {
  kl_ctl *m = g->mgr;
  kl_vm_opts vo = {.script = m->script, .lua_dir = m->lua_dir,
                   .jit = m->o.jit, .env = &g->env, .wd = m->wd};
  kl_vm *vm = NULL;
  char *err = NULL;
  int rc = kl_vm_new(&vo, &vm, &err);
  pthread_mutex_lock(&g->mu);
  if (rc == 0 && kl_vm_ncontrollers(vm) != g->nctl) {
    kl_vm_free(vm);
    vm = NULL;
    err = kl_strdup("the script declared different controllers in another "
                    "state (does it depend on something that changes?)");
  }
  if (vm) {
    g->loaded++;
  } else {
    g->failed++;
    if (!g->load_err) g->load_err = err;
    else free(err);
  }
  pthread_cond_broadcast(&g->cv);
  /* start only once every state of the generation loaded: a generation
   * that fails as a whole (the running version stays) must not have
   * reconciled anything from the queues it shares with that version */
  while (g->loaded + g->failed < g->expected)
    pthread_cond_wait(&g->cv, &g->mu);
  bool ok = g->failed == 0;
  pthread_mutex_unlock(&g->mu);
  if (vm && !ok) {
    kl_vm_free(vm);
    vm = NULL;
  }
  return vm;
}

static void log_result(kl_ctl *m, const gen_ctl *gc, const char *key,
                       const kl_result *r, kl_wq *wq) {
  kl_rt_logctx *lc = kl_rt_logctx_get();
  char rid[24];
  snprintf(rid, sizeof rid, "%llu", (unsigned long long)lc->reconcile_id);
  kl_log_field f[3] = {{"controller", gc->cs->name}, {"key", key},
                       {"reconcile_id", rid}};
  switch (r->out) {
  case KL_OUT_DONE:
    kl_wq_forget(wq, key);
    break;
  case KL_OUT_REQUEUE:
    kl_wq_add_rate_limited(wq, key);
    break;
  case KL_OUT_AFTER:
    kl_wq_forget(wq, key);
    kl_wq_add_after(wq, key, r->after);
    break;
  case KL_OUT_ERROR:
    atomic_fetch_add(&m->n_err, 1);
    kl_logf(KL_LOG_ERROR, MOD, f, 3,
            "reconcile of %s %s failed (retrying with backoff): %s",
            gc->cs->kind, key, r->message);
    kl_wq_add_rate_limited(wq, key);
    break;
  case KL_OUT_ABORTED:
    atomic_fetch_add(&m->n_abort, 1);
    if (atomic_load(&m->wd->halted)) {
      kl_logf(KL_LOG_WARN, MOD, f, 3, "reconcile of %s %s aborted: %s",
              gc->cs->kind, key, atomic_load(&m->wd->halted));
      break;
    }
    kl_logf(KL_LOG_ERROR, MOD, f, 3,
            "reconcile of %s %s aborted: it ran past its budget of %g s "
            "(retrying with backoff): %s",
            gc->cs->kind, key, gc->budget, r->message);
    kl_wq_add_rate_limited(wq, key);
    break;
  }
}

/* controller-runtime's reconcile metrics (docs/production.md). */
static void count_result(const char *ctl, const kl_result *r, double secs) {
  static const char *const result[] = {"success", "requeue", "requeue_after",
                                       "error", "error"};
  const kl_std_metrics *sm = kl_std_metrics_get();
  kl_counter_inc(kl_metric_withv(sm->reconcile_total, ctl, result[r->out]));
  if (r->out == KL_OUT_ERROR || r->out == KL_OUT_ABORTED)
    kl_counter_inc(kl_metric_withv(sm->reconcile_errors_total, ctl));
  if (r->out == KL_OUT_ERROR)
    kl_counter_inc(kl_metric_withv(sm->lua_errors_total, ctl));
  if (r->out == KL_OUT_ABORTED)
    kl_counter_inc(kl_metric_withv(sm->reconcile_aborted_total, ctl));
  kl_histogram_observe(kl_metric_withv(sm->reconcile_time_seconds, ctl), secs);
  kl_histogram_observe(kl_metric_withv(sm->wq_work_duration_seconds, ctl),
                       secs);
}

static void *worker_main(void *ud) {
  worker *w = ud;
  gen *g = w->g;
  kl_ctl *m = g->mgr;
  gen_ctl *gc = &g->ctls[w->ctl];
  kl_vm *vm = gen_load_vm(g);
  if (!vm) return NULL;
  kl_rt_logctx *lc = kl_rt_logctx_get();
  busy *bz = busy_new(m);
  while (!atomic_load(&g->stop)) {
    char *key = NULL;
    int rc = kl_wq_get(gc->wq, 0.2, &key);
    if (rc == KL_ETIMEDOUT) continue;
    if (rc != 0) break;
    if (atomic_load(&m->wd->halted)) { /* kl_ctl_halt: nothing more runs */
      kl_wq_done(gc->wq, key);
      free(key);
      break;
    }
    if (atomic_load(&g->stop)) {
      /* this version is being replaced: hand the key back (re-queued when
       * done) to the new version's workers */
      kl_wq_add(gc->wq, key);
      kl_wq_done(gc->wq, key);
      free(key);
      break;
    }
    uint64_t rid = atomic_fetch_add(&m->rid, 1) + 1;
    lc->controller = gc->cs->name;
    lc->key = key;
    lc->reconcile_id = rid;
    kl_result r;
    kl_metric_series *active = kl_metric_withv(
        kl_std_metrics_get()->active_workers, gc->cs->name);
    kl_gauge_add(active, 1);
    double t0 = kl_now();
    busy_set(m, bz, gc->cs->name, "reconcile", key, gc->budget);
    kl_vm_reconcile(vm, w->ctl + 1, key, gc->budget, &r);
    busy_clear(m, bz);
    kl_gauge_add(active, -1);
    count_result(gc->cs->name, &r, kl_now() - t0);
    atomic_fetch_add(&m->n_rec, 1);
    log_result(m, gc, key, &r, gc->wq);
    lc->controller = lc->key = NULL;
    lc->reconcile_id = 0;
    free(r.message);
    kl_wq_done(gc->wq, key);
    free(key);
  }
  busy_free(m, bz);
  kl_vm_free(vm);
  return NULL;
}

/* Pushes the hook or map function of an event; false when there is none. */
static bool push_hook_fn(kl_vm *vm, const hook_ev *ev, const char *name) {
  lua_State *L = vm->L;
  if (ev->widx) {
    push_ctl_field(vm, ev->ctl + 1, "watches");
    lua_rawgeti(L, -1, ev->widx);
    lua_getfield(L, -1, "map");
    lua_replace(L, -3);
    lua_pop(L, 1);
  } else {
    push_ctl_field(vm, ev->ctl + 1, "hooks");
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
  }
  if (lua_isfunction(L, -1)) return true;
  lua_pop(L, 1);
  return false;
}

static void run_map(gen *g, kl_vm *vm, gen_ctl *gc, const hook_ev *ev,
                    kl_obj *obj) {
  lua_State *L = vm->L;
  lua_settop(L, 0);
  if (!push_hook_fn(vm, ev, NULL)) return;
  objargs x = {.objs = {obj}, .nobjs = 1};
  char *err = NULL;
  if (vm_call_objs(vm, &x, 1, gc->budget, &err) != 0) {
    kl_log(KL_LOG_ERROR, MOD, "%s: map of watches[%d] failed for %s: %s",
           gc->cs->name, ev->widx, kl_obj_key(obj), err);
    free(err);
    return;
  }
  if (!lua_istable(L, 1)) {
    if (!lua_isnil(L, 1))
      kl_log(KL_LOG_ERROR, MOD, "%s: map of watches[%d] returned a %s for "
             "%s: expected an array of requests",
             gc->cs->name, ev->widx, luaL_typename(L, 1), kl_obj_key(obj));
    lua_settop(L, 0);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_klua);
  lua_getfield(L, -1, "_normalize_request"); /* reqs klua norm */
  int n = (int)lua_objlen(L, 1);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, 3);
    lua_rawgeti(L, 1, i);
    if (lua_pcall(L, 1, 2, 0) == 0 && lua_istable(L, -2)) {
      lua_getfield(L, -2, "key");
      kl_wq_add(gc->wq, lua_tostring(L, -1));
      lua_pop(L, 1);
    } else {
      kl_log(KL_LOG_ERROR, MOD, "%s: map of watches[%d] for %s: request %d: "
             "%s", gc->cs->name, ev->widx, kl_obj_key(obj), i,
             lua_tostring(L, -1));
    }
    lua_settop(L, 3);
  }
  (void)g;
  lua_settop(L, 0);
}

static const char *hook_name(const hook_ev *ev) {
  return ev->widx               ? "map"
         : ev->type == EV_ADD    ? "on_add"
         : ev->type == EV_UPDATE ? "on_update"
         : ev->type == EV_DELETE ? "on_delete"
                                 : "on_state";
}

static void run_hook(gen *g, kl_vm *vm, hook_ev *ev) {
  gen_ctl *gc = &g->ctls[ev->ctl];
  lua_State *L = vm->L;
  kl_rt_logctx *lc = kl_rt_logctx_get();
  lc->controller = gc->cs->name;
  lc->key = ev->obj ? kl_obj_key(ev->obj) : NULL;
  if (ev->widx) {
    run_map(g, vm, gc, ev, ev->obj);
    if (ev->old) run_map(g, vm, gc, ev, ev->old);
    lc->controller = lc->key = NULL;
    return;
  }
  const char *name = hook_name(ev);
  lua_settop(L, 0);
  if (ev->type == 0) atomic_store(&gc->state_dirty, false);
  if (push_hook_fn(vm, ev, name)) {
    objargs x = {0};
    kl_objv all = {0};
    if (ev->type == EV_UPDATE) {
      x.objs[0] = ev->old;
      x.objs[1] = ev->obj;
      x.nobjs = 2;
    } else if (ev->type == EV_DELETE) {
      x.del = ev->obj;
      x.tombstone = ev->tombstone;
    } else if (ev->type == EV_ADD) {
      x.objs[0] = ev->obj;
      x.nobjs = 1;
    } else {
      kl_store_list(gc->primary->store, &all);
      x.all = all.v;
      x.nall = all.n;
      x.all_set = true;
    }
    char *err = NULL;
    int rc = vm_call_objs(vm, &x, 0, gc->budget, &err);
    kl_objv_free(&all);
    if (rc != 0)
      kl_log(KL_LOG_ERROR, MOD, "%s: %s %s: %s", gc->cs->name, name,
             rc == KL_ETIMEDOUT ? "aborted" : "failed", err);
    free(err);
  }
  lua_settop(L, 0);
  lc->controller = lc->key = NULL;
}

static void *hooks_main(void *ud) {
  gen *g = ud;
  kl_vm *vm = gen_load_vm(g);
  if (!vm) return NULL;
  busy *bz = busy_new(g->mgr);
  pthread_mutex_lock(&g->mu);
  while (!atomic_load(&g->stop) && !atomic_load(&g->mgr->wd->halted)) {
    hook_ev *ev = g->hhead;
    if (!ev) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 200 * 1000000;
      if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
      pthread_cond_timedwait(&g->cv, &g->mu, &ts);
      continue;
    }
    g->hhead = ev->next;
    if (!g->hhead) g->htail = NULL;
    g->hlen--;
    pthread_mutex_unlock(&g->mu);
    gen_ctl *gc = &g->ctls[ev->ctl];
    busy_set(g->mgr, bz, gc->cs->name, hook_name(ev),
             ev->obj ? kl_obj_key(ev->obj) : NULL, gc->budget);
    run_hook(g, vm, ev);
    busy_clear(g->mgr, bz);
    hook_ev_free(ev);
    pthread_mutex_lock(&g->mu);
  }
  pthread_mutex_unlock(&g->mu);
  busy_free(g->mgr, bz);
  kl_vm_free(vm);
  return NULL;
}

static bool gen_needs_hooks(const spec *s) {
  for (int i = 0; i < s->nctl; i++) {
    const ctl_spec *c = &s->ctls[i];
    if (c->on_add || c->on_update || c->on_delete || c->on_state ||
        c->nwatches)
      return true;
  }
  return false;
}

static void observe_queue_time(void *ud, double waited) {
  kl_histogram_observe(ud, waited);
}

/* The queue of controller name, created on first use with its metrics:
 * the workqueue_* gauges and counters mirrored at every scrape, and
 * workqueue_queue_duration_seconds observed at every get. */
static kl_wq *mgr_queue(kl_ctl *m, const char *name) {
  mqueue *q = kl_hmap_get(&m->queues, name);
  if (!q) {
    q = kl_calloc(1, sizeof *q);
    kl_wq_opts wo = {
        .on_get = observe_queue_time,
        .on_get_ud = kl_metric_withv(
            kl_std_metrics_get()->wq_queue_duration_seconds, name)};
    q->wq = kl_wq_new(&wo);
    q->col = kl_metrics_watch_workqueue(kl_metrics_default(), name, q->wq);
    kl_hmap_put(&m->queues, name, q);
  }
  return q->wq;
}

/* Shuts a queue down and frees it once its collector is gone. */
static void mqueue_free(mqueue *q) {
  kl_metrics_remove_collector(kl_metrics_default(), q->col);
  kl_wq_shutdown(q->wq);
  kl_wq_free(q->wq);
  free(q);
}

/* ---- the "workers" liveness check ---- */

static busy *busy_new(kl_ctl *m) {
  busy *b = kl_calloc(1, sizeof *b);
  pthread_mutex_lock(&m->busy_mu);
  if (m->nbusy == m->capbusy) {
    m->capbusy = m->capbusy ? m->capbusy * 2 : 16;
    m->busy = kl_realloc(m->busy, (size_t)m->capbusy * sizeof *m->busy);
  }
  m->busy[m->nbusy++] = b;
  pthread_mutex_unlock(&m->busy_mu);
  return b;
}

static void busy_free(kl_ctl *m, busy *b) {
  pthread_mutex_lock(&m->busy_mu);
  for (int i = 0; i < m->nbusy; i++)
    if (m->busy[i] == b) {
      m->busy[i] = m->busy[--m->nbusy];
      break;
    }
  pthread_mutex_unlock(&m->busy_mu);
  free(b);
}

static void busy_set(kl_ctl *m, busy *b, const char *ctl, const char *what,
                     const char *key, double budget) {
  pthread_mutex_lock(&m->busy_mu);
  b->ctl = ctl, b->what = what, b->key = key, b->budget = budget;
  b->since = kl_now();
  pthread_mutex_unlock(&m->busy_mu);
}

static void busy_clear(kl_ctl *m, busy *b) {
  pthread_mutex_lock(&m->busy_mu);
  b->since = 0;
  b->ctl = b->what = b->key = NULL;
  pthread_mutex_unlock(&m->busy_mu);
}

int kl_ctl_check_workers(void *ud, char **reason) {
  kl_ctl *m = ud;
  double grace = m->o.stuck_after > 0 ? m->o.stuck_after : 10;
  double now = kl_now(), worst = 0;
  int stuck = 0;
  char *msg = NULL;
  pthread_mutex_lock(&m->busy_mu);
  for (int i = 0; i < m->nbusy; i++) {
    const busy *b = m->busy[i];
    if (b->since <= 0) continue;
    double late = now - b->since - b->budget;
    if (late <= grace) continue;
    stuck++;
    if (late > worst) {
      worst = late;
      free(msg);
      msg = kl_sprintf("%s of %s%s%s has run for %.0f s (budget %g s)",
                       b->what, b->ctl, b->key ? " key " : "",
                       b->key ? b->key : "", now - b->since, b->budget);
    }
  }
  pthread_mutex_unlock(&m->busy_mu);
  if (!stuck) return 0;
  if (reason)
    *reason = stuck > 1 ? kl_sprintf("%d Lua calls are stuck, e.g. %s", stuck,
                                     msg)
                        : kl_strdup(msg);
  free(msg);
  return KL_ETIMEDOUT;
}

/* Joins t until deadline (absolute kl_now time; <= 0: forever); false on
 * timeout. */
static bool join_until(pthread_t t, double deadline) {
  if (deadline <= 0) return pthread_join(t, NULL) == 0;
  double left = deadline - kl_now();
  if (left < 0) left = 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)left;
  ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
  if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
  return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

static void gen_free(gen *g) {
  if (!g) return;
  kl_ctl *m = g->mgr;
  if (g->abandoned) return; /* a thread still uses it */
  for (hook_ev *ev = g->hhead, *nx; ev; ev = nx) {
    nx = ev->next;
    hook_ev_free(ev);
  }
  for (int i = 0; i < g->nsrcs; i++) src_release(m, g->srcs[i]);
  for (int i = 0; i < g->nctl; i++) {
    free(g->ctls[i].owns);
    free(g->ctls[i].watches);
  }
  free(g->ctls);
  free(g->srcs);
  free(g->hs);
  free(g->workers);
  free(g->load_err);
  kl_hmap_free(&g->caches);
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  spec_free(g->spec);
  free(g);
}

static void gen_disconnect(gen *g);

/* Stops the generation's threads; true when all of them ended. */
static bool gen_stop_threads(gen *g, double deadline) {
  gen_disconnect(g);
  atomic_store(&g->stop, true);
  pthread_mutex_lock(&g->mu);
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  bool all = true;
  for (int i = 0; i < g->nworkers; i++) {
    worker *w = &g->workers[i];
    if (!w->started || w->joined) continue;
    if (join_until(w->th, deadline)) {
      w->joined = true;
    } else {
      all = false;
      kl_log(KL_LOG_ERROR, MOD, "a worker of %s did not finish in time; "
             "abandoning it", g->ctls[w->ctl].cs->name);
      pthread_detach(w->th);
      w->joined = true;
    }
  }
  if (g->hooks_started && !g->hooks_joined) {
    if (!join_until(g->hooks_th, deadline)) {
      all = false;
      kl_log(KL_LOG_ERROR, MOD, "the hooks thread did not finish in time; "
             "abandoning it");
      pthread_detach(g->hooks_th);
    }
    g->hooks_joined = true;
  }
  if (!all) g->abandoned = true;
  return all;
}

/* Sleeps up to secs in slices; false when interrupted. */
static bool nap(kl_ctl *m, double secs) {
  double end = kl_now() + secs;
  while (kl_now() < end) {
    if (m->o.interrupted && m->o.interrupted()) return false;
    usleep(20000);
  }
  return true;
}

/* src_acquire, waiting (discovery refreshed with backoff) while the
 * server does not serve the kind, e.g. until its CRD is applied. Bounded
 * by the sync timeout from t0; interruptible. */
static int acquire_waiting(kl_ctl *m, const cache_spec *cs, double t0,
                           src **out, char **err) {
  double delay = 0.25, next_log = 0;
  for (;;) {
    char *e = NULL;
    int rc = src_acquire(m, cs, out, &e);
    if (rc != KL_ENOENT) {
      if (rc) *err = e;
      else if (next_log > 0)
        kl_log(KL_LOG_INFO, MOD, "resource %s %s is served now",
               cs->api_version, cs->kind);
      return rc;
    }
    if (m->o.sync_timeout > 0 && kl_now() - t0 > m->o.sync_timeout) {
      *err = kl_sprintf("%s (waited %g s)", e, m->o.sync_timeout);
      free(e);
      return KL_ETIMEDOUT;
    }
    free(e);
    if (kl_now() >= next_log) {
      kl_log(KL_LOG_WARN, MOD, "waiting for resource %s %s to be served "
             "(is its CRD installed?)", cs->api_version, cs->kind);
      next_log = kl_now() + 30;
    }
    if (!nap(m, delay)) {
      *err = kl_sprintf("interrupted while waiting for resource %s %s to "
                        "be served", cs->api_version, cs->kind);
      return KL_ECLOSED;
    }
    delay = delay * 2 > 5 ? 5 : delay * 2;
    kl_discovery_invalidate(m->o.disc); /* ask the server again */
  }
}

/* Builds and starts a generation for spec s (taken over). On failure
 * returns NULL with *err set, and nothing is left running. */
static gen *gen_start(kl_ctl *m, spec *s, char **err) {
  gen *g = kl_calloc(1, sizeof *g);
  g->mgr = m;
  g->spec = s;
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  kl_hmap_init(&g->caches, KL_HMAP_BORROW_KEYS);
  g->srcs = kl_calloc((size_t)s->ncache + 1, sizeof *g->srcs);
  double t0 = kl_now();
  for (int i = 0; i < s->ncache; i++) {
    src *sr = NULL;
    if (acquire_waiting(m, &s->caches[i], t0, &sr, err) != 0) {
      gen_free(g);
      return NULL;
    }
    g->srcs[g->nsrcs++] = sr;
    kl_hmap_put(&g->caches, sr->id, sr->store);
  }
  g->env.rest = m->o.rest;
  g->env.disc = m->o.disc;
  g->env.caches = &g->caches;
  g->env.component = m->component;
  g->env.events = m->events;

  /* wait for the caches */
  double next_log = kl_now() + 10;
  for (;;) {
    int pending = 0;
    const char *which = NULL;
    for (int i = 0; i < g->nsrcs; i++)
      if (!src_synced(g->srcs[i])) pending++, which = g->srcs[i]->id;
    if (!pending) break;
    if (m->o.interrupted && m->o.interrupted()) {
      *err = kl_strdup("interrupted while waiting for caches to sync");
      gen_free(g);
      return NULL;
    }
    if (m->o.sync_timeout > 0 && kl_now() - t0 > m->o.sync_timeout) {
      *err = kl_sprintf("cache %s did not sync within %g s", which,
                        m->o.sync_timeout);
      gen_free(g);
      return NULL;
    }
    if (kl_now() > next_log) {
      kl_log(KL_LOG_WARN, MOD, "waiting for %d cache(s) to sync, e.g. %s",
             pending, which);
      next_log = kl_now() + 10;
    }
    usleep(20000);
  }

  g->nctl = s->nctl;
  g->ctls = kl_calloc((size_t)s->nctl + 1, sizeof *g->ctls);
  int nworkers = 0;
  for (int i = 0; i < s->nctl; i++) {
    gen_ctl *gc = &g->ctls[i];
    const ctl_spec *cs = &s->ctls[i];
    gc->cs = cs;
    gc->wq = mgr_queue(m, cs->name);
    gc->budget = ctl_budget(m, cs);
    gc->nworkers = cs->reconcile ? (m->o.workers > 0 ? m->o.workers
                                                     : (cs->workers > 0 ? cs->workers : 1))
                                 : 0;
    nworkers += gc->nworkers;
    if (cs->reconcile)
      kl_gauge_set(kl_metric_withv(
                       kl_std_metrics_get()->max_concurrent_reconciles,
                       cs->name),
                   gc->nworkers);
    for (int j = 0; j < g->nsrcs; j++)
      if (!strcmp(g->srcs[j]->id, cs->cache_id)) gc->primary = g->srcs[j];
    gc->owns = kl_calloc((size_t)cs->nowns + 1, sizeof *gc->owns);
    gc->watches = kl_calloc((size_t)cs->nwatches + 1, sizeof *gc->watches);
    for (int k = 0; k < cs->nowns; k++)
      for (int j = 0; j < g->nsrcs; j++)
        if (!strcmp(g->srcs[j]->id, cs->owns[k])) gc->owns[k] = g->srcs[j];
    for (int k = 0; k < cs->nwatches; k++)
      for (int j = 0; j < g->nsrcs; j++)
        if (!strcmp(g->srcs[j]->id, cs->watches[k]))
          gc->watches[k] = g->srcs[j];
  }

  /* threads: each loads its own state; wait until all did */
  bool hooks = gen_needs_hooks(s);
  g->workers = kl_calloc((size_t)nworkers + 1, sizeof *g->workers);
  g->expected = nworkers + (hooks ? 1 : 0);
  for (int i = 0; i < s->nctl; i++)
    for (int k = 0; k < g->ctls[i].nworkers; k++) {
      worker *w = &g->workers[g->nworkers++];
      w->g = g;
      w->ctl = i;
      if (pthread_create(&w->th, NULL, worker_main, w) == 0) {
        w->started = true;
      } else {
        pthread_mutex_lock(&g->mu);
        g->failed++;
        pthread_mutex_unlock(&g->mu);
      }
    }
  if (hooks) {
    if (pthread_create(&g->hooks_th, NULL, hooks_main, g) == 0) {
      g->hooks_started = true;
    } else {
      pthread_mutex_lock(&g->mu);
      g->failed++;
      pthread_mutex_unlock(&g->mu);
    }
  }
  pthread_mutex_lock(&g->mu);
  while (g->loaded + g->failed < g->expected)
    pthread_cond_wait(&g->cv, &g->mu);
  bool ok = g->failed == 0;
  pthread_mutex_unlock(&g->mu);
  if (!ok) {
    *err = kl_strdup(g->load_err ? g->load_err : "cannot start threads");
    gen_stop_threads(g, 0);
    gen_free(g);
    return NULL;
  }
  return g;
}

/* Connects the generation to its informers: one handler per (controller,
 * role, source); each new handler first gets an add for every cached
 * object, so every primary key is enqueued once. */
static void gen_add_handler(gen *g, src *sr, int ctl, int role, int widx) {
  if (!sr) return;
  handler *h = kl_calloc(1, sizeof *h);
  h->g = g, h->ctl = ctl, h->role = role, h->widx = widx, h->src = sr;
  if (kl_informer_add_handler(sr->inf, on_notify, h, 0, &h->h) != 0) {
    kl_log(KL_LOG_ERROR, MOD, "cache %s: cannot add a handler", sr->id);
    free(h);
    return;
  }
  if (g->nhs == g->caphs) {
    g->caphs = g->caphs ? g->caphs * 2 : 8;
    g->hs = kl_realloc(g->hs, (size_t)g->caphs * sizeof *g->hs);
  }
  g->hs[g->nhs++] = h;
}

static void gen_connect(gen *g) {
  for (int i = 0; i < g->nctl; i++) {
    gen_ctl *gc = &g->ctls[i];
    const ctl_spec *cs = gc->cs;
    gen_add_handler(g, gc->primary, i, ROLE_PRIMARY, 0);
    for (int k = 0; k < cs->nowns; k++)
      gen_add_handler(g, gc->owns[k], i, ROLE_OWNED, 0);
    for (int k = 0; k < cs->nwatches; k++)
      gen_add_handler(g, gc->watches[k], i, ROLE_WATCH, k + 1);
  }
}

/* Removes the generation's handlers (waits for running ones). */
static void gen_disconnect(gen *g) {
  for (int i = 0; i < g->nhs; i++) {
    kl_informer_remove_handler(g->hs[i]->src->inf, g->hs[i]->h);
    free(g->hs[i]);
  }
  g->nhs = 0;
}

/* ===================================================================== */
/* the manager                                                           */

/* Files to watch: the script and the modules it loaded from its dir. */
static const char watch_files_lua[] =
    "local dir, script = ...\n"
    "local files, seen = { script }, { [script] = true }\n"
    "for name in pairs(package.loaded) do\n"
    "  if type(name) == 'string' then\n"
    "    local rel = name:gsub('%.', '/')\n"
    "    for _, p in ipairs({ dir .. '/' .. rel .. '.lua', dir .. '/' .. rel .. '/init.lua' }) do\n"
    "      local f = io.open(p, 'r')\n"
    "      if f then f:close(); if not seen[p] then seen[p] = true; files[#files + 1] = p end end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return files\n";

/* A file's identity and version: a replaced file (new inode, e.g. an
 * editor's save-by-rename or a ConfigMap volume's symlink swap) counts as
 * changed even with the same size and modification time. */
static void stamp(const char *path, struct wfile *w) {
  struct stat st;
  if (stat(path, &st) != 0) {
    w->mtime_ns = w->size = w->ino = w->dev = -1;
    return;
  }
  w->mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
  w->size = (long long)st.st_size;
  w->ino = (long long)st.st_ino;
  w->dev = (long long)st.st_dev;
}

static void files_free(kl_ctl *m) {
  for (int i = 0; i < m->nfiles; i++) free(m->files[i].path);
  free(m->files);
  m->files = NULL;
  m->nfiles = 0;
}

static void files_read(kl_ctl *m, kl_vm *vm) {
  lua_State *L = vm->L;
  lua_settop(L, 0);
  char *dir = dir_of(m->script);
  if (luaL_loadbuffer(L, watch_files_lua, sizeof watch_files_lua - 1,
                      "=klua.reload") == 0) {
    lua_pushstring(L, dir);
    lua_pushstring(L, m->script);
    if (lua_pcall(L, 2, 1, 0) == 0 && lua_istable(L, -1)) {
      files_free(m);
      m->nfiles = (int)lua_objlen(L, -1);
      m->files = kl_calloc((size_t)m->nfiles + 1, sizeof *m->files);
      for (int i = 0; i < m->nfiles; i++) {
        lua_rawgeti(L, -1, i + 1);
        m->files[i].path = kl_strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    }
  }
  lua_settop(L, 0);
  free(dir);
}

static void files_stamp(kl_ctl *m) {
  for (int i = 0; i < m->nfiles; i++) stamp(m->files[i].path, &m->files[i]);
}

static int probe(kl_ctl *m, kl_vm **vm, char **err) {
  kl_vm_opts vo = {.script = m->script, .lua_dir = m->lua_dir,
                   .jit = false, .env = &m->idx_env, .wd = m->wd};
  return kl_vm_new(&vo, vm, err);
}

/* Makes vm the index state; returns the previous one (the caller frees it
 * or puts it back). */
static kl_vm *swap_idx_vm(kl_ctl *m, kl_vm *vm) {
  pthread_mutex_lock(&m->idx_mu);
  kl_vm *old = m->idx_vm;
  m->idx_vm = vm;
  pthread_mutex_unlock(&m->idx_mu);
  return old;
}

static void set_idx_vm(kl_ctl *m, kl_vm *vm) {
  kl_vm *old = swap_idx_vm(m, vm);
  pthread_mutex_lock(&m->idx_mu); /* no index call still runs in it */
  kl_vm_free(old);
  pthread_mutex_unlock(&m->idx_mu);
}

int kl_ctl_new(const kl_ctl_opts *o, kl_ctl **out, char **err) {
  *out = NULL;
  if (!o->script || !o->rest || !o->disc) {
    *err = kl_strdup("kl_ctl_new: script, rest and disc are required");
    return KL_EINVAL;
  }
  kl_ctl *m = kl_calloc(1, sizeof *m);
  m->o = *o;
  m->script = kl_strdup(o->script);
  m->lua_dir = o->lua_dir ? kl_strdup(o->lua_dir) : NULL;
  m->namespace = o->namespace ? kl_strdup(o->namespace) : NULL;
  m->component = kl_strdup(o->component ? o->component : "klua");
  if (m->o.shutdown_timeout <= 0) m->o.shutdown_timeout = 30;
  kl_hmap_init(&m->srcs, KL_HMAP_BORROW_KEYS);
  kl_hmap_init(&m->queues, KL_HMAP_OWN_KEYS);
  kl_hmap_init(&m->idx_caches, KL_HMAP_BORROW_KEYS);
  pthread_mutex_init(&m->idx_mu, NULL);
  pthread_mutex_init(&m->busy_mu, NULL);
  m->factory = o->factory;
  if (!m->factory) {
    m->factory = kl_informer_factory_new(o->rest);
    m->own_factory = true;
  }
  kl_events_opts eo = {.rest = o->rest, .component = m->component};
  int erc = kl_events_new(&eo, &m->events, err);
  if (erc != 0) {
    kl_ctl_free(m);
    return erc;
  }
  m->idx_env.rest = o->rest;
  m->idx_env.disc = o->disc;
  m->idx_env.caches = &m->idx_caches;
  m->idx_env.component = m->component;
  m->idx_env.events = m->events;
  m->wd = kl_watchdog_new();
  kl_vm *vm = NULL;
  int rc = probe(m, &vm, err);
  if (rc != 0) {
    kl_ctl_free(m);
    return rc;
  }
  m->spec = spec_read(vm);
  files_read(m, vm);
  files_stamp(m);
  set_idx_vm(m, vm);
  if (m->spec->nctl == 0)
    kl_log(KL_LOG_WARN, MOD, "%s declares no controller", m->script);
  *out = m;
  return 0;
}

int kl_ctl_start(kl_ctl *m, char **err) {
  if (m->started) return 0;
  spec *s = m->spec;
  m->spec = NULL;
  gen *g = gen_start(m, s, err);
  if (!g) return KL_EINVAL;
  gen_connect(g);
  m->cur = g;
  m->spec = g->spec;
  m->started = true;
  kl_log(KL_LOG_INFO, MOD, "running %s (%d controller%s)", m->script,
         g->nctl, g->nctl == 1 ? "" : "s");
  return 0;
}

static bool files_changed(kl_ctl *m) {
  for (int i = 0; i < m->nfiles; i++) {
    struct wfile now = {0}, *was = &m->files[i];
    stamp(was->path, &now);
    if (now.mtime_ns != was->mtime_ns || now.size != was->size ||
        now.ino != was->ino || now.dev != was->dev)
      return true;
  }
  return false;
}

static int reload(kl_ctl *m) {
  kl_vm *vm = NULL;
  char *err = NULL;
  const kl_std_metrics *sm = kl_std_metrics_get();
  int rc = probe(m, &vm, &err);
  if (rc != 0) {
    atomic_fetch_add(&m->n_reload_fail, 1);
    kl_counter_inc(kl_metric_withv(sm->reloads_total, "failure"));
    kl_log(KL_LOG_ERROR, MOD, "reload of %s failed, the running version "
           "stays: %s", m->script, err);
    free(err);
    return rc;
  }
  spec *s = spec_read(vm);
  files_read(m, vm);
  files_stamp(m);
  /* index functions of the new version from now on (gen_start adds its
   * new indexes, computed in this state); the running version's state
   * comes back if the new version fails */
  kl_vm *was = swap_idx_vm(m, vm);
  gen *g = gen_start(m, s, &err);
  if (!g) {
    set_idx_vm(m, was);
    atomic_fetch_add(&m->n_reload_fail, 1);
    kl_counter_inc(kl_metric_withv(sm->reloads_total, "failure"));
    kl_log(KL_LOG_ERROR, MOD, "reload of %s failed, the running version "
           "stays: %s", m->script, err);
    free(err);
    return KL_EINVAL;
  }
  pthread_mutex_lock(&m->idx_mu);
  kl_vm_free(was);
  pthread_mutex_unlock(&m->idx_mu);
  gen *old = m->cur;
  /* old version: stop taking events, finish running reconciles */
  double deadline = kl_now() + m->o.shutdown_timeout;
  atomic_store(&old->stop, true); /* its workers take no new key */
  gen_connect(g); /* replays every object: each primary key is enqueued */
  gen_disconnect(old);
  m->cur = g;
  m->spec = g->spec;
  gen_stop_threads(old, deadline);
  /* queues of controllers that are gone */
  kl_strv gone = {0};
  const char *k;
  void *v;
  for (size_t i = 0; kl_hmap_next(&m->queues, &i, &k, &v);) {
    bool keep = false;
    for (int j = 0; j < g->nctl; j++)
      if (!strcmp(g->ctls[j].cs->name, k)) keep = true;
    if (!keep) kl_strv_push(&gone, k);
  }
  if (old->abandoned) m->leak = true;
  for (size_t i = 0; i < gone.n; i++) {
    bool found;
    mqueue *q = kl_hmap_del(&m->queues, gone.v[i], &found);
    if (!old->abandoned) mqueue_free(q);
  }
  kl_strv_free(&gone);
  gen_free(old); /* releases informers the new version does not use */
  atomic_fetch_add(&m->n_reload, 1);
  kl_counter_inc(kl_metric_withv(sm->reloads_total, "success"));
  kl_log(KL_LOG_INFO, MOD, "reloaded %s (%d controller%s)", m->script,
         g->nctl, g->nctl == 1 ? "" : "s");
  return 1;
}

int kl_ctl_poll(kl_ctl *m) {
  if (!m->o.reload || !m->started || m->stopped) return 0;
  if (!files_changed(m)) return 0;
  files_stamp(m); /* a failed version is not retried until it changes */
  return reload(m);
}

void kl_ctl_halt(kl_ctl *m, const char *reason) {
  const char *was = atomic_load(&m->wd->halted);
  if (!was)
    kl_log(KL_LOG_WARN, MOD, "halting every controller: %s", reason);
  wd_halt(m->wd, reason);
}

int kl_ctl_stop(kl_ctl *m) {
  if (m->stopped) return 0;
  m->stopped = true;
  if (!m->cur) return 0;
  gen *g = m->cur;
  double deadline = kl_now() + m->o.shutdown_timeout;
  kl_log(KL_LOG_INFO, MOD, "shutting down: waiting up to %g s for running "
         "reconciles", m->o.shutdown_timeout);
  gen_disconnect(g);
  atomic_store(&g->stop, true); /* queued keys are dropped */
  const char *k;
  void *v;
  for (size_t i = 0; kl_hmap_next(&m->queues, &i, &k, &v);)
    kl_wq_shutdown(((mqueue *)v)->wq);
  int rc = gen_stop_threads(g, deadline) ? 0 : KL_ETIMEDOUT;
  if (!g->abandoned) {
    gen_free(g);
    m->cur = NULL;
  }
  return rc;
}

void kl_ctl_free(kl_ctl *m) {
  if (!m) return;
  kl_ctl_stop(m);
  bool leak = m->leak || (m->cur && m->cur->abandoned);
  if (leak) {
    /* a thread still runs in that generation: leave its memory alone */
    kl_log(KL_LOG_WARN, MOD, "exiting with a stuck worker");
    return;
  }
  set_idx_vm(m, NULL);
  if (!m->started) spec_free(m->spec);
  const char *k;
  void *v;
  for (size_t i = 0; kl_hmap_next(&m->queues, &i, &k, &v);) mqueue_free(v);
  kl_hmap_free(&m->queues);
  kl_hmap_free(&m->srcs);
  kl_hmap_free(&m->idx_caches);
  if (m->own_factory) kl_informer_factory_free(m->factory);
  kl_events_free(m->events); /* sends what is queued (up to 5 s) */
  kl_watchdog_free(m->wd);
  pthread_mutex_destroy(&m->idx_mu);
  pthread_mutex_destroy(&m->busy_mu);
  free(m->busy);
  files_free(m);
  free(m->script);
  free(m->lua_dir);
  free(m->namespace);
  free(m->component);
  free(m);
}

void kl_ctl_get_stats(kl_ctl *m, kl_ctl_stats *out) {
  out->reconciles = atomic_load(&m->n_rec);
  out->errors = atomic_load(&m->n_err);
  out->aborts = atomic_load(&m->n_abort);
  out->reloads = atomic_load(&m->n_reload);
  out->reload_failures = atomic_load(&m->n_reload_fail);
}
