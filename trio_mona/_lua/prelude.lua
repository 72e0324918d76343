-- trio_mona's Lua prelude: the Lua half of the bridge, in seven files run in order:
-- this one (the host boundary, classes, logging and error reports), _lua/jobs.lua (the
-- coroutine pool, the runaway bound, suspension, sends held during a job),
-- _lua/objects.lua (what a job runs for each event; address, TCP and UDP objects),
-- _lua/data.lua (the persistent `data` tree), _lua/servers.lua (`mona.servers`),
-- _lua/applications.lua (the `mona` object and the application tree) and
-- _lua/socket.lua (LuaSocket's API).
--
-- Run once per runtime with `host`, a table of Python functions (the only Python
-- objects Lua ever holds, kept here as upvalues that applications cannot reach).
-- Returns what the other files use; `api` in it holds the Lua functions the
-- Python bridge calls.
--
-- Every Lua-visible object (TCP client, TCP server, addresses) is a plain table with
-- a per-class metatable: documented methods and properties go to the Python handle
-- found in the weak `handle_of` table; handlers and user fields live in the table.
-- Every handler runs inside a pooled coroutine so that a call may suspend it.
local host_functions, G, lib = ...

-- Every standard function the runtime uses, taken before any application runs (this
-- chunk has no globals: reading one is an error), so nothing an application replaces
-- changes what the runtime does.
local type, tostring, tonumber, select, error, rawget, pairs, ipairs, next =
  G.type, G.tostring, G.tonumber, G.select, G.error, G.rawget, G.pairs, G.ipairs, G.next
local rawset, load = lib.raw.rawset, lib.raw.load
local setmetatable, xpcall, pcall = lib.raw.setmetatable, lib.raw.xpcall, lib.raw.pcall
local format, sub, gsub, match, gmatch, find, lower =
  G.string.format, G.string.sub, G.string.gsub, G.string.match, G.string.gmatch, G.string.find,
  G.string.lower
local concat, remove, unpack = G.table.concat, G.table.remove, G.table.unpack or G.unpack
local floor = G.math.floor
local yield, running, isyieldable =
  G.coroutine.yield, G.coroutine.running, G.coroutine.isyieldable
local create, resume = lib.raw.create, lib.raw.resume
local raw_debug = lib.raw.debug
local traceback, getinfo, getlocal, raw_getmetatable, sethook =
  raw_debug.traceback, raw_debug.getinfo, raw_debug.getlocal, raw_debug.getmetatable,
  raw_debug.sethook
local clock = G.os.clock
local real_require = G.require

local api = {}

-- Lua 5.4's generational collector frees the short-lived strings of each event (every
-- received buffer is one) young: measured ~30 % less time per 64 KiB echo, the same
-- for 64-byte messages. (LuaJIT has only the incremental one.)
if G._VERSION == "Lua 5.4" then G.collectgarbage("generational") end

---------------------------------------------------------------------------
-- The host boundary: the one place where Python errors become Lua strings.
---------------------------------------------------------------------------
-- No Python object ever reaches an application, an exception included: a Python
-- function that fails is logged by the runtime (with its traceback) and raises a
-- plain Lua string here. The bad values an application can pass are checked before
-- that (the documented failure returns); this is the net under them.
local internal_error = host_functions.internal_error

local function host_result(name, ok, ...)
  if ok then return ... end
  internal_error(name, (...))
  error(format("internal error in %s (logged by the runtime)", name), 0)
end

-- What a job may leave to do when it stops, or before a host call that could change
-- what it is about: each record is set by the file that keeps such work, with a flag
-- that the hot path reads (`due`) and what does the work.
-- Sends held during the job (_lua/jobs.lua).
local sends = { due = false, finish = nil }
-- LuaSocket objects collected meanwhile, their sockets to close (_lua/socket.lua).
local collected = { due = false, close = nil }

