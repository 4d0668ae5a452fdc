/* spec/support/testsupport.c - process primitives the lifetime specs need
 * and that no Debian Lua module offers for every Lua version (Debian's
 * lua-posix has no 5.4 build): fork, waitpid, _exit, getpid, and the count
 * of this process's open descriptors. Test-only: built by `make test` into
 * build/<version>/acscall_testsupport.so, never installed. */
#include <dirent.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

static int l_fork(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)fork());
    return 1;
}

/* waitpid(pid) -> exit status (or 128 + signal) */
static int l_wait(lua_State *L)
{
    int st = 0;
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    if (waitpid(pid, &st, 0) < 0)
        return luaL_error(L, "waitpid failed");
    lua_pushinteger(L, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return 1;
}

static int l_exit(lua_State *L)
{
    _exit((int)luaL_optinteger(L, 1, 0));
    return 0;
}

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

/* open descriptors of this process (/proc/self/fd, less the one reading it) */
static int l_fds(lua_State *L)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return luaL_error(L, "cannot read /proc/self/fd");
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    lua_pushinteger(L, n - 1);
    return 1;
}

int luaopen_acscall_testsupport(lua_State *L);
int luaopen_acscall_testsupport(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, l_fork);
    lua_setfield(L, -2, "fork");
    lua_pushcfunction(L, l_wait);
    lua_setfield(L, -2, "wait");
    lua_pushcfunction(L, l_exit);
    lua_setfield(L, -2, "exit");
    lua_pushcfunction(L, l_getpid);
    lua_setfield(L, -2, "getpid");
    lua_pushcfunction(L, l_fds);
    lua_setfield(L, -2, "fds");
    return 1;
}
