/* client.h - the client object shared by the module glue (acscall.c) and
 * get_calls (batch.c): its fields and the steps of one call. */
#ifndef ACS_CLIENT_H
#define ACS_CLIENT_H

#include <stddef.h>
#include <sys/types.h>
#include <lua.h>
#include <curl/curl.h>

#include "auth.h"
#include "decode.h"
#include "request.h"
#include "transport.h"

struct acs_slot; /* batch.c */
struct acs_item;

enum { AUTH_NONE, AUTH_TOKEN, AUTH_HMAC, AUTH_PROVIDER };

typedef struct {
    int closed;
    int busy; /* calls running on this client (see enter/leave) */
    lua_State *call_L; /* the outermost running call's thread, and its hook */
    lua_Hook call_hook; /* state when it began: lua.c's SIGINT handler */
    int call_mask;      /* installs a hook, which is how Ctrl-C is seen */
    int auth;
    acs_route route;
    acs_transport tr;
    acs_signer *signer; /* keyed with the access key (secret, inside libcrypto) */
    unsigned char rnd[512]; /* random bytes for request ids, drawn in bulk */
    size_t rnd_left;
    pid_t rnd_pid;          /* who drew them: a forked child draws its own */
    char *token;      /* "Authorization: Bearer ..." header line (secret) */
    int provider_ref; /* token_provider function, or LUA_NOREF */
    int decoder_ref;  /* own cjson decoder (max_depth option), or 0 */
    char *url;        /* scratch: origin + path + query of the current call */
    size_t url_cap;
    acs_retry_policy retry;
    long timeout_ms;  /* one attempt */
    long deadline_ms; /* one get_call, retries and waits included */
    char ua[512];     /* the User-Agent sent */
    acs_transport_opts topts; /* every handle's options; its progress callback reads them */
    char *ca_file;
    /* get_calls: created on first use, reused by later batches */
    CURLM *multi;
    struct acs_slot **slots;
    int nslots;
    struct acs_item *items;
    size_t items_cap;
} acs_client;

/* Lifetime of a call on c: close() from Lua code run mid-call (the token
 * provider, a finalizer) is deferred until the outermost call leaves. */
void acs_client_enter(lua_State *L, acs_client *c);
void acs_client_leave(lua_State *L, acs_client *c);
/* Leave, release, raise "closed client". */
int acs_client_closed_mid_call(lua_State *L, acs_client *c);
/* Ctrl-C seen (lua.c's SIGINT hook) since the outermost call began. */
int acs_client_interrupted(void *c);
/* The open client at index 1 (raises "closed client" otherwise). */
acs_client *acs_client_check_open(lua_State *L);
/* The call id at idx: a string of 1..ACS_ID_MAX bytes, else raises. */
const char *acs_client_check_id(lua_State *L, int idx, size_t *len);
/* The provider's token (left on the stack) in *bearer, or NULL; returns a
 * failure reason or NULL. The caller checks c->closed afterwards. */
const char *acs_client_bearer(lua_State *L, acs_client *c, const char **bearer);
/* url for id into a growable buffer; 0 or -1 (out of memory). Pure C. */
int acs_client_build_url(const acs_client *c, const char *id, size_t idlen,
                         char **buf, size_t *cap);
/* The request's headers, signed now; NULL with *why. Pure C. */
struct curl_slist *acs_client_build_headers(const acs_client *c, const char *url,
                                            const char *crid, const char *bearer,
                                            const char **why);
/* After the last attempt on tr: push the call, or nil, message, info. */
int acs_client_push_result(lua_State *L, acs_transport *tr, int rc,
                           acs_resp_meta *meta);
/* A fresh x-ms-client-request-id; 0 or -1. */
int acs_client_request_id(acs_client *c, char out[37]);

/* batch.c: client:get_calls, and the release of its state. */
int acs_l_get_calls(lua_State *L);
void acs_batch_free(acs_client *c);

#endif
