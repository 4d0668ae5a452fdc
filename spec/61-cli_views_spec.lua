-- The CLI run in process (acscall.cli.main) against the emulator: what a
-- hostile server's strings become in every view (never a raw control byte
-- or invalid UTF-8 on a terminal; always strict JSON with --json), stdin
-- ids trimmed in linear time, and exit 3 for a refused credential.
local helpers = require "spec.helpers"
local cli = require "acscall.cli"

-- Every string field of a call carries ESC (a title-setting sequence), CR,
-- LF, TAB, DEL, a C1 control (U+009B, CSI), an invalid byte, an overlong
-- form and a UTF-16 surrogate encoded as UTF-8; so does an unknown field's
-- name. 1e400 is a number no double holds (it decodes as infinity).
local EVIL = [[\u001b]0;pwned\u0007\r\n\t\u007f\u009b2J]] .. "\255\192\128\237\160\128"
local HOSTILE = ([[{
  "callConnectionId": "hostile@",
  "serverCallId": "srv@",
  "callConnectionState": "connected@",
  "callbackUri": "https://x/@",
  "correlationId": "corr@",
  "sourceDisplayName": "name@",
  "source": {"kind": "communicationUser", "rawId": "8:acs:src@", "communicationUser": {"id": "8:acs:src@"}},
  "sourceCallerIdNumber": {"value": "+1@"},
  "targets": [
    {"kind": "phoneNumber", "rawId": "4:+1@", "phoneNumber": {"value": "+1@"}},
    {"kind": "communicationUser", "rawId": "8:acs:t@", "communicationUser": {"id": "8:acs:t@"}},
    {"kind": "weird@", "rawId": "x@"}
  ],
  "answeredBy": {"id": "8:acs:ans@"},
  "answeredFor": {"value": "+1@"},
  "mediaStreamingSubscription": {"id": "m@", "state": "active@", "subscribedContentTypes": ["audio@"]},
  "transcriptionSubscription": {"id": "t@", "state": "active@", "subscribedResultTypes": ["final@"],
    "locale": "en@"},
  "extra@": {"nested@": ["v@", 1e400, -1e400]},
  "big": 1e400
}]]):gsub("@", (EVIL:gsub("%%", "%%%%")))

-- Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF),
-- written here independently of the CLI's own check.
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len, lo, hi = 1, 0x80, 0xBF -- ASCII: one byte
    if c >= 0xC2 and c <= 0xDF then len = 2
    elseif c == 0xE0 then len, lo = 3, 0xA0
    elseif c == 0xED then len, hi = 3, 0x9F
    elseif c >= 0xE1 and c <= 0xEF then len = 3
    elseif c == 0xF0 then len, lo = 4, 0x90
    elseif c >= 0xF1 and c <= 0xF3 then len = 4
    elseif c == 0xF4 then len, hi = 4, 0x8F
    elseif c >= 0x80 then return false, i end
    for k = 1, len - 1 do
      local b = s:byte(i + k)
      if not b then return false, i end
      if k == 1 then
        if b < lo or b > hi then return false, i end
      elseif b < 0x80 or b > 0xBF then return false, i end
    end
    i = i + len
  end
  return true
end

