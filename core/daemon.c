#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "bus.h"
#include "clock.h"
#include "broadcast.h"
#include "friends.h"
#include "host.h"
#include "ingress.h"
#include "sandbox.h"
#include "sender.h"
#include "log.h"

/* Turns the loader's "plugin 'y' (PATH): REASON" / "plugin 'y': REASON" into
 * the message part of a check line for that plugin. */
static void refusal_message(const char *line, char *out, size_t outlen)
{
    const char *rest = strstr(line, "' (");
    const char *close = rest ? strstr(rest, "): ") : NULL;
    if (close != NULL) {
        snprintf(out, outlen, "cannot load %.*s: %s", (int)(close - rest - 3), rest + 3, close + 3);
        return;
    }
    rest = strstr(line, "': ");
    snprintf(out, outlen, "unknown plugin: %s", rest ? rest + 3 : line);
}

static void check_use(app *a, const cfg_shop *shop, const cfg_plugin_use *use)
{
    const plugin *p = NULL;
    char err[1024] = "";
    int rc = loader_load_name(a->l, use->name, a->c->plugin_path, a->c->nplugin_path, &p, err,
                              sizeof err);
    if (rc != 0) {
        char msg[1200];
        refusal_message(err, msg, sizeof msg);
        cfg_plugin_error(a->c, shop, use, &a->d, msg);
        return;
    }
    if (cfg_check_plugin(a->c, shop, use, &p->desc, &a->d) > 0 || !a->open_shops)
        return;
    char perr[1024];
    if (bus_try_open(p, a->c, shop->id, shop->timezone, use->setting, perr, sizeof perr) == 0)
        return;
    /* kz_setting_error already wrote a whole check line */
    if (strncmp(perr, a->c->path, strlen(a->c->path)) == 0 && perr[strlen(a->c->path)] == ':')
        diag_add(&a->d, "%s", perr);
    else
        cfg_plugin_error(a->c, shop, use, &a->d, perr);
}

size_t app_prepare(app *a, const char *config_path, int open_shops)
{
    memset(a, 0, sizeof *a);
    a->open_shops = open_shops;
    if (cfg_load(config_path, &a->c, &a->d) != 0 || a->c == NULL)
        return diag_count(&a->d) > 0 ? diag_count(&a->d) : 1;
    log_set_level(a->c->log_level);
    if (loader_new(host_table(), &a->l) != 0) {
        diag_add(&a->d, "%s: out of memory", config_path);
        return diag_count(&a->d);
    }
    for (size_t s = 0; s < a->c->nshops; s++)
        for (size_t u = 0; u < a->c->shops[s].nplugins; u++)
            check_use(a, &a->c->shops[s], &a->c->shops[s].plugins[u]);
    return diag_count(&a->d);
}

void app_free(app *a)
{
    if (a->l != NULL)
        loader_free(a->l);
    if (a->c != NULL)
        cfg_free(a->c);
    diag_free(&a->d);
    memset(a, 0, sizeof *a);
}

static int setup_clock(const char *spec)
{
    if (spec == NULL || strcmp(spec, "real") == 0)
        return 0;
    if (strcmp(spec, "virtual") == 0) {
        clock_use_virtual(clock_now_ms());
        return 0;
    }
    int64_t start;
    if (strncmp(spec, "virtual:", 8) != 0 || clock_parse_time(spec + 8, &start) != 0) {
        fprintf(stderr,
                "kizuna serve: --clock takes real, virtual or virtual:TIME "
                "(e.g. virtual:2026-11-23T10:00:00+09:00), got '%s'\n",
                spec);
        return -1;
    }
    clock_use_virtual(start);
    return 0;
}

/* One daemon per SQLite store: a second one would interleave deliveries. */
static int lock_store(const char *url, int *fd_out)
{
    *fd_out = -1;
    if (strncmp(url, "sqlite:", 7) != 0)
        return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s.lock", url + 7);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            log_msg(KZ_LOG_ERROR, "another kizuna is serving %s (it holds %s); stop it first", url,
                    path);
        else
            log_msg(KZ_LOG_ERROR, "cannot lock %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *fd_out = fd;
    return 0;
}

