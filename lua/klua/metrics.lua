-- klua.metrics: Prometheus metrics defined by controller scripts
-- (reference: docs/lua-api.md "Metrics"; the exposition: docs/production.md).
--
--   local synced = assert(klua.metrics.counter("widgets_synced_total",
--     "Widgets brought in line with their spec.", { "namespace" }))
--   synced:inc({ namespace = req.namespace })
--
-- counter/gauge/histogram return a metric, or nil, err when the name or a
-- label name is invalid or the name is taken by a metric of another type,
-- labels or buckets; defining the same metric again returns it again (every
-- worker state loads the script: they all update one process-wide metric).
-- Where metrics live: backend.metric(type, name, help, labels, buckets) when
-- the backend has one (klua.testing: a registry per environment), else
-- klua_core's process-wide registry (the one /metrics serves), else a
-- registry in this Lua state (plain Lua without the C module).
--
-- This file also holds that pure-Lua registry (M.new_registry), with the
-- C registry's rules, so that tests see the same errors as the runtime.
local klua = require("klua")

local type, pairs, ipairs, tostring, tonumber, error, select, setmetatable =
  type, pairs, ipairs, tostring, tonumber, error, select, setmetatable
local concat, sort, fmt = table.concat, table.sort, string.format
local huge = math.huge

local M = {}

-- Prometheus's default histogram buckets (the C registry's too).
M.default_buckets = { .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10 }
M.max_labels = 16
M.max_buckets = 64

---------------------------------------------------------------------------
-- Definitions

local function argerr(fname, msg)
  error("klua.metrics." .. fname .. ": " .. msg, 3)
end

local function check_args(fname, name, help, labels, buckets)
  if type(name) ~= "string" or name == "" then
    argerr(fname, "name must be a non-empty string, got " ..
      (type(name) == "string" and '""' or type(name)))
  end
  if help ~= nil and type(help) ~= "string" then
    argerr(fname, "help must be a string, got " .. type(help))
  end
  if labels ~= nil then
    if type(labels) ~= "table" then
      argerr(fname, "label_names must be an array of strings, got " .. type(labels))
    end
    for i, l in ipairs(labels) do
      if type(l) ~= "string" then
        argerr(fname, "label_names[" .. i .. "] must be a string, got " .. type(l))
      end
    end
    if #labels > M.max_labels then argerr(fname, "at most " .. M.max_labels .. " labels") end
    for k in pairs(labels) do
      if type(k) ~= "number" or k < 1 or k > #labels or k % 1 ~= 0 then
        argerr(fname, "label_names must be an array of strings (a table with key " ..
          tostring(k) .. " is not)")
      end
    end
  end
  if buckets ~= nil then
    if type(buckets) ~= "table" then
      argerr(fname, "buckets must be an array of numbers, got " .. type(buckets))
    end
    for i, b in ipairs(buckets) do
      if type(b) ~= "number" then
        argerr(fname, "buckets[" .. i .. "] must be a number, got " .. type(b))
      end
    end
    if #buckets > M.max_buckets then argerr(fname, "at most " .. M.max_buckets .. " buckets") end
  end
end

-- klua_core's registry functions, when the C module is there.
local core
do
  local ok, c = pcall(require, "klua_core")
  if ok and type(c) == "table" and type(c.metrics_counter) == "function" then core = c end
end
local fallback -- the registry used without backend.metric and klua_core

local function define(mtype, fname, name, help, labels, buckets)
  check_args(fname, name, help, labels, buckets)
  local b = klua._backend()
  if type(b.metric) == "function" then
    return b.metric(mtype, name, help or "", labels, buckets)
  end
  if core then return core["metrics_" .. mtype](name, help or "", labels, buckets) end
  fallback = fallback or M.new_registry()
  return fallback:define(mtype, name, help, labels, buckets)
end

-- counter(name, help, label_names) -> metric | nil, err. A counter only
-- goes up: m:inc([labels] [, n]).
function M.counter(name, help, label_names)
  return define("counter", "counter", name, help, label_names)
end

-- gauge(name, help, label_names) -> metric | nil, err: m:set([labels,] v),
-- m:add([labels,] v), m:inc([labels] [, n]), m:dec([labels] [, n]).
function M.gauge(name, help, label_names)
  return define("gauge", "gauge", name, help, label_names)
