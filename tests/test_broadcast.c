/*
 * Segment broadcasts (core/broadcast.c, core/broadcastcli.c) on real parts:
 * a real config, store, bus with the core's instances, sender and LINE
 * sandbox, 10,000 friends seeded straight into the store. What is asserted
 * is what LINE (the sandbox) delivered and what the outbox holds: each
 * targeted friend one copy, blocked and unmatched friends none, multicasts
 * of at most 500. The last test kills the real `kizuna serve` with SIGKILL
 * in the middle of a broadcast and restarts it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "broadcast.h"
#include "broadcastcli.h"
#include "bus.h"
#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "friendview.h"
#include "log.h"
#include "policy.h"
#include "sandbox.h"
#include "sender.h"
#include "store.h"

#define FRIENDS 10000
#define T0 1795000000000LL

/* Who is who among the seeded friends (i from 0): */
static int is_vip(int i)
{
    return i % 4 != 3;
}
static int is_blocked(int i) /* all of them vip: the segment matches them */
{
    return i % 20 == 0;
}
static int is_gold(int i) /* 100 following friends */
{
    return i % 100 == 1;
}
static int targeted(int i) /* tag("vip") */
{
    return is_vip(i) && !is_blocked(i);
}
#define TARGETED 7000 /* 7500 vip, 500 of them blocked */

static void user_of(int i, char out[40])
{
    snprintf(out, 40, "U%032x", i + 1);
}

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

/* Seeds FRIENDS friends in one transaction; tags unless plain. */
static void seed(store *st, const char *shop, int plain)
{
    char err[256], u[40];
    assert_int_equal(store_begin(st, err, sizeof err), 0);
    for (int i = 0; i < FRIENDS; i++) {
        user_of(i, u);
        assert_int_equal(store_friend_follow(st, shop, u, T0 + i, err, sizeof err), 0);
        if (plain)
            continue;
        if (is_vip(i))
            assert_int_equal(store_friend_tag_add(st, shop, u, "vip", T0, err, sizeof err), 0);
        if (is_gold(i))
            assert_int_equal(store_friend_tag_add(st, shop, u, "gold", T0, err, sizeof err), 0);
        if (is_blocked(i))
            assert_int_equal(store_friend_unfollow(st, shop, u, T0 + i + 1, err, sizeof err), 0);
    }
    assert_int_equal(store_commit(st, err, sizeof err), 0);
}

typedef struct env {
    char dir[64], conf[128], msg[128];
    app a;
    bus *b;
    store *st;
    sandbox *sb;
    sender *snd;
    char sbx_base[64], sbx_url[128];
} env;

/* shop_extra: more settings of shop "a" (a delivery group). */
static env *env_open_shop(int monthly_limit, const char *shop_extra)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    strcpy(e->dir, "/tmp/kz-bc-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->conf, sizeof e->conf, "%s/kizuna.conf", e->dir);
    snprintf(e->msg, sizeof e->msg, "%s/sale.json", e->dir);
    snprintf(e->sbx_url, sizeof e->sbx_url, "sqlite:%s/sbx.db", e->dir);
    FILE *f = fopen(e->conf, "w");
    assert_non_null(f);
    fprintf(f,
            "kizuna: { store = \"sqlite:%s/k.db\"; log_level = \"error\"; durability = "
            "\"normal\"; listen = \"127.0.0.1:0\";\n"
            "  sandbox = { listen = \"127.0.0.1:0\"; store = \"%s\"; monthly_limit = %d; }; };\n"
            "shops = ( { id = \"a\"; line = { channel_secret = \"sec\"; access_token = \"tok\";"
            " api = \"sandbox\"; }; %s } );\n",
            e->dir, e->sbx_url, monthly_limit, shop_extra);
    fclose(f);
    f = fopen(e->msg, "w");
    assert_non_null(f);
    fputs(
        "[{\"type\":\"text\",\"text\":\"冬のセール\"},{\"type\":\"text\",\"text\":\"今週末まで\"}]",
        f);
    fclose(f);
    clock_use_real();
    if (app_prepare(&e->a, e->conf, 0) > 0) {
        diag_print(&e->a.d, stderr);
        fail_msg("config refused");
    }
    bus_options o = app_bus_options(e->a.c);
    char err[512];
    assert_int_equal(bus_new(&o, &e->b, err, sizeof err), 0);
    assert_true(app_open_instances(&e->a, e->b) >= 0);
    assert_int_equal(store_open(o.store_url, o.sync_mode, &e->st, err, sizeof err), 0);
    return e;
}

