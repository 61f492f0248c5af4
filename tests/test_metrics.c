/*
 * metrics: Prometheus text format 0.0.4 (HELP/TYPE, escaping, histogram
 * buckets, sums and counts), registration rules, and counters updated from
 * many threads at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char *render(metrics *m)
{
    size_t len = 0;
    char *text = metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void assert_renders(metrics *m, const char *want)
{
    char *text = render(m);
    assert_string_equal(text, want);
    free(text);
}

static void empty_registry(void **state)
{
    (void)state;
    metrics *m;
    assert_int_equal(metrics_new(&m), 0);
    assert_renders(m, "");
    metrics_free(m);
    metrics_free(NULL);
}

static void counter_without_labels_starts_at_zero(void **state)
{
    (void)state;
    metrics *m;
    assert_int_equal(metrics_new(&m), 0);
    metric_family *f = metrics_counter(m, "kz_up_total", "Ups.", NULL);
    assert_non_null(f);
    assert_renders(m, "# HELP kz_up_total Ups.\n# TYPE kz_up_total counter\nkz_up_total 0\n");
    metrics_inc(f, NULL, 3);
    metrics_add(metrics_series(f, NULL), 2);
    assert_renders(m, "# HELP kz_up_total Ups.\n# TYPE kz_up_total counter\nkz_up_total 5\n");
    metrics_free(m);
}

static void labels_and_escaping(void **state)
{
    (void)state;
    metrics *m;
    assert_int_equal(metrics_new(&m), 0);
    const char *names[] = {"shop", "code", NULL};
    metric_family *f = metrics_counter(m, "kz_req_total", "Line one\nback\\slash \"q\"", names);
    assert_non_null(f);
    /* a labelled family shows no series until one is used */
    assert_renders(m, "# HELP kz_req_total Line one\\nback\\\\slash \"q\"\n"
                      "# TYPE kz_req_total counter\n");
    const char *a200[] = {"a", "200"};
    const char *weird[] = {"x\"y\\z\nw", "401"};
    metric_series *s = metrics_series(f, a200);
    assert_non_null(s);
    assert_ptr_equal(metrics_series(f, a200), s); /* same label set, same series */
    metrics_add(s, 2);
    metrics_inc(f, weird, 1);
    metrics_inc(f, a200, 1);
    assert_renders(m, "# HELP kz_req_total Line one\\nback\\\\slash \"q\"\n"
                      "# TYPE kz_req_total counter\n"
                      "kz_req_total{shop=\"a\",code=\"200\"} 3\n"
                      "kz_req_total{shop=\"x\\\"y\\\\z\\nw\",code=\"401\"} 1\n");
    metrics_free(m);
}

static void gauge(void **state)
{
    (void)state;
    metrics *m;
    assert_int_equal(metrics_new(&m), 0);
    const char *names[] = {"w", NULL};
    metric_family *f = metrics_gauge(m, "kz_queue", "Queued.", names);
    const char *one[] = {"1"};
    metric_series *s = metrics_series(f, one);
    metrics_set(s, -7);
    assert_renders(m, "# HELP kz_queue Queued.\n# TYPE kz_queue gauge\nkz_queue{w=\"1\"} -7\n");
    metrics_add(s, 10);
    assert_renders(m, "# HELP kz_queue Queued.\n# TYPE kz_queue gauge\nkz_queue{w=\"1\"} 3\n");
    metrics_free(m);
}

static void histogram(void **state)
{
    (void)state;
    metrics *m;
    assert_int_equal(metrics_new(&m), 0);
    const double b[] = {0.005, 0.1, 2.5, 10};
    const char *names[] = {"route", NULL};
    metric_family *f = metrics_histogram(m, "kz_seconds", "Latency.", names, b, 4);
    assert_non_null(f);
    const char *wh[] = {"webhook"};
    metric_series *s = metrics_series(f, wh);
    metrics_observe(s, 0.005); /* on a bound: counted in that bucket (le) */
    metrics_observe(s, 0.05);
    metrics_observe(s, 0.05);
    metrics_observe(s, 3);
    metrics_observe(s, 100); /* +Inf only */
    metrics_observe(s, -1);  /* clamped to 0 */
    assert_renders(m, "# HELP kz_seconds Latency.\n"
                      "# TYPE kz_seconds histogram\n"
                      "kz_seconds_bucket{route=\"webhook\",le=\"0.005\"} 2\n"
                      "kz_seconds_bucket{route=\"webhook\",le=\"0.1\"} 4\n"
                      "kz_seconds_bucket{route=\"webhook\",le=\"2.5\"} 4\n"
                      "kz_seconds_bucket{route=\"webhook\",le=\"10\"} 5\n"
                      "kz_seconds_bucket{route=\"webhook\",le=\"+Inf\"} 6\n"
                      "kz_seconds_sum{route=\"webhook\"} 103.105000\n"
                      "kz_seconds_count{route=\"webhook\"} 6\n");
    metrics_free(m);
}

static void histogram_without_labels(void **state)
{
    (void)state;
    metrics *m;
    assert_int_equal(metrics_new(&m), 0);
    const double b[] = {1};
    metric_family *f = metrics_histogram(m, "kz_h", "H.", NULL, b, 1);
    metrics_observe(metrics_series(f, NULL), 0.25);
    assert_renders(m, "# HELP kz_h H.\n# TYPE kz_h histogram\n"
                      "kz_h_bucket{le=\"1\"} 1\nkz_h_bucket{le=\"+Inf\"} 1\n"
                      "kz_h_sum 0.250000\nkz_h_count 1\n");
    metrics_free(m);
}

