/*
 * timers — the pump that turns due durable timers (store.h, "timers") into
 * events (docs/scheduler.md).
 *
 * One thread per bus, with its own store connection. It fires the timers
 * due on the host clock in due order, `batch` per transaction (each firing
 * appends the event and deletes the timer together: exactly once across
 * crashes), calls `fired` after a commit that fired any (the bus wakes its
 * workers), then sleeps until the earliest due time, at most poll_ms
 * (timers set by handlers since are seen within poll_ms). timers_wake cuts
 * the sleep short: the virtual clock moved.
 *
 * Ownership: the pump owns its thread and connection.
 * Thread: timers_start/timers_stop on one thread; timers_wake from any.
 */
#ifndef KIZUNA_CORE_TIMERS_H
#define KIZUNA_CORE_TIMERS_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct timers timers;

typedef struct timers_options {
    const char *store_url;
    int sync_mode;
    int batch;                       /* timers per transaction, >= 1 */
    int64_t poll_ms;                 /* longest sleep, > 0 */
    void (*fired)(void *arg, int n); /* n: timers fired in that round */
    void *arg;
} timers_options;

int timers_start(const timers_options *o, timers **out, char *err, size_t errlen);
/* Stops and joins the thread, closes its connection; NULL is fine. */
void timers_stop(timers *t);
void timers_wake(timers *t);

/* Fires up to `batch` timers due at now_ms in one transaction on st (the
 * caller's connection, no transaction open; none is opened when nothing is
 * due). Returns how many fired, or a negative error. Also how
 * bus_run_until_idle fires timers. */
int timers_fire_due(store *st, int64_t now_ms, int batch, char *err, size_t errlen);

#endif
