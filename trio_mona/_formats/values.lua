-- What the conversions share (docs: lua/conversions): how a Lua table reads as a
-- value of a format (array, map, mixed, byte array, date, object view), dates, and
-- the bounds every format keeps. Run once with the real globals (`G`, taken before any
-- application runs) and the host table; returns the table the format files use.
local G, host = ...
local type, next, tostring, tonumber, error, select, setmetatable =
  G.type, G.next, G.tostring, G.tonumber, G.error, G.select, G.setmetatable
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

-- A float written so that it reads back as the same float (Lua's %.14g first: it is
-- what tostring writes, and the shortest in the usual case).
function V.float_text(v)
  if v ~= v or v == huge or v == -huge then return nil end
  local s = format("%.14g", v)
  if tonumber(s) ~= v then s = format("%.17g", v) end
  if math_type ~= nil and not find(s, "[%.eEn]") then s = s .. ".0" end
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
local raw_getmetatable = nil -- (set with the first view: the prelude holds the raw one)

function V.add_view(mt, view, getmetatable_)
  views[mt] = view
  raw_getmetatable = getmetatable_
end

function V.object_view(t)
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

-- The values a Python reader hands over (_formats/tape.py): its results are the count
-- of top values, the tape's length and its first chunk (or nil and a message).
-- Returns the values in a table and their count.
local tape, at, tape_more = nil, 1, host.tape_more

local made, made_count = {}, 0 -- the tables built so far, for a reference (code -2)

local function build() -- the table, date or reference at the mark just read
  local code = tape[at]
  at = at + 1
  if code < 0 then
    if code == -3 then -- weak keys: the table that follows
      at = at + 1
      return setmetatable(build(), { __mode = "k" })
    end
    at = at + 1
    if code == -2 then return made[tape[at - 1]] end
    local d = date(tape[at - 1]) -- (a date is a table: a reference may name it)
    made_count = made_count + 1
    made[made_count] = d
    return d
  end
  local t = {}
  made_count = made_count + 1
  made[made_count] = t
  if code % 2 == 0 then
    for i = 1, floor(code / 2) do
      local v = tape[at]
      at = at + 1
      if v ~= v then v = build() end -- (the mark: a NaN, never a value)
      t[i] = v
    end
  else
    for _ = 1, floor(code / 2) do
      local k = tape[at]
      at = at + 1
      if k ~= k then k = build() end -- (an AMF dictionary's key may be a table)
      local v = tape[at]
      at = at + 1
      if v ~= v then v = build() end
      t[k] = v
    end
  end
  return t
end

function V.values(count, total, ...)
  if count == nil then return nil, total end
  if count > V.MAX_RESULTS then
    return nil, format("%d values are more than one call returns (%d): wrap them in an array",
      count, V.MAX_RESULTS)
  end
  tape, at = { ... }, 1
  local have = select("#", ...)
  while have < total do
    local chunk = { tape_more() } -- (its first value is how many follow)
    for i = 1, chunk[1] do tape[have + i] = chunk[i + 1] end
    have = have + chunk[1]
  end
  local values = {}
  for i = 1, count do
    local v = tape[at]
    at = at + 1
    if v ~= v then v = build() end
    values[i] = v
  end
  tape = nil
  if made_count > 0 then made, made_count = {}, 0 end
  return values, count
end

-- Lua's values as a tape for a Python writer (_formats/amf_tape.py): shared and cyclic
-- tables become references. Hands the tape to `writer(count, ...)` (in chunks through
-- host.tape_push when long) and returns what it returns.
local NAN = 0 / 0
local out, n, ids, id_count
-- (64 values per call: lupa's cost per argument grows with their count; a 228k-value
-- tape took 0.99 s of Lua time in calls of 4,000, 0.14 s in calls of 64)
local tape_push, CHUNK, unpack = host.tape_push, 64, G.table.unpack or G.unpack

local function put(a, b, c)
  out[n + 1], out[n + 2], out[n + 3] = a, b, c
  n = n + (c ~= nil and 3 or b ~= nil and 2 or 1)
end

local flat

local function flat_pairs(t, skip, count, depth) -- the pairs of `t` but `skip` and 1..count
  local slot = n + 1
  n = n + 1
  local fields = 0
  for k, v in next, t do
    local kt, vt = type(k), type(v)
    if k ~= skip and (kt ~= "number" or k < 1 or k > count or k ~= floor(k))
      and vt ~= "function" and vt ~= "userdata" and vt ~= "thread" then
      flat(k, depth)
      flat(v, depth)
      fields = fields + 1
    end
  end
  out[slot] = fields
end

flat = function(v, depth)
  local vt = type(v)
  if vt ~= "table" then
    if vt == "number" and v ~= v then
      put(NAN, "n")
    elseif vt == "function" or vt == "userdata" or vt == "thread" then
      n = n + 1
      out[n] = nil
    else
      n = n + 1
      out[n] = v
    end
    return
  end
  local id = ids[v]
  if id ~= nil then return put(NAN, "r", id) end
  if depth > V.MAX_DEPTH then V.fail("tables nested deeper than %d", V.MAX_DEPTH) end
  id_count = id_count + 1
  ids[v] = id_count
  if v.__raw ~= nil then return put(NAN, "b", tostring(v.__raw)) end
  if type(v.__time) == "number" then return put(NAN, "t", v.__time) end
  if G.getmetatable(v) ~= nil then v = V.object_view(v) or v end
  depth = depth + 1
  local mt = raw_getmetatable and raw_getmetatable(v)
  local weak = mt ~= nil and type(mt.__mode) == "string" and find(mt.__mode, "k", 1, true) ~= nil
  if weak or v.__size ~= nil then -- a dictionary: `__size`, or weak keys (kept as such)
    put(NAN, "d", weak)
    return flat_pairs(v, "__size", 0, depth)
  end
  local count, fields = V.shape(v)
  local kind = v.__type
  if count == 0 and (fields or kind ~= nil) then
    put(NAN, "o", type(kind) == "string" and kind or false)
    return flat_pairs(v, "__type", 0, depth)
  end
  put(NAN, "a", count)
  for i = 1, count do flat(v[i], depth) end
  flat_pairs(v, "__type", count, depth)
end

function V.flatten(writer, count, ...)
  out, n, ids, id_count = {}, 0, {}, 0
  for i = 1, count do flat((select(i, ...)), 1) end
  local tape, size = out, n
  out, ids = nil, nil
  local at = 1
  while size - at + 1 > CHUNK do
    tape_push(unpack(tape, at, at + CHUNK - 1))
    at = at + CHUNK
  end
  return writer(count, unpack(tape, at, size))
end

-- Raises a converter's error: a message with no position (the caller names the
-- converter; docs: lua/conversions, "Errors").
function V.fail(message, ...)
  error(select("#", ...) > 0 and format(message, ...) or message, 0)
end

return V
