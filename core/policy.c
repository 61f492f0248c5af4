#include "policy.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "errbuf.h"
#include "log.h"
#include "payload.h"
#include "tz.h"

#define DAY_MS 86400000LL
#define MULTICAST_MAX 500
/* Ledger rows older than the longest cap period (a week, plus a DST hour
 * and slack) can never count again. */
#define LEDGER_KEEP_MS (8 * DAY_MS)
/* Quiet windows that chain (one ends where the next begins) are followed
 * this far; more would mean a configuration quiet around the clock, which
 * config refuses per window. */
#define OPEN_STEPS 16

/* Counter names in the store; the part after ':' is the metric's label. */
#define ST_PASSED "passed"
#define ST_HELD_QUIET "held:quiet"
#define ST_HELD_CAP "held:cap"
#define ST_RELEASED "released"
#define ST_DROP_CAP "dropped:cap"
#define ST_DROP_DEFER "dropped:max_defer"
#define ST_DROP_BROKEN "dropped:broken"

/* ---- time ---------------------------------------------------------------- */

static int64_t local_ms(const char *zone, int y, int mo, int d, int minutes)
{
    kz_local_time lt = {
        .year = y, .month = mo, .day = d, .hour = minutes / 60, .minute = minutes % 60};
    int64_t ms = 0;
    tz_to_ms(zone, &lt, &ms);
    return ms;
}

int64_t policy_open_at(const cfg_delivery *dv, const char *zone, int64_t t)
{
    for (int step = 0; step < OPEN_STEPS; step++) {
        kz_local_time lt;
        tz_local(zone, t, &lt);
        int moved = 0;
        /* a window that started yesterday evening may still run */
        for (int back = 1; back >= 0; back--) {
            int wd = (lt.weekday + 7 - back) % 7;
            for (size_t i = 0; i < dv->nquiet; i++) {
                const cfg_quiet *q = &dv->quiet[i];
                if (!(q->days & (1u << wd)))
                    continue;
                int64_t from = local_ms(zone, lt.year, lt.month, lt.day - back, q->from_min);
                int next = q->to_min <= q->from_min;
                int64_t to = local_ms(zone, lt.year, lt.month, lt.day - back + next, q->to_min);
                if (from <= t && t < to) {
                    t = to;
                    moved = 1;
                }
            }
        }
        if (!moved)
            break;
    }
    return t;
}

void policy_periods_of(const char *zone, int64_t t, policy_periods *out)
{
    kz_local_time lt;
    tz_local(zone, t, &lt);
    int back = (lt.weekday + 6) % 7; /* days since Monday */
    out->day_from = local_ms(zone, lt.year, lt.month, lt.day, 0);
    out->day_to = local_ms(zone, lt.year, lt.month, lt.day + 1, 0);
    out->week_from = local_ms(zone, lt.year, lt.month, lt.day - back, 0);
    out->week_to = local_ms(zone, lt.year, lt.month, lt.day - back + 7, 0);
}

/* ---- the same, cached per thread and shop-local day -----------------------
 *
 * A decision needs dozens of zone conversions (each rule's window on three
 * days, the day and week bounds), each one under tz.c's process-wide lock:
 * tens of µs a send, as much as the rest of a step of the step plugin. A
 * thread keeps the quiet windows and periods of the last two (shop, day)s
 * it saw, so a send costs one conversion (finding the day) while the day
 * stays the same. */

#define CACHE_WINDOWS 48 /* 16 rules × the 3 days that can reach a time */

typedef struct day_cache {
    int valid;
    char zone[128];                /* the shop's, a copy (compared by content) */
    cfg_quiet rules[16];           /* a copy: a reloaded config at the same address */
    size_t nrules;                 /* must not be mistaken for the old one */
    int64_t day_from, day_to;      /* the day the entry is for */
    int64_t next2;                 /* 00:00 two days on: no window of a later day starts before */
    policy_periods per;            /* of that day */
    int64_t win[CACHE_WINDOWS][2]; /* quiet windows that start the day before, on it or after */
    size_t nwin;
} day_cache;

static _Thread_local day_cache cache[2];
static _Thread_local int cache_last;

