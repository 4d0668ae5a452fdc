/* transport.c - stage 2 over libcurl (transport.h). */
#include "transport.h"

#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif

#include <openssl/crypto.h>

#include "util.h"


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
    acs_conn *t = ud;
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

/* the value of a captured header, truncated to dst's size */
static int capture(char *dst, size_t dstlen, const char *line, size_t len,
                   const char *name)
{
    size_t vlen;
    const char *v = acs_header_line_value(line, len, name, &vlen); /* util.h */
    if (v == NULL)
        return 0;
    if (vlen >= dstlen)
        vlen = dstlen - 1;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
    return 1;
}

#define CAPTURE(field, name)                                                 \
    if (capture(t->field, sizeof t->field, line, len, name))                 \
        return len;

static void reset_response(acs_conn *t)
{
    t->len = 0;
    t->overflow = 0;
    t->status = 0;
    t->request_id[0] = t->content_type[0] = t->retry_after[0] = '\0';
    t->retry_after_ms[0] = t->x_retry_after_ms[0] = '\0';
    t->content_encoding[0] = '\0';
    t->errbuf[0] = '\0';
    if (t->body)
        t->body[0] = '\0';
}

static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
    acs_conn *t = ud;
    size_t len = size * n;
    if (len > 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* a new response (e.g. after 100 Continue): forget the last */
        t->request_id[0] = t->content_type[0] = t->retry_after[0] = '\0';
        t->retry_after_ms[0] = t->x_retry_after_ms[0] = '\0';
        t->content_encoding[0] = '\0';
        return len;
    }
    CAPTURE(request_id, "x-ms-request-id")
    CAPTURE(content_type, "content-type")
    CAPTURE(content_encoding, "content-encoding")
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
    const acs_conn *c = ud;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return c->interrupted && c->interrupted(c->interrupted_ud) ? 1 : 0;
}

/* ---------- sockets: which are ours, so a forked child can let go ------ */

/* ---------- ACSCALL_LOOPBACK_ONLY ---------------------------------------- */

static int addr_is_loopback(const struct curl_sockaddr *a)
{
    if (a->family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&a->addr;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)&a->addr;
        const unsigned char *b = in6->sin6_addr.s6_addr;
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (memcmp(b, v4mapped, 12) == 0 && b[12] == 127);
    }
    return 0; /* (a Unix socket is never asked for: http and https only) */
}


/* ---------- sockets: which are ours, so a forked child can let go ------ */

static curl_socket_t on_open_socket(void *ud, curlsocktype purpose,
                                    struct curl_sockaddr *a)
{
    acs_conn *c = ud;
    acs_pool *p = c->pool;
    struct stat st;
    int fd;
    (void)purpose;
    if (p->loopback_only && !addr_is_loopback(a)) {
        c->refused = 1;
        return CURL_SOCKET_BAD;
    }
    if (p->nsocks == p->socks_cap) {
        int cap = p->socks_cap ? p->socks_cap * 2 : 16;
        acs_sock *s = realloc(p->socks, (size_t)cap * sizeof *s);
        if (s == NULL)
            return CURL_SOCKET_BAD;
        p->socks = s;
        p->socks_cap = cap;
    }
    /* close-on-exec: a child the host spawns never inherits a connection */
    fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return CURL_SOCKET_BAD;
    }
    p->socks[p->nsocks].fd = fd;
    p->socks[p->nsocks].dev = st.st_dev;
    p->socks[p->nsocks].ino = st.st_ino;
    p->socks[p->nsocks].state = ACS_SOCK_OURS;
    p->nsocks++;
    return fd;
}

static int on_close_socket(void *ud, curl_socket_t fd)
{
    acs_pool *p = ud;
    int i;
    for (i = 0; i < p->nsocks; i++)
        if (p->socks[i].fd == fd) {
            int foreign = p->socks[i].state == ACS_SOCK_FOREIGN;
            p->socks[i] = p->socks[--p->nsocks];
            if (foreign)
                return 0; /* the child's own file now: not ours to close */
            break;
        }
    return close(fd);
}

