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

typedef struct live {
    char dir[64], conf[128];
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

static void write_conf(live *l)
{
    ts_write_file(
        l->conf,
        "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; durability = "
        "\"normal\"; listen = \"127.0.0.1:0\"; plugin_path = \"%s\";\n"
        "  sandbox = { listen = \"127.0.0.1:0\"; store = \"sqlite:%s/sbx.db\"; }; };\n"
        "shops = ( { id = \"a\"; line = { channel_secret = \"sec\"; access_token = \"tok\";"
        " api = \"sandbox\"; };\n  plugins = { %s }; } );\n",
        l->dir, KZ_PLUGIN_DIR, l->dir, shop_plugins);
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

static int up(void **state)
{
    live *l = calloc(1, sizeof *l);
    ts_tmpdir(l->dir, sizeof l->dir, "live");
    snprintf(l->conf, sizeof l->conf, "%s/kizuna.conf", l->dir);
    write_conf(l);
    if (app_prepare(&l->a, l->conf, 1) > 0) {
        diag_print(&l->a.d, stderr);
        fail_msg("config refused");
    }
    char err[512], base[64], sbx_base[64];
    ts_bus_new(&l->a, &l->b);
    assert_int_equal(app_open_instances(&l->a, l->b), 2);
    ingress_options io = {.listen = "127.0.0.1:0", .c = l->a.c, .b = l->b};
    ts_ingress_start(&io, &l->in, base, sizeof base);
    sandbox_options so = sandbox_options_from_cfg(l->a.c);
    so.webhook_base = base;
    ts_sandbox_start(&so, &l->sb, sbx_base, sizeof sbx_base);
    start_sender(l, sbx_base);
    assert_int_equal(bus_start(l->b, err, sizeof err), 0);
    l->st = ts_store_open(l->a.c->store_url, STORE_SYNC_NORMAL);
    l->sbx = ts_store_open(so.store_url, STORE_SYNC_NORMAL);
    *state = l;
    return 0;
}

static int down(void **state)
{
    live *l = *state;
    sender_stop(l->snd);
    sandbox_stop(l->sb);
    ingress_stop(l->in);
    bus_free(l->b);
    store_close(l->st);
    store_close(l->sbx);
    app_free(&l->a);
    ts_rmdir(l->dir);
    free(l);
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

int main(void)
{
    log_set_level(KZ_LOG_ERROR + 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(greeting_and_autoreply, up, down),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
