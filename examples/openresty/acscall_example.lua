--- acscall_example: the handler of examples/openresty/nginx.conf.
--   GET /calls/{id}           the call as JSON, fetched in the "acscall" thread pool
--                             (ngx.run_worker_thread: the nginx worker never blocks)
--   GET /blocking/calls/{id}  the same, with libcurl called inline: blocks the
--                             whole worker for the duration of each fetch (for comparison)
-- Errors: {"error": {...}} with the upstream's status for HTTP errors, 504 for
-- timeouts, 502 for other transport failures, 500 otherwise.
-- Configuration comes from the environment (nginx.conf lists it with `env`):
-- ACS_CONNECTION_STRING, or ACS_ENDPOINT + ACS_TOKEN; ACS_CA_FILE (optional).

local acscall = require "acscall"
local resty = require "acscall.resty"
local cjson = require("cjson.safe").new() -- our own instance: settings stay here

local M = {}

local opts          -- acscall.new options, copied to the pool threads per request
local inline_client -- the blocking path's client (one per worker VM)

local function env(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

--- init_by_lua: read the configuration and check it once (a mistake stops nginx here).
function M.init()
  local cs = env("ACS_CONNECTION_STRING")
  if cs then cs = cs:match("^'(.*)'$") or cs end
  opts = {
    connection_string = cs,
    endpoint = not cs and env("ACS_ENDPOINT") or nil,
    token = not cs and env("ACS_TOKEN") or nil,
    ca_file = env("ACS_CA_FILE"),
    connect_timeout = 5,
    timeout = 10,
    deadline = 20,
  }
  acscall.new(opts):close()
end

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  -- one write with a Content-Length: a separate final chunk would meet Nagle +
  -- delayed ACK (up to 200 ms) on a fresh connection
  local json = cjson.encode(body) .. "\n"
  ngx.header["Content-Length"] = #json
  ngx.print(json)
end

local function fetch(mode, id)
  if mode == "blocking" then
    inline_client = inline_client or acscall.new(opts)
    return inline_client:get_call(id)
  end
  return resty.get_call(opts, id)
end

--- content_by_lua: serve `GET <prefix>{id}`; mode "thread" or "blocking".
function M.serve(mode, prefix)
  local method = ngx.req.get_method()
  if method ~= "GET" and method ~= "HEAD" then
    ngx.header["Allow"] = "GET, HEAD"
    return reply(405, { error = { kind = "request", message = "method not allowed" } })
  end
  -- the id from the raw request line (not $uri, where %2F would already be a "/")
  local path = ngx.var.request_uri:match("^[^?#]*")
  local raw = path:sub(#prefix + 1)
  if raw == "" or raw:find("/", 1, true) then
    return reply(404, { error = { kind = "request", message = "use GET " .. prefix .. "{callConnectionId}" } })
  end
  local id = ngx.unescape_uri(raw)

  local call, msg, info = fetch(mode, id)
  if call then return reply(200, call) end
  info = info or {}
  return reply(resty.error_status(info), { error = {
    kind = info.kind, message = msg, status = info.status, code = info.code,
    request_id = info.request_id, client_request_id = info.client_request_id,
    attempts = info.attempts,
  } })
end

return M
