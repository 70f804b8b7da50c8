-- website-operator: runs a web site for each Website (demo.klua.dev/v1, see
-- crd.yaml next to this file). For a Website <name> with spec.domain and
-- spec.replicas it keeps, in the Website's namespace:
--   * ConfigMap <name>-site   data.domain = spec.domain
--   * Deployment <name>       spec.replicas (default 1) of nginx, labels app=<name>
-- both controlled by the Website (owner reference), written with server-side
-- apply and set back when edited or deleted by hand. It reports
-- status.observedGeneration and a Ready condition, and holds the finalizer
-- demo.klua.dev/cleanup so that it deletes the owned objects itself before
-- the Website goes.
--
--   build/klua dev examples/website-operator/operator.lua --seed examples/website-operator/crd.yaml
--   kubectl apply -f examples/website-operator/website.yaml
-- (against a cluster: kubectl apply -f examples/website-operator/crd.yaml
-- first, then build/klua run examples/website-operator/operator.lua)
--
-- Ready: no deployment controller runs against the local API server, so no
-- pod ever becomes available there. Ready therefore means "the owned objects
-- exist and match the spec" (as the API server returned them), not "the site
-- serves traffic"; a real operator would also look at the Deployment's
-- status.availableReplicas. Walkthrough: docs/examples.md.
local klua = require("klua")

local API_VERSION = "demo.klua.dev/v1"
local FINALIZER = "demo.klua.dev/cleanup"
local MANAGER = "website-operator"            -- server-side apply field manager
local IMAGE = klua.getenv("WEBSITE_IMAGE", "nginx:1.25")
local MANAGED = "app.kubernetes.io/managed-by=" .. MANAGER

local websites = klua.cache(API_VERSION, "Website", {})
-- Only objects this operator labelled are cached (not every ConfigMap and
-- Deployment of the cluster).
local configmaps = klua.cache("v1", "ConfigMap", { label_selector = MANAGED })
local deployments = klua.cache("apps/v1", "Deployment", { label_selector = MANAGED })

local function is_set(v) return v ~= nil and v ~= klua.null end

local function labels(name)
  return { app = name, ["app.kubernetes.io/managed-by"] = MANAGER }
end

-- The desired objects for a Website (plain tables, built from scratch).
local function desired_configmap(site)
  local md = site.metadata
  local cm = {
    apiVersion = "v1", kind = "ConfigMap",
    metadata = { namespace = md.namespace, name = md.name .. "-site", labels = labels(md.name) },
    data = { domain = site.spec.domain },
  }
  assert(klua.meta.set_controller_reference(site, cm))
  return cm
end

local function desired_deployment(site, replicas)
  local md = site.metadata
  local dep = {
    apiVersion = "apps/v1", kind = "Deployment",
    metadata = { namespace = md.namespace, name = md.name, labels = labels(md.name) },
    spec = {
      replicas = replicas,
      selector = { matchLabels = { app = md.name } },
      template = {
        metadata = { labels = { app = md.name } },
        spec = {
          containers = { {
            name = "web", image = IMAGE,
            ports = { { containerPort = 80 } },
            env = { { name = "SITE_DOMAIN",
                      valueFrom = { configMapKeyRef = { name = md.name .. "-site", key = "domain" } } } },
          } },
        },
      },
    },
  }
  assert(klua.meta.set_controller_reference(site, dep))
  return dep
end

-- Does an existing object match what the spec asks for? Only the fields
-- this operator decides are compared (the server adds defaults to the rest).
local function configmap_matches(cm, site)
  return cm ~= nil and klua.meta.is_controlled_by(cm, site) and type(cm.data) == "table" and
    cm.data.domain == site.spec.domain
end

local function deployment_matches(dep, site, replicas)
  if dep == nil or not klua.meta.is_controlled_by(dep, site) then return false end
  local spec = dep.spec
  if type(spec) ~= "table" or spec.replicas ~= replicas then return false end
  local ml = type(spec.selector) == "table" and spec.selector.matchLabels
  if type(ml) ~= "table" or ml.app ~= site.metadata.name then return false end
  local t = spec.template
  local tl = type(t) == "table" and type(t.metadata) == "table" and t.metadata.labels
  if type(tl) ~= "table" or tl.app ~= site.metadata.name then return false end
  local cs = type(t.spec) == "table" and t.spec.containers
  local c = type(cs) == "table" and cs[1]
  return type(c) == "table" and c.name == "web" and c.image == IMAGE
end

-- Makes sure one owned object matches: reads the cache, applies the
-- desired object when it differs. Returns true, or false and a message.
local function ensure(cached, desired, matches)
  if matches(cached) then return true end
  local obj, err = klua.apply(desired, { field_manager = MANAGER, force = true })
  if not obj then
    return false, "applying " .. klua.meta.describe(desired) .. ": " .. tostring(err)
  end
  if not matches(obj) then
    return false, klua.meta.describe(desired) .. " does not match the spec after apply"
  end
  klua.log.info("applied", { object = klua.meta.describe(desired) })
  return true
