-- watch.lua - client:watch over a fleet of the emulator's calls at the
-- defaults (interval 2 s, max_interval 10 s, backoff 1.5, jitter 0.1,
-- concurrency 16): the request rate it puts on the service and the CPU it
-- takes per watched call.
--   eval "$(emulator/acs-emulator start)"
--   lua5.4 bench/watch.lua [CALLS [SECONDS [PERIOD_MS]]]    (defaults 2000 60 600000)
-- The ids are fleet-<n>-<PERIOD_MS>-bench<random> (emulator/README.md
-- "Fleet"): with the default period no call changes during the run, so the
-- rate falls as the backoff stretches every interval to max_interval; a
-- short period (e.g. 20000) shows a fleet that keeps changing.
-- Prints one line per 5 s bucket (requests sent in it, per second) and
-- RESULT calls= seconds= requests= rps_first10= rps_last10=
--        cpu_ms_per_call_min= (client user+sys, os.clock) events=
local calls = tonumber(arg[1]) or 2000
local seconds = tonumber(arg[2]) or 60
local period = tonumber(arg[3]) or 600000
local acscall = require "acscall"
local system = require "system"

local client = acscall.new{connection_string = assert(os.getenv("ACS_CONNECTION_STRING"),
  "ACS_CONNECTION_STRING: start the emulator first")}
math.randomseed(os.time())
local tag = "bench" .. math.random(1e9)
local ids = {}
for i = 1, calls do ids[i] = ("fleet-%d-%d-%s"):format(i, period, tag) end

-- count the requests each round sends, by 5 s bucket of the run
local t0 = system.monotime()
local buckets = {}
local proxy = {get_calls = function(_, list, opts)
  local b = math.floor((system.monotime() - t0) / 5) + 1
  buckets[b] = (buckets[b] or 0) + #list
  return client:get_calls(list, opts)
end}
local w = require("acscall.watch").new(proxy, ids, {deadline = seconds})
local c0 = os.clock()
local events = 0
for _ in w:events() do events = events + 1 end
local cpu = os.clock() - c0
local wall = system.monotime() - t0

local nb = math.floor(seconds / 5)
for b = 1, nb do
  print(("%3d-%3d s  %6d requests  %7.1f req/s"):format((b - 1) * 5, b * 5, buckets[b] or 0, (buckets[b] or 0) / 5))
end
local function rate(from, to)
  local n = 0
  for b = from, to do n = n + (buckets[b] or 0) end
  return n / ((to - from + 1) * 5)
end
print(("RESULT calls=%d seconds=%.1f requests=%d rps_first10=%.1f rps_last10=%.1f cpu_ms_per_call_min=%.3f events=%d")
  :format(calls, wall, w.requests, rate(1, 2), rate(nb - 1, nb), cpu * 1000 / calls / (wall / 60), events))
client:close()
