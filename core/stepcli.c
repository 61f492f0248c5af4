#include "stepcli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "payload.h"
#include "store.h"
#include "tz.h"

#define KEY_MAX 512

/* The counters a step and a scenario have (plugins/step/step.c). */
static const char *const step_counts[] = {"waiting", "sent", "skipped", "stopped", "failed", NULL};
static const char *const scenario_counts[] = {"entered", "completed", "stopped", "ended", NULL};

typedef struct report {
    const cfg_shop *cs;
    const steps_opts *o;
    store *st;
    int64_t inst; /* 0: the plugin never ran for the shop here (every count is 0) */
    char err[512];
} report;

static int in_list(const char *const *list, const char *s)
{
    for (; *list != NULL; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

/* ---- the config: the shop's step group ---- */

static const kz_setting *step_group(const cfg_shop *cs)
{
    for (size_t i = 0; i < cs->nplugins; i++)
        if (strcmp(cs->plugins[i].name, STEPCLI_PLUGIN) == 0)
            return cs->plugins[i].setting;
    return NULL;
}

static const char *setting_text(const kz_setting *g, const char *key)
{
    const char *v = NULL;
    const kz_setting *s = cfg_setting_child(g, key);
    return s != NULL && cfg_setting_string(s, &v) == 0 ? v : NULL;
}

/* A string or a list of strings (trigger = "a" or [ "a", "b" ]) as an array. */
static json_object *setting_texts(const kz_setting *g, const char *key)
{
    json_object *a = json_object_new_array();
    const kz_setting *s = cfg_setting_child(g, key);
    const char *v;
    if (s != NULL && cfg_setting_string(s, &v) == 0)
        json_object_array_add(a, json_object_new_string(v));
    for (size_t i = 0;
         s != NULL && cfg_setting_type(s) == KZ_SETTING_LIST && i < cfg_setting_count(s); i++)
        if (cfg_setting_string(cfg_setting_elem(s, i), &v) == 0)
            json_object_array_add(a, json_object_new_string(v));
    return a;
}

/* Scenario i of the list, NULL when it has no name (kizuna check says why). */
static const char *scenario_name(const kz_setting *list, size_t i)
{
    return setting_text(cfg_setting_elem(list, i), "name");
}

/* When o->scenario names none of the list: prints the known ones, returns 1. */
static int unknown_scenario(const report *r, const kz_setting *list)
{
    fprintf(stderr, "kizuna steps: shop '%s' has no scenario '%s'; its scenarios:", r->cs->id,
            r->o->scenario);
    for (size_t i = 0, shown = 0; i < cfg_setting_count(list); i++)
        if (scenario_name(list, i) != NULL)
            fprintf(stderr, "%s %s", shown++ > 0 ? "," : "", scenario_name(list, i));
    fputc('\n', stderr);
    return 1;
}

/* The shop's scenarios list, or NULL after printing why there is none. */
static const kz_setting *scenario_list(const report *r)
{
    const kz_setting *g = step_group(r->cs);
    if (g == NULL) {
        fprintf(stderr,
                "kizuna steps: shop '%s' does not enable the step plugin (plugins = { %s "
                "= { scenarios = ( … ); }; })\n",
                r->cs->id, STEPCLI_PLUGIN);
        return NULL;
    }
    const kz_setting *list = cfg_setting_child(g, "scenarios");
    if (list == NULL || cfg_setting_type(list) != KZ_SETTING_LIST || cfg_setting_count(list) == 0) {
        fprintf(stderr,
                "kizuna steps: shop '%s': the step plugin has no scenarios (see kizuna "
                "check)\n",
                r->cs->id);
        return NULL;
    }
    return list;
}

/* ---- the store ---- */

static int64_t decimal(const void *val, size_t len)
{
    char text[32];
    snprintf(text, sizeof text, "%.*s", (int)(len < sizeof text ? len : sizeof text - 1),
             (const char *)val);
    return strtoll(text, NULL, 10);
}

/* The value of key as malloc'd text in *out (NULL when absent). */
static int kv_text(report *r, const char *key, char **out)
{
    void *val = NULL;
    size_t len = 0;
    *out = NULL;
    if (r->inst == 0)
        return 0;
    int rc = store_kv_get(r->st, r->inst, key, &val, &len, r->err, sizeof r->err);
    if (rc == KZ_ENOTFOUND)
        return 0;
    *out = val;
    return rc;
}

/* A counter (decimal text; absent is 0). */
static int kv_count(report *r, const char *key, int64_t *n)
{
    char *text = NULL;
    int rc = kv_text(r, key, &text);
    *n = text != NULL ? strtoll(text, NULL, 10) : 0;
    free(text);
    return rc;
}

/* ---- counters ---- */

static json_object *step_row(const char *name, int removed)
{
    json_object *s = json_object_new_object();
    json_object_object_add(s, "name", json_object_new_string(name));
    for (size_t i = 0; step_counts[i] != NULL; i++)
        json_object_object_add(s, step_counts[i], json_object_new_int64(0));
    json_object_object_add(s, "removed", json_object_new_boolean(removed));
    return s;
}

/* The row of step name, appended as removed when the config lacks it. */
static json_object *step_find(json_object *steps, const char *name)
{
    for (size_t i = 0; i < json_object_array_length(steps); i++) {
        json_object *s = json_object_array_get_idx(steps, i);
        if (strcmp(payload_str(s, "name"), name) == 0)
            return s;
    }
    json_object *s = step_row(name, 1);
    json_object_array_add(steps, s);
    return s;
}

typedef struct walk {
    json_object *sc, *steps;
    size_t prefix;
} walk;

/* st:<sc>:<what> is the scenario's counter, st:<sc>:<step>:<what> a step's
 * (names have no ':'). Counters this report does not know are left out. */
static int count_one(void *arg, const char *key, const void *val, size_t len)
{
    walk *w = arg;
    const char *rest = key + w->prefix, *colon = strchr(rest, ':');
    if (colon == NULL) {
        if (in_list(scenario_counts, rest))
            json_object_object_add(w->sc, rest, json_object_new_int64(decimal(val, len)));
        return 0;
    }
    if (!in_list(step_counts, colon + 1) || colon - rest > 200)
        return 0;
    char name[201];
    snprintf(name, sizeof name, "%.*s", (int)(colon - rest), rest);
    json_object_object_add(step_find(w->steps, name), colon + 1,
                           json_object_new_int64(decimal(val, len)));
    return 0;
}

/* Today's sends against daily_cap, when the scenario has one. */
static int add_cap(report *r, const kz_setting *g, json_object *sc)
{
    int64_t cap = 0, sends = 0;
    const kz_setting *s = cfg_setting_child(g, "daily_cap");
    if (s == NULL || cfg_setting_int(s, &cap) != 0)
        return 0;
    kz_local_time lt;
    tz_local(r->cs->timezone, r->o->now_ms, &lt);
    char key[KEY_MAX], day[16];
    snprintf(key, sizeof key, "cap:%s:%04d%02d%02d", payload_str(sc, "name"), lt.year, lt.month,
             lt.day);
    snprintf(day, sizeof day, "%04d-%02d-%02d", lt.year, lt.month, lt.day);
    int rc = kv_count(r, key, &sends);
    json_object_object_add(sc, "dailyCap", json_object_new_int64(cap));
    json_object_object_add(sc, "today", json_object_new_string(day));
    json_object_object_add(sc, "sentToday", json_object_new_int64(sends));
    return rc;
}

static int add_queue(report *r, const char *name, json_object *sc)
{
    char key[KEY_MAX];
    int64_t head = 0, tail = 0;
    snprintf(key, sizeof key, "q:%s:head", name);
    int rc = kv_count(r, key, &head);
    snprintf(key, sizeof key, "q:%s:tail", name);
    if (rc == 0)
        rc = kv_count(r, key, &tail);
    json_object_object_add(sc, "queued", json_object_new_int64(tail - head));
    return rc;
}

/* One scenario's counters; NULL after an error (in r->err). */
static json_object *scenario_counters(report *r, const kz_setting *g)
{
    const char *name = setting_text(g, "name");
    json_object *sc = json_object_new_object(), *steps = json_object_new_array();
    json_object_object_add(sc, "name", json_object_new_string(name));
    json_object_object_add(sc, "triggers", setting_texts(g, "trigger"));
    for (size_t i = 0; scenario_counts[i] != NULL; i++)
        json_object_object_add(sc, scenario_counts[i], json_object_new_int64(0));
    const kz_setting *list = cfg_setting_child(g, "steps");
    for (size_t i = 0; list != NULL && i < cfg_setting_count(list); i++) {
        const char *step = setting_text(cfg_setting_elem(list, i), "name");
        if (step != NULL)
            json_object_array_add(steps, step_row(step, 0));
    }
    char prefix[KEY_MAX];
    snprintf(prefix, sizeof prefix, "st:%s:", name);
    walk w = {sc, steps, strlen(prefix)};
    int rc = r->inst != 0
                 ? store_kv_prefix(r->st, r->inst, prefix, count_one, &w, r->err, sizeof r->err)
                 : 0;
    json_object_object_add(sc, "steps", steps);
    if (rc == 0)
        rc = add_queue(r, name, sc);
    if (rc == 0)
        rc = add_cap(r, g, sc);
    if (rc != 0) {
        json_object_put(sc);
        return NULL;
    }
    return sc;
}

static void print_counters(FILE *f, json_object *sc)
{
    json_object *tr = NULL, *steps = NULL;
    json_object_object_get_ex(sc, "triggers", &tr);
    fprintf(f, "%s: trigger%s", payload_str(sc, "name"),
            json_object_array_length(tr) == 0 ? " (none)" : "");
    for (size_t i = 0; i < json_object_array_length(tr); i++)
        fprintf(f, "%s %s", i > 0 ? "," : "",
                json_object_get_string(json_object_array_get_idx(tr, i)));
    fprintf(f,
            "; entered %" PRId64 ", completed %" PRId64 ", stopped %" PRId64 ", ended %" PRId64
            "; queued %" PRId64,
            payload_int(sc, "entered"), payload_int(sc, "completed"), payload_int(sc, "stopped"),
            payload_int(sc, "ended"), payload_int(sc, "queued"));
    if (payload_str(sc, "today") != NULL)
        fprintf(f, "; sent today (%s) %" PRId64 " of daily_cap %" PRId64, payload_str(sc, "today"),
                payload_int(sc, "sentToday"), payload_int(sc, "dailyCap"));
    fprintf(f, "\n  %-24s %8s %8s %8s %8s %8s\n", "STEP", "WAITING", "SENT", "SKIPPED", "STOPPED",
            "FAILED");
    json_object_object_get_ex(sc, "steps", &steps);
    for (size_t i = 0; i < json_object_array_length(steps); i++) {
        json_object *s = json_object_array_get_idx(steps, i), *removed;
        json_object_object_get_ex(s, "removed", &removed);
        fprintf(f, "  %-24s %8" PRId64 " %8" PRId64 " %8" PRId64 " %8" PRId64 " %8" PRId64 "%s\n",
                payload_str(s, "name"), payload_int(s, "waiting"), payload_int(s, "sent"),
                payload_int(s, "skipped"), payload_int(s, "stopped"), payload_int(s, "failed"),
                json_object_get_boolean(removed) ? "  (removed)" : "");
    }
}

/* ---- one user's entries ---- */

/* "hello:sent@1795395600000,day1:skipped@…" → [{"step","what","at"}, …];
 * items that do not parse are left out. */
static json_object *path_of(const report *r, const char *path)
{
    json_object *a = json_object_new_array();
    char *copy = strdup(path != NULL ? path : ""), *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(item, ':'), *at = strrchr(item, '@'), when[40];
        if (colon == NULL || at == NULL || at < colon)
            continue;
        *colon = *at = '\0';
        json_object *o = json_object_new_object();
        json_object_object_add(o, "step", json_object_new_string(item));
        json_object_object_add(o, "what", json_object_new_string(colon + 1));
        tz_iso8601(r->cs->timezone, strtoll(at + 1, NULL, 10), when, sizeof when);
        json_object_object_add(o, "at", json_object_new_string(when));
        json_object_array_add(a, o);
    }
    free(copy);
    return a;
}

/* Adds key as an ISO 8601 time in the shop's zone (null when 0). */
static void add_time(const report *r, json_object *o, const char *key, int64_t ms)
{
    char when[40];
    json_object_object_add(
        o, key,
        ms != 0 ? json_object_new_string(tz_iso8601(r->cs->timezone, ms, when, sizeof when))
                : NULL);
}

static void add_text(json_object *o, const char *key, json_object *rec, const char *from)
{
    const char *v = payload_str(rec, from);
    json_object_object_add(o, key, json_object_new_string(v != NULL ? v : ""));
}

/* The stored entry record (text) as the report shows it. */
static json_object *entry_of(const report *r, int64_t n, const char *text)
{
    json_object *rec = text != NULL ? json_tokener_parse(text) : NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "entry", json_object_new_int64(n));
    const char *state = payload_str(rec, "state");
    json_object_object_add(o, "state",
                           json_object_new_string(state != NULL  ? state
                                                  : text != NULL ? "unreadable"
                                                                 : "pruned"));
    add_text(o, "step", rec, "step");
    add_time(r, o, "due", payload_int(rec, "due"));
    add_text(o, "lastSent", rec, "prev");
    add_time(r, o, "entered", payload_int(rec, "entered"));
    add_time(r, o, "ended", payload_int(rec, "ended"));
    add_text(o, "why", rec, "why");
    json_object_object_add(o, "path", path_of(r, payload_str(rec, "path")));
    json_object_put(rec);
    return o;
}

