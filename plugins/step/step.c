/*
 * step — step delivery (ステップ配信): scenarios of messages sent at set
 * times after a trigger (a follow, an order, a shipment, a tag, …).
 *
 * Each user's progress through a scenario is an *entry*, kept in the
 * instance's key/value store and moved on by durable timers, so every
 * change — entering, sending a step, skipping, stopping — commits with the
 * event that caused it: a crash or restart neither loses nor repeats a
 * step. The keys are this plugin's report for `kizuna steps` (README.md):
 *
 *   n:<sc>:<user>          entries so far (counter; the entry number)
 *   a:<sc>:<user>          running entry numbers, "1,3" (parallel scenarios)
 *   e:<sc>:<user>:<n>      entry record (JSON: state, step, due, base, path)
 *   s:<sc>:<step>:<user>:<n>  sent mark: a step is sent once per entry
 *   c:<sc>:<user>:<n>:<step>  the step's link was clicked
 *   st:<sc>:<step>:<what>  counters: waiting, sent, skipped, stopped, failed
 *   st:<sc>:<what>         counters: entered, completed, stopped, ended
 *   q:<sc>:head|tail, q:<sc>:<seq>  sends waiting for the window or the cap
 *   cap:<sc>:<yyyymmdd>    sends of the shop-local day
 *
 * Timers: t:<sc>:<user>:<n> (topic step.due) for an entry's next step,
 * drain:<sc> (topic step.drain) for the scenario's queue and, with
 * keep_finished, p:<sc>:<user>:<n> (topic step.prune) that deletes a
 * finished entry's e:, s: and c: keys (n: stays: entry numbers are never
 * reused, so a pruned entry's sent marks can never be needed again).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/plugin.h>

#include "../common/jscan.h"
#include "scenario.h"
#include "steptime.h"
#include "template.h"

#define DRAIN_BATCH 100   /* queued sends per handler call */
#define PATH_MAX_LEN 1800 /* bytes of an entry's path kept (oldest dropped) */
#define KEY_LEN 320
#define STEP_REFUSED 1 /* deliver(): the host refused the filled messages */

typedef struct step_shop {
    kz_shop *shop;
    scenario_set set;
} step_shop;

/* One entry of one user in one scenario, as stored in e:<sc>:<user>:<n>. */
typedef struct entry {
    int64_t n;
    char state[12];               /* waiting, queued, done, stopped, ended */
    char step[STEP_NAME_MAX + 1]; /* the step it waits for */
    char prev[STEP_NAME_MAX + 1]; /* the last step sent ("" none) */
    int64_t due, base, entered, ended;
    char why[48]; /* why it stopped or ended */
    char path[PATH_MAX_LEN + 64];
} entry;

/* Everything one handler call works on. */
/* Counter changes summed over a bulk enrollment and written once at its
 * end (the same counters, one write each instead of one per user). */
#define TALLY_MAX 16
typedef struct tally {
    char key[TALLY_MAX][KEY_LEN];
    int64_t delta[TALLY_MAX];
    int n;
} tally;

typedef struct job {
    step_shop *s;
    kz_ctx *ctx;
    const scenario *sc;
    const char *user;
    int64_t now;
    char *err;
    size_t errlen;
    tally *tally; /* NULL: counters written at once */
} job;

static int fail(const job *j, int rc, const char *what)
{
    snprintf(j->err, j->errlen, "step %s %s: %s (error %d)", j->sc ? j->sc->name : "?",
             j->user ? j->user : "-", what, rc);
    return rc;
}

/* ---- key/value helpers -------------------------------------------------- */

static int kv_text(kz_ctx *ctx, const char *key, char *out, size_t cap)
{
    const void *v;
    size_t len;
    int rc = kz_kv_get(ctx, key, &v, &len);
    if (rc != 0)
        return rc;
    if (len >= cap)
        return KZ_ETOOBIG;
    memcpy(out, v, len);
    out[len] = '\0';
    return 0;
}

static int kv_put_text(kz_ctx *ctx, const char *key, const char *text)
{
    return kz_kv_put(ctx, key, text, strlen(text));
}

/* A kv_incr counter's value without writing it (kv_incr by 0 would):
 * absent is 0. */
static int counter_get(kz_ctx *ctx, const char *key, int64_t *v)
{
    char text[32];
    int rc = kv_text(ctx, key, text, sizeof text);
    *v = rc == 0 ? strtoll(text, NULL, 10) : 0;
    return rc == KZ_ENOTFOUND ? 0 : rc;
}

static int stat_add(const job *j, const char *step, const char *what, int64_t d)
{
    char key[KEY_LEN];
    if (step != NULL)
        snprintf(key, sizeof key, "st:%s:%s:%s", j->sc->name, step, what);
    else
        snprintf(key, sizeof key, "st:%s:%s", j->sc->name, what);
    tally *t = j->tally;
    for (int i = 0; t != NULL && i < t->n; i++)
        if (strcmp(t->key[i], key) == 0) {
            t->delta[i] += d;
            return 0;
        }
    if (t != NULL && t->n < TALLY_MAX) {
        strcpy(t->key[t->n], key);
        t->delta[t->n++] = d;
        return 0;
    }
    return kz_kv_incr(j->ctx, key, d, NULL);
}

