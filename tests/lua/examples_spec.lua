-- Unit tests of the example controllers (examples/*.lua) with klua.testing:
-- a fake API server and caches, a recording client, no klua process.
local t = require("klua.testing")

local ROOT = os.getenv("KLUA_ROOT") or "."
local MIRROR = ROOT .. "/examples/configmap-mirror.lua"
local CENSUS = ROOT .. "/examples/pod-census.lua"
local WEBSITE = ROOT .. "/examples/website-operator/operator.lua"

local function configmap(ns, name, data, labels)
  return { apiVersion = "v1", kind = "ConfigMap",
           metadata = { namespace = ns, name = name, labels = labels }, data = data }
end

local function verbs(env)
  local out = {}
  for i, c in ipairs(env.client.calls) do out[i] = c.verb end
  return out
end

-- Runs reconcile and asserts that it neither raised nor returned garbage.
-- A key without "/" is a cluster-scoped name (a namespace for pod-census).
local function reconcile(env, key)
  local req = key
  if not key:find("/", 1, true) then req = { name = key } end
  local ok, res = env:reconcile(req)
  assert(ok, "reconcile " .. key .. " failed: " .. tostring(res))
  return res
end

describe("examples/configmap-mirror.lua", function()
  local env
  local MARK = { ["mirrored-from"] = "source" }
  before_each(function()
    env = t.load(MIRROR)
  end)

  it("watches labelled ConfigMaps in source and the copies in target", function()
    local c = env:controller()
    assert.equal("configmap-mirror", c.name)
    assert.equal("source", c.namespace)
    assert.equal("mirror=true", c.label_selector)
    assert.equal(1, #c.watches)
    assert.equal("target", c.watches[1].namespace)
    assert.equal("mirrored-from=source", c.watches[1].label_selector)
  end)

  it("copies a labelled ConfigMap with its data and the mirrored-from label", function()
    env:add(configmap("source", "app", { a = "1", b = "2" }, { mirror = "true", team = "x" }))
    assert.is_nil(reconcile(env, "source/app"))
    assert.same({ "create" }, verbs(env))
    local copy = env:object("v1", "ConfigMap", "target", "app")
    assert.same({ a = "1", b = "2" }, copy.data)
    assert.same(MARK, copy.metadata.labels) -- the source's other labels are not copied
    assert.is_nil(copy.metadata.ownerReferences) -- cross-namespace: no owner reference
  end)

  it("copies binaryData and a ConfigMap without data", function()
    env:add(configmap("source", "bin", nil, { mirror = "true" }))
    env:set({ apiVersion = "v1", kind = "ConfigMap",
              metadata = { namespace = "source", name = "bin", labels = { mirror = "true" } },
              binaryData = { blob = "AAEC" } })
    env:add(configmap("source", "empty", nil, { mirror = "true" }))
    reconcile(env, "source/bin")
    reconcile(env, "source/empty")
    assert.same({ blob = "AAEC" }, env:object("v1", "ConfigMap", "target", "bin").binaryData)
    local empty = env:object("v1", "ConfigMap", "target", "empty")
    assert.is_not_nil(empty)
    assert.is_nil(empty.data)
  end)

  it("does nothing once the copy is in line", function()
    env:add(configmap("source", "app", { a = "1" }, { mirror = "true" }))
    reconcile(env, "source/app")
    env:sync()
    env:clear()
    assert.is_nil(reconcile(env, "source/app"))
    assert.same({}, env.client.calls)
  end)

  it("propagates a data change of the source", function()
    env:add(configmap("source", "app", { a = "1" }, { mirror = "true" }))
    reconcile(env, "source/app")
    env:sync()
    env:set(configmap("source", "app", { a = "2", c = "3" }, { mirror = "true" }))
    env:clear()
    assert.is_nil(reconcile(env, "source/app"))
    assert.same({ "update" }, verbs(env))
    assert.same({ a = "2", c = "3" }, env:object("v1", "ConfigMap", "target", "app").data)
  end)

  it("sets back a copy edited by hand, and the edit enqueues the source", function()
    env:add(configmap("source", "app", { a = "1" }, { mirror = "true" }))
    reconcile(env, "source/app")
    env:sync()
    local edited = env:set(configmap("target", "app", { a = "hacked", extra = "x" },
                                     { ["mirrored-from"] = "source", mine = "yes" }))
    local reqs = env:enqueued(edited)
    assert.equal(1, #reqs)
    assert.equal("source/app", reqs[1].key)

    env:clear()
    reconcile(env, "source/app")
    assert.same({ "update" }, verbs(env))
    local copy = env:object("v1", "ConfigMap", "target", "app")
    assert.same({ a = "1" }, copy.data)
    assert.equal("yes", copy.metadata.labels.mine) -- labels added by hand are kept
  end)

  it("recreates a copy deleted by hand", function()
    env:add(configmap("source", "app", { a = "1" }, { mirror = "true" }))
    reconcile(env, "source/app")
    env:sync()
    env:remove("v1", "ConfigMap", "target", "app")
    reconcile(env, "source/app")
    assert.same({ a = "1" }, env:object("v1", "ConfigMap", "target", "app").data)
  end)

  it("deletes the copy when the source is deleted", function()
    env:add(configmap("source", "app", { a = "1" }, { mirror = "true" }))
    reconcile(env, "source/app")
    env:sync()
    local uid = env:object("v1", "ConfigMap", "target", "app").metadata.uid
    env:remove("v1", "ConfigMap", "source", "app")
    env:clear()
    assert.is_nil(reconcile(env, "source/app"))
    assert.same({ "delete" }, verbs(env))
    assert.equal(uid, env.client.calls[1].opts.preconditions.uid)
    assert.is_nil(env:object("v1", "ConfigMap", "target", "app"))
  end)

  it("deletes the copy when the source loses its mirror=true label", function()
    env:add(configmap("source", "app", { a = "1" }, { mirror = "true" }))
    reconcile(env, "source/app")
    env:sync()
    env:set(configmap("source", "app", { a = "1" }, { mirror = "false" }))
    reconcile(env, "source/app")
    assert.is_nil(env:object("v1", "ConfigMap", "target", "app"))
    assert.is_not_nil(env:object("v1", "ConfigMap", "source", "app"))
  end)

  it("ignores unlabelled ConfigMaps and ConfigMaps of other namespaces", function()
    env:add(configmap("source", "plain", { a = "1" }))
    env:add(configmap("elsewhere", "app", { a = "1" }, { mirror = "true" }))
    assert.same({}, env:enqueued(env:object("v1", "ConfigMap", "source", "plain")))
    assert.same({}, env:enqueued(env:object("v1", "ConfigMap", "elsewhere", "app")))
    reconcile(env, "source/plain")
    assert.same({}, env.client.calls)
  end)

  it("never overwrites or deletes a target ConfigMap that is not a copy", function()
    env:add(configmap("target", "app", { mine = "1" }))
    env:add(configmap("source", "app", { a = "1" }, { mirror = "true" }))
    assert.is_nil(reconcile(env, "source/app"))
    assert.same({ "create", "get" }, verbs(env))
    assert.same({ mine = "1" }, env:object("v1", "ConfigMap", "target", "app").data)
    assert.equal("TargetExists", env.events[1].reason)
    assert.equal("Warning", env.events[1].type)

    env:remove("v1", "ConfigMap", "source", "app")
    env:clear()
    reconcile(env, "source/app")
    assert.same({}, env.client.calls)
    assert.is_not_nil(env:object("v1", "ConfigMap", "target", "app"))
  end)

  it("retries when its cache is behind (copy exists, not yet cached)", function()
    env:add(configmap("source", "app", { a = "1" }, { mirror = "true" }))
    env:server_set(configmap("target", "app", { a = "old" }, MARK))
    assert.equal(env.klua.requeue, reconcile(env, "source/app"))
    env:sync()
    env:clear()
    reconcile(env, "source/app")
    assert.same({ "update" }, verbs(env))
    assert.same({ a = "1" }, env:object("v1", "ConfigMap", "target", "app").data)
  end)

  it("requeues on a conflict and raises on other write errors", function()
    env:add(configmap("source", "app", { a = "1" }, { mirror = "true" }))
    env:add(configmap("target", "app", { a = "0" }, MARK))
    env:fail_next("update", "Conflict")
    assert.equal(env.klua.requeue, reconcile(env, "source/app"))
    env:fail_next("update", 403)
    local ok, err = env:reconcile("source/app")
    assert.is_false(ok)
    assert.matches("updating copy target/app", tostring(err))
  end)

  it("takes its namespaces from MIRROR_SOURCE and MIRROR_TARGET", function()
    local e = t.load(MIRROR, { env = { MIRROR_SOURCE = "prod", MIRROR_TARGET = "backup" } })
    local c = e:controller()
    assert.equal("prod", c.namespace)
    assert.equal("backup", c.watches[1].namespace)
    assert.equal("mirrored-from=prod", c.watches[1].label_selector)
    e:add(configmap("prod", "app", { a = "1" }, { mirror = "true" }))
    reconcile(e, "prod/app")
    local copy = e:object("v1", "ConfigMap", "backup", "app")
    assert.equal("prod", copy.metadata.labels["mirrored-from"])
    assert.has_error(function() t.load(MIRROR, { env = { MIRROR_SOURCE = "x", MIRROR_TARGET = "x" } }) end)
  end)
end)

describe("examples/pod-census.lua", function()
  local env
  local function pod(ns, name, phase)
    return { apiVersion = "v1", kind = "Pod", metadata = { namespace = ns, name = name },
             spec = { containers = { { name = "c", image = "busybox" } } },
             status = phase and { phase = phase } or nil }
  end
  local function ns(name)
    return { apiVersion = "v1", kind = "Namespace", metadata = { name = name } }
  end
  local function census(n)
    local cm = env:object("v1", "ConfigMap", n, "pod-census")
    return cm and cm.data
  end
  local function counts(p, r, s, f, u)
    return { Pending = p, Running = r, Succeeded = s, Failed = f, Unknown = u }
  end

  before_each(function()
    env = t.load(CENSUS)
    env:add(ns("apps"), ns("other"), ns("empty"))
  end)

  it("is keyed by namespace: pods and census ConfigMaps map to their namespace", function()
    local c = env:controller()
    assert.equal("Namespace", c.kind)
    local reqs = env:enqueued(env:add(pod("apps", "p1", "Running")))
    assert.equal(1, #reqs)
    assert.equal("apps", reqs[1].key)
    local cm = env:add(configmap("apps", "pod-census", counts("0", "0", "0", "0", "0")))
    assert.equal("apps", env:enqueued(cm)[1].key)
    assert.same({}, env:enqueued(env:add(configmap("apps", "unrelated", {}))))
  end)

  it("counts the pods of the namespace per phase, all five phases present", function()
    env:add(pod("apps", "r1", "Running"), pod("apps", "r2", "Running"), pod("apps", "s1", "Succeeded"),
            pod("apps", "f1", "Failed"), pod("apps", "u1", "Unknown"), pod("apps", "p1", "Pending"))
    env:add(pod("other", "r1", "Running"))
    assert.is_nil(reconcile(env, "apps"))
    assert.same(counts("1", "2", "1", "1", "1"), census("apps"))
    local cm = env:object("v1", "ConfigMap", "apps", "pod-census")
    assert.equal("pod-census", cm.metadata.labels["app.kubernetes.io/managed-by"])
    reconcile(env, "other")
    assert.same(counts("0", "1", "0", "0", "0"), census("other"))
  end)

  it("counts a pod without a phase as Pending and an odd phase as Unknown", function()
    env:add(pod("apps", "new"), pod("apps", "odd", "Exploded"))
    reconcile(env, "apps")
    assert.same(counts("1", "0", "0", "0", "1"), census("apps"))
  end)

  it("reads pods through the namespace index, not a list of everything", function()
    local b = env.klua._backend()
    local lists, lookups = 0, {}
    local by_index, list = b.cache_by_index, b.cache_list
    b.cache_list = function(...) lists = lists + 1; return list(...) end
    b.cache_by_index = function(id, index, value)
      lookups[#lookups + 1] = index .. "=" .. value
      return by_index(id, index, value)
    end
    env:add(pod("apps", "r1", "Running"), pod("other", "r1", "Running"))
    reconcile(env, "apps")
    assert.equal(0, lists)
    assert.same({ "namespace=apps" }, lookups)
  end)

  it("updates the census when a pod changes phase and leaves it alone otherwise", function()
    env:add(pod("apps", "p", "Pending"))
    reconcile(env, "apps")
    env:sync()
    env:clear()
    reconcile(env, "apps")
    assert.same({}, env.client.calls)
    env:set(pod("apps", "p", "Running"))
    reconcile(env, "apps")
    assert.same({ "update" }, verbs(env))
    assert.same(counts("0", "1", "0", "0", "0"), census("apps"))
  end)

  it("sets back a census edited by hand (stray keys removed) and recreates a deleted one", function()
    env:add(pod("apps", "p", "Running"))
    reconcile(env, "apps")
    env:sync()
    local data = counts("9", "1", "0", "0", "0")
    env:set(configmap("apps", "pod-census", data))
    reconcile(env, "apps")
    assert.same(counts("0", "1", "0", "0", "0"), census("apps"))
    env:sync()
    data = counts("0", "1", "0", "0", "0")
    data.note = "hand made" -- counts right, but a key that does not belong
    env:set(configmap("apps", "pod-census", data))
    reconcile(env, "apps")
    assert.same(counts("0", "1", "0", "0", "0"), census("apps"))
    env:sync()
    env:remove("v1", "ConfigMap", "apps", "pod-census")
    reconcile(env, "apps")
    assert.same(counts("0", "1", "0", "0", "0"), census("apps"))
  end)

  it("deletes the census when the namespace has no pods left", function()
    env:add(pod("apps", "p", "Running"))
    reconcile(env, "apps")
    env:sync()
    env:remove("v1", "Pod", "apps", "p")
    env:clear()
    reconcile(env, "apps")
    assert.same({ "delete" }, verbs(env))
    assert.is_nil(env:object("v1", "ConfigMap", "apps", "pod-census"))
    env:sync()
    env:clear()
    reconcile(env, "empty") -- no pods, no census: nothing to do
    reconcile(env, "apps")
    assert.same({}, env.client.calls)
  end)

  it("writes nothing for a namespace that is gone or terminating", function()
    env:add(pod("gone", "p", "Running"))
    reconcile(env, "gone")
    env:set({ apiVersion = "v1", kind = "Namespace",
              metadata = { name = "apps", deletionTimestamp = "2024-01-01T00:00:00Z" } })
    env:add(pod("apps", "p", "Running"))
    reconcile(env, "apps")
    assert.same({}, env.client.calls)
  end)

  it("requeues when the census exists but is not cached yet", function()
    env:add(pod("apps", "p", "Running"))
    env:server_set(configmap("apps", "pod-census", counts("0", "0", "0", "0", "0")))
    assert.equal(env.klua.requeue, reconcile(env, "apps"))
  end)
end)

describe("examples/website-operator/operator.lua", function()
  local env
  local AV = "demo.klua.dev/v1"
  local FIN = "demo.klua.dev/cleanup"
  local function website(name, domain, replicas)
    return { apiVersion = AV, kind = "Website", metadata = { namespace = "web", name = name },
             spec = { domain = domain, replicas = replicas } }
  end
  local function get_site(name) return env:object(AV, "Website", "web", name) end
  local function ready(site)
    return env.klua.conditions.get(site, "Ready")
  end

  before_each(function()
    env = t.load(WEBSITE)
  end)

  it("watches Websites and owns labelled ConfigMaps and Deployments", function()
    local c = env:controller()
    assert.equal("Website", c.kind)
    assert.equal("demo.klua.dev/v1", c.api_version)
    assert.equal(2, #c.owns)
    assert.equal("ConfigMap", c.owns[1].kind)
    assert.equal("Deployment", c.owns[2].kind)
  end)

  it("adds its finalizer, creates the owned objects and reports Ready", function()
    env:add(website("hello", "hello.example.com", 2))
    assert.is_nil(reconcile(env, "web/hello"))
    assert.same({ "update", "apply", "apply", "update_status" }, verbs(env))

    local site = get_site("hello")
    assert.same({ FIN }, site.metadata.finalizers)
    local cm = env:object("v1", "ConfigMap", "web", "hello-site")
    assert.equal("hello.example.com", cm.data.domain)
    assert.is_true(env.klua.meta.is_controlled_by(cm, site))
    local dep = env:object("apps/v1", "Deployment", "web", "hello")
    assert.equal(2, dep.spec.replicas)
    assert.equal("hello", dep.spec.selector.matchLabels.app)
    assert.equal("hello", dep.spec.template.metadata.labels.app)
    assert.equal("nginx:1.25", dep.spec.template.spec.containers[1].image)
    local ref = env.klua.meta.get_controller_of(dep)
    assert.equal(site.metadata.uid, ref.uid)
    assert.equal("Website", ref.kind)
    assert.is_true(ref.blockOwnerDeletion)
    for _, c in ipairs(env:calls("apply")) do
      assert.equal("website-operator", c.opts.field_manager)
      assert.is_true(c.opts.force)
    end

    assert.equal(1, site.status.observedGeneration)
    local cond = ready(site)
    assert.equal("True", cond.status)
    assert.equal("ObjectsInSync", cond.reason)
    assert.equal(1, cond.observedGeneration)
    assert.is_string(cond.lastTransitionTime)
  end)

  it("defaults replicas to 1", function()
    env:add(website("one", "one.example.com", nil))
    reconcile(env, "web/one")
    assert.equal(1, env:object("apps/v1", "Deployment", "web", "one").spec.replicas)
  end)

  it("does nothing once everything is in line", function()
    env:add(website("hello", "hello.example.com", 2))
    reconcile(env, "web/hello")
    env:sync()
    env:clear()
    reconcile(env, "web/hello")
    assert.same({}, env.client.calls)
  end)

  it("follows a spec change and records the new generation", function()
    env:add(website("hello", "hello.example.com", 2))
    reconcile(env, "web/hello")
    env:sync()
    local site = get_site("hello")
    site.spec.replicas, site.spec.domain = 3, "new.example.com"
    site.metadata.generation = 2
    env:set(site)
    env:clear()
    reconcile(env, "web/hello")
    assert.same({ "apply", "apply", "update_status" }, verbs(env))
    assert.equal(3, env:object("apps/v1", "Deployment", "web", "hello").spec.replicas)
    assert.equal("new.example.com", env:object("v1", "ConfigMap", "web", "hello-site").data.domain)
    site = get_site("hello")
    assert.equal(2, site.status.observedGeneration)
    assert.equal(2, ready(site).observedGeneration)
  end)

  it("sets back owned objects edited or deleted by hand (and their changes enqueue the Website)", function()
    env:add(website("hello", "hello.example.com", 2))
    reconcile(env, "web/hello")
    env:sync()
    local dep = env:object("apps/v1", "Deployment", "web", "hello")
    dep.spec.replicas = 7
    dep.spec.template.spec.containers[1].image = "httpd"
    env:set(dep)
    local reqs = env:enqueued(env:object("apps/v1", "Deployment", "web", "hello"))
    assert.equal(1, #reqs)
    assert.equal("web/hello", reqs[1].key)
    env:remove("v1", "ConfigMap", "web", "hello-site")
    env:clear()
    reconcile(env, "web/hello")
    assert.same({ "apply", "apply" }, verbs(env)) -- status unchanged: no status write
    dep = env:object("apps/v1", "Deployment", "web", "hello")
    assert.equal(2, dep.spec.replicas)
    assert.equal("nginx:1.25", dep.spec.template.spec.containers[1].image)
    assert.equal("hello.example.com", env:object("v1", "ConfigMap", "web", "hello-site").data.domain)
  end)

  it("reports an invalid spec without creating anything", function()
    env:add(website("bad", nil, 2))
    reconcile(env, "web/bad")
    assert.same({ "update", "update_status" }, verbs(env))
    local cond = ready(get_site("bad"))
    assert.equal("False", cond.status)
    assert.equal("InvalidSpec", cond.reason)
    assert.is_nil(env:object("apps/v1", "Deployment", "web", "bad"))
    env:add(website("neg", "x.example.com", -1))
    reconcile(env, "web/neg")
    assert.equal("InvalidSpec", ready(get_site("neg")).reason)
  end)

  it("reports a failed write as Ready=False and retries", function()
    env:add(website("hello", "hello.example.com", 2))
    env:fail_next("apply", 403, { kind = "Deployment" })
    assert.equal(env.klua.requeue, reconcile(env, "web/hello"))
    local cond = ready(get_site("hello"))
    assert.equal("False", cond.status)
    assert.equal("ApplyFailed", cond.reason)
    assert.matches("Deployment web/hello", cond.message)
    env:sync()
    reconcile(env, "web/hello")
    cond = ready(get_site("hello"))
    assert.equal("True", cond.status)
  end)

  it("requeues when its status write conflicts", function()
    env:add(website("hello", "hello.example.com", 2))
    env:fail_next("update_status", "Conflict")
    assert.equal(env.klua.requeue, reconcile(env, "web/hello"))
  end)

  it("on deletion deletes the owned objects, then removes its finalizer", function()
    env:add(website("hello", "hello.example.com", 2))
    env:add(configmap("web", "other", { keep = "me" }))
    reconcile(env, "web/hello")
    env:sync()
    local site = get_site("hello")
    site.metadata.deletionTimestamp = "2024-01-01T00:00:00Z"
    env:set(site)
    env:clear()
    assert.is_nil(reconcile(env, "web/hello"))
    assert.same({ "get", "delete", "get", "delete", "update" }, verbs(env))
    assert.is_nil(env:object("v1", "ConfigMap", "web", "hello-site"))
    assert.is_nil(env:object("apps/v1", "Deployment", "web", "hello"))
    assert.is_nil(get_site("hello")) -- the last finalizer went: the server let it go
    assert.is_not_nil(env:object("v1", "ConfigMap", "web", "other"))
  end)

  it("on deletion leaves objects it does not control alone", function()
    env:add(website("hello", "hello.example.com", 2))
    reconcile(env, "web/hello")
    env:sync()
    -- someone replaced the ConfigMap with one of their own
    env:remove("v1", "ConfigMap", "web", "hello-site")
    env:add(configmap("web", "hello-site", { domain = "theirs" }))
    local site = get_site("hello")
    site.metadata.deletionTimestamp = "2024-01-01T00:00:00Z"
    env:set(site)
    reconcile(env, "web/hello")
    assert.equal("theirs", env:object("v1", "ConfigMap", "web", "hello-site").data.domain)
    assert.is_nil(env:object("apps/v1", "Deployment", "web", "hello"))
    assert.is_nil(get_site("hello"))
  end)

  it("keeps its finalizer while an owned object is still terminating", function()
    env:add(website("hello", "hello.example.com", 2))
    reconcile(env, "web/hello")
    env:sync()
    local dep = env:object("apps/v1", "Deployment", "web", "hello")
    dep.metadata.deletionTimestamp = "2024-01-01T00:00:00Z"
    dep.metadata.finalizers = { "example.com/slow" }
    env:set(dep)
    local site = get_site("hello")
    site.metadata.deletionTimestamp = "2024-01-01T00:00:00Z"
    env:set(site)
    assert.same({ requeue_after = 2 }, reconcile(env, "web/hello"))
    assert.same({ FIN }, get_site("hello").metadata.finalizers)
  end)

  it("ignores a Website that is gone", function()
    assert.is_nil(reconcile(env, "web/missing"))
    assert.same({}, env.client.calls)
  end)
end)
