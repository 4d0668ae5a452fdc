-- spec/59-structure_spec.lua: the C sources form no circle. A file of csrc/ is a unit
-- (x.c with its x.h); unit A uses unit B when A's files include B's header or call a
-- function B defines. No two units may use each other, directly or through others: a
-- reader follows each rule down to one place, never round in a circle.
local helpers = require "spec.helpers"

local root = helpers.repo_root()

local function units()
  local out = helpers.run("cd " .. helpers.shell_quote(root) .. " && ls csrc/*.c csrc/*.h")
  local files = {}
  for path in out:gmatch("[^\n]+") do
    local unit = path:match("([^/]+)%.[ch]$")
    files[#files + 1] = { unit = unit, text = assert(helpers.read_file(root .. "/" .. path)) }
  end
  return files
end

-- the text with comments and string literals blanked, so neither counts as a use
local function code_of(text)
  return (text:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " "):gsub('"[^"\n]*"', '""'))
end

-- unit -> set of units it uses
local function graph(files)
  local definer = {} -- function name -> unit that defines it (not static)
  for _, f in ipairs(files) do
    local code = code_of(f.text)
    for line in code:gmatch("[^\n]+") do
      -- a definition at column 0: `type name(` on one line, not static, not a prototype
      local name = line:match("^[%a_][%w_ %*]-[%s%*]([%a_][%w_]*)%s*%(")
      if name and not line:match("^static") and not line:match(";%s*$") and not line:match("^typedef")
        and not definer[name] and code:find("\n" .. line:gsub("%p", "%%%0") .. "[^;]-\n{") then
        definer[name] = f.unit
      end
    end
  end
  local uses = {}
  for _, f in ipairs(files) do
    local set = uses[f.unit] or {}
    uses[f.unit] = set
    for inc in f.text:gmatch('#include%s+"([^"]+)%.h"') do
      if inc ~= f.unit then set[inc] = "includes " .. inc .. ".h" end
    end
    for name in code_of(f.text):gmatch("([%a_][%w_]*)%s*%(") do
      local d = definer[name]
      if d and d ~= f.unit and not set[d] then set[d] = "calls " .. name end
    end
  end
  return uses, definer
end

-- a circle as a list of "a -(why)-> b" steps, or nil
local function find_cycle(uses)
  local state, stack = {}, {}
  local function visit(u)
    state[u] = "open"
    stack[#stack + 1] = u
    local names = {}
    for v in pairs(uses[u] or {}) do names[#names + 1] = v end
    table.sort(names)
    for _, v in ipairs(names) do
      if state[v] == "open" then
        local steps, from = {}, nil
        for i = #stack, 1, -1 do if stack[i] == v then from = i break end end
        for i = from, #stack do
          local a, b = stack[i], stack[i + 1] or v
          steps[#steps + 1] = a .. " (" .. uses[a][b] .. ") -> " .. b
        end
        return steps
      elseif not state[v] then
        local c = visit(v)
        if c then return c end
      end
    end
    stack[#stack] = nil
    state[u] = "done"
  end
  local all = {}
  for u in pairs(uses) do all[#all + 1] = u end
  table.sort(all)
  for _, u in ipairs(all) do
    if not state[u] then
      local c = visit(u)
      if c then return c end
    end
  end
end

describe("csrc/ has no circle", function()
  it("the check sees the uses: function calls and includes between units", function()
    local uses, definer = graph(units())
    assert.are.equal("util", definer.acs_eq_ci)
    assert.are.equal("failure", definer.acs_push_failure)
    assert.truthy(uses.call.client, "call.c uses the client")
    assert.is_nil(uses.util.client)
    -- a circle made up is found
    assert.truthy(find_cycle{ a = { b = "calls f" }, b = { c = "includes c.h" }, c = { a = "calls g" } })
    assert.is_nil(find_cycle{ a = { b = "x" }, b = { c = "x" }, c = {} })
  end)

  it("no two units of csrc/ use each other, directly or through others", function()
    local steps = find_cycle((graph(units())))
    assert.is_nil(steps, steps and ("a circle: " .. table.concat(steps, ", ")))
  end)
end)
