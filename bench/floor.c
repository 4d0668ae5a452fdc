/* floor.c - the floors of `make bench`: libcurl programs, one reused easy
 * handle (keep-alive). Three modes:
 *
 *   raw          as a plain libcurl program: CURLOPT_URL per call, Accept +
 *                Authorization: Bearer, a User-Agent; the body counted and
 *                discarded. No request id, no signing, no JSON.
 *   fair-bearer  the least a C program can do for what acscall-bearer does,
 *                using libcurl as cheaply as we know how: the URL pre-parsed
 *                (CURLOPT_CURLU; the path set per call, as for a new id), the
 *                fixed lines (Accept, User-Agent, Authorization: Bearer) built
 *                once, the request's own line (x-ms-client-request-id, a UUID
 *                v4 from RAND_bytes drawn 32 ids at a time) in a stack node in
 *                front of them; the body kept and decoded by lua-cjson
 *                (cjson.decode called from C in an embedded Lua state: the
 *                parser acscall uses, producing the same Lua tables, without
 *                acscall's shaping); status 200 checked. No retries, no
 *                timeouts, no error messages, no response-header capture, no
 *                fork check, no Ctrl-C check.
 *   fair-hmac    the same with HMAC-SHA256 signing as ACS needs it: x-ms-date
 *                (formatted per call), x-ms-content-sha256 (the empty body's
 *                constant, a fixed line), Authorization: HMAC-SHA256 ... (one
 *                EVP_MAC_CTX keyed once from BENCH_KEY, re-initialised per
 *                call, one update over string_to_sign, base64) over the exact
 *                path, query and Host.
 *
 *   floor MODE URL CA_FILE|- N WARMUP        N calls after WARMUP, one line
 *   floor MODE URL CA_FILE|- serve WARMUP    after WARMUP, for each line "N"
 *                                            on stdin: N calls, one line
 *   floor batch MODE URL CA_FILE|- COUNT CONC   COUNT GETs over the multi
 *                                            interface, CONC in flight
 * URL: the endpoint ("http://127.0.0.1:PORT/"); the call id is fixed.
 * prints: RESULT n=N wall_us=<per call> cpu_us=<client user+sys per call>
 *   (batch: RESULT n= conc= wall_s= cpu_us_per_id= ok=)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#define CALL_ID "18dea47f-b081-4107-9a5c-4300819d2c6c"
#define PATH "/calling/callConnections/" CALL_ID
#define QUERY "api-version=2026-03-12"
#define PATHQ PATH "?" QUERY
#define EMPTY_HASH "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

enum { RAW, FAIR_BEARER, FAIR_HMAC };

static int mode;
static char url[1024], host[256], token[512];
static unsigned char key[256];
static int keylen;
static lua_State *L; /* fair modes: cjson.decode at stack index 1 */
static struct curl_slist *fixed; /* fair modes: the lines that never change */
static EVP_MAC_CTX *mac;         /* fair-hmac: keyed once */
static unsigned char rnd[512];
static size_t rnd_left;

typedef struct {
    CURL *e;
    CURLU *u;
    struct curl_slist *h, node[3];
    char line[3][256];
    char *body;
    size_t len, cap;
    int busy;
} conn;

