-- klua.testing: unit-test controller scripts with busted, no server needed.
--
--   local t = require("klua.testing")
--   local env = t.load("examples/testing/annotate.lua", { env = { ANNOTATION = "x" } })
--   env:add({ apiVersion = "v1", kind = "ConfigMap",
--             metadata = { namespace = "a", name = "cm" } })
--   local ok, res = env:reconcile(nil, { namespace = "a", name = "cm" })
--   assert.is_true(ok)
--   assert.equal("update", env.client.calls[1].verb)
--   assert.equal("x", env:object("v1", "ConfigMap", "a", "cm").metadata.annotations.x)
--
-- t.load runs the script with a fresh copy of the klua module (its own
-- registry) wired to a fake backend: an in-memory API server (env:objects,
-- env:object), caches filled from it (env:add/set/remove change both; writes
-- made by the script reach the caches only on env:sync(), as an informer
-- would deliver them later), a recording client (env.client.calls), events
-- (env.events), logs (env.logs), the script's klua.metrics (env.metrics, a
-- registry per environment: env.metrics:value(name, labels)), a settable
-- clock (env:advance) and environment variables for klua.getenv (opts.env).
-- Reference: docs/lua-api.md, "Testing your controller".
local T = {}

local type, pairs, ipairs, tostring, next, setmetatable, getmetatable, error, select =
  type, pairs, ipairs, tostring, next, setmetatable, getmetatable, error, select
local fmt, concat, sort = string.format, table.concat, table.sort

-- Modules loaded afresh for each environment (the rest are stateless).
local MODULES = { "klua", "klua.selector", "klua.deepcopy", "klua.log", "klua.meta",
                  "klua.conditions", "klua.finalizers", "klua.metrics" }

local function fresh_klua()
  local saved = {}
  for _, m in ipairs(MODULES) do
    saved[m] = package.loaded[m]
    package.loaded[m] = nil
  end
  local ok, k = pcall(require, "klua")
  local mods = {}
  for _, m in ipairs(MODULES) do
    mods[m] = package.loaded[m]
    package.loaded[m] = saved[m]
  end
  if not ok then error(k, 0) end
  return k, mods
end

---------------------------------------------------------------------------
-- Value helpers

local K0 = require("klua") -- for the shared values only (null, metatables)
local null, object_mt, array_mt = K0.null, K0.object_mt, K0.array_mt
local copy = require("klua.deepcopy")

local function is_array(v)
  if type(v) ~= "table" or v == null then return false end
  local mt = getmetatable(v)
  if mt == array_mt then return true end
  if mt == object_mt then return false end
  local n = #v
  if n == 0 then return false end
  local count = 0
  for _ in pairs(v) do count = count + 1 end
  return count == n
end

local function is_object(v)
  return type(v) == "table" and v ~= null and not is_array(v)
end

