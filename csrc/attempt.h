/* attempt.h - the attempt loop: one driver for every easy-handle request
 * (get_call in call.c, a fetch in fetch.c): make the attempt, ask the
 * verdict (retry.h acs_retry_verdict), wait, refresh the token when the
 * verdict says so, tell on_attempt, and check for a fork after every Lua
 * callback (transport.h acs_pool_after_fork). get_calls (batch.c) keeps its
 * event form on libcurl's multi interface, asks the same verdict and tells
 * on_attempt through the same acs_hook_emit.
 *
 * on_attempt (the option of core.new and core.fetcher) is called once per
 * attempt with a plain table: operation ("get_call", "get_calls",
 * "token"), id (the call id; none for "token"), attempt (1-based), status
 * (a response came) or kind ("transport", "local", "decode") and outcome
 * ("timeout", "connect", ...), duration (seconds), wait (seconds before
 * the next attempt) and reason ("status 503", "timeout", "retry-after",
 * "refresh") when another attempt follows, request_id (x-ms-request-id),
 * client_request_id, host. Never a secret, a token or a signature. An
 * error raised in it never breaks the call: the first is written to stderr,
 * later ones are ignored. Unset, it costs one comparison per attempt. */
#ifndef ACS_ATTEMPT_H
#define ACS_ATTEMPT_H

#include <stddef.h>
#include <lua.h>

#include "client.h"
#include "failure.h"
#include "frame.h"
#include "retry.h"
#include "transport.h"


/* What on_attempt is told about one attempt (never a secret). */
typedef struct {
    const char *operation;  /* "get_call", "get_calls", "token" */
    const char *id;         /* the call id, or NULL */
    size_t idlen;
    const char *url;        /* for the host */
    const char *crid;       /* the x-ms-client-request-id sent, or NULL */
    int attempt;
    const acs_conn *conn;   /* the response's status and request id */
    int rc;                 /* acs_conn_end's result */
    long duration_ms;
    const acs_verdict *verdict; /* wait and reason when another attempt follows */
    /* the secrets in play: a server's request id is redacted against them
     * (and the Bearer/Signature rule) before the hook sees it */
    const acs_secret *secrets;
    int nsecrets;
} acs_attempt_rec;

/* Tell h about an attempt (runs Lua under lua_pcall; an error is written
 * once to stderr and then ignored; an interruption is re-raised). Nothing
 * when h is NULL or unset. */
void acs_hook_emit(lua_State *L, acs_hook *h, const acs_attempt_rec *r);

typedef struct acs_attempts acs_attempts;
struct acs_attempts {
    lua_State *L;
    const acs_retry_policy *policy;
    acs_pool *pool;
    acs_conn *conn;
    const char *url;
    acs_watch *w;
    int refreshable; /* a credential whose token a 401 may refresh once */
    /* this attempt's header lines into *out (the driver owns them from
     * here): 0, or -1 and *why (ACS_WHY_NOMEM: kind "local"; else "auth") */
    int (*headers)(acs_attempts *a, struct curl_slist **out, const char **why);
    void (*prepare)(acs_attempts *a); /* after acs_conn_begin, or NULL */
    /* the verdict said "refresh": 1 when a fresh token is in place (runs
     * Lua); NULL: never refreshable */
    int (*refresh)(acs_attempts *a);
    void *ud;
    acs_hook *hook;                /* on_attempt, or NULL */
    const acs_resp_meta *meta;     /* its secrets (kept current), or NULL */
    const char *operation, *id, *crid;
    size_t idlen;
    /* out: the attempts made, the last one's result (on conn) */
    int attempts, rc;
    const char *why; /* -1: why there is no attempt to report */
    int why_local;   /* ... a failure of this process (kind "local"); else
                        headers() said why (its kind: see headers) */
};

/* THE attempt loop. 0: a->rc, a->attempts and a->conn hold the last
 * attempt; -1: a->why (no request could be made, or the fork check
 * failed). */
int acs_attempts_run(acs_attempts *a);

/* The failure kind of an attempt that got no usable response (rc != 0):
 * "decode" (too large), "local" (out of memory), "transport". */
const char *acs_attempt_rc_kind(int rc);

#endif
