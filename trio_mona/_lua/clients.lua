-- trio_mona's Lua prelude, part 9 (after _lua/luasec.lua): clients (docs:
-- clients/http). A client is what an application sees of a browser connected over
-- HTTP: its properties, its writer, the methods the application gives it, and the
-- job that serves one request (onConnection when it is new, then the method, the
-- file or onMessage). Python (_http_requests.py) says what each request asks and
-- turns the answer the job gives into HTTP. Returns `shared`.
local shared = ...
local api, argerror, error, find, format =
  shared.api, shared.argerror, shared.error, shared.find, shared.format
local handle_of, host, lib, lower, mark_class =
  shared.handle_of, shared.host, shared.lib, shared.lower, shared.mark_class
local match, new_object, next, owner_of, pcall =
  shared.match, shared.new_object, shared.next, shared.owner_of, shared.pcall
local rawget, rawset, report, run, select =
  shared.rawget, shared.rawset, shared.report, shared.run, shared.select
local setmetatable, tostring, type, typename, unpack =
  shared.setmetatable, shared.tostring, shared.type, shared.typename, shared.unpack
local with_traceback, xpcall, concat, classes =
  shared.with_traceback, shared.xpcall, shared.concat, shared.classes
local formats = shared.formats
local query_decode = formats.query.decode
local tape_values = formats.values.values

---------------------------------------------------------------------------
-- mona.clients: every connected client, by id (64 hex characters) and rawId.
---------------------------------------------------------------------------
local by_id, by_raw, client_count = {}, {}, 0
local public = setmetatable({}, { __mode = "k" })  -- client -> its documented properties
local private = setmetatable({}, { __mode = "k" }) -- client -> what the runtime keeps

local function find_client(key)
  if type(key) ~= "string" then return nil end
  return by_id[key] or by_raw[key]
end

local CLIENTS = setmetatable({}, {
  __index = function(_, k)
    if k == "count" then return client_count end
    return find_client(k)
  end,
  __call = function(_, key) return find_client(key) end,
  __newindex = function(_, k) error(format("'%s' is read-only on mona.clients", tostring(k)), 2) end,
  __pairs = function() return next, by_id, nil end,
  __len = function() return client_count end,
  __metatable = "clients",
})
lib.lock(shared.raw_getmetatable(CLIENTS))

