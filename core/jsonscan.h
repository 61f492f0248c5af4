/*
 * jsonscan — checks JSON text and walks it without building a tree:
 * members and array elements come out as byte spans of the text itself,
 * and a value can be copied without its insignificant whitespace.
 *
 * Why: every webhook body is parsed on an HTTP thread. json-c builds a tree
 * of the whole body (an allocation per value, a hash table per object) only
 * for the ingress to find four strings and where each event begins and
 * ends; that was half of an HTTP thread's time under load. The check is
 * our own because neither library gives it: json-c (even strict) takes
 * NaN, single quotes, raw control characters and overlong UTF-8, and the
 * json_valid() of Debian 12's SQLite (3.40) takes an object as a member
 * name ({{"a":1}:2}).
 *
 * The walk trusts the grammar: call it on text jscan_validate() accepted.
 * On any other text it may give wrong spans or report an error, but it
 * never reads outside [p, end).
 *
 * Spans point into the caller's text; nothing here allocates except
 * jscan_string(), whose result the caller frees.
 *
 * Thread: any; no shared state.
 */
#ifndef KIZUNA_CORE_JSONSCAN_H
#define KIZUNA_CORE_JSONSCAN_H

#include <stddef.h>

/* json-c's default nesting limit (JSON_TOKENER_DEFAULT_DEPTH): what a
 * plugin parsing a payload with json_tokener_parse() accepts. */
#define JSCAN_MAX_DEPTH 32

typedef struct jscan_span {
    const char *p;
    size_t n;
} jscan_span;

enum { JSCAN_OK = 0, JSCAN_INVALID = 1, JSCAN_BAD_UTF8 = 2, JSCAN_TOO_DEEP = 3 };

/* JSCAN_OK when text[0..n) is one JSON value as RFC 8259 writes it, with
 * whitespace around it allowed, strings in well-formed UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF) and containers
 * nested at most JSCAN_MAX_DEPTH deep; else the first reason found. */
int jscan_validate(const char *text, size_t n);

/* p past JSON whitespace (space, tab, LF, CR). */
const char *jscan_ws(const char *p, const char *end);

/* The one value text[0..n) holds, without the whitespace around it. */
jscan_span jscan_value(const char *text, size_t n);

/* A cursor over the members of an object or the elements of an array. */
typedef struct jscan_iter {
    const char *p, *end;
    int depth; /* containers open around the members, this one included */
    int first;
} jscan_iter;

/* Opens the object (or array) v for iteration; 0, or -1 when v is not one.
 * depth: how many containers are open around v (0 for the document). */
int jscan_open(jscan_iter *it, jscan_span v, int depth, char open);

/* The next member of an object: 1 with its key token (quotes included) and
 * value span, 0 at the end, -1 when a value nests deeper than
 * JSCAN_MAX_DEPTH or the text is not as jscan_validate() left it. */
int jscan_member(jscan_iter *it, jscan_span *key, jscan_span *value);

/* The next element of an array: as jscan_member, without a key. */
int jscan_element(jscan_iter *it, jscan_span *value);

/* 1 when key (a string token, quotes included) is the text name. */
int jscan_key_is(jscan_span key, const char *name);

/* The value of the string token v as a NUL-terminated C string in *out
 * (malloc'd, escapes decoded): 0; 1 when v is not a string or holds "\u0000"
 * (a C string would end there), *out NULL; KZ_ENOMEM. */
int jscan_string(jscan_span v, char **out);

/* Copies the value src[0..n) into dst (room for n bytes) without the
 * whitespace between tokens; strings and numbers are copied as they are.
 * Returns the bytes written. */
size_t jscan_compact(char *dst, const char *src, size_t n);

#endif
