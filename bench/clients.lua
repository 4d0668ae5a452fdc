-- clients.lua - the Lua clients of `make bench`, one per process.
--   lua5.4 bench/clients.lua MODE ENDPOINT CALL_ID N WARMUP [CA_FILE]
-- MODE: acscall-bearer | acscall-hmac | diy   (diy = luasocket socket.http, or
-- lua-sec ssl.https for an https endpoint, + cjson.decode: what a user writes)
-- prints: RESULT n=N wall_us=<per call> cpu_us=<client user+sys per call>
local mode, endpoint, id, n, warm, ca = arg[1], arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5] or 1), arg[6]
assert(mode and endpoint and id and n, "usage: clients.lua MODE ENDPOINT CALL_ID N WARMUP [CA_FILE]")
if ca == "-" or ca == "" then ca = nil end
local socket = require "socket"
local now = socket.gettime
local KEY = "YWNzLWVtdWxhdG9yLWFjY2Vzcy1rZXktMzItYnl0ZXM=" -- the emulator's default
local TOKEN = os.getenv("BENCH_TOKEN") or "emulator-token"

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
elseif mode == "diy" then
  local ltn12 = require "ltn12"
  local cjson = require "cjson"
  local http = endpoint:match("^https:") and require("ssl.https") or require("socket.http")
  local url = endpoint .. "calling/callConnections/" .. id .. "?api-version=2026-03-12"
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
local t0, c0 = now(), os.clock()
for _ = 1, n do one() end
local t1, c1 = now(), os.clock()
if n > 0 then
  io.write(string.format("RESULT n=%d wall_us=%.2f cpu_us=%.2f\n", n, (t1 - t0) * 1e6 / n, (c1 - c0) * 1e6 / n))
end
