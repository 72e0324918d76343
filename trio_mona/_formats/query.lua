-- Query strings for mona:toQuery / mona:fromQuery (docs: lua/conversions). Run once
-- with the real globals (`G`), the host table and the shared rules
-- (_formats/values.lua); returns `encode(n, ...)` and `decode(text)`.
local G, _, V = ...
local type, next, tostring, tonumber, select =
  G.type, G.next, G.tostring, G.tonumber, G.select
local byte, char, find, format, gmatch, gsub, match =
  G.string.byte, G.string.char, G.string.find, G.string.format, G.string.gmatch,
  G.string.gsub, G.string.match
local concat = G.table.concat
local floor = G.math.floor
local fail, shape, number_text = V.fail, V.shape, V.number_text

---------------------------------------------------------------------------
-- Writing: arguments joined by "&"; a map as key=value pairs, an array as its items.
---------------------------------------------------------------------------
local function escape_char(c) return format("%%%02X", byte(c)) end

local function escaped(s)
  if find(s, "[^%w%-%._~]") == nil then return s end
  return (gsub(s, "[^%w%-%._~]", escape_char))
end

-- A value as query text (tables other than byte arrays and dates have none).
local function text_of(v, where)
  local t = type(v)
  if t == "string" then return escaped(v) end
  if t == "number" then return number_text(v, "query") end
  if t == "boolean" then return v and "true" or "false" end
  if t == "nil" then return "null" end
  if t == "table" then
    local raw = V.raw_bytes(v)
    if raw ~= nil then return escaped(raw) end
    if type(v.__time) == "number" then return escaped(V.iso_text(v.__time)) end
  end
  fail("%s %s has no query form (a query holds pairs and plain values)", t, where)
end

local function write_table(t, out, n)
  if V.raw_bytes(t) ~= nil or type(t.__time) == "number" then
    n = n + 1
    out[n] = text_of(t, "")
    return n
  end
  local count = shape(t)
  for k, v in next, t do
    local kt = type(k)
    if kt ~= "number" or k < 1 or k > count or k ~= floor(k) then
      if kt ~= "string" and kt ~= "number" and kt ~= "boolean" then
        fail("a %s cannot be a query key", kt)
      end
      local vt = type(v)
      if vt ~= "function" and vt ~= "userdata" and vt ~= "thread" then
        n = n + 1
        out[n] = escaped(tostring(k)) .. "=" .. text_of(v, "in a field")
      end
    end
  end
  for i = 1, count do
    n = n + 1
    out[n] = text_of(t[i], "in an array")
  end
  return n
end

local function encode(count, ...)
  local out, n = {}, 0
  for i = 1, count do
    local v = select(i, ...)
    if type(v) == "table" then
      n = write_table(v, out, n)
    else
      n = n + 1
      out[n] = text_of(v, "")
    end
  end
  return concat(out, "&", 1, n)
end

---------------------------------------------------------------------------
-- Reading: pairs up to a bare value make one table; a bare value is a value of its own.
---------------------------------------------------------------------------
local function hex_char(h) return char(tonumber(h, 16)) end

local function unescaped(s)
  if find(s, "[%%+]") == nil then return s end
  return (gsub(gsub(s, "+", " "), "%%(%x%x)", hex_char))
end

local LITERALS = { ["true"] = true, ["false"] = false }

-- A typed value: booleans, numbers (no leading zero: "007" stays text), null as nil.
local function typed(s)
  local literal = LITERALS[s]
  if literal ~= nil then return literal end
  if s == "null" then return nil end
  if find(s, "^%-?[1-9]%d*$") or find(s, "^%-?0$")
    or find(s, "^%-?[1-9]%d*%.%d+$") or find(s, "^%-?0%.%d+$") then
    return tonumber(s)
  end
  return unescaped(s)
end

local function decode(text)
  local values, count, current = {}, 0, nil
  for part in gmatch(text, "[^&]+") do
    local key, value = match(part, "^([^=]*)=(.*)$")
    if key ~= nil then
      if current == nil then
        current = {}
        count = count + 1
        values[count] = current
      end
      current[unescaped(key)] = typed(value)
    else
      current = nil
      count = count + 1
      values[count] = typed(part)
    end
  end
  return values, count
end

return { encode = encode, decode = decode }
