-- spec/79-resty_failure_info_spec.lua: every failure the OpenResty paths return (the
-- lua-resty-http adapter, capture_get_call, capture_transport) is the core's: its kind is one
-- of core.KINDS and its info holds only the fields core.failure / core.decode give, never one
-- a Lua layer made up. Run outside nginx against stand-ins (a request_uri client; an `ngx`
-- whose location.capture answers from a list), so each failure path is reached at will.
local acscall = require "acscall"
local core = require "acscall.core"
local resty = require "acscall.resty"

local CALL = "18dea47f-b081-4107-9a5c-4300819d2c6c"
-- core.failure's fields, and the service's error model that core.decode adds for kind http
local FIELDS = { kind = 1, status = 1, attempts = 1, timeout = 1, request_id = 1, client_request_id = 1,
  code = 1, message = 1, target = 1, details = 1, innererror = 1 }

local function assert_core_failure(what, value, msg, info)
  assert.is_nil(value, what)
  assert.is_string(msg, what)
  assert.is_table(info, what)
  assert.is_truthy(core.KINDS[info.kind], what .. ": kind " .. tostring(info.kind))
  for k in pairs(info) do
    assert.is_truthy(FIELDS[k], what .. ": info." .. tostring(k) .. " is not the core's")
  end
  -- the message as the core shapes it: "<kind>: <info.message>", or "HTTP <status>: ..." (decode)
  if info.kind == "http" then
    assert.are.equal("HTTP " .. tostring(info.status) .. ": ", msg:sub(1, #tostring(info.status) + 7), what)
  else
    assert.are.equal(info.kind .. ": " .. tostring(info.message), msg, what)
  end
end

-- an ngx whose subrequests answer from `answers` (one per capture; {} when they run out)
local function stand_in_ngx(answers)
  local n = { HTTP_GET = 0, HTTP_POST = 1 }
  n.location = { capture = function() return table.remove(answers, 1) or { status = 502, truncated = true } end }
  n.sleep, n.now, n.get_phase = function() end, function() return 1000 end, function() return "content" end
  return n
end

local function in_ngx(answers, f)
  local saved = rawget(_G, "ngx")
  rawset(_G, "ngx", stand_in_ngx(answers))
  local r = { pcall(coroutine.wrap(f)) } -- a request handler runs in a coroutine (it may yield)
  rawset(_G, "ngx", saved)
  assert(r[1], r[2])
  return r[2], r[3], r[4]
end

local function answer(status, body, header)
  header = header or {}
  header["Content-Length"] = tostring(#body)
  return { status = status, body = body, header = header }
end

describe("the OpenResty paths' failures come from the core", function()
  local NOT_FOUND = '{"error":{"code":"8522","message":"Call not found."}}'
  local function client(extra)
    local o = { endpoint = "http://127.0.0.1:9/", retries = false }
    for k, v in pairs(extra or {}) do o[k] = v end
    if not o.credential then o.token = "t0ken-for-the-stand-ins" end
    return acscall.new(o)
  end
  local failing_cred = { get_token = function() return nil, "no answer from the token endpoint" end }
  local ctl_cred = { get_token = function() return "tok\1en", os.time() + 3600 end }

  it("http_get_call: refused, 404, not a call, a failing credential, a token with a control byte", function()
    local function httpc(res, err) return { request_uri = function() return res, err end } end
    local cases = {
      { "refused", httpc(nil, "connection refused") },
      { "404", httpc{ status = 404, body = NOT_FOUND, headers = { ["Content-Type"] = "application/json" } } },
      { "not a call", httpc{ status = 200, body = "[1]", headers = {} } },
      { "credential", httpc(nil, "unused"), { credential = failing_cred } },
      { "control byte", httpc(nil, "unused"), { credential = ctl_cred } },
    }
    for _, case in ipairs(cases) do
      local c = client(case[3])
      assert_core_failure(case[1], resty.http_get_call(case[2], c, CALL, case[3]))
      c:close()
    end
  end)

  it("capture_get_call: 404, 503 at the end, nginx's own failure, a failing credential, a control byte", function()
    local cases = {
      { "404", { answer(404, NOT_FOUND) } },
      { "503", { answer(503, "busy") } },
      { "nginx's failure", { { status = 502, truncated = true, header = {} } } },
      { "credential", {}, { credential = failing_cred } },
      { "control byte", {}, { credential = ctl_cred } },
    }
    for _, case in ipairs(cases) do
      local c = client(case[3])
      assert_core_failure(case[1], in_ngx(case[2], function() return resty.capture_get_call(c, CALL, case[3]) end))
      c:close()
    end
  end)

  it("capture_transport: nginx's own failure, a header with a control byte, outside a request", function()
    local t = resty.capture_transport{ retries = 0 }
    local req = { url = "http://127.0.0.1:9/token", headers = { Metadata = "true" } }
    assert_core_failure("nginx's failure", in_ngx({ { status = 502, truncated = true, header = {} } },
      function() return t:fetch(req) end))
    assert_core_failure("control byte", in_ngx({}, function()
      return t:fetch{ url = req.url, headers = { Metadata = "tr\1ue" } }
    end))
    local saved = rawget(_G, "ngx")
    local n = stand_in_ngx({})
    n.get_phase = function() return "init_worker" end
    rawset(_G, "ngx", n)
    local ok, a, b, c, mark = pcall(t.fetch, t, req)
    rawset(_G, "ngx", saved)
    assert(ok, a)
    assert_core_failure("outside a request", a, b, c)
    assert.are.equal("not_here", mark) -- beside the info, for the credential
  end)

  it("the check itself refuses a field no core function gives", function()
    assert.has_error(function() assert_core_failure("made up", nil, "x", { kind = "auth", not_here = true }) end)
    assert.has_error(function() assert_core_failure("made up", nil, "x", { kind = "usage" }) end)
    assert.has_error(function() assert_core_failure("made up", nil, "credential: x", { kind = "auth" }) end)
    assert.has_no_error(function() assert_core_failure("core", core.failure("auth", "x", { status = 401 })) end)
  end)
end)
