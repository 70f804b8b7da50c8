/* test_controller.c: the worker side of `klua run` without a server: a
 * script loaded into a kl_vm, reconcile results, errors, the budget that
 * aborts runaway loops (JIT off, and JIT on for loops the JIT does not
 * compile), and the C cache backend over a kl_store. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apiserver.h"
#include "controller.h"
#include "informer.h"
#include "metrics.h"
#include "workqueue.h"
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


/* How long a wait for something the manager does may take: generous, since
 * TSan on a loaded CI machine makes seconds of what takes milliseconds
 * here; a wait that ends early costs nothing. */
#define WAIT_S 30.0

/* The whole manager against an in-process API server: informers, worker
 * and hooks threads, owned objects, map functions, a Lua index, writes,
 * reload, and a clean stop (ASan/LSan check every allocation). */
static bool wait_for(kl_apiserver *srv, const char *ns, const char *name) {
  kl_as_resource *res = kl_as_find(srv, "", "v1", "configmaps");
  for (double end = kl_now() + WAIT_S; kl_now() < end;) {
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
    kl_metric_series *ok_reloads = kl_metric_withv(
        kl_std_metrics_get()->reloads_total, "success");
    kl_metric_series *bad_reloads = kl_metric_withv(
        kl_std_metrics_get()->reloads_total, "failure");
    double ok0 = kl_metric_series_value(ok_reloads);
    double bad0 = kl_metric_series_value(bad_reloads);
    CHECK(kl_ctl_poll(ctl) == 1);
    CHECK(kl_metric_series_value(ok_reloads) == ok0 + 1);
    put_cm(srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"p2\",\"labels\":{\"role\":\"parent\"}}}");
    CHECK(wait_for(srv, "default", "p2-child"));
    /* a broken version keeps the running one */
    script("manager.lua", "this is not lua");
    CHECK(kl_ctl_poll(ctl) < 0);
    CHECK(kl_metric_series_value(bad_reloads) == bad0 + 1);
    CHECK(kl_metric_series_value(ok_reloads) == ok0 + 1);
    put_cm(srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"p3\",\"labels\":{\"role\":\"parent\"}}}");
    CHECK(wait_for(srv, "default", "p3-child"));
    kl_ctl_stats st;
    kl_ctl_get_stats(ctl, &st);
    CHECK(st.reloads == 1 && st.reload_failures == 1);
    CHECK(st.reconciles >= 3 && st.errors == 0);
    /* the queue's metrics: every reconciled key was timed in the queue */
    const kl_std_metrics *sm = kl_std_metrics_get();
    CHECK(kl_metric_series_count(kl_metric_withv(
              sm->wq_queue_duration_seconds, "parent")) >= st.reconciles);
    CHECK(kl_metric_series_value(kl_metric_withv(
              sm->max_concurrent_reconciles, "parent")) == 1);
    CHECK(kl_ctl_stop(ctl) == 0);
    kl_ctl_free(ctl);
  }
  free(err);
  kl_discovery_free(disc);
  kl_rest_free(rest);
  kl_kubeconfig_free(kc);
  kl_apiserver_free(srv);
}

/* ---- a server for the manager tests ---- */

typedef struct fixture {
  kl_apiserver *srv;
  kl_kubeconfig *kc;
  kl_rest *rest;
  kl_discovery *disc;
} fixture;

static bool fx_up(fixture *fx) {
  memset(fx, 0, sizeof *fx);
  kl_apiserver_opts so = {.listen = "127.0.0.1:0"};
  char *err = NULL;
  if (kl_apiserver_new(&so, &fx->srv, &err) != 0 ||
      kl_apiserver_start(fx->srv, &err) != 0) {
    printf("  server: %s\n", err ? err : "?");
    free(err);
    return false;
  }
  char kcpath[600];
  snprintf(kcpath, sizeof kcpath, "%s/kubeconfig-fx", tmpdir);
  FILE *f = fopen(kcpath, "w");
  fprintf(f, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
             "    server: %s\ncontexts:\n- name: c\n  context:\n    cluster: c\n"
             "    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n",
          kl_apiserver_url(fx->srv));
  fclose(f);
  kl_kubeconfig_opts ko = {.path = kcpath};
  if (kl_kubeconfig_load(&ko, &fx->kc, &err) != 0 ||
      kl_rest_new(fx->kc, NULL, &fx->rest, &err) != 0) {
    printf("  client: %s\n", err ? err : "?");
    free(err);
    return false;
  }
  fx->disc = kl_discovery_new(fx->rest, 0);
  return true;
}

