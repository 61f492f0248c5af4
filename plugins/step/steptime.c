#include "steptime.h"

#include <stdio.h>

#define DAY_MS (24 * 3600 * 1000LL)

/* The instant of minute `min` of the local date in lt (a DST gap moves it
 * forward, a repeated time is the earlier: the host's rule). */
static int at_minute(const kz_shop *shop, const kz_local_time *date, int min, int64_t *ms)
{
    kz_local_time t = {.year = date->year,
                       .month = date->month,
                       .day = date->day,
                       .hour = min / 60,
                       .minute = min % 60};
    return kz_local_to_ms(shop, &t, ms);
}

/* The local date `days` after the one in lt: stepping from its noon keeps
 * a 23- or 25-hour DST day from landing on the wrong date. */
static int date_plus(const kz_shop *shop, const kz_local_time *lt, int days, kz_local_time *out)
{
    int64_t noon;
    int rc = at_minute(shop, lt, 12 * 60, &noon);
    return rc != 0 ? rc : kz_local_time_of(shop, noon + days * DAY_MS, out);
}

int steptime_due(const kz_shop *shop, int64_t base, int64_t after_ms, int at_min, int64_t *due)
{
    int64_t target = base + after_ms;
    if (at_min < 0) {
        *due = target;
        return 0;
    }
    kz_local_time lt;
    int rc = kz_local_time_of(shop, target, &lt);
    if (rc == 0)
        rc = at_minute(shop, &lt, at_min, due);
    if (rc == 0 && *due < base && (rc = date_plus(shop, &lt, 1, &lt)) == 0)
        rc = at_minute(shop, &lt, at_min, due);
    return rc;
}

int steptime_window_next(const kz_shop *shop, const window *w, int64_t from, int64_t *at)
{
    *at = from;
    if (!w->on)
        return 0;
    kz_local_time today, day;
    int rc = kz_local_time_of(shop, from, &today);
    for (int d = 0; rc == 0 && d <= 7; d++) {
        int64_t open, close;
        rc = date_plus(shop, &today, d, &day);
        if (rc != 0 || !(w->days & (1 << day.weekday)))
            continue;
        rc = at_minute(shop, &day, w->from_min, &open);
        if (rc == 0 && w->to_min >= 24 * 60 && (rc = date_plus(shop, &day, 1, &day)) == 0)
            rc = at_minute(shop, &day, 0, &close);
        else if (rc == 0)
            rc = at_minute(shop, &day, w->to_min, &close);
        if (rc == 0 && from < close) {
            *at = from > open ? from : open;
            return 0;
        }
    }
    return rc != 0 ? rc : KZ_EINVAL; /* a window with no day: refused by the config */
}

int steptime_next_midnight(const kz_shop *shop, int64_t ms, int64_t *out)
{
    kz_local_time lt;
    int rc = kz_local_time_of(shop, ms, &lt);
    if (rc == 0)
        rc = date_plus(shop, &lt, 1, &lt);
    return rc != 0 ? rc : at_minute(shop, &lt, 0, out);
}

void steptime_day_key(const kz_shop *shop, int64_t ms, char *out)
{
    kz_local_time lt = {0};
    kz_local_time_of(shop, ms, &lt);
    snprintf(out, 16, "%04d%02d%02d", lt.year % 10000, lt.month % 100, lt.day % 100);
}
