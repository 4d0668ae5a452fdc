-- info.retry_after: the wait the service asked for (retry-after-ms,
-- x-ms-retry-after-ms or Retry-After in seconds or as an HTTP date), read by
-- the same rule as the retry verdict's wait, on the failure info of
-- get_call and get_calls: with `retries = false` it is the only way a
-- caller (client:watch) sees it.
local acscall = require "acscall"
local helpers = require "spec.helpers"

local SCENARIOS = {
  ["ra-seconds"] = {fault = "429bare", retry_after = "2"},
  ["ra-ms"] = {fault = "429bare", ms = 150},
  ["ra-xms"] = {fault = "503", x_ms = 250},
  ["ra-both"] = {fault = "429bare", ms = 300, retry_after = "7"},
  ["ra-date"] = {fault = "429bare", retry_after_date = 30},
  ["ra-none"] = {fault = "429bare"},
  ["ra-500"] = {fault = "500"},
}

describe("info.retry_after", function()
  local emu, c

  lazy_setup(function()
    emu = helpers.start_emulator{scenarios = SCENARIOS}
    c = acscall.new{connection_string = emu.connection_string, retries = false}
  end)
  lazy_teardown(function()
    if c then c:close() end
    if emu then emu:stop() end
  end)

  local function info_of(id)
    local call, msg, info = c:get_call(id)
    assert.is_nil(call)
    assert.is_string(msg)
    return info
  end

  it("a 429 with Retry-After: 2 and retries = false: retry_after == 2 (seconds)", function()
    local info = info_of("ra-seconds")
    assert.equal("http", info.kind)
    assert.equal(429, info.status)
    assert.equal(1, info.attempts)
    assert.equal(2, info.retry_after)
  end)

  it("retry-after-ms: 150 gives 0.15; x-ms-retry-after-ms: 250 on a 503 gives 0.25", function()
    assert.equal(0.15, info_of("ra-ms").retry_after)
    local info = info_of("ra-xms")
    assert.equal(503, info.status)
    assert.equal(0.25, info.retry_after)
  end)

  it("retry-after-ms wins over Retry-After, as in the retry verdict", function()
    assert.equal(0.3, info_of("ra-both").retry_after)
  end)

  it("a Retry-After HTTP date: the seconds from now to it", function()
    local ra = info_of("ra-date").retry_after
    assert.is_number(ra)
    assert.is_true(ra >= 28 and ra <= 30, "retry_after " .. tostring(ra))
  end)

  it("no retry header (429, 500): no retry_after", function()
    assert.is_nil(info_of("ra-none").retry_after)
    assert.is_nil(info_of("ra-500").retry_after)
  end)

  it("is the same number next_attempt waits", function()
    for _, h in ipairs{{["Retry-After"] = "2"}, {["retry-after-ms"] = "150"}, {["x-ms-retry-after-ms"] = "250"}} do
      local r = acscall.new{connection_string = emu.connection_string}
      local wait = r:next_attempt(1, 0, 429, h)
      r:close()
      local k, v = next(h)
      local id = ({["Retry-After"] = "ra-seconds", ["retry-after-ms"] = "ra-ms", ["x-ms-retry-after-ms"] = "ra-xms"})[k]
      assert.equal(wait, info_of(id).retry_after, k .. ": " .. v)
    end
  end)

  it("get_calls: each failed result's info carries it", function()
    local results = c:get_calls({"ra-seconds", "ra-ms", "ra-none"})
    assert.equal(2, results[1].info.retry_after)
    assert.equal(0.15, results[2].info.retry_after)
    assert.is_nil(results[3].info.retry_after)
  end)
end)