/* The user's entries in one scenario: n:<sc>:<user> of them, 1..n. */
static json_object *user_entries(report *r, const char *name)
{
    char key[KEY_MAX];
    int64_t n = 0;
    snprintf(key, sizeof key, "n:%s:%s", name, r->o->user);
    int rc = kv_count(r, key, &n);
    json_object *sc = json_object_new_object(), *entries = json_object_new_array();
    json_object_object_add(sc, "name", json_object_new_string(name));
    json_object_object_add(sc, "entries", entries);
    for (int64_t k = 1; rc == 0 && k <= n; k++) {
        char *text = NULL;
        snprintf(key, sizeof key, "e:%s:%s:%" PRId64, name, r->o->user, k);
        rc = kv_text(r, key, &text);
        if (rc == 0)
            json_object_array_add(entries, entry_of(r, k, text));
        free(text);
    }
    if (rc != 0) {
        json_object_put(sc);
        return NULL;
    }
    return sc;
}

/* "2026-11-23T10:00:00+09:00" → "2026-11-23 10:00" (the path's short form). */
static const char *short_time(json_object *o, const char *key, char *buf, size_t len)
{
    const char *iso = payload_str(o, key);
    snprintf(buf, len, "%.10s %.5s", iso != NULL ? iso : "?", iso != NULL ? iso + 11 : "");
    return buf;
}

