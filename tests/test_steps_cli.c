/*
 * `kizuna steps` end to end: the step plugin as built (step.so from the
 * build's plugin dir) runs in the real host (bus, durable timers) on a
 * virtual clock that the test moves day by day; events are published as
 * `kizuna publish` stores them. Then the real kizuna binary reports what the
 * plugin wrote, as text and as JSON, per step and for one user, and after a
 * config edit that removed a step. The daily cap's "today" depends on the
 * reader's clock, so that part runs in-process with the virtual now.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <json-c/json.h>

#include "bus.h"
#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "stepcli.h"
#include "store.h"
#include "support.h"

#define U1 "U1111111111111111111111111111111a"
#define U2 "U2222222222222222222222222222222b"
#define U3 "U3333333333333333333333333333333c"
#define U4 "U4444444444444444444444444444444d"

#define MIN (60 * 1000LL)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
/* Monday 2026-11-23 10:00 in Tokyo */
#define T0 1795395600000LL

typedef struct env {
    char dir[64], conf[128], edited[128];
    app a;
    bus *b;
    char out[16384], err[4096];
} env;

#define TEXT(t) "messages = ( { text = \"" t "\"; } );"

static const char welcome[] =
    "{ name = \"welcome\"; trigger = \"line.follow\"; stop_on = \"line.unfollow\";\n"
    "  steps = ( { name = \"hello\"; " TEXT(
        "hi") " },\n"
              "    { name = \"day1\"; after = \"1d\"; at = \"10:00\"; " TEXT("day 1") " }%s ); }";
static const char day3[] = ",\n    { name = \"day3\"; after = \"2d\"; at = \"10:00\"; clicked = "
                           "true; " TEXT("day 3") " }";
static const char order[] =
    "{ name = \"order\"; trigger = [ \"ec.order.placed\", \"ec.order.paid\" ]; reentry = "
    "\"parallel\"; daily_cap = 1;\n"
    "  steps = ( { name = \"thanks\"; " TEXT(
        "thanks") " },\n"
                  "    { name = \"review\"; after = \"3d\"; at = \"10:00\"; " TEXT(
                      "review?") " } ); }";

/* The config, with day3 or (edited) without it. */
static void write_conf(const env *e, const char *path, int with_day3)
{
    char sc[2048];
    snprintf(sc, sizeof sc, welcome, with_day3 ? day3 : "");
    ts_write_file(path,
                  "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; durability = "
                  "\"normal\"; listen = \"127.0.0.1:0\"; plugin_path = \"%s\"; };\n"
                  "shops = ( { id = \"a\"; line = { channel_secret = \"s\"; access_token = \"t\";"
                  " api = \"sandbox\"; };\n"
                  "  plugins = { step = { scenarios = ( %s,\n%s ); }; }; },\n"
                  "  { id = \"b\"; } );\n",
                  e->dir, KZ_PLUGIN_DIR, sc, order);
}

static int up(void **state)
{
    env *e = calloc(1, sizeof *e);
    ts_tmpdir(e->dir, sizeof e->dir, "steps");
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    snprintf(e->edited, sizeof e->edited, "%s/edited.conf", e->dir);
    write_conf(e, e->conf, 1);
    write_conf(e, e->edited, 0);
    clock_use_virtual(T0);
    ts_app_prepare(&e->a, e->conf);
    ts_bus_new(&e->a, &e->b);
    assert_int_equal(app_open_instances(&e->a, e->b), 1);
    *state = e;
    return 0;
}

static int down(void **state)
{
    env *e = *state;
    bus_free(e->b);
    app_free(&e->a);
    ts_rmdir(e->dir);
    clock_use_real();
    free(e);
    return 0;
}

