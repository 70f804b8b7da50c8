-- klua.selector: Kubernetes label selectors in pure Lua.
--
--   local sel = require("klua.selector")
--   sel.build({ app = "web", tier = "db" })          --> "app=web,tier=db"
--   sel.matches("app in (web,api),!legacy", labels)  --> true / false
--   sel.from_label_selector(deploy.spec.selector)    --> "app=web,tier in (a,b)"
--   sel.parse("env!=prod")                           --> selector object, or nil, err
--   sel.canonical("b=1, a=2")                        --> "a=2,b=1"
--
-- The syntax is that of k8s.io/apimachinery/pkg/labels.Parse: requirements
-- separated by commas, each one of `key`, `!key`, `key=value`,
-- `key==value`, `key!=value`, `key in (v1,v2)`, `key notin (v1,v2)`,
-- `key>N`, `key<N`. `!=` and `notin` also match objects without the label.
-- The empty selector matches everything. Pure functions; no shared state
-- beyond a bounded parse cache.
local M = {}

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local concat, sort = table.concat, table.sort
local find, sub, byte = string.find, string.sub, string.byte

-- Label values: empty, or at most 63 characters, alphanumeric at both ends
-- with '-', '_', '.' inside.
local function valid_value(v)
  if v == "" then return true end
  if #v > 63 then return false end
  return find(v, "^[%w]$") ~= nil or find(v, "^[%w][%w%-_%.]*[%w]$") ~= nil
end

local function valid_dns_subdomain(s)
  if #s == 0 or #s > 253 then return false end
  for part in (s .. "."):gmatch("(.-)%.") do
    if part == "" or #part > 63 then return false end
    if not (find(part, "^[a-z0-9]$") or find(part, "^[a-z0-9][a-z0-9%-]*[a-z0-9]$")) then
      return false
    end
  end
  return true
end

-- Label keys: [prefix/]name where prefix is a DNS subdomain and name a
-- non-empty label value.
local function valid_key(k)
  if type(k) ~= "string" or k == "" then return false end
  local slash = find(k, "/", 1, true)
  local name = k
  if slash then
    local prefix = sub(k, 1, slash - 1)
    name = sub(k, slash + 1)
    if not valid_dns_subdomain(prefix) then return false end
  end
  return name ~= "" and valid_value(name)
end

M.valid_key = valid_key
M.valid_value = valid_value

---------------------------------------------------------------------------
-- Lexer

local SPECIAL = { ["!"] = true, ["="] = true, ["("] = true, [")"] = true,
                  [","] = true, [">"] = true, ["<"] = true }

