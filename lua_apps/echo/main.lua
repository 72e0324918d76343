-- TCP echo server: every byte received goes straight back to its sender.
-- Configure with echo.host (default 127.0.0.1) and echo.port (default 1234).
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
NOTE("echo: listening on ", server.address)
