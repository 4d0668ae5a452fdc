/* options.c - options described once, checked, read (options.h); and
 * core.LIMITS (acs_limits.h). */
#include <string.h>

#include <lauxlib.h>

#include "compat.h"
#include "frame.h"
#include "options.h"
#include "request.h"

#define S_TIMEOUT "seconds for one attempt, connecting included"
#define S_CONNECT "seconds to connect"
#define S_DEADLINE "seconds for the whole operation, waits between attempts included"
#define S_RETRIES "false (no retry) or {max=, base_delay=, max_delay=, statuses=, outcomes=, " \
                  "min_total=, min_total_statuses=, by_status=} (seconds; see Retries)"
#define S_UA "a suffix for the User-Agent header"
#define S_CA "a CA bundle file (PEM) instead of the system's"

#define NUM(n, d, lo, hi, ex, doc) \
    {n, ACS_OT_NUMBER, "number", d, NULL, 1, lo, hi, ex, doc}
#define STR(n, max, doc) {n, ACS_OT_STRING, "string", 0, NULL, 0, 0, max, 0, doc}
#define SECONDS(n, ms, doc) NUM(n, (ms) / 1000.0, 0, ACS_SECONDS_MAX, 1, doc)

const acs_option acs_new_options[] = {
    STR("endpoint", 0, "https://<resource>.communication.azure.com (http:// only to loopback)"),
    STR("connection_string", 0, "endpoint=...;accesskey=... (instead of endpoint and access_key)"),
    STR("access_key", 0, "the resource's access key (base64): HMAC-SHA256 signing"),
    STR("token", 0, "a fixed Entra ID bearer token"),
    {"token_provider", ACS_OT_FUNCTION, "function", 0, NULL, 0, 0, 0, 0,
     "a function returning a bearer token, asked before every call"},
    {"credential", ACS_OT_OBJECT, "object", 0, NULL, 0, 0, 0, 0,
     "an object with get_token (acscall.credential), asked before every attempt"},
    {"api_version", ACS_OT_STRING, "string", 0, ACS_DEFAULT_API_VERSION, 1, 1,
     ACS_API_VERSION_MAX, 0, "the api-version query parameter"},
    STR("ca_file", 0, S_CA),
    STR("user_agent", ACS_USER_AGENT_MAX, S_UA),
    SECONDS("timeout", ACS_DEFAULT_TIMEOUT_MS, S_TIMEOUT),
    SECONDS("connect_timeout", ACS_DEFAULT_CONNECT_TIMEOUT_MS, S_CONNECT),
    SECONDS("deadline", ACS_DEFAULT_DEADLINE_MS, S_DEADLINE),
    {"retries", ACS_OT_FALSE | ACS_OT_TABLE, "false|table", 0, NULL, 0, 0,
     ACS_RETRIES_MAX, 0, S_RETRIES},
    NUM("max_body", ACS_DEFAULT_MAX_BODY, ACS_MAX_BODY_MIN, ACS_MAX_BODY_MAX, 0,
        "bytes of response body accepted"),
    {"max_depth", ACS_OT_INTEGER, "integer", ACS_DEFAULT_MAX_DEPTH, NULL, 1,
     ACS_MAX_DEPTH_MIN, ACS_MAX_DEPTH_MAX, 0, "JSON nesting accepted"},
    {"strict", ACS_OT_BOOLEAN, "boolean", 0, "false", 1, 0, 0, 0,
     "a known field of the wrong JSON type is an error (else kept as sent)"},
    {"on_attempt", ACS_OT_FUNCTION, "function", 0, NULL, 0, 0, 0, 0,
     "called once per attempt with a table describing it (never a secret)"},
    {NULL, 0, NULL, 0, NULL, 0, 0, 0, 0, NULL}};

