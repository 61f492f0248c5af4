/*
 * Unit test of the greeting plugin against the fake host (testing.h):
 * greeting.c and plugins/common are compiled into this executable.
 */
#include <kizuna/testing.h>

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define U1 "U0123456789abcdef0123456789abcdef"
#define U2 "Ufedcba9876543210fedcba9876543210"

/* LINE's follow event as the host stores it: compact JSON. */
static kz_event *follow(const char *user, int unblocked, const char *mode, const char *token)
{
    char payload[512];
    char tok[80] = "";
    if (token != NULL)
        snprintf(tok, sizeof tok, ",\"replyToken\":\"%s\"", token);
    snprintf(payload, sizeof payload,
             "{\"type\":\"follow\",\"mode\":\"%s\",\"timestamp\":1700000000000,"
             "\"source\":{\"type\":\"user\",\"userId\":\"%s\"},\"webhookEventId\":\"01HX\","
             "\"deliveryContext\":{\"isRedelivery\":false}%s,\"follow\":{\"isUnblocked\":%s}}",
             mode, user, tok, unblocked ? "true" : "false");
    return kz_test_event("line.follow", NULL, user, NULL, payload);
}

/* messages = ( { text = t1; }, … ) under key in g. */
static kz_setting *texts(kz_setting *g, const char *key, const char *const *t, size_t n)
{
    kz_setting *l = kz_test_setting_add_list(g, key);
    for (size_t i = 0; i < n; i++)
        kz_test_setting_set_string(kz_test_setting_add_group(l, NULL), "text", t[i]);
    return l;
}

static kz_setting *tags(kz_setting *g, const char *key, const char *const *t, size_t n)
{
    kz_setting *l = kz_test_setting_add_list(g, key);
    for (size_t i = 0; i < n; i++)
        kz_test_setting_set_string(l, NULL, t[i]);
    return l;
}

static const char *const welcome[] = {"友だち追加ありがとうございます！"};
static const char *const back[] = {"おかえりなさい！"};
static const char *const new_tag[] = {"new", "campaign"};
static const char *const returned_tag[] = {"returned"};

static void new_friend_gets_reply_and_tags(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    texts(g, "messages", welcome, 1);
    tags(g, "tags", new_tag, 2);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    assert_string_equal(kz_test_plugin()->name, "greeting");
    assert_int_equal(kz_test_subscription_count(), 1);
    assert_true(kz_test_subscribed("line.follow"));

    kz_assert_ok(kz_test_handle(follow(U1, 0, "active", "rt-1")));
    assert_int_equal(kz_test_sent_count(), 1);
    const kz_test_line_sent *s = kz_test_sent(0);
    assert_int_equal(s->kind, KZ_LINE_REPLY);
    assert_string_equal(s->reply_token, "rt-1");
    assert_int_equal(s->fallback_to_push, 1);
    assert_string_equal(s->messages,
                        "[{\"type\":\"text\",\"text\":\"友だち追加ありがとうございます！\"}]");
    assert_true(kz_test_friend_has_tag(U1, "new"));
    assert_true(kz_test_friend_has_tag(U1, "campaign"));
    assert_int_equal(kz_test_published_count("friend.tagged"), 2);
    assert_string_equal(kz_test_published_payload(0), "{\"tag\":\"new\",\"by\":\"greeting\"}");
    assert_string_equal(kz_test_published_user(0), U1);
}

static void unblock_gets_refollow_set(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    texts(g, "messages", welcome, 1);
    texts(g, "refollow", back, 1);
    tags(g, "tags", new_tag, 1);
    tags(g, "refollow_tags", returned_tag, 1);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));

    kz_assert_ok(kz_test_handle(follow(U1, 1, "active", "rt-2")));
    assert_int_equal(kz_test_sent_count(), 1);
    assert_string_equal(kz_test_sent(0)->messages,
                        "[{\"type\":\"text\",\"text\":\"おかえりなさい！\"}]");
    assert_true(kz_test_friend_has_tag(U1, "returned"));
    assert_false(kz_test_friend_has_tag(U1, "new"));
    assert_int_equal(kz_test_published_count("friend.tagged"), 1);
    assert_string_equal(kz_test_published_payload(0), "{\"tag\":\"returned\",\"by\":\"greeting\"}");
}

