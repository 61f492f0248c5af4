/*
 * kizuna chat: the rendering of LINE message objects (a table of message
 * JSON and the exact text the chat shows, numbering of buttons and quick
 * replies), and a scripted chat for real: the LINE sandbox in-process on its
 * own store, a real ingress and bus behind it, a buttons template pushed to
 * the user through /v2/bot/message/push, chat_run reading a script
 * (fmemopen) and writing to a memstream; the follow, the text and the tapped
 * postback must reach the daemon's store as line.* events.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bus.h"
#include "chat.h"
#include "clock.h"
#include "cli.h"
#include "config.h"
#include "daemon.h"
#include "diag.h"
#include "ingress.h"
#include "sandbox.h"
#include "store.h"
#include "support.h"

#define U1 "U1111111111111111111111111111111a"

/* ---- rendering ------------------------------------------------------------- */

typedef struct render_case {
    const char *name;
    const char *json;
    const char *want;
    size_t actions; /* numbered actions it adds */
} render_case;

#define BUTTONS_3                                                                                         \
    "{\"type\":\"template\",\"altText\":\"春の新作のご案内\",\"template\":{\"type\":\"buttons\"," \
    "\"title\":\"春の新作\",\"text\":\"気になる商品はありますか?\",\"actions\":["         \
    "{\"type\":\"postback\",\"label\":\"購入する\",\"data\":\"buy=123\"},"                            \
    "{\"type\":\"message\",\"label\":\"在庫は?\",\"text\":\"在庫はありますか\"},"              \
    "{\"type\":\"uri\",\"label\":\"詳細\",\"uri\":\"https://shop.example/items/123\"}]}}"

