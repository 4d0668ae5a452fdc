/* decode.c - HTTP status + body -> CallConnectionProperties table, or an error.
 *
 * lua-cjson (a private cjson.safe instance, see acs_decode_init) turns the body
 * into tables; this file shapes them in place, in one walk, driven by the field
 * tables below (the one place the model's wire names and types are written):
 *   - JSON null (cjson's lightuserdata NULL) becomes an absent field, at any
 *     depth. In a known array (targets, subscribed*Types) a null element is a
 *     type error; in an unknown array null elements are removed and the array
 *     compacted (a Lua sequence cannot hold holes).
 *   - identifiers (source, targets[i]) get kind (inferred from the sub-object)
 *     and rawId (derived with derive_raw_id, the same function acscall.raw_id
 *     uses) when missing; bare models (answeredBy, answeredFor,
 *     sourceCallerIdNumber) keep their shape.
 *   - unknown fields and enum values are kept; a known field of the wrong JSON
 *     type is a decode error naming its path ("targets[2].phoneNumber.value").
 * Errors are built in fixed C buffers and pushed once at the end: nothing is
 * malloc'd, so a Lua error (OOM) longjmp'ing out of any API call leaks nothing.
 */
#include <string.h>
#include <stdio.h>
#include <math.h>

#include "decode.h"
#include "compat.h"

/* registry key of the private cjson.safe instance's decode function */
static const char decode_key = 0;

#define MSG_CAP 300     /* the one-line message */
#define EXCERPT_CAP 200 /* text taken from a non-JSON error body */

/* ------------------------------------------------------------------ */
/* one-line message buffer: control characters and whitespace runs become one
 * space, leading/trailing space trimmed, capped at cap bytes on a UTF-8
 * boundary with "..." marking the cut. */
typedef struct {
    char b[MSG_CAP + 4];
    size_t n, cap;
    int space, full;
} msgbuf;

static void mb_init(msgbuf *m, size_t cap)
{
    m->n = 0;
    m->cap = cap > MSG_CAP ? MSG_CAP : cap;
    m->space = 0;
    m->full = 0;
}

static void mb_add(msgbuf *m, const char *s, size_t len)
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

static void mb_str(msgbuf *m, const char *s)
{
    mb_add(m, s, strlen(s));
}

/* a literal separator: kept as is (its spaces are not collapsed away) */
static void mb_sep(msgbuf *m, const char *s)
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

static void mb_finish(msgbuf *m)
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

/* ------------------------------------------------------------------ */
/* JSON types as the user reads them */

static int is_null(lua_State *L, int i)
{
    /* cjson decodes null as lightuserdata NULL; nothing else it produces is
     * light userdata. */
    return lua_type(L, i) == LUA_TLIGHTUSERDATA;
}

static const char *json_type(lua_State *L, int i)
{
    switch (lua_type(L, i)) {
    case LUA_TSTRING: return "string";
    case LUA_TNUMBER: return "number";
    case LUA_TBOOLEAN: return "boolean";
    case LUA_TLIGHTUSERDATA: return "null";
    case LUA_TTABLE: return acs_rawlen(L, i) > 0 ? "array" : "object";
    default: return lua_typename(L, lua_type(L, i));
    }
}

/* ------------------------------------------------------------------ */
/* paths of known fields, kept on the C stack, rendered only on error */
typedef struct path {
    const struct path *up;
    const char *name; /* NULL: an array element */
    lua_Integer index; /* 1-based */
} path;

static void path_render(const path *p, msgbuf *m)
{
    char num[32];
    if (p == NULL)
        return;
    path_render(p->up, m);
    if (p->name) {
        if (m->n > 0)
            mb_sep(m, ".");
        mb_str(m, p->name);
    } else {
        snprintf(num, sizeof num, "[%ld]", (long)p->index);
        mb_str(m, num);
    }
}

typedef struct {
    msgbuf err; /* the decode error text, without the "decode: " prefix */
    const char *kind; /* the identifier being walked: its kind, if a string */
    size_t klen;
    int raw_empty;    /* ... and whether its rawId is "" */
} ctx;

static int type_error(lua_State *L, ctx *c, const path *p, const char *expected,
                      int vi)
{
    mb_init(&c->err, MSG_CAP - 8);
    path_render(p, &c->err);
    mb_sep(&c->err, ": expected ");
    mb_str(&c->err, expected);
    mb_sep(&c->err, ", got ");
    mb_str(&c->err, json_type(L, vi));
    return -1;
}

/* ------------------------------------------------------------------ */
/* the model */
enum { T_STR, T_BOOL, T_STRARR, T_OBJ, T_IDENT, T_IDENTARR };

typedef struct field {
    const char *name;
    size_t len;
    int type;
    const struct field *sub; /* T_OBJ */
} field;

#define F(n, t, s) { n, sizeof(n) - 1, t, s }
#define F_END { NULL, 0, 0, NULL }

