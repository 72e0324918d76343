-- Live streams over RTMP, a status page over HTTP, and a UDP ingest (docs: clients/rtmp).
-- Run it with
--   trio-mona run lua_apps/live --rtmp 1935 --http 8080 --set live.udp=1936
-- publish to the application /live (the folder live/, which inherits these handlers)
-- with the token in the stream name's query:
--   ffmpeg -re -f lavfi -i testsrc2 -f lavfi -i sine -c:v libx264 -c:a aac \
--          -f flv "rtmp://127.0.0.1:1935/live/cam?token=secret"
-- play it with  ffplay rtmp://127.0.0.1:1935/live/cam  or
-- http://127.0.0.1:8080/live/cam.flv, and open http://127.0.0.1:8080/ for the list.
-- Send an FLV file to the UDP ingest (it becomes the publication "udp") with
--   python lua_apps/live/send_flv.py received.flv 127.0.0.1:1936

local TOKEN = mona.configs["live.token"] or "secret"

function onConnection(client)
  if client.protocol == "HTTP" then
    function client:status()
      local list = {}
      for name, publication in pairs(mona.publications) do
        local bytes = publication.videoQOS.byteRate + publication.audioQOS.byteRate
        list[#list + 1] = { name = name, listeners = publication.listeners.count,
          lastTime = publication.lastTime, droppedFrames = publication.droppedFrames,
          kbps = math.floor(bytes * 8 / 1000) }
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

-- The UDP ingest: each datagram holds one FLV tag (type, 3-byte size, timestamp, stream
-- id, body; the 4-byte trailer of a file's tag may follow), and the tags become the
-- publication "udp" (the idea of MonaServer's gstreamer sample). It stops after 5 s
-- without a datagram.
local INGEST = mona.configs["live.udp"]
local ingested, last_datagram = nil, 0

local function be(data, first, count) -- a big-endian unsigned number
  local n = 0
  for i = first, first + count - 1 do n = n * 256 + data:byte(i) end
  return n
end

if INGEST then
  local socket = mona:createUDPSocket()
  function socket:onPacket(data, address)
    local size = #data >= 11 and be(data, 2, 3)
    if not size or #data < 11 + size then
      WARN("not an FLV tag: ", #data, " bytes from ", address)
      return
    end
    local kind, time = data:byte(1), be(data, 8, 1) * 16777216 + be(data, 5, 3)
    local body = data:sub(12, 11 + size)
    ingested = ingested or mona:publish("udp")
    if not ingested then
      WARN("the name udp is published by another")
      return
    end
    last_datagram = os.time()
    if kind == 9 then
      ingested:pushVideo(time, body)
    elseif kind == 8 then
      ingested:pushAudio(time, body)
    elseif kind == 18 then -- (metadata: the publication's properties)
      local name, properties = mona:fromAMF(body)
      if name == "onMetaData" and type(properties) == "table" then
        ingested:writeProperties(properties)
      end
    end
  end
  local err = socket:bind("127.0.0.1", INGEST)
  if err then ERROR("UDP ingest: ", err) else NOTE("UDP ingest on ", socket.address) end
end

function onManage()
  if ingested and os.time() - last_datagram >= 5 then
    local stopped = ingested
    ingested = nil
    stopped:close()
    NOTE("the UDP ingest has stopped")
  end
end
