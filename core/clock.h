/*
 * clock — the one source of "now" for the core and for plugins.
 *
 * Real by default. A virtual clock starts at a given instant and moves only
 * when told (tests, demos): "three days later at 10:00" then runs in
 * milliseconds instead of days. Waiters on the clock (the bus's retry
 * backoff) are woken when it moves.
 *
 * Thread: every function may be called from any thread.
 */
#ifndef KIZUNA_CORE_CLOCK_H
#define KIZUNA_CORE_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch. */
int64_t clock_now_ms(void);
/* Switches to a virtual clock standing at start_ms. */
void clock_use_virtual(int64_t start_ms);
void clock_use_real(void);
int clock_is_virtual(void);
/* Moves the virtual clock forward (no-op on the real clock). */
void clock_advance_ms(int64_t delta_ms);
/* Moves the virtual clock forward to ms; never backwards (a clock already
 * at or past ms stays). Returns 1 when it moved, 0 otherwise (also on the
 * real clock). Wakes the listener like clock_advance_ms. */
int clock_advance_to_ms(int64_t ms);

/* Called after every move of the virtual clock (the bus uses it to wake its
 * workers). One listener; NULL removes it. */
void clock_on_advance(void (*fn)(void *arg), void *arg);

/* "1500ms", "90s", "15m", "2h", "1d", "1w", combinations like "1h30m";
 * a bare number means seconds. KZ_EINVAL on anything else or overflow. */
int clock_parse_duration(const char *text, int64_t *ms);
/* "2026-11-23T10:00:00Z", "2026-11-23T10:00:00+09:00", "2026-11-23 10:00"
 * (UTC when no offset). KZ_EINVAL otherwise. */
int clock_parse_time(const char *text, int64_t *ms);

#endif