static const field user_fields[] = { /* CommunicationUserIdentifierModel */
    F("id", T_STR, NULL), F_END
};
static const field phone_fields[] = { /* PhoneNumberIdentifierModel */
    F("value", T_STR, NULL), F("isAnonymous", T_BOOL, NULL),
    F("assertedId", T_STR, NULL), F_END
};
static const field teams_user_fields[] = {
    F("userId", T_STR, NULL), F("isAnonymous", T_BOOL, NULL),
    F("cloud", T_STR, NULL), F_END
};
static const field teams_app_fields[] = {
    F("appId", T_STR, NULL), F("cloud", T_STR, NULL), F_END
};
static const field ext_user_fields[] = {
    F("userId", T_STR, NULL), F("tenantId", T_STR, NULL),
    F("resourceId", T_STR, NULL), F("cloud", T_STR, NULL), F_END
};
/* CommunicationIdentifierModel. The order matters: bit i of "seen" is
 * ident_fields[i]; sub-objects from IDENT_FIRST_SUB on are named after their
 * kind and tried in this order when the kind must be inferred. */
#define IDENT_KIND 0
#define IDENT_RAWID 1
#define IDENT_FIRST_SUB 2
static const field ident_fields[] = {
    F("kind", T_STR, NULL), F("rawId", T_STR, NULL),
    F("communicationUser", T_OBJ, user_fields),
    F("phoneNumber", T_OBJ, phone_fields),
    F("microsoftTeamsUser", T_OBJ, teams_user_fields),
    F("microsoftTeamsApp", T_OBJ, teams_app_fields),
    F("teamsExtensionUser", T_OBJ, ext_user_fields), F_END
};
static const field media_fields[] = { /* MediaStreamingSubscription */
    F("id", T_STR, NULL), F("state", T_STR, NULL),
    F("subscribedContentTypes", T_STRARR, NULL), F_END
};
static const field transcription_fields[] = { /* TranscriptionSubscription */
    F("id", T_STR, NULL), F("state", T_STR, NULL),
    F("subscribedResultTypes", T_STRARR, NULL), F("locale", T_STR, NULL), F_END
};
static const field call_fields[] = { /* CallConnectionProperties */
    F("callConnectionId", T_STR, NULL), F("serverCallId", T_STR, NULL),
    F("targets", T_IDENTARR, NULL), F("callConnectionState", T_STR, NULL),
    F("callbackUri", T_STR, NULL), F("sourceDisplayName", T_STR, NULL),
    F("sourceCallerIdNumber", T_OBJ, phone_fields),
    F("source", T_IDENT, NULL), F("correlationId", T_STR, NULL),
    F("answeredBy", T_OBJ, user_fields), F("answeredFor", T_OBJ, phone_fields),
    F("mediaStreamingSubscription", T_OBJ, media_fields),
    F("transcriptionSubscription", T_OBJ, transcription_fields), F_END
};

/* ------------------------------------------------------------------ */
/* rawId: the one place for the rule (identifiers.md; azure-sdk-for-js
 * sdk/communication/communication-common/src/identifierModels.ts,
 * getIdentifierRawId). */

static int streq(const char *s, size_t l, const char *lit)
{
    size_t n = strlen(lit);
    return l == n && memcmp(s, lit, n) == 0;
}

/* push t[k] if it is a string and return 1; else push nothing, return 0 */
static int get_str(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    if (lua_type(L, -1) == LUA_TSTRING)
        return 1;
    lua_pop(L, 1);
    return 0;
}

static const char *get_cloud(lua_State *L, int sub, size_t *len)
{
    const char *s = NULL;
    lua_getfield(L, sub, "cloud");
    if (lua_type(L, -1) == LUA_TSTRING)
        s = lua_tolstring(L, -1, len); /* kept alive by the table */
    lua_pop(L, 1);
    return s;
}

/* index in ident_fields of the kind named (kind, klen), or -1 */
static int kind_index(const char *kind, size_t klen)
{
    int i;
    for (i = IDENT_FIRST_SUB; ident_fields[i].name; i++)
        if (ident_fields[i].len == klen && memcmp(ident_fields[i].name, kind, klen) == 0)
            return i;
    return -1;
}

/* Identifier at t of kind ident_fields[ki] (see kind_index): push its
 * derived rawId and return 1, or push nothing and return 0 when nothing can
 * be derived (unknown kind, sub-object or required field missing). An
 * unknown cloud is treated as public, as the JS SDK does. */
