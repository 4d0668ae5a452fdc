-- acs_emulator.auth: verifies ACS request authentication (HMAC-SHA256 access-key signing or a
-- bearer token), independently of the acscall C client. Runs under LuaJIT inside nginx and under
-- plain Lua 5.1-5.4 (for the self-test and specs); needs luaossl (Debian lua-luaossl).
local hmac = require "openssl.hmac"
local digest = require "openssl.digest"

local M = {}

M.SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"
M.MAX_SKEW = 300 -- seconds either side of the emulator's clock

---------------------------------------------------------------------------------------------------
-- base64: ngx's inside nginx, else luasocket's mime (Debian lua-socket) for the
-- self-test and specs; the decoder refuses anything that is not canonical base64.
local function b64dec_mime(s)
  if #s % 4 ~= 0 or s:find("[^%w%+/=]") or s:find("=[^=]") then return nil end
  return (require("mime").unb64(s))
end

local ngx = rawget(_G, "ngx")
M.b64encode = (ngx and ngx.encode_base64) or function(s) return (require("mime").b64(s)) end
M.b64decode = (ngx and ngx.decode_base64) or b64dec_mime

---------------------------------------------------------------------------------------------------
-- constant-time string comparison
function M.equal(a, b)
  local la, lb = #a, #b
  local n = la > lb and la or lb
  local diff = (la == lb) and 0 or 1
  for i = 1, n do
    local x = a:byte(i) or 0
    local y = b:byte(i) or 0
    diff = diff + math.abs(x - y)  -- no early exit: always the full length
  end
  return diff == 0
end

---------------------------------------------------------------------------------------------------
function M.sha256_b64(body)
  return M.b64encode(digest.new("sha256"):final(body or ""))
end

function M.hmac_b64(key_raw, msg)
  return M.b64encode(hmac.new(key_raw, "sha256"):final(msg))
end

function M.string_to_sign(method, path_and_query, date, host, content_hash)
  return method .. "\n" .. path_and_query .. "\n" .. date .. ";" .. host .. ";" .. content_hash
end

-- signature for key (base64), as the SDKs compute it
function M.signature(key_b64, method, path_and_query, date, host, content_hash)
  local key = M.b64decode(key_b64)
  if not key then return nil, "access key is not valid base64" end
  return M.hmac_b64(key, M.string_to_sign(method, path_and_query, date, host, content_hash))
end

M.EXPIRED = "The access token has expired."

