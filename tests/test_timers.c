/*
 * Durable timers (store "timers", core/timers.c, core/timerapi.c): the
 * store's set/replace/cancel/due walk/fire, then the ABI 1.4 slots through
 * the fx_timer fixture on a real config, store and bus with a virtual
 * clock — set in a handler, fired once by the pump after the clock moves,
 * handled like any event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bus.h"
#include "clock.h"
#include "daemon.h"
#include "store.h"
#include "support.h"
#include "timers.h"

#define U1 "U1111111111111111111111111111111a"
#define T0 1795000000000LL

typedef struct env {
    char dir[64], conf[128];
    app a;
    bus *b;
    store *st;
} env;

/* shops: the config's shop list */
static env *env_open_shops(const char *shops)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    ts_tmpdir(e->dir, sizeof e->dir, "timers");
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    ts_write_file(e->conf,
                  "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; durability = "
                  "\"normal\"; listen = \"127.0.0.1:0\"; plugin_path = \"%s\"; };\n"
                  "shops = ( %s );\n",
                  e->dir, KZ_TIMER_FIXTURES, shops);
    clock_use_virtual(T0);
    ts_app_prepare(&e->a, e->conf);
    ts_bus_new(&e->a, &e->b);
    assert_true(app_open_instances(&e->a, e->b) >= 0);
    e->st = ts_store_open(e->a.c->store_url, e->a.c->sync_mode);
    return e;
}

static env *env_open(void)
{
    return env_open_shops("{ id = \"a\"; plugins = { fx_timer = { }; fx_timer2 = { }; }; }");
}

static void env_close(env *e)
{
    bus_free(e->b);
    store_close(e->st);
    app_free(&e->a);
    ts_rmdir(e->dir);
    clock_use_real();
    free(e);
}

static void publish_to(env *e, const char *shop, const char *json)
{
    char err[256];
    bus_msg m = {.shop = shop, .topic = "test.op", .user = U1, .json = json, .len = strlen(json)};
    if (bus_publish(e->b, &m, 1, NULL, err, sizeof err) != 0)
        fail_msg("publish: %s", err);
}

static void publish(env *e, const char *json)
{
    publish_to(e, "a", json);
}

static void run(env *e)
{
    char err[256];
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
}

static long kv_long(env *e, const char *plugin, const char *key)
{
    return ts_kv_long(e->st, ts_instance(e->b, "a", plugin)->id, key, 0);
}

static const char *kv_text_of(env *e, const char *shop, const char *plugin, const char *key)
{
    static char out[4096];
    out[0] = '\0';
    ts_kv(e->st, ts_instance(e->b, shop, plugin)->id, key, out, sizeof out);
    return out;
}

static const char *kv_text(env *e, const char *plugin, const char *key)
{
    return kv_text_of(e, "a", plugin, key);
}

/* "<event time>,<clock>" as fx_timer's handler of the timer `body` saw them. */
static const char *seen_at(env *e, const char *shop, const char *body)
{
    char key[64];
    snprintf(key, sizeof key, "at:%s", body);
    return kv_text_of(e, shop, "fx_timer", key);
}

static const char *both(int64_t ms)
{
    static char out[4][64];
    static int k;
    k = (k + 1) % 4;
    snprintf(out[k], sizeof out[k], "%lld,%lld", (long long)ms, (long long)ms);
    return out[k];
}

static int64_t pending(env *e)
{
    int64_t n = -1;
    char err[256];
    assert_int_equal(store_timer_pending(e->st, &n, err, sizeof err), 0);
    return n;
}

/* ---- store ---------------------------------------------------------------- */

static void set_timer(store *st, int64_t instance, const char *key, int64_t due, const char *body)
{
    char err[256];
    store_timer t = {.shop = "a",
                     .instance = instance,
                     .key = key,
                     .due_ms = due,
                     .topic = "tick.t",
                     .payload = body,
                     .created_ms = T0};
    if (store_timer_set(st, &t, err, sizeof err) != 0)
        fail_msg("set timer: %s", err);
}