static env *env_open(int monthly_limit)
{
    return env_open_shop(monthly_limit, "");
}

/* The LINE sandbox in-process, on a free port. */
static void start_sandbox(env *e)
{
    char err[512];
    sandbox_options so = sandbox_options_from_cfg(e->a.c);
    so.webhook_base = "http://127.0.0.1:1"; /* no webhooks in these tests */
    if (sandbox_start(&so, &e->sb, err, sizeof err) != 0)
        fail_msg("sandbox: %s", err);
    snprintf(e->sbx_base, sizeof e->sbx_base, "http://127.0.0.1:%u", sandbox_port(e->sb));
}

static void start_sender(env *e)
{
    char err[512];
    sender_options sn = {.store_url = e->a.c->store_url,
                         .sync_mode = STORE_SYNC_NORMAL,
                         .c = e->a.c,
                         .sandbox_base = e->sbx_base,
                         .b = e->b,
                         .poll_ms = 20};
    assert_int_equal(sender_start(&sn, &e->snd, err, sizeof err), 0);
}

static void env_close(env *e)
{
    if (e->snd != NULL)
        sender_stop(e->snd);
    bus_free(e->b);
    if (e->sb != NULL)
        sandbox_stop(e->sb);
    store_close(e->st);
    app_free(&e->a);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
}

static broadcast_opts opts(env *e, const char *segment, char *id, size_t idlen)
{
    return (broadcast_opts){.segment = segment,
                            .message = e->msg,
                            .no_wait = 1,
                            .api_base = e->sbx_base[0] ? e->sbx_base : "http://127.0.0.1:1",
                            .id_out = id,
                            .id_len = idlen};
}

/* The broadcast's record as core.broadcast keeps it; NULL before. */
static json_object *record(store *st, const char *shop, const char *id)
{
    int64_t inst, cursor;
    char err[256], key[128];
    void *val = NULL;
    size_t len;
    assert_int_equal(
        store_instance_open(st, shop, BROADCAST_INSTANCE, &inst, &cursor, err, sizeof err), 0);
    snprintf(key, sizeof key, BROADCAST_KEY "%s", id);
    json_object *rec = NULL;
    if (store_kv_get(st, inst, key, &val, &len, err, sizeof err) == 0)
        rec = json_tokener_parse(val);
    free(val);
    return rec;
}

static const char *rstate(json_object *rec)
{
    json_object *v;
    return rec != NULL && json_object_object_get_ex(rec, "state", &v) ? json_object_get_string(v)
                                                                      : "";
}

static int64_t rec_int(json_object *rec, const char *key)
{
    json_object *v;
    return rec != NULL && json_object_object_get_ex(rec, key, &v) ? json_object_get_int64(v) : -1;
}

typedef struct rows {
    int64_t by_state[4];
} rows;

static int add_rows(void *arg, const char *tag, int state, int64_t n)
{
    (void)tag;
    ((rows *)arg)->by_state[state] += n;
    return 0;
}

static rows rows_of(store *st, const char *id)
{
    rows r = {{0}};
    char err[256], tag[128];
    snprintf(tag, sizeof tag, BROADCAST_KEY "%s", id);
    assert_int_equal(store_outbox_tag_states(st, "a", tag, add_rows, &r, err, sizeof err), 0);
    return r;
}

static int count_msg(void *arg, const store_sbx_msg *m)
{
    (void)m;
    ++*(int *)arg;
    return 0;
}

/* Copies each friend received, from LINE's (the sandbox's) own store;
 * fails on any friend with a count other than expected. */