static const render_case cases[] = {
    {"text",
     "{\"type\":\"text\",\"text\":\"ご注文ありがとうございます!\\n発送までお待ちください。\"}",
     "shop> ご注文ありがとうございます!\n"
     "      発送までお待ちください。\n",
     0},
    {"text with LINE emoji",
     "{\"type\":\"text\",\"text\":\"$ 新商品 $ 😀 $5 $\",\"emojis\":["
     "{\"index\":0,\"productId\":\"p\",\"emojiId\":\"001\"},"
     "{\"index\":6,\"productId\":\"p\",\"emojiId\":\"002\"},"
     "{\"index\":11,\"productId\":\"p\",\"emojiId\":\"003\"}]}",
     "shop> [emoji] 新商品 [emoji] 😀 [emoji]5 $\n", 0},
    {"textV2",
     "{\"type\":\"textV2\",\"text\":\"{u} さん {e}\",\"substitution\":{"
     "\"u\":{\"type\":\"mention\",\"mentionee\":{\"type\":\"user\",\"userId\":\"" U1
     "\"}},\"e\":{\"type\":\"emoji\",\"productId\":\"p\",\"emojiId\":\"001\"}}}",
     "shop> @" U1 " さん [emoji]\n", 0},
    {"text with terminal control characters",
     "{\"type\":\"text\",\"text\":\"\\u001b[2Jred\\r\\tok\"}", "shop> ?[2Jred?\tok\n", 0},
    {"sticker", "{\"type\":\"sticker\",\"packageId\":\"11537\",\"stickerId\":\"52002734\"}",
     "shop> [sticker 11537/52002734]\n", 0},
    {"image",
     "{\"type\":\"image\",\"originalContentUrl\":\"https://shop.example/a.jpg\","
     "\"previewImageUrl\":\"https://shop.example/a-s.jpg\"}",
     "shop> [image] https://shop.example/a.jpg\n", 0},
    {"video",
     "{\"type\":\"video\",\"originalContentUrl\":\"https://shop.example/v.mp4\","
     "\"previewImageUrl\":\"https://shop.example/v.jpg\"}",
     "shop> [video] https://shop.example/v.mp4\n", 0},
    {"location",
     "{\"type\":\"location\",\"title\":\"Solia 渋谷店\",\"address\":\"東京都渋谷区1-2-3\","
     "\"latitude\":35.6,\"longitude\":139.7}",
     "shop> [location] Solia 渋谷店, 東京都渋谷区1-2-3\n", 0},
    {"buttons with postback, message and uri", BUTTONS_3,
     "shop> 春の新作\n"
     "      気になる商品はありますか?\n"
     "      [1] 購入する (postback)\n"
     "      [2] 在庫は? (message)\n"
     "      [3] 詳細 (link)\n",
     3},
    {"confirm",
     "{\"type\":\"template\",\"altText\":\"受け取り確認\",\"template\":{\"type\":\"confirm\","
     "\"text\":\"商品は届きましたか?\",\"actions\":["
     "{\"type\":\"postback\",\"label\":\"はい\",\"data\":\"received=1\",\"displayText\":\"はい\"},"
     "{\"type\":\"postback\",\"label\":\"いいえ\",\"data\":\"received=0\"}]}}",
     "shop> 商品は届きましたか?\n"
     "      [1] はい (postback)\n"
     "      [2] いいえ (postback)\n",
     2},
    {"carousel numbering continues across columns",
     "{\"type\":\"template\",\"altText\":\"おすすめ\",\"template\":{\"type\":\"carousel\","
     "\"columns\":[{\"title\":\"化粧水\",\"text\":\"2,800円\",\"actions\":["
     "{\"type\":\"postback\",\"label\":\"買う\",\"data\":\"buy=1\"},"
     "{\"type\":\"uri\",\"label\":\"詳細\",\"uri\":\"https://shop.example/1\"}]},"
     "{\"text\":\"乳液 3,200円\",\"actions\":["
     "{\"type\":\"postback\",\"label\":\"買う\",\"data\":\"buy=2\"},"
     "{\"type\":\"datetimepicker\",\"label\":\"予約\",\"data\":\"rsv=2\",\"mode\":\"date\"}]}]}}",
     "shop> [carousel] おすすめ\n"
     "      - 化粧水\n"
     "        2,800円\n"
     "        [1] 買う (postback)\n"
     "        [2] 詳細 (link)\n"
     "      - 乳液 3,200円\n"
     "        [3] 買う (postback)\n"
     "        [4] 予約 (date)\n",
     4},
    {"image carousel",
     "{\"type\":\"template\",\"altText\":\"新作\",\"template\":{\"type\":\"image_carousel\","
     "\"columns\":[{\"imageUrl\":\"https://shop.example/1.jpg\",\"action\":"
     "{\"type\":\"uri\",\"label\":\"見る\",\"uri\":\"https://shop.example/1\"}}]}}",
     "shop> [image carousel] 新作\n"
     "      - [image] https://shop.example/1.jpg\n"
     "        [1] 見る (link)\n",
     1},
    {"flex with nested boxes and buttons",
     "{\"type\":\"flex\",\"altText\":\"ご注文 #1234\",\"contents\":{\"type\":\"bubble\","
     "\"header\":{\"type\":\"box\",\"layout\":\"vertical\",\"contents\":["
     "{\"type\":\"text\",\"text\":\"ご注文ありがとうございます\"}]},"
     "\"hero\":{\"type\":\"image\",\"url\":\"https://shop.example/h.jpg\"},"
     "\"body\":{\"type\":\"box\",\"layout\":\"vertical\",\"contents\":["
     "{\"type\":\"box\",\"layout\":\"horizontal\",\"contents\":["
     "{\"type\":\"text\",\"text\":\"化粧水\"},{\"type\":\"text\",\"text\":\"2,800円\"}]},"
     "{\"type\":\"separator\"},"
     "{\"type\":\"text\",\"contents\":[{\"type\":\"span\",\"text\":\"合計 \"},"
     "{\"type\":\"span\",\"text\":\"2,800円\",\"weight\":\"bold\"}]},"
     "{\"type\":\"box\",\"layout\":\"vertical\",\"action\":{\"type\":\"uri\",\"label\":\"x\","
     "\"uri\":\"https://shop.example/x\"},\"contents\":[{\"type\":\"button\",\"action\":"
     "{\"type\":\"postback\",\"label\":\"キャンセル\",\"data\":\"cancel=1234\"}}]}]},"
     "\"footer\":{\"type\":\"box\",\"layout\":\"vertical\",\"contents\":["
     "{\"type\":\"button\",\"style\":\"link\",\"action\":{\"type\":\"uri\",\"label\":"
     "\"注文を見る\",\"uri\":\"https://shop.example/orders/1234\"}}]}}}",
     "shop> [flex] ご注文 #1234\n"
     "      ご注文ありがとうございます\n"
     "      化粧水\n"
     "      2,800円\n"
     "      合計 2,800円\n"
     "      [1] キャンセル (postback)\n"
     "      [2] 注文を見る (link)\n",
     2},
    {"imagemap",
     "{\"type\":\"imagemap\",\"baseUrl\":\"https://shop.example/im\",\"altText\":\"セール\","
     "\"baseSize\":{\"width\":1040,\"height\":1040},\"actions\":["
     "{\"type\":\"uri\",\"linkUri\":\"https://shop.example/sale\",\"area\":{}},"
     "{\"type\":\"message\",\"text\":\"クーポンください\",\"area\":{}}]}",
     "shop> [imagemap] セール\n"
     "      [1] https://shop.example/sale (link)\n"
     "      [2] クーポンください (message)\n",
     2},
    {"quick reply numbers continue after the buttons",
     "{\"type\":\"template\",\"altText\":\"a\",\"template\":{\"type\":\"buttons\","
     "\"text\":\"いかがでしたか?\",\"actions\":["
     "{\"type\":\"postback\",\"label\":\"満足\",\"data\":\"s=good\"},"
     "{\"type\":\"postback\",\"label\":\"不満\",\"data\":\"s=bad\"}]},"
     "\"quickReply\":{\"items\":["
     "{\"type\":\"action\",\"action\":{\"type\":\"message\",\"label\":\"ふつう\",\"text\":"
     "\"ふつう\"}},"
     "{\"type\":\"action\",\"action\":{\"type\":\"camera\",\"label\":\"写真を送る\"}},"
     "{\"type\":\"action\",\"action\":{\"type\":\"location\",\"label\":\"現在地\"}}]}}",
     "shop> いかがでしたか?\n"
     "      [1] 満足 (postback)\n"
     "      [2] 不満 (postback)\n"
     "      quick reply: [3] ふつう (message)  [4] 写真を送る (camera)  [5] 現在地 (location)\n",
     5},
    {"coupon", "{\"type\":\"coupon\",\"couponId\":\"01JXYZCOUPON\",\"deliveryTag\":\"spring\"}",
     "shop> [coupon] 01JXYZCOUPON\n", 0},
    {"unknown type", "{\"type\":\"hologram\",\"x\":1}", "shop> [hologram]\n", 0},
    {"not an object", "[1,2", "shop> [unreadable message]\n", 0},
};

