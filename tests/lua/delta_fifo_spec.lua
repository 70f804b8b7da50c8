-- delta_fifo_spec.lua: klua_core.delta_fifo_new as a script author uses it:
-- per-key coalescing, delete rules, dedup of deletions, Replace tombstones
-- (store-only, queue-only, both keys), resync, retry ordering, HasSynced,
-- close and timeouts.
local core = require("klua_core")

local h = require("fifo_helpers")
local obj, store_with, pop, rv = h.obj, h.store_with, h.pop, h.rv

describe("delta_fifo", function()
  it("queues a key once and hands over its deltas oldest first", function()
    local f = core.delta_fifo_new()
    assert.is_true(f:add(obj("a", "1")))
    assert.is_true(f:add(obj("b", "2")))
    assert.is_true(f:update(obj("a", "3")))
    assert.equal(2, #f)
    assert.same({ "ns/a", "ns/b" }, f:list_keys())
    local d = pop(f)
    assert.equal(2, #d)
    assert.equal("Added", d[1].type)
    assert.equal("1", rv(d[1]))
    assert.equal("Updated", d[2].type)
    assert.equal("3", rv(d[2]))
    assert.equal("ns/a", d[2].key)
    assert.is_nil(d[2].tombstone)
    d = pop(f)
    assert.equal("ns/b", d[1].key)
    assert.equal(0, f:len())
  end)

  it("accepts JSON text as well as tables and reports bad objects", function()
    local f = core.delta_fifo_new()
    assert.is_true(f:add('{"metadata":{"name":"j","resourceVersion":"1"}}'))
    local ok, err = f:add({ metadata = {} })
    assert.is_nil(ok)
    assert.is_string(err)
    ok, err = f:add("{not json")
    assert.is_nil(ok)
    assert.is_string(err)
    assert.has_error(function() f:add(42) end)
    assert.equal("j", pop(f)[1].key)
  end)

  it("ignores a delete of a key neither queued nor known", function()
    local f = core.delta_fifo_new()
    assert.is_true(f:delete(obj("ghost", "1")))
    assert.equal(0, #f)
    assert.is_true(f:add(obj("a", "1")))
    assert.is_true(f:delete(obj("a", "2")))
    local d = pop(f)
    assert.equal(2, #d)
    assert.equal("Deleted", d[2].type)
  end)

  it("queues a delete of a key known only to the store", function()
    local f = core.delta_fifo_new { known = store_with(obj("k", "1")) }
    assert.is_true(f:delete(obj("k", "1")))
    local d = pop(f)
    assert.equal(1, #d)
    assert.equal("Deleted", d[1].type)
    assert.is_nil(d[1].tombstone)
  end)

  it("collapses two deletions, keeping the real object over a tombstone",
    function()
      local f = core.delta_fifo_new()
      -- real delete first, then a relist tombstone: the real one stays
      f:add(obj("a", "1"))
      f:delete(obj("a", "2"))
      f:replace({}, "10")
      local d = pop(f)
      assert.equal(2, #d)
      assert.equal("Deleted", d[2].type)
      assert.is_nil(d[2].tombstone)
      assert.equal("2", rv(d[2]))
      -- tombstone first, then a real delete: the real one replaces it
      f:add(obj("b", "1"))
      f:replace({}, "11")
      assert.is_true(f:get("ns/b")[2].tombstone)
      f:delete(obj("b", "5"))
      d = pop(f)
      assert.equal(2, #d)
      assert.is_nil(d[2].tombstone)
      assert.equal("5", rv(d[2]))
    end)

  describe("replace", function()
    it("emits Replaced, and tombstones for store-only, queue-only and both",
      function()
        local s = store_with(obj("store-only", "1"), obj("both", "1"),
          obj("kept", "1"))
        local f = core.delta_fifo_new { known = s, emit_replaced = true }
        f:update(obj("both", "2"))
        f:add(obj("queue-only", "3"))
        assert.is_true(f:replace({ obj("kept", "4") }, "10"))
        assert.same({ "ns/both", "ns/queue-only", "ns/kept",
          "ns/store-only" }, f:list_keys())

        local d = pop(f) -- both: tombstone holds the newest queued object
        assert.equal(2, #d)
        assert.same({ "Updated", "Deleted" }, { d[1].type, d[2].type })
        assert.is_true(d[2].tombstone)
        assert.equal("ns/both", d[2].key)
        assert.equal("2", rv(d[2]))

        d = pop(f) -- queue-only
        assert.is_true(d[2].tombstone)
        assert.equal("ns/queue-only", d[2].key)
        assert.equal("3", rv(d[2]))

        d = pop(f) -- kept
        assert.equal(1, #d)
        assert.equal("Replaced", d[1].type)
        assert.equal("4", rv(d[1]))

        d = pop(f) -- store-only: the store's object
        assert.equal(1, #d)
        assert.same({ type = "Deleted", key = "ns/store-only",
          tombstone = true, object = obj("store-only", "1") }, d[1])
      end)

    it("emits Sync instead of Replaced by default (client-go compat)",
      function()
        local f = core.delta_fifo_new()
        f:replace({ obj("a", "1") }, "1")
        assert.equal("Sync", pop(f)[1].type)
      end)

    it("reports which list item is not an object", function()
      local f = core.delta_fifo_new()
      local ok, err = f:replace({ obj("a", "1"), { metadata = {} } }, "1")
      assert.is_nil(ok)
      assert.matches("item 2", err)
      assert.equal(0, #f)
    end)
  end)

  describe("resync", function()
    it("queues Sync for known keys with nothing pending, once", function()
      local s = store_with(obj("a", "1"), obj("b", "1"))
      local f = core.delta_fifo_new { known = s }
      f:update(obj("a", "2"))
      for _ = 1, 5 do assert.is_true(f:resync()) end
      assert.equal(2, #f)
      local d = pop(f)
      assert.equal(1, #d)
      assert.equal("Updated", d[1].type)
      d = pop(f)
      assert.equal(1, #d)
      assert.equal("Sync", d[1].type)
      assert.equal("ns/b", d[1].key)
    end)

    it("does nothing without known objects", function()
      local f = core.delta_fifo_new()
      assert.is_true(f:resync())
      assert.equal(0, #f)
    end)
  end)

  describe("pop with a function", function()
    it("passes deltas and the initial-list flag; true on success", function()
      local f = core.delta_fifo_new()
      f:replace({ obj("a", "1") }, "1")
      local seen
      assert.is_true(f:pop(function(d, initial) seen = { d, initial } end))
      assert.equal("ns/a", seen[1][1].key)
      assert.is_true(seen[2])
    end)

    it("re-queues a failed item behind newer keys with retry_on_error",
      function()
        local f = core.delta_fifo_new { retry_on_error = true }
        f:add(obj("a", "1"))
        f:add(obj("b", "1"))
        local ok, err = f:pop(function() return nil, "try later" end)
        assert.is_nil(ok)
        assert.equal("try later", err)
        assert.same({ "ns/b", "ns/a" }, f:list_keys())
        -- an error raised counts as a failure too
        ok, err = f:pop(function() error("boom") end)
        assert.is_nil(ok)
        assert.matches("boom", err)
        assert.same({ "ns/a", "ns/b" }, f:list_keys())
        -- new deltas for a re-queued key join it; nothing overtakes
        f:update(obj("a", "2"))
        local d = pop(f)
        assert.same({ "Added", "Updated" }, { d[1].type, d[2].type })
      end)

    it("drops a failed item without retry_on_error", function()
      local f = core.delta_fifo_new()
      f:add(obj("a", "1"))
      assert.is_nil((f:pop(function() return false end)))
      assert.equal(0, #f)
    end)

    it("refuses calls into the same queue from the function", function()
      local f = core.delta_fifo_new { retry_on_error = true }
      f:add(obj("a", "1"))
      local ok, err = f:pop(function() f:add(obj("x", "1")) end)
      assert.is_nil(ok)
      assert.matches("not allowed", err)
      assert.same({ "ns/a" }, f:list_keys())
    end)
  end)

  describe("add_if_not_present", function()
    it("re-queues popped deltas unless newer ones arrived", function()
      local f = core.delta_fifo_new()
      f:add(obj("a", "1"))
      local old = pop(f)
      f:update(obj("a", "2"))
      assert.is_true(f:add_if_not_present(old))
      local d = pop(f)
      assert.equal(1, #d) -- the newer delta won, the old was dropped
      assert.equal("2", rv(d[1]))
      assert.is_true(f:add_if_not_present(d))
      assert.same(d, pop(f))
    end)

    it("rejects things that are not deltas", function()
      local f = core.delta_fifo_new()
      assert.has_error(function() f:add_if_not_present({}) end)
      assert.has_error(function()
        f:add_if_not_present({ { type = "Nope", object = obj("a", "1") } })
      end)
      assert.has_error(function()
        f:add_if_not_present({ { type = "Added", object = 42 } })
      end)
      assert.has_error(function() -- a tombstone needs at least its key
        f:add_if_not_present({ { type = "Deleted", tombstone = true } })
      end)
      assert.equal(0, #f)
    end)

    it("round-trips tombstones", function()
      local f = core.delta_fifo_new()
      f:add(obj("a", "1"))
      f:replace({}, "2")
      local d = pop(f)
      assert.is_true(f:add_if_not_present(d))
      assert.same(d, f:get("ns/a"))
    end)
  end)

  describe("has_synced", function()
    it("turns true once the first replace's items are popped", function()
      local f = core.delta_fifo_new { known = store_with(obj("gone", "1")) }
      assert.is_false(f:has_synced())
      f:replace({ obj("a", "1"), obj("b", "1") }, "5")
      f:add(obj("late", "1"))
      for _ = 1, 3 do -- a, b and the tombstone of "gone"
        assert.is_false(f:has_synced())
        local _, initial = pop(f)
        assert.is_true(initial)
      end
      assert.is_true(f:has_synced())
      local _, initial = pop(f)
      assert.is_false(initial)
      f:replace({}, "6")
      assert.is_true(f:has_synced())
    end)

    it("is true at once when an add comes before any replace", function()
      local f = core.delta_fifo_new()
      f:add(obj("a", "1"))
      assert.is_true(f:has_synced())
    end)
  end)

  describe("close", function()
    it("still hands out queued items, then reports closed", function()
      local f = core.delta_fifo_new()
      f:add(obj("a", "1"))
      f:close()
      assert.is_true(f:is_closed())
      assert.equal("ns/a", pop(f)[1].key)
      local d, err = f:pop()
      assert.is_nil(d)
      assert.equal("closed", err)
    end)

    it("times out on an empty open queue", function()
      local f = core.delta_fifo_new()
      local d, err = f:pop(nil, 0.01)
      assert.is_nil(d)
      assert.equal("timeout", err)
      assert.equal("timeout", select(2, f:pop(function() end, 0)))
    end)
  end)
end)
