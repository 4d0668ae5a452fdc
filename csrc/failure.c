/* failure.c - the `nil, message, info` contract (see failure.h). */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "compat.h"
#include "failure.h"
#include "util.h"

static const char *const kinds[] = {"transport", "http", "decode", "auth",
                                    "local", "thread", NULL};

int acs_failure_kind_known(const char *kind)
{
    int i;
    for (i = 0; kinds[i]; i++)
        if (strcmp(kinds[i], kind) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* one-line message buffer: control characters and whitespace runs become one
 * space, leading/trailing space trimmed, capped at cap bytes on a UTF-8
 * boundary with "..." marking the cut. */

void acs_mb_init(acs_msgbuf *m, size_t cap)
{
    m->n = 0;
    m->cap = cap > ACS_MSG_CAP ? ACS_MSG_CAP : cap;
    m->space = 0;
    m->full = 0;
}

void acs_mb_add(acs_msgbuf *m, const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len && !m->full; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f) {
            if (m->n > 0)
                m->space = 1;
            continue;
        }
        if (m->n + (size_t)m->space + 1 > m->cap - 3) {
            m->full = 1;
            break;
        }
        if (m->space) {
            m->b[m->n++] = ' ';
            m->space = 0;
        }
        m->b[m->n++] = (char)c;
    }
}

void acs_mb_str(acs_msgbuf *m, const char *s)
{
    acs_mb_add(m, s, strlen(s));
}

/* a literal separator: kept as is (its spaces are not collapsed away) */
void acs_mb_sep(acs_msgbuf *m, const char *s)
{
    size_t l = strlen(s);
    if (m->full)
        return;
    if (m->n + l > m->cap - 3) {
        m->full = 1;
        return;
    }
    memcpy(m->b + m->n, s, l);
    m->n += l;
    m->space = 0;
}

void acs_mb_finish(acs_msgbuf *m)
{
    if (m->full) {
        /* drop an incomplete UTF-8 sequence at the cut */
        size_t i = m->n, k = 0;
        while (i > 0 && k < 3 && ((unsigned char)m->b[i - 1] & 0xC0) == 0x80) {
            i--;
            k++;
        }
        if (i > 0 && (unsigned char)m->b[i - 1] >= 0xC0) {
            unsigned char lead = (unsigned char)m->b[i - 1];
            size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
            if (k + 1 < need)
                m->n = i - 1;
        }
        while (m->n > 0 && m->b[m->n - 1] == ' ')
            m->n--;
        memcpy(m->b + m->n, "...", 3);
        m->n += 3;
    }
    while (m->n > 0 && m->b[m->n - 1] == ' ')
        m->n--;
    m->b[m->n] = '\0';
}

static void set_str(lua_State *L, int t, const char *k, const char *v)
{
    if (v) {
        lua_pushstring(L, v);
        lua_setfield(L, t, k);
    }
}

/* info table with kind and what meta and status tell; left on the stack */
int acs_failure_push_info(lua_State *L, const char *kind, long status,
                     const acs_resp_meta *meta)
{
    int info;
    lua_createtable(L, 0, 8);
    info = lua_gettop(L);
    set_str(L, info, "kind", kind);
    if (status > 0) {
        acs_pushint(L, status);
        lua_setfield(L, info, "status");
    }
    if (meta) {
        set_str(L, info, "request_id",
                meta->request_id ? meta->request_id : meta->client_request_id);
        set_str(L, info, "client_request_id", meta->client_request_id);
        if (meta->attempts > 0) {
            acs_pushint(L, meta->attempts);
            lua_setfield(L, info, "attempts");
        }
        if (meta->timeout) {
            lua_pushboolean(L, 1);
            lua_setfield(L, info, "timeout");
        }
    }
    return info;
}

/* nil, message, info from the info table at top and the message buffer */
int acs_failure_finish(lua_State *L, acs_msgbuf *m)
{
    acs_mb_finish(m);
    lua_pushnil(L);
    lua_pushlstring(L, m->b, m->n);
    lua_pushvalue(L, -3);
    lua_remove(L, -4);
    return 3;
}

void acs_mb_http(acs_msgbuf *m, long status)
{
    char num[32];
    snprintf(num, sizeof num, "HTTP %ld", status);
    acs_mb_sep(m, num);
}

