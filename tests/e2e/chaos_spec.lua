-- Chaos convergence (docs/reliability.md): while a writer makes random
-- creates, updates and deletes of ConfigMaps and a custom resource (Widget)
-- in three namespaces, `klua serve --faults on` closes watches, compacts its
-- history, fails requests with 500/503/429, cuts watch streams mid-event,
-- injects malformed lines and delays responses, and (when `klua serve` has
-- --state-file) the server is restarted once mid-run with its state. Six informers (the Lua
-- binding: different resources, namespaces, selectors, paging, in-order
-- FIFO, streaming lists) and a real `klua run` controller follow along.
-- After the writer stops, within CHAOS_CONVERGE seconds:
--   * every informer's store equals the server's list exactly (same keys,
--     same resourceVersions),
--   * every informer's handler view (adds/updates/deletes applied in order)
--     equals it too: no delete was lost (tombstones count),
--   * the controller's last reconcile of every key saw the key's final
--     state (its resourceVersion, or absent for deleted keys), and its
--     hooks' last event for every key was the final state (on_add or
--     on_update) or, for deleted keys, on_delete.
-- Environment: KLUA_BIN, KLUA_ROOT (set by scripts/run-tests.sh);
-- CHAOS_SEEDS (default "1 2 3"), CHAOS_SECONDS per seed (default 4),
-- CHAOS_CONVERGE (default 75: klua run's longest backoff wait, 30 s times
-- a jitter below 2, plus margin; runs that pass take 3-17 s),
-- CHAOS_REPORT (a file to append one JSON line per seed to; scripts/soak).
local core = require("klua_core")
local H = dofile((os.getenv("KLUA_ROOT") or ".") .. "/tests/e2e/harness.lua")

local ROOT, KLUA = H.ROOT, H.KLUA
local DRIVER = ROOT .. "/tests/e2e/chaos_driver.py"
local SECONDS = tonumber(os.getenv("CHAOS_SECONDS") or "4")
local CONVERGE = tonumber(os.getenv("CHAOS_CONVERGE") or "75")
local REPORT = os.getenv("CHAOS_REPORT")
local SEEDS = {}
for s in (os.getenv("CHAOS_SEEDS") or "1 2 3"):gmatch("%d+") do
  SEEDS[#SEEDS + 1] = tonumber(s)
end

local q, sh, read, capture, now, spawn, alive, stop, tail =
  H.q, H.sh, H.read, H.capture, H.now, H.spawn, H.alive, H.stop, H.tail

local CONTROLLER = [[
local klua = require("klua")
local function rec(kind, api)
  return function(req)
    local o = klua.cache(api, kind):get(req.namespace, req.name)
    klua.log.info("reconciled", { kind = kind, k = req.key,
      rv = o and o.metadata.resourceVersion or "absent" })
  end
end
-- hooks: the last event of every key must be its final state or a delete
local function hook(kind, what)
  return function(a, b)
    local o = what == "update" and b or a
    local ns = o.metadata.namespace
    local k = (ns and ns ~= "" and ns .. "/" or "") .. o.metadata.name
    klua.log.info("hook", { kind = kind, k = k,
      rv = what == "delete" and "deleted" or o.metadata.resourceVersion })
  end
end
klua.controller({ name = "cm", watch = { api_version = "v1", kind = "ConfigMap" },
  workers = 3, reconcile = rec("ConfigMap", "v1"),
  on_add = hook("ConfigMap", "add"), on_update = hook("ConfigMap", "update"),
  on_delete = hook("ConfigMap", "delete") })
klua.controller({ name = "wg",
  watch = { api_version = "chaos.klua.dev/v1", kind = "Widget" },
  workers = 3, reconcile = rec("Widget", "chaos.klua.dev/v1"),
  on_add = hook("Widget", "add"), on_update = hook("Widget", "update"),
  on_delete = hook("Widget", "delete") })
]]

local WG = "/apis/chaos.klua.dev/v1"
local INFORMERS = {
  {name = "cm-all", path = "/api/v1/configmaps", resource = "ConfigMap"},
  {name = "cm-a-inorder-paged", path = "/api/v1/namespaces/chaos-a/configmaps",
   in_order = true, page_size = 3},
  {name = "cm-tier-x", path = "/api/v1/configmaps", label_selector = "tier=x"},
  {name = "wg-all", path = WG .. "/widgets", api_version = "chaos.klua.dev/v1",
   kind = "Widget", resource = "Widget"},
  {name = "wg-b-watchlist", path = WG .. "/namespaces/chaos-b/widgets",
   api_version = "chaos.klua.dev/v1", kind = "Widget", watch_list = true},
  {name = "wg-tier-y-paged", path = WG .. "/widgets", api_version =
   "chaos.klua.dev/v1", kind = "Widget", label_selector = "tier=y",
   page_size = 2, in_order = true},
}

local function decode(s)
  local ok, v = pcall(core.json_decode, s)
  return ok and v or nil
end

local drain, store_state = H.drain, H.store_state

-- number of keys where a and b differ
local function diff(a, b)
  local n = 0
  for k, v in pairs(a) do if b[k] ~= v then n = n + 1 end end
  for k, _ in pairs(b) do if a[k] == nil then n = n + 1 end end
  return n
end

-- last reconciled rv per "Kind key" from the controller's log (what =
-- "reconciled"), or the last hook event ("hook": an rv or "deleted")
local function reconciled(log, what)
  local m = {}
  local tag = "lua: " .. (what or "reconciled") .. " "
  for line in (read(log) or ""):gmatch("[^\n]+") do
    if line:find(tag, 1, true) then
      local kind, k = line:match(" kind=(%S+)"), line:match(" k=(%S+)")
      local rv = line:match(" rv=(%S+)")
      if kind and k and rv then m[kind .. " " .. k] = rv end
    end
  end
  return m
