/*
 * The LINE sandbox in-process, for real: a config with shops `a` (token
 * "tok-a", secret "sec-a") and `b` (token "tok-b"), the sandbox on
 * 127.0.0.1:<free port> with its own store in a temp dir, libcurl as
 * kizuna's LINE client. Every endpoint's success answer, every error with
 * its exact status and body, rate and monthly limits, faults, the inbox, a
 * restart on the same store, and a played user reaching a real ingress and
 * bus as a signed line.follow webhook.
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
#include "config.h"
#include "daemon.h"
#include "diag.h"
#include "ingress.h"
#include "sandbox.h"
#include "store.h"
#include "support.h"

#define U1 "U1111111111111111111111111111111a"
#define U2 "U2222222222222222222222222222222b"
#define U3 "U3333333333333333333333333333333c"
#define KEY1 "123e4567-e89b-12d3-a456-426614174000"
#define TEXT_MSG "{\"type\":\"text\",\"text\":\"hello\"}"
#define PUSH_BODY "{\"to\":\"" U1 "\",\"messages\":[" TEXT_MSG "]}"

typedef struct env {
    char dir[64];
    char conf[128];
    char store_url[160];
    cfg *c;
    sandbox *sb;
    char base[64];
} env;

static void write_conf(env *e)
{
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    ts_write_file(
        e->conf,
        "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; listen = "
        "\"127.0.0.1:0\"; };\n"
        "shops = (\n"
        "  { id = \"a\"; name = \"Shop A\";\n"
        "    line = { channel_secret = \"sec-a\"; access_token = \"tok-a\"; api = "
        "\"sandbox\"; }; },\n"
        "  { id = \"b\"; line = { channel_secret = \"sec-b\"; access_token = \"tok-b\"; }; },\n"
        "  { id = \"c\"; }\n"
        ");\n",
        e->dir);
}

static void start(env *e, const sandbox_options *extra)
{
    sandbox_options o = extra ? *extra : (sandbox_options){0};
    o.listen = "127.0.0.1:0";
    o.store_url = e->store_url;
    o.c = e->c;
    if (o.webhook_base == NULL)
        o.webhook_base = "http://127.0.0.1:1";
    ts_sandbox_start(&o, &e->sb, e->base, sizeof e->base);
}

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    ts_tmpdir(e->dir, sizeof e->dir, "sandbox");
    write_conf(e);
    snprintf(e->store_url, sizeof e->store_url, "sqlite:%s/sandbox.db", e->dir);
    diag d = {0};
    if (cfg_load(e->conf, &e->c, &d) != 0 || diag_count(&d) > 0) {
        diag_print(&d, stderr);
        fail_msg("config refused");
    }
    diag_free(&d);
    *state = e;
    return 0;
}

static int setup_started(void **state)
{
    setup(state);
    start(*state, NULL);
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    sandbox_stop(e->sb);
    cfg_free(e->c);
    ts_rmdir(e->dir);
    free(e);
    return 0;
}

/* ---- HTTP client ---------------------------------------------------------- */

typedef ts_resp resp;

/* One request. token NULL: no Authorization; retry_key NULL: none. A
 * transport error is left in r->curl (the fault tests expect some). */
static long req(env *e, const char *method, const char *path, const char *token,
                const char *retry_key, const char *body, resp *r)
{
    char url[512], auth[256], key[256];
    snprintf(url, sizeof url, "%s%s", e->base, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
    snprintf(key, sizeof key, "X-Line-Retry-Key: %s", retry_key ? retry_key : "");
    const char *hdrs[4] = {"Content-Type: application/json"};
    size_t n = 1;
    if (token != NULL)
        hdrs[n++] = auth;
    if (retry_key != NULL)
        hdrs[n++] = key;
    return ts_http(NULL, method, url, hdrs, body, body ? strlen(body) : 0, TS_HTTP_MAY_FAIL, r);
}

static long post(env *e, const char *path, const char *token, const char *key, const char *body,
                 resp *r)
{
    return req(e, "POST", path, token, key, body, r);
}

static long get(env *e, const char *path, const char *token, resp *r)
{
    return req(e, "GET", path, token, NULL, NULL, r);
}

/* Asserts status and exact body. */
#define EXPECT(r, status, text)                                                                    \
    do {                                                                                           \
        assert_int_equal((r)->code, status);                                                       \
        assert_string_equal((r)->body, text);                                                      \
    } while (0)

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Messages in the user's inbox (via the sandbox's HTTP inbox). */
static size_t inbox_count(env *e, const char *shop, const char *user, resp *r)
{
    char path[256];
    snprintf(path, sizeof path, "/sandbox/shops/%s/users/%s/inbox", shop, user);
    assert_int_equal(get(e, path, NULL, r), 200);
    return count(r->body, "\"endpoint\":");
}

/* Puts a user into the sandbox's store from a second connection. */
static void add_user(env *e, const char *shop, const char *user, int following)
{
    store *st = NULL;
    char err[256];
    st = ts_store_open(e->store_url, STORE_SYNC_NORMAL);
    store_sbx_user u = {.following = following, .blocked = !following, .since_ms = 1};
    snprintf(u.user, sizeof u.user, "%s", user);
    snprintf(u.display_name, sizeof u.display_name, "Name %s", user + 29);
    assert_int_equal(store_sbx_user_put(st, shop, &u, err, sizeof err), 0);
    store_close(st);
}

static char *repeat_json(const char *item, int n, const char *sep)
{
    size_t cap = (strlen(item) + strlen(sep)) * (size_t)n + 1;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(out, sep);
        strcat(out, item);
    }
    return out;
}

/* ---- auth ----------------------------------------------------------------- */

static void test_auth(void **state)
{
    env *e = *state;
    resp r;
    post(e, "/v2/bot/message/push", NULL, NULL, PUSH_BODY, &r);
    EXPECT(&r, 401,
           "{\"message\":\"Authorization header required. Must follow the scheme, "
           "'Authorization: Bearer <ACCESS TOKEN>'\"}");
    assert_int_equal(strlen(ts_header(&r, "x-line-request-id")), 36);
    post(e, "/v2/bot/message/push", "nope", NULL, PUSH_BODY, &r);
    EXPECT(&r, 401,
           "{\"message\":\"Authentication failed due to the following reason: invalid token. "
           "Confirm that the access token in the authorization header is valid.\"}");
    get(e, "/v2/bot/info", "nope", &r);
    assert_int_equal(r.code, 401);
    get(e, "/v2/bot/nothing/here", "tok-a", &r);
    EXPECT(&r, 404, "{\"message\":\"Not found\"}");
}

/* ---- push ----------------------------------------------------------------- */

