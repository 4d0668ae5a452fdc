-- The one attempt verdict (csrc/retry.c acs_retry_verdict) and the one
-- attempt loop (csrc/call.c acs_attempts_run): retry classes and schedules
-- as data, the refresh after a 401, for get_call, the fetcher and Lua
-- transports (client:next_attempt). Arithmetic is checked with injected
-- clocks (next_attempt's elapsed); the emulator checks the loops over real
-- HTTP with waits of a few milliseconds.
local acscall = require "acscall"
local core = require "acscall.core"
local helpers = require "spec.helpers"
local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"

describe("the attempt verdict (client:next_attempt)", function()
  local c
  before_each(function()
    c = acscall.new{endpoint = "https://a.communication.azure.com/", token = "t",
      retries = {max = 2, base_delay = 0.1, max_delay = 1}}
  end)
  after_each(function() c:close() end)

  it("says \"refresh\" after a 401 on a refreshable credential, once per call, at once", function()
    local what, timeout, connect = c:next_attempt(1, 0.5, 401, nil, {refreshable = true})
    assert.are.equal("refresh", what)
    assert.is_true(timeout > 0 and connect > 0)
    assert.is_nil(c:next_attempt(1, 0.5, 401, nil, {refreshable = true, refreshed = true}))
    assert.is_nil(c:next_attempt(1, 0.5, 401, nil, {refreshable = false}))
    assert.is_nil(c:next_attempt(1, 0.5, 401))
    -- after the deadline there is nothing to refresh for
    assert.is_nil(c:next_attempt(1, 1e6, 401, nil, {refreshable = true}))
    -- other statuses keep their verdict whatever the credential
    assert.is_number((c:next_attempt(1, 0.5, 503, nil, {refreshable = true})))
    assert.is_nil(c:next_attempt(1, 0.5, 403, nil, {refreshable = true}))
  end)

  it("takes the retry classes as data: statuses and failure classes", function()
    assert.is_nil(c:next_attempt(1, 0, 404))
    local imds = {statuses = {404, 410, 429, 500, 502, 503, 504}}
    assert.is_number((c:next_attempt(1, 0, 404, nil, {retries = imds})))
    assert.is_number((c:next_attempt(1, 0, 410, nil, {retries = imds})))
    assert.is_nil(c:next_attempt(1, 0, 408, nil, {retries = imds})) -- not listed
    assert.is_number((c:next_attempt(1, 0, "timeout")))
    assert.is_nil(c:next_attempt(1, 0, "timeout", nil, {retries = {outcomes = {"connect"}}}))
    assert.is_number((c:next_attempt(1, 0, "connect", nil, {retries = {outcomes = {"connect"}}})))
  end)

  it("takes the schedule as data: max, base_delay, max_delay", function()
    local w = c:next_attempt(1, 0, 503, nil, {retries = {base_delay = 2, max_delay = 3}})
    assert.is_true(w >= 1 and w <= 2, w)
    w = c:next_attempt(3, 0, 503, nil, {retries = {max = 5, base_delay = 2, max_delay = 3}})
    assert.is_true(w >= 1.5 and w <= 3, w)
    assert.is_nil(c:next_attempt(3, 0, 503)) -- the client's max = 2
    assert.is_nil(c:next_attempt(1, 0, 503, nil, {retries = false}))
  end)

  it("retries past max until min_total for the statuses it names (IMDS 410: at least 70 s)", function()
    local r = {max = 1, base_delay = 1, max_delay = 10,
      statuses = {404, 410, 503}, min_total = 70, min_total_statuses = {410}}
    local c2 = acscall.new{endpoint = "https://a.communication.azure.com/", token = "t",
      deadline = 200, retries = r}
    assert.is_number((c2:next_attempt(2, 0, 410)))
    assert.is_number((c2:next_attempt(9, 60, 410)))
    assert.is_nil(c2:next_attempt(9, 70.5, 410))  -- 70 s have passed
    assert.is_nil(c2:next_attempt(2, 0, 404))     -- max reached, 404 not named
    assert.is_nil(c2:next_attempt(2, 0, 503))
    c2:close()
    -- without min_total_statuses: every retried outcome
    local c3 = acscall.new{endpoint = "https://a.communication.azure.com/", token = "t",
      retries = {max = 0, min_total = 5}}
    assert.is_number((c3:next_attempt(4, 1, 503)))
    assert.is_number((c3:next_attempt(4, 1, "connect")))
    assert.is_nil(c3:next_attempt(4, 1, 404))
    c3:close()
  end)

  it("refuses wrong retry data at the caller", function()
    local function raises(pat, r)
      local ok, err = pcall(acscall.new, {endpoint = "https://a.b/", token = "t", retries = r})
      assert.is_false(ok)
      assert.matches(pat, err, 1, true)
    end
    raises("'retries.statuses'", {statuses = {"x"}})
    raises("'retries.statuses'", {statuses = {99}})
    raises("'retries.statuses'", {statuses = 503})
    raises("'retries.outcomes'", {outcomes = {"response"}})
    raises("'retries.outcomes'", {outcomes = {"nope"}})
    raises("'min_total'", {min_total = -1})
    local ok, err = pcall(c.next_attempt, c, 1, 0, 503, nil, {retries = {statuses = {1000}}})
    assert.is_false(ok)
    assert.matches("'retries.statuses'", err, 1, true)
  end)
end)

describe("the attempt loop over real HTTP", function()
  local emu
  lazy_setup(function() emu = helpers.start_emulator() end)
  lazy_teardown(function() if emu then emu:stop() end end)

  local function call_url(id)
    return emu.endpoint .. "calling/callConnections/" .. id .. "?api-version=2026-03-12"
  end

  it("the fetcher retries the statuses it is given (per fetcher and per fetch)", function()
    local f = core.fetcher{retries = {max = 2, base_delay = 0.01, statuses = {404}}}
    local st, _, _, attempts = f:fetch{url = call_url("no-such-call"),
      headers = {Authorization = "Bearer " .. emu.token}}
    assert.are.equal(404, st)
    assert.are.equal(3, attempts)
    -- per fetch, over the fetcher's: other statuses, fewer tries
    st, _, _, attempts = f:fetch{url = call_url("no-such-call"),
      headers = {Authorization = "Bearer " .. emu.token}, retries = {statuses = {503}}}
    assert.are.equal(404, st)
    assert.are.equal(1, attempts)
    st, _, _, attempts = f:fetch{url = call_url("no-such-call"),
      headers = {Authorization = "Bearer " .. emu.token}, retries = 1}
    assert.are.equal(404, st)
    assert.are.equal(2, attempts)
    f:close()
  end)

  it("the fetcher honours retries = 0 per fetch (a probe: one try)", function()
    local f = core.fetcher{retries = {max = 3, base_delay = 0.01}}
    emu:clear_log()
    local st, _, _, attempts = f:fetch{url = call_url(SEED), retries = 0,
      headers = {Authorization = "Bearer " .. emu.token, ["x-acs-emulator-fault"] = "503"}}
    assert.are.equal(503, st)
    assert.are.equal(1, attempts)
    f:close()
  end)

  it("the fetcher keeps retrying until min_total has passed", function()
    local f = core.fetcher{retries = {max = 0, base_delay = 0.02, max_delay = 0.04,
      statuses = {404}, min_total = 0.3}}
    local t0 = helpers.now()
    local st, _, _, attempts = f:fetch{url = call_url("no-such-call"),
      headers = {Authorization = "Bearer " .. emu.token}}
    local took = helpers.now() - t0
    assert.are.equal(404, st)
    assert.is_true(attempts >= 3, "attempts " .. attempts)
    assert.is_true(took >= 0.28, "took " .. took) -- (two clocks: ms rounding)
    f:close()
  end)

  it("get_call takes the retry classes from new's retries", function()
    local c = acscall.new{connection_string = emu.connection_string,
      retries = {max = 2, base_delay = 0.01, statuses = {404}}}
    local call, _, info = c:get_call("no-such-call")
    assert.is_nil(call)
    assert.are.equal(404, info.status)
    assert.are.equal(3, info.attempts)
    c:close()
  end)

  -- a credential whose first token the service refuses: get_call and
  -- get_calls ask the same verdict, which says "refresh" once
  local function credential()
    local cred = {asked = 0, forced = 0}
    function cred.get_token(self, opts)
      self.asked = self.asked + 1
      if opts and opts.force_refresh then
        self.forced = self.forced + 1
        self.good = true
      end
      return self.good and emu.token or "stale-token", os.time() + 3600
    end
    return cred
  end

  it("get_call: a 401 on a credential refreshes once and retries at once", function()
    local cred = credential()
    local c = acscall.new{endpoint = emu.endpoint, credential = cred,
      retries = {base_delay = 5}} -- a backoff wait would show
    local t0 = helpers.now()
    local call, err = c:get_call(SEED)
    assert.is_nil(err, err)
    assert.are.equal(SEED, call.callConnectionId)
    assert.are.equal(1, cred.forced)
    assert.is_true(helpers.now() - t0 < 2 * helpers.slow)
    -- a refresh that gives the same refused token: the 401 is reported
    cred.good = false
    cred.get_token = function() return "stale-token", os.time() + 3600 end
    local info
    call, err, info = c:get_call(SEED)
    assert.is_nil(call)
    assert.matches("401", err)
    assert.are.equal(401, info.status)
    assert.are.equal(1, info.attempts)
    c:close()
  end)

  it("get_calls: the same verdict, one forced refresh for the batch", function()
    local cred = credential()
    local c = acscall.new{endpoint = emu.endpoint, credential = cred,
      retries = {base_delay = 5}}
    local r = c:get_calls({SEED, SEED, SEED}, {concurrency = 3})
    for i = 1, 3 do assert.are.equal(SEED, r[i].call and r[i].call.callConnectionId, r[i].err) end
    assert.are.equal(1, cred.forced)
    c:close()
  end)
end)
