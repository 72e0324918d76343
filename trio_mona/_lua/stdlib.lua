-- The standard library applications see (docs: lua/safety), built once per runtime
-- before any application runs.
--
-- Run with the real globals `G` and the runtime's options; returns `lib`. Like the
-- prelude, this chunk has no globals of its own (reading one is an error): it keeps its
-- own references to every standard function it uses, taken here, so that nothing an
-- application replaces later changes what the runtime does.
--
-- Normal mode changes the real globals in place: Lua 5.1 names on Lua 5.4 (and 5.2
-- names on LuaJIT), a `debug` that hands out no runtime function, a `rawset` that
-- respects read-only objects, text-only chunks, and no LuaJIT `ffi` or `jit` internals
-- (unless `unsafe_native`). Sandbox mode builds a fresh allow-list instead: its own
-- `package`, read-only library tables, no route back to the real ones.
local G, unsafe_native, sandbox = ...

local type, tostring, tonumber, select, error, pcall, assert =
  G.type, G.tostring, G.tonumber, G.select, G.error, G.pcall, G.assert
local raw_rawset, rawget, rawequal, next, pairs, ipairs =
  G.rawset, G.rawget, G.rawequal, G.next, G.pairs, G.ipairs
local setmetatable, getmetatable, load = G.setmetatable, G.getmetatable, G.load
local string, table, math, os, coroutine, debug, package =
  G.string, G.table, G.math, G.os, G.coroutine, G.debug, G.package
local format, sub, gmatch, match = string.format, string.sub, string.gmatch, string.match
local table_sort = table.sort
local co_create, co_resume, co_close = coroutine.create, coroutine.resume, coroutine.close
local raw_pcall, raw_xpcall = G.pcall, G.xpcall
local raw_getinfo, traceback, raw_getmetatable = debug.getinfo, debug.traceback, debug.getmetatable
local getupvalue, setupvalue, setfenv = debug.getupvalue, debug.setupvalue, G.setfenv
local searchpath, io_open = package.searchpath, G.io.open
local file_methods = raw_getmetatable(G.io.stdout).__index
local file_read, file_close = file_methods.read, file_methods.close
local LUAJIT = type(G.jit) == "table"

-- `raw`: the originals of what normal mode replaces, for the prelude.
local lib = {
  sandbox = sandbox,
  raw = {
    rawset = raw_rawset, load = load, debug = debug, resume = co_resume,
    pcall = raw_pcall, xpcall = raw_xpcall, create = co_create, setmetatable = setmetatable,
  },
  -- The runaway bound's state, shared with the prelude: `expired` once a handler ran
  -- past its bound (until it ends); `hook(co)` puts the bound on a new coroutine.
  runaway = { expired = false, hook = nil, finishing = false },
}

---------------------------------------------------------------------------
-- Read-only objects: `rawset` refuses what `__newindex` refuses.
---------------------------------------------------------------------------
local locked = setmetatable({}, { __mode = "k" }) -- metatable -> true (all keys) or key set

-- Objects whose metatable is `mt` refuse rawset of `keys` (a set), or of every key.
function lib.lock(mt, keys) locked[mt] = keys or true end

local function guarded_rawset(t, k, v)
  if type(t) == "table" then
    local mt = raw_getmetatable(t)
    local keys = mt ~= nil and locked[mt]
    if keys and (keys == true or keys[k]) then
      error(format("'%s' is read-only", tostring(k)), 2)
    end
  end
  return raw_rawset(t, k, v)
end
lib.rawset = guarded_rawset

local frozen_of = setmetatable({}, { __mode = "k" }) -- read-only proxy -> its table

-- A read-only view of `t` named `name` (the library tables of the sandbox).
local function frozen(t, name)
  local mt = {
    __index = t,
    __newindex = function(_, k)
      error(format("'%s' is read-only: %s is shared by every application", tostring(k), name), 2)
    end,
    __pairs = function() return next, t, nil end,
    __metatable = name,
  }
  locked[mt] = true
  local proxy = setmetatable({}, mt)
  frozen_of[proxy] = t
  return proxy
end

