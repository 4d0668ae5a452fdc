/* client.c - the client object (client.h): options, lifetime, credential,
 * request ids, the token provider, and core.new. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "client.h"
#include "compat.h"
#include "frame.h"
#include "model.h"
#include "options.h"
#include "util.h"

/* ---------- lifetime ---------------------------------------------------- */

/* The one release path (idempotent): everything the client owns. Only
 * when no call runs (they hold handles of the pool). */
static void release(lua_State *L, acs_client *c)
{
    c->closed = 1;
    acs_pool_free(&c->pool);
    acs_route_free(&c->route);
    free(c->ca_file);
    c->ca_file = NULL;
    acs_credential_free(&c->cred);
    OPENSSL_cleanse(c->rnd, sizeof c->rnd);
    c->rnd_left = 0;
    if (c->decoder_ref > 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, c->decoder_ref);
        c->decoder_ref = 0;
    }
    if (c->provider_ref != LUA_NOREF && c->provider_ref != LUA_REFNIL) {
        luaL_unref(L, LUA_REGISTRYINDEX, c->provider_ref);
        c->provider_ref = LUA_NOREF;
    }
    if (c->on_attempt.ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, c->on_attempt.ref);
        c->on_attempt.ref = LUA_NOREF;
    }
}

/* close and __close. close() from Lua code run inside a call closes the
 * client for new calls, and the last call to leave releases it. */
static int l_close(lua_State *L)
{
    return acs_client_close(L, luaL_checkudata(L, 1, ACS_CLIENT_MT));
}

/* __gc: a collected client has no call running (a call keeps it on its
 * stack; only lua_close from inside a call, at exit, could find one). */
static int l_gc(lua_State *L)
{
    release(L, luaL_checkudata(L, 1, ACS_CLIENT_MT));
    return 0;
}

const char *acs_client_enter(acs_client *c)
{
    c->calls++;
    return acs_pool_after_fork(&c->pool);
}

void acs_client_leave(lua_State *L, acs_client *c)
{
    if (--c->calls == 0 && c->closed)
        release(L, c);
}

acs_client *acs_client_check_open(lua_State *L, int idx)
{
    acs_client *c = luaL_checkudata(L, idx, ACS_CLIENT_MT);
    if (c->closed)
        luaL_error(L, "acscall: closed client");
    return c;
}

acs_client *acs_client_push(lua_State *L, const char *mt)
{
    acs_client *c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    c->provider_ref = LUA_NOREF;
    c->on_attempt.ref = LUA_NOREF;
    luaL_getmetatable(L, mt);
    lua_setmetatable(L, -2);
    return c;
}

void acs_client_setup(lua_State *L, acs_client *c, const char *who,
                      const char *tag, size_t max_body_dflt)
{
    int top = lua_gettop(L);
    size_t ualen = 0;
    const char *ua = acs_opt_string(L, who, "user_agent", &ualen);
    const char *ca = acs_opt_string(L, who, "ca_file", NULL);
    const char *err;
    acs_transport_opts to;
    memset(&to, 0, sizeof to);
    if (ua && (acs_header_value_check(ua, ualen) || ualen > ACS_USER_AGENT_MAX))
        luaL_error(L, "%s: 'user_agent' must be at most %d bytes, without "
                   ACS_CONTROL_CHARS, who, ACS_USER_AGENT_MAX);
    snprintf(c->ua, sizeof c->ua, "acscall/%s %s%s%s", ACS_VERSION, tag,
             ua ? " " : "", ua ? ua : "");
    to.max_body = acs_opt_max_body(L, who, max_body_dflt);
    if (ca && (c->ca_file = strdup(ca)) == NULL)
        luaL_error(L, "%s: out of memory", who);
    acs_opt_retries(L, who, &c->retry);
    c->retry.connect_timeout_ms = acs_opt_ms(L, who, "connect_timeout",
                                             ACS_DEFAULT_CONNECT_TIMEOUT_MS);
    c->retry.timeout_ms = acs_opt_ms(L, who, "timeout", ACS_DEFAULT_TIMEOUT_MS);
    c->retry.deadline_ms = acs_opt_ms(L, who, "deadline", ACS_DEFAULT_DEADLINE_MS);
    to.connect_timeout_ms = c->retry.connect_timeout_ms;
    to.ca_file = c->ca_file;
    to.user_agent = c->ua;
    /* Nothing is connected here: the first call opens what it needs. */
    if ((err = acs_pool_init(&c->pool, &to)) != NULL)
        luaL_error(L, "%s: %s", who, err);
    lua_getfield(L, 1, "on_attempt"); /* (its type: acs_options_check) */
    if (lua_type(L, -1) == LUA_TFUNCTION)
        c->on_attempt.ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, top);
}

