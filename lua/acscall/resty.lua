--- acscall.resty: acscall inside OpenResty / nginx + lua-nginx-module
-- without blocking the nginx worker. Three ways, fastest first:
--
-- * `capture_get_call(client, id[, opts])`: the event-loop path. Each attempt
--   is a subrequest (`ngx.location.capture`) to the internal locations of
--   `acscall/nginx/acscall.conf`, which `proxy_pass` to an `upstream` with
--   keep-alive: nginx's own HTTP and TLS machinery on the worker's event loop,
--   no pool thread, no extra Lua VM. Needs a request context (rewrite, access,
--   content); not in `ngx.timer` callbacks (no subrequests there).
-- * `http_get_call(httpc, client, id[, params])`: the same with a
--   lua-resty-http client (cosockets): also works in timers.
-- * `get_call(opts, id[, pool])`: the libcurl path in an nginx `thread_pool`
--   (`ngx.run_worker_thread`); one pool thread and one thread VM per fetch in
--   flight, so throughput is at most threads ÷ latency.
--
-- All three take the URL and signed headers from the C core
-- (`client:request`: a fresh signature per attempt, one client request id
-- per call), decode with `acscall.decode`, and follow the core's one retry
-- rule (`client:next_attempt`: what is retried, Retry-After, backoff, the
-- attempt timeouts and the deadline). Waits use `ngx.sleep`.
--
-- A `token_provider` is called in the worker, synchronously, on every
-- attempt of the first two paths: it must return a cached token (a provider
-- doing blocking I/O blocks every request of the worker; one doing cosocket
-- I/O fails: it runs under a C call). See `token_cache` for a per-worker
-- cache refreshed in a timer.
--
-- Loading this module needs no nginx (only the functions that run use `ngx`).
-- @module acscall.resty

local acscall = require "acscall"
local core = require "acscall.core"

local failure = core.failure

local M = {
  DEFAULT_POOL = "acscall",
  WORKER_MODULE = "acscall.resty_worker",
  -- the default `upstream` block name of `capture_get_call`
  DEFAULT_UPSTREAM = "acscall",
  -- the prefix of acscall.conf's internal locations
  LOCATION = "/_acscall/",
  -- the attempt-timeout ladder of acscall.conf, in milliseconds (ascending)
  STEPS = { 100, 150, 200, 250, 300, 400, 500, 600, 800, 1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000,
    6000, 8000, 10000, 12500, 15000, 20000, 25000, 30000, 40000, 50000, 60000, 90000, 120000 },
  DEFAULT_MAX_BODY = core.DEFAULT_MAX_BODY, -- the client's default (4 MiB)
}

-- ---------------------------------------------------------------- helpers

local function header(h, name)
  if type(h) ~= "table" then return nil end
  local v = h[name]
  if v == nil then
    for k, x in pairs(h) do
      if type(k) == "string" and k:lower() == name then v = x break end
    end
  end
  if type(v) == "table" then v = v[1] end
  return v
end

-- The ladder location for an attempt timeout (seconds): the largest step not
-- above it, the smallest step when it is below them all.
local step_uri = {}
for i, ms in ipairs(M.STEPS) do step_uri[i] = M.LOCATION .. "t/" .. ms end

local function step_for(timeout)
  local ms, steps = timeout * 1000, M.STEPS
  local lo, hi = 1, #steps
  if ms >= steps[hi] then return hi end
  while lo < hi do -- largest i with steps[i] <= ms (or 1)
    local mid = math.floor((lo + hi + 1) / 2)
    if steps[mid] <= ms then lo = mid else hi = mid - 1 end
  end
  return lo
end
M._step_for = step_for -- for the specs

-- The call's result after the last attempt. last: { status=, body=, headers= }
-- (a response) or { outcome=, text= } (no usable response).
local function report(last, attempts, crid, max_body)
  if last.status then
    local h, st = last.headers, last.status
    if #last.body > max_body then
      return failure("decode", "response body exceeds the max_body limit", { -- as get_call says
        status = st, attempts = attempts, request_id = header(h, "x-ms-request-id") or crid,
        client_request_id = crid })
    end
    if st >= 200 and st < 300 then -- the common case: no failure to report ids in
      local call = acscall.decode(st, last.body, h)
      if call then return call end
    end
    -- a failure: decode reports the client request id from the headers
    if not header(h, "x-ms-client-request-id") then h["x-ms-client-request-id"] = crid end
    local call, msg, info = acscall.decode(st, last.body, h)
    if call then return call end
    if type(info) == "table" then info.attempts = attempts end
    return nil, msg, info
  end
  return failure("transport", last.text, { attempts = attempts, timeout = last.outcome == "timeout",
    request_id = crid, client_request_id = crid })
