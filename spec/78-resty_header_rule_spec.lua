-- spec/78-resty_header_rule_spec.lua: the header-value rule on the event-loop path, in real
-- nginx (examples/openresty, ACSCALL_AUTH=managed-identity) against the emulator: a token
-- endpoint that answers an access_token holding a C0 control byte or DEL never gets that
-- token into an Authorization header; the call fails with kind auth and nothing reaches the
-- service. Needs build/luajit/acscall/core.so (pending without it, as spec/70-77).
local helpers = require "spec.helpers"
local ngxh = require "spec.helpers_ngx"
local cjson = require "cjson.safe"

local CALL = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local BYTES = { "01", "0b", "1b", "7f" } -- the emulator puts the byte in the token (ctl<XX>)

describe("OpenResty event path: a token with a control byte", function()
  ngxh.require_luajit_core()

  local emu, started = nil, {}
  lazy_setup(function()
    emu = helpers.start_emulator()
    local list = {}
    for _, hex in ipairs(BYTES) do
      list[#list + 1] = { endpoint = emu.endpoint, args = { "--retries", "0" }, env = {
        ACSCALL_AUTH = "managed-identity", ACSCALL_LOOPBACK_ONLY = "1",
        AZURE_POD_IDENTITY_AUTHORITY_HOST = emu.imds_endpoint, AZURE_CLIENT_ID = "resty-rule-ctl" .. hex } }
    end
    started = ngxh.start_examples(list)
  end)
  lazy_teardown(function()
    ngxh.stop_examples(started)
    if emu then emu:stop() end
  end)

  it("from the token endpoint: 500 JSON of kind auth, the service never asked", function()
    for i, hex in ipairs(BYTES) do
      emu:clear_log()
      local ex = started[i]
      local r = ngxh.parallel_get(ex.port, { "/calls/" .. CALL }, 30)[1]
      assert.are.equal(500, r.status, hex .. ": " .. tostring(r.raw) .. ex:error_log())
      local err = assert(cjson.decode(r.body), r.body).error
      assert.are.equal("auth", err.kind, hex)
      assert.are.equal(1, #emu:token_requests{ client_id = "resty-rule-ctl" .. hex }, hex)
      assert.are.same({}, emu:calls(), hex .. ": a call request reached the service")
      assert.falsy(err.message:find("emu", 1, true), err.message) -- the token is never quoted
      assert.not_matches("stack traceback", ex:error_log())
    end
  end)
end)
