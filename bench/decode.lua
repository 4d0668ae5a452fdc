-- decode.lua - decode alone: acscall.decode(200, body) against cjson.decode(body).
--   lua5.4 bench/decode.lua wall ROUNDS FILE...     interleaved timing, prints per file:
--       RESULT file=F acscall_us= cjson_us= (medians per op) ratio= min= max= (of the
--       per-round ratios) ops=<per burst> rounds=
--   lua5.4 bench/decode.lua count acscall|cjson FILE K   K decodes (for callgrind; K=0 is the baseline)
--   lua5.4 bench/decode.lua ratio ROUNDS FILE...    decode only, per-round ratios: each round times a
--       short burst of every function (order rotated), ratio = acscall / cjson in that round;
--       RATIO file=F fn=acscall median=<of the rounds' ratios> min= max= rounds=
--       With ACSCALL_BASE_CORE=/path/to/another/acscall/core.so a second decoder ("base", e.g.
--       the build before a change) is timed in the same rounds: fn=base, its own ratio to cjson.
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
if mode == "ratio" then
  local base = os.getenv("ACSCALL_BASE_CORE")
  if base and base ~= "" then
    local core = assert(package.loadlib(base, "luaopen_acscall_core"))()
    fns.base = function(body) local c, err = core.decode(200, body); if not c then error(err) end; return c end
  end
  local names = { "acscall", "cjson" }
  if fns.base then names[3] = "base" end
  local rounds = tonumber(arg[2])
  for i = 3, #arg do
    local body = slurp(arg[i])
    assert(fns.acscall(body).callConnectionId)
    -- a burst: about 20 ms of cjson.decode
    local ops, t0 = 0, socket.gettime()
    repeat fns.cjson(body); ops = ops + 1 until socket.gettime() - t0 > 0.02
    local ratios = { acscall = {}, base = {} }
    for r = 1, rounds do
      local t = {}
      for j = 0, #names - 1 do
        local name = names[(r + j) % #names + 1]
        local fn = fns[name]
        collectgarbage("collect")
        local s = os.clock()
        for _ = 1, ops do fn(body) end
        t[name] = os.clock() - s
      end
      for name in pairs(ratios) do
        if t[name] then table.insert(ratios[name], t[name] / t.cjson) end
      end
    end
    for _, name in ipairs { "acscall", "base" } do
      local q = ratios[name]
      if #q > 0 then
        table.sort(q)
        io.write(string.format("RATIO file=%s fn=%s median=%.3f min=%.3f max=%.3f rounds=%d ops=%d\n",
          arg[i]:match("[^/]*$"), name, q[(#q + 1) // 2], q[1], q[#q], #q, ops))
      end
    end
  end
  return
end
if mode == "count" then
  local fn, body, k = assert(fns[arg[2]]), slurp(arg[3]), tonumber(arg[4])
  fn(body) -- load everything lazily loaded, in the baseline too
  for _ = 1, k do fn(body) end
  return
end
assert(mode == "wall", "usage: decode.lua wall ROUNDS FILE... | count FN FILE K | ratio ROUNDS FILE...")
-- per file: rounds of one burst of each (order alternating), ~20 ms of
-- cjson.decode per burst; per-round ratio acscall / cjson
local rounds = tonumber(arg[2])
for i = 3, #arg do
  local body = slurp(arg[i])
  assert(fns.acscall(body).callConnectionId)
  local ops, t0 = 0, socket.gettime()
  repeat fns.cjson(body); ops = ops + 1 until socket.gettime() - t0 > 0.02
  local samples, ratios = { acscall = {}, cjson = {} }, {}
  for r = 1, rounds do
    for _, name in ipairs(r % 2 == 1 and { "acscall", "cjson" } or { "cjson", "acscall" }) do
      local fn = fns[name]
      collectgarbage("collect")
      local s = socket.gettime()
      for _ = 1, ops do fn(body) end
      samples[name][r] = (socket.gettime() - s) * 1e6 / ops
    end
    ratios[r] = samples.acscall[r] / samples.cjson[r]
  end
  local function med(t) local c = {} for k, v in ipairs(t) do c[k] = v end table.sort(c) return c[(#c + 1) // 2], c[1], c[#c] end
  local a, c = med(samples.acscall), med(samples.cjson)
  local rm, rl, rh = med(ratios)
  io.write(string.format("RESULT file=%s acscall_us=%.3f cjson_us=%.3f ratio=%.3f min=%.3f max=%.3f ops=%d rounds=%d\n",
    arg[i]:match("[^/]*$"), a, c, rm, rl, rh, ops, rounds))
end
