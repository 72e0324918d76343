-- trio_mona's Lua prelude, part 8 (after _lua/socket.lua): LuaSec's `require "ssl"`
-- over trio_mona's LuaSocket (docs: lua/luasec). A wrapped connection is a LuaSocket
-- TCP client of another class: its receive, send, close, settimeout... are LuaSocket's,
-- over TLS (Python's side: _net/luasec.py); dohandshake suspends only its coroutine.
-- Returns `shared` with `api.ssl_module(owner)` added.
local shared = ...
local ls = shared.luasocket
local api, error, format, host, ipairs, pairs =
  shared.api, shared.error, shared.format, shared.host, shared.ipairs, shared.pairs
local raw_getmetatable, setmetatable, tostring, type =
  shared.raw_getmetatable, shared.setmetatable, shared.tostring, shared.type
local match = shared.match

local VERSION = "1.2.0" -- (the LuaSec whose API this follows: Debian's)
local check, CLIENT = ls.check, ls.CLIENT

-- Contexts ------------------------------------------------------------------
local context_of = setmetatable({}, { __mode = "k" }) -- context object -> Python context
local context_mt = {
  __metatable = "SSL context",
  __tostring = function(t) return "SSL context: " .. (match(tostring(context_of[t]), "0x%x+") or "?") end,
}

-- LuaSec's `verify`: a word or a list of them; "peer" asks for a verified certificate.
local VERIFY = { none = true, peer = true, client_once = true, fail_if_no_peer_cert = true }
local function verify_peer(verify)
  if verify == nil then return false end
  local list = type(verify) == "table" and verify or { verify }
  local peer = false
  for _, word in ipairs(list) do
    if not VERIFY[word] then return nil, format("invalid verify option (%s)", tostring(word)) end
    if word == "peer" then peer = true end
  end
  return peer
end

local function text_or_nil(params, key)
  local v = params[key]
  if v ~= nil and type(v) ~= "string" then return false end
  return v
end

local function newcontext(params)
  if type(params) ~= "table" then
    error(format("bad argument #1 to 'newcontext' (table expected, got %s)", shared.typename(params)), 2)
  end
  local peer, err = verify_peer(params.verify)
  if peer == nil then return nil, err end
  for _, key in ipairs({ "mode", "protocol", "cafile", "certificate", "key" }) do
    if text_or_nil(params, key) == false then return nil, format("invalid %s", key) end
  end
  local made
  made, err = host.ls_tls_context(params.mode or "", params.protocol or "any", peer,
    params.cafile, params.certificate, params.key)
  if made == nil then return nil, err end
  local ctx = setmetatable({}, context_mt)
  context_of[ctx] = made
  return ctx
end

-- Certificates --------------------------------------------------------------
local cert_of = setmetatable({}, { __mode = "k" })
local function name_list(flat)
  local list = {}
  for i = 1, #flat, 3 do
    list[#list + 1] = { name = flat[i], value = flat[i + 1], oid = flat[i + 2] ~= "" and flat[i + 2] or nil }
  end
  return list
end
local cert_methods = {
  pem = function(self) return cert_of[self].pem end,
  subject = function(self) return name_list(cert_of[self].subject) end,
  issuer = function(self) return name_list(cert_of[self].issuer) end,
  notbefore = function(self) return cert_of[self].notbefore end,
  notafter = function(self) return cert_of[self].notafter end,
  serial = function(self) return cert_of[self].serial end,
}
local cert_mt = { __index = cert_methods, __metatable = "SSL certificate",
  __tostring = function() return "SSL certificate" end }

-- Connections ---------------------------------------------------------------
local conn = {}
for name, method in pairs(ls.tcp) do conn[name] = method end
conn.class = "SSL: connection"
local tcp_close = ls.tcp.close
function conn:close() tcp_close(self) end -- (LuaSec's returns nothing)

function conn:dohandshake()
  local h = check(self, "dohandshake", "tcp", CLIENT)
  local ok, err = ls.until_done("dohandshake", function(first, timed_out)
    return host.ls_tls_handshake(h, first, timed_out)
  end)
  if ok then return true end
  return false, err
end

function conn:sni(name)
  local h = check(self, "sni", "tcp", CLIENT)
  host.ls_tls_sni(h, ls.string_arg("sni", 1, name))
end

function conn:getpeercertificate()
  local h = check(self, "getpeercertificate", "tcp", CLIENT)
  local pem, subject, issuer, notbefore, notafter, serial = host.ls_tls_peer(h)
  if pem == nil then return nil end
  local cert = setmetatable({}, cert_mt)
  cert_of[cert] = { pem = pem, subject = subject or {}, issuer = issuer or {},
    notbefore = notbefore, notafter = notafter, serial = serial }
  return cert
end

-- true, or false and the reasons (docs: lua/luasec, what is known of them).
function conn:getpeerverification()
  local h = check(self, "getpeerverification", "tcp", CLIENT)
  if host.ls_tls_verified(h) then return true end
  return false, "the peer's certificate was not verified (verify is not \"peer\")"
end

local conn_mt = {
  __index = conn,
  __tostring = function(t) return "SSL connection: " .. ls.address_of[t] end,
  __metatable = "SSL: connection",
  __gc = function(t) local n = ls.serial_of[t]; if n ~= nil then ls.close_later(n) end end,
  __name = "SSL: connection",
}
shared.mark_class(conn_mt, "SSL: connection")

local function wrap(sock, cfg)
  local ctx = cfg
  if raw_getmetatable(cfg) ~= context_mt then
    local err
    ctx, err = newcontext(cfg)
    if ctx == nil then return nil, err end
  end
  local h = check(sock, "wrap", "tcp", CLIENT)
  local ok, err = host.ls_tls_wrap(h, context_of[ctx])
  if not ok then return nil, err end
  return ls.adopt(sock, conn_mt, "client")
end

function api.ssl_module()
  return { _VERSION = VERSION, newcontext = newcontext, wrap = wrap }
end

-- ssl.https: LuaSec's https.request, an HTTP/1.1 client over a wrapped connection
-- (docs: lua/luasec, "ssl.https"). Unlike LuaSec's it verifies the server by default.
local concat, gsub, lower, tonumber = shared.concat, shared.gsub, shared.lower, shared.tonumber

local function parse_url(url)
  if type(url) ~= "string" then return nil, "invalid url" end
  local scheme, authority, rest = match(url, "^(%a[%w+.-]*)://([^/?#]*)([^#]*)")
  if scheme == nil then return nil, "invalid url" end
  if lower(scheme) ~= "https" then return nil, "wrong scheme" end
  local host, port = match(authority, "^%[([^%]]+)%]:?(%d*)$")
  if host == nil then host, port = match(authority, "^([^:]+):?(%d*)$") end
  if host == nil then return nil, "invalid url" end
  return host, tonumber(port) or 443, rest ~= "" and rest or "/"
end

-- The response's body: by chunks, by length, or to the end; each piece to `sink`.
local function read_body(conn, headers, sink)
  if lower(headers["transfer-encoding"] or "") == "chunked" then
    while true do
      local line, err = conn:receive("*l")
      if not line then return nil, err end
      local size = tonumber(match(line, "^%s*(%x+)"), 16)
      if size == nil then return nil, "invalid chunk size" end
      if size == 0 then
        repeat line, err = conn:receive("*l") until not line or line == ""
        return line and 1 or nil, err
      end
      local chunk
      chunk, err = conn:receive(size)
      if not chunk then return nil, err end
      sink(chunk)
      conn:receive("*l")
    end
  end
  local length = tonumber(headers["content-length"])
  local body, err, partial
  if length then body, err = conn:receive(length) else body, err, partial = conn:receive("*a") end
  body = body or partial
  if body and body ~= "" then sink(body) end
  if length and err then return nil, err end
  return 1
end

local function https_request(socket_module, req)
  local host, port, target = parse_url(req.url)
  if host == nil then return nil, port end
  local sock = socket_module.tcp()
  sock:settimeout(60)
  local ok, err = sock:connect(host, port)
  if not ok then sock:close(); return nil, err end
  local conn
  conn, err = wrap(sock, { mode = "client", protocol = req.protocol or "any",
    verify = req.verify or "peer", cafile = req.cafile, certificate = req.certificate, key = req.key })
  if conn == nil then sock:close(); return nil, err end
  conn:sni(host)
  ok, err = conn:dohandshake()
  if not ok then conn:close(); return nil, err end
  local method = req.method or "GET"
  local lines = { method .. " " .. target .. " HTTP/1.1" }
  local given = {}
  for name, value in pairs(req.headers or {}) do
    lines[#lines + 1] = name .. ": " .. value
    given[lower(name)] = true
  end
  if not given.host then lines[#lines + 1] = "host: " .. host .. (port ~= 443 and ":" .. port or "") end
  if not given.connection then lines[#lines + 1] = "connection: close" end
  if not given["user-agent"] then lines[#lines + 1] = "user-agent: trio_mona" end
  local body = ""
  if req.source then
    local parts = {}
    repeat
      local chunk = req.source()
      parts[#parts + 1] = chunk
    until chunk == nil
    body = concat(parts)
    if not given["content-length"] then lines[#lines + 1] = "content-length: " .. #body end
  end
  ok, err = conn:send(concat(lines, "\r\n") .. "\r\n\r\n" .. body)
  if not ok then conn:close(); return nil, err end
  local status
  status, err = conn:receive("*l")
  if not status then conn:close(); return nil, err end
  local code = tonumber(match(status, "^HTTP/%d%.%d (%d%d%d)"))
  if code == nil then conn:close(); return nil, "invalid status line" end
  local headers = {}
  while true do
    local line
    line, err = conn:receive("*l")
    if not line then conn:close(); return nil, err end
    if line == "" then break end
    local name, value = match(line, "^([^:]+):%s*(.-)%s*$")
    if name then
      name = lower(name)
      headers[name] = headers[name] and headers[name] .. ", " .. value or value
    end
  end
  local sink = req.sink or function() return 1 end
  if method ~= "HEAD" and code ~= 204 and code ~= 304 and code >= 200 then
    ok, err = read_body(conn, headers, sink)
    if not ok then conn:close(); return nil, err end
  end
  sink(nil)
  conn:close()
  return 1, code, headers, status
end

function api.ssl_https_module(owner)
  local socket_module = api.socket_module(owner)
  local https = { PORT = 443, TIMEOUT = 60 }
  -- request(url[, body]): the body, code, headers and status line; or the table form
  -- (url, method, headers, source, sink, and the context's parameters): 1, code...
  function https.request(url, body)
    if type(url) == "table" then return https_request(socket_module, url) end
    local parts = {}
    local req = { url = url, sink = function(chunk) parts[#parts + 1] = chunk return 1 end }
    if body ~= nil then
      local sent = false
      req.method = "POST"
      req.headers = { ["content-type"] = "application/x-www-form-urlencoded" }
      req.source = function() if sent then return nil end sent = true return body end
    end
    local ok, code, headers, status = https_request(socket_module, req)
    if ok == nil then return nil, code end
    return concat(parts), code, headers, status
  end
  return https
end

return shared
