/* transport.h - stage 2: one GET over a reused libcurl easy handle
 * (keep-alive), body into a capped buffer. Knows nothing of JSON or signing.
 * Callbacks only copy bytes into C buffers: no Lua, so no longjmp can cross
 * libcurl. */
#ifndef ACS_TRANSPORT_H
#define ACS_TRANSPORT_H

#include <stddef.h>
#include <curl/curl.h>

#define ACS_DEFAULT_MAX_BODY (4u * 1024u * 1024u)
#define ACS_DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define ACS_DEFAULT_TIMEOUT_MS 30000L

/* acs_transport_get results besides CURLcode values (all > CURL_LAST) */
#define ACS_TR_TOO_LARGE 1000 /* body exceeded max_body */
#define ACS_TR_NOMEM 1001
#define ACS_TR_INTERRUPTED 1002 /* opts.interrupted said so: never retried */

typedef struct {
    long connect_timeout_ms;
    long timeout_ms;     /* one attempt, connect included */
    size_t max_body;
    const char *ca_file; /* NULL: the system's CA store */
    const char *user_agent;
    /* Asked while a transfer runs (about once a second when idle): non-zero
     * ends it with ACS_TR_INTERRUPTED. Pure C, must not call into Lua in a
     * way that can raise. NULL: never. */
    int (*interrupted)(void *ud);
    void *interrupted_ud;
} acs_transport_opts;

typedef struct {
    CURL *easy;
    struct curl_slist *headers; /* this request's; freed at the next or at close */
    char *body;
    size_t len, cap, max_body;
    int overflow;
    long status;
    /* response headers the layers above need (truncated if absurdly long) */
    char request_id[128];
    char content_type[128];
    char retry_after[64];
    char retry_after_ms[32];
    char x_retry_after_ms[32];
    char errbuf[CURL_ERROR_SIZE];
} acs_transport;

/* Retry policy for this idempotent GET (sdk-behaviour.md: JS core-rest-
 * pipeline and Python azure-core). max = retries after the first attempt. */
#define ACS_DEFAULT_RETRIES 3
#define ACS_DEFAULT_BASE_DELAY_MS 800L
#define ACS_DEFAULT_MAX_DELAY_MS 60000L
#define ACS_DEFAULT_DEADLINE_MS 90000L
typedef struct {
    int max;
    long base_ms, max_ms;
} acs_retry_policy;

/* After attempt number `attempt` (1-based) ended with rc (0 = a response
 * with t->status): 1 and *delay_ms if it should be retried, else 0. Honours
 * retry-after-ms, x-ms-retry-after-ms and Retry-After (seconds or HTTP
 * date); otherwise exponential backoff with jitter in [d/2, d]. */
int acs_transport_should_retry(const acs_transport *t, int rc, int attempt,
                               const acs_retry_policy *p, long *delay_ms);
void acs_transport_set_timeout(acs_transport *t, long timeout_ms);
long acs_monotonic_ms(void);
/* 0 after ms, or -1 when a signal interrupted the wait. */
int acs_sleep_ms(long ms);

/* One-time, thread-safe libcurl initialisation (curl_global_init). 0 or -1. */
int acs_transport_global_init(void);

/* Returns NULL or a static error. t must be zeroed first; on error, free it. */
const char *acs_transport_init(acs_transport *t, const acs_transport_opts *o);
void acs_transport_free(acs_transport *t); /* idempotent */

/* Perform GET url with headers (ownership taken). Returns 0 when a response
 * arrived (t->status, t->body, headers filled), else a CURLcode or ACS_TR_*;
 * acs_transport_error() then describes it in one line. */
int acs_transport_get(acs_transport *t, const char *url,
                      struct curl_slist *headers);
/* Free a request's header list, wiping it first (it holds secrets). */
void acs_free_headers(struct curl_slist *l);

/* Keep a header list alive until the next request or close (so a caller
 * that reads it back into Lua cannot leak it if Lua raises). */
void acs_transport_hold_headers(acs_transport *t, struct curl_slist *headers);
const char *acs_transport_error(const acs_transport *t, int rc);

/* acs_transport_get in two halves, for libcurl's multi interface: begin
 * sets the request up (headers owned as above), the caller runs the easy
 * handle (t->easy, CURLINFO_PRIVATE free for its use), end maps the
 * handle's CURLcode to the same result acs_transport_get returns. */
void acs_transport_begin(acs_transport *t, const char *url,
                         struct curl_slist *headers);
int acs_transport_end(acs_transport *t, CURLcode rc);

#endif