const acs_option acs_fetcher_options[] = {
    STR("ca_file", 0, S_CA),
    STR("user_agent", ACS_USER_AGENT_MAX, S_UA),
    SECONDS("timeout", ACS_DEFAULT_TIMEOUT_MS, S_TIMEOUT),
    SECONDS("connect_timeout", ACS_DEFAULT_CONNECT_TIMEOUT_MS, S_CONNECT),
    SECONDS("deadline", ACS_DEFAULT_DEADLINE_MS, S_DEADLINE),
    {"retries", ACS_OT_INTEGER | ACS_OT_FALSE | ACS_OT_TABLE,
     "integer|false|table", ACS_DEFAULT_RETRIES, NULL, 1, 0, ACS_RETRIES_MAX, 0,
     "the most retries, or " S_RETRIES},
    SECONDS("base_delay", ACS_DEFAULT_BASE_DELAY_MS, "seconds: the first backoff"),
    SECONDS("max_delay", ACS_DEFAULT_MAX_DELAY_MS, "seconds: the longest backoff"),
    NUM("max_body", ACS_FETCH_DEFAULT_MAX_BODY, ACS_MAX_BODY_MIN, ACS_MAX_BODY_MAX, 0,
        "bytes of response body accepted"),
    {"on_attempt", ACS_OT_FUNCTION, "function", 0, NULL, 0, 0, 0, 0,
     "called once per attempt with a table describing it (operation \"token\"; never a secret)"},
    {NULL, 0, NULL, 0, NULL, 0, 0, 0, 0, NULL}};

const acs_option acs_get_calls_options[] = {
    {"concurrency", ACS_OT_INTEGER, "integer", ACS_DEFAULT_CONCURRENCY, NULL, 1,
     1, ACS_CONCURRENCY_MAX, 0, "requests in flight at once"},
    {NULL, 0, NULL, 0, NULL, 0, 0, 0, 0, NULL}};

/* ---------- checking --------------------------------------------------- */

