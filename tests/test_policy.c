/*
 * The delivery policy (core/policy.c, docs/delivery.md): tz_to_ms around
 * DST, quiet hours per weekday, config errors with file:line, then
 * promotional sends queued by the fx_promo fixture on real parts — config,
 * store, bus (handlers run with bus_run_until_idle), the sender and the
 * sandbox on loopback with its own store — on a virtual clock that the
 * tests move. What LINE received is read back from the sandbox's inboxes;
 * waits are bounded polls for the sender thread, never sleeps standing in
 * for time.
 *
 * Shop `a` lives in Asia/Tokyo with quiet hours mon-fri 21:00–09:00 and
 * sat,sun 20:00–10:00, caps day 2 / week 3, max_defer 3d.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <json-c/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "metrics.h"
#include "payload.h"
#include "policy.h"
#include "sandbox.h"
#include "sender.h"
#include "store.h"
#include "support.h"
#include "tz.h"

#define U1 "U1111111111111111111111111111111a"
#define U2 "U2222222222222222222222222222222b"
#define U3 "U3333333333333333333333333333333c"

#define MIN_MS 60000LL
#define HOUR_MS 3600000LL
#define DAY_MS 86400000LL
/* Monday 2026-11-23 00:00 in Tokyo (UTC+9, no DST) */
#define MON0 (1795395600000LL - 10 * HOUR_MS)
/* day 0 = that Monday, … 6 = Sunday, 7 = the next Monday */
#define JST(day, h, m) (MON0 + (day)*DAY_MS + (h)*HOUR_MS + (m)*MIN_MS)

#define DELIVERY                                                                                   \
    "  delivery = { quiet_hours = ( { days = \"mon-fri\"; from = \"21:00\"; to = \"09:00\"; },\n"  \
    "                               { days = \"sat,sun\"; from = \"20:00\"; to = \"10:00\"; } "    \
    ");\n"                                                                                         \
    "               caps = { day = 2; week = 3; }; max_defer = \"3d\"; };\n"

typedef struct env {
    char dir[64], conf[128], sbx_url[128], base[64];
    app a;
    bus *b;
    sandbox *sb;
    sender *snd;
    metrics *m;
    store *st;  /* the test's connection to kizuna's store */
    store *sbx; /* and to the sandbox's */
    cfg *sbx_cfg;
} env;

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    ts_tmpdir(e->dir, sizeof e->dir, "policy");
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    ts_write_file(e->conf,
                  "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; durability = "
                  "\"normal\"; plugin_path = \"%s\"; };\n"
                  "shops = ( { id = \"a\"; timezone = \"Asia/Tokyo\";\n"
                  "  line = { channel_secret = \"sec\"; access_token = \"tok\"; api = "
                  "\"sandbox\"; };\n"
                  "  plugins = { fx_promo = { }; };\n" DELIVERY "},\n"
                  "  { id = \"b\"; timezone = \"Asia/Tokyo\";\n"
                  "  line = { channel_secret = \"secb\"; access_token = \"tokb\"; api = "
                  "\"sandbox\"; };\n"
                  "  plugins = { fx_promo = { }; }; } );\n",
                  e->dir, KZ_POLICY_FIXTURES);
    snprintf(e->sbx_url, sizeof e->sbx_url, "sqlite:%s/sandbox.db", e->dir);
    *state = e;
    return 0;
}

/* The kizuna side: config, bus with its instances, sender. */
static void start_kizuna(env *e)
{
    char err[512];
    ts_app_prepare(&e->a, e->conf);
    ts_bus_new(&e->a, &e->b);
    assert_true(app_open_instances(&e->a, e->b) >= 0);
    sender_options o = {.store_url = e->a.c->store_url,
                        .sync_mode = STORE_SYNC_NORMAL,
                        .c = e->a.c,
                        .sandbox_base = e->base,
                        .b = e->b,
                        .m = e->m,
                        .retry_initial_ms = 20,
                        .retry_max_ms = 100,
                        .timeout_ms = 5000,
                        .poll_ms = 10};
    if (sender_start(&o, &e->snd, err, sizeof err) != 0)
        fail_msg("sender_start: %s", err);
    e->st = ts_store_open(e->a.c->store_url, STORE_SYNC_NORMAL);
}

static void stop_kizuna(env *e)
{
    sender_stop(e->snd);
    bus_free(e->b);
    store_close(e->st);
    app_free(&e->a);
    e->snd = NULL;
    e->b = NULL;
    e->st = NULL;
}

/* Everything, with the virtual clock at t. */
static void start(env *e, int64_t t)
{
    clock_use_virtual(t);
    assert_int_equal(metrics_new(&e->m), 0);
    /* the sandbox's own copy of the shops: it outlives kizuna's restarts */
    diag d = {0};
    assert_int_equal(cfg_load(e->conf, &e->sbx_cfg, &d), 0);
    diag_free(&d);
    sandbox_options so = {.listen = "127.0.0.1:0",
                          .store_url = e->sbx_url,
                          .c = e->sbx_cfg,
                          .webhook_base = "http://127.0.0.1:1"};
    ts_sandbox_start(&so, &e->sb, e->base, sizeof e->base);
    start_kizuna(e);
    e->sbx = ts_store_open(e->sbx_url, STORE_SYNC_NORMAL);
}

