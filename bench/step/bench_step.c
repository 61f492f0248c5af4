/*
 * bench_step — step delivery at scale: N friends (default 1,000,000)
 * enrolled in a 5-step scenario of the step plugin (the .so as built), in
 * the real bus on SQLite, on the virtual clock. It measures what issue 6
 * asks:
 *
 *   enroll      trigger events published in chunks and handled (entry,
 *               counters, the first step's durable timer), events/s;
 *   overhead    with N timers pending, the clock moved so that 1 % are due:
 *               time to fire and handle them (the pump reads due rows
 *               only), compared with the same per-step cost when all fire;
 *   fire        every friend's first step due at once: steps/s from the
 *               timer to the push in the outbox (and the next step's timer);
 *   memory      anonymous resident memory, sampled while the bus works
 *               (run with --friends 100000 and 1000000: it should not grow
 *               with N; peak RSS also counts the mapped database file).
 *
 *   bench_step [--friends N] [--dir DIR] [--chunk C] [--bulk B] [--batch E] [--personal]
 *
 * Without --dir it works in a new directory under /tmp and removes it at
 * the end; a --dir is left as it is, to look into.
 *
 * --bulk B enrolls through step.enroll events of B users each (one handler
 * call and transaction per B users) instead of one trigger event a friend.
 * --batch E sets kizuna.batch (default 256, the daemon's). --personal makes
 * the first step's text differ per friend ("one {{user}}"), so every send's
 * messages are checked and rendered anew (a campaign text is checked once).
 *
 * No sender runs: pushes stay in the outbox, which is what is counted.
 * The first 1 % enroll 100 minutes of virtual time before the rest, so
 * their first steps fall due alone.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "store.h"

#include "../common/benchdir.h"
#include "../common/procmem.h"

#define MINUTE (60 * 1000LL)
#define DAY (24 * 60 * MINUTE)
#define T0 1795359600000LL /* Monday 2026-11-23 00:00 in Tokyo */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_step: %s: %s\n", what, err);
    exit(1);
}

static void write_conf(const char *dir, int batch, int personal, char *conf, size_t len)
{
    snprintf(conf, len, "%s/kizuna.conf", dir);
    FILE *f = fopen(conf, "w");
    if (f == NULL)
        die("write", conf);
    fprintf(
        f,
        "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"warn\"; durability = \"normal\";"
        " batch = %d; plugin_path = \"%s\"; };\n"
        "shops = ( { id = \"s\"; line = { channel_secret = \"sec\"; access_token = \"tok\";"
        " api = \"sandbox\"; };\n"
        "  plugins = { step = { scenarios = ( { name = \"bench\"; trigger = \"bench.enroll\";\n"
        "    stop_on = [ \"bench.stop\" ];\n"
        "    steps = ( { name = \"s1\"; after = \"1d\"; messages = ( { text = \"one%s\"; } ); },\n"
        "      { name = \"s2\"; after = \"1d\"; at = \"10:00\"; messages = ( { text = \"two\"; } "
        "); },\n"
        "      { name = \"s3\"; after = \"2d\"; at = \"10:00\"; messages = ( { text = \"three\"; } "
        "); },\n"
        "      { name = \"s4\"; after = \"3d\"; at = \"19:00\"; messages = ( { text = \"four\"; } "
        "); },\n"
        "      { name = \"s5\"; after = \"7d\"; at = \"10:00\"; messages = ( { text = \"five\"; } "
        "); }"
        " ); } ); }; }; } );\n",
        dir, batch, BENCH_PLUGIN_DIR, personal ? " {{user}}" : "");
    fclose(f);
}

typedef struct run {
    app a;
    bus *b;
    store *st;
    int64_t inst;
    long anon_peak; /* MiB, sampled while waiting */
} run;

static int64_t counter(run *r, const char *key)
{
    char err[256];
    void *v = NULL;
    size_t len;
    int64_t n = 0;
    if (store_kv_get(r->st, r->inst, key, &v, &len, err, sizeof err) == 0)
        n = strtoll(v, NULL, 10);
    free(v);
    return n;
}

static int64_t outbox(run *r)
{
    int64_t n = -1;
    char err[256];
    if (store_outbox_pending(r->st, &n, err, sizeof err) != 0)
        die("outbox", err);
    return n;
}

/* Waits until counter key reaches want; returns the seconds it took. */
static double wait_for(run *r, const char *key, int64_t want, double t0)
{
    while (counter(r, key) < want) {
        long anon = proc_anon_mib();
        if (anon > r->anon_peak)
            r->anon_peak = anon;
        nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
        if (now_s() - t0 > 1800)
            die(key, "not reached after 30 minutes");
    }
    return now_s() - t0;
}

static int count_timer(void *arg, const store_timer *t)
{
    (void)t;
    ++*(long *)arg;
    return 0;
}

/* Timers due by at (a check of the 1 % phase: it reports what was due). */
static long due_by(run *r, int64_t at)
{
    long n = 0;
    char err[256];
    if (store_timer_due(r->st, at, INT32_MAX, count_timer, &n, err, sizeof err) != 0)
        die("timers", err);
    return n;
}

/* Publishes users [from, to) as enroll events, chunk at a time (bulk > 0:
 * step.enroll events of up to bulk users each). */
