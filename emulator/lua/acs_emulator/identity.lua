-- acs_emulator.identity: the Entra ID side of the emulator (runs inside nginx). Three token
-- endpoints on the emulator's port -- IMDS, App Service / Functions, OAuth2 client credentials --
-- issue opaque tokens with an expiry, remembered in the shared dict acs_emulator_tokens so that
-- Get Call (auth.verify) accepts them until they expire. See emulator/README.md "Identity".
--
-- Each handler returns status, body (a table the caller JSON-encodes), headers; it leaves what
-- the request log shows in ngx.ctx (auth, fault, identity). No secret, assertion or token value
-- goes there: only auth.fingerprint of the assertion and of the token issued.
local auth = require "acs_emulator.auth"
local rand = require "openssl.rand"

local ngx = ngx
local M = {}

M.IMDS_PATH = "/metadata/identity/oauth2/token"
M.APP_SERVICE_PATH = "/msi/token"
M.ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
M.ASSERTION_PREFIX = "emulator-assertion"
M.KEEP_EXPIRED = 600 -- seconds an expired token stays known (Get Call: 401 "expired", not "invalid")

--- The identity route of a request path (as received), or nil: "imds", "app_service",
-- "oauth2" or "openid" (the last two with the percent-decoded tenant). IMDS's path is taken
-- with a trailing "/" too: @azure/msal-node 3.8.10 canonicalizes the pod-identity URL
-- (AZURE_POD_IDENTITY_AUTHORITY_HOST + the path + "/").
function M.route(path)
  if path == M.IMDS_PATH or path == M.IMDS_PATH .. "/" then return "imds" end
  if path == M.APP_SERVICE_PATH then return "app_service" end
  local tenant = path:match("^/([^/]+)/oauth2/v2%.0/token$")
  if tenant then return "oauth2", ngx.unescape_uri(tenant) end
  tenant = path:match("^/([^/]+)/v2%.0/%.well%-known/openid%-configuration$")
  if tenant then return "openid", ngx.unescape_uri(tenant) end
end

---------------------------------------------------------------------------------------------------
-- issued tokens: token -> the moment it expires (ngx.now() seconds, fractional)

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- a token living ttl seconds from now; expires_on (whole seconds, rounded down, so never later
-- than the moment the emulator stops accepting it)
local function issue(ttl)
  ngx.update_time()
  local now = ngx.now()
  local token = "emu1." .. hex(rand.bytes(24))
  local ok, err = ngx.shared.acs_emulator_tokens:set(token, now + ttl, ttl + M.KEEP_EXPIRED)
  if not ok then error("acs_emulator_tokens: " .. tostring(err)) end
  ngx.ctx.identity.token_fp = auth.fingerprint(token)
  ngx.ctx.identity.ttl = ttl
  ngx.ctx.identity.expires_on = math.floor(now + ttl)
  return token, math.floor(now + ttl), math.floor(now)
end

--- When an issued token expires (ngx.now() seconds), or nil for a token never issued (or
-- expired more than KEEP_EXPIRED seconds ago).
function M.expiry(token)
  return ngx.shared.acs_emulator_tokens:get(token)
end

---------------------------------------------------------------------------------------------------
-- the per-client choices: lifetime and faults

-- a client_id containing ctl<XX> (two hex digits) gets a token with that byte inside (JSON
-- escapes it): a token endpoint's hostile answer a client must refuse before it sends it
local function with_ctl(client_id, token)
  local byte = client_id and client_id:match("ctl(%x%x)")
  if not byte then return token end
  return token:sub(1, 8) .. string.char(tonumber(byte, 16)) .. token:sub(9)
end

-- a client_id ending in -ttl<N> gets tokens living N seconds
local function ttl_for(client_id, default)
  return tonumber(client_id and client_id:match("%-ttl(%d+)$")) or default
end

-- A selector (client_id or tenant) containing fault-503x<K> (or 429, 410, 404) gets that status
-- for its first K token requests, counted per selector in the shared dict (10 minutes); the
-- counts run in that order, so "fault-503x1-fault-429x1" answers 503, 429, then tokens.
local function fault_for(selectors)
  for _, code in ipairs{"503", "429", "410", "404"} do
    for _, s in ipairs(selectors) do
      local k = tonumber(s:match("fault%-" .. code .. "x(%d+)"))
      if k then
        local n = ngx.shared.acs_emulator:incr("identity-fault\0" .. code .. "\0" .. s, 1, 0, 600)
        if n and n <= k then return tonumber(code) end
      end
    end
  end
