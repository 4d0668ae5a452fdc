/* fetch.c - core.fetcher (fetch.h): one HTTP exchange with retries, on the
 * transport the calls use. The frame is a call's (call.h, acs_call_run):
 * the request is read and built inside a protected body while the C side
 * owns the handles and buffers, and cleanup gives everything back whatever
 * happens. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>
#include <openssl/crypto.h>

#include "call.h"
#include "client.h"
#include "compat.h"
#include "failure.h"
#include "fetch.h"
#include "retry.h"
#include "transport.h"
#include "util.h"

#define FETCHER_MT "acscall.fetcher"
#define WHO "acscall.fetcher"
#define FETCH_DEFAULT_MAX_BODY (1024u * 1024u)

typedef struct {
    int inited, closed;
    int calls; /* fetches running: close() waits for the last */
    acs_retry_policy retry;
    acs_hook on_attempt; /* operation "token" */
    char *ca_file;
    char ua[320];
    acs_pool pool;
} fetcher;

static void fetcher_release(lua_State *L, fetcher *f)
{
    if (f->inited)
        acs_pool_free(&f->pool);
    f->inited = 0;
    free(f->ca_file);
    f->ca_file = NULL;
    if (f->on_attempt.ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, f->on_attempt.ref);
        f->on_attempt.ref = LUA_NOREF;
    }
}

static int l_close(lua_State *L)
{
    fetcher *f = luaL_checkudata(L, 1, FETCHER_MT);
    if (!f->closed) {
        f->closed = 1;
        if (f->calls == 0)
            fetcher_release(L, f);
    }
    return 0;
}

static int l_tostring(lua_State *L)
{
    fetcher *f = luaL_checkudata(L, 1, FETCHER_MT);
    lua_pushfstring(L, "acscall.fetcher (%s)", f->closed ? "closed" : "open");
    return 1;
}

/* core.fetcher(opts) -> fetcher; mistakes raise. */
static int l_fetcher(lua_State *L)
{
    fetcher *f;
    acs_transport_opts to;
    const char *ca, *ua, *err;
    size_t ualen = 0;
    int ud;
    lua_Number max_body = FETCH_DEFAULT_MAX_BODY;

    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    memset(&to, 0, sizeof to);
    ca = acs_opt_string(L, WHO, "ca_file", NULL);
    ua = acs_opt_string(L, WHO, "user_agent", &ualen);
    if (ua && (acs_has_crlf(ua, ualen) || ualen > 256))
        return luaL_error(L, WHO ": 'user_agent' must be at most 256 bytes, "
                          "without CR, LF or NUL");
    lua_getfield(L, 1, "max_body");
    if (!lua_isnil(L, -1)) {
        max_body = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(max_body >= 1024 && max_body <= 1e9))
            return luaL_error(L, WHO ": option 'max_body' must be a number of "
                              "bytes in [1024, 1e9]");
    }
    lua_pop(L, 1);

    f = lua_newuserdata(L, sizeof *f);
    ud = lua_gettop(L);
    memset(f, 0, sizeof *f);
    f->closed = 1; /* until complete: __gc then has nothing to do */
    f->on_attempt.ref = LUA_NOREF;
    luaL_getmetatable(L, FETCHER_MT);
    lua_setmetatable(L, -2);

    /* retries = n | false | {max=, base_delay=, statuses=, ...} (retry.h) */
    acs_retry_defaults(&f->retry);
    acs_opt_retries(L, WHO, &f->retry);
    f->retry.base_ms = acs_opt_ms(L, WHO, "base_delay", f->retry.base_ms);
    f->retry.max_ms = acs_opt_ms(L, WHO, "max_delay", f->retry.max_ms);
    f->retry.timeout_ms = acs_opt_ms(L, WHO, "timeout", ACS_DEFAULT_TIMEOUT_MS);
    f->retry.connect_timeout_ms = acs_opt_ms(L, WHO, "connect_timeout",
                                             ACS_DEFAULT_CONNECT_TIMEOUT_MS);
    f->retry.deadline_ms = acs_opt_ms(L, WHO, "deadline", ACS_DEFAULT_DEADLINE_MS);

    lua_getfield(L, 1, "on_attempt");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TFUNCTION)
            return luaL_error(L, WHO ": option 'on_attempt' must be a function");
        f->on_attempt.ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        lua_pop(L, 1);
    }
    snprintf(f->ua, sizeof f->ua, "acscall/%s (identity)%s%s", ACS_VERSION,
             ua ? " " : "", ua ? ua : "");
    if (ca && (f->ca_file = strdup(ca)) == NULL)
        return luaL_error(L, WHO ": out of memory");
    to.connect_timeout_ms = f->retry.connect_timeout_ms;
    to.max_body = (size_t)max_body;
    to.ca_file = f->ca_file;
    to.user_agent = f->ua;
    f->closed = 0;
    f->inited = 1;
    if ((err = acs_pool_init(&f->pool, &to)) != NULL) {
        fetcher_release(L, f);
        f->closed = 1;
        return luaL_error(L, WHO ": %s", err);
    }
    lua_settop(L, ud);
    return 1;
}