/* Levenshtein distance of two short names (capped at 64 bytes) */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j, row[65];
    if (la > 64 || lb > 64)
        return (size_t)-1;
    for (j = 0; j <= lb; j++)
        row[j] = j;
    for (i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static int type_ok(lua_State *L, int v, int types)
{
    switch (lua_type(L, v)) {
    case LUA_TSTRING:
        return types & ACS_OT_STRING;
    case LUA_TNUMBER:
        if (types & ACS_OT_NUMBER)
            return 1;
        if (types & ACS_OT_INTEGER) { /* range first: a cast of NaN is undefined */
            lua_Number n = lua_tonumber(L, v);
            return n >= -1e15 && n <= 1e15 && n == (lua_Number)(long long)n;
        }
        return 0;
    case LUA_TBOOLEAN:
        return (types & ACS_OT_BOOLEAN) ||
               ((types & ACS_OT_FALSE) && !lua_toboolean(L, v));
    case LUA_TFUNCTION:
        return types & ACS_OT_FUNCTION;
    case LUA_TTABLE:
        return types & (ACS_OT_TABLE | ACS_OT_OBJECT);
    case LUA_TUSERDATA:
        return types & ACS_OT_OBJECT;
    default:
        return 0;
    }
}

void acs_options_check(lua_State *L, int idx, const acs_option *list,
                       const char *who)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const acs_option *o, *near = NULL;
        const char *name;
        size_t best = (size_t)-1;
        if (lua_type(L, -2) != LUA_TSTRING)
            acs_raise(L, "%s: option names are strings (got a %s key)", who,
                       luaL_typename(L, -2));
        name = lua_tostring(L, -2);
        for (o = list; o->name; o++) {
            size_t d;
            if (strcmp(o->name, name) == 0)
                break;
            if ((d = distance(o->name, name)) < best) {
                best = d;
                near = o;
            }
        }
        if (o->name == NULL) {
            /* a suggestion only when it is a plausible misspelling */
            if (near && best <= 1 + strlen(near->name) / 3)
                acs_raise(L, "%s: unknown option '%s' (did you mean '%s'?)", who,
                           name, near->name);
            acs_raise(L, "%s: unknown option '%s'", who, name);
        }
        if (!type_ok(L, -1, o->types))
            acs_raise(L, "%s: option '%s' must be %s %s, got %s", who, o->name,
                       o->type[0] == 'i' || o->type[0] == 'o' ? "an" : "a",
                       o->type, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
}

/* ---------- readers ---------------------------------------------------- */

/* The string option `name`, or NULL. The value stays on the stack until
 * the caller returns: the options table need not keep it alive (its
 * __index may make values on the fly). */
const char *acs_opt_string(lua_State *L, const char *who, const char *name,
                           size_t *len)
{
    lua_getfield(L, 1, name);
    if (lua_isnil(L, -1))
        return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: option '%s' must be a string", who, name);
    return lua_tolstring(L, -1, len);
}

int acs_opt_bool(lua_State *L, const char *who, const char *name, int dflt)
{
    int v = dflt;
    lua_getfield(L, 1, name);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            luaL_error(L, "%s: option '%s' must be a boolean", who, name);
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

long acs_opt_ms(lua_State *L, const char *who, const char *name, long dflt)
{
    long v = dflt;
    lua_getfield(L, 1, name);
    if (!lua_isnil(L, -1)) {
        lua_Number n;
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "%s: option '%s' must be a number (seconds)", who,
                       name);
        n = lua_tonumber(L, -1);
        if (!(n > 0 && n <= ACS_SECONDS_MAX))
            luaL_error(L, "%s: option '%s' must be > 0 and <= %d", who,
                       name, ACS_SECONDS_MAX);
        v = (long)(n * 1000.0 + 0.5);
        if (v < 1)
            v = 1;
    }
    lua_pop(L, 1);
    return v;
}

size_t acs_opt_max_body(lua_State *L, const char *who, size_t dflt)
{
    lua_Number n = (lua_Number)dflt;
    lua_getfield(L, 1, "max_body");
    if (!lua_isnil(L, -1)) {
        n = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER ||
            !(n >= ACS_MAX_BODY_MIN && n <= ACS_MAX_BODY_MAX))
            luaL_error(L, "%s: option 'max_body' must be a number of bytes in "
                       "[%d, 1e9]", who, ACS_MAX_BODY_MIN);
    }
    lua_pop(L, 1);
    return (size_t)n;
}

/* retries: the ACS defaults, then the option over them (retry.h
 * acs_retry_read; a number only where the option list allows it: the
 * fetcher) */
void acs_opt_retries(lua_State *L, const char *who, acs_retry_policy *p)
{
    acs_retry_defaults(p);
    lua_getfield(L, 1, "retries");
    acs_retry_read(L, -1, who, p);
    lua_pop(L, 1);
}

/* ---------- export ----------------------------------------------------- */

/* a number as an integer when it is one (5.3+ shows 30, not 30.0) */
static void push_number(lua_State *L, double v)
{
    if (v == (double)(long)v)
        acs_pushint(L, (long)v);
    else
        lua_pushnumber(L, v);
}

static void push_list(lua_State *L, const acs_option *list)
{
    int i;
    lua_newtable(L);
    for (i = 0; list[i].name; i++) {
        const acs_option *o = &list[i];
        lua_createtable(L, 0, 8);
        lua_pushstring(L, o->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, o->type);
        lua_setfield(L, -2, "type");
        if (o->has_dflt) {
            if (o->dflt_s && strcmp(o->type, "boolean") == 0)
                lua_pushboolean(L, strcmp(o->dflt_s, "true") == 0);
            else if (o->dflt_s)
                lua_pushstring(L, o->dflt_s);
            else
                push_number(L, o->dflt);
            lua_setfield(L, -2, "default");
        }
        if (o->max > 0) {
            if (o->min != 0 || (o->types & (ACS_OT_NUMBER | ACS_OT_INTEGER))) {
                acs_pushint(L, (long)o->min);
                lua_setfield(L, -2, "min");
            }
            push_number(L, o->max);
            lua_setfield(L, -2, "max");
        }
        if (o->min_exclusive) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "min_exclusive");
        }
        lua_pushstring(L, o->doc);
        lua_setfield(L, -2, "doc");
        lua_rawseti(L, -2, i + 1);
    }
}