int acs_client_close(lua_State *L, acs_client *c)
{
    c->closed = 1;
    if (c->calls == 0)
        release(L, c);
    return 0;
}

static int l_tostring(lua_State *L)
{
    acs_client *c = luaL_checkudata(L, 1, ACS_CLIENT_MT);
    static const char *const names[] = {"none", "token", "access key",
                                        "token provider", "credential"};
    if (c->closed)
        lua_pushfstring(L, "acscall.client (closed): %p", (void *)c);
    else
        lua_pushfstring(L, "acscall.client (%s, %s auth): %p", c->route.origin,
                        names[c->cred.kind], (void *)c);
    return 1;
}

/* A call id at stack index idx: a non-empty string of at most ACS_ID_MAX
 * bytes, else a programmer mistake (raises). */
const char *acs_client_check_id(lua_State *L, int idx, size_t *len)
{
    const char *id;
    if (lua_type(L, idx) != LUA_TSTRING)
        acs_raise(L, "acscall: a call id must be a string, got %s",
                  luaL_typename(L, idx));
    id = lua_tolstring(L, idx, len);
    if (*len == 0 || *len > ACS_ID_MAX)
        acs_raise(L, "acscall: a call id must be 1 to %d bytes", ACS_ID_MAX);
    return id;
}

/* A fresh x-ms-client-request-id from the client's pool of random bytes
 * (RAND_bytes in bulk: one call per 32 ids). The pool is dropped in a
 * forked child (nginx workers fork after init_by_lua), so two processes
 * never send the same id. 0 or -1. */
int acs_client_request_id(acs_client *c, char out[37])
{
    if (c->rnd_left < 16 || c->rnd_pid != c->pool.pid) {
        if (RAND_bytes(c->rnd, sizeof c->rnd) != 1)
            return -1;
        c->rnd_left = sizeof c->rnd;
        c->rnd_pid = c->pool.pid; /* acs_client_enter brought it up to date */
    }
    c->rnd_left -= 16;
    acs_uuid4_format(c->rnd + c->rnd_left, out);
    OPENSSL_cleanse(c->rnd + c->rnd_left, 16);
    return 0;
}

/* the secrets in play: the token sent, the access key */
void acs_client_meta(const acs_client *c, const char *bearer, acs_resp_meta *m)
{
    static const size_t prefix = sizeof "Authorization: Bearer " - 1;
    const char *tok = bearer ? bearer
                      : c->cred.token_line ? c->cred.token_line + prefix : NULL;
    m->decoder_ref = c->decoder_ref;
    m->strict = c->strict;
    m->nsecrets = 0;
    if (tok) {
        m->secrets[m->nsecrets].p = tok;
        m->secrets[m->nsecrets++].len = strlen(tok);
    }
    if (c->cred.key_text) {
        m->secrets[m->nsecrets].p = c->cred.key_text;
        m->secrets[m->nsecrets++].len = strlen(c->cred.key_text);
    }
}

