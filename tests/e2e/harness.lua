-- Shared helpers of the end-to-end specs (tests/e2e/*_spec.lua): shell and
-- file helpers, background processes, `klua serve` on a free port, HTTP
-- through curl. Loaded by path, so that a spec runs with any LUA_PATH:
-- `local H = dofile((os.getenv("KLUA_ROOT") or ".") .. "/tests/e2e/harness.lua")`.
-- Single-threaded, like busted itself.
-- Environment (set by scripts/run-tests.sh): KLUA_BIN, KLUA_ROOT.
local H = {}

H.ROOT = os.getenv("KLUA_ROOT") or "."
H.KLUA = os.getenv("KLUA_BIN") or (H.ROOT .. "/build/klua")

-- s quoted for /bin/sh
function H.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local q = H.q

-- Runs cmd through /bin/sh; true when it exited 0.
function H.sh(cmd)
  local a, _, c = os.execute(cmd)
  return a == true or a == 0 or (a == nil and c == 0)
end
local sh = H.sh

-- The whole file, or nil when it cannot be opened.
function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function H.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- cmd's standard output
function H.capture(cmd)
  local p = io.popen(cmd)
  local s = p:read("*a")
  p:close()
  return s
end

function H.sleep(s) sh("sleep " .. s) end

-- wall-clock seconds with sub-second precision
function H.now() return tonumber(H.capture("date +%s.%N")) end

-- A new temporary directory; the caller removes it (H.rmdir).
function H.tmpdir() return (H.capture("mktemp -d"):gsub("%s+$", "")) end

function H.rmdir(dir) if dir then sh("rm -rf " .. q(dir)) end end

-- Starts cmd in the background, stdout and stderr to log; returns its pid.
-- /bin/sh runs a lone command in the subshell's own process, so the pid is
-- the command's; a compound cmd ("a; b") gets the subshell's pid.
function H.spawn(cmd, log)
  local p = io.popen("( " .. cmd .. " ) >" .. q(log) .. " 2>&1 & echo $!")
  local pid = tonumber(p:read("*l"))
  p:close()
  assert(pid, "could not start: " .. cmd)
  return pid
end

function H.alive(pid) return sh("kill -0 " .. pid .. " 2>/dev/null") end

-- SIGTERM, then SIGKILL if the process is still there after `seconds`
-- (default 5). Returns true when it ended (or was gone) before the SIGKILL.
function H.stop(pid, seconds)
  if not pid or not H.alive(pid) then return true end
  sh("kill -TERM " .. pid .. " 2>/dev/null")
  for _ = 1, math.floor((seconds or 5) * 10 + 0.5) do
    if not H.alive(pid) then return true end
    H.sleep(0.1)
  end
  sh("kill -KILL " .. pid .. " 2>/dev/null")
  return false
end

-- The last n (default 20) non-empty lines of a file.
function H.tail(path, n)
  local lines = {}
  for l in (H.read(path) or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
  return table.concat(lines, "\n", math.max(1, #lines - (n or 20) + 1))
end

-- Starts `klua serve --listen LISTEN ARGS` (opts.listen, default
-- 127.0.0.1:0) with its output in log and waits up to 5 s for its
-- "listening on URL" line and, with opts.kubeconfig, for that file. Returns
-- pid, url; url is nil when the server did not start or exited.
function H.serve(args, log, opts)
  opts = opts or {}
  local pid = H.spawn(q(H.KLUA) .. " serve --listen " .. (opts.listen or "127.0.0.1:0") ..
    " " .. (args or ""), log)
  local url
  for _ = 1, 100 do
    url = (H.read(log) or ""):match("listening on (http://[%d%.:]+)")
    if url and (not opts.kubeconfig or H.read(opts.kubeconfig)) then break end
    if not H.alive(pid) then break end
    H.sleep(0.05)
  end
  return pid, url
end

-- HTTP through curl against c.url, with request and response bodies in
-- files under c.dir (c.n numbers them). body: a string or a table (sent as
-- JSON). Returns the status code (the curl error text when there is none)
-- and the decoded JSON answer, or its raw text when it is not JSON.
function H.request(c, method, path, body, ctype)
  local json = require("klua.json")
  c.n = (c.n or 0) + 1
  local out = c.dir .. "/resp" .. c.n
  local cmd = "curl -sS -o " .. q(out) .. " -w '%{http_code}' -X " .. method
  if body ~= nil then
    local f = c.dir .. "/req" .. c.n
    H.write(f, type(body) == "string" and body or assert(json.encode(body)))
    cmd = cmd .. " -H " .. q("Content-Type: " .. (ctype or "application/json")) .. " --data-binary @" .. q(f)
  end
  local code = H.capture(cmd .. " " .. q(c.url .. path) .. " 2>&1")
  local text = H.read(out) or ""
  os.remove(out)
  local v = json.decode(text)
  return tonumber(code) or code, v == nil and text or v
end

-- Polls fn every 0.1 s until it returns a truthy value, which it returns;
-- errors ("timed out waiting for WHAT: last value") after `seconds`
-- (default 10). Errors raised by fn count as a falsy answer.
function H.eventually(fn, what, seconds)
  local deadline = os.time() + (seconds or 10)
  local last
  repeat
    local ok, v = pcall(fn)
    if ok and v then return v end
    last = v
    H.sleep(0.1)
  until os.time() > deadline
  error("timed out waiting for " .. what .. (last and (": " .. tostring(last)) or ""), 2)
end

-- Informers (klua_core.informer_new)

-- Reads the events src has (waiting up to timeout seconds, default 0, for
-- each) into view: key -> resourceVersion, a delete removes the key. With
-- stats, counts them per type and counts tombstones. Returns how many.
function H.drain(src, view, timeout, stats)
  local n = 0
  while true do
    local ev = src:next_event(timeout or 0)
    if not ev then return n end
    n = n + 1
    if stats then stats[ev.type] = (stats[ev.type] or 0) + 1 end
    if ev.type == "delete" then
      if ev.tombstone and stats then stats.tombstones = (stats.tombstones or 0) + 1 end
      view[ev.key] = nil
    else
      view[ev.key] = ev.obj.metadata.resourceVersion
    end
  end
end

-- The informer's store as key ("ns/name", or "name") -> resourceVersion.
function H.store_state(inf)
  local m = {}
  for _, o in ipairs(inf:list()) do
    local ns = o.metadata.namespace
    m[(ns and ns ~= "" and ns .. "/" or "") .. o.metadata.name] =
      o.metadata.resourceVersion
  end
  return m
end

return H