-- Host functions that neither write, close, connect nor run Lua: held sends may stay.
local KEEPS_HELD = {
  tcp_send = true, tcp_get = true, tcp_server_get = true, udp_get = true, udp_send = true,
  log = true, stopping = true, internal_error = true, time_ms = true, digest = true,
  hexdump = true, addr_get = true, addr_compare = true, parse_address = true,
  absolute_path = true, tcp_client_new = true, tcp_server_new = true, udp_new = true,
  adopt = true, data_put = true, data_delete = true, servers_send = true,
}

-- Changes to `data` made in Lua and not handed to Python yet (_lua/data.lua sets
-- `due` and `flush`): they go before any other host call, and when a job stops.
local data_changes = { due = false, flush = nil }

local host = {}
for name, value in pairs(host_functions) do
  if type(value) ~= "userdata" then
    host[name] = value
  elseif KEEPS_HELD[name] then
    host[name] = function(...)
      if data_changes.due then data_changes.flush() end
      return host_result(name, pcall(value, ...))
    end
  else
    host[name] = function(...)
      if data_changes.due then data_changes.flush() end
      if sends.due then sends.finish() end
      return host_result(name, pcall(value, ...))
    end
  end
end

---------------------------------------------------------------------------
-- Objects: classes, handles, argument checks.
---------------------------------------------------------------------------
local handle_of = setmetatable({}, { __mode = "k" }) -- object table -> Python handle
local owner_of = setmetatable({}, { __mode = "k" })  -- object table -> application path
local class_of = setmetatable({}, { __mode = "k" })  -- metatable -> class name

-- A class of the runtime's objects made elsewhere (LuaSocket's) is named here too.
local function mark_class(mt, name) class_of[mt] = name end

local function typename(v)
  local t = type(v)
  if t == "table" then
    local mt = raw_getmetatable(v)
    if mt and class_of[mt] then return class_of[mt] end
  end
  return t
end

-- Raise "bad argument" at the Lua code that called the method (`level` frames up
-- from the function calling argerror; 3 = the caller of a method).
-- The stack level, as seen from the function calling this, of its nearest caller
-- outside the runtime's own Lua files: where an error should point, at the
-- application's line as a C library's does, however many of the runtime's functions
-- (or its pcall) are in between.
local function outside_level()
  local level = 3 -- (1: this function, 2: the one calling it)
  while true do
    local info = getinfo(level, "S")
    if info == nil or sub(info.source, 1, 11) ~= "=trio_mona/" then return level - 1 end
    level = level + 1
  end
end

local function raise(message) error(message, outside_level()) end

local function argerror(method, i, expected, v)
  raise(format("bad argument #%d to '%s' (%s expected, got %s)", i, method, expected, typename(v)))
end

local classes = {}

-- Build a class: `methods` are Lua functions taking the object table first;
-- `props` names the read-only properties read through `getter(handle, name)`.
local function class(name, methods, props, getter, extra)
  local mt = { __metatable = name }
  local prop_set, read_only = {}, {}
  for _, p in ipairs(props) do prop_set[p] = true end
  mt.__index = function(t, k)
    local m = methods[k]
    if m ~= nil then return m end
    if prop_set[k] then return getter(handle_of[t], k) end
    return nil
  end
  mt.__newindex = function(t, k, v)
    if methods[k] ~= nil or prop_set[k] then
      error(format("'%s' is read-only on %s", tostring(k), name), 2)
    end
    rawset(t, k, v)
  end
  for k, v in pairs(extra or {}) do mt[k] = v end
  -- rawset refuses what __newindex refuses.
  for k in pairs(prop_set) do read_only[k] = true end
  for k in pairs(methods) do read_only[k] = true end
  lib.lock(mt, read_only)
  class_of[mt] = name
  classes[name] = mt
  return mt
end

local handles_of_class = {} -- class name -> weak table: object table -> Python handle

