/*
 * scenario — the step plugin's configuration: scenarios, their steps, the
 * delivery window and the payload conditions, read and checked once in
 * shop_open (every error through kz_setting_error, with the line, so
 * `kizuna check` shows it), then read-only while handlers run.
 *
 * Ownership: a scenario_set and everything in it belong to the instance;
 * scenario_set_free releases them (segments through kz_segment_free).
 * Thread: load and free in shop_open / shop_close; the rest from handlers.
 */
#ifndef KIZUNA_PLUGINS_STEP_SCENARIO_H
#define KIZUNA_PLUGINS_STEP_SCENARIO_H

#include <stddef.h>
#include <stdint.h>

#include <kizuna/plugin.h>

#include "../common/msgset.h"

#define STEP_NAME_MAX 40 /* scenario and step names: [A-Za-z0-9_-], 1..40 bytes */

enum { REENTRY_ONCE, REENTRY_RESTART, REENTRY_PARALLEL };
enum { COND_EQ, COND_NE, COND_LT, COND_LE, COND_GT, COND_GE, COND_CONTAINS, COND_EXISTS };
enum { CLICK_ANY = -1, CLICK_NO = 0, CLICK_YES = 1 };

/* One condition on the trigger event's payload: the value at path (dots
 * between members; an array on the way matches when any element does). */
typedef struct cond {
    char *path;
    int op;        /* COND_* */
    int is_number; /* the expected value is a number (else a string or bool) */
    double number;
    char *text; /* string value; "true"/"false" for a bool */
    int is_bool;
} cond;

typedef struct step {
    char name[STEP_NAME_MAX + 1];
    int64_t after_ms;
    int at_min;          /* minutes after local midnight; -1: no time of day */
    kz_segment *segment; /* NULL: every friend */
    int clicked;         /* CLICK_*: the previous sent step's link */
    msgset messages;
    taglist tags;    /* added when the step is sent */
    int goto_index;  /* -1: the next step; nsteps: the end */
    int promotional; /* the scenario's unless the step says otherwise */
} step;

typedef struct window {
    int on;               /* 0: any time */
    int days;             /* bit 0 Sunday … bit 6 Saturday */
    int from_min, to_min; /* [from, to) in local minutes, from < to */
} window;

typedef struct scenario {
    char name[STEP_NAME_MAX + 1];
    char **triggers; /* topic patterns: "exact" or "prefix.*" */
    size_t ntriggers;
    char **stop_on;
    size_t nstop;
    kz_segment *segment;
    cond *when;
    size_t nwhen;
    int reentry; /* REENTRY_* */
    window win;
    int64_t daily_cap; /* 0: none */
    int promotional;   /* steps go through the shop's delivery policy */
    int priority;
    int over_cap; /* KZ_OVER_CAP_DEFER or KZ_OVER_CAP_DROP */
    taglist tags; /* added when the scenario completes */
    /* keep_finished: an entry's records (e:, s:, c:) go this long after it
     * ends (step.prune timer); 0: kept for good */
    int64_t keep_ms;
    step *steps;
    size_t nsteps;
} scenario;

typedef struct scenario_set {
    scenario *v;
    size_t n;
} scenario_set;

/* Reads setting `scenarios` of the plugin's group into *out. 0, or an
 * error code with err filled in (KZ_EINVAL for a bad setting). */
int scenario_set_load(kz_shop *shop, const kz_setting *group, scenario_set *out, char *err,
                      size_t errlen);
void scenario_set_free(scenario_set *s);

const scenario *scenario_find(const scenario_set *s, const char *name);
/* Index of step `name` in sc, or -1. */
int scenario_step_index(const scenario *sc, const char *name);

/* 1 when topic matches a pattern of the list ("exact", "prefix.*", "*"). */
int topic_in(char *const *patterns, size_t n, const char *topic);

/* 1 when every condition holds for the JSON payload. */
int conds_hold(const cond *c, size_t n, const char *payload);

#endif
