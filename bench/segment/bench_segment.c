/*
 * bench_segment — friends/s through compiled segment expressions.
 *
 *   bench_segment [--friends N] [--passes P]
 *
 * Builds N synthetic friend views in memory (tags from a pool, a few
 * attributes, some missing, linked sources, follow and activity times), then
 * evaluates a few realistic expressions over all of them, P passes each, and
 * prints the best pass as friends/s and the peak RSS.
 *
 * Target: >= 1,000,000 friends/s on one core (docs/performance.md). Figures
 * come from here, never from tests.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "segment.h"

#define DAY_MS (86400LL * 1000)
#define TAG_POOL 200
#define TAGS_MAX 8
#define ATTRS_MAX 5

static const char *const NAMED_TAGS[] = {"dry-skin",    "乾燥肌", "敏感肌", "vip",
                                         "sample-sent", "repeat", "coupon", "winter"};
static const char *const GENDERS[] = {"female", "male", "other"};
static const char *const PREFS[] = {"北海道", "東京都", "大阪府", "福岡県", "沖縄県"};

/* 2026-11-23 12:00 UTC, a Monday. */
static const segment_now NOW = {
    .ms = 1795435200000LL, .year = 2026, .month = 11, .day = 23, .weekday = 1};

static const char *const EXPRESSIONS[] = {
    "tag(\"dry-skin\")",
    "tag(\"dry-skin\") && attr.age >= 20 && attr.gender == \"female\"",
    "attr.birthday.month == now.month && !blocked",
    "(tag(\"乾燥肌\") || tag(\"敏感肌\")) && linked(\"rakuten\") && active < 30d",
    "followed < 30d && !has(attr.birthday) || attr.member && !(active < 90d)",
    "attr.prefecture == \"北海道\" && attr.age >= 30 && attr.age < 50 && tag(\"winter\") && "
    "!tag(\"coupon\")",
};

typedef struct {
    segment_friend *friends;
    const char **tags;
    segment_attr *attrs;
    char (*tag_names)[16];
    size_t n;
} population;

static uint64_t rng = 88172645463325252ULL;

static uint32_t next_rand(uint32_t bound)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % bound);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static const char *tag_name(const population *p, uint32_t i)
{
    size_t named = sizeof NAMED_TAGS / sizeof NAMED_TAGS[0];
    return i < named ? NAMED_TAGS[i] : p->tag_names[i];
}

/* Attributes the way a shop has them: most present, some not. */
static size_t fill_attrs(segment_attr *a)
{
    size_t n = 0;
    if (next_rand(10) < 9)
        a[n++] =
            (segment_attr){.name = "gender", .type = SEGMENT_STRING, .v.s = GENDERS[next_rand(3)]};
    if (next_rand(10) < 8)
        a[n++] = (segment_attr){.name = "age", .type = SEGMENT_NUMBER, .v.n = 18 + next_rand(63)};
    if (next_rand(10) < 6)
        a[n++] = (segment_attr){
            .name = "birthday",
            .type = SEGMENT_DATE,
            .v.d = {1950 + (int)next_rand(55), 1 + (int)next_rand(12), 1 + (int)next_rand(28)}};
    a[n++] = (segment_attr){.name = "member", .type = SEGMENT_BOOL, .v.b = next_rand(3) == 0};
    if (next_rand(2) == 0)
        a[n++] = (segment_attr){
            .name = "prefecture", .type = SEGMENT_STRING, .v.s = PREFS[next_rand(5)]};
    return n;
}

static void fill_friend(population *p, size_t i)
{
    static const char *const SHOP[] = {"shop"}, *const RAKUTEN[] = {"rakuten"},
                             *const BOTH[] = {"shop", "rakuten"};
    segment_friend *f = &p->friends[i];
    const char **tags = p->tags + i * TAGS_MAX;
    f->ntags = next_rand(TAGS_MAX + 1);
    for (size_t k = 0; k < f->ntags; k++)
        tags[k] = tag_name(p, next_rand(TAG_POOL));
    f->tags = tags;
    f->attrs = p->attrs + i * ATTRS_MAX;
    f->nattrs = fill_attrs(p->attrs + i * ATTRS_MAX);
    uint32_t l = next_rand(10);
    f->linked = l < 3 ? SHOP : l < 4 ? RAKUTEN : l < 5 ? BOTH : NULL;
    f->nlinked = l < 4 ? 1 : l < 5 ? 2 : 0;
    f->followed_ms = NOW.ms - (int64_t)next_rand(730) * DAY_MS - next_rand(86400) * 1000LL;
    f->active_ms = next_rand(10) < 7 ? NOW.ms - (int64_t)next_rand(90) * DAY_MS : 0;
    f->blocked = next_rand(20) == 0;
}

static int build(population *p, size_t n)
{
    p->n = n;
    p->friends = calloc(n, sizeof *p->friends);
    p->tags = calloc(n * TAGS_MAX, sizeof *p->tags);
    p->attrs = calloc(n * ATTRS_MAX, sizeof *p->attrs);
    p->tag_names = calloc(TAG_POOL, sizeof *p->tag_names);
    if (!p->friends || !p->tags || !p->attrs || !p->tag_names)
        return -1;
    for (int i = 0; i < TAG_POOL; i++)
        snprintf(p->tag_names[i], sizeof p->tag_names[i], "tag-%03d", i);
    for (size_t i = 0; i < n; i++)
        fill_friend(p, i);
    return 0;
}

static int run(const population *p, const char *expr, int passes)
{
    segment *s = NULL;
    segment_error e;
    if (segment_compile(expr, NULL, &s, &e) != 0) {
        fprintf(stderr, "bench_segment: column %d: %s\n", e.column, e.message);
        return -1;
    }
    double best = 1e30;
    size_t matches = 0;
    for (int pass = 0; pass < passes; pass++) {
        double t0 = now_s();
        matches = 0;
        for (size_t i = 0; i < p->n; i++)
            matches += (size_t)segment_eval(s, &p->friends[i], &NOW);
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
    }
    segment_free(s);
    printf("%12.0f friends/s  %6.1f ns/friend  %8zu match  %s\n", (double)p->n / best,
           best * 1e9 / (double)p->n, matches, expr);
    return 0;
}

int main(int argc, char **argv)
{
    size_t friends = 1000000;
    int passes = 3;
    static const struct option longopts[] = {
        {"friends", required_argument, NULL, 'n'}, {"passes", required_argument, NULL, 'p'}, {0}};
    for (int c; (c = getopt_long(argc, argv, "n:p:", longopts, NULL)) != -1;) {
        if (c == 'n')
            friends = strtoul(optarg, NULL, 10);
        else if (c == 'p')
            passes = atoi(optarg);
        else
            return 2;
    }
    if (friends == 0 || passes < 1) {
        fprintf(stderr, "usage: bench_segment [--friends N] [--passes P]\n");
        return 2;
    }
    population p;
    double t0 = now_s();
    if (build(&p, friends) != 0) {
        fprintf(stderr, "bench_segment: out of memory for %zu friends\n", friends);
        return 1;
    }
    printf("%zu friend views built in %.2f s, peak RSS %ld MiB; one core, best of %d passes\n",
           friends, now_s() - t0, peak_rss_mib(), passes);
    for (size_t i = 0; i < sizeof EXPRESSIONS / sizeof EXPRESSIONS[0]; i++)
        if (run(&p, EXPRESSIONS[i], passes) != 0)
            return 1;
    printf("peak RSS %ld MiB\n", peak_rss_mib());
    free(p.friends);
    free(p.tags);
    free(p.attrs);
    free(p.tag_names);
    return 0;
}
