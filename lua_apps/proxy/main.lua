-- A TCP forwarding proxy: every connection to proxy.host:proxy.port (default
-- 127.0.0.1:1236) is relayed to proxy.upstream ("host:port", required).
-- When either side closes, or a send to it fails, both sides are closed.
local host = mona.configs["proxy.host"] or "127.0.0.1"
local port = mona.configs["proxy.port"] or 1236
local upstream = mona.configs["proxy.upstream"]
if not upstream then error("proxy: set proxy.upstream, e.g. --set proxy.upstream=127.0.0.1:80") end

local function relay(from, to)
  function from:onData(data)
    local err = to:send(data)
    if err then
      WARN("proxy: send to ", to.peerAddress or upstream, " failed: ", err)
      from:disconnect()
      to:disconnect()
    end
  end
  function from:onDisconnection()
    if self.error then INFO("proxy: ", self.peerAddress or upstream, " closed: ", self.error) end
    to:disconnect() -- what `to` still has queued is flushed first
  end
end

server = mona:createTCPServer()

function server:onConnection(client)
  local remote = mona:createTCPClient()
  local err = remote:connect(upstream) -- returns at once; data sent meanwhile is queued
  if err then
    ERROR("proxy: cannot connect to ", upstream, ": ", err)
    client:disconnect()
    return
  end
  relay(client, remote)
  relay(remote, client)
end

if not server:start(host, port) then
  error("proxy: cannot listen on " .. host .. ":" .. port)
end
NOTE("proxy: listening on ", server.address, ", forwarding to ", upstream)
