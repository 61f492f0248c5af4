/*
 * Unit test of the step plugin against the fake host (testing.h): step.c
 * and its helpers are compiled into this executable. Time moves on the
 * fake clock, timer by timer (run_until), the way the daemon's virtual
 * clock walks.
 */
#include <kizuna/testing.h>

#include <stdio.h>
#include <string.h>

#define U1 "U0123456789abcdef0123456789abcdef"
#define U2 "U1123456789abcdef0123456789abcdef"
#define U3 "U2123456789abcdef0123456789abcdef"
#define U4 "U3123456789abcdef0123456789abcdef"
#define U5 "U4123456789abcdef0123456789abcdef"

#define HOUR (3600 * 1000LL)
#define DAY (24 * HOUR)

/* 2026-11-23 (a Monday) 00:00 in Tokyo = 2026-11-22T15:00:00Z */
#define MON0 1795359600000LL

static int64_t tokyo(int day, int hour, int minute)
{
    return MON0 + day * DAY + hour * HOUR + minute * 60 * 1000LL;
}

/* Fires every timer due up to t, each with the clock at its due time. */
static void run_until(int64_t t)
{
    for (;;) {
        int64_t next = INT64_MAX;
        for (size_t i = 0; i < kz_test_timer_count(); i++)
            if (kz_test_timer(i)->due_ms < next)
                next = kz_test_timer(i)->due_ms;
        if (next > t)
            break;
        if (next > kz_test_now())
            kz_test_set_now(next);
        kz_event *ev[1] = {NULL};
        size_t n = kz_test_fire_timers(ev, 1);
        assert_int_equal(n, 1);
        kz_assert_ok(kz_test_handle(ev[0]));
    }
    kz_test_set_now(t);
}

static kz_event *follow(const char *user)
{
    char payload[256];
    snprintf(payload, sizeof payload,
             "{\"type\":\"follow\",\"mode\":\"active\",\"source\":{\"type\":\"user\","
             "\"userId\":\"%s\"},\"follow\":{\"isUnblocked\":false}}",
             user);
    kz_event *ev = kz_test_event("line.follow", NULL, user, NULL, payload);
    kz_test_event_set_time(ev, kz_test_now());
    return ev;
}

static kz_event *plain(const char *topic, const char *user, const char *payload)
{
    kz_event *ev = kz_test_event(topic, NULL, user, NULL, payload);
    kz_test_event_set_time(ev, kz_test_now());
    return ev;
}

/* The sends to user, as "text|text|…" of their first message's text. */
static size_t sent_to(const char *user, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < kz_test_sent_count(); i++) {
        const kz_test_line_sent *s = kz_test_sent(i);
        if (s->to == NULL || strcmp(s->to, user) != 0)
            continue;
        const char *t = strstr(s->messages, "\"text\":\"");
        char one[128] = "";
        if (t != NULL)
            sscanf(t + 8, "%127[^\"]", one);
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", n ? "|" : "", one);
        n++;
    }
    return n;
}

static kz_setting *scenario(kz_setting *list, const char *name, const char *trigger)
{
    kz_setting *sc = kz_test_setting_add_group(list, NULL);
    kz_test_setting_set_string(sc, "name", name);
    kz_test_setting_set_string(sc, "trigger", trigger);
    return sc;
}

static kz_setting *add_step(kz_setting *steps, const char *name, const char *after, const char *at,
                            const char *text)
{
    kz_setting *st = kz_test_setting_add_group(steps, NULL);
    kz_test_setting_set_string(st, "name", name);
    if (after != NULL)
        kz_test_setting_set_duration(st, "after", after);
    if (at != NULL)
        kz_test_setting_set_string(st, "at", at);
    if (text != NULL)
        kz_test_setting_set_string(
            kz_test_setting_add_group(kz_test_setting_add_list(st, "messages"), NULL), "text",
            text);
    return st;
}

static void strings(kz_setting *g, const char *key, const char *a, const char *b)
{
    kz_setting *l = kz_test_setting_add_list(g, key);
    kz_test_setting_set_string(l, NULL, a);
    if (b != NULL)
        kz_test_setting_set_string(l, NULL, b);
}

