-- The tapes that carry values between Lua and the Python readers and writers
-- (_formats/tape.py, _formats/amf_tape.py): one crossing per document, or per chunk,
-- instead of one per element (docs: lua/conversions, "Speed"). Run once with the real
-- globals (`G`), the host table and the shared rules (_formats/values.lua), to which it
-- adds `V.values` (a Python reader's tape into Lua values) and `V.flatten` (Lua values
-- into a tape for a Python writer).
local G, host, V = ...
local type, next, tostring, select, setmetatable =
  G.type, G.next, G.tostring, G.select, G.setmetatable
local find, format = G.string.find, G.string.format
local floor = G.math.floor
local date = V.date

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
  local raw = V.raw_bytes(v)
  if raw ~= nil then return put(NAN, "b", raw) end
  if type(v.__time) == "number" then return put(NAN, "t", v.__time) end
  if G.getmetatable(v) ~= nil then v = V.object_view(v) or v end
  depth = depth + 1
  local raw_getmetatable = V.raw_getmetatable
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

local function flat_all(count, ...)
  for i = 1, count do flat((select(i, ...)), 1) end
end

function V.flatten(writer, count, ...)
  -- (a table's __index may convert another value meanwhile: its walk has its own state)
  local outer_out, outer_n, outer_ids, outer_count = out, n, ids, id_count
  out, n, ids, id_count = {}, 0, {}, 0
  local ok, err = G.pcall(flat_all, count, ...)
  local tape, size = out, n
  out, n, ids, id_count = outer_out, outer_n, outer_ids, outer_count
  if not ok then G.error(err, 0) end
  local at = 1
  while size - at + 1 > CHUNK do
    tape_push(unpack(tape, at, at + CHUNK - 1))
    at = at + CHUNK
  end
  return writer(count, unpack(tape, at, size))
end

-- The `decode` of a format whose reader is Python's `read(data)` (results as V.values
-- takes them): the values in a table and their count, or the reader's error raised.
function V.reader(read)
  return function(data)
    local values, count = V.values(read(data))
    if values == nil then V.fail(count) end
    return values, count
  end
end

