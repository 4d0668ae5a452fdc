/* command.h - core.spawn: run a program (no shell) and collect its output,
 * for credentials that ask a local tool (the Azure CLI's
 * `az account get-access-token`).
 *
 *   code, stdout, stderr = core.spawn{argv = {"az", "account", ...},
 *                                     timeout = 10, max_output = 1048576}
 *
 * argv[1] is looked up on PATH (posix_spawnp); arguments go as a vector,
 * never through a shell. stdin is /dev/null; the environment is the
 * process's. The child is always reaped: on timeout, on output larger than
 * max_output (each of stdout and stderr), on Ctrl-C (call.h's watch) and
 * when Lua raises mid-way it is killed (SIGKILL) first.
 * Failures: nil, message, info{kind = "local"}: not found, not runnable,
 * timed out (info.timeout = true), killed by a signal, too much output.
 * The output is returned as is: the caller decides what may be shown. */
#ifndef ACS_COMMAND_H
#define ACS_COMMAND_H

#include <lua.h>

/* Registers core.spawn into the module table on top. */
void acs_spawn_open(lua_State *L);

#endif
