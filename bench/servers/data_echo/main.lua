-- The echo of the suite with one `data` assignment per message (bench/data.py): each
-- connection stores what it last received, and the reply leaves after the assignment
-- is committed (docs: lua/data).
local port = mona.configs["bench.port"]
local store = mona.configs["bench.data"] ~= false
if store and data.last == nil then data.last = {} end
local last = data.last

server = mona:createTCPServer()
function server:onConnection(client)
  local key = tostring(client.peerAddress)
  function client:onData(received)
    if store then last[key] = received end
    self:send(received)
  end
end
if not server:start("127.0.0.1", port, 1024) then error("cannot listen on " .. port) end