static int teardown(void **state)
{
    env *e = *state;
    if (e->snd != NULL || e->b != NULL)
        stop_kizuna(e);
    if (e->sb != NULL)
        sandbox_stop(e->sb);
    if (e->sbx != NULL)
        store_close(e->sbx);
    if (e->m != NULL)
        metrics_free(e->m);
    cfg_free(e->sbx_cfg);
    ts_rmdir(e->dir);
    clock_use_real();
    free(e);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

/* Publishes one test.op event for fx_promo, handles it, returns the code
 * the slot gave; *outbox (may be NULL) gets the first row's id. */
static long send_op_to(env *e, const char *shop, const char *json, long *outbox)
{
    char err[256];
    bus_msg m = {.shop = shop, .topic = "test.op", .json = json, .len = strlen(json)};
    if (bus_publish(e->b, &m, 1, NULL, err, sizeof err) != 0)
        fail_msg("publish: %s", err);
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
    sender_wake(e->snd);
    int64_t inst = ts_instance(e->b, shop, "fx_promo")->id;
    if (outbox != NULL)
        *outbox = ts_kv_long(e->st, inst, "outbox", -1);
    return ts_kv_long(e->st, inst, "rc", -99);
}

static long send_op(env *e, const char *json, long *outbox)
{
    return send_op_to(e, "a", json, outbox);
}

static void promo(env *e, const char *user, const char *text, int pri, int drop)
{
    char json[256];
    snprintf(json, sizeof json,
             "{\"op\":\"push\",\"to\":\"%s\",\"text\":\"%s\",\"promo\":\"1\",\"pri\":\"%d\","
             "\"drop\":\"%d\"}",
             user, text, pri, drop);
    assert_int_equal(send_op(e, json, NULL), 0);
}

static int inbox_n(env *e, const char *user)
{
    ts_inbox in;
    return ts_inbox_get(e->sbx, "a", user, &in);
}

static ts_inbox inbox_of(env *e, const char *user)
{
    ts_inbox in;
    ts_inbox_get(e->sbx, "a", user, &in);
    return in;
}

typedef struct held {
    int n;
    int64_t first_release;
    int first_reason;
    char tags[256];
} held;

static int note_held(void *arg, const store_policy_held *h)
{
    held *hd = arg;
    if (hd->n++ == 0) {
        hd->first_release = h->release_ms;
        hd->first_reason = h->reason;
    }
    strcat(hd->tags, h->send.tag ? h->send.tag : "-");
    strcat(hd->tags, " ");
    return 0;
}

static held held_of(env *e, const char *user)
{
    held hd = {0};
    char err[256];
    if (store_policy_held_of(e->st, "a", user, note_held, &hd, err, sizeof err) != 0)
        fail_msg("held_of: %s", err);
    return hd;
}

static int64_t pending(env *e)
{
    int64_t n = -1;
    assert_int_equal(store_outbox_pending(e->st, &n, NULL, 0), 0);
    return n;
}

/* Waits until the sender has sent everything queued. */
static void drain(env *e)
{
    TS_WAIT(pending(e) == 0, 8000, "outbox rows still pending");
}

static void advance_to(int64_t t)
{
    int64_t now = clock_now_ms();
    assert_true(t >= now);
    clock_advance_ms(t - now);
}

/* Waits until /metrics shows line (refreshed every second by the sender). */
static void expect_metric(env *e, const char *line)
{
    char *text = NULL;
    int64_t until = ts_mono_ms() + 5000;
    for (;;) {
        size_t len;
        text = metrics_render(e->m, &len);
        if (text != NULL && strstr(text, line) != NULL)
            break;
        if (ts_mono_ms() > until)
            fail_msg("metric line '%s' not in:\n%s", line, text ? text : "(null)");
        free(text);
        ts_nap_ms(20);
    }
    free(text);
}

/* ---- time ------------------------------------------------------------------- */

static int64_t to_ms(const char *zone, int y, int mo, int d, int h, int mi)
{
    kz_local_time lt = {.year = y, .month = mo, .day = d, .hour = h, .minute = mi};
    int64_t ms = 0;
    assert_int_equal(tz_to_ms(zone, &lt, &ms), 0);
    return ms;
}

static void test_tz_to_ms(void **state)
{
    (void)state;
    assert_int_equal(to_ms("Asia/Tokyo", 2026, 11, 23, 10, 0), 1795395600000LL);
    /* days and months roll over */
    assert_int_equal(to_ms("Asia/Tokyo", 2026, 11, 31, 0, 0),
                     to_ms("Asia/Tokyo", 2026, 12, 1, 0, 0));
    assert_int_equal(to_ms("Asia/Tokyo", 2026, 13, 1, 0, 0), to_ms("Asia/Tokyo", 2027, 1, 1, 0, 0));
    assert_int_equal(to_ms("Asia/Tokyo", 2026, 11, 0, 0, 0),
                     to_ms("Asia/Tokyo", 2026, 10, 31, 0, 0));
    /* Berlin springs forward 2026-03-29 02:00 → 03:00: 02:30 does not exist
     * and moves forward by the gap, to 03:30 CEST (01:30 UTC) */
    assert_int_equal(to_ms("Europe/Berlin", 2026, 3, 29, 2, 30), 1774747800000LL);
    assert_int_equal(to_ms("Europe/Berlin", 2026, 3, 29, 3, 30), 1774747800000LL);
    /* and falls back 2026-10-25 03:00 → 02:00: 02:30 happens twice, the
     * earlier (CEST, 00:30 UTC) is taken */
    assert_int_equal(to_ms("Europe/Berlin", 2026, 10, 25, 2, 30), 1792888200000LL);
    assert_int_equal(to_ms("Europe/Berlin", 2026, 10, 25, 1, 30), 1792888200000LL - HOUR_MS);
    assert_int_equal(tz_to_ms("Asia/Tokyo", NULL, &(int64_t){0}), KZ_EINVAL);
}

/* Quiet hours in a zone with DST: a window 02:30–05:00 on the night Berlin
 * springs forward starts at 03:30 (02:30 does not exist); on the night it
 * falls back, 01:00–02:30 ends at the first 02:30. */
static void test_quiet_hours_dst(void **state)
{
    (void)state;
    const char *z = "Europe/Berlin";
    cfg_quiet spring = {.days = 0x7f, .from_min = 150, .to_min = 300};
    cfg_delivery dv = {.enabled = 1, .quiet = &spring, .nquiet = 1};
    int64_t t = to_ms(z, 2026, 3, 29, 3, 0); /* 03:00 CEST: before the moved start */
    assert_int_equal(policy_open_at(&dv, z, t), t);
    t = to_ms(z, 2026, 3, 29, 3, 30);
    assert_int_equal(policy_open_at(&dv, z, t), to_ms(z, 2026, 3, 29, 5, 0));
    cfg_quiet autumn = {.days = 0x7f, .from_min = 60, .to_min = 150};
    dv.quiet = &autumn;
    t = to_ms(z, 2026, 10, 25, 2, 0); /* the first 02:00 (CEST) */
    assert_int_equal(policy_open_at(&dv, z, t), 1792888200000LL);
    /* the day of the change is 25 hours long */
    policy_periods p;
    policy_periods_of(z, t, &p);
    assert_int_equal(p.day_to - p.day_from, 25 * HOUR_MS);
}

/* The per-thread cache (policy_shop_open_at) answers like the reference
 * (policy_open_at, policy_periods_of) at every time of two weeks around
 * each Berlin DST change and in Tokyo. */
static void sweep(const cfg_shop *shop, int64_t from, int64_t to)
{
    for (int64_t t = from; t < to; t += 37 * MIN_MS) {
        policy_periods want, got;
        int64_t open = policy_open_at(&shop->delivery, shop->timezone, t);
        policy_periods_of(shop->timezone, open, &want);
        assert_int_equal(policy_shop_open_at(shop, t, &got), open);
        assert_int_equal(got.day_from, want.day_from);
        assert_int_equal(got.day_to, want.day_to);
        assert_int_equal(got.week_from, want.week_from);
        assert_int_equal(got.week_to, want.week_to);
    }
}

static void test_cache_matches_reference(void **state)
{
    (void)state;
    cfg_quiet rules[] = {{.days = 0x3e, .from_min = 21 * 60, .to_min = 9 * 60},
                         {.days = 0x41, .from_min = 20 * 60, .to_min = 10 * 60},
                         {.days = 0x01, .from_min = 150, .to_min = 300}, /* Sunday 02:30-05:00 */
                         {.days = 0x08, .from_min = 12 * 60, .to_min = 13 * 60}};
    cfg_shop shop = {.id = "x",
                     .timezone = "Europe/Berlin",
                     .delivery = {.enabled = 1, .quiet = rules, .nquiet = 4}};
    sweep(&shop, to_ms("Europe/Berlin", 2026, 3, 22, 0, 0),
          to_ms("Europe/Berlin", 2026, 4, 5, 0, 0));
    sweep(&shop, to_ms("Europe/Berlin", 2026, 10, 18, 0, 0),
          to_ms("Europe/Berlin", 2026, 11, 1, 0, 0));
    shop.timezone = "Asia/Tokyo";
    shop.delivery.nquiet = 2;
    sweep(&shop, JST(0, 0, 0), JST(14, 0, 0));
}

/* Quiet hours from the test's config: across midnight, per weekday. */
static void test_quiet_hours(void **state)
{
    env *e = *state;
    diag d = {0};
    cfg *c = NULL;
    assert_int_equal(cfg_load(e->conf, &c, &d), 0);
    assert_int_equal(diag_count(&d), 0);
    const cfg_delivery *dv = &c->shops[0].delivery;
    const char *z = "Asia/Tokyo";
    assert_true(dv->enabled);
    assert_int_equal(dv->nquiet, 2);
    assert_int_equal(dv->quiet[0].days, 0x3e); /* mon-fri */
    assert_int_equal(dv->quiet[1].days, 0x41); /* sat,sun */
    assert_int_equal(dv->cap_day, 2);
    assert_int_equal(dv->cap_week, 3);
    assert_int_equal(dv->max_defer_ms, 3 * DAY_MS);
    /* Monday daytime is open; 21:00 to Tuesday 09:00 is quiet */
    assert_int_equal(policy_open_at(dv, z, JST(0, 12, 0)), JST(0, 12, 0));
    assert_int_equal(policy_open_at(dv, z, JST(0, 20, 59)), JST(0, 20, 59));
    assert_int_equal(policy_open_at(dv, z, JST(0, 21, 0)), JST(1, 9, 0));
    assert_int_equal(policy_open_at(dv, z, JST(1, 3, 0)), JST(1, 9, 0));
    assert_int_equal(policy_open_at(dv, z, JST(1, 9, 0)), JST(1, 9, 0));
    /* Friday's window runs into Saturday morning (09:00), Saturday's own
     * starts at 20:00 and ends Sunday 10:00 */
    assert_int_equal(policy_open_at(dv, z, JST(4, 23, 0)), JST(5, 9, 0));
    assert_int_equal(policy_open_at(dv, z, JST(5, 9, 30)), JST(5, 9, 30));
    assert_int_equal(policy_open_at(dv, z, JST(5, 20, 0)), JST(6, 10, 0));
    /* Sunday's window holds Monday until 10:00, not 09:00 */
    assert_int_equal(policy_open_at(dv, z, JST(6, 22, 0)), JST(7, 10, 0));
    assert_int_equal(policy_open_at(dv, z, JST(7, 9, 30)), JST(7, 10, 0));
    /* the periods: the Tokyo day, the week from Monday 00:00 */
    policy_periods p;
    policy_periods_of(z, JST(2, 15, 0), &p);
    assert_int_equal(p.day_from, JST(2, 0, 0));
    assert_int_equal(p.day_to, JST(3, 0, 0));
    assert_int_equal(p.week_from, JST(0, 0, 0));
    assert_int_equal(p.week_to, JST(7, 0, 0));
    policy_periods_of(z, JST(6, 23, 59), &p);
    assert_int_equal(p.week_from, JST(0, 0, 0));
    policy_periods_of(z, JST(7, 0, 0), &p);
    assert_int_equal(p.week_from, JST(7, 0, 0));
    cfg_free(c);
    diag_free(&d);
}

static void test_config_errors(void **state)
{
    env *e = *state;
    char path[160];
    snprintf(path, sizeof path, "%s/bad.conf", e->dir);
    ts_write_file(path,
                  "shops = ( { id = \"a\";\n"
                  "  delivery = {\n"
                  "    quiet_hours = ( { days = \"mon-fry\"; from = \"21:00\"; to = \"9\"; },\n"
                  "                    { days = \"sun\"; from = \"10:00\"; to = \"10:00\"; },\n"
                  "                    { days = \"*\"; from = \"01:00\"; } );\n"
                  "    caps = { day = 0; month = 3; };\n"
                  "    max_defer = \"forever\";\n"
                  "    colour = 1; };\n"
                  "} );\n");
    diag d = {0};
    cfg *c = NULL;
    assert_int_equal(cfg_load(path, &c, &d), 0);
    const char *want[] = {
        ":3: shop 'a': delivery.quiet_hours[0].days: invalid days \"mon-fry\" (examples: "
        "\"mon-fri\", \"sat,sun\", \"*\")",
        ":3: shop 'a': delivery.quiet_hours[0].to: invalid time \"9\" (expected HH:MM, 00:00 "
        "to 23:59)",
        ":4: shop 'a': delivery.quiet_hours[1]: from and to are equal: an empty (or 24-hour) "
        "window",
        ":5: shop 'a': delivery.quiet_hours[2]: missing required setting 'to'",
        ":6: shop 'a': delivery.caps.day: must be between 1 and 1000, got 0",
        ":6: shop 'a': delivery.caps: unknown setting 'month' (known: day, week)",
        ":7: shop 'a': delivery.max_defer: invalid duration \"forever\" (examples: 1500ms, 90s, "
        "15m, 1h30m, 1d)",
        ":8: shop 'a': delivery: unknown setting 'colour' (known: quiet_hours, caps, max_defer)",
    };
    size_t nwant = sizeof want / sizeof want[0];
    if (d.n != nwant)
        diag_print(&d, stderr);
    assert_int_equal(d.n, nwant);
    for (size_t i = 0; i < nwant; i++) {
        char full[512];
        snprintf(full, sizeof full, "%s%s", path, want[i]);
        assert_string_equal(d.lines[i], full);
    }
    cfg_free(c);
    diag_free(&d);
}

/* ---- sends ------------------------------------------------------------------ */

/* In quiet hours a promotional push waits for the window to open; a
 * transactional one goes at once; a promotional broadcast is refused. */
static void test_quiet_then_release(void **state)
{
    env *e = *state;
    start(e, JST(0, 22, 0));
    long outbox = -1;
    assert_int_equal(
        send_op(e, "{\"op\":\"push\",\"to\":\"" U1 "\",\"text\":\"night-sale\",\"promo\":\"1\"}",
                &outbox),
        0);
    assert_int_equal(outbox, 0); /* nothing queued now */
    assert_int_equal(
        send_op(e, "{\"op\":\"push\",\"to\":\"" U2 "\",\"text\":\"shipped\"}", &outbox), 0);
    assert_true(outbox > 0);
    assert_int_equal(send_op(e, "{\"op\":\"broadcast\",\"text\":\"x\",\"promo\":\"1\"}", NULL),
                     KZ_EINVAL);
    TS_WAIT(inbox_n(e, U2) == 1, 8000, "the transactional push did not arrive");
    drain(e);
    assert_int_equal(inbox_n(e, U1), 0);
    held h = held_of(e, U1);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.first_release, JST(1, 9, 0));
    assert_int_equal(h.first_reason, STORE_POLICY_QUIET);

    /* a minute before the window opens: still held */
    advance_to(JST(1, 8, 59));
    sender_wake(e->snd);
    drain(e);
    assert_int_equal(held_of(e, U1).n, 1);
    assert_int_equal(inbox_n(e, U1), 0);

    advance_to(JST(1, 9, 0));
    TS_WAIT(inbox_n(e, U1) == 1, 8000, "the held push was not released at 09:00");
    assert_string_equal(inbox_of(e, U1).message, "{\"type\":\"text\",\"text\":\"night-sale\"}");
    assert_int_equal(held_of(e, U1).n, 0);
    drain(e);
    assert_int_equal(inbox_n(e, U1), 1);
    expect_metric(e, "kizuna_policy_held_total{shop=\"a\",reason=\"quiet\"} 1\n");
    expect_metric(e, "kizuna_policy_released_total{shop=\"a\"} 1\n");
    expect_metric(e, "kizuna_policy_waiting{shop=\"a\"} 0\n");
}