static void refollow_defaults_to_first_set(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    texts(g, "messages", welcome, 1);
    tags(g, "tags", new_tag, 1);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_assert_ok(kz_test_handle(follow(U1, 1, "active", "rt")));
    assert_string_equal(kz_test_sent(0)->messages,
                        "[{\"type\":\"text\",\"text\":\"友だち追加ありがとうございます！\"}]");
    assert_true(kz_test_friend_has_tag(U1, "new"));

    /* An explicit empty list means "nothing", not "the default". */
    kz_test_reset();
    g = kz_test_setting_group();
    texts(g, "messages", welcome, 1);
    tags(g, "tags", new_tag, 1);
    kz_test_setting_add_list(g, "refollow");
    kz_test_setting_add_list(g, "refollow_tags");
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_assert_ok(kz_test_handle(follow(U1, 1, "active", "rt")));
    assert_int_equal(kz_test_sent_count(), 0);
    assert_int_equal(kz_test_friend_count(), 0);
    kz_assert_ok(kz_test_handle(follow(U2, 0, "active", "rt")));
    assert_int_equal(kz_test_sent_count(), 1);
}

static void existing_tag_is_fine(void **state)
{
    (void)state;
    kz_test_friend_add(U1, 1);
    kz_test_friend_add_tag(U1, "new");
    kz_setting *g = kz_test_setting_group();
    tags(g, "tags", new_tag, 2);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_assert_ok(kz_test_handle(follow(U1, 0, "active", "rt")));
    assert_int_equal(kz_test_sent_count(), 0); /* tags only */
    assert_int_equal(kz_test_published_count("friend.tagged"), 1);
    assert_string_equal(kz_test_published_payload(0), "{\"tag\":\"campaign\",\"by\":\"greeting\"}");
}

static void standby_does_nothing(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    texts(g, "messages", welcome, 1);
    tags(g, "tags", new_tag, 1);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_assert_ok(kz_test_handle(follow(U1, 0, "standby", NULL)));
    assert_int_equal(kz_test_sent_count(), 0);
    assert_int_equal(kz_test_friend_count(), 0);
    assert_int_equal(kz_test_published_count(NULL), 0);
}

static void no_token_pushes(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    texts(g, "messages", welcome, 1);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_assert_ok(kz_test_handle(follow(U1, 0, "active", NULL)));
    assert_int_equal(kz_test_sent(0)->kind, KZ_LINE_PUSH);
    assert_string_equal(kz_test_sent(0)->to, U1);
}

static void failure_rolls_back(void **state)
{
    (void)state;
    kz_setting *g = kz_test_setting_group();
    texts(g, "messages", welcome, 1);
    tags(g, "tags", new_tag, 2);
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_test_fail_next(KZ_TEST_FAIL_FRIEND_TAG, KZ_EIO);
    assert_int_equal(kz_test_handle(follow(U1, 0, "active", "rt")), KZ_EIO);
    assert_int_equal(kz_test_sent_count(), 0);
    assert_int_equal(kz_test_friend_count(), 0);
    assert_non_null(strstr(kz_test_error(), "tagging " U1 " with 'new': error -5"));
    kz_assert_ok(kz_test_handle(follow(U1, 0, "active", "rt"))); /* the retry */
    assert_int_equal(kz_test_sent_count(), 1);
    assert_int_equal(kz_test_friend_tag_count(U1), 2);
}

/* ---- message files ------------------------------------------------------ */

