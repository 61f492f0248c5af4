/*
 * The LINE sender in-process, against real parts: a config with shop `a`
 * (api = "sandbox"), the real sandbox on 127.0.0.1:<free port> with its own
 * store, a real bus on the kizuna store, and the sender with sandbox_base
 * pointing at the sandbox. Outbox rows are inserted with store_outbox_add
 * (as the host's line_send does) with real bodies; outcomes are read back
 * from the outbox, the events table and the sandbox's inbox. Waits are
 * bounded polls, never fixed sleeps taken as assertions.
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
#include <json-c/json.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "metrics.h"
#include "sandbox.h"
#include "sender.h"
#include "store.h"
#include "support.h"

#define U1 "U1111111111111111111111111111111a"
#define U2 "U2222222222222222222222222222222b"
#define U3 "U3333333333333333333333333333333c"
#define TEXT(t) "{\"type\":\"text\",\"text\":\"" t "\"}"
#define PUSH(to, t) "{\"to\":\"" to "\",\"messages\":[" TEXT(t) "]}"
#define KEY_FMT "123e4567-e89b-42d3-a456-4266141740%02d"

typedef struct env {
    char dir[64];
    char conf[128];
    char sbx_url[128];
    app a;
    bus *b;
    sandbox *sb;
    sender *snd;
    metrics *m;
    store *st;  /* the test's connection to kizuna's store */
    store *sbx; /* and to the sandbox's */
    char base[64];
    int nkeys;
} env;

/* Extra settings for the shop's line group (one test sets rate limits). */
static const char *line_extra = "";

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    ts_tmpdir(e->dir, sizeof e->dir, "sender");
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    ts_write_file(e->conf,
                  "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; durability = "
                  "\"normal\"; };\n"
                  "shops = ( { id = \"a\";\n"
                  "  line = { channel_secret = \"sec\"; access_token = \"tok\"; api = \"sandbox\";"
                  " %s };"
                  " } );\n",
                  e->dir, line_extra);
    snprintf(e->sbx_url, sizeof e->sbx_url, "sqlite:%s/sandbox.db", e->dir);
    ts_app_prepare(&e->a, e->conf);
    *state = e;
    return 0;
}

/* Starts bus, sandbox and sender; so/no may tweak options (NULL: none). */
static void start(env *e, const sandbox_options *sbo, const sender_options *sno)
{
    char err[512];
    assert_int_equal(metrics_new(&e->m), 0);
    ts_bus_new(&e->a, &e->b);
    assert_int_equal(bus_add_shop(e->b, "a"), 0);
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);

    sandbox_options so = sbo ? *sbo : (sandbox_options){0};
    so.listen = "127.0.0.1:0";
    so.store_url = e->sbx_url;
    so.c = e->a.c;
    so.webhook_base = "http://127.0.0.1:1";
    ts_sandbox_start(&so, &e->sb, e->base, sizeof e->base);

    sender_options o = sno ? *sno : (sender_options){0};
    o.store_url = e->a.c->store_url;
    o.sync_mode = STORE_SYNC_NORMAL;
    o.c = e->a.c;
    o.sandbox_base = e->base;
    o.b = e->b;
    o.m = e->m;
    if (o.retry_initial_ms == 0)
        o.retry_initial_ms = 20;
    if (o.retry_max_ms == 0)
        o.retry_max_ms = 100;
    if (o.timeout_ms == 0)
        o.timeout_ms = 5000;
    o.poll_ms = 20;
    if (sender_start(&o, &e->snd, err, sizeof err) != 0)
        fail_msg("sender_start: %s", err);
    e->st = ts_store_open(o.store_url, STORE_SYNC_NORMAL);
    e->sbx = ts_store_open(e->sbx_url, STORE_SYNC_NORMAL);
}

static int teardown(void **state)
{
    env *e = *state;
    sender_stop(e->snd);
    sandbox_stop(e->sb);
    bus_free(e->b);
    store_close(e->st);
    store_close(e->sbx);
    metrics_free(e->m);
    app_free(&e->a);
    ts_rmdir(e->dir);
    free(e);
    return 0;
}

/* ---- rows ------------------------------------------------------------------ */

static const char *const endpoints[] = {"",          "reply",     "push",
                                        "multicast", "broadcast", "narrowcast"};

typedef struct rowspec {
    int kind;
    const char *body, *user, *fallback_to, *tag;
    int64_t created_ago_ms; /* created this long ago */
    int64_t deadline_in_ms; /* 0: in an hour */
} rowspec;

