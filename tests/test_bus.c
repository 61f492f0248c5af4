/*
 * The event bus in-process, on the real store and real plugins (the
 * fx_counter / fx_mirror fixtures, loaded by the real loader from a real
 * config): delivery, rollback, retry with backoff on the virtual clock,
 * dead letters and replay, group-commit isolation, per-shop ordering under
 * concurrent publishers, shop_open failure scoped to one shop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "bus.h"
#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "store.h"
#include "support.h"

#define T0 1795000000000LL /* a fixed virtual start: 2026-11-19 */

typedef struct env {
    char dir[64];
    char conf[128];
    app a;
    bus *b;
    metrics *m; /* the bus's delivery counters */
    store *st;  /* the test's own connection */
} env;

static void write_conf(env *e, const char *shops)
{
    ts_write_file(e->conf,
                  "kizuna: { store = \"sqlite:%s/k.db\"; plugin_path = [ \"%s\", \"%s\" ];\n"
                  "  workers = 2;\n"
                  "  batch = 64; log_level = \"error\";\n"
                  "  retry = { attempts = 3; initial = \"1s\"; max = \"10s\"; }; };\n"
                  "shops = ( %s );\n",
                  e->dir, KZ_BUS_FIXTURES, KZ_FROZEN_FIXTURES, shops);
}

/* Opens config, plugins, bus; every instance must open unless allowed. */
static env *env_open(const char *shops, int allow_open_failures)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    ts_tmpdir(e->dir, sizeof e->dir, "bus");
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    write_conf(e, shops);
    clock_use_virtual(T0);
    ts_app_prepare(&e->a, e->conf);
    assert_int_equal(metrics_new(&e->m), 0);
    bus_options o = app_bus_options(e->a.c);
    o.m = e->m;
    char err[512];
    if (bus_new(&o, &e->b, err, sizeof err) != 0)
        fail_msg("bus_new: %s", err);
    int opened = app_open_instances(&e->a, e->b);
    if (!allow_open_failures) /* plus the core's friends and broadcast instances per shop */
        assert_int_equal((size_t)opened + 2 * e->a.c->nshops, bus_instance_count(e->b));
    e->st = ts_store_open(e->a.c->store_url, e->a.c->sync_mode);
    return e;
}

static void env_close(env *e)
{
    bus_free(e->b);
    metrics_free(e->m);
    store_close(e->st);
    app_free(&e->a);
    ts_rmdir(e->dir);
    clock_use_real();
    free(e);
}

static const bus_instance *inst_of(env *e, const char *shop, const char *plugin)
{
    return ts_instance(e->b, shop, plugin);
}

/* A stored counter, or -1 when the key is absent. */
static long kv(env *e, const char *shop, const char *plugin, const char *key)
{
    return ts_kv_long(e->st, inst_of(e, shop, plugin)->id, key, -1);
}

static void publish(env *e, const char *shop, const char *topic, const char *json)
{
    char err[256];
    bus_msg m = {.shop = shop, .topic = topic, .json = json, .len = json ? strlen(json) : 0};
    if (bus_publish(e->b, &m, 1, NULL, err, sizeof err) != 0)
        fail_msg("publish: %s", err);
}

static int run(env *e)
{
    char err[256];
    int n = bus_run_until_idle(e->b, err, sizeof err);
    assert_true(n >= 0);
    return n;
}

/* The value of series "\nNAME{LABELS} " as GET /metrics shows it, or -1. */
static long series_value(env *e, const char *series)
{
    size_t len;
    char *text = metrics_render(e->m, &len);
    assert_non_null(text);
    const char *at = strstr(text, series);
    long v = at != NULL ? strtol(at + strlen(series), NULL, 10) : -1;
    free(text);
    return v;
}

/* A counter {shop, plugin}, or -1 when absent. */
static long counter(env *e, const char *name, const char *shop, const char *plugin)
{
    char series[256];
    snprintf(series, sizeof series, "\n%s{shop=\"%s\",plugin=\"%s\"} ", name, shop, plugin);
    return series_value(e, series);
}

static int count_dead(void *arg, const store_dead *d)
{
    (void)d;
    ++*(int *)arg;
    return 0;
}

static int dead_count(env *e)
{
    int n = 0;
    char err[256];
    assert_int_equal(store_dead_list(e->st, count_dead, &n, err, sizeof err), 0);
    return n;
}

/* ---- tests ---- */

static void delivers_by_subscription(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { publish = \"chain.x\"; };"
                      "  fx_mirror = { subscribe = [ \"chain.*\" ]; }; }; }",
                      0);
    for (int i = 0; i < 10; i++)
        publish(e, "a", "test.tick", "{\"n\":1}");
    publish(e, "a", "other.thing", NULL);
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 10);
    /* 10 test.tick + 10 chain.x published by fx_counter in its handler */
    assert_int_equal(kv(e, "a", "fx_mirror", "count"), 20);
    assert_int_equal(kv(e, "a", "fx_counter", "doubles"), -1);
    /* a published event's id derives from the handled one */
    store_batch b = {0};
    char err[256];
    assert_int_equal(store_events_after(e->st, "a", 0, 100, &b, err, sizeof err), 0);
    int derived = 0;
    for (size_t i = 0; i < b.n; i++)
        if (strcmp(b.ev[i].topic, "chain.x") == 0) {
            assert_non_null(strstr(b.ev[i].uid, "/fx_counter/1"));
            derived++;
        }
    assert_int_equal(derived, 10);
    store_batch_free(&b);
    env_close(e);
}

