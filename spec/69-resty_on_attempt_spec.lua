-- on_attempt on the OpenResty paths, in real nginx against the emulator:
-- capture_get_call's records (503, 503, 200: three records, waits and
-- reasons as the core's verdict gave them), a token request's records
-- (capture_transport), a raising on_attempt (the call still answers; one
-- WARN line in error.log), no secret in any record; and docs/openresty.md's
-- counter example (`<!-- spec: nginx-attempts -->`) run as written, its
-- /metrics matching the attempts made. Needs build/luajit/acscall/core.so.
local helpers = require "spec.helpers"
local ngxh = require "spec.helpers_ngx"
local cjson = require "cjson.safe"

local ROOT = helpers.repo_root()
local CALL = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local TOKEN = "rattempt-bearer-token-0123456789abcdef"
local SECRET = "rattempt-client-secret-0123456789"

local function stop_all(nginx, emu, fixtures)
  if nginx then nginx:stop() end
  if emu then emu:stop() end
  if fixtures then helpers.run("rm -rf " .. helpers.shell_quote(fixtures)) end
end

-- A server of our own: /rec?mode=key|token|cred&id=ID[&raise=1] answers
-- {records = [...], ok = bool, message = ...} (a raising hook: the answer alone).
local function records_conf(emu)
  return [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
error_log @PREFIX@/error.log warn;
events {}
env ACS_CONNECTION_STRING;
env ACS_ENDPOINT;
env ACS_TOKEN;
env ACS_CLIENT_SECRET;
http {
  lua_package_path "]] .. ROOT .. [[/lua/?.lua;]] .. ROOT .. [[/lua/?/init.lua;;";
  lua_package_cpath "]] .. ROOT .. [[/build/luajit/?.so;;";
  init_worker_by_lua_block {
    local acscall = require "acscall"
    local resty = require "acscall.resty"
    local fast = { base_delay = 0.05, max_delay = 0.1 }
    local W = {}
    W.key = acscall.new{ connection_string = os.getenv("ACS_CONNECTION_STRING"), retries = fast }
    W.token = acscall.new{ endpoint = os.getenv("ACS_ENDPOINT"), token = os.getenv("ACS_TOKEN"), retries = fast }
    W.records = nil
    W.hook = function(a) W.records[#W.records + 1] = a end
    W.raising = function() error("counter exploded") end
    W.transport = resty.capture_transport{ base_delay = 0.05, max_delay = 0.1, on_attempt = W.hook }
    W.cred = acscall.credential.client_secret{ tenant_id = "t1", client_id = "app-fault-503x2-rattempt",
      client_secret = os.getenv("ACS_CLIENT_SECRET"), authority_host = os.getenv("ACS_ENDPOINT"):gsub("/$", ""),
      transport = W.transport }
    W.cred_client = acscall.new{ endpoint = os.getenv("ACS_ENDPOINT"), credential = W.cred, retries = fast }
    package.loaded.rattempt = W
  }
  upstream acscall {
    server 127.0.0.1:]] .. emu.port .. [[;
    keepalive 8;
  }
  server {
    listen 127.0.0.1:@PORT@;
    proxy_ssl_trusted_certificate ]] .. ngxh.SMALL_CA .. [[;
    include ]] .. ROOT .. [[/lua/acscall/nginx/acscall.conf;
    location = /rec {
      default_type application/json;
      content_by_lua_block {
        local resty = require "acscall.resty"
        local cjson = require "cjson.safe"
        local W = package.loaded.rattempt
        local a = ngx.req.get_uri_args()
        W.records = {}
        local client, opts = W[a.mode], { on_attempt = a.raise and W.raising or W.hook }
        if a.mode == "cred" then client, opts.credential = W.cred_client, W.cred end
        local call, message = resty.capture_get_call(client, a.id, opts)
        ngx.say(cjson.encode{ ok = call ~= nil, message = message, records = W.records })
      }
    }
  }
}
]]
end

local function get_json(port, path)
  local r = ngxh.parallel_get(port, { path }, 20 * helpers.slow)[1]
  assert.are.equal(200, r.status, tostring(r.raw))
  return assert(cjson.decode(r.body), r.body)
end

-- every string of a record against every secret in play
local function assert_no_secret(records, secrets)
  for _, rec in ipairs(records) do
    for k, v in pairs(rec) do
      for _, s in ipairs(secrets) do
        assert.is_nil(tostring(v):find(s, 1, true), "record field " .. k .. " holds a secret")
      end
    end
  end
end