static void test_push_ok_and_inbox(void **state)
{
    env *e = *state;
    resp r;
    post(e, "/v2/bot/message/push", "tok-a", NULL,
         "{\"to\":\"" U1 "\",\"messages\":[" TEXT_MSG
         ",{\"type\":\"sticker\",\"packageId\":\"446\","
         "\"stickerId\":\"1988\"}]}",
         &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(strlen(ts_header(&r, "x-line-request-id")), 36);
    assert_non_null(strstr(r.body, "{\"sentMessages\":[{\"id\":\""));
    assert_int_equal(count(r.body, "\"quoteToken\":"), 2);
    char first_id[64];
    snprintf(first_id, sizeof first_id, "%s", ts_header(&r, "x-line-request-id"));
    /* each answer has its own request id */
    post(e, "/v2/bot/message/push", "tok-a", NULL, PUSH_BODY, &r);
    assert_int_equal(r.code, 200);
    assert_string_not_equal(ts_header(&r, "x-line-request-id"), first_id);

    assert_int_equal(inbox_count(e, "a", U1, &r), 3);
    assert_non_null(strstr(r.body, "\"endpoint\":\"push\""));
    assert_non_null(strstr(r.body, first_id));
    assert_non_null(strstr(r.body,
                           "\"message\":{\"type\":\"sticker\",\"packageId\":\"446\",\"stickerId\":"
                           "\"1988\"}"));
    /* per shop: b's user with the same id received nothing */
    assert_int_equal(inbox_count(e, "b", U1, &r), 0);
    /* blocked users get a 200 and nothing */
    add_user(e, "a", U2, 0);
    post(e, "/v2/bot/message/push", "tok-a", NULL,
         "{\"to\":\"" U2 "\",\"messages\":[" TEXT_MSG "]}", &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(inbox_count(e, "a", U2, &r), 0);
}

static void test_push_errors(void **state)
{
    env *e = *state;
    resp r;
    char *six = repeat_json(TEXT_MSG, 6, ",");
    char body[4096];
    snprintf(body, sizeof body, "{\"to\":\"" U1 "\",\"messages\":[%s]}", six);
    free(six);
    post(e, "/v2/bot/message/push", "tok-a", NULL, body, &r);
    EXPECT(&r, 400,
           "{\"message\":\"The request body has 1 error(s)\",\"details\":[{\"message\":\"Size "
           "must be between 1 and 5\",\"property\":\"messages\"}]}");

    post(e, "/v2/bot/message/push", "tok-a", NULL,
         "{\"to\":\"" U1 "\",\"messages\":[{\"type\":\"hologram\"}]}", &r);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.body, "{\"message\":\"The request body has 1 error(s)\""));
    assert_non_null(strstr(r.body, "\"property\":\"messages[0].type\""));

    char *text = malloc(5001 + 256);
    assert_non_null(text);
    int n = snprintf(text, 256, "{\"to\":\"" U1 "\",\"messages\":[{\"type\":\"text\",\"text\":\"");
    memset(text + n, 'x', 5001);
    strcpy(text + n + 5001, "\"}]}");
    post(e, "/v2/bot/message/push", "tok-a", NULL, text, &r);
    free(text);
    EXPECT(&r, 400,
           "{\"message\":\"The request body has 1 error(s)\",\"details\":[{\"message\":\"Length "
           "must be between 0 and 5000\",\"property\":\"messages[0].text\"}]}");

    post(e, "/v2/bot/message/push", "tok-a", NULL, "{\"to\":\"Uxyz\",\"messages\":[" TEXT_MSG "]}",
         &r);
    EXPECT(&r, 400,
           "{\"message\":\"The property, 'to', in the request body is invalid (line: -, column: "
           "-)\"}");
    post(e, "/v2/bot/message/push", "tok-a", NULL, "{\"messages\":[" TEXT_MSG "]}", &r);
    EXPECT(&r, 400,
           "{\"message\":\"The property, 'to', in the request body is invalid (line: -, column: "
           "-)\"}");
    post(e, "/v2/bot/message/push", "tok-a", NULL, "{\"to\":", &r);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.body, "The request body could not be parsed as JSON"));
    /* nothing of it was delivered */
    assert_int_equal(inbox_count(e, "a", U1, &r), 0);
}

/* ---- retry keys ----------------------------------------------------------- */

static void test_retry_key(void **state)
{
    env *e = *state;
    resp r, first;
    post(e, "/v2/bot/message/push", "tok-a", "not-a-uuid", PUSH_BODY, &r);
    EXPECT(&r, 400,
           "{\"message\":\"The value of the X-Line-Retry-Key header is invalid; it must be a UUID "
           "in hex form\"}");
    post(e, "/v2/bot/message/push", "tok-a", KEY1, PUSH_BODY, &first);
    assert_int_equal(first.code, 200);
    post(e, "/v2/bot/message/push", "tok-a", KEY1, PUSH_BODY, &r);
    assert_int_equal(r.code, 409);
    assert_string_equal(ts_header(&r, "x-line-accepted-request-id"),
                        ts_header(&first, "x-line-request-id"));
    assert_string_not_equal(ts_header(&r, "x-line-request-id"),
                            ts_header(&first, "x-line-request-id"));
    /* the 409 repeats the first answer's sentMessages */
    char want[2100];
    snprintf(want, sizeof want, "{\"message\":\"The retry key is already accepted\",%.2000s",
             first.body + 1);
    assert_string_equal(r.body, want);
    assert_int_equal(inbox_count(e, "a", U1, &r), 1);
    /* a key is per channel */
    post(e, "/v2/bot/message/push", "tok-b", KEY1, PUSH_BODY, &r);
    assert_int_equal(r.code, 200);
    /* multicast: 409 body without sentMessages */
    const char *mc = "{\"to\":[\"" U1 "\",\"" U2 "\"],\"messages\":[" TEXT_MSG "]}";
    post(e, "/v2/bot/message/multicast", "tok-a", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", mc,
         &first);
    EXPECT(&first, 200, "{}");
    post(e, "/v2/bot/message/multicast", "tok-a", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", mc, &r);
    EXPECT(&r, 409, "{\"message\":\"The retry key is already accepted\"}");
    assert_string_equal(ts_header(&r, "x-line-accepted-request-id"),
                        ts_header(&first, "x-line-request-id"));
    /* reply does not take one */
    post(e, "/v2/bot/message/reply", "tok-a", KEY1,
         "{\"replyToken\":\"x\",\"messages\":[" TEXT_MSG "]}", &r);
    EXPECT(&r, 400, "{\"message\":\"The retry key is not supported by this endpoint\"}");
}

/* ---- reply ------------------------------------------------------------------ */

static void test_reply(void **state)
{
    env *e = *state;
    resp r;
    char token[33], err[256], body[512];
    assert_int_equal(sandbox_issue_reply_token(e->sb, "a", U1, token, err, sizeof err), 0);
    snprintf(body, sizeof body, "{\"replyToken\":\"%s\",\"messages\":[" TEXT_MSG "]}", token);
    post(e, "/v2/bot/message/reply", "tok-a", NULL, body, &r);
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.body, "{\"sentMessages\":[{\"id\":\""));
    assert_int_equal(inbox_count(e, "a", U1, &r), 1);
    assert_non_null(strstr(r.body, "\"endpoint\":\"reply\""));
    /* used */
    post(e, "/v2/bot/message/reply", "tok-a", NULL, body, &r);
    EXPECT(&r, 400, "{\"message\":\"Invalid reply token\"}");
    /* never issued */
    post(e, "/v2/bot/message/reply", "tok-a", NULL,
         "{\"replyToken\":\"00000000000000000000000000000000\",\"messages\":[" TEXT_MSG "]}", &r);
    EXPECT(&r, 400, "{\"message\":\"Invalid reply token\"}");
    /* another channel's token */
    assert_int_equal(sandbox_issue_reply_token(e->sb, "a", U1, token, err, sizeof err), 0);
    snprintf(body, sizeof body, "{\"replyToken\":\"%s\",\"messages\":[" TEXT_MSG "]}", token);
    post(e, "/v2/bot/message/reply", "tok-b", NULL, body, &r);
    EXPECT(&r, 400, "{\"message\":\"Invalid reply token\"}");
    /* missing */
    post(e, "/v2/bot/message/reply", "tok-a", NULL, "{\"messages\":[" TEXT_MSG "]}", &r);
    EXPECT(&r, 400,
           "{\"message\":\"The request body has 1 error(s)\",\"details\":[{\"message\":\"May not "
           "be empty\",\"property\":\"replyToken\"}]}");
    /* expired: a minute later (virtual clock) */
    clock_use_virtual(clock_now_ms());
    assert_int_equal(sandbox_issue_reply_token(e->sb, "a", U1, token, err, sizeof err), 0);
    clock_advance_ms(60001);
    snprintf(body, sizeof body, "{\"replyToken\":\"%s\",\"messages\":[" TEXT_MSG "]}", token);
    post(e, "/v2/bot/message/reply", "tok-a", NULL, body, &r);
    clock_use_real();
    EXPECT(&r, 400, "{\"message\":\"Invalid reply token\"}");
    assert_int_equal(inbox_count(e, "a", U1, &r), 1);
}

