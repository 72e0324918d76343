-- Echo server over TCP and UDP: every byte (or datagram) received goes straight back.
-- Configure with echo.host (default 127.0.0.1) and echo.port (default 1234);
-- UDP is served on the same port as TCP.
local host = mona.configs["echo.host"] or "127.0.0.1"
local port = mona.configs["echo.port"] or 1234

server = mona:createTCPServer()

function server:onConnection(client)
  DEBUG("echo: connection from ", client.peerAddress)
  function client:onData(data)
    self:send(data)
    return 0
  end
  function client:onDisconnection()
    if self.error then INFO("echo: ", self.peerAddress, " closed: ", self.error) end
  end
end

if not server:start(host, port) then
  error("echo: cannot listen on " .. host .. ":" .. port)
end

-- With port 0 the system picks a TCP port; UDP then takes the same number.
udp = mona:createUDPSocket()
function udp:onPacket(data, address)
  self:send(data, address)
end
local err = udp:bind(server.address.host, server.port)
if err then error("echo: " .. err) end

NOTE("echo: listening on ", server.address, " (TCP and UDP)")
