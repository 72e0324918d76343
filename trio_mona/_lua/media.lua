-- trio_mona's Lua prelude, part 9 (after _lua/clients.lua): publications and listeners
-- as Lua objects, and the client events of live media (docs: clients/rtmp):
-- onPublish(publication) and onSubscribe(listener) may refuse (false, or an error: its
-- message), onUnpublish and onUnsubscribe are told. Returns `shared`.
local shared = ...
local api, class, format, handle_of, host = shared.api, shared.class, shared.format,
  shared.handle_of, shared.host
local match, new_object, owner_of, rawget, report, run =
  shared.match, shared.new_object, shared.owner_of, shared.rawget, shared.report, shared.run
local tostring, type, with_traceback, xpcall =
  shared.tostring, shared.type, shared.with_traceback, shared.xpcall

local properties = host.properties
class("Publication", {}, properties.Publication, host.media_get, {
  __tostring = function(t) return "Publication(" .. tostring(host.media_get(handle_of[t], "name")) .. ")" end,
})
class("Listener", {}, properties.Listener, host.media_get, {
  __tostring = function(t) return "Listener(" .. tostring(host.media_get(handle_of[t], "name")) .. ")" end,
})

shared.handles_for("Publication")
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

function api.media_event(client, name, object, title)
  return run(event_job, client, { name = name, object = object, title = title })
end

return shared
