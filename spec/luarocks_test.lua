-- spec/luarocks_test.lua: what `luarocks test` runs (the rockspecs' `test`
-- section, type "command" with this script). Not a spec itself (no _spec in
-- its name, busted does not load it).
--
-- LuaRocks starts this script with the interpreter it is configured for
-- (`luarocks --lua-version 5.3 test` runs lua5.3 here, a LuaJIT configuration
-- luajit), and the script runs the whole busted suite under that same
-- interpreter through `make test`: the C core built for this Lua into
-- build/<version>/, the specs' emulators on loopback. Arguments after `--`
-- (`luarocks test acscall-scm-1.rockspec -- --filter=decode`) go to busted.
--
-- Why not `test = {type = "busted"}`: LuaRocks then requires busted as a rock
-- in one of its trees (installing it from the rock server if it is not) and
-- runs that tree's bin/busted. Debian's lua-busted is not a rock, so offline
-- that fails ("Could not satisfy dependency busted"), and Debian's
-- /usr/bin/busted would run under /usr/bin/lua (5.1) whatever Lua was asked for.

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local root = here .. "/.."
local interpreter = arg and arg[-1] or "lua"

local jit = rawget(_G, "jit")
local version = jit and "luajit" or _VERSION:match("%d+%.%d+")

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local extra = {}
for i = 1, #arg do extra[#extra + 1] = q(arg[i]) end

local cmd = table.concat({
  "ACSCALL_EXPECT_LUA=" .. q(_VERSION),
  "ACSCALL_EXPECT_JIT=" .. q(jit and "LuaJIT" or ""),
  "make --no-print-directory -C", q(root),
  "LUA_VERSION=" .. q(version),
  "LUA=" .. q(interpreter),
  "BUSTED_FLAGS=" .. q(table.concat(extra, " ")),
  "test",
}, " ")
io.stderr:write("luarocks test: ", cmd, "\n")

-- Lua 5.1 returns a wait status, 5.2+ true|nil, "exit"|"signal", code
local a, _, c = os.execute(cmd)
local code
if type(a) == "number" then code = a >= 256 and math.floor(a / 256) or a
else code = a and 0 or c or 1 end
os.exit(code)