static int derive_raw_id(lua_State *L, int t, int ki)
{
    int sub, top = lua_gettop(L);
    size_t cl = 0;
    const char *cloud;
    enum { R_USER = IDENT_FIRST_SUB, R_PHONE, R_TUSER, R_APP, R_EXT } k;
    if (ki < IDENT_FIRST_SUB || ki > R_EXT)
        return 0;
    k = (int)ki;
    lua_getfield(L, t, ident_fields[ki].name); /* a static string: cached */
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_settop(L, top);
        return 0;
    }
    sub = lua_gettop(L);
    if (k == R_USER) { /* communicationUser: the id itself */
        if (!get_str(L, sub, "id"))
            goto none;
    } else if (k == R_PHONE) { /* phoneNumber: 4:<value> */
        lua_pushliteral(L, "4:");
        if (!get_str(L, sub, "value"))
            goto none;
        lua_concat(L, 2);
    } else if (k == R_TUSER) {
        int anon;
        lua_getfield(L, sub, "isAnonymous");
        anon = lua_toboolean(L, -1);
        lua_pop(L, 1);
        cloud = get_cloud(L, sub, &cl);
        if (anon)
            lua_pushliteral(L, "8:teamsvisitor:");
        else if (cloud && streq(cloud, cl, "dod"))
            lua_pushliteral(L, "8:dod:");
        else if (cloud && streq(cloud, cl, "gcch"))
            lua_pushliteral(L, "8:gcch:");
        else
            lua_pushliteral(L, "8:orgid:");
        if (!get_str(L, sub, "userId"))
            goto none;
        lua_concat(L, 2);
    } else if (k == R_APP) {
        cloud = get_cloud(L, sub, &cl);
        if (cloud && streq(cloud, cl, "dod"))
            lua_pushliteral(L, "28:dod:");
        else if (cloud && streq(cloud, cl, "gcch"))
            lua_pushliteral(L, "28:gcch:");
        else
            lua_pushliteral(L, "28:orgid:");
        if (!get_str(L, sub, "appId"))
            goto none;
        lua_concat(L, 2);
    } else { /* teamsExtensionUser: <prefix><resourceId>_<tenantId>_<userId> */
        cloud = get_cloud(L, sub, &cl);
        if (cloud && streq(cloud, cl, "dod"))
            lua_pushliteral(L, "8:dod-acs:");
        else if (cloud && streq(cloud, cl, "gcch"))
            lua_pushliteral(L, "8:gcch-acs:");
        else
            lua_pushliteral(L, "8:acs:");
        if (!get_str(L, sub, "resourceId"))
            goto none;
        lua_pushliteral(L, "_");
        if (!get_str(L, sub, "tenantId"))
            goto none;
        lua_pushliteral(L, "_");
        if (!get_str(L, sub, "userId"))
            goto none;
        lua_concat(L, 6);
    }
    lua_replace(L, sub);
    lua_settop(L, sub);
    return 1;
none:
    lua_settop(L, top);
    return 0;
}

/* ------------------------------------------------------------------ */
/* the walk */

/* Strip nulls from an unknown value (table at t), at any depth. Arrays
 * (cjson gives them keys 1..n, objects only string keys) are compacted. */
static void strip_nulls(lua_State *L, int t)
{
    size_t n = acs_rawlen(L, t);
    luaL_checkstack(L, 4, "acscall: JSON too deep");
    if (n > 0) {
        size_t i, j = 0;
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, t, (int)i);
            if (is_null(L, -1)) {
                lua_pop(L, 1);
                continue;
            }
            if (lua_type(L, -1) == LUA_TTABLE)
                strip_nulls(L, lua_gettop(L));
            j++;
            if (j != i)
                lua_rawseti(L, t, (int)j);
            else
                lua_pop(L, 1);
        }
        for (i = j + 1; i <= n; i++) {
            lua_pushnil(L);
            lua_rawseti(L, t, (int)i);
        }
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (is_null(L, -1)) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, t); /* clearing an existing field is allowed mid-next */
            continue;
        }
        if (lua_type(L, -1) == LUA_TTABLE)
            strip_nulls(L, lua_gettop(L));
        lua_pop(L, 1);
    }
}

/* value at v must be a JSON object (an empty table passes) */
static int check_object(lua_State *L, ctx *c, const path *p, int v)
{
    if (lua_type(L, v) != LUA_TTABLE || acs_rawlen(L, v) > 0)
        return type_error(L, c, p, "object", v);
    return 0;
}

/* value at v must be a JSON array (an empty table passes); *n = its length */
static int check_array(lua_State *L, ctx *c, const path *p, int v, size_t *n)
{
    if (lua_type(L, v) != LUA_TTABLE)
        return type_error(L, c, p, "array", v);
    *n = acs_rawlen(L, v);
    if (*n == 0) {
        lua_pushnil(L);
        if (lua_next(L, v)) {
            lua_pop(L, 2);
            return type_error(L, c, p, "array", v);
        }
    }
    return 0;
}

static int walk_object(lua_State *L, ctx *c, int t, const field *spec,
                       const path *p, unsigned *seen);

static int walk_ident(lua_State *L, ctx *c, int t, const path *p)
{
    unsigned seen = 0;
    int i, ki = -1;
    c->kind = NULL;
    c->raw_empty = 0;
    if (walk_object(L, c, t, ident_fields, p, &seen))
        return -1;
    if (c->kind) {
        ki = kind_index(c->kind, c->klen);
    } else {
        for (i = IDENT_FIRST_SUB; ident_fields[i].name; i++)
            if (seen & (1u << i)) {
                ki = i;
                break;
            }
        lua_pushstring(L, ki >= 0 ? ident_fields[ki].name : "unknown");
        lua_setfield(L, t, "kind");
    }
    /* a rawId the service sent wins; an empty one does not (as in the SDKs
     * and acs_l_raw_id) */
    if ((!(seen & (1u << IDENT_RAWID)) || c->raw_empty) && derive_raw_id(L, t, ki))
        lua_setfield(L, t, "rawId");
    return 0;
}

