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

int tz_local(const char *zone, int64_t ms, kz_local_time *out)
{
    if (out == NULL)
        return KZ_EINVAL;
    time_t t = seconds_of(ms);
    struct tm tm;
    pthread_mutex_lock(&tz_lock);
    char *old = getenv("TZ") != NULL ? strdup(getenv("TZ")) : NULL;
    setenv("TZ", zone != NULL ? zone : "Asia/Tokyo", 1);
    tzset();
    localtime_r(&t, &tm);
    if (old != NULL)
        setenv("TZ", old, 1);
    else
        unsetenv("TZ");
    tzset();
    pthread_mutex_unlock(&tz_lock);
    free(old);
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

int tz_known(const char *zone)
{
    if (zone == NULL || zone[0] == '\0' || zone[0] == '/' || strstr(zone, "..") != NULL)
        return 0;
    char path[512];
    snprintf(path, sizeof path, ZONEINFO "%s", zone);
    return access(path, R_OK) == 0;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (month
 * 1..12; H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
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
    /* months roll over into years; everything else is plain arithmetic */
    int64_t m0 = (int64_t)lt->month - 1;
    int64_t y = lt->year + (m0 >= 0 ? m0 / 12 : (m0 - 11) / 12);
    m0 -= (y - lt->year) * 12;
    int64_t wall = days_from_civil(y, m0 + 1, 1) * 86400 + ((int64_t)lt->day - 1) * 86400 +
                   (int64_t)lt->hour * 3600 + (int64_t)lt->minute * 60 + lt->second;
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
