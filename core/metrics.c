/*
 * metrics — see metrics.h.
 *
 * Families live in a list in registration order; each family's series live
 * in a list in creation order. Both lists only ever grow (until
 * metrics_free), are appended under the registry mutex and published with
 * release stores, so a lookup walks them with acquire loads and no lock;
 * only a miss takes the mutex (re-checks, then appends). Values are C11
 * atomics updated with relaxed operations: a render is a snapshot of each
 * value, not of the whole registry.
 *
 * Histograms keep one (non-cumulative) count per bucket plus +Inf and the
 * sum in integer microseconds; a render adds the buckets up, so `_count`
 * always equals the +Inf bucket even while observations race the render.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kizuna/host.h>

enum { M_COUNTER, M_GAUGE, M_HISTOGRAM };

struct metric_series {
    metric_family *f;
    char **values;
    _Atomic(metric_series *) next;
    atomic_uint_fast64_t counter;
    atomic_int_fast64_t gauge;
    atomic_uint_fast64_t sum_us;   /* histogram: sum of observations, µs */
    atomic_uint_fast64_t *buckets; /* histogram: nbuckets + 1 (+Inf) */
};

struct metric_family {
    metrics *m;
    int type;
    char *name;
    char *help;
    char **labels;
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    _Atomic(metric_family *) next;
    _Atomic(metric_series *) head;
    metric_series *tail; /* under m->mu */
};

struct metrics {
    pthread_mutex_t mu;
    _Atomic(metric_family *) head;
    metric_family *tail; /* under mu */
};