/* Check a known field's value (at v) against its type; nulls are already
 * gone. */
static int walk_value(lua_State *L, ctx *c, int v, const field *f, const path *p)
{
    size_t n, i;
    switch (f->type) {
    case T_STR:
        if (lua_type(L, v) != LUA_TSTRING)
            return type_error(L, c, p, "string", v);
        if (f == &ident_fields[IDENT_KIND]) /* alive: the table holds it */
            c->kind = lua_tolstring(L, v, &c->klen);
        else if (f == &ident_fields[IDENT_RAWID])
            c->raw_empty = acs_rawlen(L, v) == 0;
        return 0;
    case T_BOOL:
        if (lua_type(L, v) != LUA_TBOOLEAN)
            return type_error(L, c, p, "boolean", v);
        return 0;
    case T_OBJ:
        if (check_object(L, c, p, v))
            return -1;
        return walk_object(L, c, v, f->sub, p, NULL);
    case T_IDENT:
        if (check_object(L, c, p, v))
            return -1;
        return walk_ident(L, c, v, p);
    case T_STRARR:
    case T_IDENTARR:
        if (check_array(L, c, p, v, &n))
            return -1;
        for (i = 1; i <= n; i++) {
            path e;
            int r;
            e.up = p;
            e.name = NULL;
            e.index = (lua_Integer)i;
            lua_rawgeti(L, v, (int)i);
            if (f->type == T_STRARR)
                r = lua_type(L, -1) == LUA_TSTRING ? 0
                                                   : type_error(L, c, &e, "string", -1);
            else
                r = check_object(L, c, &e, lua_gettop(L)) ? -1
                                                          : walk_ident(L, c, lua_gettop(L), &e);
            lua_pop(L, 1);
            if (r)
                return -1;
        }
        return 0;
    }
    return 0;
}

/* Walk the object at t: nulls removed, known fields checked (and shaped),
 * unknown fields stripped of nulls. Bit i of *seen is set for each
 * spec[i] present. Returns 0, or -1 with c->err set. */
/* The error path: walk the known fields again in spec order (the first
 * pass went in hash order) so the error reported does not depend on the
 * table's layout. Walking a shaped value again is harmless. Returns -1. */
static int first_error_in_order(lua_State *L, ctx *c, int t, const field *spec,
                                const path *p, int base)
{
    const field *s;
    for (s = spec; s->name; s++) {
        lua_settop(L, base);
        lua_pushlstring(L, s->name, s->len);
        lua_rawget(L, t);
        if (!lua_isnil(L, -1) && !is_null(L, -1)) { /* null: absent */
            path here;
            here.up = p;
            here.name = s->name;
            here.index = 0;
            if (walk_value(L, c, lua_gettop(L), s, &here)) {
                lua_settop(L, base);
                return -1;
            }
        }
    }
    lua_settop(L, base);
    return -1; /* not found again: keep the first pass's message */
}

