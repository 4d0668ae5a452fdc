/* class.c - metatable registration (class.h). */
#include <lauxlib.h>

#include "class.h"

int acs_class_begin(lua_State *L, const char *name)
{
    luaL_getmetatable(L, name);
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_newtable(L);
    return 1;
}

void acs_class_end(lua_State *L, const char *name)
{
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    lua_setfield(L, LUA_REGISTRYINDEX, name); /* complete: register */
}
