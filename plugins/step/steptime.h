/*
 * steptime — when a step is due, in the shop's time zone: "1 day later at
 * 10:00", the delivery window's next opening, the shop-local day. Built on
 * kz_local_time_of / kz_local_to_ms (ABI 1.5), so DST is the host's rule.
 *
 * Thread: handler or shop_open (any callback of the instance).
 */
#ifndef KIZUNA_PLUGINS_STEP_STEPTIME_H
#define KIZUNA_PLUGINS_STEP_STEPTIME_H

#include <stdint.h>

#include <kizuna/plugin.h>

#include "scenario.h"

/* base + after; with at_min >= 0, the shop-local date of that moment at
 * at_min minutes after midnight, or the next day's when that is before
 * base ("1d" at "10:00" after a follow at 23:00 is the next day's 10:00). */
int steptime_due(const kz_shop *shop, int64_t base, int64_t after_ms, int at_min, int64_t *due);

/* The earliest moment >= from inside the window (from itself when the
 * window is off or open). */
int steptime_window_next(const kz_shop *shop, const window *w, int64_t from, int64_t *at);

/* The next shop-local midnight after ms. */
int steptime_next_midnight(const kz_shop *shop, int64_t ms, int64_t *out);

/* "20261123": the shop-local date of ms (out holds 16 bytes). */
void steptime_day_key(const kz_shop *shop, int64_t ms, char *out);

#endif