static void fx_down(fixture *fx) {
  kl_discovery_free(fx->disc);
  kl_rest_free(fx->rest);
  kl_kubeconfig_free(fx->kc);
  kl_apiserver_free(fx->srv);
}

static kl_ctl *ctl_up(fixture *fx, kl_ctl_opts *co, bool start) {
  co->lua_dir = lua_dir;
  co->rest = fx->rest;
  co->disc = fx->disc;
  if (!co->shutdown_timeout) co->shutdown_timeout = 5;
  kl_ctl *ctl = NULL;
  char *err = NULL;
  int rc = kl_ctl_new(co, &ctl, &err);
  if (rc == 0 && start) {
    rc = kl_ctl_start(ctl, &err);
    if (rc) {
      kl_ctl_free(ctl);
      ctl = NULL;
    }
  }
  if (rc) printf("  ctl: %s\n", err ? err : "?");
  free(err);
  return ctl;
}

static void waited_cb(void *ud, double waited) {
  double *w = ud;
  w[0] += 1;
  w[1] = waited;
}

TEST(workqueue_reports_queue_time) {
  double seen[2] = {0, 0};
  kl_wq_opts o = {.on_get = waited_cb, .on_get_ud = seen};
  kl_wq *q = kl_wq_new(&o);
  kl_wq_add(q, "a");
  usleep(60000);
  char *it = NULL;
  CHECK(kl_wq_get(q, 1, &it) == 0);
  CHECK(seen[0] == 1);
  CHECK(seen[1] >= 0.05 && seen[1] < 5);
  /* re-added while processing: the wait counts from that add */
  kl_wq_add(q, "a");
  kl_wq_done(q, it);
  free(it);
  CHECK(kl_wq_get(q, 1, &it) == 0);
  CHECK(seen[0] == 2);
  kl_wq_done(q, it);
  free(it);
  /* a timeout hands nothing out and reports nothing */
  CHECK(kl_wq_get(q, 0.01, &it) == KL_ETIMEDOUT);
  CHECK(seen[0] == 2);
  kl_wq_shutdown(q);
  kl_wq_free(q);
}

/* Reload sees a file replaced by one of the same size and modification
 * time (a new inode), as `cp -p`, `touch -r` or a rename do. */
TEST(reload_sees_replaced_file) {
  fixture fx;
  if (!fx_up(&fx)) {
    CHECK(0);
    return;
  }
  const char *a =
      "local klua = require('klua')\n"
      "klua.controller({ name = 'r', watch = { api_version = 'v1', kind = 'ConfigMap', namespace = 'default' },\n"
      "  reconcile = function() return 'A' and nil end })\n";
  char b[512];
  snprintf(b, sizeof b, "%s", a);
  *strchr(b, 'A') = 'B'; /* same size */
  const char *path = script("replaced.lua", a);
  char path_copy[512];
  snprintf(path_copy, sizeof path_copy, "%s", path);
  struct stat st0;
  stat(path_copy, &st0);
  kl_ctl_opts co = {.script = path_copy, .reload = true};
  kl_ctl *ctl = ctl_up(&fx, &co, true);
  CHECK(ctl != NULL);
  if (ctl) {
    CHECK(kl_ctl_poll(ctl) == 0);
    /* write the new version beside it with the old mtime, rename over */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.new", path_copy);
    FILE *f = fopen(tmp, "w");
    fputs(b, f);
    fclose(f);
    struct timespec ts[2] = {st0.st_atim, st0.st_mtim};
    CHECK(utimensat(AT_FDCWD, tmp, ts, 0) == 0);
    CHECK(rename(tmp, path_copy) == 0);
    struct stat st1;
    stat(path_copy, &st1);
    CHECK(st1.st_size == st0.st_size);
    CHECK(st1.st_mtim.tv_sec == st0.st_mtim.tv_sec &&
          st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec);
    CHECK(st1.st_ino != st0.st_ino);
    CHECK(kl_ctl_poll(ctl) == 1);
    CHECK(kl_ctl_poll(ctl) == 0);
    kl_ctl_free(ctl);
  }
  fx_down(&fx);
}

/* The liveness check fails while a reconcile is stuck past its budget (in
 * C code here, where the budget cannot interrupt it) and passes again
 * once it ended. The call is stuck from 0.3 s to 4 s after it starts: a
 * window wide enough for a poll on a loaded machine to fall into. */
