/*
 * Crash recovery of the real daemon: events are stored, `kizuna serve` is
 * killed with SIGKILL in the middle of handling them (once by a plugin that
 * kills the process inside its handler, once from outside at whatever point
 * it has reached), restarted, and every handler's effects must then exist
 * exactly once: each event counted once per instance, each event published
 * by a handler stored and handled once, nothing handled twice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "support.h"

#define EVENTS 3000 /* per shop */

static char dir[64], conf[128], lines[128], logpath[128], url[128];

static void write_files(void)
{
    ts_write_file(conf,
                  "kizuna: { listen = \"127.0.0.1:0\"; store = \"%s\"; plugin_path = \"%s\";\n"
                  "          workers = 2; batch = 50;\n"
                  "          log_level = \"warn\"; };\n"
                  "shops = (\n"
                  "  { id = \"a\"; plugins = {\n"
                  "      fx_counter = { publish = \"chain.x\"; crash_file = \"%s/crashed\";\n"
                  "                     crash_at = %d; };\n"
                  "      fx_mirror = { subscribe = [ \"chain.*\" ]; }; }; },\n"
                  "  { id = \"b\"; plugins = {\n"
                  "      fx_counter = { publish = \"chain.x\"; };\n"
                  "      fx_mirror = { subscribe = [ \"chain.*\" ]; }; }; } );\n",
                  url, KZ_BUS_FIXTURES, dir, EVENTS / 3);
    FILE *f = fopen(lines, "w");
    assert_non_null(f);
    for (int i = 0; i < EVENTS; i++)
        for (int s = 0; s < 2; s++)
            fprintf(f,
                    "{\"shop\":\"%s\",\"topic\":\"test.tick\",\"user\":\"U%d\","
                    "\"id\":\"tick-%d\",\"payload\":{\"n\":%d}}\n",
                    s ? "b" : "a", i % 7, i, i);
    fclose(f);
}

static pid_t spawn(const char *const argv[])
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int run_cli(const char *const argv[])
{
    int status;
    waitpid(spawn(argv), &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static pid_t serve(void)
{
    const char *const argv[] = {KIZUNA_BIN, "serve", "-c", conf, NULL};
    return spawn(argv);
}

/* Cursor of an instance and the shop's last event id, on a fresh connection. */
static void progress(const char *shop, const char *plugin, int64_t *cursor, int64_t *max)
{
    store *st;
    char err[256];
    int64_t id;
    assert_int_equal(store_open(url, 0, &st, err, sizeof err), 0);
    assert_int_equal(store_instance_open(st, shop, plugin, &id, cursor, err, sizeof err), 0);
    assert_int_equal(store_event_max_id(st, shop, max, err, sizeof err), 0);
    store_close(st);
}

static int caught_up(void)
{
    static const char *const shops[] = {"a", "b"}, *const plugins[] = {"fx_counter", "fx_mirror"};
    for (int s = 0; s < 2; s++)
        for (int p = 0; p < 2; p++) {
            int64_t cursor, max;
            progress(shops[s], plugins[p], &cursor, &max);
            if (cursor < max)
                return 0;
        }
    return 1;
}

static long kv(const char *shop, const char *plugin, const char *key)
{
    store *st;
    char err[256];
    int64_t id, cursor;
    void *val = NULL;
    size_t len;
    assert_int_equal(store_open(url, 0, &st, err, sizeof err), 0);
    assert_int_equal(store_instance_open(st, shop, plugin, &id, &cursor, err, sizeof err), 0);
    int rc = store_kv_get(st, id, key, &val, &len, err, sizeof err);
    long n = rc == 0 ? atol(val) : -1;
    free(val);
    store_close(st);
    return n;
}

static void dump_log(void)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "tail -n 40 %s >&2", logpath);
    if (system(cmd) != 0)
        fprintf(stderr, "(no daemon log)\n");
}