/* ---- small helpers ------------------------------------------------------ */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static void free_strv(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* (metric) or [a-zA-Z_][a-zA-Z0-9_]* (label). */
static int valid_name(const char *s, int colon)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static void series_free(metric_series *s, size_t nlabels)
{
    free_strv(s->values, nlabels);
    free(s->buckets);
    free(s);
}

static void family_free(metric_family *f)
{
    metric_series *s = atomic_load_explicit(&f->head, memory_order_relaxed);
    while (s != NULL) {
        metric_series *next = atomic_load_explicit(&s->next, memory_order_relaxed);
        series_free(s, f->nlabels);
        s = next;
    }
    free(f->name);
    free(f->help);
    free_strv(f->labels, f->nlabels);
    free(f->bounds);
    free(f);
}

/* ---- registry ----------------------------------------------------------- */

int metrics_new(metrics **out)
{
    metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return KZ_ENOMEM;
    pthread_mutex_init(&m->mu, NULL);
    atomic_init(&m->head, NULL);
    *out = m;
    return 0;
}

void metrics_free(metrics *m)
{
    if (m == NULL)
        return;
    metric_family *f = atomic_load_explicit(&m->head, memory_order_relaxed);
    while (f != NULL) {
        metric_family *next = atomic_load_explicit(&f->next, memory_order_relaxed);
        family_free(f);
        f = next;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static metric_family *find_family(metrics *m, const char *name)
{
    for (metric_family *f = atomic_load_explicit(&m->head, memory_order_acquire); f != NULL;
         f = atomic_load_explicit(&f->next, memory_order_acquire))
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static int same_labels(const metric_family *f, const char *const *labels)
{
    size_t n = 0;
    while (labels != NULL && labels[n] != NULL)
        n++;
    if (n != f->nlabels)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return 0;
    return 1;
}

static metric_series *series_new(metric_family *f, const char *const *values);
static void series_append(metric_family *f, metric_series *s);

/* Registers a family, or returns the one already registered under that name
 * when it has the same type and label names (NULL otherwise). */
static metric_family *family_register(metrics *m, int type, const char *name, const char *help,
                                      const char *const *labels, const double *bounds,
                                      size_t nbounds)
{
    if (m == NULL || !valid_name(name, 1))
        return NULL;
    size_t nlabels = 0;
    while (labels != NULL && labels[nlabels] != NULL) {
        if (!valid_name(labels[nlabels], 0) || strncmp(labels[nlabels], "__", 2) == 0 ||
            (type == M_HISTOGRAM && strcmp(labels[nlabels], "le") == 0))
            return NULL;
        nlabels++;
    }
    for (size_t i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return NULL;

    pthread_mutex_lock(&m->mu);
    metric_family *f = find_family(m, name);
    if (f != NULL) {
        int same = f->type == type && same_labels(f, labels) && f->nbounds == nbounds &&
                   (nbounds == 0 || memcmp(f->bounds, bounds, nbounds * sizeof *bounds) == 0);
        pthread_mutex_unlock(&m->mu);
        return same ? f : NULL;
    }
    f = calloc(1, sizeof *f);
    if (f == NULL)
        goto oom;
    f->m = m;
    f->type = type;
    f->name = dup_str(name);
    f->help = dup_str(help != NULL ? help : "");
    f->nlabels = nlabels;
    f->labels = calloc(nlabels + 1, sizeof *f->labels);
    f->nbounds = nbounds;
    f->bounds = malloc((nbounds + 1) * sizeof *f->bounds);
    atomic_init(&f->next, NULL);
    atomic_init(&f->head, NULL);
    if (f->name == NULL || f->help == NULL || f->labels == NULL || f->bounds == NULL)
        goto oom;
    for (size_t i = 0; i < nlabels; i++)
        if ((f->labels[i] = dup_str(labels[i])) == NULL)
            goto oom;
    if (nbounds > 0)
        memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
    /* A family without labels has exactly one series: show it from the start. */
    if (nlabels == 0) {
        metric_series *s = series_new(f, NULL);
        if (s == NULL)
            goto oom;
        series_append(f, s);
    }
    if (m->tail == NULL)
        atomic_store_explicit(&m->head, f, memory_order_release);
    else
        atomic_store_explicit(&m->tail->next, f, memory_order_release);
    m->tail = f;
    pthread_mutex_unlock(&m->mu);
    return f;
oom:
    if (f != NULL)
        family_free(f);
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

metric_family *metrics_counter(metrics *m, const char *name, const char *help,
                               const char *const *labels)
{
    return family_register(m, M_COUNTER, name, help, labels, NULL, 0);
}

metric_family *metrics_gauge(metrics *m, const char *name, const char *help,
                             const char *const *labels)
{
    return family_register(m, M_GAUGE, name, help, labels, NULL, 0);
}

metric_family *metrics_histogram(metrics *m, const char *name, const char *help,
                                 const char *const *labels, const double *buckets, size_t nbuckets)
{
    if (nbuckets > 0 && buckets == NULL)
        return NULL;
    return family_register(m, M_HISTOGRAM, name, help, labels, buckets, nbuckets);
}

/* ---- series ------------------------------------------------------------- */

static metric_series *series_new(metric_family *f, const char *const *values)
{
    metric_series *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->f = f;
    atomic_init(&s->next, NULL);
    atomic_init(&s->counter, 0);
    atomic_init(&s->gauge, 0);
    atomic_init(&s->sum_us, 0);
    s->values = calloc(f->nlabels + 1, sizeof *s->values);
    if (s->values == NULL)
        goto oom;
    for (size_t i = 0; i < f->nlabels; i++) {
        const char *v = values[i] != NULL ? values[i] : "";
        if ((s->values[i] = dup_str(v)) == NULL)
            goto oom;
    }
    if (f->type == M_HISTOGRAM) {
        s->buckets = malloc((f->nbounds + 1) * sizeof *s->buckets);
        if (s->buckets == NULL)
            goto oom;
        for (size_t i = 0; i <= f->nbounds; i++)
            atomic_init(&s->buckets[i], 0);
    }
    return s;
oom:
    series_free(s, f->nlabels);
    return NULL;
}

/* Under f->m->mu. */
static void series_append(metric_family *f, metric_series *s)
{
    if (f->tail == NULL)
        atomic_store_explicit(&f->head, s, memory_order_release);
    else
        atomic_store_explicit(&f->tail->next, s, memory_order_release);
    f->tail = s;
}

static int series_matches(const metric_series *s, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = values[i] != NULL ? values[i] : "";
        if (strcmp(s->values[i], v) != 0)
            return 0;
    }
    return 1;
}

static metric_series *find_series(metric_family *f, const char *const *values)
{
    for (metric_series *s = atomic_load_explicit(&f->head, memory_order_acquire); s != NULL;
         s = atomic_load_explicit(&s->next, memory_order_acquire))
        if (series_matches(s, values, f->nlabels))
            return s;
    return NULL;
}

metric_series *metrics_series(metric_family *f, const char *const *values)
{
    if (f == NULL || (f->nlabels > 0 && values == NULL))
        return NULL;
    metric_series *s = find_series(f, values);
    if (s != NULL)
        return s;
    pthread_mutex_lock(&f->m->mu);
    s = find_series(f, values);
    if (s == NULL) {
        s = series_new(f, values);
        if (s != NULL)
            series_append(f, s);
    }
    pthread_mutex_unlock(&f->m->mu);
    return s;
}

void metrics_add(metric_series *s, uint64_t delta)
{
    if (s == NULL)
        return;
    if (s->f->type == M_COUNTER)
        atomic_fetch_add_explicit(&s->counter, delta, memory_order_relaxed);
    else if (s->f->type == M_GAUGE)
        atomic_fetch_add_explicit(&s->gauge, (int_fast64_t)delta, memory_order_relaxed);
}

void metrics_set(metric_series *s, int64_t value)
{
    if (s != NULL && s->f->type == M_GAUGE)
        atomic_store_explicit(&s->gauge, value, memory_order_relaxed);
}

void metrics_counter_mirror(metric_series *s, uint64_t value)
{
    if (s != NULL && s->f->type == M_COUNTER)
        atomic_store_explicit(&s->counter, value, memory_order_relaxed);
}

void metrics_observe(metric_series *s, double seconds)
{
    if (s == NULL || s->f->type != M_HISTOGRAM)
        return;
    if (!(seconds > 0)) /* negative, zero or NaN */
        seconds = 0;
    size_t i = 0;
    while (i < s->f->nbounds && seconds > s->f->bounds[i])
        i++;
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    double us = seconds * 1e6 + 0.5;
    uint64_t add = us >= 1.8e19 ? UINT64_MAX / 2 : (uint64_t)us;
    atomic_fetch_add_explicit(&s->sum_us, add, memory_order_relaxed);
}

void metrics_inc(metric_family *f, const char *const *values, uint64_t delta)
{
    metrics_add(metrics_series(f, values), delta);
}

/* ---- rendering ---------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_reserve(sbuf *b, size_t more)
{
    if (b->oom || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void sb_put(sbuf *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    if (b->oom)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    sb_reserve(b, (size_t)n);
    if (b->oom)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* HELP text escapes \ and newline; label values also escape ". */
static void sb_escaped(sbuf *b, const char *s, int quote)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            sb_put(b, "\\\\", 2);
        else if (*s == '\n')
            sb_put(b, "\\n", 2);
        else if (quote && *s == '"')
            sb_put(b, "\\\"", 2);
        else
            sb_put(b, s, 1);
    }
}

/* The fewest significant digits that read back as the same double, printed
 * like Go's FormatFloat(v, 'g', -1, 64) as Prometheus clients do: 10 is
 * "10", 0.005 is "0.005", 1e6 is "1e+06". */
static void fmt_double(char *out, size_t n, double v)
{
    int digits = 17;
    for (int p = 1; p < 17; p++) {
        snprintf(out, n, "%.*e", p - 1, v);
        if (strtod(out, NULL) == v) {
            digits = p;
            break;
        }
    }
    snprintf(out, n, "%.*g", digits < 6 ? 6 : digits, v);
}

/* {a="x",b="y"[,le="…"]} — nothing when there are no labels at all. */
static void sb_labels(sbuf *b, const metric_family *f, const metric_series *s, const char *le)
{
    if (f->nlabels == 0 && le == NULL)
        return;
    sb_put(b, "{", 1);
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i > 0)
            sb_put(b, ",", 1);
        sb_str(b, f->labels[i]);
        sb_put(b, "=\"", 2);
        sb_escaped(b, s->values[i], 1);
        sb_put(b, "\"", 1);
    }
    if (le != NULL) {
        if (f->nlabels > 0)
            sb_put(b, ",", 1);
        sb_str(b, "le=\"");
        sb_str(b, le);
        sb_put(b, "\"", 1);
    }
    sb_put(b, "}", 1);
}

static void render_histogram(sbuf *b, const metric_family *f, const metric_series *s)
{
    uint64_t cum = 0;
    char le[40];
    for (size_t i = 0; i <= f->nbounds; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        if (i < f->nbounds)
            fmt_double(le, sizeof le, f->bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        sb_str(b, f->name);
        sb_str(b, "_bucket");
        sb_labels(b, f, s, le);
        sb_printf(b, " %llu\n", (unsigned long long)cum);
    }
    uint64_t us = atomic_load_explicit(&s->sum_us, memory_order_relaxed);
    sb_str(b, f->name);
    sb_str(b, "_sum");
    sb_labels(b, f, s, NULL);
    sb_printf(b, " %llu.%06llu\n", (unsigned long long)(us / 1000000),
              (unsigned long long)(us % 1000000));
    sb_str(b, f->name);
    sb_str(b, "_count");
    sb_labels(b, f, s, NULL);
    sb_printf(b, " %llu\n", (unsigned long long)cum);
}

char *metrics_render(metrics *m, size_t *len)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    sbuf b = {0};
    sb_put(&b, "", 0); /* "" rather than NULL for an empty registry */
    if (m != NULL) {
        for (metric_family *f = atomic_load_explicit(&m->head, memory_order_acquire); f != NULL;
             f = atomic_load_explicit(&f->next, memory_order_acquire)) {
            sb_str(&b, "# HELP ");
            sb_str(&b, f->name);
            sb_put(&b, " ", 1);
            sb_escaped(&b, f->help, 0);
            sb_put(&b, "\n", 1);
            sb_printf(&b, "# TYPE %s %s\n", f->name, type_names[f->type]);
            for (metric_series *s = atomic_load_explicit(&f->head, memory_order_acquire); s != NULL;
                 s = atomic_load_explicit(&s->next, memory_order_acquire)) {
                if (f->type == M_HISTOGRAM) {
                    render_histogram(&b, f, s);
                    continue;
                }
                sb_str(&b, f->name);
                sb_labels(&b, f, s, NULL);
                if (f->type == M_COUNTER)
                    sb_printf(&b, " %llu\n",
                              (unsigned long long)atomic_load_explicit(&s->counter,
                                                                       memory_order_relaxed));
                else
                    sb_printf(&b, " %lld\n",
                              (long long)atomic_load_explicit(&s->gauge, memory_order_relaxed));
            }
        }
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len != NULL)
        *len = b.len;
    return b.p;
}