TEST(workers_check_reports_stuck_calls) {
  fixture fx;
  if (!fx_up(&fx)) {
    CHECK(0);
    return;
  }
  const char *src =
      "local klua = require('klua')\n"
      "klua.controller({ name = 'sleepy', watch = { api_version = 'v1', kind = 'ConfigMap', namespace = 'default' },\n"
      "  reconcile = function(req) if req.name == 'slow' then os.execute('sleep 4') end end })\n";
  kl_ctl_opts co = {.script = script("stuck.lua", src), .budget = 0.2,
                    .stuck_after = 0.3};
  kl_ctl *ctl = ctl_up(&fx, &co, true);
  CHECK(ctl != NULL);
  if (ctl) {
    char *reason = NULL;
    CHECK(kl_ctl_check_workers(ctl, &reason) == 0 && reason == NULL);
    put_cm(fx.srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"slow\"}}");
    int rc = 0;
    for (double end_ = kl_now() + WAIT_S; kl_now() < end_ && rc == 0;) {
      usleep(20000);
      rc = kl_ctl_check_workers(ctl, &reason);
    }
    CHECK(rc == KL_ETIMEDOUT);
    CHECK(reason && strstr(reason, "reconcile of sleepy key default/slow"));
    CHECK(reason && strstr(reason, "budget 0.2 s"));
    free(reason);
    reason = NULL;
    for (double end_ = kl_now() + WAIT_S; kl_now() < end_ && rc != 0;) {
      usleep(20000);
      free(reason);
      reason = NULL;
      rc = kl_ctl_check_workers(ctl, &reason);
    }
    CHECK(rc == 0); /* the call ended (aborted at its return to Lua) */
    free(reason);
    kl_ctl_free(ctl);
  }
  fx_down(&fx);
}

typedef struct start_arg {
  kl_ctl *ctl;
  int rc;
  char *err;
} start_arg;

static void *start_thread(void *ud) {
  start_arg *a = ud;
  a->rc = kl_ctl_start(a->ctl, &a->err);
  return NULL;
}

static const char widget_crd[] =
    "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"CustomResourceDefinition\","
    "\"metadata\":{\"name\":\"widgets.test.klua.dev\"},\"spec\":{\"group\":\"test.klua.dev\","
    "\"scope\":\"Namespaced\",\"names\":{\"plural\":\"widgets\",\"singular\":\"widget\","
    "\"kind\":\"Widget\",\"listKind\":\"WidgetList\"},\"versions\":[{\"name\":\"v1\","
    "\"served\":true,\"storage\":true,\"schema\":{\"openAPIV3Schema\":{\"type\":\"object\","
    "\"x-kubernetes-preserve-unknown-fields\":true}}}]}}";

/* A watched kind that is not served yet: with a sync timeout start gives
 * up naming it; without one it waits until the CRD is applied, then
 * reconciles. */
TEST(waits_for_a_crd) {
  fixture fx;
  if (!fx_up(&fx)) {
    CHECK(0);
    return;
  }
  const char *src =
      "local klua = require('klua')\n"
      "klua.controller({ name = 'widgets', watch = { api_version = 'test.klua.dev/v1', kind = 'Widget' },\n"
      "  reconcile = function(req)\n"
      "    local _, e = klua.create({ apiVersion = 'v1', kind = 'ConfigMap', metadata = { name = req.name .. '-seen', namespace = req.namespace } })\n"
      "    if e and not klua.is_already_exists(e) then error(tostring(e)) end\n"
      "  end })\n";
  kl_ctl_opts co = {.script = script("widgets.lua", src), .sync_timeout = 0.5};
  kl_ctl *ctl = ctl_up(&fx, &co, false);
  CHECK(ctl != NULL);
  if (ctl) {
    char *err = NULL;
    CHECK(kl_ctl_start(ctl, &err) != 0);
    CHECK(err && strstr(err, "test.klua.dev/v1 kind Widget"));
    free(err);
    kl_ctl_free(ctl);
  }
  co.sync_timeout = 0;
  ctl = ctl_up(&fx, &co, false);
  CHECK(ctl != NULL);
  if (ctl) {
    start_arg a = {.ctl = ctl};
    pthread_t th;
    pthread_create(&th, NULL, start_thread, &a);
    usleep(400000); /* it is waiting: applying the CRD ends the wait */
    kl_as_resource *crds =
        kl_as_find(fx.srv, "apiextensions.k8s.io", "v1",
                   "customresourcedefinitions");
    CHECK(crds != NULL);
    cJSON *body = cJSON_Parse(widget_crd);
    kl_as_result r = KL_AS_RESULT_INIT;
    kl_as_opts o = {0};
    if (crds) kl_as_create(fx.srv, crds, "", body, &o, &r);
    CHECK(r.code == 201);
    kl_as_result_free(&r);
    cJSON_Delete(body);
    pthread_join(th, NULL);
    if (a.rc) printf("  start: %s\n", a.err);
    CHECK(a.rc == 0);
    free(a.err);
    kl_as_resource *w = kl_as_find(fx.srv, "test.klua.dev", "v1", "widgets");
    CHECK(w != NULL);
    if (w) {
      body = cJSON_Parse("{\"apiVersion\":\"test.klua.dev/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":\"w1\"}}");
      r = (kl_as_result)KL_AS_RESULT_INIT;
      kl_as_create(fx.srv, w, "default", body, &o, &r);
      CHECK(r.code == 201);
      kl_as_result_free(&r);
      cJSON_Delete(body);
      CHECK(wait_for(fx.srv, "default", "w1-seen"));
    }
    kl_ctl_free(ctl);
  }
  fx_down(&fx);
}

