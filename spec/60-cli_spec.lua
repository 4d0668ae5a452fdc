-- bin/acscall, run as a subprocess against the emulator: commands, output
-- modes, exit codes, configuration errors, and that no secret is ever printed.
local helpers = require "spec.helpers"
local cjson = require "cjson.safe"

local q = helpers.shell_quote
local CLI = helpers.CLI
local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local CLEAN_ENV = helpers.CLEAN_ENV

local everything_printed = {} -- every stdout and stderr of the current spec, for the secrets check

-- Run the CLI (helpers.cli), keeping what it printed for the secrets check.
local function cli(env, args, opts)
  local o, e, rc = helpers.cli(env, args, opts)
  everything_printed[#everything_printed + 1] = o
  everything_printed[#everything_printed + 1] = e
  return o, e, rc
end

local lines = helpers.lines

-- Check that every JSON object in text has its keys in sorted order (a tiny
-- parser over the raw text, since decoding loses the order).
local function keys_sorted(text)
  local pos = 1
  local function ws() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local value
  local function str()
    assert(text:sub(pos, pos) == '"', "string expected at " .. pos)
    local i = pos + 1
    while true do
      local c = text:sub(i, i)
      if c == "\\" then i = i + 2
      elseif c == '"' then break
      elseif c == "" then error("unterminated string")
      else i = i + 1 end
    end
    local s = cjson.decode(text:sub(pos, i))
    pos = i + 1
    return s
  end
  function value()
    ws()
    local c = text:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      ws()
      local last
      if text:sub(pos, pos) == "}" then pos = pos + 1 return end
      while true do
        ws()
        local k = str()
        if last and last >= k then error(("keys out of order: %q before %q"):format(last, k)) end
        last = k
        ws()
        assert(text:sub(pos, pos) == ":")
        pos = pos + 1
        value()
        ws()
        c = text:sub(pos, pos)
        pos = pos + 1
        if c == "}" then return end
        assert(c == ",", "',' expected")
      end
    elseif c == "[" then
      pos = pos + 1
      ws()
      if text:sub(pos, pos) == "]" then pos = pos + 1 return end
      while true do
        value()
        ws()
        c = text:sub(pos, pos)
        pos = pos + 1
        if c == "]" then return end
        assert(c == ",", "',' expected")
      end
    elseif c == '"' then
      str()
    else
      local s, e = text:find("^[%w%.%+%-]+", pos)
      assert(s, "value expected at " .. pos)
      pos = e + 1
    end
  end
  value()
  return true
end

describe("acscall CLI", function()
  local emu, fixtures, env

  setup(function()
    -- a private copy of the fixtures, so a spec can add and rewrite calls
    fixtures = os.tmpname()
    os.remove(fixtures)
    assert(helpers.run("mkdir -p " .. q(fixtures) .. " && cp " .. q(helpers.fixtures_dir()) .. "/*.json "
      .. q(fixtures) .. "/"))
    local f = assert(io.open(fixtures .. "/cli-reset.json", "w"))
    f:write('{"callConnectionId": "cli-reset"}')
    f:close()
    f = assert(io.open(fixtures .. "/cli-reset.meta.json", "w"))
    f:write('{"fault": "reset"}')
    f:close()
    emu = helpers.start_emulator{fixtures = fixtures}
    env = {ACS_CONNECTION_STRING = emu.connection_string}
  end)

  teardown(function()
    if emu then emu:stop() end
    if fixtures then helpers.run("rm -rf " .. q(fixtures)) end
  end)

  local function write_fixture(name, body)
    local tmp = fixtures .. "/.tmp-" .. name
    local f = assert(io.open(tmp, "w"))
    f:write(body)
    f:close()
    assert(os.rename(tmp, fixtures .. "/" .. name)) -- atomic: the emulator never reads half a file
  end

  describe("--help", function()
    it("for the program lists the commands and the exit codes", function()
      local out, err, rc = cli(env, "--help")
      assert.equal(0, rc)
      assert.equal("", err)
      assert.matches("Usage: acscall", out)
      assert.matches("get%s+Fetch calls", out)
      assert.matches("watch%s+Follow calls", out)
      assert.matches("Exit codes %(get%):", out)
      assert.matches("3%s+transport or auth failure", out)
    end)

    it("for get and watch shows their options", function()
      local out, _, rc = cli(env, "get --help")
      assert.equal(0, rc)
      assert.matches("Usage: acscall get", out)
      for _, opt in ipairs{"--json", "--field", "--connection-string", "--endpoint", "--token",
                           "--api-version", "--timeout", "--ca-file", "--concurrency", "--verbose",
                           "Exit codes (get):"} do
        assert.truthy(out:find(opt, 1, true), opt)
      end
      out, _, rc = cli(env, "watch --help")
      assert.equal(0, rc)
      assert.matches("Usage: acscall watch", out)
      for _, opt in ipairs{"--interval", "--max-interval", "--concurrency", "--json", "--verbose",
                           "ACS_CONNECTION_STRING", "Exit codes (watch, for any number of ids):",
                           "0    every call ended", "130  interrupted"} do
        assert.truthy(out:find(opt, 1, true), opt)
      end
    end)

    it("--version prints the module's version", function()
      local out, _, rc = cli(env, "--version")
      assert.equal(0, rc)
      assert.matches("^acscall %d+%.%d+%.%d+", out)
    end)
  end)

  describe("get", function()
    it("prints one call as a readable list", function()
      local out, err, rc = cli(env, "get " .. SEED)
      assert.equal(0, rc)
      assert.equal("", err)
      assert.matches("callConnectionId%s+" .. SEED:gsub("%-", "%%-"), out)
      assert.matches("\ncallConnectionState%s+connected\n", out)
      assert.matches("\nsource%s+acs user 8:acs:", out)
      assert.matches("\nsourceCallerIdNumber%s+%+18440123456\n", out)
      assert.matches("\ntargets%s+1%. acs user 8:acs:", out)
      assert.matches("\n%s+2%. phone %+14250123456  %(4:%+14250123456%)\n", out)
    end)

    it("shows every field of a full call, non-ASCII intact", function()
      local out, _, rc = cli(env, "get full")
      assert.equal(0, rc)
      assert.matches("sourceDisplayName%s+Contoso Support éè 😀", out)
      assert.matches("answeredFor%s+%+18005550199", out)
      assert.matches("mediaStreaming%s+disabled %(audio%)", out)
      assert.matches("transcription%s+active %(final; en%-AU%)", out)
      assert.matches("teams user e5f1a3c2", out)
    end)

    it("prints many calls as a table, in input order", function()
      local out, err, rc = cli(env, "get state-connected full state-disconnected large-200-targets")
      assert.equal(0, rc)
      assert.equal("", err)
      local l = lines(out)
      assert.equal(5, #l)
      assert.matches("^CALL CONNECTION ID%s+STATE%s+SOURCE%s+TARGETS$", l[1])
      assert.matches("^state%-connected%s+connected%s", l[2])
      assert.matches("^full%s+connected%s", l[3])
      assert.matches("^state%-disconnected%s+disconnected%s", l[4])
      assert.matches("%(%+198 more%)$", l[5])
    end)

    it("--long prints every call in full", function()
      local out, _, rc = cli(env, "get --long state-connected full")
      assert.equal(0, rc)
      assert.matches("callConnectionId%s+state%-connected\n.*\n\ncallConnectionId%s+full\n", out)
    end)

    it("--json: one object per line, parseable, keys sorted at every depth", function()
      local ids = {SEED, "full", "identifiers-all", "subscriptions", "unknown-fields", "nulls", "minimal",
                   "empty-object", "call id+1"}
      local args = {}
      for i, id in ipairs(ids) do args[i] = q(id) end
      local out, err, rc = cli(env, "get --json " .. table.concat(args, " "))
      assert.equal(0, rc, err)
      local l = lines(out)
      assert.equal(#ids, #l)
      for i, line in ipairs(l) do
        local v = assert(cjson.decode(line), line)
        assert.is_true(keys_sorted(line))
        if ids[i] ~= "empty-object" then assert.equal(ids[i], v.callConnectionId) end
      end
      local full = cjson.decode(l[2])
      assert.equal("https://app.contoso.com/callback", full.callbackUri)
      assert.truthy(l[2]:find('"callbackUri":"https://app.contoso.com/callback"', 1, true)) -- no "\/"
      assert.equal("Contoso Support éè 😀", full.sourceDisplayName)
      assert.equal("4:+14250123456_207ffef6-9444-41fb-92ab-20eacaae2768", full.targets[1].rawId)
      assert.same({"audio"}, full.mediaStreamingSubscription.subscribedContentTypes)
      assert.equal('{"callConnectionId":"minimal"}', l[7])
      assert.equal("{}", l[8])
      -- the sample call's (SEED, fixture 18dea47f-...) identifiers get the derived rawId and kind
      local seed = cjson.decode(l[1])
      assert.equal("4:+14250123456", seed.targets[2].rawId)
    end)

    it("--json keeps empty arrays as arrays", function()
      write_fixture("cli-empty-targets.json", '{"callConnectionId":"cli-empty-targets","targets":[]}')
      local out, _, rc = cli(env, "get --json cli-empty-targets")
      assert.equal(0, rc)
      assert.equal('{"callConnectionId":"cli-empty-targets","targets":[]}\n', out)
    end)

    it("--field prints one value per line, dotted paths included", function()
      local out, _, rc = cli(env, "get --field callConnectionState state-connected state-disconnected full")
      assert.equal(0, rc)
      assert.equal("connected\ndisconnected\nconnected\n", out)
      out = cli(env, "get --field source.rawId --field targets.1.rawId --field 'targets[2].kind' full")
      assert.equal("8:acs:b9614373-fd0b-480c-8fd2-cb58b70eab9f_0f50d091-5bd3-448b-884d-44be7037d9b9\t"
        .. "4:+14250123456_207ffef6-9444-41fb-92ab-20eacaae2768\tmicrosoftTeamsUser\n", out)
    end)

    it("--field: a missing field is an empty line, a table is JSON", function()
      local out, _, rc = cli(env, "get --field correlationId --field sourceCallerIdNumber minimal full")
      assert.equal(0, rc)
      assert.equal("\t\n5f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b\t{\"value\":\"+18440123456\"}\n", out)
    end)

    it("reads ids from stdin with '-'", function()
      local path = helpers.temp_file("state-connected\n\n  full  \nstate-disconnected\n")
      local out, _, rc = cli(env, "get --field callConnectionId -", {stdin = path})
      os.remove(path)
      assert.equal(0, rc)
      assert.equal("state-connected\nfull\nstate-disconnected\n", out)
    end)

    it("a progress line only when asked (stderr is not a terminal here)", function()
      local ids = "state-connected full state-disconnected minimal subscriptions"
      local _, err, rc = cli(env, "get --field callConnectionId " .. ids)
      assert.equal(0, rc)
      assert.equal("", err)
      local out
      out, err, rc = cli(env, "get --progress always --concurrency 2 --field callConnectionId " .. ids)
      assert.equal(0, rc)
      assert.equal(5, #lines(out))
      assert.matches("fetched 5/5 calls", err)
    end)

    it("prints numbers of unknown fields as integers, large ones with every digit", function()
      write_fixture("cli-numbers.json", '{"callConnectionId":"cli-numbers","n":42,'
        .. '"big":12345678901234567,"f":0.1,"neg":-7,"x":{"a":3,"b":2.5,"c":1e300}}')
      local out, err, rc = cli(env, "get --field n --field big --field f --field neg --field x cli-numbers")
      assert.equal(0, rc, err)
      assert.equal('42\t12345678901234568\t0.1\t-7\t{"a":3,"b":2.5,"c":1e+300}\n', out)
      out = cli(env, "get cli-numbers")
      assert.matches("\nbig +12345678901234568\n", out)
      assert.matches("\nn +42\n", out)
      assert.matches("\nneg +%-7\n", out)
      out = cli(env, "get --json cli-numbers")
      assert.equal('{"big":12345678901234568,"callConnectionId":"cli-numbers","f":0.1,"n":42,"neg":-7,'
        .. '"x":{"a":3,"b":2.5,"c":1e+300}}\n', out)
    end)

    it("escapes control characters of ids (from stdin) in its messages", function()
      local path = helpers.temp_file("no\27]0;owned\7such\194\155x\nstate-connected\n")
      local out, err, rc = cli(env, "get --field callConnectionId -", {stdin = path})
      os.remove(path)
      assert.equal(1, rc)
      assert.equal("state-connected\n", out)
      assert.equal("acscall: no\\x1B]0;owned\\x07such\\u009Bx: HTTP 404: Call not found. (code 8522)\n", err)
    end)

    it("works through a symlink, from any directory, without LUA_PATH/LUA_CPATH", function()
      local tmp = os.tmpname()
      os.remove(tmp)
      assert(helpers.run("mkdir " .. q(tmp) .. " && ln -s " .. q(CLI) .. " " .. q(tmp .. "/acscall")))
      local o, e = os.tmpname(), os.tmpname()
      local _, _, rc = helpers.run("cd / && " .. CLEAN_ENV .. " -u LUA_PATH -u LUA_CPATH ACS_CONNECTION_STRING="
        .. q(emu.connection_string) .. " " .. q(tmp .. "/acscall")
        .. " get --field callConnectionState state-connected >" .. q(o) .. " 2>" .. q(e))
      local out, err = helpers.read_file(o), helpers.read_file(e)
      os.remove(o); os.remove(e)
      helpers.run("rm -rf " .. q(tmp))
      assert.equal(0, rc, err)
      assert.equal("connected\n", out)
    end)

    it("without the acscall module: exit 2 and one line saying so", function()
      local tmp = os.tmpname()
      os.remove(tmp)
      assert(helpers.run("mkdir " .. q(tmp) .. " && cp " .. q(CLI) .. " " .. q(tmp .. "/acscall")))
      local e = os.tmpname()
      local out, _, rc = helpers.run("cd / && " .. CLEAN_ENV .. " LUA_PATH=/usr/share/lua/5.4/?.lua"
        .. " LUA_CPATH=/usr/lib/x86_64-linux-gnu/lua/5.4/?.so " .. q(tmp .. "/acscall")
        .. " get state-connected 2>" .. q(e))
      local err = helpers.read_file(e)
      os.remove(e)
      helpers.run("rm -rf " .. q(tmp))
      assert.equal(2, rc, err)
      assert.equal("", out)
      assert.equal("acscall: the acscall module was not found (run make in the checkout, or install the rock)\n",
        err)
    end)

    it("works from any directory without LUA_PATH/LUA_CPATH (finds the checkout's module)", function()
      local out, err, rc = cli(env, "get --field callConnectionState state-connected",
        {cd = "/", env_extra = " -u LUA_PATH -u LUA_CPATH"})
      assert.equal(0, rc, err)
      assert.equal("connected\n", out)
    end)
  end)

  describe("exit codes", function()
    it("1 for an unknown id, with one line on stderr; the others still print", function()
      local out, err, rc = cli(env, "get --field callConnectionId state-connected no-such-call full")
      assert.equal(1, rc)
      assert.equal("state-connected\nfull\n", out)
      assert.equal("acscall: no-such-call: HTTP 404: Call not found. (code 8522)\n", err)
    end)

    it("1 for a bad id (one the route cannot take: it stays one path segment)", function()
      local out, err, rc = cli(env, "get 'a/../../b?x=1#y'")
      assert.equal(1, rc)
      assert.equal("", out)
      assert.matches("^acscall: a/%.%./%.%./b%?x=1#y: HTTP 404", err)
      assert.equal("a/../../b?x=1#y", emu:last_request().id)
    end)

    it("1 for a response that is not a valid call (a wrong-typed leaf alone is not that)", function()
      local _, err, rc = cli(env, "get fault-malformed wrongtypes-targets")
      assert.equal(1, rc)
      local l = lines(err)
      assert.equal(1, #l)
      assert.matches("^acscall: fault%-malformed: decode: ", l[1])
    end)

    it("1 for an id over 1024 bytes, alone: the other ids are still fetched", function()
      local long = ("x"):rep(1025)
      local out, err, rc = cli(env, "get --field callConnectionId state-connected " .. long .. " full "
        .. ("y"):rep(1024))
      assert.equal(1, rc)
      assert.equal("state-connected\nfull\n", out)
      local l = lines(err)
      assert.equal(2, #l, err)
      assert.equal("acscall: " .. ("x"):rep(40) .. "...: call id too long: 1025 bytes (at most 1024)", l[1])
      assert.equal("acscall: " .. ("y"):rep(1024) .. ": HTTP 404: Call not found. (code 8522)", l[2])
      out, err, rc = cli(env, "get " .. long)
      assert.equal(1, rc)
      assert.equal("", out)
      assert.equal(1, #lines(err))
    end)

    it("3 for a transport failure (nothing listening)", function()
      local out, err, rc = cli({ACS_ENDPOINT = "http://127.0.0.1:1/", ACS_TOKEN = "t0ken-secret"},
        "get --retries 0 state-connected")
      assert.equal(3, rc)
      assert.equal("", out)
      assert.matches("^acscall: state%-connected: transport: .*\n$", err)
    end)

    it("3 wins over 1 in a batch", function()
      local out, err, rc = cli(env, "get --retries 0 --field callConnectionId state-connected no-such-call cli-reset")
      assert.equal(3, rc)
      assert.equal("state-connected\n", out)
      assert.matches("no%-such%-call: HTTP 404", err)
      assert.matches("cli%-reset: transport: ", err)
    end)

    it("2 for usage errors, with one line on stderr", function()
      for _, args in ipairs{"", "get", "frob x", "get --bogus x", "get --json --field a x",
                            "watch", "watch x --interval 0", "watch x --interval soon",
                            "get --concurrency 0 x", "get ''", "watch " .. ("x"):rep(1025),
                            "get --ca-file /nonexistent x", "get --ca-file / x"} do
        local out, err, rc = cli(env, args)
        assert.equal(2, rc, args)
        assert.equal("", out, args)
        assert.equal(1, #lines(err), args .. ": " .. err)
        assert.matches("^acscall: ", err, args)
      end
      local _, err = cli(env, "get --ca-file /nonexistent x")
      assert.equal("acscall: --ca-file: cannot read the CA file: /nonexistent: No such file or directory\n", err)
      local env2 = {ACS_CONNECTION_STRING = emu.connection_string, ACS_CA_FILE = "/nonexistent"}
      local _, err2, rc2 = cli(env2, "get x")
      assert.equal(2, rc2)
      assert.equal("acscall: ACS_CA_FILE: cannot read the CA file: /nonexistent: No such file or directory\n", err2)
    end)
  end)

  describe("configuration", function()
    it("missing: exit 2 with a clear message", function()
      local out, err, rc = cli({}, "get state-connected")
      assert.equal(2, rc)
      assert.equal("", out)
      assert.equal("acscall: no ACS resource configured: set ACS_CONNECTION_STRING, or ACS_ENDPOINT and "
        .. "ACS_TOKEN or ACS_ACCESS_KEY, or ACS_ENDPOINT and --auth "
        .. "(or use --connection-string, or --endpoint and --token)\n", err)
      out, err, rc = cli({ACS_ENDPOINT = emu.endpoint}, "get state-connected")
      assert.equal(2, rc)
      assert.equal("", out)
      assert.matches("no credential", err)
    end)

    it("ACS_ENDPOINT + ACS_TOKEN (bearer) works", function()
      local out, _, rc = cli({ACS_ENDPOINT = emu.endpoint, ACS_TOKEN = emu.token},
        "get --field callConnectionState state-connected")
      assert.equal(0, rc)
      assert.equal("connected\n", out)
      assert.equal("bearer", emu:last_request().auth)
    end)

    it("flags win over the environment", function()
      local bad = {ACS_CONNECTION_STRING = "endpoint=http://127.0.0.1:1/;accesskey=" .. emu.access_key}
      local out, _, rc = cli(bad, "get --connection-string " .. q(emu.connection_string)
        .. " --field callConnectionState state-connected")
      assert.equal(0, rc)
      assert.equal("connected\n", out)
      out, _, rc = cli(bad, "get --endpoint " .. q(emu.endpoint) .. " --token " .. q(emu.token)
        .. " --field callConnectionState state-connected")
      assert.equal(0, rc)
      assert.equal("connected\n", out)
    end)

    it("--api-version is sent", function()
      local _, _, rc = cli(env, "get --api-version 2099-01-01 state-connected")
      assert.equal(0, rc)
      assert.matches("api%-version=2099%-01%-01", emu:last_request().uri)
    end)

    it("a wrong token: exit 3 (credential refused) with the 401 message, the token not echoed", function()
      local out, err, rc = cli({ACS_ENDPOINT = emu.endpoint, ACS_TOKEN = "wr0ng-t0ken-s3cret"}, "get state-connected")
      assert.equal(3, rc)
      assert.equal("", out)
      assert.matches("^acscall: state%-connected: HTTP 401: .*\n$", err)
      assert.falsy(err:find("wr0ng-t0ken-s3cret", 1, true))
    end)

    it("a wrong access key: exit 3 (credential refused) with the 401 message", function()
      local key = "c2VjcmV0LWJ1dC13cm9uZy1rZXktMzItYnl0ZXMhISE="
      local _, err, rc = cli({ACS_CONNECTION_STRING = "endpoint=" .. emu.endpoint .. ";accesskey=" .. key},
        "get state-connected")
      assert.equal(3, rc)
      assert.matches("HTTP 401", err)
      assert.falsy(err:find(key, 1, true))
    end)

    it("a malformed connection string: exit 2, the key not echoed", function()
      for _, cs in ipairs{"endpoint=" .. emu.endpoint .. ";accesskey=n0t-base64-S3CRET!!",
                          "garbage-S3CRET", "endpoint=ftp://x/;accesskey=" .. emu.access_key} do
        local out, err, rc = cli({ACS_CONNECTION_STRING = cs}, "get state-connected")
        assert.equal(2, rc, cs)
        assert.equal("", out)
        assert.matches("^acscall: invalid configuration: [^\n]+\n$", err)
        assert.falsy(err:find("S3CRET", 1, true), err)
        assert.falsy(err:find(emu.access_key, 1, true), err)
      end
    end)

  end)

  describe("TLS", function()
    local tls
    setup(function() tls = helpers.start_emulator{tls = true} end)
    teardown(function() if tls then tls:stop() end end)

    it("verifies with --ca-file or ACS_CA_FILE; without the CA it is a transport failure (3)", function()
      local cs = {ACS_CONNECTION_STRING = tls.connection_string}
      local out, err, rc = cli(cs, "get --retries 0 --field callConnectionState state-connected")
      assert.equal(3, rc)
      assert.equal("", out)
      assert.matches("^acscall: state%-connected: transport: [^\n]+\n$", err)
      out, err, rc = cli(cs, "get --ca-file " .. q(tls.ca_file) .. " --field callConnectionState state-connected")
      assert.equal(0, rc, err)
      assert.equal("connected\n", out)
      out, err, rc = cli({ACS_CONNECTION_STRING = tls.connection_string, ACS_CA_FILE = tls.ca_file},
        "get --field callConnectionState state-connected")
      assert.equal(0, rc, err)
      assert.equal("connected\n", out)
    end)
  end)

  describe("watch", function()
    it("ends at once on a disconnected call, with an ISO-8601 UTC timestamp", function()
      local out, err, rc = cli(env, "watch state-disconnected --interval 0.1")
      assert.equal(0, rc)
      assert.matches("^acscall: 1 calls: 1 ended, 0 failed, 0 still watched; 1 requests in %d+%.%d s\n$", err)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ  state%-disconnected  disconnected\n$", out)
    end)

    it("--json prints one object per event (the call, the time), then a summary", function()
      local out, _, rc = cli(env, "watch --json state-disconnected")
      assert.equal(0, rc)
      local l = lines(out)
      assert.equal(3, #l, out)
      local seen, ended, summary = cjson.decode(l[1]), cjson.decode(l[2]), cjson.decode(l[3])
      assert.equal("seen", seen.event)
      assert.equal("state-disconnected", seen.id)
      assert.equal("disconnected", seen.state)
      assert.equal("disconnected", seen.call.callConnectionState)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", seen.time)
      assert.equal("ended", ended.event)
      assert.equal("disconnected", ended.reason)
      assert.same({event = "summary", calls = 1, ended = 1, failed = 0, watching = 0, requests = 1,
        stopped = "ended", seconds = summary.seconds}, summary)
      for _, line in ipairs(l) do assert.is_true(keys_sorted(line)) end
    end)

    it("404 ends it with exit 1", function()
      local out, err, rc = cli(env, "watch no-such-call --interval 0.1")
      assert.equal(1, rc)
      assert.equal("", out)
      assert.matches("^acscall: no%-such%-call: HTTP 404: Call not found. %(code 8522%)\n"
        .. "acscall: 1 calls: 0 ended, 1 failed, 0 still watched; 1 requests in [%d.]+ s\n$", err)
    end)

    it("a transport failure does not end it: one notice when it starts (stopped by timeout(1) after 0.5 s)", function()
      local out, err, rc = cli({ACS_ENDPOINT = "http://127.0.0.1:1/", ACS_TOKEN = "t0ken-secret"},
        "watch state-connected --interval 0.1 --retries 0", {prefix = "timeout 0.5 "})
      assert.equal(124, rc)
      assert.equal("", out)
      local l = lines(err)
      assert.equal(1, #l, err)
      assert.matches("^acscall: %d%d%d%d%-%d%d%-%d%dT%S+Z state%-connected: transport: .*%(still watching%)$", l[1])
    end)

    it("Ctrl-C (SIGINT) ends it within a moment, not after the interval: exit 130", function()
      -- one SIGINT to the CLI process alone, once it printed the state and sleeps
      local p = helpers.spawn(CLEAN_ENV .. " ACS_CONNECTION_STRING=" .. q(emu.connection_string) .. " "
        .. q(CLI) .. " watch --interval 10 state-connected")
      local ready = helpers.wait_until(function()
        return (p:output()):find("connected\n", 1, true) ~= nil and p:waiting()
      end, 15)
      local rc, took = p:interrupt(15)
      local out, err = p:output()
      p:cleanup()
      everything_printed[#everything_printed + 1] = out
      everything_printed[#everything_printed + 1] = err
      assert.is_true(ready, "never printed the state: " .. out .. err)
      assert.equal(130, rc, err)
      assert.matches("^acscall: 1 calls: 0 ended, 0 failed, 1 still watched; %d+ requests in [%d.]+ s %(interrupted%)\n$",
        err)
      assert.matches("  state%-connected  connected\n$", out)
      assert.is_true(took < 3, "took " .. took .. " s")
    end)

    it("prints each state change, survives transient errors, ends on disconnected", function()
      local id = "cli-watch"
      write_fixture(id .. ".json", '{"callConnectionId":"cli-watch","callConnectionState":"connecting"}')
      local out, err, rcfile = os.tmpname(), os.tmpname(), os.tmpname()
      os.remove(rcfile)
      local cmd = CLEAN_ENV .. " ACS_CONNECTION_STRING=" .. q(emu.connection_string) .. " " .. q(CLI)
        .. " watch " .. id .. " --interval 0.05 --retries 0 </dev/null >" .. q(out) .. " 2>" .. q(err)
      os.execute("(" .. cmd .. "; echo $? >" .. q(rcfile) .. ") &")
      local function wait_for(pattern, path, limit)
        local t0 = helpers.now()
        while helpers.now() - t0 < (limit or 5) do
          local s = helpers.read_file(path) or ""
          if s:find(pattern) then return s end
          helpers.sleep(0.02)
        end
        error("timed out waiting for " .. pattern .. " in " .. path .. ": " .. (helpers.read_file(path) or ""))
      end
      wait_for("connecting\n", out)
      write_fixture(id .. ".json", '{"callConnectionId":"cli-watch","callConnectionState":"connected"}')
      wait_for("  connected\n", out)
      write_fixture(id .. ".meta.json", '{"fault": "503"}')
      wait_for("still watching", err)
      os.remove(fixtures .. "/" .. id .. ".meta.json")
      write_fixture(id .. ".json", '{"callConnectionId":"cli-watch","callConnectionState":"disconnected"}')
      local rc = tonumber(wait_for("%d", rcfile))
      local o, e = helpers.read_file(out), helpers.read_file(err)
      os.remove(out); os.remove(err); os.remove(rcfile)
      everything_printed[#everything_printed + 1] = o
      everything_printed[#everything_printed + 1] = e
      assert.equal(0, rc)
      local l = lines(o)
      assert.equal(3, #l, o)
      assert.matches("Z  cli%-watch  connecting$", l[1])
      assert.matches("Z  cli%-watch  connected$", l[2])
      assert.matches("Z  cli%-watch  disconnected$", l[3])
      assert.matches("acscall: %S+Z cli%-watch: HTTP 503: .*%(still watching%)\n", e)
      assert.matches("cli%-watch: recovered\n", e)
    end)
  end)

  describe("--auth (Entra ID credentials)", function()
    local SECRET = "emulator-client-secret"
    local function imds_env(extra)
      local e = {ACS_ENDPOINT = emu.endpoint, AZURE_POD_IDENTITY_AUTHORITY_HOST = emu.endpoint:gsub("/$", "")}
      for k, v in pairs(extra or {}) do e[k] = v end
      return e
    end

    it("--help documents every mode and the variables each reads", function()
      local out, _, rc = cli({}, "get --help")
      assert.equal(0, rc)
      for _, s in ipairs{"--auth", "ACSCALL_AUTH", "default", "managed-identity", "client-secret",
        "workload-identity", "cli ", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_POD_IDENTITY_AUTHORITY_HOST",
        "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_AUTHORITY_HOST", "ACSCALL_AZURE_CLI"} do
        assert.truthy(out:find(s, 1, true), s)
      end
    end)

    it("an unknown mode, a missing endpoint or setting: exit 2, never the secret", function()
      local out, err, rc = cli(imds_env(), "get --auth bogus " .. SEED)
      assert.equal(2, rc)
      assert.equal("", out)
      assert.matches("%-%-auth: one of default, managed%-identity", err)
      out, err, rc = cli({ACSCALL_AUTH = "managed-identity"}, "get " .. SEED)
      assert.equal(2, rc)
      assert.equal("", out)
      assert.matches("needs an endpoint %(set ACS_ENDPOINT", err)
      out, err, rc = cli(imds_env{AZURE_TENANT_ID = "t1", AZURE_CLIENT_SECRET = "S3CRET"},
        "get --auth client-secret " .. SEED)
      assert.equal(2, rc)
      assert.equal("", out)
      assert.matches("AZURE_CLIENT_ID", err)
    end)

    it("aimed off loopback under ACSCALL_LOOPBACK_ONLY=1 (the suite): exit 2 before any request", function()
      local _, err, rc = cli({ACS_ENDPOINT = emu.endpoint}, "get --auth managed-identity " .. SEED)
      assert.equal(2, rc)
      assert.matches("169%.254%.169%.254", err)
      assert.matches("ACSCALL_LOOPBACK_ONLY=1", err)
    end)

    it("managed-identity (IMDS), client-secret, workload-identity, default: the call succeeds", function()
      local file = helpers.temp_file("emulator-assertion-cli\n")
      local cases = {
        {"--auth managed-identity", imds_env{AZURE_CLIENT_ID = "cli-mi"}, "imds", "cli-mi"},
        {"--auth client-secret", imds_env{AZURE_TENANT_ID = "t1", AZURE_CLIENT_ID = "cli-cs",
          AZURE_CLIENT_SECRET = SECRET, AZURE_AUTHORITY_HOST = emu.endpoint}, "oauth2", "cli-cs"},
        {"--auth workload-identity", imds_env{AZURE_TENANT_ID = "t1", AZURE_CLIENT_ID = "cli-wi",
          AZURE_FEDERATED_TOKEN_FILE = file, AZURE_AUTHORITY_HOST = emu.endpoint}, "oauth2", "cli-wi"},
        {"", imds_env{ACSCALL_AUTH = "default", AZURE_CLIENT_ID = "cli-default",
          ACSCALL_AZURE_CLI = "/nonexistent/az"}, "imds", "cli-default"}, -- the env var alone
      }
      for _, case in ipairs(cases) do
        emu:clear_log()
        local out, err, rc = cli(case[2], "get " .. case[1] .. " --field callConnectionState state-connected")
        assert.equal(0, rc, case[1] .. ": " .. err)
        assert.equal("connected\n", out)
        local tokens = emu:token_requests{ endpoint = case[3], client_id = case[4]}
        assert.equal(1, #tokens, case[1])
        assert.equal("issued", emu:last_request().auth)
      end
      os.remove(file)
    end)

    it("--auth cli runs the given az (ACSCALL_AZURE_CLI), no shell", function()
      local az, fake = helpers.fake_az{token = emu.token}
      local out, err, rc = cli({ACS_ENDPOINT = emu.endpoint, ACSCALL_AZURE_CLI = az},
        "get --auth cli --field callConnectionState state-connected")
      fake.remove()
      assert.equal(0, rc, err)
      assert.equal("connected\n", out)
    end)

    it("a refused secret: exit 3, kind auth, the secret never printed", function()
      local out, err, rc = cli(imds_env{AZURE_TENANT_ID = "t1", AZURE_CLIENT_ID = "cli-bad",
        AZURE_CLIENT_SECRET = "S3CRET-wrong-value", AZURE_AUTHORITY_HOST = emu.endpoint},
        "get --auth client-secret state-connected")
      assert.equal(3, rc)
      assert.equal("", out)
      assert.matches("AADSTS7000215", err)
      assert.falsy(err:find("S3CRET", 1, true))
    end)
  end)

  -- No spec prints a secret: checked after each one, over everything the CLI
  -- printed during it (so it holds in any order, `busted --shuffle` too).
  after_each(function()
    local all = table.concat(everything_printed, "\n")
    everything_printed = {}
    for _, secret in ipairs{emu.access_key, emu.token, "wr0ng-t0ken-s3cret", "t0ken-secret", "S3CRET",
                            "c2VjcmV0LWJ1dC13cm9uZy1rZXktMzItYnl0ZXMhISE="} do
      assert.falsy(all:find(secret, 1, true), "a secret was printed: " .. secret)
    end
  end)
end)
