-- AMF for mona:toAMF / mona:toAMF0 / mona:fromAMF (docs: lua/conversions): the codec is
-- Python's (_formats/amf.py); the values cross as tapes that keep shared and cyclic
-- tables (_formats/tape.lua). Run once with the real globals (`G`), the host table and
-- the shared rules; returns `encode(n, ...)`, `encode0(n, ...)` and `decode(data)`.
local _, host, V = ...
local fail = V.fail
local amf_write, amf_read = host.amf_write, host.amf_read

local function writer(amf0)
  return function(count, ...)
    local data, err = amf_write(amf0, count, ...)
    if data == nil then fail(err) end
    return data
  end
end
local write3, write0 = writer(false), writer(true)

return {
  encode = function(count, ...) return V.flatten(write3, count, ...) end,
  encode0 = function(count, ...) return V.flatten(write0, count, ...) end,
  decode = V.reader(amf_read),
}
