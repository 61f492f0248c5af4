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
#include "support.h"

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

/* Shop a talks to the sandbox (a_extra: more of its settings); shop b has
 * no LINE access token. */
static env *env_open_with(const char *a_extra)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    ts_tmpdir(e->dir, sizeof e->dir, "friends");
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    ts_write_file(
        e->conf,
        "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; durability = "
        "\"normal\"; listen = \"127.0.0.1:0\"; plugin_path = \"%s\";\n"
        "  sandbox = { listen = \"127.0.0.1:0\"; store = \"sqlite:%s/sbx.db\"; }; };\n"
        "shops = ( { id = \"a\"; line = { channel_secret = \"sec\"; access_token = \"tok\";"
        " api = \"sandbox\"; }; %s },\n"
        "          { id = \"b\"; } );\n",
        e->dir, KZ_FRIEND_FIXTURES, e->dir, a_extra);
    clock_use_virtual(T0);
    ts_app_prepare(&e->a, e->conf);
    ts_bus_new(&e->a, &e->b);
    assert_true(app_open_instances(&e->a, e->b) >= 0);
    assert_true(bus_instance_count(e->b) >= 2); /* core.friends of each shop */
    e->st = ts_store_open(e->a.c->store_url, e->a.c->sync_mode);
    return e;
}

