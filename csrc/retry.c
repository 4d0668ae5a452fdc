/* retry.c - the "next attempt" rule (retry.h). */
#include <string.h>

#include <curl/curl.h>

#include "retry.h"

static const char *const names[] = {
    "response", "dns", "connect", "timeout", "send", "recv", "closed",
    "truncated", "tls", "protocol", "too_large", "interrupted", "local",
    "other", NULL};

const char *acs_outcome_name(acs_outcome_class c)
{
    return (unsigned)c <= ACS_OUT_OTHER ? names[c] : "other";
}

int acs_outcome_from_name(const char *name)
{
    int i;
    for (i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

static int retryable(const acs_outcome *o)
{
    long s = o->status;
    switch (o->cls) {
    case ACS_OUT_RESPONSE:
        return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 ||
               s == 504;
    case ACS_OUT_DNS:
    case ACS_OUT_CONNECT:
    case ACS_OUT_TIMEOUT:
    case ACS_OUT_SEND:
    case ACS_OUT_RECV:
    case ACS_OUT_CLOSED:
    case ACS_OUT_TRUNCATED:
        return 1;
    default:
        return 0;
    }
}

#define DELAY_CAP_S 100000L /* ~28 h: any longer is "never" */
#define DELAY_CAP_MS (DELAY_CAP_S * 1000L)

/* A non-negative integer header value, or -1. */
static long header_number(const char *v)
{
    long n = 0;
    if (v == NULL || *v == '\0')
        return -1;
    for (; *v; v++) {
        if (*v < '0' || *v > '9')
            return -1;
        if (n > DELAY_CAP_MS)
            return DELAY_CAP_MS;
        n = n * 10 + (*v - '0');
    }
    return n;
}

/* The wait the server asked for, in ms, or -1. */
static long server_delay_ms(const acs_outcome *o, time_t now)
{
    long n;
    time_t when;
    if ((n = header_number(o->retry_after_ms)) >= 0)
        return n;
    if ((n = header_number(o->x_retry_after_ms)) >= 0)
        return n;
    if ((n = header_number(o->retry_after)) >= 0)
        return n > DELAY_CAP_S ? DELAY_CAP_MS : n * 1000;
    if (o->retry_after && o->retry_after[0] &&
        (when = curl_getdate(o->retry_after, NULL)) != -1) {
        double d = difftime(when, now);
        return d <= 0 ? 0 : d > (double)DELAY_CAP_S ? DELAY_CAP_MS : (long)(d * 1000);
    }
    return -1;
}

long acs_retry_attempt_timeout(const acs_retry_policy *p, int attempt,
                               long elapsed_ms)
{
    long left = p->deadline_ms - elapsed_ms;
    if (left <= 0)
        return attempt <= 1 ? 1 : 0;
    return left < p->timeout_ms ? left : p->timeout_ms;
}

int acs_retry_next(const acs_retry_policy *p, int attempts, long elapsed_ms,
                   const acs_outcome *o, time_t now, unsigned int rnd,
                   long *wait_ms)
{
    long d;
    int i;
    if (attempts > p->max || !retryable(o))
        return 0;
    if (o->cls != ACS_OUT_RESPONSE || (d = server_delay_ms(o, now)) < 0) {
        d = p->base_ms;
        for (i = 1; i < attempts && d < p->max_ms; i++)
            d *= 2;
        if (d > p->max_ms)
            d = p->max_ms;
        d = d / 2 + (long)(rnd % (unsigned long)(d / 2 + 1));
    }
    if (d >= p->deadline_ms - elapsed_ms)
        return 0; /* the wait would outlast the deadline: report now */
    *wait_ms = d;
    return 1;
}
