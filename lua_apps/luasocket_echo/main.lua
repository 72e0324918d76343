-- Echo server written against LuaSocket alone (docs: lua/luasocket): the classic
-- accept/receive/send loop at the top of the main chunk, one coroutine per client.
-- Under trio_mona every client is served at once: a call that would block waits in
-- its own coroutine only. The same file runs under plain `lua` with LuaSocket, where
-- it serves one client at a time. Configure with luasocket_echo.host (default
-- 127.0.0.1) and luasocket_echo.port (default 1236).
local socket = require "socket"

local configs = mona and mona.configs or {}
local host = configs["luasocket_echo.host"] or "127.0.0.1"
local port = configs["luasocket_echo.port"] or 1236

local server = assert(socket.bind(host, port, 128)) -- (LuaSocket's default backlog is 32)
local ip, bound = server:getsockname()
print("luasocket_echo: listening on " .. ip .. ":" .. bound)

local function serve(client)
  while true do
    local line, err = client:receive("*l")
    if not line then
      if err ~= "closed" then print("luasocket_echo: " .. err) end
      break
    end
    client:send(line .. "\n")
  end
  client:close()
end

while true do
  local client = server:accept()
  if client then coroutine.wrap(serve)(client) end
end