static int64_t add_row(env *e, const rowspec *rs)
{
    char endpoint[64], key[64];
    snprintf(endpoint, sizeof endpoint, "/v2/bot/message/%s", endpoints[rs->kind]);
    snprintf(key, sizeof key, KEY_FMT, ++e->nkeys);
    int64_t now = clock_now_ms();
    store_outbox r = {.shop = "a",
                      .instance = 0,
                      .kind = rs->kind,
                      .endpoint = endpoint,
                      .body = rs->body,
                      .retry_key = rs->kind == KZ_LINE_REPLY ? NULL : key,
                      .user = rs->user,
                      .fallback_to = rs->fallback_to,
                      .tag = rs->tag,
                      .origin = "ev",
                      .created_ms = now - rs->created_ago_ms,
                      .next_at_ms = now - rs->created_ago_ms,
                      .deadline_ms = now + (rs->deadline_in_ms ? rs->deadline_in_ms : 3600000)};
    int64_t id = 0;
    char err[256];
    if (store_outbox_add(e->st, &r, &id, err, sizeof err) != 0)
        fail_msg("store_outbox_add: %s", err);
    sender_wake(e->snd);
    return id;
}

static int64_t push(env *e, const char *body)
{
    rowspec rs = {.kind = KZ_LINE_PUSH, .body = body, .user = U1, .tag = "t1"};
    return add_row(e, &rs);
}

typedef struct rowstate {
    int state, status, attempts, kind;
    char request_id[80], error[512];
} rowstate;

static rowstate get_row(env *e, int64_t id)
{
    store_outbox r;
    rowstate out = {0};
    const char *rid = NULL, *error = NULL;
    char err[256];
    assert_int_equal(store_outbox_get(e->st, id, &r, &out.status, &rid, &error, err, sizeof err),
                     0);
    out.state = r.state;
    out.attempts = r.attempts;
    out.kind = r.kind;
    snprintf(out.request_id, sizeof out.request_id, "%s", rid ? rid : "");
    snprintf(out.error, sizeof out.error, "%s", error ? error : "");
    return out;
}

/* Polls until the row leaves PENDING (at most 8 s). */
static rowstate wait_done(env *e, int64_t id)
{
    rowstate r;
    TS_WAIT((r = get_row(e, id)).state != OUTBOX_PENDING, 8000,
            "outbox %lld still pending after 8 s (attempts %d, %s)", (long long)id, r.attempts,
            r.error);
    return r;
}

/* Polls until the pending row has had at least n attempts. */
static void wait_attempts(env *e, int64_t id, int n)
{
    rowstate r;
    TS_WAIT((r = get_row(e, id)).state != OUTBOX_PENDING || r.attempts >= n, 8000,
            "outbox %lld: %d attempts after 8 s", (long long)id, r.attempts);
    assert_int_equal(r.state, OUTBOX_PENDING);
}

/* ---- events and inbox ---------------------------------------------------- */

/* The payload of event uid of shop a, parsed (caller puts), or NULL. */
static json_object *event(env *e, const char *uid, char *topic, char *user)
{
    store_batch b = {0};
    char err[256];
    assert_int_equal(store_events_after(e->st, "a", 0, 1000, &b, err, sizeof err), 0);
    json_object *out = NULL;
    for (size_t i = 0; i < b.n; i++)
        if (strcmp(b.ev[i].uid, uid) == 0) {
            out = json_tokener_parse(b.ev[i].payload);
            assert_non_null(out);
            if (topic)
                strcpy(topic, b.ev[i].topic);
            if (user)
                strcpy(user, b.ev[i].user ? b.ev[i].user : "");
        }
    store_batch_free(&b);
    return out;
}

static json_object *event_of(env *e, int64_t id, const char *what, const char *want_topic)
{
    char uid[64], topic[64], user[64];
    snprintf(uid, sizeof uid, "outbox:%lld:%s", (long long)id, what);
    json_object *p = event(e, uid, topic, user);
    if (p == NULL)
        fail_msg("no event %s", uid);
    assert_string_equal(topic, want_topic);
    return p;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || v == NULL)
        return NULL;
    return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *key)
{
    json_object *v;
    assert_true(json_object_object_get_ex(o, key, &v));
    return json_object_get_int64(v);
}

typedef ts_inbox inbox;

static inbox inbox_of(env *e, const char *user)
{
    inbox in;
    ts_inbox_get(e->sbx, "a", user, &in);
    return in;
}

