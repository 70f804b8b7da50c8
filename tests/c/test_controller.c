/* test_controller.c: the worker side of `klua run` without a server: a
 * script loaded into a kl_vm, reconcile results, errors, the budget that
 * aborts runaway loops (JIT off, and JIT on for loops the JIT does not
 * compile), and the C cache backend over a kl_store. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apiserver.h"
#include "controller.h"
#include "discovery.h"
#include "kubeconfig.h"
#include "rest.h"
#include "ctest.h"
#include "hmap.h"
#include "kl.h"
#include "store.h"

static char lua_dir[1024];
static char tmpdir[256];

/* Writes a script into the temp directory; returns its path (static). */
static const char *script(const char *name, const char *body) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  fputs(body, f);
  fclose(f);
  return path;
}

static const char header[] =
    "local klua = require('klua')\n"
    "local function rec(fn) klua.controller({ name = 'c', watch = { api_version = 'v1', kind = 'ConfigMap' }, reconcile = fn }) end\n";

static kl_vm *load(const char *name, const char *body, bool jit,
                   kl_watchdog *wd, const kl_rt_env *env) {
  kl_buf b = KL_BUF_INIT;
  kl_buf_adds(&b, header);
  kl_buf_adds(&b, body);
  kl_vm_opts o = {.script = script(name, b.data), .lua_dir = lua_dir,
                  .jit = jit, .env = env, .wd = wd};
  kl_vm *vm = NULL;
  char *err = NULL;
  int rc = kl_vm_new(&o, &vm, &err);
  if (rc != 0) printf("  load %s failed: %s\n", name, err);
  free(err);
  kl_buf_free(&b);
  return vm;
}

TEST(load_errors_name_file_and_line) {
  kl_vm_opts o = {.script = script("syntax.lua", "local x = \n\n = 3\n"),
                  .lua_dir = lua_dir};
  kl_vm *vm = NULL;
  char *err = NULL;
  CHECK(kl_vm_new(&o, &vm, &err) == KL_ELUA);
  CHECK(vm == NULL);
  CHECK(err && strstr(err, "syntax.lua:3:"));
  free(err);
  err = NULL;
  /* a run-time error while loading: a typo in a controller field */
  o.script = script("typo.lua",
                    "local klua = require('klua')\n"
                    "klua.controller({ name = 'x',\n"
                    "  watch = { api_version = 'v1', kind = 'ConfigMap' },\n"
                    "  reconcil = function() end })\n");
  CHECK(kl_vm_new(&o, &vm, &err) == KL_ELUA);
  CHECK(err && strstr(err, "typo.lua:2:"));
  CHECK(err && strstr(err, "unknown field 'reconcil'"));
  free(err);
  err = NULL;
  o.script = "/nonexistent/dir/x.lua";
  CHECK(kl_vm_new(&o, &vm, &err) == KL_ELUA);
  CHECK(err && strstr(err, "/nonexistent/dir/x.lua"));
  free(err);
}

