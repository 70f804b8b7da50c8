-- klua.json: JSON for controller scripts (see docs/json.md).
--
--   local json = require("klua.json")
--   local v, err = json.decode('{"a":[1,null]}')   -- v.a[2] == json.null
--   local s, err = json.encode(v)                   -- '{"a":[1,null]}'
--
-- Decoded objects and arrays carry json.object_mt / json.array_mt, so {} and
-- [] round-trip; build new ones with json.empty_object()/json.empty_array()
-- or json.object(t)/json.array(t). Tables handed to reconcile functions are
-- read-only by contract: change a json.copy(obj).
local core = require("klua_core")

local M = {}

M.null = core.null
M.object_mt = core.object_mt
M.array_mt = core.array_mt

-- encode(value) -> string, or nil, err (cycles, functions, NaN, bad keys).
M.encode = core.json_encode
-- decode(string) -> value, or nil, err (malformed JSON).
M.decode = core.json_decode

local object_mt, array_mt, null = core.object_mt, core.array_mt, core.null
local getmetatable, setmetatable, type, pairs = getmetatable, setmetatable, type, pairs

function M.is_null(v)
  return v == null
end

function M.empty_object()
  return setmetatable({}, object_mt)
end

function M.empty_array()
  return setmetatable({}, array_mt)
end

-- object(t) / array(t): marks t (or a new table) as a JSON object / array
-- and returns it.
function M.object(t)
  if t ~= nil and type(t) ~= "table" then
    error("klua.json.object: expected a table, got " .. type(t), 2)
  end
  return setmetatable(t or {}, object_mt)
end

function M.array(t)
  if t ~= nil and type(t) ~= "table" then
    error("klua.json.array: expected a table, got " .. type(t), 2)
  end
  return setmetatable(t or {}, array_mt)
end

function M.is_object(v)
  return type(v) == "table" and getmetatable(v) == object_mt
end

function M.is_array(v)
  return type(v) == "table" and getmetatable(v) == array_mt
end

local function copy(v, seen)
  if type(v) ~= "table" then return v end
  local c = seen[v]
  if c then return c end
  c = {}
  seen[v] = c
  for k, x in pairs(v) do
    c[copy(k, seen)] = copy(x, seen)
  end
  local mt = getmetatable(v)
  if mt == object_mt or mt == array_mt then setmetatable(c, mt) end
  return c
end

-- copy(v) -> a deep, writable copy of v that keeps the object/array marks
-- (use it to change an object you were handed).
function M.copy(v)
  return copy(v, {})
end

return M
