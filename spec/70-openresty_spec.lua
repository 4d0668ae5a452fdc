-- OpenResty: the example handler (examples/openresty) in real nginx, one worker.
-- /calls/{id} is the event-loop path (spec 72 tests it in depth);
-- /thread/calls/{id} runs the libcurl fetch in the "acscall" thread pool
-- (ngx.run_worker_thread), so 20 concurrent requests against an upstream with
-- 100 ms latency overlap (spec 73: its overload). Benchmarks live in bench/
-- (`make bench-openresty`). Needs build/luajit/acscall/core.so
-- (`make LUA_VERSION=luajit`); pending without it.
local helpers = require "spec.helpers"
local ngxh = require "spec.helpers_ngx"
local cjson = require "cjson.safe"

local CALL = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local N = 20

local function paths(prefix, n)
  local t = {}
  for i = 1, n do t[i] = prefix .. CALL .. "?n=" .. i end
  return t
end

local function call_requests(emu)
  return ngxh.log_for(emu, CALL)
end

local function distinct_connections(entries)
  local seen, n = {}, 0
  for _, e in ipairs(entries) do
    if not seen[e.connection] then seen[e.connection], n = true, n + 1 end
  end
  return n
end

describe("OpenResty example (nginx + lua-nginx-module, one worker)", function()
  ngxh.require_luajit_core()

  local emu, ex
  lazy_setup(function()
    emu = helpers.start_emulator{ latency = 100 }
    local ok, e = pcall(ngxh.start_example, { connection_string = emu.connection_string })
    if not ok then emu:stop() error(e) end
    ex = e
  end)
  lazy_teardown(function()
    if ex then ex:stop() end
    if emu then emu:stop() end
  end)

  it("serves GET /calls/{id} as JSON", function()
    local res = ngxh.parallel_get(ex.port, { "/calls/" .. CALL })
    assert.are.equal(200, res[1].status, ex:error_log())
    assert.matches("Content%-Type: application/json", res[1].raw)
    local call = assert(cjson.decode(res[1].body))
    assert.are.equal(CALL, call.callConnectionId)
    assert.are.equal("connected", call.callConnectionState)
    assert.are.equal("4:+14250123456", call.targets[2].rawId)
  end)

  it("answers errors as JSON with the upstream's status", function()
    local res = ngxh.parallel_get(ex.port, { "/calls/no-such-call", "/thread/calls/no-such-call", "/calls/" })
    for i = 1, 2 do
      assert.are.equal(404, res[i].status)
      local body = assert(cjson.decode(res[i].body))
      assert.are.equal("http", body.error.kind)
      assert.are.equal("8522", body.error.code)
      assert.matches("^HTTP 404", body.error.message)
    end
    assert.are.equal(404, res[3].status)
    assert.are.equal("request", assert(cjson.decode(res[3].body)).error.kind)
  end)

  it("runs 20 concurrent fetches in the thread pool without blocking the worker", function()
    ngxh.parallel_get(ex.port, paths("/thread/calls/", N)) -- warm: pool VMs load acscall, connect
    local res, took = ngxh.parallel_get(ex.port, paths("/thread/calls/", N))
    for i = 1, N do
      assert.are.equal(200, res[i].status, "request " .. i .. ": " .. tostring(res[i].err or res[i].raw))
      assert.are.equal(CALL, assert(cjson.decode(res[i].body)).callConnectionId)
    end
    -- one at a time: 20 x 100 ms = 2 s
    assert.is_true(took < 1.2 * helpers.slow, string.format("took %.2f s", took))
  end)

  for _, prefix in ipairs{ "/thread/calls/", "/calls/" } do
    it("reuses connections to the service (keep-alive): " .. prefix, function()
      emu:clear_log()
      local res = ngxh.parallel_get(ex.port, paths(prefix, N))
      local res2 = ngxh.parallel_get(ex.port, paths(prefix, N))
      for i = 1, N do
        assert.are.equal(200, res[i].status)
        assert.are.equal(200, res2[i].status)
      end
      local reqs = call_requests(emu)
      assert.are.equal(2 * N, #reqs)
      local conns = distinct_connections(reqs)
      local reused = 0
      for _, e in ipairs(reqs) do
        if (e.connection_requests or 1) > 1 then reused = reused + 1 end
      end
      assert.is_true(conns < #reqs, conns .. " connections for " .. #reqs .. " requests")
      assert.is_true(reused > 0)
    end)
  end
end)

describe("examples/openresty/run start/stop", function()
  ngxh.require_luajit_core()
  local q = helpers.shell_quote
  local RUN = q(ngxh.example_cmd)
  -- ACS_CA_FILE: one CA instead of the system bundle (spec/helpers_ngx.lua
  -- SMALL_CA: ~0.6 s less per start; the emulator it starts is plain HTTP)
  local CLEAN = "env -u ACS_CONNECTION_STRING -u ACS_ENDPOINT -u ACS_TOKEN -u ACS_ACCESS_KEY"
    .. " -u ACSCALL_EXAMPLE_DIR ACS_CA_FILE=" .. q(ngxh.SMALL_CA)
  local base
  before_each(function()
    base = os.tmpname()
    os.remove(base)
    assert(helpers.run("mkdir " .. q(base)))
  end)
  after_each(function()
    helpers.run("rm -rf " .. q(base))
  end)

  -- run a command with stderr in a file (a daemon started by it must not
  -- hold the pipe open); returns stdout .. stderr, ok, rc
  local function run(cmd)
    local errfile = os.tmpname()
    local out, ok, rc = helpers.run(cmd .. " 2>" .. q(errfile))
    local err = helpers.read_file(errfile) or ""
    os.remove(errfile)
    return out .. err, ok, rc
  end

  -- nginx processes whose prefix is under base (none may be left behind)
  local function nginx_under(dir)
    local out = helpers.run("ps -eo args | grep -F -- " .. q("-p " .. dir) .. " | grep -v grep || true")
    return out
  end

  it("refuses a non-empty --dir it did not make, and stop leaves it alone", function()
    assert(helpers.run("mkdir " .. q(base .. "/mine") .. " && echo precious >" .. q(base .. "/mine/notes.txt")))
    local out, ok, rc = run(CLEAN .. " ACS_CONNECTION_STRING=x " .. RUN .. " start --dir "
      .. q(base .. "/mine"))
    assert.is_false(ok, out)
    assert.equal(1, rc)
    assert.matches("not empty and was not made by", out)
    out, ok = run(RUN .. " stop --dir " .. q(base .. "/mine"))
    assert.is_false(ok, out)
    assert.equal("notes.txt\n", (helpers.run("ls -A " .. q(base .. "/mine"))))
    assert.equal("precious\n", helpers.read_file(base .. "/mine/notes.txt"))
  end)

  it("stop removes what start wrote: an empty --dir stays, one start made goes", function()
    assert(helpers.run("mkdir " .. q(base .. "/empty")))
    for _, d in ipairs{base .. "/empty", base .. "/new"} do
      local out, ok = run(CLEAN .. " TMPDIR=" .. q(base) .. " " .. RUN .. " start --dir " .. q(d))
      assert.is_true(ok, out)
      local env = helpers.parse_env(out)
      assert.equal(200, (helpers.http_get(env.ACSCALL_EXAMPLE_URL .. "minimal")))
      out, ok = run(RUN .. " stop --dir " .. q(d))
      assert.is_true(ok, out)
    end
    -- the emulator's temp dir (under TMPDIR) went too
    assert.equal("empty\n", (helpers.run("ls -A " .. q(base))))
    assert.equal("", (helpers.run("ls -A " .. q(base .. "/empty"))))
    assert.equal("", nginx_under(base))
  end)

  it("a failed start stops the emulator it started and removes its directories", function()
    local out, ok, rc = run(CLEAN .. " TMPDIR=" .. q(base) .. " NGINX=/bin/false " .. RUN .. " start")
    assert.is_false(ok, out)
    assert.equal(1, rc)
    assert.matches("nginx failed to start", out)
    assert.equal("", (helpers.run("ls -A " .. q(base))))
    assert.equal("", nginx_under(base))
  end)
end)