TEST(results) {
  kl_vm *vm = load("results.lua",
                   "rec(function(req)\n"
                   "  if req.name == 'none' then return end\n"
                   "  if req.name == 'requeue' then return klua.requeue end\n"
                   "  if req.name == 'after' then return klua.requeue_after(2.5) end\n"
                   "  if req.name == 'boom' then error('kaboom ' .. req.key) end\n"
                   "  if req.name == 'garbage' then return { foo = 1 } end\n"
                   "  if req.name == 'str' then return 'yes' end\n"
                   "  if req.name == 'errobj' then error(setmetatable({}, { __tostring = function() return 'custom error' end })) end\n"
                   "  if req.name == 'req' then\n"
                   "    assert(req.namespace == 'ns1' and req.key == 'ns1/req')\n"
                   "    return end\n"
                   "  if req.name == 'cluster' then\n"
                   "    assert(req.namespace == nil and req.key == 'cluster')\n"
                   "    return end\n"
                   "  error('unexpected ' .. req.key)\n"
                   "end)\n",
                   false, NULL, NULL);
  CHECK(vm != NULL);
  if (!vm) return;
  CHECK(kl_vm_ncontrollers(vm) == 1);
  kl_result r;
  kl_vm_reconcile(vm, 1, "ns/none", 0, &r);
  CHECK(r.out == KL_OUT_DONE && r.message == NULL);
  kl_vm_reconcile(vm, 1, "ns/requeue", 0, &r);
  CHECK(r.out == KL_OUT_REQUEUE);
  kl_vm_reconcile(vm, 1, "ns/after", 0, &r);
  CHECK(r.out == KL_OUT_AFTER && r.after == 2.5);
  kl_vm_reconcile(vm, 1, "ns/boom", 0, &r);
  CHECK(r.out == KL_OUT_ERROR);
  CHECK(r.message && strstr(r.message, "kaboom ns/boom"));
  CHECK(r.message && strstr(r.message, "results.lua:"));
  CHECK(r.message && strstr(r.message, "stack traceback"));
  free(r.message);
  kl_vm_reconcile(vm, 1, "ns/garbage", 0, &r);
  CHECK(r.out == KL_OUT_ERROR);
  CHECK(r.message && strstr(r.message, "reconcile returned a table"));
  free(r.message);
  kl_vm_reconcile(vm, 1, "ns/str", 0, &r);
  CHECK(r.out == KL_OUT_ERROR && r.message && strstr(r.message, "yes"));
  free(r.message);
  kl_vm_reconcile(vm, 1, "ns/errobj", 0, &r);
  CHECK(r.out == KL_OUT_ERROR && r.message &&
        strstr(r.message, "custom error"));
  free(r.message);
  kl_vm_reconcile(vm, 1, "ns1/req", 0, &r);
  CHECK(r.out == KL_OUT_DONE);
  kl_vm_reconcile(vm, 1, "cluster", 0, &r);
  CHECK(r.out == KL_OUT_DONE);
  CHECK(lua_gettop(kl_vm_state(vm)) == 0); /* nothing left on the stack */
  kl_vm_free(vm);
}

/* A runaway reconcile is aborted and the state works afterwards. */
static void check_runaway(bool jit, const char *loop) {
  kl_watchdog *wd = kl_watchdog_new();
  char body[1024];
  snprintf(body, sizeof body,
           "local n = 0\n"
           "rec(function(req)\n"
           "  if req.name == 'ok' then n = n + 1; return klua.requeue_after(n) end\n"
           "  %s\n"
           "end)\n",
           loop);
  kl_vm *vm = load("runaway.lua", body, jit, wd, NULL);
  CHECK(vm != NULL);
  if (vm) {
    for (int round = 0; round < 2; round++) {
      kl_result r;
      kl_vm_reconcile(vm, 1, "ns/loop", 0.2, &r);
      CHECK(r.out == KL_OUT_ABORTED);
      CHECK(r.message && strstr(r.message, "budget of 0.2 s exceeded"));
      free(r.message);
      /* the hook is gone: a normal reconcile runs, state kept */
      kl_vm_reconcile(vm, 1, "ns/ok", 0.2, &r);
      CHECK(r.out == KL_OUT_AFTER && r.after == 2 * round + 1);
      /* and a long-enough one is not aborted */
      kl_vm_reconcile(vm, 1, "ns/ok", 0, &r);
      CHECK(r.out == KL_OUT_AFTER);
    }
    kl_vm_free(vm);
  }
  kl_watchdog_free(wd);
}

TEST(budget_aborts_runaway_loops_jit_off) {
  check_runaway(false, "while true do end");
  check_runaway(false, "local i = 0 while true do i = i + 1 end");
  /* pcall inside the script cannot swallow the abort */
  check_runaway(false,
                "while true do pcall(function() while true do end end) end");
  check_runaway(false, "local t = {} for i = 1, 1e12 do t[i % 100] = i end");
}

