-- klua.finalizers: finalizer helpers.
--
--   if klua.finalizers.has(obj, "example.com/cleanup") then ... end
--   local obj, err = klua.finalizers.add(obj, "example.com/cleanup")
--   local obj, err = klua.finalizers.remove(obj, "example.com/cleanup")
--
-- has is pure. add and remove write through the API with optimistic
-- concurrency: they update a copy of obj carrying its resourceVersion and,
-- on 409 Conflict, read the object again and retry (at most 5 attempts).
-- They never modify the table they are given.
local klua = require("klua")

local M = {}

M.max_attempts = 5

local function list(obj)
  if type(obj) ~= "table" or type(obj.metadata) ~= "table" then return nil end
  local f = obj.metadata.finalizers
  if type(f) ~= "table" or f == klua.null then return nil end
  return f
end

-- has(obj, name) -> boolean.
function M.has(obj, name)
  local f = list(obj)
  if not f then return false end
  for _, x in ipairs(f) do
    if x == name then return true end
  end
  return false
end

local function check(fname, obj, name)
  if type(obj) ~= "table" or type(obj.metadata) ~= "table" then
    error("klua.finalizers." .. fname .. ": object must be a table with metadata", 3)
  end
  if type(obj.apiVersion) ~= "string" or type(obj.kind) ~= "string" then
    error("klua.finalizers." .. fname .. ": object needs apiVersion and kind", 3)
  end
  if type(name) ~= "string" or name == "" then
    error("klua.finalizers." .. fname .. ": finalizer must be a non-empty string", 3)
  end
end

-- change(obj, want): returns the updated object, obj itself when nothing
-- had to change, or nil, err.
local function change(obj, name, want)
  local md = obj.metadata
  local ns = type(md.namespace) == "string" and md.namespace ~= "" and md.namespace or nil
  local cur = obj
  local err
  for attempt = 1, M.max_attempts do
    if attempt > 1 then
      local fresh, gerr = klua.get(obj.apiVersion, obj.kind, ns, md.name)
      if not fresh then return nil, gerr end
      cur = fresh
    end
    if M.has(cur, name) == want then return cur end
    local copy = klua.deepcopy(cur)
    local f = list(copy)
    if want then
      if not f then
        f = setmetatable({}, klua.array_mt)
        copy.metadata.finalizers = f
      end
      f[#f + 1] = name
    else
      for i = #f, 1, -1 do
        if f[i] == name then table.remove(f, i) end
      end
    end
    local updated
    updated, err = klua.update(copy)
    if updated then return updated end
    if not klua.is_conflict(err) then return nil, err end
  end
  return nil, err
end

-- add(obj, name) -> the updated object (obj itself when the finalizer is
-- already there, with no API call), or nil, err.
function M.add(obj, name)
  check("add", obj, name)
  return change(obj, name, true)
end

-- remove(obj, name) -> the updated object (obj itself when the finalizer is
-- absent, with no API call), or nil, err. The server may delete the object
-- when its last finalizer goes: the returned object is then the server's
-- last answer.
function M.remove(obj, name)
  check("remove", obj, name)
  return change(obj, name, false)
end

return M
