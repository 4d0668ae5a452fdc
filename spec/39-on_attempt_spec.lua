-- on_attempt (core.new and core.fetcher): one plain record per attempt,
-- with what a log line or a metric needs (status or kind, duration, the
-- wait before the next attempt and why, the service's request id, the
-- client request id, the host) and never a secret. Against the emulator,
-- with retry waits of a few milliseconds.
local acscall = require "acscall"
local core = require "acscall.core"
local helpers = require "spec.helpers"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local FAST = {max = 3, base_delay = 0.01, max_delay = 0.02}
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

describe("on_attempt", function()
  local emu, host
  lazy_setup(function()
    emu = helpers.start_emulator{scenarios = {
      ["f-429ms"] = {fault = "429ms", ms = 10, times = 1},
    }}
    host = emu.endpoint:match("^https?://([^/]+)")
  end)
  lazy_teardown(function() if emu then emu:stop() end end)

  local function recorder()
    local records = {}
    return records, function(r) records[#records + 1] = r end
  end

  -- every string of every record, to look for secrets in
  local function all_text(records)
    local parts = {}
    for _, r in ipairs(records) do
      for k, v in pairs(r) do parts[#parts + 1] = tostring(k) .. "=" .. tostring(v) end
    end
    return table.concat(parts, "\n")
  end

  it("get_call 503, 503, 200: three records, the waits and reasons right", function()
    local records, hook = recorder()
    local c = acscall.new{connection_string = emu.connection_string, retries = FAST, on_attempt = hook}
    local call = assert(c:get_call("fault-503x2"))
    assert.are.equal("fault-503x2", call.callConnectionId)
    assert.are.equal(3, #records)
    for i, r in ipairs(records) do
      assert.are.equal("get_call", r.operation)
      assert.are.equal("fault-503x2", r.id)
      assert.are.equal(i, r.attempt)
      assert.are.equal(host, r.host)
      assert.matches(UUID, r.request_id)
      assert.matches(UUID, r.client_request_id)
      assert.are.equal(records[1].client_request_id, r.client_request_id)
      assert.is_true(r.duration >= 0 and r.duration < 5 * helpers.slow, tostring(r.duration))
      assert.is_nil(r.kind)
    end
    assert.are.equal(503, records[1].status)
    assert.are.equal("status 503", records[1].reason)
    assert.is_true(records[1].wait >= 0.005 and records[1].wait <= 0.01, tostring(records[1].wait))
    assert.are.equal(503, records[2].status)
    assert.are.equal("status 503", records[2].reason)
    assert.is_true(records[2].wait >= 0.01 and records[2].wait <= 0.02, tostring(records[2].wait))
    assert.are.equal(200, records[3].status)
    assert.is_nil(records[3].wait)
    assert.is_nil(records[3].reason)
    -- three request ids of the service: one per attempt
    assert.are_not.equal(records[1].request_id, records[2].request_id)
    c:close()
  end)

  it("says the server set the wait (retry-after), and a final error has no wait", function()
    local records, hook = recorder()
    local c = acscall.new{connection_string = emu.connection_string, retries = FAST, on_attempt = hook}
    assert(c:get_call("f-429ms"))
    assert.are.equal(2, #records)
    assert.are.equal(429, records[1].status)
    assert.are.equal("retry-after", records[1].reason)
    assert.are.equal(0.01, records[1].wait)
    records[1], records[2] = nil, nil
    local call, _, info = c:get_call("no-such-call")
    assert.is_nil(call)
    assert.are.equal(404, info.status)
    assert.are.equal(1, #records)
    assert.are.equal(404, records[1].status)
    assert.is_nil(records[1].wait)
    c:close()
  end)

  it("a failure without a response: kind and outcome, no status", function()
    local records, hook = recorder()
    local c = acscall.new{endpoint = "http://127.0.0.1:1/", token = "t", retries = {max = 1, base_delay = 0.01},
      connect_timeout = 2, on_attempt = hook}
    assert.is_nil((c:get_call(SEED)))
    assert.are.equal(2, #records)
    assert.are.equal("transport", records[1].kind)
    assert.are.equal("connect", records[1].outcome)
    assert.are.equal("connect", records[1].reason)
    assert.is_nil(records[1].status)
    assert.is_nil(records[2].wait)
    assert.are.equal("127.0.0.1:1", records[1].host)
    c:close()
  end)

  it("a refused token: the refresh is the reason, no wait", function()
    local records, hook = recorder()
    local cred = {}
    function cred.get_token(_, o)
      if o and o.force_refresh then cred.fresh = true end
      return cred.fresh and emu.token or "refused-token-0123456789", os.time() + 3600
    end
    local c = acscall.new{endpoint = emu.endpoint, credential = cred, retries = FAST, on_attempt = hook}
    assert(c:get_call(SEED))
    assert.are.equal(2, #records)
    assert.are.equal(401, records[1].status)
    assert.are.equal("refresh", records[1].reason)
    assert.are.equal(0, records[1].wait)
    assert.are.equal(200, records[2].status)
    assert.is_nil(all_text(records):find("refused-token", 1, true))
    assert.is_nil(all_text(records):find(emu.token, 1, true))
    c:close()
  end)

  it("get_calls: one record per attempt of each id", function()
    local records, hook = recorder()
    local c = acscall.new{connection_string = emu.connection_string, retries = FAST, on_attempt = hook}
    local r = c:get_calls({"fault-503x2", SEED, "minimal"}, {concurrency = 3})
    for i = 1, 3 do assert.is_table(r[i].call, r[i].err) end
    local per = {}
    for _, rec in ipairs(records) do
      assert.are.equal("get_calls", rec.operation)
      assert.are.equal(host, rec.host)
      assert.matches(UUID, rec.client_request_id)
      per[rec.id] = per[rec.id] or {}
      table.insert(per[rec.id], rec)
    end
    assert.are.equal(3, #per["fault-503x2"])
    assert.are.equal(1, #per[SEED])
    assert.are.equal(1, #per.minimal)
    for i, rec in ipairs(per["fault-503x2"]) do
      assert.are.equal(i, rec.attempt)
      assert.are.equal(i < 3 and 503 or 200, rec.status)
      assert.are.equal(i < 3 and "status 503" or nil, rec.reason)
    end
    c:close()
  end)

  it("a token request (core.fetcher): operation \"token\", no id, no secret", function()
    local records, hook = recorder()
    local f = core.fetcher{retries = FAST, on_attempt = hook}
    local client_id = "app-fault-503x1-" .. tostring(math.random(1e9))
    local url = emu.imds_endpoint .. "/metadata/identity/oauth2/token?api-version=2018-02-01"
      .. "&resource=https%3A%2F%2Fcommunication.azure.com&client_id=" .. client_id
    local st, body = f:fetch{url = url, headers = {Metadata = "true"}}
    assert.are.equal(200, st)
    local token = assert(helpers.decode_json(body)).access_token
    assert.are.equal(2, #records)
    assert.are.equal("token", records[1].operation)
    assert.is_nil(records[1].id)
    assert.are.equal(503, records[1].status)
    assert.are.equal("retry-after", records[1].reason) -- the emulator sends Retry-After: 0
    assert.are.equal(200, records[2].status)
    -- a client secret posted in a form: not in any record either
    local f2 = core.fetcher{retries = FAST, on_attempt = hook}
    assert(f2:fetch{url = emu.authority_host .. "/tenant-x/oauth2/v2.0/token", form = {
      grant_type = "client_credentials", client_id = "app", client_secret = emu.client_secret,
      scope = "https://communication.azure.com//.default"}})
    local text = all_text(records)
    for _, secret in ipairs{token, emu.client_secret, emu.token, emu.access_key} do
      assert.is_nil(text:find(secret, 1, true), "a secret in a record")
    end
    f:close()
    f2:close()
  end)

  it("an error raised inside it never breaks the call: reported once, then ignored", function()
    local out = helpers.run_lua(([[
local acscall = require "acscall"
local n = 0
local c = acscall.new{connection_string = %q, retries = {max = 3, base_delay = 0.01},
  on_attempt = function(r) n = n + 1; error("hook failed on attempt " .. r.attempt) end}
for _ = 1, 2 do
  local call, err = c:get_call("fault-503x2")
  assert(call and call.callConnectionId == "fault-503x2", err)
end
local r = c:get_calls({"fault-503x2", "minimal"})
assert(r[1].call and r[2].call)
print("HOOK CALLS " .. n)
c:close()
]]):format(emu.connection_string))
    assert.matches("HOOK CALLS 10", out)
    local _, count = out:gsub("on_attempt raised an error", "")
    assert.are.equal(1, count, out)
    assert.matches("hook failed on attempt 1", out)
  end)

  it("records every secret in play nowhere (HMAC signing)", function()
    local records, hook = recorder()
    local c = acscall.new{connection_string = emu.connection_string, retries = FAST, on_attempt = hook}
    assert(c:get_call("fault-503x2"))
    local text = all_text(records)
    assert.is_nil(text:find(emu.access_key, 1, true))
    assert.is_nil(text:lower():find("signature", 1, true))
    assert.is_nil(text:lower():find("authorization", 1, true))
    c:close()
  end)

  it("is checked at new: a function or nothing", function()
    local ok, err = pcall(acscall.new, {connection_string = emu.connection_string, on_attempt = "print"})
    assert.is_false(ok)
    assert.matches("on_attempt", err)
  end)
end)
