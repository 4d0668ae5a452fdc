-- docs/openresty.md's "A first nginx.conf" runs as written: the ```nginx block
-- after `<!-- spec: nginx-minimal -->` is taken from the page, its paths
-- pointed from a LuaRocks tree (/usr/local) at this checkout, its upstream at
-- the emulator and its listen at a free loopback port, nothing else changed;
-- Debian's nginx starts it and it answers a call (200), an unknown id (404
-- JSON) and, with the emulator stopped, an outage (502 JSON).
-- `make test-rocks` runs the same block from an installed tree.
local helpers = require "spec.helpers"
local ngxh = require "spec.helpers_ngx"
local cjson = require "cjson.safe"

local CALL = "18dea47f-b081-4107-9a5c-4300819d2c6c"

describe("docs/openresty.md: the first nginx.conf (nginx-minimal)", function()
  ngxh.require_luajit_core()

  local emu, nginx
  lazy_setup(function()
    emu = helpers.start_emulator()
    nginx = ngxh.start_doc_nginx("nginx-minimal", emu)
  end)
  lazy_teardown(function()
    if nginx then nginx:stop() end
    if emu then emu:stop() end
  end)

  it("answers a call with 200 and its JSON", function()
    local r = ngxh.parallel_get(nginx.port, { "/calls/" .. CALL })[1]
    assert.are.equal(200, r.status, tostring(r.raw) .. nginx:error_log())
    local call = assert(cjson.decode(r.body))
    assert.are.equal(CALL, call.callConnectionId)
    assert.are.equal("connected", call.callConnectionState)
  end)

  it("answers an unknown id with a 404 JSON error", function()
    local r = ngxh.parallel_get(nginx.port, { "/calls/no-such-call" })[1]
    assert.are.equal(404, r.status, tostring(r.raw))
    local err = assert(cjson.decode(r.body)).error
    assert.are.equal("http", err.kind)
    assert.are.equal(404, err.status)
  end)

  -- the block's client keeps acscall's default retries (3, backoff from 0.8 s):
  -- the outage answers after ~5 s of real waits (the slow set)
  it("answers a 502 JSON error naming the cause when the service is down #slow", function()
    emu:stop()
    local r = ngxh.parallel_get(nginx.port, { "/calls/" .. CALL }, 30 * helpers.slow)[1]
    assert.are.equal(502, r.status, tostring(r.raw))
    local err = assert(cjson.decode(r.body)).error
    assert.are.equal("transport", err.kind)
    assert.matches("no connection to the service", err.message)
  end)
end)
