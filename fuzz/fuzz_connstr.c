/* fuzz_connstr.c - libFuzzer harness for credentials and request building
 * (csrc/auth.c, csrc/request.c): no Lua, no network.
 *
 * Byte 0 selects what the rest of the input is:
 *   0 a connection string: acs_connstr_parse, then acs_key_decode on the
 *     access key span, acs_route_init on the endpoint, and a signature with
 *     the decoded key;
 *   1 signing inputs "key\0method\0path?query\0date\0host\0hash": acs_sign,
 *     checked against a one-shot HMAC over the documented string to sign;
 *   2 a call id: acs_encode_segment, checked to be one safe path segment
 *     that decodes back to the id;
 *   3 a URL: acs_url_split and acs_route_init;
 *   4 a base64 key: acs_key_decode, checked against EVP_DecodeBlock;
 *   5 8 bytes of time_t: acs_format_date (IMF-fixdate shape);
 *   6 a header value: acs_header_value_check (any C0 byte or DEL) against a plain scan;
 *   7 16 random bytes: acs_uuid4_format (RFC 4122 version 4 shape).
 * Mode 1 also signs with an acs_signer keyed once and used twice, which must
 * agree with acs_sign.
 * Any violated expectation aborts (a crash for libFuzzer). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "request.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_connstr: expectation violated: %s\n", what);
    abort();
}

/* a NUL-terminated malloc'd copy (ASan sees reads past len) */
static char *dupz(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static int is_b64(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '='))
            return 0;
    }
    return 1;
}

static void check_sig(const char *sig)
{
    if (strlen(sig) != ACS_B64_SHA256_LEN || !is_b64(sig, ACS_B64_SHA256_LEN) ||
        sig[43] != '=')
        fail("signature is not base64 of 32 bytes");
}

static int in_span(const acs_span *sp, const char *s, size_t n)
{
    return sp->p >= s && sp->p + sp->len <= s + n;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
           c == '\r';
}

static void route(const char *endpoint, const char *api_version)
{
    acs_route r;
    const char *err = acs_route_init(&r, endpoint, api_version);
    if (err == NULL) {
        if (!r.origin || !r.host || !r.prefix || !r.query)
            fail("route_init succeeded with a missing piece");
        if (strncmp(r.origin, "https://", 8) != 0 &&
            strncmp(r.origin, "http://", 7) != 0)
            fail("route origin is neither http nor https");
        if (strchr(r.host, '/') || strchr(r.host, '@') ||
            strpbrk(r.host, "\r\n ") || strpbrk(r.prefix, "\r\n ?#") ||
            strpbrk(r.query, "\r\n #"))
            fail("route piece carries a separator");
        acs_route_free(&r);
    } else if (r.origin || r.host || r.prefix || r.query) {
        fail("route_init failed but left allocations");
    }
}

static void do_connstr(const uint8_t *d, size_t n)
{
    const char *s = (const char *)d;
    acs_span ep, key;
    unsigned char out[ACS_KEY_MAX + 64];
    size_t outlen = 12345;
    const char *err = acs_connstr_parse(s, n, &ep, &key);
    char sig[ACS_B64_SHA256_LEN + 1];

    if (err != NULL)
        return;
    if (!in_span(&ep, s, n) || !in_span(&key, s, n) || ep.len == 0 ||
        key.len == 0)
        fail("parsed spans outside the input or empty");
    if (is_space(ep.p[0]) || is_space(ep.p[ep.len - 1]) ||
        is_space(key.p[0]) || is_space(key.p[key.len - 1]) ||
        memchr(ep.p, ';', ep.len) || memchr(key.p, ';', key.len))
        fail("span not trimmed or crosses a ';'");
    memset(out, 0xA5, sizeof out);
    err = acs_key_decode(key.p, key.len, out, &outlen);
    if (err == NULL) {
        size_t i;
        if (outlen == 0 || outlen > ACS_KEY_MAX)
            fail("decoded key length out of range");
        for (i = ACS_KEY_MAX; i < sizeof out; i++)
            if (out[i] != 0xA5)
                fail("key_decode wrote past ACS_KEY_MAX");
        if (acs_sign(out, outlen, "GET", "/x", 2, "Wed, 13 Apr 2022 18:09:12 GMT",
                     "h", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                     sig) != 0)
            fail("sign failed with a decoded key");
        check_sig(sig);
    } else if (outlen != 0) {
        fail("key_decode failed but set outlen");
    }
    {
        char *e = dupz((const uint8_t *)ep.p, ep.len);
        route(e, "2026-03-12");
        free(e);
    }
}

