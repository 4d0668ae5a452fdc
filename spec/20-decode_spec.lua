-- acscall.decode, acscall.raw_id, acscall.identifier_from_raw_id: pure, no I/O.
local acscall = require "acscall"

local decode, raw_id, from_raw = acscall.decode, acscall.raw_id, acscall.identifier_from_raw_id

local SAMPLE = [[
{
  "callConnectionId": "18dea47f-b081-4107-9a5c-4300819d2c6c",
  "serverCallId": "aHR0cHM6Ly9jb252ZXJzYXRpb251cmwvdGVzdA",
  "sourceCallerIdNumber": {
    "value": "+18440123456"
  },
  "source": {
    "kind": "communicationUser",
    "communicationUser": {
      "id": "8:acs:b9614373-fd0b-480c-8fd2-cb58b70eab9f_da7be3a9-8788-42a6-85c6-56b2cf784fce"
    }
  },
  "targets": [
    {
      "kind": "communicationUser",
      "communicationUser": {
        "id": "8:acs:b9614373-fd0b-480c-8fd2-cb58b70eab9f_0f50d091-5bd3-448b-884d-44be7037d9b9"
      }
    },
    {
      "kind": "phoneNumber",
      "phoneNumber": {
        "value": "+14250123456"
      }
    }
  ],
  "callConnectionState": "connected",
  "callbackUri": "https://app.contoso.com/callback"
}
]]

-- a call whose only field is targets = { ident }
local function one_target(ident_json)
  local call, msg = decode(200, '{"targets":[' .. ident_json .. ']}')
  assert(call, msg)
  return call.targets[1]
end

-- every value reachable from t, asserting no cjson.null (userdata) survives
local function assert_no_userdata(t, where)
  for k, v in pairs(t) do
    local p = (where or "") .. "." .. tostring(k)
    assert.is_not.equal("userdata", type(v), p)
    if type(v) == "table" then assert_no_userdata(v, p) end
  end
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- utf8.len where there is one (5.3+), else the same check by hand (5.1, 5.2, LuaJIT)
local function valid_utf8(s)
  local u = rawget(_G, "utf8")
  if u then return u.len(s) ~= nil end
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF) and 2 or (c >= 0xE0 and c <= 0xEF) and 3
      or (c >= 0xF0 and c <= 0xF4) and 4 or nil
    if not len or i + len - 1 > n then return false end
    for j = i + 1, i + len - 1 do
      local b = s:byte(j)
      if b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end

