-- klua: the module controller scripts use (reference: docs/lua-api.md).
--
-- A script declares controllers, caches and indexes at load time; the
-- runtime then reads klua._registry, starts the informers and calls the
-- declared functions from its workers. klua never touches C directly: every
-- read, write, log line and event goes through a BACKEND table, installed
-- with klua._set_backend(b) by the C runtime (one Lua state per worker
-- thread, each with its own copy of this module) or by klua.testing (a fake,
-- in Lua). Without a backend, cache reads and writes raise.
--
-- Backend interface (all functions are plain fields, called with '.'):
--   b.cache_get(cache_id, namespace, name) -> obj | nil
--       namespace is nil for cluster-scoped objects.
--   b.cache_list(cache_id, { namespace = ns|nil, label_selector = s|nil }) -> array
--       label_selector is canonical (klua.selector.canonical) and valid.
--   b.cache_by_index(cache_id, index_name, value) -> array
--   b.cache_index_values(cache_id, index_name) -> array of strings
--   b.request(verb, api_version, kind, namespace, name, body, opts)
--       -> obj | true | nil, err
--       verb: "get" | "create" | "update" | "update_status" | "patch" |
--             "apply" | "delete". namespace nil when cluster-scoped; name nil
--       for a create with generateName. body: the object (create, update,
--       update_status, apply), the patch (a table, or a string of JSON) for
--       patch, nil otherwise. opts (always a table, fields optional):
--         patch:  { type = "merge" | "json" | "strategic", subresource = "status"|nil }
--         apply:  { field_manager = s, force = bool, subresource = "status"|nil }
--         create, update, update_status, patch: { field_manager = s|nil }
--         delete: { propagation_policy = "Foreground"|"Background"|"Orphan"|nil,
--                   grace_period_seconds = n|nil,
--                   preconditions = { uid = s|nil, resource_version = s|nil }|nil }
--       delete returns true on success. err is a string (transport failure)
--       or a table { code = http_code, reason = s, message = s, details = t };
--       klua turns it into a klua error (klua.new_error).
--   b.event(obj, type, reason, message)   type "Normal" | "Warning"
--   b.log(level, msg, fields)             level "error"|"warn"|"info"|"debug";
--                                         fields a table or nil
--   b.now() -> seconds since the epoch (a number, may have a fraction)
--   b.getenv(name) -> string | nil        optional; default os.getenv
--   b.metric(type, name, help, label_names, buckets) -> metric | nil, err
--       optional (klua.metrics): type "counter"|"gauge"|"histogram"; help a
--       string; label_names and buckets arrays or nil. Default: klua_core's
--       process-wide registry (a Lua one without the C module).
--
-- Registry (read by the runtime after the script has loaded and
-- klua._seal() returned; see docs/lua-api.md "Registry"):
--   klua._registry.controllers  array of normalised controllers
--   klua._registry.caches       array of caches { id, api_version, kind,
--                               namespace, label_selector, field_selector,
--                               indexes = { index entries } }
--   klua._registry.cache_by_id  id -> cache
--   klua._registry.indexes      array of { api_version, kind, name, type,
--                               field | label | owner | fn }
local M = {}

-- Let submodules (klua.meta, ...) require("klua") while this file loads.
package.loaded["klua"] = M

local type, pairs, ipairs, tostring, tonumber, error, select, setmetatable, getmetatable, rawget, rawset =
  type, pairs, ipairs, tostring, tonumber, error, select, setmetatable, getmetatable, rawget, rawset
local floor, huge = math.floor, math.huge
local fmt, concat, sort = string.format, table.concat, table.sort

---------------------------------------------------------------------------
-- Values shared by every copy of this module in one Lua state (klua.testing
-- loads fresh copies): the JSON null and metatables, the requeue sentinel,
-- the error metatable. They come from klua_core when it is available.

local shared = package.loaded["klua._shared"]
if not shared then
  shared = {}
  local ok, core = pcall(require, "klua_core")
  if ok and type(core) == "table" and core.null ~= nil then
    shared.null, shared.object_mt, shared.array_mt = core.null, core.object_mt, core.array_mt
    shared.have_core = true
  else
    -- No C module (e.g. busted run without building klua): a null sentinel
    -- and type-marking metatables that behave the same for Lua code.
    shared.null = setmetatable({}, { __tostring = function() return "klua.null" end,
                                     __newindex = function() error("klua.null is read-only", 2) end })
    shared.object_mt, shared.array_mt = {}, {}
    shared.have_core = false
  end
  shared.requeue = setmetatable({}, { __tostring = function() return "klua.requeue" end,
                                      __newindex = function() error("klua.requeue is read-only", 2) end })
  shared.error_mt = {}
  package.loaded["klua._shared"] = shared
