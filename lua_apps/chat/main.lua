-- A line-based chat server, usable with `nc 127.0.0.1 1235`.
--
-- The first line a client sends is its nickname; every later line goes to all the
-- others as "<nick> text". Joins and leaves are announced. "/who" lists who is
-- here, "/quit" leaves. Lines may arrive split across packets or several at once:
-- onData handles one line per call and returns the rest (the "rest" rule).
local host = mona.configs["chat.host"] or "127.0.0.1"
local port = mona.configs["chat.port"] or 1235
local MAX_LINE = 4096

local members = {} -- client object -> nickname
local nicknames = {} -- nickname -> client object

local function broadcast(text, except)
  for client in pairs(members) do
    if client ~= except then client:send(text .. "\n") end
  end
end

local function who()
  local names = {}
  for name in pairs(nicknames) do names[#names + 1] = name end
  table.sort(names)
  return table.concat(names, ", ")
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
      broadcast("* " .. nick .. " left")
    end
  end
end

if not server:start(host, port) then
  error("chat: cannot listen on " .. host .. ":" .. port)
end
NOTE("chat: listening on ", server.address)
