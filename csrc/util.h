/* util.h - small helpers: UUIDs, a case-insensitive prefix test, the
 * process id, jitter, the loopback rule, the monotonic clock, sleeping. */
#ifndef ACS_UTIL_H
#define ACS_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Random UUID v4 (RAND_bytes), 36 chars + NUL. Returns 0 or -1. */
int acs_uuid4(char out[37]);
/* The same from 16 random bytes the caller drew (e.g. in bulk). */
void acs_uuid4_format(const unsigned char b[16], char out[37]);

/* A random number (RAND_bytes, drawn 64 at a time; 0 if none), e.g. for
 * retry jitter. Thread-safe. */
unsigned int acs_random32(void);

/* getpid(), without a syscall per call where the kernel can say "forked"
 * (MADV_WIPEONFORK): one getpid per process. Thread-safe. */
pid_t acs_getpid(void);

/* 1 if s[0..len) starts with lit (lower-case ASCII), ignoring ASCII case. */
int acs_starts_ci(const char *s, size_t len, const char *lit);

/* The one loopback rule (the endpoint check, ACSCALL_LOOPBACK_ONLY and
 * acscall.credential's check all ask it): a host of len bytes is
 * localhost (any case), [::1], or a dotted quad 127.b.c.d (each <= 255). */
int acs_host_is_loopback(const char *host, size_t len);
/* The same for the host of an http:// or https:// URL (after any userinfo,
 * without the port); 0 for anything else. Decided on the text alone. */
int acs_url_is_loopback(const char *url);

/* Milliseconds of CLOCK_MONOTONIC. */
long acs_monotonic_ms(void);
/* Sleep ms: 0 after ms, or -1 when a signal cut the wait short. */
int acs_sleep_ms(long ms);

#endif