-- `pairs` that walks read-only views on every engine (LuaJIT ignores __pairs).
local function sandbox_pairs(t)
  local inner = frozen_of[t]
  if inner ~= nil then return next, inner, nil end
  return pairs(t)
end

---------------------------------------------------------------------------
-- The runtime's coroutines and functions stay out of reach.
---------------------------------------------------------------------------
local private_threads = {} -- set by the prelude: the executor's pooled coroutines

function lib.set_private_threads(set) private_threads = set end

local function own_thread(co, name)
  if private_threads[co] then
    error(format("bad argument #1 to '%s' (this coroutine belongs to the runtime)", name), 3)
  end
end

-- Once a handler ran past its bound, no pcall catches its errors any more: the
-- handler ends (docs: lua/safety, runaway code).
local runaway = lib.runaway

local function caught(ok, ...)
  if not ok and runaway.expired then error((...), 0) end
  return ok, ...
end

local function pcall_(f, ...) return caught(raw_pcall(f, ...)) end
local function xpcall_(f, handler, ...) return caught(raw_xpcall(f, handler, ...)) end

-- What a waiting call yields (_lua/jobs.lua): a coroutine of the application's own
-- that yields it is adopted by the runtime, which resumes it when its wait ends; the
-- application's resume returns true at once (docs: lua/luasocket).
local SUSPEND = {}
lib.SUSPEND = SUSPEND

local function passed(co, ok, tag, ...)
  if ok and tag == SUSPEND then
    lib.adopt(co, ...)
    return true
  end
  return ok, tag, ...
end

-- Coroutines resumed inside coroutines nest on the C stack: LuaJIT has no bound of its
-- own and crashes when it runs out, Lua 5.4 stops near 200. Both stop here first, with
-- Lua 5.4's words (docs: lua/safety).
local NESTED_MAX, nested = 150, 0
local NESTED_ERROR = "C stack overflow (more than 150 nested coroutines)"

local function left(...)
  nested = nested - 1
  return ...
end

local function resumed(co, ...)
  if nested >= NESTED_MAX then return false, NESTED_ERROR end
  nested = nested + 1
  return left(co_resume(co, ...))
end

local function resume(co, ...)
  own_thread(co, "resume")
  return caught(passed(co, resumed(co, ...)))
end

-- Every coroutine an application creates gets the runaway bound too.
local function create(f)
  local co = co_create(f)
  local hook = runaway.hook
  if hook then hook(co) end
  return co
end

local function wrapped(ok, ...)
  if ok then return ... end
  error((...), 0)
end

local function wrap(f)
  local co = create(f)
  return function(...)
    if private_threads[co] then
      error("cannot resume this coroutine: it waits in a runtime call", 2)
    end
    return wrapped(caught(passed(co, resumed(co, ...))))
  end
end

---------------------------------------------------------------------------
-- Finalizers run under the runaway bound.
---------------------------------------------------------------------------
-- Lua 5.4 runs a __gc finalizer with debug hooks off, out of reach of the runaway
-- bound. So Lua never marks an application's table for finalization: `setmetatable`
-- marks a private sentinel instead, which lives as long as the table (an ephemeron)
-- and whose own finalizer runs the table's __gc (the one its metatable holds then, as
-- Lua does) in a coroutine that carries the bound. (LuaJIT has no __gc on tables.)
-- The prelude sets `lib.on_finalizer_error`.
-- At shutdown the runtime runs the pending ones (`lib.finalize_all`), and none after.
local finalizers = setmetatable({}, { __mode = "k" }) -- table -> its sentinel
local marked, closed = 0, false

local function run_finalizer(sentinel)
  local t = sentinel[1]
  if t == nil then return end
  sentinel[1] = nil
  local mt = raw_getmetatable(t)
  local gc = mt ~= nil and rawget(mt, "__gc") or nil
  if gc == nil then return end
  local expired = runaway.expired
  local ok, err = co_resume(create(function(object) return gc(object) end), t)
  runaway.expired = expired -- (the handler that happened to collect goes on as it was)
  local report = lib.on_finalizer_error
  if not ok and report ~= nil then report(err, gc) end
end

