-- The live benchmark's site (bench/live.py): anyone may publish and play; the
-- application /live (its folder live/) inherits this.
function onConnection(client) end
