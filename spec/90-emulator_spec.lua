-- Specs for the ACS emulator (emulator/acs-emulator), driven with plain HTTP from the test side:
-- luasocket for HTTP, luaossl for the test's own HMAC signing, the curl CLI for TLS.
local helpers = require "spec.helpers"
local cjson = require "cjson.safe"

local API = "2026-03-12"
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local decode = helpers.decode_json

local function assert_error_body(body, code)
  local v = decode(body)
  assert.is_table(v.error)
  assert.is_string(v.error.message)
  if code then assert.equal(code, v.error.code) end
  return v.error
end

describe("acs-emulator", function()
  local e, started_in

  lazy_setup(function()
    local t0 = helpers.now()
    e = helpers.start_emulator()
    started_in = helpers.now() - t0
  end)

  lazy_teardown(function()
    if e then e:stop() end
  end)

  local function get(id, headers, api_version, timeout)
    local path = e:call_path(id, api_version)
    local h = e:signed_headers(path, headers)
    return e:get(path, h, timeout)
  end

  local function bearer_get(id, headers, timeout)
    return e:get(e:call_path(id), e:bearer_headers(headers), timeout)
  end

  describe("start", function()
    it("is ready in under 2 seconds and prints its variables", function()
      assert.is_true(started_in < 2 * helpers.slow, "took " .. started_in .. " s")
      assert.matches("^http://127%.0%.0%.1:%d+/$", e.endpoint)
      assert.equal("endpoint=" .. e.endpoint .. ";accesskey=" .. e.access_key, e.connection_string)
      assert.equal(32, #helpers.b64decode(e.access_key))
      assert.equal("emulator-token", e.token)
      assert.equal(e.dir .. "/requests.log", e.log_path)
      assert.is_nil(e.ca_file)
      assert.is_true(helpers.pid_alive(e.pid))
    end)

    it("prints shell-evaluable lines", function()
      local out = helpers.run("sh -c " .. helpers.shell_quote(
        "eval \"$(printf '%s\\n' " .. helpers.shell_quote("ACS_CONNECTION_STRING='" .. e.connection_string .. "'")
        .. ")\"; printf %s \"$ACS_CONNECTION_STRING\""))
      assert.equal(e.connection_string, out)
    end)
  end)

  describe("fixtures", function()
    it("serves every fixture file verbatim (HMAC auth)", function()
      local ids = helpers.fixture_ids()
      assert.is_true(#ids >= 30)
      for _, id in ipairs(ids) do
        -- fault "none" overrides the .meta.json sidecars of the fault-* fixtures
        local status, body, h = get(id, { ["x-acs-emulator-fault"] = "none" })
        assert.equal(200, status, id .. ": " .. tostring(body))
        assert.equal(helpers.read_file(helpers.fixtures_dir() .. "/" .. id .. ".json"), body, id)
        assert.equal("application/json", h["content-type"])
        assert.matches(UUID, h["x-ms-request-id"])
      end
    end)

    it("ships the sample call of the Get Call REST page", function()
      local status, body = get("18dea47f-b081-4107-9a5c-4300819d2c6c")
      assert.equal(200, status)
      local v = decode(body)
      assert.equal("18dea47f-b081-4107-9a5c-4300819d2c6c", v.callConnectionId)
      assert.equal("aHR0cHM6Ly9jb252ZXJzYXRpb251cmwvdGVzdA", v.serverCallId)
      assert.equal("connected", v.callConnectionState)
      assert.equal(2, #v.targets)
      assert.equal("+14250123456", v.targets[2].phoneNumber.value)
    end)

    it("ships one fixture per call state", function()
      for _, s in ipairs({ "unknown", "connecting", "connected", "transferring", "transferAccepted",
                           "disconnecting", "disconnected" }) do
        local status, body = bearer_get("state-" .. s)
        assert.equal(200, status)
        assert.equal(s, decode(body).callConnectionState)
      end
    end)

    it("decodes the percent-encoded id", function()
      e:clear_log()
      local status, body = get("call id+1")
      assert.equal(200, status)
      assert.equal("call id+1", decode(body).callConnectionId)
      local r = e:last_request()
      assert.equal("call id+1", r.id)
      assert.equal("/calling/callConnections/call%20id%2B1?api-version=" .. API, r.uri)
    end)

    it("serves a fixture dropped in while running (and never files outside the directory)", function()
      local dir = helpers.fixtures_dir()
      local id = "spec-dropin-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e6))
      local f = assert(io.open(dir .. "/" .. id .. ".json", "w"))
      f:write('{"callConnectionId":"' .. id .. '"}')
      f:close()
      local status, body = get(id)
      os.remove(dir .. "/" .. id .. ".json")
      assert.equal(200, status)
      assert.equal(id, decode(body).callConnectionId)
      status = get("../README")
      assert.equal(404, status)
      status = get(".hidden")
      assert.equal(404, status)
    end)
  end)

  describe("auth", function()
    local path
    before_each(function() path = e:call_path("minimal") end)

    it("accepts a bearer token", function()
      e:clear_log()
      assert.equal(200, (bearer_get("minimal")))
      assert.equal("bearer", e:last_request().auth)
      assert.equal("Bearer <redacted>", e:last_request().headers.authorization)
    end)

    it("accepts HMAC signed over the Host header as received", function()
      local host = "localhost:" .. e.port
      local h = helpers.hmac_headers({ key = e.access_key, path = path, host = host })
      h.host = host
      e:clear_log()
      assert.equal(200, (e:get(path, h)))
      local r = e:last_request()
      assert.equal("hmac", r.auth)
      assert.equal("HMAC-SHA256 <redacted>", r.headers.authorization)
      assert.is_nil(tostring(r.headers.authorization):find("Signature", 1, true))
    end)

    local function expect_401(h, reason_pattern)
      e:clear_log()
      local status, body, rh = e:get(path, h)
      assert.equal(401, status)
      local err = assert_error_body(body, "Unauthorized")
      assert.matches(reason_pattern, err.message)
      assert.matches(UUID, rh["x-ms-request-id"])
      assert.is_nil(body:find(e.access_key, 1, true))
      assert.is_nil(body:find(e.token, 1, true))
      assert.matches("^fail:", e:last_request().auth)
      return err
    end

    it("401 on a wrong signature", function()
      local h = helpers.hmac_headers({ key = helpers.b64encode(string.rep("k", 32)), path = path, host = e.host })
      expect_401(h, "signature")
    end)

    it("401 when the signed path differs from the request line", function()
      local h = helpers.hmac_headers({ key = e.access_key, path = e:call_path("minimal", "2025-06-15"), host = e.host })
      expect_401(h, "signature")
    end)

    it("401 when the signed host differs from the Host header", function()
      local h = helpers.hmac_headers({ key = e.access_key, path = path, host = "localhost:" .. e.port })
      expect_401(h, "signature")
    end)

    it("401 on a stale or future date, or a date that does not parse", function()
      expect_401(helpers.hmac_headers({ key = e.access_key, path = path, host = e.host,
        date = helpers.http_date(os.time() - 600) }), "skew")
      expect_401(helpers.hmac_headers({ key = e.access_key, path = path, host = e.host,
        date = helpers.http_date(os.time() + 600) }), "skew")
      expect_401(helpers.hmac_headers({ key = e.access_key, path = path, host = e.host,
        date = "2022-04-13T18:09:12Z" }), "RFC 1123")
    end)

    it("401 on a wrong body hash", function()
      expect_401(helpers.hmac_headers({ key = e.access_key, path = path, host = e.host,
        content_hash = helpers.sha256_b64("x") }), "x%-ms%-content%-sha256")
    end)

    it("401 on a wrong token, missing auth, unknown scheme, missing headers", function()
      expect_401({ authorization = "Bearer not-the-token" }, "bearer token")
      expect_401({}, "missing Authorization")
      expect_401({ authorization = "Basic Zm9vOmJhcg==" }, "scheme")
      local h = helpers.hmac_headers({ key = e.access_key, path = path, host = e.host })
      h["x-ms-date"] = nil
      expect_401(h, "x%-ms%-date")
      h = helpers.hmac_headers({ key = e.access_key, path = path, host = e.host })
      h.authorization = h.authorization:gsub("SignedHeaders=[^&]*", "SignedHeaders=host;x-ms-date")
      expect_401(h, "SignedHeaders")
    end)

    it("the test signer and the emulator's auth module reproduce the SDKs' signing vectors", function()
      -- test-side code
      local h = helpers.hmac_headers({ key = "pw==", path = "/calling/callConnections/abc?api-version=2025-06-15",
        host = "localhost:8443", date = "Wed, 13 Apr 2022 18:09:12 GMT" })
      assert.equal("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature="
        .. "a6QkuPVa4j7qJpZaUqA5tqq1MgIUVO0bQSDrQzyZBBE=", h.authorization)
      assert.equal("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", h["x-ms-content-sha256"])
      -- the emulator's module (also self-tested by nginx at every start, under LuaJIT)
      local saved = package.path
      package.path = helpers.repo_root() .. "/emulator/lua/?.lua;" .. package.path
      local auth = require "acs_emulator.auth"
      package.path = saved
      assert.is_true((auth.self_test()))
      assert.equal("a6QkuPVa4j7qJpZaUqA5tqq1MgIUVO0bQSDrQzyZBBE=", auth.signature("pw==", "GET",
        "/calling/callConnections/abc?api-version=2025-06-15", "Wed, 13 Apr 2022 18:09:12 GMT",
        "localhost:8443", auth.sha256_b64("")))
      assert.is_true(auth.equal("abc", "abc"))
      assert.is_false(auth.equal("abc", "abd"))
      assert.is_false(auth.equal("abc", "abcd"))
    end)
  end)

  describe("errors", function()
    it("400 without api-version", function()
      local status, body, h = get("minimal", nil, false)
      assert.equal(400, status)
      assert_error_body(body, "MissingApiVersionParameter")
      assert.matches(UUID, h["x-ms-request-id"])
      assert.equal("application/json", h["content-type"])
    end)

    it("404 with code 8522 for an unknown call", function()
      local status, body, h = get("no-such-call")
      assert.equal(404, status)
      local err = assert_error_body(body, "8522")
      assert.equal("Call not found.", err.message)
      assert.matches(UUID, h["x-ms-request-id"])
    end)

    it("404 JSON for other paths", function()
      local status, body, h = e:get("/calling/other?api-version=" .. API, e:bearer_headers())
      assert.equal(404, status)
      assert_error_body(body, "NotFound")
      assert.matches(UUID, h["x-ms-request-id"])
      status = e:get("/calling/callConnections/a/b?api-version=" .. API, e:bearer_headers())
      assert.equal(404, status)
    end)

    it("400 for an unknown fault name", function()
      local status, body = bearer_get("minimal", { ["x-acs-emulator-fault"] = "nonsense" })
      assert.equal(400, status)
      assert_error_body(body, "UnknownEmulatorFault")
    end)
  end)

  describe("faults", function()
    local function fault(spec, id, extra)
      local h = { ["x-acs-emulator-fault"] = spec }
      for k, v in pairs(extra or {}) do h[k] = v end
      return get(id or "minimal", h)
    end

    it("429 with Retry-After", function()
      local status, body, h = fault("429")
      assert.equal(429, status)
      assert.equal("1", h["retry-after"])
      assert_error_body(body, "TooManyRequests")
      status, body, h = fault("429; retry_after=7")
      assert.equal(429, status)
      assert.equal("7", h["retry-after"])
      assert_error_body(body, "TooManyRequests")
    end)

    it("429 with retry-after-ms", function()
      local status, _, h = fault("429ms;ms=250")
      assert.equal(429, status)
      assert.equal("250", h["retry-after-ms"])
      assert.is_nil(h["retry-after"])
    end)

    it("429 without a retry header", function()
      local status, _, h = fault("429bare")
      assert.equal(429, status)
      assert.is_nil(h["retry-after"])
      assert.is_nil(h["retry-after-ms"])
    end)

    it("503 N times per client request id, then the fixture", function()
      local rid = { ["x-ms-client-request-id"] = "11111111-2222-4333-8444-" .. string.format("%012d", os.time()) }
      local seq = {}
      for i = 1, 4 do seq[i] = (fault("503;times=2", "minimal", rid)) end
      assert.same({ 503, 503, 200, 200 }, seq)
      rid["x-ms-client-request-id"] = rid["x-ms-client-request-id"]:gsub("^1", "9")
      assert.equal(503, (fault("503;times=2", "minimal", rid)))
      assert.equal(503, (fault("503;times=2", "minimal", rid)))
      local _, body = fault("503;times=2", "minimal", rid)
      assert.equal('{"callConnectionId": "minimal"}\n', body)
    end)

    it("per-id faults from a .meta.json sidecar", function()
      local rid = { ["x-ms-client-request-id"] = "22222222-2222-4333-8444-" .. string.format("%012d", os.time()) }
      local seq = {}
      for i = 1, 3 do seq[i] = (get("fault-503x2", rid)) end
      assert.same({ 503, 503, 200 }, seq)
      local status, _, h = get("fault-429")
      assert.equal(429, status)
      assert.equal("2", h["retry-after"])
      status = get("fault-malformed")
      assert.equal(200, status)
      -- a request header overrides the sidecar
      assert.equal(500, (get("fault-429", { ["x-acs-emulator-fault"] = "500" })))
    end)

    it("500 with a JSON error body", function()
      local status, body = fault("500")
      assert.equal(500, status)
      assert_error_body(body, "InternalServerError")
    end)

    it("502 with an HTML body", function()
      local status, body, h = fault("502html")
      assert.equal(502, status)
      assert.equal("text/html", h["content-type"])
      assert.matches("^<html>", body)
      assert.is_nil(cjson.decode(body))
    end)

    it("latency, then the fixture", function()
      local t0 = helpers.now()
      local status, body = fault("latency;ms=150")
      local dt = helpers.now() - t0
      assert.equal(200, status)
      assert.equal("minimal", decode(body).callConnectionId)
      assert.is_true(dt >= 0.14 and dt < 2 * helpers.slow, "took " .. dt)
    end)

    it("stall: sends nothing, without blocking other requests", function()
      local socket = require "socket"
      local path = e:call_path("minimal")
      local h = e:signed_headers(path, { ["x-acs-emulator-fault"] = "stall" })
      local req = { "GET " .. path .. " HTTP/1.1\r\nHost: " .. e.host .. "\r\n" }
      for k, v in pairs(h) do req[#req + 1] = k .. ": " .. v .. "\r\n" end
      req[#req + 1] = "\r\n"
      local c = assert(socket.tcp())
      c:settimeout(0.4)
      assert(c:connect("127.0.0.1", e.port))
      assert(c:send(table.concat(req)))
      -- meanwhile the emulator answers others at once
      local t0 = helpers.now()
      assert.equal(200, (get("minimal")))
      assert.is_true(helpers.now() - t0 < 0.3 * helpers.slow)
      local data, err, partial = c:receive("*a")
      c:close()
      assert.is_nil(data)
      assert.equal("timeout", err)
      assert.equal("", partial)
    end)

    it("truncate: Content-Length promises more than is sent, then the connection closes", function()
      local path = e:call_path("18dea47f-b081-4107-9a5c-4300819d2c6c")
      local h = e:signed_headers(path, { ["x-acs-emulator-fault"] = "truncate" })
      local req = { "GET " .. path .. " HTTP/1.1\r\nHost: " .. e.host .. "\r\n" }
      for k, v in pairs(h) do req[#req + 1] = k .. ": " .. v .. "\r\n" end
      local data, err = helpers.raw_request(e.port, table.concat(req) .. "\r\n", 3)
      assert.equal("closed", err)
      local head, body = data:match("^(.-\r\n)\r\n(.*)$")
      assert.matches("^HTTP/1%.1 200", head)
      local cl = tonumber(head:lower():match("content%-length: (%d+)"))
      assert.is_true(#body < cl, #body .. " vs " .. tostring(cl))
      assert.is_true(#body > 0)
    end)

    it("reset: closes the connection without a response", function()
      local path = e:call_path("minimal")
      local h = e:signed_headers(path, { ["x-acs-emulator-fault"] = "reset" })
      local req = { "GET " .. path .. " HTTP/1.1\r\nHost: " .. e.host .. "\r\n" }
      for k, v in pairs(h) do req[#req + 1] = k .. ": " .. v .. "\r\n" end
      local data, err = helpers.raw_request(e.port, table.concat(req) .. "\r\n", 3)
      assert.is_true(data == "" or data == nil)
      assert.is_true(err == "closed" or err == "connection reset by peer" or err == "Connection reset by peer", tostring(err))
      local status = helpers.http_get(e:url(path), e:signed_headers(path, { ["x-acs-emulator-fault"] = "reset" }))
      assert.is_nil(status)
    end)

    it("malformed, array, empty, wrongtypes bodies with 200", function()
      local status, body = fault("malformed")
      assert.equal(200, status)
      assert.is_nil(cjson.decode(body))
      status, body = fault("array")
      assert.equal(200, status)
      assert.equal("[]", body)
      local h
      status, body, h = fault("empty")
      assert.equal(200, status)
      assert.equal("", body)
      assert.equal("0", h["content-length"])
      status, body = fault("wrongtypes")
      assert.equal(200, status)
      local v = decode(body)
      assert.is_number(v.callConnectionId)
      assert.is_number(v.sourceCallerIdNumber.value)
    end)

    it("oversized: a valid JSON body over 5 MiB", function()
      local status, body = fault("oversized")
      assert.equal(200, status)
      assert.is_true(#body > 5 * 1024 * 1024)
      assert.equal("oversized", decode(body).callConnectionId)
    end)

    it("deep: JSON nested 10,000 levels", function()
      local status, body = fault("deep")
      assert.equal(200, status)
      local _, opens = body:gsub("%[", "")
      assert.equal(10000, opens)
      assert.matches("^{\"callConnectionId\":\"deep\"", body)
    end)

    it("redirect: 302 to a path that serves the fixture", function()
      e:clear_log()
      local status, body, h = fault("redirect")
      assert.equal(302, status)
      assert_error_body(body, "Redirect")
      local loc = h.location
      assert.matches("^http://127%.0%.0%.1:%d+/_emulator/redirected/minimal%?api%-version=" .. API:gsub("%-", "%%-") .. "$", loc)
      local s2, b2 = helpers.http_get(loc)
      assert.equal(200, s2)
      assert.equal("minimal", decode(b2).callConnectionId)
      local log = e:log()
      assert.equal(2, #log)
      assert.equal("redirect", log[1].fault)
      assert.equal("none", log[2].auth)
    end)

    it("data-fault fixtures: wrong types and 200 targets", function()
      local _, body = get("wrongtypes-targets")
      assert.is_number(decode(body).targets[3].phoneNumber.value)
      _, body = get("large-200-targets")
      assert.equal(200, #decode(body).targets)
    end)
  end)

  describe("request log", function()
    it("records one redacted JSON line per request, readable right after the response", function()
      e:clear_log()
      assert.equal(0, #e:log())
      local rid = "33333333-2222-4333-8444-555555555555"
      get("minimal", { ["x-ms-client-request-id"] = rid, ["user-agent"] = "spec-agent/1.0" })
      bearer_get("no-such-call")
      e:get(e:call_path("minimal"), {})
      local log = e:log()
      assert.equal(3, #log)
      local r = log[1]
      assert.equal("GET", r.method)
      assert.equal("/calling/callConnections/minimal?api-version=" .. API, r.uri)
      assert.equal("minimal", r.path)
      assert.equal("minimal", r.id)
      assert.equal("hmac", r.auth)
      assert.equal(200, r.status)
      assert.equal(rid, r.headers["x-ms-client-request-id"])
      assert.equal("spec-agent/1.0", r.headers["user-agent"])
      assert.equal("HMAC-SHA256 <redacted>", r.headers.authorization)
      assert.is_number(r.time)
      assert.is_true(math.abs(r.time - helpers.now()) < 60)
      assert.is_number(r.connection)
      assert.equal(1, r.connection_requests)
      assert.equal(cjson.null, r.fault)
      assert.equal("bearer", log[2].auth)
      assert.equal(404, log[2].status)
      assert.equal("Bearer <redacted>", log[2].headers.authorization)
      assert.equal("fail:missing Authorization header", log[3].auth)
      assert.equal(401, log[3].status)
      -- truncation really empties the file and nginx keeps appending from offset 0
      e:clear_log()
      get("minimal")
      local s = helpers.read_file(e.log_path)
      assert.equal("{", s:sub(1, 1))
      assert.equal(1, #e:log())
      -- no secret ever reaches the log
      assert.is_nil(s:find(e.token, 1, true))
      assert.is_nil(s:find("Signature=", 1, true))
    end)

    it("redacts an Authorization value to a known scheme only, never a bare credential", function()
      e:clear_log()
      local path = e:call_path("minimal")
      for _, v in ipairs{e.token, "bearer " .. e.token, "Basic Zm9vOmJhcg==", "s3cret-no-space",
                         "HMAC-SHA256 SignedHeaders=x&Signature=abc"} do
        e:get(path, {authorization = v})
      end
      local log = e:log()
      assert.equal(5, #log)
      assert.equal("<redacted>", log[1].headers.authorization)
      assert.equal("bearer <redacted>", log[2].headers.authorization)
      assert.equal("<redacted>", log[3].headers.authorization)
      assert.equal("<redacted>", log[4].headers.authorization)
      assert.equal("HMAC-SHA256 <redacted>", log[5].headers.authorization)
      local s = helpers.read_file(e.log_path)
      for _, secret in ipairs{e.token, "Zm9vOmJhcg", "s3cret", "Signature"} do
        assert.is_nil(s:find(secret, 1, true), secret)
      end
    end)

    it("keeps connections alive (connection_requests counts)", function()
      e:clear_log()
      local socket = require "socket"
      local c = assert(socket.tcp())
      c:settimeout(3)
      assert(c:connect("127.0.0.1", e.port))
      for i = 1, 3 do
        local path = e:call_path("minimal")
        local h = e:signed_headers(path)
        local req = { "GET " .. path .. " HTTP/1.1\r\nHost: " .. e.host .. "\r\n" }
        for k, v in pairs(h) do req[#req + 1] = k .. ": " .. v .. "\r\n" end
        assert(c:send(table.concat(req) .. "\r\n"))
        local status = c:receive("*l")
        assert.matches("^HTTP/1%.1 200", status)
        local len
        repeat
          local line = c:receive("*l")
          len = len or tonumber((line:lower():match("^content%-length: (%d+)")))
        until line == ""
        assert(c:receive(len))
        assert.equal(i, e:last_request().connection_requests)
      end
      c:close()
      local log = e:log()
      assert.equal(log[1].connection, log[3].connection)
    end)
  end)
end)

describe("acs-emulator --latency", function()
  local e
  lazy_setup(function() e = helpers.start_emulator({ latency = 100 }) end)
  lazy_teardown(function() if e then e:stop() end end)

  it("delays every response", function()
    local path = e:call_path("minimal")
    local t0 = helpers.now()
    local status = e:get(path, e:bearer_headers())
    local dt = helpers.now() - t0
    assert.equal(200, status)
    assert.is_true(dt >= 0.09 and dt < 2 * helpers.slow, "took " .. dt)
    t0 = helpers.now()
    status = e:get("/nowhere", e:bearer_headers())
    assert.equal(404, status)
    assert.is_true(helpers.now() - t0 >= 0.09)
  end)
end)

describe("acs-emulator --tls", function()
  local e
  lazy_setup(function() e = helpers.start_emulator({ tls = true }) end)
  lazy_teardown(function() if e then e:stop() end end)

  local function curl(url, extra)
    local out, ok, rc = helpers.run("curl -s -o - -w '\\n%{http_code}' --max-time 5 " .. (extra or "")
      .. " -H " .. helpers.shell_quote("Authorization: Bearer " .. e.token) .. " " .. helpers.shell_quote(url))
    local body, code = out:match("^(.*)\n(%d+)$")
    return ok, rc, tonumber(code), body
  end

  it("prints an https endpoint and its CA file", function()
    assert.matches("^https://127%.0%.0%.1:%d+/$", e.endpoint)
    assert.equal(e.dir .. "/ca.pem", e.ca_file)
    assert.matches("BEGIN CERTIFICATE", helpers.read_file(e.ca_file))
  end)

  it("serves over TLS verified with the CA, for 127.0.0.1 and localhost", function()
    local ok, _, code, body = curl(e:url(e:call_path("18dea47f-b081-4107-9a5c-4300819d2c6c")),
      "--cacert " .. helpers.shell_quote(e.ca_file))
    assert.is_true(ok)
    assert.equal(200, code)
    assert.equal(helpers.read_file(helpers.fixtures_dir() .. "/18dea47f-b081-4107-9a5c-4300819d2c6c.json"), body)
    ok, _, code = curl("https://localhost:" .. e.port .. e:call_path("minimal"),
      "--cacert " .. helpers.shell_quote(e.ca_file))
    assert.is_true(ok)
    assert.equal(200, code)
  end)

  it("fails verification without the CA", function()
    local ok, rc = curl(e:url(e:call_path("minimal")), "--cacert /etc/ssl/certs/ca-certificates.crt")
    assert.is_false(ok)
    assert.equal(60, rc) -- CURLE_PEER_FAILED_VERIFICATION
  end)
end)

describe("acs-emulator lifecycle and options", function()
  it("honours --port, --fixtures, --access-key, --token; stop leaves no process, port or dir", function()
    local fixtures = os.tmpname()
    os.remove(fixtures)
    assert(helpers.run("mkdir -p " .. helpers.shell_quote(fixtures)))
    local f = assert(io.open(fixtures .. "/my-call.json", "w"))
    f:write('{"callConnectionId":"my-call"}')
    f:close()
    -- a free port
    local socket = require "socket"
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    local key = helpers.b64encode(string.rep("\1", 32))
    local e = helpers.start_emulator({ port = port, fixtures = fixtures, access_key = key, token = "tok-123" })
    local ok, err = pcall(function()
      assert.equal(tonumber(port), e.port)
      assert.equal("endpoint=http://127.0.0.1:" .. port .. "/;accesskey=" .. key, e.connection_string)
      local path = e:call_path("my-call")
      assert.equal(200, (e:get(path, e:signed_headers(path))))
      assert.equal(200, (e:get(path, { authorization = "Bearer tok-123" })))
      assert.equal(401, (e:get(path, { authorization = "Bearer emulator-token" })))
      assert.equal(404, (e:get(e:call_path("minimal"), { authorization = "Bearer tok-123" })))
      -- a second start on the same port fails cleanly
      local out, started = helpers.run(helpers.shell_quote(helpers.emulator_cmd) .. " start --port " .. port .. " 2>&1")
      assert.is_false(started, out)
    end)
    local pid, dir = e.pid, e.dir
    assert.is_true(helpers.pid_alive(pid))
    assert.is_true(e:stop())
    helpers.run("rm -rf " .. helpers.shell_quote(fixtures))
    assert(ok, err)
    assert.is_false(helpers.pid_alive(pid))
    assert.is_false(helpers.port_open(e.port))
    assert.is_nil(io.open(dir .. "/nginx.conf"))
  end)

  it("stop works while a request is stalled", function()
    local e = helpers.start_emulator()
    local socket = require "socket"
    local path = e:call_path("minimal")
    local c = assert(socket.tcp())
    c:settimeout(2)
    assert(c:connect("127.0.0.1", e.port))
    c:send("GET " .. path .. " HTTP/1.1\r\nHost: " .. e.host .. "\r\nAuthorization: Bearer " .. e.token
      .. "\r\nx-acs-emulator-fault: stall\r\n\r\n")
    socket.sleep(0.1)
    local t0 = helpers.now()
    assert.is_true(e:stop())
    c:close()
    assert.is_true(helpers.now() - t0 < 5 * helpers.slow)
    assert.is_false(helpers.pid_alive(e.pid))
    assert.is_false(helpers.port_open(e.port))
  end)

  it("keeps its files to this user: dir 0700, nginx.conf and requests.log 0600", function()
    local e = helpers.start_emulator()
    local out = helpers.run("stat -c '%a %n' " .. helpers.shell_quote(e.dir) .. " "
      .. helpers.shell_quote(e.dir .. "/nginx.conf") .. " " .. helpers.shell_quote(e.log_path))
    local path = e:call_path("minimal")
    assert.equal(200, (e:get(path, e:bearer_headers())))
    local logged = #e:log()
    e:stop()
    assert.equal("700 " .. e.dir .. "\n600 " .. e.dir .. "/nginx.conf\n600 " .. e.log_path .. "\n", out)
    assert.equal(1, logged)
  end)

  it("start --dir: refuses a non-empty directory it did not make; stop removes only what start made", function()
    local q = helpers.shell_quote
    local base = os.tmpname()
    os.remove(base)
    assert(helpers.run("mkdir -p " .. q(base .. "/mine") .. " && echo precious >" .. q(base .. "/mine/notes.txt")
      .. " && mkdir " .. q(base .. "/empty")))
    local ok, err = pcall(function()
      -- a directory with the user's files: refused, untouched, and stop refuses it too
      local out, started, rc = helpers.run(q(helpers.emulator_cmd) .. " start --dir " .. q(base .. "/mine") .. " 2>&1")
      assert.is_false(started, out)
      assert.equal(1, rc)
      assert.matches("not empty and was not made by acs%-emulator", out)
      assert.equal("notes.txt\n", (helpers.run("ls -A " .. q(base .. "/mine"))))
      out, started = helpers.run(q(helpers.emulator_cmd) .. " stop --dir " .. q(base .. "/mine") .. " 2>&1")
      assert.is_false(started, out)
      assert.equal("precious\n", helpers.read_file(base .. "/mine/notes.txt"))
      -- an empty directory the user made: used, then emptied but kept
      local e = helpers.start_emulator{dir = base .. "/empty"}
      assert.equal(200, (e:get(e:call_path("minimal"), e:bearer_headers())))
      assert.is_true(e:stop())
      assert.equal("", (helpers.run("ls -A " .. q(base .. "/empty"))))
      -- a directory start made: removed by stop
      e = helpers.start_emulator{dir = base .. "/new"}
      assert.is_true(e:stop())
      assert.is_nil(io.open(base .. "/new/.acs-emulator"))
      assert.equal("empty\nmine\n", (helpers.run("ls -A " .. q(base))))
    end)
    helpers.run("rm -rf " .. q(base))
    assert(ok, err)
  end)

  it("refuses to stop a directory it did not create", function()
    local out, ok = helpers.run(helpers.shell_quote(helpers.emulator_cmd) .. " stop --dir /tmp 2>&1")
    assert.is_false(ok)
    assert.matches("not an acs%-emulator directory", out)
  end)
end)
