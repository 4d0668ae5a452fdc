-- The proxy-first path (acscall.resty.proxy_access, proxy_header_filter,
-- proxy_body_filter, proxy_retry with acscall/nginx/acscall_proxy_first.conf)
-- in real nginx: the example's /first/calls/ on one worker against the
-- emulator and against hostile answers (spec/support/hostile_upstream.lua),
-- and docs/openresty.md's "Proxy-first" nginx.conf as written. The first
-- attempt is the location's own proxy_pass; retried outcomes go on in
-- @acscall_retry through the core's verdict. Needs build/luajit/acscall/core.so.
local helpers = require "spec.helpers"
local ngxh = require "spec.helpers_ngx"
local cjson = require "cjson.safe"
local acscall = require "acscall"

local CALL = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local SLOW = helpers.slow
local MAX_BODY = require("acscall.resty").DEFAULT_MAX_BODY

local function json_error(r)
  assert.matches("Content%-Type: application/json", r.raw or "")
  local body = assert(cjson.decode(r.body or ""), r.raw)
  return assert(body.error, r.body)
end

-- acscall.decode's table as it reads back from JSON
local function as_json(t)
  local text = require("cjson").new().encode(t)
  return cjson.decode(text)
end

-- an answer no HTTP/1.1 client takes for a complete one: no status line, or
-- a chunked body without its last chunk (parallel_get's body is then nil)
local function unfinished(r)
  return r.status == nil or (r.body == nil and r.raw:lower():find("\ntransfer%-encoding: chunked\r\n") ~= nil)
end

-- acscall's lines in error.log, waiting a little for them
local function acscall_lines(ex, want)
  local lines
  for _ = 1, 100 do
    lines = {}
    for line in ex:error_log():gmatch("[^\n]+") do
      if line:find("acscall: ", 1, true) then lines[#lines + 1] = line end
    end
    if #lines >= (want or 1) then break end
    helpers.sleep(0.02)
  end
  return lines
end

describe("proxy-first path against the emulator (one worker)", function()
  ngxh.require_luajit_core()

  local emu, ex
  lazy_setup(function()
    emu = helpers.start_emulator()
    ex = ngxh.start_example{ connection_string = emu.connection_string,
      args = { "--retries", "3", "--base-delay", "0.05" } }
  end)
  lazy_teardown(function()
    if ex then ex:stop() end
    if emu then emu:stop() end
  end)

  local function get(path)
    return ngxh.parallel_get(ex.port, { path }, 30 * SLOW)[1]
  end

  it("answers a 200 as the call's JSON, equal to acscall.decode of the body, in one attempt", function()
    emu:clear_log()
    local r = get("/first/calls/" .. CALL)
    assert.are.equal(200, r.status, tostring(r.raw) .. ex:error_log())
    assert.matches("Content%-Type: application/json", r.raw)
    local body = assert(helpers.read_file(helpers.fixtures_dir() .. "/" .. CALL .. ".json"))
    assert.are.same(as_json(assert(acscall.decode(200, body))), assert(cjson.decode(r.body), r.body))
    local log = ngxh.log_for(emu, CALL)
    assert.are.equal(1, #log)
    assert.are.equal("hmac", log[1].auth)
    assert.are.equal("GET", log[1].method)
    local names = {}
    for k in pairs(log[1].headers) do names[#names + 1] = k end
    table.sort(names)
    -- only the signed headers: the client's own never reach the service
    assert.are.same({ "accept", "authorization", "host", "user-agent", "x-ms-client-request-id",
      "x-ms-content-sha256", "x-ms-date" }, names)
  end)

  it("answers the same text as the event-loop path for every identifier kind", function()
    for _, id in ipairs{ CALL, "identifiers-all", "identifiers-no-rawid-no-kind", "full", "nulls" } do
      local a, b = get("/first/calls/" .. id), get("/calls/" .. id)
      assert.are.equal(200, a.status, id .. ": " .. tostring(a.raw))
      assert.are.equal(b.body, a.body, id)
    end
  end)

  it("answers a 404 (not retried) with the failure JSON and the service's code", function()
    local r = get("/first/calls/no-such-call")
    assert.are.equal(404, r.status, r.raw)
    local err = json_error(r)
    assert.are.equal("http", err.kind)
    assert.are.equal(404, err.status)
    assert.are.equal("8522", err.code)
    assert.are.equal(1, err.attempts)
    assert.is_string(err.client_request_id)
    assert.is_string(err.request_id)
  end)

  it("retries 503, 503 in @acscall_retry with the same client request id, then answers the 200", function()
    emu:clear_log()
    local r = get("/first/calls/fault-503x2")
    assert.are.equal(200, r.status, tostring(r.raw) .. ex:error_log())
    assert.are.equal("fault-503x2", assert(cjson.decode(r.body), r.body).callConnectionId)
    local log = ngxh.log_for(emu, "fault-503x2")
    assert.are.same({ 503, 503, 200 }, { log[1].status, log[2] and log[2].status, log[3] and log[3].status })
    local crid = log[1].headers["x-ms-client-request-id"]
    for i = 2, 3 do assert.are.equal(crid, log[i].headers["x-ms-client-request-id"]) end
  end)

  it("a 200 whose body is not a call: the connection ends unfinished, one error.log line says why", function()
    local before = #acscall_lines(ex, 0)
    local r = get("/first/calls/fault-malformed")
    assert.is_true(unfinished(r), "a complete answer: " .. tostring(r.raw))
    local lines = acscall_lines(ex, before + 1)
    assert.are.equal(before + 1, #lines)
    assert.matches("acscall: call fault%-malformed: decode: invalid JSON", lines[#lines])
    -- the worker goes on
    assert.are.equal(200, get("/first/calls/" .. CALL).status)
  end)

  it("answers HEAD from a GET (headers only) and refuses other methods with 405 JSON", function()
    emu:clear_log()
    local socket = require "socket"
    local c = assert(socket.connect("127.0.0.1", ex.port))
    c:settimeout(10 * SLOW)
    c:send("HEAD /first/calls/" .. CALL .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local raw = c:receive("*a")
    c:close()
    assert.matches("^HTTP/1%.1 200", raw)
    assert.matches("\r\n\r\n$", raw)
    assert.are.equal("GET", ngxh.log_for(emu, CALL)[1].method)
    c = assert(socket.connect("127.0.0.1", ex.port))
    c:settimeout(10 * SLOW)
    c:send("POST /first/calls/" .. CALL .. " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    raw = c:receive("*a")
    c:close()
    assert.matches("^HTTP/1%.1 405", raw)
    assert.matches('"kind":"request"', raw)
  end)

  it("a refused key (401): 502 JSON with the service's status and code", function()
    local bad = ngxh.start_example{ connection_string = emu.connection_string:gsub("accesskey=[^;]*",
      "accesskey=" .. ("QUFB"):rep(11)), args = { "--retries", "0" } }
    local r = ngxh.parallel_get(bad.port, { "/first/calls/" .. CALL }, 20 * SLOW)[1]
    bad:stop()
    assert.are.equal(502, r.status, tostring(r.raw))
    local err = json_error(r)
    assert.are.equal("http", err.kind)
    assert.are.equal(401, err.status)
    assert.is_string(err.code)
    assert.not_matches("WWW%-Authenticate", r.raw)
  end)
end)

describe("proxy-first path against hostile answers (one worker)", function()
  ngxh.require_luajit_core()

  local gw = ngxh.hostile_gateway("/first/calls/")
  local get = gw.get
  lazy_setup(gw.start)
  lazy_teardown(gw.stop)
  gw.size_cases(it)

  it("a Content-Length over max_body: 502 JSON of kind decode naming max_body", function()
    local r = get("size-" .. (MAX_BODY + 1))
    assert.are.equal(502, r.status, tostring(r.err))
    local err = json_error(r)
    assert.are.equal("decode", err.kind)
    assert.are.equal("decode: response body exceeds the max_body limit (" .. MAX_BODY .. " bytes)", err.message)
  end)

  it("a body without end: the connection ends unfinished within the deadline, memory bounded", function()
    local r, took = get("endless")
    assert.is_true(unfinished(r), "a complete answer: " .. tostring(r.raw):sub(1, 300))
    assert.is_true(took < 2 * SLOW, string.format("took %.2f s", took))
    assert.matches("acscall: call endless: decode: response body exceeds the max_body limit",
      table.concat(acscall_lines(gw.ex), "\n"))
    assert.are.equal(200, (get("size-1000")).status)
  end)

  it("a body trickling 1 byte / 100 ms: ends at the attempt's end, not the service's pace", function()
    local r, took = get("trickle-100")
    assert.is_true(unfinished(r), "a complete answer: " .. tostring(r.raw))
    -- the whole body would take 20 s; the attempt has 1 s
    assert.is_true(took >= 0.9 and took < 2 * SLOW, string.format("took %.2f s", took))
    assert.matches("acscall: call trickle%-100: transport: the service's answer was still arriving",
      table.concat(acscall_lines(gw.ex), "\n"))
  end)

  it("a 103 Early Hints before the 200: 502 JSON saying why, kind transport", function()
    local r = get("early103")
    assert.are.equal(502, r.status, tostring(r.err))
    local err = json_error(r)
    assert.are.equal("transport", err.kind)
    assert.are.equal("transport: the service sent an interim 1xx answer, which this nginx cannot relay", err.message)
  end)
end)

describe("proxy-first path: an outage goes through the core's retries, one line", function()
  ngxh.require_luajit_core()

  it("connection refused: 502 JSON naming it after 3 attempts, one error.log line", function()
    local ex = ngxh.start_example{ endpoint = "http://127.0.0.1:" .. ngxh.closed_port() .. "/", token = "t",
      args = { "--retries", "2", "--base-delay", "0.01" } }
    local r = ngxh.parallel_get(ex.port, { "/first/calls/a" }, 20 * SLOW)[1]
    local lines = acscall_lines(ex)
    local log = ex:error_log()
    ex:stop()
    assert.are.equal(502, r.status, tostring(r.raw))
    local err = json_error(r)
    assert.are.equal("transport", err.kind)
    assert.are.equal(3, err.attempts)
    assert.are.equal("transport: no connection to the service (connection refused or closed)", err.message)
    assert.are.equal(1, #lines, log)
    assert.not_matches("stack traceback", log)
  end)
end)

-- docs/openresty.md's "Proxy-first" block runs as written (ngxh.doc_conf's
-- convention: paths from a LuaRocks tree pointed at this checkout, the
-- upstream at the emulator, the listen at a free port).
describe("docs/openresty.md: the proxy-first nginx.conf (nginx-proxy-first)", function()
  ngxh.require_luajit_core()

  local emu, nginx
  lazy_setup(function()
    emu = helpers.start_emulator()
    nginx = ngxh.start_doc_nginx("nginx-proxy-first", emu)
  end)
  lazy_teardown(function()
    if nginx then nginx:stop() end
    if emu then emu:stop() end
  end)

  it("answers a call with 200 and its JSON", function()
    local r = ngxh.parallel_get(nginx.port, { "/calls/" .. CALL })[1]
    assert.are.equal(200, r.status, tostring(r.raw) .. nginx:error_log())
    assert.are.equal(CALL, assert(cjson.decode(r.body)).callConnectionId)
  end)

  it("answers an unknown id with a 404 JSON error", function()
    local r = ngxh.parallel_get(nginx.port, { "/calls/no-such-call" })[1]
    assert.are.equal(404, r.status, tostring(r.raw))
    assert.are.equal("http", json_error(r).kind)
  end)

  it("retries a 503 through @acscall_retry and answers the 200 (the client's real backoff) #slow", function()
    emu:clear_log()
    local r = ngxh.parallel_get(nginx.port, { "/calls/fault-503x2" }, 30 * SLOW)[1]
    assert.are.equal(200, r.status, tostring(r.raw) .. nginx:error_log())
    local log = ngxh.log_for(emu, "fault-503x2")
    assert.are.same({ 503, 503, 200 }, { log[1].status, log[2] and log[2].status, log[3] and log[3].status })
  end)
end)
