/* request.c - stage 1: endpoint checking and URL pieces (libcurl's URL
 * parser does the parsing; we decide what is allowed), the signed headers,
 * and their pure Lua entry points (sign, http_date, uuid). */
#include "request.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <openssl/crypto.h>

#include "auth.h"
#include "compat.h"
#include "transport.h"
#include "util.h"

/* A path curl sends exactly as given: RFC 3986 pchar and '/', '%' for
 * escapes already made. Anything else (bytes >= 0x80, spaces, quotes...)
 * curl would percent-encode on the wire, and the signature, made over the
 * path we hold, would no longer match what is sent: the SDKs sign the
 * path and query exactly as sent (communicationAccessKeyCredentialPolicy.ts,
 * @azure/communication-common 2.4.2, npm). */
static int plain_path(const char *p)
{
    for (; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (!(ch < 128 && (isalnum(ch) || strchr("-._~!$&'()*+,;=:@/%", ch))))
            return 0;
    }
    return 1;
}

void acs_route_free(acs_route *r)
{
    free(r->origin);
    free(r->host);
    free(r->prefix);
    free(r->query);
    curl_slist_free_all(r->fixed);
    memset(r, 0, sizeof *r);
}

static struct curl_slist *add_line(struct curl_slist *l, const char *a,
                                   const char *b, int *ok)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *line = malloc(n);
    struct curl_slist *r = NULL;
    if (line) {
        snprintf(line, n, "%s%s", a, b);
        r = *ok ? curl_slist_append(l, line) : NULL;
        free(line);
    }
    if (r == NULL)
        *ok = 0;
    return r ? r : l;
}

const char *acs_route_set_agent(acs_route *r, const char *ua)
{
    int ok = 1;
    r->fixed = add_line(r->fixed, "User-Agent: ", ua, &ok);
    return ok ? NULL : "out of memory";
}

static char *dup_printf(const char *fmt, const char *a, const char *b,
                        const char *c)
{
    size_t n = strlen(fmt) + strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, fmt, a, b, c);
    return s;
}

/* The Host header for a parsed URL: lower-case host, plus the port only
 * when it is not the scheme's default (the signed Host: what is sent is what is
 * signed). Also checks the scheme. Returns NULL or a static error. */
static const char *host_header(CURLU *u, int strict, char hostport[300],
                               int *tls)
{
    char *scheme = NULL, *host = NULL, *port = NULL;
    const char *err = NULL;

    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, 0); /* only when given */
    if (scheme == NULL || host == NULL) {
        err = "not a valid URL";
        goto done;
    }
    acs_lower_copy(host, strlen(host) + 1, host, strlen(host));
    *tls = strcmp(scheme, "https") == 0;
    if (!*tls && (strcmp(scheme, "http") != 0 || (strict && !acs_host_is_loopback(host, strlen(host))))) {
        err = "endpoint must be https:// (http:// only to a loopback host)";
        goto done;
    }
    if (port && strcmp(port, *tls ? "443" : "80") != 0)
        snprintf(hostport, 300, "%s:%s", host, port);
    else
        snprintf(hostport, 300, "%s", host);
    if (strlen(hostport) >= 299)
        err = "host name is too long";
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    return err;
}

const char *acs_route_init(acs_route *r, const char *endpoint,
                           const char *api_version)
{
    CURLU *u = curl_url();
    char *path = NULL, *extra = NULL, *ver = NULL;
    const char *err = NULL;
    char hostport[300];
    size_t plen;

    memset(r, 0, sizeof *r);
    if (u == NULL)
        return "out of memory";
    if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        err = "endpoint is not a valid URL";
        goto done;
    }
    if (curl_url_get(u, CURLUPART_USER, &extra, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_QUERY, &extra, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &extra, 0) == CURLUE_OK) {
        err = "endpoint must not carry credentials, a query or a fragment";
        goto done;
    }
    if ((err = host_header(u, 1, hostport, &r->tls)) != NULL)
        goto done;
    if (!plain_path(path)) {
        err = "endpoint path must be plain URL characters (percent-encode the rest)";
        goto done;
    }
    plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/')
        path[--plen] = '\0';
    ver = curl_easy_escape(NULL, api_version, 0);
    r->origin = dup_printf("%s://%s%s", r->tls ? "https" : "http", hostport, "");
    r->host = dup_printf("%s%s%s", hostport, "", "");
    r->prefix = dup_printf("%s%s%s", path, "/calling/callConnections/", "");
    r->query = ver ? dup_printf("%s%s%s", "?api-version=", ver, "") : NULL;
    if (r->host) {
        int ok = 1;
        r->fixed = add_line(NULL, "Accept: application/json", "", &ok);
        r->fixed = add_line(r->fixed, "Host: ", r->host, &ok);
        if (!ok) {
            curl_slist_free_all(r->fixed);
            r->fixed = NULL;
        }
    }
    if (!r->origin || !r->host || !r->prefix || !r->query || !r->fixed) {
        acs_route_free(r);
        err = "out of memory";
    }
done:
    curl_free(ver);
    curl_free(extra);
    curl_free(path);
    curl_url_cleanup(u);
    return err;
}

