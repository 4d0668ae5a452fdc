/* fetch.c - core.fetcher (fetch.h): one HTTP exchange with retries, on the
 * transport the calls use. A fetcher is a client object (client.h's
 * lifecycle, options and cache). The frame is a call's (frame.h):
 * the request is read and built inside a protected body while the C side
 * owns the handles and buffers, and cleanup gives everything back whatever
 * happens. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>
#include <openssl/crypto.h>

#include "attempt.h"
#include "class.h"
#include "client.h"
#include "compat.h"
#include "failure.h"
#include "fetch.h"
#include "form.h"
#include "frame.h"
#include "options.h"
#include "retry.h"
#include "transport.h"
#include "util.h"

#define FETCHER_MT "acscall.fetcher"
#define WHO "acscall.fetcher"

/* A fetcher is a client (client.h) with no route and no credential: the
 * same lifecycle, options, User-Agent and connection cache. */

static int l_close(lua_State *L)
{
    return acs_client_close(L, luaL_checkudata(L, 1, FETCHER_MT));
}

static int l_tostring(lua_State *L)
{
    acs_client *f = luaL_checkudata(L, 1, FETCHER_MT);
    lua_pushfstring(L, "acscall.fetcher (%s)", f->closed ? "closed" : "open");
    return 1;
}

/* core.fetcher(opts) -> fetcher; mistakes raise. */
static int l_fetcher(lua_State *L)
{
    acs_client *f;
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    acs_options_check(L, 1, acs_fetcher_options, WHO);
    f = acs_client_push(L, FETCHER_MT);
    acs_client_setup(L, f, WHO, "(identity)", ACS_FETCH_DEFAULT_MAX_BODY);
    f->retry.base_ms = acs_opt_ms(L, WHO, "base_delay", f->retry.base_ms);
    f->retry.max_ms = acs_opt_ms(L, WHO, "max_delay", f->retry.max_ms);
    return 1;
}

/* ---------- one fetch ------------------------------------------------- */

typedef struct {
    acs_client *f;
    int entered;
    acs_conn *conn;
    struct curl_slist *hdrs; /* the request's: copied for each attempt */
    acs_wbuf form;           /* the urlencoded body (form.h; secrets) */
    acs_wbuf line;           /* a header line being built (secret) */
    int post;
} fetch_ctx;

static void fetch_cleanup(lua_State *L, void *p)
{
    fetch_ctx *k = p;
    acs_free_headers(k->hdrs);
    k->hdrs = NULL;
    acs_wbuf_free(&k->form);
    acs_wbuf_free(&k->line);
    if (k->conn)
        acs_pool_put(&k->f->pool, k->conn);
    k->conn = NULL;
    if (k->entered)
        acs_client_leave(L, k->f);
}

static int is_token_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* request.headers -> k->hdrs. Raises on a mistake (under the frame). */
static int add_headers(lua_State *L, fetch_ctx *k, int idx, int *has_ctype)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        size_t nlen, vlen, i;
        const char *n, *v;
        struct curl_slist *l;
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, WHO ": 'headers' must map names to strings");
        n = lua_tolstring(L, -2, &nlen);
        v = lua_tolstring(L, -1, &vlen);
        for (i = 0; i < nlen; i++)
            if (!is_token_char((unsigned char)n[i]))
                break;
        if (nlen == 0 || i < nlen || nlen > ACS_HEADER_NAME_MAX)
            return luaL_error(L, WHO ": bad header name");
        if (acs_header_value_check(v, vlen))
            return luaL_error(L, WHO ": header '%s': value %s", n,
                              acs_header_value_check(v, vlen));
        if (acs_eq_ci(n, nlen, "content-type"))
            *has_ctype = 1;
        k->line.len = 0;
        if (acs_wbuf_add(&k->line, n, nlen) != 0 ||
            acs_wbuf_add(&k->line, ": ", 2) != 0 ||
            acs_wbuf_add(&k->line, v, vlen) != 0)
            return -1;
        l = curl_slist_append(k->hdrs, k->line.p);
        OPENSSL_cleanse(k->line.p, k->line.cap);
        if (l == NULL)
            return -1;
        k->hdrs = l;
        lua_pop(L, 1);
    }
    return 0;
}

