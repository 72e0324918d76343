-- JSON for mona:toJSON / mona:fromJSON (docs: lua/conversions). Run once with the
-- real globals (`G`), the host table and the shared rules (_formats/values.lua);
-- returns `encode(n, ...)` (a string) and `decode(text)` (the values in a table, and
-- their count).
local G, host, V = ...
local type, next, tostring, select, getmetatable =
  G.type, G.next, G.tostring, G.select, G.getmetatable
local char, find, format, gsub = G.string.char, G.string.find, G.string.format, G.string.gsub
local concat = G.table.concat
local floor = G.math.floor
local fail, shape, is_integer, float_text, valid_utf8 =
  V.fail, V.shape, V.is_integer, V.float_text, V.valid_utf8
local MAX_DEPTH = V.MAX_DEPTH

---------------------------------------------------------------------------
-- Writing
---------------------------------------------------------------------------
local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
for i = 0, 31 do
  local c = char(i)
  if ESCAPES[c] == nil then ESCAPES[c] = format("\\u%04x", i) end
end

-- Appends a JSON string to `out` (at n) and returns the new n.
local function write_string(s, out, n)
  if find(s, '[%c"\\\128-\255]') ~= nil then
    if find(s, "[\128-\255]") ~= nil and not valid_utf8(s) then
      fail("a string is not valid UTF-8 (binary data goes in a byte array: {__raw=...})")
    end
    s = gsub(s, '[%c"\\]', ESCAPES)
  end
  out[n + 1] = '"' .. s .. '"'
  return n + 1
end

local function write_number(v, out, n)
  -- (table.concat writes numbers itself, as %.14g but for Lua 5.4's integers: exact for
  -- integers below 1e14 and for a few binary fractions such as 98.5)
  if is_integer(v) then
    if v >= 1e14 or v <= -1e14 then v = format("%d", v) end
  elseif v * 1024 ~= floor(v * 1024) or v >= 1e4 or v <= -1e4 then
    v = float_text(v)
    if v == nil then fail("inf and nan have no JSON form") end
  end
  out[n + 1] = v
  return n + 1
end

-- Field names as written ('"name":'), kept: a program writes the same names again and
-- again (at most 10,000 names of at most 64 bytes; measured with callgrind, 428k -> 347k
-- instructions per toJSON of bench/conversions.py's message).
local names, name_count, name_out = {}, 0, {}

local write_value

local function write_table(t, out, n, depth, seen)
  if seen[t] then fail("a table contains itself (JSON has no references)") end
  if depth > MAX_DEPTH then fail("tables nested deeper than %d", MAX_DEPTH) end
  local raw = V.raw_bytes(t)
  if raw ~= nil then
    out[n + 1], out[n + 2], out[n + 3] = '{"__raw":"', V.b64encode(raw), '"}'
    return n + 3
  end
  local time = t.__time
  if type(time) == "number" then
    out[n + 1], out[n + 2], out[n + 3] = '"', V.iso_text(time), '"'
    return n + 3
  end
  if getmetatable(t) ~= nil then -- (a Lua-visible object is a map of its properties)
    local view = V.object_view(t)
    if view ~= nil then t = view end
  end
  seen[t] = true
  depth = depth + 1
  local count, fields = shape(t)
  if fields then
    n = n + 1
    out[n] = count > 0 and "[{" or "{"
    local first = true
    for k, v in next, t do
      local kt, vt = type(k), type(v)
      if (kt ~= "number" or k < 1 or k > count or k ~= floor(k))
        and vt ~= "function" and vt ~= "userdata" and vt ~= "thread" then
        if not first then
          n = n + 1
          out[n] = ","
        end
        first = false
        local name = names[k]
        if name == nil then
          if kt == "string" then
            name = write_string(k, name_out, 0) and name_out[1] .. ":"
          elseif kt == "number" or kt == "boolean" then
            name = '"' .. tostring(k) .. '":'
          else
            fail("a %s cannot be a JSON field name", kt)
          end
          if name_count < 10000 and #name <= 66 then
            name_count = name_count + 1
            names[k] = name
          end
        end
        n = n + 1
        out[n] = name
        n = write_value(v, out, n, depth, seen)
      end
    end
    n = n + 1
    out[n] = "}"
    for i = 1, count do
      n = n + 1
      out[n] = ","
      n = write_value(t[i], out, n, depth, seen)
    end
    if count > 0 then
      n = n + 1
      out[n] = "]"
    end
  else
    n = n + 1
    out[n] = "["
    for i = 1, count do
      if i > 1 then
        n = n + 1
        out[n] = ","
      end
      n = write_value(t[i], out, n, depth, seen)
    end
    n = n + 1
    out[n] = "]"
  end
  seen[t] = nil
  return n
end

write_value = function(v, out, n, depth, seen)
  local vt = type(v)
  if vt == "string" then return write_string(v, out, n) end
  if vt == "number" then return write_number(v, out, n) end
  if vt == "table" then return write_table(v, out, n, depth, seen) end
  n = n + 1
  if vt == "boolean" then
    out[n] = v and "true" or "false"
  else
    out[n] = "null" -- (nil, and what JSON cannot hold in an array: functions, userdata, threads)
  end
  return n
end

local function encode(count, ...)
  local out, n, seen = { "[" }, 1, {}
  for i = 1, count do
    if i > 1 then
      n = n + 1
      out[n] = ","
    end
    n = write_value((select(i, ...)), out, n, 1, seen)
  end
  n = n + 1
  out[n] = "]"
  return concat(out, "", 1, n)
end

-- Reading is Python's parser (_formats/json.py), its values handed over as a tape.
local decode = V.reader(host.json_read)

return { encode = encode, decode = decode }
