-- trio_mona's Lua prelude, part 2 (after _lua/prelude.lua): jobs. Every handler runs
-- as a job in a pooled coroutine, under the runaway bound; a job may suspend (a call
-- that has to wait) and is resumed by Python; what it sends is held until it stops.
-- Returns `shared` with `run`, `wait`, `tcp_client_send` and `touched` added.
local shared = ...
local EXIT, api, argerror, concat =
  shared.EXIT, shared.api, shared.argerror, shared.concat
local error, format, getinfo, handles_for =
  shared.error, shared.format, shared.getinfo, shared.handles_for
local host, host_result, internal_error, lib =
  shared.host, shared.host_result, shared.internal_error, shared.lib
local next, pcall, report, self_checker =
  shared.next, shared.pcall, shared.report, shared.self_checker
local setmetatable, sub, tostring, traceback, type =
  shared.setmetatable, shared.sub, shared.tostring, shared.traceback, shared.type
local coroutines = shared.coroutines
local create, resume, yield, running, isyieldable, sethook =
  coroutines.create, coroutines.resume, coroutines.yield, coroutines.running,
  coroutines.isyieldable, coroutines.sethook
local data_changes, sends, collected = shared.data_changes, shared.sends, shared.collected

---------------------------------------------------------------------------
-- Sends held during a job (docs: lua/tcp, "Sending").
---------------------------------------------------------------------------
-- A connection's first send in a job goes to Python, which answers how many bytes
-- more it may take (its room, within the transport's limits); later sends of the same
-- job wait here within that room, and go over as one string per connection when the
-- job ends, or before any host call that could change what a connection is (the
-- prelude's host boundary calls `sends.finish` then: `sends.due` says there is
-- something to finish). A room is valid in the job it was given in (`job_number`
-- counts them); `spare` bounds the bytes held over all connections by the last
-- answer, so no limit is passed; HELD_MAX bounds Lua's memory for them.
local held = {} -- handle -> strings held (empty between jobs)
local room = setmetatable({}, { __mode = "k" })     -- handle -> bytes it may still hold
local room_job = setmetatable({}, { __mode = "k" }) -- handle -> the job its room is for
local job_number, held_bytes, spare = 0, 0, 0
local running_jobs = 0 -- sends hold only inside a job (not in Lua that Python calls directly)
local HELD_MAX = 1048576
local send_held = shared.tcp_send_held

local function flush_held()
  for h, parts in next, held do
    held[h] = nil
    local ok, err = pcall(send_held, h, parts[2] == nil and parts[1] or concat(parts))
    if not ok then internal_error("tcp_send_held", err) end
  end
  held_bytes = 0
end

local function end_holding()
  if held_bytes > 0 then flush_held() end
  job_number, sends.due = job_number + 1, false
end
sends.finish = end_holding

-- Connections whose state a method call may have changed while a handler ran
-- (disconnect, a failed send): the re-call loop asks Python only about these.
local touched = setmetatable({}, { __mode = "k" })

-- TCPClient:send (the class is in _lua/objects.lua).
local tcp_client = self_checker("TCPClient")
local tcp_handles, tcp_send = handles_for("TCPClient"), host.tcp_send
local function tcp_client_send(self, data) -- the hot path: look-ups inlined
  local h = tcp_handles[self] or tcp_client(self, "send")
  local t = type(data)
  if t ~= "string" then
    if t == "number" then data = tostring(data) else argerror("send", 1, "string", data) end
  end
  local left = room[h]
  if left ~= nil and room_job[h] == job_number then
    local size = #data
    if size <= left and size <= spare then -- held until the job ends
      if size == 0 then return nil end
      if held_bytes + size > HELD_MAX then flush_held() end
      local parts = held[h]
      if parts == nil then held[h] = { data } else parts[#parts + 1] = data end
      room[h], spare, held_bytes = left - size, spare - size, held_bytes + size
      return nil
    end
  end
  if held_bytes > 0 then flush_held() end -- in order, and `spare` exact again
  local r, err = tcp_send(h, data)
  if r then
    if running_jobs > 0 then room[h], room_job[h], spare, sends.due = r, job_number, r, true end
    return nil
  end
  touched[self] = true
  return err
end

---------------------------------------------------------------------------
-- Coroutine dispatch: every handler runs in a pooled coroutine.
---------------------------------------------------------------------------
local DONE, SUSPEND = {}, lib.SUSPEND
local pool, pooled = {}, 0
local suspended = {} -- token -> coroutine
local workers = setmetatable({}, { __mode = "k" }) -- the executor's coroutines
lib.set_private_threads(workers) -- applications cannot resume or close them

local function worker(job, a, b, c)
  while true do
    local result = job(a, b, c)
    -- A parked coroutine must not keep the last event's objects alive.
    job, a, b, c = nil, nil, nil, nil
    job, a, b, c = yield(DONE, result)
  end
end

-- Coroutines of the application's own that waited (docs: lua/luasocket): the runtime
-- resumes them from then on, until they end or yield to nobody.
local adopted = setmetatable({}, { __mode = "k" })

-- (a park Python knows by its token: its suspension never crosses into Lua)
local BY_TOKEN = shared.by_token

local function settle_adopted(co, ok, tag, value, request)
  if ok and tag == SUSPEND then
    suspended[value] = co
    if request == nil then return BY_TOKEN, value end
    return request
  end
  adopted[co], workers[co] = nil, nil -- it ended, or yielded: the application's again
  if not ok and tag ~= EXIT then report("", "coroutine", traceback(co, tostring(tag))) end
  return 0
end

local function settle(co, ok, tag, value, request)
  if adopted[co] then return settle_adopted(co, ok, tag, value, request) end
  if not ok then
    -- Only reachable when a job itself is broken: jobs catch handler errors.
    report("", "handler coroutine", traceback(co, tostring(tag)))
    return 0
  end
  if tag == DONE then
    pooled = pooled + 1
    pool[pooled] = co
    return value
  end
  if tag == SUSPEND then
    suspended[value] = co
    if request == nil then return BY_TOKEN, value end
    return request
  end
  report("", "handler", "coroutine.yield() outside a suspending call; the handler was dropped")
  return 0
end

-- The runaway bound (docs: lua/safety): a count hook on every worker coroutine raises an
-- error in a handler that has run longer than `budget` seconds without returning:
-- seconds of the clock on the wall, which is what everyone else waits (the CPU clock
-- left out what a handler waited in the system: a handler writing `data` stopped at a
-- "2 s" bound after 4.7 s). The clock starts at the hook's first call in a handler,
-- not when the handler starts: reading it costs a call into Python, too dear for every
-- event, and the first HOOK_EVERY instructions take milliseconds. (On LuaJIT the hook does
-- not fire inside compiled loops: best effort.)
--
-- Past the bound the handler cannot catch the error (no pcall returns it: see
-- _lua/stdlib.lua), coroutines the application creates carry the hook too, and while the
-- runtime is shutting down on a signal every handler stops at the next hook call.
local budget, started = 0, nil
local HOOK_EVERY = 100000 -- instructions (a handler that spends its time in Python calls
-- runs few of them a second: more often, and the bound is not overshot by much)
local runaway_state, stopping = lib.runaway, host.stopping
local monotonic = shared.monotonic

local function runaway()
  if budget <= 0 then return end
  local info = getinfo(2, "S")
  if info ~= nil and sub(info.source, 1, 11) == "=trio_mona/" then return end
  local stop = stopping() -- (onStop runs to its end, or its bound, unless a signal came)
  if stop == 2 or (stop == 1 and not runaway_state.finishing) then
    runaway_state.expired = true
    error("the runtime is shutting down: handler stopped", 2)
  end
  local now = monotonic()
  if started == nil then
    started = now
  elseif now - started > budget then
    runaway_state.expired = true
    error(format("handler ran for more than %g s without returning "
      .. "(trio_mona.handler_timeout)", budget), 2)
  end
end

runaway_state.hook = function(co)
  if budget > 0 then sethook(co, runaway, "", HOOK_EVERY) end
end

function api.set_handler_timeout(seconds) budget = seconds end

-- Run a worker coroutine until it returns or yields: one job, or the rest of one that
-- waited; then what it left to do: its held sends, its changes to `data`, the sockets
-- of LuaSocket objects collected meanwhile (the prelude's `data_changes` and
-- `collected`).
local function step(co, ...)
  started = nil
  running_jobs = running_jobs + 1
  local ok, tag, value, request = resume(co, ...)
  running_jobs = running_jobs - 1
  runaway_state.expired, runaway_state.finishing = false, false
  if data_changes.due then data_changes.flush() end
  if sends.due then end_holding() end
  if collected.due then collected.close() end
  return ok, tag, value, request
end

local function run(job, a, b, c)
  local co
  if pooled > 0 then
    co = pool[pooled]
    pool[pooled] = nil
    pooled = pooled - 1
  else
    co = create(worker)
    workers[co] = true
    if budget > 0 then sethook(co, runaway, "", HOOK_EVERY) end
  end
  local ok, tag, value, request = step(co, job, a, b, c)
  if tag == DONE and ok then -- the common case of settle(), without the call
    pooled = pooled + 1
    pool[pooled] = co
    return value
  end
  return settle(co, ok, tag, value, request)
end

-- At shutdown, once the applications have stopped: their pending __gc finalizers, as
-- one job under the runaway bound (_lua/stdlib.lua).
local function finalize_job()
  lib.finalize_all()
  return 0
end

function api.finalize_all() return run(finalize_job) end

-- Suspend the running coroutine until Python resumes it (docs: design): `request` is
-- the Suspension Python made with `token`. Returns what it is resumed with. A
-- coroutine of the application's own is adopted by its resume (_lua/stdlib.lua).
local function cannot_wait(name)
  error(format("'%s' has to wait, and it was called where Lua cannot wait (outside any "
    .. "coroutine, or inside a C function such as a table.sort comparator)", name), 4)
end

local function wait(name, token, request)
  if isyieldable ~= nil then
    if not isyieldable() then cannot_wait(name) end -- (false outside any coroutine too)
  else
    local co, main = running()
    if co == nil or main then cannot_wait(name) end
  end
  return yield(SUSPEND, token, request)
end

lib.adopt = function(co, token, request)
  suspended[token] = co
  workers[co], adopted[co] = true, true
  host.adopt(token, request)
end

-- Wrap `start` (a Python function returning a token and a Suspension) as a Lua
-- function that suspends the calling handler until Python resumes it.
function api.suspending(name, start)
  return function(...) return wait(name, host_result(name, pcall(start, ...))) end
end

function api.resume(token, ...)
  local co = suspended[token]
  suspended[token] = nil
  if co == nil then return 0 end
  return settle(co, step(co, ...))
end

function api.drop(token) suspended[token] = nil end


shared.run, shared.wait = run, wait
shared.tcp_client_send, shared.touched = tcp_client_send, touched
return shared