typedef struct seen {
    char keys[512];
    int n;
} seen;

static int note(void *arg, const store_timer *t)
{
    seen *s = arg;
    strcat(s->keys, t->key);
    strcat(s->keys, " ");
    s->n++;
    return 0;
}

static seen due(store *st, int64_t now, int limit)
{
    seen s = {{0}, 0};
    char err[256];
    if (store_timer_due(st, now, limit, note, &s, err, sizeof err) != 0)
        fail_msg("due: %s", err);
    return s;
}

static void store_set_replace_cancel_due(void **state)
{
    (void)state;
    env *e = env_open();
    char err[256];
    set_timer(e->st, 1, "b", T0 + 200, "{}");
    set_timer(e->st, 1, "a", T0 + 100, "{}");
    set_timer(e->st, 2, "a", T0 + 100, "{}"); /* another instance, same key */
    set_timer(e->st, 1, "c", T0 + 300, "{}");
    assert_int_equal(pending(e), 4);
    set_timer(e->st, 1, "c", T0 + 50, "{}"); /* replaced: still one "c", now first */
    assert_int_equal(pending(e), 4);
    assert_string_equal(due(e->st, T0 + 1000, 10).keys, "c a a b ");
    assert_string_equal(due(e->st, T0 + 1000, 2).keys, "c a ");
    assert_string_equal(due(e->st, T0 + 100, 10).keys, "c a a ");
    assert_int_equal(due(e->st, T0, 10).n, 0);
    assert_int_equal(store_timer_cancel(e->st, 1, "a", err, sizeof err), 0);
    assert_int_equal(store_timer_cancel(e->st, 1, "a", err, sizeof err), KZ_ENOTFOUND);
    assert_string_equal(due(e->st, T0 + 1000, 10).keys, "c a b ");
    int64_t next = 0;
    assert_int_equal(store_timer_next(e->st, &next, err, sizeof err), 0);
    assert_int_equal(next, T0 + 50);
    env_close(e);
}

/* Firing appends "timer:<id>" with the timer's fields and deletes it. */
static void store_fire_once(void **state)
{
    (void)state;
    env *e = env_open();
    char err[256];
    set_timer(e->st, 1, "a", T0 + 100, "{\"x\":1}");
    assert_int_equal(timers_fire_due(e->st, T0 + 99, 10, err, sizeof err), 0);
    assert_int_equal(timers_fire_due(e->st, T0 + 100, 10, err, sizeof err), 1);
    assert_int_equal(timers_fire_due(e->st, T0 + 100, 10, err, sizeof err), 0);
    assert_int_equal(pending(e), 0);
    store_batch b = {0};
    assert_int_equal(ts_events_after(e->st, "a", 0, &b), 1);
    assert_string_equal(b.ev[0].topic, "tick.t");
    assert_string_equal(b.ev[0].payload, "{\"x\":1}");
    assert_int_equal(strncmp(b.ev[0].uid, "timer:", 6), 0);
    assert_int_equal(b.ev[0].time_ms, T0 + 100);
    store_batch_free(&b);
    assert_int_equal(store_timer_fire(e->st, 1, NULL, err, sizeof err), KZ_ENOTFOUND);
    env_close(e);
}

/* 100,000 timers in the future and one due: the walk returns the one, and
 * the plan is a range search of timers_due, not a scan of the table. */
static void store_due_reads_due_rows_only(void **state)
{
    (void)state;
    env *e = env_open();
    char err[256], key[32];
    assert_int_equal(store_begin(e->st, err, sizeof err), 0);
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        set_timer(e->st, 1, key, T0 + 86400000 + i, "{}");
    }
    set_timer(e->st, 1, "now", T0, "{}");
    assert_int_equal(store_commit(e->st, err, sizeof err), 0);
    assert_int_equal(due(e->st, T0, 500).n, 1);
    sqlite3 *db;
    char path[128];
    snprintf(path, sizeof path, "%s/k.db", e->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "EXPLAIN QUERY PLAN SELECT id FROM timers INDEXED BY "
                                        "timers_due WHERE due_ms <= ?1 ORDER BY due_ms, id LIMIT 9",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const char *plan = (const char *)sqlite3_column_text(st, 3);
    assert_non_null(strstr(plan, "SEARCH timers USING"));
    assert_non_null(strstr(plan, "timers_due (due_ms<?)"));
    sqlite3_finalize(st);
    sqlite3_close(db);
    env_close(e);
}