TEST(budget_aborts_interpreted_loops_jit_on) {
  /* with --jit, loops the JIT does not compile (here: it cannot compile
   * closure creation) stay interruptible; loops compiled into traces,
   * even ones calling C functions, are not (see docs/running.md) */
  check_runaway(true, "while true do local f = function() end end");
}

TEST(cache_backend) {
  kl_store *s = kl_store_new();
  const char *objs[] = {
      "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"namespace\":\"n1\",\"labels\":{\"app\":\"web\"}},\"data\":{\"k\":\"1\"}}",
      "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"b\",\"namespace\":\"n1\",\"labels\":{\"app\":\"db\"}}}",
      "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\",\"namespace\":\"n2\",\"labels\":{\"app\":\"web\"}}}",
  };
  for (size_t i = 0; i < 3; i++) {
    kl_obj *o = NULL;
    CHECK(kl_obj_new(objs[i], strlen(objs[i]), NULL, &o, NULL) == 0);
    kl_store_add(s, o);
    kl_obj_unref(o);
  }
  CHECK(kl_store_add_indexer(s, "app", KL_INDEX_LABEL, "app") == 0);
  kl_hmap caches;
  kl_hmap_init(&caches, KL_HMAP_OWN_KEYS);
  kl_hmap_put(&caches, "v1/ConfigMap|ns=|l=|f=", s);
  kl_rt_env env = {.caches = &caches};
  kl_vm *vm = load(
      "cache.lua",
      "klua.index('v1', 'ConfigMap', 'app', { label = 'app' })\n"
      "rec(function(req)\n"
      "  local c = klua.cache('v1', 'ConfigMap')\n"
      "  local a = c:get('n1', 'a')\n"
      "  assert(a and a.data.k == '1', 'get')\n"
      "  assert(c:get('n1', 'zzz') == nil, 'get missing')\n"
      "  assert(#c:list() == 3, 'list all')\n"
      "  local web = c:list({ label_selector = 'app=web' })\n"
      "  assert(#web == 2 and web[1].metadata.name == 'a' and web[2].metadata.name == 'c', 'list selector')\n"
      "  assert(#c:list({ namespace = 'n1', label_selector = { app = 'web' } }) == 1, 'list ns+sel')\n"
      "  assert(#c:list({ namespace = 'n3' }) == 0, 'list empty ns')\n"
      "  assert(#c:by_index('app', 'db') == 1, 'by_index')\n"
      "  local v = c:index_values('app')\n"
      "  assert(#v == 2 and v[1] == 'db' and v[2] == 'web', 'index_values')\n"
      "  local ok, err = klua.create({ apiVersion = 'v1', kind = 'ConfigMap', metadata = { name = 'x' } })\n"
      "  assert(ok == nil and tostring(err):find('no API server'), 'create without server')\n"
      "  klua.log.info('cache test done', { n = 3, tbl = { a = 1 } })\n"
      "end)\n",
      false, NULL, &env);
  CHECK(vm != NULL);
  if (vm) {
    kl_result r;
    kl_vm_reconcile(vm, 1, "n1/a", 0, &r);
    if (r.message) printf("  %s\n", r.message);
    CHECK(r.out == KL_OUT_DONE);
    free(r.message);
    kl_vm_free(vm);
  }
  kl_hmap_free(&caches);
  kl_store_unref(s);
}

TEST(states_are_independent) {
  kl_vm *a = load("indep.lua",
                  "count = (count or 0)\n"
                  "rec(function() count = count + 1; return klua.requeue_after(count) end)\n",
                  false, NULL, NULL);
  kl_vm *b = load("indep.lua",
                  "count = (count or 0)\n"
                  "rec(function() count = count + 1; return klua.requeue_after(count) end)\n",
                  false, NULL, NULL);
  CHECK(a && b);
  if (a && b) {
    kl_result r;
    kl_vm_reconcile(a, 1, "x", 0, &r);
    kl_vm_reconcile(a, 1, "x", 0, &r);
    CHECK(r.after == 2);
    kl_vm_reconcile(b, 1, "x", 0, &r);
    CHECK(r.after == 1);
  }
  kl_vm_free(a);
  kl_vm_free(b);
}


