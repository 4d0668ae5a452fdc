-- A fork inside a call: a token provider or a credential that forks while
-- get_call or get_calls is running (a worker pool started lazily, a
-- daemonising helper). The fork is checked after every Lua callback inside
-- a call, so the child never uses a connection the parent opened: each
-- process gets the answer to its own request. Parent and child send
-- different tokens (the child's is refused with 401), so an answer read
-- from the other's connection shows. Each scenario runs in its own
-- interpreter, as a user's script would (spec/support/testsupport.c forks).
local helpers = require "spec.helpers"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"

describe("a fork inside a call", function()
  local emu
  lazy_setup(function() emu = helpers.start_emulator() end)
  lazy_teardown(function() if emu then emu:stop() end end)

  local function run(body)
    -- each scenario reads the emulator's log for its own requests only (a retry
    -- re-sends its call's request id, so another scenario's retries would count
    -- as duplicates when the suite runs shuffled)
    emu:clear_log()
    local out = helpers.run_lua(([[
local acscall = require "acscall"
local ts = require "acscall_testsupport"
local SEED, ENDPOINT, TOKEN, LOG = %q, %q, %q, %q
local FAST = {max = 3, base_delay = 0.01, max_delay = 0.02}
-- the token of this process: the parent's is valid, a child's is refused
local parent = ts.getpid()
local function token()
  return ts.getpid() == parent and TOKEN or "child-token-refused-0123456789"
end
local function report(who, text)
  io.stdout:write(who, ": ", text, "\n")
  io.stdout:flush()
end
]]):format(SEED, emu.endpoint, emu.token, emu.log_path) .. body .. "\nprint('SCRIPT OK')\n", "timeout " .. 60 * helpers.slow)
    return out
  end

  it("get_call: a token provider that forks; parent and child each get their own answer", function()
    local out = run([[
local rounds, fork_now, pid = 6, false, nil
local c = acscall.new{endpoint = ENDPOINT, retries = FAST,
  token_provider = function()
    if fork_now then fork_now = false; pid = ts.fork() end
    return token()
  end}
local good = 0
for _ = 1, rounds do
  assert(c:get_call(SEED)) -- a kept-alive connection, then a fork in the next call
  fork_now = true
  local call, _, info = c:get_call(SEED)
  if pid == 0 then
    report("child", call and "200 (the parent's answer)" or ("status " .. tostring(info.status)))
    report("child", "request id " .. tostring(info and info.client_request_id))
    ts.exit(call == nil and info.status == 401 and 0 or 1)
  end
  local rc = ts.wait(pid)
  if call and call.callConnectionId == SEED and rc == 0 then good = good + 1 end
end
report("parent", ("%d of %d rounds right"):format(good, rounds))
-- every request the child sent carried a request id of its own
local log = assert(io.open(LOG)):read("*a")
local seen, dup = {}, 0
for crid in log:gmatch('"x%-ms%-client%-request%-id":"([%x%-]+)"') do
  if seen[crid] then dup = dup + 1 end
  seen[crid] = true
end
report("parent", ("duplicate request ids %d"):format(dup))
c:close()
]])
    assert.matches("SCRIPT OK", out)
    assert.matches("parent: 6 of 6 rounds right", out)
    assert.matches("parent: duplicate request ids 0", out)
    assert.is_nil(out:find("the parent's answer", 1, true), out)
  end)

  it("get_call: a credential that forks when asked to refresh after a 401", function()
    local out = run([[
local rounds, pid = 4, nil
local good = 0
for _ = 1, rounds do
  local stale = true
  local cred = {get_token = function(_, o)
    if o and o.force_refresh then stale = false; pid = ts.fork() end
    return stale and "stale-token-0123456789abcdef" or token(), os.time() + 3600
  end}
  local c = acscall.new{endpoint = ENDPOINT, credential = cred, retries = FAST}
  local call, _, info = c:get_call(SEED) -- 401, refresh (forks), again
  if pid == 0 then
    report("child", call and "200 (the parent's answer)" or ("status " .. tostring(info.status)))
    ts.exit(call == nil and info.status == 401 and 0 or 1)
  end
  local rc = ts.wait(pid)
  if call and call.callConnectionId == SEED and rc == 0 then good = good + 1 end
  c:close()
end
report("parent", ("%d of %d rounds right"):format(good, rounds))
]])
    assert.matches("SCRIPT OK", out)
    assert.matches("parent: 4 of 4 rounds right", out)
  end)

  it("get_calls: a provider that forks before the batch; no connection is shared", function()
    local out = run([[
local fork_now, pid = false, nil
local c = acscall.new{endpoint = ENDPOINT, retries = FAST,
  token_provider = function()
    if fork_now then fork_now = false; pid = ts.fork() end
    return token()
  end}
local ids = {}
for i = 1, 8 do ids[i] = SEED end
for _, r in ipairs(c:get_calls(ids, {concurrency = 4})) do assert(r.call, r.err) end -- 4 kept alive
fork_now = true
local results = c:get_calls(ids, {concurrency = 4})
local ok, refused, other = 0, 0, 0
for _, r in ipairs(results) do
  if r.call and r.call.callConnectionId == SEED then ok = ok + 1
  elseif r.info and r.info.status == 401 then refused = refused + 1
  else other = other + 1 end
end
if pid == 0 then
  report("child", ("ok=%d refused=%d other=%d"):format(ok, refused, other))
  ts.exit(0)
end
assert(ts.wait(pid) == 0)
report("parent", ("ok=%d refused=%d other=%d"):format(ok, refused, other))
c:close()
]])
    assert.matches("SCRIPT OK", out)
    assert.matches("parent: ok=8 refused=0 other=0", out)
    assert.matches("child: ok=0 refused=8 other=0", out)
  end)

  it("get_calls: a credential that forks mid-batch; each process keeps its own answers", function()
    local out = run([[
local asked, pid = 0, nil
local cred = {get_token = function()
  asked = asked + 1
  if asked == 6 then pid = ts.fork() end -- (the batch has transfers in flight)
  return token(), os.time() + 3600
end}
local c = acscall.new{endpoint = ENDPOINT, credential = cred, retries = FAST}
local ids = {}
for i = 1, 12 do ids[i] = SEED end
local results = c:get_calls(ids, {concurrency = 4})
local ok, refused, other = 0, 0, 0
for _, r in ipairs(results) do
  if r.call and r.call.callConnectionId == SEED then ok = ok + 1
  elseif r.info and r.info.status == 401 then refused = refused + 1
  else other = other + 1 end
end
if pid == 0 then
  -- answers stored before the fork are the child's too; every later one is its own 401
  report("child", ("ok+refused=%d other=%d refused>0=%s"):format(ok + refused, other, tostring(refused > 0)))
  ts.exit(0)
end
assert(ts.wait(pid) == 0)
report("parent", ("ok=%d other=%d"):format(ok, other))
c:close()
]])
    assert.matches("SCRIPT OK", out)
    assert.matches("parent: ok=12 other=0", out)
    assert.matches("child: ok%+refused=12 other=0 refused>0=true", out)
  end)
end)