/* ---------- easy handles ------------------------------------------------ */

/* Free the attempt's own header lines (not the caller's tail). */
static void conn_drop_headers(acs_conn *c)
{
    if (c->own_last)
        c->own_last->next = NULL;
    c->own_last = NULL;
    acs_free_headers(c->headers);
    c->headers = NULL;
}

static void conn_free(acs_conn *c)
{
    if (c == NULL)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    conn_drop_headers(c);
    curl_url_cleanup(c->uh);
    free(c->uh_origin);
    free(c->body);
    free(c);
}

static acs_conn *conn_new(acs_pool *p)
{
    const acs_transport_opts *o = &p->opts;
    acs_conn *c = calloc(1, sizeof *c);
    CURL *e;
    if (c == NULL)
        return NULL;
    e = c->easy = curl_easy_init();
    if (e == NULL) {
        free(c);
        return NULL;
    }
    c->max_body = o->max_body;
    c->pool = p;
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_SHARE, p->share);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, c);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, p);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* never follow */
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L); /* the path we signed */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_file && curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file) != CURLE_OK) {
        conn_free(c);
        return NULL;
    }
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, o->user_agent);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    return c;
}

/* ---------- the pool ---------------------------------------------------- */

static const char *share_init(acs_pool *p)
{
    if ((p->share = curl_share_init()) == NULL)
        return "libcurl: cannot create a share handle";
    /* One thread uses a client at a time: no lock callbacks needed. */
    if (curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
        curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
        curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        curl_share_cleanup(p->share);
        p->share = NULL; /* (tried again by the next call) */
        return "libcurl: cannot share connections";
    }
    return NULL;
}

const char *acs_pool_init(acs_pool *p, const acs_transport_opts *o)
{
    const char *lo = getenv("ACSCALL_LOOPBACK_ONLY");
    p->opts = *o;
    p->loopback_only = lo != NULL && strcmp(lo, "1") == 0;
    p->pid = acs_getpid();
    if (acs_transport_global_init() != 0)
        return "libcurl initialisation failed";
    return share_init(p);
}

/* Every handle and the share, not the socket list. */
static void pool_drop(acs_pool *p)
{
    int i;
    for (i = 0; i < p->nidle; i++)
        conn_free(p->idle[i]);
    p->nidle = 0;
    if (p->multi)
        curl_multi_cleanup(p->multi);
    p->multi = NULL;
    if (p->share)
        curl_share_cleanup(p->share); /* closes the cached connections */
    p->share = NULL;
}

/* In a forked child: point each inherited socket's number at /dev/null,
 * so that nothing the child's libcurl does (a request on a cached
 * connection, a TLS close_notify, a read of pending bytes) reaches the
 * parent's connection; libcurl finds such a connection dead (readable,
 * nothing to read) and opens its own. A number that no longer holds our
 * socket (checked by device and inode: the child closed it and reused the
 * number) is marked foreign and left alone: never closed by us; a number
 * already pointed at /dev/null is checked the same way (by the /dev/null's
 * device and inode), so called again it only catches up. -1 when there is
 * no /dev/null to point at. */
