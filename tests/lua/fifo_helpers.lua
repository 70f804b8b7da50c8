-- fifo_helpers.lua: what the queue specs (delta_fifo_spec, real_fifo_spec,
-- undelta_store_spec) share: ConfigMap objects, a filled known-objects store,
-- a pop that must succeed, and a delta's resourceVersion.
local core = require("klua_core")

local M = {}

-- A ConfigMap ns/name (ns defaults to "ns") at resourceVersion rv.
function M.obj(name, rv, ns)
  return {
    apiVersion = "v1", kind = "ConfigMap",
    metadata = { namespace = ns or "ns", name = name, resourceVersion = rv },
  }
end

-- A known-objects store (the informer's store), filled with objs.
function M.store_with(...)
  assert(core.store_new, "klua_core.store_new (runtime/lua_store.c) missing")
  local s = core.store_new()
  for _, o in ipairs({ ... }) do assert(s:add(o)) end
  return s
end

-- Pops with a 1 s timeout; fails the test when nothing comes.
function M.pop(f)
  local d, initial = f:pop(nil, 1)
  assert(d, initial)
  return d, initial
end

-- The resourceVersion of a delta's object (nil for a tombstone without one).
function M.rv(delta)
  return delta.object and delta.object.metadata.resourceVersion
end

return M
