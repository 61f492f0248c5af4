#include "topic.h"

#include <string.h>

#include <kizuna/host.h>

static int word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* Checks words separated by single dots, no empty word. */
static int words_valid(const char *s, size_t len)
{
    if (len == 0 || len > KZ_TOPIC_MAX)
        return 0;
    int at_word_start = 1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (at_word_start)
                return 0;
            at_word_start = 1;
        } else if (word_char(s[i])) {
            at_word_start = 0;
        } else {
            return 0;
        }
    }
    return !at_word_start;
}

int topic_valid(const char *topic)
{
    return topic != NULL && words_valid(topic, strlen(topic));
}

int topic_pattern_valid(const char *pattern)
{
    if (pattern == NULL)
        return 0;
    size_t len = strlen(pattern);
    if (len == 1 && pattern[0] == '*')
        return 1;
    if (len >= 3 && strcmp(pattern + len - 2, ".*") == 0)
        return words_valid(pattern, len - 2);
    return words_valid(pattern, len);
}

int topic_match(const char *pattern, const char *topic)
{
    size_t plen = strlen(pattern);
    if (plen == 1 && pattern[0] == '*')
        return 1;
    if (plen >= 2 && pattern[plen - 1] == '*' && pattern[plen - 2] == '.')
        return strncmp(pattern, topic, plen - 1) == 0 && topic[plen - 1] != '\0';
    return strcmp(pattern, topic) == 0;
}