/* ---- multicast, broadcast, narrowcast, validate ----------------------------- */

static void test_multicast(void **state)
{
    env *e = *state;
    resp r;
    post(e, "/v2/bot/message/multicast", "tok-a", NULL,
         "{\"to\":[\"" U1 "\",\"" U2 "\",\"" U1 "\"],\"messages\":[" TEXT_MSG "," TEXT_MSG "]}",
         &r);
    EXPECT(&r, 200, "{}");
    assert_int_equal(inbox_count(e, "a", U1, &r), 2); /* listed twice, received once */
    assert_int_equal(inbox_count(e, "a", U2, &r), 2);
    assert_non_null(strstr(r.body, "\"endpoint\":\"multicast\""));
    /* 501 recipients */
    char *ids = repeat_json("\"" U3 "\"", 501, ",");
    char *body = malloc(strlen(ids) + 256);
    assert_non_null(body);
    sprintf(body, "{\"to\":[%s],\"messages\":[" TEXT_MSG "]}", ids);
    post(e, "/v2/bot/message/multicast", "tok-a", NULL, body, &r);
    EXPECT(&r, 400,
           "{\"message\":\"The request body has 1 error(s)\",\"details\":[{\"message\":\"Size "
           "must be between 1 and 500\",\"property\":\"to\"}]}");
    /* 500 is fine */
    sprintf(body, "{\"to\":[%.*s],\"messages\":[" TEXT_MSG "]}", (int)(strlen(ids) - 36), ids);
    post(e, "/v2/bot/message/multicast", "tok-a", NULL, body, &r);
    EXPECT(&r, 200, "{}");
    free(ids);
    free(body);
    post(e, "/v2/bot/message/multicast", "tok-a", NULL, "{\"to\":[],\"messages\":[" TEXT_MSG "]}",
         &r);
    EXPECT(&r, 400,
           "{\"message\":\"The request body has 1 error(s)\",\"details\":[{\"message\":\"Size "
           "must be between 1 and 500\",\"property\":\"to\"}]}");
    post(e, "/v2/bot/message/multicast", "tok-a", NULL,
         "{\"to\":[\"" U1 "\",\"bad\"],\"messages\":[" TEXT_MSG "]}", &r);
    EXPECT(&r, 400,
           "{\"message\":\"The property, 'to[1]', in the request body is invalid (line: -, "
           "column: -)\"}");
}

static void test_broadcast_narrowcast(void **state)
{
    env *e = *state;
    resp r;
    add_user(e, "a", U1, 1);
    add_user(e, "a", U2, 1);
    add_user(e, "a", U3, 0); /* blocked */
    post(e, "/v2/bot/message/broadcast", "tok-a", NULL, "{\"messages\":[" TEXT_MSG "]}", &r);
    EXPECT(&r, 200, "{}");
    assert_int_equal(inbox_count(e, "a", U1, &r), 1);
    assert_int_equal(inbox_count(e, "a", U2, &r), 1);
    assert_int_equal(inbox_count(e, "a", U3, &r), 0);
    post(e, "/v2/bot/message/narrowcast", "tok-a", NULL, "{\"messages\":[" TEXT_MSG "]}", &r);
    EXPECT(&r, 202, "{}");
    char path[160], id[64];
    snprintf(id, sizeof id, "%s", ts_header(&r, "x-line-request-id"));
    assert_int_equal(inbox_count(e, "a", U2, &r), 2);
    assert_non_null(strstr(r.body, "\"endpoint\":\"narrowcast\""));
    snprintf(path, sizeof path, "/v2/bot/message/progress/narrowcast?requestId=%s", id);
    get(e, path, "tok-a", &r);
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.body, "{\"phase\":\"succeeded\",\"successCount\":2,\"failureCount\":0,"
                                   "\"targetCount\":2,\"acceptedTime\":\""));
    get(e, "/v2/bot/message/progress/narrowcast", "tok-a", &r);
    EXPECT(&r, 400,
           "{\"message\":\"The request body has 1 error(s)\",\"details\":[{\"message\":\"May not "
           "be empty\",\"property\":\"requestId\"}]}");
    /* consumption counts recipients, not reply */
    get(e, "/v2/bot/message/quota/consumption", "tok-a", &r);
    EXPECT(&r, 200, "{\"totalUsage\":4}");
    get(e, "/v2/bot/message/quota", "tok-a", &r);
    EXPECT(&r, 200, "{\"type\":\"none\"}");
}

static void test_validate(void **state)
{
    env *e = *state;
    resp r;
    static const char *const kinds[] = {"reply", "push", "multicast", "narrowcast", "broadcast"};
    for (int i = 0; i < 5; i++) {
        char path[80];
        snprintf(path, sizeof path, "/v2/bot/message/validate/%s", kinds[i]);
        post(e, path, "tok-a", NULL, "{\"messages\":[" TEXT_MSG "]}", &r);
        EXPECT(&r, 200, "{}");
        post(e, path, "tok-a", NULL, "{\"messages\":[]}", &r);
        EXPECT(&r, 400,
               "{\"message\":\"The request body has 1 error(s)\",\"details\":[{\"message\":\"Size "
               "must be between 1 and 5\",\"property\":\"messages\"}]}");
    }
    assert_int_equal(inbox_count(e, "a", U1, &r), 0);
}

/* ---- profile, info, quota, link token -------------------------------------- */

static void test_profile_info_link(void **state)
{
    env *e = *state;
    resp r;
    add_user(e, "a", U1, 1);
    get(e, "/v2/bot/profile/" U1, "tok-a", &r);
    EXPECT(&r, 200, "{\"displayName\":\"Name 111a\",\"userId\":\"" U1 "\",\"language\":\"ja\"}");
    get(e, "/v2/bot/profile/" U2, "tok-a", &r);
    EXPECT(&r, 404, "{\"message\":\"Not found\"}");
    get(e, "/v2/bot/profile/" U1, "tok-b", &r);
    EXPECT(&r, 404, "{\"message\":\"Not found\"}");
    get(e, "/v2/bot/info", "tok-a", &r);
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.body, "{\"userId\":\"U"));
    assert_non_null(strstr(r.body, "\"basicId\":\"@a\",\"displayName\":\"Shop A\",\"chatMode\":"
                                   "\"bot\",\"markAsReadMode\":\"auto\"}"));
    post(e, "/v2/bot/user/" U1 "/linkToken", "tok-a", NULL, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(strlen(r.body), strlen("{\"linkToken\":\"\"}") + 32);
    get(e, "/v2/bot/message/quota/consumption", "tok-a", &r);
    EXPECT(&r, 200, "{\"totalUsage\":0}");
}

static void test_misc_errors(void **state)
{
    env *e = *state;
    resp r;
    /* content type */
    char url[128];
    snprintf(url, sizeof url, "%s/v2/bot/message/push", e->base);
    const char *hs[] = {"Authorization: Bearer tok-a", "Content-Type: text/plain", NULL};
    ts_http(NULL, "POST", url, hs, PUSH_BODY, strlen(PUSH_BODY), 0, &r);
    EXPECT(&r, 415, "{\"message\":\"The content type, text/plain, is not supported\"}");
    /* over 2 MB */
    size_t big = (2u << 20) + 10;
    char *body = malloc(big + 1);
    assert_non_null(body);
    memset(body, ' ', big);
    body[big] = '\0';
    post(e, "/v2/bot/message/push", "tok-a", NULL, body, &r);
    free(body);
    EXPECT(&r, 413, "{\"message\":\"The request body is over 2 MB\"}");
    /* link token for a bad user id */
    post(e, "/v2/bot/user/nobody/linkToken", "tok-a", NULL, NULL, &r);
    EXPECT(&r, 400, "{\"message\":\"The value for the 'userId' parameter is invalid\"}");
    /* wrong method on a known path */
    get(e, "/v2/bot/message/push", "tok-a", &r);
    EXPECT(&r, 404, "{\"message\":\"Not found\"}");
    /* sandbox routes */
    get(e, "/sandbox/shops/zz/users/" U1 "/inbox", NULL, &r);
    EXPECT(&r, 404, "{\"message\":\"unknown shop 'zz'\"}");
    get(e, "/sandbox/nothing", NULL, &r);
    EXPECT(&r, 404, "{\"message\":\"Not found\"}");
    post(e, "/sandbox/faults", NULL, NULL, "[1]", &r);
    EXPECT(&r, 400, "{\"message\":\"expected a JSON object\"}");
    assert_int_equal(inbox_count(e, "a", U1, &r), 0);
    assert_non_null(strstr(r.body, "\"known\":false,\"messages\":[]}"));
}