/* Publishes one event now and lets the bus (and due timers) handle it. */
static void publish(env *e, const char *topic, const char *user, const char *json)
{
    char err[256];
    bus_msg m = {.shop = "a", .topic = topic, .user = user, .json = json, .len = strlen(json)};
    if (bus_publish(e->b, &m, 1, NULL, err, sizeof err) != 0)
        fail_msg("publish %s: %s", topic, err);
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
}

static void follow(env *e, const char *user)
{
    char json[256];
    snprintf(json, sizeof json,
             "{\"type\":\"follow\",\"mode\":\"active\",\"source\":{\"type\":\"user\","
             "\"userId\":\"%s\"}}",
             user);
    publish(e, "line.follow", user, json);
}

/* Moves the virtual clock to T0 + ms; the due timers fire on the way, each
 * handled at its due time. */
static void advance_to(env *e, int64_t ms)
{
    char err[256];
    clock_advance_ms(T0 + ms - clock_now_ms());
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
}

/* Runs the kizuna binary with args; its stdout lands in e->out, its stderr
 * in e->err. Returns its exit code. */
static int kizuna(env *e, const char *args)
{
    char cmd[1024], errpath[128];
    snprintf(errpath, sizeof errpath, "%s/stderr", e->dir);
    snprintf(cmd, sizeof cmd, "'%s' %s 2>'%s'", KZ_BIN, args, errpath);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(e->out, 1, sizeof e->out - 1, p);
    e->out[n] = '\0';
    int status = pclose(p);
    FILE *f = fopen(errpath, "r");
    n = f != NULL ? fread(e->err, 1, sizeof e->err - 1, f) : 0;
    e->err[n] = '\0';
    if (f != NULL)
        fclose(f);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* `kizuna steps -c CONF a ARGS`: exit code rc and exactly want on stdout. */
static void expect_steps(env *e, const char *conf, const char *args, int rc, const char *want)
{
    char line[512];
    snprintf(line, sizeof line, "steps -c '%s' a %s", conf, args);
    int got = kizuna(e, line);
    if (got != rc || strcmp(e->out, want) != 0)
        fail_msg("kizuna %s: exit %d (want %d)\n--- stdout\n%s--- want\n%s--- stderr\n%s", line,
                 got, rc, e->out, want, e->err);
}

/* The days the test plays (see each call). */
static void play_week(env *e)
{
    follow(e, U1); /* Mon 10:00: hello goes at once */
    follow(e, U2);
    follow(e, U3);
    publish(e, "ec.order.placed", U1, "{\"order\":\"o-1\"}"); /* thanks: today's 1 of 1 */
    advance_to(e, 5 * MIN);
    publish(e, "ec.order.placed", U2, "{\"order\":\"o-2\"}"); /* over the cap: queued */
}

static void play_rest(env *e)
{
    advance_to(e, HOUR);
    publish(e, "line.unfollow", U3, "{\"type\":\"unfollow\"}"); /* stops U3 at day1 */
    advance_to(e, DAY);                                         /* Tue: day1 for U1, U2 */
    publish(e, "link.clicked", U1, "{\"scenario\":\"welcome\",\"step\":\"day1\"}");
    advance_to(e, 2 * DAY); /* Wed 10:00 */
    follow(e, U4);
    advance_to(e, 3 * DAY); /* Thu: day3 for U1 (clicked), skipped for U2; day1 for U4 */
}

/* The report in-process, with "today" the virtual now. */
static const char *report(const char *conf, const char *scenario, const char *user, int json)
{
    static char buf[16384];
    cfg *c = NULL;
    diag d = {0};
    assert_int_equal(cfg_load(conf, &c, &d), 0);
    diag_free(&d);
    FILE *f = fmemopen(buf, sizeof buf, "w");
    steps_opts o = {scenario, user, json, clock_now_ms(), f};
    assert_int_equal(stepcli_report(c, "a", &o), 0);
    fclose(f);
    cfg_free(c);
    return buf;
}

static void queue_and_cap(void **state)
{
    env *e = *state;
    play_week(e);
    assert_string_equal(
        report(e->conf, "order", NULL, 0),
        "order: trigger ec.order.placed, ec.order.paid; entered 2, completed 0, "
        "stopped 0, ended 0; queued 1; sent today (2026-11-23) 1 of daily_cap 1\n"
        "  STEP                      WAITING     SENT  SKIPPED  STOPPED   FAILED\n"
        "  thanks                          1        1        0        0        0\n"
        "  review                          1        0        0        0        0\n");
    json_object *doc = json_tokener_parse(report(e->conf, "order", U2, 1));
    assert_non_null(doc);
    assert_string_equal(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE),
                        "{\"shop\":\"a\",\"timezone\":\"Asia/Tokyo\",\"user\":\"" U2 "\","
                        "\"scenarios\":[{\"name\":\"order\",\"entries\":[{\"entry\":1,"
                        "\"state\":\"queued\",\"step\":\"thanks\","
                        "\"due\":\"2026-11-23T10:05:00+09:00\",\"lastSent\":\"\","
                        "\"entered\":\"2026-11-23T10:05:00+09:00\",\"ended\":null,\"why\":\"\","
                        "\"path\":[]}]}]}");
    json_object_put(doc);
    /* the queue drains at midnight: Tuesday's cap is spent on U2 */
    advance_to(e, 14 * HOUR);
    assert_string_equal(
        report(e->conf, "order", NULL, 0),
        "order: trigger ec.order.placed, ec.order.paid; entered 2, completed 0, "
        "stopped 0, ended 0; queued 0; sent today (2026-11-24) 1 of daily_cap 1\n"
        "  STEP                      WAITING     SENT  SKIPPED  STOPPED   FAILED\n"
        "  thanks                          0        2        0        0        0\n"
        "  review                          2        0        0        0        0\n");
}

