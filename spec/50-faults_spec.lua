-- Every fault the emulator can inject, and what the client makes of it:
-- success after N attempts (counted in the emulator's log) or nil, message,
-- info with the right kind, status and code, within a bounded wall time.
local acscall = require "acscall"
local helpers = require "spec.helpers"
local socket = require "socket"

-- the sample call of the Get Call REST page (emulator/fixtures/<it>.json)
local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"

-- fault scenarios, one fixture id each (a copy of the REST page's sample call SEED + a sidecar)
local SCENARIOS = {
  ["f-429-once"] = {fault = "429", retry_after = 1, times = 1},
  ["f-429-long"] = {fault = "429", retry_after = 30},
  ["f-429ms"] = {fault = "429ms", ms = 50, times = 2},
  ["f-429bare"] = {fault = "429bare", times = 1},
  ["f-503x2"] = {fault = "503", times = 2},
  ["f-503"] = {fault = "503"},
  ["f-500"] = {fault = "500"},
  ["f-502html"] = {fault = "502html"},
  ["f-stall"] = {fault = "stall", ms = 20000},
  ["f-truncate"] = {fault = "truncate"},
  ["f-truncate-once"] = {fault = "truncate", times = 1},
  ["f-reset"] = {fault = "reset"},
  ["f-malformed"] = {fault = "malformed"},
  ["f-array"] = {fault = "array"},
  ["f-empty"] = {fault = "empty"},
  ["f-oversized"] = {fault = "oversized"},
  ["f-deep"] = {fault = "deep"},
  ["f-redirect"] = {fault = "redirect"},
  ["f-wrongtypes"] = {fault = "wrongtypes"},
}

describe("faults", function()
  local emu

  lazy_setup(function() emu = helpers.start_emulator{scenarios = SCENARIOS} end)
  lazy_teardown(function() if emu then emu:stop() end end)

  -- fast retries, so the suite stays quick; overridable per test
  local function client(opts)
    local o = {connection_string = emu.connection_string, retries = {max = 3, base_delay = 0.01, max_delay = 0.05},
      timeout = 5, connect_timeout = 2}
    for k, v in pairs(opts or {}) do o[k] = v end
    return acscall.new(o)
  end

  local function timed(c, id)
    local t0 = socket.gettime()
    local call, msg, info = c:get_call(id)
    return socket.gettime() - t0, call, msg, info
  end

  local function requests_for(id)
    local n = 0
    for _, r in ipairs(emu:log()) do
      if r.id == id then n = n + 1 end
    end
    return n
  end

  before_each(function() emu:clear_log() end)

  -- The one real Retry-After wait end to end (slow set: a whole second, the
  -- header's unit); the arithmetic is checked instantly below.
  it("429 with Retry-After (seconds): waits that long, re-signs, succeeds on attempt 2 #slow", function()
    local c = client()
    local wall, call, msg = timed(c, "f-429-once")
    assert.is_table(call, msg)
    assert.are.equal(SEED, call.callConnectionId)
    assert.is_true(wall >= 0.9 and wall < 1 + 2 * helpers.slow, "wall " .. wall)
    local log = emu:log()
    assert.are.equal(2, #log)
    assert.are.equal(429, log[1].status)
    assert.are.equal(200, log[2].status)
    assert.are.equal(log[1].headers["x-ms-client-request-id"], log[2].headers["x-ms-client-request-id"])
    assert.are_not.equal(log[1].headers["x-ms-date"], log[2].headers["x-ms-date"])
    assert.are.equal("hmac", log[2].auth)
    c:close()
  end)

  it("429 with Retry-After (seconds): the rule waits exactly that long (client:next_attempt)", function()
    local c = client{deadline = 90}
    for _, secs in ipairs{0, 1, 7, 60} do
      assert.are.equal(secs, (c:next_attempt(1, 0, 429, {["Retry-After"] = tostring(secs)})))
    end
    -- any case; the first attempt's 429 after 0.5 s, a wait that ends inside the deadline
    assert.are.equal(2, (c:next_attempt(1, 0.5, 429, {["retry-after"] = "2"})))
    c:close()
  end)

  it("429 with retry-after-ms: succeeds on attempt 3", function()
    local c = client()
    local wall, call, msg = timed(c, "f-429ms")
    assert.is_table(call, msg)
    assert.are.equal(3, requests_for("f-429ms"))
    assert.is_true(wall >= 0.09 and wall < 0.1 + 2 * helpers.slow, "wall " .. wall)
    c:close()
  end)

  it("429 without a retry header: retried with backoff", function()
    local c = client()
    local _, call, msg = timed(c, "f-429bare")
    assert.is_table(call, msg)
    assert.are.equal(2, requests_for("f-429bare"))
    c:close()
  end)

  it("a server wait beyond the deadline is not taken: the 429 comes back at once", function()
    local c = client{deadline = 2}
    local wall, call, msg, info = timed(c, "f-429-long")
    assert.is_nil(call)
    assert.are.equal("http", info.kind)
    assert.are.equal(429, info.status)
    assert.are.equal(1, info.attempts)
    assert.matches("^HTTP 429", msg)
    assert.is_true(wall < helpers.slow, "wall " .. wall)
    c:close()
  end)

  it("503 twice then success: 3 attempts, one client request id", function()
    local c = client()
    local _, call, msg = timed(c, "f-503x2")
    assert.is_table(call, msg)
    local log = emu:log()
    assert.are.equal(3, #log)
    assert.are.equal(log[1].headers["x-ms-client-request-id"], log[3].headers["x-ms-client-request-id"])
    c:close()
  end)

  it("503 forever: gives up after 1 + max retries with the last status", function()
    local c = client{retries = {max = 2, base_delay = 0.01}}
    local _, call, _, info = timed(c, "f-503")
    assert.is_nil(call)
    assert.are.equal("http", info.kind)
    assert.are.equal(503, info.status)
    assert.are.equal(3, info.attempts)
    assert.are.equal(3, requests_for("f-503"))
    c:close()
  end)

  it("retries = false makes exactly one attempt", function()
    local c = client{retries = false}
    local _, call, _, info = timed(c, "f-503")
    assert.is_nil(call)
    assert.are.equal(1, info.attempts)
    assert.are.equal(1, requests_for("f-503"))
    c:close()
  end)

  it("500: retried, then reported with the service code", function()
    local c = client{retries = {max = 1, base_delay = 0.01}}
    local _, call, msg, info = timed(c, "f-500")
    assert.is_nil(call)
    assert.are.equal(500, info.status)
    assert.are.equal("InternalServerError", info.code)
    assert.are.equal(2, info.attempts)
    assert.matches("^HTTP 500", msg)
    c:close()
  end)

  it("502 with an HTML body: status and a readable one-line message", function()
    local c = client{retries = false}
    local _, call, msg, info = timed(c, "f-502html")
    assert.is_nil(call)
    assert.are.equal("http", info.kind)
    assert.are.equal(502, info.status)
    assert.is_nil(info.code)
    assert.matches("^HTTP 502", msg)
    assert.matches("Bad Gateway", msg)
    assert.not_matches("[\r\n<>]", msg)
    c:close()
  end)

  -- Run a Lua snippet (with a client `c`) in its own interpreter; once the
  -- emulator has logged `requests` requests and the process sleeps in its
  -- wait, send it one SIGINT (as Ctrl-C does, to it alone). Returns its
  -- output and the seconds from the signal to its exit.
  local function interrupt(snippet, requests)
    local p = helpers.spawn_lua(
      ("local c = require('acscall').new{connection_string = %q, deadline = 60}\n")
        :format(emu.connection_string) .. snippet .. "\nprint('not interrupted')\n")
    local ready = helpers.wait_until(function() return #emu:log() >= requests and p:waiting() end, 15)
    local rc, wall = p:interrupt(30)
    local out, err = p:output()
    p:cleanup()
    assert.is_true(ready, "never in its wait: " .. #emu:log() .. " requests logged; " .. out .. err)
    assert.is_number(rc, "still running 30 s after the signal")
    return out .. err, wall
  end

  for what, case in pairs{
    -- the server says: retry after 30 s; with 2 slots the third id waits for one
    ["a retry wait (get_call)"] = {'c:get_call("f-429-long")', 1},
    ["a stalled transfer (get_call)"] = {'c:get_call("f-stall")', 1},
    ["a retry wait (get_calls)"] = {'c:get_calls({"f-429-long", "f-429-long", "' .. SEED .. '"}, {concurrency = 2})', 2},
    ["a stalled transfer (get_calls)"] = {'c:get_calls({"f-stall", "f-stall"})', 2},
  } do
    it("Ctrl-C during " .. what .. " ends it at once", function()
      local out, wall = interrupt(case[1], case[2])
      assert.matches("interrupted", out)
      assert.not_matches("not interrupted", out)
      assert.is_true(wall < 3 * helpers.slow, "wall " .. wall)
    end)
  end

  it("a stalled server cannot hang the caller: per-attempt timeout", function()
    local c = client{timeout = 0.2, retries = false}
    local wall, call, msg, info = timed(c, "f-stall")
    assert.is_nil(call)
    assert.are.equal("transport", info.kind)
    assert.is_true(info.timeout)
    assert.matches("^transport: ", msg)
    assert.is_true(wall >= 0.15 and wall < 0.2 + 1.5 * helpers.slow, "wall " .. wall)
    c:close()
  end)

  it("a stalled server cannot hang the caller: the deadline bounds the retries", function()
    local c = client{timeout = 5, deadline = 0.4}
    local wall, call, _, info = timed(c, "f-stall")
    assert.is_nil(call)
    assert.are.equal("transport", info.kind)
    assert.is_true(wall >= 0.35 and wall < 0.4 + 1.5 * helpers.slow, "wall " .. wall)
    c:close()
  end)

  it("a truncated body is a transport failure, retried", function()
    local c = client{retries = false}
    local _, call, _, info = timed(c, "f-truncate")
    assert.is_nil(call)
    assert.are.equal("transport", info.kind)
    local c2 = client()
    local _, call2, msg2 = timed(c2, "f-truncate-once")
    assert.is_table(call2, msg2)
    assert.are.equal(2, requests_for("f-truncate-once"))
    c:close()
    c2:close()
  end)

  it("a connection closed without a response is a transport failure, retried", function()
    local c = client{retries = {max = 1, base_delay = 0.01}}
    local _, call, _, info = timed(c, "f-reset")
    assert.is_nil(call)
    assert.are.equal("transport", info.kind)
    assert.is_nil(info.timeout)
    assert.are.equal(2, info.attempts)
    c:close()
  end)

  for id, pattern in pairs{
    ["f-malformed"] = "^decode: invalid JSON",
    ["f-array"] = "^decode: expected a JSON object, got array",
    ["f-empty"] = "^decode: response body is empty",
    ["f-deep"] = "^decode: ",
    ["f-wrongtypes"] = "^decode: callConnectionId: expected string, got number",
    ["f-oversized"] = "^decode: .*max_body",
  } do
    it("a bad 200 body is a decode error, not retried (" .. id .. ")", function()
      -- a wrong-typed field fails the call only when asked to (strict)
      local c = client(id == "f-wrongtypes" and {strict = true} or nil)
      local _, call, msg, info = timed(c, id)
      assert.is_nil(call)
      assert.are.equal("decode", info.kind)
      assert.are.equal(200, info.status)
      assert.are.equal(1, info.attempts)
      assert.matches(pattern, msg)
      assert.are.equal(1, requests_for(id))
      c:close()
    end)
  end

  it("a redirect is never followed", function()
    local c = client()
    local _, call, msg, info = timed(c, "f-redirect")
    assert.is_nil(call)
    assert.are.equal("http", info.kind)
    assert.are.equal(302, info.status)
    assert.matches("^HTTP 302", msg)
    for _, r in ipairs(emu:log()) do
      assert.not_matches("redirected", r.uri)
    end
    c:close()
  end)

  it("401 and 404 are never retried", function()
    local c = acscall.new{endpoint = emu.endpoint, token = "bad", retries = {max = 3, base_delay = 0.01}}
    local _, _, _, info = timed(c, SEED)
    assert.are.equal(401, info.status)
    assert.are.equal(1, info.attempts)
    local c2 = client()
    local _, _, _, info2 = timed(c2, "no-such-call")
    assert.are.equal(404, info2.status)
    assert.are.equal(1, info2.attempts)
    assert.are.equal(1, requests_for("no-such-call"))
    c:close()
    c2:close()
  end)

  it("max_depth bounds JSON nesting per client", function()
    local shallow = client{max_depth = 4}
    assert.is_table((shallow:get_call(SEED))) -- the model needs 4 levels
    -- targets[3].extra.nested[3] is 6 levels deep
    local _, call, msg, info = timed(shallow, "unknown-fields")
    assert.is_nil(call)
    assert.are.equal("decode", info.kind)
    assert.matches("^decode: invalid JSON", msg)
    local deep = client{max_depth = 8}
    assert.is_table((deep:get_call("unknown-fields")))
    -- the module default (64) is untouched by another client's setting
    assert.is_table((client():get_call("unknown-fields")))
    assert.has_error(function() client{max_depth = 2} end)
    assert.has_error(function() client{max_depth = 4.5} end)
    assert.has_error(function() client{max_depth = 0 / 0} end)
    assert.has_error(function() client{max_depth = 1e300} end)
    shallow:close()
    deep:close()
  end)

  it("a small max_body is enforced on ordinary calls too", function()
    local c = client{max_body = 1024}
    local _, call, msg, info = timed(c, "large-200-targets")
    assert.is_nil(call)
    assert.are.equal("decode", info.kind)
    assert.matches("max_body", msg)
    c:close()
  end)
end)
