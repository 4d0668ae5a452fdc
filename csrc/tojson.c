/* tojson.c - core.call_json(body): the JSON text of the call a 2xx body of
 * Get Call decodes to (tojson.h). For the OpenResty event path's answer:
 * acscall.decode + cjson.encode cost a Lua table of the whole call; here
 * one pass checks the body (RFC 8259 grammar, a strict subset of what
 * lua-cjson 2.1.0 accepts) and, when the call equals the body but for its
 * identifiers, answers the body itself with only the identifiers that
 * decode would change (no rawId, no kind) replaced - or, for one with a
 * kind and no rawId member (decode only adds rawId to it), its rawId
 * inserted after its '{'. When every identifier to shape is of that
 * last kind, their rawIds are derived from the body's text (text_fields:
 * the members the rule reads, unescaped) by identifier.c's one rule
 * (acs_raw_id_pieces); otherwise those identifiers are shaped by model.c
 * (acs_decode_push on a body holding just them). Either way the model's
 * rules stay in one place. Anything else - a null (decode strips
 * it), an "error" member, an escaped member name at the levels that
 * matter, a lone surrogate, deeper than 32 levels - goes the whole way:
 * acs_decode_push, then the table written as JSON here, known array fields
 * (core.ARRAY_FIELDS) as [] when empty. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "compat.h"
#include "identifier.h"
#include "model.h"
#include "tojson.h"

#define SCAN_DEPTH 32   /* deeper bodies take the whole way */
#define SCAN_IDENTS 256 /* identifiers to shape, at most (more: the whole way) */
#define ENC_DEPTH 64    /* ACS_DEFAULT_MAX_DEPTH: decode refuses deeper */

/* ---------------------------------------------------------------- scan */

enum { R_ANY, R_TOP, R_IDENT, R_TARGETS };

/* the identifiers decode changes, found by the scan */
typedef struct {
    size_t n;
    size_t from[SCAN_IDENTS], to[SCAN_IDENTS]; /* body[from, to): the identifier */
    /* 1: the identifier has a string kind and no rawId member, so decode
     * changes it at most by adding rawId (model.c shape_ident) */
    unsigned char add_only[SCAN_IDENTS];
} idents;

typedef struct {
    const char *s;
    size_t len, i;
    idents *ids; /* NULL: a scan that records none (text_fields) */
} scan;

