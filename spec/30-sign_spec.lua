-- HMAC-SHA256 signing: every vector of the official SDKs' tests (azure-sdk-for-js
-- communication-common test/internal/cryptoUtils.spec.ts and
-- test/public/communicationKeyCredentialPolicy.spec.ts), reproduced
-- through the public acscall.sign.
local acscall = require "acscall"

local DATE = "Wed, 13 Apr 2022 18:09:12 GMT"
local EMPTY_HASH = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
local PREFIX = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature="

local function sig(url, key)
  local h = acscall.sign{method = "GET", url = url, date = DATE, access_key = key or "pw=="}
  assert.are.equal(PREFIX, h.authorization:sub(1, #PREFIX))
  return h.authorization:sub(#PREFIX + 1), h
end

describe("acscall.sign", function()
  it("hashes the empty body as the SDKs do", function()
    local _, h = sig("https://example.com/testPath")
    assert.are.equal(EMPTY_HASH, h["x-ms-content-sha256"])
    assert.are.equal(DATE, h["x-ms-date"])
    assert.are.equal("example.com", h.host)
  end)

  it("hashes bodies (SHA-256 vectors)", function()
    local function hash(body)
      return acscall.sign{url = "https://example.com/", date = DATE, access_key = "pw==",
        method = "POST", body = body}["x-ms-content-sha256"]
    end
    assert.are.equal("tJPUg2Sv5E0RwBZc9HCkFk0eJgmRHvmYvoaNRq3j3k4=", hash("banana"))
    assert.are.equal("8EQ6NCxe9UeDoRG1G6Vsk45HTDIyTZDDpgycjjo34tk=", hash("\240\159\152\128"))
  end)

  local vectors = {
    {"https://example.com/testPath?testQuery=test", "DGdgwggJWnQyc6EHjR/Vbqg1ES64KpD6U2XwTDDj3tU="},
    {"https://example.com/testPath", "+6tWkg3lNKVjQHHmxkdGQcJjUgzclsWTMebnuCz1ngU="},
    {"https://contoso.communicationservices.azure.com/", "88MDmJhUR3m5QhFxb8ztShsSwlGrg7g/6XPnWf7QEO4="},
    {"https://contoso.communicationservices.azure.com/testPath", "RoCrHjw7fb9fpHSbqvRUY2xa8RBS0YvI1cxI1x8AS38="},
    {"https://contoso.communicationservices.azure.com/testPath?testQuery=yes", "il99+rd6V5O136roX/zVePCNle78HmvC4B7tu9zRH3I="},
    {"https://contoso.communications.azure.com/calling/callConnections/18dea47f-b081-4107-9a5c-4300819d2c6c?api-version=2025-06-15",
      "+SaJIufb4Zlp+K34HjQG7dwRjIzbeRvPiFpyuCR31ys="},
    {"https://localhost:8443/calling/callConnections/abc?api-version=2025-06-15", "a6QkuPVa4j7qJpZaUqA5tqq1MgIUVO0bQSDrQzyZBBE="},
  }
  for _, v in ipairs(vectors) do
    it("reproduces the SDK vector for " .. v[1], function()
      assert.are.equal(v[2], (sig(v[1])))
    end)
  end

  it("signs the Host header with the port only when it is not the default", function()
    assert.are.equal("localhost:8443", select(2, sig("https://localhost:8443/x")).host)
    assert.are.equal("example.com", select(2, sig("https://EXAMPLE.com:443/x")).host)
    assert.are.equal("127.0.0.1:8080", select(2, sig("http://127.0.0.1:8080/x")).host)
  end)

  it("formats dates as IMF-fixdate in English", function()
    assert.are.equal("Wed, 01 Jan 2020 01:01:00 GMT", acscall.http_date(1577840460))
    assert.are.equal("Fri, 10 Jan 2020 01:01:00 GMT", acscall.http_date(1578618060))
    assert.are.equal("Thu, 29 Feb 2024 01:01:00 GMT", acscall.http_date(1709168460))
    assert.are.equal("Wed, 01 Jan 2020 23:01:00 GMT", acscall.http_date(1577919660))
    local h = acscall.sign{url = "https://example.com/", date = 1577840460, access_key = "pw=="}
    assert.are.equal("Wed, 01 Jan 2020 01:01:00 GMT", h["x-ms-date"])
  end)

  it("refuses epoch seconds outside years 0-9999 (and NaN) as a mistake", function()
    assert.has_error(function() acscall.http_date(0 / 0) end)
    assert.has_error(function() acscall.http_date(1e300) end)
    assert.has_error(function() acscall.http_date(-1e18) end)
    assert.has_error(function() acscall.sign{url = "https://example.com/", date = 1e18, access_key = "pw=="} end)
    assert.are.equal("Fri, 31 Dec 9999 23:59:59 GMT", acscall.http_date(253402300799))
  end)

  it("takes the current date when none is given", function()
    local h = acscall.sign{url = "https://example.com/", access_key = "pw=="}
    assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", h["x-ms-date"])
  end)

  it("raises on programmer mistakes, without echoing the key", function()
    local ok, err = pcall(acscall.sign, {url = "https://example.com/", access_key = "not base64!!"})
    assert.is_false(ok)
    assert.matches("base64", err)
    assert.not_matches("not base64!!", err, 1, true)
    assert.has_error(function() acscall.sign{access_key = "pw=="} end)
    assert.has_error(function() acscall.sign{url = "https://example.com/"} end)
    assert.has_error(function() acscall.sign("x") end)
  end)
end)
