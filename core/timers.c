#include "timers.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "errbuf.h"
#include "log.h"

struct timers {
    timers_options o;
    store *st;
    pthread_t th;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t wakeups;
    int running;
};

/* An idle poll never takes the write lock: the earliest due time is read
 * first, outside a transaction. */
int timers_fire_due(store *st, int64_t now_ms, int batch, char *err, size_t errlen)
{
    int64_t next;
    int rc = store_timer_next(st, &next, err, errlen), fired = 0;
    if (rc == KZ_ENOTFOUND || (rc == 0 && next > now_ms))
        return 0;
    if (rc == 0)
        rc = store_timer_fire_due(st, now_ms, batch, &fired, err, errlen);
    return rc != 0 ? rc : fired;
}

/* Fires batches until one comes back short; 1 when any fired. */
static int fire_all(timers *t)
{
    char err[256];
    int any = 0, n, total = 0;
    do {
        n = timers_fire_due(t->st, clock_now_ms(), t->o.batch, err, sizeof err);
        if (n < 0) {
            log_msg(KZ_LOG_ERROR, "timers: %s (retried in %lld ms)", err, (long long)t->o.poll_ms);
            break;
        }
        any |= n > 0;
        total += n;
    } while (n == t->o.batch);
    if (any && t->o.fired != NULL)
        t->o.fired(t->o.arg, total);
    return any;
}

/* Until the earliest timer on the real clock, never past poll_ms; a virtual
 * clock only moves through clock_advance_ms, which wakes us. */
static int64_t sleep_ms(timers *t)
{
    int64_t next = 0, ms = t->o.poll_ms;
    char err[256];
    if (!clock_is_virtual() && store_timer_next(t->st, &next, err, sizeof err) == 0) {
        int64_t until = next - clock_now_ms();
        if (until < ms)
            ms = until > 0 ? until : 0;
    }
    return ms;
}

static void wait_for(timers *t, uint64_t seen, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&t->lock);
    while (t->running && t->wakeups == seen)
        if (pthread_cond_timedwait(&t->cond, &t->lock, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&t->lock);
}

static void *pump_main(void *arg)
{
    timers *t = arg;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        int running = t->running;
        uint64_t seen = t->wakeups;
        pthread_mutex_unlock(&t->lock);
        if (!running)
            break;
        fire_all(t);
        wait_for(t, seen, sleep_ms(t));
    }
    return NULL;
}

int timers_start(const timers_options *o, timers **out, char *err, size_t errlen)
{
    timers *t = calloc(1, sizeof *t);
    if (t == NULL)
        return KZ_ENOMEM;
    t->o = *o;
    if (t->o.batch < 1)
        t->o.batch = 1;
    if (t->o.poll_ms <= 0)
        t->o.poll_ms = 50;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    t->running = 1;
    int rc = store_open(o->store_url, o->sync_mode, &t->st, err, errlen);
    int prc = rc == 0 ? pthread_create(&t->th, NULL, pump_main, t) : 0;
    if (prc != 0) {
        errbuf_set(err, errlen, "cannot start the timer thread: %s", strerror(prc));
        rc = KZ_EFAIL;
    }
    if (rc != 0) {
        store_close(t->st);
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->cond);
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void timers_wake(timers *t)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->lock);
    t->wakeups++;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

void timers_stop(timers *t)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->lock);
    t->running = 0;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->th, NULL);
    store_close(t->st);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    free(t);
}
