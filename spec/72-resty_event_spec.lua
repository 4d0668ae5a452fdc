-- The event-loop path (acscall.resty.capture_get_call) in real nginx: the
-- example's /calls/ on one worker, against the emulator. Concurrency without
-- threads, a responsive worker, and the faults: service down, too slow, 429
-- with Retry-After, the gateway's own credential refused. Bounds are
-- generous (a loaded 2-core machine): they tell overlap from serialisation,
-- not fast from slow. Needs build/luajit/acscall/core.so; pending without it.
local helpers = require "spec.helpers"
local ngxh = require "spec.helpers_ngx"
local cjson = require "cjson.safe"

local CALL = "18dea47f-b081-4107-9a5c-4300819d2c6c"

local function many(path, n)
  local t = {}
  for i = 1, n do t[i] = path .. "?n=" .. i end
  return t
end

local function json_error(r)
  assert.matches("Content%-Type: application/json", r.raw or "")
  local body = assert(cjson.decode(r.body or ""), r.raw)
  return assert(body.error, r.body)
end

describe("event-loop path (capture_get_call in nginx, one worker)", function()
  ngxh.require_luajit_core()

  local fixtures, emu
  local started = {}
  local function example(opts)
    local ex = ngxh.start_example(opts)
    started[#started + 1] = ex
    return ex
  end
  lazy_setup(function()
    fixtures = ngxh.fixtures_with{
      slow = '{"fault":"latency","ms":400}',
      ["too-slow"] = '{"fault":"latency","ms":1500}',
      ["r429"] = '{"fault":"429ms","times":2,"ms":150}',
      ["bad502"] = '{"fault":"502html"}',
    }
    emu = helpers.start_emulator{ latency = 50, fixtures = fixtures }
  end)
  lazy_teardown(function()
    for _, ex in ipairs(started) do ex:stop() end
    if emu then emu:stop() end
    if fixtures then helpers.run("rm -rf " .. helpers.shell_quote(fixtures)) end
  end)

  describe("against a healthy service", function()
    local ex
    lazy_setup(function()
      ex = example{ connection_string = emu.connection_string }
    end)

    it("serves GET /calls/{id} as JSON, sending only the signed headers", function()
      emu:clear_log()
      local res = ngxh.parallel_get(ex.port, { "/calls/" .. CALL })
      assert.are.equal(200, res[1].status, ex:error_log())
      local call = assert(cjson.decode(res[1].body))
      assert.are.equal(CALL, call.callConnectionId)
      assert.are.equal("4:+14250123456", call.targets[2].rawId)
      local e = emu:last_request()
      assert.are.equal("hmac", e.auth)
      local names = {}
      for k in pairs(e.headers) do names[#names + 1] = k end
      table.sort(names)
      -- the client's own headers (connection: close, ...) are not forwarded
      assert.are.same({ "accept", "authorization", "host", "user-agent", "x-ms-client-request-id",
        "x-ms-content-sha256", "x-ms-date" }, names)
    end)

    it("runs 200 concurrent fetches at 50 ms latency on the event loop, all 200", function()
      ngxh.parallel_get(ex.port, many("/calls/" .. CALL, 20)) -- warm the keep-alive pool
      local paths = many("/calls/" .. CALL, 200)
      for i = 1, 3 do paths[#paths + 1] = "/health?probe=" .. i end -- a trivial location, same worker
      local res, took = ngxh.parallel_get(ex.port, paths, 30)
      for i = 1, 200 do
        assert.are.equal(200, res[i].status, "request " .. i .. ": " .. tostring(res[i].err or res[i].raw))
        assert.are.equal(CALL, assert(cjson.decode(res[i].body)).callConnectionId)
      end
      for i = 201, 203 do
        assert.are.equal(200, res[i].status)
        assert.is_true(res[i].t < 1 * helpers.slow, string.format("/health took %.2f s", res[i].t))
      end
      -- one at a time would take 200 x 50 ms = 10 s
      assert.is_true(took < 4 * helpers.slow, string.format("took %.2f s", took))
    end)

    it("keeps the worker responsive while fetches wait on a slow service", function()
      local paths = many("/calls/slow", 50)
      for i = 1, 5 do paths[#paths + 1] = "/health?probe=" .. i end
      local res = ngxh.parallel_get(ex.port, paths, 30)
      for i = 1, 50 do
        assert.are.equal(200, res[i].status, tostring(res[i].raw))
        assert.is_true(res[i].t >= 0.38, "a slow fetch answered in " .. res[i].t .. " s")
      end
      for i = 51, 55 do
        assert.are.equal(200, res[i].status)
        -- the slow fetches take 0.4 s; the worker answers meanwhile
        assert.is_true(res[i].t < 0.3 * helpers.slow, string.format("/health took %.2f s", res[i].t))
      end
    end)

    it("retries a 429 after its retry-after-ms, with one client request id (emulator log)", function()
      emu:clear_log()
      local t0 = helpers.now()
      local res = ngxh.parallel_get(ex.port, { "/calls/r429" }, 30)
      local took = helpers.now() - t0
      assert.are.equal(200, res[1].status, res[1].raw)
      local log = ngxh.log_for(emu, "r429")
      assert.are.equal(3, #log)
      assert.are.same({ 429, 429, 200 }, { log[1].status, log[2].status, log[3].status })
      local crid = log[1].headers["x-ms-client-request-id"]
      for i = 2, 3 do assert.are.equal(crid, log[i].headers["x-ms-client-request-id"]) end
      assert.is_true(log[2].time - log[1].time >= 0.14, "waited the retry-after-ms (150 ms)")
      assert.is_true(took >= 0.29, string.format("took %.2f s", took))
    end)

    it("answers the service's own errors with its status", function()
      local res = ngxh.parallel_get(ex.port, { "/calls/no-such-call" })
      assert.are.equal(404, res[1].status)
      local err = json_error(res[1])
      assert.are.equal("http", err.kind)
      assert.are.equal("8522", err.code)
      assert.are.equal(1, err.attempts)
    end)
  end)

  describe("over TLS (verification always on)", function()
    local tls_emu
    lazy_setup(function()
      tls_emu = helpers.start_emulator{ tls = true }
    end)
    lazy_teardown(function()
      if tls_emu then tls_emu:stop() end
    end)

    it("verifies the service's certificate against proxy_ssl_trusted_certificate", function()
      -- by name: nginx 1.22 matches DNS names only (the emulator's cert has DNS:localhost)
      local cs = tls_emu.connection_string:gsub("127%.0%.0%.1", "localhost")
      local ex = example{ connection_string = cs, ca_file = tls_emu.ca_file }
      local res = ngxh.parallel_get(ex.port, { "/calls/" .. CALL }, 30)
      assert.are.equal(200, res[1].status, res[1].raw .. ex:error_log())
      assert.are.equal(CALL, assert(cjson.decode(res[1].body)).callConnectionId)
    end)

    it("refuses a certificate the trusted CAs did not sign: 502 JSON", function()
      local cs = tls_emu.connection_string:gsub("127%.0%.0%.1", "localhost")
      -- the system CAs (the example's default) do not include the emulator's CA
      local ex = example{ connection_string = cs, args = { "--retries", "0" } }
      tls_emu:clear_log()
      local res = ngxh.parallel_get(ex.port, { "/calls/" .. CALL }, 30)
      assert.are.equal(502, res[1].status, res[1].raw)
      local err = json_error(res[1])
      assert.are.equal("transport", err.kind)
      assert.are.equal("transport: no connection to the service (connection refused, or the TLS handshake"
        .. " or certificate check failed)", err.message)
      assert.are.equal(0, #tls_emu:log())
    end)
  end)

  describe("faults", function()
    it("service down: 502 JSON after the retries", function()
      local port = ngxh.closed_port()
      local ex = example{ endpoint = "http://127.0.0.1:" .. port .. "/", token = "t",
        args = { "--retries", "2", "--base-delay", "0.05" } }
      local res = ngxh.parallel_get(ex.port, { "/calls/" .. CALL }, 30)
      assert.are.equal(502, res[1].status, res[1].raw)
      local err = json_error(res[1])
      assert.are.equal("transport", err.kind)
      assert.are.equal(3, err.attempts)
      assert.is_string(err.client_request_id)
      assert.not_matches("stack traceback", ex:error_log())
    end)

    it("slower than the attempt timeout: 504 JSON, each attempt cut at its timeout", function()
      emu:clear_log()
      local ex = example{ connection_string = emu.connection_string,
        args = { "--timeout", "0.25", "--deadline", "1.5", "--retries", "1", "--base-delay", "0.05" } }
      local t0 = helpers.now()
      local res = ngxh.parallel_get(ex.port, { "/calls/too-slow" }, 30)
      local took = helpers.now() - t0
      assert.are.equal(504, res[1].status, res[1].raw)
      local err = json_error(res[1])
      assert.are.equal("transport", err.kind)
      -- two attempts within the deadline: the first was cut at 0.25 s, not at the service's 1.5 s
      assert.are.equal(2, err.attempts)
      assert.is_true(took < 1.5 * helpers.slow, string.format("took %.2f s (deadline 1.5 s; the service takes 1.5 s)", took))
      -- the emulator logs an abandoned request when it sees the gateway close the
      -- connection: the second one may land a moment after the gateway's 504
      local logged = #ngxh.log_for(emu, "too-slow")
      for _ = 1, 200 do
        if logged >= 2 then break end
        helpers.sleep(0.01)
        logged = #ngxh.log_for(emu, "too-slow")
      end
      assert.are.equal(2, logged)
    end)

    it("the service's own 502 is an HTTP answer (kind http), not a transport failure", function()
      emu:clear_log()
      local ex = example{ connection_string = emu.connection_string,
        args = { "--retries", "1", "--base-delay", "0.05" } }
      local res = ngxh.parallel_get(ex.port, { "/calls/bad502" }, 30)
      assert.are.equal(502, res[1].status, res[1].raw)
      local err = json_error(res[1])
      assert.are.equal("http", err.kind)
      assert.are.equal(502, err.status)
      assert.are.equal(2, err.attempts)
      assert.are.equal(2, #ngxh.log_for(emu, "bad502"))
    end)

    it("the gateway's credential refused (401): 502 JSON, not retried", function()
      emu:clear_log()
      local bad = "endpoint=" .. emu.endpoint .. ";accesskey=" .. helpers.b64encode(string.rep("k", 32))
      local ex = example{ connection_string = bad }
      local res = ngxh.parallel_get(ex.port, { "/calls/" .. CALL }, 30)
      assert.are.equal(502, res[1].status, res[1].raw)
      local err = json_error(res[1])
      assert.are.equal("http", err.kind)
      assert.are.equal(401, err.status)
      assert.are.equal(1, err.attempts)
      assert.are.equal(1, #ngxh.log_for(emu, CALL))
    end)
  end)
end)
