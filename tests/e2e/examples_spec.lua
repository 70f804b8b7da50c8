-- End-to-end tests of the example controllers: the real klua binary runs
-- each example (`klua run SCRIPT --kubeconfig F`) against `klua serve` over
-- real HTTP; the tests change objects through the API with curl and check
-- the results through the API, polling for at most WAIT seconds.
-- Environment (set by scripts/run-tests.sh): KLUA_BIN, KLUA_ROOT.
local json = require("klua.json")
local H = dofile((os.getenv("KLUA_ROOT") or ".") .. "/tests/e2e/harness.lua")

local ROOT, KLUA = H.ROOT, H.KLUA
local WAIT = 10 -- seconds any single expectation may take
local q, read, sleep, tmpdir, spawn, alive, tail =
  H.q, H.read, H.sleep, H.tmpdir, H.spawn, H.alive, H.tail

-- SIGTERM, then SIGKILL if the process is still there after 3 s.
local function stop(pid) H.stop(pid, 3) end

---------------------------------------------------------------------------
-- One server plus one controller

local Cluster = {}
Cluster.__index = Cluster

-- start({ seed = path, before = function(c) end, script = path }): starts
-- `klua serve`, runs before(c) (e.g. to create a CRD), then `klua run`.
local function start(opts)
  local c = setmetatable({ dir = tmpdir(), n = 0 }, Cluster)
  c.kubeconfig = c.dir .. "/kubeconfig"
  c.server_log = c.dir .. "/serve.log"
  c.controller_log = c.dir .. "/controller.log"
  local args = "--kubeconfig-out " .. q(c.kubeconfig)
  if opts.seed then args = args .. " --seed " .. q(opts.seed) end
  c.server, c.url = H.serve(args, c.server_log, { kubeconfig = c.kubeconfig })
  if not c.url then
    c:stop()
    error("klua serve did not start:\n" .. tail(c.server_log, 25))
  end
  if opts.before then opts.before(c) end
  c.controller = spawn("exec " .. q(KLUA) .. " run " .. q(opts.script) .. " --kubeconfig " .. q(c.kubeconfig),
    c.controller_log)
  return c
end

-- start_dev(script, seed): `klua dev SCRIPT --seed SEED --kubeconfig-out F`,
-- the API server and the controllers in one process (what `make demo` runs).
local function start_dev(script, seed)
  local c = setmetatable({ dir = tmpdir(), n = 0 }, Cluster)
  c.kubeconfig = c.dir .. "/kubeconfig"
  c.controller_log = c.dir .. "/dev.log"
  c.controller = spawn("exec " .. q(KLUA) .. " dev " .. q(script) .. " --seed " .. q(seed) ..
    " --kubeconfig-out " .. q(c.kubeconfig), c.controller_log)
  for _ = 1, 100 do
    c.url = (read(c.kubeconfig) or ""):match("server:%s*[\"']?(http://[%d%.:]+)")
    if c.url or not alive(c.controller) then break end
    sleep(0.05)
  end
  if not c.url then
    c:stop()
    error("klua dev did not write a kubeconfig:\n" .. tail(c.controller_log, 25))
  end
  return c
end

function Cluster:stop()
  stop(self.controller)
  stop(self.server)
  H.rmdir(self.dir)
end

-- request(method, path, body, content_type) -> http code, decoded body (or
-- the raw text when it is not JSON).
function Cluster:request(method, path, body, ctype)
  return H.request(self, method, path, body, ctype)
end

function Cluster:get(path)
  local code, v = self:request("GET", path)
  if code == 200 then return v end
  if code == 404 then return nil end
  error("GET " .. path .. ": HTTP " .. tostring(code) .. " " .. tostring(json.encode(v) or v))
end

-- A write that must succeed (2xx); returns the decoded answer.
function Cluster:must(method, path, body, ctype)
  local code, v = self:request(method, path, body, ctype)
  if type(code) ~= "number" or code < 200 or code > 299 then
    error(method .. " " .. path .. ": HTTP " .. tostring(code) .. " " .. tostring(json.encode(v) or v), 2)
  end
  return v
end

function Cluster:merge(path, patch)
  return self:must("PATCH", path, patch, "application/merge-patch+json")
end

