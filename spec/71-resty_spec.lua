-- acscall.resty outside nginx: the lua-resty-http adapter (with stand-in
-- clients that speak request_uri), the error-status mapping, and the
-- thread-pool worker function acscall.resty_worker.fetch called directly.
local helpers = require "spec.helpers"
local acscall = require "acscall"
local resty = require "acscall.resty"
local worker = require "acscall.resty_worker"

local CALL = "18dea47f-b081-4107-9a5c-4300819d2c6c"

-- a lua-resty-http stand-in: records the call, answers what it is told
local function fake_httpc(res, err)
  local f = { calls = {} }
  function f:request_uri(url, params)
    self.calls[#self.calls + 1] = { url = url, params = params }
    if type(res) == "function" then return res(url, params) end
    return res, err
  end
  return f
end

describe("acscall.resty", function()
  local emu, client
  setup(function()
    emu = helpers.start_emulator()
    client = acscall.new{ connection_string = emu.connection_string }
  end)
  teardown(function()
    if client then client:close() end
    if emu then emu:stop() end
  end)

  describe("http_get_call (lua-resty-http adapter)", function()
    it("sends the signed request through request_uri and decodes the answer", function()
      -- the stand-in performs the exchange over luasocket against the emulator
      local httpc = fake_httpc(function(url, params)
        local status, body, headers = helpers.http_get(url, params.headers)
        if not status then return nil, body end
        return { status = status, body = body, headers = headers }
      end)
      local call, err = resty.http_get_call(httpc, client, CALL, { keepalive_timeout = 1000 })
      assert.is_table(call, err)
      assert.are.equal(CALL, call.callConnectionId)
      assert.are.equal("4:+14250123456", call.targets[2].rawId)
      local p = httpc.calls[1].params
      assert.are.equal("GET", p.method)
      assert.is_true(p.ssl_verify)
      assert.are.equal(1000, p.keepalive_timeout)
      assert.matches("^HMAC%-SHA256 ", p.headers.authorization)
      assert.is_string(p.headers["x-ms-date"])
      assert.are.equal(emu:url(emu:call_path(CALL)), httpc.calls[1].url)
      assert.are.equal("hmac", emu:last_request().auth)
    end)

    it("reports HTTP errors like get_call does", function()
      local httpc = fake_httpc({ status = 404, headers = { ["X-Ms-Request-Id"] = "rid-1" },
        body = '{"error":{"code":"8522","message":"Call not found."}}' })
      local call, msg, info = resty.http_get_call(httpc, client, "nope")
      assert.is_nil(call)
      assert.are.equal("HTTP 404: Call not found. (code 8522)", msg)
      assert.are.equal("http", info.kind)
      assert.are.equal("rid-1", info.request_id)
      assert.are.equal(404, resty.error_status(info))
    end)

    it("turns a cosocket failure into a transport error", function()
      local httpc = fake_httpc(nil, "timeout")
      local call, msg, info = resty.http_get_call(httpc, client, CALL)
      assert.is_nil(call)
      assert.are.equal("transport: timeout", msg)
      assert.are.equal("transport", info.kind)
      assert.is_true(info.timeout)
      assert.matches("^%x+%-%x+%-4%x+%-%x+%-%x+$", info.client_request_id)
      assert.are.equal(504, resty.error_status(info))
      local _, _, info2 = resty.http_get_call(fake_httpc(nil, "connection refused"), client, CALL)
      assert.are.equal(502, resty.error_status(info2))
    end)

    it("decodes a 2xx that is not a call as a decode error", function()
      local _, msg, info = resty.http_get_call(fake_httpc({ status = 200, body = "[]", headers = {} }), client, CALL)
      assert.are.equal("decode", info.kind)
      assert.is_string(msg)
      assert.are.equal(500, resty.error_status(info))
    end)

    it("refuses something that is not an http client", function()
      assert.has_error(function() resty.http_get_call({}, client, CALL) end)
    end)
  end)

  describe("error_status", function()
    it("maps each kind of failure", function()
      assert.are.equal(429, resty.error_status{ kind = "http", status = 429 })
      assert.are.equal(504, resty.error_status{ kind = "transport", timeout = true,
        message = "Operation timed out after 10 milliseconds" })
      assert.are.equal(502, resty.error_status{ kind = "transport", message = "Couldn't connect to server" })
      assert.are.equal(503, resty.error_status{ kind = "thread" })
      assert.are.equal(500, resty.error_status{ kind = "auth" })
      assert.are.equal(500, resty.error_status(nil))
    end)

    it("keeps the upstream's 404, 429, 5xx; maps a 3xx, 401 and 403 to 502", function()
      for _, st in ipairs{400, 404, 408, 429, 500, 503} do
        assert.are.equal(st, resty.error_status{ kind = "http", status = st })
      end
      -- a redirect is not followed (passing it on would lack its Location);
      -- 401/403 mean the gateway's own credential was refused
      for _, st in ipairs{301, 302, 304, 307, 308, 401, 403} do
        assert.are.equal(502, resty.error_status{ kind = "http", status = st }, st)
      end
    end)
  end)

  describe("get_call (thread pool)", function()
    it("needs nginx", function()
      assert.has_error(function() resty.get_call({}, CALL) end)
    end)
  end)

  describe("resty_worker.fetch (what runs in a pool thread)", function()
    it("returns a flagged result (no nil: run_worker_thread cannot carry it)", function()
      local opts = { connection_string = emu.connection_string }
      local ok, call = worker.fetch(opts, CALL)
      assert.is_true(ok)
      assert.are.equal(CALL, call.callConnectionId)
      local ok2, msg, info = worker.fetch(opts, "nope")
      assert.is_false(ok2)
      assert.matches("^HTTP 404", msg)
      assert.are.equal("http", info.kind)
    end)

    it("keeps one client per option set, so the connection is reused", function()
      worker.reset()
      emu:clear_log()
      local opts = { connection_string = emu.connection_string, timeout = 5 }
      for _ = 1, 3 do assert.is_true((worker.fetch(opts, CALL))) end
      local same = { timeout = 5, connection_string = emu.connection_string } -- same, other order
      assert.is_true((worker.fetch(same, CALL)))
      local log = emu:log()
      assert.are.equal(4, #log)
      for i = 2, 4 do assert.are.equal(log[1].connection, log[i].connection) end
      assert.is_true(worker.reset())
    end)

    it("raises on a programmer mistake (run_worker_thread reports it)", function()
      assert.has_error(function() worker.fetch({ endpoint = "nope" }, CALL) end)
    end)
  end)
end)
