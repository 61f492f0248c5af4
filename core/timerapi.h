/*
 * timerapi — the ABI 1.4 host slots for durable timers (kizuna/host.h:
 * timer_set, timer_cancel). Timers are written in the handler's savepoint,
 * owned by the calling instance (store instance id), and fired by the
 * bus's pump (timers.h) as events of the instance's shop.
 *
 * Ownership and threads: as host.h says for each slot.
 */
#ifndef KIZUNA_CORE_TIMERAPI_H
#define KIZUNA_CORE_TIMERAPI_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/host.h>

#define TIMER_KEY_MAX 200

int timerapi_set(kz_ctx *ctx, const char *key, int64_t due_ms, const char *topic, const char *user,
                 const char *json, size_t len);
int timerapi_cancel(kz_ctx *ctx, const char *key);

#endif