static int cache_fits(const day_cache *c, const cfg_shop *shop, int64_t t)
{
    const cfg_delivery *dv = &shop->delivery;
    return c->valid && t >= c->day_from && t < c->day_to && c->nrules == dv->nquiet &&
           strcmp(c->zone, shop->timezone) == 0 &&
           (dv->nquiet == 0 || memcmp(c->rules, dv->quiet, dv->nquiet * sizeof *dv->quiet) == 0);
}

static const day_cache *day_of(const cfg_shop *shop, int64_t t)
{
    const cfg_delivery *dv = &shop->delivery;
    if (dv->nquiet > sizeof cache[0].rules / sizeof cache[0].rules[0] ||
        strlen(shop->timezone) >= sizeof cache[0].zone)
        return NULL;
    for (int i = 0; i < 2; i++)
        if (cache_fits(&cache[i], shop, t))
            return &cache[i];
    day_cache *c = &cache[cache_last ^= 1];
    const char *z = shop->timezone;
    kz_local_time lt;
    tz_local(z, t, &lt);
    *c = (day_cache){.nrules = dv->nquiet};
    strcpy(c->zone, z); /* length checked above */
    if (dv->nquiet > 0)
        memcpy(c->rules, dv->quiet, dv->nquiet * sizeof *dv->quiet);
    int back = (lt.weekday + 6) % 7;
    c->day_from = local_ms(z, lt.year, lt.month, lt.day, 0);
    c->day_to = local_ms(z, lt.year, lt.month, lt.day + 1, 0);
    c->next2 = local_ms(z, lt.year, lt.month, lt.day + 2, 0);
    c->per = (policy_periods){.day_from = c->day_from,
                              .day_to = c->day_to,
                              .week_from = local_ms(z, lt.year, lt.month, lt.day - back, 0),
                              .week_to = local_ms(z, lt.year, lt.month, lt.day - back + 7, 0)};
    for (int rel = -1; rel <= 1; rel++) {
        int wd = (lt.weekday + 7 + rel) % 7;
        for (size_t i = 0; i < dv->nquiet; i++) {
            const cfg_quiet *q = &dv->quiet[i];
            if (!(q->days & (1u << wd)))
                continue;
            int next = q->to_min <= q->from_min;
            c->win[c->nwin][0] = local_ms(z, lt.year, lt.month, lt.day + rel, q->from_min);
            c->win[c->nwin++][1] = local_ms(z, lt.year, lt.month, lt.day + rel + next, q->to_min);
        }
    }
    c->valid = 1;
    return c;
}

/* policy_open_at and policy_periods_of of the shop, through the cache. */
static int64_t open_at(const cfg_shop *shop, int64_t t)
{
    const day_cache *c = day_of(shop, t);
    if (c == NULL)
        return policy_open_at(&shop->delivery, shop->timezone, t);
    for (int step = 0, moved = 1; moved && step < OPEN_STEPS; step++) {
        moved = 0;
        for (size_t i = 0; i < c->nwin; i++)
            if (c->win[i][0] <= t && t < c->win[i][1]) {
                t = c->win[i][1];
                moved = 1;
            }
    }
    /* past what the entry knows (a window of a later day may start):
     * go on from there the slow way */
    return t < c->next2 ? t : policy_open_at(&shop->delivery, shop->timezone, t);
}

static void periods_of(const cfg_shop *shop, int64_t t, policy_periods *out)
{
    const day_cache *c = day_of(shop, t);
    if (c != NULL)
        *out = c->per;
    else
        policy_periods_of(shop->timezone, t, out);
}

int64_t policy_shop_open_at(const cfg_shop *shop, int64_t t, policy_periods *per)
{
    int64_t open = open_at(shop, t);
    if (per != NULL)
        periods_of(shop, open, per);
    return open;
}

/* ---- the decision for one recipient ------------------------------------- */

/* What the policy makes of a shop at one instant, computed once per send or
 * per shop in a release walk (time zone conversions are not free). */
typedef struct plan {
    const cfg_shop *shop;
    int64_t now;
    int64_t open;       /* the first instant outside quiet hours, >= now */
    policy_periods per; /* around open */
    int64_t after_day;  /* the first open instant of the next day; 0: not computed yet */
    int64_t after_week; /* … of the next week */
} plan;

