-- Benchmark server: a TCP echo in LuaSocket style under trio_mona (docs: lua/luasocket),
-- the top-level accept loop and one coroutine per client that waits in
-- receive(bench.size) (the load generator's fixed message size, default 64 bytes).
local socket = require "socket"
local port = mona.configs["bench.port"]
local size = mona.configs["bench.size"] or 64

local server = assert(socket.bind("127.0.0.1", port, 1024)) -- (LuaSocket's default backlog is 32)

local function serve(client)
  client:setoption("tcp-nodelay", true)
  while true do
    local data = client:receive(size)
    if not data then break end
    client:send(data)
  end
  client:close()
end

while true do
  local client = server:accept()
  if client then coroutine.wrap(serve)(client) end
end
