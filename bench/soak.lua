-- soak.lua - the soak: CALLS get_calls in one process against the emulator,
-- RSS (VmRSS) and open descriptors (/proc/self/fd) after a warm-up and at the end.
--   lua5.4 bench/soak.lua ENDPOINT CALL_ID CALLS WARMUP [LOG_TO_TRUNCATE]
-- Goal: RSS growth < 1 MiB, no FD growth. Prints PASS/FAIL; exit 1 on FAIL.
local endpoint, id, calls, warm, log = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4]), arg[5]
local acscall = require "acscall"
local socket = require "socket"

local function rss_kb() -- read whole and closed: an early exit from io.lines would leave an fd open
  local h = assert(io.open("/proc/self/status")); local s = h:read("a"); h:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end
local pid do local h = assert(io.open("/proc/self/stat")); pid = h:read("n"); h:close() end
local function fds() -- open descriptors of this process, less the pipe of this very popen
  local n, p = 0, io.popen("ls -1 /proc/" .. pid .. "/fd")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n - 1
end
local function truncate_log() if log then local h = io.open(log, "w"); if h then h:close() end end end

local client = acscall.new { endpoint = endpoint,
  access_key = os.getenv("BENCH_KEY") or "YWNzLWVtdWxhdG9yLWFjY2Vzcy1rZXktMzItYnl0ZXM=" }
local failures = 0
local function run(k)
  for _ = 1, k do
    local call, err = client:get_call(id)
    if not call then failures = failures + 1; if failures <= 3 then io.stderr:write("soak: ", err, "\n") end end
  end
end

run(warm)
truncate_log()
collectgarbage("collect")
local rss0, fd0, t0 = rss_kb(), fds(), socket.gettime()
print(string.format("soak: after %d warm-up calls: VmRSS %d KiB, %d fds, Lua heap %.0f KiB", warm, rss0, fd0, collectgarbage("count")))
local step = calls // 10
for done = step, calls, step do
  run(step)
  truncate_log()
  print(string.format("soak: %7d calls  VmRSS %d KiB (%+d)  fds %d  Lua heap %.0f KiB  %.0f calls/s",
    done, rss_kb(), rss_kb() - rss0, fds(), collectgarbage("count"), done / (socket.gettime() - t0)))
end
collectgarbage("collect")
local rss1, fd1 = rss_kb(), fds()
local pass = (rss1 - rss0) < 1024 and fd1 <= fd0 and failures == 0
print(string.format("RESULT calls=%d failures=%d rss0_kb=%d rss1_kb=%d growth_kb=%d fd0=%d fd1=%d seconds=%.1f %s",
  calls, failures, rss0, rss1, rss1 - rss0, fd0, fd1, socket.gettime() - t0, pass and "PASS" or "FAIL"))
client:close()
os.exit(pass and 0 or 1)
