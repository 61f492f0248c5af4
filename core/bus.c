#include "bus.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "errbuf.h"
#include "host.h"
#include "log.h"
#include "payload.h"
#include "routes.h"
#include "timers.h"
#include "topic.h"

/* Topic → bit mask of matching instances, per shop. Matching patterns for
 * every instance on every event is the hot path of in-memory dispatch; a
 * shop sees few distinct topics, so a small cache removes it. */
typedef struct topic_slot {
    char *topic;
    uint64_t mask;
} topic_slot;

#define CACHE_SLOTS 1024 /* power of two; cleared when half full */

typedef struct bus_shop {
    char *id;
    bus_instance **inst;
    size_t ninst;
    int worker;
    topic_slot *cache;
    size_t cache_used;
    metric_series *m_transactions; /* NULL without metrics */
} bus_shop;

struct bus_worker {
    bus *b;
    int index;
    pthread_t th;
    int started;
    store *st;
    store_batch batch;
    store_batch replay_batch;
    bus_shop **shops;
    size_t nshops;
    int64_t next_replay_check;
    int64_t next_prune; /* monotonic ms of the next retention batch */
    uint64_t rng;
    struct kz_ctx ctx; /* reused: a stale pointer held by a plugin reads valid == 0 */
    int batch_sends;   /* a handler in the open transaction queued LINE sends */
    int batch_full;    /* the last round read a full batch: more are waiting */
    int batch_handled; /* handler calls in the open transaction that succeeded */
    int batch_failed;  /* … and that failed */
    int careful;       /* the open transaction runs handlers with savepoints */
    struct {           /* the failure that made the batch run again carefully */
        int64_t inst, event;
        int rc;
        char err[512];
    } redo;          /* (inst and event 0: none to reuse) */
    int redo_needed; /* the open optimistic batch must be run again */
    /* what a walk (bus_advance) reads to tell the worker is idle; b->lock */
    uint64_t rounds;    /* rounds begun */
    int waiting;        /* in worker_wait after a round */
    int idle_ok;        /* that round found nothing to do and no error */
    uint64_t idle_seen; /* the wake-up count that round began with */
};

struct bus {
    bus_options o;
    bus_instance **inst;
    size_t ninst;
    bus_shop **shops;
    size_t nshops;
    bus_worker *workers;
    int nworkers;
    store *pub;
    pthread_mutex_t pub_lock;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t wakeups;
    int running;
    struct kz_ctx volatile_ctx;
    inflight *inflight;
    /* group commit: publishers queue, one committer thread stores */
    pthread_mutex_t queue_lock;
    pthread_cond_t queue_cond; /* queue not empty, or stopping */
    pthread_cond_t done_cond;  /* a synchronous request is done */
    struct pub_req *queue;
    struct pub_req **queue_tail;
    pthread_t committer;
    int committer_started;
    int committer_stop;
    /* WAL checkpoints off the writers' path (store_checkpointer) */
    store *ckpt_st;
    pthread_t checkpointer;
    int checkpointer_started;
    metric_family *m_handled, *m_failed, *m_dead, *m_transactions;
    metric_series *m_pruned_events, *m_pruned_sends;  /* retention; NULL without metrics */
    metric_series *m_ckpt_background, *m_ckpt_commit; /* WAL checkpoints; NULL without metrics */
    void (*on_sends)(void *arg);
    void *on_sends_arg;
    routes *routes;  /* plugin HTTP routes, registered from shop_open */
    timers *timers;  /* fires due timers while the workers run */
    int pub_pending; /* publishes queued, not yet completed (queue_lock) */
    /* the walking advance (bus_advance_to) */
    pthread_mutex_t walk_lock; /* one walk at a time; guards walk_st */
    store *walk_st;            /* the walks' own connection, opened by the first */
    atomic_int walk_cancel;
    /* since bus_new, for a walk's report */
    atomic_llong n_fired, n_handled, n_failed;
};

/* One publish waiting for its commit: on the caller's stack until `done`
 * (bus_publish), or on the heap and handed to `cb` (bus_publish_async). */
typedef struct pub_req {
    const bus_msg *msgs;
    size_t n;
    int64_t *ids;
    int rc;
    int done;
    char err[256];
    bus_published_fn cb; /* NULL: a waiting bus_publish */
    void *cb_arg;
    struct pub_req *next;
} pub_req;

#define REPLAY_CHECK_MS 1000
/* Batches (kizuna.batch events each) one worker transaction may run while
 * no other writer waits: a backlog commits 16 times less often. */
#define BATCHES_PER_TRANSACTION 16
/* Retention: rows deleted per transaction, and how often a worker looks
 * (at once again while batches come full). */
#define PRUNE_BATCH 1000
#define PRUNE_EVERY_MS 60000

static int start_committer(bus *b, char *err, size_t errlen);
static void stop_committer(bus *b);
static int start_checkpointer(bus *b, char *err, size_t errlen);
static void stop_checkpointer(bus *b);
static void wake_all(void *arg);

/* ---- small helpers ------------------------------------------------------ */