/* a copy of the request's header lines for one attempt */
static int fetch_headers(acs_attempts *a, struct curl_slist **out, const char **why)
{
    fetch_ctx *k = a->ud;
    struct curl_slist *n;
    const struct curl_slist *l;
    *out = NULL;
    for (l = k->hdrs; l; l = l->next) {
        if ((n = curl_slist_append(*out, l->data)) == NULL) {
            acs_free_headers(*out);
            *out = NULL;
            *why = "out of memory";
            return -1;
        }
        *out = n;
    }
    return 0;
}

static void fetch_prepare(acs_attempts *a)
{
    fetch_ctx *k = a->ud;
    if (k->post)
        acs_conn_post(a->conn, k->form.p, k->form.len);
    else /* (the handle may have POSTed before) */
        curl_easy_setopt(a->conn->easy, CURLOPT_HTTPGET, 1L);
}

static void push_headers(lua_State *L, const acs_conn *c)
{
    lua_createtable(L, 0, 4);
    if (c->content_type[0]) {
        lua_pushstring(L, c->content_type);
        lua_setfield(L, -2, "content-type");
    }
    if (c->content_encoding[0]) {
        lua_pushstring(L, c->content_encoding);
        lua_setfield(L, -2, "content-encoding");
    }
    if (c->request_id[0]) {
        lua_pushstring(L, c->request_id);
        lua_setfield(L, -2, "x-ms-request-id");
    }
    if (c->retry_after[0]) {
        lua_pushstring(L, c->retry_after);
        lua_setfield(L, -2, "retry-after");
    }
}

