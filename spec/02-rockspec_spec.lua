-- The rockspecs against the tree. The full proof (luarocks make for
-- every Lua, both orders; the source rock; luarocks test; lint) is
-- `make test-rocks` (.ci/test-rocks); this part is cheap, so every `make test`
-- says at once when a C file or a Lua module is missing from a rockspec.
local helpers = require "spec.helpers"

local root = helpers.repo_root()
local q = helpers.shell_quote

local function interpreter()
  return rawget(_G, "jit") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))
end

local function release_rockspecs()
  local out = helpers.run("cd " .. q(root) .. " && ls rockspecs/acscall-*-1.rockspec")
  local list = {}
  for l in out:gmatch("[^\n]+") do list[#list + 1] = l end
  return list
end

describe("rockspecs", function()
  it("build exactly csrc/*.c and lua/acscall/*.lua, and agree with each other", function()
    local specs = release_rockspecs()
    assert.is_true(#specs >= 1, "no rockspecs/acscall-<v>-1.rockspec")
    local out, ok = helpers.run("cd " .. q(root) .. " && " .. interpreter() .. " .ci/check-rockspec.lua "
      .. "acscall-scm-1.rockspec " .. table.concat(specs, " ") .. " 2>&1")
    assert.is_true(ok, out)
  end)

  it("a release rockspec per version of the core, tagged v<version>", function()
    local version = require("acscall")._VERSION
    local f = io.open(root .. "/rockspecs/acscall-" .. version .. "-1.rockspec")
    assert.is_not_nil(f, "no rockspecs/acscall-" .. version .. "-1.rockspec for _VERSION " .. version)
    local text = f:read("*a")
    f:close()
    assert.matches('tag = "v' .. version:gsub("%.", "%%.") .. '"', text)
    assert.matches('url = "git%+https://', text)
  end)

  it("the CHANGELOG has a section for the version", function()
    local version = require("acscall")._VERSION
    local text = helpers.read_file(root .. "/CHANGELOG.md") or ""
    assert.matches("\n## %[?" .. version:gsub("%.", "%%.") .. "%]?", text)
    assert.matches("\n## %[?Unreleased%]?", text)
  end)

  it("no file git tracks names a directory of one machine", function()
    local out, ok, rc = helpers.run("cd " .. q(root) .. " && git rev-parse --git-dir >/dev/null 2>&1 && "
      .. "git grep -nE '/(work|home|root)/' -- . 2>&1")
    if rc == 1 or rc == 128 then return end -- git grep found nothing (1), or not a git checkout (128)
    assert.is_false(ok, "absolute paths in the repository:\n" .. out)
    assert.equal(1, rc, "git grep failed: " .. out)
  end)
end)