int acs_push_failure(lua_State *L, const char *kind, long status,
                     const char *message, const acs_resp_meta *meta)
{
    acs_msgbuf m;
    int info;
    if (kind == NULL)
        kind = "error";
    info = acs_failure_push_info(L, kind, status, meta);
    set_str(L, info, "message", message);
    acs_mb_init(&m, ACS_MSG_CAP);
    if (strcmp(kind, "http") == 0 && status > 0)
        acs_mb_http(&m, status);
    else
        acs_mb_str(&m, kind);
    if (message && *message) {
        acs_mb_sep(&m, ": ");
        acs_mb_str(&m, message);
    }
    return acs_failure_finish(L, &m);
}


/* ---------- redaction -------------------------------------------------- */

/* characters of a token68 credential (RFC 7235) and of base64 */
static int cred_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~' || c == '+' || c == '/' || c == '=' || c == '%';
}

/* The length of the credential character at s[j] (0: none): one byte, or
 * two for "\/", the JSON escape of '/' (cjson.encode writes it), since an
 * error body is redacted before it is decoded. */
static size_t cred_len(const char *s, size_t j, size_t len)
{
    if (cred_char(s[j]))
        return 1;
    return s[j] == '\\' && j + 1 < len && s[j + 1] == '/' ? 2 : 0;
}

void acs_push_redacted(lua_State *L, const char *s, size_t len,
                       const char *secret)
{
    luaL_Buffer b;
    size_t i = 0, start = 0, slen = secret ? strlen(secret) : 0;
    if (slen < 8)
        slen = 0;
    luaL_buffinit(L, &b);
    while (i < len) {
        size_t skip = 0, keep = 0;
        if (slen && secret && s[i] == secret[0] && len - i >= slen &&
            memcmp(s + i, secret, slen) == 0) {
            skip = slen;
        } else if ((s[i] == 'B' || s[i] == 'b') && acs_starts_ci(s + i, len - i, "bearer")) {
            size_t j = i + 6;
            while (j < len && (s[j] == ' ' || s[j] == '\t'))
                j++;
            if (j > i + 6 && j < len && cred_len(s, j, len)) {
                size_t n;
                keep = j - i; /* "Bearer " stays */
                while (j < len && (n = cred_len(s, j, len)) > 0)
                    j += n;
                skip = j - i;
            }
        } else if ((s[i] == 'S' || s[i] == 's') &&
                   acs_starts_ci(s + i, len - i, "signature=")) {
            size_t j = i + 10, n;
            keep = 10;
            while (j < len && (n = cred_len(s, j, len)) > 0)
                j += n;
            skip = j > i + 10 ? j - i : 0;
        }
        if (skip == 0) {
            i++;
            continue;
        }
        luaL_addlstring(&b, s + start, i + keep - start);
        luaL_addstring(&b, "***");
        i += skip;
        start = i;
    }
    luaL_addlstring(&b, s + start, len - start);
    luaL_pushresult(&b);
}

/* core.failure(kind, text[, fields]) -> nil, message, info
 * fields: status, attempts, timeout, request_id, client_request_id (any
 * may be nil). An unknown kind is a programmer mistake (raises). */
static int l_failure(lua_State *L)
{
    acs_resp_meta meta;
    const char *kind = luaL_checkstring(L, 1);
    const char *text = luaL_optstring(L, 2, NULL);
    long status = 0;
    memset(&meta, 0, sizeof meta);
    if (!acs_failure_kind_known(kind))
        return luaL_argerror(L, 1, "unknown failure kind");
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "status");
        lua_getfield(L, 3, "attempts");
        lua_getfield(L, 3, "timeout");
        lua_getfield(L, 3, "request_id");
        lua_getfield(L, 3, "client_request_id");
        if (lua_type(L, -5) == LUA_TNUMBER) {
            lua_Number n = lua_tonumber(L, -5);
            status = n >= 100 && n <= 999 ? (long)n : 0;
        }
        if (lua_type(L, -4) == LUA_TNUMBER) {
            lua_Number n = lua_tonumber(L, -4);
            meta.attempts = n >= 1 && n <= 1000 ? (int)n : 0;
        }
        meta.timeout = lua_toboolean(L, -3);
        /* strings stay alive on the stack until we return */
        meta.request_id = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        meta.client_request_id = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    }
    if (text) { /* a Lua transport may pass a server's words: redact */
        acs_push_redacted(L, text, strlen(text), NULL);
        text = lua_tostring(L, -1);
    }
    return acs_push_failure(L, kind, status, text, &meta);
}

void acs_failure_open(lua_State *L)
{
    int i;
    lua_pushcfunction(L, l_failure);
    lua_setfield(L, -2, "failure");
    lua_newtable(L); /* KINDS: the closed list, as a set */
    for (i = 0; kinds[i]; i++) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, kinds[i]);
    }
    lua_setfield(L, -2, "KINDS");
}
