-- OpenResty with an Entra ID credential (examples/openresty with ACSCALL_AUTH=managed-identity)
-- in real nginx against the emulator's IMDS endpoint: the event-loop path fetches the token with
-- a subrequest (acscall.resty.capture_transport), never blocking the worker, once per worker
-- (concurrent requests wait for that one fetch), refreshes it when it runs out, and the thread
-- path builds its own per pool VM. Needs build/luajit/acscall/core.so; pending without it.
local helpers = require "spec.helpers"
local ngxh = require "spec.helpers_ngx"
local cjson = require "cjson.safe"

local CALL = "18dea47f-b081-4107-9a5c-4300819d2c6c"

describe("OpenResty with managed identity (event loop)", function()
  it("runs under the interpreter the suite was started for", function()
    assert.are.equal(os.getenv("ACSCALL_EXPECT_LUA") or "Lua 5.4", _VERSION)
  end)
  ngxh.require_luajit_core()

  local emu
  local started, EX = {}, {}
  -- one example per configuration, all started at once in setup
  local function config(client_id, extra, args)
    local env = {
      ACSCALL_AUTH = "managed-identity",
      AZURE_POD_IDENTITY_AUTHORITY_HOST = emu.endpoint:gsub("/$", ""),
      AZURE_CLIENT_ID = client_id,
      ACSCALL_LOOPBACK_ONLY = "1",
    }
    for k, v in pairs(extra or {}) do env[k] = v end
    return { endpoint = emu.endpoint, env = env, args = args or { "--base-delay", "0.05" } }
  end
  lazy_setup(function()
    emu = helpers.start_emulator()
    local names, list = {}, {}
    for name, c in pairs{
      -- its token takes 300 ms (slow<MS>ms): long enough to see the worker answer meanwhile
      one = config("resty-mi-1-slow300ms"),
      ttl1 = config("resty-mi-ttl1"),
      f503 = config("resty-mi-fault-503x1"),
      thread = config("resty-mi-thread"),
      -- the IMDS retry classes (exponential from 0.8 s) would retry a refused port for ~10 s:
      -- a 1 s deadline ends them after the first waits
      down = config("resty-mi-down", { AZURE_POD_IDENTITY_AUTHORITY_HOST = "http://127.0.0.1:" .. ngxh.closed_port() },
        { "--base-delay", "0.05", "--deadline", "1" }),
      slow = config("resty-mi-slow5000ms", nil, { "--timeout", "0.25", "--deadline", "0.5", "--retries", "0" }),
      crlf = config("resty-app-crlf", { AZURE_POD_IDENTITY_AUTHORITY_HOST = "",
        IDENTITY_ENDPOINT = emu.identity_endpoint, IDENTITY_HEADER = emu.identity_header .. "\r\nX-Injected: yes" }),
    } do
      names[#names + 1], list[#list + 1] = name, c
    end
    started = ngxh.start_examples(list)
    for i, name in ipairs(names) do EX[name] = started[i] end
  end)
  lazy_teardown(function()
    ngxh.stop_examples(started)
    if emu then emu:stop() end
  end)

  it("fetches one token for 20 concurrent requests, on the event loop, the worker answering meanwhile", function()
    local ex = EX.one
    emu:clear_log()
    local paths = {}
    for i = 1, 20 do paths[i] = "/calls/" .. CALL .. "?n=" .. i end
    for i = 1, 3 do paths[#paths + 1] = "/health?probe=" .. i end
    local res = ngxh.parallel_get(ex.port, paths, 30)
    for i = 1, 20 do
      assert.are.equal(200, res[i].status, tostring(res[i].raw) .. ex:error_log())
      assert.are.equal(CALL, assert(cjson.decode(res[i].body)).callConnectionId)
    end
    for i = 21, 23 do
      assert.are.equal(200, res[i].status)
      -- the token (0.3 s) is in flight; the worker is not blocked
      assert.is_true(res[i].t < 0.25 * helpers.slow, string.format("/health took %.2f s", res[i].t))
    end
    local tokens = emu:token_requests{ endpoint = "imds", client_id = "resty-mi-1-slow300ms" }
    assert.are.equal(1, #tokens, "one token request for the worker")
    -- sent by nginx's proxy (a subrequest), not libcurl: no User-Agent of the core's
    assert.is_nil(tokens[1].headers["user-agent"])
    assert.are.equal("true", tokens[1].headers["metadata"])
    assert.not_matches("stack traceback", ex:error_log())
  end)

  it("refreshes a token living 1 s after its refresh point (half its life), and not before", function()
    local ex = EX.ttl1
    local function get()
      local r = ngxh.parallel_get(ex.port, { "/calls/" .. CALL }, 30)[1]
      assert.are.equal(200, r.status, tostring(r.raw) .. ex:error_log())
    end
    get()
    assert.are.equal(1, #emu:token_requests{ client_id = "resty-mi-ttl1" })
    -- the first token (issued at the first get, living 1 s) is past its refresh point (0.5 s
    -- later): the credential fetches a new one (it would too once it expired, 1 s later)
    helpers.sleep(0.55)
    get()
    assert.are.equal(2, #emu:token_requests{ client_id = "resty-mi-ttl1" })
  end)

  it("retries a token endpoint answering 503, then serves the call", function()
    local ex = EX.f503
    local r = ngxh.parallel_get(ex.port, { "/calls/" .. CALL }, 30)[1]
    assert.are.equal(200, r.status, tostring(r.raw) .. ex:error_log())
    local st = {}
    for _, e in ipairs(emu:token_requests{ client_id = "resty-mi-fault-503x1" }) do st[#st + 1] = e.status end
    assert.are.same({ 503, 200 }, st)
  end)

  it("the thread path builds its own credential per pool VM and serves the call", function()
    local ex = EX.thread
    local r = ngxh.parallel_get(ex.port, { "/thread/calls/" .. CALL }, 30)[1]
    assert.are.equal(200, r.status, tostring(r.raw) .. ex:error_log())
    local tokens = emu:token_requests{ client_id = "resty-mi-thread" }
    assert.are.equal(1, #tokens)
  end)

  it("no token endpoint answering: 500 JSON of kind auth naming the endpoint", function()
    local ex = EX.down
    local r = ngxh.parallel_get(ex.port, { "/calls/" .. CALL }, 30)[1]
    assert.are.equal(500, r.status, tostring(r.raw))
    local err = assert(cjson.decode(r.body)).error
    assert.are.equal("auth", err.kind)
    assert.matches("^auth: credential: managed_identity: no answer from", err.message)
  end)

  it("a token endpoint slower than the attempt timeout: the fetch ends at the timeout (capture_transport's)", function()
    local ex = EX.slow
    local t0 = helpers.now()
    local r = ngxh.parallel_get(ex.port, { "/calls/" .. CALL }, 30)[1]
    local took = helpers.now() - t0
    assert.are.equal(500, r.status, tostring(r.raw))
    local err = assert(cjson.decode(r.body)).error
    assert.are.equal("auth", err.kind)
    -- each attempt ends at the ladder step for 0.25 s, not a fixed 30 s; the credential's
    -- own retry classes may add attempts, the deadline (0.5 s) ends them all
    assert.is_true(took >= 0.2 and took < 0.5 * helpers.slow + 0.5, string.format("took %.2f s", took))
  end)

  it("an IDENTITY_HEADER holding CR LF never becomes a second header at the token endpoint", function()
    local ex = EX.crlf
    emu:clear_log()
    local r = ngxh.parallel_get(ex.port, { "/calls/" .. CALL }, 30)[1]
    assert.are.equal(500, r.status, tostring(r.raw))
    assert.are.equal("auth", assert(cjson.decode(r.body)).error.kind)
    for _, e in ipairs(emu:log()) do
      assert.is_nil(e.headers and e.headers["x-injected"], "an injected header reached the emulator")
    end
  end)
end)
