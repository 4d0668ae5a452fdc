/* transport.h - stage 2 over libcurl, and nothing else: one GET on an easy
 * handle (acs_conn), body into a capped buffer, the headers the layers above
 * need. Knows nothing of JSON, signing or Lua. Callbacks only copy bytes
 * into C buffers, so no longjmp can cross libcurl.
 *
 * A client's connection cache is an acs_pool: a libcurl share (connections,
 * DNS, TLS sessions) plus the idle easy handles and multi handle. A call
 * takes what it needs from the pool and gives it back when it ends; a call
 * nested in another (a finalizer, a token provider) finds the pool emptier
 * and gets fresh handles, so it never touches the outer call's. The pool
 * knows the process that opened its sockets: in a forked child it drops
 * them without a byte on the wire (acs_pool_after_fork).
 *
 * ACSCALL_LOOPBACK_ONLY=1 in the environment when a pool is made (the test
 * suite sets it): an attempt whose URL host is not 127.0.0.0/8, ::1 or
 * localhost fails at once (ACS_TR_REFUSED) before any DNS lookup, and a
 * socket to a non-loopback address is never opened. A safety net that
 * keeps a forgotten default from sending a packet off the machine. */
#ifndef ACS_TRANSPORT_H
#define ACS_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>
#include <curl/curl.h>

#include "retry.h"

#include "acs_limits.h"

/* acs_conn_end results besides CURLcode values (all > CURL_LAST) */
#define ACS_TR_TOO_LARGE 1000 /* body exceeded max_body */
#define ACS_TR_NOMEM 1001
#define ACS_TR_INTERRUPTED 1002 /* the interrupt check said so */
#define ACS_TR_REFUSED 1003 /* ACSCALL_LOOPBACK_ONLY: not a loopback host */

typedef struct {
    long connect_timeout_ms;
    size_t max_body;
    const char *ca_file; /* NULL: the system's CA store; owned by the caller */
    const char *user_agent; /* owned by the caller */
} acs_transport_opts;

/* Asked while a transfer runs (about once a second when idle, more often
 * when data flows): non-zero ends it with ACS_TR_INTERRUPTED. Pure C: must
 * not call into Lua in a way that can raise. */
typedef int (*acs_interrupt_fn)(const void *ud);

struct acs_pool;

typedef struct acs_conn {
    CURL *easy; /* CURLINFO_PRIVATE points at this acs_conn */
    struct acs_pool *pool; /* the pool it belongs to */
    int refused; /* this attempt went (or would go) off loopback */
    int tag;    /* free for the user of the handle (a batch: its slot) */
    struct curl_slist *headers; /* this attempt's (secrets): wiped when freed */
    /* header lines sent after this attempt's own, owned by the caller and
     * never freed here (acs_conn_set_tail); cleared when c goes back */
    const struct curl_slist *tail;
    struct curl_slist *own_last; /* last node of headers while tail is linked */
    /* the URL, parsed once per origin (scheme, authority): an attempt to
     * the same origin only sets the path and query (CURLOPT_CURLU) */
    CURLU *uh;
    char *uh_origin;
    size_t uh_origin_len;
    acs_interrupt_fn interrupted; /* set for one attempt only */
    const void *interrupted_ud;
    char *body;
    size_t len, cap, max_body;
    int overflow;
    long status;
    /* response headers the layers above need (truncated if absurdly long) */
    char request_id[128];
    char content_type[128];
    char content_encoding[64];
    char retry_after[64];
    char retry_after_ms[32];
    char x_retry_after_ms[32];
    char errbuf[CURL_ERROR_SIZE];
} acs_conn;

typedef struct {
    int fd;
    dev_t dev;
    ino_t ino;
    /* ACS_SOCK_OURS: our socket; _NULLED: in a forked child, the number
     * now holds our /dev/null (the parent's socket is out of reach);
     * _FOREIGN: the child reused the number: never closed by us */
    int state;
} acs_sock;

#define ACS_SOCK_OURS 0
#define ACS_SOCK_NULLED 1
#define ACS_SOCK_FOREIGN 2

typedef struct acs_pool {
    acs_transport_opts opts;
    int loopback_only; /* ACSCALL_LOOPBACK_ONLY=1 in the environment */
    CURLSH *share;
    acs_conn **idle;
    int nidle, idle_cap;
    CURLM *multi; /* idle, or NULL */
    int out;      /* handles taken and not given back */
    pid_t pid;    /* the process whose sockets these are */
    int stale;    /* a fork was seen while handles were out: the share is
                     dropped when the last comes back */
    acs_sock *socks; /* sockets our handles opened and have not closed */
    int nsocks, socks_cap;
} acs_pool;

/* One-time, thread-safe libcurl initialisation (curl_global_init). 0 or -1. */
int acs_transport_global_init(void);

/* p zeroed first. NULL or a static error (then acs_pool_free it). The pool
 * must not move afterwards (libcurl's socket callbacks point at it). */
