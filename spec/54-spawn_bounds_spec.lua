-- core.spawn (the Azure CLI credential's child): one deadline bounds every
-- wait, the pipes' and the child's exit alike, and the child holds only its
-- standard descriptors (its own pipes), nothing of this process's.
local core = require "acscall.core"
local acscall = require "acscall"
local helpers = require "spec.helpers"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"

describe("core.spawn's bounds", function()
  it("kills and reaps a child at its timeout even after it closed stdout and stderr", function()
    local t0 = helpers.now()
    -- an `az` that closes its pipes, then sleeps
    local ok, err, info = core.spawn{argv = {"sh", "-c", "exec >&- 2>&-; sleep 6"}, timeout = 0.3}
    local took = helpers.now() - t0
    assert.is_nil(ok)
    assert.matches("timed out", err)
    assert.are.equal("local", info.kind)
    assert.is_true(info.timeout)
    assert.is_true(took < 2 * helpers.slow, "took " .. took)
    -- reaped: no child of ours is left, zombie or not
    local out = helpers.run("ps -o pid=,stat=,args= --ppid " .. helpers.shell_quote(
      require("acscall_testsupport").getpid()))
    assert.is_nil(out:find("sleep 6", 1, true), out)
  end)

  it("a child that closed its pipes and exits in time gives its exit code", function()
    local code, out = core.spawn{argv = {"sh", "-c", "echo hi; exec >&- 2>&-; sleep 0.1; exit 4"},
      timeout = 5}
    assert.are.equal(4, code)
    assert.are.equal("hi\n", out)
  end)

  it("the child holds only 0, 1 and 2, none of this process's descriptors", function()
    -- this process holds more: a client's kept-alive connection (libcurl
    -- sockets), an open file
    local emu = helpers.start_emulator()
    local c = acscall.new{connection_string = emu.connection_string}
    assert(c:get_call(SEED))
    local f = assert(io.open(os.tmpname(), "w"))
    local code, out = core.spawn{argv = {"sh", "-c", "ls /proc/$$/fd"}}
    assert.are.equal(0, code)
    local fds = {}
    for fd in out:gmatch("%d+") do fds[#fds + 1] = tonumber(fd) end
    table.sort(fds)
    -- sh's own: 0, 1, 2, and the one ls is reading through (none when
    -- /proc/$$ is listed by another process: ls's own is not in sh's list)
    assert.are.same({0, 1, 2}, fds)
    f:close()
    c:close()
    emu:stop()
  end)
end)