/* split d[0..n) at NULs into up to max pieces */
static size_t split(const uint8_t *d, size_t n, const uint8_t **p, size_t *l,
                    size_t max)
{
    size_t k = 0, start = 0, i;
    for (i = 0; i <= n && k < max; i++) {
        if (i == n || d[i] == 0) {
            p[k] = d + start;
            l[k] = i - start;
            k++;
            start = i + 1;
        }
    }
    return k;
}

static void do_sign(const uint8_t *d, size_t n)
{
    const uint8_t *p[6];
    size_t l[6], k = split(d, n, p, l, 6), i;
    char *f[6], sig[ACS_B64_SHA256_LEN + 1];
    unsigned char mac[EVP_MAX_MD_SIZE], *sts;
    unsigned int maclen = 0;
    char ref[ACS_B64_SHA256_LEN + 1];
    size_t stslen, o;

    for (i = 0; i < 6; i++)
        f[i] = i < k ? dupz(p[i], l[i]) : dupz((const uint8_t *)"", 0);
    for (i = k; i < 6; i++)
        l[i] = 0;
    memset(sig, 'Z', sizeof sig);
    if (acs_sign((const unsigned char *)f[0], l[0], f[1], f[2], l[2], f[3], f[4],
                 f[5], sig) != 0)
        fail("acs_sign failed");
    check_sig(sig);

    /* reference: HMAC-SHA256(key, method "\n" pq "\n" date ";" host ";" hash) */
    stslen = l[1] + 1 + l[2] + 1 + l[3] + 1 + l[4] + 1 + l[5];
    sts = malloc(stslen + 1);
    if (sts == NULL)
        abort();
    o = 0;
#define PUT(s, n) (memcpy(sts + o, (s), (n)), o += (n))
    PUT(f[1], l[1]); PUT("\n", 1);
    PUT(f[2], l[2]); PUT("\n", 1);
    PUT(f[3], l[3]); PUT(";", 1);
    PUT(f[4], l[4]); PUT(";", 1);
    PUT(f[5], l[5]);
#undef PUT
    if (HMAC(EVP_sha256(), f[0], (int)l[0], sts, o, mac, &maclen) == NULL ||
        maclen != 32)
        fail("reference HMAC failed");
    EVP_EncodeBlock((unsigned char *)ref, mac, 32);
    if (strcmp(ref, sig) != 0)
        fail("acs_sign differs from HMAC over the documented string to sign");
    {
        /* a signer keyed once, used twice (its keyed context is duplicated
         * per signature, never consumed) */
        acs_signer *sg = acs_signer_new((const unsigned char *)f[0], l[0]);
        char s1[ACS_B64_SHA256_LEN + 1], s2[ACS_B64_SHA256_LEN + 1];
        if (sg == NULL)
            fail("acs_signer_new failed");
        if (acs_signer_sign(sg, f[1], f[2], l[2], f[3], f[4], f[5], s1) != 0 ||
            acs_signer_sign(sg, f[1], f[2], l[2], f[3], f[4], f[5], s2) != 0)
            fail("acs_signer_sign failed");
        if (strcmp(s1, sig) != 0 || strcmp(s2, sig) != 0)
            fail("acs_signer_sign differs from acs_sign");
        acs_signer_free(sg);
    }
    free(sts);
    for (i = 0; i < 6; i++)
        free(f[i]);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void do_segment(const uint8_t *d, size_t n)
{
    char *in, *out;
    size_t len, i, o;

    if (n > ACS_ID_MAX * 4)
        n = ACS_ID_MAX * 4;
    in = dupz(d, n);
    out = malloc(3 * n + 1); /* exactly what request.h asks for */
    if (out == NULL)
        abort();
    len = acs_encode_segment(in, n, out);
    if (len > 3 * n || strlen(out) != len)
        fail("encoded length wrong");
    if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
        fail("encoded id is a dot segment");
    /* only unreserved characters and %XX; decodes back to the input */
    for (i = 0, o = 0; i < len; i++, o++) {
        char c = out[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len)
                fail("truncated escape");
            hi = hexval(out[i + 1]);
            lo = hexval(out[i + 2]);
            if (hi < 0 || lo < 0)
                fail("bad escape");
            if ((unsigned char)in[o] != (unsigned char)(hi * 16 + lo))
                fail("escape does not decode to the input");
            i += 2;
        } else {
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || strchr("-_.!~*'()", c)))
                fail("reserved or unsafe character left unescaped");
            if (o >= n || in[o] != c)
                fail("literal does not match the input");
        }
    }
    if (o != n)
        fail("encoding does not decode to the whole input");
    free(in);
    free(out);
}