/* lua.c and luajit raise "interrupted!" from their SIGINT hook. */
int acs_is_interruption(lua_State *L, int idx)
{
    size_t len;
    const char *s;
    if (lua_type(L, idx) != LUA_TSTRING)
        return 0;
    s = lua_tolstring(L, idx, &len);
    return len >= 12 && memcmp(s + len - 12, "interrupted!", 12) == 0;
}

/* The token pushed on top (a string): NULL, or why it is not one. */
static const char *check_token(lua_State *L, const char *who, const char **bearer)
{
    size_t len;
    const char *tok;
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pushfstring(L, "%s did not return a string", who);
        lua_replace(L, -2);
        return lua_tostring(L, -1);
    }
    tok = lua_tolstring(L, -1, &len);
    if (len == 0 || acs_header_value_check(tok, len) != NULL) {
        lua_pushfstring(L, "%s returned an empty token or one with "
                        ACS_CONTROL_CHARS, who);
        lua_replace(L, -2);
        return lua_tostring(L, -1);
    }
    *bearer = tok;
    return NULL;
}

/* A credential's expires_on at idx (nil: not given, accepted): NULL, or
 * why the token is refused: an expiry in the past hands out a token the
 * service refuses (acs_client_bearer asks once more with force_refresh
 * first), and inf, NaN or one absurdly far ahead (ACS_TOKEN_LIFETIME_MAX_S)
 * says the credential's answer is broken. */
static const char expired[] = "the token it returned has already expired";

static const char *check_expiry(lua_State *L, int idx)
{
    lua_Number e, now = (lua_Number)time(NULL);
    if (lua_isnil(L, idx))
        return NULL;
    if (!lua_isnumber(L, idx)) /* (a numeric string is taken as a number) */
        return "its expires_on is not a number";
    e = lua_tonumber(L, idx);
    if (e != e || e - e != 0) /* NaN, inf */
        return "its expires_on is not a finite number";
    if (e < now) /* (whole seconds: a token of this second may still live) */
        return expired;
    if (e > now + (lua_Number)ACS_TOKEN_LIFETIME_MAX_S)
        return "its expires_on is absurdly far ahead";
    return NULL;
}

/* cred:get_token([{force_refresh = true}]) -> token, expires_on | nil,
 * message (the info's message when it gave one); run under
 * lua_pcall (the object's __index and the method are user code).
 * 1 the credential, 2 force */
static int get_token_call(lua_State *L)
{
    int force = lua_toboolean(L, 2);
    lua_settop(L, 1);
    lua_getfield(L, 1, "get_token");
    lua_pushvalue(L, 1);
    if (force) {
        lua_createtable(L, 0, 1);
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "force_refresh");
    }
    lua_call(L, force ? 2 : 1, 3);
    /* nil, message, info (core.failure's): info.message is the text
     * without the kind, which the call's own failure adds again */
    if (lua_isnil(L, -3) && lua_type(L, -1) == LUA_TTABLE) {
        lua_getfield(L, -1, "message");
        if (lua_type(L, -1) == LUA_TSTRING)
            lua_replace(L, -3);
        else
            lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 2;
}

