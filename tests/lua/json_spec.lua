-- json_spec.lua: klua.json and klua_core's JSON functions as script authors
-- use them: decode/encode rules, errors as values, the object cache and the
-- read-only debug mode.
local core = require("klua_core")
local json = require("klua.json")

local function rt(s)
  local v = assert(json.decode(s))
  return assert(json.encode(v))
end

describe("klua.json", function()
  describe("decode", function()
    it("maps null to json.null and keeps {} and [] apart", function()
      local v = assert(json.decode('{"a":null,"o":{},"l":[],"n":[null]}'))
      assert.equal(json.null, v.a)
      assert.is_true(json.is_null(v.a))
      assert.is_false(json.is_null(nil))
      assert.is_true(json.is_object(v.o))
      assert.is_true(json.is_array(v.l))
      assert.is_false(json.is_array(v.o))
      assert.equal(1, #v.n)
      assert.equal(core.null, v.n[1])
      assert.equal(core.object_mt, getmetatable(v))
      assert.equal(core.array_mt, getmetatable(v.l))
    end)

    it("decodes nested values, numbers and strings", function()
      local v = assert(json.decode(
        ' { "i": 42, "neg": -7, "f": 1.25, "e": 1e3, "E": -2.5E-1, "z": -0,' ..
        ' "t": true, "fa": false, "s": "x\\"y\\\\z\\/\\b\\f\\n\\r\\t",' ..
        ' "deep": [[[{"k": ["v"]}]]] } '))
      assert.equal(42, v.i)
      assert.equal(-7, v.neg)
      assert.equal(1.25, v.f)
      assert.equal(1000, v.e)
      assert.equal(-0.25, v.E)
      assert.equal(0, v.z)
      assert.is_true(v.t)
      assert.is_false(v.fa)
      assert.equal('x"y\\z/\b\f\n\r\t', v.s)
      assert.equal("v", v.deep[1][1][1].k[1])
    end)

    it("unescapes \\u escapes including surrogate pairs", function()
      assert.equal("\195\169", json.decode('"\\u00e9"'))
      assert.equal("\226\130\172", json.decode('"\\u20AC"'))
      assert.equal("\240\159\152\128", json.decode('"\\ud83d\\ude00"'))
      assert.equal("a\0b", json.decode('"a\\u0000b"'))
      -- lone surrogates become U+FFFD, as Go's encoding/json does
      assert.equal("\239\191\189x", json.decode('"\\ud83dx"'))
      assert.equal("\239\191\189", json.decode('"\\udc00"'))
      -- raw UTF-8 passes through
      assert.equal("h\195\169", json.decode('"h\195\169"'))
    end)

    it("loses precision above 2^53 (use strings for such values)", function()
      assert.equal(9007199254740991, json.decode("9007199254740991"))
      assert.equal(2 ^ 53, json.decode("9007199254740993"))
    end)

    it("returns nil, err for malformed JSON", function()
      local bad = {
        "", "{", "[1,2", '{"a":1', '{"a":1}x', "[1] [2]", '"abc', '"\\q"',
        '"\\u12"', '"\\uXYZW"', "[1,]", '{"a" 1}', "{a:1}", "01", "1.", "-",
        "nul", "True", "NaN", "[\"a\nb\"]", "'x'", "{\"a\":1,}",
      }
      for _, s in ipairs(bad) do
        local v, err = json.decode(s)
        assert.is_nil(v, s)
        assert.is_string(err, s)
        assert.truthy(err:find("^malformed JSON: "), err)
      end
      local _, err = json.decode('{"a":[1,2,x]}')
      assert.equal("malformed JSON: unexpected character at offset 10 near 'x'",
        err)
    end)

    it("rejects 100000 levels of nesting with an error, not a crash", function()
      local v, err = json.decode(string.rep("[", 100000) .. string.rep("]", 100000))
      assert.is_nil(v)
      assert.truthy(err:find("nesting too deep"), err)
      v, err = json.decode(string.rep('{"a":', 100000))
      assert.is_nil(v)
      assert.truthy(err:find("nesting too deep"), err)
      -- 200 levels are fine
      v = assert(json.decode(string.rep("[", 200) .. string.rep("]", 200)))
      assert.equal("table", type(v[1][1][1]))
    end)

    it("raises for a non-string argument (a programmer mistake)", function()
      assert.has_error(function() json.decode({}) end)
      assert.has_error(function() json.decode() end)
    end)
  end)

  describe("encode", function()
    it("round-trips what it decodes", function()
      assert.equal("null", rt("null"))
      assert.equal("{}", rt("{}"))
      assert.equal("[]", rt("[]"))
      assert.equal('[{},[],null,{"a":[]}]', rt(' [ {} , [ ] , null , {"a":[]} ] '))
      assert.equal('{"a":{"b":[1,2,{"c":null}]}}', rt('{"a":{"b":[1,2,{"c":null}]}}'))
      assert.equal('[0,-1,42,1.5,-0.25,1000,0.01,1e+300]',
        rt("[0,-1,42,1.5,-0.25,1e3,1E-2,1e300]"))
      assert.equal('"\\u0001\\u001f\\n\\"\\\\"', rt('"\\u0001\\u001f\\n\\"\\\\"'))
      assert.equal('"\240\159\152\128"', rt('"\\ud83d\\ude00"'))
      local v = assert(json.decode('{"k":"v","n":1}'))
      assert.same(v, json.decode(json.encode(v)))
    end)

    it("encodes plain tables by their keys", function()
      assert.equal("{}", json.encode({}))
      assert.equal("[1,2,3]", json.encode({1, 2, 3}))
      assert.equal('{"a":1}', json.encode({a = 1}))
      assert.equal('[1,"x",true,false,null]', json.encode({1, "x", true, false, json.null}))
      assert.equal("[]", json.encode(json.empty_array()))
      assert.equal("{}", json.encode(json.empty_object()))
      assert.equal('{"a":[]}', json.encode({a = json.array()}))
      assert.equal('[{"x":1}]', json.encode(json.array({json.object({x = 1})})))
    end)

    it("writes integers without .0 and other numbers exactly", function()
      assert.equal("[3,-3,1e+100,0.1,0.3333333333333333,9007199254740992]",
        json.encode({3.0, -3, 1e100, 0.1, 1 / 3, 2 ^ 53}))
      assert.equal(1 / 3, json.decode(json.encode(1 / 3)))
    end)

    it("escapes quotes, backslashes and control characters", function()
      assert.equal('"a\\"b\\\\c\\n\\t\\r\\u0000\\u0007\\u001f/"',
        json.encode('a"b\\c\n\t\r\0\7\31/'))
    end)

    it("holes in json.array tables become null", function()
      local a = json.array({1, 2, 3})
      a[2] = nil
      assert.equal("[1,null,3]", json.encode(a))
    end)

    it("returns nil, err for values JSON cannot hold", function()
      local cases = {
        {function() end, "cannot encode a function at top level"},
        {{a = print}, "cannot encode a function at value.a"},
        {{a = {0 / 0}}, "cannot encode NaN at value.a[1]"},
        {{1 / 0}, "cannot encode an infinite number at value[1]"},
        {{-1 / 0}, "cannot encode an infinite number at value[1]"},
        {coroutine.create(print), "cannot encode a thread"},
        {io.stdout, "cannot encode a userdata"},
        {{1, 2, x = 3}, "table mixes index keys and string keys"},
        {{[1] = "a", [3] = "c"}, "not a sequence 1..n"},
        {{[true] = 1}, "table has a boolean key"},
        {{[1.5] = 1}, "table has a number key"},
        {json.object({[1] = "a"}), "object table has a number key"},
        {json.array({x = 1}), "array table has a non-index key"},
        {json.array({[1000] = 1}), "too sparse"},
        {{["a.b"] = {f = print}}, 'at value["a.b"].f'},
      }
      for _, c in ipairs(cases) do
        local s, err = json.encode(c[1])
        assert.is_nil(s)
        assert.truthy(err:find(c[2], 1, true), err .. " / wanted: " .. c[2])
        assert.truthy(err:find("^cannot encode as JSON: "), err)
      end
    end)

    it("detects cycles but allows shared subtables", function()
      local t = {a = {}}
      t.a.back = t
      local s, err = json.encode(t)
      assert.is_nil(s)
      assert.equal("cannot encode as JSON: cycle in table at value.a.back", err)
      local arr = {}
      arr[1] = arr
      assert.is_nil(json.encode(arr))
      local shared = {1}
      assert.equal('{"x":[1],"y":[1]}',
        (json.encode({x = shared, y = shared}):gsub('"y":%[1%],"x":%[1%]',
          '"x":[1],"y":[1]')))
    end)

    it("raises when called without a value", function()
      assert.has_error(function() json.encode() end)
    end)
  end)

  describe("object/array", function()
    it("mark tables and reject non-tables", function()
      local t = {}
      assert.equal(t, json.object(t))
      assert.is_true(json.is_object(t))
      assert.is_true(json.is_array(json.array()))
      assert.has_error(function() json.object("x") end)
      assert.has_error(function() json.array(1) end)
      assert.is_false(json.is_object("x"))
      assert.is_false(json.is_array({}))
    end)
  end)

  describe("copy", function()
    it("makes a deep writable copy that keeps object/array marks", function()
      local v = assert(json.decode('{"a":[{"b":{}}],"n":null}'))
      local c = json.copy(v)
      assert.are_not.equal(v, c)
      assert.are_not.equal(v.a, c.a)
      assert.same(v, c)
      assert.is_true(json.is_array(c.a))
      assert.is_true(json.is_object(c.a[1].b))
      assert.equal(json.null, c.n)
      c.a[1].b.x = 1
      assert.is_nil(v.a[1].b.x)
      assert.equal('{"a":[{"b":{"x":1}}],"n":null}',
        (json.encode(c):gsub('^{"n":null,(.*)}$', '{%1,"n":null}')))
    end)
  end)

  describe("objects from the cache", function()
    local pod = '{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p",' ..
      '"namespace":"ns","labels":{"app":"web"}},"spec":{"containers":' ..
      '[{"name":"c","image":"nginx"}]},"status":{}}'

    after_each(function() core.set_readonly_debug(false) end)

    it("returns the same table for the same object version", function()
      local push = assert(core.json_testobj(pod))
      local a, serial = push()
      local b, serial2 = push()
      assert.equal(a, b)
      assert.equal(serial, serial2)
      assert.equal("web", a.metadata.labels.app)
      assert.is_true(json.is_object(a.status))
      -- another version of the same content is another table
      local other = assert(core.json_testobj(pod))
      local c, serial3 = other()
      assert.are_not.equal(a, c)
      assert.are_not.equal(serial, serial3)
      assert.same(a, c)
    end)

    it("counts conversions and cache hits", function()
      local push = assert(core.json_testobj(pod))
      local h0, m0 = core.json_cache_stats()
      push(); push(); push()
      local h1, m1 = core.json_cache_stats()
      assert.equal(m0 + 1, m1)
      assert.equal(h0 + 2, h1)
    end)

    it("raises on writes of new keys in read-only debug mode", function()
      core.set_readonly_debug(true)
      local push = assert(core.json_testobj(pod))
      local o = push()
      local ok, err = pcall(function() o.metadata.labels.tier = "x" end)
      assert.is_false(ok)
      assert.truthy(err:find("attempt to set field 'tier' of read-only object Pod ns/p",
        1, true), err)
      ok = pcall(function() o.spec.containers[2] = {} end)
      assert.is_false(ok)
      -- pairs, # and ipairs still work on the real table
      local n = 0
      for _ in pairs(o.metadata) do n = n + 1 end
      assert.equal(3, n)
      assert.equal(1, #o.spec.containers)
      for i, c in ipairs(o.spec.containers) do assert.equal("c", c.name) end
      -- a copy is writable
      local c = json.copy(o)
      c.metadata.labels.tier = "x"
      assert.equal("x", c.metadata.labels.tier)
      -- plain decoded JSON stays writable
      local d = json.decode('{"a":{}}')
      d.a.b = 1
      assert.equal(1, d.a.b)
    end)

    it("detects changed fields at the next push of that version", function()
      core.set_readonly_debug(true)
      local push = assert(core.json_testobj(pod))
      local o = push()
      o.metadata.labels.app = "changed" -- existing key: no metamethod fires
      local ok, err = pcall(push)
      assert.is_false(ok)
      assert.truthy(err:find("object Pod ns/p was modified in Lua", 1, true), err)
      -- the damaged table was dropped: the next push is a fresh conversion
      local fresh = push()
      assert.are_not.equal(o, fresh)
      assert.equal("web", fresh.metadata.labels.app)
      assert.equal(fresh, push())
    end)

    it("encodes pushed objects in read-only debug mode", function()
      core.set_readonly_debug(true)
      local push = assert(core.json_testobj(pod))
      local o = push()
      assert.same(json.decode(pod), json.decode(assert(json.encode(o))))
      assert.equal("{}", json.encode(o.status))
    end)

    it("does not check anything when debug mode is off", function()
      local push = assert(core.json_testobj(pod))
      local o = push()
      o.metadata.labels.tier = "x"
      assert.equal(o, push())
    end)
  end)
end)