local function deep_equal(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  if a == null or b == null then return false end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end
T.deep_equal = deep_equal

local function obj_table()
  return setmetatable({}, object_mt)
end

local function str(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

local function key_of(ns, name)
  return ns and (ns .. "/" .. name) or name
end

local function describe(kind, ns, name)
  return kind .. " " .. key_of(ns, name)
end

local function plural(kind)
  local l = kind:lower()
  if l:match("[^aeiou]y$") then return l:sub(1, -2) .. "ies" end
  if l:match("s$") or l:match("x$") or l:match("ch$") or l:match("sh$") then return l .. "es" end
  return l .. "s"
end

-- A value at a dotted path, e.g. "spec.nodeName" / "metadata.name".
local function path_get(obj, path)
  local v = obj
  for part in path:gmatch("[^%.]+") do
    if type(v) ~= "table" or v == null then return nil end
    v = v[part]
  end
  return v
end

-- The JSON text of a scalar, as the C index functions give it.
local function scalar_text(v)
  if type(v) == "string" then return v end
  if type(v) == "boolean" then return tostring(v) end
  if type(v) == "number" then
    if v == math.floor(v) and v > -2^53 and v < 2^53 then return fmt("%d", v) end
    return fmt("%.17g", v)
  end
  return nil
end

---------------------------------------------------------------------------
-- Errors

local REASON_CODES = {
  BadRequest = 400, Unauthorized = 401, Forbidden = 403, NotFound = 404,
  MethodNotAllowed = 405, Conflict = 409, AlreadyExists = 409, Gone = 410,
  Expired = 410, Invalid = 422, TooManyRequests = 429, InternalError = 500,
  ServerTimeout = 500, ServiceUnavailable = 503, Timeout = 504,
}
local CODE_REASONS = {
  [400] = "BadRequest", [401] = "Unauthorized", [403] = "Forbidden", [404] = "NotFound",
  [405] = "MethodNotAllowed", [409] = "Conflict", [410] = "Gone", [422] = "Invalid",
  [429] = "TooManyRequests", [500] = "InternalError", [503] = "ServiceUnavailable",
  [504] = "Timeout",
}

local function api_error(k, code, reason, message, kind, name)
  return k.new_error(code, reason, message, { kind = kind and plural(kind), name = name })
end

local function not_found(k, kind, name)
  return api_error(k, 404, "NotFound", fmt('%s "%s" not found', plural(kind), name), kind, name)
end

local function conflict(k, kind, name)
  return api_error(k, 409, "Conflict", fmt('Operation cannot be fulfilled on %s "%s": the object ' ..
    "has been modified; please apply your changes to the latest version and try again",
    plural(kind), name), kind, name)
end

-- An injected error: a klua error, a table of fields, an HTTP code or a
-- reason ("Conflict").
local function make_error(k, e)
  if type(e) == "number" then
    return k.new_error(e, CODE_REASONS[e] or "", "injected error " .. e)
  elseif type(e) == "string" then
    return k.new_error(REASON_CODES[e] or 500, e, "injected " .. e)
  elseif type(e) == "table" then
    local code = e.code or REASON_CODES[e.reason] or 500
    return k.new_error(code, e.reason or CODE_REASONS[code] or "", e.message or "injected error", e.details)
  end
  error("klua.testing: fail_next: the error must be a code, a reason or a table", 3)
end

---------------------------------------------------------------------------
-- Patches

local function merge_patch(target, patch)
  if not is_object(patch) then return copy(patch) end
  if not is_object(target) then target = obj_table() end
  for k, v in pairs(patch) do
    if v == null then
      target[k] = nil
    else
      target[k] = merge_patch(target[k], v)
    end
  end
  return target
end

-- Strategic merge, approximated: a merge patch in which lists of objects
-- that all carry a "name" are merged element by element by name.
local function strategic_patch(target, patch)
  if is_array(patch) and is_array(target) then
    local named = true
    for _, e in ipairs(patch) do if not (is_object(e) and type(e.name) == "string") then named = false end end
    for _, e in ipairs(target) do if not (is_object(e) and type(e.name) == "string") then named = false end end
    if not named then return copy(patch) end
    local out = copy(target)
    for _, e in ipairs(patch) do
      local found
      for i, x in ipairs(out) do if x.name == e.name then found = i end end
      if found then out[found] = strategic_patch(out[found], e)
      else out[#out + 1] = copy(e) end
    end
    return out
  end
  if not is_object(patch) then return copy(patch) end
  if not is_object(target) then target = obj_table() end
  for k, v in pairs(patch) do
    if v == null then target[k] = nil
    else target[k] = strategic_patch(target[k], v) end
  end
  return target
end

local function pointer(path)
  if type(path) ~= "string" or (path ~= "" and path:sub(1, 1) ~= "/") then return nil end
  local parts = {}
  for p in path:sub(2):gmatch("([^/]*)/?") do
    parts[#parts + 1] = (p:gsub("~1", "/"):gsub("~0", "~"))
  end
  if path == "" then parts = {} end
  -- gmatch yields one trailing empty match
  if #parts > 0 and path:sub(-1) ~= "/" and parts[#parts] == "" then parts[#parts] = nil end
  return parts
end

-- Resolves the parent container of a JSON pointer; returns parent, last
-- token (a Lua key: 1-based for arrays; "-" kept), or nil, message.
local function locate(doc, parts, for_add)
  local v = doc
  for i = 1, #parts - 1 do
    local p = parts[i]
    if is_array(v) then
      v = v[(tonumber(p) or -1) + 1]
    elseif type(v) == "table" and v ~= null then
      v = v[p]
    else
      v = nil
    end
    if v == nil then return nil, "path not found" end
  end
  local last = parts[#parts]
  if type(v) ~= "table" or v == null then return nil, "path not found" end
  if is_array(v) then
    if last == "-" then return v, #v + 1, true end
    local n = tonumber(last)
    if not n or n < 0 or n ~= math.floor(n) then return nil, "bad array index " .. last end
    return v, n + 1, true
  end
  return v, last, false
end

local function json_patch(doc, ops)
  if not is_array(ops) then
    return nil, "a JSON patch must be an array of operations"
  end
  for i, op in ipairs(ops) do
    local parts = pointer(op.path)
    if not parts then return nil, "operation " .. i .. ": bad path" end
    if #parts == 0 then return nil, "operation " .. i .. ": whole-document operations are not supported" end
    local kind = op.op
    if kind == "test" then
      local parent, last, arr = locate(doc, parts)
      if not parent then return nil, "test operation " .. i .. " failed: " .. last end
      if not deep_equal(parent[last], op.value) then
        return nil, "test operation " .. i .. " failed for path " .. op.path
      end
    elseif kind == "add" or kind == "replace" then
      local parent, last, arr = locate(doc, parts, kind == "add")
      if not parent then return nil, "operation " .. i .. ": " .. last end
      if kind == "replace" and parent[last] == nil then
        return nil, "operation " .. i .. ": replace of missing path " .. op.path
      end
      if arr and kind == "add" then
        if last > #parent + 1 then return nil, "operation " .. i .. ": index out of range" end
        table.insert(parent, last, copy(op.value))
      else
        parent[last] = copy(op.value)
      end
    elseif kind == "remove" then
      local parent, last, arr = locate(doc, parts)
      if not parent or parent[last] == nil then return nil, "operation " .. i .. ": remove of missing path " .. op.path end
      if arr then table.remove(parent, last) else parent[last] = nil end
    elseif kind == "move" or kind == "copy" then
      local from = pointer(op.from)
      if not from or #from == 0 then return nil, "operation " .. i .. ": bad from" end
      local fp, fl, farr = locate(doc, from)
      if not fp or fp[fl] == nil then return nil, "operation " .. i .. ": from path not found" end
      local value = copy(fp[fl])
      if kind == "move" then
        if farr then table.remove(fp, fl) else fp[fl] = nil end
      end
      local parent, last, arr = locate(doc, parts, true)
      if not parent then return nil, "operation " .. i .. ": " .. last end
      if arr then table.insert(parent, last, value) else parent[last] = value end
    else
      return nil, "operation " .. i .. ": unknown op " .. tostring(kind)
    end
  end
  return doc
end

T.merge_patch = function(target, patch) return merge_patch(copy(target), patch) end
T.json_patch = function(doc, ops) return json_patch(copy(doc), ops) end
T.strategic_patch = function(target, patch) return strategic_patch(copy(target), patch) end

---------------------------------------------------------------------------
-- The environment

local Env = {}
Env.__index = Env

local function check_obj(fname, obj)
  if type(obj) ~= "table" then error("klua.testing: " .. fname .. ": expected an object table", 3) end
  if type(obj.apiVersion) ~= "string" or type(obj.kind) ~= "string" then
    error("klua.testing: " .. fname .. ": the object needs apiVersion and kind", 3)
  end
  if type(obj.metadata) ~= "table" or not str(obj.metadata.name) then
    error("klua.testing: " .. fname .. ": the object needs metadata.name", 3)
  end
end

local function resource(av, kind) return av .. "/" .. kind end

function Env:_bucket(av, kind)
  local r = resource(av, kind)
  local b = self.server[r]
  if not b then b = {}; self.server[r] = b end
  return b
end

function Env:_next_rv()
  self.rv = self.rv + 1
  return tostring(self.rv)
end

function Env:_next_uid()
  self.uid_n = self.uid_n + 1
  return fmt("00000000-0000-4000-8000-%012d", self.uid_n)
end

-- Fills server-assigned metadata of a new object.
function Env:_stamp_new(obj)
  local md = obj.metadata
  if not str(md.uid) then md.uid = self:_next_uid() end
  md.resourceVersion = self:_next_rv()
  if not str(md.creationTimestamp) then md.creationTimestamp = self.klua.format_time(self.clock) end
  if md.generation == nil and obj.spec ~= nil then md.generation = 1 end
end

-- Does the server object differ in anything but metadata and status?
local function spec_changed(old, new)
  local a, b = {}, {}
  for k, v in pairs(old) do if k ~= "metadata" and k ~= "status" then a[k] = v end end
  for k, v in pairs(new) do if k ~= "metadata" and k ~= "status" then b[k] = v end end
  return not deep_equal(a, b)
end

-- Stores new as the next version of old on the server (keeping what the
-- server owns) and applies finalizer-driven deletion.
function Env:_store_version(old, new, keep_status)
  local md, omd = new.metadata, old.metadata
  md.uid, md.creationTimestamp = omd.uid, omd.creationTimestamp
  md.namespace, md.name = omd.namespace, omd.name
  md.deletionTimestamp, md.deletionGracePeriodSeconds = omd.deletionTimestamp, omd.deletionGracePeriodSeconds
  if keep_status then new.status = copy(old.status) end
  md.generation = omd.generation
  if spec_changed(old, new) and (md.generation ~= nil or new.spec ~= nil) then
    md.generation = (md.generation or 0) + 1
  end
  md.resourceVersion = self:_next_rv()
  local b = self:_bucket(new.apiVersion, new.kind)
  b[key_of(str(md.namespace), md.name)] = new
  if str(md.deletionTimestamp) and (type(md.finalizers) ~= "table" or #md.finalizers == 0) then
    self:_server_delete(new, "Background")
  end
  return new
end

-- Removes obj from the server and collects its dependents (garbage
-- collection: a dependent goes when none of its owners remain; with the
-- Orphan policy the reference is removed instead).
function Env:_server_delete(obj, policy)
  local md = obj.metadata
  local b = self:_bucket(obj.apiVersion, obj.kind)
  b[key_of(str(md.namespace), md.name)] = nil
  local uid = md.uid
  if not uid then return end
  local live = {}
  for _, bucket in pairs(self.server) do
    for _, o in pairs(bucket) do live[o.metadata.uid or ""] = true end
  end
  for _, bucket in pairs(self.server) do
    local keys = {}
    for k in pairs(bucket) do keys[#keys + 1] = k end
    sort(keys)
    for _, k in ipairs(keys) do
      local o = bucket[k]
      local refs = o and o.metadata.ownerReferences
      if type(refs) == "table" then
        local mine, others = false, false
        for _, r in ipairs(refs) do
          if r.uid == uid then mine = true elseif live[r.uid] then others = true end
        end
        if mine then
          if policy == "Orphan" then
            for i = #refs, 1, -1 do if refs[i].uid == uid then table.remove(refs, i) end end
            o.metadata.resourceVersion = self:_next_rv()
          elseif not others then
            self:_delete_one(o, "Background")
          end
        end
      end
    end
  end
end

-- A DELETE: finalizers postpone it (deletionTimestamp is set).
function Env:_delete_one(o, policy)
  local md = o.metadata
  if type(md.finalizers) == "table" and #md.finalizers > 0 then
    if not str(md.deletionTimestamp) then
      md.deletionTimestamp = self.klua.format_time(self.clock)
      md.deletionGracePeriodSeconds = 0
      md.resourceVersion = self:_next_rv()
    end
    return
  end
  self:_server_delete(o, policy)
end

function Env:_server_get(av, kind, ns, name)
  return self:_bucket(av, kind)[key_of(ns, name)]
end

-- The fake API server.
function Env:_request(verb, av, kind, ns, name, body, opts)
  local k = self.klua
  local call = { verb = verb, api_version = av, kind = kind, namespace = ns, name = name,
                 body = copy(body), opts = copy(opts) }
  local calls = self.client.calls
  calls[#calls + 1] = call
  for _, v in ipairs({ verb, "*" }) do
    local q = self.failures[v]
    if q then
      for i, f in ipairs(q) do
        local m = f.match
        if not m or ((m.kind == nil or m.kind == kind) and (m.name == nil or m.name == name) and
                     (m.namespace == nil or m.namespace == ns)) then
          table.remove(q, i)
          call.err = f.err
          return nil, f.err
        end
      end
    end
  end
  local r, err = self:_serve(verb, av, kind, ns, name, body, opts or {})
  if r == nil then call.err = err end
  return r, err
end

function Env:_serve(verb, av, kind, ns, name, body, opts)
  local k = self.klua
  local cur = name and self:_server_get(av, kind, ns, name)
  if verb == "get" then
    if not cur then return nil, not_found(k, kind, name) end
    return copy(cur)
  elseif verb == "create" then
    local obj = copy(body)
    obj.metadata = obj.metadata or obj_table()
    local md = obj.metadata
    if not name then
      self.name_n = self.name_n + 1
      local suffix, n = {}, self.name_n
      for _ = 1, 5 do
        local d = n % 26
        suffix[#suffix + 1] = string.char(97 + d)
        n = math.floor(n / 26)
      end
      name = md.generateName .. concat(suffix)
      md.name = name
      cur = self:_server_get(av, kind, ns, name)
    end
    if cur then
      return nil, api_error(k, 409, "AlreadyExists", fmt('%s "%s" already exists', plural(kind), name), kind, name)
    end
    md.uid, md.resourceVersion, md.creationTimestamp, md.generation = nil, nil, nil, nil
    md.deletionTimestamp = nil
    self:_stamp_new(obj)
    self:_bucket(av, kind)[key_of(ns, name)] = obj
    return copy(obj)
  end
  if not cur and verb == "apply" then
    return self:_serve("create", av, kind, ns, name, body, opts)
  end
  if not cur then return nil, not_found(k, kind, name) end
  local rv = body and type(body) == "table" and type(body.metadata) == "table" and str(body.metadata.resourceVersion)
  if verb == "update" or verb == "update_status" then
    if rv and rv ~= cur.metadata.resourceVersion then return nil, conflict(k, kind, name) end
    local new
    if verb == "update" then
      new = copy(body)
      if type(new.metadata) ~= "table" then new.metadata = obj_table() end
      new = self:_store_version(cur, new, true)
    else
      new = copy(cur)
      new.status = copy(body.status)
      new = self:_store_version(cur, new, false)
    end
    return copy(new)
  elseif verb == "patch" or verb == "apply" then
    local patch = body
    if type(patch) == "string" then
      if not k.have_core then
        error("klua.testing: string patches need the klua_core module (for JSON)", 0)
      end
      local err
      patch, err = k.json.decode(patch)
      if patch == nil then
        return nil, api_error(k, 400, "BadRequest", "invalid patch: " .. tostring(err), kind, name)
      end
    end
    local new, err
    local status_only = opts.subresource == "status"
    local base = copy(cur)
    if verb == "apply" or opts.type == "merge" then
      new = merge_patch(base, patch)
    elseif opts.type == "strategic" then
      new = strategic_patch(base, patch)
    else
      new, err = json_patch(base, patch)
      if not new then
        return nil, api_error(k, 422, "Invalid", "the server rejected our request due to an error in our request: " .. err, kind, name)
      end
    end
    if type(new) ~= "table" or type(new.metadata) ~= "table" then
      return nil, api_error(k, 422, "Invalid", "the patch removed metadata", kind, name)
    end
    local want = is_object(patch) and type(patch.metadata) == "table" and str(patch.metadata.resourceVersion)
    if want and want ~= cur.metadata.resourceVersion then return nil, conflict(k, kind, name) end
    if status_only then
      local s = copy(new.status)
      new = copy(cur)
      new.status = s
    end
    new.apiVersion, new.kind = cur.apiVersion, cur.kind
    new = self:_store_version(cur, new, not status_only)
    return copy(new)
  elseif verb == "delete" then
    local pre = opts.preconditions
    if pre then
      if pre.uid and pre.uid ~= cur.metadata.uid then
        return nil, api_error(k, 409, "Conflict", fmt("Precondition failed: UID in precondition: %s, UID in object meta: %s",
          pre.uid, tostring(cur.metadata.uid)), kind, name)
      end
      if pre.resource_version and pre.resource_version ~= cur.metadata.resourceVersion then
        return nil, api_error(k, 409, "Conflict", fmt("Precondition failed: ResourceVersion in precondition: %s, ResourceVersion in object meta: %s",
          pre.resource_version, tostring(cur.metadata.resourceVersion)), kind, name)
      end
    end
    self:_delete_one(cur, opts.propagation_policy or "Background")
    return true
  end
  error("klua.testing: unknown verb " .. tostring(verb), 0)
end

---------------------------------------------------------------------------
-- Fake caches

local function field_terms(fs)
  local terms = {}
  if not fs then return terms end
  for term in (fs .. ","):gmatch("([^,]*),") do
    local k, op, v = term:match("^([^=!]+)(!?=)(.*)$")
    terms[#terms + 1] = { path = k, neg = op == "!=", value = v }
  end
  return terms
end

local function cache_accepts(entry, obj)
  if resource(obj.apiVersion, obj.kind) ~= entry.resource then return false end
  local md = obj.metadata
  if entry.namespace and md.namespace ~= entry.namespace then return false end
  if entry.label_selector and not K0.selector.matches(entry.label_selector, md.labels) then return false end
  for _, t in ipairs(field_terms(entry.field_selector)) do
    local v = scalar_text(path_get(obj, t.path)) or ""
    if (v == t.value) == t.neg then return false end
  end
  return true
end

function Env:start()
  if self.started then return self end
  self.klua._seal()
  self.caches = {}
  for _, c in ipairs(self.klua._registry.caches) do
    self.caches[c.id] = { entry = c, objects = {} }
  end
  self.started = true
  return self
end

function Env:_cache(id)
  local c = self.caches[id]
  if not c then error("klua.testing: unknown cache " .. tostring(id), 0) end
  return c
end

-- Puts a copy of server object obj into every cache that accepts it (and
-- removes it from those that no longer do).
function Env:_cache_put(obj)
  local key = key_of(str(obj.metadata.namespace), obj.metadata.name)
  for _, c in pairs(self.caches) do
    if cache_accepts(c.entry, obj) then
      c.objects[key] = { obj = copy(obj), pristine = copy(obj) }
    elseif resource(obj.apiVersion, obj.kind) == c.entry.resource then
      c.objects[key] = nil
    end
  end
end

function Env:_cache_remove(av, kind, ns, name)
  local r = resource(av, kind)
  for _, c in pairs(self.caches) do
    if c.entry.resource == r then c.objects[key_of(ns, name)] = nil end
  end
end

local function sorted_objects(map)
  local keys = {}
  for k in pairs(map) do keys[#keys + 1] = k end
  sort(keys)
  local out = {}
  for i, k in ipairs(keys) do out[i] = map[k] end
  return out
end

function Env:_index_values(entry, index, obj)
  local spec
  for _, e in ipairs(entry.indexes) do if e.name == index then spec = e end end
  if not spec then error("klua.testing: no index '" .. index .. "' on " .. entry.resource, 0) end
  local md, out = obj.metadata, {}
  if spec.type == "namespace" then
    out[1] = str(md.namespace) or ""
  elseif spec.type == "label" then
    local v = type(md.labels) == "table" and md.labels[spec.label]
    if type(v) == "string" then out[1] = v end
  elseif spec.type == "field" then
    out[1] = scalar_text(path_get(obj, spec.field))
  elseif spec.type == "owner" then
    if type(md.ownerReferences) == "table" then
      for _, r in ipairs(md.ownerReferences) do
        if spec.owner == "uid" then out[#out + 1] = str(r.uid)
        else out[#out + 1] = tostring(r.kind) .. "/" .. tostring(r.name) end
      end
    end
  else
    local v = spec.fn(obj)
    if type(v) == "string" then out[1] = v
    elseif type(v) == "table" then
      for i, x in ipairs(v) do
        if type(x) ~= "string" then
          error(fmt("klua.testing: index function '%s' returned a non-string value at [%d] for %s",
            index, i, describe(obj.kind, str(md.namespace), md.name)), 0)
        end
        out[#out + 1] = x
      end
    elseif v ~= nil then
      error(fmt("klua.testing: index function '%s' must return nil, a string or an array of strings, got %s",
        index, type(v)), 0)
    end
  end
  local set = {}
  for _, v in pairs(out) do set[v] = true end
  return set
end

local function make_backend(env)
  local b = {}
  function b.cache_get(id, ns, name)
    local e = env:_cache(id).objects[key_of(ns, name)]
    return e and e.obj
  end
  function b.cache_list(id, q)
    local sel = q.label_selector and K0.selector.parse(q.label_selector)
    local out = {}
    for _, e in ipairs(sorted_objects(env:_cache(id).objects)) do
      local md = e.obj.metadata
      if (not q.namespace or md.namespace == q.namespace) and (not sel or sel:matches(md.labels)) then
        out[#out + 1] = e.obj
      end
    end
    return out
  end
  function b.cache_by_index(id, index, value)
    local c = env:_cache(id)
    local out = {}
    for _, e in ipairs(sorted_objects(c.objects)) do
      if env:_index_values(c.entry, index, e.obj)[value] then out[#out + 1] = e.obj end
    end
    return out
  end
  function b.cache_index_values(id, index)
    local c = env:_cache(id)
    local set = {}
    for _, e in pairs(c.objects) do
      for v in pairs(env:_index_values(c.entry, index, e.obj)) do set[v] = true end
    end
    local out = {}
    for v in pairs(set) do out[#out + 1] = v end
    sort(out)
    return out
  end
  function b.request(verb, av, kind, ns, name, body, opts)
    return env:_request(verb, av, kind, ns, name, body, opts)
  end
  function b.event(obj, etype, reason, message)
    local md = type(obj.metadata) == "table" and obj.metadata or {}
    env.events[#env.events + 1] = {
      object = { apiVersion = obj.apiVersion, kind = obj.kind, namespace = md.namespace,
                 name = md.name, uid = md.uid },
      type = etype, reason = reason, message = message,
    }
  end
  function b.log(level, msg, fields)
    env.logs[#env.logs + 1] = { level = level, msg = msg, fields = copy(fields) or {} }
    if env.verbose then
      local parts = {}
      for k, v in pairs(fields or {}) do parts[#parts + 1] = tostring(k) .. "=" .. tostring(v) end
      sort(parts)
      io.stderr:write("[", level, "] ", msg, " ", concat(parts, " "), "\n")
    end
  end
  function b.now() return env.clock end
  function b.metric(mtype, name, help, labels, buckets)
    return env.metrics:define(mtype, name, help, labels, buckets)
  end
  function b.getenv(name)
    local v = env.vars[name]
    if v == nil and env.inherit_env then return os.getenv(name) end
    if v ~= nil then return tostring(v) end
    return nil
  end
  return b
end

---------------------------------------------------------------------------
-- Public API

-- t.new(opts) -> env with a fresh klua (env.klua) and no script: declare
-- controllers with env.klua.controller{...} and use env like a loaded one.
-- opts: env (table of variables for klua.getenv), inherit_env (fall back to
-- os.getenv), now (clock start, seconds; default 1700000000), verbose
-- (print logs to stderr).
function T.new(opts)
  opts = opts or {}
  local k, mods = fresh_klua()
  local env = setmetatable({
    klua = k, modules = mods,
    client = { calls = {} },
    events = {}, logs = {},
    metrics = mods["klua.metrics"].new_registry(),
    clock = opts.now or 1700000000,
    vars = opts.env or {}, inherit_env = opts.inherit_env, verbose = opts.verbose,
    server = {}, caches = {}, failures = {},
    rv = 0, uid_n = 0, name_n = 0, started = false,
  }, Env)
  k._set_backend(make_backend(env))
  return env
end

-- t.load(path, opts) -> env: runs the script at path (in its own global
-- environment whose require("klua") returns env.klua), then ends its load
-- phase. Errors in the script are raised.
function T.load(path, opts)
  local env = T.new(opts)
  local chunk, err = loadfile(path)
  if not chunk then error("klua.testing: cannot load " .. tostring(path) .. ": " .. tostring(err), 2) end
  local mods = env.modules
  local sandbox = setmetatable({}, { __index = _G })
  sandbox._G = sandbox
  sandbox.require = function(name)
    local m = mods[name]
    if m ~= nil then return m end
    return require(name)
  end
  env.globals = sandbox
  setfenv(chunk, sandbox)
  local ok, e = pcall(chunk)
  if not ok then error("klua.testing: script " .. path .. " failed to load: " .. tostring(e), 2) end
  env.script_result = e
  env:start()
  return env
end

-- env:controllers() -> the normalised controllers (klua._registry.controllers).
function Env:controllers()
  return self.klua._registry.controllers
end

function Env:controller(name)
  local cs = self:controllers()
  if name == nil then
    if #cs ~= 1 then
      error("klua.testing: the script declares " .. #cs .. " controllers: name the one to use", 3)
    end
    return cs[1]
  end
  for _, c in ipairs(cs) do if c.name == name then return c end end
  error("klua.testing: no controller named '" .. tostring(name) .. "'", 3)
end

-- env:add(obj, ...): creates each object on the fake server (server fields
-- filled: uid, resourceVersion, creationTimestamp, generation) and in the
-- caches. Raises if one already exists. Returns the stored copies.
function Env:add(...)
  self:start()
  local out = {}
  for i = 1, select("#", ...) do
    local obj = select(i, ...)
    check_obj("add", obj)
    local md = obj.metadata
    local ns = str(md.namespace)
    if self:_server_get(obj.apiVersion, obj.kind, ns, md.name) then
      error("klua.testing: add: " .. describe(obj.kind, ns, md.name) .. " already exists (use env:set)", 2)
    end
    local o = copy(obj)
    self:_stamp_new(o)
    self:_bucket(o.apiVersion, o.kind)[key_of(ns, md.name)] = o
    self:_cache_put(o)
    out[i] = copy(o)
  end
  return unpack(out)
end

-- env:set(obj, ...): creates or replaces each object (server and caches);
-- a new resourceVersion is assigned, uid and creationTimestamp kept.
function Env:set(...)
  self:start()
  local out = {}
  for i = 1, select("#", ...) do
    local obj = select(i, ...)
    check_obj("set", obj)
    local md = obj.metadata
    local ns = str(md.namespace)
    local old = self:_server_get(obj.apiVersion, obj.kind, ns, md.name)
    local o = copy(obj)
    if old then
      o.metadata.uid = o.metadata.uid or old.metadata.uid
      o.metadata.creationTimestamp = o.metadata.creationTimestamp or old.metadata.creationTimestamp
      o.metadata.resourceVersion = self:_next_rv()
      if o.metadata.generation == nil then o.metadata.generation = old.metadata.generation end
    else
      self:_stamp_new(o)
    end
    self:_bucket(o.apiVersion, o.kind)[key_of(ns, md.name)] = o
    self:_cache_put(o)
    out[i] = copy(o)
  end
  return unpack(out)
end

local function ref_args(a, b, c, d)
  if type(a) == "table" then
    return a.apiVersion, a.kind, type(a.metadata) == "table" and str(a.metadata.namespace), a.metadata and a.metadata.name
  end
  if d == nil then return a, b, nil, c end
  return a, b, str(c), d
end

-- env:remove(obj) or env:remove(api_version, kind, namespace, name): takes
-- the object off the server and out of the caches at once (no finalizers,
-- no garbage collection). Returns true when it existed.
function Env:remove(...)
  self:start()
  local av, kind, ns, name = ref_args(...)
  local b = self:_bucket(av, kind)
  local k = key_of(ns, name)
  local existed = b[k] ~= nil
  b[k] = nil
  self:_cache_remove(av, kind, ns, name)
  return existed
end

-- env:server_set(obj) / env:server_remove(...): change only the server, so
-- that the caches are stale until env:sync().
function Env:server_set(obj)
  self:start()
  check_obj("server_set", obj)
  local md = obj.metadata
  local ns = str(md.namespace)
  local old = self:_server_get(obj.apiVersion, obj.kind, ns, md.name)
  local o = copy(obj)
  if old then
    o.metadata.uid = o.metadata.uid or old.metadata.uid
    o.metadata.creationTimestamp = o.metadata.creationTimestamp or old.metadata.creationTimestamp
    o.metadata.resourceVersion = self:_next_rv()
  else
    self:_stamp_new(o)
  end
  self:_bucket(o.apiVersion, o.kind)[key_of(ns, md.name)] = o
  return copy(o)
end

function Env:server_remove(...)
  local av, kind, ns, name = ref_args(...)
  local b = self:_bucket(av, kind)
  local existed = b[key_of(ns, name)] ~= nil
  b[key_of(ns, name)] = nil
  return existed
end

-- env:sync(): makes every cache hold exactly the server objects it selects,
-- as the informers would after seeing every change.
function Env:sync()
  self:start()
  for _, c in pairs(self.caches) do
    local fresh = {}
    local bucket = self.server[c.entry.resource] or {}
    for key, o in pairs(bucket) do
      if cache_accepts(c.entry, o) then
        local prev = c.objects[key]
        if prev and prev.pristine.metadata.resourceVersion == o.metadata.resourceVersion then
          fresh[key] = prev
        else
          fresh[key] = { obj = copy(o), pristine = copy(o) }
        end
      end
    end
    c.objects = fresh
  end
end

-- env:objects(api_version, kind) -> copies of the server's objects of that
-- resource, sorted by key ("ns/name").
function Env:objects(av, kind)
  local out = {}
  for i, o in ipairs(sorted_objects(self.server[resource(av, kind)] or {})) do out[i] = copy(o) end
  return out
end

-- env:object(api_version, kind, namespace, name) (or (api_version, kind,
-- name) for cluster-scoped) -> a copy of the server's object, or nil.
function Env:object(av, kind, ns, name)
  if name == nil then ns, name = nil, ns end
  local o = self:_server_get(av, kind, str(ns), name)
  return o and copy(o)
end

-- env:cached(api_version, kind, namespace, name) -> true when some cache
-- holds the object.
function Env:cached(av, kind, ns, name)
  if name == nil then ns, name = nil, ns end
  local r = resource(av, kind)
  for _, c in pairs(self.caches) do
    if c.entry.resource == r and c.objects[key_of(str(ns), name)] then return true end
  end
  return false
end

-- env:fail_next(verb, err [, match]): the next request with that verb ("*"
-- for any) fails with err: an HTTP code (409), a reason ("Conflict") or a
-- table { code, reason, message }. match ({ kind, namespace, name })
-- restricts which request fails. Failures queue up in order.
function Env:fail_next(verb, err, match)
  if type(verb) ~= "string" then error("klua.testing: fail_next: verb must be a string", 2) end
  local q = self.failures[verb]
  if not q then q = {}; self.failures[verb] = q end
  q[#q + 1] = { err = make_error(self.klua, err), match = match }
end

-- env:calls([verb]) -> the recorded requests (all, or those of one verb).
function Env:calls(verb)
  if verb == nil then return self.client.calls end
  local out = {}
  for _, c in ipairs(self.client.calls) do if c.verb == verb then out[#out + 1] = c end end
  return out
end

-- env:clear() forgets the recorded calls, events, logs and metric values
-- (the metrics stay defined).
function Env:clear()
  self.client.calls = {}
  self.events = {}
  self.logs = {}
  self.metrics:reset()
end

function Env:now() return self.clock end

-- env:advance(seconds) moves the fake clock forward.
function Env:advance(seconds)
  if type(seconds) ~= "number" or seconds < 0 then error("klua.testing: advance: seconds must be >= 0", 2) end
  self.clock = self.clock + seconds
end

-- After a run: a cached object changed in place is a bug in the script (in
-- the real runtime cached tables are shared by every reconcile).
function Env:_check_cache_untouched()
  for _, c in pairs(self.caches) do
    for key, e in pairs(c.objects) do
      if not deep_equal(e.obj, e.pristine) then
        e.obj = copy(e.pristine)
        return nil, "the script modified the cached object " .. c.entry.kind .. " " .. key ..
          " in place (cached objects are read-only: change a klua.deepcopy of it)"
      end
    end
  end
  return true
end

function Env:_run(fn, ...)
  local ok, res = pcall(fn, ...)
  local clean, err = self:_check_cache_untouched()
  if not clean then return false, err end
  return ok, res
end

-- env:reconcile([controller_name], request) -> ok, result_or_err. request
-- is { namespace =, name = } or a key "ns/name". The controller name may
-- be nil (or omitted) when the script declares one controller. ok is false
-- when reconcile raised (result is the error), returned something other
-- than nothing / klua.requeue / klua.requeue_after(s), or modified a cached
-- object.
function Env:reconcile(cname, req)
  self:start()
  if req == nil and (type(cname) == "table" or (type(cname) == "string" and cname:find("/", 1, true))) then
    cname, req = nil, cname
  end
  local c = self:controller(cname)
  if not c.reconcile then error("klua.testing: controller '" .. c.name .. "' has no reconcile function", 2) end
  local r, err = self.klua._normalize_request(req)
  if not r then error("klua.testing: reconcile: " .. err, 2) end
  local ok, res = self:_run(c.reconcile, r)
  if not ok then return false, res end
  local what, why = self.klua._interpret_result(res)
  if not what then return false, why end
  return true, res
end

-- env:hook(controller_name_or_nil, hook, ...) runs on_add / on_update /
-- on_delete / on_state with the given arguments -> ok, result_or_err.
function Env:hook(cname, hook, ...)
  self:start()
  local c = self:controller(cname)
  local f = c.hooks[hook]
  if not f then error("klua.testing: controller '" .. c.name .. "' has no " .. tostring(hook) .. " hook", 2) end
  return self:_run(f, ...)
end

-- env:enqueued(obj) -> the requests a change to obj would enqueue, as
-- { controller =, namespace =, name =, key = } sorted by controller and key:
-- its own key for controllers whose primary resource it is (and whose
-- filters it passes), its controller owner's key for controllers that own
-- its resource, and the results of map for watches. Errors in map raise.
function Env:enqueued(obj)
  self:start()
  local k = self.klua
  local out = {}
  local function add(c, r)
    local n, err = k._normalize_request(r)
    if not n then error("klua.testing: map of controller '" .. c.name .. "': " .. err, 3) end
    n.controller = c.name
    out[#out + 1] = n
  end
  for _, c in ipairs(self:controllers()) do
    if cache_accepts(self.caches[c.cache_id].entry, obj) then
      add(c, { namespace = obj.metadata.namespace, name = obj.metadata.name })
    end
    for _, o in ipairs(c.owns) do
      if cache_accepts(self.caches[o.cache_id].entry, obj) then
        local ref = k.meta.get_controller_of(obj)
        if ref and ref.kind == c.kind and k.meta.group(ref.apiVersion) == k.meta.group(c.api_version) then
          add(c, { namespace = obj.metadata.namespace, name = ref.name })
        end
      end
    end
    for _, w in ipairs(c.watches) do
      if cache_accepts(self.caches[w.cache_id].entry, obj) then
        local reqs = w.map(obj)
        if reqs ~= nil then
          if type(reqs) ~= "table" then error("klua.testing: map of controller '" .. c.name .. "' must return a list", 2) end
          for _, r in ipairs(reqs) do add(c, r) end
        end
      end
    end
  end
  sort(out, function(a, b)
    if a.controller ~= b.controller then return a.controller < b.controller end
    return a.key < b.key
  end)
  local dedup, seen = {}, {}
  for _, r in ipairs(out) do
    local id = r.controller .. "\0" .. r.key
    if not seen[id] then seen[id] = true; dedup[#dedup + 1] = r end
  end
  return dedup
end

T.Env = Env

return T
