-- acscall.credential.client_certificate: the client assertion as @azure/identity 4.13.0 builds
-- it through @azure/msal-node 3.8.10 (PS256, x5t#S256, aud/iss/sub/nbf/exp/jti), read from
-- AZURE_CLIENT_CERTIFICATE_PATH (optionally encrypted: AZURE_CLIENT_CERTIFICATE_PASSWORD), used
-- by default's environment link; checked by node's own crypto and by the emulator, which
-- verifies assertions against the certificate it is given (--client-certificate).
local helpers = require "spec.helpers"
local cjson = require "cjson.safe"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local BASE = "http://127.0.0.1:9"

local dir
local function path(name) return dir .. "/" .. name end
local function sh(cmd)
  local out, ok = helpers.run(cmd .. " 2>&1")
  assert(ok, cmd .. ": " .. tostring(out))
  return out
end

-- a self-signed certificate with its key: cert.pem (certificate + key), crt.pem (certificate
-- only), enc.pem (certificate + key encrypted with "pw-Secret-91"), other.pem (another key)
lazy_setup(function()
  dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. helpers.shell_quote(dir))
  local q = helpers.shell_quote
  sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=acscall-spec -keyout " .. q(path("key.pem"))
    .. " -out " .. q(path("crt.pem")))
  sh("cat " .. q(path("crt.pem")) .. " " .. q(path("key.pem")) .. " > " .. q(path("cert.pem")))
  sh("openssl pkey -in " .. q(path("key.pem")) .. " -aes256 -passout pass:pw-Secret-91 -out " .. q(path("enc.key")))
  sh("cat " .. q(path("crt.pem")) .. " " .. q(path("enc.key")) .. " > " .. q(path("enc.pem")))
  sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other -keyout " .. q(path("okey.pem"))
    .. " -out " .. q(path("ocrt.pem")))
  sh("cat " .. q(path("ocrt.pem")) .. " " .. q(path("okey.pem")) .. " > " .. q(path("other.pem")))
end)
lazy_teardown(function() helpers.remove_dir(dir) end)