static int tally_flush(kz_ctx *ctx, const tally *t)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < t->n; i++)
        if (t->delta[i] != 0)
            rc = kz_kv_incr(ctx, t->key[i], t->delta[i], NULL);
    return rc;
}

/* ---- entry records ------------------------------------------------------ */

static void entry_key(const job *j, int64_t n, char *key)
{
    snprintf(key, KEY_LEN, "e:%s:%s:%" PRId64, j->sc->name, j->user, n);
}

static int64_t member_int(const char *obj, const char *key)
{
    const char *v = jscan_member(obj, key);
    return v != NULL ? strtoll(v, NULL, 10) : 0;
}

static void member_copy(const char *obj, const char *key, char *out, size_t cap)
{
    char *v = jscan_string_dup(jscan_member(obj, key));
    snprintf(out, cap, "%s", v != NULL ? v : "");
    free(v);
}

/* KZ_ENOTFOUND when the entry is not stored. */
static int entry_load(const job *j, int64_t n, entry *e)
{
    char key[KEY_LEN], text[sizeof e->path + 512];
    entry_key(j, n, key);
    int rc = kv_text(j->ctx, key, text, sizeof text);
    if (rc != 0)
        return rc;
    memset(e, 0, sizeof *e);
    e->n = member_int(text, "entry");
    member_copy(text, "state", e->state, sizeof e->state);
    member_copy(text, "step", e->step, sizeof e->step);
    member_copy(text, "prev", e->prev, sizeof e->prev);
    member_copy(text, "why", e->why, sizeof e->why);
    member_copy(text, "path", e->path, sizeof e->path);
    e->due = member_int(text, "due");
    e->base = member_int(text, "base");
    e->entered = member_int(text, "entered");
    e->ended = member_int(text, "ended");
    return 0;
}

static int entry_save(const job *j, const entry *e)
{
    char key[KEY_LEN], text[sizeof e->path + 512];
    entry_key(j, e->n, key);
    snprintf(text, sizeof text,
             "{\"entry\":%" PRId64 ",\"state\":\"%s\",\"step\":\"%s\",\"prev\":\"%s\","
             "\"due\":%" PRId64 ",\"base\":%" PRId64 ",\"entered\":%" PRId64 ",\"ended\":%" PRId64
             ",\"why\":\"%s\",\"path\":\"%s\"}",
             e->n, e->state, e->step, e->prev, e->due, e->base, e->entered, e->ended, e->why,
             e->path);
    return kv_put_text(j->ctx, key, text);
}

/* Appends "name:what@ms" to the entry's path, dropping the oldest items
 * when it grows past PATH_MAX_LEN. */
static void path_add(entry *e, const char *name, const char *what, int64_t ms)
{
    char item[128];
    snprintf(item, sizeof item, "%s%s:%s@%" PRId64, e->path[0] ? "," : "", name, what, ms);
    while (strlen(e->path) + strlen(item) > PATH_MAX_LEN) {
        char *comma = strchr(e->path, ',');
        if (comma == NULL) {
            e->path[0] = '\0';
            break;
        }
        memmove(e->path, comma + 1, strlen(comma));
    }
    strcat(e->path, item);
}

/* ---- running entries ---------------------------------------------------
 *
 * A once or restart scenario runs at most one entry per user, the last
 * (n:), so only parallel scenarios keep a list (a:, "1,3"): enrolling
 * writes one key less where it is not needed. Callers check the entries'
 * states: the last entry of a non-parallel scenario may be over. */

static void active_key(const job *j, char *key)
{
    snprintf(key, KEY_LEN, "a:%s:%s", j->sc->name, j->user);
}

/* The numbers of the user's entries that may be running, "1,3". */
static int active_get(const job *j, char *out, size_t cap)
{
    char key[KEY_LEN];
    int64_t n = 0;
    out[0] = '\0';
    if (j->sc->reentry != REENTRY_PARALLEL) {
        snprintf(key, sizeof key, "n:%s:%s", j->sc->name, j->user);
        int rc = counter_get(j->ctx, key, &n);
        if (rc == 0 && n > 0)
            snprintf(out, cap, "%" PRId64, n);
        return rc;
    }
    active_key(j, key);
    int rc = kv_text(j->ctx, key, out, cap);
    return rc == KZ_ENOTFOUND ? 0 : rc;
}

/* Adds entry n to the parallel list, or takes it off (no-op otherwise). */
static int active_change(const job *j, int64_t n, int add)
{
    char key[KEY_LEN], list[1024], out[1024] = "";
    if (j->sc->reentry != REENTRY_PARALLEL)
        return 0;
    int rc = active_get(j, list, sizeof list);
    for (char *p = list; rc == 0 && *p != '\0';) {
        int64_t v = strtoll(p, &p, 10);
        if (v != n)
            snprintf(out + strlen(out), sizeof out - strlen(out), "%s%" PRId64, out[0] ? "," : "",
                     v);
        p += *p == ',';
    }
    if (rc == 0 && add)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%" PRId64, out[0] ? "," : "", n);
    active_key(j, key);
    return rc != 0 ? rc : out[0] ? kv_put_text(j->ctx, key, out) : kz_kv_del(j->ctx, key);
}

