/*
 * tz — a moment in a shop's time zone (IANA names such as "Asia/Tokyo",
 * from the system's zone database, DST included).
 *
 * glibc converts in one process-wide zone (TZ), so conversions take a lock,
 * point TZ at the zone, convert and put TZ back. Nothing else in kizuna may
 * call localtime()/mktime(): they would see another zone mid-conversion
 * (plugins get kz_local_time through the host table for the same reason).
 *
 * Ownership: nothing kept. Thread: any.
 */
#ifndef KIZUNA_CORE_TZ_H
#define KIZUNA_CORE_TZ_H

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

/* 1 when the zone database has zone (a file under /usr/share/zoneinfo). */
int tz_known(const char *zone);

#endif
