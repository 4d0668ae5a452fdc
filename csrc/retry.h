/* retry.h - the one verdict after an attempt ("report", "wait and retry",
 * "refresh the token, then retry once"), asked by every loop: get_call and
 * the fetcher (one driver, call.c acs_attempts_run), get_calls (libcurl
 * multi, batch.c) and transports written in Lua (client:next_attempt, used
 * by the OpenResty paths). Pure: no I/O; the clocks are passed in.
 *
 * The retry classes and the schedule are data (acs_retry_policy), so the
 * ACS service and each token endpoint are retried by the same rule with
 * their own classes. The ACS defaults (@azure/core-rest-pipeline 1.24.0,
 * npm, whose retry strategies are its dependency @typespec/ts-http-runtime
 * 0.3.6's src/retryStrategies/{exponentialRetryStrategy,
 * throttlingRetryStrategy}.ts, and
 * Python azure-core's RetryPolicy, sdk/core/azure-core/azure/core/pipeline/
 * policies/_retry.py at azure-sdk-for-python commit b12d98b6; for an
 * idempotent GET):
 *   - at most `max` retries after the first attempt;
 *   - retried: HTTP 408, 429, 500, 502, 503, 504, and the transport classes
 *     dns, connect, timeout, send, recv, closed, truncated; nothing else
 *     (TLS, protocol errors, our own limits, an interruption are final);
 *   - the wait: the server's retry-after-ms, x-ms-retry-after-ms or
 *     Retry-After (seconds or an HTTP date), exactly; otherwise exponential
 *     backoff base * 2^(retry-1), capped at max_delay, with jitter: a wait
 *     uniform in [d/2, d];
 *   - min_total (0 by default): for the statuses in min_statuses (none
 *     listed: every retried outcome), retries go on past `max` until
 *     min_total has passed since the call began (azure-identity's IMDS
 *     rule: a 410 is retried for at least 70 s; ManagedIdentityCredential,
 *     @azure/identity 4.13.0 imdsRetryPolicy.js, "at least 70 seconds total");
 *   - by_status: a status's own schedule (max, base, max_delay, min_total,
 *     and "retried only when the server sets the wait"), so one endpoint
 *     retries, e.g., 404 from 0.8 s, 410 from 3 s and 429 only with
 *     Retry-After, as @azure/identity 4.13.0's nested retry policies do;
 *   - the deadline bounds the whole call: a wait that would end at or after
 *     it is not taken (the last answer is reported), and every attempt's
 *     timeout is min(timeout, what is left of the deadline);
 *   - a 401 on a credential that can refresh its token, not refreshed yet
 *     in this call: refresh, then retry once at once (the SDKs'
 *     BearerTokenAuthenticationPolicy: a challenge gets one new token). */
#ifndef ACS_RETRY_H
#define ACS_RETRY_H

#include <time.h>

#include <lua.h>

#include "acs_limits.h" /* the defaults, ACS_RETRY_STATUSES_MAX */

/* One status's schedule (by_status): a field < 0 keeps the policy's. */
typedef struct {
    short status;
    short retry_after_only;     /* retried only when the server sets the wait */
    int max;
    long base_ms, max_ms, min_total_ms;
} acs_retry_status;

typedef struct {
    int max;                    /* retries after the first attempt */
    long base_ms, max_ms;       /* backoff */
    long timeout_ms;            /* one attempt, connect included */
    long connect_timeout_ms;
    long deadline_ms;           /* the whole call, waits included */
    /* the retry classes: HTTP statuses, and failure classes as bits
     * (1u << acs_outcome_class) */
    int nstatuses;
    short statuses[ACS_RETRY_STATUSES_MAX];
    unsigned outcomes;
    /* retries past max until this long into the call, for min_statuses
     * (none: every retried outcome); 0: off */
    long min_total_ms;
    int nmin_statuses;
    short min_statuses[ACS_RETRY_STATUSES_MAX];
    int nby;                    /* by_status */
    acs_retry_status by[ACS_RETRY_STATUSES_MAX];
} acs_retry_policy;

