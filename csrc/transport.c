/* transport.c - stage 2 over libcurl's easy interface. */
#include "transport.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_rc = -1; /* written once, under pthread_once */

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

int acs_transport_global_init(void)
{
    /* Never cleaned up: other code in the process (or another Lua state)
     * may still use libcurl. */
    pthread_once(&global_once, global_init);
    return global_rc;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    acs_transport *t = ud;
    size_t len = size * n;
    if (len > t->max_body - t->len) {
        t->overflow = 1;
        return 0; /* abort: CURLE_WRITE_ERROR */
    }
    if (t->len + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 16384;
        char *p;
        while (cap < t->len + len + 1)
            cap *= 2;
        p = realloc(t->body, cap);
        if (p == NULL)
            return 0;
        t->body = p;
        t->cap = cap;
    }
    memcpy(t->body + t->len, data, len);
    t->len += len;
    t->body[t->len] = '\0';
    return len;
}

static int header_is(const char *line, size_t len, const char *name,
                     size_t nlen)
{
    size_t i;
    if (len <= nlen || line[nlen] != ':')
        return 0;
    for (i = 0; i < nlen; i++)
        if (tolower((unsigned char)line[i]) != name[i])
            return 0;
    return 1;
}

static void keep(char *dst, size_t dstlen, const char *v, size_t vlen)
{
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
        vlen--;
    if (vlen >= dstlen)
        vlen = dstlen - 1;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
}

#define CAPTURE(field, name)                                                 \
    if (header_is(line, len, name, sizeof(name) - 1)) {                      \
        keep(t->field, sizeof t->field, line + sizeof(name),                  \
             len - sizeof(name));                                            \
        return len;                                                          \
    }

static void reset_response(acs_transport *t)
{
    t->len = 0;
    t->overflow = 0;
    t->status = 0;
    t->request_id[0] = t->content_type[0] = t->retry_after[0] = '\0';
    t->retry_after_ms[0] = t->x_retry_after_ms[0] = '\0';
    t->errbuf[0] = '\0';
    if (t->body)
        t->body[0] = '\0';
}

static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
    acs_transport *t = ud;
    size_t len = size * n;
    if (len > 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* a new response (e.g. after 100 Continue): forget the last */
        t->request_id[0] = t->content_type[0] = t->retry_after[0] = '\0';
        t->retry_after_ms[0] = t->x_retry_after_ms[0] = '\0';
        return len;
    }
    CAPTURE(request_id, "x-ms-request-id")
    CAPTURE(content_type, "content-type")
    CAPTURE(retry_after, "retry-after")
    CAPTURE(retry_after_ms, "retry-after-ms")
    CAPTURE(x_retry_after_ms, "x-ms-retry-after-ms")
    return len;
}

/* Free a request's header list, wiping it first: it holds the
 * Authorization header (a token, or a signature). */
void acs_free_headers(struct curl_slist *l)
{
    struct curl_slist *n;
    for (n = l; n; n = n->next)
        OPENSSL_cleanse(n->data, strlen(n->data));
    curl_slist_free_all(l);
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    const acs_transport_opts *o = ud;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return o->interrupted(o->interrupted_ud) ? 1 : 0; /* 1: abort */
}

const char *acs_transport_init(acs_transport *t, const acs_transport_opts *o)
{
    CURL *e;
    if (acs_transport_global_init() != 0)
        return "libcurl initialisation failed";
    e = t->easy = curl_easy_init();
    if (e == NULL)
        return "libcurl: cannot create a handle";
    t->max_body = o->max_body;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* never follow */
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L); /* the path we signed */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_file && curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file) != CURLE_OK)
        return "libcurl: cannot set ca_file";
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, o->user_agent);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    if (o->interrupted) { /* o outlives t: it is the client's */
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, (void *)o);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    }
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    return NULL;
}

void acs_transport_free(acs_transport *t)
{
    if (t->easy)
        curl_easy_cleanup(t->easy);
    acs_free_headers(t->headers);
    free(t->body);
    t->easy = NULL;
    t->headers = NULL;
    t->body = NULL;
    t->len = t->cap = 0;
}