static int walk_object(lua_State *L, ctx *c, int t, const field *spec,
                       const path *p, unsigned *seen)
{
    int base = lua_gettop(L);
    luaL_checkstack(L, 6, "acscall: JSON too deep");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int v = lua_gettop(L);
        const field *f = NULL;
        if (is_null(L, v)) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, t); /* clearing an existing field is allowed mid-next */
            continue;
        }
        if (lua_type(L, v - 1) == LUA_TSTRING) {
            size_t kl;
            const char *k = lua_tolstring(L, v - 1, &kl);
            const field *s;
            for (s = spec; s->name; s++)
                if (s->len == kl && memcmp(s->name, k, kl) == 0) {
                    f = s;
                    break;
                }
        }
        if (f) {
            path here;
            here.up = p;
            here.name = f->name;
            here.index = 0;
            if (walk_value(L, c, v, f, &here))
                return first_error_in_order(L, c, t, spec, p, base);
            if (seen)
                *seen |= 1u << (unsigned)(f - spec);
        } else if (lua_type(L, v) == LUA_TTABLE) {
            strip_nulls(L, v);
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* results */

static void set_str(lua_State *L, int t, const char *k, const char *v)
{
    if (v) {
        lua_pushstring(L, v);
        lua_setfield(L, t, k);
    }
}

/* info table with kind and what meta and status tell; left on the stack */
static int push_info(lua_State *L, const char *kind, long status,
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
static int finish_failure(lua_State *L, msgbuf *m)
{
    mb_finish(m);
    lua_pushnil(L);
    lua_pushlstring(L, m->b, m->n);
    lua_pushvalue(L, -3);
    lua_remove(L, -4);
    return 3;
}

static void mb_http(msgbuf *m, long status)
{
    char num[32];
    snprintf(num, sizeof num, "HTTP %ld", status);
    mb_sep(m, num);
}

int acs_push_failure(lua_State *L, const char *kind, long status,
                     const char *message, const acs_resp_meta *meta)
{
    msgbuf m;
    int info;
    if (kind == NULL)
        kind = "error";
    info = push_info(L, kind, status, meta);
    set_str(L, info, "message", message);
    mb_init(&m, MSG_CAP);
    if (strcmp(kind, "http") == 0 && status > 0)
        mb_http(&m, status);
    else
        mb_str(&m, kind);
    if (message && *message) {
        mb_sep(&m, ": ");
        mb_str(&m, message);
    }
    return finish_failure(L, &m);
}

static int decode_failure(lua_State *L, long status, const acs_resp_meta *meta,
                          msgbuf *text)
{
    msgbuf m;
    int info;
    mb_finish(text);
    info = push_info(L, "decode", status, meta);
    lua_pushlstring(L, text->b, text->n);
    lua_setfield(L, info, "message");
    mb_init(&m, MSG_CAP);
    mb_sep(&m, "decode: ");
    mb_add(&m, text->b, text->n);
    return finish_failure(L, &m);
}

static size_t skip_ws(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* call the private decoder on the string at bi: pushes one value (the
 * result, or nil) and, on failure, returns cjson's message (a Lua string
 * kept just below the pushed nil), else NULL. */
static const char *cjson_decode(lua_State *L, int bi, const acs_resp_meta *meta)
{
    if (meta && meta->decoder_ref > 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, meta->decoder_ref);
    } else {
        lua_pushlightuserdata(L, (void *)&decode_key);
        lua_rawget(L, LUA_REGISTRYINDEX);
    }
    if (lua_type(L, -1) != LUA_TFUNCTION)
        luaL_error(L, "acscall: acs_decode_init was not called");
    lua_pushvalue(L, bi);
    lua_call(L, 1, 2);
    if (lua_isnil(L, -2) && lua_type(L, -1) == LUA_TSTRING) {
        lua_insert(L, -2); /* message, nil */
        return lua_tostring(L, -2);
    }
    lua_pop(L, 1);
    return NULL;
}

/* 2xx: body string at bi */
static int decode_ok(lua_State *L, int bi, long status, const acs_resp_meta *meta)
{
    size_t len, i;
    const char *body = lua_tolstring(L, bi, &len);
    const char *jerr;
    ctx c;
    int base = lua_gettop(L), t;

    i = skip_ws(body, len);
    if (i == len) {
        mb_init(&c.err, MSG_CAP - 8);
        mb_str(&c.err, "response body is empty");
        return decode_failure(L, status, meta, &c.err);
    }
    jerr = cjson_decode(L, bi, meta);
    if (jerr) {
        mb_init(&c.err, MSG_CAP - 8);
        mb_sep(&c.err, "invalid JSON: ");
        mb_str(&c.err, jerr);
        lua_settop(L, base);
        return decode_failure(L, status, meta, &c.err);
    }
    t = lua_gettop(L);
    /* cjson gives {} and [] the same empty table: the first byte tells */
    if (lua_type(L, t) != LUA_TTABLE || body[i] != '{') {
        mb_init(&c.err, MSG_CAP - 8);
        mb_sep(&c.err, "expected a JSON object, got ");
        mb_str(&c.err, lua_type(L, t) == LUA_TTABLE ? "array" : json_type(L, t));
        lua_settop(L, base);
        return decode_failure(L, status, meta, &c.err);
    }
    if (walk_object(L, &c, t, call_fields, NULL, NULL)) {
        lua_settop(L, base);
        return decode_failure(L, status, meta, &c.err);
    }
    lua_settop(L, t);
    return 1;
}

static const char *reason_phrase(long status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return NULL;
    }
}

static int lower(int ch)
{
    return (ch >= 'A' && ch <= 'Z') ? ch + ('a' - 'A') : ch;
}

/* case-insensitive: does s[0..len) start with lit (lower-case) */
static int starts_ci(const char *s, size_t len, const char *lit)
{
    size_t i, n = strlen(lit);
    if (len < n)
        return 0;
    for (i = 0; i < n; i++)
        if (lower((unsigned char)s[i]) != lit[i])
            return 0;
    return 1;
}

/* A readable excerpt of a non-JSON body: an HTML <title>, else (markup) the
 * first text between tags, else the first line. */
static void body_excerpt(msgbuf *m, const char *s, size_t len)
{
    size_t i, j;
    mb_init(m, EXCERPT_CAP);
    for (i = 0; i + 6 < len; i++)
        if (s[i] == '<' && starts_ci(s + i, len - i, "<title")) {
            for (j = i + 6; j < len && s[j] != '>'; j++)
                ;
            for (j++; j < len && s[j] != '<'; j++)
                mb_add(m, s + j, 1);
            if (m->n > 0)
                return;
            break;
        }
    i = skip_ws(s, len);
    if (i < len && s[i] == '<') { /* markup: the first text between tags */
        for (; i < len && !m->full; i++) {
            if (s[i] == '<') {
                if (m->n > 0)
                    break;
                while (i < len && s[i] != '>')
                    i++;
                continue;
            }
            mb_add(m, s + i, 1);
        }
        return;
    }
    for (; i < len && !m->full; i++) { /* text: its first line */
        if (s[i] == '\n' || s[i] == '\r')
            break;
        mb_add(m, s + i, 1);
    }
}

