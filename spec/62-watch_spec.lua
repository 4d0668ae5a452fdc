-- client:watch against the emulator's fleet (calls that follow a state
-- schedule from their first request, then 404) and its throttle switch.
-- The fleet specs really wait (the emulator's schedule runs on its clock):
-- small intervals and periods keep them at a few seconds (the 2,000-call
-- one is #slow: make test-slow); the pacing specs inject the watcher's
-- clock and sleep instead.
local helpers = require "spec.helpers"
local acscall = require "acscall"
local watch = require "acscall.watch"

local SLOW = helpers.slow
local schedule = helpers.fleet_schedule
local fleet_ids = helpers.fleet_ids

-- A fake clock: sleep advances it (the watcher never really waits).
local function fake_time(start)
  local t = start or 1000
  return function() return t end, function(s) t = t + s end
end

-- Every event of a watch, and the sequence of states each call showed.
local function collect(w, on_event)
  local events, states = {}, {}
  for ev in w:events() do
    events[#events + 1] = ev
    if ev.type == "seen" or ev.type == "state" then
      local list = states[ev.id] or {}
      states[ev.id] = list
      list[#list + 1] = ev.state
    end
    if on_event then on_event(ev, w) end
  end
  return events, states
end

describe("client:watch", function()
  local emu, client

  setup(function()
    emu = helpers.start_emulator()
    client = acscall.new{connection_string = emu.connection_string}
  end)

  teardown(function()
    if client then client:close() end
    if emu then emu:stop() end
  end)

  after_each(function() -- no throttle outlives its spec
    assert.equal(200, (helpers.http_get(emu:url("/_emulator/throttle?seconds=0"))))
  end)

  it("follows a fleet of 120 calls: every change once and in order, ended calls leave, stop_when_ended", function()
    local ids = fleet_ids(120, math.floor(200 * SLOW), "f120")
    local w = client:watch(ids, {interval = 0.03 * SLOW, max_interval = 0.06 * SLOW, stop_when_ended = true})
    local ended_at = {}
    local events, states = collect(w, function(ev)
      assert.is_nil(ended_at[ev.id], "an event after the call ended: " .. ev.id)
      if ev.type == "ended" then ended_at[ev.id] = ev.time end
    end)
    assert.equal("ended", w.stopped)
    assert.same({}, w:ids())
    for i, id in ipairs(ids) do
      assert.same(schedule(i), states[id], id)
      assert.truthy(ended_at[id], id)
    end
    -- stop_when_ended returns with the last end: its event is the last one
    local last = events[#events]
    assert.equal("ended", last.type)
    assert.equal("disconnected", last.reason)
    for _, ev in ipairs(events) do
      assert.is_true(ev.type ~= "failed", tostring(ev.msg))
      assert.is_number(ev.time)
      if ev.type == "state" then
        assert.is_string(ev.previous)
        assert.equal(ev.state, ev.call.callConnectionState)
        assert.equal(ev.id, ev.call.callConnectionId)
      end
    end
  end)

  -- 2,000 calls, each state lasting 2.5 x max_interval: it really waits
  -- (the emulator's schedule runs on its clock, about 15-20 s), hence #slow
  it("2,000 calls: every change once and in order; stop_when_ended returns with the last end #slow", function()
    local period = math.floor(2000 * SLOW) -- ms per state: 2.5 x max_interval (+10% jitter)
    local ids = helpers.fleet_ids(2000, period, "slow")
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

  it("a call never seen that answers 404 fails for good; stop_when_ended counts it out", function()
    local w = client:watch({"no-such-call"}, {interval = 0.05, stop_when_ended = true})
    local events = collect(w)
    assert.equal(1, #events)
    local ev = events[1]
    assert.equal("failed", ev.type)
    assert.equal("no-such-call", ev.id)
    assert.is_true(ev.final)
    assert.equal(404, ev.info.status)
    assert.equal("http", ev.info.kind)
    assert.matches("HTTP 404", ev.msg)
    assert.equal("ended", w.stopped)
  end)

  it("a call seen, then forgotten (404) before the next fetch, ends with reason 'gone'", function()
    -- fleet-3-50: connecting, connected, disconnecting, disconnected, then 404 from 0.2 s
    local id = fleet_ids(3, 50, "gone")[3]
    local w = client:watch({id}, {interval = 0.25, jitter = 0, stop_when_ended = true})
    local events = collect(w)
    assert.equal(2, #events)
    assert.equal("seen", events[1].type)
    assert.equal("connecting", events[1].state)
    local last = events[2]
    assert.equal("ended", last.type)
    assert.equal("gone", last.reason)
    assert.equal("connecting", last.state) -- the last state seen
    assert.equal(404, last.info.status)
    assert.is_true(last.time - events[1].time >= 0.2)
  end)

  it("add and remove from inside the loop", function()
    local long = fleet_ids(3, 600000, "addrm") -- they stay connecting for 10 minutes
    local short = fleet_ids(6, 80, "addrm-short") -- [3] and [6]: 4 states of 80 ms
    local w = client:watch({long[1]}, {interval = 0.05, max_interval = 0.1, stop_when_ended = true})
    local after_remove = 0
    local removed = false
    collect(w, function(ev, ww)
      if removed and (ev.id == long[1] or ev.id == long[2]) then after_remove = after_remove + 1 end
      if ev.id == long[1] and ev.type == "seen" then
        assert.is_true(ww:add(long[2]))
        assert.is_true(ww:add(short[3]))
        assert.is_false(ww:add(short[3])) -- already watched
        assert.is_true(ww:add(short[6]))
      elseif ev.id == long[2] and ev.type == "seen" then
        assert.is_true(ww:remove(long[1]))
        assert.is_true(ww:remove(long[2]))
        assert.is_false(ww:remove(long[2])) -- no longer watched
        removed = true
      end
    end)
    assert.is_true(removed)
    assert.equal(0, after_remove)
    assert.equal("ended", w.stopped)
    -- a removed call is fetched no more
    local n = #emu:calls{id = long[1]}
    helpers.sleep(0.1)
    assert.equal(n, #emu:calls{id = long[1]})
  end)

  -- a real Retry-After of 2 s, end to end: #slow
  it("a 429 with Retry-After: 2 pauses the whole fleet; requests in flight then are the only ones #slow", function()
    local ids = fleet_ids(40, 600000, "throttle")
    local conc = 8
    local w = client:watch(ids, {interval = 0.05, max_interval = 0.05, concurrency = conc,
      deadline = 2.8 * SLOW})
    local seen, switched = 0, false
    emu:clear_log()
    collect(w, function(ev)
      if ev.type == "seen" then seen = seen + 1 end
      if seen == #ids and not switched then
        switched = true
        local status = helpers.http_get(emu:url("/_emulator/throttle?seconds=2&retry_after=2"))
        assert.equal(200, status)
      end
    end)
    assert.is_true(switched)
    assert.equal("deadline", w.stopped)
    local log = emu:calls()
    local first
    for i, e in ipairs(log) do
      if e.status == 429 then first = i break end
    end
    assert.truthy(first, "no 429 met")
    local t429 = log[first].time
    -- the requests answered after the first 429 and before the pause ends:
    -- only those already in flight (at most one round), all within moments
    local during = {}
    for i = first, #log do
      local e = log[i]
      if e.time < t429 + 1.95 then during[#during + 1] = e end
    end
    assert.is_true(#during <= conc, #during .. " requests in the pause")
    for _, e in ipairs(during) do
      assert.is_true(e.time - t429 < 0.5 * SLOW, ("a request %.3f s into the pause"):format(e.time - t429))
      assert.equal(429, e.status)
    end
    -- and the fleet goes on afterwards
    local after = 0
    for i = first, #log do
      if log[i].status == 200 then after = after + 1 end
    end
    assert.is_true(after > 0)
  end)

  it("failures: a transient one stays (not final), a refused credential is final", function()
    local bad = acscall.new{endpoint = emu.endpoint, token = "wrong-token-for-watch"}
    local w = bad:watch({"state-connected"}, {interval = 0.05, stop_when_ended = true})
    local events = collect(w)
    bad:close()
    assert.equal(1, #events)
    assert.equal("failed", events[1].type)
    assert.is_true(events[1].final)
    assert.equal(401, events[1].info.status)
    assert.falsy(events[1].msg:find("wrong-token-for-watch", 1, true))

    local flaky = acscall.new{connection_string = emu.connection_string, retries = false}
    local id = fleet_ids(1, 600000, "flaky")[1]
    local n = 0
    w = flaky:watch({id}, {interval = 0.05, max_interval = 0.05, deadline = 5})
    collect(w, function(ev, ww)
      n = n + 1
      if n == 1 then
        assert.equal("seen", ev.type)
        helpers.http_get(emu:url("/_emulator/throttle?seconds=0.2&retry_after=0&status=503"))
      elseif ev.type == "failed" then
        assert.is_false(ev.final)
        assert.equal(503, ev.info.status)
      else
        assert.equal("state", ev.type) -- never: it stays connecting
      end
      if n == 2 then ww:stop() end
    end)
    flaky:close()
    assert.equal("stopped", w.stopped)
    assert.equal(2, n)
  end)

  it("a credential's short-lived tokens are asked per attempt: the watch goes on across their expiry", function()
    local cred = helpers.credential("client_secret", {tenant_id = "watch-tenant", client_id = "watch-app-ttl1",
      client_secret = emu.client_secret, authority_host = emu.authority_host})
    local c = acscall.new{endpoint = emu.endpoint, credential = cred}
    local id = fleet_ids(1, 600000, "cred")[1]
    emu:clear_log()
    local w = c:watch({id}, {interval = 0.05, max_interval = 0.05, deadline = 0.7})
    local events = collect(w)
    c:close()
    assert.equal("deadline", w.stopped)
    assert.equal(1, #events) -- seen, then nothing: no failure
    assert.equal("seen", events[1].type)
    local calls = emu:calls{id = id}
    assert.is_true(#calls >= 8, #calls .. " fetches")
    for _, e in ipairs(calls) do assert.equal("issued", e.auth) end
    -- tokens living 1 s: several, each asked for by the credential
    assert.is_true(#emu:token_requests{client_id = "watch-app-ttl1"} >= 2)
  end)

  it("programmer mistakes raise at the caller's line", function()
    assert.has_error(function() client:watch("id") end, "client:watch: a list of call ids expected, got string")
    assert.has_error(function() client:watch({"a"}, {interval = -1}) end,
      "client:watch: 'interval' must be a number >= 0")
    local cmax = require("acscall.core").LIMITS.concurrency_max
    for _, bad in ipairs{1.5, cmax + 1} do
      assert.has_error(function() client:watch({"a"}, {concurrency = bad}) end,
        ("client:watch: 'concurrency' must be an integer in [1, %d]"):format(cmax))
    end
    assert.has_error(function() client:watch({"a"}, {max_inteval = 3}) end, "client:watch: unknown option 'max_inteval'")
    assert.has_error(function() client:watch({1}) end, "client:watch: call ids must be non-empty strings, got number")
    local w = client:watch({})
    assert.has_error(function() w:add("") end, "client:watch: call ids must be non-empty strings, got string")
  end)

  describe("pacing (injected clock and sleep)", function()
    -- the times each id was fetched at, on the fake clock
    local function recording(real, clock)
      local times, sizes = {}, {}
      local proxy = {get_calls = function(_, ids, opts)
        sizes[#sizes + 1] = #ids
        assert.equal(#ids, opts.concurrency)
        for _, id in ipairs(ids) do
          times[id] = times[id] or {}
          table.insert(times[id], clock())
        end
        return real:get_calls(ids, opts)
      end}
      return proxy, times, sizes
    end

    it("an unchanged call is fetched less often, by backoff, up to max_interval; waits jittered", function()
      local clock, sleep = fake_time()
      local proxy, times = recording(client, clock)
      local id = fleet_ids(1, 600000, "backoff")[1]
      local w = watch.new(proxy, {id}, {interval = 2, max_interval = 10, backoff = 1.5, jitter = 0.1,
        deadline = 120, _clock = clock, _sleep = sleep})
      collect(w)
      assert.equal("deadline", w.stopped)
      local t = times[id]
      -- the first answer is a change (first sight): the interval +-10%; then
      -- while it stretches (3, 4.5, 6.75, 10) a wait between 2 s and the
      -- stretched interval; then 10 s +-10%
      local stretched = {2, 3, 4.5, 6.75, 10}
      local slack = 0.1 + 1e-9 -- the watcher naps in slices of at most 0.1 s
      local at_max = 0
      for i = 2, #t do
        local gap = t[i] - t[i - 1]
        local iv = stretched[i - 1]
        local lo, hi
        if i == 2 then lo, hi = 1.8, 2.2
        elseif iv then lo, hi = 2, iv
        else lo, hi = 9, 11; at_max = at_max + 1 end
        assert.is_true(gap >= lo - 1e-9 and gap <= hi + slack,
          ("fetch %d after %.3f s, expected %.2f-%.2f s"):format(i, gap, lo, hi))
      end
      assert.is_true(at_max >= 5, at_max .. " fetches at max_interval")
    end)

    it("a fleet larger than one round is first fetched over the first interval, in rounds of concurrency", function()
      local clock, sleep = fake_time()
      local proxy, times, sizes = recording(client, clock)
      local ids = fleet_ids(100, 600000, "spread")
      local w = watch.new(proxy, ids, {interval = 2, concurrency = 10, deadline = 1.99,
        _clock = clock, _sleep = sleep})
      collect(w)
      local fetched, buckets = 0, {0, 0, 0, 0}
      for _, id in ipairs(ids) do
        local t = times[id] and times[id][1]
        if t then
          fetched = fetched + 1
          local b = math.floor((t - 1000) / 0.5) + 1
          buckets[b] = buckets[b] + 1
        end
      end
      -- every call once, about a quarter in each half second, never all at once
      assert.equal(100, fetched)
      for b = 1, 4 do assert.is_true(buckets[b] >= 10 and buckets[b] <= 45, "bucket " .. b .. ": " .. buckets[b]) end
      for _, n in ipairs(sizes) do assert.is_true(n <= 10, "a round of " .. n) end
    end)

    -- (Retry-After: 0: the server sets no wait, the watch's own backoff
    -- paces; spec/67 has the server's wait)
    it("a 429 that outlasts the core's retries pauses the whole fleet, doubling per throttled round", function()
      local clock, sleep = fake_time()
      local noretry = acscall.new{connection_string = emu.connection_string, retries = false}
      local proxy, times, sizes = recording(noretry, clock)
      local ids = fleet_ids(4, 600000, "pause")
      helpers.http_get(emu:url("/_emulator/throttle?seconds=60&retry_after=0"))
      local w = watch.new(proxy, ids, {interval = 1, max_interval = 8, deadline = 20, _clock = clock, _sleep = sleep})
      local events = collect(w)
      noretry:close()
      -- one round per pause: all four ids together, at 0, 1, 3, 7, 15 (pauses 1, 2, 4, 8)
      local rounds = {}
      for _, t in ipairs(times[ids[1]]) do rounds[#rounds + 1] = t - 1000 end
      for _, id in ipairs(ids) do assert.equal(#rounds, #times[id]) end
      assert.same({4, 4, 4, 4, 4}, sizes)
      for i, expect in ipairs{0, 1, 3, 7, 15} do
        assert.is_true(math.abs(rounds[i] - expect) < 0.2, ("round %d at %.2f, expected %d"):format(i, rounds[i], expect))
      end
      for _, ev in ipairs(events) do
        assert.equal("failed", ev.type)
        assert.is_false(ev.final)
        assert.equal(429, ev.info.status)
      end
    end)
  end)

  it("Ctrl-C ends a script's loop within a second; the code after the loop runs ", function()
    local id = fleet_ids(1, 600000, "sigint")[1]
    local p = helpers.spawn_lua(([[
      package.path = %q .. package.path
      package.cpath = %q .. package.cpath
      local acscall = require "acscall"
      local c = acscall.new{connection_string = %q}
      local w = c:watch({%q}, {interval = 30})
      for ev in w:events() do print(ev.type, ev.state) io.stdout:flush() end
      print("stopped", w.stopped)
      c:close()
    ]]):format(package.path .. ";", package.cpath .. ";", emu.connection_string, id))
    local ready = helpers.wait_until(function()
      return (p:output()):find("seen\tconnecting", 1, true) ~= nil and p:waiting()
    end, 10 * SLOW)
    local rc, took = p:interrupt(10 * SLOW)
    local out, err = p:output()
    p:cleanup()
    assert.is_true(ready, out .. err)
    assert.equal(0, rc, err)
    assert.matches("stopped\tinterrupted\n$", out)
    assert.is_true(took < 1 * SLOW, ("took %.2f s"):format(took))
  end)
end)
