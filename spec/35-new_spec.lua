-- acscall.new: options, connection strings parsed as the SDKs do, guard
-- rails that are programmer mistakes (raise), and no secret in tostring.
local acscall = require "acscall"

local KEY = "cHJpdmF0ZS1rZXktZm9yLXRlc3RzLW9ubHktMTIzNDU2Nzg5MA=="

local function raises(pattern, opts)
  local ok, err = pcall(acscall.new, opts)
  assert.is_false(ok, "expected an error for " .. tostring(pattern))
  assert.matches(pattern, err)
  assert.not_matches(KEY, err, 1, true)
  return err
end

describe("acscall.new", function()
  it("accepts a connection string in any order, any key case, with spaces", function()
    for _, cs in ipairs{
      "endpoint=https://x.communication.azure.com/;accesskey=" .. KEY,
      "accesskey=" .. KEY .. ";endpoint=https://x.communication.azure.com/",
      "  EndPoint = https://x.communication.azure.com/ ; AccessKey = " .. KEY .. " ;",
      "ENDPOINT=https://x.communication.azure.com;ACCESSKEY=" .. KEY .. ";;",
    } do
      local c = acscall.new{connection_string = cs}
      assert.matches("https://x.communication.azure.com", tostring(c))
      c:close()
    end
  end)

  it("accepts one pair of surrounding quotes (as an env file keeps them)", function()
    for _, q in ipairs{"'", '"'} do
      local c = acscall.new{connection_string = q .. "endpoint=https://x.communication.azure.com/;accesskey=" .. KEY .. q}
      assert.matches("https://x.communication.azure.com", tostring(c))
      c:close()
    end
    raises("'endpoint'", {connection_string = "'endpoint=https://a.b/;accesskey=" .. KEY .. '"'})
  end)

  it("keeps base64 '=' padding (splits on the first '=')", function()
    local c = acscall.new{connection_string = "endpoint=https://a.b/;accesskey=pw=="}
    local url, h = c:request("x")
    c:close()
    assert.equal("https://a.b/calling/callConnections/x?api-version=" .. acscall.DEFAULT_API_VERSION, url)
    -- signed with the whole key "pw==" (computed here with luaossl, not the core)
    local want = require("spec.helpers").hmac_headers{key = "pw==", host = "a.b", date = h["x-ms-date"],
      path = "/calling/callConnections/x?api-version=" .. acscall.DEFAULT_API_VERSION}
    assert.equal(want.authorization, h.authorization)
  end)

  it("refuses bad connection strings clearly", function()
    raises("duplicate key 'endpoint'", {connection_string =
      "endpoint=https://a.b/;endpoint=https://c.d/;accesskey=" .. KEY})
    raises("duplicate key 'accesskey'", {connection_string =
      "endpoint=https://a.b/;accesskey=" .. KEY .. ";AccessKey=" .. KEY})
    raises("empty key", {connection_string = "endpoint=https://a.b/;=x;accesskey=" .. KEY})
    raises("no '='", {connection_string = "endpoint=https://a.b/;accesskey"})
    raises("'accesskey'", {connection_string = "endpoint=https://a.b/"})
    raises("'endpoint'", {connection_string = "accesskey=" .. KEY})
    raises("'endpoint'", {connection_string = "endpoint=;accesskey=" .. KEY})
    raises("base64", {connection_string = "endpoint=https://a.b/;accesskey=%%%%"})
  end)

  it("requires an endpoint and exactly one credential", function()
    raises("missing 'endpoint'", {token = "t"})
    raises("missing credentials", {endpoint = "https://a.b/"})
    raises("exactly one", {endpoint = "https://a.b/", token = "t", access_key = KEY})
    raises("exactly one", {endpoint = "https://a.b/", token = "t", token_provider = function() end})
    raises("not both", {endpoint = "https://a.b/", connection_string = "endpoint=https://a.b/;accesskey=" .. KEY})
    raises("must be a string", {endpoint = 42, token = "t"})
    raises("must be a function", {endpoint = "https://a.b/", token_provider = "x"})
    assert.has_error(function() acscall.new() end)
  end)

  it("accepts https:// anywhere and http:// only to loopback", function()
    for _, ep in ipairs{"https://a.communication.azure.com", "http://127.0.0.1:8080/",
        "http://localhost:1/", "http://[::1]:8080", "https://10.0.0.1/"} do
      acscall.new{endpoint = ep, token = "t"}:close()
    end
    raises("https://", {endpoint = "http://example.com/", token = "t"})
    raises("https://", {endpoint = "http://10.0.0.1/", token = "t"})
    raises("https://", {endpoint = "ftp://127.0.0.1/", token = "t"})
    raises("https://", {endpoint = "http://127.0.0.1.evil.com/", token = "t"})
    raises("valid URL", {endpoint = "not a url", token = "t"})
    raises("credentials, a query", {endpoint = "https://u:p@a.b/", token = "t"})
    raises("credentials, a query", {endpoint = "https://a.b/?x=1", token = "t"})
    -- a path curl would re-encode on the wire could not be signed as sent
    raises("plain URL characters", {endpoint = "https://a.b/caf\195\169/", token = "t"})
    acscall.new{endpoint = "https://a.b/gw/acs%20x/", token = "t"}:close()
  end)

  it("refuses CR or LF in header values", function()
    raises("CR, LF", {endpoint = "https://a.b/", token = "t\r\nX-Evil: 1"})
    raises("CR, LF", {endpoint = "https://a.b/", token = "t\nx"})
    raises("CR, LF", {endpoint = "https://a.b/", token = "t", user_agent = "ua\r\nX: y"})
    raises("non%-empty", {endpoint = "https://a.b/", token = ""})
  end)

  it("checks option types and ranges", function()
    raises("'timeout'", {endpoint = "https://a.b/", token = "t", timeout = "5"})
    raises("'timeout'", {endpoint = "https://a.b/", token = "t", timeout = 0})
    raises("'connect_timeout'", {endpoint = "https://a.b/", token = "t", connect_timeout = -1})
    raises("'max_body'", {endpoint = "https://a.b/", token = "t", max_body = 10})
    raises("'api_version'", {endpoint = "https://a.b/", token = "t", api_version = ""})
    raises("'timeout'", {endpoint = "https://a.b/", token = "t", timeout = 0 / 0})
    raises("'retries.max'", {endpoint = "https://a.b/", token = "t", retries = {max = 1e300}})
    raises("'retries.max'", {endpoint = "https://a.b/", token = "t", retries = {max = 1.5}})
    raises("'retries'", {endpoint = "https://a.b/", token = "t", retries = true})
    raises("'base_delay'", {endpoint = "https://a.b/", token = "t", retries = {base_delay = -1}})
  end)

  it("accepts options made on the fly by __index, even if they are collected at once", function()
    -- an options table that reads its values lazily (e.g. from the environment)
    local values = {endpoint = "https://a.b/", token = "t-" .. ("x"):rep(60)}
    -- every lookup runs a full collection (its cost grows with the whole
    -- suite's heap): 25 rounds; `make test-asan` sees a use after free in one
    for _ = 1, 25 do
      local opts = setmetatable({}, {__index = function(_, k)
        collectgarbage() -- whatever new fetched before is garbage by now
        local v = values[k]
        return v and table.concat{v, ""} or nil
      end})
      local c = acscall.new(opts)
      assert.matches("^acscall.client %(https://a.b, token auth%)", tostring(c))
      c:close()
    end
  end)

  it("never shows a secret in tostring", function()
    local token = "super-secret-token-value"
    local c1 = acscall.new{endpoint = "https://a.b/", token = token}
    local c2 = acscall.new{connection_string = "endpoint=https://a.b/;accesskey=" .. KEY}
    assert.not_matches(token, tostring(c1), 1, true)
    assert.not_matches(KEY, tostring(c2), 1, true)
    assert.matches("^acscall.client", tostring(c1))
  end)

  it("closes idempotently, and a closed client refuses work", function()
    local c = acscall.new{endpoint = "https://a.b/", token = "t"}
    c:close()
    c:close()
    assert.matches("closed", tostring(c))
    local ok, err = pcall(c.get_call, c, "x")
    assert.is_false(ok)
    assert.matches("closed client", err)
  end)

  if _VERSION == "Lua 5.4" then
    it("closes a to-be-closed client at the end of its scope", function()
      local f = assert(load([[
        local acscall = ...
        local keep
        do
          local c <close> = acscall.new{endpoint = "https://a.b/", token = "t"}
          keep = c
        end
        return keep
      ]]))
      local c = f(acscall)
      assert.matches("closed", tostring(c))
    end)
  end
end)
