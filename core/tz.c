#include "tz.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ZONEINFO "/usr/share/zoneinfo/"

static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;

/* Floor division: ms before 1970 still land in the right second. */
static time_t seconds_of(int64_t ms)
{
    int64_t s = ms / 1000;
    return (time_t)(ms % 1000 < 0 ? s - 1 : s);
}

/* The zone TZ was last set to, under tz_lock: setting TZ makes the next
 * tzset() read and parse the zone file again, which costs more than the
 * conversion itself, so TZ stays at the last zone used (nothing else in
 * the process reads local time) and changes only with the zone. */
static char current[256];

int tz_local(const char *zone, int64_t ms, kz_local_time *out)
{
    if (out == NULL)
        return KZ_EINVAL;
    const char *z = zone != NULL ? zone : "Asia/Tokyo";
    time_t t = seconds_of(ms);
    struct tm tm;
    pthread_mutex_lock(&tz_lock);
    if (strcmp(current, z) != 0) {
        setenv("TZ", z, 1);
        tzset();
        snprintf(current, sizeof current, "%s", z);
    }
    localtime_r(&t, &tm);
    pthread_mutex_unlock(&tz_lock);
    *out = (kz_local_time){.year = tm.tm_year + 1900,
                           .month = tm.tm_mon + 1,
                           .day = tm.tm_mday,
                           .hour = tm.tm_hour,
                           .minute = tm.tm_min,
                           .second = tm.tm_sec,
                           .weekday = tm.tm_wday,
                           .utc_offset_s = (int)tm.tm_gmtoff};
    return 0;
}

const char *tz_iso8601(const char *zone, int64_t ms, char *out, size_t len)
{
    kz_local_time lt;
    tz_local(zone, ms, &lt);
    int off = lt.utc_offset_s < 0 ? -lt.utc_offset_s : lt.utc_offset_s;
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", lt.year, lt.month, lt.day,
             lt.hour, lt.minute, lt.second, lt.utc_offset_s < 0 ? '-' : '+', off / 3600,
             off / 60 % 60);
    return out;
}

int tz_fields_ok(const kz_local_time *lt)
{
    return lt != NULL && lt->month >= 1 && lt->month <= 12 && lt->day >= 1 && lt->day <= 31 &&
           lt->hour >= 0 && lt->hour <= 23 && lt->minute >= 0 && lt->minute <= 59 &&
           lt->second >= 0 && lt->second <= 59 && lt->year >= 1 && lt->year <= 9999;
}

int tz_known(const char *zone)
{
    if (zone == NULL || zone[0] == '\0' || zone[0] == '/' || strstr(zone, "..") != NULL)
        return 0;
    char path[512];
    snprintf(path, sizeof path, ZONEINFO "%s", zone);
    return access(path, R_OK) == 0;
}

/* The zone's UTC offset in seconds at instant s (seconds). */
static int64_t offset_at(const char *zone, int64_t s)
{
    kz_local_time lt;
    tz_local(zone, s * 1000, &lt);
    return lt.utc_offset_s;
}

int tz_to_ms(const char *zone, const kz_local_time *lt, int64_t *ms)
{
    if (lt == NULL || ms == NULL)
        return KZ_EINVAL;
    /* the wall time read as UTC; timegm rolls every field over (day 32 of
     * January is 1 February, hour 24 the next day's 00:00) */
    struct tm tm = {.tm_year = lt->year - 1900,
                    .tm_mon = lt->month - 1,
                    .tm_mday = lt->day,
                    .tm_hour = lt->hour,
                    .tm_min = lt->minute,
                    .tm_sec = lt->second};
    int64_t wall = (int64_t)timegm(&tm);
    /* The wall time read as UTC, minus the offset in force a day before
     * (a) or a day after (b): a candidate is right when its own offset
     * gives back the wall time. Both: the same offset, or a repeated hour
     * (take the earlier instant). Neither: a gap, where the offset before
     * it moves the time forward by the gap. */
    int64_t off_a = offset_at(zone, wall - 86400), off_b = offset_at(zone, wall + 86400);
    int64_t ca = wall - off_a, cb = wall - off_b;
    if (off_a == off_b) { /* no change near the time: the usual case, two lookups */
        *ms = ca * 1000;
        return 0;
    }
    int a_ok = offset_at(zone, ca) == off_a, b_ok = offset_at(zone, cb) == off_b;
    int64_t s;
    if (a_ok && b_ok)
        s = ca < cb ? ca : cb;
    else if (b_ok)
        s = cb;
    else
        s = ca;
    *ms = s * 1000;
    return 0;
}
