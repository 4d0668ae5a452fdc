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
        if (meta->has_retry_after) { /* seconds, as every other wait */
            lua_pushnumber(L, (lua_Number)meta->retry_after_ms / 1000);
            lua_setfield(L, info, "retry_after");
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


/* ---------- redaction --------------------------------------------------
 * One procedure, for every path (error bodies, core.failure's text,
 * core.redact for the Lua layers). A secret is found in any mix of these
 * spellings of its bytes: literal; percent-encoded (%XX in either hex
 * case, '+' for a space: application/x-www-form-urlencoded, WHATWG URL
 * Standard section 5); JSON-escaped (RFC 8259 section 7: \/ \\ \" \n \r
 * \t \b \f and \uXXXX); and whitespace-folded (a run of spaces or control
 * bytes in the secret matches any run of them in the text, as a
 * one-line message folds them). The secret's own leading and trailing
 * whitespace is not part of what is searched. */

static int space_like(unsigned char c)
{
    return c <= 0x20 || c == 0x7f;
}

/* One escaped unit of text at s[j] ("%2B", "+", "\/", "\u00e9"): its
 * bytes into d (*dn of them, UTF-8 for \u); the text bytes it takes, or
 * 0 when s[j] starts no escape. */
static size_t unit_decode(const char *s, size_t len, size_t j,
                          unsigned char d[4], size_t *dn)
{
    static const char from[] = "/\\\"nrtbf", to[] = "/\\\"\n\r\t\b\f";
    const char *e;
    *dn = 1;
    if (s[j] == '+') {
        d[0] = ' ';
        return 1;
    }
    if (s[j] == '%' && j + 2 < len &&
        acs_hexval(s[j + 1]) >= 0 && acs_hexval(s[j + 2]) >= 0) {
        d[0] = (unsigned char)(acs_hexval(s[j + 1]) * 16 + acs_hexval(s[j + 2]));
        return 3;
    }
    if (s[j] != '\\' || j + 1 >= len)
        return 0;
    if (s[j + 1] != 'u') {
        if (s[j + 1] == '\0' || (e = strchr(from, s[j + 1])) == NULL)
            return 0;
        d[0] = (unsigned char)to[e - from];
        return 2;
    }
    if (j + 5 < len && acs_u_escape(s + j) >= 0) {
        unsigned cp = (unsigned)acs_u_escape(s + j);
        if (cp < 0x80) {
            d[0] = (unsigned char)cp;
        } else if (cp < 0x800) {
            d[0] = (unsigned char)(0xC0 | cp >> 6);
            d[1] = (unsigned char)(0x80 | (cp & 0x3F));
            *dn = 2;
        } else {
            d[0] = (unsigned char)(0xE0 | cp >> 12);
            d[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            d[2] = (unsigned char)(0x80 | (cp & 0x3F));
            *dn = 3;
        }
        return 6;
    }
    return 0;
}

/* 1 and *end (the text just after it) when the secret sec[k..slen) is
 * spelled at s[j..]. A literal '%' or '\' in the secret may also be the
 * start of an escape in the text: both readings are tried. */
static int spelled_at(const char *s, size_t len, size_t j, const char *sec,
                      size_t slen, size_t k, size_t *end)
{
    unsigned char d[4];
    size_t dn, u;
    while (k < slen) {
        unsigned char c = (unsigned char)sec[k];
        if (space_like(c)) { /* a run in the secret: a run in the text */
            size_t n = 0;
            while (k < slen && space_like((unsigned char)sec[k]))
                k++;
            for (;; n++) {
                if (j < len && space_like((unsigned char)s[j]))
                    j++;
                else if (j < len && (u = unit_decode(s, len, j, d, &dn)) > 0 &&
                         dn == 1 && space_like(d[0]))
                    j += u;
                else
                    break;
            }
            if (n == 0)
                return 0;
            continue;
        }
        if (j >= len)
            return 0;
        if ((unsigned char)s[j] == c) {
            if (c != '%' && c != '\\') {
                j++;
                k++;
                continue;
            }
            if (spelled_at(s, len, j + 1, sec, slen, k + 1, end))
                return 1;
        }
        u = unit_decode(s, len, j, d, &dn);
        if (u == 0 || dn > slen - k || memcmp(d, sec + k, dn) != 0)
            return 0;
        j += u;
        k += dn;
    }
    *end = j;
    return 1;
}

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

/* The end of a credential value starting at s[j] when it is at least
 * ACS_REDACT_BEARER_MIN credential characters long, else 0. */
static size_t cred_value_end(const char *s, size_t j, size_t len)
{
    size_t n, count = 0;
    while (j < len && (n = cred_len(s, j, len)) > 0) {
        j += n;
        count++;
    }
    return count >= ACS_REDACT_BEARER_MIN ? j : 0;
}

/* What to hide at s[i]: *keep bytes kept (the scheme word), then the
 * returned number of bytes replaced by "***" (0: nothing here). */
static size_t hidden_at(const char *s, size_t len, size_t i,
                        const acs_secret *secrets, int n, size_t *keep)
{
    size_t end;
    int k;
    *keep = 0;
    for (k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[i];
        unsigned char f = (unsigned char)secrets[k].p[0];
        if ((c == f || c == '%' || c == '\\' || c == '+') &&
            spelled_at(s, len, i, secrets[k].p, secrets[k].len, 0, &end))
            return end - i;
    }
    if ((s[i] == 'B' || s[i] == 'b') && acs_starts_ci(s + i, len - i, "bearer")) {
        size_t j = i + 6;
        while (j < len && (s[j] == ' ' || s[j] == '\t'))
            j++;
        if (j > i + 6 && (end = cred_value_end(s, j, len)) > 0) {
            *keep = j - i; /* "Bearer " stays */
            return end - i;
        }
    } else if ((s[i] == 'S' || s[i] == 's') &&
               acs_starts_ci(s + i, len - i, "signature=")) {
        if ((end = cred_value_end(s, i + 10, len)) > 0) {
            *keep = 10;
            return end - i;
        }
    }
    return 0;
}

int acs_secret_usable(acs_secret *sec)
{
    while (sec->len > 0 && space_like((unsigned char)sec->p[0])) {
        sec->p++;
        sec->len--;
    }
    while (sec->len > 0 && space_like((unsigned char)sec->p[sec->len - 1]))
        sec->len--;
    return sec->len >= ACS_REDACT_MIN;
}

void acs_push_redacted(lua_State *L, const char *s, size_t len,
                       const acs_secret *secrets, int n)
{
    luaL_Buffer b;
    acs_secret use[ACS_SECRETS_MAX];
    size_t i = 0, start = 0;
    int k, m = 0;
    for (k = 0; k < n && m < ACS_SECRETS_MAX; k++) {
        use[m] = secrets[k];
        if (use[m].p && acs_secret_usable(&use[m]))
            m++;
    }
    luaL_buffinit(L, &b);
    while (i < len) {
        size_t keep, skip = hidden_at(s, len, i, use, m, &keep);
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

/* The strings of the list at idx (any keys; other values skipped) as
 * secrets, at most ACS_SECRETS_MAX of the usable ones, alive while the
 * list is (more is a mistake: raises). Returns how many. */
static int read_secrets(lua_State *L, int idx, acs_secret *out)
{
    int n = 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -1) == LUA_TSTRING) {
            if (n == ACS_SECRETS_MAX)
                luaL_error(L, "acscall: at most %d secrets", ACS_SECRETS_MAX);
            out[n].p = lua_tolstring(L, -1, &out[n].len);
            if (acs_secret_usable(&out[n]))
                n++;
        }
        lua_pop(L, 1);
    }
    return n;
}

/* core.redact(text, secrets) -> text with every secret hidden */
static int l_redact(lua_State *L)
{
    acs_secret sec[ACS_SECRETS_MAX];
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    int n = lua_isnoneornil(L, 2) ? 0 : read_secrets(L, 2, sec);
    acs_push_redacted(L, text, len, sec, n);
    return 1;
}

/* core.check_header_value(value) -> true | nil, reason (util.h's rule) */
static int l_check_header_value(lua_State *L)
{
    size_t len;
    const char *v = luaL_checklstring(L, 1, &len);
    const char *why = acs_header_value_check(v, len);
    if (why == NULL) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "header value %s", why);
    return 2;
}