end

-- histogram(name, help, label_names, buckets) -> metric | nil, err:
-- m:observe([labels,] v). buckets: increasing upper bounds (+Inf implied);
-- nil for the defaults (M.default_buckets).
function M.histogram(name, help, label_names, buckets)
  return define("histogram", "histogram", name, help, label_names, buckets)
end

---------------------------------------------------------------------------
-- A registry in Lua, with the C registry's rules (runtime/metrics.c,
-- runtime/lua_metrics.c): the same validation, errors and method semantics.

local function valid_name(s, metric)
  if metric then return s:find("^[a-zA-Z_:][a-zA-Z0-9_:]*$") ~= nil end
  return s:find("^[a-zA-Z_][a-zA-Z0-9_]*$") ~= nil and s:sub(1, 2) ~= "__"
end

local metric_mt = {}
metric_mt.__index = metric_mt
metric_mt.__tostring = function(m) return "klua.metric(" .. m.type .. " " .. m.name .. ")" end

-- The series for a labels table (nil: every label ""); programmer mistakes
-- raise as the C binding does.
local function series(m, labels)
  local vals = {}
  for i = 1, #m.labels do vals[i] = "" end
  if type(labels) == "table" then
    for k, v in pairs(labels) do
      if type(k) ~= "string" then error(m.name .. ": label names must be strings", 3) end
      local idx = m.label_index[k]
      if not idx then error(m.name .. ': unknown label "' .. k .. '"', 3) end
      local t = type(v)
      if t ~= "string" and t ~= "number" and t ~= "boolean" then
        error(m.name .. ": label " .. k .. " must be a string, number or boolean", 3)
      end
      vals[idx] = tostring(v)
    end
  elseif labels ~= nil then
    error(m.name .. ": labels must be a table", 3)
  end
  local key = concat(vals, "\0")
  local s = m.series[key]
  if not s then
    local lt = {}
    for i, l in ipairs(m.labels) do lt[l] = vals[i] end
    s = { labels = lt, value = 0, count = 0 }
    if m.type == "histogram" then
      s.buckets = {}
      for i = 1, #m.buckets do s.buckets[i] = 0 end
    end
    m.series[key] = s
  end
  return s
end

-- A number argument; numeric strings pass, as luaL_checknumber lets them.
local function number(m, v, what)
  local x = (type(v) == "number" or type(v) == "string") and tonumber(v)
  if not x then
    error(m.name .. ": " .. what .. " must be a number, got " .. type(v), 3)
  end
  return x
end

local function inc_sign(m, sign, ...)
  local labels, n = ...
  if type(labels) == "number" then labels, n = nil, labels end
  if n == nil then n = 1 end
  n = number(m, n, "the amount")
  local s = series(m, labels)
  if m.type == "counter" then
    if sign < 0 or n < 0 then error(m.name .. ": a counter only goes up", 3) end
    if n == n then s.value = s.value + n end
  elseif m.type == "gauge" then
    s.value = s.value + sign * n
  else
    error(m.name .. " is a histogram: use observe", 3)
  end
end

function metric_mt:inc(...) inc_sign(self, 1, ...) end
function metric_mt:dec(...) inc_sign(self, -1, ...) end

local function labels_and_value(m, ...)
  local a, b = ...
  if select("#", ...) >= 2 or type(a) == "table" then return a, number(m, b, "the value") end
  return nil, number(m, a, "the value")
end

function metric_mt:set(...)
  if self.type ~= "gauge" then error(self.name .. " is not a gauge", 2) end
  local labels, v = labels_and_value(self, ...)
  series(self, labels).value = v
end

function metric_mt:add(...)
  if self.type ~= "gauge" then error(self.name .. " is not a gauge", 2) end
  local labels, v = labels_and_value(self, ...)
  local s = series(self, labels)
  s.value = s.value + v
end

function metric_mt:observe(...)
  if self.type ~= "histogram" then error(self.name .. " is not a histogram", 2) end
  local labels, v = labels_and_value(self, ...)
  local s = series(self, labels)
  for i, le in ipairs(self.buckets) do
    if v <= le then s.buckets[i] = s.buckets[i] + 1; break end
  end
  s.value = s.value + v
  s.count = s.count + 1
end

