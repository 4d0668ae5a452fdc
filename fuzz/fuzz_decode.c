/* fuzz_decode.c - libFuzzer harness for the decode path (csrc/model.c, csrc/identifier.c, csrc/failure.c).
 *
 * Arbitrary bytes go through a real Lua 5.4 state with the module's private
 * cjson.safe instance (acs_decode_init), as get_call and acscall.decode do:
 *   byte 0   selects the HTTP status (2xx bodies are shaped into
 *            CallConnectionProperties, others read as error responses) and
 *            which response metadata is present;
 *   the rest is the body.
 * The same bytes are then fed to core.identifier_from_raw_id (as a string),
 * core.raw_id (on every table the body decodes to with plain cjson, and on
 * the shaped call's source and targets), core.decode (the Lua entry) and
 * core.call_json (csrc/tojson.c): for a body decode takes as a call, JSON
 * text that reads back deep-equal to decode's call; for any other, nil.
 *
 * Checked besides memory safety (ASan) and UB (UBSan): the documented
 * contract of model.h / failure.h / README "The result" and "Errors":
 *   - 1 result (a table) or 3 (nil, message, info table with a string kind);
 *   - the message is one line, no control characters, at most ~300 bytes;
 *   - no cjson.null (a lightuserdata) anywhere in a successful result;
 *   - the Lua stack is balanced.
 * A full GC runs every GC_EVERY inputs so a dangling reference into a freed
 * table or string is caught by ASan's quarantine. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "identifier.h"
#include "tojson.h"
#include "model.h"

#define GC_EVERY 64
#define MSG_MAX 310 /* failure.h ACS_MSG_CAP (300) + "..." + slack */

static lua_State *L;
static lua_CFunction l_decode, l_raw_id, l_identifier_from_raw_id;
static unsigned long iterations;
/* the input is valid UTF-8 without JSON escapes: messages must be too (they
 * are cut on UTF-8 boundaries, failure.h) */
static int expect_utf8;

/* strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF) */
static int is_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], need, cp, k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) need = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) need = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) need = 3, cp = c & 0x07;
        else return 0;
        if (i + need >= n)
            return 0;
        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += need + 1;
    }
    return 1;
}

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_decode: contract violated: %s\n", what);
    abort();
}

/* Debian installs lua-cjson for 5.4 here; also honour LUA_CPATH if set. */
static const char cpath_setup[] =
    "package.cpath = '/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;' .. package.cpath\n"
    "plain = require('cjson.safe').new()\n"
    "plain.decode_max_depth(64)\n"
    /* call_json's text against decode's call (spec/77's rule) */
    "local function deq(a, b)\n"
    "  if a ~= a and b ~= b then return true end\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not deq(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function check_call_json(decode, call_json, body)\n"
    "  local call = decode(200, body)\n"
    "  local text = call_json(body)\n"
    "  if not call then return text == nil or 'a text for what decode refuses' end\n"
    "  if type(text) ~= 'string' then return 'no text for a call' end\n"
    "  local back = plain.decode(text)\n"
    "  if back == nil then return 'not JSON: ' .. text:sub(1, 200) end\n"
    "  return deq(call, back) or 'differs from decode: ' .. text:sub(1, 200)\n"
    "end\n";

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
        fprintf(stderr, "fuzz_decode: %s\n", lua_tostring(L, -1));
        abort();
    }
    acs_decode_init(L, ACS_DEFAULT_MAX_DEPTH); /* raises if cjson is missing */
    /* the entry points as the module registers them */
    lua_newtable(L);
    acs_model_open(L);
    acs_identifier_open(L);
    lua_getfield(L, -1, "decode");
    l_decode = lua_tocfunction(L, -1);
    lua_getfield(L, -2, "raw_id");
    l_raw_id = lua_tocfunction(L, -1);
    lua_getfield(L, -3, "identifier_from_raw_id");
    l_identifier_from_raw_id = lua_tocfunction(L, -1);
    lua_settop(L, 1);
    acs_tojson_open(L); /* core.call_json, a closure over ARRAY_FIELDS */
    lua_getfield(L, 1, "call_json");
    lua_setglobal(L, "call_json");
    lua_getfield(L, 1, "decode");
    lua_setglobal(L, "decode");
    lua_settop(L, 0);
    return 0;
}