static void assert_inboxes(const char *sbx_url, int (*expected)(int), int copies)
{
    store *st;
    char err[256], u[40];
    assert_int_equal(store_open(sbx_url, 1, &st, err, sizeof err), 0);
    for (int i = 0; i < FRIENDS; i++) {
        int n = 0;
        user_of(i, u);
        assert_int_equal(store_sbx_inbox(st, "a", u, count_msg, &n, err, sizeof err), 0);
        int want = expected(i) ? copies : 0;
        if (n != want)
            fail_msg("friend %d (%s, %s%s) received %d message(s), expected %d", i, u,
                     is_vip(i) ? "vip" : "not vip", is_blocked(i) ? ", blocked" : "", n, want);
    }
    store_close(st);
}

/* Runs fn with stdout going to a file; returns what it printed (malloc'd). */
static char *captured(int (*fn)(void *), void *arg, int *rc)
{
    char path[] = "/tmp/kz-bc-out-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    *rc = fn(arg);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)n + 1);
    assert_int_equal(pread(fd, text, (size_t)n, 0), n);
    close(fd);
    unlink(path);
    return text;
}

typedef struct send_call {
    env *e;
    broadcast_opts o;
} send_call;

static int call_send(void *arg)
{
    send_call *s = arg;
    return broadcastcli_send(s->e->a.c, "a", &s->o);
}

static int call_report(void *arg)
{
    return broadcastcli_report(((env *)arg)->a.c, "a", 1);
}

/* The case: a 10,000-friend shop, a broadcast restricted by a
 * segment reaches exactly the following friends it matches, once each,
 * in multicasts of at most 500, and the report says so. */
static void segment_broadcast_reaches_each_once(void **state)
{
    (void)state;
    env *e = env_open(0);
    seed(e->st, "a", 0);
    start_sandbox(e);
    start_sender(e);
    char id[64] = "", err[256];
    assert_int_equal(bus_start(e->b, err, sizeof err), 0);
    broadcast_opts o = opts(e, "tag(\"vip\")", id, sizeof id);
    o.no_wait = 0; /* returns once the daemon (here the bus) has queued every chunk */
    assert_int_equal(broadcastcli_send(e->a.c, "a", &o), 0);
    assert_true(id[0] != '\0');
    json_object *rec = record(e->st, "a", id);
    assert_string_equal(rstate(rec), "done");
    rows r = {{0}};
    for (int i = 0; i < 3000; i++) { /* bounded: at most 60 s */
        json_object_put(rec);
        rec = record(e->st, "a", id);
        r = rows_of(e->st, id);
        if (strcmp(rstate(rec), "done") == 0 && r.by_state[OUTBOX_PENDING] == 0)
            break;
        sleep_ms(20);
    }
    assert_string_equal(rstate(rec), "done");
    assert_int_equal(rec_int(rec, "recipients"), TARGETED);
    assert_int_equal(rec_int(rec, "chunks"), TARGETED / BROADCAST_CHUNK);
    assert_int_equal(r.by_state[OUTBOX_SENT], TARGETED / BROADCAST_CHUNK);
    json_object_put(rec);
    assert_inboxes(e->sbx_url, targeted, 2); /* two message objects each */

    int rc;
    char *out = captured(call_report, e, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\"state\":\"done\""));
    assert_non_null(strstr(out, "\"recipients\":7000,\"chunks\":14,\"sent\":14,\"failed\":0"));
    free(out);
    env_close(e);
}

static int64_t events_of(env *e)
{
    int64_t n = -1;
    char err[256];
    assert_int_equal(store_event_max_id(e->st, "a", &n, err, sizeof err), 0);
    return n;
}

/* 10,000 following friends: 20 multicasts of 500, in user order without
 * overlap; then a broadcast cancelled before its second handler call stops
 * after the first call's rows. */
