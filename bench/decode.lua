-- decode.lua - decode alone: acscall.decode(200, body) against cjson.decode(body).
--   lua5.4 bench/decode.lua wall ROUNDS FILE...     interleaved timing, prints per file:
--       RESULT file=F fn=acscall|cjson wall_us=<median of rounds, per op> ops=<per round>
--   lua5.4 bench/decode.lua count acscall|cjson FILE K   K decodes (for callgrind; K=0 is the baseline)
local acscall = require "acscall"
local cjson = require "cjson"
local socket = require "socket"

local function slurp(f)
  local h = assert(io.open(f, "rb")); local s = h:read("a"); h:close(); return s
end
local fns = {
  acscall = function(body) local c, err = acscall.decode(200, body); if not c then error(err) end; return c end,
  cjson = function(body) return cjson.decode(body) end,
}

local mode = arg[1]
if mode == "count" then
  local fn, body, k = assert(fns[arg[2]]), slurp(arg[3]), tonumber(arg[4])
  fn(body) -- load everything lazily loaded, in the baseline too
  for _ = 1, k do fn(body) end
  return
end
assert(mode == "wall", "usage: decode.lua wall ROUNDS FILE... | count FN FILE K")
local rounds = tonumber(arg[2])
for i = 3, #arg do
  local body = slurp(arg[i])
  assert(fns.acscall(body).callConnectionId)
  -- ops per round: about 0.2 s of cjson.decode
  local ops, t0 = 0, socket.gettime()
  repeat fns.cjson(body); ops = ops + 1 until socket.gettime() - t0 > 0.05
  ops = ops * 4
  local samples = { acscall = {}, cjson = {} }
  for r = 1, rounds do
    for _, name in ipairs(r % 2 == 1 and { "acscall", "cjson" } or { "cjson", "acscall" }) do
      local fn = fns[name]
      collectgarbage("collect")
      local s = socket.gettime()
      for _ = 1, ops do fn(body) end
      table.insert(samples[name], (socket.gettime() - s) * 1e6 / ops)
    end
  end
  for _, name in ipairs { "acscall", "cjson" } do
    local t = samples[name]; table.sort(t)
    io.write(string.format("RESULT file=%s fn=%s wall_us=%.3f ops=%d\n", arg[i]:match("[^/]*$"), name, t[(#t + 1) // 2], ops))
  end
end
