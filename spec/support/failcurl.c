/* spec/support/failcurl.c - an LD_PRELOAD shim for spec/58: libcurl's
 * constructors answer NULL (what they do when memory runs out), so a spec
 * can show what a user sees when this process fails, without exhausting
 * memory. Test-only: compiled by the spec into a temporary directory.
 *   ACS_FAIL_MULTI_INIT=1          curl_multi_init() returns NULL
 *   ACS_FAIL_SHARE_AFTER_FORK=1    curl_share_init() returns NULL in a
 *                                  process forked after the first call */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

typedef void *(*ctor)(void);

/* libcurl's own: core.so loaded it with local scope (lua's dlopen), so
 * RTLD_NEXT cannot see it; ask the library itself */
static void *next(const char *name)
{
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL)
        h = dlopen("libcurl.so.4", RTLD_NOW);
    return h ? dlsym(h, name) : NULL;
}

void *curl_multi_init(void);
void *curl_multi_init(void)
{
    if (getenv("ACS_FAIL_MULTI_INIT"))
        return NULL;
    return ((ctor)next("curl_multi_init"))();
}

void *curl_share_init(void);
void *curl_share_init(void)
{
    static pid_t first;
    if (first == 0)
        first = getpid();
    if (getenv("ACS_FAIL_SHARE_AFTER_FORK") && getpid() != first)
        return NULL;
    return ((ctor)next("curl_share_init"))();
}
