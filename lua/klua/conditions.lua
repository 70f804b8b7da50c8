-- klua.conditions: status.conditions helpers (metav1.Condition semantics,
-- as apimachinery's meta.SetStatusCondition).
--
--   local obj = klua.deepcopy(cached)
--   if klua.conditions.set(obj, { type = "Ready", status = "True",
--        reason = "Mirrored", message = "3 copies", observedGeneration = g }) then
--     klua.update_status(obj)
--   end
--
-- set changes lastTransitionTime only when the status changes (or the
-- condition is new), using the backend clock. Pure apart from klua.now().
local klua = require("klua")

local M = {}

local STATUSES = { True = true, False = true, Unknown = true }
local FIELDS = { type = true, status = true, reason = true, message = true,
                 observedGeneration = true, lastTransitionTime = true }

local function list(obj)
  if type(obj) ~= "table" or type(obj.status) ~= "table" or obj.status == klua.null then return nil end
  local c = obj.status.conditions
  if type(c) ~= "table" or c == klua.null then return nil end
  return c
end

-- get(obj, type) -> the condition table, or nil.
function M.get(obj, ctype)
  local c = list(obj)
  if not c then return nil end
  for _, cond in ipairs(c) do
    if type(cond) == "table" and cond.type == ctype then return cond end
  end
  return nil
end

-- is_true / is_false / is_unknown(obj, type) -> boolean. A missing
-- condition is neither true nor false (is_unknown returns true for it).
function M.is_true(obj, ctype)
  local c = M.get(obj, ctype)
  return c ~= nil and c.status == "True"
end

function M.is_false(obj, ctype)
  local c = M.get(obj, ctype)
  return c ~= nil and c.status == "False"
end

function M.is_unknown(obj, ctype)
  local c = M.get(obj, ctype)
  return c == nil or c.status == "Unknown"
end

-- set(obj, cond) -> true when obj changed. cond needs type and status
-- ("True" | "False" | "Unknown"); reason, message, observedGeneration and
-- lastTransitionTime are optional. Creates status and status.conditions as
-- needed; obj must be writable.
function M.set(obj, cond)
  if type(obj) ~= "table" then error("klua.conditions.set: object must be a table", 2) end
  if type(cond) ~= "table" then error("klua.conditions.set: condition must be a table", 2) end
  for k in pairs(cond) do
    if not FIELDS[k] then error("klua.conditions.set: unknown condition field '" .. tostring(k) .. "'", 2) end
  end
  if type(cond.type) ~= "string" or cond.type == "" then
    error("klua.conditions.set: condition type must be a non-empty string", 2)
  end
  if not STATUSES[cond.status] then
    error("klua.conditions.set: condition status must be \"True\", \"False\" or \"Unknown\", got " ..
      tostring(cond.status), 2)
  end
  if cond.observedGeneration ~= nil and type(cond.observedGeneration) ~= "number" then
    error("klua.conditions.set: observedGeneration must be a number", 2)
  end
  if type(obj.status) ~= "table" or obj.status == klua.null then
    obj.status = setmetatable({}, klua.object_mt)
  end
  local c = obj.status.conditions
  if type(c) ~= "table" or c == klua.null then
    c = setmetatable({}, klua.array_mt)
    obj.status.conditions = c
  end
  local existing
  for _, x in ipairs(c) do
    if type(x) == "table" and x.type == cond.type then existing = x; break end
  end
  if not existing then
    local new = setmetatable({
      type = cond.type, status = cond.status,
      reason = cond.reason or "", message = cond.message or "",
      observedGeneration = cond.observedGeneration,
      lastTransitionTime = cond.lastTransitionTime or klua.format_time(klua.now()),
    }, klua.object_mt)
    c[#c + 1] = new
    return true
  end
  local changed = false
  if existing.status ~= cond.status then
    existing.status = cond.status
    existing.lastTransitionTime = cond.lastTransitionTime or klua.format_time(klua.now())
    changed = true
  end
  local reason, message = cond.reason or "", cond.message or ""
  if existing.reason ~= reason then existing.reason = reason; changed = true end
  if existing.message ~= message then existing.message = message; changed = true end
  if cond.observedGeneration ~= nil and existing.observedGeneration ~= cond.observedGeneration then
    existing.observedGeneration = cond.observedGeneration
    changed = true
  end
  return changed
end

-- remove(obj, type) -> true when a condition was removed.
function M.remove(obj, ctype)
  local c = list(obj)
  if not c then return false end
  for i, x in ipairs(c) do
    if type(x) == "table" and x.type == ctype then
      table.remove(c, i)
      return true
    end
  end
  return false
end

return M
