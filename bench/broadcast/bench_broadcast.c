/*
 * bench_broadcast — a segment broadcast to N friends (default 1,000,000)
 * through the real parts in one process: the store, the bus with its
 * core.broadcast instance, the sender and the LINE sandbox (which enforces
 * LINE's multicast limit, 200 requests a second, with 429s). It measures
 * what the issue asks: the time to deliver, multicast requests per second
 * against the limit, and the 429s the sandbox answered (target: none, at
 * ≥ 95 % of the limit); and checks that every recipient got one copy.
 *
 *   bench_broadcast [--friends N] [--dir DIR] [--in-flight N]
 *
 * Without --dir it works in a new directory under /tmp and removes it at
 * the end; a --dir is left as it is, to look into.
 *
 * Friends are seeded straight into the store in one transaction, half
 * tagged "vip" and half "gold"; the broadcast's segment is
 * tag("vip") || tag("gold"), so every friend is a recipient and the segment
 * is evaluated for each. The sandbox has no monthly limit here.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "broadcastcli.h"
#include "bus.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "sandbox.h"
#include "sender.h"
#include "store.h"

#include "../common/benchdir.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int die(const char *what, const char *err)
{
    fprintf(stderr, "bench_broadcast: %s: %s\n", what, err);
    exit(1);
}

static void write_files(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/kizuna.conf", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        die("write", path);
    fprintf(f,
            "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"warn\"; durability = \"normal\"; "
            "listen = "
            "\"127.0.0.1:0\";\n  sandbox = { listen = \"127.0.0.1:0\"; store = "
            "\"sqlite:%s/sbx.db\"; }; };\n"
            "shops = ( { id = \"s\"; line = { channel_secret = \"sec\"; access_token = \"tok\";"
            " api = \"sandbox\"; }; } );\n",
            dir, dir);
    fclose(f);
    snprintf(path, sizeof path, "%s/sale.json", dir);
    f = fopen(path, "w");
    if (f == NULL)
        die("write", path);
    fputs("[{\"type\":\"text\",\"text\":\"冬のセール、今週末まで!\"}]\n", f);
    fclose(f);
}

static void seed(const char *url, long n)
{
    store *st;
    char err[512], u[40];
    if (store_open(url, STORE_SYNC_NORMAL, &st, err, sizeof err) != 0 ||
        store_begin(st, err, sizeof err) != 0)
        die("seed", err);
    for (long i = 0; i < n; i++) {
        snprintf(u, sizeof u, "U%032lx", (unsigned long)i + 1);
        if (store_friend_follow(st, "s", u, 1795000000000LL, err, sizeof err) != 0 ||
            store_friend_tag_add(st, "s", u, i % 2 == 0 ? "vip" : "gold", 0, err, sizeof err) != 0)
            die("seed", err);
    }
    if (store_commit(st, err, sizeof err) != 0)
        die("seed", err);
    store_close(st);
}

/* The sender's counter for multicast answers with this HTTP code. */
static long answers(metrics *m, const char *code)
{
    size_t len;
    char *text = metrics_render(m, &len), want[128];
    snprintf(want, sizeof want,
             "kizuna_line_requests_total{shop=\"s\",endpoint=\"multicast\",code=\"%s\"} ", code);
    const char *p = strstr(text, want);
    long v = p ? atol(p + strlen(want)) : 0;
    free(text);
    return v;
}

static int64_t pending(store *st)
{
    int64_t n = -1;
    char err[256];
    store_outbox_pending(st, &n, err, sizeof err);
    return n;
}

static int add_rows(void *arg, const char *tag, int state, int64_t rows)
{
    (void)tag;
    (void)state;
    *(int64_t *)arg += rows;
    return 0;
}

/* Multicast rows the broadcast has queued so far (any state). */
static int64_t queued(store *st)
{
    int64_t n = 0;
    char err[256];
    store_outbox_tag_states(st, "s", "broadcast:", add_rows, &n, err, sizeof err);
    return n;
}

static int count_msg(void *arg, const store_sbx_msg *m)
{
    (void)m;
    ++*(long *)arg;
    return 0;
}

