-- The core's pieces for the identity side (Entra ID credentials), over real HTTP on
-- loopback: the `credential` option (asked per call and per attempt, one
-- forced refresh after a 401), core.fetcher (the token requests' HTTP, on
-- the calls' transport and retry rule), core.spawn (the Azure CLI, no
-- shell) and the ACSCALL_LOOPBACK_ONLY safety net every test run has on.
local acscall = require "acscall"
local core = require "acscall.core"
local helpers = require "spec.helpers"

local ECHO = [[
local socket = require "socket"
local s = assert(socket.bind("127.0.0.1", 0))
local _, port = s:getsockname()
local f = io.open(@PORTFILE@, "w") f:write(port) f:close()
while true do
  local c = s:accept()
  c:settimeout(5)
  local line, hs, len = c:receive("*l"), {}, 0
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    hs[#hs + 1] = h
    local n = h:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
    if n then len = tonumber(n) end
  end
  local body = len > 0 and c:receive(len) or ""
  local out = line .. "\n" .. table.concat(hs, "\n") .. "\n\n" .. body
  c:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #out
    .. "\r\nConnection: close\r\n\r\n" .. out)
  c:close()
end
]]

describe("core identity pieces", function()
  local emu

  lazy_setup(function() emu = helpers.start_emulator() end)
  lazy_teardown(function() if emu then emu:stop() end end)

  it("runs with ACSCALL_LOOPBACK_ONLY=1 (make test sets it)", function()
    assert.are.equal("1", os.getenv("ACSCALL_LOOPBACK_ONLY"))
  end)

  describe("ACSCALL_LOOPBACK_ONLY", function()
    it("refuses a host that is not loopback at once, before any lookup, and never retries", function()
      local f = core.fetcher{retries = 3, base_delay = 0.5}
      local t0 = helpers.now()
      for _, url in ipairs{"http://192.0.2.1/x", "https://login.microsoftonline.invalid/t",
                           "http://169.254.169.254/metadata/identity/oauth2/token",
                           "http://127.0.0.1.example.invalid/", "http://user@10.0.0.1/",
                           "http://[::2]/"} do
        local ok, err, info = f:fetch{url = url}
        assert.is_nil(ok, url)
        assert.matches("ACSCALL_LOOPBACK_ONLY", err, 1, true)
        assert.are.equal("transport", info.kind)
        assert.are.equal(1, info.attempts)
      end
      assert.is_true(helpers.now() - t0 < 1 * helpers.slow)
      f:close()
    end)

    it("lets 127.x, localhost and [::1] through", function()
      local f = core.fetcher{retries = 0}
      local status = f:fetch{url = "http://localhost:" .. emu.port .. "/x"}
      assert.are.equal(404, status)
      status = f:fetch{url = "http://127.0.0.1:" .. emu.port .. "/x"}
      assert.are.equal(404, status)
      f:close()
    end)

    it("has one loopback rule (core.is_loopback_url), also acscall.credential's", function()
      for _, u in ipairs{"http://127.0.0.1:8080/x", "https://LOCALHOST/", "http://[::1]:80/", "http://127.9.8.7",
                         "http://u:p@127.0.0.1/"} do
        assert.is_true(core.is_loopback_url(u), u)
        assert.is_true(require("acscall.credential").is_loopback(u), u)
      end
      for _, u in ipairs{"http://127.0.0.1.5/", "http://127.256.0.1/", "http://127.0.0.1.nip.io/",
                         "http://127.1/", "http://10.0.0.1/", "http://127.0.0.1@10.0.0.1/", "ftp://127.0.0.1/",
                         "http://[::1].example/", "not a url"} do
        assert.is_false(core.is_loopback_url(u), u)
        assert.is_false(require("acscall.credential").is_loopback(u), u)
      end
      assert.is_false(core.is_loopback_url(42))
    end)

    it("covers calls too: a client with a real ACS host fails without a packet", function()
      local c = acscall.new{endpoint = "https://contoso.communication.azure.com/", token = "t0k3n-secret"}
      local call, err, info = c:get_call("x")
      assert.is_nil(call)
      assert.matches("ACSCALL_LOOPBACK_ONLY", err, 1, true)
      assert.are.equal("transport", info.kind)
      local r = c:get_calls{"a", "b"}
      assert.matches("ACSCALL_LOOPBACK_ONLY", r[2].err, 1, true)
      c:close()
    end)
  end)

  describe("core.fetcher", function()
    it("GETs with headers on a kept connection and returns status, body, headers, attempts", function()
      local f = core.fetcher()
      emu:clear_log()
      for _ = 1, 2 do
        local status, body, headers, attempts = f:fetch{
          url = emu.endpoint .. "calling/callConnections/minimal?api-version=2026-03-12",
          headers = {Authorization = "Bearer " .. emu.token}}
        assert.are.equal(200, status)
        assert.matches('"callConnectionId"', body, 1, true)
        assert.matches("application/json", headers["content-type"], 1, true)
        assert.are.equal(1, attempts)
      end
      local log = emu:log()
      assert.are.equal(2, #log)
      assert.are.equal(log[1].connection, log[2].connection) -- one connection, reused
      assert.matches("^acscall/", log[1].headers["user-agent"])
      f:close()
      assert.matches("closed", tostring(f))
    end)

    it("POSTs a form urlencoded, keys sorted, every reserved byte escaped", function()
      local portfile = os.tmpname()
      local p = helpers.spawn_lua((ECHO:gsub("@PORTFILE@", ("%q"):format(portfile))))
      finally(function() p:cleanup(); os.remove(portfile) end)
      assert.is_true(helpers.wait_until(function()
        return tonumber(helpers.read_file(portfile) or "") ~= nil end))
      local port = tonumber(helpers.read_file(portfile))
      local f = core.fetcher{retries = 0}
      local status, body = f:fetch{url = "http://127.0.0.1:" .. port .. "/tenant/oauth2/v2.0/token",
        form = {scope = "https://communication.azure.com//.default", b = "a b&c=d", a = "\195\169+/"}}
      assert.are.equal(200, status)
      local line, hs, sent = body:match("^(.-)\n(.-)\n\n(.*)$")
      assert.are.equal("POST /tenant/oauth2/v2.0/token HTTP/1.1", line)
      assert.matches("Content-Type: application/x-www-form-urlencoded", hs, 1, true)
      assert.are.equal("a=%C3%A9%2B%2F&b=a%20b%26c%3Dd&scope=https%3A%2F%2Fcommunication.azure.com%2F%2F.default", sent)
      -- the same handle, a GET after the POST: no body, no form header
      status, body = f:fetch{url = "http://127.0.0.1:" .. port .. "/metadata/identity/oauth2/token?x=1"}
      assert.are.equal(200, status)
      line, hs, sent = body:match("^(.-)\n(.-)\n\n(.*)$")
      assert.are.equal("GET /metadata/identity/oauth2/token?x=1 HTTP/1.1", line)
      assert.is_nil(hs:find("Content-Type", 1, true))
      assert.are.equal("", sent)
      f:close()
    end)

    it("retries 503s with the calls' rule and reports any final status", function()
      local f = core.fetcher{retries = {max = 3, base_delay = 0.01, max_delay = 0.02}}
      local url = emu.endpoint .. "calling/callConnections/fault-503x2?api-version=2026-03-12"
      local status, _, _, attempts = f:fetch{url = url, headers = {Authorization = "Bearer " .. emu.token}}
      assert.are.equal(200, status)
      assert.are.equal(3, attempts)
      status = f:fetch{url = emu.endpoint .. "nowhere"}
      assert.are.equal(404, status) -- not retried: an answer
      f:close()
    end)

    it("a transport failure is nil, message, info with the attempts, and no header value in it", function()
      local f = core.fetcher{retries = {max = 2, base_delay = 0.01, max_delay = 0.01}}
      local ok, err, info = f:fetch{url = "http://127.0.0.1:1/t",
        headers = {Authorization = "Bearer sup3r-secret-token"}, form = {client_secret = "s3cr3t-value"}}
      assert.is_nil(ok)
      assert.are.equal("transport", info.kind)
      assert.are.equal(3, info.attempts)
      assert.is_nil(err:find("s3cr3t", 1, true))
      assert.is_nil(err:find("sup3r", 1, true))
      f:close()
    end)

    it("raises on programmer mistakes, before anything is sent", function()
      local f = core.fetcher()
      assert.has_error(function() f:fetch{url = "ftp://127.0.0.1/"} end)
      assert.has_error(function() f:fetch{url = "http://127.0.0.1/", method = "PUT"} end)
      assert.has_error(function() f:fetch{url = "http://127.0.0.1/", headers = {["X Y"] = "1"}} end)
      assert.has_error(function() f:fetch{url = "http://127.0.0.1/", headers = {X = "a\r\nB: c"}} end)
      assert.has_error(function() f:fetch{url = "http://127.0.0.1/", form = {a = 1}} end)
      assert.has_error(function() core.fetcher{retries = 99} end)
      assert.has_error(function() core.fetcher{timeout = -1} end)
      f:close()
      assert.has_error(function() f:fetch{url = "http://127.0.0.1/"} end, "acscall.fetcher: closed")
    end)
  end)

  describe("core.spawn", function()
    it("runs a program with arguments as a vector, no shell", function()
      local code, out, err = core.spawn{argv = {"printf", "%s|", "$(id)", "a b", ";exit 3"}}
      assert.are.equal(0, code)
      assert.are.equal("$(id)|a b|;exit 3|", out)
      assert.are.equal("", err)
    end)

    it("returns the exit code and stderr", function()
      local code, out, err = core.spawn{argv = {"sh", "-c", "echo oops >&2; exit 3"}}
      assert.are.equal(3, code)
      assert.are.equal("", out)
      assert.are.equal("oops\n", err)
    end)

    it("fails with nil, message, info for a missing program, a timeout, too much output", function()
      local ok, err, info = core.spawn{argv = {"acscall-no-such-program"}}
      assert.is_nil(ok)
      assert.matches("not found", err, 1, true)
      assert.are.equal("local", info.kind)
      local t0 = helpers.now()
      ok, err, info = core.spawn{argv = {"sleep", "10"}, timeout = 0.3}
      assert.is_nil(ok)
      assert.matches("timed out", err, 1, true)
      assert.is_true(info.timeout)
      assert.is_true(helpers.now() - t0 < 3 * helpers.slow)
      ok, err = core.spawn{argv = {"head", "-c", "100000", "/dev/zero"}, max_output = 1000}
      assert.is_nil(ok)
      assert.matches("max_output", err, 1, true)
    end)

    it("leaves no child behind when it times out", function()
      core.spawn{argv = {"sleep", "7.25"}, timeout = 0.2}
      local out = helpers.run("ps -o pid=,stat=,args= --ppid " .. require("acscall_testsupport").getpid())
      assert.is_nil(out:find("sleep 7.25", 1, true), out)
    end)
  end)

  describe("credential = <object with get_token>", function()
    local function counting(tokens)
      local cred = {asks = 0, forced = 0, current = tokens[1]}
      function cred:get_token(opts)
        self.asks = self.asks + 1
        if opts and opts.force_refresh then
          self.forced = self.forced + 1
          self.current = tokens[2] or self.current
        end
        return self.current, os.time() + 3600
      end
      return cred
    end

    it("is asked per call; its token is sent as a bearer", function()
      local cred = counting{emu.token}
      local c = acscall.new{endpoint = emu.endpoint, credential = cred}
      assert.matches("credential auth", tostring(c), 1, true)
      emu:clear_log()
      for _ = 1, 3 do assert.is_table((c:get_call("minimal"))) end
      assert.are.equal(3, cred.asks)
      assert.are.equal("bearer", emu:last_request().auth)
      c:close()
    end)

    it("a 401 forces one refresh and one more attempt of the call", function()
      local cred = counting{"stale-token-0123456789", emu.token}
      local c = acscall.new{endpoint = emu.endpoint, credential = cred}
      emu:clear_log()
      local call, err = c:get_call("minimal")
      assert.is_nil(err, err)
      assert.are.equal("minimal", call.callConnectionId)
      assert.are.equal(1, cred.forced)
      local log = emu:log()
      assert.are.equal(2, #log)
      assert.are.equal(401, log[1].status)
      assert.are.equal(200, log[2].status)
      c:close()
    end)

    it("a 401 that a fresh token does not cure is reported after one refresh", function()
      local cred = counting{"stale-token-0123456789", "still-stale-0123456789"}
      local c = acscall.new{endpoint = emu.endpoint, credential = cred}
      local call, err, info = c:get_call("minimal")
      assert.is_nil(call)
      assert.are.equal(401, info.status)
      assert.are.equal(2, info.attempts)
      assert.are.equal(1, cred.forced)
      assert.is_nil(err:find("still-stale", 1, true))
      c:close()
    end)

    it("get_calls asks before every attempt and refreshes once per refused token, not per id", function()
      local cred = counting{"stale-token-0123456789", emu.token}
      local c = acscall.new{endpoint = emu.endpoint, credential = cred}
      local ids = {}
      for i = 1, 40 do ids[i] = "minimal" end
      local r = c:get_calls(ids, {concurrency = 8})
      for i = 1, 40 do assert.is_table(r[i].call, r[i].err) end
      assert.are.equal(1, cred.forced)
      assert.is_true(cred.asks >= 40)
      c:close()
    end)

    it("a token that changes mid-batch is used by the attempts after it", function()
      local cred = {n = 0}
      function cred:get_token()
        self.n = self.n + 1
        return self.n <= 5 and emu.token or "rotated-but-unknown-token", os.time() + 60
      end
      local c = acscall.new{endpoint = emu.endpoint, credential = cred}
      local ids = {}
      for i = 1, 12 do ids[i] = "minimal" end
      local r = c:get_calls(ids, {concurrency = 1})
      assert.is_table(r[1].call)
      assert.are.equal(401, r[12].info.status)
      c:close()
    end)

    it("its nil, message is passed on as kind auth; a raised error is not echoed", function()
      local c = acscall.new{endpoint = emu.endpoint,
        credential = {get_token = function() return nil, "token endpoint said no" end}}
      local call, err, info = c:get_call("minimal")
      assert.is_nil(call)
      assert.are.equal("auth: credential: token endpoint said no", err)
      assert.are.equal("auth", info.kind)
      local r = c:get_calls{"minimal", "minimal"}
      assert.are.equal("auth: credential: token endpoint said no", r[2].err)
      c = acscall.new{endpoint = emu.endpoint,
        credential = {get_token = function() error("client_secret=hunter2-very-secret") end}}
      call, err = c:get_call("minimal")
      assert.is_nil(call)
      assert.are.equal("auth: credential raised an error", err)
      c = acscall.new{endpoint = emu.endpoint, credential = {get_token = function() return 42 end}}
      call, err = c:get_call("minimal")
      assert.is_nil(call)
      assert.matches("did not return a string", err, 1, true)
    end)

    it("is a programmer mistake without a get_token method, or with another credential", function()
      assert.has_error(function() acscall.new{endpoint = emu.endpoint, credential = {}} end)
      assert.has_error(function() acscall.new{endpoint = emu.endpoint, credential = "x"} end)
      assert.has_error(function()
        acscall.new{endpoint = emu.endpoint, token = "t", credential = counting{"x"}} end)
    end)
  end)
end)
