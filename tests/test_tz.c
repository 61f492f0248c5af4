/* core/tz: local time of an instant and the instant of a local time, in
 * zones with and without DST, and the fake host's copy of the same rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "tz.h"

/* 2026-11-23T01:00:00Z etc. as ms. */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
    kz_local_time lt = {.year = y, .month = mo, .day = d, .hour = h, .minute = mi};
    int64_t ms = 0;
    assert_int_equal(tz_to_ms("UTC", &lt, &ms), 0);
    return ms;
}

static int64_t local(const char *zone, int y, int mo, int d, int h, int mi)
{
    kz_local_time lt = {.year = y, .month = mo, .day = d, .hour = h, .minute = mi};
    int64_t ms = 0;
    assert_int_equal(tz_to_ms(zone, &lt, &ms), 0);
    return ms;
}

static void tokyo_round_trip(void **state)
{
    (void)state;
    assert_int_equal(utc(1970, 1, 1, 0, 0), 0);
    int64_t ms = local("Asia/Tokyo", 2026, 11, 23, 10, 0);
    assert_int_equal(ms, utc(2026, 11, 23, 1, 0));
    kz_local_time lt;
    assert_int_equal(tz_local("Asia/Tokyo", ms, &lt), 0);
    assert_int_equal(lt.hour, 10);
    assert_int_equal(lt.day, 23);
    assert_int_equal(lt.weekday, 1); /* a Monday */
    assert_int_equal(lt.utc_offset_s, 9 * 3600);
    /* NULL zone is Tokyo */
    assert_int_equal(local(NULL, 2026, 11, 23, 10, 0), ms);
}

static void new_york_dst(void **state)
{
    (void)state;
    const char *ny = "America/New_York";
    /* EST in winter, EDT in summer */
    assert_int_equal(local(ny, 2026, 1, 15, 10, 0), utc(2026, 1, 15, 15, 0));
    assert_int_equal(local(ny, 2026, 7, 15, 10, 0), utc(2026, 7, 15, 14, 0));
    /* 10:00 on the days DST starts (Mar 8) and ends (Nov 1) is 10:00 */
    assert_int_equal(local(ny, 2026, 3, 8, 10, 0), utc(2026, 3, 8, 14, 0));
    assert_int_equal(local(ny, 2026, 11, 1, 10, 0), utc(2026, 11, 1, 15, 0));
    /* 02:30 on Mar 8 does not exist: forward by the gap, 03:30 EDT */
    int64_t gap = local(ny, 2026, 3, 8, 2, 30);
    assert_int_equal(gap, utc(2026, 3, 8, 7, 30));
    kz_local_time lt;
    assert_int_equal(tz_local(ny, gap, &lt), 0);
    assert_int_equal(lt.hour, 3);
    assert_int_equal(lt.minute, 30);
    /* 01:30 on Nov 1 happens twice: the earlier, EDT */
    assert_int_equal(local(ny, 2026, 11, 1, 1, 30), utc(2026, 11, 1, 5, 30));
}

static void london_and_rollover(void **state)
{
    (void)state;
    /* Europe/London: 01:30 on Mar 29 2026 is in the gap, becomes 02:30 BST */
    assert_int_equal(local("Europe/London", 2026, 3, 29, 1, 30), utc(2026, 3, 29, 1, 30));
    /* 01:30 on Oct 25 2026 happens twice: the earlier is BST (00:30 UTC) */
    assert_int_equal(local("Europe/London", 2026, 10, 25, 1, 30), utc(2026, 10, 25, 0, 30));
    /* April 31 is May 1; Feb 29 of a non-leap year is Mar 1 */
    assert_int_equal(local("Asia/Tokyo", 2026, 4, 31, 0, 0), local("Asia/Tokyo", 2026, 5, 1, 0, 0));
    assert_int_equal(local("UTC", 2027, 2, 29, 0, 0), utc(2027, 3, 1, 0, 0));
    /* before 1970 */
    assert_int_equal(utc(1969, 12, 31, 23, 0), -3600 * 1000);
}

/* The report format: local time with its offset, west of UTC too, and
 * half-hour zones. */
static void iso8601(void **state)
{
    (void)state;
    char buf[32];
    int64_t ms = utc(2026, 11, 23, 1, 0);
    assert_string_equal(tz_iso8601("Asia/Tokyo", ms, buf, sizeof buf), "2026-11-23T10:00:00+09:00");
    assert_string_equal(tz_iso8601(NULL, ms, buf, sizeof buf), "2026-11-23T10:00:00+09:00");
    assert_string_equal(tz_iso8601("UTC", ms, buf, sizeof buf), "2026-11-23T01:00:00+00:00");
    assert_string_equal(tz_iso8601("America/New_York", ms, buf, sizeof buf),
                        "2026-11-22T20:00:00-05:00");
    assert_string_equal(tz_iso8601("America/St_Johns", ms, buf, sizeof buf),
                        "2026-11-22T21:30:00-03:30");
    assert_string_equal(tz_iso8601("Asia/Kolkata", ms, buf, sizeof buf),
                        "2026-11-23T06:30:00+05:30");
}

static void bad_fields(void **state)
{
    (void)state;
    int64_t ms = 0;
    kz_local_time ok = {.year = 2026, .month = 1, .day = 1};
    assert_int_equal(tz_to_ms("UTC", NULL, &ms), KZ_EINVAL);
    assert_int_equal(tz_to_ms("UTC", &ok, NULL), KZ_EINVAL);
    assert_true(tz_fields_ok(&ok));
    kz_local_time bad[] = {
        {.year = 2026, .month = 0, .day = 1},
        {.year = 2026, .month = 13, .day = 1},
        {.year = 2026, .month = 1, .day = 0},
        {.year = 2026, .month = 1, .day = 32},
        {.year = 2026, .month = 1, .day = 1, .hour = 24},
        {.year = 2026, .month = 1, .day = 1, .minute = 60},
        {.year = 2026, .month = 1, .day = 1, .second = -1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(tz_fields_ok(&bad[i])); /* the ABI slot refuses them */
    /* the core's own callers step by adding: every field rolls over */
    assert_int_equal(local("UTC", 2026, 1, 32, 0, 0), utc(2026, 2, 1, 0, 0));
    assert_int_equal(local("UTC", 2026, 13, 1, 0, 0), utc(2027, 1, 1, 0, 0));
    assert_int_equal(local("Asia/Tokyo", 2026, 11, 23, 24, 0),
                     local("Asia/Tokyo", 2026, 11, 24, 0, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tokyo_round_trip),    cmocka_unit_test(new_york_dst),
        cmocka_unit_test(london_and_rollover), cmocka_unit_test(iso8601),
        cmocka_unit_test(bad_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