/* ---- limits ----------------------------------------------------------------- */

static void test_rate_limit(void **state)
{
    env *e = *state;
    sandbox_rate rates[] = {{"push", 2}, {"info", 1}};
    sandbox_options o = {.rates = rates, .nrates = 2};
    start(e, &o);
    resp r;
    /* a window is one second: retry when the first two straddle a boundary */
    for (int attempt = 0; attempt < 3; attempt++) {
        long a = post(e, "/v2/bot/message/push", "tok-a", NULL, PUSH_BODY, &r);
        long b = post(e, "/v2/bot/message/push", "tok-a", NULL, PUSH_BODY, &r);
        long c = post(e, "/v2/bot/message/push", "tok-a", NULL, PUSH_BODY, &r);
        if (a == 200 && b == 200 && c == 429)
            break;
        assert_true(attempt < 2);
        usleep(1100000);
    }
    EXPECT(&r, 429, "{\"message\":\"The API rate limit has been exceeded. Try again later.\"}");
    /* other channel, other endpoint: own windows */
    post(e, "/v2/bot/message/push", "tok-b", NULL, PUSH_BODY, &r);
    assert_int_equal(r.code, 200);
    get(e, "/v2/bot/info", "tok-a", &r);
    assert_int_equal(r.code, 200);
    get(e, "/v2/bot/info", "tok-a", &r);
    if (r.code != 429) /* crossed into a new second */
        get(e, "/v2/bot/info", "tok-a", &r);
    EXPECT(&r, 429, "{\"message\":\"The API rate limit has been exceeded. Try again later.\"}");
    /* unknown endpoint names are refused */
    sandbox_stop(e->sb);
    e->sb = NULL;
    sandbox_rate bad[] = {{"pushh", 2}};
    sandbox_options ob = {
        .listen = "127.0.0.1:0", .store_url = e->store_url, .c = e->c, .rates = bad, .nrates = 1};
    char err[256];
    sandbox *sb = NULL;
    assert_int_equal(sandbox_start(&ob, &sb, err, sizeof err), KZ_EINVAL);
    assert_string_equal(err, "sandbox rate limit 'pushh': unknown endpoint");
    /* never kizuna's own store */
    char kz[200];
    snprintf(kz, sizeof kz, "sqlite:%s/k.db", e->dir);
    sandbox_options same = {.listen = "127.0.0.1:0", .store_url = kz, .c = e->c};
    assert_int_equal(sandbox_start(&same, &sb, err, sizeof err), KZ_EINVAL);
    assert_null(sb);
    /* bad listen and faults */
    sandbox_options bl = {.listen = "nowhere", .store_url = e->store_url, .c = e->c};
    assert_int_equal(sandbox_start(&bl, &sb, err, sizeof err), KZ_EINVAL);
    assert_string_equal(err, "sandbox listen \"nowhere\": expected HOST:PORT");
    sandbox_options bf = {
        .listen = "127.0.0.1:0", .store_url = e->store_url, .c = e->c, .faults = {.drop_rate = -1}};
    assert_int_equal(sandbox_start(&bf, &sb, err, sizeof err), KZ_EINVAL);
}

static void test_monthly_limit(void **state)
{
    env *e = *state;
    sandbox_options o = {.monthly_limit = 3};
    start(e, &o);
    resp r;
    get(e, "/v2/bot/message/quota", "tok-a", &r);
    EXPECT(&r, 200, "{\"type\":\"limited\",\"value\":3}");
    post(e, "/v2/bot/message/multicast", "tok-a", NULL,
         "{\"to\":[\"" U1 "\",\"" U2 "\"],\"messages\":[" TEXT_MSG "]}", &r);
    EXPECT(&r, 200, "{}");
    /* two more recipients would make 4 */
    post(e, "/v2/bot/message/multicast", "tok-a", NULL,
         "{\"to\":[\"" U1 "\",\"" U2 "\"],\"messages\":[" TEXT_MSG "]}", &r);
    EXPECT(&r, 429, "{\"message\":\"You have reached your monthly limit.\"}");
    post(e, "/v2/bot/message/push", "tok-a", NULL, PUSH_BODY, &r);
    assert_int_equal(r.code, 200);
    post(e, "/v2/bot/message/push", "tok-a", KEY1, PUSH_BODY, &r);
    EXPECT(&r, 429, "{\"message\":\"You have reached your monthly limit.\"}");
    /* refused with a retry key: the key was not accepted, nothing recorded */
    get(e, "/v2/bot/message/quota/consumption", "tok-a", &r);
    EXPECT(&r, 200, "{\"totalUsage\":3}");
    assert_int_equal(inbox_count(e, "a", U1, &r), 2);
    /* reply is not counted */
    char token[33], err[256], body[256];
    assert_int_equal(sandbox_issue_reply_token(e->sb, "a", U1, token, err, sizeof err), 0);
    snprintf(body, sizeof body, "{\"replyToken\":\"%s\",\"messages\":[" TEXT_MSG "]}", token);
    post(e, "/v2/bot/message/reply", "tok-a", NULL, body, &r);
    assert_int_equal(r.code, 200);
    /* the other channel has its own month */
    post(e, "/v2/bot/message/push", "tok-b", NULL, PUSH_BODY, &r);
    assert_int_equal(r.code, 200);
}

/* ---- faults ------------------------------------------------------------------ */

static double mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

static void test_faults(void **state)
{
    env *e = *state;
    resp r;
    post(e, "/sandbox/faults", NULL, NULL, "{\"error_rate\":1.0,\"status\":500}", &r);
    EXPECT(&r, 200, "{\"error_rate\":1.0,\"status\":500,\"latency_ms\":0,\"drop_rate\":0.0}");
    post(e, "/v2/bot/message/push", "tok-a", NULL, PUSH_BODY, &r);
    EXPECT(&r, 500, "{\"message\":\"Internal server error\"}");
    assert_int_equal(strlen(ts_header(&r, "x-line-request-id")), 36);
    /* /sandbox routes are not affected */
    assert_int_equal(inbox_count(e, "a", U1, &r), 0);
    post(e, "/sandbox/faults", NULL, NULL, "{\"error_rate\":0,\"drop_rate\":1}", &r);
    assert_int_equal(r.code, 200);
    post(e, "/v2/bot/message/push", "tok-a", NULL, PUSH_BODY, &r);
    assert_int_equal(r.curl, CURLE_GOT_NOTHING);
    assert_int_equal(inbox_count(e, "a", U1, &r), 0);
    post(e, "/sandbox/faults", NULL, NULL, "{\"drop_rate\":0,\"latency_ms\":300}", &r);
    assert_int_equal(r.code, 200);
    double t0 = mono_ms();
    post(e, "/v2/bot/message/push", "tok-a", NULL, PUSH_BODY, &r);
    double took = mono_ms() - t0;
    assert_int_equal(r.code, 200);
    assert_true(took >= 300.0);
    assert_true(took < 10000.0);
    post(e, "/sandbox/faults", NULL, NULL, "{\"error_rate\":2}", &r);
    EXPECT(&r, 400, "{\"message\":\"error_rate and drop_rate must be between 0 and 1\"}");
    get(e, "/sandbox/faults", NULL, &r);
    EXPECT(&r, 200, "{\"error_rate\":0.0,\"status\":500,\"latency_ms\":300,\"drop_rate\":0.0}");
    /* from options, with another status */
    sandbox_stop(e->sb);
    sandbox_options o = {.faults = {.error_rate = 1, .status = 503}};
    start(e, &o);
    get(e, "/v2/bot/info", "tok-a", &r);
    EXPECT(&r, 503, "{\"message\":\"Internal server error\"}");
}

