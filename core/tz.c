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

/* The zone TZ was last set to, under tz_lock: setting TZ makes the next
 * tzset() read and parse the zone file again, which costs more than the
 * conversion itself, so TZ stays at the last zone used (nothing else in
 * the process reads local time) and changes only with the zone. */
static char current[256];

/* Runs fn with TZ set to zone (NULL: Asia/Tokyo) under the lock. */
static void with_zone(const char *zone, void (*fn)(void *), void *arg)
{
    const char *z = zone != NULL ? zone : "Asia/Tokyo";
    pthread_mutex_lock(&tz_lock);
    if (strcmp(current, z) != 0) {
        setenv("TZ", z, 1);
        tzset();
        snprintf(current, sizeof current, "%s", z);
    }
    fn(arg);
    pthread_mutex_unlock(&tz_lock);
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
    /* the wall time read as UTC; timegm rolls April 31 over to May 1 */
    struct tm tm = {.tm_year = lt->year - 1900,
                    .tm_mon = lt->month - 1,
                    .tm_mday = lt->day,
                    .tm_hour = lt->hour,
                    .tm_min = lt->minute,
                    .tm_sec = lt->second};
    utc_job j = {.wall = (int64_t)timegm(&tm)};
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
