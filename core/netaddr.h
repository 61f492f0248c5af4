/*
 * netaddr — the "HOST:PORT" addresses of kizuna's servers (kizuna.listen,
 * kizuna.sandbox.listen).
 *
 * Thread: any; no shared state.
 */
#ifndef KIZUNA_CORE_NETADDR_H
#define KIZUNA_CORE_NETADDR_H

#include <stddef.h>

#include <netinet/in.h>

/* Parses "HOST:PORT" (HOST an IPv4 address or "localhost", PORT 0..65535;
 * 0 lets the kernel pick) into *sa. On error returns KZ_EINVAL and writes
 * `<what> "<text>": <reason>` into err, what naming the setting ("listen"). */
int netaddr_parse(const char *what, const char *text, struct sockaddr_in *sa, char *err,
                  size_t errlen);

#endif
