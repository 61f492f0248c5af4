/*
 * Unit test of the autoreply plugin against the fake host (testing.h):
 * autoreply.c and plugins/common are compiled into this executable.
 */
#include <kizuna/testing.h>

#include <stdio.h>

#define U1 "U0123456789abcdef0123456789abcdef"
#define U2 "Ufedcba9876543210fedcba9876543210"

#define WED_NOON_JST 1700017200000LL /* 2023-11-15T03:00:00Z */
#define MINUTE 60000LL

/* A text message event as the host stores LINE's: compact JSON. text_json
 * is the JSON string's inside (already escaped). */
static kz_event *text_from(const char *user, const char *source, const char *mode,
                           const char *text_json)
{
    char payload[1024];
    snprintf(payload, sizeof payload,
             "{\"type\":\"message\",\"message\":{\"type\":\"text\",\"id\":\"4685\","
             "\"quoteToken\":\"q\",\"text\":\"%s\"},\"webhookEventId\":\"01HX\","
             "\"deliveryContext\":{\"isRedelivery\":false},\"timestamp\":1700000000000,"
             "\"source\":{\"type\":\"%s\",\"userId\":\"%s\"},\"replyToken\":\"rt\","
             "\"mode\":\"%s\"}",
             text_json, source, user, mode);
    return kz_test_event("line.message.text", NULL, user, NULL, payload);
}

static kz_event *text(const char *t)
{
    return text_from(U1, "user", "active", t);
}

static void messages(kz_setting *g, const char *t)
{
    kz_setting *l = kz_test_setting_add_list(g, "messages");
    kz_test_setting_set_string(kz_test_setting_add_group(l, NULL), "text", t);
}

static kz_setting *add_rule(kz_setting *rules, const char *match, const char *pattern,
                            int64_t priority, const char *reply, const char *tag)
{
    kz_setting *r = kz_test_setting_add_group(rules, NULL);
    if (match != NULL)
        kz_test_setting_set_string(r, "match", match);
    kz_test_setting_set_string(r, "pattern", pattern);
    if (priority != 0)
        kz_test_setting_set_int(r, "priority", priority);
    if (reply != NULL)
        messages(r, reply);
    if (tag != NULL)
        kz_test_setting_set_string(kz_test_setting_add_list(r, "tags"), NULL, tag);
    return r;
}

/* The last reply's text, or "" when nothing was sent by the last event. */
static size_t nsent_before;
static const char *handled(kz_event *ev)
{
    nsent_before = kz_test_sent_count();
    kz_assert_ok(kz_test_handle(ev));
    if (kz_test_sent_count() == nsent_before)
        return "";
    assert_int_equal(kz_test_sent_count(), nsent_before + 1);
    static char out[512];
    const char *m = kz_test_sent(nsent_before)->messages;
    const char *t = strstr(m, "\"text\":\"");
    snprintf(out, sizeof out, "%.*s", t ? (int)strcspn(t + 8, "\"") : 0, t ? t + 8 : "");
    return out;
}

static kz_setting *base_rules(void)
{
    kz_setting *g = kz_test_setting_group();
    kz_setting *rules = kz_test_setting_add_list(g, "rules");
    add_rule(rules, "keyword", "送料", 0, "shipping", NULL);
    add_rule(rules, "exact", " 送料はいくら ", 5, "exact", "asked_shipping");
    add_rule(rules, NULL, "送", 5, "send", NULL); /* match defaults to keyword */
    add_rule(rules, "regex", "^(返品|交換)", 1, "returns", NULL);
    add_rule(rules, "exact", "a\"b\nc", 1, "escaped", NULL);
    return g;
}

