/* batch.c - client:get_calls over libcurl's multi interface: bounded
 * concurrency, the same request, signing, decoding, retry rule and deadline
 * as get_call, results in input order. Its state (the multi handle, the
 * slots and their easy handles, the items) lives in a batch_ctx on the C
 * stack, taken from the client's cache and given back by batch_cleanup on
 * every exit path (call.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>

#include "batch.h"
#include "call.h"
#include "compat.h"
#include "options.h"
#include "util.h"

/* the body's stack: 1 client, 2 ids (the user's), 3 options, 4 ctx, then: */
#define BATCH_RESULTS 5
#define BATCH_BEARER 6 /* the current token, or why there is none, or nil */
#define BATCH_IDS 7    /* a private copy of the checked ids */
#define BATCH_TOKENS 8 /* [slot + 1] = the token its attempt sent */

typedef struct {
    int attempt;
    int refreshed; /* a 401 made it ask for a fresh token once */
    int last_rc; /* the last attempt's result while waiting to retry */
    long start_ms, not_before_ms;
    char crid[37];
} item;

/* A slot runs one item at a time. An item waiting to retry keeps its slot
 * (and so its last response): it can always retry on time, and if the
 * deadline passes first, that response is its result. */
typedef struct {
    acs_conn *conn;
    char *url;
    size_t url_cap;
    int item;    /* index of the item it holds, or -1 */
    int running; /* its easy handle is in the multi */
    long t0;     /* when its attempt began (on_attempt's duration) */
    const char *bearer; /* the token its attempt sent (BATCH_TOKENS), or NULL */
} slot;

typedef struct {
    acs_client *c;
    int entered;
    CURLM *multi;
    acs_multi_loop loop; /* drives multi (epoll where there is one) */
    slot *slots;
    int nslots;
    item *items;
    int n, conc;
    acs_watch w;
    int per_attempt;    /* a credential: asked before every attempt */
    const char *bearer; /* the current token (BATCH_BEARER), or NULL */
    const char *why;    /* ... or why there is none: the rest fail with it */
    acs_resp_meta meta; /* scratch for one result */
} batch_ctx;

static void batch_cleanup(lua_State *L, void *p)
{
    batch_ctx *b = p;
    int i;
    for (i = 0; i < b->nslots; i++) {
        slot *s = &b->slots[i];
        if (s->running)
            curl_multi_remove_handle(b->multi, s->conn->easy);
        acs_pool_put(&b->c->pool, s->conn);
        free(s->url);
    }
    acs_multi_loop_end(&b->loop); /* after the handles left the multi */
    free(b->slots);
    free(b->items);
    acs_pool_put_multi(&b->c->pool, b->multi);
    if (b->entered)
        acs_client_leave(L, b->c);
}

/* results[i] = {id = ids[i], call = call} or {id =, err =, info =};
 * the nret values are on top of the stack. */
static void store(lua_State *L, int nret, int i)
{
    lua_createtable(L, 0, 3);
    lua_rawgeti(L, BATCH_IDS, i + 1);
    lua_setfield(L, -2, "id");
    if (nret == 1) {
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "call");
    } else {
        lua_pushvalue(L, -3);
        lua_setfield(L, -2, "err");
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "info");
    }
    lua_rawseti(L, BATCH_RESULTS, i + 1);
    lua_pop(L, nret);
}

static acs_resp_meta *meta_of(batch_ctx *b, int i, const char *bearer)
{
    memset(&b->meta, 0, sizeof b->meta);
    b->meta.client_request_id = b->items[i].crid;
    b->meta.attempts = b->items[i].attempt;
    acs_client_meta(b->c, bearer, &b->meta);
    return &b->meta;
}

/* Ask for the token (runs Lua) into BATCH_BEARER. Not forced: a failure
 * becomes b->why, and the items not yet sent fail with it (a credential
 * has already retried; asking again per item would multiply that). Forced
 * (after a 401): a failure keeps the current token. */
static void ask_bearer(lua_State *L, batch_ctx *b, int force)
{
    const char *tok, *why = acs_client_bearer(L, b->c, force, &tok);
    if (why != NULL && force) {
        lua_pop(L, 1);
        return;
    }
    lua_replace(L, BATCH_BEARER);
    b->bearer = why ? NULL : lua_tostring(L, BATCH_BEARER);
    b->why = why ? lua_tostring(L, BATCH_BEARER) : NULL;
}

/* The item on slot s is done: its last attempt ended with rc. Frees the
 * slot. Building the result runs Lua (finalizers too). */
static void done(lua_State *L, batch_ctx *b, slot *s, int rc)
{
    int i = s->item;
    s->item = -1;
    store(L, acs_call_push_result(L, s->conn, rc, meta_of(b, i, s->bearer)), i);
}

