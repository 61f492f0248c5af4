/*
 * policy — a shop's delivery policy for promotional sends (docs/delivery.md).
 *
 * A plugin marks a push or multicast `promotional` (kz_line_send, ABI 1.5);
 * for a shop with a `delivery` group the core then applies quiet hours and
 * per-friend caps to each recipient, in two places:
 *
 * - policy_admit, from line_send in the handler's transaction: recipients
 *   allowed now go to the outbox as usual (the caller queues them); the
 *   others are held (store "delivery policy") until the quiet hours end or
 *   the cap allows, or dropped (over the cap with KZ_OVER_CAP_DROP, or
 *   held longer than max_defer).
 * - policy_release, from the sender thread: recipients whose hold is over
 *   are decided again, one friend at a time, higher priority first, then
 *   queue order; those allowed become outbox rows (retry key fixed at
 *   insert), the rest are deferred again or dropped — all of one walk in
 *   one transaction, so a crash neither loses nor doubles a send.
 *
 * Caps count promotional sends released to a friend (queued to the outbox)
 * in the shop-local calendar day and in the shop-local week, Monday 00:00
 * to Monday 00:00. Held sends take no slot until released: among several
 * waiting for a friend, the release order (priority) decides who gets it.
 *
 * Ownership: nothing kept between calls; cfg and store belong to the
 * caller. Thread: any, with the caller's store connection.
 */
#ifndef KIZUNA_CORE_POLICY_H
#define KIZUNA_CORE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "store.h"

/* The first instant at or after t outside the quiet hours of dv in zone. */
int64_t policy_open_at(const cfg_delivery *dv, const char *zone, int64_t t);

/* Shop-local calendar periods around t: the day [day_from, day_to) and the
 * week, Monday 00:00 to the next Monday 00:00. */
typedef struct policy_periods {
    int64_t day_from, day_to, week_from, week_to;
} policy_periods;
void policy_periods_of(const char *zone, int64_t t, policy_periods *out);

/* The same two for a shop (quiet hours, zone) at once: the open instant
 * at or after t, and (per may be NULL) the periods around it. Each thread
 * caches the last two shop-local days it computed, so repeated calls
 * within a day cost about one zone conversion instead of dozens. */
int64_t policy_shop_open_at(const cfg_shop *shop, int64_t t, policy_periods *per);

/* One promotional send as line_send has it. Strings are the caller's. */
typedef struct policy_send {
    const char *shop;
    int64_t instance;
    int kind;         /* KZ_LINE_PUSH or KZ_LINE_MULTICAST */
    const char *body; /* the request body without "to" */
    const char *tag;  /* may be NULL */
    const char *origin;
    int priority;
    int over_cap;
} policy_send;

/* Applies shop's policy at now to each of users[0..n) in the open
 * transaction on st: allowed[i] = 1 for those to queue now (counted
 * against their caps here), 0 for those held or dropped. *nallowed (may
 * be NULL) gets how many are allowed. KZ_E… with err on a store error
 * (the caller's savepoint then rolls everything back). */
int policy_admit(store *st, const cfg_shop *shop, const policy_send *ps, int64_t now,
                 const char *const *users, size_t n, unsigned char *allowed, size_t *nallowed,
                 char *err, size_t errlen);

/* Decides the recipients due at now (up to `limit`) in one transaction on
 * st (none open; none is opened when nothing is due): released into the
 * outbox, deferred or dropped. A shop missing from c or without a delivery
 * group any more releases everything. Returns the number of outbox rows
 * written (the sender looks at once), or a negative KZ_E… with err. */
int policy_release(store *st, const cfg *c, int64_t now, int limit, char *err, size_t errlen);

/* A friend's promotional sends against the shop's caps at now, and the
 * sends waiting for them (`kizuna friend`):
 *   {"today":2,"week":3,"capDay":2,"capWeek":3,
 *    "held":[{"send":12,"tag":"p3","priority":0,"overCap":"defer",
 *             "releaseMs":1795482000000,"reason":"cap"}],
 *    "dropped":[{"tag":"p4","priority":0,"atMs":…,"reason":"cap"}]}
 * (drops of the last 7 days; reason "cap" or "max_defer")
 * caps are null when not set. *out is the caller's (json_object_put). */
struct json_object;
int policy_friend_json(store *st, const cfg_shop *shop, const char *user, int64_t now,
                       struct json_object **out, char *err, size_t errlen);

/* The /metrics view of the durable counters (store "delivery policy"). */
typedef struct policy_metrics {
    metric_family *passed, *held, *released, *dropped, *waiting;
} policy_metrics;
/* Registers the families; 0 or KZ_ENOMEM. */
int policy_metrics_init(metrics *m, policy_metrics *out);
/* Copies the store's counters into the families. */
void policy_metrics_refresh(store *st, const policy_metrics *pm);

#endif
