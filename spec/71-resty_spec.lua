-- acscall.resty outside nginx: the lua-resty-http adapter (with stand-in
-- clients that speak request_uri), the error-status mapping, and the
-- thread-pool worker function acscall.resty_worker.fetch called directly.
local helpers = require "spec.helpers"
local acscall = require "acscall"
local resty = require "acscall.resty"
local worker = require "acscall.resty_worker"

local CALL = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local unpack = table.unpack or rawget(_G, "unpack")

-- a lua-resty-http stand-in: records the call, answers what it is told
local function fake_httpc(res, err)
  local f = { calls = {} }
  function f:request_uri(url, params)
    self.calls[#self.calls + 1] = { url = url, params = params }
    if type(res) == "function" then return res(url, params) end
    return res, err
  end
  return f
end

describe("acscall.resty", function()
  local emu, client
  lazy_setup(function()
    emu = helpers.start_emulator()
    client = acscall.new{ connection_string = emu.connection_string }
  end)
  lazy_teardown(function()
    if client then client:close() end
    if emu then emu:stop() end
  end)

  describe("http_get_call (lua-resty-http adapter)", function()
    it("sends the signed request through request_uri and decodes the answer", function()
      -- the stand-in performs the exchange over luasocket against the emulator
      local httpc = fake_httpc(function(url, params)
        local status, body, headers = helpers.http_get(url, params.headers)
        if not status then return nil, body end
        return { status = status, body = body, headers = headers }
      end)
      local call, err = resty.http_get_call(httpc, client, CALL, { keepalive_timeout = 1000 })
      assert.is_table(call, err)
      assert.are.equal(CALL, call.callConnectionId)
      assert.are.equal("4:+14250123456", call.targets[2].rawId)
      local p = httpc.calls[1].params
      assert.are.equal("GET", p.method)
      assert.is_true(p.ssl_verify)
      assert.are.equal(1000, p.keepalive_timeout)
      assert.matches("^HMAC%-SHA256 ", p.headers.authorization)
      assert.is_string(p.headers["x-ms-date"])
      assert.are.equal(emu:url(emu:call_path(CALL)), httpc.calls[1].url)
      assert.are.equal("hmac", emu:last_request().auth)
    end)

    it("reports HTTP errors like get_call does", function()
      local httpc = fake_httpc({ status = 404, headers = { ["X-Ms-Request-Id"] = "rid-1" },
        body = '{"error":{"code":"8522","message":"Call not found."}}' })
      local call, msg, info = resty.http_get_call(httpc, client, "nope")
      assert.is_nil(call)
      assert.are.equal("HTTP 404: Call not found. (code 8522)", msg)
      assert.are.equal("http", info.kind)
      assert.are.equal("rid-1", info.request_id)
      assert.are.equal(404, resty.error_status(info))
    end)

    it("turns a cosocket failure into a transport error, after the retries", function()
      local httpc = fake_httpc(nil, "timeout")
      local sleeps = {}
      local call, msg, info = resty.http_get_call(httpc, client, CALL,
        { sleep = function(s) sleeps[#sleeps + 1] = s end })
      assert.is_nil(call)
      assert.are.equal("transport: timeout", msg)
      assert.are.equal("transport", info.kind)
      assert.is_true(info.timeout)
      assert.are.equal(4, info.attempts) -- the client's default: 3 retries
      assert.are.equal(3, #sleeps)
      assert.matches("^%x+%-%x+%-4%x+%-%x+%-%x+$", info.client_request_id)
      assert.are.equal(504, resty.error_status(info))
      local nosleep = { sleep = function() end }
      local _, _, info2 = resty.http_get_call(fake_httpc(nil, "connection refused"), client, CALL, nosleep)
      assert.are.equal(502, resty.error_status(info2))
      assert.are.equal(4, info2.attempts)
    end)

    it("retries through client:next_attempt: one client request id, fresh signatures, Retry-After", function()
      local n, sleeps = 0, {}
      local httpc = fake_httpc(function()
        n = n + 1
        if n == 1 then return { status = 503, headers = {}, body = '{"error":{"code":"x","message":"busy"}}' } end
        if n == 2 then return { status = 429, headers = { ["Retry-After"] = "2" }, body = "" } end
        local body = helpers.read_file(helpers.fixtures_dir() .. "/" .. CALL .. ".json")
        return { status = 200, headers = {}, body = body }
      end)
      local timeouts = {}
      function httpc:set_timeouts(c, s, r) timeouts[#timeouts + 1] = { c, s, r } end
      local call, err = resty.http_get_call(httpc, client, CALL,
        { sleep = function(s) sleeps[#sleeps + 1] = s end, keepalive_pool = 4 })
      assert.is_table(call, err)
      assert.are.equal(3, #httpc.calls)
      assert.are.equal(2, #sleeps)
      assert.is_true(sleeps[1] > 0 and sleeps[1] <= 0.8)
      assert.are.equal(2, sleeps[2]) -- the server's Retry-After, exactly
      local crid = httpc.calls[1].params.headers["x-ms-client-request-id"]
      for i = 2, 3 do
        assert.are.equal(crid, httpc.calls[i].params.headers["x-ms-client-request-id"])
      end
      assert.is_nil(httpc.calls[1].params.sleep) -- ours, not passed on
      assert.are.equal(4, httpc.calls[3].params.keepalive_pool)
      assert.are.same({ 10000, 30000, 30000 }, timeouts[1]) -- connect, send, read (ms)
    end)

    it("does not retry what the rule calls final (a 404, a TLS failure)", function()
      local nosleep = { sleep = function() error("no wait expected") end }
      local httpc = fake_httpc({ status = 404, headers = {}, body = '{"error":{"code":"8522","message":"nope"}}' })
      local _, _, info = resty.http_get_call(httpc, client, CALL, nosleep)
      assert.are.equal(1, #httpc.calls)
      assert.are.equal(1, info.attempts)
      local tls = fake_httpc(nil, "handshake failed: certificate verify failed")
      local _, msg2, info2 = resty.http_get_call(tls, client, CALL, nosleep)
      assert.are.equal(1, #tls.calls)
      assert.are.equal("transport", info2.kind)
      assert.matches("certificate verify failed", msg2)
    end)

    it("stops at the deadline", function()
      local c = acscall.new{ connection_string = emu.connection_string, deadline = 1, timeout = 0.5,
        retries = { max = 10, base_delay = 0.4, max_delay = 0.4 } }
      local t = 0
      local httpc = fake_httpc(function() t = t + 0.5 return nil, "timeout" end)
      local _, _, info = resty.http_get_call(httpc, c, CALL,
        { sleep = function(s) t = t + s end, now = function() return t end })
      assert.is_true(info.attempts >= 1 and info.attempts <= 2, tostring(info.attempts))
      assert.is_true(t <= 1.5, tostring(t))
      c:close()
    end)

    it("decodes a 2xx that is not a call as a decode error", function()
      local _, msg, info = resty.http_get_call(fake_httpc({ status = 200, body = "[]", headers = {} }), client, CALL)
      assert.are.equal("decode", info.kind)
      assert.is_string(msg)
      assert.are.equal(502, resty.error_status(info))
    end)

    -- a stand-in for lua-resty-http's streaming API: the body comes in chunks
    -- of `chunk` bytes, `n` of them, the clock advancing `step` s per chunk
    local function streaming_httpc(chunk, n, clock, step)
      local f = fake_httpc(function() error("request_uri is not the streaming path") end)
      f.closed, f.read, f._VERSION = 0, 0, "0.17.1"
      function f.parse_uri(_, url)
        local scheme, host, port, path = url:match("^(https?)://([^:/]+):(%d+)(/[^?]*)")
        return { scheme, host, tonumber(port), path, url:match("%?(.*)$") or "" }
      end
      function f.connect() return true end
      function f.close(self) self.closed = self.closed + 1 return true end
      function f.set_keepalive() return true end
      function f.request(self)
        local left = n
        return { status = 200, headers = {}, body_reader = function()
          if left == 0 then return nil end
          left = left - 1
          self.read = self.read + #chunk
          clock.t = clock.t + step
          return chunk
        end }
      end
      return f
    end

    it("streams the body and stops past max_body: kind decode, the connection closed", function()
      local clock = { t = 0 }
      local httpc = streaming_httpc(string.rep("x", 65536), math.huge, clock, 0)
      local _, msg, info = resty.http_get_call(httpc, client, CALL,
        { max_body = 1024 * 1024, now = function() return clock.t end, sleep = function() end })
      assert.are.equal("decode", info.kind)
      assert.are.equal("decode: response body exceeds the max_body limit (1048576 bytes)", msg)
      assert.are.equal(1, info.attempts)
      assert.are.equal(1, httpc.closed)
      assert.is_true(httpc.read <= 1024 * 1024 + 65536)
    end)

    it("ends an attempt whose body trickles past its timeout (the deadline as a whole)", function()
      local clock = { t = 0 }
      local c = acscall.new{ connection_string = emu.connection_string, timeout = 1, deadline = 2, retries = false }
      local httpc = streaming_httpc("x", 200, clock, 0.1)
      local _, msg, info = resty.http_get_call(httpc, c, CALL, { now = function() return clock.t end })
      assert.are.equal("transport", info.kind)
      assert.is_true(info.timeout)
      assert.matches("still arriving", msg)
      assert.is_true(clock.t <= 1.2, tostring(clock.t))
      c:close()
    end)

    it("takes credential = as capture_get_call does: the token fetched before each attempt", function()
      local got = 0
      local cred = { get_token = function() got = got + 1 return emu.token, os.time() + 3600 end }
      local c = acscall.new{ endpoint = emu.endpoint, credential = cred }
      local httpc = fake_httpc(function(url, params)
        local status, body, headers = helpers.http_get(url, params.headers)
        return { status = status, body = body, headers = headers }
      end)
      local call, err = resty.http_get_call(httpc, c, CALL, { credential = cred })
      assert.is_table(call, err)
      assert.is_true(got >= 1)
      assert.is_nil(httpc.calls[1].params.credential) -- ours, not passed on
      local bad = { get_token = function() return nil, "no token today" end }
      local _, msg, info = resty.http_get_call(fake_httpc(), c, CALL, { credential = bad })
      assert.are.equal("auth", info.kind)
      assert.are.equal("auth: credential: no token today", msg)
      c:close()
    end)

    it("refuses something that is not an http client", function()
      assert.has_error(function() resty.http_get_call({}, client, CALL) end)
    end)
  end)

  describe("error_status", function()
    it("maps each kind of failure", function()
      assert.are.equal(429, resty.error_status{ kind = "http", status = 429 })
      assert.are.equal(504, resty.error_status{ kind = "transport", timeout = true,
        message = "Operation timed out after 10 milliseconds" })
      assert.are.equal(502, resty.error_status{ kind = "transport", message = "Couldn't connect to server" })
      assert.are.equal(503, resty.error_status{ kind = "thread" })
      assert.are.equal(500, resty.error_status{ kind = "auth" })
      assert.are.equal(500, resty.error_status(nil))
    end)

    it("keeps the upstream's 404, 429, 5xx; maps a 3xx, 401 and 403 to 502", function()
      for _, st in ipairs{400, 404, 408, 429, 500, 503} do
        assert.are.equal(st, resty.error_status{ kind = "http", status = st })
      end
      -- a redirect is not followed (passing it on would lack its Location);
      -- 401/403 mean the gateway's own credential was refused
      for _, st in ipairs{301, 302, 304, 307, 308, 401, 403} do
        assert.are.equal(502, resty.error_status{ kind = "http", status = st }, st)
      end
    end)
  end)

  describe("get_call (thread pool)", function()
    it("needs nginx", function()
      assert.has_error(function() resty.get_call({}, CALL) end)
    end)

    -- a stand-in for lua-nginx-module's ngx.run_worker_thread
    local function with_ngx(answer, f)
      local saved = rawget(_G, "ngx")
      rawset(_G, "ngx", { run_worker_thread = function() return unpack(answer, 1, 4) end })
      local ok, a, b, c = pcall(f)
      rawset(_G, "ngx", saved)
      assert(ok, a)
      return a, b, c
    end

    it("reports every 'cannot take the task' answer as kind thread", function()
      for _, why in ipairs{ "no available Lua vm", "ngx_thread_task_post failed", "no memory" } do
        local call, msg, info = with_ngx({ false, why }, function() return resty.get_call({}, CALL) end)
        assert.is_nil(call)
        assert.are.equal("thread", info.kind, why)
        assert.matches("^thread: ", msg)
        assert.are.equal(503, resty.error_status(info))
      end
    end)

    it("raises on a programmer mistake (unknown pool, a raise in the pool thread)", function()
      for _, why in ipairs{ "thread pool acscall not found", "acscall.new: option 'timeout' must be ..." } do
        assert.has_error(function()
          with_ngx({ false, why }, function() return resty.get_call({}, CALL) end)
        end)
      end
    end)

    it("passes the pool thread's result through", function()
      local call = with_ngx({ true, true, { callConnectionId = "x" } }, function() return resty.get_call({}, CALL) end)
      assert.are.equal("x", call.callConnectionId)
      local _, msg, info = with_ngx({ true, false, "HTTP 404: nope", { kind = "http", status = 404 } },
        function() return resty.get_call({}, CALL) end)
      assert.are.equal("HTTP 404: nope", msg)
      assert.are.equal(404, info.status)
    end)
  end)

  describe("token_cache", function()
    -- a stand-in ngx: timers are queued, run by hand; a settable clock
    local function fake_ngx()
      local n = { timers = {}, clock = 1000, logs = {}, WARN = 5, ERR = 4 }
      n.timer = { at = function(delay, f) n.timers[#n.timers + 1] = { delay = delay, f = f } return true end }
      n.time = function() return n.clock end
      n.log = function(_, ...) n.logs[#n.logs + 1] = table.concat({ ... }) end
      function n.run() local t = table.remove(n.timers, 1) t.f(false) return t.delay end
      return n
    end

    it("fetches in a timer, serves the cached token, refreshes before expiry, drops it when expired", function()
      local n, saved = fake_ngx(), rawget(_G, "ngx")
      rawset(_G, "ngx", n)
      local ok, err = pcall(function()
        local answers = { { "tok-1", 1000 + 3600 }, { nil, "service down" } }
        local provider = resty.token_cache(function() return unpack(table.remove(answers, 1)) end,
          { refresh_before = 300, retry = 10 })
        assert.is_nil((provider())) -- nothing fetched yet
        assert.are.equal(0, n.run()) -- the first fetch: at once
        assert.are.equal("tok-1", provider())
        assert.are.equal(3300, n.timers[1].delay) -- 300 s before expiry
        n.clock = 1000 + 3300
        n.run() -- the refresh fails: the token still holds until it expires
        assert.are.equal("tok-1", provider())
        assert.are.equal(10, n.timers[1].delay)
        n.clock = 1000 + 3600
        local t, why = provider()
        assert.is_nil(t)
        assert.matches("service down", why)
        assert.not_matches("tok%-1", table.concat(n.logs, "\n"))
      end)
      rawset(_G, "ngx", saved)
      assert(ok, err)
    end)
  end)

  describe("capture_get_call's timeout ladder", function()
    it("picks the largest step not above the attempt timeout", function()
      local function ms(t) return resty.STEPS[resty._step_for(t)] end
      assert.are.equal(100, ms(0.001)) -- below the ladder: the smallest step
      assert.are.equal(100, ms(0.1))
      assert.are.equal(250, ms(0.29))
      assert.are.equal(10000, ms(10))
      assert.are.equal(8000, ms(9.99))
      assert.are.equal(120000, ms(500))
    end)

    it("acscall.conf sends every header client:request signs, and nothing of the client's", function()
      local conf = assert(helpers.read_file(helpers.repo_root() .. "/lua/acscall/nginx/acscall.conf"))
      assert.matches("\n%s*proxy_pass_request_headers off;", conf)
      local sent = {}
      for name in conf:gmatch("\n%s*proxy_set_header ([%w%-]+) %$acscall_") do sent[name:lower()] = true end
      local bearer = acscall.new{ endpoint = emu.endpoint, token = "t" }
      for _, c in ipairs{ client, bearer } do
        local _, headers = c:request(CALL)
        for name in pairs(headers) do assert.is_true(sent[name], name) end
      end
      bearer:close()
    end)

    it("matches acscall.conf's locations", function()
      local conf = assert(helpers.read_file(helpers.repo_root() .. "/lua/acscall/nginx/acscall.conf"))
      local found = {}
      for step in conf:gmatch("location = /_acscall/t/(%d+) ") do found[#found + 1] = tonumber(step) end
      assert.are.same(resty.STEPS, found)
      local n = 0
      for step, read in conf:gmatch("location = /_acscall/t/(%d+) {[^}]-proxy_read_timeout (%d+)ms;") do
        assert.are.equal(step, read)
        n = n + 1
      end
      assert.are.equal(#resty.STEPS, n)
    end)
  end)

  describe("capture_get_call with a credential", function()
    -- a stand-in ngx whose subrequests answer from a script
    local function with_capture(answers, f)
      local n = { HTTP_GET = 0, HTTP_POST = 1, sent = {} }
      n.location = { capture = function(_, o)
        n.sent[#n.sent + 1] = o.vars.acscall_authorization
        return table.remove(answers, 1)
      end }
      n.sleep = function() end
      n.now = function() return 1000 end
      local saved = rawget(_G, "ngx")
      rawset(_G, "ngx", n)
      local function pack(...) return { n = select("#", ...), ... } end
      local r = pack(pcall(f, n))
      rawset(_G, "ngx", saved)
      assert(r[1], r[2])
      return n, unpack(r, 2, r.n) -- nil holes: LuaJIT's #r would cut them
    end
    local BODY = assert(helpers.read_file(helpers.fixtures_dir() .. "/" .. CALL .. ".json"))
    local EXPIRED = '{"error":{"code":"Unauthorized","message":"The access token has expired."}}'
    local function fake_cred()
      local c = { n = 0, forced = 0 }
      function c.get_token(_, o)
        if o and o.force_refresh then c.forced = c.forced + 1 c.n = c.n + 1 end
        if c.n == 0 then c.n = 1 end
        return "tok-" .. c.n, os.time() + 3600
      end
      return c
    end

    it("after a 401 refreshes the token once and retries the call once with the new one", function()
      local cred = fake_cred()
      local c = acscall.new{ endpoint = emu.endpoint, credential = cred }
      local n, call = with_capture({
        { status = 401, body = EXPIRED, header = { ["Content-Length"] = tostring(#EXPIRED) } },
        { status = 200, body = BODY, header = { ["Content-Length"] = tostring(#BODY) } },
      }, function() return resty.capture_get_call(c, CALL, { credential = cred }) end)
      assert.are.equal(CALL, call.callConnectionId)
      assert.are.same({ "Bearer tok-1", "Bearer tok-2" }, n.sent)
      assert.are.equal(1, cred.forced)
      c:close()
    end)

    it("a second 401 ends the call (no loop), kind http 401", function()
      local cred = fake_cred()
      local c = acscall.new{ endpoint = emu.endpoint, credential = cred }
      local r401 = { status = 401, body = EXPIRED, header = { ["Content-Length"] = tostring(#EXPIRED) } }
      local n, call, _, info = with_capture({ r401, r401, r401 },
        function() return resty.capture_get_call(c, CALL, { credential = cred }) end)
      assert.is_nil(call)
      assert.are.equal(401, info.status)
      assert.are.equal(2, #n.sent)
      assert.are.equal(1, cred.forced)
      c:close()
    end)

    it("a token with a control byte never reaches acscall.conf's Authorization (kind auth)", function()
      for _, bad in ipairs{ "tok\1en", "tok\27en", "tok\127en", "tok\r\nX-Injected: yes" } do
        local c = acscall.new{ endpoint = emu.endpoint, token_provider = function() return bad end }
        local n, call, msg, info = with_capture({}, function() return resty.capture_get_call(c, CALL) end)
        assert.is_nil(call)
        assert.are.equal("auth", info.kind, msg)
        assert.are.equal(0, #n.sent)
        assert.not_matches("Injected", msg)
        c:close()
      end
    end)

    it("a credential that fails: nothing sent, kind auth, credential: <message>", function()
      local cred = { get_token = function() return nil, "managed_identity: no answer from http://127.0.0.1:9/x" end }
      local c = acscall.new{ endpoint = emu.endpoint, token = "t" }
      local n, call, msg, info = with_capture({}, function()
        return resty.capture_get_call(c, CALL, { credential = cred })
      end)
      assert.is_nil(call)
      assert.are.equal("auth", info.kind)
      assert.are.equal("auth: credential: managed_identity: no answer from http://127.0.0.1:9/x", msg)
      assert.are.equal(0, #n.sent)
      c:close()
    end)

    it("acscall.conf's ladder sends the headers capture_transport may set, each declared", function()
      local conf = assert(helpers.read_file(helpers.repo_root() .. "/lua/acscall/nginx/acscall.conf"))
      for _, h in ipairs{ "Metadata %$acscall_metadata", "X%-IDENTITY%-HEADER %$acscall_identity_header",
        "Accept %$acscall_accept", "Content%-Type %$acscall_content_type", "Host %$acscall_host" } do
        assert.matches("\n%s*proxy_set_header " .. h .. ";", conf)
      end
      for name, var in pairs(resty._SENT) do
        assert.matches("proxy_set_header [%w%-]+ %$" .. var .. ";", conf, name)
        assert.matches("set %$" .. var .. " \"\";", conf)
      end
    end)

    it("the thread path builds a credential by name in its VM (auth =)", function()
      worker.reset()
      local opts = { endpoint = emu.endpoint, auth = "managed-identity",
        auth_options = { env = { AZURE_POD_IDENTITY_AUTHORITY_HOST = emu.endpoint:gsub("/$", ""),
          AZURE_CLIENT_ID = "worker-mi" } } }
      local ok, call = worker.fetch(opts, CALL)
      assert.is_true(ok, tostring(call))
      assert.are.equal(CALL, call.callConnectionId)
      assert.is_true((worker.fetch(opts, CALL)))
      assert.are.equal(1, #emu:token_requests{ client_id = "worker-mi" })
      worker.reset()
    end)
  end)

  describe("cosocket errors", function()
    it("map to the core's outcome names", function()
      assert.are.equal("timeout", resty._cosocket_outcome("timeout"))
      assert.are.equal("connect", resty._cosocket_outcome("connection refused"))
      assert.are.equal("dns", resty._cosocket_outcome("no resolver defined to resolve \"x\""))
      assert.are.equal("tls", resty._cosocket_outcome("handshake failed"))
      assert.are.equal("closed", resty._cosocket_outcome("closed"))
      assert.are.equal("other", resty._cosocket_outcome("something else"))
    end)
  end)

  describe("resty_worker.fetch (what runs in a pool thread)", function()
    it("returns a flagged result (no nil: run_worker_thread cannot carry it)", function()
      local opts = { connection_string = emu.connection_string }
      local ok, call = worker.fetch(opts, CALL)
      assert.is_true(ok)
      assert.are.equal(CALL, call.callConnectionId)
      local ok2, msg, info = worker.fetch(opts, "nope")
      assert.is_false(ok2)
      assert.matches("^HTTP 404", msg)
      assert.are.equal("http", info.kind)
    end)

    it("keeps one client per option set, so the connection is reused", function()
      worker.reset()
      emu:clear_log()
      local opts = { connection_string = emu.connection_string, timeout = 5 }
      for _ = 1, 3 do assert.is_true((worker.fetch(opts, CALL))) end
      local same = { timeout = 5, connection_string = emu.connection_string } -- same, other order
      assert.is_true((worker.fetch(same, CALL)))
      local log = emu:log()
      assert.are.equal(4, #log)
      for i = 2, 4 do assert.are.equal(log[1].connection, log[i].connection) end
      assert.is_true(worker.reset())
    end)

    it("raises on a programmer mistake (run_worker_thread reports it)", function()
      assert.has_error(function() worker.fetch({ endpoint = "nope" }, CALL) end)
    end)
  end)
end)
