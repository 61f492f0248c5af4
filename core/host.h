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

#endif