const char *acs_url_split(const char *url, char **host, char **pq)
{
    CURLU *u = curl_url();
    char *path = NULL, *query = NULL;
    const char *err = NULL;
    char hostport[300];
    int tls;

    *host = *pq = NULL;
    if (u == NULL)
        return "out of memory";
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_PATH_AS_IS) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        err = "not a valid URL";
        goto done;
    }
    if ((err = host_header(u, 0, hostport, &tls)) != NULL)
        goto done;
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    *host = dup_printf("%s%s%s", hostport, "", "");
    *pq = dup_printf("%s%s%s", path, query ? "?" : "", query ? query : "");
    if (*host == NULL || *pq == NULL) {
        free(*host);
        free(*pq);
        *host = *pq = NULL;
        err = "out of memory";
    }
done:
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return err;
}

size_t acs_encode_segment(const char *id, size_t len, char *out)
{
    size_t i;
    int all_dots = len <= 2;
    for (i = 0; i < len && all_dots; i++)
        all_dots = id[i] == '.';
    /* "." and ".." would be dot-segments (RFC 3986 section 5.2.4) */
    return acs_pct_encode(id, len, all_dots ? "-_~!*'()" : "-_.~!*'()", out);
}

/* ---------- one request ------------------------------------------------ */

/* url = origin + prefix + encoded id + query, into a growable buffer.
 * Pure C: 0, or -1 when out of memory. */
int acs_request_url(const acs_route *r, const char *id, size_t idlen,
                    char **buf, size_t *cap)
{
    size_t olen = strlen(r->origin), plen = strlen(r->prefix);
    size_t qlen = strlen(r->query), pos;
    size_t need = olen + plen + 3 * idlen + qlen + 1;
    if (need > *cap) {
        char *p = realloc(*buf, need);
        if (p == NULL)
            return -1;
        *buf = p;
        *cap = need;
    }
    memcpy(*buf, r->origin, olen);
    memcpy(*buf + olen, r->prefix, plen);
    pos = olen + plen;
    pos += acs_encode_segment(id, idlen, *buf + pos);
    memcpy(*buf + pos, r->query, qlen + 1);
    return 0;
}

static struct curl_slist *add(struct curl_slist *l, const char *h, int *ok)
{
    struct curl_slist *n;
    if (!*ok)
        return l;
    n = curl_slist_append(l, h);
    if (n == NULL) {
        *ok = 0;
        return l;
    }
    return n;
}

/* The request headers for url, signed now (HMAC: a fresh x-ms-date per
 * attempt). Pure C: nothing here can raise. NULL with *why on failure. */
struct curl_slist *acs_request_headers(const acs_route *r,
                                       const acs_credential *cred,
                                       const char *url, const char *crid,
                                       const char *bearer, const char **why)
{
    char line[600];
    int ok = 1;
    struct curl_slist *l = NULL;

    snprintf(line, sizeof line, "x-ms-client-request-id: %s", crid);
    l = add(l, line, &ok);
    if (cred->kind == ACS_AUTH_TOKEN) {
        l = add(l, cred->token_line, &ok);
    } else if (cred->kind == ACS_AUTH_PROVIDER || cred->kind == ACS_AUTH_CREDENTIAL) {
        size_t n;
        char *h;
        if (bearer == NULL) { /* callers pass the provider's token */
            acs_free_headers(l);
            *why = "no bearer token";
            return NULL;
        }
        if (acs_header_value_check(bearer, strlen(bearer)) != NULL) {
            acs_free_headers(l); /* util.h: nothing is sent */
            *why = "the token has " ACS_CONTROL_CHARS;
            return NULL;
        }
        n = strlen(bearer) + sizeof "Authorization: Bearer ";
        h = malloc(n);
        if (h == NULL) {
            ok = 0;
        } else {
            snprintf(h, n, "Authorization: Bearer %s", bearer);
            l = add(l, h, &ok);
            acs_secret_free(h);
        }
    } else {
        char date[ACS_DATE_LEN + 1], sig[ACS_B64_SHA256_LEN + 1];
        const char *hash = ACS_EMPTY_CONTENT_HASH; /* a GET has no body */
        const char *pq = url + strlen(r->origin); /* as on the wire */
        acs_format_date(time(NULL), date);
        if (acs_signer_sign(cred->signer, "GET", pq, strlen(pq), date,
                            r->host, hash, sig) != 0) {
            *why = "signing failed (libcrypto)";
            acs_free_headers(l);
            return NULL;
        }
        snprintf(line, sizeof line, "x-ms-date: %s", date);
        l = add(l, line, &ok);
        snprintf(line, sizeof line, "x-ms-content-sha256: %s", hash);
        l = add(l, line, &ok);
        snprintf(line, sizeof line, "Authorization: %s%s", ACS_HMAC_AUTH_PREFIX,
                 sig);
        l = add(l, line, &ok);
        OPENSSL_cleanse(line, sizeof line);
    }
    if (!ok) {
        acs_free_headers(l);
        *why = ACS_WHY_NOMEM;
        return NULL;
    }
    return l;
}

/* ---------- Lua entry points: signing any URL, dates, ids ------------- */

