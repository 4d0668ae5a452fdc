/* acscall.c - module glue: the client object (client.h), options, get_call,
 * request and the pure entry points. Request building (request.c), signing
 * (auth.c), transport (transport.c), decoding (decode.c) and get_calls
 * (batch.c) each live in their own file. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth.h"
#include "compat.h"
#include "decode.h"
#include "request.h"
#include "transport.h"
#include "client.h"

#define ACS_VERSION "0.1.0"
#define CLIENT_MT "acscall.client"

/* ---------- lifetime ---------------------------------------------------- */

static void secret_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* The one release path (idempotent): everything the client owns. */
static void release(lua_State *L, acs_client *c)
{
    c->closed = 1;
    acs_batch_free(c);
    acs_transport_free(&c->tr);
    acs_route_free(&c->route);
    free(c->ca_file);
    c->ca_file = NULL;
    secret_free(c->token);
    c->token = NULL;
    acs_signer_free(c->signer);
    c->signer = NULL;
    free(c->url);
    c->url = NULL;
    c->url_cap = 0;
    if (c->decoder_ref > 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, c->decoder_ref);
        c->decoder_ref = 0;
    }
    if (c->provider_ref != LUA_NOREF && c->provider_ref != LUA_REFNIL) {
        luaL_unref(L, LUA_REGISTRYINDEX, c->provider_ref);
        c->provider_ref = LUA_NOREF;
    }
}

/* close and __close. Lua code can run in the middle of a call (the token
 * provider, finalizers while results are built); a close from there only
 * marks the client closed, and the call releases it as it leaves. */
static int l_close(lua_State *L)
{
    acs_client *c = luaL_checkudata(L, 1, CLIENT_MT);
    c->closed = 1;
    if (c->busy == 0)
        release(L, c);
    return 0;
}

/* __gc: nothing can be running on an unreachable client (a call keeps it
 * on its stack), so release whatever is left, even after a call that a
 * Lua error cut short. */
static int l_gc(lua_State *L)
{
    release(L, luaL_checkudata(L, 1, CLIENT_MT));
    return 0;
}

/* A call runs on the client: close() defers the release until it leaves. */
void acs_client_enter(lua_State *L, acs_client *c)
{
    if (c->busy++ == 0) {
        c->call_L = L;
        c->call_hook = lua_gethook(L);
        c->call_mask = lua_gethookmask(L);
    }
}

void acs_client_leave(lua_State *L, acs_client *c)
{
    if (--c->busy == 0) {
        c->call_L = NULL;
        if (c->closed)
            release(L, c);
    }
}

/* Ctrl-C while a call runs: the standalone interpreter's SIGINT handler
 * installs a hook (then raises "interrupted!" at the next Lua instruction).
 * A hook that changed since the call began means: stop waiting. Reads two
 * fields of the Lua state; safe from libcurl's progress callback. */
int acs_client_interrupted(void *ud)
{
    const acs_client *c = ud;
    return c->call_L != NULL && (lua_gethook(c->call_L) != c->call_hook ||
                                 lua_gethookmask(c->call_L) != c->call_mask);
}

/* Sleep ms, through unrelated signals; 1 if acs_client_interrupted (Ctrl-C). */
static int wait_unless_interrupted(acs_client *c, long ms)
{
    long until = acs_monotonic_ms() + ms;
    while (acs_sleep_ms(until - acs_monotonic_ms()) != 0)
        if (acs_client_interrupted(c))
            return 1;
    return 0;
}

/* Lua code run mid-call (the token provider, a finalizer) closed the
 * client: leave, release, and say so. */
int acs_client_closed_mid_call(lua_State *L, acs_client *c)
{
    acs_client_leave(L, c);
    return luaL_error(L, "acscall: closed client");
}

acs_client *acs_client_check_open(lua_State *L)
{
    acs_client *c = luaL_checkudata(L, 1, CLIENT_MT);
    if (c->closed)
        luaL_error(L, "acscall: closed client");
    return c;
}

