-- LuaSec as a client (PORT: a TLS echo; CAFILE: its CA): the same lines under the real
-- LuaSec and under trio_mona (tests/test_luasec.py).
local ssl = require "ssl"
local socket = require "socket"

emit(ssl.newcontext({ mode = "client", protocol = "any", verify = "bogus" }))
emit(ssl.newcontext({ mode = "client", protocol = "tlsv9" }))
emit(ssl.newcontext({ mode = "client", protocol = "tlsv1_2", verify = "peer", cafile = CAFILE }) ~= nil)

local sock = socket.tcp()
emit(sock:connect("127.0.0.1", PORT))
local conn = ssl.wrap(sock, { mode = "client", protocol = "any", verify = "peer", cafile = CAFILE })
emit((tostring(conn):match("^[^:]*")))
emit(conn:dohandshake())
emit(conn:send("hello\n"))
emit(conn:receive("*l"))
emit(conn:send("1234567890"))
emit(conn:receive(4), conn:receive(6))
emit(conn:getpeerverification())
local cert = conn:getpeercertificate()
for i, entry in ipairs(cert:subject()) do
  emit(i, entry.name, (entry.value:gsub("#.*", "#")), entry.oid)
end
emit(cert:notafter(), cert:pem():sub(1, 27))
emit(sock:receive())  -- (the wrapped socket is spent)
emit(conn:close())

-- Verification against the system's CAs fails: ours is not among them.
local other = socket.tcp()
other:connect("127.0.0.1", PORT)
local refused = ssl.wrap(other, { mode = "client", protocol = "any", verify = "peer" })
emit(refused:dohandshake())
refused:close()

-- verify = "none": the handshake succeeds, nothing was checked.
local unchecked = socket.tcp()
unchecked:connect("127.0.0.1", PORT)
local plain = ssl.wrap(unchecked, { mode = "client", protocol = "any", verify = "none" })
emit(plain:dohandshake())
emit((plain:getpeerverification()))
plain:close()
