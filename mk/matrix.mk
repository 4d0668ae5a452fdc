# mk/matrix.mk - `make test-all`: the whole suite under every supported Lua.
# Each version: its Debian packages (`make LUA_VERSION=v deps`), its build
# (build/<v>/), then `make LUA_VERSION=v test` with the interpreter the specs
# must see (spec/01-interpreter_spec.lua). busted's own summary line of each
# run is printed untouched (CI sums them). A failing version does not stop
# the others; the target fails if any did.

MATRIX ?= 5.1 5.2 5.3 5.4 luajit

.PHONY: test-all

test-all:
	@$(MAKE) --no-print-directory LUA_VERSION=luajit deps all # the OpenResty spec needs build/luajit
	@failed=""; passed=""; \
	for v in $(MATRIX); do \
	  case $$v in \
	    luajit) want_lua="Lua 5.1"; want_jit="LuaJIT" ;; \
	    *) want_lua="Lua $$v"; want_jit="" ;; \
	  esac; \
	  echo; echo "==== test-all: Lua $$v"; \
	  if ! $(MAKE) --no-print-directory LUA_VERSION=$$v deps; then failed="$$failed $$v"; continue; fi; \
	  if ACSCALL_EXPECT_LUA="$$want_lua" ACSCALL_EXPECT_JIT="$$want_jit" \
	     $(MAKE) --no-print-directory LUA_VERSION=$$v test; then \
	    passed="$$passed $$v"; \
	  else \
	    failed="$$failed $$v"; \
	  fi; \
	done; \
	echo; echo "==== test-all: passed:$${passed:- none}; failed:$${failed:- none}"; \
	[ -z "$$failed" ]
