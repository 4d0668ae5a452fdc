/* util.c - UUIDs, the monotonic clock, sleeping (util.h). */
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "util.h"


void acs_uuid4_format(const unsigned char in[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    int i, o = 0;
    memcpy(b, in, 16);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

int acs_uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return -1;
    acs_uuid4_format(b, out);
    return 0;
}

int acs_starts_ci(const char *s, size_t len, const char *lit)
{
    size_t i, n = strlen(lit);
    if (len < n)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch + ('a' - 'A'));
        if (ch != (unsigned char)lit[i])
            return 0;
    }
    return 1;
}

unsigned int acs_random32(void)
{
    unsigned int r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = 0;
    return r;
}

long acs_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int acs_sleep_ms(long ms)
{
    struct timespec ts;
    if (ms <= 0)
        return 0;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    /* A signal (Ctrl-C in lua.c, which then raises at the next Lua
     * instruction) cuts the wait short instead of being slept through. */
    return nanosleep(&ts, NULL) == 0 ? 0 : -1;
}
