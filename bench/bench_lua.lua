-- bench_lua.lua: Lua-side benchmarks of `make bench` (scripts/bench runs it
-- with luajit, LUA_CPATH=$BUILD/?.so): reads from a klua_core store of N
-- ConfigMaps through the store binding, as a Lua worker does.
--   luajit bench/bench_lua.lua [N] [calls]
-- Prints one JSON row per line: calls per second in this one Lua state
-- (one worker), wall clock. "cached": the object's table already exists in
-- this state (the usual case: a version is converted once per state);
-- "first touch": each call converts a version never read before.
local ffi = require("ffi")
local core = require("klua_core")

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } kl_bench_ts;
int clock_gettime(int clk, kl_bench_ts *ts);
]]
local ts = ffi.new("kl_bench_ts")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local N = tonumber(arg[1]) or 100000
local CALLS = tonumber(arg[2]) or 200000
local NNS = math.max(1, math.floor(N / 100)) -- 100 objects per namespace

local function row(name, t)
  local parts = { string.format('"row":"%s"', name) }
  for k, v in pairs(t) do
    if type(v) == "number" then
      parts[#parts + 1] = string.format('"%s":%.6g', k, v)
    else
      parts[#parts + 1] = string.format('"%s":"%s"', k, tostring(v))
    end
  end
  io.write("{", table.concat(parts, ","), "}\n")
  io.flush()
end

local pad = string.rep("x", 600)
local function configmap(i)
  return {
    apiVersion = "v1", kind = "ConfigMap",
    metadata = {
      name = string.format("cm-%06d", i),
      namespace = string.format("ns-%04d", i % NNS),
      resourceVersion = tostring(1000 + i),
      uid = string.format("00000000-0000-4000-8000-%012d", i),
      labels = { app = "svc-" .. (i % math.max(1, math.floor(N / 10))),
                 id = "id-" .. i, tier = "backend" },
      annotations = { ["example.com/checksum"] = "abcdef0123456789" },
    },
    data = { ["application.properties"] = "server.port=8080\n" .. pad,
             LOG_FORMAT = "json", REGION = "eu-west-1" },
  }
end

local s = core.store_new()
assert(s:add_indexers({ namespace = { namespace = true },
                        id = { label = "id" } }))
local t0 = now()
do
  local objs = {}
  for i = 0, N - 1 do objs[#objs + 1] = configmap(i) end
  assert(s:replace(objs, "1"))
end
local fill = now() - t0
row("lua_fill", { objects = N, seconds = fill, per_second = N / fill })
collectgarbage()

local keys = {}
for i = 0, N - 1 do
  keys[i + 1] = string.format("ns-%04d/cm-%06d", i % NNS, i)
end

-- first touch: every call converts a version this state never saw
local calls = math.min(N, CALLS)
t0 = now()
for i = 1, calls do
  local o = s:get_by_key(keys[i])
  assert(o.metadata)
end
local dt = now() - t0
row("lua_get_first_touch", { calls = calls, seconds = dt,
                             per_second = calls / dt })

-- cached: a working set of 1000 objects held by the caller
local hold, W = {}, math.min(1000, N)
for i = 1, W do hold[i] = s:get_by_key(keys[i]) end
t0 = now()
for i = 1, CALLS do
  local o = s:get_by_key(keys[(i % W) + 1])
  if o == nil then error("missing") end
end
dt = now() - t0
row("lua_get", { calls = CALLS, seconds = dt, per_second = CALLS / dt })

-- by_index: one object per value (label id)
t0 = now()
for i = 1, CALLS do
  local r = s:by_index("id", "id-" .. ((i % W)))
  if #r ~= 1 then error("by_index") end
end
dt = now() - t0
row("lua_by_index", { calls = CALLS, seconds = dt, per_second = CALLS / dt,
                      objects_per_call = 1 })

-- a list of 100 objects: one namespace (warm: tables converted once)
local lc = math.max(1, math.floor(CALLS / 20))
local nsn = math.min(NNS, 10)
for j = 0, nsn - 1 do
  hold[#hold + 1] = s:by_index("namespace", string.format("ns-%04d", j))
end
t0 = now()
local per = 0
for i = 1, lc do
  local r = s:by_index("namespace", string.format("ns-%04d", i % nsn))
  per = #r
end
dt = now() - t0
row("lua_list100", { calls = lc, seconds = dt, per_second = lc / dt,
                     objects_per_call = per })
