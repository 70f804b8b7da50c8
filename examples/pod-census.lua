-- pod-census: keeps, in every namespace that has pods, a ConfigMap
-- "pod-census" whose data maps each pod phase to the number of pods in that
-- phase, as strings, all five phases always present:
--
--   data: { Pending = "1", Running = "2", Succeeded = "0", Failed = "0", Unknown = "0" }
--
--   build/klua dev examples/pod-census.lua
--
-- The reconcile key is a namespace (the primary resource is Namespace).
-- Pods are counted with a namespace index on the pod cache, so a reconcile
-- reads only the pods of its namespace, never a list of everything.
-- A pod without status.phase counts as Pending (the phase a real API server
-- gives a new pod); a phase outside the five counts as Unknown.
-- When a namespace has no pods left its census is deleted. A census edited
-- or deleted by hand is set back. Walkthrough: docs/examples.md.
local klua = require("klua")

local CENSUS = "pod-census"
local PHASES = { "Pending", "Running", "Succeeded", "Failed", "Unknown" }
local KNOWN = {}
for _, p in ipairs(PHASES) do KNOWN[p] = true end

-- Every pod, indexed by namespace (the index is computed in C).
klua.index("v1", "Pod", "namespace", { namespace = true })

local function ns_of(obj) return { { name = obj.metadata.namespace } } end

klua.controller({
  name = "pod-census",
  watch = { api_version = "v1", kind = "Namespace" },
  watches = {
    -- a pod change recounts its namespace
    { api_version = "v1", kind = "Pod", map = ns_of },
    -- so does a change to a census (hand edits are set back)
    { api_version = "v1", kind = "ConfigMap", field_selector = "metadata.name=" .. CENSUS, map = ns_of },
  },
  reconcile = function(req)
    local ns = req.name
    local namespace = klua.cache("v1", "Namespace"):get(ns)
    if namespace == nil then return end -- deleted: its census went with it
    if namespace.metadata.deletionTimestamp ~= nil and namespace.metadata.deletionTimestamp ~= klua.null then
      return -- terminating: nothing can be created there, and all of it goes
    end

    local counts, total = {}, 0
    for _, p in ipairs(PHASES) do counts[p] = 0 end
    for _, pod in ipairs(klua.cache("v1", "Pod"):by_index("namespace", ns)) do
      local phase = type(pod.status) == "table" and pod.status.phase or nil
      if type(phase) ~= "string" or phase == "" then phase = "Pending" end
      if not KNOWN[phase] then phase = "Unknown" end
      counts[phase] = counts[phase] + 1
      total = total + 1
    end

    local current = klua.cache("v1", "ConfigMap"):get(ns, CENSUS)
    if total == 0 then
      if current == nil then return end
      local _, err = klua.delete("v1", "ConfigMap", ns, CENSUS,
        { preconditions = { uid = current.metadata.uid } })
      if err and not klua.is_not_found(err) then
        if klua.is_conflict(err) then return klua.requeue end
        error("deleting census " .. ns .. "/" .. CENSUS .. ": " .. tostring(err))
      end
      klua.log.info("no pods left: census deleted", { namespace = ns })
      return
    end

    local data = {}
    for _, p in ipairs(PHASES) do data[p] = tostring(counts[p]) end

    if current then
      local same = type(current.data) == "table"
      for _, p in ipairs(PHASES) do
        if same and current.data[p] ~= data[p] then same = false end
      end
      if same then
        for k in pairs(current.data) do
          if not KNOWN[k] then same = false end -- a key added by hand
        end
      end
      if same then return end
      local obj = klua.deepcopy(current)
      obj.data = data -- replaces the whole map: stray keys go too
      local _, err = klua.update(obj)
      if klua.is_conflict(err) or klua.is_not_found(err) then return klua.requeue end
      if err then error("updating census " .. ns .. "/" .. CENSUS .. ": " .. tostring(err)) end
    else
      local _, err = klua.create({
        apiVersion = "v1", kind = "ConfigMap",
        metadata = { namespace = ns, name = CENSUS,
                     labels = { ["app.kubernetes.io/managed-by"] = "pod-census" } },
        data = data,
      })
      if klua.is_already_exists(err) then return klua.requeue end -- the cache is behind
      if err then error("creating census " .. ns .. "/" .. CENSUS .. ": " .. tostring(err)) end
    end
    klua.log.info("census", { namespace = ns, pods = total, running = counts.Running,
                              pending = counts.Pending })
  end,
})
