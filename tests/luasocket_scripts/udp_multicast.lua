-- UDP multicast on loopback: membership, the outgoing interface, loop and TTL.
local socket = require "socket"
local group = "239.7.7.7"
local receiver = socket.udp()
emit("bind any", receiver:setsockname("0.0.0.0", 0))
local _, port = receiver:getsockname()
emit("join", receiver:setoption("ip-add-membership", { multiaddr = group, interface = "127.0.0.1" }))
local sender = socket.udp4()
emit("interface", sender:setoption("ip-multicast-if", "127.0.0.1"), sender:getoption("ip-multicast-if"))
emit("loop", sender:setoption("ip-multicast-loop", true), sender:setoption("ip-multicast-ttl", 1))
emit("sendto group", sender:sendto("to the group", group, port))
receiver:settimeout(1)
emit("received", receiver:receive())
emit("leave", receiver:setoption("ip-drop-membership", { multiaddr = group, interface = "127.0.0.1" }))
local unbound = socket.udp()
emit("no socket yet", unbound:setoption("broadcast", true))
emit("bad option", (pcall(receiver.setoption, receiver, "no-such-option", 1)))
receiver:close()
sender:close()
