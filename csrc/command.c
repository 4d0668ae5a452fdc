/* command.c - core.spawn (command.h): a local command, no shell. */
#define _GNU_SOURCE /* pipe2; posix_spawn_file_actions_addclosefrom_np (glibc 2.34) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "frame.h"
#include "compat.h"
#include "failure.h"
#include "command.h"
#include "util.h"

extern char **environ;

#define WHO "acscall.spawn"

typedef struct {
    char *b;
    size_t len, cap;
    int fd, over;
} sink;

typedef struct {
    const char **argv;
    pid_t pid; /* > 0 until reaped */
    sink out, err;
    size_t max_output;
} spawn_ctx;

static void reap(spawn_ctx *k, int *status)
{
    int st = 0;
    while (waitpid(k->pid, &st, 0) < 0 && errno == EINTR)
        ;
    k->pid = 0;
    if (status)
        *status = st;
}

/* Wait for the child until deadline (acs_monotonic_ms) or an interruption:
 * 1 and *status when it ended (reaped), 0 when it is still running. Its
 * pipes may be closed long before it ends (a daemonising helper, an `az`
 * that closes stdout and sleeps): the deadline bounds this wait too. */
static int reap_by(spawn_ctx *k, long deadline, const acs_watch *w, int *status)
{
    long nap = 1;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(k->pid, &st, WNOHANG);
        long left = deadline - acs_monotonic_ms();
        if (r == k->pid || (r < 0 && errno != EINTR)) {
            k->pid = 0;
            *status = st;
            return 1;
        }
        if (left <= 0 || acs_watch_interrupted(w))
            return 0;
        acs_sleep_ms(nap < left ? nap : left);
        if (nap < 20)
            nap *= 2; /* a quick exit is seen at once, a slow one costs little */
    }
}

/* The child keeps 0, 1 and 2 only: every other descriptor of this process
 * (libcurl's sockets and socket pairs, the host's files) is closed in it.
 * 0 or an errno. */
static int close_the_rest(posix_spawn_file_actions_t *fa)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return posix_spawn_file_actions_addclosefrom_np(fa, 3);
#else
    /* every open descriptor above 2, as listed now (glibc before 2.34,
     * other libcs: no closefrom action) */
    DIR *d = opendir("/dev/fd");
    struct dirent *e;
    int rc = 0;
    if (d == NULL)
        return errno;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (fd > 2 && fd != dirfd(d))
            rc = posix_spawn_file_actions_addclose(fa, fd);
    }
    closedir(d);
    return rc;
#endif
}

static void spawn_cleanup(lua_State *L, void *p)
{
    spawn_ctx *k = p;
    (void)L;
    if (k->pid > 0) { /* Lua raised (or we gave up): never leave a zombie */
        kill(k->pid, SIGKILL);
        reap(k, NULL);
    }
    if (k->out.fd >= 0)
        close(k->out.fd);
    if (k->err.fd >= 0)
        close(k->err.fd);
    k->out.fd = k->err.fd = -1;
    free(k->out.b);
    free(k->err.b);
    k->out.b = k->err.b = NULL;
    free(k->argv);
    k->argv = NULL;
}

/* Read what is there into s; 0 at EOF, 1 more to come, -1 out of memory. */
static int drain(sink *s, size_t max)
{
    char buf[4096];
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (n == 0)
        return 0;
    if (s->len + (size_t)n > max) {
        s->over = 1;
        return 1; /* keep reading (the child must not block), keep nothing */
    }
    if (s->len + (size_t)n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        char *b;
        while (cap < s->len + (size_t)n)
            cap *= 2;
        if ((b = realloc(s->b, cap)) == NULL)
            return -1;
        s->b = b;
        s->cap = cap;
    }
    memcpy(s->b + s->len, buf, (size_t)n);
    s->len += (size_t)n;
    return 1;
}

static int fail(lua_State *L, const char *text, int timeout)
{
    acs_resp_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.timeout = timeout;
    return acs_push_failure(L, "local", 0, text, &meta);
}

