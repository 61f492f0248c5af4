/*
 * jscan — the little JSON reading the bundled plugins need, without a JSON
 * library (plugins cannot use the host's json-c: the host exports no
 * symbols, and vendoring one for two lookups is not worth it).
 *
 * It reads JSON text in place: a value is a pointer to its first byte.
 * jscan_member() walks an object's members properly (strings with escapes,
 * nested objects and arrays are skipped as a whole), so a key inside a
 * string or a nested object never matches by accident. Works on any valid
 * JSON, compact (as the host hands LINE's event objects over) or not.
 *
 * Shared source, compiled into each plugin that uses it; like all of a
 * plugin's symbols but its entry point, hidden (kizuna_add_plugin).
 */
#ifndef KIZUNA_PLUGINS_JSCAN_H
#define KIZUNA_PLUGINS_JSCAN_H

#include <stddef.h>

/* The end of the JSON value at p (after skipping leading whitespace), or
 * NULL when it is not one valid value (strict RFC 8259 grammar; nesting up
 * to 64 levels). */
const char *jscan_value_end(const char *p);

/* 1 when text holds exactly one JSON value (whitespace around it allowed). */
int jscan_valid(const char *text);

/* The value of member `key` of the object at obj (leading whitespace
 * skipped), or NULL when obj is not an object or has no such member. Keys
 * are compared as written in the JSON (escaped keys never match). */
const char *jscan_member(const char *obj, const char *key);

/* Member at a dotted path ("follow.isUnblocked"), or NULL. */
const char *jscan_path(const char *obj, const char *path);

/* 1 when v is the literal `true` (0 otherwise, including NULL). */
int jscan_is_true(const char *v);

/* The JSON string at v, unescaped into a malloc'ed NUL-terminated UTF-8
 * string (\uXXXX and surrogate pairs decoded; \u0000 refused), or NULL when
 * v is not a string or memory is short. */
char *jscan_string_dup(const char *v);

/* 1 when the JSON string at v equals s (unescaped comparison). */
int jscan_string_is(const char *v, const char *s);

/* Elements of the array at arr: calls fn(elem, arg) for each (elem points
 * at the element's first byte); stops at fn's first nonzero return and
 * returns it. -1 when arr is not an array. */
int jscan_each(const char *arr, int (*fn)(const char *elem, void *arg), void *arg);

#endif /* KIZUNA_PLUGINS_JSCAN_H */