static int l_tostring(lua_State *L)
{
    acs_client *c = luaL_checkudata(L, 1, CLIENT_MT);
    static const char *const names[] = {"none", "token", "access key",
                                        "token provider"};
    if (c->closed)
        lua_pushfstring(L, "acscall.client (closed): %p", (void *)c);
    else
        lua_pushfstring(L, "acscall.client (%s, %s auth): %p", c->route.origin,
                        names[c->auth], (void *)c);
    return 1;
}

/* ---------- options ----------------------------------------------------- */

/* The string option `name`, or NULL. The value stays on the stack until
 * new returns: the options table need not keep it alive (its __index may
 * make values on the fly), and l_new uses the pointer to the end. */
static const char *opt_string(lua_State *L, const char *name, size_t *len)
{
    lua_getfield(L, 1, name);
    if (lua_isnil(L, -1))
        return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "acscall.new: option '%s' must be a string", name);
    return lua_tolstring(L, -1, len);
}

static long opt_ms(lua_State *L, const char *name, long dflt)
{
    long v = dflt;
    lua_getfield(L, 1, name);
    if (!lua_isnil(L, -1)) {
        lua_Number n;
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "acscall.new: option '%s' must be a number (seconds)",
                       name);
        n = lua_tonumber(L, -1);
        if (!(n > 0 && n <= 86400))
            luaL_error(L, "acscall.new: option '%s' must be > 0 and <= 86400",
                       name);
        v = (long)(n * 1000.0 + 0.5);
        if (v < 1)
            v = 1;
    }
    lua_pop(L, 1);
    return v;
}

/* retries = false | {max=, base_delay=, max_delay=} (delays in seconds) */
static void opt_retries(lua_State *L, acs_retry_policy *p)
{
    p->max = ACS_DEFAULT_RETRIES;
    p->base_ms = ACS_DEFAULT_BASE_DELAY_MS;
    p->max_ms = ACS_DEFAULT_MAX_DELAY_MS;
    lua_getfield(L, 1, "retries");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        p->max = 0;
        lua_pop(L, 1);
        return;
    }
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "acscall.new: option 'retries' must be false or a table");
    lua_getfield(L, -1, "max");
    if (!lua_isnil(L, -1)) {
        lua_Number n = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(n >= 0 && n <= 20) || n != (int)n)
            luaL_error(L, "acscall.new: 'retries.max' must be an integer in [0, 20]");
        p->max = (int)n;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, 1); /* opt_ms reads index 1: swap in the retries table */
    lua_pushvalue(L, -2);
    lua_replace(L, 1);
    p->base_ms = opt_ms(L, "base_delay", p->base_ms);
    p->max_ms = opt_ms(L, "max_delay", p->max_ms);
    lua_replace(L, 1); /* the options table back */
    lua_pop(L, 1);
}

