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

-- a call as JSON when core.call_json leaves it to us (a NaN in the body): a
-- private cjson instance (our settings never reach the host's cjson)
local function cjson_encode(call)
  local cj = require("cjson.safe").new()
  cj.encode_invalid_numbers(true)
  return cj.encode(call)
end

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

-- LuaJIT's FFI (nginx's Lua): the body filter's socket shutdown and the
-- failure log line (see body_filter and log_failure)
local ffi_ok, ffi = pcall(require, "ffi")
local base_ok, base = pcall(require, "resty.core.base")
if ffi_ok then
  pcall(ffi.cdef, [[
    int shutdown(int sockfd, int how);
    int getpeername(int sockfd, void *addr, unsigned int *addrlen);
  ]])
end
if ffi_ok then
  pcall(ffi.cdef, "int ngx_http_lua_ffi_raw_log(void *r, int level, const unsigned char *s, size_t s_len);")
end

-- the core's header-value rule: any C0 control byte or DEL refused
local check_header_value = core.check_header_value

-- A header of a Lua table by its lower-case name, in any case (a list gives its
-- first value): the rule of the core's acs_table_header (csrc/model.c), kept in
-- Lua on purpose. ngx.location.capture's res.header is a plain table with the
-- names as sent (lua-nginx-module README, ngx.location.capture), so it cannot
-- simply be indexed; and calling the C lookup from LuaJIT 2.1 cost 113 ns per
-- call against ~0 ns for an exact key here, 71 against 18 ns for another case
-- (a luajit micro-bench of a 9-header ACS answer, 2e6 lookups).
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

