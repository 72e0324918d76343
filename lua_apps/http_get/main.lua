-- A small HTTP/1.1 client written against LuaSocket (docs: lua/luasocket): it fetches
-- http_get.path (default "/") from http_get.host:http_get.port (default
-- 127.0.0.1:8000) once the application starts, logs the status and the body's size,
-- keeps the response in the global RESPONSE (status, headers, body), and exits: 0
-- when it got a response, 1 when not (under trio_mona, os.exit stops the runtime in
-- order; an embedding program keeps serving until it ends its open_runtime block).
local socket = require "socket"

local configs = mona and mona.configs or {}
local host = configs["http_get.host"] or "127.0.0.1"
local port = configs["http_get.port"] or 8000
local path = configs["http_get.path"] or "/"

local function fetch()
  local conn, err = socket.connect(host, port)
  if not conn then return nil, "connect: " .. err end
  conn:settimeout(10)
  conn:send("GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\n"
    .. "User-Agent: trio_mona-http_get\r\nConnection: close\r\n\r\n")
  local status_line, rerr = conn:receive("*l")
  if not status_line then conn:close(); return nil, "status: " .. rerr end
  local status = tonumber(status_line:match("^HTTP/%d%.%d (%d%d%d)"))
  local headers = {}
  while true do
    local line = conn:receive("*l")
    if not line or line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then headers[name:lower()] = value end
  end
  local body, berr, partial
  local length = tonumber(headers["content-length"])
  if length then
    body, berr, partial = conn:receive(length)
  else
    body, berr, partial = conn:receive("*a")
  end
  conn:close()
  if not body then return nil, "body: " .. berr .. " after " .. #partial .. " bytes" end
  return { status = status, headers = headers, body = body }
end

local response, err = fetch()
if response then
  RESPONSE = response
  print("http_get: " .. host .. ":" .. port .. path .. " -> " .. tostring(response.status)
    .. ", " .. #response.body .. " bytes")
else
  print("http_get: " .. err)
  FAILURE = err
end

if os.exit then os.exit(response ~= nil) end -- (sandbox mode has no os.exit)
