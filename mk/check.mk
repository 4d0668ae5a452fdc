# mk/check.mk - fuzzing, sanitizers, valgrind and static analysis.
#   make fuzz            build every libFuzzer harness and run each for FUZZ_SECONDS
#   make fuzz-regress    run each harness once over its committed seeds (seconds)
#   make test-asan       the whole busted suite against an ASan+UBSan build, aggressive GC
#   make test-valgrind   the whole busted suite under memcheck (0 definite leaks)
#   make analyze         cppcheck + clang-tidy over csrc/*.c
# Included at the end of the Makefile: LUA, BUILD, SRCS, HDRS, WARN, CURL_CFLAGS,
# LUA_PATH/LUA_CPATH and DEB_PKGS come from there. See fuzz/README.md.

# Tools added to `make deps` only when one of these targets is asked for, so
# `make test` on a fresh machine does not install clang and valgrind.
CHECK_GOALS = $(filter fuzz fuzz-build fuzz-regress test-asan test-valgrind analyze%,$(MAKECMDGOALS))
ifneq ($(filter fuzz%,$(CHECK_GOALS)),)
DEB_PKGS += clang libclang-rt-14-dev liblua5.4-dev lua-cjson libcurl4-openssl-dev libssl-dev
endif
ifneq ($(filter test-asan,$(CHECK_GOALS)),)
DEB_PKGS += clang libclang-rt-14-dev
endif
ifneq ($(filter test-valgrind,$(CHECK_GOALS)),)
DEB_PKGS += valgrind
endif
ifneq ($(filter analyze%,$(CHECK_GOALS)),)
DEB_PKGS += cppcheck clang-tidy
endif

.PHONY: fuzz fuzz-build fuzz-regress test-asan test-valgrind analyze \
        analyze-cppcheck analyze-clang-tidy

# the checks always use Lua 5.4 (the harnesses link liblua5.4)
CHECK_LUA_INCDIR = /usr/include/lua5.4
CHECK_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) \
               -I$(CHECK_LUA_INCDIR) $(CURL_CFLAGS) -Icsrc

# ------------------------------------------------------------------ fuzz
FUZZ_CC        ?= clang
FUZZ_SECONDS   ?= 60
FUZZ_MAX_LEN   ?= 8192
FUZZ_FLAGS     ?=
FUZZ_DIR        = build/fuzz
FUZZ_HARNESSES  = fuzz_decode fuzz_decode_diff fuzz_connstr
FUZZ_SAN        = -fsanitize=address,undefined -fno-sanitize-recover=all \
                  -fno-omit-frame-pointer -g -O1
FUZZ_LIBS       = -llua5.4 -lcurl -lcrypto -lm
FUZZ_BINS       = $(FUZZ_HARNESSES:%=$(FUZZ_DIR)/%)

