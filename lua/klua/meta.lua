-- klua.meta: object metadata helpers (owner references, keys), after
-- controller-runtime's controllerutil and apimachinery's metav1 helpers.
--
--   local ok, err = klua.meta.set_controller_reference(owner, child)
--   local ref = klua.meta.get_controller_of(child)      -- ownerReference or nil
--   if klua.meta.is_controlled_by(child, owner) then ... end
--
-- Functions that change an object (set_*) need a writable table (a
-- klua.deepcopy of a cached object, or one you built). Pure functions.
local klua = require("klua")

local M = {}

local function md(obj)
  if type(obj) ~= "table" then return nil end
  local m = obj.metadata
  if type(m) ~= "table" or m == klua.null then return nil end
  return m
end

local function str(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

-- group("apps/v1") -> "apps"; group("v1") -> "" (the core group).
function M.group(api_version)
  if type(api_version) ~= "string" then return "" end
  return api_version:match("^(.*)/[^/]*$") or ""
end

-- key(obj) -> "namespace/name", or "name" for cluster-scoped objects: the
-- key the caches and the workqueue use.
function M.key(obj)
  local m = md(obj)
  local name = m and str(m.name)
  if not name then return nil end
  local ns = str(m.namespace)
  return ns and (ns .. "/" .. name) or name
end

-- describe(obj) -> "Kind ns/name" for log and error messages.
function M.describe(obj)
  local kind = type(obj) == "table" and str(obj.kind) or "object"
  return kind .. " " .. (M.key(obj) or "<unnamed>")
end

local function refs(obj)
  local m = md(obj)
  if not m then return nil end
  local r = m.ownerReferences
  if type(r) ~= "table" or r == klua.null then return nil end
  return r
end

-- get_controller_of(obj) -> the ownerReference with controller = true, or nil.
function M.get_controller_of(obj)
  local r = refs(obj)
  if not r then return nil end
  for _, ref in ipairs(r) do
    if type(ref) == "table" and ref.controller == true then return ref end
  end
  return nil
end

-- is_controlled_by(obj, owner) -> true when obj's controller reference
-- points at owner (same uid).
function M.is_controlled_by(obj, owner)
  local ref = M.get_controller_of(obj)
  local m = md(owner)
  local uid = m and str(m.uid)
  return ref ~= nil and uid ~= nil and ref.uid == uid
end

-- owner_references(obj) -> array of the references (empty when none).
function M.owner_references(obj)
  return refs(obj) or {}
end

local function owner_ref(fname, owner, obj)
  if type(owner) ~= "table" then error("klua.meta." .. fname .. ": owner must be a table", 3) end
  if type(obj) ~= "table" then error("klua.meta." .. fname .. ": object must be a table", 3) end
  local om = md(owner)
  local api_version, kind = str(owner.apiVersion), str(owner.kind)
  local name, uid = om and str(om.name), om and str(om.uid)
  if not (api_version and kind and name and uid) then
    return nil, "owner " .. M.describe(owner) .. " needs apiVersion, kind, metadata.name and metadata.uid"
  end
  local m = md(obj)
  if not m then error("klua.meta." .. fname .. ": object has no metadata table", 3) end
  local owner_ns, obj_ns = str(om.namespace), str(m.namespace)
  if owner_ns then
    if not obj_ns then
      return nil, "cluster-scoped " .. M.describe(obj) .. " cannot have namespaced owner " .. M.describe(owner)
    end
    if owner_ns ~= obj_ns then
      return nil, "cross-namespace owner references are not allowed: owner " .. M.describe(owner) ..
        ", object " .. M.describe(obj)
    end
  end
  return { apiVersion = api_version, kind = kind, name = name, uid = uid }
end

local function same_owner(a, b)
  if a.uid and b.uid and a.uid == b.uid then return true end
  return M.group(a.apiVersion) == M.group(b.apiVersion) and a.kind == b.kind and a.name == b.name
end

local function upsert(obj, ref)
  local m = obj.metadata
  local r = m.ownerReferences
  if type(r) ~= "table" or r == klua.null then
    r = setmetatable({}, klua.array_mt)
    m.ownerReferences = r
  end
  for i, x in ipairs(r) do
    if type(x) == "table" and same_owner(x, ref) then
      r[i] = ref
      return
    end
  end
  r[#r + 1] = ref
end

-- set_controller_reference(owner, obj) -> true, or nil, err. Adds (or
-- refreshes) an ownerReference to owner with controller = true and
-- blockOwnerDeletion = true. Fails when obj already has another controller,
-- when owner is namespaced and obj is in another namespace or
-- cluster-scoped, or when owner lacks apiVersion/kind/name/uid.
function M.set_controller_reference(owner, obj)
  local ref, err = owner_ref("set_controller_reference", owner, obj)
  if not ref then return nil, err end
  local cur = M.get_controller_of(obj)
  if cur and not same_owner(cur, ref) then
    return nil, M.describe(obj) .. " is already controlled by " .. tostring(cur.kind) .. " " ..
      tostring(cur.name) .. " (uid " .. tostring(cur.uid) .. ")"
  end
  ref.controller = true
  ref.blockOwnerDeletion = true
  ref = setmetatable(ref, klua.object_mt)
  upsert(obj, ref)
  return true
end

-- set_owner_reference(owner, obj) -> true, or nil, err: like
-- set_controller_reference but a plain (non-controller) owner reference;
-- an existing reference to the same owner keeps its controller flag.
function M.set_owner_reference(owner, obj)
  local ref, err = owner_ref("set_owner_reference", owner, obj)
  if not ref then return nil, err end
  for _, x in ipairs(refs(obj) or {}) do
    if type(x) == "table" and same_owner(x, ref) then
      ref.controller, ref.blockOwnerDeletion = x.controller, x.blockOwnerDeletion
    end
  end
  upsert(obj, setmetatable(ref, klua.object_mt))
  return true
end

-- remove_owner_reference(owner, obj) -> true when a reference was removed.
function M.remove_owner_reference(owner, obj)
  local r = refs(obj)
  if not r then return false end
  local om = md(owner) or {}
  local want = { apiVersion = owner.apiVersion, kind = owner.kind, name = om.name, uid = str(om.uid) }
  for i = #r, 1, -1 do
    if type(r[i]) == "table" and same_owner(r[i], want) then
      table.remove(r, i)
      return true
    end
  end
  return false
end

return M
