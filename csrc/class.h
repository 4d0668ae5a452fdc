/* class.h - every metatable registered the same way (Lua-cURLv3's
 * lutil_newmetatablep): built whole, then stored in the registry under its
 * name, so a second require in the same state keeps the first (its objects
 * use it). */
#ifndef ACS_CLASS_H
#define ACS_CLASS_H

#include <lua.h>

/* 0 when a metatable named `name` is registered already (nothing pushed);
 * else 1, with a new metatable and its methods table pushed (at -2 and -1)
 * for the files' registration functions to fill. */
int acs_class_begin(lua_State *L, const char *name);
/* The methods become __index, __name is set, the metatable is registered;
 * both tables are popped. */
void acs_class_end(lua_State *L, const char *name);

#endif
