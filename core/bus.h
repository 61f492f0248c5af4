/*
 * bus — durable, ordered, exactly-once delivery of events to plugin
 * instances.
 *
 * Path of one event: bus_publish (or a handler's kz_publish) appends it to
 * the store. Each shop belongs to one worker thread (hash of the shop id), so
 * a shop's instances are only ever called from that thread, in event order.
 * A worker reads the shop's events after the lowest cursor of its instances
 * and, in one store transaction (group commit), hands each event to every
 * instance whose subscriptions match. Handlers write straight into the
 * transaction; one that fails after writing has the batch rolled back and
 * run again with a savepoint per handler call, whose failing one is rolled
 * back, so one event's failure never undoes another's effects (a savepoint
 * per call everywhere would cost a third of a small handler's time). The
 * instances' cursors advance in the same transaction:
 * a crash anywhere re-delivers exactly the events whose effects were lost.
 *
 * A failing handler blocks its instance (not the shop's other instances) at
 * that event and is retried with exponential backoff and jitter; after
 * `retry_attempts` failures, or at once when it returns KZ_EFATAL, the event
 * is parked as a dead letter for that instance and the instance moves on.
 * `kizuna events --replay ID` queues a dead letter to be handed to its
 * instance once more.
 *
 * Ownership: the bus owns its instances, workers and store connections.
 * Thread: bus_new/bus_add_instance/bus_start/bus_stop/bus_free on the main
 * thread; bus_publish* from any thread; bus_run_until_idle only while the
 * workers are not started (tests, tools).
 */
#ifndef KIZUNA_CORE_BUS_H
#define KIZUNA_CORE_BUS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <kizuna/plugin.h>

#include "inflight.h"
#include "kvbatch.h"
#include "loader.h"
#include "metrics.h"
#include "store.h"

typedef struct bus bus;
typedef struct bus_instance bus_instance;
typedef struct bus_worker bus_worker;

typedef struct bus_options {
    const char *store_url;
    int sync_mode;            /* STORE_SYNC_* */
    int workers;              /* threads, >= 1 */
    int batch;                /* events per group commit, >= 1 */
    int retry_attempts;       /* failures before an event is dead, >= 1 */
    int64_t retry_initial_ms; /* first backoff */
    int64_t retry_max_ms;     /* backoff cap */
    int64_t poll_ms;          /* idle re-check for events stored by other processes */
    int64_t coalesce_ms;      /* pause after a part-full batch so the next one grows; 0: none */
    /* retention (kizuna.retention): events every instance of their shop has
     * handled, and finished outbox rows, are deleted this long after; 0:
     * kept (bus_prune) */
    int64_t retention_events_ms, retention_sends_ms;
    const char *inflight_path; /* crash guard file (inflight.h); NULL: none */
    metrics *m;                /* where delivery counters go; NULL: none */
    const struct cfg *c;       /* shops' settings the host table reads (friend attributes);
                                  may be NULL; must outlive the bus */
} bus_options;

/* An event to publish from the core. */
typedef struct bus_msg {
    const char *shop;
    const char *uid; /* NULL: a random UUID */
    const char *topic;
    const char *user; /* may be NULL */
    const char *json; /* may be NULL: "{}" */
    size_t len;
    /* json was written by the core from JSON already checked (a webhook's
     * events): only its size is checked again */
    int json_checked;
} bus_msg;

/* ---- handles the SDK sees (defined here for host.c) ------------------- */

struct kz_shop {
    bus_instance *inst;
};

struct kz_event {
    const store_event *se;
    uint32_t attempt;
};

struct kz_ctx {
    bus_instance *inst;
    const struct kz_event *ev;
    store *st; /* NULL when dispatching without a store (bench) */
    pthread_t thread;
    int valid;
    int savepoint_open;
    /* a batch run without a savepoint per handler: a write only marks
     * `wrote`, and a handler that fails after writing has the batch redone
     * with savepoints (bus.c, deliver) */
    int no_savepoint, wrote;
    /* counter increments held over such a batch (kvbatch.h); kb_failed: a
     * write of them failed during the handler call, redo the batch */
    kvbatch kb;
    int kb_failed;
    uint32_t published; /* events published so far: derives their uids */
    int queued_sends;   /* the handler queued outbox rows (line_send) */
    void **kv_bufs;     /* kv_get results, freed when the handler returns */
    size_t nkv_bufs, cap_kv_bufs;
    /* the last messages kz_line_send checked, and their rendering: kept
     * across calls (host.c), freed by host_ctx_free */
    char *sent_in, *sent_canon;
    size_t sent_in_len;
};

