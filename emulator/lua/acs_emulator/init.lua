-- acs_emulator: the request handler of the ACS Call Automation emulator (nginx + lua-nginx-module).
-- Configuration comes from init_by_lua (see emulator/acs-emulator): acs_emulator.configure{...}.
local cjson = require "cjson.safe"
local auth = require "acs_emulator.auth"
local identity = require "acs_emulator.identity"

local ngx = ngx
local M = { cfg = {} }

local CALL_PREFIX = "/calling/callConnections/"
local REDIRECTED_PREFIX = "/_emulator/redirected/"

function M.configure(cfg)
  M.cfg = cfg
  local ok, err = auth.self_test()
  if not ok then error(err) end
end

---------------------------------------------------------------------------------------------------
-- per-worker state
local logfh
local cache = {}

function M.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
  logfh = assert(io.open(M.cfg.log_path, "a"))
end

local function uuid4()
  local r = math.random
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x",
    r(0, 0xffffffff), r(0, 0xffff), r(0, 0xfff), 0x8000 + r(0, 0x3fff), r(0, 0xffff), r(0, 0xffffffff))
end

local function pct_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- a decoded id is safe as a file name under the fixtures directory
local function safe_id(id)
  return id ~= "" and not id:find("[/%z]") and id:sub(1, 1) ~= "."
end

local function fixture(id)
  if not safe_id(id) then return nil end
  return read_file(M.cfg.fixtures .. "/" .. id .. ".json")
end

local function fixture_meta(id)
  if not safe_id(id) then return nil end
  local s = read_file(M.cfg.fixtures .. "/" .. id .. ".meta.json")
  if not s then return nil end
  local meta = cjson.decode(s)
  if type(meta) ~= "table" or type(meta.fault) ~= "string" then return nil end
  local params = {}
  for k, v in pairs(meta) do
    if k ~= "fault" then params[k] = tostring(v) end
  end
  return meta.fault, params
end

-- "name;k=v;k2=v2"
local function parse_fault(header)
  if type(header) == "table" then header = header[1] end
  if not header or header == "" then return nil end
  local name, rest = header:match("^%s*([^;%s]+)%s*(.*)$")
  if not name then return nil end
  local params = {}
  for k, v in rest:gmatch(";%s*([%w_%-]+)%s*=%s*([^;]*)") do
    params[k:lower()] = v:match("^(.-)%s*$")
  end
  return name:lower(), params
end

---------------------------------------------------------------------------------------------------
-- request log: one JSON line per request, written before the response is sent so a client can
-- read it as soon as it has the response.
local function log_entry(status)
  local ctx = ngx.ctx
  if ctx.logged or not logfh then return end
  ctx.logged = true
  if ctx.nolog then return end
  local headers = {}
  for k, v in pairs(ngx.req.get_headers(200)) do
    if k == "authorization" then
      -- keep a known scheme only: anything else (a bare token, a typo'd
      -- scheme) may be the credential itself
      local function redact(x)
        local scheme = x:match("^%s*(%S+)%s")
        local l = scheme and scheme:lower()
        if l == "bearer" or l == "hmac-sha256" then return scheme .. " <redacted>" end
        return "<redacted>"
      end
      if type(v) == "table" then
        local t = {}
        for i, x in ipairs(v) do t[i] = redact(x) end
        v = t
      else
        v = redact(v)
      end
    end
    if k == "x-identity-header" then v = "<redacted>" end -- App Service's shared secret
    headers[k] = v
  end
  ngx.update_time()
  local e = {
    time = ngx.now(),
    method = ngx.req.get_method(),
    uri = ngx.var.request_uri,
    path = ctx.path or ngx.var.uri,
    id = ctx.id or cjson.null,
    route = ctx.route or "other",
    headers = headers,
    auth = ctx.auth or "none",
    token_fp = ctx.token_fp or cjson.null,
    identity = ctx.identity or cjson.null,
    status = status or cjson.null,
    fault = ctx.fault or cjson.null,
    request_id = ctx.request_id or cjson.null,
    connection = tonumber(ngx.var.connection),
    connection_requests = tonumber(ngx.var.connection_requests),
  }
  logfh:write(cjson.encode(e), "\n")
  logfh:flush()
