/* model.c - HTTP status + body -> CallConnectionProperties table, or an error.
 *
 * lua-cjson (a private cjson.safe instance, see acs_decode_init) turns the body
 * into tables; this file shapes them, one walk (lua_next) per table, driven by
 * the field tables below (the one place the model's wire names and types are
 * written):
 *   - JSON null (cjson's lightuserdata NULL) becomes an absent field, at any
 *     depth. In a known array (targets, subscribed*Types) a null element is a
 *     type error; in an unknown array null elements are removed and the array
 *     compacted (a Lua sequence cannot hold holes). A body without the bytes
 *     "null" has no null to strip: unknown values are then not walked at all.
 *   - identifiers (source, targets[i]) get kind (inferred from the sub-object)
 *     and rawId (derived by identifier.c, the same rule acscall.raw_id
 *     uses) when missing; bare models (answeredBy, answeredFor,
 *     sourceCallerIdNumber) keep their shape. An identifier is copied, while
 *     it is walked, into a table created with room for kind and rawId (cjson
 *     makes each object exactly as big as its fields: adding one there
 *     rehashes it).
 *   - unknown fields and enum values are kept; a known field of the wrong JSON
 *     type is a decode error naming its path ("targets[2].phoneNumber.value").
 * Errors are built in fixed C buffers and pushed once at the end: nothing is
 * malloc'd, so a Lua error (OOM) longjmp'ing out of any API call leaks nothing.
 * fuzz/model_ref.c is the decoder before the one-walk pass: the differential
 * fuzzer (fuzz/fuzz_decode_diff.c) holds this file to its results.
 */
#include <string.h>
#include <stdio.h>
#include <math.h>

#include "compat.h"
#include "failure.h"
#include "identifier.h"
#include "model.h"
#include "util.h"

/* registry key of the private cjson.safe instance's decode function */
static const char decode_key = 0;


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

static void path_render(const path *p, acs_msgbuf *m)
{
    char num[32];
    if (p == NULL)
        return;
    path_render(p->up, m);
    if (p->name) {
        if (m->n > 0)
            acs_mb_sep(m, ".");
        acs_mb_str(m, p->name);
    } else {
        snprintf(num, sizeof num, "[%ld]", (long)p->index);
        acs_mb_str(m, num);
    }
}


typedef struct {
    acs_msgbuf err; /* the decode error text, without the "decode: " prefix */
    const char *body; /* the body cjson decoded (alive at the caller's bi) */
    size_t len;
    int has_null; /* -1: not looked for yet; 0: the body has no "null" */
    int strict;   /* a wrong-typed known field is an error */
    int fast;     /* !strict and no null: only identifiers change (below) */
    int kkind, krawid; /* stack slots of the strings "kind" and "rawId" */
} ctx;

static int type_error(lua_State *L, ctx *c, const path *p, const char *expected,
                      int vi)
{
    acs_mb_init(&c->err, ACS_MSG_CAP - 8);
    path_render(p, &c->err);
    acs_mb_sep(&c->err, ": expected ");
    acs_mb_str(&c->err, expected);
    acs_mb_sep(&c->err, ", got ");
    acs_mb_str(&c->err, json_type(L, vi));
    return -1;
}

static void strip_nulls(lua_State *L, int t);

/* Whether the body may hold a JSON null: the bytes "null" somewhere (cjson
 * makes a null only of that literal). Found with memchr on the rarer 'l', on
 * demand: only a body with an unknown or odd table value ever asks. */
static int may_have_null(ctx *c)
{
    if (c->has_null < 0) {
        const char *s = c->body, *e = c->body + c->len, *q = s;
        c->has_null = 0;
        while ((q = memchr(q, 'l', (size_t)(e - q))) != NULL) {
            if (q - s >= 2 && e - q >= 2 && q[-2] == 'n' && q[-1] == 'u' && q[1] == 'l') {
                c->has_null = 1;
                break;
            }
            q++;
        }
    }
    return c->has_null;
}

