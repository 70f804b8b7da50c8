-- The pure-Lua helpers: selector, deepcopy, meta, conditions, finalizers.
local t = require("klua.testing")
local klua = require("klua")
local sel = require("klua.selector")
local deepcopy = require("klua.deepcopy")

describe("klua.selector", function()
  it("builds sorted equality selectors and rejects invalid labels", function()
    assert.equal("app=x,tier=y", sel.build({ tier = "y", app = "x" }))
    assert.equal("", sel.build({}))
    assert.equal("example.com/role=db", sel.build({ ["example.com/role"] = "db" }))
    assert.equal("a=", sel.build({ a = "" }))
    assert.has_error(function() sel.build({ a = 1 }) end)
    assert.has_error(function() sel.build({ ["bad key"] = "x" }) end)
    assert.has_error(function() sel.build({ a = "-bad" }) end)
    assert.has_error(function() sel.build({ a = string.rep("x", 64) }) end)
    assert.has_error(function() sel.build("app=x") end)
  end)

  local labels = { app = "web", tier = "front", version = "3", empty = "" }

  local cases = {
    { "", true },
    { "app=web", true },
    { "app==web", true },
    { "app=api", false },
    { "app!=api", true },
    { "app!=web", false },
    { "missing!=x", true },          -- != matches a missing label
    { "app", true },
    { "missing", false },
    { "!missing", true },
    { "!app", false },
    { "app in (web,api)", true },
    { "app in (api)", false },
    { "app notin (api,db)", true },
    { "app notin (web)", false },
    { "missing notin (x)", true },   -- notin matches a missing label
    { "missing in (x)", false },
    { "version>2", true },
    { "version>3", false },
    { "version<4", true },
    { "app>1", false },              -- not an integer: no match
    { "missing<4", false },
    { "empty=", true },
    { "empty in (,x)", true },
    { "app=web,tier=front", true },
    { "app=web,tier=back", false },
    { " app = web , !missing , tier in ( front , back ) ", true },
  }
  for _, c in ipairs(cases) do
    it("matches " .. string.format("%q", c[1]) .. " -> " .. tostring(c[2]), function()
      assert.equal(c[2], sel.matches(c[1], labels))
    end)
  end

  it("treats nil and null labels as no labels", function()
    assert.is_true(sel.matches("!app", nil))
    assert.is_false(sel.matches("app", klua.null))
    assert.is_true(sel.matches("", nil))
  end)

  it("accepts a table of labels as an equality selector", function()
    assert.is_true(sel.matches({ app = "web" }, labels))
    assert.is_false(sel.matches({ app = "web", tier = "back" }, labels))
  end)

  it("rejects syntax errors with a message", function()
    for _, bad in ipairs({ "app in", "app in ()", "app in (a", "app in a", "=x", "app=web=x",
                           "!", "app,", ",app", "bad key=x", "a=-x", "version>x", "a!b", "app notin" }) do
      local s, err = sel.parse(bad)
      assert.is_nil(s, bad)
      assert.is_string(err)
      assert.has_error(function() sel.matches(bad, labels) end)
    end
  end)

  it("canonicalises: sorted by key, == as =, values sorted and deduplicated", function()
    assert.equal("a in (x,y),b=1,!c", sel.canonical("!c, b==1, a in (y,x,y)"))
    assert.equal("", sel.canonical("  "))
    assert.equal(sel.canonical("x=1,y=2"), sel.canonical("y=2,x=1"))
    assert.is_nil(sel.canonical("a in"))
  end)

  it("converts metav1.LabelSelector tables", function()
    assert.equal("app=web,env in (prod,stage),!legacy,tier",
      sel.from_label_selector({
        matchLabels = { app = "web" },
        matchExpressions = {
          { key = "env", operator = "In", values = { "stage", "prod" } },
          { key = "legacy", operator = "DoesNotExist" },
          { key = "tier", operator = "Exists" },
        },
      }))
    assert.equal("a notin (b)", sel.from_label_selector({ matchExpressions = { { key = "a", operator = "NotIn", values = { "b" } } } }))
    assert.equal("", sel.from_label_selector({}))
    local s, err = sel.from_label_selector(nil)
    assert.is_nil(s)
    assert.matches("selects no objects", err, 1, true)
    assert.is_nil(sel.from_label_selector(klua.null))
    assert.is_nil(sel.from_label_selector({ matchExpressions = { { key = "a", operator = "Equals", values = { "b" } } } }))
    assert.is_nil(sel.from_label_selector({ matchExpressions = { { key = "a", operator = "In", values = {} } } }))
    assert.is_nil(sel.from_label_selector({ matchExpressions = { { key = "a", operator = "Exists", values = { "x" } } } }))
    assert.is_nil(sel.from_label_selector({ matchLabels = { a = "bad value" } }))
  end)

  it("round-trips from_label_selector output through matches", function()
    local s = sel.from_label_selector({ matchLabels = { app = "web" },
      matchExpressions = { { key = "version", operator = "NotIn", values = { "1", "2" } } } })
    assert.is_true(sel.matches(s, labels))
    assert.is_false(sel.matches(s, { app = "web", version = "2" }))
  end)
end)

