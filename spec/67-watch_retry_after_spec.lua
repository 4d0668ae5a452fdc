-- client:watch honours the server's Retry-After for the whole fleet even
-- when the core does not retry (`retries = false`): the failure info's
-- retry_after (spec/41) sets one pause for every call. The emulator's
-- throttle switch answers 429 (or 503) with Retry-After; the watcher's
-- clock and sleep are injected, so no spec here really waits.
local helpers = require "spec.helpers"
local acscall = require "acscall"
local watch = require "acscall.watch"

local fleet_ids = helpers.fleet_ids

-- A fake clock: sleep advances it (the watcher never really waits).
local function fake_time(start)
  local t = start or 1000
  return function() return t end, function(s) t = t + s end
end

describe("client:watch and the server's Retry-After", function()
  local emu, noretry

  setup(function()
    emu = helpers.start_emulator()
    noretry = acscall.new{connection_string = emu.connection_string, retries = false}
  end)

  teardown(function()
    if noretry then noretry:close() end
    if emu then emu:stop() end
  end)

  after_each(function() -- no throttle outlives its spec
    assert.equal(200, (helpers.http_get(emu:url("/_emulator/throttle?seconds=0"))))
  end)

  -- the fake times of each round, and its size
  local function recording(real, clock)
    local rounds, sizes = {}, {}
    local proxy = {get_calls = function(_, ids, opts)
      rounds[#rounds + 1] = clock() - 1000
      sizes[#sizes + 1] = #ids
      return real:get_calls(ids, opts)
    end}
    return proxy, rounds, sizes
  end

  local function watch_throttled(status, retry_after, opts)
    local clock, sleep = fake_time()
    local proxy, rounds, sizes = recording(noretry, clock)
    local ids = fleet_ids(6, 600000, "ra-" .. status .. "-" .. retry_after)
    assert.equal(200, (helpers.http_get(emu:url(("/_emulator/throttle?seconds=60&retry_after=%s&status=%d")
      :format(retry_after, status)))))
    opts._clock, opts._sleep = clock, sleep
    local w = watch.new(proxy, ids, opts)
    local events = {}
    for ev in w:events() do events[#events + 1] = ev end
    return ids, rounds, sizes, events, w
  end

  it("a 429 with Retry-After: 5 and retries = false: the whole fleet pauses 5 s per round", function()
    -- the watch's own backoff alone would come back after 1, 2, 2, 2 s
    local ids, rounds, sizes, events, w = watch_throttled(429, 5, {interval = 1, max_interval = 2, deadline = 17})
    assert.equal("deadline", w.stopped)
    assert.same({6, 6, 6, 6}, sizes) -- every call in each round: one pacing for the fleet
    for i, expect in ipairs{0, 5, 10, 15} do
      assert.is_true(math.abs(rounds[i] - expect) < 0.2, ("round %d at %.2f, expected %d"):format(i, rounds[i], expect))
    end
    for i = 2, #rounds do -- no request inside a pause
      assert.is_true(rounds[i] - rounds[i - 1] >= 5 - 1e-9, ("round %d after %.2f s"):format(i, rounds[i] - rounds[i - 1]))
    end
    assert.equal(#ids * 4, #events)
    for _, ev in ipairs(events) do
      assert.equal("failed", ev.type)
      assert.is_false(ev.final)
      assert.equal(429, ev.info.status)
      assert.equal(5, ev.info.retry_after)
    end
  end)

  it("a 503 with Retry-After: 3 pauses the fleet the same way", function()
    local _, rounds, sizes = watch_throttled(503, 3, {interval = 0.5, max_interval = 1, deadline = 7})
    assert.same({6, 6, 6}, sizes)
    for i, expect in ipairs{0, 3, 6} do
      assert.is_true(math.abs(rounds[i] - expect) < 0.2, ("round %d at %.2f, expected %d"):format(i, rounds[i], expect))
    end
  end)

  it("a server's wait shorter than the watch's own backoff: the longer one", function()
    -- Retry-After: 1, own backoff 2, 4, 8: rounds at 0, 2, 6, 14
    local _, rounds = watch_throttled(429, 1, {interval = 2, max_interval = 8, deadline = 15})
    assert.equal(4, #rounds)
    for i, expect in ipairs{0, 2, 6, 14} do
      assert.is_true(math.abs(rounds[i] - expect) < 0.2, ("round %d at %.2f, expected %d"):format(i, rounds[i], expect))
    end
  end)

  it("when the throttle ends, the fleet is fetched again and its calls are seen", function()
    local clock, sleep = fake_time()
    local proxy, rounds = recording(noretry, clock)
    local ids = fleet_ids(3, 600000, "ra-after")
    assert.equal(200, (helpers.http_get(emu:url("/_emulator/throttle?seconds=60&retry_after=4"))))
    local seen = {}
    local w = watch.new(proxy, ids, {interval = 1, max_interval = 1, deadline = 30, _clock = clock, _sleep = sleep})
    for ev in w:events() do
      if ev.type == "failed" then -- the first round was throttled: lift the switch
        assert.equal(4, ev.info.retry_after)
        helpers.http_get(emu:url("/_emulator/throttle?seconds=0"))
      elseif ev.type == "seen" then
        seen[#seen + 1] = ev.id
        if #seen == #ids then w:stop() end
      end
    end
    assert.equal(#ids, #seen)
    assert.is_true(rounds[2] >= 4 - 1e-9, ("second round at %.2f"):format(rounds[2]))
  end)
end)
