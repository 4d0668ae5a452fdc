/* call.c - one call: get_call, request and next_attempt (call.h); the
 * frame every call runs in is frame.c's. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>

#include "call.h"
#include "compat.h"
#include "model.h"
#include "util.h"

int acs_call_push_result(lua_State *L, acs_conn *conn, int rc,
                         acs_resp_meta *meta)
{
    meta->request_id = conn->request_id[0] ? conn->request_id : NULL;
    meta->content_type = conn->content_type[0] ? conn->content_type : NULL;
    meta->content_encoding = conn->content_encoding[0] ? conn->content_encoding : NULL;
    if (rc == 0) { /* the wait the server asked for, as the verdict reads it */
        acs_outcome o;
        acs_conn_outcome(conn, rc, &o);
        meta->retry_after_ms = acs_retry_server_delay_ms(&o, time(NULL));
        meta->has_retry_after = meta->retry_after_ms >= 0;
    }
    if (rc != 0) {
        meta->timeout = rc == CURLE_OPERATION_TIMEDOUT;
        return acs_push_failure(L, acs_attempt_rc_kind(rc),
                                rc == ACS_TR_TOO_LARGE ? conn->status : 0,
                                acs_conn_error(conn, rc), meta);
    }
    return acs_decode_push(L, conn->status, conn->body ? conn->body : "",
                           conn->len, meta);
}

/* ---------- get_call and request ---------------------------------------- */

typedef struct {
    acs_client *c;
    int entered;
    acs_conn *conn;            /* taken from the client's cache */
    char *url;
    size_t url_cap;
    struct curl_slist *hdrs;   /* request(): the headers being pushed */
    char crid[37];
    acs_resp_meta meta;
    const char *bearer;        /* the provider's token, on the Lua stack */
} call_ctx;

static void call_cleanup(lua_State *L, void *p)
{
    call_ctx *k = p;
    acs_free_headers(k->hdrs);
    k->hdrs = NULL;
    if (k->conn)
        acs_pool_put(&k->c->pool, k->conn);
    k->conn = NULL;
    free(k->url);
    k->url = NULL;
    if (k->entered)
        acs_client_leave(L, k->c);
}

static const char *why_kind(const char *why)
{
    return strcmp(why, ACS_WHY_NOMEM) == 0 ? "local" : "auth";
}

/* The start of get_call and request, inside the protected body: enter the
 * client, the request id (unless given), the bearer, the URL. Returns 0,
 * or the number of values pushed (nil, message, info). */
static int begin(lua_State *L, call_ctx *k, const char *id, size_t idlen)
{
    acs_client *c = k->c;
    const char *why, *why2;
    int drawn = k->crid[0] == '\0';
    pid_t pid;
    k->entered = 1;
    if ((why = acs_client_enter(c)) != NULL)
        return acs_push_failure(L, "local", 0, why, &k->meta);
    if (drawn && acs_client_request_id(c, k->crid) != 0)
        return acs_push_failure(L, "local", 0, "no random bytes", &k->meta);
    k->meta.client_request_id = k->crid;
    pid = c->pool.pid;
    why = acs_client_bearer(L, c, 0, &k->bearer); /* runs Lua: pushes 1 */
    if (c->closed)
        return luaL_error(L, "acscall: closed client");
    if ((why2 = acs_pool_after_fork(&c->pool)) != NULL) /* it forked */
        return acs_push_failure(L, "local", 0, why2, &k->meta);
    /* a child the provider forked sends a request id of its own */
    if (drawn && c->pool.pid != pid && acs_client_request_id(c, k->crid) != 0)
        return acs_push_failure(L, "local", 0, "no random bytes", &k->meta);
    if (why != NULL)
        return acs_push_failure(L, "auth", 0, why, &k->meta);
    if (acs_request_url(&c->route, id, idlen, &k->url, &k->url_cap) != 0)
        return acs_push_failure(L, "local", 0, ACS_WHY_NOMEM, &k->meta);
    return 0;
}

static int call_headers(acs_attempts *a, struct curl_slist **out, const char **why)
{
    call_ctx *k = a->ud;
    *out = acs_request_headers(&k->c->route, &k->c->cred, k->url, k->crid,
                               k->bearer, why);
    return *out ? 0 : -1;
}

/* The verdict said "refresh": one forced token; a retry only when it is
 * another token (runs Lua: pushes 1). */
static int call_refresh(acs_attempts *a)
{
    call_ctx *k = a->ud;
    const char *fresh;
    if (acs_client_bearer(a->L, k->c, 1, &fresh) == NULL &&
        strcmp(fresh, k->bearer) != 0) {
        k->bearer = fresh;
        acs_client_meta(k->c, k->bearer, &k->meta); /* the secrets in play */
        return 1;
    }
    return 0;
}