describe("klua.deepcopy", function()
  it("copies deeply, keeps object/array marks and null, and is writable", function()
    local orig = {
      metadata = setmetatable({ name = "x", labels = setmetatable({}, klua.object_mt) }, klua.object_mt),
      items = setmetatable({ 1, 2, setmetatable({ 3 }, klua.array_mt) }, klua.array_mt),
      gone = klua.null,
    }
    local c = deepcopy(orig)
    assert.are_not.equal(orig, c)
    assert.are_not.equal(orig.metadata, c.metadata)
    assert.same(orig, c)
    assert.equal(klua.object_mt, getmetatable(c.metadata))
    assert.equal(klua.object_mt, getmetatable(c.metadata.labels))
    assert.equal(klua.array_mt, getmetatable(c.items))
    assert.equal(klua.array_mt, getmetatable(c.items[3]))
    assert.equal(klua.null, c.gone)
    c.metadata.name = "y"
    assert.equal("x", orig.metadata.name)
  end)

  it("preserves shared subtables and cycles", function()
    local shared = { v = 1 }
    local t1 = { a = shared, b = shared }
    t1.self = t1
    local c = deepcopy(t1)
    assert.equal(c.a, c.b)
    assert.are_not.equal(shared, c.a)
    assert.equal(c, c.self)
  end)

  it("returns non-tables unchanged", function()
    assert.equal(5, deepcopy(5))
    assert.equal("s", deepcopy("s"))
    assert.is_nil(deepcopy(nil))
    assert.equal(klua.null, deepcopy(klua.null))
  end)

  it("gives writable copies of read-only decoded objects", function()
    if not klua.have_core then return end
    local core = require("klua_core")
    local obj = klua.json.decode('{"metadata":{"name":"a"},"data":{}}')
    local c = deepcopy(obj)
    c.metadata.extra = 1
    assert.equal('{}', klua.json.encode(c.data))
    assert.is_nil(obj.metadata.extra)
    assert.is_function(core.json_encode)
  end)
end)

local function owner(ns)
  return { apiVersion = "apps/v1", kind = "Deployment",
           metadata = { namespace = ns, name = "web", uid = "u-1" } }
end

local function child(ns)
  return { apiVersion = "v1", kind = "Pod", metadata = { namespace = ns, name = "web-1" } }
end

