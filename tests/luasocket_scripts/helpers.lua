-- select, sleep, gettime, protect/newtry/try, skip, sink/source.
local socket = require "socket"
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
local client = socket.connect("127.0.0.1", port)
local conn = server:accept()
local r, w, e = socket.select({ conn, server }, { client }, 0.2)
emit("select idle", #r, #w, w[client], e)
client:send("x")
r, w, e = socket.select({ conn, server }, nil, 0.2)
emit("select readable", #r, r[1] == conn, r[conn], e)
emit("select none", select(3, socket.select({ server }, nil, 0)))
emit("select empty", select(3, socket.select({}, {}, 0.01)))
emit("dirty before", conn:dirty())
local t = socket.gettime()
socket.sleep(0.05)
emit("slept", socket.gettime() - t >= 0.04)
emit("skip", socket.skip(1, "a", "b", "c"))
local finalized = false
local try = socket.newtry(function() finalized = true end)
local f = socket.protect(function(v) return try(v, "failure") end)
emit("protect ok", f(7))
emit("protect fail", f(nil), finalized)
emit("try ok", socket.try(1, 2))
emit("version", socket._VERSION, socket._SOCKETINVALID)
emit("stats", conn:receive(1), conn:getstats() >= 1)
emit("modes", type(socket.sinkt["close-when-done"]), type(socket.sinkt["keep-open"]),
  type(socket.sourcet["by-length"]), type(socket.sourcet["until-closed"]))
local sink = socket.sink("keep-open", client)
sink("chunk1 ")
sink("chunk2")
client:close()
local source = socket.source("until-closed", conn)
local parts = {}
while true do
  local chunk = source()
  if not chunk then break end
  parts[#parts + 1] = chunk
end
emit("source", table.concat(parts))
server:close()