struct bus_instance {
    bus *b;
    const plugin *p;
    char *shop_id;
    char *timezone;
    int64_t id;     /* store instance id */
    int64_t cursor; /* last event id handled (in memory, owned by the worker) */
    void *instance; /* the plugin's, from shop_open */
    char **patterns;
    size_t npatterns;
    int enabled;         /* shop_open succeeded and not disabled */
    const struct cfg *c; /* the bus's bus_options.c (or bus_try_open's); may be NULL */
    int in_shop_open;    /* kz_subscribe is allowed */
    struct kz_shop shop;
    /* head-of-line failure, mirrored from the store */
    int64_t fail_event; /* 0: none */
    int fail_attempts;
    int64_t retry_at;
    int dirty; /* cursor changed in the open transaction */
    /* counters {shop, plugin}; NULL without metrics */
    metric_series *m_handled, *m_failed, *m_dead;
    /* their changes in the open transaction, added once it commits */
    uint32_t n_handled, n_failed, n_dead;
};

int bus_new(const bus_options *o, bus **out, char *err, size_t errlen);
/* Stops the workers if running, calls shop_close for every open instance,
 * frees everything. */
void bus_free(bus *b);

/* Makes a shop known to the bus, so events can be published to it even
 * when it enables no plugin (they wait, stored, for plugins enabled later).
 * bus_add_instance does it too. */
int bus_add_shop(bus *b, const char *shop_id);

/* Opens plugin p for a shop: creates or finds its store row, calls
 * shop_open with the setting. A failing shop_open disables the plugin for
 * this shop only: returns KZ_EFAIL with "shop 'x': plugin 'y': shop_open
 * failed: <reason>" in err, and the bus goes on without it. */
int bus_add_instance(bus *b, const plugin *p, const char *shop_id, const char *timezone,
                     const kz_setting *setting, char *err, size_t errlen);

/* Counts a handler that was running when the previous process died as a
 * failed attempt (see inflight.h), then starts the workers. */
int bus_start(bus *b, char *err, size_t errlen);

/* Runs p's shop_open for a shop and, when it succeeds, its shop_close, with
 * no store behind it: how `kizuna check` runs a plugin's own setting checks
 * (c, which may be NULL, gives them the shop's friend attributes).
 * KZ_EFAIL with the plugin's reason in perr when shop_open fails. */
int bus_try_open(const plugin *p, const struct cfg *c, const char *shop_id, const char *timezone,
                 const kz_setting *setting, char *perr, size_t perrlen);
/* Deletes what kizuna.retention lets go, in transactions of at most a
 * thousand rows, until nothing more is due: events older than
 * retention_events_ms that every instance of their shop (as configured now)
 * has handled and no dead letter or failure refers to; outbox rows
 * finished before retention_sends_ms. The workers do the same by
 * themselves, a batch a minute (more while batches come full); this is for
 * tests and tools, while the workers are not started. */
int bus_prune(bus *b, char *err, size_t errlen);

/* Stops dispatch after the batch in progress; idempotent. */
void bus_stop(bus *b);

/* Appends events in one transaction and wakes the workers; returns once
 * they are durable. Concurrent calls share one commit (the bus's commit
 * thread stores everything queued together, each call under its own
 * savepoint). ids (may be NULL) receives each new id, 0 for a duplicate uid.
 * Unknown shop, invalid topic or JSON: KZ_EINVAL and nothing is stored.
 * Thread: any. */
int bus_publish(bus *b, const bus_msg *msgs, size_t n, int64_t *ids, char *err, size_t errlen);

/* Wakes the workers so they look for new events now (events stored by
 * another connection, e.g. the sender's results). Thread: any. */
void bus_wake(bus *b);

/* Called (on a worker thread) after a batch whose handlers queued LINE
 * sends has committed: the sender's wake-up. Set before bus_start. */
void bus_on_sends(bus *b, void (*fn)(void *arg), void *arg);

/* Called on the bus's commit thread once the events of a
 * bus_publish_async are stored (rc 0) or not (rc < 0, reason in err). Keep
 * it short: later publishes wait behind it. */
typedef void (*bus_published_fn)(void *arg, int rc, const char *err);

/* Like bus_publish without waiting: checks the messages (an error is
 * returned at once and cb is never called), queues them, and calls cb when
 * they are durable. msgs, their strings and ids must stay valid until cb.
 * Thread: any. */
