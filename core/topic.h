/*
 * topic — topic names and subscription patterns.
 *
 * A topic is dot-separated words of [A-Za-z0-9_-], 1..KZ_TOPIC_MAX bytes,
 * e.g. "line.follow", "ec.order.shipped". A pattern is an exact topic,
 * "prefix.*" (every topic that begins with "prefix.", at any depth, but not
 * "prefix" itself) or "*" (every topic).
 *
 * Thread: pure functions, any thread.
 */
#ifndef KIZUNA_CORE_TOPIC_H
#define KIZUNA_CORE_TOPIC_H

/* 1 when valid, 0 when not. */
int topic_valid(const char *topic);
int topic_pattern_valid(const char *pattern);
/* 1 when topic matches pattern (both assumed valid). */
int topic_match(const char *pattern, const char *topic);

#endif