static const char week_welcome[] =
    "welcome: trigger line.follow; entered 4, completed 2, stopped 1, ended 0; queued 0\n"
    "  STEP                      WAITING     SENT  SKIPPED  STOPPED   FAILED\n"
    "  hello                           0        4        0        0        0\n"
    "  day1                            0        3        0        1        0\n"
    "  day3                            1        1        1        0        0\n";

static void counters_text_and_json(void **state)
{
    env *e = *state;
    play_week(e);
    play_rest(e);
    expect_steps(e, e->conf, "welcome", 0, week_welcome);
    /* the same numbers as JSON */
    char args[256];
    snprintf(args, sizeof args, "steps -c '%s' a welcome --json", e->conf);
    assert_int_equal(kizuna(e, args), 0);
    json_object *doc = json_tokener_parse(e->out), *sc, *steps;
    assert_non_null(doc);
    json_object_object_get_ex(doc, "scenarios", &sc);
    assert_int_equal(json_object_array_length(sc), 1);
    sc = json_object_array_get_idx(sc, 0);
    assert_int_equal(json_object_get_int(json_object_object_get(sc, "entered")), 4);
    assert_int_equal(json_object_get_int(json_object_object_get(sc, "completed")), 2);
    assert_int_equal(json_object_get_int(json_object_object_get(sc, "stopped")), 1);
    json_object_object_get_ex(sc, "steps", &steps);
    assert_string_equal(
        json_object_to_json_string_ext(json_object_array_get_idx(steps, 2), JSON_C_TO_STRING_PLAIN),
        "{\"name\":\"day3\",\"waiting\":1,\"sent\":1,\"skipped\":1,\"stopped\":0,"
        "\"failed\":0,\"removed\":false}");
    json_object_put(doc);
    /* every scenario: welcome, then order (its "today" is the reader's) */
    snprintf(args, sizeof args, "steps -c '%s' a", e->conf);
    assert_int_equal(kizuna(e, args), 0);
    assert_true(strncmp(e->out, week_welcome, strlen(week_welcome)) == 0);
    assert_non_null(strstr(e->out, "\n\norder: trigger ec.order.placed, ec.order.paid; entered 2, "
                                   "completed 1, stopped 0, ended 0; queued 0; sent today ("));
    /* the config lost day3: its counters stay, marked removed */
    expect_steps(
        e, e->edited, "welcome", 0,
        "welcome: trigger line.follow; entered 4, completed 2, stopped 1, ended 0; "
        "queued 0\n"
        "  STEP                      WAITING     SENT  SKIPPED  STOPPED   FAILED\n"
        "  hello                           0        4        0        0        0\n"
        "  day1                            0        3        0        1        0\n"
        "  day3                            1        1        1        0        0  (removed)\n");
}

