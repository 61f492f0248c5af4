/* Subscription matching and topic/pattern validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include <kizuna/host.h>

#include "topic.h"

static void exact_and_prefix(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *topic;
        int match;
    } cases[] = {
        {"line.follow", "line.follow", 1},
        {"line.follow", "line.follows", 0},
        {"line.follow", "line", 0},
        {"line.*", "line.follow", 1},
        {"line.*", "line.message.text", 1}, /* any depth */
        {"line.*", "line", 0},              /* not the prefix itself */
        {"line.*", "lines.follow", 0},
        {"line.message.*", "line.message.text", 1},
        {"line.message.*", "line.follow", 0},
        {"*", "ec.order.shipped", 1},
        {"*", "a", 1},
        {"ec.order.created", "ec.order.created", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_true(topic_pattern_valid(cases[i].pattern));
        assert_true(topic_valid(cases[i].topic));
        if (topic_match(cases[i].pattern, cases[i].topic) != cases[i].match)
            fail_msg("pattern '%s' vs topic '%s': expected %d", cases[i].pattern, cases[i].topic,
                     cases[i].match);
    }
}

static void invalid_names(void **state)
{
    (void)state;
    static const char *const bad_topics[] = {"", ".a", "a.", "a..b", "a b", "a.*", "*", "ä", "a/b"};
    for (size_t i = 0; i < sizeof bad_topics / sizeof bad_topics[0]; i++)
        if (topic_valid(bad_topics[i]))
            fail_msg("topic '%s' accepted", bad_topics[i]);
    assert_false(topic_valid(NULL));
    static const char *const bad_patterns[] = {"", "a.", "*.a", "a.*.b", "a*", ".*", "a..*", "**"};
    for (size_t i = 0; i < sizeof bad_patterns / sizeof bad_patterns[0]; i++)
        if (topic_pattern_valid(bad_patterns[i]))
            fail_msg("pattern '%s' accepted", bad_patterns[i]);
    char long_topic[KZ_TOPIC_MAX + 2];
    memset(long_topic, 'a', sizeof long_topic - 1);
    long_topic[sizeof long_topic - 1] = '\0';
    assert_false(topic_valid(long_topic));
    long_topic[KZ_TOPIC_MAX] = '\0';
    assert_true(topic_valid(long_topic));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_and_prefix),
        cmocka_unit_test(invalid_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
