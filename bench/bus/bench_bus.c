/*
 * bench_bus — events/s through the event bus to K no-op plugin instances.
 *
 *   bench_bus [--events N] [--plugins K] [--mode mem|durable|both]
 *             [--durability full|normal] [--batch B] [--workers W] [--kv]
 *
 * mem:      dispatch alone (topic matching, ctx, handler call), no store.
 * durable:  three phases: events stored in chunks of 1000 (one transaction
 *           each) with no worker running; the workers handling them with group
 *           commit (every handler call commits with its event's cursor); and
 *           both at once, as a live daemon does.
 * --kv:     each handler also increments a counter (a real committed effect).
 *
 * Targets on a 2-core machine: >= 1,000,000 events/s in memory, >= 50,000
 * durably handled events/s on SQLite (docs/performance.md).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "store.h"

typedef struct opts {
    long events;
    int plugins;
    const char *mode;
    const char *durability;
    int batch;
    int workers;
    int kv;
} opts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_conf(const char *dir, const opts *o, char *path, size_t pathlen)
{
    snprintf(path, pathlen, "%s/bench.conf", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f,
            "kizuna: { store = \"sqlite:%s/bench.db\"; plugin_path = \"%s\"; workers = %d;\n"
            "  batch = %d; durability = \"%s\"; log_level = \"warn\"; };\n"
            "shops = ( { id = \"bench\"; plugins = {\n",
            dir, BENCH_PLUGIN_DIR, o->workers, o->batch, o->durability);
    for (int i = 1; i <= o->plugins; i++)
        fprintf(f, "  noop_%d = { kv_write = %s; };\n", i, o->kv ? "true" : "false");
    fprintf(f, "}; } );\n");
    fclose(f);
    return 0;
}

static int setup(const char *dir, const opts *o, app *a, bus **b)
{
    char conf[512], err[512];
    if (write_conf(dir, o, conf, sizeof conf) != 0 || app_prepare(a, conf, 0) > 0) {
        diag_print(&a->d, stderr);
        return -1;
    }
    bus_options bo = app_bus_options(a->c);
    if (bus_new(&bo, b, err, sizeof err) != 0) {
        fprintf(stderr, "bench: %s\n", err);
        return -1;
    }
    return app_open_instances(a, *b) == o->plugins ? 0 : -1;
}

static void bench_mem(bus *b, const opts *o)
{
    static const char *const topics[] = {"bench.a", "bench.b", "bench.c", "other.x"};
    store_event ev = {.shop = "bench", .uid = "x", .user = "U1", .payload = "{}", .payload_len = 2};
    long calls = 0;
    double t0 = now_s();
    for (long i = 0; i < o->events; i++) {
        ev.id = i + 1;
        ev.topic = topics[i & 3];
        calls += bus_dispatch_volatile(b, &ev);
    }
    double dt = now_s() - t0;
    printf("mem:     %ld events, %d plugins: %.0f events/s, %.0f handler calls/s\n", o->events,
           o->plugins, (double)o->events / dt, (double)calls / dt);
}

static int caught_up(store *st, const bus *b)
{
    char err[256];
    int64_t max;
    if (store_event_max_id(st, "bench", &max, err, sizeof err) != 0)
        return 0;
    for (size_t i = 0; i < bus_instance_count(b); i++) {
        int64_t cursor;
        if (store_cursor_get(st, bus_instance_at(b, i)->id, &cursor, err, sizeof err) != 0 ||
            cursor < max)
            return 0;
    }
    return 1;
}

static int publish_all(bus *b, const opts *o, char *err, size_t errlen)
{
    enum { CHUNK = 1000 };
    static bus_msg m[CHUNK];
    static const char *const topics[] = {"bench.a", "bench.b"};
    for (long i = 0; i < o->events;) {
        size_t n = 0;
        for (; n < CHUNK && i < o->events; n++, i++)
            m[n] = (bus_msg){.shop = "bench", .topic = topics[i & 1], .user = "U1"};
        if (bus_publish(b, m, n, NULL, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static void wait_caught_up(store *st, const bus *b)
{
    while (!caught_up(st, b))
        usleep(1000);
}

/* Phase "stored": N events published in chunks of 1000 with no worker
 * running. Phase "handled": the workers drain them; every handler call
 * commits with its event's cursor. Phase "both": publishing and handling at
 * once, as a live daemon does. */
