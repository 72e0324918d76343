-- /greeter: answers each line "NAME" with a greeting. VERSION and describe() come
-- from the root application; each application runs its own server.
local port = mona.configs["tree.greeter_port"] or 1241
PORT = port

server = mona:createTCPServer()
function server:onConnection(client)
  function client:onData(data)
    local stop = data:find("\n", 1, true)
    if not stop then return #data end
    local who = data:sub(1, stop - 1):gsub("\r$", "")
    self:send("hello " .. who .. " from " .. describe(this) .. "\n")
    return #data - stop
  end
end
assert(server:start("127.0.0.1", port))
