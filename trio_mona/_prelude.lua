-- trio_mona's Lua prelude: the Lua half of the bridge.
--
-- Run once per runtime with `host`, a table of Python functions (the only Python
-- objects Lua ever holds, kept here as upvalues that applications cannot reach).
-- Returns `api`, the Lua functions the Python executor calls.
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
local setmetatable, xpcall, pcall = G.setmetatable, lib.raw.xpcall, lib.raw.pcall
local format, sub, gsub, match, gmatch, find =
  G.string.format, G.string.sub, G.string.gsub, G.string.match, G.string.gmatch, G.string.find
local concat, remove, unpack = G.table.concat, G.table.remove, G.table.unpack or G.unpack
local floor = G.math.floor
local yield, running = G.coroutine.yield, G.coroutine.running
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
}

local host = {}
for name, value in pairs(host_functions) do
  if type(value) ~= "userdata" then
    host[name] = value
  elseif KEEPS_HELD[name] then
    host[name] = function(...) return host_result(name, pcall(value, ...)) end
  else
    host[name] = function(...)
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
local function argerror(method, i, expected, v, level)
  error(format("bad argument #%d to '%s' (%s expected, got %s)", i, method, expected, typename(v)),
    level or 3)
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
  argerror(method, i, optional and "port" or "address", v, 4)
end

---------------------------------------------------------------------------
-- Logging: FATAL ... TRACE and print, through Python's logging.
---------------------------------------------------------------------------
local threshold = 20

function api.set_log_threshold(level) threshold = level end

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
  if lvl < threshold then return end
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
local function with_traceback(err)
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
  if ERROR_LEVEL >= threshold then
    host.log(ERROR_LEVEL, owner or "", source, tonumber(line) or 0, what .. " failed: " .. text)
  end
end

---------------------------------------------------------------------------
-- Coroutine dispatch: every handler runs in a pooled coroutine.
---------------------------------------------------------------------------
local DONE, SUSPEND = {}, {}
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

local function settle(co, ok, tag, value, request)
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
    return request
  end
  report("", "handler", "coroutine.yield() outside a suspending call; the handler was dropped")
  return 0
end

-- The runaway bound (docs: lua/safety): a count hook on every worker coroutine raises an
-- error in a handler that has run longer than `budget` seconds of CPU without
-- returning. The clock starts at the hook's first call in a handler, not when the
-- handler starts: reading the CPU clock is a system call, too dear for every event,
-- and the first HOOK_EVERY instructions take milliseconds. (On LuaJIT the hook does
-- not fire inside compiled loops: best effort.)
--
-- Past the bound the handler cannot catch the error (no pcall returns it: see
-- _stdlib.lua), coroutines the application creates carry the hook too, and while the
-- runtime is shutting down on a signal every handler stops at the next hook call.
local budget, started = 0, nil
local HOOK_EVERY = 1000000 -- instructions
local runaway_state, stopping = lib.runaway, host.stopping

local function runaway()
  if budget <= 0 then return end
  local info = getinfo(2, "S")
  if info ~= nil and sub(info.source, 1, 11) == "=trio_mona/" then return end
  if stopping() then
    runaway_state.expired = true
    error("the runtime is shutting down: handler stopped", 2)
  end
  local now = clock()
  if started == nil then
    started = now
  elseif now - started > budget then
    runaway_state.expired = true
    error(format("handler ran for more than %g s of CPU without returning "
      .. "(trio_mona.handler_timeout)", budget), 2)
  end
end

runaway_state.hook = function(co)
  if budget > 0 then sethook(co, runaway, "", HOOK_EVERY) end
end

function api.set_handler_timeout(seconds) budget = seconds end

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
  started = nil
  running_jobs = running_jobs + 1
  local ok, tag, value, request = resume(co, job, a, b, c)
  running_jobs = running_jobs - 1
  runaway_state.expired = false
  if holding then -- end_holding, inlined: most jobs send
    if held_bytes > 0 then flush_held() end
    job_number, holding = job_number + 1, false
  end
  if tag == DONE and ok then -- the common case of settle(), without the call
    pooled = pooled + 1
    pool[pooled] = co
    return value
  end
  return settle(co, ok, tag, value, request)
end

