/* call.h - one call on a client: get_call and request (call.c), and what
 * get_calls (batch.c) shares with them. A call is a value on the C stack:
 * the calling thread and its hooks, the deadline, the handles it took from
 * the client's cache. Nothing about it is left in the client when it
 * returns, whether it returns results or a Lua error escapes it.
 *
 * Every call runs in the frame of frame.h. */
#ifndef ACS_CALL_H
#define ACS_CALL_H

#include <lua.h>

#include "client.h"
#include "failure.h"
#include "attempt.h"
#include "frame.h"

/* After the last attempt on conn: push the call, or nil, message, info. */
int acs_call_push_result(lua_State *L, acs_conn *conn, int rc,
                         acs_resp_meta *meta);

/* Adds get_call, request and next_attempt to the methods table on top. */
void acs_call_methods(lua_State *L);

#endif
