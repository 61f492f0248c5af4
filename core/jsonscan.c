#include "jsonscan.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include <kizuna/host.h>

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

const char *jscan_ws(const char *p, const char *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

jscan_span jscan_value(const char *text, size_t n)
{
    const char *p = jscan_ws(text, text + n), *e = text + n;
    while (e > p && is_ws(e[-1]))
        e--;
    return (jscan_span){p, (size_t)(e - p)};
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* Length of the well-formed sequence at s (RFC 3629, table 3-7 of the
 * Unicode standard), or 0. */
static size_t utf8_seq(const unsigned char *s, const unsigned char *end)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* bounds of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else
        return 0;
    if ((size_t)(end - s) < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < need; k++)
        if ((s[k] & 0xC0) != 0x80)
            return 0;
    return need;
}

/* ---- validation ------------------------------------------------------ */

/* 1 when the 8 bytes of w are all printable ASCII other than '"' and '\\':
 * a string's common case, taken a word at a time. */
static int plain8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t quote = w ^ (ones * '"'), slash = w ^ (ones * '\\');
    uint64_t zero_q = (quote - ones) & ~quote & high;
    uint64_t zero_s = (slash - ones) & ~slash & high;
    uint64_t ctrl = (w - ones * 0x20) & ~w & high; /* a byte below 0x20 */
    return ((w & high) | zero_q | zero_s | ctrl) == 0;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Past the string token at p (p[0] == '"') when it is one as RFC 8259 and
 * RFC 3629 write it; else NULL with *why set. */
static const char *valid_string(const char *p, const char *end, int *why)
{
    const unsigned char *s = (const unsigned char *)p + 1, *e = (const unsigned char *)end;
    *why = JSCAN_INVALID;
    for (;;) {
        uint64_t w;
        while (e - s >= 8 && (memcpy(&w, s, 8), plain8(w)))
            s += 8;
        if (s == e)
            return NULL;
        unsigned char c = *s;
        if (c == '"')
            return (const char *)s + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (e - s < 2)
                return NULL;
            c = s[1];
            if (c == 'u') {
                if (e - s < 6 || !is_hex((char)s[2]) || !is_hex((char)s[3]) ||
                    !is_hex((char)s[4]) || !is_hex((char)s[5]))
                    return NULL;
                s += 6;
            } else if (strchr("\"\\/bfnrt", c) != NULL && c != '\0') {
                s += 2;
            } else {
                return NULL;
            }
        } else if (c >= 0x80) {
            size_t k = utf8_seq(s, e);
            if (k == 0) {
                *why = JSCAN_BAD_UTF8;
                return NULL;
            }
            s += k;
        } else {
            s++;
        }
    }
}

static const char *digits(const char *p, const char *end)
{
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p;
}

/* Past the number at p as RFC 8259 writes it, or NULL. */
static const char *valid_number(const char *p, const char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p == end || *p < '0' || *p > '9')
        return NULL;
    p = *p == '0' ? p + 1 : digits(p, end);
    if (p < end && *p == '.') {
        const char *f = digits(p + 1, end);
        if (f == p + 1)
            return NULL;
        p = f;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *x = digits(p, end);
        if (x == p)
            return NULL;
        p = x;
    }
    return p;
}

static const char *valid_literal(const char *p, const char *end)
{
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(end - p) >= n && memcmp(p, words[i], n) == 0)
            return p + n;
    }
    return NULL;
}

/* Past one scalar (string, number, literal) at p, or NULL with *why. */
static const char *valid_scalar(const char *p, const char *end, int *why)
{
    *why = JSCAN_INVALID;
    if (*p == '"')
        return valid_string(p, end, why);
    if (*p == '-' || (*p >= '0' && *p <= '9'))
        return valid_number(p, end);
    return valid_literal(p, end);
}

int jscan_validate(const char *text, size_t n)
{
    const char *p = text, *end = text + n;
    char open[JSCAN_MAX_DEPTH]; /* '{' or '[' of each container open */
    int depth = 0, why = JSCAN_INVALID;
    p = jscan_ws(p, end);
    for (;;) {
        /* a value */
        if (p == end)
            return JSCAN_INVALID;
        if (*p == '{' || *p == '[') {
            if (depth == JSCAN_MAX_DEPTH)
                return JSCAN_TOO_DEEP;
            open[depth++] = *p;
            p = jscan_ws(p + 1, end);
            if (p < end && *p == (open[depth - 1] == '{' ? '}' : ']')) {
                p++;
                depth--;
            } else if (open[depth - 1] == '{') {
                goto key;
            } else {
                continue;
            }
        } else if ((p = valid_scalar(p, end, &why)) == NULL) {
            return why;
        }
    after_value:
        p = jscan_ws(p, end);
        if (depth == 0)
            return p == end ? JSCAN_OK : JSCAN_INVALID;
        if (p == end)
            return JSCAN_INVALID;
        if (*p == (open[depth - 1] == '{' ? '}' : ']')) {
            p++;
            depth--;
            goto after_value;
        }
        if (*p != ',')
            return JSCAN_INVALID;
        p = jscan_ws(p + 1, end);
        if (open[depth - 1] == '[')
            continue;
    key:
        if (p == end || *p != '"')
            return JSCAN_INVALID;
        if ((p = valid_string(p, end, &why)) == NULL)
            return why;
        p = jscan_ws(p, end);
        if (p == end || *p != ':')
            return JSCAN_INVALID;
        p = jscan_ws(p + 1, end);
    }
}

