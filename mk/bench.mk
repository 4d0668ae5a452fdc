# mk/bench.mk - `make bench` (side by side against the floor and the
# peers, one table), `make bench-soak` (100,000 get_calls, RSS and
# fds) and `make bench-openresty` (the OpenResty gateway's paths
# against nginx proxy_pass under wrk). Benchmarks report; they are never part
# of `make test`. See bench/README.md.

# lua-sec: the hand-written HTTPS peer (ssl.https); valgrind: callgrind counts.
DEB_PKGS += lua-sec valgrind

BENCH_FLOOR  = $(BUILD)/bench/floor
BENCH_CALLS ?= 100000
NPM_FLAGS    = --no-audit --no-fund --loglevel=error

# wrk: the HTTP load generator of bench-openresty
DEB_PKGS += wrk

.PHONY: bench bench-soak bench-deps bench-openresty

# the floors embed Lua only to call lua-cjson's decode (the fair floors)
BENCH_LUALIB ?= $(if $(filter luajit,$(LUA_VERSION)),luajit-5.1,lua$(LUA_VERSION))
$(BENCH_FLOOR): bench/floor.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L -O2 -g -Wall -Wextra $(CURL_CFLAGS) -I$(LUA_INCDIR) $< -o $@ \
	  -lcurl -lcrypto -l$(BENCH_LUALIB)

# The JS SDK peer (node >= 20 and npm; without them its rows are skipped).
bench/node_modules/.package-lock.json: bench/package.json
	@if command -v npm >/dev/null; then cd bench && npm install $(NPM_FLAGS); \
	else echo "bench: npm not found: the JS SDK rows will be skipped"; fi

bench-deps: deps all $(BENCH_FLOOR) bench/node_modules/.package-lock.json

bench: bench-deps
	LUA=$(LUA) FLOOR=$(CURDIR)/$(BENCH_FLOOR) bench/run.sh

# the emulator is stopped on every exit, Ctrl-C included (bench/run.sh
# stops what it starts itself, by its own trap)
bench-soak: deps all
	@eval "$$(emulator/acs-emulator start)" || exit 1; \
	trap 'emulator/acs-emulator stop --dir "$$ACS_EMULATOR_DIR" >/dev/null' EXIT; \
	trap 'exit 130' INT; trap 'exit 143' TERM; \
	$(LUA) bench/soak.lua "$$ACS_ENDPOINT" 18dea47f-b081-4107-9a5c-4300819d2c6c $(BENCH_CALLS) 1000 "$$ACS_EMULATOR_LOG"

# one nginx worker, emulator at 50 ms: event-loop path, thread path and a
# plain proxy_pass location, at 32..512 connections (bench/openresty.sh says
# how; DURATION=, LATENCY=, PATHS=, EMU_WORKERS=, AUTH= tune it)
BENCH_CONNS ?= 32 64 128 256 512
bench-openresty: deps openresty-core
	bench/openresty.sh $(BENCH_CONNS)