end

function M.log()
  -- fallback for requests that ended without going through respond() (aborts, internal errors)
  if not ngx.ctx.logged then log_entry(ngx.status) end
end

local function respond(status, body, headers, ctype)
  log_entry(status)
  ngx.status = status
  ngx.header["x-ms-request-id"] = ngx.ctx.request_id
  if body ~= nil then
    ngx.header["Content-Type"] = ctype or "application/json"
  end
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  if body and body ~= "" then
    ngx.header["Content-Length"] = #body
    ngx.print(body)
  else
    ngx.header["Content-Length"] = 0
  end
  return ngx.exit(status)
end

local function error_response(status, code, message, headers)
  return respond(status, cjson.encode({ error = { code = code, message = message } }), headers)
end

local function not_found_call()
  return error_response(404, "8522", "Call not found.")
end

---------------------------------------------------------------------------------------------------
-- canned bodies for faults

local function oversized_body()
  if not cache.oversized then
    local pad = string.rep("x", 6 * 1024 * 1024)
    cache.oversized = '{"callConnectionId":"oversized","callConnectionState":"connected","padding":"'
      .. pad .. '"}'
  end
  return cache.oversized
end

local function deep_body()
  if not cache.deep then
    cache.deep = '{"callConnectionId":"deep","callConnectionState":"connected","deep":'
      .. string.rep("[", 10000) .. string.rep("]", 10000) .. "}"
  end
  return cache.deep
end

local WRONGTYPES_BODY = '{"callConnectionId":12345,"serverCallId":["not","a","string"],'
  .. '"callConnectionState":true,"source":"8:acs:not-an-object","targets":{"kind":"phoneNumber"},'
  .. '"sourceCallerIdNumber":{"value":18440123456},"answeredBy":[],"callbackUri":42,'
  .. '"mediaStreamingSubscription":"active","transcriptionSubscription":{"subscribedResultTypes":"final"}}'

local MALFORMED_BODY = '{"callConnectionId": "malformed", "callConnectionState": "connected", "targets": [{"kind": '