static void plan_make(const cfg_shop *shop, int64_t now, plan *p)
{
    p->shop = shop;
    p->now = now;
    p->open = policy_shop_open_at(shop, now, &p->per);
    /* computed when a friend first hits a cap: most sends never need them,
     * and each costs several zone conversions */
    p->after_day = 0;
    p->after_week = 0;
}

/* The first open instant at or after t, kept in *slot. */
static int64_t open_after(plan *p, int64_t *slot, int64_t t)
{
    if (*slot == 0)
        *slot = open_at(p->shop, t);
    return *slot;
}

enum { D_NOW, D_HOLD, D_DROP_CAP, D_DROP_DEFER, D_DROP_BROKEN };

/* The decision for user: D_NOW, or D_HOLD with *release_ms and *reason
 * (STORE_POLICY_*), or a drop; a negative KZ_E… on a store error. */
static int decide(store *st, plan *p, const char *user, int over_cap, int64_t created_ms,
                  int64_t *release_ms, int *reason, char *err, size_t errlen)
{
    const cfg_delivery *dv = &p->shop->delivery;
    int64_t t = p->open;
    int capped = 0, rc;
    int64_t n = 0;
    if (dv->cap_week) {
        rc = store_policy_count(st, p->shop->id, user, p->per.week_from, p->per.week_to, &n, err,
                                errlen);
        if (rc != 0)
            return rc;
        if (n >= dv->cap_week) {
            capped = 1;
            t = open_after(p, &p->after_week, p->per.week_to);
        }
    }
    if (!capped && dv->cap_day) {
        rc = store_policy_count(st, p->shop->id, user, p->per.day_from, p->per.day_to, &n, err,
                                errlen);
        if (rc != 0)
            return rc;
        if (n >= dv->cap_day) {
            capped = 1;
            t = open_after(p, &p->after_day, p->per.day_to);
        }
    }
    if (capped && over_cap == KZ_OVER_CAP_DROP)
        return D_DROP_CAP;
    if (t - created_ms > dv->max_defer_ms)
        return D_DROP_DEFER;
    if (t <= p->now)
        return D_NOW;
    *release_ms = t;
    *reason = capped ? STORE_POLICY_CAP : STORE_POLICY_QUIET;
    return D_HOLD;
}

static const char *drop_stat(int d)
{
    return d == D_DROP_CAP ? ST_DROP_CAP : d == D_DROP_BROKEN ? ST_DROP_BROKEN : ST_DROP_DEFER;
}

/* A dropped recipient, kept for `kizuna friend`. */
static int drop_note(store *st, const char *shop, const char *user, int d, int64_t now,
                     const char *tag, int priority, char *err, size_t errlen)
{
    int reason = d == D_DROP_CAP      ? STORE_POLICY_CAP
                 : d == D_DROP_BROKEN ? STORE_POLICY_BROKEN
                                      : STORE_POLICY_MAX_DEFER;
    return store_policy_drop_add(st, shop, user, now, reason, tag, priority, err, errlen);
}

/* ---- at line_send --------------------------------------------------------- */

/* D_NOW, or D_HOLD until now when the friend has a held send already due
 * that no release walk has decided yet (a window has just opened, a cap
 * period just begun): the new send waits for that walk, where all of the
 * friend's due sends are decided together by priority, instead of taking
 * a slot ahead of them. It keeps the reason of the send it queues behind. */
static int behind_due(store *st, const char *shop, const char *user, int64_t now,
                      int64_t *release_ms, int *reason, char *err, size_t errlen)
{
    int rc = store_policy_due_reason(st, shop, user, now, reason, err, errlen);
    if (rc == KZ_ENOTFOUND)
        return D_NOW;
    if (rc != 0)
        return rc;
    *release_ms = now;
    return D_HOLD;
}

