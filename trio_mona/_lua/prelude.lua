-- trio_mona's Lua prelude: the Lua half of the bridge, in six files run in order:
-- this one (the host boundary, held sends, classes, logging, the coroutine pool and
-- the runaway bound), _lua/objects.lua (jobs, address, TCP and UDP objects),
-- _lua/data.lua (the persistent `data` tree), _lua/servers.lua (`mona.servers`),
-- _lua/applications.lua (the `mona` object and the application tree) and
-- _lua/socket.lua (LuaSocket's API).
--
-- Run once per runtime with `host`, a table of Python functions (the only Python
-- objects Lua ever holds, kept here as upvalues that applications cannot reach).
-- Returns what the other two files use; `api` in it holds the Lua functions the
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
local format, sub, gsub, match, gmatch, find =
  G.string.format, G.string.sub, G.string.gsub, G.string.match, G.string.gmatch, G.string.find
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

-- Sends held during a job (docs: lua/tcp, "Sending"). A connection's first send in a
-- job goes to Python, which answers how many bytes more it may take (its room); later
-- sends of the same job wait here within that room, and go over as one string per
-- connection when the job ends, or before any host call that could change what a
-- connection is (`end_holding`). A room is valid in the job it was given in
-- (`job_number` counts them); `spare` bounds the bytes held over all connections by
-- the last answer, so no limit is passed; HELD_MAX bounds Lua's memory for them.
local held = {} -- handle -> strings held (empty between jobs)
local room = setmetatable({}, { __mode = "k" })     -- handle -> bytes it may still hold
local room_job = setmetatable({}, { __mode = "k" }) -- handle -> the job its room is for
local job_number, held_bytes, spare, holding = 0, 0, 0, false
local running_jobs = 0 -- sends hold only inside a job (not in Lua that Python calls directly)
local HELD_MAX = 1048576
local send_held = host_functions.tcp_send_held

local function flush_held()
  for h, parts in next, held do
    held[h] = nil
    local ok, err = pcall(send_held, h, parts[2] == nil and parts[1] or concat(parts))
    if not ok then internal_error("tcp_send_held", err) end
  end
  held_bytes = 0
end

local function end_holding()
  if held_bytes > 0 then flush_held() end
  job_number, holding = job_number + 1, false
end

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
      if holding then end_holding() end
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

---------------------------------------------------------------------------
-- Coroutine dispatch: every handler runs in a pooled coroutine.
---------------------------------------------------------------------------
local DONE, SUSPEND = {}, lib.SUSPEND
local pool, pooled = {}, 0
local suspended = {} -- token -> coroutine
local workers = setmetatable({}, { __mode = "k" }) -- the executor's coroutines
lib.set_private_threads(workers) -- applications cannot resume or close them

local function worker(job, a, b, c)
  while true do
    local result = job(a, b, c)
    -- A parked coroutine must not keep the last event's objects alive.
    job, a, b, c = nil, nil, nil, nil
    job, a, b, c = yield(DONE, result)
  end
end

-- Coroutines of the application's own that waited (docs: lua/luasocket): the runtime
-- resumes them from then on, until they end or yield to nobody.
local adopted = setmetatable({}, { __mode = "k" })

-- (a park Python knows by its token: its suspension never crosses into Lua)
local BY_TOKEN = host_functions.by_token

local function settle_adopted(co, ok, tag, value, request)
  if ok and tag == SUSPEND then
    suspended[value] = co
    if request == nil then return BY_TOKEN, value end
    return request
  end
  adopted[co], workers[co] = nil, nil -- it ended, or yielded: the application's again
  if not ok and tag ~= EXIT then report("", "coroutine", traceback(co, tostring(tag))) end
  return 0
end

local function settle(co, ok, tag, value, request)
  if adopted[co] then return settle_adopted(co, ok, tag, value, request) end
  if not ok then
    -- Only reachable when a job itself is broken: jobs catch handler errors.
    report("", "handler coroutine", traceback(co, tostring(tag)))
    return 0
  end
  if tag == DONE then
    pooled = pooled + 1
    pool[pooled] = co
    return value
  end
  if tag == SUSPEND then
    suspended[value] = co
    if request == nil then return BY_TOKEN, value end
    return request
  end
  report("", "handler", "coroutine.yield() outside a suspending call; the handler was dropped")
  return 0
end

-- The runaway bound (docs: lua/safety): a count hook on every worker coroutine raises an
-- error in a handler that has run longer than `budget` seconds without returning:
-- seconds of the clock on the wall, which is what everyone else waits (the CPU clock
-- left out what a handler waited in the system: a handler writing `data` stopped at a
-- "2 s" bound after 4.7 s). The clock starts at the hook's first call in a handler,
-- not when the handler starts: reading it costs a call into Python, too dear for every
-- event, and the first HOOK_EVERY instructions take milliseconds. (On LuaJIT the hook does
-- not fire inside compiled loops: best effort.)
--
-- Past the bound the handler cannot catch the error (no pcall returns it: see
-- _lua/stdlib.lua), coroutines the application creates carry the hook too, and while the
-- runtime is shutting down on a signal every handler stops at the next hook call.
local budget, started = 0, nil
local HOOK_EVERY = 100000 -- instructions (a handler that spends its time in Python calls
-- runs few of them a second: more often, and the bound is not overshot by much)
local runaway_state, stopping = lib.runaway, host.stopping
local monotonic = host_functions.monotonic

local function runaway()
  if budget <= 0 then return end
  local info = getinfo(2, "S")
  if info ~= nil and sub(info.source, 1, 11) == "=trio_mona/" then return end
  local stop = stopping() -- (onStop runs to its end, or its bound, unless a signal came)
  if stop == 2 or (stop == 1 and not runaway_state.finishing) then
    runaway_state.expired = true
    error("the runtime is shutting down: handler stopped", 2)
  end
  local now = monotonic()
  if started == nil then
    started = now
  elseif now - started > budget then
    runaway_state.expired = true
    error(format("handler ran for more than %g s without returning "
      .. "(trio_mona.handler_timeout)", budget), 2)
  end
end

runaway_state.hook = function(co)
  if budget > 0 then sethook(co, runaway, "", HOOK_EVERY) end
end

function api.set_handler_timeout(seconds) budget = seconds end

-- Run a worker coroutine until it returns or yields: one job, or the rest of one that
-- waited. What it sent and held goes to Python when it stops (see end_holding).
-- LuaSocket objects collected (__gc), by serial number: their handles went with them.
local to_close, closing = {}, 0
local close_socket = host_functions.ls_close_collected

local function close_later(serial)
  closing = closing + 1
  to_close[closing] = serial
end

local function close_collected()
  for i = 1, closing do
    pcall(close_socket, to_close[i])
    to_close[i] = nil
  end
  closing = 0
end

local function step(co, ...)
  started = nil
  running_jobs = running_jobs + 1
  local ok, tag, value, request = resume(co, ...)
  running_jobs = running_jobs - 1
  runaway_state.expired, runaway_state.finishing = false, false
  if data_changes.due then data_changes.flush() end
  if holding then end_holding() end
  if closing > 0 then close_collected() end
  return ok, tag, value, request
end

local function run(job, a, b, c)
  local co
  if pooled > 0 then
    co = pool[pooled]
    pool[pooled] = nil
    pooled = pooled - 1
  else
    co = create(worker)
    workers[co] = true
    if budget > 0 then sethook(co, runaway, "", HOOK_EVERY) end
  end
  local ok, tag, value, request = step(co, job, a, b, c)
  if tag == DONE and ok then -- the common case of settle(), without the call
    pooled = pooled + 1
    pool[pooled] = co
    return value
  end
  return settle(co, ok, tag, value, request)
end

-- At shutdown, once the applications have stopped: their pending __gc finalizers, as
-- one job under the runaway bound (_lua/stdlib.lua).
local function finalize_job()
  lib.finalize_all()
  return 0
end

function api.finalize_all() return run(finalize_job) end

-- Suspend the running coroutine until Python resumes it (docs: design): `request` is
-- the Suspension Python made with `token`. Returns what it is resumed with. A
-- coroutine of the application's own is adopted by its resume (_lua/stdlib.lua).
local function cannot_wait(name)
  error(format("'%s' has to wait, and it was called where Lua cannot wait (outside any "
    .. "coroutine, or inside a C function such as a table.sort comparator)", name), 4)
end

local function wait(name, token, request)
  if isyieldable ~= nil then
    if not isyieldable() then cannot_wait(name) end -- (false outside any coroutine too)
  else
    local co, main = running()
    if co == nil or main then cannot_wait(name) end
  end
  return yield(SUSPEND, token, request)
end

lib.adopt = function(co, token, request)
  suspended[token] = co
  workers[co], adopted[co] = true, true
  host.adopt(token, request)
end

-- Wrap `start` (a Python function returning a token and a Suspension) as a Lua
-- function that suspends the calling handler until Python resumes it.
function api.suspending(name, start)
  return function(...) return wait(name, host_result(name, pcall(start, ...))) end
end

function api.resume(token, ...)
  local co = suspended[token]
  suspended[token] = nil
  if co == nil then return 0 end
  return settle(co, step(co, ...))
end

function api.drop(token) suspended[token] = nil end

-- Connections whose state a method call may have changed while a handler ran
-- (disconnect, a failed send): the re-call loop asks Python only about these.
local touched = setmetatable({}, { __mode = "k" })

-- TCPClient:send (the class is in _lua/objects.lua); here, because it holds sends (above).
local tcp_client = self_checker("TCPClient")
local tcp_handles, tcp_send = handles_for("TCPClient"), host.tcp_send
local function tcp_client_send(self, data) -- the hot path: look-ups inlined
  local h = tcp_handles[self] or tcp_client(self, "send")
  local t = type(data)
  if t ~= "string" then
    if t == "number" then data = tostring(data) else argerror("send", 1, "string", data) end
  end
  local left = room[h]
  if left ~= nil and room_job[h] == job_number then
    local size = #data
    if size <= left and size <= spare then -- held until the job ends
      if size == 0 then return nil end
      if held_bytes + size > HELD_MAX then flush_held() end
      local parts = held[h]
      if parts == nil then held[h] = { data } else parts[#parts + 1] = data end
      room[h], spare, held_bytes = left - size, spare - size, held_bytes + size
      return nil
    end
  end
  if held_bytes > 0 then flush_held() end -- in order, and `spare` exact again
  local r, err = tcp_send(h, data)
  if r then
    if running_jobs > 0 then room[h], room_job[h], spare, holding = r, job_number, r, true end
    return nil
  end
  touched[self] = true
  return err
end

-- What _lua/objects.lua and _lua/applications.lua use, re-bound as locals there.
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
  clock = clock,
  close_later = close_later,
  concat = concat,
  data_changes = data_changes,
  error = error,
  find = find,
  floor = floor,
  format = format,
  gmatch = gmatch,
  gsub = gsub,
  handle_of = handle_of,
  handles_of_class = handles_of_class,
  host = host,
  host_result = host_result,
  ip_address_handles = ip_address_handles,
  ipairs = ipairs,
  lib = lib,
  load = load,
  mark_class = mark_class,
  log_at = log_at,
  log_level = log_level,
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
  run = run,
  select = select,
  self_checker = self_checker,
  setmetatable = setmetatable,
  socket_address_handles = socket_address_handles,
  sub = sub,
  tcp_client_send = tcp_client_send,
  tonumber = tonumber,
  tostring = tostring,
  touched = touched,
  traceback = traceback,
  type = type,
  typename = typename,
  unpack = unpack,
  wait = wait,
  with_traceback = with_traceback,
  xpcall = xpcall,
}
