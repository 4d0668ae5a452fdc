/* retry.c - the verdict after an attempt, and its data (retry.h). */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <lauxlib.h>

#include "compat.h"
#include "retry.h"

static const char *const names[] = {
    "response", "dns", "connect", "timeout", "send", "recv", "closed",
    "truncated", "tls", "protocol", "too_large", "interrupted", "local",
    "other", NULL};

const char *acs_outcome_name(acs_outcome_class c)
{
    return (unsigned)c <= ACS_OUT_OTHER ? names[c] : "other";
}

int acs_outcome_from_name(const char *name)
{
    int i;
    for (i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

#define BIT(c) (1u << (c))

void acs_retry_defaults(acs_retry_policy *p)
{
    static const short acs_statuses[] = {408, 429, 500, 502, 503, 504};
    memset(p, 0, sizeof *p);
    p->max = ACS_DEFAULT_RETRIES;
    p->base_ms = ACS_DEFAULT_BASE_DELAY_MS;
    p->max_ms = ACS_DEFAULT_MAX_DELAY_MS;
    p->timeout_ms = ACS_DEFAULT_TIMEOUT_MS;
    p->connect_timeout_ms = ACS_DEFAULT_CONNECT_TIMEOUT_MS;
    p->deadline_ms = ACS_DEFAULT_DEADLINE_MS;
    p->nstatuses = (int)(sizeof acs_statuses / sizeof acs_statuses[0]);
    memcpy(p->statuses, acs_statuses, sizeof acs_statuses);
    p->outcomes = BIT(ACS_OUT_DNS) | BIT(ACS_OUT_CONNECT) | BIT(ACS_OUT_TIMEOUT) |
                  BIT(ACS_OUT_SEND) | BIT(ACS_OUT_RECV) | BIT(ACS_OUT_CLOSED) |
                  BIT(ACS_OUT_TRUNCATED);
}

/* ---------- reading the policy from Lua ------------------------------- */

/* t.name in seconds (> 0, <= 86400; zero too when zero_ok) as ms, or dflt */
static long seconds(lua_State *L, int t, const char *who, const char *name,
                    long dflt, int zero_ok)
{
    long v = dflt;
    lua_getfield(L, t, name);
    if (!lua_isnil(L, -1)) {
        lua_Number n = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !((zero_ok ? n >= 0 : n > 0) && n <= 86400))
            luaL_error(L, "%s: 'retries' field '%s' must be a number of seconds in %s0, 86400]",
                       who, name, zero_ok ? "[" : "(");
        v = (long)(n * 1000.0 + 0.5);
        if (v < 1 && !zero_ok)
            v = 1;
    }
    lua_pop(L, 1);
    return v;
}

/* t.name: a list of HTTP statuses into out (count *n); absent: unchanged */
static void status_list(lua_State *L, int t, const char *who, const char *name,
                        short *out, int *n)
{
    int i, len;
    lua_getfield(L, t, name);
    if (!lua_isnil(L, -1)) {
        len = lua_type(L, -1) == LUA_TTABLE ? (int)acs_rawlen(L, -1) : -1;
        if (len < 0 || len > ACS_RETRY_STATUSES_MAX)
            luaL_error(L, "%s: 'retries.%s' must be a list of at most %d HTTP statuses",
                       who, name, ACS_RETRY_STATUSES_MAX);
        for (i = 1; i <= len; i++) {
            lua_Number s;
            lua_rawgeti(L, -1, i);
            s = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER || !(s >= 100 && s <= 599) || s != (int)s)
                luaL_error(L, "%s: 'retries.%s' must be a list of HTTP statuses (100-599)",
                           who, name);
            out[i - 1] = (short)s;
            lua_pop(L, 1);
        }
        *n = len;
    }
    lua_pop(L, 1);
}

/* t.max: retries after the first attempt (0..ACS_RETRIES_MAX), or dflt */
static int retries_max(lua_State *L, int t, const char *who, int dflt)
{
    int v = dflt;
    lua_getfield(L, t, "max");
    if (!lua_isnil(L, -1)) {
        lua_Number n = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(n >= 0 && n <= ACS_RETRIES_MAX) ||
            n != (int)n)
            luaL_error(L, "%s: 'retries.max' must be an integer in [0, %d]", who,
                       ACS_RETRIES_MAX);
        v = (int)n;
    }
    lua_pop(L, 1);
    return v;
}

/* t.by_status = {[status] = {max=, base_delay=, max_delay=, min_total=,
 * retry_after_only=}}: each status's own schedule; absent: unchanged */