-- (level: of the user's call, 3 when the API function calls this itself)
local function check_client(fname, client, id, level)
  if type(client) ~= "userdata" and type(client) ~= "table" then
    error("acscall.resty." .. fname .. ": acscall client expected, got " .. type(client), level or 3)
  end
  if type(id) ~= "string" then
    error("acscall.resty." .. fname .. ": id string expected, got " .. type(id), level or 3)
  end
end

local function check_hook(fname, hook)
  if hook ~= nil and type(hook) ~= "function" then
    error("acscall.resty." .. fname .. ": on_attempt must be a function, got " .. type(hook), 3)
  end
  return hook
end

local function check_credential(fname, cred, level)
  if cred ~= nil and (type(cred) ~= "table" and type(cred) ~= "userdata" or type(cred.get_token) ~= "function") then
    error("acscall.resty." .. fname .. ": credential must have a get_token method", level or 3)
  end
end

-- ------------------------------------------------------ the attempt driver

-- on_attempt (an option of the three Lua paths): the record of one attempt,
-- in the shape of the core's (lua/acscall/core.luadoc, "Attempt"); `wait`
-- and `reason` are added once the next verdict is known. o:facts() ->
-- operation, call id, client request id, URL, the secrets sent (for core.redact).
local redact = core.redact
local function attempt_record(o, last, n, duration)
  local operation, id, crid, url, secrets = o:facts()
  local host = url and url:match("^%a+://([^/?#]+)")
  local r = { operation = operation, id = id, attempt = n, duration = duration, client_request_id = crid,
    host = host and (host:gsub("^.*@", "")) }
  if last.status then
    r.status = last.status
    local rid = header(last.headers, "x-ms-request-id")
    if type(rid) == "string" then r.request_id = redact(rid, secrets) end -- the server's words
  else
    r.kind, r.outcome = last.kind or "transport", last.outcome
  end
  return r
end

-- The secrets of an Authorization value sent: the whole value, and the
-- token or signature alone (a server may echo either by itself).
local function auth_secrets(auth)
  if not auth then return {} end
  return { auth, auth:match("^[Bb]earer%s+(%S+)") or auth:match("Signature=([^&,%s]+)") }
end
M._auth_secrets = auth_secrets

-- An error inside on_attempt never breaks the call: the first one per
-- function is logged (WARN), later ones are ignored.
local warned = setmetatable({}, { __mode = "k" })
local function emit(hook, r)
  local ok, err = pcall(hook, r)
  if ok or warned[hook] then return end
  warned[hook] = true
  local line = "acscall: on_attempt raised an error (reported once, then ignored): " .. tostring(err):sub(1, 200)
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.log then ngx.log(ngx.WARN, line) else io.stderr:write(line, "\n") end
end

--- The one attempt loop of the OpenResty paths (capture_get_call,
-- http_get_call, capture_transport): asks `rule:next_attempt` (the core's
-- verdict: retry, wait, refresh after a 401, the deadline) after every
-- attempt, and runs the next one with `send`.
-- @param rule a client whose `next_attempt` is the verdict
-- @tparam table o the exchange, whose methods drive calls (methods, not
--  closures, so that a call's path creates no function: LuaJIT 2.1 cannot
--  compile a closure's creation, FNEW, and leaves the whole path to the
--  interpreter): `o:send(timeout, connect_timeout) -> last` (one attempt:
--  `{status=, body=, headers=}` or `{outcome=, text=}`; `last.final` ends the
--  loop), `now`, `sleep`; `o:before(attempts)` (optional: before each attempt,
--  `true` or `nil, message, info` to stop with that failure); `o:refresh()`
--  (optional: the credential's forced refresh, true when a new token came);
--  `retries` (optional: retry classes for this exchange, as the verdict takes them);
--  `on_attempt` (optional, with `facts`: see attempt_record); `first` and
--  `start` (optional: an attempt already made elsewhere, as `last`, and the
--  `now()` the call began: the proxy-first path's first attempt is nginx's
--  own proxy_pass, see proxy_retry)
-- @return last, attempts; or nil, message, info (from `before`)
local function drive(rule, o)
  local now, sleep, hook = o.now, o.sleep, o.on_attempt
  local start = o.start or now()
  local last, rec = o.first, nil
  local attempts = last and 1 or 0
  local vopts = (o.refresh or o.retries ~= nil) and { refreshable = o.refresh and true or false,
    refreshed = false, retries = o.retries } or nil
  while true do
    -- the core's verdict: wait, timeout, connect_timeout, reason; "refresh", ...
    -- (a 401 on a refreshable credential not yet refreshed: refresh, then
    -- retry at once if the token changed); or nil (report the last)
    local wait, timeout, connect_timeout, reason = rule:next_attempt(attempts, now() - start,
      last and (last.status or last.outcome), last and last.headers, vopts)
    if wait == "refresh" then
      vopts.refreshed = true
      wait = o:refresh() and 0 or nil
    end
    if rec then -- the last attempt's record, now that its verdict is known
      if wait then rec.wait, rec.reason = wait, reason end
      emit(hook, rec)
      rec = nil
    end
    if not wait then break end
    if wait > 0 then sleep(wait) end
    if o.before then
      local ok, msg, info = o:before(attempts)
      if not ok then return nil, msg, info end
    end
    attempts = attempts + 1
    local t0 = hook and now()
    last = o:send(timeout, connect_timeout or timeout)
    -- (nothing was sent when the token provider or the header rule refused)
    if hook and not (last.failed or last.outcome == "local") then
      rec = attempt_record(o, last, attempts, now() - t0)
    end
    if last.final then break end
  end
  if rec then emit(hook, rec) end
  return last, attempts
end
M._drive = drive

-- The call's result after the last attempt (one HTTP answer, or a transport
-- failure), every failure shaped by the core.
local call_json = core.call_json
local function report(last, attempts, crid, json)
  if last.status then
    local h, st = last.headers, last.status
    if st >= 200 and st < 300 then -- the common case: no failure to report ids in
      if json and not (h["Content-Encoding"] or h["content-encoding"]) then
        local text = call_json(last.body)
        if text then return text end
      end
      local call = acscall.decode(st, last.body, h)
      if call then return json and cjson_encode(call) or call end
    end
    -- a failure: decode reports the client request id from the headers
    if not header(h, "x-ms-client-request-id") then h["x-ms-client-request-id"] = crid end
    local call, msg, info = acscall.decode(st, last.body, h)
    if call then return call end
    -- the core shaped it (kind, status, code, ids); the attempts are ours to count
    if type(info) == "table" then info.attempts = attempts end
    return nil, msg, info
  end
  return failure(last.kind or "transport", last.text, { attempts = attempts, timeout = last.outcome == "timeout",
    request_id = crid, client_request_id = crid })
end

-- One failed call, one line in error.log (opts.log: a level such as
-- ngx.WARN, default ngx.ERR; false for none). It is written to the worker's
-- main error_log (lua-nginx-module's raw log with no request: ngx_cycle->log,
-- as resty.core's errlog.raw_log does outside a request), so a handler's
-- location may set its own error_log to `crit`, which silences the line
-- nginx's proxy module writes for each failed attempt, and keep this one.
local function log_failure(ngx, level, id, msg, info)
  if level == false or not ngx.log then return end
  level = level or ngx.ERR
  local line = "acscall: call " .. id .. ": " .. tostring(msg) .. " (kind " .. tostring(info and info.kind)
    .. ", attempts " .. tostring(info and info.attempts) .. ", client request id "
    .. tostring(info and info.client_request_id) .. ")"
  if ffi_ok and pcall(function() return ffi.C.ngx_http_lua_ffi_raw_log end) then
    ffi.C.ngx_http_lua_ffi_raw_log(nil, level, line, #line)
  else
    ngx.log(level, line)
  end
end

-- The credential's part of an attempt (capture_get_call, http_get_call):
-- `before` fetches (or refreshes) the token where a cosocket or capture
-- transport may yield, so client:request then finds it cached; `refresh`
-- forces a new one after a 401 (the core's refresh verdict), true when it
-- differs from the refused one.
local function cred_before(o, n)
  local token, msg, info = o.cred:get_token()
  o.token = token
  if token then return true end
  -- the credential's own words: a core-shaped message is "<kind>: <info.message>";
  -- the kind is ours to say (auth), so its text alone
  local words = tostring(msg)
  local text = type(info) == "table" and info.message
  if type(text) == "string" and text ~= "" and words:sub(-#text) == text then words = text end
  return failure("auth", "credential: " .. words, {
    attempts = n > 0 and n or nil, status = type(info) == "table" and info.status or nil })
end

local function cred_refresh(o)
  local fresh = o.cred:get_token{ force_refresh = true }
  return fresh and fresh ~= o.token
end

-- an exchange `o` of drive with the credential's hooks (none without one)
local function with_credential(o, cred)
  if cred then o.cred, o.before, o.refresh = cred, cred_before, cred_refresh end
  return o
end

-- The result of a call's attempts (drive's returns): the call, or the failure.
local function finish(ngx, opts, id, crid, last, attempts, info)
  if not last then return nil, attempts, info end -- the credential failed: nothing sent
  if last.failed then -- the token provider failed in client:request: nothing sent
    local msg, finfo = last.failed[1], last.failed[2]
    if attempts > 1 and type(finfo) == "table" then
      return failure(finfo.kind or "auth", finfo.message or msg, { attempts = attempts - 1, status = finfo.status })
    end
    return nil, msg, finfo
  end
  local call, msg, finfo = report(last, attempts, crid, opts.json)
  if not call and ngx then log_failure(ngx, opts.log, id, msg, finfo) end
  return call, msg, finfo
end

-- ------------------------------------------------------ event-loop path

-- The body filter of acscall.conf's internal locations: counts the bytes of
-- the answer and ends the attempt once max_body or the attempt's end is
-- passed. The subrequest's ngx.ctx is the capture's `ctx` table:
-- {max = bytes, ends = ngx.now() time, n = bytes so far (0 at first), why = "large" | "late"}.
-- nginx 1.22 has no way for a body filter to end a subrequest alone (an
-- error from a filter terminates the main request too), so it shuts the
-- upstream socket down: nginx then sees the connection end early and
-- finalizes the subrequest ("upstream prematurely closed connection"), and
-- the capture returns truncated. The socket is found through the request
-- (ngx_http_request_t.upstream -> peer.connection -> fd) and used only when
-- its peer is $upstream_addr; otherwise the body is dropped from here on
-- (memory stays bounded, the time is the service's).

-- nginx's request layout on 64-bit builds with the HTTP cache (Debian's):
-- signature (uint32) at 0, upstream at 72; ngx_http_upstream_t.peer.connection
-- at 16; ngx_connection_t.fd at 24 (nginx 1.22 src/http/ngx_http_request.h,
-- ngx_http_upstream.h, src/core/ngx_connection.h).
local NGX_HTTP_MODULE_SIGNATURE = 0x50545448 -- "HTTP"
local function upstream_fd(ngx)
  if not (ffi_ok and base_ok and ffi.abi("64bit")) then return nil end
  local r = base.get_request()
  if r == nil then return nil end
  local p = ffi.cast("char *", r)
  if ffi.cast("uint32_t *", p)[0] ~= NGX_HTTP_MODULE_SIGNATURE then return nil end
  local u = ffi.cast("char **", p + 72)[0]
  if u == nil then return nil end
  local c = ffi.cast("char **", u + 16)[0]
  if c == nil then return nil end
  local fd = ffi.cast("int *", c + 24)[0]
  local want = tonumber(((ngx.var.upstream_addr or ""):match("([^ ,]+)$") or ""):match(":(%d+)$"))
  if fd < 3 or not want then return nil end
  local addr = ffi.new("uint8_t[128]")
  local len = ffi.new("unsigned int[1]", 128)
  if ffi.C.getpeername(fd, addr, len) ~= 0 then return nil end
  local port = addr[2] * 256 + addr[3] -- sin_port / sin6_port, network order
  if port ~= want then return nil end
  return fd
end

-- The chunk's size and the last-buffer flag straight from lua-nginx-module's
-- FFI (what resty.core's ngx.arg[1] / ngx.arg[2] call, lua-resty-core 0.1.25
-- lib/resty/core/param.lua), without copying the chunk into a Lua string:
-- the filter runs once or twice per attempt and only needs the count.
local function arg_size() return #ngx.arg[1] end -- luacheck: ignore 113
local function arg_eof() return ngx.arg[2] end -- luacheck: ignore 113
-- (declared here unless resty.core's param.lua declared them already)
local body_ffi = ffi_ok and base_ok and (pcall(ffi.cdef, [[
    int ngx_http_lua_ffi_get_body_filter_param_eof(ngx_http_request_t *r);
    int ngx_http_lua_ffi_get_body_filter_param_body(ngx_http_request_t *r, unsigned char **data_p, size_t *len_p);
  ]]) or true) and pcall(function()
    return ffi.C.ngx_http_lua_ffi_get_body_filter_param_body, ffi.C.ngx_http_lua_ffi_get_body_filter_param_eof
  end)
if body_ffi then
  local C, get_request = ffi.C, base.get_request
  local data_p, len_p = ffi.new("unsigned char *[1]"), ffi.new("size_t[1]")
  arg_size = function()
    len_p[0] = 0
    -- NGX_AGAIN (several buffers): len is their sum all the same
    C.ngx_http_lua_ffi_get_body_filter_param_body(get_request(), data_p, len_p)
    return tonumber(len_p[0])
  end
  arg_eof = function() return C.ngx_http_lua_ffi_get_body_filter_param_eof(get_request()) == 1 end
end

function M.body_filter()
  local ngx = ngx -- luacheck: ignore 113
  local c = ngx.ctx
  if c.why then ngx.arg[1] = "" return end
  local n = c.n + arg_size()
  c.n = n
  if n > c.max then
    c.why = "large"
  elseif ngx.now() > c.ends and not arg_eof() then
    c.why = "late"
  else
    return
  end
  ngx.arg[1] = ""
  local fd = upstream_fd(ngx)
  if fd then ffi.C.shutdown(fd, 2) end
end

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
--  `log` (the level of the one error.log line per failed call, default
--  `ngx.ERR`; `false`: none), `json` (true: return the call as JSON text,
--  written by `core.call_json` in one pass over the service's body, no Lua
--  table in between), `on_attempt` (a function called once per attempt with
--  the record `acscall.new`'s on_attempt gets, operation "get_call"; an error
--  inside is logged once at WARN, then ignored), `sleep`, `now` (for tests;
--  default `ngx.sleep`, `ngx.now`)
-- @return call table (a JSON string with `json`), or `nil, message, info`
-- @raise on a programmer mistake (no client, acscall.conf not included, not
--  in a request context)
local EMPTY = {}
-- the request headers acscall.conf sends (one $acscall_* variable each)
local SENT = { host = "acscall_host", accept = "acscall_accept", ["user-agent"] = "acscall_user_agent",
  ["x-ms-client-request-id"] = "acscall_client_request_id", ["x-ms-date"] = "acscall_date",
  ["x-ms-content-sha256"] = "acscall_content_sha256", authorization = "acscall_authorization",
  metadata = "acscall_metadata", ["x-identity-header"] = "acscall_identity_header",
  ["content-type"] = "acscall_content_type" }
M._SENT = SENT

-- Fill the variables of one subrequest: every header acscall.conf sends (an
-- empty one is a header nginx does not send). Returns true, or nil and the
-- name of a header whose value breaks the header-value rule.
-- check = "all": every value passes the header-value rule (a token
-- request's headers come from the credential's configuration,
-- IDENTITY_HEADER included); a call checks only its Authorization, the core
-- builds the others from values it checked.
local function set_headers(vars, headers, fname, check)
  for _, var in pairs(SENT) do vars[var] = "" end
  for name, value in pairs(headers) do
    local lname = name:lower()
    local var = SENT[lname]
    if not var then -- a header the caller would send but acscall.conf would drop
      error("acscall.resty." .. fname .. ": acscall.conf does not send the header '" .. name
        .. "' (acscall.conf and acscall.resty out of step)", 3)
    end
    if check == "all" and not check_header_value(value) then return nil, name end
    vars[var] = value
  end
  return true
end

-- nginx's own failure of an attempt (no response header came): a 504 is
-- its timeout, anything else no connection. step_ms: the attempt's timeout
-- (nil: not known, the proxy-first path's first attempt).
local function no_answer(st, scheme, what, step_ms)
  if st == 504 then
    return { outcome = "timeout", text = "timed out: no answer from " .. what
      .. (step_ms and (" within " .. (step_ms / 1000) .. " s") or "") }
  end
  if scheme == "https" then
    return { outcome = "connect", text = "no connection to " .. what
      .. " (connection refused, or the TLS handshake or certificate check failed)" }
  end
  return { outcome = "connect", text = "no connection to " .. what .. " (connection refused or closed)" }
end

-- One attempt through the ladder: the capture's answer as `last`.
-- what: "the service" or "the token endpoint" (for messages).
local function capture_attempt(ngx, uri, copts, ctx, step_ms, scheme, what)
  local t0 = ngx.now()
  local res = ngx.location.capture(uri, copts)
  local st, body, rh = res.status, res.body or "", res.header or EMPTY
  if ctx.why == "large" then
    return { outcome = "too_large", kind = "decode", final = true,
      text = "response body exceeds the max_body limit (" .. ctx.max .. " bytes)" }
  end
  -- a body cut once the step's time had passed: the body filter's end of the
  -- attempt, or the read timeout (the step) firing between two slow chunks
  -- before a chunk arrived past the end (a loaded machine): the same failure.
  -- In whole milliseconds, ngx.now()'s resolution (0.3 s can read 0.29999995).
  if ctx.why == "late" or (res.truncated and ctx.n > 0 and (ngx.now() - t0) * 1000 + 0.5 >= step_ms) then
    return { outcome = "timeout", text = what .. "'s answer was still arriving at the attempt's end ("
      .. (step_ms / 1000) .. " s)" }
  end
  if res.truncated and body == "" and not (rh["Content-Length"] or rh["Transfer-Encoding"]) then
    -- nginx's own failure: the subrequest ended with that status before any
    -- response header (see acscall.conf)
    return no_answer(st, scheme, what, step_ms)
  elseif res.truncated then
    return { outcome = "truncated", text = "the answer of " .. what .. " ended early" }
  elseif st < 200 then
    return { outcome = "protocol", final = true,
      text = "the service sent an interim 1xx answer, which this nginx cannot relay" }
  end
  return { status = st, body = body, headers = rh, final = st >= 200 and st < 300 }
end

-- Reused for every attempt of every call of this worker: capture() copies the
-- variables into the subrequest before it yields, so no two calls share them.
-- (A call sets the ones a token request sets too, empty: they never leak.)
local vars = { acscall_metadata = "", acscall_identity_header = "", acscall_content_type = "" }
-- clients whose header names were checked against acscall.conf
local checked = setmetatable({}, { __mode = "k" })

-- The parts of a call URL's origin, per origin and Host (a client's are
-- fixed): {scheme=, host=, sni=, prefix = "scheme://<upstream>", cut = where
-- the path starts}. At most 64 kept (then forgotten at once).
local origins, norigins = {}, 0
local last_origin
local function origin_of(url, host_header, upstream)
  local cut = url:find("/", 9, true) or (#url + 1) -- after "https://h" / "http://h"
  local o = last_origin -- (a worker's client asks for the same origin call after call)
  if o and o.cut == cut and o.host_header == host_header and o.upstream == upstream
    and url:find(o.key, 1, true) == 1 then
    return o
  end
  local key = url:sub(1, cut - 1)
  o = origins[key]
  if o and o.host_header == host_header and o.upstream == upstream then last_origin = o return o end
  local scheme, host = key:match("^(https?)://(.+)$")
  if not scheme then error("acscall.resty.capture_get_call: http(s) URL expected from client:request", 4) end
  host = host_header or host
  o = { scheme = scheme, host = host, host_header = host_header, upstream = upstream, cut = cut, key = key,
    sni = host:match("^%[?([^%]]-)%]?:%d+$") or host, prefix = scheme .. "://" .. upstream }
  last_origin = o
  if norigins >= 64 then origins, norigins = {}, 0 end
  origins[key], norigins = o, norigins + 1
  return o
end
local capture_opts = { vars = vars }
local last_timeout, last_step = -1, 1

-- on_attempt's facts of capture_get_call (drive's `facts`): `o` is the call.
local function capture_facts(o)
  return "get_call", o.id, o.crid, o.url, auth_secrets(o.auth)
end

-- One attempt of capture_get_call (drive's `send`): `o` is the call.
local function capture_send(o, timeout)
  local client, ngx = o.client, o.ngx
  local url, headers, info = client:request(o.id, o.crid)
  if not url then -- the token provider failed: nothing was sent
    return { final = true, failed = { headers, info } }
  end
  o.crid = o.crid or headers["x-ms-client-request-id"]
  if o.on_attempt then o.url, o.auth = url, headers.authorization end -- (capture_facts)
  if not checked[client] then -- once per client: the names it signs (programmer mistake)
    set_headers(vars, headers, "capture_get_call", "none")
    checked[client] = true
  end
  local auth = headers.authorization
  if auth and not check_header_value(auth) then
    return { final = true, outcome = "local", kind = "auth",
      text = "the authorization header's value holds a control character: not sent" }
  end
  local og = origin_of(url, headers.host, o.upstream)
  if timeout ~= last_timeout then last_timeout, last_step = timeout, step_for(timeout) end
  vars.acscall_url = og.prefix .. url:sub(og.cut)
  vars.acscall_host = og.host
  vars.acscall_sni = og.sni
  vars.acscall_accept = headers.accept or ""
  vars.acscall_user_agent = headers["user-agent"] or ""
  vars.acscall_client_request_id = headers["x-ms-client-request-id"] or ""
  vars.acscall_date = headers["x-ms-date"] or ""
  vars.acscall_content_sha256 = headers["x-ms-content-sha256"] or ""
  vars.acscall_authorization = auth or ""
  local scheme = og.scheme
  local ctx = { max = o.max_body, ends = ngx.now() + timeout, n = 0 }
  capture_opts.ctx = ctx
  local r = capture_attempt(ngx, step_uri[last_step], capture_opts, ctx, M.STEPS[last_step], scheme,
    "the service")
  vars.acscall_authorization = nil -- keep no credential past the attempt
  capture_opts.ctx = nil
  return r
end

-- A call's exchange of the capture loop (drive's `o`) for fname's
-- arguments (capture_get_call, proxy_retry): checked, with the credential's
-- hooks. Returns o, ngx, opts.
local function capture_exchange(fname, client, id, opts)
  check_client(fname, client, id, 4)
  opts = opts or EMPTY
  local ngx = rawget(_G, "ngx")
  if not (ngx and ngx.location and ngx.location.capture) then
    error("acscall.resty." .. fname .. ": needs nginx + lua-nginx-module", 3)
  end
  capture_opts.method = ngx.HTTP_GET
  local cred = opts.credential
  check_credential(fname, cred, 4)
  return with_credential({ now = opts.now or ngx.now, sleep = opts.sleep or ngx.sleep, send = capture_send,
    client = client, id = id, upstream = opts.upstream or M.DEFAULT_UPSTREAM,
    max_body = opts.max_body or M.DEFAULT_MAX_BODY, ngx = ngx }, cred), ngx, opts
end

function M.capture_get_call(client, id, opts)
  local o, ngx
  o, ngx, opts = capture_exchange("capture_get_call", client, id, opts)
  local hook = check_hook("capture_get_call", opts.on_attempt)
  if hook then o.on_attempt, o.facts = hook, capture_facts end
  local last, attempts, info = drive(client, o)
  return finish(ngx, opts, id, o.crid, last, attempts, info)
end


-- ------------------------------------------------------ proxy-first path
--
-- The first attempt of a call is the main request's own proxy_pass
-- (acscall/nginx/acscall_proxy_first.conf, included in the user's location):
-- no subrequest and no content handler for the answer that is nearly always
-- the only one. The access phase signs it (proxy_access), the header and
-- body filters turn the service's answer into the gateway's (the call's JSON
-- by core.call_json, or the failure JSON); the statuses the core may retry
-- and nginx's own failures go through error_page to the named location
-- @acscall_retry, whose content handler (proxy_retry) runs attempts 2+
-- through the same driver and ladder as capture_get_call. ngx.ctx does not
-- survive nginx's internal redirect to a named location (lua-nginx-module
-- README, "ngx.ctx"), so what the retry needs of the first attempt is read
-- from nginx's variables: $upstream_status, $upstream_header_time, the
-- $upstream_http_* retry headers and $acscall_client_request_id.

local json_text -- a private cjson instance (failure_json)

--- The failure answer of the gateway paths as JSON text (one line and a
-- newline): `{"error": {kind, message, status, code, request_id,
-- client_request_id, attempts}}` from a failed call's `message, info`
-- (the example gateway's answer on every path; the proxy-first path's own).
-- @tparam string msg the message
-- @tparam table info the info table
-- @treturn string
function M.failure_json(msg, info)
  json_text = json_text or require("cjson.safe").new()
  info = type(info) == "table" and info or EMPTY
  return json_text.encode{ error = { kind = info.kind, message = msg, status = info.status, code = info.code,
    request_id = info.request_id, client_request_id = info.client_request_id, attempts = info.attempts } } .. "\n"
end

-- the last Authorization value proxy_access found passing the header rule
local last_auth_ok
-- credential -> the token the service refused (401) on the proxy-first
-- path: the next call gets a new one first (the core's refresh after a 401,
-- one call late: the first attempt's answer is already nginx's)
local refused = setmetatable({}, { __mode = "k" })

-- answer a failure from the access or content phase and end the request
local function answer_failure(ngx, log, id, msg, info)
  log_failure(ngx, log, id, msg, info)
  local text = M.failure_json(msg, info)
  ngx.status = M.error_status(info)
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #text
  ngx.print(text)
  return ngx.exit(ngx.status)
end

--- The access phase of the proxy-first path: signs the call's first
-- attempt (`client:request`, after the credential's token is fetched where
-- the access phase may yield) and sets the `$acscall_*` variables that
-- acscall_proxy_first.conf sends; the location's `proxy_pass` then makes
-- the attempt, bounded by the location's own proxy_connect_timeout and
-- proxy_read_timeout (set them to the client's `connect_timeout` and
-- `timeout`: nginx 1.22's proxy timeouts take no variables) and, once the
-- body arrives, by the first attempt's timeout as a whole (the body filter).
-- When nothing can be sent (the credential or token provider failed) it
-- answers the failure JSON itself and ends the request.
-- @param client an `acscall.new` client (one per worker)
-- @tparam string id a callConnectionId
-- @tparam[opt] table opts `upstream` (default "acscall"), `max_body` (bytes,
--  default 4 MiB), `credential`, `log` (as capture_get_call's); no
--  `on_attempt` (the first attempt is nginx's: use capture_get_call)
-- @raise on a programmer mistake, `on_attempt` included
function M.proxy_access(client, id, opts)
  check_client("proxy_access", client, id)
  opts = opts or EMPTY
  local ngx = rawget(_G, "ngx")
  if not (ngx and ngx.var) then error("acscall.resty.proxy_access: needs nginx + lua-nginx-module", 2) end
  if opts.on_attempt ~= nil then
    error("acscall.resty.proxy_access: on_attempt is not available on the proxy-first path"
      .. " (its first attempt is nginx's own proxy_pass); use capture_get_call", 2)
  end
  local cred = opts.credential
  check_credential("proxy_access", cred)
  local token
  if cred then
    local o = { cred = cred }
    local ok, msg, info = cred_before(o, 0)
    if ok and o.token == refused[cred] then -- the service refused it: a new one first
      refused[cred] = nil
      cred_refresh(o)
      ok, msg, info = cred_before(o, 0)
    end
    if not ok then return answer_failure(ngx, opts.log, id, msg, info) end
    token = o.token
  end
  local url, headers, finfo = client:request(id)
  if not url then return answer_failure(ngx, opts.log, id, headers, finfo) end
  if not checked[client] then -- once per client: the names it signs (programmer mistake)
    set_headers(vars, headers, "proxy_access", "none")
    checked[client] = true
  end
  local auth = headers.authorization
  local crid = headers["x-ms-client-request-id"]
  -- (a bearer token is the same string call after call: checked once)
  if auth and auth ~= last_auth_ok then
    if not check_header_value(auth) then
      return answer_failure(ngx, opts.log, id, failure("auth",
        "the authorization header's value holds a control character: not sent",
        { request_id = crid, client_request_id = crid }))
    end
    last_auth_ok = auth
  end
  local og = origin_of(url, headers.host, opts.upstream or M.DEFAULT_UPSTREAM)
  -- (a variable left unset is an empty header, which nginx does not send)
  local v = ngx.var
  v.acscall_url = og.prefix .. url:sub(og.cut)
  v.acscall_host = og.host
  v.acscall_sni = og.sni
  v.acscall_accept = headers.accept
  v.acscall_user_agent = headers["user-agent"]
  v.acscall_client_request_id = crid
  local date = headers["x-ms-date"]
  if date then -- HMAC
    v.acscall_date = date
    v.acscall_content_sha256 = headers["x-ms-content-sha256"]
  end
  v.acscall_authorization = auth
  ngx.ctx.acscall = { max = opts.max_body or M.DEFAULT_MAX_BODY, n = 0, id = id, crid = crid, log = opts.log,
    client = client, cred = cred, token = token }
end

-- the headers of the service that a failure answer does not pass on
local FAILURE_DROPS = { "Content-Length", "Content-Encoding", "Location", "WWW-Authenticate", "Retry-After" }

--- The header filter of the proxy-first path (acscall_proxy_first.conf):
-- a 2xx becomes the call's JSON, of a length not known yet (its
-- Content-Length goes; one over max_body turns the answer into the
-- failure, 502); any other status becomes the one `error_status` gives
-- for it (404 stays 404, a 401 or 403 of the gateway's own credential and
-- a 3xx become 502), with the failure JSON for a body; a 1xx (which nginx
-- 1.22 cannot relay) becomes 502 too.
function M.proxy_header_filter()
  local ngx = ngx -- luacheck: ignore 113
  local c = ngx.ctx.acscall
  if not c then return end
  local st, h = ngx.status, ngx.header
  c.status = st
  if st >= 200 and st < 300 then
    local len = h["Content-Length"]
    if len then
      h["Content-Length"] = nil
      len = tonumber(len)
      c.len = len
      if len > c.max then
        c.why, c.status = "large", 502
        ngx.status = 502
        h["Content-Type"] = "application/json"
      end
    end
    -- (a Content-Encoding, never asked for: Accept-Encoding is not sent,
    -- is read by the body filter when the body is not a call)
    return
  end
  if st == 401 and c.cred then refused[c.cred] = c.token end
  if st >= 200 then c.headers = ngx.resp.get_headers() end
  ngx.status = st < 200 and 502 or M.error_status{ kind = "http", status = st }
  if st >= 200 then c.len = tonumber(h["Content-Length"]) end
  for _, name in ipairs(FAILURE_DROPS) do h[name] = nil end
  h["Content-Type"] = "application/json"
end

-- The proxy-first answer once the body is all in: the call's JSON, or
-- nil, message, info (report's rule, as the capture path's).
local function proxy_result(c, body)
  if c.why == "large" then
    return failure("decode", "response body exceeds the max_body limit (" .. c.max .. " bytes)",
      { attempts = 1, request_id = c.crid, client_request_id = c.crid })
  end
  local st = c.status
  if st < 200 then
    return report({ outcome = "protocol",
      text = "the service sent an interim 1xx answer, which this nginx cannot relay" }, 1, c.crid, true)
  end
  if st < 300 then -- the common case: the call's JSON
    local text = call_json(body)
    if text then return text end
    -- not a call: decode says why (a Content-Encoding it cannot read, ...)
    c.headers = { ["content-encoding"] = ngx.header["Content-Encoding"] } -- luacheck: ignore 113
  end
  return report({ status = st, body = body, headers = c.headers or {} }, 1, c.crid, true)
end

-- The attempt's end (ngx.now() time): the request's start plus the first
-- attempt's timeout, the core's (what is left of the deadline included).
local function first_ends(ngx, c)
  if not c.ends then
    local _, timeout = c.client:next_attempt(0, 0)
    c.ends = ngx.req.start_time() + (timeout or 0)
  end
  return c.ends
end

-- A 2xx whose body turns out unusable after its status went through the
-- header filter (no Content-Length, then past max_body; not a call; still
-- arriving at the attempt's end): nginx sends a status before the body,
-- so the answer cannot become the failure any more. The request ends
-- instead (ngx.ERROR from the body filter): nginx closes the connection
-- with the answer unfinished (its status line held back with it when
-- small, else a chunked answer without its last chunk), as when an
-- upstream breaks mid-answer, so no HTTP/1.1 client takes it for a
-- complete answer. The one error.log line says why.
local function abort(ngx, c, msg, info)
  log_failure(ngx, c.log, c.id, msg, info)
  return ngx.ERROR
end

--- The body filter of the proxy-first path: keeps the service's body (up
-- to max_body; past it the rest is dropped) and at its end writes the
-- answer: the call as JSON (`core.call_json`, one pass in C) for a 2xx,
-- the failure JSON otherwise. A 2xx found unusable once its status went
-- through (over max_body without a Content-Length, not a call, or still
-- arriving at the first attempt's end) ends the request (see abort); any
-- other answer still arriving at the attempt's end too.
function M.proxy_body_filter()
  local ngx = ngx -- luacheck: ignore 113
  local c = ngx.ctx.acscall
  if not c then return end
  local chunk, eof = ngx.arg[1], ngx.arg[2]
  local st = c.status
  if chunk ~= "" and c.why ~= "large" then
    local n = c.n + #chunk
    c.n = n
    if n > c.max then
      c.why, c.body, c.parts = "large", nil, nil
      if st >= 200 and st < 300 then return abort(ngx, c, select(2, proxy_result(c))) end
    elseif not c.body then -- the first chunk (most bodies come in one)
      c.body = chunk
    elseif c.parts then
      c.parts[#c.parts + 1] = chunk
    else
      c.parts = { c.body, chunk }
    end
  end
  -- the whole body by its Content-Length (or past max_body): answered now,
  -- with the answer's end (one write for status, headers and answer; nginx
  -- unbuffered would flush the status alone before a body held back)
  local whole = c.why == "large" or (c.len and c.n >= c.len)
  if not eof and not whole then
    -- (a first chunk came within the read timeout: the attempt's end is
    -- asked of the core from the second on)
    if c.parts and ngx.now() > first_ends(ngx, c) then
      return abort(ngx, c, select(2, failure("transport", "the service's answer was still arriving at the"
        .. " attempt's end", { attempts = 1, timeout = true, request_id = c.crid, client_request_id = c.crid })))
    end
    ngx.arg[1] = ""
    return
  end
  if c.done then ngx.arg[1] = "" return end
  c.done = true
  local text, msg, info = proxy_result(c, c.parts and table.concat(c.parts) or c.body or "")
  if text then
    ngx.arg[1] = { text, "\n" }
  elseif st >= 200 and st < 300 and c.why ~= "large" then
    return abort(ngx, c, msg, info)
  else
    log_failure(ngx, c.log, c.id, msg, info)
    ngx.arg[1] = M.failure_json(msg, info)
  end
  if not eof then ngx.arg[2] = true end -- (the rest, none by the length, is dropped)
end

-- The first attempt's outcome (nginx's proxy_pass) as drive's `last`, from
-- the variables nginx keeps across the redirect: the service's status and
-- retry headers, or nginx's own failure (no header time: no answer).
local function first_attempt(v)
  local st = tonumber((v.upstream_status or ""):match("(%d+)[^%d]*$"))
  local ht = (v.upstream_header_time or ""):match("([^%s,:]+)[%s,:]*$")
  if st and ht and ht ~= "-" then
    return { status = st, body = "", headers = { ["retry-after"] = v.upstream_http_retry_after,
      ["retry-after-ms"] = v.upstream_http_retry_after_ms,
      ["x-ms-retry-after-ms"] = v.upstream_http_x_ms_retry_after_ms,
      ["x-ms-request-id"] = v.upstream_http_x_ms_request_id } }
  end
  return no_answer(st, (v.acscall_url or ""):match("^(%a+):"), "the service")
end

--- The named location `@acscall_retry` of the proxy-first path: the first
-- attempt (the location's proxy_pass) ended with a status the core may
-- retry (acscall_proxy_first.conf's error_page: 408, 429, 500, 502, 503,
-- 504) or with nginx's own failure; this asks the core's verdict with that
-- outcome and the time since the request began, and runs attempts 2+ as
-- capture_get_call does (acscall.conf's ladder), with the same client
-- request id, then answers: the call's JSON, or the failure JSON with
-- `error_status`'s status. The first attempt's body is not kept (nginx's
-- proxy_intercept_errors drops it): when it is also the last attempt, the
-- failure names its status and request id but not the service's error
-- code. Needs a content phase (`content_by_lua*`).
-- @param client the client proxy_access used
-- @tparam string id the callConnectionId
-- @tparam[opt] table opts as proxy_access's
function M.proxy_retry(client, id, opts)
  local o, ngx
  o, ngx, opts = capture_exchange("proxy_retry", client, id, opts)
  local v = ngx.var
  local crid = v.acscall_client_request_id
  o.crid, o.first, o.start = crid ~= "" and crid or nil, first_attempt(v), ngx.req.start_time()
  local last, attempts, info = drive(client, o)
  local text, msg, finfo = finish(ngx, { log = opts.log, json = true }, id, o.crid, last, attempts, info)
  if not text then
    text = M.failure_json(msg, finfo)
    ngx.status = M.error_status(finfo)
  else
    text = text .. "\n"
    ngx.status = 200
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #text
  ngx.print(text)
  return ngx.exit(ngx.status)
end


-- ------------------------------------------------------ token transport

local CAPTURE_PHASES = { rewrite = true, access = true, content = true }
local TOKEN_MAX_BODY = 1024 * 1024 -- a token answer is a few KB

--- A transport for `acscall.credential` that fetches tokens on nginx's
-- event loop: each attempt is a subrequest to acscall.conf's ladder
-- (proxy_pass to the token URL; TLS verified against
-- `proxy_ssl_trusted_certificate`), retried by the core's rule (408/429/5xx
-- and transport failures, Retry-After, backoff, deadline) through the same
-- driver as the calls. Each attempt is bounded by `timeout` (and what is
-- left of `deadline`) as a whole. Needs a request context (rewrite, access,
-- content) where the caller can yield: elsewhere (a timer, `init_worker`,
-- inside the C core) `fetch` answers `nil, message, {kind = "local"}` and
-- the credential keeps its still-valid token. A token URL with a host name
-- needs nginx's `resolver`.
-- @usage local cred = acscall.credential.managed_identity{ transport = resty.capture_transport() }
-- @tparam[opt] table opts `retries` (default 3), `base_delay` (s, 0.8), `max_delay` (s, 60),
--  `timeout` (s per attempt, default 30), `deadline` (s, default 90), `on_attempt`
--  (as capture_get_call's; operation "token", no id)
-- @return a transport: `t:fetch{url=, method=, headers=, form=} -> status, body, headers`
function M.capture_transport(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("acscall.resty.capture_transport: options table expected", 2) end
  local retries = opts.retries
  if retries == nil then retries = 3 end
  local hook = check_hook("capture_transport", opts.on_attempt)
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
      -- "not_here" rides beside the core's info, never in it: the credential keeps its
      -- still-valid token without a pause (acscall.credential reads it)
      local none, msg, info = failure("local",
        "no token fetch here (ngx.location.capture needs a request context that can yield)")
      return none, msg, info, "not_here"
    end
    local url = req.url
    local scheme, host = url:match("^(https?)://([^/?#]+)")
    if not host then error("acscall.resty.capture_transport: http(s) URL expected", 2) end
    local v = {}
    local headers = {}
    for name, value in pairs(req.headers or EMPTY) do headers[name] = value end
    local copts = { vars = v, method = ngx.HTTP_GET }
    if req.form then
      copts.method, copts.body = ngx.HTTP_POST, core.form_encode(req.form)
      headers["Content-Type"] = "application/x-www-form-urlencoded"
    elseif (req.method or "GET") ~= "GET" then
      error("acscall.resty.capture_transport: only GET, or POST with a form", 2)
    end
    local ok, bad = set_headers(v, headers, "capture_transport", "all")
    if not ok then
      return failure("auth", "the " .. bad .. " header's value holds a control character: not sent")
    end
    v.acscall_url, v.acscall_host = url, host
    v.acscall_sni = host:match("^%[?([^%]]-)%]?:%d+$") or host
    local max = type(req.retries) == "number" and req.retries or nil -- a probe says 0: one try
    local n = 0
    local last, attempts = drive(rule, { now = ngx.now, sleep = ngx.sleep, retries = req.retries,
      on_attempt = hook, facts = hook and function()
        -- the secrets in play: every header and form value sent
        local secrets = {}
        for _, x in pairs(headers) do secrets[#secrets + 1] = x end
        for _, x in pairs(req.form or EMPTY) do secrets[#secrets + 1] = tostring(x) end
        return "token", nil, header(headers, "x-ms-client-request-id"), url, secrets
      end,
      send = function(_, timeout)
      n = n + 1
      local step = step_for(timeout)
      local ctx = { max = TOKEN_MAX_BODY, ends = ngx.now() + timeout, n = 0 }
      copts.ctx = ctx
      local r = capture_attempt(ngx, step_uri[step], copts, ctx, M.STEPS[step], scheme, "the token endpoint")
      if r.status then
        local h = {}
        for k, x in pairs(r.headers) do h[k:lower()] = type(x) == "table" and x[1] or x end
        r.headers, r.final = h, r.status < 400
      end
      if max and n > max then r.final = true end
      return r
    end })
    v.acscall_identity_header = nil
    copts.body = nil -- keep no secret past the fetch
    if last.status then return last.status, last.body, last.headers end
    return failure(last.kind or "transport", last.text, { attempts = attempts, timeout = last.outcome == "timeout" })
  end
  function t.close() rule:close() end
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

-- One exchange with lua-resty-http's streaming API (connect, request,
-- body_reader), reading at most max_body bytes and stopping at `ends`:
-- res | nil, err, outcome.
local function stream_request(httpc, url, p, max_body, ends, now)
  local u, perr = httpc:parse_uri(url)
  if not u then return nil, tostring(perr), "other" end
  local scheme, host, port, path, query = u[1], u[2], u[3], u[4], u[5]
  local ok, err = httpc:connect{ scheme = scheme, host = host, port = port, ssl_verify = true,
    ssl_server_name = host, pool = p.keepalive_pool and (host .. ":" .. port .. ":" .. p.keepalive_pool) or nil }
  if not ok then return nil, tostring(err) end
  local res
  res, err = httpc:request{ method = "GET", path = path .. ((query and query ~= "") and ("?" .. query) or ""),
    headers = p.headers }
  if not res then httpc:close() return nil, tostring(err) end
  local chunks, n = {}, 0
  local reader = res.body_reader
  while reader do
    local chunk
    chunk, err = reader(65536)
    if err then httpc:close() return nil, tostring(err) end
    if not chunk then break end
    n = n + #chunk
    if n > max_body then
      httpc:close()
      return nil, "response body exceeds the max_body limit (" .. max_body .. " bytes)", "too_large"
    end
    if now() > ends then
      httpc:close()
      return nil, "the service's answer was still arriving at the attempt's end", "timeout"
    end
    chunks[#chunks + 1] = chunk
  end
  if httpc.set_keepalive then httpc:set_keepalive(p.keepalive_timeout, p.keepalive_pool) end
  return { status = res.status, headers = res.headers, body = table.concat(chunks) }
end

--- Fetch a call with a lua-resty-http client (cosockets, never blocks; also
-- in `ngx.timer` callbacks). TLS verification stays on (`ssl_verify = true`;
-- trust comes from nginx's `lua_ssl_trusted_certificate`, names from
-- `resolver`). Retries, waits and the deadline follow `client:next_attempt`
-- (the same driver as capture_get_call); each attempt's timeouts are set
-- with `httpc:set_timeouts`, and with lua-resty-http's streaming API
-- (`connect`, `request`, `body_reader`) the body is read chunk by chunk:
-- past `max_body` or the attempt's end the connection is closed.
-- @param httpc a lua-resty-http client (`require("resty.http").new()`), or
--  anything with `request_uri(self, url, params) -> res | nil, err`
-- @param client an `acscall.new` client (stage 1 and the retry rule)
-- @tparam string id a callConnectionId
-- @tparam[opt] table params extra `request_uri` params (e.g. `keepalive_timeout`,
--  `keepalive_pool`); `method`, `headers`, `ssl_verify` are ours; `sleep`,
--  `now` (default `ngx.sleep`, `ngx.now`), `max_body` (bytes, default 4 MiB),
--  `credential`, `log` and `on_attempt` (as capture_get_call's) are not passed on
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
  local max_body, cred, log = p.max_body or M.DEFAULT_MAX_BODY, p.credential, p.log
  local hook = check_hook("http_get_call", p.on_attempt)
  p.sleep, p.now, p.max_body, p.credential, p.log, p.on_attempt = nil, nil, nil, nil, nil, nil
  check_credential("http_get_call", cred)
  -- connect{...} with a table (scheme, ssl_verify, ...) came in lua-resty-http 0.16
  local major, minor = tostring(httpc._VERSION or ""):match("^(%d+)%.(%d+)")
  local streaming = type(httpc.connect) == "function" and type(httpc.request) == "function"
    and type(httpc.parse_uri) == "function" and major ~= nil
    and (tonumber(major) > 0 or tonumber(minor) >= 16)
  local crid, sent_url, sent_auth
  local last, attempts, info = drive(client, with_credential({
    now = now,
    on_attempt = hook, facts = hook and function() return "get_call", id, crid, sent_url, auth_secrets(sent_auth) end,
    sleep = function(s)
      if not sleep then error("acscall.resty.http_get_call: no sleep function (not in nginx)", 4) end
      sleep(s)
    end,
    send = function(_, timeout, connect_timeout)
      local url, headers, finfo = client:request(id, crid)
      if not url then return { final = true, failed = { headers, finfo } } end
      crid = crid or headers["x-ms-client-request-id"]
      sent_url, sent_auth = url, headers.authorization
      for name, value in pairs(headers) do
        if not check_header_value(value) then
          return { final = true, outcome = "local", kind = "auth",
            text = "the " .. name .. " header's value holds a control character: not sent" }
        end
      end
      p.method, p.headers, p.ssl_verify = "GET", headers, true
      local ms = math.ceil(timeout * 1000)
      if type(httpc.set_timeouts) == "function" then
        httpc:set_timeouts(math.min(math.ceil(connect_timeout * 1000), ms), ms, ms)
      end
      local res, err, outcome
      if streaming then
        res, err, outcome = stream_request(httpc, url, p, max_body, now() + timeout, now)
      else
        res, err = httpc:request_uri(url, p)
        if res and #(res.body or "") > max_body then
          res, err, outcome = nil, "response body exceeds the max_body limit (" .. max_body .. " bytes)", "too_large"
        end
      end
      if res then
        local rh = {}
        for k, v in pairs(res.headers or {}) do rh[k] = v end
        return { status = res.status, body = res.body or "", headers = rh,
          final = res.status >= 200 and res.status < 300 }
      end
      err = tostring(err)
      outcome = outcome or cosocket_outcome(err)
      return { outcome = outcome, text = err, kind = outcome == "too_large" and "decode" or nil,
        final = outcome == "too_large" }
    end,
  }, cred))
  return finish(ngx, { log = log }, id, crid, last, attempts, info)
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
-- transport failures and for an answer that cannot be used (`decode`: too
-- large, not a call), 503 when the thread pool is full, 500 otherwise
-- (`auth`, `local`).
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
  if kind == "decode" then return 502 end
  if kind == "thread" then return 503 end
  return 500
end

return M
