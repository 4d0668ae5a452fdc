-- The official @azure/identity (tools/identity, pinned by its package-lock.json; `make test`
-- installs it with npm ci) gets a token from the emulator alone, and the token gets a fixture
-- call (SEED below) through acscall. Loopback only: the emulator over TLS with its private CA in
-- NODE_EXTRA_CA_CERTS, disableInstanceDiscovery, AZURE_POD_IDENTITY_AUTHORITY_HOST for IMDS,
-- and every proxy variable at a dead loopback port (NO_PROXY=127.0.0.1,localhost), so that a
-- request to anywhere else fails. Without node or the SDK this spec fails: it is never skipped.
local helpers = require "spec.helpers"

local SEED = "18dea47f-b081-4107-9a5c-4300819d2c6c"
local ROOT = helpers.repo_root()
local SCRIPT = ROOT .. "/tools/identity/sdk-token.mjs"
local SDK = ROOT .. "/tools/identity/node_modules/@azure/identity/package.json"

-- the environment a child node gets: nothing of ours but what we give it
local function node_token(kind, env)
  local parts = { "env -i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" .. helpers.shell_quote(os.getenv("HOME") or "/tmp"),
    "HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9",
    "http_proxy=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost" }
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. helpers.shell_quote(v) end
  parts[#parts + 1] = "node " .. helpers.shell_quote(SCRIPT) .. " " .. kind .. " 2>&1"
  local out, ok = helpers.run(table.concat(parts, " "))
  return ok and out:match("^(%S+)\n?$") or nil, out
end

describe("@azure/identity against the emulator alone", function()
  local emu, dir
  lazy_setup(function()
    emu = helpers.start_emulator{ tls = true }
    dir = os.tmpname()
    os.remove(dir)
    assert(helpers.run("mkdir -p " .. helpers.shell_quote(dir)))
  end)
  lazy_teardown(function()
    if emu then emu:stop() end
    helpers.remove_dir(dir)
  end)

  it("is installed (make test runs npm ci in tools/identity) and node runs it", function()
    assert.is_string(helpers.read_file(SDK), "no " .. SDK .. ": run make identity-sdk (needs node and npm)")
    local _, ok = helpers.run("node --version")
    assert.is_true(ok, "node is not on PATH")
  end)

  local function base() return (emu.endpoint:gsub("/$", "")) end
  local cases = {
    { "client_secret", function() return { AZURE_TENANT_ID = "tenant-1", AZURE_CLIENT_ID = "sdk-cs",
      AZURE_CLIENT_SECRET = emu.client_secret, AZURE_AUTHORITY_HOST = base() } end },
    { "workload_identity", function()
      local file = dir .. "/federated-token"
      local f = assert(io.open(file, "w"))
      f:write("emulator-assertion-from-the-sdk\n")
      f:close()
      return { AZURE_TENANT_ID = "tenant-1", AZURE_CLIENT_ID = "sdk-wi", AZURE_FEDERATED_TOKEN_FILE = file,
        AZURE_AUTHORITY_HOST = base() }
    end },
    { "managed_identity", function() return { AZURE_POD_IDENTITY_AUTHORITY_HOST = base(),
      AZURE_CLIENT_ID = "sdk-mi" } end },
    { "app_service", function() return { IDENTITY_ENDPOINT = base() .. "/msi/token",
      IDENTITY_HEADER = emu.identity_header, AZURE_CLIENT_ID = "sdk-as" } end },
    { "default", function() return { AZURE_TENANT_ID = "tenant-1", AZURE_CLIENT_ID = "sdk-default",
      AZURE_CLIENT_SECRET = emu.client_secret, AZURE_AUTHORITY_HOST = base() } end },
  }

  for _, c in ipairs(cases) do
    it(c[1] .. ": the SDK's token gets a fixture call through acscall", function()
      local env = c[2]()
      env.NODE_EXTRA_CA_CERTS = emu.ca_file
      local token, out = node_token(c[1], env)
      assert.is_string(token, out)
      assert.matches("^emu1%.%x+$", token)
      local client = require("acscall").new{ endpoint = emu.endpoint, token = token, ca_file = emu.ca_file }
      local call, msg = client:get_call(SEED)
      client:close()
      assert.is_table(call, msg)
      assert.are.equal(SEED, call.callConnectionId)
      -- the emulator logged the SDK's token request
      local got = emu:token_requests{ client_id = env.AZURE_CLIENT_ID }
      assert.are.equal(1, #got)
      assert.are.equal(200, got[1].status)
    end)
  end
end)
