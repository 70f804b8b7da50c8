-- klua.testing: the fake backend script authors test against.
local t = require("klua.testing")

local ROOT = os.getenv("KLUA_ROOT") or "."
local EXAMPLE = ROOT .. "/examples/testing/annotate.lua"

local function cm(ns, name, labels, data)
  return { apiVersion = "v1", kind = "ConfigMap",
           metadata = { namespace = ns, name = name, labels = labels }, data = data }
end

local function pod(ns, name, node, labels)
  return { apiVersion = "v1", kind = "Pod", metadata = { namespace = ns, name = name, labels = labels },
           spec = { nodeName = node, priority = 5 } }
end

describe("klua.testing.load", function()
  it("runs the example end to end", function()
    local env = t.load(EXAMPLE)
    env:add(cm("a", "one", { annotate = "true" }, { x = "1", y = "2", z = "3" }),
            cm("a", "plain", nil, { x = "1" }))
    local ok, res = env:reconcile("annotate", { namespace = "a", name = "one" })
    assert.is_true(ok, res)
    local calls = env.client.calls
    assert.equal(2, #calls)
    assert.same({ "update", "v1", "ConfigMap", "a", "one" },
      { calls[1].verb, calls[1].api_version, calls[1].kind, calls[1].namespace, calls[1].name })
    assert.equal("3", env:object("v1", "ConfigMap", "a", "one").metadata.annotations["example.com/keys"])
    assert.equal("x,y,z", env:object("v1", "ConfigMap", "a", "one-summary").data.keys)
    assert.same({ type = "Normal", reason = "Annotated", message = "example.com/keys=3",
                  object = { apiVersion = "v1", kind = "ConfigMap", namespace = "a", name = "one",
                             uid = env:object("v1", "ConfigMap", "a", "one").metadata.uid } }, env.events[1])
    assert.same({ level = "info", msg = "annotated", fields = { key = "a/one", keys = "3" } }, env.logs[1])
    -- the label-filtered cache does not hold the unlabelled ConfigMap
    ok = env:reconcile("a/plain")
    assert.is_true(ok)
    assert.equal(2, #env.client.calls)
  end)

  it("isolates environments: separate registries, state and configuration", function()
    local a = t.load(EXAMPLE, { env = { ANNOTATION = "a" } })
    local b = t.load(EXAMPLE, { env = { ANNOTATION = "b" } })
    assert.are_not.equal(a.klua, b.klua)
    assert.equal(1, #a:controllers())
    assert.equal(1, #b:controllers())
    a:add(cm("n", "c", { annotate = "true" }, {}))
    assert.is_nil(b:object("v1", "ConfigMap", "n", "c"))
    assert.is_true((a:reconcile("n/c")))
    assert.equal("0", a:object("v1", "ConfigMap", "n", "c").metadata.annotations.a)
    -- script globals stay in the script's environment
    assert.is_nil(rawget(_G, "ANNOTATION"))
  end)

  it("raises when the script fails to load or does not exist", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write('local klua = require("klua")\nklua.controller({ watch = { kind = "Pod" }, reconcile = function() end })\n')
    f:close()
    local ok, err = pcall(t.load, path)
    os.remove(path)
    assert.is_false(ok)
    assert.matches("watch.api_version must be a non-empty string", err, 1, true)
    assert.has_error(function() t.load("/nonexistent/script.lua") end)
  end)
end)

describe("reconcile and hooks", function()
  local env, k
  local last_req
  before_each(function()
    env = t.new()
    k = env.klua
    k.controller({
      name = "pods",
      watch = { api_version = "v1", kind = "Pod" },
      reconcile = function(req)
        last_req = req
        if req.name == "boom" then error("exploded") end
        if req.name == "bad" then return 42 end
        if req.name == "later" then return k.requeue_after(5) end
        if req.name == "mutate" then
          local p = k.cache("v1", "Pod"):get(req.namespace, req.name)
          p.metadata.labels = { touched = "yes" }
        end
        if req.name == "copy" then
          local p = k.deepcopy(k.cache("v1", "Pod"):get(req.namespace, req.name))
          p.metadata.labels = { touched = "yes" }
        end
      end,
      on_delete = function(obj, info) return obj.metadata.name .. ":" .. tostring(info and info.key) end,
    })
    k.controller({ name = "other", watch = { api_version = "v1", kind = "Node" }, reconcile = function() end })
  end)

  it("passes a normalised request", function()
    assert.is_true((env:reconcile("pods", "ns/x")))
    assert.same({ namespace = "ns", name = "x", key = "ns/x" }, last_req)
  end)

  it("reports errors, bad results and requeue_after", function()
    local ok, err = env:reconcile("pods", "ns/boom")
    assert.is_false(ok)
    assert.matches("exploded", err, 1, true)
    ok, err = env:reconcile("pods", "ns/bad")
    assert.is_false(ok)
    assert.matches("reconcile returned 42", err, 1, true)
    local res
    ok, res = env:reconcile("pods", "ns/later")
    assert.is_true(ok)
    assert.same({ requeue_after = 5 }, res)
  end)

  it("detects a reconcile that modifies a cached object, and restores it", function()
    env:add(pod("ns", "mutate"), pod("ns", "copy"))
    local ok, err = env:reconcile("pods", "ns/mutate")
    assert.is_false(ok)
    assert.matches("modified the cached object Pod ns/mutate", err, 1, true)
    assert.is_nil(k.cache("v1", "Pod"):get("ns", "mutate").metadata.labels)
    assert.is_true((env:reconcile("pods", "ns/copy")))
  end)

  it("needs a controller name when there are several", function()
    assert.has_error(function() env:reconcile("ns/x") end)
    assert.has_error(function() env:reconcile("nope", "ns/x") end)
  end)

  it("runs hooks", function()
    local ok, res = env:hook("pods", "on_delete", pod("ns", "p"), { key = "ns/p" })
    assert.is_true(ok)
    assert.equal("p:ns/p", res)
    assert.has_error(function() env:hook("pods", "on_add", pod("ns", "p")) end)
  end)
end)

describe("fake caches", function()
  local env, k
  before_each(function()
    env = t.new()
    k = env.klua
    k.cache("v1", "Pod", {})
    k.cache("v1", "Pod", { namespace = "a", label_selector = "app=web" })
    k.cache("v1", "Pod", { field_selector = "spec.nodeName=n1" })
    k.index("v1", "Pod", "node", { field = "spec.nodeName" })
    k.index("v1", "Pod", "prio", { field = "spec.priority" })
    k.index("v1", "Pod", "app", { label = "app" })
    k.index("v1", "Pod", "ns", { namespace = true })
    k.index("v1", "Pod", "owner", { owner = "uid" })
    k.index("v1", "Pod", "ownerkn", { owner = "kindname" })
    k.index("v1", "Pod", "letters", function(p)
      local out = {}
      for c in p.metadata.name:gmatch("%a") do out[#out + 1] = c end
      return out
    end)
    env:add(pod("a", "ab", "n1", { app = "web" }), pod("a", "b", "n2", { app = "db" }),
            pod("b", "c", "n1", { app = "web" }))
  end)

  it("filters by the declared namespace, label and field selectors", function()
    local all = k.cache("v1", "Pod")
    local web = k.cache("v1", "Pod", { namespace = "a", label_selector = "app=web" })
    local n1 = k.cache("v1", "Pod", { field_selector = "spec.nodeName=n1" })
    local function names(list)
      local out = {}
      for i, o in ipairs(list) do out[i] = o.metadata.namespace .. "/" .. o.metadata.name end
      return out
    end
    assert.same({ "a/ab", "a/b", "b/c" }, names(all:list()))
    assert.same({ "a/ab" }, names(web:list()))
    assert.same({ "a/ab", "b/c" }, names(n1:list()))
    assert.is_nil(web:get("a", "b"))
    assert.equal("b", all:get("a", "b").metadata.name)
  end)

  it("honours namespace and label_selector in list", function()
    local all = k.cache("v1", "Pod")
    assert.equal(2, #all:list({ namespace = "a" }))
    assert.equal(2, #all:list({ label_selector = "app in (web)" }))
    assert.equal(1, #all:list({ namespace = "a", label_selector = { app = "db" } }))
    assert.equal(0, #all:list({ namespace = "zz" }))
  end)

  it("computes field, label, namespace, owner and function indexes", function()
    local all = k.cache("v1", "Pod")
    assert.equal(2, #all:by_index("node", "n1"))
    assert.same({ "n1", "n2" }, all:index_values("node"))
    assert.same({ "5" }, all:index_values("prio"))
    assert.equal(3, #all:by_index("prio", 5))
    assert.equal(0, #all:by_index("prio", "6"))
    assert.same({ "db", "web" }, all:index_values("app"))
    assert.same({ "a", "b" }, all:index_values("ns"))
    assert.same({ "a", "b", "c" }, all:index_values("letters"))
    assert.equal(2, #all:by_index("letters", "b"))
    assert.same({}, all:index_values("owner"))
    local owned = pod("a", "owned", "n3")
    owned.metadata.ownerReferences = { { apiVersion = "apps/v1", kind = "ReplicaSet", name = "rs", uid = "u-rs", controller = true } }
    env:add(owned)
    assert.same({ "u-rs" }, all:index_values("owner"))
    assert.equal("owned", all:by_index("ownerkn", "ReplicaSet/rs")[1].metadata.name)
  end)

  it("reports a bad index function", function()
    local e2 = t.new()
    e2.klua.cache("v1", "Pod", {})
    e2.klua.index("v1", "Pod", "bad", function() return { 1 } end)
    e2:add(pod("a", "p"))
    assert.has_error(function() e2.klua.cache("v1", "Pod"):by_index("bad", "1") end)
  end)

  it("sees the script's writes only after sync", function()
    assert(k.create(pod("a", "new", "n1", { app = "web" })))
    assert.is_nil(k.cache("v1", "Pod"):get("a", "new"))
    assert.is_false(env:cached("v1", "Pod", "a", "new"))
    env:sync()
    assert.equal("new", k.cache("v1", "Pod"):get("a", "new").metadata.name)
    assert.truthy(k.cache("v1", "Pod", { namespace = "a", label_selector = "app=web" }):get("a", "new"))
    assert(k.delete("v1", "Pod", "a", "new"))
    assert.truthy(k.cache("v1", "Pod"):get("a", "new"))
    env:sync()
    assert.is_nil(k.cache("v1", "Pod"):get("a", "new"))
  end)

  it("keeps stale caches with server_set until sync", function()
    local p = env:object("v1", "Pod", "a", "b")
    p.metadata.labels.app = "web"
    env:server_set(p)
    local web = k.cache("v1", "Pod", { namespace = "a", label_selector = "app=web" })
    assert.is_nil(web:get("a", "b"))
    env:sync()
    assert.truthy(web:get("a", "b"))
    env:server_remove("v1", "Pod", "a", "b")
    assert.truthy(web:get("a", "b"))
    env:sync()
    assert.is_nil(web:get("a", "b"))
  end)

  it("set moves an object between filtered caches; remove drops it everywhere", function()
    local web = k.cache("v1", "Pod", { namespace = "a", label_selector = "app=web" })
    local p = env:object("v1", "Pod", "a", "ab")
    p.metadata.labels = { app = "db" }
    env:set(p)
    assert.is_nil(web:get("a", "ab"))
    assert.equal("db", k.cache("v1", "Pod"):get("a", "ab").metadata.labels.app)
    assert.is_true(env:remove(p))
    assert.is_false(env:remove("v1", "Pod", "a", "ab"))
    assert.is_nil(k.cache("v1", "Pod"):get("a", "ab"))
    assert.has_error(function() env:add(pod("a", "b")) end) -- already there
  end)
end)

describe("fake API server", function()
  local env, k
  before_each(function()
    env = t.new({ now = 1700000000 })
    k = env.klua
  end)

  it("create assigns uid, resourceVersion, creationTimestamp; get reads back", function()
    local p = assert(k.create(pod("a", "p")))
    assert.matches("^%x+%-", p.metadata.uid)
    assert.equal("2023-11-14T22:13:20Z", p.metadata.creationTimestamp)
    assert.equal(1, p.metadata.generation)
    assert.same(p, k.get("v1", "Pod", "a", "p"))
    local _, err = k.create(pod("a", "p"))
    assert.is_true(k.is_already_exists(err))
    assert.equal('pods "p" already exists', err.message)
    _, err = k.get("v1", "Pod", "a", "zz")
    assert.is_true(k.is_not_found(err))
    assert.equal('404 NotFound: pods "zz" not found', tostring(err))
  end)

  it("generates names", function()
    local a = assert(k.create({ apiVersion = "v1", kind = "Pod", metadata = { namespace = "a", generateName = "p-" } }))
    local b = assert(k.create({ apiVersion = "v1", kind = "Pod", metadata = { namespace = "a", generateName = "p-" } }))
    assert.matches("^p%-%l%l%l%l%l$", a.metadata.name)
    assert.are_not.equal(a.metadata.name, b.metadata.name)
    assert.equal(2, #env:objects("v1", "Pod"))
  end)

  it("update checks resourceVersion, keeps status and bumps generation on spec changes", function()
    local p = assert(k.create(pod("a", "p")))
    local s = k.deepcopy(p)
    s.status = { phase = "Running" }
    local with_status = assert(k.update_status(s))
    assert.equal("Running", with_status.status.phase)
    assert.equal(1, with_status.metadata.generation)
    local _, err = k.update(p) -- p carries the old resourceVersion
    assert.is_true(k.is_conflict(err))
    local u = k.deepcopy(with_status)
    u.spec.nodeName = "n9"
    u.status = nil
    local updated = assert(k.update(u))
    assert.equal("n9", updated.spec.nodeName)
    assert.equal("Running", updated.status.phase) -- update ignores status
    assert.equal(2, updated.metadata.generation)
    assert.equal(p.metadata.uid, updated.metadata.uid)
    local label_only = k.deepcopy(updated)
    label_only.metadata.labels = { x = "y" }
    assert.equal(2, assert(k.update(label_only)).metadata.generation)
    local _, e2 = k.update(pod("a", "missing"))
    assert.is_true(k.is_not_found(e2))
  end)

  it("applies merge, json and strategic patches", function()
    assert(k.create({ apiVersion = "v1", kind = "ConfigMap", metadata = { namespace = "a", name = "c",
      labels = { keep = "1", drop = "2" } }, data = { a = "1" } }))
    local r = assert(k.patch("v1", "ConfigMap", "a", "c", { metadata = { labels = { drop = k.null, new = "3" } } }))
    assert.same({ keep = "1", new = "3" }, r.metadata.labels)
    r = assert(k.patch("v1", "ConfigMap", "a", "c", {
      { op = "add", path = "/data/b", value = "2" },
      { op = "replace", path = "/data/a", value = "x" },
      { op = "remove", path = "/metadata/labels/keep" },
      { op = "copy", from = "/data/b", path = "/data/c" },
      { op = "move", from = "/data/c", path = "/data/d" },
    }, { type = "json" }))
    assert.same({ a = "x", b = "2", d = "2" }, r.data)
    assert.same({ new = "3" }, r.metadata.labels)
    local _, err = k.patch("v1", "ConfigMap", "a", "c", {
      { op = "test", path = "/metadata/resourceVersion", value = "1" },
      { op = "remove", path = "/data" } }, { type = "json" })
    assert.is_true(k.is_invalid(err))
    assert.truthy(env:object("v1", "ConfigMap", "a", "c").data) -- nothing applied
    _, err = k.patch("v1", "ConfigMap", "a", "c", { { op = "remove", path = "/nope/x" } }, { type = "json" })
    assert.is_true(k.is_invalid(err))
    -- a merge patch carrying a stale resourceVersion conflicts
    _, err = k.patch("v1", "ConfigMap", "a", "c", { metadata = { resourceVersion = "1" }, data = { z = "z" } })
    assert.is_true(k.is_conflict(err))

    assert(k.create({ apiVersion = "apps/v1", kind = "Deployment", metadata = { namespace = "a", name = "d" },
      spec = { template = { spec = { containers = { { name = "app", image = "v1" }, { name = "side", image = "s1" } } } } } }))
    local d = assert(k.patch("apps/v1", "Deployment", "a", "d",
      { spec = { template = { spec = { containers = { { name = "app", image = "v2" } } } } } }, { type = "strategic" }))
    local cs = d.spec.template.spec.containers
    assert.equal(2, #cs)
    assert.equal("v2", cs[1].image)
    assert.equal("s1", cs[2].image)
    assert.equal(2, d.metadata.generation)
    local _, e3 = k.patch("v1", "ConfigMap", "a", "missing", { data = {} })
    assert.is_true(k.is_not_found(e3))
  end)

  it("patches only status with subresource = status", function()
    assert(k.create(pod("a", "p")))
    local r = assert(k.patch("v1", "Pod", "a", "p", { status = { phase = "Done" }, spec = { nodeName = "x" } },
      { subresource = "status" }))
    assert.equal("Done", r.status.phase)
    assert.is_nil(r.spec.nodeName)
    r = assert(k.patch("v1", "Pod", "a", "p", { status = { phase = "Other" } }))
    assert.equal("Done", r.status.phase) -- the main resource ignores status
  end)

  it("accepts patches given as JSON text", function()
    if not k.have_core then return end
    assert(k.create(cm("a", "c", nil, { a = "1" })))
    local r = assert(k.patch("v1", "ConfigMap", "a", "c", '{"data":{"a":null,"b":"2"}}'))
    assert.same({ b = "2" }, r.data)
    local _, err = k.patch("v1", "ConfigMap", "a", "c", '{"data":')
    assert.equal(400, err.code)
  end)

  it("apply creates, then merges", function()
    local a = assert(k.apply(cm("a", "c", { x = "1" }, { a = "1" })))
    assert.equal("1", a.data.a)
    local b = assert(k.apply(cm("a", "c", nil, { b = "2" }), { field_manager = "me", force = true }))
    assert.same({ a = "1", b = "2" }, b.data)
    assert.equal(a.metadata.uid, b.metadata.uid)
    assert.same({ field_manager = "me", force = true }, env:calls("apply")[2].opts)
  end)

  it("delete honours finalizers, preconditions and garbage collection", function()
    local owner = assert(k.create(cm("a", "owner")))
    local child = cm("a", "child")
    assert(k.meta.set_controller_reference(owner, child))
    assert(k.create(child))
    local orphan = cm("a", "orphan")
    assert(k.meta.set_controller_reference(owner, orphan))
    orphan.metadata.ownerReferences[2] = { apiVersion = "v1", kind = "ConfigMap", name = "child",
      uid = env:object("v1", "ConfigMap", "a", "child").metadata.uid }
    assert(k.create(orphan))
    local _, err = k.delete("v1", "ConfigMap", "a", "owner", { preconditions = { uid = "other" } })
    assert.is_true(k.is_conflict(err))
    _, err = k.delete("v1", "ConfigMap", "a", "owner", { preconditions = { resource_version = "999" } })
    assert.is_true(k.is_conflict(err))
    assert.is_true(k.delete("v1", "ConfigMap", "a", "owner", { preconditions = { uid = owner.metadata.uid } }))
    assert.is_nil(env:object("v1", "ConfigMap", "a", "owner"))
    -- the child had one owner: collected, and with it the orphan's last owner
    assert.is_nil(env:object("v1", "ConfigMap", "a", "child"))
    assert.is_nil(env:object("v1", "ConfigMap", "a", "orphan"))
    _, err = k.delete("v1", "ConfigMap", "a", "owner")
    assert.is_true(k.is_not_found(err))
  end)

  it("delete with Orphan keeps dependents and removes the reference", function()
    local owner = assert(k.create(cm("a", "owner")))
    local child = cm("a", "child")
    assert(k.meta.set_controller_reference(owner, child))
    assert(k.create(child))
    assert.is_true(k.delete("v1", "ConfigMap", "a", "owner", { propagation_policy = "Orphan" }))
    assert.same({}, env:object("v1", "ConfigMap", "a", "child").metadata.ownerReferences)
  end)

  it("delete of an object with finalizers sets deletionTimestamp once", function()
    local c = cm("a", "c")
    c.metadata.finalizers = { "f" }
    assert(k.create(c))
    env:advance(10)
    assert.is_true(k.delete("v1", "ConfigMap", "a", "c"))
    local o = env:object("v1", "ConfigMap", "a", "c")
    assert.equal("2023-11-14T22:13:30Z", o.metadata.deletionTimestamp)
    env:advance(10)
    assert.is_true(k.delete("v1", "ConfigMap", "a", "c"))
    assert.equal("2023-11-14T22:13:30Z", env:object("v1", "ConfigMap", "a", "c").metadata.deletionTimestamp)
    o.metadata.finalizers = {}
    assert(k.update(o))
    assert.is_nil(env:object("v1", "ConfigMap", "a", "c"))
  end)

  it("handles cluster-scoped objects", function()
    assert(k.create({ apiVersion = "v1", kind = "Namespace", metadata = { name = "team" } }))
    assert.equal("team", k.get("v1", "Namespace", "team").metadata.name)
    assert.equal("team", env:object("v1", "Namespace", "team").metadata.name)
    assert.is_true(k.delete("v1", "Namespace", "team"))
    assert.same({}, env:objects("v1", "Namespace"))
  end)

  it("records calls, including failed ones, and injects failures in order", function()
    env:fail_next("create", 409)
    env:fail_next("create", { code = 500, message = "etcd down" })
    env:fail_next("*", "Forbidden", { name = "special" })
    local _, e1 = k.create(cm("a", "x"))
    local _, e2 = k.create(cm("a", "x"))
    assert.equal("409 Conflict: injected error 409", tostring(e1))
    assert.equal("500 InternalError: etcd down", tostring(e2))
    assert(k.create(cm("a", "x")))
    local _, e3 = k.get("v1", "ConfigMap", "a", "special")
    assert.is_true(k.is_forbidden(e3))
    assert.equal(4, #env.client.calls)
    assert.equal(e1, env.client.calls[1].err)
    assert.is_nil(env.client.calls[3].err)
    assert.equal(3, #env:calls("create"))
    env:clear()
    assert.same({}, env.client.calls)
  end)

  it("records call bodies as copies", function()
    local c = cm("a", "x", nil, { a = "1" })
    assert(k.create(c))
    c.data.a = "changed"
    assert.equal("1", env.client.calls[1].body.data.a)
  end)
end)

describe("enqueued", function()
  it("maps primary, owned and watched objects to requests", function()
    local env = t.new()
    local k = env.klua
    k.controller({
      name = "rs",
      watch = { api_version = "apps/v1", kind = "ReplicaSet", label_selector = "managed=yes" },
      owns = { { api_version = "v1", kind = "Pod" } },
      watches = { { api_version = "v1", kind = "Node",
                    map = function(node) return { "ns1/" .. node.metadata.name, { namespace = "ns2", name = "x" } } end } },
      reconcile = function() end,
    })
    local rs = { apiVersion = "apps/v1", kind = "ReplicaSet",
                 metadata = { namespace = "ns", name = "web", uid = "u1", labels = { managed = "yes" } } }
    assert.same({ { controller = "rs", namespace = "ns", name = "web", key = "ns/web" } }, env:enqueued(rs))
    rs.metadata.labels.managed = "no"
    assert.same({}, env:enqueued(rs))
    rs.metadata.labels.managed = "yes"
    local p = { apiVersion = "v1", kind = "Pod", metadata = { namespace = "ns", name = "web-1" } }
    assert.same({}, env:enqueued(p))
    assert(k.meta.set_controller_reference(rs, p))
    assert.same({ { controller = "rs", namespace = "ns", name = "web", key = "ns/web" } }, env:enqueued(p))
    local node = { apiVersion = "v1", kind = "Node", metadata = { name = "n1" } }
    local reqs = env:enqueued(node)
    assert.equal(2, #reqs)
    assert.equal("ns1/n1", reqs[1].key)
    assert.equal("ns2/x", reqs[2].key)
  end)
end)