static const long statuses[] = {200, 201, 204, 299, 404, 502, 429, 503,
                                500, 400, 401, 403, 408, 418, 199, 300,
                                0,   -1,  600, 999};

/* no lightuserdata (cjson.null) at any depth of the value at idx */
static void check_no_null(int idx, int depth)
{
    int t = lua_type(L, idx);
    if (t == LUA_TLIGHTUSERDATA)
        fail("cjson.null in a decoded call");
    if (t != LUA_TTABLE)
        return;
    if (depth > 200)
        fail("result nested deeper than the JSON depth limit");
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 4, "fuzz");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        check_no_null(-2, depth + 1);
        check_no_null(-1, depth + 1);
        lua_pop(L, 1);
    }
}

static void check_message(int idx)
{
    size_t n, i;
    const char *s;
    if (lua_type(L, idx) != LUA_TSTRING)
        fail("message is not a string");
    s = lua_tolstring(L, idx, &n);
    if (n == 0)
        fail("empty message");
    if (n > MSG_MAX)
        fail("message longer than the cap");
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            fail("control character in message");
    }
    if (expect_utf8 && !is_utf8((const unsigned char *)s, n))
        fail("message is not valid UTF-8 although the body is");
}

/* results of a decode at the top nres slots of the stack */
static void check_results(int base, int nres)
{
    if (lua_gettop(L) != base + nres)
        fail("stack not balanced");
    if (nres == 1) {
        if (lua_type(L, base + 1) != LUA_TTABLE)
            fail("success result is not a table");
        check_no_null(base + 1, 0);
    } else if (nres == 3) {
        if (!lua_isnil(L, base + 1))
            fail("failure without nil");
        check_message(base + 2);
        if (lua_type(L, base + 3) != LUA_TTABLE)
            fail("info is not a table");
        lua_getfield(L, base + 3, "kind");
        if (lua_type(L, -1) != LUA_TSTRING)
            fail("info.kind is not a string");
        lua_pop(L, 1);
    } else {
        fail("unexpected number of results");
    }
}

/* pcall f(value at idx); protected so a Lua error (our argument check on a
 * non-table) is not a crash; the results are discarded */
static void pcall_on(lua_CFunction f, int idx)
{
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, f);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        int t = lua_type(L, -1);
        if (f == l_raw_id && t != LUA_TSTRING && t != LUA_TNIL)
            fail("raw_id returned neither a string nor nil");
        if (f == l_identifier_from_raw_id && t != LUA_TTABLE)
            fail("identifier_from_raw_id returned no table");
    }
    lua_pop(L, 1);
}

/* raw_id on every table reachable from idx (bounded) */
static void raw_id_all(int idx, int depth, int *budget)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || depth > 70 || --*budget < 0)
        return;
    luaL_checkstack(L, 8, "fuzz");
    pcall_on(l_raw_id, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        raw_id_all(-1, depth + 1, budget);
        lua_pop(L, 1);
    }
}