/* push a code value (string, or a number the service sent) as a string */
static int push_code(lua_State *L, int v)
{
    if (lua_type(L, v) == LUA_TSTRING) {
        lua_pushvalue(L, v);
        return 1;
    }
    if (lua_type(L, v) == LUA_TNUMBER) {
        char num[64];
        lua_Number n = lua_tonumber(L, v);
        if (n == floor(n) && fabs(n) < 1e15)
            snprintf(num, sizeof num, "%.0f", (double)n);
        else
            snprintf(num, sizeof num, "%.14g", (double)n);
        lua_pushstring(L, num);
        return 1;
    }
    return 0;
}

/* non-2xx: body string at bi */
static int decode_http_error(lua_State *L, int bi, long status,
                             const acs_resp_meta *meta)
{
    size_t len, i;
    const char *body = lua_tolstring(L, bi, &len);
    const char *phrase = reason_phrase(status);
    msgbuf m, ex;
    int info = push_info(L, "http", status, meta);
    int json = 0;

    mb_init(&m, MSG_CAP);
    mb_http(&m, status);
    i = skip_ws(body, len);
    if (i < len && body[i] == '{') {
        int t;
        if (cjson_decode(L, bi, meta) == NULL && lua_type(L, -1) == LUA_TTABLE) {
            const char *msg = NULL;
            size_t msglen = 0;
            int has_code = 0;
            json = 1;
            t = lua_gettop(L);
            strip_nulls(L, t);
            lua_getfield(L, t, "error");
            if (lua_type(L, -1) == LUA_TTABLE) /* CommunicationErrorResponse */
                lua_replace(L, t);
            else
                lua_pop(L, 1); /* else a bare {code, message} (gateways) */
            lua_getfield(L, t, "code");
            if (push_code(L, lua_gettop(L))) {
                lua_setfield(L, info, "code");
                has_code = 1;
            }
            lua_pop(L, 1);
            lua_getfield(L, t, "message");
            if (lua_type(L, -1) == LUA_TSTRING) {
                msg = lua_tolstring(L, -1, &msglen);
                lua_pushvalue(L, -1);
                lua_setfield(L, info, "message");
            }
            lua_pop(L, 1); /* msg stays alive in t */
            lua_getfield(L, t, "target");
            lua_setfield(L, info, "target");
            lua_getfield(L, t, "details");
            lua_setfield(L, info, "details");
            lua_getfield(L, t, "innererror");
            lua_setfield(L, info, "innererror");
            mb_sep(&m, ": ");
            if (msglen > 0)
                mb_add(&m, msg, msglen);
            else if (phrase)
                mb_str(&m, phrase);
            if (has_code) {
                lua_getfield(L, info, "code");
                mb_sep(&m, msglen > 0 || phrase ? " (code " : "(code ");
                mb_str(&m, lua_tostring(L, -1));
                mb_sep(&m, ")");
                lua_pop(L, 1);
            }
            if (m.n == 0 || m.b[m.n - 1] == ' ')
                m.n -= 2; /* nothing after ": " */
        }
        lua_settop(L, info);
    }
    if (!json) {
        body_excerpt(&ex, body, len);
        mb_finish(&ex);
        if (ex.n > 0) {
            mb_sep(&m, ": ");
            mb_add(&m, ex.b, ex.n);
            lua_pushlstring(L, ex.b, ex.n);
            lua_setfield(L, info, "message");
        } else if (phrase) {
            mb_sep(&m, ": ");
            mb_str(&m, phrase);
        }
    }
    return finish_failure(L, &m);
}

/* body at bi (absolute) */
static int decode_at(lua_State *L, long status, int bi, const acs_resp_meta *meta)
{
    if (status >= 200 && status <= 299)
        return decode_ok(L, bi, status, meta);
    return decode_http_error(L, bi, status, meta);
}

int acs_decode_push(lua_State *L, long status, const char *body, size_t len,
                    const acs_resp_meta *meta)
{
    int n, bi;
    lua_pushlstring(L, body ? body : "", body ? len : 0);
    bi = lua_gettop(L);
    n = decode_at(L, status, bi, meta);
    lua_remove(L, bi);
    return n;
}

