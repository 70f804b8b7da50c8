-- End-to-end tests of `klua run`: one `klua serve` (real HTTP), and for each
-- test a `klua run` of a small script written to a temp file; results are
-- checked through the API with curl. Each test uses its own namespace.
-- Environment (set by scripts/run-tests.sh): KLUA_BIN, KLUA_ROOT.
local json = require("klua.json")
local H = dofile((os.getenv("KLUA_ROOT") or ".") .. "/tests/e2e/harness.lua")

local ROOT, KLUA = H.ROOT, H.KLUA
local WAIT = 10 -- seconds any single expectation may take
local q, sh, read, write, sleep, spawn, alive, now =
  H.q, H.sh, H.read, H.write, H.sleep, H.spawn, H.alive, H.now

-- SIGTERM; returns true when the process ended within 10 s.
local function stop(pid) return H.stop(pid, 10) end

local function eventually(fn, what) return H.eventually(fn, what, WAIT) end

local srv = { n = 0 } -- dir, url: the server of this file
local dir, server, kubeconfig

local function request(method, path, body, ctype) return H.request(srv, method, path, body, ctype) end

local function cm_path(ns, name)
  return "/api/v1/namespaces/" .. ns .. "/configmaps" .. (name and ("/" .. name) or "")
end

local function create_cm(ns, name, labels, data)
  local code, body = request("POST", cm_path(ns), {
    apiVersion = "v1", kind = "ConfigMap",
    metadata = { name = name, namespace = ns, labels = labels }, data = data })
  assert(code == 201, "create " .. ns .. "/" .. name .. ": " .. tostring(code) .. " " .. json.encode(body))
end

local function get_cm(ns, name)
  local code, body = request("GET", cm_path(ns, name))
  if code ~= 200 then return nil end
  return body
end

local function counter(ns, name)
  local cm = get_cm(ns, name)
  return cm and cm.data and tonumber(cm.data.n) or 0
end

-- A controller process: writes the script, starts `klua run`.
local Ctl = {}
Ctl.__index = Ctl

local function run(name, source, args)
  local c = setmetatable({}, Ctl)
  c.script = dir .. "/" .. name .. ".lua"
  c.log = dir .. "/" .. name .. ".log"
  write(c.script, source)
  c.pid = spawn("exec " .. q(KLUA) .. " run " .. q(c.script) .. " --kubeconfig " .. q(kubeconfig) ..
    " " .. (args or ""), c.log)
  return c
end

function Ctl:output() return read(self.log) or "" end
function Ctl:stop() return stop(self.pid) end

-- Lua source helpers: a counter ConfigMap bumped through the API.
local PRELUDE = [[
local klua = require("klua")
local function bump(ns, name)
  local cm = klua.get("v1", "ConfigMap", ns, name)
  if not cm then
    cm = assert(klua.create({ apiVersion = "v1", kind = "ConfigMap",
      metadata = { name = name, namespace = ns }, data = { n = "1" } }))
    return 1
  end
  local c = klua.deepcopy(cm)
  local v = tonumber(c.data and c.data.n or "0") + 1
  c.data = { n = tostring(v) }
  assert(klua.update(c))
  return v
end
]]

local function ns(name)
  local code = request("POST", "/api/v1/namespaces",
    { apiVersion = "v1", kind = "Namespace", metadata = { name = name } })
  assert(code == 201 or code == 409, "namespace " .. name .. ": " .. tostring(code))
end

local function http_get(u)
  local p = io.popen("curl -sS --max-time 5 " .. q(u) .. " 2>&1")
  local body = p:read("*a")
  p:close()
  return body
end

