-- `acscall watch ID... | -` against the emulator's fleet: many ids from
-- the arguments and stdin, one line per event, --json lines, the summary,
-- the exit-code table for many ids, -v attempt lines; never a secret.
local helpers = require "spec.helpers"
local cjson = require "cjson.safe"
local schedule = helpers.fleet_schedule

local lines = helpers.lines
-- count fleet ids with n % 3 == 0: the short schedule (4 states), to keep
-- these specs quick; the library's specs walk every schedule
local function fleet_ids(count, period, tag)
  local all, ids = helpers.fleet_ids(3 * count, period, tag), {}
  for i = 3, 3 * count, 3 do ids[#ids + 1] = all[i] end
  return ids
end

local SLOW = helpers.slow
local FAST = ("--interval %g --max-interval %g"):format(0.03 * SLOW, 0.06 * SLOW)
local PERIOD = math.floor(150 * SLOW) -- ms per state of the fleet calls

describe("acscall watch (many calls)", function()
  local emu, env
  local printed = {}

  setup(function()
    emu = helpers.start_emulator()
    env = {ACS_CONNECTION_STRING = emu.connection_string}
  end)

  teardown(function()
    if emu then emu:stop() end
  end)

  local function cli(e, args, opts)
    local out, err, rc = helpers.cli(e, args, opts)
    printed[#printed + 1] = out .. err
    return out, err, rc
  end

  it("follows every id (arguments and stdin) to its end: one line per state, a summary, exit 0", function()
    local ids = fleet_ids(12, PERIOD, "args")
    local stdin = helpers.temp_file(table.concat(ids, "\n", 7, 12) .. "\n\n")
    -- (the first id twice: watched once)
    local out, err, rc = cli(env, "watch " .. FAST .. " " .. table.concat(ids, " ", 1, 6) .. " - " .. ids[1],
      {stdin = stdin})
    os.remove(stdin)
    assert.equal(0, rc, err)
    local got = {}
    for _, l in ipairs(lines(out)) do
      local id, state = l:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ  (%S+)  (%S+)$")
      assert.truthy(id, l)
      got[id] = got[id] or {}
      table.insert(got[id], state)
    end
    for i, id in ipairs(ids) do assert.same(schedule(3 * i), got[id], id) end
    assert.matches("^acscall: 12 calls: 12 ended, 0 failed, 0 still watched; %d+ requests in [%d.]+ s\n$", err)
  end)

  it("--json: one object per event, the changes in order, then the summary", function()
    local ids = fleet_ids(6, PERIOD, "json")
    local out, err, rc = cli(env, "watch --json " .. FAST .. " " .. table.concat(ids, " "))
    assert.equal(0, rc, err)
    local l = lines(out)
    local got, ended = {}, {}
    for i = 1, #l - 1 do
      local ev = assert(cjson.decode(l[i]), l[i])
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", ev.time)
      if ev.event == "seen" or ev.event == "state" then
        got[ev.id] = got[ev.id] or {}
        local list = got[ev.id]
        assert.equal(list[#list], ev.previous) -- nil (absent) for "seen"
        list[#list + 1] = ev.state
        assert.equal(ev.state, ev.call.callConnectionState)
      else
        assert.equal("ended", ev.event)
        assert.equal("disconnected", ev.reason)
        assert.is_nil(ended[ev.id])
        ended[ev.id] = true
      end
    end
    for i, id in ipairs(ids) do
      assert.same(schedule(3 * i), got[id], id)
      assert.is_true(ended[id], id)
    end
    local summary = assert(cjson.decode(l[#l]))
    assert.equal("summary", summary.event)
    assert.equal(6, summary.calls)
    assert.equal(6, summary.ended)
    assert.equal(0, summary.watching)
    assert.equal("ended", summary.stopped)
    assert.equal("", err)
  end)

  it("exit 1: a call never seen answers 404; the others are still followed to their end", function()
    local ids = fleet_ids(2, PERIOD, "404")
    local out, err, rc = cli(env, "watch " .. FAST .. " no-such-call " .. table.concat(ids, " "))
    assert.equal(1, rc, err)
    assert.matches("  " .. ids[1]:gsub("%-", "%%-") .. "  disconnected\n", out)
    assert.matches("  " .. ids[2]:gsub("%-", "%%-") .. "  disconnected\n", out)
    assert.matches("^acscall: no%-such%-call: HTTP 404: Call not found%. %(code 8522%)\n"
      .. "acscall: 3 calls: 2 ended, 1 failed, 0 still watched;", err)
  end)

  it("--json failures carry the core's info (a kind of core.KINDS), never one of the CLI's own", function()
    local out, _, rc = cli(env, "watch --json " .. FAST .. " no-such-call")
    assert.equal(1, rc)
    local l = lines(out)
    local ev = assert(cjson.decode(l[1]))
    assert.equal("failed", ev.event)
    assert.is_true(ev.final)
    assert.matches("HTTP 404", ev.message)
    assert.is_true(require("acscall.core").KINDS[ev.info.kind], ev.info.kind)
    assert.equal(404, ev.info.status)
    assert.equal("summary", assert(cjson.decode(l[2])).event)
  end)

  it("exit 3 at once for a refused credential, with one line, however many ids", function()
    local ids = fleet_ids(20, 600000, "401")
    local out, err, rc = cli({ACS_ENDPOINT = emu.endpoint, ACS_TOKEN = "wr0ng-watch-t0ken"},
      "watch " .. FAST .. " " .. table.concat(ids, " "))
    assert.equal(3, rc, err)
    assert.equal("", out)
    local l = lines(err)
    assert.equal(2, #l, err)
    assert.matches("^acscall: fleet%-%d+%-600000%-401%-%S+: HTTP 401: ", l[1])
    assert.matches("^acscall: 20 calls: 0 ended, 1 failed, 19 still watched;", l[2])
  end)

  it("exit 3 at once when the identity refuses the secret (it used to poll for ever)", function()
    local out, err, rc = cli({ACS_ENDPOINT = emu.endpoint, AZURE_TENANT_ID = "t1", AZURE_CLIENT_ID = "watch-bad",
      AZURE_CLIENT_SECRET = "S3CRET-watch-wrong", AZURE_AUTHORITY_HOST = emu.endpoint},
      "watch --auth client-secret " .. FAST .. " state-connected state-connecting", {prefix = "timeout 20 "})
    assert.equal(3, rc, err)
    assert.equal("", out)
    local l = lines(err)
    assert.equal(2, #l, err)
    assert.matches("AADSTS7000215", l[1])
    assert.falsy(err:find("S3CRET", 1, true))
  end)

  it("usage: no id, an empty or too long id, a bad interval: exit 2 before any request", function()
    emu:clear_log()
    for _, args in ipairs{"watch", "watch ''", "watch " .. ("x"):rep(1025), "watch --interval 0 a",
                          "watch --concurrency 0 a", "watch --max-interval -1 a"} do
      local out, err, rc = cli(env, args)
      assert.equal(2, rc, args)
      assert.equal("", out, args)
      assert.matches("^acscall: [^\n]+\n$", err, args)
    end
    assert.equal(0, #emu:calls())
  end)

  it("-v: one line per attempt on stderr (status, duration, request id), never a secret", function()
    local id = fleet_ids(1, PERIOD, "verbose")[1]
    local out, err, rc = cli({ACS_ENDPOINT = emu.endpoint, ACS_TOKEN = emu.token},
      "watch -v " .. FAST .. " " .. id)
    assert.equal(0, rc, err)
    assert.matches("disconnected\n$", out)
    local attempts = 0
    for _, l in ipairs(lines(err)) do
      if l:find("^acscall: attempt ") then
        attempts = attempts + 1
        assert.matches("^acscall: attempt get_calls id=" .. id:gsub("%-", "%%-") .. " attempt=1 status=200 "
          .. "duration=%d+%.%d%d%ds .*request_id=%x+%-", l)
      end
    end
    assert.equal(#emu:calls{id = id}, attempts)
    assert.falsy(err:find(emu.token, 1, true))
  end)

  -- nothing any spec printed holds a secret
  after_each(function()
    local all = table.concat(printed, "\n")
    printed = {}
    for _, secret in ipairs{emu.access_key, emu.token, "wr0ng-watch-t0ken", "S3CRET-watch-wrong"} do
      assert.falsy(all:find(secret, 1, true), "a secret was printed: " .. secret)
    end
  end)

  it("prints ids and states escaped (a hostile id from stdin)", function()
    local stdin = helpers.temp_file("bad\27]0;x\7id\n")
    local _, err, rc = cli(env, "watch " .. FAST .. " -", {stdin = stdin})
    os.remove(stdin)
    assert.equal(1, rc)
    assert.falsy(err:find("\27", 1, true))
    assert.matches("bad\\x1B]0;x\\x07id: HTTP 404", err)
  end)
end)
