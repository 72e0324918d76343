-- XML for mona:toXML / mona:fromXML (docs: lua/conversions), in MonaServer's layout: an
-- element is a table with `__name`, its attributes as fields, its children (elements
-- and text) by index, the first child of each name by name and `__value`, the first
-- child. Run once with the real globals (`G`), the host table and the shared rules
-- (_formats/values.lua); returns `encode(n, ...)` and `decode(text)`.
local G, host, V = ...
local type, next, tostring, select = G.type, G.next, G.tostring, G.select
local find = G.string.find
local concat, sort = G.table.concat, G.table.sort
local fail, number_text, MAX_DEPTH = V.fail, V.number_text, V.MAX_DEPTH

---------------------------------------------------------------------------
-- Writing
---------------------------------------------------------------------------
local xml_text = V.xml_text

local function escaped(s) return xml_text(s, false) end

local function text_of(v)
  local t = type(v)
  if t == "string" then return escaped(v) end
  if t == "number" then return number_text(v, "XML") end
  if t == "boolean" then return v and "true" or "false" end
  return nil
end

-- (a number or boolean attribute as text; a string escaped for an attribute)
local function attribute_text(v)
  if type(v) == "string" then return xml_text(v, true) end
  return text_of(v) or ""
end

local write_node

-- The children of an element: its array part, `__value` standing for the first.
local function write_children(t, out, n, depth, seen)
  local value = t.__value
  local count = #t
  if value ~= nil then
    n = write_node(value, out, n, depth, seen)
  end
  for i = value ~= nil and 2 or 1, count do n = write_node(t[i], out, n, depth, seen) end
  return n
end

local function write_element(t, out, n, depth, seen)
  local name = t.__name
  if type(name) ~= "string" or not find(name, "^[%a_:][%w_:%.%-]*$") then
    fail("an element name must be a name, not %s", tostring(name))
  end
  -- Attributes in name order: the text does not depend on the table's order.
  local keys = {}
  for k, v in next, t do
    if type(k) == "string" and k ~= "__name" and k ~= "__value" and type(v) ~= "table"
      and text_of(v) ~= nil then
      keys[#keys + 1] = k
    end
  end
  sort(keys)
  n = n + 1
  out[n] = "<" .. name .. " "
  for i = 1, #keys do
    local k = keys[i]
    if not find(k, "^[%a_:][%w_:%.%-]*$") then fail("an attribute name must be a name, not %s", k) end
    n = n + 1
    out[n] = k .. '="' .. attribute_text(t[k]) .. '" '
  end
  if t.__value == nil and t[1] == nil then
    n = n + 1
    out[n] = "/>"
    return n
  end
  n = n + 1
  out[n] = ">"
  n = write_children(t, out, n, depth, seen)
  n = n + 1
  out[n] = "</" .. name .. ">"
  return n
end

write_node = function(v, out, n, depth, seen)
  if type(v) ~= "table" then
    local text = text_of(v)
    if text == nil then fail("a %s has no XML form", type(v)) end
    n = n + 1
    out[n] = text
    return n
  end
  if seen[v] then fail("a table contains itself (XML has no references)") end
  if depth > MAX_DEPTH then fail("tables nested deeper than %d", MAX_DEPTH) end
  seen[v] = true
  if v.__name ~= nil then
    n = write_element(v, out, n, depth + 1, seen)
  else -- a document: its declaration (`xml`), then its nodes
    local declaration = v.xml
    if type(declaration) == "table" then
      n = n + 1
      out[n] = "<?xml "
      for _, k in G.ipairs({ "version", "encoding", "standalone" }) do
        if declaration[k] ~= nil then
          n = n + 1
          out[n] = k .. '="' .. attribute_text(declaration[k]) .. '" '
        end
      end
      n = n + 1
      out[n] = "?>"
    end
    n = write_children(v, out, n, depth + 1, seen)
  end
  seen[v] = nil
  return n
end

local function encode(count, ...)
  local out, n, seen = {}, 0, {}
  for i = 1, count do n = write_node((select(i, ...)), out, n, 1, seen) end
  return concat(out, "", 1, n)
end

---------------------------------------------------------------------------
-- Reading is expat (_formats/xml.py), the tree handed over as a tape.
---------------------------------------------------------------------------
local decode = V.reader(host.xml_read)

return { encode = encode, decode = decode }