static void test_render_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        chat_actions acts = {0};
        char *got = chat_render(cases[i].json, &acts);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%s:\n--- want\n%s--- got\n%s", cases[i].name, cases[i].want, got);
        if (acts.n != cases[i].actions)
            fail_msg("%s: %zu actions, want %zu", cases[i].name, acts.n, cases[i].actions);
        free(got);
        chat_actions_clear(&acts);
        got = chat_render(cases[i].json, NULL); /* no list: the same text */
        assert_string_equal(got, cases[i].want);
        free(got);
    }
}

/* Two messages of one batch: numbering continues; the kept actions are the
 * action objects themselves. */
static void test_render_numbering_across_messages(void **state)
{
    (void)state;
    chat_actions acts = {0};
    char *a = chat_render(BUTTONS_3, &acts);
    char *b = chat_render(
        "{\"type\":\"text\",\"text\":\"どうぞ\",\"quickReply\":{\"items\":[{\"type\":\"action\","
        "\"action\":{\"type\":\"clipboard\",\"label\":\"コピー\",\"clipboardText\":\"SPRING500\"}}]"
        "}}",
        &acts);
    assert_string_equal(b, "shop> どうぞ\n      quick reply: [4] コピー (copy)\n");
    assert_int_equal(acts.n, 4);
    assert_non_null(strstr(acts.json[0], "\"data\":\"buy=123\""));
    assert_non_null(strstr(acts.json[2], "items"));
    assert_non_null(strstr(acts.json[3], "SPRING500"));
    free(a);
    free(b);
    chat_actions_clear(&acts);
}

