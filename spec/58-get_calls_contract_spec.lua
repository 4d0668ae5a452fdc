-- get_calls keeps the failure contract: a failure of this process (out of
-- memory, a connection cache that cannot be reset after a fork) is a
-- per-id `nil, message, info` with kind "local", never a raise; only a
-- programmer mistake raises. libcurl's constructors are made to answer NULL
-- (as they do when memory runs out) by an LD_PRELOAD shim
-- (spec/support/failcurl.c) in a child interpreter.
local helpers = require "spec.helpers"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"

describe("get_calls' failure contract", function()
  local emu, dir, shim
  lazy_setup(function()
    emu = helpers.start_emulator()
    dir = os.tmpname()
    os.remove(dir)
    shim = dir .. "/failcurl.so"
    local _, ok = helpers.run("mkdir -p " .. helpers.shell_quote(dir) .. " && cc -shared -fPIC -o "
      .. helpers.shell_quote(shim) .. " " .. helpers.shell_quote(helpers.repo_root() .. "/spec/support/failcurl.c")
      .. " -ldl 2>&1")
    assert(ok, "cannot build the shim")
  end)
  lazy_teardown(function()
    if emu then emu:stop() end
    helpers.remove_dir(dir)
  end)

  -- run Lua source in a child interpreter with the shim preloaded (after
  -- the ASan runtime under make test-asan) and env set
  local function run(env, source)
    local lua = rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
local acscall = require "acscall"
local ts = require "acscall_testsupport"
local SEED, CS = %q, %q
]]):format(SEED, emu.connection_string), source, "\nprint('SCRIPT OK')\n")
    f:close()
    local asan = os.getenv("ACSCALL_ASAN_PRELOAD")
    local wrap = os.getenv("ACSCALL_CHILD_WRAPPER")
    local out = helpers.run("env LD_PRELOAD=" .. helpers.shell_quote((asan and asan .. " " or "") .. shim)
      .. " " .. env .. " " .. (wrap and (wrap .. " ") or "") .. lua .. " " .. helpers.shell_quote(script) .. " 2>&1")
    os.remove(script)
    return out
  end

  it("out of memory (no multi handle): every id gets nil, message, info{kind = local}", function()
    local out = run("ACS_FAIL_MULTI_INIT=1", [[
local c = acscall.new{connection_string = CS}
assert(c:get_call(SEED)) -- get_call needs no multi handle
local ok, r = pcall(c.get_calls, c, {SEED, "minimal"})
assert(ok, "get_calls raised: " .. tostring(r))
for i = 1, 2 do
  assert(r[i].call == nil and r[i].info.kind == "local", r[i].err)
  print("result " .. i .. ": " .. r[i].err)
end
assert(r[1].id == SEED and r[2].id == "minimal")
c:close()
]])
    assert.matches("SCRIPT OK", out)
    assert.matches("result 1: local: libcurl: cannot create a multi handle", out, 1, true)
  end)

  it("a fork whose connection cache cannot be reset: per-id kind local, in get_call too", function()
    local out = run("ACS_FAIL_SHARE_AFTER_FORK=1", [[
local c = acscall.new{connection_string = CS}
assert(c:get_call(SEED))
local function say(text) io.stdout:write(text, "\n"); io.stdout:flush() end
local pid = ts.fork()
if pid == 0 then
  local ok, r = pcall(c.get_calls, c, {SEED, "minimal"})
  if not ok then say("child: get_calls raised: " .. tostring(r)); ts.exit(1) end
  for i = 1, 2 do
    if r[i].call or r[i].info.kind ~= "local" then
      say("child: result " .. i .. " " .. tostring(r[i].err))
      ts.exit(1)
    end
  end
  local call, err, info = c:get_call(SEED)
  if call or info.kind ~= "local" then say("child: get_call " .. tostring(err)); ts.exit(1) end
  say("child: " .. r[1].err)
  ts.exit(0)
end
assert(ts.wait(pid) == 0, "the child failed")
assert(c:get_calls({SEED})[1].call) -- the parent is untouched
c:close()
]])
    assert.matches("SCRIPT OK", out)
    assert.matches("child: local: libcurl: cannot create a share handle", out, 1, true)
  end)

  it("still raises for a programmer mistake", function()
    local out = run("", [[
local c = acscall.new{connection_string = CS}
assert(not pcall(c.get_calls, c, {SEED, 42}))
assert(not pcall(c.get_calls, c, "not a table"))
c:close()
]])
    assert.matches("SCRIPT OK", out)
  end)
end)