static void chunks_of_500_and_cancel(void **state)
{
    (void)state;
    env *e = env_open(0);
    seed(e->st, "a", 1);
    char id[64], err[256];
    broadcast_opts o = opts(e, "!blocked", id, sizeof id);
    o.force = 1; /* no sandbox here: the quota cannot be read */
    assert_int_equal(broadcastcli_send(e->a.c, "a", &o), 0);
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
    json_object *rec = record(e->st, "a", id);
    assert_string_equal(rstate(rec), "done");
    assert_int_equal(rec_int(rec, "chunks"), 20);
    json_object_put(rec);
    assert_int_equal(rows_of(e->st, id).by_state[OUTBOX_PENDING], 20);
    char last[40] = "";
    size_t total = 0;
    for (int64_t row = 1; row <= 20; row++) {
        store_outbox ob;
        assert_int_equal(store_outbox_get(e->st, row, &ob, NULL, NULL, NULL, err, sizeof err), 0);
        assert_int_equal(ob.kind, KZ_LINE_MULTICAST);
        json_object *body = json_tokener_parse(ob.body), *to;
        assert_true(json_object_object_get_ex(body, "to", &to));
        size_t n = json_object_array_length(to);
        assert_true(n > 0 && n <= 500);
        const char *first = json_object_get_string(json_object_array_get_idx(to, 0));
        assert_true(strcmp(first, last) > 0); /* after the previous chunk */
        snprintf(last, sizeof last, "%s",
                 json_object_get_string(json_object_array_get_idx(to, n - 1)));
        total += n;
        json_object_put(body);
    }
    assert_int_equal(total, FRIENDS);
    broadcast_opts late = {.cancel = id}; /* done: nothing left to cancel */
    assert_int_equal(broadcastcli_send(e->a.c, "a", &late), 1);

    /* requested and cancelled before the daemon ran: one handler call's
     * rows (BROADCAST_ROWS_PER_CALL multicasts of 500), no more */
    char id2[64];
    o = opts(e, "!blocked", id2, sizeof id2);
    o.force = 1;
    assert_int_equal(broadcastcli_send(e->a.c, "a", &o), 0);
    broadcast_opts c = {.cancel = id2};
    assert_int_equal(broadcastcli_send(e->a.c, "a", &c), 0);
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
    rec = record(e->st, "a", id2);
    assert_string_equal(rstate(rec), "cancelled");
    assert_int_equal(rec_int(rec, "chunks"), BROADCAST_ROWS_PER_CALL);
    assert_int_equal(rec_int(rec, "recipients"), BROADCAST_CHUNK * BROADCAST_ROWS_PER_CALL);
    json_object_put(rec);
    assert_int_equal(rows_of(e->st, id2).by_state[OUTBOX_PENDING], BROADCAST_ROWS_PER_CALL);
    env_close(e);
}

/* The dry run counts and reads the quota without storing anything; a send
 * over the remaining quota is refused unless forced; bad input is a usage
 * error. */
static void dry_run_and_quota(void **state)
{
    (void)state;
    env *e = env_open(5000);
    seed(e->st, "a", 0);
    start_sandbox(e);
    char id[64] = "";
    send_call s = {.e = e, .o = opts(e, "tag(\"vip\")", id, sizeof id)};
    s.o.dry_run = 1;
    int rc;
    char *out = captured(call_send, &s, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "recipients:  7000 "));
    assert_non_null(strstr(out, "2 per recipient, 14000 message objects; 7000 counted"));
    assert_non_null(strstr(out, "quota:       5000 this month, 0 used, 5000 remaining"));
    assert_non_null(strstr(out, "fits:        no"));
    free(out);
    assert_int_equal(events_of(e), 0);

    s.o.dry_run = 0; /* over the quota: refused */
    free(captured(call_send, &s, &rc));
    assert_int_equal(rc, 1);
    assert_int_equal(events_of(e), 0);
    s.o = opts(e, "tag(\"gold\")", id, sizeof id); /* 100 fit */
    free(captured(call_send, &s, &rc));
    assert_int_equal(rc, 0);
    assert_int_equal(events_of(e), 1);
    s.o = opts(e, "tag(\"vip\")", id, sizeof id);
    s.o.force = 1;
    free(captured(call_send, &s, &rc));
    assert_int_equal(rc, 0);
    assert_int_equal(events_of(e), 2);

    s.o = opts(e, "tags(\"vip\")", id, sizeof id);
    assert_int_equal(call_send(&s), 2); /* unknown function, with its column */
    s.o = opts(e, "tag(\"vip\")", id, sizeof id);
    s.o.message = e->conf; /* not JSON */
    assert_int_equal(call_send(&s), 2);
    s.o = opts(e, "tag(\"vip\")", id, sizeof id);
    s.o.at = "2026-12-01 10:00"; /* no zone: refused, not read as UTC */
    assert_int_equal(call_send(&s), 2);
    s.o.at = "2020-01-01T10:00:00+09:00"; /* the past */
    assert_int_equal(call_send(&s), 2);
    assert_int_equal(events_of(e), 2);
    env_close(e);
}

