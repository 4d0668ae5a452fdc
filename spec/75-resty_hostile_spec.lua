-- The event-loop path (capture_get_call, examples/openresty) against the
-- answers a hostile or broken service can give (spec/support/hostile_upstream.lua):
-- bodies of any size up to max_body, one over it, one without end, one
-- trickling a byte per 100 ms, a 103 before the 200, and an outage; each
-- answered as JSON within the deadline, with one error.log line per failed
-- call (none when asked for none). Needs build/luajit/acscall/core.so.
local helpers = require "spec.helpers"
local ngxh = require "spec.helpers_ngx"
local cjson = require "cjson.safe"

local SLOW = helpers.slow
local MAX_BODY = require("acscall.resty").DEFAULT_MAX_BODY

local function json_error(r)
  assert.matches("Content%-Type: application/json", r.raw or "")
  local body = assert(cjson.decode(r.body or ""), r.raw)
  return assert(body.error, r.body)
end

-- the worker's peak resident memory (kB), from /proc
local function worker_peak_kb(ex)
  local master = (helpers.read_file(ex.dir .. "/nginx.pid") or ""):match("%d+")
  local kids = helpers.run("pgrep -P " .. master)
  local peak = 0
  for pid in kids:gmatch("%d+") do
    local st = helpers.read_file("/proc/" .. pid .. "/status") or ""
    peak = math.max(peak, tonumber(st:match("VmHWM:%s*(%d+)")) or 0)
  end
  return peak
end

describe("event-loop path against hostile answers (one worker)", function()
  ngxh.require_luajit_core()

  local gw = ngxh.hostile_gateway("/calls/")
  local get = gw.get
  lazy_setup(gw.start)
  lazy_teardown(gw.stop)
  gw.size_cases(it)

  it("a body over max_body: 502 JSON of kind decode naming max_body, within the deadline", function()
    local r, took = get("size-" .. (MAX_BODY + 1))
    assert.are.equal(502, r.status, tostring(r.err))
    local err = json_error(r)
    assert.are.equal("decode", err.kind)
    assert.are.equal("decode: response body exceeds the max_body limit (" .. MAX_BODY .. " bytes)", err.message)
    assert.is_true(took < 2 * SLOW, string.format("took %.2f s", took))
  end)

  it("a body without end: the same failure within the deadline, the worker's memory bounded", function()
    local r, took = get("endless")
    assert.are.equal(502, r.status, tostring(r.err))
    assert.are.equal("decode", json_error(r).kind)
    assert.is_true(took < 2 * SLOW, string.format("took %.2f s", took))
    -- max_body (4 MiB) held once, plus the worker's own: far below what an
    -- endless body would reach in the same time
    local peak = worker_peak_kb(gw.ex)
    assert.is_true(peak > 0 and peak < 96 * 1024, "worker peak RSS " .. peak .. " kB")
    -- the worker is still there and serves the next call
    assert.are.equal(200, (get("size-1000")).status)
  end)

  it("a body trickling 1 byte / 100 ms: 504 JSON at the attempt's end, not the service's pace", function()
    local r, took = get("trickle-100")
    assert.are.equal(504, r.status, tostring(r.err))
    local err = json_error(r)
    assert.are.equal("transport", err.kind)
    assert.matches("still arriving at the attempt's end", err.message)
    -- the whole body would take 20 s; the attempt has 1 s, the deadline 2 s
    assert.is_true(took >= 0.9 and took < 2 * SLOW, string.format("took %.2f s", took))
  end)

  it("a 103 Early Hints before the 200: 502 JSON saying why, kind transport", function()
    local r = get("early103")
    assert.are.equal(502, r.status, tostring(r.err))
    local err = json_error(r)
    assert.are.equal("transport", err.kind)
    assert.are.equal("transport: the service sent an interim 1xx answer, which this nginx cannot relay", err.message)
  end)
end)

describe("event-loop path: an outage says what happened, once", function()
  ngxh.require_luajit_core()

  local started = {}
  lazy_teardown(function()
    for _, ex in ipairs(started) do ex:stop() end
  end)
  local function down(env)
    local ex = ngxh.start_example{ endpoint = "http://127.0.0.1:" .. ngxh.closed_port() .. "/", token = "t",
      env = env, args = { "--retries", "2", "--base-delay", "0.01" } }
    started[#started + 1] = ex
    return ex
  end
  -- error.log lines written after the start (nginx's own notices excluded)
  local function failure_lines(ex)
    local n = {}
    for line in ex:error_log():gmatch("[^\n]+") do
      if line:find("%[error%]") or line:find("%[warn%]") or line:find("acscall") then n[#n + 1] = line end
    end
    return n
  end

  it("connection refused: 502 JSON naming it, one error.log line for the call's 3 attempts", function()
    local ex = down()
    local r = ngxh.parallel_get(ex.port, { "/calls/a", "/calls/b" }, 20 * SLOW)
    for i = 1, 2 do
      assert.are.equal(502, r[i].status, tostring(r[i].raw))
      local err = json_error(r[i])
      assert.are.equal("transport", err.kind)
      assert.are.equal(3, err.attempts)
      assert.are.equal("transport: no connection to the service (connection refused or closed)", err.message)
    end
    local lines = failure_lines(ex)
    for _ = 1, 100 do
      if #lines >= 2 then break end
      helpers.sleep(0.02)
      lines = failure_lines(ex)
    end
    assert.are.equal(2, #lines, table.concat(lines, "\n"))
    assert.matches("acscall: call a: transport: no connection", table.concat(lines, "\n"))
  end)

  it("ACSCALL_LOG=off (capture_get_call's log = false): no line", function()
    local ex = down{ ACSCALL_LOG = "off" }
    local r = ngxh.parallel_get(ex.port, { "/calls/a" }, 20 * SLOW)
    assert.are.equal(502, r[1].status)
    helpers.sleep(0.1)
    assert.are.same({}, failure_lines(ex))
  end)
end)
