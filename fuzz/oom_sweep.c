/* oom_sweep.c - every allocation of a run refused in turn.
 *
 * A small Lua 5.4 host whose allocator refuses allocation number N (counted
 * from the start of the workload) and then recovers, as a host short of
 * memory for a moment would. For each N in [from, to] (step), in a fresh
 * lua_State:
 *   1. the workload runs under lua_pcall: require "acscall", new, get_call,
 *      get_calls (a good id, another, a malformed body), a client with a
 *      token provider (get_call, get_calls), one with a credential whose
 *      first token is refused (401, refresh), a core.fetcher POST, close;
 *      it may fail anywhere;
 *   2. recovery (the allocator no longer refuses): every client the
 *      workload made is closed, and the process must be back to the
 *      descriptors it had before (close() releases, whatever happened);
 *      require "acscall" again, a new client fetches a call and a batch;
 *   3. lua_close, and the descriptors are counted again.
 * A crash is caught by the sanitizers (make test-oom builds this host and
 * the core with ASan+UBSan), a hang by alarm(). Exit 0 when every N passed.
 *
 * Usage: oom_sweep FROM TO STEP   (TO = 0: up to the workload's count)
 * Environment: ACS_CONNECTION_STRING, ACS_ENDPOINT, ACS_TOKEN (the emulator),
 * LUA_PATH / LUA_CPATH (the checkout and its build). */
#include <dirent.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define SEED "18dea47f-b081-4107-9a5c-4300819d2c6c"

static unsigned long nalloc, fail_at;
static int armed;

/* Lua 5.4's allocator contract: only growing requests may fail. Lua 5.4
 * answers a refusal with an emergency collection and one more try, so
 * request N and the one after it are refused: the refusal reaches Lua. */
static void *alloc(void *ud, void *p, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        free(p);
        return NULL;
    }
    if (armed && (p == NULL || nsize > osize)) {
        ++nalloc;
        if (nalloc == fail_at || (fail_at && nalloc == fail_at + 1))
            return NULL;
    }
    return realloc(p, nsize);
}

static int fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static const char workload[] =
    "local CS, EP, TOKEN, SEED = ...\n"
    "local acscall = require 'acscall'\n"
    "local c = acscall.new{connection_string = CS, retries = false}\n"
    "CLIENTS[#CLIENTS + 1] = c\n"
    "c:get_call(SEED)\n"
    "c:get_calls({SEED, 'minimal', 'fault-malformed'}, {concurrency = 2})\n"
    "local p = acscall.new{endpoint = EP, retries = false,\n"
    "  token_provider = function() return TOKEN .. '' end}\n"
    "CLIENTS[#CLIENTS + 1] = p\n"
    "p:get_call(SEED)\n"
    "p:get_calls({SEED, 'minimal'})\n"
    "local cr = acscall.new{endpoint = EP, retries = false, credential = {\n"
    "  get_token = function(_, o) return o and TOKEN .. '' or 'stale-token-0123' end}}\n"
    "CLIENTS[#CLIENTS + 1] = cr\n"
    "cr:get_call(SEED)\n"
    "cr:get_calls({SEED, 'minimal'}, {concurrency = 2})\n"
    "local f = require('acscall.core').fetcher{retries = false}\n"
    "CLIENTS[#CLIENTS + 1] = f\n"
    "f:fetch{url = EP .. 'x', form = {a = 'b c', z = 'y'}, headers = {['X-A'] = '1'}}\n"
    "c:close()\n"
    "p:close()\n"
    "cr:close()\n"
    "f:close()\n";

static const char close_all[] =
    "for _, c in ipairs(CLIENTS) do c:close() end\n"
    "CLIENTS = {}\n"
    "collectgarbage()\n";

static const char recovery[] =
    "local CS, EP, TOKEN, SEED = ...\n"
    "local acscall = require 'acscall'\n"
    "local c = acscall.new{connection_string = CS}\n"
    "assert(c:get_call(SEED))\n"
    "local r = c:get_calls({SEED, 'minimal'})\n"
    "assert(r[1].call and r[2].call, r[1].err or r[2].err)\n"
    "c:close()\n";

/* Load chunk and push its arguments (unprotected: never refused), then
 * run it under lua_pcall, refusing allocations there when arm is set. */