describe("on_attempt on the OpenResty paths (nginx, one worker)", function()
  ngxh.require_luajit_core()

  local fixtures, emu, nginx
  lazy_setup(function()
    fixtures = ngxh.fixtures_with{
      r503 = '{"fault":"503","times":2}',
      r503ms = '{"fault":"503","times":2,"ms":"50"}',
    }
    emu = helpers.start_emulator{ fixtures = fixtures, token = TOKEN, client_secret = SECRET }
    nginx = ngxh.start_nginx(records_conf(emu), ngxh.root_user() .. " pid @PREFIX@/nginx.pid;",
      { ACS_CONNECTION_STRING = emu.connection_string, ACS_ENDPOINT = emu.endpoint, ACS_TOKEN = TOKEN,
        ACS_CLIENT_SECRET = SECRET })
  end)
  lazy_teardown(function() stop_all(nginx, emu, fixtures) end)

  -- what was sent (emulator log): the Authorization values and their tokens/signatures
  local function sent_secrets(id)
    local s = { TOKEN, SECRET, emu.access_key }
    for _, e in ipairs(ngxh.log_for(emu, id)) do
      local auth = e.headers and e.headers.authorization
      if auth then
        s[#s + 1] = auth
        s[#s + 1] = auth:match("Signature=(.+)$") or auth:match("Bearer (.+)$")
      end
    end
    return s
  end

  for _, mode in ipairs{ "key", "token" } do
    it("reports 503, 503, 200 as three records, waits and reasons from the verdict (" .. mode .. ")", function()
      emu:clear_log()
      local out = get_json(nginx.port, "/rec?mode=" .. mode .. "&id=r503")
      assert.is_true(out.ok, out.message)
      local r = out.records
      assert.are.equal(3, #r)
      local log = ngxh.log_for(emu, "r503")
      assert.are.equal(3, #log)
      for i = 1, 3 do
        assert.are.equal("get_call", r[i].operation)
        assert.are.equal("r503", r[i].id)
        assert.are.equal(i, r[i].attempt)
        assert.are.equal(i < 3 and 503 or 200, r[i].status)
        assert.is_number(r[i].duration)
        assert.is_true(r[i].duration >= 0 and r[i].duration < 5)
        assert.are.equal(emu.host, r[i].host)
        assert.are.equal(log[1].headers["x-ms-client-request-id"], r[i].client_request_id)
        assert.is_string(r[i].request_id)
        assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", r[i].request_id)
        assert.is_nil(r[i].kind)
      end
      -- backoff from base_delay 0.05: [0.025, 0.05], then [0.05, 0.1]
      assert.are.equal("status 503", r[1].reason)
      assert.is_true(r[1].wait >= 0.025 and r[1].wait <= 0.05, tostring(r[1].wait))
      assert.are.equal("status 503", r[2].reason)
      assert.is_true(r[2].wait >= 0.05 and r[2].wait <= 0.1, tostring(r[2].wait))
      assert.is_nil(r[3].wait)
      assert.is_nil(r[3].reason)
      assert_no_secret(r, sent_secrets("r503"))
    end)
  end

  it("says retry-after when the service set the wait", function()
    local out = get_json(nginx.port, "/rec?mode=key&id=r503ms")
    assert.is_true(out.ok, out.message)
    assert.are.equal(3, #out.records)
    for i = 1, 2 do
      assert.are.equal("retry-after", out.records[i].reason)
      assert.are.equal(0.05, out.records[i].wait)
    end
  end)

  it("reports a final answer with no wait or reason", function()
    local out = get_json(nginx.port, "/rec?mode=key&id=no-such-call")
    assert.is_false(out.ok)
    assert.are.equal(1, #out.records)
    assert.are.equal(404, out.records[1].status)
    assert.is_nil(out.records[1].wait)
    assert.is_nil(out.records[1].reason)
  end)

  it("reports a credential's token requests as operation token (capture_transport), no secret", function()
    emu:clear_log()
    local out = get_json(nginx.port, "/rec?mode=cred&id=" .. CALL)
    assert.is_true(out.ok, out.message)
    local r = out.records
    assert.are.equal(4, #r, cjson.encode(r))
    for i = 1, 3 do
      assert.are.equal("token", r[i].operation)
      assert.is_nil(r[i].id)
      assert.are.equal(i, r[i].attempt)
      assert.are.equal(i < 3 and 503 or 200, r[i].status)
      assert.are.equal(emu.host, r[i].host)
    end
    for i = 1, 2 do -- (the emulator's token endpoint may set Retry-After)
      assert.is_number(r[i].wait)
      assert.is_truthy(r[i].reason == "status 503" or r[i].reason == "retry-after", r[i].reason)
    end
    assert.is_nil(r[3].wait)
    assert.are.equal("get_call", r[4].operation)
    assert.are.equal(200, r[4].status)
    -- the issued token: what the emulator saw as the call's bearer
    assert_no_secret(r, sent_secrets(CALL))
  end)

  it("answers the call when on_attempt raises, and logs the error once (WARN)", function()
    for _ = 1, 2 do
      local out = get_json(nginx.port, "/rec?mode=key&id=r503&raise=1")
      assert.is_true(out.ok, out.message)
      assert.are.equal(0, #out.records)
    end
    local log = nginx:error_log()
    local _, n = log:gsub("acscall: on_attempt raised an error %(reported once, then ignored%)", "")
    assert.are.equal(1, n, log)
    assert.matches("%[warn%].-counter exploded", log)
  end)
end)

describe("docs/openresty.md: the attempt counters (nginx-attempts)", function()
  ngxh.require_luajit_core()

  local fixtures, emu, nginx
  lazy_setup(function()
    fixtures = ngxh.fixtures_with{ r503ms = '{"fault":"503","times":2,"ms":"50"}' }
    emu = helpers.start_emulator{ fixtures = fixtures }
    local conf = ngxh.doc_conf("nginx-attempts", emu.port)
    nginx = ngxh.start_nginx(conf, ngxh.root_user() .. " pid @PREFIX@/nginx.pid;",
      { ACS_CONNECTION_STRING = emu.connection_string })
  end)
  lazy_teardown(function() stop_all(nginx, emu, fixtures) end)

  it("counts attempts by result and retries by reason; /metrics prints them", function()
    local paths = { "/calls/" .. CALL, "/calls/r503ms", "/calls/no-such-call" }
    for _, p in ipairs(paths) do ngxh.parallel_get(nginx.port, { p }, 20 * helpers.slow) end
    local m = ngxh.parallel_get(nginx.port, { "/metrics" })[1]
    assert.are.equal(200, m.status, tostring(m.raw))
    local got = {}
    for k, v in m.body:gmatch("([^\n]+) ([%d.]+)\n") do got[k] = tonumber(v) end
    assert.are.equal(2, got['acscall_attempts_total{operation="get_call",result="200"}'], m.body)
    assert.are.equal(2, got['acscall_attempts_total{operation="get_call",result="503"}'], m.body)
    assert.are.equal(1, got['acscall_attempts_total{operation="get_call",result="404"}'], m.body)
    assert.are.equal(2, got['acscall_retries_total{operation="get_call",reason="retry-after"}'], m.body)
    assert.is_true(got['acscall_attempt_seconds_sum{operation="get_call"}'] >= 0, m.body)
    -- as many attempts counted as the emulator saw
    assert.are.equal(5, #emu:log(), m.body)
  end)
end)

describe("the Lua attempt driver's records (offline: acscall.resty._drive)", function()
  local acscall = require "acscall"
  local resty = require "acscall.resty"

  it("client:next_attempt says why it retries (the record's reason), nothing before the first", function()
    local c = acscall.new{ endpoint = "http://127.0.0.1:1/", token = "t" }
    assert.are.equal(3, select("#", c:next_attempt(0, 0)))
    assert.are.equal("status 503", select(4, c:next_attempt(1, 0, 503)))
    assert.are.equal("retry-after", select(4, c:next_attempt(1, 0, 503, { ["Retry-After"] = "1" })))
    assert.are.equal("timeout", select(4, c:next_attempt(1, 0, "timeout")))
    assert.are.equal("refresh", select(4, c:next_attempt(1, 0, 401, nil, { refreshable = true })))
    assert.is_nil(c:next_attempt(1, 0, 404))
    c:close()
  end)

  -- a clock and a sleep of our own: no real wait
  local function run(hook, answers, secret)
    local c = acscall.new{ endpoint = "http://127.0.0.1:1/", token = "t", retries = { base_delay = 0.1 } }
    local t, n, facts = 0, 0, 0
    local last, attempts = resty._drive(c, {
      now = function() return t end, sleep = function(s) t = t + s end,
      on_attempt = hook, facts = hook and function()
        facts = facts + 1
        return "get_call", "x", "crid-1", "http://user@127.0.0.1:9/calling", { secret }
      end,
      send = function()
        n = n + 1
        t = t + 0.25
        local a = answers[n]
        if type(a) == "number" then
          return { status = a, headers = { ["X-MS-Request-Id"] = "rid-" .. n .. "-" .. secret }, final = a < 400 }
        end
        return { outcome = a, text = a }
      end,
    })
    c:close()
    return last, attempts, facts
  end

  it("counts an Authorization value's token or signature alone among the secrets sent", function()
    assert.are.same({ "Bearer abc.def-123", "abc.def-123" }, resty._auth_secrets("Bearer abc.def-123"))
    assert.are.same({ "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=c2ln+/=",
      "c2ln+/=" }, resty._auth_secrets("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=c2ln+/="))
    assert.are.same({}, resty._auth_secrets(nil))
  end)

  it("builds records only when on_attempt is set", function()
    local _, attempts, facts = run(nil, { 503, "timeout", 200 }, "s3cr3t-token-0123456789abcdef")
    assert.are.equal(3, attempts)
    assert.are.equal(0, facts)
  end)

  it("gives the record of a transport failure its kind and outcome, redacts the request id", function()
    local secret = "s3cr3t-token-0123456789abcdef"
    local got = {}
    run(function(r) got[#got + 1] = r end, { 503, "timeout", 200 }, secret)
    assert.are.equal(3, #got)
    assert.are.same({ operation = "get_call", id = "x", attempt = 1, status = 503, duration = 0.25,
      wait = got[1].wait, reason = "status 503", request_id = "rid-1-***", client_request_id = "crid-1",
      host = "127.0.0.1:9" }, got[1])
    assert.are.equal("transport", got[2].kind)
    assert.are.equal("timeout", got[2].outcome)
    assert.are.equal("timeout", got[2].reason)
    assert.is_nil(got[2].status)
    assert.is_nil(got[2].request_id)
    assert.are.equal("rid-3-***", got[3].request_id)
    assert.is_nil(got[3].wait)
  end)
  it("http_get_call reports its attempts the same way; a raising on_attempt leaves the call intact", function()
    local key = "cmF0dGVtcHQtYWNjZXNzLWtleS0zMi1ieXRlcyEhISE="
    local c = acscall.new{ endpoint = "http://127.0.0.1:9/", access_key = key, retries = { base_delay = 0.1 } }
    local body = assert(helpers.read_file(helpers.fixtures_dir() .. "/" .. CALL .. ".json"))
    local n, t, sent = 0, 0, {}
    local httpc = { request_uri = function(_, _, params)
      n = n + 1
      t = t + 0.25
      sent[#sent + 1] = params.headers.authorization
      if n == 1 then return nil, "timeout" end
      if n == 2 then return { status = 503, headers = { ["Retry-After"] = "1" }, body = "" } end
      return { status = 200, headers = { ["x-ms-request-id"] = "rid-3" }, body = body }
    end }
    local clock = { sleep = function(s) t = t + s end, now = function() return t end }
    local got = {}
    clock.on_attempt = function(r) got[#got + 1] = r end
    local call = assert(resty.http_get_call(httpc, c, CALL, clock))
    assert.are.equal(CALL, call.callConnectionId)
    assert.are.equal(3, #got)
    assert.are.same({ "transport", "timeout", "timeout" }, { got[1].kind, got[1].outcome, got[1].reason })
    assert.are.same({ 503, 1, "retry-after" }, { got[2].status, got[2].wait, got[2].reason })
    assert.are.same({ 200, "rid-3", "127.0.0.1:9" }, { got[3].status, got[3].request_id, got[3].host })
    for i = 1, 3 do
      assert.are.equal(i, got[i].attempt)
      assert.are.equal("get_call", got[i].operation)
      assert.are.equal(CALL, got[i].id)
      assert.is_true(math.abs(got[i].duration - 0.25) < 1e-9, tostring(got[i].duration))
      assert.is_string(got[i].client_request_id)
    end
    local secrets = { key }
    for _, a in ipairs(sent) do secrets[#secrets + 1] = a; secrets[#secrets + 1] = a:match("Signature=(.+)$") end
    assert_no_secret(got, secrets)
    -- raising: the call still answers; outside nginx the one line goes to
    -- io.stderr (swapped for a recorder here, put back after)
    -- luacheck: push ignore 122
    local lines, stderr = {}, io.stderr
    io.stderr = { write = function(_, ...) lines[#lines + 1] = table.concat{ ... } end }
    clock.on_attempt = function() error("boom") end
    for _ = 1, 2 do
      n = 2
      local ok, r = pcall(resty.http_get_call, httpc, c, CALL, clock)
      if not (ok and r) then io.stderr = stderr end
      assert.is_true(ok, r)
      assert.are.equal(CALL, r.callConnectionId)
    end
    io.stderr = stderr
    -- luacheck: pop
    assert.are.equal(1, #lines, table.concat(lines))
    assert.matches("^acscall: on_attempt raised an error %(reported once, then ignored%): .-boom\n$", lines[1])
    assert.has_error(function() resty.http_get_call(httpc, c, CALL, { on_attempt = 1 }) end,
      "acscall.resty.http_get_call: on_attempt must be a function, got number")
    c:close()
  end)
end)
