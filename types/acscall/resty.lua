---@meta acscall.resty
-- LuaCATS annotations of acscall.resty (docs/openresty.md), checked against
-- the code by spec/96-types_spec.lua.

---@class acscall.resty
---@field DEFAULT_POOL string the thread pool get_call uses ("acscall")
---@field WORKER_MODULE string the module the pool threads run ("acscall.resty_worker")
---@field DEFAULT_UPSTREAM string the upstream block capture_get_call uses ("acscall")
---@field LOCATION string the prefix of acscall.conf's internal locations ("/_acscall/")
---@field STEPS integer[] acscall.conf's attempt-timeout ladder, in milliseconds
---@field DEFAULT_MAX_BODY integer response bytes accepted by default (4 MiB)
local resty = {}

---@class acscall.CaptureOptions
---@field upstream? string the upstream block's name ("acscall")
---@field max_body? integer
---@field credential? acscall.Credential the client's credential: its token is fetched on the event loop
---@field log? integer|false the level of the one error.log line per failed call (ngx.ERR); false: none
---@field json? boolean return the call as JSON text (core.call_json), not a table
---@field on_attempt? fun(attempt: acscall.Attempt) called once per attempt (the record of new's on_attempt; an error inside is logged once at WARN)
---@field sleep? fun(seconds: number) for tests (ngx.sleep)
---@field now? fun(): number for tests (ngx.now)

--- The event-loop path: each attempt a subrequest to acscall.conf.
---@param client acscall.Client
---@param id string
---@param opts? acscall.CaptureOptions
---@return acscall.CallConnectionProperties|string? call a JSON string with opts.json
---@return string? message
---@return acscall.Info? info
function resty.capture_get_call(client, id, opts) end

--- acscall.conf's body filter (body_filter_by_lua in its internal locations):
--- ends an attempt past max_body or past its end.
function resty.body_filter() end

--- A credential transport fetching tokens on the event loop.
---@param opts? {retries?: integer|false, base_delay?: number, max_delay?: number, timeout?: number, deadline?: number, on_attempt?: fun(attempt: acscall.Attempt)}
---@return acscall.Transport
function resty.capture_transport(opts) end

--- lua-resty-http on cosockets (also in timers).
---@param httpc table a lua-resty-http client
---@param client acscall.Client
---@param id string
---@param params? table request_uri's params; max_body, credential, log, on_attempt (as capture_get_call's); sleep, now for tests
---@return acscall.CallConnectionProperties? call
---@return string? message
---@return acscall.Info? info
function resty.http_get_call(httpc, client, id, params) end

--- The thread path: libcurl get_call in an nginx thread pool.
---@param opts acscall.NewOptions options copied to the pool thread (no functions)
---@param id string
---@param pool? string the thread pool ("acscall")
---@return acscall.CallConnectionProperties? call
---@return string? message
---@return acscall.Info? info
function resty.get_call(opts, id, pool) end

--- A token_provider that never blocks the worker (refreshed in a timer).
---@param fetch fun(): string?, number|string|nil
---@param opts? {refresh_before?: number, retry?: number}
---@return fun(): string?, string?
function resty.token_cache(fetch, opts) end

--- What a gateway answers for a failure.
---@param info acscall.Info
---@return integer
function resty.error_status(info) end

--- The failure answer of the gateway paths as JSON text (one line and a newline):
--- `{"error": {kind, message, status, code, request_id, client_request_id, attempts}}`.
---@param msg string
---@param info table
---@return string
function resty.failure_json(msg, info) end

---@class acscall.ProxyFirstOptions
---@field upstream? string the upstream block's name ("acscall")
---@field max_body? integer
---@field credential? acscall.Credential the client's credential: its token is fetched in the access phase
---@field log? integer|false the level of the one error.log line per failed call (ngx.ERR); false: none

--- The access phase of the proxy-first path (acscall_proxy_first.conf): signs
--- the first attempt, which the location's own proxy_pass makes. Answers the
--- failure JSON itself when nothing can be sent. No on_attempt (raises).
---@param client acscall.Client
---@param id string
---@param opts? acscall.ProxyFirstOptions
function resty.proxy_access(client, id, opts) end

--- The header filter of the proxy-first path (acscall_proxy_first.conf includes it).
function resty.proxy_header_filter() end

--- The body filter of the proxy-first path (acscall_proxy_first.conf includes it):
--- the call's JSON for a 2xx, the failure JSON otherwise; ngx.ERROR (the
--- request ends) for a 2xx found unusable after its status went out.
---@return integer|nil
function resty.proxy_body_filter() end

--- The content handler of the named location @acscall_retry: attempts 2+ of
--- the proxy-first path, then the answer (the call's JSON or the failure JSON).
---@param client acscall.Client
---@param id string
---@param opts? acscall.ProxyFirstOptions
function resty.proxy_retry(client, id, opts) end

return resty
