/* util.c - UUIDs, the process id, jitter, the monotonic clock, sleeping
 * (util.h). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MADV_WIPEONFORK (glibc) */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
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

static unsigned char lower_ascii(unsigned char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (unsigned char)(ch + ('a' - 'A')) : ch;
}

int acs_starts_ci(const char *s, size_t len, const char *lit)
{
    size_t i, n = strlen(lit);
    if (len < n)
        return 0;
    for (i = 0; i < n; i++)
        if (lower_ascii((unsigned char)s[i]) != (unsigned char)lit[i])
            return 0;
    return 1;
}

size_t acs_lower_copy(char *out, size_t cap, const char *s, size_t len)
{
    size_t i;
    if (cap == 0)
        return 0;
    for (i = 0; i < len && i < cap - 1; i++)
        out[i] = (char)lower_ascii((unsigned char)s[i]);
    out[i] = '\0';
    return i;
}

int acs_eq_ci(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && acs_starts_ci(s, len, lit);
}

const char *acs_header_line_value(const char *line, size_t len,
                                  const char *name, size_t *vlen)
{
    size_t n = strlen(name), b, e;
    if (len <= n || line[n] != ':' || !acs_starts_ci(line, len, name))
        return NULL;
    b = n + 1;
    e = len;
    while (b < e && (line[b] == ' ' || line[b] == '\t'))
        b++;
    while (e > b && (line[e - 1] == ' ' || line[e - 1] == '\t' ||
                     line[e - 1] == '\r' || line[e - 1] == '\n'))
        e--;
    *vlen = e - b;
    return line + b;
}

const char *acs_header_value_check(const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return "has " ACS_CONTROL_CHARS;
    }
    return NULL;
}

int acs_host_is_loopback(const char *h, size_t n)
{
    size_t i = 0;
    int octet;
    if (n == 9 && acs_starts_ci(h, n, "localhost"))
        return 1;
    if (n == 5 && memcmp(h, "[::1]", 5) == 0)
        return 1;
    if (n < 7 || memcmp(h, "127.", 4) != 0)
        return 0;
    for (i = 4, octet = 1; octet < 4; octet++) { /* b, c, d */
        int v = 0, digits = 0;
        while (i < n && h[i] >= '0' && h[i] <= '9' && digits < 3) {
            v = v * 10 + (h[i++] - '0');
            digits++;
        }
        if (digits == 0 || v > 255)
            return 0;
        if (octet < 3 && (i >= n || h[i++] != '.'))
            return 0;
    }
    return i == n;
}

int acs_url_is_loopback(const char *url)
{
    const char *h, *end, *at;
    size_t n;
    if (acs_starts_ci(url, strlen(url), "http://"))
        h = url + 7;
    else if (acs_starts_ci(url, strlen(url), "https://"))
        h = url + 8;
    else
        return 0;
    end = h + strcspn(h, "/?#");
    for (at = h; at < end; at++)
        if (*at == '@') /* userinfo: the host follows the last one */
            h = at + 1;
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));
        n = close ? (size_t)(close - h) + 1 : (size_t)(end - h);
    } else {
        n = strcspn(h, ":");
        if (h + n > end)
            n = (size_t)(end - h);
    }
    if (h + n < end && h[n] != ':') /* anything but a port after the host */
        return 0;
    return acs_host_is_loopback(h, n);
}

/* ---------- the process id without a syscall per call -------------------
 * One page the kernel zeroes in a forked child (MADV_WIPEONFORK, Linux
 * 4.14): it holds the pid, read with a plain load; 0 means "a fork
 * happened (or never asked)": getpid once and store it. No pthread_atfork
 * handler (none to unregister when the module is unloaded, none skipped by
 * a raw fork syscall). Where the page cannot be had: getpid every time. */
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;
static pid_t *pid_page; /* written once, under pthread_once */

static void pid_init(void)
{
#if defined(MAP_ANONYMOUS) && defined(MADV_WIPEONFORK) && defined(__GNUC__)
    long size = sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (size <= 0 || p == MAP_FAILED)
        return;
    if (madvise(p, (size_t)size, MADV_WIPEONFORK) != 0) {
        munmap(p, (size_t)size);
        return;
    }
    pid_page = p; /* never unmapped: a reloaded module makes its own */
#endif
}

pid_t acs_getpid(void)
{
#if defined(__GNUC__)
    pid_t pid;
    pthread_once(&pid_once, pid_init);
    if (pid_page == NULL)
        return getpid();
    /* threads of one process all store the same value: relaxed suffices */
    pid = __atomic_load_n(pid_page, __ATOMIC_RELAXED);
    if (pid == 0) {
        pid = getpid();
        __atomic_store_n(pid_page, pid, __ATOMIC_RELAXED);
    }
    return pid;
#else
    return getpid();
#endif
}

/* ---------- jitter ------------------------------------------------------
 * RAND_bytes costs ~6k instructions a call (it finds the thread's DRBG
 * each time); retry jitter is asked for after every attempt, and used only
 * before a retry. So: 64 numbers drawn at once, per process (a forked
 * child draws its own, as the request ids do), under a mutex. */
static pthread_mutex_t rnd_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned int rnd_pool[64];
static int rnd_left;
static pid_t rnd_pid;

unsigned int acs_random32(void)
{
    unsigned int r = 0;
    pid_t pid = acs_getpid();
    pthread_mutex_lock(&rnd_lock);
    if (rnd_left == 0 || rnd_pid != pid) {
        if (RAND_bytes((unsigned char *)rnd_pool, sizeof rnd_pool) == 1) {
            rnd_left = 64;
            rnd_pid = pid;
        } else {
            rnd_left = 0;
        }
    }
    if (rnd_left > 0)
        r = rnd_pool[--rnd_left];
    pthread_mutex_unlock(&rnd_lock);
    return r;
}

size_t acs_pct_encode(const char *s, size_t len, const char *keep, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, o = 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c && strchr(keep, c))) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

int acs_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long acs_u_escape(const char *s)
{
    long v = 0;
    int i, h;
    if (s[0] != '\\' || s[1] != 'u')
        return -1;
    for (i = 2; i < 6; i++) {
        if ((h = acs_hexval(s[i])) < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

int acs_wbuf_reserve(acs_wbuf *b, size_t n)
{
    size_t c = b->cap ? b->cap : 256;
    char *q;
    if (b->len + n + 1 <= b->cap)
        return 0;
    while (c < b->len + n + 1)
        c *= 2;
    if ((q = malloc(c)) == NULL)
        return -1;
    if (b->p) {
        memcpy(q, b->p, b->len);
        OPENSSL_cleanse(b->p, b->cap);
        free(b->p);
    }
    b->p = q;
    b->cap = c;
    return 0;
}

int acs_wbuf_add(acs_wbuf *b, const char *s, size_t len)
{
    if (acs_wbuf_reserve(b, len) != 0)
        return -1;
    memcpy(b->p + b->len, s, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

void acs_wbuf_free(acs_wbuf *b)
{
    if (b->p) {
        OPENSSL_cleanse(b->p, b->cap);
        free(b->p);
    }
    b->p = NULL;
    b->len = b->cap = 0;
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
