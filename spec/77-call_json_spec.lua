-- core.call_json (csrc/tojson.c): a 2xx body -> the call's JSON in one pass,
-- the OpenResty event path's answer. For every emulator fixture and every
-- fuzz seed (fuzz/seeds/fuzz_decode*, their first byte is the harness's
-- selector) the text is valid JSON (dkjson, strict about the grammar) whose
-- decoding deep-equals acscall.decode(200, body); a body that is not a call
-- fails as decode fails; empty arrays stay arrays.
local helpers = require "spec.helpers"
local acscall = require "acscall"
local core = require "acscall.core"
local cjson = require "cjson.safe"
local dkjson = require "dkjson"

local function deep_equal(a, b)
  if a ~= a and b ~= b then return true end -- NaN
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function jsontype(t)
  local mt = getmetatable(t)
  return mt and mt.__jsontype
end

local function bodies()
  local out = {}
  local root = helpers.repo_root()
  local list = helpers.run("ls " .. helpers.shell_quote(root .. "/emulator/fixtures") .. " | grep '\\.json$' | grep -v '\\.meta\\.json$'")
  for name in list:gmatch("[^\n]+") do
    out[#out + 1] = { "fixture " .. name, helpers.read_file(root .. "/emulator/fixtures/" .. name) }
  end
  for _, h in ipairs{ "fuzz_decode", "fuzz_decode_diff" } do
    local dir = root .. "/fuzz/seeds/" .. h
    for name in helpers.run("ls " .. helpers.shell_quote(dir)):gmatch("[^\n]+") do
      local data = helpers.read_file(dir .. "/" .. name) or ""
      out[#out + 1] = { h .. "/" .. name, data:sub(2) }
    end
  end
  return out
end

describe("core.call_json", function()
  local all = bodies()

  it("reads the whole corpus (fixtures and fuzz seeds)", function()
    assert.is_true(#all > 100, #all .. " bodies")
  end)

  it("answers JSON equal to acscall.decode for each body, or decode's failure", function()
    local calls, failures = 0, 0
    for _, case in ipairs(all) do
      local label, body = case[1], case[2]
      local call, msg, info = acscall.decode(200, body)
      local j, jmsg, jinfo = core.call_json(body)
      if call then
        calls = calls + 1
        assert.is_string(j, label)
        local strict = dkjson.decode(j)
        assert.is_not_nil(strict, label .. ": not valid JSON: " .. j:sub(1, 200))
        local back = assert(cjson.decode(j), label)
        assert.is_true(deep_equal(call, back), label .. ": " .. j:sub(1, 300))
      else
        failures = failures + 1
        assert.is_nil(j, label)
        assert.are.equal(msg, jmsg, label)
        assert.are.equal(info.kind, jinfo.kind, label)
      end
    end
    assert.is_true(calls > 30 and failures > 5, calls .. " calls, " .. failures .. " failures")
  end)

  it("answers a body that needs no shaping with the body itself (the fast way)", function()
    local body = '{"callConnectionId":"x","targets":[],"source":{"kind":"phoneNumber","rawId":"4:+1",'
      .. '"phoneNumber":{"value":"+1"}},"extra":[1,2,{"a":[]}]}'
    assert.are.equal(body, core.call_json(body))
  end)

  it("keeps empty arrays arrays, also when the call is written from its table", function()
    -- the fixture's targets need rawIds (shaped one by one); the second body has a null
    -- (decode strips it: the call is written whole)
    for _, body in ipairs{
      '{"callConnectionId":"x","targets":[],"source":{"communicationUser":{"id":"8:acs:1"}}}',
      '{"callConnectionId":"x","targets":[],"answeredBy":null,'
        .. '"mediaStreamingSubscription":{"id":"m","subscribedContentTypes":[]},'
        .. '"transcriptionSubscription":{"id":"t","subscribedResultTypes":[]}}',
    } do
      local j = assert(core.call_json(body))
      local d = assert(dkjson.decode(j), j)
      assert.are.equal("array", jsontype(d.targets), j)
      if d.mediaStreamingSubscription then
        assert.are.equal("array", jsontype(d.mediaStreamingSubscription.subscribedContentTypes), j)
        assert.are.equal("array", jsontype(d.transcriptionSubscription.subscribedResultTypes), j)
      end
      assert.is_true(deep_equal(acscall.decode(200, body), cjson.decode(j)), j)
    end
  end)

  it("adds the rawId and kind an identifier lacks, as decode does", function()
    local body = '{"callConnectionId":"x","targets":[{"phoneNumber":{"value":"+14250123456"}}]}'
    local j = assert(core.call_json(body))
    local d = assert(cjson.decode(j))
    assert.are.equal("4:+14250123456", d.targets[1].rawId)
    assert.are.equal("phoneNumber", d.targets[1].kind)
  end)

  it("inserts the rawId of an identifier with a kind and no rawId, keeping the body's text", function()
    local ident = '{ "kind" : "communicationUser", "communicationUser": {"id": "8:acs:1"} }'
    local body = '{"callConnectionId":"x","source":' .. ident .. ',"targets":[]}'
    assert.are.equal('{"callConnectionId":"x","source":{"rawId":"8:acs:1", "kind" : "communicationUser",'
      .. ' "communicationUser": {"id": "8:acs:1"} },"targets":[]}', core.call_json(body))
    -- decode's other cases of such an identifier: an escaped kind, an unknown kind (no rawId
    -- to add), a sub-object of the wrong type, an empty rawId (replaced: written from the table)
    for _, t in ipairs{
      '{"kind":"phone\\u004eumber","phoneNumber":{"value":"+1"}}',
      '{"kind":"someFutureKind","someFutureKind":{"id":"a"}}',
      '{"kind":"phoneNumber","phoneNumber":{"value":5}}',
      '{"kind":"phoneNumber","phoneNumber":"+1"}',
      '{"kind":"phoneNumber","rawId":"","phoneNumber":{"value":"+1"}}',
      '{"kind":"microsoftTeamsUser","microsoftTeamsUser":{"userId":"u","isAnonymous":true,"cloud":"gcch"}}',
    } do
      local b = '{"callConnectionId":"x","targets":[' .. t .. ',' .. t .. '],"source":' .. t .. '}'
      local call = acscall.decode(200, b)
      local j = core.call_json(b)
      if call then
        assert.is_true(deep_equal(call, assert(dkjson.decode(j), j)), j)
      else
        assert.is_nil(j, b)
      end
    end
  end)

  it("derives each rawId from the body's text as decode derives it from the table, every kind and cloud", function()
    -- identifiers with a kind and no rawId: call_json reads the members the
    -- rawId rule needs from the text; anything it cannot read there (an
    -- escaped member, a repeated one) goes decode's way. Each answer must
    -- equal decode's.
    local subs = {
      communicationUser = { '{"id":"8:acs:r_t_u"}', '{"id":"a","id":"b"}', '{"i\\u0064":"a"}', '{}',
        '{"id":"8:spool:x","extra":[1,{"id":2}]}' },
      phoneNumber = { '{"value":"+14250123456"}', '{"value":"+1","isAnonymous":true}',
        '{"value":"+1","assertedId":"x","isAnonymous":false}', '{"value":"+1\\u00e9"}', '{"value":5}' },
      microsoftTeamsUser = { '{"userId":"u"}', '{"userId":"u","isAnonymous":true}',
        '{"userId":"u","isAnonymous":false,"cloud":"dod"}', '{"userId":"u","cloud":"gcch"}',
        '{"userId":"u","cloud":"mars"}', '{"userId":"u","isAnonymous":1}', '{"userId":"u","isAnonymous":"no"}',
        '{"userId":"u","isAnonymous":false,"isAnonymous":true}', '{"cloud":"dod"}' },
      microsoftTeamsApp = { '{"appId":"a"}', '{"appId":"a","cloud":"dod"}', '{"appId":"a","cloud":"gcch"}',
        '{"appId":["a"]}' },
      teamsExtensionUser = { '{"userId":"u","tenantId":"t","resourceId":"r"}',
        '{"userId":"u","tenantId":"t","resourceId":"r","cloud":"dod"}',
        '{"userId":"u","tenantId":"t","resourceId":"r","cloud":"gcch"}', '{"userId":"u","tenantId":"t"}' },
    }
    local n = 0
    for kind, list in pairs(subs) do
      for _, sub in ipairs(list) do
        for _, ident in ipairs{
          '{"kind":"' .. kind .. '","' .. kind .. '":' .. sub .. '}',
          '{ "' .. kind .. '" : ' .. sub .. ' , "kind" : "' .. kind .. '" }',
          '{"kind":"' .. kind .. '","' .. kind .. '":' .. sub .. ',"' .. kind .. '":{}}',
          '{"kind":"' .. kind .. '","phoneNumber":{"value":"+2"},"' .. kind .. '":' .. sub .. '}',
        } do
          local b = '{"callConnectionId":"x","source":' .. ident .. ',"targets":[' .. ident .. ','
            .. '{"kind":"phoneNumber","phoneNumber":{"value":"+3"}}]}'
          local call = assert(acscall.decode(200, b))
          local j = assert(core.call_json(b), b)
          assert.is_true(deep_equal(call, assert(dkjson.decode(j), j)), b .. " -> " .. j)
          n = n + 1
        end
      end
    end
    assert.are.equal(4 * 27, n)
  end)

  it("reads a string's special bytes alike wherever they fall in the scan's 8-byte words", function()
    -- the string scan looks at 8 bytes at a time: an escape, a quote, a
    -- control byte or a non-ASCII byte at every offset and alignment must
    -- read as decode reads it (the same call, or the same refusal)
    local specials = { '\\"', "\\\\", "\\n", "\\u00e9", "\\ud83d\\ude00", "\\ud83d", "\\x", "\n", "\t", "\0",
      "\31", " ", "\127", "\128", "\255", "é", '"' }
    local n, calls = 0, 0
    for pad = 0, 7 do
      for at = 0, 17 do
        for _, sp in ipairs(specials) do
          local s = ("x"):rep(at) .. sp .. ("y"):rep(17 - at)
          local b = '{"callConnectionId":"' .. ("a"):rep(pad) .. s .. '","serverCallId":"' .. s .. '",'
            .. '"source":{"kind":"phoneNumber","phoneNumber":{"value":"' .. s .. '"}}}'
          local call, msg = acscall.decode(200, b)
          local j, jmsg = core.call_json(b)
          if call then
            calls = calls + 1
            assert.is_string(j, b)
            assert.is_not_nil(dkjson.decode(j), "not valid JSON: " .. j) -- (strict: no raw control byte)
            assert.is_true(deep_equal(call, assert(cjson.decode(j), j)), b .. " -> " .. j)
          else
            assert.is_nil(j, b)
            assert.are.equal(msg, jmsg, b)
          end
          n = n + 1
        end
      end
    end
    assert.are.equal(8 * 18 * #specials, n)
    assert.is_true(calls > n / 2 and calls < n, calls .. " of " .. n .. " are calls")
  end)

  it("refuses what is not a string (a programmer mistake)", function()
    assert.has_error(function() core.call_json(nil) end)
  end)
end)