/* ---- values ------------------------------------------------------------ */

/* Past the string token at p (p[0] == '"'), or NULL when it does not end.
 * memchr finds the next quote many bytes at a time (most of a body is
 * strings: Japanese text, ids, tokens); the quote ends the string unless an
 * odd run of backslashes escapes it. */
static const char *skip_string(const char *p, const char *end)
{
    const char *start = p + 1;
    for (const char *q = start; q < end; q++) {
        q = memchr(q, '"', (size_t)(end - q));
        if (q == NULL)
            return NULL;
        size_t slashes = 0;
        while (q - slashes > start && q[-1 - (ptrdiff_t)slashes] == '\\')
            slashes++;
        if (slashes % 2 == 0)
            return q + 1;
    }
    return NULL;
}

/* Past the value at p, or NULL when it nests deeper than JSCAN_MAX_DEPTH
 * (depth containers being open around it) or does not end. */
static const char *skip_value(const char *p, const char *end, int depth)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p != '{' && *p != '[') { /* number, true, false, null */
        while (p < end && *p != ',' && *p != '}' && *p != ']' && !is_ws(*p))
            p++;
        return p;
    }
    int d = depth;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            if ((p = skip_string(p, end)) == NULL)
                return NULL;
            continue;
        }
        if (c == '{' || c == '[') {
            if (++d > JSCAN_MAX_DEPTH)
                return NULL;
        } else if ((c == '}' || c == ']') && --d == depth) {
            return p + 1;
        }
        p++;
    }
    return NULL;
}

int jscan_open(jscan_iter *it, jscan_span v, int depth, char open)
{
    if (v.n < 2 || v.p[0] != open || depth + 1 > JSCAN_MAX_DEPTH)
        return -1;
    *it = (jscan_iter){.p = v.p + 1, .end = v.p + v.n - 1, .depth = depth + 1, .first = 1};
    return 0;
}

/* Moves to the next item: 1 at its first byte, 0 at the end, -1 on text
 * jscan_validate() would not have passed. */
static int next_item(jscan_iter *it)
{
    const char *p = jscan_ws(it->p, it->end);
    if (p == it->end)
        return 0;
    if (!it->first) {
        if (*p != ',')
            return -1;
        p = jscan_ws(p + 1, it->end);
        if (p == it->end)
            return -1;
    }
    it->first = 0;
    it->p = p;
    return 1;
}

static int take_value(jscan_iter *it, jscan_span *value)
{
    const char *v = it->p;
    const char *e = skip_value(v, it->end, it->depth);
    if (e == NULL)
        return -1;
    *value = (jscan_span){v, (size_t)(e - v)};
    it->p = e;
    return 1;
}

int jscan_member(jscan_iter *it, jscan_span *key, jscan_span *value)
{
    int rc = next_item(it);
    if (rc != 1)
        return rc;
    const char *k = it->p;
    if (*k != '"')
        return -1;
    const char *e = skip_string(k, it->end);
    if (e == NULL)
        return -1;
    *key = (jscan_span){k, (size_t)(e - k)};
    e = jscan_ws(e, it->end);
    if (e == it->end || *e != ':')
        return -1;
    it->p = jscan_ws(e + 1, it->end);
    return take_value(it, value);
}

int jscan_element(jscan_iter *it, jscan_span *value)
{
    int rc = next_item(it);
    return rc != 1 ? rc : take_value(it, value);
}

/* ---- strings ----------------------------------------------------------- */

int jscan_string(jscan_span v, char **out)
{
    *out = NULL;
    if (v.n < 2 || v.p[0] != '"' || v.p[v.n - 1] != '"')
        return 1;
    const char *s = v.p + 1;
    size_t n = v.n - 2;
    if (memchr(s, '\\', n) == NULL) {
        if ((*out = malloc(n + 1)) == NULL)
            return KZ_ENOMEM;
        memcpy(*out, s, n);
        (*out)[n] = '\0';
        return 0;
    }
    /* Escapes are rare in the strings looked up; json-c decodes them. */
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return KZ_ENOMEM;
    json_object *o = json_tokener_parse_ex(tok, v.p, (int)v.n);
    int rc = 1;
    if (o != NULL && json_object_is_type(o, json_type_string)) {
        const char *d = json_object_get_string(o);
        size_t dn = (size_t)json_object_get_string_len(o);
        if (strlen(d) == dn)
            rc = (*out = strdup(d)) != NULL ? 0 : KZ_ENOMEM;
    }
    json_object_put(o);
    json_tokener_free(tok);
    return rc;
}

int jscan_key_is(jscan_span key, const char *name)
{
    size_t n = strlen(name);
    if (key.n == n + 2 && memcmp(key.p + 1, name, n) == 0)
        return key.p[0] == '"';
    if (key.n < n + 2 || memchr(key.p, '\\', key.n) == NULL)
        return 0;
    char *d;
    if (jscan_string(key, &d) != 0)
        return 0;
    int same = strcmp(d, name) == 0;
    free(d);
    return same;
}

size_t jscan_compact(char *dst, const char *src, size_t n)
{
    const char *s = src, *end = src + n;
    size_t k = 0;
    while (s < end) {
        if (*s == '"') {
            const char *e = skip_string(s, end);
            if (e == NULL)
                e = end;
            memcpy(dst + k, s, (size_t)(e - s));
            k += (size_t)(e - s);
            s = e;
        } else {
            if (!is_ws(*s))
                dst[k++] = *s;
            s++;
        }
    }
    return k;
}