local SENTINEL = {
  __gc = function(sentinel) if not closed then run_finalizer(sentinel) end end,
}

function lib.finalize_all()
  local pending = {}
  for _, sentinel in next, finalizers do pending[#pending + 1] = sentinel end
  table_sort(pending, function(a, b) return a[2] > b[2] end) -- the last marked first
  closed = true
  for i = 1, #pending do run_finalizer(pending[i]) end
end

local function guarded_setmetatable(t, mt)
  if type(mt) == "table" and type(t) == "table" and rawget(mt, "__gc") ~= nil
    and not LUAJIT then
    local gc = rawget(mt, "__gc")
    raw_rawset(mt, "__gc", nil) -- (so that Lua does not mark `t`)
    local ok, err = raw_pcall(setmetatable, t, mt)
    raw_rawset(mt, "__gc", gc)
    if not ok then error(err, 2) end
    if finalizers[t] == nil and not closed then
      marked = marked + 1
      finalizers[t] = setmetatable({ t, marked }, SENTINEL)
    end
    return t
  end
  return setmetatable(t, mt)
end

local function close(co)
  own_thread(co, "close")
  return co_close(co)
end

local function is_runtime_function(f)
  local info = raw_getinfo(f, "S")
  return info ~= nil and sub(info.source, 1, 11) == "=trio_mona/"
end

-- debug.getinfo without the runtime's own functions (`func` is left out for them): an
-- application that held them could forge what its handlers hand back to the runtime.
local function getinfo(f, ...)
  local info
  if type(f) == "thread" then
    info = raw_getinfo(f, ...)
  else
    if type(f) == "number" and f >= 0 then f = f + 1 end -- not this wrapper's frame
    info = raw_getinfo(f, ...)
  end
  if type(info) == "table" and info.func ~= nil and is_runtime_function(info.func) then
    info.func = nil
  end
  return info
end

local safe_debug = {
  traceback = traceback,
  getinfo = getinfo,
  getmetatable = function(v)
    if type(v) == "userdata" then return nil end
    return getmetatable(v)
  end,
}

---------------------------------------------------------------------------
-- Chunks: text only (bytecode can corrupt the VM and so reach the process).
---------------------------------------------------------------------------
local CHUNK_MODE = unsafe_native and not sandbox and "bt" or "t"

-- `load` whose chunks see `env` unless told otherwise, in the allowed modes only.
function lib.loader(env)
  return function(chunk, chunkname, mode, ...)
    if CHUNK_MODE == "t" then mode = "t" end
    if select("#", ...) > 0 then return load(chunk, chunkname, mode, (...)) end
    return load(chunk, chunkname, mode, env)
  end
end

---------------------------------------------------------------------------
-- Lua 5.1 names (MonaServer's scripts were written for LuaJIT), and 5.2 on LuaJIT.
---------------------------------------------------------------------------
local module_env = setmetatable({}, { __mode = "k" }) -- module table -> env it came from

local function seeall(m)
  if type(m) ~= "table" then
    error(format("bad argument #1 to 'seeall' (table expected, got %s)", type(m)), 2)
  end
  local mt = getmetatable(m)
  if mt == nil then
    mt = {}
    setmetatable(m, mt)
  end
  mt.__index = module_env[m] or lib.globals
end

-- Make `m` the globals of the function `level` frames above the caller.
local function set_function_env(level, m)
  local info = raw_getinfo(level + 1, "f")
  local f = info and info.func
  if f == nil then return end
  if setfenv then
    setfenv(f, m)
    return
  end
  for i = 1, 255 do
    local name = getupvalue(f, i)
    if name == nil then return end
    if name == "_ENV" then
      setupvalue(f, i, m)
      return
    end
  end
end

-- `module(name, ...)` for the application whose globals are `env`, registering in
-- `loaded` (its package.loaded).
function lib.module_function(env, loaded)
  return function(name, ...)
    if type(name) ~= "string" then
      error(format("bad argument #1 to 'module' (string expected, got %s)", type(name)), 2)
    end
    local m = loaded[name]
    if type(m) ~= "table" then
      m = env
      for part in gmatch(name, "[^%.]+") do
        local inner = m[part]
        if type(inner) ~= "table" then
          inner = {}
          m[part] = inner
        end
        m = inner
      end
      loaded[name] = m
    end
    if rawget(m, "_NAME") == nil then
      m._M, m._NAME = m, name
      m._PACKAGE = match(name, "^(.*%.)") or ""
    end
    module_env[m] = env
    set_function_env(2, m)
    for i = 1, select("#", ...) do
      local option = select(i, ...)
      if type(option) == "function" then option(m) end
    end
  end
end

-- table.pack for LuaJIT: an array part sized for every value, so that `#` counts to
-- the last non-nil one as Lua 5.4's does (LuaJIT's `{...}` stops at the first hole).
local new_table = LUAJIT and select(2, raw_pcall(G.require, "table.new")) or nil

local function table_pack(...)
  local n = select("#", ...)
  if type(new_table) ~= "function" then return { n = n, ... } end
  local values, packed = { ... }, new_table(n, 1)
  for i = 1, n do packed[i] = values[i] end
  packed.n = n
  return packed
end

local function compat(t)
  local tbl, mth, str = t.table, t.math, t.string
  G.unpack = G.unpack or tbl.unpack
  tbl.unpack = tbl.unpack or G.unpack
  tbl.pack = tbl.pack or table_pack
  tbl.getn = tbl.getn or function(list) return #list end
  tbl.maxn = tbl.maxn or function(list)
    local n = 0
    for k in pairs(list) do
      if type(k) == "number" and k > n then n = k end
    end
    return n
  end
  mth.pow = mth.pow or function(x, y) return x ^ y end
  mth.log10 = mth.log10 or function(x) return mth.log(x, 10) end
  mth.atan2 = mth.atan2 or mth.atan
  mth.mod = mth.mod or mth.fmod
  str.gfind = str.gfind or str.gmatch
  package.seeall = seeall
end
compat(G)

---------------------------------------------------------------------------
-- Normal mode: the real globals, made safe in place.
---------------------------------------------------------------------------
G.python = nil
package.loaded.python = nil
G.debug = safe_debug
package.loaded.debug = safe_debug
G.rawset = guarded_rawset
G.setmetatable = guarded_setmetatable
coroutine.resume, coroutine.close = resume, co_close and close
coroutine.create, coroutine.wrap = create, wrap
G.pcall, G.xpcall = pcall_, xpcall_

-- os.exit stops the runtime in order instead of ending the process at once (the
-- prelude sets `lib.on_exit`; docs: lua/luasocket, "os.exit").
os.exit = function(code)
  local on_exit = lib.on_exit
  if on_exit == nil then error("os.exit is not available before the runtime runs", 2) end
  return on_exit(code)
end

local text_load = lib.loader(G)
G.load = text_load
G.loadstring = text_load

-- The real loadfile/dofile, text only (applications get their own, see the prelude).
local function read_all(file)
  local f, err = io_open(file, "rb")
  if not f then return nil, err end
  local source = file_read(f, "*a")
  file_close(f)
  return source
end

local function text_loadfile(file, _, env)
  local source, err = read_all(file)
  if source == nil then return nil, err end
  return load(source, "@" .. file, CHUNK_MODE, env or G)
end

if CHUNK_MODE == "t" then
  G.loadfile = text_loadfile
  G.dofile = function(file)
    local chunk, err = text_loadfile(file)
    if not chunk then error(err, 2) end
    return chunk()
  end
  -- require's Lua searcher, text only: a path of the application's choosing could
  -- otherwise hold bytecode.
  local searchers = package.searchers or package.loaders
  searchers[2] = function(name)
    local file, err = searchpath(name, package.path)
    if file == nil then return err end
    local chunk, load_err = text_loadfile(file)
    if chunk == nil then
      error(format("error loading module '%s' from file '%s':\n\t%s", name, file, load_err), 0)
    end
    return chunk, file
  end
end

-- LuaJIT's ffi calls any C function of the process (Python's C API included), and
-- jit.util/jit.attach/jit.profile read the runtime's functions and constants.
if LUAJIT and not unsafe_native then
  for _, name in ipairs({ "ffi", "jit.util", "jit.profile" }) do
    package.preload[name] = nil
    package.loaded[name] = nil
  end
  G.jit.attach = nil
