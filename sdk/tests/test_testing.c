/*
 * Tests of the fake host itself (kizuna/testing.h): key/value semantics,
 * rollback, stale ctx, settings builder and schema check, publish checks,
 * LINE sends (kinds, checks, rollback, standby, struct_size), API calls,
 * the friend registry, the segment subset and shop-local time.
 * The plugin under test is a probe defined here whose handler runs a
 * per-test function with the ctx.
 */
#include <kizuna/testing.h>

#include <kizuna/message.h>

typedef int (*probe_fn)(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen);
static probe_fn probe;
static const kz_setting *probe_setting;
static kz_segment *probe_seg; /* compiled from the "segment" setting */

static void probe_close(void *inst)
{
    (void)inst;
    kz_segment_free(probe_seg);
    probe_seg = NULL;
}

static int probe_open(void *ps, kz_shop *shop, const kz_setting *s, void **inst, char *err,
                      size_t errlen)
{
    (void)ps;
    (void)err;
    (void)errlen;
    probe_setting = s;
    *inst = shop;
    const kz_setting *seg = kz_setting_child(s, "segment");
    if (seg != NULL) {
        int rc = kz_segment_compile(shop, seg, &probe_seg, err, errlen);
        if (rc != 0)
            return rc;
    }
    int64_t dyn = 0;
    if (kz_setting_get_int(s, "dynamic", &dyn) == 0 && dyn)
        return kz_subscribe(shop, "ec.*");
    return 0;
}

static int probe_handle(void *inst, kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    assert_ptr_equal(inst, kz_ctx_shop(ctx));
    return probe ? probe(ctx, ev, err, errlen) : 0;
}

static const char *const probe_subs[] = {"line.follow", NULL};
static const kz_setting_spec probe_settings[] = {
    {"text", KZ_SETTING_STRING, 0, "\"a \\\"b\\\"\"", "", {0}},
    {"n", KZ_SETTING_INT, 0, "0x10", "", {0}},
    {"ratio", KZ_SETTING_FLOAT, 0, "2", "", {0}},
    {"on", KZ_SETTING_BOOL, 0, "TRUE", "", {0}},
    {"wait", KZ_SETTING_DURATION, 0, "\"1h30m\"", "", {0}},
    {"token", KZ_SETTING_SECRET, 0, NULL, "", {0}},
    {"rules", KZ_SETTING_LIST, 0, "()", "", {0}},
    {"dynamic", KZ_SETTING_INT, 0, "0", "", {0}},
    {"must", KZ_SETTING_STRING, 1, NULL, "", {0}},
    {"segment", KZ_SETTING_STRING, 0, NULL, "", {0}},
    {NULL, 0, 0, NULL, NULL, {0}},
};

KZ_PLUGIN_DEFINE(.name = "probe", .version = "1.0.0", .vendor = "test", .license = "MIT",
                 .shop_open = probe_open, .shop_close = probe_close, .handle = probe_handle,
                 .subscriptions = probe_subs, .settings = probe_settings)

static void load_probe(void)
{
    kz_setting *g = kz_test_setting_group();
    kz_test_setting_set_string(g, "must", "x");
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
}

static int run(probe_fn fn)
{
    probe = fn;
    int rc = kz_test_handle(kz_test_event("line.follow", NULL, "U1", "e1", NULL));
    probe = NULL;
    return rc;
}

/* ---- kv ---------------------------------------------------------------- */

