/*
 * cli — the `kizuna` command line: parses arguments and runs one command.
 * Thread: main thread.
 */
#ifndef KIZUNA_CORE_CLI_H
#define KIZUNA_CORE_CLI_H

#include <stddef.h>

struct cfg;

/* Returns the process exit code. */
int cli_main(int argc, char **argv);

/* The running daemon's admin API (c->listen, bearer c->admin_token): method
 * path with a JSON body (or NULL) → *status and *resp (malloc'd, the
 * caller frees). KZ_ESTATE when nothing listens. Used by the commands
 * that go through the daemon and by `kizuna chat`'s /advance. */
int cli_admin_call(const struct cfg *c, const char *method, const char *path, const char *body,
                   long *status, char **resp, char *err, size_t errlen);
/* The same, waiting up to timeout_s seconds for the answer (30 above). */
int cli_admin_call_wait(const struct cfg *c, const char *method, const char *path, const char *body,
                        long timeout_s, long *status, char **resp, char *err, size_t errlen);
/* An admin API answer other than 2xx as one line: status, LINE-style
 * message, and a hint for 401/403. */
void cli_admin_error(long status, const char *resp, char *err, size_t errlen);

#endif