/* ---- a scripted chat against the sandbox and a real daemon ------------------ */

typedef struct env {
    char dir[64];
    char conf[128];
    char store_url[160];
    char sandbox_listen[64];
    app a;
    bus *b;
    ingress *in;
    store *st;
    sandbox *sb;
    char daemon_base[64];
} env;

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    ts_tmpdir(e->dir, sizeof e->dir, "chat");
    setenv("KZ_CHAT_ADMIN", "chat-admin-token", 1);
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    ts_write_file(e->conf,
                  "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; listen = "
                  "\"127.0.0.1:0\"; admin_token = \"env:KZ_CHAT_ADMIN\"; };\n"
                  "shops = ( { id = \"a\"; name = \"Shop A\";\n"
                  "    line = { channel_secret = \"sec-a\"; access_token = \"tok-a\"; api = "
                  "\"sandbox\"; }; } );\n",
                  e->dir);
    snprintf(e->store_url, sizeof e->store_url, "sqlite:%s/sandbox.db", e->dir);
    ts_app_prepare(&e->a, e->conf);
    ts_bus_new(&e->a, &e->b);
    char err[512];
    assert_true(app_open_instances(&e->a, e->b) >= 0);
    ingress_options io = {.listen = "127.0.0.1:0",
                          .c = e->a.c,
                          .b = e->b,
                          .store_url = e->a.c->store_url,
                          .sync_mode = e->a.c->sync_mode};
    ts_ingress_start(&io, &e->in, e->daemon_base, sizeof e->daemon_base);
    e->st = ts_store_open(e->a.c->store_url, e->a.c->sync_mode);
    sandbox_options so = {.listen = "127.0.0.1:0",
                          .store_url = e->store_url,
                          .c = e->a.c,
                          .webhook_base = e->daemon_base};
    if (sandbox_start(&so, &e->sb, err, sizeof err) != 0)
        fail_msg("sandbox_start: %s", err);
    snprintf(e->sandbox_listen, sizeof e->sandbox_listen, "127.0.0.1:%u", sandbox_port(e->sb));
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    sandbox_stop(e->sb);
    ingress_stop(e->in);
    bus_free(e->b);
    store_close(e->st);
    app_free(&e->a);
    ts_rmdir(e->dir);
    free(e);
    return 0;
}

/* The shop pushes `messages` to the user, as kizuna's sender would. */
static void push(env *e, const char *to, const char *messages)
{
    char url[128], *body = NULL;
    snprintf(url, sizeof url, "http://%s/v2/bot/message/push", e->sandbox_listen);
    assert_true(asprintf(&body, "{\"to\":\"%s\",\"messages\":%s}", to, messages) > 0);
    const char *hs[] = {"Content-Type: application/json", "Authorization: Bearer tok-a", NULL};
    ts_resp r;
    assert_int_equal(ts_http(NULL, "POST", url, hs, body, strlen(body), 0, &r), 200);
    free(body);
}

/* Fails unless every want[i] is in out, each after the one before. */
static void expect_in_order(const char *out, const char *const *want, size_t n)
{
    const char *at = out;
    for (size_t i = 0; i < n; i++) {
        const char *p = strstr(at, want[i]);
        if (p == NULL)
            fail_msg("missing (in order) %s\n--- output:\n%s", want[i], out);
        at = p + strlen(want[i]);
    }
}

/* Runs chat_run_opts on `script` with config c (NULL: the env's); returns
 * the output (malloc'd). */
static char *chat_with(env *e, const cfg *with, const char *user, const char *script, int *rc)
{
    cfg c = with != NULL ? *with : *e->a.c; /* the sandbox and daemon where they listen */
    c.sandbox.listen = e->sandbox_listen;
    c.listen = e->daemon_base + strlen("http://");
    FILE *in = fmemopen((void *)script, strlen(script), "r");
    assert_non_null(in);
    char *out = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&out, &len);
    assert_non_null(o);
    chat_options opts = {.reply_wait_ms = 150, .poll_ms = 50};
    *rc = chat_run_opts(&c, "a", user, in, o, &opts);
    fclose(in);
    fclose(o);
    return out;
}