/* Item i failed before any response. */
static void fail(lua_State *L, batch_ctx *b, int i, const char *kind,
                 const char *why)
{
    store(L, acs_push_failure(L, kind, 0, why, meta_of(b, i, b->bearer)), i);
}

/* Start the next attempt of item i on slot s (which holds it from here).
 * 0, or -1 when the item finished instead (the slot is free again). */
static int start(lua_State *L, batch_ctx *b, slot *s, int i, long now)
{
    acs_client *c = b->c;
    item *it = &b->items[i];
    const char *id, *why = NULL;
    size_t idlen;
    struct curl_slist *hdrs;
    long timeout;

    s->item = i;
    if (it->attempt == 0)
        it->start_ms = now;
    timeout = acs_retry_attempt_timeout(&c->retry, it->attempt + 1,
                                        now - it->start_ms);
    if (timeout == 0) { /* a retry due after the deadline */
        done(L, b, s, it->last_rc);
        return -1;
    }
    if (b->per_attempt && b->why == NULL) {
        ask_bearer(L, b, 0); /* cheap when the credential has it cached */
        if (c->closed) { /* it closed the client: the batch ends */
            s->item = -1;
            return 0;
        }
        if ((why = acs_pool_after_fork(&c->pool)) != NULL) { /* Lua ran */
            s->item = -1;
            fail(L, b, i, "local", why);
            return -1;
        }
    }
    if (b->why != NULL) {
        s->item = -1;
        fail(L, b, i, "auth", b->why);
        return -1;
    }
    /* the slot keeps the token it sends alive until its next attempt */
    lua_pushvalue(L, BATCH_BEARER);
    lua_rawseti(L, BATCH_TOKENS, (int)(s - b->slots) + 1);
    s->bearer = b->bearer;
    it->attempt++;
    lua_rawgeti(L, BATCH_IDS, i + 1); /* private: nobody can change it */
    id = lua_tolstring(L, -1, &idlen);
    lua_pop(L, 1);
    if (acs_request_url(&c->route, id, idlen, &s->url, &s->url_cap) != 0) {
        s->item = -1;
        fail(L, b, i, "local", ACS_WHY_NOMEM);
        return -1;
    }
    hdrs = acs_request_headers(&c->route, &c->cred, s->url, it->crid, s->bearer, &why);
    if (hdrs == NULL) {
        s->item = -1;
        fail(L, b, i, strcmp(why, ACS_WHY_NOMEM) == 0 ? "local" : "auth", why);
        return -1;
    }
    s->t0 = acs_monotonic_ms();
    acs_conn_begin(s->conn, s->url, hdrs, timeout, acs_watch_interrupted, &b->w);
    if (curl_multi_add_handle(b->multi, s->conn->easy) != CURLM_OK) {
        s->item = -1;
        fail(L, b, i, "local", "libcurl: cannot add a handle");
        return -1;
    }
    s->running = 1;
    return 0;
}

/* Take the multi handle, the slots and their handles, the items. NULL or
 * a failure reason (kind "local"). */
static const char *take(batch_ctx *b)
{
    int i;
    acs_pool *p = &b->c->pool;
    if ((b->multi = acs_pool_get_multi(p)) == NULL)
        return "libcurl: cannot create a multi handle";
    acs_multi_loop_begin(&b->loop, b->multi);
    /* No CURLMOPT_MAX_TOTAL_CONNECTIONS: the slots bound this batch's
     * connections, and libcurl would count the client's whole shared cache
     * (a nested batch would wait forever for the outer one's). */
    if ((b->items = calloc((size_t)b->n, sizeof *b->items)) == NULL ||
        (b->slots = calloc((size_t)b->conc, sizeof *b->slots)) == NULL)
        return ACS_WHY_NOMEM;
    for (i = 0; i < b->conc; i++) {
        slot *s = &b->slots[b->nslots];
        if ((s->conn = acs_pool_get(p)) == NULL)
            return "libcurl: cannot create a handle";
        s->conn->tag = i;
        acs_conn_set_tail(s->conn, b->c->route.fixed);
        s->item = -1;
        b->nslots++;
    }
    for (i = 0; i < b->n; i++)
        if (acs_client_request_id(b->c, b->items[i].crid) != 0)
            return "no random bytes";
    return NULL;
}

/* The verdict said "refresh" (retry.h): 1 if the item should be sent again
 * at once with a fresh token. One forced refresh per token that failed,
 * not per item: items that sent an older token just take the current one. */
static int refresh(lua_State *L, batch_ctx *b, const slot *s)
{
    if (b->bearer != NULL && strcmp(b->bearer, s->bearer) == 0)
        ask_bearer(L, b, 1); /* runs Lua */
    return b->bearer != NULL && strcmp(b->bearer, s->bearer) != 0;
}

