/* identifier.h - communication identifiers and their rawId, both ways, from
 * one prefix table (azure-sdk-for-js
 * sdk/communication/communication-common/src/identifierModels.ts:
 * getIdentifierRawId and createIdentifierFromRawId;
 * @azure/communication-common 2.4.2, npm). */
#ifndef ACS_IDENTIFIER_H
#define ACS_IDENTIFIER_H

#include <stddef.h>
#include <lua.h>

/* The kinds whose sub-object is named after them, in the order a missing
 * kind is inferred (the first sub-object present wins). */
enum {
    ACS_KIND_USER,  /* communicationUser */
    ACS_KIND_PHONE, /* phoneNumber */
    ACS_KIND_TUSER, /* microsoftTeamsUser */
    ACS_KIND_APP,   /* microsoftTeamsApp */
    ACS_KIND_EXT,   /* teamsExtensionUser */
    ACS_KIND_COUNT
};

/* The kind's wire name ("communicationUser", ...). */
const char *acs_kind_name(int kind);
/* ACS_KIND_* for a wire name, or -1. */
int acs_kind_index(const char *name, size_t len);

/* Identifier table at t of the given kind: push its derived rawId and
 * return 1, or push nothing and return 0 (unknown kind, sub-object or a
 * required field missing). An unknown cloud counts as public (as the JS SDK). */
int acs_ident_push_raw_id(lua_State *L, int t, int kind);

/* Registers core.raw_id and core.identifier_from_raw_id into the module
 * table on top. */
void acs_identifier_open(lua_State *L);

#endif