static int running(const entry *e)
{
    return strcmp(e->state, "waiting") == 0 || strcmp(e->state, "queued") == 0;
}

/* ---- timers ------------------------------------------------------------- */

static int due_timer(const job *j, const entry *e)
{
    char key[KEY_LEN], json[256];
    snprintf(key, sizeof key, "t:%s:%s:%" PRId64, j->sc->name, j->user, e->n);
    snprintf(json, sizeof json, "{\"scenario\":\"%s\",\"entry\":%" PRId64 ",\"step\":\"%s\"}",
             j->sc->name, e->n, e->step);
    return kz_timer_set(j->ctx, key, e->due, "step.due", j->user, json);
}

static int due_cancel(const job *j, int64_t n)
{
    char key[KEY_LEN];
    snprintf(key, sizeof key, "t:%s:%s:%" PRId64, j->sc->name, j->user, n);
    int rc = kz_timer_cancel(j->ctx, key);
    return rc == KZ_ENOTFOUND ? 0 : rc;
}

static int drain_timer(const job *j, int64_t at)
{
    char key[KEY_LEN], json[128];
    snprintf(key, sizeof key, "drain:%s", j->sc->name);
    snprintf(json, sizeof json, "{\"scenario\":\"%s\"}", j->sc->name);
    return kz_timer_set(j->ctx, key, at, "step.drain", NULL, json);
}

static int prune_timer(const job *j, const entry *e)
{
    char key[KEY_LEN], json[128];
    snprintf(key, sizeof key, "p:%s:%s:%" PRId64, j->sc->name, j->user, e->n);
    snprintf(json, sizeof json, "{\"scenario\":\"%s\",\"entry\":%" PRId64 "}", j->sc->name, e->n);
    return kz_timer_set(j->ctx, key, e->ended + j->sc->keep_ms, "step.prune", j->user, json);
}

/* ---- moving an entry on ------------------------------------------------- */

static int publish_entry(const job *j, const char *topic, const entry *e)
{
    char json[256];
    snprintf(json, sizeof json,
             "{\"scenario\":\"%s\",\"entry\":%" PRId64 ",\"step\":\"%s\",\"why\":\"%s\"}",
             j->sc->name, e->n, e->prev, e->why);
    return kz_publish(j->ctx, topic, j->user, json);
}

/* The entry is over: done (every step passed) or ended/stopped (why). */
static int finish(const job *j, entry *e, const char *state, const char *why)
{
    snprintf(e->state, sizeof e->state, "%s", state);
    snprintf(e->why, sizeof e->why, "%s", why);
    for (char *p = e->why; *p != '\0'; p++) /* stored inside a JSON string as is */
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '_';
    e->ended = j->now;
    e->step[0] = '\0';
    e->due = 0;
    int rc = active_change(j, e->n, 0);
    if (rc == 0)
        rc = entry_save(j, e);
    if (rc == 0 && strcmp(state, "done") == 0) {
        rc = stat_add(j, NULL, "completed", 1);
        if (rc == 0)
            rc = taglist_apply(&j->sc->tags, j->ctx, j->user, j->err, j->errlen);
    } else if (rc == 0) {
        rc = stat_add(j, NULL, strcmp(state, "stopped") == 0 ? "stopped" : "ended", 1);
    }
    if (rc == 0)
        rc = publish_entry(j, strcmp(state, "done") == 0 ? "step.completed" : "step.stopped", e);
    if (rc == 0 && j->sc->keep_ms > 0)
        rc = prune_timer(j, e);
    return rc;
}

/* Waits for step idx (its due time counted from e->base), or finishes the
 * entry when idx is past the last step. */
static int wait_for(const job *j, entry *e, size_t idx)
{
    if (idx >= j->sc->nsteps)
        return finish(j, e, "done", "completed");
    const step *st = &j->sc->steps[idx];
    int rc = steptime_due(j->s->shop, e->base, st->after_ms, st->at_min, &e->due);
    if (rc != 0)
        return fail(j, rc, "cannot compute the due time");
    snprintf(e->state, sizeof e->state, "waiting");
    snprintf(e->step, sizeof e->step, "%s", st->name);
    rc = entry_save(j, e);
    if (rc == 0)
        rc = stat_add(j, st->name, "waiting", 1);
    return rc != 0 ? rc : due_timer(j, e);
}

/* ---- sending a step ----------------------------------------------------- */

static int clicked(const job *j, const entry *e)
{
    char key[KEY_LEN];
    const void *v;
    size_t len;
    if (e->prev[0] == '\0')
        return 0;
    snprintf(key, sizeof key, "c:%s:%s:%" PRId64 ":%s", j->sc->name, j->user, e->n, e->prev);
    return kz_kv_get(j->ctx, key, &v, &len) == 0;
}