static char dir[64];
static char cwd[4096];

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Works in a fresh temporary directory, so relative paths are tested too. */
static int files_setup(void **state)
{
    kz_test_setup(state);
    snprintf(dir, sizeof dir, "/tmp/kz_greeting_XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    write_file("one.json",
               "{ \"type\": \"sticker\", \"packageId\": \"446\", \"stickerId\": \"1988\" }\n");
    write_file("two.json",
               "[{\"type\":\"text\",\"text\":\"a\"},\n {\"type\":\"text\",\"text\":\"b\"}]");
    write_file("bad.json", "{\"type\":\"text\",}");
    write_file("notype.json", "[{\"text\":\"x\"}]");
    write_file("empty.json", "[]");
    write_file("five.json",
               "[{\"type\":\"text\",\"text\":\"1\"},{\"type\":\"text\",\"text\":\"2\"},"
               "{\"type\":\"text\",\"text\":\"3\"},{\"type\":\"text\",\"text\":\"4\"},"
               "{\"type\":\"text\",\"text\":\"5\"}]");
    return 0;
}

static int files_teardown(void **state)
{
    static const char *const names[] = {"one.json",    "two.json",   "bad.json",
                                        "notype.json", "empty.json", "five.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unlink(names[i]);
    assert_int_equal(chdir(cwd), 0);
    rmdir(dir);
    return kz_test_teardown(state);
}

static void file_messages(void **state)
{
    (void)state;
    char abs[128];
    snprintf(abs, sizeof abs, "%s/one.json", dir);
    kz_setting *g = kz_test_setting_group();
    kz_setting *l = texts(g, "messages", welcome, 1);
    kz_test_setting_set_string(kz_test_setting_add_group(l, NULL), "file", abs);
    kz_test_setting_set_string(kz_test_setting_add_group(l, NULL), "file", "two.json");
    kz_assert_ok(kz_test_load_settings(kizuna_plugin_v1, g));
    kz_assert_ok(kz_test_handle(follow(U1, 0, "active", "rt")));
    const kz_test_line_sent *s = kz_test_sent(0);
    assert_int_equal(s->nmessages, 4);
    assert_string_equal(
        s->messages, "[{\"type\":\"text\",\"text\":\"友だち追加ありがとうございます！\"},"
                     "{ \"type\": \"sticker\", \"packageId\": \"446\", \"stickerId\": \"1988\" },"
                     "{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]");
}

/* Loads messages = ( { KEY = V; } ) (+ extra nodes by fn) and expects err. */
static void expect_error(void (*fn)(kz_setting *g), const char *want)
{
    kz_test_reset();
    kz_test_set_shop("solia", NULL);
    kz_setting *g = kz_test_setting_group();
    fn(g);
    assert_int_equal(kz_test_load_settings(kizuna_plugin_v1, g), KZ_EINVAL);
    assert_string_equal(kz_test_error(), want);
}

static void file_of(kz_setting *g, const char *name)
{
    kz_setting *l = kz_test_setting_add_list(g, "messages");                      /* 2 */
    kz_test_setting_set_string(kz_test_setting_add_group(l, NULL), "file", name); /* 3, 4 */
}
static void e_missing(kz_setting *g)
{
    file_of(g, "missing.json");
}
static void e_bad(kz_setting *g)
{
    file_of(g, "bad.json");
}
static void e_notype(kz_setting *g)
{
    file_of(g, "notype.json");
}
static void e_empty_file(kz_setting *g)
{
    file_of(g, "empty.json");
}
static void e_six(kz_setting *g)
{
    kz_setting *l = kz_test_setting_add_list(g, "messages");                             /* 2 */
    kz_test_setting_set_string(kz_test_setting_add_group(l, NULL), "file", "five.json"); /* 3,4 */
    kz_test_setting_set_string(kz_test_setting_add_group(l, NULL), "text", "six");       /* 5,6 */
}
static void e_six_files(kz_setting *g)
{
    kz_setting *l = kz_test_setting_add_list(g, "messages");
    kz_test_setting_set_string(kz_test_setting_add_group(l, NULL), "text", "one"); /* 3,4 */
    kz_test_setting_set_string(kz_test_setting_add_group(l, NULL), "file", "five.json");
}
static void e_both(kz_setting *g)
{
    kz_setting *l = kz_test_setting_add_list(g, "messages");
    kz_setting *m = kz_test_setting_add_group(l, NULL); /* 3 */
    kz_test_setting_set_string(m, "text", "a");
    kz_test_setting_set_string(m, "file", "one.json");
}
static void e_unknown(kz_setting *g)
{
    kz_setting *l = kz_test_setting_add_list(g, "refollow");
    kz_setting *m = kz_test_setting_add_group(l, NULL);
    kz_test_setting_set_string(m, "text", "a");  /* 4 */
    kz_test_setting_set_string(m, "image", "x"); /* 5 */
}
static void e_not_group(kz_setting *g)
{
    kz_setting *l = kz_test_setting_add_list(g, "messages");
    kz_test_setting_set_string(l, NULL, "hello"); /* 3 */
}
static void e_empty_text(kz_setting *g)
{
    kz_setting *l = kz_test_setting_add_list(g, "messages");
    kz_test_setting_set_string(kz_test_setting_add_group(l, NULL), "text", ""); /* 4 */
}
static void e_bad_tag(kz_setting *g)
{
    kz_setting *l = kz_test_setting_add_list(g, "tags");
    kz_test_setting_set_string(l, NULL, "ok");
    kz_test_setting_set_string(l, NULL, "a\nb"); /* 4 */
}
static void e_tag_int(kz_setting *g)
{
    kz_setting *l = kz_test_setting_add_list(g, "refollow_tags");
    kz_test_setting_set_int(l, NULL, 3); /* 3 */
}
static void e_nothing(kz_setting *g)
{
    (void)g;
}

static void bad_settings(void **state)
{
    (void)state;
#define P "test.conf:%d: shop 'solia': plugin 'greeting': "
    char want[512];
    expect_error(e_missing, "test.conf:4: shop 'solia': plugin 'greeting': messages[0].file: "
                            "cannot read 'missing.json': No such file or directory");
    expect_error(e_bad, "test.conf:4: shop 'solia': plugin 'greeting': messages[0].file: "
                        "'bad.json' is not valid JSON");
    expect_error(e_notype, "test.conf:4: shop 'solia': plugin 'greeting': messages[0].file: "
                           "message 1 of the file is not a message object with a \"type\"");
    expect_error(e_empty_file, "test.conf:4: shop 'solia': plugin 'greeting': messages[0].file: "
                               "'empty.json' holds an empty array");
    expect_error(e_six, "test.conf:6: shop 'solia': plugin 'greeting': messages[1].text: more "
                        "than 5 messages in one set (LINE takes at most 5 a request)");
    expect_error(e_six_files, "test.conf:6: shop 'solia': plugin 'greeting': messages[1].file: "
                              "more than 5 messages in one set (LINE takes at most 5 a request)");
    expect_error(e_both, "test.conf:3: shop 'solia': plugin 'greeting': messages[0]: give either "
                         "text or file, not both");
    expect_error(e_unknown, "test.conf:5: shop 'solia': plugin 'greeting': refollow[0].image: "
                            "unknown key (known: text, file)");
    expect_error(e_not_group, "test.conf:3: shop 'solia': plugin 'greeting': messages[0]: expected "
                              "a group { text = \"…\"; } or { file = \"…\"; }");
    expect_error(e_empty_text, "test.conf:4: shop 'solia': plugin 'greeting': messages[0].text: "
                               "empty or not valid UTF-8");
    expect_error(e_bad_tag, "test.conf:4: shop 'solia': plugin 'greeting': tags[1]: a tag is a "
                            "string of 1 to 100 bytes of UTF-8 without control characters");
    expect_error(e_tag_int, "test.conf:3: shop 'solia': plugin 'greeting': refollow_tags[0]: a tag "
                            "is a string of 1 to 100 bytes of UTF-8 without control characters");
    snprintf(want, sizeof want, P "nothing to do: set messages and/or tags", 1);
    expect_error(e_nothing, want);
#undef P
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(new_friend_gets_reply_and_tags, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(unblock_gets_refollow_set, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(refollow_defaults_to_first_set, kz_test_setup,
                                        kz_test_teardown),
        cmocka_unit_test_setup_teardown(existing_tag_is_fine, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(standby_does_nothing, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(no_token_pushes, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(failure_rolls_back, kz_test_setup, kz_test_teardown),
        cmocka_unit_test_setup_teardown(file_messages, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(bad_settings, files_setup, files_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
