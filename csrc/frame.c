/* frame.c - the frame every Lua-facing operation runs in (frame.h): the
 * protected body with cleanup, and the watch on Ctrl-C. */
#include <stdarg.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "frame.h"
#include "util.h"

/* ---------- Ctrl-C ------------------------------------------------------ */

#if LUA_VERSION_NUM < 502 && !defined(LUA_JITLIBNAME)
static const char main_key = 0; /* registry: the main thread (5.1) */
#endif

void acs_call_note_main_thread(lua_State *L)
{
#if LUA_VERSION_NUM < 502 && !defined(LUA_JITLIBNAME)
    if (lua_pushthread(L)) { /* 1: L is the main thread */
        lua_pushlightuserdata(L, (void *)&main_key);
        lua_insert(L, -2);
        lua_rawset(L, LUA_REGISTRYINDEX);
    } else {
        lua_pop(L, 1);
    }
#else
    (void)L;
#endif
}

/* The main thread when it is another than L and its hook can be read. */
static lua_State *main_thread(lua_State *L)
{
#if defined(LUA_JITLIBNAME)
    (void)L;
    return NULL; /* LuaJIT keeps one hook for all coroutines */
#else
    lua_State *m;
#if LUA_VERSION_NUM >= 502
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
#else
    lua_pushlightuserdata(L, (void *)&main_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
#endif
    m = lua_tothread(L, -1);
    lua_pop(L, 1);
    return m == L ? NULL : m;
#endif
}

void acs_watch_begin(acs_watch *w, lua_State *L)
{
    w->L = L;
    w->hook = lua_gethook(L);
    w->mask = lua_gethookmask(L);
    w->main = main_thread(L);
    w->main_hook = w->main ? lua_gethook(w->main) : NULL;
    w->main_mask = w->main ? lua_gethookmask(w->main) : 0;
}

/* Reads two fields of each Lua state: safe from libcurl's callbacks. */
int acs_watch_interrupted(const void *ud)
{
    const acs_watch *w = ud;
    if (lua_gethook(w->L) != w->hook || lua_gethookmask(w->L) != w->mask)
        return 1;
    return w->main && (lua_gethook(w->main) != w->main_hook ||
                       lua_gethookmask(w->main) != w->main_mask);
}

int acs_watch_sleep(const acs_watch *w, long ms)
{
    long until = acs_monotonic_ms() + ms;
    if (acs_watch_interrupted(w))
        return 1;
    while (acs_sleep_ms(until - acs_monotonic_ms()) != 0)
        if (acs_watch_interrupted(w))
            return 1;
    return 0;
}

/* ---------- the frame ---------------------------------------------------- */

int acs_call_run(lua_State *L, int nargs, lua_CFunction body, void *ctx,
                 void (*cleanup)(lua_State *L, void *ctx))
{
    int base = lua_gettop(L) - nargs, st;
    lua_pushcfunction(L, body); /* 5.1 allocates: may raise, nothing taken */
    lua_insert(L, base + 1);
    lua_pushlightuserdata(L, ctx);
    st = lua_pcall(L, nargs + 1, LUA_MULTRET, 0);
    cleanup(L, ctx);
    if (st != 0)
        return lua_error(L); /* the body's error, as it was raised */
    return lua_gettop(L) - base;
}

int acs_raise(lua_State *L, const char *fmt, ...)
{
    lua_Debug ar;
    int level;
    va_list ap;
    lua_pushliteral(L, "");
    for (level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0) {
            lua_pop(L, 1);
            lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
            break;
        }
    }
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}