/* The 7-day welcome scenario of the issue. */
static kz_setting *welcome(const char *reentry)
{
    kz_setting *g = kz_test_setting_group();
    kz_setting *sc = scenario(kz_test_setting_add_list(g, "scenarios"), "welcome", "line.follow");
    strings(sc, "stop_on", "line.unfollow", "ec.order.created");
    strings(sc, "tags", "welcomed", NULL);
    if (reentry != NULL)
        kz_test_setting_set_string(sc, "reentry", reentry);
    kz_setting *steps = kz_test_setting_add_list(sc, "steps");
    add_step(steps, "hello", "0s", NULL, "Hi {{display_name|there}}");
    add_step(steps, "day1", "1d", "10:00", "coupon");
    add_step(steps, "day3", "2d", "10:00", "tips");
    add_step(steps, "day7", "4d", "10:00", "last");
    return g;
}

static const char *stat_of(const char *key)
{
    const char *v = kz_test_kv_get(key, NULL);
    return v != NULL ? v : "0";
}

static void seven_day_welcome(void **state)
{
    (void)state;
    kz_test_set_now(tokyo(0, 23, 0)); /* Monday 23:00 */
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, welcome(NULL)));
    assert_true(kz_test_subscribed("line.follow"));
    assert_true(kz_test_subscribed("ec.order.created"));
    kz_test_friend_add(U1, 1);
    kz_test_friend_set_profile(U1, "Hana \"H\"", NULL, NULL, NULL);
    kz_assert_ok(kz_test_handle(follow(U1)));
    run_until(tokyo(0, 23, 1));
    char got[512];
    assert_int_equal(sent_to(U1, got, sizeof got), 1);
    assert_string_equal(got, "Hi Hana \\"); /* the escaped quote ends the scan */
    assert_non_null(strstr(kz_test_sent(0)->messages, "Hi Hana \\\"H\\\""));
    assert_int_equal(kz_test_sent(0)->kind, KZ_LINE_PUSH);
    assert_string_equal(kz_test_sent(0)->tag, "step:welcome:hello");

    /* day1 is Tuesday 10:00 (the next day at 10:00, though under 24 h) */
    run_until(tokyo(1, 9, 59));
    assert_int_equal(kz_test_sent_count(), 1);
    run_until(tokyo(1, 10, 0));
    assert_int_equal(kz_test_sent_count(), 2);
    /* day3: two days after day1, 10:00 Thursday; day7: Monday 10:00 */
    run_until(tokyo(3, 10, 0));
    assert_int_equal(kz_test_sent_count(), 3);
    run_until(tokyo(7, 9, 0));
    assert_int_equal(kz_test_sent_count(), 3);
    run_until(tokyo(7, 10, 0));
    assert_int_equal(sent_to(U1, got, sizeof got), 4);
    assert_string_equal(got, "Hi Hana \\|coupon|tips|last");
    assert_true(kz_test_friend_has_tag(U1, "welcomed"));
    assert_int_equal(kz_test_published_count("step.completed"), 1);
    assert_string_equal(stat_of("st:welcome:day3:sent"), "1");
    assert_string_equal(stat_of("st:welcome:day3:waiting"), "0");
    assert_string_equal(stat_of("st:welcome:completed"), "1");
    assert_int_equal(kz_test_timer_count(), 0);
    /* once: a second follow starts nothing */
    kz_assert_ok(kz_test_handle(follow(U1)));
    assert_int_equal(kz_test_timer_count(), 0);
}

static void stop_on_order_and_refollow(void **state)
{
    (void)state;
    kz_test_set_now(tokyo(0, 12, 0));
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, welcome("restart")));
    kz_assert_ok(kz_test_handle(follow(U1)));
    kz_assert_ok(kz_test_handle(follow(U2)));
    run_until(tokyo(0, 13, 0));
    assert_int_equal(kz_test_sent_count(), 2);
    kz_assert_ok(kz_test_handle(plain("ec.order.created", U1, "{\"order\":\"A-1\"}")));
    kz_assert_ok(kz_test_handle(plain("line.unfollow", U2, "{}")));
    assert_int_equal(kz_test_published_count("step.stopped"), 2);
    run_until(tokyo(9, 0, 0));
    assert_int_equal(kz_test_sent_count(), 2); /* nothing after the stop */
    assert_string_equal(stat_of("st:welcome:day1:stopped"), "2");
    /* restart: U2 comes back and starts again from the first step */
    kz_assert_ok(kz_test_handle(follow(U2)));
    run_until(tokyo(10, 10, 0));
    char got[256];
    assert_int_equal(sent_to(U2, got, sizeof got), 3);
    assert_string_equal(got, "Hi there|Hi there|coupon");
    assert_non_null(kz_test_kv_get("e:welcome:" U2 ":2", NULL));
}