static void failing_handler_rolls_back(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { publish = \"chain.x\"; fail_topic = \"test.bad\"; };"
                      "  fx_mirror = { subscribe = [ \"chain.*\" ]; }; }; }",
                      0);
    publish(e, "a", "test.bad", NULL);
    run(e);
    /* fx_counter wrote count and published chain.x, then failed: both gone */
    assert_int_equal(kv(e, "a", "fx_counter", "count"), -1);
    assert_int_equal(kv(e, "a", "fx_mirror", "count"), 1); /* test.bad only, no chain.x */
    store_failure f;
    char err[256];
    assert_int_equal(
        store_failure_get(e->st, inst_of(e, "a", "fx_counter")->id, &f, err, sizeof err), 0);
    assert_int_equal(f.attempts, 1);
    assert_string_equal(f.error, "fixture failure 1");
    assert_true(f.retry_at >= T0 + 750 && f.retry_at <= T0 + 1250);
    /* head of line: fx_counter waits on test.bad, fx_mirror goes on */
    publish(e, "a", "test.ok", NULL);
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), -1);
    assert_int_equal(kv(e, "a", "fx_mirror", "count"), 2);
    env_close(e);
}

static void one_failure_keeps_batch_mates(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { fail_topic = \"test.bad\"; };"
                      "  fx_mirror = { }; }; }",
                      0);
    bus_msg m[3] = {{.shop = "a", .topic = "test.ok1"},
                    {.shop = "a", .topic = "test.bad"},
                    {.shop = "a", .topic = "test.ok2"}};
    char err[256];
    assert_int_equal(bus_publish(e->b, m, 3, NULL, err, sizeof err), 0);
    run(e);                                                 /* all three in one group commit */
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 1); /* ok1 kept, bad undone */
    assert_int_equal(kv(e, "a", "fx_mirror", "count"), 3);
    /* the batch ran twice (bad wrote, then failed); the counters count once */
    assert_int_equal(counter(e, "kizuna_events_handled_total", "a", "fx_mirror"), 3);
    assert_int_equal(counter(e, "kizuna_events_handled_total", "a", "fx_counter"), 1);
    assert_int_equal(counter(e, "kizuna_handler_failures_total", "a", "fx_counter"), 1);
    /* the failure is recorded once, and the rest waits behind it */
    store_failure f;
    assert_int_equal(
        store_failure_get(e->st, inst_of(e, "a", "fx_counter")->id, &f, err, sizeof err), 0);
    assert_int_equal(f.attempts, 1);
    env_close(e);
}

/* A counter {shop} (kizuna_bus_transactions_total), or -1 when absent. */
static long shop_counter(env *e, const char *name, const char *shop)
{
    char series[256];
    snprintf(series, sizeof series, "\n%s{shop=\"%s\"} ", name, shop);
    return series_value(e, series);
}

static void publish_n(env *e, const char *shop, int n, int bad_at)
{
    bus_msg *m = calloc((size_t)n, sizeof *m);
    assert_non_null(m);
    for (int i = 0; i < n; i++)
        m[i] = (bus_msg){.shop = shop, .topic = i == bad_at ? "test.bad" : "test.tick"};
    char err[256];
    assert_int_equal(bus_publish(e->b, m, (size_t)n, NULL, err, sizeof err), 0);
    free(m);
}

/* A backlog of several batches (batch = 64) commits once when no other
 * writer waits; a handler failing in its third batch has the whole
 * transaction run again carefully, and only its own call undone. */
static void backlog_commits_once_and_redoes_whole(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { fail_topic = \"test.bad\"; };"
                      "  fx_mirror = { }; }; }",
                      0);
    publish_n(e, "a", 5 * 64 + 10, -1);
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 330);
    assert_int_equal(shop_counter(e, "kizuna_bus_transactions_total", "a"), 1);
    publish_n(e, "a", 200, 150); /* the 151st fails after writing: batch 3 of 4 */
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 330 + 150); /* waits at test.bad */
    assert_int_equal(kv(e, "a", "fx_mirror", "count"), 530);
    assert_int_equal(kv(e, "a", "fx_mirror", "doubles"), -1);
    assert_int_equal(counter(e, "kizuna_events_handled_total", "a", "fx_mirror"), 530);
    assert_int_equal(counter(e, "kizuna_handler_failures_total", "a", "fx_counter"), 1);
    store_failure f;
    char err[256];
    assert_int_equal(
        store_failure_get(e->st, inst_of(e, "a", "fx_counter")->id, &f, err, sizeof err), 0);
    assert_int_equal(f.attempts, 1);
    env_close(e);
}

static void *begin_and_commit(void *arg)
{
    env *e = arg;
    char err[256];
    if (store_begin(e->st, err, sizeof err) != 0 || store_commit(e->st, err, sizeof err) != 0)
        return "the waiting writer could not write";
    return NULL;
}

/* Another writer lined up behind a worker's transaction (as a webhook's
 * group commit would be) ends it after the batch in progress, not after
 * the whole backlog. */
static void waiting_writer_ends_the_transaction_early(void **state)
{
    (void)state;
    char hold[128], shops[512];
    ts_tmpdir(hold, sizeof hold, "hold");
    snprintf(shops, sizeof shops,
             "{ id = \"a\"; plugins = { fx_counter = { hold_file = \"%s/h\"; }; }; }", hold);
    env *e = env_open(shops, 0);
    bus_msg first = {.shop = "a", .topic = "test.hold"};
    char err[256], in[192], go[192];
    assert_int_equal(bus_publish(e->b, &first, 1, NULL, err, sizeof err), 0);
    publish_n(e, "a", 4 * 64, -1);
    snprintf(in, sizeof in, "%s/h.in", hold);
    snprintf(go, sizeof go, "%s/h.go", hold);
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    TS_WAIT(access(in, F_OK) == 0, 10000, "the worker never reached test.hold");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, begin_and_commit, e), 0);
    TS_WAIT(store_writer_wanted(e->st), 10000, "the second writer never queued");
    ts_write_file(go, "go");
    void *res;
    pthread_join(th, &res);
    assert_null(res);
    TS_WAIT(kv(e, "a", "fx_counter", "count") == 4 * 64 + 1, 10000, "backlog not handled");
    bus_stop(e->b);
    /* one batch, then the waiting writer, then the rest; all in one: 1 */
    assert_true(shop_counter(e, "kizuna_bus_transactions_total", "a") >= 2);
    env_close(e);
    ts_rmdir(hold);
}