/* core.new(opts) -> client. Every mistake here is the programmer's: raise. */
static int l_new(lua_State *L)
{
    acs_client *c;
    size_t eplen = 0, cslen = 0, keylen = 0, toklen = 0, ualen = 0;
    const char *endpoint, *cs, *key, *token, *ua, *ca_file, *api, *err;
    acs_span cs_ep = {NULL, 0}, cs_key = {NULL, 0};
    acs_transport_opts to;
    int has_provider, n_auth, provider_idx;
    lua_Number max_body = ACS_DEFAULT_MAX_BODY;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    endpoint = opt_string(L, "endpoint", &eplen);
    cs = opt_string(L, "connection_string", &cslen);
    key = opt_string(L, "access_key", &keylen);
    token = opt_string(L, "token", &toklen);
    ua = opt_string(L, "user_agent", &ualen);
    ca_file = opt_string(L, "ca_file", NULL);
    api = opt_string(L, "api_version", NULL);
    lua_getfield(L, 1, "token_provider"); /* stays at provider_idx */
    provider_idx = lua_gettop(L);
    has_provider = !lua_isnil(L, -1);
    if (has_provider && lua_type(L, -1) != LUA_TFUNCTION)
        return luaL_error(L, "acscall.new: option 'token_provider' must be a function");
    lua_getfield(L, 1, "max_body");
    if (!lua_isnil(L, -1)) {
        max_body = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(max_body >= 1024 && max_body <= 1e9))
            return luaL_error(L, "acscall.new: option 'max_body' must be a number of "
                          "bytes in [1024, 1e9]");
    }
    lua_pop(L, 1);

    if (cs) {
        if (endpoint)
            return luaL_error(L, "acscall.new: give 'endpoint' or 'connection_string', "
                          "not both");
        if ((err = acs_connstr_parse(cs, cslen, &cs_ep, &cs_key)) != NULL)
            return luaL_error(L, "acscall.new: %s", err);
        if (key)
            return luaL_error(L, "acscall.new: give 'access_key' or 'connection_string', "
                          "not both");
        key = cs_key.p;
        keylen = cs_key.len;
        /* the endpoint as a NUL-terminated string, owned by the Lua stack */
        lua_pushlstring(L, cs_ep.p, cs_ep.len);
        endpoint = lua_tostring(L, -1);
    }
    if (endpoint == NULL)
        return luaL_error(L, "acscall.new: missing 'endpoint' (or 'connection_string')");
    n_auth = (key != NULL) + (token != NULL) + has_provider;
    if (n_auth == 0)
        return luaL_error(L, "acscall.new: missing credentials: give 'token', "
                      "'access_key', 'connection_string' or 'token_provider'");
    if (n_auth > 1)
        return luaL_error(L, "acscall.new: give exactly one of 'token', 'access_key' "
                      "(or a connection string) and 'token_provider'");
    if (token && (toklen == 0 || acs_has_crlf(token, toklen)))
        return luaL_error(L, "acscall.new: 'token' must be non-empty, without CR, LF "
                      "or NUL");
    if (ua && (acs_has_crlf(ua, ualen) || ualen > 256))
        return luaL_error(L, "acscall.new: 'user_agent' must be at most 256 bytes, "
                      "without CR, LF or NUL");
    if (api && (api[0] == '\0' || strlen(api) > 64))
        return luaL_error(L, "acscall.new: 'api_version' must be 1 to 64 bytes");

    /* The userdata exists, zeroed and with its metatable, before anything
     * is acquired: from here on __gc releases whatever was acquired. */
    c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    c->provider_ref = LUA_NOREF;
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);

    if ((err = acs_route_init(&c->route, endpoint,
                              api ? api : ACS_DEFAULT_API_VERSION)) != NULL)
        return luaL_error(L, "acscall.new: %s", err);
    if (key) {
        unsigned char kbuf[ACS_KEY_MAX];
        size_t kbuflen;
        err = acs_key_decode(key, keylen, kbuf, &kbuflen);
        if (err == NULL && (c->signer = acs_signer_new(kbuf, kbuflen)) == NULL)
            err = "cannot key HMAC-SHA256 (libcrypto)";
        OPENSSL_cleanse(kbuf, sizeof kbuf);
        if (err)
            return luaL_error(L, "acscall.new: %s", err);
        c->auth = AUTH_HMAC;
    } else if (token) {
        size_t n = toklen + sizeof "Authorization: Bearer ";
        c->token = malloc(n);
        if (c->token == NULL)
            return luaL_error(L, "acscall.new: out of memory");
        memcpy(c->token, "Authorization: Bearer ", sizeof "Authorization: Bearer " - 1);
        memcpy(c->token + sizeof "Authorization: Bearer " - 1, token, toklen + 1);
        c->auth = AUTH_TOKEN;
    } else {
        lua_pushvalue(L, provider_idx); /* the function checked above */
        c->provider_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        c->auth = AUTH_PROVIDER;
    }

    /* User-Agent: acscall/<v> Lua/<x.y> libcurl/<v> [suffix] */
    {
        const char *lv = LUA_VERSION; /* "Lua 5.4" */
        curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
        snprintf(c->ua, sizeof c->ua, "acscall/%s Lua/%s libcurl/%s%s%s",
                 ACS_VERSION, lv + 4, cv->version, ua ? " " : "", ua ? ua : "");
    }
    to.connect_timeout_ms = opt_ms(L, "connect_timeout",
                                   ACS_DEFAULT_CONNECT_TIMEOUT_MS);
    to.timeout_ms = opt_ms(L, "timeout", ACS_DEFAULT_TIMEOUT_MS);
    to.max_body = (size_t)max_body;
    if (ca_file && (c->ca_file = strdup(ca_file)) == NULL)
        return luaL_error(L, "acscall.new: out of memory");
    to.ca_file = c->ca_file;
    to.user_agent = c->ua;
    to.interrupted = acs_client_interrupted;
    to.interrupted_ud = c;
    c->topts = to; /* the handles' progress callback reads it: it must live */
    if ((err = acs_transport_init(&c->tr, &c->topts)) != NULL)
        return luaL_error(L, "acscall.new: %s", err);
    c->timeout_ms = to.timeout_ms;
    c->deadline_ms = opt_ms(L, "deadline", ACS_DEFAULT_DEADLINE_MS);
    opt_retries(L, &c->retry);
    lua_getfield(L, 1, "max_depth");
    if (!lua_isnil(L, -1)) {
        lua_Number d = lua_tonumber(L, -1);
        /* range first: casting NaN or a huge double to int is undefined */
        if (lua_type(L, -1) != LUA_TNUMBER || !(d >= 4 && d <= 1000) || d != (int)d)
            return luaL_error(L, "acscall.new: 'max_depth' must be an integer in [4, 1000]");
        if ((int)d != ACS_DEFAULT_MAX_DEPTH)
            c->decoder_ref = acs_decode_new_decoder(L, (int)d);
    }
    lua_pop(L, 1);
    return 1;
}

