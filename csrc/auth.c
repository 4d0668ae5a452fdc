/* auth.c - credentials and HMAC-SHA256 request signing. Pure: no I/O, no
 * clock, no Lua. The scheme is ../shared/acs/hmac.md (the official SDKs'). */
#include "auth.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

static void trim(const char **p, size_t *len)
{
    while (*len > 0 && isspace((unsigned char)(*p)[0])) {
        (*p)++;
        (*len)--;
    }
    while (*len > 0 && isspace((unsigned char)(*p)[*len - 1]))
        (*len)--;
}

static int key_is(const char *k, size_t klen, const char *name)
{
    size_t i, n = strlen(name);
    if (klen != n)
        return 0;
    for (i = 0; i < n; i++)
        if (tolower((unsigned char)k[i]) != name[i])
            return 0;
    return 1;
}

/* sdk-behaviour.md: split on ';' and on the first '=' (base64 '=' padding
 * survives), keys case-insensitive in any order, whitespace trimmed; like
 * .NET we refuse empty and duplicate keys; unknown keys are ignored. */
const char *acs_connstr_parse(const char *s, size_t len, acs_span *endpoint,
                              acs_span *access_key)
{
    const char *end;
    int have_ep = 0, have_key = 0;

    endpoint->p = access_key->p = NULL;
    endpoint->len = access_key->len = 0;
    /* One pair of surrounding quotes, as a shell-style env file keeps them
     * (the emulator prints ACS_CONNECTION_STRING='...' for eval): no
     * connection string starts with a quote, so this takes nothing away. */
    trim(&s, &len);
    if (len >= 2 && (s[0] == '\'' || s[0] == '"') && s[len - 1] == s[0]) {
        s++;
        len -= 2;
    }
    end = s + len;
    while (s < end) {
        const char *semi = memchr(s, ';', (size_t)(end - s));
        const char *seg_end = semi ? semi : end;
        const char *eq, *k = s, *v;
        size_t klen, vlen, seglen = (size_t)(seg_end - s);

        trim(&k, &seglen);
        s = semi ? semi + 1 : end;
        if (seglen == 0)
            continue; /* "a=b;;c=d" or a trailing ';' */
        eq = memchr(k, '=', seglen);
        if (eq == NULL)
            return "connection string: a segment has no '='";
        klen = (size_t)(eq - k);
        v = eq + 1;
        vlen = seglen - klen - 1;
        trim(&k, &klen);
        trim(&v, &vlen);
        if (klen == 0)
            return "connection string: a segment has an empty key";
        if (key_is(k, klen, "endpoint")) {
            if (have_ep++)
                return "connection string: duplicate key 'endpoint'";
            endpoint->p = v;
            endpoint->len = vlen;
        } else if (key_is(k, klen, "accesskey")) {
            if (have_key++)
                return "connection string: duplicate key 'accesskey'";
            access_key->p = v;
            access_key->len = vlen;
        }
    }
    if (!have_ep || endpoint->len == 0)
        return "connection string: missing or empty 'endpoint'";
    if (!have_key || access_key->len == 0)
        return "connection string: missing or empty 'accesskey'";
    return NULL;
}

const char *acs_key_decode(const char *b64, size_t len, unsigned char *out,
                           size_t *outlen)
{
    EVP_ENCODE_CTX *ctx;
    int n = 0, m = 0, rc;
    size_t i;

    *outlen = 0;
    if (len == 0)
        return "access key is empty";
    if (len > (ACS_KEY_MAX / 3) * 4)
        return "access key is too long";
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)b64[i];
        if (!(isalnum(c) || c == '+' || c == '/' || c == '='))
            return "access key is not valid base64";
    }
    if (len % 4 != 0)
        return "access key is not valid base64";
    ctx = EVP_ENCODE_CTX_new();
    if (ctx == NULL)
        return "out of memory";
    EVP_DecodeInit(ctx);
    rc = EVP_DecodeUpdate(ctx, out, &n, (const unsigned char *)b64, (int)len);
    if (rc >= 0)
        rc = EVP_DecodeFinal(ctx, out + n, &m);
    EVP_ENCODE_CTX_free(ctx);
    if (rc < 0 || n + m == 0)
        return "access key is not valid base64";
    *outlen = (size_t)n + (size_t)m;
    return NULL;
}