static void publish_users(run *r, long from, long to, int chunk, int bulk)
{
    bus_msg *m = calloc((size_t)chunk, sizeof *m);
    char(*users)[40] = calloc((size_t)chunk, 40);
    char *bodies = bulk > 0 ? malloc((size_t)chunk * ((size_t)bulk * 36 + 64)) : NULL;
    char err[512];
    for (long i = from; i < to;) {
        size_t k = 0;
        for (; k < (size_t)chunk && i < to; k++) {
            if (bulk <= 0) {
                snprintf(users[k], 40, "U%032lx", (unsigned long)i + 1);
                m[k] = (bus_msg){.shop = "s", .topic = "bench.enroll", .user = users[k]};
                i++;
                continue;
            }
            char *b = bodies + k * ((size_t)bulk * 36 + 64), *p = b;
            p += sprintf(p, "{\"scenario\":\"bench\",\"users\":[");
            for (int u = 0; u < bulk && i < to; u++, i++)
                p += sprintf(p, "%s\"U%032lx\"", u ? "," : "", (unsigned long)i + 1);
            p += sprintf(p, "]}");
            m[k] =
                (bus_msg){.shop = "s", .topic = "step.enroll", .json = b, .len = (size_t)(p - b)};
        }
        if (bus_publish(r->b, m, k, NULL, err, sizeof err) != 0)
            die("publish", err);
    }
    free(bodies);
    free(m);
    free(users);
}

/* Enrolls n users: the first 1 %, then (once they are in: an entry starts
 * when the worker handles it, on the clock of that moment) the clock moves
 * SPREAD and the other 99 % follow, so their first steps fall due later
 * than the 1 %'s. */
#define SPREAD (100 * MINUTE)
static void enroll(run *r, long n, int chunk, int bulk)
{
    long slice = n / 100 > 0 ? n / 100 : 1;
    publish_users(r, 0, slice, chunk, bulk);
    while (counter(r, "st:bench:entered") < slice)
        nanosleep(&(struct timespec){0, 500 * 1000L}, NULL);
    clock_advance_ms(SPREAD);
    publish_users(r, slice, n, chunk, bulk);
}

int main(int argc, char **argv)
{
    long n = 1000000;
    int chunk = 1000, bulk = 0, batch = 256, personal = 0;
    char dir[256] = "";
    static const struct option opts[] = {{"friends", required_argument, 0, 'n'},
                                         {"dir", required_argument, 0, 'd'},
                                         {"chunk", required_argument, 0, 'c'},
                                         {"bulk", required_argument, 0, 'b'},
                                         {"batch", required_argument, 0, 'B'},
                                         {"personal", no_argument, 0, 'P'},
                                         {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;)
        if (c == 'n')
            n = atol(optarg);
        else if (c == 'c')
            chunk = atoi(optarg);
        else if (c == 'b')
            bulk = atoi(optarg);
        else if (c == 'B')
            batch = atoi(optarg);
        else if (c == 'P')
            personal = 1;
        else if (c == 'd')
            snprintf(dir, sizeof dir, "%s", optarg);
        else
            return 2;
    int made = bench_dir_make(dir, sizeof dir, "step");
    if (made < 0)
        die("mkdtemp", dir);
    char conf[512], err[512];
    write_conf(dir, batch, personal, conf, sizeof conf);
    clock_use_virtual(T0 + 9 * 60 * MINUTE); /* Monday 09:00 */
    run r = {0};
    if (app_prepare(&r.a, conf, 0) > 0) {
        diag_print(&r.a.d, stderr);
        die("config", "refused");
    }
    bus_options bo = app_bus_options(r.a.c);
    int64_t cursor;
    if (bus_new(&bo, &r.b, err, sizeof err) != 0 || app_open_instances(&r.a, r.b) != 1 ||
        bus_start(r.b, err, sizeof err) != 0)
        die("bus", err);
    if (store_open(r.a.c->store_url, STORE_SYNC_NORMAL, &r.st, err, sizeof err) != 0 ||
        store_instance_open(r.st, "s", "step", &r.inst, &cursor, err, sizeof err) != 0)
        die("store", err);

    double t = now_s();
    if (bulk > 1000)
        bulk = 1000; /* step.enroll's limit */
    if (bulk > 0)
        chunk = 10; /* events of bulk users, 10 a publish */
    enroll(&r, n, chunk, bulk);
    double published = now_s() - t;
    double enrolled = wait_for(&r, "st:bench:entered", n, t);
    printf("friends        %ld in a 5-step scenario\n", n);
    printf("enroll         %.1f s: %.0f/s (published in %.1f s%s)\n", enrolled, n / enrolled,
           published, bulk > 0 ? "; step.enroll events of up to --bulk users" : "");

    /* 1 %: the first slice of first steps falls due */
    int64_t first = clock_now_ms() - SPREAD + DAY + MINUTE / 2;
    long slice = due_by(&r, first);
    t = now_s();
    clock_advance_ms(first - clock_now_ms());
    double one = wait_for(&r, "st:bench:s1:sent", slice, t);
    printf("1 %% due        %ld steps (%.1f %%) of %ld pending timers in %.2f s: %.0f steps/s\n",
           slice, 100.0 * slice / n, n, one, slice / one);

    /* the rest of the first steps at once */
    t = now_s();
    clock_advance_ms(SPREAD);
    double all = wait_for(&r, "st:bench:s1:sent", n, t);
    printf("fire           %ld steps in %.1f s: %.0f steps/s into the outbox (each also sets "
           "the next step's timer)\n",
           n - slice, all, (n - slice) / all);
    printf("outbox         %lld pushes pending (no sender in this bench)\n", (long long)outbox(&r));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("memory         anonymous %ld MiB at most while handling (peak RSS %ld MiB, which "
           "also counts the mapped database file)\n",
           r.anon_peak, ru.ru_maxrss / 1024);
    store_close(r.st);
    bus_free(r.b);
    app_free(&r.a);
    bench_dir_done(dir, made);
    return 0;
}
