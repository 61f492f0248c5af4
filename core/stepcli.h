/*
 * stepcli — `kizuna steps`, the step plugin's report (docs/plugins.md, "step"):
 *
 *   kizuna steps -c FILE SHOP [SCENARIO] [--json]
 *   kizuna steps -c FILE SHOP [SCENARIO] --user USER [--json]
 *
 * Per scenario of the shop's step config (or the one named): the trigger(s),
 * users entered / completed / stopped / ended, the queue waiting for the
 * delivery window or the daily cap, today's sends against daily_cap, and per
 * step (config order, then steps only the counters still name, "removed")
 * users waiting, sent, skipped, stopped and failed. With --user: that user's
 * entries, each with its state, the step it waits for and when it is due
 * (or when and why it ended) and its path.
 *
 * The numbers are the step instance's key/value rows in the layout
 * plugins/step/step.c documents (st:, q:, cap:, n:, e:), read directly and
 * read-only (SQLite's WAL lets this run beside kizuna serve), like `kizuna
 * kv`: one prefix walk per scenario for the counters, a few gets per
 * scenario for the rest; never a walk over the users. The scenario and
 * step names and their order come from the config file given, which may be
 * newer than the one the running daemon read.
 *
 * Ownership: c and o are borrowed. Thread: main.
 */
#ifndef KIZUNA_CORE_STEPCLI_H
#define KIZUNA_CORE_STEPCLI_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* The step plugin's name: its instance in the store and its config group. */
#define STEPCLI_PLUGIN "step"

typedef struct steps_opts {
    const char *scenario; /* NULL: every scenario of the shop */
    const char *user;     /* NULL: the counters; else this user's entries */
    int json;             /* one JSON document instead of text */
    int64_t now_ms;       /* what "today" is for the daily cap (the CLI: clock_now_ms()) */
    FILE *out;            /* the report goes here; errors go to stderr */
} steps_opts;

/* Prints the report and returns the process exit code: 0 ok, 1 failure (no
 * such shop or scenario, no step plugin, store errors), 2 usage (a --user
 * that cannot be a user id). */
int stepcli_report(const cfg *c, const char *shop, const steps_opts *o);

#endif
