/* util.h - small helpers: UUIDs, case-insensitive tests and lower-casing, the
 * process id, jitter, the loopback rule, the monotonic clock, sleeping. */
#ifndef ACS_UTIL_H
#define ACS_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* A piece of text inside a larger one: not NUL-terminated; p == NULL: absent. */
typedef struct {
    const char *p;
    size_t len;
} acs_span;

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

/* The one case-insensitive compare: 1 if s[0..len) starts with lit
 * (lower-case ASCII), ignoring ASCII case; acs_eq_ci: is exactly lit. */
int acs_starts_ci(const char *s, size_t len, const char *lit);
int acs_eq_ci(const char *s, size_t len, const char *lit);
/* The one lower-casing (ASCII only, whatever the locale): s[0..len) into
 * out, at most cap - 1 bytes, NUL-terminated (cap > 0); out may be s.
 * Returns the bytes written. */
size_t acs_lower_copy(char *out, size_t cap, const char *s, size_t len);

/* The one header lookup: when line[0..len) is the header line
 * "<name>: <value>" (name: lower-case, matched in any case), the value
 * with surrounding spaces and tabs (and a trailing CR LF) trimmed, its
 * length in *vlen; else NULL. */
const char *acs_header_line_value(const char *line, size_t len,
                                  const char *name, size_t *vlen);

/* The one header-value rule, asked for every value built from a token, a
 * key or a caller's header before anything is sent (the libcurl path,
 * the fetcher, core.new, core.check_header_value): NULL when the len
 * bytes at s may be sent, else a static reason that never quotes s. Any
 * C0 control byte (0x00-0x1F, tab included) or DEL (0x7F) is refused:
 * RFC 9110 section 5.5 forbids CR, LF and NUL in a field value and
 * obs-text/controls have no place in a token68 or an id; libcurl sends
 * whatever it is given. */
const char *acs_header_value_check(const char *s, size_t len);
/* the bytes it refuses, for messages */
#define ACS_CONTROL_CHARS "control characters (CR, LF, tab, any C0 byte or DEL)"

/* The one loopback rule (the endpoint check, ACSCALL_LOOPBACK_ONLY and
 * acscall.credential's check all ask it): a host of len bytes is
 * localhost (any case), [::1], or a dotted quad 127.b.c.d (each <= 255). */
int acs_host_is_loopback(const char *host, size_t len);
/* The same for the host of an http:// or https:// URL (after any userinfo,
 * without the port); 0 for anything else. Decided on the text alone. */
int acs_url_is_loopback(const char *url);

/* A growable byte buffer for secrets (form bodies, header lines): its
 * old copies are wiped when it moves, and it is wiped when freed. */
typedef struct {
    char *p;
    size_t len, cap;
} acs_wbuf;
/* Room for n more bytes (and a NUL): 0, or -1 when out of memory. */
int acs_wbuf_reserve(acs_wbuf *b, size_t n);
/* Append len bytes (NUL-terminated after): 0 or -1. */
int acs_wbuf_add(acs_wbuf *b, const char *s, size_t len);
void acs_wbuf_free(acs_wbuf *b);

/* Percent-encoding (RFC 3986 section 2.1, upper-case hex): s[0..len) into
 * out (room for 3 * len + 1), keeping ASCII letters, digits and the bytes
 * in keep; every other byte becomes %XX. Returns the length written (out is
 * NUL-terminated). The one percent-encoder: URL path segments and forms. */
size_t acs_pct_encode(const char *s, size_t len, const char *keep, char *out);

/* A hex digit's value, or -1. */
int acs_hexval(char c);
/* The code unit of a JSON \uXXXX escape at s (6 bytes available), or -1. */
long acs_u_escape(const char *s);

/* Milliseconds of CLOCK_MONOTONIC. */
long acs_monotonic_ms(void);
/* Sleep ms: 0 after ms, or -1 when a signal cut the wait short. */
int acs_sleep_ms(long ms);

#endif