static void refollow_once_and_parallel(void **state)
{
    (void)state;
    kz_test_set_now(tokyo(0, 12, 0));
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, welcome("parallel")));
    kz_assert_ok(kz_test_handle(follow(U1)));
    run_until(tokyo(1, 9, 0));
    kz_assert_ok(kz_test_handle(follow(U1))); /* a second entry alongside */
    assert_string_equal(kz_test_kv_get("a:welcome:" U1, NULL), "1,2");
    run_until(tokyo(1, 10, 0));
    char got[256];
    /* entry 1: hello, day1 (Tuesday 10:00); entry 2: hello at once, day1
     * on Wednesday (a day after Tuesday 09:00, at 10:00) */
    assert_int_equal(sent_to(U1, got, sizeof got), 3);
    assert_string_equal(got, "Hi there|Hi there|coupon");
    run_until(tokyo(2, 10, 0));
    assert_int_equal(sent_to(U1, got, sizeof got), 4);
    assert_non_null(kz_test_kv_get("s:welcome:day1:" U1 ":2", NULL));
}

static void window_and_cap_carry_over(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_setting *sc = scenario(kz_test_setting_add_list(g, "scenarios"), "promo", "shop.signup");
    kz_test_setting_set_int(sc, "daily_cap", 2);
    kz_setting *w = kz_test_setting_add_group(sc, "window");
    kz_test_setting_set_string(w, "days", "mon-fri");
    kz_test_setting_set_string(w, "from", "10:00");
    kz_test_setting_set_string(w, "to", "20:00");
    add_step(kz_test_setting_add_list(sc, "steps"), "only", "0s", NULL, "sale");
    kz_test_set_now(tokyo(2, 21, 0)); /* Wednesday 21:00: closed */
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    const char *users[] = {U1, U2, U3, U4, U5};
    for (size_t i = 0; i < 5; i++) {
        kz_assert_ok(kz_test_handle(plain("shop.signup", users[i], "{}")));
        kz_test_advance(60 * 1000);
    }
    run_until(tokyo(3, 9, 59));
    assert_int_equal(kz_test_sent_count(), 0);
    run_until(tokyo(3, 10, 0)); /* Thursday: two, in order */
    assert_int_equal(kz_test_sent_count(), 2);
    assert_string_equal(kz_test_sent(0)->to, U1);
    assert_string_equal(kz_test_sent(1)->to, U2);
    /* a newcomer on Thursday waits behind the carried-over ones */
    kz_test_set_now(tokyo(3, 11, 0));
    kz_assert_ok(kz_test_handle(plain("shop.signup", "U9123456789abcdef0123456789abcdef", "{}")));
    run_until(tokyo(4, 10, 0)); /* Friday */
    assert_int_equal(kz_test_sent_count(), 4);
    assert_string_equal(kz_test_sent(2)->to, U3);
    assert_string_equal(kz_test_sent(3)->to, U4);
    run_until(tokyo(6, 23, 0)); /* the weekend is outside the window */
    assert_int_equal(kz_test_sent_count(), 4);
    run_until(tokyo(7, 10, 0)); /* Monday */
    assert_int_equal(kz_test_sent_count(), 6);
    assert_string_equal(kz_test_sent(4)->to, U5);
    assert_string_equal(kz_test_sent(5)->to, "U9123456789abcdef0123456789abcdef");
    assert_string_equal(stat_of("cap:promo:20261130"), "2");
}

