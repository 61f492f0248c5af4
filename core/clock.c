#include "clock.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <kizuna/host.h>

static atomic_int virtual_on;
static atomic_llong virtual_ms;
static pthread_mutex_t listener_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*listener)(void *);
static void *listener_arg;

int64_t clock_now_ms(void)
{
    if (atomic_load(&virtual_on))
        return atomic_load(&virtual_ms);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void clock_use_virtual(int64_t start_ms)
{
    atomic_store(&virtual_ms, start_ms);
    atomic_store(&virtual_on, 1);
}

void clock_use_real(void)
{
    atomic_store(&virtual_on, 0);
}

int clock_is_virtual(void)
{
    return atomic_load(&virtual_on);
}

void clock_on_advance(void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&listener_lock);
    listener = fn;
    listener_arg = arg;
    pthread_mutex_unlock(&listener_lock);
}

static void notify(void)
{
    pthread_mutex_lock(&listener_lock);
    if (listener != NULL)
        listener(listener_arg);
    pthread_mutex_unlock(&listener_lock);
}

void clock_advance_ms(int64_t delta_ms)
{
    if (!atomic_load(&virtual_on) || delta_ms <= 0)
        return;
    atomic_fetch_add(&virtual_ms, delta_ms);
    notify();
}

/* A compare-and-swap rather than "now, then add the difference": another
 * mover between the two would make the clock overshoot ms. */
int clock_advance_to_ms(int64_t ms)
{
    if (!atomic_load(&virtual_on))
        return 0;
    long long cur = atomic_load(&virtual_ms);
    do {
        if (cur >= ms)
            return 0;
    } while (!atomic_compare_exchange_weak(&virtual_ms, &cur, (long long)ms));
    notify();
    return 1;
}

static int64_t unit_ms(const char *u, size_t len)
{
    static const struct {
        const char *name;
        int64_t ms;
    } units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                 {"h", 3600000}, {"d", 86400000}, {"w", 604800000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].name) == len && strncmp(units[i].name, u, len) == 0)
            return units[i].ms;
    return 0;
}

int clock_parse_duration(const char *text, int64_t *ms)
{
    const char *p = text;
    int64_t total = 0;
    if (p == NULL || *p == '\0')
        return KZ_EINVAL;
    if (strspn(text, "0123456789") == strlen(text)) {
        char with_unit[32];
        if (strlen(text) > 18)
            return KZ_EINVAL;
        snprintf(with_unit, sizeof with_unit, "%ss", text);
        return clock_parse_duration(with_unit, ms);
    }
    while (*p != '\0') {
        if (!isdigit((unsigned char)*p))
            return KZ_EINVAL;
        int64_t n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n > (INT64_MAX - 9) / 10)
                return KZ_EINVAL;
            n = n * 10 + (*p++ - '0');
        }
        const char *u = p;
        while (isalpha((unsigned char)*p))
            p++;
        int64_t mult = unit_ms(u, (size_t)(p - u));
        if (mult == 0 || (n != 0 && n > INT64_MAX / mult) || total > INT64_MAX - n * mult)
            return KZ_EINVAL;
        total += n * mult;
    }
    *ms = total;
    return 0;
}

int clock_parse_time(const char *text, int64_t *ms)
{
    int y, mo, d, h = 0, mi = 0, s = 0, consumed = 0;
    char sep;
    if (sscanf(text, "%4d-%2d-%2d%c%2d:%2d%n", &y, &mo, &d, &sep, &h, &mi, &consumed) != 6 ||
        (sep != 'T' && sep != ' '))
        return KZ_EINVAL;
    const char *p = text + consumed;
    if (*p == ':') {
        int n = 0;
        if (sscanf(p, ":%2d%n", &s, &n) != 1)
            return KZ_EINVAL;
        p += n;
    }
    if (*p == '.') /* fractional seconds are ignored */
        for (p++; isdigit((unsigned char)*p); p++)
            ;
    int offset_min = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, n = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2)
            return KZ_EINVAL;
        offset_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 1 + n;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return KZ_EINVAL;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    time_t t = timegm(&tm);
    *ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000;
    return 0;
}
