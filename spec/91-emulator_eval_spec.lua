-- The README's synopsis right after `eval "$(emulator/acs-emulator start)"`:
-- the emulator prints `export` lines, so a program the shell then starts
-- sees ACS_CONNECTION_STRING (it used to fail with "missing 'endpoint'").
local helpers = require "spec.helpers"

local q = helpers.shell_quote

describe("eval \"$(acs-emulator start)\"", function()
  it("exports the variables to the programs the shell runs: the synopsis fetches the sample call 18dea47f-...", function()
    local lua = helpers.child_lua(rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+")))
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
local acscall = require "acscall"
local client = acscall.new{ connection_string = os.getenv("ACS_CONNECTION_STRING") }
local call = assert(client:get_call("18dea47f-b081-4107-9a5c-4300819d2c6c"))
print(call.callConnectionState, os.getenv("ACS_ENDPOINT") ~= nil, os.getenv("ACS_EMULATOR_DIR") ~= nil)
client:close()
]])
    f:close()
    local emu = q(helpers.emulator_cmd)
    local out, ok = helpers.run("sh -c " .. q(
      "eval \"$(" .. emu .. " start)\" || exit 1; "
      .. lua .. " " .. q(script) .. " 2>&1; rc=$?; "
      .. emu .. " stop --dir \"$ACS_EMULATOR_DIR\" >/dev/null; exit $rc"))
    os.remove(script)
    assert.is_true(ok, out)
    assert.equal("connected\ttrue\ttrue\n", out)
  end)
end)
