-- End-to-end tests of `klua run`: one `klua serve` (real HTTP), and for each
-- test a `klua run` of a small script written to a temp file; results are
-- checked through the API with curl. Each test uses its own namespace.
-- Environment (set by scripts/run-tests.sh): KLUA_BIN, KLUA_ROOT.
local json = require("klua.json")

local ROOT = os.getenv("KLUA_ROOT") or "."
local KLUA = os.getenv("KLUA_BIN") or (ROOT .. "/build/klua")
local WAIT = 10 -- seconds any single expectation may take

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local a, _, c = os.execute(cmd)
  return a == true or a == 0 or (a == nil and c == 0)
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function sleep(s) sh("sleep " .. s) end

local function spawn(cmd, log)
  local p = io.popen("( " .. cmd .. " ) >" .. q(log) .. " 2>&1 & echo $!")
  local pid = tonumber(p:read("*l"))
  p:close()
  return pid
end

local function alive(pid) return sh("kill -0 " .. pid .. " 2>/dev/null") end

-- SIGTERM; returns true when the process ended within 10 s.
local function stop(pid)
  if not pid or not alive(pid) then return true end
  sh("kill -TERM " .. pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not alive(pid) then return true end
    sleep(0.1)
  end
  sh("kill -KILL " .. pid .. " 2>/dev/null")
  return false
end

local function eventually(fn, what)
  local deadline = os.time() + WAIT
  local last
  repeat
    local ok, v = pcall(fn)
    if ok and v then return v end
    last = v
    sleep(0.1)
  until os.time() > deadline
  error("timed out waiting for " .. what .. (last and (": " .. tostring(last)) or ""), 2)
end

local dir, url, server, kubeconfig
local n = 0

local function request(method, path, body, ctype)
  n = n + 1
  local out = dir .. "/resp" .. n
  local cmd = "curl -sS -o " .. q(out) .. " -w '%{http_code}' -X " .. method
  if body ~= nil then
    local f = dir .. "/req" .. n
    write(f, type(body) == "string" and body or assert(json.encode(body)))
    cmd = cmd .. " -H " .. q("Content-Type: " .. (ctype or "application/json")) .. " --data-binary @" .. q(f)
  end
  local p = io.popen(cmd .. " " .. q(url .. path) .. " 2>&1")
  local code = p:read("*a")
  p:close()
  local text = read(out) or ""
  os.remove(out)
  return tonumber(code) or code, json.decode(text) or text
end

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

describe("klua run", function()
  setup(function()
    local p = io.popen("mktemp -d")
    dir = p:read("*l")
    p:close()
    kubeconfig = dir .. "/kubeconfig"
    server = spawn(q(KLUA) .. " serve --listen 127.0.0.1:0 --faults on --kubeconfig-out " .. q(kubeconfig),
      dir .. "/serve.log")
    for _ = 1, 100 do
      url = (read(dir .. "/serve.log") or ""):match("listening on (http://[%d%.:]+)")
      if url and read(kubeconfig) then break end
      sleep(0.05)
    end
    assert(url, "klua serve did not start: " .. (read(dir .. "/serve.log") or ""))
  end)

  teardown(function()
    stop(server)
    if dir then sh("rm -rf " .. q(dir)) end
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
end)
