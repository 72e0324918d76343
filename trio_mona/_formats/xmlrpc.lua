-- XML-RPC for mona:toXMLRPC / mona:fromXMLRPC (docs: lua/conversions): the values are
-- the params of a methodResponse. Run once with the real globals (`G`), the host table
-- and the shared rules (_formats/values.lua); returns `encode(n, ...)` and
-- `decode(text)`.
local G, host, V = ...
local type, next, tostring, select = G.type, G.next, G.tostring, G.select
local concat = G.table.concat
local floor = G.math.floor
local fail, shape, is_integer, number_text, MAX_DEPTH =
  V.fail, V.shape, V.is_integer, V.number_text, V.MAX_DEPTH

local xml_text = V.xml_text

local function escaped(s) return xml_text(s, false) end

local write_value

local function write_struct(t, count, out, n, depth, seen)
  local kind = t.__type
  n = n + 1
  out[n] = type(kind) == "string" and '<struct type="' .. xml_text(kind, true) .. '">' or "<struct>"
  for k, v in next, t do
    local kt, vt = type(k), type(v)
    if (kt ~= "number" or k < 1 or k > count or k ~= floor(k)) and k ~= "__type"
      and vt ~= "function" and vt ~= "userdata" and vt ~= "thread" then
      if kt ~= "string" and kt ~= "number" and kt ~= "boolean" then
        fail("a %s cannot be a member name", kt)
      end
      n = n + 1
      out[n] = "<member><name>" .. escaped(tostring(k)) .. "</name>"
      n = write_value(v, out, n, depth, seen)
      n = n + 1
      out[n] = "</member>"
    end
  end
  n = n + 1
  out[n] = "</struct>"
  return n
end

local function write_table(t, out, n, depth, seen)
  if seen[t] then fail("a table contains itself (XML-RPC has no references)") end
  if depth > MAX_DEPTH then fail("tables nested deeper than %d", MAX_DEPTH) end
  local raw = V.raw_bytes(t)
  if raw ~= nil then
    n = n + 1
    out[n] = "<base64>" .. V.b64encode(raw) .. "</base64>"
    return n
  end
  if type(t.__time) == "number" then
    n = n + 1
    out[n] = "<dateTime.iso8601>" .. V.iso_text(t.__time) .. "</dateTime.iso8601>"
    return n
  end
  if G.getmetatable(t) ~= nil then
    local view = V.object_view(t)
    if view ~= nil then t = view end
  end
  seen[t] = true
  depth = depth + 1
  local count, fields = shape(t)
  if t.__type ~= nil then fields = true end
  if fields and count == 0 then
    n = write_struct(t, 0, out, n, depth, seen)
  else
    n = n + 1
    out[n] = "<array><data>"
    if fields then -- mixed: the struct of the fields first
      n = n + 1
      out[n] = "<value>"
      n = write_struct(t, count, out, n, depth, seen)
      n = n + 1
      out[n] = "</value>"
    end
    for i = 1, count do n = write_value(t[i], out, n, depth, seen) end
    n = n + 1
    out[n] = "</data></array>"
  end
  seen[t] = nil
  return n
end

write_value = function(v, out, n, depth, seen)
  local vt = type(v)
  n = n + 1
  out[n] = "<value>"
  n = n + 1
  if vt == "string" then
    out[n] = "<string>" .. escaped(v) .. "</string>"
  elseif vt == "number" then
    local text = number_text(v, "XML-RPC")
    out[n] = is_integer(v) and "<int>" .. text .. "</int>" or "<double>" .. text .. "</double>"
  elseif vt == "boolean" then
    out[n] = v and "<boolean>1</boolean>" or "<boolean>0</boolean>"
  elseif vt == "table" then
    n = write_table(v, out, n - 1, depth, seen)
  else
    out[n] = "<nil/>" -- (nil, and what XML-RPC cannot hold)
  end
  n = n + 1
  out[n] = "</value>"
  return n
end

local function encode(count, ...)
  local out, n, seen = { '<?xml version="1.0"?><methodResponse><params>' }, 1, {}
  for i = 1, count do
    n = n + 1
    out[n] = "<param>"
    n = write_value((select(i, ...)), out, n, 1, seen)
    n = n + 1
    out[n] = "</param>"
  end
  n = n + 1
  out[n] = "</params></methodResponse>"
  return concat(out, "", 1, n)
end

-- Reading is expat (_formats/xmlrpc.py), the values handed over as a tape.
local decode = V.reader(host.xmlrpc_read)

return { encode = encode, decode = decode }