/* Topics of the shop's stored events, "a,b,c". */
static void stored_topics(env *e, char *out, size_t cap)
{
    store_batch b = {0};
    ts_events_after(e->st, "a", 0, &b);
    out[0] = '\0';
    for (size_t i = 0; i < b.n; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "", b.ev[i].topic);
    store_batch_free(&b);
}

static int64_t outbox_row(env *e, int finish)
{
    char err[256];
    int64_t id = 0, now = clock_now_ms();
    store_outbox row = {.shop = "a",
                        .kind = KZ_LINE_PUSH,
                        .endpoint = "/v2/bot/message/push",
                        .body = "{}",
                        .origin = "ev",
                        .created_ms = now,
                        .next_at_ms = now,
                        .deadline_ms = now + 3600000};
    assert_int_equal(store_outbox_add(e->st, &row, &id, err, sizeof err), 0);
    if (finish)
        assert_int_equal(
            store_outbox_finish(e->st, id, OUTBOX_SENT, 200, "r", NULL, now, err, sizeof err), 0);
    return id;
}

/* The daemon's writers leave the WAL to the checkpoint thread: after more
 * than 1000 pages of events the thread has copied it (the metric says so)
 * and no commit had to copy it itself. */
static void checkpoint_thread_copies_the_wal(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = { fx_mirror = { }; }; }", 0);
    assert_int_equal(series_value(e, "\nkizuna_store_checkpoints_total{by=\"commit\"} "), 0);
    static char payload[8200];
    payload[0] = '"';
    memset(payload + 1, 'p', 8190);
    payload[8191] = '"';
    bus_msg m[50];
    char err[256];
    for (int round = 0; round < 24; round++) { /* 1200 events, one a 16 KiB page */
        for (int i = 0; i < 50; i++)
            m[i] = (bus_msg){.shop = "a", .topic = "test.big", .json = payload, .len = 8192};
        assert_int_equal(bus_publish(e->b, m, 50, NULL, err, sizeof err), 0);
    }
    TS_WAIT(series_value(e, "\nkizuna_store_checkpoints_total{by=\"checkpointer\"} ") >= 1, 10000,
            "the checkpoint thread never ran");
    assert_int_equal(series_value(e, "\nkizuna_store_checkpoints_total{by=\"commit\"} "), 0);
    env_close(e);
}

/* kizuna.retention (defaults: events 30 d, sends 90 d): events every
 * instance has handled go once older; one a dead letter keeps and one not
 * yet handled stay. Finished sends go after their retention, a pending one
 * stays. Ids are never handed out again. */
static void retention_deletes_what_is_done(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { fail_topic = \"test.bad\"; fatal = true; };"
                      "  fx_mirror = { }; }; }",
                      0);
    publish(e, "a", "test.one", NULL);
    publish(e, "a", "test.bad", NULL);
    publish(e, "a", "test.two", NULL);
    run(e);
    assert_int_equal(dead_count(e), 1);
    int64_t sent = outbox_row(e, 1), pending_row = outbox_row(e, 0);
    char err[256], topics[256];
    assert_int_equal(bus_prune(e->b, err, sizeof err), 0);
    stored_topics(e, topics, sizeof topics);
    assert_string_equal(topics, "test.one,test.bad,test.two"); /* not old yet */

    clock_advance_ms(31 * 86400000LL);
    publish(e, "a", "test.late", NULL); /* stored, not handled */
    int64_t before;
    assert_int_equal(store_event_max_id(e->st, "a", &before, err, sizeof err), 0);
    clock_advance_ms(31 * 86400000LL);
    assert_int_equal(bus_prune(e->b, err, sizeof err), 0);
    stored_topics(e, topics, sizeof topics);
    assert_string_equal(topics, "test.bad,test.late");
    store_outbox row;
    assert_int_equal(store_outbox_get(e->st, sent, &row, NULL, NULL, NULL, err, sizeof err), 0);

    clock_advance_ms(30 * 86400000LL); /* 92 days after the send */
    assert_int_equal(bus_prune(e->b, err, sizeof err), 0);
    assert_int_equal(store_outbox_get(e->st, sent, &row, NULL, NULL, NULL, err, sizeof err),
                     KZ_ENOTFOUND);
    assert_int_equal(store_outbox_get(e->st, pending_row, &row, NULL, NULL, NULL, err, sizeof err),
                     0);
    assert_int_equal(series_value(e, "\nkizuna_retention_deleted_total{what=\"events\"} "), 2);
    assert_int_equal(series_value(e, "\nkizuna_retention_deleted_total{what=\"sends\"} "), 1);
    publish(e, "a", "test.new", NULL);
    int64_t after;
    assert_int_equal(store_event_max_id(e->st, "a", &after, err, sizeof err), 0);
    assert_true(after > before);
    env_close(e);
}

/* Counter increments nobody reads at once are summed over a batch and
 * written once; a read in the same batch sees them. */
static void held_counters_add_up(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { tally = \"hits\"; read_tally = \"test.read\"; };"
                      "  fx_mirror = { tally = \"t\"; tally_keys = 40; }; }; }",
                      0);
    bus_msg m[4] = {{.shop = "a", .topic = "test.a"},
                    {.shop = "a", .topic = "test.b"},
                    {.shop = "a", .topic = "test.read"},
                    {.shop = "a", .topic = "test.c"}};
    char err[256];
    assert_int_equal(bus_publish(e->b, m, 4, NULL, err, sizeof err), 0);
    run(e); /* one batch */
    assert_int_equal(kv(e, "a", "fx_counter", "hits"), 4);
    assert_int_equal(kv(e, "a", "fx_counter", "tally_seen"), 3); /* a, b and read itself */
    /* 40 counters a call: more than a batch holds, written as it fills */
    assert_int_equal(kv(e, "a", "fx_mirror", "t.0"), 4);
    assert_int_equal(kv(e, "a", "fx_mirror", "t.39"), 4);
    publish(e, "a", "test.d", NULL);
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "hits"), 5);
    assert_int_equal(kv(e, "a", "fx_mirror", "t.17"), 5);
    env_close(e);
}

