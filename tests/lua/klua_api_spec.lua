-- The klua module surface: registry normalisation, cache ids and lookup,
-- results, errors, writes through the backend, events, logs, getenv, time.
-- Each test gets a fresh klua copy (via klua.testing.new) so registries do
-- not leak between tests.
local t = require("klua.testing")

local function fresh()
  local env = t.new()
  return env.klua, env
end

-- A backend that records every call and answers with canned values.
local function recording_backend(answers)
  local calls = {}
  local b = {}
  for _, f in ipairs({ "cache_get", "cache_list", "cache_by_index", "cache_index_values",
                       "request", "event", "log", "now" }) do
    b[f] = function(...)
      calls[#calls + 1] = { f, ... }
      local a = answers and answers[f]
      if type(a) == "function" then return a(...) end
      return a
    end
  end
  return b, calls
end

describe("klua.controller", function()
  it("normalises the primary resource, owns, watches and defaults", function()
    local klua = fresh()
    local map = function() return {} end
    local rec = function() end
    local c = klua.controller({
      name = "mirror",
      watch = { api_version = "v1", kind = "ConfigMap", namespace = "src",
                label_selector = "mirror = true", field_selector = "metadata.name!=skip" },
      owns = { { api_version = "v1", kind = "ConfigMap" } },
      watches = { { api_version = "v1", kind = "Namespace", map = map } },
      reconcile = rec,
    })
    assert.equal(c, klua._registry.controllers[1])
    assert.equal("v1", c.api_version)
    assert.equal("ConfigMap", c.kind)
    assert.equal("src", c.namespace)
    assert.equal("mirror=true", c.label_selector)
    assert.equal("metadata.name!=skip", c.field_selector)
    assert.equal("v1/ConfigMap|ns=src|l=mirror=true|f=metadata.name!=skip", c.cache_id)
    assert.equal(1, c.workers)
    assert.equal(30, c.reconcile_timeout)
    assert.equal(rec, c.reconcile)
    assert.equal("v1/ConfigMap|ns=|l=|f=", c.owns[1].cache_id)
    assert.equal(map, c.watches[1].map)
    assert.equal("v1/Namespace|ns=|l=|f=", c.watches[1].cache_id)
    assert.same({}, c.hooks)
    -- three distinct caches were declared
    assert.equal(3, #klua._registry.caches)
    assert.truthy(klua._registry.cache_by_id["v1/Namespace|ns=|l=|f="])
  end)

  it("defaults the name from the kind and keeps hooks", function()
    local klua = fresh()
    local add = function() end
    local c = klua.controller({ watch = { api_version = "apps/v1", kind = "Deployment" }, on_add = add, workers = 4 })
    assert.equal("deployment-controller", c.name)
    assert.equal(add, c.hooks.on_add)
    assert.is_nil(c.reconcile)
    assert.equal(4, c.workers)
    assert.equal("apps/v1/Deployment|ns=|l=|f=", c.cache_id)
  end)

  it("shares one cache between declarations of the same resource and selector", function()
    local klua = fresh()
    local a = klua.controller({ name = "a", watch = { api_version = "v1", kind = "Pod", label_selector = "b=2,a=1" },
                                reconcile = function() end })
    local b = klua.controller({ name = "b", watch = { api_version = "v1", kind = "Pod", label_selector = { a = "1", b = "2" } },
                                reconcile = function() end })
    assert.equal(a.cache_id, b.cache_id)
    assert.equal(1, #klua._registry.caches)
    assert.equal("v1/Pod|ns=|l=a=1,b=2|f=", a.cache_id)
  end)

  it("canonicalises field selectors (trimmed, sorted, == as =)", function()
    local klua = fresh()
    local c = klua.controller({ watch = { api_version = "v1", kind = "Pod",
      field_selector = " status.phase==Running , spec.nodeName=n1" }, reconcile = function() end })
    assert.equal("spec.nodeName=n1,status.phase=Running", c.field_selector)
  end)

  it("rejects mistakes with clear messages", function()
    local klua = fresh()
    local rec = function() end
    local W = { api_version = "v1", kind = "Pod" }
    assert.has_error(function() klua.controller({ watch = W }) end,
      "klua.controller: controller 'pod-controller' needs a reconcile function or at least one hook")
    assert.has_error(function() klua.controller({ watch = W, reconcil = rec }) end)
    assert.has_error(function() klua.controller({ reconcile = rec }) end,
      "klua.controller: watch must be a table, got nil")
    assert.has_error(function() klua.controller({ watch = { api_version = "v1" }, reconcile = rec }) end,
      "klua.controller: watch.kind must be a non-empty string, got nil")
    assert.has_error(function() klua.controller({ watch = W, reconcile = rec, workers = 0 }) end)
    assert.has_error(function() klua.controller({ watch = W, reconcile = rec, workers = 1.5 }) end)
    assert.has_error(function() klua.controller({ watch = W, reconcile = rec, reconcile_timeout = -1 }) end)
    assert.has_error(function() klua.controller({ watch = W, reconcile = "x" }) end)
    assert.has_error(function() klua.controller({ watch = W, on_add = 1 }) end)
    assert.has_error(function()
      klua.controller({ watch = { api_version = "v1", kind = "Pod", label_selector = "a in ()" }, reconcile = rec })
    end)
    assert.has_error(function()
      klua.controller({ watch = W, reconcile = rec, watches = { { api_version = "v1", kind = "Node" } } })
    end, "klua.controller: watches[1].map must be a function(obj) returning requests")
    klua.controller({ name = "x", watch = W, reconcile = rec })
    assert.has_error(function() klua.controller({ name = "x", watch = W, reconcile = rec }) end,
      "klua.controller: a controller named 'x' is already declared")
  end)

  it("refuses declarations after the load phase", function()
    local klua = fresh()
    klua._seal()
    assert.has_error(function()
      klua.controller({ watch = { api_version = "v1", kind = "Pod" }, reconcile = function() end })
    end, "klua.controller: declarations are only allowed while the script loads")
    assert.has_error(function() klua.index("v1", "Pod", "x", { namespace = true }) end)
    assert.has_error(function() klua.cache("v1", "Pod", {}) end)
  end)
end)

describe("klua.index", function()
  it("normalises every spec kind and attaches them to the caches at seal", function()
    local klua = fresh()
    klua.cache("v1", "Pod", {})
    klua.cache("v1", "Pod", { namespace = "a" })
    local fn = function() end
    assert.same("field", klua.index("v1", "Pod", "node", { field = "spec.nodeName" }).type)
    assert.same("label", klua.index("v1", "Pod", "app", { label = "app.kubernetes.io/name" }).type)
    assert.same("namespace", klua.index("v1", "Pod", "ns", { namespace = true }).type)
    assert.same("uid", klua.index("v1", "Pod", "owner", { owner = "uid" }).owner)
    local e = klua.index("v1", "Pod", "custom", fn)
    assert.equal("func", e.type)
    assert.equal(fn, e.fn)
    klua._seal()
    for _, c in ipairs(klua._registry.caches) do
      assert.equal(5, #c.indexes)
    end
  end)

  it("rejects bad specs and duplicates", function()
    local klua = fresh()
    assert.has_error(function() klua.index("v1", "Pod", "x", { field = "spec..x" }) end)
    assert.has_error(function() klua.index("v1", "Pod", "x", { label = "bad key!" }) end)
    assert.has_error(function() klua.index("v1", "Pod", "x", { owner = "name" }) end)
    assert.has_error(function() klua.index("v1", "Pod", "x", { namespace = "yes" }) end)
    assert.has_error(function() klua.index("v1", "Pod", "x", { field = "a", label = "b" }) end)
    assert.has_error(function() klua.index("v1", "Pod", "x", { nodeName = true }) end)
    assert.has_error(function() klua.index("v1", "Pod", "x", "spec.nodeName") end)
    klua.index("v1", "Pod", "x", { namespace = true })
    assert.has_error(function() klua.index("v1", "Pod", "x", { namespace = true }) end,
      "klua.index: index 'x' is already declared on v1/Pod")
    klua.index("v1", "Node", "x", { label = "zone" }) -- same name, other resource: fine
  end)

  it("fails the seal when an index has no cache", function()
    local klua = fresh()
    klua.index("v1", "Secret", "by-type", { field = "type" })
    assert.has_error(function() klua._seal() end)
    assert.is_false(klua._sealed())
  end)
end)

describe("klua.cache", function()
  local function setup(decls)
    local klua = fresh()
    local b, calls = recording_backend({ cache_get = "OBJ", cache_list = {}, cache_by_index = {}, cache_index_values = {} })
    klua._set_backend(b)
    decls(klua)
    klua._seal()
    return klua, calls
  end

  it("returns the unfiltered cache when one is declared", function()
    local klua, calls = setup(function(k)
      k.cache("v1", "Pod", { label_selector = "a=1" })
      k.cache("v1", "Pod", {})
    end)
    assert.equal("OBJ", klua.cache("v1", "Pod"):get("ns", "p"))
    assert.same({ "cache_get", "v1/Pod|ns=|l=|f=", "ns", "p" }, calls[1])
  end)

  it("returns the only cache of a resource", function()
    local klua, calls = setup(function(k) k.cache("v1", "Pod", { namespace = "x" }) end)
    assert.equal("v1/Pod|ns=x|l=|f=", klua.cache("v1", "Pod").id)
  end)

  it("errors clearly when several filtered caches exist or none", function()
    local klua = setup(function(k)
      k.cache("v1", "Pod", { namespace = "a" })
      k.cache("v1", "Pod", { namespace = "b" })
    end)
    local ok, err = pcall(klua.cache, "v1", "Pod")
    assert.is_false(ok)
    assert.matches("v1/Pod has 2 caches with different selectors", err, 1, true)
    ok, err = pcall(klua.cache, "v1", "Secret")
    assert.is_false(ok)
    assert.matches("no cache of v1/Secret is declared", err, 1, true)
    -- the exact options pick one; undeclared options fail
    assert.equal("v1/Pod|ns=b|l=|f=", klua.cache("v1", "Pod", { namespace = "b" }).id)
    assert.has_error(function() klua.cache("v1", "Pod", { namespace = "c" }) end)
  end)

  it("resolves a handle taken at load time on first use, and not before", function()
    local klua = fresh()
    klua._set_backend((recording_backend({ cache_get = "OBJ" })))
    local h = klua.cache("v1", "Pod")
    assert.has_error(function() h:get("a", "b") end)
    klua.cache("v1", "Pod", { namespace = "x" })
    klua._seal()
    assert.equal("OBJ", h:get("a", "b"))
    assert.equal("v1/Pod|ns=x|l=|f=", h.id)
  end)

  it("passes cluster-scoped gets, list options and index calls to the backend", function()
    local klua, calls = setup(function(k)
      k.cache("v1", "Node", {})
      k.index("v1", "Node", "zone", { label = "zone" })
    end)
    local c = klua.cache("v1", "Node")
    c:get("n1")
    assert.same({ "cache_get", c.id, nil, "n1" }, calls[1])
    c:get("", "n2")
    assert.same({ "cache_get", c.id, nil, "n2" }, calls[2])
    c:list({ label_selector = "b=1, a=2" })
    assert.same({ "cache_list", c.id, { label_selector = "a=2,b=1" } }, calls[3])
    c:list({ namespace = "x", label_selector = { app = "web" } })
    assert.same({ "cache_list", c.id, { namespace = "x", label_selector = "app=web" } }, calls[4])
    c:list()
    assert.same({ "cache_list", c.id, {} }, calls[5])
    c:by_index("zone", "z1")
    assert.same({ "cache_by_index", c.id, "zone", "z1" }, calls[6])
    c:by_index("zone", 3)
    assert.same({ "cache_by_index", c.id, "zone", "3" }, calls[7])
    c:index_values("zone")
    assert.same({ "cache_index_values", c.id, "zone" }, calls[8])
    assert.has_error(function() c:by_index("nope", "x") end,
      "klua.cache:by_index: no index 'nope' is declared on v1/Node (klua.index at load time)")
    assert.has_error(function() c:list({ label_selector = "a in" }) end)
    assert.has_error(function() c:list({ selector = "a" }) end)
    assert.has_error(function() c:get() end)
  end)
end)

describe("reconcile results", function()
  it("has a unique requeue sentinel shared by every klua copy", function()
    local a, b = fresh(), fresh()
    assert.equal(a.requeue, b.requeue)
    assert.equal("klua.requeue", tostring(a.requeue))
    assert.equal(a.null, b.null)
  end)

  it("validates requeue_after", function()
    local klua = fresh()
    assert.same({ requeue_after = 2.5 }, klua.requeue_after(2.5))
    assert.same({ requeue_after = 0 }, klua.requeue_after(0))
    assert.has_error(function() klua.requeue_after(-1) end)
    assert.has_error(function() klua.requeue_after("5") end)
    assert.has_error(function() klua.requeue_after(0 / 0) end)
    assert.has_error(function() klua.requeue_after(math.huge) end)
    assert.has_error(function() klua.requeue_after() end)
  end)

  it("interprets what reconcile returned", function()
    local klua = fresh()
    assert.equal("done", klua._interpret_result(nil))
    assert.equal("requeue", klua._interpret_result(klua.requeue))
    local what, s = klua._interpret_result(klua.requeue_after(7))
    assert.equal("after", what)
    assert.equal(7, s)
    assert.is_nil(klua._interpret_result(true))
    assert.is_nil(klua._interpret_result(5))
    assert.is_nil(klua._interpret_result({ requeue_after = -1 }))
    assert.is_nil(klua._interpret_result({ requeue_after = 1, extra = 1 }))
    local _, err = klua._interpret_result("later")
    assert.matches("expected nothing, klua.requeue or klua.requeue_after", err, 1, true)
  end)

  it("normalises requests from tables and keys", function()
    local klua = fresh()
    assert.same({ namespace = "a", name = "b", key = "a/b" }, klua._normalize_request("a/b"))
    assert.same({ name = "n", key = "n" }, klua._normalize_request("n"))
    assert.same({ namespace = "a", name = "b", key = "a/b" }, klua._normalize_request({ namespace = "a", name = "b" }))
    assert.same({ name = "b", key = "b" }, klua._normalize_request({ namespace = "", name = "b" }))
    assert.is_nil(klua._normalize_request({ namespace = "a" }))
    assert.is_nil(klua._normalize_request(3))
  end)
end)

describe("errors", function()
  it("wraps backend errors in tables with a __tostring", function()
    local klua = fresh()
    klua._set_backend((recording_backend({ request = function()
      return nil, { code = 409, reason = "Conflict", message = "the object has been modified" }
    end })))
    local obj, err = klua.get("v1", "Pod", "a", "b")
    assert.is_nil(obj)
    assert.is_true(klua.is_error(err))
    assert.equal(409, err.code)
    assert.equal("409 Conflict: the object has been modified", tostring(err))
    assert.is_true(klua.is_conflict(err))
    assert.is_false(klua.is_not_found(err))
    assert.is_false(klua.is_already_exists(err))
  end)

  it("wraps transport errors given as strings", function()
    local klua = fresh()
    klua._set_backend((recording_backend({ request = function() return nil, "connection refused" end })))
    local _, err = klua.get("v1", "Pod", "a", "b")
    assert.equal(0, err.code)
    assert.equal("error: connection refused", tostring(err))
    assert.is_false(klua.is_conflict(err))
  end)

  it("classifies by reason first, then by code", function()
    local klua = fresh()
    local e = klua.new_error
    assert.is_true(klua.is_already_exists(e(409, "AlreadyExists", "x")))
    assert.is_false(klua.is_conflict(e(409, "AlreadyExists", "x")))
    assert.is_true(klua.is_conflict(e(409, "", "x")))
    assert.is_true(klua.is_not_found(e(404, "Unknown", "x")))
    assert.is_true(klua.is_invalid(e(422, "Invalid")))
    assert.is_true(klua.is_forbidden(e(403, "Forbidden")))
    assert.is_true(klua.is_unauthorized(e(401, "")))
    assert.is_true(klua.is_too_many_requests(e(429, "TooManyRequests")))
    assert.is_true(klua.is_gone(e(410, "Expired")))
    assert.is_false(klua.is_not_found(nil))
    assert.is_false(klua.is_not_found("404"))
    assert.equal("NotFound", tostring(e(0, "NotFound")))
  end)
end)

describe("writes", function()
  local klua, calls
  before_each(function()
    klua = fresh()
    local b
    b, calls = recording_backend({ request = function(verb) return verb == "delete" or { ok = verb } end })
    klua._set_backend(b)
  end)

  local CM = { apiVersion = "v1", kind = "ConfigMap", metadata = { namespace = "ns", name = "cm" } }

  it("passes each verb to backend.request with normalised arguments", function()
    assert.same({ ok = "create" }, klua.create(CM))
    assert.same({ "request", "create", "v1", "ConfigMap", "ns", "cm", CM, {} }, calls[1])
    klua.update(CM, { field_manager = "me" })
    assert.same({ "request", "update", "v1", "ConfigMap", "ns", "cm", CM, { field_manager = "me" } }, calls[2])
    klua.update_status(CM)
    assert.equal("update_status", calls[3][2])
    klua.patch("v1", "ConfigMap", "ns", "cm", { data = { a = "1" } })
    assert.same({ type = "merge" }, calls[4][8])
    klua.patch("v1", "ConfigMap", "ns", "cm", '[{"op":"remove","path":"/data"}]', { type = "json" })
    assert.same({ type = "json" }, calls[5][8])
    klua.patch("v1", "ConfigMap", "ns", "cm", { status = {} }, { subresource = "status" })
    assert.same({ type = "merge", subresource = "status" }, calls[6][8])
    klua.apply(CM)
    assert.same({ field_manager = "klua", force = false }, calls[7][8])
    assert.is_true(klua.delete("v1", "ConfigMap", "ns", "cm", { propagation_policy = "Foreground",
      preconditions = { uid = "u" } }))
    assert.same({ "request", "delete", "v1", "ConfigMap", "ns", "cm", nil,
      { propagation_policy = "Foreground", preconditions = { uid = "u" } } }, calls[8])
    klua.get("v1", "ConfigMap", "ns", "cm")
    assert.same({ "request", "get", "v1", "ConfigMap", "ns", "cm", nil, {} }, calls[9])
  end)

  it("handles cluster-scoped objects and generateName", function()
    klua.get("v1", "Namespace", "n1")
    assert.same({ "request", "get", "v1", "Namespace", nil, "n1", nil, {} }, calls[1])
    klua.delete("v1", "Namespace", "n1")
    assert.same({ "request", "delete", "v1", "Namespace", nil, "n1", nil, {} }, calls[2])
    klua.delete("v1", "Namespace", "n1", { propagation_policy = "Orphan" })
    assert.same({ propagation_policy = "Orphan" }, calls[3][8])
    local gen = { apiVersion = "v1", kind = "Pod", metadata = { namespace = "a", generateName = "p-" } }
    klua.create(gen)
    assert.same({ "request", "create", "v1", "Pod", "a", nil, gen, {} }, calls[4])
  end)

  it("rejects malformed calls before reaching the backend", function()
    assert.has_error(function() klua.create({ kind = "ConfigMap", metadata = { name = "x" } }) end)
    assert.has_error(function() klua.create({ apiVersion = "v1", kind = "ConfigMap", metadata = {} }) end)
    assert.has_error(function() klua.update({ apiVersion = "v1", kind = "ConfigMap", metadata = { generateName = "x" } }) end)
    assert.has_error(function() klua.patch("v1", "ConfigMap", "ns", "cm", 5) end)
    assert.has_error(function() klua.patch("v1", "ConfigMap", "ns", "cm", {}, { type = "apply" }) end)
    assert.has_error(function() klua.patch("v1", "ConfigMap", "ns", "cm", {}, { subresource = "scale" }) end)
    assert.has_error(function() klua.apply(CM, { force = "yes" }) end)
    assert.has_error(function() klua.delete("v1", "ConfigMap", "ns", "cm", { propagation_policy = "Now" }) end)
    assert.has_error(function() klua.delete("v1", "ConfigMap", "ns", "cm", { preconditions = { rv = "1" } }) end)
    assert.has_error(function() klua.update(CM, { dry = true }) end)
    assert.equal(0, #calls)
  end)
end)

describe("events, logs, getenv and time", function()
  it("sends events and logs to the backend, validating arguments", function()
    local klua = fresh()
    local b, calls = recording_backend()
    klua._set_backend(b)
    local obj = { kind = "Pod", metadata = { name = "p" } }
    klua.event(obj, "Warning", "Failed", "boom")
    assert.same({ "event", obj, "Warning", "Failed", "boom" }, calls[1])
    klua.event(obj, "Normal", "Ok")
    assert.same({ "event", obj, "Normal", "Ok", "" }, calls[2])
    assert.has_error(function() klua.event(obj, "Info", "x", "y") end)
    assert.has_error(function() klua.event(obj, "Normal", "", "y") end)
    klua.log.info("hello", { a = 1 })
    assert.same({ "log", "info", "hello", { a = 1 } }, calls[3])
    for _, level in ipairs({ "error", "warn", "debug" }) do
      klua.log[level]("m")
      assert.same({ "log", level, "m" }, calls[#calls])
    end
    assert.has_error(function() klua.log.info(42) end)
    assert.has_error(function() klua.log.info("x", "fields") end)
  end)

  it("getenv uses the backend and falls back to the default", function()
    local env = t.new({ env = { A = "1" } })
    assert.equal("1", env.klua.getenv("A", "d"))
    assert.equal("d", env.klua.getenv("B", "d"))
    assert.is_nil(env.klua.getenv("B"))
    local inherit = t.new({ inherit_env = true })
    assert.equal(os.getenv("PATH"), inherit.klua.getenv("PATH"))
    assert.has_error(function() env.klua.getenv() end)
  end)

  it("formats and parses RFC 3339 times", function()
    local klua = fresh()
    assert.equal("2023-11-14T22:13:20Z", klua.format_time(1700000000))
    assert.equal("1970-01-01T00:00:00Z", klua.format_time(0.9))
    assert.equal(1700000000, klua.parse_time("2023-11-14T22:13:20Z"))
    assert.equal(1700000000.5, klua.parse_time("2023-11-14T22:13:20.5Z"))
    assert.equal(1700000000, klua.parse_time("2023-11-15T00:13:20+02:00"))
    assert.equal(951782400, klua.parse_time("2000-02-29T00:00:00Z"))
    assert.is_nil(klua.parse_time("2023-11-14 nope"))
    assert.is_nil(klua.parse_time("2023-13-14T22:13:20Z"))
    assert.is_nil(klua.parse_time(5))
    assert.equal(1700000000, klua.now())
  end)

  it("raises a clear error when no backend is installed", function()
    local saved = { klua = package.loaded["klua"] }
    package.loaded["klua"] = nil
    for _, m in ipairs({ "klua.log", "klua.meta", "klua.conditions", "klua.finalizers" }) do
      saved[m] = package.loaded[m]; package.loaded[m] = nil
    end
    local klua = require("klua")
    local ok, err = pcall(klua.get, "v1", "Pod", "a", "b")
    assert.is_false(ok)
    assert.matches("no backend installed", err, 1, true)
    for m, v in pairs(saved) do package.loaded[m] = v end
  end)

  it("loads klua.json lazily", function()
    local klua = fresh()
    if not klua.have_core then return end
    assert.equal('{"a":[]}', klua.json.encode({ a = setmetatable({}, klua.array_mt) }))
    assert.equal(klua.null, klua.json.decode("null"))
  end)

  it("checks the backend it is given", function()
    local klua = fresh()
    assert.has_error(function() klua._set_backend({}) end)
    local b = recording_backend()
    local prev = klua._set_backend(b)
    assert.equal(b, klua._backend())
    assert.equal(b, klua._set_backend(prev))
  end)
end)
