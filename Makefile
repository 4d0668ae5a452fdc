# acscall - build, test, demo for development: `make`, `make test`, `make demo`.
# The rockspecs do not use it (they build with LuaRocks' builtin type, see
# mk/rock.mk). Honours CC, CFLAGS, LIBFLAG, LUA_INCDIR and, when curl's headers
# are somewhere the compiler does not look, CURL_INCDIR.

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
CC          ?= cc
CFLAGS      ?= -O2 -g
LIBFLAG     ?= -shared
WARN        = -Wall -Wextra -Wshadow -Wmissing-prototypes -Wwrite-strings
ALLCFLAGS   = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) \
              -I$(LUA_INCDIR) $(CURL_CFLAGS)
# Debian's multiarch curl headers (/usr/include/<triplet>/curl) are found by
# the compiler itself; CURL_INCDIR only for a curl installed elsewhere.
CURL_CFLAGS = $(if $(CURL_INCDIR),-I$(CURL_INCDIR))
LIBS        = -lcurl -lcrypto -lpthread

BUILD   = build/$(LUA_VERSION)
SRCS    = $(sort $(wildcard csrc/*.c))
OBJS    = $(SRCS:csrc/%.c=$(BUILD)/obj/%.o)
HDRS    = $(wildcard csrc/*.h)
CORE    = $(BUILD)/acscall/core.so

# How to use the module from the repository without installing it.
export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;
# versioned paths (`make -s env`, `luarocks path`) in the caller's shell win
# over the ones above in Lua 5.2-5.4: the suite must load this checkout
unexport LUA_PATH_5_2 LUA_PATH_5_3 LUA_PATH_5_4 LUA_CPATH_5_2 LUA_CPATH_5_3 LUA_CPATH_5_4
BUSTED = $(LUA) /usr/bin/busted
BUSTED_FLAGS ?=

.PHONY: all deps test demo clean env

all: $(CORE)

$(BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) -o $@ $(OBJS) $(LDFLAGS) $(LIBS)

# test-only: fork/wait/_exit and a descriptor count for the lifetime specs
TESTSUPPORT = $(BUILD)/acscall_testsupport.so
$(TESTSUPPORT): spec/support/testsupport.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -fvisibility=default $(LIBFLAG) -o $@ $<

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

# Every test run: the core refuses to connect anywhere but loopback, so a
# default a spec forgot to override (IMDS, a token authority, a real ACS
# host) fails the spec instead of sending a packet (csrc/transport.h); and
# building an acscall.credential aimed off loopback (or at the real az) raises.
test: export ACSCALL_LOOPBACK_ONLY = 1
test-%: export ACSCALL_LOOPBACK_ONLY = 1

# BUSTED_FLAGS: more busted options, e.g. `make test BUSTED_FLAGS="--shuffle --seed=42"`
# SPECS: the spec files or folders to run (default: all), e.g.
# `make test SPECS=spec/80-credential_spec.lua`
BUSTED_FLAGS ?=
SPECS ?= spec
# the interpreter spec/01 (and the child interpreters of other specs) must
# see: the one LUA_VERSION names, unless the caller says otherwise (test-all)
EXPECT_LUA = $(if $(filter luajit,$(LUA_VERSION)),Lua 5.1,Lua $(LUA_VERSION))
EXPECT_JIT = $(if $(filter luajit,$(LUA_VERSION)),LuaJIT)
test: export ACSCALL_EXPECT_LUA ?= $(EXPECT_LUA)
test: export ACSCALL_EXPECT_JIT ?= $(EXPECT_JIT)
# The slow set: the few specs that must really wait (a real Retry-After, a
# trickling body, ...) carry the busted tag #slow; `make test` leaves them
# out and `make test-slow` runs only them (docs/development.md "The slow set").
SLOW_TAGS ?= --exclude-tags=slow
test: deps all $(TESTSUPPORT)
	$(BUSTED) --output=utfTerminal $(SLOW_TAGS) $(BUSTED_FLAGS) $(SPECS)

.PHONY: test-slow test-times
test-slow:
	@$(MAKE) --no-print-directory test SLOW_TAGS=--tags=slow

# Each spec file in its own busted run, slowest first: where the suite's time
# goes (seconds, build excluded; a file's emulators and nginx included).
test-times:
	@$(MAKE) --no-print-directory test SPECS=spec/00-module_spec.lua >/dev/null # builds what test builds
	@for f in $(sort $(wildcard $(addsuffix /*_spec.lua,$(SPECS)) $(filter %_spec.lua,$(SPECS)))); do \
	  t0=$$(date +%s.%N); \
	  $(BUSTED) --output=TAP $(SLOW_TAGS) $(BUSTED_FLAGS) $$f >/dev/null 2>&1 || echo "  (failed: $$f)"; \
	  echo "$$t0 $$(date +%s.%N) $$f" | awk '{printf "%.2f %s\n", $$2 - $$1, $$3}'; \
	done | sort -rn | awk '/failed/ {print; next} {printf "%7.2f s  %s\n", $$1, $$2; t += $$1} END {printf "%7.2f s  total\n", t}'

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

# `eval "$$(make -s env)"` points $(LUA) at this checkout: LUA_PATH (the Lua
# files serve every version) and the C path of this version only, so another
# Lua never loads this build (it would fail with an undefined symbol):
# LUA_CPATH_5_2/_5_3/_5_4 for 5.2-5.4; 5.1 and LuaJIT read only LUA_CPATH.
ENV_CPATH_VAR = $(if $(filter 5.2 5.3 5.4,$(LUA_VERSION)),LUA_CPATH_$(subst .,_,$(LUA_VERSION)),LUA_CPATH)
env:
	@echo "export LUA_PATH='$(LUA_PATH)' $(ENV_CPATH_VAR)='$(LUA_CPATH)'"

# also what `luarocks make` (builtin) leaves in the checkout
clean:
	rm -rf build
	rm -f csrc/*.o acscall/core.so
	@if [ -d acscall ]; then rmdir acscall; fi

# Each area adds its own targets (and DEB_PKGS += ...) in mk/<area>.mk.
-include mk/*.mk
