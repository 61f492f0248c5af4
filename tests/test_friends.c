/*
 * The friend registry (core/friends.c, store "friends") on real parts: a
 * real config, store and bus with the core.friends instance of every shop.
 * Events are published as the ingress would; the end-to-end test plays a
 * LINE user against the real sandbox, ingress and sender, and waits for the
 * profile LINE (the sandbox) returned to land in the registry.
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
#include "friendcli.h"
#include "friends.h"
#include "ingress.h"
#include "log.h"
#include "sandbox.h"
#include "sender.h"
#include "store.h"

#define U1 "U1111111111111111111111111111111a"
#define U2 "U2222222222222222222222222222222b"
#define GROUP "C0123456789abcdef0123456789abcdef"
#define T0 1795000000000LL

typedef struct env {
    char dir[64], conf[128];
    app a;
    bus *b;
    store *st;
} env;

/* Shop a talks to the sandbox; shop b has no LINE access token. */
static env *env_open(void)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    strcpy(e->dir, "/tmp/kz-friends-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    FILE *f = fopen(e->conf, "w");
    assert_non_null(f);
    fprintf(f,
            "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; durability = "
            "\"normal\"; listen = \"127.0.0.1:0\";\n"
            "  sandbox = { listen = \"127.0.0.1:0\"; store = \"sqlite:%s/sbx.db\"; }; };\n"
            "shops = ( { id = \"a\"; line = { channel_secret = \"sec\"; access_token = \"tok\";"
            " api = \"sandbox\"; }; },\n"
            "          { id = \"b\"; } );\n",
            e->dir, e->dir);
    fclose(f);
    clock_use_virtual(T0);
    if (app_prepare(&e->a, e->conf, 0) > 0) {
        diag_print(&e->a.d, stderr);
        fail_msg("config refused");
    }
    bus_options o = app_bus_options(e->a.c);
    char err[512];
    assert_int_equal(bus_new(&o, &e->b, err, sizeof err), 0);
    assert_int_equal(app_open_instances(&e->a, e->b), 0); /* no plugins: friends only */
    assert_int_equal(bus_instance_count(e->b), 2);
    assert_int_equal(store_open(o.store_url, o.sync_mode, &e->st, err, sizeof err), 0);
    return e;
}

static void env_close(env *e)
{
    bus_free(e->b);
    store_close(e->st);
    app_free(&e->a);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
    clock_use_real();
    free(e);
}

static void publish(env *e, const char *shop, const char *topic, const char *user, const char *json)
{
    char err[256];
    bus_msg m = {.shop = shop, .topic = topic, .user = user, .json = json, .len = strlen(json)};
    if (bus_publish(e->b, &m, 1, NULL, err, sizeof err) != 0)
        fail_msg("publish: %s", err);
}

static void run(env *e)
{
    char err[256];
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
}

static store_friend get(env *e, const char *shop, const char *user)
{
    store_friend f;
    char err[256];
    if (store_friend_get(e->st, shop, user, &f, err, sizeof err) != 0)
        fail_msg("no friend %s/%s", shop, user);
    return f;
}

static int64_t pending(env *e)
{
    int64_t n = -1;
    char err[256];
    assert_int_equal(store_outbox_pending(e->st, &n, err, sizeof err), 0);
    return n;
}

/* Follow, talk, block, come back: every step lands in the registry once;
 * each follow of a shop that can call LINE queues one profile fetch. */
static void follow_history(void **state)
{
    (void)state;
    env *e = env_open();
    publish(e, "a", "line.follow", U1, "{\"type\":\"follow\"}");
    run(e);
    store_friend f = get(e, "a", U1);
    assert_int_equal(f.following, 1);
    assert_int_equal(f.follows, 1);
    assert_int_equal(f.first_follow_ms, T0);
    assert_int_equal(f.follow_ms, T0);
    assert_int_equal(f.first_active_ms, T0);
    assert_int_equal(pending(e), 1);
    store_outbox row;
    char err[256];
    assert_int_equal(store_outbox_get(e->st, 1, &row, NULL, NULL, NULL, err, sizeof err), 0);
    assert_string_equal(row.method, "GET");
    assert_string_equal(row.endpoint, "/v2/bot/profile/" U1);
    assert_string_equal(row.plugin, FRIENDS_INSTANCE);

    clock_advance_ms(60000);
    publish(e, "a", "line.message.text", U1, "{\"type\":\"message\"}");
    clock_advance_ms(60000);
    publish(e, "a", "line.unfollow", U1, "{\"type\":\"unfollow\"}");
    run(e);
    f = get(e, "a", U1);
    assert_int_equal(f.following, 0);
    assert_int_equal(f.last_active_ms, T0 + 60000); /* an unfollow is not an interaction */
    assert_int_equal(f.unfollow_ms, T0 + 120000);

    clock_advance_ms(60000);
    publish(e, "a", "line.follow", U1, "{\"type\":\"follow\",\"follow\":{\"isUnblocked\":true}}");
    run(e);
    f = get(e, "a", U1);
    assert_int_equal(f.following, 1);
    assert_int_equal(f.follows, 2);
    assert_int_equal(f.first_follow_ms, T0);
    assert_int_equal(f.follow_ms, T0 + 180000);
    assert_int_equal(pending(e), 2);
    env_close(e);
}

/* Groups are not friends; a shop without a token records without calling;
 * a standby follow records without calling. */
