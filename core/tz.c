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
