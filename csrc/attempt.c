/* attempt.c - the attempt loop and on_attempt (attempt.h). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>

#include "attempt.h"
#include "util.h"

const char *acs_attempt_rc_kind(int rc)
{
    return rc == ACS_TR_TOO_LARGE ? "decode" : rc == ACS_TR_NOMEM ? "local"
                                                                  : "transport";
}

/* ---------- on_attempt ---------------------------------------------------- */

/* The host of an http(s) URL (after any userinfo, with its port). */
static const char *url_host(const char *url, size_t *len)
{
    const char *h = strstr(url, "://"), *end, *at;
    if (h == NULL) {
        *len = 0;
        return url;
    }
    h += 3;
    end = h + strcspn(h, "/?#");
    for (at = h; at < end; at++)
        if (*at == '@')
            h = at + 1;
    *len = (size_t)(end - h);
    return h;
}

static void set_number(lua_State *L, const char *name, lua_Number v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, name);
}

static void set_string(lua_State *L, const char *name, const char *v, size_t len)
{
    lua_pushlstring(L, v, len);
    lua_setfield(L, -2, name);
}

/* under lua_pcall: 1 the hook, 2 the record (light userdata) */
static int hook_body(lua_State *L)
{
    const acs_attempt_rec *r = lua_touserdata(L, 2);
    const acs_verdict *v = r->verdict;
    size_t hlen;
    const char *host = url_host(r->url, &hlen);
    lua_settop(L, 1);
    lua_createtable(L, 0, 12);
    set_string(L, "operation", r->operation, strlen(r->operation));
    if (r->id)
        set_string(L, "id", r->id, r->idlen);
    set_number(L, "attempt", r->attempt);
    if (r->rc == 0) {
        set_number(L, "status", (lua_Number)r->conn->status);
        if (r->conn->request_id[0]) { /* the server's words: redacted */
            acs_push_redacted(L, r->conn->request_id, strlen(r->conn->request_id),
                              r->secrets, r->nsecrets);
            lua_setfield(L, -2, "request_id");
        }
    } else {
        acs_outcome o;
        const char *kind = acs_attempt_rc_kind(r->rc);
        acs_conn_outcome(r->conn, r->rc, &o);
        set_string(L, "kind", kind, strlen(kind));
        kind = acs_outcome_name(o.cls);
        set_string(L, "outcome", kind, strlen(kind));
    }
    set_number(L, "duration", (lua_Number)r->duration_ms / 1000.0);
    if (v && v->what != ACS_VERDICT_REPORT) {
        set_number(L, "wait", (lua_Number)v->wait_ms / 1000.0);
        set_string(L, "reason", v->reason, strlen(v->reason));
    }
    if (r->crid && r->crid[0])
        set_string(L, "client_request_id", r->crid, strlen(r->crid));
    if (hlen > 0)
        set_string(L, "host", host, hlen);
    lua_call(L, 1, 0);
    return 0;
}

void acs_hook_emit(lua_State *L, acs_hook *h, const acs_attempt_rec *r)
{
    if (h == NULL || h->ref == LUA_NOREF || h->ref == LUA_REFNIL)
        return;
    lua_pushcfunction(L, hook_body);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
    lua_pushlightuserdata(L, (void *)r);
    if (lua_pcall(L, 2, 0, 0) == 0)
        return;
    if (acs_is_interruption(L, -1))
        lua_error(L); /* Ctrl-C: not the hook's failure */
    if (!h->warned) {
        const char *m = lua_tostring(L, -1);
        h->warned = 1;
        fprintf(stderr, "acscall: on_attempt raised an error (reported once, then "
                "ignored): %.200s\n", m ? m : "(not a string)");
        fflush(stderr);
    }
    lua_pop(L, 1);
}

/* ---------- the attempt loop --------------------------------------------- */

int acs_attempts_run(acs_attempts *a)
{
    lua_State *L = a->L;
    const acs_retry_policy *p = a->policy;
    acs_outcome o;
    acs_verdict v;
    acs_attempt_rec r;
    long start = acs_monotonic_ms(), t0, took;
    int attempt, ran_lua;
    int refreshable = a->refreshable && a->refresh != NULL;

    a->rc = CURLE_OPERATION_TIMEDOUT;
    for (attempt = 1;; attempt++) {
        long timeout = acs_retry_attempt_timeout(p, attempt, acs_monotonic_ms() - start);
        struct curl_slist *h;
        if (timeout == 0) { /* the wait ran into the deadline: the last answer */
            attempt--;
            break;
        }
        if (a->headers(a, &h, &a->why) != 0) {
            a->attempts = attempt - 1;
            a->why_local = 0;
            return -1;
        }
        t0 = acs_monotonic_ms();
        acs_conn_begin(a->conn, a->url, h, timeout, acs_watch_interrupted, a->w);
        if (a->prepare)
            a->prepare(a);
        a->rc = acs_conn_end(a->conn, curl_easy_perform(a->conn->easy));
        took = acs_monotonic_ms() - t0; /* (before any Lua runs) */
        acs_conn_outcome(a->conn, a->rc, &o);
        acs_retry_verdict(p, attempt, acs_monotonic_ms() - start, &o, refreshable,
                          time(NULL), acs_random32(), &v);
        ran_lua = 0;
        if (v.what == ACS_VERDICT_REFRESH) {
            refreshable = 0; /* once per call */
            ran_lua = 1;
            if (!a->refresh(a)) /* runs Lua */
                v.what = ACS_VERDICT_REPORT;
            acs_watch_begin(a->w, L); /* its hooks are its own */
        }
        if (a->hook && a->hook->ref != LUA_NOREF) {
            r.operation = a->operation;
            r.id = a->id;
            r.idlen = a->idlen;
            r.url = a->url;
            r.crid = a->crid;
            r.attempt = attempt;
            r.conn = a->conn;
            r.rc = a->rc;
            r.duration_ms = took;
            r.verdict = &v;
            r.secrets = a->meta ? a->meta->secrets : NULL;
            r.nsecrets = a->meta ? a->meta->nsecrets : 0;
            acs_hook_emit(L, a->hook, &r); /* runs Lua */
            ran_lua = 1;
        }
        /* Lua ran (a refresh, on_attempt): a fork in it leaves the child
         * none of the parent's connections */
        if (ran_lua && (a->why = acs_pool_after_fork(a->pool)) != NULL) {
            a->attempts = attempt;
            a->why_local = 1;
            return -1;
        }
        if (v.what == ACS_VERDICT_REPORT)
            break;
        if (v.what == ACS_VERDICT_RETRY && acs_watch_sleep(a->w, v.wait_ms))
            break; /* Ctrl-C: report the last answer now */
    }
    a->attempts = attempt;
    return 0;
}