static void fuzz_raw_id_and_back(const char *body, size_t len)
{
    int top = lua_gettop(L), budget = 2000;
    /* identifier_from_raw_id on the bytes, then raw_id of the result (the
     * round trip the SDKs promise for known prefixes) */
    lua_pushlstring(L, body, len);
    lua_pushcfunction(L, l_identifier_from_raw_id);
    lua_pushvalue(L, -2);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        if (lua_type(L, -1) != LUA_TTABLE)
            fail("identifier_from_raw_id returned no table");
        lua_pushcfunction(L, l_raw_id);
        lua_pushvalue(L, -2);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK)
            fail("raw_id raised on identifier_from_raw_id's result");
        if (len > 0 && !lua_rawequal(L, -1, top + 1))
            fail("raw_id(identifier_from_raw_id(s)) ~= s");
    }
    lua_settop(L, top);

    /* raw_id on whatever tables plain cjson makes of the bytes (not shaped
     * by decode: kinds, sub-objects and rawIds of any type) */
    lua_getglobal(L, "plain");
    lua_getfield(L, -1, "decode");
    lua_pushlstring(L, body, len);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK)
        raw_id_all(-1, 0, &budget);
    lua_settop(L, top);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    acs_resp_meta meta;
    const char *body;
    size_t len;
    long status;
    int base, n;
    unsigned sel;

    if (size < 1)
        return 0;
    sel = data[0];
    status = statuses[sel % (sizeof statuses / sizeof statuses[0])];
    body = (const char *)data + 1;
    len = size - 1;

    memset(&meta, 0, sizeof meta);
    if (sel & 0x20)
        meta.request_id = "req-0000";
    if (sel & 0x40)
        meta.client_request_id = "client-0000";
    if (sel & 0x80)
        meta.content_type = (sel & 1) ? "text/html" : "application/json";
    meta.attempts = (int)(sel >> 5);

    expect_utf8 = is_utf8(data + 1, len) && memchr(body, '\\', len) == NULL;

    /* 1. the C entry, as get_call uses it */
    base = lua_gettop(L);
    n = acs_decode_push(L, status, len ? body : NULL, len, &meta);
    check_results(base, n);
    if (n == 1) {
        /* the shaped identifiers: raw_id must give their rawId */
        int call = base + 1, i;
        lua_getfield(L, call, "source");
        if (lua_type(L, -1) == LUA_TTABLE)
            pcall_on(l_raw_id, -1);
        lua_pop(L, 1);
        lua_getfield(L, call, "targets");
        if (lua_type(L, -1) == LUA_TTABLE) {
            for (i = 1; i <= 300; i++) {
                if (lua_rawgeti(L, -1, i) != LUA_TTABLE) {
                    lua_pop(L, 1);
                    break;
                }
                pcall_on(l_raw_id, -1);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    lua_settop(L, 0);

    /* 2. the Lua entry core.decode(status, body, headers) */
    lua_pushcfunction(L, l_decode);
    lua_pushinteger(L, status);
    lua_pushlstring(L, body, len);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "rid");
    lua_setfield(L, -2, (sel & 2) ? "X-MS-Request-Id" : "x-ms-request-id");
    lua_pushlstring(L, body, len > 40 ? 40 : len); /* any bytes */
    lua_setfield(L, -2, "Content-Type");
    if (lua_pcall(L, 3, LUA_MULTRET, 0) != LUA_OK)
        fail("core.decode raised on a string body");
    check_results(0, lua_gettop(L));
    lua_settop(L, 0);

    /* 3. a failure with the body as its message (sanitised, capped) */
    lua_pushlstring(L, body, len); /* NUL-terminated copy, kept on the stack */
    n = acs_push_failure(L, (sel & 8) ? "transport" : "auth", status,
                         (sel & 16) ? lua_tostring(L, 1) : NULL, &meta);
    check_results(1, n);
    lua_settop(L, 0);

    /* 4. identifiers */
    fuzz_raw_id_and_back(body, len);
    lua_settop(L, 0);

    /* 5. core.call_json against decode (both Lua entries) */
    lua_getglobal(L, "check_call_json");
    lua_getglobal(L, "decode");
    lua_getglobal(L, "call_json");
    lua_pushlstring(L, body, len);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK)
        fail("call_json or decode raised on a string body");
    if (lua_type(L, -1) == LUA_TSTRING) {
        fprintf(stderr, "fuzz_decode: call_json: %s\n", lua_tostring(L, -1));
        fail("call_json's text is not decode's call");
    }
    lua_settop(L, 0);

    if (++iterations % GC_EVERY == 0)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