/* Push the decode function of a new private cjson.safe instance. */
static void push_decoder(lua_State *L, int max_depth)
{
    int inst;
    lua_getglobal(L, "require"); /* read only */
    lua_pushliteral(L, "cjson.safe");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    inst = lua_gettop(L);
    lua_getfield(L, inst, "decode_max_depth");
    lua_pushinteger(L, max_depth > 0 ? max_depth : ACS_DEFAULT_MAX_DEPTH);
    lua_call(L, 1, 0);
    /* strict JSON: no NaN, Infinity or hex numbers */
    lua_getfield(L, inst, "decode_invalid_numbers");
    if (lua_type(L, -1) == LUA_TFUNCTION) {
        lua_pushboolean(L, 0);
        lua_call(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
    /* OpenResty's lua-cjson can mark decoded arrays (cjson.array_mt), so
     * that cjson.encode of a result gives [] for an empty array again;
     * Debian's 2.1.0 has no such option. */
    lua_getfield(L, inst, "decode_array_with_array_mt");
    if (lua_type(L, -1) == LUA_TFUNCTION) {
        lua_pushboolean(L, 1);
        lua_call(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
    lua_getfield(L, inst, "decode"); /* its config is an upvalue: kept alive */
    lua_replace(L, inst - 1);        /* over the module */
    lua_settop(L, inst - 1);
}

void acs_decode_init(lua_State *L, int max_depth)
{
    lua_pushlightuserdata(L, (void *)&decode_key);
    push_decoder(L, max_depth);
    lua_rawset(L, LUA_REGISTRYINDEX);
}

int acs_decode_new_decoder(lua_State *L, int max_depth)
{
    push_decoder(L, max_depth);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* ------------------------------------------------------------------ */
/* Lua entry points */

/* Push the model's names for the Lua layer: CALL_FIELDS (the top-level
 * fields of CallConnectionProperties in schema order) and ARRAY_FIELDS (the
 * names of every known array field, the error model's "details" included),
 * so no Lua code re-declares the schema. */
void acs_decode_push_schema(lua_State *L)
{
    const field *f;
    int i = 0;
    lua_newtable(L);
    for (f = call_fields; f->name; f++) {
        lua_pushstring(L, f->name);
        lua_rawseti(L, -2, ++i);
    }
    lua_newtable(L);
    for (f = call_fields; f->name; f++)
        if (f->type == T_IDENTARR) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, f->name);
        }
    for (f = media_fields; f->name; f++)
        if (f->type == T_STRARR) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, f->name);
        }
    for (f = transcription_fields; f->name; f++)
        if (f->type == T_STRARR) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, f->name);
        }
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "details");
}

/* case-insensitive equality with a lower-case literal */
static int eq_ci(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && starts_ci(s, len, lit);
}

int acs_l_decode(lua_State *L)
{
    acs_resp_meta meta;
    long status = (long)luaL_checkinteger(L, 1);
    luaL_optlstring(L, 2, "", NULL); /* nil or none: an empty body */
    memset(&meta, 0, sizeof meta);
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
                size_t kl;
                const char *k = lua_tolstring(L, -2, &kl);
                const char *v = lua_tostring(L, -1); /* kept alive by arg 3 */
                if (eq_ci(k, kl, "x-ms-request-id"))
                    meta.request_id = v;
                else if (eq_ci(k, kl, "x-ms-client-request-id"))
                    meta.client_request_id = v;
                else if (eq_ci(k, kl, "content-type"))
                    meta.content_type = v;
            }
            lua_pop(L, 1);
        }
    }
    if (lua_isnoneornil(L, 2)) {
        lua_pushliteral(L, "");
        lua_replace(L, 2);
    }
    lua_settop(L, 3);
    return decode_at(L, status, 2, &meta);
}

/* infer the kind of a (user) identifier table: its kind, else the first
 * sub-object present, else NULL */
static const char *ident_kind(lua_State *L, int t, size_t *klen)
{
    int i;
    const char *k = NULL;
    lua_getfield(L, t, "kind");
    if (lua_type(L, -1) == LUA_TSTRING)
        k = lua_tolstring(L, -1, klen); /* alive in t */
    lua_pop(L, 1);
    if (k)
        return k;
    for (i = IDENT_FIRST_SUB; ident_fields[i].name; i++) {
        int present;
        lua_getfield(L, t, ident_fields[i].name);
        present = lua_type(L, -1) == LUA_TTABLE;
        lua_pop(L, 1);
        if (present) {
            *klen = ident_fields[i].len;
            return ident_fields[i].name;
        }
    }
    return NULL;
}

int acs_l_raw_id(lua_State *L)
{
    const char *kind;
    size_t klen = 0;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (get_str(L, 1, "rawId") && acs_rawlen(L, -1) > 0)
        return 1; /* a rawId given wins (an empty one does not, as in the SDKs) */
    lua_settop(L, 1);
    kind = ident_kind(L, 1, &klen);
    if (kind && derive_raw_id(L, 1, kind_index(kind, klen)))
        return 1;
    lua_pushnil(L);
    return 1;
}

/* rawId -> identifier in the wire shape {kind, rawId, <kind> = {...}}, as
 * createIdentifierFromRawId in azure-sdk-for-js
 * sdk/communication/communication-common/src/identifierModels.ts:
 *   "4:<value>"            phoneNumber {value, isAnonymous, assertedId?}: value
 *                          is everything after "4:", assertedId the text after
 *                          the last "_" when non-empty; isAnonymous for
 *                          "4:anonymous";
 *   otherwise exactly three ":"-separated parts, "<a>:<b>:<suffix>":
 *   8:teamsvisitor:        microsoftTeamsUser {userId, isAnonymous = true}
 *   8:orgid: 8:dod: 8:gcch:  microsoftTeamsUser {userId, isAnonymous = false, cloud}
 *   8:acs: 8:dod-acs: 8:gcch-acs:  teamsExtensionUser {resourceId, tenantId,
 *                          userId, cloud} when suffix is exactly three
 *                          "_"-separated parts, else communicationUser {id = raw}
 *   8:spool:               communicationUser {id = raw}
 *   28:orgid: 28:dod: 28:gcch:  microsoftTeamsApp {appId, cloud}
 *   anything else          {kind = "unknown", rawId = raw} */