static int kv_ops(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    const void *v;
    size_t len;
    int64_t n;
    assert_int_equal(kz_kv_get(ctx, "a", &v, &len), KZ_ENOTFOUND);
    assert_int_equal(kz_kv_del(ctx, "a"), KZ_ENOTFOUND);
    assert_int_equal(kz_kv_put(ctx, "a", "xy", 2), 0);
    assert_int_equal(kz_kv_get(ctx, "a", &v, &len), 0);
    assert_int_equal(len, 2);
    assert_string_equal(v, "xy"); /* NUL-terminated */
    assert_int_equal(kz_kv_put(ctx, "a", "z", 1), 0);
    assert_string_equal(v, "xy"); /* an earlier get stays valid */
    /* cas */
    assert_int_equal(kz_kv_cas(ctx, "a", NULL, 0, "q", 1), KZ_ECONFLICT);
    assert_int_equal(kz_kv_cas(ctx, "a", "xy", 2, "q", 1), KZ_ECONFLICT);
    assert_int_equal(kz_kv_cas(ctx, "a", "z", 1, "q", 1), 0);
    assert_int_equal(kz_kv_cas(ctx, "b", "z", 1, "q", 1), KZ_ECONFLICT);
    assert_int_equal(kz_kv_cas(ctx, "b", NULL, 0, "new", 3), 0);
    /* incr */
    assert_int_equal(kz_kv_incr(ctx, "c", 5, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(kz_kv_incr(ctx, "c", -7, &n), 0);
    assert_int_equal(n, -2);
    assert_int_equal(kz_kv_incr(ctx, "c", 1, NULL), 0);
    assert_int_equal(kz_kv_incr(ctx, "a", 1, &n), KZ_ETYPE);
    assert_int_equal(kz_kv_put(ctx, "big", "9223372036854775807", 19), 0);
    assert_int_equal(kz_kv_incr(ctx, "big", 1, &n), KZ_EINVAL);
    assert_int_equal(kz_kv_put(ctx, "sp", " 1", 2), 0);
    assert_int_equal(kz_kv_incr(ctx, "sp", 1, &n), KZ_ETYPE);
    /* argument checks */
    assert_int_equal(kz_kv_put(ctx, "", "x", 1), KZ_EINVAL);
    assert_int_equal(kz_kv_put(ctx, NULL, "x", 1), KZ_EINVAL);
    assert_int_equal(kz_kv_put(ctx, "k", NULL, 1), KZ_EINVAL);
    char longkey[KZ_KEY_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(kz_kv_put(ctx, longkey, "x", 1), KZ_ETOOBIG);
    assert_int_equal(kz_kv_put(ctx, "empty", "", 0), 0);
    assert_int_equal(kz_kv_get(ctx, "empty", &v, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(kz_kv_del(ctx, "empty"), 0);
    assert_int_equal(kz_kv_del(ctx, "sp"), 0);
    assert_int_equal(kz_kv_del(ctx, "big"), 0);
    return 0;
}

static void kv_semantics(void **state)
{
    (void)state;
    load_probe();
    kz_assert_ok(run(kv_ops));
    assert_int_equal(kz_test_kv_count(), 3);
    assert_string_equal(kz_test_kv_get("a", NULL), "q");
    assert_string_equal(kz_test_kv_get("b", NULL), "new");
    assert_string_equal(kz_test_kv_get("c", NULL), "-1");
    assert_null(kz_test_kv_get("empty", NULL));
}

/* ---- transactions ----------------------------------------------------- */

static int write_then_fail(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    assert_int_equal(kz_kv_put(ctx, "a", "new", 3), 0);
    assert_int_equal(kz_kv_del(ctx, "keep"), 0);
    assert_int_equal(kz_kv_incr(ctx, "n", 1, NULL), 0);
    assert_int_equal(kz_publish(ctx, "x.y", NULL, "[1,2]"), 0);
    snprintf(err, errlen, "boom");
    return KZ_EFAIL;
}

static int write_ok(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    assert_int_equal(kz_publish(ctx, "x.ok", "U9", NULL), 0);
    return kz_kv_put(ctx, "a", "ok", 2);
}

static void rollback_and_stale_ctx(void **state)
{
    (void)state;
    load_probe();
    kz_test_kv_put("a", "old", 0);
    kz_test_kv_put("keep", "1", 0);
    assert_int_equal(run(write_then_fail), KZ_EFAIL);
    assert_string_equal(kz_test_error(), "boom");
    assert_string_equal(kz_test_kv_get("a", NULL), "old");
    assert_string_equal(kz_test_kv_get("keep", NULL), "1");
    assert_null(kz_test_kv_get("n", NULL));
    assert_int_equal(kz_test_published_count(NULL), 0);

    kz_assert_ok(run(write_ok));
    assert_string_equal(kz_test_kv_get("a", NULL), "ok");
    assert_int_equal(kz_test_published_count("x.ok"), 1);
    assert_string_equal(kz_test_published_payload(0), "{}");
    assert_string_equal(kz_test_published_user(0), "U9");
    assert_string_equal(kz_test_published_id(0), "e1/probe/1");

    /* The ctx of the finished call is stale. */
    kz_ctx *stale = kz_test_last_ctx();
    const kz_host *h = kz_test_host();
    const void *v;
    size_t len;
    assert_int_equal(h->kv_put(stale, "a", "x", 1), KZ_ESTATE);
    assert_int_equal(h->kv_get(stale, "a", &v, &len), KZ_ESTATE);
    assert_int_equal(h->kv_del(stale, "a"), KZ_ESTATE);
    assert_int_equal(h->kv_cas(stale, "a", NULL, 0, "x", 1), KZ_ESTATE);
    assert_int_equal(h->kv_incr(stale, "n", 1, NULL), KZ_ESTATE);
    assert_int_equal(h->publish(stale, "x.y", NULL, NULL, 0), KZ_ESTATE);
    assert_null(h->ctx_shop(stale));
    assert_int_equal(h->subscribe(kz_test_shop(), "late.*"), KZ_ESTATE);
}

static int publish_checks(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    assert_int_equal(kz_publish(ctx, "bad topic", NULL, NULL), KZ_EINVAL);
    assert_int_equal(kz_publish(ctx, "a..b", NULL, NULL), KZ_EINVAL);
    assert_int_equal(kz_publish(ctx, "a.", NULL, NULL), KZ_EINVAL);
    assert_int_equal(kz_publish(ctx, "a.b", NULL, "{\"x\":}"), KZ_EINVAL);
    assert_int_equal(kz_publish(ctx, "a.b", NULL, "{\"x\":\"\x01\"}"), KZ_EINVAL);
    assert_int_equal(kz_publish(ctx, "a.b", NULL, "{} {}"), KZ_EINVAL);
    assert_int_equal(
        kz_publish(ctx, "a.b", NULL, " {\"x\":[1,-2.5e3,true,null,\"\\u00e9\\n\"],\"y\":{}} "), 0);
    assert_int_equal(kz_publish(ctx, "A_b-c.d9", NULL, "\"str\""), 0);
    return 0;
}

static void publish_validation(void **state)
{
    (void)state;
    load_probe();
    kz_assert_ok(run(publish_checks));
    assert_int_equal(kz_test_published_count(NULL), 2);
    assert_string_equal(kz_test_published_id(1), "e1/probe/2");
}

static int needs_kv(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    return kz_kv_put(ctx, "a", "1", 1);
}

static void fault_injection(void **state)
{
    (void)state;
    load_probe();
    kz_test_fail_next(KZ_TEST_FAIL_KV_PUT, KZ_EIO);
    assert_int_equal(run(needs_kv), KZ_EIO);
    assert_string_equal(kz_test_error(), "handler returned -5");
    kz_assert_ok(run(needs_kv)); /* once only */
}

/* ---- events, clock, shop, logs --------------------------------------- */

static int event_fields(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    size_t len;
    assert_string_equal(kz_event_topic(ev), "line.follow");
    assert_string_equal(kz_event_shop(ev), "solia");
    assert_string_equal(kz_event_user(ev), "U1");
    assert_string_equal(kz_event_id(ev), "e1");
    assert_string_equal(kz_event_payload(ev, &len), "{}");
    assert_int_equal(len, 2);
    assert_int_equal(kz_event_time_ms(ev), 1700000001000LL);
    assert_int_equal(kz_event_attempt(ev), 1);
    assert_int_equal(kz_now_ms(), 1700000001000LL);
    assert_string_equal(kz_shop_id(kz_ctx_shop(ctx)), "solia");
    assert_string_equal(kz_shop_timezone(kz_ctx_shop(ctx)), "Europe/Paris");
    kz_log(KZ_LOG_WARN, "hello %d", 42);
    return 0;
}

static void events_clock_shop_logs(void **state)
{
    (void)state;
    kz_test_set_shop("solia", "Europe/Paris");
    assert_int_equal(kz_test_now(), KZ_TEST_DEFAULT_NOW);
    kz_test_advance(1000);
    load_probe();
    kz_assert_ok(run(event_fields));
    assert_int_equal(kz_test_log_count(), 1);
    assert_string_equal(kz_test_log_line(0), "hello 42");
    assert_int_equal(kz_test_log_level(0), KZ_LOG_WARN);
}

/* ---- settings ----------------------------------------------------------- */

static void settings_defaults_and_types(void **state)
{
    (void)state;
    setenv("KZ_TEST_TOKEN", "s3cret", 1);
    kz_setting *g = kz_test_setting_group();
    kz_test_setting_set_string(g, "must", "m");
    kz_test_setting_set_int(g, "ratio", 3); /* int accepted for float */
    kz_test_setting_set_string(g, "token", "env:KZ_TEST_TOKEN");
    kz_test_setting_set_int(g, "dynamic", 1);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));

    const kz_setting *s = probe_setting;
    const char *str;
    int64_t i;
    double f;
    int b;
    assert_int_equal(kz_setting_get_string(s, "text", &str), 0);
    assert_string_equal(str, "a \"b\"");
    assert_int_equal(kz_setting_get_int(s, "n", &i), 0);
    assert_int_equal(i, 16);
    assert_int_equal(kz_setting_get_float(s, "ratio", &f), 0);
    assert_true(f == 3.0);
    assert_int_equal(kz_setting_get_bool(s, "on", &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(kz_setting_get_duration_ms(s, "wait", &i), 0);
    assert_int_equal(i, 5400000);
    assert_int_equal(kz_setting_get_string(s, "token", &str), 0);
    assert_string_equal(str, "s3cret");
    assert_int_equal(kz_setting_type(kz_setting_child(s, "token")), KZ_SETTING_STRING);
    assert_int_equal(kz_setting_type(kz_setting_child(s, "wait")), KZ_SETTING_STRING);
    assert_int_equal(kz_setting_type(kz_setting_child(s, "ratio")), KZ_SETTING_INT);
    assert_int_equal(kz_setting_type(kz_setting_child(s, "rules")), KZ_SETTING_LIST);
    assert_int_equal(kz_setting_count(kz_setting_child(s, "rules")), 0);
    assert_int_equal(kz_setting_get_int(s, "text", &i), KZ_ETYPE);
    assert_int_equal(kz_setting_get_int(s, "nope", &i), KZ_ENOTFOUND);
    assert_int_equal(kz_setting_line(kz_setting_child(s, "text")), 0); /* default */
    assert_null(kz_setting_name(s));

    /* dynamic subscription from shop_open, after the static one */
    assert_int_equal(kz_test_subscription_count(), 2);
    assert_string_equal(kz_test_subscription(0), "line.follow");
    assert_string_equal(kz_test_subscription(1), "ec.*");
    assert_true(kz_test_subscribed("ec.order.shipped"));
    assert_false(kz_test_subscribed("ec"));
    assert_false(kz_test_subscribed("line.message"));
    unsetenv("KZ_TEST_TOKEN");
}

static void settings_nested_and_errors(void **state)
{
    (void)state;
    kz_test_set_shop("solia", NULL);
    kz_setting *g = kz_test_setting_group();                           /* 1 */
    kz_test_setting_set_string(g, "must", "m");                        /* 2 */
    kz_setting *rules = kz_test_setting_add_list(g, "rules");          /* 3 */
    kz_setting *r0 = kz_test_setting_add_group(rules, NULL);           /* 4 */
    kz_test_setting_set_string(r0, "segment", "linked");               /* 5 */
    kz_setting *r1 = kz_test_setting_add_group(rules, NULL);           /* 6 */
    kz_setting *after = kz_test_setting_set_string(r1, "after", "1d"); /* 7 */
    kz_setting *bad = kz_test_setting_set_string(r1, "at", "soon");    /* 8 */
    kz_test_setting_set_line(bad, 42);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));

    const kz_setting *s = probe_setting;
    const kz_setting *rl = kz_setting_child(s, "rules");
    assert_int_equal(kz_setting_count(rl), 2);
    assert_null(kz_setting_name(kz_setting_elem(rl, 0)));
    assert_null(kz_setting_elem(rl, 2));
    int64_t ms;
    assert_int_equal(kz_setting_get_duration_ms(kz_setting_elem(rl, 1), "after", &ms), 0);
    assert_int_equal(ms, 86400000);
    assert_int_equal(kz_setting_line(after), 7);
    assert_int_equal(kz_setting_get_duration_ms(kz_setting_elem(rl, 1), "at", &ms), KZ_EINVAL);

    char err[256];
    assert_int_equal(kz_setting_error(bad, err, sizeof err, "not a time: %s", "soon"), KZ_EINVAL);
    assert_string_equal(
        err, "test.conf:42: shop 'solia': plugin 'probe': rules[1].at: not a time: soon");
    kz_setting_error(s, err, sizeof err, "whole group");
    assert_string_equal(err, "test.conf:1: shop 'solia': plugin 'probe': whole group");
    kz_setting_error(kz_setting_child(s, "text"), err, sizeof err, "default");
    assert_string_equal(err, "test.conf:1: shop 'solia': plugin 'probe': text: default");
}

static void schema_errors(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_test_setting_set_string(g, "typo", "x");                        /* 2 */
    kz_test_setting_set_duration(g, "wait", "1x");                     /* 3 */
    kz_test_setting_set_bool(g, "n", 1);                               /* 4 */
    kz_test_setting_set_secret(g, "token", "env:KZ_TEST_NO_SUCH_VAR"); /* 5 */
    assert_int_equal(kz_test_load_settings(kizuna_plugin_v1, g), KZ_EINVAL);
    assert_string_equal(
        kz_test_error(),
        "test.conf:2: shop 'test': plugin 'probe': unknown setting 'typo' (known: text, n, "
        "ratio, on, wait, token, rules, dynamic, must, segment)\n"
        "test.conf:3: shop 'test': plugin 'probe': wait: invalid duration \"1x\" (examples: "
        "1500ms, 90s, 15m, 1h30m, 1d)\n"
        "test.conf:4: shop 'test': plugin 'probe': n: expected an integer, got a boolean\n"
        "test.conf:5: shop 'test': plugin 'probe': token: environment variable "
        "'KZ_TEST_NO_SUCH_VAR' is not set\n"
        "test.conf:1: shop 'test': plugin 'probe': missing required setting 'must'");
    assert_int_equal(kz_test_handle(kz_test_event("line.follow", NULL, NULL, NULL, NULL)),
                     KZ_ESTATE);
}

/* ---- LINE sends (ABI 1.1) --------------------------------------------- */

#define UID_A "U0123456789abcdef0123456789abcdef"
#define UID_B "Ufedcba9876543210fedcba9876543210"
#define GROUP_C "C00112233445566778899aabbccddeeff"
#define TEXT_MSG "[{\"type\":\"text\",\"text\":\"hi\"}]"

static int run_payload(probe_fn fn, const char *id, const char *payload)
{
    probe = fn;
    int rc = kz_test_handle(kz_test_event("line.follow", NULL, UID_A, id, payload));
    probe = NULL;
    return rc;
}

/* Two messages built with kizuna/message.h into buf. */
static const char *build_msgs(char *buf, size_t cap)
{
    kz_msgs m;
    assert_int_equal(kz_msgs_init(&m, buf, cap), 0);
    assert_int_equal(kz_msgs_text(&m, "ようこそ \"friend\""), 0);
    assert_int_equal(kz_msgs_sticker(&m, "446", "1988"), 0);
    kz_action items[1];
    items[0] = kz_action_postback("Yes", "survey=1&a=yes", "Yes");
    assert_int_equal(kz_msgs_quick_reply(&m, items, 1), 0);
    return kz_msgs_json(&m, NULL);
}

static int send_every_kind(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    char buf[1024];
    const char *msgs = build_msgs(buf, sizeof buf);

    assert_int_equal(kz_line_reply(ctx, "tok-1", msgs, 1), 0);
    assert_int_equal(kz_line_push(ctx, GROUP_C, TEXT_MSG), 0);
    const char *to[] = {UID_A, UID_B};
    assert_int_equal(kz_line_multicast(ctx, to, 2, TEXT_MSG), 0);
    assert_int_equal(kz_line_broadcast(ctx, TEXT_MSG), 0);

    kz_line_send r;
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.kind = KZ_LINE_NARROWCAST;
    r.messages = TEXT_MSG "trailing bytes outside messages_len";
    r.messages_len = strlen(TEXT_MSG);
    r.narrowcast = "{\"limit\":{\"max\":100}}";
    r.notification_disabled = 1;
    r.tag = "campaign-7";
    int64_t id = -1;
    assert_int_equal(kz_line_send_req(ctx, &r, &id), 0);
    assert_int_equal(id, 5);
    assert_int_equal(kz_test_sent_count(), 5); /* pending ones count inside the handler */

    /* 501 recipients: the host stores two rows (500 + 1), ids 6 and 7. */
    static const char *many[501];
    for (size_t i = 0; i < 501; i++)
        many[i] = (i % 2) ? UID_A : UID_B;
    r.kind = KZ_LINE_MULTICAST;
    r.to_list = many;
    r.nto = 501;
    r.narrowcast = NULL;
    r.tag = NULL;
    r.notification_disabled = 0;
    assert_int_equal(kz_line_send_req(ctx, &r, &id), 0);
    assert_int_equal(id, 6);
    assert_int_equal(kz_line_push(ctx, UID_B, TEXT_MSG), 0); /* id 8 */
    return 0;
}

static void line_send_kinds(void **state)
{
    (void)state;
    load_probe();
    kz_assert_ok(run_payload(send_every_kind, "e7", NULL));
    assert_int_equal(kz_test_sent_count(), 7);
    assert_null(kz_test_sent(7));

    const kz_test_line_sent *s = kz_test_sent(0);
    assert_int_equal(s->kind, KZ_LINE_REPLY);
    assert_int_equal(s->outbox_id, 1);
    assert_string_equal(s->reply_token, "tok-1");
    assert_null(s->to);
    assert_int_equal(s->fallback_to_push, 1);
    assert_string_equal(s->user, UID_A); /* where the reply falls back to */
    assert_string_equal(s->event_id, "e7");
    assert_int_equal(s->nmessages, 2);
    char buf[1024];
    assert_string_equal(s->messages, build_msgs(buf, sizeof buf)); /* a copy of the builder's */
    assert_non_null(strstr(s->messages, "\"text\":\"ようこそ \\\"friend\\\"\""));
    assert_int_equal(s->messages_len, strlen(s->messages));
    assert_true(kz_test_json_valid(s->messages, s->messages_len));

    s = kz_test_sent(1);
    assert_int_equal(s->kind, KZ_LINE_PUSH);
    assert_int_equal(s->outbox_id, 2);
    assert_string_equal(s->to, GROUP_C);
    assert_null(s->reply_token);
    assert_int_equal(s->fallback_to_push, 0);
    assert_string_equal(s->messages, TEXT_MSG);
    assert_int_equal(s->nmessages, 1);

    s = kz_test_sent(2);
    assert_int_equal(s->kind, KZ_LINE_MULTICAST);
    assert_int_equal(s->nto, 2);
    assert_string_equal(s->to_list[0], UID_A);
    assert_string_equal(s->to_list[1], UID_B);
    assert_null(s->to);
    assert_int_equal(s->rows, 1);

    s = kz_test_sent(3);
    assert_int_equal(s->kind, KZ_LINE_BROADCAST);
    assert_int_equal(s->outbox_id, 4);
    assert_null(s->to_list);
    assert_int_equal(s->nto, 0);
    assert_null(s->tag);
    assert_int_equal(s->notification_disabled, 0);

    s = kz_test_sent(4);
    assert_int_equal(s->kind, KZ_LINE_NARROWCAST);
    assert_string_equal(s->messages, TEXT_MSG); /* messages_len bytes only */
    assert_int_equal(s->messages_len, strlen(TEXT_MSG));
    assert_string_equal(s->narrowcast, "{\"limit\":{\"max\":100}}");
    assert_int_equal(s->notification_disabled, 1);
    assert_string_equal(s->tag, "campaign-7");

    s = kz_test_sent(5);
    assert_int_equal(s->kind, KZ_LINE_MULTICAST);
    assert_int_equal(s->nto, 501);
    assert_int_equal(s->rows, 2);
    assert_string_equal(s->to_list[500], UID_B);
    assert_int_equal(kz_test_sent(6)->outbox_id, 8);
}

/* Every check that refuses a request, each with the host's log line. */
static int bad_sends(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    int64_t id = 99;
    kz_line_send r;
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    r.messages = TEXT_MSG;
    assert_int_equal(kz_line_send_req(ctx, &r, &id), KZ_EINVAL); /* kind 0 */
    assert_int_equal(id, 0);
    r.kind = KZ_LINE_NARROWCAST + 1;
    assert_int_equal(kz_line_send_req(ctx, &r, NULL), KZ_EINVAL);
    assert_int_equal(kz_test_host()->line_send(ctx, NULL, NULL), KZ_EINVAL);
    r.kind = KZ_LINE_BROADCAST;
    r.struct_size = 4; /* not even the kind */
    assert_int_equal(kz_line_send_req(ctx, &r, NULL), KZ_EINVAL);
    r.struct_size = sizeof r;

    assert_int_equal(kz_line_reply(ctx, NULL, TEXT_MSG, 0), KZ_EINVAL);
    assert_int_equal(kz_line_reply(ctx, "", TEXT_MSG, 0), KZ_EINVAL);
    assert_int_equal(kz_line_push(ctx, NULL, TEXT_MSG), KZ_EINVAL);
    assert_int_equal(kz_line_push(ctx, "U1", TEXT_MSG), KZ_EINVAL); /* not a LINE id */
    assert_int_equal(kz_line_multicast(ctx, NULL, 0, TEXT_MSG), KZ_EINVAL);
    const char *to[] = {UID_A, GROUP_C}; /* multicast: users only */
    assert_int_equal(kz_line_multicast(ctx, to, 0, TEXT_MSG), KZ_EINVAL);
    assert_int_equal(kz_line_multicast(ctx, to, 2, TEXT_MSG), KZ_EINVAL);

    assert_int_equal(kz_line_broadcast(ctx, NULL), KZ_EINVAL);
    assert_int_equal(kz_line_broadcast(ctx, "[]"), KZ_EINVAL);
    assert_int_equal(kz_line_broadcast(ctx, "{\"type\":\"text\",\"text\":\"hi\"}"), KZ_EINVAL);
    assert_int_equal(kz_line_broadcast(ctx, "[\"hi\"]"), KZ_EINVAL);
    assert_int_equal(kz_line_broadcast(ctx, "[{\"type\":\"text\"},]"), KZ_EINVAL);
    assert_int_equal(kz_line_broadcast(ctx, TEXT_MSG " x"), KZ_EINVAL);
    assert_int_equal(kz_line_broadcast(ctx, "[{},{},{},{},{},{}]"), KZ_EINVAL); /* 6 */
    assert_int_equal(kz_line_broadcast(ctx, " \n[ {} , {},{},{},{} ]\t"), 0);   /* 5 */

    r.kind = KZ_LINE_NARROWCAST;
    r.narrowcast = "[1]";
    assert_int_equal(kz_line_send_req(ctx, &r, NULL), KZ_EINVAL);
    r.narrowcast = "{\"limit\":";
    assert_int_equal(kz_line_send_req(ctx, &r, NULL), KZ_EINVAL);
    r.narrowcast = NULL; /* every friend */
    char tag[102];
    memset(tag, 't', 101);
    tag[101] = '\0';
    r.tag = tag;
    assert_int_equal(kz_line_send_req(ctx, &r, NULL), KZ_EINVAL);
    tag[100] = '\0';
    assert_int_equal(kz_line_send_req(ctx, &r, &id), 0);
    assert_int_equal(id, 2);
    return 0;
}

static void line_send_validation(void **state)
{
    (void)state;
    load_probe();
    kz_assert_ok(run(bad_sends));
    assert_int_equal(kz_test_sent_count(), 2);
    assert_int_equal(kz_test_sent(0)->nmessages, 5);
    assert_int_equal(strlen(kz_test_sent(1)->tag), 100);
    assert_int_equal(kz_test_log_find("kz_line_send refused (event e1): "), 21);
    assert_int_equal(kz_test_log_find("refused (event e1): unknown kind 6"), 1);
    assert_int_equal(kz_test_log_find("reply without a reply token"), 2);
    assert_int_equal(kz_test_log_find("push to 'U1': not a user, group or room id"), 1);
    assert_int_equal(kz_test_log_find("multicast to nobody"), 2);
    assert_int_equal(kz_test_log_find("multicast to '" GROUP_C "': not a user id"), 1);
    assert_int_equal(kz_test_log_find("not a JSON array of message objects"), 4);
    assert_int_equal(kz_test_log_find("6 messages (LINE takes 1 to 5)"), 1);
    assert_int_equal(kz_test_log_find("0 messages (LINE takes 1 to 5)"), 1);
    assert_int_equal(kz_test_log_find("narrowcast: not a JSON object"), 2);
    assert_int_equal(kz_test_log_find("tag longer than 100 bytes"), 1);
    assert_int_equal(kz_test_log_level(0), KZ_LOG_ERROR);
}

static int send_then_fail(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    int64_t id;
    assert_int_equal(kz_test_host()->line_send(ctx, NULL, &id), KZ_EINVAL);
    kz_line_send r = {sizeof(kz_line_send),
                      KZ_LINE_PUSH,
                      NULL,
                      UID_B,
                      NULL,
                      0,
                      TEXT_MSG,
                      0,
                      NULL,
                      0,
                      0,
                      "t",
                      0,
                      0,
                      0};
    assert_int_equal(kz_line_send_req(ctx, &r, &id), 0);
    assert_int_equal(kz_line_broadcast(ctx, TEXT_MSG), 0);
    assert_int_equal(kz_test_sent_count(), 3);
    snprintf(err, errlen, "no");
    return KZ_EFAIL;
}

static int64_t last_id;

static int send_one(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    last_id = -1;
    kz_line_send r = {sizeof(kz_line_send),
                      KZ_LINE_REPLY,
                      "tok",
                      NULL,
                      NULL,
                      0,
                      TEXT_MSG,
                      0,
                      NULL,
                      0,
                      0,
                      NULL,
                      0,
                      0,
                      0};
    return kz_line_send_req(ctx, &r, &last_id);
}

static void line_send_rollback_and_stale_ctx(void **state)
{
    (void)state;
    load_probe();
    kz_assert_ok(run(send_one));
    assert_int_equal(last_id, 1);
    assert_int_equal(kz_test_sent_count(), 1);

    /* A failing handler's sends are discarded with its other effects. */
    assert_int_equal(run(send_then_fail), KZ_EFAIL);
    assert_string_equal(kz_test_error(), "no");
    assert_int_equal(kz_test_sent_count(), 1);
    assert_int_equal(kz_test_sent(0)->kind, KZ_LINE_REPLY);

    /* An injected store failure: the send fails, the handler returns it. */
    kz_test_fail_next(KZ_TEST_FAIL_LINE_SEND, KZ_EIO);
    assert_int_equal(run(send_one), KZ_EIO);
    assert_int_equal(last_id, 0);
    assert_int_equal(kz_test_sent_count(), 1);
    kz_assert_ok(run(send_one)); /* once only; ids are never reused */
    assert_int_equal(last_id, 4);
    assert_int_equal(kz_test_sent_count(), 2);
    assert_int_equal(kz_test_sent(1)->outbox_id, 4);

    /* The finished call's ctx is stale. */
    kz_line_send r = {sizeof(kz_line_send),
                      KZ_LINE_BROADCAST,
                      NULL,
                      NULL,
                      NULL,
                      0,
                      TEXT_MSG,
                      0,
                      NULL,
                      0,
                      0,
                      NULL,
                      0,
                      0,
                      0};
    int64_t id = 7;
    assert_int_equal(kz_test_host()->line_send(kz_test_last_ctx(), &r, &id), KZ_ESTATE);
    assert_int_equal(id, 0);
    assert_int_equal(kz_test_sent_count(), 2);
}

static void line_send_standby(void **state)
{
    (void)state;
    load_probe();
    const char *standby = "{\"type\":\"follow\",\"mode\":\"standby\",\"replyToken\":\"tok\"}";
    kz_test_fail_next(KZ_TEST_FAIL_LINE_SEND, KZ_EIO);
    kz_assert_ok(run_payload(send_one, "sb1", standby));
    assert_int_equal(last_id, 0);
    assert_int_equal(kz_test_sent_count(), 0);
    assert_int_equal(kz_test_log_find("kz_line_send: event sb1 arrived in standby mode: not sent"),
                     1);
    /* An active event sends, and meets the fault a standby call left armed. */
    const char *active = "{\"type\":\"follow\",\"mode\":\"active\",\"replyToken\":\"tok\"}";
    assert_int_equal(run_payload(send_one, "a1", active), KZ_EIO);
    kz_assert_ok(run_payload(send_one, "a2", active));
    assert_int_equal(last_id, 1);
    assert_int_equal(kz_test_sent_count(), 1);
    assert_string_equal(kz_test_sent(0)->event_id, "a2");
}

/* What an older plugin passes: the same fields, but only up to `narrowcast`
 * (notification_disabled, fallback_to_push and tag came "later"). */
typedef struct old_line_send {
    uint32_t struct_size;
    int kind;
    const char *reply_token;
    const char *to;
    const char *const *to_list;
    size_t nto;
    const char *messages;
    size_t messages_len;
    const char *narrowcast;
} old_line_send;

static int send_old_and_new(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    /* On the heap, so AddressSanitizer catches a read past its end. */
    old_line_send *old = (old_line_send *)calloc(1, sizeof *old);
    assert_non_null(old);
    old->struct_size = sizeof *old;
    old->kind = KZ_LINE_REPLY;
    old->reply_token = "old-tok";
    old->messages = TEXT_MSG;
    int64_t id;
    int rc = kz_test_host()->line_send(ctx, (const kz_line_send *)(const void *)old, &id);
    free(old);
    assert_int_equal(rc, 0);

    /* A struct_size that stops before the tag: fields past it are not read. */
    kz_line_send r = {sizeof(kz_line_send),
                      KZ_LINE_PUSH,
                      NULL,
                      UID_A,
                      NULL,
                      0,
                      TEXT_MSG,
                      0,
                      NULL,
                      1,
                      1,
                      "never read",
                      0,
                      0,
                      0};
    r.struct_size = (uint32_t)offsetof(kz_line_send, notification_disabled);
    assert_int_equal(kz_line_send_req(ctx, &r, NULL), 0);

    /* A newer plugin's longer struct: the known part is read. */
    struct {
        kz_line_send base;
        char later[32];
    } newer;
    memset(&newer, 0, sizeof newer);
    newer.base.struct_size = sizeof newer;
    newer.base.kind = KZ_LINE_BROADCAST;
    newer.base.messages = TEXT_MSG;
    newer.base.tag = "newer";
    return kz_line_send_req(ctx, &newer.base, NULL);
}

/* ABI 1.5: the delivery policy fields are recorded as set, and checked
 * like the host checks them. */
static int send_promotional(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    const char *to[] = {UID_A, UID_B};
    kz_line_send r = {.struct_size = sizeof r,
                      .kind = KZ_LINE_MULTICAST,
                      .to_list = to,
                      .nto = 2,
                      .messages = TEXT_MSG,
                      .promotional = 1,
                      .priority = 7,
                      .over_cap = KZ_OVER_CAP_DROP};
    assert_int_equal(kz_line_send_req(ctx, &r, NULL), 0);
    kz_line_send b = {
        .struct_size = sizeof b, .kind = KZ_LINE_BROADCAST, .messages = TEXT_MSG, .promotional = 1};
    assert_int_equal(kz_line_send_req(ctx, &b, NULL), KZ_EINVAL);
    b.promotional = 0;
    b.over_cap = 5;
    assert_int_equal(kz_line_send_req(ctx, &b, NULL), KZ_EINVAL);
    return kz_line_push(ctx, UID_A, TEXT_MSG);
}

static void line_send_promotional(void **state)
{
    (void)state;
    load_probe();
    kz_assert_ok(run(send_promotional));
    assert_int_equal(kz_test_sent_count(), 2);
    const kz_test_line_sent *s = kz_test_sent(0);
    assert_int_equal(s->promotional, 1);
    assert_int_equal(s->priority, 7);
    assert_int_equal(s->over_cap, KZ_OVER_CAP_DROP);
    s = kz_test_sent(1);
    assert_int_equal(s->promotional, 0);
    assert_int_equal(s->priority, 0);
    assert_int_equal(s->over_cap, KZ_OVER_CAP_DEFER);
    assert_int_equal(kz_test_log_find("promotional applies to push and multicast only"), 1);
    assert_int_equal(kz_test_log_find("over_cap must be"), 1);
}

static void line_send_struct_sizes(void **state)
{
    (void)state;
    load_probe();
    kz_assert_ok(run(send_old_and_new));
    assert_int_equal(kz_test_sent_count(), 3);
    const kz_test_line_sent *s = kz_test_sent(0);
    assert_int_equal(s->kind, KZ_LINE_REPLY);
    assert_string_equal(s->reply_token, "old-tok");
    assert_string_equal(s->messages, TEXT_MSG);
    assert_int_equal(s->fallback_to_push, 0);
    assert_null(s->tag);
    s = kz_test_sent(1);
    assert_string_equal(s->to, UID_A);
    assert_int_equal(s->notification_disabled, 0);
    assert_int_equal(s->fallback_to_push, 0);
    assert_null(s->tag);
    assert_string_equal(kz_test_sent(2)->tag, "newer");
}

/* ---- descriptor checks -------------------------------------------------- */

static kz_plugin bad_desc;
static const kz_plugin *bad_entry(const kz_host *host)
{
    (void)host;
    return &bad_desc;
}

/* ---- API calls (ABI 1.2) ---- */

#define UID "U0123456789abcdef0123456789abcdef"

static int calls_made(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    static const char *const users[] = {UID, UID, UID};
    int rc = kz_line_get_profile(ctx, UID, "p");
    if (rc == 0)
        rc = kz_line_richmenu_bulk_link(ctx, "richmenu-1", users, 3, "b");
    if (rc == 0)
        rc = kz_line_richmenu_upload(ctx, "richmenu-1", "image/png", "\x89PNG\0\1", 6, NULL);
    return rc;
}

static void line_call_records(void **state)
{
    (void)state;
    load_probe();
    kz_assert_ok(run(calls_made));
    assert_int_equal(kz_test_called_count(), 3);
    const kz_test_line_called *c = kz_test_called(0);
    assert_string_equal(c->method, "GET");
    assert_string_equal(c->path, "/v2/bot/profile/" UID);
    assert_string_equal(c->user, UID);
    assert_string_equal(c->tag, "p");
    assert_string_equal(c->event_id, "e1");
    assert_int_equal(c->body_len, 0);
    c = kz_test_called(1);
    assert_string_equal(c->path, "/v2/bot/richmenu/bulk/link");
    assert_string_equal(c->body, "{\"richMenuId\":\"richmenu-1\"}");
    assert_int_equal(c->nusers, 3);
    assert_string_equal(c->users[2], UID);
    c = kz_test_called(2);
    assert_int_equal(c->body_len, 6);
    assert_memory_equal(c->body, "\x89PNG\0\1", 6);
    assert_int_equal(c->data_api, 1);
    assert_string_equal(c->content_type, "image/png");
    assert_null(kz_test_called(3));
}

static int call_raw(kz_ctx *ctx, const char *method, const char *path, const char *body)
{
    kz_line_call c = {.struct_size = sizeof c, .method = method, .path = path, .body = body};
    return kz_line_call_req(ctx, &c, NULL);
}

static int bad_calls(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    assert_int_equal(call_raw(ctx, "POST", "/v2/bot/message/push", "{}"), KZ_EINVAL);
    assert_int_equal(call_raw(ctx, "GET", "/v2/bot/../x", NULL), KZ_EINVAL);
    assert_int_equal(call_raw(ctx, "GET", "/v2/bot/profile/x", "{}"), KZ_EINVAL);
    assert_int_equal(call_raw(ctx, "POST", "/v2/bot/richmenu", "{oops"), KZ_EINVAL);
    assert_int_equal(call_raw(ctx, "PATCH", "/v2/bot/richmenu", "{}"), KZ_EINVAL);
    assert_int_equal(call_raw(ctx, "GET", "/oauth/x", NULL), KZ_EINVAL);
    assert_int_equal(kz_line_get_profile(ctx, "U1", NULL), KZ_EINVAL); /* not a user id */
    return KZ_OK;
}

static int call_then_fail(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    kz_assert_ok(kz_line_quota(ctx, NULL));
    snprintf(err, errlen, "no");
    return KZ_EFAIL;
}

static void line_call_checks_and_rollback(void **state)
{
    (void)state;
    load_probe();
    kz_assert_ok(run(bad_calls));
    assert_int_equal(kz_test_called_count(), 0);
    assert_int_equal(kz_test_log_find("kz_line_call refused"), 7);
    assert_int_equal(kz_test_log_find("use kz_line_send"), 1);
    assert_int_equal(run(call_then_fail), KZ_EFAIL);
    assert_int_equal(kz_test_called_count(), 0);
    kz_test_fail_next(KZ_TEST_FAIL_LINE_CALL, KZ_EIO);
    assert_int_equal(run(calls_made), KZ_EIO);
    assert_int_equal(kz_test_called_count(), 0);
}

static void descriptor_checks(void **state)
{
    (void)state;
    const kz_plugin *good = kizuna_plugin_v1(kz_test_host());

    char want[128];
    bad_desc = *good;
    bad_desc.abi_major = 2;
    assert_int_equal(kz_test_load(bad_entry), KZ_EINVAL);
    snprintf(want, sizeof want,
             "plugin 'probe' (test): built for ABI 2.%d, host has ABI 1.%d — refused", KZ_ABI_MINOR,
             KZ_ABI_MINOR);
    assert_string_equal(kz_test_error(), want);

    bad_desc = *good;
    bad_desc.abi_minor = KZ_ABI_MINOR + 1; /* newer than the host */
    assert_int_equal(kz_test_load(bad_entry), KZ_EINVAL);

    bad_desc = *good;
    bad_desc.struct_size = 16;
    assert_int_equal(kz_test_load(bad_entry), KZ_EINVAL);

    bad_desc = *good;
    bad_desc.handle = NULL;
    assert_int_equal(kz_test_load(bad_entry), KZ_EINVAL);
    assert_string_equal(kz_test_error(),
                        "plugin 'probe' (test): mandatory callback 'handle' is NULL");

    bad_desc = *good;
    bad_desc.name = "Bad-Name";
    assert_int_equal(kz_test_load(bad_entry), KZ_EINVAL);

    static const char *const bad_subs[] = {"line.*.x", NULL};
    bad_desc = *good;
    bad_desc.subscriptions = bad_subs;
    assert_int_equal(kz_test_load(bad_entry), KZ_EINVAL);

    load_probe();
    assert_int_equal(kz_test_load(kizuna_plugin_v1), KZ_ESTATE); /* already loaded */
}

/* ---- friends, segments, local time (ABI 1.3) ---------------------------- */

#define UA "U0123456789abcdef0123456789abcdef"
#define UB "Ufedcba9876543210fedcba9876543210"
#define UC "U00000000000000000000000000000000"

static int friend_get_ops(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    const char *json;
    size_t len;
    assert_int_equal(kz_friend_get(ctx, UA, &json, &len), 0);
    assert_string_equal(
        json, "{\"user\":\"" UA "\",\"following\":true,\"follows\":2,"
              "\"firstFollow\":\"2023-11-14T22:13:20Z\",\"lastFollow\":\"2023-11-14T22:13:21Z\","
              "\"unfollow\":null,\"firstActive\":\"1970-01-01T00:00:00Z\",\"lastActive\":null,"
              "\"displayName\":\"Brown \\\"B\\\"\",\"pictureUrl\":null,\"statusMessage\":null,"
              "\"language\":\"ja\",\"tags\":[\"vip\",\"乾燥肌\"],"
              "\"attributes\":{\"age\":34,\"birthday\":\"1990-02-28\"},"
              "\"links\":{\"shop\":\"M-1\"}}");
    assert_int_equal(len, strlen(json));
    assert_true(kz_test_json_valid(json, len));
    assert_int_equal(kz_friend_get(ctx, UB, &json, NULL), KZ_ENOTFOUND);
    assert_int_equal(kz_friend_get(ctx, "U1", &json, NULL), KZ_EINVAL);
    assert_int_equal(kz_friend_get(ctx, NULL, &json, NULL), KZ_EINVAL);
    kz_test_fail_next(KZ_TEST_FAIL_FRIEND_GET, KZ_EIO);
    assert_int_equal(kz_friend_get(ctx, UA, &json, NULL), KZ_EIO);
    return 0;
}

static void friend_get_json(void **state)
{
    (void)state;
    kz_test_declare_attribute("age", "number");
    kz_test_declare_attribute("birthday", "date");
    kz_test_friend_add(UA, 1);
    kz_test_friend_set_follows(UA, 2);
    kz_test_friend_set_times(UA, KZ_TEST_DEFAULT_NOW, KZ_TEST_DEFAULT_NOW + 1000, 0, 1, 0);
    kz_test_friend_set_profile(UA, "Brown \"B\"", NULL, NULL, "ja");
    kz_test_friend_add_tag(UA, "vip");
    kz_test_friend_add_tag(UA, "乾燥肌");
    kz_test_friend_add_tag(UA, "vip"); /* once */
    kz_test_friend_set_attr(UA, "age", " 34 ");
    kz_test_friend_set_attr(UA, "birthday", "\"1990-02-28\"");
    kz_test_friend_set_link(UA, "shop", "M-1");
    load_probe();
    kz_assert_ok(run(friend_get_ops));
    assert_int_equal(kz_test_friend_count(), 1);
    assert_int_equal(kz_test_published_count(NULL), 0); /* reads and seeds publish nothing */
    assert_int_equal(kz_friend_get(kz_test_last_ctx(), UA, &(const char *){NULL}, NULL), KZ_ESTATE);
}

static int tag_ops(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    assert_int_equal(kz_friend_has_tag(ctx, UA, "vip"), 0);
    assert_int_equal(kz_friend_tag(ctx, UA, "vip"), 0);
    assert_int_equal(kz_friend_has_tag(ctx, UA, "vip"), 1); /* sees its own change */
    assert_int_equal(kz_friend_tag(ctx, UA, "vip"), KZ_EEXIST);
    assert_int_equal(kz_friend_tag(ctx, UB, "new"), 0); /* creates the friend */
    assert_int_equal(kz_friend_untag(ctx, UA, "vip"), 0);
    assert_int_equal(kz_friend_untag(ctx, UA, "vip"), KZ_ENOTFOUND);
    assert_int_equal(kz_friend_untag(ctx, UC, "vip"), KZ_ENOTFOUND);
    assert_int_equal(kz_friend_has_tag(ctx, UC, "vip"), 0);
    assert_int_equal(kz_friend_tag(ctx, UA, ""), KZ_EINVAL);
    assert_int_equal(kz_friend_tag(ctx, UA, "a\tb"), KZ_EINVAL);
    assert_int_equal(kz_friend_tag(ctx, UA, "\xff"), KZ_EINVAL);
    char long_tag[102];
    memset(long_tag, 't', 101);
    long_tag[101] = '\0';
    assert_int_equal(kz_friend_tag(ctx, UA, long_tag), KZ_EINVAL);
    long_tag[100] = '\0';
    assert_int_equal(kz_friend_tag(ctx, UA, long_tag), 0);
    assert_int_equal(kz_friend_tag(ctx, "U0123", "x"), KZ_EINVAL);
    kz_test_fail_next(KZ_TEST_FAIL_FRIEND_TAG, KZ_EIO);
    assert_int_equal(kz_friend_tag(ctx, UA, "x"), KZ_EIO);
    return 0;
}

static void friend_tags_and_events(void **state)
{
    (void)state;
    kz_test_friend_add(UA, 1);
    load_probe();
    kz_assert_ok(run(tag_ops));
    assert_int_equal(kz_test_friend_count(), 2);
    assert_false(kz_test_friend_has_tag(UA, "vip"));
    assert_true(kz_test_friend_has_tag(UB, "new"));
    assert_int_equal(kz_test_friend_tag_count(UA), 1); /* the 100-byte one */
    assert_int_equal(kz_test_published_count("friend.tagged"), 3);
    assert_int_equal(kz_test_published_count("friend.untagged"), 1);
    assert_string_equal(kz_test_published_topic(0), "friend.tagged");
    assert_string_equal(kz_test_published_user(0), UA);
    assert_string_equal(kz_test_published_payload(0), "{\"tag\":\"vip\",\"by\":\"probe\"}");
    assert_string_equal(kz_test_published_user(1), UB);
    assert_string_equal(kz_test_published_topic(2), "friend.untagged");
    assert_string_equal(kz_test_published_payload(2), "{\"tag\":\"vip\",\"by\":\"probe\"}");
    assert_string_equal(kz_test_published_id(0), "e1/probe/1");
}

static int tag_then_fail(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    assert_int_equal(kz_friend_tag(ctx, UA, "gone"), 0);
    assert_int_equal(kz_friend_tag(ctx, UB, "gone"), 0);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "age", "40"), 0);
    assert_int_equal(kz_friend_link(ctx, UA, "shop", "M-9"), 0);
    snprintf(err, errlen, "no");
    return KZ_EFAIL;
}

static void friend_rollback(void **state)
{
    (void)state;
    kz_test_declare_attribute("age", "number");
    kz_test_friend_add(UA, 1);
    kz_test_friend_add_tag(UA, "kept");
    kz_test_friend_set_attr(UA, "age", "30");
    load_probe();
    assert_int_equal(run(tag_then_fail), KZ_EFAIL);
    assert_int_equal(kz_test_friend_count(), 1);
    assert_false(kz_test_friend_has_tag(UA, "gone"));
    assert_true(kz_test_friend_has_tag(UA, "kept"));
    assert_string_equal(kz_test_friend_attr(UA, "age"), "30");
    assert_null(kz_test_friend_link(UA, "shop"));
    assert_int_equal(kz_test_published_count(NULL), 0);
    kz_assert_ok(run(tag_ops)); /* the registry still works after a rollback */
}

static int attr_ops(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    assert_int_equal(kz_friend_attr_set(ctx, UA, "nope", "1"), KZ_ENOTFOUND);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "age", "\"34\""), KZ_ETYPE);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "age", "true"), KZ_ETYPE);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "member", "1"), KZ_ETYPE);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "name", "3"), KZ_ETYPE);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "birthday", "\"2023-02-29\""), KZ_ETYPE);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "birthday", "\"2024-2-29\""), KZ_ETYPE);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "age", "{"), KZ_EINVAL);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "age", NULL), KZ_EINVAL);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "age", "34"), 0);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "age", "34"), 0); /* no change, no event */
    assert_int_equal(kz_friend_attr_set(ctx, UA, "age", "35"), 0);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "birthday", "\"2024-02-29\""), 0);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "member", "true"), 0);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "name", "\"Sally\""), 0);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "name", "null"), 0);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "name", "null"), 0); /* absent: nothing */
    assert_int_equal(kz_friend_attr_set(ctx, UB, "member", "null"), 0);
    kz_test_fail_next(KZ_TEST_FAIL_FRIEND_ATTR, KZ_EIO);
    assert_int_equal(kz_friend_attr_set(ctx, UA, "age", "1"), KZ_EIO);
    return 0;
}