int policy_admit(store *st, const cfg_shop *shop, const policy_send *ps, int64_t now,
                 const char *const *users, size_t n, unsigned char *allowed, size_t *nallowed,
                 char *err, size_t errlen)
{
    plan p;
    plan_make(shop, now, &p);
    int64_t send_id = 0, counts[D_DROP_BROKEN + 1] = {0}, held_cap = 0;
    size_t ok = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int64_t release = 0;
        int reason = 0;
        int d = decide(st, &p, users[i], ps->over_cap, now, &release, &reason, err, errlen);
        if (d == D_NOW) /* a send the walk has yet to decide goes first by priority */
            d = behind_due(st, shop->id, users[i], now, &release, &reason, err, errlen);
        if (d < 0) {
            rc = d;
            break;
        }
        allowed[i] = d == D_NOW;
        counts[d]++;
        if (d == D_NOW) {
            ok++;
            rc = store_policy_ledger_add(st, shop->id, users[i], now, err, errlen);
        } else if (d == D_DROP_CAP || d == D_DROP_DEFER) {
            rc = drop_note(st, shop->id, users[i], d, now, ps->tag, ps->priority, err, errlen);
        } else if (d == D_HOLD) {
            held_cap += reason == STORE_POLICY_CAP;
            if (send_id == 0) {
                store_policy_send row = {.shop = ps->shop,
                                         .instance = ps->instance,
                                         .kind = ps->kind,
                                         .body = ps->body,
                                         .tag = ps->tag,
                                         .origin = ps->origin,
                                         .priority = ps->priority,
                                         .over_cap = ps->over_cap,
                                         .created_ms = now};
                rc = store_policy_send_add(st, &row, &send_id, err, errlen);
            }
            if (rc == 0)
                rc = store_policy_hold(st, send_id, shop->id, users[i], release, reason, err,
                                       errlen);
        }
    }
    if (rc == 0)
        rc = store_policy_stat_add(st, shop->id, ST_PASSED, counts[D_NOW], err, errlen);
    if (rc == 0)
        rc = store_policy_stat_add(st, shop->id, ST_HELD_QUIET, counts[D_HOLD] - held_cap, err,
                                   errlen);
    if (rc == 0)
        rc = store_policy_stat_add(st, shop->id, ST_HELD_CAP, held_cap, err, errlen);
    if (rc == 0)
        rc = store_policy_stat_add(st, shop->id, ST_DROP_CAP, counts[D_DROP_CAP], err, errlen);
    if (rc == 0)
        rc = store_policy_stat_add(st, shop->id, ST_DROP_DEFER, counts[D_DROP_DEFER], err, errlen);
    if (nallowed != NULL)
        *nallowed = ok;
    return rc;
}

/* ---- the release walk ----------------------------------------------------- */

/* One due recipient, copied out of the walk (the store's strings die with
 * the statement). */
typedef struct due {
    int64_t send, instance, created_ms;
    int kind, priority, over_cap, released;
    char *shop, *user, *body, *tag, *origin;
} due;

typedef struct due_list {
    due *v;
    size_t n, cap;
    int oom;
} due_list;

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static int collect(void *arg, const store_policy_held *h)
{
    due_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        due *grown = realloc(l->v, cap * sizeof *grown);
        if (grown == NULL) {
            l->oom = 1;
            return 1;
        }
        l->v = grown;
        l->cap = cap;
    }
    due *d = &l->v[l->n++];
    *d = (due){.send = h->send.id,
               .instance = h->send.instance,
               .created_ms = h->send.created_ms,
               .kind = h->send.kind,
               .priority = h->send.priority,
               .over_cap = h->send.over_cap,
               .shop = strdup(h->send.shop),
               .user = strdup(h->user),
               .body = strdup(h->send.body),
               .tag = dup_or_null(h->send.tag),
               .origin = strdup(h->send.origin)};
    if (d->shop == NULL || d->user == NULL || d->body == NULL || d->origin == NULL ||
        (h->send.tag != NULL && d->tag == NULL))
        l->oom = 1;
    return 0;
}

static void due_free(due_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].shop);
        free(l->v[i].user);
        free(l->v[i].body);
        free(l->v[i].tag);
        free(l->v[i].origin);
    }
    free(l->v);
}

static const char *endpoint_of(int kind)
{
    return kind == KZ_LINE_PUSH ? "/v2/bot/message/push" : "/v2/bot/message/multicast";
}