static int run(lua_State *L, const char *chunk, const char *name, int nargs_env,
               int arm)
{
    int n = 0, rc;
    if (luaL_loadbuffer(L, chunk, strlen(chunk), name) != LUA_OK)
        return -1;
    if (nargs_env) {
        lua_pushstring(L, getenv("ACS_CONNECTION_STRING"));
        lua_pushstring(L, getenv("ACS_ENDPOINT"));
        lua_pushstring(L, getenv("ACS_TOKEN"));
        lua_pushliteral(L, SEED);
        n = 4;
    }
    armed = arm;
    rc = lua_pcall(L, n, 0, 0);
    armed = 0;
    return rc;
}

/* One N: 0 when it passed, else prints why and returns 1. */
static int one(unsigned long n, int fds0, unsigned long *count)
{
    lua_State *L = lua_newstate(alloc, NULL);
    int rc;
    if (L == NULL)
        return fprintf(stderr, "oom_sweep: N=%lu: no state\n", n), 1;
    luaL_openlibs(L);
    lua_newtable(L);
    lua_setglobal(L, "CLIENTS");
    nalloc = 0;
    fail_at = n;
    rc = run(L, workload, "=workload", 1, 1);
    if (count)
        *count = nalloc;
    if (n == 0 && rc != LUA_OK) {
        fprintf(stderr, "oom_sweep: the workload fails without any refusal: %s\n",
                lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    lua_settop(L, 0);
    if (run(L, close_all, "=close_all", 0, 0) != LUA_OK) {
        fprintf(stderr, "oom_sweep: N=%lu: close() raised: %s\n", n, lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    if (fds() != fds0) {
        fprintf(stderr, "oom_sweep: N=%lu: close() kept %d descriptors\n", n, fds() - fds0);
        lua_close(L);
        return 1;
    }
    if (run(L, recovery, "=recovery", 1, 0) != LUA_OK) {
        fprintf(stderr, "oom_sweep: N=%lu: no recovery: %s\n", n, lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    lua_close(L);
    if (fds() != fds0) {
        fprintf(stderr, "oom_sweep: N=%lu: lua_close kept %d descriptors\n", n, fds() - fds0);
        return 1;
    }
    return 0;
}

/* Keep the C modules mapped after lua_close (RTLD_NODELETE), so a leak
 * report names their functions (suppressions match lua-cjson's by name). */
static void pin_modules(void)
{
    static const char *const mods[] = {"cjson", "acscall.core", NULL};
    lua_State *L = luaL_newstate();
    int i;
    luaL_openlibs(L);
    for (i = 0; mods[i]; i++) {
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "searchpath");
        lua_pushstring(L, mods[i]);
        lua_getfield(L, -3, "cpath");
        if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_isstring(L, -1))
            dlopen(lua_tostring(L, -1), RTLD_NOW | RTLD_NODELETE);
        lua_settop(L, 0);
    }
    lua_close(L);
}

int main(int argc, char **argv)
{
    unsigned long from = argc > 1 ? strtoul(argv[1], NULL, 10) : 1;
    unsigned long to = argc > 2 ? strtoul(argv[2], NULL, 10) : 0;
    unsigned long step = argc > 3 ? strtoul(argv[3], NULL, 10) : 1, n, total = 0;
    unsigned long failed = 0, done = 0;
    int fds0;
    if (!getenv("ACS_CONNECTION_STRING") || !getenv("ACS_ENDPOINT") || !getenv("ACS_TOKEN"))
        return fprintf(stderr, "oom_sweep: start the emulator first\n"), 2;
    /* libcurl and libcrypto stay loaded across states (the core is
     * dlclose'd by every lua_close) */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pin_modules();
    if (step == 0)
        step = 1;
    /* a first run without refusals: the number of allocations */
    alarm(60);
    fds0 = fds();
    if (one(0, fds0, &total) != 0)
        return 1;
    fds0 = fds(); /* after the first load of every library */
    if (to == 0 || to > total)
        to = total;
    printf("oom_sweep: the workload makes %lu allocations; refusing N = %lu..%lu step %lu\n",
           total, from, to, step);
    fflush(stdout);
    for (n = from; n <= to; n += step) {
        alarm(60); /* a hang ends the sweep (SIGALRM) */
        failed += (unsigned long)one(n, fds0, NULL);
        done++;
    }
    printf("oom_sweep: %lu refusals, %lu failed\n", done, failed);
    return failed ? 1 : 0;
}
