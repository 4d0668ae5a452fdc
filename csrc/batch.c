/* batch.c - client:get_calls over libcurl's multi interface: bounded
 * concurrency, the same request, signing, decoding, retries and deadline as
 * get_call (the steps come from client.h), results in input order. */
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "client.h"
#include "compat.h"

#define BATCH_MAX_CONCURRENCY 256
#define BATCH_DEFAULT_CONCURRENCY 16
/* get_calls' stack: 1 client, 2 ids (the user's), 3 options, then: */
#define BATCH_RESULTS 4
#define BATCH_BEARER 5 /* the provider's token, or nil */
#define BATCH_IDS 6    /* a private copy of the checked ids */

enum { ITEM_QUEUED, ITEM_RUNNING, ITEM_WAITING, ITEM_DONE };

struct acs_item {
    int state, attempt;
    int last_rc; /* the last attempt's result while ITEM_WAITING */
    long start_ms, not_before_ms;
    char crid[37];
};

/* A slot runs one item at a time. An item waiting to retry keeps its slot
 * (and so its last response): it can always retry on time, and if the
 * deadline passes first, that response is its result. */
struct acs_slot {
    acs_transport tr; /* its easy handle; CURLINFO_PRIVATE points here */
    char *url;
    size_t url_cap;
    int item;    /* index of the item it holds, or -1 */
    int running; /* its easy handle is in the multi */
};

/* Detach whatever an interrupted batch left (a Lua error can longjmp out
 * of get_calls while results are built). */
static void batch_reset(acs_client *c)
{
    int i;
    for (i = 0; i < c->nslots; i++) {
        if (c->slots[i]->running)
            curl_multi_remove_handle(c->multi, c->slots[i]->tr.easy);
        c->slots[i]->running = 0;
        c->slots[i]->item = -1;
    }
}

void acs_batch_free(acs_client *c)
{
    int i;
    if (c->multi)
        batch_reset(c);
    for (i = 0; i < c->nslots; i++) {
        acs_transport_free(&c->slots[i]->tr);
        free(c->slots[i]->url);
        free(c->slots[i]);
    }
    free(c->slots);
    c->slots = NULL;
    c->nslots = 0;
    if (c->multi)
        curl_multi_cleanup(c->multi);
    c->multi = NULL;
    free(c->items);
    c->items = NULL;
    c->items_cap = 0;
}

/* Make sure there are n slots and room for nitems items. NULL or a reason. */
static const char *batch_ensure(acs_client *c, int n, size_t nitems)
{
    const char *err;
    if (c->multi == NULL && (c->multi = curl_multi_init()) == NULL)
        return "libcurl: cannot create a multi handle";
    if (n > c->nslots) {
        struct acs_slot **p = realloc(c->slots, (size_t)n * sizeof(struct acs_slot *));
        if (p == NULL)
            return "out of memory";
        c->slots = p;
        while (c->nslots < n) {
            struct acs_slot *s = calloc(1, sizeof *s);
            if (s == NULL)
                return "out of memory";
            s->item = -1;
            c->slots[c->nslots++] = s; /* owned (and freed) from here on */
            if ((err = acs_transport_init(&s->tr, &c->topts)) != NULL)
                return err;
            curl_easy_setopt(s->tr.easy, CURLOPT_PRIVATE, s);
        }
    }
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)n);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)n);
    if (nitems > c->items_cap) {
        struct acs_item *it = realloc(c->items, nitems * sizeof *it);
        if (it == NULL)
            return "out of memory";
        c->items = it;
        c->items_cap = nitems;
    }
    return NULL;
}

/* results[i] = {id = ids[i], call = call} or {id =, err =, info =};
 * the nret values are on top of the stack. */
static void batch_store(lua_State *L, int nret, int i)
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

static void batch_meta(acs_client *c, int i, acs_resp_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    meta->client_request_id = c->items[i].crid;
    meta->attempts = c->items[i].attempt;
    meta->decoder_ref = c->decoder_ref;
    c->items[i].state = ITEM_DONE;
}

/* The item on slot s is done: its last attempt ended with rc on s->tr.
 * Frees the slot. Building the result runs Lua (finalizers too). */