/* body: 1 client, 2 id, 3 ctx */
static int get_call_body(lua_State *L)
{
    call_ctx *k = lua_touserdata(L, 3);
    acs_client *c = k->c;
    size_t idlen;
    const char *id = lua_tolstring(L, 2, &idlen);
    acs_watch w;
    acs_attempts a;
    int n;

    if ((n = begin(L, k, id, idlen)) != 0)
        return n;
    if ((k->conn = acs_pool_get(&c->pool)) == NULL)
        return acs_push_failure(L, "local", 0, "libcurl: cannot create a handle",
                                &k->meta);
    acs_conn_set_tail(k->conn, c->route.fixed);
    acs_watch_begin(&w, L); /* after the provider: its hooks are its own */
    memset(&a, 0, sizeof a);
    a.L = L;
    a.policy = &c->retry;
    a.pool = &c->pool;
    a.conn = k->conn;
    a.url = k->url;
    a.w = &w;
    a.refreshable = c->cred.kind == ACS_AUTH_CREDENTIAL;
    a.headers = call_headers;
    a.refresh = call_refresh;
    a.ud = k;
    a.hook = &c->on_attempt;
    acs_client_meta(c, k->bearer, &k->meta); /* the secrets in play */
    a.meta = &k->meta;
    a.operation = "get_call";
    a.id = id;
    a.idlen = idlen;
    a.crid = k->crid;
    if (acs_attempts_run(&a) != 0) {
        k->meta.attempts = a.attempts;
        return acs_push_failure(L, a.why_local ? "local" : why_kind(a.why), 0, a.why,
                                &k->meta);
    }
    k->meta.attempts = a.attempts;
    acs_client_meta(c, k->bearer, &k->meta);
    return acs_call_push_result(L, k->conn, a.rc, &k->meta);
}

/* client:get_call(id) -> call | nil, message, info */
static int l_get_call(lua_State *L)
{
    call_ctx k;
    size_t idlen;
    memset(&k, 0, sizeof k);
    k.c = acs_client_check_open(L, 1);
    acs_client_check_id(L, 2, &idlen);
    lua_settop(L, 2);
    return acs_call_run(L, 2, get_call_body, &k, call_cleanup);
}

/* body: 1 client, 2 id, 3 client request id or nil, 4 ctx */
static int request_body(lua_State *L)
{
    call_ctx *k = lua_touserdata(L, 4);
    acs_client *c = k->c;
    size_t idlen;
    const char *id = lua_tolstring(L, 2, &idlen), *why;
    const struct curl_slist *h, *last;
    int n;

    if ((n = begin(L, k, id, idlen)) != 0)
        return n;
    k->hdrs = acs_request_headers(&c->route, &c->cred, k->url, k->crid,
                                  k->bearer, &why);
    if (k->hdrs == NULL)
        return acs_push_failure(L, why_kind(why), 0, why, &k->meta);
    for (last = k->hdrs; last->next; last = last->next)
        ; /* the request's own lines, then the route's fixed ones */
    lua_pushstring(L, k->url);
    lua_createtable(L, 0, 8); /* room for every header: no rehash while filled */
    for (h = k->hdrs; h; h = h->next ? h->next : h == last ? c->route.fixed : NULL) {
        const char *colon = strchr(h->data, ':');
        const char *v = colon + 1;
        char name[64];
        acs_lower_copy(name, sizeof name, h->data, (size_t)(colon - h->data));
        while (*v == ' ')
            v++;
        lua_pushstring(L, v);
        lua_setfield(L, -2, name);
    }
    lua_pushstring(L, c->ua);
    lua_setfield(L, -2, "user-agent");
    return 2;
}

/* client:request(id[, client_request_id]) -> url, headers | nil, message, info
 * Stage 1 alone, for transports written in Lua: the URL and every header to
 * send, signed now. Pass the first attempt's x-ms-client-request-id again
 * to sign a retry of the same request. Pair with acscall.decode and
 * client:next_attempt. */
static int l_request(lua_State *L)
{
    call_ctx k;
    size_t idlen, clen;
    memset(&k, 0, sizeof k);
    k.c = acs_client_check_open(L, 1);
    acs_client_check_id(L, 2, &idlen);
    if (!lua_isnoneornil(L, 3)) {
        const char *crid = luaL_checklstring(L, 3, &clen);
        luaL_argcheck(L, clen >= 1 && clen < sizeof k.crid && !acs_header_value_check(crid, clen),
                      3, "a client request id is 1 to 36 bytes without CR, LF or NUL");
        memcpy(k.crid, crid, clen + 1);
    }
    lua_settop(L, 3);
    return acs_call_run(L, 3, request_body, &k, call_cleanup);
}