static const char *code_name(int rc)
{
    switch (rc) {
    case KZ_EINVAL:
        return "KZ_EINVAL";
    case KZ_ENOTFOUND:
        return "KZ_ENOTFOUND";
    case KZ_ECONFLICT:
        return "KZ_ECONFLICT";
    case KZ_ENOMEM:
        return "KZ_ENOMEM";
    case KZ_EIO:
        return "KZ_EIO";
    case KZ_ENOTSUP:
        return "KZ_ENOTSUP";
    case KZ_ESTATE:
        return "KZ_ESTATE";
    case KZ_EFAIL:
        return "KZ_EFAIL";
    case KZ_ETOOBIG:
        return "KZ_ETOOBIG";
    case KZ_EEXIST:
        return "KZ_EEXIST";
    case KZ_EFATAL:
        return "KZ_EFATAL";
    case KZ_ETYPE:
        return "KZ_ETYPE";
    default:
        return "an unknown code";
    }
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static uint64_t next_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static int64_t backoff_ms(bus_worker *w, int attempt)
{
    const bus_options *o = &w->b->o;
    int64_t d = o->retry_initial_ms;
    for (int i = 1; i < attempt && d < o->retry_max_ms; i++)
        d *= 2;
    /* ±25 % jitter so instances failing together do not retry together */
    double f = 0.75 + (double)(next_rand(&w->rng) % 1000) / 2000.0;
    d = (int64_t)((double)d * f);
    if (d > o->retry_max_ms)
        d = o->retry_max_ms;
    return d < 1 ? 1 : d;
}

static bus_shop *find_shop(const bus *b, const char *id)
{
    for (size_t i = 0; i < b->nshops; i++)
        if (strcmp(b->shops[i]->id, id) == 0)
            return b->shops[i];
    return NULL;
}

/* ---- subscriptions ------------------------------------------------------ */

static int instance_matches(const bus_instance *i, const char *topic)
{
    for (size_t k = 0; k < i->npatterns; k++)
        if (topic_match(i->patterns[k], topic))
            return 1;
    return 0;
}

static void cache_clear(bus_shop *s)
{
    for (size_t k = 0; k < CACHE_SLOTS && s->cache != NULL; k++) {
        free(s->cache[k].topic);
        s->cache[k].topic = NULL;
    }
    s->cache_used = 0;
}

/* Bit k set when instance k of the shop subscribes to topic. Shops with more
 * than 64 instances bypass the cache: use instance_wants(). */
static uint64_t shop_mask(bus_shop *s, const char *topic)
{
    if (s->ninst > 64 || s->cache == NULL)
        return UINT64_MAX;
    size_t k = (size_t)hash_str(topic) & (CACHE_SLOTS - 1);
    while (s->cache[k].topic != NULL) {
        if (strcmp(s->cache[k].topic, topic) == 0)
            return s->cache[k].mask;
        k = (k + 1) & (CACHE_SLOTS - 1);
    }
    uint64_t mask = 0;
    for (size_t i = 0; i < s->ninst; i++)
        if (instance_matches(s->inst[i], topic))
            mask |= (uint64_t)1 << i;
    if (s->cache_used >= CACHE_SLOTS / 2) {
        cache_clear(s);
        return mask; /* the next lookup refills an empty table */
    }
    s->cache[k].topic = strdup(topic);
    if (s->cache[k].topic != NULL) {
        s->cache[k].mask = mask;
        s->cache_used++;
    }
    return mask;
}

static int instance_wants(bus_shop *s, uint64_t mask, size_t k, const char *topic)
{
    if (s->ninst > 64)
        return instance_matches(s->inst[k], topic);
    return (int)((mask >> k) & 1);
}

int bus_subscribe(bus_instance *inst, const char *pattern)
{
    if (!topic_pattern_valid(pattern))
        return KZ_EINVAL;
    char **grown = realloc(inst->patterns, (inst->npatterns + 1) * sizeof *grown);
    if (grown == NULL)
        return KZ_ENOMEM;
    inst->patterns = grown;
    inst->patterns[inst->npatterns] = strdup(pattern);
    if (inst->patterns[inst->npatterns] == NULL)
        return KZ_ENOMEM;
    inst->npatterns++;
    return 0;
}

/* ---- construction ------------------------------------------------------- */

static int register_metrics(bus *b)
{
    static const char *const labels[] = {"shop", "plugin", NULL}, *const shop_label[] = {"shop",
                                                                                         NULL};
    b->m_handled = metrics_counter(b->o.m, "kizuna_events_handled_total",
                                   "Events a plugin instance handled (committed).", labels);
    b->m_failed = metrics_counter(b->o.m, "kizuna_handler_failures_total",
                                  "Handler calls that failed and were rolled back.", labels);
    b->m_dead = metrics_counter(b->o.m, "kizuna_events_dead_total",
                                "Events parked as dead letters.", labels);
    b->m_transactions = metrics_counter(
        b->o.m, "kizuna_bus_transactions_total",
        "Worker transactions that handed a shop's events to its plugins (committed).", shop_label);
    static const char *const what[] = {"what", NULL}, *const events[] = {"events", NULL},
                             *const sends[] = {"sends", NULL};
    metric_family *pruned =
        metrics_counter(b->o.m, "kizuna_retention_deleted_total",
                        "Rows deleted by kizuna.retention: handled events, finished sends.", what);
    b->m_pruned_events = pruned != NULL ? metrics_series(pruned, events) : NULL;
    b->m_pruned_sends = pruned != NULL ? metrics_series(pruned, sends) : NULL;
    static const char *const by[] = {"by", NULL}, *const by_ckpt[] = {"checkpointer", NULL},
                             *const by_commit[] = {"commit", NULL};
    metric_family *ckpt = metrics_counter(
        b->o.m, "kizuna_store_checkpoints_total",
        "WAL copied into the database: catch-ups of the checkpoint thread, and checkpoints a "
        "commit ran itself because the thread was far behind (updated after each catch-up).",
        by);
    b->m_ckpt_background = ckpt != NULL ? metrics_series(ckpt, by_ckpt) : NULL;
    b->m_ckpt_commit = ckpt != NULL ? metrics_series(ckpt, by_commit) : NULL;
    return b->m_handled && b->m_failed && b->m_dead && b->m_transactions && b->m_pruned_events &&
                   b->m_pruned_sends && b->m_ckpt_background && b->m_ckpt_commit
               ? 0
               : KZ_ENOMEM;
}

int bus_new(const bus_options *o, bus **out, char *err, size_t errlen)
{
    bus *b = calloc(1, sizeof *b);
    if (b == NULL)
        return KZ_ENOMEM;
    b->o = *o;
    if (b->o.workers < 1)
        b->o.workers = 1;
    if (b->o.batch < 1)
        b->o.batch = 1;
    if (b->o.retry_attempts < 1)
        b->o.retry_attempts = 1;
    if (b->o.poll_ms <= 0)
        b->o.poll_ms = 50;
    pthread_mutex_init(&b->pub_lock, NULL);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    pthread_mutex_init(&b->queue_lock, NULL);
    pthread_cond_init(&b->queue_cond, NULL);
    pthread_cond_init(&b->done_cond, NULL);
    pthread_mutex_init(&b->walk_lock, NULL);
    b->queue_tail = &b->queue;
    int rc = routes_new(&b->routes, err, errlen);
    if (rc == 0)
        rc = store_open(o->store_url, o->sync_mode, &b->pub, err, errlen);
    b->workers = calloc((size_t)b->o.workers, sizeof *b->workers);
    if (rc == 0 && b->workers == NULL)
        rc = KZ_ENOMEM;
    for (int i = 0; rc == 0 && i < b->o.workers; i++) {
        bus_worker *w = &b->workers[i];
        w->b = b;
        w->index = i;
        w->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(i + 1) ^ (uint64_t)clock_now_ms();
        rc = store_open(o->store_url, o->sync_mode, &w->st, err, errlen);
        b->nworkers = i + 1;
    }
    if (rc == 0 && o->m != NULL)
        rc = register_metrics(b);
    if (rc == 0)
        rc = start_committer(b, err, errlen);
    if (rc == 0)
        rc = start_checkpointer(b, err, errlen);
    if (rc == 0 && o->inflight_path != NULL)
        rc = inflight_open(o->inflight_path, b->nworkers, &b->inflight, err, errlen);
    if (rc != 0) {
        bus_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

static bus_shop *shop_for(bus *b, const char *shop_id)
{
    bus_shop *s = find_shop(b, shop_id);
    if (s != NULL)
        return s;
    bus_shop **grown = realloc(b->shops, (b->nshops + 1) * sizeof *grown);
    if (grown == NULL)
        return NULL;
    b->shops = grown;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->id = strdup(shop_id);
    s->cache = calloc(CACHE_SLOTS, sizeof *s->cache);
    if (s->id == NULL || s->cache == NULL) {
        free(s->id);
        free(s->cache);
        free(s);
        return NULL;
    }
    s->worker = (int)(hash_str(shop_id) % (uint64_t)b->nworkers);
    if (b->m_transactions != NULL)
        s->m_transactions = metrics_series(b->m_transactions, (const char *const[]){shop_id, NULL});
    b->shops[b->nshops++] = s;
    bus_worker *w = &b->workers[s->worker];
    bus_shop **ws = realloc(w->shops, (w->nshops + 1) * sizeof *ws);
    if (ws == NULL)
        return NULL;
    w->shops = ws;
    w->shops[w->nshops++] = s;
    return s;
}

int bus_add_shop(bus *b, const char *shop_id)
{
    return shop_for(b, shop_id) != NULL ? 0 : KZ_ENOMEM;
}

static int append_instance(bus *b, bus_shop *s, bus_instance *inst)
{
    bus_instance **all = realloc(b->inst, (b->ninst + 1) * sizeof *all);
    if (all == NULL)
        return KZ_ENOMEM;
    b->inst = all;
    b->inst[b->ninst++] = inst;
    bus_instance **mine = realloc(s->inst, (s->ninst + 1) * sizeof *mine);
    if (mine == NULL)
        return KZ_ENOMEM;
    s->inst = mine;
    s->inst[s->ninst++] = inst;
    cache_clear(s);
    return 0;
}

static int load_failure_state(store *st, bus_instance *inst, char *err, size_t errlen)
{
    store_failure f;
    int rc = store_failure_get(st, inst->id, &f, err, errlen);
    inst->fail_event = 0;
    inst->fail_attempts = 0;
    inst->retry_at = 0;
    if (rc == KZ_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    inst->fail_event = f.event_id;
    inst->fail_attempts = f.attempts;
    inst->retry_at = f.retry_at;
    return 0;
}

/* Subscribes the descriptor's patterns and runs shop_open; perr gets the
 * plugin's own reason. */
static int call_shop_open(bus_instance *inst, const kz_setting *setting, char *perr, size_t perrlen)
{
    const kz_plugin *d = &inst->p->desc;
    for (const char *const *sub = d->subscriptions; sub != NULL && *sub != NULL; sub++)
        if (bus_subscribe(inst, *sub) != 0)
            return KZ_ENOMEM;
    if (d->shop_open == NULL)
        return 0;
    inst->in_shop_open = 1;
    log_set_context(inst->p->name, inst->shop_id);
    int rc = d->shop_open(inst->p->state, &inst->shop, setting, &inst->instance, perr, perrlen);
    log_set_context(NULL, NULL);
    inst->in_shop_open = 0;
    if (rc > 0)
        rc = KZ_EFAIL;
    if (rc != 0 && perr[0] == '\0')
        snprintf(perr, perrlen, "shop_open returned %s (%d)", code_name(rc), rc);
    return rc;
}

static int open_plugin_instance(bus_instance *inst, const kz_setting *setting, char *err,
                                size_t errlen)
{
    char perr[512] = "";
    int rc = call_shop_open(inst, setting, perr, sizeof perr);
    if (rc != 0)
        snprintf(err, errlen, "shop '%s': plugin '%s': shop_open failed: %s", inst->shop_id,
                 inst->p->name, perr);
    return rc != 0 ? KZ_EFAIL : 0;
}

int bus_try_open(const plugin *p, const struct cfg *c, const char *shop_id, const char *timezone,
                 const kz_setting *setting, char *perr, size_t perrlen)
{
    bus_instance inst = {.p = p,
                         .c = c,
                         .shop_id = (char *)shop_id,
                         .timezone = (char *)(timezone ? timezone : "Asia/Tokyo")};
    inst.shop.inst = &inst;
    perr[0] = '\0';
    int rc = call_shop_open(&inst, setting, perr, perrlen);
    if (rc == 0 && p->desc.shop_close != NULL) {
        log_set_context(p->name, shop_id);
        p->desc.shop_close(inst.instance);
        log_set_context(NULL, NULL);
    }
    for (size_t k = 0; k < inst.npatterns; k++)
        free(inst.patterns[k]);
    free(inst.patterns);
    return rc != 0 ? KZ_EFAIL : 0;
}

int bus_add_instance(bus *b, const plugin *p, const char *shop_id, const char *timezone,
                     const kz_setting *setting, char *err, size_t errlen)
{
    bus_shop *s = shop_for(b, shop_id);
    bus_instance *inst = calloc(1, sizeof *inst);
    if (s == NULL || inst == NULL) {
        free(inst);
        return KZ_ENOMEM;
    }
    inst->b = b;
    inst->p = p;
    inst->c = b->o.c;
    inst->shop.inst = inst;
    if (b->m_handled != NULL) {
        const char *values[] = {shop_id, p->name};
        inst->m_handled = metrics_series(b->m_handled, values);
        inst->m_failed = metrics_series(b->m_failed, values);
        inst->m_dead = metrics_series(b->m_dead, values);
    }
    inst->shop_id = strdup(shop_id);
    inst->timezone = strdup(timezone != NULL ? timezone : "Asia/Tokyo");
    int rc = append_instance(b, s, inst);
    if (rc != 0 || inst->shop_id == NULL || inst->timezone == NULL)
        return KZ_ENOMEM; /* freed with the bus */
    pthread_mutex_lock(&b->pub_lock);
    rc = store_instance_open(b->pub, shop_id, p->name, &inst->id, &inst->cursor, err, errlen);
    if (rc == 0)
        rc = load_failure_state(b->pub, inst, err, errlen);
    pthread_mutex_unlock(&b->pub_lock);
    if (rc != 0)
        return rc;
    rc = open_plugin_instance(inst, setting, err, errlen);
    if (rc != 0) {
        routes_remove_owner(b->routes, &inst->shop); /* registered before it failed */
        log_msg(KZ_LOG_ERROR, "%s; plugin disabled for this shop", err);
        return rc;
    }
    inst->enabled = 1;
    return 0;
}

routes *bus_routes(bus *b)
{
    return b->routes;
}

size_t bus_instance_count(const bus *b)
{
    return b->ninst;
}

const bus_instance *bus_instance_at(const bus *b, size_t i)
{
    return i < b->ninst ? b->inst[i] : NULL;
}

/* ---- one handler call --------------------------------------------------- */

static void ctx_release(struct kz_ctx *ctx)
{
    for (size_t i = 0; i < ctx->nkv_bufs; i++)
        free(ctx->kv_bufs[i]);
    ctx->nkv_bufs = 0;
    ctx->valid = 0;
}

/* Runs the handler with a fresh ctx; leaves ctx->savepoint_open for the
 * caller to release or roll back. Without `careful`, its writes go straight
 * into the transaction (ctx->wrote tells whether it wrote). */
static int call_handler(struct kz_ctx *ctx, bus_instance *i, store *st, const struct kz_event *ev,
                        int careful, char *herr, size_t herrlen)
{
    ctx->inst = i;
    ctx->ev = ev;
    ctx->st = st;
    ctx->thread = pthread_self();
    ctx->savepoint_open = 0;
    ctx->no_savepoint = !careful;
    ctx->wrote = 0;
    ctx->published = 0;
    ctx->queued_sends = 0;
    ctx->valid = 1;
    log_set_context(i->p->name, i->shop_id);
    int r = i->p->desc.handle(i->instance, ctx, ev, herr, herrlen);
    log_set_context(NULL, NULL);
    ctx_release(ctx);
    if (r > 0)
        r = KZ_EFAIL; /* positive returns are a plugin bug; treat as failure */
    if (r != 0 && herr[0] == '\0')
        snprintf(herr, herrlen, "handler returned %s (%d)", code_name(r), r);
    return r;
}

static void mark_handled(bus_instance *i, int64_t event_id)
{
    i->cursor = event_id;
    i->dirty = 1;
}

static int clear_failure(bus_worker *w, bus_instance *i, char *err, size_t errlen)
{
    if (i->fail_event == 0)
        return 0;
    i->fail_event = 0;
    i->fail_attempts = 0;
    i->retry_at = 0;
    return store_failure_clear(w->st, i->id, err, errlen);
}

/* Records a failed attempt: retry later (returns 0, instance blocked) or
 * park as dead (returns 1, instance moves on). */
static int record_failure(bus_worker *w, bus_instance *i, const store_event *se, int attempt, int r,
                          const char *herr, char *err, size_t errlen)
{
    int64_t now = clock_now_ms();
    if (r == KZ_EFATAL || attempt >= w->b->o.retry_attempts) {
        log_msg(KZ_LOG_ERROR,
                "shop '%s': plugin '%s': event %lld (%s, id %s) is dead after %d attempt%s: %s",
                i->shop_id, i->p->name, (long long)se->id, se->topic, se->uid, attempt,
                attempt == 1 ? "" : "s", herr);
        i->n_dead++;
        int rc = store_dead_add(w->st, i->id, se->id, attempt, herr, now, err, errlen);
        if (rc == 0)
            rc = clear_failure(w, i, err, errlen);
        if (rc != 0)
            return rc;
        mark_handled(i, se->id);
        return 1;
    }
    store_failure f = {
        .event_id = se->id, .attempts = attempt, .retry_at = now + backoff_ms(w, attempt)};
    snprintf(f.error, sizeof f.error, "%s", herr);
    log_msg(KZ_LOG_WARN,
            "shop '%s': plugin '%s': event %lld (%s) failed (attempt %d of %d), retry in %lld ms: "
            "%s",
            i->shop_id, i->p->name, (long long)se->id, se->topic, attempt, w->b->o.retry_attempts,
            (long long)(f.retry_at - now), herr);
    int rc = store_failure_set(w->st, i->id, &f, err, errlen);
    if (rc != 0)
        return rc;
    i->fail_event = se->id;
    i->fail_attempts = attempt;
    i->retry_at = f.retry_at;
    return 0;
}

#define DELIVER_REDO 2

/* Calls the handler, except for the failure that made this batch run again:
 * its outcome is known, and a handler is called once per attempt. */
static int run_handler(bus_worker *w, bus_instance *i, const store_event *se, int attempt,
                       char *herr, size_t herrlen)
{
    if (w->careful && w->redo.inst == i->id && w->redo.event == se->id) {
        w->ctx.savepoint_open = w->ctx.wrote = w->ctx.queued_sends = w->ctx.kb_failed = 0;
        snprintf(herr, herrlen, "%s", w->redo.err);
        return w->redo.rc;
    }
    struct kz_event ev = {.se = se, .attempt = (uint32_t)attempt};
    inflight_enter(w->b->inflight, w->index, i->id, se->id);
    int r = call_handler(&w->ctx, i, w->st, &ev, w->careful, herr, herrlen);
    inflight_leave(w->b->inflight, w->index);
    return r;
}

/* Delivers one event to one instance inside the worker's transaction.
 * Returns 1 when the instance is done with it (handled or dead), 0 when it
 * failed and will be retried, DELIVER_REDO when it failed after writing in
 * a batch without savepoints (its writes cannot be taken out alone: redo
 * the batch carefully), < 0 on a store error (abort the batch). */
static int deliver(bus_worker *w, bus_instance *i, const store_event *se, char *err, size_t errlen)
{
    int attempt = (i->fail_event == se->id) ? i->fail_attempts + 1 : 1;
    char herr[512] = "";
    if (attempt > w->b->o.retry_attempts) {
        /* every attempt so far killed the process: do not run it again */
        snprintf(herr, sizeof herr, "quarantined: the process died %d times while this handler ran",
                 i->fail_attempts);
        return record_failure(w, i, se, attempt - 1, KZ_EFATAL, herr, err, errlen);
    }
    int r = run_handler(w, i, se, attempt, herr, sizeof herr);
    int rc = 0;
    if (w->ctx.kb_failed) { /* held increments failed: the call may not, carefully */
        w->redo_needed = 1;
        return DELIVER_REDO;
    }
    if (r != 0 && w->ctx.wrote) {
        w->redo.inst = i->id;
        w->redo.event = se->id;
        w->redo.rc = r;
        snprintf(w->redo.err, sizeof w->redo.err, "%s", herr);
        w->redo_needed = 1;
        return DELIVER_REDO;
    }
    if (r == 0) {
        w->batch_sends |= w->ctx.queued_sends;
        if (w->ctx.savepoint_open)
            rc = store_release(w->st, err, errlen);
        if (rc == 0 && i->fail_event == se->id)
            rc = clear_failure(w, i, err, errlen);
        if (rc != 0)
            return rc;
        mark_handled(i, se->id);
        i->n_handled++;
        w->batch_handled++;
        return 1;
    }
    i->n_failed++;
    w->batch_failed++;
    if (w->ctx.savepoint_open && (rc = store_rollback_savepoint(w->st, err, errlen)) != 0)
        return rc;
    return record_failure(w, i, se, attempt, r, herr, err, errlen);
}

/* ---- a worker's round over one shop -------------------------------------- */

static int eligible(const bus_instance *i, int64_t now)
{
    return i->enabled && (i->fail_event == 0 || i->retry_at <= now);
}

/* Reloads cursors and failures after a rolled-back batch, so memory matches
 * the store again. */
static void reload_shop(bus_worker *w, bus_shop *s)
{
    char err[256];
    for (size_t k = 0; k < s->ninst; k++) {
        bus_instance *i = s->inst[k];
        i->dirty = 0;
        i->n_handled = i->n_failed = i->n_dead = 0;
        if (store_cursor_get(w->st, i->id, &i->cursor, err, sizeof err) != 0 ||
            load_failure_state(w->st, i, err, sizeof err) != 0)
            log_msg(KZ_LOG_ERROR, "shop '%s': cannot reload state of plugin '%s': %s", s->id,
                    i->p->name, err);
    }
}

static int deliver_batch(bus_worker *w, bus_shop *s, int64_t now, char *err, size_t errlen)
{
    int delivered = 0;
    for (size_t e = 0; e < w->batch.n; e++) {
        const store_event *se = &w->batch.ev[e];
        uint64_t mask = shop_mask(s, se->topic);
        for (size_t k = 0; k < s->ninst; k++) {
            bus_instance *i = s->inst[k];
            if (!eligible(i, now) || i->cursor >= se->id)
                continue;
            if (!instance_wants(s, mask, k, se->topic)) {
                mark_handled(i, se->id);
                continue;
            }
            int rc = deliver(w, i, se, err, errlen);
            if (rc == DELIVER_REDO)
                return 0; /* w->redo_needed, w->redo says what and why */
            if (rc < 0)
                return rc;
            delivered++;
        }
    }
    if (kvbatch_holds(&w->ctx.kb, -1, NULL) &&
        kvbatch_flush(&w->ctx.kb, w->st, -1, NULL, err, errlen) != 0) {
        w->redo_needed = 1; /* whose increment failed is for the careful run to tell */
        return 0;
    }
    for (size_t k = 0; k < s->ninst; k++) {
        bus_instance *i = s->inst[k];
        if (!i->dirty)
            continue;
        int rc = store_cursor_set(w->st, i->id, i->cursor, err, errlen);
        if (rc != 0)
            return rc;
        i->dirty = 0;
    }
    return delivered;
}

/* The metrics of a committed batch. */
static void count_batch(bus_shop *s)
{
    for (size_t k = 0; k < s->ninst; k++) {
        bus_instance *i = s->inst[k];
        if (i->m_handled != NULL) {
            metrics_add(i->m_handled, i->n_handled);
            metrics_add(i->m_failed, i->n_failed);
            metrics_add(i->m_dead, i->n_dead);
        }
        i->n_handled = i->n_failed = i->n_dead = 0;
    }
}

/* The lowest cursor of the shop's instances that may take events now;
 * INT64_MAX: none may. */
static int64_t lowest_cursor(const bus_shop *s, int64_t now)
{
    int64_t after = INT64_MAX;
    for (size_t k = 0; k < s->ninst; k++)
        if (eligible(s->inst[k], now) && s->inst[k]->cursor < after)
            after = s->inst[k]->cursor;
    return after;
}

/* Reads the shop's next batch into w->batch (empty when none is due). */
static int read_batch(bus_worker *w, bus_shop *s, int64_t now, char *err, size_t errlen)
{
    int64_t after = lowest_cursor(s, now);
    if (after == INT64_MAX) {
        w->batch.n = 0;
        return 0;
    }
    return store_events_after(w->st, s->id, after, w->b->o.batch, &w->batch, err, errlen);
}

/* Delivers the batch read and, while each is full, more, in the open
 * transaction: up to `limit` batches, fewer when another writer (a webhook's
 * group commit, the timer pump) waits for the store, so a long backlog
 * commits rarely but never holds a waiting writer up for more than one
 * batch. A careful run (after a redo) runs exactly the optimistic run's
 * batches, so it reaches the failure it reuses. Returns progress
 * (deliveries, or events read that no instance wanted) or < 0; *ran: the
 * batches run, *full: the last one was full. */
static int deliver_batches(bus_worker *w, bus_shop *s, int64_t now, int limit, int *ran, int *full,
                           char *err, size_t errlen)
{
    int progress = 0;
    for (*ran = 0;;) {
        int delivered = deliver_batch(w, s, now, err, errlen);
        if (delivered < 0)
            return delivered;
        ++*ran;
        if (w->redo_needed)
            return progress;
        progress += delivered > 0 ? delivered : (int)w->batch.n;
        *full = w->batch.n >= (size_t)w->b->o.batch;
        if (!*full || *ran >= limit || (!w->careful && store_writer_wanted(w->st)))
            return progress;
        int rc = read_batch(w, s, now, err, errlen);
        if (rc != 0)
            return rc;
        if (w->batch.n == 0) {
            *full = 0;
            return progress;
        }
    }
}

/* Hands batches of events to the shop's instances in one transaction.
 * Handlers run without a savepoint each: on SQLite, a savepoint copies
 * every page a handler touches into a statement journal, a third of a
 * small handler's cost. Should one fail after writing, the transaction is
 * rolled back and run again with savepoints, so that handler's writes go
 * and the others' stay. Handlers that succeeded are then called again for
 * the same events, as after a crash (plugin-guide.md). The first batch is
 * read before the transaction begins: an idle round never takes the
 * store's write lock. */
static int process_shop(bus_worker *w, bus_shop *s, char *err, size_t errlen)
{
    int64_t now = clock_now_ms();
    int rc = read_batch(w, s, now, err, errlen);
    if (rc != 0 || w->batch.n == 0)
        return rc;
    int progress, ran = 0, full = 0;
    int limit = BATCHES_PER_TRANSACTION;
    w->redo.inst = w->redo.event = 0;
    for (w->careful = 0;; w->careful = 1) {
        if ((rc = store_begin(w->st, err, errlen)) != 0)
            return rc;
        w->redo_needed = 0;
        w->batch_sends = 0;
        w->batch_handled = w->batch_failed = 0;
        progress = deliver_batches(w, s, now, limit, &ran, &full, err, errlen);
        if (w->careful || !w->redo_needed || progress < 0)
            break;
        kvbatch_clear(&w->ctx.kb);
        store_rollback(w->st);
        reload_shop(w, s);
        limit = ran;
        if (ran > 1 && (rc = read_batch(w, s, now, err, errlen)) != 0)
            return rc; /* the batches after the first replaced it */
    }
    if (progress >= 0 && (rc = store_commit(w->st, err, errlen)) != 0)
        progress = rc;
    if (progress < 0) {
        kvbatch_clear(&w->ctx.kb);
        store_rollback(w->st);
        reload_shop(w, s);
        return progress;
    }
    w->batch_full |= full;
    count_batch(s);
    if (s->m_transactions != NULL)
        metrics_add(s->m_transactions, 1);
    atomic_fetch_add(&w->b->n_handled, w->batch_handled);
    atomic_fetch_add(&w->b->n_failed, w->batch_failed);
    if (w->batch_sends && w->b->on_sends != NULL)
        w->b->on_sends(w->b->on_sends_arg);
    return progress;
}

/* ---- replays of dead letters --------------------------------------------- */

static int replay_one(bus_worker *w, bus_instance *i, int64_t dead_id, int64_t event_id, char *err,
                      size_t errlen)
{
    int rc = store_event_get(w->st, event_id, &w->replay_batch, err, errlen);
    if (rc == KZ_ENOTFOUND)
        return store_dead_replay_failed(w->st, dead_id, "event no longer stored", err, errlen);
    if (rc != 0 || (rc = store_begin(w->st, err, errlen)) != 0)
        return rc;
    struct kz_event ev = {.se = &w->replay_batch.ev[0], .attempt = 1};
    char herr[512] = "";
    inflight_enter(w->b->inflight, w->index, i->id, event_id);
    int r = call_handler(&w->ctx, i, w->st, &ev, 1, herr, sizeof herr);
    inflight_leave(w->b->inflight, w->index);
    if (r == 0) {
        if (w->ctx.savepoint_open)
            rc = store_release(w->st, err, errlen);
        if (rc == 0)
            rc = store_dead_remove(w->st, dead_id, err, errlen);
        log_msg(KZ_LOG_INFO, "shop '%s': plugin '%s': dead letter %lld replayed", i->shop_id,
                i->p->name, (long long)dead_id);
    } else {
        if (w->ctx.savepoint_open)
            rc = store_rollback_savepoint(w->st, err, errlen);
        if (rc == 0)
            rc = store_dead_replay_failed(w->st, dead_id, herr, err, errlen);
        log_msg(KZ_LOG_ERROR, "shop '%s': plugin '%s': replay of dead letter %lld failed: %s",
                i->shop_id, i->p->name, (long long)dead_id, herr);
    }
    if (rc == 0)
        rc = store_commit(w->st, err, errlen);
    if (rc != 0)
        store_rollback(w->st);
    else if (r == 0 && w->ctx.queued_sends && w->b->on_sends != NULL)
        w->b->on_sends(w->b->on_sends_arg);
    return rc;
}

static int run_replays(bus_worker *w, char *err, size_t errlen)
{
    int done = 0;
    for (size_t s = 0; s < w->nshops; s++) {
        for (size_t k = 0; k < w->shops[s]->ninst; k++) {
            bus_instance *i = w->shops[s]->inst[k];
            int64_t dead_id, event_id;
            while (i->enabled &&
                   store_dead_next_replay(w->st, i->id, &dead_id, &event_id, err, errlen) == 0) {
                int rc = replay_one(w, i, dead_id, event_id, err, errlen);
                if (rc != 0)
                    return rc;
                done++;
            }
        }
    }
    return done;
}

/* Real time, whatever the host clock is: operator requests (dead letter
 * replays) arrive in real time, and a virtual clock that stands still must
 * not hold them back. */
static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The lowest cursor of every instance of the shop, whatever its state:
 * events up to it are handled by all (or dead, which keeps them). */
static int64_t handled_by_all(const bus_shop *s)
{
    int64_t lowest = INT64_MAX;
    for (size_t k = 0; k < s->ninst; k++)
        if (s->inst[k]->cursor < lowest)
            lowest = s->inst[k]->cursor;
    return s->ninst > 0 ? lowest : 0;
}

/* One retention batch: up to PRUNE_BATCH old handled events of each of
 * the worker's shops and (worker 0, the outbox being the store's) old
 * finished sends, in one transaction. 1 when a batch came full (more are
 * due), 0, or < 0. */
static int prune_batch(bus_worker *w, char *err, size_t errlen)
{
    const bus_options *o = &w->b->o;
    int64_t now = clock_now_ms();
    int more = 0, n = 0, events = 0, sends = 0;
    int rc = store_begin(w->st, err, errlen);
    for (size_t k = 0; rc == 0 && o->retention_events_ms > 0 && k < w->nshops; k++) {
        int64_t upto = handled_by_all(w->shops[k]);
        n = 0;
        if (upto > 0)
            rc = store_events_prune(w->st, w->shops[k]->id, upto, now - o->retention_events_ms,
                                    PRUNE_BATCH, &n, err, errlen);
        events += n;
        more |= rc == 0 && n == PRUNE_BATCH;
    }
    if (rc == 0 && w->index == 0 && o->retention_sends_ms > 0) {
        rc = store_outbox_prune(w->st, now - o->retention_sends_ms, PRUNE_BATCH, &sends, err,
                                errlen);
        more |= rc == 0 && sends == PRUNE_BATCH;
    }
    if (rc == 0 && store_in_transaction(w->st))
        rc = store_commit(w->st, err, errlen);
    if (rc != 0) {
        store_rollback(w->st);
        return rc;
    }
    if (w->b->m_pruned_events != NULL) {
        metrics_add(w->b->m_pruned_events, (uint64_t)events);
        metrics_add(w->b->m_pruned_sends, (uint64_t)sends);
    }
    return more;
}

int bus_prune(bus *b, char *err, size_t errlen)
{
    for (int i = 0; i < b->nworkers; i++) {
        int rc;
        while ((rc = prune_batch(&b->workers[i], err, errlen)) == 1)
            ;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A retention batch when one is due; a failure is logged and tried again
 * at the next look. */
static void maybe_prune(bus_worker *w, int64_t now)
{
    if (now < w->next_prune)
        return;
    char err[512];
    int rc = prune_batch(w, err, sizeof err);
    if (rc < 0)
        log_msg(KZ_LOG_ERROR, "retention: %s", err);
    w->next_prune = rc == 1 ? now : now + PRUNE_EVERY_MS;
}

/* One pass over the worker's shops; returns deliveries made or < 0. */
static int worker_round(bus_worker *w, int force_replays)
{
    char err[512] = "";
    int total = 0;
    w->batch_full = 0;
    for (size_t s = 0; s < w->nshops; s++) {
        int n = process_shop(w, w->shops[s], err, sizeof err);
        if (n < 0) {
            log_msg(KZ_LOG_ERROR, "shop '%s': batch rolled back, will retry: %s", w->shops[s]->id,
                    err);
            return n;
        }
        total += n;
    }
    int64_t now = mono_ms();
    maybe_prune(w, now);
    if (force_replays || (total == 0 && now >= w->next_replay_check)) {
        w->next_replay_check = now + REPLAY_CHECK_MS;
        int n = run_replays(w, err, sizeof err);
        if (n < 0) {
            log_msg(KZ_LOG_ERROR, "replay failed: %s", err);
            return n;
        }
        total += n;
    }
    return total;
}

/* idle: the round before found nothing to do (a walk waits for that). */
static void worker_wait(bus_worker *w, uint64_t seen, int idle)
{
    bus *b = w->b;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(b->o.poll_ms % 1000) * 1000000L;
    ts.tv_sec += b->o.poll_ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&b->lock);
    w->waiting = 1;
    w->idle_ok = idle;
    w->idle_seen = seen;
    while (b->running && b->wakeups == seen) {
        if (pthread_cond_timedwait(&b->cond, &b->lock, &ts) == ETIMEDOUT)
            break;
    }
    w->waiting = 0;
    pthread_mutex_unlock(&b->lock);
}

/* Under a steady stream every round finds a few new events and commits
 * them, and each commit costs an fsync under the writer lock the publishers'
 * group commit needs too. Pausing after a part-full batch lets the next one
 * grow: fewer, larger commits, for at most coalesce_ms of handling latency
 * (the webhook's answer never waits for handlers). */
static void worker_pause(bus_worker *w)
{
    int64_t ms = w->b->o.coalesce_ms;
    if (ms > 0) /* a sleep, not a wait: wake_all after every group would cut it short */
        nanosleep(&(struct timespec){ms / 1000, (long)(ms % 1000) * 1000000L}, NULL);
}

void bus_wake(bus *b)
{
    wake_all(b);
}

void bus_on_sends(bus *b, void (*fn)(void *arg), void *arg)
{
    b->on_sends = fn;
    b->on_sends_arg = arg;
}

static void *worker_main(void *arg)
{
    bus_worker *w = arg;
    bus *b = w->b;
    for (;;) {
        pthread_mutex_lock(&b->lock);
        int running = b->running;
        uint64_t seen = b->wakeups;
        w->rounds++;
        pthread_mutex_unlock(&b->lock);
        if (!running)
            break;
        int n = worker_round(w, 0);
        if (n <= 0)
            worker_wait(w, seen, n == 0);
        else if (!w->batch_full)
            worker_pause(w);
    }
    return NULL;
}

static void wake_all(void *arg)
{
    bus *b = arg;
    pthread_mutex_lock(&b->lock);
    b->wakeups++;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

typedef struct crash_ctx {
    bus *b;
    int rc;
    char *err;
    size_t errlen;
} crash_ctx;

static bus_instance *instance_by_id(const bus *b, int64_t id)
{
    for (size_t i = 0; i < b->ninst; i++)
        if (b->inst[i]->id == id)
            return b->inst[i];
    return NULL;
}

/* The previous process died while instance handled event: one failed
 * attempt, with backoff, like a handler that returned an error. */
static void count_crash(void *arg, int64_t instance, int64_t event)
{
    crash_ctx *c = arg;
    bus_instance *i = instance_by_id(c->b, instance);
    if (i == NULL || c->rc != 0)
        return;
    bus_worker *w = &c->b->workers[0];
    int attempt = i->fail_event == event ? i->fail_attempts + 1 : 1;
    store_failure f = {.event_id = event,
                       .attempts = attempt,
                       .retry_at = clock_now_ms() + backoff_ms(w, attempt)};
    snprintf(f.error, sizeof f.error,
             "the process died while this handler ran (attempt %d); a plugin crash is a "
             "process crash",
             attempt);
    log_msg(KZ_LOG_ERROR,
            "shop '%s': plugin '%s': the previous run died handling event %lld "
            "(attempt %d of %d); it will be retried later, then parked",
            i->shop_id, i->p->name, (long long)event, attempt, c->b->o.retry_attempts);
    pthread_mutex_lock(&c->b->pub_lock);
    c->rc = store_failure_set(c->b->pub, i->id, &f, c->err, c->errlen);
    pthread_mutex_unlock(&c->b->pub_lock);
    i->fail_event = event;
    i->fail_attempts = attempt;
    i->retry_at = f.retry_at;
}

/* The pump fired n timers: their events wait for the workers. */
static void timers_fired(void *arg, int n)
{
    bus *b = arg;
    atomic_fetch_add(&b->n_fired, n);
    wake_all(b);
}

/* The virtual clock moved: retry backoffs may have ended and timers may be
 * due. */
static void clock_moved(void *arg)
{
    bus *b = arg;
    wake_all(b);
    timers_wake(b->timers);
}

/* Timers a pump transaction fires: firing one costs about a quarter of a
 * small handler call, so 4 × kizuna.batch holds the write lock about as
 * long as a worker's batch does. At kizuna.batch the pump committed four
 * times as often, and bench/step fired 20 % fewer steps a second. */
#define PUMP_BATCH(b) (4 * (b)->o.batch)

static int start_timers(bus *b, char *err, size_t errlen)
{
    timers_options o = {.store_url = b->o.store_url,
                        .sync_mode = b->o.sync_mode,
                        .batch = PUMP_BATCH(b),
                        .poll_ms = b->o.poll_ms,
                        .fired = timers_fired,
                        .arg = b};
    return timers_start(&o, &b->timers, err, errlen);
}

int bus_start(bus *b, char *err, size_t errlen)
{
    crash_ctx crashes = {.b = b, .err = err, .errlen = errlen};
    inflight_take(b->inflight, count_crash, &crashes);
    if (crashes.rc != 0)
        return crashes.rc;
    int trc = start_timers(b, err, errlen); /* before the listener that reads b->timers */
    if (trc != 0)
        return trc;
    pthread_mutex_lock(&b->lock);
    b->running = 1;
    pthread_mutex_unlock(&b->lock);
    clock_on_advance(clock_moved, b);
    for (int i = 0; i < b->nworkers; i++) {
        int rc = pthread_create(&b->workers[i].th, NULL, worker_main, &b->workers[i]);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start worker thread: %s", strerror(rc));
            bus_stop(b);
            return KZ_EFAIL;
        }
        b->workers[i].started = 1;
    }
    return 0;
}

void bus_stop(bus *b)
{
    atomic_store(&b->walk_cancel, 1);
    pthread_mutex_lock(&b->walk_lock); /* a walk reads b->timers */
    clock_on_advance(NULL, NULL);      /* before the timers go: the listener wakes them */
    timers_stop(b->timers);
    b->timers = NULL;
    pthread_mutex_unlock(&b->walk_lock);
    pthread_mutex_lock(&b->lock);
    b->running = 0;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    for (int i = 0; i < b->nworkers; i++) {
        if (b->workers[i].started)
            pthread_join(b->workers[i].th, NULL);
        b->workers[i].started = 0;
    }
}

int bus_run_until_idle(bus *b, char *err, size_t errlen)
{
    int total = 0;
    for (;;) {
        int round = 0, fired;
        /* the workers' connections are idle while they are not started */
        while ((fired = timers_fire_due(b->workers[0].st, clock_now_ms(), PUMP_BATCH(b), err,
                                        errlen)) == PUMP_BATCH(b))
            atomic_fetch_add(&b->n_fired, fired);
        if (fired < 0)
            return fired;
        atomic_fetch_add(&b->n_fired, fired);
        for (int i = 0; i < b->nworkers; i++) {
            int n = worker_round(&b->workers[i], 1);
            if (n < 0) {
                snprintf(err, errlen, "worker %d failed (see log)", i);
                return n;
            }
            round += n;
        }
        if (round == 0)
            return total;
        total += round;
    }
}

/* ---- walking the virtual clock ------------------------------------------ */

/* 1 when every worker waits after a round that found nothing and began at
 * the current wake-up count. *sig only grows (wake-ups plus rounds begun):
 * equal before and after a store check means no worker ran in between. */
static int workers_idle(bus *b, uint64_t *sig)
{
    int idle = 1;
    pthread_mutex_lock(&b->lock);
    uint64_t sum = b->wakeups;
    for (int i = 0; i < b->nworkers; i++) {
        const bus_worker *w = &b->workers[i];
        idle &= w->waiting && w->idle_ok && w->idle_seen == b->wakeups;
        sum += w->rounds;
    }
    pthread_mutex_unlock(&b->lock);
    *sig = sum;
    return idle;
}

static int publishes_pending(bus *b)
{
    pthread_mutex_lock(&b->queue_lock);
    int n = b->pub_pending;
    pthread_mutex_unlock(&b->queue_lock);
    return n;
}

static int count_row(void *arg, const store_outbox *row)
{
    (void)row;
    ++*(int *)arg;
    return 0;
}

/* The store's half of quiescence at now: no timer due; every enabled
 * instance has handled (or parked) its shop's last event, or waits for a
 * retry later than now; with a sender (bus_on_sends), no LINE call due.
 * *next_retry gets the earliest such retry (INT64_MAX: none). Returns 1
 * quiet, 0 not, < 0 a store error. What is due is poked: a timer a handler
 * set in the past would otherwise wait for the pump's next poll. */
static int store_quiet(bus *b, store *st, int64_t now, int64_t *next_retry, char *err,
                       size_t errlen)
{
    int64_t due = 0;
    *next_retry = INT64_MAX;
    int rc = store_timer_next(st, &due, err, errlen);
    if (rc == 0 && due <= now) {
        timers_wake(b->timers);
        return 0;
    }
    if (rc != 0 && rc != KZ_ENOTFOUND)
        return rc;
    for (size_t k = 0; k < b->ninst; k++) {
        const bus_instance *i = b->inst[k];
        int64_t last = 0, cursor = 0;
        store_failure f;
        if (!i->enabled)
            continue;
        if ((rc = store_event_max_id(st, i->shop_id, &last, err, errlen)) != 0 ||
            (rc = store_cursor_get(st, i->id, &cursor, err, errlen)) != 0)
            return rc;
        rc = store_failure_get(st, i->id, &f, err, errlen);
        if (rc == 0) { /* blocked at its head event until f.retry_at */
            if (f.retry_at <= now)
                return 0;
            if (f.retry_at < *next_retry)
                *next_retry = f.retry_at;
            continue;
        }
        if (rc != KZ_ENOTFOUND)
            return rc;
        if (cursor < last)
            return 0;
    }
    if (b->on_sends != NULL) {
        int n = 0;
        if ((rc = store_outbox_due(st, now, 1, count_row, &n, err, errlen)) != 0)
            return rc;
        /* a promotional send the delivery policy held until now: the
         * sender's release pass turns it into an outbox row */
        int64_t held = 0;
        rc = store_policy_next(st, &held, err, errlen);
        if (rc != 0 && rc != KZ_ENOTFOUND)
            return rc;
        if (n > 0 || (rc == 0 && held <= now)) {
            b->on_sends(b->on_sends_arg);
            return 0;
        }
    }
    return 1;
}

/* Waits (real time, until deadline) for the bus to be quiescent at the
 * clock's current time: the workers idle, no publish queued, and the
 * store quiet — with the workers not having run during the store check,
 * which is several reads and not one snapshot. */
static int wait_quiet(bus *b, int64_t deadline, int64_t *next_retry, char *err, size_t errlen)
{
    long pause_us = 100;
    for (;;) {
        if (atomic_load(&b->walk_cancel)) {
            errbuf_set(err, errlen, "the walk was cancelled: kizuna is stopping");
            return KZ_ESTATE;
        }
        uint64_t before = 0, after = 0;
        if (workers_idle(b, &before) && publishes_pending(b) == 0) {
            int q = store_quiet(b, b->walk_st, clock_now_ms(), next_retry, err, errlen);
            if (q < 0)
                return q;
            if (q == 1 && workers_idle(b, &after) && after == before)
                return 0;
        }
        if (mono_ms() >= deadline) {
            errbuf_set(err, errlen,
                       "not quiescent after the walk's time limit: a handler still runs, "
                       "keeps failing, or a LINE call waits");
            return KZ_EFAIL;
        }
        nanosleep(&(struct timespec){0, pause_us * 1000L}, NULL);
        if (pause_us < 20000)
            pause_us *= 2;
    }
}

/* The clock to `to` (never back), then every waiter wakes: the workers and
 * the pump through the clock's listener, the sender through on_sends. */
static void walk_move(bus *b, int64_t to, bus_walk *out)
{
    if (clock_advance_to_ms(to))
        out->steps++;
    if (b->on_sends != NULL)
        b->on_sends(b->on_sends_arg);
}

/* *next = min(*next, *t) when rc (of the query that read *t) found one.
 * A pointer: the query runs as an argument of this call, so *t may only be
 * read once the call has begun. */
static int earlier(int rc, const int64_t *t, int64_t *next)
{
    if (rc == KZ_ENOTFOUND)
        return 0;
    if (rc == 0 && *t < *next)
        *next = *t;
    return rc;
}

static int walk_steps(bus *b, int64_t target, int64_t deadline, bus_walk *out, char *err,
                      size_t errlen)
{
    int64_t next_retry = INT64_MAX, due = 0;
    wake_all(b);
    int rc = wait_quiet(b, deadline, &next_retry, err, errlen);
    while (rc == 0) {
        int64_t next = next_retry;
        if ((rc = earlier(store_timer_next(b->walk_st, &due, err, errlen), &due, &next)) != 0)
            return rc;
        /* a send waiting for its retry goes out at its time, not after the
         * walk has passed its deadline */
        if (b->on_sends != NULL &&
            (rc = earlier(store_outbox_next(b->walk_st, &due, err, errlen), &due, &next)) != 0)
            return rc;
        /* and a send the delivery policy holds goes out at its release */
        if (b->on_sends != NULL &&
            (rc = earlier(store_policy_next(b->walk_st, &due, err, errlen), &due, &next)) != 0)
            return rc;
        if (next > target)
            break;
        walk_move(b, next, out);
        rc = wait_quiet(b, deadline, &next_retry, err, errlen);
    }
    if (rc == 0 && clock_now_ms() < target) {
        walk_move(b, target, out);
        rc = wait_quiet(b, deadline, &next_retry, err, errlen);
    }
    return rc;
}

/* The same walk on a bus whose workers are not started, on the calling
 * thread: bus_run_until_idle is quiescence (it returns with nothing left
 * to do at the clock's time), the retries are in the instances' memory. */
static int walk_unstarted(bus *b, int64_t target, bus_walk *out, char *err, size_t errlen)
{
    int64_t due = 0;
    for (;;) {
        int n = bus_run_until_idle(b, err, errlen);
        if (n < 0)
            return n;
        int64_t now = clock_now_ms(), next = target;
        for (size_t k = 0; k < b->ninst; k++) {
            const bus_instance *i = b->inst[k];
            if (i->enabled && i->fail_event != 0 && i->retry_at > now && i->retry_at < next)
                next = i->retry_at;
        }
        int rc = store_timer_next(b->workers[0].st, &due, err, errlen);
        if (rc != 0 && rc != KZ_ENOTFOUND)
            return rc;
        if (rc == 0 && due > now && due < next)
            next = due;
        if (next <= now)
            return 0; /* at the target, everything due handled */
        walk_move(b, next, out);
    }
}

static int walk(bus *b, int absolute, int64_t ms, int64_t timeout_ms, bus_walk *out, char *err,
                size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->from_ms = out->now_ms = clock_now_ms();
    if (!clock_is_virtual()) {
        errbuf_set(err, errlen,
                   "the clock is real: only a virtual clock (kizuna serve --clock virtual) moves "
                   "when told");
        return KZ_ESTATE;
    }
    if (!absolute && ms < 0) {
        errbuf_set(err, errlen, "the clock never goes back: a negative duration");
        return KZ_EINVAL;
    }
    pthread_mutex_lock(&b->walk_lock);
    pthread_mutex_lock(&b->lock);
    int running = b->running;
    pthread_mutex_unlock(&b->lock);
    int rc = 0;
    int64_t now = clock_now_ms(), target = ms;
    out->from_ms = out->now_ms = now;
    if (!absolute)
        target = ms > INT64_MAX - now ? INT64_MAX : now + ms;
    if (atomic_load(&b->walk_cancel)) {
        errbuf_set(err, errlen, "the bus is stopping");
        rc = KZ_ESTATE;
    } else if (target < now) {
        errbuf_set(err, errlen, "that time is %lld ms before the clock: it never goes back",
                   (long long)(now - target));
        rc = KZ_EINVAL;
    } else if (running && b->walk_st == NULL) {
        rc = store_open(b->o.store_url, b->o.sync_mode, &b->walk_st, err, errlen);
    }
    if (rc == 0) {
        int64_t fired = atomic_load(&b->n_fired), handled = atomic_load(&b->n_handled),
                failed = atomic_load(&b->n_failed);
        if (running)
            rc = walk_steps(b, target,
                            mono_ms() + (timeout_ms > 0 ? timeout_ms : BUS_WALK_TIMEOUT_MS), out,
                            err, errlen);
        else
            rc = walk_unstarted(b, target, out, err, errlen);
        out->timers_fired = atomic_load(&b->n_fired) - fired;
        out->handled = atomic_load(&b->n_handled) - handled;
        out->failed = atomic_load(&b->n_failed) - failed;
    }
    out->now_ms = clock_now_ms();
    pthread_mutex_unlock(&b->walk_lock);
    return rc;
}

int bus_advance(bus *b, int64_t delta_ms, int64_t timeout_ms, bus_walk *out, char *err,
                size_t errlen)
{
    return walk(b, 0, delta_ms, timeout_ms, out, err, errlen);
}

int bus_advance_to(bus *b, int64_t target_ms, int64_t timeout_ms, bus_walk *out, char *err,
                   size_t errlen)
{
    return walk(b, 1, target_ms, timeout_ms, out, err, errlen);
}

void bus_advance_cancel(bus *b)
{
    atomic_store(&b->walk_cancel, 1);
}

/* ---- publishing from the core ------------------------------------------- */

static int check_msg(const bus *b, const bus_msg *m, char *err, size_t errlen)
{
    if (m->shop == NULL || find_shop(b, m->shop) == NULL) {
        snprintf(err, errlen, "unknown shop '%s'", m->shop ? m->shop : "(null)");
        return KZ_EINVAL;
    }
    if (!topic_valid(m->topic)) {
        snprintf(err, errlen, "invalid topic '%s'", m->topic ? m->topic : "(null)");
        return KZ_EINVAL;
    }
    if (m->json == NULL)
        return 0;
    return m->json_checked ? payload_size_check(m->len, err, errlen)
                           : payload_check(m->json, m->len, err, errlen);
}

static int append_msgs(bus *b, const bus_msg *msgs, size_t n, int64_t *ids, char *err,
                       size_t errlen)
{
    int64_t now = clock_now_ms();
    for (size_t k = 0; k < n; k++) {
        const bus_msg *m = &msgs[k];
        char uuid[37];
        if (m->uid == NULL)
            payload_uuid(uuid);
        int64_t id = 0;
        int rc =
            store_event_append(b->pub, m->shop, m->uid ? m->uid : uuid, m->topic, m->user, now,
                               m->json ? m->json : "{}", m->json ? m->len : 2, &id, err, errlen);
        if (rc != 0)
            return rc;
        if (ids != NULL)
            ids[k] = id;
    }
    return 0;
}

#define GROUP_RETRY 1 /* above every KZ_E* code */

/* Appends every request of a group in the open transaction. Without
 * savepoints a failing request leaves the transaction with the others'
 * rows in it: GROUP_RETRY then asks for a retry with savepoints. */
static int append_group(bus *b, pub_req *group, int savepoints, char *err, size_t errlen)
{
    for (pub_req *r = group; r != NULL; r = r->next) {
        r->rc = savepoints ? store_savepoint(b->pub, r->err, sizeof r->err) : 0;
        if (r->rc == 0)
            r->rc = append_msgs(b, r->msgs, r->n, r->ids, r->err, sizeof r->err);
        if (!savepoints && r->rc != 0)
            return GROUP_RETRY;
        if (!savepoints)
            continue;
        int end = r->rc == 0 ? store_release(b->pub, err, errlen)
                             : store_rollback_savepoint(b->pub, err, errlen);
        if (end != 0)
            return end; /* the transaction itself is broken */
    }
    return 0;
}

static int try_group(bus *b, pub_req *group, int savepoints, char *err, size_t errlen)
{
    int rc = store_begin(b->pub, err, errlen);
    if (rc == 0)
        rc = append_group(b, group, savepoints, err, errlen);
    if (rc == 0)
        rc = store_commit(b->pub, err, errlen);
    if (rc != 0)
        store_rollback(b->pub);
    return rc;
}

/* Stores every request of a group in one transaction. Requests rarely fail,
 * so the group first goes in without a savepoint per request (each costs
 * two statements and a statement journal); only if one fails is it stored
 * again with savepoints, so that request does not take the others with it. */
static void commit_group(bus *b, pub_req *group)
{
    char err[256] = "";
    pthread_mutex_lock(&b->pub_lock);
    int rc = try_group(b, group, 0, err, sizeof err);
    if (rc == GROUP_RETRY)
        rc = try_group(b, group, 1, err, sizeof err);
    if (rc != 0) {
        for (pub_req *r = group; r != NULL; r = r->next) {
            r->rc = rc;
            snprintf(r->err, sizeof r->err, "%s", err);
        }
    }
    pthread_mutex_unlock(&b->pub_lock);
}

/* Completes a committed group: asynchronous requests get their callback
 * (then are freed), waiting ones are marked done. */
static void complete_group(bus *b, pub_req *group)
{
    pub_req *waiting = NULL;
    int stored = 0, n = 0;
    for (pub_req *r = group, *next; r != NULL; r = next) {
        next = r->next;
        n++;
        stored |= r->rc == 0;
        if (r->cb != NULL) {
            r->cb(r->cb_arg, r->rc, r->rc == 0 ? "" : r->err);
            free(r);
        } else {
            r->next = waiting;
            waiting = r;
        }
    }
    if (stored)
        wake_all(b);
    pthread_mutex_lock(&b->queue_lock);
    b->pub_pending -= n; /* after wake_all: a walk then sees the workers busy */
    for (pub_req *r = waiting, *next; r != NULL; r = next) {
        next = r->next; /* r is the waiter's; it may return once done is seen */
        r->done = 1;
    }
    pthread_cond_broadcast(&b->done_cond);
    pthread_mutex_unlock(&b->queue_lock);
}

/* Takes everything queued and stores it in one transaction: N concurrent
 * publishers cost about one commit, not N, and each learns of success only
 * once its own events are durable. */
static void *committer_main(void *arg)
{
    bus *b = arg;
    pthread_mutex_lock(&b->queue_lock);
    for (;;) {
        while (b->queue == NULL && !b->committer_stop)
            pthread_cond_wait(&b->queue_cond, &b->queue_lock);
        if (b->queue == NULL)
            break; /* stopping with nothing left to store */
        pub_req *group = b->queue;
        b->queue = NULL;
        b->queue_tail = &b->queue;
        pthread_mutex_unlock(&b->queue_lock);
        commit_group(b, group);
        complete_group(b, group);
        pthread_mutex_lock(&b->queue_lock);
    }
    pthread_mutex_unlock(&b->queue_lock);
    return NULL;
}

static int start_committer(bus *b, char *err, size_t errlen)
{
    int rc = pthread_create(&b->committer, NULL, committer_main, b);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the commit thread: %s", strerror(rc));
        return KZ_EFAIL;
    }
    b->committer_started = 1;
    return 0;
}

/* Stores what is still queued, then ends the thread. */
static void stop_committer(bus *b)
{
    if (!b->committer_started)
        return;
    pthread_mutex_lock(&b->queue_lock);
    b->committer_stop = 1;
    pthread_cond_signal(&b->queue_cond);
    pthread_mutex_unlock(&b->queue_lock);
    pthread_join(b->committer, NULL);
    b->committer_started = 0;
}

static void mirror_checkpoints(void *arg)
{
    bus *b = arg;
    store_checkpoints c;
    store_checkpoint_stats(b->ckpt_st, &c);
    metrics_counter_mirror(b->m_ckpt_background, c.background);
    metrics_counter_mirror(b->m_ckpt_commit, c.in_commit);
}

static void *checkpointer_main(void *arg)
{
    bus *b = arg;
    store_checkpointer(b->ckpt_st, b->m_ckpt_background != NULL ? mirror_checkpoints : NULL, b);
    return NULL;
}

/* The publishers' group commits and the workers' batches would otherwise
 * copy the WAL into the database themselves, every 1000 pages, with every
 * other writer waiting (store.h). */
static int start_checkpointer(bus *b, char *err, size_t errlen)
{
    int rc = store_open(b->o.store_url, b->o.sync_mode, &b->ckpt_st, err, errlen);
    if (rc != 0)
        return rc;
    rc = pthread_create(&b->checkpointer, NULL, checkpointer_main, b);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the checkpoint thread: %s", strerror(rc));
        return KZ_EFAIL;
    }
    b->checkpointer_started = 1;
    return 0;
}

static void stop_checkpointer(bus *b)
{
    if (b->checkpointer_started) {
        store_checkpointer_stop(b->ckpt_st);
        pthread_join(b->checkpointer, NULL);
        b->checkpointer_started = 0;
    }
    store_close(b->ckpt_st);
    b->ckpt_st = NULL;
}

static void enqueue(bus *b, pub_req *r)
{
    pthread_mutex_lock(&b->queue_lock);
    *b->queue_tail = r;
    b->queue_tail = &r->next;
    b->pub_pending++;
    pthread_cond_signal(&b->queue_cond);
    pthread_mutex_unlock(&b->queue_lock);
}

static int check_msgs(const bus *b, const bus_msg *msgs, size_t n, char *err, size_t errlen)
{
    for (size_t k = 0; k < n; k++) {
        int rc = check_msg(b, &msgs[k], err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int bus_publish(bus *b, const bus_msg *msgs, size_t n, int64_t *ids, char *err, size_t errlen)
{
    int rc = check_msgs(b, msgs, n, err, errlen);
    if (rc != 0)
        return rc;
    pub_req me = {.msgs = msgs, .n = n, .ids = ids};
    enqueue(b, &me);
    pthread_mutex_lock(&b->queue_lock);
    while (!me.done)
        pthread_cond_wait(&b->done_cond, &b->queue_lock);
    pthread_mutex_unlock(&b->queue_lock);
    if (me.rc != 0)
        snprintf(err, errlen, "%s", me.err);
    return me.rc;
}

int bus_publish_async(bus *b, const bus_msg *msgs, size_t n, int64_t *ids, bus_published_fn cb,
                      void *arg, char *err, size_t errlen)
{
    int rc = check_msgs(b, msgs, n, err, errlen);
    if (rc != 0)
        return rc;
    pub_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return KZ_ENOMEM;
    }
    *r = (pub_req){.msgs = msgs, .n = n, .ids = ids, .cb = cb, .cb_arg = arg};
    enqueue(b, r);
    return 0;
}

/* ---- volatile dispatch (bench) ------------------------------------------- */

int bus_dispatch_volatile(bus *b, const store_event *se)
{
    bus_shop *s = find_shop(b, se->shop);
    if (s == NULL)
        return 0;
    uint64_t mask = shop_mask(s, se->topic);
    struct kz_event ev = {.se = se, .attempt = 1};
    int calls = 0;
    for (size_t k = 0; k < s->ninst; k++) {
        bus_instance *i = s->inst[k];
        if (!i->enabled || !instance_wants(s, mask, k, se->topic))
            continue;
        char herr[512] = "";
        call_handler(&b->volatile_ctx, i, NULL, &ev, 1, herr, sizeof herr);
        calls++;
    }
    return calls;
}

/* ---- teardown ------------------------------------------------------------ */

static void free_instance(bus_instance *i)
{
    /* after the last route callback returned, before arg goes */
    routes_remove_owner(i->b->routes, &i->shop);
    if (i->enabled && i->p->desc.shop_close != NULL) {
        log_set_context(i->p->name, i->shop_id);
        i->p->desc.shop_close(i->instance);
        log_set_context(NULL, NULL);
    }
    for (size_t k = 0; k < i->npatterns; k++)
        free(i->patterns[k]);
    free(i->patterns);
    free(i->shop_id);
    free(i->timezone);
    free(i);
}

void bus_free(bus *b)
{
    if (b == NULL)
        return;
    bus_stop(b);
    stop_committer(b);
    stop_checkpointer(b);
    for (size_t i = 0; i < b->ninst; i++)
        free_instance(b->inst[i]);
    free(b->inst);
    for (size_t i = 0; i < b->nshops; i++) {
        cache_clear(b->shops[i]);
        free(b->shops[i]->cache);
        free(b->shops[i]->inst);
        free(b->shops[i]->id);
        free(b->shops[i]);
    }
    free(b->shops);
    routes_free(b->routes);
    for (int i = 0; i < b->nworkers; i++) {
        store_batch_free(&b->workers[i].batch);
        store_batch_free(&b->workers[i].replay_batch);
        host_ctx_free(&b->workers[i].ctx);
        kvbatch_clear(&b->workers[i].ctx.kb);
        free(b->workers[i].shops);
        store_close(b->workers[i].st);
    }
    host_ctx_free(&b->volatile_ctx);
    free(b->workers);
    inflight_close(b->inflight);
    store_close(b->pub);
    pthread_mutex_destroy(&b->pub_lock);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->queue_lock);
    pthread_cond_destroy(&b->queue_cond);
    pthread_cond_destroy(&b->done_cond);
    store_close(b->walk_st);
    pthread_mutex_destroy(&b->walk_lock);
    free(b);
}