/* One outbox row for users[0..n) of a held send: its body plus "to". */
static int release_row(store *st, const due *d, const char *const *users, size_t n, int64_t now,
                       char *err, size_t errlen)
{
    json_object *body = json_tokener_parse(d->body);
    if (body == NULL || !json_object_is_type(body, json_type_object)) {
        json_object_put(body);
        errbuf_set(err, errlen, "held send %lld: stored body is not a JSON object",
                   (long long)d->send);
        return KZ_EIO;
    }
    if (d->kind == KZ_LINE_PUSH) {
        json_object_object_add(body, "to", json_object_new_string(users[0]));
    } else {
        json_object *to = json_object_new_array_ext((int)n);
        for (size_t i = 0; i < n; i++)
            json_object_array_add(to, json_object_new_string(users[i]));
        json_object_object_add(body, "to", to);
    }
    const char *text = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE);
    char retry_key[37];
    payload_uuid(retry_key);
    store_outbox row = {.shop = d->shop,
                        .instance = d->instance,
                        .kind = d->kind,
                        .endpoint = endpoint_of(d->kind),
                        .body = text,
                        .retry_key = retry_key,
                        .user = d->kind == KZ_LINE_PUSH ? users[0] : NULL,
                        .tag = d->tag,
                        .origin = d->origin,
                        .created_ms = now,
                        .next_at_ms = now};
    int rc = text != NULL ? store_outbox_add(st, &row, NULL, err, errlen) : KZ_ENOMEM;
    json_object_put(body);
    return rc;
}

static int by_send(const void *a, const void *b)
{
    const due *x = *(const due *const *)a, *y = *(const due *const *)b;
    return x->send < y->send ? -1 : x->send > y->send;
}

/* Outbox rows for the released recipients: one per push, multicasts
 * grouped by send in 500s. */
static int write_rows(store *st, due_list *l, int64_t now, int *rows, char *err, size_t errlen)
{
    due **r = malloc((l->n ? l->n : 1) * sizeof *r);
    const char **users = malloc((l->n ? l->n : 1) * sizeof *users);
    if (r == NULL || users == NULL) {
        free(r);
        free(users);
        return KZ_ENOMEM;
    }
    size_t nr = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].released)
            r[nr++] = &l->v[i];
    qsort(r, nr, sizeof *r, by_send);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < nr;) {
        size_t j = i, n = 0;
        while (j < nr && r[j]->send == r[i]->send &&
               n < (r[i]->kind == KZ_LINE_PUSH ? 1 : MULTICAST_MAX))
            users[n++] = r[j++]->user;
        rc = release_row(st, r[i], users, n, now, err, errlen);
        (*rows)++;
        i = j;
    }
    free(r);
    free(users);
    return rc;
}

static int count_stat(store *st, const char *shop, const char *what, char *err, size_t errlen)
{
    return store_policy_stat_add(st, shop, what, 1, err, errlen);
}

/* 1 when the held send's stored body is a JSON object, as the host wrote
 * it; the answer for the last send asked is kept (its recipients come
 * together). A broken one is logged once a walk. */
static int body_readable(const due *d, int64_t *last_send, int *last_ok)
{
    if (d->send == *last_send)
        return *last_ok;
    const char *b = d->body + strspn(d->body, " \t\r\n");
    *last_send = d->send;
    *last_ok = *b == '{' && payload_json_valid(d->body, strlen(d->body));
    if (!*last_ok)
        log_msg(KZ_LOG_ERROR,
                "shop '%s': held send %lld (tag %s): its stored body is not a JSON object; its "
                "recipients are dropped (reason broken)",
                d->shop, (long long)d->send, d->tag != NULL ? d->tag : "none");
    return *last_ok;
}

/* Decides one due recipient (d->released set when it goes now). A send
 * whose body cannot be read drops its recipients rather than stopping the
 * walk for every other held send. */
