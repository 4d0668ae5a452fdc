/* fuzz_decode_diff.c - differential libFuzzer harness: csrc/model.c against
 * fuzz/model_ref.c (the decoder before the one-walk shaping pass, symbols
 * ref_*), which is the oracle: on every input both must give the same
 * answer. Same number of results; a call table deep-equal to the oracle's
 * (every key, every value, at every depth; metatables present alike); a
 * failure with the same message and a deep-equal info table.
 *
 *   byte 0   bits 0-2: the HTTP status (statuses[]: mostly 2xx, the
 *            shaping path); bit 3: strict; bit 4: request ids in meta;
 *            bit 5: a Content-Type; bits 6-7: 01 a client decoder with
 *            max_depth 4, 10 a bearer token to redact, 11 a
 *            Content-Encoding (gzip or identity, by bit 0);
 *   the rest is the body.
 * Both the C entry (acs_decode_push, as get_call) and the Lua entry
 * (core.decode(status, body, headers, {strict}), as acscall.decode) are
 * compared. Each side decodes with its own private cjson instance. A full
 * GC runs every GC_EVERY inputs (ASan then sees any value the new walk
 * forgot to anchor). On a difference both answers are printed and the
 * harness aborts (the input is saved by libFuzzer). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "model.h"

/* fuzz/model_ref.c */
void ref_decode_init(lua_State *L, int max_depth);
int ref_decode_push(lua_State *L, long status, const char *body, size_t len,
                    const acs_resp_meta *meta);
void ref_model_open(lua_State *L);

#define GC_EVERY 64

static lua_State *L;
static lua_CFunction new_l_decode, ref_l_decode;
static int small_decoder; /* a registry ref: a cjson instance with max_depth 4 */
static unsigned long iterations;

static const char cpath_setup[] =
    "package.cpath = '/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;' .. package.cpath\n";

static const long statuses[] = {200, 200, 201, 200, 204, 404, 200, 502};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = luaL_newstate();
    if (L == NULL)
        abort();
    luaL_openlibs(L);
    if (luaL_dostring(L, cpath_setup) != LUA_OK) {
        fprintf(stderr, "fuzz_decode_diff: %s\n", lua_tostring(L, -1));
        abort();
    }
    acs_decode_init(L, ACS_DEFAULT_MAX_DEPTH); /* raises if cjson is missing */
    ref_decode_init(L, ACS_DEFAULT_MAX_DEPTH);
    small_decoder = acs_decode_new_decoder(L, 4);
    lua_newtable(L);
    acs_model_open(L);
    lua_getfield(L, -1, "decode");
    new_l_decode = lua_tocfunction(L, -1);
    lua_newtable(L);
    ref_model_open(L);
    lua_getfield(L, -1, "decode");
    ref_l_decode = lua_tocfunction(L, -1);
    lua_settop(L, 0);
    return 0;
}

/* ------------------------------------------------------------------ */
/* printing, for the report of a difference */

static void dump(int idx, int depth)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TTABLE:
        if (depth > 40) {
            fputs("{...}", stderr);
            return;
        }
        luaL_checkstack(L, 4, "dump");
        if (lua_getmetatable(L, idx)) {
            fputs("<mt>", stderr);
            lua_pop(L, 1);
        }
        fputc('{', stderr);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            dump(-2, depth + 1);
            fputs("=", stderr);
            dump(-1, depth + 1);
            fputs(", ", stderr);
            lua_pop(L, 1);
        }
        fputs("}", stderr);
        return;
    case LUA_TSTRING: {
        size_t n, i;
        const char *s = lua_tolstring(L, idx, &n);
        fputc('"', stderr);
        for (i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
                fprintf(stderr, "\\x%02x", ch);
            else
                fputc(ch, stderr);
        }
        fputc('"', stderr);
        return;
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            fprintf(stderr, "%lld", (long long)lua_tointeger(L, idx));
        else
            fprintf(stderr, "%.17g", lua_tonumber(L, idx));
        return;
    case LUA_TBOOLEAN:
        fputs(lua_toboolean(L, idx) ? "true" : "false", stderr);
        return;
    case LUA_TLIGHTUSERDATA:
        fputs("null", stderr);
        return;
    default:
        fputs(luaL_typename(L, idx), stderr);
        return;
    }
}

/* ------------------------------------------------------------------ */
/* deep equality */

static int count_keys(int t)
{
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        n++;
        lua_pop(L, 1);
    }
    return n;
}

/* values at a and b: same type, same value; tables: same keys (cjson and
 * the model only use string and integer keys), deep-equal values, a
 * metatable on both or on neither */
