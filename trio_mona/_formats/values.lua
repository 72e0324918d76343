-- What the conversions share (docs: lua/conversions): how a Lua table reads as a
-- value of a format (array, map, mixed, byte array, date, object view), dates, and
-- the bounds every format keeps. Run once with the real globals (`G`, taken before any
-- application runs) and the host table; returns the table the format files use.
local G, host = ...
local type, next, tostring, tonumber, error, select =
  G.type, G.next, G.tostring, G.tonumber, G.error, G.select
local format, find, match, sub, byte, gsub = G.string.format, G.string.find, G.string.match,
  G.string.sub, G.string.byte, G.string.gsub
local floor, huge = G.math.floor, G.math.huge
local math_type = G.math.type -- (nil on LuaJIT: every number is a float there)
local os_date = G.os.date
local utf8_len = G.utf8 and G.utf8.len

local V = {}

-- The most values one call returns (LuaJIT's C stack takes ~8,000): a reader with more
-- top values asks for an array.
V.MAX_RESULTS = math_type ~= nil and 500000 or 7000

-- Tables nested deeper than this are refused both ways (stacks and time stay bounded);
-- the Python half of the readers keeps the same bound (_formats/tape.py).
V.MAX_DEPTH = 500

-- Whether `v` is an integral number that the format should write without a fraction.
if math_type ~= nil then
  V.is_integer = function(v) return math_type(v) == "integer" end
else
  V.is_integer = function(v) return v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 end
end

-- A float written with the fewest digits that read back as the same float (Lua's
-- %.14g first: it is what tostring writes, and enough in the usual case): 1/3 is
-- 0.3333333333333333, as Python and JavaScript write it.
function V.float_text(v)
  if v ~= v or v == huge or v == -huge then return nil end
  local s = format("%.14g", v)
  for digits = 15, 17 do
    if tonumber(s) == v then break end
    s = format("%." .. digits .. "g", v)
  end
  if math_type ~= nil and not find(s, "[%.eEn]") then s = s .. ".0" end
  return s
end

-- A number as the text formats write it (integers without a fraction); inf and nan
-- have no such form: the error names the format.
function V.number_text(v, format_name)
  if V.is_integer(v) then return format("%d", v) end
  local s = V.float_text(v)
  if s == nil then V.fail("inf and nan have no %s form", format_name) end
  return s
end

-- Whether `s` is valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
if utf8_len ~= nil then
  V.valid_utf8 = function(s) return utf8_len(s) ~= nil end
else
  V.valid_utf8 = host.valid_utf8
end

-- Lua-visible objects (addresses, sockets, File objects) as maps of their documented
-- properties: the prelude registers each class's metatable with how to view it.
local views = G.setmetatable({}, { __mode = "k" }) -- metatable -> view(object)

-- (`getmetatable_`: the raw one, which the prelude holds; kept as V.raw_getmetatable)
function V.add_view(mt, view, getmetatable_)
  views[mt] = view
  V.raw_getmetatable = getmetatable_
end

function V.object_view(t)
  local raw_getmetatable = V.raw_getmetatable
  local view = raw_getmetatable and views[raw_getmetatable(t)]
  if view == nil then return nil end
  return view(t)
end

-- The array part of a table: keys 1..n, where n is its largest positive integer key
-- if at least half of 1..n are there (a hole in it is nil; sparser, its integer keys are
-- fields: the same answer on both engines, whatever #t says). Every other key is a
-- field. Returns n and whether the table has fields.
function V.shape(t)
  local count, max, fields = 0, 0, false
  for k in next, t do
    if type(k) == "number" and k >= 1 and k == floor(k) then
      count = count + 1
      if k > max then max = k end
    else
      fields = true
    end
  end
  if max > 2 * count then return 0, true end
  return max, fields
end

local date

-- Dates: a table with `__time` (milliseconds since 1970, UTC). The ISO 8601 text is
-- what JSON and XML-RPC carry.
local function civil_days(y, m, d) -- days since 1970-01-01 of a proleptic Gregorian date
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

date = function(ms)
  ms = floor(ms)
  local t = os_date("!*t", floor(ms / 1000))
  t.msec = ms % 1000
  t.__time = ms
  t.isdst = false
  return t
end

V.date = date

function V.iso_text(ms)
  ms = floor(ms)
  return os_date("!%Y-%m-%dT%H:%M:%S", floor(ms / 1000)) .. format(".%03dZ", ms % 1000)
end

-- The milliseconds of an ISO 8601 UTC text as iso_text writes it (the fraction and
-- the zone are optional), or nil.
function V.iso_time(s)
  local y, mo, d, h, mi, sec, rest =
    match(s, "^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
  if y == nil then return nil end
  local frac, zone = match(rest, "^%.(%d+)(Z?)$")
  if frac == nil then
    if rest ~= "" and rest ~= "Z" then return nil end
    frac = "0"
  end
  mo, d, h, mi, sec = tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 60 then return nil end
  local ms = floor(tonumber(sub(frac .. "00", 1, 3)))
  local t = ((civil_days(tonumber(y), mo, d) * 24 + h) * 60 + mi) * 60 + sec
  return t * 1000 + ms
end

-- Whether a text has the date layout iso_text writes (JSON reads such strings back as
-- dates): a cheap look at fixed positions first.
function V.looks_like_date(s)
  return #s == 24 and byte(s, 11) == 84 and byte(s, 24) == 90 and V.iso_time(s) ~= nil
end

V.b64encode = host.b64encode

-- The bytes of a byte array, `{__raw = string}` (a table whose __raw is anything else is
-- a plain map).
function V.raw_bytes(t)
  local raw = t.__raw
  if type(raw) == "string" then return raw end
  return nil
end

-- A string as XML text (an attribute value, when `attribute`): & < > escaped (and " in
-- an attribute), and the line ends and tabs that a parser would change (CR always; in an
-- attribute LF and TAB too). Other control characters have no XML 1.0 form.
local XML_ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
  ["\r"] = "&#13;", ["\n"] = "&#10;", ["\t"] = "&#9;" }

function V.xml_text(s, attribute)
  if find(s, '[%c&<>"\128-\255]') == nil then return s end
  if find(s, "[\1-\8\11\12\14-\31]") or find(s, "\0", 1, true) then
    V.fail("a control character has no XML form")
  end
  if find(s, "[\128-\255]") and not V.valid_utf8(s) then V.fail("a string is not valid UTF-8") end
  return (gsub(s, attribute and '[&<>"\r\n\t]' or "[&<>\r]", XML_ESCAPES))
end

-- Raises a converter's error: a message with no position (the caller names the
-- converter; docs: lua/conversions, "Errors").
function V.fail(message, ...)
  error(select("#", ...) > 0 and format(message, ...) or message, 0)
end

return V
