--- acscall.resty: acscall inside OpenResty / nginx + lua-nginx-module
-- without blocking the nginx worker.
--
-- * `get_call(opts, id[, pool])`: the libcurl path (retries, deadline,
--   keep-alive) run in an nginx `thread_pool` via `ngx.run_worker_thread`.
--   The calling request yields; the worker keeps serving others.
-- * `http_get_call(httpc, client, id[, params])`: for users who have a
--   lua-resty-http client: stage 1 (`client:request`, URL + signed
--   headers) and stage 3 (`acscall.decode`) from the C core, the HTTP
--   exchange on cosockets. One attempt, no retries.
-- * `error_status(info)`: the HTTP status a gateway should answer with.
--
-- Loading this module needs no nginx (only the functions that run use `ngx`).
-- @module acscall.resty

local acscall = require "acscall"

local M = {
  DEFAULT_POOL = "acscall",
  WORKER_MODULE = "acscall.resty_worker",
}

--- Fetch a call in an nginx thread pool (non-blocking for the worker).
-- Needs `thread_pool <pool> threads=N;` in nginx.conf (main context) and a
-- context where yielding is allowed (rewrite, access, content).
-- @tparam table opts options of `acscall.new`: strings, numbers, booleans,
--  tables of those (they are copied to the pool thread; no `token_provider`)
-- @tparam string id a callConnectionId
-- @tparam[opt="acscall"] string pool thread pool name
-- @return call table, or `nil, message, info` (`info.kind == "thread"` when
--  the pool could not take the task)
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
    if why:find("task_post failed", 1, true) then -- queue full: operational, not a bug
      return nil, "thread: " .. why, { kind = "thread", message = why, attempts = 0 }
    end
    error("acscall.resty.get_call: " .. why, 2)
  end
  if good then return a end
  return nil, a, b
end

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

--- Fetch a call with a lua-resty-http client (cosockets, never blocks).
-- TLS verification stays on (`ssl_verify = true`; trust comes from nginx's
-- `lua_ssl_trusted_certificate`). One attempt: retry in the caller if needed.
-- @param httpc a lua-resty-http client (`require("resty.http").new()`), or
--  anything with `request_uri(self, url, params) -> res | nil, err`
-- @param client an `acscall.new` client (only its stage 1 is used)
-- @tparam string id a callConnectionId
-- @tparam[opt] table params extra `request_uri` params (e.g. `keepalive_timeout`,
--  `keepalive_pool`); `method`, `headers`, `ssl_verify` are ours
-- @return call table, or `nil, message, info`
function M.http_get_call(httpc, client, id, params)
  if type(httpc) ~= "table" or type(httpc.request_uri) ~= "function" then
    error("acscall.resty.http_get_call: lua-resty-http client expected", 2)
  end
  local url, headers, info = client:request(id)
  if not url then return nil, headers, info end
  local p = {}
  for k, v in pairs(params or {}) do p[k] = v end
  p.method, p.headers, p.ssl_verify = "GET", headers, true
  local crid = headers["x-ms-client-request-id"]
  local res, err = httpc:request_uri(url, p)
  if not res then
    err = tostring(err)
    return nil, "transport: " .. err, {
      kind = "transport", message = err, timeout = err:find("timeout", 1, true) and true or nil,
      attempts = 1, client_request_id = crid, request_id = crid,
    }
  end
  local rh = {}
  for k, v in pairs(res.headers or {}) do rh[k] = v end
  if not header(rh, "x-ms-client-request-id") then rh["x-ms-client-request-id"] = crid end
  return acscall.decode(res.status, res.body or "", rh)
end

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
