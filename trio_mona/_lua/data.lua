-- trio_mona's Lua prelude, part 4 (after _lua/objects.lua): the persistent `data`
-- tree (docs: lua/data). Returns `shared`, with `data_of(app_path)` added.
--
-- The tree lives here, in plain tables: `nodes[path]` maps each key of the table at
-- `path` to its value (a string or a boolean) or to SUBTREE (a table: its own entry in
-- `nodes`). A path is the keys from the root down joined by a zero byte; the root is
-- "". Applications see proxies, one per path: reading never leaves Lua; every change
-- goes to Python at once (host.data_put / data_delete), which commits it before any
-- byte sent after it is written.
local shared = ...
local error, find, format, host, lib = shared.error, shared.find, shared.format, shared.host, shared.lib
local log_at, next, select, setmetatable = shared.log_at, shared.next, shared.select, shared.setmetatable
local tostring, type, unpack, floor = shared.tostring, shared.type, shared.unpack, shared.floor
local typename, raw_getmetatable, rawget = shared.typename, shared.raw_getmetatable, shared.rawget
local gmatch, sub, api, concat = shared.gmatch, shared.sub, shared.api, shared.concat
local V = shared.formats.values
-- (an integer's text, by concatenation: Lua 5.4's integers, LuaJIT's integral floats)
local is_integer = V.is_integer
local ERROR_LEVEL = shared.ERROR_LEVEL
local data_put, data_delete = host.data_put, host.data_delete
local changes = shared.data_changes

local SEP = "\0"
local SUBTREE = setmetatable({}, { __metatable = "subtree" }) -- (never reaches an application)
local nodes = { [""] = {} }  -- path -> { key -> value or SUBTREE }
local counts = { [""] = 0 }  -- path -> how many values (not tables) it holds
local proxies = setmetatable({}, { __mode = "v" }) -- path -> its proxy
local path_of = setmetatable({}, { __mode = "k" }) -- proxy -> its path

local function below(path, key)
  if path == "" then return key end
  return path .. SEP .. key
end

-- The path of the table holding `path`, and its last key. (Plain finds: Lua 5.1's
-- patterns stop at a zero byte.)
local function split_last(path)
  local cut, at = nil, 1
  while true do
    local i = find(path, SEP, at, true)
    if i == nil then break end
    cut, at = i, i + 1
  end
  if cut == nil then return "", path end
  return sub(path, 1, cut - 1), sub(path, cut + 1)
end

-- How messages show a path: data.a.b
local function shown(path, key)
  if key ~= nil then path = below(path, key) end
  local parts, at, n = { "data" }, 1, 1
  while path ~= "" do
    local i = find(path, SEP, at, true)
    n = n + 1
    parts[n] = sub(path, at, (i or 0) - 1)
    if i == nil then break end
    at = i + 1
  end
  return concat(parts, ".")
end

-- A key as the tree names it: a number and its decimal text are one key (an
-- integral float is an integer, as in Lua's own tables). Nil and a reason otherwise.
local function key_name(k)
  local t = type(k)
  if t == "string" then
    if find(k, SEP, 1, true) then return nil, "a key with a zero byte" end
    return k
  elseif t == "number" then
    if is_integer(k) and k < 1e14 and k > -1e14 then return k .. "" end
    if k ~= k then return nil, "a NaN key" end
    if k == floor(k) and k > -2 ^ 63 and k < 2 ^ 63 then return format("%d", k) end
    return V.float_text(k) or tostring(k)
  end
  return nil, "a " .. t .. " key"
end

-- What a stored number reads back as.
local function number_value(v)
  if V.is_integer(v) then return format("%d", v) end
  return V.float_text(v) or tostring(v)
end

local proxy_mt

local function proxy_of(path)
  local p = proxies[path]
  if p == nil then
    p = setmetatable({}, proxy_mt)
    proxies[path], path_of[p] = p, path
  end
  return p
end

-- Changes go to Python in calls of up to 32 entries: when 32 are waiting, before any
-- other host call, and when the job stops (the prelude's `data_changes`), so Python
-- has every change before anything can be written to the network.
local pending, pending_n = {}, 0

local function send_pending()
  changes.due = false
  if pending_n > 0 then
    local n = pending_n
    pending_n = 0
    data_put(unpack(pending, 1, n))
  end
end
changes.flush = send_pending

local function put(path, value) -- (value nil: a table)
  pending[pending_n + 1], pending[pending_n + 2] = path, value
  pending_n = pending_n + 2
  changes.due = true
  if pending_n >= 64 then send_pending() end
end

local function forget(path) -- the table at `path` and every table below it
  local children = nodes[path]
  nodes[path], counts[path] = nil, nil
  for key, v in next, children do
    if v == SUBTREE then forget(below(path, key)) end
  end
end

-- Why the plain table `t` cannot be stored (nil: it can): a key or a value of a
-- type data does not hold, a cycle, or nesting past the bound. Checked before
-- anything is stored.
local function refusal(t, seen, depth, where, target)
  if depth > V.MAX_DEPTH then return format("%s is nested deeper than %d", where, V.MAX_DEPTH) end
  if seen[t] then return format("%s is cyclic (a table inside itself)", where) end
  local from = path_of[t]
  if from ~= nil then -- a data table: it holds only what data can, unless it holds `target`
    if from == "" or target == from or sub(target, 1, #from + 1) == from .. SEP then
      return format("%s is %s, which would hold itself", where, shown(from))
    end
    return nil
  end
  -- (the runtime's objects: sockets, addresses, servers, `mona`, files; each has a
  -- protected metatable)
  local class, mt = typename(t), raw_getmetatable(t)
  if class == "table" and mt ~= nil and rawget(mt, "__metatable") ~= nil then
    class = tostring(rawget(mt, "__metatable"))
  end
  if class ~= "table" then
    return format("%s is a %s object (data holds strings, numbers, booleans and tables)",
      where, class)
  end
  seen[t] = true
  for k, v in next, t do
    local name, why = key_name(k)
    if name == nil then return format("%s has %s (keys are strings or numbers)", where, why) end
    local tv = type(v)
    if tv == "table" then
      local refused = refusal(v, seen, depth + 1, where .. "." .. name, target)
      if refused then return refused end
    elseif tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
      return format("%s.%s is a %s (data holds strings, numbers, booleans and tables)", where,
        name, tv)
    end
  end
  seen[t] = nil
  return nil
end

local function add_table(path, t)
  nodes[path], counts[path] = {}, 0
  put(path, nil)
  local children, n = nodes[path], 0
  local from = path_of[t]
  if from ~= nil then -- a data table copied: what it holds now
    for key, v in next, nodes[from] or {} do
      if v == SUBTREE then
        children[key] = SUBTREE
        add_table(below(path, key), proxy_of(below(from, key)))
      else
        children[key], n = v, n + 1
        put(below(path, key), v)
      end
    end
  else
    for k, v in next, t do
      local key = key_name(k)
      if type(v) == "table" then
        if children[key] == nil then
          children[key] = SUBTREE
          add_table(below(path, key), v)
        end
      else
        if type(v) == "number" then v = number_value(v) end
        if children[key] == nil then n = n + 1 end
        if children[key] ~= SUBTREE then
          children[key] = v
          put(below(path, key), v)
        end
      end
    end
  end
  counts[path] = n
end

-- The table at `path`, made (with the tables above it) if it is missing: an
-- application's own `data` before it stores anything. Nil and why when a value is in
-- the way.
local function table_at(path)
  local children = nodes[path]
  if children ~= nil then return children end
  local parent, key = split_last(path)
  local above, why = table_at(parent)
  if above == nil then return nil, why end
  if above[key] ~= nil then return nil, shown(path) .. " holds a value, not a table" end
  above[key] = SUBTREE
  nodes[path], counts[path] = {}, 0
  put(path, nil)
  return nodes[path]
end

local function assign(proxy, k, v)
  local path = path_of[proxy]
  if changes.down then -- (the store is unreachable: docs/lua/data.rst, "Redis")
    error(format("data: cannot store %s: %s", shown(path, tostring(k)), changes.down), 2)
  end
  local key, why = key_name(k)
  if key == nil then error(format("data: cannot use %s (keys are strings or numbers)", why), 2) end
  local tv = type(v)
  if tv == "number" then
    v, tv = number_value(v), "string"
  elseif tv == "table" then
    local refused = refusal(v, {}, 1, shown(path, key), below(path, key))
    if refused then error(format("data: cannot store %s: %s", shown(path, key), refused), 2) end
  elseif tv ~= "string" and tv ~= "boolean" and tv ~= "nil" then
    error(format("data: cannot store a %s in %s (data holds strings, numbers, booleans and "
      .. "tables)", tv, shown(path, key)), 2)
  end
  local children = nodes[path]
  if children == nil then
    if v == nil then return end
    children, why = table_at(path)
    if children == nil then
      log_at("", ERROR_LEVEL, 2, "data: cannot store " .. shown(path, key) .. ": " .. why)
      return
    end
  end
  local old = children[key]
  if v == nil then
    if old == nil then return end
    children[key] = nil
    if old == SUBTREE then forget(below(path, key)) else counts[path] = counts[path] - 1 end
    data_delete(below(path, key)) -- (the changes before it go first: see send_pending)
    return
  end
  if old == SUBTREE then
    log_at("", ERROR_LEVEL, 2, format("data: %s is a table: assign nil to it first to delete "
      .. "it, then store the new value", shown(path, key)))
    return
  end
  if tv == "table" then
    if old ~= nil then counts[path] = counts[path] - 1 end
    -- (shared by several processes: what another one stored there is replaced too)
    if changes.shared then data_delete(below(path, key)) end
    children[key] = SUBTREE
    add_table(below(path, key), v)
  else
    if old == nil then counts[path] = counts[path] + 1 end
    children[key] = v
    put(below(path, key), v)
  end
end

local function read(proxy, k)
  local path = path_of[proxy]
  local children = nodes[path]
  if children == nil then return nil end
  local key = key_name(k)
  if key == nil then return nil end
  local v = children[key]
  if v == SUBTREE then return proxy_of(below(path, key)) end
  if v == nil and key == "count" then return counts[path] end -- (as MonaServer: `#` on LuaJIT)
  return v
end

local EMPTY = {}

local function entries(proxy)
  local path = path_of[proxy]
  local children = nodes[path] or EMPTY
  local function step(_, k)
    local key, v = next(children, k)
    if v == SUBTREE then return key, proxy_of(below(path, key)) end
    return key, v
  end
  return step, proxy, nil
end

local function indexed(proxy)
  local function step(p, i)
    i = i + 1
    local v = read(p, i)
    if v ~= nil then return i, v end
  end
  return step, proxy, 0
end

proxy_mt = {
  __index = read,
  __newindex = assign,
  __len = function(proxy) return counts[path_of[proxy]] or 0 end,
  __pairs = entries,
  __ipairs = indexed,
  __tostring = function(proxy)
    return shown(path_of[proxy])
  end,
  __metatable = "data",
}
lib.lock(proxy_mt)
V.add_view(proxy_mt, function(proxy) -- (the conversions see a data table as a map)
  local copy = {}
  for key, v in entries(proxy) do copy[key] = v end
  return copy
end, shared.raw_getmetatable)

-- LuaJIT follows neither __pairs nor __ipairs: the applications' pairs and ipairs
-- walk data tables there too, and pairs follows __pairs (mona.clients,
-- mona.publications, publication.listeners...).
local probe = false
for _ in shared.pairs(setmetatable({}, { __pairs = function() return next, { true }, nil end })) do
  probe = true
end
if not probe then
  local globals = lib.globals
  local base_pairs, base_ipairs = globals.pairs, globals.ipairs
  local raw_getmetatable = shared.raw_getmetatable
  globals.pairs = function(t, ...)
    if path_of[t] ~= nil then return entries(t) end
    local mt = raw_getmetatable(t)
    local walk = mt and rawget(mt, "__pairs")
    if walk then return walk(t) end
    return base_pairs(t, ...)
  end
  globals.ipairs = function(t, ...)
    if path_of[t] ~= nil then return indexed(t) end
    return base_ipairs(t, ...)
  end
end

-- The `data` of the application at `app_path` ("" for the root, "/a/b" below it).
function shared.data_of(app_path)
  if changes.off then return nil end -- (`--data none`: an ordinary global)
  local keys, n = {}, 0
  for name in gmatch(app_path, "[^/]+") do n = n + 1; keys[n] = name end
  return proxy_of(concat(keys, SEP))
end

-- The stored tree, at start: (path, value) pairs, each table before what it holds.
function api.data_load(...)
  for i = 1, select("#", ...), 2 do
    local path, v = select(i, ...)
    local parent, key = split_last(path)
    local children = nodes[parent]
    if v == nil then
      children[key] = SUBTREE
      nodes[path], counts[path] = {}, 0
    else
      children[key] = v
      counts[parent] = counts[parent] + 1
    end
  end
end

-- Another process's commit (_data/redis.py, RemoteChanges): op, path, value triples,
-- applied as Redis applied them (a value under a missing table makes the table), not
-- recorded. "k" keeps the local value of a path across the next change.
local function table_made(path)
  local children = nodes[path]
  if children ~= nil then return children end
  local parent, key = split_last(path)
  local above = table_made(parent)
  if above[key] ~= nil then counts[parent] = counts[parent] - 1 end
  above[key] = SUBTREE
  nodes[path], counts[path] = {}, 0
  return nodes[path]
end

local function removed(path)
  local parent, key = split_last(path)
  local above = nodes[parent]
  local old = above and above[key]
  if old == nil then return end
  above[key] = nil
  if old == SUBTREE then forget(path) else counts[parent] = counts[parent] - 1 end
end

local function value_set(path, v)
  if v == nil then table_made(path) return end
  local parent, key = split_last(path)
  local above = table_made(parent)
  local old = above[key]
  if old == SUBTREE then forget(path) end
  if old == nil or old == SUBTREE then counts[parent] = counts[parent] + 1 end
  above[key] = v
end

local function value_at(path) -- (SUBTREE for a table)
  local parent, key = split_last(path)
  local above = nodes[parent]
  return above and above[key]
end

local function restore(path, v)
  if v == nil then removed(path) elseif v == SUBTREE then table_made(path) else value_set(path, v) end
end

function api.data_apply(...)
  local kept, n = {}, 0
  for i = 1, select("#", ...), 3 do
    local op, path, v = select(i, ...)
    if op == "k" then
      kept[n + 1], kept[n + 2] = path, value_at(path)
      n = n + 2
    else
      if op == "d" then removed(path) else value_set(path, v) end
      for j = 1, n, 2 do restore(kept[j], kept[j + 1]) end
      n = 0
    end
  end
end

-- A reload of the whole tree (a commit was missed): data_reload keeps the local state
-- of the paths named (changed here and newer than what Redis holds) and empties the
-- tree for data_load; data_reloaded puts them back.
local reload_kept, reload_n = {}, 0
function api.data_reload(...)
  reload_n = select("#", ...)
  for i = 1, reload_n do
    local path = select(i, ...)
    reload_kept[2 * i - 1], reload_kept[2 * i] = path, value_at(path)
  end
  for path in next, nodes do nodes[path], counts[path] = nil, nil end
  nodes[""], counts[""] = {}, 0
end

function api.data_reloaded()
  for j = 1, 2 * reload_n, 2 do restore(reload_kept[j], reload_kept[j + 1]) end
  reload_kept, reload_n = {}, 0
end

return shared