const char *acs_client_bearer(lua_State *L, acs_client *c, int force,
                              const char **bearer)
{
    int st;
    const char *why;
    const char *who = c->cred.kind == ACS_AUTH_PROVIDER ? "token_provider"
                                                        : "credential";
    *bearer = NULL;
    if (c->cred.kind != ACS_AUTH_PROVIDER && c->cred.kind != ACS_AUTH_CREDENTIAL) {
        lua_pushnil(L);
        return NULL;
    }
    if (c->cred.kind == ACS_AUTH_PROVIDER) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->provider_ref);
        st = lua_pcall(L, 0, 1, 0);
    } else {
        lua_pushcfunction(L, get_token_call);
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->provider_ref);
        lua_pushboolean(L, force);
        st = lua_pcall(L, 2, 2, 0);
        if (st == 0) {
            if (lua_isnil(L, -2)) { /* nil, message: the credential's words */
                size_t mlen = 0;
                const char *m = lua_type(L, -1) == LUA_TSTRING
                                    ? lua_tolstring(L, -1, &mlen) : NULL;
                if (m) { /* credentials redact their own; a bearer value too */
                    acs_push_redacted(L, m, mlen, NULL, 0);
                    lua_replace(L, -2);
                    m = lua_tostring(L, -1);
                }
                lua_pushfstring(L, "credential: %s",
                                m ? m : "no token (and no message)");
                lua_replace(L, -3);
                lua_pop(L, 1);
                return lua_tostring(L, -1);
            }
            if ((why = check_expiry(L, -1)) != NULL) { /* token, expires_on */
                lua_pop(L, 2);
                if (!force && why == expired) /* a stale cache: ask anew, once */
                    return acs_client_bearer(L, c, 1, bearer);
                lua_pushfstring(L, "credential: %s", why);
                return lua_tostring(L, -1);
            }
            lua_pop(L, 1);
        }
    }
    if (st != 0) {
        if (acs_is_interruption(L, -1))
            lua_error(L); /* Ctrl-C: not the provider's failure */
        /* its own error text may say anything: do not echo it */
        lua_pop(L, 1);
        lua_pushfstring(L, "%s raised an error", who);
        return lua_tostring(L, -1);
    }
    return check_token(L, who, bearer);
}

#define NEW "acscall.new"

