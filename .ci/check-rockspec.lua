-- .ci/check-rockspec.lua ROCKSPEC...: run from the repository root (any Lua).
-- Fails, saying what to change, when a rockspec's build does not match the
-- tree: the C sources of acscall.core must be exactly csrc/*.c, every
-- lua/acscall/*.lua must be a module, and every rockspec given must build,
-- depend and test the same way as the first (they differ in version and
-- source only). A release rockspec's tag must be v<version>.
local failures = 0
local function fail(fmt, ...)
  failures = failures + 1
  io.stderr:write("check-rockspec: ", fmt:format(...), "\n")
end

local function lines(cmd)
  local out, p = {}, assert(io.popen(cmd))
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  table.sort(out)
  return out
end

-- a rockspec's fields, without touching our globals (any Lua 5.1-5.4, LuaJIT)
local function load_rockspec(path)
  local env = {}
  local chunk, err = loadfile(path, "t", env)
  if not chunk then error("check-rockspec: " .. err, 0) end
  if rawget(_G, "setfenv") then _G.setfenv(chunk, env) end
  chunk()
  return env
end

-- a deep comparison, for "the same build"
local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local c_files = lines("ls csrc/*.c")
local lua_files = lines("ls lua/acscall/*.lua")
local paths = { ... }
if #paths == 0 then error("usage: lua .ci/check-rockspec.lua ROCKSPEC...", 0) end
local first

for _, path in ipairs(paths) do
  local spec = load_rockspec(path)
  local modules = spec.build and spec.build.modules or {}
  local core = modules["acscall.core"]
  local listed = {}
  for _, src in ipairs(core and core.sources or {}) do listed[src] = true end
  for _, f in ipairs(c_files) do
    if not listed[f] then
      fail('%s: %s is not in modules["acscall.core"].sources: add "%s",', path, f, f)
    end
    listed[f] = nil
  end
  for src in pairs(listed) do
    fail('%s: modules["acscall.core"].sources lists %s, which is not in csrc/: remove it', path, src)
  end

  for _, f in ipairs(lua_files) do
    local base = f:match("([^/]+)%.lua$")
    local name = base == "init" and "acscall" or "acscall." .. base
    if modules[name] ~= f then
      fail('%s: build.modules["%s"] must be "%s"', path, name, f)
    end
  end
  for name, v in pairs(modules) do
    local f = type(v) == "string" and io.open(v)
    if f then f:close()
    elseif type(v) == "string" then
      fail("%s: build.modules[%q] names %s, which does not exist", path, name, v)
    end
  end

  local version = tostring(spec.version):match("^(.-)%-%d+$")
  if spec.source and spec.source.tag and spec.source.tag ~= "v" .. tostring(version) then
    fail("%s: source.tag %s is not v%s", path, spec.source.tag, tostring(version))
  end
  if not path:match("acscall%-" .. tostring(spec.version):gsub("%p", "%%%0") .. "%.rockspec$") then
    fail("%s: the file name does not say version %s", path, tostring(spec.version))
  end

  if first then
    for _, key in ipairs({ "rockspec_format", "package", "description", "dependencies",
                           "external_dependencies", "build", "test" }) do
      if not same(first.spec[key], spec[key]) then
        fail("%s: %s differs from %s's (the rockspecs differ in version and source only)", path, key, first.path)
      end
    end
  else
    first = { path = path, spec = spec }
  end
end

if failures > 0 then
  io.stderr:write(("check-rockspec: FAILED (%d problems)\n"):format(failures))
  os.exit(1)
end
print(("check-rockspec: ok: %d rockspecs list the %d csrc/*.c files and the %d lua/acscall/*.lua modules")
  :format(#paths, #c_files, #lua_files))