static void print_state(FILE *f, json_object *e)
{
    const char *state = payload_str(e, "state");
    fprintf(f, "  #%" PRId64 " %s", payload_int(e, "entry"), state);
    if (strcmp(state, "waiting") == 0)
        fprintf(f, " for %s, due %s", payload_str(e, "step"), payload_str(e, "due"));
    else if (strcmp(state, "queued") == 0)
        fprintf(f, " for %s, due %s: waiting for the delivery window or the daily cap",
                payload_str(e, "step"), payload_str(e, "due"));
    else if (payload_str(e, "ended") != NULL)
        fprintf(f, " %s (%s)", payload_str(e, "ended"), payload_str(e, "why"));
    if (payload_str(e, "entered") != NULL)
        fprintf(f, "; entered %s", payload_str(e, "entered"));
    fputc('\n', f);
}

static void print_entries(FILE *f, const char *user, json_object *sc)
{
    json_object *entries = NULL, *path = NULL;
    json_object_object_get_ex(sc, "entries", &entries);
    size_t n = json_object_array_length(entries);
    if (n == 0) {
        fprintf(f, "%s: user %s has no entries\n", payload_str(sc, "name"), user);
        return;
    }
    fprintf(f, "%s: user %s, %zu entr%s\n", payload_str(sc, "name"), user, n, n == 1 ? "y" : "ies");
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(entries, i);
        if (strcmp(payload_str(e, "state"), "pruned") == 0) { /* keep_finished: gone */
            fprintf(f, "  #%" PRId64 " pruned (finished; its records went after keep_finished)\n",
                    payload_int(e, "entry"));
            continue;
        }
        print_state(f, e);
        json_object_object_get_ex(e, "path", &path);
        fprintf(f, "     path:%s",
                json_object_array_length(path) == 0 ? " (nothing sent yet)" : "");
        for (size_t k = 0; k < json_object_array_length(path); k++) {
            json_object *p = json_object_array_get_idx(path, k);
            char when[40];
            fprintf(f, "%s %s %s %s", k > 0 ? "," : "", payload_str(p, "step"),
                    payload_str(p, "what"), short_time(p, "at", when, sizeof when));
        }
        fputc('\n', f);
    }
}

