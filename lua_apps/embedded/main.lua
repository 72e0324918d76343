-- The Lua half of the embedding example (docs: embedding); host.py is the Trio program
-- that runs it. A TCP server, one command per line: "who NAME" answers with what the
-- host's `mona.host.lookup(name)` finds (an async Python function: only this handler
-- waits for it, every other connection is served meanwhile). The host calls `stats()`
-- for each HTTP request it serves. Configure with embedded.port (default 1241).
local port = mona.configs["embedded.port"] or 1241
local counts = { connections = 0, lookups = 0 }

server = mona:createTCPServer()

function server:onConnection(client)
  counts.connections = counts.connections + 1
  function client:onData(received)
    local consumed = 0
    while true do
      local stop = received:find("\n", consumed + 1, true)
      if stop == nil then break end
      local line = received:sub(consumed + 1, stop - 1):gsub("\r$", "")
      consumed = stop
      local name = line:match("^who%s+(%S+)$")
      if name then
        counts.lookups = counts.lookups + 1
        local ok, found = pcall(mona.host.lookup, name)
        self:send((ok and (found and found.name .. " is " .. found.role or "nobody")
          or "lookup failed: " .. found) .. "\n")
      else
        self:send("usage: who NAME\n")
      end
    end
    return #received - consumed
  end
end

-- Called by the host (runtime.call("/", "stats")): a table becomes a dict there.
function stats()
  return { connections = counts.connections, lookups = counts.lookups, engine = mona.configs["application.name"] }
end

if not server:start("127.0.0.1", port) then
  error("embedded: cannot listen on port " .. port)
end
INFO("embedded: listening on ", server.address, " (", mona.host.greeting(), ")")
