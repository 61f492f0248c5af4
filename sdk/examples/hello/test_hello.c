/*
 * Unit test of the hello plugin against the SDK's fake host (testing.h).
 * hello.c is compiled into this executable; no daemon, no dlopen.
 */
#include <kizuna/testing.h>

/* Loads hello with max_per_user = max (0: the default, 3). */
static void load_hello(int64_t max, const char *greeting)
{
    kz_setting *g = kz_test_setting_group();
    if (greeting != NULL)
        kz_test_setting_set_string(g, "greeting", greeting);
    if (max != 0)
        kz_test_setting_set_int(g, "max_per_user", max);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
}

static void descriptor_and_defaults(void **state)
{
    (void)state;
    kz_assert_ok(kz_test_load(kizuna_plugin_v1));
    const kz_plugin *p = kz_test_plugin();
    assert_string_equal(p->name, "hello");
    assert_string_equal(p->version, "0.1.0");
    assert_int_equal(kz_test_subscription_count(), 2);
    assert_true(kz_test_subscribed("line.follow"));
    assert_true(kz_test_subscribed("line.message.*"));
    assert_false(kz_test_subscribed("line.unfollow"));

    kz_assert_ok(kz_test_handle(kz_test_event("line.follow", NULL, "U1", NULL, NULL)));
    assert_int_equal(kz_test_published_count("hello.greeted"), 1);
    assert_string_equal(kz_test_published_payload(0),
                        "{\"user\":\"U1\",\"count\":1,\"text\":\"Hello\"}");
}

static void greets_with_escaped_text(void **state)
{
    (void)state;
    load_hello(0, "Hi \"friend\"\\\n\tようこそ");
    kz_event *ev = kz_test_event("line.message.text", NULL, "Uabc", "wh-1", "{\"text\":\"hi\"}");
    kz_assert_ok(kz_test_handle(ev));

    assert_int_equal(kz_test_published_count(NULL), 1);
    assert_string_equal(kz_test_published_topic(0), "hello.greeted");
    assert_string_equal(kz_test_published_user(0), "Uabc");
    assert_string_equal(kz_test_published_payload(0),
                        "{\"user\":\"Uabc\",\"count\":1,"
                        "\"text\":\"Hi \\\"friend\\\"\\\\\\n\\tようこそ\"}");
    assert_true(
        kz_test_json_valid(kz_test_published_payload(0), strlen(kz_test_published_payload(0))));
    assert_string_equal(kz_test_published_id(0), "wh-1/hello/1");
    assert_string_equal(kz_test_kv_get("greeted:Uabc", NULL), "1");
    assert_int_equal(kz_test_log_find("greeted user=Uabc count=1/3"), 1);
    assert_int_equal(kz_test_sent_count(), 0); /* a message is not answered */
}

static void stops_after_max(void **state)
{
    (void)state;
    load_hello(2, NULL);
    for (int i = 0; i < 5; i++)
        kz_assert_ok(kz_test_handle(kz_test_event("line.message.text", NULL, "U1", NULL, NULL)));
    kz_assert_ok(kz_test_handle(kz_test_event("line.follow", NULL, "U2", NULL, NULL)));

    assert_int_equal(kz_test_published_count("hello.greeted"), 3);
    assert_string_equal(kz_test_published_payload(1),
                        "{\"user\":\"U1\",\"count\":2,\"text\":\"Hello\"}");
    assert_string_equal(kz_test_published_user(2), "U2");
    assert_string_equal(kz_test_kv_get("greeted:U1", NULL), "2");
    assert_string_equal(kz_test_kv_get("greeted:U2", NULL), "1");
}

static void rejects_zero_max(void **state)
{
    (void)state;
    kz_test_set_shop("solia", NULL);
    kz_setting *g = kz_test_setting_group();         /* line 1 */
    kz_test_setting_set_string(g, "greeting", "Hi"); /* line 2 */
    kz_test_setting_set_int(g, "max_per_user", 0);   /* line 3 */
    assert_int_equal(kz_test_load_settings(kizuna_plugin_v1, g), KZ_EINVAL);
    assert_string_equal(kz_test_error(),
                        "test.conf:3: shop 'solia': plugin 'hello': max_per_user: must be > 0, "
                        "got 0");
    /* shop_open failed: no instance, so nothing is handled. */
    assert_int_equal(kz_test_handle(kz_test_event("line.follow", NULL, "U1", NULL, NULL)),
                     KZ_ESTATE);
}

static void rejects_wrong_type(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_test_setting_set_string(g, "max_per_user", "three");
    assert_int_equal(kz_test_load_settings(kizuna_plugin_v1, g), KZ_EINVAL);
    assert_string_equal(kz_test_error(), "test.conf:2: shop 'test': plugin 'hello': "
                                         "max_per_user: expected an integer, got a string");
}

static void ignores_events_without_user(void **state)
{
    (void)state;
    load_hello(0, NULL);
    kz_assert_ok(kz_test_handle(kz_test_event("line.message.text", NULL, NULL, NULL, NULL)));
    assert_int_equal(kz_test_published_count(NULL), 0);
    assert_int_equal(kz_test_kv_count(), 0);
}