/* A process SIGKILLed while it fires timers (one a transaction) loses none
 * and doubles none: the next one fires exactly the rest. */
static void sigkill_mid_firing_exactly_once(void **state)
{
    (void)state;
    env *e = env_open();
    char err[256], key[32];
    enum { N = 3000 };
    assert_int_equal(store_begin(e->st, err, sizeof err), 0);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i);
        set_timer(e->st, 1, key, T0 + i, "{}");
    }
    assert_int_equal(store_commit(e->st, err, sizeof err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* the child fires on its own connection until killed */
        store *st = ts_store_open(e->a.c->store_url, e->a.c->sync_mode);
        while (timers_fire_due(st, T0 + N, 1, err, sizeof err) >= 0)
            ;
        _exit(1);
    }
    TS_WAIT(pending(e) < N - 100, 20000, "the child fired nothing");
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    int64_t left = pending(e);
    assert_true(left > 0); /* killed mid-way, or the test proves nothing */
    int n;
    while ((n = timers_fire_due(e->st, T0 + N, 100, err, sizeof err)) > 0)
        ;
    assert_int_equal(n, 0);
    assert_int_equal(pending(e), 0);
    store_batch b = {0};
    size_t events = 0;
    int64_t after = 0;
    for (size_t got; (got = ts_events_after(e->st, "a", after, &b)) > 0;) {
        for (size_t i = 0; i < got; i++)
            assert_int_equal(strncmp(b.ev[i].uid, "timer:", 6), 0);
        events += got;
        after = b.ev[got - 1].id;
    }
    store_batch_free(&b);
    assert_int_equal(events, N);
    print_message("killed with %lld of %d timers left\n", (long long)left, N);
    env_close(e);
}

/* ---- the slots on the bus --------------------------------------------- */

/* Set in a handler; the pump fires it once the virtual clock passes it. */
static void fires_once_after_advance(void **state)
{
    (void)state;
    env *e = env_open();
    char err[256];
    publish(
        e, "{\"op\":\"set\",\"key\":\"k\",\"in\":\"60000\",\"topic\":\"tick.a\",\"body\":\"one\"}");
    run(e);
    assert_int_equal(kv_long(e, "fx_timer", "rc"), 0);
    assert_int_equal(pending(e), 2); /* fx_timer2 set its own "k" */
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    clock_advance_ms(59999);
    clock_advance_ms(1);
    /* both fixtures set "k" (keys are per instance): two timers, two events */
    TS_WAIT(kv_long(e, "fx_timer", "fired") == 2, 5000, "the timers did not fire");
    assert_string_equal(kv_text(e, "fx_timer", "last"), "{\"body\":\"one\"}");
    assert_int_equal(pending(e), 0);
    clock_advance_ms(3600000);
    bus_stop(e->b);
    run(e);
    assert_int_equal(kv_long(e, "fx_timer", "fired"), 2);
    /* a timer event is for every subscriber, like any event */
    assert_int_equal(kv_long(e, "fx_timer2", "fired"), 2);
    env_close(e);
}