/* strip_nulls on the table at t, unless the body has no null */
static void strip(lua_State *L, ctx *c, int t)
{
    if (may_have_null(c))
        strip_nulls(L, t);
}

/* A known value of the wrong JSON type. strict: an error naming its path
 * (-1). Otherwise (the default, as the official SDKs) it is kept as the
 * service sent it, nulls stripped, and not walked (1): one odd leaf does
 * not lose a live call's state, targets and ids. */
static int mismatch(lua_State *L, ctx *c, const path *p, const char *expected,
                    int vi)
{
    if (c->strict)
        return type_error(L, c, p, expected, vi);
    if (lua_type(L, vi) == LUA_TTABLE)
        strip(L, c, vi);
    return 1;
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

/* the field of spec named k, or NULL (most names differ in length: one
 * memcmp per key) */
static const field *find_field(const field *spec, const char *k, size_t kl)
{
    for (; spec->name; spec++)
        if (spec->len == kl && spec->name[0] == k[0] && memcmp(spec->name, k, kl) == 0)
            return spec;
    return NULL;
}

/* value at v must be a JSON object (an empty table passes): 0, or
 * mismatch's answer */
static int check_object(lua_State *L, ctx *c, const path *p, int v)
{
    if (lua_type(L, v) != LUA_TTABLE || acs_rawlen(L, v) > 0)
        return mismatch(L, c, p, "object", v);
    return 0;
}

/* walk_value's answers */
#define W_ERR (-1) /* c->err is set */
#define W_OK 0
#define W_NEW 1 /* the value's stack slot now holds a new table to store back */

static int walk_object(lua_State *L, ctx *c, int t, const field *spec,
                       const path *p);
static int walk_value(lua_State *L, ctx *c, int v, const field *f, const path *p);
static int first_error_in_order(lua_State *L, ctx *c, int t, const field *spec,
                                const path *p, int base);

/* The identifier at v (a table that passed check_object) is copied into a
 * new table with room for kind and rawId, its known fields checked on the
 * way; the copy replaces slot v (W_NEW). cjson's table is left as it was. */
static int walk_ident(lua_State *L, ctx *c, int v, const path *p)
{
    unsigned seen = 0;
    const char *kind = NULL;
    size_t klen = 0;
    int raw_empty = 0, ki = -1, i, nt, base = lua_gettop(L);
    /* {kind, rawId, <sub-object>} and one more: a bigger one grows as usual */
    lua_createtable(L, 0, 4);
    nt = base + 1;
    if (lua_getmetatable(L, v)) /* OpenResty's cjson.array_mt on a [] */
        lua_setmetatable(L, nt);
    lua_pushnil(L);
    while (lua_next(L, v)) {
        int val = lua_gettop(L);
        const field *f = NULL;
        if (is_null(L, val)) { /* absent: not copied */
            lua_pop(L, 1);
            continue;
        }
        if (lua_type(L, val - 1) == LUA_TSTRING) {
            size_t kl;
            const char *k = lua_tolstring(L, val - 1, &kl);
            f = find_field(ident_fields, k, kl);
        }
        if (f == &ident_fields[IDENT_KIND] && lua_type(L, val) == LUA_TSTRING) {
            kind = lua_tolstring(L, val, &klen); /* alive: the tables hold it */
        } else if (f == &ident_fields[IDENT_RAWID] && lua_type(L, val) == LUA_TSTRING) {
            /* a rawId the service sent wins; an empty one does not (as in
             * the SDKs and acs_l_raw_id) */
            raw_empty = acs_rawlen(L, val) == 0;
        } else if (f && !c->fast) {
            path here;
            here.up = p;
            here.name = f->name;
            here.index = 0;
            if (walk_value(L, c, val, f, &here) < 0)
                return first_error_in_order(L, c, v, ident_fields, p, base);
        } else if (!f && lua_type(L, val) == LUA_TTABLE) {
            strip(L, c, val);
        }
        if (f)
            seen |= 1u << (unsigned)(f - ident_fields);
        lua_pushvalue(L, val - 1);
        lua_insert(L, val); /* key, key, value */
        lua_rawset(L, nt);
    }
    if (kind) {
        ki = acs_kind_index(kind, klen);
    } else {
        for (i = IDENT_FIRST_SUB; ident_fields[i].name; i++)
            if (seen & (1u << i)) {
                ki = i - IDENT_FIRST_SUB;
                break;
            }
        if (!(seen & (1u << IDENT_KIND))) { /* absent, not a kept odd value */
            lua_pushvalue(L, c->kkind);
            lua_pushstring(L, acs_kind_name(ki));
            lua_rawset(L, nt);
        }
    }
    if ((!(seen & (1u << IDENT_RAWID)) || raw_empty) && acs_ident_push_raw_id(L, nt, ki)) {
        lua_pushvalue(L, c->krawid);
        lua_insert(L, -2);
        lua_rawset(L, nt);
    }
    lua_replace(L, v);
    return W_NEW;
}

/* Check a known field's value (at v) against its type and shape it: W_OK,
 * W_NEW (an identifier rebuilt at v) or W_ERR. */
static int walk_value(lua_State *L, ctx *c, int v, const field *f, const path *p)
{
    size_t n, i;
    int r;
    switch (f->type) {
    case T_STR:
        if (lua_type(L, v) != LUA_TSTRING)
            return mismatch(L, c, p, "string", v) < 0 ? W_ERR : W_OK;
        return W_OK;
    case T_BOOL:
        if (lua_type(L, v) != LUA_TBOOLEAN)
            return mismatch(L, c, p, "boolean", v) < 0 ? W_ERR : W_OK;
        return W_OK;
    case T_OBJ:
        if ((r = check_object(L, c, p, v)) != 0)
            return r < 0 ? W_ERR : W_OK;
        return walk_object(L, c, v, f->sub, p);
    case T_IDENT:
        if ((r = check_object(L, c, p, v)) != 0)
            return r < 0 ? W_ERR : W_OK;
        return walk_ident(L, c, v, p);
    case T_STRARR:
    case T_IDENTARR:
        if (lua_type(L, v) != LUA_TTABLE)
            return mismatch(L, c, p, "array", v) < 0 ? W_ERR : W_OK;
        n = acs_rawlen(L, v);
        if (n == 0) { /* [] or an object: the object (nulls gone) is odd */
            if (!c->strict)
                strip(L, c, v);
            lua_pushnil(L);
            if (lua_next(L, v)) {
                lua_pop(L, 2);
                return mismatch(L, c, p, "array", v) < 0 ? W_ERR : W_OK;
            }
            return W_OK;
        }
        for (i = 1; i <= n; i++) {
            path e;
            int ev, et;
            e.up = p;
            e.name = NULL;
            e.index = (lua_Integer)i;
            lua_rawgeti(L, v, (int)i);
            ev = lua_gettop(L);
            et = lua_type(L, ev);
            if (!c->strict) {
                if (et == LUA_TLIGHTUSERDATA) {
                    /* a null element: strip the array (it closes up, as a
                     * null-free body's would be already) and read i again */
                    lua_pop(L, 1);
                    strip_nulls(L, v);
                    n = acs_rawlen(L, v);
                    i--;
                    continue;
                }
                /* an element that is an array is read nulls stripped: [null]
                 * is an empty object */
                if (et == LUA_TTABLE && acs_rawlen(L, ev) > 0)
                    strip(L, c, ev);
            }
            if (f->type == T_STRARR)
                r = et == LUA_TSTRING ? W_OK : mismatch(L, c, &e, "string", ev);
            else if ((r = check_object(L, c, &e, ev)) == 0)
                r = walk_ident(L, c, ev, &e);
            if (r < 0)
                return W_ERR;
            if (r == W_NEW)
                lua_rawseti(L, v, (int)i);
            else
                lua_pop(L, 1);
        }
        return W_OK;
    }
    return W_OK;
}

/* ------------------------------------------------------------------ */
/* the fast path: not strict and no null in the body. Then a wrong-typed
 * value is kept as sent and there is nothing to strip, so walking the
 * model changes nothing but the identifiers: only they are visited. */

/* push t[k] (raw; k a literal) and return its type */
#define rawget_lit(L, t, k) (lua_pushliteral((L), k), lua_rawget((L), (t)), lua_type((L), -1))

/* The identifier at v (a table): W_OK (left as it is, or its rawId added
 * in place) or W_NEW (rebuilt by walk_ident, which infers a missing kind).
 * With a kind, at most rawId is added: cjson's table then grows once, which
 * costs less than copying it (measured); without one, kind and rawId are
 * added to a copy made at its final size rather than growing it twice. */
static int shape_ident(lua_State *L, ctx *c, int v, const path *p)
{
    size_t kl, rl = 0;
    const char *k;
    int rt;
    lua_pushvalue(L, c->kkind);
    lua_rawget(L, v);
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        return walk_ident(L, c, v, p);
    }
    k = lua_tolstring(L, -1, &kl);
    lua_pushvalue(L, c->krawid);
    lua_rawget(L, v);
    rt = lua_type(L, -1);
    if (rt == LUA_TSTRING)
        lua_tolstring(L, -1, &rl);
    /* a rawId the service sent wins (an odd one is kept); an empty one does
     * not (as in the SDKs and acs_l_raw_id) */
    if ((rt == LUA_TNIL || (rt == LUA_TSTRING && rl == 0)) &&
        acs_ident_push_raw_id(L, v, acs_kind_index(k, kl))) {
        lua_pushvalue(L, c->krawid);
        lua_insert(L, -2);
        lua_rawset(L, v);
    }
    lua_pop(L, 2);
    return W_OK;
}