static void faults(env *e, double error_rate, double drop_rate, int latency_ms)
{
    sandbox_faults f = {.error_rate = error_rate, .drop_rate = drop_rate, .latency_ms = latency_ms};
    char err[256];
    assert_int_equal(sandbox_set_faults(e->sb, &f, err, sizeof err), 0);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_push_sent_once(void **state)
{
    env *e = *state;
    start(e, NULL, NULL);
    int64_t id = push(e, PUSH(U1, "hello"));
    rowstate r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_SENT);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 0);
    inbox in = inbox_of(e, U1);
    assert_int_equal(in.n, 1);
    assert_string_equal(in.endpoint, "push");
    assert_string_equal(in.message, TEXT("hello"));
    assert_string_equal(r.request_id, in.request_id);

    json_object *p = event_of(e, id, "sent", "message.sent");
    assert_int_equal(jint(p, "outbox"), id);
    assert_string_equal(jstr(p, "kind"), "push");
    assert_string_equal(jstr(p, "tag"), "t1");
    assert_string_equal(jstr(p, "to"), U1);
    assert_string_equal(jstr(p, "requestId"), in.request_id);
    json_object *sm;
    assert_true(json_object_object_get_ex(p, "sentMessages", &sm));
    assert_int_equal(json_object_array_length(sm), 1);
    json_object_put(p);

    /* the metrics saw one 200 */
    size_t len;
    char *text = metrics_render(e->m, &len);
    assert_non_null(
        strstr(text, "kizuna_line_requests_total{shop=\"a\",endpoint=\"push\",code=\"200\"} 1"));
    assert_non_null(
        strstr(text, "kizuna_line_request_duration_seconds_count{endpoint=\"push\"} 1"));
    assert_non_null(strstr(text, "kizuna_outbox_pending "));
    free(text);
}

static int follow(env *e, const char *user)
{
    store_sbx_user u = {.following = 1, .since_ms = clock_now_ms()};
    snprintf(u.user, sizeof u.user, "%s", user);
    snprintf(u.display_name, sizeof u.display_name, "User");
    return store_sbx_user_put(e->sbx, "a", &u, NULL, 0);
}

static void test_multicast_broadcast_reply(void **state)
{
    env *e = *state;
    start(e, NULL, NULL);
    rowspec mc = {.kind = KZ_LINE_MULTICAST,
                  .body = "{\"to\":[\"" U1 "\",\"" U2 "\"],\"messages\":[" TEXT("mc") "]}"};
    int64_t id = add_row(e, &mc);
    assert_int_equal(wait_done(e, id).state, OUTBOX_SENT);
    assert_int_equal(inbox_of(e, U1).n, 1);
    assert_int_equal(inbox_of(e, U2).n, 1);
    json_object *p = event_of(e, id, "sent", "message.sent");
    assert_string_equal(jstr(p, "kind"), "multicast");
    assert_int_equal(json_object_array_length(json_object_object_get(p, "to")), 2);
    json_object_put(p);

    assert_int_equal(follow(e, U3), 0);
    rowspec bc = {.kind = KZ_LINE_BROADCAST, .body = "{\"messages\":[" TEXT("bc") "]}"};
    id = add_row(e, &bc);
    assert_int_equal(wait_done(e, id).state, OUTBOX_SENT);
    inbox in = inbox_of(e, U3);
    assert_int_equal(in.n, 1);
    assert_string_equal(in.endpoint, "broadcast");

    char token[33], body[256], err[256];
    assert_int_equal(sandbox_issue_reply_token(e->sb, "a", U2, token, err, sizeof err), 0);
    snprintf(body, sizeof body, "{\"replyToken\":\"%s\",\"messages\":[" TEXT("re") "]}", token);
    rowspec re = {.kind = KZ_LINE_REPLY, .body = body, .user = U2, .fallback_to = U2};
    id = add_row(e, &re);
    assert_int_equal(wait_done(e, id).state, OUTBOX_SENT);
    in = inbox_of(e, U2);
    assert_int_equal(in.n, 2);
    assert_string_equal(in.endpoint, "reply");
    assert_string_equal(in.message, TEXT("re"));
    p = event_of(e, id, "sent", "message.sent");
    assert_string_equal(jstr(p, "kind"), "reply");
    assert_string_equal(jstr(p, "to"), U2);
    json_object_put(p);
}

static void test_bad_request_failed(void **state)
{
    env *e = *state;
    start(e, NULL, NULL);
    int64_t id = push(e, PUSH("bogus", "x"));
    rowstate r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_FAILED);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.error,
                        "The property, 'to', in the request body is invalid (line: -, column: -)");
    json_object *p = event_of(e, id, "failed", "message.failed");
    assert_int_equal(jint(p, "status"), 400);
    assert_string_equal(jstr(p, "message"), r.error);
    assert_string_equal(jstr(p, "to"), "bogus");
    assert_string_equal(jstr(p, "requestId"), r.request_id);
    json_object_put(p);

    /* LINE's details come along */
    id = push(e, "{\"to\":\"" U1 "\",\"messages\":[]}");
    r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_FAILED);
    p = event_of(e, id, "failed", "message.failed");
    assert_string_equal(jstr(p, "message"), "The request body has 1 error(s)");
    json_object *d = json_object_array_get_idx(json_object_object_get(p, "details"), 0);
    assert_string_equal(jstr(d, "message"), "Size must be between 1 and 5");
    assert_string_equal(jstr(d, "property"), "messages");
    json_object_put(p);
    assert_int_equal(inbox_of(e, U1).n, 0);
}

