-- batch.lua - many ids against the emulator with latency: client:get_calls.
--   lua5.4 bench/batch.lua ENDPOINT COUNT CONCURRENCY CALL_ID
-- One warm-up get_call (one connection, libraries loaded), then get_calls(ids,
-- {concurrency = C}) over COUNT copies of CALL_ID, every result checked.
-- prints: RESULT n=COUNT conc=C wall_s=<total> cpu_us_per_id=<client user+sys per id>
--               ok=<ids answered> hwm_kb=<VmHWM at end> hwm0_kb=<VmHWM before>
local endpoint, count, conc, id = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4]
local acscall = require "acscall"
local socket = require "socket"

local function status(field)
  local h = assert(io.open("/proc/self/status")); local s = h:read("a"); h:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local client = acscall.new { endpoint = endpoint, access_key = os.getenv("BENCH_KEY") or "YWNzLWVtdWxhdG9yLWFjY2Vzcy1rZXktMzItYnl0ZXM=" }
local ids = {}
for i = 1, count do ids[i] = id end
assert(client:get_call(id), "warm-up get_call failed")
local hwm0 = status("VmHWM")

local ok, t0, c0 = 0, socket.gettime(), os.clock()
local results = client:get_calls(ids, { concurrency = conc })
local dt, dc = socket.gettime() - t0, os.clock() - c0
assert(type(results) == "table" and #results == count, "get_calls: expected " .. count .. " results")
for i = 1, count do
  local r = results[i]
  if r.call and r.id == ids[i] and r.call.callConnectionId == id then ok = ok + 1
  elseif ok == 0 then io.stderr:write("batch: result ", i, ": ", tostring(r.err), "\n") end
end
print(string.format("RESULT n=%d conc=%d wall_s=%.3f cpu_us_per_id=%.2f ok=%d hwm_kb=%d hwm0_kb=%d",
  count, conc, dt, dc * 1e6 / count, ok, status("VmHWM"), hwm0))
client:close()