local function assert_one_line(msg)
  assert.is_string(msg)
  assert.is_nil(msg:find("[%c]"), "control character in: " .. msg)
  assert.is_true(#msg <= 310)
end

describe("acscall.decode", function()
  it("runs under the interpreter the suite was started for", function()
    assert.equal(os.getenv("ACSCALL_EXPECT_LUA") or "Lua 5.4", _VERSION)
  end)

  describe("the REST reference's sample call (fixture 18dea47f-...)", function()
    local call = assert(decode(200, SAMPLE))

    it("keeps every field with its wire name", function()
      assert.equal("18dea47f-b081-4107-9a5c-4300819d2c6c", call.callConnectionId)
      assert.equal("aHR0cHM6Ly9jb252ZXJzYXRpb251cmwvdGVzdA", call.serverCallId)
      assert.equal("connected", call.callConnectionState)
      assert.equal("https://app.contoso.com/callback", call.callbackUri)
      assert.same({ value = "+18440123456" }, call.sourceCallerIdNumber)
      assert.equal(7, count(call))
    end)

    it("gives the source its kind and derived rawId", function()
      local id = "8:acs:b9614373-fd0b-480c-8fd2-cb58b70eab9f_da7be3a9-8788-42a6-85c6-56b2cf784fce"
      assert.same({ kind = "communicationUser", rawId = id, communicationUser = { id = id } }, call.source)
    end)

    it("gives every target its kind and derived rawId", function()
      local id = "8:acs:b9614373-fd0b-480c-8fd2-cb58b70eab9f_0f50d091-5bd3-448b-884d-44be7037d9b9"
      assert.equal(2, #call.targets)
      assert.same({ kind = "communicationUser", rawId = id, communicationUser = { id = id } }, call.targets[1])
      assert.same({ kind = "phoneNumber", rawId = "4:+14250123456", phoneNumber = { value = "+14250123456" } },
        call.targets[2])
    end)

    it("has no userdata anywhere", function()
      assert_no_userdata(call)
    end)
  end)

  describe("identifiers", function()
    local cases = {
      { '{"kind":"communicationUser","communicationUser":{"id":"8:acs:r_u"}}', "8:acs:r_u" },
      { '{"kind":"communicationUser","communicationUser":{"id":"8:spool:x"}}', "8:spool:x" },
      { '{"kind":"phoneNumber","phoneNumber":{"value":"+14250123456"}}', "4:+14250123456" },
      { '{"kind":"phoneNumber","phoneNumber":{"value":"anonymous","isAnonymous":true}}', "4:anonymous" },
      { '{"kind":"phoneNumber","phoneNumber":{"value":"+1425","assertedId":"abc"}}', "4:+1425" },
      { '{"kind":"microsoftTeamsUser","microsoftTeamsUser":{"userId":"u1"}}', "8:orgid:u1" },
      { '{"kind":"microsoftTeamsUser","microsoftTeamsUser":{"userId":"u1","cloud":"public"}}', "8:orgid:u1" },
      { '{"kind":"microsoftTeamsUser","microsoftTeamsUser":{"userId":"u1","cloud":"dod"}}', "8:dod:u1" },
      { '{"kind":"microsoftTeamsUser","microsoftTeamsUser":{"userId":"u1","cloud":"gcch"}}', "8:gcch:u1" },
      { '{"kind":"microsoftTeamsUser","microsoftTeamsUser":{"userId":"u1","isAnonymous":true,"cloud":"dod"}}',
        "8:teamsvisitor:u1" },
      { '{"kind":"microsoftTeamsApp","microsoftTeamsApp":{"appId":"a1"}}', "28:orgid:a1" },
      { '{"kind":"microsoftTeamsApp","microsoftTeamsApp":{"appId":"a1","cloud":"public"}}', "28:orgid:a1" },
      { '{"kind":"microsoftTeamsApp","microsoftTeamsApp":{"appId":"a1","cloud":"dod"}}', "28:dod:a1" },
      { '{"kind":"microsoftTeamsApp","microsoftTeamsApp":{"appId":"a1","cloud":"gcch"}}', "28:gcch:a1" },
      { '{"kind":"teamsExtensionUser","teamsExtensionUser":{"userId":"u","tenantId":"t","resourceId":"r"}}',
        "8:acs:r_t_u" },
      { '{"kind":"teamsExtensionUser","teamsExtensionUser":{"userId":"u","tenantId":"t","resourceId":"r","cloud":"public"}}',
        "8:acs:r_t_u" },
      { '{"kind":"teamsExtensionUser","teamsExtensionUser":{"userId":"u","tenantId":"t","resourceId":"r","cloud":"dod"}}',
        "8:dod-acs:r_t_u" },
      { '{"kind":"teamsExtensionUser","teamsExtensionUser":{"userId":"u","tenantId":"t","resourceId":"r","cloud":"gcch"}}',
        "8:gcch-acs:r_t_u" },
    }
    for _, c in ipairs(cases) do
      it("derives " .. c[2] .. " from " .. c[1], function()
        local t = one_target(c[1])
        assert.equal(c[2], t.rawId)
        -- the same rule is exposed as acscall.raw_id
        local plain = one_target(c[1])
        plain.rawId = nil
        assert.equal(c[2], raw_id(plain))
      end)
    end

    it("infers a missing kind from the sub-object present", function()
      assert.equal("communicationUser", one_target('{"communicationUser":{"id":"8:acs:x"}}').kind)
      assert.equal("phoneNumber", one_target('{"phoneNumber":{"value":"+1"}}').kind)
      assert.equal("microsoftTeamsUser", one_target('{"microsoftTeamsUser":{"userId":"u"}}').kind)
      assert.equal("microsoftTeamsApp", one_target('{"microsoftTeamsApp":{"appId":"a"}}').kind)
      local ext = one_target('{"teamsExtensionUser":{"userId":"u","tenantId":"t","resourceId":"r","cloud":"gcch"}}')
      assert.equal("teamsExtensionUser", ext.kind)
      assert.equal("8:gcch-acs:r_t_u", ext.rawId)
      assert.same({ kind = "unknown", rawId = "x:y" }, one_target('{"rawId":"x:y"}'))
      assert.same({ kind = "unknown" }, one_target('{}'))
    end)

    it("keeps a rawId the service sent", function()
      local t = one_target('{"kind":"phoneNumber","rawId":"4:+1425_asserted","phoneNumber":{"value":"+1425"}}')
      assert.equal("4:+1425_asserted", t.rawId)
    end)

    it("derives a rawId the service sent empty, as raw_id does", function()
      local t = one_target('{"rawId":"","phoneNumber":{"value":"+1425"}}')
      assert.equal("4:+1425", t.rawId)
      assert.equal("4:+1425", acscall.raw_id{rawId = "", phoneNumber = {value = "+1425"}})
    end)

    it("keeps unknown kinds as data, with their rawId", function()
      local t = one_target('{"kind":"futureKind","rawId":"99:new:x","futureKind":{"a":1}}')
      assert.same({ kind = "futureKind", rawId = "99:new:x", futureKind = { a = 1 } }, t)
      assert.same({ kind = "futureKind" }, one_target('{"kind":"futureKind"}'))
    end)

    it("leaves answeredBy, answeredFor and sourceCallerIdNumber bare", function()
      local call = assert(decode(200, [[{"answeredBy":{"id":"8:acs:a"},
        "answeredFor":{"value":"+1","isAnonymous":false,"assertedId":"z"},
        "sourceCallerIdNumber":{"value":"+2"}}]]))
      assert.same({ id = "8:acs:a" }, call.answeredBy)
      assert.same({ value = "+1", isAnonymous = false, assertedId = "z" }, call.answeredFor)
      assert.same({ value = "+2" }, call.sourceCallerIdNumber)
    end)
  end)

  describe("subscriptions", function()
    it("keeps media streaming and transcription subscriptions", function()
      local call = assert(decode(200, [[{
        "mediaStreamingSubscription":{"id":"m1","state":"active","subscribedContentTypes":["audio"]},
        "transcriptionSubscription":{"id":"t1","state":"inactive","subscribedResultTypes":["final","intermediate"],
          "locale":"en-CA"},
        "correlationId":"c1","sourceDisplayName":"Contoso"}]]))
      assert.same({ id = "m1", state = "active", subscribedContentTypes = { "audio" } }, call.mediaStreamingSubscription)
      assert.same({ id = "t1", state = "inactive", subscribedResultTypes = { "final", "intermediate" }, locale = "en-CA" },
        call.transcriptionSubscription)
      assert.equal("c1", call.correlationId)
      assert.equal("Contoso", call.sourceDisplayName)
    end)

    it("accepts empty arrays and objects", function()
      local call = assert(decode(200, '{"targets":[],"mediaStreamingSubscription":{"subscribedContentTypes":[]}}'))
      assert.same({}, call.targets)
      assert.same({ subscribedContentTypes = {} }, call.mediaStreamingSubscription)
    end)
  end)

  describe("nulls", function()
    it("become absent fields at every depth, known or unknown", function()
      local call = assert(decode(200, [[{
        "callConnectionId":"c", "serverCallId":null, "correlationId":null, "answeredBy":null,
        "source":{"kind":null,"rawId":null,"phoneNumber":{"value":"+1","assertedId":null,"isAnonymous":null},
                  "communicationUser":null},
        "targets":[{"kind":"microsoftTeamsUser","microsoftTeamsUser":{"userId":"u","cloud":null}}],
        "mediaStreamingSubscription":{"id":null,"state":"active","subscribedContentTypes":null},
        "future":{"a":null,"b":{"c":null,"d":[null,1,null,{"e":null},null]}},
        "futureList":[null,null], "futureNull":null}]]))
      assert_no_userdata(call)
      assert.same({
        callConnectionId = "c",
        source = { kind = "phoneNumber", rawId = "4:+1", phoneNumber = { value = "+1" } },
        targets = { { kind = "microsoftTeamsUser", rawId = "8:orgid:u", microsoftTeamsUser = { userId = "u" } } },
        mediaStreamingSubscription = { state = "active" },
        -- nulls in unknown arrays are removed and the array compacted
        future = { b = { d = { 1, {} } } },
        futureList = {},
      }, call)
    end)

    it("in a known array are dropped (the array closes up), or with strict = true type errors", function()
      local body = '{"targets":[{"communicationUser":{"id":"x"}},null]}'
      local call = decode(200, body)
      assert.equal(1, #call.targets)
      assert.equal("x", call.targets[1].rawId)
      local msg, info
      call, msg, info = decode(200, body, nil, {strict = true})
      assert.is_nil(call)
      assert.equal("decode: targets[2]: expected object, got null", msg)
      assert.equal("decode", info.kind)
      body = '{"transcriptionSubscription":{"subscribedResultTypes":["final",null]}}'
      assert.same({"final"}, decode(200, body).transcriptionSubscription.subscribedResultTypes)
      call, msg = decode(200, body, nil, {strict = true})
      assert.is_nil(call)
      assert.equal("decode: transcriptionSubscription.subscribedResultTypes[2]: expected string, got null", msg)
    end)
  end)

  describe("forward compatibility", function()
    it("keeps unknown fields and unknown enum values", function()
      local call = assert(decode(200, [[{"callConnectionState":"onHold","newField":{"x":[1,"two",true]},
        "mediaStreamingSubscription":{"state":"paused","subscribedContentTypes":["video"],"extra":"e"},
        "targets":[{"kind":"phoneNumber","phoneNumber":{"value":"+1","carrier":"c"},"label":"l"}]}]]))
      assert.equal("onHold", call.callConnectionState)
      assert.same({ x = { 1, "two", true } }, call.newField)
      assert.same({ state = "paused", subscribedContentTypes = { "video" }, extra = "e" },
        call.mediaStreamingSubscription)
      assert.equal("c", call.targets[1].phoneNumber.carrier)
      assert.equal("l", call.targets[1].label)
      assert.equal("4:+1", call.targets[1].rawId)
    end)

    it("keeps an unknown cloud and derives as public", function()
      local t = one_target('{"microsoftTeamsUser":{"userId":"u","cloud":"mars"}}')
      assert.equal("mars", t.microsoftTeamsUser.cloud)
      assert.equal("8:orgid:u", t.rawId)
    end)
  end)

  describe("wrong types", function()
    local cases = {
      { '{"targets":[{"kind":"communicationUser","communicationUser":{"id":"x"}},{"phoneNumber":{"value":5}}]}',
        "targets[2].phoneNumber.value: expected string, got number" },
      { '{"callConnectionId":12}', "callConnectionId: expected string, got number" },
      { '{"callConnectionState":true}', "callConnectionState: expected string, got boolean" },
      { '{"callbackUri":["x"]}', "callbackUri: expected string, got array" },
      { '{"serverCallId":{"a":1}}', "serverCallId: expected string, got object" },
      { '{"targets":"x"}', "targets: expected array, got string" },
      { '{"targets":{"a":1}}', "targets: expected array, got object" },
      { '{"targets":[1]}', "targets[1]: expected object, got number" },
      { '{"targets":[[1]]}', "targets[1]: expected object, got array" },
      { '{"source":"x"}', "source: expected object, got string" },
      { '{"source":{"kind":1}}', "source.kind: expected string, got number" },
      { '{"source":{"rawId":false}}', "source.rawId: expected string, got boolean" },
      { '{"source":{"phoneNumber":{"value":"+1","isAnonymous":"yes"}}}',
        "source.phoneNumber.isAnonymous: expected boolean, got string" },
      { '{"source":{"microsoftTeamsUser":{"userId":"u","cloud":3}}}',
        "source.microsoftTeamsUser.cloud: expected string, got number" },
      { '{"source":{"teamsExtensionUser":{"userId":"u","tenantId":[],"resourceId":"r"}}}',
        "source.teamsExtensionUser.tenantId: expected string, got object" },
      { '{"source":{"microsoftTeamsApp":"a"}}', "source.microsoftTeamsApp: expected object, got string" },
      { '{"answeredBy":{"id":1}}', "answeredBy.id: expected string, got number" },
      { '{"answeredFor":[1]}', "answeredFor: expected object, got array" },
      { '{"sourceCallerIdNumber":{"value":null,"assertedId":2}}',
        "sourceCallerIdNumber.assertedId: expected string, got number" },
      { '{"mediaStreamingSubscription":{"subscribedContentTypes":"audio"}}',
        "mediaStreamingSubscription.subscribedContentTypes: expected array, got string" },
      { '{"mediaStreamingSubscription":{"subscribedContentTypes":["audio",1]}}',
        "mediaStreamingSubscription.subscribedContentTypes[2]: expected string, got number" },
      { '{"transcriptionSubscription":{"locale":1}}', "transcriptionSubscription.locale: expected string, got number" },
    }
    for _, c in ipairs(cases) do
      it("with strict = true, reports " .. c[2], function()
        local call, msg, info = decode(200, c[1], nil, {strict = true})
        assert.is_nil(call)
        assert.equal("decode: " .. c[2], msg)
        assert.equal("decode", info.kind)
        assert.equal(200, info.status)
        assert.equal(c[2], info.message)
      end)
      it("by default keeps the call and the odd value where " .. c[2]:match("^[^:]+"), function()
        local call = decode(200, c[1])
        assert.is_table(call)
        local json = require("cjson").decode(c[1])
        for k in pairs(json) do
          if json[k] ~= require("cjson").null then assert.is_not_nil(call[k], k) end
        end
        -- no cjson.null anywhere: the odd values come back as sent, nulls gone
        local function walk(v)
          assert.is_not.equal("userdata", type(v))
          if type(v) == "table" then for _, x in pairs(v) do walk(x) end end
        end
        walk(call)
      end)
    end
  end)

  -- the shaping pass takes shortcuts: a body without the bytes
  -- "null" is only walked to its identifiers, an identifier without a kind is
  -- copied into a table of its own, a body is scanned for lone surrogates only
  -- when cjson refused it. fuzz/fuzz_decode_diff.c holds it to the decoder it
  -- replaced; these pin what a user sees of each shortcut.
  describe("shortcuts", function()
    it("by default a body without null comes back as sent, but for the identifiers' kind and rawId", function()
      local call = assert(decode(200, '{"callbackUri":["x"],"serverCallId":{"a":1},"answeredFor":[1],' ..
        '"targets":[[1],{"phoneNumber":{"value":5}},"t"],"source":{"kind":1,"rawId":false,"phoneNumber":"p"}}'))
      assert.same({
        callbackUri = { "x" }, serverCallId = { a = 1 }, answeredFor = { 1 },
        -- no rawId can be derived from a number; an odd kind or rawId is kept
        targets = { { 1 }, { kind = "phoneNumber", phoneNumber = { value = 5 } }, "t" },
        source = { kind = 1, rawId = false, phoneNumber = "p" },
      }, call)
    end)

    it("completes an identifier without a kind with every field it had", function()
      assert.same({ kind = "phoneNumber", rawId = "4:+1", phoneNumber = { value = "+1", x = 1 },
                    extra = { a = { 1, 2 } }, more = "m", n = 2, o = false },
        one_target('{"phoneNumber":{"value":"+1","x":1},"extra":{"a":[1,2]},"more":"m","n":2,"o":false}'))
    end)

    it("reads the text null inside strings as text", function()
      assert.same({ callConnectionId = "null", sourceDisplayName = "nullnull", x = { "null" },
                    targets = { { kind = "phoneNumber", rawId = "4:null", phoneNumber = { value = "null" } } } },
        assert(decode(200, '{"callConnectionId":"null","sourceDisplayName":"nullnull",' ..
          '"targets":[{"phoneNumber":{"value":"null"}}],"x":["null"]}')))
    end)

    it("decodes a lone surrogate escape as U+FFFD, and reports a body malformed besides as cjson does", function()
      local call = assert(decode(200,
        '{"callConnectionId":"a\\ud83d","sourceDisplayName":"\\ude00b","x":"\\ud83d\\ude00","y":"\\\\ud800"}'))
      assert.equal("a\239\191\189", call.callConnectionId)
      assert.equal("\239\191\189b", call.sourceDisplayName)
      assert.equal("\240\159\152\128", call.x) -- a pair is one character
      assert.equal("\\ud800", call.y) -- an escaped backslash: text
      -- the escape is fixed before cjson's reason is taken: the reason is the comma
      local nocall, msg = decode(200, '{"callConnectionId":"a\\ud83d",}')
      assert.is_nil(nocall)
      assert.equal("decode: invalid JSON: Expected object key string but found T_OBJ_END at character 31", msg)
    end)
  end)

  describe("bodies that are not a call", function()
    local function fails(body, expected)
      local call, msg, info = decode(200, body)
      assert.is_nil(call)
      assert.equal("decode", info.kind)
      assert_one_line(msg)
      if expected then assert.equal(expected, msg) end
      return msg
    end

    it("empty", function()
      fails("", "decode: response body is empty")
      fails(" \r\n", "decode: response body is empty")
      fails(nil, "decode: response body is empty")
    end)

    it("not an object", function()
      fails("[]", "decode: expected a JSON object, got array")
      fails(" [1] ", "decode: expected a JSON object, got array")
      fails('"x"', "decode: expected a JSON object, got string")
      fails("null", "decode: expected a JSON object, got null")
      fails("1", "decode: expected a JSON object, got number")
    end)

    it("malformed, with cjson's reason", function()
      assert.matches("^decode: invalid JSON: .*character", fails('{"a":'))
      assert.matches("^decode: invalid JSON: ", fails("<html>"))
      assert.matches("^decode: invalid JSON: ", fails('{"a":NaN}'))
    end)

    it("too deep", function()
      fails(string.rep("[", 1000) .. string.rep("]", 1000))
      assert.matches("^decode: invalid JSON: .*nested",
        fails('{"x":' .. string.rep("[", 1000) .. string.rep("]", 1000) .. "}"))
    end)

    it("does not change the host application's cjson settings", function()
      local cjson = require "cjson"
      local before = cjson.decode_max_depth()
      fails(string.rep("[", 100) .. string.rep("]", 100))
      assert.equal(before, cjson.decode_max_depth())
      assert.is_table(cjson.decode(string.rep("[", 100) .. string.rep("]", 100)))
    end)
  end)

  describe("HTTP errors", function()
    it("404 with a CommunicationErrorResponse", function()
      local call, msg, info = decode(404,
        '{"error":{"code":"8522","message":"Call not found.","target":null,"details":[],"innererror":{"code":"x","message":null}}}',
        { ["X-MS-Request-Id"] = "req-1", ["x-ms-client-request-id"] = "cli-1", ["Content-Type"] = "application/json" })
      assert.is_nil(call)
      assert.equal("HTTP 404: Call not found. (code 8522)", msg)
      assert.equal("http", info.kind)
      assert.equal(404, info.status)
      assert.equal("8522", info.code)
      assert.equal("Call not found.", info.message)
      assert.is_nil(info.target)
      assert.same({}, info.details)
      assert.same({ code = "x" }, info.innererror)
      assert.equal("req-1", info.request_id)
      assert.equal("cli-1", info.client_request_id)
    end)

    it("a numeric code becomes a string; a multi-line message one line", function()
      local _, msg, info = decode(400, '{"error":{"code":8523,"message":"Bad\\r\\nthing\\there","target":"id"}}')
      assert.equal("8523", info.code)
      assert.equal("id", info.target)
      assert.equal("Bad\r\nthing\there", info.message)
      assert.equal("HTTP 400: Bad thing here (code 8523)", msg)
      assert_one_line(msg)
    end)

    it("502 with an HTML body", function()
      local call, msg, info = decode(502, "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
        .. "<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
        { ["content-type"] = "text/html" })
      assert.is_nil(call)
      assert.equal("HTTP 502: 502 Bad Gateway", msg)
      assert.equal("http", info.kind)
      assert.equal(502, info.status)
      assert.is_nil(info.code)
      assert_one_line(msg)
    end)

    it("500 with HTML without a title, plain text, or nothing", function()
      local _, msg = decode(500, "<html><body><h1>Internal\nError</h1></body></html>")
      assert.equal("HTTP 500: Internal Error", msg)
      _, msg = decode(500, "upstream timed out\r\nsecond line")
      assert.equal("HTTP 500: upstream timed out", msg)
      local _, msg2, info = decode(503, "")
      assert.equal("HTTP 503: Service Unavailable", msg2)
      assert.equal(503, info.status)
    end)

    it("caps a huge message", function()
      local _, msg = decode(500, '{"error":{"code":"1","message":"' .. string.rep("é", 1000) .. '"}}')
      assert_one_line(msg)
      assert.matches("%.%.%.$", msg)
      assert.is_true(valid_utf8(msg))
    end)

    it("redacts a signature or token the body quotes with JSON-escaped slashes", function()
      -- cjson.encode writes '/' as "\/": a base64 signature starting with '/' once slipped through.
      -- Real values: an HMAC-SHA256 signature is 44 base64 characters, a token hundreds; a value
      -- after "Bearer " or "Signature=" is hidden from core.LIMITS.redact_bearer_min characters on
      local _, msg, info = decode(401, '{"error":{"code":"Unauthorized","message":' ..
        '"header SignedHeaders=host&Signature=\\/prrg+IMaK\\/6v4=Zm9vYmFyYmF6cXV4cXV1eA== and ' ..
        'Bearer \\/tok\\/en=eyJ0eXAiOiJKV1QifQ are invalid"}}')
      local text = msg .. "\n" .. tostring(info.message)
      assert.not_matches("Signature=[%w%+/\\]", text)
      assert.not_matches("prrg", text, 1, true)
      assert.not_matches("tok", text, 1, true)
      assert.matches("Signature=***", msg, 1, true)
    end)

    it("uses the client request id when the service sent none", function()
      local _, _, info = decode(401, '{"error":{"code":"Unauthorized","message":"Denied"}}',
        { ["X-Ms-Client-Request-Id"] = "cli-2" })
      assert.equal("cli-2", info.request_id)
      assert.equal("cli-2", info.client_request_id)
      assert.equal("Unauthorized", info.code)
    end)
  end)

  describe("arguments", function()
    it("raise on programmer mistakes", function()
      assert.has_error(function() decode("x", "{}") end)
      assert.has_error(function() decode(200, {}) end)
      assert.has_error(function() decode(200, "{}", "headers") end)
    end)
  end)
end)

describe("acscall.raw_id", function()
  it("prefers a given rawId", function()
    assert.equal("4:+1_a", raw_id({ kind = "phoneNumber", rawId = "4:+1_a", phoneNumber = { value = "+1" } }))
    assert.equal("x:y", raw_id({ rawId = "x:y" }))
  end)

  it("infers the kind and returns nil when nothing can be derived", function()
    assert.equal("8:acs:x", raw_id({ communicationUser = { id = "8:acs:x" } }))
    assert.is_nil(raw_id({}))
    assert.is_nil(raw_id({ kind = "unknown" }))
    assert.is_nil(raw_id({ kind = "phoneNumber", phoneNumber = {} }))
  end)

  it("raises on a non-table", function()
    assert.has_error(function() raw_id("8:acs:x") end)
  end)
end)

describe("acscall.identifier_from_raw_id", function()
  local rows = {
    { "8:acs:r_u", { kind = "communicationUser", communicationUser = { id = "8:acs:r_u" } } },
    { "8:acs:u", { kind = "communicationUser", communicationUser = { id = "8:acs:u" } } },
    { "8:spool:r_t_u", { kind = "communicationUser", communicationUser = { id = "8:spool:r_t_u" } } },
    { "8:dod-acs:a_b", { kind = "communicationUser", communicationUser = { id = "8:dod-acs:a_b" } } },
    { "4:+14250123456", { kind = "phoneNumber", phoneNumber = { value = "+14250123456", isAnonymous = false } } },
    { "4:anonymous", { kind = "phoneNumber", phoneNumber = { value = "anonymous", isAnonymous = true } } },
    { "4:+1425_abc", { kind = "phoneNumber", phoneNumber = { value = "+1425_abc", isAnonymous = false, assertedId = "abc" } } },
    { "4:+1425_", { kind = "phoneNumber", phoneNumber = { value = "+1425_", isAnonymous = false } } },
    { "8:teamsvisitor:v", { kind = "microsoftTeamsUser", microsoftTeamsUser = { userId = "v", isAnonymous = true } } },
    { "8:orgid:u", { kind = "microsoftTeamsUser", microsoftTeamsUser = { userId = "u", isAnonymous = false, cloud = "public" } } },
    { "8:dod:u", { kind = "microsoftTeamsUser", microsoftTeamsUser = { userId = "u", isAnonymous = false, cloud = "dod" } } },
    { "8:gcch:u", { kind = "microsoftTeamsUser", microsoftTeamsUser = { userId = "u", isAnonymous = false, cloud = "gcch" } } },
    { "28:orgid:a", { kind = "microsoftTeamsApp", microsoftTeamsApp = { appId = "a", cloud = "public" } } },
    { "28:dod:a", { kind = "microsoftTeamsApp", microsoftTeamsApp = { appId = "a", cloud = "dod" } } },
    { "28:gcch:a", { kind = "microsoftTeamsApp", microsoftTeamsApp = { appId = "a", cloud = "gcch" } } },
    { "8:acs:r_t_u", { kind = "teamsExtensionUser",
      teamsExtensionUser = { resourceId = "r", tenantId = "t", userId = "u", cloud = "public" } } },
    { "8:dod-acs:r_t_u", { kind = "teamsExtensionUser",
      teamsExtensionUser = { resourceId = "r", tenantId = "t", userId = "u", cloud = "dod" } } },
    { "8:gcch-acs:r_t_u", { kind = "teamsExtensionUser",
      teamsExtensionUser = { resourceId = "r", tenantId = "t", userId = "u", cloud = "gcch" } } },
    { "8:acs:r_t_u_v", { kind = "communicationUser", communicationUser = { id = "8:acs:r_t_u_v" } } },
    { "8:acs:x:y", { kind = "unknown" } },
    { "8:orgid", { kind = "unknown" } },
    { "48:unknown:x", { kind = "unknown" } },
    { "", { kind = "unknown" } },
  }
  for _, row in ipairs(rows) do
    it("maps '" .. row[1] .. "'", function()
      local expected = row[2]
      expected.rawId = row[1]
      assert.same(expected, from_raw(row[1]))
    end)
  end

  it("round-trips every kind and cloud through raw_id", function()
    local ids = {
      { communicationUser = { id = "8:acs:r_u" } },
      { phoneNumber = { value = "+14250123456", isAnonymous = false } },
      { phoneNumber = { value = "anonymous", isAnonymous = true } },
      { microsoftTeamsUser = { userId = "u", isAnonymous = true } },
      { teamsExtensionUser = { resourceId = "r", tenantId = "t", userId = "u", cloud = "public" } },
    }
    for _, cloud in ipairs({ "public", "dod", "gcch" }) do
      ids[#ids + 1] = { microsoftTeamsUser = { userId = "u", isAnonymous = false, cloud = cloud } }
      ids[#ids + 1] = { microsoftTeamsApp = { appId = "a", cloud = cloud } }
      ids[#ids + 1] = { teamsExtensionUser = { resourceId = "r", tenantId = "t", userId = "u", cloud = cloud } }
    end
    for _, x in ipairs(ids) do
      local kind = next(x)
      local raw = assert(raw_id(x))
      local back = from_raw(raw)
      assert.equal(kind, back.kind)
      assert.same(x[kind], back[kind])
      assert.equal(raw, back.rawId)
      assert.equal(raw, raw_id(back))
    end
  end)

  it("raises on a non-string", function()
    assert.has_error(function() from_raw({}) end)
  end)
end)