/* Caches whose ids differ but that list the same collection share one
 * informer of the factory; reflector settings reach it; a reload that
 * drops them stops it. */
TEST(informers_shared_through_the_factory) {
  fixture fx;
  if (!fx_up(&fx)) {
    CHECK(0);
    return;
  }
  const char *two =
      "local klua = require('klua')\n"
      "klua.controller({ name = 'a', watch = { api_version = 'v1', kind = 'ConfigMap', namespace = 'default' },\n"
      "  reconcile = function() end })\n"
      "klua.controller({ name = 'b', watch = { api_version = 'v1', kind = 'ConfigMap' },\n"
      "  reconcile = function() end })\n";
  const char *none =
      "local klua = require('klua')\n"
      "klua.controller({ name = 'c', watch = { api_version = 'v1', kind = 'Secret', namespace = 'default' },\n"
      "  reconcile = function() end })\n";
  kl_informer_factory *f = kl_informer_factory_new(fx.rest);
  const char *path = script("shared.lua", two);
  char spath[512];
  snprintf(spath, sizeof spath, "%s", path);
  kl_ctl_opts co = {.script = spath, .namespace = "default", .reload = true,
                    .factory = f};
  co.reflector.watch_list = true;
  co.reflector.page_size = 7;
  kl_ctl *ctl = ctl_up(&fx, &co, true);
  CHECK(ctl != NULL);
  if (ctl) {
    CHECK(kl_informer_factory_len(f) == 1); /* two cache ids, one informer */
    kl_informer_opts io = {0};
    io.reflector.path = "/api/v1/namespaces/default/configmaps";
    kl_informer *inf = NULL;
    char *err = NULL;
    CHECK(kl_informer_factory_get(f, &io, &inf, &err) == 0);
    CHECK(kl_informer_factory_len(f) == 1);
    if (inf) {
      kl_informer_stats st;
      kl_informer_stats_get(inf, &st);
      CHECK(st.reflector.watch_list_used == 1); /* streaming list */
      CHECK(!kl_informer_factory_release(f, inf)); /* the manager uses it */
    }
    sleep(1);
    script("shared.lua", none);
    CHECK(kl_ctl_poll(ctl) == 1);
    CHECK(kl_informer_factory_len(f) == 1); /* the Secret informer only */
    io.reflector.path = "/api/v1/namespaces/default/secrets";
    CHECK(kl_informer_factory_get(f, &io, &inf, &err) == 0);
    if (inf) CHECK(!kl_informer_factory_release(f, inf));
    CHECK(kl_informer_factory_len(f) == 1);
    kl_ctl_free(ctl);
    CHECK(kl_informer_factory_len(f) == 0); /* released at the end */
  }
  kl_informer_factory_free(f);
  fx_down(&fx);
}

/* ---- review regressions ---- */

