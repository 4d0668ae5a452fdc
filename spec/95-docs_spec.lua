-- spec/95-docs_spec.lua: the examples in README.md and docs/*.md run, so they cannot rot.
--
-- The convention (docs/development.md "Doc examples"):
--   * every ```lua block runs, as a user's script would (its own interpreter, the
--     one running this suite), against the emulator, and must exit 0; its
--     environment has the emulator's ACS_* variables and the Azure SDKs'
--     variables aimed at the emulator's identity side (a client secret);
--   * a block the line before which is `<!-- not runnable: REASON -->` is skipped,
--     and the reason must say something;
--   * an ```nginx block needs `<!-- spec: NAME -->` (a spec extracts it by that
--     name, see helpers.doc_blocks) or `<!-- not runnable: REASON -->`;
--   * a marker that is not followed by a code block is a mistake (it went stale).
local helpers = require "spec.helpers"

local root = helpers.repo_root()

local function doc_files()
  local files = { "README.md" }
  local out = helpers.run("ls " .. helpers.shell_quote(root .. "/docs") .. " 2>/dev/null")
  for name in out:gmatch("[^\n]+") do
    if name:match("%.md$") then files[#files + 1] = "docs/" .. name end
  end
  return files
end

local files = doc_files()
local blocks = {}
for _, file in ipairs(files) do
  for _, b in ipairs(helpers.doc_blocks(root .. "/" .. file)) do
    b.file = file
    blocks[#blocks + 1] = b
  end
end

describe("docs", function()
  it("has the pages the README links to, and a README a newcomer reads in one sitting", function()
    local readme = assert(helpers.read_file(root .. "/README.md"))
    local n = select(2, readme:gsub("\n", "\n"))
    assert.is_true(n <= 300, "README.md has " .. n .. " lines")
    for _, page in ipairs({ "api", "credentials", "openresty", "cli", "development" }) do
      assert.truthy(readme:find("(docs/" .. page .. ".md", 1, true), page)
      assert.truthy(helpers.read_file(root .. "/docs/" .. page .. ".md"), page)
    end
  end)

  it("docs/api.md has a section for every function of acscall and every client method", function()
    local api = assert(helpers.read_file(root .. "/docs/api.md"))
    local acscall = require "acscall"
    local names = {}
    for k, v in pairs(acscall) do
      if type(v) == "function" and k:sub(1, 1) ~= "_" then names[#names + 1] = k end
    end
    local c = acscall.new{ endpoint = "http://127.0.0.1:1/", token = "t" }
    for k, v in pairs(getmetatable(c).__index) do
      if type(v) == "function" and k:sub(1, 1) ~= "_" then names[#names + 1] = k end
    end
    c:close()
    table.sort(names)
    for _, name in ipairs(names) do
      assert.truthy(api:find("\n### " .. name .. "\n", 1, true), "docs/api.md: no section ### " .. name)
    end
  end)

  -- GitHub's anchor of a heading: lower case, punctuation dropped, spaces to '-'
  local function slug(heading)
    return (heading:lower():gsub("[^%w%- _]", ""):gsub(" ", "-"))
  end

  it("links only to files that exist, and to headings those files have", function()
    for _, file in ipairs(files) do
      local text = assert(helpers.read_file(root .. "/" .. file))
      local dir = file:match("^(.*)/[^/]*$")
      for target in text:gmatch("%]%(([^)%s]+)%)") do
        if not target:match("^%a[%w+.-]*:") then -- not https:, mailto:, ...
          local path, anchor = target:match("^([^#]*)#?(.*)$")
          local full = path == "" and file or ((dir and dir .. "/" or "") .. path)
          full = full:gsub("[^/]+/%.%./", "")
          local linked = helpers.read_file(root .. "/" .. full)
          if not linked then
            local _, isdir = helpers.run("test -d " .. helpers.shell_quote(root .. "/" .. full))
            assert(isdir, file .. ": a link to " .. target .. ": no such file")
          end
          if anchor ~= "" then
            local found = false
            for h in (linked or ""):gmatch("\n#+ ([^\n]+)") do
              if slug(h) == anchor then found = true end
            end
            assert(found, file .. ": a link to " .. target .. ": no heading #" .. anchor .. " in " .. full)
          end
        end
      end
    end
  end)

  it("marks every block it does not run, with a reason, and no marker is stale", function()
    local lua_run, nginx = 0, 0
    for _, b in ipairs(blocks) do
      local where = b.file .. ":" .. b.line
      assert.is_nil(b.stale, where .. ": a marker not followed by a code block")
      if b.not_runnable then
        assert.truthy(b.not_runnable:match("%S"), where .. ": `not runnable:` needs a reason")
      end
      if b.lang == "lua" and not b.not_runnable then lua_run = lua_run + 1 end
      if b.lang == "nginx" then
        nginx = nginx + 1
        assert.truthy(b.not_runnable or b.spec, where .. ": an nginx block needs "
          .. "`<!-- spec: NAME -->` or `<!-- not runnable: reason -->`")
      end
    end
    assert.is_true(lua_run >= 10, "only " .. lua_run .. " runnable Lua blocks found")
    assert.is_true(nginx >= 1)
  end)

  describe("Lua examples", function()
    local e, prefix, az
    lazy_setup(function()
      e = helpers.start_emulator()
      local az_path
      az_path, az = helpers.fake_az()
      local env = {
        ACS_ENDPOINT = e.endpoint, ACS_CONNECTION_STRING = e.connection_string,
        ACS_ACCESS_KEY = e.access_key, ACS_TOKEN = e.token,
        -- credential.default(): its first link, the environment's client secret
        AZURE_TENANT_ID = "docs-tenant", AZURE_CLIENT_ID = "docs-client",
        AZURE_CLIENT_SECRET = e.client_secret, AZURE_AUTHORITY_HOST = e.authority_host,
        AZURE_POD_IDENTITY_AUTHORITY_HOST = e.imds_endpoint,
        ACSCALL_AZURE_CLI = az_path, -- the chain's last link: never the real az
      }
      local parts = { "env" }
      -- the runner's own settings never reach an example
      for _, k in ipairs({ "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IMDS_ENDPOINT",
        "AZURE_FEDERATED_TOKEN_FILE", "ACSCALL_AUTH" }) do
        parts[#parts + 1] = "-u " .. k
      end
      for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. helpers.shell_quote(v) end
      prefix = table.concat(parts, " ")
    end)
    lazy_teardown(function()
      if e then e:stop() end
      if az then az.remove() end
    end)

    for _, b in ipairs(blocks) do
      if b.lang == "lua" and not b.not_runnable then
        it(b.file .. ":" .. b.line .. " runs", function()
          local out, ok, rc = helpers.run_lua(b.source, prefix)
          assert(ok, b.file .. ":" .. b.line .. " exited " .. tostring(rc) .. ":\n" .. out)
        end)
      end
    end
  end)
end)