/* ---------- get_call ---------------------------------------------------- */

/* Fetch the bearer token from the provider; leaves it on the stack.
 * Returns NULL or a one-line reason (kind "auth"). */
static const char *provide_token(lua_State *L, acs_client *c)
{
    size_t len;
    const char *tok;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->provider_ref);
    if (lua_pcall(L, 0, 1, 0) != 0) {
        /* the provider's own error text may say anything: do not echo it */
        lua_pop(L, 1);
        lua_pushnil(L);
        return "token_provider raised an error";
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        return "token_provider did not return a string";
    tok = lua_tolstring(L, -1, &len);
    if (len == 0 || acs_has_crlf(tok, len))
        return "token_provider returned an empty token or one with CR, LF or NUL";
    return NULL;
}

/* url = origin + prefix + encoded id + query, into a growable buffer.
 * Pure C: 0, or -1 when out of memory. */
int acs_client_build_url(const acs_client *c, const char *id, size_t idlen,
                     char **buf, size_t *cap)
{
    size_t olen = strlen(c->route.origin), plen = strlen(c->route.prefix);
    size_t qlen = strlen(c->route.query), pos;
    size_t need = olen + plen + 3 * idlen + qlen + 1;
    if (need > *cap) {
        char *p = realloc(*buf, need);
        if (p == NULL)
            return -1;
        *buf = p;
        *cap = need;
    }
    memcpy(*buf, c->route.origin, olen);
    memcpy(*buf + olen, c->route.prefix, plen);
    pos = olen + plen;
    pos += acs_encode_segment(id, idlen, *buf + pos);
    memcpy(*buf + pos, c->route.query, qlen + 1);
    return 0;
}

static struct curl_slist *add(struct curl_slist *l, const char *h, int *ok)
{
    struct curl_slist *n;
    if (!*ok)
        return l;
    n = curl_slist_append(l, h);
    if (n == NULL) {
        *ok = 0;
        return l;
    }
    return n;
}

/* The request headers for url, signed now (HMAC: a fresh x-ms-date per
 * attempt). Pure C: nothing here can raise. NULL with *why on failure. */
