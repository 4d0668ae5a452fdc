-- acscall.credential against the official SDK's own requests: tools/identity/fixtures/
-- sdk-requests.json holds what @azure/identity (the version in tools/identity/package-lock.json)
-- sent for each credential and failure schedule (`make identity-fixtures` records it again).
-- Each request acscall sends must carry the same method, path, query, and the headers and form
-- fields the endpoints read; against the emulator, each schedule must end as the SDK's did
-- (a token, or a failure) after as many token requests.
local helpers = require "spec.helpers"
local cjson = require "cjson.safe"

local FIXTURES = helpers.repo_root() .. "/tools/identity/fixtures/sdk-requests.json"
local fx = assert(cjson.decode((assert(helpers.read_file(FIXTURES), FIXTURES))), FIXTURES)
local BASE = "http://127.0.0.1:9"

-- the headers and form fields the endpoints read (the SDK also sends MSAL's telemetry and a
-- client-request-id, which no endpoint requires, and a Content-Type on GETs, which IMDS ignores)
local HEADERS = { metadata = true, ["x-identity-header"] = true }
local FORM = { grant_type = true, client_id = true, scope = true, client_secret = true, client_assertion = true,
  client_assertion_type = true }

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- a request as the fixtures hold it: method, path, query, headers and form that matter
local function shape(method, url, headers, form)
  local path, q = url:match("^https?://[^/]+(/[^?]*)%??(.*)$")
  local query = {}
  for k, v in q:gmatch("([^&=]+)=([^&]*)") do query[unescape(k)] = unescape(v) end
  local h = {}
  for k, v in pairs(headers or {}) do if HEADERS[k:lower()] then h[k:lower()] = v end end
  local f
  if form then
    f = {}
    for k, v in pairs(form) do if FORM[k] then f[k] = v end end
  end
  return { method = method, path = path, query = query, headers = h, form = f }
end

local function sdk_shape(r)
  local h, f = {}, nil
  for k, v in pairs(r.headers) do if HEADERS[k] then h[k] = v end end
  if r.form then
    f = {}
    for k, v in pairs(r.form) do if FORM[k] then f[k] = v end end
  end
  local q = {}
  for k, v in pairs(r.query) do if k ~= "client-request-id" then q[k] = v end end
  return { method = r.method, path = r.path, query = q, headers = h, form = f }
end

local function case(cred, sched)
  for _, c in ipairs(fx.cases) do
    if c.credential == cred and c.schedule == sched then return c end
  end
  error("no fixture for " .. cred .. "/" .. sched)
end