void acs_format_date(time_t t, char out[ACS_DATE_LEN + 1])
{
    /* Names spelled out here: strftime would follow the C locale (hmac.md). */
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                    "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year < -1900 || tm.tm_year > 8099)
        memset(&tm, 0, sizeof tm); /* out of years 0-9999: no garbage index */
    memcpy(out, days[tm.tm_wday], 3);
    out[3] = ',';
    out[4] = ' ';
    out[5] = (char)('0' + tm.tm_mday / 10);
    out[6] = (char)('0' + tm.tm_mday % 10);
    out[7] = ' ';
    memcpy(out + 8, months[tm.tm_mon], 3);
    out[11] = ' ';
    {
        int y = tm.tm_year + 1900; /* four digits until year 9999 */
        out[12] = (char)('0' + (y / 1000) % 10);
        out[13] = (char)('0' + (y / 100) % 10);
        out[14] = (char)('0' + (y / 10) % 10);
        out[15] = (char)('0' + y % 10);
    }
    out[16] = ' ';
    out[17] = (char)('0' + tm.tm_hour / 10);
    out[18] = (char)('0' + tm.tm_hour % 10);
    out[19] = ':';
    out[20] = (char)('0' + tm.tm_min / 10);
    out[21] = (char)('0' + tm.tm_min % 10);
    out[22] = ':';
    out[23] = (char)('0' + tm.tm_sec / 10);
    out[24] = (char)('0' + tm.tm_sec % 10);
    memcpy(out + 25, " GMT", 5); /* includes the NUL */
}

void acs_content_hash(const char *body, size_t len,
                      char out[ACS_B64_SHA256_LEN + 1])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)body, len, md);
    EVP_EncodeBlock((unsigned char *)out, md, SHA256_DIGEST_LENGTH);
}

struct acs_signer {
    EVP_MAC *alg;
    EVP_MAC_CTX *keyed;
};

acs_signer *acs_signer_new(const unsigned char *key, size_t keylen)
{
    /* EVP_MAC is OpenSSL 3's interface (HMAC_CTX is deprecated there). */
    OSSL_PARAM params[2];
    acs_signer *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    s->alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    s->keyed = s->alg ? EVP_MAC_CTX_new(s->alg) : NULL;
    if (s->keyed == NULL || !EVP_MAC_init(s->keyed, key, keylen, params)) {
        acs_signer_free(s);
        return NULL;
    }
    return s;
}

void acs_signer_free(acs_signer *s)
{
    if (s == NULL)
        return;
    EVP_MAC_CTX_free(s->keyed);
    EVP_MAC_free(s->alg);
    free(s);
}

static int mac_add(EVP_MAC_CTX *ctx, const char *p, size_t n)
{
    return EVP_MAC_update(ctx, (const unsigned char *)p, n);
}

int acs_signer_sign(const acs_signer *s, const char *method,
                    const char *path_and_query, size_t pq_len, const char *date,
                    const char *host, const char *content_hash,
                    char out[ACS_B64_SHA256_LEN + 1])
{
    /* HMAC over the pieces of string_to_sign in turn: no buffer to size. */
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(s->keyed);
    int ok = ctx != NULL && mac_add(ctx, method, strlen(method)) &&
             mac_add(ctx, "\n", 1) && mac_add(ctx, path_and_query, pq_len) &&
             mac_add(ctx, "\n", 1) && mac_add(ctx, date, strlen(date)) &&
             mac_add(ctx, ";", 1) && mac_add(ctx, host, strlen(host)) &&
             mac_add(ctx, ";", 1) &&
             mac_add(ctx, content_hash, strlen(content_hash)) &&
             EVP_MAC_final(ctx, mac, &maclen, sizeof mac) && maclen == 32;
    EVP_MAC_CTX_free(ctx);
    if (!ok)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, mac, 32);
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

int acs_sign(const unsigned char *key, size_t keylen, const char *method,
             const char *path_and_query, size_t pq_len, const char *date,
             const char *host, const char *content_hash,
             char out[ACS_B64_SHA256_LEN + 1])
{
    acs_signer *s = acs_signer_new(key, keylen);
    int rc = s ? acs_signer_sign(s, method, path_and_query, pq_len, date, host,
                                 content_hash, out)
               : -1;
    acs_signer_free(s);
    return rc;
}

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
