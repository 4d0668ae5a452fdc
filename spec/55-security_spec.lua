-- Secrets stay secret, TLS is verified, the wire carries only what we meant.
local acscall = require "acscall"
local helpers = require "spec.helpers"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"

-- every string reachable from a value, flattened
local function strings(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do
      strings(k, out, seen)
      strings(x, out, seen)
    end
  end
  return out
end

local function assert_no_secret(secret, ...)
  for _, s in ipairs(strings({...})) do
    assert.not_matches(secret, s, 1, true)
  end
end

describe("security", function()
  describe("over HTTP", function()
    local emu
    lazy_setup(function() emu = helpers.start_emulator() end)
    lazy_teardown(function() if emu then emu:stop() end end)

    it("no access key or signature in results, errors, tostring or the log", function()
      local c = acscall.new{connection_string = emu.connection_string}
      emu:clear_log()
      local all = {tostring(c)}
      for _, id in ipairs{SEED, "no-such-call", "f/../x"} do
        all[#all + 1] = {c:get_call(id)}
      end
      local url, headers = c:request(SEED)
      local sig = headers.authorization:match("Signature=(.*)$")
      assert.is_string(sig)
      assert_no_secret(emu.access_key, all)
      assert_no_secret(sig, all)
      local log = helpers.read_file(emu.log_path)
      assert.not_matches(emu.access_key, log, 1, true)
      assert.not_matches("Signature=", log, 1, true)
      assert.is_string(url)
      c:close()
    end)

    it("no bearer token in errors, tostring or the log", function()
      local c = acscall.new{endpoint = emu.endpoint, token = emu.token}
      local bad = acscall.new{endpoint = emu.endpoint, token = "secret-but-wrong-token"}
      emu:clear_log()
      local all = {tostring(c), tostring(bad), {c:get_call("no-such-call")}, {bad:get_call(SEED)}}
      assert_no_secret(emu.token, all)
      assert_no_secret("secret-but-wrong-token", all)
      local log = helpers.read_file(emu.log_path)
      assert.not_matches(emu.token, log, 1, true)
      assert.not_matches("secret-but-wrong-token", log, 1, true)
      c:close()
      bad:close()
    end)

    it("client:request gives the exact URL and signed headers get_call sends", function()
      local c = acscall.new{connection_string = emu.connection_string}
      local url, h = c:request("a/b")
      assert.are.equal(emu.endpoint .. "calling/callConnections/a%2Fb?api-version=2026-03-12", url)
      assert.are.equal("application/json", h.accept)
      assert.are.equal("127.0.0.1:" .. emu.port, h.host)
      assert.matches("^HMAC%-SHA256 SignedHeaders=x%-ms%-date;host;x%-ms%-content%-sha256&Signature=", h.authorization)
      assert.matches("^acscall/", h["user-agent"])
      -- the same URL and headers, sent by another HTTP client, are accepted
      local path = url:match("^https?://[^/]+(/.*)$")
      local status = emu:get(path, {
        ["x-ms-date"] = h["x-ms-date"], ["x-ms-content-sha256"] = h["x-ms-content-sha256"],
        authorization = h.authorization, host = h.host,
      })
      assert.are.equal(404, status)
      assert.are.equal("hmac", emu:last_request().auth)
      c:close()
    end)
  end)

  describe("over HTTPS", function()
    local emu
    lazy_setup(function() emu = helpers.start_emulator{tls = true} end)
    lazy_teardown(function() if emu then emu:stop() end end)

    it("verifies the server with ca_file", function()
      assert.matches("^https://", emu.endpoint)
      local c = acscall.new{connection_string = emu.connection_string, ca_file = emu.ca_file}
      local call, msg = c:get_call(SEED)
      assert.is_table(call, msg)
      assert.are.equal(SEED, call.callConnectionId)
      c:close()
    end)

    it("refuses a self-signed server without ca_file: a clear transport error", function()
      local c = acscall.new{connection_string = emu.connection_string, retries = {max = 2, base_delay = 0.01}}
      local call, msg, info = c:get_call(SEED)
      assert.is_nil(call)
      assert.are.equal("transport", info.kind)
      assert.matches("^transport: .*[Cc]ertificate", msg)
      assert.are.equal(1, info.attempts) -- TLS failures are not retried
      c:close()
    end)

    it("a missing ca_file is a transport error, not a crash", function()
      local c = acscall.new{connection_string = emu.connection_string, ca_file = "/nonexistent/ca.pem"}
      local call, _, info = c:get_call(SEED)
      assert.is_nil(call)
      assert.are.equal("transport", info.kind)
      c:close()
    end)
  end)
end)
