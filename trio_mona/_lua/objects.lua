-- trio_mona's Lua prelude, part 3 (after _lua/jobs.lua): what a coroutine runs for
-- each kind of event, and the address, TCP and UDP objects. Returns `shared` with
-- what _lua/applications.lua needs from here added.
local shared = ...
local ERROR_LEVEL, address_arg, api, argerror =
  shared.ERROR_LEVEL, shared.address_arg, shared.api, shared.argerror
local class, classes, clock, error =
  shared.class, shared.classes, shared.clock, shared.error
local floor, format, handle_of, handles_of_class =
  shared.floor, shared.format, shared.handle_of, shared.handles_of_class
local host, ip_address_handles, log_at, new_object =
  shared.host, shared.ip_address_handles, shared.log_at, shared.new_object
local owner_of, pairs, rawget, report =
  shared.owner_of, shared.pairs, shared.rawget, shared.report
local run, self_checker, setmetatable, socket_address_handles =
  shared.run, shared.self_checker, shared.setmetatable, shared.socket_address_handles
local sub, tcp_client_send, tonumber, tostring =
  shared.sub, shared.tcp_client_send, shared.tonumber, shared.tostring
local touched, type, typename, with_traceback =
  shared.touched, shared.type, shared.typename, shared.with_traceback
local xpcall =
  shared.xpcall

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