/* 1 when the step's conditions hold for the user now, 0 not, < 0 error. */
static int conditions_hold(const job *j, const entry *e, const step *st)
{
    if (st->clicked != CLICK_ANY && clicked(j, e) != (st->clicked == CLICK_YES))
        return 0;
    return st->segment == NULL ? 1 : kz_segment_match(j->ctx, st->segment, j->user);
}

static int push(const job *j, const step *st, const char *messages)
{
    char tag[100];
    snprintf(tag, sizeof tag, "step:%s:%s", j->sc->name, st->name);
    kz_line_send r = {.struct_size = sizeof r,
                      .kind = KZ_LINE_PUSH,
                      .to = j->user,
                      .messages = messages,
                      .tag = tag,
                      .promotional = st->promotional,
                      .priority = j->sc->priority,
                      .over_cap = j->sc->over_cap};
    return kz_line_send_req(j->ctx, &r, NULL);
}

/* Sends the step's messages (placeholders filled from the friend) unless
 * this entry was sent it already, adds its tags, counts it for the day. */
static int deliver(const job *j, const entry *e, const step *st)
{
    char key[KEY_LEN];
    snprintf(key, sizeof key, "s:%s:%s:%s:%" PRId64, j->sc->name, st->name, j->user, e->n);
    char when[24];
    snprintf(when, sizeof when, "%" PRId64, j->now);
    int rc = kz_kv_cas(j->ctx, key, NULL, 0, when, strlen(when));
    if (rc == KZ_ECONFLICT)
        return 0; /* sent in this entry already: never twice */
    if (rc == 0 && st->messages.count > 0) {
        char *msgs = NULL;
        rc = template_fill(j->ctx, j->user, st->messages.json, &msgs);
        if (rc == 0)
            rc = push(j, st, msgs);
        free(msgs);
        if (rc == KZ_EINVAL) { /* e.g. too long once filled: this user, this step only */
            kz_log(KZ_LOG_ERROR, "step %s/%s: messages for %s refused by LINE's rules: not sent",
                   j->sc->name, st->name, j->user);
            return STEP_REFUSED;
        }
        if (rc != 0)
            return fail(j, rc, "cannot queue the step's messages");
    }
    if (rc == 0)
        rc = taglist_apply(&st->tags, j->ctx, j->user, j->err, j->errlen);
    if (rc == 0 && j->sc->daily_cap > 0) {
        steptime_day_key(j->s->shop, j->now, when);
        snprintf(key, sizeof key, "cap:%s:%s", j->sc->name, when);
        rc = kz_kv_incr(j->ctx, key, 1, NULL);
    }
    return rc;
}

/* Sends step idx now and moves the entry to the step after it (or goto). */
static int send_now(const job *j, entry *e, size_t idx)
{
    const step *st = &j->sc->steps[idx];
    int rc = deliver(j, e, st), refused = rc == STEP_REFUSED;
    if (refused)
        rc = 0;
    if (rc == 0)
        rc = stat_add(j, st->name, "waiting", -1);
    if (rc == 0)
        rc = stat_add(j, st->name, refused ? "failed" : "sent", 1);
    if (rc != 0)
        return rc;
    path_add(e, st->name, refused ? "failed" : "sent", j->now);
    if (refused)
        return wait_for(j, e, idx + 1);
    snprintf(e->prev, sizeof e->prev, "%s", st->name);
    e->base = j->now;
    return wait_for(j, e, st->goto_index >= 0 ? (size_t)st->goto_index : idx + 1);
}

/* ---- the window, the daily cap and the queue ---------------------------- */

static int cap_reached(const job *j)
{
    if (j->sc->daily_cap <= 0)
        return 0;
    int64_t n = 0;
    char day[16], key[KEY_LEN];
    steptime_day_key(j->s->shop, j->now, day);
    snprintf(key, sizeof key, "cap:%s:%s", j->sc->name, day);
    return counter_get(j->ctx, key, &n) == 0 && n >= j->sc->daily_cap;
}

/* When the queue can move next: the window's next opening, on the next
 * day when today's cap is used up. */
static int next_drain(const job *j, int64_t *at)
{
    int64_t from = j->now;
    int rc = 0;
    if (cap_reached(j))
        rc = steptime_next_midnight(j->s->shop, j->now, &from);
    return rc != 0 ? rc : steptime_window_next(j->s->shop, &j->sc->win, from, at);
}

/* Moves (delta != 0) or reads the queue's head or tail counter. */
static int queue_counter(const job *j, const char *which, int64_t delta, int64_t *v)
{
    char key[KEY_LEN];
    snprintf(key, sizeof key, "q:%s:%s", j->sc->name, which);
    return delta != 0 ? kz_kv_incr(j->ctx, key, delta, v) : counter_get(j->ctx, key, v);
}

static int queue_length(const job *j, int64_t *n)
{
    int64_t head = 0, tail = 0;
    int rc = queue_counter(j, "head", 0, &head);
    if (rc == 0)
        rc = queue_counter(j, "tail", 0, &tail);
    *n = tail - head;
    return rc;
}

