-- store_spec.lua: klua_core.store_new as script authors use it: writes,
-- reads, replace, built-in and Lua index functions, errors as values.
local core = require("klua_core")

local function pod(ns, name, opts)
  opts = opts or {}
  return {
    apiVersion = "v1", kind = "Pod",
    metadata = {
      namespace = ns, name = name, resourceVersion = opts.rv,
      labels = opts.labels, ownerReferences = opts.owners,
      managedFields = opts.mf,
    },
    spec = opts.spec or { containers = { { name = "c", image = "nginx" } } },
  }
end

local function sorted(t)
  table.sort(t)
  return t
end

local function names(objs)
  local out = {}
  for i, o in ipairs(objs) do
    local m = o.metadata
    out[i] = (m.namespace and m.namespace .. "/" or "") .. m.name
  end
  return sorted(out)
end

describe("klua store", function()
  local s
  before_each(function() s = core.store_new() end)

  describe("writes and reads", function()
    it("adds, gets by object and by key, updates, deletes", function()
      assert.is_true(s:add(pod("ns", "a", { rv = "1" })))
      assert.equal(1, s:len())
      assert.equal(1, #s)
      assert.equal("1", s:get_by_key("ns/a").metadata.resourceVersion)
      assert.equal("1", s:get(pod("ns", "a")).metadata.resourceVersion)
      assert.is_nil(s:get_by_key("a"))
      assert.is_nil(s:get_by_key("other/a"))
      assert.is_true(s:update(pod("ns", "a", { rv = "2" })))
      assert.equal("2", s:get_by_key("ns/a").metadata.resourceVersion)
      assert.equal(1, s:len())
      -- update of an absent object inserts it (as client-go's store does)
      assert.is_true(s:update(pod("ns", "b")))
      assert.equal(2, s:len())
      assert.is_true(s:delete(pod("ns", "a")))
      assert.is_nil(s:get_by_key("ns/a"))
      assert.is_true(s:delete("ns/b"))
      assert.equal(0, s:len())
    end)

    it("treats deleting an unknown key as a no-op", function()
      s:add(pod("ns", "a"))
      assert.is_true(s:delete("ns/missing"))
      assert.is_true(s:delete(pod("elsewhere", "a")))
      assert.equal(1, s:len())
    end)

    it("keys cluster-scoped objects by name alone", function()
      s:add({ kind = "Node", metadata = { name = "node-1" } })
      s:add(pod("default", "node-1"))
      assert.same({ "default/node-1", "node-1" }, sorted(s:list_keys()))
      assert.equal("Node", s:get_by_key("node-1").kind)
      assert.equal("Pod", s:get_by_key("default/node-1").kind)
      assert.is_true(s:delete("node-1"))
      assert.same({ "default/node-1" }, s:list_keys())
    end)

    it("lists every object as a table", function()
      for i = 1, 5 do s:add(pod("ns", "p" .. i)) end
      local l = s:list()
      assert.equal(5, #l)
      assert.same({ "ns/p1", "ns/p2", "ns/p3", "ns/p4", "ns/p5" }, names(l))
      assert.equal("nginx", l[1].spec.containers[1].image)
      assert.same({}, core.store_new():list())
      assert.same({}, core.store_new():list_keys())
    end)

    it("returns nil, err for an object without metadata.name", function()
      local ok, err = s:add({ kind = "Pod", metadata = { namespace = "ns" } })
      assert.is_nil(ok)
      assert.truthy(err:find("metadata.name", 1, true), err)
      ok, err = s:update({ kind = "Pod" })
      assert.is_nil(ok)
      assert.truthy(err:find("metadata.name", 1, true), err)
      ok, err = s:delete({ metadata = {} })
      assert.is_nil(ok)
      assert.truthy(err:find("metadata.name", 1, true), err)
      ok, err = s:get({ metadata = { name = "" } })
      assert.is_nil(ok)
      assert.truthy(err:find("metadata.name", 1, true), err)
      ok, err = s:add({ metadata = { name = 5 } })
      assert.is_nil(ok)
      assert.is_string(err)
      assert.equal(0, s:len())
    end)

    it("raises for arguments that are not objects", function()
      assert.has_error(function() s:add("ns/a") end)
      assert.has_error(function() s:add(nil) end)
      assert.has_error(function() s:update(42) end)
      assert.has_error(function() s:delete(true) end)
      assert.has_error(function() s:get_by_key({}) end)
      assert.has_error(function() s:replace("x") end)
      assert.has_error(function() s:replace({ pod("ns", "a"), "b" }) end)
      assert.has_error(function() s.add({}, pod("ns", "a")) end)
      assert.equal(0, s:len())
    end)

    it("strips metadata.managedFields by default and keeps them when asked", function()
      local mf = { { manager = "kubectl", operation = "Apply" } }
      s:add(pod("ns", "a", { mf = mf, labels = { app = "x" } }))
      local got = s:get_by_key("ns/a")
      assert.is_nil(got.metadata.managedFields)
      assert.equal("x", got.metadata.labels.app)
      local keep = core.store_new({ strip_managed_fields = false })
      keep:add(pod("ns", "a", { mf = mf }))
      assert.equal("kubectl", keep:get_by_key("ns/a").metadata.managedFields[1].manager)
      -- replace follows the same rule
      keep:replace({ pod("ns", "b", { mf = mf }) }, "5")
      assert.equal("Apply", keep:get_by_key("ns/b").metadata.managedFields[1].operation)
      s:replace({ pod("ns", "b", { mf = mf }) }, "5")
      assert.is_nil(s:get_by_key("ns/b").metadata.managedFields)
    end)

    it("hands out objects that stay valid after delete and replace", function()
      s:add(pod("ns", "a", { labels = { v = "1" } }))
      local held = s:get_by_key("ns/a")
      local listed = s:list()
      s:delete("ns/a")
      s:replace({ pod("ns", "a", { labels = { v = "2" } }) }, "9")
      collectgarbage()
      collectgarbage()
      assert.equal("1", held.metadata.labels.v)
      assert.equal("1", listed[1].metadata.labels.v)
      assert.equal("2", s:get_by_key("ns/a").metadata.labels.v)
    end)

    it("resync is a no-op", function()
      s:add(pod("ns", "a"))
      assert.is_true(s:resync())
      assert.same({ "ns/a" }, s:list_keys())
    end)
  end)

  describe("replace", function()
    it("drops keys that are absent and adds new ones", function()
      s:add_indexers({ app = { label = "app" } })
      s:add(pod("ns", "keep", { labels = { app = "old" } }))
      s:add(pod("ns", "drop", { labels = { app = "gone" } }))
      assert.is_nil(s:last_replace_rv())
      assert.is_true(s:replace({
        pod("ns", "keep", { labels = { app = "new" }, rv = "7" }),
        pod("ns", "added", { labels = { app = "new" } }),
      }, "100"))
      assert.same({ "ns/added", "ns/keep" }, sorted(s:list_keys()))
      assert.equal("7", s:get_by_key("ns/keep").metadata.resourceVersion)
      assert.equal("100", s:last_replace_rv())
      -- the indices were rebuilt: the old values are gone
      assert.same({ "new" }, s:list_index_values("app"))
      assert.same({ "ns/added", "ns/keep" }, sorted(s:index_keys("app", "new")))
      assert.same({}, s:index_keys("app", "gone"))
    end)

    it("keeps the last of duplicate keys and empties with an empty list", function()
      s:replace({ pod("ns", "a", { rv = "1" }), pod("ns", "a", { rv = "2" }) }, "3")
      assert.equal(1, s:len())
      assert.equal("2", s:get_by_key("ns/a").metadata.resourceVersion)
      assert.is_true(s:replace({}))
      assert.equal(0, s:len())
      assert.is_nil(s:last_replace_rv())
    end)

    it("leaves the store unchanged when an item is bad", function()
      s:add(pod("ns", "a"))
      local ok, err = s:replace({ pod("ns", "b"), { metadata = {} } }, "2")
      assert.is_nil(ok)
      assert.truthy(err:find("item 2", 1, true), err)
      assert.truthy(err:find("metadata.name", 1, true), err)
      assert.same({ "ns/a" }, s:list_keys())
      assert.is_nil(s:last_replace_rv())
    end)
  end)

  describe("indexes", function()
    it("indexes by namespace, with \"\" for cluster-scoped objects", function()
      assert.is_true(s:add_indexers({ namespace = { namespace = true } }))
      s:add(pod("a", "p1"))
      s:add(pod("a", "p2"))
      s:add(pod("b", "p1"))
      s:add({ kind = "Node", metadata = { name = "n1" } })
      assert.same({ "", "a", "b" }, sorted(s:list_index_values("namespace")))
      assert.same({ "a/p1", "a/p2" }, sorted(s:index_keys("namespace", "a")))
      assert.same({ "n1" }, s:index_keys("namespace", ""))
      assert.same({ "a/p1", "a/p2" }, names(s:by_index("namespace", "a")))
      assert.same({}, s:by_index("namespace", "nope"))
      assert.same({ "a/p1", "a/p2" }, names(s:index("namespace", pod("a", "zzz"))))
    end)

    it("moves an object between index values on update; empty sets vanish", function()
      s:add_indexers({ app = { label = "app" }, node = { field = "spec.nodeName" } })
      s:add(pod("ns", "p1", { labels = { app = "web" }, spec = { nodeName = "n1" } }))
      s:add(pod("ns", "p2", { labels = { app = "db" }, spec = { nodeName = "n1" } }))
      assert.same({ "db", "web" }, sorted(s:list_index_values("app")))
      s:update(pod("ns", "p2", { labels = { app = "web" }, spec = { nodeName = "n2" } }))
      assert.same({ "web" }, s:list_index_values("app"))
      assert.same({}, s:index_keys("app", "db"))
      assert.same({ "ns/p1", "ns/p2" }, sorted(s:index_keys("app", "web")))
      assert.same({ "n1", "n2" }, sorted(s:list_index_values("node")))
      -- the label disappears: the object leaves the index
      s:update(pod("ns", "p1", { spec = { nodeName = "n2" } }))
      assert.same({ "ns/p2" }, s:index_keys("app", "web"))
      assert.same({ "n2" }, s:list_index_values("node"))
      -- the set holds the new version
      local objs = s:by_index("node", "n2")
      assert.equal(2, #objs)
      s:delete("ns/p2")
      assert.same({}, s:list_index_values("app"))
    end)

    it("indexes a field's scalar value; absent, null and objects give none", function()
      s:add_indexers({ f = { field = "spec.x" } })
      s:add(pod("ns", "str", { spec = { x = "a" } }))
      s:add(pod("ns", "num", { spec = { x = 3 } }))
      s:add(pod("ns", "bool", { spec = { x = false } }))
      s:add(pod("ns", "null", { spec = { x = core.null } }))
      s:add(pod("ns", "obj", { spec = { x = { y = 1 } } }))
      s:add(pod("ns", "none", { spec = {} }))
      assert.same({ "3", "a", "false" }, sorted(s:list_index_values("f")))
      assert.same({ "ns/num" }, s:index_keys("f", 3))
      assert.same({ "ns/num" }, s:index_keys("f", "3"))
      assert.same({ "ns/bool" }, s:index_keys("f", false))
    end)

    it("indexes owner references by uid and by Kind/name", function()
      s:add_indexers({ uid = { owner = "uid" }, owner = { owner = "kindname" } })
      local rs = { apiVersion = "apps/v1", kind = "ReplicaSet", name = "web-1", uid = "u1" }
      local job = { apiVersion = "batch/v1", kind = "Job", name = "j", uid = "u2" }
      s:add(pod("ns", "a", { owners = { rs } }))
      s:add(pod("ns", "b", { owners = { rs, job } }))
      s:add(pod("ns", "c"))
      assert.same({ "u1", "u2" }, sorted(s:list_index_values("uid")))
      assert.same({ "Job/j", "ReplicaSet/web-1" }, sorted(s:list_index_values("owner")))
      assert.same({ "ns/a", "ns/b" }, sorted(s:index_keys("uid", "u1")))
      assert.same({ "ns/b" }, s:index_keys("owner", "Job/j"))
      -- index(): objects sharing any value with b, each once
      assert.same({ "ns/a", "ns/b" }, names(s:index("uid", s:get_by_key("ns/b"))))
    end)

    it("adds indexers to a filled store", function()
      for i = 1, 30 do
        s:add(pod(i % 2 == 0 and "even" or "odd", "p" .. i,
          { labels = i % 3 ~= 0 and { tier = "t" .. (i % 3) } or nil }))
      end
      assert.is_true(s:add_indexers({ tier = { label = "tier" }, ns = { namespace = true } }))
      assert.same({ "ns", "tier" }, s:get_indexers())
      assert.same({ "t1", "t2" }, sorted(s:list_index_values("tier")))
      assert.equal(10, #s:index_keys("tier", "t1"))
      assert.equal(15, #s:by_index("ns", "even"))
      -- later writes keep it current
      s:add(pod("odd", "p1", { labels = { tier = "t9" } }))
      assert.same({ "odd/p1" }, s:index_keys("tier", "t9"))
      assert.equal(9, #s:index_keys("tier", "t1"))
    end)

    it("rejects a duplicate indexer name with nil, err and adds nothing", function()
      assert.is_true(s:add_indexers({ app = { label = "app" } }))
      local ok, err = s:add_indexers({ app = { namespace = true }, other = { namespace = true } })
      assert.is_nil(ok)
      assert.truthy(err:find("app", 1, true), err)
      assert.truthy(err:find("already exists", 1, true), err)
      assert.same({ "app" }, s:get_indexers())
    end)

    it("raises for malformed indexer specs", function()
      assert.has_error(function() s:add_indexers({ x = { bogus = true } }) end)
      assert.has_error(function() s:add_indexers({ x = { owner = "name" } }) end)
      assert.has_error(function() s:add_indexers({ x = { label = "" } }) end)
      assert.has_error(function() s:add_indexers({ x = "namespace" }) end)
      assert.has_error(function() s:add_indexers({ [1] = { namespace = true } }) end)
      assert.has_error(function() s:add_indexers("x") end)
      -- checked before anything is added
      assert.has_error(function()
        s:add_indexers({ a = { namespace = true }, b = { namespace = true },
                         c = { bogus = true }, d = function() end })
      end)
      assert.same({}, s:get_indexers())
    end)

    it("returns nil, err for an unknown index name", function()
      s:add(pod("ns", "a"))
      for _, call in ipairs({
        function() return s:index_keys("nope", "x") end,
        function() return s:by_index("nope", "x") end,
        function() return s:list_index_values("nope") end,
        function() return s:index("nope", pod("ns", "a")) end,
      }) do
        local v, err = call()
        assert.is_nil(v)
        assert.truthy(err:find("no index named nope", 1, true), err)
      end
    end)
  end)

  describe("Lua index functions", function()
    it("index by a function's value or list of values", function()
      s:add_indexers({
        images = function(o)
          local out = {}
          for _, c in ipairs(o.spec.containers or {}) do out[#out + 1] = c.image end
          return out
        end,
        replicas = function(o) return o.spec.replicas end,
        flag = function(o) return o.spec.replicas ~= nil end,
      })
      s:add(pod("ns", "a", { spec = { containers = { { image = "nginx" }, { image = "envoy" } } } }))
      s:add(pod("ns", "b", { spec = { containers = { { image = "nginx" }, { image = "nginx" } }, replicas = 3 } }))
      assert.same({ "envoy", "nginx" }, sorted(s:list_index_values("images")))
      assert.same({ "ns/a", "ns/b" }, sorted(s:index_keys("images", "nginx")))
      assert.same({ "3" }, s:list_index_values("replicas"))
      assert.same({ "ns/b" }, s:index_keys("replicas", 3))
      assert.same({ "ns/a" }, s:index_keys("flag", false))
      assert.same({ "ns/a", "ns/b" }, names(s:index("images", pod("x", "probe",
        { spec = { containers = { { image = "nginx" } } } }))))
    end)

    it("turns an error in the function into nil, err and leaves the store as it was", function()
      s:add_indexers({ strict = function(o)
        if o.metadata.name == "bad" then error("no bad pods") end
        return o.metadata.name
      end })
      s:add(pod("ns", "good"))
      local ok, err = s:add(pod("ns", "bad"))
      assert.is_nil(ok)
      assert.truthy(err:find("no bad pods", 1, true), err)
      assert.truthy(err:find("ns/bad", 1, true), err)
      assert.same({ "ns/good" }, s:list_keys())
      ok, err = s:replace({ pod("ns", "x"), pod("ns", "bad") }, "5")
      assert.is_nil(ok)
      assert.truthy(err:find("no bad pods", 1, true), err)
      assert.same({ "ns/good" }, s:list_keys())
      assert.same({ "good" }, s:list_index_values("strict"))
    end)

    it("rejects an indexer whose function fails on an existing object", function()
      s:add(pod("ns", "a"))
      local ok, err = s:add_indexers({ f = function() return print end })
      assert.is_nil(ok)
      assert.truthy(err:find("returned a function", 1, true), err)
      assert.same({}, s:get_indexers())
      -- the name is free again
      assert.is_true(s:add_indexers({ f = function(o) return o.metadata.name end }))
      assert.same({ "a" }, s:list_index_values("f"))
    end)

    it("may not use the store from inside the function", function()
      s:add_indexers({ f = function(o) s:get_by_key("x"); return "v" end })
      local ok, err = s:add(pod("ns", "a"))
      assert.is_nil(ok)
      assert.truthy(err:find("inside an index function", 1, true), err)
      assert.equal(0, s:len())
    end)

    it("lets the store be collected with its functions", function()
      local st = core.store_new()
      st:add_indexers({ f = function(o) return st:len() and o.metadata.name end })
      st = nil
      collectgarbage()
      collectgarbage()
    end)
  end)

  describe("memory", function()
    it("reports a footprint that grows with the content", function()
      local empty = s:footprint()
      assert.truthy(empty > 0)
      for i = 1, 100 do s:add(pod("ns", "p" .. i, { labels = { app = "x" } })) end
      local full = s:footprint()
      assert.truthy(full > empty + 100 * 100, full)
      s:replace({})
      assert.truthy(s:footprint() < full)
    end)
  end)
end)
