-- A small web site served over HTTP (docs: clients/http). Run it with
--   trio-mona run lua_apps/web --http 8080
-- and open http://127.0.0.1:8080/ in a browser.
--
-- index.html is a template filled in by onRead; its script POSTs ["greet", name] as
-- JSON, which calls client:greet(name); greet remembers the name in a cookie; /time
-- is a JSON API any client can GET.

visits = 0

-- What a template shows must not become markup.
local function escaped(text)
  return (tostring(text):gsub("[<>&\"']", function(c) return string.format("&#%d;", c:byte()) end))
end

function onConnection(client)
  function client:greet(name)
    if type(name) ~= "string" or not name:match("^[%w%- ]+$") then
      error("a name is letters, digits, spaces and dashes")
    end
    client.properties("name", name:gsub(" ", "-"), { expires = 3600, path = "/" })
    return "Hello " .. name .. "!"
  end

  function client:time()
    return { now = mona:time(), visits = visits }
  end

  function client:onRead(file)
    if file == "index.html" then
      visits = visits + 1
      return file, { name = escaped(client.name or "stranger"), visits = visits }
    end
    return file
  end

  -- The folder's own URL shows the page.
  return { index = "index.html" }
end