int app_open_instances(const app *a, bus *b)
{
    const cfg *c = a->c;
    const loader *l = a->l;
    char err[1024];
    int opened = 0;
    for (size_t s = 0; s < c->nshops; s++) {
        const cfg_shop *shop = &c->shops[s];
        if (bus_add_shop(b, shop->id) != 0)
            return KZ_ENOMEM;
        /* the core's own instance first: plugins read a registry that is
         * at least as new as the event they handle (same worker, in order) */
        int rc =
            bus_add_instance(b, friends_plugin(c), shop->id, shop->timezone, NULL, err, sizeof err);
        if (rc == 0)
            rc = bus_add_instance(b, broadcast_plugin(c), shop->id, shop->timezone, NULL, err,
                                  sizeof err);
        if (rc != 0)
            return rc == KZ_EFAIL ? KZ_EIO : rc;
        for (size_t u = 0; u < shop->nplugins; u++) {
            const plugin *p = loader_find(l, shop->plugins[u].name);
            int rc = bus_add_instance(b, p, shop->id, shop->timezone, shop->plugins[u].setting, err,
                                      sizeof err);
            if (rc == 0)
                opened++;
            else if (rc != KZ_EFAIL)
                return rc;
        }
    }
    return opened;
}

bus_options app_bus_options(const cfg *c)
{
    bus_options o = {
        .store_url = c->store_url,
        .sync_mode = c->sync_mode,
        .workers = c->workers,
        .batch = c->batch,
        .retry_attempts = c->retry_attempts,
        .retry_initial_ms = c->retry_initial_ms,
        .retry_max_ms = c->retry_max_ms,
        .retention_events_ms = c->retention_events_ms,
        .retention_sends_ms = c->retention_sends_ms,
        .poll_ms = 50,
        .c = c,
        .coalesce_ms = 5,
    };
    return o;
}

static int wait_for_stop_signal(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
}

static int start_http(app *a, bus *b, metrics *m, ingress **in)
{
    char err[512];
    ingress_options io = {.listen = a->c->listen,
                          .max_body = a->c->max_body,
                          .c = a->c,
                          .b = b,
                          .m = m,
                          .store_url = a->c->store_url,
                          .sync_mode = a->c->sync_mode};
    if (ingress_start(&io, in, err, sizeof err) != 0) {
        log_msg(KZ_LOG_ERROR, "%s", err);
        return 2;
    }
    log_msg(KZ_LOG_INFO, "listening on http://%s (webhooks: POST /webhook/<shop>)", a->c->listen);
    return 0;
}

typedef struct running {
    bus *b;
    int lockfd;
    metrics *m;
    ingress *in;
    sandbox *sb;
    _Atomic(sender *) snd; /* set once started; read by the workers' hook */
} running;

static int uses_sandbox(const cfg *c)
{
    for (size_t s = 0; s < c->nshops; s++)
        if (c->shops[s].line_api != NULL && strcmp(c->shops[s].line_api, "sandbox") == 0)
            return 1;
    return 0;
}

/* Workers call this after committing handlers that queued LINE sends. */
static void wake_sender(void *arg)
{
    running *r = arg;
    sender *s = atomic_load(&r->snd);
    if (s != NULL)
        sender_wake(s);
}

static int start_sender(const app *a, running *r)
{
    char err[512], base[300];
    const char *sandbox_base = NULL;
    if (r->sb != NULL) {
        snprintf(base, sizeof base, "http://127.0.0.1:%u", (unsigned)sandbox_port(r->sb));
        sandbox_base = base;
    } else if (uses_sandbox(a->c)) { /* a `kizuna sandbox serve` of its own */
        snprintf(base, sizeof base, "http://%s", a->c->sandbox.listen);
        sandbox_base = base;
    }
    sender_options so = {.store_url = a->c->store_url,
                         .sync_mode = a->c->sync_mode,
                         .c = a->c,
                         .sandbox_base = sandbox_base,
                         .b = r->b,
                         .m = r->m,
                         .timeout_ms = a->c->sender_timeout_ms,
                         .deadline_ms = a->c->sender_deadline_ms,
                         .max_in_flight = a->c->sender_max_in_flight};
    sender *s = NULL;
    if (sender_start(&so, &s, err, sizeof err) != 0) {
        log_msg(KZ_LOG_ERROR, "LINE sender: %s", err);
        return 2;
    }
    atomic_store(&r->snd, s);
    return 0;
}

