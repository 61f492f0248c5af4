/*
 * The bundled greeting and autoreply plugins, as built (.so from the build's
 * plugin dir), in the real host: LINE users played by the real sandbox send
 * signed webhooks to the real ingress; the bus runs the plugins; the sender
 * delivers their replies to the sandbox, whose inboxes are read back. Tags
 * land in the friend registry. Waits are bounded polls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bus.h"
#include "clock.h"
#include "daemon.h"
#include "ingress.h"
#include "log.h"
#include "sandbox.h"
#include "sender.h"
#include "store.h"
#include "support.h"

#define U1 "U1111111111111111111111111111111a"
#define U2 "U2222222222222222222222222222222b"
#define U3 "U3333333333333333333333333333333c"

#define HOUR (3600 * 1000LL)
#define DAY (24 * HOUR)
/* Monday 2026-11-23 09:00 in Tokyo */
#define T0 (1795359600000LL + 9 * HOUR)

typedef struct live {
    char dir[64], conf[128];
    const char *plugins;    /* the shop's plugins group */
    const char *shop_extra; /* more settings of the shop ("": none) */
    int ninstances;
    app a;
    bus *b;
    ingress *in;
    sandbox *sb;
    sender *snd;
    store *st, *sbx;
} live;

static const char shop_plugins[] =
    "greeting = { messages = ( { text = \"ようこそ\"; } ); refollow = ( { text = \"おかえり\"; } );"
    "  tags = [ \"new\" ]; refollow_tags = [ \"returned\" ]; };\n"
    "autoreply = { cooldown = \"10m\";\n"
    "  rules = ( { match = \"exact\"; pattern = \"営業時間\"; priority = 10;"
    "    messages = ( { text = \"10時〜19時です\"; } ); tags = [ \"asked_hours\" ]; },\n"
    "    { match = \"keyword\"; pattern = \"送料\"; priority = 5;"
    "      messages = ( { text = \"5,000円以上で送料無料です\"; } ); },\n"
    "    { match = \"regex\"; pattern = \"^(返品|交換)\"; priority = 1;"
    "      messages = ( { text = \"返品・交換はこちら\"; } ); } );\n"
    "  default = { messages = ( { text = \"担当者からご連絡します\"; } ); }; };\n";

static const char step_plugins[] =
    "step = { scenarios = ( { name = \"welcome\"; trigger = \"line.follow\";\n"
    "  stop_on = [ \"line.unfollow\", \"ec.order.created\" ]; tags = [ \"welcomed\" ];\n"
    "  steps = ( { name = \"hello\"; messages = ( { text = \"ようこそ\"; } ); },\n"
    "    { name = \"day1\"; after = \"1d\"; at = \"10:00\";"
    " messages = ( { text = \"クーポン\"; } ); },\n"
    "    { name = \"day3\"; after = \"2d\"; at = \"10:00\";"
    " messages = ( { text = \"おすすめ\"; } ); } ); } ); };\n";

static void write_conf(live *l)
{
    ts_write_file(
        l->conf,
        "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; durability = "
        "\"normal\"; listen = \"127.0.0.1:0\"; plugin_path = \"%s\";\n"
        "  sandbox = { listen = \"127.0.0.1:0\"; store = \"sqlite:%s/sbx.db\"; }; };\n"
        "shops = ( { id = \"a\"; line = { channel_secret = \"sec\"; access_token = \"tok\";"
        " api = \"sandbox\"; };\n  %s\n  plugins = { %s }; } );\n",
        l->dir, KZ_PLUGIN_DIR, l->dir, l->shop_extra, l->plugins);
}

static void start_sender(live *l, const char *sbx_base)
{
    char err[512];
    sender_options sn = {.store_url = l->a.c->store_url,
                         .sync_mode = STORE_SYNC_NORMAL,
                         .c = l->a.c,
                         .sandbox_base = sbx_base,
                         .b = l->b,
                         .poll_ms = 20};
    if (sender_start(&sn, &l->snd, err, sizeof err) != 0)
        fail_msg("sender: %s", err);
}