static void crash_and_recover_exactly_once(void **state)
{
    (void)state;
    ts_tmpdir(dir, sizeof dir, "crash");
    snprintf(conf, sizeof conf, "%s/kizuna.conf", dir);
    snprintf(lines, sizeof lines, "%s/events.jsonl", dir);
    snprintf(logpath, sizeof logpath, "%s/daemon.log", dir);
    snprintf(url, sizeof url, "sqlite:%s/k.db", dir);
    write_files();

    /* 1. store the events (one transaction) before any daemon runs */
    const char *const pub[] = {KIZUNA_BIN, "publish", "-c", conf, "--lines", lines, NULL};
    assert_int_equal(run_cli(pub), 0);

    /* 2. the plugin kills the daemon inside a handler, mid-transaction */
    int status;
    pid_t pid = serve();
    waitpid(pid, &status, 0);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        dump_log();
        fail_msg("daemon did not die by SIGKILL (status %d)", status);
    }
    char mark[160];
    snprintf(mark, sizeof mark, "%s/crashed", dir);
    assert_int_equal(access(mark, F_OK), 0);
    int64_t cursor, max;
    progress("a", "fx_counter", &cursor, &max);
    assert_true(cursor < max); /* work was left undone */

    /* 3. restart, SIGKILL from outside once it has made some progress */
    int64_t before = cursor;
    pid = serve();
    for (int i = 0; i < 3000 && cursor == before; i++) {
        ts_nap_ms(5);
        progress("a", "fx_counter", &cursor, &max);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);

    /* 4. restart and let it finish; stop it cleanly */
    pid = serve();
    for (int i = 0; i < 3000 && !caught_up(); i++)
        ts_nap_ms(20);
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    if (!caught_up() || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        dump_log();
        fail_msg("daemon did not finish cleanly (status %d)", status);
    }

    /* 5. every effect exactly once */
    for (int s = 0; s < 2; s++) {
        const char *shop = s ? "b" : "a";
        assert_int_equal(kv(shop, "fx_counter", "count"), EVENTS);
        assert_int_equal(kv(shop, "fx_counter", "doubles"), -1);
        /* EVENTS test.tick + EVENTS chain.x published by fx_counter */
        assert_int_equal(kv(shop, "fx_mirror", "count"), 2 * EVENTS);
        assert_int_equal(kv(shop, "fx_mirror", "doubles"), -1);
        progress(shop, "fx_mirror", &cursor, &max);
        assert_int_equal(max - cursor, 0);
    }
    ts_rmdir(dir);
}

static int count_dead(void *arg, const store_dead *d)
{
    char **err = arg;
    free(*err);
    *err = strdup(d->error);
    return 0;
}

/* A plugin that kills the process on one event must not crash-loop the
 * daemon: each death counts as a failed attempt of that handler, and after
 * retry.attempts deaths the event is parked without running it again. */
static void poison_event_is_quarantined(void **state)
{
    (void)state;
    ts_tmpdir(dir, sizeof dir, "poison");
    snprintf(conf, sizeof conf, "%s/kizuna.conf", dir);
    snprintf(logpath, sizeof logpath, "%s/daemon.log", dir);
    snprintf(url, sizeof url, "sqlite:%s/k.db", dir);
    ts_write_file(conf,
                  "kizuna: { listen = \"127.0.0.1:0\"; store = \"%s\"; plugin_path = \"%s\";\n"
                  "  log_level = \"warn\";\n"
                  "  retry = { attempts = 2; initial = \"50ms\"; max = \"100ms\"; }; };\n"
                  "shops = ( { id = \"a\"; plugins = {\n"
                  "  fx_counter = { crash_topic = \"test.poison\"; }; fx_mirror = { }; }; } );\n",
                  url, KZ_BUS_FIXTURES);
    const char *const pub1[] = {KIZUNA_BIN, "publish", "-c", conf, "a", "test.ok", NULL};
    const char *const pub2[] = {KIZUNA_BIN, "publish", "-c", conf, "a", "test.poison", NULL};
    assert_int_equal(run_cli(pub1), 0);
    assert_int_equal(run_cli(pub2), 0);
    assert_int_equal(run_cli(pub1), 0);
    int deaths = 0, finished = 0;
    for (int run = 0; run < 6 && !finished; run++) {
        pid_t pid = serve();
        int status = 0;
        for (int i = 0; i < 1000; i++) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                deaths += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
                break;
            }
            int64_t c1, c2, max;
            progress("a", "fx_counter", &c1, &max);
            progress("a", "fx_mirror", &c2, &max);
            if (c1 == max && c2 == max) {
                kill(pid, SIGTERM);
                waitpid(pid, &status, 0);
                finished = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                break;
            }
            ts_nap_ms(20);
        }
    }
    if (!finished)
        dump_log();
    assert_true(finished);
    assert_int_equal(deaths, 2);                         /* retry.attempts, not one more */
    assert_int_equal(kv("a", "fx_counter", "count"), 2); /* both test.ok */
    assert_int_equal(kv("a", "fx_mirror", "count"), 3);  /* the other plugin saw all three */
    store *st;
    char err[256], *dead_error = NULL;
    assert_int_equal(store_open(url, 0, &st, err, sizeof err), 0);
    assert_int_equal(store_dead_list(st, count_dead, &dead_error, err, sizeof err), 0);
    store_close(st);
    assert_non_null(dead_error);
    assert_string_equal(dead_error, "quarantined: the process died 2 times while this handler ran");
    free(dead_error);
    ts_rmdir(dir);
}

/* ---- sends: the daemon dies while a slow LINE is answering ---- */