/* A held increment of a value that is not a number fails when it is
 * written; the batch is run again carefully and the handler gets the error
 * itself, as without holding: its effects go, its batch mates' stay. */
static void held_counter_on_a_non_number_fails_its_handler(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { tally = \"hits\"; };"
                      "  fx_mirror = { }; }; }",
                      0);
    char err[256];
    int64_t id = inst_of(e, "a", "fx_counter")->id;
    assert_int_equal(store_kv_put(e->st, id, "hits", "abc", 3, err, sizeof err), 0);
    bus_msg m[2] = {{.shop = "a", .topic = "test.a"}, {.shop = "a", .topic = "test.b"}};
    assert_int_equal(bus_publish(e->b, m, 2, NULL, err, sizeof err), 0);
    run(e);
    store_failure f;
    assert_int_equal(store_failure_get(e->st, id, &f, err, sizeof err), 0);
    assert_int_equal(f.attempts, 1);
    assert_non_null(strstr(f.error, "ETYPE"));
    assert_int_equal(kv(e, "a", "fx_counter", "count"), -1); /* test.a's own count undone */
    assert_int_equal(kv(e, "a", "fx_mirror", "count"), 2);
    assert_int_equal(counter(e, "kizuna_handler_failures_total", "a", "fx_counter"), 1);
    env_close(e);
}

static void retries_then_dead_then_replay(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { fail_topic = \"test.bad\"; fail_times = 3; }; }; }",
                      0);
    publish(e, "a", "test.bad", NULL);
    publish(e, "a", "test.ok", NULL);
    run(e); /* attempt 1 fails */
    clock_advance_ms(700);
    run(e); /* backoff is 1 s ± 25 %: not yet */
    store_failure f;
    char err[256];
    int64_t id = inst_of(e, "a", "fx_counter")->id;
    assert_int_equal(store_failure_get(e->st, id, &f, err, sizeof err), 0);
    assert_int_equal(f.attempts, 1);
    assert_int_equal(dead_count(e), 0);
    clock_advance_ms(600);
    run(e); /* attempt 2 fails; next backoff 2 s ± 25 % */
    assert_int_equal(store_failure_get(e->st, id, &f, err, sizeof err), 0);
    assert_int_equal(f.attempts, 2);
    assert_true(f.retry_at - clock_now_ms() >= 1500 && f.retry_at - clock_now_ms() <= 2500);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), -1);
    clock_advance_ms(2500);
    run(e); /* attempt 3 fails: dead; the instance moves on to test.ok */
    assert_int_equal(dead_count(e), 1);
    assert_int_equal(store_failure_get(e->st, id, &f, err, sizeof err), KZ_ENOTFOUND);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 1);
    /* replay: the fixture now succeeds (it fails only 3 times) */
    assert_int_equal(store_dead_replay(e->st, 1, err, sizeof err), 0);
    run(e);
    assert_int_equal(dead_count(e), 0);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 2);
    env_close(e);
}

/* A replay asked for while the virtual clock stands still (an operator's
 * `kizuna events --replay` on a demo or a test daemon) is picked up by the
 * running workers in real time, not when the clock next moves. */
static void replay_on_a_still_virtual_clock(void **state)
{
    (void)state;
    env *e = env_open(
        "{ id = \"a\"; plugins = {"
        "  fx_counter = { fail_topic = \"test.bad\"; fail_times = 1; fatal = true; }; }; }",
        0);
    publish(e, "a", "test.bad", NULL);
    run(e);
    assert_int_equal(dead_count(e), 1);
    char err[256];
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    assert_int_equal(store_dead_replay(e->st, 1, err, sizeof err), 0);
    TS_WAIT(dead_count(e) == 0, 5000, "replay not picked up with the virtual clock standing still");
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 1);
    env_close(e);
}

static void fatal_is_dead_at_once(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { fail_topic = \"test.bad\"; fatal = true; }; }; }",
                      0);
    publish(e, "a", "test.bad", NULL);
    publish(e, "a", "test.ok", NULL);
    run(e);
    assert_int_equal(dead_count(e), 1);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 1);
    env_close(e);
}

static void publish_refuses_bad_input(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = { fx_counter = { }; }; }", 0);
    char err[256];
    int64_t before, after;
    assert_int_equal(store_event_max_id(e->st, "a", &before, err, sizeof err), 0);
    bus_msg bad_shop = {.shop = "nope", .topic = "test.x"};
    assert_int_equal(bus_publish(e->b, &bad_shop, 1, NULL, err, sizeof err), KZ_EINVAL);
    assert_string_equal(err, "unknown shop 'nope'");
    bus_msg two[2] = {{.shop = "a", .topic = "test.x"}, {.shop = "a", .topic = "bad topic"}};
    assert_int_equal(bus_publish(e->b, two, 2, NULL, err, sizeof err), KZ_EINVAL);
    bus_msg bad_json = {.shop = "a", .topic = "test.x", .json = "{\"a\":", .len = 5};
    assert_int_equal(bus_publish(e->b, &bad_json, 1, NULL, err, sizeof err), KZ_EINVAL);
    /* only JSON as RFC 8259 writes it: not a NUL inside, bytes after the
     * value, a trailing comma, a raw control character in a string, single
     * quotes, NaN, a comment (json-c alone let the last five through) */
    static const struct {
        const char *json;
        size_t len;
    } refused[] = {{"{}\0{}", 5},  {"{\"a\":1} x", 9}, {"[1,]", 4},     {"\"a\tb\"", 5},
                   {"{'a':1}", 7}, {"[NaN]", 5},       {"/*c*/[1]", 8}, {"", 0}};
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
        bus_msg m = {
            .shop = "a", .topic = "test.x", .json = refused[k].json, .len = refused[k].len};
        if (bus_publish(e->b, &m, 1, NULL, err, sizeof err) != KZ_EINVAL)
            fail_msg("payload %zu was accepted", k);
        assert_non_null(strstr(err, "not JSON"));
    }
    assert_int_equal(store_event_max_id(e->st, "a", &after, err, sizeof err), 0);
    assert_int_equal(after, before); /* nothing of a refused batch is stored */
    /* well-formed values of every shape pass (a bare number needed json-c
     * a terminator; UTF-8 and escapes as LINE sends them) */
    static const char *const ok[] = {"42", "\"x\"", "[]", " {\"a\":[1,2.5e3,null,true]} ",
                                     "{\"t\":\"\u304a\\u304a\\n\"}"};
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        bus_msg m = {
            .shop = "a", .topic = "test.ok", .uid = ok[k], .json = ok[k], .len = strlen(ok[k])};
        if (bus_publish(e->b, &m, 1, NULL, err, sizeof err) != 0)
            fail_msg("payload %s refused: %s", ok[k], err);
    }
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 5);
    /* a redelivered id is accepted once and handled once */
    bus_msg dup[2] = {{.shop = "a", .uid = "evt-1", .topic = "test.x"},
                      {.shop = "a", .uid = "evt-1", .topic = "test.x"}};
    int64_t ids[2];
    assert_int_equal(bus_publish(e->b, dup, 2, ids, err, sizeof err), 0);
    assert_true(ids[0] > 0);
    assert_int_equal(ids[1], 0);
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 6);
    env_close(e);
}

