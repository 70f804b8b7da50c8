-- real_fifo_spec.lua: klua_core.real_fifo_new (client-go's RealFIFO,
-- in-order): every event in order, the replace batch, resync, HasSynced,
-- close.
local core = require("klua_core")

local h = require("fifo_helpers")
local obj, store_with, pop, rv = h.obj, h.store_with, h.pop, h.rv

describe("real_fifo", function()
  it("delivers every event in order, one per pop, without coalescing",
    function()
      local f = core.real_fifo_new()
      f:add(obj("a", "1"))
      f:add(obj("b", "2"))
      f:update(obj("a", "3"))
      f:delete(obj("a", "4"))
      f:delete(obj("a", "4"))
      assert.equal(5, #f)
      assert.same({ "ns/a", "ns/b" }, f:list_keys())
      local want = {
        { "Added", "ns/a", "1" }, { "Added", "ns/b", "2" },
        { "Updated", "ns/a", "3" }, { "Deleted", "ns/a", "4" },
        { "Deleted", "ns/a", "4" },
      }
      for _, w in ipairs(want) do
        local d = pop(f)
        assert.equal(1, #d)
        assert.is_nil(d.replace_batch)
        assert.same(w, { d[1].type, d[1].key, rv(d[1]) })
      end
    end)

  it("delivers a replace as one batch: Replaced items, then tombstones",
    function()
      local s = store_with(obj("store-only", "1"), obj("both", "1"))
      local f = core.real_fifo_new { known = s }
      f:update(obj("both", "2"))
      f:add(obj("queue-only", "3"))
      f:add(obj("deleted", "4"))
      f:delete(obj("deleted", "5"))
      assert.is_true(f:replace({ obj("x", "7"), obj("y", "8") }, "10"))
      assert.equal(5, #f)
      for _ = 1, 4 do pop(f) end
      local d = pop(f)
      assert.is_true(d.replace_batch)
      assert.equal("10", d.resource_version)
      assert.equal(5, #d)
      assert.same({ "Replaced", "ns/x", "7" }, { d[1].type, d[1].key, rv(d[1]) })
      assert.same({ "Replaced", "ns/y", "8" }, { d[2].type, d[2].key, rv(d[2]) })
      -- queued keys (queue order; "deleted" already ends in a Deleted)
      assert.same({ "Deleted", "ns/both", "2", true },
        { d[3].type, d[3].key, rv(d[3]), d[3].tombstone })
      assert.same({ "Deleted", "ns/queue-only", "3", true },
        { d[4].type, d[4].key, rv(d[4]), d[4].tombstone })
      -- then keys known only to the store, with the store's object
      assert.same({ type = "Deleted", key = "ns/store-only", tombstone = true,
        object = obj("store-only", "1") }, d[5])
    end)

  it("hands the batch to a pop function in one call", function()
    local f = core.real_fifo_new()
    f:add(obj("a", "1"))
    f:replace({ obj("b", "2") }, "3")
    local calls = {}
    while #f > 0 do
      assert.is_true(f:pop(function(d) calls[#calls + 1] = d end, 1))
    end
    assert.equal(2, #calls)
    assert.is_true(calls[2].replace_batch)
    assert.same({ "Replaced", "Deleted" }, { calls[2][1].type,
      calls[2][2].type })
    assert.equal("ns/a", calls[2][2].key)
  end)

  it("queues an empty batch for an empty replace", function()
    local f = core.real_fifo_new()
    f:replace({}, "1")
    assert.equal(1, #f)
    local d = pop(f)
    assert.is_true(d.replace_batch)
    assert.equal(0, #d)
  end)

  it("resyncs known keys that have nothing queued, once", function()
    local f = core.real_fifo_new { known = store_with(obj("a", "1"),
      obj("b", "1")) }
    f:update(obj("a", "2"))
    for _ = 1, 3 do assert.is_true(f:resync()) end
    assert.equal(2, #f)
    pop(f)
    local d = pop(f)
    assert.same({ "Sync", "ns/b" }, { d[1].type, d[1].key })
  end)

  it("has_synced counts every entry up to the first replace", function()
    local f = core.real_fifo_new()
    assert.is_false(f:has_synced())
    f:add(obj("early", "1"))
    assert.is_true(f:has_synced()) -- an add came first, as in client-go
    f = core.real_fifo_new()
    f:replace({ obj("a", "1") }, "1")
    f:add(obj("b", "2"))
    assert.is_false(f:has_synced())
    local _, initial = pop(f)
    assert.is_true(initial)
    assert.is_true(f:has_synced())
    _, initial = pop(f)
    assert.is_false(initial)
  end)

  it("does not re-queue a failed entry (order would break)", function()
    local f = core.real_fifo_new()
    f:add(obj("a", "1"))
    f:add(obj("b", "1"))
    local ok, err = f:pop(function() error("nope") end)
    assert.is_nil(ok)
    assert.matches("nope", err)
    assert.same({ "ns/b" }, f:list_keys())
    assert.has_error(function() f:add_if_not_present({}) end)
  end)

  it("reports closed after the queue drains, and times out", function()
    local f = core.real_fifo_new()
    assert.equal("timeout", select(2, f:pop(nil, 0.01)))
    f:add(obj("a", "1"))
    f:close()
    assert.equal("ns/a", pop(f)[1].key)
    assert.equal("closed", select(2, f:pop()))
  end)
end)
