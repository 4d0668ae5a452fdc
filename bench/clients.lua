-- clients.lua - the Lua clients of `make bench`, one per process.
--   lua5.4 bench/clients.lua MODE ENDPOINT CALL_ID N|serve WARMUP [CA_FILE]
-- MODE:
--   acscall-bearer | acscall-hmac   client:get_call(id), default options (retries on,
--                                   never triggered), ca_file for https
--   lua-keepalive                   one luasocket TCP connection (lua-sec over https)
--                                   kept open; the request written by hand; the answer
--                                   read by Content-Length; cjson.decode (bench/README.md)
--   diy                             socket.http.request (ssl.https over https) + cjson:
--                                   a new connection (and TLS handshake) per call
-- N: WARMUP calls, then N calls, one RESULT line. serve: WARMUP calls, then for each
-- line "N" on stdin N calls and one RESULT line (the interleaving driver's protocol).
-- prints: RESULT n=N wall_us=<per call> cpu_us=<client user+sys per call>
local mode, endpoint, id, n, warm, ca = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5] or 1), arg[6]
assert(mode and endpoint and id and n, "usage: clients.lua MODE ENDPOINT CALL_ID N|serve WARMUP [CA_FILE]")
if ca == "-" or ca == "" then ca = nil end
local socket = require "socket"
local now = socket.gettime
local KEY = "YWNzLWVtdWxhdG9yLWFjY2Vzcy1rZXktMzItYnl0ZXM=" -- the emulator's default
local TOKEN = os.getenv("BENCH_TOKEN") or "emulator-token"
local PATHQ = "/calling/callConnections/" .. id .. "?api-version=2026-03-12"

local one -- function() -> call table (or raises)
if mode == "acscall-bearer" or mode == "acscall-hmac" then
  local acscall = require "acscall"
  local opts = { endpoint = endpoint, ca_file = ca }
  if mode == "acscall-bearer" then opts.token = TOKEN else opts.access_key = os.getenv("BENCH_KEY") or KEY end
  local client = acscall.new(opts)
  local get = client.get_call
  one = function()
    local call, err = get(client, id)
    if not call then error(err) end
    return call
  end
elseif mode == "lua-keepalive" then
  -- What it does: HTTP/1.1 GET over one kept-open connection (TCP_NODELAY), the
  -- request line and headers (Host, Accept, Authorization: Bearer) in one write,
  -- the status line, the headers up to the blank line (only Content-Length read),
  -- the body by its length, status 200 checked, cjson.decode. What it does not:
  -- signing, request ids, chunked bodies, reconnecting, timeouts, retries, error
  -- bodies, host-name verification (lua-sec 1.2 checks the chain, not the name).
  local cjson = require "cjson"
  local scheme, hostport = endpoint:match("^(https?)://([^/]+)/")
  local host, port = hostport:match("^(.-):(%d+)$")
  host, port = host or hostport, tonumber(port) or (scheme == "https" and 443 or 80)
  local req = "GET " .. PATHQ .. " HTTP/1.1\r\nHost: " .. hostport ..
    "\r\nAccept: application/json\r\nAuthorization: Bearer " .. TOKEN .. "\r\n\r\n"
  local conn
  local function connect()
    local s = assert(socket.tcp())
    assert(s:connect(host, port))
    assert(s:setoption("tcp-nodelay", true))
    if scheme == "https" then
      local ssl = require "ssl"
      s = assert(ssl.wrap(s, { mode = "client", protocol = "any", cafile = ca, verify = "peer",
        options = "all" }))
      s:sni(host)
      assert(s:dohandshake())
    end
    return s
  end
  one = function()
    conn = conn or connect()
    assert(conn:send(req))
    local status = assert(conn:receive("*l"))
    local len
    while true do
      local line = assert(conn:receive("*l"))
      if line == "" then break end
      local v = line:match("^[Cc][Oo][Nn][Tt][Ee][Nn][Tt]%-[Ll][Ee][Nn][Gg][Tt][Hh]:%s*(%d+)")
      if v then len = tonumber(v) end
    end
    local body = assert(conn:receive((assert(len, "no Content-Length"))))
    if not status:find("^HTTP/1%.%d 200") then error(status) end
    return cjson.decode(body)
  end
elseif mode == "diy" then
  local ltn12 = require "ltn12"
  local cjson = require "cjson"
  local http = endpoint:match("^https:") and require("ssl.https") or require("socket.http")
  local url = endpoint .. PATHQ:sub(2)
  local headers = { ["Accept"] = "application/json", ["Authorization"] = "Bearer " .. TOKEN }
  one = function()
    local chunks = {}
    local req = { url = url, headers = headers, sink = ltn12.sink.table(chunks) }
    if ca then req.cafile, req.verify, req.protocol = ca, "peer", "any" end
    local ok, code = http.request(req)
    if ok == nil or code ~= 200 then error("HTTP " .. tostring(code)) end
    return cjson.decode(table.concat(chunks))
  end
else
  error("unknown mode " .. mode)
end

for _ = 1, warm do
  local call = one()
  assert(call.callConnectionId, "no callConnectionId in the answer")
end

local function burst(k)
  local t0, c0 = now(), os.clock()
  for _ = 1, k do one() end
  local t1, c1 = now(), os.clock()
  if k > 0 then
    io.write(string.format("RESULT n=%d wall_us=%.2f cpu_us=%.2f\n", k, (t1 - t0) * 1e6 / k, (c1 - c0) * 1e6 / k))
    io.flush()
  end
end

if n == "serve" then
  for line in io.lines() do burst(assert(tonumber(line), "serve: a number per line")) end
else
  burst(assert(tonumber(n)))
end
