-- klua.deepcopy: a deep, writable copy of a Lua value (usually an object
-- handed out by a cache, which is read-only by contract).
--
--   local copy = require("klua.deepcopy")(obj)   -- or klua.deepcopy(obj)
--
-- Tables are copied recursively (cycles and shared subtables are preserved:
-- a table reached twice is copied once). Each copy gets the metatable of
-- its original, so JSON objects and arrays keep klua_core.object_mt /
-- array_mt and encode back to {} / []. Non-table values (strings, numbers,
-- booleans, functions) and the JSON null sentinel are returned as they are.
-- Pure function; no shared state.
local type, pairs, next, getmetatable, setmetatable =
  type, pairs, next, getmetatable, setmetatable

local function copy(v, seen)
  local c = seen[v]
  if c then return c end
  c = {}
  seen[v] = c
  for k, x in next, v do
    if type(k) == "table" then k = copy(k, seen) end
    if type(x) == "table" then x = copy(x, seen) end
    c[k] = x
  end
  local mt = getmetatable(v)
  if mt ~= nil then setmetatable(c, mt) end
  return c
end

return function(v)
  if type(v) ~= "table" then return v end
  -- Without klua_core the JSON null is a table: keep its identity.
  local shared = package.loaded["klua._shared"]
  local seen = {}
  if shared then seen[shared.null] = shared.null end
  return copy(v, seen)
end