static void payload_condition(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_setting *sc =
        scenario(kz_test_setting_add_list(g, "scenarios"), "review", "ec.order.shipped");
    kz_setting *when = kz_test_setting_add_list(sc, "when");
    kz_setting *c1 = kz_test_setting_add_group(when, NULL);
    kz_test_setting_set_string(c1, "path", "order.total");
    kz_test_setting_set_string(c1, "op", ">=");
    kz_test_setting_set_int(c1, "value", 5000);
    kz_setting *c2 = kz_test_setting_add_group(when, NULL);
    kz_test_setting_set_string(c2, "path", "order.items.productId");
    kz_test_setting_set_string(c2, "op", "==");
    kz_test_setting_set_string(c2, "value", "P-100");
    kz_test_setting_set_string(sc, "reentry", "parallel");
    kz_test_setting_set_int(sc, "priority", 5);
    kz_test_setting_set_string(sc, "over_cap", "drop");
    add_step(kz_test_setting_add_list(sc, "steps"), "ask", "3d", "10:00", "review please");
    kz_test_set_now(tokyo(0, 12, 0));
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_assert_ok(kz_test_handle(
        plain("ec.order.shipped", U1,
              "{\"order\":{\"total\":4999,\"items\":[{\"productId\":\"P-100\"}]}}")));
    kz_assert_ok(
        kz_test_handle(plain("ec.order.shipped", U2,
                             "{\"order\":{\"total\":5000,\"items\":[{\"productId\":\"P-7\"},"
                             "{\"productId\":\"P-100\"}]}}")));
    kz_assert_ok(
        kz_test_handle(plain("ec.order.shipped", U3,
                             "{\"order\":{\"total\":9000,\"items\":[{\"productId\":\"P-7\"}]}}")));
    assert_int_equal(kz_test_timer_count(), 1);
    run_until(tokyo(3, 10, 0));
    assert_int_equal(kz_test_sent_count(), 1);
    assert_string_equal(kz_test_sent(0)->to, U2);
    /* marked for the shop's delivery policy as the scenario says */
    assert_int_equal(kz_test_sent(0)->promotional, 1);
    assert_int_equal(kz_test_sent(0)->priority, 5);
    assert_int_equal(kz_test_sent(0)->over_cap, KZ_OVER_CAP_DROP);
}

/* coupon; then thanks if its link was clicked, else a reminder. */
static kz_setting *branching(void)
{
    kz_setting *g = kz_test_setting_group();
    kz_setting *sc = scenario(kz_test_setting_add_list(g, "scenarios"), "cp", "line.follow");
    kz_setting *steps = kz_test_setting_add_list(sc, "steps");
    add_step(steps, "coupon", "0s", NULL, "coupon");
    kz_setting *th = add_step(steps, "thanks", "1d", NULL, "thanks");
    kz_test_setting_set_bool(th, "clicked", 1);
    kz_test_setting_set_bool(th, "promotional", 0); /* a thank-you is not an advert */
    kz_test_setting_set_string(th, "goto", "end");
    kz_setting *re = add_step(steps, "reminder", "1d", NULL, "reminder");
    kz_test_setting_set_bool(re, "clicked", 0);
    return g;
}

static void branch_on_click(void **state)
{
    (void)state;
    kz_test_set_now(tokyo(0, 12, 0));
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, branching()));
    kz_assert_ok(kz_test_handle(follow(U1)));
    kz_assert_ok(kz_test_handle(follow(U2)));
    run_until(tokyo(0, 13, 0));
    kz_assert_ok(kz_test_handle(plain(
        "link.clicked", U1, "{\"scenario\":\"cp\",\"step\":\"coupon\",\"url\":\"https://x\"}")));
    run_until(tokyo(3, 0, 0));
    char got[256];
    assert_int_equal(sent_to(U1, got, sizeof got), 2);
    assert_string_equal(got, "coupon|thanks");
    for (size_t i = 0; i < kz_test_sent_count(); i++) /* promotional by default, but thanks */
        assert_int_equal(kz_test_sent(i)->promotional,
                         strstr(kz_test_sent(i)->messages, "thanks") == NULL);
    assert_int_equal(kz_test_sent(0)->over_cap, KZ_OVER_CAP_DEFER);
    assert_int_equal(sent_to(U2, got, sizeof got), 2);
    assert_string_equal(got, "coupon|reminder");
    assert_string_equal(stat_of("st:cp:thanks:skipped"), "1");
    assert_string_equal(stat_of("st:cp:reminder:skipped"), "0");
    assert_string_equal(stat_of("st:cp:completed"), "2");
}

/* Steps are keyed by name: a user waiting for a step that the new config
 * removed goes on with the step that now follows the last one sent. */
