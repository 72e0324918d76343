-- TCP objects: classes and the method list of LuaSocket's own test client, getfamily,
-- gettimeout, setsockname/setpeername, getpeername on every kind, a refused connect,
-- connect on a connected socket, the module's other fields.
local socket = require "socket"
local master = socket.tcp()
emit("class", master.class, socket.udp().class, socket.tcp6().class)
local methods = { "accept", "bind", "close", "connect", "dirty", "getfamily", "getfd",
  "getoption", "getpeername", "getsockname", "getstats", "setstats", "listen", "receive",
  "send", "setfd", "setoption", "setpeername", "setsockname", "settimeout", "gettimeout",
  "shutdown" }
local missing = {}
for _, name in ipairs(methods) do
  if type(master[name]) ~= "function" then missing[#missing + 1] = name end
end
emit("tcp methods missing", #missing, table.concat(missing, " "))
local udp_methods = { "close", "dirty", "getfamily", "getfd", "getoption", "getpeername",
  "getsockname", "receive", "receivefrom", "send", "sendto", "setfd", "setoption",
  "setpeername", "setsockname", "settimeout", "gettimeout" }
missing = {}
for _, name in ipairs(udp_methods) do
  if type(socket.udp()[name]) ~= "function" then missing[#missing + 1] = name end
end
emit("udp methods missing", #missing, table.concat(missing, " "))
emit("getfamily", master:getfamily(), socket.tcp6():getfamily(), socket.udp():getfamily(),
  socket.udp6():getfamily())
emit("gettimeout", master:gettimeout())
master:settimeout(2.5, "t")
emit("gettimeout total", master:gettimeout())
master:settimeout(1)
emit("gettimeout block", master:gettimeout())
master:settimeout(-1)
emit("gettimeout none", master:gettimeout())
emit("setsockname", master:setsockname("127.0.0.1", 0))
local ip, port, family = master:getsockname()
emit("getsockname", ip, type(port), family)
emit("getpeername master", master:getpeername())
emit("listen", master:listen())
emit("getpeername server", master:getpeername())
local client = socket.tcp()
emit("setpeername", client:setpeername("127.0.0.1", port))
local peer_ip, peer_port, peer_family = client:getpeername()
emit("getpeername client", peer_ip, type(peer_port), peer_port == tonumber(port), peer_family)
emit("connect again", client:connect("127.0.0.1", port))
local conn = master:accept()
emit("accepted", (tostring(conn):match("^[^:]+")), conn.class)
local probe = assert(socket.bind("127.0.0.1", 0))
local _, free = probe:getsockname()
probe:close()
local refused = socket.tcp()
emit("refused", refused:connect("127.0.0.1", free))
emit("refused class", refused.class, (tostring(refused):match("^[^:]+")))
emit("refused receive", refused:receive())
emit("choose", type(socket.choose), socket._DATAGRAMSIZE, type(socket.__unload))
local pick = socket.choose({ a = function(x) return "A", x end, default = function(x) return "D", x end })
emit("choose calls", pick("a", 1), pick(2))
local ok, err = pcall(pick, "zz")
emit("choose unknown", ok, (err:gsub("^.-:%d+: ", "")))
emit("skip", socket.skip(2, "a", "b", "c"))
client:close()
conn:close()
master:close()
