-- End-to-end tests of the informer: the real `klua serve` binary over real
-- HTTP, driven through klua_core.informer_new the way a script author does.
-- Changes are made with curl; results are checked against the server's own
-- list. The convergence test uses the server's fault endpoint
-- (/_klua/faults: close/cut/corrupt watches, compact history) and is
-- skipped when the server has none.
-- Environment (set by scripts/run-tests.sh): KLUA_BIN, KLUA_ROOT.
local core = require("klua_core")

local H = dofile((os.getenv("KLUA_ROOT") or ".") .. "/tests/e2e/harness.lua")

local CM = "/api/v1/namespaces/default/configmaps"
local q, sh, read, capture, tmpdir = H.q, H.sh, H.read, H.capture, H.tmpdir

local server = {}

local function start_server(extra)
  server.dir = tmpdir()
  server.log = server.dir .. "/serve.log"
  server.pid, server.url = H.serve("--bookmark-interval 1 " .. (extra or ""), server.log)
  assert(server.url, "klua serve did not start: " .. (read(server.log) or ""))
end

local function stop_server()
  if server.pid then sh("kill -TERM " .. server.pid .. " 2>/dev/null") end
  sh("sleep 0.1; kill -KILL " .. (server.pid or 0) .. " 2>/dev/null")
  H.rmdir(server.dir)
  server = {}
end

-- HTTP through curl: returns status, decoded body (or nil)
local function http(method, path, body)
  local cmd = "curl -s -o " .. q(server.dir .. "/resp") .. " -w '%{http_code}' -X " ..
    method .. " -H 'Content-Type: application/json' " ..
    (body and ("--data-binary " .. q(body) .. " ") or "") .. q(server.url .. path)
  local code = tonumber(capture(cmd))
  local text = read(server.dir .. "/resp") or ""
  local ok, v = pcall(core.json_decode, text)
  return code, ok and v or nil
end

local function cm(name, val, labels)
  return core.json_encode({apiVersion = "v1", kind = "ConfigMap",
    metadata = {name = name, labels = labels or {app = "e2e"}},
    data = {v = tostring(val)}})
end
local function create(name, val, labels) return http("POST", CM, cm(name, val, labels)) end
local function update(name, val, labels) return http("PUT", CM .. "/" .. name, cm(name, val, labels)) end
local function delete(name) return http("DELETE", CM .. "/" .. name) end

local function server_state()
  local code, list = http("GET", CM)
  assert(code == 200, "list failed")
  local m, n = {}, 0
  for _, it in ipairs(list.items) do
    m["default/" .. it.metadata.name] = it.metadata.resourceVersion
    n = n + 1
  end
  return m, n
end

local function informer(opts)
  local o = {server = server.url, path = CM, backoff_initial = 0.01,
    backoff_max = 0.2, watch_timeout = 20}
  for k, v in pairs(opts or {}) do o[k] = v end
  local inf = assert(core.informer_new(o))
  finally(function() inf:close() end) -- also when an assertion fails
  assert(inf:start())
  assert.is_true(inf:wait_for_sync(10))
  return inf
end

local drain, store_state = H.drain, H.store_state

local function same(a, b)
  for k, v in pairs(a) do if b[k] ~= v then return false end end
  for k, v in pairs(b) do if a[k] ~= v then return false end end
  return true
end