/* How an attempt ended. */
typedef enum {
    ACS_OUT_RESPONSE,  /* a response arrived: see status */
    ACS_OUT_DNS,
    ACS_OUT_CONNECT,
    ACS_OUT_TIMEOUT,
    ACS_OUT_SEND,
    ACS_OUT_RECV,
    ACS_OUT_CLOSED,    /* the connection closed before any response */
    ACS_OUT_TRUNCATED, /* the body ended early */
    ACS_OUT_TLS,
    ACS_OUT_PROTOCOL,
    ACS_OUT_TOO_LARGE, /* body over max_body */
    ACS_OUT_INTERRUPTED,
    ACS_OUT_LOCAL,     /* out of memory here */
    ACS_OUT_OTHER
} acs_outcome_class;

typedef struct {
    acs_outcome_class cls;
    long status;               /* ACS_OUT_RESPONSE */
    /* the response's headers, NULL when absent */
    const char *retry_after, *retry_after_ms, *x_retry_after_ms;
} acs_outcome;

/* The wait the server asked for in o's headers, in ms, or -1: its
 * retry-after-ms, else x-ms-retry-after-ms, else Retry-After (seconds, or
 * an HTTP date less now, never below 0). The verdict's wait and the
 * failure info's retry_after both come from here. */
long acs_retry_server_delay_ms(const acs_outcome *o, time_t now);

/* Its name for Lua ("dns", "timeout", ...; "response"), and back (-1). */
const char *acs_outcome_name(acs_outcome_class c);
int acs_outcome_from_name(const char *name);

/* The ACS service's classes and schedule (above), timeouts included. */
void acs_retry_defaults(acs_retry_policy *p);

/* Read retries = n | false | {max=, base_delay=, max_delay=, statuses=,
 * outcomes=, min_total=, min_total_statuses=, by_status=} at stack index idx (nil:
 * nothing changes) over what p holds: a field not given keeps p's value.
 * statuses: HTTP statuses retried (a list of 100..599); outcomes: failure
 * classes retried (names of acs_outcome_name, not "response"); delays and
 * min_total in seconds; by_status: {[status] = {max=, base_delay=,
 * max_delay=, min_total=, retry_after_only=}} (replaces p's by_status when
 * given). A mistake raises "<who>: ...". */
void acs_retry_read(lua_State *L, int idx, const char *who, acs_retry_policy *p);

/* Before attempt number `attempt` (1-based) at `elapsed_ms` into the call:
 * the attempt's timeout, or 0 when the deadline has passed (then no
 * attempt is made; the first attempt always gets at least 1 ms). */
long acs_retry_attempt_timeout(const acs_retry_policy *p, int attempt,
                               long elapsed_ms);

typedef enum {
    ACS_VERDICT_REPORT,  /* report the last outcome */
    ACS_VERDICT_RETRY,   /* wait wait_ms, then attempt again */
    ACS_VERDICT_REFRESH  /* refresh the token, then attempt again at once */
} acs_verdict_what;

typedef struct {
    acs_verdict_what what;
    long wait_ms;
    /* why another attempt: "status 503", "timeout", ..., "retry-after"
     * (the server set the wait), "refresh"; "" when reporting */
    char reason[24];
} acs_verdict;

/* THE verdict. After `attempts` attempts (>= 1), the last ending as o, at
 * elapsed_ms into the call. refreshable: the credential can refresh its
 * token and has not yet in this call. now: the wall clock (Retry-After
 * dates); rnd: a random number for the jitter. */
void acs_retry_verdict(const acs_retry_policy *p, int attempts, long elapsed_ms,
                       const acs_outcome *o, int refreshable, time_t now,
                       unsigned int rnd, acs_verdict *v);

#endif
