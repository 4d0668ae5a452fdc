--- acscall_example: the handler of examples/openresty/nginx.conf.
--   GET /calls/{id}           the call as JSON, fetched on nginx's event loop
--                             (acscall.resty.capture_get_call: a subrequest per
--                             attempt, proxied with keep-alive; no thread, no extra VM)
--   GET /first/calls/{id}     the same, proxy-first (acscall.resty.proxy_access and
--                             acscall_proxy_first.conf: the first attempt is the
--                             location's own proxy_pass, retries in @acscall_retry)
--   GET /thread/calls/{id}    the same through the "acscall" thread pool
--                             (acscall.resty.get_call: libcurl in a pool thread)
--   GET /blocking/calls/{id}  libcurl called inline: blocks the whole worker for
--                             the duration of each fetch (for comparison only)
-- Errors: {"error": {...}} with the upstream's status for HTTP errors, 504 for
-- timeouts, 502 for other transport failures and for a refused credential (the
-- gateway's own), 503 + Retry-After when the thread pool is full, 500 otherwise.
-- Configuration comes from the environment (nginx.conf lists it with `env`):
-- ACS_CONNECTION_STRING, or ACS_ENDPOINT + ACS_TOKEN; ACS_CA_FILE (optional);
-- ACSCALL_TIMEOUT, ACSCALL_CONNECT_TIMEOUT, ACSCALL_DEADLINE (seconds),
-- ACSCALL_RETRIES (retries after the first attempt), ACSCALL_BASE_DELAY (s),
-- ACSCALL_UPSTREAM (the upstream block's name, default "acscall"),
-- ACSCALL_LOG ("off": no error.log line for a failed call; default one line
-- per failed call, at error level).
-- ACSCALL_AUTH = default | managed-identity | cli | client-secret |
-- workload-identity (with ACS_ENDPOINT): an Entra ID credential instead of a
-- key or token, configured by the Azure SDKs' variables (IDENTITY_ENDPOINT,
-- AZURE_CLIENT_ID, ...; see README "Entra ID credentials"). Each worker builds
-- its own in init_worker (its own token cache); the event-loop path fetches
-- tokens with subrequests (acscall.resty.capture_transport), the thread and
-- blocking paths with the core's fetcher.

local acscall = require "acscall"
local credential = require "acscall.credential"
local resty = require "acscall.resty"
local cjson = require("cjson.safe").new() -- our own instance: settings stay here

local M = {}

local opts          -- acscall.new options (copied to the pool threads per request)
local client        -- this worker's client: stage 1 + retry rule of the event-loop path
local inline_client -- the blocking path's client
local upstream
local auth          -- ACSCALL_AUTH: a credential name, or nil
local cred          -- this worker's credential (event-loop path)
local log           -- capture_get_call's `log` option (false: no line)

local function env(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

local function env_number(name, default)
  local v = env(name)
  if v == nil then return default end
  local n = tonumber(v)
  if not n or n < 0 then error("acscall_example: " .. name .. " must be a number >= 0, got " .. v, 0) end
  return n
end

--- init_by_lua: read the configuration and check it once (a mistake stops nginx here).
function M.init()
  local cs = env("ACS_CONNECTION_STRING")
  if cs then cs = cs:match("^'(.*)'$") or cs end
  local retries = env_number("ACSCALL_RETRIES", 3)
  auth = env("ACSCALL_AUTH")
  if auth then cs = nil end
  opts = {
    connection_string = cs,
    endpoint = not cs and env("ACS_ENDPOINT") or nil,
    token = not cs and not auth and env("ACS_TOKEN") or nil,
    auth = auth, -- the thread path's pool VMs build their own (acscall.resty_worker)
    ca_file = env("ACS_CA_FILE"),
    connect_timeout = env_number("ACSCALL_CONNECT_TIMEOUT", 5),
    timeout = env_number("ACSCALL_TIMEOUT", 10),
    deadline = env_number("ACSCALL_DEADLINE", 20),
    retries = retries > 0 and { max = math.floor(retries), base_delay = env_number("ACSCALL_BASE_DELAY", 0.8) }
      or false,
  }
  upstream = env("ACSCALL_UPSTREAM") or resty.DEFAULT_UPSTREAM
  log = nil
  if env("ACSCALL_LOG") == "off" then log = false end
  -- check the configuration once (nothing is fetched: credentials fetch at first use)
  M.new_client():close()
end

-- acscall.new options with the credential of ACSCALL_AUTH (transport: the
-- core's fetcher unless given)
function M.new_client(transport)
  if not auth then return acscall.new(opts), nil end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.auth = nil
  o.credential = credential.by_name(auth, { transport = transport })
  return acscall.new(o), o.credential
end

--- init_worker_by_lua: this worker's client (its libcurl handle stays unused
-- on the event-loop path: only request signing and the retry rule run) and
-- credential (fetching with subrequests, on this worker's event loop).
function M.init_worker()
  -- token requests get the calls' attempt timeout and deadline
  local transport = auth and resty.capture_transport{ retries = opts.retries and opts.retries.max or 0,
    base_delay = opts.retries and opts.retries.base_delay or nil, timeout = opts.timeout, deadline = opts.deadline }
  client, cred = M.new_client(transport)
end

-- Content-Type (default_type) and Cache-Control (add_header) come from
-- nginx.conf: set in C, they cost the hot path nothing
local function reply(status, body, extra)
  ngx.status = status
  if extra then
    for k, v in pairs(extra) do ngx.header[k] = v end
  end
  -- one write with a Content-Length: a separate final chunk would meet Nagle +
  -- delayed ACK (up to 200 ms) on a fresh connection
  local json = cjson.encode(body) .. "\n"
  ngx.header["Content-Length"] = #json
  ngx.print(json)
end

local function fetch(mode, id)
  if mode == "event" then
    -- the call as JSON text straight from the service's body (core.call_json)
    return resty.capture_get_call(client, id, { upstream = upstream, credential = cred, log = log, json = true })
  elseif mode == "blocking" then
    inline_client = inline_client or M.new_client()
    return inline_client:get_call(id)
  end
  return resty.get_call(opts, id)
end

-- The call id of `GET <prefix>{id}`; or answers 405 / 404 itself and returns nil.
local function call_id(prefix)
  local method = ngx.req.get_method()
  if method ~= "GET" and method ~= "HEAD" then
    return reply(405, { error = { kind = "request", message = "method not allowed" } }, { Allow = "GET, HEAD" })
  end
  -- the id from the raw request line (not $uri, where %2F would already be a "/")
  local path = ngx.var.request_uri:match("^[^?#]*")
  local raw = path:sub(#prefix + 1)
  if raw == "" or raw:find("/", 1, true) then
    return reply(404, { error = { kind = "request", message = "use GET " .. prefix .. "{callConnectionId}" } })
  end
  return ngx.unescape_uri(raw)
end

--- content_by_lua: serve `GET <prefix>{id}`; mode "event", "thread" or "blocking".
function M.serve(mode, prefix)
  local id = call_id(prefix)
  if not id then return end
  local call, msg, info = fetch(mode, id)
  if type(call) == "string" then -- JSON already: one write with its length
    ngx.header["Content-Length"] = #call + 1
    return ngx.print(call, "\n")
  end
  if call then return reply(200, call) end
  info = info or {}
  -- the failure JSON of every path (the proxy-first path writes it itself)
  local text = resty.failure_json(msg, info)
  ngx.status = resty.error_status(info)
  -- overload of the thread path: tell the client when to come back
  if info.kind == "thread" then ngx.header["Retry-After"] = "1" end
  ngx.header["Content-Length"] = #text
  return ngx.print(text)
end

--- access_by_lua of the proxy-first path (`GET /first/calls/{id}`): signs
-- the first attempt, which the location's proxy_pass makes
-- (acscall_proxy_first.conf); its filters write the answer.
function M.proxy_first(prefix)
  local id = call_id(prefix)
  if not id then return ngx.exit(ngx.status) end
  return resty.proxy_access(client, id, { upstream = upstream, credential = cred, log = log })
end

--- content_by_lua of @acscall_retry: attempts 2+ of the proxy-first path.
function M.proxy_retry(prefix)
  local id = call_id(prefix)
  if not id then return end
  return resty.proxy_retry(client, id, { upstream = upstream, credential = cred, log = log })
end

return M