static void cancel_and_reset(void **state)
{
    (void)state;
    env *e = env_open();
    publish(e, "{\"op\":\"set\",\"key\":\"c\",\"in\":\"1000\",\"topic\":\"tick.c\"}");
    publish(e, "{\"op\":\"cancel\",\"key\":\"c\"}");
    run(e);
    assert_int_equal(kv_long(e, "fx_timer", "rc"), 0);
    publish(e, "{\"op\":\"cancel\",\"key\":\"c\"}");
    run(e);
    assert_int_equal(kv_long(e, "fx_timer", "rc"), KZ_ENOTFOUND);
    /* re-set moves it: due at +5000, not +1000 */
    publish(e, "{\"op\":\"set\",\"key\":\"m\",\"in\":\"1000\",\"topic\":\"tick.m\"}");
    publish(e, "{\"op\":\"set\",\"key\":\"m\",\"in\":\"5000\",\"topic\":\"tick.m\"}");
    run(e);
    assert_int_equal(pending(e), 2); /* one per instance: both fixtures set "m" */
    clock_advance_ms(4999);
    run(e);
    assert_int_equal(kv_long(e, "fx_timer", "fired"), 0);
    clock_advance_ms(1);
    run(e);
    /* each instance's "m" fired once; each fixture handles both events */
    assert_int_equal(kv_long(e, "fx_timer", "fired:tick.m"), 2);
    assert_int_equal(kv_long(e, "fx_timer", "fired:tick.c"), 0);
    assert_int_equal(pending(e), 0);
    env_close(e);
}

static void failing_handler_timer_never_fires(void **state)
{
    (void)state;
    env *e = env_open();
    publish(e, "{\"op\":\"set\",\"key\":\"f\",\"in\":\"10\",\"topic\":\"tick.f\",\"fail\":true}");
    run(e);
    assert_int_equal(pending(e), 0);
    clock_advance_ms(100000);
    run(e);
    assert_int_equal(kv_long(e, "fx_timer", "fired"), 0);
    env_close(e);
}

/* Keys are per instance: cancelling fx_timer's "k" leaves fx_timer2's. */
static void same_key_two_instances(void **state)
{
    (void)state;
    env *e = env_open();
    char err[256];
    publish(e, "{\"op\":\"set\",\"key\":\"k\",\"in\":\"10\",\"topic\":\"tick.k\"}");
    run(e);
    assert_int_equal(pending(e), 2);
    const bus_instance *one = ts_instance(e->b, "a", "fx_timer");
    assert_int_equal(store_timer_cancel(e->st, one->id, "k", err, sizeof err), 0);
    assert_int_equal(pending(e), 1);
    clock_advance_ms(10);
    run(e);
    assert_int_equal(kv_long(e, "fx_timer", "fired"), 1);
    assert_int_equal(kv_long(e, "fx_timer2", "fired"), 1);
    env_close(e);
}

/* One jump of the clock fires everything due, handled in due order. */
static void jump_fires_in_due_order(void **state)
{
    (void)state;
    env *e = env_open();
    char err[256];
    publish(e,
            "{\"op\":\"set\",\"key\":\"3\",\"in\":\"3000\",\"topic\":\"tick.o\",\"body\":\"3\"}");
    publish(e,
            "{\"op\":\"set\",\"key\":\"1\",\"in\":\"1000\",\"topic\":\"tick.o\",\"body\":\"1\"}");
    publish(e,
            "{\"op\":\"set\",\"key\":\"2\",\"in\":\"2000\",\"topic\":\"tick.o\",\"body\":\"2\"}");
    run(e);
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    clock_advance_ms(86400000);
    TS_WAIT(kv_long(e, "fx_timer", "fired") == 6, 5000, "not all timers fired");
    bus_stop(e->b);
    /* both instances set 1, 2, 3: each fixture sees 1,1,2,2,3,3 */
    assert_string_equal(kv_text(e, "fx_timer", "order"), "1,1,2,2,3,3");
    env_close(e);
}