static void batch_done(lua_State *L, acs_client *c, struct acs_slot *s, int rc)
{
    acs_resp_meta meta;
    int i = s->item;
    s->item = -1;
    batch_meta(c, i, &meta);
    batch_store(L, acs_client_push_result(L, &s->tr, rc, &meta), i);
}

/* Item i failed before any response (kind "auth" or "transport"). */
static void batch_fail(lua_State *L, acs_client *c, int i, const char *kind,
                       const char *why)
{
    acs_resp_meta meta;
    batch_meta(c, i, &meta);
    batch_store(L, acs_push_failure(L, kind, 0, why, &meta), i);
}

/* Start the next attempt of item i on slot s (which holds it from here).
 * 0, or -1 when the item finished instead (the slot is free again). */
static int batch_start(lua_State *L, acs_client *c, struct acs_slot *s, int i,
                       const char *bearer, long now)
{
    struct acs_item *it = &c->items[i];
    const char *id, *why = NULL;
    size_t idlen;
    struct curl_slist *hdrs;
    long left;

    s->item = i;
    if (it->attempt == 0)
        it->start_ms = now;
    left = c->deadline_ms - (now - it->start_ms);
    if (it->attempt > 0 && left <= 0) { /* retry due after the deadline */
        batch_done(L, c, s, it->last_rc);
        return -1;
    }
    it->attempt++;
    lua_rawgeti(L, BATCH_IDS, i + 1); /* private: nobody can change it */
    id = lua_tolstring(L, -1, &idlen);
    lua_pop(L, 1);
    if (acs_client_build_url(c, id, idlen, &s->url, &s->url_cap) != 0) {
        s->item = -1;
        batch_fail(L, c, i, "transport", "out of memory");
        return -1;
    }
    if ((hdrs = acs_client_build_headers(c, s->url, it->crid, bearer, &why)) == NULL) {
        s->item = -1;
        batch_fail(L, c, i, "auth", why);
        return -1;
    }
    acs_transport_begin(&s->tr, s->url, hdrs);
    acs_transport_set_timeout(&s->tr, left < c->timeout_ms ? left : c->timeout_ms);
    if (curl_multi_add_handle(c->multi, s->tr.easy) != CURLM_OK) {
        s->item = -1;
        batch_fail(L, c, i, "transport", "libcurl: cannot add a handle");
        return -1;
    }
    s->running = 1;
    it->state = ITEM_RUNNING;
    return 0;
}

/* client:get_calls(ids[, {concurrency = N}]) -> results
 * Results in input order: results[i] = {id = ids[i], call = <call>} or
 * {id = ids[i], err = <message>, info = <info>}. One failing id never sinks
 * the others. Same auth, decoding, retries and deadline (per id) as
 * get_call; the token provider is called once per batch. */
