--- acscall.credential: Microsoft Entra ID credentials for `acscall.new{credential = ...}`.
-- Each credential is an object with
-- `cred:get_token([opts]) -> token, expires_on | nil, message, info`
-- (`expires_on`: Unix seconds; `opts.force_refresh`: fetch anew), reading the
-- same environment variables as Microsoft's Azure Identity libraries
-- (azure-identity for Python, cited at 1.24.0 (PyPI, 2025-08-07); @azure/identity
-- for JavaScript, cited at 4.13.0 (npm)):
--
-- * `managed_identity{}`: App Service / Functions (`IDENTITY_ENDPOINT` +
--   `IDENTITY_HEADER`), else the Azure Instance Metadata Service (IMDS).
-- * `client_secret{}`: a service principal's secret (`AZURE_TENANT_ID`,
--   `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_AUTHORITY_HOST`).
-- * `client_certificate{}`: a service principal's certificate (`AZURE_CLIENT_CERTIFICATE_PATH`).
-- * `workload_identity{}`: a federated token file (`AZURE_FEDERATED_TOKEN_FILE`, AKS).
-- * `azure_cli{}`: `az account get-access-token` (a developer's login).
-- * `default{}`: the chain of the above in DefaultAzureCredential's order.
--
-- The requests are those @azure/identity 4.13.0 sends (tools/identity records
-- them; spec/82 compares). Every credential keeps its token in a cache of its
-- own and fetches a new one at its refresh point: the service's `refresh_in`,
-- else half the life of a token living over 2 h (@azure/msal-node 3.8.10), else 5 minutes before
-- expiry, and for short-lived tokens at half their lifetime. A token whose
-- expiry is past, not finite or absurd, or that holds a control byte, is
-- refused (`kind = "auth"`). A refresh that fails while the cached token is
-- still valid keeps using it.
-- Callers that arrive while a refresh runs (a finalizer, a hook, another
-- OpenResty light thread) get the still-valid token, or wait for that one
-- refresh (OpenResty: `ngx.semaphore`).
--
-- HTTP goes through a transport: by default the C core's `core.fetcher`
-- (libcurl: TLS verification, timeouts, the core's retry rule), created at the
-- first `get_token` (nothing is fetched or connected when a credential is
-- built). `transport = t` replaces it with any object with
-- `t:fetch{url=, method=, headers=, form=, timeout=, retries=}`
-- `-> status, body, headers | nil, message, info[, "not_here"]`
-- (OpenResty: `acscall.resty.capture_transport()`; "not_here": it cannot fetch in this
-- context, so a still-valid token is kept without a pause); `retries` carries the
-- endpoint's retry classes as data (`M.RETRY`), in `core.fetcher`'s shape.
--
-- Failures are `core.failure`'s `nil, message, info`. Secrets (client
-- secrets, assertions, IDENTITY_HEADER, tokens received, tokens `az` printed)
-- are hidden by `core.redact` in every message and never appear in `info` or
-- `tostring(cred)`, which shows the kind and the non-secret target only.
-- `cred:targets()` lists the URLs it would contact.
--
-- With `ACSCALL_LOOPBACK_ONLY=1` in the environment (the test suite sets it)
-- building a credential whose target is not a loopback address raises, and
-- so does an `azure_cli` without an explicit `command`.
-- @module acscall.credential

local core = require "acscall.core"
local cjson = require("cjson.safe").new() -- a private instance: our settings stay here
cjson.decode_max_depth(16)

local M = {}

--- The scope every credential asks for: the Communication Services resource
-- (the double slash is what the ACS SDKs send: resource "https://communication.azure.com/"
-- + "/.default"; @azure/communication-common 2.4.2's communicationAuthPolicy.js).
M.SCOPE = "https://communication.azure.com//.default"
--- The resource IMDS and App Service take: the scope without "/.default"
-- (azure-identity 1.24.0: `_scopes_to_resource`).
M.RESOURCE = "https://communication.azure.com/"
--- The IMDS authority (azure-identity 1.24.0 `_credentials/imds.py`: IMDS_AUTHORITY,
-- IMDS_TOKEN_PATH; api-version 2018-02-01).
M.IMDS_AUTHORITY = "http://169.254.169.254"
M.IMDS_PATH = "/metadata/identity/oauth2/token"
M.IMDS_API_VERSION = "2018-02-01"
--- App Service / Functions (azure-identity 1.24.0 `_credentials/app_service.py`: api-version 2019-08-01,
-- header X-IDENTITY-HEADER, user-assigned identity by client_id or mi_res_id).
M.APP_SERVICE_API_VERSION = "2019-08-01"
--- The public cloud's authority (azure-identity 1.24.0 `KnownAuthorities.AZURE_PUBLIC_CLOUD`).
M.AUTHORITY_HOST = "https://login.microsoftonline.com"
M.JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

-- Each token endpoint's retry classes and schedules, as data for the core's
-- retry rule (given to the transport with each request: `fetch{retries = ...}`,
-- the shape of `core.fetcher`'s `retries`, `by_status` included), from
-- @azure/identity 4.13.0 over @azure/core-rest-pipeline 1.24 and
-- @typespec/ts-http-runtime 0.3.6. Its IdentityClient retries every token
-- request at most 3 times: on 408 and 5xx but 501/505, exponential from 1 s
-- (`exponentialRetryStrategy`), and on 429/503 with Retry-After after the
-- server's wait (`throttlingRetryStrategy`); a 429 without it is not retried.
-- The authority keeps that. A managed identity's client adds, around it,
-- `imdsRetryPolicy` (`managedIdentityCredential/imdsRetryPolicy.js`): 404 and
-- 410, 5 retries, exponential from 800 ms (410: from 3 s), at most 64 s apart,
-- jitter [d/2, d] (@azure/core-util `calculateRetryDelay`). That client serves
-- App Service too (tools/identity/fixtures records both). One addition: a 410
-- is retried until 70 s have passed (Microsoft's IMDS guidance: IMDS answers
-- 410 for up to 70 s during a host upgrade; the SDK aims at it, "at least 70
-- seconds total", but its jitter can end the 6 tries after 46.5 s).
M.RETRY = {
  authority = { max = 3, base_delay = 1, max_delay = 64, statuses = { 408, 429, 500, 502, 503, 504 },
    by_status = { [429] = { retry_after_only = true } } },
  imds = { max = 3, base_delay = 1, max_delay = 64, statuses = { 404, 408, 410, 429, 500, 502, 503, 504 },
    by_status = { [404] = { max = 5, base_delay = 0.8 }, [410] = { max = 5, base_delay = 3, min_total = 70 },
      [429] = { retry_after_only = true } } },
}
M.RETRY.app_service = M.RETRY.imds
--- Seconds before expiry a token is refreshed (azure-identity for Python, `_constants.py`:
-- DEFAULT_REFRESH_OFFSET = 300).
M.REFRESH_BEFORE = 300
--- A token living longer than this (s) is refreshed at half its life (@azure/msal-node 3.8.10
-- `ManagedIdentitySources/BaseManagedIdentitySource.ts`: refresh_in = expires_in / 2 over 2 h).
M.HALF_LIFE_OVER = 2 * 3600

-- ------------------------------------------------------------------ helpers

local function now()
  local ngx = rawget(_G, "ngx")
  if ngx and type(ngx.now) == "function" then return ngx.now() end
  return M._clock()
end

-- a sub-second clock when one is at hand (luasocket), else whole seconds:
-- whole seconds round the issue time down, so every deadline computed from
-- it errs early (a refresh comes sooner, never later)
do
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and type(socket.gettime) == "function" then
    M._clock = socket.gettime
  else
    M._clock = os.time
  end
end

-- Failures are the core's (`core.failure`: `nil, message, info`, the message
-- redacted by `core.redact` for every secret given). What the chain must know
-- of a failure beyond its kind rides beside `info`, never in it:
-- MARK[info] = "unavailable" (a link that cannot work here: the chain moves
-- on) or "not_here" (the transport cannot fetch in this context).
local MARK = setmetatable({}, { __mode = "k" })

local function failure(kind, text, secrets, fields, mark)
  fields = fields or {}
  fields.secrets = secrets
  local none, message, info = core.failure(kind, text, fields)
  if mark and type(info) == "table" then MARK[info] = mark end
  return none, message, info
end

-- the core's fields of an info, for shaping a failure again under a longer message
local function fields_of(info)
  if type(info) ~= "table" then return {} end
  return { status = info.status, attempts = info.attempts, timeout = info.timeout, code = info.code,
    request_id = info.request_id, client_request_id = info.client_request_id }
end

-- a query string in the order given (name, value, name, value, ...; nil values left out), each
-- pair percent-encoded by the core's one encoder
local function query(params)
  local out = {}
  for i = 1, #params, 2 do
    if params[i + 1] ~= nil then out[#out + 1] = core.form_encode{ [params[i]] = tostring(params[i + 1]) } end
  end
  return table.concat(out, "&")
end

-- the environment reader of a credential: opts.env (a table or a function),
-- else os.getenv; empty values count as unset (as in the SDKs)
local function env_reader(opts)
  local e = opts.env
  local get
  if e == nil then
    get = os.getenv
  elseif type(e) == "table" then
    get = function(name) return e[name] end
  elseif type(e) == "function" then
    get = e
  else
    error("env must be a table or a function, got " .. type(e), 3)
  end
  return function(name)
    local v = get(name)
    if v == nil or v == "" then return nil end
    return tostring(v)
  end
end

local function opt_string(fname, opts, name)
  local v = opts[name]
  if v ~= nil and (type(v) ~= "string" or v == "") then
    error("acscall.credential." .. fname .. ": " .. name .. " must be a non-empty string", 3)
  end
  return v
end

--- The host of an http(s) URL (brackets removed), or nil.
local function url_host(url)
  local authority = tostring(url):match("^[hH][tT][tT][pP][sS]?://([^/?#]+)")
  if not authority then return nil end
  authority = authority:gsub("^.*@", "")
  local v6 = authority:match("^%[([^%]]+)%]")
  if v6 then return v6:lower() end
  return (authority:gsub(":%d*$", "")):lower()
end

--- True when a URL's host is a loopback address (127.0.0.0/8, ::1, localhost):
-- the core's rule (`core.is_loopback_url`), the one `ACSCALL_LOOPBACK_ONLY` enforces.
-- @tparam string url
function M.is_loopback(url)
  return core.is_loopback_url(url)
end

local function loopback_only()
  return os.getenv("ACSCALL_LOOPBACK_ONLY") == "1"
end

-- ACSCALL_LOOPBACK_ONLY=1: a target off this machine is a mistake of the
-- test that built the credential (raise, loudly)
local function check_targets(fname, cred)
  if not loopback_only() then return end
  for _, url in ipairs(cred:targets()) do
    if not M.is_loopback(url) then
      error("acscall.credential." .. fname .. ": ACSCALL_LOOPBACK_ONLY=1 and the credential would contact "
        .. url .. " (not a loopback address): point it at the emulator", 3)
    end
  end
  if cred.command == "az" then
    error("acscall.credential." .. fname .. ": ACSCALL_LOOPBACK_ONLY=1 and azure_cli would run the real "
      .. "Azure CLI: point az_command (default{}), command (azure_cli{}) or ACSCALL_AZURE_CLI at a fake az", 3)
  end
end

-- A number from a token answer: a JSON number or a decimal string, else nil.
local function number_of(v)
  if type(v) == "string" then
    v = v:match("^%s*(%-?%d+%.?%d*[eE]?[%+%-]?%d*)%s*$")
    return v and tonumber(v)
  end
  if type(v) == "number" then return v end
  return nil
end

--- The longest lifetime (s) a token may claim: the core's limit
-- (`core.LIMITS.token_lifetime_max`), the one it checks a credential's
-- `expires_on` against too; a token endpoint claiming more is refused here,
-- before the token is cached.
M.MAX_LIFETIME = core.LIMITS.token_lifetime_max

-- a lifetime (s from now) a token may have: finite, above 0, at most MAX_LIFETIME
local function usable_lifetime(n)
  return type(n) == "number" and n == n and n > 0 and n <= M.MAX_LIFETIME
end

-- "06/20/2019 02:57:58 +00:00" (App Service before 2019-08-01), UTC
local function parse_app_service_date(s)
  local mo, d, y, h, mi, se, sign, oh, om = tostring(s):match(
    "^(%d+)/(%d+)/(%d+) (%d+):(%d+):(%d+) ([%+%-])(%d+):(%d+)$")
  if not mo then return nil end
  local t = { year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(h),
    min = tonumber(mi), sec = tonumber(se), isdst = false }
  -- os.time reads local time: correct by the offset between local and UTC
  local loc = os.time(t)
  local utc_t = os.date("!*t", loc)
  utc_t.isdst = false
  local offset = os.time(utc_t) - loc
  local off = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  return loc - offset - off
end
M._parse_app_service_date = parse_app_service_date

-- nil when a token can go into a header (the core's header-value rule, a
-- size cap), else why not
local function token_problem(t)
  if type(t) ~= "string" or t == "" then return "no access token" end
  if #t > 65536 then return "an access token over 64 KiB" end
  local ok, why = core.check_header_value(t)
  if not ok then return "an access token unfit for a header (" .. tostring(why) .. ")" end
  return nil
end

-- ---------------------------------------------------------- the base object

local Credential = {}
Credential.__index = Credential

-- A token endpoint's retry data (`M.RETRY.<endpoint>`, copied): the
-- credential's own `retries` (false: none; a number: that many retries of
-- every status; a table: fields over M.RETRY's), `base_delay` and `max_delay`
-- options win, then `extra`'s fields (managed_identity's `imds_retry`);
-- `retry_scale` (a number > 0, for tests) multiplies every delay and
-- min_total, by_status's too. `level`: error()'s level for the caller.
local function endpoint_retry(fname, base, opts, extra, level)
  local given, scale = opts.retries, opts.retry_scale
  if given == false then return false end
  if scale ~= nil and (type(scale) ~= "number" or scale ~= scale or scale <= 0) then
    error("acscall.credential." .. fname .. ": retry_scale must be a number > 0", level)
  end
  local function copy(t, drop_max)
    local o = {}
    for k, v in pairs(t) do o[k] = v end
    if drop_max then o.max = nil end
    for _, k in ipairs{ "base_delay", "max_delay", "min_total" } do
      if o[k] and scale then o[k] = o[k] * scale end
    end
    return o
  end
  local r = {}
  for k, v in pairs(base) do r[k] = v end
  if type(given) == "table" then for k, v in pairs(given) do r[k] = v end end
  if type(given) == "number" then r.max = given end
  r.base_delay, r.max_delay = opts.base_delay or r.base_delay, opts.max_delay or r.max_delay
  for k, v in pairs(extra or {}) do r[k] = v end
  r = copy(r)
  if type(r.by_status) == "table" then
    local by = {}
    for st, e in pairs(r.by_status) do by[st] = copy(e, type(given) == "number") end
    r.by_status = by
  end
  return r
end

local function new_credential(kind, opts)
  local self = setmetatable({ kind = kind }, Credential)
  self._transport_opt = opts.transport
  local to = type(self._transport_opt)
  if self._transport_opt ~= nil and to ~= "table" and to ~= "userdata" then
    error("acscall.credential." .. kind .. ": transport must be an object with a fetch method", 3)
  end
  -- core.fetcher options (all optional): see acscall.core
  local fo = {}
  for _, k in ipairs{ "ca_file", "user_agent", "timeout", "connect_timeout", "deadline", "retries",
    "base_delay", "max_delay", "max_body" } do
    fo[k] = opts[k]
  end
  self._fetcher_opts = fo
  return self
end

function Credential:__tostring()
  return "acscall.credential." .. self.kind .. " (" .. self:describe() .. ")"
end

--- The URLs this credential contacts (never a secret). Empty for azure_cli.
function Credential:targets()
  return { self.target }
end

function Credential:describe()
  return tostring(self.target)
end

-- the transport, made at the first fetch
function Credential:transport()
  local t = self._transport
  if t then return t end
  if self._transport_opt then
    t = self._transport_opt
  else
    t = core.fetcher(self._fetcher_opts)
  end
  self._transport = t
  return t
end

--- Release the credential's connections (and wipe its cached token).
-- It stays usable: the next `get_token` makes a new transport.
function Credential:close()
  local t = self._transport
  self._transport, self._cache = nil, nil
  if t and t ~= self._transport_opt and type(t.close) == "function" then t:close() end
  local p = self._probe_transport
  self._probe_transport = nil
  if p and type(p.close) == "function" then p:close() end
end

--- Every secret this credential holds or has sent (the identity header, the
-- client secret, the last assertion, the tokens it was given): the list
-- `core.redact` hides from what a user sees.
function Credential:secrets()
  local out = {}
  local function add(v) if type(v) == "string" then out[#out + 1] = v end end
  add(self._identity_header)
  add(self._secret and self._secret())
  add(self._assertion)
  add(self._cache and self._cache.token)
  add(self._received)
  for _, v in ipairs(self._extra_secrets or {}) do add(v) end
  return out
end

-- a failure of this credential: its kind's name first, every secret it holds hidden
function Credential:fail(kind, text, fields, mark)
  return failure(kind, self.kind .. ": " .. text, self:secrets(), fields, mark)
end

-- one HTTP exchange through the transport: status, body, headers | nil, msg, info.
-- `retries` (the endpoint's retry classes, as data) goes to the transport with the request.
function Credential:http(req)
  local t, msg, info = self:transport()
  if not t then return nil, msg, info end
  if req.retries == nil then req.retries = self.retry end
  local st, body, headers, mark = t:fetch(req)
  if not st then
    info = type(headers) == "table" and headers or {}
    return self:fail(info.kind or "transport", "no answer from " .. self.target .. " (" .. tostring(body) .. ")",
      fields_of(info), mark == "not_here" and "not_here" or MARK[info])
  end
  return st, body or "", headers or {}
end

-- The expiry (Unix s) of a token answer j received at t: from `expires_in`,
-- `expires_on` (Unix s, or App Service's older date), the earlier of both;
-- or nil, why (a lifetime past, not finite or absurd).
local function expiry_of(j, t)
  local expires
  for _, name in ipairs{ "expires_in", "expires_on" } do
    local v = j[name]
    if v ~= nil and v ~= cjson.null then
      local n = number_of(v)
      if name == "expires_on" and not n then n = parse_app_service_date(v) end
      local life = n and (name == "expires_in" and n or n - t)
      if not usable_lifetime(life) then
        return nil, "its " .. name .. " (" .. tostring(v):sub(1, 40) .. ") is not a lifetime a token can have"
      end
      if not expires or t + life < expires then expires = t + life end
    end
  end
  if not expires then return nil, "it has no expiry" end
  return expires
end

-- Shape a token endpoint's answer: token, expires_on, refresh_on | nil, msg, info.
function Credential:token_from(st, body)
  if st < 200 or st > 299 then
    local j = cjson.decode(body)
    local code = type(j) == "table" and (j.error or j.code)
    local desc = type(j) == "table" and (j.error_description or j.message)
    if type(code) == "table" then desc, code = code.message, code.code end
    code = type(code) == "string" and code:sub(1, 60) or nil
    local what = "HTTP " .. st .. (code and (" " .. code) or "")
    if type(desc) == "string" and desc ~= "" then what = what .. ": " .. desc end
    -- the service refused the identity (bad secret, unknown client, no identity)
    local kind = (st == 400 or st == 401 or st == 403) and "auth" or "http"
    return self:fail(kind, "token request refused (" .. what .. ")", { status = st, code = code })
  end
  local j = cjson.decode(body)
  if type(j) ~= "table" then
    return self:fail("decode", "the token endpoint's answer is not JSON", { status = st })
  end
  local token = j.access_token
  if type(token) == "string" then self._received = token end
  local problem = token_problem(token)
  if problem then
    return self:fail(type(token) == "string" and "auth" or "decode", "the token endpoint sent " .. problem,
      { status = st })
  end
  local t = now()
  local expires, why = expiry_of(j, t)
  if not expires then
    return self:fail(why == "it has no expiry" and "decode" or "auth", "refused the token endpoint's answer: "
      .. why, { status = st })
  end
  local refresh_in = number_of(j.refresh_in)
  return token, expires, usable_lifetime(refresh_in) and (t + refresh_in) or nil
end

-- a kind of credential: Credential's methods, its own where it has them
local function subclass()
  local c = setmetatable({}, { __index = Credential })
  c.__index, c.__tostring = c, Credential.__tostring
  return c
end

-- ------------------------------------------------------------------ the cache

-- The refresh point of a token issued at t, as MSAL places it
-- (@azure/msal-node 3.8.10 `BaseManagedIdentitySource.getServerTokenResponse`:
-- a token living over 2 h gets `refresh_in` = half its life; @azure/msal-common
-- 15.17.0 `ResponseHandler`: the service's `refresh_in` wins), else 5 minutes before
-- expiry (msal-common's `tokenRenewalOffsetSeconds`, 300). A short-lived token
-- (under 10 minutes) is refreshed no later than half its life, and one that is
-- inside those 5 minutes from the start (a test's 1-2 s token) at half its
-- life rather than at every use.
local function refresh_point(t, expires, refresh_on)
  local life = expires - t
  local half = t + life / 2
  local at = expires - M.REFRESH_BEFORE
  if refresh_on and refresh_on > t and refresh_on < expires then
    at = refresh_on
  elseif life > M.HALF_LIFE_OVER then
    at = half
  end
  if life < 2 * M.REFRESH_BEFORE and at > half then at = half end
  if at <= t then at = half end
  return at
end
M._refresh_point = refresh_point

-- the OpenResty semaphore of a credential (per worker), when waiting is possible
local function semaphore(self)
  if self._sema == false then return nil end
  if self._sema then return self._sema end
  local ngx = rawget(_G, "ngx")
  local ok, sem = false, nil
  if ngx then ok, sem = pcall(require, "ngx.semaphore") end
  if ok and sem then
    self._sema = sem.new(0)
  else
    self._sema = false
  end
  return self._sema or nil
end

local function wake(self)
  local s = self._sema
  if s then
    local waiting = -s:count()
    if waiting > 0 then s:post(waiting) end
  end
end

--- A token: the cached one until its refresh point, else a new one.
-- @tparam[opt] table opts `force_refresh = true`: fetch anew (after the service refused the token)
-- @return token, expires_on (Unix seconds)
-- @return or `nil, message, info` (`info.kind`: `auth` when the identity was
--  refused, `transport`, `http`, `decode`, `local`)
function Credential:get_token(opts)
  local force = type(opts) == "table" and opts.force_refresh and true or false
  local c = self._cache
  local t = now()
  if not force and c and t < c.refresh_at then return c.token, c.expires_on end
  if self._refreshing then
    -- re-entrant (a finalizer, a hook) or concurrent (another light thread)
    if c and t < c.expires and not force then return c.token, c.expires_on end
    local s = semaphore(self)
    if s then
      local ok = pcall(s.wait, s, self._wait_limit or 60)
      c = self._cache
      if ok and c and now() < c.expires then return c.token, c.expires_on end
      local last = self._last_failure
      if ok and last then return nil, last[1], last[2] end
    end
    return self:fail("auth", "a token refresh is already in progress and no valid token is cached")
  end
  if not force and c and self._retry_at and t < self._retry_at and t < c.expires then
    return c.token, c.expires_on
  end
  self._refreshing = true
  local ok, token, expires, refresh_on = pcall(self.fetch_token, self)
  self._refreshing = false
  if not ok then
    self._last_failure = { select(2, self:fail("local", "the token fetch raised an error")) }
    wake(self)
    error(token, 0) -- our bug or the transport's: not a runtime failure
  end
  if token then
    local t2 = now()
    c = { token = token, expires = expires, expires_on = math.floor(expires),
      refresh_at = refresh_point(t2, expires, refresh_on) }
    self._cache, self._retry_at, self._last_failure = c, nil, nil
    wake(self)
    return token, c.expires_on
  end
  local msg, info = expires, refresh_on
  if type(info) ~= "table" then
    -- a fetch_token of ours always shapes its failure: this is a bug
    error("acscall.credential." .. self.kind .. ": a token fetch failed without an info table", 0)
  end
  self._last_failure = { msg, info }
  wake(self)
  t = now()
  if not force and c and t < c.expires then
    -- keep the old token; try again after a while (not at every call)
    if MARK[info] ~= "not_here" then
      self._retry_at = t + math.max(0.05, math.min(30, (c.expires - t) / 4))
    end
    return c.token, c.expires_on
  end
  return nil, msg, info
end

-- ------------------------------------------------------- managed identity

local ManagedIdentity = subclass()

--- Managed identity: App Service / Functions when `IDENTITY_ENDPOINT` and
-- `IDENTITY_HEADER` are set (`GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=...`,
-- header `X-IDENTITY-HEADER`), otherwise IMDS
-- (`GET http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=...`,
-- header `Metadata: true`; the host from `endpoint`, else
-- `AZURE_POD_IDENTITY_AUTHORITY_HOST`), as @azure/msal-node 3.8.10's
-- `ManagedIdentitySources/Imds.mjs` and `AppService.mjs` decide (the SDK
-- (@azure/identity 4.13) runs them). A user-assigned identity is named by one of
-- `client_id` (query `client_id`), `resource_id` (`msi_res_id` for IMDS,
-- `mi_res_id` for App Service) or `object_id` (`object_id` for both).
-- Azure Arc, Service Fabric and Cloud Shell are not supported.
-- 404 and 410 are retried as the SDK retries them (`M.RETRY.imds`, `M.RETRY.app_service`).
-- @tparam[opt] table opts `client_id`, `resource_id` or `object_id` (a user-assigned identity),
--  `endpoint` (the IMDS host, e.g. "http://127.0.0.1:8080": wins over the environment),
--  `env` (a table or function read instead of `os.getenv`), `transport`,
--  `imds_retry` (fields replacing `M.RETRY.imds`'s), `retry_scale` (every credential: the token
--  endpoint's delays times this, e.g. 0.01 in tests), and
--  core.fetcher's options (`timeout`, `retries`, `ca_file`, ...)
function M.managed_identity(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("acscall.credential.managed_identity: options table expected", 2) end
  local getenv = env_reader(opts)
  local self = new_credential("managed_identity", opts)
  setmetatable(self, ManagedIdentity)
  self.client_id = opt_string("managed_identity", opts, "client_id")
  self.resource_id = opt_string("managed_identity", opts, "resource_id")
  self.object_id = opt_string("managed_identity", opts, "object_id")
  local endpoint = opt_string("managed_identity", opts, "endpoint")
  if ((self.client_id and 1 or 0) + (self.resource_id and 1 or 0) + (self.object_id and 1 or 0)) > 1 then
    error("acscall.credential.managed_identity: give one of client_id, resource_id or object_id, not both", 2)
  end
  local ie, ih = getenv("IDENTITY_ENDPOINT"), getenv("IDENTITY_HEADER")
  if endpoint then
    self.source = "imds"
  elseif ie and ih and getenv("IDENTITY_SERVER_THUMBPRINT") then
    self.source, self.unsupported = "service_fabric", "Service Fabric managed identity is not supported"
  elseif ie and ih then
    self.source = "app_service"
  elseif ie and getenv("IMDS_ENDPOINT") then
    self.source, self.unsupported = "azure_arc", "Azure Arc managed identity is not supported"
  else
    self.source = "imds"
  end
  local id_param = self.resource_id and (self.source == "imds" and "msi_res_id" or "mi_res_id")
    or self.object_id and "object_id" or "client_id"
  local id_value = self.client_id or self.resource_id or self.object_id
  if self.source == "imds" then
    local pod = not endpoint and getenv("AZURE_POD_IDENTITY_AUTHORITY_HOST")
    local host = (endpoint or pod or M.IMDS_AUTHORITY):gsub("/+$", "")
    if not url_host(host) then
      error("acscall.credential.managed_identity: the IMDS host must be an http(s) URL", 2)
    end
    self.target = host .. M.IMDS_PATH
    -- msal-node 3.8.10's Imds.tryCreate canonicalizes the pod-identity URL (msal-common
    -- 15.17.0 UrlString.canonicalizeUri: a trailing "/"); the default endpoint has none
    self.pod_identity = pod and true or nil
    self.url = self.target .. (pod and "/" or "") .. "?" .. query{ "api-version", M.IMDS_API_VERSION,
      "resource", M.RESOURCE, id_param, id_value }
  else
    if not url_host(ie) then
      error("acscall.credential.managed_identity: IDENTITY_ENDPOINT must be an http(s) URL", 2)
    end
    self.target = ie:gsub("%?.*$", "")
    self.url = ie .. (ie:find("?", 1, true) and "&" or "?") .. query{ "api-version",
      M.APP_SERVICE_API_VERSION, "resource", M.RESOURCE, id_param, id_value }
    self._identity_header = ih
  end
  if opts.imds_retry ~= nil and type(opts.imds_retry) ~= "table" then
    error("acscall.credential.managed_identity: imds_retry must be a table", 2)
  end
  self.retry = endpoint_retry("managed_identity", M.RETRY[self.source], opts, opts.imds_retry, 3)
  check_targets("managed_identity", self)
  return self
end

function ManagedIdentity:describe()
  local who = self.client_id and (", client_id " .. self.client_id)
    or self.resource_id and (", resource_id " .. self.resource_id)
    or self.object_id and (", object_id " .. self.object_id) or ""
  return self.source .. " " .. self.target .. who
end

-- IMDS in a chain: is anything listening? @azure/identity 4.13.0
-- `managedIdentityCredential/imdsMsi.js`: one GET of the token path with no
-- query and no Metadata header (IMDS refuses it at once), `Accept:
-- application/json`, a 1 s timeout, no retry; any answer means available. With
-- `AZURE_POD_IDENTITY_AUTHORITY_HOST` set the endpoint is assumed and not probed.
function ManagedIdentity:probe()
  if self.pod_identity then return true end
  if self._available ~= nil then return self._available end
  local t = self._probe_transport
  if not t then
    if self._transport_opt then
      t = self._transport_opt
    else
      t = core.fetcher{ retries = 0, timeout = 1, connect_timeout = 1, deadline = 2,
        ca_file = self._fetcher_opts.ca_file }
    end
    self._probe_transport = t
  end
  local st = t:fetch{ url = self.target, method = "GET", headers = { Accept = "application/json" }, timeout = 1,
    retries = 0 }
  self._available = st ~= nil
  if t ~= self._transport_opt and type(t.close) == "function" then t:close() end
  self._probe_transport = nil
  return self._available
end

function ManagedIdentity:fetch_token()
  if self.unsupported then
    return self:fail("auth", self.unsupported, nil, "unavailable")
  end
  if self.in_chain and self.source == "imds" and not self:probe() then
    return self:fail("transport", "no IMDS endpoint answered at " .. self.target, nil, "unavailable")
  end
  local headers
  if self.source == "imds" then
    headers = { Metadata = "true" }
  else
    local ok = core.check_header_value(self._identity_header)
    if not ok then
      return self:fail("auth", "IDENTITY_HEADER holds a control character (refused: it would go into a header)")
    end
    headers = { ["X-IDENTITY-HEADER"] = self._identity_header }
  end
  local st, body, h = self:http{ url = self.url, method = "GET", headers = headers }
  if not st then
    -- @azure/identity 4.13.0 (managedIdentityCredential/index.js): a network
    -- failure is CredentialUnavailableError, so the chain moves on
    if self.in_chain and type(h) == "table" and h.kind == "transport" then MARK[h] = "unavailable" end
    return st, body, h
  end
  local token, expires, refresh_on = self:token_from(st, body)
  if not token and self.in_chain and self.source == "imds" and st == 400 then
    -- @azure/identity 4.13.0: a 400 from IMDS means no identity (or not this one) is assigned here
    MARK[refresh_on] = "unavailable"
  end
  return token, expires, refresh_on
end

-- ------------------------------------------------- client secret / workload

local ClientCredential = subclass()

local function authority_of(fname, opts, getenv)
  local a = opt_string(fname, opts, "authority_host") or getenv("AZURE_AUTHORITY_HOST") or M.AUTHORITY_HOST
  a = a:gsub("/+$", "")
  if not a:find("^[hH][tT][tT][pP][sS]://") and not (a:find("^[hH][tT][tT][pP]://") and M.is_loopback(a)) then
    -- azure-identity 1.24.0 refuses an authority that is not https
    error("acscall.credential." .. fname .. ": authority_host must be an https URL (http only to loopback)", 3)
  end
  return a
end

local function client_common(fname, opts, getenv)
  local self = new_credential(fname, opts)
  setmetatable(self, ClientCredential)
  self.tenant_id = opt_string(fname, opts, "tenant_id") or getenv("AZURE_TENANT_ID")
  self.client_id = opt_string(fname, opts, "client_id") or getenv("AZURE_CLIENT_ID")
  if not self.tenant_id then
    error("acscall.credential." .. fname .. ": no tenant_id (give tenant_id or set AZURE_TENANT_ID)", 3)
  end
  if not self.client_id then
    error("acscall.credential." .. fname .. ": no client_id (give client_id or set AZURE_CLIENT_ID)", 3)
  end
  -- azure-identity 1.24.0's tenant id check: letters, digits, '-' and '.'
  if not self.tenant_id:match("^[%w%-%.]+$") then
    error("acscall.credential." .. fname .. ": tenant_id may hold only letters, digits, '-' and '.'", 3)
  end
  self.authority = authority_of(fname, opts, getenv)
  self.target = self.authority .. "/" .. self.tenant_id .. "/oauth2/v2.0/token"
  self.retry = endpoint_retry(fname, M.RETRY.authority, opts, nil, 4)
  return self
end

--- A service principal's client secret (OAuth2 client credentials):
-- `POST {authority}/{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`,
-- `client_id`, `client_secret`, `scope=https://communication.azure.com//.default`.
-- Missing options are read from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
-- `AZURE_CLIENT_SECRET`, `AZURE_AUTHORITY_HOST` (azure-identity 1.24.0's EnvironmentCredential).
-- @tparam[opt] table opts `tenant_id`, `client_id`, `client_secret`, `authority_host`
--  (default https://login.microsoftonline.com), `env`, `transport`, core.fetcher's options
-- @raise when tenant, client id or secret is missing (the message never holds the secret)
function M.client_secret(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("acscall.credential.client_secret: options table expected", 2) end
  local getenv = env_reader(opts)
  local self = client_common("client_secret", opts, getenv)
  local secret = opts.client_secret
  if secret ~= nil and (type(secret) ~= "string" or secret == "") then
    error("acscall.credential.client_secret: client_secret must be a non-empty string", 2)
  end
  secret = secret or getenv("AZURE_CLIENT_SECRET")
  if not secret then
    error("acscall.credential.client_secret: no client_secret (give client_secret or set AZURE_CLIENT_SECRET)", 2)
  end
  -- kept out of the object's visible fields (tostring, a debugger's dump)
  local hidden = { secret = secret }
  self._secret = function() return hidden.secret end
  check_targets("client_secret", self)
  return self
end

--- Workload identity (AKS): the client assertion is the federated token in
-- `AZURE_FEDERATED_TOKEN_FILE`, read again for every token request (the
-- kubelet rotates it), sent with
-- `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
-- to the same token endpoint as client_secret. Missing options are read from
-- `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`,
-- `AZURE_AUTHORITY_HOST` (azure-identity 1.24.0's WorkloadIdentityCredential).
-- @tparam[opt] table opts `tenant_id`, `client_id`, `token_file`, `authority_host`,
--  `env`, `transport`, core.fetcher's options
function M.workload_identity(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("acscall.credential.workload_identity: options table expected", 2) end
  local getenv = env_reader(opts)
  local self = client_common("workload_identity", opts, getenv)
  self.token_file = opt_string("workload_identity", opts, "token_file") or getenv("AZURE_FEDERATED_TOKEN_FILE")
  if not self.token_file then
    error("acscall.credential.workload_identity: no token_file (give token_file or set "
      .. "AZURE_FEDERATED_TOKEN_FILE)", 2)
  end
  check_targets("workload_identity", self)
  return self
end

function ClientCredential:describe()
  return "tenant " .. self.tenant_id .. ", client_id " .. self.client_id .. ", " .. self.target
end

-- the assertion, read now (the file changes under us: no caching)
function ClientCredential:assertion()
  local f, err = io.open(self.token_file, "rb")
  if not f then
    return self:fail("local", "cannot read the federated token file " .. self.token_file .. " ("
      .. tostring(err):gsub("^[^:]*: ", "") .. ")")
  end
  local s = f:read("*a") or ""
  f:close()
  s = s:gsub("^%s+", ""):gsub("%s+$", "")
  if s == "" then
    return self:fail("local", "the federated token file " .. self.token_file .. " is empty")
  end
  return s
end

function ClientCredential:fetch_token()
  local form = { grant_type = "client_credentials", client_id = self.client_id, scope = M.SCOPE }
  if self._secret then
    form.client_secret = self._secret()
  else
    local a, msg, info
    if self._key then a, msg, info = self:certificate_assertion() else a, msg, info = self:assertion() end
    if not a then return a, msg, info end
    self._assertion = a -- a secret in play from now on
    form.client_assertion, form.client_assertion_type = a, M.JWT_BEARER
  end
  local st, body, h = self:http{ url = self.target, method = "POST", form = form,
    headers = { Accept = "application/json" } }
  if not st then return st, body, h end
  return self:token_from(st, body)
end

-- ---------------------------------------------------------- client certificate

-- base64url without padding (RFC 7515 section 2)
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local function b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for k = 1, chars do
      local v = math.floor(n / 2 ^ (6 * (4 - k))) % 64
      out[#out + 1] = B64:sub(v + 1, v + 1)
    end
  end
  return table.concat(out)
end
M._b64url = b64url

local function bxor(a, b)
  local r, bit = 0, 1
  while a > 0 or b > 0 do
    if a % 2 ~= b % 2 then r = r + bit end
    a, b, bit = math.floor(a / 2), math.floor(b / 2), bit * 2
  end
  return r
end

-- luaossl (Debian lua-luaossl), loaded when a certificate credential is built
local function ossl(fname)
  local ok, pkey = pcall(require, "openssl.pkey")
  if not ok then
    error("acscall.credential." .. fname .. ": needs luaossl (Debian lua-luaossl) for the certificate's key", 3)
  end
  return pkey, require "openssl.x509", require "openssl.digest", require "openssl.rand"
end

-- RSASSA-PSS with SHA-256, salt 32 bytes, MGF1-SHA-256 (RFC 8017 sections 8.1.1, 9.1.1):
-- EMSA-PSS encoding in Lua, then the raw RSA private-key operation (luaossl's signing
-- has PKCS #1 v1.5 padding only)
local function ps256(key, data, lib)
  local sha = function(x) return lib.digest.new("sha256"):final(x) end
  local n = key:getParameters().n:toBinary()
  local k = #n
  local mod_bits = 8 * k
  local top = n:byte(1)
  while top < 128 do mod_bits, top = mod_bits - 1, top * 2 end
  local em_bits = mod_bits - 1
  local em_len = math.ceil(em_bits / 8)
  local salt = lib.rand.bytes(32)
  local h = sha(("\0"):rep(8) .. sha(data) .. salt)
  local db = ("\0"):rep(em_len - 32 - 32 - 2) .. "\1" .. salt
  local mask, c = {}, 0
  while #table.concat(mask) < #db do
    mask[#mask + 1] = sha(h .. string.char(0, 0, math.floor(c / 256), c % 256))
    c = c + 1
  end
  mask = table.concat(mask)
  local bytes = {}
  for i = 1, #db do bytes[i] = bxor(db:byte(i), mask:byte(i)) end
  -- the leftmost 8 * em_len - em_bits bits are zero
  bytes[1] = bytes[1] % 2 ^ (8 - (8 * em_len - em_bits))
  for i = 1, #bytes do bytes[i] = string.char(bytes[i]) end
  local em = table.concat(bytes) .. h .. "\188"
  em = ("\0"):rep(k - #em) .. em
  return key:decrypt(em, { rsaPadding = lib.pkey.RSA_NO_PADDING })
end

-- An encrypted private key, decrypted by the openssl command (luaossl takes no passphrase):
-- the password goes through a file only this user can read, never on a command line.
local function decrypt_key(self, pem, password)
  local keyfile, passfile = os.tmpname(), os.tmpname()
  local function write(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
  end
  write(keyfile, pem)
  write(passfile, password)
  local code, out = (self._spawn or core.spawn){ argv = { "openssl", "pkey", "-in", keyfile, "-passin",
    "file:" .. passfile }, timeout = 10 }
  os.remove(keyfile)
  os.remove(passfile)
  if code ~= 0 or type(out) ~= "string" or not out:find("PRIVATE KEY", 1, true) then
    return nil
  end
  return out
end

--- A service principal's certificate (OAuth2 client credentials with a
-- client assertion), as @azure/identity 4.13.0's `ClientCertificateCredential`
-- builds it through @azure/msal-node 3.8.10's `ClientAssertion`: a JWT with
-- header `{"alg":"PS256","typ":"JWT","x5t#S256":<base64url SHA-256 of the
-- certificate's DER>}` (plus `x5c`, the chain, with `send_certificate_chain`),
-- claims `aud` = the token endpoint, `iss` = `sub` = the client id, `nbf` =
-- now, `exp` = now + 600, `jti` a random UUID, signed RSASSA-PSS SHA-256 with
-- the certificate's key; sent as `client_assertion` with
-- `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
-- Missing options are read from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
-- `AZURE_CLIENT_CERTIFICATE_PATH`, `AZURE_CLIENT_CERTIFICATE_PASSWORD`,
-- `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN`, `AZURE_AUTHORITY_HOST`
-- (EnvironmentCredential's variables). Needs luaossl (Debian lua-luaossl); an
-- encrypted key also the `openssl` command.
-- @tparam[opt] table opts `tenant_id`, `client_id`, `certificate_path` (a PEM file holding the
--  certificate and its RSA private key), `certificate` (the PEM text instead), `password`,
--  `send_certificate_chain`, `authority_host`, `env`, `transport`, core.fetcher's options
-- @raise when a setting is missing, the file has no certificate or no usable key
function M.client_certificate(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("acscall.credential.client_certificate: options table expected", 2) end
  local getenv = env_reader(opts)
  local self = client_common("client_certificate", opts, getenv)
  local lib = {}
  lib.pkey, lib.x509, lib.digest, lib.rand = ossl("client_certificate")
  local pem = opt_string("client_certificate", opts, "certificate")
  local path = opt_string("client_certificate", opts, "certificate_path") or getenv("AZURE_CLIENT_CERTIFICATE_PATH")
  if not pem then
    if not path then
      error("acscall.credential.client_certificate: no certificate (give certificate_path or set "
        .. "AZURE_CLIENT_CERTIFICATE_PATH)", 2)
    end
    local f, err = io.open(path, "rb")
    if not f then
      error("acscall.credential.client_certificate: cannot read " .. path .. " (" .. tostring(err) .. ")", 2)
    end
    pem = f:read("*a")
    f:close()
  end
  local certs = {}
  for body in pem:gmatch("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-(.-)%-%-%-%-%-END CERTIFICATE%-%-%-%-%-") do
    certs[#certs + 1] = body:gsub("%s", "")
  end
  if #certs == 0 then
    error("acscall.credential.client_certificate: " .. (path or "certificate") .. " holds no PEM certificate", 2)
  end
  local key_pem = pem:match("(%-%-%-%-%-BEGIN [%u ]*PRIVATE KEY%-%-%-%-%-.-%-%-%-%-%-END [%u ]*PRIVATE KEY%-%-%-%-%-)")
  if not key_pem then
    error("acscall.credential.client_certificate: " .. (path or "certificate") .. " holds no private key", 2)
  end
  local password = opts.password or getenv("AZURE_CLIENT_CERTIFICATE_PASSWORD")
  if password ~= nil and type(password) ~= "string" then
    error("acscall.credential.client_certificate: password must be a string", 2)
  end
  self._spawn = opts.spawn
  if key_pem:find("ENCRYPTED", 1, true) then
    if not password then
      error("acscall.credential.client_certificate: the private key is encrypted: give password or set "
        .. "AZURE_CLIENT_CERTIFICATE_PASSWORD", 2)
    end
    key_pem = decrypt_key(self, key_pem, password)
    if not key_pem then
      error("acscall.credential.client_certificate: the private key could not be decrypted with the password "
        .. "(or the openssl command is missing)", 2)
    end
  end
  local ok, key = pcall(lib.pkey.new, key_pem)
  if not ok or key:type() ~= "rsaEncryption" and key:type() ~= "RSA" then
    error("acscall.credential.client_certificate: the private key is not a usable RSA key", 2)
  end
  local crt = lib.x509.new("-----BEGIN CERTIFICATE-----\n" .. certs[1] .. "\n-----END CERTIFICATE-----\n")
  local send_chain = opts.send_certificate_chain
  if send_chain == nil then
    local v = getenv("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN")
    send_chain = v == "1" or v == "true"
  end
  local hidden = { key = key }
  self._lib = lib
  self._key = function() return hidden.key end
  self.thumbprint_sha256 = b64url(crt:digest("sha256", "s"))
  self._x5c = send_chain and certs or nil
  check_targets("client_certificate", self)
  return self
end

--- The client assertion of a certificate credential: a signed JWT (see client_certificate).
function ClientCredential:certificate_assertion()
  local iat = math.floor(now())
  local enc = cjson.encode
  local header = { alg = "PS256", typ = "JWT", ["x5t#S256"] = self.thumbprint_sha256, x5c = self._x5c }
  local claims = { aud = self.target, iss = self.client_id, sub = self.client_id, nbf = iat, exp = iat + 600,
    jti = core.uuid() }
  local input = b64url(enc(header)) .. "." .. b64url(enc(claims))
  local ok, sig = pcall(ps256, self._key(), input, self._lib)
  if not ok or type(sig) ~= "string" then
    return self:fail("local", "the client assertion could not be signed with the certificate's key")
  end
  return input .. "." .. b64url(sig)
end

-- ------------------------------------------------------------------ az CLI

local AzureCli = subclass()

--- The Azure CLI's login: runs `az account get-access-token --output json
-- --resource https://communication.azure.com/ [--tenant T]` (no shell: an
-- argument vector; stdin /dev/null) and reads `accessToken` and `expires_on`
-- (Unix seconds, az >= 2.54) or `expiresOn` (local time), as @azure/identity
-- 4.13.0's `azureCliCredential.js` (and azure-identity 1.24.0's `azure_cli.py`) do.
-- In a chain, an az that is missing, not logged in or too old for these
-- arguments is unavailable (the chain moves on); Entra ID refusing the login
-- ends it.
-- @tparam[opt] table opts `command` (the az to run, default "az" on PATH;
--  env `ACSCALL_AZURE_CLI`), `tenant_id`, `timeout` (seconds, default 10), `env`
function M.azure_cli(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("acscall.credential.azure_cli: options table expected", 2) end
  local getenv = env_reader(opts)
  local self = setmetatable({ kind = "azure_cli" }, AzureCli)
  self.command = opt_string("azure_cli", opts, "command") or getenv("ACSCALL_AZURE_CLI") or "az"
  self.tenant_id = opt_string("azure_cli", opts, "tenant_id")
  if self.tenant_id and not self.tenant_id:match("^[%w%-%.]+$") then
    error("acscall.credential.azure_cli: tenant_id may hold only letters, digits, '-' and '.'", 2)
  end
  self.timeout = opts.timeout or 10
  if type(self.timeout) ~= "number" or self.timeout <= 0 then
    error("acscall.credential.azure_cli: timeout must be a number of seconds > 0", 2)
  end
  self._spawn = opts.spawn -- for tests: a function like core.spawn
  self._option = opts._option or "command" -- the option that names the az (default{}: az_command)
  check_targets("azure_cli", self)
  return self
end

function AzureCli:targets() return {} end

function AzureCli:describe()
  return "command " .. self.command .. (self.tenant_id and (", tenant " .. self.tenant_id) or "")
end

function AzureCli:close() self._cache = nil end

-- "2023-10-31 21:59:10.000000" in local time (older az versions)
local function parse_local_time(s)
  local y, mo, d, h, mi, se = tostring(s):match("^(%d+)%-(%d+)%-(%d+)[ T](%d+):(%d+):(%d+)")
  if not y then return nil end
  return os.time{ year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(h),
    min = tonumber(mi), sec = tonumber(se) }
end

-- the tokens az printed (JSON accessToken values, JWTs): secrets in play
local function tokens_in(...)
  local out = {}
  for i = 1, select("#", ...) do
    local text = select(i, ...)
    if type(text) == "string" then
      for v in text:gmatch('"accessToken"%s*:%s*"([^"]+)"') do out[#out + 1] = v end
      for v in text:gmatch("eyJ[%w%-_]+%.[%w%-_]+%.?[%w%-_]*") do out[#out + 1] = v end
    end
  end
  return out
end

-- what to do about a missing az: the option (and variable) that names it
function AzureCli:not_found()
  return self:fail("local", self.command .. " not found: install the Azure CLI, or set " .. self._option
    .. " (or ACSCALL_AZURE_CLI) to its path", nil, "unavailable")
end

function AzureCli:fetch_token()
  local argv = { self.command, "account", "get-access-token", "--output", "json", "--resource", M.RESOURCE }
  if self.tenant_id then argv[#argv + 1] = "--tenant"; argv[#argv + 1] = self.tenant_id end
  local code, out, err = (self._spawn or core.spawn){ argv = argv, timeout = self.timeout }
  self._extra_secrets = tokens_in(out, err)
  if not code then
    local info = type(err) == "table" and err or {}
    local low = tostring(out):lower()
    if low:find("not found", 1, true) or low:find("no such file", 1, true) then return self:not_found() end
    -- info.message: core.spawn's reason without its kind (the failure here adds it once)
    return self:fail(info.kind or "local", info.message or tostring(out), fields_of(info))
  end
  if code ~= 0 then
    err = tostring(err or "")
    local low = err:lower()
    local first = err:match("[^\n]*%S[^\n]*") or ""
    if code == 127 or low:find("az:.*not found") or low:find("not recognized", 1, true)
      or low:find("no such file", 1, true) then
      return self:not_found()
    end
    if low:find("az login", 1, true) or low:find("az account set", 1, true) then
      return self:fail("auth", "not logged in (run az login)", nil, "unavailable")
    end
    if code == 2 or low:find("unrecognized arguments", 1, true) or low:find("misspelled", 1, true) then
      -- argparse's usage error: an az older than these arguments
      return self:fail("local", self.command .. " did not accept account get-access-token --resource (exit "
        .. code .. "; update the Azure CLI): " .. first, nil, "unavailable")
    end
    return self:fail("auth", self.command .. " exited " .. tostring(code) .. (first ~= "" and (": " .. first) or ""))
  end
  local j = cjson.decode(out or "")
  if type(j) ~= "table" then
    return self:fail("decode", "the output of az account get-access-token is not JSON")
  end
  local problem = token_problem(j.accessToken)
  if problem then
    return self:fail(type(j.accessToken) == "string" and "auth" or "decode", "az account get-access-token gave "
      .. problem)
  end
  local t = now()
  local expires = number_of(j.expires_on) or parse_local_time(j.expiresOn)
  if not expires then
    return self:fail("decode", "the output of az account get-access-token has no expiry")
  end
  if not usable_lifetime(expires - t) then
    return self:fail("auth", "az account get-access-token gave a token whose expiry (" .. tostring(expires)
      .. ") is not one a token can have")
  end
  return j.accessToken, expires
end

-- ------------------------------------------------------------------ default

local Chain = subclass()

--- DefaultAzureCredential's chain, in the SDKs' order (azure-identity 1.24.0
-- `_credentials/default.py`, @azure/identity 4.13.0 `defaultAzureCredential.ts`):
-- environment (client secret from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
-- `AZURE_CLIENT_SECRET`), workload identity (`AZURE_FEDERATED_TOKEN_FILE`),
-- managed identity (`client_id` from `managed_identity_client_id` or
-- `AZURE_CLIENT_ID`; IMDS is probed first, one short try), Azure CLI.
-- A link whose configuration is absent is skipped; a link that is
-- unavailable (no IMDS, az missing or not logged in) passes to the next; the
-- first link that gives a token is used from then on. A link that is
-- configured but refused (a wrong secret) ends the chain with its error.
-- @tparam[opt] table opts `managed_identity_client_id`, `managed_identity_resource_id`,
--  `imds_endpoint` (the IMDS host), `authority_host`, `az_command`, `tenant_id`, `env`,
--  `transport`, `exclude` (a set of link names: environment, workload_identity,
--  managed_identity, azure_cli), core.fetcher's options
function M.default(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("acscall.credential.default: options table expected", 2) end
  local getenv = env_reader(opts)
  local exclude = opts.exclude or {}
  local self = setmetatable({ kind = "default", links = {}, skipped = {} }, Chain)
  local function sub(extra)
    local o = {}
    for _, k in ipairs{ "env", "transport", "ca_file", "user_agent", "timeout", "connect_timeout", "deadline",
      "retries", "base_delay", "max_delay", "retry_scale", "max_body", "authority_host" } do o[k] = opts[k] end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end
  local function skip(name, why) self.skipped[#self.skipped + 1] = { name = name, why = why } end
  local function missing(names)
    local m = {}
    for _, n in ipairs(names) do if not getenv(n) then m[#m + 1] = n end end
    return m
  end
  local tenant = opts.tenant_id
  -- 1. environment (EnvironmentCredential: the secret form only)
  if exclude.environment then
    skip("environment", "excluded")
  else
    local m = missing{ "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET" }
    if #m == 0 then
      self.links[#self.links + 1] = { name = "environment", cred = M.client_secret(sub{}) }
    elseif getenv("AZURE_CLIENT_CERTIFICATE_PATH") and #missing{ "AZURE_TENANT_ID", "AZURE_CLIENT_ID" } == 0 then
      -- EnvironmentCredential: the secret first, then the certificate (@azure/identity 4.13.0)
      self.links[#self.links + 1] = { name = "environment", cred = M.client_certificate(sub{}) }
    elseif getenv("AZURE_USERNAME") then
      skip("environment", "username/password is not supported")
    else
      skip("environment", table.concat(m, ", ") .. " not set")
    end
  end
  -- 2. workload identity
  if exclude.workload_identity then
    skip("workload_identity", "excluded")
  else
    local m = missing{ "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE" }
    if #m == 0 then
      self.links[#self.links + 1] = { name = "workload_identity",
        cred = M.workload_identity(sub{ tenant_id = tenant }) }
    else
      skip("workload_identity", table.concat(m, ", ") .. " not set")
    end
  end
  -- 3. managed identity (always configured; may be unavailable)
  if exclude.managed_identity then
    skip("managed_identity", "excluded")
  else
    local mi = M.managed_identity(sub{
      client_id = opts.managed_identity_client_id
        or (not opts.managed_identity_resource_id and getenv("AZURE_CLIENT_ID")) or nil,
      resource_id = opts.managed_identity_resource_id, endpoint = opts.imds_endpoint })
    mi.in_chain = true
    self.links[#self.links + 1] = { name = "managed_identity", cred = mi }
  end
  -- 4. Azure CLI
  if exclude.azure_cli then
    skip("azure_cli", "excluded")
  else
    self.links[#self.links + 1] = { name = "azure_cli", cred = M.azure_cli{ command = opts.az_command,
      tenant_id = tenant, env = opts.env, spawn = opts.spawn, _option = "az_command" } }
  end
  return self
end

function Chain:targets()
  local out = {}
  for _, l in ipairs(self.links) do
    for _, u in ipairs(l.cred:targets()) do out[#out + 1] = u end
  end
  return out
end

function Chain:describe()
  local parts = {}
  for _, l in ipairs(self.links) do parts[#parts + 1] = l.name .. ": " .. l.cred:describe() end
  for _, s in ipairs(self.skipped) do parts[#parts + 1] = s.name .. ": skipped" end
  return table.concat(parts, "; ")
end

function Chain:close()
  for _, l in ipairs(self.links) do l.cred:close() end
end

function Chain:get_token(opts)
  if self.chosen then return self.chosen.cred:get_token(opts) end
  local why = {}
  for _, sk in ipairs(self.skipped) do why[#why + 1] = sk.name .. ": skipped (" .. sk.why .. ")" end
  for _, l in ipairs(self.links) do
    local token, b, info = l.cred:get_token(opts)
    if token then
      self.chosen = l
      return token, b
    end
    -- the link's own words (info.message: the core's text without the kind before it)
    local words = tostring(type(info) == "table" and info.message or b)
    if MARK[info] ~= "unavailable" then
      -- configured and refused: the chain ends here (the SDKs' behaviour)
      return failure(type(info) == "table" and info.kind or "auth", "default: " .. l.name .. " failed: "
        .. words, self:secrets(), fields_of(info))
    end
    why[#why + 1] = l.name .. ": unavailable (" .. words:gsub("^[%w_]+: ", "") .. ")"
  end
  return failure("auth", "default: no credential available: " .. table.concat(why, "; "), self:secrets())
end

-- every secret of every link
function Chain:secrets()
  local out = {}
  for _, l in ipairs(self.links) do
    for _, v in ipairs(l.cred:secrets()) do out[#out + 1] = v end
  end
  return out
end

-- ----------------------------------------------------------- by name (CLI)

--- The credential for a name as the CLI spells it (`default`,
-- `managed-identity`, `cli`, `client-secret`, `workload-identity`).
-- By name, `managed-identity` takes a user-assigned identity's client id
-- from `AZURE_CLIENT_ID` (as DefaultAzureCredential does) unless `opts`
-- gives `client_id` or `resource_id`: a configuration by environment alone.
-- @tparam string name
-- @tparam[opt] table opts the credential's options
function M.by_name(name, opts)
  if name == "managed-identity" then
    opts = opts or {}
    if opts.client_id == nil and opts.resource_id == nil then
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.client_id = env_reader(opts)("AZURE_CLIENT_ID")
      opts = o
    end
  end
  local f = ({ default = M.default, ["managed-identity"] = M.managed_identity, cli = M.azure_cli,
    ["azure-cli"] = M.azure_cli, ["client-secret"] = M.client_secret,
    ["workload-identity"] = M.workload_identity, ["client-certificate"] = M.client_certificate })[name]
  if not f then
    error("acscall.credential.by_name: unknown credential '" .. tostring(name) .. "' (default, "
      .. "managed-identity, cli, client-secret, workload-identity, client-certificate)", 2)
  end
  return f(opts)
end
M.NAMES = { "default", "managed-identity", "cli", "client-secret", "workload-identity", "client-certificate" }

return M
