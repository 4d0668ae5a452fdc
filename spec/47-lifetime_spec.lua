-- One call, one context: nothing about a call outlives it. Each scenario runs
-- as a user's script would, in its own interpreter (the one running this
-- suite), against the emulator: a Lua error escaping mid-call, a finalizer
-- re-entering the client, a fork, Ctrl-C in a coroutine or inside a token
-- provider, a provider that installs a hook. After each: close() releases
-- every descriptor, and later calls work.
local helpers = require "spec.helpers"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local LUA54 = _VERSION == "Lua 5.4"

describe("lifetime of a call", function()
  local emu, dir

  lazy_setup(function()
    local cjson = require "cjson"
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p '" .. dir .. "' && cp '" .. helpers.fixtures_dir() .. "'/*.json '" .. dir .. "'/"))
    local seed = helpers.read_file(helpers.fixtures_dir() .. "/" .. SEED .. ".json")
    for id, meta in pairs{
      ["f-429-20"] = {fault = "429", retry_after = 20},
      ["f-stall"] = {fault = "stall", ms = 20000},
      ["f-stall-short"] = {fault = "stall", ms = 1100},
    } do
      local f = assert(io.open(dir .. "/" .. id .. ".json", "wb"))
      f:write(seed)
      f:close()
      f = assert(io.open(dir .. "/" .. id .. ".meta.json", "wb"))
      f:write(cjson.encode(meta))
      f:close()
    end
    emu = helpers.start_emulator{fixtures = dir}
  end)
  lazy_teardown(function()
    if emu then emu:stop() end
    if dir then os.execute("rm -rf '" .. dir .. "'") end
  end)

  -- a script with `acscall`, `ts` (spec/support/testsupport.c), SEED, CS
  -- (the emulator's connection string) and `check_released(c, fds0)`:
  -- close() brings the process back to the descriptors it had before.
  local function script(body)
    return ([[
local acscall = require "acscall"
local ts = require "acscall_testsupport"
local SEED, CS = %q, %q
-- garbage whose finalizer runs fn (5.1/LuaJIT: only userdata have one)
local function on_collect(fn)
  if newproxy then
    local u = newproxy(true)
    getmetatable(u).__gc = fn
    return
  end
  setmetatable({}, {__gc = fn})
end
local function check_released(c, fds0)
  c:close()
  collectgarbage(); collectgarbage()
  local now = ts.fds()
  if now ~= fds0 then error(("close() kept %%d descriptors"):format(now - fds0)) end
end
]]):format(SEED, emu.connection_string) .. body .. "\nprint('SCRIPT OK')\n"
  end

  local function run(body, prefix)
    local out, ok, rc, wall = helpers.run_lua(script(body), prefix)
    return out, ok, rc, wall / helpers.slow
  end

  it("a Lua error raised by a debug hook mid-call leaves nothing behind", function()
    local out = run([[
local fds0 = ts.fds()
local c = acscall.new{connection_string = CS}
assert(c:get_call(SEED))              -- a kept-alive connection
local raised = 0
for _ = 1, 20 do
  -- a call hook that raises in the first function get_call calls into
  -- (lua-cjson's decode): the error escapes between enter and leave
  local get_call = c.get_call
  debug.sethook(function()
    local f = debug.getinfo(2, "f").func
    if f ~= get_call and f ~= pcall and f ~= debug.sethook then
      debug.sethook()
      error("raised by the hook")
    end
  end, "c")
  local ok, err = pcall(get_call, c, SEED)
  debug.sethook()
  if not ok then
    assert(tostring(err):find("raised by the hook", 1, true), err)
    raised = raised + 1
  end
end
assert(raised > 0, "the hook never fired inside get_call")
for _ = 1, 3 do assert(c:get_call(SEED)) end -- later calls work
local r = c:get_calls({SEED, SEED, SEED})
for i = 1, 3 do assert(r[i].call, r[i].err) end
check_released(c, fds0)
]])
    assert.matches("SCRIPT OK", out)
  end)

  it("an error escaping get_calls mid-batch leaves nothing behind", function()
    local out = run([[
local fds0 = ts.fds()
local c = acscall.new{connection_string = CS}
local ids = {}
for i = 1, 8 do ids[i] = SEED end
local raised = 0
for n = 1, 10 do
  local calls = 0
  local get_calls = c.get_calls
  debug.sethook(function()
    local f = debug.getinfo(2, "f").func
    if f ~= get_calls and f ~= pcall and f ~= debug.sethook then
      calls = calls + 1
      if calls == n then debug.sethook(); error("raised by the hook") end
    end
  end, "c")
  local ok = pcall(get_calls, c, ids, {concurrency = 4})
  debug.sethook()
  if not ok then raised = raised + 1 end
end
assert(raised > 0, "the hook never fired inside get_calls")
local r = c:get_calls(ids, {concurrency = 4})
for i = 1, #ids do assert(r[i].call, r[i].err) end
check_released(c, fds0)
]])
    assert.matches("SCRIPT OK", out)
  end)

  it("a finalizer's error raised out of get_call (5.1-5.3, LuaJIT) leaves nothing behind", function()
    if LUA54 then
      -- 5.4 turns errors in finalizers into warnings: nothing escapes
      local out = run([[
local c = acscall.new{connection_string = CS}
setmetatable({}, {__gc = function() error("from a finalizer") end})
collectgarbage()
assert(c:get_call(SEED))
c:close()
]])
      assert.matches("SCRIPT OK", out)
      return
    end
    local out = run([[
local fds0 = ts.fds()
local c = acscall.new{connection_string = CS}
assert(c:get_call(SEED))
if jit then jit.off() end -- finalizers run from interpreted code only
local armed = true -- disarmed at the end: no stray error at exit
local function boom() if armed then error("from a finalizer") end end
local function bomb() on_collect(boom) end
local raised = 0
-- garbage with erroring finalizers, made while the collector is stopped;
-- get_call (a 34 KB body to decode) then allocates enough for the
-- collector to run them inside it. The function exists before the loop:
-- making a closure there could itself run a finalizer, unprotected.
local function iteration()
  collectgarbage("stop")
  for _ = 1, 200 do bomb() end
  collectgarbage("restart")
  if not pcall(c.get_call, c, "large-200-targets") then raised = raised + 1 end
end
for _ = 1, 100 do pcall(iteration) end
armed = false
collectgarbage("setpause", 200)
collectgarbage("setstepmul", 200)
while not pcall(collectgarbage) do end
assert(raised > 0, "no finalizer error escaped get_call")
assert(c:get_call(SEED))
check_released(c, fds0)
]])
    assert.matches("SCRIPT OK", out)
  end)

  it("a finalizer that calls get_calls on the same client during get_calls: both complete", function()
    local out, _, _, wall = run([[
local c = acscall.new{connection_string = CS}
local inner = {}
local function nest()
  on_collect(function()
    local r = c:get_calls({"minimal", "state-connected"})
    inner[#inner + 1] = r
  end)
end
collectgarbage("setpause", 100)
collectgarbage("setstepmul", 1000)
local ids = {}
for i = 1, 40 do ids[i] = SEED end
for _ = 1, 20 do
  for _ = 1, 3 do nest() end
  local r = c:get_calls(ids, {concurrency = 8})
  for i = 1, #ids do
    assert(r[i].call and r[i].call.callConnectionId == SEED, r[i].err)
  end
end
collectgarbage("setpause", 200)
collectgarbage("setstepmul", 200)
collectgarbage()
assert(#inner > 0, "no finalizer ran")
for _, r in ipairs(inner) do
  assert(r[1].call.callConnectionId == "minimal", r[1].err)
  assert(r[2].call.callConnectionId == "state-connected", r[2].err)
end
print("nested batches: " .. #inner)
c:close()
]], "timeout " .. 60 * helpers.slow)
    assert.matches("SCRIPT OK", out)
    assert.matches("nested batches: %d+", out)
    assert.is_true(wall < 50, "wall " .. wall)
  end)

  it("close() from a finalizer during a call: the call finishes, then the client is released", function()
    local out = run([[
local fds0 = ts.fds()
local c = acscall.new{connection_string = CS}
assert(c:get_call(SEED))
on_collect(function() c:close() end)
collectgarbage("setpause", 100)
collectgarbage("setstepmul", 1000)
local ids = {}
for i = 1, 20 do ids[i] = SEED end
local ok, err = pcall(c.get_calls, c, ids)
collectgarbage("setpause", 200)
collectgarbage("setstepmul", 200)
collectgarbage()
-- closed mid-call: the call raised "closed client", or it had already
-- returned; either way the client is closed now and released
if not ok then assert(tostring(err):find("closed client", 1, true), err) end
assert(not pcall(c.get_call, c, SEED))
assert(tostring(c):find("closed", 1, true))
check_released(c, fds0)
]])
    assert.matches("SCRIPT OK", out)
  end)

  it("after fork, parent and child never receive each other's responses", function()
    local out, _, _, wall = run([[
local c = acscall.new{connection_string = CS}
-- the parent opens keep-alive connections (easy and multi) before forking,
-- as a client made in nginx's init_by_lua and used by the workers does
assert(c:get_call(SEED))
local r0 = c:get_calls({SEED, SEED, SEED, SEED})
for i = 1, 4 do assert(r0[i].call, r0[i].err) end

local function work(id, n)
  local wrong, failed = 0, 0
  for i = 1, n do
    if i % 10 == 0 then
      local r = c:get_calls({id, id, id, id}, {concurrency = 4})
      for j = 1, 4 do
        if not r[j].call then failed = failed + 1
        elseif r[j].call.callConnectionId ~= id then wrong = wrong + 1 end
      end
    else
      local call = c:get_call(id)
      if not call then failed = failed + 1
      elseif call.callConnectionId ~= id then wrong = wrong + 1 end
    end
  end
  return wrong, failed
end

local pid = ts.fork()
if pid == 0 then
  local wrong, failed = work("state-connected", 1000)
  io.stdout:write(("child: wrong=%d failed=%d\n"):format(wrong, failed))
  io.stdout:flush()
  c:close()
  ts.exit(0)
end
local wrong, failed = work("minimal", 1000)
print(("parent: wrong=%d failed=%d"):format(wrong, failed))
assert(ts.wait(pid) == 0)
c:close()
]], "timeout " .. 120 * helpers.slow)
    assert.matches("SCRIPT OK", out)
    assert.matches("child: wrong=0 failed=0", out)
    assert.matches("parent: wrong=0 failed=0", out)
    assert.is_true(wall < 100, "wall " .. wall)
  end)

  -- the fork check reads a page the kernel wipes in every forked child (MADV_WIPEONFORK,
  -- util.c), a fork of a fork included: a grandchild must not take itself for its parent
  it("a fork of a fork starts afresh too: each generation gets only its own responses", function()
    local out = run([[
local c = acscall.new{connection_string = CS}
assert(c:get_call(SEED))
local function work(id, n)
  local wrong, failed = 0, 0
  for _ = 1, n do
    local call = c:get_call(id)
    if not call then failed = failed + 1
    elseif call.callConnectionId ~= id then wrong = wrong + 1 end
  end
  return wrong, failed
end
local pid = ts.fork()
if pid == 0 then
  assert(c:get_call(SEED)) -- the child's own connection, then its child
  local gpid = ts.fork()
  if gpid == 0 then
    local wrong, failed = work("state-connected", 300)
    io.stdout:write(("grandchild: wrong=%d failed=%d\n"):format(wrong, failed))
    io.stdout:flush()
    ts.exit(0)
  end
  local wrong, failed = work("minimal", 300)
  io.stdout:write(("child: wrong=%d failed=%d\n"):format(wrong, failed))
  io.stdout:flush()
  ts.exit(ts.wait(gpid) == 0 and 0 or 1)
end
local wrong, failed = work(SEED, 300)
print(("parent: wrong=%d failed=%d"):format(wrong, failed))
assert(ts.wait(pid) == 0)
c:close()
]], "timeout " .. 120 * helpers.slow)
    assert.matches("SCRIPT OK", out)
    assert.matches("grandchild: wrong=0 failed=0", out)
    assert.matches("child: wrong=0 failed=0", out)
    assert.matches("parent: wrong=0 failed=0", out)
  end)

  it("a forked child that closes or collects a client it never used sends nothing on the parent's TLS connection",
    function()
    local tls = helpers.start_emulator{tls = true}
    local out = run(([[
local c = acscall.new{connection_string = %q, ca_file = %q}
assert(c:get_call(SEED)) -- a kept-alive TLS connection
for _, how in ipairs{"close", "collect"} do
  local pid = ts.fork()
  if pid == 0 then
    if how == "close" then c:close() else c = nil; collectgarbage(); collectgarbage() end
    ts.exit(0)
  end
  assert(ts.wait(pid) == 0)
  assert(c:get_call(SEED))
end
c:close()
]]):format(tls.connection_string, tls.ca_file))
    local conns = {}
    for _, e in ipairs(tls:log()) do conns[#conns + 1] = e.connection end
    tls:stop()
    assert.matches("SCRIPT OK", out)
    -- the parent's three calls on its one connection: no close_notify from
    -- a child made the server drop it
    assert.equal(3, #conns)
    assert.equal(conns[1], conns[2])
    assert.equal(conns[1], conns[3])
  end)

  -- Ctrl-C: one SIGINT to the interpreter only, as soon as it is where the
  -- spec wants it (ready(p) true: polled, not a fixed sleep). Returns its
  -- output (with "rc=<exit code>") and the seconds from the signal to its end.
  local function interrupted(body, ready)
    emu:clear_log()
    local p = helpers.spawn_lua(script(body))
    local was_ready = helpers.wait_until(function() return ready(p) end, 15 * helpers.slow)
    local rc, wall = p:interrupt(30 * helpers.slow)
    local out, err = p:output()
    p:cleanup()
    assert.is_true(was_ready, "never ready for the signal: " .. out .. err)
    assert.is_number(rc, "still running after the signal: " .. out .. err)
    return out .. err .. "\nrc=" .. rc, wall / helpers.slow
  end

  -- in its retry wait or its transfer once the emulator saw n requests
  local function waiting_after(n)
    return function(p) return #emu:log() >= n and p:waiting() end
  end

  it("Ctrl-C inside a coroutine ends a 20 s Retry-After wait at once", function()
    local out, wall = interrupted([[
local c = acscall.new{connection_string = CS, deadline = 60}
local co = coroutine.wrap(function() return c:get_call("f-429-20") end)
print(co())
]], waiting_after(1))
    assert.matches("interrupted", out)
    assert.not_matches("SCRIPT OK", out)
    assert.is_true(wall < 2, "wall " .. wall)
  end)

  it("Ctrl-C inside a coroutine ends a stalled get_calls at once", function()
    local out, wall = interrupted([[
local c = acscall.new{connection_string = CS, deadline = 60, timeout = 30}
local co = coroutine.wrap(function() return c:get_calls({"f-stall", "f-429-20"}) end)
print(co())
]], waiting_after(2))
    assert.matches("interrupted", out)
    assert.not_matches("SCRIPT OK", out)
    assert.is_true(wall < 2, "wall " .. wall)
  end)

  it("Ctrl-C while the token provider runs is the interruption, not an auth failure", function()
    local out, wall = interrupted([[
if jit then jit.off() end -- LuaJIT checks hooks only in interpreted code
local c = acscall.new{endpoint = CS:match("endpoint=([^;]+)"), token_provider = function()
  io.stderr:write("in the provider\n")
  local x = 0
  while true do x = x + 1 end -- a provider that takes its time
end}
local call, msg = c:get_call(SEED)
print("returned", call, msg)
]], function(p) return select(2, p:output()):find("in the provider", 1, true) ~= nil end)
    assert.matches("interrupted!", out)
    assert.not_matches("returned", out)
    assert.not_matches("token_provider raised", out)
    assert.not_matches("SCRIPT OK", out)
    assert.not_matches("rc=0", out)
    assert.is_true(wall < 2, "wall " .. wall)
  end)

  it("a token provider that installs a debug hook (a profiler) is not an interruption", function()
    local out = run([[
local hooked = 0
local c = acscall.new{endpoint = CS:match("endpoint=([^;]+)"), token_provider = function()
  debug.sethook(function() hooked = hooked + 1 end, "", 1000)
  return "emulator-token"
end}
for round = 1, 2 do
  -- round 1: a transfer long enough for libcurl's progress callback (and so
  -- the interrupt check) to run while nothing arrives: curl_easy_perform
  -- polls at most 1 s at a time (libcurl's easy.c), so 1.1 s sees at least
  -- one. Round 2 starts with the hook already installed by round 1's provider.
  if round == 1 then assert(c:get_call("f-stall-short")) end
  assert(c:get_call(SEED))
  local r = c:get_calls({SEED, SEED})
  assert(r[1].call and r[2].call, r[1].err or r[2].err)
end
debug.sethook()
c:close()
]])
    assert.matches("SCRIPT OK", out)
  end)
end)
