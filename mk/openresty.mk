# mk/openresty.mk - the OpenResty path (Debian's nginx + lua-nginx-module, LuaJIT).
#   make openresty-core       build/luajit/acscall/core.so (what nginx loads)
#   make openresty-example    start examples/openresty (and the emulator) in temp
#                             prefixes; prints the URL and how to stop
#   make openresty-example-stop DIR=<ACSCALL_EXAMPLE_DIR>

# the LuaJIT build (for the OpenResty spec) and the example's server;
# ca-certificates: the example's default proxy_ssl_trusted_certificate
DEB_PKGS += luajit2 libluajit2-5.1-dev nginx libnginx-mod-http-lua ca-certificates
# lua-dkjson: spec 77 checks core.call_json's text with a second, strict JSON reader
DEB_PKGS += lua-dkjson

.PHONY: openresty-core openresty-example openresty-example-stop

openresty-core:
	@$(MAKE) --no-print-directory LUA_VERSION=luajit deps all

openresty-example: openresty-core
	@examples/openresty/run start

openresty-example-stop:
	@examples/openresty/run stop --dir "$(DIR)"

# `make test` (the README's command) proves the OpenResty path too: the
# spec needs the LuaJIT core that nginx loads.
test: openresty-core