static void test_server_errors_retried(void **state)
{
    env *e = *state;
    start(e, NULL, NULL);
    faults(e, 1.0, 0, 0);
    int64_t id = push(e, PUSH(U1, "retry"));
    wait_attempts(e, id, 3);
    assert_string_equal(get_row(e, id).error, "500 Internal server error");
    assert_int_equal(inbox_of(e, U1).n, 0);
    faults(e, 0, 0, 0);
    rowstate r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_SENT);
    assert_true(r.attempts >= 3);
    assert_int_equal(inbox_of(e, U1).n, 1);
    json_object *p = event_of(e, id, "sent", "message.sent");
    json_object_put(p);

    size_t len;
    char *text = metrics_render(e->m, &len);
    assert_non_null(strstr(text, "endpoint=\"push\",code=\"500\"}"));
    free(text);
}

static void test_dropped_then_sent_once(void **state)
{
    env *e = *state;
    start(e, NULL, NULL);
    faults(e, 0, 1.0, 0);
    int64_t id = push(e, PUSH(U1, "drop"));
    wait_attempts(e, id, 2);
    assert_non_null(strstr(get_row(e, id).error, "network: "));
    faults(e, 0, 0, 0);
    assert_int_equal(wait_done(e, id).state, OUTBOX_SENT);
    assert_int_equal(inbox_of(e, U1).n, 1);
}

/* LINE got the push but the answer never came back (slower than the
 * sender's timeout): the retry's 409 counts as sent, with the accepted
 * request id, and the user has one copy. */
static void test_lost_answer_409(void **state)
{
    env *e = *state;
    sender_options so = {.timeout_ms = 150};
    start(e, NULL, &so);
    faults(e, 0, 0, 400);
    int64_t id = push(e, PUSH(U1, "slow"));
    TS_WAIT(inbox_of(e, U1).n > 0, 8000, "nothing in the inbox after 8 s");
    inbox in = inbox_of(e, U1);
    assert_int_equal(in.n, 1);
    wait_attempts(e, id, 1);
    faults(e, 0, 0, 0);
    rowstate r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_SENT);
    assert_int_equal(r.status, 409);
    assert_string_equal(r.request_id, in.request_id);
    assert_int_equal(inbox_of(e, U1).n, 1);
    json_object *p = event_of(e, id, "sent", "message.sent");
    assert_string_equal(jstr(p, "requestId"), in.request_id);
    assert_non_null(json_object_object_get(p, "sentMessages"));
    json_object_put(p);
}

static void test_monthly_limit_parked(void **state)
{
    env *e = *state;
    sandbox_options sbo = {.monthly_limit = 1};
    start(e, &sbo, NULL);
    int64_t first = push(e, PUSH(U1, "one"));
    assert_int_equal(wait_done(e, first).state, OUTBOX_SENT);
    int64_t id = push(e, PUSH(U1, "two"));
    rowstate r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_PARKED);
    assert_int_equal(r.status, 429);
    assert_int_equal(r.attempts, 0);
    assert_string_equal(r.error, "You have reached your monthly limit.");
    json_object *p = event_of(e, id, "failed", "message.failed");
    assert_int_equal(jint(p, "status"), 429);
    assert_string_equal(jstr(p, "message"), "You have reached your monthly limit.");
    json_object_put(p);
    assert_int_equal(inbox_of(e, U1).n, 1);
}