local function lex(s)
  local toks, i, n = {}, 1, #s
  while i <= n do
    local c = sub(s, i, i)
    if c == " " or c == "\t" or c == "\n" or c == "\r" then
      i = i + 1
    elseif c == "!" and sub(s, i + 1, i + 1) == "=" then
      toks[#toks + 1] = { t = "!=" }; i = i + 2
    elseif c == "=" and sub(s, i + 1, i + 1) == "=" then
      toks[#toks + 1] = { t = "==" }; i = i + 2
    elseif SPECIAL[c] then
      toks[#toks + 1] = { t = c }; i = i + 1
    else
      local j = i
      while j <= n do
        local d = sub(s, j, j)
        if SPECIAL[d] or d == " " or d == "\t" or d == "\n" or d == "\r" then break end
        j = j + 1
      end
      local word = sub(s, i, j - 1)
      if word == "in" or word == "notin" then
        toks[#toks + 1] = { t = word, v = word }
      else
        toks[#toks + 1] = { t = "id", v = word }
      end
      i = j
    end
  end
  toks[#toks + 1] = { t = "eof" }
  return toks
end

---------------------------------------------------------------------------
-- Requirements: { key = k, op = "exists"|"!"|"="|"!="|"in"|"notin"|">"|"<",
--                 values = { ... } (sorted, unique) }

local selector_mt = {}
selector_mt.__index = selector_mt

local function render_req(r)
  local op = r.op
  if op == "exists" then return r.key end
  if op == "!" then return "!" .. r.key end
  if op == "in" or op == "notin" then
    return r.key .. " " .. op .. " (" .. concat(r.values, ",") .. ")"
  end
  return r.key .. op .. r.values[1]
end

local function finish(reqs)
  for _, r in ipairs(reqs) do
    r.text = render_req(r)
  end
  sort(reqs, function(a, b)
    if a.key ~= b.key then return a.key < b.key end
    return a.text < b.text
  end)
  local parts = {}
  for i, r in ipairs(reqs) do parts[i] = r.text end
  return setmetatable({ requirements = reqs, text = concat(parts, ",") }, selector_mt)
end

local function new_req(key, op, values)
  if not valid_key(key) then
    return nil, "invalid label key " .. string.format("%q", tostring(key))
  end
  local set, list = {}, {}
  for _, v in ipairs(values or {}) do
    if type(v) ~= "string" then
      return nil, "label value for key '" .. key .. "' must be a string, got " .. type(v)
    end
    if not valid_value(v) then
      return nil, "invalid label value " .. string.format("%q", v) .. " for key '" .. key .. "'"
    end
    if not set[v] then set[v] = true; list[#list + 1] = v end
  end
  sort(list)
  if (op == "in" or op == "notin") and #list == 0 then
    return nil, "'" .. op .. "' for key '" .. key .. "' needs at least one value"
  end
  if (op == "=" or op == "!=") and #list ~= 1 then
    return nil, "'" .. op .. "' for key '" .. key .. "' needs exactly one value"
  end
  if op == ">" or op == "<" then
    if #list ~= 1 or not find(list[1], "^%-?%d+$") then
      return nil, "'" .. op .. "' for key '" .. key .. "' needs one integer value"
    end
  end
  if (op == "exists" or op == "!") and #list ~= 0 then
    return nil, "'" .. op .. "' for key '" .. key .. "' takes no values"
  end
  return { key = key, op = op, values = list, set = set }
end

local function parse(s)
  if type(s) ~= "string" then
    return nil, "label selector must be a string, got " .. type(s)
  end
  local toks = lex(s)
  local pos = 1
  local function peek() return toks[pos] end
  local function take() pos = pos + 1; return toks[pos - 1] end
  local reqs = {}
  if peek().t == "eof" then return finish(reqs) end
  while true do
    local t = take()
    local r, err
    if t.t == "!" then
      local k = take()
      if k.t ~= "id" then return nil, "expected a label key after '!' in " .. string.format("%q", s) end
      r, err = new_req(k.v, "!")
    elseif t.t == "id" then
      local key = t.v
      local op = peek()
      if op.t == "," or op.t == "eof" then
        r, err = new_req(key, "exists")
      elseif op.t == "=" or op.t == "==" or op.t == "!=" or op.t == ">" or op.t == "<" then
        take()
        local v = peek()
        local value = ""
        if v.t == "id" then take(); value = v.v
        elseif v.t == "in" or v.t == "notin" then take(); value = v.v
        elseif v.t ~= "," and v.t ~= "eof" then
          return nil, "expected a value after '" .. op.t .. "' for key '" .. key .. "' in " .. string.format("%q", s)
        end
        local o = (op.t == "==") and "=" or op.t
        r, err = new_req(key, o, { value })
      elseif op.t == "in" or op.t == "notin" then
        take()
        if take().t ~= "(" then
          return nil, "expected '(' after '" .. op.t .. "' for key '" .. key .. "' in " .. string.format("%q", s)
        end
        local values = {}
        if peek().t == ")" then
          take()
        else
          while true do
            local v = take()
            if v.t == "id" or v.t == "in" or v.t == "notin" then
              values[#values + 1] = v.v
              v = take()
            elseif v.t == "," or v.t == ")" then
              values[#values + 1] = "" -- empty value, as in k8s
            else
              return nil, "expected a value in the list for key '" .. key .. "' in " .. string.format("%q", s)
            end
            if v.t == ")" then break end
            if v.t ~= "," then
              return nil, "expected ',' or ')' in the list for key '" .. key .. "' in " .. string.format("%q", s)
            end
          end
        end
        r, err = new_req(key, op.t, values)
      else
        return nil, "unexpected '" .. (op.v or op.t) .. "' after key '" .. key .. "' in " .. string.format("%q", s)
      end
    else
      return nil, "expected a label key in " .. string.format("%q", s)
    end
    if not r then return nil, err .. " in selector " .. string.format("%q", s) end
    reqs[#reqs + 1] = r
    local sep = take()
    if sep.t == "eof" then break end
    if sep.t ~= "," then
      return nil, "expected ',' between requirements in " .. string.format("%q", s)
    end
  end
  return finish(reqs)
end

-- A small cache of parsed selectors: selectors are usually literals.
local cache, cache_n = {}, 0

-- parse(s) -> selector object (fields: text, requirements), or nil, err.
function M.parse(s)
  local c = cache[s]
  if c then return c end
  local sel, err = parse(s)
  if not sel then return nil, err end
  if cache_n >= 256 then cache, cache_n = {}, 0 end
  cache[s] = sel
  cache_n = cache_n + 1
  return sel
end

-- canonical(s) -> the selector with requirements sorted by key, `==` written
-- `=`, list values sorted and deduplicated, no spaces except around in/notin;
-- or nil, err. Two selectors with the same canonical text select the same
-- objects.
function M.canonical(s)
  local sel, err = M.parse(s)
  if not sel then return nil, err end
  return sel.text
end

local function label_of(labels, key)
  if type(labels) ~= "table" then return nil end -- nil, or null from klua_core
  local v = labels[key]
  if type(v) ~= "string" then return nil end
  return v
end

local function req_matches(r, labels)
  local v = label_of(labels, r.key)
  local op = r.op
  if op == "exists" then return v ~= nil end
  if op == "!" then return v == nil end
  if op == "=" or op == "in" then return v ~= nil and r.set[v] == true end
  if op == "!=" or op == "notin" then return v == nil or r.set[v] == nil end
  if v == nil or not find(v, "^%-?%d+$") then return false end
  local n, want = tonumber(v), tonumber(r.values[1])
  if op == ">" then return n > want end
  return n < want
end

function selector_mt:matches(labels)
  for _, r in ipairs(self.requirements) do
    if not req_matches(r, labels) then return false end
  end
  return true
end

function selector_mt:empty()
  return #self.requirements == 0
end

selector_mt.__tostring = function(self) return self.text end

-- build(labels) -> "k1=v1,k2=v2" with keys sorted. Raises on keys or values
-- that are not valid label keys/values (a programmer mistake).
function M.build(labels)
  if type(labels) ~= "table" then
    error("klua.selector.build: expected a table of labels, got " .. type(labels), 2)
  end
  local keys = {}
  for k, v in pairs(labels) do
    if not valid_key(k) then
      error("klua.selector.build: invalid label key " .. string.format("%q", tostring(k)), 2)
    end
    if type(v) ~= "string" or not valid_value(v) then
      error("klua.selector.build: invalid value for label '" .. k .. "': " ..
        (type(v) == "string" and string.format("%q", v) or type(v)), 2)
    end
    keys[#keys + 1] = k
  end
  sort(keys)
  for i, k in ipairs(keys) do keys[i] = k .. "=" .. labels[k] end
  return concat(keys, ",")
end

-- to_selector(s) accepts a selector string, a parsed selector, or a table of
-- labels (equality on each); returns a selector object or nil, err.
function M.to_selector(s)
  if getmetatable(s) == selector_mt then return s end
  if type(s) == "table" then
    local ok, text = pcall(M.build, s)
    if not ok then return nil, (tostring(text):gsub("^[^:]*:%d+: ", "")) end
    return M.parse(text)
  end
  return M.parse(s)
end

-- matches(selector, labels) -> boolean. selector is a string, a parsed
-- selector or a table of labels; labels may be nil (no labels). Raises on an
-- invalid selector (selectors are normally literals: a programmer mistake).
function M.matches(selector, labels)
  local sel, err = M.to_selector(selector)
  if not sel then error("klua.selector.matches: " .. err, 2) end
  return sel:matches(labels)
end

local EXPR_OPS = { In = "in", NotIn = "notin", Exists = "exists", DoesNotExist = "!" }

-- from_label_selector(ls) converts a metav1.LabelSelector table
-- ({ matchLabels = {...}, matchExpressions = { { key, operator, values } } })
-- to a selector string. An empty LabelSelector gives "" (everything). A nil
-- (or JSON null) LabelSelector matches nothing in Kubernetes, which no
-- selector string can express: it returns nil, err, as does an invalid one.
function M.from_label_selector(ls)
  local shared = package.loaded["klua._shared"]
  if type(ls) ~= "table" or (shared and ls == shared.null) then
    return nil, "no label selector (a nil LabelSelector selects no objects)"
  end
  local reqs = {}
  if type(ls.matchLabels) == "table" then
    for k, v in pairs(ls.matchLabels) do
      local r, err = new_req(k, "=", { v })
      if not r then return nil, "matchLabels: " .. err end
      reqs[#reqs + 1] = r
    end
  end
  if type(ls.matchExpressions) == "table" then
    for i, e in ipairs(ls.matchExpressions) do
      if type(e) ~= "table" then return nil, "matchExpressions[" .. i .. "] is not an object" end
      local op = EXPR_OPS[e.operator]
      if not op then
        return nil, "matchExpressions[" .. i .. "]: invalid operator " .. string.format("%q", tostring(e.operator))
      end
      local values = type(e.values) == "table" and e.values or {}
      local r, err = new_req(e.key, op, values)
      if not r then return nil, "matchExpressions[" .. i .. "]: " .. err end
      reqs[#reqs + 1] = r
    end
  end
  return finish(reqs).text
end

M._selector_mt = selector_mt

return M