/* Tell on_attempt about the attempt that just ended on s (runs Lua). */
static void tell(lua_State *L, batch_ctx *b, const slot *s, int rc,
                 const acs_verdict *v)
{
    acs_attempt_rec r;
    item *it = &b->items[s->item];
    lua_rawgeti(L, BATCH_IDS, s->item + 1);
    r.operation = "get_calls";
    r.id = lua_tolstring(L, -1, &r.idlen);
    r.url = s->url;
    r.crid = it->crid;
    r.attempt = it->attempt;
    r.conn = s->conn;
    r.rc = rc;
    r.duration_ms = acs_monotonic_ms() - s->t0;
    r.verdict = v;
    meta_of(b, s->item, s->bearer); /* the secrets in play */
    r.secrets = b->meta.secrets;
    r.nsecrets = b->meta.nsecrets;
    acs_hook_emit(L, &b->c->on_attempt, &r);
    lua_pop(L, 1);
}

/* The transfers that finished: retry or store each. Returns how many items
 * are done. */
static int collect(lua_State *L, batch_ctx *b)
{
    CURLMsg *m;
    int msgs, ndone = 0;
    while (!b->c->closed && (m = curl_multi_info_read(b->multi, &msgs)) != NULL) {
        acs_conn *conn = NULL;
        slot *s;
        item *it;
        acs_outcome o;
        acs_verdict v;
        long now;
        int rc, ran_lua = 0;
        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&conn);
        s = &b->slots[conn->tag];
        rc = acs_conn_end(conn, m->data.result);
        curl_multi_remove_handle(b->multi, conn->easy);
        s->running = 0;
        it = &b->items[s->item];
        now = acs_monotonic_ms();
        acs_conn_outcome(conn, rc, &o);
        acs_retry_verdict(&b->c->retry, it->attempt, now - it->start_ms, &o,
                          b->per_attempt && !it->refreshed && s->bearer != NULL,
                          time(NULL), acs_random32(), &v);
        if (acs_watch_interrupted(&b->w))
            v.what = ACS_VERDICT_REPORT;
        if (v.what == ACS_VERDICT_REFRESH) {
            it->refreshed = 1;
            ran_lua = 1;
            if (!refresh(L, b, s))
                v.what = ACS_VERDICT_REPORT;
        }
        if (b->c->on_attempt.ref != LUA_NOREF) {
            tell(L, b, s, rc, &v);
            ran_lua = 1;
        }
        if (ran_lua && acs_pool_after_fork(&b->c->pool) != NULL)
            v.what = ACS_VERDICT_REPORT; /* this answer is its result */
        if (v.what != ACS_VERDICT_REPORT) {
            it->last_rc = rc; /* keeps its slot */
            it->not_before_ms = now + v.wait_ms;
        } else {
            done(L, b, s, rc);
            ndone++;
        }
    }
    return ndone;
}

