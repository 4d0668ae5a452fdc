/* tojson.h - a 2xx body of Get Call -> the JSON text of the call acscall.decode
 * would return, in one pass over the body where it can (the gateway's
 * answer on the OpenResty event path: no Lua table of the call in between).
 * The model's shape stays in model.c: where the call differs from the body
 * (an identifier without its rawId or kind), that identifier alone goes
 * through acs_decode_push and is written back as JSON. */
#ifndef ACS_TOJSON_H
#define ACS_TOJSON_H

#include <lua.h>

/* Registers core.call_json into the module table on top (after
 * acs_model_open: it reads ARRAY_FIELDS from it):
 *   core.call_json(body) -> json | nil, message, info | nil
 *     json: valid JSON whose decoding equals acscall.decode(200, body)
 *     (known array fields stay arrays when empty); nil, message, info:
 *     the body is not a call (decode's failure); a lone nil: the call holds
 *     a number JSON cannot carry (NaN): encode it yourself. */
void acs_tojson_open(lua_State *L);

#endif