struct curl_slist *acs_client_build_headers(const acs_client *c, const char *url,
                                        const char *crid, const char *bearer,
                                        const char **why)
{
    char line[600];
    int ok = 1;
    struct curl_slist *l = NULL;

    l = add(l, "Accept: application/json", &ok);
    snprintf(line, sizeof line, "x-ms-client-request-id: %s", crid);
    l = add(l, line, &ok);
    snprintf(line, sizeof line, "Host: %s", c->route.host);
    l = add(l, line, &ok);
    if (c->auth == AUTH_TOKEN) {
        l = add(l, c->token, &ok);
    } else if (c->auth == AUTH_PROVIDER) {
        size_t n;
        char *h;
        if (bearer == NULL) { /* callers pass the provider's token */
            acs_free_headers(l);
            *why = "no token from token_provider";
            return NULL;
        }
        n = strlen(bearer) + sizeof "Authorization: Bearer ";
        h = malloc(n);
        if (h == NULL) {
            ok = 0;
        } else {
            snprintf(h, n, "Authorization: Bearer %s", bearer);
            l = add(l, h, &ok);
            secret_free(h);
        }
    } else {
        char date[ACS_DATE_LEN + 1], sig[ACS_B64_SHA256_LEN + 1];
        const char *hash = ACS_EMPTY_CONTENT_HASH; /* a GET has no body */
        const char *pq = url + strlen(c->route.origin); /* as on the wire */
        acs_format_date(time(NULL), date);
        if (acs_signer_sign(c->signer, "GET", pq, strlen(pq), date,
                            c->route.host, hash, sig) != 0) {
            *why = "signing failed (libcrypto)";
            acs_free_headers(l);
            return NULL;
        }
        snprintf(line, sizeof line, "x-ms-date: %s", date);
        l = add(l, line, &ok);
        snprintf(line, sizeof line, "x-ms-content-sha256: %s", hash);
        l = add(l, line, &ok);
        snprintf(line, sizeof line, "Authorization: %s%s", ACS_HMAC_AUTH_PREFIX,
                 sig);
        l = add(l, line, &ok);
        OPENSSL_cleanse(line, sizeof line);
    }
    if (!ok) {
        acs_free_headers(l);
        *why = "out of memory";
        return NULL;
    }
    return l;
}

/* A call id at stack index idx: a non-empty string of at most ACS_ID_MAX
 * bytes, else a programmer mistake (raises). */
const char *acs_client_check_id(lua_State *L, int idx, size_t *len)
{
    const char *id;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "acscall: a call id must be a string, got %s",
                   luaL_typename(L, idx));
    id = lua_tolstring(L, idx, len);
    if (*len == 0 || *len > ACS_ID_MAX)
        luaL_error(L, "acscall: a call id must be 1 to %d bytes", ACS_ID_MAX);
    return id;
}

/* The bearer token for this get_call/get_calls/request: the provider's
 * (left on the stack, anchored) or NULL. Returns NULL or a failure reason. */
const char *acs_client_bearer(lua_State *L, acs_client *c, const char **bearer)
{
    const char *why;
    *bearer = NULL;
    if (c->auth != AUTH_PROVIDER)
        return NULL;
    why = provide_token(L, c); /* the caller checks c->closed after this */
    if (why != NULL)
        return why;
    *bearer = lua_tostring(L, -1);
    return NULL;
}

/* After the last attempt on tr: push the call, or nil, message, info. */
int acs_client_push_result(lua_State *L, acs_transport *tr, int rc,
                       acs_resp_meta *meta)
{
    meta->request_id = tr->request_id[0] ? tr->request_id : NULL;
    meta->content_type = tr->content_type[0] ? tr->content_type : NULL;
    if (rc == ACS_TR_TOO_LARGE)
        return acs_push_failure(L, "decode", tr->status,
                                acs_transport_error(tr, rc), meta);
    if (rc != 0) {
        meta->timeout = rc == CURLE_OPERATION_TIMEDOUT;
        return acs_push_failure(L, "transport", 0, acs_transport_error(tr, rc),
                                meta);
    }
    return acs_decode_push(L, tr->status, tr->body ? tr->body : "", tr->len,
                           meta);
}

