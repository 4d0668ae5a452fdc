-- spec/97-comments_spec.lua: comments and docs say what a reader of the repository can
-- check. A tracker number (the word issue and a number) points at a tracker the reader does not have; the
-- rule, or a public source with its version, says it instead (docs/development.md).
-- CHANGELOG.md is history and is left out.
local helpers = require "spec.helpers"

local root = helpers.repo_root()
local q = helpers.shell_quote

describe("comments and docs", function()
  it("cite no tracker numbers", function()
    local out, ok, rc = helpers.run("cd " .. q(root) .. " && git rev-parse --git-dir >/dev/null 2>&1 && "
      .. "git grep -n -i -E '\\bissues? [0-9]+|\\bissue #[0-9]+' -- . ':!CHANGELOG.md' 2>&1")
    if rc == 128 then return end -- not a git checkout (a source rock's tree)
    assert.is_false(ok, "tracker numbers:\n" .. out)
    assert.equal(1, rc, "git grep failed: " .. out)
  end)

  it("the layout the README points at is complete: csrc/module.c's header names every C file", function()
    local header = assert(helpers.read_file(root .. "/csrc/module.c")):match("^/%*(.-)%*/")
    local out = helpers.run("cd " .. q(root) .. " && ls csrc/*.c")
    for path in out:gmatch("[^\n]+") do
      local name = path:match("([^/]+)$")
      if name ~= "module.c" then
        assert.truthy(header:find(" " .. name:gsub("%.", "%%.") .. " "), "csrc/module.c's header does not name " .. name)
      end
    end
  end)
end)
