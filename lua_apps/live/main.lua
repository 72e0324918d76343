-- Live streams over RTMP, and a status page over HTTP (docs: clients/rtmp). Run it with
--   trio-mona run lua_apps/live --rtmp 1935 --http 8080
-- publish to the application /live (the folder live/, which inherits these handlers)
-- with the token in the stream name's query:
--   ffmpeg -re -f lavfi -i testsrc2 -f lavfi -i sine -c:v libx264 -c:a aac \
--          -f flv "rtmp://127.0.0.1:1935/live/cam?token=secret"
-- play it with  ffplay rtmp://127.0.0.1:1935/live/cam  or
-- http://127.0.0.1:8080/live/cam.flv, and open http://127.0.0.1:8080/ for the list.

local TOKEN = mona.configs["live.token"] or "secret"

function onConnection(client)
  if client.protocol == "HTTP" then
    function client:status()
      local list = {}
      for name, publication in pairs(mona.publications) do
        list[#list + 1] = { name = name, listeners = publication.listeners.count,
          lastTime = publication.lastTime, droppedFrames = publication.droppedFrames }
      end
      table.sort(list, function(a, b) return a.name < b.name end)
      return list
    end
    return { index = "index.html" }
  end

  -- Publishing needs the token (in the stream name's query); playing is free.
  function client:onPublish(publication)
    local args = mona:fromQuery(publication.query) or {}
    if args.token ~= TOKEN then error("a token is needed to publish " .. publication.name) end
    NOTE(publication.name, " is published by ", client.address)
  end
  function client:onUnpublish(publication)
    NOTE(publication.name, " has stopped")
  end
end
