-- UDP echo server: every datagram goes back to its sender, boundaries kept.
-- Configure with udp_echo.host (default 127.0.0.1) and udp_echo.port (default 1237).
local host = mona.configs["udp_echo.host"] or "127.0.0.1"
local port = mona.configs["udp_echo.port"] or 1237

socket = mona:createUDPSocket()

function socket:onPacket(data, address)
  TRACE("udp_echo: ", #data, " bytes from ", address)
  self:send(data, address)
end

local err = socket:bind(host, port)
if err then error("udp_echo: " .. err) end
NOTE("udp_echo: listening on ", socket.address)
