-- metrics_spec.lua: script-defined metrics (klua_core.metrics_counter,
-- metrics_gauge, metrics_histogram) as controller scripts use them, checked
-- through the /metrics text the process serves (klua_core.metrics_expose).
local core = require("klua_core")

local function line(text, prefix)
  for l in text:gmatch("[^\n]+") do
    if l:sub(1, #prefix) == prefix then return l end
  end
end

describe("script metrics", function()
  it("counts with labels and shows HELP/TYPE lines", function()
    local c = assert(core.metrics_counter("spec_widgets_total", "Widgets made.", { "kind", "ns" }))
    c:inc({ kind = "a", ns = "default" })
    c:inc({ kind = "a", ns = "default" }, 2)
    c:inc({ kind = "b" }) -- a missing label is ""
    local t = core.metrics_expose()
    assert.truthy(t:find("# HELP spec_widgets_total Widgets made.\n# TYPE spec_widgets_total counter\n", 1, true))
    assert.equal('spec_widgets_total{kind="a",ns="default"} 3', line(t, 'spec_widgets_total{kind="a"'))
    assert.equal('spec_widgets_total{kind="b",ns=""} 1', line(t, 'spec_widgets_total{kind="b"'))
    assert.equal(3, c:value({ kind = "a", ns = "default" }))
  end)

  it("escapes label values and accepts numbers and booleans", function()
    local c = assert(core.metrics_counter("spec_escape_total", "E.", { "v" }))
    c:inc({ v = 'say "hi"\\\n' })
    c:inc({ v = 42 })
    c:inc({ v = true })
    local t = core.metrics_expose()
    assert.truthy(t:find('spec_escape_total{v="say \\"hi\\"\\\\\\n"} 1\n', 1, true))
    assert.truthy(t:find('spec_escape_total{v="42"} 1\n', 1, true))
    assert.truthy(t:find('spec_escape_total{v="true"} 1\n', 1, true))
  end)

  it("defining the same metric again returns the same values", function()
    local a = assert(core.metrics_counter("spec_same_total", "S.", { "x" }))
    a:inc({ x = "1" })
    local b = assert(core.metrics_counter("spec_same_total", "S.", { "x" }))
    b:inc({ x = "1" })
    assert.equal(2, a:value({ x = "1" }))
  end)

  it("conflicting or invalid definitions return nil and an error", function()
    assert(core.metrics_counter("spec_conflict", "C.", { "x" }))
    local m, err = core.metrics_gauge("spec_conflict", "C.", { "x" })
    assert.is_nil(m)
    assert.truthy(err:find("spec_conflict", 1, true))
    m, err = core.metrics_counter("bad-name", "B.")
    assert.is_nil(m)
    assert.truthy(err:find("bad-name", 1, true))
    m, err = core.metrics_histogram("spec_bad_buckets", "B.", nil, { 2, 1 })
    assert.is_nil(m)
    assert.truthy(err:find("increasing", 1, true))
  end)

  it("gauges set, add, inc and dec; without labels too", function()
    local g = assert(core.metrics_gauge("spec_queue_len", "Q."))
    g:set(5)
    g:add(-2)
    g:inc()
    g:dec(2)
    assert.equal(2, g:value())
    assert.equal("spec_queue_len 2", line(core.metrics_expose(), "spec_queue_len "))
    local lg = assert(core.metrics_gauge("spec_temp", "T.", { "room" }))
    lg:set({ room = "a" }, 21.5)
    assert.equal(21.5, lg:value({ room = "a" }))
  end)

  it("histograms observe into cumulative buckets", function()
    local h = assert(core.metrics_histogram("spec_op_seconds", "Op.", { "op" }, { 0.1, 1 }))
    h:observe({ op = "sync" }, 0.05)
    h:observe({ op = "sync" }, 0.5)
    h:observe({ op = "sync" }, 5)
    local t = core.metrics_expose()
    assert.truthy(t:find([[
# TYPE spec_op_seconds histogram
spec_op_seconds_bucket{op="sync",le="0.1"} 1
spec_op_seconds_bucket{op="sync",le="1"} 2
spec_op_seconds_bucket{op="sync",le="+Inf"} 3
spec_op_seconds_sum{op="sync"} 5.55
spec_op_seconds_count{op="sync"} 3
]], 1, true))
    assert.equal(3, h:count({ op = "sync" }))
  end)

  it("programmer mistakes raise errors", function()
    local c = assert(core.metrics_counter("spec_mistakes_total", "M.", { "a" }))
    assert.has_error(function() c:inc({ b = "x" }) end)
    assert.has_error(function() c:inc({ a = "x" }, -1) end)
    assert.has_error(function() c:set({ a = "x" }, 1) end)
    assert.has_error(function() c:observe({ a = "x" }, 1) end)
    assert.has_error(function() c:inc("notatable") end)
    local g = assert(core.metrics_gauge("spec_mistakes_g", "G."))
    assert.has_error(function() g:observe(1) end)
  end)

  it("the runtime's standard metrics are in the same registry", function()
    local bad, err = core.metrics_counter("klua_reloads_total", "R.", { "other" })
    assert.is_nil(bad)
    assert.truthy(err:find("already registered", 1, true))
    local r = assert(core.metrics_counter("klua_reloads_total",
      "Number of script reloads, by result", { "result" }))
    r:inc({ result = "success" })
    assert.truthy(core.metrics_expose():find('klua_reloads_total{result="success"}', 1, true))
  end)
end)
