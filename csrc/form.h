/* form.h - the one application/x-www-form-urlencoded encoder (the
 * fetcher's POST bodies, core.form_encode for the Lua layers). */
#ifndef ACS_FORM_H
#define ACS_FORM_H

#include <lua.h>

#include "util.h"

/* The table at idx (string keys to string values) encoded, keys sorted
 * byte-wise, unreserved bytes (RFC 3986: A-Z a-z 0-9 - . _ ~) kept and
 * every other byte %XX (upper-case hex), appended to out (whose old
 * copies are wiped as it grows: values are secrets). Calls nothing that
 * can raise. NULL, or a static reason: "'form' must map names to strings"
 * or "out of memory". */
const char *acs_form_encode(lua_State *L, int idx, acs_wbuf *out);

/* Registers core.form_encode(t) -> string into the module table on top. */
void acs_form_open(lua_State *L);

#endif
