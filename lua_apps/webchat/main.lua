-- A chat for browsers over WebSocket (docs: clients/websocket). Run it with
--   trio-mona run lua_apps/webchat --http 8080
-- and open http://127.0.0.1:8080/ in two browser windows.
--
-- The page (index.html) sends JSON arrays naming a method of its client:
-- ["join", name], ["say", text]. The server pushes with writeInvocation: onJoined,
-- onLeft, onMessage, onUsers, and onClock every 2 s from a writer of each client's own
-- (its onManage).

local members = {} -- client -> name, for those who joined

local function broadcast(name, ...)
  for client in pairs(members) do client.writer:writeInvocation(name, ...) end
end

local function names()
  local list = {}
  for _, name in pairs(members) do list[#list + 1] = name end
  table.sort(list)
  return list
end

local function taken(name)
  for _, other in pairs(members) do
    if other == name then return true end
  end
  return false
end

function onConnection(client)
  if client.protocol ~= "WebSocket" then
    return { index = "index.html" } -- (HTTP: the page itself)
  end

  function client:join(name)
    if type(name) ~= "string" then error("a name is a string") end
    name = name:gsub("^%s+", ""):gsub("%s+$", "")
    if name == "" or #name > 32 then error("a name is 1 to 32 characters") end
    if members[client] then error("joined already") end
    if taken(name) then return false, name .. " is taken" end
    members[client] = name
    broadcast("onJoined", name)
    broadcast("onUsers", names())
    -- A writer of its own pushes the clock and the count every 2 s.
    local clock = client.writer:newWriter()
    function clock:onManage()
      self:writeInvocation("onClock", mona:time(), #names())
    end
    return true
  end

  function client:say(text)
    local name = members[client]
    if name == nil then error("join first") end
    if type(text) ~= "string" or text == "" then return end
    broadcast("onMessage", name, text:sub(1, 1000))
  end
end

function onDisconnection(client)
  local name = members[client]
  if name == nil then return end
  members[client] = nil
  broadcast("onLeft", name)
  broadcast("onUsers", names())
end
