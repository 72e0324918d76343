-- trio_mona's Lua prelude, part 10 (after _lua/clients.lua): publications and listeners
-- as Lua objects, and the client events of live media (docs: clients/rtmp):
-- onPublish(publication) and onSubscribe(listener) may refuse (false, or an error: its
-- message), onUnpublish and onUnsubscribe are told. Returns `shared`.
local shared = ...
local api, class, format, handle_of, host = shared.api, shared.class, shared.format,
  shared.handle_of, shared.host
local next, select, setmetatable = shared.next, shared.select, shared.setmetatable
local match, new_object, owner_of, rawget, report, run =
  shared.match, shared.new_object, shared.owner_of, shared.rawget, shared.report, shared.run
local tostring, type, with_traceback, xpcall =
  shared.tostring, shared.type, shared.with_traceback, shared.xpcall
local error, pairs, pcall = shared.error, shared.pairs, shared.pcall

local properties = host.properties
local publications_handles = shared.handles_for("Publication")

local function own_publication(self, method)
  local h = publications_handles[self]
  if h == nil then
    error(format("bad self to '%s' (Publication expected; call it as publication:%s(...))",
      method, method), 3)
  end
  return h
end

local media_get = host.media_get
local amf, query_format = shared.formats.amf, shared.formats.query

-- `pushAudio(time, packet[, ping])`: `ping` is the latency its QOS reports (ms).
local function push(type_id, method)
  return function(self, time, packet, ping)
    local h = own_publication(self, method)
    if type(time) ~= "number" then shared.argerror(method, 1, "number", time) end
    if type(packet) ~= "string" then shared.argerror(method, 2, "string", packet) end
    if ping ~= nil and type(ping) ~= "number" then shared.argerror(method, 3, "number", ping) end
    local ok, err = host.media_push(h, type_id, time, packet, ping)
    if not ok then error(method .. ": " .. err, 2) end
  end
end

-- `push...Data(...)`: a data message. Players over RTMP and FLV read AMF0 data only, so
-- every format reaches them as AMF0 (docs: clients/rtmp, "Publications").
local function push_data(method, encode)
  return function(self, ...)
    local h = own_publication(self, method)
    local ok, payload = pcall(encode, select("#", ...), ...)
    if not ok then error(method .. ": " .. tostring(payload), 2) end
    local pushed, err = host.media_push(h, 18, 0, payload, nil)
    if not pushed then error(method .. ": " .. err, 2) end
  end
end

local concat = shared.concat
local function raw_data(count, ...) -- (pushData: the arguments concatenated, as one string)
  local parts = {}
  for i = 1, count do
    local v = select(i, ...)
    local t = type(v)
    if t == "number" then v = tostring(v) elseif t ~= "string" then
      error(format("bad argument #%d (string expected, got %s)", i, shared.typename(v)), 0)
    end
    parts[i] = v
  end
  return amf.encode0(1, concat(parts))
end

local function flush_event(self)
  local handler = rawget(self, "onFlush")
  if type(handler) ~= "function" then return end
  local ok, err = xpcall(handler, with_traceback, self)
  if not ok then report(owner_of[self], "onFlush", err, handler) end
end