/* Puts the entry at the back of the scenario's queue and makes sure the
 * drain timer is set for the earliest moment the queue can move. */
static int enqueue(const job *j, entry *e)
{
    int64_t seq, at;
    int rc = queue_counter(j, "tail", 1, &seq);
    char key[KEY_LEN], item[128];
    snprintf(key, sizeof key, "q:%s:%" PRId64, j->sc->name, seq);
    snprintf(item, sizeof item, "%s:%" PRId64, j->user, e->n);
    if (rc == 0)
        rc = kv_put_text(j->ctx, key, item);
    snprintf(e->state, sizeof e->state, "queued");
    if (rc == 0)
        rc = entry_save(j, e);
    if (rc == 0)
        rc = next_drain(j, &at);
    return rc != 0 ? rc : drain_timer(j, at);
}

/* 1 when a step due now must wait in the queue: outside the window, over
 * the day's cap, or behind sends that are waiting already (order kept). */
static int must_queue(const job *j, int *out)
{
    int64_t open, queued = 0;
    *out = 0;
    if (!j->sc->win.on && j->sc->daily_cap <= 0)
        return 0; /* nothing ever waits: no queue to read */
    int rc = steptime_window_next(j->s->shop, &j->sc->win, j->now, &open);
    if (rc == 0)
        rc = queue_length(j, &queued);
    *out = open > j->now || queued > 0 || cap_reached(j);
    return rc;
}

/* ---- events ------------------------------------------------------------- */

/* The step an entry should be at after a config edit: its own if it still
 * exists, else the one that now follows the last step it was sent. -1:
 * nothing to go on with (the entry ends). */
static int step_after_edit(const scenario *sc, const entry *e)
{
    int idx = scenario_step_index(sc, e->step);
    if (idx >= 0)
        return idx;
    if (e->prev[0] == '\0')
        return 0;
    int prev = scenario_step_index(sc, e->prev);
    return prev < 0 ? -1 : prev + 1;
}

/* Step idx of entry e is due now: skip it, queue it or send it. */
static int run_step(const job *j, entry *e, size_t idx)
{
    const step *st = &j->sc->steps[idx];
    int ok = conditions_hold(j, e, st), q = 0;
    if (ok < 0)
        return fail(j, ok, "segment");
    if (!ok) {
        path_add(e, st->name, "skipped", j->now);
        int rc = stat_add(j, st->name, "waiting", -1);
        if (rc == 0)
            rc = stat_add(j, st->name, "skipped", 1);
        return rc != 0 ? rc : wait_for(j, e, idx + 1);
    }
    int rc = must_queue(j, &q);
    if (rc != 0)
        return rc;
    return q ? enqueue(j, e) : send_now(j, e, idx);
}

static int on_due(step_shop *s, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    const char *payload = kz_event_payload(ev, NULL);
    char name[STEP_NAME_MAX + 1], stepname[STEP_NAME_MAX + 1];
    member_copy(payload, "scenario", name, sizeof name);
    member_copy(payload, "step", stepname, sizeof stepname);
    /* a timer's event time is its due time: the step happens then, even
     * when the host clock jumped past it (a virtual clock, a restart) */
    job j = {
        s,      ctx, scenario_find(&s->set, name), kz_event_user(ev), kz_event_time_ms(ev), err,
        errlen, NULL};
    if (j.sc == NULL || j.user == NULL) {
        kz_log(KZ_LOG_INFO, "step: scenario '%s' is no longer configured: timer ignored", name);
        return 0;
    }
    entry e;
    int rc = entry_load(&j, member_int(payload, "entry"), &e);
    if (rc == KZ_ENOTFOUND ||
        (rc == 0 && (strcmp(e.state, "waiting") != 0 || strcmp(e.step, stepname) != 0)))
        return 0; /* stopped or moved on since: a stale timer */
    if (rc != 0)
        return fail(&j, rc, "cannot read the entry");
    int idx = step_after_edit(j.sc, &e);
    if (idx < 0) {
        rc = stat_add(&j, e.step, "waiting", -1);
        return rc != 0 ? rc : finish(&j, &e, "ended", "step removed from the config");
    }
    if (strcmp(j.sc->steps[idx].name, e.step) != 0) { /* renamed or removed: go on from there */
        rc = stat_add(&j, e.step, "waiting", -1);
        return rc != 0 ? rc : wait_for(&j, &e, (size_t)idx);
    }
    return run_step(&j, &e, (size_t)idx);
}