/* ---------- one fetch ------------------------------------------------- */

typedef struct {
    fetcher *f;
    int entered;
    acs_conn *conn;
    struct curl_slist *hdrs; /* the request's: copied for each attempt */
    char *form;              /* the urlencoded body (secrets: wiped) */
    size_t form_len, form_cap;
    const char **keys;       /* the form's keys, sorted */
    char *line;              /* a header line being built (wiped) */
    size_t line_cap;
    int post;
} fetch_ctx;

static void wipe_free(char *p, size_t cap)
{
    if (p)
        OPENSSL_cleanse(p, cap);
    free(p);
}

static void fetch_cleanup(lua_State *L, void *p)
{
    fetch_ctx *k = p;
    acs_free_headers(k->hdrs);
    k->hdrs = NULL;
    wipe_free(k->form, k->form_cap);
    k->form = NULL;
    wipe_free(k->line, k->line_cap);
    k->line = NULL;
    free(k->keys);
    k->keys = NULL;
    if (k->conn)
        acs_pool_put(&k->f->pool, k->conn);
    k->conn = NULL;
    if (k->entered) {
        k->f->calls--;
        if (k->f->closed && k->f->calls == 0)
            fetcher_release(L, k->f);
    }
}

/* A buffer of at least n bytes at *p (capacity *cap), its old bytes wiped
 * when it moves. 0 or -1. */
static int grow(char **p, size_t *cap, size_t n)
{
    char *q;
    size_t c = *cap ? *cap : 256;
    if (n <= *cap)
        return 0;
    while (c < n)
        c *= 2;
    if ((q = malloc(c)) == NULL)
        return -1;
    if (*p) {
        memcpy(q, *p, *cap);
        wipe_free(*p, *cap);
    }
    *p = q;
    *cap = c;
    return 0;
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
        if (nlen == 0 || i < nlen || nlen > 100)
            return luaL_error(L, WHO ": bad header name");
        if (acs_has_crlf(v, vlen))
            return luaL_error(L, WHO ": a header value has CR, LF or NUL");
        if (acs_starts_ci(n, nlen, "content-type") && nlen == 12)
            *has_ctype = 1;
        if (grow(&k->line, &k->line_cap, nlen + vlen + 3) != 0)
            return -1;
        memcpy(k->line, n, nlen);
        memcpy(k->line + nlen, ": ", 2);
        memcpy(k->line + nlen + 2, v, vlen);
        k->line[nlen + 2 + vlen] = '\0';
        l = curl_slist_append(k->hdrs, k->line);
        OPENSSL_cleanse(k->line, nlen + vlen + 3);
        if (l == NULL)
            return -1;
        k->hdrs = l;
        lua_pop(L, 1);
    }
    return 0;
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* application/x-www-form-urlencoded: unreserved bytes kept, others %XX */
static int form_add(fetch_ctx *k, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i;
    if (grow(&k->form, &k->form_cap, k->form_len + 3 * len + 2) != 0)
        return -1;
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            k->form[k->form_len++] = (char)ch;
        } else {
            k->form[k->form_len++] = '%';
            k->form[k->form_len++] = hex[ch >> 4];
            k->form[k->form_len++] = hex[ch & 15];
        }
    }
    k->form[k->form_len] = '\0';
    return 0;
}