static void shop_open_failure_is_scoped(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = { fx_counter = { }; fx_mirror = { }; }; },"
                      "{ id = \"b\"; plugins = { fx_counter = { fail_open = true; };"
                      "                          fx_mirror = { }; }; }",
                      1);
    assert_int_equal(bus_instance_count(e->b), 4 + 4); /* + core.friends, core.broadcast */
    assert_false(inst_of(e, "b", "fx_counter")->enabled);
    assert_true(inst_of(e, "a", "fx_counter")->enabled);
    assert_true(inst_of(e, "b", "fx_mirror")->enabled);
    publish(e, "a", "test.x", NULL);
    publish(e, "b", "test.x", NULL);
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 1);
    assert_int_equal(kv(e, "b", "fx_mirror", "count"), 1);
    assert_int_equal(kv(e, "b", "fx_counter", "count"), -1);
    /* the refusal names the shop, the plugin and the setting's line */
    char err[1024];
    bus *b2;
    ts_bus_new(&e->a, &b2);
    const cfg_shop *shop_b = &e->a.c->shops[1];
    const plugin *p = inst_of(e, "b", "fx_counter")->p;
    assert_int_equal(
        bus_add_instance(b2, p, "b", NULL, shop_b->plugins[0].setting, err, sizeof err), KZ_EFAIL);
    char want[512];
    snprintf(want, sizeof want,
             "shop 'b': plugin 'fx_counter': shop_open failed: %s:5: shop 'b': plugin "
             "'fx_counter': fail_open: told to fail shop_open",
             e->conf);
    assert_string_equal(err, want);
    bus_free(b2);
    env_close(e);
}

/* ---- LINE sends (host side of the outbox) ---- */

static int64_t pending_sends(env *e)
{
    int64_t n = -1;
    char err[256];
    assert_int_equal(store_outbox_pending(e->st, &n, err, sizeof err), 0);
    return n;
}

#define USER1 "U0123456789abcdef0123456789abcdef"

static void publish_as(env *e, const char *topic, const char *user, const char *json)
{
    char err[256];
    bus_msg m = {.shop = "a", .topic = topic, .user = user, .json = json, .len = strlen(json)};
    if (bus_publish(e->b, &m, 1, NULL, err, sizeof err) != 0)
        fail_msg("publish: %s", err);
}