$(FUZZ_DIR)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CHECK_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_DIR)/fuzz_decode: fuzz/fuzz_decode.c $(FUZZ_DIR)/obj/model.o $(FUZZ_DIR)/obj/tojson.o \
                      $(FUZZ_DIR)/obj/failure.o $(FUZZ_DIR)/obj/identifier.o $(FUZZ_DIR)/obj/util.o
	$(FUZZ_CC) $(CHECK_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer $^ -o $@ $(FUZZ_LIBS)

# the decoder before the one-walk pass, as the differential harness's oracle
$(FUZZ_DIR)/obj/model_ref.o: fuzz/model_ref.c $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CHECK_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_DIR)/fuzz_decode_diff: fuzz/fuzz_decode_diff.c $(FUZZ_DIR)/obj/model.o $(FUZZ_DIR)/obj/model_ref.o \
                      $(FUZZ_DIR)/obj/failure.o $(FUZZ_DIR)/obj/identifier.o $(FUZZ_DIR)/obj/util.o
	$(FUZZ_CC) $(CHECK_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer $^ -o $@ $(FUZZ_LIBS)

$(FUZZ_DIR)/fuzz_connstr: fuzz/fuzz_connstr.c $(FUZZ_DIR)/obj/auth.o $(FUZZ_DIR)/obj/request.o \
                       $(FUZZ_DIR)/obj/transport.o $(FUZZ_DIR)/obj/util.o
	$(FUZZ_CC) $(CHECK_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer $^ -o $@ $(FUZZ_LIBS)

fuzz-build: deps $(FUZZ_BINS)

# Each harness: FUZZ_SECONDS of libFuzzer over fuzz/corpus-<h> (the working
# corpus, gitignored, grows run to run) seeded from fuzz/seeds/<h>. A crash
# leaves build/fuzz/crash-<h>-* (reproduce: build/fuzz/<h> that-file) and
# fails the target. The last line is "fuzz: N harnesses, N execs, N crashes".
fuzz: fuzz-build
	@total=0; crashes=0; \
	for h in $(FUZZ_HARNESSES); do \
	  mkdir -p fuzz/corpus-$$h; \
	  dict=; [ -f fuzz/$$h.dict ] && dict=-dict=fuzz/$$h.dict; \
	  log=$(FUZZ_DIR)/$$h.log; \
	  echo "fuzz: $$h for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_DIR)/$$h -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crash-$$h- $$dict \
	    $(FUZZ_FLAGS) fuzz/corpus-$$h fuzz/seeds/$$h >$$log 2>&1; rc=$$?; \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log | tail -1); \
	  execs=$${execs:-0}; total=$$((total + execs)); \
	  if [ $$rc -ne 0 ]; then crashes=$$((crashes + 1)); \
	    grep -E 'ERROR|SUMMARY|violated|Test unit written|#[0-9]+ 0x' $$log | head -40; fi; \
	  echo "fuzz: $$h: $$execs execs, $$( [ $$rc -eq 0 ] && echo 0 || echo 1) crashes, corpus $$(ls fuzz/corpus-$$h | wc -l) inputs (log $$log)"; \
	done; \
	echo "fuzz: $(words $(FUZZ_HARNESSES)) harnesses, $$total execs, $$crashes crashes"; \
	[ $$crashes -eq 0 ]

# Every committed seed once through its harness: a fast regression check.
fuzz-regress: fuzz-build
	@for h in $(FUZZ_HARNESSES); do \
	  $(FUZZ_DIR)/$$h -runs=0 fuzz/seeds/$$h >$(FUZZ_DIR)/$$h.regress.log 2>&1 \
	    || { cat $(FUZZ_DIR)/$$h.regress.log; exit 1; }; \
	  echo "fuzz-regress: $$h: $$(ls fuzz/seeds/$$h | wc -l) seeds ok"; \
	done

# ------------------------------------------------------------------ ASan/UBSan
# The module built with clang's sanitizers against its shared runtime
# (-shared-libasan), loaded by the stock lua5.4 with that runtime preloaded.
# LeakSanitizer is on: lua5.4 closes its state at exit (busted calls
# os.exit(code, true)), so whatever is still unreachable then is a leak;
# fuzz/lsan.supp lists the few non-acscall ones (see there).
# Aggressive GC for the sanitizer and valgrind runs: a new cycle starts as
# soon as one ends (pause 0) and runs 10x the usual work per allocation, so a
# value the C code forgot to anchor is collected (and caught) at once.
CHECK_GC    ?= collectgarbage("setpause", 0) collectgarbage("setstepmul", 1000)
ASAN_CC     ?= clang
# under build/5.4/ (spec/01 checks the core comes from a build/<lua>/ dir)
ASAN_DIR     = build/5.4/asan
ASAN_CORE    = $(ASAN_DIR)/acscall/core.so
ASAN_SAN     = -fsanitize=address,undefined -fno-omit-frame-pointer -g -O1
ASAN_OBJS    = $(SRCS:csrc/%.c=$(ASAN_DIR)/obj/%.o)
ASAN_RT      = $(shell $(ASAN_CC) -print-file-name=libclang_rt.asan-x86_64.so 2>/dev/null)
ASAN_PRELOAD = $(ASAN_DIR)/asan_preload.so
ASAN_ENV     = LUA_CPATH='$(CURDIR)/$(ASAN_DIR)/?.so;$(CURDIR)/$(BUILD)/?.so;;' \
               LD_PRELOAD='$(ASAN_RT) $(CURDIR)/$(ASAN_PRELOAD)' \
               ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:exitcode=86 \
               LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp:print_suppressions=0 \
               UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
               LUA_INIT_5_4='$(CHECK_GC)' \
               ACSCALL_ASAN_PRELOAD='$(ASAN_RT) $(CURDIR)/$(ASAN_PRELOAD)'

$(ASAN_DIR)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(CHECK_CFLAGS) -fPIC $(ASAN_SAN) -c $< -o $@

$(ASAN_CORE): $(ASAN_OBJS)
	@mkdir -p $(dir $@)
	$(ASAN_CC) -shared -shared-libasan $(ASAN_SAN) -o $@ $^ -lcurl -lcrypto -lpthread

# fuzz/asan_preload.c takes LD_PRELOAD out of the environment inside lua5.4,
# so the processes the specs start (sh, nginx, openssl) run without ASan:
# their leaks are not ours.
$(ASAN_PRELOAD): fuzz/asan_preload.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O1 -o $@ $<

test-asan: deps openresty-core $(ASAN_CORE) $(ASAN_PRELOAD) $(TESTSUPPORT)
	@test -f "$(ASAN_RT)" || { echo "test-asan: no $(ASAN_CC) ASan runtime (apt-get install libclang-rt-14-dev)"; exit 1; }
	env $(ASAN_ENV) $(LUA) /usr/bin/busted --output=utfTerminal spec

# ------------------------------------------------------------------ valgrind
# The normal build, the whole suite; child processes (nginx, sh) untraced.
VALGRIND ?= valgrind
VALGRIND_FLAGS = --leak-check=full --errors-for-leak-kinds=definite \
                 --show-leak-kinds=definite --error-exitcode=99 \
                 --trace-children=no --num-callers=30 \
                 --suppressions=$(CURDIR)/fuzz/valgrind.supp

test-valgrind: deps all
	LUA_INIT_5_4='$(CHECK_GC)' $(VALGRIND) $(VALGRIND_FLAGS) $(LUA) /usr/bin/busted --output=utfTerminal spec

# ------------------------------------------------------------------ static analysis
CPPCHECK_FLAGS = --enable=warning,performance,portability --error-exitcode=1 \
                 --inline-suppr --std=c99 --quiet --suppress=missingIncludeSystem \
                 -D__x86_64__ -D__linux__ -I csrc
# -implicit-widening-of-multiplication-result: only ever fired on constant
# expressions (1024 * 1024); -DeprecatedOrUnsafeBufferHandling: memcpy/snprintf
# under Annex K advice, which C99 code does not follow.
TIDY_CHECKS    = clang-analyzer-*,bugprone-*,-bugprone-easily-swappable-parameters,\
                 -bugprone-reserved-identifier,-bugprone-implicit-widening-of-multiplication-result,\
                 -clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling
CLANG_TIDY    ?= clang-tidy
space         := $(subst ,, )

analyze: analyze-cppcheck analyze-clang-tidy

analyze-cppcheck: deps
	cppcheck $(CPPCHECK_FLAGS) $(SRCS)

analyze-clang-tidy: deps
	$(CLANG_TIDY) --quiet -checks='-*,$(subst $(space),,$(TIDY_CHECKS))' --warnings-as-errors='*' \
	  $(SRCS) -- $(CHECK_CFLAGS)

# ------------------------------------------------------------------ allocation failures
# fuzz/oom_sweep.c: every allocation of a workload (require, new, get_call,
# get_calls, a token provider) refused in turn, then recovery: 0 crashes
# (ASan+UBSan host and core), 0 hangs (alarm), close() always releases, a
# new client always works. Then a sample of the same under valgrind (the
# normal build; DWARF 4 so valgrind 3.19 reads it).
OOM_DIR      = build/oom
OOM_STEP_VALGRIND ?= 20
ifneq ($(filter test-oom,$(MAKECMDGOALS)),)
DEB_PKGS += clang libclang-rt-14-dev valgrind liblua5.4-dev
endif

$(OOM_DIR)/oom_sweep_asan: fuzz/oom_sweep.c
	@mkdir -p $(dir $@)
	$(ASAN_CC) $(CHECK_CFLAGS) -D_GNU_SOURCE $(ASAN_SAN) -shared-libasan -o $@ $< -llua5.4 -lcurl -lcrypto -ldl

$(OOM_DIR)/oom_sweep: fuzz/oom_sweep.c
	@mkdir -p $(dir $@)
	$(CC) $(CHECK_CFLAGS) -D_GNU_SOURCE -O1 -gdwarf-4 -o $@ $< -llua5.4 -lcurl -lcrypto -ldl

.PHONY: test-oom
test-oom: deps all $(ASAN_CORE) $(OOM_DIR)/oom_sweep_asan $(OOM_DIR)/oom_sweep
	@set -e; eval "$$(emulator/acs-emulator start)"; \
	trap 'emulator/acs-emulator stop --dir "$$ACS_EMULATOR_DIR" >/dev/null' EXIT; \
	export ACS_ENDPOINT ACS_CONNECTION_STRING ACS_TOKEN; \
	echo "test-oom: ASan+UBSan, every allocation"; \
	LUA_CPATH_5_4='$(CURDIR)/$(ASAN_DIR)/?.so;;' LD_LIBRARY_PATH='$(dir $(ASAN_RT))' \
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:exitcode=86 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(OOM_DIR)/oom_sweep_asan 1 0 1; \
	echo "test-oom: valgrind, every $(OOM_STEP_VALGRIND)th allocation"; \
	LUA_CPATH_5_4='$(CURDIR)/$(BUILD)/?.so;;' \
	  $(VALGRIND) $(VALGRIND_FLAGS) $(OOM_DIR)/oom_sweep 1 0 $(OOM_STEP_VALGRIND)

# The lifetime specs (spec/47) with every child interpreter inside valgrind
# (memcheck: 0 invalid reads or writes, 0 definite leaks; the whole suite
# under ASan is test-asan). Waits and time bounds scale by ACSCALL_SLOW.
VALGRIND_LOGS = build/valgrind-lifetime
ifneq ($(filter test-valgrind-lifetime,$(MAKECMDGOALS)),)
DEB_PKGS += valgrind
endif
.PHONY: test-valgrind-lifetime
test-valgrind-lifetime: deps all $(TESTSUPPORT)
	@rm -rf $(VALGRIND_LOGS) && mkdir -p $(VALGRIND_LOGS)
	ACSCALL_CHILD_WRAPPER='$(VALGRIND) $(VALGRIND_FLAGS) --log-file=$(CURDIR)/$(VALGRIND_LOGS)/%p.log' \
	ACSCALL_SLOW=8 $(BUSTED) --output=utfTerminal spec/47-lifetime_spec.lua
	@n=$$(ls $(VALGRIND_LOGS)/*.log | wc -l); \
	bad=$$(grep -L -E 'ERROR SUMMARY: 0 errors' $(VALGRIND_LOGS)/*.log); \
	if [ -n "$$bad" ]; then echo "test-valgrind-lifetime: errors in:"; \
	  for f in $$bad; do echo "== $$f"; grep -E 'Invalid|definitely|ERROR SUMMARY' $$f | head -20; done; exit 1; fi; \
	echo "test-valgrind-lifetime: $$n valgrind runs, 0 errors"
