-- client:get_calls: many ids concurrently over libcurl's multi interface,
-- results in input order, one failure never sinking the others.
local acscall = require "acscall"
local helpers = require "spec.helpers"
local socket = require "socket"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"

describe("client:get_calls", function()
  local emu
  lazy_setup(function() emu = helpers.start_emulator{latency = 50} end)
  lazy_teardown(function() if emu then emu:stop() end end)
  before_each(function() emu:clear_log() end)

  -- this spec's requests in the emulator's log: those for these ids (a
  -- request another spec abandoned, e.g. the mid-batch close below, may be
  -- logged late, after the log was cleared for this one)
  local function log_for(...)
    local want, out = {}, {}
    for _, id in ipairs{...} do want[id] = true end
    for _, r in ipairs(emu:log()) do
      if want[r.id] then out[#out + 1] = r end
    end
    return out
  end

  local function client(extra)
    local o = {connection_string = emu.connection_string, retries = {max = 3, base_delay = 0.01}}
    for k, v in pairs(extra or {}) do o[k] = v end
    return acscall.new(o)
  end

  it("returns every result in input order, mixing successes and failures", function()
    local c = client()
    local ids = {SEED, "state-connected", "no-such-call", "fault-503x2", "state-disconnected", "fault-malformed"}
    local results = c:get_calls(ids, {concurrency = 4})
    assert.are.equal(#ids, #results)
    for i, r in ipairs(results) do assert.are.equal(ids[i], r.id) end
    assert.are.equal(SEED, results[1].call.callConnectionId)
    assert.are.equal("connected", results[2].call.callConnectionState)
    assert.is_nil(results[3].call)
    assert.are.equal(404, results[3].info.status)
    assert.are.equal("8522", results[3].info.code)
    assert.matches("Call not found", results[3].err)
    assert.is_table(results[4].call, results[4].err)
    assert.are.equal("disconnected", results[5].call.callConnectionState)
    assert.are.equal("decode", results[6].info.kind)
    c:close()
  end)

  it("runs concurrently: 16 calls at 50 ms latency take far less than 0.8 s", function()
    local c = client()
    local ids = {}
    for i = 1, 16 do ids[i] = "id-phone-number" end
    local t0 = socket.gettime()
    local results = c:get_calls(ids, {concurrency = 8})
    local wall = socket.gettime() - t0
    for _, r in ipairs(results) do assert.is_table(r.call, r.err) end
    assert.is_true(wall < 0.4 * helpers.slow, "wall " .. wall)
    -- bounded: never more than 8 connections, and they are reused
    local conns = {}
    local log = log_for("id-phone-number")
    assert.are.equal(16, #log)
    for _, r in ipairs(log) do conns[r.connection] = true end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.is_true(n <= 8, n .. " connections")
    c:close()
  end)

  it("retries per id with one client request id, re-signed", function()
    local c = client()
    local results = c:get_calls({"fault-503x2", "fault-503x2"}, {concurrency = 2})
    assert.is_table(results[1].call, results[1].err)
    assert.is_table(results[2].call, results[2].err)
    local by = {}
    for _, r in ipairs(log_for("fault-503x2")) do
      local k = r.headers["x-ms-client-request-id"]
      by[k] = (by[k] or 0) + 1
      assert.are.equal("hmac", r.auth)
    end
    local counts = {}
    for _, v in pairs(by) do counts[#counts + 1] = v end
    assert.are.same({3, 3}, counts)
    c:close()
  end)

  it("reuses the batch connections across batches", function()
    local c = client()
    c:get_calls({SEED, SEED}, {concurrency = 2})
    c:get_calls({SEED, SEED}, {concurrency = 2})
    local log = log_for(SEED)
    assert.are.equal(4, #log)
    local conns = {}
    for _, r in ipairs(log) do conns[r.connection] = true end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.are.equal(2, n)
    c:close()
  end)

  it("handles an empty list, a token provider, and transport failures", function()
    local c = client()
    assert.are.same({}, c:get_calls({}))
    c:close()
    local calls = 0
    local p = acscall.new{endpoint = emu.endpoint, token_provider = function() calls = calls + 1; return emu.token end}
    local results = p:get_calls({SEED, SEED, SEED})
    for _, r in ipairs(results) do assert.is_table(r.call, r.err) end
    assert.are.equal(1, calls)
    p:close()
    local dead = acscall.new{endpoint = "http://127.0.0.1:1/", token = "t", retries = false}
    local r = dead:get_calls({"a", "b"})
    assert.are.equal("transport", r[1].info.kind)
    assert.are.equal("transport", r[2].info.kind)
    assert.are.equal("b", r[2].id)
    dead:close()
  end)

  it("a token provider that makes calls of its own does not disturb the batch", function()
    local c
    local busy = false
    c = acscall.new{endpoint = emu.endpoint, token_provider = function()
      if not busy then -- the inner calls ask the provider too
        busy = true
        local inner = c:get_calls({"state-connected", "state-connecting", "state-connected"})
        assert(inner[3].call, inner[3].err)
        assert(c:get_call("state-disconnected"))
        busy = false
      end
      return emu.token
    end}
    local results = c:get_calls({SEED, "no-such-call"}, {concurrency = 2})
    assert.are.equal(2, #results)
    assert.are.equal(SEED, results[1].call.callConnectionId)
    assert.are.equal(404, results[2].info.status)
    c:close()
  end)

  it("a failing token provider fails every id as an auth error", function()
    local c = acscall.new{endpoint = emu.endpoint, token_provider = function() error("vault down") end}
    local results = c:get_calls({SEED, SEED})
    assert.are.equal(2, #results)
    for i, r in ipairs(results) do
      assert.are.equal(SEED, r.id, i)
      assert.is_nil(r.call)
      assert.are.equal("auth", r.info.kind)
      assert.matches("^auth: token_provider", r.err)
    end
    c:close()
  end)

  it("a finalizer that closes the client mid-batch ends the batch cleanly", function()
    -- run as its own process: the collector settings must hold from the start
    local out, ok = helpers.run_lua(([[
      collectgarbage("setpause", 0); collectgarbage("setstepmul", 1000)
      local c = require("acscall").new{connection_string = %q}
      -- a wrapper whose finalizer closes the client, dropped while the client works
      do -- (Lua 5.1 and LuaJIT finalize only userdata: newproxy there)
        local function fin() c:close() end
        if newproxy then getmetatable(newproxy(true)).__gc = fin
        else setmetatable({}, {__gc = fin}) end
      end
      local ok, r = pcall(c.get_calls, c, {"minimal", "full", "large-200-targets", "state-connected"},
        {concurrency = 2})
      print(ok, ok and #r or r)
      print(tostring(c))
    ]]):format(emu.connection_string))
    assert.is_true(ok, out)
    assert.matches("^false\tacscall: closed client\n", out)
    assert.matches("acscall.client %(closed%)", out)
  end)

  it("ids changed by the token provider do not change the requests", function()
    local ids = {SEED, "state-connected", "state-disconnected"}
    local c = acscall.new{endpoint = emu.endpoint, token_provider = function()
      ids[2] = {}
      ids[3] = nil
      return emu.token
    end}
    local ok, err = pcall(c.get_calls, c, ids)
    -- the ids are checked after the provider ran: the changed table is refused
    assert.is_false(ok)
    assert.matches("call id must be a string", err)
    for _, r in ipairs(emu:log()) do assert.not_matches("callConnections/%?", r.uri) end
    c:close()
  end)

  it("does not spin while a retry waits for a busy slot", function()
    local c = client{retries = {max = 1, base_delay = 0.01}}
    local t0, c0 = socket.gettime(), os.clock()
    -- fault-503x2 retries quickly; the only slot is then busy with a slow call
    local results = c:get_calls({"fault-503x2", "state-connected"}, {concurrency = 1})
    local wall, cpu = socket.gettime() - t0, os.clock() - c0
    assert.are.equal(2, #results)
    -- 503 on both attempts (1 + max 1 retry), then the slot serves the other id
    assert.are.equal("fault-503x2", results[1].id)
    assert.is_nil(results[1].call)
    assert.are.equal("http", results[1].info.kind)
    assert.are.equal(503, results[1].info.status)
    assert.are.equal(2, results[1].info.attempts)
    assert.matches("^HTTP 503", results[1].err)
    assert.are.equal("state-connected", results[2].id)
    assert.are.equal("connected", results[2].call.callConnectionState, results[2].err)
    assert.are.equal(2, #log_for("fault-503x2"))
    assert.is_true(cpu < wall / 2 + 0.05, ("cpu %.2f s of wall %.2f s"):format(cpu, wall))
    c:close()
  end)

  it("raises for programmer mistakes", function()
    local c = client()
    assert.has_error(function() c:get_calls("x") end)
    assert.has_error(function() c:get_calls({"a", 42}) end)
    assert.has_error(function() c:get_calls({"a", ""}) end)
    assert.has_error(function() c:get_calls({"a"}, {concurrency = 0}) end)
    assert.has_error(function() c:get_calls({"a"}, {concurrency = 1.5}) end)
    assert.has_error(function() c:get_calls({"a"}, {concurrency = 0 / 0}) end)
    assert.has_error(function() c:get_calls({"a"}, {concurrency = 1e300}) end)
    c:close()
    assert.has_error(function() c:get_calls({"a"}) end)
  end)
end)
