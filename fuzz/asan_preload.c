/* asan_preload.c - preloaded after the ASan runtime into lua5.4 by
 * `make test-asan`: removes LD_PRELOAD from the environment once the loader
 * has used it, so the processes the specs start (sh, nginx, openssl) run
 * uninstrumented and their own leaks are not reported as ours. Only the
 * lua5.4 process, the one that loads acscall/core.so, runs under ASan. */
#include <stdlib.h>

__attribute__((constructor)) static void acs_asan_unpreload(void)
{
    unsetenv("LD_PRELOAD");
}
