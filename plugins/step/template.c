#include "template.h"

#include <stdlib.h>
#include <string.h>

#include "../common/jscan.h"

typedef struct buf {
    char *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* s as the inside of a JSON string. */
static void put_escaped(buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            put(b, esc, 6);
        } else {
            put(b, s, 1);
        }
    }
}

/* The friend's value for name as text (malloc'ed), or NULL when the name
 * is unknown. Missing values are "". */
static char *value_of(const char *friend_json, const char *user, const char *name)
{
    const char *v = NULL;
    if (strcmp(name, "user") == 0)
        return strdup(user);
    if (strcmp(name, "display_name") == 0)
        v = friend_json ? jscan_member(friend_json, "displayName") : NULL;
    else if (strncmp(name, "attr.", 5) == 0)
        v = friend_json ? jscan_member(jscan_member(friend_json, "attributes"), name + 5) : NULL;
    else
        return NULL;
    if (v == NULL || strncmp(v, "null", 4) == 0)
        return strdup("");
    if (*v == '"')
        return jscan_string_dup(v);
    const char *end = jscan_value_end(v); /* a number or a bool as written */
    return end != NULL ? strndup(v, (size_t)(end - v)) : strdup("");
}

/* One {{…}} placeholder body (between the braces, JSON-escaped as it sits
 * in the message). 0 when it was replaced, 1 when it is not ours. */
static int fill_one(buf *b, const char *friend_json, const char *user, const char *body, size_t n)
{
    char name[128];
    const char *bar = memchr(body, '|', n);
    size_t nn = bar ? (size_t)(bar - body) : n;
    while (nn > 0 && body[nn - 1] == ' ')
        nn--;
    while (nn > 0 && *body == ' ')
        body++, nn--, n--;
    if (nn == 0 || nn >= sizeof name)
        return 1;
    memcpy(name, body, nn);
    name[nn] = '\0';
    char *v = value_of(friend_json, user, name);
    if (v == NULL)
        return 1;
    if (*v == '\0' && bar != NULL)
        put(b, bar + 1, n - (size_t)(bar + 1 - body)); /* the default, still escaped */
    else
        put_escaped(b, v);
    free(v);
    return 0;
}

int template_fill(kz_ctx *ctx, const char *user, const char *json, char **out)
{
    *out = NULL;
    buf b = {0};
    const char *friend_json = NULL;
    if (strstr(json, "{{") == NULL) {
        *out = strdup(json);
        return *out ? 0 : KZ_ENOMEM;
    }
    int rc = kz_friend_get(ctx, user, &friend_json, NULL);
    if (rc != 0 && rc != KZ_ENOTFOUND)
        return rc;
    const char *p = json;
    for (const char *open; (open = strstr(p, "{{")) != NULL;) {
        const char *close = strstr(open + 2, "}}");
        if (close == NULL)
            break;
        put(&b, p, (size_t)(open - p));
        if (fill_one(&b, rc == 0 ? friend_json : NULL, user, open + 2, (size_t)(close - open - 2)))
            put(&b, open, (size_t)(close + 2 - open));
        p = close + 2;
    }
    put(&b, p, strlen(p));
    if (b.oom || b.p == NULL) {
        free(b.p);
        return KZ_ENOMEM;
    }
    *out = b.p;
    return 0;
}
