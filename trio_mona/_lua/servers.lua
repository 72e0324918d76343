-- trio_mona's Lua prelude, part 5 (after _lua/data.lua): `mona.servers`, the other
-- processes of the cluster (docs: scaling). Returns `shared`, with `servers` added.
--
-- `servers` is a plain array of Server objects in the order they joined (so `#` and
-- `ipairs` work on every engine); `count`, `broadcast` and a look-up by address come
-- from its metatable. Python (_cluster/servers.py) says who joins and leaves and
-- hands over the calls of the others; arguments travel as AMF.
local shared = ...
local api, host, error, format, type = shared.api, shared.host, shared.error, shared.format, shared.type
local select, setmetatable, tostring, unpack = shared.select, shared.setmetatable, shared.tostring, shared.unpack
local rawget, rawset, argerror, lib = shared.rawget, shared.rawset, shared.argerror, shared.lib
local amf = shared.formats.amf
local servers_send = host.servers_send

local servers = {}
local by_id = {}  -- id -> Server
local id_of = setmetatable({}, { __mode = "k" }) -- Server -> id

local function send(id, name, handler, ...)
  if type(handler) ~= "string" then argerror(name, 1, "string", handler) end
  if id == nil and #servers == 0 then return end -- (a broadcast to nobody: nothing to do)
  local err = servers_send(id, handler, amf.encode(select("#", ...), ...))
  if err ~= nil then error(name .. ": " .. err, 3) end
end

local SERVER_METHODS = {
  send = function(self, handler, ...)
    local id = id_of[self]
    if id == nil then error("bad self to 'send' (Server expected; call it as server:send(...))", 2) end
    if by_id[id] ~= self then error("send: this server has left the cluster", 2) end
    send(id, "send", handler, ...)
  end,
}
local SERVER = {
  __index = SERVER_METHODS,
  __tostring = function(self) return "Server " .. tostring(rawget(self, "address")) end,
  __metatable = "Server",
}
lib.lock(SERVER)

local SERVERS = {
  __index = function(_, k)
    if k == "count" then return #servers end
    if k == "broadcast" then
      return function(first, ...)
        if first == servers then return send(nil, "broadcast", ...) end
        return send(nil, "broadcast", first, ...)
      end
    end
    if type(k) == "string" then
      for i = 1, #servers do
        if rawget(servers[i], "address") == k then return servers[i] end
      end
    end
    return nil
  end,
  __newindex = function(_, k) error(format("'%s' is read-only on mona.servers", tostring(k)), 2) end,
  __tostring = function() return "Servers" end,
  __metatable = "Servers",
}
lib.lock(SERVERS)
shared.servers = setmetatable(servers, SERVERS)

-- A process joined: its Server object (for onServerConnection).
function api.server_joined(id, address, hostname, pid)
  local server = setmetatable({ address = address, host = hostname, pid = pid }, SERVER)
  by_id[id], id_of[server] = server, id
  rawset(servers, #servers + 1, server)
  return server
end

-- Processes left (or were lost): their Server objects, an array (for
-- onServerDisconnection). One pass over `servers` for all of them, in join order.
function api.servers_left(...)
  local gone, left, n = {}, {}, 0
  for i = 1, select("#", ...) do
    local id = select(i, ...)
    local server = by_id[id]
    if server ~= nil then
      by_id[id], gone[server] = nil, true
      n = n + 1
      left[n] = server
    end
  end
  if n == 0 then return left end
  local kept, total = 0, #servers
  for i = 1, total do
    local server = servers[i]
    if not gone[server] then
      kept = kept + 1
      rawset(servers, kept, server)
    end
  end
  for i = kept + 1, total do rawset(servers, i, nil) end
  return left
end

-- The method `handler` of the Server object of `id`, and the arguments it is called
-- with (nil and why when there is none, or the arguments cannot be read).
function api.server_call(id, handler, payload)
  local server = by_id[id]
  if server == nil then return nil, "from a server that is not in mona.servers" end
  local method = rawget(server, handler)
  if type(method) ~= "function" then
    return nil, format("%s has no method %s (define it in onServerConnection)", tostring(server),
      tostring(handler))
  end
  local ok, values, count = shared.pcall(amf.decode, payload)
  if not ok then return nil, "its arguments cannot be read: " .. tostring(values) end
  return function() return method(server, unpack(values, 1, count)) end
end

return shared