static int settle(store *st, plan *p, due *d, int64_t now, int broken, char *err, size_t errlen)
{
    int64_t release = 0;
    int reason = 0;
    int dec = broken ? D_DROP_BROKEN : D_NOW;
    if (!broken && p->shop != NULL && p->shop->delivery.enabled) {
        dec = decide(st, p, d->user, d->over_cap, d->created_ms, &release, &reason, err, errlen);
        if (dec < 0)
            return dec;
    }
    int rc;
    switch (dec) {
    case D_NOW:
        d->released = 1;
        rc = store_policy_unhold(st, d->send, d->user, err, errlen);
        if (rc == 0 && p->shop != NULL)
            rc = store_policy_ledger_add(st, d->shop, d->user, now, err, errlen);
        return rc == 0 ? count_stat(st, d->shop, ST_RELEASED, err, errlen) : rc;
    case D_HOLD:
        rc = store_policy_reschedule(st, d->send, d->user, release, reason, err, errlen);
        return rc == 0 ? count_stat(st, d->shop,
                                    reason == STORE_POLICY_CAP ? ST_HELD_CAP : ST_HELD_QUIET, err,
                                    errlen)
                       : rc;
    default:
        rc = store_policy_unhold(st, d->send, d->user, err, errlen);
        if (rc == 0)
            rc = drop_note(st, d->shop, d->user, dec, now, d->tag, d->priority, err, errlen);
        return rc == 0 ? count_stat(st, d->shop, drop_stat(dec), err, errlen) : rc;
    }
}

int policy_release(store *st, const cfg *c, int64_t now, int limit, char *err, size_t errlen)
{
    due_list l = {0};
    int rc = store_policy_due(st, now, limit, collect, &l, err, errlen);
    if (rc == 0 && l.oom)
        rc = KZ_ENOMEM;
    if (rc != 0 || l.n == 0) {
        if (rc == KZ_ENOMEM)
            errbuf_set(err, errlen, "release held sends: out of memory");
        due_free(&l);
        return rc;
    }
    /* Read again under the write lock: another walker (a second process)
     * may have settled some meanwhile. The first read keeps an idle walk
     * from taking the lock at all. */
    due_free(&l);
    l = (due_list){0};
    int rows = 0;
    if ((rc = store_begin(st, err, errlen)) != 0)
        return rc;
    rc = store_policy_due(st, now, limit, collect, &l, err, errlen);
    if (rc == 0 && l.oom) {
        errbuf_set(err, errlen, "release held sends: out of memory");
        rc = KZ_ENOMEM;
    }
    plan p = {0};
    const char *plan_shop = NULL;
    int64_t last_send = 0;
    int last_ok = 1;
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        due *d = &l.v[i];
        if (plan_shop == NULL || strcmp(plan_shop, d->shop) != 0) {
            const cfg_shop *shop = cfg_find_shop(c, d->shop);
            if (shop != NULL && shop->delivery.enabled)
                plan_make(shop, now, &p);
            else
                p = (plan){.shop = shop, .now = now};
            plan_shop = d->shop;
        }
        rc = settle(st, &p, d, now, !body_readable(d, &last_send, &last_ok), err, errlen);
    }
    if (rc == 0)
        rc = write_rows(st, &l, now, &rows, err, errlen);
    if (rc == 0)
        rc = store_policy_ledger_prune(st, now - LEDGER_KEEP_MS, err, errlen);
    if (rc == 0)
        rc = store_commit(st, err, errlen);
    if (rc != 0)
        store_rollback(st);
    due_free(&l);
    return rc != 0 ? rc : rows;
}

/* ---- a friend's view -------------------------------------------------------- */

static int held_json(void *arg, const store_policy_held *h)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "send", json_object_new_int64(h->send.id));
    json_object_object_add(o, "tag", h->send.tag ? json_object_new_string(h->send.tag) : NULL);
    json_object_object_add(o, "priority", json_object_new_int(h->send.priority));
    json_object_object_add(
        o, "overCap",
        json_object_new_string(h->send.over_cap == KZ_OVER_CAP_DROP ? "drop" : "defer"));
    json_object_object_add(o, "releaseMs", json_object_new_int64(h->release_ms));
    json_object_object_add(o, "reason",
                           json_object_new_string(h->reason == STORE_POLICY_CAP ? "cap" : "quiet"));
    json_object_array_add(arg, o);
    return 0;
}

static int drop_json(void *arg, int64_t at_ms, int reason, const char *tag, int priority)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "tag", tag ? json_object_new_string(tag) : NULL);
    json_object_object_add(o, "priority", json_object_new_int(priority));
    json_object_object_add(o, "atMs", json_object_new_int64(at_ms));
    json_object_object_add(o, "reason",
                           json_object_new_string(reason == STORE_POLICY_CAP      ? "cap"
                                                  : reason == STORE_POLICY_BROKEN ? "broken"
                                                                                  : "max_defer"));
    json_object_array_add(arg, o);
    return 0;
}

