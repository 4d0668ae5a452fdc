-- batch.lua - many ids against the emulator with latency.
--   lua5.4 bench/batch.lua batch|seq ENDPOINT COUNT CONCURRENCY CALL_ID
-- batch: client:get_calls(ids, {concurrency = C}); seq: get_call per id.
-- prints: RESULT mode=M n=COUNT wall_s=<total> wall_us=<per id> ok=<ids answered> hwm_kb=<VmHWM at end> hwm0_kb=<VmHWM before>
--     or: SKIP <reason>
local mode, endpoint, count, conc, id = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4]), arg[5]
local acscall = require "acscall"
local socket = require "socket"

local function status(field)
  local h = assert(io.open("/proc/self/status")); local s = h:read("a"); h:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local client = acscall.new { endpoint = endpoint, access_key = os.getenv("BENCH_KEY") or "YWNzLWVtdWxhdG9yLWFjY2Vzcy1rZXktMzItYnl0ZXM=" }
local ids = {}
for i = 1, count do ids[i] = id end
assert(client:get_call(id), "warm-up get_call failed") -- both modes: one connection, libraries loaded
local hwm0 = status("VmHWM")

local ok, t0 = 0, socket.gettime()
if mode == "batch" then
  if not client.get_calls then
    print("SKIP client:get_calls is not implemented in this build (issue 5); rerun `make bench` when it lands")
    return
  end
  local results = client:get_calls(ids, { concurrency = conc })
  assert(type(results) == "table" and #results == count, "get_calls: expected " .. count .. " results")
  for i = 1, count do
    local r = results[i]
    if r.call and r.id == ids[i] then ok = ok + 1
    elseif i == 1 or r.err then io.stderr:write("batch: result ", i, ": ", tostring(r.err), "\n") end
  end
else
  for i = 1, count do
    if client:get_call(ids[i]) then ok = ok + 1 end
  end
end
local dt = socket.gettime() - t0
print(string.format("RESULT mode=%s n=%d wall_s=%.3f wall_us=%.1f ok=%d hwm_kb=%d hwm0_kb=%d",
  mode, count, dt, dt * 1e6 / count, ok, status("VmHWM"), hwm0))
client:close()
