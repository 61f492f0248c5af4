#include "jscan.h"

#include <stdlib.h>
#include <string.h>

#define JSCAN_DEPTH_MAX 64

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return 0;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 1;
}

/* p at '"': the byte after the closing quote, or NULL. */
static const char *string_end(const char *p)
{
    unsigned u;
    for (p++; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL; /* also the NUL: unterminated */
        if (*p != '\\')
            continue;
        p++;
        if (*p == 'u') {
            if (!hex4(p + 1, &u))
                return NULL;
            p += 4;
        } else if (strchr("\"\\/bfnrt", *p) == NULL || *p == '\0') {
            return NULL;
        }
    }
    return p + 1;
}

static const char *digits(const char *p)
{
    const char *s = p;
    while (*p >= '0' && *p <= '9')
        p++;
    return p > s ? p : NULL;
}

static const char *number_end(const char *p)
{
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if ((p = digits(p)) == NULL)
        return NULL;
    if (*p == '.' && (p = digits(p + 1)) == NULL)
        return NULL;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        p = digits(p);
    }
    return p;
}

static const char *value_end(const char *p, int depth);

/* p at '{' or '[': the byte after the matching close, or NULL. */
static const char *container_end(const char *p, int depth)
{
    char close = *p == '{' ? '}' : ']';
    int object = *p == '{';
    if (depth >= JSCAN_DEPTH_MAX)
        return NULL;
    p = ws(p + 1);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (object) {
            if (*p != '"' || (p = string_end(p)) == NULL)
                return NULL;
            p = ws(p);
            if (*p != ':')
                return NULL;
            p++;
        }
        if ((p = value_end(p, depth + 1)) == NULL)
            return NULL;
        p = ws(p);
        if (*p == close)
            return p + 1;
        if (*p != ',')
            return NULL;
        p = ws(p + 1);
    }
}

static const char *value_end(const char *p, int depth)
{
    p = ws(p);
    switch (*p) {
    case '"':
        return string_end(p);
    case '{':
    case '[':
        return container_end(p, depth);
    case 't':
        return strncmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f':
        return strncmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n':
        return strncmp(p, "null", 4) == 0 ? p + 4 : NULL;
    default:
        return *p == '-' || (*p >= '0' && *p <= '9') ? number_end(p) : NULL;
    }
}

const char *jscan_value_end(const char *p)
{
    return p ? value_end(p, 0) : NULL;
}

int jscan_valid(const char *text)
{
    const char *e = jscan_value_end(text);
    return e != NULL && *ws(e) == '\0';
}

const char *jscan_member(const char *obj, const char *key)
{
    if (obj == NULL || key == NULL)
        return NULL;
    const char *p = ws(obj);
    if (*p != '{')
        return NULL;
    size_t klen = strlen(key);
    p = ws(p + 1);
    while (*p == '"') {
        const char *kend = string_end(p);
        if (kend == NULL)
            return NULL;
        int hit = (size_t)(kend - p - 2) == klen && memcmp(p + 1, key, klen) == 0;
        p = ws(kend);
        if (*p != ':')
            return NULL;
        p = ws(p + 1);
        if (hit)
            return p;
        if ((p = value_end(p, 1)) == NULL)
            return NULL;
        p = ws(p);
        if (*p != ',')
            return NULL;
        p = ws(p + 1);
    }
    return NULL;
}

const char *jscan_path(const char *obj, const char *path)
{
    char key[128];
    while (obj != NULL && path != NULL) {
        size_t n = strcspn(path, ".");
        if (n == 0 || n >= sizeof key)
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        obj = jscan_member(obj, key);
        if (path[n] == '\0')
            return obj;
        path += n + 1;
    }
    return NULL;
}

int jscan_is_true(const char *v)
{
    return v != NULL && strncmp(ws(v), "true", 4) == 0;
}

/* Appends code point c as UTF-8. */
static char *put_utf8(char *o, unsigned c)
{
    if (c < 0x80) {
        *o++ = (char)c;
    } else if (c < 0x800) {
        *o++ = (char)(0xc0 | c >> 6);
        *o++ = (char)(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        *o++ = (char)(0xe0 | c >> 12);
        *o++ = (char)(0x80 | (c >> 6 & 0x3f));
        *o++ = (char)(0x80 | (c & 0x3f));
    } else {
        *o++ = (char)(0xf0 | c >> 18);
        *o++ = (char)(0x80 | (c >> 12 & 0x3f));
        *o++ = (char)(0x80 | (c >> 6 & 0x3f));
        *o++ = (char)(0x80 | (c & 0x3f));
    }
    return o;
}

/* One \uXXXX escape (p after the 'u'), a surrogate pair joined; advances
 * *pp past it. 0 for \u0000 or a lone surrogate (written as U+FFFD). */
static unsigned unicode_escape(const char **pp)
{
    unsigned c, lo;
    const char *p = *pp;
    hex4(p, &c);
    p += 4;
    if (c >= 0xd800 && c < 0xdc00 && p[0] == '\\' && p[1] == 'u' && hex4(p + 2, &lo) &&
        lo >= 0xdc00 && lo < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        p += 6;
    } else if (c >= 0xd800 && c < 0xe000) {
        c = 0xfffd;
    }
    *pp = p;
    return c;
}

char *jscan_string_dup(const char *v)
{
    if (v == NULL)
        return NULL;
    v = ws(v);
    const char *end = *v == '"' ? string_end(v) : NULL;
    if (end == NULL)
        return NULL;
    char *out = malloc((size_t)(end - v)); /* unescaping never grows the text */
    if (out == NULL)
        return NULL;
    char *o = out;
    for (const char *p = v + 1; p < end - 1;) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        char e = p[1];
        p += 2;
        if (e == 'u') {
            unsigned c = unicode_escape(&p);
            if (c == 0) {
                free(out);
                return NULL;
            }
            o = put_utf8(o, c);
            continue;
        }
        static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
        const char *k = strchr(from, e);
        *o++ = k ? to[k - from] : e;
    }
    *o = '\0';
    return out;
}

int jscan_string_is(const char *v, const char *s)
{
    char *d = jscan_string_dup(v);
    int eq = d != NULL && s != NULL && strcmp(d, s) == 0;
    free(d);
    return eq;
}

int jscan_each(const char *arr, int (*fn)(const char *elem, void *arg), void *arg)
{
    const char *p = arr ? ws(arr) : NULL;
    if (p == NULL || *p != '[')
        return -1;
    p = ws(p + 1);
    if (*p == ']')
        return 0;
    for (;;) {
        const char *e = value_end(p, 1);
        if (e == NULL)
            return -1;
        int rc = fn(p, arg);
        if (rc != 0)
            return rc;
        p = ws(e);
        if (*p == ']')
            return 0;
        if (*p != ',')
            return -1;
        p = ws(p + 1);
    }
}