int main(int argc, char **argv)
{
    long n = 1000000;
    int in_flight = 0; /* 0: the sender's default (kizuna.sender.max_in_flight) */
    char dir[256] = "";
    static const struct option opts[] = {{"friends", required_argument, 0, 'n'},
                                         {"dir", required_argument, 0, 'd'},
                                         {"in-flight", required_argument, 0, 'f'},
                                         {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;)
        if (c == 'n')
            n = atol(optarg);
        else if (c == 'f')
            in_flight = atoi(optarg);
        else if (c == 'd')
            snprintf(dir, sizeof dir, "%s", optarg);
        else
            return 2;
    int made = bench_dir_make(dir, sizeof dir, "broadcast");
    if (made < 0)
        die("mkdtemp", dir);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    write_files(dir);
    char conf[300], url[300], msg[300], err[1024], base[64];
    snprintf(conf, sizeof conf, "%s/kizuna.conf", dir);
    snprintf(url, sizeof url, "sqlite:%s/k.db", dir);
    snprintf(msg, sizeof msg, "%s/sale.json", dir);
    double t0 = now_s();
    seed(url, n);
    printf("seeded %ld friends in %.1f s\n", n, now_s() - t0);

    app a;
    if (app_prepare(&a, conf, 0) > 0)
        die("config", "refused");
    metrics *m;
    metrics_new(&m);
    bus_options bo = app_bus_options(a.c);
    bo.m = m;
    bus *b;
    if (bus_new(&bo, &b, err, sizeof err) != 0 || app_open_instances(&a, b) < 0)
        die("bus", err);
    sandbox_options so = sandbox_options_from_cfg(a.c);
    so.webhook_base = "http://127.0.0.1:1";
    sandbox *sb;
    if (sandbox_start(&so, &sb, err, sizeof err) != 0)
        die("sandbox", err);
    snprintf(base, sizeof base, "http://127.0.0.1:%u", sandbox_port(sb));
    sender_options sn = {.store_url = a.c->store_url,
                         .sync_mode = a.c->sync_mode,
                         .c = a.c,
                         .sandbox_base = base,
                         .b = b,
                         .m = m,
                         .max_in_flight = in_flight};
    sender *snd;
    if (sender_start(&sn, &snd, err, sizeof err) != 0 || bus_start(b, err, sizeof err) != 0)
        die("start", err);

    broadcast_opts bc = {.segment = "tag(\"vip\") || tag(\"gold\")",
                         .message = msg,
                         .no_wait = 1,
                         .force = 1,
                         .api_base = base};
    double t1 = now_s();
    if (broadcastcli_send(a.c, "s", &bc) != 0)
        die("broadcast", "refused");
    store *st;
    if (store_open(a.c->store_url, STORE_SYNC_NORMAL, &st, err, sizeof err) != 0)
        die("store", err);
    long want_rows = (n + 499) / 500;
    double all_queued = 0, first = 0;
    while (answers(m, "200") + answers(m, "409") < want_rows || pending(st) != 0) {
        nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL);
        if (first == 0 && answers(m, "200") > 0)
            first = now_s() - t1;
        if (all_queued == 0 && queued(st) >= want_rows)
            all_queued = now_s() - t1;
        if (now_s() - t1 > 600)
            die("broadcast", "not done after 10 minutes");
    }
    double secs = now_s() - t1;
    long ok = answers(m, "200"), limited = answers(m, "429");

    store *sbx;
    long got = 0;
    if (store_open(so.store_url, STORE_SYNC_NORMAL, &sbx, err, sizeof err) != 0)
        die("sandbox store", err);
    for (long i = 0; i<n; i += n / 10> 0 ? n / 10 : 1) { /* a sample of users */
        char u[40];
        snprintf(u, sizeof u, "U%032lx", (unsigned long)i + 1);
        long before = got;
        store_sbx_inbox(sbx, "s", u, count_msg, &got, err, sizeof err);
        if (got - before != 1)
            die("check", u);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("recipients     %ld (every friend, through a segment)\n", n);
    printf("multicasts     %ld of 500, %ld answered 200\n", want_rows, ok);
    printf("time           %.1f s from request to the last answer (all rows queued after %.1f s)\n",
           secs, all_queued);
    double rate = secs > first ? (double)(ok - 1) / (secs - first) : 0;
    printf("requests/s     %.1f from the first answer to the last (LINE's multicast limit: "
           "200/s; %.0f %%); %.1f over the whole time\n",
           rate, rate / 2.0, (double)ok / secs);
    printf("429s           %ld\n", limited);
    printf("peak RSS       %ld MiB\n", ru.ru_maxrss / 1024);
    printf("check          sampled inboxes: one copy each\n");
    store_close(sbx);
    store_close(st);
    sender_stop(snd);
    sandbox_stop(sb);
    bus_free(b);
    metrics_free(m);
    app_free(&a);
    curl_global_cleanup();
    bench_dir_done(dir, made);
    return limited == 0 ? 0 : 1;
}
