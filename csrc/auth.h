/* auth.h - credentials and HMAC-SHA256 request signing (pure, no I/O, no clock).
 * The official SDKs' scheme: azure-sdk-for-js sdk/communication/communication-common
 * src/credential/communicationAccessKeyCredentialPolicy.ts, @azure/communication-common
 * 2.4.2 (npm); its vectors are in that package's test/internal/cryptoUtils.spec.ts
 * (spec/30 reproduces them). */
#ifndef ACS_AUTH_H
#define ACS_AUTH_H

#include <stddef.h>
#include <time.h>

#include <lua.h>

#include "acs_limits.h"
#include "util.h"

#define ACS_DATE_LEN 29        /* "Wed, 13 Apr 2022 18:09:12 GMT" */
#define ACS_B64_SHA256_LEN 44  /* base64 of 32 bytes */


/* Parse "endpoint=...;accesskey=..." as the SDKs do
 * (azure-sdk-for-js sdk/communication/communication-common src/credential/connectionString.ts,
 * @azure/communication-common 2.4.2, npm):
 * keys case-insensitive, any order, split on ';' and the first '=', whitespace
 * trimmed around keys and values, empty segments skipped. Returns NULL and
 * fills both spans, or a static one-line error (never quoting the input). */
const char *acs_connstr_parse(const char *s, size_t len, acs_span *endpoint,
                              acs_span *access_key);

/* Decode a base64 access key into out[ACS_KEY_MAX]. Returns NULL or a static
 * error ("access key is not valid base64", "access key is empty", ...). */
const char *acs_key_decode(const char *b64, size_t len, unsigned char *out,
                           size_t *outlen);

/* x-ms-date for a UTC instant: IMF-fixdate, English names whatever the locale. */
void acs_format_date(time_t t, char out[ACS_DATE_LEN + 1]);

/* base64(SHA-256("")): every GET's x-ms-content-sha256 (the SDKs'
 * policy hashes the empty body of a GET the same way). */
#define ACS_EMPTY_CONTENT_HASH "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

/* base64(SHA-256(body)), NUL-terminated. */
void acs_content_hash(const char *body, size_t len,
                      char out[ACS_B64_SHA256_LEN + 1]);

/* base64(HMAC-SHA256(key, method "\n" path_and_query "\n" date ";" host ";"
 * content_hash)), NUL-terminated. Returns 0, or -1 if libcrypto failed. */
int acs_sign(const unsigned char *key, size_t keylen, const char *method,
             const char *path_and_query, size_t pq_len, const char *date,
             const char *host, const char *content_hash,
             char out[ACS_B64_SHA256_LEN + 1]);

/* An HMAC-SHA256 context keyed once (a client's access key), so each
 * request pays only for its own bytes. The key lives only inside libcrypto,
 * which wipes it on free. */
typedef struct acs_signer acs_signer;
acs_signer *acs_signer_new(const unsigned char *key, size_t keylen);
void acs_signer_free(acs_signer *s); /* NULL is fine */
/* As acs_sign, with the signer's key. */
int acs_signer_sign(const acs_signer *s, const char *method,
                    const char *path_and_query, size_t pq_len, const char *date,
                    const char *host, const char *content_hash,
                    char out[ACS_B64_SHA256_LEN + 1]);

/* The Authorization value prefix; the signature follows it. */
#define ACS_HMAC_AUTH_PREFIX \
    "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature="

/* A client's credential: exactly one of an HMAC signer (access key), a
 * fixed bearer token, a token provider or a credential object (both Lua,
 * both bearer tokens asked per call; see client.c). */
enum { ACS_AUTH_TOKEN = 1, ACS_AUTH_HMAC, ACS_AUTH_PROVIDER, ACS_AUTH_CREDENTIAL };
typedef struct {
    int kind;
    acs_signer *signer; /* ACS_AUTH_HMAC */
    char *token_line;   /* ACS_AUTH_TOKEN: "Authorization: Bearer ..." (secret) */
    char *key_text;     /* ACS_AUTH_HMAC: the access key as given, for
                         * redaction only (secret) */
} acs_credential;
/* Wipe and free (idempotent). */
void acs_credential_free(acs_credential *c);
/* A malloc'd copy of s, wiped when freed by acs_secret_free; NULL if OOM. */
char *acs_secret_dup(const char *prefix, const char *s, size_t len);
void acs_secret_free(char *s);

/* Registers core.parse_connection_string into the module table on top. */
void acs_auth_open(lua_State *L);

#endif
