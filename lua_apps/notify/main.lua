-- Mail each line received over TCP, and answer once it went out (docs: lua/mail):
-- "sent" when the SMTP server took it, "not sent: <why>" when it did not, "refused:
-- <why>" when the mail could not even be made (a line break in the subject...).
-- Configure with notify.host (default 127.0.0.1), notify.port (default 1240),
-- notify.from and notify.to (the recipients, separated by commas), and the [smtp]
-- section (host, port, timeout, username, password, starttls, tls).
local host = mona.configs["notify.host"] or "127.0.0.1"
local port = mona.configs["notify.port"] or 1240
local from = mona.configs["notify.from"] or "notify@localhost"
local to = { mona:split(mona.configs["notify.to"] or "root@localhost", ",", 3) }
local unpack = table.unpack or unpack

server = mona:createTCPServer()

function server:onConnection(client)
  function client:onData(received)
    local consumed = 0
    while true do
      local stop = received:find("\n", consumed + 1, true)
      if stop == nil then break end
      local line = received:sub(consumed + 1, stop - 1):gsub("\r$", "")
      consumed = stop
      local ok, mail = pcall(mona.sendMail, mona, from, "notify: " .. line:sub(1, 60),
        line .. "\n\n(from " .. tostring(self.peerAddress) .. ")", unpack(to))
      if ok then
        function mail.onSent(_, err)
          if self.connected then self:send(err and ("not sent: " .. err .. "\n") or "sent\n") end
        end
      else
        self:send("refused: " .. tostring(mail):gsub("^.-sendMail: ", "") .. "\n")
      end
    end
    return #received - consumed
  end
end

if not server:start(host, port) then
  error("notify: cannot listen on " .. host .. ":" .. port)
end
INFO("notify: listening on ", server.address, ", mailing ", table.concat(to, ", "))
