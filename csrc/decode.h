/* decode.h - HTTP status + body -> CallConnectionProperties table, or an error.
 * Pure: no I/O, no clock. lua-cjson tokenizes (a private cjson.safe instance);
 * the shape of the model (wire names, nulls, identifiers, enums, types) is
 * decided here and nowhere else. */
#ifndef ACS_DECODE_H
#define ACS_DECODE_H

#include <stddef.h>
#include <lua.h>

#define ACS_DEFAULT_MAX_DEPTH 64 /* JSON nesting accepted (the model needs 4) */

/* What the transport knows about a response, for info tables. Any pointer
 * may be NULL; attempts == 0 means "not reported". */
typedef struct {
    const char *request_id;        /* x-ms-request-id header */
    const char *client_request_id; /* the x-ms-client-request-id we sent */
    const char *content_type;      /* Content-Type header */
    int attempts;
    int timeout;     /* the last attempt timed out: info.timeout = true */
    int decoder_ref; /* a registry ref from acs_decode_new_decoder, or 0
                        for the module's own (ACS_DEFAULT_MAX_DEPTH) */
} acs_resp_meta;

/* Once per lua_State (at luaopen): require "cjson.safe", make a private
 * instance with decode_max_depth(max_depth) and keep it in the registry.
 * Raises a Lua error if lua-cjson is missing. */
void acs_decode_init(lua_State *L, int max_depth);

/* A decoder with its own depth limit (a client's max_depth): a registry
 * reference the caller owns (luaL_unref it when done). */
int acs_decode_new_decoder(lua_State *L, int max_depth);

/* Decode one response. Pushes the call table and returns 1, or pushes
 * nil, message, info and returns 3 (info.kind "http" for non-2xx, "decode"
 * for a 2xx body that is not a valid CallConnectionProperties). Decode
 * messages: "decode: response body is empty", "decode: invalid JSON: <cjson's
 * reason>", "decode: expected a JSON object, got array",
 * "decode: targets[2].phoneNumber.value: expected string, got number". */
int acs_decode_push(lua_State *L, long status, const char *body, size_t len,
                    const acs_resp_meta *meta);

/* Push nil, message, info for a failure that has no usable response
 * (kind "transport", "auth", ...). status 0 = none. Returns 3. The message
 * must not contain secrets: callers pass only their own wording.
 *
 * Message convention (all of decode.c): one line, control characters turned
 * into single spaces, at most ~300 bytes (cut on a UTF-8 boundary, "..."):
 *   "<kind>: <text>"        transport, auth, decode (acs_push_failure: text =
 *                           message; kind alone when message is NULL/empty)
 *   "HTTP <status>: <text>" kind "http": the service message and " (code C)",
 *                           or a non-JSON body's <title> / first text line,
 *                           or the reason phrase ("HTTP 502: Bad Gateway")
 * info: kind; status (when > 0); message (the text without the prefix, or
 * the service's message as sent); code/target/details/innererror for http
 * errors with a CommunicationErrorResponse body (nulls stripped, a numeric
 * code turned into a string); request_id (meta->request_id, else the client
 * request id), client_request_id, attempts (when > 0). */
int acs_push_failure(lua_State *L, const char *kind, long status,
                     const char *message, const acs_resp_meta *meta);

/* Lua entry points (registered by the module glue):
 *   core.decode(status, body[, headers]) -> call | nil, message, info
 *     (body nil = empty; header names matched case-insensitively:
 *      x-ms-request-id, x-ms-client-request-id, content-type)
 *   core.raw_id(identifier)               -> string | nil
 *   core.identifier_from_raw_id(raw)      -> identifier table */
int acs_l_decode(lua_State *L);
/* Pushes two tables: CALL_FIELDS (schema order) and ARRAY_FIELDS (a set). */
void acs_decode_push_schema(lua_State *L);
int acs_l_raw_id(lua_State *L);
int acs_l_identifier_from_raw_id(lua_State *L);

#endif