/* --at: the broadcast waits as "scheduled" on a durable timer and starts
 * when the (virtual) clock reaches it; a scheduled one can be cancelled. */
static void scheduled_broadcast(void **state)
{
    (void)state;
    env *e = env_open(0);
    seed(e->st, "a", 1);
    int64_t t0 = 1795000000000LL; /* 2026-11-18T11:06:40Z */
    clock_use_virtual(t0);
    char id[64], id2[64], err[256];
    broadcast_opts o = opts(e, "!blocked", id, sizeof id);
    o.force = 1;
    o.at = "2026-11-18T12:06:40Z"; /* an hour later */
    assert_int_equal(broadcastcli_send(e->a.c, "a", &o), 0);
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
    json_object *rec = record(e->st, "a", id);
    assert_string_equal(rstate(rec), "scheduled");
    json_object_put(rec);
    assert_int_equal(rows_of(e->st, id).by_state[OUTBOX_PENDING], 0);

    broadcast_opts later = opts(e, "!blocked", id2, sizeof id2);
    later.force = 1;
    later.at = "2026-11-18T22:06:40+09:00"; /* the same moment as above, in Tokyo */
    assert_int_equal(broadcastcli_send(e->a.c, "a", &later), 0);
    broadcast_opts c = {.cancel = id2};
    assert_int_equal(broadcastcli_send(e->a.c, "a", &c), 0);

    clock_advance_ms(3600001);
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
    rec = record(e->st, "a", id);
    assert_string_equal(rstate(rec), "done");
    json_object_put(rec);
    assert_int_equal(rows_of(e->st, id).by_state[OUTBOX_PENDING], FRIENDS / BROADCAST_CHUNK);
    rec = record(e->st, "a", id2);
    assert_string_equal(rstate(rec), "cancelled");
    json_object_put(rec);
    assert_int_equal(rows_of(e->st, id2).by_state[OUTBOX_PENDING], 0);
    clock_use_real();
    env_close(e);
}

typedef struct held {
    const char *tag;
    int64_t held, dropped;
} held;

static int add_held(void *arg, const char *tag, int64_t h, int64_t d)
{
    held *x = arg;
    if (strcmp(tag, x->tag) == 0) {
        x->held += h;
        x->dropped += d;
    }
    return 0;
}

/* Recipients of broadcast id the delivery policy holds and dropped. */
static held held_of(store *st, const char *id)
{
    char err[256], tag[128];
    snprintf(tag, sizeof tag, BROADCAST_KEY "%s", id);
    held x = {.tag = tag};
    assert_int_equal(store_policy_tag_counts(st, "a", BROADCAST_KEY, add_held, &x, err, sizeof err),
                     0);
    return x;
}

/* --promotional puts a broadcast under the shop's delivery policy: queued
 * in quiet hours, every recipient waits for the window; when it opens the
 * higher priority goes first and takes the day's cap, the other waits for
 * the next day; --over-cap drop drops instead. Unmarked broadcasts are not
 * touched (the other tests). */
