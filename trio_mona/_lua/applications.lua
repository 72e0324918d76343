-- trio_mona's Lua prelude, part 6 (after _lua/servers.lua): the `mona` object, file
-- objects, and the application tree. Returns `shared`.
local shared = ...
local INFO_LEVEL, LEVELS, WARN_LEVEL, address_arg =
  shared.INFO_LEVEL, shared.LEVELS, shared.WARN_LEVEL, shared.address_arg
local api, argerror, error, find =
  shared.api, shared.argerror, shared.error, shared.find
local format, gmatch, gsub, handle_of =
  shared.format, shared.gmatch, shared.gsub, shared.handle_of
local host, ipairs, lib, load =
  shared.host, shared.ipairs, shared.lib, shared.load
local log_at, log_level, match, new_object =
  shared.log_at, shared.log_level, shared.match, shared.new_object
local next, pairs, rawset, real_require =
  shared.next, shared.pairs, shared.rawset, shared.real_require
local remove, report, resolve, concat, raw_getmetatable =
  shared.remove, shared.report, shared.resolve, shared.concat, shared.raw_getmetatable
local select, setmetatable, sub, tostring =
  shared.select, shared.setmetatable, shared.sub, shared.tostring
local type, typename, unpack, with_traceback =
  shared.type, shared.typename, shared.unpack, shared.with_traceback
local xpcall, formats =
  shared.xpcall, shared.formats
---------------------------------------------------------------------------
-- Applications: environment, `mona` object, logging functions.
---------------------------------------------------------------------------
local function load_chunk(source, chunkname, env)
  return load(source, chunkname, "t", env)
end
api.load_chunk = load_chunk

-- mona:split(expression, separator[, option]): tokens as multiple values; option 1
-- drops empty tokens, 2 trims whitespace, 3 does both. The separator is plain text.
local function split(expression, separator, option)
  if type(expression) ~= "string" then argerror("split", 1, "string", expression) end
  if type(separator) ~= "string" then argerror("split", 2, "string", separator) end
  option = option or 0
  if type(option) ~= "number" then argerror("split", 3, "number", option) end
  local drop_empty, trim = option % 2 == 1, option >= 2 and option <= 3
  local tokens, n, start = {}, 0, 1
  local function add(token)
    if trim then token = match(token, "^%s*(.-)%s*$") end
    if token ~= "" or not drop_empty then
      n = n + 1
      tokens[n] = token
    end
  end
  if separator == "" then
    add(expression)
  else
    while true do
      local first, last = find(expression, separator, start, true)
      if not first then break end
      add(sub(expression, start, first - 1))
      start = last + 1
    end
    add(sub(expression, start))
  end
  return unpack(tokens, 1, n)
end

-- File objects (mona:listPaths): read-only tables.
local function new_file(entry)
  local mt = {
    __index = entry,
    __newindex = function(_, k) error(format("'%s' is read-only on File", tostring(k)), 2) end,
    __pairs = function() return next, entry, nil end,
    __tostring = function() return entry.value end,
    __metatable = "File",
  }
  formats.values.add_view(mt, function() return entry end, raw_getmetatable)
  lib.lock(mt)
  return setmetatable({}, mt)
end

-- mona:md5(...)/sha256(...): one raw digest per string (numbers as Lua writes them).
local function digest(name, ...)
  local n = select("#", ...)
  local values = { ... }
  for i = 1, n do
    local v = values[i]
    if type(v) == "number" then
      values[i] = tostring(v)
    elseif type(v) ~= "string" then
      argerror(name, i, "string", v)
    end
  end
  return host.digest(name, unpack(values, 1, n))
end

-- mona:toJSON(...) / mona:fromJSON(data) and the other conversions (docs:
-- lua/conversions): an optional error callback first; on a failure it is called with
-- the message (or an ERROR is logged) and the conversion returns nil.
local raw_pcall, runaway = lib.raw.pcall, lib.runaway

local function failed(path, name, onerror, message)
  if runaway.expired then error(message, 0) end -- (the runaway bound is not a failure)
  message = name .. ": " .. tostring(message)
  if onerror then
    onerror(message)
  else
    log_at(path, LEVELS.ERROR, 2, message)
  end
  return nil
end

local function write_with(path, name, encode, onerror, ...)
  local ok, result = raw_pcall(encode, select("#", ...), ...)
  if ok then return result end
  return failed(path, name, onerror, result)
end

local MAX_RESULTS = formats.values.MAX_RESULTS