static void set_lstr(lua_State *L, int t, const char *k, const char *v, size_t l)
{
    lua_pushlstring(L, v, l);
    lua_setfield(L, t, k);
}

static void set_bool(lua_State *L, int t, const char *k, int b)
{
    lua_pushboolean(L, b);
    lua_setfield(L, t, k);
}

int acs_l_identifier_from_raw_id(lua_State *L)
{
    size_t len, i, plen = 0, ncolon = 0;
    const char *raw = luaL_checklstring(L, 1, &len);
    const char *kind = "unknown", *cloud = NULL, *suf;
    size_t slen;
    int t, sub, anon = 0;
    enum { K_UNKNOWN, K_PHONE, K_TUSER, K_ACS, K_USER, K_APP } k = K_UNKNOWN;

    lua_settop(L, 1);
    if (len >= 2 && raw[0] == '4' && raw[1] == ':') {
        k = K_PHONE;
        plen = 2;
    } else {
        for (i = 0; i < len; i++)
            if (raw[i] == ':' && ++ncolon == 2)
                plen = i + 1;
        if (ncolon == 2) {
            const char *pre = raw;
            size_t pl = plen;
            if (streq(pre, pl, "8:teamsvisitor:")) k = K_TUSER, anon = 1;
            else if (streq(pre, pl, "8:orgid:")) k = K_TUSER, cloud = "public";
            else if (streq(pre, pl, "8:dod:")) k = K_TUSER, cloud = "dod";
            else if (streq(pre, pl, "8:gcch:")) k = K_TUSER, cloud = "gcch";
            else if (streq(pre, pl, "8:acs:")) k = K_ACS, cloud = "public";
            else if (streq(pre, pl, "8:dod-acs:")) k = K_ACS, cloud = "dod";
            else if (streq(pre, pl, "8:gcch-acs:")) k = K_ACS, cloud = "gcch";
            else if (streq(pre, pl, "8:spool:")) k = K_USER;
            else if (streq(pre, pl, "28:orgid:")) k = K_APP, cloud = "public";
            else if (streq(pre, pl, "28:dod:")) k = K_APP, cloud = "dod";
            else if (streq(pre, pl, "28:gcch:")) k = K_APP, cloud = "gcch";
        }
    }
    suf = raw + plen;
    slen = len - plen;
    if (k == K_ACS) {
        size_t u1 = 0, u2 = 0, nu = 0;
        for (i = 0; i < slen; i++)
            if (suf[i] == '_') {
                if (++nu == 1) u1 = i;
                else if (nu == 2) u2 = i;
            }
        lua_createtable(L, 0, 3);
        t = lua_gettop(L);
        if (nu == 2) {
            kind = "teamsExtensionUser";
            lua_createtable(L, 0, 4);
            sub = lua_gettop(L);
            set_lstr(L, sub, "resourceId", suf, u1);
            set_lstr(L, sub, "tenantId", suf + u1 + 1, u2 - u1 - 1);
            set_lstr(L, sub, "userId", suf + u2 + 1, slen - u2 - 1);
            set_str(L, sub, "cloud", cloud);
        } else {
            k = K_USER;
        }
    } else {
        lua_createtable(L, 0, 3);
        t = lua_gettop(L);
    }
    switch (k) {
    case K_PHONE:
        kind = "phoneNumber";
        lua_createtable(L, 0, 3);
        sub = lua_gettop(L);
        set_lstr(L, sub, "value", suf, slen);
        anon = streq(suf, slen, "anonymous");
        set_bool(L, sub, "isAnonymous", anon);
        if (!anon) {
            size_t a = 0; /* one past the last "_" */
            for (i = 0; i < slen; i++)
                if (suf[i] == '_')
                    a = i + 1;
            if (a > 0 && a < slen)
                set_lstr(L, sub, "assertedId", suf + a, slen - a);
        }
        break;
    case K_TUSER:
        kind = "microsoftTeamsUser";
        lua_createtable(L, 0, 3);
        sub = lua_gettop(L);
        set_lstr(L, sub, "userId", suf, slen);
        set_bool(L, sub, "isAnonymous", anon);
        set_str(L, sub, "cloud", cloud);
        break;
    case K_USER:
        kind = "communicationUser";
        lua_createtable(L, 0, 1);
        sub = lua_gettop(L);
        set_lstr(L, sub, "id", raw, len);
        break;
    case K_APP:
        kind = "microsoftTeamsApp";
        lua_createtable(L, 0, 2);
        sub = lua_gettop(L);
        set_lstr(L, sub, "appId", suf, slen);
        set_str(L, sub, "cloud", cloud);
        break;
    case K_ACS: /* sub-object already built */
    case K_UNKNOWN:
        break;
    }
    if (k != K_UNKNOWN)
        lua_setfield(L, t, kind);
    set_str(L, t, "kind", kind);
    lua_pushvalue(L, 1);
    lua_setfield(L, t, "rawId");
    return 1;
}
