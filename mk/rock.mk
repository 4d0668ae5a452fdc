# mk/rock.mk - the LuaRocks release. The rockspecs build with
# LuaRocks' builtin type (not this Makefile): each build compiles csrc/*.c for
# the Lua it was asked for, so no object of another Lua can be installed.
#   make check-rockspec   the rockspecs' sources are exactly csrc/*.c, their modules lua/acscall/*.lua
#   make rock             $(SRC_ROCK): `luarocks pack` of the release rockspec,
#                         offline, from this working tree (mk/pack-rock says how)
#   make test-rocks       .ci/test-rocks: luarocks make for 5.1-5.4 and LuaJIT in
#                         both orders, the source rock installed for 5.4 and
#                         LuaJIT, lint, luarocks test; one PASS/FAIL line
# A new release: bump ROCK_VERSION, copy the rockspec to
# rockspecs/acscall-<v>-1.rockspec (version, tag), tag v<v> (README "Releases").

ROCK_VERSION     ?= 0.1.0
SCM_ROCKSPEC      = acscall-scm-1.rockspec
RELEASE_ROCKSPEC  = rockspecs/acscall-$(ROCK_VERSION)-1.rockspec
SRC_ROCK          = acscall-$(ROCK_VERSION)-1.src.rock

# LuaRocks and every Lua's headers, only when one of these is asked for
ROCK_GOALS = $(filter rock test-rocks check-rockspec,$(MAKECMDGOALS))
ifneq ($(ROCK_GOALS),)
DEB_PKGS += luarocks git zip unzip lua5.1 lua5.2 lua5.3 lua5.4 luajit2 \
            liblua5.1-0-dev liblua5.2-dev liblua5.3-dev liblua5.4-dev libluajit2-5.1-dev
endif

.PHONY: rock test-rocks check-rockspec

check-rockspec: deps
	@lua5.4 .ci/check-rockspec.lua $(SCM_ROCKSPEC) $(RELEASE_ROCKSPEC)

rock: deps
	@mk/pack-rock $(RELEASE_ROCKSPEC)

test-rocks: deps
	@.ci/test-rocks $(SCM_ROCKSPEC) $(RELEASE_ROCKSPEC)
