-- A credential's token is refused before anything is sent when its
-- expires_on is past, not a finite number, or absurdly far ahead
-- (core.LIMITS.token_lifetime_max): kind "auth", for get_call and for each
-- id of get_calls. A token without expires_on is taken as it is.
local acscall = require "acscall"
local core = require "acscall.core"
local helpers = require "spec.helpers"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"

describe("a credential's expires_on", function()
  local emu
  lazy_setup(function() emu = helpers.start_emulator() end)
  lazy_teardown(function() if emu then emu:stop() end end)

  local function client(expires_on)
    return acscall.new{endpoint = emu.endpoint, retries = false,
      credential = {get_token = function() return emu.token, expires_on() end}}
  end

  local cases = {
    {"past (expires_in: -5)", function() return os.time() - 5 end, "already expired"},
    {"an hour ago", function() return os.time() - 3600 end, "already expired"},
    {"inf (1e400)", function() return 1e400 end, "not a finite number"},
    {"-inf", function() return -1e400 end, "not a finite number"},
    {"NaN", function() return 0 / 0 end, "not a finite number"},
    {"absurdly far ahead", function() return os.time() + core.LIMITS.token_lifetime_max + 60 end, "absurdly"},
    {"not a number", function() return "soon" end, "not a number"},
  }
  for _, case in ipairs(cases) do
    it("refuses a token whose expires_on is " .. case[1] .. " (kind auth, nothing sent)", function()
      local c = client(case[2])
      emu:clear_log()
      local call, err, info = c:get_call(SEED)
      assert.is_nil(call)
      assert.matches("^auth: credential: ", err)
      assert.matches(case[3], err, 1, true)
      assert.are.equal("auth", info.kind)
      local r = c:get_calls({SEED, "minimal"})
      for i = 1, 2 do
        assert.is_nil(r[i].call)
        assert.are.equal("auth", r[i].info.kind)
        assert.matches(case[3], r[i].err, 1, true)
      end
      assert.are.equal(0, #emu:log())
      c:close()
    end)
  end

  it("asks once more (force_refresh) when the token given has expired: a stale cache recovers", function()
    local asked, forced = 0, 0
    local c = acscall.new{endpoint = emu.endpoint, retries = false, credential = {get_token = function(_, o)
      asked = asked + 1
      if o and o.force_refresh then
        forced = forced + 1
        return emu.token, os.time() + 3600
      end
      return "a-stale-cached-token-0123456789", os.time() - 5
    end}}
    emu:clear_log()
    assert(c:get_call(SEED))
    assert.are.same({2, 1}, {asked, forced})
    assert.are.equal(1, #emu:log()) -- the stale token was never sent
    c:close()
  end)

  it("takes a token that expires later, or one without expires_on", function()
    for _, e in ipairs{function() return os.time() + 3600 end, function() return nil end,
                       function() return tostring(os.time() + 3600) end} do
      local c = client(e)
      assert(c:get_call(SEED))
      c:close()
    end
  end)
end)
