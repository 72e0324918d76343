-- The HTTP benchmark's site (bench/suite.py): file.txt (1 KiB) served as a file, and
-- a method a JSON POST calls, returning a small table.
function onConnection(client)
  function client:sum(a, b)
    return { sum = a + b, ok = true }
  end
end