static char *chat(env *e, const char *user, const char *script, int *rc)
{
    return chat_with(e, NULL, user, script, rc);
}

#define PUSHED "[{\"type\":\"text\",\"text\":\"older\"}]"
#define PUSHED2                                                                                    \
    "[{\"type\":\"template\",\"altText\":\"新作\",\"template\":{\"type\":\"buttons\","           \
    "\"text\":\"新作はいかが?\",\"actions\":["                                               \
    "{\"type\":\"postback\",\"label\":\"購入する\",\"data\":\"buy=123\"},"                     \
    "{\"type\":\"uri\",\"label\":\"詳細\",\"uri\":\"https://shop.example/items/123\"}]}}]"

static void test_chat_end_to_end(void **state)
{
    env *e = *state;
    push(e, U1, PUSHED);
    push(e, U1, PUSHED2);
    int rc = -1;
    char *out = chat(e, U1,
                     "/follow\n"
                     "hello\n"
                     "/open 1\n"
                     "/open 2\n"
                     "/tap 7\n"
                     "/tap\n"
                     "/tap 1\n"
                     "/nope\n"
                     "/quit\n"
                     "not sent\n",
                     &rc);
    assert_int_equal(rc, 0);
    const char *want[] = {
        "* chat with shop 'a' as " U1,
        "* you are new to the shop: /follow adds it as a friend\n",
        "* 1 earlier message(s): /inbox shows them\n",
        "shop> 新作はいかが?\n"
        "      [1] 購入する (postback)\n"
        "      [2] 詳細 (link)\n",
        "you> /follow\n* followed 'a'\n",
        "you> hello\n",
        "you> /open 1\n! [1] 購入する is not a link but a postback: /tap 1\n",
        "you> /open 2\nopened https://shop.example/items/123\n",
        "you> /tap 7\n! no [7]: the last messages have [1]..[2]\n",
        "you> /tap\n! which one? /tap N or /open N, N a number shown as [N]\n",
        "you> /tap 1\n* tapped [1] 購入する: postback \"buy=123\"\n",
        "you> /nope\n! unknown command '/nope' (/help lists them)\n",
        "you> /quit\n",
    };
    expect_in_order(out, want, sizeof want / sizeof want[0]);
    assert_null(strstr(out, "older")); /* the earlier request is not shown */
    assert_null(strstr(out, "not sent"));
    free(out);

    /* the daemon stored what the user did, in order */
    store_batch b = {0};
    char err[512];
    assert_int_equal(store_events_after(e->st, "a", 0, 100, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 3);
    assert_string_equal(b.ev[0].topic, "line.follow");
    assert_string_equal(b.ev[1].topic, "line.message.text");
    assert_non_null(strstr(b.ev[1].payload, "\"text\":\"hello\""));
    assert_string_equal(b.ev[2].topic, "line.postback");
    assert_string_equal(b.ev[2].user, U1);
    assert_non_null(strstr(b.ev[2].payload, "\"postback\":{\"data\":\"buy=123\"}"));
    store_batch_free(&b);

    /* a new chat starts with the last push; //text says "/text"; /inbox
     * shows all; block and unblock reach the daemon */
    push(e, U1, "[{\"type\":\"sticker\",\"packageId\":\"11537\",\"stickerId\":\"52002734\"}]");
    out = chat(e, U1, "//slash\n/inbox\n/block\n/unblock\n", &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "* 2 earlier message(s): /inbox shows them\n"
                                "shop> [sticker 11537/52002734]\nyou> //slash\n"));
    assert_non_null(strstr(out, "you> /inbox\nshop> older\nshop> 新作はいかが?\n"));
    assert_non_null(strstr(out, "* blocked 'a'\n"));
    assert_non_null(strstr(out, "* unblocked 'a'\n"));
    free(out);
    assert_int_equal(store_events_after(e->st, "a", 0, 100, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 6);
    assert_string_equal(b.ev[3].topic, "line.message.text");
    assert_non_null(strstr(b.ev[3].payload, "slash\""));
    assert_string_equal(b.ev[4].topic, "line.unfollow");
    assert_string_equal(b.ev[5].topic, "line.follow");
    store_batch_free(&b);
}

static void test_chat_refusals(void **state)
{
    env *e = *state;
    int rc = -1;
    char *out = chat(e, "bob", "/quit\n", &rc);
    assert_int_equal(rc, 2);
    assert_string_equal(out, "kizuna chat: invalid user id 'bob': expected U and 32 hex digits\n");
    free(out);
    cfg c = *e->a.c;
    FILE *in = fmemopen((void *)"", 1, "r");
    size_t len;
    FILE *o = open_memstream(&out, &len);
    assert_int_equal(chat_run(&c, "zz", U1, in, o), 2);
    fclose(o);
    assert_string_equal(out, "kizuna chat: unknown shop 'zz' (or it has no line group)\n");
    free(out);
    /* no sandbox where the config says */
    c.sandbox.listen = "127.0.0.1:1";
    o = open_memstream(&out, &len);
    assert_int_equal(chat_run(&c, "a", U1, in, o), 1);
    fclose(o);
    fclose(in);
    assert_non_null(strstr(out, "! cannot reach the LINE sandbox: "));
    assert_non_null(strstr(out, "is the daemon (`kizuna serve`) or `kizuna sandbox serve` "));
    free(out);
}

/* ---- rich menus ------------------------------------------------------------ */

#define U2 "U2222222222222222222222222222222b"
#define RM_AREA(x, action)                                                                         \
    "{\"bounds\":{\"x\":" #x ",\"y\":0,\"width\":625,\"height\":843},\"action\":" action "}"
#define RM_MENU(bar, areas)                                                                        \
    "{\"size\":{\"width\":2500,\"height\":843},\"selected\":true,\"name\":\"" bar                  \
    "\",\"chatBarText\":\"" bar "\",\"areas\":[" areas "]}"
#define RM_MAIN                                                                                                                 \
    RM_MENU(                                                                                                                    \
        "メニュー",                                                                                                             \
        RM_AREA(                                                                                                                \
            0,                                                                                                                  \
            "{\"type\":\"postback\",\"label\":\"買う\",\"data\":\"buy="                                                       \
            "1\"}") "," RM_AREA(625,                                                                                            \
                                "{\"type\":\"message\",\"label\":"                                                              \
                                "\"在庫は?\",\"text\":"                                                                      \
                                "\"在庫はありますか\"}") "," RM_AREA(1250,                                                      \
                                                                     "{\"type\":\"uri\","                                       \
                                                                     "\"label\":\"詳細\",\"uri\":"                            \
                                                                     "\"https://shop."                                          \
                                                                     "example/\"}") "," RM_AREA(1875,                           \
                                                                                                "{\"type\":\"richmenuswitch\"," \
                                                                                                "\"label\":\"次へ\","         \
                                                                                                "\"richMenuAliasId\":\"page-"   \
                                                                                                "2\",\"data\":\"switch=2\"}"))
#define RM_PAGE2                                                                                   \
    RM_MENU("ページ2", RM_AREA(0, "{\"type\":\"postback\",\"label\":\"戻る\",\"data\":\"page="   \
                                  "1\"}"))

/* A call to the sandbox's Messaging API as shop a; returns the body. */
static char *api(env *e, const char *path, const char *ctype, const void *data, size_t len,
                 long want)
{
    char url[256], hdr[96];
    snprintf(url, sizeof url, "http://%s%s", e->sandbox_listen, path);
    snprintf(hdr, sizeof hdr, "Content-Type: %s", ctype);
    const char *hs[] = {hdr, "Authorization: Bearer tok-a", NULL};
    ts_resp r;
    ts_http(NULL, "POST", url, hs, data, len, 0, &r);
    if (r.code != want)
        fail_msg("%s answered %ld: %s", path, r.code, r.body);
    char *body = strdup(r.body);
    assert_non_null(body);
    return body;
}

/* Creates a menu with an image; id receives its id. */
static void rich_menu(env *e, const char *json, char id[48])
{
    unsigned char png[TS_PNG_HEAD];
    ts_png_head(2500, 843, png);
    char *b = api(e, "/v2/bot/richmenu", "application/json", json, strlen(json), 200);
    assert_int_equal(sscanf(b, "{\"richMenuId\":\"%41[^\"]\"}", id), 1);
    free(b);
    char path[128];
    snprintf(path, sizeof path, "/v2/bot/richmenu/%s/content", id);
    free(api(e, path, "image/png", png, sizeof png, 200));
}

/* Runs `kizuna sandbox -c FILE richmenu a USER [--json]` in-process against
 * the test's sandbox; returns what it printed (malloc'd). */
static char *cli_richmenu(env *e, const char *user, int json, int *rc)
{
    char conf[200], out_path[200];
    snprintf(conf, sizeof conf, "%s/cli.conf", e->dir);
    snprintf(out_path, sizeof out_path, "%s/cli.out", e->dir);
    ts_write_file(conf,
                  "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\";\n"
                  "  sandbox = { listen = \"%s\"; store = \"%s\"; }; };\n"
                  "shops = ( { id = \"a\"; line = { channel_secret = \"sec-a\";\n"
                  "  access_token = \"tok-a\"; api = \"sandbox\"; }; } );\n",
                  e->dir, e->sandbox_listen, e->store_url);
    char a0[] = "kizuna", a1[] = "sandbox", a2[] = "-c", a4[] = "richmenu", a5[] = "a",
         a7[] = "--json", u[40];
    snprintf(u, sizeof u, "%s", user);
    char *argv[] = {a0, a1, a2, conf, a4, a5, u, a7, NULL};
    fflush(stdout);
    int saved = dup(1), fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 1);
    close(fd);
    *rc = cli_main(json ? 8 : 7, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    FILE *f = fopen(out_path, "r");
    assert_non_null(f);
    char *out = calloc(1, 8192);
    assert_non_null(out);
    size_t n = fread(out, 1, 8191, f);
    out[n] = '\0';
    fclose(f);
    return out;
}

static void test_chat_rich_menu(void **state)
{
    env *e = *state;
    int rc = -1;
    char *out = chat(e, U1, "/menu\n/menu 1\n", &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "you> /menu\n* 'a' shows you no rich menu\n"
                                "you> /menu 1\n* 'a' shows you no rich menu\n"));
    free(out);
    char main_id[48], page2[48], path[128], body[160];
    rich_menu(e, RM_MAIN, main_id);
    rich_menu(e, RM_PAGE2, page2);
    snprintf(body, sizeof body, "{\"richMenuAliasId\":\"page-2\",\"richMenuId\":\"%s\"}", page2);
    free(api(e, "/v2/bot/richmenu/alias", "application/json", body, strlen(body), 200));
    snprintf(path, sizeof path, "/v2/bot/user/all/richmenu/%s", main_id);
    free(api(e, path, "application/json", "", 0, 200));

    out = chat(e, U1, "/menu\n/menu 1\n/menu 2\n/menu 3\n/menu 4\n/menu 9\n/menu x\n", &rc);
    assert_int_equal(rc, 0);
    const char *want[] = {
        "you> /menu\n"
        "menu> メニュー\n"
        "      [1] 買う (postback)\n"
        "      [2] 在庫は? (message)\n"
        "      [3] 詳細 (link)\n"
        "      [4] 次へ (menu)\n",
        "you> /menu 1\n* tapped [1] 買う: postback \"buy=1\"\n",
        "you> /menu 2\nyou> 在庫はありますか\n",
        "you> /menu 3\nopened https://shop.example/\n",
        "you> /menu 4\n* tapped [4] 次へ: rich menu 'page-2'\n"
        "menu> ページ2\n"
        "      [1] 戻る (postback)\n",
        "you> /menu 9\n! no [9]: the rich menu has [1]..[1]\n",
        "you> /menu x\n! no [x]: the rich menu has [1]..[1]\n",
    };
    expect_in_order(out, want, sizeof want / sizeof want[0]);
    free(out);

    store_batch b = {0};
    char err[512];
    assert_int_equal(store_events_after(e->st, "a", 0, 100, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 3);
    assert_non_null(strstr(b.ev[0].payload, "\"postback\":{\"data\":\"buy=1\"}"));
    assert_non_null(strstr(b.ev[1].payload, "\"text\":\"在庫はありますか\""));
    assert_string_equal(b.ev[2].topic, "line.postback");
    assert_non_null(strstr(b.ev[2].payload, "\"postback\":{\"data\":\"switch=2\",\"params\":{"
                                            "\"newRichMenuAliasId\":\"page-2\",\"status\":"
                                            "\"SUCCESS\"}}"));
    store_batch_free(&b);

    /* what `kizuna sandbox richmenu` prints: U1 now has page 2 linked, U2
     * sees the default */
    char *text = cli_richmenu(e, U2, 0, &rc);
    assert_int_equal(rc, 0);
    char expect[1024];
    snprintf(expect, sizeof expect,
             U2 " (shop a): rich menu %s \"メニュー\" (the shop's default), 2500x843\n"
                "chat bar: メニュー\n"
                "[1] 買う (postback) data=\"buy=1\" at 0,0 625x843\n"
                "[2] 在庫は? (message) text=\"在庫はありますか\" at 625,0 625x843\n"
                "[3] 詳細 (link) uri=\"https://shop.example/\" at 1250,0 625x843\n"
                "[4] 次へ (menu) data=\"switch=2\" richMenuAliasId=\"page-2\" at 1875,0 625x843\n",
             main_id);
    assert_string_equal(text, expect);
    free(text);
    text = cli_richmenu(e, U1, 0, &rc);
    assert_int_equal(rc, 0);
    snprintf(expect, sizeof expect,
             U1 " (shop a): rich menu %s \"ページ2\" (linked to the user), 2500x843\n"
                "chat bar: ページ2\n"
                "[1] 戻る (postback) data=\"page=1\" at 0,0 625x843\n",
             page2);
    assert_string_equal(text, expect);
    free(text);
    text = cli_richmenu(e, U1, 1, &rc);
    assert_int_equal(rc, 0);
    snprintf(expect, sizeof expect,
             "{\"shop\":\"a\",\"userId\":\"" U1 "\",\"source\":\"user\",\"richMenuId\":\"%s\","
             "\"richMenu\":{\"richMenuId\":\"%s\",",
             page2, page2);
    assert_memory_equal(text, expect, strlen(expect));
    free(text);
}

/* /advance walks the daemon's virtual clock through the admin API; bad
 * durations, a real clock and a config without admin token are said. */
static void advance_moves_the_virtual_clock(void **state)
{
    env *e = *state;
    int rc;
    clock_use_virtual(1796083200000LL); /* 2026-12-01T00:00:00Z */
    char *out = chat(e, U1, "/advance\n/advance 1d\n/advance 3x\n/quit\n", &rc);
    assert_int_equal(rc, 0);
    static const char *const want[] = {
        "! /advance DURATION, e.g. /advance 1d",
        "* clock at 2026-12-02T00:00:00Z",
        "! /advance: admin API: 400 ",
    };
    expect_in_order(out, want, 3);
    free(out);
    assert_int_equal(clock_now_ms(), 1796083200000LL + 86400000LL);
    clock_use_real();
    out = chat(e, U1, "/advance 1h\n/quit\n", &rc);
    assert_non_null(strstr(out, "! /advance: admin API: 409 "));
    free(out);
    cfg no_token = *e->a.c;
    no_token.admin_token = NULL;
    out = chat_with(e, &no_token, U1, "/advance 1h\n/quit\n", &rc);
    assert_non_null(strstr(out, "! /advance moves the daemon's virtual clock through its admin "
                                "API: set kizuna.admin_token"));
    free(out);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_table),
        cmocka_unit_test(test_render_numbering_across_messages),
        cmocka_unit_test_setup_teardown(test_chat_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(advance_moves_the_virtual_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chat_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chat_rich_menu, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