/* Epoch seconds at index i for a date: years 0-9999, else a mistake
 * (raises; NaN fails the test too). Casting a double out of time_t's range
 * would be undefined behaviour. */
static time_t check_epoch(lua_State *L, int i)
{
    lua_Number n = luaL_checknumber(L, i);
    luaL_argcheck(L, n >= -62167219200.0 && n <= 253402300799.0, i,
                  "epoch seconds out of range (years 0-9999)");
    return (time_t)n;
}

/* core.sign{method=, url=, date=, body=, access_key=} -> headers table */
static int l_sign(lua_State *L)
{
    size_t keylen, bodylen = 0, kbuflen;
    const char *method, *url, *key, *body = "", *err;
    char date[ACS_DATE_LEN + 1], hash[ACS_B64_SHA256_LEN + 1];
    char sig[ACS_B64_SHA256_LEN + 1];
    unsigned char kbuf[ACS_KEY_MAX];
    char *host, *pq, hbuf[300];
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_getfield(L, 1, "method");
    lua_getfield(L, 1, "url");
    lua_getfield(L, 1, "body");
    lua_getfield(L, 1, "access_key");
    lua_getfield(L, 1, "date");
    method = lua_isnil(L, 2) ? "GET" : lua_tostring(L, 2);
    if (method == NULL || lua_type(L, 2) == LUA_TNUMBER)
        return luaL_error(L, "acscall.sign: 'method' must be a string");
    if (lua_type(L, 3) != LUA_TSTRING)
        return luaL_error(L, "acscall.sign: 'url' must be a string");
    url = lua_tostring(L, 3);
    if (!lua_isnil(L, 4)) {
        if (lua_type(L, 4) != LUA_TSTRING)
            return luaL_error(L, "acscall.sign: 'body' must be a string");
        body = lua_tolstring(L, 4, &bodylen);
    }
    if (lua_type(L, 5) != LUA_TSTRING)
        return luaL_error(L, "acscall.sign: 'access_key' must be a string");
    key = lua_tolstring(L, 5, &keylen);
    if (lua_type(L, 6) == LUA_TSTRING) {
        size_t dl;
        const char *d = lua_tolstring(L, 6, &dl);
        if (dl > ACS_DATE_LEN || acs_header_value_check(d, dl))
            return luaL_error(L, "acscall.sign: 'date' is not an HTTP date");
        memcpy(date, d, dl + 1);
    } else if (lua_type(L, 6) == LUA_TNUMBER) {
        acs_format_date(check_epoch(L, 6), date);
    } else if (lua_isnil(L, 6)) {
        acs_format_date(time(NULL), date);
    } else {
        return luaL_error(L, "acscall.sign: 'date' must be a string or epoch seconds");
    }
    if ((err = acs_key_decode(key, keylen, kbuf, &kbuflen)) != NULL) {
        OPENSSL_cleanse(kbuf, sizeof kbuf);
        return luaL_error(L, "acscall.sign: %s", err);
    }
    if ((err = acs_url_split(url, &host, &pq)) != NULL) {
        OPENSSL_cleanse(kbuf, sizeof kbuf);
        return luaL_error(L, "acscall.sign: url: %s", err);
    }
    acs_content_hash(body, bodylen, hash);
    rc = acs_sign(kbuf, kbuflen, method, pq, strlen(pq), date, host, hash, sig);
    OPENSSL_cleanse(kbuf, sizeof kbuf);
    free(pq);
    snprintf(hbuf, sizeof hbuf, "%s", host); /* host is < 300 bytes */
    free(host);
    /* nothing malloc'd is alive past here: Lua may raise (OOM) safely */
    if (rc != 0)
        return luaL_error(L, "acscall.sign: libcrypto failed");
    lua_createtable(L, 0, 4);
    lua_pushstring(L, hbuf);
    lua_setfield(L, -2, "host");
    lua_pushstring(L, date);
    lua_setfield(L, -2, "x-ms-date");
    lua_pushstring(L, hash);
    lua_setfield(L, -2, "x-ms-content-sha256");
    lua_pushfstring(L, "%s%s", ACS_HMAC_AUTH_PREFIX, sig);
    lua_setfield(L, -2, "authorization");
    return 1;
}

/* core.http_date([epoch]) -> "Wed, 13 Apr 2022 18:09:12 GMT" */
static int l_http_date(lua_State *L)
{
    char date[ACS_DATE_LEN + 1];
    time_t t = lua_isnoneornil(L, 1) ? time(NULL) : check_epoch(L, 1);
    acs_format_date(t, date);
    lua_pushstring(L, date);
    return 1;
}

/* core.uuid() -> random UUID v4 (the x-ms-client-request-id format) */
static int l_uuid(lua_State *L)
{
    char u[37];
    if (acs_uuid4(u) != 0) /* util.h */
        return luaL_error(L, "acscall.uuid: no random bytes");
    lua_pushstring(L, u);
    return 1;
}

void acs_request_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"sign", l_sign},
        {"http_date", l_http_date},
        {"uuid", l_uuid},
        {NULL, NULL}};
    acs_setfuncs(L, fns);
}
