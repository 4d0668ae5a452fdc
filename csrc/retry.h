/* retry.h - the one "next attempt" rule of a Get Call, asked by every loop:
 * get_call (libcurl easy), get_calls (libcurl multi) and transports written
 * in Lua (client:next_attempt, used by the OpenResty path). Pure: no I/O;
 * the clocks are passed in.
 *
 * The rule (azure-sdk-for-js sdk/core/core-rest-pipeline
 * src/retryStrategies/{exponentialRetryStrategy,throttlingRetryStrategy}.ts
 * and Python azure-core's RetryPolicy, for an idempotent GET):
 *   - at most `max` retries after the first attempt;
 *   - retried: HTTP 408, 429, 500, 502, 503, 504, and the transport classes
 *     dns, connect, timeout, send, recv, closed, truncated; nothing else
 *     (TLS, protocol errors, our own limits, an interruption are final);
 *   - the wait: the server's retry-after-ms, x-ms-retry-after-ms or
 *     Retry-After (seconds or an HTTP date), exactly; otherwise exponential
 *     backoff base * 2^(retry-1), capped at max_delay, with jitter: a wait
 *     uniform in [d/2, d];
 *   - the deadline bounds the whole call: a wait that would end at or after
 *     it is not taken (the last answer is reported), and every attempt's
 *     timeout is min(timeout, what is left of the deadline). */
#ifndef ACS_RETRY_H
#define ACS_RETRY_H

#include <time.h>

#include "acs_limits.h" /* the defaults */

typedef struct {
    int max;                    /* retries after the first attempt */
    long base_ms, max_ms;       /* backoff */
    long timeout_ms;            /* one attempt, connect included */
    long connect_timeout_ms;
    long deadline_ms;           /* the whole call, waits included */
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

/* Its name for Lua ("dns", "timeout", ...; "response"), and back (-1). */
const char *acs_outcome_name(acs_outcome_class c);
int acs_outcome_from_name(const char *name);

/* Before attempt number `attempt` (1-based) at `elapsed_ms` into the call:
 * the attempt's timeout, or 0 when the deadline has passed (then no
 * attempt is made; the first attempt always gets at least 1 ms). */
long acs_retry_attempt_timeout(const acs_retry_policy *p, int attempt,
                               long elapsed_ms);

/* After `attempts` attempts (>= 1), the last ending as o, at elapsed_ms:
 * 1 and *wait_ms when another attempt should be made after waiting, else
 * 0 (report o). now is the wall clock (for Retry-After dates); rnd is a
 * random number for the jitter. */
int acs_retry_next(const acs_retry_policy *p, int attempts, long elapsed_ms,
                   const acs_outcome *o, time_t now, unsigned int rnd,
                   long *wait_ms);

#endif
