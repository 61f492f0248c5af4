/*
 * host — the kz_host function table handed to every plugin.
 *
 * One static const table for the process: slots are never NULL, never
 * uninitialised, and a slot whose service is absent answers KZ_ENOTSUP.
 * Every ctx-taking slot checks that the ctx is live and used on the thread
 * running its handler (KZ_ESTATE otherwise, with a log line naming the
 * plugin), so a stored ctx cannot write outside its transaction.
 *
 * Thread: host_table() from any thread; the slots as documented in
 * sdk/include/kizuna/host.h.
 */
#ifndef KIZUNA_CORE_HOST_H
#define KIZUNA_CORE_HOST_H

#include <kizuna/host.h>

const kz_host *host_table(void);

/* Shared by the slots implemented in other files (apicall.c). */

/* 1 when ctx is live on this thread; else logs "<what> called with a kz_ctx
 * that is not live" and returns 0. */
int host_ctx_live(const kz_ctx *ctx, const char *what);
/* Called before a handler's write: opens its savepoint in a careful batch,
 * notes the write otherwise (bus.h). 0, KZ_ESTATE, or the store's error. */
int host_ctx_writable(kz_ctx *ctx, const char *what);
/* 1 when the event being handled arrived in LINE's `mode: standby`. */
int host_in_standby(const kz_ctx *ctx);
/* ^[UCR][0-9a-f]{32}$ (only U when !any). */
int host_line_id_ok(const char *id, int any);
/* Frees buf (malloc'd) when the handler of ctx returns: for values the host
 * hands a plugin "valid until the handler returns". */
int host_keep_buf(kz_ctx *ctx, void *buf);

/* Frees what the ctx keeps between handler calls (kv buffers, the last
 * checked messages); the owner of the ctx, once no handler runs. */
void host_ctx_free(kz_ctx *ctx);
/* The checks every publishing slot makes: a valid topic and one JSON value
 * (none or empty: "{}", written back through json and len); logs why not. */
int host_event_check(const char *what, const char *topic, const char **json, size_t *len);

#endif
