-- acscall.credential on the core's rules, and as @azure/identity 4.13 does it: the core's
-- failure shape and redaction for every secret in play, the header-value rule for tokens and
-- IDENTITY_HEADER, expiries refused, az as the SDKs run it, object_id, the refresh point,
-- the IMDS probe, and each endpoint's retry classes given to the transport as data.
local helpers = require "spec.helpers"
local cjson = require "cjson.safe"
local core = require "acscall.core"
local credential = require "acscall.credential"

local BASE = "http://127.0.0.1:9"
local SECRET = "S3cret+Value/With=Pad ~&"

local fake_transport = helpers.fake_transport

local function answer_json(t)
  return fake_transport(function() return 200, cjson.encode(t), {} end)
end

local visible = helpers.visible

-- the fields an info from core.failure may carry (Lua never builds an info by hand)
local CORE_FIELDS = { kind = true, status = true, attempts = true, timeout = true, request_id = true,
  client_request_id = true, code = true, message = true }
local function assert_core_info(info, what)
  assert.is_table(info, what)
  assert.is_true(core.KINDS[info.kind] ~= nil, what .. ": kind " .. tostring(info.kind))
  for k in pairs(info) do
    assert.is_true(CORE_FIELDS[k] ~= nil, what .. ": info." .. tostring(k) .. " is not a core field")
  end
end

local function mi(opts)
  opts.endpoint = opts.endpoint or (not opts.env and BASE) or nil
  return helpers.credential("managed_identity", opts)
end