static void config_edit_mid_scenario(void **state)
{
    (void)state;
    kz_test_set_now(tokyo(0, 12, 0));
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, welcome(NULL)));
    kz_assert_ok(kz_test_handle(follow(U1)));
    run_until(tokyo(0, 13, 0)); /* hello sent, waiting for day1 */
    kz_test_close();
    kz_setting *g = kz_test_setting_group();
    kz_setting *sc = scenario(kz_test_setting_add_list(g, "scenarios"), "welcome", "line.follow");
    kz_setting *steps = kz_test_setting_add_list(sc, "steps");
    add_step(steps, "hello", "0s", NULL, "Hi");
    add_step(steps, "day2", "2d", "10:00", "new day2"); /* day1 removed, day2 new */
    add_step(steps, "day7", "4d", "10:00", "last, edited");
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    run_until(tokyo(1, 10, 0)); /* day1's timer fires: it is gone → day2 */
    assert_int_equal(kz_test_sent_count(), 1);
    run_until(tokyo(2, 10, 0)); /* day2: two days after hello, at 10:00 */
    assert_int_equal(kz_test_sent_count(), 2);
    run_until(tokyo(6, 10, 0));
    char got[256];
    assert_int_equal(sent_to(U1, got, sizeof got), 3);
    assert_string_equal(got, "Hi there|new day2|last, edited");
}

/* A restart (close and reopen, kv and timers kept) neither loses nor
 * repeats a step; a timer fired twice sends once. */
static void restart_and_duplicate_timer(void **state)
{
    (void)state;
    kz_test_set_now(tokyo(0, 12, 0));
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, welcome(NULL)));
    kz_assert_ok(kz_test_handle(follow(U1)));
    run_until(tokyo(1, 10, 0));
    assert_int_equal(kz_test_sent_count(), 2);
    kz_test_close();
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, welcome(NULL)));
    /* a stale copy of the day1 timer's event: already handled */
    kz_event *again = kz_test_event("step.due", NULL, U1, NULL,
                                    "{\"scenario\":\"welcome\",\"entry\":1,\"step\":\"day1\"}");
    kz_test_event_set_time(again, tokyo(1, 10, 0));
    kz_assert_ok(kz_test_handle(again));
    run_until(tokyo(7, 10, 0));
    assert_int_equal(kz_test_sent_count(), 4);
}

/* "1d at 10:00" is 10:00 local on the next day, across a DST change. */
static void shop_local_times_across_dst(void **state)
{
    (void)state;
    kz_test_set_shop("ny", "America/New_York");
    kz_test_set_now(1772902800000LL); /* 2026-03-07T12:00:00-05:00, a Saturday */
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, welcome(NULL)));
    kz_assert_ok(kz_test_handle(follow(U1)));
    run_until(1772902800000LL);
    assert_int_equal(kz_test_sent_count(), 1);
    /* DST starts on Sunday Mar 8 at 02:00: 10:00 EDT is 14:00 UTC */
    const int64_t sunday10 = 1772978400000LL;
    run_until(sunday10 - 1);
    assert_int_equal(kz_test_sent_count(), 1);
    run_until(sunday10);
    assert_int_equal(kz_test_sent_count(), 2);
}

/* A message the host refuses (e.g. over LINE's 5,000 characters once a
 * long attribute is filled in: the real host checks, the fake is told to
 * refuse) fails that step for that user only; the user goes on. */
static void refused_message_skips_one_user(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_setting *sc = scenario(kz_test_setting_add_list(g, "scenarios"), "w", "line.follow");
    kz_setting *steps = kz_test_setting_add_list(sc, "steps");
    add_step(steps, "bio", "0s", NULL, "{{attr.bio}}");
    add_step(steps, "next", "1h", NULL, "next");
    kz_test_set_now(tokyo(0, 12, 0));
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_test_fail_next(KZ_TEST_FAIL_LINE_SEND, KZ_EINVAL);
    kz_assert_ok(kz_test_handle(follow(U1)));
    kz_assert_ok(kz_test_handle(follow(U2)));
    run_until(tokyo(0, 14, 0));
    char got[256];
    assert_int_equal(sent_to(U1, got, sizeof got), 1);
    assert_string_equal(got, "next");
    assert_int_equal(sent_to(U2, got, sizeof got), 2);
    assert_string_equal(stat_of("st:w:bio:failed"), "1");
    assert_string_equal(stat_of("st:w:bio:sent"), "1");
    assert_int_equal(kz_test_log_find("refused by LINE"), 1);
}

/* step.enroll enrolls many users in one event: the scenario's re-entry
 * policy and segment apply; what is not a LINE user id is skipped; a bad
 * event is refused as fatal (a dead letter with the reason). */
