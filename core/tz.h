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

/* 1 when the zone database has zone (a file under /usr/share/zoneinfo). */
int tz_known(const char *zone);

#endif