static json_object *cap_json(int64_t cap)
{
    return cap > 0 ? json_object_new_int64(cap) : NULL;
}

int policy_friend_json(store *st, const cfg_shop *shop, const char *user, int64_t now,
                       json_object **out, char *err, size_t errlen)
{
    policy_periods per;
    policy_periods_of(shop->timezone, now, &per);
    int64_t today = 0, week = 0;
    int rc = store_policy_count(st, shop->id, user, per.day_from, per.day_to, &today, err, errlen);
    if (rc == 0)
        rc = store_policy_count(st, shop->id, user, per.week_from, per.week_to, &week, err, errlen);
    json_object *held = json_object_new_array(), *dropped = json_object_new_array();
    if (rc == 0)
        rc = store_policy_held_of(st, shop->id, user, held_json, held, err, errlen);
    if (rc == 0)
        rc = store_policy_drops_of(st, shop->id, user, now - 7 * DAY_MS, drop_json, dropped, err,
                                   errlen);
    if (rc != 0) {
        json_object_put(held);
        json_object_put(dropped);
        return rc;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "today", json_object_new_int64(today));
    json_object_object_add(o, "week", json_object_new_int64(week));
    json_object_object_add(o, "capDay", cap_json(shop->delivery.cap_day));
    json_object_object_add(o, "capWeek", cap_json(shop->delivery.cap_week));
    json_object_object_add(o, "held", held);
    json_object_object_add(o, "dropped", dropped);
    *out = o;
    return 0;
}

/* ---- metrics ------------------------------------------------------------- */

int policy_metrics_init(metrics *m, policy_metrics *out)
{
    static const char *const shop[] = {"shop", NULL}, *const reason[] = {"shop", "reason", NULL};
    out->passed = metrics_counter(m, "kizuna_policy_passed_total",
                                  "Promotional sends (per recipient) let through at once", shop);
    out->held = metrics_counter(m, "kizuna_policy_held_total",
                                "Promotional sends (per recipient) held or deferred, by reason "
                                "(quiet hours, cap)",
                                reason);
    out->released = metrics_counter(m, "kizuna_policy_released_total",
                                    "Held promotional sends (per recipient) released", shop);
    out->dropped = metrics_counter(m, "kizuna_policy_dropped_total",
                                   "Promotional sends (per recipient) dropped, by reason (cap, "
                                   "max_defer, broken)",
                                   reason);
    out->waiting = metrics_gauge(m, "kizuna_policy_waiting",
                                 "Promotional sends (per recipient) held now", shop);
    return out->passed && out->held && out->released && out->dropped && out->waiting ? 0
                                                                                     : KZ_ENOMEM;
}

static int put_stat(void *arg, const char *shop, const char *what, int64_t n)
{
    const policy_metrics *pm = arg;
    const char *colon = strchr(what, ':');
    char kind[32];
    snprintf(kind, sizeof kind, "%.*s", colon ? (int)(colon - what) : (int)strlen(what), what);
    const char *one[] = {shop}, *two[] = {shop, colon ? colon + 1 : ""};
    metric_family *f = strcmp(kind, "passed") == 0     ? pm->passed
                       : strcmp(kind, "released") == 0 ? pm->released
                       : strcmp(kind, "held") == 0     ? pm->held
                       : strcmp(kind, "dropped") == 0  ? pm->dropped
                                                       : NULL;
    if (f != NULL && n >= 0)
        metrics_counter_mirror(metrics_series(f, colon ? two : one), (uint64_t)n);
    return 0;
}

static int put_waiting(void *arg, const char *shop, const char *what, int64_t n)
{
    (void)what;
    const policy_metrics *pm = arg;
    const char *one[] = {shop};
    metrics_set(metrics_series(pm->waiting, one), n);
    return 0;
}

void policy_metrics_refresh(store *st, const policy_metrics *pm)
{
    char err[256];
    if (pm->waiting == NULL)
        return;
    /* a shop whose last held send went reads 0, not its last count */
    if (store_policy_stats(st, put_stat, put_waiting, (void *)pm, err, sizeof err) != 0)
        log_msg(KZ_LOG_WARN, "policy metrics: %s", err);
}