class("Publication", {
  pushAudio = push(8, "pushAudio"),
  pushVideo = push(9, "pushVideo"),
  pushAMFData = push_data("pushAMFData", amf.encode0),
  pushAMF0Data = push_data("pushAMF0Data", amf.encode0),
  pushJSONData = push_data("pushJSONData", amf.encode0),
  pushXMLRPCData = push_data("pushXMLRPCData", amf.encode0),
  pushData = push_data("pushData", raw_data),
  writeProperties = function(self, properties)
    local h = own_publication(self, "writeProperties")
    if type(properties) ~= "table" then shared.argerror("writeProperties", 1, "table", properties) end
    local ok, payload = pcall(amf.encode0, 2, "onMetaData", properties)
    if not ok then error("writeProperties: " .. tostring(payload), 2) end
    if not host.media_properties(h, payload) then error("writeProperties: the publication is closed", 2) end
  end,
  clearProperties = function(self)
    host.media_properties(own_publication(self, "clearProperties"), nil)
  end,
  -- (frames leave with the executor's batch; flush runs onFlush)
  flush = function(self)
    own_publication(self, "flush")
    flush_event(self)
  end,
  -- close([code, description]): a client's publication also tells its publisher,
  -- with onStatus "NetStream." .. code when a code is given.
  close = function(self, code, description)
    local h = own_publication(self, "close")
    if code ~= nil and type(code) ~= "string" then shared.argerror("close", 1, "string", code) end
    if description ~= nil and type(description) ~= "string" then
      shared.argerror("close", 2, "string", description)
    end
    host.media_close(h, code, description)
  end,
}, properties.Publication, media_get, {
  __tostring = function(t) return "Publication(" .. tostring(media_get(handle_of[t], "name")) .. ")" end,
})
class("Listener", {}, properties.Listener, media_get, {
  __tostring = function(t) return "Listener(" .. tostring(media_get(handle_of[t], "name")) .. ")" end,
})
class("QualityOfService", {}, properties.QualityOfService, host.qos_get, {
  __tostring = function() return "QualityOfService" end,
})

-- The members that are objects or tables: made here, the same object each time.
local made = setmetatable({}, { __mode = "k" }) -- object -> { member -> value }
local function once(t, k, make)
  local members = made[t]
  if members == nil then members = {}; made[t] = members end
  local v = members[k]
  if v == nil then v = make(t, k); members[k] = v end
  return v
end

local function qos(t, k)
  return once(t, k, function() return new_object("QualityOfService", media_get(handle_of[t], k), owner_of[t]) end)
end

-- publication.listeners: pairs (client, listener), `#` and `count`.
local function listeners(t)
  return once(t, "listeners", function()
    local h = handle_of[t]
    local view = setmetatable({}, {
      __index = function(_, k) if k == "count" then return media_get(h, "listeners") end end,
      __newindex = function(_, k) error(format("'%s' is read-only on listeners", tostring(k)), 2) end,
      __len = function() return media_get(h, "listeners") end,
      __pairs = function()
        local flat, i = host.media_listeners(h), -1
        return function()
          i = i + 2
          if flat[i] == nil then return nil end
          return flat[i], flat[i + 1]
        end, nil, nil
      end,
      __metatable = "listeners",
    })
    shared.lib.lock(shared.raw_getmetatable(view))
    return view
  end)
end

-- publication.properties: its metadata, a copy each time.
local function metadata(t)
  local payload = media_get(handle_of[t], "properties")
  if payload == nil then return {} end
  local ok, values = pcall(amf.decode, payload)
  return ok and type(values[2]) == "table" and values[2] or {}
end

local function decode_query(text)
  local ok, values = pcall(query_format.decode, text)
  return ok and type(values[1]) == "table" and values[1] or {}
end

local SPECIAL = {
  Publication = {
    audioQOS = qos, videoQOS = qos, dataQOS = qos, listeners = listeners, properties = metadata,
  },
  Listener = {
    audioQOS = qos, videoQOS = qos, dataQOS = qos,
    client = function(t) return media_get(handle_of[t], "client") end,
    publication = function(t)
      local name = media_get(handle_of[t], "publication")
      return name and host.media_find(name) or nil
    end,
    parameters = function(t)
      return once(t, "parameters", function() return decode_query(media_get(handle_of[t], "query")) end)
    end,
  },
}
for class_name, special in pairs(SPECIAL) do
  local mt = shared.classes[class_name]
  local index = mt.__index
  mt.__index = function(t, k)
    local f = special[k]
    if f ~= nil then return f(t, k) end
    return index(t, k)
  end
end

-- A publication's media events reach Lua only when the application defines them (a
-- frame must not cross otherwise): setting one tells Python.
local MEDIA_EVENTS = { onAudio = true, onVideo = true, onData = true, onFlush = true }
local publication_mt = shared.classes.Publication
local publication_newindex = publication_mt.__newindex
publication_mt.__newindex = function(t, k, v)
  if SPECIAL.Publication[k] then error(format("'%s' is read-only on Publication", tostring(k)), 2) end
  publication_newindex(t, k, v)
  if MEDIA_EVENTS[k] then host.media_handler(handle_of[t], k, v ~= nil) end