static void friend_attributes(void **state)
{
    (void)state;
    kz_test_declare_attribute("age", "number");
    kz_test_declare_attribute("birthday", "date");
    kz_test_declare_attribute("member", "bool");
    kz_test_declare_attribute("name", "string");
    kz_test_friend_add(UA, 1);
    load_probe();
    kz_assert_ok(run(attr_ops));
    assert_string_equal(kz_test_friend_attr(UA, "age"), "35");
    assert_string_equal(kz_test_friend_attr(UA, "birthday"), "\"2024-02-29\"");
    assert_string_equal(kz_test_friend_attr(UA, "member"), "true");
    assert_null(kz_test_friend_attr(UA, "name"));
    assert_int_equal(kz_test_friend_count(), 1); /* removing from nobody creates nobody */
    assert_int_equal(kz_test_published_count("friend.attribute"), 6);
    assert_string_equal(kz_test_published_payload(0),
                        "{\"name\":\"age\",\"value\":34,\"previous\":null,\"by\":\"probe\"}");
    assert_string_equal(kz_test_published_payload(1),
                        "{\"name\":\"age\",\"value\":35,\"previous\":34,\"by\":\"probe\"}");
    assert_string_equal(kz_test_published_payload(5), "{\"name\":\"name\",\"value\":null,"
                                                      "\"previous\":\"Sally\",\"by\":\"probe\"}");
}