-- the token requests of a case (MSAL's OpenID discovery GET left out: acscall knows the path)
local function token_requests(c)
  local out = {}
  for _, r in ipairs(c.requests) do
    if not r.path:find("openid%-configuration$") then out[#out + 1] = r end
  end
  return out
end

-- the acscall credential for a fixture case, its identity taken from the SDK's request
local function build(cred, first, opts)
  opts = opts or {}
  local q, form = first.query, first.form or {}
  local o = { transport = opts.transport, imds_retry = opts.imds_retry, base_delay = opts.base_delay,
    retries = opts.retries, retry_scale = opts.retry_scale }
  local host = opts.base or BASE
  if cred:find("^imds") or cred == "default_pod_identity" then
    o.env = { AZURE_POD_IDENTITY_AUTHORITY_HOST = host }
    o.client_id, o.object_id, o.resource_id = q.client_id, q.object_id, q.msi_res_id
    if cred == "default_pod_identity" then
      o.env.AZURE_CLIENT_ID, o.client_id = q.client_id, nil
      o.az_command = "/nonexistent/az"
      return helpers.credential("default", o)
    end
    return helpers.credential("managed_identity", o)
  elseif cred:find("^app_service") then
    o.env = { IDENTITY_ENDPOINT = host .. "/msi/token", IDENTITY_HEADER = opts.identity_header or fx.identity_header }
    o.client_id, o.object_id, o.resource_id = q.client_id, q.object_id, q.mi_res_id
    return helpers.credential("managed_identity", o)
  elseif cred == "client_secret" or cred == "default_environment" then
    o.env = { AZURE_TENANT_ID = "tenant-1", AZURE_CLIENT_ID = form.client_id,
      AZURE_CLIENT_SECRET = opts.secret or fx.secret, AZURE_AUTHORITY_HOST = host }
    if cred == "default_environment" then
      o.az_command, o.imds_endpoint = "/nonexistent/az", host
      return helpers.credential("default", o)
    end
    return helpers.credential("client_secret", o)
  elseif cred == "workload_identity" then
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write(opts.assertion or fx.assertion, "\n")
    f:close()
    o.env = { AZURE_TENANT_ID = "tenant-1", AZURE_CLIENT_ID = form.client_id, AZURE_FEDERATED_TOKEN_FILE = file,
      AZURE_AUTHORITY_HOST = host }
    return helpers.credential("workload_identity", o), file
  end
  error("no builder for " .. cred)
end

local CREDS = { "imds", "imds_object_id", "imds_resource_id", "app_service", "app_service_object_id",
  "client_secret", "workload_identity", "default_pod_identity", "default_environment" }

describe("acscall.credential sends the requests " .. tostring(fx.sdk) .. " " .. tostring(fx.version) .. " sends",
  function()
    it("the fixtures were recorded from the SDK the lockfile pins", function()
      local lock = cjson.decode(helpers.read_file(helpers.repo_root() .. "/tools/identity/package-lock.json"))
      assert.are.equal(lock.packages["node_modules/@azure/identity"].version, fx.version)
    end)

    for _, cred in ipairs(CREDS) do
      it(cred .. ": the same token request (method, path, query, headers, form)", function()
        local sdk = token_requests(case(cred, "ok"))
        assert.are.equal(1, #sdk)
        local seen = {}
        local t = { fetch = function(_, req)
          seen[#seen + 1] = req
          return 200, cjson.encode{ access_token = "tok", expires_in = 3600 }, {}
        end }
        local c, file = build(cred, sdk[1], { transport = t })
        local tok, msg = c:get_token()
        if file then os.remove(file) end
        assert.are.equal("tok", tok, msg)
        assert.are.equal(1, #seen)
        local mine = shape(seen[1].method or "GET", seen[1].url, seen[1].headers, seen[1].form)
        assert.are.same(sdk_shape(sdk[1]), mine)
      end)
    end

    it("az: the same arguments, with and without a tenant", function()
      local az, fake = helpers.fake_az{ token = "az-token" }
      finally(fake.remove)
      helpers.credential("azure_cli", { command = az }):get_token()
      helpers.credential("azure_cli", { command = az, tenant_id = "tenant-9" }):get_token()
      assert.are.same({ case("azure_cli", "ok").argv, case("azure_cli_tenant", "ok").argv }, fake.calls())
    end)
  end)

describe("acscall.credential recovers where " .. tostring(fx.sdk) .. " recovers (the emulator's faults)", function()
  local emu
  lazy_setup(function() emu = helpers.start_emulator{} end)
  lazy_teardown(function() if emu then emu:stop() end end)
  -- tiny delays: the retry classes and schedules are the SDK's, scaled down (retry_scale)
  local serial = 0

  for _, cred in ipairs{ "imds", "app_service", "client_secret", "workload_identity" } do
    for _, sched in ipairs{ "404x2", "410x2", "429x2", "503x2" } do
      it(cred .. " " .. sched .. ": as many token requests as the SDK, and the same outcome", function()
        local c = case(cred, sched)
        local sdk = token_requests(c)
        serial = serial + 1
        local id = ("fx-%s-%d-%d-fault-%s"):format(cred:gsub("_", "-"), os.time(), serial, sched)
        local first = { query = { client_id = id }, form = { client_id = id } }
        local cr, file = build(cred, first, { base = emu.endpoint:gsub("/$", ""), retry_scale = 0.01,
          identity_header = emu.identity_header, secret = emu.client_secret,
          assertion = "emulator-assertion-fixture" })
        local tok = cr:get_token()
        if file then os.remove(file) end
        local statuses = {}
        for _, r in ipairs(emu:token_requests{ client_id = id }) do statuses[#statuses + 1] = r.status end
        local want = {}
        for _, r in ipairs(sdk) do want[#want + 1] = r.answered end
        assert.are.same(want, statuses)
        assert.are.equal(c.outcome == "token", tok ~= nil, c.outcome)
      end)
    end
  end
end)
