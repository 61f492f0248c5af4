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

/* The caller holds tz_lock with TZ set to the zone. */
static void local_locked(time_t t, struct tm *tm)
{
    localtime_r(&t, tm);
}

/* Runs fn with TZ set to zone under the lock, then puts TZ back. */
static void with_zone(const char *zone, void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&tz_lock);
    char *old = getenv("TZ") != NULL ? strdup(getenv("TZ")) : NULL;
    setenv("TZ", zone != NULL ? zone : "Asia/Tokyo", 1);
    tzset();
    fn(arg);
    if (old != NULL)
        setenv("TZ", old, 1);
    else
        unsetenv("TZ");
    tzset();
    pthread_mutex_unlock(&tz_lock);
    free(old);
}

typedef struct {
    time_t t;
    struct tm tm;
} local_job;

static void local_run(void *arg)
{
    local_job *j = arg;
    local_locked(j->t, &j->tm);
}

int tz_local(const char *zone, int64_t ms, kz_local_time *out)
{
    if (out == NULL)
        return KZ_EINVAL;
    local_job j = {.t = seconds_of(ms)};
    with_zone(zone, local_run, &j);
    *out = (kz_local_time){.year = j.tm.tm_year + 1900,
                           .month = j.tm.tm_mon + 1,
                           .day = j.tm.tm_mday,
                           .hour = j.tm.tm_hour,
                           .minute = j.tm.tm_min,
                           .second = j.tm.tm_sec,
                           .weekday = j.tm.tm_wday,
                           .utc_offset_s = (int)j.tm.tm_gmtoff};
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

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil): timegm() would do, but it is not in C11 or POSIX. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

typedef struct {
    int64_t wall; /* the local time read as if it were UTC, in seconds */
    int64_t t;    /* the answer, in seconds */
} utc_job;

static int64_t offset_locked(int64_t t)
{
    struct tm tm;
    local_locked((time_t)t, &tm);
    return tm.tm_gmtoff;
}

/* Offsets are at most a day away from UTC and change at most once within
 * two days, so the offsets a day either side of the wall time are the only
 * candidates. Both valid: the wall time happens twice, take the earlier.
 * Neither: it falls in a gap, and the offset from before the gap moves it
 * forward by the gap's length. */
static void utc_run(void *arg)
{
    utc_job *j = arg;
    int64_t before = j->wall - offset_locked(j->wall - 86400);
    int64_t after = j->wall - offset_locked(j->wall + 86400);
    int ok_before = before + offset_locked(before) == j->wall;
    int ok_after = after + offset_locked(after) == j->wall;
    if (ok_before && ok_after)
        j->t = before < after ? before : after;
    else if (ok_after)
        j->t = after;
    else
        j->t = before;
}

int tz_to_ms(const char *zone, const kz_local_time *lt, int64_t *ms)
{
    if (lt == NULL || ms == NULL || lt->month < 1 || lt->month > 12 || lt->day < 1 ||
        lt->day > 31 || lt->hour < 0 || lt->hour > 23 || lt->minute < 0 || lt->minute > 59 ||
        lt->second < 0 || lt->second > 59 || lt->year < 1 || lt->year > 9999)
        return KZ_EINVAL;
    utc_job j = {.wall = days_from_civil(lt->year, lt->month, lt->day) * 86400 + lt->hour * 3600 +
                         lt->minute * 60 + lt->second};
    with_zone(zone, utc_run, &j);
    *ms = j.t * 1000;
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