-- wait(what, fn): polls fn (every 0.1 s, up to WAIT s) until it returns a
-- truthy value, which it returns. On timeout the test fails with what the
-- last call returned and the controller's log.
function Cluster:wait(what, fn)
  local deadline = os.time() + WAIT + 1
  local last
  repeat
    local ok, v, why = pcall(fn)
    if ok and v then return v end
    last = ok and why or v
    if self.controller and not alive(self.controller) then
      error("the controller exited while waiting for " .. what .. "\n--- controller log:\n" ..
        tail(self.controller_log, 25), 2)
    end
    sleep(0.1)
  until os.time() >= deadline
  error("timed out waiting for " .. what .. (last and (" (" .. tostring(last) .. ")") or "") ..
    "\n--- controller log:\n" .. tail(self.controller_log, 25), 2)
end

local function cm_path(ns, name)
  return "/api/v1/namespaces/" .. ns .. "/configmaps" .. (name and ("/" .. name) or "")
end

local function configmap(ns, name, data, labels)
  return { apiVersion = "v1", kind = "ConfigMap",
           metadata = { namespace = ns, name = name, labels = labels }, data = data }
end

-- same string map (nil = empty)
local function same(a, b)
  for k, v in pairs(a or {}) do if (b or {})[k] ~= v then return false end end
  for k, v in pairs(b or {}) do if (a or {})[k] ~= v then return false end end
  return true
end

local function has_run()
  local p = io.popen(q(KLUA) .. " --help 2>&1")
  local s = p:read("*a")
  p:close()
  return s:match("\n%s+run%s") ~= nil
end

---------------------------------------------------------------------------

-- Without `klua run` nothing below can work: one failure says so, instead
-- of a dozen timeouts.
local RUN = has_run()
describe("examples end to end", function()
  it("klua has the run command", function()
    assert.is_true(RUN, KLUA .. " --help lists no 'run' command")
  end)
end)
if not RUN then return end

describe("configmap-mirror end to end", function()
  local c
  setup(function()
    c = start({ seed = ROOT .. "/examples/seed", script = ROOT .. "/examples/configmap-mirror.lua" })
  end)
  teardown(function() if c then c:stop() end end)

  local function copy_data(name)
    local cm = c:get(cm_path("target", name))
    if not cm then return nil, "no copy target/" .. name end
    return cm.data or {}, cm
  end

  it("mirrors the seeded labelled ConfigMap, and only that one", function()
    c:wait("target/app-settings", function()
      local data, cm = copy_data("app-settings")
      if not data then return nil, cm end
      return same(data, { greeting = "hello", color = "blue" }) and
        cm.metadata.labels["mirrored-from"] == "source", json.encode(data)
    end)
    assert.is_nil(c:get(cm_path("target", "local-only")))
  end)

  it("propagates a data change of the source", function()
    c:merge(cm_path("source", "app-settings"), { data = { color = "green", size = "L" } })
    c:wait("the change to reach the copy", function()
      local data = copy_data("app-settings")
      return data and same(data, { greeting = "hello", color = "green", size = "L" }), json.encode(data)
    end)
  end)

  it("sets back a copy edited by hand", function()
    c:merge(cm_path("target", "app-settings"), { data = { color = "hacked", greeting = json.null } })
    c:wait("the copy to be set back", function()
      local data = copy_data("app-settings")
      return data and same(data, { greeting = "hello", color = "green", size = "L" }), json.encode(data)
    end)
  end)

  it("recreates a copy deleted by hand", function()
    c:must("DELETE", cm_path("target", "app-settings"))
    c:wait("the copy to come back", function() return copy_data("app-settings") end)
  end)

  it("copies a new labelled ConfigMap and deletes the copy with its source", function()
    c:must("POST", cm_path("source"), configmap("source", "fresh", { k = "v" }, { mirror = "true" }))
    c:wait("target/fresh", function()
      local data = copy_data("fresh")
      return data and data.k == "v"
    end)
    c:must("DELETE", cm_path("source", "fresh"))
    c:wait("target/fresh to be deleted", function() return c:get(cm_path("target", "fresh")) == nil end)
    assert.is_not_nil(c:get(cm_path("target", "app-settings")))
  end)

  it("deletes the copy when the source loses its mirror=true label", function()
    c:wait("target/app-settings", function() return copy_data("app-settings") end)
    c:merge(cm_path("source", "app-settings"), { metadata = { labels = { mirror = json.null } } })
    c:wait("target/app-settings to be deleted", function()
      return c:get(cm_path("target", "app-settings")) == nil
    end)
    assert.is_not_nil(c:get(cm_path("source", "app-settings")))
  end)
end)