/* LIMITS: acs_limits.h, times in seconds */
static const struct {
    const char *name;
    double value;
} limits[] = {
    {"id_max", ACS_ID_MAX},
    {"key_max", ACS_KEY_MAX},
    {"msg_cap", ACS_MSG_CAP},
    {"excerpt_cap", ACS_EXCERPT_CAP},
    {"redact_min", ACS_REDACT_MIN},
    {"redact_bearer_min", ACS_REDACT_BEARER_MIN},
    {"header_name_max", ACS_HEADER_NAME_MAX},
    {"retries_max", ACS_RETRIES_MAX},
    {"retries_default", ACS_DEFAULT_RETRIES},
    {"retry_statuses_max", ACS_RETRY_STATUSES_MAX},
    {"token_lifetime_max", ACS_TOKEN_LIFETIME_MAX_S},
    {"base_delay_default", ACS_DEFAULT_BASE_DELAY_MS / 1000.0},
    {"max_delay_default", ACS_DEFAULT_MAX_DELAY_MS / 1000.0},
    {"seconds_max", ACS_SECONDS_MAX},
    {"deadline_default", ACS_DEFAULT_DEADLINE_MS / 1000.0},
    {"connect_timeout_default", ACS_DEFAULT_CONNECT_TIMEOUT_MS / 1000.0},
    {"timeout_default", ACS_DEFAULT_TIMEOUT_MS / 1000.0},
    {"max_body_default", ACS_DEFAULT_MAX_BODY},
    {"fetch_max_body_default", ACS_FETCH_DEFAULT_MAX_BODY},
    {"max_body_min", ACS_MAX_BODY_MIN},
    {"max_body_max", ACS_MAX_BODY_MAX},
    {"max_depth_default", ACS_DEFAULT_MAX_DEPTH},
    {"max_depth_min", ACS_MAX_DEPTH_MIN},
    {"max_depth_max", ACS_MAX_DEPTH_MAX},
    {"user_agent_max", ACS_USER_AGENT_MAX},
    {"api_version_max", ACS_API_VERSION_MAX},
    {"concurrency_max", ACS_CONCURRENCY_MAX},
    {"concurrency_default", ACS_DEFAULT_CONCURRENCY},
    {"secrets_max", ACS_SECRETS_MAX},
    {"pool_idle_max", ACS_POOL_IDLE_MAX},
    {"spawn_args_max", ACS_SPAWN_ARGS_MAX},
    {"spawn_timeout_default", ACS_DEFAULT_SPAWN_TIMEOUT_MS / 1000.0},
    {"spawn_timeout_max", ACS_SPAWN_TIMEOUT_MAX},
    {"spawn_output_default", ACS_DEFAULT_SPAWN_OUTPUT},
    {"spawn_output_max", ACS_SPAWN_OUTPUT_MAX},
};

void acs_options_open(lua_State *L)
{
    size_t i;
    push_list(L, acs_new_options);
    lua_setfield(L, -2, "OPTIONS");
    push_list(L, acs_fetcher_options);
    lua_setfield(L, -2, "FETCHER_OPTIONS");
    push_list(L, acs_get_calls_options);
    lua_setfield(L, -2, "GET_CALLS_OPTIONS");
    lua_createtable(L, 0, (int)(sizeof limits / sizeof limits[0]));
    for (i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        push_number(L, limits[i].value);
        lua_setfield(L, -2, limits[i].name);
    }
    lua_setfield(L, -2, "LIMITS");
}