static int link_ops(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    const char *who;
    assert_int_equal(kz_friend_by_link(ctx, "shop", "M-1", &who), KZ_ENOTFOUND);
    assert_int_equal(kz_friend_link(ctx, UA, "shop", "M-1"), 0);
    assert_int_equal(kz_friend_link(ctx, UA, "shop", "M-1"), KZ_EEXIST);
    assert_int_equal(kz_friend_by_link(ctx, "shop", "M-1", &who), 0);
    assert_string_equal(who, UA);
    assert_int_equal(kz_friend_link(ctx, UB, "shop", "M-1"), 0); /* moves */
    assert_int_equal(kz_friend_by_link(ctx, "shop", "M-1", &who), 0);
    assert_string_equal(who, UB);
    assert_int_equal(kz_friend_link(ctx, UB, "rakuten", "R-1"), 0);
    assert_int_equal(kz_friend_link(ctx, UB, "rakuten", NULL), 0);
    assert_int_equal(kz_friend_link(ctx, UB, "rakuten", NULL), KZ_ENOTFOUND);
    assert_int_equal(kz_friend_link(ctx, UA, "Shop", "M-2"), KZ_EINVAL);
    assert_int_equal(kz_friend_link(ctx, UA, "shop", ""), KZ_EINVAL);
    assert_int_equal(kz_friend_by_link(ctx, "shop", NULL, &who), KZ_EINVAL);
    kz_test_fail_next(KZ_TEST_FAIL_FRIEND_LINK, KZ_EIO);
    assert_int_equal(kz_friend_link(ctx, UA, "shop", "M-3"), KZ_EIO);
    return 0;
}