static void wake_sender(void *arg)
{
    sender_wake(arg);
}

/* Starts every component on l's config and stores. */
static void start(live *l)
{
    if (app_prepare(&l->a, l->conf, 1) > 0) {
        diag_print(&l->a.d, stderr);
        fail_msg("config refused");
    }
    char err[512], base[64], sbx_base[64];
    ts_bus_new(&l->a, &l->b);
    assert_int_equal(app_open_instances(&l->a, l->b), l->ninstances);
    ingress_options io = {.listen = "127.0.0.1:0", .c = l->a.c, .b = l->b};
    ts_ingress_start(&io, &l->in, base, sizeof base);
    sandbox_options so = sandbox_options_from_cfg(l->a.c);
    so.webhook_base = base;
    ts_sandbox_start(&so, &l->sb, sbx_base, sizeof sbx_base);
    start_sender(l, sbx_base);
    bus_on_sends(l->b, wake_sender, l->snd); /* as the daemon: a clock walk waits for sends */
    assert_int_equal(bus_start(l->b, err, sizeof err), 0);
    l->st = ts_store_open(l->a.c->store_url, STORE_SYNC_NORMAL);
    l->sbx = ts_store_open(so.store_url, STORE_SYNC_NORMAL);
}

static void stop(live *l)
{
    sender_stop(l->snd);
    sandbox_stop(l->sb);
    ingress_stop(l->in);
    bus_free(l->b);
    store_close(l->st);
    store_close(l->sbx);
    app_free(&l->a);
    memset(&l->a, 0, sizeof l->a);
}

static int up_with(void **state, const char *plugins, const char *shop_extra, int ninstances)
{
    live *l = calloc(1, sizeof *l);
    ts_tmpdir(l->dir, sizeof l->dir, "live");
    snprintf(l->conf, sizeof l->conf, "%s/kizuna.conf", l->dir);
    l->plugins = plugins;
    l->shop_extra = shop_extra;
    l->ninstances = ninstances;
    write_conf(l);
    start(l);
    *state = l;
    return 0;
}

static int up(void **state)
{
    return up_with(state, shop_plugins, "", 2);
}

/* The step plugin alone, on a virtual clock standing at T0. */
static int up_step(void **state)
{
    clock_use_virtual(T0);
    return up_with(state, step_plugins, "", 1);
}

/* A step due at 21:00 (promotional) and one an hour later (not), in a shop
 * whose delivery policy keeps promotions out of 21:00–09:00. */
static const char night_plugins[] =
    "step = { scenarios = ( { name = \"night\"; trigger = \"line.follow\";\n"
    "  steps = ( { name = \"late\"; after = \"12h\"; messages = ( { text = \"夜のセール\"; } ); "
    "},\n"
    "    { name = \"care\"; after = \"1h\"; promotional = false;"
    " messages = ( { text = \"ご利用方法\"; } ); } ); } ); };\n";

static int up_step_quiet(void **state)
{
    clock_use_virtual(T0);
    return up_with(state, night_plugins,
                   "delivery = { quiet_hours = ( { days = \"*\"; from = \"21:00\"; to = "
                   "\"09:00\"; } ); };",
                   1);
}

static int down(void **state)
{
    live *l = *state;
    stop(l);
    ts_rmdir(l->dir);
    free(l);
    clock_use_real();
    return 0;
}

static void play(live *l, const char *user, enum sandbox_action act, const char *text)
{
    char err[512];
    if (sandbox_play(l->sb, "a", user, act, text, err, sizeof err) != 0)
        fail_msg("play: %s", err);
}

/* Waits until user has n messages; returns them, one a line. */
static const char *wait_inbox(live *l, const char *user, int n)
{
    static ts_inbox in;
    TS_WAIT(ts_inbox_get(l->sbx, "a", user, &in) >= n, 8000, "%s: %d message(s) after 8 s, want %d",
            user, in.n, n);
    assert_int_equal(in.n, n);
    return in.all;
}

