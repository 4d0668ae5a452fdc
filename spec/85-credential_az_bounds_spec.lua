-- spec/85-credential_az_bounds_spec.lua: the azure_cli credential's timeout bounds every wait
-- for its az, also an az that closes its stdout and stderr and then sleeps (the pipes end at
-- once; the child is still running): get_token ends at the timeout (kind local, info.timeout),
-- the child killed and reaped.
local helpers = require "spec.helpers"

describe("azure_cli's timeout", function()
  it("ends get_token at the timeout for an az that closed its pipes and sleeps", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(helpers.run("mkdir -p " .. helpers.shell_quote(dir)))
    finally(function() helpers.remove_dir(dir) end)
    local az = dir .. "/az"
    local f = assert(io.open(az, "w"))
    f:write("#!/bin/sh\nexec >&- 2>&-\nexec sleep 6\n")
    f:close()
    assert(helpers.run("chmod +x " .. helpers.shell_quote(az)))
    local cred = helpers.credential("azure_cli", { command = az, timeout = 1 })
    local t0 = helpers.now()
    local tok, msg, info = cred:get_token()
    local took = helpers.now() - t0
    assert.is_nil(tok)
    assert.is_true(took < 1 + helpers.slow, ("took %.2f s"):format(took))
    assert.are.equal("local", info.kind, msg)
    assert.is_true(info.timeout, msg)
    -- the kind once: core.spawn's reason under the credential's name
    assert.matches("^local: azure_cli: [^:]*az timed out", msg)
    -- reaped: no child of ours is left, zombie or not
    local out = helpers.run("ps -o pid=,stat=,args= --ppid " .. helpers.shell_quote(
      require("acscall_testsupport").getpid()))
    assert.is_nil(out:find("sleep 6", 1, true), out)
  end)
end)