/* ---- the report ---- */

static int open_store(const cfg *c, report *r)
{
    int64_t cursor;
    int rc = store_open(c->store_url, c->sync_mode, &r->st, r->err, sizeof r->err);
    if (rc == 0)
        rc = store_instance_find(r->st, r->cs->id, STEPCLI_PLUGIN, &r->inst, &cursor, r->err,
                                 sizeof r->err);
    if (rc == KZ_ENOTFOUND) {
        r->inst = 0;
        fprintf(stderr,
                "kizuna steps: note: the step plugin has not run for shop '%s' on %s yet: "
                "every count is 0\n",
                r->cs->id, c->store_url);
        return 0;
    }
    return rc;
}

/* Every scenario (or the one named) into doc's "scenarios", in config order. */
static int collect(report *r, const kz_setting *list, json_object *doc)
{
    json_object *all = json_object_new_array();
    json_object_object_add(doc, "scenarios", all);
    for (size_t i = 0; i < cfg_setting_count(list); i++) {
        const char *name = scenario_name(list, i);
        if (name == NULL || (r->o->scenario != NULL && strcmp(name, r->o->scenario) != 0))
            continue;
        json_object *sc = r->o->user != NULL ? user_entries(r, name)
                                             : scenario_counters(r, cfg_setting_elem(list, i));
        if (sc == NULL)
            return KZ_EIO;
        json_object_array_add(all, sc);
    }
    return 0;
}

