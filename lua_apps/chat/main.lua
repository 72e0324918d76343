-- A line-based chat server, usable with `nc 127.0.0.1 1235`.
--
-- The first line a client sends is its nickname; every later line goes to all the
-- others as "<nick> text". Joins and leaves are announced. "/who" lists who is
-- here, "/quit" leaves. Lines may arrive split across packets or several at once:
-- onData handles one line per call and returns the rest (the "rest" rule).
--
-- With several workers (`trio-mona run lua_apps/chat --workers 4 --data
-- redis://127.0.0.1:6379/0`) each client is served by one of them; the lines and
-- the nicknames travel to the others through mona.servers (docs: scaling).
local host = mona.configs["chat.host"] or "127.0.0.1"
local port = mona.configs["chat.port"] or 1235
local MAX_LINE = 4096

local members = {} -- client object -> nickname
local nicknames = {} -- nickname -> client object, or the Server whose client it is

local function deliver(text, except)
  for client in pairs(members) do
    if client ~= except then client:send(text .. "\n") end
  end
end

local function broadcast(text, except)
  deliver(text, except)
  mona.servers:broadcast("relay", text)
end

local function who()
  local names = {}
  for name in pairs(nicknames) do names[#names + 1] = name end
  table.sort(names)
  return table.concat(names, ", ")
end

-- The other workers: what they relay, and who their clients are.
function onServerConnection(server)
  function server:relay(text) deliver(text) end
  function server:joined(nick) nicknames[nick] = nicknames[nick] or self end
  function server:left(nick)
    if nicknames[nick] == self then nicknames[nick] = nil end
  end
  for nick, client in pairs(nicknames) do
    if members[client] then server:send("joined", nick) end
  end
end

function onServerDisconnection(server)
  for nick, owner in pairs(nicknames) do
    if owner == server then nicknames[nick] = nil end
  end
end

local function handle_line(client, line)
  local nick = members[client]
  if not nick then
    if not line:match("^[%w_%-]+$") or #line > 32 then
      client:send("* nicknames are 1-32 letters, digits, '_' or '-'; try again\n")
    elseif nicknames[line] then
      client:send("* " .. line .. " is taken; try another\n")
    else
      members[client], nicknames[line] = line, client
      client:send("* welcome " .. line .. "; here: " .. who() .. "\n")
      mona.servers:broadcast("joined", line)
      broadcast("* " .. line .. " joined", client)
    end
  elseif line == "/quit" then
    client:send("* bye\n")
    client:disconnect()
  elseif line == "/who" then
    client:send("* here: " .. who() .. "\n")
  elseif line ~= "" then
    broadcast("<" .. nick .. "> " .. line, client)
  end
end

server = mona:createTCPServer()

function server:onConnection(client)
  client:send("* welcome to the chat; your nickname?\n")

  function client:onData(data)
    local stop = data:find("\n", 1, true)
    if not stop then
      if #data > MAX_LINE then
        self:send("* line too long\n")
        self:disconnect()
        return 0
      end
      return #data -- keep everything until the line is complete
    end
    handle_line(self, data:sub(1, stop - 1):gsub("\r$", ""))
    return #data - stop -- called again at once with the lines that follow
  end

  function client:onDisconnection()
    local nick = members[self]
    if nick then
      members[self], nicknames[nick] = nil, nil
      mona.servers:broadcast("left", nick)
      broadcast("* " .. nick .. " left")
    end
  end
end

if not server:start(host, port) then
  error("chat: cannot listen on " .. host .. ":" .. port)
end
NOTE("chat: listening on ", server.address)