static void one_user(void **state)
{
    env *e = *state;
    play_week(e);
    play_rest(e);
    expect_steps(e, e->conf, "--user " U1, 0,
                 "welcome: user " U1 ", 1 entry\n"
                 "  #1 done 2026-11-26T10:00:00+09:00 (completed); entered "
                 "2026-11-23T10:00:00+09:00\n"
                 "     path: hello sent 2026-11-23 10:00, day1 sent 2026-11-24 10:00, day3 sent "
                 "2026-11-26 10:00\n"
                 "\n"
                 "order: user " U1 ", 1 entry\n"
                 "  #1 done 2026-11-26T10:00:00+09:00 (completed); entered "
                 "2026-11-23T10:00:00+09:00\n"
                 "     path: thanks sent 2026-11-23 10:00, review sent 2026-11-26 10:00\n");
    expect_steps(e, e->conf, "welcome --user " U2, 0,
                 "welcome: user " U2 ", 1 entry\n"
                 "  #1 done 2026-11-26T10:00:00+09:00 (completed); entered "
                 "2026-11-23T10:00:00+09:00\n"
                 "     path: hello sent 2026-11-23 10:00, day1 sent 2026-11-24 10:00, day3 "
                 "skipped 2026-11-26 10:00\n");
    expect_steps(e, e->conf, "welcome --user " U3, 0,
                 "welcome: user " U3 ", 1 entry\n"
                 "  #1 stopped 2026-11-23T11:00:00+09:00 (line.unfollow); entered "
                 "2026-11-23T10:00:00+09:00\n"
                 "     path: hello sent 2026-11-23 10:00\n");
    expect_steps(e, e->conf, "welcome --user " U4, 0,
                 "welcome: user " U4 ", 1 entry\n"
                 "  #1 waiting for day3, due 2026-11-28T10:00:00+09:00; entered "
                 "2026-11-25T10:00:00+09:00\n"
                 "     path: hello sent 2026-11-25 10:00, day1 sent 2026-11-26 10:00\n");
    expect_steps(e, e->conf, "--user Unobody", 0,
                 "welcome: user Unobody has no entries\n\norder: user Unobody has no entries\n");
}

/* Rows the plugin would not write: a broken record, a missing one (as
 * keep_finished leaves a pruned entry), a
 * counter of a step with no config, a broken path item. Shown, no crash. */