static void promotional_broadcast_obeys_the_policy(void **state)
{
    (void)state;
    env *e = env_open_shop(0, "delivery = { quiet_hours = ( { days = \"*\"; from = \"21:00\";"
                              " to = \"09:00\"; } ); caps = { day = 1; }; };");
    seed(e->st, "a", 0);
    clock_use_virtual(1795006800000LL); /* 2026-11-18T13:00:00Z: 22:00 in Tokyo, quiet */
    char a[64], b[64], c[64], err[256];
    broadcast_opts oa = opts(e, "tag(\"gold\")", a, sizeof a);
    oa.force = oa.promotional = 1;
    assert_int_equal(broadcastcli_send(e->a.c, "a", &oa), 0);
    broadcast_opts ob = opts(e, "tag(\"gold\")", b, sizeof b);
    ob.force = ob.promotional = 1;
    ob.priority = "5";
    ob.over_cap = "drop";
    assert_int_equal(broadcastcli_send(e->a.c, "a", &ob), 0);
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
    json_object *rec = record(e->st, "a", a);
    assert_string_equal(rstate(rec), "done");
    assert_int_equal(rec_int(rec, "recipients"), 100);
    json_object_put(rec);
    assert_int_equal(rows_of(e->st, a).by_state[OUTBOX_PENDING], 0);
    assert_int_equal(rows_of(e->st, b).by_state[OUTBOX_PENDING], 0);
    assert_int_equal(held_of(e->st, a).held, 100);
    assert_int_equal(held_of(e->st, b).held, 100);

    clock_advance_ms(11 * 3600 * 1000LL); /* 09:00: the window opens */
    assert_true(policy_release(e->st, e->a.c, clock_now_ms(), 1000, err, sizeof err) > 0);
    assert_int_equal(rows_of(e->st, b).by_state[OUTBOX_PENDING], 1); /* 100 in one multicast */
    assert_int_equal(held_of(e->st, b).held, 0);
    assert_int_equal(rows_of(e->st, a).by_state[OUTBOX_PENDING], 0);
    assert_int_equal(held_of(e->st, a).held, 100); /* the day's cap is used: tomorrow */

    broadcast_opts oc = opts(e, "tag(\"gold\")", c, sizeof c);
    oc.force = oc.promotional = 1;
    oc.over_cap = "drop";
    assert_int_equal(broadcastcli_send(e->a.c, "a", &oc), 0);
    assert_true(bus_run_until_idle(e->b, err, sizeof err) >= 0);
    assert_int_equal(rows_of(e->st, c).by_state[OUTBOX_PENDING], 0);
    held hc = held_of(e->st, c);
    assert_int_equal(hc.held, 0);
    assert_int_equal(hc.dropped, 100);
    assert_int_equal(broadcastcli_report(e->a.c, "a", 1), 0);

    broadcast_opts bad = opts(e, "tag(\"gold\")", c, sizeof c);
    bad.priority = "5"; /* without --promotional */
    assert_int_equal(broadcastcli_send(e->a.c, "a", &bad), 2);
    bad.promotional = 1;
    bad.priority = "high";
    assert_int_equal(broadcastcli_send(e->a.c, "a", &bad), 2);
    bad.priority = NULL;
    bad.over_cap = "skip";
    assert_int_equal(broadcastcli_send(e->a.c, "a", &bad), 2);
    clock_use_real();
    env_close(e);
}

typedef struct audit {
    store *st;
    long seen;
    long stop_at;
} audit;

/* Each streamed view must equal the friend read alone (registry row, tags,
 * attributes, links), and blocked friends must not be streamed. */
static int audit_view(void *arg, friend_view *v)
{
    audit *a = arg;
    friend_view alone;
    char err[256];
    assert_int_equal(friend_view_load(a->st, "a", v->f.user, NULL, &alone, err, sizeof err), 0);
    json_object *x = friend_view_json(v), *y = friend_view_json(&alone);
    assert_string_equal(json_object_to_json_string(x), json_object_to_json_string(y));
    assert_int_equal(v->f.following, 1);
    json_object_put(x);
    json_object_put(y);
    friend_view_free(&alone);
    return ++a->seen == a->stop_at ? 7 : 0;
}