static void test_reply_fallback(void **state)
{
    env *e = *state;
    start(e, NULL, NULL);
    /* a token LINE refuses: sent as a push to fallback_to */
    rowspec re = {
        .kind = KZ_LINE_REPLY,
        .body =
            "{\"replyToken\":\"0123456789abcdef0123456789abcdef\",\"messages\":[" TEXT("fb") "]}",
        .user = U1,
        .fallback_to = U1,
        .tag = "fb"};
    int64_t id = add_row(e, &re);
    rowstate r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_SENT);
    assert_int_equal(r.kind, KZ_LINE_PUSH);
    inbox in = inbox_of(e, U1);
    assert_int_equal(in.n, 1);
    assert_string_equal(in.endpoint, "push");
    assert_string_equal(in.message, TEXT("fb"));
    json_object *p = event_of(e, id, "sent", "message.sent");
    assert_string_equal(jstr(p, "kind"), "push");
    assert_string_equal(jstr(p, "to"), U1);
    assert_true(json_object_get_boolean(json_object_object_get(p, "fallback")));
    json_object_put(p);

    store_outbox row;
    char err0[256];
    assert_int_equal(store_outbox_get(e->st, id, &row, NULL, NULL, NULL, err0, sizeof err0), 0);
    assert_string_equal(row.endpoint, "/v2/bot/message/push");
    assert_int_equal(strlen(row.retry_key), 36); /* derived from the row: a v4-shaped UUID */
    assert_int_equal(row.retry_key[14], '4');
    assert_non_null(strstr(row.body, "\"to\":\"" U1 "\""));

    /* a token already used by an earlier reply: the second becomes a push */
    char used[33], ubody[256];
    assert_int_equal(sandbox_issue_reply_token(e->sb, "a", U3, used, err0, sizeof err0), 0);
    snprintf(ubody, sizeof ubody, "{\"replyToken\":\"%s\",\"messages\":[" TEXT("u") "]}", used);
    rowspec first = {.kind = KZ_LINE_REPLY, .body = ubody, .user = U3, .fallback_to = U3};
    assert_int_equal(wait_done(e, add_row(e, &first)).state, OUTBOX_SENT);
    assert_int_equal(wait_done(e, add_row(e, &first)).kind, KZ_LINE_PUSH);
    in = inbox_of(e, U3);
    assert_int_equal(in.n, 2);
    assert_string_equal(in.endpoint, "push");

    /* a token past its life is not tried: straight to the push */
    char token[33], body[256], err[256];
    assert_int_equal(sandbox_issue_reply_token(e->sb, "a", U2, token, err, sizeof err), 0);
    snprintf(body, sizeof body, "{\"replyToken\":\"%s\",\"messages\":[" TEXT("late") "]}", token);
    rowspec late = {.kind = KZ_LINE_REPLY,
                    .body = body,
                    .user = U2,
                    .fallback_to = U2,
                    .created_ago_ms = 61000};
    id = add_row(e, &late);
    assert_int_equal(wait_done(e, id).state, OUTBOX_SENT);
    in = inbox_of(e, U2);
    assert_int_equal(in.n, 1);
    assert_string_equal(in.endpoint, "push");

    /* no fallback: LINE's refusal is the outcome */
    rowspec nofb = {
        .kind = KZ_LINE_REPLY,
        .body =
            "{\"replyToken\":\"0123456789abcdef0123456789abcdef\",\"messages\":[" TEXT("x") "]}",
        .user = U2};
    id = add_row(e, &nofb);
    r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_FAILED);
    assert_string_equal(r.error, "Invalid reply token");
    assert_int_equal(inbox_of(e, U2).n, 1); /* only the earlier push */
}

static void test_deadline_passed(void **state)
{
    env *e = *state;
    start(e, NULL, NULL);
    rowspec rs = {.kind = KZ_LINE_PUSH, .body = PUSH(U1, "old"), .user = U1, .deadline_in_ms = -1};
    int64_t id = add_row(e, &rs);
    rowstate r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_FAILED);
    assert_int_equal(r.status, 0);
    json_object *p = event_of(e, id, "failed", "message.failed");
    assert_non_null(strstr(jstr(p, "message"), "deadline"));
    json_object_put(p);

    /* retried until the deadline, then failed with the last error. Which
     * path ends it depends on timing: the answer whose next retry would
     * pass the deadline (LINE's status and message), or the scan that finds
     * the deadline passed between retries (status 0, the last error
     * quoted). Either way the last error is what the shop is told. */
    faults(e, 1.0, 0, 0);
    rowspec soon = {
        .kind = KZ_LINE_PUSH, .body = PUSH(U1, "soon"), .user = U1, .deadline_in_ms = 2000};
    id = add_row(e, &soon);
    r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_FAILED);
    assert_true(r.attempts >= 1);
    p = event_of(e, id, "failed", "message.failed");
    const char *message = jstr(p, "message");
    if (jint(p, "status") == 500)
        assert_string_equal(message, "Internal server error");
    else if (jint(p, "status") != 0 || strstr(message, "last: 500 Internal server error") == NULL)
        fail_msg("deadline after 500s: status %lld, %s", (long long)jint(p, "status"), message);
    json_object_put(p);
    assert_int_equal(inbox_of(e, U1).n, 0);
}

/* push at 2/s: at most two start in any 1.02 s (LINE's second and the
 * guard), so five rows need at least 2 s, and no window of a second holds
 * three. */