static void what_is_not_a_friend_or_a_call(void **state)
{
    (void)state;
    env *e = env_open();
    publish(e, "a", "line.message.text", GROUP, "{\"type\":\"message\"}");
    publish(e, "b", "line.follow", U2, "{\"type\":\"follow\"}");
    publish(e, "a", "line.follow", U2, "{\"type\":\"follow\",\"mode\":\"standby\"}");
    run(e);
    store_friend f;
    char err[256];
    assert_int_equal(store_friend_get(e->st, "a", GROUP, &f, err, sizeof err), KZ_ENOTFOUND);
    assert_int_equal(get(e, "b", U2).following, 1);
    assert_int_equal(get(e, "a", U2).following, 1);
    assert_int_equal(pending(e), 0);
    env_close(e);
}

/* The profile comes from the instance's own api.done only. */
static void profile_from_own_api_done(void **state)
{
    (void)state;
    env *e = env_open();
    publish(e, "a", "line.follow", U1, "{\"type\":\"follow\"}");
    publish(e, "a", "api.done", U1,
            "{\"plugin\":\"other\",\"tag\":\"profile\",\"user\":\"" U1 "\","
            "\"response\":{\"displayName\":\"Not mine\"}}");
    publish(e, "a", "api.done", U1,
            "{\"plugin\":\"" FRIENDS_INSTANCE "\",\"tag\":\"profile\",\"user\":\"" U1 "\","
            "\"response\":{\"displayName\":\"ブラウン\",\"pictureUrl\":\"https://x/p.png\","
            "\"statusMessage\":\"hi\",\"language\":\"ja\"}}");
    run(e);
    store_friend f = get(e, "a", U1);
    assert_string_equal(f.display_name, "ブラウン");
    assert_string_equal(f.picture_url, "https://x/p.png");
    assert_string_equal(f.status_message, "hi");
    assert_string_equal(f.language, "ja");
    assert_int_equal(f.profile_ms, T0);
    env_close(e);
}

/* kizuna tag: one event per change, none for a no-change, nothing at all
 * when one operand is bad. */
static void tag_command_publishes_changes(void **state)
{
    (void)state;
    env *e = env_open();
    char *ops[] = {"+vip", "乾燥肌", "-trial"};
    assert_int_equal(friendcli_tag(e->a.c, "a", U1, ops, 3), 0);
    char *bad[] = {"-vip", "+"};
    assert_int_equal(friendcli_tag(e->a.c, "a", U1, bad, 2), 2);
    store_batch b = {0};
    char err[256];
    assert_int_equal(store_events_after(e->st, "a", 0, 100, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 2);
    assert_string_equal(b.ev[0].topic, "friend.tagged");
    assert_string_equal(b.ev[0].user, U1);
    assert_string_equal(b.ev[0].payload, "{\"tag\":\"vip\",\"by\":\"cli\"}");
    assert_string_equal(b.ev[1].payload, "{\"tag\":\"乾燥肌\",\"by\":\"cli\"}");
    store_batch_free(&b);
    assert_int_equal(friendcli_tag(e->a.c, "a", U1, (char *[]){"-vip"}, 1), 0);
    assert_int_equal(store_events_after(e->st, "a", 0, 100, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 3);
    assert_string_equal(b.ev[2].topic, "friend.untagged");
    store_batch_free(&b);
    env_close(e);
}

/* ---- end to end: sandbox → ingress → bus → sender → sandbox → registry ---- */

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void profile_end_to_end(void **state)
{
    (void)state;
    env *e = env_open();
    clock_use_real();
    char err[512], base[64], sbx_base[64];
    ingress *in = NULL;
    ingress_options io = {.listen = "127.0.0.1:0", .c = e->a.c, .b = e->b};
    assert_int_equal(ingress_start(&io, &in, err, sizeof err), 0);
    snprintf(base, sizeof base, "http://127.0.0.1:%u", ingress_port(in));
    sandbox_options so = sandbox_options_from_cfg(e->a.c);
    so.webhook_base = base;
    sandbox *sb = NULL;
    if (sandbox_start(&so, &sb, err, sizeof err) != 0)
        fail_msg("sandbox: %s", err);
    snprintf(sbx_base, sizeof sbx_base, "http://127.0.0.1:%u", sandbox_port(sb));
    sender_options sn = {.store_url = e->a.c->store_url,
                         .sync_mode = STORE_SYNC_NORMAL,
                         .c = e->a.c,
                         .sandbox_base = sbx_base,
                         .b = e->b,
                         .poll_ms = 20};
    sender *snd = NULL;
    assert_int_equal(sender_start(&sn, &snd, err, sizeof err), 0);
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);

    if (sandbox_play(sb, "a", U1, SANDBOX_FOLLOW, NULL, err, sizeof err) != 0)
        fail_msg("follow: %s", err);
    store *sbx = NULL;
    assert_int_equal(store_open(so.store_url, STORE_SYNC_NORMAL, &sbx, err, sizeof err), 0);
    store_sbx_user u;
    assert_int_equal(store_sbx_user_get(sbx, "a", U1, &u, err, sizeof err), 0);
    store_close(sbx);
    int64_t until = mono_ms() + 8000;
    store_friend f = {0};
    while (store_friend_get(e->st, "a", U1, &f, err, sizeof err) != 0 || f.profile_ms == 0) {
        if (mono_ms() > until)
            fail_msg("no profile after 8 s");
        nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
    }
    assert_string_equal(f.display_name, u.display_name);
    assert_int_equal(f.following, 1);
    sender_stop(snd);
    sandbox_stop(sb);
    ingress_stop(in);
    env_close(e);
}

int main(void)
{
    log_set_level(KZ_LOG_ERROR + 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(follow_history),
        cmocka_unit_test(what_is_not_a_friend_or_a_call),
        cmocka_unit_test(profile_from_own_api_done),
        cmocka_unit_test(tag_command_publishes_changes),
        cmocka_unit_test(profile_end_to_end),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
