-- How to unit-test a controller script: load it with klua.testing, put
-- objects in the fake cluster, call reconcile, and check what it did.
-- Run from the repository root:
--   LUA_PATH='lua/?.lua;;' busted --lua=luajit examples/testing/annotate_spec.lua
-- (with LUA_CPATH='build/?.so;;' the C JSON module is used; it is optional.)
local t = require("klua.testing")

local SCRIPT = "examples/testing/annotate.lua"

local function configmap(ns, name, data, labels)
  return { apiVersion = "v1", kind = "ConfigMap",
           metadata = { namespace = ns, name = name, labels = labels or { annotate = "true" } },
           data = data }
end

describe("annotate controller", function()
  local env
  before_each(function()
    env = t.load(SCRIPT, { env = { ANNOTATION = "test/keys" } })
  end)

  it("declares one controller on labelled ConfigMaps that owns ConfigMaps", function()
    local c = env:controllers()[1]
    assert.equal("annotate", c.name)
    assert.equal("annotate=true", c.label_selector)
    assert.equal("ConfigMap", c.owns[1].kind)
  end)

  it("annotates the ConfigMap and creates its summary", function()
    env:add(configmap("apps", "web", { a = "1", b = "2" }))
    local ok, res = env:reconcile({ namespace = "apps", name = "web" })
    assert.is_true(ok, res)
    assert.is_nil(res) -- done, nothing to requeue

    local calls = env.client.calls
    assert.equal(2, #calls)
    assert.equal("update", calls[1].verb)
    assert.equal("2", calls[1].body.metadata.annotations["test/keys"])
    assert.equal("create", calls[2].verb)

    local web = env:object("v1", "ConfigMap", "apps", "web")
    assert.equal("2", web.metadata.annotations["test/keys"])
    local summary = env:object("v1", "ConfigMap", "apps", "web-summary")
    assert.equal("a,b", summary.data.keys)
    assert.is_true(env.klua.meta.is_controlled_by(summary, web))

    assert.equal("Annotated", env.events[1].reason)
  end)

  it("does nothing once the cluster is in the desired state", function()
    env:add(configmap("apps", "web", { a = "1" }))
    assert.is_true((env:reconcile("apps/web")))
    env:sync()  -- let the caches see the writes, as the informers would
    env:clear() -- forget recorded calls
    assert.is_true((env:reconcile("apps/web")))
    assert.same({}, env.client.calls)
  end)

  it("ignores a ConfigMap that is gone", function()
    local ok, res = env:reconcile("apps/missing")
    assert.is_true(ok)
    assert.is_nil(res)
    assert.equal(0, #env.client.calls)
  end)

  it("requeues on a conflict", function()
    env:add(configmap("apps", "web", { a = "1" }))
    env:fail_next("update", "Conflict")
    local ok, res = env:reconcile("apps/web")
    assert.is_true(ok)
    assert.equal(env.klua.requeue, res)
  end)

  it("retries later when the summary cannot be written", function()
    env:add(configmap("apps", "web", { a = "1" }))
    env:fail_next("create", 403)
    local ok, res = env:reconcile("apps/web")
    assert.is_true(ok)
    assert.same({ requeue_after = 10 }, res)
    assert.equal("warn", env.logs[#env.logs].level)
  end)

  it("enqueues the owner when a summary changes", function()
    env:add(configmap("apps", "web", { a = "1" }))
    env:reconcile("apps/web")
    local summary = env:object("v1", "ConfigMap", "apps", "web-summary")
    local reqs = env:enqueued(summary)
    assert.equal(1, #reqs)
    assert.equal("apps/web", reqs[1].key)
  end)

  it("reads its configuration with klua.getenv", function()
    local other = t.load(SCRIPT, { env = { WATCH_NAMESPACE = "only" } })
    assert.equal("only", other:controllers()[1].namespace)
    other:add(configmap("only", "x", { k = "v" }))
    assert.is_true((other:reconcile("only/x")))
    assert.equal("1", other:object("v1", "ConfigMap", "only", "x").metadata.annotations["example.com/keys"])
  end)
end)
