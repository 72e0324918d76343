"""The floor under ``fairness.py --lines``: the chat example's own Lua for one burst.

Runs ``lua_apps/chat``'s line handler (the same code: find the newline, strip CR, look
up the member, broadcast "<nick> line" to the two others) over 1 MiB of 2-byte lines in
a bare Lua state, with a ``send`` that only appends to a table and the same re-call
loop over 256-byte windows the runtime uses — no runtime, no Python call per line. What
this takes, no runtime can beat. With ``--hook``, the runaway bound's count hook is set
as the runtime sets it (Lua 5.4 then checks it on every instruction).

    python bench/chat_floor.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib
import statistics

BURST = """
local hook = ...
local data = string.rep("a\\n", 512 * 1024) .. "done\\n"
local sub, concat = string.sub, table.concat
local held, count = {}, 0
local methods = { send = function(self, text) count = count + 1; held[count] = text end }
local mt = { __index = function(t, k) return methods[k] end } -- as the runtime's classes
local clients, members = {}, {}
for i, nick in ipairs({ "streamer", "bystander", "listener" }) do
  clients[i] = setmetatable({}, mt)
  members[clients[i]] = nick
end
local function broadcast(text, except)
  for client in pairs(members) do
    if client ~= except then client:send(text .. "\\n") end
  end
end
local function handle_line(client, line)
  local nick = members[client]
  if line == "/quit" or line == "/who" then return end
  if line ~= "" then broadcast("<" .. nick .. "> " .. line, client) end
end
local function on_data(self, data)
  local stop = data:find("\\n", 1, true)
  if not stop then return #data end
  handle_line(self, data:sub(1, stop - 1):gsub("\\r$", ""))
  return #data - stop
end
local function job()
  local first, size, self = 1, #data, clients[1]
  while first <= size do
    local view = sub(data, first, first + 255)
    local ok, rest = xpcall(on_data, debug.traceback, self, view)
    first = first + #view - rest
    if count > 1000 then concat(held) held, count = {}, 0 end
  end
end
local co = coroutine.create(job)
if hook then debug.sethook(co, function() end, "", 1000000) end
local started = os.clock()
assert(coroutine.resume(co))
return os.clock() - started
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for engine in ("lua54", "luajit21"):
        module = importlib.import_module(f"lupa.{engine}")
        for hook in (False, True):
            runs = []
            for _ in range(args.repeat):
                lua = module.LuaRuntime()
                if engine == "lua54":
                    lua.execute('collectgarbage("generational")')  # as the runtime runs
                runs.append(lua.execute(BURST, hook))
            label = f"{engine}{', count hook' if hook else ''}"
            print(f"{label:<22} {statistics.median(runs):.3f} s per burst (median of {len(runs)})")


if __name__ == "__main__":
    main()