-- Several connections' data in one call from Python (pairs `t, data`, each connection
-- once): the crossing is paid per batch (docs/performance.rst). Stops at the first job
-- that returns anything but 0 (a rest, or a wait) and returns its pair's index with it,
-- so that Python settles it before the next pairs run; 0 when every job returned 0.
function api.on_data_many(...)
  local pairs_ = { ... }
  for i = 1, #pairs_, 2 do
    local t = pairs_[i]
    -- (one of the batch's handlers may have disconnected it: no more onData then)
    if touched[t] then
      touched[t] = nil
      if not host.tcp_get(handle_of[t], "connected") then goto next end
    end
    do
      local r, token = run(data_job, t, pairs_[i + 1])
      if r ~= 0 then return i, r, token end
    end
    ::next::
  end
  return 0
end

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

-- What api.on_event returns when the object has no handler for the event (so the
-- caller applies the default); the bridge reads it from here.
api.NO_HANDLER = "no handler"

-- Fire event `name` on object `t` with one optional argument. Returns 0 (done),
-- api.NO_HANDLER, or what `run` returns for a handler that waits.
function api.on_event(t, name, arg)
  if rawget(t, name) == nil and not (name == "onConnection" and rawget(t, "clientHandler")) then
    return api.NO_HANDLER
  end
  return run(event_job, t, name, arg)
end

-- Run a function (a main chunk or an application event) with error reporting;
-- returns nil on success or the error message.
local function call_job(fn, what, owner_and_arg)
  -- (onStop may finish its work once shutdown has begun: docs/operations.rst)
  shared.lib.runaway.finishing = what == "onStop"
  local ok, err = xpcall(fn, with_traceback, owner_and_arg[2])
  if ok or err == shared.EXIT then return nil end -- (os.exit: the runtime stops)
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

-- The host API (docs: embedding). Functions the host exposes, by name (`mona.host`):
-- each answers true and its results, or false and an error message for the caller.
local host_api = {}
shared.host_api = setmetatable({}, {
  __index = host_api,
  __newindex = function(_, k) error(format("'%s' is read-only on mona.host", tostring(k)), 2) end,
  __pairs = function() return shared.next, host_api, nil end,
  __metatable = "host",
})
shared.lib.lock(shared.raw_getmetatable(shared.host_api))

local function host_answer(ok, ...)
  if ok then return ... end
  error((...), 2)
end

-- (`fn` answers through `host_answer`; anything it raises past that is the runtime's
-- own failure: logged, a plain string here.)
function api.expose(name, fn)
  local changes, where = shared.data_changes, "mona.host." .. name
  local host_result, pcall = shared.host_result, shared.pcall
  host_api[name] = function(...)
    if changes.due then changes.flush() end -- (the host may write: data first)
    return host_answer(host_result(where, pcall(fn, ...)))
  end
end

-- runtime.call: `env[name](unpack(box.args))` in a job; its results in `box` (n: how
-- many), or box.error and box.traceback; box.missing when `name` is no function of `env`.
local traceback, select_ = shared.traceback, shared.select

local function host_call_job(env, name, box)
  local args = box.args
  local fn = rawget(env, name)
  if type(fn) ~= "function" then
    box.missing = type(fn)
    return 0
  end
  local function keep(ok, ...)
    if not ok then return end
    box.n = select_("#", ...)
    for i = 1, box.n do box[i] = (select_(i, ...)) end
  end
  keep(xpcall(fn, function(e)
    box.error, box.traceback = tostring(e), traceback("", 2)
    return e
  end, shared.unpack(args, 1, args.n)))
  return 0
end

function api.host_call(env, name, box) return run(host_call_job, env, name, box) end

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

-- Property names come from Python, where each is read (one list per class).
local properties = host.properties
class("IPAddress", {}, properties.IPAddress, host.addr_get, address_meta)

local host_cache = setmetatable({}, { __mode = "k" })
local socket_meta = {}
for k, v in pairs(address_meta) do socket_meta[k] = v end
class("SocketAddress", {}, properties.SocketAddress, function(h, k)
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

-- The options of a TLS client socket: tls (boolean), sni (string), verify (boolean,
-- default true), ca (a file); unknown keys are refused (a misspelt `verify` must not
-- turn verification off silently).
local CLIENT_TLS = { tls = "boolean", sni = "string", verify = "boolean", ca = "string" }
-- After a one-argument address form, a table of options takes the second place: a
-- plain table with keys (an empty one, or an object, stays an address argument).
local function options_second(b, options)
  return options == nil and type(b) == "table" and shared.raw_getmetatable(b) == nil
    and shared.next(b) ~= nil
end
local function checked_options(method, options, allowed)
  if options == nil then return {} end
  if type(options) ~= "table" then argerror(method, 3, "table", options) end
  for k, v in shared.next, options do
    local want = allowed[k]
    if want == nil then error(format("bad option '%s' to '%s'", tostring(k), method), 3) end
    if type(v) ~= want then
      error(format("bad option '%s' to '%s' (%s expected, got %s)", k, method, want, typename(v)), 3)
    end
  end
  return options
end
local function tls_options(method, options)
  local o = checked_options(method, options, CLIENT_TLS)
  local verify = o.verify
  if verify == nil then verify = true end
  return o.tls == true, o.sni, verify, o.ca
end
local SERVER_TLS = { certificate = "string", key = "string" }
local function server_tls_options(options)
  local o = checked_options("start", options, SERVER_TLS)
  return o.certificate, o.key
end

local tcp_client = self_checker("TCPClient")
class("TCPClient", {
  -- connect(address..., [options]): options.tls (and sni, verify, ca) for TLS
  -- (docs: lua/tcp, "TLS").
  connect = function(self, a, b, options)
    local h = tcp_client(self, "connect")
    if options_second(b, options) then b, options = nil, b end
    local tls, sni, verify, ca = tls_options("connect", options)
    return host.tcp_connect(h, self, address_arg("connect", 1, a), address_arg("connect", 2, b, true),
      tls, sni, verify, ca)
  end,
  send = tcp_client_send,
  disconnect = function(self)
    touched[self] = true
    return host.tcp_disconnect(tcp_client(self, "disconnect"))
  end,
}, properties.TCPClient, host.tcp_get, {
  __tostring = function(t)
    local peer = host.tcp_get(handle_of[t], "peerAddress")
    return "TCPClient(" .. (peer and tostring(peer) or "not connected") .. ")"
  end,
})

local tcp_server = self_checker("TCPServer")
class("TCPServer", {
  -- start(address..., [options]): options.certificate and options.key for TLS.
  start = function(self, a, b, options)
    local h = tcp_server(self, "start")
    if options_second(b, options) then b, options = nil, b end
    local certificate, key = server_tls_options(options)
    local ok, err = host.tcp_server_start(h, self, address_arg("start", 1, a), address_arg("start", 2, b, true),
      certificate, key)
    if not ok then owner_log(self, err) end
    return ok
  end,
  stop = function(self)
    return host.tcp_server_stop(tcp_server(self, "stop"))
  end,
}, properties.TCPServer, host.tcp_server_get, {
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
}, properties.UDPSocket, host.udp_get, {
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

shared.resolve = resolve

-- The conversions write an object as a map of its properties (docs: lua/conversions).
local function add_views(names)
  for _, name in shared.ipairs(names) do
    local props = properties[name]
    shared.formats.values.add_view(classes[name], function(t)
      local view = {}
      for i = 1, #props do view[props[i]] = t[props[i]] end
      return view
    end, shared.raw_getmetatable)
  end
end
shared.add_views = add_views
add_views({ "IPAddress", "SocketAddress", "TCPClient", "TCPServer", "UDPSocket" })
return shared