static void friend_links(void **state)
{
    (void)state;
    kz_test_friend_add(UA, 1);
    load_probe();
    kz_assert_ok(run(link_ops));
    assert_null(kz_test_friend_link(UA, "shop"));
    assert_string_equal(kz_test_friend_link(UB, "shop"), "M-1");
    assert_null(kz_test_friend_link(UB, "rakuten"));
    assert_int_equal(kz_test_published_count("friend.linked"), 3);
    assert_int_equal(kz_test_published_count("friend.unlinked"), 2);
    assert_string_equal(kz_test_published_payload(0),
                        "{\"source\":\"shop\",\"member\":\"M-1\",\"by\":\"probe\"}");
    assert_string_equal(kz_test_published_topic(1), "friend.unlinked");
    assert_string_equal(kz_test_published_user(1), UA);
    assert_string_equal(kz_test_published_topic(2), "friend.linked");
    assert_string_equal(kz_test_published_user(2), UB);
}

static int segment_ops(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    assert_int_equal(kz_segment_match(ctx, probe_seg, UA), 1); /* vip, following */
    assert_int_equal(kz_segment_match(ctx, probe_seg, UB), 0); /* vip, blocked */
    assert_int_equal(kz_segment_match(ctx, probe_seg, UC), 1); /* unknown: "new" branch */
    assert_int_equal(kz_segment_match(ctx, probe_seg, "U1"), KZ_EINVAL);
    kz_test_fail_next(KZ_TEST_FAIL_SEGMENT_MATCH, KZ_EIO);
    assert_int_equal(kz_segment_match(ctx, probe_seg, UA), KZ_EIO);
    return 0;
}

