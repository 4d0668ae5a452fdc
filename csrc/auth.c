/* auth.c - credentials and HMAC-SHA256 request signing, and the Lua entry
 * point of the connection-string parser. No I/O. The scheme is the official
 * SDKs' (azure-sdk-for-js communication-common, HMAC-SHA256 policy;
 * @azure/communication-common 2.4.2, npm). */
#include "auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <openssl/crypto.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "util.h"

static void trim(const char **p, size_t *len)
{
    while (*len > 0 && isspace((unsigned char)(*p)[0])) {
        (*p)++;
        (*len)--;
    }
    while (*len > 0 && isspace((unsigned char)(*p)[*len - 1]))
        (*len)--;
}

/* As the SDKs parse it (azure-sdk-for-js sdk/communication/communication-common
 * src/credential/connectionString.ts, @azure/communication-common 2.4.2
 * (npm)): split on ';' and on the first '=' (base64 '=' padding
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
        if (acs_eq_ci(k, klen, "endpoint")) {
            if (have_ep++)
                return "connection string: duplicate key 'endpoint'";
            endpoint->p = v;
            endpoint->len = vlen;
        } else if (acs_eq_ci(k, klen, "accesskey")) {
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
    /* Names spelled out here: strftime would follow the C locale (the SDKs' scheme:
     * src/credential/communicationAccessKeyCredentialPolicy.ts, communication-common 2.4.2). */
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
    EVP_MAC_CTX *work; /* re-initialised from the key per request (no copy) */
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
    if (s->keyed == NULL || !EVP_MAC_init(s->keyed, key, keylen, params) ||
        (s->work = EVP_MAC_CTX_dup(s->keyed)) == NULL) {
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
    EVP_MAC_CTX_free(s->work);
    EVP_MAC_free(s->alg);
    free(s);
}

int acs_signer_sign(const acs_signer *s, const char *method,
                    const char *path_and_query, size_t pq_len, const char *date,
                    const char *host, const char *content_hash,
                    char out[ACS_B64_SHA256_LEN + 1])
{
    /* string_to_sign in one piece when it fits (one update: each costs a
     * provider dispatch), else piece by piece */
    unsigned char mac[EVP_MAX_MD_SIZE];
    char buf[1024];
    size_t maclen = 0, ml = strlen(method), dl = strlen(date), hl = strlen(host);
    size_t cl = strlen(content_hash), n = ml + pq_len + dl + hl + cl + 4;
    /* the work context re-keyed from the key set at acs_signer_new: no
     * allocation per request (the signer serves one request at a time) */
    EVP_MAC_CTX *ctx = s->work;
    int ok = EVP_MAC_init(ctx, NULL, 0, NULL);
    if (ok && n <= sizeof buf) {
        char *p = buf;
        memcpy(p, method, ml), p += ml, *p++ = '\n';
        memcpy(p, path_and_query, pq_len), p += pq_len, *p++ = '\n';
        memcpy(p, date, dl), p += dl, *p++ = ';';
        memcpy(p, host, hl), p += hl, *p++ = ';';
        memcpy(p, content_hash, cl);
        ok = EVP_MAC_update(ctx, (const unsigned char *)buf, n);
        OPENSSL_cleanse(buf, n);
    } else if (ok) {
        ok = EVP_MAC_update(ctx, (const unsigned char *)method, ml) &&
             EVP_MAC_update(ctx, (const unsigned char *)"\n", 1) &&
             EVP_MAC_update(ctx, (const unsigned char *)path_and_query, pq_len) &&
             EVP_MAC_update(ctx, (const unsigned char *)"\n", 1) &&
             EVP_MAC_update(ctx, (const unsigned char *)date, dl) &&
             EVP_MAC_update(ctx, (const unsigned char *)";", 1) &&
             EVP_MAC_update(ctx, (const unsigned char *)host, hl) &&
             EVP_MAC_update(ctx, (const unsigned char *)";", 1) &&
             EVP_MAC_update(ctx, (const unsigned char *)content_hash, cl);
    }
    ok = ok && EVP_MAC_final(ctx, mac, &maclen, sizeof mac) && maclen == 32;
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

/* ---------- credentials ------------------------------------------------- */

char *acs_secret_dup(const char *prefix, const char *s, size_t len)
{
    size_t plen = strlen(prefix);
    char *d = malloc(plen + len + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, prefix, plen);
    memcpy(d + plen, s, len);
    d[plen + len] = '\0';
    return d;
}

void acs_secret_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void acs_credential_free(acs_credential *c)
{
    acs_secret_free(c->token_line);
    c->token_line = NULL;
    acs_secret_free(c->key_text);
    c->key_text = NULL;
    acs_signer_free(c->signer);
    c->signer = NULL;
}

/* ---------- Lua entry points -------------------------------------------- */

/* core.parse_connection_string(s) -> {endpoint=, access_key=}
 * | nil, message (the message never quotes s) */
static int l_parse_connection_string(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    acs_span ep, key;
    const char *err = acs_connstr_parse(s, len, &ep, &key);
    if (err != NULL) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, ep.p, ep.len);
    lua_setfield(L, -2, "endpoint");
    lua_pushlstring(L, key.p, key.len);
    lua_setfield(L, -2, "access_key");
    return 1;
}

void acs_auth_open(lua_State *L)
{
    lua_pushcfunction(L, l_parse_connection_string);
    lua_setfield(L, -2, "parse_connection_string");
}