static void odd_rows(void **state)
{
    env *e = *state;
    store *st = ts_store_open(e->a.c->store_url, STORE_SYNC_NORMAL);
    int64_t inst = ts_instance(e->b, "a", "step")->id;
    const char *rows[][2] = {{"n:welcome:Ux", "3"},
                             {"e:welcome:Ux:1", "not json"},
                             {"e:welcome:Ux:3", "{\"entry\":3,\"state\":\"ended\",\"ended\":"
                                                "1795395600000,\"why\":\"step removed from the "
                                                "config\",\"path\":\"hello:sent@1795395600000,"
                                                "junk,x:y\"}"},
                             {"st:welcome:gone:sent", "7"},
                             {"st:welcome:entered", "9"}};
    char err[256];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(
            store_kv_put(st, inst, rows[i][0], rows[i][1], strlen(rows[i][1]), err, sizeof err), 0);
    store_close(st);
    expect_steps(e, e->conf, "welcome --user Ux", 0,
                 "welcome: user Ux, 3 entries\n"
                 "  #1 unreadable\n"
                 "     path: (nothing sent yet)\n"
                 "  #2 pruned (finished; its records went after keep_finished)\n"
                 "  #3 ended 2026-11-23T10:00:00+09:00 (step removed from the config)\n"
                 "     path: hello sent 2026-11-23 10:00\n");
    expect_steps(
        e, e->conf, "welcome", 0,
        "welcome: trigger line.follow; entered 9, completed 0, stopped 0, ended 0; "
        "queued 0\n"
        "  STEP                      WAITING     SENT  SKIPPED  STOPPED   FAILED\n"
        "  hello                           0        0        0        0        0\n"
        "  day1                            0        0        0        0        0\n"
        "  day3                            0        0        0        0        0\n"
        "  gone                            0        7        0        0        0  (removed)\n");
}

static void errors(void **state)
{
    env *e = *state;
    char args[512];
    expect_steps(e, e->conf, "nope", 1, "");
    assert_string_equal(e->err, "kizuna steps: shop 'a' has no scenario 'nope'; its scenarios: "
                                "welcome, order\n");
    snprintf(args, sizeof args, "steps -c '%s' b", e->conf);
    assert_int_equal(kizuna(e, args), 1);
    assert_string_equal(e->err, "kizuna steps: shop 'b' does not enable the step plugin (plugins "
                                "= { step = { scenarios = ( … ); }; })\n");
    snprintf(args, sizeof args, "steps -c '%s' zz", e->conf);
    assert_int_equal(kizuna(e, args), 1);
    assert_string_equal(e->err, "kizuna steps: no shop 'zz' in the configuration\n");
    snprintf(args, sizeof args, "steps -c '%s'", e->conf);
    assert_int_equal(kizuna(e, args), 2);
    assert_string_equal(e->err,
                        "usage: kizuna steps -c FILE SHOP [SCENARIO] [--user USER] [--json]\n");
    /* a store the plugin never ran on: zeros, and a note saying why */
    char fresh[128];
    snprintf(fresh, sizeof fresh, "%s/fresh.conf", e->dir);
    ts_write_file(fresh,
                  "kizuna: { store = \"sqlite:%s/fresh.db\"; plugin_path = \"%s\"; };\n"
                  "shops = ( { id = \"a\"; plugins = { step = { scenarios = ( { name = \"w\"; "
                  "trigger = \"line.follow\"; steps = ( { name = \"s1\"; } ); } ); }; }; } );\n",
                  e->dir, KZ_PLUGIN_DIR);
    expect_steps(e, fresh, "", 0,
                 "w: trigger line.follow; entered 0, completed 0, stopped 0, ended 0; queued 0\n"
                 "  STEP                      WAITING     SENT  SKIPPED  STOPPED   FAILED\n"
                 "  s1                              0        0        0        0        0\n");
    snprintf(args, sizeof args,
             "kizuna steps: note: the step plugin has not run for shop 'a' on sqlite:%s/fresh.db "
             "yet: every count is 0\n",
             e->dir);
    assert_string_equal(e->err, args);
    expect_steps(e, e->conf, "welcome extra", 2, "");
    expect_steps(e, e->conf, "--user a:b", 2, "");
    assert_string_equal(e->err, "kizuna steps: --user 'a:b': not a user id\n");
}

int main(void)
{
    log_set_level(KZ_LOG_ERROR + 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(queue_and_cap, up, down),
        cmocka_unit_test_setup_teardown(counters_text_and_json, up, down),
        cmocka_unit_test_setup_teardown(one_user, up, down),
        cmocka_unit_test_setup_teardown(odd_rows, up, down),
        cmocka_unit_test_setup_teardown(errors, up, down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
