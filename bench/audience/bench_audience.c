/*
 * bench_audience — friends/s streamed out of the store as friend views
 * (store_friends_audience through friend_view_stream), each evaluated
 * against a segment: what a broadcast's chunks and its dry run cost.
 *
 *   bench_audience [--friends N] [--db PATH]
 *
 * Seeds N friends (default 1,000,000) into a fresh SQLite store in one
 * transaction (2 tags each from a pool of 50, an attribute for every other
 * one, a link for every tenth, 5 % blocked), then walks them all once with
 * `tag("t7") && !blocked` and prints the seeding time, the walk as
 * friends/s, and the anonymous memory after each (the walk must not add to
 * it; peak RSS also counts the mapped database file).
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "friendview.h"
#include "segment.h"
#include "store.h"

#include "../common/procmem.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int seed_one(store *st, long i, char *err, size_t errlen)
{
    char u[40], tag[16];
    snprintf(u, sizeof u, "U%032lx", (unsigned long)i + 1);
    int rc = store_friend_follow(st, "s", u, 1795000000000LL + i, err, errlen);
    for (int t = 0; rc == 0 && t < 2; t++) {
        snprintf(tag, sizeof tag, "t%ld", (i * 7 + t * 13) % 50);
        rc = store_friend_tag_add(st, "s", u, tag, 0, err, errlen);
    }
    if (rc == 0 && i % 2 == 0)
        rc = store_friend_attr_set(st, "s", u, "age", CFG_ATTR_NUMBER, "30", 0, err, errlen);
    if (rc == 0 && i % 10 == 0)
        rc = store_friend_link_set(st, "s", u, "shop", u + 1, 0, NULL, 0, err, errlen);
    if (rc == 0 && i % 20 == 0)
        rc = store_friend_unfollow(st, "s", u, 1795000000000LL + i, err, errlen);
    return rc;
}

typedef struct walk {
    segment *seg;
    segment_now now;
    long seen, matched;
} walk;

static int on_view(void *arg, friend_view *v)
{
    walk *w = arg;
    segment_friend f;
    friend_view_segment(v, &f);
    w->seen++;
    w->matched += segment_eval(w->seg, &f, &w->now);
    return 0;
}

int main(int argc, char **argv)
{
    long n = 1000000;
    const char *db = "/tmp/kz-bench-audience.db";
    static const struct option opts[] = {
        {"friends", required_argument, 0, 'n'}, {"db", required_argument, 0, 'd'}, {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;)
        if (c == 'n')
            n = atol(optarg);
        else if (c == 'd')
            db = optarg;
        else
            return 2;
    char url[512], err[512];
    snprintf(url, sizeof url, "sqlite:%s", db);
    unlink(db);
    store *st = NULL;
    if (store_open(url, STORE_SYNC_NORMAL, &st, err, sizeof err) != 0 ||
        store_begin(st, err, sizeof err) != 0) {
        fprintf(stderr, "bench_audience: %s\n", err);
        return 1;
    }
    double t0 = now_s();
    int rc = 0;
    for (long i = 0; rc == 0 && i < n; i++)
        rc = seed_one(st, i, err, sizeof err);
    if (rc != 0 || store_commit(st, err, sizeof err) != 0) {
        fprintf(stderr, "bench_audience: %s\n", err);
        return 1;
    }
    double t1 = now_s();
    long seeded_anon = proc_anon_mib();
    walk w = {.now = {.ms = 1795435200000LL, .year = 2026, .month = 11, .day = 23}};
    segment_compile("tag(\"t7\") && !blocked", NULL, &w.seg, NULL);
    rc = friend_view_stream(st, "s", "", 0, on_view, &w, err, sizeof err);
    double t2 = now_s();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%ld friends seeded in %.2f s (anonymous memory %ld MiB)\n"
           "walked %ld (%ld match) in %.2f s: %.0f friends/s (anonymous memory %ld MiB; peak "
           "RSS with the mapped database %ld MiB)\n",
           n, t1 - t0, seeded_anon, w.seen, w.matched, t2 - t1, (double)w.seen / (t2 - t1),
           proc_anon_mib(), ru.ru_maxrss / 1024);
    segment_free(w.seg);
    store_close(st);
    unlink(db);
    return rc == 0 ? 0 : 1;
}