/* ---- restart ----------------------------------------------------------------- */

static void test_state_survives_restart(void **state)
{
    env *e = *state;
    resp r, first;
    post(e, "/v2/bot/message/push", "tok-a", KEY1, PUSH_BODY, &first);
    assert_int_equal(first.code, 200);
    add_user(e, "a", U2, 1);
    sandbox_stop(e->sb);
    e->sb = NULL;
    start(e, NULL); /* same store file, new server, new port */
    assert_int_equal(inbox_count(e, "a", U1, &r), 1);
    post(e, "/v2/bot/message/push", "tok-a", KEY1, PUSH_BODY, &r);
    assert_int_equal(r.code, 409);
    assert_string_equal(ts_header(&r, "x-line-accepted-request-id"),
                        ts_header(&first, "x-line-request-id"));
    get(e, "/v2/bot/profile/" U2, "tok-a", &r);
    assert_int_equal(r.code, 200);
    get(e, "/v2/bot/message/quota/consumption", "tok-a", &r);
    EXPECT(&r, 200, "{\"totalUsage\":1}");
}

/* ---- playing users against a real ingress and bus ----------------------------- */

typedef struct daemon_env {
    app a;
    bus *b;
    ingress *in;
    store *st;
    char base[64];
} daemon_env;

static void daemon_up(env *e, daemon_env *d)
{
    memset(d, 0, sizeof *d);
    ts_app_prepare(&d->a, e->conf);
    ts_bus_new(&d->a, &d->b);
    assert_true(app_open_instances(&d->a, d->b) >= 0);
    ingress_options io = {.listen = "127.0.0.1:0", .c = d->a.c, .b = d->b};
    ts_ingress_start(&io, &d->in, d->base, sizeof d->base);
    d->st = ts_store_open(d->a.c->store_url, d->a.c->sync_mode);
}

static void daemon_down(daemon_env *d)
{
    ingress_stop(d->in);
    bus_free(d->b);
    store_close(d->st);
    app_free(&d->a);
}

