/* failure.h - the `nil, message, info` contract, shaped in one place.
 *
 * Every runtime failure of acscall (network, service, data, our own limits)
 * reaches Lua as three values: nil, a one-line message, and an info table.
 * Other files say *what* failed (a kind and their own wording); this file
 * decides how that looks:
 *   message  one line: control characters become single spaces, at most
 *            ACS_MSG_CAP bytes, cut on a UTF-8 boundary with "...";
 *            "<kind>: <text>", or "HTTP <status>: <text>" for kind "http".
 *   info     kind (one of the closed list below), status (> 0), message
 *            (the text without the prefix), request_id (the service's
 *            x-ms-request-id, else our client request id), client_request_id,
 *            attempts (> 0), timeout (true when the last attempt timed out).
 * Kinds (closed list; README "Errors"):
 *   transport  no usable response: DNS, connect, TLS, timeout, reset, ...
 *   http       the service answered non-2xx (CommunicationErrorResponse)
 *   decode     a 2xx whose body is not a CallConnectionProperties, or too big
 *   auth       no credential to send (token provider failed, signing failed)
 *   local      this process failed: out of memory, no random bytes
 *   thread     (OpenResty) the thread pool could not take the task
 * Exported to Lua as core.failure(kind, text[, fields]) so that transports
 * written in Lua build no info table by hand. */
#ifndef ACS_FAILURE_H
#define ACS_FAILURE_H

#include <stddef.h>
#include <lua.h>

#include "acs_limits.h" /* ACS_MSG_CAP */

/* A secret to hide (acs_push_redacted); not NUL-terminated. */
typedef struct {
    const char *p;
    size_t len;
} acs_secret;

/* What is known about the request and response, for info tables. Any
 * pointer may be NULL; attempts == 0 means "not reported". */
typedef struct {
    const char *request_id;        /* x-ms-request-id header */
    const char *client_request_id; /* the x-ms-client-request-id we sent */
    const char *content_type;      /* Content-Type header */
    const char *content_encoding;  /* Content-Encoding header */
    acs_secret secrets[ACS_SECRETS_MAX]; /* redacted from error bodies */
    int nsecrets;
    int strict;      /* model.h: a wrong-typed known field is an error */
    int attempts;
    int timeout;     /* the last attempt timed out: info.timeout = true */
    int has_retry_after;  /* the server set a wait: info.retry_after */
    long retry_after_ms;  /* it (retry.h acs_retry_server_delay_ms) */
    int decoder_ref; /* model.h: a client's own decoder, or 0 */
} acs_resp_meta;

/* A one-line message under construction (fixed size: nothing to free when
 * Lua raises). */
typedef struct {
    char b[ACS_MSG_CAP + 4];
    size_t n, cap;
    int space, full;
} acs_msgbuf;

void acs_mb_init(acs_msgbuf *m, size_t cap);
/* text: control characters and whitespace runs become one space */
void acs_mb_add(acs_msgbuf *m, const char *s, size_t len);
void acs_mb_str(acs_msgbuf *m, const char *s);
/* a literal separator, kept as is */
void acs_mb_sep(acs_msgbuf *m, const char *s);
/* trim, mark a cut with "...", NUL-terminate */
void acs_mb_finish(acs_msgbuf *m);

/* 1 if kind is in the closed list above. */
int acs_failure_kind_known(const char *kind);

/* Push a new info table (kind, status, meta's fields); returns its index. */
int acs_failure_push_info(lua_State *L, const char *kind, long status,
                          const acs_resp_meta *meta);
/* With the info table on top: push nil, the finished message, info (the
 * info table moves up). Returns 3. */
int acs_failure_finish(lua_State *L, acs_msgbuf *m);

/* nil, message, info for a failure that has no usable response (status 0)
 * or only a status. text: our own wording, never a secret. Returns 3. */
int acs_push_failure(lua_State *L, const char *kind, long status,
                     const char *text, const acs_resp_meta *meta);

/* The prefix for kind "http": "HTTP <status>". */
void acs_mb_http(acs_msgbuf *m, long status);

/* The one redaction rule. Push s with every secret and every credential
 * a server may echo replaced by "***": each of secrets[0..n) that is at
 * least ACS_REDACT_MIN bytes (acs_limits.h; surrounding whitespace aside), in
 * any mix of its literal, percent-encoded, JSON-escaped and
 * whitespace-folded spellings (failure.c), and the value after "Bearer "
 * or "Signature=" (any case) when it is at least ACS_REDACT_BEARER_MIN
 * token68 characters ("invalid bearer token" stays readable). Error
 * bodies are redacted before anything is read from them, so no message,
 * info field or detail can carry a credential back (README "Errors").
 * Exported as core.redact(text, secrets). */
void acs_push_redacted(lua_State *L, const char *s, size_t len,
                       const acs_secret *secrets, int n);
/* Trim a secret's surrounding whitespace; 1 if it is long enough to be
 * searched for. */
int acs_secret_usable(acs_secret *sec);

/* Registers core.failure, core.redact, core.check_header_value (util.h's
 * rule) and core.KINDS into the module table on top. */
void acs_failure_open(lua_State *L);

#endif
