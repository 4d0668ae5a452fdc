-- The core's rules, each held by one C procedure and exported: the header-value rule, redaction,
-- the failure shape, the limits, the options (described once and checked), the connection-string
-- parser and the form encoder. What a user sees: a raise naming the option at their own line, a
-- token that never reaches the wire, a message with no secret in it.
local acscall = require "acscall"
local core = require "acscall.core"
local helpers = require "spec.helpers"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local EP = "https://a.b/"

-- the error a function raises, as a string
local function raised(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- the control bytes of the header-value rule: C0 (tab included) and DEL
local BAD = {"\1", "\11", "\27", "\127", "\t", "\0", "\r", "\n"}

describe("the header-value rule", function()
  it("core.check_header_value refuses any C0 byte or DEL and never quotes the value", function()
    assert.is_true(core.check_header_value("Bearer abc.DEF-123_~+/="))
    assert.is_true(core.check_header_value(""))
    for _, b in ipairs(BAD) do
      local ok, why = core.check_header_value("s3cr3tvalue" .. b .. "x")
      assert.is_nil(ok)
      assert.matches("control", why)
      assert.not_matches("s3cr3t", why, 1, true)
    end
  end)

  it("a static token with a control byte raises at new, naming 'token' and not the value", function()
    for _, b in ipairs(BAD) do
      local err = raised(acscall.new, {endpoint = EP, token = "tok3nvalue" .. b .. "rest"})
      assert.matches("'token'", err, 1, true)
      assert.not_matches("tok3nvalue", err, 1, true)
    end
  end)

  it("an access key or connection string with a control byte raises, naming the option", function()
    local key = "QUJDREVGR0hJSktMTU5PUA=="
    local err = raised(acscall.new, {endpoint = EP, access_key = key .. "\1"})
    assert.matches("'access_key'", err, 1, true)
    assert.not_matches(key, err, 1, true)
    err = raised(acscall.new, {connection_string = "endpoint=" .. EP .. ";accesskey=" .. key .. "\127"})
    assert.matches("'connection_string'", err, 1, true)
    assert.not_matches(key, err, 1, true)
  end)

  describe("against the emulator", function()
    local emu
    lazy_setup(function() emu = helpers.start_emulator() end)
    lazy_teardown(function() if emu then emu:stop() end end)

    it("a token_provider's token with a control byte: nil, msg, auth, and nothing is sent", function()
      for _, b in ipairs{"\1", "\11", "\27", "\127", "\t"} do
        local tok = emu.token .. b
        local c = acscall.new{endpoint = emu.endpoint, token_provider = function() return tok end}
        emu:clear_log()
        local call, msg, info = c:get_call(SEED)
        assert.is_nil(call)
        assert.equal("auth", info.kind)
        assert.matches("^auth: ", msg)
        assert.not_matches(emu.token, msg, 1, true)
        local results = c:get_calls({SEED, SEED})
        for i = 1, 2 do
          assert.equal("auth", results[i].info.kind)
        end
        assert.equal(0, #emu:calls(), "a request reached the service")
        c:close()
      end
    end)

    it("a credential's token with a control byte: nil, msg, auth, and nothing is sent", function()
      local cred = {get_token = function() return emu.token .. "\27[31m", os.time() + 3600 end}
      local c = acscall.new{endpoint = emu.endpoint, credential = cred}
      emu:clear_log()
      local call, msg, info = c:get_call(SEED)
      assert.is_nil(call)
      assert.equal("auth", info.kind)
      assert.not_matches(emu.token, msg, 1, true)
      assert.equal(0, #emu:calls())
      c:close()
    end)

    it("a clean token still works (the rule refuses nothing a token68 holds)", function()
      local c = acscall.new{endpoint = emu.endpoint, token_provider = function() return emu.token end}
      assert(c:get_call(SEED))
      c:close()
    end)
  end)

  it("the fetcher refuses a header value with a control byte, naming the header only", function()
    local f = core.fetcher()
    local err = raised(function()
      f:fetch{url = "http://127.0.0.1:9/", headers = {Metadata = "tru\1e-s3cr3t"}}
    end)
    assert.matches("Metadata", err, 1, true)
    assert.not_matches("s3cr3t", err, 1, true)
    f:close()
  end)
end)

describe("a credential's failure", function()
  it("reaches the user once shaped: no second kind, its bearer values redacted", function()
    local jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0"
    local cred = {get_token = function()
      return core.failure("auth", "client_secret: the authority said Bearer " .. jwt, {status = 401})
    end}
    local c = acscall.new{endpoint = "http://127.0.0.1:9/", credential = cred}
    local call, msg, info = c:get_call(SEED)
    assert.is_nil(call)
    assert.equal("auth", info.kind)
    assert.equal("auth: credential: client_secret: the authority said Bearer ***", msg)
    -- a credential that returns a plain message (no info) is shown as it said it, redacted
    cred.get_token = function() return nil, "no token: Bearer " .. jwt end
    call, msg = c:get_call(SEED)
    assert.is_nil(call)
    assert.equal("auth: credential: no token: Bearer ***", msg)
    c:close()
  end)
end)

describe("core.redact", function()
  it("hides a percent-encoded secret (upper or lower hex)", function()
    local s = "S3cret+Value/With=Pad"
    assert.equal("client_secret=***&grant_type=x",
      core.redact("client_secret=S3cret%2BValue%2FWith%3DPad&grant_type=x", {s}))
    assert.equal("echo: ***", core.redact("echo: S3cret%2bValue%2fWith%3dPad", {s}))
    assert.equal("echo: ***", core.redact("echo: S3cret%2BValue/With%3dPad", {s}))
  end)

  it("hides a secret whose newline was folded into a space, or sent with '+' for a space", function()
    local s = "first-half\nsecond-half"
    assert.equal("got *** here", core.redact("got first-half second-half here", {s}))
    assert.equal("got *** here", core.redact("got first-half\r\n  second-half here", {s}))
    assert.equal("got *** here", core.redact("got first-half+second-half here", {s}))
    assert.equal("got *** here", core.redact("got first-half%0Asecond-half here", {s}))
  end)

  it("hides a JSON-escaped secret (\\/ and \\uXXXX)", function()
    local s = "abc/def\"ghi/jkl"
    assert.equal('{"m":"*** x"}', core.redact('{"m":"abc\\/def\\"ghi\\/jkl x"}', {s}))
    assert.equal('{"m":"***"}', core.redact('{"m":"\\u0061bc\\u002fdef\\u0022ghi/jkl"}', {s}))
  end)

  it("keeps \"invalid bearer token\" readable and hides a real bearer value or signature", function()
    assert.equal("invalid bearer token", core.redact("invalid bearer token", {}))
    assert.equal("Bearer token expired", core.redact("Bearer token expired"))
    local jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    assert.equal("Authorization: Bearer *** was refused",
      core.redact("Authorization: Bearer " .. jwt .. " was refused", {}))
    assert.equal("SignedHeaders=host&Signature=***",
      core.redact("SignedHeaders=host&Signature=/prrg+IMaK/6v4=Zm9vYmFyYmF6cXV4cXV1eA==", {}))
    -- 15 token68 characters stay, 16 go (core.LIMITS.redact_bearer_min)
    local n = core.LIMITS.redact_bearer_min
    assert.equal("Bearer " .. ("a"):rep(n - 1), core.redact("Bearer " .. ("a"):rep(n - 1), {}))
    assert.equal("Bearer ***", core.redact("Bearer " .. ("a"):rep(n), {}))
  end)

  it("ignores secrets shorter than LIMITS.redact_min, nils and holes", function()
    local min = core.LIMITS.redact_min
    local short = ("k"):rep(min - 1)
    local long = ("q"):rep(min)
    assert.equal("a " .. short .. " b *** c",
      core.redact("a " .. short .. " b " .. long .. " c", {short, nil, long}))
    assert.equal("plain", core.redact("plain", {}))
  end)

  it("core.failure(kind, text, {secrets=, code=}) redacts and shapes; Lua builds no info", function()
    local secret = "Cl1entS3cretValue"
    local r, msg, info = core.failure("auth", "token endpoint said: bad secret Cl1entS3cretValue",
      {secrets = {secret}, code = "invalid_client", status = 401, attempts = 2})
    assert.is_nil(r)
    assert.equal("auth: token endpoint said: bad secret ***", msg)
    assert.equal("auth", info.kind)
    assert.equal("invalid_client", info.code)
    assert.equal(401, info.status)
    assert.equal(2, info.attempts)
    assert.not_matches(secret, info.message, 1, true)
    assert.is_true(core.KINDS.auth)
    assert.has_error(function() core.failure("usage", "x") end)
  end)
end)

describe("options described once", function()
  it("an unknown option raises naming it and the nearest known name", function()
    local err = raised(acscall.new, {endpoint = EP, token = "t", retires = 5})
    assert.matches("unknown option 'retires' (did you mean 'retries'?)", err, 1, true)
    err = raised(acscall.new, {endpoint = EP, token = "t", timeot = 3})
    assert.matches("unknown option 'timeot' (did you mean 'timeout'?)", err, 1, true)
    err = raised(acscall.new, {endpoint = EP, token = "t", zzzzzzzzzzzzz = 1})
    assert.matches("unknown option 'zzzzzzzzzzzzz'", err, 1, true)
    assert.not_matches("did you mean", err, 1, true)
    err = raised(core.fetcher, {retires = 2})
    assert.matches("unknown option 'retires' (did you mean 'retries'?)", err, 1, true)
  end)

  it("get_calls' options are checked too ('concurency')", function()
    local c = acscall.new{endpoint = "http://127.0.0.1:9/", token = "t"}
    local err = raised(function() c:get_calls({"a"}, {concurency = 3}) end)
    assert.matches("unknown option 'concurency' (did you mean 'concurrency'?)", err, 1, true)
    c:close()
  end)

  it("a wrong type raises naming the option (strict = \"false\" no longer turns strict on)", function()
    for _, v in ipairs{"false", 0, {}} do
      local err = raised(acscall.new, {endpoint = EP, token = "t", strict = v})
      assert.matches("option 'strict' must be a boolean", err, 1, true)
    end
    assert.matches("'timeout'", raised(acscall.new, {endpoint = EP, token = "t", timeout = "5"}))
    assert.matches("'on_attempt'", raised(acscall.new, {endpoint = EP, token = "t", on_attempt = 1}))
    assert.matches("'max_depth'", raised(acscall.new, {endpoint = EP, token = "t", max_depth = 4.5}))
    assert.matches("option names", raised(acscall.new, {endpoint = EP, token = "t", [1] = true}))
  end)

  it("core.OPTIONS lists every option new accepts, with its type and default", function()
    local seen = {}
    for _, o in ipairs(acscall.OPTIONS) do
      assert.is_string(o.name)
      assert.is_string(o.type)
      assert.is_string(o.doc)
      seen[o.name] = o
    end
    for _, name in ipairs{"endpoint", "connection_string", "access_key", "token", "token_provider",
        "credential", "api_version", "ca_file", "user_agent", "timeout", "connect_timeout",
        "deadline", "retries", "max_body", "max_depth", "strict", "on_attempt"} do
      assert.is_table(seen[name], name)
    end
    -- every default is accepted as a value
    local opts = {endpoint = EP, token = "t"}
    for name, o in pairs(seen) do
      if o.default ~= nil and name ~= "api_version" then opts[name] = o.default end
    end
    acscall.new(opts):close()
    assert.equal(core.DEFAULT_API_VERSION, seen.api_version.default)
    assert.equal(core.LIMITS.timeout_default, seen.timeout.default)
    assert.equal(false, seen.strict.default)
    assert.is_table(core.FETCHER_OPTIONS)
    assert.equal("concurrency", core.GET_CALLS_OPTIONS[1].name)
  end)

  it("core.LIMITS are the bounds new, get_calls and the ids enforce", function()
    local L = acscall.LIMITS
    local function ok(extra)
      local o = {endpoint = EP, token = "t"}
      for k, v in pairs(extra) do o[k] = v end
      acscall.new(o):close()
    end
    local function bad(name, extra)
      local o = {endpoint = EP, token = "t"}
      for k, v in pairs(extra) do o[k] = v end
      assert.matches(name, raised(acscall.new, o), 1, true)
    end
    ok{max_depth = L.max_depth_max}
    bad("'max_depth'", {max_depth = L.max_depth_max + 1})
    ok{retries = {max = L.retries_max}}
    bad("'retries.max'", {retries = {max = L.retries_max + 1}})
    ok{max_body = L.max_body_min}
    bad("'max_body'", {max_body = L.max_body_min - 1})
    ok{timeout = L.seconds_max}
    bad("'timeout'", {timeout = L.seconds_max + 1})
    ok{user_agent = ("u"):rep(L.user_agent_max)}
    bad("'user_agent'", {user_agent = ("u"):rep(L.user_agent_max + 1)})
    ok{api_version = ("v"):rep(L.api_version_max)}
    bad("'api_version'", {api_version = ("v"):rep(L.api_version_max + 1)})
    assert.equal(acscall.ID_MAX, L.id_max)
    local c = acscall.new{endpoint = "http://127.0.0.1:9/", token = "t"}
    assert.matches("1 to " .. L.id_max, raised(function() c:get_call(("x"):rep(L.id_max + 1)) end))
    assert.matches("'concurrency'",
      raised(function() c:get_calls({"a"}, {concurrency = L.concurrency_max + 1}) end))
    c:close()
  end)
end)

describe("errors at the caller's line", function()
  local function line_of_raise(f)
    local ok, err = pcall(f)
    assert.is_false(ok)
    return tonumber(tostring(err):match("36%-rules_spec%.lua:(%d+):"))
  end

  it("new, get_call and get_calls point at the line that called them", function()
    local c = acscall.new{endpoint = "http://127.0.0.1:9/", token = "t"}
    local function at(f) return line_of_raise(f) end
    local here = debug.getinfo(1, "l").currentline
    assert.equal(here + 1, at(function() acscall.new{endpoint = EP, token = "t", retires = 5} end))
    assert.equal(here + 2, at(function() acscall.new(42) end))
    assert.equal(here + 3, at(function() acscall.new{endpoint = EP, token = "t", strict = 0} end))
    assert.equal(here + 4, at(function() c:get_call(42) end))
    assert.equal(here + 5, at(function() c:get_calls({"ok", 42}) end))
    assert.equal(here + 6, at(function() c:get_calls({"a"}, {concurency = 2}) end))
    c:close()
  end)
end)

describe("one parser, one encoder", function()
  it("core.parse_connection_string is new's parser", function()
    local key = "QUJDREVGR0hJSktMTU5PUA=="
    local t = core.parse_connection_string(" AccessKey=" .. key .. " ; ENDPOINT=https://x.y/ ;")
    assert.same({endpoint = "https://x.y/", access_key = key}, t)
    local r, msg = core.parse_connection_string("endpoint=https://x.y/;accesskey=" .. key .. ";endpoint=z")
    assert.is_nil(r)
    assert.is_string(msg)
    assert.not_matches(key, msg, 1, true)
    r, msg = core.parse_connection_string("endpoint=https://x.y/")
    assert.is_nil(r)
    assert.matches("accesskey", msg)
  end)

  it("core.form_encode: keys sorted, unreserved kept, the rest %XX", function()
    assert.equal("a=1%2B2%2F3&b=x%20y&c=~._-", core.form_encode{c = "~._-", b = "x y", a = "1+2/3"})
    assert.equal("", core.form_encode{})
    assert.has_error(function() core.form_encode{a = 1} end)
  end)
end)