-- truncate: promise Content-Length of the whole body, send half of it, close the connection
local function truncated(body)
  log_entry(200)
  ngx.req.read_body()
  local sock, err = ngx.req.socket(true)
  if not sock then
    ngx.log(ngx.ERR, "truncate: raw socket: ", err)
    return ngx.exit(444)
  end
  local half = body:sub(1, math.floor(#body / 2))
  sock:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #body
    .. "\r\nx-ms-request-id: " .. ngx.ctx.request_id .. "\r\nConnection: close\r\n\r\n" .. half)
  ngx.ctx.truncated = true
  return ngx.exit(ngx.OK)
end

local FAULTS = {}

-- the retry headers a transient error may carry, each only if asked for:
-- retry_after (Retry-After, verbatim), retry_after_date (Retry-After as the
-- HTTP date that many seconds from now), ms (retry-after-ms), x_ms
-- (x-ms-retry-after-ms)
local function retry_headers(p)
  local h = {}
  if p.retry_after then h["Retry-After"] = p.retry_after end
  if tonumber(p.retry_after_date) then
    h["Retry-After"] = ngx.http_time(ngx.time() + tonumber(p.retry_after_date))
  end
  if p.ms then h["retry-after-ms"] = p.ms end
  if p.x_ms then h["x-ms-retry-after-ms"] = p.x_ms end
  return h
end

FAULTS["429"] = function(p)
  return error_response(429, "TooManyRequests", "Rate limit exceeded (emulated).",
    { ["Retry-After"] = p.retry_after or "1" })
end
FAULTS["429ms"] = function(p)
  return error_response(429, "TooManyRequests", "Rate limit exceeded (emulated).",
    { ["retry-after-ms"] = p.ms or "100" })
end
FAULTS["429bare"] = function(p)
  return error_response(429, "TooManyRequests", "Rate limit exceeded (emulated).", retry_headers(p))
end
FAULTS["503"] = function(p)
  return error_response(503, "ServiceUnavailable", "The service is temporarily unavailable (emulated).",
    retry_headers(p))
end
FAULTS["408"] = function(p)
  return error_response(408, "RequestTimeout", "The request timed out (emulated).", retry_headers(p))
end
FAULTS["502"] = function(p)
  return error_response(502, "BadGateway", "Bad gateway (emulated).", retry_headers(p))
end
FAULTS["504"] = function(p)
  return error_response(504, "GatewayTimeout", "The gateway timed out (emulated).", retry_headers(p))
end
FAULTS["403"] = function()
  return error_response(403, "Forbidden", "The credential is not allowed to read this call (emulated).")
end
FAULTS["500"] = function()
  return error_response(500, "InternalServerError", "An internal server error occurred (emulated).")
end
FAULTS["502html"] = function()
  return respond(502, "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    .. "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>emulated gateway</center>\r\n"
    .. "</body>\r\n</html>\r\n", nil, "text/html")
end
FAULTS["reset"] = function()
  log_entry(444)
  return ngx.exit(444)
end
-- a careless server or gateway that quotes the request's credential back
-- (the acscall client must not pass it on)
local function authorization_header()
  local a = ngx.req.get_headers(200)["authorization"]
  if type(a) == "table" then a = a[1] end
  return a or ""
end
FAULTS["echoauth"] = function()
  return error_response(401, "InvalidAuthenticationToken",
    "Authorization header '" .. authorization_header() .. "' is invalid (emulated).")
end
FAULTS["echoauth_html"] = function()
  local a = authorization_header()
  return respond(403, "<html><head><title>403 Forbidden: " .. a .. "</title></head><body><h1>Forbidden</h1>"
    .. "<p>" .. a .. "</p></body></html>\r\n", nil, "text/html")
end
-- 200 whose body is a CommunicationErrorResponse, not a call
FAULTS["error200"] = function()
  return error_response(200, "CallNotActive", "The call is no longer active (emulated).")
end
-- 200 with a gzip body the client never asked for (no Accept-Encoding)
local GZIP_BODY = "\31\139\8\0\0\0\0\0\2\3\171\86\74\78\204\201\113\206\207\203\75\77\46\201\204\207"
  .. "\243\76\81\178\82\74\175\202\44\80\210\65\147\9\46\73\44\73\5\74\38\67\68\82\83\148\106\1"
  .. "\215\116\192\62\61\0\0\0"
FAULTS["gzip"] = function()
  return respond(200, GZIP_BODY, {["Content-Encoding"] = "gzip"})
end
FAULTS["malformed"] = function() return respond(200, MALFORMED_BODY) end
FAULTS["array"] = function() return respond(200, "[]") end
FAULTS["empty"] = function() return respond(200, "", { ["Content-Type"] = "application/json" }) end
FAULTS["oversized"] = function() return respond(200, oversized_body()) end
FAULTS["deep"] = function() return respond(200, deep_body()) end
FAULTS["wrongtypes"] = function() return respond(200, WRONGTYPES_BODY) end
FAULTS["redirect"] = function(_, id)
  local loc = ngx.var.scheme .. "://" .. (ngx.var.http_host or ("127.0.0.1:" .. ngx.var.server_port))
    .. REDIRECTED_PREFIX .. ngx.escape_uri(id) .. "?api-version=" .. ngx.escape_uri(ngx.ctx.api_version or "")
  return error_response(302, "Redirect", "Moved (emulated).", { Location = loc })
end
-- faults that delay, then fall through to normal serving (return without responding)
FAULTS["latency"] = function(p)
  ngx.sleep((tonumber(p.ms) or 100) / 1000)
end
FAULTS["stall"] = function(p)
  log_entry(nil)  -- logged when the stall begins: status null
  ngx.sleep((tonumber(p.ms) or 60000) / 1000)
end
FAULTS["truncate"] = function() end -- handled in serve_call (needs the body)

M.FAULT_NAMES = {}
for k in pairs(FAULTS) do M.FAULT_NAMES[#M.FAULT_NAMES + 1] = k end
table.sort(M.FAULT_NAMES)

---------------------------------------------------------------------------------------------------
local function serve_fixture(id, truncate)
  local body = fixture(id)
  if not body then return not_found_call() end
  if truncate then return truncated(body) end
  return respond(200, body)
end

local function on_abort()
  log_entry(499)
  return ngx.exit(499)
end

---------------------------------------------------------------------------------------------------
-- Fleet mode: calls whose state follows a schedule over time, derived from the id alone.
-- `fleet-<n>-<period_ms>[-<anything>]`: from the first request for that id (the call's start,
-- kept in the shared dict), the call is in state floor(elapsed / period) of
--   connecting, connected, (transferring, connected) x (n % 3), disconnecting, disconnected
-- (4, 6 or 8 states: each lasts one period), and answers 404 from one period after it became
-- disconnected. No fixture file is needed.
local FLEET_PATTERN = "^fleet%-(%d+)%-(%d+)"

function M.fleet_schedule(n)
  local states = { "connecting", "connected" }
  for _ = 1, n % 3 do
    states[#states + 1] = "transferring"
    states[#states + 1] = "connected"
  end
  states[#states + 1] = "disconnecting"
  states[#states + 1] = "disconnected"
  return states
end

-- the state of a fleet call now, or nil once it is gone (404); nil, false when id is not one
local function fleet_state(id)
  local n, period = id:match(FLEET_PATTERN)
  n, period = tonumber(n), tonumber(period)
  if not n or not period or period < 1 then return nil, false end
  local dict = ngx.shared.acs_emulator
  ngx.update_time()
  local now = ngx.now()
  local key = "fleet\0" .. id
  dict:add(key, now, 3600) -- the first request starts the call
  local t0 = dict:get(key) or now
  local states = M.fleet_schedule(n)
  local k = math.floor((now - t0) * 1000 / period) + 1
  return states[k], true
end

local function serve_fleet(id, state)
  local n = tonumber((id:match(FLEET_PATTERN)))
  return respond(200, cjson.encode({
    callConnectionId = id,
    callConnectionState = state,
    serverCallId = "fleet-server-" .. n,
    correlationId = string.format("00000000-0000-4000-8000-%012d", n % 1e12),
    callbackUri = "https://contoso.example/events",
    source = { kind = "communicationUser", rawId = "8:acs:fleet-source",
               communicationUser = { id = "8:acs:fleet-source" } },
    targets = { { kind = "phoneNumber", rawId = string.format("4:+1425%07d", n % 1e7),
                  phoneNumber = { value = string.format("+1425%07d", n % 1e7) } } },
  }))
end

-- Throttle switch: `/_emulator/throttle?seconds=S[&retry_after=R][&status=429|503]` makes every
-- Get Call (after auth and the api-version check) answer that status with `Retry-After: R`
-- (default: S rounded up) for the next S seconds; `seconds=0` ends it at once.
local function throttle_set()
  local args = ngx.req.get_uri_args(20)
  local seconds = tonumber(args.seconds)
  local status = tonumber(args.status or 429)
  if not seconds or seconds < 0 or (status ~= 429 and status ~= 503) then
    return error_response(400, "BadThrottle", "seconds=S (>= 0) and status=429|503 expected")
  end
  local retry_after = args.retry_after or tostring(math.ceil(seconds))
  local dict = ngx.shared.acs_emulator
  ngx.update_time()
  local until_t = ngx.now() + seconds
  dict:set("throttle\0until", until_t)
  dict:set("throttle\0retry_after", retry_after)
  dict:set("throttle\0status", status)
  ngx.ctx.route = "throttle"
  return respond(200, cjson.encode({ ["until"] = until_t, retry_after = retry_after, status = status }))
end

-- the throttle's answer, if it is on
local function throttled()
  local dict = ngx.shared.acs_emulator
  local until_t = dict:get("throttle\0until")
  if not until_t then return false end
  ngx.update_time()
  if ngx.now() >= until_t then return false end
  ngx.ctx.fault = "throttle"
  local status = dict:get("throttle\0status") or 429
  return true, error_response(status, status == 429 and "TooManyRequests" or "ServiceUnavailable",
    "Throttled (emulated).", { ["Retry-After"] = dict:get("throttle\0retry_after") or "1" })
end

local function handle_call(id)
  local ctx = ngx.ctx
  local h = ngx.req.get_headers(200)
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local f = ngx.req.get_body_file()
    body = f and read_file(f) or ""
  end

  local authz = h["authorization"]
  local scheme, token = (type(authz) == "string" and authz or ""):match("^(%S+)%s+(.*)$")
  if scheme and scheme:lower() == "bearer" then ctx.token_fp = auth.fingerprint(token) end
  ngx.update_time()
  local verdict, reason = auth.verify({
    method = ngx.req.get_method(),
    uri = ngx.var.request_uri,
    host = ngx.var.http_host,
    headers = h,
    body = body,
    now = ngx.time(),
    parse_date = ngx.parse_http_time,
    expiry = identity.expiry,
    clock = ngx.now(),
  }, M.cfg)
  if not verdict then
    ctx.auth = "fail:" .. reason
    return error_response(401, "Unauthorized", reason)
  end
  ctx.auth = verdict

  local api_version = ngx.req.get_uri_args(100)["api-version"]
  if type(api_version) == "table" then api_version = api_version[1] end
  if api_version == true then api_version = nil end
  ctx.api_version = api_version
  if not api_version or api_version == "" then
    return error_response(400, "MissingApiVersionParameter",
      "The api-version query parameter (?api-version=) is required for all requests.")
  end

  if ngx.req.get_method() ~= "GET" then
    return error_response(405, "MethodNotAllowed", "Only GET is supported by the emulator.", { Allow = "GET" })
  end

  local is_throttled, answer = throttled()
  if is_throttled then return answer end

  local name, params = parse_fault(h["x-acs-emulator-fault"])
  if not name then name, params = fixture_meta(id) end
  if name == "none" then name = nil end
  if name then
    local fn = FAULTS[name]
    if not fn then
      return error_response(400, "UnknownEmulatorFault", "Unknown emulator fault: " .. name
        .. " (known: " .. table.concat(M.FAULT_NAMES, ", ") .. ")")
    end
    local active = true
    local times = tonumber(params.times)
    if times then
      local crid = h["x-ms-client-request-id"]
      if type(crid) == "table" then crid = crid[1] end
      local key = table.concat({ "times", name, crid or "", id }, "\0")
      local n = ngx.shared.acs_emulator:incr(key, 1, 0, 600)
      active = n ~= nil and n <= times
    end
    if active then
      ctx.fault = name
      if name == "truncate" then return serve_fixture(id, true) end
      fn(params, id)
    end
  end
  local state, fleet = fleet_state(id)
  if fleet then
    if not state then return not_found_call() end
    return serve_fleet(id, state)
  end
  return serve_fixture(id)
end

function M.handle()
  local ctx = ngx.ctx
  ctx.request_id = uuid4()
  local raw = ngx.var.request_uri
  local path = raw:match("^[^?]*")
  ctx.path = pct_decode(path)

  if path == "/_emulator/health" then
    ctx.nolog = true
    return respond(200, '{"status":"ok"}')
  end

  if path == "/_emulator/throttle" then return throttle_set() end

  ngx.on_abort(on_abort)
  if M.cfg.latency and M.cfg.latency > 0 then ngx.sleep(M.cfg.latency / 1000) end

  if path:sub(1, #CALL_PREFIX) == CALL_PREFIX then
    local seg = path:sub(#CALL_PREFIX + 1)
    if seg ~= "" and not seg:find("/", 1, true) then
      local id = pct_decode(seg)
      ctx.id = id
      ctx.path = id
      ctx.route = "call"
      return handle_call(id)
    end
  elseif path:sub(1, #REDIRECTED_PREFIX) == REDIRECTED_PREFIX then
    local seg = path:sub(#REDIRECTED_PREFIX + 1)
    if seg ~= "" and not seg:find("/", 1, true) then
      local id = pct_decode(seg)
      ctx.id = id
      ctx.auth = "none"
      ctx.route = "redirected"
      return serve_fixture(id)
    end
  end
  local route, tenant = identity.route(path)
  if route then
    ctx.route = route
    local status, body, headers = identity[route](M.cfg, tenant)
    return respond(status, cjson.encode(body), headers)
  end
  return error_response(404, "NotFound", "No such resource: " .. ctx.path)
end

return M