static void priority_and_matching(void **state)
{
    (void)state;
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, base_rules()));
    assert_string_equal(kz_test_plugin()->name, "autoreply");
    assert_true(kz_test_subscribed("line.message.text"));
    assert_false(kz_test_subscribed("line.message.image"));

    /* the exact rule (priority 5, before the other 5 in config order) */
    assert_string_equal(handled(text("  送料はいくら\\n")), "exact");
    const kz_test_line_sent *s = kz_test_sent(0);
    assert_int_equal(s->kind, KZ_LINE_REPLY);
    assert_string_equal(s->reply_token, "rt");
    assert_int_equal(s->fallback_to_push, 0);
    assert_true(kz_test_friend_has_tag(U1, "asked_shipping"));
    assert_string_equal(kz_test_published_payload(0),
                        "{\"tag\":\"asked_shipping\",\"by\":\"autoreply\"}");
    /* priority 5 keyword "送" beats priority 0 keyword "送料" */
    assert_string_equal(handled(text("送料無料ですか")), "send");
    assert_string_equal(handled(text("返品したい")), "returns");
    assert_string_equal(handled(text("商品を返品")), ""); /* ^ anchors; no default */
    assert_string_equal(handled(text("交換")), "returns");
    assert_string_equal(handled(text("a\\\"b\\nc")), "escaped");
    assert_string_equal(handled(text("\\u9001")), "send"); /* 送 escaped */
    assert_string_equal(handled(text("hello")), "");
    assert_int_equal(kz_test_kv_count(), 0); /* no cooldown configured */
}

/* Regular expressions work on characters, not bytes, whatever locale the
 * process runs in (tests run in "C"): a bracket of Japanese characters,
 * "." as one character, a repeated bracket of full-width digits. */
static void regex_by_character(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_setting *rules = kz_test_setting_add_list(g, "rules");
    add_rule(rules, "regex", "^[返交]換$", 2, "bracket", NULL);
    add_rule(rules, "regex", "^注文.$", 1, "one", NULL);
    add_rule(rules, "regex", "^[０１２３４５６７８９]{3}$", 0, "digits", NULL);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    assert_string_equal(handled(text("交換")), "bracket");
    assert_string_equal(handled(text("返換")), "bracket");
    assert_string_equal(handled(text("変換")), ""); /* shares bytes with 返, not the character */
    assert_string_equal(handled(text("注文1")), "one");
    assert_string_equal(handled(text("注文は")), "one"); /* one character of three bytes */
    assert_string_equal(handled(text("注文は？")), "");
    assert_string_equal(handled(text("１２３")), "digits");
    assert_string_equal(handled(text("123")), "");
}

static void default_reply_and_tags_only_rule(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_setting *rules = kz_test_setting_add_list(g, "rules");
    add_rule(rules, "keyword", "coupon", 0, NULL, "wants_coupon");
    messages(kz_test_setting_add_group(g, "default"), "fallback");
    kz_test_setting_set_bool(g, "fallback_push", 1);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    assert_string_equal(handled(text("what?")), "fallback");
    assert_int_equal(kz_test_sent(0)->fallback_to_push, 1);
    assert_string_equal(handled(text("a coupon please")), ""); /* matched: no default */
    assert_true(kz_test_friend_has_tag(U1, "wants_coupon"));
}

static void only_user_chats(void **state)
{
    (void)state;
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, base_rules()));
    assert_string_equal(handled(text_from(U1, "group", "active", "送料はいくら")), "");
    assert_string_equal(handled(text_from(U1, "user", "standby", "送料はいくら")), "");
    assert_int_equal(kz_test_friend_count(), 0); /* no tags either */
    kz_assert_ok(kz_test_handle(kz_test_event("line.message.text", NULL, NULL, NULL, NULL)));
    assert_int_equal(kz_test_sent_count(), 0);
}

static void cooldown_per_user(void **state)
{
    (void)state;
    kz_setting *g = base_rules();
    kz_test_setting_set_duration(g, "cooldown", "10m");
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_test_set_now(WED_NOON_JST);
    assert_string_equal(handled(text("送料はいくら")), "exact");
    assert_string_equal(kz_test_kv_get("cooldown:" U1, NULL), "1700017200000");
    kz_test_advance(5 * MINUTE);
    assert_string_equal(handled(text("送料はいくら")), ""); /* cooling down */
    assert_string_equal(handled(text_from(U2, "user", "active", "交換")), "returns");
    assert_string_equal(handled(text("hello")), ""); /* no match: nothing, no reset */
    kz_test_advance(5 * MINUTE - 1);
    assert_string_equal(handled(text("交換")), "");
    kz_test_advance(1);
    assert_string_equal(handled(text("交換")), "returns");
    assert_string_equal(kz_test_kv_get("cooldown:" U1, NULL), "1700017800000");
}

