/* acs_limits.h - every limit and default of acscall, as named knobs in one
 * place (lua-cjson's decode_max_depth / encode_number_precision pattern).
 * Exported to Lua as core.LIMITS (options.c), which the CLI, the docs and
 * the specs read; no other file writes one of these numbers again.
 * Times are milliseconds here and seconds in core.LIMITS. */
#ifndef ACS_LIMITS_H
#define ACS_LIMITS_H

/* a call id: bytes accepted (percent-encoded: up to 3x) */
#define ACS_ID_MAX 1024
/* decoded access key bytes accepted */
#define ACS_KEY_MAX 512
/* the one-line failure message (failure.h) */
#define ACS_MSG_CAP 300
/* text taken from a non-JSON error body into the message */
#define ACS_EXCERPT_CAP 200
/* redaction (failure.h): a secret shorter than this is not searched for
 * (it would hide ordinary words); the value after "Bearer " or
 * "Signature=" is hidden from this many token68 characters on, so the
 * service's "invalid bearer token" stays readable */
#define ACS_REDACT_MIN 8
#define ACS_REDACT_BEARER_MIN 16
/* secrets one redaction looks for (core.redact, core.failure's secrets) */
#define ACS_SECRETS_MAX 16
/* a header name the fetcher sends */
#define ACS_HEADER_NAME_MAX 100

/* retries after the first attempt, and the backoff (retry.h) */
#define ACS_RETRIES_MAX 20
#define ACS_DEFAULT_RETRIES 3
#define ACS_DEFAULT_BASE_DELAY_MS 800L
#define ACS_DEFAULT_MAX_DELAY_MS 60000L
/* every time option: > 0 and at most this many seconds */
#define ACS_SECONDS_MAX 86400
#define ACS_DEFAULT_DEADLINE_MS 90000L
#define ACS_DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define ACS_DEFAULT_TIMEOUT_MS 30000L

/* response bodies: a client's and the fetcher's default cap, and the
 * bounds of the max_body option */
#define ACS_DEFAULT_MAX_BODY (4u * 1024u * 1024u)
#define ACS_FETCH_DEFAULT_MAX_BODY (1024u * 1024u)
#define ACS_MAX_BODY_MIN 1024
#define ACS_MAX_BODY_MAX 1e9

/* JSON nesting accepted (the model needs 4) and the max_depth bounds */
#define ACS_DEFAULT_MAX_DEPTH 64
#define ACS_MAX_DEPTH_MIN 4
#define ACS_MAX_DEPTH_MAX 1000

/* the user_agent suffix and api_version options, bytes */
#define ACS_USER_AGENT_MAX 256
#define ACS_API_VERSION_MAX 64

/* retry classes as data (retry.h): HTTP statuses listed in one policy */
#define ACS_RETRY_STATUSES_MAX 16
/* a credential's token: an expires_on further ahead than this is absurd
 * (Entra ID access tokens live 60-90 minutes, at most a day; a year is
 * far beyond any) and the token is refused */
#define ACS_TOKEN_LIFETIME_MAX_S (366L * 86400L)

/* get_calls: requests in flight at once */
#define ACS_CONCURRENCY_MAX 256
#define ACS_DEFAULT_CONCURRENCY 16
/* idle easy handles a client keeps (a batch's concurrency), and the body
 * buffer an idle handle may keep (a larger one is freed) */
#define ACS_POOL_IDLE_MAX 256
#define ACS_KEEP_BODY_MAX (1024u * 1024u)

/* core.spawn: arguments, the timeout (default, most seconds), and the
 * output kept per stream (default, most bytes) */
#define ACS_SPAWN_ARGS_MAX 64
#define ACS_DEFAULT_SPAWN_TIMEOUT_MS 10000L
#define ACS_SPAWN_TIMEOUT_MAX 3600
#define ACS_DEFAULT_SPAWN_OUTPUT (1024u * 1024u)
#define ACS_SPAWN_OUTPUT_MAX 64e6

#endif