describe("pod-census end to end", function()
  local c
  local function pod(name)
    return { apiVersion = "v1", kind = "Pod", metadata = { name = name },
             spec = { containers = { { name = "c", image = "busybox" } } } }
  end
  local function pods(ns, name) return "/api/v1/namespaces/" .. ns .. "/pods" .. (name and ("/" .. name) or "") end
  local function counts(p, r, s, f, u)
    return { Pending = p, Running = r, Succeeded = s, Failed = f, Unknown = u }
  end
  local function census_is(ns, want)
    return function()
      local cm = c:get(cm_path(ns, "pod-census"))
      return cm and same(cm.data, want), cm and json.encode(cm.data) or "no census"
    end
  end

  setup(function()
    c = start({ script = ROOT .. "/examples/pod-census.lua", before = function(cl)
      cl:must("POST", "/api/v1/namespaces", { apiVersion = "v1", kind = "Namespace", metadata = { name = "shop" } })
      cl:must("POST", pods("shop"), pod("a"))
      cl:must("POST", pods("shop"), pod("b"))
    end })
  end)
  teardown(function() if c then c:stop() end end)

  it("counts the pods of a namespace by phase", function()
    c:wait("shop/pod-census", census_is("shop", counts("2", "0", "0", "0", "0")))
    assert.is_nil(c:get(cm_path("default", "pod-census"))) -- no pods there
  end)

  it("follows phase changes and new pods", function()
    c:merge(pods("shop", "a") .. "/status", { status = { phase = "Running" } })
    c:merge(pods("shop", "b") .. "/status", { status = { phase = "Failed" } })
    c:must("POST", pods("default"), pod("solo"))
    c:wait("the shop census to follow", census_is("shop", counts("0", "1", "0", "1", "0")))
    c:wait("a census in default", census_is("default", counts("1", "0", "0", "0", "0")))
  end)

  it("sets back a census edited by hand", function()
    c:merge(cm_path("shop", "pod-census"), { data = { Running = "99", extra = "x" } })
    c:wait("the census to be set back", census_is("shop", counts("0", "1", "0", "1", "0")))
  end)

  it("deletes the census when the last pod goes", function()
    c:must("DELETE", pods("shop", "a"))
    c:wait("one pod left", census_is("shop", counts("0", "0", "0", "1", "0")))
    c:must("DELETE", pods("shop", "b"))
    c:wait("shop/pod-census to be deleted", function() return c:get(cm_path("shop", "pod-census")) == nil end)
    assert.is_not_nil(c:get(cm_path("default", "pod-census")))
  end)
end)

