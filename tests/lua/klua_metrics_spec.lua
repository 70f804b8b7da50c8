-- klua.metrics: script-defined metrics through the klua API, on the
-- process-wide C registry (what /metrics serves) and on klua.testing's fake
-- (env.metrics), which must behave the same.
local klua = require("klua")
local core = require("klua_core")
local t = require("klua.testing")

local function line(text, prefix)
  for l in text:gmatch("[^\n]+") do
    if l:sub(1, #prefix) == prefix then return l end
  end
end

-- The same behaviour checks run against both implementations: each
-- "provider" gives the klua.metrics module to define with and a prefix
-- that keeps names unique in the process-wide registry.
local n = 0
local providers = {
  { name = "the C registry (klua run)", metrics = function() return klua.metrics end },
  { name = "klua.testing's fake", metrics = function() return t.new().klua.metrics end },
}

for _, p in ipairs(providers) do
  describe("klua.metrics on " .. p.name, function()
    local m, pre
    before_each(function()
      m = p.metrics()
      n = n + 1
      pre = "kms" .. n .. "_"
    end)

    it("counts with labels; missing labels are \"\"; numbers and booleans become strings", function()
      local c = assert(m.counter(pre .. "synced_total", "Synced.", { "namespace", "kind" }))
      c:inc({ namespace = "a", kind = "x" })
      c:inc({ namespace = "a", kind = "x" }, 2.5)
      c:inc({ namespace = "b" })
      c:inc({ namespace = 7, kind = true })
      assert.equal(3.5, c:value({ namespace = "a", kind = "x" }))
      assert.equal(1, c:value({ namespace = "b", kind = "" }))
      assert.equal(1, c:value({ namespace = "7", kind = "true" }))
      assert.equal(0, c:value({ namespace = "never" }))
      c:inc({ namespace = "s" }, "2") -- a numeric string is a number (luaL_checknumber)
      assert.equal(2, c:value({ namespace = "s" }))
    end)

    it("defining the same metric again returns one metric with shared values", function()
      local a = assert(m.counter(pre .. "same_total", "S.", { "x" }))
      local b = assert(m.counter(pre .. "same_total", "S.", { "x" }))
      a:inc({ x = "1" })
      b:inc({ x = "1" }, 2)
      assert.equal(3, a:value({ x = "1" }))
      assert.equal(3, b:value({ x = "1" }))
      local h1 = assert(m.histogram(pre .. "same_seconds", "H.", nil, { 1, 2 }))
      local h2 = assert(m.histogram(pre .. "same_seconds", "H.", nil, { 1, 2 }))
      h1:observe(1.5)
      h2:observe(0.5)
      assert.equal(2, h1:count())
    end)

    it("gauges set, add, inc and dec, with and without labels", function()
      local g = assert(m.gauge(pre .. "backlog", "Backlog."))
      g:set(5)
      g:add(-2)
      g:inc()
      g:dec(2)
      assert.equal(2, g:value())
      local lg = assert(m.gauge(pre .. "temp", "T.", { "room" }))
      lg:set({ room = "a" }, 21.5)
      lg:add({ room = "a" }, 1)
      lg:dec({ room = "a" })
      assert.equal(21.5, lg:value({ room = "a" }))
      assert.equal(0, lg:value({ room = "b" }))
    end)

    it("histograms observe: value is the sum, count the observations", function()
      local h = assert(m.histogram(pre .. "sync_seconds", "Sync.", { "phase" }, { 0.1, 1 }))
      h:observe({ phase = "apply" }, 0.05)
      h:observe({ phase = "apply" }, 0.5)
      h:observe({ phase = "apply" }, 5)
      assert.equal(3, h:count({ phase = "apply" }))
      assert.near(5.55, h:value({ phase = "apply" }), 1e-9)
      assert.equal(0, h:count({ phase = "other" }))
      local d = assert(m.histogram(pre .. "default_seconds", "D.")) -- default buckets
      d:observe(0.3)
      assert.equal(1, d:count())
    end)

    it("invalid definitions and conflicts return nil and the C registry's message", function()
      assert(m.counter(pre .. "taken", "T.", { "x" }))
      local cases = {
        { "gauge", pre .. "taken", { "x" }, nil,
          "metric " .. pre .. "taken is already registered as a counter with other labels or buckets" },
        { "counter", pre .. "taken", { "y" }, nil,
          "metric " .. pre .. "taken is already registered as a counter with other labels or buckets" },
        { "counter", "bad-name", nil, nil, 'metric name "bad-name" is not valid ([a-zA-Z_:][a-zA-Z0-9_:]*)' },
        { "counter", "1abc", nil, nil, 'metric name "1abc" is not valid ([a-zA-Z_:][a-zA-Z0-9_:]*)' },
        { "counter", pre .. "l1", { "a-b" }, nil, "metric " .. pre .. 'l1: label name "a-b" is not valid' },
        { "counter", pre .. "l2", { "__x" }, nil, "metric " .. pre .. 'l2: label name "__x" is not valid' },
        { "counter", pre .. "l3", { "a", "a" }, nil, "metric " .. pre .. 'l3: label "a" given twice' },
        { "histogram", pre .. "l4", { "le" }, nil, "metric " .. pre .. 'l4: label name "le" is not valid' },
        { "histogram", pre .. "b1", nil, { 2, 1 }, "metric " .. pre .. "b1: buckets must be finite and strictly increasing" },
        { "histogram", pre .. "b2", nil, { 1, math.huge }, "metric " .. pre .. "b2: buckets must be finite and strictly increasing" },
        { "histogram", pre .. "b3", nil, { 1, 1 }, "metric " .. pre .. "b3: buckets must be finite and strictly increasing" },
      }
      for _, c in ipairs(cases) do
        local got, err = m[c[1]](c[2], "help", c[3], c[4])
        assert.is_nil(got, c[2])
        assert.equal(c[5], err)
      end
      local labels = {}
      for i = 1, 17 do labels[i] = "l" .. i end
      assert.has_error(function() m.gauge(pre .. "many", "M.", labels) end) -- at most 16
      labels[17] = nil
      assert(m.gauge(pre .. "sixteen", "M.", labels))
      -- a le label is fine on a counter; same buckets given explicitly match
      assert(m.counter(pre .. "le_ok", "L.", { "le" }))
      assert(m.histogram(pre .. "hb", "H.", nil, { 1, 2 }))
      assert.is_nil((m.histogram(pre .. "hb", "H.", nil, { 1, 3 })))
    end)

    it("programmer mistakes raise", function()
      local c = assert(m.counter(pre .. "mistakes_total", "M.", { "a" }))
      assert.has_error(function() c:inc({ b = "x" }) end)          -- unknown label
      assert.has_error(function() c:inc({ a = "x" }, -1) end)      -- counters only go up
      assert.has_error(function() c:dec({ a = "x" }) end)
      assert.has_error(function() c:set({ a = "x" }, 1) end)
      assert.has_error(function() c:observe({ a = "x" }, 1) end)
      assert.has_error(function() c:inc("notatable") end)
      assert.has_error(function() c:inc({ a = {} }) end)           -- label value type
      local g = assert(m.gauge(pre .. "mistakes", "G."))
      assert.has_error(function() g:observe(1) end)
      assert.has_error(function() g:set("x") end)
      local h = assert(m.histogram(pre .. "mistakes_seconds", "H."))
      assert.has_error(function() h:inc() end)
      assert.has_error(function() h:set(1) end)
      -- bad arguments to the definitions themselves
      assert.has_error(function() m.counter(nil, "h") end, "klua.metrics.counter: name must be a non-empty string, got nil")
      assert.has_error(function() m.counter("", "h") end)
      assert.has_error(function() m.gauge(pre .. "x", 5) end, "klua.metrics.gauge: help must be a string, got number")
      assert.has_error(function() m.gauge(pre .. "x", "h", "label") end)
      assert.has_error(function() m.gauge(pre .. "x", "h", { 1 }) end)
      assert.has_error(function() m.gauge(pre .. "x", "h", { a = "b" }) end)
      assert.has_error(function() m.histogram(pre .. "x", "h", nil, { "1" }) end)
      assert.has_error(function() m.histogram(pre .. "x", "h", nil, 1) end)
    end)
  end)
end

describe("klua.metrics and the process-wide registry", function()
  it("a script's metrics appear in the /metrics text with HELP and TYPE", function()
    local c = assert(klua.metrics.counter("kms_expose_total", "Things exposed.", { "kind" }))
    c:inc({ kind = "a" }, 4)
    local h = assert(klua.metrics.histogram("kms_expose_seconds", "Time.", nil, { 0.5 }))
    h:observe(0.25)
    local text = core.metrics_expose()
    assert.truthy(text:find("# HELP kms_expose_total Things exposed.\n# TYPE kms_expose_total counter\n", 1, true))
    assert.equal('kms_expose_total{kind="a"} 4', line(text, "kms_expose_total{"))
    assert.equal('kms_expose_seconds_bucket{le="0.5"} 1', line(text, 'kms_expose_seconds_bucket{le="0.5"}'))
  end)

  it("klua.metrics and klua_core define the same metric (one per process)", function()
    local a = assert(klua.metrics.gauge("kms_shared", "Shared."))
    local b = assert(core.metrics_gauge("kms_shared", "Shared."))
    a:set(3)
    b:add(1)
    assert.equal(4, a:value())
    -- a fresh copy of klua.metrics (as another worker state loads) gets it too
    local prev_loaded = package.loaded["klua.metrics"]
    package.loaded["klua.metrics"] = nil
    local fresh = require("klua.metrics")
    package.loaded["klua.metrics"] = prev_loaded
    local c = assert(fresh.gauge("kms_shared", "Shared."))
    c:inc()
    assert.equal(5, a:value())
  end)

  it("the runtime's standard metrics cannot be redefined differently", function()
    local m, err = klua.metrics.counter("controller_runtime_reconcile_total", "R.", { "x" })
    assert.is_nil(m)
    assert.truthy(err:find("already registered", 1, true), err)
    assert(klua.metrics.counter("controller_runtime_reconcile_total", "R.", { "controller", "result" }))
  end)

  it("without the C module, metrics live in a Lua registry of the state", function()
    local saved_core, saved_mod = package.loaded["klua_core"], package.loaded["klua.metrics"]
    package.loaded["klua_core"] = {} -- no metrics_* functions
    package.loaded["klua.metrics"] = nil
    local ok, fresh = pcall(require, "klua.metrics")
    package.loaded["klua_core"], package.loaded["klua.metrics"] = saved_core, saved_mod
    assert(ok, fresh)
    local c = assert(fresh.counter("kms_lua_only_total", "L."))
    c:inc(2)
    assert.equal(2, assert(fresh.counter("kms_lua_only_total", "L.")):value())
    assert.is_nil(core.metrics_expose():find("kms_lua_only_total", 1, true))
  end)
end)

describe("klua.testing: env.metrics", function()
  local SCRIPT = [[
local klua = require("klua")
local synced = assert(klua.metrics.counter("widgets_synced_total", "Synced.", { "namespace" }))
local lat = assert(klua.metrics.histogram("widgets_sync_seconds", "Sync time.", nil, { 0.1, 1 }))
local size = assert(klua.metrics.gauge("widgets_size", "Keys.", { "name" }))
klua.controller({
  name = "widgets",
  watch = { api_version = "v1", kind = "ConfigMap" },
  reconcile = function(req)
    local cm = klua.cache("v1", "ConfigMap"):get(req.namespace, req.name)
    if not cm then return end
    local n = 0
    for _ in pairs(cm.data or {}) do n = n + 1 end
    size:set({ name = req.name }, n)
    synced:inc({ namespace = req.namespace })
    lat:observe(tonumber(cm.data and cm.data.took) or 0)
  end,
})
]]
  local path
  setup(function()
    path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(SCRIPT)
    f:close()
  end)
  teardown(function() os.remove(path) end)

  local function cm(ns, name, data)
    return { apiVersion = "v1", kind = "ConfigMap", metadata = { namespace = ns, name = name }, data = data }
  end

  it("records what the script's reconcile did", function()
    local env = t.load(path)
    env:add(cm("a", "one", { took = "0.5", x = "1" }), cm("b", "two", { took = "2" }))
    assert.is_true((env:reconcile(nil, "a/one")))
    assert.is_true((env:reconcile(nil, "a/one")))
    assert.is_true((env:reconcile(nil, "b/two")))
    assert.equal(2, env.metrics:value("widgets_synced_total", { namespace = "a" }))
    assert.equal(1, env.metrics:value("widgets_synced_total", { namespace = "b" }))
    assert.equal(2, env.metrics:value("widgets_size", { name = "one" }))
    assert.equal(3, env.metrics:count("widgets_sync_seconds"))
    assert.equal(3, env.metrics:value("widgets_sync_seconds"))
    assert.same({ "widgets_size", "widgets_sync_seconds", "widgets_synced_total" }, env.metrics:names())
    local s = env.metrics:series("widgets_sync_seconds")
    assert.equal(1, #s)
    assert.same({ { le = 0.1, count = 0 }, { le = 1, count = 2 }, { le = math.huge, count = 3 } }, s[1].buckets)
    local c = env.metrics:series("widgets_synced_total")
    assert.same({ namespace = "a" }, c[1].labels)
    assert.same({ namespace = "b" }, c[2].labels)
    assert.equal("counter", env.metrics:get("widgets_synced_total").type)
  end)

  it("is separate per environment, apart from the process registry, and env:clear() resets it", function()
    local e1, e2 = t.load(path), t.load(path)
    e1:add(cm("a", "one", {}))
    e1:reconcile(nil, "a/one")
    assert.equal(1, e1.metrics:value("widgets_synced_total", { namespace = "a" }))
    assert.equal(0, e2.metrics:value("widgets_synced_total", { namespace = "a" }))
    assert.is_nil(core.metrics_expose():find("widgets_synced_total", 1, true))
    e1:clear()
    assert.equal(0, e1.metrics:value("widgets_synced_total", { namespace = "a" }))
    assert.same({}, e1.metrics:series("widgets_sync_seconds"))
    assert.is_not_nil(e1.metrics:get("widgets_synced_total")) -- still defined
  end)

  it("asking for a metric the script did not define raises", function()
    local env = t.load(path)
    assert.has_error(function() env.metrics:value("nope_total") end,
      "klua.metrics: no metric named nope_total is defined")
    assert.is_nil(env.metrics:get("nope_total"))
  end)

  it("a reconcile that misuses a metric fails like in the runtime", function()
    local env = t.new()
    local c = assert(env.klua.metrics.counter("bad_total", "B."))
    env.klua.controller({ name = "bad", watch = { api_version = "v1", kind = "ConfigMap" },
      reconcile = function() c:inc(-1) end })
    env:start()
    local ok, err = env:reconcile(nil, "a/x")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("a counter only goes up", 1, true), tostring(err))
  end)
end)