static void by_status(lua_State *L, int t, const char *who, acs_retry_policy *p)
{
    int n = 0;
    lua_getfield(L, t, "by_status");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "%s: 'retries.by_status' must be a table {[status] = {...}}", who);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        acs_retry_status *e;
        lua_Number s = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;
        int v = lua_gettop(L);
        if (!(s >= 100 && s <= 599) || s != (int)s || lua_type(L, -1) != LUA_TTABLE)
            luaL_error(L, "%s: 'retries.by_status' must map HTTP statuses (100-599) "
                       "to tables", who);
        if (n >= ACS_RETRY_STATUSES_MAX)
            luaL_error(L, "%s: 'retries.by_status' holds at most %d statuses", who,
                       ACS_RETRY_STATUSES_MAX);
        e = &p->by[n++];
        e->status = (short)s;
        e->max = retries_max(L, v, who, -1);
        e->base_ms = seconds(L, v, who, "base_delay", -1, 0);
        e->max_ms = seconds(L, v, who, "max_delay", -1, 0);
        e->min_total_ms = seconds(L, v, who, "min_total", -1, 1);
        lua_getfield(L, v, "retry_after_only");
        e->retry_after_only = (short)lua_toboolean(L, -1);
        lua_pop(L, 2); /* the field, the value */
    }
    lua_pop(L, 1);
    p->nby = n;
}

void acs_retry_read(lua_State *L, int idx, const char *who, acs_retry_policy *p)
{
    int t = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    if (lua_isnoneornil(L, t))
        return;
    if (lua_type(L, t) == LUA_TBOOLEAN && !lua_toboolean(L, t)) {
        p->max = 0;
        p->min_total_ms = 0;
        p->nby = 0;
        return;
    }
    if (lua_type(L, t) == LUA_TNUMBER) {
        lua_Number n = lua_tonumber(L, t);
        if (!(n >= 0 && n <= ACS_RETRIES_MAX) || n != (int)n)
            luaL_error(L, "%s: 'retries' must be an integer in [0, %d]", who,
                       ACS_RETRIES_MAX);
        p->max = (int)n; /* for every status: no status keeps its own */
        p->nby = 0;
        return;
    }
    if (lua_type(L, t) != LUA_TTABLE)
        luaL_error(L, "%s: option 'retries' must be false, a number or a table", who);
    p->max = retries_max(L, t, who, p->max);
    p->base_ms = seconds(L, t, who, "base_delay", p->base_ms, 0);
    p->max_ms = seconds(L, t, who, "max_delay", p->max_ms, 0);
    p->min_total_ms = seconds(L, t, who, "min_total", p->min_total_ms, 1);
    status_list(L, t, who, "statuses", p->statuses, &p->nstatuses);
    status_list(L, t, who, "min_total_statuses", p->min_statuses, &p->nmin_statuses);
    by_status(L, t, who, p);
    lua_getfield(L, t, "outcomes");
    if (!lua_isnil(L, -1)) {
        int i, len;
        unsigned bits = 0;
        if (lua_type(L, -1) != LUA_TTABLE)
            luaL_error(L, "%s: 'retries.outcomes' must be a list of failure names", who);
        len = (int)acs_rawlen(L, -1);
        for (i = 1; i <= len; i++) {
            int c;
            lua_rawgeti(L, -1, i);
            c = lua_type(L, -1) == LUA_TSTRING ? acs_outcome_from_name(lua_tostring(L, -1)) : -1;
            if (c > 0)
                bits |= BIT(c);
            else
                luaL_error(L, "%s: 'retries.outcomes' must list failure names "
                           "(\"dns\", \"connect\", \"timeout\", ...)", who);
            lua_pop(L, 1);
        }
        p->outcomes = bits;
    }
    lua_pop(L, 1);
}

/* ---------- the verdict ------------------------------------------------ */

static int listed(const short *l, int n, long status)
{
    int i;
    for (i = 0; i < n; i++)
        if (l[i] == status)
            return 1;
    return 0;
}

static int retryable(const acs_retry_policy *p, const acs_outcome *o)
{
    if (o->cls == ACS_OUT_RESPONSE)
        return listed(p->statuses, p->nstatuses, o->status);
    return (unsigned)o->cls <= ACS_OUT_OTHER && (p->outcomes & BIT(o->cls)) != 0;
}

/* retries past max until min_total into the call: for this outcome? */
static int within_min_total(const acs_retry_policy *p, const acs_outcome *o,
                            long elapsed_ms)
{
    if (p->min_total_ms <= 0 || elapsed_ms >= p->min_total_ms)
        return 0;
    if (p->nmin_statuses == 0)
        return 1;
    return o->cls == ACS_OUT_RESPONSE && listed(p->min_statuses, p->nmin_statuses, o->status);
}