static void test_rate_limit(void **state)
{
    env *e = *state;
    sender_rate rates[] = {{"push", 2}};
    sender_options so = {.rates = rates, .nrates = 1};
    start(e, NULL, &so);
    int64_t t0 = ts_mono_ms();
    int64_t ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = push(e, PUSH(U1, "r"));
    /* early on, no more than the burst went out */
    ts_nap_ms(300);
    int early = inbox_of(e, U1).n;
    int64_t t_early = ts_mono_ms() - t0;
    if (t_early < 450)
        assert_true(early <= 2);
    for (int i = 0; i < 5; i++) {
        rowstate r = wait_done(e, ids[i]);
        assert_int_equal(r.state, OUTBOX_SENT);
        assert_int_equal(r.attempts, 0); /* never answered 429 */
    }
    assert_true(ts_mono_ms() - t0 >= 2000);
    inbox in = inbox_of(e, U1);
    assert_int_equal(in.n, 5);
    /* the sandbox takes a request in a little after it starts: allow for
     * that, not for a third request in the same second */
    for (int i = 0; i + 2 < 5; i++)
        if (in.time_ms[i + 2] - in.time_ms[i] < 900)
            fail_msg("pushes %d and %d taken in %lld ms apart", i, i + 2,
                     (long long)(in.time_ms[i + 2] - in.time_ms[i]));
}

/* The shop's own line.rate_limits (config) wins over LINE's defaults: push
 * at 2/s, so five rows need at least 1.5 s. */
static int setup_shop_rates(void **state)
{
    line_extra = "rate_limits = { push = 2; };";
    int rc = setup(state);
    line_extra = "";
    return rc;
}

static void test_rate_limit_from_config(void **state)
{
    env *e = *state;
    start(e, NULL, NULL);
    int64_t t0 = ts_mono_ms();
    int64_t ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = push(e, PUSH(U1, "c"));
    for (int i = 0; i < 5; i++)
        assert_int_equal(wait_done(e, ids[i]).state, OUTBOX_SENT);
    assert_true(ts_mono_ms() - t0 >= 1400);
    assert_int_equal(inbox_of(e, U1).n, 5);
}

/* A sandbox shop while no sandbox runs: its rows wait, pushed out of the
 * way of other shops' rows, and are not failed. */
static void test_no_sandbox_defers(void **state)
{
    env *e = *state;
    char err[512];
    e->st = ts_store_open(e->a.c->store_url, STORE_SYNC_NORMAL);
    sender_options o = {.store_url = e->a.c->store_url, .c = e->a.c, .poll_ms = 20};
    assert_int_equal(sender_start(&o, &e->snd, err, sizeof err), 0);
    int64_t id = push(e, PUSH(U1, "wait"));
    TS_WAIT(strcmp(get_row(e, id).error, "") != 0, 8000, "outbox %lld: no error after 8 s",
            (long long)id);
    rowstate r = get_row(e, id);
    assert_int_equal(r.state, OUTBOX_PENDING);
    assert_int_equal(r.attempts, 0);
    assert_string_equal(r.error, "the shop cannot send (see the log)");
    store_outbox row;
    assert_int_equal(store_outbox_get(e->st, id, &row, NULL, NULL, NULL, err, sizeof err), 0);
    assert_true(row.next_at_ms > clock_now_ms() + 30000);
}

/* ---- other API calls (OUTBOX_CALL rows, as line_call queues them) ---- */

static int64_t add_call(env *e, const char *method, const char *path, const char *body,
                        const char *user)
{
    int64_t now = clock_now_ms();
    store_outbox r = {.shop = "a",
                      .kind = OUTBOX_CALL,
                      .endpoint = path,
                      .body = body ? body : "",
                      .method = method,
                      .plugin = "fx",
                      .user = user,
                      .tag = "c1",
                      .origin = "ev",
                      .created_ms = now,
                      .next_at_ms = now,
                      .deadline_ms = now + 3600000};
    int64_t id = 0;
    char err[256];
    if (store_outbox_add(e->st, &r, &id, err, sizeof err) != 0)
        fail_msg("store_outbox_add: %s", err);
    sender_wake(e->snd);
    return id;
}

/* GET profile: api.done carries LINE's answer; an unknown user is
 * api.failed with LINE's message; a POST (link token) works as well. */