/* body: 1 client, 2 ids, 3 options, 4 ctx */
static int get_calls_body(lua_State *L)
{
    batch_ctx *b = lua_touserdata(L, 4);
    acs_client *c = b->c;
    int i, ndone = 0, next = 0, n = b->n;
    const char *bearer, *why, *err;

    lua_createtable(L, n, 0); /* BATCH_RESULTS */
    b->entered = 1;
    /* Failures of this process (the fork reset, out of memory) are results,
     * per id, like any other (kind "local"): get_calls raises only for
     * programmer mistakes. */
    if ((err = acs_client_enter(c)) == NULL) {
        /* the provider is user code: it runs before the batch takes
         * anything (a credential is asked again before every attempt, from
         * its cache) */
        why = acs_client_bearer(L, c, 0, &bearer); /* BATCH_BEARER */
        b->bearer = bearer;
        b->per_attempt = c->cred.kind == ACS_AUTH_CREDENTIAL;
        if (c->closed)
            return luaL_error(L, "acscall: closed client");
        err = acs_pool_after_fork(&c->pool); /* the provider may have forked */
    } else {
        lua_pushnil(L); /* BATCH_BEARER */
        why = NULL;
    }
    /* Ctrl-C from here on is seen: no more user code runs before the
     * transfers (the ids are copied, the handles taken) */
    acs_watch_begin(&b->w, L);
    lua_createtable(L, n, 0); /* BATCH_IDS */
    for (i = 1; i <= n; i++) {
        size_t len;
        lua_rawgeti(L, 2, i);
        acs_client_check_id(L, -1, &len); /* a mistake raises */
        lua_rawseti(L, BATCH_IDS, i);
    }
    lua_createtable(L, b->conc, 0); /* BATCH_TOKENS */
    if (err == NULL)
        err = take(b);
    if (err != NULL) {
        for (i = 0; i < n && !c->closed; i++) {
            memset(&b->meta, 0, sizeof b->meta);
            acs_client_meta(c, NULL, &b->meta);
            store(L, acs_push_failure(L, "local", 0, err, &b->meta), i);
        }
        ndone = n;
    } else if (why != NULL) {
        b->why = why; /* (alive at BATCH_BEARER) */
        for (i = 0; i < n && !c->closed; i++)
            fail(L, b, i, "auth", why);
        ndone = n;
    }

    while (ndone < n && !c->closed) {
        long now = acs_monotonic_ms(), wait = 1000;
        int s;

        if (acs_watch_interrupted(&b->w)) { /* Ctrl-C: everything ends now */
            for (s = 0; s < b->conc && !c->closed; s++) {
                slot *sl = &b->slots[s];
                if (sl->running) {
                    /* as if its progress callback had said stop: libcurl's
                     * socket interface calls none on a silent transfer */
                    curl_multi_remove_handle(b->multi, sl->conn->easy);
                    sl->running = 0;
                    done(L, b, sl, acs_conn_end(sl->conn, CURLE_ABORTED_BY_CALLBACK));
                    ndone++;
                } else if (sl->item >= 0) {
                    done(L, b, sl, b->items[sl->item].last_rc);
                    ndone++;
                }
            }
            while (next < n && !c->closed) {
                fail(L, b, next++, "transport", "interrupted");
                ndone++;
            }
            if (ndone >= n || c->closed)
                break;
        }
        /* start due retries on their own slots, queued ids on free ones */
        for (s = 0; s < b->conc && !c->closed; s++) {
            slot *sl = &b->slots[s];
            if (sl->running)
                continue;
            if (sl->item >= 0) {
                if (b->items[sl->item].not_before_ms <= now &&
                    start(L, b, sl, sl->item, now) != 0)
                    ndone++;
            } else if (next < n) {
                if (start(L, b, sl, next++, now) != 0)
                    ndone++;
            }
        }
        if (ndone >= n || c->closed)
            break;
        acs_multi_loop_run(&b->loop, 0);
        ndone += collect(L, b);
        if (ndone >= n || c->closed)
            break;
        /* wait in poll for a socket, the next due retry, or a free slot */
        now = acs_monotonic_ms();
        for (s = 0; s < b->conc; s++) {
            slot *sl = &b->slots[s];
            if (sl->running)
                continue;
            if (sl->item >= 0) {
                long d = b->items[sl->item].not_before_ms - now;
                if (d < wait)
                    wait = d < 0 ? 0 : d;
            } else if (next < n) {
                wait = 0; /* a free slot and queued work: go on */
            }
        }
        if (wait > 0)
            acs_multi_loop_run(&b->loop, wait);
    }
    if (c->closed) /* a finalizer run while results were built closed c */
        return luaL_error(L, "acscall: closed client");
    lua_settop(L, BATCH_RESULTS);
    return 1;
}

/* client:get_calls(ids[, {concurrency = N}]) -> results
 * Results in input order: results[i] = {id = ids[i], call = <call>} or
 * {id = ids[i], err = <message>, info = <info>}. One failing id never sinks
 * the others. Same auth, decoding, retries and deadline (per id) as
 * get_call; a token provider is called once per batch, a credential
 * before every attempt (from its cache), and a credential's token refused
 * with 401 is refreshed once and the item sent again, as in get_call. */
static int l_get_calls(lua_State *L)
{
    batch_ctx b;
    memset(&b, 0, sizeof b);
    b.c = acs_client_check_open(L, 1);
    b.conc = ACS_DEFAULT_CONCURRENCY;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        acs_options_check(L, 3, acs_get_calls_options, "acscall: get_calls");
        lua_getfield(L, 3, "concurrency");
        if (!lua_isnil(L, -1)) {
            lua_Number v = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER ||
                !(v >= 1 && v <= ACS_CONCURRENCY_MAX) || v != (int)v)
                luaL_error(L, "acscall: 'concurrency' must be an integer in [1, %d]",
                           ACS_CONCURRENCY_MAX);
            b.conc = (int)v;
        }
        lua_pop(L, 1);
    }
    lua_settop(L, 3);
    b.n = (int)acs_rawlen(L, 2);
    if (b.n == 0) {
        lua_newtable(L);
        return 1;
    }
    if (b.conc > b.n)
        b.conc = b.n;
    return acs_call_run(L, 3, get_calls_body, &b, batch_cleanup);
}

void acs_batch_methods(lua_State *L)
{
    lua_pushcfunction(L, l_get_calls);
    lua_setfield(L, -2, "get_calls");
}
