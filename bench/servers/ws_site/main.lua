-- The WebSocket benchmark's site (bench/suite.py): ["echo", value] answered by the
-- method's return; ["say", text] pushed to every client (a chat's fan-out).
function onConnection(client)
  function client:echo(value)
    return value
  end
  function client:say(text)
    for _, other in pairs(mona.clients) do
      other.writer:writeInvocation("said", text)
    end
  end
end
