-- An example controller: for every ConfigMap labelled annotate=true it
--   1. writes an annotation counting the ConfigMap's data keys, and
--   2. keeps a "<name>-summary" ConfigMap (owned by it) listing those keys.
-- Its unit test is annotate_spec.lua next to it (run from the repo root:
--   LUA_PATH='lua/?.lua;;' busted --lua=luajit examples/testing/annotate_spec.lua).
local klua = require("klua")

-- Configuration through klua.getenv, so tests can set it.
local ANNOTATION = klua.getenv("ANNOTATION", "example.com/keys")
local NAMESPACE = klua.getenv("WATCH_NAMESPACE") -- nil: all namespaces

local function sorted_keys(t)
  local keys = {}
  if type(t) == "table" then
    for k in pairs(t) do keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

local function ensure_summary(cm, keys)
  local name = cm.metadata.name .. "-summary"
  local want = table.concat(keys, ",")
  -- two ConfigMap caches are declared (watch and owns): pick the owned one
  local cur = klua.cache("v1", "ConfigMap", { namespace = NAMESPACE }):get(cm.metadata.namespace, name)
  if cur and cur.data and cur.data.keys == want then return true end
  local summary = {
    apiVersion = "v1", kind = "ConfigMap",
    metadata = { namespace = cm.metadata.namespace, name = name },
    data = { keys = want },
  }
  assert(klua.meta.set_controller_reference(cm, summary))
  local _, err
  if cur then
    summary.metadata.resourceVersion = cur.metadata.resourceVersion
    _, err = klua.update(summary)
  else
    _, err = klua.create(summary)
  end
  if err and not klua.is_already_exists(err) then return nil, err end
  return true
end

klua.controller({
  name = "annotate",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = NAMESPACE,
            label_selector = "annotate=true" },
  owns = { { api_version = "v1", kind = "ConfigMap", namespace = NAMESPACE } },
  reconcile = function(req)
    local cm = klua.cache("v1", "ConfigMap", { namespace = NAMESPACE, label_selector = "annotate=true" })
      :get(req.namespace, req.name)
    if not cm then return end -- deleted: the summary goes with it (owner reference)

    local keys = sorted_keys(cm.data)
    local count = tostring(#keys)
    local annotations = cm.metadata.annotations
    if not (annotations and annotations[ANNOTATION] == count) then
      local copy = klua.deepcopy(cm) -- cached objects are read-only
      copy.metadata.annotations = copy.metadata.annotations or {}
      copy.metadata.annotations[ANNOTATION] = count
      local _, err = klua.update(copy)
      if klua.is_conflict(err) then return klua.requeue end -- the cache was stale
      if err then error("annotating " .. req.key .. ": " .. tostring(err)) end
      klua.event(cm, "Normal", "Annotated", ANNOTATION .. "=" .. count)
      klua.log.info("annotated", { key = req.key, keys = count })
    end

    local ok, err = ensure_summary(cm, keys)
    if not ok then
      klua.log.warn("cannot write summary", { key = req.key, err = tostring(err) })
      return klua.requeue_after(10)
    end
  end,
})