describe("website-operator end to end", function()
  local c
  local DIR = ROOT .. "/examples/website-operator"
  local WS = "/apis/demo.klua.dev/v1/namespaces/default/websites"
  local DEP = "/apis/apps/v1/namespaces/default/deployments"

  setup(function()
    c = start({ script = DIR .. "/operator.lua", before = function(cl)
      cl:must("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        read(DIR .. "/crd.yaml"), "application/yaml") -- the server takes YAML bodies
      cl:wait("the Website resource to be served", function()
        return (cl:request("GET", WS)) == 200
      end)
    end })
  end)
  teardown(function() if c then c:stop() end end)

  local function ready(site)
    for _, cond in ipairs(type(site.status) == "table" and site.status.conditions or {}) do
      if cond.type == "Ready" then return cond end
    end
  end

  it("creates the owned objects, adds its finalizer and reports Ready", function()
    c:must("POST", WS, read(DIR .. "/website.yaml"), "application/yaml")
    local site = c:wait("hello to be Ready", function()
      local s = c:get(WS .. "/hello")
      local r = s and ready(s)
      return r and r.status == "True" and s.status.observedGeneration == 1 and s, json.encode(s and s.status)
    end)
    assert.same({ "demo.klua.dev/cleanup" }, site.metadata.finalizers)
    local cm = c:wait("hello-site", function() return c:get(cm_path("default", "hello-site")) end)
    assert.equal("hello.example.com", cm.data.domain)
    local dep = assert(c:get(DEP .. "/hello"))
    assert.equal(2, dep.spec.replicas)
    assert.equal("hello", dep.spec.selector.matchLabels.app)
    for _, o in ipairs({ cm, dep }) do
      local ref = o.metadata.ownerReferences[1]
      assert.equal(site.metadata.uid, ref.uid)
      assert.equal("Website", ref.kind)
      assert.is_true(ref.controller)
    end
  end)

  it("follows a spec change", function()
    c:merge(WS .. "/hello", { spec = { replicas = 3, domain = "www.example.com" } })
    c:wait("the Deployment to have 3 replicas", function()
      local d = c:get(DEP .. "/hello")
      return d and d.spec.replicas == 3
    end)
    c:wait("the domain to change", function()
      local cm = c:get(cm_path("default", "hello-site"))
      return cm and cm.data.domain == "www.example.com"
    end)
    c:wait("observedGeneration 2", function()
      local s = c:get(WS .. "/hello")
      return s.status and s.status.observedGeneration == 2 and ready(s).status == "True"
    end)
  end)

  it("sets back owned objects edited or deleted by hand", function()
    c:merge(DEP .. "/hello", { spec = { replicas = 9 } })
    c:must("DELETE", cm_path("default", "hello-site"))
    c:wait("the Deployment to be set back", function()
      local d = c:get(DEP .. "/hello")
      return d and d.spec.replicas == 3, d and d.spec.replicas
    end)
    c:wait("the ConfigMap to be recreated", function()
      local cm = c:get(cm_path("default", "hello-site"))
      return cm and cm.data.domain == "www.example.com"
    end)
  end)

  it("cleans up through its finalizer when the Website is deleted", function()
    c:must("DELETE", WS .. "/hello")
    c:wait("the Website to be gone", function() return c:get(WS .. "/hello") == nil end)
    assert.is_nil(c:get(cm_path("default", "hello-site")))
    assert.is_nil(c:get(DEP .. "/hello"))
  end)
end)

describe("make demo (klua dev with examples/seed) end to end", function()
  local c
  setup(function()
    c = start_dev(ROOT .. "/examples/configmap-mirror.lua", ROOT .. "/examples/seed")
  end)
  teardown(function() if c then c:stop() end end)

  it("mirrors the seeded ConfigMap, and a ConfigMap labelled later", function()
    c:wait("target/app-settings", function()
      local cm = c:get(cm_path("target", "app-settings"))
      return cm and cm.data.greeting == "hello"
    end)
    c:merge(cm_path("source", "local-only"), { metadata = { labels = { mirror = "true" } } })
    c:wait("target/local-only", function() return c:get(cm_path("target", "local-only")) end)
  end)
end)

describe("examples/testing/annotate.lua end to end", function()
  local c
  setup(function()
    c = start({ script = ROOT .. "/examples/testing/annotate.lua" })
  end)
  teardown(function() if c then c:stop() end end)

  it("annotates a labelled ConfigMap and keeps its owned summary", function()
    c:must("POST", cm_path("default"), configmap("default", "web", { a = "1", b = "2" }, { annotate = "true" }))
    c:wait("the key-count annotation", function()
      local cm = c:get(cm_path("default", "web"))
      local ann = cm and cm.metadata.annotations
      return ann and ann["example.com/keys"] == "2", ann and json.encode(ann)
    end)
    local summary = c:wait("default/web-summary", function()
      local s = c:get(cm_path("default", "web-summary"))
      return s and s.data.keys == "a,b" and s, s and json.encode(s.data)
    end)
    local owner = summary.metadata.ownerReferences[1]
    assert.equal("web", owner.name)
    assert.is_true(owner.controller)
    c:merge(cm_path("default", "web"), { data = { c = "3" } })
    c:wait("the summary to follow the data", function()
      local s = c:get(cm_path("default", "web-summary"))
      return s and s.data.keys == "a,b,c", s and s.data.keys
    end)
  end)

  it("leaves ConfigMaps without the label alone", function()
    c:must("POST", cm_path("default"), configmap("default", "plain", { a = "1" }))
    sleep(1)
    local cm = c:get(cm_path("default", "plain"))
    assert.is_true(cm.metadata.annotations == nil or cm.metadata.annotations["example.com/keys"] == nil)
    assert.is_nil(c:get(cm_path("default", "plain-summary")))
  end)
end)
