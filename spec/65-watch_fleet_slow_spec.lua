-- client:watch over 2,000 of the emulator's fleet calls, each state lasting
-- well over max_interval: every change seen exactly once and in order,
-- ended calls leave the watch, stop_when_ended returns with the last end.
-- It really waits (the emulator's schedule runs on its clock: about 20 s),
-- hence #slow (make test-slow).
local helpers = require "spec.helpers"
local acscall = require "acscall"

local SLOW = helpers.slow

local function schedule(n)
  local s = {"connecting", "connected"}
  for _ = 1, n % 3 do
    s[#s + 1] = "transferring"
    s[#s + 1] = "connected"
  end
  s[#s + 1] = "disconnecting"
  s[#s + 1] = "disconnected"
  return s
end

describe("client:watch, a fleet of 2,000 calls #slow", function()
  local emu, client

  setup(function()
    emu = helpers.start_emulator()
    client = acscall.new{connection_string = emu.connection_string}
  end)

  teardown(function()
    if client then client:close() end
    if emu then emu:stop() end
  end)

  it("sees every change of every call once and in order; stop_when_ended returns with the last end", function()
    local period = math.floor(2000 * SLOW) -- ms per state: 2.5 x max_interval (+10% jitter)
    local tag = tostring(os.time()) .. "-" .. tostring(math.random(1e6))
    local ids = {}
    for i = 1, 2000 do ids[i] = ("fleet-%d-%d-slow-%s"):format(i, period, tag) end
    local w = client:watch(ids, {interval = 0.4 * SLOW, max_interval = 0.8 * SLOW, concurrency = 32,
      stop_when_ended = true})
    local states, ended, after_end, last_end = {}, {}, 0, nil
    local count, t0 = 0, helpers.now()
    for ev in w:events() do
      count = count + 1
      if ended[ev.id] then after_end = after_end + 1 end
      if ev.type == "seen" or ev.type == "state" then
        local list = states[ev.id] or {}
        states[ev.id] = list
        list[#list + 1] = ev.state
      elseif ev.type == "ended" then
        ended[ev.id] = true
        last_end = ev
      else
        error(ev.id .. ": " .. tostring(ev.msg))
      end
    end
    local took = helpers.now() - t0
    assert.equal("ended", w.stopped)
    assert.equal(0, after_end)
    assert.same({}, w:ids())
    local missed = {}
    for i, id in ipairs(ids) do
      if not require("luassert.util").deepcompare(states[id], schedule(i)) then missed[#missed + 1] = id end
      assert.is_true(ended[id], id)
    end
    assert.same({}, missed)
    -- the loop returned with the last end (its event was the last one)
    assert.equal("ended", last_end.type)
    -- print the rate for the record: requests per second over the run
    print(("\n2,000 calls: %d events, %d requests in %.1f s (%.0f req/s)"):format(
      count, w.requests, took, w.requests / took))
  end)
end)