static int count_view(void *arg, friend_view *v)
{
    (void)v;
    ++*(long *)arg;
    return 0;
}

/* The audience walk merges four streams; what it hands out must be what the
 * per-friend reads say, from any starting user, and a callback can stop it. */
static void audience_walk_matches_reads(void **state)
{
    (void)state;
    env *e = env_open(0);
    seed(e->st, "a", 0);
    char err[256], u[40], m[40];
    assert_int_equal(store_begin(e->st, err, sizeof err), 0);
    for (int i = 0; i < FRIENDS; i++) {
        user_of(i, u);
        snprintf(m, sizeof m, "M%d", i);
        if (i % 7 == 0)
            assert_int_equal(store_friend_attr_set(e->st, "a", u, "age", CFG_ATTR_NUMBER, "42", T0,
                                                   err, sizeof err),
                             0);
        if (i % 11 == 0)
            assert_int_equal(
                store_friend_link_set(e->st, "a", u, "shop", m, T0, NULL, 0, err, sizeof err), 0);
    }
    assert_int_equal(store_commit(e->st, err, sizeof err), 0);
    audit a = {.st = e->st};
    assert_int_equal(friend_view_stream(e->st, "a", "", 1, audit_view, &a, err, sizeof err), 0);
    assert_int_equal(a.seen, FRIENDS - FRIENDS / 20); /* the blocked ones left out */
    a = (audit){.st = e->st, .stop_at = 3};
    assert_int_equal(friend_view_stream(e->st, "a", "", 1, audit_view, &a, err, sizeof err), 7);
    long n = 0;
    user_of(FRIENDS / 2 - 1, u);
    assert_int_equal(friend_view_stream(e->st, "a", u, 0, count_view, &n, err, sizeof err), 0);
    assert_int_equal(n, FRIENDS / 2); /* after u, blocked ones included */
    env_close(e);
}

/* ---- the real binaries: SIGKILL in the middle of a broadcast ---- */

static char logpath[128];

static pid_t spawn(const char *const argv[])
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int run_cli(const char *const argv[])
{
    int status;
    waitpid(spawn(argv), &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void dump_log(void)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "tail -n 40 %s >&2", logpath);
    if (system(cmd) != 0)
        fprintf(stderr, "(no daemon log)\n");
}

/* The broadcast's progress; st is a connection of its own (the daemon
 * writes), kept open so that polling is quick. */
static void progress(store *st, const char *id, char *state, size_t len, int64_t *chunks,
                     int64_t *pending)
{
    json_object *rec = record(st, "a", id);
    snprintf(state, len, "%s", rstate(rec));
    *chunks = rec_int(rec, "chunks");
    json_object_put(rec);
    *pending = rows_of(st, id).by_state[OUTBOX_PENDING];
}

/* The crash case: `kizuna serve` is SIGKILLed half-way through a
 * 10,000-friend broadcast (chunks still being queued, or sends in flight
 * to a slow LINE), then restarted: each targeted friend has exactly one
 * copy in the sandbox inbox, blocked friends none. */