int acs_l_get_calls(lua_State *L)
{
    acs_client *c = acs_client_check_open(L);
    int n, i, conc = BATCH_DEFAULT_CONCURRENCY, done = 0, next = 0;
    const char *bearer, *why, *err;

    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "concurrency");
        if (!lua_isnil(L, -1)) {
            lua_Number v = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER ||
                !(v >= 1 && v <= BATCH_MAX_CONCURRENCY) || v != (int)v)
                luaL_error(L, "acscall: 'concurrency' must be an integer in [1, %d]",
                           BATCH_MAX_CONCURRENCY);
            conc = (int)v;
        }
        lua_pop(L, 1);
    }
    lua_settop(L, 3);
    n = (int)acs_rawlen(L, 2);
    lua_createtable(L, n, 0); /* BATCH_RESULTS */
    if (n == 0)
        return 1;
    if (conc > n)
        conc = n;
    acs_client_enter(L, c);
    /* the provider is user code: run it before the ids are checked and the
     * batch state is set up, so nothing it does can disturb this batch */
    why = acs_client_bearer(L, c, &bearer);
    if (c->closed)
        return acs_client_closed_mid_call(L, c);
    lua_settop(L, BATCH_BEARER); /* the token (anchored) or nil */
    lua_createtable(L, n, 0);    /* BATCH_IDS */
    for (i = 1; i <= n; i++) {
        size_t len;
        lua_rawgeti(L, 2, i);
        if (lua_type(L, -1) != LUA_TSTRING || acs_rawlen(L, -1) == 0 ||
            acs_rawlen(L, -1) > ACS_ID_MAX) {
            acs_client_leave(L, c);
            acs_client_check_id(L, -1, &len); /* raises with the reason */
        }
        lua_rawseti(L, BATCH_IDS, i);
    }
    if (c->multi)
        batch_reset(c);
    if ((err = batch_ensure(c, conc, (size_t)n)) != NULL) {
        acs_client_leave(L, c);
        return luaL_error(L, "acscall: %s", err); /* resources stay owned by c */
    }
    for (i = 0; i < n; i++) {
        memset(&c->items[i], 0, sizeof c->items[i]);
        if (acs_client_request_id(c, c->items[i].crid) != 0) {
            acs_client_leave(L, c);
            return luaL_error(L, "acscall: no random bytes");
        }
    }
    if (why != NULL) {
        for (i = 0; i < n && !c->closed; i++)
            batch_fail(L, c, i, "auth", why);
        done = n;
    }

    while (done < n && !c->closed) {
        long now = acs_monotonic_ms(), wait = 1000;
        int s, running = 0, msgs;
        CURLMsg *m;

        if (acs_client_interrupted(c)) { /* Ctrl-C: the rest end now; running
                                 transfers end through their callback */
            for (s = 0; s < conc && !c->closed; s++) {
                struct acs_slot *sl = c->slots[s];
                if (!sl->running && sl->item >= 0) {
                    batch_done(L, c, sl, c->items[sl->item].last_rc);
                    done++;
                }
            }
            while (next < n && !c->closed) {
                batch_fail(L, c, next++, "transport", "interrupted");
                done++;
            }
            if (done >= n || c->closed)
                break;
        }
        /* start due retries on their own slots, queued ids on free ones */
        for (s = 0; s < conc && !c->closed; s++) {
            struct acs_slot *sl = c->slots[s];
            if (sl->running)
                continue;
            if (sl->item >= 0) {
                if (c->items[sl->item].not_before_ms <= now &&
                    batch_start(L, c, sl, sl->item, bearer, now) != 0)
                    done++;
            } else if (next < n) {
                if (batch_start(L, c, sl, next++, bearer, now) != 0)
                    done++;
            }
        }
        if (done >= n || c->closed)
            break;
        curl_multi_perform(c->multi, &running);
        while (!c->closed && (m = curl_multi_info_read(c->multi, &msgs)) != NULL) {
            struct acs_slot *sl = NULL;
            struct acs_item *it;
            long delay = 0, left;
            int rc;
            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
            rc = acs_transport_end(&sl->tr, m->data.result);
            curl_multi_remove_handle(c->multi, sl->tr.easy);
            sl->running = 0;
            it = &c->items[sl->item];
            now = acs_monotonic_ms();
            left = c->deadline_ms - (now - it->start_ms);
            if (acs_transport_should_retry(&sl->tr, rc, it->attempt, &c->retry,
                                           &delay) &&
                delay < left) {
                it->state = ITEM_WAITING; /* keeps its slot */
                it->last_rc = rc;
                it->not_before_ms = now + delay;
            } else {
                batch_done(L, c, sl, rc);
                done++;
            }
        }
        if (done >= n || c->closed)
            break;
        /* wait in poll for a socket, the next due retry, or a free slot */
        now = acs_monotonic_ms();
        for (s = 0; s < conc; s++) {
            struct acs_slot *sl = c->slots[s];
            if (sl->running)
                continue;
            if (sl->item >= 0) {
                long d = c->items[sl->item].not_before_ms - now;
                if (d < wait)
                    wait = d < 0 ? 0 : d;
            } else if (next < n) {
                wait = 0; /* a free slot and queued work: go on */
            }
        }
        if (wait > 0)
            curl_multi_poll(c->multi, NULL, 0, (int)wait, NULL);
    }
    if (c->closed) /* a finalizer run while results were built closed c */
        return acs_client_closed_mid_call(L, c);
    acs_client_leave(L, c);
    lua_settop(L, BATCH_RESULTS);
    return 1;
}