static void sends_are_queued_with_the_event(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { push_text = \"hi\"; fail_topic = \"test.bad\"; }; }; }",
                      0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    assert_int_equal(pending_sends(e), 1);
    store_outbox row;
    char err[256];
    assert_int_equal(store_outbox_get(e->st, 1, &row, NULL, NULL, NULL, err, sizeof err), 0);
    assert_string_equal(row.endpoint, "/v2/bot/message/push");
    assert_string_equal(row.user, USER1);
    assert_non_null(row.retry_key);
    assert_int_equal(strlen(row.retry_key), 36);
    assert_non_null(strstr(row.body, "\"to\":\"" USER1 "\""));
    assert_non_null(strstr(row.body, "\"messages\":[{\"type\":\"text\",\"text\":\"hi\"}]"));
    /* a failing handler's send is rolled back with everything else */
    publish_as(e, "test.bad", USER1, "{}");
    run(e);
    assert_int_equal(pending_sends(e), 1);
    env_close(e);
}

/* The body of outbox row id, copied (caller frees). */
static char *outbox_body(env *e, int64_t id)
{
    store_outbox row;
    char err[256];
    assert_int_equal(store_outbox_get(e->st, id, &row, NULL, NULL, NULL, err, sizeof err), 0);
    return strdup(row.body);
}

#define USER2 "U00000000000000000000000000000002"

/* Bodies are LINE's request shapes in json-c's compact rendering of the
 * plugin's messages (spaces out, "\/" and "\u00e9" as plain text), the
 * same for every kind; messages checked once and reused still render as
 * they were passed. */
static void send_bodies_are_compact_request_json(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { push_json = "
                      "\"[ {\\\"type\\\" : \\\"text\\\", \\\"text\\\": "
                      "\\\"a\\\\/b \\\\u00e9\\\"} ]\"; };"
                      "  fx_mirror = { push_text = \"hi\"; silent = true; reply_text = \"re\"; };"
                      "}; }",
                      0);
    publish_as(e, "test.ok", USER1, "{\"replyToken\":\"tok-1\"}");
    publish_as(e, "test.ok", USER2, "{}");
    run(e);
    assert_int_equal(pending_sends(e), 5);
    const char *want[] = {
        "{\"messages\":[{\"type\":\"text\",\"text\":\"a/b \u00e9\"}],\"to\":\"" USER1 "\"}",
        "{\"messages\":[{\"type\":\"text\",\"text\":\"re\"}],\"replyToken\":\"tok-1\"}",
        "{\"messages\":[{\"type\":\"text\",\"text\":\"hi\"}],\"notificationDisabled\":true,"
        "\"to\":\"" USER1 "\"}",
        "{\"messages\":[{\"type\":\"text\",\"text\":\"a/b \u00e9\"}],\"to\":\"" USER2 "\"}",
        "{\"messages\":[{\"type\":\"text\",\"text\":\"hi\"}],\"notificationDisabled\":true,"
        "\"to\":\"" USER2 "\"}",
    };
    for (int64_t id = 1; id <= 5; id++) {
        char *body = outbox_body(e, id);
        assert_string_equal(body, want[id - 1]);
        free(body);
    }
    env_close(e);
    e = env_open(
        "{ id = \"a\"; plugins = { fx_counter = { push_text = \"x\"; multicast = 2; }; }; }", 0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    char *body = outbox_body(e, 1);
    assert_string_equal(body, "{\"messages\":[{\"type\":\"text\",\"text\":\"x\"}],\"to\":["
                              "\"U00000000000000000000000000000000\","
                              "\"U00000000000000000000000000000001\"]}");
    free(body);
    env_close(e);
}

static void bad_messages_are_refused_before_queueing(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { push_json = "
                      "\"[{\\\"type\\\":\\\"txt\\\",\\\"text\\\":\\\"x\\\"}]\"; }; }; }",
                      0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "send_rc"), KZ_EINVAL);
    assert_int_equal(pending_sends(e), 0);
    env_close(e);
}

static void multicast_is_split_and_standby_never_sends(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { push_text = \"sale\"; multicast = 1201; }; }; }",
                      0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    assert_int_equal(pending_sends(e), 3); /* 500 + 500 + 201, one retry key each */
    publish_as(e, "test.standby", USER1, "{\"mode\":\"standby\"}");
    run(e);
    assert_int_equal(pending_sends(e), 3);
    assert_int_equal(kv(e, "a", "fx_counter", "count"), 2); /* handled, just not sent */
    /* the same mode spelled with a JSON escape, and a payload that only
     * mentions the word */
    publish_as(e, "test.standby", USER1, "{\"mode\":\"st\\u0061ndby\"}");
    run(e);
    assert_int_equal(pending_sends(e), 3);
    publish_as(e, "test.ok", USER1, "{\"mode\":\"active\",\"note\":\"standby\"}");
    run(e);
    assert_int_equal(pending_sends(e), 6);
    env_close(e);
}

static int collect_row(void *arg, const store_outbox *row)
{
    int64_t *ids = arg;
    for (int k = 0; k < 8; k++)
        if (ids[k] == 0) {
            ids[k] = row->id;
            break;
        }
    return 0;
}

/* A user listed twice receives once (as from LINE): 1,201 listings of 600
 * users are two requests, 500 + 100, each user in one of them. */
static void multicast_sends_each_user_once(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = {"
                      "  fx_counter = { push_text = \"sale\"; multicast = 1201; distinct = 600; };"
                      "}; }",
                      0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    assert_int_equal(pending_sends(e), 2);
    int64_t ids[8] = {0};
    char err[256];
    assert_int_equal(store_outbox_due(e->st, INT64_MAX, 8, collect_row, ids, err, sizeof err), 0);
    size_t recipients = 0;
    for (int k = 0; k < 2; k++) {
        char *body = NULL;
        size_t len;
        assert_int_equal(store_outbox_body(e->st, ids[k], &body, &len, err, sizeof err), 0);
        for (const char *p = body; (p = strstr(p, "\"U")) != NULL; p++)
            recipients++;
        free(body);
    }
    assert_int_equal(ids[2], 0);
    assert_int_equal(recipients, 600);
    env_close(e);
}

/* A plugin built against the frozen ABI 1.1 headers sends through this host. */
static void frozen_abi_1_1_plugin_sends(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = { fx_frozen_v1_1 = { }; }; }", 0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    assert_int_equal(pending_sends(e), 1);
    store_outbox row;
    char err[256];
    assert_int_equal(store_outbox_get(e->st, 1, &row, NULL, NULL, NULL, err, sizeof err), 0);
    assert_non_null(strstr(row.body, "frozen 1.1"));
    env_close(e);
}

/* A plugin built against the frozen ABI 1.2 headers registers its route and
 * queues an API call through this host. */
static void frozen_abi_1_2_plugin_calls(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = { fx_frozen_v1_2 = { }; }; }", 0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    assert_int_equal(pending_sends(e), 1);
    store_outbox row;
    char err[256];
    assert_int_equal(store_outbox_get(e->st, 1, &row, NULL, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(row.kind, OUTBOX_CALL);
    assert_string_equal(row.endpoint, "/v2/bot/profile/" USER1);
    assert_string_equal(row.tag, "frozen 1.2");
    env_close(e);
}

/* A plugin built against the frozen ABI 1.3 headers tags through this host,
 * with the shop-local weekday (T0 is a Wednesday in Tokyo). */
static void frozen_abi_1_3_plugin_tags(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = { fx_frozen_v1_3 = { }; }; }", 0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    char err[256];
    store_friend f;
    assert_int_equal(store_friend_get(e->st, "a", USER1, &f, err, sizeof err), 0);
    assert_int_equal(store_friend_tag_remove(e->st, "a", USER1, "frozen-w3", err, sizeof err), 0);
    env_close(e);
}

/* A plugin built against the frozen ABI 1.4 headers sets a timer through
 * this host; it fires once, a minute later on the virtual clock. */
static void frozen_abi_1_4_plugin_times(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = { fx_frozen_v1_4 = { }; }; }", 0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    assert_int_equal(kv(e, "a", "fx_frozen_v1_4", "fired"), -1);
    clock_advance_ms(60001);
    run(e);
    assert_int_equal(kv(e, "a", "fx_frozen_v1_4", "fired"), 1);
    clock_advance_ms(600000);
    run(e);
    assert_int_equal(kv(e, "a", "fx_frozen_v1_4", "fired"), 1);
    env_close(e);
}

/* A plugin built against the frozen ABI 1.5 headers: shop-local 10:00
 * tomorrow through local_to_ms (T0 is Wednesday 20:06 in Tokyo, so
 * Thursday 10:00 JST), and a promotional push that, in a shop without a
 * delivery policy, goes to the outbox at once. */
static void frozen_abi_1_5_plugin_times_and_promotes(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"a\"; plugins = { fx_frozen_v1_5 = { }; }; }", 0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    assert_int_equal(kv(e, "a", "fx_frozen_v1_5", "due"), 1795050000000LL);
    assert_int_equal(kv(e, "a", "fx_frozen_v1_5", "queued"), 1);
    env_close(e);
}

/* ---- other LINE API calls (line_call) ---- */

static env *call_env(const char *call, const char *body, int users)
{
    char shops[1024];
    snprintf(shops, sizeof shops,
             "{ id = \"a\"; plugins = { fx_counter = { call = \"%s\"; call_body = \"%s\";"
             " call_users = %d; fail_topic = \"test.bad\"; }; }; }",
             call, body, users);
    return env_open(shops, 0);
}

static void calls_are_queued_with_the_event(void **state)
{
    (void)state;
    env *e = call_env("profile", "", 0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "call_rc"), 0);
    assert_int_equal(pending_sends(e), 1);
    store_outbox row;
    char err[256];
    assert_int_equal(store_outbox_get(e->st, 1, &row, NULL, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(row.kind, OUTBOX_CALL);
    assert_string_equal(row.method, "GET");
    assert_string_equal(row.endpoint, "/v2/bot/profile/" USER1);
    assert_string_equal(row.user, USER1);
    assert_string_equal(row.plugin, "fx_counter");
    assert_string_equal(row.tag, "profile");
    assert_null(row.retry_key); /* LINE takes retry keys on sends only */
    assert_int_equal(row.body_len, 0);
    /* a failing handler's call is rolled back with everything else */
    publish_as(e, "test.bad", USER1, "{}");
    run(e);
    assert_int_equal(pending_sends(e), 1);
    env_close(e);
}

/* Bulk link for 1201 users: three requests of 500, 500 and 201 ids, each
 * with the plugin's richMenuId. */
static void bulk_calls_are_split_in_500s(void **state)
{
    (void)state;
    env *e = call_env("bulk_link", "", 1201);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "call_rc"), 0);
    assert_int_equal(pending_sends(e), 3);
    static const size_t want[] = {500, 500, 201};
    char err[256];
    for (int64_t id = 1; id <= 3; id++) {
        store_outbox row;
        assert_int_equal(store_outbox_get(e->st, id, &row, NULL, NULL, NULL, err, sizeof err), 0);
        assert_string_equal(row.endpoint, "/v2/bot/richmenu/bulk/link");
        json_object *body = json_tokener_parse(row.body), *ids, *menu;
        assert_non_null(body);
        assert_true(json_object_object_get_ex(body, "userIds", &ids));
        assert_int_equal(json_object_array_length(ids), want[id - 1]);
        assert_true(json_object_object_get_ex(body, "richMenuId", &menu));
        assert_string_equal(json_object_get_string(menu),
                            "richmenu-0123456789abcdef0123456789abcdef");
        json_object_put(body);
    }
    env_close(e);
}