static void broadcast_survives_sigkill(void **state)
{
    (void)state;
    char dir[64] = "/tmp/kz-bccrash-XXXXXX", conf[128], url[128], sbx_url[128], msg[128];
    assert_non_null(mkdtemp(dir));
    snprintf(conf, sizeof conf, "%s/kizuna.conf", dir);
    snprintf(msg, sizeof msg, "%s/sale.json", dir);
    snprintf(logpath, sizeof logpath, "%s/daemon.log", dir);
    snprintf(url, sizeof url, "sqlite:%s/k.db", dir);
    snprintf(sbx_url, sizeof sbx_url, "sqlite:%s/sandbox.db", dir);
    int port = 30000 + (int)((getpid() + 7) % 20000);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    /* batch = 1: one chunk a commit, so the kill can land between chunks */
    fprintf(f,
            "kizuna: { listen = \"127.0.0.1:0\"; store = \"%s\"; log_level = \"warn\"; batch = 1;\n"
            "  sandbox = { embedded = false; listen = \"127.0.0.1:%d\"; store = \"%s\";\n"
            "              faults = { latency_ms = 100; }; }; };\n"
            "shops = ( { id = \"a\";\n"
            "  line = { channel_secret = \"sec\"; access_token = \"tok\"; api = \"sandbox\"; }; } "
            ");\n",
            url, port, sbx_url);
    fclose(f);
    f = fopen(msg, "w");
    assert_non_null(f);
    fputs("[{\"type\":\"text\",\"text\":\"冬のセール\"}]", f);
    fclose(f);
    store *st;
    char err[256];
    assert_int_equal(store_open(url, 0, &st, err, sizeof err), 0);
    seed(st, "a", 0);
    store_close(st);

    const char *const sbx_argv[] = {KIZUNA_BIN, "sandbox", "serve", "-c", conf, NULL};
    pid_t sbx = spawn(sbx_argv);
    const char *const bc_argv[] = {KIZUNA_BIN,     "broadcast", "-c", conf,        "a", "--segment",
                                   "tag(\"vip\")", "--message", msg,  "--no-wait", NULL};
    int rc = -1;
    for (int i = 0; i < 100 && (rc = run_cli(bc_argv)) != 0; i++)
        sleep_ms(50); /* until the sandbox answers the quota */
    assert_int_equal(rc, 0);
    char id[64] = "";
    {
        assert_int_equal(store_open(url, 0, &st, err, sizeof err), 0);
        store_batch b = {0};
        assert_int_equal(store_events_after(st, "a", 0, 1, &b, err, sizeof err), 0);
        assert_int_equal(b.n, 1);
        snprintf(id, sizeof id, "%s", b.ev[0].uid + strlen(BROADCAST_KEY));
        store_batch_free(&b);
        store_close(st);
    }

    /* first run: killed once the first chunk is queued, before all is sent */
    const char *const serve_argv[] = {KIZUNA_BIN, "serve", "-c", conf, NULL};
    pid_t pid = spawn(serve_argv);
    char bstate[32] = "";
    int64_t chunks = 0, pending = 0;
    assert_int_equal(store_open(url, 0, &st, err, sizeof err), 0);
    /* no sleep between looks (a chunk is quick); bounded by time */
    for (int64_t until = mono_ms() + 30000; chunks < 1 && mono_ms() < until;)
        progress(st, id, bstate, sizeof bstate, &chunks, &pending);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    progress(st, id, bstate, sizeof bstate, &chunks, &pending);
    print_message("killed kizuna serve with %lld of %d chunks queued (%s), %lld unsent\n",
                  (long long)chunks, TARGETED / BROADCAST_CHUNK, bstate, (long long)pending);
    assert_true(chunks >= 1);
    assert_true(strcmp(bstate, "done") != 0 || pending > 0); /* the kill was mid-way */

    /* second run: finishes */
    pid = spawn(serve_argv);
    for (int i = 0; i < 3000 && !(strcmp(bstate, "done") == 0 && pending == 0); i++) {
        sleep_ms(20);
        progress(st, id, bstate, sizeof bstate, &chunks, &pending);
    }
    store_close(st);
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    kill(sbx, SIGTERM);
    waitpid(sbx, NULL, 0);
    if (strcmp(bstate, "done") != 0 || pending != 0)
        dump_log();
    assert_string_equal(bstate, "done");
    assert_int_equal(chunks, TARGETED / BROADCAST_CHUNK);
    assert_int_equal(pending, 0);
    assert_inboxes(sbx_url, targeted, 1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    log_set_level(KZ_LOG_ERROR + 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audience_walk_matches_reads),
        cmocka_unit_test(segment_broadcast_reaches_each_once),
        cmocka_unit_test(chunks_of_500_and_cancel),
        cmocka_unit_test(scheduled_broadcast),
        cmocka_unit_test(promotional_broadcast_obeys_the_policy),
        cmocka_unit_test(dry_run_and_quota),
        cmocka_unit_test(broadcast_survives_sigkill),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
