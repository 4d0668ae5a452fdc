-- README promises that had no spec: the retry policy's headers, statuses,
-- cap and jitter (seen as attempts and the waits between them in the
-- emulator's request log), get_calls' per-id deadline, client:request with
-- a token provider, connect_timeout against a loopback blackhole, and the
-- proxy variables libcurl honours (a tiny proxy on loopback).
local acscall = require "acscall"
local helpers = require "spec.helpers"
local socket = require "socket"

local q = helpers.shell_quote

-- fault scenarios, one fixture id each (a copy of the REST page's sample call + a sidecar)
local SCENARIOS = {
  ["p-date"] = {fault = "503", times = 1, retry_after_date = 2},
  ["p-xms"] = {fault = "503", times = 2, x_ms = 100},
  ["p-408"] = {fault = "408", times = 2},
  ["p-502"] = {fault = "502", times = 2},
  ["p-504"] = {fault = "504", times = 2},
  ["p-503"] = {fault = "503"},
  ["p-stall"] = {fault = "stall", ms = 20000},
  ["p-429-long"] = {fault = "429", retry_after = 30},
}

describe("README promises", function()
  local emu

  lazy_setup(function() emu = helpers.start_emulator{scenarios = SCENARIOS, rename = true} end)
  lazy_teardown(function() if emu then emu:stop() end end)
  before_each(function() emu:clear_log() end)

  -- fast backoff unless a test says otherwise: a wait that is much longer
  -- than base_delay can only come from the server's header
  local function client(opts)
    local o = {connection_string = emu.connection_string, timeout = 5, connect_timeout = 2,
      retries = {max = 3, base_delay = 0.01, max_delay = 0.05}}
    for k, v in pairs(opts or {}) do o[k] = v end
    return acscall.new(o)
  end

  -- the emulator's log entries for one id, and the seconds between them
  local function attempts(id)
    local list = {}
    for _, r in ipairs(emu:log()) do
      if r.id == id then list[#list + 1] = r end
    end
    local gaps = {}
    for i = 2, #list do gaps[i - 1] = list[i].time - list[i - 1].time end
    return list, gaps
  end

  describe("retries", function()
    -- real waits of a second or two (the header's unit): the slow set; the
    -- arithmetic is checked instantly through client:next_attempt below
    it("honours Retry-After as an HTTP date #slow", function()
      local c = client()
      local call, err = c:get_call("p-date")
      c:close()
      assert.is_table(call, err)
      assert.equal("p-date", call.callConnectionId)
      local list, gaps = attempts("p-date")
      assert.equal(2, #list)
      assert.equal(503, list[1].status)
      -- a date 2 s ahead, to the second: 1-2 s (backoff alone: <= 0.05 s)
      assert.is_true(gaps[1] >= 0.95 and gaps[1] < 2 + 0.6 * helpers.slow, "waited " .. gaps[1])
    end)

    it("honours Retry-After as an HTTP date (client:next_attempt: the wait until that date)", function()
      local c = client{deadline = 90}
      local now = os.time()
      local wait = c:next_attempt(1, 0, 503, {["Retry-After"] = acscall.http_date(now + 30)})
      -- to the second: the clock may tick between os.time() and the rule's
      assert.is_true(wait >= 29 and wait <= 30, "wait " .. tostring(wait))
      -- a date in the past: retry at once, not never
      assert.are.equal(0, (c:next_attempt(1, 0, 503, {["retry-after"] = acscall.http_date(now - 60)})))
      -- a date past the deadline: not taken
      assert.is_nil(c:next_attempt(1, 0, 503, {["Retry-After"] = acscall.http_date(now + 120)}))
      c:close()
    end)

    it("honours x-ms-retry-after-ms exactly", function()
      local c = client()
      local call, err, info = c:get_call("p-xms")
      c:close()
      assert.is_table(call, err)
      local list, gaps = attempts("p-xms")
      assert.equal(3, #list)
      for i = 1, 2 do
        assert.equal(503, list[i].status)
        assert.is_true(gaps[i] >= 0.099 and gaps[i] < 0.1 + 0.4 * helpers.slow, "waited " .. gaps[i])
      end
      assert.is_nil(info)
    end)

    for _, status in ipairs{408, 502, 504} do
      it("retries " .. status .. ": succeeds on attempt 3, one client request id", function()
        local id = "p-" .. status
        local c = client()
        local call, err = c:get_call(id)
        c:close()
        assert.is_table(call, err)
        assert.equal(id, call.callConnectionId)
        local list = attempts(id)
        assert.equal(3, #list)
        assert.equal(status, list[1].status)
        assert.equal(status, list[2].status)
        assert.equal(200, list[3].status)
        assert.equal(list[1].headers["x-ms-client-request-id"], list[3].headers["x-ms-client-request-id"])
      end)
    end

    -- p-503 fails every attempt; each wait between two attempts (seen in the
    -- log, whose clock has millisecond steps) must lie in [d/2, d], plus
    -- the time of the request itself (scaled by ACSCALL_SLOW) on the upper side
    local function check_waits(retries, d_of)
      local c = client{retries = retries}
      local call, _, info = c:get_call("p-503")
      c:close()
      assert.is_nil(call)
      assert.equal(retries.max + 1, info.attempts)
      local _, gaps = attempts("p-503")
      assert.equal(retries.max, #gaps)
      for n, gap in ipairs(gaps) do
        local d = d_of(n)
        assert.is_true(gap >= d / 2 - 0.01, ("wait %d: %.3f s < d/2 = %.3f s"):format(n, gap, d / 2))
        assert.is_true(gap <= d + 0.15 * helpers.slow, ("wait %d: %.3f s > d = %.3f s"):format(n, gap, d))
      end
    end

    -- the same rule asked directly, many times: every wait in [d/2, d], and
    -- the jitter spreads (not always d, not always d/2)
    local function check_rule(retries, d_of)
      local c = client{retries = retries, deadline = 1000}
      for n = 1, retries.max do
        local d, lo, hi = d_of(n), math.huge, 0
        for _ = 1, 200 do
          local wait = c:next_attempt(n, 0, 503)
          assert.is_true(wait >= d / 2 - 0.001 and wait <= d + 0.001,
            ("retry %d: %.4f s not in [%.4f, %.4f]"):format(n, wait, d / 2, d))
          lo, hi = math.min(lo, wait), math.max(hi, wait)
        end
        assert.is_true(hi - lo > d / 10, ("retry %d: no jitter (%.4f..%.4f)"):format(n, lo, hi))
      end
      assert.is_nil(c:next_attempt(retries.max + 1, 0, 503))
      c:close()
    end

    it("waits base_delay * 2^(n-1) with jitter in [d/2, d]", function()
      check_rule({max = 6, base_delay = 0.8, max_delay = 60}, function(n) return 0.8 * 2 ^ (n - 1) end)
      -- and get_call follows it (small delays: the log shows the waits)
      check_waits({max = 3, base_delay = 0.02, max_delay = 60}, function(n) return 0.02 * 2 ^ (n - 1) end)
    end)

    it("caps the wait at max_delay", function()
      -- uncapped the waits would be 0.8, 1.6, 3.2, 6.4 s
      check_rule({max = 4, base_delay = 0.8, max_delay = 2}, function(n) return math.min(0.8 * 2 ^ (n - 1), 2) end)
      check_waits({max = 4, base_delay = 0.02, max_delay = 0.03},
        function(n) return math.min(0.02 * 2 ^ (n - 1), 0.03) end)
    end)
  end)

  describe("get_calls", function()
    it("gives every id its own deadline: a stalled id fails alone, after its deadline", function()
      local c = client{deadline = 0.3, timeout = 5}
      local t0 = socket.gettime()
      -- one slot: the ids run one after another, each bounded by its deadline
      local results = c:get_calls({"p-stall", "state-connected", "p-stall"}, {concurrency = 1})
      local wall = socket.gettime() - t0
      c:close()
      assert.equal(3, #results)
      for _, i in ipairs{1, 3} do
        assert.equal("p-stall", results[i].id)
        assert.is_nil(results[i].call)
        assert.equal("transport", results[i].info.kind)
        assert.is_true(results[i].info.timeout)
      end
      assert.equal("connected", results[2].call.callConnectionState, results[2].err)
      -- two deadlines of 0.3 s (not the 5 s timeout, not one shared 0.3 s)
      assert.is_true(wall >= 0.55 and wall < 0.6 + 1.5 * helpers.slow, "wall " .. wall)
    end)

    it("does not take a server wait beyond an id's deadline", function()
      local c = client{deadline = 2}
      local t0 = socket.gettime()
      local results = c:get_calls({"p-429-long", "state-connected"})
      local wall = socket.gettime() - t0
      c:close()
      assert.equal(429, results[1].info.status)
      assert.equal(1, results[1].info.attempts)
      assert.equal("connected", results[2].call.callConnectionState)
      assert.is_true(wall < 1.5 * helpers.slow, "wall " .. wall)
    end)
  end)

  describe("client:request with a token provider", function()
    it("calls the provider for each request and signs with its token; the request works", function()
      local n = 0
      local c = acscall.new{endpoint = emu.endpoint, token_provider = function()
        n = n + 1
        return emu.token
      end}
      local url, headers = c:request("state-connected")
      assert.equal(1, n)
      assert.equal(emu:url(emu:call_path("state-connected")), url)
      assert.equal("Bearer " .. emu.token, headers.authorization)
      assert.is_nil(headers["x-ms-date"])
      local status, body, rheaders = helpers.http_get(url, headers)
      assert.equal(200, status)
      assert.equal("bearer", emu:last_request().auth)
      local call = assert(acscall.decode(status, body, rheaders))
      assert.equal("connected", call.callConnectionState)
      c:request("state-connected")
      assert.equal(2, n)
      c:close()
    end)

    it("a failing provider: nil, message, info of kind auth, no request made", function()
      local c = acscall.new{endpoint = emu.endpoint, token_provider = function() error("vault is down") end}
      local url, msg, info = c:request("state-connected")
      c:close()
      assert.is_nil(url)
      assert.is_string(msg)
      assert.equal("auth", info.kind)
      assert.equal(0, #emu:log())
    end)
  end)

  describe("connect_timeout", function()
    it("fires against a loopback port that never completes the handshake", function()
      -- a listener with a full accept queue (backlog 0, filled, never
      -- accepted): the kernel drops further SYNs, so a connect hangs
      local server = assert(socket.bind("127.0.0.1", 0, 0))
      local _, port = server:getsockname()
      local fillers = {}
      for i = 1, 4 do
        fillers[i] = socket.tcp()
        fillers[i]:settimeout(0)
        fillers[i]:connect("127.0.0.1", port)
      end
      local c = acscall.new{endpoint = "http://127.0.0.1:" .. port .. "/", token = "t",
        connect_timeout = 0.3, timeout = 10, retries = false}
      local t0 = socket.gettime()
      local call, msg, info = c:get_call("x")
      local wall = socket.gettime() - t0
      c:close()
      for _, s in ipairs(fillers) do s:close() end
      server:close()
      assert.is_nil(call)
      assert.equal("transport", info.kind)
      assert.is_true(info.timeout)
      assert.matches("^transport: ", msg)
      -- connect_timeout (0.3 s), not timeout (10 s)
      assert.is_true(wall >= 0.25 and wall < 0.3 + 2 * helpers.slow, "wall " .. wall)
    end)
  end)

  describe("proxy variables", function()
    -- A forwarding proxy on loopback: records each request line (GET in
    -- absolute form for http_proxy, CONNECT for https_proxy), forwards to
    -- 127.0.0.1 only, pipes both ways. Ends 20 s after its last client.
    local PROXY = [[
local socket = require "socket"
local LOG, PORT_FILE = @LOG@, @PORT_FILE@
local srv = assert(socket.bind("127.0.0.1", 0))
local _, port = srv:getsockname()
local f = assert(io.open(PORT_FILE .. ".tmp", "w")); f:write(port); f:close()
os.rename(PORT_FILE .. ".tmp", PORT_FILE)
srv:settimeout(20)
while true do
  local c = srv:accept()
  if not c then break end
  c:settimeout(10)
  local line = c:receive("*l") or ""
  local headers = {}
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    headers[#headers + 1] = h
  end
  local log = assert(io.open(LOG, "a")); log:write(line, "\n"); log:close()
  local method, target = line:match("^(%S+) (%S+)")
  local host, p, path
  if method == "CONNECT" then host, p = (target or ""):match("^(.-):(%d+)$")
  else host, p, path = (target or ""):match("^http://([^:/]+):(%d+)(/.*)$") end
  local up = host == "127.0.0.1" and socket.connect(host, tonumber(p))
  if not up then
    c:send("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
  else
    if method == "CONNECT" then
      c:send("HTTP/1.1 200 Connection established\r\n\r\n")
    else
      up:send(method .. " " .. path .. " HTTP/1.1\r\n" .. table.concat(headers, "\r\n") .. "\r\n\r\n")
    end
    c:settimeout(0); up:settimeout(0)
    local open = true
    while open do
      local ready = socket.select({c, up}, nil, 10)
      if #ready == 0 then break end
      for _, s in ipairs(ready) do
        local data, err, partial = s:receive(8192)
        data = data or partial
        if data and #data > 0 then (s == c and up or c):send(data) end
        if err == "closed" then open = false end
      end
    end
    up:close()
  end
  c:close()
end
]]

    local proxy, proxy_log, proxy_url, tls

    lazy_setup(function()
      proxy_log = os.tmpname()
      local port_file = os.tmpname()
      os.remove(port_file)
      proxy = helpers.spawn_lua((PROXY:gsub("@(%u+_?%u*)@", {LOG = ("%q"):format(proxy_log),
        PORT_FILE = ("%q"):format(port_file)})))
      assert(helpers.wait_until(function() return helpers.read_file(port_file) ~= nil end, 10), "proxy did not start")
      proxy_url = "http://127.0.0.1:" .. helpers.read_file(port_file) .. "/"
      os.remove(port_file)
      tls = helpers.start_emulator{tls = true}
    end)
    lazy_teardown(function()
      if proxy then proxy:cleanup() end
      if proxy_log then os.remove(proxy_log) end
      if tls then tls:stop() end
    end)
    before_each(function() assert(io.open(proxy_log, "w")):close() end)

    -- get_call in a child interpreter with these proxy variables (and no
    -- others); prints the state or the error
    local function get_via(vars, e, id)
      local env = {"env -u http_proxy -u https_proxy -u HTTPS_PROXY -u all_proxy -u ALL_PROXY"
        .. " -u no_proxy -u NO_PROXY"}
      for k, v in pairs(vars) do env[#env + 1] = k .. "=" .. q(v) end
      local out = helpers.run_lua(("local c = require('acscall').new{connection_string = %q, ca_file = %s,"
        .. " retries = false, timeout = 5}\n"
        .. "local call, err = c:get_call(%q)\nprint(call and call.callConnectionState or err)\n")
        :format(e.connection_string, e.ca_file and ("%q"):format(e.ca_file) or "nil", id), table.concat(env, " "))
      return out
    end

    it("http_proxy: an http:// endpoint is fetched through the proxy", function()
      local out = get_via({http_proxy = proxy_url}, emu, "state-connected")
      assert.equal("connected\n", out)
      assert.equal("GET " .. emu:url(emu:call_path("state-connected")) .. " HTTP/1.1\n",
        helpers.read_file(proxy_log))
      assert.equal("hmac", emu:last_request().auth)
    end)

    it("no_proxy: a listed host is fetched directly", function()
      local out = get_via({http_proxy = proxy_url, no_proxy = "127.0.0.1"}, emu, "state-connected")
      assert.equal("connected\n", out)
      assert.equal("", helpers.read_file(proxy_log))
      assert.equal("state-connected", emu:last_request().id)
    end)

    it("https_proxy: an https:// endpoint is tunnelled (CONNECT), TLS verified end to end", function()
      local out = get_via({https_proxy = proxy_url}, tls, "state-connected")
      assert.equal("connected\n", out)
      assert.equal("CONNECT 127.0.0.1:" .. tls.port .. " HTTP/1.1\n", helpers.read_file(proxy_log))
      assert.equal("state-connected", tls:last_request().id)
    end)
  end)
end)