static int pool_null_sockets(acs_pool *p)
{
    int i, null_fd = -1;
    struct stat null_st;
    for (i = 0; i < p->nsocks; i++) {
        acs_sock *k = &p->socks[i];
        struct stat st;
        if (k->state == ACS_SOCK_FOREIGN)
            continue;
        if (fstat(k->fd, &st) != 0 || st.st_dev != k->dev || st.st_ino != k->ino) {
            k->state = ACS_SOCK_FOREIGN; /* (a nulled one too: reused since) */
            continue;
        }
        if (k->state == ACS_SOCK_NULLED)
            continue;
        if (null_fd < 0 && ((null_fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 ||
                            fstat(null_fd, &null_st) != 0))
            break;
        if (dup2(null_fd, k->fd) < 0)
            break;
        k->state = ACS_SOCK_NULLED;
        k->dev = null_st.st_dev; /* what the number holds now */
        k->ino = null_st.st_ino;
    }
    if (null_fd >= 0)
        close(null_fd);
    return i < p->nsocks ? -1 : 0;
}

/* In a forked child, with no handle out: free every handle without
 * touching the parent's connections (pool_null_sockets first). A foreign
 * number (the child's own file) is set aside while libcurl closes, and put
 * back afterwards, so libcurl's close cannot write to or take the child's
 * file. -1, freeing nothing, when that cannot be done safely (no
 * /dev/null, no memory): a leak in the child beats bytes on the parent's
 * connections. */
static int pool_let_go(acs_pool *p)
{
    struct aside {
        int fd, saved, flags;
    } *a = NULL;
    int i, n = p->nsocks, null_fd;
    if (pool_null_sockets(p) != 0 ||
        (null_fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
        return -1;
    if (n > 0 && (a = calloc((size_t)n, sizeof *a)) == NULL) {
        close(null_fd);
        return -1;
    }
    for (i = 0; i < n; i++) {
        a[i].fd = p->socks[i].fd;
        a[i].saved = -1;
        if (p->socks[i].state == ACS_SOCK_FOREIGN) {
            a[i].flags = fcntl(a[i].fd, F_GETFD);
            a[i].saved = fcntl(a[i].fd, F_DUPFD_CLOEXEC, 0);
            if (a[i].saved < 0)
                break; /* cannot keep the child's file safe: give up */
            dup2(null_fd, a[i].fd);
        }
    }
    if (i < n) { /* undo, free nothing */
        while (i-- > 0)
            if (a[i].saved >= 0) {
                dup2(a[i].saved, a[i].fd);
                fcntl(a[i].fd, F_SETFD, a[i].flags);
                close(a[i].saved);
            }
        free(a);
        close(null_fd);
        return -1;
    }
    pool_drop(p); /* (our close callback leaves foreign numbers open) */
    for (i = 0; i < n; i++)
        if (a[i].saved >= 0) {
            dup2(a[i].saved, a[i].fd);
            fcntl(a[i].fd, F_SETFD, a[i].flags);
            close(a[i].saved);
        }
    free(a);
    close(null_fd);
    p->nsocks = 0; /* closed by pool_drop, or never ours */
    return 0;
}

void acs_pool_free(acs_pool *p)
{
    /* a forked child that closes (or collects) a client it never used,
     * or one that saw the fork in the middle of a call */
    if (p->stale || (p->pid != 0 && acs_getpid() != p->pid)) {
        if (pool_let_go(p) != 0)
            p->nidle = 0; /* leaked, not written to the parent's connections */
    } else {
        pool_drop(p);
    }
    free(p->idle);
    p->idle = NULL;
    p->idle_cap = 0;
    free(p->socks);
    p->socks = NULL;
    p->nsocks = p->socks_cap = 0;
}

const char *acs_pool_after_fork(acs_pool *p)
{
    pid_t pid = acs_getpid();
    if (pid != p->pid) {
        /* at once, even with handles out: none of the parent's sockets is
         * reachable from here any more */
        if (pool_null_sockets(p) != 0)
            return "cannot let go of the connections of the parent process "
                   "after a fork (no /dev/null)";
        p->pid = pid;
        p->stale = 1;
    }
    if (p->out > 0)
        return NULL; /* (handles out: dropped when the last comes back) */
    if (p->stale) {
        if (pool_let_go(p) != 0) { /* abandon them: a leak, never the parent's bytes */
            p->nidle = 0;
            p->multi = NULL;
            p->share = NULL;
            p->nsocks = 0;
        }
        p->stale = 0;
    }
    /* a share that could not be made (out of memory) is tried again by
     * every call until it can */
    return p->share ? NULL : share_init(p);
}

acs_conn *acs_pool_get(acs_pool *p)
{
    acs_conn *c = p->nidle > 0 ? p->idle[--p->nidle] : conn_new(p);
    if (c)
        p->out++;
    return c;
}

void acs_pool_put(acs_pool *p, acs_conn *c)
{
    if (c == NULL)
        return;
    p->out--;
    conn_drop_headers(c);
    c->tail = NULL;
    c->interrupted = NULL;
    c->interrupted_ud = NULL;
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, NULL);
    if (c->cap > ACS_KEEP_BODY_MAX) { /* do not keep one huge answer's memory */
        free(c->body);
        c->body = NULL;
        c->cap = 0;
    }
    if (p->share && p->nidle == p->idle_cap && p->idle_cap < ACS_POOL_IDLE_MAX) {
        int cap = p->idle_cap ? p->idle_cap * 2 : 4;
        acs_conn **n = realloc(p->idle, (size_t)cap * sizeof(acs_conn *));
        if (n) {
            p->idle = n;
            p->idle_cap = cap;
        }
    }
    if (p->share && p->nidle < p->idle_cap)
        p->idle[p->nidle++] = c;
    else
        conn_free(c);
}

CURLM *acs_pool_get_multi(acs_pool *p)
{
    CURLM *m = p->multi ? p->multi : curl_multi_init();
    p->multi = NULL;
    if (m)
        p->out++;
    return m;
}

void acs_pool_put_multi(acs_pool *p, CURLM *m)
{
    if (m == NULL)
        return;
    p->out--;
    if (p->multi == NULL && p->share)
        p->multi = m;
    else
        curl_multi_cleanup(m);
}

/* ---------- driving a multi handle ------------------------------------- */

#ifdef __linux__
static int on_multi_socket(CURL *e, curl_socket_t fd, int what, void *ud,
                           void *sockp)
{
    acs_multi_loop *l = ud;
    struct epoll_event ev;
    (void)e;
    memset(&ev, 0, sizeof ev);
    ev.data.fd = fd;
    if (what == CURL_POLL_REMOVE) {
        /* (libcurl forgets sockp with the socket) */
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, &ev); /* (gone already: fine) */
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) |
                (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    /* sockp: set (to l) once the socket is in the epoll set */
    if (sockp == NULL && epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        curl_multi_assign(l->m, fd, l);
    else
        epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev);
    return 0;
}

static int on_multi_timer(CURLM *m, long timeout_ms, void *ud)
{
    acs_multi_loop *l = ud;
    (void)m;
    l->timer_at = timeout_ms < 0 ? -1 : acs_monotonic_ms() + timeout_ms;
    return 0;
}
#endif

void acs_multi_loop_begin(acs_multi_loop *l, CURLM *m)
{
    l->m = m;
    l->epfd = -1;
    l->timer_at = -1;
    l->pid = acs_getpid();
#ifdef __linux__
    if ((l->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return;
    if (curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_multi_socket) != CURLM_OK ||
        curl_multi_setopt(m, CURLMOPT_SOCKETDATA, l) != CURLM_OK ||
        curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_multi_timer) != CURLM_OK ||
        curl_multi_setopt(m, CURLMOPT_TIMERDATA, l) != CURLM_OK) {
        acs_multi_loop_end(l);
        l->m = m;
    }
#endif
}

#ifdef __linux__
/* Back to perform/poll: no socket or timer callbacks, epfd closed. */
static void multi_loop_unwatch(acs_multi_loop *l)
{
    curl_multi_setopt(l->m, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(l->m, CURLMOPT_SOCKETDATA, NULL);
    curl_multi_setopt(l->m, CURLMOPT_TIMERFUNCTION, NULL);
    curl_multi_setopt(l->m, CURLMOPT_TIMERDATA, NULL);
    close(l->epfd); /* (a forked child's copy only) */
    l->epfd = -1;
}
#endif

void acs_multi_loop_run(acs_multi_loop *l, long wait_ms)
{
    int running = 0;
#ifdef __linux__
    if (l->epfd >= 0 && acs_getpid() != l->pid)
        multi_loop_unwatch(l);
    if (l->epfd >= 0) {
        struct epoll_event ev[64];
        long now = acs_monotonic_ms();
        int i, n;
        if (l->timer_at >= 0 && l->timer_at - now < wait_ms)
            wait_ms = l->timer_at <= now ? 0 : l->timer_at - now;
        n = epoll_wait(l->epfd, ev, 64, (int)wait_ms);
        for (i = 0; i < n; i++) {
            int mask = (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                       (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                       (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(l->m, ev[i].data.fd, mask, &running);
        }
        if (l->timer_at >= 0 && l->timer_at <= acs_monotonic_ms()) {
            l->timer_at = -1; /* libcurl sets it again if it wants */
            curl_multi_socket_action(l->m, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        return;
    }
#endif
    if (wait_ms > 0)
        curl_multi_poll(l->m, NULL, 0, (int)wait_ms, NULL);
    curl_multi_perform(l->m, &running);
}

void acs_multi_loop_end(acs_multi_loop *l)
{
    if (l->m == NULL)
        return; /* never begun (zeroed), or ended */
#ifdef __linux__
    if (l->epfd >= 0)
        multi_loop_unwatch(l);
#endif
    l->epfd = -1;
    l->m = NULL;
}

/* ---------- one attempt ------------------------------------------------- */

void acs_conn_set_tail(acs_conn *c, const struct curl_slist *tail)
{
    c->tail = tail;
}

#define URL_PATH_MAX 4096 /* longer paths: CURLOPT_URL */

/* Point c->easy at url through c's pre-parsed URL handle: the whole URL is
 * parsed once per origin, after that only the path and the query are set
 * (no re-parse per attempt; libcurl 7.88 spends ~20k instructions parsing
 * and re-formatting a URL string). -1: use CURLOPT_URL instead (a URL this
 * does not take apart: libcurl parses it, and refuses what it refuses). */
static int conn_set_url(acs_conn *c, const char *url)
{
    const char *auth = strstr(url, "://"), *path, *q = NULL, *p;
    char buf[URL_PATH_MAX];
    size_t olen;
    if (auth == NULL || (path = strchr(auth + 3, '/')) == NULL)
        return -1;
    for (p = path; *p; p++) {
        /* what libcurl's parser would refuse or strip, and '%': setting a
         * path or query part makes libcurl 7.88 lower-case the hex of
         * escapes ("%2F" -> "%2f"), and the signature covers them as given */
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f || ch == '#' || ch == '%')
            return -1;
        if (ch == '?' && q == NULL)
            q = p;
    }
    olen = (size_t)(path - url);
    if (c->uh_origin && c->uh_origin_len == olen &&
        memcmp(c->uh_origin, url, olen) == 0) {
        size_t plen = (size_t)((q ? q : p) - path);
        if (plen >= sizeof buf)
            return -1;
        memcpy(buf, path, plen);
        buf[plen] = '\0';
        if (curl_url_set(c->uh, CURLUPART_PATH, buf, 0) == CURLUE_OK &&
            curl_url_set(c->uh, CURLUPART_QUERY, q ? q + 1 : NULL, 0) == CURLUE_OK)
            return 0;
    } else {
        char *o = malloc(olen + 1);
        if (o && (c->uh || (c->uh = curl_url()) != NULL) &&
            curl_url_set(c->uh, CURLUPART_URL, url, CURLU_PATH_AS_IS) == CURLUE_OK) {
            memcpy(o, url, olen);
            o[olen] = '\0';
            free(c->uh_origin);
            c->uh_origin = o;
            c->uh_origin_len = olen;
            return 0;
        }
        free(o);
    }
    free(c->uh_origin); /* the handle's state is unknown: parse afresh next time */
    c->uh_origin = NULL;
    c->uh_origin_len = 0;
    return -1;
}

void acs_conn_begin(acs_conn *c, const char *url, struct curl_slist *headers,
                    long timeout_ms, acs_interrupt_fn fn, const void *ud)
{
    conn_drop_headers(c);
    c->headers = headers;
    if (c->tail) { /* the caller's fixed lines after the attempt's own */
        struct curl_slist *last = headers;
        if (last) {
            while (last->next)
                last = last->next;
            last->next = (struct curl_slist *)c->tail; /* unlinked before freeing */
            c->own_last = last;
        } else {
            headers = (struct curl_slist *)c->tail;
        }
    }
    reset_response(c);
    c->interrupted = fn;
    c->interrupted_ud = ud;
    c->refused = c->pool->loopback_only && !acs_url_is_loopback(url);
    /* refused: an empty URL fails at once, before any DNS lookup */
    if (!c->refused && conn_set_url(c, url) == 0) {
        curl_easy_setopt(c->easy, CURLOPT_CURLU, c->uh);
    } else {
        curl_easy_setopt(c->easy, CURLOPT_CURLU, NULL);
        curl_easy_setopt(c->easy, CURLOPT_URL, c->refused ? "" : url);
    }
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, timeout_ms < 1 ? 1L : timeout_ms);
}

void acs_conn_post(acs_conn *c, const char *body, size_t len)
{
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
}

int acs_conn_end(acs_conn *c, CURLcode rc)
{
    c->interrupted = NULL;
    c->interrupted_ud = NULL;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->status);
    if (c->refused) {
        c->status = 0;
        return ACS_TR_REFUSED;
    }
    if (c->overflow)
        return ACS_TR_TOO_LARGE;
    if (rc == CURLE_WRITE_ERROR)
        return ACS_TR_NOMEM;
    if (rc == CURLE_ABORTED_BY_CALLBACK)
        return ACS_TR_INTERRUPTED;
    return (int)rc;
}

int acs_conn_get(acs_conn *c, const char *url, struct curl_slist *headers,
                 long timeout_ms, acs_interrupt_fn fn, const void *ud)
{
    acs_conn_begin(c, url, headers, timeout_ms, fn, ud);
    return acs_conn_end(c, curl_easy_perform(c->easy));
}

static acs_outcome_class classify(int rc)
{
    switch (rc) {
    case 0: return ACS_OUT_RESPONSE;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return ACS_OUT_DNS;
    case CURLE_COULDNT_CONNECT: return ACS_OUT_CONNECT;
    case CURLE_OPERATION_TIMEDOUT: return ACS_OUT_TIMEOUT;
    case CURLE_SEND_ERROR: return ACS_OUT_SEND;
    case CURLE_RECV_ERROR: return ACS_OUT_RECV;
    case CURLE_GOT_NOTHING: return ACS_OUT_CLOSED;
    case CURLE_PARTIAL_FILE: return ACS_OUT_TRUNCATED;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM: return ACS_OUT_TLS;
    case ACS_TR_TOO_LARGE: return ACS_OUT_TOO_LARGE;
    case ACS_TR_INTERRUPTED: return ACS_OUT_INTERRUPTED;
    case ACS_TR_NOMEM:
    case CURLE_OUT_OF_MEMORY: return ACS_OUT_LOCAL;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_BAD_CONTENT_ENCODING: return ACS_OUT_PROTOCOL;
    default: return ACS_OUT_OTHER;
    }
}

void acs_conn_outcome(const acs_conn *c, int rc, acs_outcome *o)
{
    o->cls = classify(rc);
    o->status = rc == 0 ? c->status : 0;
    o->retry_after = c->retry_after[0] ? c->retry_after : NULL;
    o->retry_after_ms = c->retry_after_ms[0] ? c->retry_after_ms : NULL;
    o->x_retry_after_ms = c->x_retry_after_ms[0] ? c->x_retry_after_ms : NULL;
}

const char *acs_conn_error(const acs_conn *c, int rc)
{
    if (rc == ACS_TR_TOO_LARGE)
        return "response body exceeds the max_body limit";
    if (rc == ACS_TR_INTERRUPTED)
        return "interrupted";
    if (rc == ACS_TR_REFUSED)
        return "refused a host that is not loopback (ACSCALL_LOOPBACK_ONLY=1)";
    if (rc == ACS_TR_NOMEM)
        return "out of memory while reading the response";
    if (c->errbuf[0])
        return c->errbuf;
    return curl_easy_strerror((CURLcode)rc);
}
