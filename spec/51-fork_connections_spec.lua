-- spec/51-fork_connections_spec.lua: a fork inside a call (a token provider or a credential
-- that forks while get_call / get_calls runs) never leaves parent and child on one connection.
-- Seen from the server: the emulator logs each request's connection number (nginx's
-- $connection) and the fingerprint of its bearer token; no connection may carry both the
-- parent's token and the child's.
local helpers = require "spec.helpers"

local CHILD_TOKEN = "child-token-refused-0123456789"

describe("a fork inside a call, seen from the server", function()
  local emu
  lazy_setup(function() emu = helpers.start_emulator() end)
  lazy_teardown(function() if emu then emu:stop() end end)

  -- runs body in a fresh interpreter (FORK = the line that forks), then returns the
  -- connections each token used and how many calls each process made
  local function run(body)
    emu:clear_log()
    local out = helpers.run_lua(([[
local acscall = require "acscall"
local ts = require "acscall_testsupport"
local SEED, ENDPOINT, TOKEN, CHILD = %q, %q, %q, %q
local parent = ts.getpid()
local function token() return ts.getpid() == parent and TOKEN or CHILD end
]]):format("18dea47f-b081-4107-9a5c-4300819d2c6c", emu.endpoint, emu.token, CHILD_TOKEN)
      .. body .. "\nprint('SCRIPT OK')\n", "timeout " .. 60 * helpers.slow)
    assert.matches("SCRIPT OK", out)
    local parent_fp, child_fp = helpers.fingerprint(emu.token), helpers.fingerprint(CHILD_TOKEN)
    local by = { [parent_fp] = {}, [child_fp] = {} }
    local n = { parent = 0, child = 0 }
    for _, e in ipairs(emu:calls()) do
      local set = by[e.token_fp]
      if set then
        set[e.connection] = true
        local who = e.token_fp == parent_fp and "parent" or "child"
        n[who] = n[who] + 1
      end
    end
    local shared = {}
    for conn in pairs(by[parent_fp]) do
      if by[child_fp][conn] then shared[#shared + 1] = conn end
    end
    return shared, n, out
  end

  it("get_call: a provider forking in the call after one that kept a connection alive", function()
    local shared, n, out = run([[
local fork_now, pid = false, nil
local c = acscall.new{endpoint = ENDPOINT, retries = false,
  token_provider = function()
    if fork_now then fork_now = false; pid = ts.fork() end
    return token()
  end}
for _ = 1, 4 do
  assert(c:get_call(SEED)) -- the connection kept alive
  fork_now = true
  c:get_call(SEED)
  if pid == 0 then ts.exit(0) end
  ts.wait(pid)
end
c:close()
]])
    assert.are.equal(8, n.parent, out)
    assert.are.equal(4, n.child, out)
    assert.are.same({}, shared, "connections carrying both processes' requests")
  end)

  it("get_calls: a provider forking before the batch, four connections kept alive", function()
    local shared, n, out = run([[
local fork_now, pid = false, nil
local c = acscall.new{endpoint = ENDPOINT, retries = false,
  token_provider = function()
    if fork_now then fork_now = false; pid = ts.fork() end
    return token()
  end}
local ids = {}
for i = 1, 8 do ids[i] = SEED end
c:get_calls(ids, {concurrency = 4}) -- 4 connections kept alive
fork_now = true
c:get_calls(ids, {concurrency = 4})
if pid == 0 then ts.exit(0) end
ts.wait(pid)
c:close()
]])
    assert.are.equal(16, n.parent, out)
    assert.are.equal(8, n.child, out)
    assert.are.same({}, shared, "connections carrying both processes' requests")
  end)

  it("get_calls: a credential forking mid-batch, transfers in flight", function()
    local shared, n, out = run([[
local asked, pid = 0, nil
local cred = {get_token = function()
  asked = asked + 1
  if asked == 2 then pid = ts.fork() end
  return token(), os.time() + 3600
end}
local c = acscall.new{endpoint = ENDPOINT, credential = cred, retries = false}
local ids = {}
for i = 1, 8 do ids[i] = SEED end
c:get_calls(ids, {concurrency = 4})
c:get_calls(ids, {concurrency = 4})
if pid == 0 then ts.exit(0) end
ts.wait(pid)
c:close()
]])
    assert.is_true(n.parent > 0 and n.child > 0, out)
    assert.are.same({}, shared, "connections carrying both processes' requests")
  end)
end)