#define SEND_USERS 30

/* Messages each user received, from the sandbox's own store. */
static void inbox_counts(const char *sbx_url, int counts[SEND_USERS])
{
    store *st;
    char err[256], user[40];
    static ts_inbox in;
    assert_int_equal(store_open(sbx_url, 1, &st, err, sizeof err), 0);
    for (int i = 0; i < SEND_USERS; i++) {
        snprintf(user, sizeof user, "U%032x", i + 1);
        counts[i] = ts_inbox_get(st, "a", user, &in);
    }
    store_close(st);
}

static int delivered(const int counts[SEND_USERS])
{
    int n = 0;
    for (int i = 0; i < SEND_USERS; i++)
        n += counts[i] > 0;
    return n;
}

/* The case, on the real binaries: `kizuna sandbox serve` (LINE)
 * answers every call 250 ms late; `kizuna serve` is SIGKILLed while sends
 * are in flight, then restarted; every outbox row must end up delivered
 * exactly once (a resend carries the same X-Line-Retry-Key: LINE, here the
 * sandbox, answers 409 for one it already accepted). */
static void sends_survive_sigkill_exactly_once(void **state)
{
    (void)state;
    ts_tmpdir(dir, sizeof dir, "sendcrash");
    snprintf(conf, sizeof conf, "%s/kizuna.conf", dir);
    snprintf(lines, sizeof lines, "%s/events.jsonl", dir);
    snprintf(logpath, sizeof logpath, "%s/daemon.log", dir);
    snprintf(url, sizeof url, "sqlite:%s/k.db", dir);
    char sbx_url[128];
    snprintf(sbx_url, sizeof sbx_url, "sqlite:%s/sandbox.db", dir);
    int port = 30000 + (int)(getpid() % 20000);
    ts_write_file(
        conf,
        "kizuna: { listen = \"127.0.0.1:0\"; store = \"%s\"; plugin_path = \"%s\";\n"
        "  log_level = \"warn\";\n"
        "  sandbox = { embedded = false; listen = \"127.0.0.1:%d\"; store = \"%s\";\n"
        "              faults = { latency_ms = 250; }; }; };\n"
        "shops = ( { id = \"a\";\n"
        "  line = { channel_secret = \"sec\"; access_token = \"tok\"; api = \"sandbox\"; };\n"
        "  plugins = { fx_counter = { push_text = \"hi\"; }; }; } );\n",
        url, KZ_BUS_FIXTURES, port, sbx_url);
    FILE *f = fopen(lines, "w");
    assert_non_null(f);
    for (int i = 0; i < SEND_USERS; i++)
        fprintf(f, "{\"shop\":\"a\",\"topic\":\"test.tick\",\"user\":\"U%032x\"}\n", i + 1);
    fclose(f);
    const char *const pub[] = {KIZUNA_BIN, "publish", "-c", conf, "--lines", lines, NULL};
    assert_int_equal(run_cli(pub), 0);
    const char *const sbx_argv[] = {KIZUNA_BIN, "sandbox", "serve", "-c", conf, NULL};
    pid_t sbx = spawn(sbx_argv);

    /* first run: killed once something was delivered, before all was */
    int counts[SEND_USERS], status;
    pid_t pid = serve();
    for (int i = 0; i < 1500; i++) {
        inbox_counts(sbx_url, counts);
        if (delivered(counts) > 0)
            break;
        ts_nap_ms(2);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    inbox_counts(sbx_url, counts);
    int before = delivered(counts);
    assert_true(before > 0);
    print_message("killed kizuna serve after %d of %d sends were delivered\n", before, SEND_USERS);

    /* second run: finishes the outbox */
    pid = serve();
    for (int i = 0; i < 1500 && delivered(counts) < SEND_USERS; i++) {
        ts_nap_ms(10);
        inbox_counts(sbx_url, counts);
    }
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    kill(sbx, SIGTERM);
    waitpid(sbx, NULL, 0);
    if (delivered(counts) != SEND_USERS)
        dump_log();
    for (int i = 0; i < SEND_USERS; i++)
        if (counts[i] != 1)
            fail_msg("user %d received %d copies (killed after %d of %d delivered)", i + 1,
                     counts[i], before, SEND_USERS);
    store *st;
    char err[256];
    int64_t pending = -1;
    assert_int_equal(store_open(url, 0, &st, err, sizeof err), 0);
    assert_int_equal(store_outbox_pending(st, &pending, err, sizeof err), 0);
    store_close(st);
    assert_int_equal(pending, 0);
    ts_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crash_and_recover_exactly_once),
        cmocka_unit_test(poison_event_is_quarantined),
        cmocka_unit_test(sends_survive_sigkill_exactly_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