static void bulk_enroll(void **state)
{
    (void)state;
    kz_test_set_now(tokyo(0, 12, 0));
    kz_setting *g = welcome(NULL);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    assert_true(kz_test_subscribed("step.enroll"));
    kz_assert_ok(kz_test_handle(follow(U1)));
    kz_assert_ok(kz_test_handle(plain("step.enroll", NULL,
                                      "{\"scenario\":\"welcome\",\"users\":[\"" U1 "\",\"" U2
                                      "\",\"bogus\",\"" U3 "\"]}")));
    assert_string_equal(stat_of("st:welcome:entered"), "3"); /* U1 once only */
    assert_int_equal(kz_test_log_find("not LINE user ids"), 1);
    run_until(tokyo(0, 12, 1));
    char got[256];
    assert_int_equal(sent_to(U2, got, sizeof got), 1);
    assert_int_equal(sent_to(U3, got, sizeof got), 1);
    assert_int_equal(sent_to(U1, got, sizeof got), 1);

    assert_int_equal(kz_test_handle(plain("step.enroll", NULL,
                                          "{\"scenario\":\"nope\",\"users\":[\"" U4 "\"]}")),
                     KZ_EFATAL);
    assert_non_null(strstr(kz_test_error(), "no scenario 'nope'"));
    assert_int_equal(
        kz_test_handle(plain("step.enroll", NULL, "{\"scenario\":\"welcome\",\"users\":\"x\"}")),
        KZ_EFATAL);
    assert_non_null(strstr(kz_test_error(), "must be an array"));
    assert_string_equal(stat_of("st:welcome:entered"), "3");
}

/* The first step counts from when the trigger is handled on the host
 * clock, not from the event's own time, which may come from another clock
 * (an event `kizuna publish` stamped with real time while the daemon runs
 * a virtual clock days behind). */
static void trigger_time_is_the_host_clock(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_setting *sc = scenario(kz_test_setting_add_list(g, "scenarios"), "w", "shop.signup");
    add_step(kz_test_setting_add_list(sc, "steps"), "one", "1h", NULL, "one hour later");
    kz_test_set_now(tokyo(0, 12, 0));
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_event *ev = plain("shop.signup", U1, "{}");
    kz_test_event_set_time(ev, tokyo(5, 0, 0));
    kz_assert_ok(kz_test_handle(ev));
    run_until(tokyo(0, 13, 0));
    assert_int_equal(kz_test_sent_count(), 1);
}

/* A scenario's segment narrows a bulk enrollment too. */
static void bulk_enroll_segment(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_setting *sc = scenario(kz_test_setting_add_list(g, "scenarios"), "vip", "shop.never");
    kz_test_setting_set_string(sc, "segment", "tag(\"vip\")");
    add_step(kz_test_setting_add_list(sc, "steps"), "hi", "0s", NULL, "vip only");
    kz_test_set_now(tokyo(0, 12, 0));
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_test_friend_add_tag(U2, "vip");
    kz_assert_ok(kz_test_handle(
        plain("step.enroll", NULL, "{\"scenario\":\"vip\",\"users\":[\"" U1 "\",\"" U2 "\"]}")));
    run_until(tokyo(0, 12, 1));
    assert_int_equal(kz_test_sent_count(), 1);
    assert_string_equal(kz_test_sent(0)->to, U2);
}

/* keep_finished: a finished entry's record, sent marks and clicks go that
 * long after it ended; the entry count and the statistics stay, and a new
 * entry (restart) is numbered on and runs as usual. */