/* body: 1 fetcher, 2 request, 3 ctx */
static int fetch_body(lua_State *L)
{
    fetch_ctx *k = lua_touserdata(L, 3);
    acs_client *f = k->f;
    acs_retry_policy pol = f->retry;
    acs_resp_meta meta;
    const char *url, *method = "GET";
    size_t urllen;
    int post = 0, has_ctype = 0, rc, attempt;
    acs_watch w;
    acs_attempts a;

    memset(&meta, 0, sizeof meta);
    lua_settop(L, 2);
    lua_getfield(L, 2, "url"); /* 3 */
    url = lua_tolstring(L, 3, &urllen);
    if (lua_type(L, 3) != LUA_TSTRING ||
        !(acs_starts_ci(url, urllen, "http://") || acs_starts_ci(url, urllen, "https://")) ||
        acs_header_value_check(url, urllen) || strpbrk(url, " \t") != NULL)
        return luaL_error(L, WHO ": 'url' must be an http:// or https:// URL");
    lua_getfield(L, 2, "method"); /* 4 */
    if (!lua_isnil(L, 4)) {
        method = lua_tostring(L, 4);
        if (lua_type(L, 4) != LUA_TSTRING ||
            (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0))
            return luaL_error(L, WHO ": 'method' must be \"GET\" or \"POST\"");
    }
    post = strcmp(method, "POST") == 0;
    lua_getfield(L, 2, "timeout"); /* 5 */
    if (!lua_isnil(L, 5)) {
        lua_Number t = lua_tonumber(L, 5);
        if (lua_type(L, 5) != LUA_TNUMBER || !(t > 0 && t <= ACS_SECONDS_MAX))
            return luaL_error(L, WHO ": 'timeout' must be > 0 and <= %d seconds",
                              ACS_SECONDS_MAX);
        pol.timeout_ms = (long)(t * 1000.0 + 0.5);
    }
    lua_getfield(L, 2, "retries"); /* (popped) per fetch, over the fetcher's */
    acs_retry_read(L, -1, WHO, &pol);
    lua_pop(L, 1);
    lua_getfield(L, 2, "headers"); /* 6 */
    if (!lua_isnil(L, 6)) {
        if (lua_type(L, 6) != LUA_TTABLE)
            return luaL_error(L, WHO ": 'headers' must be a table");
        if (add_headers(L, k, 6, &has_ctype) != 0)
            return acs_push_failure(L, "local", 0, "out of memory", &meta);
    }
    lua_getfield(L, 2, "form"); /* 7 */
    if (!lua_isnil(L, 7)) {
        const char *why;
        if (lua_type(L, 7) != LUA_TTABLE)
            return luaL_error(L, WHO ": 'form' must be a table");
        if ((why = acs_form_encode(L, 7, &k->form)) != NULL) {
            if (strcmp(why, "out of memory") == 0)
                return acs_push_failure(L, "local", 0, why, &meta);
            return luaL_error(L, WHO ": %s", why);
        }
        post = 1;
        if (!has_ctype) {
            struct curl_slist *l = curl_slist_append(
                k->hdrs, "Content-Type: application/x-www-form-urlencoded");
            if (l == NULL)
                return acs_push_failure(L, "local", 0, "out of memory", &meta);
            k->hdrs = l;
        }
    } else if (post) {
        if (acs_wbuf_reserve(&k->form, 0) != 0)
            return acs_push_failure(L, "local", 0, "out of memory", &meta);
        k->form.p[0] = '\0';
    }

    k->entered = 1;
    {
        const char *why = acs_client_enter(f);
        if (why != NULL)
            return acs_push_failure(L, "local", 0, why, &meta);
    }
    if ((k->conn = acs_pool_get(&f->pool)) == NULL)
        return acs_push_failure(L, "local", 0, "libcurl: cannot create a handle", &meta);
    acs_watch_begin(&w, L);
    memset(&a, 0, sizeof a);
    a.L = L;
    a.policy = &pol;
    a.pool = &f->pool;
    a.conn = k->conn;
    a.url = url;
    a.w = &w;
    a.headers = fetch_headers;
    a.prepare = fetch_prepare;
    a.ud = k;
    a.hook = &f->on_attempt;
    a.operation = "token";
    k->post = post;
    if (acs_attempts_run(&a) != 0) {
        meta.attempts = a.attempts;
        return acs_push_failure(L, "local", 0, a.why, &meta);
    }
    rc = a.rc;
    attempt = a.attempts;
    meta.attempts = attempt;
    if (rc != 0) {
        meta.timeout = rc == CURLE_OPERATION_TIMEDOUT;
        return acs_push_failure(L, rc == ACS_TR_NOMEM ? "local" : "transport", 0,
                                acs_conn_error(k->conn, rc), &meta);
    }
    lua_pushinteger(L, (lua_Integer)k->conn->status);
    lua_pushlstring(L, k->conn->body ? k->conn->body : "", k->conn->len);
    push_headers(L, k->conn);
    lua_pushinteger(L, attempt);
    return 4;
}

/* f:fetch(request) -> status, body, headers, attempts | nil, message, info */
static int l_fetch(lua_State *L)
{
    fetch_ctx k;
    acs_client *f = luaL_checkudata(L, 1, FETCHER_MT);
    if (f->closed)
        return luaL_error(L, WHO ": closed");
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    memset(&k, 0, sizeof k);
    k.f = f;
    return acs_call_run(L, 2, fetch_body, &k, fetch_cleanup);
}

/* core.is_loopback_url(url) -> boolean: util.h's one loopback rule */
static int l_is_loopback_url(lua_State *L)
{
    lua_pushboolean(L, lua_type(L, 1) == LUA_TSTRING &&
                           acs_url_is_loopback(lua_tostring(L, 1)));
    return 1;
}

void acs_fetch_open(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", l_close},
        {"__close", l_close},
        {"__tostring", l_tostring},
        {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"fetch", l_fetch},
        {"close", l_close},
        {NULL, NULL}};
    lua_pushcfunction(L, l_fetcher);
    lua_setfield(L, -2, "fetcher");
    lua_pushcfunction(L, l_is_loopback_url);
    lua_setfield(L, -2, "is_loopback_url");
    if (acs_class_begin(L, FETCHER_MT)) {
        lua_pushvalue(L, -2);
        acs_setfuncs(L, meta);
        lua_pop(L, 1);
        acs_setfuncs(L, methods);
        acs_class_end(L, FETCHER_MT);
    }
}
