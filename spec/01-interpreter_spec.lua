-- The matrix (make test-all) runs this suite under Lua 5.1-5.4 and LuaJIT; each
-- run says which interpreter it expects (ACSCALL_EXPECT_LUA, ACSCALL_EXPECT_JIT).
describe("interpreter", function()
  it("is the Lua the suite was started for", function()
    assert.are.equal(os.getenv("ACSCALL_EXPECT_LUA") or "Lua 5.4", _VERSION)
  end)

  it("is LuaJIT exactly when the suite was started for LuaJIT", function()
    local want = os.getenv("ACSCALL_EXPECT_JIT") or ""
    local jit = rawget(_G, "jit")
    if want ~= "" then
      assert.is_table(jit, "expected " .. want .. ", got " .. _VERSION)
      assert.matches(want, jit.version, 1, true)
      assert.matches("LuaJIT", jit.version, 1, true)
    else
      assert.is_nil(jit and jit.version, "unexpected " .. tostring(jit and jit.version))
    end
  end)

  it("loads the C core built for this interpreter", function()
    local core = require "acscall.core"
    local path = package.searchpath and package.searchpath("acscall.core", package.cpath)
    if path then
      local want = (rawget(_G, "jit") and "luajit") or _VERSION:match("%d+%.%d+")
      assert.matches("/build/" .. want:gsub("%.", "%%.") .. "/", path)
    end
    assert.is_table(core)
  end)
end)