/* Day cap 2: the third push is deferred to the next open morning, a DROP
 * one is dropped; week cap 3: past it, a DEFER that would wait longer
 * than max_defer (3d) is dropped too. Transactional sends never count. */
static void test_caps_defer_and_drop(void **state)
{
    env *e = *state;
    start(e, JST(0, 10, 0));
    promo(e, U1, "p1", 0, 0);
    promo(e, U1, "p2", 0, 0);
    promo(e, U1, "p3", 0, 0); /* over the day cap: deferred */
    promo(e, U1, "p4", 0, 1); /* over the day cap: dropped */
    assert_int_equal(send_op(e, "{\"op\":\"push\",\"to\":\"" U1 "\",\"text\":\"receipt\"}", NULL),
                     0);
    TS_WAIT(inbox_n(e, U1) == 3, 8000, "expected p1, p2 and the receipt");
    drain(e);
    ts_inbox in = inbox_of(e, U1);
    assert_non_null(strstr(in.all, "\"p1\""));
    assert_non_null(strstr(in.all, "\"p2\""));
    assert_null(strstr(in.all, "\"p3\""));
    assert_null(strstr(in.all, "\"p4\""));
    held h = held_of(e, U1);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.tags, "p3 ");
    /* the next day starts at 00:00 but its quiet hours end at 09:00 */
    assert_int_equal(h.first_release, JST(1, 9, 0));
    assert_int_equal(h.first_reason, STORE_POLICY_CAP);
    /* what `kizuna friend` shows of it */
    json_object *fj = NULL;
    char err[256];
    assert_int_equal(policy_friend_json(e->st, cfg_find_shop(e->a.c, "a"), U1, clock_now_ms(), &fj,
                                        err, sizeof err),
                     0);
    char want[768];
    snprintf(want, sizeof want,
             "{\"today\":2,\"week\":2,\"capDay\":2,\"capWeek\":3,\"held\":[{\"send\":1,"
             "\"tag\":\"p3\",\"priority\":0,\"overCap\":\"defer\",\"releaseMs\":%lld,"
             "\"reason\":\"cap\"}],\"dropped\":[{\"tag\":\"p4\",\"priority\":0,\"atMs\":%lld,"
             "\"reason\":\"cap\"}]}",
             (long long)JST(1, 9, 0), (long long)JST(0, 10, 0));
    assert_string_equal(json_object_to_json_string_ext(fj, JSON_C_TO_STRING_PLAIN), want);
    json_object_put(fj);

    advance_to(JST(1, 9, 0));
    TS_WAIT(inbox_n(e, U1) == 4, 8000, "p3 was not released on Tuesday");
    assert_non_null(strstr(inbox_of(e, U1).all, "\"p3\""));

    /* Tuesday: day 1 of 2, but the week (p1, p2, p3) is full until next
     * Monday 10:00, 6 days away: over max_defer */
    advance_to(JST(1, 12, 0));
    promo(e, U1, "p5", 0, 0);
    promo(e, U1, "p6", 0, 1);
    drain(e);
    assert_int_equal(held_of(e, U1).n, 0);
    assert_int_equal(inbox_n(e, U1), 4);
    /* another friend is not affected */
    promo(e, U2, "q1", 0, 0);
    TS_WAIT(inbox_n(e, U2) == 1, 8000, "U2's push did not arrive");

    expect_metric(e, "kizuna_policy_passed_total{shop=\"a\"} 3\n");
    expect_metric(e, "kizuna_policy_held_total{shop=\"a\",reason=\"cap\"} 1\n");
    expect_metric(e, "kizuna_policy_released_total{shop=\"a\"} 1\n");
    expect_metric(e, "kizuna_policy_dropped_total{shop=\"a\",reason=\"cap\"} 2\n");
    expect_metric(e, "kizuna_policy_dropped_total{shop=\"a\",reason=\"max_defer\"} 1\n");
}