end

lib.globals = G
lib.package = package

---------------------------------------------------------------------------
-- Sandbox mode: an allow-list, made fresh.
---------------------------------------------------------------------------
local function copy(t, names)
  local c = {}
  if names then
    for _, name in ipairs(names) do c[name] = t[name] end
  else
    for k, v in pairs(t) do c[k] = v end
  end
  return c
end

-- Sandbox mode bounds Lua's pattern matching, which runs as one C call that no hook
-- can interrupt and backtracks exponentially in the number of repetitions: a pattern
-- with q repetition items (* + - ?) on a subject of n bytes is refused when n^(q-1)
-- passes PATTERN_STEPS. (A trim, "^%s*(.-)%s*$", works on subjects up to 10,000 bytes.)
local PATTERN_STEPS = 1e8

local function repetitions(pattern)
  local count, i, size, in_set = 0, 1, #pattern, false
  while i <= size do
    local c = sub(pattern, i, i)
    if c == "%" then
      i = i + 1
    elseif in_set then
      if c == "]" then in_set = false end
    elseif c == "[" then
      in_set = true
      if sub(pattern, i + 1, i + 1) == "^" then i = i + 1 end
      if sub(pattern, i + 1, i + 1) == "]" then i = i + 1 end
    elseif c == "*" or c == "+" or c == "-" or c == "?" then
      count = count + 1
    end
    i = i + 1
  end
  return count