#define DELAY_CAP_S 100000L /* ~28 h: any longer is "never" */
#define DELAY_CAP_MS (DELAY_CAP_S * 1000L)

/* A non-negative integer header value, or -1. */
static long header_number(const char *v)
{
    long n = 0;
    if (v == NULL || *v == '\0')
        return -1;
    for (; *v; v++) {
        if (*v < '0' || *v > '9')
            return -1;
        if (n > DELAY_CAP_MS)
            return DELAY_CAP_MS;
        n = n * 10 + (*v - '0');
    }
    return n;
}

long acs_retry_server_delay_ms(const acs_outcome *o, time_t now)
{
    long n;
    time_t when;
    if ((n = header_number(o->retry_after_ms)) >= 0)
        return n;
    if ((n = header_number(o->x_retry_after_ms)) >= 0)
        return n;
    if ((n = header_number(o->retry_after)) >= 0)
        return n > DELAY_CAP_S ? DELAY_CAP_MS : n * 1000;
    if (o->retry_after && o->retry_after[0] &&
        (when = curl_getdate(o->retry_after, NULL)) != -1) {
        double d = difftime(when, now);
        return d <= 0 ? 0 : d > (double)DELAY_CAP_S ? DELAY_CAP_MS : (long)(d * 1000);
    }
    return -1;
}

long acs_retry_attempt_timeout(const acs_retry_policy *p, int attempt,
                               long elapsed_ms)
{
    long left = p->deadline_ms - elapsed_ms;
    if (left <= 0)
        return attempt <= 1 ? 1 : 0;
    return left < p->timeout_ms ? left : p->timeout_ms;
}

/* p with o's status's own schedule (by_status) applied, into q; the
 * "retried only with a server's wait" flag as the result. */
static int status_schedule(const acs_retry_policy *p, const acs_outcome *o,
                           acs_retry_policy *q)
{
    int i;
    *q = *p;
    if (o->cls != ACS_OUT_RESPONSE)
        return 0;
    for (i = 0; i < p->nby; i++) {
        const acs_retry_status *e = &p->by[i];
        if (e->status != o->status)
            continue;
        if (e->max >= 0)
            q->max = e->max;
        if (e->base_ms >= 0)
            q->base_ms = e->base_ms;
        if (e->max_ms >= 0)
            q->max_ms = e->max_ms;
        if (e->min_total_ms >= 0) { /* for this status */
            q->min_total_ms = e->min_total_ms;
            q->nmin_statuses = 1;
            q->min_statuses[0] = e->status;
        }
        return e->retry_after_only;
    }
    return 0;
}

void acs_retry_verdict(const acs_retry_policy *policy, int attempts, long elapsed_ms,
                       const acs_outcome *o, int refreshable, time_t now,
                       unsigned int rnd, acs_verdict *v)
{
    acs_retry_policy own;
    const acs_retry_policy *p = &own;
    long d = -1;
    int i, after_only = status_schedule(policy, o, &own);
    v->what = ACS_VERDICT_REPORT;
    v->wait_ms = 0;
    v->reason[0] = '\0';
    if (o->cls == ACS_OUT_RESPONSE && o->status == 401 && refreshable) {
        if (elapsed_ms < p->deadline_ms) {
            v->what = ACS_VERDICT_REFRESH;
            strcpy(v->reason, "refresh");
        }
        return;
    }
    if (!retryable(p, o) || (attempts > p->max && !within_min_total(p, o, elapsed_ms)))
        return;
    if (o->cls == ACS_OUT_RESPONSE && (d = acs_retry_server_delay_ms(o, now)) >= 0) {
        strcpy(v->reason, "retry-after");
    } else if (after_only) {
        return;
    } else {
        d = p->base_ms;
        for (i = 1; i < attempts && d < p->max_ms; i++)
            d *= 2;
        if (d > p->max_ms)
            d = p->max_ms;
        d = d / 2 + (long)(rnd % (unsigned long)(d / 2 + 1));
        if (o->cls == ACS_OUT_RESPONSE)
            snprintf(v->reason, sizeof v->reason, "status %ld", o->status);
        else
            snprintf(v->reason, sizeof v->reason, "%s", acs_outcome_name(o->cls));
    }
    if (d >= p->deadline_ms - elapsed_ms) { /* would outlast the deadline */
        v->reason[0] = '\0';
        return;
    }
    v->what = ACS_VERDICT_RETRY;
    v->wait_ms = d;
}