/* The LINE stand-in runs inside the daemon unless configured to run apart
 * (crash tests kill the daemon, not the platform). */
static int start_sandbox(const app *a, running *r)
{
    if (!uses_sandbox(a->c) || !a->c->sandbox.embedded)
        return 0;
    char err[512], base[64];
    sandbox_options so = sandbox_options_from_cfg(a->c);
    snprintf(base, sizeof base, "http://127.0.0.1:%u", (unsigned)ingress_port(r->in));
    so.webhook_base = base;
    if (sandbox_start(&so, &r->sb, err, sizeof err) != 0) {
        log_msg(KZ_LOG_ERROR, "LINE sandbox: %s", err);
        return 2;
    }
    log_msg(KZ_LOG_INFO, "LINE sandbox on http://127.0.0.1:%u (store %s)",
            (unsigned)sandbox_port(r->sb), so.store_url);
    return 0;
}

static int run(app *a, running *r)
{
    bus **bp = &r->b;
    int *lockfd = &r->lockfd;
    char err[1024] = "", inflight_path[4096];
    bus_options o = app_bus_options(a->c);
    if (metrics_new(&r->m) != 0) {
        log_msg(KZ_LOG_ERROR, "out of memory");
        return 2;
    }
    o.m = r->m;
    if (strncmp(o.store_url, "sqlite:", 7) == 0) {
        snprintf(inflight_path, sizeof inflight_path, "%s.inflight", o.store_url + 7);
        o.inflight_path = inflight_path;
    }
    if (bus_new(&o, bp, err, sizeof err) != 0) {
        log_msg(KZ_LOG_ERROR, "cannot open store %s: %s", a->c->store_url, err);
        return 2;
    }
    if (lock_store(a->c->store_url, lockfd) != 0)
        return 2;
    int opened = app_open_instances(a, *bp);
    if (opened < 0) {
        log_msg(KZ_LOG_ERROR, "cannot open plugin instances: %s", err);
        return 2;
    }
    bus_on_sends(*bp, wake_sender, r);
    if (bus_start(*bp, err, sizeof err) != 0) {
        log_msg(KZ_LOG_ERROR, "%s", err);
        return 2;
    }
    int rc = start_http(a, *bp, r->m, &r->in);
    if (rc == 0)
        rc = start_sandbox(a, r);
    if (rc == 0)
        rc = start_sender(a, r);
    if (rc != 0)
        return rc;
    log_msg(KZ_LOG_INFO, "kizuna ready: %zu shop(s), %d plugin instance(s), store %s, clock %s",
            a->c->nshops, opened, a->c->store_url, clock_is_virtual() ? "virtual" : "real");
    int sig = wait_for_stop_signal();
    log_msg(KZ_LOG_INFO, "stopping on %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    return 0;
}

int daemon_serve(const char *config_path, const serve_opts *o)
{
    app a;
    if (app_prepare(&a, config_path, 0) > 0) {
        diag_print(&a.d, stderr);
        fprintf(stderr, "kizuna serve: refusing to start: %zu problem(s) in %s\n", diag_count(&a.d),
                config_path);
        app_free(&a);
        return 1;
    }
    if (setup_clock(o->clock) != 0) {
        app_free(&a);
        return 1;
    }
    /* Block the stop signals before any thread starts so only sigwait sees
     * them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    running r = {.lockfd = -1};
    int code = run(&a, &r);
    sender_stop(atomic_load(&r.snd)); /* before the sandbox it may be talking to */
    sandbox_stop(r.sb);
    ingress_stop(r.in); /* finishes requests in flight before the bus goes */
    bus_free(r.b);
    metrics_free(r.m);
    if (r.lockfd >= 0)
        close(r.lockfd);
    app_free(&a);
    log_msg(KZ_LOG_INFO, "kizuna stopped");
    return code;
}
