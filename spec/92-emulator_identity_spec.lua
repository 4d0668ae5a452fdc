-- Specs for the emulator's identity side: the IMDS, App Service and OAuth2 token
-- endpoints, issued tokens on Get Call, lifetimes, faults and the request log, driven with plain
-- HTTP from the test side (luasocket; the curl CLI for TLS).
local helpers = require "spec.helpers"
local cjson = require "cjson.safe"

local RESOURCE = "https://communication.azure.com"
local SCOPE = "https://communication.azure.com//.default"
local ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
local EXPIRED = "The access token has expired."

local decode = helpers.decode_json

-- a name no other spec (or earlier run against the same emulator) uses: fault counters are per name
local serial = 0
local function unique(name)
  serial = serial + 1
  return name .. "-" .. os.time() .. "-" .. serial
end

local function query(t)
  return "?" .. helpers.form_encode(t)
end

describe("acs-emulator identity side", function()
  local e

  lazy_setup(function() e = helpers.start_emulator() end)
  lazy_teardown(function() if e then e:stop() end end)

  local function imds(q, headers)
    local t = { ["api-version"] = "2018-02-01", resource = RESOURCE }
    for k, v in pairs(q or {}) do t[k] = v end
    local status, body, h = e:get("/metadata/identity/oauth2/token" .. query(t), headers or { Metadata = "true" })
    return status, decode(body), h
  end

  local function app_service(q, headers)
    local t = { ["api-version"] = "2019-08-01", resource = RESOURCE }
    for k, v in pairs(q or {}) do t[k] = v end
    local status, body, h = e:get("/msi/token" .. query(t),
      headers or { ["X-IDENTITY-HEADER"] = e.identity_header })
    return status, decode(body), h
  end

  local function oauth2(tenant, form, headers)
    local t = { grant_type = "client_credentials", client_id = "app", scope = SCOPE }
    for k, v in pairs(form or {}) do t[k] = v end
    if not t.client_assertion then t.client_secret = t.client_secret or e.client_secret end
    local status, body, h = e:post("/" .. tenant .. "/oauth2/v2.0/token", t, headers)
    return status, decode(body), h
  end

  -- Get Call with a bearer token
  local function call(token)
    local status, body = e:get(e:call_path("minimal"), { authorization = "Bearer " .. token })
    return status, decode(body)
  end

  describe("IMDS", function()
    it("issues a token shaped like IMDS's that Get Call accepts", function()
      e:clear_log()
      local t0 = os.time()
      local status, v, h = imds()
      assert.equal(200, status)
      assert.equal("application/json", h["content-type"])
      assert.equal("Bearer", v.token_type)
      assert.equal(RESOURCE, v.resource)
      assert.equal("3600", v.expires_in)
      assert.equal("3600", v.ext_expires_in)
      assert.is_string(v.expires_on)
      assert.is_true(math.abs(tonumber(v.expires_on) - (t0 + 3600)) <= 2, v.expires_on)
      assert.is_string(v.not_before)
      assert.matches("^emu1%.%x+$", v.access_token)
      assert.not_equal(v.access_token, (select(2, imds())).access_token)
      local r = e:token_requests()[1]
      assert.same({ endpoint = "imds", resource = RESOURCE, ttl = 3600, expires_on = tonumber(v.expires_on),
                    token_fp = helpers.fingerprint(v.access_token) }, r.identity)
      assert.equal("metadata", r.auth)
      assert.equal("imds", r.route)

      assert.equal(200, (call(v.access_token)))
      local c = e:last_request()
      assert.equal("issued", c.auth)
      assert.equal(helpers.fingerprint(v.access_token), c.token_fp)
    end)

    it("takes client_id or msi_res_id (logged), not two identities at once", function()
      e:clear_log()
      local status, v = imds{ client_id = "my-client" }
      assert.equal(200, status)
      assert.equal("my-client", v.client_id)
      assert.equal(200, (imds{ msi_res_id = "/subscriptions/x/rg/y" }))
      local r = e:token_requests()
      assert.equal("my-client", r[1].identity.client_id)
      assert.equal("/subscriptions/x/rg/y", r[2].identity.resource_id)
      status, v = imds{ client_id = "a", msi_res_id = "b" }
      assert.equal(400, status)
      assert.equal("invalid_request", v.error)
      assert.is_nil(v.access_token)
    end)

    it("400 without the Metadata: true header, resource or api-version; 405 for POST", function()
      e:clear_log()
      for _, h in ipairs{ {}, { Metadata = "false" }, { Metadata = "True " } } do
        local status, v = imds(nil, h)
        assert.equal(400, status)
        assert.same({ error = "invalid_request", error_description = "Required metadata header not specified" }, v)
      end
      assert.equal("fail:missing Metadata header", e:last_request().auth)
      local status, body = e:get("/metadata/identity/oauth2/token?api-version=2018-02-01", { Metadata = "true" })
      assert.equal(400, status)
      assert.matches("'resource'", decode(body).error_description)
      status, body = e:get("/metadata/identity/oauth2/token?resource=x", { Metadata = "true" })
      assert.equal(400, status)
      assert.matches("'api%-version'", decode(body).error_description)
      status = e:post("/metadata/identity/oauth2/token" .. query{ ["api-version"] = "2018-02-01", resource = "x" },
        {}, { Metadata = "true" })
      assert.equal(405, status)
      assert.equal(0, #e:token_requests{ status = 200 })
    end)
  end)

  describe("App Service", function()
    it("issues a token for the right X-IDENTITY-HEADER that Get Call accepts", function()
      e:clear_log()
      local status, v = app_service{ client_id = "app-client" }
      assert.equal(200, status)
      assert.equal("Bearer", v.token_type)
      assert.equal(RESOURCE, v.resource)
      assert.equal("app-client", v.client_id)
      assert.is_string(v.expires_on)
      assert.is_true(math.abs(tonumber(v.expires_on) - (os.time() + 3600)) <= 2)
      assert.equal(200, (call(v.access_token)))
      local r = e:token_requests{ endpoint = "app_service" }
      assert.equal(1, #r)
      assert.equal("identity_header", r[1].auth)
      assert.equal("app-client", r[1].identity.client_id)
      assert.equal("<redacted>", r[1].headers["x-identity-header"])
      assert.equal(200, (app_service{ mi_res_id = "/subscriptions/x" }))
      assert.equal("/subscriptions/x", e:token_requests{ endpoint = "app_service" }[2].identity.resource_id)
    end)

    it("400 without the header, 401 with a wrong one, 400 without resource", function()
      e:clear_log()
      local status, v = app_service(nil, {})
      assert.equal(400, status)
      assert.equal(400, v.statusCode)
      assert.is_string(v.message)
      status, v = app_service(nil, { ["X-IDENTITY-HEADER"] = "not-the-header" })
      assert.equal(401, status)
      assert.equal(401, v.statusCode)
      assert.is_nil(v.access_token)
      local status2, body = e:get("/msi/token?api-version=2019-08-01", { ["X-IDENTITY-HEADER"] = e.identity_header })
      assert.equal(400, status2)
      assert.matches("'resource'", decode(body).message)
      local r = e:token_requests()
      assert.same({ "fail:missing X-IDENTITY-HEADER", "fail:wrong X-IDENTITY-HEADER", "identity_header" },
        { r[1].auth, r[2].auth, r[3].auth })
      assert.is_nil(helpers.read_file(e.log_path):find("not-the-header", 1, true))
    end)
  end)

  describe("OAuth2", function()
    it("client secret: an AAD-shaped answer whose token Get Call accepts", function()
      e:clear_log()
      local status, v = oauth2("my-tenant", { client_id = "my-app" })
      assert.equal(200, status)
      assert.same({ "access_token", "expires_in", "ext_expires_in", "token_type" },
        (function() local k = {} for n in pairs(v) do k[#k + 1] = n end table.sort(k) return k end)())
      assert.equal("Bearer", v.token_type)
      assert.equal(3600, v.expires_in)
      assert.equal(3600, v.ext_expires_in)
      assert.equal(200, (call(v.access_token)))
      local r = e:token_requests{ tenant = "my-tenant" }
      assert.equal(1, #r)
      assert.equal("POST", r[1].method)
      assert.equal("client_secret", r[1].auth)
      assert.same({ endpoint = "oauth2", tenant = "my-tenant", client_id = "my-app", scope = SCOPE,
                    grant = "client_secret", ttl = 3600, expires_on = r[1].identity.expires_on,
                    token_fp = helpers.fingerprint(v.access_token) }, r[1].identity)
    end)

    it("client assertion (workload identity): accepted when it starts with emulator-assertion", function()
      e:clear_log()
      local assertion = "emulator-assertion.eyJhbGciOi.signed-" .. os.time()
      local status, v = oauth2("wi-tenant", { client_assertion = assertion, client_assertion_type = ASSERTION_TYPE })
      assert.equal(200, status)
      assert.equal(200, (call(v.access_token)))
      local r = e:token_requests{ tenant = "wi-tenant" }[1]
      assert.equal("client_assertion", r.auth)
      assert.equal("client_assertion", r.identity.grant)
      assert.equal(helpers.fingerprint(assertion), r.identity.assertion_fp)
    end)

    it("401 invalid_client for a wrong secret or assertion, echoing neither, issuing nothing", function()
      e:clear_log()
      local status, v = oauth2("t", { client_secret = "wrong-secret-value" })
      assert.equal(401, status)
      assert.equal("invalid_client", v.error)
      assert.matches("^AADSTS7000215: ", v.error_description)
      assert.same({ 7000215 }, v.error_codes)
      assert.is_nil(cjson.encode(v):find("wrong-secret-value", 1, true))
      status, v = oauth2("t", { client_assertion = "forged-assertion", client_assertion_type = ASSERTION_TYPE })
      assert.equal(401, status)
      assert.equal("invalid_client", v.error)
      assert.is_nil(cjson.encode(v):find("forged-assertion", 1, true))
      local r = e:token_requests()
      assert.equal("fail:invalid client secret", r[1].auth)
      assert.equal("fail:invalid client assertion", r[2].auth)
      assert.is_nil(r[1].identity.token_fp)
      assert.is_nil(r[2].identity.token_fp)
      assert.equal("invalid_client", r[1].identity.error)
    end)

    it("400 for a malformed request", function()
      local cases = {
        { { grant_type = "" }, "invalid_request", "'grant_type'" },
        { { client_id = "" }, "invalid_request", "'client_id'" },
        { { scope = "" }, "invalid_request", "'scope'" },
        { { grant_type = "password" }, "unsupported_grant_type" },
        { { scope = RESOURCE }, "invalid_scope" },
        { { client_assertion = "emulator-assertion-x", client_assertion_type = ASSERTION_TYPE,
            client_secret = e.client_secret }, "invalid_request" },
        { { client_assertion = "emulator-assertion-x" }, "invalid_request", "client_assertion_type" },
      }
      for i, c in ipairs(cases) do
        local status, v = oauth2("t", c[1])
        assert.equal(400, status, i)
        assert.equal(c[2], v.error, i)
        if c[3] then assert.matches(c[3], v.error_description, 1, true) end
      end
      -- not a form, not a POST, a repeated parameter
      local status, body = e:post("/t/oauth2/v2.0/token", cjson.encode{ grant_type = "client_credentials" },
        { ["content-type"] = "application/json" })
      assert.equal(400, status)
      assert.equal("invalid_request", decode(body).error)
      status, body = e:get("/t/oauth2/v2.0/token")
      assert.equal(400, status)
      assert.matches("^AADSTS900561", decode(body).error_description)
      status = e:post("/t/oauth2/v2.0/token", "grant_type=client_credentials&client_id=a&client_id=b&scope=x%2F.default"
        .. "&client_secret=" .. e.client_secret)
      assert.equal(400, status)
    end)
  end)

  describe("token lifetime", function()
    it("a client_id ending in -ttl<N> gets N-second tokens, accepted until then, then 401 expired #slow", function()
      local tokens = {}
      local t0 = helpers.now()
      -- each used at once: valid (this fails only if the machine stalls for 2 s in between); then
      -- a real wait (#slow): the emulator expires tokens by its own clock
      local function valid(name, status, v)
        assert.equal(200, status, name)
        assert.equal(200, (call(v.access_token)), name)
        tokens[name] = v.access_token
        return v
      end
      assert.equal("2", valid("imds", imds{ client_id = "mi-ttl2" }).expires_in)
      assert.is_true(tonumber(valid("app_service", app_service{ client_id = "as-ttl2" }).expires_on) <= os.time() + 2)
      assert.equal(2, valid("oauth2", oauth2("ttl-tenant", { client_id = "app-ttl2" })).expires_in)
      helpers.sleep(math.max(0, 2.2 - (helpers.now() - t0)))
      e:clear_log()
      for name, token in pairs(tokens) do
        local s, err = call(token)
        assert.equal(401, s, name)
        assert.same({ error = { code = "Unauthorized", message = EXPIRED } }, err)
      end
      local c = e:calls{ status = 401 }
      assert.equal(3, #c)
      assert.equal("fail:" .. EXPIRED, c[1].auth)
      -- the static token still works, an unknown one is invalid (not expired)
      assert.equal(200, (call(e.token)))
      local s, err = call("emu1.0000")
      assert.equal(401, s)
      assert.equal("invalid bearer token", err.error.message)
    end)

    it("-ttl0: a token that is expired at once", function()
      local _, v = oauth2("t0", { client_id = "app-ttl0" })
      assert.equal(0, v.expires_in)
      local s, err = call(v.access_token)
      assert.equal(401, s)
      assert.equal(EXPIRED, err.error.message)
    end)

    it("keeps more than 2,000 tokens (the first of 2,500 still works)", function()
      local socket = require "socket"
      local c = assert(socket.tcp())
      c:settimeout(10)
      assert(c:connect("127.0.0.1", e.port))
      local req = "GET /metadata/identity/oauth2/token" .. query{ ["api-version"] = "2018-02-01", resource = "r" }
        .. " HTTP/1.1\r\nHost: " .. e.host .. "\r\nMetadata: true\r\n\r\n"
      local first
      for _ = 1, 25 do -- 25 pipelined rounds of 100 on one keep-alive connection
        assert(c:send(string.rep(req, 100)))
        for _ = 1, 100 do
          local status = assert(c:receive("*l"))
          assert.matches("^HTTP/1%.1 200", status)
          local len
          repeat
            local line = assert(c:receive("*l"))
            len = len or tonumber(line:lower():match("^content%-length: (%d+)"))
          until line == ""
          local body = assert(c:receive(len))
          first = first or decode(body).access_token
        end
      end
      c:close()
      assert.equal(200, (call(first)))
      e:clear_log()
    end)
  end)

  describe("faults", function()
    it("a client_id containing fault-503x<K>: K answers 503 with Retry-After: 0, then tokens", function()
      local ids = { imds = unique("mi-fault-503x2"), app_service = unique("as-fault-503x2"),
                    oauth2 = unique("app-fault-503x2") }
      local fetch = {
        imds = function() return imds{ client_id = ids.imds } end,
        app_service = function() return app_service{ client_id = ids.app_service } end,
        oauth2 = function() return oauth2("t", { client_id = ids.oauth2 }) end,
      }
      for name, f in pairs(fetch) do
        local seq = {}
        for i = 1, 3 do
          local status, v, h = f()
          seq[i] = status
          if status == 503 then
            assert.equal("0", h["retry-after"], name)
            assert.is_nil(v.access_token)
          else
            assert.is_string(v.access_token)
          end
        end
        assert.same({ 503, 503, 200 }, seq, name)
        local r = e:token_requests{ client_id = ids[name] }
        assert.same({ "503", "503", cjson.null }, { r[1].fault, r[2].fault, r[3].fault }, name)
      end
    end)

    it("a tenant containing fault-429x<K>; counted per selector; 503 then 429 when both", function()
      local tenant = unique("tenant-fault-429x1")
      local status, v, h = oauth2(tenant)
      assert.equal(429, status)
      assert.equal("0", h["retry-after"])
      assert.equal("temporarily_unavailable", v.error)
      assert.is_nil(v.access_token)
      assert.equal(200, (oauth2(tenant, { client_id = "other-app" })))
      assert.equal(429, (oauth2(unique("tenant-fault-429x1")))) -- another selector, its own count
      local id = unique("mi-fault-503x1-fault-429x1")
      local seq = {}
      for i = 1, 3 do seq[i] = (imds{ client_id = id }) end
      assert.same({ 503, 429, 200 }, seq)
    end)

    it("a client_id or tenant containing slow<MS>ms is answered after MS ms, not holding up others", function()
      local socket = require "socket"
      local c = assert(socket.tcp())
      c:settimeout(5)
      assert(c:connect("127.0.0.1", e.port))
      local t0 = helpers.now()
      assert(c:send("GET /metadata/identity/oauth2/token" .. query{ ["api-version"] = "2018-02-01",
        resource = RESOURCE, client_id = "mi-slow400ms" } .. " HTTP/1.1\r\nHost: " .. e.host
        .. "\r\nMetadata: true\r\n\r\n"))
      assert.equal(200, (oauth2("t", { client_id = "fast" }))) -- meanwhile, at once
      local fast = helpers.now() - t0
      assert.matches("^HTTP/1%.1 200", assert(c:receive("*l")))
      local slow = helpers.now() - t0
      c:close()
      assert.is_true(fast < 0.3 * helpers.slow, "the other request took " .. fast .. " s")
      assert.is_true(slow >= 0.38 and slow < 5 * helpers.slow, "the slow one took " .. slow .. " s")
      local t1 = helpers.now()
      assert.equal(200, (oauth2("tenant-slow150ms")))
      assert.is_true(helpers.now() - t1 >= 0.14)
    end)

    it("faults come after the request checks: a bad request is still a 400", function()
      local id = unique("mi-fault-503x1")
      assert.equal(400, (imds({ client_id = id }, {})))
      assert.equal(503, (imds{ client_id = id }))
    end)
  end)

  describe("as a stand-in for @azure/identity", function()
    it("IMDS's token path with a trailing slash (msal-node's pod-identity URL) issues a token", function()
      local q = query{ ["api-version"] = "2018-02-01", resource = RESOURCE .. "/" }
      local status, body = e:get("/metadata/identity/oauth2/token/" .. q, { Metadata = "true" })
      assert.equal(200, status, body)
      local v = decode(body)
      assert.matches("^emu1%.", v.access_token)
      assert.equal(200, (call(v.access_token)))
    end)

    it("serves /{tenant}/v2.0/.well-known/openid-configuration with endpoints on itself", function()
      local status, body, h = e:get("/tenant-1/v2.0/.well-known/openid-configuration")
      assert.equal(200, status, body)
      assert.equal("application/json", h["content-type"])
      local v = decode(body)
      local base = e.endpoint:gsub("/$", "") .. "/tenant-1"
      assert.equal(base .. "/oauth2/v2.0/token", v.token_endpoint)
      assert.equal(base .. "/oauth2/v2.0/authorize", v.authorization_endpoint)
      assert.equal(base .. "/v2.0", v.issuer)
      assert.equal(base .. "/discovery/v2.0/keys", v.jwks_uri)
      -- the token endpoint it names works
      local st, tok = oauth2("tenant-1")
      assert.equal(200, st)
      assert.matches("^emu1%.", tok.access_token)
    end)

    it("App Service takes object_id (what msal-node sends) and logs it; not with client_id", function()
      e:clear_log()
      local status, v = app_service{ object_id = "obj-1" }
      assert.equal(200, status)
      assert.matches("^emu1%.", v.access_token)
      assert.equal("obj-1", e:token_requests()[1].identity.object_id)
      assert.equal(400, (app_service{ object_id = "obj-1", client_id = "c" }))
      status = imds{ object_id = "obj-2" }
      assert.equal(200, status)
    end)

    it("fault-410x<K> and fault-404x<K>: K answers without Retry-After, then tokens", function()
      for _, code in ipairs{ 410, 404 } do
        local id = unique("mi-fault-" .. code .. "x2")
        local a, _, h = imds{ client_id = id }
        assert.equal(code, a)
        assert.is_nil(h["retry-after"])
        assert.equal(code, (imds{ client_id = id }))
        assert.equal(200, (imds{ client_id = id }))
        local sa = app_service{ client_id = unique("as-fault-" .. code .. "x1") }
        assert.equal(code, sa)
      end
    end)
  end)

  describe("request log", function()
    it("counts token requests per endpoint, client_id and tenant, and shows Get Call's 401s", function()
      e:clear_log()
      local _, a = imds{ client_id = "client-a" }
      imds{ client_id = "client-a" }
      imds{ client_id = "client-b" }
      app_service{ client_id = "client-a" }
      oauth2("tenant-1", { client_id = "client-a" })
      oauth2("tenant-2", { client_id = "client-c", client_secret = "wrong" })
      call(a.access_token)
      call("not-a-token")
      assert.equal(6, #e:token_requests())
      assert.equal(3, #e:token_requests{ endpoint = "imds" })
      assert.equal(2, #e:token_requests{ endpoint = "imds", client_id = "client-a" })
      assert.equal(4, #e:token_requests{ client_id = "client-a" })
      assert.equal(1, #e:token_requests{ endpoint = "app_service" })
      assert.equal(2, #e:token_requests{ endpoint = "oauth2" })
      assert.equal(1, #e:token_requests{ path_prefix = "/tenant-1/" })
      assert.equal(1, #e:token_requests{ tenant = "tenant-2", status = 401 })
      assert.equal(5, #e:token_requests{ status = 200 })
      assert.equal(2, #e:calls())
      assert.equal(1, #e:calls{ status = 200, auth = "issued", token_fp = helpers.fingerprint(a.access_token) })
      assert.equal(1, #e:calls{ status = 401, auth = "fail:invalid bearer token" })
      assert.equal(8, #e:log_entries())
    end)

    it("never holds a secret, an assertion, an identity header or a token", function()
      e:clear_log()
      local assertion = "emulator-assertion." .. string.rep("A", 40)
      local secrets = { e.client_secret, e.identity_header, assertion, "wrong-secret-1234",
                        "forged-assertion-5678", "wrong-header-9012" }
      local _, v1 = imds{ client_id = "c" }
      local _, v2 = app_service{ client_id = "c" }
      local _, v3 = oauth2("t", { client_id = "c" })
      local _, v4 = oauth2("t", { client_assertion = assertion, client_assertion_type = ASSERTION_TYPE })
      oauth2("t", { client_secret = "wrong-secret-1234" })
      oauth2("t", { client_assertion = "forged-assertion-5678", client_assertion_type = ASSERTION_TYPE })
      app_service(nil, { ["X-IDENTITY-HEADER"] = "wrong-header-9012" })
      for _, v in ipairs{ v1, v2, v3, v4 } do
        assert.is_string(v.access_token)
        secrets[#secrets + 1] = v.access_token
        secrets[#secrets + 1] = v.access_token:sub(6) -- without its "emu1." prefix
        call(v.access_token)
      end
      local s = helpers.read_file(e.log_path)
      assert.equal(11, #e:log())
      for _, secret in ipairs(secrets) do
        assert.is_nil(s:find(secret, 1, true), secret)
      end
    end)
  end)
end)

describe("acs-emulator identity side with the core's fetcher and a credential object", function()
  local acscall = require "acscall"
  local core = require "acscall.core"
  local e, f

  lazy_setup(function()
    e = helpers.start_emulator()
    f = core.fetcher{ retries = { max = 3, base_delay = 0.01, max_delay = 0.02 } }
  end)
  lazy_teardown(function()
    if f then f:close() end
    if e then e:stop() end
  end)

  -- a token from the emulator's IMDS endpoint (client_id chooses lifetime and faults)
  local function imds_token(client_id)
    local status, body, _, attempts = f:fetch{ url = e:url("/metadata/identity/oauth2/token"
      .. query{ ["api-version"] = "2018-02-01", resource = RESOURCE, client_id = client_id }),
      headers = { Metadata = "true" } }
    assert.equal(200, status, body)
    local v = decode(body)
    return v.access_token, tonumber(v.expires_on), attempts
  end

  it("the fetcher's form gets an OAuth2 token through a 503, and Get Call takes it", function()
    local tenant = unique("t-fault-503x1")
    local status, body, _, attempts = f:fetch{ url = e.authority_host .. "/" .. tenant .. "/oauth2/v2.0/token",
      form = { grant_type = "client_credentials", client_id = "app", scope = SCOPE, client_secret = e.client_secret } }
    assert.equal(200, status, body)
    assert.equal(2, attempts)
    local token = decode(body).access_token
    local c = acscall.new{ endpoint = e.endpoint, credential = { get_token = function() return token end } }
    e:clear_log()
    assert.equal("minimal", c:get_call("minimal").callConnectionId)
    c:close()
    assert.equal(1, #e:calls{ status = 200, auth = "issued", token_fp = helpers.fingerprint(token) })
  end)

  it("an expired issued token: 401, one forced refresh, then the call succeeds", function()
    local cred = { fetched = 0 }
    function cred:get_token(opts)
      if not self.token or (opts and opts.force_refresh) then
        self.fetched = self.fetched + 1
        -- the first token is expired at once (-ttl0), the refreshed one lives an hour
        self.token, self.expires_on = imds_token(self.fetched == 1 and "mi-ttl0" or "mi")
      end
      return self.token, self.expires_on
    end
    local c = acscall.new{ endpoint = e.endpoint, credential = cred }
    e:clear_log()
    local call, err = c:get_call("minimal")
    c:close()
    assert.is_nil(err, err)
    assert.equal("minimal", call.callConnectionId)
    assert.equal(2, cred.fetched)
    assert.equal(2, #e:token_requests{ endpoint = "imds" })
    local calls = e:calls()
    assert.equal(2, #calls)
    assert.same({ 401, "fail:" .. EXPIRED }, { calls[1].status, calls[1].auth })
    assert.same({ 200, "issued" }, { calls[2].status, calls[2].auth })
    assert.not_equal(calls[1].token_fp, calls[2].token_fp)
  end)
end)

describe("acs-emulator identity options", function()
  it("--token-ttl, --client-secret and --identity-header", function()
    local e = helpers.start_emulator{ token_ttl = 1, client_secret = "my.secret~value", identity_header = "hdr-123" }
    local ok, err = pcall(function()
      assert.equal(1, e.token_ttl)
      assert.equal("my.secret~value", e.client_secret)
      assert.equal(401, (e:post("/t/oauth2/v2.0/token", { grant_type = "client_credentials", client_id = "a",
        scope = SCOPE, client_secret = "emulator-client-secret" })))
      local status, body = e:post("/t/oauth2/v2.0/token", { grant_type = "client_credentials", client_id = "a",
        scope = SCOPE, client_secret = "my.secret~value" })
      assert.equal(200, status)
      assert.equal(1, decode(body).expires_in)
      local q = query{ ["api-version"] = "2019-08-01", resource = RESOURCE }
      assert.equal(401, (e:get("/msi/token" .. q, { ["X-IDENTITY-HEADER"] = "emulator-identity-header" })))
      status, body = e:get("/msi/token" .. q, { ["X-IDENTITY-HEADER"] = "hdr-123" })
      assert.equal(200, status)
      assert.is_true(tonumber(decode(body).expires_on) <= os.time() + 1)
      -- the per-client override wins over --token-ttl
      status, body = e:get("/metadata/identity/oauth2/token" .. query{ ["api-version"] = "2018-02-01",
        resource = RESOURCE, client_id = "x-ttl30" }, { Metadata = "true" })
      assert.equal(200, status)
      assert.equal("30", decode(body).expires_in)
      assert.is_nil(helpers.read_file(e.dir .. "/requests.log"):find("my.secret~value", 1, true))
    end)
    e:stop()
    assert(ok, err)
  end)

  it("refuses bad option values", function()
    local q = helpers.shell_quote
    for _, args in ipairs{ "--token-ttl 1.5", "--token-ttl -1", "--client-secret 'a b'",
                           "--identity-header 'x]==]y'" } do
      local out, ok, rc = helpers.run(q(helpers.emulator_cmd) .. " start " .. args .. " 2>&1")
      assert.is_false(ok, args .. ": " .. out)
      assert.equal(1, rc, args)
      assert.is_truthy(out:find("may only contain", 1, true) or out:find("whole number", 1, true), out)
    end
  end)

  it("serves the token endpoints over TLS too", function()
    local e = helpers.start_emulator{ tls = true }
    local out, ok = helpers.run("curl -s --max-time 5 --cacert " .. helpers.shell_quote(e.ca_file)
      .. " -H 'Metadata: true' " .. helpers.shell_quote(e:url("/metadata/identity/oauth2/token"
      .. query{ ["api-version"] = "2018-02-01", resource = RESOURCE })))
    e:stop()
    assert.is_true(ok, out)
    assert.matches("^emu1%.", decode(out).access_token)
  end)
end)