-- Wrap `start` (a Python function returning a token and a Suspension) as a Lua
-- function that suspends the calling handler until Python resumes it (docs: design).
function api.suspending(name, start)
  return function(...)
    if not workers[running()] then
      error(format("'%s' has to wait, so it can only be called from a handler or a main "
        .. "chunk, not from a coroutine of your own", name), 2)
    end
    local token, request = start(...)
    return yield(SUSPEND, token, request)
  end
end

function api.resume(token, ...)
  local co = suspended[token]
  suspended[token] = nil
  if co == nil then return 0 end
  started = nil
  running_jobs = running_jobs + 1
  local ok, tag, value, request = resume(co, ...)
  running_jobs = running_jobs - 1
  runaway_state.expired = false
  if holding then -- end_holding, inlined: most jobs send
    if held_bytes > 0 then flush_held() end
    job_number, holding = job_number + 1, false
  end
  return settle(co, ok, tag, value, request)
end

function api.drop(token) suspended[token] = nil end

---------------------------------------------------------------------------
-- Jobs: what a coroutine runs for each kind of event.
---------------------------------------------------------------------------

-- The onData "rest" rule (docs: lua/tcp): how many bytes at the end stay unconsumed.
local function rest_count(r, size)
  r = tonumber(r)
  if r == nil or r ~= r or r <= 0 then return 0 end
  if r >= size then return size end
  return floor(r)
end
api.rest_count = rest_count

-- Connections whose state a method call may have changed while a handler ran
-- (disconnect, a failed send): the re-call loop asks Python only about these.
local touched = setmetatable({}, { __mode = "k" })

-- The re-call loop hands the handler a window of what is left, not all of it: the
-- copy per message stays small however large the buffer (all of it was O(n²)); the
-- window doubles while a message does not fit. Bytes; docs: lua/tcp.
local WINDOW = 256
-- CPU seconds one onData job may run before it lets other sockets have a turn; it
-- goes on later with what is left (a negative return: see the executor).
local JOB_BUDGET = 0.001

-- Call onData (or its alias onReception) until the rest rule says stop; return how
-- many bytes at the end of `data` to keep for the next call, negated when the job
-- stopped for its budget and must be run again with them at once.
local function data_job(t, data)
  local handler = rawget(t, "onData") or rawget(t, "onReception")
  if handler == nil then return 0 end
  local ok, r = xpcall(handler, with_traceback, t, data)
  if not ok then
    report(owner_of[t], "onData", r, handler)
    return 0
  end
  if r == nil or r == 0 then return 0 end -- consumed everything: the usual answer
  local size = #data
  local rest = rest_count(r, size)
  if rest == 0 or rest == size then return rest end
  local h, window, calls, since = handle_of[t], WINDOW, 0, nil
  local first = size - rest + 1 -- the first byte not consumed yet
  while true do
    -- No more onData once the handler disconnected (docs: lua/tcp).
    if touched[t] then
      touched[t] = nil
      if not host.tcp_get(h, "connected") then return 0 end
    end
    calls = calls + 1
    if calls % 64 == 0 then
      local now = clock()
      since = since or now
      if now - since > JOB_BUDGET then return first - size - 1 end
    end
    local last = first + window - 1
    local view = sub(data, first, last)
    local n = #view
    ok, r = xpcall(handler, with_traceback, t, view)
    if not ok then
      report(owner_of[t], "onData", r, handler)
      return 0
    end
    rest = (r == nil or r == 0) and 0 or rest_count(r, n)
    if rest < n then
      first = first + n - rest
      if first > size then return 0 end
    elseif last >= size then
      return rest -- the rest of the buffer is kept for new bytes
    else
      window = window * 2 -- a message longer than the window: show it more
    end
  end
end

function api.on_data(t, data) return run(data_job, t, data) end

local function packet_job(t, data, sender)
  local handler = rawget(t, "onPacket") or rawget(t, "onReception")
  if handler == nil then return 0 end
  local ok, err = xpcall(handler, with_traceback, t, data, sender)
  if not ok then report(owner_of[t], "onPacket", err, handler) end
  return 0
end

function api.on_packet(t, data, sender) return run(packet_job, t, data, sender) end