/* A fresh x-ms-client-request-id from the client's pool of random bytes
 * (RAND_bytes in bulk: one call per 32 ids). The pool is dropped in a
 * forked child (nginx workers fork after init_by_lua), so two processes
 * never send the same id. 0 or -1. */
int acs_client_request_id(acs_client *c, char out[37])
{
    pid_t pid = getpid();
    if (c->rnd_left < 16 || c->rnd_pid != pid) {
        if (RAND_bytes(c->rnd, sizeof c->rnd) != 1)
            return -1;
        c->rnd_left = sizeof c->rnd;
        c->rnd_pid = pid;
    }
    c->rnd_left -= 16;
    acs_uuid4_format(c->rnd + c->rnd_left, out);
    return 0;
}

/* The start of get_call and request: check the id at index 2 (a mistake
 * raises), enter the client, make a client request id, ask for the bearer,
 * build c->url. Returns 0 (entered: the caller leaves), or the number of
 * values pushed (nil, message, info; already left); raises "closed client"
 * if the provider closed it. */
static int begin_call(lua_State *L, acs_client *c, char crid[37],
                      acs_resp_meta *meta, const char **bearer)
{
    size_t idlen;
    const char *why, *id = acs_client_check_id(L, 2, &idlen);
    int n = 0;

    lua_settop(L, 2);
    acs_client_enter(L, c);
    *bearer = NULL;
    memset(meta, 0, sizeof *meta);
    if (acs_client_request_id(c, crid) != 0) {
        n = acs_push_failure(L, "transport", 0, "no random bytes", meta);
    } else {
        meta->client_request_id = crid;
        why = acs_client_bearer(L, c, bearer);
        if (c->closed)
            return acs_client_closed_mid_call(L, c);
        if (why != NULL)
            n = acs_push_failure(L, "auth", 0, why, meta);
        else if (acs_client_build_url(c, id, idlen, &c->url, &c->url_cap) != 0)
            n = acs_push_failure(L, "transport", 0, "out of memory", meta);
    }
    if (n != 0)
        acs_client_leave(L, c);
    return n;
}

/* client:request(id) -> url, headers | nil, message, info
 * Stage 1 alone, for transports written in Lua (lua-resty-http, cosockets):
 * the URL and every header to send, signed now. Pair with acscall.decode. */
static int l_request(lua_State *L)
{
    acs_client *c = acs_client_check_open(L);
    const char *bearer, *why;
    char crid[37];
    acs_resp_meta meta;
    struct curl_slist *hdrs, *h;
    int n;

    if ((n = begin_call(L, c, crid, &meta, &bearer)) != 0)
        return n;
    hdrs = acs_client_build_headers(c, c->url, crid, bearer, &why);
    if (hdrs == NULL) {
        acs_client_leave(L, c);
        return acs_push_failure(L, "auth", 0, why, &meta);
    }
    acs_transport_hold_headers(&c->tr, hdrs); /* owned there if Lua raises */
    lua_pushstring(L, c->url);
    lua_newtable(L);
    for (h = hdrs; h; h = h->next) {
        const char *colon = strchr(h->data, ':');
        const char *v = colon + 1;
        size_t i, len = (size_t)(colon - h->data);
        char name[64];
        for (i = 0; i < len && i < sizeof name - 1; i++)
            name[i] = (char)(h->data[i] >= 'A' && h->data[i] <= 'Z' ? h->data[i] + 32 : h->data[i]);
        name[i] = '\0';
        while (*v == ' ')
            v++;
        lua_pushstring(L, v);
        lua_setfield(L, -2, name);
    }
    lua_pushstring(L, c->ua);
    lua_setfield(L, -2, "user-agent");
    acs_client_leave(L, c);
    return 2;
}