end

local FAULT_DESCRIPTION = {
  [503] = "The service is temporarily unavailable (emulated).",
  [429] = "Too many requests (emulated).",
  [410] = "The identity endpoint is being upgraded (emulated: IMDS answers 410 during host updates).",
  [404] = "The identity is not available yet (emulated).",
}
-- IMDS sends no Retry-After with 404/410 (@azure/identity 4.13.0's imdsRetryPolicy waits on its own schedule)
local FAULT_HEADERS = { [503] = { ["Retry-After"] = "0" }, [429] = { ["Retry-After"] = "0" } }

-- The fault answer due to these selectors (shaped by fail_with(status, description, headers)), or
-- nil. First, a selector containing slow<MS>ms delays the answer MS milliseconds (ngx.sleep: other
-- requests go on meanwhile), so a spec can hold a token request open.
local function fault_answer(selectors, fail_with)
  for _, s in ipairs(selectors) do
    local ms = tonumber(s:match("slow(%d+)ms"))
    if ms then
      ngx.sleep(ms / 1000)
      break
    end
  end
  local code = fault_for(selectors)
  if not code then return nil end
  ngx.ctx.fault = tostring(code)
  return fail_with(code, FAULT_DESCRIPTION[code], FAULT_HEADERS[code])
end

---------------------------------------------------------------------------------------------------
-- request parsing

-- one string value of a query or form table, "" when absent, false when repeated or valueless
local function one(args, name)
  local v = args[name]
  if v == nil then return "" end
  if type(v) ~= "string" then return false end
  return v
end

local function header(name)
  local v = ngx.req.get_headers(200)[name]
  if type(v) == "table" then return false end
  return v
end

-- The query parameters named, each required (non-empty) or not; at most one of `exclusive`.
-- Returns the values, or nil and an error description.
local function query(required, optional, exclusive)
  local args = ngx.req.get_uri_args(100)
  local v = {}
  for _, name in ipairs(required) do
    v[name] = one(args, name)
    if not v[name] then return nil, "Query variable '" .. name .. "' is repeated or has no value" end
    if v[name] == "" then return nil, "Required query variable '" .. name .. "' is missing" end
  end
  local given = {}
  for _, name in ipairs(optional) do
    v[name] = one(args, name)
    if v[name] == false then return nil, "Query variable '" .. name .. "' is repeated or has no value" end
    if v[name] == "" then v[name] = nil end
    if v[name] and exclusive[name] then given[#given + 1] = name end
  end
  if #given > 1 then return nil, "Only one of " .. table.concat(given, ", ") .. " may be given" end
  return v
end

-- the fields of the request log's "identity" object for a request
local function note(endpoint, fields)
  local t = { endpoint = endpoint }
  for k, v in pairs(fields or {}) do t[k] = v end
  ngx.ctx.identity = t
  return t
end

local function fail(why)
  ngx.ctx.auth = "fail:" .. why
end

---------------------------------------------------------------------------------------------------
-- IMDS: GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id|msi_res_id]

local function imds_error(status, description, headers)
  ngx.ctx.identity.error = "invalid_request"
  return status, { error = "invalid_request", error_description = description }, headers
end

function M.imds(cfg)
  local id = note("imds")
  if ngx.req.get_method() ~= "GET" then
    return imds_error(405, "The request method must be GET (emulated)", { Allow = "GET" })
  end
  if header("metadata") ~= "true" then
    fail("missing Metadata header")
    return imds_error(400, "Required metadata header not specified")
  end
  ngx.ctx.auth = "metadata"
  local q, err = query({ "api-version", "resource" }, { "client_id", "msi_res_id", "mi_res_id", "object_id" },
    { client_id = true, msi_res_id = true, mi_res_id = true, object_id = true })
  if not q then return imds_error(400, err) end
  id.resource, id.client_id = q.resource, q.client_id
  id.resource_id, id.object_id = q.msi_res_id or q.mi_res_id, q.object_id

  local status, body, headers = fault_answer({ q.client_id or "" }, imds_error)
  if status then return status, body, headers end
  local ttl = ttl_for(q.client_id, cfg.token_ttl)
  local token, expires_on, now = issue(ttl)
  return 200, {
    access_token = with_ctl(q.client_id, token),
    client_id = q.client_id or "00000000-0000-4000-8000-000000000e1d",
    expires_in = tostring(ttl),
    expires_on = tostring(expires_on),
    ext_expires_in = tostring(ttl),
    not_before = tostring(now),
    resource = q.resource,
    token_type = "Bearer",
  }
end

---------------------------------------------------------------------------------------------------
-- App Service / Functions: GET /msi/token?api-version=2019-08-01&resource=R[&client_id|mi_res_id]
-- with X-IDENTITY-HEADER

local function app_service_error(status, message, headers)
  ngx.ctx.identity.error = tostring(status)
  return status, { statusCode = status, message = message, correlationId = ngx.ctx.request_id }, headers
end

function M.app_service(cfg)
  local id = note("app_service")
  if ngx.req.get_method() ~= "GET" then
    return app_service_error(405, "The request method must be GET (emulated)", { Allow = "GET" })
  end
  local given = header("x-identity-header")
  if not given or given == "" then
    fail("missing X-IDENTITY-HEADER")
    return app_service_error(400, "The X-IDENTITY-HEADER header is required (emulated)")
  end
  if not auth.equal(given, cfg.identity_header) then
    fail("wrong X-IDENTITY-HEADER")
    return app_service_error(401, "The X-IDENTITY-HEADER header is not valid (emulated)")
  end
  ngx.ctx.auth = "identity_header"
  -- a user-assigned identity: client_id, mi_res_id, or object_id (what @azure/msal-node 3.8 sends;
  -- the App Service documentation of 2019-08-01 calls it principal_id: both are taken)
  local q, err = query({ "api-version", "resource" }, { "client_id", "mi_res_id", "object_id", "principal_id" },
    { client_id = true, mi_res_id = true, object_id = true, principal_id = true })
  if not q then return app_service_error(400, err) end
  id.resource, id.client_id = q.resource, q.client_id
  id.resource_id, id.object_id = q.mi_res_id, q.object_id or q.principal_id

  local status, body, headers = fault_answer({ q.client_id or "" }, app_service_error)
  if status then return status, body, headers end
  local ttl = ttl_for(q.client_id, cfg.token_ttl)
  local token, expires_on = issue(ttl)
  return 200, {
    access_token = with_ctl(q.client_id, token),
    expires_on = tostring(expires_on),
    resource = q.resource,
    token_type = "Bearer",
    client_id = q.client_id or "00000000-0000-4000-8000-000000000e1d",
  }
end

---------------------------------------------------------------------------------------------------
-- OpenID configuration: GET /<tenant>/v2.0/.well-known/openid-configuration, the document MSAL
-- reads before its first token request (@azure/msal-common 15.17.0: `isOpenIdConfigResponse` needs
-- authorization_endpoint, token_endpoint, issuer, jwks_uri), its endpoints on this server

function M.openid(_, tenant)
  note("openid", { tenant = tenant })
  if ngx.req.get_method() ~= "GET" then
    return 405, { error = "invalid_request", error_description = "GET only (emulated)" }, { Allow = "GET" }
  end
  ngx.ctx.auth = "none"
  local host = header("host")
  if not host or not host:match("^[%w%.%-%[%]:]+$") then
    return 400, { error = "invalid_request", error_description = "A Host header is required (emulated)" }
  end
  local base = ngx.var.scheme .. "://" .. host .. "/" .. ngx.escape_uri(tenant)
  return 200, {
    token_endpoint = base .. "/oauth2/v2.0/token",
    token_endpoint_auth_methods_supported = { "client_secret_post", "private_key_jwt", "client_secret_basic" },
    jwks_uri = base .. "/discovery/v2.0/keys",
    response_modes_supported = { "query", "fragment", "form_post" },
    subject_types_supported = { "pairwise" },
    id_token_signing_alg_values_supported = { "RS256" },
    response_types_supported = { "code", "id_token", "code id_token", "id_token token" },
    scopes_supported = { "openid", "profile", "email", "offline_access" },
    issuer = base .. "/v2.0",
    request_uri_parameter_supported = false,
    authorization_endpoint = base .. "/oauth2/v2.0/authorize",
    device_authorization_endpoint = base .. "/oauth2/v2.0/devicecode",
    end_session_endpoint = base .. "/oauth2/v2.0/logout",
    tenant_region_scope = "WW",
    cloud_instance_name = "microsoftonline.com",
    cloud_graph_host_name = "graph.windows.net",
    msgraph_host = "graph.microsoft.com",
  }
end

---------------------------------------------------------------------------------------------------
-- OAuth2 client credentials: POST /<tenant>/oauth2/v2.0/token, form grant_type=client_credentials,
-- client_id, scope, client_secret | client_assertion + client_assertion_type

local function oauth_error(status, err, description, headers)
  ngx.ctx.identity.error = err
  local n = tonumber(description:match("^AADSTS(%d+):"))
  return status, { error = err, error_description = description, error_codes = n and { n } or nil,
    correlation_id = ngx.ctx.request_id }, headers
end

function M.oauth2(cfg, tenant)
  local id = note("oauth2", { tenant = tenant })
  if ngx.req.get_method() ~= "POST" then
    return oauth_error(400, "invalid_request", "AADSTS900561: The endpoint only accepts POST requests.")
  end
  local ctype = header("content-type")
  if not ctype or not ctype:lower():find("^application/x%-www%-form%-urlencoded") then
    return oauth_error(400, "invalid_request",
      "The request body must be application/x-www-form-urlencoded (emulated).")
  end
  ngx.req.read_body()
  local form = ngx.req.get_post_args(100)
  local v = {}
  for _, name in ipairs{ "grant_type", "client_id", "scope", "client_secret", "client_assertion",
                         "client_assertion_type" } do
    v[name] = one(form, name)
    if v[name] == false then
      return oauth_error(400, "invalid_request",
        "The parameter '" .. name .. "' is repeated or has no value (emulated).")
    end
  end
  id.client_id = v.client_id ~= "" and v.client_id or nil
  id.scope = v.scope ~= "" and v.scope or nil
  for _, name in ipairs{ "grant_type", "client_id", "scope" } do
    if v[name] == "" then
      return oauth_error(400, "invalid_request",
        "AADSTS900144: The request body must contain the following parameter: '" .. name .. "'.")
    end
  end
  if v.grant_type ~= "client_credentials" then
    return oauth_error(400, "unsupported_grant_type",
      "AADSTS70003: The app requested an unsupported grant type (emulated: only client_credentials).")
  end
  if not v.scope:find("/%.default$") then
    return oauth_error(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid. "
      .. "Client credential flows must have a scope value with /.default suffixed to the resource identifier.")
  end
  if (v.client_secret == "") == (v.client_assertion == "") then
    return oauth_error(400, "invalid_request", "AADSTS7000216: exactly one of 'client_assertion' or "
      .. "'client_secret' is required for the 'client_credentials' grant type.")
  end
  if v.client_assertion ~= "" and v.client_assertion_type ~= M.ASSERTION_TYPE then
    return oauth_error(400, "invalid_request",
      "client_assertion_type must be " .. M.ASSERTION_TYPE .. " (emulated).")
  end
  id.grant = v.client_secret ~= "" and "client_secret" or "client_assertion"
  if v.client_assertion ~= "" then id.assertion_fp = auth.fingerprint(v.client_assertion) end

  local status, body, headers = fault_answer({ v.client_id, tenant }, function(code, description, h)
    return oauth_error(code, "temporarily_unavailable", description, h)
  end)
  if status then return status, body, headers end
  if v.client_secret ~= "" then
    if not auth.equal(v.client_secret, cfg.client_secret) then
      fail("invalid client secret")
      return oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the "
        .. "secret being sent in the request is the client secret value, not the client secret ID (emulated).")
    end
  elseif v.client_assertion:sub(1, #M.ASSERTION_PREFIX) ~= M.ASSERTION_PREFIX then
    -- a certificate's assertion: checked against --client-certificate (when given)
    local why = "it must start with " .. M.ASSERTION_PREFIX
    if cfg.client_certificate_pem then
      local host = header("host") or ""
      local ok, err = auth.verify_client_assertion(v.client_assertion, cfg.client_certificate_pem, {
        aud = ngx.var.scheme .. "://" .. host .. "/" .. ngx.escape_uri(tenant) .. "/oauth2/v2.0/token",
        client_id = v.client_id, now = ngx.now() })
      if ok then why = nil else why = err .. ", or start with " .. M.ASSERTION_PREFIX end
    end
    if why then
      fail("invalid client assertion")
      return oauth_error(401, "invalid_client",
        "AADSTS700027: Client assertion failed signature validation (emulated: " .. why .. ").")
    end
    id.certificate = true
  end
  ngx.ctx.auth = id.grant
  local ttl = ttl_for(v.client_id, cfg.token_ttl)
  local token = issue(ttl)
  return 200, { token_type = "Bearer", expires_in = ttl, ext_expires_in = ttl,
    access_token = with_ctl(v.client_id, token) }
end

return M