local function new_object(class_name, handle, owner)
  local t = setmetatable({}, classes[class_name])
  handle_of[t] = handle
  handles_of_class[class_name][t] = handle
  owner_of[t] = owner
  return t
end
api.new_object = new_object

-- A function returning the handle of `self` if it is an object of `class_name`,
-- raising "bad self" (at the method's caller) otherwise: one table look-up.
local function handles_for(class_name)
  local handles = handles_of_class[class_name]
  if handles == nil then
    handles = setmetatable({}, { __mode = "k" })
    handles_of_class[class_name] = handles
  end
  return handles
end

local function self_checker(class_name)
  local handles = handles_for(class_name)
  return function(self, method)
    local h = handles[self]
    if h == nil then
      error(format("bad self to '%s' (%s expected, got %s; call it as obj:%s(...))",
        method, class_name, typename(self), method), 3)
    end
    return h
  end
end

local socket_address_handles = handles_for("SocketAddress")
local ip_address_handles = handles_for("IPAddress")

-- An address argument: number or string pass through, address objects become
-- their Python values; anything else is a type error naming the method.
local function address_arg(method, i, v, optional)
  local t = type(v)
  if t == "string" or t == "number" then return v end
  if t == "nil" and optional then return nil end
  local h = socket_address_handles[v] or ip_address_handles[v]
  if h ~= nil then return h end
  argerror(method, i, optional and "port" or "address", v)
end

---------------------------------------------------------------------------
-- Logging: FATAL ... TRACE and print, through Python's logging.
---------------------------------------------------------------------------
local log_level = { threshold = 20 } -- (a table: the other prelude files read it)

function api.set_log_threshold(level) log_level.threshold = level end

-- Where the code `level` frames above the caller of `code_position` is: the nearest
-- frame from there up with a source file. A tail call in a handler leaves none of
-- the application's frames; then the handler the runtime is running (a local of the
-- job below it) names its file and the line where it is defined.
local function code_position(level)
  level = level + 1
  local info = getinfo(level, "Sl")
  while info ~= nil do
    if sub(info.source, 1, 1) == "@" then return info.source, info.currentline end
    for i = 1, 8 do
      local name, value = getlocal(level, i)
      if name == nil then break end
      if (name == "handler" or name == "fn") and type(value) == "function" then
        local defined = getinfo(value, "S")
        if sub(defined.source, 1, 1) == "@" then return defined.source, defined.linedefined end
      end
    end
    level = level + 1
    info = getinfo(level, "Sl")
  end
  return "?", 0
end

-- Log `message` for application `owner`, attributed to the Lua code `frames` levels
-- up the stack from log_at (1: the function calling log_at, 2: its caller, ...).
local function log_at(owner, lvl, frames, message)
  if lvl < log_level.threshold then return end
  local source, line = code_position(frames + 1)
  host.log(lvl, owner, source, line, message)
end

local LEVELS = {
  FATAL = 50, CRITIC = 50, ERROR = 40, WARN = 30, NOTE = 25, INFO = 20, DEBUG = 10, TRACE = 5,
}
local ERROR_LEVEL, WARN_LEVEL, INFO_LEVEL = LEVELS.ERROR, LEVELS.WARN, LEVELS.INFO

-- The file and line an error message starts with, or else (an error raised with no
-- position: `error(x, 0)`, out of memory) the first application frame of its traceback.
local function error_position(text)
  local source, line = match(text, "^([^\n]-):(%d+): ")
  if source then return source, line end
  for frame_source, frame_line in gmatch(text, "\n\t([^\n]-):(%d+): in ") do
    if sub(frame_source, 1, 3) ~= "[C]" and not find(frame_source, "trio_mona/", 1, true) then
      return frame_source, frame_line
    end
  end
  return nil
end

-- The message handler of every handler call: the error and the stack where it was
-- raised; an error object that is no string is named as the standalone interpreter
-- does (its __tostring, or its type).
-- What os.exit raises to end its handler: not an error to report.
local EXIT = setmetatable({}, { __tostring = function() return "os.exit: the runtime stops" end })

