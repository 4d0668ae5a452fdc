-- The development rockspec (the tip of main). Releases are rockspecs/acscall-<v>-1.rockspec;
-- the two differ only in `version` and `source`. `luarocks make` builds from this checkout.
rockspec_format = "3.0"
package = "acscall"
version = "scm-1"
source = {
  url = "git+https://github.com/acscall/acscall.git",
  branch = "main",
}
description = {
  summary = "Inspect live Azure Communication Services calls from Lua (C core over libcurl)",
  detailed = [[
acscall fetches Azure Communication Services Call Automation call properties
(Call Connection - Get Call) with HMAC-SHA256 access-key signing or bearer
tokens, over a reused libcurl connection, and returns them as plain Lua tables.
The command line tool bin/acscall also needs argparse (not a dependency of the
library: install it for the CLI).
]],
  homepage = "https://github.com/acscall/acscall",
  issues_url = "https://github.com/acscall/acscall/issues",
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}
external_dependencies = {
  CURL = { library = "curl" },
  -- openssl/core_names.h exists from OpenSSL 3.0 on: the core uses EVP_MAC (3.0+)
  OPENSSL = { header = "openssl/core_names.h", library = "crypto" },
}
build = {
  type = "builtin",
  modules = {
    ["acscall.core"] = {
      -- The C core: every csrc/*.c, nothing else (`make check-rockspec` compares).
      sources = {
        "csrc/attempt.c",
        "csrc/auth.c",
        "csrc/batch.c",
        "csrc/call.c",
        "csrc/class.c",
        "csrc/client.c",
        "csrc/command.c",
        "csrc/failure.c",
        "csrc/fetch.c",
        "csrc/form.c",
        "csrc/frame.c",
        "csrc/identifier.c",
        "csrc/model.c",
        "csrc/module.c",
        "csrc/options.c",
        "csrc/request.c",
        "csrc/retry.c",
        "csrc/tojson.c",
        "csrc/transport.c",
        "csrc/util.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "csrc", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
      libraries = { "curl", "crypto", "pthread" },
    },
    acscall = "lua/acscall/init.lua",
    ["acscall.cli"] = "lua/acscall/cli.lua",
    ["acscall.resty"] = "lua/acscall/resty.lua",
    ["acscall.resty_worker"] = "lua/acscall/resty_worker.lua",
    ["acscall.credential"] = "lua/acscall/credential.lua",
    ["acscall.watch"] = "lua/acscall/watch.lua",
  },
  install = {
    bin = { acscall = "bin/acscall" },
    -- the nginx side of acscall.resty's event-loop path: installed as the
    -- rock's configuration file, `luarocks show --rock-dir acscall`/conf/acscall.conf
    -- (docs/openresty.md "A first nginx.conf")
    conf = { ["acscall.conf"] = "lua/acscall/nginx/acscall.conf",
      ["acscall_proxy_first.conf"] = "lua/acscall/nginx/acscall_proxy_first.conf" },
  },
  -- LuaCATS annotations for lua-language-server (workspace.library):
  -- installed as <tree>/lib/luarocks/rocks-<lua>/acscall/<version>/types/
  copy_directories = { "types" },
}
test = {
  -- Debian's busted is not a rock, so type "busted" cannot find it; this runs
  -- the suite under the Lua LuaRocks was started for (see the script).
  type = "command",
  script = "spec/luarocks_test.lua",
}
