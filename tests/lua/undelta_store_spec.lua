-- undelta_store_spec.lua: klua_core.undelta_store_new(push): after every
-- change the push function receives the complete state.
local core = require("klua_core")

local obj = require("fifo_helpers").obj

-- "ns/a@1 ns/b@2": the pushed state, sorted (list order is unspecified)
local function summary(objs)
  local t = {}
  for _, o in ipairs(objs) do
    t[#t + 1] = o.metadata.namespace .. "/" .. o.metadata.name .. "@" ..
      o.metadata.resourceVersion
  end
  table.sort(t)
  return table.concat(t, " ")
end

describe("undelta_store", function()
  local pushes, u
  before_each(function()
    pushes = {}
    u = core.undelta_store_new(function(objs)
      pushes[#pushes + 1] = summary(objs)
    end)
  end)

  it("pushes the full state after add, update, delete and replace",
    function()
      assert.is_true(u:add(obj("a", "1")))
      assert.is_true(u:add(obj("b", "1")))
      assert.is_true(u:update(obj("a", "2")))
      assert.is_true(u:delete(obj("b", "1")))
      assert.is_true(u:replace({ obj("c", "3"), obj("d", "4") }, "9"))
      assert.is_true(u:replace({}, "10"))
      assert.same({
        "ns/a@1",
        "ns/a@1 ns/b@1",
        "ns/a@2 ns/b@1",
        "ns/a@2",
        "ns/c@3 ns/d@4",
        "",
      }, pushes)
    end)

  it("may push the same state again", function()
    u:add(obj("a", "1"))
    u:delete(obj("zz", "1")) -- absent: nothing changes, still pushed
    u:update(obj("a", "1"))
    assert.same({ "ns/a@1", "ns/a@1", "ns/a@1" }, pushes)
  end)

  it("reads through to the wrapped store", function()
    u:add(obj("a", "1"))
    u:add(obj("b", "2"))
    assert.equal(2, u:len())
    assert.equal(2, #u)
    assert.equal("2", u:get("ns/b").metadata.resourceVersion)
    assert.is_nil(u:get("ns/none"))
    local keys = u:list_keys()
    table.sort(keys)
    assert.same({ "ns/a", "ns/b" }, keys)
    assert.equal("ns/a@1 ns/b@2", summary(u:list()))
  end)

  it("reports a failing push function but keeps the write", function()
    local v = core.undelta_store_new(function() error("push broke") end)
    local ok, err = v:add(obj("a", "1"))
    assert.is_nil(ok)
    assert.matches("push broke", err)
    assert.equal(1, v:len())
  end)

  it("refuses writes from inside its own push function", function()
    local v
    v = core.undelta_store_new(function() v:add(obj("x", "1")) end)
    local ok, err = v:add(obj("a", "1"))
    assert.is_nil(ok)
    assert.matches("not allowed", err)
    assert.equal(1, v:len())
  end)

  it("rejects bad objects without pushing", function()
    local ok, err = u:add({ metadata = {} })
    assert.is_nil(ok)
    assert.is_string(err)
    ok, err = u:replace({ obj("a", "1"), "{" }, "1")
    assert.is_nil(ok)
    assert.matches("item 2", err)
    assert.same({}, pushes)
    assert.has_error(function() core.undelta_store_new() end)
  end)
end)