static void ws(scan *sc)
{
    const char *s = sc->s;
    size_t i = sc->i, len = sc->len; /* (locals: a char read may alias sc) */
    while (i < len && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t'))
        i++;
    sc->i = i;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    int k;
    for (k = 0; k < 4; k++) {
        char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* The end of the run of plain bytes from s[i]: the first byte a JSON
 * string cannot hold as it is ('"', '\\' or a control byte, 0-31), or len.
 * Eight bytes at a time, the last word filled up with '"' (so a run that
 * reaches len ends there): the word tests (x - 0x01.. & ~x & 0x80.. flags a
 * zero byte, so q and b flag '"' and '\\'; x - 0x20.. & ~x flags a byte
 * under 0x20) flag every such byte; a borrow can flag a byte above one,
 * never below, so the lowest flag is the first such byte (read from the
 * flags on a little-endian GCC/Clang build, else by the byte loop). */
static size_t plain_run(const char *s, size_t i, size_t len)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    while (i < len) {
        uint64_t x = ones * '"', q, b, m;
        if (len - i >= 8)
            memcpy(&x, s + i, 8);
        else
            memcpy(&x, s + i, len - i);
        q = x ^ (ones * '"');
        b = x ^ (ones * '\\');
        m = (((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x)) & highs;
        if (m) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return i + (size_t)(__builtin_ctzll(m) >> 3);
#else
            break;
#endif
        }
        i += 8;
    }
    while (i < len && s[i] != '"' && s[i] != '\\' && (unsigned char)s[i] >= 0x20)
        i++;
    return i;
}

/* A string at sc->i ('"'): its raw content is s[*from, *to). *escaped: it
 * holds a backslash. 0 when malformed (or a lone surrogate: decode mends
 * those, the whole way does it). */
static int string(scan *sc, size_t *from, size_t *to, int *escaped)
{
    const char *s = sc->s;
    const size_t len = sc->len;
    size_t i = sc->i + 1;
    *escaped = 0;
    *from = i;
    while (i < len) {
        unsigned char c;
        i = plain_run(s, i, len); /* the run of bytes that need no look */
        if (i >= len)
            return 0;
        c = (unsigned char)s[i];
        if (c == '"') {
            *to = i;
            sc->i = i + 1;
            return 1;
        }
        if (c < 0x20)
            return 0;
        *escaped = 1; /* (c is '\\': plain_run stops at nothing else) */
        if (i + 1 >= len)
            return 0;
        c = (unsigned char)s[i + 1];
        if (c == 'u') {
            unsigned u, lo;
            if (i + 6 > len || !hex4(s + i + 2, &u))
                return 0;
            i += 6;
            if (u >= 0xDC00 && u <= 0xDFFF)
                return 0; /* a low surrogate alone */
            if (u >= 0xD800 && u <= 0xDBFF) { /* must pair with a low one */
                if (i + 6 > len || s[i] != '\\' || s[i + 1] != 'u' ||
                    !hex4(s + i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return 0;
                i += 6;
            }
        } else if (strchr("\"\\/bfnrt", (int)c) && c != '\0') {
            i += 2;
        } else {
            return 0;
        }
    }
    return 0;
}

static int digits(scan *sc)
{
    size_t start = sc->i;
    while (sc->i < sc->len && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9')
        sc->i++;
    return sc->i > start;
}

static int number(scan *sc)
{
    if (sc->s[sc->i] == '-')
        sc->i++;
    if (sc->i >= sc->len)
        return 0;
    if (sc->s[sc->i] == '0')
        sc->i++;
    else if (!digits(sc))
        return 0;
    if (sc->i < sc->len && sc->s[sc->i] == '.') {
        sc->i++;
        if (!digits(sc))
            return 0;
    }
    if (sc->i < sc->len && (sc->s[sc->i] == 'e' || sc->s[sc->i] == 'E')) {
        sc->i++;
        if (sc->i < sc->len && (sc->s[sc->i] == '+' || sc->s[sc->i] == '-'))
            sc->i++;
        if (!digits(sc))
            return 0;
    }
    return 1;
}

static int literal(scan *sc, const char *w)
{
    size_t n = strlen(w);
    if (sc->len - sc->i < n || memcmp(sc->s + sc->i, w, n) != 0)
        return 0;
    sc->i += n;
    return 1;
}

static int value(scan *sc, int role, int depth);

#define KEY_IS(lit) (klen == sizeof(lit) - 1 && memcmp(sc->s + kf, lit, klen) == 0)

/* An object at sc->i ('{'). R_TOP notes source and targets; R_IDENT
 * records the identifier when decode would change it. */
static int object(scan *sc, int role, int depth)
{
    size_t start = sc->i, kf, kt, klen;
    int esc, seen_source = 0, seen_targets = 0, nkind = 0, nraw = 0;
    int kind_ok = 0, raw_ok = 0;
    sc->i++;
    ws(sc);
    if (sc->i < sc->len && sc->s[sc->i] == '}') {
        sc->i++;
        goto done;
    }
    for (;;) {
        int sub = R_ANY;
        size_t vstart;
        ws(sc);
        if (sc->i >= sc->len || sc->s[sc->i] != '"' || !string(sc, &kf, &kt, &esc))
            return 0;
        klen = kt - kf;
        if (esc && (role == R_TOP || role == R_IDENT))
            return 0; /* "sou\u0072ce" is source to cjson: the whole way */
        ws(sc);
        if (sc->i >= sc->len || sc->s[sc->i] != ':')
            return 0;
        sc->i++;
        ws(sc);
        if (sc->i >= sc->len)
            return 0;
        vstart = sc->i;
        if (role == R_TOP) {
            if (KEY_IS("error"))
                return 0;
            if (KEY_IS("source")) {
                if (seen_source++)
                    return 0;
                if (sc->s[sc->i] == '{')
                    sub = R_IDENT;
            } else if (KEY_IS("targets")) {
                if (seen_targets++)
                    return 0;
                if (sc->s[sc->i] == '[')
                    sub = R_TARGETS;
            }
        }
        if (!value(sc, sub, depth + 1))
            return 0;
        if (role == R_IDENT) {
            if (KEY_IS("kind")) {
                nkind++;
                kind_ok = sc->s[vstart] == '"';
            } else if (KEY_IS("rawId")) {
                nraw++;
                /* a non-empty string, or another type (kept as sent) */
                raw_ok = sc->s[vstart] != '"' || sc->i - vstart > 2;
            }
        }
        ws(sc);
        if (sc->i < sc->len && sc->s[sc->i] == ',') {
            sc->i++;
            continue;
        }
        if (sc->i < sc->len && sc->s[sc->i] == '}') {
            sc->i++;
            break;
        }
        return 0;
    }
done:
    if (role == R_IDENT) {
        if (nkind > 1 || nraw > 1)
            return 0;
        if (!(kind_ok && raw_ok)) {
            idents *ids = sc->ids;
            if (!ids || ids->n == SCAN_IDENTS)
                return 0;
            ids->from[ids->n] = start;
            ids->to[ids->n] = sc->i;
            ids->add_only[ids->n] = kind_ok && nraw == 0;
            ids->n++;
        }
    }
    return 1;
}

static int array(scan *sc, int role, int depth)
{
    sc->i++;
    ws(sc);
    if (sc->i < sc->len && sc->s[sc->i] == ']') {
        sc->i++;
        return 1;
    }
    for (;;) {
        ws(sc);
        if (sc->i >= sc->len)
            return 0;
        if (!value(sc, role == R_TARGETS && sc->s[sc->i] == '{' ? R_IDENT : R_ANY, depth + 1))
            return 0;
        ws(sc);
        if (sc->i < sc->len && sc->s[sc->i] == ',') {
            sc->i++;
            continue;
        }
        if (sc->i < sc->len && sc->s[sc->i] == ']') {
            sc->i++;
            return 1;
        }
        return 0;
    }
}

static int value(scan *sc, int role, int depth)
{
    size_t f, t;
    int esc;
    if (depth > SCAN_DEPTH || sc->i >= sc->len)
        return 0;
    switch (sc->s[sc->i]) {
    case '{': return object(sc, role, depth);
    case '[': return array(sc, role, depth);
    case '"': return string(sc, &f, &t, &esc);
    case 't': return literal(sc, "true");
    case 'f': return literal(sc, "false");
    default: return (sc->s[sc->i] == '-' || (sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9')) && number(sc);
    }
}

/* ---------------------------------------------------------------- write */

/* A growing byte buffer in a userdata at stack slot `slot` (the collector
 * owns it: no leak if a Lua call fails midway). */
typedef struct {
    lua_State *L;
    int slot;
    char *p;
    size_t n, cap;
} out;

static void out_init(out *o, lua_State *L, size_t cap)
{
    o->L = L;
    o->p = (char *)lua_newuserdata(L, cap);
    o->slot = lua_gettop(L);
    o->n = 0;
    o->cap = cap;
}

static void out_add(out *o, const char *s, size_t n)
{
    if (o->cap - o->n < n) {
        size_t cap = o->cap * 2 + n;
        char *p = (char *)lua_newuserdata(o->L, cap);
        memcpy(p, o->p, o->n);
        lua_replace(o->L, o->slot);
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

#define out_lit(o, lit) out_add((o), lit, sizeof(lit) - 1)

static void out_string(out *o, const char *s, size_t n)
{
    size_t i, run = 0;
    out_lit(o, "\"");
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            run++;
            continue;
        }
        out_add(o, s + i - run, run);
        run = 0;
        snprintf(esc, sizeof esc, "\\u%04x", (unsigned)c);
        out_add(o, esc, 6);
    }
    out_add(o, s + n - run, run);
    out_lit(o, "\"");
}

/* Write the value at idx; arrays: the set of array field names (index).
 * key: the member name the value is under (NULL in an array). 0: a number
 * JSON cannot carry (NaN), or deeper than decode allows. */
static int write_value(out *o, int idx, int arrays, const char *key, int depth)
{
    lua_State *L = o->L;
    char num[40];
    size_t n, i;
    int first = 1, is_array;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        const char *s = lua_tolstring(L, idx, &n);
        out_string(o, s, n);
        return 1;
    }
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            out_lit(o, "true");
        else
            out_lit(o, "false");
        return 1;
    case LUA_TNUMBER: {
        lua_Number x = lua_tonumber(L, idx);
        if (x != x)
            return 0;
        if (isinf(x))
            snprintf(num, sizeof num, "%s", x > 0 ? "1e9999" : "-1e9999");
        else /* lua-cjson decodes every number as a double; %.17g reads back equal */
            snprintf(num, sizeof num, "%.17g", (double)x);
        out_add(o, num, strlen(num));
        return 1;
    }
    case LUA_TTABLE:
        break;
    default: /* cjson.null (a light userdata) */
        out_lit(o, "null");
        return 1;
    }
    if (depth > ENC_DEPTH)
        return 0;
    luaL_checkstack(L, 6, "acscall: JSON too deep");
    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    n = acs_rawlen(L, idx);
    is_array = n > 0;
    if (!is_array) {
        lua_pushnil(L);
        if (!lua_next(L, idx)) { /* empty: [] for an array field, or a table cjson marked as one */
            int marked = lua_getmetatable(L, idx);
            if (marked)
                lua_pop(L, 1);
            if (!marked && key) {
                lua_getfield(L, arrays, key);
                marked = lua_toboolean(L, -1);
                lua_pop(L, 1);
            }
            if (marked)
                out_lit(o, "[]");
            else
                out_lit(o, "{}");
            return 1;
        }
        lua_pop(L, 2);
    }
    if (is_array) {
        out_lit(o, "[");
        for (i = 1; i <= n; i++) {
            if (i > 1)
                out_lit(o, ",");
            lua_rawgeti(L, idx, (int)i);
            if (!write_value(o, lua_gettop(L), arrays, NULL, depth + 1))
                return 0;
            lua_pop(L, 1);
        }
        out_lit(o, "]");
        return 1;
    }
    out_lit(o, "{");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t kl;
        const char *k;
        if (lua_type(L, -2) != LUA_TSTRING) { /* not from a JSON object */
            lua_pop(L, 1);
            continue;
        }
        k = lua_tolstring(L, -2, &kl);
        if (!first)
            out_lit(o, ",");
        first = 0;
        out_string(o, k, kl);
        out_lit(o, ":");
        if (!write_value(o, lua_gettop(L), arrays, k, depth + 1))
            return 0;
        lua_pop(L, 1);
    }
    out_lit(o, "}");
    return 1;
}

/* ---------------------------------------------------------------- rawId from the text */

/* In an object the scan checked: the member name at sc->i, unescaped, as
 * body[*kf, *kt), and sc->i past its ':' and the blanks after; 0 for an
 * escaped name (or malformed). */
static int member_name(scan *sc, size_t *kf, size_t *kt)
{
    int esc;
    ws(sc);
    if (sc->i >= sc->len || sc->s[sc->i] != '"' || !string(sc, kf, kt, &esc) || esc)
        return 0;
    ws(sc);
    sc->i++; /* ':' */
    ws(sc);
    return 1;
}

/* After a member's value: 1 and sc->i past the ',' when another follows. */
static int next_member(scan *sc)
{
    ws(sc);
    if (sc->i < sc->len && sc->s[sc->i] == ',') {
        sc->i++;
        return 1;
    }
    return 0;
}

/* What the rawId rule (identifier.c, acs_raw_id_pieces) reads of the
 * identifier at body[from, to) - one decode would only add a rawId to (a
 * string kind, no rawId member) - read from the body's text: its kind and
 * its sub-object's members, as decode's table would hold them. 1: done
 * (*kind -1: decode adds no rawId, as for an unknown kind or a sub-object
 * that is missing or not an object); 0: not this way (an escaped string or
 * a repeated member the rule reads: decode's table tells). */
static int text_fields(const char *body, size_t from, size_t to, int *kind, acs_ident_fields *f)
{
    static const char *const names[] = {"id", "value", "userId", "appId", "resourceId",
                                        "tenantId", "cloud", "isAnonymous"};
    static const size_t lens[] = {2, 5, 6, 5, 10, 8, 5, 11};
    acs_span *dst[8];
    size_t kf, kt, vf, vt, kindf = 0, kindt = 0, sub[ACS_KIND_COUNT] = {0};
    unsigned seen = 0, nsub = 0;
    int esc, k;
    scan sc;
    memset(f, 0, sizeof *f);
    dst[0] = &f->id, dst[1] = &f->value, dst[2] = &f->user_id, dst[3] = &f->app_id;
    dst[4] = &f->resource_id, dst[5] = &f->tenant_id, dst[6] = &f->cloud, dst[7] = NULL;
    *kind = -1;
    sc.s = body;
    sc.len = to;
    sc.i = from + 1;
    sc.ids = NULL;
    do { /* the identifier (checked by the scan: members only, one kind) */
        if (!member_name(&sc, &kf, &kt))
            return 0;
        if (kt - kf == 4 && memcmp(body + kf, "kind", 4) == 0) {
            if (!string(&sc, &kindf, &kindt, &esc) || esc)
                return 0;
        } else {
            k = acs_kind_index(body + kf, kt - kf);
            if (k >= 0) {
                if (nsub & (1u << k))
                    return 0;
                nsub |= 1u << k;
                sub[k] = sc.i;
            }
            if (!value(&sc, R_ANY, 3))
                return 0;
        }
    } while (next_member(&sc));
    k = acs_kind_index(body + kindf, kindt - kindf);
    if (k < 0 || !(nsub & (1u << k)) || body[sub[k]] != '{')
        return 1;
    *kind = k;
    sc.i = sub[k] + 1;
    ws(&sc);
    if (sc.i < sc.len && body[sc.i] == '}')
        return 1;
    do { /* its sub-object */
        int m;
        if (!member_name(&sc, &kf, &kt))
            return 0;
        for (m = 0; m < 8; m++)
            if (lens[m] == kt - kf && memcmp(body + kf, names[m], kt - kf) == 0)
                break;
        if (m < 8) {
            if (seen & (1u << m))
                return 0;
            seen |= 1u << m;
        }
        if (m < 7 && body[sc.i] == '"') {
            if (!string(&sc, &vf, &vt, &esc) || esc)
                return 0;
            dst[m]->p = body + vf;
            dst[m]->len = vt - vf;
        } else {
            if (m == 7) /* truthy as Lua reads it: anything but false (no null here) */
                f->anon = body[sc.i] != 'f';
            if (!value(&sc, R_ANY, 4))
                return 0;
        }
    } while (next_member(&sc));
    return 1;
}

/* The call's text when decode changes its identifiers only by adding a
 * rawId to each (all add_only): the body with each derived rawId inserted
 * after its identifier's '{', pushed. 0: not this way (nothing pushed). */
static int add_raw_ids(lua_State *L, const char *body, size_t len, const idents *ids)
{
    acs_ident_fields f;
    acs_span pieces[6];
    size_t k, at = 0;
    int i, n, kind, top = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (k = 0; k < ids->n; k++) {
        if (!ids->add_only[k] || !text_fields(body, ids->from[k], ids->to[k], &kind, &f)) {
            lua_settop(L, top); /* what the buffer pushed: abandoned */
            return 0;
        }
        n = acs_raw_id_pieces(kind, &f, pieces);
        if (n == 0)
            continue;
        luaL_addlstring(&b, body + at, ids->from[k] + 1 - at);
        at = ids->from[k] + 1;
        /* the pieces are unescaped JSON string contents: no '"', '\\' or
         * control byte, so they go in as they are */
        luaL_addlstring(&b, "\"rawId\":\"", 9);
        for (i = 0; i < n; i++)
            luaL_addlstring(&b, pieces[i].p, pieces[i].len);
        luaL_addlstring(&b, "\",", 2);
    }
    luaL_addlstring(&b, body + at, len - at);
    luaL_pushresult(&b);
    return 1;
}

/* ---------------------------------------------------------------- call_json */

static int call_json(lua_State *L)
{
    size_t len, k, at = 0;
    const char *body = luaL_checklstring(L, 1, &len);
    int arrays = lua_upvalueindex(1), ok;
    scan sc;
    idents ids;
    out o;
    sc.i = 0;
    sc.ids = &ids;
    ids.n = 0;
    lua_settop(L, 1);
    sc.s = body;
    sc.len = len;
    ws(&sc);
    ok = sc.i < len && body[sc.i] == '{' && object(&sc, R_TOP, 1);
    if (ok) {
        ws(&sc);
        ok = sc.i == len;
    }
    if (ok && ids.n == 0)
        return 1; /* the call is the body */
    if (ok && add_raw_ids(L, body, len, &ids))
        return 1; /* the body with rawIds added, from its own text */
    if (ok) { /* the identifiers decode changes, shaped by model.c */
        out_init(&o, L, 64);
        out_lit(&o, "{\"targets\":[");
        for (k = 0; k < ids.n; k++) {
            if (k)
                out_lit(&o, ",");
            out_add(&o, body + ids.from[k], ids.to[k] - ids.from[k]);
        }
        out_lit(&o, "]}");
        if (acs_decode_push(L, 200, o.p, o.n, NULL) != 1)
            ok = 0; /* not expected: the whole way says why */
    }
    if (ok) {
        int t = lua_gettop(L), shaped;
        lua_getfield(L, t, "targets");
        shaped = lua_gettop(L);
        out_init(&o, L, len + 64 * ids.n);
        for (k = 0; k < ids.n && ok; k++) {
            lua_rawgeti(L, shaped, (int)k + 1);
            ok = lua_type(L, -1) == LUA_TTABLE;
            if (ok && ids.add_only[k]) { /* the body's text, with rawId inserted after '{' */
                out_add(&o, body + at, ids.from[k] + 1 - at);
                at = ids.from[k] + 1;
                lua_pushliteral(L, "rawId");
                lua_rawget(L, -2);
                if (lua_type(L, -1) == LUA_TSTRING) {
                    size_t rl;
                    const char *raw = lua_tolstring(L, -1, &rl);
                    out_lit(&o, "\"rawId\":");
                    out_string(&o, raw, rl);
                    out_lit(&o, ",");
                }
                lua_pop(L, 2);
                continue;
            }
            out_add(&o, body + at, ids.from[k] - at);
            ok = ok && write_value(&o, lua_gettop(L), arrays, NULL, 3);
            lua_pop(L, 1);
            at = ids.to[k];
        }
        if (ok) {
            out_add(&o, body + at, len - at);
            lua_pushlstring(L, o.p, o.n);
            return 1;
        }
        lua_settop(L, 1);
    }
    /* the whole way */
    lua_settop(L, 1);
    if (acs_decode_push(L, 200, body, len, NULL) != 1)
        return 3;
    out_init(&o, L, len + 256);
    if (!write_value(&o, 2, arrays, NULL, 1)) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, o.p, o.n);
    return 1;
}

void acs_tojson_open(lua_State *L)
{

    lua_getfield(L, -1, "ARRAY_FIELDS");
    lua_pushcclosure(L, call_json, 1);
    lua_setfield(L, -2, "call_json");
}
