/* compat.h - the few Lua C API differences between 5.1/LuaJIT and 5.2-5.4.
 * Shims carry our own acs_ names, never the real API's (lua-cjson broke on
 * LuaJIT 2.1 by defining luaL_setfuncs itself). */
#ifndef ACS_COMPAT_H
#define ACS_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

/* Only luaopen_acscall_core is exported from the shared object; every other
 * symbol stays inside it (the Makefile also builds with
 * -fvisibility=hidden; this makes it so for any build, luarocks' too). */
#if defined(__GNUC__)
#define ACS_EXPORT __attribute__((visibility("default")))
#else
#define ACS_EXPORT
#endif

#if LUA_VERSION_NUM >= 502
#define acs_rawlen(L, i) lua_rawlen((L), (i))
#define acs_setfuncs(L, l) luaL_setfuncs((L), (l), 0)
#else
#define acs_rawlen(L, i) lua_objlen((L), (i))
#define acs_setfuncs(L, l) luaL_register((L), NULL, (l))
#endif

/* Lua 5.3+ pushes integers as integers; 5.1/5.2 only have numbers. */
#if LUA_VERSION_NUM >= 503
#define acs_pushint(L, n) lua_pushinteger((L), (lua_Integer)(n))
#else
#define acs_pushint(L, n) lua_pushnumber((L), (lua_Number)(n))
#endif

#endif
