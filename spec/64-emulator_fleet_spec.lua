-- The emulator's fleet mode (calls whose state follows a schedule derived
-- from the id, then 404) and its throttle switch, over plain HTTP.
local helpers = require "spec.helpers"
local cjson = require "cjson.safe"

describe("emulator fleet mode", function()
  local emu
  local tag = tostring(os.time()) .. "-" .. tostring(math.random(1e6))

  setup(function() emu = helpers.start_emulator() end)
  teardown(function() if emu then emu:stop() end end)
  after_each(function() helpers.http_get(emu:url("/_emulator/throttle?seconds=0")) end)

  local function get(id)
    local status, body, headers = helpers.http_get(emu:url(emu:call_path(id)), emu:bearer_headers())
    return status, cjson.decode(body or ""), headers
  end

  it("fleet-<n>-<period_ms>: the schedule from the first request, one state per period, then 404", function()
    -- (n = 4: connecting, connected, transferring, connected, disconnecting, disconnected)
    local cases = {
      [3] = {"connecting", "connected", "disconnecting", "disconnected"},
      [5] = {"connecting", "connected", "transferring", "connected", "transferring", "connected",
             "disconnecting", "disconnected"},
    }
    for n, states in pairs(cases) do
      local id = ("fleet-%d-50-%s"):format(n, tag)
      local t0 = helpers.now()
      local seen = {}
      while true do
        local status, call = get(id)
        if status == 404 then
          assert.equal("8522", call.error.code)
          break
        end
        assert.equal(200, status)
        assert.equal(id, call.callConnectionId)
        assert.equal("4:+1425" .. ("%07d"):format(n), call.targets[1].rawId)
        if seen[#seen] ~= call.callConnectionState then seen[#seen + 1] = call.callConnectionState end
        assert.is_true(helpers.now() - t0 < 5 * helpers.slow, "no 404 after 5 s")
        helpers.sleep(0.005)
      end
      assert.same(states, seen, id)
      -- the 404 comes one period after disconnected began
      assert.is_true(helpers.now() - t0 >= #states * 0.05 - 0.01)
    end
  end)

  it("an id that only starts like a fleet id is an ordinary fixture lookup", function()
    assert.equal(404, (get("fleet-x-200")))
    assert.equal(404, (get("fleet-1-0-" .. tag))) -- a zero period is not a schedule
  end)

  it("throttle: every call answers 429 with Retry-After for the window, then normally; logged", function()
    local id = "fleet-1-600000-" .. tag
    assert.equal(200, (get(id)))
    emu:clear_log()
    local status, body = helpers.http_get(emu:url("/_emulator/throttle?seconds=0.3&retry_after=2"))
    assert.equal(200, status)
    assert.equal("2", cjson.decode(body).retry_after)
    local s, err, headers = get(id)
    assert.equal(429, s)
    assert.equal("TooManyRequests", err.error.code)
    assert.equal("2", headers["retry-after"])
    assert.equal(429, (get("state-connected"))) -- fixtures too
    helpers.sleep(0.35)
    assert.equal(200, (get(id)))
    local log = emu:log()
    assert.equal("throttle", log[1].route)
    assert.equal("throttle", log[2].fault)
    assert.equal(429, log[2].status)
    assert.equal(cjson.null, log[#log].fault)
  end)

  it("throttle: status=503, Retry-After defaults to the window; seconds=0 ends it; bad values 400", function()
    assert.equal(200, (helpers.http_get(emu:url("/_emulator/throttle?seconds=30&status=503"))))
    local s, err, headers = get("state-connected")
    assert.equal(503, s)
    assert.equal("ServiceUnavailable", err.error.code)
    assert.equal("30", headers["retry-after"])
    assert.equal(200, (helpers.http_get(emu:url("/_emulator/throttle?seconds=0"))))
    assert.equal(200, (get("state-connected")))
    for _, q in ipairs{"", "?seconds=-1", "?seconds=x", "?seconds=1&status=500"} do
      assert.equal(400, (helpers.http_get(emu:url("/_emulator/throttle" .. q))), q)
    end
  end)

  it("throttle comes after authentication: a bad credential is still 401", function()
    assert.equal(200, (helpers.http_get(emu:url("/_emulator/throttle?seconds=30"))))
    local s = helpers.http_get(emu:url(emu:call_path("state-connected")), {Authorization = "Bearer nope"})
    assert.equal(401, s)
  end)
end)