/* Pops queued entries while the window is open and the cap allows. */
static int drain(const job *j, int *more)
{
    int64_t head = 0, tail = 0, at;
    int rc = queue_counter(j, "head", 0, &head);
    if (rc == 0)
        rc = queue_counter(j, "tail", 0, &tail);
    *more = 0;
    for (int k = 0; rc == 0 && head < tail; k++) {
        rc = steptime_window_next(j->s->shop, &j->sc->win, j->now, &at);
        if (rc != 0 || at > j->now || cap_reached(j) || k == DRAIN_BATCH) {
            *more = 1;
            break;
        }
        char key[KEY_LEN], item[128];
        snprintf(key, sizeof key, "q:%s:%" PRId64, j->sc->name, head + 1);
        rc = kv_text(j->ctx, key, item, sizeof item);
        if (rc == 0)
            rc = kz_kv_del(j->ctx, key);
        if (rc == 0)
            rc = queue_counter(j, "head", 1, &head);
        char *colon = rc == 0 ? strrchr(item, ':') : NULL;
        if (colon == NULL)
            continue;
        *colon = '\0';
        job one = *j;
        one.user = item;
        entry e;
        if (entry_load(&one, strtoll(colon + 1, NULL, 10), &e) != 0 ||
            strcmp(e.state, "queued") != 0)
            continue; /* stopped while it waited */
        int idx = scenario_step_index(j->sc, e.step);
        if (idx >= 0) {
            rc = send_now(&one, &e, (size_t)idx);
        } else { /* removed from the config while it waited */
            rc = stat_add(&one, e.step, "waiting", -1);
            if (rc == 0)
                rc = finish(&one, &e, "ended", "step removed from the config");
        }
    }
    return rc;
}

static int on_drain(step_shop *s, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    char name[STEP_NAME_MAX + 1];
    member_copy(kz_event_payload(ev, NULL), "scenario", name, sizeof name);
    job j = {s, ctx, scenario_find(&s->set, name), NULL, kz_event_time_ms(ev), err, errlen, NULL};
    if (j.sc == NULL)
        return 0;
    int more = 0, rc = drain(&j, &more);
    int64_t at;
    if (rc == 0 && more) {
        rc = next_drain(&j, &at);
        if (rc == 0)
            rc = drain_timer(&j, at);
    }
    return rc;
}

/* Stops every active entry of the user in the scenario. */
static int stop_all(const job *j, const char *why)
{
    char list[1024];
    int rc = active_get(j, list, sizeof list);
    for (char *p = list; rc == 0 && *p != '\0';) {
        entry e;
        int64_t n = strtoll(p, &p, 10);
        p += *p == ',';
        if (entry_load(j, n, &e) != 0 || !running(&e))
            continue;
        rc = due_cancel(j, n);
        if (rc == 0 && e.step[0] != '\0')
            rc = stat_add(j, e.step, "waiting", -1);
        if (rc == 0 && e.step[0] != '\0')
            rc = stat_add(j, e.step, "stopped", 1);
        if (rc == 0)
            rc = finish(j, &e, "stopped", why);
    }
    return rc;
}

/* A new entry for the user: n:… counts entries (and, for parallel
 * scenarios, a:… lists the running ones). Reads only what the re-entry
 * policy needs (a first entry reads nothing), since enrolling is the hot
 * path of a big scenario. */
static int enter(const job *j)
{
    char key[KEY_LEN];
    int64_t n = 1;
    snprintf(key, sizeof key, "n:%s:%s", j->sc->name, j->user);
    /* a first entry (the common case) is one write that finds no counter */
    int rc = kz_kv_cas(j->ctx, key, NULL, 0, "1", 1);
    if (rc == KZ_ECONFLICT) {
        if ((rc = counter_get(j->ctx, key, &n)) != 0)
            return fail(j, rc, "cannot read the user's entries");
        if (j->sc->reentry == REENTRY_ONCE)
            return 0;
        if (j->sc->reentry == REENTRY_RESTART && (rc = stop_all(j, "restarted")) != 0)
            return rc;
        char num[24];
        snprintf(num, sizeof num, "%" PRId64, ++n);
        rc = kv_put_text(j->ctx, key, num);
    }
    if (rc == 0)
        rc = active_change(j, n, 1);
    if (rc == 0)
        rc = stat_add(j, NULL, "entered", 1);
    /* the scenario starts when the trigger is handled, on the host clock:
     * an event's own time may come from another clock (`kizuna publish`
     * stamps real time while the daemon runs a virtual one) */
    entry e = {.n = n, .base = j->now, .entered = j->now};
    return rc != 0 ? rc : wait_for(j, &e, 0);
}

/* 1 when the event starts the scenario for its user. */
static int triggers(const job *j, const kz_event *ev)
{
    const char *payload = kz_event_payload(ev, NULL);
    if (!topic_in(j->sc->triggers, j->sc->ntriggers, kz_event_topic(ev)))
        return 0;
    if (jscan_string_is(jscan_member(payload, "mode"), "standby"))
        return 0; /* another channel has the chat */
    if (!conds_hold(j->sc->when, j->sc->nwhen, payload))
        return 0;
    return j->sc->segment == NULL ? 1 : kz_segment_match(j->ctx, j->sc->segment, j->user);
}

/* link.clicked {"scenario","step"[,"entry"]}: marks the click for the
 * user's entries (or the one named) so `clicked = true` steps see it. */