/* client:get_call(id) -> call | nil, message, info */
static int l_get_call(lua_State *L)
{
    acs_client *c = acs_client_check_open(L);
    const char *bearer, *why;
    char crid[37];
    acs_resp_meta meta;
    struct curl_slist *hdrs;
    int rc, attempt, n;
    long start;

    if ((n = begin_call(L, c, crid, &meta, &bearer)) != 0)
        return n;

    /* Attempts: each re-signed, same client request id, each bounded by
     * timeout and by what is left of the deadline. */
    start = acs_monotonic_ms();
    for (attempt = 1;; attempt++) {
        long left = c->deadline_ms - (acs_monotonic_ms() - start), delay = 0;
        acs_transport_set_timeout(&c->tr, left < c->timeout_ms ? left : c->timeout_ms);
        hdrs = acs_client_build_headers(c, c->url, crid, bearer, &why);
        if (hdrs == NULL) {
            acs_client_leave(L, c);
            return acs_push_failure(L, "auth", 0, why, &meta);
        }
        rc = acs_transport_get(&c->tr, c->url, hdrs);
        if (!acs_transport_should_retry(&c->tr, rc, attempt, &c->retry, &delay))
            break;
        left = c->deadline_ms - (acs_monotonic_ms() - start);
        if (delay >= left)
            break; /* the wait would outlast the deadline: report now */
        if (wait_unless_interrupted(c, delay))
            break; /* Ctrl-C: report the last answer now */
    }
    meta.attempts = attempt;
    meta.decoder_ref = c->decoder_ref;
    n = acs_client_push_result(L, &c->tr, rc, &meta);
    acs_client_leave(L, c); /* a finalizer may have closed c while results were built */
    return n;
}

/* ---------- pure entry points ------------------------------------------ */

/* Epoch seconds at index i for a date: years 0-9999, else a mistake
 * (raises; NaN fails the test too). Casting a double out of time_t's range
 * would be undefined behaviour. */
static time_t check_epoch(lua_State *L, int i)
{
    lua_Number n = luaL_checknumber(L, i);
    luaL_argcheck(L, n >= -62167219200.0 && n <= 253402300799.0, i,
                  "epoch seconds out of range (years 0-9999)");
    return (time_t)n;
}

/* core.sign{method=, url=, date=, body=, access_key=} -> headers table */
static int l_sign(lua_State *L)
{
    size_t keylen, bodylen = 0, kbuflen;
    const char *method, *url, *key, *body = "", *err;
    char date[ACS_DATE_LEN + 1], hash[ACS_B64_SHA256_LEN + 1];
    char sig[ACS_B64_SHA256_LEN + 1];
    unsigned char kbuf[ACS_KEY_MAX];
    char *host, *pq, hbuf[300];
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_getfield(L, 1, "method");
    lua_getfield(L, 1, "url");
    lua_getfield(L, 1, "body");
    lua_getfield(L, 1, "access_key");
    lua_getfield(L, 1, "date");
    method = lua_isnil(L, 2) ? "GET" : lua_tostring(L, 2);
    if (method == NULL || lua_type(L, 2) == LUA_TNUMBER)
        return luaL_error(L, "acscall.sign: 'method' must be a string");
    if (lua_type(L, 3) != LUA_TSTRING)
        return luaL_error(L, "acscall.sign: 'url' must be a string");
    url = lua_tostring(L, 3);
    if (!lua_isnil(L, 4)) {
        if (lua_type(L, 4) != LUA_TSTRING)
            return luaL_error(L, "acscall.sign: 'body' must be a string");
        body = lua_tolstring(L, 4, &bodylen);
    }
    if (lua_type(L, 5) != LUA_TSTRING)
        return luaL_error(L, "acscall.sign: 'access_key' must be a string");
    key = lua_tolstring(L, 5, &keylen);
    if (lua_type(L, 6) == LUA_TSTRING) {
        size_t dl;
        const char *d = lua_tolstring(L, 6, &dl);
        if (dl > ACS_DATE_LEN || acs_has_crlf(d, dl))
            return luaL_error(L, "acscall.sign: 'date' is not an HTTP date");
        memcpy(date, d, dl + 1);
    } else if (lua_type(L, 6) == LUA_TNUMBER) {
        acs_format_date(check_epoch(L, 6), date);
    } else if (lua_isnil(L, 6)) {
        acs_format_date(time(NULL), date);
    } else {
        return luaL_error(L, "acscall.sign: 'date' must be a string or epoch seconds");
    }
    if ((err = acs_key_decode(key, keylen, kbuf, &kbuflen)) != NULL) {
        OPENSSL_cleanse(kbuf, sizeof kbuf);
        return luaL_error(L, "acscall.sign: %s", err);
    }
    if ((err = acs_url_split(url, &host, &pq)) != NULL) {
        OPENSSL_cleanse(kbuf, sizeof kbuf);
        return luaL_error(L, "acscall.sign: url: %s", err);
    }
    acs_content_hash(body, bodylen, hash);
    rc = acs_sign(kbuf, kbuflen, method, pq, strlen(pq), date, host, hash, sig);
    OPENSSL_cleanse(kbuf, sizeof kbuf);
    free(pq);
    snprintf(hbuf, sizeof hbuf, "%s", host); /* host is < 300 bytes */
    free(host);
    /* nothing malloc'd is alive past here: Lua may raise (OOM) safely */
    if (rc != 0)
        return luaL_error(L, "acscall.sign: libcrypto failed");
    lua_createtable(L, 0, 4);
    lua_pushstring(L, hbuf);
    lua_setfield(L, -2, "host");
    lua_pushstring(L, date);
    lua_setfield(L, -2, "x-ms-date");
    lua_pushstring(L, hash);
    lua_setfield(L, -2, "x-ms-content-sha256");
    lua_pushfstring(L, "%s%s", ACS_HMAC_AUTH_PREFIX, sig);
    lua_setfield(L, -2, "authorization");
    return 1;
}