static void update_cm(kl_apiserver *srv, const char *ns, const char *json) {
  kl_as_resource *res = kl_as_find(srv, "", "v1", "configmaps");
  cJSON *body = cJSON_Parse(json);
  kl_as_result r = KL_AS_RESULT_INIT;
  kl_as_opts o = {0};
  cJSON *md = cJSON_GetObjectItem(body, "metadata");
  kl_as_update(srv, res, ns, cJSON_GetObjectItem(md, "name")->valuestring,
               NULL, body, &o, &r);
  if (r.code != 200) printf("  update failed: %d %s\n", r.code, r.body.data);
  kl_as_result_free(&r);
  cJSON_Delete(body);
}

static double script_counter(const char *name) {
  kl_metric *m = NULL;
  if (kl_metrics_counter(kl_metrics_default(), name, "", NULL, &m, NULL) != 0)
    return -1;
  return kl_metric_series_value(kl_metric_with(m, NULL, 0));
}

/* Converting an object for a hook can raise (read-only debug mode finds a
 * table the script changed): that is the hook's error, logged, and the
 * hooks thread goes on; it used to be an error outside any pcall, which
 * ends the whole process. */
TEST(hook_argument_conversion_errors_are_hook_errors) {
  fixture fx;
  if (!fx_up(&fx)) {
    CHECK(0);
    return;
  }
  const char *src =
      "local klua = require('klua')\n"
      "require('klua_core').set_readonly_debug(true)\n"
      "local calls = assert(klua.metrics.counter('review_hook_calls_total', 'test'))\n"
      "klua.controller({ name = 'ro', watch = { api_version = 'v1', kind = 'ConfigMap', namespace = 'default' },\n"
      "  on_update = function(old, new) calls:inc(); new.data.v = 'changed by the hook' end })\n";
  kl_ctl_opts co = {.script = script("ro_hooks.lua", src)};
  kl_ctl *ctl = ctl_up(&fx, &co, true);
  CHECK(ctl != NULL);
  if (ctl) {
    put_cm(fx.srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"ro\"},\"data\":{\"v\":\"0\"}}");
    double base = script_counter("review_hook_calls_total");
    for (int i = 1; i <= 3; i++) {
      char body[200];
      snprintf(body, sizeof body, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"ro\"},\"data\":{\"v\":\"%d\"}}", i);
      update_cm(fx.srv, "default", body);
      usleep(150000);
    }
    /* update 1 runs the hook (which changes its object); update 2 fails
     * converting that changed version; update 3 runs the hook again */
    double n = 0;
    for (double end_ = kl_now() + WAIT_S; kl_now() < end_ && n < base + 2;) {
      usleep(20000);
      n = script_counter("review_hook_calls_total");
    }
    CHECK(n >= base + 2);
    kl_ctl_free(ctl);
  }
  fx_down(&fx);
}

/* Cache reads that raise while converting (read-only debug mode) release
 * the objects they took from the store (LSan checks at exit). */
