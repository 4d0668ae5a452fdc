-- acscall.credential: Entra ID credentials (managed identity, client secret,
-- workload identity, Azure CLI, the default chain) against the emulator's
-- identity endpoints, through the C core's fetcher and `acscall.new{credential = ...}`:
-- caching, refresh, expiry mid-batch, 401 -> refresh -> retry, refused
-- secrets, retried 503s, and that no spec can aim a credential off this machine.
local helpers = require "spec.helpers"
local cjson = require "cjson.safe"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local SECRET = "emulator-client-secret"
local IDENTITY_HEADER = "emulator-identity-header"
local WRONG_SECRET = "wrong-secret-Zq81xv-not-this-one"

-- The credentials' clock (acscall.credential._clock), stopped at the real
-- time and moved by hand: lifetimes and refresh points without sleeping.
-- Returns advance(seconds) and restore().
local function stop_clock()
  local credential = require "acscall.credential"
  local real = credential._clock
  local t = real()
  credential._clock = function() return t end
  return function(dt) t = t + dt end, function() credential._clock = real end
end

local visible = helpers.visible

describe("acscall.credential", function()
  it("runs under the interpreter the suite was started for", function()
    assert.are.equal(os.getenv("ACSCALL_EXPECT_LUA") or "Lua 5.4", _VERSION)
    assert.are.equal((os.getenv("ACSCALL_EXPECT_JIT") or "") ~= "", rawget(_G, "jit") ~= nil)
  end)

  local credential = require "acscall.credential"

  -- ------------------------------------------------------------------ offline

  describe("offline", function()
    local fake_transport = helpers.fake_transport
    local function token_body(n, ttl)
      return cjson.encode{ access_token = "tok-" .. n, expires_in = ttl or 3600, token_type = "Bearer" }
    end
    local BASE = "http://127.0.0.1:9"

    it("is acscall.credential too, loaded at first use", function()
      assert.are.equal(credential, require("acscall").credential)
    end)

    it("tells loopback URLs from the rest", function()
      for _, u in ipairs{ "http://127.0.0.1:8080/x", "https://localhost/", "http://[::1]:80/", "http://127.9.8.7" } do
        assert.is_true(credential.is_loopback(u), u)
      end
      for _, u in ipairs{ "http://169.254.169.254/metadata", "https://login.microsoftonline.com/t",
        "http://127.0.0.1.nip.io/", "http://10.0.0.1/", "http://user@169.254.169.254/", "not a url" } do
        assert.is_false(credential.is_loopback(u), u)
      end
    end)

    it("refreshes 5 minutes before expiry, at refresh_in when given, at half the life of short tokens", function()
      assert.are.equal(1000 + 3300, credential._refresh_point(1000, 1000 + 3600))
      assert.are.equal(1000 + 1800, credential._refresh_point(1000, 1000 + 3600, 1000 + 1800))
      assert.are.equal(1000 + 1, credential._refresh_point(1000, 1000 + 2))
      assert.are.equal(1000 + 0.5, credential._refresh_point(1000, 1000 + 1))
      assert.are.equal(1000 + 300, credential._refresh_point(1000, 1000 + 600))
      assert.are.equal(1000 + 100, credential._refresh_point(1000, 1000 + 400)) -- 5 min before: earlier than half
      assert.are.equal(1000 + 250, credential._refresh_point(1000, 1000 + 500, 1000 + 400)) -- refresh_in, capped
      assert.are.equal(1000 + 150, credential._refresh_point(1000, 1000 + 300))
    end)

    it("reads the SDKs' environment variables: IMDS, App Service, client secret, workload identity", function()
      local mi = helpers.credential("managed_identity", { env = { AZURE_POD_IDENTITY_AUTHORITY_HOST = BASE .. "/" } })
      assert.are.equal("imds", mi.source)
      assert.are.equal(BASE .. "/metadata/identity/oauth2/token", mi:targets()[1])
      local app = helpers.credential("managed_identity", { client_id = "app-1",
        env = { IDENTITY_ENDPOINT = BASE .. "/msi/token", IDENTITY_HEADER = "h-secret-value" } })
      assert.are.equal("app_service", app.source)
      assert.matches("^" .. BASE:gsub("%p", "%%%0") .. "/msi/token%?api%-version=2019%-08%-01&resource="
        .. "https%%3A%%2F%%2Fcommunication%.azure%.com%%2F&client_id=app%-1$", app.url)
      assert.not_matches("h-secret-value", tostring(app))
      local cs = helpers.credential("client_secret", { env = { AZURE_TENANT_ID = "tenant-1",
        AZURE_CLIENT_ID = "c-1", AZURE_CLIENT_SECRET = "s3cret-value", AZURE_AUTHORITY_HOST = BASE } })
      assert.are.equal(BASE .. "/tenant-1/oauth2/v2.0/token", cs:targets()[1])
      assert.not_matches("s3cret", tostring(cs))
      local wi = helpers.credential("workload_identity", { env = { AZURE_TENANT_ID = "tenant-1",
        AZURE_CLIENT_ID = "c-1", AZURE_FEDERATED_TOKEN_FILE = "/nonexistent", AZURE_AUTHORITY_HOST = BASE } })
      assert.are.equal("/nonexistent", wi.token_file)
    end)

    it("raises on a missing setting, naming it and never the secret", function()
      local ok, err = pcall(credential.client_secret, { env = { AZURE_TENANT_ID = "t", AZURE_CLIENT_ID = "c" },
        authority_host = BASE })
      assert.is_false(ok)
      assert.matches("AZURE_CLIENT_SECRET", err)
      ok, err = pcall(credential.client_secret, { env = {}, client_secret = "s3cret-value", authority_host = BASE })
      assert.is_false(ok)
      assert.matches("AZURE_TENANT_ID", err)
      assert.not_matches("s3cret", err)
      ok, err = pcall(credential.managed_identity, { env = {}, endpoint = BASE, client_id = "a", resource_id = "b" })
      assert.is_false(ok)
      assert.matches("not both", err)
    end)

    it("caches: one fetch for many get_token calls; force_refresh fetches anew", function()
      local t = fake_transport(function(_, n) return 200, token_body(n), {} end)
      local c = helpers.credential("managed_identity", { endpoint = BASE, transport = t })
      assert.are.equal(0, #t.requests, "nothing fetched when built")
      for _ = 1, 3 do assert.are.equal("tok-1", (c:get_token())) end
      assert.are.equal(1, #t.requests)
      assert.are.equal("true", t.requests[1].headers.Metadata)
      local tok, exp = c:get_token{ force_refresh = true }
      assert.are.equal("tok-2", tok)
      assert.is_true(exp >= os.time() + 3590)
    end)

    it("keeps the still-valid token when a refresh fails, and fails once it expired", function()
      local up = true
      local t = fake_transport(function(_, n)
        if up then return 200, token_body(n, 2), {} end
        return nil, "connection refused", { kind = "transport" }
      end)
      local c = helpers.credential("managed_identity", { endpoint = BASE, transport = t })
      local advance, restore = stop_clock()
      finally(restore)
      assert.are.equal("tok-1", (c:get_token()))
      up = false
      advance(1.2) -- past the refresh point (1 s), before expiry (2 s)
      assert.are.equal("tok-1", (c:get_token()))
      assert.are.equal(2, #t.requests, "the refresh was tried")
      advance(1.0)
      local tok, msg, info = c:get_token()
      assert.is_nil(tok)
      assert.are.equal("transport", info.kind)
      assert.matches("no answer from", msg)
    end)

    it("gives a re-entrant caller (a finalizer, a hook) the still-valid token during a refresh", function()
      local c
      local inner = {}
      local t = fake_transport(function(_, n)
        if n == 2 then inner[#inner + 1] = { c:get_token() } end -- re-entered mid-refresh
        return 200, token_body(n, 2), {}
      end)
      c = helpers.credential("managed_identity", { endpoint = BASE, transport = t })
      local advance, restore = stop_clock()
      finally(restore)
      assert.are.equal("tok-1", (c:get_token()))
      advance(1.1)
      assert.are.equal("tok-2", (c:get_token()))
      assert.are.equal("tok-1", inner[1][1], "the re-entrant call got the old, still valid token")
      assert.are.equal(2, #t.requests, "and started no second refresh")
    end)

    it("fails a re-entrant caller when no valid token is cached, without a second fetch", function()
      local c
      local inner
      local t = fake_transport(function(_, n)
        inner = { c:get_token() }
        return 200, token_body(n), {}
      end)
      c = helpers.credential("managed_identity", { endpoint = BASE, transport = t })
      assert.are.equal("tok-1", (c:get_token()))
      assert.is_nil(inner[1])
      assert.matches("already in progress", inner[2])
      assert.are.equal(1, #t.requests)
    end)

    it("reports a refused identity as kind auth with the service's code, never the secret", function()
      local t = fake_transport(function()
        return 401, cjson.encode{ error = "invalid_client",
          error_description = "AADSTS7000215: Invalid client secret provided: " .. WRONG_SECRET }, {}
      end)
      local c = helpers.credential("client_secret", { tenant_id = "t1", client_id = "c1", client_secret = WRONG_SECRET,
        authority_host = BASE, transport = t })
      local tok, msg, info = c:get_token()
      assert.is_nil(tok)
      assert.are.equal("auth", info.kind)
      assert.are.equal(401, info.status)
      assert.are.equal("invalid_client", info.code)
      assert.matches("AADSTS7000215", msg)
      assert.not_matches(WRONG_SECRET, visible(msg, info, tostring(c)), 1, true)
      assert.are.equal(WRONG_SECRET, t.requests[1].form.client_secret)
      assert.are.equal("client_credentials", t.requests[1].form.grant_type)
      assert.are.equal("https://communication.azure.com//.default", t.requests[1].form.scope)
    end)

    it("rejects a token answer without a usable token or expiry (kind decode)", function()
      for _, body in ipairs{ "<html>", "{}", '{"expires_in":60}', '{"access_token":"x"}' } do
        local c = helpers.credential("managed_identity", { endpoint = BASE,
          transport = fake_transport(function() return 200, body, {} end) })
        local tok, _, info = c:get_token()
        assert.is_nil(tok, body)
        assert.are.equal("decode", info.kind, body)
      end
    end)

    it("default: lists why each link was skipped or unavailable, with no secret", function()
      local az, fake = helpers.fake_az{ exit = 1, stderr = "ERROR: Please run 'az login' to setup account." }
      local c = helpers.credential("default", { imds_endpoint = BASE, az_command = az,
        env = { AZURE_TENANT_ID = "t1", AZURE_CLIENT_ID = "c1" },
        transport = { fetch = function() return nil, "connection refused", { kind = "transport" } end },
        spawn = (require "acscall.core").spawn })
      local tok, msg, info = c:get_token()
      fake.remove()
      assert.is_nil(tok)
      assert.are.equal("auth", info.kind)
      assert.matches("^auth: default: no credential available: environment: skipped", msg)
      -- the whole list in info.message (the one-line message is capped at the core's length)
      assert.matches("environment: skipped %(AZURE_CLIENT_SECRET not set%)", info.message)
      assert.matches("workload_identity: skipped %(AZURE_FEDERATED_TOKEN_FILE not set%)", info.message)
      assert.matches("managed_identity: unavailable %(no IMDS endpoint answered", info.message)
      assert.matches("azure_cli: unavailable %(not logged in", info.message)
    end)
  end)

  -- ----------------------------------------------------- the loopback safety net

  describe("loopback safety net", function()
    it("helpers.credential fails loudly for a credential aimed off this machine", function()
      -- (under make test the module raises first, with ACSCALL_LOOPBACK_ONLY=1 in its message;
      -- run alone, the helper does: either way the spec fails with the address)
      local cases = {
        { "managed_identity", {}, "169.254.169.254" }, -- IMDS
        { "managed_identity", { env = { AZURE_POD_IDENTITY_AUTHORITY_HOST = "http://169.254.169.254" } },
          "169.254.169.254" },
        { "managed_identity", { env = { IDENTITY_ENDPOINT = "http://10.1.2.3:8081/msi/token", IDENTITY_HEADER = "h" } },
          "10.1.2.3" },
        { "client_secret", { tenant_id = "t", client_id = "c", client_secret = "s3cret-value" },
          "login.microsoftonline.com" },
        { "workload_identity", { tenant_id = "t", client_id = "c", token_file = "/dev/null" },
          "login.microsoftonline.com" },
        { "client_secret", { tenant_id = "t", client_id = "c", client_secret = "s3cret-value",
          authority_host = "https://login.microsoftonline.us" }, "login.microsoftonline.us" },
        { "default", { imds_endpoint = "http://127.0.0.1:9" }, "Azure CLI" }, -- its azure_cli: the real az
        { "azure_cli", {}, "Azure CLI" },
      }
      for _, case in ipairs(cases) do
        local ok, err = pcall(helpers.credential, case[1], case[2])
        assert.is_false(ok, case[1] .. " was built")
        assert.matches(case[3], tostring(err), 1, true)
        assert.not_matches("s3cret", tostring(err))
      end
    end)

    it("under ACSCALL_LOOPBACK_ONLY=1 (every make test) the module itself refuses, helper or not", function()
      local out, ok = helpers.run_lua([[
        local credential = require "acscall.credential"
        for _, f in ipairs{
          function() return credential.managed_identity{ env = {} } end,
          function() return credential.client_secret{ env = {}, tenant_id = "t", client_id = "c", client_secret = "s" } end,
          function() return credential.default{ env = {} } end,
          function() return credential.azure_cli{ env = {} } end,
        } do
          local ok, err = pcall(f)
          print(ok, err)
        end
        print(pcall(credential.managed_identity, { env = {}, endpoint = "http://127.0.0.1:9" }))
      ]], "ACSCALL_LOOPBACK_ONLY=1")
      assert.is_true(ok, out)
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.are.equal(5, #lines, out)
      for i = 1, 4 do
        assert.matches("^false\t.*ACSCALL_LOOPBACK_ONLY=1", lines[i])
      end
      assert.matches("^true\tacscall%.credential%.managed_identity", lines[5])
    end)

    it("a spec that builds a credential without the loopback override fails (busted, run as a child)", function()
      local spec = os.tmpname() .. "_spec.lua"
      local f = assert(io.open(spec, "w"))
      f:write([[
        local helpers = require "spec.helpers"
        describe("a careless spec", function()
          it("forgets the emulator", function()
            local cred = helpers.credential("managed_identity", {})
            assert.is_not_nil(cred)
          end)
        end)
      ]])
      f:close()
      local lua = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
      local function child(env)
        return helpers.run("cd " .. helpers.shell_quote(helpers.repo_root()) .. " && env " .. env .. " "
          .. helpers.child_lua(lua) .. " /usr/bin/busted --output=plainTerminal " .. helpers.shell_quote(spec) .. " 2>&1")
      end
      local out, ok = child("ACSCALL_LOOPBACK_ONLY=1")
      local out2, ok2 = child("-u ACSCALL_LOOPBACK_ONLY")
      os.remove(spec)
      assert.is_false(ok, out)
      assert.matches("0 successes / 0 failures / 1 error", out, 1, true)
      assert.matches("169.254.169.254", out, 1, true)
      assert.matches("not a loopback address", out, 1, true)
      -- without the core's net, spec/helpers.lua itself refuses to load
      assert.is_false(ok2, out2)
      assert.matches("run the specs with ACSCALL_LOOPBACK_ONLY=1", out2, 1, true)
    end)
  end)

  -- ------------------------------------------------------------ against the emulator

  describe("against the emulator", function()
    local acscall = require "acscall"
    local emu, dir
    local fakes = {}
    lazy_setup(function()
      emu = helpers.start_emulator{}
      dir = os.tmpname()
      os.remove(dir)
      assert(helpers.run("mkdir -p " .. helpers.shell_quote(dir)))
    end)
    lazy_teardown(function()
      for _, f in ipairs(fakes) do f.remove() end
      if emu then emu:stop() end
      helpers.remove_dir(dir)
    end)

    local function write(path, s)
      local f = assert(io.open(path, "w"))
      f:write(s)
      f:close()
    end

    local nfile = 0
    local function assertion_file(content)
      nfile = nfile + 1
      local p = dir .. "/token-" .. nfile
      write(p, content or "emulator-assertion-signed.jwt\n")
      return p
    end

    local FAST = { retries = 3, base_delay = 0.05 }
    local function opts_with(o)
      local out = {}
      for k, v in pairs(FAST) do out[k] = v end
      for k, v in pairs(o) do out[k] = v end
      return out
    end

    -- one builder per credential; client_id selects the emulator's lifetime and faults.
    -- Returns the credential and a function counting its token requests in the log.
    local kinds = {
      managed_identity = function(client_id)
        local c = helpers.credential("managed_identity", opts_with{ client_id = client_id,
          env = helpers.identity_env(emu) })
        return c, function() return #emu:token_requests{ endpoint = "imds", client_id = client_id } end
      end,
      app_service = function(client_id)
        local c = helpers.credential("managed_identity", opts_with{ client_id = client_id,
          env = { IDENTITY_ENDPOINT = emu:url("/msi/token"), IDENTITY_HEADER = IDENTITY_HEADER } })
        return c, function() return #emu:token_requests{ endpoint = "app_service", client_id = client_id } end
      end,
      client_secret = function(client_id)
        local c = helpers.credential("client_secret", opts_with{
          env = helpers.identity_env(emu, { AZURE_TENANT_ID = "tenant-1", AZURE_CLIENT_ID = client_id,
            AZURE_CLIENT_SECRET = SECRET }) })
        return c, function() return #emu:token_requests{ endpoint = "oauth2", client_id = client_id } end
      end,
      workload_identity = function(client_id)
        local c = helpers.credential("workload_identity", opts_with{
          env = helpers.identity_env(emu, { AZURE_TENANT_ID = "tenant-1", AZURE_CLIENT_ID = client_id,
            AZURE_FEDERATED_TOKEN_FILE = assertion_file() }) })
        return c, function() return #emu:token_requests{ endpoint = "oauth2", client_id = client_id } end
      end,
      azure_cli = function(client_id)
        local ttl = tonumber(client_id:match("%-ttl(%d+)$"))
        local az, fake = helpers.fake_az{ token = emu.token, ttl = ttl }
        fakes[#fakes + 1] = fake
        local c = helpers.credential("azure_cli", { command = az })
        return c, function() return #fake.calls() end
      end,
      default = function(client_id)
        -- nothing but the managed identity is configured: the chain probes IMDS and uses it
        local c = helpers.credential("default", opts_with{ managed_identity_client_id = client_id,
          az_command = "/nonexistent/az", env = helpers.identity_env(emu) })
        return c, function() return #emu:token_requests{ endpoint = "imds", client_id = client_id } end
      end,
    }
    local ORDER = { "managed_identity", "app_service", "client_secret", "workload_identity", "azure_cli", "default" }
    local serial = 0
    local function unique(name, suffix)
      serial = serial + 1
      return name:gsub("_", "-") .. "-" .. serial .. (suffix or "")
    end

    for _, name in ipairs(ORDER) do
      describe(name, function()
        it("makes the call succeed; 3 calls -> 1 token request", function()
          local cred, count = kinds[name](unique(name))
          local client = acscall.new{ endpoint = emu.endpoint, credential = cred }
          for _ = 1, 3 do
            local call, msg = client:get_call(SEED)
            assert.is_table(call, msg)
            assert.are.equal(SEED, call.callConnectionId)
          end
          assert.are.equal(1, count())
          client:close()
        end)

        it("a token living 10 minutes: none before the refresh point (half), a new one after it", function()
          local cred, count = kinds[name](unique(name, "-ttl600"))
          local client = acscall.new{ endpoint = emu.endpoint, credential = cred }
          local advance, restore = stop_clock()
          finally(restore)
          assert.is_table(client:get_call(SEED))
          advance(290)
          assert.is_table(client:get_call(SEED)) -- before the refresh point (300 s)
          assert.are.equal(1, count(), "no token request before the refresh point")
          advance(20)
          local call, msg = client:get_call(SEED)
          assert.is_table(call, msg)
          assert.are.equal(2, count(), "a new token after the refresh point")
          client:close()
        end)
      end)
    end

    -- An expires_on in whole seconds (App Service's, IMDS's, the fake az's from `date +%s`)
    -- is rounded down: a 1 s token can arrive with its expiry already past (refused,
    -- rightly; seen under LuaJIT on a loaded machine); 2 s leaves it at least 1 s
    for _, name in ipairs(ORDER) do
      local ttl = 2
      it(name .. ": a 1,000-id get_calls with tokens living " .. ttl .. " s completes with 0 failures", function()
        local cred, count = kinds[name](unique(name, "-ttl" .. ttl))
        local client = acscall.new{ endpoint = emu.endpoint, credential = cred }
        local ids = {}
        for i = 1, 1000 do ids[i] = SEED end
        local results = client:get_calls(ids, { concurrency = 8 })
        local failures = {}
        for i, r in ipairs(results) do
          if not r.call then failures[#failures + 1] = i .. ": " .. tostring(r.err) end
        end
        assert.are.equal(1000, #results)
        assert.are.same({}, failures)
        assert.is_true(count() >= 1)
        client:close()
      end)
    end

    -- (not azure_cli: its fake hands out the emulator's static token, which never expires)
    it("an expired token -> 401 -> one forced refresh -> success, attempts in the log (each kind) #slow", function()
      -- the credentials' clock stops (from before the tokens came: an App
      -- Service expires_on is whole seconds, so a token can have < 1 s of life
      -- left when it arrives): they still believe their tokens fresh. One real
      -- wait (1.1 s) for all five: the emulator's own clock expires the tokens.
      local _, restore = stop_clock()
      finally(restore)
      local names = { "managed_identity", "app_service", "client_secret", "workload_identity", "default" }
      local creds = {}
      for i, name in ipairs(names) do
        local cred, count = kinds[name](unique("expiring", "-ttl1"))
        creds[i] = { cred = cred, count = count, tok = assert(cred:get_token()) }
      end
      helpers.sleep(1.1) -- the emulator now rejects them (a real wait: its clock is its own)
      for i, name in ipairs(names) do
        local c = creds[i]
        emu:clear_log()
        -- the core checks a credential's expires_on by the real clock, and this
        -- credential's clock is stopped: every token it hands out (the stale one, and the
        -- forced refresh's new one) is reported as valid for a minute, so the stale token
        -- reaches the emulator (which answers 401) and the refreshed one is sent
        local stale = { get_token = function(_, o)
          local tok, exp = c.cred:get_token(o)
          if tok then exp = os.time() + 60 end
          return tok, exp
        end }
        local client = acscall.new{ endpoint = emu.endpoint, credential = stale }
        local call, msg, info = client:get_call(SEED)
        assert.is_table(call, name .. ": " .. tostring(msg) .. " " .. visible(info))
        local calls = emu:calls{}
        assert.are.equal(2, #calls, name)
        assert.are.same({ 401, 200 }, { calls[1].status, calls[2].status }, name)
        assert.are.equal(1, c.count(), name .. ": one token request: the forced refresh")
        assert.are_not.equal(c.tok, (c.cred:get_token()), name)
        client:close()
      end
    end)

    it("a wrong client secret: nil, msg, info{kind = auth}, the secret nowhere", function()
      local cred = helpers.credential("client_secret", opts_with{ tenant_id = "tenant-1", client_id = unique("wrong"),
        client_secret = WRONG_SECRET, authority_host = emu.endpoint })
      local tok, msg, info = cred:get_token()
      assert.is_nil(tok)
      assert.are.equal("auth", info.kind)
      assert.are.equal(401, info.status)
      assert.matches("AADSTS7000215", msg)
      local client = acscall.new{ endpoint = emu.endpoint, credential = cred }
      local call, cmsg, cinfo = client:get_call(SEED)
      assert.is_nil(call)
      assert.are.equal("auth", cinfo.kind)
      assert.matches("client_secret: token request refused", cmsg, 1, true)
      local seen = visible(msg, info, cmsg, cinfo, tostring(cred), tostring(client))
      assert.not_matches(WRONG_SECRET, seen, 1, true)
      assert.not_matches(WRONG_SECRET, helpers.read_file(emu.log_path) or "", 1, true)
      client:close()
    end)

    it("a wrong App Service identity header is kind auth and never shown", function()
      local cred = helpers.credential("managed_identity", opts_with{ env = { IDENTITY_ENDPOINT = emu:url("/msi/token"),
        IDENTITY_HEADER = "wrong-identity-header-Xk2" } })
      local tok, msg, info = cred:get_token()
      assert.is_nil(tok)
      assert.are.equal("auth", info.kind)
      assert.are.equal(401, info.status)
      assert.not_matches("wrong%-identity%-header%-Xk2", visible(msg, info, tostring(cred)))
      assert.not_matches("wrong-identity-header-Xk2", helpers.read_file(emu.log_path) or "", 1, true)
    end)

    it("a refused workload identity assertion is kind auth; the file is re-read when it changes", function()
      local file = assertion_file("not-the-emulator-assertion")
      local cred = helpers.credential("workload_identity", opts_with{ tenant_id = "tenant-1", client_id = unique("wi"),
        token_file = file, authority_host = emu.endpoint })
      local tok, msg, info = cred:get_token()
      assert.is_nil(tok)
      assert.are.equal("auth", info.kind)
      assert.not_matches("not%-the%-emulator%-assertion", visible(msg, info, tostring(cred)))
      write(file, "emulator-assertion-rotated\n")
      assert.is_string((cred:get_token()))
    end)

    it("a token endpoint answering 503 is retried (same rule as calls)", function()
      for _, name in ipairs{ "managed_identity", "app_service", "client_secret", "workload_identity", "default" } do
        local client_id = unique(name, "-fault-503x2")
        local cred = kinds[name](client_id)
        local tok, msg = cred:get_token()
        assert.is_string(tok, msg)
        local st = {}
        for _, r in ipairs(emu:token_requests{ client_id = client_id }) do st[#st + 1] = r.status end
        assert.are.same({ 503, 503, 200 }, st, name)
      end
    end)

    it("default: prefers the environment's client secret, then workload identity", function()
      local cid = unique("env")
      local c = helpers.credential("default", opts_with{ az_command = "/nonexistent/az",
        env = helpers.identity_env(emu, { AZURE_TENANT_ID = "tenant-1", AZURE_CLIENT_ID = cid,
          AZURE_CLIENT_SECRET = SECRET, AZURE_FEDERATED_TOKEN_FILE = assertion_file() }) })
      assert.is_string((c:get_token()))
      local r = emu:token_requests{ client_id = cid }
      assert.are.equal(1, #r)
      assert.are.equal("client_secret", r[1].identity.grant)
      local wid = unique("wl")
      c = helpers.credential("default", opts_with{ az_command = "/nonexistent/az",
        env = helpers.identity_env(emu, { AZURE_TENANT_ID = "tenant-1", AZURE_CLIENT_ID = wid,
          AZURE_FEDERATED_TOKEN_FILE = assertion_file() }) })
      assert.is_string((c:get_token()))
      r = emu:token_requests{ client_id = wid }
      assert.are.equal(1, #r)
      assert.are.equal("client_assertion", r[1].identity.grant)
    end)

    it("default: no IMDS answering -> falls through to the Azure CLI", function()
      local port = require("socket").bind("127.0.0.1", 0)
      local _, p = port:getsockname()
      port:close()
      local az, fake = helpers.fake_az{ token = emu.token }
      fakes[#fakes + 1] = fake
      local c = helpers.credential("default", { az_command = az, imds_endpoint = "http://127.0.0.1:" .. p })
      local client = acscall.new{ endpoint = emu.endpoint, credential = c }
      local call, msg = client:get_call(SEED)
      assert.is_table(call, msg)
      assert.are.equal(1, #fake.calls())
      assert.are.equal("account get-access-token --output json --resource https://communication.azure.com/",
        fake.calls()[1])
      client:close()
    end)

    it("azure_cli: a not-logged-in az is kind auth and says az login; older az's expiresOn is read", function()
      local az, fake = helpers.fake_az{ exit = 1, stderr = "ERROR: Please run 'az login' to setup account." }
      fakes[#fakes + 1] = fake
      local tok, msg, info = helpers.credential("azure_cli", { command = az }):get_token()
      assert.is_nil(tok)
      assert.are.equal("auth", info.kind)
      assert.matches("az login", msg)
      local az2, fake2 = helpers.fake_az{ token = "legacy-token", ttl = 1000, legacy = true }
      fakes[#fakes + 1] = fake2
      local t2, exp = helpers.credential("azure_cli", { command = az2 }):get_token()
      assert.are.equal("legacy-token", t2)
      assert.is_true(math.abs(exp - (os.time() + 1000)) <= 2, tostring(exp))
    end)
  end)
end)