static void cooldown_keeps_tagging(void **state)
{
    (void)state;
    kz_setting *g = base_rules();
    kz_test_setting_set_duration(g, "cooldown", "1h");
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    assert_string_equal(handled(text("送料無料")), "send");
    assert_false(kz_test_friend_has_tag(U1, "asked_shipping"));
    assert_string_equal(handled(text("送料はいくら")), "");    /* cooling down … */
    assert_true(kz_test_friend_has_tag(U1, "asked_shipping")); /* … but tagged */
}

static kz_setting *with_hours(const char *open, const char *close, const char *const *days,
                              size_t ndays, int outside)
{
    kz_setting *g = base_rules();
    kz_setting *h = kz_test_setting_add_group(g, "hours");
    kz_test_setting_set_string(h, "open", open);
    kz_test_setting_set_string(h, "close", close);
    kz_setting *d = kz_test_setting_add_list(h, "days");
    for (size_t i = 0; i < ndays; i++)
        kz_test_setting_set_string(d, NULL, days[i]);
    if (outside)
        messages(kz_test_setting_add_group(h, "outside"), "closed");
    return g;
}

static const char *at(int64_t ms, const char *t)
{
    kz_test_set_now(ms);
    return handled(text(t));
}

static void working_hours_in_tokyo(void **state)
{
    (void)state;
    static const char *const weekdays[] = {"mon", "tue", "wed", "thu", "fri"};
    kz_test_set_shop(NULL, "Asia/Tokyo");
    kz_assert_ok(
        kz_test_load_settings(kizuna_plugin_v1, with_hours("10:00", "19:00", weekdays, 5, 1)));
    assert_string_equal(at(1700215140000LL, "交換"), "returns");         /* Fri 18:59 JST */
    assert_string_equal(at(1700215140000LL + MINUTE, "交換"), "closed"); /* Fri 19:00 */
    assert_string_equal(at(1700231400000LL, "交換"), "closed");          /* Fri 23:30 JST, 14:30Z */
    assert_string_equal(at(1700269200000LL, "交換"), "closed");          /* Sat 10:00 JST */
    assert_string_equal(at(1700409600000LL, "交換"), "closed");  /* Mon 01:00 JST, Sun 16:00Z */
    assert_string_equal(at(1700442000000LL, "交換"), "returns"); /* Mon 10:00 JST, 01:00Z */
    assert_string_equal(at(1700269200000LL, "hello"), "closed"); /* any text outside hours */
    /* outside hours a matching rule still tags */
    assert_string_equal(at(1700269200000LL, "送料はいくら"), "closed");
    assert_true(kz_test_friend_has_tag(U1, "asked_shipping"));
}

static void hours_past_midnight(void **state)
{
    (void)state;
    static const char *const fri[] = {"fri"};
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, with_hours("22:00", "02:00", fri, 1, 0)));
    assert_string_equal(at(1700238600000LL, "交換"), "returns"); /* Sat 01:30 JST: Friday's */
    assert_string_equal(at(1700242200000LL, "交換"), "");        /* Sat 02:30: closed, silent */
    assert_string_equal(at(1700152200000LL, "交換"), "");        /* Fri 01:30: Thursday's */
    assert_string_equal(at(1700231400000LL, "交換"), "returns"); /* Fri 23:30 */
}

static void failure_rolls_back(void **state)
{
    (void)state;
    kz_setting *g = base_rules();
    kz_test_setting_set_duration(g, "cooldown", "10m");
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_test_fail_next(KZ_TEST_FAIL_LINE_SEND, KZ_EIO);
    assert_int_equal(kz_test_handle(text("送料はいくら")), KZ_EIO);
    assert_int_equal(kz_test_friend_count(), 0);
    assert_null(kz_test_kv_get("cooldown:" U1, NULL));
    assert_string_equal(handled(text("送料はいくら")), "exact"); /* the retry */
}

/* ---- bad settings ----------------------------------------------------------- */