static int has_tag_cb(void *arg, const char *tag)
{
    return strcmp(arg, tag) == 0;
}

static int has_tag(live *l, const char *user, const char *tag)
{
    char err[256];
    return store_friend_tags(l->st, "a", user, has_tag_cb, (void *)tag, err, sizeof err) == 1;
}

#define TEXT(t) "{\"type\":\"text\",\"text\":\"" t "\"}"

static void greeting_and_autoreply(void **state)
{
    live *l = *state;
    play(l, U1, SANDBOX_FOLLOW, NULL);
    assert_non_null(strstr(wait_inbox(l, U1, 1), TEXT("ようこそ") "\n"));
    assert_true(has_tag(l, U1, "new"));

    play(l, U1, SANDBOX_SAY, "営業時間");
    assert_non_null(strstr(wait_inbox(l, U1, 2), TEXT("10時〜19時です") "\n"));
    assert_true(has_tag(l, U1, "asked_hours"));
    play(l, U1, SANDBOX_SAY, "送料は?"); /* within the 10-minute cooldown: no reply */

    play(l, U2, SANDBOX_FOLLOW, NULL);
    play(l, U2, SANDBOX_SAY, "返品したい");
    assert_non_null(strstr(wait_inbox(l, U2, 2), TEXT("返品・交換はこちら") "\n"));
    play(l, U3, SANDBOX_FOLLOW, NULL);
    play(l, U3, SANDBOX_SAY, "こんにちは");
    assert_non_null(strstr(wait_inbox(l, U3, 2), TEXT("担当者からご連絡します") "\n"));

    /* blocked and back: the refollow set and tag; by then the cooled-down
     * text (handled earlier, in order) has long been handled: still 2+1 */
    play(l, U1, SANDBOX_UNFOLLOW, NULL);
    play(l, U1, SANDBOX_FOLLOW, NULL);
    assert_non_null(strstr(wait_inbox(l, U1, 3), TEXT("おかえり") "\n"));
    assert_true(has_tag(l, U1, "returned"));
}

/* Walks the virtual clock to t as `kizuna sandbox advance` does: every
 * timer fires at its due time, and it returns once everything due is
 * handled and sent. */
static void clock_to(live *l, int64_t t)
{
    char err[512];
    bus_walk w;
    if (bus_advance_to(l->b, t, 20000, &w, err, sizeof err) != 0)
        fail_msg("advance: %s", err);
}

/* Publishes one event for user to shop "a", as `kizuna publish` does. */
static void publish(live *l, const char *topic, const char *user, const char *json)
{
    char err[512];
    bus_msg m = {.shop = "a", .topic = topic, .user = user, .json = json, .len = strlen(json)};
    if (bus_publish(l->b, &m, 1, NULL, err, sizeof err) != 0)
        fail_msg("publish: %s", err);
}

/* The step instance's counter key (decimal text), 0 when absent. */
static long step_counter(live *l, const char *key)
{
    char err[256];
    int64_t inst, cursor;
    void *val = NULL;
    size_t len;
    long n = 0;
    if (store_instance_open(l->st, "a", "step", &inst, &cursor, err, sizeof err) != 0)
        fail_msg("instance: %s", err);
    if (store_kv_get(l->st, inst, key, &val, &len, err, sizeof err) == 0)
        n = strtol(val, NULL, 10);
    free(val);
    return n;
}