end

local function check_client(fname, client, id)
  if type(client) ~= "userdata" and type(client) ~= "table" then
    error("acscall.resty." .. fname .. ": acscall client expected, got " .. type(client), 3)
  end
  if type(id) ~= "string" then
    error("acscall.resty." .. fname .. ": id string expected, got " .. type(id), 3)
  end
end

-- ------------------------------------------------------ event-loop path

--- Fetch a call on nginx's event loop: each attempt is a subrequest to
-- `acscall/nginx/acscall.conf`'s internal locations, proxied to an
-- `upstream` block (keep-alive, TLS verified). Needs that file included in
-- the server, an `upstream <name> { server <host>:443; keepalive N; }`
-- block, `proxy_ssl_trusted_certificate`, and a request context (rewrite,
-- access, content).
-- @param client an `acscall.new` client (one per worker: stage 1 and the retry rule)
-- @tparam string id a callConnectionId
-- @tparam[opt] table opts `upstream` (the upstream block's name, default
--  "acscall"), `max_body` (bytes, default 4 MiB: the client's default),
--  `credential` (the `acscall.credential` the client was built with: its
--  token is fetched here, on the event loop, before the core asks for it,
--  and after a 401 it is refreshed once and the call retried once),
--  `sleep`, `now` (for tests; default `ngx.sleep`, `ngx.now`)
-- @return call table, or `nil, message, info`
-- @raise on a programmer mistake (no client, acscall.conf not included, not
--  in a request context)
local EMPTY = {}
-- the request headers acscall.conf sends (one $acscall_* variable each)
local SENT = { host = true, accept = true, ["user-agent"] = true, ["x-ms-client-request-id"] = true,
  ["x-ms-date"] = true, ["x-ms-content-sha256"] = true, authorization = true }
-- Reused for every attempt of every call of this worker: capture() copies the
-- variables into the subrequest before it yields, so no two calls share them.
local vars = {}
local capture_opts = { vars = vars }
local last_timeout, last_step = -1, 1

function M.capture_get_call(client, id, opts)
  check_client("capture_get_call", client, id)
  opts = opts or EMPTY
  local ngx = rawget(_G, "ngx")
  if not (ngx and ngx.location and ngx.location.capture) then
    error("acscall.resty.capture_get_call: needs nginx + lua-nginx-module", 2)
  end
  local capture = ngx.location.capture
  capture_opts.method = ngx.HTTP_GET
  local upstream = opts.upstream or M.DEFAULT_UPSTREAM
  local max_body = opts.max_body or M.DEFAULT_MAX_BODY
  local sleep, now = opts.sleep or ngx.sleep, opts.now or ngx.now
  local cred = opts.credential
  if cred ~= nil and (type(cred) ~= "table" and type(cred) ~= "userdata" or type(cred.get_token) ~= "function") then
    error("acscall.resty.capture_get_call: credential must have a get_token method", 2)
  end
  local start = now()
  local attempts, crid, last = 0, nil, nil
  local token, refreshed = nil, false
  while true do
    local wait, timeout
    if last and last.status == 401 and cred and not refreshed then
      -- the service refused the token: one forced refresh, one more attempt
      -- when it gives another token (the core's rule for get_call)
      refreshed = true
      local fresh = cred:get_token{ force_refresh = true }
      if fresh and fresh ~= token then
        wait, timeout = client:next_attempt(0, now() - start)
      end
    else
      wait, timeout = client:next_attempt(attempts, now() - start,
        last and (last.status or last.outcome), last and last.headers)
    end
    if not wait then break end
    if wait > 0 then sleep(wait) end
    if cred then
      -- fetch (or refresh) the token here, where the capture transport may
      -- yield; client:request then finds it cached
      local msg, info
      token, msg, info = cred:get_token()
      if not token then
        if type(info) ~= "table" then info = {} end
        info.kind = "auth"
        if attempts > 0 then info.attempts = attempts end
        return nil, "credential: " .. tostring(msg), info
      end
    end
    local url, headers, info = client:request(id, crid)
    if not url then -- the token provider failed: nothing was sent
      if type(info) == "table" and attempts > 0 then info.attempts = attempts end
      return nil, headers, info
    end
    crid = crid or headers["x-ms-client-request-id"]
    for name in pairs(headers) do -- a header the core signs but acscall.conf would drop
      if not SENT[name] then
        error("acscall.resty.capture_get_call: acscall.conf does not send the header '" .. name
          .. "' that client:request returned (acscall.conf and acscall.resty out of step)", 2)
      end
    end
    local scheme, host, path = url:match("^(https?)://([^/]+)(/.*)$")
    host = headers.host or host
    if timeout ~= last_timeout then last_timeout, last_step = timeout, step_for(timeout) end
    local step = last_step
    -- every variable acscall.conf declares, on every attempt (an empty one
    -- is a header nginx does not send)
    vars.acscall_url = scheme .. "://" .. upstream .. path
    vars.acscall_host = host
    vars.acscall_sni = host:match("^%[?([^%]]-)%]?:%d+$") or host
    vars.acscall_accept = headers.accept or ""
    vars.acscall_user_agent = headers["user-agent"] or ""
    vars.acscall_client_request_id = headers["x-ms-client-request-id"] or ""
    vars.acscall_date = headers["x-ms-date"] or ""
    vars.acscall_content_sha256 = headers["x-ms-content-sha256"] or ""
    vars.acscall_authorization = headers.authorization or ""
    attempts = attempts + 1
    local res = capture(step_uri[step], capture_opts)
    vars.acscall_authorization = nil -- keep no credential past the attempt
    local st, body = res.status, res.body or ""
    -- nginx's own failure: the subrequest ended with that status before any
    -- response header (see acscall.conf): no body, no Content-Length; an
    -- answer of the service always has one or the other
    local rh = res.header or EMPTY
    if res.truncated and body == "" and not (rh["Content-Length"] or rh["Transfer-Encoding"]) then
      if st == 504 then
        last = { outcome = "timeout", text = "no answer within " .. (M.STEPS[step] / 1000) .. " s" }
      else
        last = { outcome = "connect", text = "nginx got no answer from the upstream"
          .. " (connect, TLS or protocol failure: see nginx's error.log)" }
      end
    elseif res.truncated then
      last = { outcome = "truncated", text = "the response ended early" }
    else
      last = { status = st, body = body, headers = res.header or {} }
      -- a 2xx ends the call (decoded or not, nothing is retried): skip the
      -- rule's header scan on the common path
      if st >= 200 and st < 300 then break end
    end
  end
  return report(last, attempts, crid, max_body)
end

-- ------------------------------------------------------ token transport

-- a form table as application/x-www-form-urlencoded (keys sorted)
local function form_encode(form)
  local keys = {}
  for k in pairs(form) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for i, k in ipairs(keys) do
    out[i] = ngx.escape_uri(k) .. "=" .. ngx.escape_uri(tostring(form[k]))
  end
  return table.concat(out, "&")
end

local TOKEN_HEADERS = { metadata = "acscall_token_metadata", ["x-identity-header"] = "acscall_token_identity_header",
  accept = "acscall_token_accept" }
local CAPTURE_PHASES = { rewrite = true, access = true, content = true }

--- A transport for `acscall.credential` that fetches tokens on nginx's
-- event loop: each attempt is a subrequest to acscall.conf's internal
-- location `/_acscall/token` (proxy_pass to the token URL; TLS verified
-- against `proxy_ssl_trusted_certificate`), retried by the core's rule
-- (408/429/5xx and transport failures, Retry-After, backoff, deadline).
-- Needs a request context (rewrite, access, content) where the caller can
-- yield: elsewhere (a timer, `init_worker`, inside the C core) `fetch`
-- answers `nil, message, {kind = "local"}` and the credential keeps its
-- still-valid token. A token URL with a host name needs nginx's `resolver`.
-- @usage local cred = acscall.credential.managed_identity{ transport = resty.capture_transport() }
-- @tparam[opt] table opts `retries` (default 3), `base_delay` (s, 0.8), `max_delay` (s, 60),
--  `timeout` (s per attempt, default 30: acscall.conf's location caps it at 30 s),
--  `deadline` (s, default 90)
-- @return a transport: `t:fetch{url=, method=, headers=, form=} -> status, body, headers`
function M.capture_transport(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("acscall.resty.capture_transport: options table expected", 2) end
  local retries = opts.retries
  if retries == nil then retries = 3 end
  -- the core's retry rule, from a client that never sends anything
  local rule = acscall.new{ endpoint = "http://127.0.0.1/", token = "unused",
    retries = retries > 0 and { max = retries, base_delay = opts.base_delay or 0.8, max_delay = opts.max_delay or 60 }
      or false,
    timeout = opts.timeout or 30, deadline = opts.deadline or 90 }
  local t = {}
  function t.fetch(_, req)
    local ngx = rawget(_G, "ngx")
    if not (ngx and ngx.location and ngx.location.capture) then
      error("acscall.resty.capture_transport: needs nginx + lua-nginx-module", 2)
    end
    local yieldable = coroutine.isyieldable -- luacheck: ignore 143
    if not CAPTURE_PHASES[ngx.get_phase()] or (yieldable and not yieldable()) then
      return nil, "no token fetch here (ngx.location.capture needs a request context that can yield)",
        { kind = "local", not_here = true }
    end
    local url = req.url
    local host = url:match("^https?://([^/?#]+)")
    if not host then error("acscall.resty.capture_transport: http(s) URL expected", 2) end
    local v = { acscall_token_url = url, acscall_token_host = host,
      acscall_token_sni = host:match("^%[?([^%]]-)%]?:%d+$") or host,
      acscall_token_metadata = "", acscall_token_identity_header = "", acscall_token_accept = "",
      acscall_token_content_type = "" }
    for name, value in pairs(req.headers or EMPTY) do
      local var = TOKEN_HEADERS[name:lower()]
      if not var then
        error("acscall.resty.capture_transport: acscall.conf does not send the header '" .. name .. "'", 2)
      end
      v[var] = value
    end
    local copts = { vars = v, method = ngx.HTTP_GET }
    if req.form then
      copts.method, copts.body = ngx.HTTP_POST, form_encode(req.form)
      v.acscall_token_content_type = "application/x-www-form-urlencoded"
    elseif (req.method or "GET") ~= "GET" then
      error("acscall.resty.capture_transport: only GET, or POST with a form", 2)
    end
    local start = ngx.now()
    local attempts, last = 0, nil
    local max = req.retries -- a probe says 0: one try
    while true do
      local wait = rule:next_attempt(attempts, ngx.now() - start, last and (last.status or last.outcome),
        last and last.headers)
      if not wait or (max and attempts > max) then break end
      if wait > 0 then ngx.sleep(wait) end
      attempts = attempts + 1
      local res = ngx.location.capture(M.LOCATION .. "token", copts)
      local rh = res.header or EMPTY
      if res.truncated and (res.body or "") == "" and not (rh["Content-Length"] or rh["Transfer-Encoding"]) then
        last = { outcome = res.status == 504 and "timeout" or "connect",
          text = res.status == 504 and "no answer in time" or "nginx got no answer (see nginx's error.log)" }
      elseif res.truncated then
        last = { outcome = "truncated", text = "the response ended early" }
      else
        local h = {}
        for k, x in pairs(rh) do h[k:lower()] = type(x) == "table" and x[1] or x end
        last = { status = res.status, body = res.body or "", headers = h }
        if res.status < 400 then break end
      end
    end
    v.acscall_token_identity_header = nil
    copts.body = nil -- keep no secret past the fetch
    if last.status then return last.status, last.body, last.headers end
    return nil, last.text, { kind = "transport", attempts = attempts, timeout = last.outcome == "timeout" }
  end
  function t.close() end
  return t
end

-- ------------------------------------------------------ lua-resty-http path

-- a cosocket error string -> the core's transport outcome name
local function cosocket_outcome(err)
  err = err:lower()
  if err:find("timeout", 1, true) then return "timeout" end
  if err:find("resolve", 1, true) or err:find("resolver", 1, true) then return "dns" end
  if err:find("refused", 1, true) or err:find("connect", 1, true) or err:find("unreachable", 1, true) then
    return "connect"
  end
  if err:find("handshake", 1, true) or err:find("certificate", 1, true) or err:find("ssl", 1, true) then
    return "tls"
  end
  if err:find("closed", 1, true) then return "closed" end
  if err:find("reset", 1, true) then return "recv" end
  if err:find("send", 1, true) then return "send" end
  return "other"
end
M._cosocket_outcome = cosocket_outcome

--- Fetch a call with a lua-resty-http client (cosockets, never blocks; also
-- in `ngx.timer` callbacks). TLS verification stays on (`ssl_verify = true`;
-- trust comes from nginx's `lua_ssl_trusted_certificate`, names from
-- `resolver`). Retries, waits and the deadline follow `client:next_attempt`;
-- each attempt's timeouts are set with `httpc:set_timeouts` when it has it.
-- @param httpc a lua-resty-http client (`require("resty.http").new()`), or
--  anything with `request_uri(self, url, params) -> res | nil, err`
-- @param client an `acscall.new` client (stage 1 and the retry rule)
-- @tparam string id a callConnectionId
-- @tparam[opt] table params extra `request_uri` params (e.g. `keepalive_timeout`,
--  `keepalive_pool`); `method`, `headers`, `ssl_verify` are ours; `sleep`
--  and `now` (default `ngx.sleep`, `ngx.now`) are not passed on
-- @return call table, or `nil, message, info`
function M.http_get_call(httpc, client, id, params)
  if type(httpc) ~= "table" or type(httpc.request_uri) ~= "function" then
    error("acscall.resty.http_get_call: lua-resty-http client expected", 2)
  end
  check_client("http_get_call", client, id)
  local ngx = rawget(_G, "ngx")
  local p = {}
  for k, v in pairs(params or {}) do p[k] = v end
  local sleep = p.sleep or (ngx and ngx.sleep)
  local now = p.now or (ngx and ngx.now) or os.time
  p.sleep, p.now = nil, nil
  local start = now()
  local attempts, crid, last = 0, nil, nil
  while true do
    local wait, timeout, connect_timeout = client:next_attempt(attempts, now() - start,
      last and (last.status or last.outcome), last and last.headers)
    if not wait then break end
    if wait > 0 then
      if not sleep then error("acscall.resty.http_get_call: no sleep function (not in nginx)", 2) end
      sleep(wait)
    end
    local url, headers, info = client:request(id, crid)
    if not url then
      if type(info) == "table" and attempts > 0 then info.attempts = attempts end
      return nil, headers, info
    end
    crid = crid or headers["x-ms-client-request-id"]
    p.method, p.headers, p.ssl_verify = "GET", headers, true
    if type(httpc.set_timeouts) == "function" then
      local ms = math.ceil(timeout * 1000)
      httpc:set_timeouts(math.min(math.ceil(connect_timeout * 1000), ms), ms, ms)
    end
    attempts = attempts + 1
    local res, err = httpc:request_uri(url, p)
    if res then
      local rh = {}
      for k, v in pairs(res.headers or {}) do rh[k] = v end
      last = { status = res.status, body = res.body or "", headers = rh }
    else
      err = tostring(err)
      last = { outcome = cosocket_outcome(err), text = err }
    end
  end
  return report(last, attempts, crid, p.max_body or M.DEFAULT_MAX_BODY)
end

-- ------------------------------------------------------ thread path

-- What ngx.run_worker_thread answers when it cannot take the task (not a
-- bug of ours: the gateway is overloaded). lua-nginx-module 0.10.23,
-- src/ngx_http_lua_worker_thread.c: "no available Lua vm" (all
-- lua_worker_thread_vm_pool_size VMs busy), "ngx_thread_task_post failed"
-- (the thread_pool's max_queue is full), "no memory".
local CANNOT_TAKE = { "no available lua vm", "task_post failed", "no memory" }

local function cannot_take(why)
  why = why:lower()
  for _, s in ipairs(CANNOT_TAKE) do
    if why:find(s, 1, true) then return true end
  end
  return false
end
M._cannot_take = cannot_take

--- Fetch a call in an nginx thread pool (non-blocking for the worker).
-- Needs `thread_pool <pool> threads=N;` in nginx.conf (main context) and a
-- context where yielding is allowed (rewrite, access, content). At most
-- min(threads, `lua_worker_thread_vm_pool_size`) fetches run at once per
-- worker (the VM pool is 100 in lua-nginx-module 0.10.23, 10 from 0.10.27),
-- so throughput is at most that ÷ the service's latency; past it, tasks
-- queue (up to `max_queue`) or are refused: then `nil, msg, {kind="thread"}`.
-- @tparam table opts options of `acscall.new`: strings, numbers, booleans,
--  tables of those (they are copied to the pool thread; no `token_provider`,
--  no credential object: `auth = "managed-identity"` (a name as the CLI's
--  `--auth`) with `auth_options` makes each pool VM build its own credential,
--  fetching in the pool thread, cached per VM)
-- @tparam string id a callConnectionId
-- @tparam[opt="acscall"] string pool thread pool name
-- @return call table, or `nil, message, info` (`info.kind == "thread"` when
--  the pool could not take the task: answer 503 with Retry-After)
-- @raise on a programmer mistake (bad options, unknown pool, not in nginx)
function M.get_call(opts, id, pool)
  if type(opts) ~= "table" then
    error("acscall.resty.get_call: options table expected, got " .. type(opts), 2)
  end
  if type(id) ~= "string" then
    error("acscall.resty.get_call: id string expected, got " .. type(id), 2)
  end
  local ngx = rawget(_G, "ngx")
  if not (ngx and ngx.run_worker_thread) then
    error("acscall.resty.get_call: needs lua-nginx-module >= 0.10.21 (ngx.run_worker_thread)", 2)
  end
  local ok, good, a, b = ngx.run_worker_thread(pool or M.DEFAULT_POOL, M.WORKER_MODULE, "fetch", opts, id)
  if not ok then
    local why = tostring(good)
    if cannot_take(why) then -- overload: operational, not a bug
      return failure("thread", "the thread pool cannot take the task (" .. why .. ")")
    end
    error("acscall.resty.get_call: " .. why, 2)
  end
  if good then return a end
  return nil, a, b
end

-- ------------------------------------------------------ tokens

--- A `token_provider` that never blocks the worker: it returns the token
-- cached in this worker, and a timer (where cosockets may run) refreshes it
-- before it expires. Call from `init_worker_by_lua*` (starts the first
-- fetch) and pass the result as `acscall.new{ token_provider = ... }`.
-- Until the first fetch succeeds the provider fails (`nil, message`: the
-- call fails with kind `auth`).
-- @tparam function fetch `fetch() -> token, expires_at (epoch seconds) | nil, err`;
--  runs in an `ngx.timer` callback (cosockets allowed: lua-resty-http, ...)
-- @tparam[opt] table opts `refresh_before` (seconds before expiry, default 300),
--  `retry` (seconds between failed fetches, default 10)
-- @treturn function the provider
function M.token_cache(fetch, opts)
  if type(fetch) ~= "function" then
    error("acscall.resty.token_cache: fetch function expected, got " .. type(fetch), 2)
  end
  opts = opts or {}
  local ngx = rawget(_G, "ngx")
  if not (ngx and ngx.timer) then error("acscall.resty.token_cache: needs nginx (ngx.timer)", 2) end
  local before, retry = opts.refresh_before or 300, opts.retry or 10
  local token, expires, last_err = nil, nil, "no token fetched yet"
  local refresh
  refresh = function(premature)
    if premature then return end
    local ok, t, exp = pcall(fetch)
    local again = retry
    if ok and type(t) == "string" and t ~= "" then
      token, last_err = t, nil
      expires = type(exp) == "number" and exp or nil
      if expires then again = math.max(retry, expires - ngx.time() - before) end
    else
      -- the fetcher's own words (never the token: there is none)
      last_err = "token fetch failed: " .. tostring(ok and (exp or "no token") or t)
      ngx.log(ngx.WARN, "acscall token_cache: ", last_err)
    end
    local tok, err = ngx.timer.at(again, refresh)
    if not tok then ngx.log(ngx.ERR, "acscall token_cache: cannot schedule a refresh: ", err) end
  end
  local tok, err = ngx.timer.at(0, refresh)
  if not tok then error("acscall.resty.token_cache: cannot start: " .. tostring(err), 2) end
  return function()
    if token and not (expires and ngx.time() >= expires) then return token end
    return nil, last_err or "token expired"
  end
end

-- ------------------------------------------------------ answers

--- The status a gateway answers with for a failure's info: the upstream's
-- status for `http` errors (404, 429, 5xx ...), except 502 for an upstream
-- 3xx (redirects are not followed: passing one on would send the client a
-- redirect without its Location), 401 and 403 (the gateway's own credential
-- was refused: not the client's to fix); 504 for timeouts, 502 for other
-- transport failures, 503 when the thread pool is full, 500 otherwise
-- (`decode`, `auth`).
-- @tparam table info the third result of a failed fetch
-- @treturn integer
function M.error_status(info)
  local kind = type(info) == "table" and info.kind
  local status = kind == "http" and tonumber(info.status)
  if status then
    if (status >= 300 and status < 400) or status == 401 or status == 403 then return 502 end
    return status
  end
  if kind == "transport" then
    if info.timeout then return 504 end
    return 502
  end
  if kind == "thread" then return 503 end
  return 500
end

return M