/* A rich menu image: a binary body kept byte for byte, for api-data. */
static void binary_call_body_is_kept(void **state)
{
    (void)state;
    env *e = call_env("upload", "", 0);
    publish_as(e, "test.ok", USER1, "{}");
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "call_rc"), 0);
    store_outbox row;
    char err[256];
    assert_int_equal(store_outbox_get(e->st, 1, &row, NULL, NULL, NULL, err, sizeof err), 0);
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
    assert_int_equal(row.body_len, sizeof png);
    assert_memory_equal(row.body, png, sizeof png);
    assert_string_equal(row.content_type, "image/png");
    assert_int_equal(row.data_api, 1);
    assert_string_equal(row.endpoint,
                        "/v2/bot/richmenu/richmenu-0123456789abcdef0123456789abcdef/content");
    env_close(e);
}

/* Each refused call leaves the event handled and nothing queued. */
static void bad_calls_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *call, *body;
        int rc;
    } cases[] = {
        {"POST /v2/bot/message/push", "{}", KZ_EINVAL},     /* line_send's job */
        {"POST /v2/bot/message/push?x=1", "{}", KZ_EINVAL}, /* with a query too */
        {"GET /v2/bot/../oauth/token", "", KZ_EINVAL},      /* climbs out */
        {"GET /v1/oauth/accessToken", "", KZ_EINVAL},       /* not the bot API */
        {"GET /v2/bot/profile/x", "{}", KZ_EINVAL},         /* GET with a body */
        {"POST /v2/bot/richmenu", "{not json", KZ_EINVAL},  /* bad JSON */
        {"PATCH /v2/bot/richmenu", "{}", KZ_EINVAL},        /* method */
        {"GET /v2/bot/profile/a<b", "", KZ_EINVAL},         /* characters */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        env *e = call_env(cases[i].call, cases[i].body, 0);
        publish_as(e, "test.ok", USER1, "{}");
        run(e);
        if (kv(e, "a", "fx_counter", "call_rc") != cases[i].rc)
            fail_msg("%s: rc %ld", cases[i].call, kv(e, "a", "fx_counter", "call_rc"));
        assert_int_equal(pending_sends(e), 0);
        env_close(e);
    }
    /* standby: handled, not called */
    env *e = call_env("profile", "", 0);
    publish_as(e, "test.standby", USER1, "{\"mode\":\"standby\"}");
    run(e);
    assert_int_equal(kv(e, "a", "fx_counter", "call_rc"), 0);
    assert_int_equal(pending_sends(e), 0);
    env_close(e);
}

