/* identifier.h - communication identifiers and their rawId, both ways, from
 * one prefix table (azure-sdk-for-js
 * sdk/communication/communication-common/src/identifierModels.ts:
 * getIdentifierRawId and createIdentifierFromRawId;
 * @azure/communication-common 2.4.2, npm). */
#ifndef ACS_IDENTIFIER_H
#define ACS_IDENTIFIER_H

#include <stddef.h>
#include <lua.h>

#include "util.h"

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

/* What the rawId rule reads of an identifier's sub-object (the one named
 * after its kind): its string members (absent: missing or not a string)
 * and whether isAnonymous is truthy (microsoftTeamsUser). */
typedef struct {
    acs_span id, value, user_id, app_id, resource_id, tenant_id, cloud;
    int anon;
} acs_ident_fields;

/* The rule: the rawId of an identifier of `kind` whose sub-object holds
 * `f`, as the pieces out[0..n) whose concatenation it is; returns n (at
 * most 6), or 0 when it has none (unknown kind, a required member absent).
 * An unknown cloud counts as public (as the JS SDK). Both ways to it call
 * this: acs_ident_push_raw_id (a decoded table) and tojson.c (the body's
 * text). */
int acs_raw_id_pieces(int kind, const acs_ident_fields *f, acs_span out[6]);

/* Identifier table at t of the given kind: push its derived rawId and
 * return 1, or push nothing and return 0 (unknown kind, sub-object or a
 * required field missing). An unknown cloud counts as public (as the JS SDK). */
int acs_ident_push_raw_id(lua_State *L, int t, int kind);

/* Registers core.raw_id and core.identifier_from_raw_id into the module
 * table on top. */
void acs_identifier_open(lua_State *L);

#endif