/* body: 1 options, 2 ctx */
static int spawn_body(lua_State *L)
{
    spawn_ctx *k = lua_touserdata(L, 2);
    posix_spawn_file_actions_t fa;
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, rc, i, n, status = 0;
    long timeout_ms = ACS_DEFAULT_SPAWN_TIMEOUT_MS, deadline;
    acs_watch w;
    char msg[160];

    lua_settop(L, 1);
    lua_getfield(L, 1, "argv"); /* 2: stays, so the strings stay alive */
    if (lua_type(L, 2) != LUA_TTABLE)
        return luaL_error(L, WHO ": 'argv' must be a list of strings");
    n = (int)acs_rawlen(L, 2);
    if (n < 1 || n > ACS_SPAWN_ARGS_MAX)
        return luaL_error(L, WHO ": 'argv' must hold 1 to %d strings", ACS_SPAWN_ARGS_MAX);
    if ((k->argv = calloc((size_t)n + 1, sizeof *k->argv)) == NULL)
        return fail(L, "out of memory", 0);
    for (i = 1; i <= n; i++) {
        size_t len;
        lua_rawgeti(L, 2, i);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, WHO ": 'argv' must be a list of strings");
        k->argv[i - 1] = lua_tolstring(L, -1, &len);
        if (strlen(k->argv[i - 1]) != len || (i == 1 && len == 0))
            return luaL_error(L, WHO ": an argument is empty or holds NUL");
        lua_pop(L, 1); /* (still referenced by argv) */
    }
    lua_getfield(L, 1, "timeout");
    if (!lua_isnil(L, -1)) {
        lua_Number t = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(t > 0 && t <= ACS_SPAWN_TIMEOUT_MAX))
            return luaL_error(L, WHO ": 'timeout' must be > 0 and <= %d seconds",
                              ACS_SPAWN_TIMEOUT_MAX);
        timeout_ms = (long)(t * 1000.0 + 0.5);
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "max_output");
    if (!lua_isnil(L, -1)) {
        lua_Number m = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(m >= 1 && m <= ACS_SPAWN_OUTPUT_MAX))
            return luaL_error(L, WHO ": 'max_output' must be a number of bytes in [1, 64e6]");
        k->max_output = (size_t)m;
    }
    lua_pop(L, 1);

    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
        if (po[0] >= 0) {
            close(po[0]);
            close(po[1]);
        }
        return fail(L, "cannot create a pipe", 0);
    }
    k->out.fd = po[0]; /* (close-on-exec: the child keeps its dup2'd copies) */
    k->err.fd = pe[0];
    if (posix_spawn_file_actions_init(&fa) != 0) {
        close(po[1]);
        close(pe[1]);
        return fail(L, "out of memory", 0);
    }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    rc = close_the_rest(&fa);
    if (rc == 0)
        rc = posix_spawnp(&k->pid, k->argv[0], &fa, NULL, (char *const *)k->argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(po[1]);
    close(pe[1]);
    if (rc != 0) {
        k->pid = 0;
        snprintf(msg, sizeof msg, "cannot run %.80s: %s", k->argv[0],
                 rc == ENOENT ? "not found" : strerror(rc));
        return fail(L, msg, 0);
    }

    acs_watch_begin(&w, L);
    deadline = acs_monotonic_ms() + timeout_ms;
    while (k->out.fd >= 0 || k->err.fd >= 0) {
        struct pollfd p[2];
        int np = 0, r;
        long left = deadline - acs_monotonic_ms();
        if (left <= 0 || acs_watch_interrupted(&w))
            break;
        if (k->out.fd >= 0) {
            p[np].fd = k->out.fd;
            p[np++].events = POLLIN;
        }
        if (k->err.fd >= 0) {
            p[np].fd = k->err.fd;
            p[np++].events = POLLIN;
        }
        r = poll(p, (nfds_t)np, left > 200 ? 200 : (int)left);
        if (r < 0 && errno != EINTR)
            break;
        for (i = 0; r > 0 && i < np; i++) {
            sink *s = p[i].fd == k->out.fd ? &k->out : &k->err;
            if (p[i].revents == 0)
                continue;
            r = drain(s, k->max_output);
            if (r < 0)
                return fail(L, "out of memory", 0);
            if (r == 0) {
                close(s->fd);
                s->fd = -1;
            }
            r = 1;
        }
    }
    if (k->out.fd >= 0 || k->err.fd >= 0 || !reap_by(k, deadline, &w, &status)) {
        /* timed out or interrupted */
        int interrupted = acs_watch_interrupted(&w);
        kill(k->pid, SIGKILL);
        reap(k, NULL);
        snprintf(msg, sizeof msg, "%.80s %s", k->argv[0],
                 interrupted ? "interrupted" : "timed out");
        return fail(L, msg, !interrupted);
    }
    if (WIFSIGNALED(status)) {
        snprintf(msg, sizeof msg, "%.80s was killed by signal %d", k->argv[0],
                 WTERMSIG(status));
        return fail(L, msg, 0);
    }
    if (k->out.over || k->err.over) {
        snprintf(msg, sizeof msg, "%.80s wrote more than max_output bytes", k->argv[0]);
        return fail(L, msg, 0);
    }
    lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    lua_pushlstring(L, k->out.b ? k->out.b : "", k->out.len);
    lua_pushlstring(L, k->err.b ? k->err.b : "", k->err.len);
    return 3;
}

/* core.spawn(opts) -> code, stdout, stderr | nil, message, info */
static int l_spawn(lua_State *L)
{
    spawn_ctx k;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    memset(&k, 0, sizeof k);
    k.out.fd = k.err.fd = -1;
    k.max_output = ACS_DEFAULT_SPAWN_OUTPUT;
    return acs_call_run(L, 1, spawn_body, &k, spawn_cleanup);
}

void acs_spawn_open(lua_State *L)
{
    lua_pushcfunction(L, l_spawn);
    lua_setfield(L, -2, "spawn");
}