/* ---- ordering under concurrent publishers ---- */

#define PUBLISHERS 4
#define PER_SHOP 300
static const char *const order_shops[] = {"s1", "s2", "s3"};

static void *publisher(void *arg)
{
    env *e = ((void **)arg)[0];
    int pub = (int)(intptr_t)((void **)arg)[1];
    unsigned seed = (unsigned)pub * 7919u + 1;
    int seq[3] = {0, 0, 0};
    char json[PUBLISHERS * 20][48];
    bus_msg m[PUBLISHERS * 20];
    char err[256];
    while (seq[0] < PER_SHOP || seq[1] < PER_SHOP || seq[2] < PER_SHOP) {
        int n = 1 + (int)(rand_r(&seed) % 16), k = 0;
        for (; k < n; k++) {
            int s = (int)(rand_r(&seed) % 3);
            if (seq[s] >= PER_SHOP)
                break;
            snprintf(json[k], sizeof json[k], "{\"pub\":%d,\"seq\":%d}", pub, seq[s]++);
            m[k] = (bus_msg){.shop = order_shops[s],
                             .topic = "test.seq",
                             .json = json[k],
                             .len = strlen(json[k])};
        }
        if (k > 0 && bus_publish(e->b, m, (size_t)k, NULL, err, sizeof err) != 0)
            return "publish failed";
    }
    return NULL;
}

static int all_caught_up(env *e)
{
    char err[256];
    for (size_t i = 0; i < bus_instance_count(e->b); i++) {
        const bus_instance *in = bus_instance_at(e->b, i);
        int64_t cursor, max;
        if (store_cursor_get(e->st, in->id, &cursor, err, sizeof err) != 0 ||
            store_event_max_id(e->st, in->shop_id, &max, err, sizeof err) != 0 || cursor < max)
            return 0;
    }
    return 1;
}

static void ordered_per_shop_under_concurrency(void **state)
{
    (void)state;
    env *e = env_open("{ id = \"s1\"; plugins = { fx_counter = { check_order = true; };"
                      "                           fx_mirror = { check_order = true; }; }; },"
                      "{ id = \"s2\"; plugins = { fx_counter = { check_order = true; }; }; },"
                      "{ id = \"s3\"; plugins = { fx_counter = { check_order = true; };"
                      "                           fx_mirror = { check_order = true; }; }; }",
                      0);
    clock_use_real();
    char err[256];
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    pthread_t th[PUBLISHERS];
    void *args[PUBLISHERS][2];
    for (int p = 0; p < PUBLISHERS; p++) {
        args[p][0] = e;
        args[p][1] = (void *)(intptr_t)p;
        assert_int_equal(pthread_create(&th[p], NULL, publisher, args[p]), 0);
    }
    for (int p = 0; p < PUBLISHERS; p++) {
        void *res;
        pthread_join(th[p], &res);
        assert_null(res);
    }
    /* wait for the workers (bounded: a hang fails the test, never passes it) */
    TS_WAIT(all_caught_up(e), 60000, "workers not caught up after 60 s");
    bus_stop(e->b);
    for (size_t i = 0; i < bus_instance_count(e->b); i++) {
        const bus_instance *in = bus_instance_at(e->b, i);
        if (strncmp(in->p->name, "core.", 5) == 0)
            continue; /* the core's instances keep no counters */
        assert_int_equal(kv(e, in->shop_id, in->p->name, "count"), PUBLISHERS * PER_SHOP);
        assert_int_equal(kv(e, in->shop_id, in->p->name, "order_errors"), -1);
        assert_int_equal(kv(e, in->shop_id, in->p->name, "concurrent"), -1);
        assert_int_equal(kv(e, in->shop_id, in->p->name, "doubles"), -1);
    }
    env_close(e);
}

int main(void)
{
    log_set_level(KZ_LOG_ERROR + 1); /* the failures below are expected; keep output short */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(delivers_by_subscription),
        cmocka_unit_test(failing_handler_rolls_back),
        cmocka_unit_test(one_failure_keeps_batch_mates),
        cmocka_unit_test(backlog_commits_once_and_redoes_whole),
        cmocka_unit_test(waiting_writer_ends_the_transaction_early),
        cmocka_unit_test(retention_deletes_what_is_done),
        cmocka_unit_test(checkpoint_thread_copies_the_wal),
        cmocka_unit_test(held_counters_add_up),
        cmocka_unit_test(held_counter_on_a_non_number_fails_its_handler),
        cmocka_unit_test(retries_then_dead_then_replay),
        cmocka_unit_test(fatal_is_dead_at_once),
        cmocka_unit_test(replay_on_a_still_virtual_clock),
        cmocka_unit_test(publish_refuses_bad_input),
        cmocka_unit_test(shop_open_failure_is_scoped),
        cmocka_unit_test(ordered_per_shop_under_concurrency),
        cmocka_unit_test(sends_are_queued_with_the_event),
        cmocka_unit_test(send_bodies_are_compact_request_json),
        cmocka_unit_test(bad_messages_are_refused_before_queueing),
        cmocka_unit_test(multicast_is_split_and_standby_never_sends),
        cmocka_unit_test(multicast_sends_each_user_once),
        cmocka_unit_test(frozen_abi_1_1_plugin_sends),
        cmocka_unit_test(frozen_abi_1_2_plugin_calls),
        cmocka_unit_test(frozen_abi_1_3_plugin_tags),
        cmocka_unit_test(frozen_abi_1_4_plugin_times),
        cmocka_unit_test(frozen_abi_1_5_plugin_times_and_promotes),
        cmocka_unit_test(calls_are_queued_with_the_event),
        cmocka_unit_test(bulk_calls_are_split_in_500s),
        cmocka_unit_test(binary_call_body_is_kept),
        cmocka_unit_test(bad_calls_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