static void finished_entries_are_pruned(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_setting *sc = scenario(kz_test_setting_add_list(g, "scenarios"), "short", "shop.signup");
    kz_test_setting_set_string(sc, "reentry", "restart");
    kz_test_setting_set_duration(sc, "keep_finished", "30d");
    kz_setting *steps = kz_test_setting_add_list(sc, "steps");
    add_step(steps, "a", "0s", NULL, "one");
    add_step(steps, "b", "1d", NULL, "two");
    kz_test_set_now(tokyo(0, 12, 0));
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    assert_true(kz_test_subscribed("step.prune"));
    kz_assert_ok(kz_test_handle(plain("shop.signup", U1, "{}")));
    run_until(tokyo(0, 12, 1));
    kz_assert_ok(
        kz_test_handle(plain("link.clicked", U1, "{\"scenario\":\"short\",\"step\":\"a\"}")));
    run_until(tokyo(2, 0, 0)); /* b sent on day 1: done */
    assert_string_equal(stat_of("st:short:completed"), "1");
    assert_non_null(kz_test_kv_get("e:short:" U1 ":1", NULL));
    assert_non_null(kz_test_kv_get("s:short:a:" U1 ":1", NULL));
    assert_non_null(kz_test_kv_get("s:short:b:" U1 ":1", NULL));
    assert_non_null(kz_test_kv_get("c:short:" U1 ":1:a", NULL));
    assert_int_equal(kz_test_timer_count(), 1); /* the prune */
    run_until(tokyo(31, 11, 59));
    assert_non_null(kz_test_kv_get("e:short:" U1 ":1", NULL)); /* 30 days after 12:00 */
    run_until(tokyo(31, 12, 0));
    assert_null(kz_test_kv_get("e:short:" U1 ":1", NULL));
    assert_null(kz_test_kv_get("s:short:a:" U1 ":1", NULL));
    assert_null(kz_test_kv_get("s:short:b:" U1 ":1", NULL));
    assert_null(kz_test_kv_get("c:short:" U1 ":1:a", NULL));
    assert_string_equal(stat_of("n:short:" U1), "1");
    assert_string_equal(stat_of("st:short:a:sent"), "1");
    kz_assert_ok(kz_test_handle(plain("shop.signup", U1, "{}")));
    run_until(tokyo(31, 12, 1));
    char got[128];
    assert_int_equal(sent_to(U1, got, sizeof got), 3);
    assert_string_equal(got, "one|two|one");
    assert_non_null(kz_test_kv_get("e:short:" U1 ":2", NULL));
}

static void bad_config(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    kz_setting *sc = scenario(kz_test_setting_add_list(g, "scenarios"), "w", "line.follow");
    kz_setting *st = add_step(kz_test_setting_add_list(sc, "steps"), "a", "1d", "25:00", "x");
    kz_test_setting_set_line(kz_test_setting_add_list(st, "unused"), 0);
    kz_test_setting_set_line((kz_setting *)st, 12);
    assert_int_equal(kz_test_load_settings(kizuna_plugin_v1, g), KZ_EINVAL);
    assert_non_null(strstr(kz_test_error(), "steps"));
    assert_non_null(strstr(kz_test_error(), "HH:MM"));
    kz_test_reset();

    g = kz_test_setting_group();
    sc = scenario(kz_test_setting_add_list(g, "scenarios"), "w", "line.follow");
    kz_test_setting_set_string(sc, "reentry", "sometimes");
    add_step(kz_test_setting_add_list(sc, "steps"), "a", "1d", NULL, "x");
    assert_int_equal(kz_test_load_settings(kizuna_plugin_v1, g), KZ_EINVAL);
    assert_non_null(strstr(kz_test_error(), "reentry"));
    kz_test_reset();

    g = kz_test_setting_group();
    sc = scenario(kz_test_setting_add_list(g, "scenarios"), "w", "line.follow");
    kz_setting *steps = kz_test_setting_add_list(sc, "steps");
    add_step(steps, "a", "1d", NULL, "x");
    kz_test_setting_set_string(add_step(steps, "b", "1d", NULL, "y"), "goto", "nowhere");
    assert_int_equal(kz_test_load_settings(kizuna_plugin_v1, g), KZ_EINVAL);
    assert_non_null(strstr(kz_test_error(), "goto"));
    kz_test_reset();

    g = kz_test_setting_group();
    sc = scenario(kz_test_setting_add_list(g, "scenarios"), "w", "line.follow");
    kz_test_setting_set_duration(sc, "keep_finished", "10s");
    add_step(kz_test_setting_add_list(sc, "steps"), "a", "1d", NULL, "x");
    assert_int_equal(kz_test_load_settings(kizuna_plugin_v1, g), KZ_EINVAL);
    assert_non_null(strstr(kz_test_error(), "keep_finished"));
    assert_non_null(strstr(kz_test_error(), "at least a minute"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(seven_day_welcome, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(finished_entries_are_pruned, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(stop_on_order_and_refollow, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(refollow_once_and_parallel, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(window_and_cap_carry_over, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(payload_condition, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(branch_on_click, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(config_edit_mid_scenario, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(restart_and_duplicate_timer, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(shop_local_times_across_dst, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(refused_message_skips_one_user, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(bulk_enroll, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(bulk_enroll_segment, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(trigger_time_is_the_host_clock, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(bad_config, kz_test_setup, kz_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
