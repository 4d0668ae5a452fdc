/* identifier.c - rawId <-> identifier, from one prefix table (identifier.h). */
#include <string.h>

#include <lauxlib.h>

#include "compat.h"
#include "identifier.h"

static const char *const kind_names[ACS_KIND_COUNT] = {
    "communicationUser", "phoneNumber", "microsoftTeamsUser",
    "microsoftTeamsApp", "teamsExtensionUser"};

const char *acs_kind_name(int kind)
{
    return kind >= 0 && kind < ACS_KIND_COUNT ? kind_names[kind] : "unknown";
}

int acs_kind_index(const char *name, size_t len)
{
    static const size_t lens[ACS_KIND_COUNT] = {17, 11, 18, 17, 18};
    int i;
    for (i = 0; i < ACS_KIND_COUNT; i++)
        if (lens[i] == len && memcmp(kind_names[i], name, len) == 0)
            return i;
    return -1;
}

/* The rawId prefixes. Derivation picks the row of the identifier's kind,
 * cloud and anonymity (the first row of the kind when the cloud is unknown
 * or absent: public); parsing picks the row whose prefix the rawId starts
 * with. "derive" = 0 rows are read only when parsing. */
typedef struct {
    const char *prefix;
    int kind;
    const char *cloud; /* NULL: the identifier has no cloud */
    int anon;          /* microsoftTeamsUser isAnonymous */
    int derive;
} prefix_row;

static const prefix_row prefixes[] = {
    {"4:", ACS_KIND_PHONE, NULL, 0, 1},
    {"8:teamsvisitor:", ACS_KIND_TUSER, NULL, 1, 1},
    {"8:orgid:", ACS_KIND_TUSER, "public", 0, 1},
    {"8:dod:", ACS_KIND_TUSER, "dod", 0, 1},
    {"8:gcch:", ACS_KIND_TUSER, "gcch", 0, 1},
    {"28:orgid:", ACS_KIND_APP, "public", 0, 1},
    {"28:dod:", ACS_KIND_APP, "dod", 0, 1},
    {"28:gcch:", ACS_KIND_APP, "gcch", 0, 1},
    {"8:acs:", ACS_KIND_EXT, "public", 0, 1},
    {"8:dod-acs:", ACS_KIND_EXT, "dod", 0, 1},
    {"8:gcch-acs:", ACS_KIND_EXT, "gcch", 0, 1},
    {"8:spool:", ACS_KIND_USER, NULL, 0, 0},
    {NULL, 0, NULL, 0, 0}};

static int streq(const char *s, size_t l, const char *lit)
{
    size_t n = strlen(lit);
    return l == n && memcmp(s, lit, n) == 0;
}

/* The derivation row for kind, the sub-object's cloud and anonymity. */
static const prefix_row *derive_row(int kind, acs_span cloud, int anon)
{
    const prefix_row *r, *first = NULL;
    anon = kind == ACS_KIND_TUSER && anon;
    for (r = prefixes; r->prefix; r++) {
        if (!r->derive || r->kind != kind || r->anon != anon)
            continue;
        if (first == NULL)
            first = r;
        if (r->cloud == NULL || (cloud.p && streq(cloud.p, cloud.len, r->cloud)))
            return r;
    }
    return first;
}

static acs_span span_of(const char *s)
{
    acs_span sp;
    sp.p = s;
    sp.len = strlen(s);
    return sp;
}

int acs_raw_id_pieces(int kind, const acs_ident_fields *f, acs_span out[6])
{
    const prefix_row *r;
    static const char underscore[] = "_";
    if (kind < 0 || kind >= ACS_KIND_COUNT)
        return 0;
    if (kind == ACS_KIND_USER) { /* communicationUser: the id itself */
        if (!f->id.p)
            return 0;
        out[0] = f->id;
        return 1;
    }
    r = derive_row(kind, f->cloud, f->anon);
    out[0] = span_of(r->prefix);
    switch (kind) {
    case ACS_KIND_PHONE:
        out[1] = f->value;
        break;
    case ACS_KIND_TUSER:
        out[1] = f->user_id;
        break;
    case ACS_KIND_APP:
        out[1] = f->app_id;
        break;
    default: /* <prefix><resourceId>_<tenantId>_<userId> */
        if (!f->resource_id.p || !f->tenant_id.p || !f->user_id.p)
            return 0;
        out[1] = f->resource_id;
        out[2] = span_of(underscore);
        out[3] = f->tenant_id;
        out[4] = span_of(underscore);
        out[5] = f->user_id;
        return 6;
    }
    return out[1].p ? 2 : 0;
}

