-- trio_mona's Lua prelude, part 9 (after _lua/clients.lua): publications and listeners
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

local function push(type_id, method)
  return function(self, time, packet)
    local h = own_publication(self, method)
    if type(time) ~= "number" then shared.argerror(method, 1, "number", time) end
    if type(packet) ~= "string" then shared.argerror(method, 2, "string", packet) end
    local ok, err = host.media_push(h, type_id, time, packet)
    if not ok then error(method .. ": " .. err, 2) end
  end
end

class("Publication", {
  pushAudio = push(8, "pushAudio"),
  pushVideo = push(9, "pushVideo"),
  pushAMF0Data = function(self, ...)
    local h = own_publication(self, "pushAMF0Data")
    local ok, err = host.media_push(h, 18, 0, shared.formats.amf.encode0(select("#", ...), ...))
    if not ok then error("pushAMF0Data: " .. err, 2) end
  end,
  flush = function(self) own_publication(self, "flush") end, -- (frames leave with the batch)
  close = function(self) host.media_close(own_publication(self, "close")) end,
}, properties.Publication, host.media_get, {
  __tostring = function(t) return "Publication(" .. tostring(host.media_get(handle_of[t], "name")) .. ")" end,
})
-- A publication's media events reach Lua only when the application defines them (a
-- frame must not cross otherwise): setting one tells Python.
local MEDIA_EVENTS = { onAudio = true, onVideo = true, onData = true }
local publication_mt = shared.classes.Publication
local publication_newindex = publication_mt.__newindex
publication_mt.__newindex = function(t, k, v)
  publication_newindex(t, k, v)
  if MEDIA_EVENTS[k] then host.media_handler(handle_of[t], k, v ~= nil) end
end
class("Listener", {}, properties.Listener, host.media_get, {
  __tostring = function(t) return "Listener(" .. tostring(host.media_get(handle_of[t], "name")) .. ")" end,
})

shared.handles_for("Listener")
shared.add_views({ "Publication", "Listener" })

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
  local ok, err = xpcall(handler, with_traceback, publication, frame.time, frame.packet)
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
