/* batch.h - get_calls over libcurl multi (batch.c). */
#ifndef ACS_BATCH_H
#define ACS_BATCH_H

#include <lua.h>

/* Adds get_calls to the methods table on top. */
void acs_batch_methods(lua_State *L);

#endif