end

local function bounded(name, matcher)
  return function(subject, pattern, ...)
    if type(subject) == "string" and type(pattern) == "string"
      and not (name == "find" and select(2, ...)) then
      local q = repetitions(pattern)
      if q >= 2 and (#subject + 1) ^ (q - 1) > PATTERN_STEPS then
        error(format("bad argument #2 to '%s' (pattern too complex for a subject of %d "
          .. "bytes: %d repetitions; sandbox mode)", name, #subject, q), 2)
      end
    end
    return matcher(subject, pattern, ...)
  end
end

local function sandbox_globals()
  local g = copy(G, {
    "assert", "error", "ipairs", "next", "pcall", "select", "tonumber", "tostring", "type",
    "unpack", "xpcall", "rawequal", "rawget", "rawlen", "setmetatable", "getmetatable",
    "collectgarbage", "_VERSION",
  })
  g.rawset, g.pairs, g.setmetatable = guarded_rawset, sandbox_pairs, guarded_setmetatable
  local strings = copy(string)
  strings.dump = nil
  for _, name in ipairs({ "find", "match", "gmatch", "gsub" }) do
    strings[name] = bounded(name, string[name])
  end
  local libraries = {
    string = frozen(strings, "string"),
    table = frozen(copy(table), "table"),
    math = frozen(copy(math), "math"),
    coroutine = frozen(copy(coroutine), "coroutine"),
    os = frozen(copy(os, { "time", "clock", "date", "difftime" }), "os"),
    utf8 = G.utf8 and frozen(copy(G.utf8), "utf8"),
    bit = G.bit and frozen(copy(G.bit), "bit"),
  }
  local loaded = {}
  for name, t in pairs(libraries) do
    g[name] = t
    loaded[name] = t
  end
  g.package = {
    loaded = loaded,
    preload = {},
    path = "",
    cpath = "",
    config = package.config,
    seeall = seeall,
  }
  loaded.package = g.package
  -- Every string's methods come from the read-only copy: no application can change
  -- them for another (or for the runtime).
  local string_meta = raw_getmetatable("")
  string_meta.__index = libraries.string
  string_meta.__metatable = "string"
  return g
end

if sandbox then
  lib.globals = sandbox_globals()
  lib.package = lib.globals.package
  -- LuaJIT's compiled loops never call the count hook, so untrusted code runs in its
  -- interpreter, where the runaway bound holds (docs: operations, "Runaway code").
  if LUAJIT then
    G.jit.off()
    G.jit.flush()
  end
end

return lib
