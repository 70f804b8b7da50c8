-- configmap-mirror: copies every ConfigMap labelled mirror=true in the
-- namespace "source" to the namespace "target" (same name, same data), with
-- the label mirrored-from=source on the copy. Data changes propagate, a copy
-- edited by hand is set back, and deleting the source (or removing its
-- mirror=true label) deletes the copy.
--
--   build/klua dev examples/configmap-mirror.lua --seed examples/seed
--
-- Configuration (environment): MIRROR_SOURCE (default "source") and
-- MIRROR_TARGET (default "target"). Walkthrough: docs/examples.md.
--
-- What it watches, and why:
--   * the primary resource: ConfigMaps in the source namespace with
--     mirror=true. reconcile gets their keys ("source/<name>"), also when
--     one is deleted or loses its label.
--   * the copies: ConfigMaps in the target namespace labelled
--     mirrored-from=<source>. An owner reference cannot cross namespaces,
--     so `owns` does not apply; a `watches` entry maps each copy back to the
--     key of its source, so editing or deleting a copy reconciles it.
-- The label is how the mirror recognises its copies: a ConfigMap in the
-- target namespace without it is never overwritten or deleted (remove the
-- label from a copy to detach it).
local klua = require("klua")

local SOURCE = klua.getenv("MIRROR_SOURCE", "source")
local TARGET = klua.getenv("MIRROR_TARGET", "target")
if SOURCE == TARGET then
  error("configmap-mirror: MIRROR_SOURCE and MIRROR_TARGET must differ (both are " .. SOURCE .. ")")
end

local SELECTOR = "mirror=true"
local MARK = "mirrored-from" -- label on every copy; its value is SOURCE

-- The two caches. Declared here (load time) so that reconcile can name them;
-- the controller below watches exactly these.
local sources = klua.cache("v1", "ConfigMap", { namespace = SOURCE, label_selector = SELECTOR })
local copies = klua.cache("v1", "ConfigMap", { namespace = TARGET, label_selector = MARK .. "=" .. SOURCE })

-- Two string maps (data, binaryData) are equal; nil, null and {} are equal.
local function same_map(a, b)
  if a == klua.null then a = nil end
  if b == klua.null then b = nil end
  for k, v in pairs(a or {}) do
    if b == nil or b[k] ~= v then return false end
  end
  for k in pairs(b or {}) do
    if a == nil or a[k] == nil then return false end
  end
  return true
end

local function in_line(copy, src)
  local labels = copy.metadata.labels
  return same_map(copy.data, src.data) and same_map(copy.binaryData, src.binaryData) and
    type(labels) == "table" and labels[MARK] == SOURCE
end

-- A writable table holding src's data (or nil when it has none).
local function data_of(src, field)
  local v = src[field]
  if v == nil or v == klua.null then return nil end
  return klua.deepcopy(v)
end

local function create_copy(src)
  local obj = {
    apiVersion = "v1", kind = "ConfigMap",
    metadata = { namespace = TARGET, name = src.metadata.name, labels = { [MARK] = SOURCE } },
    data = data_of(src, "data"),
    binaryData = data_of(src, "binaryData"),
  }
  local _, err = klua.create(obj)
  if not err then
    klua.log.info("created copy", { source = klua.meta.key(src), copy = TARGET .. "/" .. src.metadata.name })
    return
  end
  if not klua.is_already_exists(err) then error("creating copy of " .. klua.meta.key(src) .. ": " .. tostring(err)) end
  -- Either our cache has not seen the copy yet (it will: the copy watch
  -- enqueues this key again), or a ConfigMap we do not manage has that name.
  local cur = klua.get("v1", "ConfigMap", TARGET, src.metadata.name)
  if cur and not (type(cur.metadata.labels) == "table" and cur.metadata.labels[MARK] == SOURCE) then
    klua.log.warn("not mirroring: the target exists and is not a copy", {
      source = klua.meta.key(src), target = TARGET .. "/" .. src.metadata.name })
    klua.event(src, "Warning", "TargetExists", "ConfigMap " .. TARGET .. "/" .. src.metadata.name ..
      " exists and is not labelled " .. MARK .. "=" .. SOURCE .. "; not overwriting it")
    return
  end
  return klua.requeue -- the cache is behind the server: try again shortly
end

local function update_copy(copy, src)
  local obj = klua.deepcopy(copy) -- cached objects are read-only
  obj.data = data_of(src, "data")
  obj.binaryData = data_of(src, "binaryData")
  obj.metadata.labels[MARK] = SOURCE
  local _, err = klua.update(obj) -- carries copy's resourceVersion: no lost updates
  if klua.is_conflict(err) or klua.is_not_found(err) then return klua.requeue end
  if err then error("updating copy " .. klua.meta.key(copy) .. ": " .. tostring(err)) end
  klua.log.info("updated copy", { source = klua.meta.key(src), copy = klua.meta.key(copy) })
end

local function delete_copy(copy)
  -- The uid precondition makes sure we delete the copy we saw, not a
  -- ConfigMap created under the same name since.
  local _, err = klua.delete("v1", "ConfigMap", TARGET, copy.metadata.name,
    { preconditions = { uid = copy.metadata.uid } })
  if err and not klua.is_not_found(err) then
    if klua.is_conflict(err) then return klua.requeue end
    error("deleting copy " .. klua.meta.key(copy) .. ": " .. tostring(err))
  end
  klua.log.info("deleted copy", { copy = klua.meta.key(copy) })
end

klua.controller({
  name = "configmap-mirror",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = SOURCE, label_selector = SELECTOR },
  watches = {
    { api_version = "v1", kind = "ConfigMap", namespace = TARGET, label_selector = MARK .. "=" .. SOURCE,
      map = function(copy) return { { namespace = SOURCE, name = copy.metadata.name } } end },
  },
  reconcile = function(req)
    local src = sources:get(SOURCE, req.name)
    local copy = copies:get(TARGET, req.name)
    if src == nil or (src.metadata.deletionTimestamp ~= nil and src.metadata.deletionTimestamp ~= klua.null) then
      -- the source is gone, going, or no longer labelled mirror=true
      if copy then return delete_copy(copy) end
      return
    end
    if copy == nil then return create_copy(src) end
    if not in_line(copy, src) then return update_copy(copy, src) end
  end,
})