static env *env_open(void)
{
    return env_open_with("");
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

/* ---- the ABI 1.3 slots, through the fx_friend fixture ---- */

#define FX_SHOP                                                                                    \
    "timezone = \"Asia/Tokyo\"; friends = { attributes = { age = \"number\"; birthday = "          \
    "\"date\"; vip = \"bool\"; gender = \"string\"; }; }; plugins = { fx_friend = { segment = "    \
    "\"tag(\\\"vip\\\") && attr.age >= 20 && linked(\\\"shop\\\")\"; }; };"

/* The plugin's kv value (text) or "" when absent. */
static const char *fx_kv(env *e, const char *key)
{
    static char out[4096];
    out[0] = '\0';
    for (size_t i = 0; i < bus_instance_count(e->b); i++) {
        const bus_instance *in = bus_instance_at(e->b, i);
        if (strcmp(in->p->name, "fx_friend") != 0)
            continue;
        void *val = NULL;
        size_t len;
        char err[256];
        if (store_kv_get(e->st, in->id, key, &val, &len, err, sizeof err) == 0)
            snprintf(out, sizeof out, "%.*s", (int)len, (const char *)val);
        free(val);
    }
    return out;
}

/* Runs one operation as user and returns the slot's code. */
static int op(env *e, const char *user, const char *json)
{
    publish(e, "a", "test.op", user, json);
    run(e);
    return atoi(fx_kv(e, "rc"));
}

/* The last event's topic and payload (for friend.* checks). */
static void last_event(env *e, char *topic, char *payload)
{
    store_batch b = {0};
    char err[256];
    assert_int_equal(store_events_after(e->st, "a", 0, 1000, &b, err, sizeof err), 0);
    assert_true(b.n > 0);
    strcpy(topic, b.ev[b.n - 1].topic);
    strcpy(payload, b.ev[b.n - 1].payload);
    store_batch_free(&b);
}

static void slots_tag_attr_link(void **state)
{
    (void)state;
    env *e = env_open_with(FX_SHOP);
    char topic[64], payload[512];
    assert_int_equal(op(e, U1, "{\"op\":\"tag\",\"tag\":\"vip\"}"), 0);
    last_event(e, topic, payload);
    assert_string_equal(topic, "friend.tagged");
    assert_string_equal(payload, "{\"tag\":\"vip\",\"by\":\"fx_friend\"}");
    assert_int_equal(op(e, U1, "{\"op\":\"tag\",\"tag\":\"vip\"}"), KZ_EEXIST);
    assert_int_equal(op(e, U1, "{\"op\":\"has\",\"tag\":\"vip\"}"), 1);
    assert_int_equal(op(e, U1, "{\"op\":\"untag\",\"tag\":\"gold\"}"), KZ_ENOTFOUND);
    /* attributes: declared types only */
    assert_int_equal(op(e, U1, "{\"op\":\"attr\",\"name\":\"age\",\"value\":\"42\"}"), 0);
    last_event(e, topic, payload);
    assert_string_equal(topic, "friend.attribute");
    assert_string_equal(payload,
                        "{\"name\":\"age\",\"value\":42.0,\"previous\":null,\"by\":\"fx_friend\"}");
    assert_int_equal(op(e, U1, "{\"op\":\"attr\",\"name\":\"age\",\"value\":\"x\"}"), KZ_EINVAL);
    assert_int_equal(op(e, U1, "{\"op\":\"attr\",\"name\":\"age\",\"value\":\"true\"}"), KZ_ETYPE);
    assert_int_equal(op(e, U1, "{\"op\":\"attr\",\"name\":\"shoe\",\"value\":\"1\"}"),
                     KZ_ENOTFOUND);
    assert_int_equal(op(e, U1, "{\"op\":\"attr\",\"name\":\"birthday\",\"svalue\":\"1990-02-30\"}"),
                     KZ_ETYPE);
    assert_int_equal(op(e, U1, "{\"op\":\"attr\",\"name\":\"birthday\",\"svalue\":\"1990-02-28\"}"),
                     0);
    assert_int_equal(op(e, U1, "{\"op\":\"attr\",\"name\":\"gender\",\"svalue\":\"女性\"}"), 0);
    /* links: one member per source and friend, a member moves */
    assert_int_equal(op(e, U1, "{\"op\":\"link\",\"source\":\"shop\",\"member\":\"M1\"}"), 0);
    assert_int_equal(op(e, U1, "{\"op\":\"link\",\"source\":\"shop\",\"member\":\"M1\"}"),
                     KZ_EEXIST);
    assert_int_equal(op(e, U2, "{\"op\":\"bylink\",\"source\":\"shop\",\"member\":\"M1\"}"), 0);
    assert_string_equal(fx_kv(e, "out"), U1);
    assert_int_equal(op(e, U2, "{\"op\":\"link\",\"source\":\"shop\",\"member\":\"M1\"}"), 0);
    assert_int_equal(op(e, U1, "{\"op\":\"bylink\",\"source\":\"shop\",\"member\":\"M1\"}"), 0);
    assert_string_equal(fx_kv(e, "out"), U2);
    assert_int_equal(op(e, U1, "{\"op\":\"unlink\",\"source\":\"shop\"}"), KZ_ENOTFOUND);
    /* the whole friend */
    assert_int_equal(op(e, U1, "{\"op\":\"get\"}"), 0);
    const char *json = fx_kv(e, "out");
    assert_non_null(strstr(json, "\"tags\":[\"vip\"]"));
    assert_non_null(strstr(
        json, "\"attributes\":{\"age\":42.0,\"birthday\":\"1990-02-28\",\"gender\":\"女性\"}"));
    assert_non_null(strstr(json, "\"links\":{}"));
    assert_int_equal(op(e, U2, "{\"op\":\"get\"}"), 0);
    assert_non_null(strstr(fx_kv(e, "out"), "\"links\":{\"shop\":\"M1\"}"));
    assert_int_equal(op(e, "U3333333333333333333333333333333c", "{\"op\":\"get\"}"), KZ_ENOTFOUND);
    env_close(e);
}

/* A failing handler's friend changes and their events vanish together. */
static void slots_roll_back(void **state)
{
    (void)state;
    env *e = env_open_with(FX_SHOP);
    publish(e, "a", "test.op", U1, "{\"op\":\"tag\",\"tag\":\"vip\",\"fail\":true}");
    run(e);
    char err[256];
    store_friend f;
    assert_int_equal(store_friend_get(e->st, "a", U1, &f, err, sizeof err), KZ_ENOTFOUND);
    store_batch b = {0};
    assert_int_equal(store_events_after(e->st, "a", 0, 100, &b, err, sizeof err), 0);
    for (size_t i = 0; i < b.n; i++)
        assert_string_not_equal(b.ev[i].topic, "friend.tagged");
    store_batch_free(&b);
    env_close(e);
}

static void slots_segment_and_time(void **state)
{
    (void)state;
    env *e = env_open_with(FX_SHOP);
    assert_int_equal(op(e, U1, "{\"op\":\"match\"}"), 0);
    op(e, U1, "{\"op\":\"tag\",\"tag\":\"vip\"}");
    op(e, U1, "{\"op\":\"attr\",\"name\":\"age\",\"value\":\"30\"}");
    assert_int_equal(op(e, U1, "{\"op\":\"match\"}"), 0);
    op(e, U1, "{\"op\":\"link\",\"source\":\"shop\",\"member\":\"M9\"}");
    assert_int_equal(op(e, U1, "{\"op\":\"match\"}"), 1);
    /* T0 = 2026-11-18T11:06:40Z is 20:06 in Tokyo, a Wednesday */
    publish(e, "a", "test.op", U1, "{\"op\":\"local\"}");
    run(e);
    assert_string_equal(fx_kv(e, "out"), "2026-11-18 20:06 w3 +32400");
    env_close(e);
}

/* A bad expression is refused in shop_open with file, line and column. */
static void segment_error_has_column(void **state)
{
    (void)state;
    env *e = env_open_with("friends = { attributes = { age = \"number\"; }; };\n"
                           "  plugins = { fx_friend = {\n"
                           "    segment = \"attr.age >= \\\"x\\\"\"; }; };");
    char err[1024];
    bus *b2;
    ts_bus_new(&e->a, &b2);
    const cfg_shop *a = &e->a.c->shops[0];
    const plugin *p = loader_find(e->a.l, "fx_friend");
    assert_int_equal(bus_add_instance(b2, p, "a", NULL, a->plugins[0].setting, err, sizeof err),
                     KZ_EFAIL);
    assert_non_null(strstr(err, "kizuna.conf:5: shop 'a': plugin 'fx_friend': segment: column 13: "
                                "attribute 'age' is a number, compared with a string"));
    /* kizuna check reports it the same way, attribute types included */
    app chk = {0};
    assert_int_equal(app_prepare(&chk, e->conf, 1), 1);
    assert_non_null(strstr(chk.d.lines[0], "kizuna.conf:5: shop 'a': plugin 'fx_friend': segment: "
                                           "column 13: attribute 'age' is a number"));
    app_free(&chk);
    bus_free(b2);
    env_close(e);
}

/* ---- end to end: sandbox → ingress → bus → sender → sandbox → registry ---- */

static void profile_end_to_end(void **state)
{
    (void)state;
    env *e = env_open();
    clock_use_real();
    char err[512], base[64], sbx_base[64];
    ingress *in = NULL;
    ingress_options io = {.listen = "127.0.0.1:0", .c = e->a.c, .b = e->b};
    ts_ingress_start(&io, &in, base, sizeof base);
    sandbox_options so = sandbox_options_from_cfg(e->a.c);
    so.webhook_base = base;
    sandbox *sb = NULL;
    ts_sandbox_start(&so, &sb, sbx_base, sizeof sbx_base);
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
    sbx = ts_store_open(so.store_url, STORE_SYNC_NORMAL);
    store_sbx_user u;
    assert_int_equal(store_sbx_user_get(sbx, "a", U1, &u, err, sizeof err), 0);
    store_close(sbx);
    store_friend f = {0};
    TS_WAIT(store_friend_get(e->st, "a", U1, &f, err, sizeof err) == 0 && f.profile_ms != 0, 8000,
            "no profile after 8 s");
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
        cmocka_unit_test(slots_tag_attr_link),
        cmocka_unit_test(slots_roll_back),
        cmocka_unit_test(slots_segment_and_time),
        cmocka_unit_test(segment_error_has_column),
        cmocka_unit_test(profile_end_to_end),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
