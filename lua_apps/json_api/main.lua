-- A JSON API over TCP, one request per line (docs: lua/conversions). Each line is a
-- JSON array such as [{"op":"add","args":[1,2]}]; the answer is a line
-- [{"result":3}], or [{"error":"..."}] for a request it cannot serve. The request
-- `{"op":"stats"}` answers with the server itself, written as a map of its properties.
-- Configure with json_api.host (default 127.0.0.1) and json_api.port (default 1238).
local host = mona.configs["json_api.host"] or "127.0.0.1"
local port = mona.configs["json_api.port"] or 1238
local MAX_LINE = 65536

local operations = {
  add = function(a, b) return a + b end,
  mul = function(a, b) return a * b end,
  concat = function(a, b) return tostring(a) .. tostring(b) end,
}

server = mona:createTCPServer()

local function answer(request)
  if type(request) ~= "table" or type(request.op) ~= "string" then
    return { error = "a request is an object with an op" }
  end
  if request.op == "stats" then return { result = server } end
  local operation = operations[request.op]
  if operation == nil then return { error = "unknown op " .. request.op } end
  local args = type(request.args) == "table" and request.args or {}
  local ok, result = pcall(operation, args[1], args[2])
  if not ok then return { error = "bad arguments for " .. request.op } end
  return { result = result }
end

function server:onConnection(client)
  function client:onData(data)
    local consumed = 0
    while true do
      local stop = data:find("\n", consumed + 1, true)
      if stop == nil then break end
      local line = data:sub(consumed + 1, stop - 1)
      consumed = stop
      local failure
      local request = mona:fromJSON(function(message) failure = message end, line)
      local reply = failure and { error = failure } or answer(request)
      self:send(mona:toJSON(reply) .. "\n")
    end
    if #data - consumed > MAX_LINE then
      self:send(mona:toJSON({ error = "line too long" }) .. "\n")
      self:disconnect()
      return 0
    end
    return #data - consumed -- (the start of the next line stays for the next call)
  end
end

if not server:start(host, port) then
  error("json_api: cannot listen on " .. host .. ":" .. port)
end
INFO("json_api: listening on ", server.address)
