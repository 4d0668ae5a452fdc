/* request.h - stage 1: the route of a Get Call request (URL, Host, path),
 * built once per client from the endpoint; per request the URL (id
 * encoding) and the headers (signed with auth.h's credential). Pure. */
#ifndef ACS_REQUEST_H
#define ACS_REQUEST_H

#include <stddef.h>
#include <curl/curl.h>
#include <lua.h>

#include "auth.h"

#define ACS_DEFAULT_API_VERSION "2026-03-12"
#include "acs_limits.h"

typedef struct {
    char *origin;    /* "https://host[:port]" as curl will connect to it */
    char *host;      /* the Host header sent and signed: lower-case host[:port] */
    char *prefix;    /* endpoint path without trailing '/' + "/calling/callConnections/" */
    char *query;     /* "?api-version=<encoded>" */
    int tls;         /* https */
    /* the lines every request sends, built once: Accept, Host (and
     * User-Agent once acs_route_set_agent ran); no secret in them */
    struct curl_slist *fixed;
} acs_route;

/* Parse and check the endpoint: https://, or http:// to a loopback host
 * (localhost, 127.0.0.0/8, [::1]) for the emulator; no credentials, query
 * or fragment. Returns NULL or a static error. On error r holds nothing. */
const char *acs_route_init(acs_route *r, const char *endpoint,
                           const char *api_version);
void acs_route_free(acs_route *r);
/* Add the User-Agent line to r->fixed. NULL or a static error. */
const char *acs_route_set_agent(acs_route *r, const char *ua);

/* For signing any URL: its Host header value and its path and query exactly
 * as given (already percent-encoded). Both malloc'd (caller frees) or NULL
 * and a static error. */
const char *acs_url_split(const char *url, char **host, char **pq);

/* Percent-encode a call id as one path segment (JavaScript's
 * encodeURIComponent set, as the SDKs do; "." and ".." are encoded too so
 * they can never be dot segments). out needs 3 * len + 1 bytes; returns the
 * encoded length. */
size_t acs_encode_segment(const char *id, size_t len, char *out);

/* url = origin + prefix + encoded id + query, into a growable buffer.
 * 0, or -1 when out of memory. */
int acs_request_url(const acs_route *r, const char *id, size_t idlen,
                    char **buf, size_t *cap);

/* The *why of a request that failed for want of memory (kind "local");
 * every other *why is an auth failure. */
#define ACS_WHY_NOMEM "out of memory"

/* The request's own headers for url, signed now (HMAC: a fresh x-ms-date
 * per attempt): x-ms-client-request-id (crid) and the credential's
 * Authorization (bearer: a token provider's token); r->fixed (Accept,
 * Host, User-Agent) goes after them (acs_conn_set_tail). NULL with *why on
 * failure. The list holds secrets: free it with acs_free_headers. */
struct curl_slist *acs_request_headers(const acs_route *r,
                                       const acs_credential *cred,
                                       const char *url, const char *crid,
                                       const char *bearer, const char **why);

/* Registers core.sign, core.http_date and core.uuid into the module table
 * on top (the pure entry points of stage 1). */
void acs_request_open(lua_State *L);

#endif