-- a short, one-way name for a secret value (the request log's token_fp, assertion_fp):
-- the first 12 hex digits of its SHA-256
function M.fingerprint(s)
  return (digest.new("sha256"):final(s):sub(1, 6):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

-- Verify a request. req = {method, uri (as received), host (Host header as received), headers
-- (lowercased names -> value), body, now (epoch seconds), parse_date (fn: RFC1123 -> epoch);
-- optional expiry (fn: token -> when an issued token expires, or nil) and clock (now, fractional)}.
-- cfg = {access_key (base64), token}. Returns "hmac" | "bearer" (the static token) | "issued"
-- (an issued token before its expiry), or nil, reason (M.EXPIRED for an expired issued token).
function M.verify(req, cfg)
  local h = req.headers
  local authz = h["authorization"]
  if type(authz) == "table" then return nil, "multiple Authorization headers" end
  if not authz or authz == "" then return nil, "missing Authorization header" end

  local scheme, rest = authz:match("^(%S+)%s+(.*)$")
  if not scheme then return nil, "malformed Authorization header" end

  if scheme:lower() == "bearer" then
    if cfg.token and cfg.token ~= "" and M.equal(rest, cfg.token) then return "bearer" end
    local expires_at = req.expiry and req.expiry(rest)
    if expires_at then
      if req.clock < expires_at then return "issued" end
      return nil, M.EXPIRED
    end
    if not cfg.token or cfg.token == "" then return nil, "bearer tokens not accepted" end
    return nil, "invalid bearer token"
  end

  if scheme ~= "HMAC-SHA256" then return nil, "unsupported Authorization scheme" end
  local signed, sig = rest:match("^SignedHeaders=([^&]*)&Signature=(.*)$")
  if not signed then return nil, "malformed HMAC-SHA256 Authorization header" end
  if signed:lower() ~= M.SIGNED_HEADERS then
    return nil, "SignedHeaders must be " .. M.SIGNED_HEADERS
  end

  local date = h["x-ms-date"]
  if type(date) ~= "string" or date == "" then return nil, "missing x-ms-date header" end
  local t = req.parse_date(date)
  if not t then return nil, "x-ms-date is not an RFC 1123 date" end
  if math.abs(t - req.now) > M.MAX_SKEW then
    return nil, "x-ms-date is outside the allowed clock skew of " .. M.MAX_SKEW .. " seconds"
  end

  local chash = h["x-ms-content-sha256"]
  if type(chash) ~= "string" or chash == "" then return nil, "missing x-ms-content-sha256 header" end
  if chash ~= M.sha256_b64(req.body or "") then
    return nil, "x-ms-content-sha256 does not match the request body"
  end

  local host = req.host
  if type(host) ~= "string" then return nil, "missing Host header" end

  local expected, err = M.signature(cfg.access_key, req.method, req.uri, date, host, chash)
  if not expected then return nil, err end
  if not M.equal(sig, expected) then return nil, "HMAC signature mismatch" end
  return "hmac"
end

---------------------------------------------------------------------------------------------------
-- Signing vectors: the official SDKs' unit tests (azure-sdk-for-js
-- sdk/communication/communication-common/test/internal/cryptoUtils.spec.ts at commit
-- 64d66012 and test/public/communicationKeyCredentialPolicy.spec.ts at 2d32d4ae;
-- azure-sdk-for-python sdk/communication/azure-communication-identity/tests/test_hmac.py
-- at commit 3a730d34), plus Get Call
-- shaped ones computed with the same scheme. self_test() returns true or nil, "which failed".
M.VECTORS = {
  { "example.com", "/testPath?testQuery=test", "DGdgwggJWnQyc6EHjR/Vbqg1ES64KpD6U2XwTDDj3tU=" },
  { "example.com", "/testPath", "+6tWkg3lNKVjQHHmxkdGQcJjUgzclsWTMebnuCz1ngU=" },
  { "contoso.communicationservices.azure.com", "/", "88MDmJhUR3m5QhFxb8ztShsSwlGrg7g/6XPnWf7QEO4=" },
  { "contoso.communicationservices.azure.com", "/testPath", "RoCrHjw7fb9fpHSbqvRUY2xa8RBS0YvI1cxI1x8AS38=" },
  { "contoso.communicationservices.azure.com", "/testPath?testQuery=yes",
    "il99+rd6V5O136roX/zVePCNle78HmvC4B7tu9zRH3I=" },
  { "contoso.communications.azure.com",
    "/calling/callConnections/18dea47f-b081-4107-9a5c-4300819d2c6c?api-version=2025-06-15",
    "+SaJIufb4Zlp+K34HjQG7dwRjIzbeRvPiFpyuCR31ys=" },
  { "localhost:8443", "/calling/callConnections/abc?api-version=2025-06-15",
    "a6QkuPVa4j7qJpZaUqA5tqq1MgIUVO0bQSDrQzyZBBE=" },
}
M.VECTOR_KEY = "pw=="
M.VECTOR_DATE = "Wed, 13 Apr 2022 18:09:12 GMT"

function M.self_test()
  local checks = {
    { M.sha256_b64("banana"), "tJPUg2Sv5E0RwBZc9HCkFk0eJgmRHvmYvoaNRq3j3k4=", "sha256 banana" },
    { M.sha256_b64("\240\159\152\128"), "8EQ6NCxe9UeDoRG1G6Vsk45HTDIyTZDDpgycjjo34tk=", "sha256 U+1F600" },
    { M.sha256_b64(""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "sha256 empty" },
    { M.hmac_b64(M.b64decode("pw=="), "banana"), "88EC05aAS9iXnaimtNO78JLjiPtfWryQB/5QYEzEsu8=", "hmac banana" },
    { M.hmac_b64(M.b64decode("pw=="), "\240\159\152\128"), "1rudJKjn2Zi+3hRrBG29wIF6pD6YyAeQR1ZcFtXoKAU=",
      "hmac U+1F600" },
  }
  for _, v in ipairs(M.VECTORS) do
    checks[#checks + 1] = {
      M.signature(M.VECTOR_KEY, "GET", v[2], M.VECTOR_DATE, v[1], M.sha256_b64("")), v[3], v[1] .. v[2] }
  end
  for _, c in ipairs(checks) do
    if c[1] ~= c[2] then return nil, "auth self-test failed: " .. c[3] end
  end
  return true
end

---------------------------------------------------------------------------------------------------
-- Client assertions signed with a certificate (what @azure/identity 4.13.0's ClientCertificateCredential
-- sends through @azure/msal-node 3.8.10: a JWT, header alg PS256 (or RS256) with x5t#S256 (or x5t),
-- claims aud, iss, sub, nbf, exp, jti), verified against the certificate the emulator is given.

-- xor of two bytes: LuaJIT's bit, 5.2's bit32, 5.3+'s operator (compiled only there), else arithmetic (5.1)
local bxor = (rawget(_G, "bit") or rawget(_G, "bit32") or {}).bxor
  or (_VERSION >= "Lua 5.3" and load("return function(a, b) return a ~ b end")())
  or function(a, b)
    local r, p = 0, 1
    while a > 0 or b > 0 do
      local x, y = a % 2, b % 2
      if x ~= y then r = r + p end
      a, b, p = (a - x) / 2, (b - y) / 2, p * 2
    end
    return r
  end

local function b64url_decode(s)
  if type(s) ~= "string" or s:find("[^%w%-_]") then return nil end
  s = s:gsub("%-", "+"):gsub("_", "/")
  s = s .. ("="):rep((4 - #s % 4) % 4)
  return M.b64decode(s)
end

local function b64url(s)
  return (M.b64encode(s):gsub("+", "-"):gsub("/", "_"):gsub("=+$", ""))
end

local function sha256(s) return digest.new("sha256"):final(s) end

-- EMSA-PSS-VERIFY (RFC 8017 section 9.1.2) for SHA-256 and MGF1-SHA-256, any salt length:
-- em is the public-key operation's output, mod_bits the modulus' size
local function pss_verify(em, mod_bits, data)
  local em_bits = mod_bits - 1
  local em_len = math.ceil(em_bits / 8)
  em = em:sub(-em_len)
  if #em ~= em_len or em:byte(-1) ~= 0xbc then return false end
  local masked, h = em:sub(1, em_len - 33), em:sub(em_len - 32, em_len - 1)
  local zero_bits = 8 * em_len - em_bits
  if masked:byte(1) >= 2 ^ (8 - zero_bits) then return false end
  local stream, counter = "", 0
  while #stream < #masked do
    stream = stream .. sha256(h .. string.char(0, 0, math.floor(counter / 256), counter % 256))
    counter = counter + 1
  end
  local db = {}
  for i = 1, #masked do db[i] = bxor(masked:byte(i), stream:byte(i)) end
  db[1] = db[1] % 2 ^ (8 - zero_bits)
  local i = 1
  while db[i] == 0 do i = i + 1 end
  if db[i] ~= 1 then return false end
  local salt = {}
  for j = i + 1, #db do salt[#salt + 1] = string.char(db[j]) end
  return sha256(("\0"):rep(8) .. sha256(data) .. table.concat(salt)) == h
end

--- Verify a client assertion signed with a certificate. cert_pem: the certificate (PEM);
-- expect = {aud = the token endpoint's URL, client_id = the form's, now = Unix s}.
-- Returns true, or nil and why (never the assertion).
function M.verify_client_assertion(assertion, cert_pem, expect)
  local x509 = require "openssl.x509"
  local pkey = require "openssl.pkey"
  local cjson = require("cjson.safe")
  local hb, pb, sb = assertion:match("^([%w%-_]+)%.([%w%-_]+)%.([%w%-_]+)$")
  if not hb then return nil, "not a signed JWT" end
  local header, claims, sig = cjson.decode(b64url_decode(hb) or ""), cjson.decode(b64url_decode(pb) or ""),
    b64url_decode(sb)
  if type(header) ~= "table" or type(claims) ~= "table" or not sig then return nil, "malformed JWT" end
  local ok, crt = pcall(x509.new, cert_pem)
  if not ok then return nil, "the emulator's certificate is not readable" end
  if header["x5t#S256"] then
    if header["x5t#S256"] ~= b64url(crt:digest("sha256", "s")) then return nil, "x5t#S256 is not the certificate's" end
  elseif header.x5t then
    if header.x5t ~= b64url(crt:digest("sha1", "s")) then return nil, "x5t is not the certificate's" end
  else
    return nil, "no x5t#S256 or x5t header"
  end
  local key = crt:getPublicKey()
  local input = hb .. "." .. pb
  if header.alg == "RS256" then
    local d = digest.new("sha256")
    d:update(input)
    if not key:verify(sig, d) then return nil, "bad signature" end
  elseif header.alg == "PS256" then
    local n = key:getParameters().n:toBinary()
    local mod_bits, top = 8 * #n, n:byte(1)
    while top < 128 do mod_bits, top = mod_bits - 1, top * 2 end
    if #sig ~= #n then return nil, "bad signature" end
    local pok, em = pcall(key.encrypt, key, sig, { rsaPadding = pkey.RSA_NO_PADDING })
    if not pok or not pss_verify(em, mod_bits, input) then return nil, "bad signature" end
  else
    return nil, "alg must be PS256 or RS256"
  end
  if claims.aud ~= expect.aud then return nil, "aud is not this token endpoint" end
  if claims.iss ~= expect.client_id or claims.sub ~= expect.client_id then
    return nil, "iss/sub is not the client id"
  end
  if type(claims.exp) ~= "number" or claims.exp <= expect.now then return nil, "expired" end
  if type(claims.nbf) == "number" and claims.nbf > expect.now + M.MAX_SKEW then return nil, "not yet valid" end
  return true
end

return M