static void load_segment(const char *expr)
{
    kz_setting *g = kz_test_setting_group();
    kz_test_setting_set_string(g, "must", "x");     /* line 2 */
    kz_test_setting_set_string(g, "segment", expr); /* line 3 */
    kz_test_set_shop("solia", NULL);
    assert_int_equal(kz_test_load_settings(kizuna_plugin_v1, g), KZ_EINVAL);
}

static void segments_subset(void **state)
{
    (void)state;
    kz_test_friend_add(UA, 1);
    kz_test_friend_add_tag(UA, "vip");
    kz_test_friend_add(UB, 0);
    kz_test_friend_add_tag(UB, "vip");
    kz_setting *g = kz_test_setting_group();
    kz_test_setting_set_string(g, "must", "x");
    kz_test_setting_set_string(g, "segment",
                               " (tag(\"vip\") && !blocked) ||\n!(tag(\"a\\\"b\") || blocked)");
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_assert_ok(run(segment_ops));
}

static void segment_errors(void **state)
{
    (void)state;
    static const struct {
        const char *expr, *err;
    } cases[] = {
        {"", "3:1: shop 'solia': plugin 'probe': segment: empty expression"},
        {"(tag(\"a\") || blocked", "3:21: shop 'solia': plugin 'probe': segment: expected ')' "
                                   "to close '(' at column 1, found 'end of expression'"},
        {"tag(\"a", "3:5: shop 'solia': plugin 'probe': segment: unterminated string"},
        {"tag(\"a\") xyz", "3:10: shop 'solia': plugin 'probe': segment: unexpected 'xyz' after "
                           "a complete expression"},
        {"tag(\"乾燥肌\") && attr.age >= 20",
         "3:15: shop 'solia': plugin 'probe': segment: 'attr.age' is not supported by the fake "
         "host (testing.h knows tag(\"…\"), blocked, !, &&, ||, parentheses)"},
        {"tag(\"\")", "3:5: shop 'solia': plugin 'probe': segment: tag name is empty"},
        {"tag(\"a\") &&", "3:12: shop 'solia': plugin 'probe': segment: expected a condition at "
                          "the end of the expression"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kz_test_reset();
        load_segment(cases[i].expr);
        char want[512];
        snprintf(want, sizeof want, "test.conf:%s", cases[i].err);
        assert_string_equal(kz_test_error(), want);
    }
}

static int local_time_ops(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    kz_local_time lt;
    /* 2023-11-14T22:13:20Z */
    assert_int_equal(kz_local_time_of(kz_ctx_shop(ctx), kz_now_ms(), &lt), 0);
    const char *tz = kz_shop_timezone(kz_ctx_shop(ctx));
    if (strcmp(tz, "Asia/Tokyo") == 0) {
        assert_int_equal(lt.year * 10000 + lt.month * 100 + lt.day, 20231115);
        assert_int_equal(lt.hour * 10000 + lt.minute * 100 + lt.second, 71320);
        assert_int_equal(lt.weekday, 3); /* Wednesday */
        assert_int_equal(lt.utc_offset_s, 32400);
    } else {
        assert_int_equal(lt.year * 10000 + lt.month * 100 + lt.day, 20231114);
        assert_int_equal(lt.hour, 17);
        assert_int_equal(lt.weekday, 2);
        assert_int_equal(lt.utc_offset_s, -18000);
    }
    assert_int_equal(kz_local_time_of(NULL, 0, &lt), KZ_EINVAL);
    assert_int_equal(kz_local_time_of(kz_ctx_shop(ctx), 0, NULL), KZ_EINVAL);
    return 0;
}

static void local_time(void **state)
{
    (void)state;
    setenv("TZ", "Europe/Paris", 1);
    load_probe();
    kz_assert_ok(run(local_time_ops));
    kz_test_reset();
    kz_test_set_shop(NULL, "America/New_York");
    load_probe();
    kz_assert_ok(run(local_time_ops));
    assert_string_equal(getenv("TZ"), "Europe/Paris"); /* restored */
    unsetenv("TZ");
    kz_local_time lt;
    kz_test_set_shop(NULL, "Asia/Tokyo");
    assert_int_equal(kz_local_time_of(kz_test_shop(), 1711846800000LL, &lt), 0); /* 03-31 01:00Z */
    assert_int_equal(lt.hour, 10);
    assert_null(getenv("TZ"));
}

/* ---- timers (ABI 1.4) ---------------------------------------------------- */

static int timer_ops(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    (void)err;
    (void)errlen;
    int64_t now = kz_now_ms();
    assert_int_equal(kz_timer_set(ctx, "", now, "remind.x", NULL, NULL), KZ_EINVAL);
    assert_int_equal(kz_timer_set(ctx, "k", now, "Bad Topic", NULL, NULL), KZ_EINVAL);
    assert_int_equal(kz_timer_set(ctx, "k", now, "remind.x", NULL, "{"), KZ_EINVAL);
    assert_int_equal(kz_timer_cancel(ctx, "none"), KZ_ENOTFOUND);
    kz_assert_ok(kz_timer_set(ctx, "late", now + 3000, "remind.late", "U1", "{\"n\":3}"));
    kz_assert_ok(kz_timer_set(ctx, "early", now + 5000, "remind.early", "U1", NULL));
    kz_assert_ok(kz_timer_set(ctx, "early", now + 1000, "remind.early", "U1", NULL)); /* moved */
    kz_assert_ok(kz_timer_set(ctx, "gone", now + 1000, "remind.gone", NULL, NULL));
    return kz_timer_cancel(ctx, "gone");
}

static int timer_then_fail(kz_ctx *ctx, const kz_event *ev, char *err, size_t errlen)
{
    (void)ev;
    kz_assert_ok(kz_timer_set(ctx, "lost", kz_now_ms(), "remind.lost", NULL, NULL));
    kz_assert_ok(kz_timer_cancel(ctx, "late"));
    snprintf(err, errlen, "no");
    return KZ_EFAIL;
}

static void timers_record_fire_and_roll_back(void **state)
{
    (void)state;
    load_probe();
    kz_assert_ok(run(timer_ops));
    assert_int_equal(kz_test_timer_count(), 2);
    assert_string_equal(kz_test_timer(0)->key, "late");
    assert_string_equal(kz_test_timer(1)->key, "early");
    assert_int_equal(kz_test_timer(1)->due_ms, kz_test_now() + 1000);
    assert_null(kz_test_timer(2));
    assert_int_equal(run(timer_then_fail), KZ_EFAIL);
    assert_int_equal(kz_test_timer_count(), 2); /* "lost" vanished, "late" kept */
    kz_event *fired[4];
    assert_int_equal(kz_test_fire_timers(fired, 4), 0);
    kz_test_advance(3000);
    assert_int_equal(kz_test_fire_timers(fired, 4), 2);
    assert_string_equal(kz_event_topic(fired[0]), "remind.early");
    assert_string_equal(kz_event_payload(fired[0], NULL), "{}");
    assert_string_equal(kz_event_topic(fired[1]), "remind.late");
    assert_string_equal(kz_event_payload(fired[1], NULL), "{\"n\":3}");
    assert_string_equal(kz_event_user(fired[1]), "U1");
    assert_int_equal(kz_event_time_ms(fired[1]), kz_test_now());
    assert_int_equal(strncmp(kz_event_id(fired[0]), "timer:", 6), 0);
    assert_int_equal(kz_test_timer_count(), 0);
    kz_assert_ok(kz_test_handle(fired[0])); /* an event like any other */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(kv_semantics, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(rollback_and_stale_ctx, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(publish_validation, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(fault_injection, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(events_clock_shop_logs, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(settings_defaults_and_types, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(settings_nested_and_errors, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(schema_errors, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(line_send_kinds, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(line_send_validation, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(line_send_rollback_and_stale_ctx, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(line_send_standby, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(line_send_struct_sizes, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(line_send_promotional, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(line_call_records, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(line_call_checks_and_rollback, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(descriptor_checks, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(friend_get_json, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(friend_tags_and_events, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(friend_rollback, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(friend_attributes, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(friend_links, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(segments_subset, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(segment_errors, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(local_time, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(timers_record_fire_and_roll_back, kz_test_setup,
                                        kz_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