end

-- The server restart fault needs `klua serve --state-file` (objects and
-- resourceVersion kept across a restart); without it the restart is skipped.
local HAVE_STATE = capture(q(KLUA) .. " serve --help 2>&1"):find("--state-file", 1, true) ~= nil

local function start_serve(dir, listen, log)
  return H.serve("--faults on --bookmark-interval 1 --kubeconfig-out " .. q(dir .. "/kc") ..
    (HAVE_STATE and (" --state-file " .. q(dir .. "/state.json")) or ""), log, { listen = listen })
end

local function run_seed(seed)
  local dir = H.tmpdir()
  local slog, rlog = dir .. "/serve.log", dir .. "/run.log"
  local spid, url = start_serve(dir, "127.0.0.1:0", slog)
  local restarts, restarted_at = 0, nil
  local rpid, infs = nil, {}
  local function cleanup()
    for _, i in ipairs(infs) do i.inf:close() end
    stop(rpid)
    stop(spid)
  end
  local ok, err = pcall(function()
    assert(url, "klua serve did not start: " .. tail(slog))
    assert(sh("python3 " .. q(DRIVER) .. " setup " .. url), "setup failed")
    local f = assert(io.open(dir .. "/ctl.lua", "w"))
    f:write(CONTROLLER)
    f:close()
    rpid = spawn(q(KLUA) .. " run " .. q(dir .. "/ctl.lua") .. " --kubeconfig " ..
      q(dir .. "/kc"), rlog)
    for _, spec in ipairs(INFORMERS) do
      local o = {server = url, backoff_initial = 0.05, backoff_max = 1,
        watch_timeout = 30}
      for k, v in pairs(spec) do
        if k ~= "resource" then o[k] = v end
      end
      local inf = assert(core.informer_new(o))
      assert(inf:start())
      assert(inf:wait_for_sync(10), spec.name .. " did not sync")
      infs[#infs + 1] = {spec = spec, inf = inf, view = {}, st = {}}
    end
    local out = dir .. "/writer.json"
    local wpid = spawn("python3 " .. q(DRIVER) .. " write " .. url .. " " .. seed ..
      " " .. SECONDS .. " " .. q(out), dir .. "/writer.log")
    local deadline = SECONDS + 60
    local t0 = now()
    while alive(wpid) do
      for _, i in ipairs(infs) do drain(i.inf, i.view, 0, i.st) end
      sh("sleep 0.05")
      if HAVE_STATE and restarts == 0 and now() - t0 > SECONDS / 2 then
        -- restart the server on the same port, state kept
        stop(spid)
        local url2
        for _ = 1, 20 do -- the port may take a moment to be free again
          spid, url2 = start_serve(dir, url:match("//(.*)"), dir .. "/serve2.log")
          if url2 then break end
          sh("sleep 0.1")
        end
        assert(url2 == url, "klua serve did not restart: " .. tail(dir .. "/serve2.log"))
        restarts, restarted_at = 1, now()
      end
      assert(now() - t0 < deadline, "writer did not finish")
    end
    local summary = decode(read(out) or "")
    assert(summary, "writer failed: " .. tail(dir .. "/writer.log"))
    assert(alive(rpid), "klua run died: " .. tail(rlog))

    -- the server's final state, per informer and for the controller
    local want = {}
    for n, i in ipairs(infs) do
      want[n] = decode(capture("python3 " .. q(DRIVER) .. " state " .. url ..
        " " .. q(i.spec.path) .. " " .. q(i.spec.label_selector or "")))
      assert(want[n], "cannot read the server's state")
    end
    local final = {}
    for n, i in ipairs(infs) do
      if i.spec.resource then
        for k, rv in pairs(want[n]) do final[i.spec.resource .. " " .. k] = rv end
      end
    end
    local converged, recovery, divergences
    local last = math.max(summary.last_fault, restarted_at or 0)
    local inf_recovery, ctl_recovery
    local limit = now() + CONVERGE
    repeat
      local d_inf, d_ctl = 0, 0
      for n, i in ipairs(infs) do
        drain(i.inf, i.view, 0, i.st)
        d_inf = d_inf + diff(store_state(i.inf), want[n]) + diff(i.view, want[n])
      end
      local rec = reconciled(rlog)
      for k, rv in pairs(final) do
        if rec[k] ~= rv then d_ctl = d_ctl + 1 end
      end
      for k, rv in pairs(rec) do
        if final[k] == nil and rv ~= "absent" then d_ctl = d_ctl + 1 end
      end
      local hooks = reconciled(rlog, "hook")
      for k, rv in pairs(final) do
        if hooks[k] ~= rv then d_ctl = d_ctl + 1 end
      end
      for k, rv in pairs(hooks) do
        if final[k] == nil and rv ~= "deleted" then d_ctl = d_ctl + 1 end
      end
      if d_inf == 0 and not inf_recovery then inf_recovery = now() - last end
      if d_ctl == 0 and not ctl_recovery then ctl_recovery = now() - last end
      divergences = d_inf + d_ctl
      if divergences == 0 then
        converged = true
        recovery = now() - last
        break
      end
      sh("sleep 0.1")
    until now() > limit

    local report = {seed = seed, operations = summary.total_operations,
      op_counts = summary.operations, faults = summary.faults,
      total_faults = summary.total_faults, divergences = divergences,
      server_restarts = restarts, restart_supported = HAVE_STATE,
      recovery_seconds = recovery and math.floor(recovery * 100) / 100,
      informers_recovery_seconds = inf_recovery and math.floor(inf_recovery * 100) / 100,
      controller_recovery_seconds = ctl_recovery and math.floor(ctl_recovery * 100) / 100,
      keys = 0, informers = {}}
    for _ in pairs(final) do report.keys = report.keys + 1 end
    for _, i in ipairs(infs) do
      local s = i.inf:stats()
      report.informers[i.spec.name] = {lists = s.lists, watches = s.watches,
        events = i.st}
    end
    local line = core.json_encode(report)
    print("# chaos " .. line)
    if REPORT then
      local rf = io.open(REPORT, "a")
      if rf then rf:write(line, "\n") rf:close() end
    end
    -- what each party still disagrees about, for the failure message
    local why = {}
    if not converged then
      for n, i in ipairs(infs) do
        why[#why + 1] = ("%s: store %d, view %d differences"):format(i.spec.name,
          diff(store_state(i.inf), want[n]), diff(i.view, want[n]))
      end
      local rec, hooks = reconciled(rlog), reconciled(rlog, "hook")
      for k, rv in pairs(final) do
        if rec[k] ~= rv then
          why[#why + 1] = ("controller: %s last reconciled at %s, final %s"):format(
            k, tostring(rec[k]), rv)
        end
        if hooks[k] ~= rv then
          why[#why + 1] = ("hooks: %s last hook event at %s, final %s"):format(
            k, tostring(hooks[k]), rv)
        end
      end
      for k, rv in pairs(hooks) do
        if final[k] == nil and rv ~= "deleted" then
          why[#why + 1] = ("hooks: %s is gone but its last hook event was at %s"):format(k, rv)
        end
      end
    end
    assert(converged, "no convergence within " .. CONVERGE .. " s after the " ..
      "writer stopped (" .. divergences .. " divergences):\n" ..
      table.concat(why, "\n") .. "\nklua run log tail:\n" .. tail(rlog, 10))
    assert(summary.total_faults >= SECONDS, "too few faults fired")
    assert(summary.total_operations >= 100, "too few operations")
    assert(alive(rpid), "klua run died")
  end)
  cleanup()
  sh("rm -rf " .. q(dir))
  assert(ok, err)
end

describe("chaos convergence", function()
  for _, seed in ipairs(SEEDS) do
    it("seed " .. seed .. ": informers and the controller converge exactly", function()
      run_seed(seed)
    end)
  end
end)