static void registration_rules(void **state)
{
    (void)state;
    metrics *m;
    assert_int_equal(metrics_new(&m), 0);
    const char *ab[] = {"a", "b", NULL};
    const char *ba[] = {"b", "a", NULL};
    metric_family *f = metrics_counter(m, "kz_c", "C.", ab);
    assert_non_null(f);
    /* the same registration again (a second ingress, a restart) is the same family */
    assert_ptr_equal(metrics_counter(m, "kz_c", "Other help.", ab), f);
    assert_null(metrics_counter(m, "kz_c", "C.", ba));
    assert_null(metrics_gauge(m, "kz_c", "C.", ab));
    /* invalid names */
    assert_null(metrics_counter(m, "1abc", "x", NULL));
    assert_null(metrics_counter(m, "a-b", "x", NULL));
    assert_null(metrics_counter(m, "", "x", NULL));
    const char *bad_label[] = {"a:b", NULL};
    assert_null(metrics_counter(m, "kz_d", "x", bad_label));
    const char *reserved[] = {"__x", NULL};
    assert_null(metrics_counter(m, "kz_d", "x", reserved));
    const char *le[] = {"le", NULL};
    const double b[] = {1, 2};
    const double unsorted[] = {2, 1};
    assert_null(metrics_histogram(m, "kz_h", "x", le, b, 2));
    assert_null(metrics_histogram(m, "kz_h", "x", NULL, unsorted, 2));
    assert_non_null(metrics_histogram(m, "kz_h", "x", NULL, b, 2));
    assert_non_null(metrics_counter(m, "ns:kz_e", "colons are fine in metric names", NULL));
    /* NULL everywhere is harmless */
    assert_null(metrics_series(NULL, NULL));
    assert_null(metrics_series(f, NULL)); /* values required */
    metrics_add(NULL, 1);
    metrics_set(NULL, 1);
    metrics_observe(NULL, 1);
    metrics_inc(NULL, NULL, 1);
    /* wrong kind of update is ignored */
    metric_series *s = metrics_series(metrics_counter(m, "kz_n", "N.", NULL), NULL);
    metrics_observe(s, 1);
    metrics_set(s, 9);
    metrics_add(s, 1);
    char *text = render(m);
    assert_non_null(strstr(text, "\nkz_n 1\n"));
    free(text);
    metrics_free(m);
}

#define THREADS 8
#define ROUNDS 20000

typedef struct worker {
    metric_family *c, *h;
    int id;
} worker;

static void *hammer(void *arg)
{
    worker *w = arg;
    char mine[16];
    snprintf(mine, sizeof mine, "t%d", w->id);
    const char *shared[] = {"shared"};
    const char *own[] = {mine};
    for (int i = 0; i < ROUNDS; i++) {
        metrics_inc(w->c, shared, 1);
        metrics_inc(w->c, own, 2);
        char fresh[16];
        snprintf(fresh, sizeof fresh, "n%d", i % 50); /* new series raced by all threads */
        const char *lv[] = {fresh};
        metrics_inc(w->c, lv, 1);
        metrics_observe(metrics_series(w->h, NULL), 0.001);
    }
    return NULL;
}

static long value_of(const char *text, const char *series)
{
    const char *p = strstr(text, series);
    assert_non_null(p);
    return atol(p + strlen(series));
}

static void concurrent_updates(void **state)
{
    (void)state;
    metrics *m;
    assert_int_equal(metrics_new(&m), 0);
    const char *names[] = {"k", NULL};
    const double b[] = {0.01};
    worker w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.c = metrics_counter(m, "kz_hits_total", "Hits.", names),
                        .h = metrics_histogram(m, "kz_lat", "Lat.", NULL, b, 1),
                        .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    /* render while they run: must not crash or tear */
    for (int i = 0; i < 20; i++)
        free(render(m));
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *text = render(m);
    assert_int_equal(value_of(text, "kz_hits_total{k=\"shared\"} "), THREADS * ROUNDS);
    assert_int_equal(value_of(text, "kz_hits_total{k=\"t3\"} "), 2 * ROUNDS);
    long sum = 0;
    for (int i = 0; i < 50; i++) {
        char s[64];
        snprintf(s, sizeof s, "kz_hits_total{k=\"n%d\"} ", i);
        sum += value_of(text, s);
        /* each label set exists once */
        assert_null(strstr(strstr(text, s) + 1, s));
    }
    assert_int_equal(sum, THREADS * ROUNDS);
    assert_int_equal(value_of(text, "kz_lat_count "), THREADS * ROUNDS);
    assert_int_equal(value_of(text, "kz_lat_bucket{le=\"0.01\"} "), THREADS * ROUNDS);
    free(text);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_registry),
        cmocka_unit_test(counter_without_labels_starts_at_zero),
        cmocka_unit_test(labels_and_escaping),
        cmocka_unit_test(gauge),
        cmocka_unit_test(histogram),
        cmocka_unit_test(histogram_without_labels),
        cmocka_unit_test(registration_rules),
        cmocka_unit_test(concurrent_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
