-- Peer: native Lua with LuaSocket and copas (Debian's lua-socket and lua-copas),
-- a TCP echo through copas coroutines and a UDP echo on the same port.
local copas = require("copas")
local socket = require("socket")
local port = tonumber(arg[1])

local server = assert(socket.bind("127.0.0.1", port))
copas.addserver(server, function(client)
  client:setoption("tcp-nodelay", true)
  while true do
    local data, err, partial = copas.receivePartial(client, 65536)
    data = data or partial
    if data and #data > 0 then copas.send(client, data) end
    if err == "closed" then return end
  end
end)

local udp = assert(socket.udp())
assert(udp:setsockname("127.0.0.1", port))
udp:settimeout(0)
copas.addthread(function()
  while true do
    local data, host, from_port = copas.receivefrom(udp, 65536)
    if data then udp:sendto(data, host, from_port) end
  end
end)

copas.loop()