static int on_click(const job *j, const char *payload)
{
    char stepname[STEP_NAME_MAX + 1], list[1024], key[KEY_LEN];
    member_copy(payload, "step", stepname, sizeof stepname);
    int64_t only = member_int(payload, "entry");
    int rc = active_get(j, list, sizeof list);
    for (char *p = list; rc == 0 && *p != '\0';) {
        int64_t n = strtoll(p, &p, 10);
        p += *p == ',';
        if (only > 0 && n != only)
            continue;
        snprintf(key, sizeof key, "c:%s:%s:%" PRId64 ":%s", j->sc->name, j->user, n, stepname);
        rc = kv_put_text(j->ctx, key, "1");
    }
    return rc;
}

static int on_event(step_shop *s, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    const char *topic = kz_event_topic(ev), *payload = kz_event_payload(ev, NULL);
    job j = {s, ctx, NULL, kz_event_user(ev), kz_now_ms(), err, errlen, NULL};
    if (j.user == NULL)
        return 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < s->set.n; i++) {
        j.sc = &s->set.v[i];
        if (strcmp(topic, "link.clicked") == 0 &&
            jscan_string_is(jscan_member(payload, "scenario"), j.sc->name))
            rc = on_click(&j, payload);
        if (rc == 0 && topic_in(j.sc->stop_on, j.sc->nstop, topic))
            rc = stop_all(&j, topic);
    }
    for (size_t i = 0; rc == 0 && i < s->set.n; i++) {
        j.sc = &s->set.v[i];
        int t = triggers(&j, ev);
        rc = t < 0 ? t : t ? enter(&j) : 0;
    }
    return rc;
}

/* ---- bulk enrollment: step.enroll {"scenario","users":[…]} ------------- */

#define ENROLL_MAX 1000 /* users in one step.enroll event */

typedef struct bulk {
    job j;
    int64_t skipped; /* not LINE user ids */
    int rc;
} bulk;

static int user_id_ok(const char *u)
{
    return strlen(u) == 33 && u[0] == 'U' && strspn(u + 1, "0123456789abcdef") == 32;
}

static int enroll_one(const char *elem, void *arg)
{
    bulk *b = arg;
    char *user = jscan_string_dup(elem);
    if (user == NULL || !user_id_ok(user)) {
        b->skipped++;
        free(user);
        return 0;
    }
    b->j.user = user;
    int t = b->j.sc->segment == NULL ? 1 : kz_segment_match(b->j.ctx, b->j.sc->segment, user);
    b->rc = t < 0 ? t : t ? enter(&b->j) : 0;
    b->j.user = NULL;
    free(user);
    return b->rc != 0;
}

static int count_one(const char *elem, void *arg)
{
    (void)elem;
    ++*(size_t *)arg;
    return 0;
}

/* Enrolls the listed users (up to ENROLL_MAX an event) in one handler
 * call, as if each had triggered the scenario now: its segment and
 * re-entry policy apply, its `when` conditions (about a trigger's payload)
 * do not. One event and one transaction for many users: a CRM import or
 * another plugin enrolls thousands at a time. A bad event is a dead letter
 * (KZ_EFATAL) with the reason. */
static int on_enroll(step_shop *s, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    const char *payload = kz_event_payload(ev, NULL);
    char name[STEP_NAME_MAX + 1];
    member_copy(payload, "scenario", name, sizeof name);
    bulk b = {.j = {s, ctx, scenario_find(&s->set, name), NULL, kz_now_ms(), err, errlen, NULL}};
    const char *users = jscan_member(payload, "users");
    size_t n = 0;
    if (b.j.sc == NULL) {
        snprintf(err, errlen, "step.enroll: no scenario '%s' in this shop's step config", name);
        return KZ_EFATAL;
    }
    if (users == NULL || jscan_each(users, count_one, &n) < 0 || n > ENROLL_MAX) {
        snprintf(err, errlen, "step.enroll: \"users\" must be an array of at most %d LINE user ids",
                 ENROLL_MAX);
        return KZ_EFATAL;
    }
    tally t = {.n = 0};
    b.j.tally = &t;
    jscan_each(users, enroll_one, &b);
    if (b.rc == 0)
        b.rc = tally_flush(ctx, &t);
    if (b.rc == 0 && b.skipped > 0)
        kz_log(KZ_LOG_WARN, "step.enroll %s: %lld entr(ies) not LINE user ids, skipped", name,
               (long long)b.skipped);
    return b.rc;
}

/* ---- pruning a finished entry ------------------------------------------ */

typedef struct pruning {
    kz_ctx *ctx;
    const char *sc, *user;
    int64_t n;
    int rc;
} pruning;

static int del_key(kz_ctx *ctx, const char *key)
{
    int rc = kz_kv_del(ctx, key);
    return rc == KZ_ENOTFOUND ? 0 : rc;
}

/* Deletes the sent mark and the click of step `name` in the entry. */
static void prune_step(pruning *p, const char *name, size_t len)
{
    char key[KEY_LEN];
    if (p->rc != 0 || len == 0 || len > STEP_NAME_MAX)
        return;
    snprintf(key, sizeof key, "s:%s:%.*s:%s:%" PRId64, p->sc, (int)len, name, p->user, p->n);
    p->rc = del_key(p->ctx, key);
    snprintf(key, sizeof key, "c:%s:%s:%" PRId64 ":%.*s", p->sc, p->user, p->n, (int)len, name);
    if (p->rc == 0)
        p->rc = del_key(p->ctx, key);
}

