/*
 * metrics — counters and histograms for GET /metrics (Prometheus text
 * exposition format 0.0.4).
 *
 * A metric family is registered once (name, help, type, label names); a
 * series is found or created by its label values and then updated with
 * atomic operations, so hot paths never take a lock after the first use of a
 * series. Registering and first use of a series take a mutex.
 *
 * Thread: every function may be called from any thread.
 */
#ifndef KIZUNA_CORE_METRICS_H
#define KIZUNA_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics metrics;
typedef struct metric_family metric_family;
typedef struct metric_series metric_series;

int metrics_new(metrics **out);
void metrics_free(metrics *m);

/* labels: NULL-terminated names (may be NULL for none). Histogram buckets
 * are upper bounds in seconds, ascending, `nbuckets` of them (+Inf added). */
metric_family *metrics_counter(metrics *m, const char *name, const char *help,
                               const char *const *labels);
metric_family *metrics_gauge(metrics *m, const char *name, const char *help,
                             const char *const *labels);
metric_family *metrics_histogram(metrics *m, const char *name, const char *help,
                                 const char *const *labels, const double *buckets, size_t nbuckets);

/* The series of a family with these label values (same count as names). */
metric_series *metrics_series(metric_family *f, const char *const *values);

void metrics_add(metric_series *s, uint64_t delta);     /* counter */
void metrics_set(metric_series *s, int64_t value);      /* gauge */
void metrics_observe(metric_series *s, double seconds); /* histogram */
/* A counter whose count is kept elsewhere and only grows (the store's
 * delivery policy counters, exact across restarts): sets it to value.
 * Ignored for other kinds. */
void metrics_counter_mirror(metric_series *s, uint64_t value);

/* Convenience: find the series and add/set/observe in one call. */
void metrics_inc(metric_family *f, const char *const *values, uint64_t delta);

/* Renders every family as Prometheus text into a malloc'd string (*len
 * bytes); the caller frees it. NULL on out of memory. */
char *metrics_render(metrics *m, size_t *len);

#endif
