# mk/cli.mk - the command line's companions: lint and API docs.
#   make lint   luacheck (Debian lua-check) over every Lua file, per .luacheckrc
#   make docs   LDoc (Debian lua-ldoc) HTML reference into build/ldoc/, per config.ld
#               (docs/ holds the hand-written pages it renders as topics);
#               fails on any LDoc warning
# Included at the end of the Makefile (DEB_PKGS, deps come from there).
# lua-markdown: LDoc's markdown (Debian's lua-ldoc ships without its built-in
# one) is Lua 5.1 only, so LDoc runs under lua5.1.

DEB_PKGS += lua-argparse lua-check lua-ldoc lua-markdown lua5.1
# the CLI's terminal, symlink and sleep calls (lua/acscall/cli.lua, bin/acscall):
# lua-posix (Lua 5.1-5.3, LuaJIT); lua-term, lua-filesystem, lua-system for 5.4
DEB_PKGS += lua-posix lua-term lua-filesystem lua-system

LUACHECK ?= luacheck
LDOC     ?= lua5.1 /usr/bin/ldoc
LINT_DIRS = $(wildcard lua bin spec emulator examples bench .ci)

.PHONY: lint docs

lint: deps
	$(LUACHECK) --no-color $(LINT_DIRS) $(wildcard .luacheckrc)

docs: deps
	@rm -rf build/ldoc
	@out=$$($(LDOC) -c config.ld . 2>&1); rc=$$?; echo "$$out"; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	if echo "$$out" | grep -Eq '^[^ ]+:[0-9]+: |[Ww]arning|not found'; then \
	  echo "docs: LDoc reported problems (above)"; exit 1; fi; \
	echo "docs: build/ldoc/index.html"
