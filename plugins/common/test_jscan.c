/*
 * jscan on its own: members found only where they are (not inside strings
 * or nested objects), paths, escapes and surrogate pairs, arrays, and
 * malformed input refused rather than misread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "jscan.h"

static const char event[] =
    "{\"type\":\"follow\",\"note\":\"\\\"replyToken\\\":\\\"fake\\\"\","
    "\"nested\":{\"replyToken\":\"inner\"},\"replyToken\":\"abc123\","
    "\"follow\":{\"isUnblocked\":true},\"source\":{\"type\":\"user\",\"userId\":\"U1\"},"
    "\"emoji\":\"\\ud83d\\ude00\\u3042\",\"list\":[1,\"two\",{\"three\":3}]}";

static void members_and_paths(void **state)
{
    (void)state;
    assert_true(jscan_valid(event));
    assert_true(jscan_string_is(jscan_member(event, "replyToken"), "abc123"));
    assert_true(jscan_is_true(jscan_path(event, "follow.isUnblocked")));
    assert_true(jscan_string_is(jscan_path(event, "source.userId"), "U1"));
    assert_null(jscan_member(event, "missing"));
    assert_null(jscan_path(event, "follow.missing"));
    assert_null(jscan_member("[1,2]", "x")); /* not an object */
    char *s = jscan_string_dup(jscan_member(event, "emoji"));
    assert_string_equal(s, "\xf0\x9f\x98\x80\xe3\x81\x82"); /* 😀あ */
    free(s);
    assert_null(jscan_string_dup("\"\\u0000\"")); /* a NUL would cut the string */
}

static int count(const char *elem, void *arg)
{
    (void)elem;
    ++*(int *)arg;
    return 0;
}

static void arrays(void **state)
{
    (void)state;
    int n = 0;
    assert_int_equal(jscan_each(jscan_member(event, "list"), count, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(jscan_each("{}", count, &n), -1);
}

static void malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {"",        "{",  "{\"a\":}", "[1,]",  "{\"a\" 1}",
                                      "\"\\x\"", "01", "tru",      "{} {}", "\"unterminated"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (jscan_valid(bad[i]))
            fail_msg("'%s' taken as valid JSON", bad[i]);
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 99); /* one short, and deeper than 64 anyway */
    deep[199] = '\0';
    assert_false(jscan_valid(deep));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(members_and_paths),
        cmocka_unit_test(arrays),
        cmocka_unit_test(malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
