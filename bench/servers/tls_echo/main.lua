-- bench/tls.py's bulk echo: a Lua TCP echo on bench.port, over TLS when bench.certificate
-- and bench.key name a certificate and its key (server:start's options; docs: lua/tcp).
local port = mona.configs["bench.port"]
local certificate, key = mona.configs["bench.certificate"], mona.configs["bench.key"]

server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(data)
    self:send(data)
    return 0
  end
end

local options = certificate and { certificate = certificate, key = key } or nil
if not server:start("127.0.0.1", port, options) then
  error("tls_echo: cannot listen on port " .. tostring(port))
end
