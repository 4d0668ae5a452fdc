/* client.h - the client object: configuration, credential and a connection
 * cache, nothing about any one call. Calls (call.c, batch.c) keep their
 * state on the C stack and take handles from the cache for their duration.
 *
 * Lifetime: close() (or __close, __gc) releases everything once no call is
 * running on the client. Lua code that runs in the middle of a call (a
 * token provider, a finalizer, a debug hook) may call close(): the client
 * is closed for new calls at once and released when the last running call
 * leaves (acs_client_leave, which every call reaches on every exit path,
 * Lua errors included: call.c runs the Lua-facing part of a call under
 * lua_pcall). */
#ifndef ACS_CLIENT_H
#define ACS_CLIENT_H

#include <stddef.h>
#include <lua.h>

#include "auth.h"
#include "failure.h"
#include "request.h"
#include "retry.h"
#include "transport.h"

#define ACS_VERSION "0.1.0"
#define ACS_CLIENT_MT "acscall.client"

/* on_attempt: a Lua function told about every attempt (LUA_NOREF: none;
 * call.h acs_hook_emit calls it). */
typedef struct {
    int ref;
    int warned; /* its first error was reported; later ones are not */
} acs_hook;

typedef struct {
    int closed;
    int calls; /* calls running on this client */
    acs_credential cred;
    int provider_ref; /* token_provider function or credential, or LUA_NOREF */
    int decoder_ref;  /* own cjson decoder (max_depth option), or 0 */
    int strict;       /* strict = true: wrong-typed known fields are errors */
    acs_route route;
    acs_retry_policy retry;
    acs_hook on_attempt; /* the on_attempt option */
    char ua[512]; /* the User-Agent sent */
    char *ca_file;
    acs_pool pool; /* the connection cache (must not move: it does not) */
    unsigned char rnd[512]; /* random bytes for request ids, drawn in bulk */
    size_t rnd_left;
    pid_t rnd_pid; /* who drew them: a forked child draws its own */
} acs_client;

/* The lifecycle every HTTP object shares (a client; core.fetcher is one
 * with no route and no credential, under its own metatable):
 * acs_client_push: a zeroed acs_client userdata with metatable mt, pushed
 * before anything is acquired (from then on __gc releases what was).
 * acs_client_setup: from the options at index 1 (user_agent, ca_file,
 * max_body, retries, connect_timeout, timeout, deadline: options.h's
 * readers), the User-Agent "acscall/<version> <tag>[ <suffix>]" and the
 * connection cache; a mistake raises "<who>: ...". The stack is left as
 * it was.
 * acs_client_close: close() (deferred while a call runs), idempotent. */
acs_client *acs_client_push(lua_State *L, const char *mt);
void acs_client_setup(lua_State *L, acs_client *c, const char *who,
                      const char *tag, size_t max_body_dflt);
int acs_client_close(lua_State *L, acs_client *c);

/* The open client at index idx (raises "closed client" otherwise). */
acs_client *acs_client_check_open(lua_State *L, int idx);
/* The call id at idx: a string of 1..ACS_ID_MAX bytes, else raises. */
const char *acs_client_check_id(lua_State *L, int idx, size_t *len);

/* A call begins on c: counted, and the connection cache checked for a fork.
 * Pure C. Returns NULL or a failure reason (kind "local"). */
const char *acs_client_enter(acs_client *c);
/* ... and ends: released if it was closed meanwhile and this was the last. */
void acs_client_leave(lua_State *L, acs_client *c);

/* What the client adds to a result's meta: its decoder, strictness, and
 * the bearer token sent (bearer: a provider's; else the fixed token), which
 * failure.h redacts from error bodies. */
void acs_client_meta(const acs_client *c, const char *bearer, acs_resp_meta *m);

/* A fresh x-ms-client-request-id; 0 or -1 (no random bytes). */
int acs_client_request_id(acs_client *c, char out[37]);

/* The bearer token of a token_provider or credential client: pushes one
 * value, the token (then *bearer points into it and NULL is returned), or
 * a string saying why there is none (returned: a failure reason of kind
 * "auth", alive while that value stays on the stack), or nil for the other
 * kinds (*bearer NULL, NULL returned).
 *   token_provider: provider() -> token
 *   credential:     cred:get_token() -> token[, expires_on] | nil, message;
 *                   force: cred:get_token{force_refresh = true} (after a 401)
 * expires_on (Unix seconds) must be finite, ahead of now and at most
 * ACS_TOKEN_LIFETIME_MAX_S ahead, else the token is refused (kind "auth");
 * a token already expired is first asked for again with force_refresh.
 * The Lua code runs under lua_pcall. A credential's nil, message is passed
 * on ("credential: <message>": credentials keep secrets out of it); a raised
 * error's text is never echoed (it may hold anything), except an
 * interruption (lua.c's Ctrl-C: "interrupted!"), which is re-raised as is.
 * The caller checks c->closed afterwards. */
const char *acs_client_bearer(lua_State *L, acs_client *c, int force,
                              const char **bearer);

/* 1 if the value at idx is lua.c's / luajit's Ctrl-C error ("...interrupted!"). */
int acs_is_interruption(lua_State *L, int idx);

/* Registers core.new into the module table on top. */
void acs_client_open(lua_State *L);
/* With a class's metatable and methods table on top (class.h): adds
 * __gc, __close, __tostring and close. module.c assembles the client's
 * class from this, call.c's and batch.c's methods. */
void acs_client_methods(lua_State *L);

#endif