local function with_traceback(err)
  if err == EXIT then return EXIT end
  if type(err) ~= "string" then
    local mt = raw_getmetatable(err)
    if mt ~= nil and rawget(mt, "__tostring") ~= nil then
      err = tostring(err)
    else
      err = format("(error object is a %s value)", type(err))
    end
  end
  return traceback(err, 2)
end

-- Log an error raised by `fn` (a handler, a main chunk), with the file and line from
-- the error, or where `fn` is defined when the error has none (out of memory).
local function report(owner, what, err, fn)
  if err == EXIT then return end
  -- Drop the frames of the prelude's own dispatch below the handler.
  local text = gsub(tostring(err), "\n%s*%[C%]: in %a+ 'xpcall'.*$", "")
  local source, line = error_position(text)
  if source then
    source = "@" .. source
  elseif fn ~= nil then
    local defined = getinfo(fn, "S")
    source, line = defined.source, defined.linedefined
  else
    source = "?"
  end
  -- (a handler the shutdown stopped did nothing wrong: an INFO line, not an ERROR)
  local level = lib.runaway.expired and host.stopping() ~= 0 and INFO_LEVEL or ERROR_LEVEL
  if level >= log_level.threshold then
    host.log(level, owner or "", source, tonumber(line) or 0, what .. " failed: " .. text)
  end
end

-- An application's __gc finalizer that failed or ran past the bound (_lua/stdlib.lua).
lib.on_finalizer_error = function(err, fn) report("", "finalizer (__gc)", err, fn) end

-- What the other prelude files use, re-bound as locals there.
return {
  ERROR_LEVEL = ERROR_LEVEL,
  EXIT = EXIT,
  INFO_LEVEL = INFO_LEVEL,
  LEVELS = LEVELS,
  WARN_LEVEL = WARN_LEVEL,
  address_arg = address_arg,
  api = api,
  argerror = argerror,
  getinfo = getinfo,
  outside_level = outside_level,
  raise = raise,
  class = class,
  classes = classes,
  by_token = host_functions.by_token, -- (raw: a value, not a function)
  clock = clock,
  collected = collected,
  coroutines = { create = create, resume = resume, yield = yield, running = running,
    isyieldable = isyieldable, sethook = sethook },
  concat = concat,
  data_changes = data_changes,
  error = error,
  find = find,
  floor = floor,
  format = format,
  gmatch = gmatch,
  gsub = gsub,
  handle_of = handle_of,
  handles_for = handles_for,
  handles_of_class = handles_of_class,
  host = host,
  host_result = host_result,
  internal_error = internal_error, -- (raw: Python's, for what runs outside the boundary)
  ip_address_handles = ip_address_handles,
  ipairs = ipairs,
  lib = lib,
  load = load,
  mark_class = mark_class,
  log_at = log_at,
  log_level = log_level,
  lower = lower,
  monotonic = host_functions.monotonic, -- (raw: the runaway hook calls it, no boundary)
  match = match,
  new_object = new_object,
  next = next,
  owner_of = owner_of,
  pairs = pairs,
  pcall = pcall,
  raw_getmetatable = raw_getmetatable,
  raw_setmetatable = raw_debug.setmetatable,
  rawget = rawget,
  rawset = rawset,
  real_require = real_require,
  remove = remove,
  report = report,
  select = select,
  self_checker = self_checker,
  sends = sends,
  setmetatable = setmetatable,
  socket_address_handles = socket_address_handles,
  sub = sub,
  tcp_send_held = host_functions.tcp_send_held, -- (raw: it must not finish held sends)
  tonumber = tonumber,
  tostring = tostring,
  traceback = traceback,
  type = type,
  typename = typename,
  unpack = unpack,
  with_traceback = with_traceback,
  xpcall = xpcall,
}