shared.mona_groups[#shared.mona_groups + 1] = function(_, props)
  props.clients = CLIENTS
end

local function register(client)
  local p = public[client]
  if by_id[p.id] == nil then client_count = client_count + 1 end
  by_id[p.id], by_raw[p.rawId] = client, client
end

local function unregister(client)
  local p = public[client]
  if by_id[p.id] == client then
    by_id[p.id], by_raw[p.rawId] = nil, nil
    client_count = client_count - 1
  end
end

---------------------------------------------------------------------------
-- Encoding what a client is answered, in the format its request came in.
---------------------------------------------------------------------------
local function raw_encode(name)
  return function(count, ...)
    local parts = {}
    for i = 1, count do
      local v = select(i, ...)
      local t = type(v)
      if t == "number" then v = tostring(v) elseif t ~= "string" then argerror(name, i, "string", v) end
      parts[i] = v
    end
    return concat(parts)
  end
end

local FORMATS = {
  json = { "application/json", formats.json.encode },
  xmlrpc = { "text/xml; charset=utf-8", formats.xmlrpc.encode },
  query = { "application/x-www-form-urlencoded", formats.query.encode },
  amf = { "application/x-amf", formats.amf.encode0 },
  amf3 = { "application/x-amf", formats.amf.encode }, -- (AMF0 with AMF3 objects inside)
  raw = { "text/plain; charset=utf-8", raw_encode("writeMessage") },
}
local raw_text = raw_encode("writeRaw")

-- `count` values in the client's request format: its content type and body, or an
-- error (a value the format cannot hold) raised at the caller's line.
local function encoded(p, count, ...)
  local f = FORMATS[p.format]
  local ok, body = pcall(f[2], count, ...)
  if not ok then error(tostring(body), 0) end
  return f[1], body
end

---------------------------------------------------------------------------
-- Writer: what the application writes to a client (docs: clients/http, "Writers";
-- clients/websocket). A client's main writer is `client.writer`; `newWriter()` opens
-- secondary ones, each with its own `reliable`, `onManage` (every 2 s) and counters.
---------------------------------------------------------------------------
local client_of = setmetatable({}, { __mode = "k" }) -- writer -> its client
local writer_state = setmetatable({}, { __mode = "k" }) -- writer -> { reliable, main, closed, ... }
local secondary = {} -- secondary writers still open (held while their client is connected)
local write, close_client = host.client_write, host.client_close

local function writer_client(self, method)
  local client = client_of[self]
  if client == nil then
    error(format("bad self to '%s' (Writer expected, got %s; call it as writer:%s(...))",
      method, typename(self), method), 3)
  end
  local state = writer_state[self]
  if state.closed then error(format("%s: this writer is closed", method), 3) end
  return client, state
end

-- `kind`: "message" (text over WebSocket; over RTMP the answer of the call in hand),
-- "invocation" (a message naming a method of the peer) or "raw" (binary over WebSocket).
local function written(client, state, kind, content_type, body)
  private[client].wrote = private[client].wrote + 1
  state.messages = state.messages + 1
  state.bytes = state.bytes + #body
  return write(handle_of[client], kind, content_type, body, state.reliable)
end

local function new_writer(client, main)
  local writer = setmetatable({}, shared.writer_mt)
  client_of[writer] = client
  writer_state[writer] = { reliable = true, main = main, closed = false, messages = 0, bytes = 0 }
  if not main then secondary[writer] = true end
  return writer
end

-- The last invocation of one string that writeInvocation encoded (see it).
local memo = { name = nil, text = nil, format = nil, content_type = nil, body = nil }

local WRITER_METHODS = {
  writeMessage = function(self, ...)
    local client, state = writer_client(self, "writeMessage")
    local ok, content_type, body = pcall(encoded, private[client], select("#", ...), ...)
    if not ok then error("writeMessage: " .. content_type, 2) end
    return written(client, state, "message", content_type, body)
  end,
  writeInvocation = function(self, name, ...)
    local client, state = writer_client(self, "writeInvocation")
    if type(name) ~= "string" then argerror("writeInvocation", 1, "string", name) end
    local p, count = private[client], select("#", ...)
    -- A broadcast writes the same invocation to each client: `name` with one string is
    -- encoded once (strings cannot change; tables could between two writes).
    local text = count == 1 and (...) or nil
    if type(text) == "string" and text == memo.text and name == memo.name
      and p.format == memo.format then
      return written(client, state, "invocation", memo.content_type, memo.body)
    end
    local ok, content_type, body = pcall(encoded, p, count + 1, name, ...)
    if not ok then error("writeInvocation: " .. content_type, 2) end
    if type(text) == "string" then
      memo.name, memo.text, memo.format = name, text, p.format
      memo.content_type, memo.body = content_type, body
    end
    return written(client, state, "invocation", content_type, body)
  end,
  writeStatusResponse = function(self, code, description)
    local client, state = writer_client(self, "writeStatusResponse")
    if type(code) ~= "string" then argerror("writeStatusResponse", 1, "string", code) end
    local status = { code = code, description = description }
    local content_type, body = encoded(private[client], 2, "onStatus", status)
    return written(client, state, "invocation", content_type, body)
  end,
  writeRaw = function(self, ...)
    local client, state = writer_client(self, "writeRaw")
    local count = select("#", ...)
    if public[client].protocol ~= "WebSocket" then
      return written(client, state, "raw", "text/plain; charset=utf-8", raw_text(count, ...))
    end
    raw_text(count, ...) -- (the arguments' check)
    local ok = true
    for i = 1, count do -- (one binary message each)
      local part = raw_text(1, (select(i, ...)))
      ok = written(client, state, "raw", "application/octet-stream", part) and ok
    end
    return ok
  end,
  flush = function(self)
    writer_client(self, "flush") -- (what is written leaves with the executor's batch)
  end,
  close = function(self, code)
    local client, state = writer_client(self, "close")
    if code ~= nil and shared.tonumber(code) == nil then argerror("close", 1, "number", code) end
    if not state.main then -- (a secondary writer: the client stays)
      state.closed, secondary[self] = true, nil
      return
    end
    close_client(handle_of[client], shared.tonumber(code) or 1000)
  end,
  newWriter = function(self)
    local client = writer_client(self, "newWriter")
    return new_writer(client, false)
  end,
}
WRITER_METHODS.newFlowWriter = WRITER_METHODS.newWriter

local WRITER_PROPERTIES = { reliable = true, queueing = true, closed = true, messages = true,
  bytes = true, dropped = true }

shared.writer_mt = {
  __index = function(t, k)
    local m = WRITER_METHODS[k]
    if m ~= nil then return m end
    local state = writer_state[t]
    if state == nil then return nil end
    if k == "reliable" or k == "closed" or k == "messages" or k == "bytes" then return state[k] end
    if k == "queueing" or k == "dropped" then return host.client_get(handle_of[client_of[t]], k) end
    return nil
  end,
  __newindex = function(t, k, v)
    if k == "reliable" then
      writer_state[t].reliable = v and true or false
      return
    end
    if WRITER_METHODS[k] ~= nil or WRITER_PROPERTIES[k] then
      error(format("'%s' is read-only on Writer", tostring(k)), 2)
    end
    rawset(t, k, v)
  end,
  __tostring = function(t) return "Writer(" .. tostring(client_of[t]) .. ")" end,
  __metatable = "Writer",
}
mark_class(shared.writer_mt, "Writer")
lib.lock(shared.writer_mt)

local function manage_job()
  for writer in next, secondary do
    local on_manage = rawget(writer, "onManage")
    if on_manage ~= nil then
      local ok, err = xpcall(on_manage, with_traceback, writer)
      if not ok then report(owner_of[client_of[writer]], "onManage", err, on_manage) end
    end
  end
  return 0
end

-- Every 2 s: onManage of the secondary writers that have one.
function api.manage_writers()
  if next(secondary) == nil then return 0 end
  return run(manage_job)
end

---------------------------------------------------------------------------
-- Client (docs: clients/http, "The client object").
---------------------------------------------------------------------------
local PROPERTIES = { id = true, rawId = true, address = true, path = true, protocol = true,
  query = true, writer = true, properties = true, parameters = true, ping = true,
  lastReceptionTime = true }

local client_mt = {
  __index = function(t, k)
    local p = public[t]
    if p == nil then return nil end
    local v = p[k]
    if v ~= nil then return v end
    if k == "lastReceptionTime" then return host.client_get(handle_of[t], "lastReceptionTime") end
    if k == "ping" then return host.client_get(handle_of[t], "ping") end
    return private[t].data[k] -- (client.properties' entries, read directly)
  end,
  __newindex = function(t, k, v)
    if PROPERTIES[k] then error(format("'%s' is read-only on Client", tostring(k)), 2) end
    rawset(t, k, v)
  end,
  __tostring = function(t)
    local p = public[t]
    return format("Client(%s %s %s)", p.protocol, p.path == "" and "/" or p.path, p.id)
  end,
  __metatable = "Client",
}
mark_class(client_mt, "Client")
lib.lock(client_mt)
classes.Client = client_mt
shared.handles_for("Client")

-- client.properties: the request's headers, its cookies and version; called as
-- client.properties(key, value[, options]) it sets a cookie (docs: clients/http).
local function properties_of(h, data)
  local function set_cookie(_, key, value, options)
    local tv = type(value)
    if type(key) ~= "string" or (tv ~= "string" and tv ~= "number") then return nil end
    if options ~= nil and type(options) ~= "table" then return nil end
    value = tostring(value)
    if not host.client_cookie(h, key, value, options) then return nil end
    data[key] = value
    return value
  end
  return setmetatable({}, {
    __index = data,
    __call = set_cookie,
    __newindex = function(_, k) error(format("'%s' is read-only on client.properties", tostring(k)), 2) end,
    __pairs = function() return next, data, nil end,
    __len = function()
      local n = 0
      for _ in next, data do n = n + 1 end
      return n
    end,
    __metatable = "properties",
  })
end

local read_only_views = setmetatable({}, { __mode = "k" })
local function read_only(t)
  local view = read_only_views[t]
  if view == nil then
    view = setmetatable({}, {
      __index = t,
      __newindex = function(_, k) error(format("'%s' is read-only", tostring(k)), 2) end,
      __pairs = function() return next, t, nil end,
      __metatable = "parameters",
    })
    read_only_views[t] = view
  end
  return view
end

-- A new client of the application whose environment is `env` (Python's handle `h`;
-- `fields` holds its properties as key, value, key, value...).
function api.client_new(h, env, owner, id, raw_id, path, protocol, query, address, fields, parameters)
  local data = {}
  for i = 1, #fields, 2 do data[fields[i]] = fields[i + 1] end
  local client = new_object("Client", h, owner)
  local writer = new_writer(client, true)
  public[client] = {
    id = id, rawId = raw_id, address = address, path = path, protocol = protocol,
    query = query, writer = writer, properties = properties_of(h, data),
    parameters = read_only(parameters),
  }
  -- (what its messages are written in: AMF0 over RTMP, JSON elsewhere)
  local message_format = protocol == "RTMP" and "amf" or "json"
  private[client] = { env = env, data = data, format = message_format,
    message_format = message_format, reliable = true, wrote = 0, index = parameters.index }
  return client
end

-- An RTMP client that connected with objectEncoding 3: its messages carry AMF3 objects.
function api.client_amf3(client)
  local p = private[client]
  p.format, p.message_format = "amf3", "amf3"
end

---------------------------------------------------------------------------
-- The job of one request.
---------------------------------------------------------------------------
local answer = host.http_answer

local function first_line(err)
  return match(tostring(err), "^[^\n]*")
end

-- The results of a call (`ok` false: its error) answer the request: nothing returned
-- leaves it to what the writer writes.
local function answer_results(client, p, what, fn, ok, ...)
  local h = handle_of[client]
  if not ok then
    report(owner_of[client], what, (...), fn)
    return answer(h, "error", 500, first_line((...)))
  end
  local count = select("#", ...)
  if count == 0 then return end
  local encoded_ok, content_type, body = pcall(encoded, p, count, ...)
  if not encoded_ok then
    report(owner_of[client], what, what .. " returned what " .. p.format .. " cannot hold: "
      .. content_type, fn)
    return answer(h, "error", 500, "the answer cannot be written: " .. content_type)
  end
  return answer(h, "values", content_type, body)
end

local function call_method(client, p, name, fn, values, count)
  return answer_results(client, p, name, fn, xpcall(fn, with_traceback, client, unpack(values, 1, count)))
end

local function no_method(client, name)
  local path = public[client].path
  return answer(handle_of[client], "error", 503,
    format("Method '%s' not found on application %s", name, path == "" and "/" or path))
end

local function read_file(client, p, name, values, count)
  local h = handle_of[client]
  local on_read = rawget(client, "onRead")
  if on_read == nil then return answer(h, "file", name) end
  local wrote = p.wrote
  local ok, file, variables = xpcall(on_read, with_traceback, client, name, unpack(values, 1, count))
  if not ok then
    report(owner_of[client], "onRead", file, on_read)
    return answer(h, "error", 500, first_line(file))
  end
  if file == nil then
    if p.wrote > wrote then return end -- (its write answers)
    return answer(h, "error", 403, format("Access to %s is forbidden", name))
  end
  if type(file) ~= "string" then
    return answer(h, "error", 500, format("onRead returned a %s, not a file name", typename(file)))
  end
  if type(variables) ~= "table" then return answer(h, "file", file) end
  local flat, n = {}, 0
  for k, v in next, variables do
    if type(k) == "string" then
      local tv = type(v)
      flat[n + 1], flat[n + 2] = k, (tv == "string" or tv == "number" or tv == "boolean") and tostring(v) or ""
      n = n + 2
    end
  end
  return answer(h, "file", file, flat)
end

local READERS = {
  { "json", "json", formats.json.decode },
  { "xml", "xmlrpc", formats.xmlrpc.decode },
  { "x-www-form-urlencoded", "query", query_decode },
  { "amf", "amf", formats.amf.decode },
}

-- What a POST's body says, read by its Content-Type: the format and the values.
local function body_values(content_type, body)
  content_type = lower(content_type)
  for _, reader in next, READERS do
    if find(content_type, reader[1], 1, true) then
      local ok, values, count = pcall(reader[3], body)
      if ok then return reader[2], values, count end
      break -- (unreadable: the raw body goes to onMessage)
    end
  end
  return "raw", { body }, 1
end

local function method_named(client, name)
  if name == "" or find(name, ".", 1, true) then return nil end
  local fn = rawget(client, name)
  if type(fn) == "function" then return fn end
  return nil
end

local function dispatch(client, p, kind, name, query, body, content_type, values, count)
  if kind == "POST" then
    local format_name = "json" -- (Python read the body already: JSON with plain values)
    if values == nil then format_name, values, count = body_values(content_type, body) end
    p.format = format_name
    local fn = method_named(client, name)
    if fn ~= nil then return call_method(client, p, name, fn, values, count) end
    if format_name ~= "raw" and count >= 1 and type(values[1]) == "string" then
      local method = values[1]
      fn = rawget(client, method)
      if type(fn) ~= "function" then return no_method(client, method) end
      return call_method(client, p, method, fn, { unpack(values, 2, count) }, count - 1)
    end
    fn = rawget(client, "onMessage")
    if type(fn) ~= "function" then return no_method(client, "onMessage") end
    return call_method(client, p, "onMessage", fn, values, count)
  end
  p.format = "json"
  local values, count = query_decode(query)
  if name == "" then
    local index = p.index
    if index == true then return answer(handle_of[client], "listing") end
    if type(index) ~= "string" then
      return answer(handle_of[client], "error", 403, "This folder's listing is forbidden")
    end
    name = index
    if not find(name, ".", 1, true) then
      local fn = method_named(client, name)
      if fn == nil then return no_method(client, name) end
      return call_method(client, p, name, fn, values, count)
    end
  end
  local fn = method_named(client, name)
  if fn ~= nil then return call_method(client, p, name, fn, values, count) end
  return read_file(client, p, name, values, count)
end

local function drop_writers(client)
  for writer in next, secondary do
    if client_of[writer] == client then secondary[writer] = nil end
  end
end

-- onDisconnection(client) of its application, once (when onConnection accepted it).
local function disconnect(client)
  local p = private[client]
  if p == nil or p.gone then return end
  p.gone = true
  unregister(client)
  drop_writers(client)
  if not p.accepted then return end
  local handler = p.env.onDisconnection
  if handler == nil then return end
  local ok, err = xpcall(handler, with_traceback, client)
  if not ok then report(owner_of[client], "onDisconnection", err, handler) end
end

-- onConnection(client, query arguments...): an error rejects the client; a table
-- returned may set `index` and `timeout`.
-- (`values`: its arguments, when they are not the query's: RTMP's connect arguments)
local function connect(client, p, query, values, count)
  local handler = p.env.onConnection
  if handler ~= nil then
    if values == nil then values, count = query_decode(query) end
    local ok, options = xpcall(handler, with_traceback, client, unpack(values, 1, count))
    if not ok then
      report(owner_of[client], "onConnection", options, handler)
      p.gone = true
      answer(handle_of[client], "reject", 500, first_line(options))
      return false
    end
    if type(options) == "table" then
      local index = rawget(options, "index")
      if index ~= nil then p.index = index end
      local timeout = shared.tonumber(rawget(options, "timeout"))
      if timeout ~= nil and timeout > 0 then host.client_timeout(handle_of[client], timeout) end
      p.options = options -- (over RTMP, its fields go into the connection's success)
    end
  end
  p.accepted = true
  register(client)
  return true
end

local function request_job(client, request)
  if request.old ~= nil then disconnect(request.old) end
  local p = private[client]
  if request.new and not connect(client, p, request.query) then return 0 end
  dispatch(client, p, request.kind, request.name, request.query, request.body,
    request.content_type, request.values, request.count)
  return 0
end

-- One request for `client` (new: it is new, and `old` the client it replaces). A POST
-- whose body is nil comes with its values, which Python read (a JSON array of plain
-- values: _formats/json.py's flat_values).
function api.http_request(client, old, new, kind, name, query, body, content_type, ...)
  local request = { old = old, new = new, kind = kind, name = name, query = query,
    body = body, content_type = content_type }
  if body == nil then request.values, request.count = { ... }, select("#", ...) end
  return run(request_job, client, request)
end

---------------------------------------------------------------------------
-- WebSocket (docs: clients/websocket).
---------------------------------------------------------------------------
-- A new client that is not HTTP's (a WebSocket upgrade, an RTMP connect):
-- onDisconnection of the client it replaces, then onConnection; "upgrade" answers.
local function open_job(client, opening)
  if opening.old ~= nil then disconnect(opening.old) end
  local values, count
  if opening.tape_count > 0 then
    values, count = tape_values(unpack(opening.tape, 1, opening.tape_count))
  end
  local p = private[client]
  if connect(client, p, public[client].query, values, count) then
    local info, n = {}, 0 -- (the table onConnection returned: text, numbers, booleans)
    for k, v in next, p.options or {} do
      local tv = type(v)
      if type(k) == "string" and (tv == "string" or tv == "number" or tv == "boolean") then
        info[n + 1], info[n + 2], n = k, v, n + 2
      end
    end
    answer(handle_of[client], "upgrade", n, info)
  end
  return 0
end

-- (`...`: a tape of onConnection's arguments, when they are not the query's)
function api.client_open(client, old, ...)
  return run(open_job, client, { old = old, tape = { ... }, tape_count = select("#", ...) })
end


-- A method's results go back as one text message; an error closes the client with 1002
-- and its message, as MonaServer did.
local function message_results(client, p, what, fn, ok, ...)
  local h = handle_of[client]
  if not ok then
    report(owner_of[client], what, (...), fn)
    return answer(h, "close", 1002, first_line((...)))
  end
  local count = select("#", ...)
  if count == 0 then return end
  local encoded_ok, content_type, body = pcall(encoded, p, count, ...)
  if not encoded_ok then
    report(owner_of[client], what, what .. " returned what JSON cannot hold: " .. content_type, fn)
    return answer(h, "close", 1002, "the answer cannot be written: " .. content_type)
  end
  return answer(h, "values", content_type, body)
end

local function missing(client, name)
  local path = public[client].path
  local message = format("Method '%s' not found on application %s", name, path == "" and "/" or path)
  shared.log_at(owner_of[client] or "", shared.ERROR_LEVEL, 2, message)
  return answer(handle_of[client], "close", 1002, message)
end

-- One message: `kind` is "array" or "object" (Python read it as JSON: its values
-- follow as a tape), "text" (not JSON) or "binary".
local function message_job(client, message)
  local p = private[client]
  p.format = p.message_format
  local kind, values, count, name = message.kind, nil, 1, nil
  if kind == "array" or kind == "object" then
    values, count = tape_values(unpack(message.tape, 1, message.tape_count))
    if values == nil then
      values, count = { message.data }, 1
    elseif kind == "array" and count >= 1 and type(values[1]) == "string" then
      name, values, count = values[1], { unpack(values, 2, count) }, count - 1
    end
  else
    values = { message.data }
  end
  name = name or "onMessage"
  local fn = rawget(client, name)
  if type(fn) ~= "function" then return missing(client, name), 0 end
  message_results(client, p, name, fn, xpcall(fn, with_traceback, client, unpack(values, 1, count)))
  return 0
end

function api.ws_message(client, kind, data, ...)
  return run(message_job, client, { kind = kind, data = data, tape = { ... },
    tape_count = select("#", ...) })
end

local function disconnect_job(client)
  disconnect(client)
  return 0
end

-- The client's connection ended: onDisconnection (`silent`: its application is
-- unloading, no handler runs).
function api.client_closed(client, silent)
  if silent then
    local p = private[client]
    if p ~= nil then p.gone = true end
    unregister(client)
    drop_writers(client)
    return 0
  end
  return run(disconnect_job, client)
end

return shared