static int bench_durable(bus *b, const app *a, const opts *o)
{
    char err[512];
    store *st;
    if (store_open(a->c->store_url, a->c->sync_mode, &st, err, sizeof err) != 0)
        return -1;
    double t0 = now_s();
    if (publish_all(b, o, err, sizeof err) != 0)
        goto fail;
    double t1 = now_s();
    if (bus_start(b, err, sizeof err) != 0)
        goto fail;
    wait_caught_up(st, b);
    double t2 = now_s();
    if (publish_all(b, o, err, sizeof err) != 0)
        goto fail;
    wait_caught_up(st, b);
    double t3 = now_s();
    bus_stop(b);
    store_close(st);
    printf("durable: %ld events, %d plugins, batch %d, durability %s%s\n"
           "  stored (no workers):      %8.0f events/s\n"
           "  handled (group commit):   %8.0f events/s, %.0f handler calls/s\n"
           "  stored and handled at once: %6.0f events/s\n",
           o->events, o->plugins, o->batch, o->durability, o->kv ? ", kv write per call" : "",
           (double)o->events / (t1 - t0), (double)o->events / (t2 - t1),
           (double)o->events * o->plugins / (t2 - t1), (double)o->events / (t3 - t2));
    return 0;
fail:
    fprintf(stderr, "bench: %s\n", err);
    bus_stop(b);
    store_close(st);
    return -1;
}

static int parse(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {{"events", 1, 0, 'n'},  {"plugins", 1, 0, 'k'},
                                       {"mode", 1, 0, 'm'},    {"durability", 1, 0, 'd'},
                                       {"batch", 1, 0, 'b'},   {"kv", 0, 0, 'v'},
                                       {"workers", 1, 0, 'w'}, {0, 0, 0, 0}};
    *o = (opts){.events = 0,
                .plugins = 4,
                .mode = "both",
                .durability = "full",
                .batch = 512,
                .workers = 2};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'n':
            o->events = atol(optarg);
            break;
        case 'k':
            o->plugins = atoi(optarg);
            break;
        case 'm':
            o->mode = optarg;
            break;
        case 'd':
            o->durability = optarg;
            break;
        case 'b':
            o->batch = atoi(optarg);
            break;
        case 'v':
            o->kv = 1;
            break;
        case 'w':
            o->workers = atoi(optarg);
            break;
        default:
            return -1;
        }
    }
    return o->plugins >= 1 && o->plugins <= 8 ? 0 : -1;
}

static int run_mode(const char *mode, opts *o)
{
    char dir[] = "/tmp/kz-bench-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return -1;
    app a;
    bus *b = NULL;
    int rc = setup(dir, o, &a, &b);
    if (rc == 0 && strcmp(mode, "mem") == 0) {
        if (o->events == 0)
            o->events = 5000000;
        bench_mem(b, o);
    } else if (rc == 0) {
        if (o->events == 0)
            o->events = 200000;
        rc = bench_durable(b, &a, o);
    }
    bus_free(b);
    app_free(&a);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
    return rc;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: bench_bus [--events N] [--plugins 1..8] [--mode mem|durable|both]"
                        " [--durability full|normal] [--batch B] [--workers W] [--kv]\n");
        return 2;
    }
    long events = o.events;
    int rc = 0;
    if (strcmp(o.mode, "durable") != 0)
        rc |= run_mode("mem", &o);
    o.events = events;
    if (strcmp(o.mode, "mem") != 0)
        rc |= run_mode("durable", &o);
    return rc != 0;
}