-- The value of one series in a Prometheus text exposition (nil if absent).
local function metric(text, series)
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #series + 1) == series .. " " then
      return tonumber(line:sub(#series + 2))
    end
  end
end

describe("klua run", function()
  setup(function()
    dir = H.tmpdir()
    srv.dir = dir
    kubeconfig = dir .. "/kubeconfig"
    server, srv.url = H.serve("--faults on --kubeconfig-out " .. q(kubeconfig), dir .. "/serve.log",
      { kubeconfig = kubeconfig })
    assert(srv.url, "klua serve did not start: " .. (read(dir .. "/serve.log") or ""))
  end)

  teardown(function()
    stop(server)
    H.rmdir(dir)
  end)

  it("reconciles: creates an object, logs JSON lines with controller, key and reconcile id", function()
    ns("t-create")
    local c = run("create", PRELUDE .. [[
klua.controller({
  name = "copier",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "t-create", label_selector = "role=src" },
  reconcile = function(req)
    local src = klua.cache("v1", "ConfigMap"):get(req.namespace, req.name)
    if not src then return end
    klua.log.info("copying", { from = req.name })
    local _, err = klua.create({ apiVersion = "v1", kind = "ConfigMap",
      metadata = { name = req.name .. "-copy", namespace = req.namespace }, data = src.data })
    if err and not klua.is_already_exists(err) then error(tostring(err)) end
  end,
})
]], "--log-format json")
    finally(function() c:stop() end)
    create_cm("t-create", "a", { role = "src" }, { x = "1" })
    local copy = eventually(function() return get_cm("t-create", "a-copy") end, "a-copy")
    assert.same({ x = "1" }, copy.data)
    local line = eventually(function()
      for l in c:output():gmatch("[^\n]+") do
        local v = json.decode(l)
        if v and v.msg == "copying" then return v end
      end
    end, "the JSON log line")
    assert.equal("copier", line.controller)
    assert.equal("t-create/a", line.key)
    assert.equal("a", line.from)
    assert.truthy(tonumber(line.reconcile_id))
    assert.equal("info", line.level)
    assert.truthy(line.ts)
    assert.is_true(c:stop())
  end)

  it("requeue_after runs the reconcile again after the delay", function()
    ns("t-after")
    local c = run("after", PRELUDE .. [[
klua.controller({
  name = "ticker",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "t-after", label_selector = "role=src" },
  reconcile = function(req)
    local v = bump("t-after", "ticks")
    if v < 3 then return klua.requeue_after(0.2) end
  end,
})
]])
    finally(function() c:stop() end)
    create_cm("t-after", "a", { role = "src" })
    eventually(function() return counter("t-after", "ticks") >= 3 end, "3 ticks")
    sleep(0.6)
    assert.equal(3, counter("t-after", "ticks")) -- done: no more requeues
    assert.is_true(c:stop())
  end)

  it("retries a failing reconcile with backoff and logs the error with its key", function()
    ns("t-err")
    local c = run("err", PRELUDE .. [[
klua.controller({
  name = "failer",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "t-err", label_selector = "role=src" },
  reconcile = function(req)
    bump("t-err", "attempts")
    error("boom for " .. req.key)
  end,
})
]])
    finally(function() c:stop() end)
    create_cm("t-err", "a", { role = "src" })
    eventually(function() return counter("t-err", "attempts") >= 4 end, "4 attempts")
    local out = c:output()
    assert.truthy(out:find("boom for t%-err/a"))
    assert.truthy(out:find("stack traceback"))
    assert.truthy(out:find("key=t%-err/a"))
    assert.truthy(out:find("retrying with backoff"))
    assert.is_true(c:stop())
  end)

  it("aborts a reconcile that runs past --budget, logs it and retries", function()
    ns("t-budget")
    local c = run("budget", PRELUDE .. [[
klua.controller({
  name = "looper",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "t-budget", label_selector = "role=src" },
  reconcile = function(req)
    bump("t-budget", "attempts")
    local i = 0
    while true do i = i + 1 end
  end,
})
]], "--budget 0.3")
    finally(function() c:stop() end)
    create_cm("t-budget", "a", { role = "src" })
    eventually(function() return counter("t-budget", "attempts") >= 2 end, "2 attempts")
    local out = c:output()
    assert.truthy(out:find("aborted"))
    assert.truthy(out:find("budget of 0.3 s"))
    assert.is_true(c:stop()) -- a stuck loop would not let it stop
  end)

  it("exits 1 naming file and line when the script does not load", function()
    local path = dir .. "/bad.lua"
    write(path, "local klua = require('klua')\n\nklua.controller({ name = 'x', watch = {} })\n")
    local p = io.popen(q(KLUA) .. " run " .. q(path) .. " --kubeconfig " .. q(kubeconfig) .. " 2>&1; echo \"rc=$?\"")
    local out = p:read("*a")
    p:close()
    assert.truthy(out:find("rc=1"), out)
    assert.truthy(out:find("bad.lua:3:", 1, true), out)
    assert.truthy(out:find("api_version"), out)
    -- and a syntax error
    write(path, "local x = = 1\n")
    p = io.popen(q(KLUA) .. " run " .. q(path) .. " --kubeconfig " .. q(kubeconfig) .. " 2>&1; echo \"rc=$?\"")
    out = p:read("*a")
    p:close()
    assert.truthy(out:find("rc=1"), out)
    assert.truthy(out:find("bad.lua:1:", 1, true), out)
  end)

  it("rejects unknown flags with status 2", function()
    local p = io.popen(q(KLUA) .. " run x.lua --frobnicate 2>&1; echo \"rc=$?\"")
    local out = p:read("*a")
    p:close()
    assert.truthy(out:find("rc=2"), out)
    assert.truthy(out:find("unknown flag '--frobnicate'", 1, true), out)
  end)

  it("hot reload: new logic applies to every object, caches are kept, a broken version keeps the old one", function()
    ns("t-reload")
    ns("t-reload-out")
    local function source(version, extra)
      return PRELUDE .. [[
klua.controller({
  name = "stamper",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "t-reload", label_selector = "role=src" },
  reconcile = function(req)
    local out = { apiVersion = "v1", kind = "ConfigMap",
      metadata = { name = req.name .. "-out", namespace = "t-reload-out" }, data = { v = "]] .. version .. [[" } }
    local cur = klua.get("v1", "ConfigMap", "t-reload-out", req.name .. "-out")
    if cur then
      out.metadata.resourceVersion = cur.metadata.resourceVersion
      assert(klua.update(out))
    else
      assert(klua.create(out))
    end
  end,
})
]] .. (extra or "")
    end
    local c = run("reload", source("1"), "--reload")
    finally(function() c:stop() end)
    create_cm("t-reload", "a", { role = "src" })
    eventually(function() local o = get_cm("t-reload-out", "a-out"); return o and o.data.v == "1" end, "v1 output")
    -- count LIST requests on the primary collection from now on
    local code, armed = request("POST", "/_klua/faults", { action = "delay", path = cm_path("t-reload"),
      method = "GET", watch = false, seconds = 0.001, count = 1000000 })
    assert.equal(200, code, json.encode(armed))
    sleep(1.1) -- a different mtime second for filesystems with coarse times
    write(c.script, source("2", "-- version 2\n"))
    eventually(function() return c:output():find("reloaded .*reload%.lua %(1 controller%)") end, "the reload log line")
    eventually(function() local o = get_cm("t-reload-out", "a-out"); return o and o.data.v == "2" end,
      "v2 output for the existing object")
    local _, faults = request("GET", "/_klua/faults")
    local hits
    for _, f in ipairs(faults.faults or {}) do
      if f.id == armed.id then hits = f.hits end
    end
    assert.equal(0, hits) -- no relist: the informer and its cache were kept
    request("GET", cm_path("t-reload")) -- the counter does count a list
    _, faults = request("GET", "/_klua/faults")
    for _, f in ipairs(faults.faults or {}) do
      if f.id == armed.id then hits = f.hits end
    end
    assert.equal(1, hits)
    -- a broken version: logged, the running one stays
    sleep(1.1)
    write(c.script, source("3") .. "\nthis is not lua\n")
    eventually(function() return c:output():find("reload of .* failed") end, "the failed reload log line")
    assert.truthy(c:output():find("reload.lua:%d+:"))
    create_cm("t-reload", "b", { role = "src" })
    eventually(function() local o = get_cm("t-reload-out", "b-out"); return o and o.data.v == "2" end,
      "the old version still reconciling")
    request("DELETE", "/_klua/faults")
    assert.is_true(c:stop())
  end)

  it("stops on SIGTERM: exit status 0 after running reconciles finished", function()
    ns("t-term")
    local script, log = dir .. "/term.lua", dir .. "/term.log"
    write(script, PRELUDE .. [[
klua.controller({
  name = "slow",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "t-term", label_selector = "role=src" },
  reconcile = function(req)
    bump("t-term", "started")
    local t = klua.now() + 1
    while klua.now() < t do end
    bump("t-term", "finished")
  end,
})
]])
    -- a wrapper records the exit status
    local pidf, rcf = dir .. "/term.pid", dir .. "/term.rc"
    spawn(q(KLUA) .. " run " .. q(script) .. " --kubeconfig " .. q(kubeconfig) .. " >" .. q(log) ..
      " 2>&1 & echo $! >" .. q(pidf) .. "; wait $!; echo $? >" .. q(rcf), dir .. "/term.wrap")
    local pid = eventually(function() return tonumber(read(pidf) or "") end, "the pid")
    finally(function() stop(pid) end)
    create_cm("t-term", "a", { role = "src" })
    eventually(function() return counter("t-term", "started") >= 1 end, "a running reconcile")
    sh("kill -TERM " .. pid)
    local rc = eventually(function() return tonumber(read(rcf) or "") end, "the exit status")
    assert.equal(0, rc)
    assert.equal(1, counter("t-term", "finished")) -- it was allowed to finish
    local out = read(log) or ""
    assert.truthy(out:find("received SIGTERM"), out)
    assert.truthy(out:find("stopped"), out)
  end)
  it("serves /metrics (workqueue, informer, reconcile families) and /healthz with the workers check", function()
    ns("t-metrics")
    local c = run("metrics", PRELUDE .. [[
klua.controller({
  name = "measured",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "t-metrics", label_selector = "role=src" },
  reconcile = function(req) end,
})
]], "--workers 2 --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0")
    finally(function() c:stop() end)
    local mport = eventually(function() return c:output():match("serving metrics on 127%.0%.0%.1:(%d+)") end,
      "the metrics address log line")
    local hport = eventually(function() return c:output():match("serving health probes on 127%.0%.0%.1:(%d+)") end,
      "the probe address log line")
    assert.are_not.equal("0", mport)
    for i = 1, 3 do create_cm("t-metrics", "m" .. i, { role = "src" }) end
    local base = "http://127.0.0.1:" .. mport .. "/metrics"
    local text = eventually(function()
      local t = http_get(base)
      local n = metric(t, 'controller_runtime_reconcile_total{controller="measured",result="success"}')
      return n and n >= 3 and t
    end, "3 successful reconciles in /metrics")
    local inf = 'resource="v1/configmaps namespace=t-metrics labelSelector=role=src"'
    assert.equal(3, metric(text, "klua_informer_objects{" .. inf .. "}"))
    assert.truthy(metric(text, 'klua_informer_events_total{' .. inf .. ',type="ADDED"}') >= 0)
    assert.equal(0, metric(text, "klua_informer_relists_total{" .. inf .. "}"))
    assert.truthy(metric(text, 'workqueue_adds_total{name="measured"}') >= 3)
    assert.equal(0, metric(text, 'workqueue_depth{name="measured"}'))
    assert.truthy(metric(text, 'workqueue_queue_duration_seconds_count{name="measured"}') >= 3)
    assert.truthy(metric(text, 'workqueue_queue_duration_seconds_bucket{name="measured",le="+Inf"}') >= 3)
    assert.truthy(metric(text, 'workqueue_work_duration_seconds_count{name="measured"}') >= 3)
    assert.equal(2, metric(text, 'controller_runtime_max_concurrent_reconciles{controller="measured"}'))
    assert.equal(0, metric(text, 'controller_runtime_active_workers{controller="measured"}'))
    assert.truthy(metric(text, 'controller_runtime_reconcile_time_seconds_count{controller="measured"}') >= 3)
    local health = http_get("http://127.0.0.1:" .. hport .. "/healthz?verbose")
    assert.truthy(health:find("[+]workers ok", 1, true), health)
    assert.equal("ok", http_get("http://127.0.0.1:" .. hport .. "/healthz/workers"))
    assert.is_true(c:stop())
  end)

  it("klua.event goes through the recorder: a repeated event is one Event whose count grows", function()
    ns("t-events")
    local c = run("events", PRELUDE .. [[
klua.controller({
  name = "eventer",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "t-events", label_selector = "role=src" },
  reconcile = function(req)
    local o = klua.cache("v1", "ConfigMap"):get(req.namespace, req.name)
    if not o then return end
    for _ = 1, 3 do klua.event(o, "Normal", "Synced", "synced " .. req.name) end
  end,
})
]])
    finally(function() c:stop() end)
    create_cm("t-events", "a", { role = "src" })
    local ev = eventually(function()
      local code, list = request("GET", "/api/v1/namespaces/t-events/events")
      if code ~= 200 or #list.items ~= 1 then return nil, #(list.items or {}) end
      local e = list.items[1]
      return e.count == 3 and e
    end, "one Event with count 3")
    assert.equal("Synced", ev.reason)
    assert.equal("synced a", ev.message)
    assert.equal("a", ev.involvedObject.name)
    assert.equal("ConfigMap", ev.involvedObject.kind)
    assert.is_true(c:stop())
  end)

  it("--watch-list fills the cache with a streaming list", function()
    ns("t-wlist")
    create_cm("t-wlist", "pre", { role = "src" })
    local c = run("wlist", PRELUDE .. [[
klua.controller({
  name = "streamer",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "t-wlist", label_selector = "role=src" },
  reconcile = function(req) bump("t-wlist", "seen-" .. req.name) end,
})
]], "--watch-list -v 1")
    finally(function() c:stop() end)
    eventually(function() return counter("t-wlist", "seen-pre") >= 1 end, "the existing object reconciled")
    create_cm("t-wlist", "post", { role = "src" })
    eventually(function() return counter("t-wlist", "seen-post") >= 1 end, "a new object reconciled")
    assert.truthy(c:output():find("streaming list: 1 objects", 1, true), c:output())
    assert.is_true(c:stop())
  end)

  it("exits promptly after SIGTERM when idle", function()
    ns("t-exit")
    local script, log = dir .. "/exit.lua", dir .. "/exit.log"
    write(script, PRELUDE .. [[
klua.controller({
  name = "idle",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "t-exit" },
  owns = { { api_version = "v1", kind = "Secret", namespace = "t-exit" } },
  on_add = function(obj) end,
  reconcile = function(req) end,
})
]])
    local pidf, rcf = dir .. "/exit.pid", dir .. "/exit.rc"
    spawn(q(KLUA) .. " run " .. q(script) .. " --kubeconfig " .. q(kubeconfig) ..
      " --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 >" .. q(log) ..
      " 2>&1 & echo $! >" .. q(pidf) .. "; wait $!; echo $? >" .. q(rcf), dir .. "/exit.wrap")
    local pid = eventually(function() return tonumber(read(pidf) or "") end, "the pid")
    finally(function() stop(pid) end)
    eventually(function() return (read(log) or ""):find("running ") end, "the controller running")
    create_cm("t-exit", "a")
    sleep(0.3)
    local t0 = now()
    sh("kill -TERM " .. pid)
    local rc
    for _ = 1, 500 do
      rc = tonumber(read(rcf) or "")
      if rc then break end
      sh("sleep 0.01")
    end
    local took = now() - t0
    print(string.format("# klua run exited %.3f s after SIGTERM", took))
    assert.equal(0, rc)
    assert.truthy(took < 5, "exit took " .. took .. " s")
  end)

  it("--help lists every flag, and docs/running.md documents each", function()
    local docs = read(ROOT .. "/docs/running.md")
    for _, sub in ipairs({ "run", "dev" }) do
      local p = io.popen(q(KLUA) .. " " .. sub .. " --help 2>&1; echo \"rc=$?\"")
      local out = p:read("*a")
      p:close()
      assert.truthy(out:find("rc=0"), out)
      local flags = {}
      for f in out:gmatch("(%-%-[%w][%w%-]*)") do flags[f] = true end
      local want = sub == "run" and { "--kubeconfig", "--context", "--namespace", "--workers", "--budget",
        "--shutdown-timeout", "--sync-timeout", "--reload", "--jit", "--watch-list", "--log-format",
        "--leader-elect", "--leader-election-id", "--leader-election-namespace", "--metrics-bind-address",
        "--health-probe-bind-address", "--help" }
        or { "--seed", "--listen", "--kubeconfig-out", "--namespace", "--workers", "--budget",
        "--shutdown-timeout", "--sync-timeout", "--jit", "--watch-list", "--log-format",
        "--metrics-bind-address", "--health-probe-bind-address", "--help" }
      for _, f in ipairs(want) do assert.truthy(flags[f], sub .. " --help lacks " .. f) end
      for f in pairs(flags) do
        assert.truthy(docs:find("`" .. f, 1, true), "docs/running.md does not document " .. sub .. " " .. f)
      end
    end
  end)
  it("klua dev waits for a watched kind whose CRD is applied after it started", function()
    local script, log = dir .. "/devcrd.lua", dir .. "/devcrd.log"
    write(script, [[
local klua = require("klua")
klua.controller({
  name = "widgets",
  watch = { api_version = "test.klua.dev/v1", kind = "Widget" },
  reconcile = function(req)
    local _, e = klua.create({ apiVersion = "v1", kind = "ConfigMap",
      metadata = { name = req.name .. "-seen", namespace = req.namespace } })
    if e and not klua.is_already_exists(e) then error(tostring(e)) end
  end,
})
]])
    local pid = spawn("exec " .. q(KLUA) .. " dev " .. q(script), log)
    finally(function() stop(pid) end)
    local devurl = eventually(function()
      return (read(log) or ""):match("API server listening on (http://[%d%.:]+)")
    end, "the dev API server")
    eventually(function() return (read(log) or ""):find("waiting for resource test.klua.dev/v1 Widget to be served", 1, true) end,
      "the waiting log line")
    sleep(0.5)
    assert.is_true(alive(pid), read(log))
    local saved = srv.url
    srv.url = devurl
    local ok, err = pcall(function()
      local code, body = request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
        apiVersion = "apiextensions.k8s.io/v1", kind = "CustomResourceDefinition",
        metadata = { name = "widgets.test.klua.dev" },
        spec = { group = "test.klua.dev", scope = "Namespaced",
          names = { plural = "widgets", singular = "widget", kind = "Widget", listKind = "WidgetList" },
          versions = { { name = "v1", served = true, storage = true,
            schema = { openAPIV3Schema = { type = "object", ["x-kubernetes-preserve-unknown-fields"] = true } } } } } })
      assert.equal(201, code, json.encode(body))
      eventually(function() return (read(log) or ""):find("running .*devcrd%.lua") end, "the controller running")
      code, body = request("POST", "/apis/test.klua.dev/v1/namespaces/default/widgets",
        { apiVersion = "test.klua.dev/v1", kind = "Widget", metadata = { name = "w1", namespace = "default" } })
      assert.equal(201, code, json.encode(body))
      eventually(function() return get_cm("default", "w1-seen") end, "the Widget reconciled")
    end)
    srv.url = saved
    assert(ok, err)
    assert.is_true(stop(pid))
  end)
  it("a kind that is not served: --sync-timeout gives up naming it; SIGTERM during the wait exits 0", function()
    local script = dir .. "/gadgets.lua"
    write(script, [[
local klua = require("klua")
klua.controller({ name = "gadgets", watch = { api_version = "test.klua.dev/v1", kind = "Gadget" },
  reconcile = function(req) end })
]])
    local p = io.popen(q(KLUA) .. " run " .. q(script) .. " --kubeconfig " .. q(kubeconfig) ..
      " --sync-timeout 0.5 2>&1; echo \"rc=$?\"")
    local out = p:read("*a")
    p:close()
    assert.truthy(out:find("rc=1"), out)
    assert.truthy(out:find("waiting for resource test.klua.dev/v1 Gadget to be served", 1, true), out)
    assert.truthy(out:find("apiVersion test.klua.dev/v1 kind Gadget", 1, true), out)
    local log, pidf, rcf = dir .. "/gadgets.log", dir .. "/gadgets.pid", dir .. "/gadgets.rc"
    spawn(q(KLUA) .. " run " .. q(script) .. " --kubeconfig " .. q(kubeconfig) .. " >" .. q(log) ..
      " 2>&1 & echo $! >" .. q(pidf) .. "; wait $!; echo $? >" .. q(rcf), dir .. "/gadgets.wrap")
    local pid = eventually(function() return tonumber(read(pidf) or "") end, "the pid")
    finally(function() stop(pid) end)
    eventually(function() return (read(log) or ""):find("waiting for resource", 1, true) end, "the waiting log line")
    sh("kill -TERM " .. pid)
    local rc = eventually(function() return tonumber(read(rcf) or "") end, "the exit status")
    assert.equal(0, rc, read(log))
    assert.truthy((read(log) or ""):find("stopped before starting", 1, true), read(log))
  end)
end)
