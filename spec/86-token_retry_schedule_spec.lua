-- Each token endpoint's retry schedule (acscall.credential.RETRY, read by the core's one verdict,
-- csrc/retry.c) against @azure/identity 4.13.0's, the version tools/identity/package-lock.json
-- pins: how many tries a failing status gets, and each wait's bounds. The SDK's rules, read from
-- its sources (tools/identity/node_modules after `make identity-fixtures`):
--  * every token request goes through IdentityClient's retry policy (@azure/core-rest-pipeline
--    1.24 over @typespec/ts-http-runtime 0.3.6 `retryPolicy`, maxRetries 3):
--    `throttlingRetryStrategy` waits the server's Retry-After on 429 and 503,
--    `exponentialRetryStrategy` retries 408 and 5xx but 501/505 from 1 s; a 429 without
--    Retry-After is not retried;
--  * managed identity (IMDS, App Service) adds `imdsRetryPolicy` around it: 404 and 410, 5
--    retries, from 800 ms (410: from 3 s), at most 64 s;
--  * every computed wait is `d = min(64 s, base * 2^(retry-1))` with jitter: uniform in [d/2, d]
--    (@azure/core-util `calculateRetryDelay`).
-- acscall adds one rule: a 410 is retried until 70 s have passed, within the deadline (Microsoft's
-- IMDS guidance). Waits are checked through client:next_attempt (the verdict, no waiting); the
-- recorded SDK's gaps (tools/identity/fixtures/sdk-requests.json) must fit the same bounds.
local acscall = require "acscall"
local credential = require "acscall.credential"
local helpers = require "spec.helpers"
local cjson = require "cjson.safe"

local FIXTURES = helpers.repo_root() .. "/tools/identity/fixtures/sdk-requests.json"
local fx = assert(cjson.decode((assert(helpers.read_file(FIXTURES), FIXTURES))), FIXTURES)

-- the SDK's tries per failing status, and the base of its waits (nil: the server's Retry-After)
local SDK = {
  imds = {
    plain = { [404] = { 6, 0.8 }, [410] = { 6, 3 }, [429] = { 1 }, [503] = { 4, 1 }, [500] = { 4, 1 },
      [408] = { 4, 1 } },
    retry_after = { [429] = { 4 }, [503] = { 4 } },
  },
  authority = {
    plain = { [404] = { 1 }, [410] = { 1 }, [429] = { 1 }, [503] = { 4, 1 }, [500] = { 4, 1 }, [408] = { 4, 1 } },
    retry_after = { [429] = { 4 }, [503] = { 4 } },
  },
}
SDK.app_service = SDK.imds

local function bounds(base, retry)
  local d = math.min(64, base * 2 ^ (retry - 1))
  return d / 2, d
end

local EPS = 0.0015 -- the verdict counts whole milliseconds

-- One failing status, answered every time: the tries made and the waits taken.
local function series(client, retries, status, headers)
  local tries, elapsed, waits = 1, 0, {}
  while true do
    local w = client:next_attempt(tries, elapsed, status, headers, { retries = retries })
    if not w then return tries, waits, elapsed end
    waits[#waits + 1] = w
    elapsed, tries = elapsed + w, tries + 1
    assert(tries < 50, "runaway schedule")
  end
end

describe("token endpoints retry as " .. tostring(fx.sdk) .. " " .. tostring(fx.version) .. " does", function()
  local c, long
  before_each(function()
    -- the credential's fetcher keeps the core's deadline (90 s); `long` shows the 70 s rule alone
    c = acscall.new{ endpoint = "https://a.communication.azure.com/", token = "t" }
    long = acscall.new{ endpoint = "https://a.communication.azure.com/", token = "t", deadline = 600 }
  end)
  after_each(function() c:close(); long:close() end)

  for _, endpoint in ipairs{ "imds", "app_service", "authority" } do
    local R = credential.RETRY[endpoint]
    for status, want in pairs(SDK[endpoint].plain) do
      it(endpoint .. " " .. status .. ": " .. want[1] .. " tries, the SDK's waits", function()
        for _ = 1, 40 do -- the jitter differs each time
          local tries, waits = series(long, R, status)
          if status == 410 and want[1] == 6 then
            -- the SDK's 6 tries, and one more when they would end before 70 s (then always after)
            local at6 = 0
            for i = 1, 5 do at6 = at6 + waits[i] end
            assert.are.equal(at6 >= 70 and 6 or 7, tries)
          else
            assert.are.equal(want[1], tries)
          end
          for i = 1, math.min(#waits, want[1] - 1) do
            local lo, hi = bounds(want[2], i)
            assert.is_true(waits[i] >= lo - EPS and waits[i] <= hi + EPS,
              ("retry %d waited %.3f s, the SDK %.3f..%.3f s"):format(i, waits[i], lo, hi))
          end
        end
      end)
    end
    for status, want in pairs(SDK[endpoint].retry_after) do
      it(endpoint .. " " .. status .. " with Retry-After: " .. want[1] .. " tries, each the server's wait", function()
        local tries, waits = series(c, R, status, { ["Retry-After"] = "2" })
        assert.are.equal(want[1], tries)
        for _, w in ipairs(waits) do assert.are.equal(2, w) end
      end)
    end
  end

  it("a 410 series spans at least 70 s within the deadline, and stops at the deadline", function()
    for _ = 1, 40 do
      local _, _, elapsed = series(long, credential.RETRY.imds, 410)
      assert.is_true(elapsed >= 70, elapsed)
      local _, waits, e2 = series(c, credential.RETRY.imds, 410)
      assert.is_true(e2 < 90 and #waits >= 5, e2) -- the core's 90 s deadline: never past it
    end
  end)

  it("the recorded SDK's waits fit the schedule's bounds", function()
    local checked = 0
    local AS = { client_secret = "authority", workload_identity = "authority" }
    for _, case in ipairs(fx.cases) do
      local sdk = SDK[AS[case.credential] or case.credential]
      local status = tonumber(case.schedule:match("^(%d+)x"))
      local reqs = {}
      for _, r in ipairs(case.requests or {}) do if r.answered then reqs[#reqs + 1] = r end end
      if sdk and status then
        for i = 2, #reqs do
          local gap = (reqs[i].ms - reqs[i - 1].ms) / 1000
          local lo, hi
          if sdk.retry_after[status] then
            lo, hi = 1, 1 -- the capture server sent Retry-After: 1 with 429 and 503
          else
            lo, hi = bounds(sdk.plain[status][2], i - 1)
          end
          assert.is_true(gap >= lo - 0.01 and gap <= hi + 0.25,
            ("%s %s gap %d: %.3f s, bounds %.3f..%.3f"):format(case.credential, case.schedule, i - 1, gap, lo, hi))
          checked = checked + 1
        end
      end
    end
    assert.are.equal(24, checked)
  end)
end)
