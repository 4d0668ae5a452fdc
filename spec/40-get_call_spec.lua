-- client:get_call over real HTTP on loopback against the emulator: what a
-- user sees (the call, or nil, message, info) and what went on the wire
-- (read back from the emulator's request log).
local acscall = require "acscall"
local helpers = require "spec.helpers"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"

describe("client:get_call against the emulator", function()
  local emu

  lazy_setup(function() emu = helpers.start_emulator() end)
  lazy_teardown(function() if emu then emu:stop() end end)

  local function hmac_client(extra)
    local opts = {connection_string = emu.connection_string}
    for k, v in pairs(extra or {}) do opts[k] = v end
    return acscall.new(opts)
  end

  it("fetches the REST reference's sample call (fixture 18dea47f-...) with every field (HMAC)", function()
    local c = hmac_client()
    local call, err, info = c:get_call(SEED)
    assert.is_nil(err, err)
    assert.is_nil(info)
    assert.are.same({
      callConnectionId = SEED,
      serverCallId = "aHR0cHM6Ly9jb252ZXJzYXRpb251cmwvdGVzdA",
      sourceCallerIdNumber = {value = "+18440123456"},
      source = {
        kind = "communicationUser",
        rawId = "8:acs:b9614373-fd0b-480c-8fd2-cb58b70eab9f_da7be3a9-8788-42a6-85c6-56b2cf784fce",
        communicationUser = {id = "8:acs:b9614373-fd0b-480c-8fd2-cb58b70eab9f_da7be3a9-8788-42a6-85c6-56b2cf784fce"},
      },
      targets = {
        {
          kind = "communicationUser",
          rawId = "8:acs:b9614373-fd0b-480c-8fd2-cb58b70eab9f_0f50d091-5bd3-448b-884d-44be7037d9b9",
          communicationUser = {id = "8:acs:b9614373-fd0b-480c-8fd2-cb58b70eab9f_0f50d091-5bd3-448b-884d-44be7037d9b9"},
        },
        {kind = "phoneNumber", rawId = "4:+14250123456", phoneNumber = {value = "+14250123456"}},
      },
      callConnectionState = "connected",
      callbackUri = "https://app.contoso.com/callback",
    }, call)
    c:close()
  end)

  it("sends the documented request, signed, on the path we expect", function()
    local c = hmac_client()
    emu:clear_log()
    assert(c:get_call(SEED))
    local r = emu:last_request()
    assert.are.equal("GET", r.method)
    assert.are.equal("/calling/callConnections/" .. SEED .. "?api-version=2026-03-12", r.uri)
    assert.are.equal("hmac", r.auth)
    assert.are.equal(200, r.status)
    local h = r.headers
    assert.are.equal("application/json", h["accept"])
    assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$",
      h["x-ms-client-request-id"])
    assert.matches("^acscall/%d+%.%d+%.%d+ Lua/5%.%d libcurl/%d", h["user-agent"])
    assert.are.equal("127.0.0.1:" .. emu.port, h["host"])
    assert.matches("GMT$", h["x-ms-date"])
    assert.are.equal("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", h["x-ms-content-sha256"])
    assert.are.equal("HMAC-SHA256 <redacted>", h["authorization"])
    c:close()
  end)

  it("uses a fresh client request id per call and reuses the connection", function()
    local c = hmac_client()
    emu:clear_log()
    for _ = 1, 3 do assert(c:get_call(SEED)) end
    local log = emu:log()
    assert.are.equal(3, #log)
    assert.are_not.equal(log[1].headers["x-ms-client-request-id"], log[2].headers["x-ms-client-request-id"])
    assert.are.equal(log[1].connection, log[3].connection)
    assert.are.equal(3, tonumber(log[3].connection_requests))
    c:close()
  end)

  it("authenticates with a bearer token and with a token provider", function()
    local c = acscall.new{endpoint = emu.endpoint, token = emu.token}
    emu:clear_log()
    assert(c:get_call(SEED))
    assert.are.equal("bearer", emu:last_request().auth)
    assert.are.equal("Bearer <redacted>", emu:last_request().headers.authorization)
    c:close()
    local calls = 0
    local p = acscall.new{endpoint = emu.endpoint, token_provider = function()
      calls = calls + 1
      return emu.token
    end}
    assert(p:get_call(SEED))
    assert(p:get_call(SEED))
    assert.are.equal(2, calls)
    p:close()
  end)

  it("appends a user agent suffix and honours api_version", function()
    local c = hmac_client{user_agent = "my-app/2.0", api_version = "2025-06-15"}
    emu:clear_log()
    assert(c:get_call(SEED))
    local r = emu:last_request()
    assert.matches(" my%-app/2%.0$", r.headers["user-agent"])
    assert.matches("api%-version=2025%-06%-15$", r.uri)
    c:close()
  end)

  it("reports a wrong token as an http 401 error with details", function()
    local c = acscall.new{endpoint = emu.endpoint, token = "wrong-token-value"}
    local call, msg, info = c:get_call(SEED)
    assert.is_nil(call)
    assert.is_string(msg)
    assert.not_matches("[\r\n]", msg)
    assert.matches("401", msg)
    assert.are.equal("http", info.kind)
    assert.are.equal(401, info.status)
    assert.is_string(info.request_id)
    assert.is_string(info.client_request_id)
    assert.not_matches("wrong-token-value", msg, 1, true)
    c:close()
  end)

  it("reports a wrong access key as 401", function()
    local c = acscall.new{endpoint = emu.endpoint, access_key = "d3Jvbmcta2V5LXdyb25nLWtleQ=="}
    local call, msg, info = c:get_call(SEED)
    assert.is_nil(call)
    assert.are.equal(401, info.status)
    assert.not_matches("d3Jvbmcta2V5LXdyb25nLWtleQ==", msg, 1, true)
    c:close()
  end)

  it("reports an unknown call as 404 with the service code 8522", function()
    local c = hmac_client()
    local call, msg, info = c:get_call("no-such-call")
    assert.is_nil(call)
    assert.are.equal("http", info.kind)
    assert.are.equal(404, info.status)
    assert.are.equal("8522", info.code)
    assert.are.equal("Call not found.", info.message)
    assert.matches("Call not found%.", msg)
    assert.is_string(info.request_id)
    assert.are_not.equal(info.request_id, info.client_request_id)
    c:close()
  end)

  it("reports a transport failure (nothing listening) without raising", function()
    local c = acscall.new{endpoint = "http://127.0.0.1:1/", token = "t", connect_timeout = 2,
      retries = {max = 2, base_delay = 0.01}}
    local call, msg, info = c:get_call(SEED)
    assert.is_nil(call)
    assert.matches("^transport: ", msg)
    assert.are.equal("transport", info.kind)
    assert.is_nil(info.status)
    assert.are.equal(3, info.attempts)
    c:close()
  end)

  it("reports a token provider failure as an auth error, not a raise", function()
    local c = acscall.new{endpoint = emu.endpoint, token_provider = function() error("vault down: s3cr3t") end}
    local call, msg, info = c:get_call(SEED)
    assert.is_nil(call)
    assert.are.equal("auth", info.kind)
    assert.not_matches("s3cr3t", msg, 1, true)
    local c2 = acscall.new{endpoint = emu.endpoint, token_provider = function() return "a\r\nb" end}
    local _, _, info2 = c2:get_call(SEED)
    assert.are.equal("auth", info2.kind)
    c:close()
    c2:close()
  end)

  it("works under a debug hook that is set for the whole call (coverage tools, profilers)", function()
    local c = acscall.new{endpoint = emu.endpoint, token_provider = function() return emu.token end}
    local lines = 0
    debug.sethook(function() lines = lines + 1 end, "l")
    local call, err = c:get_call(SEED)
    local results = c:get_calls({SEED, SEED})
    debug.sethook()
    assert.is_table(call, err)
    assert.is_table(results[2].call, results[2].err)
    assert.is_true(lines > 0)
    c:close()
  end)

  it("survives a token provider that closes its own client", function()
    local c
    c = acscall.new{endpoint = emu.endpoint, token_provider = function() c:close(); return emu.token end}
    local ok, err = pcall(c.get_call, c, SEED)
    assert.is_false(ok)
    assert.matches("closed client", err)
    local c2
    c2 = acscall.new{endpoint = emu.endpoint, token_provider = function() c2:close(); return emu.token end}
    ok, err = pcall(c2.get_calls, c2, {SEED, SEED})
    assert.is_false(ok)
    assert.matches("closed client", err)
  end)

  it("keeps every id inside one path segment", function()
    local c = hmac_client()
    local cases = {
      ["../../admin"] = "..%2F..%2Fadmin",
      [".."] = "%2E%2E",
      ["."] = "%2E",
      ["a/b"] = "a%2Fb",
      ["a?api-version=1999"] = "a%3Fapi-version%3D1999",
      ["a#frag"] = "a%23frag",
      ["a b"] = "a%20b",
      ["a\r\nX-Evil: 1"] = "a%0D%0AX-Evil%3A%201",
      ["caf\195\169"] = "caf%C3%A9",
    }
    for id, encoded in pairs(cases) do
      emu:clear_log()
      local call, _, info = c:get_call(id)
      assert.is_nil(call)
      assert.are.equal(404, info.status, id)
      local r = emu:last_request()
      assert.are.equal("/calling/callConnections/" .. encoded .. "?api-version=2026-03-12", r.uri)
      assert.are.equal(id, r.id)
    end
    c:close()
  end)

  it("raises for programmer mistakes in get_call", function()
    local c = hmac_client()
    assert.has_error(function() c:get_call() end)
    assert.has_error(function() c:get_call(42) end)
    assert.has_error(function() c:get_call("") end)
    assert.has_error(function() c.get_call({}, "x") end)
    c:close()
  end)
end)
