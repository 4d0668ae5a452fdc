-- The core's half of hostile servers: what a misbehaving server may not do to a
-- caller. Written before the core does it: each spec names its behaviour.
-- Servers that echo the credential (redaction in the failure contract),
-- one bad leaf or a lone surrogate not losing the call (tolerant decoding,
-- strict on request), a 200 that is an error and a body never asked for
-- (gzip) reported as what they are.
local acscall = require "acscall"
local helpers = require "spec.helpers"
local cli = require "acscall.cli"

local TOKEN = "s3cr3t-T0KEN-for-spec-56"

local SCENARIOS = {
  ["h-echo"] = {fault = "echoauth"},
  ["h-echo-html"] = {fault = "echoauth_html"},
  ["h-error200"] = {fault = "error200"},
  ["h-gzip"] = {fault = "gzip"},
}

-- every string in v (keys and values, nested tables), joined
local function all_strings(v, out)
  out = out or {}
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" then
    for k, x in pairs(v) do
      all_strings(k, out)
      all_strings(x, out)
    end
  end
  return out
end

local function contains(haystack, needle)
  return table.concat(all_strings(haystack), "\n"):find(needle, 1, true) ~= nil
end

describe("a hostile server (core)", function()
  local emu

  lazy_setup(function()
    emu = helpers.start_emulator{scenarios = SCENARIOS, token = TOKEN}
    local function fixture(name, body)
      local f = assert(io.open(emu.own_fixtures .. "/" .. name .. ".json", "wb"))
      f:write(body)
      f:close()
    end
    fixture("h-surrogate-end", '{"callConnectionId":"h-surrogate-end","sourceDisplayName":"Bob \\ud83d"}')
    fixture("h-surrogate-low", '{"callConnectionId":"h-surrogate-low","sourceDisplayName":"\\ude00 Ann \\ud83dx"}')
  end)
  lazy_teardown(function() if emu then emu:stop() end end)

  local function bearer(extra)
    local o = {endpoint = emu.endpoint, token = TOKEN, retries = false}
    for k, v in pairs(extra or {}) do o[k] = v end
    return acscall.new(o)
  end

  -- one get_call on a fresh client (closed again)
  local function fetch(id, extra)
    local c = bearer(extra)
    local call, err, info = c:get_call(id)
    c:close()
    return call, err, info
  end

  -- the CLI in process: stderr and exit code
  local function cli_stderr(vars, argv)
    local out, err = io.tmpfile(), io.tmpfile()
    local rc = cli.main(argv, {stdout = out, stderr = err, getenv = function(k) return vars[k] end})
    err:seek("set")
    local e = err:read("*a")
    out:close()
    err:close()
    return e, rc
  end

  describe("redaction", function()
    -- redaction: a server quoting the bearer token in its JSON error message
    it("a JSON error echoing the bearer token: no token in err, info, get_calls, the CLI, the log", function()
      local c = bearer()
      local call, err, info = c:get_call("h-echo")
      local results = c:get_calls({"h-echo", "state-connected"})
      c:close()
      assert.is_nil(call)
      assert.equal(401, info.status)
      assert.matches("^HTTP 401", err)
      assert.falsy(err:find(TOKEN, 1, true), err)
      assert.is_false(contains(info, TOKEN))
      assert.is_false(contains(results, TOKEN))
      local stderr, rc = cli_stderr({ACS_ENDPOINT = emu.endpoint, ACS_TOKEN = TOKEN}, {"get", "h-echo"})
      assert.equal(3, rc)
      assert.matches("HTTP 401", stderr)
      assert.falsy(stderr:find(TOKEN, 1, true), stderr)
      assert.falsy((helpers.read_file(emu.log_path) or ""):find(TOKEN, 1, true))
    end)

    -- redaction: a gateway quoting the bearer token in an HTML 403 page's <title>
    it("an HTML 403 echoing the bearer token in its title: no token in err or info", function()
      local call, err, info = fetch("h-echo-html")
      assert.is_nil(call)
      assert.equal(403, info.status)
      assert.falsy(err:find(TOKEN, 1, true), err)
      assert.is_false(contains(info, TOKEN))
    end)

    -- redaction: the HMAC signature of the request is a credential too
    it("an error echoing the HMAC Authorization: no signature in err or info", function()
      local c = acscall.new{connection_string = emu.connection_string, retries = false}
      local call, err, info = c:get_call("h-echo")
      c:close()
      assert.is_nil(call)
      assert.equal(401, info.status)
      local text = err .. "\n" .. table.concat(all_strings(info), "\n")
      assert.falsy(text:find("Signature=[%w%+/]"), text)
    end)
  end)

  describe("tolerant decoding", function()
    -- tolerant decoding: a known leaf of the wrong JSON type keeps the value the service sent
    it("a wrong-typed leaf (targets[3].phoneNumber.value a number) keeps the call and the value", function()
      local call, err = fetch("wrongtypes-targets")
      assert.is_table(call, err)
      assert.equal("connected", call.callConnectionState)
      assert.equal(3, #call.targets)
      assert.equal(14250123456, call.targets[3].phoneNumber.value)
    end)

    -- tolerant decoding: a lone surrogate escape decodes as U+FFFD
    it("a lone surrogate escape (\\ud83d at the end, a lone \\ude00) decodes as U+FFFD", function()
      local c = bearer()
      local call, err = c:get_call("h-surrogate-end")
      assert.is_table(call, err)
      assert.equal("Bob \239\191\189", call.sourceDisplayName)
      call, err = c:get_call("h-surrogate-low")
      c:close()
      assert.is_table(call, err)
      assert.equal("\239\191\189 Ann \239\191\189x", call.sourceDisplayName)
    end)

    -- strict = true: today's behaviour on request, the decode error with its path
    it("strict = true (new and decode) fails on the wrong-typed leaf, naming its path; the default does not", function()
      local c = bearer{strict = true}
      local call, err, info = c:get_call("wrongtypes-targets")
      c:close()
      assert.is_nil(call)
      assert.equal("decode", info.kind)
      assert.matches("^decode: targets%[3%]%.phoneNumber%.value: expected string, got number", err)
      local body = helpers.read_file(helpers.fixtures_dir() .. "/wrongtypes-targets.json")
      assert.is_table((acscall.decode(200, body)))
      local call2, err2 = acscall.decode(200, body, nil, {strict = true})
      assert.is_nil(call2)
      assert.matches("targets%[3%]%.phoneNumber%.value", err2)
    end)
  end)

  describe("bodies that are not a call", function()
    -- a 200 whose body is a CommunicationErrorResponse reports the service's error
    it("a 200 carrying a CommunicationErrorResponse: nil and the service's message and code", function()
      local call, err, info = fetch("h-error200")
      assert.is_nil(call)
      assert.equal(200, info.status)
      assert.truthy(err:find("The call is no longer active", 1, true), err)
      assert.truthy(err:find("CallNotActive", 1, true) or info.code == "CallNotActive", err)
    end)

    -- a compressed body (never requested) is reported by its Content-Encoding
    it("a gzip body (Content-Encoding: gzip, never requested): the message names the encoding", function()
      local call, err, info = fetch("h-gzip")
      assert.is_nil(call)
      assert.equal("decode", info.kind)
      assert.truthy(err:find("gzip", 1, true), err)
      assert.falsy(err:find("invalid JSON", 1, true), err)
    end)
  end)
end)