/* The whole manager against an in-process API server: informers, worker
 * and hooks threads, owned objects, map functions, a Lua index, writes,
 * reload, and a clean stop (ASan/LSan check every allocation). */
static bool wait_for(kl_apiserver *srv, const char *ns, const char *name) {
  kl_as_resource *res = kl_as_find(srv, "", "v1", "configmaps");
  for (int i = 0; i < 200; i++) {
    kl_as_result r = KL_AS_RESULT_INIT;
    kl_as_opts o = {0};
    kl_as_get(srv, res, ns, name, NULL, &o, &r);
    int code = r.code;
    kl_as_result_free(&r);
    if (code == 200) return true;
    usleep(25000);
  }
  return false;
}

static void put_cm(kl_apiserver *srv, const char *ns, const char *json) {
  kl_as_resource *res = kl_as_find(srv, "", "v1", "configmaps");
  cJSON *body = cJSON_Parse(json);
  kl_as_result r = KL_AS_RESULT_INIT;
  kl_as_opts o = {0};
  kl_as_create(srv, res, ns, body, &o, &r);
  if (r.code != 201) printf("  create failed: %d %s\n", r.code, r.body.data);
  kl_as_result_free(&r);
  cJSON_Delete(body);
}

TEST(manager_end_to_end) {
  kl_apiserver_opts so = {.listen = "127.0.0.1:0"};
  kl_apiserver *srv = NULL;
  char *err = NULL;
  CHECK(kl_apiserver_new(&so, &srv, &err) == 0);
  CHECK(kl_apiserver_start(srv, &err) == 0);
  char kcpath[600];
  snprintf(kcpath, sizeof kcpath, "%s/kubeconfig", tmpdir);
  FILE *f = fopen(kcpath, "w");
  fprintf(f, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
             "    server: %s\ncontexts:\n- name: c\n  context:\n    cluster: c\n"
             "    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n",
          kl_apiserver_url(srv));
  fclose(f);
  kl_kubeconfig_opts ko = {.path = kcpath};
  kl_kubeconfig *kc = NULL;
  CHECK(kl_kubeconfig_load(&ko, &kc, &err) == 0);
  kl_rest *rest = NULL;
  CHECK(kl_rest_new(kc, NULL, &rest, &err) == 0);
  kl_discovery *disc = kl_discovery_new(rest, 0);
  const char *src =
      "local klua = require('klua')\n"
      "klua.index('v1', 'ConfigMap', 'by_color', function(o) return o.data and o.data.color end)\n"
      "klua.controller({ name = 'parent',\n"
      "  watch = { api_version = 'v1', kind = 'ConfigMap', namespace = 'default', label_selector = 'role=parent' },\n"
      "  owns = { { api_version = 'v1', kind = 'ConfigMap', namespace = 'default', label_selector = 'role=child' } },\n"
      "  watches = { { api_version = 'v1', kind = 'Secret', namespace = 'default',\n"
      "                map = function(s) return { 'default/' .. s.metadata.name } end } },\n"
      "  reconcile = function(req)\n"
      "    local p = klua.cache('v1', 'ConfigMap', { namespace = 'default', label_selector = 'role=parent' }):get(req.namespace, req.name)\n"
      "    local name = req.name .. (p and '-child' or '-mapped')\n"
      "    local child = { apiVersion = 'v1', kind = 'ConfigMap', metadata = { name = name, namespace = 'default', labels = { role = 'child' } } }\n"
      "    if p then klua.meta.set_controller_reference(p, child) end\n"
      "    local _, e = klua.create(child)\n"
      "    if e and not klua.is_already_exists(e) then error(tostring(e)) end\n"
      "  end,\n"
      "  on_add = function(o) klua.log.debug('added', { name = o.metadata.name }) end,\n"
      "  on_state = function(all) klua.log.debug('state', { n = #all }) end,\n"
      "})\n";
  kl_ctl_opts co = {.script = script("manager.lua", src), .lua_dir = lua_dir,
                    .rest = rest, .disc = disc, .reload = true,
                    .shutdown_timeout = 5, .sync_timeout = 10};
  kl_ctl *ctl = NULL;
  int rc = kl_ctl_new(&co, &ctl, &err);
  if (rc) printf("  %s\n", err);
  CHECK(rc == 0);
  if (ctl) {
    rc = kl_ctl_start(ctl, &err);
    if (rc) printf("  %s\n", err);
    CHECK(rc == 0);
    put_cm(srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"p1\",\"labels\":{\"role\":\"parent\"}},\"data\":{\"color\":\"red\"}}");
    CHECK(wait_for(srv, "default", "p1-child"));
    /* deleting the owned child enqueues its owner, which re-creates it */
    kl_as_resource *cms = kl_as_find(srv, "", "v1", "configmaps");
    kl_as_result dr = KL_AS_RESULT_INIT;
    kl_as_opts dopts = {0};
    kl_as_delete(srv, cms, "default", "p1-child", NULL, &dopts, &dr);
    CHECK(dr.code == 200);
    kl_as_result_free(&dr);
    CHECK(wait_for(srv, "default", "p1-child"));
    /* a Secret mapped to a request */
    kl_as_resource *sec = kl_as_find(srv, "", "v1", "secrets");
    cJSON *body = cJSON_Parse("{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"s1\"}}");
    kl_as_result r = KL_AS_RESULT_INIT;
    kl_as_opts o = {0};
    kl_as_create(srv, sec, "default", body, &o, &r);
    kl_as_result_free(&r);
    cJSON_Delete(body);
    CHECK(wait_for(srv, "default", "s1-mapped"));
    /* reload with a different script body: kept informers, new version */
    sleep(1);
    kl_buf b = KL_BUF_INIT;
    kl_buf_adds(&b, src);
    kl_buf_adds(&b, "-- v2\n");
    script("manager.lua", b.data);
    kl_buf_free(&b);
    CHECK(kl_ctl_poll(ctl) == 1);
    put_cm(srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"p2\",\"labels\":{\"role\":\"parent\"}}}");
    CHECK(wait_for(srv, "default", "p2-child"));
    /* a broken version keeps the running one */
    script("manager.lua", "this is not lua");
    CHECK(kl_ctl_poll(ctl) < 0);
    put_cm(srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"p3\",\"labels\":{\"role\":\"parent\"}}}");
    CHECK(wait_for(srv, "default", "p3-child"));
    kl_ctl_stats st;
    kl_ctl_get_stats(ctl, &st);
    CHECK(st.reloads == 1 && st.reload_failures == 1);
    CHECK(st.reconciles >= 3 && st.errors == 0);
    CHECK(kl_ctl_stop(ctl) == 0);
    kl_ctl_free(ctl);
  }
  free(err);
  kl_discovery_free(disc);
  kl_rest_free(rest);
  kl_kubeconfig_free(kc);
  kl_apiserver_free(srv);
}

int main(void) {
  alarm(120); /* a budget that fails to abort must not hang the suite */
  const char *root = getenv("KLUA_ROOT");
  snprintf(lua_dir, sizeof lua_dir, "%s/lua", root ? root : ".");
  snprintf(tmpdir, sizeof tmpdir, "/tmp/klua-test-controller-XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  RUN(load_errors_name_file_and_line);
  RUN(results);
  RUN(budget_aborts_runaway_loops_jit_off);
  RUN(budget_aborts_interpreted_loops_jit_on);
  RUN(cache_backend);
  RUN(states_are_independent);
  RUN(manager_end_to_end);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) printf("  could not remove %s\n", tmpdir);
  return ctest_summary();
}
