/* options.h - options described once: each object's option list (name,
 * type, default, bounds, doc), checked against it before anything is read,
 * and the readers every object uses. Exported as core.OPTIONS (new's),
 * core.FETCHER_OPTIONS, core.GET_CALLS_OPTIONS and core.LIMITS (acs_limits.h),
 * which the CLI, the docs and the specs read.
 *
 * A mistake is the programmer's and raises, naming the option (never its
 * value), at the line that called the Lua-facing function:
 *   "acscall.new: unknown option 'retires' (did you mean 'retries'?)"
 *   "acscall.new: option 'strict' must be a boolean, got string" */
#ifndef ACS_OPTIONS_H
#define ACS_OPTIONS_H

#include <stddef.h>
#include <lua.h>

#include "acs_limits.h"
#include "retry.h"

/* Lua types an option takes (several may be or'ed) */
enum {
    ACS_OT_STRING = 1,
    ACS_OT_NUMBER = 2,   /* seconds or bytes */
    ACS_OT_INTEGER = 4,  /* a number with no fraction */
    ACS_OT_BOOLEAN = 8,
    ACS_OT_FUNCTION = 16,
    ACS_OT_OBJECT = 32,  /* a table or userdata (with methods) */
    ACS_OT_TABLE = 64,
    ACS_OT_FALSE = 128   /* only the value false */
};

typedef struct {
    const char *name;
    int types;
    const char *type;   /* the types as documented: "string", "false|table" */
    double dflt;        /* default, for a number (has_dflt) */
    const char *dflt_s; /* default, for a string or boolean ("true"/"false") */
    int has_dflt;
    double min, max;    /* numbers: the range; strings: max bytes (max > 0) */
    int min_exclusive;  /* > min, not >= */
    const char *doc;
} acs_option;

/* The lists (a NULL name ends each). */
extern const acs_option acs_new_options[];
extern const acs_option acs_fetcher_options[];
extern const acs_option acs_get_calls_options[];

/* Check the options table at idx against list: every key a known name,
 * every value of its type; raises "<who>: ..." at the caller's line. */
void acs_options_check(lua_State *L, int idx, const acs_option *list,
                       const char *who);

/* Readers of the options table at index 1 (after acs_options_check; an
 * __index may still supply values, so each checks what it reads).
 * acs_opt_string leaves the value on the stack (NULL when absent);
 * acs_opt_bool: 0/1 or dflt; acs_opt_ms reads seconds, returns ms in
 * [1, ACS_SECONDS_MAX * 1000] or dflt; acs_opt_retries sets p to the ACS
 * defaults (retry.h acs_retry_defaults) and reads retries over them
 * (acs_retry_read). */
const char *acs_opt_string(lua_State *L, const char *who, const char *name,
                           size_t *len);
int acs_opt_bool(lua_State *L, const char *who, const char *name, int dflt);
long acs_opt_ms(lua_State *L, const char *who, const char *name, long dflt);
void acs_opt_retries(lua_State *L, const char *who, acs_retry_policy *p);
/* max_body: bytes in [ACS_MAX_BODY_MIN, ACS_MAX_BODY_MAX], or dflt */
size_t acs_opt_max_body(lua_State *L, const char *who, size_t dflt);

/* Registers OPTIONS, FETCHER_OPTIONS, GET_CALLS_OPTIONS and LIMITS into
 * the module table on top. */
void acs_options_open(lua_State *L);

#endif
