-- /status: tells every connection what the tree is doing, then closes it.
-- `super` is the root application; `super.children` lists the loaded applications.
local port = mona.configs["tree.status_port"] or 1242

server = mona:createTCPServer()
function server:onConnection(client)
  local names = {}
  for name in pairs(super.children) do names[#names + 1] = name end
  table.sort(names)
  client:send(string.format("%s: ticks=%d managed=%d applications=%s\n",
    describe(this), super.ticks, super.managed, table.concat(names, ",")))
  client:disconnect()
end
assert(server:start("127.0.0.1", port))
