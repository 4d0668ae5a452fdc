-- .ci/rock-smoke.lua TREE LABEL ID [VERSION]: run by a LuaRocks tree's own
-- interpreter with LUA_PATH/LUA_CPATH naming that tree first. Checks that
-- acscall and acscall.core load from TREE (not from a checkout), that
-- _VERSION is VERSION when given, then fetches call ID from the service in
-- ACS_CONNECTION_STRING (the emulator). One line "rock-smoke: ok ..." or an error.
local tree, label, id, want_version = arg[1], arg[2], arg[3], arg[4]
assert(tree and label and id, "usage: rock-smoke.lua TREE LABEL ID [VERSION]")

-- package.searchpath, which Lua 5.1 lacks
local function where(name, path)
  local file = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local candidate = template:gsub("%?", file)
    local f = io.open(candidate, "rb")
    if f then f:close() return candidate end
  end
end

local function check(ok, fmt, ...)
  if not ok then
    io.stderr:write(("rock-smoke: %s: FAILED: " .. fmt .. "\n"):format(label, ...))
    os.exit(1)
  end
end

local acscall = require "acscall"
local lua_file = where("acscall", package.path)
local core_file = where("acscall.core", package.cpath)
check(lua_file and lua_file:sub(1, #tree + 1) == tree .. "/", "acscall from %s, not %s", tostring(lua_file), tree)
check(core_file and core_file:sub(1, #tree + 1) == tree .. "/", "acscall.core from %s, not %s",
  tostring(core_file), tree)
check(not want_version or acscall._VERSION == want_version, "_VERSION %s, want %s",
  tostring(acscall._VERSION), tostring(want_version))

local client = acscall.new { connection_string = os.getenv("ACS_CONNECTION_STRING") }
local call, err = client:get_call(id)
client:close()
check(call, "get_call: %s", tostring(err))
check(call.callConnectionId == id, "got call %s", tostring(call.callConnectionId))

local jit = rawget(_G, "jit")
print(("rock-smoke: ok %s: %s%s, acscall %s, core %s: %s %s"):format(label, _VERSION,
  jit and (" (" .. jit.version .. ")") or "", acscall._VERSION, core_file, id, call.callConnectionState))
