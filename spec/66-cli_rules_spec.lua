-- spec/66-cli_rules_spec.lua: the CLI (bin/acscall, run as a user runs it) on the core's
-- rules, not copies of them: the connection string is read by core.parse_connection_string,
-- the bounds of --retries and --concurrency are core.LIMITS', and what reaches stderr (the
-- service's message, what a failing az printed) goes through the core's redaction.
local helpers = require "spec.helpers"
local core = require "acscall.core"

local q = helpers.shell_quote
local BIN = helpers.repo_root() .. "/bin/acscall"
local CALL = "state-connected"

-- bin/acscall with only the variables given (env -i: nothing of the caller's environment
-- leaks in), stdin empty; -> stdout, stderr, exit code
local function acscall(env, args)
  local out, err = os.tmpname(), os.tmpname()
  local vars = { "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"), "ACSCALL_LOOPBACK_ONLY=1" }
  for _, name in ipairs{ "LUA_PATH", "LUA_CPATH", "LUA_PATH_5_4", "LUA_CPATH_5_4" } do
    if os.getenv(name) then vars[#vars + 1] = name .. "=" .. q(os.getenv(name)) end
  end
  for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. q(v) end
  local _, _, rc = helpers.run("env -i " .. table.concat(vars, " ") .. " " .. q(BIN) .. " " .. args
    .. " </dev/null >" .. q(out) .. " 2>" .. q(err))
  local o, e = helpers.read_file(out) or "", helpers.read_file(err) or ""
  os.remove(out)
  os.remove(err)
  return o, e, rc
end

describe("the CLI on the core's rules", function()
  local emu
  lazy_setup(function() emu = helpers.start_emulator() end)
  lazy_teardown(function() if emu then emu:stop() end end)

  it("reads the connection string with core.parse_connection_string (keys matched whole)", function()
    -- a key that only ends in "endpoint" is not the endpoint: the core ignores it; a pattern
    -- search for "endpoint=" took its value (an address off loopback: refused)
    local cs = "x-endpoint=https://wrong.invalid/;endpoint=" .. emu.endpoint .. ";accesskey=" .. emu.access_key
    assert.are.equal(emu.endpoint, assert(core.parse_connection_string(cs)).endpoint)
    local out, err, rc = acscall({ ACS_CONNECTION_STRING = cs, ACSCALL_AUTH = "managed-identity",
      AZURE_POD_IDENTITY_AUTHORITY_HOST = emu.imds_endpoint, AZURE_CLIENT_ID = "cli-rules" },
      "get --field callConnectionState " .. CALL)
    assert.are.equal(0, rc, err)
    assert.are.equal("connected\n", out)
    -- and what the core refuses, the CLI refuses with the core's reason, the key not shown
    local bad = "endpoint=" .. emu.endpoint .. ";endpoint=" .. emu.endpoint .. ";accesskey=" .. emu.access_key
    local _, why = core.parse_connection_string(bad)
    out, err, rc = acscall({ ACS_CONNECTION_STRING = bad }, "get " .. CALL)
    assert.are.equal(2, rc, err)
    assert.are.equal("", out)
    assert.truthy(err:find(why, 1, true), err)
    assert.falsy(err:find(emu.access_key, 1, true), err)
  end)

  it("bounds --retries and --concurrency by core.LIMITS", function()
    local env = { ACS_CONNECTION_STRING = emu.connection_string }
    for _, o in ipairs{ { "--retries", core.LIMITS.retries_max }, { "--concurrency", core.LIMITS.concurrency_max } } do
      local out, err, rc = acscall(env, "get " .. o[1] .. " " .. o[2] .. " --field callConnectionState " .. CALL)
      assert.are.equal(0, rc, o[1] .. ": " .. err)
      assert.are.equal("connected\n", out)
      out, err, rc = acscall(env, "get " .. o[1] .. " " .. (o[2] + 1) .. " " .. CALL)
      assert.are.equal(2, rc, o[1] .. ": " .. err)
      assert.are.equal("", out)
      assert.truthy(err:find(tostring(o[2]), 1, true), err)
    end
  end)

  it("redacts by the core's rule: the service's \"invalid bearer token\" stays readable", function()
    local wrong = "wr0ng-t0ken-s3cret-0123456789"
    local out, err, rc = acscall({ ACS_ENDPOINT = emu.endpoint, ACS_TOKEN = wrong }, "get " .. CALL)
    assert.are.equal(3, rc, err)
    assert.are.equal("", out)
    assert.truthy(err:find("invalid bearer token", 1, true), err)
    assert.falsy(err:find(wrong, 1, true), err)
  end)

  it("an az that printed an access token on stderr and exited 1: exit 3, the token not shown", function()
    local leaked = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJhY3MifQ.c2lnbmF0dXJlLXZhbHVl"
    local az, fake = helpers.fake_az{ exit = 1, stderr = 'ERROR: {"accessToken": "' .. leaked
      .. '", "note": "token ' .. leaked .. ' could not be saved"}' }
    finally(fake.remove)
    local out, err, rc = acscall({ ACS_ENDPOINT = emu.endpoint, ACSCALL_AZURE_CLI = az }, "get --auth cli " .. CALL)
    assert.are.equal(3, rc, err)
    assert.are.equal("", out)
    assert.matches("az", err)
    assert.falsy(err:find("c2lnbmF0dXJl", 1, true), err)
    assert.falsy(err:find("eyJhdWQi", 1, true), err)
  end)
end)