describe("klua.meta", function()
  local meta = klua.meta

  it("sets a controller reference", function()
    local c = child("a")
    assert.is_true(meta.set_controller_reference(owner("a"), c))
    assert.same({ { apiVersion = "apps/v1", kind = "Deployment", name = "web", uid = "u-1",
                    controller = true, blockOwnerDeletion = true } }, c.metadata.ownerReferences)
    assert.equal(klua.array_mt, getmetatable(c.metadata.ownerReferences))
    assert.is_true(meta.is_controlled_by(c, owner("a")))
    assert.equal("u-1", meta.get_controller_of(c).uid)
    -- idempotent
    assert.is_true(meta.set_controller_reference(owner("a"), c))
    assert.equal(1, #c.metadata.ownerReferences)
  end)

  it("refuses a second, different controller", function()
    local c = child("a")
    assert.is_true(meta.set_controller_reference(owner("a"), c))
    local other = owner("a")
    other.metadata.name, other.metadata.uid = "api", "u-2"
    local ok, err = meta.set_controller_reference(other, c)
    assert.is_nil(ok)
    assert.matches("already controlled by Deployment web", err, 1, true)
    assert.equal(1, #c.metadata.ownerReferences)
    assert.is_false(meta.is_controlled_by(c, other))
  end)

  it("upgrades a plain owner reference to the controller one", function()
    local c = child("a")
    assert.is_true(meta.set_owner_reference(owner("a"), c))
    assert.is_nil(meta.get_controller_of(c))
    assert.is_true(meta.set_controller_reference(owner("a"), c))
    assert.equal(1, #c.metadata.ownerReferences)
    assert.is_true(c.metadata.ownerReferences[1].controller)
  end)

  it("keeps other owners", function()
    local c = child("a")
    c.metadata.ownerReferences = { { apiVersion = "v1", kind = "ConfigMap", name = "cfg", uid = "u-9" } }
    assert.is_true(meta.set_controller_reference(owner("a"), c))
    assert.equal(2, #c.metadata.ownerReferences)
    assert.is_true(meta.remove_owner_reference({ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "cfg", uid = "u-9" } }, c))
    assert.equal(1, #c.metadata.ownerReferences)
    assert.is_false(meta.remove_owner_reference({ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "cfg", uid = "u-9" } }, c))
  end)

  it("rejects cross-namespace and namespaced-owner-of-cluster-scoped references", function()
    local ok, err = meta.set_controller_reference(owner("a"), child("b"))
    assert.is_nil(ok)
    assert.matches("cross-namespace", err, 1, true)
    ok, err = meta.set_controller_reference(owner("a"), { apiVersion = "v1", kind = "Namespace", metadata = { name = "n" } })
    assert.is_nil(ok)
    assert.matches("cluster-scoped", err, 1, true)
    -- a cluster-scoped owner may own namespaced objects
    local node = { apiVersion = "v1", kind = "Node", metadata = { name = "n1", uid = "u-n" } }
    assert.is_true(meta.set_controller_reference(node, child("b")))
  end)

  it("needs a complete owner", function()
    local o = owner("a")
    o.metadata.uid = nil
    local ok, err = meta.set_controller_reference(o, child("a"))
    assert.is_nil(ok)
    assert.matches("needs apiVersion, kind, metadata.name and metadata.uid", err, 1, true)
    assert.has_error(function() meta.set_controller_reference(owner("a"), nil) end)
  end)

  it("reads controllers defensively", function()
    assert.is_nil(meta.get_controller_of({ metadata = {} }))
    assert.is_nil(meta.get_controller_of({ metadata = { ownerReferences = klua.null } }))
    assert.is_nil(meta.get_controller_of(nil))
    assert.is_false(meta.is_controlled_by(child("a"), owner("a")))
    assert.same({}, meta.owner_references(child("a")))
  end)

  it("computes keys, groups and descriptions", function()
    assert.equal("a/web-1", meta.key(child("a")))
    assert.equal("n1", meta.key({ metadata = { name = "n1" } }))
    assert.is_nil(meta.key({}))
    assert.equal("apps", meta.group("apps/v1"))
    assert.equal("", meta.group("v1"))
    assert.equal("Pod a/web-1", meta.describe(child("a")))
  end)
end)

describe("klua.conditions", function()
  local env, conditions
  before_each(function()
    env = t.new({ now = 1700000000 })
    conditions = env.klua.conditions
  end)

  it("adds a condition with lastTransitionTime from the backend clock", function()
    local obj = { metadata = { name = "x" } }
    assert.is_true(conditions.set(obj, { type = "Ready", status = "False", reason = "Starting" }))
    local c = conditions.get(obj, "Ready")
    assert.same({ type = "Ready", status = "False", reason = "Starting", message = "",
                  lastTransitionTime = "2023-11-14T22:13:20Z" }, c)
    assert.equal(env.klua.array_mt, getmetatable(obj.status.conditions))
    assert.is_true(conditions.is_false(obj, "Ready"))
    assert.is_false(conditions.is_true(obj, "Ready"))
  end)

  it("changes lastTransitionTime only when the status changes", function()
    local obj = { status = { conditions = {} } }
    conditions.set(obj, { type = "Ready", status = "False" })
    env:advance(60)
    assert.is_true(conditions.set(obj, { type = "Ready", status = "False", reason = "Still", message = "m" }))
    assert.equal("2023-11-14T22:13:20Z", conditions.get(obj, "Ready").lastTransitionTime)
    assert.is_false(conditions.set(obj, { type = "Ready", status = "False", reason = "Still", message = "m" }))
    assert.is_true(conditions.set(obj, { type = "Ready", status = "True", reason = "Up" }))
    local c = conditions.get(obj, "Ready")
    assert.equal("2023-11-14T22:14:20Z", c.lastTransitionTime)
    assert.equal("", c.message)
    assert.is_true(conditions.is_true(obj, "Ready"))
    assert.equal(1, #obj.status.conditions)
  end)

  it("tracks observedGeneration and keeps other conditions", function()
    local obj = {}
    conditions.set(obj, { type = "A", status = "True", observedGeneration = 1 })
    conditions.set(obj, { type = "B", status = "Unknown" })
    assert.is_true(conditions.set(obj, { type = "A", status = "True", observedGeneration = 2 }))
    assert.is_false(conditions.set(obj, { type = "A", status = "True" })) -- nil: keep
    assert.equal(2, conditions.get(obj, "A").observedGeneration)
    assert.equal(2, #obj.status.conditions)
    assert.is_true(conditions.is_unknown(obj, "B"))
    assert.is_true(conditions.is_unknown(obj, "C"))
    assert.is_true(conditions.remove(obj, "A"))
    assert.is_false(conditions.remove(obj, "A"))
    assert.is_nil(conditions.get(obj, "A"))
  end)

  it("honours an explicit lastTransitionTime", function()
    local obj = {}
    conditions.set(obj, { type = "A", status = "True", lastTransitionTime = "2020-01-01T00:00:00Z" })
    assert.equal("2020-01-01T00:00:00Z", conditions.get(obj, "A").lastTransitionTime)
  end)

  it("validates conditions", function()
    assert.has_error(function() conditions.set({}, { type = "A", status = "yes" }) end)
    assert.has_error(function() conditions.set({}, { status = "True" }) end)
    assert.has_error(function() conditions.set({}, { type = "A", status = "True", lastTransition = "x" }) end)
    assert.has_error(function() conditions.set({}, { type = "A", status = "True", observedGeneration = "1" }) end)
    assert.is_nil(conditions.get({ status = klua.null }, "A"))
    assert.is_false(conditions.is_true(nil, "A"))
  end)
end)

describe("klua.finalizers", function()
  local F = "example.com/cleanup"
  local env, fin

  local function cm(extra)
    local o = { apiVersion = "v1", kind = "ConfigMap", metadata = { namespace = "a", name = "c" } }
    for k, v in pairs(extra or {}) do o.metadata[k] = v end
    return o
  end

  before_each(function()
    env = t.new()
    fin = env.klua.finalizers
  end)

  it("has is a pure check", function()
    assert.is_true(fin.has(cm({ finalizers = { "x", F } }), F))
    assert.is_false(fin.has(cm({ finalizers = { "x" } }), F))
    assert.is_false(fin.has(cm(), F))
    assert.is_false(fin.has(cm({ finalizers = klua.null }), F))
  end)

  it("adds with one update carrying the resourceVersion", function()
    local stored = env:add(cm())
    local obj, err = fin.add(stored, F)
    assert.is_nil(err)
    assert.same({ F }, obj.metadata.finalizers)
    assert.is_nil(stored.metadata.finalizers) -- the argument is left alone
    local calls = env:calls()
    assert.equal(1, #calls)
    assert.equal("update", calls[1].verb)
    assert.equal(stored.metadata.resourceVersion, calls[1].body.metadata.resourceVersion)
    assert.same({ F }, env:object("v1", "ConfigMap", "a", "c").metadata.finalizers)
  end)

  it("is a no-op without API calls when already present / absent", function()
    local stored = env:add(cm({ finalizers = { F } }))
    assert.equal(stored, (fin.add(stored, F)))
    local plain = env:add(cm({ name = "d" }))
    assert.equal(plain, (fin.remove(plain, F)))
    assert.equal(0, #env:calls())
  end)

  it("re-reads and retries on a conflict", function()
    local stale = env:add(cm())
    -- someone else changes the object: our copy is stale
    local cur = env:object("v1", "ConfigMap", "a", "c")
    cur.metadata.labels = { x = "y" }
    env:set(cur)
    local obj, err = fin.add(stale, F)
    assert.is_nil(err)
    assert.same({ F }, obj.metadata.finalizers)
    assert.equal("y", obj.metadata.labels.x) -- kept the other writer's change
    local verbs = {}
    for i, c in ipairs(env:calls()) do verbs[i] = c.verb end
    assert.same({ "update", "get", "update" }, verbs)
  end)

  it("gives up after max_attempts conflicts", function()
    local stored = env:add(cm())
    for _ = 1, 5 do env:fail_next("update", "Conflict") end
    local obj, err = fin.add(stored, F)
    assert.is_nil(obj)
    assert.is_true(env.klua.is_conflict(err))
    assert.equal(9, #env:calls()) -- 5 updates, 4 gets
  end)

  it("returns other errors at once", function()
    local stored = env:add(cm())
    env:fail_next("update", 403)
    local obj, err = fin.add(stored, F)
    assert.is_nil(obj)
    assert.is_true(env.klua.is_forbidden(err))
    assert.equal(1, #env:calls())
  end)

  it("stops when the object disappears during a retry", function()
    local stale = env:add(cm())
    env:set(cm({ labels = { changed = "yes" } }))
    env:fail_next("get", 404)
    local obj, err = fin.add(stale, F)
    assert.is_nil(obj)
    assert.is_true(env.klua.is_not_found(err))
  end)

  it("removing the last finalizer of a deleted object lets it go", function()
    env:add(cm({ finalizers = { F, "other" } }))
    assert.is_true(env.klua.delete("v1", "ConfigMap", "a", "c"))
    local obj = env:object("v1", "ConfigMap", "a", "c")
    assert.is_string(obj.metadata.deletionTimestamp)
    obj = assert(fin.remove(obj, F))
    assert.same({ "other" }, obj.metadata.finalizers)
    assert.truthy(env:object("v1", "ConfigMap", "a", "c"))
    assert(fin.remove(obj, "other"))
    assert.is_nil(env:object("v1", "ConfigMap", "a", "c"))
  end)

  it("validates arguments", function()
    assert.has_error(function() fin.add({ metadata = {} }, F) end)
    assert.has_error(function() fin.add(cm(), "") end)
    assert.has_error(function() fin.remove(nil, F) end)
  end)
end)