/* source and targets[i] of the call at t */
static void shape_fast(lua_State *L, ctx *c, int t)
{
    int v;
    path here;
    here.up = NULL;
    here.index = 0;
    here.name = "source";
    if (rawget_lit(L, t, "source") == LUA_TTABLE && acs_rawlen(L, -1) == 0 &&
        shape_ident(L, c, lua_gettop(L), &here) == W_NEW)
        lua_setfield(L, t, "source");
    else
        lua_pop(L, 1);
    here.name = "targets";
    if (rawget_lit(L, t, "targets") == LUA_TTABLE) {
        size_t i, n;
        v = lua_gettop(L);
        n = acs_rawlen(L, v);
        for (i = 1; i <= n; i++) {
            path e;
            e.up = &here;
            e.name = NULL;
            e.index = (lua_Integer)i;
            lua_rawgeti(L, v, (int)i);
            if (lua_type(L, -1) == LUA_TTABLE && acs_rawlen(L, -1) == 0 &&
                shape_ident(L, c, lua_gettop(L), &e) == W_NEW)
                lua_rawseti(L, v, (int)i);
            else
                lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* The error path: walk the known fields again in spec order (the first
 * pass went in hash order) so the error reported does not depend on the
 * table's layout. Walking a shaped value again is harmless. Returns -1. */
static int first_error_in_order(lua_State *L, ctx *c, int t, const field *spec,
                                const path *p, int base)
{
    const field *s;
    luaL_checkstack(L, 6, "acscall: JSON too deep");
    for (s = spec; s->name; s++) {
        lua_settop(L, base);
        lua_pushlstring(L, s->name, s->len);
        lua_rawget(L, t);
        if (!lua_isnil(L, -1) && !is_null(L, -1)) { /* null: absent */
            path here;
            here.up = p;
            here.name = s->name;
            here.index = 0;
            if (walk_value(L, c, lua_gettop(L), s, &here) < 0) {
                lua_settop(L, base);
                return W_ERR;
            }
        }
    }
    lua_settop(L, base);
    return W_ERR; /* not found again: keep the first pass's message */
}

/* Walk the object at t in place: nulls removed, known fields checked (and
 * shaped), unknown fields stripped of nulls. Returns W_OK, or W_ERR with
 * c->err set. The stack room it needs was checked once (the model's depth
 * is fixed), in decode_ok. */
static int walk_object(lua_State *L, ctx *c, int t, const field *spec,
                       const path *p)
{
    int base = lua_gettop(L);
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
            f = find_field(spec, k, kl);
        }
        if (f) {
            path here;
            int r;
            here.up = p;
            here.name = f->name;
            here.index = 0;
            r = walk_value(L, c, v, f, &here);
            if (r < 0)
                return first_error_in_order(L, c, t, spec, p, base);
            if (r == W_NEW) { /* assigning an existing field mid-next */
                lua_pushvalue(L, v - 1);
                lua_insert(L, v);
                lua_rawset(L, t);
                continue;
            }
        } else if (lua_type(L, v) == LUA_TTABLE) {
            strip(L, c, v);
        }
        lua_pop(L, 1);
    }
    return W_OK;
}
/* ------------------------------------------------------------------ */
/* results */

static int decode_failure(lua_State *L, long status, const acs_resp_meta *meta,
                          acs_msgbuf *text)
{
    acs_msgbuf m;
    int info;
    acs_mb_finish(text);
    info = acs_failure_push_info(L, "decode", status, meta);
    lua_pushlstring(L, text->b, text->n);
    lua_setfield(L, info, "message");
    acs_mb_init(&m, ACS_MSG_CAP);
    acs_mb_sep(&m, "decode: ");
    acs_mb_add(&m, text->b, text->n);
    return acs_failure_finish(L, &m);
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

/* A UTF-16 server that cuts a string can leave a lone surrogate escape
 * ("\ud83d" at the end); lua-cjson rejects the whole body for it. Replace
 * each lone one with \ufffd (the same length), as the SDKs' JSON.parse
 * decodes it to U+FFFD. If the body at bi has one, it is replaced there by
 * a fixed copy and 1 returned, else 0. Escaped backslashes are skipped, so
 * "\\ud800" is text. memchr jumps from one backslash to the next. */
static int fix_lone_surrogates(lua_State *L, int bi)
{
    size_t len, i;
    const char *s = lua_tolstring(L, bi, &len), *q;
    char *w = NULL;
    for (i = 0; i + 1 < len; i++) {
        long u, lo;
        if (s[i] != '\\') { /* to the next backslash (before the last byte) */
            if ((q = memchr(s + i, '\\', len - 1 - i)) == NULL)
                break;
            i = (size_t)(q - s);
        }
        if (s[i + 1] != 'u' || i + 6 > len || (u = acs_u_escape(s + i)) < 0xD800 ||
            u > 0xDFFF) {
            i++; /* an escape that is not a surrogate: skip its letter */
            continue;
        }
        if (u <= 0xDBFF && i + 12 <= len && (lo = acs_u_escape(s + i + 6)) >= 0xDC00 &&
            lo <= 0xDFFF) {
            i += 11; /* a valid pair */
            continue;
        }
        if (w == NULL) { /* the first lone one: work on a copy */
            w = lua_newuserdata(L, len);
            memcpy(w, s, len);
        }
        w[i + 2] = 'f'; /* \ufffd */
        w[i + 3] = 'f';
        w[i + 4] = 'f';
        w[i + 5] = 'd';
        i += 5;
    }
    if (w) {
        lua_pushlstring(L, w, len);
        lua_replace(L, bi);
        lua_pop(L, 1); /* the scratch copy */
        return 1;
    }
    return 0;
}

/* A Content-Encoding other than identity: acscall never asks for one, so
 * the body is not JSON it can read. */
static int encoded(const acs_resp_meta *meta)
{
    const char *e = meta ? meta->content_encoding : NULL;
    return e && *e && strcmp(e, "identity") != 0;
}

static int decode_http_error(lua_State *L, int bi, long status,
                             const acs_resp_meta *meta);

/* 2xx: body string at bi */
static int decode_ok(lua_State *L, int bi, long status, const acs_resp_meta *meta)
{
    size_t len, i;
    const char *body = lua_tolstring(L, bi, &len);
    const char *jerr;
    ctx c;
    int base = lua_gettop(L), t;

    c.strict = meta && meta->strict;
    if (encoded(meta)) {
        acs_mb_init(&c.err, ACS_MSG_CAP - 8);
        acs_mb_sep(&c.err, "response body is encoded (Content-Encoding: ");
        acs_mb_str(&c.err, meta->content_encoding);
        acs_mb_sep(&c.err, "), which acscall never asks for");
        return decode_failure(L, status, meta, &c.err);
    }
    i = skip_ws(body, len);
    if (i == len) {
        acs_mb_init(&c.err, ACS_MSG_CAP - 8);
        acs_mb_str(&c.err, "response body is empty");
        return decode_failure(L, status, meta, &c.err);
    }
    jerr = cjson_decode(L, bi, meta);
    /* A body cjson takes has no lone surrogate escape (it refuses every
     * one), so only a refused body is looked at: fixed, it is decoded again
     * and that answer stands (the same as fixing first). */
    if (jerr && fix_lone_surrogates(L, bi)) {
        lua_settop(L, base);
        body = lua_tolstring(L, bi, &len);
        jerr = cjson_decode(L, bi, meta);
    }
    if (jerr) {
        acs_mb_init(&c.err, ACS_MSG_CAP - 8);
        acs_mb_sep(&c.err, "invalid JSON: ");
        acs_mb_str(&c.err, jerr);
        lua_settop(L, base);
        return decode_failure(L, status, meta, &c.err);
    }
    t = lua_gettop(L);
    /* cjson gives {} and [] the same empty table: the first byte tells */
    if (lua_type(L, t) != LUA_TTABLE || body[i] != '{') {
        acs_mb_init(&c.err, ACS_MSG_CAP - 8);
        acs_mb_sep(&c.err, "expected a JSON object, got ");
        acs_mb_str(&c.err, lua_type(L, t) == LUA_TTABLE ? "array" : json_type(L, t));
        lua_settop(L, base);
        return decode_failure(L, status, meta, &c.err);
    }
    /* a 2xx that is a CommunicationErrorResponse: the service's error */
    if (rawget_lit(L, t, "error") == LUA_TTABLE) {
        if (rawget_lit(L, t, "callConnectionId") == LUA_TNIL) {
            lua_settop(L, base);
            return decode_http_error(L, bi, status, meta);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    /* the walk's whole depth (the model nests 4 deep; unknown values and
     * the error path check for themselves) */
    luaL_checkstack(L, 24, "acscall: JSON too deep");
    c.body = body;
    c.len = len;
    c.has_null = -1;
    c.fast = !c.strict && !may_have_null(&c);
    lua_pushliteral(L, "kind"); /* the keys an identifier may get, pushed once */
    c.kkind = lua_gettop(L);
    lua_pushliteral(L, "rawId");
    c.krawid = lua_gettop(L);
    if (c.fast) {
        shape_fast(L, &c, t);
    } else if (walk_object(L, &c, t, call_fields, NULL)) {
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

/* A readable excerpt of a non-JSON body: an HTML <title>, else (markup) the
 * first text between tags, else the first line. */
static void body_excerpt(acs_msgbuf *m, const char *s, size_t len)
{
    size_t i, j;
    acs_mb_init(m, ACS_EXCERPT_CAP);
    for (i = 0; i + 6 < len; i++)
        if (s[i] == '<' && acs_starts_ci(s + i, len - i, "<title")) {
            for (j = i + 6; j < len && s[j] != '>'; j++)
                ;
            for (j++; j < len && s[j] != '<'; j++)
                acs_mb_add(m, s + j, 1);
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
            acs_mb_add(m, s + i, 1);
        }
        return;
    }
    for (; i < len && !m->full; i++) { /* text: its first line */
        if (s[i] == '\n' || s[i] == '\r')
            break;
        acs_mb_add(m, s + i, 1);
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
    const char *body;
    const char *phrase = reason_phrase(status);
    acs_msgbuf m, ex;
    int info, json = 0;

    /* nothing is read from an error body before its credentials are gone */
    body = lua_tolstring(L, bi, &len);
    acs_push_redacted(L, body, len, meta ? meta->secrets : NULL,
                      meta ? meta->nsecrets : 0);
    lua_replace(L, bi);
    fix_lone_surrogates(L, bi);
    body = lua_tolstring(L, bi, &len);
    info = acs_failure_push_info(L, "http", status, meta);

    acs_mb_init(&m, ACS_MSG_CAP);
    acs_mb_http(&m, status);
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
            acs_mb_sep(&m, ": ");
            if (msglen > 0)
                acs_mb_add(&m, msg, msglen);
            else if (phrase)
                acs_mb_str(&m, phrase);
            if (has_code) {
                lua_getfield(L, info, "code");
                acs_mb_sep(&m, msglen > 0 || phrase ? " (code " : "(code ");
                acs_mb_str(&m, lua_tostring(L, -1));
                acs_mb_sep(&m, ")");
                lua_pop(L, 1);
            }
            if (m.n == 0 || m.b[m.n - 1] == ' ')
                m.n -= 2; /* nothing after ": " */
        }
        lua_settop(L, info);
    }
    if (!json && !encoded(meta)) {
        body_excerpt(&ex, body, len);
        acs_mb_finish(&ex);
        if (ex.n > 0) {
            acs_mb_sep(&m, ": ");
            acs_mb_add(&m, ex.b, ex.n);
            lua_pushlstring(L, ex.b, ex.n);
            lua_setfield(L, info, "message");
        } else if (phrase) {
            acs_mb_sep(&m, ": ");
            acs_mb_str(&m, phrase);
        }
    }
    return acs_failure_finish(L, &m);
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
const char *acs_table_header(lua_State *L, int t, const char *name)
{
    const char *v = NULL;
    if (lua_type(L, t) != LUA_TTABLE)
        return NULL;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        size_t kl = 0;
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
        if (k && acs_eq_ci(k, kl, name)) {
            if (lua_type(L, -1) == LUA_TTABLE)
                lua_rawgeti(L, -1, 1);
            else
                lua_pushvalue(L, -1);
            v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            lua_pop(L, 3); /* v stays alive: the table (or its list) holds it */
            return v;
        }
        lua_pop(L, 1);
    }
    return v;
}

/* Lua entry points */

static int l_decode(lua_State *L)
{
    acs_resp_meta meta;
    long status = (long)luaL_checkinteger(L, 1);
    luaL_optlstring(L, 2, "", NULL); /* nil or none: an empty body */
    memset(&meta, 0, sizeof meta);
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        meta.request_id = acs_table_header(L, 3, "x-ms-request-id");
        meta.client_request_id = acs_table_header(L, 3, "x-ms-client-request-id");
        meta.content_type = acs_table_header(L, 3, "content-type");
        meta.content_encoding = acs_table_header(L, 3, "content-encoding");
    }
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_getfield(L, 4, "strict");
        meta.strict = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (lua_isnoneornil(L, 2)) {
        lua_pushliteral(L, "");
        lua_replace(L, 2);
    }
    lua_settop(L, 3);
    return decode_at(L, status, 2, &meta);
}


/* The model's names for the Lua layer, so no Lua code re-declares the
 * schema: CALL_FIELDS then ARRAY_FIELDS. */
static void push_schema(lua_State *L)
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


void acs_model_open(lua_State *L)
{
    lua_pushcfunction(L, l_decode);
    lua_setfield(L, -2, "decode");
    push_schema(L);
    lua_setfield(L, -3, "ARRAY_FIELDS");
    lua_setfield(L, -2, "CALL_FIELDS");
}
