/* form.c - the one form encoder (form.h). */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "form.h"

typedef struct {
    const char *k, *v;
    size_t klen, vlen;
} pair;

static int cmp_pairs(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->k, y->k, n);
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static int add_encoded(acs_wbuf *out, const char *s, size_t len)
{
    if (acs_wbuf_reserve(out, 3 * len + 2) != 0)
        return -1;
    out->len += acs_pct_encode(s, len, "-._~", out->p + out->len); /* unreserved */
    return 0;
}

const char *acs_form_encode(lua_State *L, int idx, acs_wbuf *out)
{
    pair *pairs = NULL;
    size_t n = 0, i;
    const char *why = NULL;
    lua_pushnil(L); /* lua_next and lua_tolstring on strings never raise */
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            why = "'form' must map names to strings";
        n++;
        lua_pop(L, 1);
    }
    if (why)
        return why;
    if (n > 0 && (pairs = malloc(n * sizeof *pairs)) == NULL)
        return "out of memory";
    i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) { /* alive: the table holds them */
        if (i < n) {
            pairs[i].k = lua_tolstring(L, -2, &pairs[i].klen);
            pairs[i].v = lua_tolstring(L, -1, &pairs[i].vlen);
            i++;
        }
        lua_pop(L, 1);
    }
    if (i > 1)
        qsort(pairs, i, sizeof *pairs, cmp_pairs);
    if (acs_wbuf_reserve(out, 1) != 0)
        why = "out of memory";
    else
        out->p[out->len] = '\0';
    for (n = 0; n < i && why == NULL; n++) {
        if ((n > 0 && acs_wbuf_add(out, "&", 1) != 0) ||
            add_encoded(out, pairs[n].k, pairs[n].klen) != 0 ||
            acs_wbuf_add(out, "=", 1) != 0 ||
            add_encoded(out, pairs[n].v, pairs[n].vlen) != 0)
            why = "out of memory";
    }
    free(pairs);
    return why;
}

static int push_wbuf(lua_State *L)
{
    const acs_wbuf *b = lua_touserdata(L, 1);
    lua_pushlstring(L, b->p ? b->p : "", b->len);
    return 1;
}

/* core.form_encode(t) -> string. What can raise (pushing the result: out
 * of memory) runs under lua_pcall, so the buffer is always freed. */
static int l_form_encode(lua_State *L)
{
    acs_wbuf b = {NULL, 0, 0};
    const char *why;
    int st;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_pushcfunction(L, push_wbuf); /* before anything is allocated */
    lua_pushlightuserdata(L, &b);
    why = acs_form_encode(L, 1, &b);
    st = why ? 0 : lua_pcall(L, 1, 1, 0);
    acs_wbuf_free(&b);
    if (why)
        return luaL_error(L, "acscall.form_encode: %s", why);
    if (st != 0)
        return lua_error(L);
    return 1;
}

void acs_form_open(lua_State *L)
{
    lua_pushcfunction(L, l_form_encode);
    lua_setfield(L, -2, "form_encode");
}
