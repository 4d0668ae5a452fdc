/* call.h - one call on a client: get_call and request (call.c), and what
 * get_calls (batch.c) shares with them. A call is a value on the C stack:
 * the calling thread and its hooks, the deadline, the handles it took from
 * the client's cache. Nothing about it is left in the client when it
 * returns, whether it returns results or a Lua error escapes it.
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
#ifndef ACS_CALL_H
#define ACS_CALL_H

#include <lua.h>

#include "client.h"
#include "failure.h"

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

/* ---------- the attempt loop ----------------------------------------------
 * One driver for every easy-handle request (get_call, the fetcher): make
 * the attempt, ask the verdict (retry.h), wait, refresh the token when the
 * verdict says so, tell on_attempt, check for a fork after every Lua
 * callback. get_calls (batch.c) keeps its event form and asks the same
 * verdict. */

/* What on_attempt is told about one attempt (never a secret). */
typedef struct {
    const char *operation;  /* "get_call", "get_calls", "token" */
    const char *id;         /* the call id, or NULL */
    size_t idlen;
    const char *url;        /* for the host */
    const char *crid;       /* the x-ms-client-request-id sent, or NULL */
    int attempt;
    const acs_conn *conn;   /* the response's status and request id */
    int rc;                 /* acs_conn_end's result */
    long duration_ms;
    const acs_verdict *verdict; /* wait and reason when another attempt follows */
} acs_attempt_rec;

/* Tell h about an attempt (runs Lua under lua_pcall; an error is written
 * once to stderr and then ignored; an interruption is re-raised). Nothing
 * when h is NULL or unset. */
void acs_hook_emit(lua_State *L, acs_hook *h, const acs_attempt_rec *r);

typedef struct acs_attempts acs_attempts;
struct acs_attempts {
    lua_State *L;
    const acs_retry_policy *policy;
    acs_pool *pool;
    acs_conn *conn;
    const char *url;
    acs_watch *w;
    int refreshable; /* a credential whose token a 401 may refresh once */
    /* this attempt's header lines into *out (the driver owns them from
     * here): 0, or -1 and *why (ACS_WHY_NOMEM: kind "local"; else "auth") */
    int (*headers)(acs_attempts *a, struct curl_slist **out, const char **why);
    void (*prepare)(acs_attempts *a); /* after acs_conn_begin, or NULL */
    /* the verdict said "refresh": 1 when a fresh token is in place (runs
     * Lua); NULL: never refreshable */
    int (*refresh)(acs_attempts *a);
    void *ud;
    acs_hook *hook;                /* on_attempt, or NULL */
    const char *operation, *id, *crid;
    size_t idlen;
    /* out: the attempts made, the last one's result (on conn) */
    int attempts, rc;
    const char *why; /* -1: why there is no attempt to report */
};

/* THE attempt loop. 0: a->rc, a->attempts and a->conn hold the last
 * attempt; -1: a->why (no request could be made, or the fork check
 * failed). */
int acs_attempts_run(acs_attempts *a);

/* The failure kind of an attempt that got no usable response (rc != 0):
 * "decode" (too large), "local" (out of memory), "transport". */
const char *acs_call_rc_kind(int rc);

/* After the last attempt on conn: push the call, or nil, message, info. */
int acs_call_push_result(lua_State *L, acs_conn *conn, int rc,
                         acs_resp_meta *meta);

/* Record the main thread of L's state for acs_watch (5.1: called at
 * require; no-op elsewhere). */
void acs_call_note_main_thread(lua_State *L);

/* Adds get_call, request and next_attempt to the methods table on top. */
void acs_call_methods(lua_State *L);

/* batch.c: adds get_calls to the methods table on top. */
void acs_batch_methods(lua_State *L);

#endif