static void bad_arguments(void **state)
{
    (void)state;
    env *e = env_open();
    char key[260];
    memset(key, 'x', 201);
    key[201] = '\0';
    char json[400];
    snprintf(json, sizeof json, "{\"op\":\"set\",\"key\":\"%s\",\"topic\":\"tick.a\"}", key);
    publish(e, json);
    run(e);
    assert_int_equal(kv_long(e, "fx_timer", "rc"), KZ_ETOOBIG);
    publish(e, "{\"op\":\"set\",\"key\":\"\",\"topic\":\"tick.a\"}");
    run(e);
    assert_int_equal(kv_long(e, "fx_timer", "rc"), KZ_EINVAL);
    publish(e, "{\"op\":\"set\",\"key\":\"k\",\"topic\":\"Bad Topic\"}");
    run(e);
    assert_int_equal(kv_long(e, "fx_timer", "rc"), KZ_EINVAL);
    assert_int_equal(pending(e), 0);
    env_close(e);
}

/* ---- the walking advance (bus_advance) ---------------------------------- */

#define HOUR 3600000LL
#define DAY (24 * HOUR)

/* A day-1 timer whose handler sets one for day 3, whose handler sets one
 * for day 5: one advance of 7 days fires each at its own time, with the
 * clock at that time while it is handled. */
static void walk_fires_chained_timers_at_their_times(void **state)
{
    (void)state;
    env *e = env_open_shops("{ id = \"a\"; plugins = { fx_timer = { }; }; }");
    char err[256];
    publish(e, "{\"op\":\"set\",\"key\":\"c\",\"in\":\"86400000\",\"topic\":\"tick.c\","
               "\"body\":\"c\",\"then\":\"172800000\",\"left\":\"2\"}");
    run(e);
    assert_int_equal(kv_long(e, "fx_timer", "rc"), 0);
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    bus_walk w;
    if (bus_advance(e->b, 7 * DAY, 0, &w, err, sizeof err) != 0)
        fail_msg("advance: %s", err);
    /* no waiting: the walk returns once everything due is handled */
    assert_string_equal(seen_at(e, "a", "c"), both(T0 + DAY));
    assert_string_equal(seen_at(e, "a", "c+"), both(T0 + 3 * DAY));
    assert_string_equal(seen_at(e, "a", "c++"), both(T0 + 5 * DAY));
    assert_string_equal(kv_text(e, "fx_timer", "order"), "c,c+,c++");
    assert_int_equal(clock_now_ms(), T0 + 7 * DAY);
    assert_int_equal(w.from_ms, T0);
    assert_int_equal(w.now_ms, T0 + 7 * DAY);
    assert_int_equal(w.steps, 4); /* days 1, 3, 5, then 7 */
    assert_int_equal(w.timers_fired, 3);
    assert_int_equal(w.handled, 3);
    assert_int_equal(w.failed, 0);
    assert_int_equal(pending(e), 0);
    env_close(e);
}

/* Timers of two shops interleave by time: each is handled with the clock
 * at its own due time, whichever shop it belongs to. */
static void walk_orders_across_shops(void **state)
{
    (void)state;
    env *e = env_open_shops("{ id = \"a\"; plugins = { fx_timer = { }; }; },"
                            "{ id = \"b\"; plugins = { fx_timer = { }; }; }");
    char err[256];
    publish_to(e, "a",
               "{\"op\":\"set\",\"key\":\"1\",\"in\":\"7200000\",\"topic\":\"tick.x\","
               "\"body\":\"a2h\"}");
    publish_to(e, "b",
               "{\"op\":\"set\",\"key\":\"1\",\"in\":\"3600000\",\"topic\":\"tick.x\","
               "\"body\":\"b1h\",\"then\":\"7200000\",\"left\":\"1\"}");
    publish_to(e, "a",
               "{\"op\":\"set\",\"key\":\"2\",\"in\":\"14400000\",\"topic\":\"tick.x\","
               "\"body\":\"a4h\"}");
    run(e);
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    bus_walk w;
    if (bus_advance_to(e->b, T0 + DAY, 0, &w, err, sizeof err) != 0)
        fail_msg("advance: %s", err);
    assert_string_equal(seen_at(e, "b", "b1h"), both(T0 + HOUR));
    assert_string_equal(seen_at(e, "a", "a2h"), both(T0 + 2 * HOUR));
    assert_string_equal(seen_at(e, "b", "b1h+"), both(T0 + 3 * HOUR)); /* set at 1 h, + 2 h */
    assert_string_equal(seen_at(e, "a", "a4h"), both(T0 + 4 * HOUR));
    assert_int_equal(w.timers_fired, 4);
    assert_int_equal(w.steps, 5);
    assert_int_equal(clock_now_ms(), T0 + DAY);
    env_close(e);
}