local function read_with(path, name, decode, onerror, data)
  if type(data) ~= "string" then argerror(name, onerror and 2 or 1, "string", data) end
  local ok, values, count = raw_pcall(decode, data)
  if ok and count > MAX_RESULTS then -- (as fromJSON says it: more than a call returns)
    ok, values = false, format("%d values, more than one Lua call can return (%d)", count,
      MAX_RESULTS)
  end
  if ok then return unpack(values, 1, count) end
  return failed(path, name, onerror, values)
end

-- format, writer's name, reader's name
local CONVERSIONS = { { "json", "toJSON", "fromJSON" }, { "query", "toQuery", "fromQuery" },
  { "xml", "toXML", "fromXML" }, { "xmlrpc", "toXMLRPC", "fromXMLRPC" },
  { "amf", "toAMF", "fromAMF" } }

local function converters(path, format_name, to_name, from_name, encoder)
  local encode, decode = formats[format_name][encoder or "encode"], formats[format_name].decode
  local function to(...)
    if type((...)) == "function" then return write_with(path, to_name, encode, ...) end
    return write_with(path, to_name, encode, nil, ...)
  end
  local function from(first, second)
    if type(first) == "function" then return read_with(path, from_name, decode, first, second) end
    return read_with(path, from_name, decode, nil, first)
  end
  return to, from
end

-- mona:sendMail(...)'s mail objects (docs: lua/mail): a table for `onSent`.
local MAIL = { __metatable = "Mail", __tostring = function() return "Mail" end }
lib.lock(MAIL)

-- The members of `mona` (docs: lua/mona), by concern: each group is a function that
-- adds its members for one application (`path`; `app`, its owner for the sockets it
-- opens), given `method`, which lets a member be called as mona:name() or mona.name().
-- The files after this one add theirs (e.g. mona.clients) to `mona_groups`.
local mona_groups = {}