/* ---------- the retry rule, for Lua transports --------------------------- */

/* client:next_attempt(attempts, elapsed[, outcome[, headers[, opts]]])
 *   -> wait, timeout, connect_timeout[, reason]
 *      | "refresh", timeout, connect_timeout, "refresh" | nil
 * The verdict get_call follows (retry.h), for a transport written in Lua.
 * attempts: made so far (0 before the first); elapsed: seconds since the
 * call began; outcome: the last attempt's HTTP status, or how it failed
 * ("dns", "connect", "timeout", "send", "recv", "closed", "truncated",
 * "tls", "protocol", "too_large", "interrupted", "local", "other");
 * headers: the last response's headers; opts: refreshable = true (a
 * credential that can refresh its token), refreshed = true (it did in this
 * call), retries = a retries table over the client's (other classes, e.g.
 * a token endpoint's). Returns the seconds to wait before the next
 * attempt, or "refresh" (refresh the token, then attempt again at once),
 * that attempt's timeout and connect timeout (seconds), and why it is
 * retried (on_attempt's reason: "status 503", "retry-after", "timeout",
 * "refresh", ...; none before the first attempt), or nil: report the last
 * outcome. */
static int l_next_attempt(lua_State *L)
{
    acs_client *c = acs_client_check_open(L, 1);
    lua_Number na = luaL_checknumber(L, 2), ne = luaL_checknumber(L, 3);
    long elapsed, timeout;
    int attempts, refreshable = 0;
    acs_outcome o;
    acs_verdict v;
    acs_retry_policy pol = c->retry;
    luaL_argcheck(L, na >= 0 && na <= 1000 && na == (int)na, 2,
                  "attempts must be an integer in [0, 1000]");
    luaL_argcheck(L, ne >= 0 && ne <= 1e7, 3, "elapsed must be seconds >= 0");
    attempts = (int)na;
    elapsed = (long)(ne * 1000.0);
    if (!lua_isnoneornil(L, 6)) {
        luaL_checktype(L, 6, LUA_TTABLE);
        lua_getfield(L, 6, "refreshable");
        lua_getfield(L, 6, "refreshed");
        refreshable = lua_toboolean(L, -2) && !lua_toboolean(L, -1);
        lua_pop(L, 2);
        lua_getfield(L, 6, "retries");
        acs_retry_read(L, -1, "acscall.next_attempt", &pol);
        lua_pop(L, 1);
    }
    v.what = ACS_VERDICT_RETRY;
    v.wait_ms = 0;
    v.reason[0] = '\0';
    if (attempts > 0) {
        memset(&o, 0, sizeof o);
        if (lua_type(L, 4) == LUA_TNUMBER) {
            lua_Number s = lua_tonumber(L, 4);
            luaL_argcheck(L, s >= 100 && s <= 999, 4, "an HTTP status");
            o.cls = ACS_OUT_RESPONSE;
            o.status = (long)s;
        } else {
            int cls = acs_outcome_from_name(luaL_checkstring(L, 4));
            luaL_argcheck(L, cls > 0, 4, "an HTTP status or a failure name");
            o.cls = (acs_outcome_class)cls;
        }
        if (!lua_isnoneornil(L, 5)) {
            luaL_checktype(L, 5, LUA_TTABLE);
            o.retry_after = acs_table_header(L, 5, "retry-after");
            o.retry_after_ms = acs_table_header(L, 5, "retry-after-ms");
            o.x_retry_after_ms = acs_table_header(L, 5, "x-ms-retry-after-ms");
        }
        acs_retry_verdict(&pol, attempts, elapsed, &o, refreshable, time(NULL),
                          acs_random32(), &v);
        if (v.what == ACS_VERDICT_REPORT) {
            lua_pushnil(L);
            return 1;
        }
    }
    timeout = acs_retry_attempt_timeout(&pol, attempts + 1, elapsed + v.wait_ms);
    if (v.what == ACS_VERDICT_REFRESH)
        lua_pushliteral(L, "refresh");
    else
        lua_pushnumber(L, (lua_Number)v.wait_ms / 1000.0);
    lua_pushnumber(L, (lua_Number)(timeout ? timeout : 1) / 1000.0);
    lua_pushnumber(L, (lua_Number)pol.connect_timeout_ms / 1000.0);
    if (v.reason[0] == '\0')
        return 3;
    lua_pushstring(L, v.reason); /* why (on_attempt's reason) */
    return 4;
}

void acs_call_methods(lua_State *L)
{
    lua_pushcfunction(L, l_get_call);
    lua_setfield(L, -2, "get_call");
    lua_pushcfunction(L, l_request);
    lua_setfield(L, -2, "request");
    lua_pushcfunction(L, l_next_attempt);
    lua_setfield(L, -2, "next_attempt");
}
