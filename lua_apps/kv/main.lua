-- A persistent key-value store over TCP, one command per line (docs: lua/data):
--   set KEY VALUE   stores VALUE (the rest of the line) under KEY   -> ok
--   get KEY         the value, or "nil"                             -> VALUE
--   del KEY         deletes it                                       -> ok
--   count           how many keys are stored                         -> N
--   keys            every key, space-separated                       -> K1 K2 ...
-- Values live in `data.store`, so they survive a restart: an "ok" received means the
-- value is committed (trio_mona commits `data` before any later byte is written).
-- Configure with kv.host (default 127.0.0.1) and kv.port (default 1239); start with
-- `--data FILE` to choose where the values are kept, or `--data redis://HOST:PORT/DB`
-- to share them between workers (`--workers 4`) and hosts; a failed assignment (Redis
-- unreachable) answers "error ...".
local host = mona.configs["kv.host"] or "127.0.0.1"
local port = mona.configs["kv.port"] or 1239
local MAX_LINE = 65536

if data.store == nil then data.store = {} end
local store = data.store

local function size()
  local n = 0
  for _ in pairs(store) do n = n + 1 end -- (#store too, on Lua 5.4: LuaJIT ignores __len)
  return n
end

local commands = {
  set = function(key, value)
    if key == nil or value == nil then return "usage: set KEY VALUE" end
    store[key] = value
    return "ok"
  end,
  get = function(key) return key and store[key] or "nil" end,
  del = function(key)
    if key then store[key] = nil end
    return "ok"
  end,
  count = function() return tostring(size()) end,
  keys = function()
    local keys = {}
    for key in pairs(store) do keys[#keys + 1] = key end
    table.sort(keys)
    return table.concat(keys, " ")
  end,
}

local function answer(line)
  local name, key, value = line:match("^(%a+)%s*(%S*)%s?(.*)$")
  local command = commands[name or ""]
  if command == nil then return "unknown command" end
  if key == "" then key = nil end
  if value == "" then value = nil end
  -- (an assignment can fail: on Redis, while it is unreachable; the client hears why)
  local ok, result = pcall(command, key, value)
  if not ok then return "error " .. tostring(result):gsub("^.-data: ", "") end
  return result
end

server = mona:createTCPServer()

function server:onConnection(client)
  function client:onData(received)
    local consumed = 0
    while true do
      local stop = received:find("\n", consumed + 1, true)
      if stop == nil then break end
      local line = received:sub(consumed + 1, stop - 1):gsub("\r$", "")
      consumed = stop
      self:send(answer(line) .. "\n")
    end
    if #received - consumed > MAX_LINE then
      self:send("line too long\n")
      self:disconnect()
      return 0
    end
    return #received - consumed
  end
end

if not server:start(host, port) then
  error("kv: cannot listen on " .. host .. ":" .. port)
end
INFO("kv: listening on ", server.address, " with ", size(), " keys")