static void test_call_done_and_failed(void **state)
{
    env *e = *state;
    start(e, NULL, NULL);
    assert_int_equal(follow(e, U1), 0);
    int64_t id = add_call(e, "GET", "/v2/bot/profile/" U1, NULL, U1);
    rowstate r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_SENT);
    assert_int_equal(r.status, 200);
    char uid[64], topic[64], user[64];
    snprintf(uid, sizeof uid, "outbox:%lld:sent", (long long)id);
    json_object *p = event(e, uid, topic, user);
    assert_non_null(p);
    assert_string_equal(topic, "api.done");
    assert_string_equal(user, U1);
    assert_string_equal(jstr(p, "method"), "GET");
    assert_string_equal(jstr(p, "path"), "/v2/bot/profile/" U1);
    assert_string_equal(jstr(p, "plugin"), "fx");
    assert_string_equal(jstr(p, "tag"), "c1");
    assert_int_equal(jint(p, "status"), 200);
    assert_string_equal(jstr(p, "requestId"), r.request_id);
    json_object *resp = json_object_object_get(p, "response");
    assert_string_equal(jstr(resp, "userId"), U1);
    assert_string_equal(jstr(resp, "displayName"), "User");
    json_object_put(p);

    id = add_call(e, "GET", "/v2/bot/profile/" U2, NULL, U2);
    r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_FAILED);
    assert_int_equal(r.status, 404);
    p = event_of(e, id, "failed", "api.failed");
    assert_int_equal(jint(p, "status"), 404);
    assert_string_equal(jstr(p, "message"), r.error);
    assert_true(strlen(r.error) > 0);
    json_object_put(p);

    id = add_call(e, "POST", "/v2/bot/user/" U1 "/linkToken", NULL, U1);
    assert_int_equal(wait_done(e, id).state, OUTBOX_SENT);
    p = event_of(e, id, "sent", "api.done");
    assert_non_null(jstr(json_object_object_get(p, "response"), "linkToken"));
    json_object_put(p);

    size_t len;
    char *text = metrics_render(e->m, &len);
    assert_non_null(strstr(text, "endpoint=\"call\",code=\"200\"} 2"));
    free(text);
}

/* A GET that meets 500s is repeated until it gets through. */
static void test_call_retried(void **state)
{
    env *e = *state;
    start(e, NULL, NULL);
    assert_int_equal(follow(e, U1), 0);
    faults(e, 1.0, 0, 0);
    int64_t id = add_call(e, "GET", "/v2/bot/message/quota", NULL, NULL);
    wait_attempts(e, id, 2);
    faults(e, 0, 0, 0);
    rowstate r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_SENT);
    assert_true(r.attempts >= 2);
    json_object *p = event_of(e, id, "sent", "api.done");
    assert_non_null(jstr(json_object_object_get(p, "response"), "type"));
    json_object_put(p);
}

/* Creating a rich menu is not repeated once LINE may have received it: a
 * 500 ends it at once; a 429 (refused unprocessed) is retried. */
static void test_richmenu_create_not_repeated(void **state)
{
    env *e = *state;
    sender_rate rates[] = {{"richmenu_create", 1000}}; /* LINE's 100/hour would pace the test */
    sender_options so = {.rates = rates, .nrates = 1};
    start(e, NULL, &so);
    faults(e, 1.0, 0, 0);
    int64_t id = add_call(e, "POST", "/v2/bot/richmenu", "{}", NULL);
    rowstate r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_FAILED);
    assert_int_equal(r.status, 500);
    assert_int_equal(r.attempts, 1);
    assert_string_equal(r.error, "Internal server error (not repeated: LINE may have received it)");
    json_object *p = event_of(e, id, "failed", "api.failed");
    assert_string_equal(jstr(p, "message"), r.error);
    json_object_put(p);

    sandbox_faults f = {.error_rate = 1.0, .status = 429};
    char err[256];
    assert_int_equal(sandbox_set_faults(e->sb, &f, err, sizeof err), 0);
    id = add_call(e, "POST", "/v2/bot/richmenu", "{}", NULL);
    wait_attempts(e, id, 2);
    assert_int_equal(get_row(e, id).state, OUTBOX_PENDING);
}

/* A create that a stopped process had sent (the row still holds the mark
 * counted before sending) is given up, never sent again. */
static void test_unanswered_create_given_up(void **state)
{
    env *e = *state;
    char err[256];
    e->st = ts_store_open(e->a.c->store_url, STORE_SYNC_NORMAL);
    int64_t now = clock_now_ms();
    store_outbox row = {.shop = "a",
                        .kind = OUTBOX_CALL,
                        .endpoint = "/v2/bot/richmenu",
                        .body = "{}",
                        .method = "POST",
                        .origin = "ev",
                        .created_ms = now,
                        .next_at_ms = now,
                        .deadline_ms = now + 3600000};
    int64_t id;
    assert_int_equal(store_outbox_add(e->st, &row, &id, err, sizeof err), 0);
    assert_int_equal(
        store_outbox_retry(e->st, id, 1, now, "sent, no answer recorded", err, sizeof err), 0);
    store_close(e->st);
    start(e, NULL, NULL);
    rowstate r = wait_done(e, id);
    assert_int_equal(r.state, OUTBOX_FAILED);
    assert_int_equal(r.attempts, 1);
    assert_non_null(strstr(r.error, "not repeated"));
    size_t len;
    char *text = metrics_render(e->m, &len);
    assert_null(strstr(text, "endpoint=\"call\""));
    free(text);
}

/* The rich menu calls a plugin makes, end to end against the sandbox:
 * create (api.done carries richMenuId), upload the image to the data host
 * (a binary body), link it to a user; the sandbox then shows it as theirs. */
