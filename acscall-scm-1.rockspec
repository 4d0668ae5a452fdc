rockspec_format = "3.0"
package = "acscall"
version = "scm-1"
source = {
  url = "git+file:///work/main",
}
description = {
  summary = "Inspect live Azure Communication Services calls from Lua (C core over libcurl)",
  detailed = [[
acscall fetches Azure Communication Services Call Automation call properties
(Call Connection - Get Call) with HMAC-SHA256 access-key signing or bearer
tokens, over a reused libcurl connection, and returns them as plain Lua tables.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
  "argparse", -- bin/acscall only
}
external_dependencies = {
  CURL = { library = "curl" },
  OPENSSL = { library = "crypto" },
}
build = {
  type = "make",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    CURL_INCDIR = "$(CURL_INCDIR)",
    LDFLAGS = "-L$(CURL_LIBDIR) -L$(OPENSSL_LIBDIR)",
  },
  install = {
    bin = { acscall = "bin/acscall" },
  },
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
  },
}