end
local listener_mt = shared.classes.Listener
local listener_newindex = listener_mt.__newindex
local RECEIVE = { receiveAudio = true, receiveVideo = true }
listener_mt.__newindex = function(t, k, v)
  if RECEIVE[k] then
    if type(v) ~= "boolean" then error(format("'%s' must be a boolean, got %s", k, shared.typename(v)), 2) end
    host.media_set(handle_of[t], k, v)
    return
  end
  if SPECIAL.Listener[k] then error(format("'%s' is read-only on Listener", tostring(k)), 2) end
  listener_newindex(t, k, v)
end

shared.handles_for("Listener")
shared.handles_for("QualityOfService")
shared.add_views({ "Publication", "Listener", "QualityOfService" })

function api.media_object(class_name, handle, owner)
  return new_object(class_name, handle, owner)
end

local REFUSALS = { onPublish = "Not allowed to publish %s", onSubscribe = "Not authorized to play %s" }

-- `client:name(object)`: for onPublish and onSubscribe, false or an error refuses (the
-- answer says why); the others are told.
local function event_job(client, event)
  local name, object = event.name, event.object
  local handler = rawget(client, name)
  if type(handler) ~= "function" then return 0 end
  local ok, result = xpcall(handler, with_traceback, client, object)
  local refusal = REFUSALS[name]
  if refusal == nil then
    if not ok then report(owner_of[client], name, result, handler) end
    return 0
  end
  if not ok then
    report(owner_of[client], name, result, handler)
    host.http_answer(handle_of[client], "refuse", 403, match(tostring(result), "^[^\n]*"))
  elseif result == false then
    host.http_answer(handle_of[client], "refuse", 403, format(refusal, event.title))
  end
  return 0
end

local function media_job(publication, frame)
  local name = frame.name
  local handler = rawget(publication, name)
  if type(handler) ~= "function" then return 0 end
  local ok, err
  if name == "onFlush" then
    ok, err = xpcall(handler, with_traceback, publication)
  else
    ok, err = xpcall(handler, with_traceback, publication, frame.time, frame.packet)
  end
  if not ok then report(owner_of[publication], name, err, handler) end
  return 0
end

-- A frame to the publication's onAudio(time, packet), onVideo or onData.
function api.publication_media(publication, name, time, packet)
  return run(media_job, publication, { name = name, time = time, packet = packet })
end

function api.media_event(client, name, object, title)
  return run(event_job, client, { name = name, object = object, title = title })
end

-- mona:publish(name) and mona.publications (docs: clients/rtmp).
local PUBLICATIONS = setmetatable({}, {
  __index = function(_, k)
    if k == "count" then return #host.media_names() end
    if type(k) ~= "string" then return nil end
    return host.media_find(k)
  end,
  __call = function(_, name) return type(name) == "string" and host.media_find(name) or nil end,
  __newindex = function(_, k) error(format("'%s' is read-only on mona.publications", tostring(k)), 2) end,
  __pairs = function()
    local names, i = host.media_names(), 0
    return function()
      i = i + 1
      local name = names[i]
      if name == nil then return nil end
      return name, host.media_find(name)
    end, nil, nil
  end,
  __len = function() return #host.media_names() end,
  __metatable = "publications",
})
shared.lib.lock(shared.raw_getmetatable(PUBLICATIONS))

shared.mona_groups[#shared.mona_groups + 1] = function(members, props, method, path)
  props.publications = PUBLICATIONS
  members.publish = method(function(name)
    if type(name) ~= "string" then shared.argerror("publish", 1, "string", name) end
    return host.media_publish(path, name)
  end)
end

return shared