static void test_richmenu_flow(void **state)
{
    env *e = *state;
    start(e, NULL, NULL);
    assert_int_equal(follow(e, U1), 0);
    int64_t id = add_call(e, "POST", "/v2/bot/richmenu",
                          "{\"size\":{\"width\":2500,\"height\":843},\"selected\":false,"
                          "\"name\":\"main\",\"chatBarText\":\"menu\",\"areas\":[{\"bounds\":"
                          "{\"x\":0,\"y\":0,\"width\":2500,\"height\":843},\"action\":{\"type\":"
                          "\"postback\",\"data\":\"buy\"}}]}",
                          NULL);
    assert_int_equal(wait_done(e, id).state, OUTBOX_SENT);
    json_object *p = event_of(e, id, "sent", "api.done");
    char menu[80], path[160];
    snprintf(menu, sizeof menu, "%s", jstr(json_object_object_get(p, "response"), "richMenuId"));
    json_object_put(p);
    assert_memory_equal(menu, "richmenu-", 9);

    unsigned char png[TS_PNG_HEAD];
    ts_png_head(1200, 405, png);
    snprintf(path, sizeof path, "/v2/bot/richmenu/%s/content", menu);
    int64_t now = clock_now_ms();
    store_outbox up = {.shop = "a",
                       .kind = OUTBOX_CALL,
                       .endpoint = path,
                       .body = (const char *)png,
                       .body_len = sizeof png,
                       .method = "POST",
                       .content_type = "image/png",
                       .data_api = 1,
                       .origin = "ev",
                       .created_ms = now,
                       .next_at_ms = now,
                       .deadline_ms = now + 3600000};
    char err[256];
    assert_int_equal(store_outbox_add(e->st, &up, &id, err, sizeof err), 0);
    sender_wake(e->snd);
    rowstate r = wait_done(e, id);
    if (r.state != OUTBOX_SENT)
        fail_msg("upload: %d %s", r.status, r.error);

    snprintf(path, sizeof path, "/v2/bot/user/%s/richmenu/%s", U1, menu);
    id = add_call(e, "POST", path, NULL, U1);
    assert_int_equal(wait_done(e, id).state, OUTBOX_SENT);
    snprintf(path, sizeof path, "/v2/bot/user/%s/richmenu", U1);
    id = add_call(e, "GET", path, NULL, U1);
    assert_int_equal(wait_done(e, id).state, OUTBOX_SENT);
    p = event_of(e, id, "sent", "api.done");
    assert_string_equal(jstr(json_object_object_get(p, "response"), "richMenuId"), menu);
    json_object_put(p);
}

/* Rich menu creation has its own class (100/hour at LINE): with the class
 * at 1, a second create waits while other calls go through. */
static void test_richmenu_rate_class(void **state)
{
    env *e = *state;
    sender_rate rates[] = {{"richmenu_create", 1}};
    sender_options so = {.rates = rates, .nrates = 1};
    start(e, NULL, &so);
    int64_t first = add_call(e, "POST", "/v2/bot/richmenu", "{}", NULL);
    int64_t second = add_call(e, "POST", "/v2/bot/richmenu", "{}", NULL);
    wait_done(e, first);
    int64_t quota = add_call(e, "GET", "/v2/bot/message/quota", NULL, NULL);
    assert_int_equal(wait_done(e, quota).state, OUTBOX_SENT);
    rowstate r = get_row(e, second);
    assert_int_equal(r.state, OUTBOX_PENDING);
    assert_int_equal(r.attempts, 0);
}

static void test_bad_options(void **state)
{
    env *e = *state;
    sender_rate rates[] = {{"profile", 2}};
    sender_options o = {.store_url = e->a.c->store_url, .c = e->a.c, .rates = rates, .nrates = 1};
    sender *s = (sender *)1;
    char err[256];
    assert_int_equal(sender_start(&o, &s, err, sizeof err), KZ_EINVAL);
    assert_null(s);
    assert_string_equal(err, "sender: bad rate for endpoint 'profile'");
    sender_stop(NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        T(test_push_sent_once),
        T(test_multicast_broadcast_reply),
        T(test_bad_request_failed),
        T(test_server_errors_retried),
        T(test_dropped_then_sent_once),
        T(test_lost_answer_409),
        T(test_monthly_limit_parked),
        T(test_reply_fallback),
        T(test_deadline_passed),
        T(test_rate_limit),
        cmocka_unit_test_setup_teardown(test_rate_limit_from_config, setup_shop_rates, teardown),
        T(test_no_sandbox_defers),
        T(test_call_done_and_failed),
        T(test_call_retried),
        T(test_richmenu_create_not_repeated),
        T(test_unanswered_create_given_up),
        T(test_richmenu_rate_class),
        T(test_richmenu_flow),
        T(test_bad_options),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
