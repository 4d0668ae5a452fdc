-- The module as a user first meets it: loads under the Lua we think, has a
-- version, touches no globals, exposes its enums and helpers.
describe("acscall module", function()
  it("runs under the interpreter the suite was started for", function()
    local want = os.getenv("ACSCALL_EXPECT_LUA") or "Lua 5.4"
    assert.are.equal(want, _VERSION)
  end)

  it("loads without touching globals", function()
    local before = {}
    for k in pairs(_G) do before[k] = true end
    package.loaded["acscall"], package.loaded["acscall.core"] = nil, nil
    local acscall = require "acscall"
    assert.is_table(acscall)
    for k in pairs(_G) do
      assert.is_true(before[k], "new global: " .. tostring(k))
    end
  end)

  -- What the credentials (core.fetcher: token requests; core.spawn: the Azure
  -- CLI) stand on. A core that stops building or registering either fails
  -- here, instead of the specs that use them quietly going pending.
  it("registers the core's fetcher and spawn", function()
    local core = require "acscall.core"
    assert.is_function(core.fetcher, "core.fetcher is not registered")
    assert.is_function(core.spawn, "core.spawn is not registered")
    local f = core.fetcher{}
    assert.is_function(f.fetch)
    f:close()
  end)

  it("has a version and the default api-version", function()
    local acscall = require "acscall"
    assert.matches("^%d+%.%d+%.%d+$", acscall._VERSION)
    assert.are.equal("2026-03-12", acscall.DEFAULT_API_VERSION)
  end)

  it("names every enum of the Get Call REST page (api-version 2026-03-12)", function()
    local acscall = require "acscall"
    for _, s in ipairs{"unknown", "connecting", "connected", "transferring",
        "transferAccepted", "disconnecting", "disconnected"} do
      assert.are.equal(s, acscall.CallConnectionState[s])
    end
    assert.are.equal("audio", acscall.MediaStreamingContentType.audio)
    for _, s in ipairs{"disabled", "inactive", "active"} do
      assert.are.equal(s, acscall.MediaStreamingSubscriptionState[s])
      assert.are.equal(s, acscall.TranscriptionSubscriptionState[s])
    end
    assert.are.equal("final", acscall.TranscriptionResultType.final)
    assert.are.equal("intermediate", acscall.TranscriptionResultType.intermediate)
    assert.is_nil(acscall.CallConnectionState.hungUp)
  end)

  it("knows which states are terminal", function()
    local acscall = require "acscall"
    assert.is_true(acscall.is_terminal("disconnected"))
    assert.is_false(acscall.is_terminal("connected"))
    assert.is_false(acscall.is_terminal("disconnecting"))
    assert.is_false(acscall.is_terminal("someFutureState"))
  end)

  it("describes identifiers in one line", function()
    local acscall = require "acscall"
    assert.are.equal("phone +14250123456",
      acscall.describe{kind = "phoneNumber", phoneNumber = {value = "+14250123456"}})
    assert.are.equal("acs user 8:acs:r_u",
      acscall.describe{kind = "communicationUser", communicationUser = {id = "8:acs:r_u"}})
    assert.are.equal("teams user u1 (gcch)",
      acscall.describe{kind = "microsoftTeamsUser", microsoftTeamsUser = {userId = "u1", cloud = "gcch"}})
    assert.are.equal("teams app a1",
      acscall.describe{kind = "microsoftTeamsApp", microsoftTeamsApp = {appId = "a1"}})
    assert.are.equal("someNewKind 99:x", acscall.describe{kind = "someNewKind", rawId = "99:x"})
    assert.has_error(function() acscall.describe("x") end)
  end)

  it("iterates targets in order", function()
    local acscall = require "acscall"
    local seen = {}
    for i, t in acscall.targets{targets = {{rawId = "a"}, {rawId = "b"}}} do
      seen[#seen + 1] = i .. "=" .. t.rawId
    end
    assert.are.same({"1=a", "2=b"}, seen)
    for _ in acscall.targets{} do error("no targets expected") end
  end)
end)