-- m:value([labels]) -> a counter's or gauge's value, a histogram's sum.
function metric_mt:value(labels) return series(self, labels).value end
-- m:count([labels]) -> a histogram's number of observations (0 otherwise).
function metric_mt:count(labels) return series(self, labels).count end

local registry_mt = {}
registry_mt.__index = registry_mt

-- new_registry() -> an empty registry in Lua (klua.testing gives one to
-- every environment as env.metrics).
function M.new_registry()
  return setmetatable({ families = {} }, registry_mt)
end

-- reg:define(type, name, help, labels, buckets) -> metric | nil, err, as
-- the C registry: "counter" | "gauge" | "histogram".
function registry_mt:define(mtype, name, help, labels, buckets)
  if not valid_name(name, true) then
    return nil, fmt('metric name "%s" is not valid ([a-zA-Z_:][a-zA-Z0-9_:]*)', name)
  end
  labels = labels or {}
  local seen = {}
  for i, l in ipairs(labels) do
    if not valid_name(l, false) or (mtype == "histogram" and l == "le") then
      return nil, fmt('metric %s: label name "%s" is not valid', name, l)
    end
    if seen[l] then return nil, fmt('metric %s: label "%s" given twice', name, l) end
    seen[l] = i
    if i > M.max_labels then return nil, fmt("metric %s: more than %d labels", name, M.max_labels) end
  end
  local bk = {}
  if mtype == "histogram" then
    if buckets == nil or #buckets == 0 then buckets = M.default_buckets end
    for i, v in ipairs(buckets) do
      if v ~= v or v == huge or v == -huge or (i > 1 and v <= buckets[i - 1]) then
        return nil, fmt("metric %s: buckets must be finite and strictly increasing", name)
      end
      bk[i] = v
    end
  end
  local m = self.families[name]
  if m then
    local same = m.type == mtype and #m.labels == #labels and #m.buckets == #bk
    for i = 1, #labels do same = same and m.labels[i] == labels[i] end
    for i = 1, #bk do same = same and m.buckets[i] == bk[i] end
    if not same then
      return nil, fmt("metric %s is already registered as a %s with other labels or buckets",
        name, m.type)
    end
    return m
  end
  local lcopy = {}
  for i, l in ipairs(labels) do lcopy[i] = l end
  m = setmetatable({ name = name, help = help or "", type = mtype, labels = lcopy,
                     label_index = seen, buckets = bk, series = {} }, metric_mt)
  self.families[name] = m
  return m
end

local function family(reg, name, level)
  local m = reg.families[name]
  if not m then error("klua.metrics: no metric named " .. tostring(name) .. " is defined", level + 1) end
  return m
end

-- reg:get(name) -> the metric or nil.
function registry_mt:get(name) return self.families[name] end

-- reg:names() -> the defined metric names, sorted.
function registry_mt:names()
  local out = {}
  for n in pairs(self.families) do out[#out + 1] = n end
  sort(out)
  return out
end

-- reg:value(name [, labels]) -> the series' value (a histogram's sum); 0
-- for a series never updated. Raises when no such metric is defined.
function registry_mt:value(name, labels)
  return series(family(self, name, 2), labels).value
end

-- reg:count(name [, labels]) -> a histogram series' observation count.
function registry_mt:count(name, labels)
  return series(family(self, name, 2), labels).count
end

-- reg:series(name) -> array of { labels = { name = value }, value =,
-- count =, buckets = { { le =, count = cumulative }, ... } (histograms) },
-- sorted by label values: every series updated (or read) so far.
function registry_mt:series(name)
  local m = family(self, name, 2)
  local keys = {}
  for k in pairs(m.series) do keys[#keys + 1] = k end
  sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local s = m.series[k]
    local labels = {}
    for l, v in pairs(s.labels) do labels[l] = v end
    local e = { labels = labels, value = s.value, count = s.count }
    if m.type == "histogram" then
      e.buckets = {}
      local cum = 0
      for i, le in ipairs(m.buckets) do
        cum = cum + s.buckets[i]
        e.buckets[i] = { le = le, count = cum }
      end
      e.buckets[#m.buckets + 1] = { le = huge, count = s.count }
    end
    out[#out + 1] = e
  end
  return out
end

-- reg:reset(): every value back to nothing (definitions stay).
function registry_mt:reset()
  for _, m in pairs(self.families) do m.series = {} end
end

return M