end

-- Writes status (observedGeneration, Ready) when it changed. site must be
-- the latest version we have (its resourceVersion guards the write).
local function set_status(site, ready, reason, message)
  local obj = klua.deepcopy(site)
  local gen = site.metadata.generation
  local changed = klua.conditions.set(obj, {
    type = "Ready", status = ready and "True" or "False",
    reason = reason, message = message, observedGeneration = gen,
  })
  if obj.status.observedGeneration ~= gen then
    obj.status.observedGeneration = gen
    changed = true
  end
  if not changed then return end
  local _, err = klua.update_status(obj)
  if klua.is_conflict(err) then return klua.requeue end -- a newer version is on its way
  if err and not klua.is_not_found(err) then
    error("updating status of " .. klua.meta.describe(site) .. ": " .. tostring(err))
  end
end

-- The Website is being deleted: delete what it owns, then drop the
-- finalizer so that the API server can let it go.
local function finalize(site)
  if not klua.finalizers.has(site, FINALIZER) then return end
  local md = site.metadata
  local waiting = false
  for _, o in ipairs({ { "v1", "ConfigMap", md.name .. "-site" }, { "apps/v1", "Deployment", md.name } }) do
    -- a live read: the cache may not have caught up with a recent create
    local cur, err = klua.get(o[1], o[2], md.namespace, o[3])
    if cur == nil and not klua.is_not_found(err) then
      error("reading " .. o[2] .. " " .. md.namespace .. "/" .. o[3] .. ": " .. tostring(err))
    end
    if cur and klua.meta.is_controlled_by(cur, site) then
      if is_set(cur.metadata.deletionTimestamp) then
        waiting = true -- already deleting; its own finalizers hold it
      else
        local _, derr = klua.delete(o[1], o[2], md.namespace, o[3],
          { preconditions = { uid = cur.metadata.uid } })
        if derr and not klua.is_not_found(derr) then
          error("deleting " .. klua.meta.describe(cur) .. ": " .. tostring(derr))
        end
        klua.log.info("deleted", { object = klua.meta.describe(cur), owner = klua.meta.key(site) })
      end
    end
  end
  if waiting then return klua.requeue_after(2) end
  local _, err = klua.finalizers.remove(site, FINALIZER)
  if err and not klua.is_not_found(err) then
    error("removing finalizer from " .. klua.meta.describe(site) .. ": " .. tostring(err))
  end
  klua.log.info("cleaned up", { website = klua.meta.key(site) })
end

klua.controller({
  name = "website-operator",
  watch = { api_version = API_VERSION, kind = "Website" },
  -- a change to an owned object enqueues the Website that controls it
  owns = {
    { api_version = "v1", kind = "ConfigMap", label_selector = MANAGED },
    { api_version = "apps/v1", kind = "Deployment", label_selector = MANAGED },
  },
  reconcile = function(req)
    local site = websites:get(req.namespace, req.name)
    if site == nil then return end -- gone (the finalizer already did the cleanup)
    if is_set(site.metadata.deletionTimestamp) then return finalize(site) end

    if not klua.finalizers.has(site, FINALIZER) then
      local updated, err = klua.finalizers.add(site, FINALIZER)
      if not updated then
        if klua.is_not_found(err) then return end
        error("adding finalizer to " .. klua.meta.describe(site) .. ": " .. tostring(err))
      end
      site = updated -- the newest version: status is written against it
    end

    local spec = type(site.spec) == "table" and site.spec or {}
    local replicas = spec.replicas
    if replicas == nil or replicas == klua.null then replicas = 1 end
    if type(spec.domain) ~= "string" or spec.domain == "" then
      return set_status(site, false, "InvalidSpec", "spec.domain must be a non-empty string")
    end
    if type(replicas) ~= "number" or replicas < 0 or replicas ~= math.floor(replicas) then
      return set_status(site, false, "InvalidSpec", "spec.replicas must be an integer >= 0")
    end

    local md = site.metadata
    local ok1, err1 = ensure(configmaps:get(md.namespace, md.name .. "-site"), desired_configmap(site),
      function(o) return configmap_matches(o, site) end)
    local ok2, err2 = ensure(deployments:get(md.namespace, md.name), desired_deployment(site, replicas),
      function(o) return deployment_matches(o, site, replicas) end)
    if not (ok1 and ok2) then
      local msg = err1 or err2
      klua.log.warn("cannot apply owned objects", { website = req.key, err = msg })
      set_status(site, false, "ApplyFailed", msg)
      return klua.requeue -- retried with backoff
    end
    return set_status(site, true, "ObjectsInSync",
      "ConfigMap " .. md.name .. "-site and Deployment " .. md.name .. " match the spec")
  end,
})