TEST(cache_reads_release_objects_when_conversion_raises) {
  kl_store *s = kl_store_new();
  const char *js = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"namespace\":\"n1\",\"labels\":{\"app\":\"web\"}},\"data\":{\"k\":\"1\"}}";
  kl_obj *o = NULL;
  CHECK(kl_obj_new(js, strlen(js), NULL, &o, NULL) == 0);
  kl_store_add(s, o);
  kl_obj_unref(o);
  CHECK(kl_store_add_indexer(s, "app", KL_INDEX_LABEL, "app") == 0);
  kl_hmap caches;
  kl_hmap_init(&caches, KL_HMAP_OWN_KEYS);
  kl_hmap_put(&caches, "v1/ConfigMap|ns=|l=|f=", s);
  kl_rt_env env = {.caches = &caches};
  kl_vm *vm = load(
      "ro_cache.lua",
      "require('klua_core').set_readonly_debug(true)\n"
      "klua.index('v1', 'ConfigMap', 'app', { label = 'app' })\n"
      "rec(function(req)\n"
      "  local c = klua.cache('v1', 'ConfigMap')\n"
      "  local a = c:get('n1', 'a')\n"
      "  a.data.k = 'changed'\n"
      "  local ok, err = pcall(c.get, c, 'n1', 'a')\n"
      "  assert(not ok and tostring(err):find('was modified in Lua'), 'get: ' .. tostring(err))\n"
      "  a = c:get('n1', 'a')\n"
      "  a.data.k = 'changed'\n"
      "  ok, err = pcall(c.list, c)\n"
      "  assert(not ok and tostring(err):find('was modified in Lua'), 'list: ' .. tostring(err))\n"
      "  a = c:list()[1]\n"
      "  a.data.k = 'changed'\n"
      "  ok, err = pcall(c.by_index, c, 'app', 'web')\n"
      "  assert(not ok and tostring(err):find('was modified in Lua'), 'by_index: ' .. tostring(err))\n"
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

/* backend.request called with fewer than 7 arguments (klua._backend() is
 * reachable from scripts) must not write past the stack top: that
 * overwrote LuaJIT's shared nil value, and every later read of a missing
 * argument then saw a table. */
TEST(request_with_few_arguments_keeps_the_state_sane) {
  kl_rt_env env = {0};
  kl_vm *vm = load(
      "few_args.lua",
      "rec(function(req)\n"
      "  local b = klua._backend()\n"
      "  local r, err = b.request('get', 'v1', 'ConfigMap', 'default', 'x')\n"
      "  assert(r == nil and tostring(err and err.message or err):find('no API server'), 'first: ' .. tostring(err))\n"
      "  r, err = b.request('get', 'v1', 'ConfigMap')\n"
      "  assert(r == nil and tostring(err and err.message or err):find('no API server'), 'second: ' .. tostring(err))\n"
      "end)\n",
      false, NULL, &env);
  CHECK(vm != NULL);
  if (vm) {
    kl_result r;
    kl_vm_reconcile(vm, 1, "default/x", 0, &r);
    if (r.message) printf("  %s\n", r.message);
    CHECK(r.out == KL_OUT_DONE);
    free(r.message);
    kl_vm_free(vm);
  }
}

/* kl_ctl_halt (a lost leader election): the running reconcile is aborted
 * at once, even a loop far inside its budget, and no worker starts
 * another; kl_ctl_stop then has nothing to wait for. */
TEST(halt_aborts_running_reconciles_and_starts_no_more) {
  fixture fx;
  if (!fx_up(&fx)) {
    CHECK(0);
    return;
  }
  const char *src =
      "local klua = require('klua')\n"
      "local calls = assert(klua.metrics.counter('review_halt_reconciles_total', 'test'))\n"
      "klua.controller({ name = 'halting', workers = 2,\n"
      "  watch = { api_version = 'v1', kind = 'ConfigMap', namespace = 'default' },\n"
      "  reconcile = function(req) calls:inc(); if req.name == 'spin' then while true do end end end })\n";
  kl_ctl_opts co = {.script = script("halt.lua", src), .budget = 100,
                    .shutdown_timeout = 3};
  kl_ctl *ctl = ctl_up(&fx, &co, true);
  CHECK(ctl != NULL);
  if (ctl) {
    double base = script_counter("review_halt_reconciles_total");
    put_cm(fx.srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"spin\"}}");
    double n = base;
    for (double end_ = kl_now() + WAIT_S; kl_now() < end_ && n < base + 1;) {
      usleep(20000);
      n = script_counter("review_halt_reconciles_total");
    }
    CHECK(n == base + 1);
    kl_ctl_halt(ctl, "leader election lost (test)");
    put_cm(fx.srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"later\"}}");
    kl_ctl_stats st = {0};
    for (double end_ = kl_now() + WAIT_S; kl_now() < end_ && st.aborts == 0;) {
      usleep(20000);
      kl_ctl_get_stats(ctl, &st);
    }
    CHECK(st.aborts == 1);
    usleep(300000); /* time for the idle worker to (wrongly) take 'later' */
    CHECK(script_counter("review_halt_reconciles_total") == base + 1);
    CHECK(kl_ctl_stop(ctl) == 0); /* nothing left running: no abandon */
    kl_ctl_free(ctl);
  }
  fx_down(&fx);
}

static double script_gauge(const char *name) {
  kl_metric *m = NULL;
  if (kl_metrics_gauge(kl_metrics_default(), name, "", NULL, &m, NULL) != 0)
    return -1;
  return kl_metric_series_value(kl_metric_with(m, NULL, 0));
}

/* A reload that fails after its first load (here the new version cannot
 * load in the worker states) leaves the running version's Lua index
 * functions in place: they used to be looked up in the failed version's
 * state from then on, so objects written later got no index values. */
TEST(failed_reload_keeps_the_running_index_functions) {
  fixture fx;
  if (!fx_up(&fx)) {
    CHECK(0);
    return;
  }
  char marker[400];
  snprintf(marker, sizeof marker, "%s/idx_marker", tmpdir);
  unlink(marker);
  const char *v1 =
      "local klua = require('klua')\n"
      "klua.index('v1', 'ConfigMap', 'by_color', function(o) return o.data and o.data.color end)\n"
      "local g = assert(klua.metrics.gauge('review_idx_red', 'test'))\n"
      "klua.controller({ name = 'idx', watch = { api_version = 'v1', kind = 'ConfigMap', namespace = 'default' },\n"
      "  reconcile = function(req) g:set(#klua.cache('v1', 'ConfigMap', { namespace = 'default' }):by_index('by_color', 'red')) end })\n";
  char v2[1200];
  snprintf(v2, sizeof v2,
           "local klua = require('klua')\n"
           "local f = io.open('%s') if f then f:close() error('this version loads only once') end\n"
           "io.open('%s', 'w'):close()\n"
           "klua.index('v1', 'ConfigMap', 'by_shape', function(o) return o.data and o.data.shape end)\n"
           "klua.controller({ name = 'idx', watch = { api_version = 'v1', kind = 'ConfigMap', namespace = 'default' },\n"
           "  reconcile = function(req) end })\n",
           marker, marker);
  char path[512];
  snprintf(path, sizeof path, "%s", script("idx_reload.lua", v1));
  kl_ctl_opts co = {.script = path, .reload = true};
  kl_ctl *ctl = ctl_up(&fx, &co, true);
  CHECK(ctl != NULL);
  if (ctl) {
    put_cm(fx.srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"red1\"},\"data\":{\"color\":\"red\"}}");
    double n = 0;
    for (double end_ = kl_now() + WAIT_S; kl_now() < end_ && n != 1;) {
      usleep(20000);
      n = script_gauge("review_idx_red");
    }
    CHECK(n == 1);
    script("idx_reload.lua", v2);
    CHECK(kl_ctl_poll(ctl) < 0); /* the new version failed: v1 runs on */
    kl_ctl_stats st;
    kl_ctl_get_stats(ctl, &st);
    CHECK(st.reload_failures == 1);
    put_cm(fx.srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"red2\"},\"data\":{\"color\":\"red\"}}");
    for (double end_ = kl_now() + WAIT_S; kl_now() < end_ && n != 2;) {
      usleep(20000);
      n = script_gauge("review_idx_red");
    }
    CHECK(n == 2);
    kl_ctl_free(ctl);
  }
  unlink(marker);
  fx_down(&fx);
}

static double labelled_counter(const char *name, const char *label,
                               const char *value) {
  kl_metric *m = NULL;
  const char *labels[] = {label, NULL};
  if (kl_metrics_counter(kl_metrics_default(), name, "", labels, &m, NULL) != 0)
    return -1;
  const char *v[] = {value};
  return kl_metric_series_value(kl_metric_with(m, v, 1));
}

/* An owned object's controlling owner of a cluster-scoped kind is
 * enqueued by name alone (controller-runtime's EnqueueRequestForOwner asks
 * the owner's scope): "ns1", not "<owned object's namespace>/ns1". */
TEST(cluster_scoped_owner_is_enqueued_without_a_namespace) {
  fixture fx;
  if (!fx_up(&fx)) {
    CHECK(0);
    return;
  }
  kl_as_resource *nsres = kl_as_find(fx.srv, "", "v1", "namespaces");
  cJSON *nsbody = cJSON_Parse("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"owner-ns\"}}");
  kl_as_result r = KL_AS_RESULT_INIT;
  kl_as_opts o = {0};
  kl_as_create(fx.srv, nsres, NULL, nsbody, &o, &r);
  CHECK(r.code == 201);
  kl_as_result_free(&r);
  cJSON_Delete(nsbody);
  const char *src =
      "local klua = require('klua')\n"
      "local keys = assert(klua.metrics.counter('review_owner_keys_total', 'test', { 'key' }))\n"
      "klua.controller({ name = 'ns-owner', watch = { api_version = 'v1', kind = 'Namespace' },\n"
      "  owns = { { api_version = 'v1', kind = 'ConfigMap', namespace = 'default' } },\n"
      "  reconcile = function(req) keys:inc({ key = req.key }) end })\n";
  kl_ctl_opts co = {.script = script("ns_owner.lua", src)};
  kl_ctl *ctl = ctl_up(&fx, &co, true);
  CHECK(ctl != NULL);
  if (ctl) {
    const char *M = "review_owner_keys_total";
    double good = 0, bad = 0;
    for (double end_ = kl_now() + WAIT_S; kl_now() < end_ && good < 1;) {
      usleep(20000);
      good = labelled_counter(M, "key", "owner-ns");
    }
    CHECK(good >= 1);
    put_cm(fx.srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"owned\",\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"name\":\"owner-ns\",\"uid\":\"u1\",\"controller\":true}]}}");
    for (double end_ = kl_now() + WAIT_S;
         kl_now() < end_ && good < 2 && bad < 1;) {
      usleep(20000);
      good = labelled_counter(M, "key", "owner-ns");
      bad = labelled_counter(M, "key", "default/owner-ns");
    }
    CHECK(bad == 0);
    CHECK(good >= 2);
    kl_ctl_free(ctl);
  }
  fx_down(&fx);
}

/* A reload whose new version loads in some worker states but not in all
 * fails as a whole: the states that did load must not reconcile anything
 * (they share the controller's queue with the running version), since the
 * running version stays. */
TEST(failed_reload_runs_no_reconcile_of_the_new_version) {
  fixture fx;
  if (!fx_up(&fx)) {
    CHECK(0);
    return;
  }
  char dir[400];
  snprintf(dir, sizeof dir, "%s/partial", tmpdir);
  mkdir(dir, 0700);
  const char *v1 =
      "local klua = require('klua')\n"
      "local c = assert(klua.metrics.counter('review_partial_v1_total', 'test'))\n"
      "klua.controller({ name = 'partial', workers = 2, watch = { api_version = 'v1', kind = 'ConfigMap', namespace = 'default' },\n"
      "  reconcile = function(req) c:inc(); return klua.requeue_after(0.02) end })\n";
  char v2[1500];
  snprintf(v2, sizeof v2,
           "local klua = require('klua')\n"
           "local function mk(d) local r = os.execute('mkdir %s/' .. d .. ' 2>/dev/null'); return r == 0 or r == true end\n"
           "if not mk('probe') and not mk('w1') then os.execute('sleep 1'); error('this worker state does not load') end\n"
           "local c = assert(klua.metrics.counter('review_partial_v2_total', 'test'))\n"
           "klua.controller({ name = 'partial', workers = 2, watch = { api_version = 'v1', kind = 'ConfigMap', namespace = 'default' },\n"
           "  reconcile = function(req) c:inc(); return klua.requeue_after(0.02) end })\n",
           dir);
  char path[512];
  snprintf(path, sizeof path, "%s", script("partial.lua", v1));
  kl_ctl_opts co = {.script = path, .reload = true};
  kl_ctl *ctl = ctl_up(&fx, &co, true);
  CHECK(ctl != NULL);
  if (ctl) {
    put_cm(fx.srv, "default", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"busy\"}}");
    double n = 0;
    for (double end_ = kl_now() + WAIT_S; kl_now() < end_ && n < 3;) {
      usleep(20000);
      n = script_counter("review_partial_v1_total");
    }
    CHECK(n >= 3); /* the key cycles through the queue */
    script("partial.lua", v2);
    CHECK(kl_ctl_poll(ctl) < 0);
    CHECK(script_counter("review_partial_v2_total") == 0);
    double before = script_counter("review_partial_v1_total");
    for (double end_ = kl_now() + WAIT_S; kl_now() < end_ && n <= before;) {
      usleep(20000);
      n = script_counter("review_partial_v1_total");
    }
    CHECK(n > before); /* the running version goes on */
    kl_ctl_free(ctl);
  }
  char cmd[500];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("  cannot remove %s\n", dir);
  fx_down(&fx);
}

int main(void) {
  alarm(300); /* a budget that fails to abort must not hang the suite */
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
  RUN(workqueue_reports_queue_time);
  RUN(reload_sees_replaced_file);
  RUN(workers_check_reports_stuck_calls);
  RUN(waits_for_a_crd);
  RUN(informers_shared_through_the_factory);
  RUN(hook_argument_conversion_errors_are_hook_errors);
  RUN(cache_reads_release_objects_when_conversion_raises);
  RUN(request_with_few_arguments_keeps_the_state_sane);
  RUN(halt_aborts_running_reconciles_and_starts_no_more);
  RUN(failed_reload_keeps_the_running_index_functions);
  RUN(cluster_scoped_owner_is_enqueued_without_a_namespace);
  RUN(failed_reload_runs_no_reconcile_of_the_new_version);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) printf("  could not remove %s\n", tmpdir);
  return ctest_summary();
}
