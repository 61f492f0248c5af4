/*
 * Crash test of the sender: "SIGKILL the daemon while the sandbox is slow to
 * answer sends, restart, and the sandbox shows exactly one delivery per
 * outbox row".
 *
 * The parent runs the sandbox in-process (latency 300 ms, its own store) and
 * queues N push rows, each to its own user. The "daemon" is this program
 * re-executed as a child (`test_sender_crash child CONF BASE`) running a bus
 * and the sender on kizuna's store. The parent SIGKILLs it while requests
 * are in flight (the sandbox delivers them after the child is gone),
 * restarts it, waits until every row is SENT, and checks each user's inbox
 * holds exactly one message; the resent rows were answered 409 with the
 * accepted request id.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "sandbox.h"
#include "sender.h"
#include "store.h"
#include "support.h"

#define ROWS 24

static char self_path[512];

/* ---- the child: bus + sender until SIGTERM -------------------------------- */

static int child_main(const char *conf, const char *base)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    app a = {0};
    if (app_prepare(&a, conf, 0) > 0) {
        diag_print(&a.d, stderr);
        return 1;
    }
    char err[512];
    bus *b = NULL;
    bus_options bo = app_bus_options(a.c);
    if (bus_new(&bo, &b, err, sizeof err) != 0 || bus_add_shop(b, "a") != 0 ||
        bus_start(b, err, sizeof err) != 0) {
        fprintf(stderr, "child: bus: %s\n", err);
        return 1;
    }
    sender_options o = {.store_url = a.c->store_url,
                        .sync_mode = a.c->sync_mode,
                        .c = a.c,
                        .sandbox_base = base,
                        .b = b,
                        .max_in_flight = 4,
                        .timeout_ms = 5000,
                        .retry_initial_ms = 20,
                        .retry_max_ms = 100,
                        .poll_ms = 20};
    sender *s = NULL;
    if (sender_start(&o, &s, err, sizeof err) != 0) {
        fprintf(stderr, "child: sender: %s\n", err);
        return 1;
    }
    int sig;
    sigwait(&set, &sig);
    sender_stop(s);
    bus_free(b);
    app_free(&a);
    curl_global_cleanup();
    return 0;
}

/* ---- the parent ------------------------------------------------------------- */