/* Three sends held overnight for a friend with a day cap of 2: at 09:00
 * the two with the highest priority go, the third waits a day. */
static void test_priority(void **state)
{
    env *e = *state;
    start(e, JST(0, 22, 0));
    promo(e, U1, "low", 0, 0);
    promo(e, U1, "high", 5, 0);
    promo(e, U1, "mid", 1, 0);
    promo(e, U1, "tiny", -1, 1); /* over the cap at release: dropped then */
    drain(e);
    assert_int_equal(held_of(e, U1).n, 4);

    advance_to(JST(1, 9, 0));
    TS_WAIT(inbox_n(e, U1) == 2, 8000, "two of three should have been released");
    TS_WAIT(held_of(e, U1).first_release == JST(2, 9, 0), 8000, "low was not deferred");
    drain(e);
    ts_inbox in = inbox_of(e, U1);
    assert_int_equal(in.n, 2);
    assert_non_null(strstr(in.all, "\"high\""));
    assert_non_null(strstr(in.all, "\"mid\""));
    assert_null(strstr(in.all, "\"low\""));
    held h = held_of(e, U1);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.tags, "low ");
    assert_int_equal(h.first_reason, STORE_POLICY_CAP);
    expect_metric(e, "kizuna_policy_dropped_total{shop=\"a\",reason=\"cap\"} 1\n");
    expect_metric(e, "kizuna_policy_held_total{shop=\"a\",reason=\"quiet\"} 4\n");
    expect_metric(e, "kizuna_policy_held_total{shop=\"a\",reason=\"cap\"} 1\n");

    advance_to(JST(2, 9, 0));
    TS_WAIT(inbox_n(e, U1) == 3, 8000, "low was not released on Wednesday");
    assert_non_null(strstr(inbox_of(e, U1).all, "\"low\""));
    assert_int_equal(held_of(e, U1).n, 0);
}