/* Only a virtual clock walks; a walk of 0 still waits for what is due now;
 * the clock never goes back. */
static void walk_refusals_and_zero(void **state)
{
    (void)state;
    env *e = env_open_shops("{ id = \"a\"; plugins = { fx_timer = { }; }; }");
    char err[256] = "";
    bus_walk w;
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    clock_use_real();
    int64_t before = clock_now_ms();
    err[0] = '\0';
    assert_int_equal(bus_advance(e->b, DAY, 0, &w, err, sizeof err), KZ_ESTATE);
    assert_non_null(strstr(err, "the clock is real"));
    assert_true(clock_now_ms() < before + HOUR);
    clock_use_virtual(T0);
    assert_int_equal(bus_advance(e->b, -1, 0, &w, err, sizeof err), KZ_EINVAL);
    assert_int_equal(bus_advance_to(e->b, T0 - 1, 0, &w, err, sizeof err), KZ_EINVAL);
    assert_int_equal(clock_now_ms(), T0);
    /* published while running, due at once: handled before the walk returns */
    publish(e, "{\"op\":\"set\",\"key\":\"z\",\"in\":\"0\",\"topic\":\"tick.z\",\"body\":\"z\"}");
    assert_int_equal(bus_advance(e->b, 0, 0, &w, err, sizeof err), 0);
    assert_int_equal(w.steps, 0);
    assert_int_equal(clock_now_ms(), T0);
    assert_int_equal(kv_long(e, "fx_timer", "fired"), 1);
    assert_string_equal(seen_at(e, "a", "z"), both(T0));
    env_close(e);
}

typedef struct dead_count {
    int n;
    int attempts;
} dead_count;

static int count_dead(void *arg, const store_dead *d)
{
    dead_count *c = arg;
    c->n++;
    c->attempts = d->attempts;
    return 0;
}

/* A failing handler's retries are steps of the walk: retried at each
 * backoff's end on the virtual clock, then parked, within one advance. */
static void walk_steps_through_retries(void **state)
{
    (void)state;
    env *e = env_open_shops("{ id = \"a\"; plugins = { fx_timer = { }; }; }");
    char err[256];
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    publish(e, "{\"op\":\"set\",\"key\":\"f\",\"in\":\"10\",\"topic\":\"tick.f\",\"fail\":true}");
    bus_walk w;
    if (bus_advance(e->b, HOUR, 0, &w, err, sizeof err) != 0)
        fail_msg("advance: %s", err);
    dead_count c = {0, 0};
    assert_int_equal(store_dead_list(e->st, count_dead, &c, err, sizeof err), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.attempts, 5); /* kizuna.retry.attempts' default */
    /* the first attempt may come before the walk begins */
    assert_true(w.failed == 4 || w.failed == 5);
    assert_true(w.steps >= 5); /* four retries, then the hour */
    assert_int_equal(pending(e), 0);
    env_close(e);
}

static void count_wake(void *arg)
{
    ++*(int *)arg;
}

/* With a sender (bus_on_sends), LINE calls are part of the walk: it stops
 * at a pending row's time (a retry goes out then, not after its deadline)
 * and waits there for it to be done. A row no sender takes keeps the walk
 * waiting — and poking the sender — until its time limit, which ends it
 * with KZ_EFAIL, the clock where it got to. Once the row is done, the walk
 * goes through. */