-- A strict JSON parser's verdict (RFC 8259: no NaN/Infinity, no raw control
-- characters in strings, escapes well formed, no lone surrogate escape,
-- valid UTF-8). Returns true or false, why.
local function strict_json(text)
  local ok, at = valid_utf8(text)
  if not ok then return false, "invalid UTF-8 at byte " .. at end
  local pos = 1
  local function ws() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local function fail(why) error({why = why .. " at " .. pos}, 0) end
  local value
  local function str()
    pos = pos + 1
    local pending_high = false
    while true do
      local c = text:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c:byte() < 0x20 then fail("raw control character in a string") end
      if c == '"' then
        if pending_high then fail("lone high surrogate") end
        pos = pos + 1
        return
      end
      if c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        if e == "u" then
          local hex = text:sub(pos + 2, pos + 5)
          if not hex:match("^%x%x%x%x$") then fail("bad \\u escape") end
          local u = tonumber(hex, 16)
          if u >= 0xD800 and u <= 0xDBFF then
            if pending_high then fail("lone high surrogate") end
            pending_high = true
          elseif u >= 0xDC00 and u <= 0xDFFF then
            if not pending_high then fail("lone low surrogate") end
            pending_high = false
          elseif pending_high then fail("lone high surrogate")
          end
          pos = pos + 6
        elseif e ~= "" and ('"\\/bfnrt'):find(e, 1, true) then
          if pending_high then fail("lone high surrogate") end
          pos = pos + 2
        else
          fail("bad escape")
        end
      else
        if pending_high then fail("lone high surrogate") end
        pos = pos + 1
      end
    end
  end
  function value()
    ws()
    local c = text:sub(pos, pos)
    if c == "{" or c == "[" then
      local close = c == "{" and "}" or "]"
      pos = pos + 1
      ws()
      if text:sub(pos, pos) == close then pos = pos + 1 return end
      while true do
        if c == "{" then
          ws()
          if text:sub(pos, pos) ~= '"' then fail("key expected") end
          str()
          ws()
          if text:sub(pos, pos) ~= ":" then fail("':' expected") end
          pos = pos + 1
        end
        value()
        ws()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == close then return end
        if d ~= "," then fail("',' or '" .. close .. "' expected") end
      end
    elseif c == '"' then
      str()
    else
      for _, lit in ipairs{"true", "false", "null"} do
        if text:sub(pos, pos + #lit - 1) == lit then pos = pos + #lit return end
      end
      local s, e = text:find("^%-?%d+%.?%d*[eE]?[%+%-]?%d*", pos)
      local num = s and text:sub(s, e)
      if not num or not (num:match("^%-?0$") or num:match("^%-?[1-9]%d*$") or num:match("^%-?0%.%d+")
          or num:match("^%-?[1-9]%d*%.%d+") or num:match("^%-?%d[%d%.]*[eE][%+%-]?%d+$")) then
        fail("value expected")
      end
      pos = e + 1
    end
  end
  local good, err = pcall(function()
    value()
    ws()
    if pos <= #text then fail("trailing text") end
  end)
  if good then return true end
  if type(err) == "table" then return false, err.why end
  error(err, 0)
end

-- Bytes a terminal would obey: C0 except LF (and TAB where the view uses it
-- between columns), DEL, C1 (U+0080-U+009F in UTF-8).
local function raw_control(s, tab_ok)
  local pattern = tab_ok and "[%z\1-\8\11-\31\127]" or "[%z\1-\9\11-\31\127]"
  return s:find(pattern) or s:find("\194[\128-\159]")
end

describe("acscall CLI views (in process)", function()
  local emu, dir, env

  -- run cli.main; returns stdout, stderr, exit code, seconds
  local function run(argv, opts)
    opts = opts or {}
    local out, err = io.tmpfile(), io.tmpfile()
    local t0 = helpers.now()
    local rc = cli.main(argv, {stdout = out, stderr = err, stdin = opts.stdin,
      getenv = function(k) return (opts.env or env)[k] end, sleep = opts.sleep, acscall = opts.acscall})
    local took = helpers.now() - t0
    out:seek("set")
    err:seek("set")
    local o, e = out:read("*a"), err:read("*a")
    out:close()
    err:close()
    return o, e, rc, took
  end

  setup(function()
    dir = helpers.fault_fixtures({["cli-403"] = {fault = "403"}, ["cli-echo"] = {fault = "echoauth"},
      ["cli-echo-html"] = {fault = "echoauth_html"}})
    local f = assert(io.open(dir .. "/hostile.json", "wb"))
    f:write(HOSTILE)
    f:close()
    emu = helpers.start_emulator{fixtures = dir}
    env = {ACS_CONNECTION_STRING = emu.connection_string}
  end)
  teardown(function()
    if emu then emu:stop() end
    helpers.remove_dir(dir)
  end)

  it("the fixture is hostile: its strings hold every kind of byte the views must escape", function()
    local call = assert(require("acscall").new{connection_string = emu.connection_string}:get_call("hostile"))
    assert.truthy(call.sourceDisplayName:find("\27]0;pwned\7\r\n\t\127\194\155", 1, true))
    assert.truthy(call.sourceDisplayName:find("\255\192\128\237\160\128", 1, true))
    assert.equal(math.huge, call.big)
  end)

  for name, argv in pairs{
    detail = {"get", "hostile"},
    table = {"get", "hostile", "hostile", "state-connected"},
    long = {"get", "--long", "hostile", "state-connected"},
  } do
    it("the " .. name .. " view escapes control characters and invalid UTF-8", function()
      local out, err, rc = run(argv)
      assert.equal(0, rc, err)
      assert.equal("", err)
      assert.falsy(raw_control(out), out)
      assert.is_true((valid_utf8(out)))
      -- shown escaped, not dropped
      assert.truthy(out:find("\\x1B]0;pwned\\x07\\x0D\\x0A\\x09\\x7F\\u009B2J\\xFF\\xC0\\x80\\xED\\xA0\\x80", 1, true),
        out)
    end)
  end

  it("the detail view escapes every field, unknown field names included", function()
    local out = run({"get", "hostile"})
    for _, label in ipairs{"callConnectionId", "callConnectionState", "serverCallId", "correlationId",
                           "callbackUri", "source", "sourceCallerIdNumber", "sourceDisplayName", "targets",
                           "answeredBy", "answeredFor", "mediaStreaming", "transcription"} do
      assert.truthy(out:find("\n" .. label .. " +[^\n]*\\x1B%]0;pwned") or out:find("^" .. label .. " +[^\n]*\\x1B"),
        label)
    end
    assert.truthy(out:find("\nextra\\x1B]0;pwned", 1, true))
    local lines = select(2, out:gsub("\n", ""))
    assert.equal(17, lines) -- one per field, one per target: no line was split by a server's LF
  end)

  it("--field escapes each value (a TAB in a value cannot forge a column)", function()
    local fields = {"callConnectionId", "serverCallId", "callConnectionState", "callbackUri", "correlationId",
      "sourceDisplayName", "source.rawId", "sourceCallerIdNumber.value", "targets.1.rawId",
      "targets[2].communicationUser.id", "targets.3.kind", "answeredBy.id", "answeredFor.value",
      "mediaStreamingSubscription.state", "transcriptionSubscription.locale", "extra\27]0;pwned\7\r\n\t\127\194\155"
        .. "2J\255\192\128\237\160\128", "big"}
    local argv = {"get"}
    for _, f in ipairs(fields) do argv[#argv + 1] = "--field"; argv[#argv + 1] = f end
    argv[#argv + 1] = "hostile"
    local out, err, rc = run(argv)
    assert.equal(0, rc, err)
    assert.falsy(raw_control(out, true), out)
    assert.is_true((valid_utf8(out)))
    local cols = {}
    for col in out:gsub("\n$", ""):gmatch("[^\t]+") do cols[#cols + 1] = col end
    assert.equal(#fields, #cols)
    assert.equal("inf", cols[#cols])
  end)

  it("watch escapes the id and the state", function()
    local naps = 0
    local out, err, rc = run({"watch", "hostile", "--interval", "5"}, {sleep = function()
      naps = naps + 1
      error("interrupted!", 0) -- as lua.c raises on Ctrl-C
    end})
    assert.equal(130, rc, err)
    assert.equal(1, naps)
    assert.falsy(raw_control(out), out)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ  hostile  connected\\x1B]0;pwned\\x07\\x0D\\x0A", out)
  end)

  it("--json is strict JSON: 1e400 as null, invalid UTF-8 as U+FFFD, controls escaped", function()
    local out, err, rc = run({"get", "--json", "hostile", "full", "state-connected"})
    assert.equal(0, rc, err)
    assert.equal("", err)
    local n = 0
    for line in out:gmatch("([^\n]*)\n") do
      n = n + 1
      assert.is_true(strict_json(line))
    end
    assert.equal(3, n)
    local first = out:match("^[^\n]*")
    assert.truthy(first:find('"big":null', 1, true))
    assert.truthy(first:find('["v\\u001b]0;pwned', 1, true))
    assert.truthy(first:find(',null,null]', 1, true))
    -- each byte that is not UTF-8 is one U+FFFD
    assert.truthy(first:find("2J\239\191\189\239\191\189\239\191\189\239\191\189\239\191\189\239\191\189\"", 1, true))
    -- and the rest is intact
    local cjson = require "cjson"
    local full = cjson.decode(out:match("\n([^\n]*)"))
    assert.equal("Contoso Support éè 😀", full.sourceDisplayName)
  end)

  it("watch --json is strict JSON too", function()
    local out, _, rc = run({"watch", "--json", "hostile"}, {sleep = function() error("interrupted!", 0) end})
    assert.equal(130, rc)
    local n = 0
    for line in out:gmatch("([^\n]*)\n") do
      n = n + 1
      assert.is_true(strict_json(line))
    end
    assert.equal(2, n) -- seen, summary
  end)

  it("the strict JSON check itself refuses what a strict parser refuses", function()
    for _, bad in ipairs{'{"a":inf}', '{"a":NaN}', '{"a":"\255"}', '{"a":"\\ud83d"}', '{"a":"\1"}', '{"a":1,}',
                         '{"a":-Infinity}', '{"a":"\237\160\128"}', '{"a":"\192\128"}', '[01]'} do
      assert.is_false((strict_json(bad)), bad)
    end
    assert.is_true(strict_json('{"a":[1,-2.5e+3,0.1,"\\ud83d\\ude00",true,null],"b":{}}'))
  end)

  it("trims stdin ids in linear time: a 1 MB line in well under a second", function()
    local stdin = io.tmpfile()
    -- 1 MB of interior spaces: a pattern anchored at the end ("%s+$")
    -- retries from each of them
    stdin:write("  a", (" "):rep(1024 * 1024), "b  \n", " \t state-connected \t \n", (" "):rep(1024 * 1024), "\n")
    stdin:seek("set")
    local out, err, rc, took = run({"get", "--field", "callConnectionId", "-"}, {stdin = stdin})
    stdin:close()
    assert.equal(1, rc, err)
    assert.equal("state-connected\n", out)
    assert.matches("^acscall: a +%.%.%.: call id too long: 1048578 bytes %(at most 1024%)\n$", err)
    assert.is_true(took < 1, ("took %.2f s"):format(took))
  end)

  it("exit 3 for a refused credential (401, 403), also in watch; 404 stays 1", function()
    local _, err, rc = run({"get", "state-connected"}, {env = {ACS_ENDPOINT = emu.endpoint, ACS_TOKEN = "wrong"}})
    assert.equal(3, rc)
    assert.matches("HTTP 401", err)
    _, err, rc = run({"get", "cli-403"})
    assert.equal(3, rc)
    assert.matches("^acscall: cli%-403: HTTP 403: ", err)
    _, err, rc = run({"watch", "cli-403"})
    assert.equal(3, rc)
    assert.matches("HTTP 403", err)
    _, err, rc = run({"get", "no-such-call", "state-connected"})
    assert.equal(1, rc)
    assert.matches("HTTP 404", err)
    -- 3 wins over 1
    _, _, rc = run({"get", "no-such-call", "cli-403"})
    assert.equal(3, rc)
  end)

  it("never prints the credential a server quotes back (JSON or HTML, bearer or HMAC), get or watch", function()
    local token_env = {ACS_ENDPOINT = emu.endpoint, ACS_TOKEN = emu.token}
    for _, case in ipairs{{token_env, {"get", "cli-echo"}}, {token_env, {"get", "cli-echo-html", "cli-echo"}},
                          {token_env, {"watch", "cli-echo"}}, {env, {"get", "cli-echo"}},
                          {env, {"get", "cli-echo-html"}}} do
      local out, err, rc = run(case[2], {env = case[1]})
      local what = table.concat(case[2], " ")
      assert.equal(3, rc, what)
      assert.equal("", out, what)
      assert.matches("HTTP 40[13]", err, what)
      assert.falsy(err:find(emu.token, 1, true), err)
      assert.falsy(err:find(emu.access_key, 1, true), err)
      assert.falsy(err:find("Signature=[%w%+/]"), err)
      assert.truthy(err:find("Bearer ***", 1, true) or err:find("Signature=***", 1, true), err)
    end
  end)

  it("hides a secret in every spelling a server may echo (the core's redaction), get and watch", function()
    local token = "S3cret+Value/With=Pad 0123456789"
    -- a module whose client answers with a message quoting the token as a
    -- careless server would: literal, percent-encoded, JSON-escaped, folded
    local echo = table.concat({token, "S3cret%2BValue%2FWith%3DPad%200123456789",
      "S3cret%2bValue%2fWith%3dPad+0123456789", "S3cret+Value\\/With=Pad\\u00200123456789",
      "S3cret+Value/With=Pad\n 0123456789"}, " | ")
    local acscall = require "acscall"
    local client = {}
    function client.get_call() return nil, "HTTP 401: " .. echo, {kind = "http", status = 401} end
    function client.get_calls(_, ids)
      local r = {}
      for i, id in ipairs(ids) do r[i] = {id = id, err = "HTTP 401: " .. echo, info = {kind = "http", status = 401}} end
      return r
    end
    function client.watch(c, ids, o) return require("acscall.watch").new(c, ids, o) end
    function client.close() end
    local fake = setmetatable({new = function() return client end}, {__index = acscall})
    for _, argv in ipairs{{"get", "a"}, {"get", "a", "b"}, {"watch", "a"}} do
      local out, err, rc = run(argv, {acscall = fake, env = {ACS_ENDPOINT = emu.endpoint, ACS_TOKEN = token}})
      local what = table.concat(argv, " ")
      assert.equal(3, rc, what .. ": " .. err)
      assert.equal("", out, what)
      assert.falsy(err:lower():find("s3cret", 1, true), err)
      assert.falsy(err:find("0123456789", 1, true), err)
      assert.matches("HTTP 401: %*%*%* | %*%*%*", err, what)
    end
  end)

  it("--help documents exit 3 for a refused credential and --json's null", function()
    local out, _, rc = run({"--help"})
    assert.equal(0, rc)
    assert.matches("3%s+transport or auth failure %(no connection, timeout, TLS, credential\n%s+refused: HTTP 401/403%)",
      out)
    out = run({"get", "--help"})
    assert.truthy(out:find("1e400) as null", 1, true))
  end)
end)