end

M.null = shared.null
M.object_mt = shared.object_mt
M.array_mt = shared.array_mt
M.requeue = shared.requeue
M.have_core = shared.have_core

-- klua.json is loaded on first use: it needs the C module.
setmetatable(M, { __index = function(t, k)
  if k == "json" then
    local j = require("klua.json")
    rawset(t, "json", j)
    return j
  end
end })

local null = M.null

---------------------------------------------------------------------------
-- Argument checks (programmer mistakes raise, at the caller's level)

local function argerr(fname, msg, level)
  error("klua." .. fname .. ": " .. msg, (level or 2) + 1)
end

local function check_string(fname, what, v, level)
  if type(v) ~= "string" or v == "" then
    argerr(fname, what .. " must be a non-empty string, got " ..
      (type(v) == "string" and '""' or type(v)), (level or 2) + 1)
  end
  return v
end

local function opt_string(fname, what, v, level)
  if v == nil or v == null then return nil end
  if type(v) ~= "string" then
    argerr(fname, what .. " must be a string, got " .. type(v), (level or 2) + 1)
  end
  if v == "" then return nil end
  return v
end

local function check_table(fname, what, v, level)
  if type(v) ~= "table" then
    argerr(fname, what .. " must be a table, got " .. type(v), (level or 2) + 1)
  end
  return v
end

local function check_fields(fname, what, t, allowed, level)
  for k in pairs(t) do
    if not allowed[k] then
      local names = {}
      for a in pairs(allowed) do names[#names + 1] = a end
      sort(names)
      argerr(fname, "unknown field '" .. tostring(k) .. "' in " .. what ..
        " (known: " .. concat(names, ", ") .. ")", (level or 2) + 1)
    end
  end
end

local function set_of(...)
  local s = {}
  for i = 1, select("#", ...) do s[select(i, ...)] = true end
  return s
end

---------------------------------------------------------------------------
-- Backend

local function no_backend(name)
  return function()
    error("klua: no backend installed, " .. name .. " is not available " ..
      "(run the script with the klua program, or load it with klua.testing)", 3)
  end
end

local default_backend = {
  cache_get = no_backend("cache reads"),
  cache_list = no_backend("cache reads"),
  cache_by_index = no_backend("cache reads"),
  cache_index_values = no_backend("cache reads"),
  request = no_backend("API requests"),
  event = function() end,
  log = function(level, msg, fields)
    local parts = {}
    if type(fields) == "table" then
      for k, v in pairs(fields) do parts[#parts + 1] = tostring(k) .. "=" .. tostring(v) end
      sort(parts)
    end
    io.stderr:write(level, " ", tostring(msg), #parts > 0 and (" " .. concat(parts, " ")) or "", "\n")
  end,
  now = function() return os.time() end,
  getenv = function(name) return os.getenv(name) end,
}

local BACKEND_FUNCS = { "cache_get", "cache_list", "cache_by_index", "cache_index_values",
                        "request", "event", "log", "now" }

local backend = default_backend

-- _set_backend(b): installs b (see the interface above). Missing optional
-- functions (getenv) fall back to the defaults. Returns the previous one.
function M._set_backend(b)
  check_table("_set_backend", "backend", b)
  for _, f in ipairs(BACKEND_FUNCS) do
    if type(b[f]) ~= "function" then
      argerr("_set_backend", "backend." .. f .. " must be a function")
    end
  end
  local prev = backend
  backend = b
  return prev
end

function M._backend()
  return backend
end

---------------------------------------------------------------------------
-- Small helpers

M.deepcopy = require("klua.deepcopy")

-- getenv(name, default): the environment variable, or default when unset.
-- Use it instead of os.getenv so that klua.testing can set values per test.
function M.getenv(name, default)
  check_string("getenv", "name", name)
  local f = backend.getenv or default_backend.getenv
  local v = f(name)
  if v == nil then return default end
  return v
end

function M.now()
  return backend.now()
end

-- format_time(t) -> RFC 3339 UTC text with second precision, as Kubernetes
-- writes metav1.Time ("2024-01-02T03:04:05Z"). t defaults to klua.now().
function M.format_time(t)
  if t == nil then t = backend.now() end
  if type(t) ~= "number" or t ~= t then argerr("format_time", "time must be a number") end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", floor(t))
end

local function days_from_civil(y, m, d)
  y = (m <= 2) and (y - 1) or y
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- parse_time(s) -> seconds since the epoch for RFC 3339 text (fractions and
-- offsets accepted), or nil, err.
function M.parse_time(s)
  if type(s) ~= "string" then return nil, "time must be a string, got " .. type(s) end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil, "not an RFC 3339 time: " .. fmt("%q", s) end
  local frac = 0
  local f, tz = rest:match("^(%.%d+)(.*)$")
  if f then frac = tonumber("0" .. f); rest = tz end
  local off = 0
  if rest == "Z" or rest == "z" then
    off = 0
  else
    local sign, oh, om = rest:match("^([%+%-])(%d%d):(%d%d)$")
    if not sign then return nil, "not an RFC 3339 time: " .. fmt("%q", s) end
    off = (tonumber(oh) * 60 + tonumber(om)) * 60
    if sign == "-" then off = -off end
  end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 60 then
    return nil, "not an RFC 3339 time: " .. fmt("%q", s)
  end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec + frac - off
end

---------------------------------------------------------------------------
-- Errors

local error_mt = shared.error_mt
error_mt.__index = error_mt
error_mt.__tostring = function(e)
  local head
  if e.code and e.code ~= 0 then
    head = tostring(e.code) .. (e.reason and e.reason ~= "" and (" " .. e.reason) or "")
  else
    head = (e.reason and e.reason ~= "") and e.reason or "error"
  end
  if e.message and e.message ~= "" then return head .. ": " .. e.message end
  return head
end

-- new_error(code, reason, message, details) -> a klua error: a table with
-- those fields and a __tostring ("409 Conflict: <message>").
function M.new_error(code, reason, message, details)
  return setmetatable({ code = tonumber(code) or 0, reason = reason or "",
                        message = message or "", details = details }, error_mt)
end

function M.is_error(v)
  return type(v) == "table" and getmetatable(v) == error_mt
end

local function wrap_error(err)
  if M.is_error(err) then return err end
  if type(err) == "table" then
    return M.new_error(err.code, err.reason, err.message, err.details)
  end
  return M.new_error(0, "", tostring(err == nil and "unknown error" or err))
end
M._wrap_error = wrap_error

-- Classification after k8s.io/apimachinery/pkg/api/errors: the reason
-- decides; a missing or "Unknown" reason falls back to the HTTP code.
local function classifier(reason, code)
  return function(err)
    if type(err) ~= "table" then return false end
    local r = err.reason
    if r ~= nil and r ~= "" and r ~= "Unknown" then return r == reason end
    return code ~= nil and err.code == code
  end
end

M.is_conflict = classifier("Conflict", 409)
M.is_not_found = classifier("NotFound", 404)
M.is_already_exists = classifier("AlreadyExists", nil)
M.is_invalid = classifier("Invalid", 422)
M.is_forbidden = classifier("Forbidden", 403)
M.is_unauthorized = classifier("Unauthorized", 401)
M.is_too_many_requests = classifier("TooManyRequests", 429)
function M.is_gone(err)
  if type(err) ~= "table" then return false end
  return err.reason == "Gone" or err.reason == "Expired" or err.code == 410
end

---------------------------------------------------------------------------
-- Reconcile results

function M.requeue_after(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 or seconds == huge then
    argerr("requeue_after", "seconds must be a finite number >= 0, got " ..
      (type(seconds) == "number" and tostring(seconds) or type(seconds)))
  end
  return { requeue_after = seconds }
end

-- _interpret_result(v) -> "done" | "requeue" | "after", seconds; or nil, err
-- for a value a reconcile function must not return. Used by the runtime.
function M._interpret_result(v)
  if v == nil then return "done" end
  if v == M.requeue then return "requeue" end
  if type(v) == "table" and getmetatable(v) == nil then
    local s = v.requeue_after
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    if n == 1 and type(s) == "number" and s == s and s >= 0 and s < huge then
      return "after", s
    end
  end
  return nil, "reconcile returned " .. (type(v) == "table" and "a table" or tostring(v)) ..
    ": expected nothing, klua.requeue or klua.requeue_after(seconds)"
end

---------------------------------------------------------------------------
-- Registry

local registry = { controllers = {}, caches = {}, cache_by_id = {}, indexes = {} }
M._registry = registry
local sealed = false
local controller_by_name = {}

local function resource_of(api_version, kind)
  return api_version .. "/" .. kind
end

local function canonical_label_selector(fname, v, level)
  if v == nil or v == null or v == "" then return nil end
  local selector = require("klua.selector")
  local sel, err
  if type(v) == "table" then
    sel, err = selector.to_selector(v)
  elseif type(v) == "string" then
    sel, err = selector.parse(v)
  else
    argerr(fname, "label_selector must be a string or a table of labels, got " .. type(v), (level or 2) + 1)
  end
  if not sel then argerr(fname, err, (level or 2) + 1) end
  if sel.text == "" then return nil end
  return sel.text
end

-- Field selectors: "a=b,c!=d" terms, trimmed and sorted.
local function canonical_field_selector(fname, v, level)
  if v == nil or v == null or v == "" then return nil end
  if type(v) ~= "string" then
    argerr(fname, "field_selector must be a string, got " .. type(v), (level or 2) + 1)
  end
  local terms = {}
  for term in (v .. ","):gmatch("([^,]*),") do
    term = term:gsub("^%s+", ""):gsub("%s+$", "")
    local k, op, val = term:match("^([^=!%s]+)%s*([=!]=?)%s*(.-)$")
    if not k or op == "!" then
      argerr(fname, "invalid field selector term " .. fmt("%q", term) .. " in " .. fmt("%q", v), (level or 2) + 1)
    end
    if op == "==" then op = "=" end
    terms[#terms + 1] = k .. op .. val
  end
  sort(terms)
  return concat(terms, ",")
end

-- The cache id: one informer per distinct (resource, namespace, label
-- selector, field selector), e.g. "v1/ConfigMap|ns=source|l=mirror=true|f=".
function M._cache_id(api_version, kind, namespace, label_selector, field_selector)
  return resource_of(api_version, kind) .. "|ns=" .. (namespace or "") ..
    "|l=" .. (label_selector or "") .. "|f=" .. (field_selector or "")
end

local function declare_cache(api_version, kind, namespace, ls, fs)
  local id = M._cache_id(api_version, kind, namespace, ls, fs)
  local c = registry.cache_by_id[id]
  if not c then
    c = { id = id, api_version = api_version, kind = kind, resource = resource_of(api_version, kind),
          namespace = namespace, label_selector = ls, field_selector = fs, indexes = {} }
    registry.caches[#registry.caches + 1] = c
    registry.cache_by_id[id] = c
  end
  return c
end

-- Parses { api_version, kind, namespace, label_selector, field_selector }
-- (plus extra allowed fields) into a normalised table with a cache id.
local function resource_spec(fname, what, t, extra, level)
  level = (level or 2) + 1
  check_table(fname, what, t, level)
  local allowed = set_of("api_version", "kind", "namespace", "label_selector", "field_selector")
  for k in pairs(extra or {}) do allowed[k] = true end
  check_fields(fname, what, t, allowed, level)
  local r = {
    api_version = check_string(fname, what .. ".api_version", t.api_version, level),
    kind = check_string(fname, what .. ".kind", t.kind, level),
    namespace = opt_string(fname, what .. ".namespace", t.namespace, level),
    label_selector = canonical_label_selector(fname, t.label_selector, level),
    field_selector = canonical_field_selector(fname, t.field_selector, level),
  }
  r.resource = resource_of(r.api_version, r.kind)
  r.cache_id = declare_cache(r.api_version, r.kind, r.namespace, r.label_selector, r.field_selector).id
  return r
end

local function check_loading(fname, level)
  if sealed then
    argerr(fname, "declarations are only allowed while the script loads", (level or 2) + 1)
  end
end

local CONTROLLER_FIELDS = set_of("name", "watch", "owns", "watches", "workers", "reconcile",
  "reconcile_timeout", "on_add", "on_update", "on_delete", "on_state")
local HOOKS = { "on_add", "on_update", "on_delete", "on_state" }

-- controller(spec) declares a controller (load time only); returns its
-- normalised entry in klua._registry.controllers.
function M.controller(spec)
  check_loading("controller")
  check_table("controller", "spec", spec)
  check_fields("controller", "the controller spec", spec, CONTROLLER_FIELDS)
  local c = {}
  local w = resource_spec("controller", "watch", spec.watch, nil, 2)
  c.api_version, c.kind, c.namespace = w.api_version, w.kind, w.namespace
  c.label_selector, c.field_selector, c.cache_id, c.resource = w.label_selector, w.field_selector, w.cache_id, w.resource
  c.name = opt_string("controller", "name", spec.name) or (w.kind:lower() .. "-controller")
  if controller_by_name[c.name] then
    argerr("controller", "a controller named '" .. c.name .. "' is already declared")
  end
  c.owns = {}
  if spec.owns ~= nil then
    check_table("controller", "owns", spec.owns)
    for i, o in ipairs(spec.owns) do
      c.owns[i] = resource_spec("controller", "owns[" .. i .. "]", o, nil, 2)
    end
  end
  c.watches = {}
  if spec.watches ~= nil then
    check_table("controller", "watches", spec.watches)
    for i, o in ipairs(spec.watches) do
      local r = resource_spec("controller", "watches[" .. i .. "]", o, set_of("map"), 2)
      if type(o.map) ~= "function" then
        argerr("controller", "watches[" .. i .. "].map must be a function(obj) returning requests")
      end
      r.map = o.map
      c.watches[i] = r
    end
  end
  local workers = spec.workers
  if workers == nil then workers = 1 end
  if type(workers) ~= "number" or workers < 1 or workers ~= floor(workers) then
    argerr("controller", "workers must be a positive integer, got " .. tostring(workers))
  end
  c.workers = workers
  local timeout = spec.reconcile_timeout
  if timeout == nil then timeout = 30 end
  if type(timeout) ~= "number" or not (timeout > 0) or timeout == huge then
    argerr("controller", "reconcile_timeout must be a positive number of seconds, got " .. tostring(timeout))
  end
  c.reconcile_timeout = timeout
  if spec.reconcile ~= nil and type(spec.reconcile) ~= "function" then
    argerr("controller", "reconcile must be a function(req), got " .. type(spec.reconcile))
  end
  c.reconcile = spec.reconcile
  c.hooks = {}
  local any_hook = false
  for _, h in ipairs(HOOKS) do
    local f = spec[h]
    if f ~= nil then
      if type(f) ~= "function" then argerr("controller", h .. " must be a function, got " .. type(f)) end
      c.hooks[h] = f
      any_hook = true
    end
  end
  if not c.reconcile and not any_hook then
    argerr("controller", "controller '" .. c.name .. "' needs a reconcile function or at least one hook")
  end
  registry.controllers[#registry.controllers + 1] = c
  controller_by_name[c.name] = c
  return c
end

local INDEX_OWNER = set_of("uid", "kindname")

-- index(api_version, kind, name, spec) declares a named index on every cache
-- of the resource (load time only).
function M.index(api_version, kind, name, spec)
  check_loading("index")
  check_string("index", "api_version", api_version)
  check_string("index", "kind", kind)
  check_string("index", "name", name)
  local e = { api_version = api_version, kind = kind, resource = resource_of(api_version, kind), name = name }
  if type(spec) == "function" then
    e.type, e.fn = "func", spec
  elseif type(spec) == "table" then
    check_fields("index", "the index spec", spec, set_of("field", "label", "namespace", "owner"))
    local n = 0
    for _ in pairs(spec) do n = n + 1 end
    if n ~= 1 then argerr("index", "the spec of index '" .. name .. "' needs exactly one of field, label, namespace, owner") end
    if spec.field ~= nil then
      e.type, e.field = "field", check_string("index", "field", spec.field)
      if not spec.field:match("^[%w_%-]+[%w_%.%-]*$") or spec.field:find("%.%.") or spec.field:find("%.$") then
        argerr("index", "field must be a dotted path like 'spec.nodeName', got " .. fmt("%q", spec.field))
      end
    elseif spec.label ~= nil then
      e.type, e.label = "label", check_string("index", "label", spec.label)
      if not require("klua.selector").valid_key(spec.label) then
        argerr("index", "invalid label key " .. fmt("%q", spec.label))
      end
    elseif spec.namespace ~= nil then
      if spec.namespace ~= true then argerr("index", "namespace must be true") end
      e.type = "namespace"
    else
      if not INDEX_OWNER[spec.owner] then
        argerr("index", "owner must be \"uid\" or \"kindname\", got " .. tostring(spec.owner))
      end
      e.type, e.owner = "owner", spec.owner
    end
  else
    argerr("index", "spec must be a table or a function(obj), got " .. type(spec))
  end
  for _, o in ipairs(registry.indexes) do
    if o.resource == e.resource and o.name == name then
      argerr("index", "index '" .. name .. "' is already declared on " .. e.resource)
    end
  end
  registry.indexes[#registry.indexes + 1] = e
  return e
end

-- _seal(): ends the load phase (the runtime calls it after running the
-- script). Attaches indexes to the caches of their resource; raises when an
-- index has no cache to live in. Returns the registry. Idempotent.
function M._seal()
  if sealed then return registry end
  for _, e in ipairs(registry.indexes) do
    local found = false
    for _, c in ipairs(registry.caches) do
      if c.resource == e.resource then
        c.indexes[#c.indexes + 1] = e
        found = true
      end
    end
    if not found then
      error("klua: index '" .. e.name .. "' is declared on " .. e.resource ..
        " but no cache of " .. e.resource .. " is (watch it, or declare one with klua.cache('" ..
        e.api_version .. "', '" .. e.kind .. "', {}))", 2)
    end
  end
  sealed = true
  return registry
end

function M._sealed()
  return sealed
end

-- _normalize_request(r) -> { namespace =, name =, key = } from a request
-- table or a "ns/name" / "name" key; or nil, err. Used for map results.
function M._normalize_request(r)
  local ns, name
  if type(r) == "string" then
    local a, b = r:match("^([^/]*)/(.+)$")
    if a then ns, name = a, b else name = r end
  elseif type(r) == "table" then
    ns, name = r.namespace, r.name
  else
    return nil, "a request must be a table { namespace =, name = } or a key, got " .. type(r)
  end
  if ns == "" or ns == null then ns = nil end
  if type(name) ~= "string" or name == "" then return nil, "a request needs a name" end
  if ns ~= nil and type(ns) ~= "string" then return nil, "request namespace must be a string" end
  return { namespace = ns, name = name, key = ns and (ns .. "/" .. name) or name }
end

---------------------------------------------------------------------------
-- Caches

local cache_mt = {}
cache_mt.__index = cache_mt
local handles = {} -- cache id -> handle

local function handle_for(id)
  local h = handles[id]
  if not h then
    local c = registry.cache_by_id[id]
    h = setmetatable({ id = id, api_version = c.api_version, kind = c.kind }, cache_mt)
    handles[id] = h
  end
  return h
end

local function resolve(api_version, kind, level)
  local res = resource_of(api_version, kind)
  local all, unfiltered = {}, nil
  for _, c in ipairs(registry.caches) do
    if c.resource == res then
      all[#all + 1] = c
      if not c.namespace and not c.label_selector and not c.field_selector then unfiltered = c end
    end
  end
  if unfiltered then return unfiltered.id end
  if #all == 1 then return all[1].id end
  if #all == 0 then
    argerr("cache", "no cache of " .. res .. " is declared (watch or own it in a controller, " ..
      "or declare one at load time: klua.cache('" .. api_version .. "', '" .. kind .. "', {}))", level + 1)
  end
  local ids = {}
  for i, c in ipairs(all) do ids[i] = c.id end
  argerr("cache", res .. " has " .. #all .. " caches with different selectors (" .. concat(ids, "; ") ..
    "): pick one with klua.cache('" .. api_version .. "', '" .. kind ..
    "', { namespace =, label_selector =, field_selector = }) as declared", level + 1)
end

local function lazy_id(h, level)
  local id = rawget(h, "id")
  if id then return id end
  if not sealed then
    error("klua: cache reads are not available while the script loads (" .. h.api_version .. "/" .. h.kind .. ")", level + 1)
  end
  id = resolve(h.api_version, h.kind, level + 1)
  rawset(h, "id", id)
  return id
end

-- cache(api_version, kind [, opts]) -> a cache handle.
-- With opts ({ namespace, label_selector, field_selector }, {} for all
-- objects) at load time: declares that cache. With opts after load: the
-- handle of the cache declared with exactly those options. Without opts:
-- the unfiltered cache of the resource if declared, else its only cache;
-- at load time the handle is resolved on first use.
function M.cache(api_version, kind, opts)
  check_string("cache", "api_version", api_version)
  check_string("cache", "kind", kind)
  if opts ~= nil then
    check_table("cache", "opts", opts)
    local t = { api_version = api_version, kind = kind, namespace = opts.namespace,
                label_selector = opts.label_selector, field_selector = opts.field_selector }
    check_fields("cache", "opts", opts, set_of("namespace", "label_selector", "field_selector"))
    if not sealed then
      return handle_for(resource_spec("cache", "opts", t).cache_id)
    end
    local id = M._cache_id(api_version, kind, opt_string("cache", "namespace", opts.namespace),
      canonical_label_selector("cache", opts.label_selector), canonical_field_selector("cache", opts.field_selector))
    if not registry.cache_by_id[id] then
      argerr("cache", "no cache " .. id .. " was declared at load time")
    end
    return handle_for(id)
  end
  if sealed then return handle_for(resolve(api_version, kind, 2)) end
  return setmetatable({ api_version = api_version, kind = kind }, cache_mt)
end

-- get(namespace, name), or get(name) for cluster-scoped objects.
function cache_mt:get(namespace, name)
  local id = lazy_id(self, 2)
  if name == nil then namespace, name = nil, namespace end
  check_string("cache:get", "name", name)
  namespace = opt_string("cache:get", "namespace", namespace)
  return backend.cache_get(id, namespace, name)
end

function cache_mt:list(opts)
  local id = lazy_id(self, 2)
  local q = {}
  if opts ~= nil then
    check_table("cache:list", "opts", opts)
    check_fields("cache:list", "opts", opts, set_of("namespace", "label_selector"))
    q.namespace = opt_string("cache:list", "namespace", opts.namespace)
    q.label_selector = canonical_label_selector("cache:list", opts.label_selector)
  end
  return backend.cache_list(id, q)
end

local function check_index(h, fname, index, level)
  check_string(fname, "index name", index, level + 1)
  local c = registry.cache_by_id[h.id]
  for _, e in ipairs(c.indexes) do
    if e.name == index then return end
  end
  argerr(fname, "no index '" .. index .. "' is declared on " .. c.resource ..
    " (klua.index at load time)", level + 1)
end

function cache_mt:by_index(index, value)
  lazy_id(self, 2)
  check_index(self, "cache:by_index", index, 2)
  if type(value) == "number" or type(value) == "boolean" then value = tostring(value) end
  if type(value) ~= "string" then argerr("cache:by_index", "value must be a string, got " .. type(value)) end
  return backend.cache_by_index(self.id, index, value)
end

function cache_mt:index_values(index)
  lazy_id(self, 2)
  check_index(self, "cache:index_values", index, 2)
  return backend.cache_index_values(self.id, index)
end

---------------------------------------------------------------------------
-- Writes and live reads

local function obj_parts(fname, obj, need_name)
  check_table(fname, "object", obj, 3)
  check_string(fname, "object.apiVersion", obj.apiVersion, 3)
  check_string(fname, "object.kind", obj.kind, 3)
  local md = obj.metadata
  if type(md) ~= "table" then argerr(fname, "object.metadata must be a table", 3) end
  local name = opt_string(fname, "metadata.name", md.name, 3)
  if need_name and not name then argerr(fname, "object.metadata.name is required", 3) end
  if not name and not opt_string(fname, "metadata.generateName", md.generateName, 3) then
    argerr(fname, "object.metadata.name (or generateName) is required", 3)
  end
  return obj.apiVersion, obj.kind, opt_string(fname, "metadata.namespace", md.namespace, 3), name
end

local function request(verb, av, kind, ns, name, body, opts)
  local r, err = backend.request(verb, av, kind, ns, name, body, opts)
  if r == nil or r == false then return nil, wrap_error(err) end
  return r
end

local function write_opts(fname, opts, allowed)
  if opts == nil then return {} end
  check_table(fname, "opts", opts, 3)
  check_fields(fname, "opts", opts, allowed, 3)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.field_manager ~= nil then check_string(fname, "opts.field_manager", o.field_manager, 3) end
  return o
end

local FM = set_of("field_manager")

local function check_subresource(fname, o)
  if o.subresource ~= nil and o.subresource ~= "status" then
    argerr(fname, "opts.subresource must be \"status\" (or absent), got " .. tostring(o.subresource), 3)
  end
end

function M.get(api_version, kind, namespace, name)
  check_string("get", "api_version", api_version)
  check_string("get", "kind", kind)
  if name == nil then namespace, name = nil, namespace end
  check_string("get", "name", name)
  return request("get", api_version, kind, opt_string("get", "namespace", namespace), name, nil, {})
end

function M.create(obj, opts)
  local av, kind, ns, name = obj_parts("create", obj, false)
  return request("create", av, kind, ns, name, obj, write_opts("create", opts, FM))
end

function M.update(obj, opts)
  local av, kind, ns, name = obj_parts("update", obj, true)
  return request("update", av, kind, ns, name, obj, write_opts("update", opts, FM))
end

function M.update_status(obj, opts)
  local av, kind, ns, name = obj_parts("update_status", obj, true)
  return request("update_status", av, kind, ns, name, obj, write_opts("update_status", opts, FM))
end

local PATCH_TYPES = set_of("merge", "json", "strategic")

function M.patch(api_version, kind, namespace, name, patch, opts)
  check_string("patch", "api_version", api_version)
  check_string("patch", "kind", kind)
  check_string("patch", "name", name)
  local o = write_opts("patch", opts, set_of("type", "field_manager", "subresource"))
  check_subresource("patch", o)
  o.type = o.type or "merge"
  if not PATCH_TYPES[o.type] then
    argerr("patch", "opts.type must be \"merge\", \"json\" or \"strategic\", got " .. tostring(o.type))
  end
  if type(patch) ~= "table" and type(patch) ~= "string" then
    argerr("patch", "patch must be a table or a JSON string, got " .. type(patch))
  end
  if o.type == "json" and type(patch) == "table" and getmetatable(patch) == M.object_mt then
    argerr("patch", "a JSON patch is an array of operations")
  end
  return request("patch", api_version, kind, opt_string("patch", "namespace", namespace), name, patch, o)
end

-- apply(obj, { field_manager = s, force = bool }): server-side apply. The
-- field manager defaults to "klua".
function M.apply(obj, opts)
  local av, kind, ns, name = obj_parts("apply", obj, true)
  local o = write_opts("apply", opts, set_of("field_manager", "force", "subresource"))
  check_subresource("apply", o)
  o.field_manager = o.field_manager or "klua"
  if o.force ~= nil and type(o.force) ~= "boolean" then argerr("apply", "opts.force must be a boolean") end
  o.force = o.force or false
  return request("apply", av, kind, ns, name, obj, o)
end

local PROPAGATION = set_of("Foreground", "Background", "Orphan")

function M.delete(api_version, kind, namespace, name, opts)
  check_string("delete", "api_version", api_version)
  check_string("delete", "kind", kind)
  if name == nil or type(name) == "table" then namespace, name, opts = nil, namespace, name end
  check_string("delete", "name", name)
  local o = write_opts("delete", opts, set_of("propagation_policy", "grace_period_seconds", "preconditions"))
  if o.propagation_policy ~= nil and not PROPAGATION[o.propagation_policy] then
    argerr("delete", "opts.propagation_policy must be Foreground, Background or Orphan, got " .. tostring(o.propagation_policy))
  end
  if o.grace_period_seconds ~= nil and (type(o.grace_period_seconds) ~= "number" or o.grace_period_seconds < 0) then
    argerr("delete", "opts.grace_period_seconds must be a number >= 0")
  end
  if o.preconditions ~= nil then
    check_table("delete", "opts.preconditions", o.preconditions)
    check_fields("delete", "opts.preconditions", o.preconditions, set_of("uid", "resource_version"))
  end
  return request("delete", api_version, kind, opt_string("delete", "namespace", namespace), name, nil, o)
end

---------------------------------------------------------------------------
-- Events and logs

local EVENT_TYPES = set_of("Normal", "Warning")

function M.event(obj, etype, reason, message)
  check_table("event", "object", obj)
  if not EVENT_TYPES[etype] then
    argerr("event", "type must be \"Normal\" or \"Warning\", got " .. tostring(etype))
  end
  check_string("event", "reason", reason)
  if message ~= nil and type(message) ~= "string" then
    argerr("event", "message must be a string, got " .. type(message))
  end
  backend.event(obj, etype, reason, message or "")
end

M.log = require("klua.log")
M.selector = require("klua.selector")
M.meta = require("klua.meta")
M.conditions = require("klua.conditions")
M.finalizers = require("klua.finalizers")
M.metrics = require("klua.metrics")

return M