static void failing_publish_rolls_back(void **state)
{
    (void)state;
    load_hello(0, NULL);
    kz_assert_ok(kz_test_handle(kz_test_event("line.follow", NULL, "U1", NULL, NULL)));

    /* The store fails under the publish: the handler returns the error, and
     * the counter it had already incremented is rolled back with it. */
    kz_test_fail_next(KZ_TEST_FAIL_PUBLISH, KZ_EIO);
    kz_event *ev = kz_test_event("line.message.text", NULL, "U1", NULL, NULL);
    assert_int_equal(kz_test_handle(ev), KZ_EIO);
    assert_string_equal(kz_test_error(), "publishing hello.greeted: error -5");
    assert_string_equal(kz_test_kv_get("greeted:U1", NULL), "1");
    assert_int_equal(kz_test_published_count(NULL), 1);

    /* The retry (same event, next attempt) succeeds. */
    kz_test_event_set_attempt(ev, 2);
    kz_assert_ok(kz_test_handle(ev));
    assert_string_equal(kz_test_kv_get("greeted:U1", NULL), "2");
    assert_int_equal(kz_test_published_count("hello.greeted"), 2);
}

/* LINE's follow event as the host hands it over (compact JSON). */
#define FOLLOW(mode, token)                                                                        \
    "{\"type\":\"follow\",\"mode\":\"" mode "\",\"timestamp\":1700000000000,"                      \
    "\"source\":{\"type\":\"user\",\"userId\":\"U1\"},\"replyToken\":\"" token "\","               \
    "\"follow\":{\"isUnblocked\":false}}"

static void replies_to_follow(void **state)
{
    (void)state;
    load_hello(1, "Hi \"friend\"");
    kz_assert_ok(kz_test_handle(
        kz_test_event("line.follow", NULL, "U1", "wh-9", FOLLOW("active", "nHuyWiB7yP5Zw52F"))));

    assert_int_equal(kz_test_published_count("hello.greeted"), 1);
    assert_int_equal(kz_test_sent_count(), 1);
    const kz_test_line_sent *r = kz_test_sent(0);
    assert_int_equal(r->kind, KZ_LINE_REPLY);
    assert_string_equal(r->reply_token, "nHuyWiB7yP5Zw52F");
    assert_int_equal(r->fallback_to_push, 1);
    assert_string_equal(r->user, "U1"); /* where the fallback push goes */
    assert_string_equal(r->messages, "[{\"type\":\"text\",\"text\":\"Hi \\\"friend\\\"\"}]");
    assert_int_equal(r->nmessages, 1);

    /* Messages are greeted but not answered; nor is a follow past the
     * maximum, or one without a reply token. */
    kz_assert_ok(kz_test_handle(
        kz_test_event("line.message.text", NULL, "U2", NULL, "{\"replyToken\":\"t2\"}")));
    kz_assert_ok(
        kz_test_handle(kz_test_event("line.follow", NULL, "U1", NULL, FOLLOW("active", "t3"))));
    kz_assert_ok(kz_test_handle(kz_test_event("line.follow", NULL, "U3", NULL, NULL)));
    assert_int_equal(kz_test_published_count("hello.greeted"), 3);
    assert_int_equal(kz_test_sent_count(), 1);
}

static void standby_follow_is_not_answered(void **state)
{
    (void)state;
    load_hello(0, NULL);
    kz_assert_ok(
        kz_test_handle(kz_test_event("line.follow", NULL, "U1", NULL, FOLLOW("standby", "t1"))));
    assert_int_equal(kz_test_published_count("hello.greeted"), 1);
    assert_int_equal(kz_test_sent_count(), 0);
}

static void failing_reply_rolls_back(void **state)
{
    (void)state;
    load_hello(0, NULL);
    kz_test_fail_next(KZ_TEST_FAIL_LINE_SEND, KZ_EIO);
    kz_event *ev = kz_test_event("line.follow", NULL, "U1", NULL, FOLLOW("active", "t1"));
    assert_int_equal(kz_test_handle(ev), KZ_EIO);
    assert_string_equal(kz_test_error(), "replying to U1: error -5");
    assert_null(kz_test_kv_get("greeted:U1", NULL));
    assert_int_equal(kz_test_published_count(NULL), 0);
    assert_int_equal(kz_test_sent_count(), 0);

    kz_test_event_set_attempt(ev, 2);
    kz_assert_ok(kz_test_handle(ev));
    assert_int_equal(kz_test_published_count(NULL), 1);
    assert_int_equal(kz_test_sent_count(), 1);
}

static void rejects_unsendable_greeting(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_test_setting_set_string(g, "greeting", "caf\xe9"); /* Latin-1, not UTF-8 */
    assert_int_equal(kz_test_load_settings(kizuna_plugin_v1, g), KZ_EINVAL);
    assert_string_equal(kz_test_error(), "test.conf:2: shop 'test': plugin 'hello': greeting: LINE "
                                         "cannot send it as a text message (empty, not UTF-8 or "
                                         "over 5000 characters)");
}

static void corrupt_counter_is_fatal(void **state)
{
    (void)state;
    load_hello(0, NULL);
    kz_test_kv_put("greeted:U1", "not a number", 0);
    assert_int_equal(kz_test_handle(kz_test_event("line.follow", NULL, "U1", NULL, NULL)),
                     KZ_EFATAL);
    assert_int_equal(kz_test_published_count(NULL), 0);
    assert_string_equal(kz_test_kv_get("greeted:U1", NULL), "not a number");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(descriptor_and_defaults, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(greets_with_escaped_text, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(stops_after_max, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(rejects_zero_max, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(rejects_wrong_type, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(ignores_events_without_user, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(failing_publish_rolls_back, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(corrupt_counter_is_fatal, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(replies_to_follow, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(standby_follow_is_not_answered, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(failing_reply_rolls_back, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(rejects_unsendable_greeting, kz_test_setup,
                                        kz_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