describe("informer against klua serve", function()
  before_each(function() start_server("--faults on") end)
  after_each(function() stop_server() end)

  it("lists, then delivers add, update and delete events", function()
    create("a", 1)
    create("b", 1)
    local inf = informer()
    local view, st = {}, {}
    drain(inf, view, 0.2, st)
    assert.equal(2, st.add)
    assert.equal(2, inf:len())
    local obj = inf:get("default/a")
    assert.equal("ConfigMap", obj.kind)        -- injected into list items
    assert.equal("v1", obj.apiVersion)
    assert.is_nil(obj.metadata.managedFields)  -- stripped by default
    update("a", 2)
    delete("b")
    create("c", 1)
    local ev = inf:next_event(5)
    assert.equal("update", ev.type)
    assert.equal("1", ev.old.data.v)
    assert.equal("2", ev.obj.data.v)
    assert.is_false(ev.resync)
    ev = inf:next_event(5)
    assert.equal("delete", ev.type)
    assert.equal("default/b", ev.key)
    assert.is_false(ev.tombstone)
    assert.equal("b", ev.obj.metadata.name)
    ev = inf:next_event(5)
    assert.equal("add", ev.type)
    assert.is_false(ev.initial)
    local s = inf:stats()
    assert.equal(1, s.lists)
    assert.equal(1, s.events.deleted)
    assert.equal(2, s.objects)
    assert.equal(true, s.synced)
    assert.truthy(tonumber(s.last_resource_version) > 0)
    inf:stop()
    local none, why = inf:next_event(0.1)
    assert.is_nil(none)
    assert.equal("closed", why)
    inf:close()
  end)

  it("pages a large initial list", function()
    -- seed 1200 objects through a manifest, then list them in pages of 500
    stop_server()
    local dir = tmpdir()
    local f = assert(io.open(dir .. "/many.yaml", "w"))
    for i = 1, 1200 do
      f:write(("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m-%04d\n" ..
        "  namespace: default\ndata:\n  v: \"%d\"\n"):format(i, i))
    end
    f:close()
    start_server("--seed " .. q(dir .. "/many.yaml"))
    sh("rm -rf " .. q(dir))
    local inf = informer({page_size = 500})
    assert.equal(1200, inf:len())
    local s = inf:stats()
    assert.equal(3, s.list_requests)
    assert.equal(1, s.lists)
    inf:close()
  end)

  it("follows a label selector: leaving the selection is a delete", function()
    create("in", 1, {app = "web"})
    create("out", 1, {app = "db"})
    local inf = informer({label_selector = "app=web"})
    assert.same({"default/in"}, inf:keys())
    drain(inf, {}, 0.1)
    update("in", 2, {app = "db"})
    local ev = inf:next_event(5)
    assert.equal("delete", ev.type)
    assert.equal("default/in", ev.key)
    assert.equal(0, inf:len())
    update("out", 2, {app = "web"})
    ev = inf:next_event(5)
    assert.equal("add", ev.type)
    assert.equal("default/out", ev.key)
    inf:close()
  end)

  it("uses a streaming list (sendInitialEvents) when asked", function()
    for i = 1, 5 do create("w" .. i, i) end
    local inf = informer({watch_list = true})
    assert.equal(5, inf:len())
    local s = inf:stats()
    assert.equal(0, s.list_requests)
    assert.equal(1, s.watch_list_used)
    assert.equal(0, s.watch_list_fallbacks)
    inf:close()
  end)

  it("keeps a slow consumer's events without holding back another", function()
    local inf = informer({handler = false})
    local slow = inf:add_handler()
    local fast = inf:add_handler()
    for i = 1, 20 do create("s" .. i, i) end
    local view = {}
    local n = 0
    for _ = 1, 200 do
      n = n + drain(fast, view, 0.05)
      if n >= 20 then break end
    end
    assert.equal(20, n)
    assert.equal(20, slow:pending())
    assert.equal(0, slow:delivered())
    local ev = slow:next_event(1)
    assert.equal("add", ev.type)
    slow:remove()
    inf:close()
  end)

  it("converges with the server while watches are closed, cut, corrupted and compacted", function()
    local code = http("GET", "/_klua/faults")
    if code ~= 200 then
      pending("the server has no fault endpoint")
      return
    end
    for _, in_order in ipairs({false, true}) do
      http("DELETE", CM)
      for i = 1, 10 do create("c" .. i, 0) end
      local inf = informer({in_order = in_order, page_size = 4})
      local view, st = {}, {}
      local seed = in_order and 7 or 3
      math.randomseed(seed)
      local faults = {
        '{"action":"close_watches"}',
        '{"action":"compact"}',
        '{"action":"cut_watch","path":"/api/v1"}',
        '{"action":"malformed_watch","path":"/api/v1"}',
        '{"action":"fail","watch":true,"code":500,"path":"' .. CM .. '"}',
      }
      local alive = {}
      for i = 1, 10 do alive[i] = true end
      for n = 1, 120 do
        local i = math.random(1, 15)
        if not alive[i] then
          create("c" .. i, n)
          alive[i] = true
        elseif math.random(3) == 1 then
          delete("c" .. i)
          alive[i] = nil
        else
          update("c" .. i, n)
        end
        if n % 6 == 0 then
          http("POST", "/_klua/faults", faults[math.random(#faults)])
          if math.random(2) == 1 then http("POST", "/_klua/faults", faults[1]) end
        end
        drain(inf, view, 0, st)
      end
      http("DELETE", "/_klua/faults")
      local want = server_state()
      local ok = false
      for _ = 1, 200 do
        drain(inf, view, 0.05, st)
        if same(view, want) and same(store_state(inf), want) then ok = true break end
      end
      assert.is_true(same(store_state(inf), want), "store differs from the server")
      assert.is_true(same(view, want), "handler view differs: a delete was lost")
      assert.is_true(ok)
      local s = inf:stats()
      assert.truthy(s.watches > 3)
      inf:close()
    end
  end)
end)