static int deep_eq(int a, int b, int depth)
{
    int ok = 1, ma, mb;
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    if (lua_type(L, a) != lua_type(L, b))
        return 0;
    if (lua_type(L, a) != LUA_TTABLE) {
        if (lua_type(L, a) == LUA_TNUMBER && lua_isinteger(L, a) != lua_isinteger(L, b))
            return 0; /* 1 and 1.0 are rawequal but print differently */
        return lua_rawequal(L, a, b);
    }
    if (depth > 200)
        abort(); /* deeper than cjson's limit: something looped */
    luaL_checkstack(L, 6, "deep_eq");
    ma = lua_getmetatable(L, a);
    mb = lua_getmetatable(L, b);
    lua_pop(L, ma + mb);
    if (ma != mb)
        return 0;
    if (count_keys(a) != count_keys(b))
        return 0;
    lua_pushnil(L);
    while (ok && lua_next(L, a)) {
        lua_pushvalue(L, -2);
        lua_rawget(L, b);
        ok = deep_eq(-2, -1, depth + 1);
        lua_pop(L, 2);
    }
    if (!ok)
        lua_pop(L, 1); /* the key lua_next left */
    return ok;
}

static void differ(const char *where, const uint8_t *data, size_t size, int a,
                   int na, int b, int nb)
{
    int i;
    fprintf(stderr, "fuzz_decode_diff: %s: the new decoder and the oracle differ\n"
                    "  selector 0x%02x, body (%zu bytes): ", where,
            size ? data[0] : 0, size ? size - 1 : 0);
    fwrite(data + (size ? 1 : 0), 1, size ? size - 1 : 0, stderr);
    fprintf(stderr, "\n  new (%d):", na);
    for (i = 0; i < na; i++) {
        fputc(' ', stderr);
        dump(a + i, 0);
    }
    fprintf(stderr, "\n  ref (%d):", nb);
    for (i = 0; i < nb; i++) {
        fputc(' ', stderr);
        dump(b + i, 0);
    }
    fputc('\n', stderr);
    abort();
}

/* the na results from a and the nb from b */
static void compare(const char *where, const uint8_t *data, size_t size, int a,
                    int na, int b, int nb)
{
    int i;
    if (na != nb)
        differ(where, data, size, a, na, b, nb);
    for (i = 0; i < na; i++)
        if (!deep_eq(a + i, b + i, 0))
            differ(where, data, size, a, na, b, nb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    acs_resp_meta meta;
    const char *body;
    size_t len;
    long status;
    int a, na, b, nb;
    unsigned sel;

    if (size < 1)
        return 0;
    sel = data[0];
    status = statuses[sel & 7];
    body = (const char *)data + 1;
    len = size - 1;

    memset(&meta, 0, sizeof meta);
    meta.strict = (sel & 8) != 0;
    if (sel & 0x10) {
        meta.request_id = "req-0000";
        meta.client_request_id = "client-0000";
    }
    if (sel & 0x20)
        meta.content_type = "application/json";
    switch (sel >> 6) {
    case 1: meta.decoder_ref = small_decoder; break;
    case 2:
        meta.secrets[0].p = "c2VjcmV0LXRva2Vu";
        meta.secrets[0].len = 16;
        meta.nsecrets = 1;
        break;
    case 3: meta.content_encoding = (sel & 1) ? "gzip" : "identity"; break;
    default: break;
    }

    /* 1. the C entry, as get_call uses it */
    lua_settop(L, 0);
    na = acs_decode_push(L, status, len ? body : NULL, len, &meta);
    a = 1;
    if (lua_gettop(L) != na)
        abort();
    b = na + 1;
    nb = ref_decode_push(L, status, len ? body : NULL, len, &meta);
    if (lua_gettop(L) != na + nb)
        abort();
    compare("acs_decode_push", data, size, a, na, b, nb);
    lua_settop(L, 0);

    /* 2. the Lua entry core.decode(status, body, headers, opts) */
    {
        int k;
        lua_CFunction fns[2];
        fns[0] = new_l_decode;
        fns[1] = ref_l_decode;
        for (k = 0; k < 2; k++) {
            lua_pushcfunction(L, fns[k]);
            lua_pushinteger(L, status);
            lua_pushlstring(L, body, len);
            lua_createtable(L, 0, 3);
            lua_pushliteral(L, "rid");
            lua_setfield(L, -2, (sel & 0x10) ? "X-MS-Request-Id" : "x-ms-request-id");
            if (sel & 0x20) {
                lua_pushliteral(L, "application/json");
                lua_setfield(L, -2, "Content-Type");
            }
            lua_createtable(L, 0, 1);
            lua_pushboolean(L, meta.strict);
            lua_setfield(L, -2, "strict");
            if (k == 0) {
                if (lua_pcall(L, 4, LUA_MULTRET, 0) != LUA_OK)
                    abort();
                na = lua_gettop(L);
            } else {
                if (lua_pcall(L, 4, LUA_MULTRET, 0) != LUA_OK)
                    abort();
                nb = lua_gettop(L) - na;
            }
        }
        compare("core.decode", data, size, 1, na, na + 1, nb);
    }
    lua_settop(L, 0);

    if (++iterations % GC_EVERY == 0)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
