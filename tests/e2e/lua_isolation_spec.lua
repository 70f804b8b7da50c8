-- Lua isolation (docs/reliability.md): the real `klua run` binary against
-- `klua serve`. A controller script that loops forever, raises in hooks and
-- reconciles, returns garbage, fails at load, requires a missing module, or
-- is rewritten 100 times in a few seconds gets a clear log line (or exit 1
-- with FILE:LINE), and the runtime keeps reconciling the other keys.
-- Every wait is bounded (WAIT seconds per expectation).
-- Environment (set by scripts/run-tests.sh): KLUA_BIN, KLUA_ROOT.
local H = dofile((os.getenv("KLUA_ROOT") or ".") .. "/tests/e2e/harness.lua")

local KLUA = H.KLUA
local WAIT = 10
local q, sh, read, write, capture, sleep, spawn, alive, stop, tail =
  H.q, H.sh, H.read, H.write, H.capture, H.sleep, H.spawn, H.alive, H.stop, H.tail
local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end
local function rss_kb(pid)
  local s = read("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local dir, spid, url, kc
local CM = "/api/v1/namespaces/default/configmaps"

local function api(method, path, body)
  return capture("curl -s -o /dev/null -w '%{http_code}' -X " .. method ..
    " -H 'Content-Type: application/json' " ..
    (body and ("--data-binary " .. q(body) .. " ") or "") .. q(url .. path))
end
local function put_cm(name, val)
  local body = ('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"%s"},' ..
    '"data":{"v":"%s"}}'):format(name, tostring(val))
  local code = api("PUT", CM .. "/" .. name, body)
  if code == "404" then code = api("POST", CM, body) end
  assert(code == "200" or code == "201", "write of " .. name .. " failed: " .. code)
end

-- Polls until pred(log text) is true or WAIT seconds pass.
local function wait_log(log, pred, what)
  for _ = 1, WAIT * 10 do
    local s = read(log) or ""
    if pred(s) then return s end
    sleep(0.1)
  end
  error("timed out waiting for " .. what .. "; log tail:\n" .. tail(log, 30))
end

local function run(script_text, args, name)
  local path = dir .. "/" .. (name or "ctl") .. ".lua"
  write(path, script_text)
  local log = dir .. "/" .. (name or "ctl") .. ".log"
  local pid = spawn(q(KLUA) .. " run " .. q(path) .. " --kubeconfig " .. q(kc) ..
    " " .. (args or ""), log)
  return pid, log, path
end

local HEADER = [[
local klua = require("klua")
local function val(req)
  local cm = klua.cache("v1", "ConfigMap"):get(req.namespace, req.name)
  return cm and cm.data and cm.data.v
end
]]

describe("Lua isolation in klua run", function()
  setup(function()
    dir = H.tmpdir()
    kc = dir .. "/kc"
    spid, url = H.serve("--kubeconfig-out " .. q(kc), dir .. "/serve.log")
    assert(url, "klua serve did not start")
  end)
  teardown(function()
    stop(spid)
    sh("rm -rf " .. q(dir))
  end)
  before_each(function() api("DELETE", CM) end)

  it("aborts a runaway reconcile at the budget and keeps reconciling", function()
    put_cm("loop", 1)
    put_cm("catcher", 1)
    local pid, log = run(HEADER .. [[
klua.controller({ name = "spin", watch = { api_version = "v1", kind = "ConfigMap" },
  workers = 1,
  reconcile = function(req)
    if req.name == "loop" and val(req) == "1" then while true do end end
    if req.name == "catcher" and val(req) == "1" then
      -- a script that catches every error cannot outlive its budget either
      while true do pcall(function() while true do end end) end
    end
    klua.log.info("reconciled", { k = req.key, v = val(req) })
  end })
]], "--budget 0.3")
    local ok, err = pcall(function()
      wait_log(log, function(s)
        return s:find("reconcile of ConfigMap default/loop aborted: it ran past its budget of 0.3 s", 1, true)
          and s:find("reconcile of ConfigMap default/catcher aborted", 1, true)
      end, "both aborts")
      -- one worker only: it is free again
      put_cm("after", 7)
      wait_log(log, function(s) return s:find("k=default/after v=7", 1, true) end,
        "a reconcile after the aborts")
      put_cm("loop", 2)
      wait_log(log, function(s) return s:find("k=default/loop v=2", 1, true) end,
        "the fixed key reconciled")
      assert.is_true(alive(pid))
    end)
    stop(pid)
    assert(ok, err)
  end)

  it("logs errors of hooks and reconciles with the key, and goes on", function()
    put_cm("boom", 1)
    local pid, log = run(HEADER .. [[
klua.controller({ name = "errs", watch = { api_version = "v1", kind = "ConfigMap" },
  workers = 1,
  reconcile = function(req)
    if req.name == "boom" then error("reconcile exploded on purpose") end
    if req.name == "garbage" then return { not_a = "result" } end
    if req.name == "number" then return 42 end
    klua.log.info("reconciled", { k = req.key, v = val(req) })
  end,
  on_add = function(obj)
    if obj.metadata.name == "hookboom" then error("on_add exploded on purpose") end
  end,
  on_update = function(old, new) local x = nil; return x.field end })
]])
    local ok, err = pcall(function()
      put_cm("hookboom", 1)
      put_cm("garbage", 1)
      put_cm("number", 1)
      local s = wait_log(log, function(t)
        return t:find("reconcile exploded on purpose", 1, true)
          and t:find("on_add exploded on purpose", 1, true)
          and t:find("default/garbage failed", 1, true)
          and t:find("default/number failed", 1, true)
      end, "the error lines")
      assert.truthy(s:find("reconcile of ConfigMap default/boom failed %(retrying with backoff%): [^\n]*reconcile exploded on purpose"))
      assert.truthy(s:find("[^\n]*ctl%.lua:%d+: reconcile exploded on purpose"))
      -- the hook error names the hook and the script line
      assert.truthy(s:find("on_add failed: [^\n]*ctl%.lua:%d+: on_add exploded on purpose"))
      -- garbage results say what came back
      assert.truthy(s:find("default/garbage failed[^\n]*table"))
      assert.truthy(s:find("default/number failed[^\n]*42"))
      put_cm("hookboom", 2) -- on_update raises (index a nil value)
      wait_log(log, function(t) return t:find("on_update failed", 1, true) end,
        "the on_update error")
      put_cm("fine", 3)
      wait_log(log, function(t) return t:find("k=default/fine v=3", 1, true) end,
        "a reconcile after the errors")
      -- retried with backoff: boom is reconciled again
      s = wait_log(log, function(t) return count(t, "reconcile exploded on purpose") >= 2 end,
        "a retry of the failing key")
      assert.is_true(alive(pid))
    end)
    stop(pid)
    assert(ok, err)
  end)

  it("turns os.exit in a reconcile into an error: the runtime keeps running", function()
    put_cm("quit", 1)
    local pid, log = run(HEADER .. [[
klua.controller({ name = "quitter", watch = { api_version = "v1", kind = "ConfigMap" },
  workers = 1,
  reconcile = function(req)
    if req.name == "quit" and val(req) == "1" then os.exit(3) end
    klua.log.info("reconciled", { k = req.key, v = val(req) })
  end })
]])
    local ok, err = pcall(function()
      local s = wait_log(log, function(t) return t:find("os.exit is not allowed", 1, true) end,
        "the os.exit error")
      assert.truthy(s:find("reconcile of ConfigMap default/quit failed[^\n]*os.exit is not allowed"))
      assert.is_true(alive(pid))
      put_cm("quit", 2)
      wait_log(log, function(t) return t:find("k=default/quit v=2", 1, true) end,
        "a reconcile after the os.exit")
      assert.is_true(alive(pid))
    end)
    stop(pid)
    assert(ok, err)
  end)

  it("exits 1 with FILE:LINE when the script fails at load", function()
    local path = dir .. "/bad.lua"
    write(path, "local klua = require('klua')\n\nlocal t = nil\nt.x = 1\n")
    local out = capture(q(KLUA) .. " run " .. q(path) .. " --kubeconfig " .. q(kc) ..
      " 2>&1; echo \"exit=$?\"")
    assert.truthy(out:find("exit=1", 1, true), out)
    assert.truthy(out:find("bad.lua:4:", 1, true), out)
    -- a syntax error too
    write(path, "local klua = require('klua')\nklua.controller({ name = \n")
    out = capture(q(KLUA) .. " run " .. q(path) .. " --kubeconfig " .. q(kc) ..
      " 2>&1; echo \"exit=$?\"")
    assert.truthy(out:find("exit=1", 1, true), out)
    assert.truthy(out:find("bad.lua:%d+:"), out)
    -- an invalid declaration (unknown field) is a load error as well
    write(path, "local klua = require('klua')\nklua.controller({ name = 'x', " ..
      "watch = { api_version = 'v1', kind = 'ConfigMap' }, reconcil = function() end })\n")
    out = capture(q(KLUA) .. " run " .. q(path) .. " --kubeconfig " .. q(kc) ..
      " 2>&1; echo \"exit=$?\"")
    assert.truthy(out:find("exit=1", 1, true), out)
    assert.truthy(out:find("reconcil", 1, true), out)
  end)

  it("names a missing module clearly", function()
    local path = dir .. "/needs.lua"
    write(path, "local klua = require('klua')\nlocal m = require('no_such_module_xyz')\n")
    local out = capture(q(KLUA) .. " run " .. q(path) .. " --kubeconfig " .. q(kc) ..
      " 2>&1; echo \"exit=$?\"")
    assert.truthy(out:find("exit=1", 1, true), out)
    assert.truthy(out:find("module 'no_such_module_xyz' not found", 1, true), out)
    assert.truthy(out:find("needs.lua:2", 1, true), out)
  end)

  it("survives a reload storm: 100 rewrites, no deadlock, last logic wins, RSS flat", function()
    put_cm("r", 1)
    local function version(n)
      return HEADER .. ([[
klua.controller({ name = "storm", watch = { api_version = "v1", kind = "ConfigMap" },
  workers = 2,
  reconcile = function(req)
    local pad = {}
    for i = 1, 200 do pad[i] = ("x"):rep(50) .. i end -- some garbage per load
    klua.log.info("reconciled", { k = req.key, v = val(req), version = %d })
  end })
]]):format(n)
    end
    local pid, log, path = run(version(0), "--reload", "storm")
    local ok, err = pcall(function()
      wait_log(log, function(s) return s:find("k=default/r v=1 version=0", 1, true) end,
        "the first reconcile")
      local function storm(from, to)
        for n = from, to do
          -- write to a temporary file and rename, as editors do; every
          -- fifth rewrite in place (a watcher must handle both)
          if n % 5 == 0 then
            write(path, version(n))
          else
            write(path .. ".tmp", version(n))
            os.rename(path .. ".tmp", path)
          end
          if n % 3 == 0 then sleep(0.05) end
        end
      end
      -- warm-up storm, then two measured ones: the second must not grow
      storm(1, 20)
      sleep(1.5)
      local r0 = rss_kb(pid)
      storm(21, 60)
      sleep(1.5)
      local r1 = rss_kb(pid)
      storm(61, 100)
      sleep(1.5)
      local r2 = rss_kb(pid)
      print(("# reload storm RSS (kB): after warm-up %d, after 40 more %d, after 40 more %d"):format(r0, r1, r2))
      local s = read(log) or ""
      local reloads = count(s, "reloaded ")
      print("# reloads done: " .. reloads)
      assert.truthy(reloads >= 3, "few reloads: " .. reloads)
      assert.is_true(alive(pid), tail(log))
      -- no deadlock, and the last version's logic runs
      put_cm("r", 2)
      wait_log(log, function(t) return t:find("k=default/r v=2 version=100", 1, true) end,
        "a reconcile by version 100")
      -- flat: the last 40 reloads grew RSS by less than 16 MB and 25%
      assert.truthy(r2 - r1 < 16 * 1024 and r2 < r1 * 1.25,
        ("RSS grew from %d to %d kB over 40 reloads"):format(r1, r2))
      -- a broken version keeps the running one
      write(path, "local klua = require('klua')\nerror('broken on purpose')\n")
      wait_log(log, function(t) return t:find("reload of [^\n]* failed, the running version stays: [^\n]*storm%.lua:2: broken on purpose") end,
        "the failed reload line")
      put_cm("r", 3)
      wait_log(log, function(t) return t:find("k=default/r v=3 version=100", 1, true) end,
        "version 100 still reconciling")
    end)
    stop(pid)
    assert(ok, err)
  end)
end)
