-- trio_mona's Lua prelude, part 7 (after _lua/applications.lua): LuaSocket's API,
-- `require "socket"` (docs: lua/luasocket). Each call that would block parks only the
-- calling coroutine: the Python side (_net/luasocket.py) answers `nil, nil, token,
-- request` when it has to wait (request nil: a park Python keeps by its token), the
-- coroutine yields them, and when it is resumed it asks again (or, resumed with
-- "timeout", asks for the timeout's answer); a waiting receive is resumed with its
-- answer.
-- Returns `shared` with `api.socket_module(owner)` added: one module per application,
-- so that every socket belongs to the application whose code made it.
local shared = ...
local api, error, floor, format, host =
  shared.api, shared.error, shared.floor, shared.format, shared.host
local match, pairs, select, setmetatable, sub =
  shared.match, shared.pairs, shared.select, shared.setmetatable, shared.sub
local tonumber, tostring, type, typename, wait, pcall =
  shared.tonumber, shared.tostring, shared.type, shared.typename, shared.wait, shared.pcall
local raw_getmetatable, raw_setmetatable = shared.raw_getmetatable, shared.raw_setmetatable
local getinfo, outside_level, raise = shared.getinfo, shared.outside_level, shared.raise

-- LuaSocket objects collected (__gc), by serial number: their handles went with them,
-- and their sockets are closed when the job that ran the collector stops (a finalizer
-- must not call into Python: the prelude's `collected` record).
local collected, to_close, closing = shared.collected, {}, 0
local close_socket = host.ls_close_collected

local function close_later(serial)
  closing = closing + 1
  to_close[closing] = serial
  collected.due = true
end

function collected.close()
  for i = 1, closing do
    pcall(close_socket, to_close[i])
    to_close[i] = nil
  end
  closing, collected.due = 0, false
end

-- As LuaSocket's C functions raise through luaL_argerror: the error is at the
-- application's line; argument `i` counts after self in a method call (`i` 0: self
-- itself), and names the function as the caller did ('?' through pcall), counting
-- self, in any other call. `plain`: a module function (no self).
local function arg_error(method, i, why, plain)
  local level = outside_level() -- (the application's frame; the method is just below)
  local called = getinfo(level - 1, "n")
  local message
  if plain then
    message = format("bad argument #%d to '%s' (%s)", i, called and called.name or "?", why)
  elseif called ~= nil and called.namewhat == "method" then
    message = i == 0 and format("calling '%s' on bad self (%s)", method, why)
      or format("bad argument #%d to '%s' (%s)", i, method, why)
  else
    message = format("bad argument #%d to '%s' (%s)", i + 1, called and called.name or "?", why)
  end
  error(message, level)
end

local PLAIN = { sleep = true, select = true, toip = true, tohostname = true,
  getaddrinfo = true, getnameinfo = true, source = true, sink = true }

local function argerror(method, i, expected, v)
  arg_error(method, i, format("%s expected, got %s", expected, v == nil and "no value" or typename(v)),
    PLAIN[method])
end


local VERSION = "LuaSocket 3.0.0"
local BLOCKSIZE = 2048 -- what socket.source reads at a time

local handle_of = setmetatable({}, { __mode = "k" })  -- socket object -> Python handle
local address_of = setmetatable({}, { __mode = "k" }) -- socket object -> "0x..." for tostring
local family_of = setmetatable({}, { __mode = "k" })  -- "tcp" or "udp"
local serial_of = setmetatable({}, { __mode = "k" })  -- the handle's number (for __gc)
local classes = {} -- "tcp{client}" ... -> metatable
local kind_of_mt = {} -- metatable -> "client", "server", ...

local kind_of = host.ls_kind

local client_handle = setmetatable({}, { __mode = "k" }) -- TCP clients: the hot paths' check

-- Give `t` the class its handle now has (a master becomes a client or a server).
local function reclass(t)
  local kind = kind_of(handle_of[t])
  local mt = classes[family_of[t] .. "{" .. kind .. "}"]
  if raw_getmetatable(t) ~= mt then raw_setmetatable(t, mt) end
  if kind == "client" and family_of[t] == "tcp" then client_handle[t] = handle_of[t] end
  return t
end

local function new_socket(family, h)
  local t = {}
  address_of[t] = match(tostring(t), "0x%x+") or "0x0"
  handle_of[t] = h
  family_of[t] = family
  serial_of[t] = host.ls_serial(h)
  return reclass(t)
end

-- The handle of `self` if it is one of `kinds` ("any" for every kind of its family);
-- a type error at the caller otherwise.
local function check(self, method, family, kinds)
  local h = handle_of[self]
  if h ~= nil and family_of[self] == family then
    if kinds == "any" then return h end
    local kind = kind_of_mt[raw_getmetatable(self)]
    if kinds[kind] then return h end
  end
  local expected = kinds == "any" and family .. "{any}"
    or family .. "{" .. (kinds.client and "client" or kinds.server and "server"
      or kinds.master and "master" or kinds.connected and "connected" or "unconnected") .. "}"
  arg_error(method, 0, expected .. " expected")
end

-- One value on success, nil and the message on failure (LuaSocket's counts).
local function answer(r, err)
  if r == nil then return nil, err end
  return r
end

-- Repeat `attempt(first, timed_out)` until it answers something other than a wait.
local function until_done(method, attempt, ...)
  local first, timed_out = true, false
  while true do
    local a, b, c, d, e = attempt(first, timed_out, ...)
    if a ~= nil or b ~= nil then return a, b, c, d, e end
    first = false
    timed_out = wait(method, c, d) ~= nil
  end
end

-- A call answered at once, or after one wait with the answer (name look-ups).
local function answered(method, a, b, c, d, ...)
  if a == nil and b == nil and c ~= nil then return wait(method, c, d) end
  return a, b, c, d, ...
end

local function number_arg(method, i, v, default)
  if v == nil and default ~= nil then return default end
  local n = tonumber(v)
  if n == nil then argerror(method, i, "number", v) end
  return n
end

-- A whole number within [low, high] (a NaN, an infinity or 1e300 included: clamped, as
-- the C library would take some value of them; NaN as `low`).
local function bounded_arg(method, i, v, default, low, high)
  local n = number_arg(method, i, v, default)
  if n ~= n or n < low then return low end
  if n > high then return high end
  return floor(n)
end

local function string_arg(method, i, v, default)
  if v == nil and default ~= nil then return default end
  local t = type(v)
  if t == "number" then return tostring(v) end
  if t ~= "string" then argerror(method, i, "string", v) end
  return v
end

-- A port argument: a number or a service name, read as LuaSocket's getaddrinfo reads
-- its text (`kind`: "tcp", "udp", or "sendto" for that path's own words); nil and
-- the error when it names no port.
local function port_arg(method, i, port, kind)
  local t = type(port)
  if t ~= "number" and t ~= "string" then argerror(method, i, "string", port) end
  return host.ls_port(tostring(port), kind)
end

-- Names to addresses, without blocking the loop ("*" is every interface).
local function addresses(method, address, family, passive)
  address = string_arg(method, 1, address)
  return answered(method, host.ls_resolve(address, family, passive))
end

---------------------------------------------------------------------------
-- Methods, shared by every kind; each checks the kinds it is for.
---------------------------------------------------------------------------
local CLIENT, SERVER, MASTER = { client = true }, { server = true }, { master = true }
-- What each option's value must be (LuaSocket checks it before the system call).
local OPTION_TYPES = host.ls_option_types
-- Per client: the wait handed out for its next receive (token, mode, count).
local armed = setmetatable({}, { __mode = "k" })
local CONNECTABLE = { master = true, client = true }
local tcp, udp = {}, {}

local function common(methods, family)
  function methods:close()
    local h = check(self, "close", family, "any")
    host.ls_close(h)
    return 1.0
  end
  function methods:getsockname() return host.ls_getsockname(check(self, "getsockname", family, "any")) end
  function methods:settimeout(value, mode)
    local h = check(self, "settimeout", family, "any")
    if value ~= nil then value = number_arg("settimeout", 1, value) end
    mode = string_arg("settimeout", 2, mode, "b")
    armed[self] = nil -- (a wait handed out ahead has no deadline)
    host.ls_settimeout(h, value, (mode == "t" or mode == "r") and "t" or "b")
    return 1.0
  end
  methods.timeout = methods.settimeout -- (the old name)
  function methods:gettimeout() return host.ls_gettimeout(check(self, "gettimeout", family, "any")) end
  function methods:getfamily()
    local name = host.ls_family(check(self, "getfamily", family, "any"))
    return name == "inet6" and "inet6" or "inet4"
  end
  function methods:setoption(name, ...)
    local h = check(self, "setoption", family, "any")
    name = string_arg("setoption", 1, name)
    local value = ...
    local wanted = OPTION_TYPES[name]
    if wanted == nil then
      arg_error("setoption", 1, format("unsupported option `%s'", name))
    elseif type(value) ~= wanted then
      arg_error("setoption", 2, format("%s expected, got %s", wanted,
        select("#", ...) == 0 and "no value" or typename(value)))
    end
    if name == "linger" then
      return host.ls_setoption(h, name, value.on and true or false, tonumber(value.timeout) or 0)
    end
    if sub(name, -11) == "-membership" then
      return host.ls_setoption(h, name, value.multiaddr, value.interface)
    end
    return answer(host.ls_setoption(h, name, value, nil))
  end
  function methods:getoption(name)
    local h = check(self, "getoption", family, "any")
    name = string_arg("getoption", 1, name)
    local a, b = host.ls_getoption(h, name)
    if a == nil and b == "unsupported option" then
      arg_error("getoption", 1, format("unsupported option `%s'", name))
    end
    if a == nil then return nil, b end
    if name == "linger" then return { on = a, timeout = b } end
    return a
  end
  function methods:getfd() return host.ls_getfd(check(self, "getfd", family, "any")) end
  function methods:setfd() check(self, "setfd", family, "any") end -- (not supported: see docs)
  function methods:dirty() return host.ls_dirty(check(self, "dirty", family, "any")) end
end

common(tcp, "tcp")
common(udp, "udp")

-- Connect a master to the first of the addresses `address` names that answers.
local function connect_to(h, address, port, family)
  local ips = { addresses("connect", address, family, false) }
  if ips[1] == nil then return nil, ips[2] end
  local err = "host not found"
  for _, ip in pairs(ips) do
    local ok
    ok, err = until_done("connect", function(first, timed_out)
      if first then return host.ls_connect_start(h, ip, port) end
      return host.ls_connect_finish(h, timed_out)
    end)
    if ok then return ok end
    if err == "timeout" then return nil, err end
  end
  return nil, err
end

function tcp:bind(address, port)
  local h = check(self, "bind", "tcp", MASTER)
  local err
  port, err = port_arg("bind", 2, port, "tcp")
  if port == nil then return nil, err end
  local ip
  ip, err = addresses("bind", address, host.ls_family(h), true)
  if ip == nil then return nil, err end
  return host.ls_bind(h, ip, port)
end

function tcp:listen(backlog)
  local h = check(self, "listen", "tcp", MASTER)
  local r, err = host.ls_listen(h, bounded_arg("listen", 1, backlog, 32, 0, 65535))
  reclass(self)
  return answer(r, err)
end

function tcp:connect(address, port)
  local h = check(self, "connect", "tcp", CONNECTABLE)
  local r, err = port_arg("connect", 2, port, "tcp")
  if r ~= nil then r, err = connect_to(h, address, r, host.ls_family(h)) end
  if r == nil and err ~= "timeout" then host.ls_connect_failed(h) end
  reclass(self)
  return answer(r, err)
end

-- (LuaSocket's TCP objects take these names too)
tcp.setsockname, tcp.setpeername = tcp.bind, tcp.connect

function tcp:accept()
  local h = check(self, "accept", "tcp", SERVER)
  local client, err = until_done("accept", host.ls_accept, h)
  if client == nil then return nil, err end
  return new_socket("tcp", client)
end

local PATTERNS = { l = "l", a = "a" }
local ls_receive, ls_send = host.ls_receive, host.ls_send

local function counted(...) return select("#", ...), ... end

function tcp:receive(pattern, prefix)
  local h = client_handle[self] or check(self, "receive", "tcp", CLIENT)
  local mode, count = "l", 0
  local n = tonumber(pattern) -- (a count may be given as text, as in LuaSocket)
  if n ~= nil then
    if not (n >= 0) then arg_error("receive", 1, "invalid receive pattern") end
    mode, count = "n", floor(n)
  elseif pattern ~= nil then
    if type(pattern) ~= "string" then argerror("receive", 1, "string", pattern) end
    mode = PATTERNS[sub(pattern, 1, 1) == "*" and sub(pattern, 2, 2) or sub(pattern, 1, 1)]
    if mode == nil then arg_error("receive", 1, "invalid receive pattern") end
  end
  if prefix ~= nil then
    prefix = string_arg("receive", 2, prefix)
    -- (a count includes the prefix, as in LuaSocket)
    if mode == "n" and #prefix > 0 then
      if count <= #prefix then return prefix, nil, nil end
      count = count - #prefix
    end
  end
  -- The wake-up carries the answer (three values; the hub read for it), and may hand
  -- out the wait for the next receive of the same pattern (its token, a fourth: parked
  -- on with no call); one value, "timeout": the wait timed out; none: ask again.
  local data, err, partial, request
  local a = armed[self]
  if a ~= nil and a[1] ~= nil and a[2] == mode and a[3] == count then
    partial = a[1]
    a[1] = nil
  else
    if a ~= nil then a[1] = nil end
    data, err, partial, request = ls_receive(h, mode, count, true, false)
  end
  while data == nil and err == nil do
    local n, next_token
    n, data, err, partial, next_token = counted(wait("receive", partial, request))
    if n == 1 then
      data, err, partial = ls_receive(h, mode, count, false, true)
    elseif n == 0 then
      data, err, partial, request = ls_receive(h, mode, count, false, false)
    elseif n == 4 then
      if a == nil then a = {}; armed[self] = a end
      a[1], a[2], a[3] = next_token, mode, count
    end
  end
  if data ~= nil then return prefix and prefix .. data or data, nil, nil end
  return nil, err, prefix and prefix .. partial or partial
end

function tcp:send(data, i, j)
  local h = client_handle[self] or check(self, "send", "tcp", CLIENT)
  if type(data) ~= "string" then data = string_arg("send", 1, data) end
  local size = #data
  if i == nil and j == nil then -- (the usual call: all of it)
    i, j = 1, size
  else
    i, j = number_arg("send", 2, i, 1), number_arg("send", 3, j, -1)
  end
  if i < 0 then i = size + i + 1 end
  if j < 0 then j = size + j + 1 end
  if i < 1 then i = 1 end
  if j > size then j = size end
  if i > j then return i - 1.0, nil, nil end
  local part = (i == 1 and j == size) and data or sub(data, i, j)
  -- (a wait answers nil, nil, token, request and the bytes sent so far)
  local sent, err, last, request, done = ls_send(h, part, 0, true, false)
  while sent == nil and err == nil do
    local timed_out = wait("send", last, request) ~= nil
    sent, err, last, request, done = ls_send(h, part, done, false, timed_out)
  end
  if sent ~= nil then return sent + i - 1.0, nil, nil end
  return nil, err, last + i - 1.0
end

function tcp:getpeername() return host.ls_getpeername(check(self, "getpeername", "tcp", "any")) end

function tcp:shutdown(how)
  local h = check(self, "shutdown", "tcp", CLIENT)
  how = string_arg("shutdown", 1, how, "both")
  if how ~= "both" and how ~= "send" and how ~= "receive" then
    arg_error("shutdown", 1, format("invalid option '%s'", how))
  end
  return host.ls_shutdown(h, how)
end

function tcp:getstats() return host.ls_getstats(check(self, "getstats", "tcp", "any")) end
function tcp:setstats(received, sent, age)
  local h = check(self, "setstats", "tcp", "any")
  return host.ls_setstats(h, number_arg("setstats", 1, received),
    number_arg("setstats", 2, sent), number_arg("setstats", 3, age))
end

-- UDP -----------------------------------------------------------------------
function udp:setsockname(address, port)
  local h = check(self, "setsockname", "udp", { unconnected = true })
  local err
  port, err = port_arg("setsockname", 2, port, "udp")
  if port == nil then return nil, err end
  local ip
  ip, err = addresses("setsockname", address, host.ls_family(h), true)
  if ip == nil then return nil, err end
  return host.ls_bind(h, ip, port)
end

function udp:setpeername(address, port)
  local h = check(self, "setpeername", "udp", "any")
  if address == "*" then
    local r, err = host.ls_disconnect(h)
    reclass(self)
    return answer(r, err)
  end
  local err
  port, err = port_arg("setpeername", 2, port, "udp")
  if port == nil then return nil, err end
  local ips = { addresses("setpeername", address, host.ls_family(h), false) }
  if ips[1] == nil then return nil, ips[2] end
  local r, err = host.ls_connect_start(h, ips[1], port)
  reclass(self)
  return answer(r, err)
end

function udp:getpeername() return host.ls_getpeername(check(self, "getpeername", "udp", "any")) end

function udp:send(data)
  local h = check(self, "send", "udp", { connected = true })
  return host.ls_send_datagram(h, string_arg("send", 1, data), nil, 0)
end

function udp:sendto(data, address, port)
  local h = check(self, "sendto", "udp", { unconnected = true })
  data = string_arg("sendto", 1, data)
  local err
  port, err = port_arg("sendto", 3, port, "sendto")
  if port == nil then return nil, err end
  local ip
  ip, err = addresses("sendto", address, host.ls_family(h), false)
  if ip == nil then return nil, err end
  return host.ls_send_datagram(h, data, ip, port)
end

local function receive_datagram(h, size)
  return until_done("receive", function(first, timed_out)
    return host.ls_receive_datagram(h, size, first, timed_out)
  end)
end

function udp:receive(size)
  local h = check(self, "receive", "udp", "any")
  local data, err = receive_datagram(h, bounded_arg("receive", 1, size, 8192, 0, 65536))
  if data == nil then return nil, err end
  return data
end

function udp:receivefrom(size)
  local h = check(self, "receivefrom", "udp", { unconnected = true })
  local data, ip, port = receive_datagram(h, bounded_arg("receivefrom", 1, size, 8192, 0, 65536))
  if data == nil then return nil, ip end
  return data, ip, port
end

-- trio_mona.luasocket_debug: what a LuaSocket built with LUASOCKET_DEBUG returns, the
-- seconds the call took as one more value.
if host.luasocket_debug then
  local gettime, plain_send, plain_receive = host.ls_gettime, tcp.send, tcp.receive
  local function timed(start, a, b, c) return a, b, c, gettime() - start end
  function tcp:send(...) return timed(gettime(), plain_send(self, ...)) end
  function tcp:receive(...) return timed(gettime(), plain_receive(self, ...)) end
end

---------------------------------------------------------------------------
-- The classes.
---------------------------------------------------------------------------
local function define(family, kind, methods)
  local name = family .. "{" .. kind .. "}"
  local index = { class = name }
  for k, v in pairs(methods) do index[k] = v end
  local mt = {
    __index = index,
    __tostring = function(t) return name .. ": " .. address_of[t] end,
    __metatable = name,
    -- (the handle itself may be collected with the object: its number stays)
    __gc = function(t) local n = serial_of[t]; if n ~= nil then close_later(n) end end,
    __name = name,
  }
  classes[name] = mt
  kind_of_mt[mt] = kind
  shared.mark_class(mt, name)
end
for _, kind in pairs({ "master", "client", "server" }) do define("tcp", kind, tcp) end
for _, kind in pairs({ "unconnected", "connected" }) do define("udp", kind, udp) end

-- LuaSec's wrap (_lua/luasec.lua): a new object of class `mt` takes over the TCP
-- client `old`'s handle; `old` is spent (it is no socket any more).
local spent_methods = {}
for name in pairs(tcp) do spent_methods[name] = function() return nil, "closed" end end
spent_methods.close = function() return 1.0 end
spent_methods.receive = function() return nil, "closed", "" end
local spent_mt = { __index = spent_methods, __metatable = "tcp{client}",
  __tostring = function(t) return "tcp{client}: " .. address_of[t] end }
local function adopt(old, mt, kind)
  local t = {}
  address_of[t] = match(tostring(t), "0x%x+") or "0x0"
  handle_of[t], family_of[t], serial_of[t] = handle_of[old], "tcp", serial_of[old]
  client_handle[t] = handle_of[old]
  handle_of[old], client_handle[old], serial_of[old], armed[old] = nil, nil, nil, nil
  raw_setmetatable(old, spent_mt) -- (as LuaSec leaves it: every call answers "closed")
  kind_of_mt[mt] = kind
  raw_setmetatable(t, mt)
  return t
end
shared.luasocket = {
  tcp = tcp, check = check, until_done = until_done, string_arg = string_arg,
  arg_error = arg_error, CLIENT = CLIENT, adopt = adopt, serial_of = serial_of,
  close_later = close_later, address_of = address_of,
}

---------------------------------------------------------------------------
-- The module, one per application.
---------------------------------------------------------------------------
-- The error object of socket.try / newtry: only protect() unwraps it.
local try_error_mt = { __tostring = function(e) return tostring(e[1]) end }

local function newtry(finalizer)
  return function(...)
    local ok = ...
    if ok then return ... end
    if finalizer ~= nil then pcall(finalizer) end
    error(setmetatable({ (select(2, ...)) }, try_error_mt), 0)
  end
end

local function protected(ok, ...)
  if ok then return ... end
  local err = ...
  if type(err) == "table" and raw_getmetatable(err) == try_error_mt then return nil, err[1] end
  error(err, 0)
end

local function protect(f)
  return function(...) return protected(pcall(f, ...)) end
end

-- A table of sockets for select: their handles in order, and the objects by handle index.
local function collect(t, i)
  local handles, objects = {}, {}
  if t == nil then return handles, objects end
  if type(t) ~= "table" then argerror("select", i, "table", t) end
  local n = 0
  for k, s in pairs(t) do
    if type(k) == "number" then
      local h = handle_of[s]
      if h == nil then
        arg_error("select", i, format("socket expected at index %s, got %s", tostring(k),
          typename(s)), true)
      end
      n = n + 1
      handles[n], objects[n] = h, s
    end
  end
  return handles, objects
end

local function picked(objects, flags)
  local result, n = {}, 0
  for i = 1, #flags do
    if sub(flags, i, i) == "1" then
      n = n + 1
      result[n] = objects[i]
      result[objects[i]] = n * 1.0
    end
  end
  return result
end

local function select_(recvt, sendt, timeout)
  local rh, robjects = collect(recvt, 1)
  local sh, sobjects = collect(sendt, 2)
  if timeout ~= nil then timeout = number_arg("select", 3, timeout) end
  local deadline = host.ls_deadline(timeout)
  local rflags, sflags = until_done("select", function(_, timed_out)
    return host.ls_select(rh, sh, deadline, timed_out)
  end)
  local readable, writable = picked(robjects, rflags), picked(sobjects, sflags)
  if readable[1] == nil and writable[1] == nil then return readable, writable, "timeout" end
  return readable, writable
end

-- socket.sinkt / socket.sourcet: the modes of socket.sink / socket.source (the ltn12
-- protocol: a sink takes chunks then nil, a source gives chunks then nil).
local sinkt, sourcet = {}, {}

sinkt["close-when-done"] = function(sock)
  return function(chunk)
    if chunk == nil then sock:close(); return 1 end
    return sock:send(chunk)
  end
end

sinkt["keep-open"] = function(sock)
  return function(chunk)
    if chunk == nil then return 1 end
    return sock:send(chunk)
  end
end
sinkt.default = sinkt["keep-open"]

sourcet["by-length"] = function(sock, length)
  local left = number_arg("source", 3, length)
  return function()
    if left <= 0 then return nil end
    local chunk, err = sock:receive(left < BLOCKSIZE and left or BLOCKSIZE)
    if err then return nil, err end
    left = left - #chunk
    return chunk
  end
end

sourcet["until-closed"] = function(sock)
  local done = false
  return function()
    if done then return nil end
    local chunk, err, partial = sock:receive(BLOCKSIZE)
    if chunk then return chunk end
    if err == "closed" then
      sock:close()
      done = true
      return partial
    end
    return nil, err
  end
end
sourcet.default = sourcet["until-closed"]

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- socket.choose: a function that calls `table[name](...)`, "default" when the first
-- argument is not a string (socket.sink and socket.source are made with it).
local function choose(choices)
  return function(name, opt1, opt2)
    if type(name) ~= "string" then name, opt1, opt2 = "default", name, opt1 end
    local f = choices[name or "nil"]
    if not f then raise("unknown key (" .. tostring(name) .. ")") end
    return f(opt1, opt2)
  end
end

function api.socket_module(owner)
  local function new(family_name, family)
    return function()
      local h, err = host.ls_new(owner, family_name, family)
      if h == nil then return nil, err end
      return new_socket(family_name, h)
    end
  end
  local m = {
    _VERSION = VERSION,
    _DEBUG = host.luasocket_debug or nil,
    _SETSIZE = host.ls_setsize(),
    _SOCKETINVALID = -1,
    tcp = new("tcp", "unspec"), tcp4 = new("tcp", "inet"), tcp6 = new("tcp", "inet6"),
    udp = new("udp", "unspec"), udp4 = new("udp", "inet"), udp6 = new("udp", "inet6"),
    select = select_,
    gettime = host.ls_gettime,
    newtry = newtry,
    protect = protect,
    choose = choose,
    skip = function(d, ...) return select(d + 1, ...) end,
    sourcet = copy(sourcet), sinkt = copy(sinkt), -- (each application its own)
    BLOCKSIZE = BLOCKSIZE,
    _DATAGRAMSIZE = 8192,
    __unload = function() end, -- (the C module's hook: nothing to release here)
  }
  m.sink, m.source = choose(m.sinkt), choose(m.sourcet)
  m.try = newtry()
  function m.sleep(seconds)
    seconds = number_arg("sleep", 1, seconds)
    wait("socket.sleep", host.ls_sleep(owner, seconds))
  end
  local function bind(family_name, family)
    return function(address, port, backlog)
      local s, err = new(family_name, family)()
      if s == nil then return nil, err end
      s:setoption("reuseaddr", true)
      local ok
      ok, err = s:bind(address, port)
      if not ok then s:close(); return nil, err end
      ok, err = s:listen(backlog)
      if not ok then s:close(); return nil, err end
      return s
    end
  end
  m.bind = bind("tcp", "unspec")
  local function connect(family)
    return function(address, port, laddr, lport)
      local s, err = new("tcp", family)()
      if s == nil then return nil, err end
      if laddr ~= nil then
        local ok
        ok, err = s:bind(laddr, lport or 0)
        if not ok then s:close(); return nil, err end
      end
      local ok
      ok, err = s:connect(address, port)
      if not ok then s:close(); return nil, err end
      return s
    end
  end
  m.connect, m.connect4, m.connect6 = connect("unspec"), connect("inet"), connect("inet6")
  local dns = {}
  function dns.gethostname() return host.ls_gethostname() end
  local function lookup(kind, name, extra)
    return answered("socket.dns." .. kind, host.ls_dns(kind, name, extra))
  end
  function dns.toip(name) return lookup("toip", string_arg("toip", 1, name)) end
  function dns.tohostname(name) return lookup("tohostname", string_arg("tohostname", 1, name)) end
  function dns.getaddrinfo(name) return lookup("getaddrinfo", string_arg("getaddrinfo", 1, name)) end
  function dns.getnameinfo(name, port)
    if name ~= nil then name = string_arg("getnameinfo", 1, name) end
    if port ~= nil then port = string_arg("getnameinfo", 2, port) end
    if name == nil and port == nil then raise("host and serv cannot be both nil") end
    return lookup("getnameinfo", name, port)
  end
  m.dns = dns
  return m
end

return shared