static void expect_error(kz_setting *g, const char *want)
{
    assert_int_equal(kz_test_load_settings(kizuna_plugin_v1, g), KZ_EINVAL);
    if (strstr(kz_test_error(), want) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", kz_test_error(), want);
    kz_test_reset();
}

static kz_setting *one_rule(kz_setting **rule)
{
    kz_setting *g = kz_test_setting_group();                  /* 1 */
    kz_setting *rules = kz_test_setting_add_list(g, "rules"); /* 2 */
    *rule = kz_test_setting_add_group(rules, NULL);           /* 3 */
    return g;
}

static void bad_settings(void **state)
{
    (void)state;
    kz_setting *r, *g;
#define AT(line) "test.conf:" #line ": shop 'test': plugin 'autoreply': "
    g = one_rule(&r);
    kz_test_setting_set_string(r, "match", "fuzzy"); /* 4 */
    expect_error(g, AT(4) "rules[0].match: unknown match \"fuzzy\" (known: exact, keyword, regex)");

    g = one_rule(&r);
    messages(r, "x");
    expect_error(g, AT(3) "rules[0]: missing pattern");

    g = one_rule(&r);
    kz_test_setting_set_string(r, "match", "regex");   /* 4 */
    kz_test_setting_set_string(r, "pattern", "(返品"); /* 5 */
    messages(r, "x");
    expect_error(g, AT(5) "rules[0].pattern: invalid regular expression: ");

    g = one_rule(&r);
    kz_test_setting_set_string(r, "pattern", "x"); /* 4 */
    kz_test_setting_set_string(r, "reply", "y");   /* 5 */
    expect_error(g, AT(5) "rules[0].reply: unknown key (known: match, pattern, priority, "
                          "messages, tags)");

    g = one_rule(&r);
    kz_test_setting_set_string(r, "pattern", "x");
    expect_error(g, AT(3) "rules[0]: a rule needs messages or tags");

    g = one_rule(&r);
    kz_test_setting_set_string(r, "pattern", "x");
    kz_test_setting_set_string(r, "priority", "high"); /* 5 */
    expect_error(g, AT(5) "rules[0].priority: expected an integer");

    g = one_rule(&r);
    kz_test_setting_set_string(r, "pattern", "x");
    messages(r, "");
    expect_error(g, AT(7) "rules[0].messages[0].text: empty or not valid UTF-8");

    g = kz_test_setting_group();
    kz_test_setting_add_group(g, "default"); /* 2 */
    expect_error(g, AT(2) "default: needs at least one message");

    static const char *const bad_day[] = {"monday"};
    g = with_hours("10:00", "19:00", bad_day, 1, 0);
    expect_error(g, "hours.days[0]: expected a day: sun, mon, tue, wed, thu, fri or sat");
    g = with_hours("25:00", "19:00", NULL, 0, 0);
    expect_error(g, "hours.open: expected a time \"HH:MM\" (00:00 to 24:00)");
    g = with_hours("9:00", "19:00", NULL, 0, 0);
    expect_error(g, "hours.open: expected a time \"HH:MM\" (00:00 to 24:00)");
    g = with_hours("10:00", "10:00", NULL, 0, 0);
    expect_error(g, "hours.close: open and close are the same time");
    g = kz_test_setting_group();
    kz_setting *h = kz_test_setting_add_group(g, "hours"); /* 2 */
    kz_test_setting_set_string(h, "open", "10:00");        /* 3 */
    expect_error(g, AT(2) "hours: missing close (\"HH:MM\")");
    g = kz_test_setting_group();
    h = kz_test_setting_add_group(g, "hours");
    kz_test_setting_set_string(h, "opens", "10:00"); /* 3 */
    expect_error(g, AT(3) "hours.opens: unknown key (known: open, close, days, outside)");

    expect_error(kz_test_setting_group(), AT(1) "nothing to do: set rules, default or hours");
#undef AT
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(priority_and_matching, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(regex_by_character, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(default_reply_and_tags_only_rule, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(only_user_chats, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(cooldown_per_user, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(cooldown_keeps_tagging, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(working_hours_in_tokyo, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(hours_past_midnight, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(failure_rolls_back, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(bad_settings, kz_test_setup, kz_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