local function event_job(t, name, arg)
  local handler = rawget(t, name)
  if handler == nil then
    local alias = name == "onConnection" and "clientHandler" or nil
    handler = alias and rawget(t, alias)
    if handler == nil then return 0 end
  end
  local ok, err = xpcall(handler, with_traceback, t, arg)
  if not ok then report(owner_of[t], name, err, handler) end
  return 0
end

-- Fire event `name` on object `t` with one optional argument. Returns 0, or 1 when
-- the object has no handler for it (so the caller can apply the default).
function api.on_event(t, name, arg)
  if rawget(t, name) == nil and not (name == "onConnection" and rawget(t, "clientHandler")) then
    return 1
  end
  return run(event_job, t, name, arg)
end

-- Run a function (a main chunk or an application event) with error reporting;
-- returns nil on success or the error message.
local function call_job(fn, what, owner_and_arg)
  local ok, err = xpcall(fn, with_traceback, owner_and_arg[2])
  if ok then return nil end
  report(owner_and_arg[1], what, err, fn)
  return tostring(err)
end

function api.call(fn, what, owner, arg) return run(call_job, fn, what, { owner, arg }) end

-- A mona:setTimer function: returns the next delay in milliseconds (0 stops it).
local function timer_job(fn, owner)
  local ok, r = xpcall(fn, with_traceback)
  if not ok then
    report(owner, "timer", r, fn)
    return 0
  end
  return tonumber(r) or 0
end

function api.call_timer(fn, owner) return run(timer_job, fn, owner) end

---------------------------------------------------------------------------
-- Address objects.
---------------------------------------------------------------------------
local function address_value(v)
  return handle_of[v]
end

local function compare(a, b)
  local va, vb = address_value(a), address_value(b)
  if va == nil or vb == nil then
    error(format("attempt to compare %s with %s", typename(a), typename(b)), 3)
  end
  return host.addr_compare(va, vb)
end

-- One side of `..` with an address: strings, numbers and addresses only, with Lua's
-- own message for anything else.
local function concat_operand(v)
  local t = type(v)
  if t == "string" or t == "number" then return v end
  local h = socket_address_handles[v] or ip_address_handles[v]
  if h ~= nil then return host.addr_get(h, "value") end
  error(format("attempt to concatenate a %s value", typename(v)), 3)
end

local address_meta = {
  __tostring = function(t) return host.addr_get(handle_of[t], "value") end,
  __concat = function(a, b) return concat_operand(a) .. concat_operand(b) end,
  __eq = function(a, b)
    local va, vb = address_value(a), address_value(b)
    if va == nil or vb == nil then return false end
    return host.addr_compare(va, vb) == 0
  end,
  __lt = function(a, b) return compare(a, b) < 0 end,
  __le = function(a, b) return compare(a, b) <= 0 end,
}

local ip_props = {
  "value", "isIPv6", "isWildcard", "isBroadcast", "isAnyBroadcast", "isLoopback",
  "isMulticast", "isUnicast", "isLinkLocal", "isSiteLocal", "isIPv4Compatible",
  "isIPv4Mapped", "isWellKnownMC", "isNodeLocalMC", "isLinkLocalMC", "isSiteLocalMC",
  "isOrgLocalMC", "isGlobalMC", "isLocal",
}
class("IPAddress", {}, ip_props, host.addr_get, address_meta)

local host_cache = setmetatable({}, { __mode = "k" })
local socket_meta = {}
for k, v in pairs(address_meta) do socket_meta[k] = v end
class("SocketAddress", {}, { "host", "port", "isIPv6", "value" }, function(h, k)
  return host.addr_get(h, k)
end, socket_meta)
-- SocketAddress.host is an IPAddress object, the same one each time.
local socket_index = classes.SocketAddress.__index
classes.SocketAddress.__index = function(t, k)
  if k == "host" then
    local ip = host_cache[t]
    if ip == nil then
      ip = new_object("IPAddress", host.addr_get(handle_of[t], "host"), owner_of[t])
      host_cache[t] = ip
    end
    return ip
  end
  return socket_index(t, k)
end

function api.wrap_socket_address(v) return new_object("SocketAddress", v, "") end

---------------------------------------------------------------------------
-- TCP client and server (docs: lua/tcp).
---------------------------------------------------------------------------
local function owner_log(self, message)
  log_at(owner_of[self] or "", ERROR_LEVEL, 3, message)
end

