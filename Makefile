# acscall - build, test, demo. Honours LuaRocks' variables (CFLAGS, LIBFLAG,
# LUA_INCDIR, CURL_INCDIR, INST_LIBDIR, INST_LUADIR) so the rockspec can
# drive it, and works alone: `make`, `make test`, `make demo`.

# LUA_VERSION: 5.1 5.2 5.3 5.4 or luajit (Debian's luajit2, OpenResty's branch)
LUA_VERSION ?= 5.4
ifeq ($(LUA_VERSION),luajit)
LUA         ?= luajit
LUA_INCDIR  ?= /usr/include/luajit-2.1
LUA_DEB     = luajit2 libluajit2-5.1-dev
else
LUA         ?= lua$(LUA_VERSION)
LUA_INCDIR  ?= /usr/include/lua$(LUA_VERSION)
LUA_DEB     = lua$(LUA_VERSION) $(if $(filter 5.1,$(LUA_VERSION)),liblua5.1-0-dev,liblua$(LUA_VERSION)-dev)
endif
CURL_INCDIR ?= /usr/include/x86_64-linux-gnu
CC          ?= cc
CFLAGS      ?= -O2 -g
LIBFLAG     ?= -shared
WARN        = -Wall -Wextra -Wshadow -Wmissing-prototypes -Wwrite-strings
ALLCFLAGS   = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC $(WARN) $(CFLAGS) \
              -I$(LUA_INCDIR) -I$(CURL_INCDIR)
LIBS        = -lcurl -lcrypto -lpthread

BUILD   = build/$(LUA_VERSION)
SRCS    = csrc/acscall.c csrc/auth.c csrc/request.c csrc/transport.c csrc/decode.c csrc/batch.c
OBJS    = $(SRCS:csrc/%.c=$(BUILD)/obj/%.o)
HDRS    = $(wildcard csrc/*.h)
CORE    = $(BUILD)/acscall/core.so

# How to use the module from the repository without installing it.
export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;
BUSTED = $(LUA) /usr/bin/busted

.PHONY: all deps test demo clean install env

all: $(CORE)

$(BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) -o $@ $(OBJS) $(LDFLAGS) $(LIBS)

# Debian packages the build, the tests and the emulator need; installed only
# when something is missing (apt-get needs root).
DEB_PKGS = build-essential pkg-config $(LUA_DEB) lua5.4 \
           libcurl4-openssl-dev libssl-dev lua-cjson lua-busted lua-socket \
           lua-luaossl nginx libnginx-mod-http-lua openssl curl
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# BUSTED_FLAGS: more busted options, e.g. `make test BUSTED_FLAGS="--shuffle --seed=42"`
BUSTED_FLAGS ?=
test: deps all
	$(BUSTED) --output=utfTerminal $(BUSTED_FLAGS) spec

# Against a real resource when ACS_CONNECTION_STRING (or ACS_ENDPOINT with
# ACS_TOKEN or ACS_ACCESS_KEY) is set, else against the bundled emulator,
# started here and stopped on every exit (Ctrl-C included).
DEMO_CALL ?= 18dea47f-b081-4107-9a5c-4300819d2c6c
demo: deps all
	@if [ -n "$$ACS_CONNECTION_STRING" ] || { [ -n "$$ACS_ENDPOINT" ] && [ -n "$$ACS_TOKEN$$ACS_ACCESS_KEY" ]; }; then \
	  $(LUA) bin/acscall get "$(DEMO_CALL)"; \
	else \
	  set -a; eval "$$(emulator/acs-emulator start)" || exit 1; set +a; \
	  trap 'emulator/acs-emulator stop --dir "$$ACS_EMULATOR_DIR" >/dev/null' EXIT; \
	  trap 'exit 130' INT; trap 'exit 143' TERM; \
	  echo "emulator: $$ACS_ENDPOINT (no ACS resource configured)"; \
	  echo '$$ bin/acscall get $(DEMO_CALL)'; \
	  $(LUA) bin/acscall get "$(DEMO_CALL)"; \
	fi

# `eval $(make -s env)` sets LUA_PATH/LUA_CPATH for this checkout.
env:
	@echo "export LUA_PATH='$(LUA_PATH)' LUA_CPATH='$(LUA_CPATH)'"

install: $(CORE)
	mkdir -p $(INST_LIBDIR)/acscall $(INST_LUADIR)/acscall
	cp $(CORE) $(INST_LIBDIR)/acscall/core.so
	cp lua/acscall/*.lua $(INST_LUADIR)/acscall/

clean:
	rm -rf build

# Each area adds its own targets (and DEB_PKGS += ...) in mk/<area>.mk.
-include mk/*.mk
