-- luacheck configuration (Debian's lua-check): `make lint` or `luacheck .`
std = "max"            -- code runs on Lua 5.1-5.4 and LuaJIT
max_line_length = 120
self = false           -- a method may ignore self (Emulator:call_path, ...)
include_files = {"lua/**/*.lua", "bin/acscall", "spec/**/*.lua", "emulator/**/*.lua",
  "examples/**/*.lua", "bench/**/*.lua", ".ci/**/*.lua", ".luacheckrc"}
exclude_files = {"bench/node_modules/**", "build/**", "docs/**", "luarocks/**"}

-- busted specs; fixture vectors make for long lines
files["spec/"] = {std = "+busted", max_line_length = false}
-- benchmark scripts print wide tables and carry long command lines
files["bench/"] = {max_line_length = false}

-- Code that runs inside nginx (lua-nginx-module / OpenResty): ngx is a global.
files["emulator/"] = {std = "ngx_lua"}
files["lua/acscall/resty.lua"] = {std = "ngx_lua"}
files["lua/acscall/resty_worker.lua"] = {std = "ngx_lua"}
files["examples/openresty/"] = {std = "ngx_lua"}