local tcp_client = self_checker("TCPClient")
local tcp_handles, tcp_send = handles_of_class.TCPClient, host.tcp_send
class("TCPClient", {
  connect = function(self, a, b)
    local h = tcp_client(self, "connect")
    return host.tcp_connect(h, self, address_arg("connect", 1, a), address_arg("connect", 2, b, true))
  end,
  send = function(self, data) -- the hot path: look-ups inlined
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
  end,
  disconnect = function(self)
    touched[self] = true
    return host.tcp_disconnect(tcp_client(self, "disconnect"))
  end,
}, { "connected", "address", "peerAddress", "error", "idleTime" }, host.tcp_get, {
  __tostring = function(t)
    local peer = host.tcp_get(handle_of[t], "peerAddress")
    return "TCPClient(" .. (peer and tostring(peer) or "not connected") .. ")"
  end,
})

local tcp_server = self_checker("TCPServer")
class("TCPServer", {
  start = function(self, a, b)
    local h = tcp_server(self, "start")
    local ok, err = host.tcp_server_start(h, self, address_arg("start", 1, a), address_arg("start", 2, b, true))
    if not ok then owner_log(self, err) end
    return ok
  end,
  stop = function(self)
    return host.tcp_server_stop(tcp_server(self, "stop"))
  end,
}, { "address", "port", "running" }, host.tcp_server_get, {
  __tostring = function(t)
    local address = host.tcp_server_get(handle_of[t], "address")
    return "TCPServer(" .. (address and tostring(address) or "stopped") .. ")"
  end,
})

local udp_checker = self_checker("UDPSocket")
local udp_handles, udp_send = handles_of_class.UDPSocket, host.udp_send
local udp_attached = setmetatable({}, { __mode = "k" })
-- The handle of a UDP socket object; on first use, the handle learns its Lua object
-- (passed once, not on every send).
local function udp_socket(self, method)
  local h = udp_checker(self, method)
  if not udp_attached[self] then
    host.udp_attach(h, self)
    udp_attached[self] = true
  end
  return h
end

class("UDPSocket", {
  bind = function(self, a, b)
    local h = udp_socket(self, "bind")
    return host.udp_bind(h, address_arg("bind", 1, a), address_arg("bind", 2, b, true))
  end,
  connect = function(self, a, b)
    local h = udp_socket(self, "connect")
    return host.udp_connect(h, address_arg("connect", 1, a), address_arg("connect", 2, b, true))
  end,
  disconnect = function(self)
    return host.udp_disconnect(udp_checker(self, "disconnect"))
  end,
  send = function(self, data, a, b) -- the hot path: look-ups inlined
    local h = udp_handles[self]
    if h == nil or not udp_attached[self] then h = udp_socket(self, "send") end
    local t = type(data)
    if t ~= "string" then
      if t == "number" then data = tostring(data) else argerror("send", 1, "string", data) end
    end
    if a ~= nil then a = socket_address_handles[a] or address_arg("send", 2, a) end
    if b ~= nil then b = address_arg("send", 3, b, true) end
    return udp_send(h, data, a, b)
  end,
  close = function(self)
    return host.udp_close(udp_checker(self, "close"))
  end,
}, { "address", "peerAddress" }, host.udp_get, {
  __tostring = function(t)
    local address = host.udp_get(handle_of[t], "address")
    return "UDPSocket(" .. (address and tostring(address) or "unbound") .. ")"
  end,
})

-- The ...WithDNS factories suspend their caller while Trio resolves the name.
local resolve = {
  ip = api.suspending("createIPAddressWithDNS", host.resolve_start),
  socket = api.suspending("createSocketAddressWithDNS", host.resolve_start),
}

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