/* core.http_date([epoch]) -> "Wed, 13 Apr 2022 18:09:12 GMT" */
static int l_http_date(lua_State *L)
{
    char date[ACS_DATE_LEN + 1];
    time_t t = lua_isnoneornil(L, 1) ? time(NULL) : check_epoch(L, 1);
    acs_format_date(t, date);
    lua_pushstring(L, date);
    return 1;
}

/* core.uuid() -> random UUID v4 (the x-ms-client-request-id format) */
static int l_uuid(lua_State *L)
{
    char u[37];
    if (acs_uuid4(u) != 0)
        return luaL_error(L, "acscall.uuid: no random bytes");
    lua_pushstring(L, u);
    return 1;
}

static const luaL_Reg client_methods[] = {
    {"get_call", l_get_call},
    {"request", l_request},
    {"get_calls", acs_l_get_calls},
    {"close", l_close},
    {NULL, NULL}};

static const luaL_Reg client_meta[] = {
    {"__gc", l_gc},
    {"__close", l_close},
    {"__tostring", l_tostring},
    {NULL, NULL}};

static const luaL_Reg module_funcs[] = {
    {"new", l_new},
    {"sign", l_sign},
    {"decode", acs_l_decode},
    {"raw_id", acs_l_raw_id},
    {"identifier_from_raw_id", acs_l_identifier_from_raw_id},
    {"http_date", l_http_date},
    {"uuid", l_uuid},
    {NULL, NULL}};

int luaopen_acscall_core(lua_State *L);
int luaopen_acscall_core(lua_State *L)
{
    if (acs_transport_global_init() != 0)
        return luaL_error(L, "acscall: libcurl initialisation failed");
    acs_decode_init(L, ACS_DEFAULT_MAX_DEPTH);
    if (luaL_newmetatable(L, CLIENT_MT)) {
        acs_setfuncs(L, client_meta);
        lua_newtable(L);
        acs_setfuncs(L, client_methods);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, "acscall.client");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    acs_setfuncs(L, module_funcs);
    lua_pushliteral(L, ACS_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_pushliteral(L, ACS_DEFAULT_API_VERSION);
    lua_setfield(L, -2, "DEFAULT_API_VERSION");
    acs_pushint(L, ACS_ID_MAX);
    lua_setfield(L, -2, "ID_MAX");
    acs_decode_push_schema(L);
    lua_setfield(L, -3, "ARRAY_FIELDS");
    lua_setfield(L, -2, "CALL_FIELDS");
    return 1;
}