/* core.failure(kind, text[, fields]) -> nil, message, info
 * fields: status, attempts, timeout, request_id, client_request_id, code
 * (any may be nil) and secrets (a list: hidden from the text). An unknown
 * kind is a programmer mistake (raises). */
static int l_failure(lua_State *L)
{
    acs_resp_meta meta;
    acs_secret sec[ACS_SECRETS_MAX];
    const char *kind = luaL_checkstring(L, 1);
    const char *text = luaL_optstring(L, 2, NULL);
    long status = 0;
    int nsec = 0, code = 0;
    memset(&meta, 0, sizeof meta);
    if (!acs_failure_kind_known(kind))
        return luaL_argerror(L, 1, "unknown failure kind");
    lua_settop(L, 3);
    if (!lua_isnil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "status");            /* 4 */
        lua_getfield(L, 3, "attempts");          /* 5 */
        lua_getfield(L, 3, "timeout");           /* 6 */
        lua_getfield(L, 3, "request_id");        /* 7 */
        lua_getfield(L, 3, "client_request_id"); /* 8 */
        lua_getfield(L, 3, "code");              /* 9 */
        lua_getfield(L, 3, "secrets");           /* 10 */
        if (lua_type(L, 4) == LUA_TNUMBER) {
            lua_Number n = lua_tonumber(L, 4);
            status = n >= 100 && n <= 999 ? (long)n : 0;
        }
        if (lua_type(L, 5) == LUA_TNUMBER) {
            lua_Number n = lua_tonumber(L, 5);
            meta.attempts = n >= 1 && n <= 1000 ? (int)n : 0;
        }
        meta.timeout = lua_toboolean(L, 6);
        /* strings stay alive on the stack until we return */
        meta.request_id = lua_type(L, 7) == LUA_TSTRING ? lua_tostring(L, 7) : NULL;
        meta.client_request_id = lua_type(L, 8) == LUA_TSTRING ? lua_tostring(L, 8) : NULL;
        code = lua_type(L, 9) == LUA_TSTRING ? 9 : 0;
        if (!lua_isnil(L, 10))
            nsec = read_secrets(L, 10, sec);
    }
    if (text) { /* a Lua transport may pass a server's words: redact */
        acs_push_redacted(L, text, strlen(text), sec, nsec);
        text = lua_tostring(L, -1);
    }
    acs_push_failure(L, kind, status, text, &meta);
    if (code) {
        acs_push_redacted(L, lua_tostring(L, code), acs_rawlen(L, code), sec, nsec);
        lua_setfield(L, -2, "code");
    }
    return 3;
}

void acs_failure_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"failure", l_failure},
        {"redact", l_redact},
        {"check_header_value", l_check_header_value},
        {NULL, NULL}};
    int i;
    acs_setfuncs(L, fns);
    lua_newtable(L); /* KINDS: the closed list, as a set */
    for (i = 0; kinds[i]; i++) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, kinds[i]);
    }
    lua_setfield(L, -2, "KINDS");
}
