/* module.c - luaopen_acscall_core: one-time library init, then each file
 * registers its own functions. The files, by concern:
 *   client.c      the client object: options, lifetime, credential, new
 *   call.c        one call (get_call, request, next_attempt) and its frame
 *   batch.c       get_calls over libcurl multi
 *   request.c     stage 1: route, URL, headers
 *   auth.c        connection strings, access keys, HMAC; sign/http_date/uuid
 *   retry.c       the one "next attempt" rule
 *   transport.c   stage 2: libcurl only, the connection cache
 *   model.c       stage 3: JSON -> CallConnectionProperties; decode
 *   tojson.c      a 2xx body -> the call's JSON in one pass (call_json)
 *   identifier.c  rawId both ways; raw_id, identifier_from_raw_id
 *   fetch.c       core.fetcher: HTTP for the identity side (token requests)
 *   command.c     core.spawn: a local program (the Azure CLI), no shell
 *   failure.c     the nil, message, info contract; failure
 *   util.c        UUIDs, clock, sleep */
#include <lua.h>
#include <lauxlib.h>

#include "auth.h"
#include "call.h"
#include "client.h"
#include "compat.h"
#include "failure.h"
#include "fetch.h"
#include "identifier.h"
#include "model.h"
#include "command.h"
#include "tojson.h"
#include "transport.h"

ACS_EXPORT int luaopen_acscall_core(lua_State *L);
ACS_EXPORT int luaopen_acscall_core(lua_State *L)
{
    if (acs_transport_global_init() != 0)
        return luaL_error(L, "acscall: libcurl initialisation failed");
    acs_decode_init(L, ACS_DEFAULT_MAX_DEPTH);
    acs_call_note_main_thread(L);
    lua_newtable(L);
    acs_client_open(L);
    acs_fetch_open(L);
    acs_spawn_open(L);
    acs_auth_open(L);
    acs_model_open(L);
    acs_tojson_open(L);
    acs_identifier_open(L);
    acs_failure_open(L);
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