/* t[k] as a span if it is a string (alive while t holds it), else absent */
static acs_span field_span(lua_State *L, int t, const char *k)
{
    acs_span sp = {NULL, 0};
    lua_getfield(L, t, k);
    if (lua_type(L, -1) == LUA_TSTRING)
        sp.p = lua_tolstring(L, -1, &sp.len);
    lua_pop(L, 1);
    return sp;
}

int acs_ident_push_raw_id(lua_State *L, int t, int kind)
{
    int sub, i, n, top = lua_gettop(L);
    acs_ident_fields f;
    acs_span out[6];
    luaL_Buffer b;
    if (kind < 0 || kind >= ACS_KIND_COUNT)
        return 0;
    lua_getfield(L, t, kind_names[kind]);
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_settop(L, top);
        return 0;
    }
    sub = lua_gettop(L);
    f.id = field_span(L, sub, "id");
    f.value = field_span(L, sub, "value");
    f.user_id = field_span(L, sub, "userId");
    f.app_id = field_span(L, sub, "appId");
    f.resource_id = field_span(L, sub, "resourceId");
    f.tenant_id = field_span(L, sub, "tenantId");
    f.cloud = field_span(L, sub, "cloud");
    lua_getfield(L, sub, "isAnonymous");
    f.anon = lua_toboolean(L, -1);
    lua_pop(L, 1);
    n = acs_raw_id_pieces(kind, &f, out);
    if (n == 0) {
        lua_settop(L, top);
        return 0;
    }
    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++)
        luaL_addlstring(&b, out[i].p, out[i].len);
    luaL_pushresult(&b); /* sub stays below until the result is made */
    lua_replace(L, sub);
    lua_settop(L, sub);
    return 1;
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

/* The kind of a (user) identifier table: its kind, else the first
 * sub-object present; -1 for none or an unknown kind. */
static int ident_kind(lua_State *L, int t)
{
    int i, k = -2;
    lua_getfield(L, t, "kind");
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        k = acs_kind_index(s, len);
    }
    lua_pop(L, 1);
    if (k != -2)
        return k;
    for (i = 0; i < ACS_KIND_COUNT; i++) {
        int present;
        lua_getfield(L, t, kind_names[i]);
        present = lua_type(L, -1) == LUA_TTABLE;
        lua_pop(L, 1);
        if (present)
            return i;
    }
    return -1;
}

/* core.raw_id(identifier) -> string | nil */
static int l_raw_id(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (get_str(L, 1, "rawId") && acs_rawlen(L, -1) > 0)
        return 1; /* a rawId given wins (an empty one does not, as in the SDKs) */
    lua_settop(L, 1);
    if (acs_ident_push_raw_id(L, 1, ident_kind(L, 1)))
        return 1;
    lua_pushnil(L);
    return 1;
}

static void set_lstr(lua_State *L, int t, const char *k, const char *v, size_t l)
{
    lua_pushlstring(L, v, l);
    lua_setfield(L, t, k);
}

/* core.identifier_from_raw_id(raw) -> identifier in the wire shape
 * {kind, rawId, <kind> = {...}}, as createIdentifierFromRawId:
 *   "4:<value>"       phoneNumber {value, isAnonymous, assertedId?}: value is
 *                     everything after "4:", assertedId the text after the
 *                     last "_" when non-empty; isAnonymous for "4:anonymous";
 *   otherwise exactly three ":"-separated parts whose first two are a row of
 *   the prefix table; an acs prefix needs a suffix of exactly three
 *   "_"-separated parts (resourceId_tenantId_userId), else the rawId is a
 *   communicationUser id; anything else is {kind = "unknown", rawId = raw}. */