int bus_publish_async(bus *b, const bus_msg *msgs, size_t n, int64_t *ids, bus_published_fn cb,
                      void *arg, char *err, size_t errlen);

/* Handles everything due now on the calling thread (workers not started).
 * Returns the number of deliveries made, or a negative error. */
int bus_run_until_idle(bus *b, char *err, size_t errlen);

/* ---- the walking advance of the virtual clock (docs/scheduler.md) ------ */

/* What a walk did. Counts are the bus's, during the walk: a publish from
 * elsewhere handled meanwhile is counted too. */
typedef struct bus_walk {
    int64_t from_ms;      /* the clock when the walk began */
    int64_t now_ms;       /* the clock when it ended (the target, unless it failed) */
    int steps;            /* moves of the clock */
    int64_t timers_fired; /* timers the pump turned into events */
    int64_t handled;      /* handler calls that succeeded (committed) */
    int64_t failed;       /* handler calls that failed (to be retried, or parked dead) */
} bus_walk;

#define BUS_WALK_TIMEOUT_MS 20000      /* real time a walk may take by default */
#define BUS_WALK_TIMEOUT_MAX_MS 600000 /* … and at most, when asked (10 min) */

/* Moves the virtual clock to target_ms the way time would have passed:
 * first waits until the bus is quiescent at the current time, then, while
 * the earliest pending timer, handler retry or (with a sender) outbox row
 * is at or before target_ms, sets the clock to it and waits until
 * quiescent again; finally sets the clock to target_ms and waits once
 * more. So a handler that, at day 1,
 * sets a timer for day 3 sees it fire at day 3 with kz_now_ms() at day 3.
 *
 * Quiescent at time T: no timer due at T; every enabled instance has
 * handled or parked every event of its shop stored so far, or is blocked
 * by a failed event whose retry is later than T; no bus_publish queued;
 * the workers idle; and when the bus has a sender (bus_on_sends), no
 * outbox row due at T (sent, failed, or waiting for a retry after T).
 * Dead-letter replays are not waited for.
 *
 * On a bus whose workers are not started (tests, tools) the walk runs on
 * the calling thread, with bus_run_until_idle at each step as quiescence
 * (no time limit; sends are not waited for).
 *
 * Needs a virtual clock (KZ_ESTATE on the real one, nothing moves).
 * KZ_EINVAL for a target before the clock: it
 * never goes back; reaching the clock's own time is fine (a walk of 0 just
 * waits for quiescence). timeout_ms (<= 0: BUS_WALK_TIMEOUT_MS) bounds the
 * real time spent: past it, KZ_EFAIL with the clock where it got to; a
 * stopping bus (bus_stop, bus_advance_cancel) ends a walk with KZ_ESTATE.
 * *out is filled in every case. One walk at a time: a second waits for the
 * first. Thread: any but a bus worker (a handler would wait for itself);
 * on a bus not started, the thread that may call bus_run_until_idle. */
int bus_advance_to(bus *b, int64_t target_ms, int64_t timeout_ms, bus_walk *out, char *err,
                   size_t errlen);
/* bus_advance_to(now + delta_ms), "now" read once the walk may start:
 * KZ_EINVAL for a negative delta. */
int bus_advance(bus *b, int64_t delta_ms, int64_t timeout_ms, bus_walk *out, char *err,
                size_t errlen);
/* Ends a walk in progress, and refuses later ones (KZ_ESTATE): the daemon
 * is stopping. Thread: any. */
void bus_advance_cancel(bus *b);

/* Hands ev to every enabled instance of its shop that subscribes to its
 * topic, without a store: no transaction, no cursor. Effects that need the
 * store fail with KZ_ENOTSUP. Measures the dispatch cost alone (bench/bus).
 * Returns the number of handler calls. Thread: one caller at a time. */
int bus_dispatch_volatile(bus *b, const store_event *ev);

/* The plugin HTTP routes of the bus's instances (routes.h): registered
 * from shop_open, removed before shop_close. Owned by the bus. */
struct routes;
struct routes *bus_routes(bus *b);

/* Number of instances, and instance i (for tools and tests). */
size_t bus_instance_count(const bus *b);
const bus_instance *bus_instance_at(const bus *b, size_t i);

/* Validates a topic pattern and adds it to an instance being opened. */
int bus_subscribe(bus_instance *inst, const char *pattern);

#endif
