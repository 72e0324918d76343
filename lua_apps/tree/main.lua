-- A tree of applications: this root, /greeter and /status (one folder each).
-- Children inherit these globals; onStart is inherited too, so it runs once per
-- application with that application's path.
VERSION = "1.0"
ticks, managed = 0, 0

function describe(app)
  return (app.path == "" and "/" or app.path) .. " (tree " .. VERSION .. ")"
end

function onStart(path)
  NOTE("tree: started ", path == "" and "/" or path)
end

function onStop(path)
  NOTE("tree: stopping ", path == "" and "/" or path)
end

-- Every 2 seconds (trio_mona.manage_interval) on the root application.
function onManage()
  managed = managed + 1
end

-- A timer: the function returns the delay until its next call (0 stops it).
mona:setTimer(function()
  ticks = ticks + 1
  return 1000
end, 1000)

-- A child asked for before it has loaded loads at once (its onStart comes later):
-- the root can rely on what its children define from its own first lines.
NOTE("tree: the greeter answers on port ", children("greeter").PORT)
