/*
 * tz — a moment in a shop's time zone (IANA names such as "Asia/Tokyo",
 * from the system's zone database, DST included).
 *
 * glibc converts in one process-wide zone (TZ), so conversions take a lock
 * and point TZ at the zone; TZ then stays there until another zone is
 * needed (re-reading the zone file on every conversion cost more than the
 * conversion). Nothing else in kizuna may call localtime()/mktime(): they
 * would see whichever shop's zone was used last (plugins get local time
 * through the host table for the same reason).
 *
 * Ownership: nothing kept. Thread: any.
 */
#ifndef KIZUNA_CORE_TZ_H
#define KIZUNA_CORE_TZ_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/host.h>

/* ms since the epoch as local time in zone (NULL: Asia/Tokyo). KZ_EINVAL
 * for a NULL out. An unknown zone reads as UTC (glibc's rule); check it
 * with tz_known first. */
int tz_local(const char *zone, int64_t ms, kz_local_time *out);

/* The instant (ms since the epoch) of a shop-local wall time in zone (NULL:
 * Asia/Tokyo): lt's year, month (1-12), day, hour, minute and second are
 * read; weekday and utc_offset_s are ignored. Fields out of range roll over
 * (day 32 of January is 1 February, hour 24 is the next day's 00:00), so
 * callers may step days by adding to day. Around DST changes:
 * - a time that does not exist (in the gap when clocks jump forward) moves
 *   forward by the gap: 02:30 in a 02:00→03:00 jump is 03:30;
 * - a time that happens twice (clocks fall back) is the earlier instant.
 * KZ_EINVAL for a NULL lt or ms. Assumes at most one offset change within a
 * day of the time, as in every zone in use. */
int tz_to_ms(const char *zone, const kz_local_time *lt, int64_t *ms);

/* 1 when lt's fields are in range for the ABI's local_to_ms (month 1..12,
 * day 1..31, hour 0..23, minute and second 0..59, year 1..9999): plugins
 * get KZ_EINVAL for anything else, the core's own callers roll over. */
int tz_fields_ok(const kz_local_time *lt);

/* "2026-11-23T10:00:00+09:00": ms as local time in zone (NULL: Asia/Tokyo)
 * with its UTC offset (+00:00 in UTC, never "Z", so every zone reads
 * alike), into out[len] (26 bytes hold it). Returns out. */
const char *tz_iso8601(const char *zone, int64_t ms, char *out, size_t len);

/* 1 when the zone database has zone (a file under /usr/share/zoneinfo). */
int tz_known(const char *zone);

#endif
