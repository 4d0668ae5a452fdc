/* frame.h - the frame of every Lua-facing operation (get_call, get_calls,
 * a fetch, a spawn).
 *
 * The shape of every call (acs_call_run): the arguments are checked first
 * (a mistake raises before anything is taken); then the Lua-facing body
 * runs under lua_pcall, while the C side owns the handles; then the C side
 * gives everything back and leaves the client, and only then re-raises an
 * error the body raised (a debug hook, lua.c's Ctrl-C, a finalizer's error
 * on 5.1-5.3/LuaJIT, out of memory).
 *
 * Re-entry: Lua code running inside a call (a finalizer, a token provider)
 * may make calls on the same client. Each works on its own state and its
 * own handles (the cache hands out fresh ones when the outer call holds
 * them); it never resets or waits on the outer call.
 *
 * Ctrl-C: the standalone interpreter (lua.c, luajit) handles SIGINT by
 * setting a hook on the main thread. A call watches the hooks of its own
 * thread and of the main thread (5.2+: LUA_RIDX_MAINTHREAD; 5.1: the main
 * thread recorded at require when it ran there; LuaJIT: hooks are global),
 * as they were when its transfers began, after the token provider ran: a
 * change means "stop": transfers end, waits end, the call reports
 * "transport: interrupted" and the interpreter then raises its own error. */
#ifndef ACS_FRAME_H
#define ACS_FRAME_H

#include <lua.h>

typedef struct {
    lua_State *L, *main; /* main: NULL when unknown or L itself */
    lua_Hook hook, main_hook;
    int mask, main_mask;
} acs_watch;

/* Note the hooks of L (and of the main thread) as they are now. */
void acs_watch_begin(acs_watch *w, lua_State *L);
/* 1 if they changed since (an acs_interrupt_fn). */
int acs_watch_interrupted(const void *w);
/* Sleep ms through unrelated signals; 1 when interrupted. */
int acs_watch_sleep(const acs_watch *w, long ms);

/* Run body(L) under lua_pcall with ctx as a light userdata at index
 * lua_gettop(L) (after the n arguments at the top of the stack, which it
 * receives first), then cleanup(L, ctx) whatever happened, then re-raise
 * the body's error or return its results. The body's function value is
 * pushed before cleanup-worthy state may exist: call this before taking
 * anything that needs giving back, and take it inside body. */
int acs_call_run(lua_State *L, int nargs, lua_CFunction body, void *ctx,
                 void (*cleanup)(lua_State *L, void *ctx));

/* Raise a programmer mistake at the caller's line: the message prefixed
 * with the position of the nearest Lua function on the stack (luaL_error
 * takes level 1, which inside a frame's body is a C function and has no
 * line). Never returns. */
int acs_raise(lua_State *L, const char *fmt, ...);

/* Record the main thread of L's state for acs_watch (5.1: called at
 * require; no-op elsewhere). */
void acs_call_note_main_thread(lua_State *L);

#endif