local function mona_factory(app, path)
  local mona = {}
  local function method(impl)
    return function(first, ...)
      if first == mona then return impl(...) end
      return impl(first, ...)
    end
  end
  -- mona:createIPAddress / createSocketAddress and their ...WithDNS variants:
  -- an optional error callback first, then the address arguments.
  local function create_address(kind, dns, ...)
    local onerror = nil
    local args = { ... }
    if type(args[1]) == "function" then onerror = remove(args, 1) end
    local a, b = args[1], args[2]
    local method = (kind == "ip" and "createIPAddress" or "createSocketAddress")
      .. (dns and "WithDNS" or "")
    local va, vb
    if kind == "ip" then
      if type(a) == "table" and typename(a) == "IPAddress" then return a end
      if type(a) ~= "string" then argerror(method, onerror and 2 or 1, "string", a) end
      va = a
    else
      va = address_arg(method, onerror and 2 or 1, a)
      vb = address_arg(method, onerror and 3 or 2, b, true)
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
  local members = {
    absolutePath = method(function(app_path)
      if app_path ~= nil and type(app_path) ~= "string" then
        argerror("absolutePath", 1, "string", app_path)
      end
      return host.absolute_path(app_path or path)
    end),
    split = method(split),
    md5 = method(function(...) return digest("md5", ...) end),
    sha256 = method(function(...) return digest("sha256", ...) end),
    time = method(function() return host.time_ms() end),
    dump = method(function(data, size)
      if type(data) ~= "string" then argerror("dump", 1, "string", data) end
      if size ~= nil and type(size) ~= "number" then argerror("dump", 2, "number", size) end
      log_at(path, INFO_LEVEL, 2, host.hexdump(data, size))
    end),
    listPaths = method(function(dir)
      if type(dir) ~= "string" then argerror("listPaths", 1, "string", dir) end
      local entries, err = host.list_paths(dir)
      if entries == nil then
        log_at(path, WARN_LEVEL, 2, err)
        return nil, err
      end
      local files = {}
      for i, entry in ipairs(entries) do files[i] = new_file(entry) end
      return files
    end),
    setTimer = method(function(fn, delay)
      if type(fn) ~= "function" then argerror("setTimer", 1, "function", fn) end
      if type(delay) ~= "number" then argerror("setTimer", 2, "number", delay) end
      host.set_timer(path, fn, delay)
    end),
    createTCPClient = method(function()
      return new_object("TCPClient", host.tcp_client_new(app), path)
    end),
    createTCPServer = method(function()
      return new_object("TCPServer", host.tcp_server_new(app), path)
    end),
    createUDPSocket = method(function(allow_broadcast)
      local t = type(allow_broadcast)
      if t ~= "nil" and t ~= "boolean" then
        argerror("createUDPSocket", 1, "boolean", allow_broadcast)
      end
      return new_object("UDPSocket", host.udp_new(app, allow_broadcast == true), path)
    end),
    createIPAddress = method(function(...) return create_address("ip", false, ...) end),
    createSocketAddress = method(function(...) return create_address("socket", false, ...) end),
    createIPAddressWithDNS = method(function(...) return create_address("ip", true, ...) end),
    createSocketAddressWithDNS = method(function(...)
      return create_address("socket", true, ...)
    end),
    addToBlacklist = method(function(...) return blacklist("addToBlacklist", true, ...) end),
    removeFromBlacklist = method(function(...)
      return blacklist("removeFromBlacklist", false, ...)
    end),
  }
  local props = {
    configs = host.configs,
    environment = host.environment,
  }
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
    env[level_name] = function(...) if lvl >= threshold then log_at(path, lvl, 2, render_args("", ...)) end end
  end
  env.print = function(...) if INFO_LEVEL >= threshold then log_at(path, INFO_LEVEL, 2, render_args("\t", ...)) end end
  env.require, env.dofile, env.loadfile = file_functions(env)
  env.load = lib.loader(env)
  env.loadstring = env.load
  env.module = lib.module_function(env, package_loaded)
  local properties = {
    name = name, path = path, this = env, super = parent_env,
    children = children_table(env, children),
  }
  local mt = {
    __index = function(_, k)
      local v = properties[k]
      if v ~= nil then return v end
      v = children[k]
      if v ~= nil then return v or child_of(env, k) end
      return base[k]
    end,
    __newindex = function(t, k, v)
      if properties[k] ~= nil or k == "super" then
        error(format("'%s' is read-only", tostring(k)), 2)
      end
      rawset(t, k, v)
    end,
  }
  lib.lock(mt, { name = true, path = true, this = true, super = true, children = true })
  return setmetatable(env, mt)
end

-- Make `child_env` the child `name` of `parent_env`: an environment, false for a
-- child not loaded yet, nil for none.
function api.set_child(parent_env, name, child_env)
  children_of[parent_env][name] = child_env
end

return api