/* Over the week cap on a Saturday: deferred to the first open instant of
 * the next week (Monday 10:00: Sunday's window holds Monday morning),
 * within max_defer (3d). */
static void test_week_cap_defers_to_monday(void **state)
{
    env *e = *state;
    start(e, JST(4, 12, 0)); /* Friday */
    promo(e, U1, "w1", 0, 0);
    promo(e, U1, "w2", 0, 0);
    advance_to(JST(5, 11, 0)); /* Saturday */
    promo(e, U1, "w3", 0, 0);
    promo(e, U1, "w4", 0, 0); /* week 4 of 3: deferred */
    TS_WAIT(inbox_n(e, U1) == 3, 8000, "w1..w3 should have arrived");
    drain(e);
    held h = held_of(e, U1);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.tags, "w4 ");
    assert_int_equal(h.first_release, JST(7, 10, 0));
    assert_int_equal(h.first_reason, STORE_POLICY_CAP);

    advance_to(JST(7, 9, 59));
    sender_wake(e->snd);
    drain(e);
    assert_int_equal(inbox_n(e, U1), 3);
    advance_to(JST(7, 10, 0));
    TS_WAIT(inbox_n(e, U1) == 4, 8000, "w4 was not released on Monday 10:00");
    assert_string_equal(inbox_of(e, U1).message, "{\"type\":\"text\",\"text\":\"w4\"}");
}