/* core.new(opts) -> client. Every mistake here is the programmer's: raise. */
static int l_new(lua_State *L)
{
    acs_client *c;
    size_t eplen = 0, cslen = 0, keylen = 0, toklen = 0;
    const char *endpoint, *cs, *key, *token, *api, *err;
    acs_span cs_ep = {NULL, 0}, cs_key = {NULL, 0};
    int has_provider, has_credential, n_auth, provider_idx;
    char tag[128];

    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L, NEW ": options table expected, got %s",
                          luaL_typename(L, 1));
    lua_settop(L, 1);
    acs_options_check(L, 1, acs_new_options, NEW);
    endpoint = acs_opt_string(L, NEW, "endpoint", &eplen);
    cs = acs_opt_string(L, NEW, "connection_string", &cslen);
    key = acs_opt_string(L, NEW, "access_key", &keylen);
    token = acs_opt_string(L, NEW, "token", &toklen);
    api = acs_opt_string(L, NEW, "api_version", NULL);
    lua_getfield(L, 1, "token_provider"); /* stays at provider_idx */
    provider_idx = lua_gettop(L);
    has_provider = !lua_isnil(L, -1);
    if (has_provider && lua_type(L, -1) != LUA_TFUNCTION)
        return luaL_error(L, "acscall.new: option 'token_provider' must be a function");
    lua_getfield(L, 1, "credential"); /* stays at provider_idx + 1 */
    has_credential = !lua_isnil(L, -1);
    if (has_credential) {
        int t = lua_type(L, -1);
        if (t == LUA_TTABLE || t == LUA_TUSERDATA)
            lua_getfield(L, -1, "get_token");
        else
            lua_pushnil(L);
        if (lua_type(L, -1) != LUA_TFUNCTION)
            return luaL_error(L, "acscall.new: option 'credential' must be an object "
                              "with a get_token method");
        lua_pop(L, 1);
    }

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
    n_auth = (key != NULL) + (token != NULL) + has_provider + has_credential;
    if (n_auth == 0)
        return luaL_error(L, "acscall.new: missing credentials: give 'token', "
                      "'access_key', 'connection_string', 'token_provider' or "
                      "'credential'");
    if (n_auth > 1)
        return luaL_error(L, "acscall.new: give exactly one of 'token', 'access_key' "
                      "(or a connection string), 'token_provider' and 'credential'");
    if (token && (toklen == 0 || acs_header_value_check(token, toklen)))
        return luaL_error(L, "acscall.new: 'token' must be non-empty, without "
                      ACS_CONTROL_CHARS);
    if (key && acs_header_value_check(key, keylen))
        return luaL_error(L, "acscall.new: '%s' %s",
                          cs ? "connection_string" : "access_key",
                          acs_header_value_check(key, keylen));
    if (api && (api[0] == '\0' || strlen(api) > ACS_API_VERSION_MAX))
        return luaL_error(L, NEW ": 'api_version' must be 1 to %d bytes",
                          ACS_API_VERSION_MAX);

    c = acs_client_push(L, ACS_CLIENT_MT);

    if ((err = acs_route_init(&c->route, endpoint,
                              api ? api : ACS_DEFAULT_API_VERSION)) != NULL)
        return luaL_error(L, "acscall.new: %s", err);
    if (key) {
        unsigned char kbuf[ACS_KEY_MAX];
        size_t kbuflen;
        err = acs_key_decode(key, keylen, kbuf, &kbuflen);
        if (err == NULL && (c->cred.signer = acs_signer_new(kbuf, kbuflen)) == NULL)
            err = "cannot key HMAC-SHA256 (libcrypto)";
        OPENSSL_cleanse(kbuf, sizeof kbuf);
        if (err == NULL && (c->cred.key_text = acs_secret_dup("", key, keylen)) == NULL)
            err = "out of memory";
        if (err)
            return luaL_error(L, "acscall.new: %s", err);
        c->cred.kind = ACS_AUTH_HMAC;
    } else if (token) {
        c->cred.token_line = acs_secret_dup("Authorization: Bearer ", token, toklen);
        if (c->cred.token_line == NULL)
            return luaL_error(L, "acscall.new: out of memory");
        c->cred.kind = ACS_AUTH_TOKEN;
    } else if (has_provider) {
        lua_pushvalue(L, provider_idx); /* the function checked above */
        c->provider_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        c->cred.kind = ACS_AUTH_PROVIDER;
    } else {
        lua_pushvalue(L, provider_idx + 1); /* the object checked above */
        c->provider_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        c->cred.kind = ACS_AUTH_CREDENTIAL;
    }

    /* User-Agent: acscall/<v> Lua/<x.y> libcurl/<v> [suffix] */
    snprintf(tag, sizeof tag, "Lua/%s libcurl/%s", LUA_VERSION + 4, /* "Lua 5.4" */
             curl_version_info(CURLVERSION_NOW)->version);
    acs_client_setup(L, c, NEW, tag, ACS_DEFAULT_MAX_BODY);
    if ((err = acs_route_set_agent(&c->route, c->ua)) != NULL)
        return luaL_error(L, "acscall.new: %s", err);
    c->strict = acs_opt_bool(L, NEW, "strict", 0);
    lua_getfield(L, 1, "max_depth");
    if (!lua_isnil(L, -1)) {
        lua_Number d = lua_tonumber(L, -1);
        /* range first: casting NaN or a huge double to int is undefined */
        if (lua_type(L, -1) != LUA_TNUMBER ||
            !(d >= ACS_MAX_DEPTH_MIN && d <= ACS_MAX_DEPTH_MAX) || d != (int)d)
            return luaL_error(L, NEW ": 'max_depth' must be an integer in [%d, %d]",
                              ACS_MAX_DEPTH_MIN, ACS_MAX_DEPTH_MAX);
        if ((int)d != ACS_DEFAULT_MAX_DEPTH)
            c->decoder_ref = acs_decode_new_decoder(L, (int)d);
    }
    lua_pop(L, 1);
    return 1;
}

void acs_client_methods(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", l_gc},
        {"__close", l_close},
        {"__tostring", l_tostring},
        {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"close", l_close},
        {NULL, NULL}};
    lua_pushvalue(L, -2);
    acs_setfuncs(L, meta);
    lua_pop(L, 1);
    acs_setfuncs(L, methods);
}

void acs_client_open(lua_State *L)
{
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "new");
}