static void walk_waits_for_due_sends_until_its_limit(void **state)
{
    (void)state;
    env *e = env_open_shops("{ id = \"a\"; plugins = { fx_timer = { }; }; }");
    char err[256] = "";
    int wakes = 0;
    bus_on_sends(e->b, count_wake, &wakes);
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    store_outbox row = {.shop = "a",
                        .kind = KZ_LINE_PUSH,
                        .endpoint = "/v2/bot/message/push",
                        .body = "{}",
                        .retry_key = "6f0d7a2e-8f3c-4e55-9b1a-2f9d0c3b4a51",
                        .created_ms = T0,
                        .next_at_ms = T0 + HOUR / 2,
                        .deadline_ms = T0 + DAY};
    int64_t id = 0;
    assert_int_equal(store_outbox_add(e->st, &row, &id, err, sizeof err), 0);
    bus_walk w;
    assert_int_equal(bus_advance(e->b, HOUR, 300, &w, err, sizeof err), KZ_EFAIL);
    assert_non_null(strstr(err, "time limit"));
    assert_int_equal(w.now_ms, T0 + HOUR / 2);
    assert_int_equal(w.steps, 1);
    assert_int_equal(clock_now_ms(), T0 + HOUR / 2);
    assert_true(wakes > 0);
    assert_int_equal(
        store_outbox_finish(e->st, id, OUTBOX_SENT, 200, NULL, NULL, T0, err, sizeof err), 0);
    assert_int_equal(bus_advance(e->b, HOUR, 0, &w, err, sizeof err), 0);
    assert_int_equal(clock_now_ms(), T0 + HOUR + HOUR / 2);
    env_close(e);
}

/* Without started workers the walk runs on the caller's thread, with the
 * same outcome: the chain fires at days 1, 3 and 5, retries included. */
static void walk_on_a_bus_not_started(void **state)
{
    (void)state;
    env *e = env_open_shops("{ id = \"a\"; plugins = { fx_timer = { }; }; }");
    char err[256];
    publish(e, "{\"op\":\"set\",\"key\":\"c\",\"in\":\"86400000\",\"topic\":\"tick.c\","
               "\"body\":\"c\",\"then\":\"172800000\",\"left\":\"2\"}");
    publish(e, "{\"op\":\"set\",\"key\":\"f\",\"in\":\"10\",\"topic\":\"tick.f\",\"fail\":true}");
    bus_walk w;
    if (bus_advance(e->b, 7 * DAY, 0, &w, err, sizeof err) != 0)
        fail_msg("advance: %s", err);
    assert_string_equal(seen_at(e, "a", "c"), both(T0 + DAY));
    assert_string_equal(seen_at(e, "a", "c+"), both(T0 + 3 * DAY));
    assert_string_equal(seen_at(e, "a", "c++"), both(T0 + 5 * DAY));
    assert_int_equal(clock_now_ms(), T0 + 7 * DAY);
    assert_int_equal(w.timers_fired, 3);
    assert_int_equal(w.failed, 5); /* the failing op: tried, retried 4 times, parked */
    dead_count c = {0, 0};
    assert_int_equal(store_dead_list(e->st, count_dead, &c, err, sizeof err), 0);
    assert_int_equal(c.n, 1);
    env_close(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(store_set_replace_cancel_due),
        cmocka_unit_test(store_fire_once),
        cmocka_unit_test(store_due_reads_due_rows_only),
        cmocka_unit_test(sigkill_mid_firing_exactly_once),
        cmocka_unit_test(fires_once_after_advance),
        cmocka_unit_test(cancel_and_reset),
        cmocka_unit_test(failing_handler_timer_never_fires),
        cmocka_unit_test(same_key_two_instances),
        cmocka_unit_test(jump_fires_in_due_order),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(walk_fires_chained_timers_at_their_times),
        cmocka_unit_test(walk_orders_across_shops),
        cmocka_unit_test(walk_refusals_and_zero),
        cmocka_unit_test(walk_steps_through_retries),
        cmocka_unit_test(walk_waits_for_due_sends_until_its_limit),
        cmocka_unit_test(walk_on_a_bus_not_started),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
