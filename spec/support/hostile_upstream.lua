-- spec/support/hostile_upstream.lua: the answers a hostile or broken service
-- luacheck: read globals ngx
-- can give, served by a plain nginx + lua-nginx-module for the OpenResty specs
-- (spec/helpers_ngx.lua's start_hostile). It writes raw HTTP on the request's
-- socket (ngx.req.socket(true)), so it can send what nginx's own output chain
-- never would: a 1xx before the answer, a body without end, a byte at a time.
-- The behaviour is the call id: GET /calling/callConnections/<id>
--   size-<N>      200, a valid call of exactly N bytes (a "padding" string)
--   endless       200, chunked, chunks without end (until the peer goes)
--   trickle-<MS>  200, a valid call sent one byte every MS milliseconds
--   early103      103 Early Hints, then 200 with the call
local M = {}

local CALL = [[{"callConnectionId":"%s","serverCallId":"srv","callConnectionState":"connected",]]
  .. [["targets":[],"padding":"%s"}]]

local function call_of_size(id, n)
  local pad = n - #CALL:format(id, "")
  if pad < 0 then pad = 0 end
  return CALL:format(id, string.rep("x", pad))
end
M.call_of_size = call_of_size

local function head(status, reason, extra)
  return "HTTP/1.1 " .. status .. " " .. reason .. "\r\nContent-Type: application/json\r\n"
    .. "x-ms-request-id: hostile\r\n" .. (extra or "")
end

function M.serve()
  local id = ngx.var.uri:match("/calling/callConnections/([^/?]+)") or ""
  ngx.req.read_body()
  local sock = assert(ngx.req.socket(true))
  local n = tonumber(id:match("^size%-(%d+)$"))
  if n then
    local body = call_of_size(id, n)
    sock:send(head(200, "OK", "Content-Length: " .. #body .. "\r\n\r\n"))
    for i = 1, #body, 65536 do
      local ok = sock:send(body:sub(i, i + 65535))
      if not ok then return end
    end
    return
  end
  if id == "endless" then
    sock:send(head(200, "OK", "Transfer-Encoding: chunked\r\n\r\n"))
    local chunk = string.format("%x\r\n%s\r\n", 65536, string.rep("x", 65536))
    sock:send("1\r\n{\r\n")
    while sock:send(chunk) do end
    return
  end
  local ms = tonumber(id:match("^trickle%-(%d+)$"))
  if ms then
    local body = call_of_size(id, 200)
    sock:send(head(200, "OK", "Content-Length: " .. #body .. "\r\n\r\n"))
    for i = 1, #body do
      if not sock:send(body:sub(i, i)) then return end
      ngx.sleep(ms / 1000)
    end
    return
  end
  if id == "early103" then
    local body = call_of_size(id, 200)
    sock:send("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
    sock:send(head(200, "OK", "Content-Length: " .. #body .. "\r\n\r\n") .. body)
    return
  end
  local body = '{"error":{"code":"NotFound","message":"no such hostile case"}}'
  sock:send(head(404, "Not Found", "Content-Length: " .. #body .. "\r\n\r\n") .. body)
end

return M