-- Files, time, digests, timers.
mona_groups[#mona_groups + 1] = function(members, props, method, path)
  members.absolutePath = method(function(app_path)
    if app_path ~= nil and type(app_path) ~= "string" then
      argerror("absolutePath", 1, "string", app_path)
    end
    return host.absolute_path(app_path or path)
  end)
  members.split = method(split)
  members.md5 = method(function(...) return digest("md5", ...) end)
  members.sha256 = method(function(...) return digest("sha256", ...) end)
  members.time = method(function() return host.time_ms() end)
  members.dump = method(function(data, size)
    if type(data) ~= "string" then argerror("dump", 1, "string", data) end
    if size ~= nil and type(size) ~= "number" then argerror("dump", 2, "number", size) end
    log_at(path, INFO_LEVEL, 2, host.hexdump(data, size))
  end)
  members.listPaths = method(function(dir)
    if type(dir) ~= "string" then argerror("listPaths", 1, "string", dir) end
    local entries, err = host.list_paths(dir)
    if entries == nil then
      log_at(path, WARN_LEVEL, 2, err)
      return nil, err
    end
    local files = {}
    for i, entry in ipairs(entries) do files[i] = new_file(entry) end
    return files
  end)
  members.setTimer = method(function(fn, delay)
    if type(fn) ~= "function" then argerror("setTimer", 1, "function", fn) end
    if type(delay) ~= "number" then argerror("setTimer", 2, "number", delay) end
    host.set_timer(path, fn, delay)
  end)
  props.configs, props.environment = host.configs, host.environment
  props.host, props.servers = shared.host_api, shared.servers
end

-- Sockets (docs: lua/tcp, lua/udp).
mona_groups[#mona_groups + 1] = function(members, _, method, path, app)
  members.createTCPClient = method(function()
    return new_object("TCPClient", host.tcp_client_new(app), path)
  end)
  members.createTCPServer = method(function()
    return new_object("TCPServer", host.tcp_server_new(app), path)
  end)
  members.createUDPSocket = method(function(allow_broadcast)
    local t = type(allow_broadcast)
    if t ~= "nil" and t ~= "boolean" then
      argerror("createUDPSocket", 1, "boolean", allow_broadcast)
    end
    return new_object("UDPSocket", host.udp_new(app, allow_broadcast == true), path)
  end)
end

-- Addresses and the blacklist (docs: lua/addresses).
mona_groups[#mona_groups + 1] = function(members, _, method, path)
  -- mona:createIPAddress / createSocketAddress and their ...WithDNS variants:
  -- an optional error callback first, then the address arguments.
  local function create_address(kind, dns, ...)
    local onerror = nil
    local args = { ... }
    if type(args[1]) == "function" then onerror = remove(args, 1) end
    local a, b = args[1], args[2]
    local name = (kind == "ip" and "createIPAddress" or "createSocketAddress")
      .. (dns and "WithDNS" or "")
    local va, vb
    if kind == "ip" then
      if type(a) == "table" and typename(a) == "IPAddress" then return a end
      if type(a) ~= "string" then argerror(name, onerror and 2 or 1, "string", a) end
      va = a
    else
      va = address_arg(name, onerror and 2 or 1, a)
      vb = address_arg(name, onerror and 3 or 2, b, true)
    end
    local value, err
    if dns then
      value, err = resolve[kind](kind, va, vb)
    else
      value, err = host.parse_address(kind, va, vb)
    end
    if value ~= nil then
      return new_object(kind == "ip" and "IPAddress" or "SocketAddress", value, path)
    end
    if onerror then
      onerror(err)
    else
      log_at(path, WARN_LEVEL, 2, err)
    end
    return nil
  end
  -- mona:addToBlacklist / removeFromBlacklist: IP strings or IPAddress objects.
  local function blacklist(name, add, ...)
    local values = {}
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      if type(v) == "table" and typename(v) == "IPAddress" then
        values[i] = handle_of[v]
      elseif type(v) == "string" then
        values[i] = v
      else
        argerror(name, i, "IP address", v)
      end
    end
    local err = host.blacklist(add, unpack(values, 1, select("#", ...)))
    if err then log_at(path, WARN_LEVEL, 2, err) end
  end
  members.createIPAddress = method(function(...) return create_address("ip", false, ...) end)
  members.createSocketAddress = method(function(...)
    return create_address("socket", false, ...)
  end)
  members.createIPAddressWithDNS = method(function(...) return create_address("ip", true, ...) end)
  members.createSocketAddressWithDNS = method(function(...)
    return create_address("socket", true, ...)
  end)
  members.addToBlacklist = method(function(...) return blacklist("addToBlacklist", true, ...) end)
  members.removeFromBlacklist = method(function(...)
    return blacklist("removeFromBlacklist", false, ...)
  end)
end

-- Mail (docs: lua/mail).
mona_groups[#mona_groups + 1] = function(members, _, method)
  members.sendMail = method(function(sender, subject, content, ...)
    for i, v in ipairs({ sender, subject, content }) do
      if type(v) ~= "string" then argerror("sendMail", i, "string", v) end
    end
    for i = 1, select("#", ...) do
      local recipient = select(i, ...)
      if type(recipient) ~= "string" then argerror("sendMail", i + 3, "string", recipient) end
    end
    local mail = setmetatable({}, MAIL)
    local err = host.mail_send(mail, sender, subject, content, ...)
    if err ~= nil then error("sendMail: " .. err, 2) end
    return mail
  end)
end

-- The conversions (docs: lua/conversions).
mona_groups[#mona_groups + 1] = function(members, _, method, path)
  for _, names in ipairs(CONVERSIONS) do
    local to, from = converters(path, names[1], names[2], names[3])
    members[names[2]], members[names[3]] = method(to), method(from)
  end
  members.toAMF0 = method((converters(path, "amf", "toAMF0", "fromAMF", "encode0")))
end

shared.mona_groups = mona_groups

local function mona_factory(app, path)
  local mona = {}
  local function method(impl)
    return function(first, ...)
      if first == mona then return impl(...) end
      return impl(first, ...)
    end
  end
  local members, props = {}, {}
  for _, add in ipairs(mona_groups) do add(members, props, method, path, app) end
  local mt = {
    __index = function(_, k)
      local m = members[k]
      if m ~= nil then return m end
      return props[k]
    end,
    __newindex = function(_, k)
      error(format("'%s' is read-only on mona", tostring(k)), 2)
    end,
    __metatable = "mona",
  }
  lib.lock(mt)
  return setmetatable(mona, mt)
end

---------------------------------------------------------------------------
-- The application tree (docs: lua/applications): environments, children, files.
---------------------------------------------------------------------------
local children_of = setmetatable({}, { __mode = "k" }) -- env -> { name -> env, or false: not loaded yet }
local dirs_of = setmetatable({}, { __mode = "k" })     -- env -> folders to search, own first
local loaded_of = setmetatable({}, { __mode = "k" })   -- env -> { module name or file -> value }
local path_of = setmetatable({}, { __mode = "k" })     -- env -> application path
local package_loaded, package_preload = lib.package.loaded, lib.package.preload

-- Where `names` may be: absolute as given, else in the application's folder, then in
-- its parents' folders.
local function candidates(env, names)
  local files = {}
  for _, name in ipairs(names) do
    if sub(name, 1, 1) == "/" then
      files[#files + 1] = name
    else
      for _, dir in ipairs(dirs_of[env]) do files[#files + 1] = dir .. "/" .. name end
    end
  end
  return unpack(files)
end

-- The first file of `names` that exists, compiled as text with `chunk_env` as its
-- globals, and its path; or nil and a message. Python reads it: in sandbox mode only
-- inside the applications folder, symbolic links resolved.
local function load_file(env, names, chunk_env)
  local file, source = host.read_source(candidates(env, names))
  if file == nil then return nil, format("cannot open %s (%s)", names[1], source) end
  local chunk, err = load(source, "@" .. file, "t", chunk_env or env)
  if chunk == nil then return nil, err end
  return chunk, file
end

-- A module that is no file of the applications: Lua's own search, or in sandbox mode
-- only what the runtime provides.
local function library(name, why)
  if not lib.sandbox then return real_require(name) end
  local value = package_loaded[name]
  if value ~= nil then return value end
  local loader = package_preload[name]
  if loader == nil then
    error(format("module '%s' not found (%s; sandbox mode: only the applications' own files "
      .. "and the modules the runtime provides)", name, why), 3)
  end
  value = loader(name)
  if value == nil then value = true end
  package_loaded[name] = value
  return value
end

local function file_functions(env)
  local function require_(name)
    if type(name) ~= "string" then argerror("require", 1, "string", name) end
    local cache = loaded_of[env]
    local value = cache[name]
    if value ~= nil then return value end
    if name == "socket" or name == "socket.core" then -- LuaSocket's API (docs: lua/luasocket)
      value = cache["socket"] or api.socket_module(path_of[env])
      cache["socket"], cache["socket.core"] = value, value
      return value
    end
    if name == "ssl" then -- LuaSec's API over it (docs: lua/luasec)
      value = api.ssl_module()
      cache["ssl"] = value
      return value
    end
    if name == "ssl.https" then
      value = api.ssl_https_module(path_of[env])
      cache["ssl.https"] = value
      return value
    end
    local names = { name }
    if sub(name, -4) ~= ".lua" then names = { gsub(name, "%.", "/") .. ".lua", name .. ".lua" } end
    local file, source = host.read_source(candidates(env, names))
    if file == nil then return library(name, source) end
    value = cache[file] -- the same file asked for by another name
    if value == nil then
      local chunk, err = load(source, "@" .. file, "t", env)
      if not chunk then error(err, 2) end
      value = chunk(name, file)
      if value == nil then value = package_loaded[name] end -- module(name) registered it
      if value == nil then value = true end
      cache[file] = value
    end
    cache[name] = value
    return value
  end
  local function dofile_(name)
    if type(name) ~= "string" then argerror("dofile", 1, "string", name) end
    local chunk, err = load_file(env, { name })
    if not chunk then error(err, 2) end
    return chunk()
  end
  local function loadfile_(name, _, chunk_env)
    if type(name) ~= "string" then argerror("loadfile", 1, "string", name) end
    return load_file(env, { name }, chunk_env)
  end
  return require_, dofile_, loadfile_
end

-- A child that exists on disk but has not loaded yet loads when it is first asked for,
-- as MonaServer builds an application when it is first needed: its main chunk runs now,
-- inside the asking code, and its onStart after the asking event.
local function child_of(env, name)
  local child = children_of[env][name]
  if child ~= false then return child end
  local child_env, chunk = host.load_child(path_of[env], name)
  if child_env == nil then return nil end
  local ok, err = true, nil
  if chunk ~= nil then ok, err = xpcall(chunk, with_traceback) end
  if not ok then report(path_of[child_env], "main chunk", err, chunk) end
  host.child_loaded(path_of[child_env], ok, ok and "" or tostring(err))
  return children_of[env][name] or nil
end

local function children_table(env, children)
  local mt = {
    __index = function(_, k) return child_of(env, k) end,
    __newindex = function() error("children is read-only", 2) end,
    __pairs = function()
      local function loaded_only(t, k)
        local v
        repeat k, v = next(t, k) until k == nil or v
        return k, v
      end
      return loaded_only, children, nil
    end,
    -- children("a/b") walks down the tree from this application.
    __call = function(_, relative)
      if type(relative) ~= "string" then argerror("children", 1, "string", relative) end
      local e = env
      for part in gmatch(relative, "[^/]+") do
        e = child_of(e, part)
        if e == nil then return nil end
      end
      return e
    end,
    __metatable = "children",
  }
  lib.lock(mt)
  return setmetatable({}, mt)
end

-- What print and the logging functions write: values joined, tables shown.
local render

local function render_table(t, depth, seen)
  if seen[t] then return "{...}" end
  if depth > 3 then return "{...}" end
  seen[t] = true
  local parts, n = {}, 0
  local count = #t
  for i = 1, count do
    n = n + 1
    if n > 50 then parts[n] = "..."; break end
    parts[n] = render(t[i], depth + 1, seen)
  end
  if n <= 50 then
    for k, v in next, t do
      if not (type(k) == "number" and k >= 1 and k <= count and k % 1 == 0) then
        n = n + 1
        if n > 50 then parts[n] = "..."; break end
        local key = type(k) == "string" and match(k, "^[%a_][%w_]*$") and k
          or "[" .. render(k, depth + 1, seen) .. "]"
        parts[n] = key .. "=" .. render(v, depth + 1, seen)
      end
    end
  end
  seen[t] = nil
  return "{" .. concat(parts, ", ") .. "}"
end

render = function(v, depth, seen)
  local t = type(v)
  if t == "string" then return v end
  if t == "table" then
    local mt = raw_getmetatable(v)
    if mt and mt.__tostring then return tostring(v) end
    return render_table(v, depth or 1, seen or {})
  end
  return tostring(v)
end

local function render_args(sep, ...)
  local n = select("#", ...)
  if n == 1 then return render((...)) end
  local parts = {}
  for i = 1, n do parts[i] = render((select(i, ...))) end
  return concat(parts, sep)
end

-- Build the global environment of the application at `path` (folder `dir`): its
-- globals fall back to its children by name, then to `parent_env` (the shared
-- globals for the root).
function api.new_app_env(path, name, dir, parent_env)
  local env = {}
  local base = parent_env or lib.globals
  local children = {}
  children_of[env] = children
  loaded_of[env] = {}
  path_of[env] = path
  local dirs = { dir }
  for _, d in ipairs(parent_env and dirs_of[parent_env] or {}) do dirs[#dirs + 1] = d end
  dirs_of[env] = dirs
  env._G = env
  env.mona = mona_factory(path, path)
  for level_name, lvl in pairs(LEVELS) do
    env[level_name] = function(...) if lvl >= log_level.threshold then log_at(path, lvl, 2, render_args("", ...)) end end
  end
  env.print = function(...) if INFO_LEVEL >= log_level.threshold then log_at(path, INFO_LEVEL, 2, render_args("\t", ...)) end end
  env.require, env.dofile, env.loadfile = file_functions(env)
  env.load = lib.loader(env)
  env.loadstring = env.load
  env.module = lib.module_function(env, package_loaded)
  local properties = {
    name = name, path = path, this = env, super = parent_env,
    children = children_table(env, children), data = shared.data_of(path),
  }
  local mt = {
    __index = function(_, k)
      local v = properties[k]
      if v ~= nil then return v end
      v = children[k]
      if v ~= nil then return v or child_of(env, k) end
      return base[k]
    end,
    -- (`data` may be assigned, as in MonaServer: an ordinary global from then on, and
    -- the persistent table again once it is nil)
    __newindex = function(t, k, v)
      if (properties[k] ~= nil and k ~= "data") or k == "super" then
        error(format("'%s' is read-only", tostring(k)), 2)
      end
      rawset(t, k, v)
    end,
  }
  lib.lock(mt, { name = true, path = true, this = true, super = true, children = true })
  return setmetatable(env, mt)
end

-- os.exit([code]): the runtime stops in order, with that exit code (true or none: 0,
-- false: 1); the calling handler ends here, and no pcall can catch that.
lib.on_exit = function(code)
  if code == nil or code == true then
    code = 0
  elseif code == false then
    code = 1
  else
    local number = shared.tonumber(code)
    if number == nil then argerror("exit", 1, "number or boolean", code) end
    code = shared.floor(number)
  end
  host.exit(code)
  lib.runaway.expired = true
  error(shared.EXIT, 0)
end

-- Make `child_env` the child `name` of `parent_env`: an environment, false for a
-- child not loaded yet, nil for none.
function api.set_child(parent_env, name, child_env)
  children_of[parent_env][name] = child_env
end

return shared