/* request.form -> k->form. Raises on a mistake (under the frame). */
static int build_form(lua_State *L, fetch_ctx *k, int idx)
{
    size_t n = 0, i;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, WHO ": 'form' must map names to strings");
        n++;
        lua_pop(L, 1);
    }
    if (n > 0 && (k->keys = malloc(n * sizeof *k->keys)) == NULL)
        return -1;
    i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0 && i < n) {
        k->keys[i++] = lua_tostring(L, -2); /* alive: the table holds it */
        lua_pop(L, 1);
    }
    n = i;
    qsort(k->keys, n, sizeof *k->keys, cmp_keys);
    if (grow(&k->form, &k->form_cap, 1) != 0)
        return -1;
    k->form[0] = '\0';
    for (i = 0; i < n; i++) {
        size_t vlen;
        const char *v;
        lua_getfield(L, idx, k->keys[i]);
        v = lua_tolstring(L, -1, &vlen);
        if (grow(&k->form, &k->form_cap, k->form_len + 2) != 0)
            return -1;
        if (i > 0)
            k->form[k->form_len++] = '&';
        if (form_add(k, k->keys[i], strlen(k->keys[i])) != 0 ||
            grow(&k->form, &k->form_cap, k->form_len + 2) != 0)
            return -1;
        k->form[k->form_len++] = '=';
        if (form_add(k, v, vlen) != 0)
            return -1;
        lua_pop(L, 1);
    }
    return 0;
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
        acs_conn_post(a->conn, k->form, k->form_len);
    else /* (the handle may have POSTed before) */
        curl_easy_setopt(a->conn->easy, CURLOPT_HTTPGET, 1L);
}

/* body: 1 fetcher, 2 request, 3 ctx */
static int fetch_body(lua_State *L)
{
    fetch_ctx *k = lua_touserdata(L, 3);
    fetcher *f = k->f;
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
        acs_has_crlf(url, urllen) || strpbrk(url, " \t") != NULL)
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
        if (lua_type(L, 5) != LUA_TNUMBER || !(t > 0 && t <= 86400))
            return luaL_error(L, WHO ": 'timeout' must be > 0 and <= 86400 seconds");
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
        if (lua_type(L, 7) != LUA_TTABLE)
            return luaL_error(L, WHO ": 'form' must be a table");
        if (build_form(L, k, 7) != 0)
            return acs_push_failure(L, "local", 0, "out of memory", &meta);
        post = 1;
        if (!has_ctype) {
            struct curl_slist *l = curl_slist_append(
                k->hdrs, "Content-Type: application/x-www-form-urlencoded");
            if (l == NULL)
                return acs_push_failure(L, "local", 0, "out of memory", &meta);
            k->hdrs = l;
        }
    } else if (post) {
        if (grow(&k->form, &k->form_cap, 1) != 0)
            return acs_push_failure(L, "local", 0, "out of memory", &meta);
        k->form[0] = '\0';
    }

    f->calls++;
    k->entered = 1;
    {
        const char *why = acs_pool_after_fork(&f->pool);
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
    fetcher *f = luaL_checkudata(L, 1, FETCHER_MT);
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
    luaL_getmetatable(L, FETCHER_MT);
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    lua_newtable(L);
    acs_setfuncs(L, meta);
    lua_newtable(L);
    acs_setfuncs(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, FETCHER_MT);
    lua_setfield(L, -2, "__name");
    lua_setfield(L, LUA_REGISTRYINDEX, FETCHER_MT);
}
