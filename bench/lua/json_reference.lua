-- A plain-Lua JSON codec for the conversions benchmark (bench/conversions.py): what an
-- application would use without mona:toJSON. Arrays, maps, strings, numbers,
-- booleans; no dates or byte arrays. Returns encode(value) and decode(text).
local byte, char, find, format, gsub, sub = string.byte, string.char, string.find,
  string.format, string.gsub, string.sub
local concat, tostring, tonumber, type, next = table.concat, tostring, tonumber, type, next

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function escape(c) return ESCAPES[c] or format("\\u%04x", byte(c)) end

local encode_into
local function encode_table(t, out)
  if next(t) == nil or t[1] ~= nil then
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then out[#out + 1] = "," end
      encode_into(t[i], out)
    end
    out[#out + 1] = "]"
    return
  end
  out[#out + 1] = "{"
  local first = true
  for k, v in next, t do
    if not first then out[#out + 1] = "," end
    first = false
    out[#out + 1] = '"' .. gsub(tostring(k), '[%c"\\]', escape) .. '":'
    encode_into(v, out)
  end
  out[#out + 1] = "}"
end

encode_into = function(v, out)
  local t = type(v)
  if t == "table" then return encode_table(v, out) end
  if t == "string" then
    out[#out + 1] = '"' .. gsub(v, '[%c"\\]', escape) .. '"'
  elseif t == "number" then
    out[#out + 1] = format("%.14g", v)
  else
    out[#out + 1] = tostring(v)
  end
end

local function encode(v)
  local out = {}
  encode_into(v, out)
  return concat(out)
end

local text, pos
local decode_value

local function skip() pos = select(2, find(text, "^[ \t\r\n]*", pos)) + 1 end

local UNESCAPES = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
local function unescape(c, hex)
  if c == "u" then return utf8.char(tonumber(hex, 16)) end
  return (UNESCAPES[c] or c) .. hex
end

local function decode_string()
  local stop = pos + 1
  while true do
    stop = find(text, '["\\]', stop)
    if byte(text, stop) == 34 then break end
    stop = stop + 2
  end
  local s = sub(text, pos + 1, stop - 1)
  pos = stop + 1
  if find(s, "\\", 1, true) then
    s = gsub(s, "\\(u?)(%x?%x?%x?%x?)", function(u, hex)
      if u == "u" then return unescape("u", hex) end
      return unescape(sub(hex, 1, 1), sub(hex, 2))
    end)
  end
  return s
end

decode_value = function()
  skip()
  local c = byte(text, pos)
  if c == 34 then return decode_string() end
  if c == 123 or c == 91 then
    local t, close, n = {}, c == 123 and 125 or 93, 0
    pos = pos + 1
    skip()
    if byte(text, pos) == close then
      pos = pos + 1
      return t
    end
    while true do
      if close == 125 then
        skip()
        local k = decode_string()
        skip()
        pos = pos + 1 -- ":"
        t[k] = decode_value()
      else
        n = n + 1
        t[n] = decode_value()
      end
      skip()
      c = byte(text, pos)
      pos = pos + 1
      if c == close then return t end
    end
  end
  local word = sub(text, pos, pos + 3)
  if word == "true" then pos = pos + 4 return true end
  if word == "null" then pos = pos + 4 return nil end
  if sub(text, pos, pos + 4) == "false" then pos = pos + 5 return false end
  local s, e = find(text, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  pos = e + 1
  return tonumber(sub(text, s, e))
end

local function decode(s)
  text, pos = s, 1
  return decode_value()
end

return { encode = encode, decode = decode }