static size_t on_body(char *p, size_t s, size_t n, void *ud)
{
    conn *c = ud;
    size_t len = s * n;
    if (mode == RAW) { /* counted, discarded */
        c->len += len;
        return len;
    }
    if (c->len + len + 1 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16384;
        while (cap < c->len + len + 1)
            cap *= 2;
        if ((c->body = realloc(c->body, cap)) == NULL)
            return 0;
        c->cap = cap;
    }
    memcpy(c->body + c->len, p, len);
    c->len += len;
    return len;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static void uuid4(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    int i, o = 0;
    if (rnd_left < 16) {
        RAND_bytes(rnd, sizeof rnd);
        rnd_left = sizeof rnd;
    }
    rnd_left -= 16;
    memcpy(b, rnd + rnd_left, 16);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

/* This call's request headers: raw, a new list per call, as plainly
 * written; fair, the call's own lines in c's nodes, then the fixed ones. */
static struct curl_slist *headers(conn *c)
{
    struct curl_slist *h = NULL;
    char line[700], id[37];
    int n = 0;
    if (mode == RAW) {
        h = curl_slist_append(h, "Accept: application/json");
        snprintf(line, sizeof line, "Authorization: Bearer %s", token);
        return curl_slist_append(h, line);
    }
    uuid4(id);
    snprintf(c->line[n++], sizeof c->line[0], "x-ms-client-request-id: %s", id);
    if (mode == FAIR_HMAC) {
        char date[64], sts[1024], sig[64];
        unsigned char m[32];
        size_t mlen = 0;
        time_t t = time(NULL);
        struct tm tm;
        int len;
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&t, &tm));
        len = snprintf(sts, sizeof sts, "GET\n%s\n%s;%s;%s", PATHQ, date, host, EMPTY_HASH);
        EVP_MAC_init(mac, NULL, 0, NULL);
        EVP_MAC_update(mac, (unsigned char *)sts, (size_t)len);
        EVP_MAC_final(mac, m, &mlen, sizeof m);
        EVP_EncodeBlock((unsigned char *)sig, m, 32);
        snprintf(c->line[n++], sizeof c->line[0], "x-ms-date: %s", date);
        snprintf(c->line[n++], sizeof c->line[0],
                 "Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;"
                 "x-ms-content-sha256&Signature=%s", sig);
    }
    while (n-- > 0) {
        c->node[n].data = c->line[n];
        c->node[n].next = h ? h : fixed;
        h = &c->node[n];
    }
    return h;
}

static void conn_init(conn *c, const char *ca)
{
    memset(c, 0, sizeof *c);
    c->e = curl_easy_init();
    curl_easy_setopt(c->e, CURLOPT_NOSIGNAL, 1L);
    if (mode == RAW)
        curl_easy_setopt(c->e, CURLOPT_USERAGENT, "floor/1 libcurl");
    else {
        c->u = curl_url();
        curl_url_set(c->u, CURLUPART_URL, url, 0);
        curl_easy_setopt(c->e, CURLOPT_CURLU, c->u);
    }
    curl_easy_setopt(c->e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->e, CURLOPT_PRIVATE, c);
    if (ca)
        curl_easy_setopt(c->e, CURLOPT_CAINFO, ca);
}

/* Before a transfer: this call's URL and headers. */
static void prepare(conn *c)
{
    if (mode == RAW) {
        curl_slist_free_all(c->h);
        c->h = headers(c);
        curl_easy_setopt(c->e, CURLOPT_URL, url);
    } else {
        c->h = headers(c);
        curl_url_set(c->u, CURLUPART_PATH, PATH, 0); /* as for a new id */
        curl_url_set(c->u, CURLUPART_QUERY, QUERY, 0);
    }
    c->len = 0;
    curl_easy_setopt(c->e, CURLOPT_HTTPHEADER, c->h);
}

/* After it: status 200 and (fair) a decoded table. 0 or -1. */
static int finish(conn *c, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(c->e, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200 || c->len == 0) {
        fprintf(stderr, "floor: %s, HTTP %ld, %zu bytes\n", curl_easy_strerror(rc),
                status, c->len);
        return -1;
    }
    if (mode != RAW) {
        int ok;
        lua_pushvalue(L, 1);
        lua_pushlstring(L, c->body, c->len);
        ok = lua_pcall(L, 1, 1, 0) == 0 && lua_type(L, -1) == LUA_TTABLE;
        lua_pop(L, 1);
        if (!ok) {
            fprintf(stderr, "floor: cjson.decode failed\n");
            return -1;
        }
    }
    return 0;
}

static int one(conn *c)
{
    prepare(c);
    return finish(c, curl_easy_perform(c->e));
}

static int burst(conn *c, long n)
{
    long i;
    double t0 = now_us(), c0 = cpu_us(), t1, c1;
    for (i = 0; i < n; i++)
        if (one(c) != 0)
            return -1;
    t1 = now_us();
    c1 = cpu_us();
    if (n > 0)
        printf("RESULT n=%ld wall_us=%.2f cpu_us=%.2f\n", n, (t1 - t0) / n, (c1 - c0) / n);
    fflush(stdout);
    return 0;
}