/* step.prune {"scenario","entry"}: the finished entry's records go. Its
 * steps are those its path names and those the scenario has now (a path
 * cut short drops its oldest items). */
static int on_prune(step_shop *s, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    const char *payload = kz_event_payload(ev, NULL);
    char name[STEP_NAME_MAX + 1];
    member_copy(payload, "scenario", name, sizeof name);
    job j = {s,      ctx, scenario_find(&s->set, name), kz_event_user(ev), kz_now_ms(), err,
             errlen, NULL};
    scenario gone = {0};
    if (j.sc == NULL) { /* no longer configured: its records go all the same */
        snprintf(gone.name, sizeof gone.name, "%s", name);
        j.sc = &gone;
    }
    entry e;
    int rc = j.user != NULL ? entry_load(&j, member_int(payload, "entry"), &e) : KZ_ENOTFOUND;
    if (rc == KZ_ENOTFOUND || (rc == 0 && running(&e)))
        return 0;
    if (rc != 0)
        return fail(&j, rc, "cannot read the entry to prune");
    pruning p = {ctx, name, j.user, e.n, 0};
    for (const char *q = e.path; *q != '\0';) { /* "name:what@ms,…" */
        size_t item = strcspn(q, ",");
        prune_step(&p, q, strcspn(q, ":") < item ? strcspn(q, ":") : 0);
        q += item + (q[item] == ',');
    }
    for (size_t i = 0; gone.name[0] == '\0' && i < j.sc->nsteps; i++)
        prune_step(&p, j.sc->steps[i].name, strlen(j.sc->steps[i].name));
    char key[KEY_LEN];
    entry_key(&j, e.n, key);
    return p.rc != 0 ? p.rc : kz_kv_del(ctx, key);
}

static int handle(void *instance, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    const char *topic = kz_event_topic(ev);
    if (strcmp(topic, "step.due") == 0)
        return on_due(instance, ctx, ev, err, errlen);
    if (strcmp(topic, "step.drain") == 0)
        return on_drain(instance, ctx, ev, err, errlen);
    if (strcmp(topic, "step.enroll") == 0)
        return on_enroll(instance, ctx, ev, err, errlen);
    if (strcmp(topic, "step.prune") == 0)
        return on_prune(instance, ctx, ev, err, errlen);
    return on_event(instance, ctx, ev, err, errlen);
}

/* ---- life cycle --------------------------------------------------------- */

static void shop_close(void *instance)
{
    step_shop *s = instance;
    if (s == NULL)
        return;
    scenario_set_free(&s->set);
    free(s);
}

static int subscribe_all(step_shop *s)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < s->set.n; i++) {
        const scenario *sc = &s->set.v[i];
        for (size_t k = 0; rc == 0 && k < sc->ntriggers; k++)
            rc = kz_subscribe(s->shop, sc->triggers[k]);
        for (size_t k = 0; rc == 0 && k < sc->nstop; k++)
            rc = kz_subscribe(s->shop, sc->stop_on[k]);
    }
    return rc;
}

static int shop_open(void *plugin_state, kz_shop *shop, const kz_setting *setting, void **instance,
                     char *err, size_t errlen)
{
    (void)plugin_state;
    if (!KZ_HOST_HAS(kz_host_api, local_to_ms) || !KZ_HOST_HAS(kz_host_api, timer_set))
        return kz_setting_error(setting, err, errlen,
                                "step needs durable timers and shop-local times (ABI 1.5)");
    step_shop *s = calloc(1, sizeof *s);
    if (s == NULL)
        return KZ_ENOMEM;
    s->shop = shop;
    int rc = scenario_set_load(shop, setting, &s->set, err, errlen);
    if (rc == 0 && (rc = subscribe_all(s)) != 0)
        snprintf(err, errlen, "step: cannot subscribe (error %d)", rc);
    if (rc != 0) {
        shop_close(s);
        return rc;
    }
    *instance = s;
    kz_log(KZ_LOG_DEBUG, "step: shop %s: %zu scenario(s)", kz_shop_id(shop), s->set.n);
    return 0;
}

static const char *const subscriptions[] = {"step.due",   "step.drain",   "step.enroll",
                                            "step.prune", "link.clicked", NULL};

static const kz_setting_spec settings[] = {
    {"scenarios",
     KZ_SETTING_LIST,
     1,
     NULL,
     "( { name = \"welcome\"; trigger = \"line.follow\"; steps = ( { name = …; after = \"1d\"; "
     "at = \"10:00\"; messages = ( … ); } ); }, … )",
     {0}},
    {NULL, 0, 0, NULL, NULL, {0}},
};

KZ_PLUGIN_DEFINE(.name = "step", .version = "0.1.0", .vendor = "kizuna", .license = "MIT",
                 .description = "step delivery: scenarios of messages at set times after a trigger",
                 .shop_open = shop_open, .shop_close = shop_close, .handle = handle,
                 .subscriptions = subscriptions, .settings = settings)
