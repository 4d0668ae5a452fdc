/* fetch.h - core.fetcher: a small HTTP client on the same transport as the
 * calls (transport.c: libcurl, TLS verification, the connection cache, fork
 * handling, ACSCALL_LOOPBACK_ONLY) and the same retry rule (retry.c), for
 * the identity side: the token requests of lua/acscall/credential.lua. No
 * second HTTP stack.
 *
 *   f = core.fetcher{ca_file=, user_agent=, timeout=, connect_timeout=,
 *                    deadline=, retries = n | false | {max=, base_delay=,
 *                    max_delay=}, base_delay=, max_delay=, max_body=}
 *   status, body, headers = f:fetch{url=, method = "GET" | "POST",
 *                                   headers = {Name = value}, form = {k = v},
 *                                   timeout=}
 *   (a 4th value: the number of attempts made)
 *   f:close()   (also __close, __gc; deferred while a fetch runs)
 *
 * fetch returns any HTTP response, after retrying what retry.h retries
 * (408, 429, 5xx, transport failures; Retry-After honoured; the deadline);
 * headers holds the response headers transport.h captures, lower-cased:
 * content-type, content-encoding, x-ms-request-id, retry-after.
 * No response: nil, message, info{kind = "transport" | "local", attempts}.
 * form is sent urlencoded (keys sorted), as a POST. Header and form values
 * are secrets to us: never in a message; wiped from memory when freed. */
#ifndef ACS_FETCH_H
#define ACS_FETCH_H

#include <lua.h>

/* Also core.is_loopback_url(url) -> boolean: the loopback rule of
 * ACSCALL_LOOPBACK_ONLY (util.h), for acscall.credential's own check.
 * Registers core.fetcher and core.is_loopback_url into the module table on
 * top. */
void acs_fetch_open(lua_State *L);

#endif
