/* floor.c - the floor for `make bench`: N sequential GETs over one reused
 * libcurl easy handle (keep-alive), body discarded, roughly the headers
 * acscall sends (Accept, Authorization: Bearer $BENCH_TOKEN, a User-Agent). Nothing else:
 * no signing, no request id, no JSON.
 *
 *   floor URL CA_FILE|- N [WARMUP]
 * prints: RESULT n=N wall_us=<per call> cpu_us=<client user+sys per call>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <curl/curl.h>

static size_t discard(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    *(size_t *)ud += s * n;
    return s * n;
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

static int get(CURL *e, size_t *bytes)
{
    long status = 0;
    CURLcode rc;
    *bytes = 0;
    rc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200 || *bytes == 0) {
        fprintf(stderr, "floor: %s, HTTP %ld, %zu bytes\n",
                curl_easy_strerror(rc), status, *bytes);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    CURL *e;
    struct curl_slist *h = NULL;
    size_t bytes = 0;
    long i, n, warm;
    double t0, c0, t1, c1;

    if (argc < 4) {
        fprintf(stderr, "usage: floor URL CA_FILE|- N [WARMUP]\n");
        return 2;
    }
    n = atol(argv[3]);
    warm = argc > 4 ? atol(argv[4]) : 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    e = curl_easy_init();
    h = curl_slist_append(h, "Accept: application/json");
    {
        char auth[512];
        const char *tok = getenv("BENCH_TOKEN"); /* the emulator checks it */
        snprintf(auth, sizeof auth, "Authorization: Bearer %s",
                 tok ? tok : "emulator-token");
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(e, CURLOPT_URL, argv[1]);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "floor/1 libcurl");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &bytes);
    if (strcmp(argv[2], "-") != 0)
        curl_easy_setopt(e, CURLOPT_CAINFO, argv[2]);
    for (i = 0; i < warm; i++) /* connect (and handshake) outside the timing */
        if (get(e, &bytes) != 0)
            return 1;
    t0 = now_us();
    c0 = cpu_us();
    for (i = 0; i < n; i++)
        if (get(e, &bytes) != 0)
            return 1;
    t1 = now_us();
    c1 = cpu_us();
    if (n > 0)
        printf("RESULT n=%ld wall_us=%.2f cpu_us=%.2f\n", n, (t1 - t0) / n,
               (c1 - c0) / n);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    curl_global_cleanup();
    return 0;
}
