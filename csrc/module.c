/* module.c - luaopen_acscall_core: one-time library init, then each file
 * registers its own functions; the client's class is assembled here from
 * the methods of client.c, call.c and batch.c (so none of them includes
 * another's header for it). The files, by concern:
 *   client.c      the client object: lifetime, credential, new; the
 *                 lifecycle the fetcher shares
 *   options.c     options described once (OPTIONS), checked, read; LIMITS
 *   acs_limits.h  every limit and default
 *   class.c       metatable registration
 *   frame.c       the frame every Lua-facing operation runs in; Ctrl-C
 *   call.c        one call (get_call, request, next_attempt)
 *   batch.c       get_calls over libcurl multi
 *   attempt.c     the attempt loop (get_call, a fetch) and on_attempt
 *   request.c     stage 1: route, URL, headers; sign/http_date/uuid
 *   auth.c        connection strings, access keys, HMAC;
 *                 parse_connection_string
 *   retry.c       the one attempt verdict (retry, wait, refresh) and its
 *                 retry classes as data
 *   transport.c   stage 2: libcurl only, the connection cache
 *   model.c       stage 3: JSON -> CallConnectionProperties; decode; the
 *                 header lookup in a Lua table
 *   tojson.c      a 2xx body -> the call's JSON in one pass (call_json)
 *   identifier.c  rawId both ways; raw_id, identifier_from_raw_id
 *   fetch.c       core.fetcher: HTTP for the identity side (token requests)
 *   form.c        the form encoder; form_encode
 *   command.c     core.spawn: a local program (the Azure CLI), no shell
 *   failure.c     the nil, message, info contract and redaction; failure,
 *                 redact, check_header_value, KINDS
 *   util.c        UUIDs, clock, sleep, the header-value rule, the
 *                 case-insensitive compare, the header lookup in a
 *                 response line, the percent-encoder */
#include <lua.h>
#include <lauxlib.h>

#include "auth.h"
#include "batch.h"
#include "call.h"
#include "class.h"
#include "client.h"
#include "compat.h"
#include "failure.h"
#include "fetch.h"
#include "frame.h"
#include "form.h"
#include "identifier.h"
#include "model.h"
#include "request.h"
#include "command.h"
#include "options.h"
#include "tojson.h"
#include "transport.h"

/* The client's class: its own methods, a call's, a batch's. */
static void open_client_class(lua_State *L)
{
    if (acs_class_begin(L, ACS_CLIENT_MT)) {
        acs_client_methods(L);
        acs_call_methods(L);
        acs_batch_methods(L);
        acs_class_end(L, ACS_CLIENT_MT);
    }
}

ACS_EXPORT int luaopen_acscall_core(lua_State *L);
ACS_EXPORT int luaopen_acscall_core(lua_State *L)
{
    if (acs_transport_global_init() != 0)
        return luaL_error(L, "acscall: libcurl initialisation failed");
    acs_decode_init(L, ACS_DEFAULT_MAX_DEPTH);
    acs_call_note_main_thread(L);
    lua_newtable(L);
    open_client_class(L);
    acs_client_open(L);
    acs_fetch_open(L);
    acs_spawn_open(L);
    acs_auth_open(L);
    acs_request_open(L);
    acs_model_open(L);
    acs_tojson_open(L);
    acs_identifier_open(L);
    acs_failure_open(L);
    acs_form_open(L);
    acs_options_open(L);
    lua_pushliteral(L, ACS_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_pushliteral(L, ACS_DEFAULT_API_VERSION);
    lua_setfield(L, -2, "DEFAULT_API_VERSION");
    acs_pushint(L, ACS_ID_MAX);
    lua_setfield(L, -2, "ID_MAX");
    acs_pushint(L, ACS_DEFAULT_MAX_BODY);
    lua_setfield(L, -2, "DEFAULT_MAX_BODY");
    return 1;
}