static int l_identifier_from_raw_id(lua_State *L)
{
    size_t len, i, plen = 0, ncolon = 0, slen;
    const char *raw = luaL_checklstring(L, 1, &len), *suf;
    const prefix_row *r, *row = NULL;
    int t, sub, kind = -1;

    lua_settop(L, 1);
    if (len >= 2 && raw[0] == '4' && raw[1] == ':') {
        plen = 2;
    } else {
        for (i = 0; i < len; i++)
            if (raw[i] == ':' && ++ncolon == 2)
                plen = i + 1;
        if (ncolon != 2)
            plen = 0;
    }
    for (r = prefixes; plen && r->prefix; r++)
        if (streq(raw, plen, r->prefix)) {
            row = r;
            kind = r->kind;
            break;
        }
    suf = raw + plen;
    slen = len - plen;
    lua_createtable(L, 0, 3);
    t = lua_gettop(L);
    if (kind == ACS_KIND_EXT) {
        size_t u1 = 0, u2 = 0, nu = 0;
        for (i = 0; i < slen; i++)
            if (suf[i] == '_') {
                if (++nu == 1)
                    u1 = i;
                else if (nu == 2)
                    u2 = i;
            }
        if (nu == 2) {
            lua_createtable(L, 0, 4);
            sub = lua_gettop(L);
            set_lstr(L, sub, "resourceId", suf, u1);
            set_lstr(L, sub, "tenantId", suf + u1 + 1, u2 - u1 - 1);
            set_lstr(L, sub, "userId", suf + u2 + 1, slen - u2 - 1);
        } else {
            kind = ACS_KIND_USER;
        }
    }
    switch (kind) {
    case ACS_KIND_PHONE: {
        int anon = streq(suf, slen, "anonymous");
        lua_createtable(L, 0, 3);
        sub = lua_gettop(L);
        set_lstr(L, sub, "value", suf, slen);
        lua_pushboolean(L, anon);
        lua_setfield(L, sub, "isAnonymous");
        if (!anon) {
            size_t a = 0; /* one past the last "_" */
            for (i = 0; i < slen; i++)
                if (suf[i] == '_')
                    a = i + 1;
            if (a > 0 && a < slen)
                set_lstr(L, sub, "assertedId", suf + a, slen - a);
        }
        break;
    }
    case ACS_KIND_TUSER:
        lua_createtable(L, 0, 3);
        sub = lua_gettop(L);
        set_lstr(L, sub, "userId", suf, slen);
        lua_pushboolean(L, row->anon);
        lua_setfield(L, sub, "isAnonymous");
        break;
    case ACS_KIND_USER:
        lua_createtable(L, 0, 1);
        sub = lua_gettop(L);
        set_lstr(L, sub, "id", raw, len);
        break;
    case ACS_KIND_APP:
        lua_createtable(L, 0, 2);
        sub = lua_gettop(L);
        set_lstr(L, sub, "appId", suf, slen);
        break;
    default: /* ACS_KIND_EXT: built above; unknown: none */
        sub = kind == ACS_KIND_EXT ? t + 1 : 0;
        break;
    }
    if (sub) {
        if (row && row->cloud && kind != ACS_KIND_USER) {
            lua_pushstring(L, row->cloud);
            lua_setfield(L, sub, "cloud");
        }
        lua_setfield(L, t, acs_kind_name(kind));
    }
    lua_pushstring(L, acs_kind_name(kind));
    lua_setfield(L, t, "kind");
    lua_pushvalue(L, 1);
    lua_setfield(L, t, "rawId");
    return 1;
}

void acs_identifier_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"raw_id", l_raw_id},
        {"identifier_from_raw_id", l_identifier_from_raw_id},
        {NULL, NULL}};
    acs_setfuncs(L, fns);
}
