/*
 * payload — checks event payloads (JSON text) and makes event ids.
 *
 * Thread: any.
 */
#ifndef KIZUNA_CORE_PAYLOAD_H
#define KIZUNA_CORE_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

/* 0 when json[0..len) is one complete JSON value of at most KZ_PAYLOAD_MAX
 * bytes; KZ_EINVAL or KZ_ETOOBIG with the reason in err otherwise. */
int payload_check(const char *json, size_t len, char *err, size_t errlen);
/* Only the size part of payload_check: 0 or KZ_ETOOBIG. */
int payload_size_check(size_t len, char *err, size_t errlen);

/* 1 when json[0..len) is one JSON value as RFC 8259 writes it (SQLite's
 * json_valid, no length limit), 0 when it is not, -1 when that cannot be
 * told (no memory). json-c, even strict, accepts NaN, Infinity, single
 * quotes and raw control characters in strings; this does not. */
int payload_json_valid(const char *json, size_t len);

/* Writes a new time-ordered UUID (version 7: ms timestamp, then 74 random
 * bits; 36 chars + NUL) into out[37]. */
void payload_uuid(char out[37]);

/* The UUID text of 16 bytes with RFC 9562's version (4 bits) and variant
 * set, into out[37]. */
void payload_uuid_format(const uint8_t bytes[16], int version, char out[37]);

/* Member key of object o as a string (NULL when absent, not a string, or o
 * is NULL), and as an integer (0 when absent). The string is o's. */
const char *payload_str(json_object *o, const char *key);
int64_t payload_int(json_object *o, const char *key);

#endif