static pid_t spawn(const char *conf, const char *base)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(self_path, self_path, "child", conf, base, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void user_of(int i, char out[34])
{
    snprintf(out, 34, "U%032x", 0xabc000 + i);
}

typedef struct counts {
    int sent, pending, other, conflict;
} counts;

static counts count_rows(store *st, const int64_t *ids)
{
    counts c = {0};
    for (int i = 0; i < ROWS; i++) {
        store_outbox r;
        int status = 0;
        char err[256];
        assert_int_equal(store_outbox_get(st, ids[i], &r, &status, NULL, NULL, err, sizeof err), 0);
        if (r.state == OUTBOX_SENT)
            c.sent++;
        else if (r.state == OUTBOX_PENDING)
            c.pending++;
        else
            c.other++;
        c.conflict += r.state == OUTBOX_SENT && status == 409;
    }
    return c;
}

static void test_sigkill_while_sandbox_is_slow(void **state)
{
    (void)state;
    char dir[64], conf[128], sbx_url[128], base[64];
    ts_tmpdir(dir, sizeof dir, "sender-crash");
    snprintf(conf, sizeof conf, "%s/kizuna.conf", dir);
    ts_write_file(
        conf,
        "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; };\n"
        "shops = ( { id = \"a\";\n"
        "  line = { channel_secret = \"sec\"; access_token = \"tok\"; api = \"sandbox\"; };"
        " } );\n",
        dir);
    snprintf(sbx_url, sizeof sbx_url, "sqlite:%s/sandbox.db", dir);

    app a = {0};
    ts_app_prepare(&a, conf);
    char err[512];
    sandbox_options so = {.listen = "127.0.0.1:0",
                          .store_url = sbx_url,
                          .c = a.c,
                          .webhook_base = "http://127.0.0.1:1",
                          .faults = {.latency_ms = 300}};
    sandbox *sb = NULL;
    ts_sandbox_start(&so, &sb, base, sizeof base);

    store *st = NULL, *sbx = NULL;
    assert_int_equal(store_open(a.c->store_url, STORE_SYNC_FULL, &st, err, sizeof err), 0);
    assert_int_equal(store_open(sbx_url, STORE_SYNC_NORMAL, &sbx, err, sizeof err), 0);
    int64_t ids[ROWS];
    int64_t now = clock_now_ms();
    assert_int_equal(store_begin(st, err, sizeof err), 0);
    for (int i = 0; i < ROWS; i++) {
        char user[34], body[256], key[40];
        user_of(i, user);
        snprintf(body, sizeof body,
                 "{\"to\":\"%s\",\"messages\":[{\"type\":\"text\",\"text\":\"row %d\"}]}", user, i);
        snprintf(key, sizeof key, "5b3c1f9e-7d2a-4c1b-9e8f-%012x", 0x100 + i);
        store_outbox r = {.shop = "a",
                          .kind = KZ_LINE_PUSH,
                          .endpoint = "/v2/bot/message/push",
                          .body = body,
                          .retry_key = key,
                          .user = user,
                          .origin = "crash",
                          .created_ms = now,
                          .next_at_ms = now,
                          .deadline_ms = now + 3600000};
        assert_int_equal(store_outbox_add(st, &r, &ids[i], err, sizeof err), 0);
    }
    assert_int_equal(store_commit(st, err, sizeof err), 0);

    /* run, kill while sends are in flight */
    pid_t pid = spawn(conf, base);
    int64_t until = ts_mono_ms() + 20000;
    counts c;
    while ((c = count_rows(st, ids)).sent < 4 && ts_mono_ms() < until)
        ts_nap_ms(20);
    assert_true(c.sent >= 4);
    assert_true(c.sent < ROWS);
    ts_nap_ms(100); /* inside the next round */
    assert_int_equal(kill(pid, SIGKILL), 0);
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFSIGNALED(wst));
    counts at_kill = count_rows(st, ids);
    assert_true(at_kill.pending > 0);
    /* let the sandbox finish the requests of the dead process */
    ts_nap_ms(500);

    /* restart: everything ends SENT */
    pid = spawn(conf, base);
    until = ts_mono_ms() + 30000;
    while ((c = count_rows(st, ids)).sent < ROWS && c.other == 0 && ts_mono_ms() < until)
        ts_nap_ms(20);
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    assert_int_equal(c.sent, ROWS);
    assert_int_equal(c.other, 0);
    /* requests in flight at the kill were delivered by "LINE" and answered
     * 409 on the resend */
    fprintf(stderr, "sender crash: %d sent at the kill, %d resent as 409\n", at_kill.sent,
            c.conflict);
    assert_true(c.conflict >= 1);

    for (int i = 0; i < ROWS; i++) {
        char user[34];
        user_of(i, user);
        ts_inbox in;
        int n = ts_inbox_get(sbx, "a", user, &in);
        if (n != 1)
            fail_msg("row %d (%s): %d deliveries", i, user, n);
    }
    /* and one message.sent event per row */
    store_batch b = {0};
    assert_int_equal(store_events_after(st, "a", 0, 1000, &b, err, sizeof err), 0);
    int sent_events = 0;
    for (size_t i = 0; i < b.n; i++)
        sent_events += strcmp(b.ev[i].topic, "message.sent") == 0;
    store_batch_free(&b);
    assert_int_equal(sent_events, ROWS);

    store_close(st);
    store_close(sbx);
    sandbox_stop(sb);
    app_free(&a);
    ts_rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "child") == 0)
        return child_main(argv[2], argv[3]);
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0)
        return 1;
    self_path[n] = '\0';
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_while_sandbox_is_slow),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