/* A shop without a delivery group: promotional sends go as queued, even
 * at night, and nothing is counted. */
static void test_no_policy(void **state)
{
    env *e = *state;
    start(e, JST(0, 23, 0));
    long outbox = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            send_op_to(e, "b", "{\"op\":\"push\",\"to\":\"" U1 "\",\"text\":\"n\",\"promo\":\"1\"}",
                       &outbox),
            0);
    assert_true(outbox > 0);
    ts_inbox in;
    TS_WAIT(ts_inbox_get(e->sbx, "b", U1, &in) == 3, 8000, "shop b's pushes did not arrive");
    int64_t n = -1;
    char err[256];
    assert_int_equal(store_policy_count(e->st, "b", U1, 0, INT64_MAX, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    /* the kind rule holds without a policy too */
    assert_int_equal(send_op_to(e, "b", "{\"op\":\"broadcast\",\"promo\":\"1\"}", NULL), KZ_EINVAL);
}

/* One multicast, three fates: U3 (fresh) now, U1 (day full) held for the
 * next morning, U2 (week full, next week past max_defer) dropped. */
static void test_multicast_split(void **state)
{
    env *e = *state;
    start(e, JST(0, 10, 0));
    promo(e, U2, "a1", 0, 0);
    promo(e, U2, "a2", 0, 0);
    advance_to(JST(1, 10, 0));
    promo(e, U2, "a3", 0, 0); /* U2: week 3 of 3 */
    promo(e, U1, "b1", 0, 0);
    promo(e, U1, "b2", 0, 0); /* U1: day 2 of 2, week 2 of 3 */
    TS_WAIT(inbox_n(e, U2) == 3 && inbox_n(e, U1) == 2, 8000, "setup sends missing");
    drain(e);

    advance_to(JST(1, 11, 0));
    long outbox = 0;
    assert_int_equal(send_op(e,
                             "{\"op\":\"multicast\",\"to\":\"" U1 "," U2 "," U3
                             "\",\"text\":\"sale\",\"promo\":\"1\"}",
                             &outbox),
                     0);
    assert_true(outbox > 0);
    store_outbox row;
    assert_int_equal(store_outbox_get(e->st, outbox, &row, NULL, NULL, NULL, NULL, 0), 0);
    assert_int_equal(row.kind, KZ_LINE_MULTICAST);
    assert_non_null(strstr(row.body, "\"to\":[\"" U3 "\"]"));
    TS_WAIT(inbox_n(e, U3) == 1, 8000, "U3 did not get the sale now");
    drain(e);
    assert_int_equal(inbox_n(e, U1), 2);
    assert_int_equal(inbox_n(e, U2), 3);
    held h1 = held_of(e, U1);
    assert_int_equal(h1.n, 1);
    assert_int_equal(h1.first_release, JST(2, 9, 0));
    assert_int_equal(held_of(e, U2).n, 0);
    /* U2's drop is visible per friend */
    json_object *fj = NULL;
    char err[256], want[256];
    assert_int_equal(policy_friend_json(e->st, cfg_find_shop(e->a.c, "a"), U2, clock_now_ms(), &fj,
                                        err, sizeof err),
                     0);
    snprintf(want, sizeof want,
             "[{\"tag\":\"sale\",\"priority\":0,\"atMs\":%lld,\"reason\":\"max_defer\"}]",
             (long long)JST(1, 11, 0));
    assert_string_equal(json_object_to_json_string_ext(json_object_object_get(fj, "dropped"),
                                                       JSON_C_TO_STRING_PLAIN),
                        want);
    assert_int_equal(payload_int(fj, "week"), 3);
    json_object_put(fj);

    advance_to(JST(2, 9, 0));
    TS_WAIT(inbox_n(e, U1) == 3, 8000, "U1's share of the multicast was not released");
    assert_string_equal(inbox_of(e, U1).message, "{\"type\":\"text\",\"text\":\"sale\"}");
    drain(e);
    assert_int_equal(inbox_n(e, U2), 3);
    assert_int_equal(inbox_n(e, U3), 1);
    expect_metric(e, "kizuna_policy_dropped_total{shop=\"a\",reason=\"max_defer\"} 1\n");
}

static int first_drop(void *arg, int64_t at_ms, int reason, const char *tag, int priority)
{
    (void)at_ms, (void)tag, (void)priority;
    *(int *)arg = reason;
    return 1;
}

/* A held send whose stored body cannot be read back (not the host's
 * writing: a damaged row) drops its recipients, reason "broken", and the
 * walk releases the others: one bad row must not hold every promotional
 * send of the store back for good. The walk stays one transaction (the
 * ledger counts only what was released). Runs the walk directly, without
 * a sender. */
static void test_broken_held_send_is_dropped(void **state)
{
    env *e = *state;
    clock_use_virtual(JST(1, 10, 0));
    ts_app_prepare(&e->a, e->conf);
    e->st = ts_store_open(e->a.c->store_url, STORE_SYNC_NORMAL);
    char err[256];
    const char *bodies[] = {"{\"messages\":[{\"type\":\"text\",\"text\":\"ok\"}]}", "{not json",
                            "[1]"};
    const char *users[] = {U1, U2, U3};
    for (int i = 0; i < 3; i++) {
        store_policy_send ps = {.shop = "a",
                                .instance = 1,
                                .kind = KZ_LINE_PUSH,
                                .body = bodies[i],
                                .origin = "ev",
                                .created_ms = JST(0, 22, 0)};
        int64_t id = 0;
        assert_int_equal(store_policy_send_add(e->st, &ps, &id, err, sizeof err), 0);
        assert_int_equal(store_policy_hold(e->st, id, "a", users[i], JST(1, 9, 0),
                                           STORE_POLICY_QUIET, err, sizeof err),
                         0);
    }
    assert_int_equal(policy_release(e->st, e->a.c, clock_now_ms(), 100, err, sizeof err), 1);
    assert_int_equal(pending(e), 1); /* U1's push */
    for (int i = 0; i < 3; i++)
        assert_int_equal(held_of(e, users[i]).n, 0);
    int64_t n = -1;
    assert_int_equal(store_policy_count(e->st, "a", U1, 0, INT64_MAX, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_policy_count(e->st, "a", U2, 0, INT64_MAX, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    for (int i = 1; i < 3; i++) {
        int reason = -1;
        assert_int_equal(
            store_policy_drops_of(e->st, "a", users[i], 0, first_drop, &reason, err, sizeof err),
            1);
        assert_int_equal(reason, STORE_POLICY_BROKEN);
    }
    store_close(e->st);
    e->st = NULL;
    app_free(&e->a);
}

/* Queues one promotional push of priority pri to user at now (direct,
 * as line_send does in a handler); returns 1 when it may go at once. */
static int admit(env *e, const char *user, int pri, const char *tag)
{
    char err[256];
    policy_send ps = {.shop = "a",
                      .instance = 1,
                      .kind = KZ_LINE_PUSH,
                      .body = "{\"messages\":[{\"type\":\"text\",\"text\":\"x\"}]}",
                      .tag = tag,
                      .origin = "ev",
                      .priority = pri};
    unsigned char allowed = 0;
    const char *users[] = {user};
    assert_int_equal(store_begin(e->st, err, sizeof err), 0);
    assert_int_equal(policy_admit(e->st, cfg_find_shop(e->a.c, "a"), &ps, clock_now_ms(), users, 1,
                                  &allowed, NULL, err, sizeof err),
                     0);
    assert_int_equal(store_commit(e->st, err, sizeof err), 0);
    return allowed;
}

/* Two sends of priority 5 wait for Tuesday 09:00 and fill the day's cap
 * (2). A priority-0 send queued at 09:00, before the release walk has
 * run, waits for that walk too instead of taking a slot: the walk releases
 * the two of priority 5 and defers it to Wednesday. Runs the walk directly,
 * without a sender. */
static void test_new_send_waits_behind_due_ones(void **state)
{
    env *e = *state;
    clock_use_virtual(JST(0, 22, 0));
    ts_app_prepare(&e->a, e->conf);
    e->st = ts_store_open(e->a.c->store_url, STORE_SYNC_NORMAL);
    char err[256];
    assert_int_equal(admit(e, U1, 5, "p5a"), 0);
    assert_int_equal(admit(e, U1, 5, "p5b"), 0);
    advance_to(JST(1, 9, 0));
    assert_int_equal(admit(e, U1, 0, "p0"), 0); /* held behind the due ones */
    assert_int_equal(admit(e, U2, 0, "p0"), 1); /* nothing due for U2: goes now */
    assert_int_equal(policy_release(e->st, e->a.c, clock_now_ms(), 100, err, sizeof err), 2);
    held h = held_of(e, U1);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.tags, "p0 ");
    assert_int_equal(h.first_release, JST(2, 9, 0));
    assert_int_equal(h.first_reason, STORE_POLICY_CAP);
    int64_t n = -1;
    assert_int_equal(store_policy_count(e->st, "a", U1, 0, INT64_MAX, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    store_close(e->st);
    e->st = NULL;
    app_free(&e->a);
}

/* Held sends survive a restart of kizuna (store, bus, sender closed and
 * opened again); recipients of one send released together share one
 * multicast request; nothing is sent twice. */
static void test_restart(void **state)
{
    env *e = *state;
    start(e, JST(4, 23, 0)); /* Friday night */
    assert_int_equal(send_op(e,
                             "{\"op\":\"multicast\",\"to\":\"" U1 "," U2 "," U3
                             "\",\"text\":\"weekend\",\"promo\":\"1\"}",
                             NULL),
                     0);
    drain(e);
    assert_int_equal(held_of(e, U1).n + held_of(e, U2).n + held_of(e, U3).n, 3);
    assert_int_equal(held_of(e, U2).first_release, JST(5, 9, 0));
    stop_kizuna(e);

    advance_to(JST(5, 9, 30));
    start_kizuna(e);
    TS_WAIT(inbox_n(e, U1) == 1 && inbox_n(e, U2) == 1 && inbox_n(e, U3) == 1, 8000,
            "the held multicast was not released after the restart");
    drain(e);
    ts_inbox a = inbox_of(e, U1), b = inbox_of(e, U2), c = inbox_of(e, U3);
    assert_string_equal(a.request_id, b.request_id); /* one request for all three */
    assert_string_equal(a.request_id, c.request_id);
    assert_int_equal(held_of(e, U1).n + held_of(e, U2).n + held_of(e, U3).n, 0);

    /* and once more: nothing left to send */
    stop_kizuna(e);
    advance_to(JST(5, 12, 0));
    start_kizuna(e);
    sender_wake(e->snd);
    drain(e);
    assert_int_equal(inbox_n(e, U1), 1);
    assert_int_equal(inbox_n(e, U2), 1);
    assert_int_equal(inbox_n(e, U3), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tz_to_ms),
        cmocka_unit_test(test_quiet_hours_dst),
        cmocka_unit_test(test_cache_matches_reference),
        cmocka_unit_test_setup_teardown(test_quiet_hours, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiet_then_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps_defer_and_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priority, setup, teardown),
        cmocka_unit_test_setup_teardown(test_week_cap_defers_to_monday, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multicast_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_send_waits_behind_due_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_held_send_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