static int batch(const char *ca, long count, int nconc)
{
    CURLM *m = curl_multi_init();
    conn *cs = calloc((size_t)nconc, sizeof *cs);
    long started = 0, done = 0, ok = 0;
    double t0, c0, t1, c1;
    int i;
    for (i = 0; i < nconc; i++)
        conn_init(&cs[i], ca);
    t0 = now_us();
    c0 = cpu_us();
    while (done < count) {
        CURLMsg *msg;
        int running, left, freed = 0;
        for (i = 0; i < nconc && started < count; i++)
            if (!cs[i].busy) {
                prepare(&cs[i]);
                curl_multi_add_handle(m, cs[i].e);
                cs[i].busy = 1;
                started++;
            }
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            conn *c = NULL;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            curl_multi_remove_handle(m, c->e);
            c->busy = 0;
            freed = 1;
            done++;
            if (finish(c, msg->data.result) == 0)
                ok++;
        }
        if (done < count && !(freed && started < count))
            curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    t1 = now_us();
    c1 = cpu_us();
    printf("RESULT n=%ld conc=%d wall_s=%.3f cpu_us_per_id=%.2f ok=%ld\n", count, nconc,
           (t1 - t0) / 1e6, (c1 - c0) / count, ok);
    return ok == count ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *m, *ca, *p, *q;
    int is_batch = argc > 1 && strcmp(argv[1], "batch") == 0;
    char **a = argv + is_batch;
    conn c;

    if (argc - is_batch < 6) {
        fprintf(stderr, "usage: floor [batch] raw|fair-bearer|fair-hmac URL CA_FILE|- "
                        "N|serve WARMUP   (batch: COUNT CONC)\n");
        return 2;
    }
    m = a[1];
    mode = strcmp(m, "raw") == 0 ? RAW : strcmp(m, "fair-bearer") == 0 ? FAIR_BEARER
         : strcmp(m, "fair-hmac") == 0 ? FAIR_HMAC : -1;
    if (mode < 0) {
        fprintf(stderr, "floor: unknown mode %s\n", m);
        return 2;
    }
    p = a[2];
    snprintf(url, sizeof url, "%s%s", p, PATHQ + 1); /* the endpoint ends in '/' */
    q = strstr(p, "://");
    q = q ? q + 3 : p;
    snprintf(host, sizeof host, "%.*s", (int)strcspn(q, "/"), q);
    ca = strcmp(a[3], "-") == 0 ? NULL : a[3];
    snprintf(token, sizeof token, "%s", getenv("BENCH_TOKEN") ? getenv("BENCH_TOKEN") : "emulator-token");
    {
        const char *k = getenv("BENCH_KEY") ? getenv("BENCH_KEY")
                                            : "YWNzLWVtdWxhdG9yLWFjY2Vzcy1rZXktMzItYnl0ZXM=";
        size_t kl = strlen(k);
        if (kl > 300 || (keylen = EVP_DecodeBlock(key, (const unsigned char *)k, (int)kl)) < 0)
            return 2;
        while (kl > 0 && k[kl - 1] == '=') { /* EVP_DecodeBlock counts padding */
            keylen--;
            kl--;
        }
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (mode != RAW) {
        char line[700];
        fixed = curl_slist_append(fixed, "Accept: application/json");
        fixed = curl_slist_append(fixed, "User-Agent: floor/1 libcurl");
        if (mode == FAIR_BEARER) {
            snprintf(line, sizeof line, "Authorization: Bearer %s", token);
            fixed = curl_slist_append(fixed, line);
        } else {
            EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
            OSSL_PARAM ps[2];
            ps[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
            ps[1] = OSSL_PARAM_construct_end();
            mac = EVP_MAC_CTX_new(alg);
            EVP_MAC_init(mac, key, (size_t)keylen, ps);
            fixed = curl_slist_append(fixed, "x-ms-content-sha256: " EMPTY_HASH);
        }
        L = luaL_newstate();
        luaL_openlibs(L);
        lua_getglobal(L, "require");
        lua_pushliteral(L, "cjson");
        if (lua_pcall(L, 1, 1, 0) != 0) {
            fprintf(stderr, "floor: %s\n", lua_tostring(L, -1));
            return 2;
        }
        lua_getfield(L, -1, "decode");
        lua_replace(L, 1);
        lua_settop(L, 1);
    }
    if (is_batch)
        return batch(ca, atol(a[4]), atoi(a[5]));
    conn_init(&c, ca);
    {
        long i, warm = atol(a[5]);
        for (i = 0; i < warm; i++) /* connect, handshake, first allocations */
            if (one(&c) != 0)
                return 1;
    }
    if (strcmp(a[4], "serve") == 0) {
        char line[64];
        while (fgets(line, sizeof line, stdin))
            if (burst(&c, atol(line)) != 0)
                return 1;
        return 0;
    }
    return burst(&c, atol(a[4])) == 0 ? 0 : 1;
}