const char *acs_pool_init(acs_pool *p, const acs_transport_opts *o);
/* Close everything (idempotent). Nothing may be taken out (p->out == 0). */
void acs_pool_free(acs_pool *p);
/* In a process other than the one that opened the pool's sockets (fork):
 * let go of every inherited connection without a byte on the parent's (see
 * pool_let_go in transport.c; acs_pool_free does the same in a child that
 * never made a call), start afresh. Called before a call and after every
 * Lua callback inside one: when handles are out (a call holds them), each
 * inherited socket is pointed at /dev/null at once, so those handles find
 * their connections dead and open the child's own; the share is dropped
 * when the last handle comes back. Cheap otherwise (acs_getpid: no
 * syscall where the kernel marks forks). Returns NULL or a static error
 * (then nothing of the parent's may be used: the call fails). */
const char *acs_pool_after_fork(acs_pool *p);

/* Take an easy handle (an idle one, else a new one): NULL when out of
 * memory. Give it back with acs_pool_put, always. */
acs_conn *acs_pool_get(acs_pool *p);
void acs_pool_put(acs_pool *p, acs_conn *c);
/* The same for the multi handle of a batch. */
CURLM *acs_pool_get_multi(acs_pool *p);
void acs_pool_put_multi(acs_pool *p, CURLM *m);

/* Header lines every attempt on c sends after its own (e.g. Accept, Host,
 * User-Agent: the same for every request of a client), until c goes back
 * to the pool; the caller keeps them alive (and unchanged) meanwhile. */
void acs_conn_set_tail(acs_conn *c, const struct curl_slist *tail);

/* Driving a multi handle's transfers (a batch). Where the system has epoll
 * (Linux), libcurl's socket interface: the sockets libcurl asks about are
 * watched by one epoll instance, and only the ones with activity are
 * handed back (curl_multi_socket_action); a wait costs the same at 256
 * transfers in flight as at 1. Elsewhere curl_multi_perform and
 * curl_multi_poll, which look at every transfer on every wake. */
typedef struct {
    CURLM *m;
    int epfd;      /* -1: curl_multi_perform / curl_multi_poll */
    long timer_at; /* acs_monotonic_ms when libcurl wants its timeout call; -1: none */
    pid_t pid;     /* the process that made epfd: a forked child drops it */
} acs_multi_loop;

/* Before the first handle is added (l zeroed or not). Cannot fail: without
 * epoll it falls back to perform/poll. */
void acs_multi_loop_begin(acs_multi_loop *l, CURLM *m);
/* Let libcurl act on what is due, first waiting up to wait_ms (0: not at
 * all) for a socket to become ready or its timer to fall due. A signal
 * ends the wait early. In a process forked since begin (a callback forked
 * mid-batch), the epoll instance is the parent's too: the child leaves it
 * and goes on with perform/poll. */
void acs_multi_loop_run(acs_multi_loop *l, long wait_ms);
/* After every handle was removed: callbacks unset, the epoll instance
 * closed (one per batch: never shared with a forked child). Idempotent. */
void acs_multi_loop_end(acs_multi_loop *l);

/* Set up one attempt: GET url with headers (ownership taken: wiped and
 * freed at the next attempt or when the handle goes back), a timeout, and
 * the interrupt check (fn may be NULL). The caller then runs c->easy (easy
 * or multi) and maps its CURLcode with acs_conn_end. libcurl gets the URL
 * pre-parsed when its origin is the last attempt's (only the path and the
 * query are set: no parse of the whole URL per attempt). */
void acs_conn_begin(acs_conn *c, const char *url, struct curl_slist *headers,
                    long timeout_ms, acs_interrupt_fn fn, const void *ud);
/* 0 when a response arrived (c->status, c->body, headers filled), else a
 * CURLcode or ACS_TR_*. Clears the interrupt check. */
int acs_conn_end(acs_conn *c, CURLcode rc);
/* After acs_conn_begin: make the attempt a POST of body (len bytes,
 * owned by the caller until the attempt ends). A handle is made for GET
 * and stays so unless this is called; one that POSTed must be set back
 * (CURLOPT_HTTPGET) by its user: only fetch.c POSTs, on its own pool. */
void acs_conn_post(acs_conn *c, const char *body, size_t len);
/* begin + curl_easy_perform + end. */
int acs_conn_get(acs_conn *c, const char *url, struct curl_slist *headers,
                 long timeout_ms, acs_interrupt_fn fn, const void *ud);
/* How the attempt that returned rc ended, for retry.h (pointers into c). */
void acs_conn_outcome(const acs_conn *c, int rc, acs_outcome *o);
/* One line describing a failed attempt (no secret: libcurl's words). */
const char *acs_conn_error(const acs_conn *c, int rc);

/* Free a request's header list, wiping it first (it holds secrets). */
void acs_free_headers(struct curl_slist *l);

#endif