describe("acscall.credential on the core's rules", function()
  describe("tokens and header values", function()
    it("a token with a C0 control byte or DEL is refused with kind auth, never shown", function()
      for _, byte in ipairs{ "\1", "\11", "\27", "\127", "\r\n", "\0" } do
        local tok = "eyJhbGciOiJub25lIn0.tokenpart" .. byte .. "X-Injected-abcdef"
        local c = mi{ transport = answer_json{ access_token = tok, expires_in = 3600 } }
        local t, msg, info = c:get_token()
        assert.is_nil(t, ("%q"):format(byte))
        assert.are.equal("auth", info.kind)
        assert.matches("unfit for a header", msg)
        assert.not_matches("tokenpart", visible(msg, info, tostring(c)), 1, true)
        assert_core_info(info, "control byte")
      end
    end)

    it("an IDENTITY_HEADER with CR/LF is refused (kind auth) before anything is sent, never shown", function()
      local t = answer_json{ access_token = "tok", expires_in = 3600 }
      local c = mi{ transport = t, env = { IDENTITY_ENDPOINT = BASE .. "/msi/token",
        IDENTITY_HEADER = "hdr-secret-value\r\nX-Injected: yes" } }
      local tok, msg, info = c:get_token()
      assert.is_nil(tok)
      assert.are.equal("auth", info.kind)
      assert.matches("IDENTITY_HEADER", msg)
      assert.are.equal(0, #t.requests)
      assert.not_matches("hdr-secret-value", visible(msg, info, tostring(c)), 1, true)
      assert_core_info(info, "identity header")
    end)

    it("expires_in -5, 1e400, NaN, over core.LIMITS.token_lifetime_max, or an expires_on in the past: refused (auth)",
      function()
      local bodies = {
        '{"access_token":"tok-1","expires_in":-5}',
        '{"access_token":"tok-1","expires_in":1e400}',
        '{"access_token":"tok-1","expires_in":NaN}',
        '{"access_token":"tok-1","expires_in":"-5"}',
        '{"access_token":"tok-1","expires_in":' .. (credential.MAX_LIFETIME + 1) .. '}',
        '{"access_token":"tok-1","expires_on":"' .. (os.time() - 60) .. '"}',
        '{"access_token":"tok-1","expires_in":3600,"expires_on":1e400}',
      }
      for _, body in ipairs(bodies) do
        local c = mi{ transport = fake_transport(function() return 200, body, {} end) }
        local tok, msg, info = c:get_token()
        assert.is_nil(tok, body)
        assert.are.equal("auth", info.kind, body)
        assert.matches("not a lifetime a token can have", msg, 1, true)
        assert_core_info(info, body)
      end
      -- a sane one still works, and its expiry is finite
      local c = mi{ transport = answer_json{ access_token = "tok-1", expires_in = "3599" } }
      local tok, exp = c:get_token()
      assert.are.equal("tok-1", tok)
      assert.is_true(exp > os.time() + 3500 and exp < os.time() + 3700)
    end)
  end)

  describe("redaction (core.redact with every secret in play)", function()
    it("a client secret the endpoint echoes, literal, percent-encoded or folded, is never shown", function()
      local enc = SECRET:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end)
      local lower = enc:gsub("%%%x%x", string.lower)
      for _, echo in ipairs{ SECRET, enc, lower, (SECRET:gsub(" ", "\n")) } do
        local t = fake_transport(function()
          return 401, cjson.encode{ error = "invalid_client", error_description = "AADSTS7000215: bad secret "
            .. echo .. " sent" }, {}
        end)
        local c = helpers.credential("client_secret", { tenant_id = "t1", client_id = "c1", client_secret = SECRET,
          authority_host = BASE, transport = t })
        local tok, msg, info = c:get_token()
        assert.is_nil(tok)
        assert.are.equal("auth", info.kind)
        assert.are.equal(401, info.status)
        assert.matches("AADSTS7000215", msg)
        local seen = visible(msg, info, tostring(c))
        assert.not_matches(echo, seen, 1, true)
        assert.not_matches("S3cret", seen, 1, true)
        assert_core_info(info, "secret echo")
      end
    end)

    it("an identity header or an assertion echoed by the endpoint is never shown", function()
      local c = mi{ env = { IDENTITY_ENDPOINT = BASE .. "/msi/token", IDENTITY_HEADER = "hdr-Secret-4d2c9e7f" },
        transport = fake_transport(function()
          return 500, cjson.encode{ statusCode = 500, message = "header hdr-Secret-4d2c9e7f was bad" }, {}
        end) }
      local _, msg, info = c:get_token()
      assert.are.equal("http", info.kind)
      assert.not_matches("hdr-Secret", visible(msg, info), 1, true)
      local file = os.tmpname()
      local f = assert(io.open(file, "w"))
      f:write("assertion-eyJ0eXAiOiJKV1QifQ.payload-7f3a\n")
      f:close()
      local w = helpers.credential("workload_identity", { tenant_id = "t1", client_id = "c1", token_file = file,
        authority_host = BASE, transport = fake_transport(function()
          return 400, cjson.encode{ error = "invalid_client",
            error_description = "AADSTS700027: assertion-eyJ0eXAiOiJKV1QifQ.payload-7f3a failed" }, {}
        end) })
      local _, wmsg, winfo = w:get_token()
      os.remove(file)
      assert.are.equal("auth", winfo.kind)
      assert.not_matches("payload-7f3a", visible(wmsg, winfo), 1, true)
    end)

    it("the access token az printed on stderr when it exited 1 is not shown (azure_cli, default)", function()
      local leaked = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJhY3MifQ.c2lnbmF0dXJlLXZhbHVl"
      local az, fake = helpers.fake_az{ exit = 1, stderr = 'ERROR: {"accessToken": "' .. leaked
        .. '", "note": "token ' .. leaked .. ' could not be saved"}' }
      finally(fake.remove)
      local tok, msg, info = helpers.credential("azure_cli", { command = az }):get_token()
      assert.is_nil(tok)
      assert.are.equal("auth", info.kind)
      assert.not_matches("c2lnbmF0dXJl", visible(msg, info), 1, true)
      assert.not_matches("eyJhdWQi", visible(msg, info), 1, true)
      assert_core_info(info, "az")
      local d = helpers.credential("default", { imds_endpoint = BASE, az_command = az, env = {},
        transport = { fetch = function() return nil, "connection refused", { kind = "transport" } end } })
      local dtok, dmsg, dinfo = d:get_token()
      assert.is_nil(dtok)
      assert.matches("azure_cli failed", dmsg)
      assert.not_matches("c2lnbmF0dXJl", visible(dmsg, dinfo), 1, true)
      assert_core_info(dinfo, "default")
    end)

    it("every failure path's info comes from core.failure (no hand-built fields)", function()
      local cases = {
        mi{ transport = fake_transport(function() return nil, "refused", { kind = "transport" } end) },
        mi{ transport = fake_transport(function() return 200, "<html>", {} end) },
        mi{ transport = fake_transport(function() return 503, "{}", {} end) },
        helpers.credential("workload_identity", { tenant_id = "t", client_id = "c", token_file = "/nonexistent/x",
          authority_host = BASE, transport = answer_json{} }),
        helpers.credential("default", { imds_endpoint = BASE, az_command = "/nonexistent/az", env = {},
          transport = { fetch = function() return nil, "connection refused", { kind = "transport" } end } }),
      }
      for i, c in ipairs(cases) do
        local tok, _, info = c:get_token()
        assert.is_nil(tok)
        assert_core_info(info, "case " .. i)
      end
    end)
  end)

  describe("az as the SDKs run it", function()
    it("runs az account get-access-token --output json --resource https://communication.azure.com/ [--tenant]",
      function()
        local az, fake = helpers.fake_az{ token = "az-token" }
        finally(fake.remove)
        assert.are.equal("az-token", (helpers.credential("azure_cli", { command = az }):get_token()))
        assert.are.equal("az-token", (helpers.credential("azure_cli", { command = az, tenant_id = "tenant-9" })
          :get_token()))
        assert.are.same({ "account get-access-token --output json --resource https://communication.azure.com/",
          "account get-access-token --output json --resource https://communication.azure.com/ --tenant tenant-9" },
          fake.calls())
      end)

    it("default: an az too old for the arguments (exit 2) is unavailable, not a refusal", function()
      local az, fake = helpers.fake_az{ exit = 2,
        stderr = "az: error: unrecognized arguments: --resource https://communication.azure.com/" }
      finally(fake.remove)
      local d = helpers.credential("default", { imds_endpoint = BASE, az_command = az, env = {},
        transport = { fetch = function() return nil, "connection refused", { kind = "transport" } end } })
      local tok, msg, info = d:get_token()
      assert.is_nil(tok)
      assert.matches("no credential available", msg)
      assert.matches("azure_cli: unavailable %(.*update the Azure CLI", info.message)
    end)

    it("default: Entra ID refusing the login ends the chain with its error", function()
      local az, fake = helpers.fake_az{ exit = 1,
        stderr = "ERROR: AADSTS700082: The refresh token has expired due to inactivity." }
      finally(fake.remove)
      local d = helpers.credential("default", { imds_endpoint = BASE, az_command = az, env = {},
        transport = { fetch = function() return nil, "connection refused", { kind = "transport" } end } })
      local tok, msg, info = d:get_token()
      assert.is_nil(tok)
      assert.are.equal("auth", info.kind)
      assert.matches("default: azure_cli failed: .*AADSTS700082", msg)
    end)

    it("a missing az: the message names az_command / command and ACSCALL_AZURE_CLI", function()
      local tok, msg = helpers.credential("azure_cli", { command = "/nonexistent/az" }):get_token()
      assert.is_nil(tok)
      assert.matches("set command (or ACSCALL_AZURE_CLI)", msg, 1, true)
      local d = helpers.credential("default", { imds_endpoint = BASE, az_command = "/nonexistent/az", env = {},
        transport = { fetch = function() return nil, "connection refused", { kind = "transport" } end } })
      local _, _, info = d:get_token()
      assert.matches("set az_command (or ACSCALL_AZURE_CLI)", info.message, 1, true)
      -- and the loopback net's refusal says which option to set
      local ok, err = pcall(credential.default, { env = {}, imds_endpoint = BASE })
      assert.is_false(ok)
      assert.matches("az_command", err, 1, true)
      assert.matches("ACSCALL_AZURE_CLI", err, 1, true)
    end)
  end)

  describe("managed identity as msal-node 3.8 sends it", function()
    it("object_id: IMDS and App Service both as object_id; one of client_id/resource_id/object_id", function()
      local c = mi{ object_id = "obj-1" }
      assert.matches("&object_id=obj%-1$", c.url)
      local a = mi{ object_id = "obj-2", env = { IDENTITY_ENDPOINT = BASE .. "/msi/token", IDENTITY_HEADER = "h" } }
      assert.matches("&object_id=obj%-2$", a.url)
      local r = mi{ resource_id = "/sub/x", env = { IDENTITY_ENDPOINT = BASE .. "/msi/token", IDENTITY_HEADER = "h" } }
      assert.matches("&mi_res_id=%%2Fsub%%2Fx$", r.url)
      assert.matches("&msi_res_id=", mi{ resource_id = "/sub/x" }.url)
      assert.has_error(function() credential.managed_identity{ endpoint = BASE, client_id = "a", object_id = "b" } end)
      assert.matches("object_id obj%-1", tostring(c))
    end)

    it("AZURE_POD_IDENTITY_AUTHORITY_HOST: the token path with msal-node's trailing slash", function()
      local c = mi{ env = { AZURE_POD_IDENTITY_AUTHORITY_HOST = BASE } }
      assert.are.equal(BASE .. "/metadata/identity/oauth2/token/?api-version=2018-02-01&resource="
        .. "https%3A%2F%2Fcommunication.azure.com%2F", c.url)
      assert.are.equal(BASE .. "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="
        .. "https%3A%2F%2Fcommunication.azure.com%2F", mi{}.url)
    end)

    it("default probes IMDS as the SDK does (no query, Accept only), and not with a pod-identity host", function()
      local t = fake_transport(function(req)
        if not (req.headers or {}).Metadata then return 400, "{}", {} end
        return 200, cjson.encode{ access_token = "mi-tok", expires_in = 3600 }, {}
      end)
      local d = helpers.credential("default", { imds_endpoint = BASE, az_command = "/nonexistent/az", env = {},
        transport = t })
      assert.are.equal("mi-tok", (d:get_token()))
      assert.are.equal(2, #t.requests)
      assert.are.equal(BASE .. "/metadata/identity/oauth2/token", t.requests[1].url)
      assert.are.same({ Accept = "application/json" }, t.requests[1].headers)
      assert.are.equal(0, t.requests[1].retries)
      -- pod identity: no probe, the token request first
      local t2 = fake_transport(function() return 200, cjson.encode{ access_token = "pod-tok", expires_in = 3600 }, {} end)
      local d2 = helpers.credential("default", { az_command = "/nonexistent/az", transport = t2,
        env = { AZURE_POD_IDENTITY_AUTHORITY_HOST = BASE } })
      assert.are.equal("pod-tok", (d2:get_token()))
      assert.are.equal(1, #t2.requests)
      assert.are.equal("true", t2.requests[1].headers.Metadata)
    end)

    it("default: a pod-identity host that does not answer is unavailable: the chain moves on to az", function()
      local az, fake = helpers.fake_az{ token = "az-after-pod" }
      finally(fake.remove)
      local t = fake_transport(function() return nil, "connection refused", { kind = "transport" } end)
      local d = helpers.credential("default", { az_command = az, transport = t,
        env = { AZURE_POD_IDENTITY_AUTHORITY_HOST = BASE } })
      assert.are.equal("az-after-pod", (d:get_token()))
      assert.are.equal(1, #t.requests, "no probe, one token request")
    end)

    it("IMDS, App Service and the authority carry the SDK's retry classes and schedules as data", function()
        local t = answer_json{ access_token = "tok", expires_in = 3600 }
        mi{ transport = t }:get_token()
        local r = t.requests[1].retries
        assert.is_table(r)
        assert.are.same(credential.RETRY.imds, r)
        assert.are.same({ 404, 408, 410, 429, 500, 502, 503, 504 }, r.statuses)
        assert.are.same({ max = 5, base_delay = 0.8 }, r.by_status[404])
        assert.are.same({ max = 5, base_delay = 3, min_total = 70 }, r.by_status[410])
        local ta = answer_json{ access_token = "tok", expires_in = 3600 }
        mi{ transport = ta, env = { IDENTITY_ENDPOINT = BASE .. "/msi/token", IDENTITY_HEADER = "h" } }:get_token()
        assert.are.same(r, ta.requests[1].retries)
        local tc = answer_json{ access_token = "tok", expires_in = 3600 }
        helpers.credential("client_secret", { tenant_id = "t", client_id = "c", client_secret = SECRET,
          authority_host = BASE, transport = tc }):get_token()
        assert.are.same(credential.RETRY.authority, tc.requests[1].retries)
        -- retry_scale (tests) scales every delay; a number of retries applies to every status
        local ts = answer_json{ access_token = "tok", expires_in = 3600 }
        mi{ transport = ts, retry_scale = 0.01 }:get_token()
        local s = ts.requests[1].retries
        assert.is_true(math.abs(s.by_status[410].min_total - 0.7) < 1e-9 and math.abs(s.base_delay - 0.01) < 1e-9)
        local tn = answer_json{ access_token = "tok", expires_in = 3600 }
        mi{ transport = tn, retries = 1 }:get_token()
        assert.are.equal(1, tn.requests[1].retries.max)
        assert.is_nil(tn.requests[1].retries.by_status[404].max)
        assert.has_error(function() mi{ retry_scale = 0 } end)
      end)
  end)

  describe("the refresh point (MSAL)", function()
    it("over 2 h: half the life; refresh_in wins; 1 h: 5 minutes before; short: half", function()
      local t0 = 1000
      assert.are.equal(t0 + 43200, credential._refresh_point(t0, t0 + 86400)) -- 24 h managed identity token
      assert.are.equal(t0 + 3 * 3600, credential._refresh_point(t0, t0 + 6 * 3600))
      assert.are.equal(t0 + 7200 - 300, credential._refresh_point(t0, t0 + 7200)) -- exactly 2 h: not over
      assert.are.equal(t0 + 3300, credential._refresh_point(t0, t0 + 3600))
      assert.are.equal(t0 + 1000, credential._refresh_point(t0, t0 + 86400, t0 + 1000))
      assert.are.equal(t0 + 1, credential._refresh_point(t0, t0 + 2))
    end)

    it("a 24 h token is fetched again after 12 h, not 23 h 55 min", function()
      local t = fake_transport(function(_, n)
        return 200, cjson.encode{ access_token = "tok-" .. n, expires_in = 86400 }, {}
      end)
      local c = mi{ transport = t }
      local real = credential._clock
      local now = real()
      credential._clock = function() return now end
      finally(function() credential._clock = real end)
      assert.are.equal("tok-1", (c:get_token()))
      now = now + 43199
      assert.are.equal("tok-1", (c:get_token()))
      now = now + 2
      assert.are.equal("tok-2", (c:get_token()))
    end)
  end)
end)

describe("acscall.credential against the emulator: IMDS 404 and 410 as the SDK retries them", function()
  local emu
  lazy_setup(function() emu = helpers.start_emulator{} end)
  lazy_teardown(function() if emu then emu:stop() end end)

  -- tiny delays: the schedule's shape is the SDK's, its scale the spec's
  local FAST = 0.01 -- retry_scale

  for _, code in ipairs{ 404, 410 } do
    it("IMDS answering " .. code .. " twice: the token comes on the third try", function()
      local id = "mi-" .. os.time() .. "-fault-" .. code .. "x2"
      local c = helpers.credential("managed_identity", { client_id = id, retry_scale = FAST,
        env = helpers.identity_env(emu) })
      local tok, msg = c:get_token()
      assert.is_string(tok, msg)
      local st = {}
      for _, r in ipairs(emu:token_requests{ client_id = id }) do st[#st + 1] = r.status end
      assert.are.same({ code, code, 200 }, st)
    end)
  end

  it("App Service answering 410 once recovers too; 6 answers of 404 exhaust the 5 retries", function()
    local id = "as-" .. os.time() .. "-fault-410x1"
    local c = helpers.credential("managed_identity", { client_id = id, retry_scale = FAST,
      env = { IDENTITY_ENDPOINT = emu:url("/msi/token"), IDENTITY_HEADER = emu.identity_header } })
    assert.is_string((c:get_token()))
    local id2 = "mi-" .. os.time() .. "-fault-404x9"
    local c2 = helpers.credential("managed_identity", { client_id = id2, retry_scale = FAST,
      env = helpers.identity_env(emu) })
    local tok, msg, info = c2:get_token()
    assert.is_nil(tok)
    assert.are.equal(404, info.status)
    assert.matches("404", msg)
    assert.are.equal(6, #emu:token_requests{ client_id = id2 })
  end)
end)