static void test_play_users_end_to_end(void **state)
{
    env *e = *state;
    daemon_env d;
    daemon_up(e, &d);
    sandbox_options o = {.webhook_base = d.base};
    start(e, &o);
    char err[512] = "";
    if (sandbox_play(e->sb, "a", U1, SANDBOX_FOLLOW, NULL, err, sizeof err) != 0)
        fail_msg("follow: %s", err);
    store_batch b = {0};
    assert_int_equal(store_events_after(d.st, "a", 0, 100, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.ev[0].topic, "line.follow");
    assert_string_equal(b.ev[0].user, U1);
    assert_int_equal(strlen(b.ev[0].uid), 26); /* the ULID webhookEventId */
    const char *p = b.ev[0].payload;
    assert_non_null(strstr(p, "\"type\":\"follow\",\"mode\":\"active\",\"timestamp\":"));
    assert_non_null(strstr(p, "\"source\":{\"type\":\"user\",\"userId\":\"" U1 "\"}"));
    assert_non_null(strstr(p, "\"deliveryContext\":{\"isRedelivery\":false}"));
    assert_non_null(strstr(p, "\"follow\":{\"isUnblocked\":false}"));
    /* the reply token in the event works once */
    const char *t = strstr(p, "\"replyToken\":\"");
    assert_non_null(t);
    char body[256];
    snprintf(body, sizeof body, "{\"replyToken\":\"%.32s\",\"messages\":[" TEXT_MSG "]}", t + 14);
    resp r;
    post(e, "/v2/bot/message/reply", "tok-a", NULL, body, &r);
    assert_int_equal(r.code, 200);
    /* the user is now known and following */
    get(e, "/v2/bot/profile/" U1, "tok-a", &r);
    EXPECT(&r, 200, "{\"displayName\":\"User 111a\",\"userId\":\"" U1 "\",\"language\":\"ja\"}");

    /* say, postback, unfollow over the sandbox's HTTP routes */
    post(e, "/sandbox/shops/a/users/" U1 "/say", NULL, NULL, "{\"text\":\"こんにちは\"}", &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(strlen(r.body), strlen("{\"replyToken\":\"\"}") + 32);
    post(e, "/sandbox/shops/a/users/" U1 "/postback", NULL, NULL, "{\"data\":\"a=1\"}", &r);
    assert_int_equal(r.code, 200);
    post(e, "/sandbox/shops/a/users/" U1 "/unfollow", NULL, NULL, NULL, &r);
    EXPECT(&r, 200, "{}");
    post(e, "/sandbox/shops/a/users/" U1 "/say", NULL, NULL, "{}", &r);
    EXPECT(&r, 400, "{\"message\":\"say needs a text\"}");
    post(e, "/sandbox/shops/zz/users/" U1 "/follow", NULL, NULL, NULL, &r);
    EXPECT(&r, 400, "{\"message\":\"unknown shop 'zz' (or it has no line group)\"}");
    assert_int_equal(store_events_after(d.st, "a", 0, 100, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 4);
    assert_string_equal(b.ev[1].topic, "line.message.text");
    assert_non_null(strstr(b.ev[1].payload, "\"text\":\"こんにちは\""));
    assert_string_equal(b.ev[2].topic, "line.postback");
    assert_non_null(strstr(b.ev[2].payload, "\"postback\":{\"data\":\"a=1\"}"));
    assert_string_equal(b.ev[3].topic, "line.unfollow");
    assert_null(strstr(b.ev[3].payload, "replyToken"));
    /* blocked: the profile is gone, a follow again is an unblock */
    get(e, "/v2/bot/profile/" U1, "tok-a", &r);
    assert_int_equal(r.code, 404);
    assert_int_equal(sandbox_play(e->sb, "a", U1, SANDBOX_FOLLOW, NULL, err, sizeof err), 0);
    assert_int_equal(store_events_after(d.st, "a", 0, 100, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 5);
    assert_non_null(strstr(b.ev[4].payload, "\"follow\":{\"isUnblocked\":true}"));
    store_batch_free(&b);
    /* bad input */
    assert_int_equal(sandbox_play(e->sb, "a", "bob", SANDBOX_FOLLOW, NULL, err, sizeof err),
                     KZ_EINVAL);
    assert_int_equal(sandbox_play(e->sb, "c", U1, SANDBOX_FOLLOW, NULL, err, sizeof err),
                     KZ_EINVAL);
    daemon_down(&d);
    /* the daemon is gone: the play fails with the reason */
    assert_int_equal(sandbox_play(e->sb, "a", U1, SANDBOX_SAY, "hi", err, sizeof err), KZ_EFAIL);
    assert_non_null(strstr(err, "/webhook/a failed: "));
}

/* ---- rich menus ----------------------------------------------------------- */

#define AREA(x, action)                                                                            \
    "{\"bounds\":{\"x\":" #x ",\"y\":0,\"width\":1250,\"height\":843},\"action\":" action "}"
#define MENU_WITH(size, bar, areas)                                                                \
    "{\"size\":" size ",\"selected\":false,\"name\":\"main\",\"chatBarText\":\"" bar               \
    "\",\"areas\":[" areas "]}"
#define SIZE_OK "{\"width\":2500,\"height\":843}"
#define MENU                                                                                       \
    MENU_WITH(SIZE_OK, "メニュー",                                                                 \
              AREA(0, "{\"type\":\"postback\",\"label\":\"買う\",\"data\":\"buy=1\"}") "," AREA(   \
                  1250, "{\"type\":\"richmenuswitch\",\"label\":\"次へ\",\"richMenuAliasId\":"   \
                        "\"page-2\",\"data\":\"switch=2\"}"))
#define ONE_ERROR(msg, prop)                                                                       \
    "{\"message\":\"The request body has 1 error(s)\",\"details\":[{\"message\":\"" msg            \
    "\",\"property\":\"" prop "\"}]}"

/* Any method, content type and (binary) body, as shop a. */
static long call(env *e, const char *method, const char *path, const char *ctype, const void *body,
                 size_t len, resp *r)
{
    char url[512], line[128];
    snprintf(url, sizeof url, "%s%s", e->base, path);
    snprintf(line, sizeof line, "Content-Type: %s", ctype ? ctype : "");
    const char *hdrs[] = {"Authorization: Bearer tok-a", line, NULL};
    return ts_http(NULL, method, url, hdrs, body, len, TS_HTTP_MAY_FAIL, r);
}

static long del(env *e, const char *path, resp *r)
{
    return call(e, "DELETE", path, NULL, NULL, 0, r);
}

static unsigned char png_head[TS_PNG_HEAD]; /* 2500 × 843: made in main */

/* Creates MENU for shop a; id receives "richmenu-…". */
static void create_menu(env *e, char id[48], int with_image)
{
    resp r;
    post(e, "/v2/bot/richmenu", "tok-a", NULL, MENU, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(sscanf(r.body, "{\"richMenuId\":\"%41[^\"]\"}", id), 1);
    assert_int_equal(strlen(id), 41);
    assert_memory_equal(id, "richmenu-", 9);
    if (!with_image)
        return;
    char path[128];
    snprintf(path, sizeof path, "/v2/bot/richmenu/%s/content", id);
    call(e, "POST", path, "image/png", png_head, sizeof png_head, &r);
    EXPECT(&r, 200, "{}");
}

static void test_richmenu_create_errors(void **state)
{
    env *e = *state;
    resp r;
    char id[48];
    create_menu(e, id, 0);
    post(e, "/v2/bot/richmenu/validate", "tok-a", NULL, MENU, &r);
    EXPECT(&r, 200, "{}");
    static const struct {
        const char *body, *answer;
    } bad[] = {
        {MENU_WITH("{\"width\":700,\"height\":300}", "x", ""),
         ONE_ERROR("Must be between 800 and 2500", "size.width")},
        {MENU_WITH("{\"width\":2500,\"height\":200}", "x", ""),
         ONE_ERROR("Must be greater than or equal to 250", "size.height")},
        {MENU_WITH("{\"width\":1000,\"height\":800}", "x", ""),
         ONE_ERROR("The aspect ratio (width / height) must be at least 1.45", "size")},
        {MENU_WITH(SIZE_OK, "123456789012345", ""),
         ONE_ERROR("Length must be between 0 and 14", "chatBarText")},
        {MENU_WITH(SIZE_OK, "x", AREA(1251, "{\"type\":\"message\",\"text\":\"a\"}")),
         ONE_ERROR("The area must lie within the rich menu (2500x843)", "areas[0].bounds")},
        {MENU_WITH(SIZE_OK, "x", AREA(0, "{\"type\":\"imagemap\"}")),
         ONE_ERROR("Must be one of the following values: [postback, message, uri, "
                   "datetimepicker, richmenuswitch, camera, cameraRoll, location, clipboard]",
                   "areas[0].action.type")},
        {MENU_WITH(SIZE_OK, "x", AREA(0, "{\"type\":\"richmenuswitch\",\"data\":\"d\"}")),
         ONE_ERROR("May not be empty", "areas[0].action.richMenuAliasId")},
        {MENU_WITH(SIZE_OK, "x", AREA(0, "{\"type\":\"uri\",\"uri\":\"ftp://x\"}")),
         ONE_ERROR("Must use one of the following schemes: [http, https, line, tel]",
                   "areas[0].action.uri")},
        {"{\"size\":", "{\"message\":\"The request body could not be parsed as JSON (line: 1, "
                       "column: 9)\"}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        post(e, "/v2/bot/richmenu", "tok-a", NULL, bad[i].body, &r);
        EXPECT(&r, 400, bad[i].answer);
        post(e, "/v2/bot/richmenu/validate", "tok-a", NULL, bad[i].body, &r);
        EXPECT(&r, 400, bad[i].answer);
    }
    /* 21 areas */
    char *areas = repeat_json(AREA(0, "{\"type\":\"camera\"}"), 21, ",");
    char body[8192];
    snprintf(body, sizeof body,
             "{\"size\":" SIZE_OK ",\"selected\":true,\"name\":\"n\",\"chatBarText\":\"x\","
             "\"areas\":[%s]}",
             areas);
    free(areas);
    post(e, "/v2/bot/richmenu", "tok-a", NULL, body, &r);
    EXPECT(&r, 400, ONE_ERROR("Size must be between 0 and 20", "areas"));
    call(e, "POST", "/v2/bot/richmenu", "text/plain", MENU, strlen(MENU), &r);
    EXPECT(&r, 415, "{\"message\":\"The content type, text/plain, is not supported\"}");
    post(e, "/v2/bot/richmenu", NULL, NULL, MENU, &r);
    assert_int_equal(r.code, 401);
    /* the stored menu is the request plus its id */
    char path[128];
    snprintf(path, sizeof path, "/v2/bot/richmenu/%s", id);
    get(e, path, "tok-a", &r);
    assert_int_equal(r.code, 200);
    assert_memory_equal(r.body, "{\"richMenuId\":\"", 15);
    assert_non_null(strstr(r.body, "\"chatBarText\":\"メニュー\""));
    get(e, "/v2/bot/richmenu/list", "tok-a", &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(count(r.body, "\"richMenuId\""), 1);
    get(e, "/v2/bot/richmenu/list", "tok-b", &r);
    EXPECT(&r, 200, "{\"richmenus\":[]}");
    get(e, "/v2/bot/richmenu/richmenu-00000000000000000000000000000000", "tok-a", &r);
    EXPECT(&r, 404, "{\"message\":\"richmenu not found\"}");
}

static void test_richmenu_content(void **state)
{
    env *e = *state;
    resp r;
    char id[48], path[128];
    create_menu(e, id, 0);
    snprintf(path, sizeof path, "/v2/bot/richmenu/%s/content", id);
    call(e, "POST", path, "image/gif", png_head, sizeof png_head, &r);
    EXPECT(&r, 415, "{\"message\":\"The content type, image/gif, is not supported\"}");
    call(e, "POST", path, "image/jpeg", png_head, sizeof png_head, &r);
    EXPECT(&r, 400, "{\"message\":\"The image is not a valid image/jpeg file (sandbox text)\"}");
    size_t big = ((size_t)1 << 20) + 1;
    unsigned char *img = calloc(1, big);
    assert_non_null(img);
    memcpy(img, png_head, sizeof png_head);
    call(e, "POST", path, "image/png", img, big, &r);
    EXPECT(&r, 400, "{\"message\":\"The image is over 1 MB\"}");
    call(e, "POST", "/v2/bot/richmenu/richmenu-nope/content", "image/png", img, 64, &r);
    EXPECT(&r, 404, "{\"message\":\"richmenu not found\"}");
    get(e, path, "tok-a", &r);
    EXPECT(&r, 404, "{\"message\":\"Not found\"}");
    call(e, "POST", path, "image/png", img, big - 1, &r); /* exactly 1 MB */
    EXPECT(&r, 200, "{}");
    call(e, "POST", path, "image/png", img, 64, &r);
    EXPECT(&r, 400, "{\"message\":\"An image has already been uploaded to the richmenu\"}");
    free(img);
    call(e, "GET", path, NULL, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    assert_memory_equal(r.body, png_head, sizeof png_head);
}

/* LINE's rules for the picture: 800 to 2500 px wide, at least 250 high,
 * at least 1.45 times as wide as high; PNG from its IHDR, JPEG from its
 * first frame header (after other segments). */
static void test_richmenu_image_size(void **state)
{
    env *e = *state;
    resp r;
    char id[48], path[128];
    static const struct {
        uint32_t w, h;
        int ok;
    } sizes[] = {{2500, 1686, 1}, {800, 250, 1},  {799, 270, 0},  {2501, 843, 0},
                 {1200, 827, 1},  {1200, 828, 0}, {2500, 249, 0}, {2500, 2500, 0}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        create_menu(e, id, 0);
        snprintf(path, sizeof path, "/v2/bot/richmenu/%s/content", id);
        unsigned char png[TS_PNG_HEAD];
        ts_png_head(sizes[i].w, sizes[i].h, png);
        call(e, "POST", path, "image/png", png, sizeof png, &r);
        if (sizes[i].ok) {
            EXPECT(&r, 200, "{}");
            continue;
        }
        char want[256];
        snprintf(want, sizeof want,
                 "{\"message\":\"The image is %ux%u px; a rich menu image is 800 to 2500 px "
                 "wide, at least 250 px high and at least 1.45 times as wide as high (sandbox "
                 "text)\"}",
                 sizes[i].w, sizes[i].h);
        EXPECT(&r, 400, want);
    }
    create_menu(e, id, 0);
    snprintf(path, sizeof path, "/v2/bot/richmenu/%s/content", id);
    call(e, "POST", path, "image/png", png_head, 12, &r); /* no IHDR */
    EXPECT(&r, 400,
           "{\"message\":\"The image's size cannot be read from the image/png file (sandbox "
           "text)\"}");
    /* SOI, an APP0 segment, SOF0 of 1200 × 405 (height first) */
    static const unsigned char jpeg[] = {
        0xff, 0xd8, 0xff, 0xe0, 0,    16, 'J', 'F', 'I',  'F',  0,    1,    1, 0, 0,    1, 0,
        1,    0,    0,    0xff, 0xc0, 0,  11,  8,   0x01, 0x95, 0x04, 0xb0, 1, 1, 0x11, 0};
    call(e, "POST", path, "image/jpeg", jpeg, sizeof jpeg, &r);
    EXPECT(&r, 200, "{}");
    create_menu(e, id, 0);
    snprintf(path, sizeof path, "/v2/bot/richmenu/%s/content", id);
    call(e, "POST", path, "image/jpeg", jpeg, 20, &r); /* cut before the frame */
    EXPECT(&r, 400,
           "{\"message\":\"The image's size cannot be read from the image/jpeg file (sandbox "
           "text)\"}");
}

static void test_richmenu_links(void **state)
{
    env *e = *state;
    resp r;
    char bare[48], id[48], path[192], body[256];
    create_menu(e, bare, 0);
    create_menu(e, id, 1);
    snprintf(path, sizeof path, "/v2/bot/user/" U1 "/richmenu/%s", bare);
    post(e, path, "tok-a", NULL, NULL, &r);
    EXPECT(&r, 400, "{\"message\":\"must upload richmenu image before applying it to user\"}");
    get(e, "/v2/bot/user/" U1 "/richmenu", "tok-a", &r);
    EXPECT(&r, 404, "{\"message\":\"the user has no richmenu\"}");
    snprintf(path, sizeof path, "/v2/bot/user/" U1 "/richmenu/%s", id);
    post(e, path, "tok-a", NULL, NULL, &r);
    EXPECT(&r, 200, "{}");
    snprintf(body, sizeof body, "{\"richMenuId\":\"%s\"}", id);
    get(e, "/v2/bot/user/" U1 "/richmenu", "tok-a", &r);
    EXPECT(&r, 200, body);
    post(e, "/v2/bot/user/bob/richmenu/x", "tok-a", NULL, NULL, &r);
    EXPECT(&r, 400, "{\"message\":\"The value for the 'userId' parameter is invalid\"}");
    del(e, "/v2/bot/user/" U1 "/richmenu", &r);
    EXPECT(&r, 200, "{}");
    get(e, "/v2/bot/user/" U1 "/richmenu", "tok-a", &r);
    assert_int_equal(r.code, 404);
    /* default */
    get(e, "/v2/bot/user/all/richmenu", "tok-a", &r);
    EXPECT(&r, 404, "{\"message\":\"no default richmenu\"}");
    snprintf(path, sizeof path, "/v2/bot/user/all/richmenu/%s", id);
    post(e, path, "tok-a", NULL, NULL, &r);
    EXPECT(&r, 200, "{}");
    get(e, "/v2/bot/user/all/richmenu", "tok-a", &r);
    EXPECT(&r, 200, body);
    del(e, "/v2/bot/user/all/richmenu", &r);
    EXPECT(&r, 200, "{}");
    get(e, "/v2/bot/user/all/richmenu", "tok-a", &r);
    assert_int_equal(r.code, 404);
    /* bulk: 501 ids refused, 500 linked */
    char *ids = repeat_json("\"" U2 "\"", 501, ",");
    size_t cap = strlen(ids) + 256;
    char *bulk = malloc(cap);
    assert_non_null(bulk);
    snprintf(bulk, cap, "{\"richMenuId\":\"%s\",\"userIds\":[%s]}", id, ids);
    post(e, "/v2/bot/richmenu/bulk/link", "tok-a", NULL, bulk, &r);
    EXPECT(&r, 400, ONE_ERROR("Size must be between 1 and 500", "userIds"));
    ids[strlen(ids) - strlen(",\"" U2 "\"")] = '\0';
    snprintf(bulk, cap, "{\"richMenuId\":\"%s\",\"userIds\":[\"" U3 "\",%s]}", id,
             ids + strlen("\"" U2 "\","));
    free(ids);
    post(e, "/v2/bot/richmenu/bulk/link", "tok-a", NULL, bulk, &r);
    EXPECT(&r, 202, "{}");
    free(bulk);
    get(e, "/v2/bot/user/" U3 "/richmenu", "tok-a", &r);
    EXPECT(&r, 200, body);
    get(e, "/v2/bot/user/" U2 "/richmenu", "tok-a", &r);
    EXPECT(&r, 200, body);
    snprintf(bulk = malloc(256), 256, "{\"richMenuId\":\"%s\",\"userIds\":[\"" U1 "\"]}", bare);
    post(e, "/v2/bot/richmenu/bulk/link", "tok-a", NULL, bulk, &r);
    EXPECT(&r, 400, "{\"message\":\"must upload richmenu image before applying it to user\"}");
    free(bulk);
    post(e, "/v2/bot/richmenu/bulk/link", "tok-a", NULL,
         "{\"richMenuId\":\"x\",\"userIds\":[\"bob\"]}", &r);
    EXPECT(&r, 400,
           "{\"message\":\"The property, 'userIds[0]', in the request body is invalid (line: -, "
           "column: -)\"}");
    post(e, "/v2/bot/richmenu/bulk/unlink", "tok-a", NULL, "{\"userIds\":[\"" U3 "\"]}", &r);
    EXPECT(&r, 202, "{}");
    get(e, "/v2/bot/user/" U3 "/richmenu", "tok-a", &r);
    assert_int_equal(r.code, 404);
    /* a deleted menu is unlinked everywhere */
    snprintf(path, sizeof path, "/v2/bot/richmenu/%s", id);
    del(e, path, &r);
    EXPECT(&r, 200, "{}");
    get(e, "/v2/bot/user/" U2 "/richmenu", "tok-a", &r);
    assert_int_equal(r.code, 404);
    del(e, path, &r);
    EXPECT(&r, 404, "{\"message\":\"richmenu not found\"}");
}

static void test_richmenu_aliases(void **state)
{
    env *e = *state;
    resp r;
    char a[48], b[48], body[256], want[256];
    create_menu(e, a, 0);
    create_menu(e, b, 0);
    snprintf(body, sizeof body, "{\"richMenuAliasId\":\"page-1\",\"richMenuId\":\"%s\"}", a);
    post(e, "/v2/bot/richmenu/alias", "tok-a", NULL, body, &r);
    EXPECT(&r, 200, "{}");
    post(e, "/v2/bot/richmenu/alias", "tok-a", NULL, body, &r);
    EXPECT(&r, 400, "{\"message\":\"conflict richmenu alias id\"}");
    post(e, "/v2/bot/richmenu/alias", "tok-a", NULL,
         "{\"richMenuAliasId\":\"Page 1\",\"richMenuId\":\"x\"}", &r);
    EXPECT(&r, 400, ONE_ERROR("Must match ^[a-z0-9_-]{1,32}$", "richMenuAliasId"));
    post(e, "/v2/bot/richmenu/alias", "tok-a", NULL,
         "{\"richMenuAliasId\":\"page-2\",\"richMenuId\":\"richmenu-nope\"}", &r);
    EXPECT(&r, 404, "{\"message\":\"richmenu not found\"}");
    get(e, "/v2/bot/richmenu/alias/page-1", "tok-a", &r);
    EXPECT(&r, 200, body);
    snprintf(body, sizeof body, "{\"richMenuId\":\"%s\"}", b);
    post(e, "/v2/bot/richmenu/alias/page-1", "tok-a", NULL, body, &r);
    EXPECT(&r, 200, "{}");
    post(e, "/v2/bot/richmenu/alias/page-9", "tok-a", NULL, body, &r);
    EXPECT(&r, 404, "{\"message\":\"richmenu alias not found\"}");
    snprintf(want, sizeof want,
             "{\"aliases\":[{\"richMenuAliasId\":\"page-1\",\"richMenuId\":\"%s\"}]}", b);
    get(e, "/v2/bot/richmenu/alias/list", "tok-a", &r);
    EXPECT(&r, 200, want);
    del(e, "/v2/bot/richmenu/alias/page-1", &r);
    EXPECT(&r, 200, "{}");
    get(e, "/v2/bot/richmenu/alias/page-1", "tok-a", &r);
    EXPECT(&r, 404, "{\"message\":\"richmenu alias not found\"}");
    get(e, "/v2/bot/richmenu/alias/list", "tok-a", &r);
    EXPECT(&r, 200, "{\"aliases\":[]}");
}

static void test_richmenu_rate_limit_and_faults(void **state)
{
    env *e = *state;
    sandbox_rate rates[] = {{"richmenu_create", 1}};
    sandbox_options o = {.rates = rates, .nrates = 1};
    start(e, &o);
    char id[48];
    create_menu(e, id, 0);
    resp r;
    post(e, "/v2/bot/richmenu", "tok-a", NULL, MENU, &r);
    EXPECT(&r, 429, "{\"message\":\"The API rate limit has been exceeded. Try again later.\"}");
    post(e, "/v2/bot/richmenu/validate", "tok-a", NULL, MENU, &r);
    EXPECT(&r, 200, "{}");
    /* faults reach rich menu calls like every /v2 call */
    sandbox_faults f = {.error_rate = 1.0};
    char err[256];
    assert_int_equal(sandbox_set_faults(e->sb, &f, err, sizeof err), 0);
    get(e, "/v2/bot/richmenu/list", "tok-a", &r);
    EXPECT(&r, 500, "{\"message\":\"Internal server error\"}");
}

static void test_richmenu_survives_restart(void **state)
{
    env *e = *state;
    resp r;
    char id[48], path[128], body[256];
    create_menu(e, id, 1);
    snprintf(path, sizeof path, "/v2/bot/user/" U1 "/richmenu/%s", id);
    post(e, path, "tok-a", NULL, NULL, &r);
    snprintf(body, sizeof body, "{\"richMenuAliasId\":\"p\",\"richMenuId\":\"%s\"}", id);
    post(e, "/v2/bot/richmenu/alias", "tok-a", NULL, body, &r);
    assert_int_equal(r.code, 200);
    sandbox_stop(e->sb);
    e->sb = NULL;
    start(e, NULL);
    get(e, "/v2/bot/richmenu/alias/p", "tok-a", &r);
    EXPECT(&r, 200, body);
    snprintf(body, sizeof body, "{\"richMenuId\":\"%s\"}", id);
    get(e, "/v2/bot/user/" U1 "/richmenu", "tok-a", &r);
    EXPECT(&r, 200, body);
    snprintf(path, sizeof path, "/v2/bot/richmenu/%s/content", id);
    get(e, path, "tok-a", &r);
    assert_int_equal(r.code, 200);
    assert_memory_equal(r.body, png_head, sizeof png_head);
    /* the played user's view: linked menu first, with its areas */
    get(e, "/sandbox/shops/a/users/" U1 "/richmenu", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.body, "\"source\":\"user\""));
    assert_non_null(strstr(r.body, "\"richMenuAliasId\":\"page-2\""));
    get(e, "/sandbox/shops/a/users/" U2 "/richmenu", NULL, &r);
    EXPECT(&r, 404, "{\"message\":\"no rich menu for user " U2 "\"}");
}

static void test_richmenu_switch(void **state)
{
    env *e = *state;
    daemon_env d;
    daemon_up(e, &d);
    sandbox_options o = {.webhook_base = d.base};
    start(e, &o);
    resp r;
    char id[48], body[256], err[512] = "";
    create_menu(e, id, 1);
    snprintf(body, sizeof body, "{\"richMenuAliasId\":\"page-2\",\"richMenuId\":\"%s\"}", id);
    post(e, "/v2/bot/richmenu/alias", "tok-a", NULL, body, &r);
    assert_int_equal(r.code, 200);
    post(e, "/sandbox/shops/a/users/" U1 "/richmenuswitch", NULL, NULL,
         "{\"richMenuAliasId\":\"page-2\",\"data\":\"switch=2\"}", &r);
    EXPECT(&r, 200, "{}");
    snprintf(body, sizeof body, "{\"richMenuId\":\"%s\"}", id);
    get(e, "/v2/bot/user/" U1 "/richmenu", "tok-a", &r);
    EXPECT(&r, 200, body);
    assert_int_equal(sandbox_richmenu_switch(e->sb, "a", U1, "page-9", "switch=9", err, sizeof err),
                     0);
    store_batch b = {0};
    assert_int_equal(store_events_after(d.st, "a", 0, 100, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 2);
    assert_string_equal(b.ev[0].topic, "line.postback");
    assert_non_null(strstr(b.ev[0].payload,
                           "\"postback\":{\"data\":\"switch=2\",\"params\":{\"newRichMenuAliasId\":"
                           "\"page-2\",\"status\":\"SUCCESS\"}}"));
    assert_non_null(strstr(b.ev[1].payload, "\"status\":\"RICHMENU_ALIAS_ID_NOTFOUND\""));
    store_batch_free(&b);
    daemon_down(&d);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_started, teardown)
#define TN(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    ts_png_head(2500, 843, png_head);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        T(test_auth),
        T(test_push_ok_and_inbox),
        T(test_push_errors),
        T(test_retry_key),
        T(test_reply),
        T(test_multicast),
        T(test_broadcast_narrowcast),
        T(test_validate),
        T(test_profile_info_link),
        T(test_misc_errors),
        TN(test_rate_limit),
        TN(test_monthly_limit),
        T(test_faults),
        T(test_state_survives_restart),
        TN(test_play_users_end_to_end),
        T(test_richmenu_create_errors),
        T(test_richmenu_content),
        T(test_richmenu_image_size),
        T(test_richmenu_links),
        T(test_richmenu_aliases),
        TN(test_richmenu_rate_limit_and_faults),
        T(test_richmenu_survives_restart),
        TN(test_richmenu_switch),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