static void do_url(const uint8_t *d, size_t n)
{
    char *url = dupz(d, n), *host = (char *)1, *pq = (char *)1;
    const char *err = acs_url_split(url, &host, &pq);
    if (err == NULL) {
        if (host == NULL || pq == NULL)
            fail("url_split succeeded without host or path");
        if (strpbrk(host, "/@\r\n "))
            fail("host carries a separator");
        free(host);
        free(pq);
    } else if (host != NULL || pq != NULL) {
        fail("url_split failed but returned strings");
    }
    route(url, (n & 1) ? "2026-03-12" : url);
    free(url);
}

static void do_key(const uint8_t *d, size_t n)
{
    unsigned char out[ACS_KEY_MAX + 64];
    size_t outlen = 1;
    const char *err;
    if (n > 2 * ACS_KEY_MAX)
        n = 2 * ACS_KEY_MAX;
    memset(out, 0xA5, sizeof out);
    err = acs_key_decode((const char *)d, n, out, &outlen);
    if (err == NULL) {
        unsigned char ref[ACS_KEY_MAX + 64];
        int rn = EVP_DecodeBlock(ref, d, (int)n), pad = 0;
        size_t i;
        if (rn >= 0) {
            /* EVP_DecodeBlock keeps padding bytes: strip them */
            if (n >= 1 && d[n - 1] == '=')
                pad++;
            if (n >= 2 && d[n - 2] == '=')
                pad++;
            if ((size_t)(rn - pad) == outlen && memcmp(ref, out, outlen) != 0)
                fail("key_decode disagrees with EVP_DecodeBlock");
        }
        if (outlen == 0 || outlen > ACS_KEY_MAX)
            fail("decoded key length out of range");
        for (i = ACS_KEY_MAX; i < sizeof out; i++)
            if (out[i] != 0xA5)
                fail("key_decode wrote past ACS_KEY_MAX");
    }
}

static void do_date(const uint8_t *d, size_t n)
{
    int64_t v = 0;
    char out[ACS_DATE_LEN + 1 + 8];
    size_t i;
    memcpy(&v, d, n < 8 ? n : 8);
    /* any time_t: out of years 0-9999 gmtime_r fails or the year has
     * more than four digits; the shape must hold regardless */
    memset(out, 'Z', sizeof out);
    acs_format_date((time_t)v, out);
    if (strlen(out) != ACS_DATE_LEN)
        fail("date is not 29 characters");
    for (i = 0; i < ACS_DATE_LEN; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e)
            fail("date has a non-printable character");
}

static void do_header_value(const uint8_t *d, size_t n)
{
    size_t i;
    int want = 0;
    /* the header-value rule: any C0 control byte (tab included) or DEL */
    for (i = 0; i < n; i++)
        if (d[i] < 0x20 || d[i] == 0x7f)
            want = 1;
    if ((acs_header_value_check((const char *)d, n) != NULL) != want)
        fail("header value check wrong");
}

static void do_uuid(const uint8_t *d, size_t n)
{
    unsigned char b[16] = {0};
    char out[37 + 8];
    size_t i;
    memcpy(b, d, n < 16 ? n : 16);
    memset(out, 'Z', sizeof out);
    acs_uuid4_format(b, out);
    if (strlen(out) != 36)
        fail("uuid is not 36 characters");
    for (i = 0; i < 36; i++) {
        char c = out[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                fail("uuid dash misplaced");
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            fail("uuid has a non lower-case hex digit");
        }
    }
    if (out[14] != '4' || !strchr("89ab", out[19]))
        fail("uuid version or variant wrong");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *d;
    size_t n;
    uint8_t *copy;
    if (size < 1)
        return 0;
    /* an exact-size heap copy: ASan catches any read past the end */
    n = size - 1;
    copy = malloc(n ? n : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, data + 1, n);
    d = copy;
    switch (data[0] % 8) {
    case 0: do_connstr(d, n); break;
    case 1: do_sign(d, n); break;
    case 2: do_segment(d, n); break;
    case 3: do_url(d, n); break;
    case 4: do_key(d, n); break;
    case 5: do_date(d, n); break;
    case 6: do_header_value(d, n); break;
    case 7: do_uuid(d, n); break;
    }
    free(copy);
    return 0;
}