local function b64url_json(s)
  s = s:gsub("%-", "+"):gsub("_", "/")
  s = s .. ("="):rep((4 - #s % 4) % 4)
  return cjson.decode((require("mime").unb64(s)))
end

-- the assertion a certificate credential sends
local function assertion_of(opts)
  local seen
  opts.transport = { fetch = function(_, req)
    seen = req
    return 200, cjson.encode{ access_token = "tok", expires_in = 3600 }, {}
  end }
  opts.authority_host = opts.authority_host or BASE
  local c = helpers.credential("client_certificate", opts)
  local tok, msg = c:get_token()
  assert.are.equal("tok", tok, msg)
  return seen, c
end

describe("acscall.credential.client_certificate", function()
  it("sends a PS256 JWT with x5t#S256 and MSAL's claims as client_assertion", function()
    local req = assertion_of{ tenant_id = "tenant-1", client_id = "client-1", certificate_path = path("cert.pem") }
    assert.are.equal("POST", req.method)
    assert.are.equal(BASE .. "/tenant-1/oauth2/v2.0/token", req.url)
    local f = req.form
    assert.are.equal("client_credentials", f.grant_type)
    assert.are.equal("client-1", f.client_id)
    assert.are.equal("https://communication.azure.com//.default", f.scope)
    assert.are.equal("urn:ietf:params:oauth:client-assertion-type:jwt-bearer", f.client_assertion_type)
    assert.is_nil(f.client_secret)
    local h, p = f.client_assertion:match("^([%w%-_]+)%.([%w%-_]+)%.[%w%-_]+$")
    local header, claims = b64url_json(h), b64url_json(p)
    assert.are.equal("PS256", header.alg)
    assert.are.equal("JWT", header.typ)
    local fp = sh("openssl x509 -in " .. helpers.shell_quote(path("crt.pem")) .. " -outform DER | openssl dgst -sha256 -binary"
      .. " | base64 | tr '+/' '-_' | tr -d '=\\n'")
    assert.are.equal(fp, header["x5t#S256"])
    assert.is_nil(header.x5c)
    assert.are.equal(BASE .. "/tenant-1/oauth2/v2.0/token", claims.aud)
    assert.are.equal("client-1", claims.iss)
    assert.are.equal("client-1", claims.sub)
    assert.are.equal(600, claims.exp - claims.nbf)
    assert.is_true(math.abs(claims.nbf - os.time()) <= 5)
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", claims.jti)
  end)

  it("node's crypto verifies the signature (RSASSA-PSS, SHA-256, salt 32) with the certificate", function()
    local req = assertion_of{ tenant_id = "t", client_id = "c", certificate_path = path("cert.pem") }
    local jwt = path("jwt.txt")
    local f = assert(io.open(jwt, "w"))
    f:write(req.form.client_assertion)
    f:close()
    local out = sh("node -e " .. helpers.shell_quote([[
      const c = require("crypto"), fs = require("fs");
      const [h, p, s] = fs.readFileSync(process.argv[1], "utf8").split(".");
      const key = c.createPublicKey(fs.readFileSync(process.argv[2]));
      console.log(c.verify("sha256", Buffer.from(h + "." + p), { key, padding: c.constants.RSA_PKCS1_PSS_PADDING,
        saltLength: 32 }, Buffer.from(s, "base64url")));
    ]]) .. " " .. helpers.shell_quote(jwt) .. " " .. helpers.shell_quote(path("crt.pem")))
    assert.are.equal("true\n", out)
  end)

  it("reads AZURE_CLIENT_CERTIFICATE_PATH, an encrypted key with AZURE_CLIENT_CERTIFICATE_PASSWORD, "
    .. "and sends the chain as x5c when asked", function()
    local req = assertion_of{ env = { AZURE_TENANT_ID = "t", AZURE_CLIENT_ID = "c",
      AZURE_CLIENT_CERTIFICATE_PATH = path("enc.pem"), AZURE_CLIENT_CERTIFICATE_PASSWORD = "pw-Secret-91",
      AZURE_CLIENT_SEND_CERTIFICATE_CHAIN = "true" } }
    local header = b64url_json(req.form.client_assertion:match("^([^.]+)"))
    assert.are.equal("table", type(header.x5c))
    assert.are.equal(1, #header.x5c)
    local ok, err = pcall(helpers.credential, "client_certificate", { tenant_id = "t", client_id = "c",
      authority_host = BASE, certificate_path = path("enc.pem") })
    assert.is_false(ok)
    assert.matches("AZURE_CLIENT_CERTIFICATE_PASSWORD", err)
    ok, err = pcall(helpers.credential, "client_certificate", { tenant_id = "t", client_id = "c",
      authority_host = BASE, certificate_path = path("enc.pem"), password = "wrong-Pw-77" })
    assert.is_false(ok)
    assert.matches("could not be decrypted", err)
    assert.not_matches("wrong%-Pw", err)
    ok, err = pcall(helpers.credential, "client_certificate", { tenant_id = "t", client_id = "c",
      authority_host = BASE, certificate_path = path("crt.pem") })
    assert.is_false(ok)
    assert.matches("no private key", err)
  end)

  it("default: the environment link uses AZURE_CLIENT_CERTIFICATE_PATH (the secret first)", function()
    local seen
    local t = { fetch = function(_, req)
      seen = req
      return 200, cjson.encode{ access_token = "tok", expires_in = 3600 }, {}
    end }
    local d = helpers.credential("default", { az_command = "/nonexistent/az", imds_endpoint = BASE, transport = t,
      env = { AZURE_TENANT_ID = "t", AZURE_CLIENT_ID = "c", AZURE_CLIENT_CERTIFICATE_PATH = path("cert.pem"),
        AZURE_AUTHORITY_HOST = BASE } })
    assert.are.equal("tok", (d:get_token()))
    assert.is_string(seen.form.client_assertion)
    assert.matches("environment: tenant t", tostring(d))
  end)

  describe("against the emulator given the certificate", function()
    local emu
    lazy_setup(function() emu = helpers.start_emulator{ client_certificate = path("crt.pem") } end)
    lazy_teardown(function() if emu then emu:stop() end end)

    it("the assertion gets a token, and the token a call", function()
      local c = helpers.credential("client_certificate", { tenant_id = "tenant-1", client_id = "cert-app",
        certificate_path = path("cert.pem"), authority_host = emu.authority_host })
      local client = require("acscall").new{ endpoint = emu.endpoint, credential = c }
      local call, msg = client:get_call(SEED)
      client:close()
      assert.is_table(call, msg)
      local r = emu:token_requests{ client_id = "cert-app" }
      assert.are.equal(1, #r)
      assert.are.equal(200, r[1].status)
      assert.is_true(r[1].identity.certificate)
    end)

    it("another key's assertion, or a wrong audience, is refused (401 AADSTS700027)", function()
      local c = helpers.credential("client_certificate", { tenant_id = "tenant-1", client_id = "cert-other",
        certificate_path = path("other.pem"), authority_host = emu.authority_host })
      local tok, msg, info = c:get_token()
      assert.is_nil(tok)
      assert.are.equal("auth", info.kind)
      assert.matches("AADSTS700027", msg)
      assert.matches("x5t#S256 is not the certificate's", msg, 1, true)
      -- an assertion made for another authority: right key, wrong aud
      local req = assertion_of{ tenant_id = "tenant-1", client_id = "cert-aud", certificate_path = path("cert.pem"),
        authority_host = "http://127.0.0.1:9" }
      local status, body = emu:post("/tenant-1/oauth2/v2.0/token", { grant_type = "client_credentials",
        client_id = "cert-aud", scope = "https://communication.azure.com//.default",
        client_assertion = req.form.client_assertion, client_assertion_type = req.form.client_assertion_type })
      assert.are.equal(401, status)
      assert.matches("aud is not this token endpoint", body, 1, true)
    end)
  end)
end)