void acs_transport_begin(acs_transport *t, const char *url,
                         struct curl_slist *headers)
{
    acs_free_headers(t->headers);
    t->headers = headers;
    if (t->cap > 1024 * 1024) { /* do not keep one huge answer's memory */
        free(t->body);
        t->body = NULL;
        t->cap = 0;
    }
    reset_response(t);
    curl_easy_setopt(t->easy, CURLOPT_URL, url);
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, headers);
}

int acs_transport_end(acs_transport *t, CURLcode rc)
{
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    if (t->overflow)
        return ACS_TR_TOO_LARGE;
    if (rc == CURLE_WRITE_ERROR)
        return ACS_TR_NOMEM;
    if (rc == CURLE_ABORTED_BY_CALLBACK)
        return ACS_TR_INTERRUPTED;
    return (int)rc;
}

int acs_transport_get(acs_transport *t, const char *url,
                      struct curl_slist *headers)
{
    acs_transport_begin(t, url, headers);
    return acs_transport_end(t, curl_easy_perform(t->easy));
}

void acs_transport_hold_headers(acs_transport *t, struct curl_slist *headers)
{
    if (t->easy) /* it must not keep pointing at the list freed here */
        curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, NULL);
    acs_free_headers(t->headers);
    t->headers = headers;
}

const char *acs_transport_error(const acs_transport *t, int rc)
{
    if (rc == ACS_TR_TOO_LARGE)
        return "response body exceeds the max_body limit";
    if (rc == ACS_TR_INTERRUPTED)
        return "interrupted";
    if (rc == ACS_TR_NOMEM)
        return "out of memory while reading the response";
    if (t->errbuf[0])
        return t->errbuf;
    return curl_easy_strerror((CURLcode)rc);
}

void acs_transport_set_timeout(acs_transport *t, long timeout_ms)
{
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, timeout_ms < 1 ? 1L : timeout_ms);
}

long acs_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int acs_sleep_ms(long ms)
{
    struct timespec ts;
    if (ms <= 0)
        return 0;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    /* A signal (Ctrl-C in lua.c, which then raises at the next Lua
     * instruction) cuts the wait short instead of being slept through. */
    return nanosleep(&ts, NULL) == 0 ? 0 : -1;
}

/* A non-negative integer header value, or -1. */
static long header_number(const char *v)
{
    long n = 0;
    if (*v == '\0')
        return -1;
    for (; *v; v++) {
        if (*v < '0' || *v > '9')
            return -1;
        if (n > 100000000L)
            return 100000000L;
        n = n * 10 + (*v - '0');
    }
    return n;
}

static long server_delay_ms(const acs_transport *t)
{
    long n;
    time_t when;
    if ((n = header_number(t->retry_after_ms)) >= 0)
        return n;
    if ((n = header_number(t->x_retry_after_ms)) >= 0)
        return n;
    if ((n = header_number(t->retry_after)) >= 0)
        return n > 100000000L / 1000 ? 100000000L : n * 1000;
    if (t->retry_after[0] && (when = curl_getdate(t->retry_after, NULL)) != -1) {
        double d = difftime(when, time(NULL));
        return d <= 0 ? 0 : d > 100000 ? 100000000L : (long)(d * 1000);
    }
    return -1;
}

static int retryable_transport(int rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: /* truncated body: the connection broke */
        return 1;
    default: /* TLS verification, protocol errors, our own limits: final */
        return 0;
    }
}

int acs_transport_should_retry(const acs_transport *t, int rc, int attempt,
                               const acs_retry_policy *p, long *delay_ms)
{
    long d;
    unsigned int r = 0;
    int i;

    if (attempt > p->max)
        return 0;
    if (rc == 0) {
        long s = t->status;
        if (!(s == 408 || s == 429 || s == 500 || s == 502 || s == 503 ||
              s == 504))
            return 0;
        if ((d = server_delay_ms(t)) >= 0) {
            *delay_ms = d; /* server-directed: exactly that */
            return 1;
        }
    } else if (!retryable_transport(rc)) {
        return 0;
    }
    d = p->base_ms;
    for (i = 1; i < attempt && d < p->max_ms; i++)
        d *= 2;
    if (d > p->max_ms)
        d = p->max_ms;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = 0;
    *delay_ms = d / 2 + (long)(r % (unsigned long)(d / 2 + 1));
    return 1;
}