static void welcome_steps_on_the_virtual_clock(void **state)
{
    live *l = *state;
    play(l, U1, SANDBOX_FOLLOW, NULL);
    play(l, U2, SANDBOX_FOLLOW, NULL);
    assert_string_equal(wait_inbox(l, U1, 1), TEXT("ようこそ") "\n");
    wait_inbox(l, U2, 1);
    /* U2 blocks the account: the scenario stops for them */
    play(l, U2, SANDBOX_UNFOLLOW, NULL);
    clock_to(l, T0 + HOUR - 1);   /* Monday 09:59:59.999: day1 is due tomorrow */
    clock_to(l, T0 + DAY + HOUR); /* Tuesday 10:00 */
    assert_string_equal(wait_inbox(l, U1, 2), TEXT("ようこそ") "\n" TEXT("クーポン") "\n");
    publish(l, "ec.order.created", U1, "{\"order\":\"A-1\"}");
    clock_to(l, T0 + 8 * DAY);
    /* nothing more: U1 ordered (stop_on), U2 had blocked */
    ts_inbox in;
    assert_int_equal(ts_inbox_get(l->sbx, "a", U1, &in), 2);
    assert_int_equal(ts_inbox_get(l->sbx, "a", U2, &in), 1);
    assert_int_equal(step_counter(l, "st:welcome:day3:sent"), 0);
    assert_int_equal(step_counter(l, "st:welcome:stopped"), 2);
    assert_int_equal(step_counter(l, "st:welcome:day1:sent"), 1);
}

/* Every component stopped and started again between two steps: the timer
 * in the store fires after the restart, each step arrives exactly once. */
static void restart_mid_scenario(void **state)
{
    live *l = *state;
    play(l, U1, SANDBOX_FOLLOW, NULL);
    wait_inbox(l, U1, 1);
    stop(l);
    start(l);
    clock_to(l, T0 + DAY + HOUR);
    wait_inbox(l, U1, 2);
    stop(l);
    start(l);
    clock_to(l, T0 + 3 * DAY + HOUR); /* Thursday 10:00: day3 */
    assert_string_equal(wait_inbox(l, U1, 3),
                        TEXT("ようこそ") "\n" TEXT("クーポン") "\n" TEXT("おすすめ") "\n");
    assert_true(has_tag(l, U1, "welcomed"));
    clock_to(l, T0 + 10 * DAY);
    ts_inbox in;
    assert_int_equal(ts_inbox_get(l->sbx, "a", U1, &in), 3);
    assert_int_equal(step_counter(l, "st:welcome:day1:sent"), 1);
    assert_int_equal(step_counter(l, "st:welcome:completed"), 1);
}

/* A promotional step due in the shop's quiet hours is held by the
 * delivery policy until they end; a step marked not promotional goes at
 * its time. The clock walk steps to the release, so each check follows it. */
static void step_held_by_quiet_hours(void **state)
{
    live *l = *state;
    play(l, U1, SANDBOX_FOLLOW, NULL);
    clock_to(l, T0 + 12 * HOUR + HOUR / 2); /* Monday 21:30: "late" was due at 21:00 */
    ts_inbox in;
    assert_int_equal(ts_inbox_get(l->sbx, "a", U1, &in), 0);
    assert_int_equal(step_counter(l, "st:night:late:sent"), 1); /* queued, held by the policy */
    clock_to(l, T0 + DAY - 1); /* Tuesday 08:59:59.999: still quiet; "care" went at 22:00 */
    assert_int_equal(ts_inbox_get(l->sbx, "a", U1, &in), 1);
    assert_non_null(strstr(in.all, "ご利用方法"));
    clock_to(l, T0 + DAY); /* 09:00: released */
    assert_int_equal(ts_inbox_get(l->sbx, "a", U1, &in), 2);
    assert_non_null(strstr(in.all, "夜のセール"));
}

int main(void)
{
    log_set_level(KZ_LOG_ERROR + 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(greeting_and_autoreply, up, down),
        cmocka_unit_test_setup_teardown(welcome_steps_on_the_virtual_clock, up_step, down),
        cmocka_unit_test_setup_teardown(restart_mid_scenario, up_step, down),
        cmocka_unit_test_setup_teardown(step_held_by_quiet_hours, up_step_quiet, down),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