static void print_doc(const report *r, json_object *doc)
{
    FILE *f = r->o->out;
    if (r->o->json) {
        fprintf(f, "%s\n",
                json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN |
                                                        JSON_C_TO_STRING_NOSLASHESCAPE));
        return;
    }
    json_object *all = NULL;
    json_object_object_get_ex(doc, "scenarios", &all);
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        if (i > 0)
            fputc('\n', f);
        if (r->o->user != NULL)
            print_entries(f, r->o->user, json_object_array_get_idx(all, i));
        else
            print_counters(f, json_object_array_get_idx(all, i));
    }
}

/* A user id goes into keys as it is: no ':' (the keys' separator). */
static int user_ok(const char *user)
{
    return user == NULL || (user[0] != '\0' && strlen(user) <= 128 && strchr(user, ':') == NULL);
}

static int has_scenario(const kz_setting *list, const char *name)
{
    for (size_t i = 0; name != NULL && i < cfg_setting_count(list); i++)
        if (scenario_name(list, i) != NULL && strcmp(scenario_name(list, i), name) == 0)
            return 1;
    return name == NULL;
}

int stepcli_report(const cfg *c, const char *shop, const steps_opts *o)
{
    report r = {.cs = cfg_find_shop(c, shop), .o = o};
    if (!user_ok(o->user)) {
        fprintf(stderr, "kizuna steps: --user '%s': not a user id\n", o->user);
        return 2;
    }
    if (r.cs == NULL) {
        fprintf(stderr, "kizuna steps: no shop '%s' in the configuration\n", shop);
        return 1;
    }
    const kz_setting *list = scenario_list(&r);
    if (list == NULL)
        return 1;
    if (!has_scenario(list, o->scenario))
        return unknown_scenario(&r, list);
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "shop", json_object_new_string(shop));
    json_object_object_add(doc, "timezone", json_object_new_string(r.cs->timezone));
    if (o->user != NULL)
        json_object_object_add(doc, "user", json_object_new_string(o->user));
    int rc = open_store(c, &r);
    if (rc == 0)
        rc = collect(&r, list, doc);
    if (rc == 0)
        print_doc(&r, doc);
    else
        fprintf(stderr, "kizuna steps: %s\n", r.err);
    json_object_put(doc);
    store_close(r.st);
    return rc == 0 ? 0 : 1;
}
