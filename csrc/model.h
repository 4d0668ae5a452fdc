/* model.h - HTTP status + body -> CallConnectionProperties table, or the
 * failure (failure.h) the response means. Pure: no I/O, no clock.
 * lua-cjson tokenizes (a private cjson.safe instance per lua_State); the
 * shape of the model (wire names, nulls, identifiers, enums, types) is
 * decided in model.c and nowhere else. */
#ifndef ACS_MODEL_H
#define ACS_MODEL_H

#include <stddef.h>
#include <lua.h>

#include "failure.h"

#include "acs_limits.h"

/* Once per lua_State (at luaopen): require "cjson.safe", make a private
 * instance with decode_max_depth(max_depth) and keep it in the registry.
 * Raises a Lua error if lua-cjson is missing. */
void acs_decode_init(lua_State *L, int max_depth);

/* A decoder with its own depth limit (a client's max_depth): a registry
 * reference the caller owns (luaL_unref it when done). */
int acs_decode_new_decoder(lua_State *L, int max_depth);

/* Decode one response. Pushes the call table and returns 1, or pushes
 * nil, message, info and returns 3 (kind "http" for non-2xx, "decode" for
 * a 2xx body that is not a valid CallConnectionProperties; a 2xx whose
 * body is a CommunicationErrorResponse is kind "http" with its message and
 * code). A known field of the wrong JSON type is kept as sent unless
 * meta->strict; a lone surrogate escape decodes as U+FFFD; an error body is
 * redacted (failure.h) before it is read. Decode
 * messages: "decode: response body is empty", "decode: invalid JSON: <cjson's
 * reason>", "decode: expected a JSON object, got array",
 * "decode: targets[2].phoneNumber.value: expected string, got number".
 * "HTTP <status>: <text>": the service message and " (code C)", or a
 * non-JSON body's <title> / first text line, or the reason phrase. */
int acs_decode_push(lua_State *L, long status, const char *body, size_t len,
                    const acs_resp_meta *meta);

/* A response header's value from the table at t (names matched with
 * acs_eq_ci, so name is lower case; a list of values: the first), or NULL
 * (also when t is not a table). The string stays alive in the table. The
 * one lookup of a header in a Lua table. */
const char *acs_table_header(lua_State *L, int t, const char *name);

/* Registers core.decode, CALL_FIELDS (the top-level fields in schema order)
 * and ARRAY_FIELDS (a set of every known array field, the error model's
 * "details" included) into the module table on top:
 *   core.decode(status, body[, headers[, opts]]) -> call | nil, message, info
 *     (body nil = empty; header names matched case-insensitively:
 *      x-ms-request-id, x-ms-client-request-id, content-type,
 *      content-encoding; opts.strict: a known field of the wrong JSON type
 *      is an error, as it is for a client made with strict = true) */
void acs_model_open(lua_State *L);

#endif
